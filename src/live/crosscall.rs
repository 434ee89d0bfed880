//! The verbs that reach across real calls, on the world of the server's
//! calls ([`super::world`]): `call:channels`, `call:pickup` (a ringing
//! bridge, a parked call, with `intercept` an answered one), `call:park`,
//! `call:wait` / `call:wake`, `call:conference` and `call:eavesdrop`. The
//! rules and trace events are the simulator's; here the media moves too:
//!
//! * a pickup or a retrieve relays the two calls' sessions both ways (the
//!   called side stops its ringback or music first, and answers its caller
//!   when it was still ringing);
//! * a conference room is a [`crate::media::mixer::Mixer`]: each member's
//!   session feeds it through a tap and hears the others' sum;
//! * an eavesdrop taps the listened-to caller's session both ways (what
//!   its caller says and hears) into a mixer only the listener hears; its
//!   whisper modes mix the listener's voice into what the chosen sides
//!   send ([`Control::Whisper`]).
//!
//! When a call ends, the call joined to it, the calls listening to it and
//! its room's members are told (`end_at_with` → [`LiveBackend::world_ended`]).

use std::time::Duration;

use tokio::sync::mpsc;

use super::backend::{LiveBackend, Stop};
use super::world::{Reply, WorldEvent};
use crate::engine::control::{
    Beside, BridgeEndpoint, BridgeOutcome, BridgeStatus, ConferenceOutcome, EavesdropOutcome,
    HungUpBy, Leg, ParkOutcome, WaitOutcome, WaitRequest,
};
use crate::media::mixer::Mixer;
use crate::media::session::{self, Control, Handle};
use crate::sim::world::{Activity, eavesdrop_mode_event, member_event};

/// How long a pickup waits for the picked call to accept: it answers from
/// its event loop at once; only a call busy in a long script stalls it.
const JOIN_WAIT: Duration = Duration::from_secs(5);

/// What messages from other calls may end the verb waiting now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum Reach {
    #[default]
    Nothing,
    /// Ringing or parked: a pickup or retrieve joins it.
    Join,
    /// An answered bridge: an intercept takes the callee's place.
    Intercept,
    /// Waiting at a place: a wake ends the wait.
    Wake,
}

/// The call joined to this one (a pickup, a retrieve).
#[derive(Debug, Clone)]
pub(super) struct WorldPeer {
    pub call_id: String,
}

/// A call that asked to join this one and was accepted.
#[derive(Debug, Clone)]
pub(super) struct Joiner {
    pub by: String,
    pub device: Option<String>,
    pub media: Handle,
}

impl LiveBackend {
    fn account_id(&self) -> &str {
        self.context().account.account.id.as_str()
    }

    fn world(&self) -> &super::world::World {
        &self.context().world
    }

    /// Tells the world what the call does now (nothing once it ended).
    pub(super) fn set_activity(&self, activity: Activity) {
        if !self.has_ended() || activity == Activity::Ended {
            self.world().set_activity(self.call_id(), activity);
        }
    }

    /// What a message from another call does to this one.
    pub(super) fn on_world(&self, event: WorldEvent) -> Option<Stop> {
        match event {
            WorldEvent::Joined {
                by,
                device,
                media,
                intercept,
                reply,
            } => {
                let reach = self.reach();
                let open = reach == Reach::Join || (intercept && reach == Reach::Intercept);
                // Accepted only while the joining call still waits for it.
                if open && self.joiner_slot(|slot| slot.is_none()) && reply.accept() {
                    self.joiner_slot(|slot| *slot = Some(Joiner { by, device, media }));
                    return Some(Stop::Joined);
                }
                reply.refuse();
                None
            }
            WorldEvent::Left { by } => {
                if self.listening_to(|to| to.as_deref() == Some(by.as_str())) {
                    self.listening_to(|to| *to = None);
                    return Some(Stop::PeerGone);
                }
                if self.world_peer(|peer| peer.as_ref().is_some_and(|p| p.call_id == by)) {
                    self.world_peer(|peer| *peer = None);
                    session::unrelay(&[self.media()]);
                    self.end_at_now(HungUpBy::Callee, "NORMAL_CLEARING");
                    return Some(Stop::Hangup);
                }
                None
            }
            WorldEvent::Wake => (self.reach() == Reach::Wake).then_some(Stop::Woken),
            WorldEvent::RoomJoined { by, moderator } => {
                self.trace_event(member_event(self.now(), "join", by, moderator));
                None
            }
            WorldEvent::RoomLeft { by } => {
                self.trace_event(member_event(self.now(), "leave", by, false));
                None
            }
        }
    }

    /// The call ended (once: its hang-up, or leaving without one): the
    /// call joined to it, those listening to it and its room's members are
    /// told, the waiting calls are woken (as in the simulator); the world
    /// sees it ended.
    pub(super) fn world_ended(&self) {
        if self.world_told.replace(true) {
            return;
        }
        let world = self.world();
        let me = self.call_id().to_owned();
        let account = self.account_id();
        if let Some(Activity::Conference(room)) = world.activity(account, &me) {
            for member in world.room_members(account, &room, &me) {
                world.send(account, &member, WorldEvent::RoomLeft { by: me.clone() });
            }
        }
        world.set_activity(&me, Activity::Ended);
        if let Some(peer) = self.world_peer(Option::take) {
            world.send(account, &peer.call_id, WorldEvent::Left { by: me.clone() });
        }
        for listener in world.take_listeners(&me) {
            world.send(account, &listener, WorldEvent::Left { by: me.clone() });
        }
        // A device may be free now: every waiting call looks again, and
        // camps whose devices are all free call back.
        for waiting in world.all_waiting(account, &me) {
            world.send(account, &waiting, WorldEvent::Wake);
        }
        world.call_back_free();
    }

    /// `call:camp` (see [`crate::engine::CallControl::camp`]): the server
    /// places the callback ([`super::camper`]).
    pub(super) fn run_camp(&self, request: &crate::engine::control::CampRequest) -> bool {
        self.world().camp(self.account_id(), request.clone())
    }

    /// Tells `call_id` this call left it (the call it was joined to).
    fn tell_left(&self, call_id: &str) {
        self.world().send(
            self.account_id(),
            call_id,
            WorldEvent::Left {
                by: self.call_id().to_owned(),
            },
        );
    }

    /// The calls of the account but this one.
    pub(super) fn world_channels(&self) -> Vec<crate::engine::control::Channel> {
        self.world()
            .channels(self.account_id(), Some(self.call_id()))
    }

    /// The accepted joiner, if a join ended the wait.
    pub(super) fn take_joiner(&self) -> Option<Joiner> {
        self.joiner_slot(Option::take)
    }

    /// `call:pickup` (see [`crate::engine::CallControl::pickup`]).
    pub(super) async fn run_pickup(
        &self,
        target: &str,
        intercept: bool,
        beside: &dyn Beside,
    ) -> BridgeOutcome {
        let start = self.now();
        let joinable = target != self.call_id()
            && match self.world().activity(self.account_id(), target) {
                Some(Activity::Ringing(_) | Activity::Parked(_)) => true,
                Some(Activity::Answered(_)) => intercept,
                _ => false,
            };
        if !joinable {
            return BridgeOutcome::failed(0, BridgeStatus::Failed, "NO_ROUTE_DESTINATION", 404);
        }
        if self.connected().is_some() || self.world_peer(|peer| peer.is_some()) {
            return BridgeOutcome::failed(0, BridgeStatus::Failed, "INCOMPATIBLE_DESTINATION", 488);
        }
        let (reply, accepted) = Reply::new();
        let sent = self.world().send(
            self.account_id(),
            target,
            WorldEvent::Joined {
                by: self.call_id().to_owned(),
                device: self.calling_device(),
                media: self.media().clone(),
                intercept,
                reply,
            },
        );
        let accepted =
            sent && matches!(tokio::time::timeout(JOIN_WAIT, accepted).await, Ok(Ok(())));
        if !accepted {
            return BridgeOutcome::failed(
                self.now() - start,
                BridgeStatus::Failed,
                "NO_ROUTE_DESTINATION",
                404,
            );
        }
        // The picked call relays the sessions once its ringback or music
        // stopped.
        self.talk_to_call(target, None, None, start, beside).await
    }

    /// Connects this call to another of the world until one of them hangs
    /// up (or a metaflow takes this one elsewhere): a pickup, or the
    /// picked side with `media`, the joiner's session, to relay.
    pub(super) async fn talk_to_call(
        &self,
        call_id: &str,
        device: Option<String>,
        media: Option<&Handle>,
        start: u64,
        beside: &dyn Beside,
    ) -> BridgeOutcome {
        let id = device.unwrap_or_else(|| call_id.to_owned());
        if crate::engine::CallControl::answer(self).await.is_err() {
            self.tell_left(call_id);
            return BridgeOutcome::failed(
                self.now() - start,
                BridgeStatus::Hangup,
                "ORIGINATOR_CANCEL",
                487,
            );
        }
        let at = self.now();
        if let Some(media) = media {
            session::relay(self.media(), media);
        }
        self.world_peer(|peer| {
            *peer = Some(WorldPeer {
                call_id: call_id.to_owned(),
            });
        });
        let other = media
            .cloned()
            .or_else(|| self.world().media(self.account_id(), call_id));
        self.world().set_peer_media(self.call_id(), other);
        if self.has_ended() {
            // This call ended before it was joined (its end told nobody):
            // the other call is told now.
            self.world_peer(|peer| *peer = None);
            self.tell_left(call_id);
        }
        self.set_activity(Activity::Answered(id.clone()));
        let endpoint = BridgeEndpoint {
            id: id.clone(),
            offnet: false,
            delay_s: 0,
            timeout_s: 0,
            call_waiting: true,
            caller_id: None,
        };
        beside.bridged(Some(&endpoint));
        while self.world_peer(|peer| peer.is_some()) {
            match self.wait_any(None, false, &|_, _| false, beside).await {
                Stop::Hangup | Stop::TakenOver | Stop::PeerGone => break,
                _ => {}
            }
        }
        if let Some(peer) = self.world_peer(Option::take) {
            // Taken elsewhere by a metaflow: the other call is left alone.
            self.tell_left(&peer.call_id);
        }
        session::unrelay(&[self.media()]);
        self.world().set_peer_media(self.call_id(), None);
        beside.bridged(None);
        self.set_activity(Activity::Busy);
        self.finish_after_callee().await;
        BridgeOutcome::answered(id, self.now() - start, self.now() - at)
    }

    /// [`Self::talk_to_call`] with a call whose join this call accepted:
    /// its session is relayed to this call's.
    pub(super) async fn talk_to_joiner(
        &self,
        joiner: Joiner,
        start: u64,
        beside: &dyn Beside,
    ) -> BridgeOutcome {
        self.talk_to_call(
            &joiner.by,
            joiner.device,
            Some(&joiner.media),
            start,
            beside,
        )
        .await
    }

    /// `call:park` (see [`crate::engine::CallControl::park`]): the caller
    /// (answered first) hears the account's music until retrieved, the
    /// time is up or it hangs up.
    pub(super) async fn run_park(&self, slot: &str, ms: u64, beside: &dyn Beside) -> ParkOutcome {
        let start = self.now();
        let until = (ms != u64::MAX).then(|| start.saturating_add(ms));
        // A parked caller is answered and hears music (a call parked by a
        // transfer is answered already).
        if crate::engine::CallControl::answer(self).await.is_err() {
            return ParkOutcome {
                reason: "hangup",
                by: None,
                duration_ms: 0,
                talk_ms: 0,
            };
        }
        self.set_activity(Activity::Parked(slot.to_owned()));
        self.set_reach(Reach::Join);
        let music = self.start_moh(self.media(), None);
        let stop = loop {
            let stop = self.wait_any(until, true, &|_, _| false, beside).await;
            if matches!(
                stop,
                Stop::Joined | Stop::Hangup | Stop::TakenOver | Stop::Deadline
            ) {
                break stop;
            }
        };
        self.set_reach(Reach::Nothing);
        self.stop_moh(self.media(), music);
        self.set_activity(Activity::Busy);
        let reason = match (stop, self.take_joiner()) {
            (Stop::Joined, Some(joiner)) => {
                let by = joiner.by.clone();
                let talk = self.talk_to_joiner(joiner, start, beside).await;
                return ParkOutcome {
                    reason: "retrieved",
                    by: Some(by),
                    duration_ms: self.now() - start,
                    talk_ms: talk.talk_ms,
                };
            }
            (Stop::Hangup | Stop::TakenOver, _) => "hangup",
            _ => "timeout",
        };
        ParkOutcome {
            reason,
            by: None,
            duration_ms: self.now() - start,
            talk_ms: 0,
        }
    }

    /// `call:wait` (see [`crate::engine::CallControl::wait`]); an answered
    /// caller hears the account's music meanwhile.
    pub(super) async fn run_wait(
        &self,
        place: &str,
        request: &WaitRequest,
        beside: &dyn Beside,
    ) -> WaitOutcome {
        let start = self.now();
        let until = (request.ms != u64::MAX).then(|| start.saturating_add(request.ms));
        self.world()
            .set_waiting(self.call_id(), place, request.since);
        self.set_reach(Reach::Wake);
        // An answered caller waiting in line hears the account's music.
        let music = self
            .is_answered()
            .then(|| self.start_moh(self.media(), None));
        let digits = request.digits.as_str();
        let stop = loop {
            let stop = self
                .wait_any(
                    until,
                    true,
                    &|leg, digit| leg == Leg::A && digits.contains(digit),
                    beside,
                )
                .await;
            if matches!(
                stop,
                Stop::Woken | Stop::Digit(..) | Stop::Hangup | Stop::TakenOver | Stop::Deadline
            ) {
                break stop;
            }
        };
        self.set_reach(Reach::Nothing);
        if let Some(music) = music {
            self.stop_moh(self.media(), music);
        }
        self.set_activity(Activity::Busy);
        let (reason, digit) = match stop {
            Stop::Woken => ("woken", None),
            Stop::Digit(_, digit) => {
                // The digit is the wait's answer, not one to collect later.
                self.unbuffer(digit);
                ("digit", Some(digit))
            }
            Stop::Hangup | Stop::TakenOver => ("hangup", None),
            _ => ("timeout", None),
        };
        WaitOutcome {
            reason,
            digit,
            duration_ms: self.now() - start,
        }
    }

    /// `call:wake`: the other calls waiting at `place` are woken.
    pub(super) fn run_wake(&self, place: &str) -> usize {
        let world = self.world();
        let account = self.account_id();
        let waiting = world.waiting_at(account, place, self.call_id());
        waiting
            .iter()
            .filter(|call| world.send(account, call, WorldEvent::Wake))
            .count()
    }

    /// `call:conference`: in `room` until the caller hangs up, hearing the
    /// others through the room's mixer.
    pub(super) async fn run_conference(
        &self,
        room: &str,
        moderator: bool,
        beside: &dyn Beside,
    ) -> ConferenceOutcome {
        let start = self.now();
        let world = self.world();
        let account = self.account_id();
        let me = self.call_id().to_owned();
        let (mixer, others) = world.join_room(account, room, &me, &self.context().media_runtime);
        for member in &others {
            world.send(
                account,
                member,
                WorldEvent::RoomJoined {
                    by: me.clone(),
                    moderator,
                },
            );
        }
        let member = world.foreign_tap();
        let tap = self.hear_mixer(&mixer, member, self.media(), None);
        loop {
            let stop = self.wait_any(None, false, &|_, _| false, beside).await;
            if matches!(stop, Stop::Hangup | Stop::TakenOver) {
                break;
            }
        }
        self.media().send(Control::Untap { id: tap });
        self.media().send(Control::RelayIn(None));
        mixer.leave(member);
        if !self.has_ended() {
            // Taken elsewhere: the room hears it leave (a hang-up tells it
            // in `world_ended`).
            for other in world.room_members(account, room, &me) {
                world.send(account, &other, WorldEvent::RoomLeft { by: me.clone() });
            }
        }
        world.leave_room(account, room, &me);
        ConferenceOutcome {
            members: others.len(),
            reason: "hangup",
            duration_ms: self.now() - start,
        }
    }

    /// This call hears `mixer` as member `member` (minus its own voice);
    /// `source` (with `outbound`: both directions) feeds it. The tap's id
    /// on `source`.
    fn hear_mixer(
        &self,
        mixer: &Mixer,
        member: u64,
        source: &Handle,
        outbound: Option<u64>,
    ) -> u64 {
        let (tx, rx) = mpsc::unbounded_channel();
        self.media().send(Control::RelayIn(Some(rx)));
        mixer.join(member, tx);
        let tap = self.world().foreign_tap();
        let input = if outbound.is_some() {
            mixer.input(member + 1, outbound)
        } else {
            mixer.input(member, None)
        };
        source.send(Control::Tap {
            id: tap,
            tap: Box::new(input),
        });
        tap
    }

    /// `call:eavesdrop`: hears both sides of `target` (what its caller
    /// says and hears) until it ends or this call hangs up. Digits 1, 2, 3
    /// and 0 change the mode (`eavesdrop_mode`; see [`Whisper`]).
    pub(super) async fn run_eavesdrop(
        &self,
        target: &str,
        beside: &dyn Beside,
    ) -> EavesdropOutcome {
        let start = self.now();
        let world = self.world();
        let account = self.account_id();
        let me = self.call_id().to_owned();
        let their = world
            .media(account, target)
            .filter(|_| target != me && world.activity(account, target) != Some(Activity::Ended));
        let Some(their) = their else {
            return EavesdropOutcome {
                reason: "no_call",
                duration_ms: 0,
            };
        };
        world.listen(target, &me);
        self.listening_to(|to| *to = Some(target.to_owned()));
        if world
            .activity(account, target)
            .is_none_or(|a| a == Activity::Ended)
        {
            // It ended between the look-up and the listening.
            self.listening_to(|to| *to = None);
        }
        let mixer = Mixer::start(&self.context().media_runtime);
        let member = world.foreign_tap();
        let tap = self.hear_mixer(&mixer, member, &their, Some(member + 2));
        let mut whisper = Whisper::start(self, target);
        let reason = loop {
            if self.listening_to(|to| to.is_none()) {
                break "target_ended";
            }
            let stop = self
                .wait_any(
                    None,
                    false,
                    &|leg, digit| leg == Leg::A && matches!(digit, '0'..='3'),
                    beside,
                )
                .await;
            match stop {
                Stop::Digit(_, digit) => {
                    self.trace_event(eavesdrop_mode_event(self.now(), digit));
                    whisper.mode(self, digit);
                }
                Stop::PeerGone => break "target_ended",
                Stop::Hangup | Stop::TakenOver => break "hangup",
                _ => {}
            }
        };
        their.send(Control::Untap { id: tap });
        self.media().send(Control::RelayIn(None));
        mixer.leave(member);
        whisper.stop(self);
        world.unlisten(target, &me);
        self.listening_to(|to| *to = None);
        EavesdropOutcome {
            reason,
            duration_ms: self.now() - start,
        }
    }
}

/// An eavesdropper's voice, heard by the sides its mode says: nobody
/// (listen, `0`), the target's caller (`1`), its peer (`2`) or both (`3`,
/// three-way). The voice is a mixer fed by a tap on the eavesdropper's
/// session; each side hearing it mixes it into what it sends
/// ([`Control::Whisper`]).
struct Whisper {
    target: String,
    voice: Mixer,
    tap: u64,
    /// The sessions whispered to now.
    to: Vec<Handle>,
}

/// The voice's input in its mixer, and the ids of the sides hearing it.
const VOICE: u64 = 1;
const TO_CALLER: u64 = 2;
const TO_PEER: u64 = 3;

impl Whisper {
    fn start(call: &LiveBackend, target: &str) -> Self {
        let voice = Mixer::start(&call.context().media_runtime);
        let tap = call.world().foreign_tap();
        call.media().send(Control::Tap {
            id: tap,
            tap: Box::new(voice.input(VOICE, None)),
        });
        Self {
            target: target.to_owned(),
            voice,
            tap,
            to: Vec::new(),
        }
    }

    /// The mode `digit` asks for.
    fn mode(&mut self, call: &LiveBackend, digit: char) {
        self.silence();
        let world = call.world();
        let account = call.account_id();
        let caller = || world.media(account, &self.target).map(|m| (TO_CALLER, m));
        let peer = || {
            world
                .peer_media(account, &self.target)
                .map(|m| (TO_PEER, m))
        };
        let sides: Vec<(u64, Handle)> = match digit {
            '1' => caller().into_iter().collect(),
            '2' => peer().into_iter().collect(),
            '3' => caller().into_iter().chain(peer()).collect(),
            _ => Vec::new(),
        };
        for (id, side) in sides {
            let (tx, rx) = mpsc::unbounded_channel();
            self.voice.join(id, tx);
            side.send(Control::Whisper {
                owner: self.tap,
                input: Some(rx),
            });
            self.to.push(side);
        }
    }

    /// Nobody hears the voice any more.
    fn silence(&mut self) {
        for side in self.to.drain(..) {
            side.send(Control::Whisper {
                owner: self.tap,
                input: None,
            });
        }
        self.voice.leave(TO_CALLER);
        self.voice.leave(TO_PEER);
    }

    fn stop(mut self, call: &LiveBackend) {
        self.silence();
        call.media().send(Control::Untap { id: self.tap });
    }
}
