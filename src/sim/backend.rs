//! The simulated outside world of one call: a [`CallControl`] that computes
//! each verb's outcome from the scenario (the caller's timeline, the
//! endpoints' behaviour, media durations, HTTP stubs) in virtual time.
//!
//! Time is the call's own counter, advanced by each verb by exactly what the
//! scenario implies, so a call's trace never depends on the machine, the
//! load, or other calls running beside it. After a verb that takes time the
//! call yields to the executor, so that many simulated calls can be in
//! flight at once on one worker (the benchmark's concurrency).
//!
//! Rules, in the order the trace shows them:
//! * Caller actions at a time happen during the verb running then; an action
//!   exactly at a verb's end happens after it.
//! * Digits pressed go to the call's DTMF buffer (except while a bridge is
//!   up, and while recording); `collect` reads the buffer first.
//! * Playback stops at a terminator digit (of a leg it plays to), which
//!   stays in the buffer.
//! * A recording stops at a terminator digit (consumed), at its time limit or
//!   at a hang-up.
//! * Bridges: see [`SimBackend::bridge_plan`]. Once answered, the answering
//!   endpoint is the *peer* (the b-leg): it presses its scenario `dtmf`
//!   (counted from its answer) and hangs up after `hangup_after_ms`, which
//!   ends the caller's leg too.
//! * Every digit of either leg reaches the metaflow listener beside the verb
//!   ([`Beside`]); when the listener's digit timeout comes first (before a
//!   digit or the peer's hang-up at the same instant, after the verb's end),
//!   the metaflow runs right there and the verb goes on toward its own end
//!   (a metaflow that runs past that end delays it), stops its media
//!   (`break`), or ends (the call was taken elsewhere: reported as a
//!   hang-up, or for an answered bridge as its end).

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use serde_json::Value;

use super::scenario::{CallerAction, EndpointBehaviour, HttpStubs, Media, Trigger};
use crate::engine::control::{
    Beside, BridgeEndpoint, BridgeOutcome, BridgeRequest, BridgeStatus, CONFIRM_TIMEOUT_MS,
    CallControl, CampRequest, Channel, CollectOutcome, CollectReason, CollectRequest,
    ConferenceOutcome, ConsultOutcome, ConsultRequest, ConsultResult, EavesdropOutcome, Gone,
    Hangup, HttpOutcome, HttpRequest, HungUpBy, Leg, Legs, LocalFuture, ParkOutcome, PeerInfo,
    PlayOutcome, PlayReason, PlayRequest, RecordOutcome, RecordReason, RecordRequest, Resume,
    SleepReason, SpeakRequest, Strategy, WaitOutcome, WaitRequest,
};
use crate::engine::rules;
use crate::trace::{Event, Trace};

use super::world::{Activity, Message, Shared, Woke};

/// Time between digits of a DTMF string, unless the scenario says.
pub const DEFAULT_INTERDIGIT_MS: u64 = 100;
/// How long an answered endpoint talks before hanging up, unless the
/// scenario says.
pub const DEFAULT_TALK_MS: u64 = 30_000;
/// Milliseconds of speech per character of TTS or `say` text (at least
/// [`MIN_SPEECH_MS`]).
pub const SPEECH_MS_PER_CHAR: u64 = 65;
pub const MIN_SPEECH_MS: u64 = 500;

/// What does not change during a call: the scenario's world.
#[derive(Debug, Clone)]
pub struct World {
    pub call_id: String,
    pub endpoints: BTreeMap<String, EndpointBehaviour>,
    pub media: Media,
    pub http: BTreeMap<String, HttpStubs>,
    pub allow_network: bool,
    pub allow_private_http: bool,
    pub max_call_ms: u64,
    /// Digits the call takes ([`crate::limits::Limits::max_dtmf_digits`]).
    pub max_dtmf_digits: usize,
    /// The caller is a fax machine (for fax detection).
    pub fax: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Digit(char),
    Hangup,
    /// A digit of the peer connected under this serial number.
    PeerDigit {
        serial: u64,
        digit: char,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct OnCollect {
    delay_ms: u64,
    dtmf: Option<(String, u64)>,
}

/// The endpoint a bridge connected the caller to.
#[derive(Debug, Clone)]
struct Peer {
    serial: u64,
    endpoint: BridgeEndpoint,
    call_id: String,
    hangup_at: u64,
    /// Another call of the world (its call id is `call_id`): it hangs up
    /// by a message, not at `hangup_at`.
    world: bool,
}

/// A leg on hold, and the key of the other leg that ends the hold.
#[derive(Debug, Clone, Copy)]
struct Hold {
    leg: Leg,
    unhold_key: Option<char>,
}

#[derive(Debug, Default)]
struct State {
    now: u64,
    hangup: Option<Hangup>,
    answered: bool,
    buffer: VecDeque<char>,
    /// Caller and peer actions still to come, by (time, order of scheduling).
    timeline: BTreeMap<(u64, u64), Action>,
    scheduled: u64,
    on_collect: VecDeque<OnCollect>,
    recordings: u32,
    /// The id of the whole-call recording running, if any.
    call_recording: Option<String>,
    peer: Option<Peer>,
    /// Peers connected so far (their serial numbers).
    peers: u64,
    hold: Option<Hold>,
    /// An attended transfer runs: the peer hanging up leaves the caller's
    /// leg up.
    consulting: bool,
    /// Another call of the world joined this one while it rang or was
    /// parked: its call id, and its device.
    joined_by: Option<(String, Option<String>)>,
    /// What another call of the world may do to this one now.
    reach: Reach,
    /// The call this one eavesdrops on.
    listening_to: Option<String>,
}

/// What another call may do to a call ([`State::reach`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Reach {
    #[default]
    Nothing,
    /// Its bridge rings, or it is parked: another call may join it.
    Join,
    /// Its bridge is answered (by an endpoint): another call may
    /// intercept it.
    Intercept,
    /// It waits somewhere ([`CallControl::wait`]): another call may wake
    /// it.
    Wake,
}

/// Until when [`SimBackend::advance`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    At(u64),
    /// While the peer of this serial number is connected, until the time
    /// given at most (`u64::MAX`: no limit).
    PeerGone(u64, u64),
}

/// Why [`SimBackend::advance`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Deadline,
    Digit(Leg, char),
    Hangup,
    /// A metaflow asked to stop the media.
    Break,
    /// A metaflow took the call elsewhere.
    TakenOver,
    /// The peer left or was replaced ([`Until::PeerGone`]).
    PeerGone,
    /// The peer hung up during an attended transfer.
    PeerHangup,
    /// Another call joined this one ([`State::joined_by`] says which).
    Joined,
    /// Another call woke this one from a wait ([`Message::Wake`]).
    Woken,
}

/// What happens next on the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    PeerHangup(u64),
    Listener(u64),
    Action(u64),
}

/// A call's place in a multi-call scenario's shared world.
pub struct InWorld {
    pub shared: Rc<Shared>,
    /// When the call started, in the world's time.
    pub offset_ms: u64,
    pub call_id: String,
    /// The device the call comes from, if any (what a call it joins sees
    /// answering).
    pub device: Option<String>,
}

/// One simulated call's world.
pub struct SimBackend {
    world: Rc<World>,
    trace: Rc<RefCell<Trace>>,
    state: RefCell<State>,
    /// Digits taken so far, of both legs.
    digits: crate::engine::rules::Cap,
    /// The other calls, in a multi-call scenario.
    shared: Option<InWorld>,
}

impl SimBackend {
    /// A call whose caller does `caller`.
    pub fn new(world: Rc<World>, caller: &[CallerAction], trace: Rc<RefCell<Trace>>) -> Self {
        let mut state = State::default();
        for action in caller {
            match (action.at_ms, action.on) {
                (Some(at), _) => schedule(&mut state, at, action),
                (None, Some(Trigger::Collect)) => state.on_collect.push_back(OnCollect {
                    delay_ms: action.delay_ms.unwrap_or(0),
                    dtmf: action.dtmf.clone().map(|digits| {
                        (
                            digits,
                            action.interdigit_ms.unwrap_or(DEFAULT_INTERDIGIT_MS),
                        )
                    }),
                }),
                (None, None) => {}
            }
        }
        let digits = crate::engine::rules::Cap::new("dtmf_digits", world.max_dtmf_digits);
        Self {
            world,
            trace,
            state: RefCell::new(state),
            digits,
            shared: None,
        }
    }

    /// The same call as one of a multi-call scenario's.
    #[must_use]
    pub fn in_world(mut self, shared: InWorld) -> Self {
        self.shared = Some(shared);
        self
    }

    /// Waits for the world's clock to reach the call's `t` (nothing to wait
    /// for alone). When another call leaves a message first, the call's
    /// time moves to the world's and the message is taken: a [`Stop`] when
    /// it ends what the call is doing.
    async fn wait_world(&self, t: u64) -> Option<Option<Stop>> {
        let joined = self.shared.as_ref()?;
        let woke = joined
            .shared
            .sleep_until(joined.offset_ms.saturating_add(t), Some(&joined.call_id))
            .await;
        if woke == Woke::Time {
            return None;
        }
        self.catch_up(joined.shared.now().saturating_sub(joined.offset_ms));
        let mut stop = None;
        for message in joined.shared.take_messages(&joined.call_id) {
            stop = stop.or_else(|| self.on_message(message));
        }
        Some(stop)
    }

    /// What a message from another call does to this one.
    fn on_message(&self, message: Message) -> Option<Stop> {
        match message {
            Message::Joined {
                by,
                device,
                intercept,
            } => {
                let mut state = self.state.borrow_mut();
                if state.reach == Reach::Join && state.joined_by.is_none() {
                    state.joined_by = Some((by, device));
                    return Some(Stop::Joined);
                }
                if !(intercept && state.reach == Reach::Intercept) {
                    return None;
                }
                // The callee is hung up and the intercepting call takes its
                // place: the bridge goes on with a new peer.
                let old = state.peer.as_ref().map(|peer| peer.endpoint.id.clone());
                state.peers += 1;
                let serial = state.peers;
                let id = device.unwrap_or_else(|| by.clone());
                state.peer = Some(Peer {
                    serial,
                    endpoint: BridgeEndpoint {
                        id: id.clone(),
                        offnet: false,
                        delay_s: 0,
                        timeout_s: 0,
                        call_waiting: true,
                        caller_id: None,
                    },
                    call_id: by.clone(),
                    hangup_at: u64::MAX,
                    world: true,
                });
                state.hold = None;
                let now = state.now;
                drop(state);
                let mut event = Event::new(now, "intercepted").with("by", by);
                if let Some(old) = old {
                    event = event.with("peer", old);
                }
                self.record(event.with("answered_by", id.as_str()));
                self.set_activity(Activity::Answered(id));
                None
            }
            Message::Wake => (self.state.borrow().reach == Reach::Wake).then_some(Stop::Woken),
            Message::RoomJoined { by, moderator } => {
                self.record(super::world::member_event(
                    self.now(),
                    "join",
                    by,
                    moderator,
                ));
                None
            }
            Message::RoomLeft { by } => {
                self.record(super::world::member_event(self.now(), "leave", by, false));
                None
            }
            Message::Left { by } if self.state.borrow().listening_to.as_deref() == Some(&by) => {
                // The call eavesdropped on ended: so does the eavesdrop.
                self.state.borrow_mut().listening_to = None;
                Some(Stop::PeerGone)
            }
            Message::Left { by } => {
                let ours = self
                    .state
                    .borrow()
                    .peer
                    .as_ref()
                    .is_some_and(|peer| peer.world && peer.call_id == by);
                if !ours {
                    return None;
                }
                self.end(HungUpBy::Callee, "NORMAL_CLEARING", false);
                Some(Stop::Hangup)
            }
        }
    }

    /// A camp's devices are free at `now` (world time): its device rings;
    /// answering in time, it dials the camped number as a new call (the
    /// world places it). Not answering ends the camp (one try).
    fn call_back(&self, shared: &Shared, camp: super::world::Camp, now: u64) {
        let request = camp.request;
        let endpoint = BridgeEndpoint {
            id: request.device.clone(),
            offnet: false,
            delay_s: 0,
            timeout_s: 0,
            call_waiting: true,
            caller_id: None,
        };
        let behaviour = self.behaviour(&endpoint);
        let reachable = !behaviour.busy && !behaviour.unregistered && behaviour.reject.is_none();
        let Some(after) = behaviour
            .answer_after_ms
            .filter(|after| reachable && *after <= request.ring_ms)
        else {
            return;
        };
        shared.spawn(super::world::Spawn {
            id: shared.next_callback_id(),
            at_ms: now.saturating_add(after),
            to: request.number,
            from: request.from,
            caller_id_name: request.caller_id_name,
            calling_device: request.device,
            hangup_after_ms: behaviour.hangup_after_ms.unwrap_or(DEFAULT_TALK_MS),
            dtmf: behaviour.dtmf,
        });
    }

    /// Tells the world what the call does now.
    fn set_activity(&self, activity: Activity) {
        if let Some(joined) = &self.shared {
            joined.shared.set_activity(&joined.call_id, activity);
        }
    }

    fn record(&self, event: Event) {
        self.trace.borrow_mut().push(event);
    }

    fn alive(&self) -> Result<(), Gone> {
        if self.state.borrow().hangup.is_some() {
            Err(Gone)
        } else {
            Ok(())
        }
    }

    fn is_gone(&self) -> bool {
        self.state.borrow().hangup.is_some()
    }

    /// Ends the call (once).
    fn end(&self, by: HungUpBy, cause: &str, timed_out: bool) {
        self.end_with(by, cause, timed_out, None);
    }

    /// Ends the call (once); `sip_code` is the SIP response that ended it,
    /// when one did.
    fn end_with(&self, by: HungUpBy, cause: &str, timed_out: bool, sip_code: Option<u16>) {
        let mut state = self.state.borrow_mut();
        if state.hangup.is_some() {
            return;
        }
        let t_ms = state.now;
        state.hangup = Some(Hangup {
            t_ms,
            cause: cause.to_owned(),
            by,
            timed_out,
            transferred: false,
        });
        let world_peer = state
            .peer
            .as_ref()
            .filter(|peer| peer.world)
            .map(|peer| peer.call_id.clone());
        drop(state);
        if let Some(joined) = &self.shared {
            if let Some(Activity::Conference(room)) = joined.shared.activity(&joined.call_id) {
                for member in joined.shared.room_members(&room, &joined.call_id) {
                    joined.shared.poke(
                        &member,
                        Message::RoomLeft {
                            by: joined.call_id.clone(),
                        },
                    );
                }
            }
            joined.shared.set_activity(&joined.call_id, Activity::Ended);
            // Its devices may be free now: whoever waits for one looks
            // again (a queue's callers, for its agents; camps).
            for waiting in joined.shared.all_waiting(&joined.call_id) {
                joined.shared.poke(&waiting, Message::Wake);
            }
            for camp in joined.shared.ready_camps() {
                self.call_back(&joined.shared, camp, joined.offset_ms.saturating_add(t_ms));
            }
            for listener in joined.shared.take_listeners(&joined.call_id) {
                joined.shared.poke(
                    &listener,
                    Message::Left {
                        by: joined.call_id.clone(),
                    },
                );
            }
            if let Some(peer) = world_peer {
                joined.shared.poke(
                    &peer,
                    Message::Left {
                        by: joined.call_id.clone(),
                    },
                );
            }
        }
        let mut event = Event::new(t_ms, "hangup").with("cause", cause);
        if let Some(code) = sip_code {
            event = event.with("sip_code", code);
        }
        self.record(event.with("by", by.as_str()));
    }

    fn peer_serial(&self) -> Option<u64> {
        self.state.borrow().peer.as_ref().map(|peer| peer.serial)
    }

    /// What comes first before `capped`: the peer hanging up, the listener's
    /// deadline, or the next action (in that order on a tie).
    fn next_event(&self, capped: u64, beside: &dyn Beside) -> Option<Next> {
        let state = self.state.borrow();
        let action = state
            .timeline
            .first_key_value()
            .map(|(&(t, _), _)| t)
            .filter(|t| *t < capped)
            .map(Next::Action);
        let hangup = state
            .peer
            .as_ref()
            .map(|peer| peer.hangup_at)
            .filter(|t| *t < capped)
            .map(Next::PeerHangup);
        drop(state);
        let listener = beside
            .deadline()
            .filter(|t| *t < capped)
            .map(Next::Listener);
        [hangup, listener, action]
            .into_iter()
            .flatten()
            .min_by_key(|next| match next {
                Next::PeerHangup(t) => (*t, 0),
                Next::Listener(t) => (*t, 1),
                Next::Action(t) => (*t, 2),
            })
    }

    fn catch_up(&self, t: u64) {
        let mut state = self.state.borrow_mut();
        state.now = state.now.max(t);
    }

    /// Moves time forward until `until`, playing the caller's and the peer's
    /// actions on the way: the caller's digits go to the buffer when
    /// `buffer` is set (and no bridge is up), every digit reaches the
    /// listener, and `stop_on` says which digits end the wait; a hang-up
    /// ends it. When the listener's deadline comes, what it fires runs here.
    /// Reaching the call's time limit hangs up.
    async fn advance(
        &self,
        until: Until,
        buffer: bool,
        stop_on: &dyn Fn(Leg, char) -> bool,
        beside: &dyn Beside,
    ) -> Stop {
        let limit = self.world.max_call_ms;
        loop {
            let end = match until {
                Until::At(t) => t,
                Until::PeerGone(serial, end) => {
                    if self.peer_serial() != Some(serial) {
                        return Stop::PeerGone;
                    }
                    end
                }
            };
            let capped = end.min(limit);
            let next = self.next_event(capped, beside);
            let at = match next {
                None => capped,
                Some(Next::PeerHangup(t) | Next::Listener(t) | Next::Action(t)) => t,
            };
            match self.wait_world(at).await {
                None => {}
                Some(Some(stop)) => return stop,
                // A message that changes nothing here: look again.
                Some(None) => continue,
            }
            match next {
                None => {
                    self.catch_up(capped);
                    if capped >= limit {
                        self.end(HungUpBy::System, "ALLOTTED_TIMEOUT", true);
                        return Stop::Hangup;
                    }
                    return Stop::Deadline;
                }
                Some(Next::PeerHangup(t)) => {
                    self.catch_up(t);
                    if self.state.borrow().consulting {
                        let mut state = self.state.borrow_mut();
                        state.peer = None;
                        state.hold = None;
                        return Stop::PeerHangup;
                    }
                    self.end(HungUpBy::Callee, "NORMAL_CLEARING", false);
                    return Stop::Hangup;
                }
                Some(Next::Listener(t)) => {
                    self.catch_up(t);
                    match beside.fire().await {
                        Resume::Continue if !self.is_gone() => {}
                        Resume::Break if !self.is_gone() => return Stop::Break,
                        Resume::Stop if !self.is_gone() => return Stop::TakenOver,
                        _ => return Stop::Hangup,
                    }
                }
                Some(Next::Action(_)) => {
                    let Some(((t, _), action)) = self.state.borrow_mut().timeline.pop_first()
                    else {
                        continue;
                    };
                    self.catch_up(t);
                    if let Some(stop) = self.act(t, action, buffer, stop_on, beside) {
                        return stop;
                    }
                }
            }
        }
    }

    /// Plays one action of the timeline at `t`.
    fn act(
        &self,
        t: u64,
        action: Action,
        buffer: bool,
        stop_on: &dyn Fn(Leg, char) -> bool,
        beside: &dyn Beside,
    ) -> Option<Stop> {
        if !matches!(action, Action::Hangup)
            && let Err(limit) = self.digits.take(t)
        {
            if let Some(limit) = limit {
                self.record(limit);
            }
            return None;
        }
        let (leg, digit) = match action {
            Action::Hangup => {
                self.end(HungUpBy::Caller, "NORMAL_CLEARING", false);
                return Some(Stop::Hangup);
            }
            Action::Digit(digit) => {
                self.record(Event::new(t, "dtmf").with("digit", digit.to_string()));
                let mut state = self.state.borrow_mut();
                if buffer && state.peer.is_none() {
                    state.buffer.push_back(digit);
                }
                (Leg::A, digit)
            }
            Action::PeerDigit { serial, digit } => {
                if self.peer_serial() != Some(serial) {
                    // The peer that would have pressed it is gone.
                    return None;
                }
                self.record(
                    Event::new(t, "dtmf")
                        .with("digit", digit.to_string())
                        .with("leg", Leg::B.as_str()),
                );
                (Leg::B, digit)
            }
        };
        beside.dtmf(t, leg, digit);
        self.unhold_by_key(t, leg, digit);
        stop_on(leg, digit).then_some(Stop::Digit(leg, digit))
    }

    /// The unhold key pressed on the leg that is not held ends the hold.
    fn unhold_by_key(&self, t: u64, pressed: Leg, digit: char) {
        let mut state = self.state.borrow_mut();
        let Some(hold) = state.hold else { return };
        if hold.leg == pressed || hold.unhold_key != Some(digit) {
            return;
        }
        state.hold = None;
        drop(state);
        self.record(
            Event::new(t, "leg_unhold")
                .with("leg", hold.leg.as_str())
                .with("key", digit.to_string()),
        );
    }

    /// [`SimBackend::advance`] for verbs a `break` does not stop.
    async fn advance_through_breaks(
        &self,
        until: Until,
        buffer: bool,
        stop_on: &dyn Fn(Leg, char) -> bool,
        beside: &dyn Beside,
    ) -> Stop {
        loop {
            match self.advance(until, buffer, stop_on, beside).await {
                Stop::Break => {}
                stop => return stop,
            }
        }
    }

    fn now(&self) -> u64 {
        self.state.borrow().now
    }

    fn media_ms(&self, media: &str) -> u64 {
        self.world
            .media
            .durations_ms
            .get(media)
            .copied()
            .unwrap_or(self.world.media.default_ms)
    }

    /// How long speaking `text` takes: the scenario's `speech_ms` for it,
    /// else [`SPEECH_MS_PER_CHAR`] per character (at least
    /// [`MIN_SPEECH_MS`]).
    fn speech_ms(&self, text: &str) -> u64 {
        self.world
            .media
            .speech_ms
            .get(text)
            .copied()
            .unwrap_or_else(|| {
                (text.chars().count() as u64 * SPEECH_MS_PER_CHAR).max(MIN_SPEECH_MS)
            })
    }

    /// Plays something lasting `ms` (`u64::MAX`: until stopped) to `legs`.
    async fn playback(
        &self,
        ms: u64,
        terminators: &str,
        legs: Legs,
        beside: &dyn Beside,
    ) -> PlayOutcome {
        let start = self.now();
        let stop = self
            .advance(
                Until::At(start.saturating_add(ms)),
                true,
                &|leg, d| legs.includes(leg) && terminators.contains(d),
                beside,
            )
            .await;
        let (reason, digit) = match stop {
            Stop::Deadline
            | Stop::Break
            | Stop::PeerGone
            | Stop::PeerHangup
            | Stop::Joined
            | Stop::Woken => (PlayReason::Completed, None),
            Stop::Digit(_, d) => (PlayReason::Terminator, Some(d)),
            Stop::Hangup | Stop::TakenOver => (PlayReason::Hangup, None),
        };
        PlayOutcome {
            reason,
            digit,
            duration_ms: self.now() - start,
        }
    }

    /// Schedules the next `on: collect` action, if any, from now.
    fn trigger_collect(&self) {
        let mut state = self.state.borrow_mut();
        let Some(action) = state.on_collect.pop_front() else {
            return;
        };
        let at = state.now.saturating_add(action.delay_ms);
        match action.dtmf {
            Some((digits, interdigit)) => schedule_digits(&mut state, at, &digits, interdigit),
            None => insert(&mut state, at, Action::Hangup),
        }
    }

    async fn collect_digits(
        &self,
        request: &CollectRequest,
        beside: &dyn Beside,
    ) -> CollectOutcome {
        let start = self.now();
        if let Some(prompt) = &request.prompt {
            let outcome = self
                .playback(self.media_ms(prompt), "0123456789*#", Legs::A, beside)
                .await;
            if outcome.reason == PlayReason::Hangup {
                return collected(String::new(), CollectReason::Hangup, self.now() - start);
            }
        }
        self.trigger_collect();
        rules::collect(
            request,
            start,
            &|| self.now(),
            &|| self.state.borrow_mut().buffer.pop_front(),
            |deadline| async move {
                match self
                    .advance(Until::At(deadline), true, &|leg, _| leg == Leg::A, beside)
                    .await
                {
                    Stop::Deadline => rules::Waited::Timeout,
                    Stop::Hangup | Stop::TakenOver => rules::Waited::Hangup,
                    Stop::Digit(..)
                    | Stop::Break
                    | Stop::PeerGone
                    | Stop::PeerHangup
                    | Stop::Joined
                    | Stop::Woken => rules::Waited::Again,
                }
            },
        )
        .await
    }

    /// When each endpoint answers or fails, and who wins.
    ///
    /// * An endpoint rings from `start + delay`; it answers after its
    ///   `answer_after_ms` if that is within its own timeout, else fails with
    ///   `NO_ANSWER` (SIP 480) when the timeout ends. `busy` fails at once
    ///   with `USER_BUSY` (486), `reject` with its cause and code (default
    ///   `CALL_REJECTED`, 603), `unregistered` with `USER_NOT_REGISTERED`
    ///   (404). Devices the scenario does not list ring without answering.
    /// * `simultaneous`: the earliest answer wins (the first listed on a tie).
    ///   Without one, the bridge fails when the last endpoint does: `busy` if
    ///   all were busy, `no_answer` if any rang out, else `failed` with the
    ///   cause of the last to fail.
    /// * `single`: endpoints ring one after another; the first to answer
    ///   wins; otherwise the last one's failure is the bridge's.
    /// * The overall timeout ends ringing with `no_answer`.
    fn bridge_plan(&self, request: &BridgeRequest, start: u64) -> Plan {
        let overall_end = start.saturating_add(request.timeout_s.saturating_mul(1000));
        let mut failures: Vec<Failure> = Vec::new();
        let mut winner: Option<(usize, u64, u64)> = None;
        let mut ring_from = start;
        for (index, endpoint) in request.endpoints.iter().enumerate() {
            let begins = match request.strategy {
                Strategy::Simultaneous => start,
                Strategy::Single => ring_from,
            }
            .saturating_add(endpoint.delay_s.saturating_mul(1000));
            if begins >= overall_end {
                break;
            }
            let fate = self.fate(
                endpoint,
                request,
                begins,
                endpoint.timeout_s.saturating_mul(1000),
            );
            match fate {
                Fate::Answer { at, origin } if at <= overall_end => {
                    if winner.is_none_or(|(_, best, _)| at < best) {
                        winner = Some((index, at, origin));
                    }
                    if request.strategy == Strategy::Single {
                        break;
                    }
                }
                Fate::Answer { .. } => failures.push(Failure::no_answer(overall_end)),
                Fate::Fail(failure) => {
                    ring_from = failure.at;
                    failures.push(failure);
                }
            }
        }
        if let Some((index, at, origin)) = winner {
            return Plan::Answered {
                endpoint: request.endpoints[index].clone(),
                at,
                origin,
            };
        }
        let Some(last) = failures.iter().max_by_key(|f| f.at) else {
            return Plan::Failed(Failure {
                at: start,
                status: BridgeStatus::Failed,
                cause: "NO_ROUTE_DESTINATION".to_owned(),
                sip: 404,
            });
        };
        if last.at > overall_end || failures.len() < request.endpoints.len() {
            return Plan::Failed(Failure::no_answer(overall_end.min(last.at.max(start))));
        }
        let status = match request.strategy {
            Strategy::Single => last.status,
            Strategy::Simultaneous => {
                if failures.iter().all(|f| f.status == BridgeStatus::Busy) {
                    BridgeStatus::Busy
                } else if failures.iter().any(|f| f.status == BridgeStatus::NoAnswer) {
                    BridgeStatus::NoAnswer
                } else {
                    BridgeStatus::Failed
                }
            }
        };
        // `max_by_key` keeps the last of equal keys: ties go to the endpoint
        // listed last.
        let last = last.clone();
        let (cause, sip) = match status {
            BridgeStatus::NoAnswer => ("NO_ANSWER".to_owned(), 480),
            BridgeStatus::Busy => ("USER_BUSY".to_owned(), 486),
            _ => (last.cause.clone(), last.sip),
        };
        Plan::Failed(Failure {
            at: last.at,
            status,
            cause,
            sip,
        })
    }

    /// How one endpoint answers or fails. Off-net numbers are looked up by
    /// number, then under `"offnet"` (any carrier call).
    /// What becomes of `endpoint` rung from `begins` for `timeout_ms`: a
    /// bridge asking for confirmation (`confirm`) connects it only once the
    /// device pressed the key, within [`CONFIRM_TIMEOUT_MS`] of answering
    /// (else it is hung up: no answer).
    fn fate(
        &self,
        endpoint: &BridgeEndpoint,
        request: &BridgeRequest,
        begins: u64,
        timeout_ms: u64,
    ) -> Fate {
        let page = request.page;
        let behaviour = self.behaviour(endpoint);
        let fail = |status, cause: &str, sip| {
            Fate::Fail(Failure {
                at: begins,
                status,
                cause: cause.to_owned(),
                sip,
            })
        };
        if behaviour.unregistered {
            return fail(BridgeStatus::Failed, "USER_NOT_REGISTERED", 404);
        }
        let on_a_call = !endpoint.offnet
            && !endpoint.call_waiting
            && self
                .shared
                .as_ref()
                .is_some_and(|joined| joined.shared.device_busy(&endpoint.id, &joined.call_id));
        if behaviour.busy || on_a_call {
            return fail(BridgeStatus::Busy, "USER_BUSY", 486);
        }
        if let Some(reject) = &behaviour.reject {
            return fail(BridgeStatus::Failed, &reject.cause, reject.sip);
        }
        if page {
            // Paged devices answer by themselves.
            return Fate::Answer {
                at: begins,
                origin: begins,
            };
        }
        let origin = match behaviour.answer_after_ms {
            Some(after) if after <= timeout_ms => begins.saturating_add(after),
            _ => return Fate::Fail(Failure::no_answer(begins.saturating_add(timeout_ms))),
        };
        let Some(confirm) = &request.options.confirm else {
            return Fate::Answer { at: origin, origin };
        };
        match confirm_press(&behaviour, confirm.key) {
            Some(after) if after <= CONFIRM_TIMEOUT_MS => Fate::Answer {
                at: origin.saturating_add(after),
                origin,
            },
            _ => Fate::Fail(Failure::no_answer(
                origin.saturating_add(CONFIRM_TIMEOUT_MS),
            )),
        }
    }

    /// How the scenario says an endpoint behaves: by id, then (off-net
    /// numbers) under `"offnet"`.
    fn behaviour(&self, endpoint: &BridgeEndpoint) -> EndpointBehaviour {
        let endpoints = &self.world.endpoints;
        endpoints
            .get(&endpoint.id)
            .or_else(|| endpoint.offnet.then(|| endpoints.get("offnet")).flatten())
            .cloned()
            .unwrap_or_default()
    }

    /// Makes `endpoint`, answered at `at`, the peer: it talks until its
    /// `hangup_after_ms` and presses its `dtmf` (those still to come).
    /// The callee answered at `origin` and is connected `at` (later when
    /// it confirmed the call first): its talk time and digits count from
    /// its answer, and a digit that confirmed the call is not heard again.
    fn connect_peer(&self, endpoint: &BridgeEndpoint, at: u64, origin: u64) -> u64 {
        let behaviour = self.behaviour(endpoint);
        let talk = behaviour.hangup_after_ms.unwrap_or(DEFAULT_TALK_MS);
        let mut state = self.state.borrow_mut();
        state.peers += 1;
        let serial = state.peers;
        state.peer = Some(Peer {
            serial,
            endpoint: endpoint.clone(),
            call_id: format!("{}-b{serial}", self.world.call_id),
            hangup_at: origin.saturating_add(talk).max(at),
            world: false,
        });
        state.hold = None;
        let now = state.now;
        for (offset, digit) in presses(&behaviour) {
            let t = origin.saturating_add(offset);
            if t >= now && (origin == at || t > at) {
                insert(&mut state, t, Action::PeerDigit { serial, digit });
            }
        }
        serial
    }

    fn disconnect_peer(&self) {
        let mut state = self.state.borrow_mut();
        state.peer = None;
        state.hold = None;
    }

    async fn run_bridge(&self, request: &BridgeRequest, beside: &dyn Beside) -> BridgeOutcome {
        let start = self.now();
        if self.state.borrow().peer.is_some() {
            // One bridge at a time (a metaflow cannot bridge a bridged call).
            return BridgeOutcome::failed(0, BridgeStatus::Failed, "INCOMPATIBLE_DESTINATION", 488);
        }
        let plan = self.bridge_plan(request, start);
        let ring_end = match &plan {
            Plan::Answered { at, .. } => *at,
            Plan::Failed(failure) => failure.at,
        };
        // Ringing: the caller may press digits (early media) or give up;
        // another call may pick it up.
        self.set_activity(Activity::Ringing(
            request.endpoints.iter().map(|e| e.id.clone()).collect(),
        ));
        self.state.borrow_mut().reach = Reach::Join;
        let rang = self
            .advance_through_breaks(Until::At(ring_end), true, &|_, _| false, beside)
            .await;
        self.state.borrow_mut().reach = Reach::Nothing;
        self.set_activity(Activity::Busy);
        let joined_by = self.state.borrow_mut().joined_by.take();
        if rang == Stop::Joined
            && let Some((by, device)) = joined_by
        {
            return self.talk_to_call(&by, device, start, beside).await;
        }
        if matches!(rang, Stop::Hangup | Stop::TakenOver) {
            let timed_out = self
                .state
                .borrow()
                .hangup
                .as_ref()
                .is_some_and(|h| h.timed_out);
            let (cause, sip) = if timed_out {
                ("ALLOTTED_TIMEOUT", 408)
            } else {
                ("ORIGINATOR_CANCEL", 487)
            };
            return BridgeOutcome::failed(self.now() - start, BridgeStatus::Hangup, cause, sip);
        }
        match plan {
            Plan::Failed(failure) => BridgeOutcome::failed(
                self.now() - start,
                failure.status,
                &failure.cause,
                failure.sip,
            ),
            Plan::Answered {
                endpoint,
                at,
                origin,
            } => {
                let mut serial = self.connect_peer(&endpoint, at, origin);
                self.set_activity(Activity::Answered(endpoint.id.clone()));
                self.state.borrow_mut().reach = Reach::Intercept;
                beside.bridged(Some(&endpoint));
                // The talk time allowed: then the call ends, both legs.
                let limit = request
                    .options
                    .time_limit_s
                    .map_or(u64::MAX, |s| at.saturating_add(s.saturating_mul(1000)));
                // Talking: digits go to the other party, not to our buffer,
                // until a side hangs up (the callee's hang-up ends the
                // caller's leg too), the peer leaves or the time is up.
                loop {
                    match self
                        .advance(Until::PeerGone(serial, limit), false, &|_, _| false, beside)
                        .await
                    {
                        Stop::PeerGone => match self.peer_serial() {
                            Some(next) => serial = next,
                            None => break,
                        },
                        Stop::Hangup | Stop::TakenOver => break,
                        Stop::Deadline if self.now() >= limit => {
                            self.disconnect_peer();
                            self.end(HungUpBy::System, "ALLOTTED_TIMEOUT", true);
                            break;
                        }
                        Stop::Deadline
                        | Stop::Digit(..)
                        | Stop::Break
                        | Stop::PeerHangup
                        | Stop::Joined
                        | Stop::Woken => {}
                    }
                }
                self.state.borrow_mut().reach = Reach::Nothing;
                self.set_activity(Activity::Busy);
                self.disconnect_peer();
                beside.bridged(None);
                BridgeOutcome::answered(endpoint.id, self.now() - start, self.now() - at)
            }
        }
    }

    /// Connects the call to another call of the world (`call_id`, from
    /// `device`), until one of them hangs up: the bridge a pickup answers,
    /// or the pickup itself.
    async fn talk_to_call(
        &self,
        call_id: &str,
        device: Option<String>,
        start: u64,
        beside: &dyn Beside,
    ) -> BridgeOutcome {
        let at = self.now();
        let endpoint = BridgeEndpoint {
            id: device.unwrap_or_else(|| call_id.to_owned()),
            offnet: false,
            delay_s: 0,
            timeout_s: 0,
            call_waiting: true,
            caller_id: None,
        };
        let serial = {
            let mut state = self.state.borrow_mut();
            state.peers += 1;
            let serial = state.peers;
            state.peer = Some(Peer {
                serial,
                endpoint: endpoint.clone(),
                call_id: call_id.to_owned(),
                hangup_at: u64::MAX,
                world: true,
            });
            state.hold = None;
            serial
        };
        self.set_activity(Activity::Answered(endpoint.id.clone()));
        beside.bridged(Some(&endpoint));
        loop {
            match self
                .advance(
                    Until::PeerGone(serial, u64::MAX),
                    false,
                    &|_, _| false,
                    beside,
                )
                .await
            {
                Stop::Hangup | Stop::TakenOver | Stop::PeerGone => break,
                Stop::Deadline
                | Stop::Digit(..)
                | Stop::Break
                | Stop::PeerHangup
                | Stop::Joined
                | Stop::Woken => {}
            }
        }
        self.disconnect_peer();
        self.set_activity(Activity::Busy);
        beside.bridged(None);
        BridgeOutcome::answered(endpoint.id, self.now() - start, self.now() - at)
    }

    /// Picks up `target`'s ringing bridge (or a call parked there): the
    /// two calls talk until one hangs up.
    async fn run_pickup(
        &self,
        target: &str,
        intercept: bool,
        beside: &dyn Beside,
    ) -> BridgeOutcome {
        let start = self.now();
        let joinable =
            self.shared
                .as_ref()
                .is_some_and(|joined| match joined.shared.activity(target) {
                    Some(Activity::Ringing(_) | Activity::Parked(_)) => true,
                    Some(Activity::Answered(_)) => intercept,
                    _ => false,
                });
        let Some(joined) = self.shared.as_ref().filter(|_| joinable) else {
            return BridgeOutcome::failed(0, BridgeStatus::Failed, "NO_ROUTE_DESTINATION", 404);
        };
        if self.state.borrow().peer.is_some() {
            return BridgeOutcome::failed(0, BridgeStatus::Failed, "INCOMPATIBLE_DESTINATION", 488);
        }
        joined.shared.poke(
            target,
            Message::Joined {
                by: joined.call_id.clone(),
                device: joined.device.clone(),
                intercept,
            },
        );
        self.talk_to_call(target, None, start, beside).await
    }

    /// Waits at `place` (see [`CallControl::wait`]).
    async fn run_wait(
        &self,
        place: &str,
        ms: u64,
        digits: &str,
        since: Option<i64>,
        beside: &dyn Beside,
    ) -> WaitOutcome {
        let start = self.now();
        if let Some(joined) = &self.shared {
            joined.shared.set_waiting(&joined.call_id, place, since);
        }
        self.state.borrow_mut().reach = Reach::Wake;
        let stop = self
            .advance(
                Until::At(start.saturating_add(ms)),
                true,
                &|leg, digit| leg == Leg::A && digits.contains(digit),
                beside,
            )
            .await;
        self.state.borrow_mut().reach = Reach::Nothing;
        self.set_activity(Activity::Busy);
        let (reason, digit) = match stop {
            Stop::Woken => ("woken", None),
            Stop::Digit(_, digit) => {
                // The digit is the wait's answer, not one to collect later.
                let mut state = self.state.borrow_mut();
                if state.buffer.back() == Some(&digit) {
                    state.buffer.pop_back();
                }
                ("digit", Some(digit))
            }
            Stop::Hangup | Stop::TakenOver => ("hangup", None),
            _ => ("timeout", None),
        };
        park().await;
        WaitOutcome {
            reason,
            digit,
            duration_ms: self.now() - start,
        }
    }

    /// In conference room `room` until the caller hangs up: the members
    /// there hear it join (and, from `end_with`, leave); it hears the
    /// others (`conference_member` events).
    async fn run_conference(
        &self,
        room: &str,
        moderator: bool,
        beside: &dyn Beside,
    ) -> ConferenceOutcome {
        let start = self.now();
        let mut members = 0;
        if let Some(joined) = &self.shared {
            let others = joined.shared.room_members(room, &joined.call_id);
            members = others.len();
            joined
                .shared
                .set_activity(&joined.call_id, Activity::Conference(room.to_owned()));
            for member in others {
                joined.shared.poke(
                    &member,
                    Message::RoomJoined {
                        by: joined.call_id.clone(),
                        moderator,
                    },
                );
            }
        }
        loop {
            let stop = self
                .advance(Until::At(u64::MAX), false, &|_, _| false, beside)
                .await;
            if matches!(stop, Stop::Hangup | Stop::TakenOver) {
                break;
            }
        }
        ConferenceOutcome {
            members,
            reason: "hangup",
            duration_ms: self.now() - start,
        }
    }

    /// Listens to `target` until it ends or this call hangs up; the
    /// eavesdropper's digits change the mode (FreeSWITCH's eavesdrop with
    /// DTMF: 1 whisper to the target's caller, 2 whisper to its peer, 3
    /// three-way, 0 listen again), each change an `eavesdrop_mode` event.
    async fn run_eavesdrop(&self, target: &str, beside: &dyn Beside) -> EavesdropOutcome {
        let start = self.now();
        let Some(joined) = self.shared.as_ref().filter(|joined| {
            !matches!(joined.shared.activity(target), None | Some(Activity::Ended))
                && target != joined.call_id
        }) else {
            return EavesdropOutcome {
                reason: "no_call",
                duration_ms: 0,
            };
        };
        joined.shared.listen(target, &joined.call_id);
        self.state.borrow_mut().listening_to = Some(target.to_owned());
        let reason = loop {
            let stop = self
                .advance(
                    Until::At(u64::MAX),
                    false,
                    &|leg, digit| leg == Leg::A && matches!(digit, '0'..='3'),
                    beside,
                )
                .await;
            match stop {
                Stop::Digit(_, digit) => {
                    self.record(super::world::eavesdrop_mode_event(self.now(), digit));
                }
                Stop::PeerGone => break "target_ended",
                Stop::Hangup | Stop::TakenOver => break "hangup",
                Stop::Deadline | Stop::Break | Stop::PeerHangup | Stop::Joined | Stop::Woken => {}
            }
        };
        self.state.borrow_mut().listening_to = None;
        EavesdropOutcome {
            reason,
            duration_ms: self.now() - start,
        }
    }

    /// An attended transfer (see [`ConsultRequest`]) between the bridge's
    /// legs and a target, in two phases: the target rings, then (answered)
    /// the transferor talks to it.
    ///
    /// * The transferor's takeback digits cancel it: the legs talk again.
    /// * The transferor hanging up completes it: the transferee talks to the
    ///   target once it answers (a partial transfer while it still rings;
    ///   if it then never answers, the transferee is hung up, as Kazoo
    ///   does). When the transferor is the caller, the simulated call ends
    ///   there: the transfer goes on between the others.
    /// * The target not answering, or hanging up after answering,
    ///   reconnects the legs.
    /// * The transferee hanging up leaves the transferor with the target.
    async fn consult(&self, request: &ConsultRequest, beside: &dyn Beside) -> ConsultOutcome {
        let start = self.now();
        let done = |result, answered_by: Option<String>| {
            let mut state = self.state.borrow_mut();
            state.consulting = false;
            state.hold = None;
            ConsultOutcome {
                result,
                answered_by,
                duration_ms: state.now - start,
            }
        };
        if self.state.borrow().peer.is_none() {
            return done(ConsultResult::Failed, None);
        }
        let transferor = request.transferor;
        let plan = self.begin_consult(request, start);
        let takeback = rules::Takeback::new(request);
        let (answer, ring_end, failure) = match plan {
            Plan::Answered {
                endpoint,
                at,
                origin,
            } => (Some((endpoint, at, origin)), at, None),
            Plan::Failed(failure) => (None, failure.at, Some(failure.status)),
        };
        let failed = match failure {
            Some(BridgeStatus::Busy) => ConsultResult::Busy,
            Some(BridgeStatus::NoAnswer) => ConsultResult::NoAnswer,
            _ => ConsultResult::Failed,
        };
        let answered_by = answer.as_ref().map(|(endpoint, _, _)| endpoint.id.clone());
        // Phase 1: the target rings.
        let peer_left = match self.consult_ring(ring_end, &takeback, beside).await {
            Rang::Takeback => return done(ConsultResult::Takeback, None),
            Rang::CallerGone if transferor == Leg::A && answer.is_some() => {
                return done(ConsultResult::Completed, answered_by);
            }
            Rang::CallerGone if transferor == Leg::A => return done(failed, None),
            Rang::CallerGone => return done(ConsultResult::Hangup, None),
            Rang::Over { peer_left } => peer_left,
        };
        // The peer hung up while the target rang: the transferor (a partial
        // transfer) or the transferee.
        let transferor_gone = peer_left && transferor == Leg::B;
        let Some((target, answered_at, origin)) = answer else {
            if transferor_gone {
                // A partial transfer nobody answered: Kazoo hangs up the
                // transferee.
                self.end(HungUpBy::System, "NORMAL_CLEARING", false);
            }
            if peer_left {
                beside.bridged(None);
            }
            return done(failed, None);
        };
        let connect_target = || {
            self.connect_peer(&target, answered_at, origin);
            // Kazoo starts no metaflow binding for a transfer's target.
            beside.bridged(None);
        };
        if request.complete_on_answer || transferor_gone {
            if transferor == Leg::B {
                connect_target();
            }
            return done(ConsultResult::Completed, answered_by);
        }
        if peer_left {
            // The transferee (the peer) hung up while the target rang: the
            // transferor (the caller) talks to the target.
            connect_target();
            return done(ConsultResult::TransfereeHangup, answered_by);
        }
        // Phase 2: the transferor talks to the target.
        let target_hangup = answered_at.saturating_add(
            self.behaviour(&target)
                .hangup_after_ms
                .unwrap_or(DEFAULT_TALK_MS),
        );
        let result = match self.consult_wait(target_hangup, &takeback, beside).await {
            Waited::Until => ConsultResult::TargetHangup,
            Waited::Takeback => ConsultResult::Takeback,
            Waited::PeerHangup => {
                connect_target();
                if transferor == Leg::B {
                    ConsultResult::Completed
                } else {
                    ConsultResult::TransfereeHangup
                }
            }
            Waited::CallerGone if transferor == Leg::A => ConsultResult::Completed,
            Waited::CallerGone => ConsultResult::Hangup,
        };
        done(result, answered_by)
    }

    /// Waits in an attended transfer until `until` (the end of the ringing,
    /// or the target's hang-up) or until a leg does something.
    async fn consult_wait(
        &self,
        until: u64,
        takeback: &rules::Takeback,
        beside: &dyn Beside,
    ) -> Waited {
        loop {
            match self
                .advance(
                    Until::At(until),
                    false,
                    &|l, d| takeback.pressed(l, d),
                    beside,
                )
                .await
            {
                Stop::Deadline => return Waited::Until,
                Stop::Digit(..) => return Waited::Takeback,
                Stop::PeerHangup => return Waited::PeerHangup,
                Stop::Hangup | Stop::TakenOver => return Waited::CallerGone,
                Stop::Break | Stop::PeerGone | Stop::Joined | Stop::Woken => {}
            }
        }
    }

    /// Starts an attended transfer at `start`: the transferee on hold
    /// (unless it is a move), the target's ringing planned.
    fn begin_consult(&self, request: &ConsultRequest, start: u64) -> Plan {
        let ring = request.ring();
        let mut state = self.state.borrow_mut();
        state.consulting = true;
        if !request.complete_on_answer {
            state.hold = Some(Hold {
                leg: request.transferor.other(),
                unhold_key: None,
            });
        }
        drop(state);
        self.bridge_plan(&ring, start)
    }

    /// The first phase of an attended transfer: the target rings until
    /// `ring_end`; the peer may hang up meanwhile.
    async fn consult_ring(
        &self,
        ring_end: u64,
        takeback: &rules::Takeback,
        beside: &dyn Beside,
    ) -> Rang {
        let mut peer_left = false;
        loop {
            match self.consult_wait(ring_end, takeback, beside).await {
                Waited::Until => return Rang::Over { peer_left },
                Waited::Takeback => return Rang::Takeback,
                Waited::PeerHangup => peer_left = true,
                Waited::CallerGone => return Rang::CallerGone,
            }
        }
    }

    async fn http_response(&self, request: &HttpRequest, beside: &dyn Beside) -> HttpOutcome {
        let start = self.now();
        if let Some(reason) =
            super::network::refused(&request.url).filter(|_| !self.world.allow_private_http)
        {
            return HttpOutcome::failed(reason);
        }
        let Some(stub) = super::stubs::find(&self.world.http, request) else {
            let error = if self.world.allow_network {
                super::network::request(request, self.world.allow_private_http)
            } else {
                Err(format!(
                    "no stub for {} in the scenario's \"http\" (pass --allow-network to make real requests)",
                    request.url
                ))
            };
            return match error {
                Ok(mut outcome) => {
                    outcome.duration_ms = 0;
                    outcome
                }
                Err(error) => HttpOutcome::failed(error),
            };
        };
        self.advance_through_breaks(
            Until::At(start.saturating_add(stub.delay_ms)),
            true,
            &|_, _| false,
            beside,
        )
        .await;
        let body = match &stub.body {
            None => String::new(),
            Some(Value::String(text)) => text.clone(),
            Some(other) => other.to_string(),
        };
        HttpOutcome {
            status: stub.status,
            body,
            headers: stub.headers.clone(),
            error: None,
            duration_ms: self.now() - start,
        }
    }
}

#[derive(Debug, Clone)]
struct Failure {
    at: u64,
    status: BridgeStatus,
    cause: String,
    sip: u16,
}

impl Failure {
    fn no_answer(at: u64) -> Self {
        Self {
            at,
            status: BridgeStatus::NoAnswer,
            cause: "NO_ANSWER".to_owned(),
            sip: 480,
        }
    }
}

enum Fate {
    /// Connected `at`; the device answered at `origin` (earlier when it
    /// had to confirm the call first).
    Answer {
        at: u64,
        origin: u64,
    },
    Fail(Failure),
}

/// How the ringing phase of an attended transfer ended.
enum Rang {
    /// The target answered or failed; whether the peer hung up meanwhile.
    Over {
        peer_left: bool,
    },
    Takeback,
    /// The caller's leg is gone.
    CallerGone,
}

/// Why a wait of an attended transfer ended.
enum Waited {
    /// The time waited for came (the ringing ended, the target hung up).
    Until,
    Takeback,
    /// The peer (transferor or transferee) hung up.
    PeerHangup,
    /// The caller's leg is gone.
    CallerGone,
}

enum Plan {
    /// Connected `at` (the device answered at `origin`).
    Answered {
        endpoint: BridgeEndpoint,
        at: u64,
        origin: u64,
    },
    Failed(Failure),
}

/// The digits a simulated device presses once answered: each with its
/// time from the answer (an entry's digits [`DEFAULT_INTERDIGIT_MS`] apart).
fn presses(behaviour: &EndpointBehaviour) -> Vec<(u64, char)> {
    let mut out = Vec::new();
    for press in &behaviour.dtmf {
        let mut t = press.at_ms;
        for digit in press.digits.chars() {
            out.push((t, digit));
            t = t.saturating_add(DEFAULT_INTERDIGIT_MS);
        }
    }
    out
}

/// When (from its answer) a device first presses `key`.
fn confirm_press(behaviour: &EndpointBehaviour, key: char) -> Option<u64> {
    presses(behaviour)
        .into_iter()
        .filter(|(_, digit)| *digit == key)
        .map(|(t, _)| t)
        .min()
}

fn collected(digits: String, reason: CollectReason, duration_ms: u64) -> CollectOutcome {
    CollectOutcome {
        digits,
        reason,
        duration_ms,
    }
}

fn insert(state: &mut State, at: u64, action: Action) {
    state.scheduled += 1;
    let order = state.scheduled;
    state.timeline.insert((at, order), action);
}

fn schedule_digits(state: &mut State, at: u64, digits: &str, interdigit: u64) {
    let mut t = at;
    for digit in digits.chars() {
        insert(state, t, Action::Digit(digit));
        t = t.saturating_add(interdigit);
    }
}

fn schedule(state: &mut State, at: u64, action: &CallerAction) {
    match &action.dtmf {
        Some(digits) => schedule_digits(
            state,
            at,
            digits,
            action.interdigit_ms.unwrap_or(DEFAULT_INTERDIGIT_MS),
        ),
        None => insert(state, at, Action::Hangup),
    }
}

/// Lets other simulated calls on this worker run.
async fn park() {
    tokio::task::yield_now().await;
}

impl CallControl for SimBackend {
    fn now_ms(&self) -> u64 {
        self.now()
    }

    fn hangup_info(&self) -> Option<Hangup> {
        self.state.borrow().hangup.clone()
    }

    fn answer(&self) -> LocalFuture<'_, Result<(), Gone>> {
        Box::pin(async move {
            self.alive()?;
            self.state.borrow_mut().answered = true;
            Ok(())
        })
    }

    fn ring(&self) -> LocalFuture<'_, Result<(), Gone>> {
        Box::pin(async move { self.alive() })
    }

    fn hangup(&self, cause: &str) -> LocalFuture<'_, ()> {
        let cause = cause.to_owned();
        Box::pin(async move { self.end(HungUpBy::System, &cause, false) })
    }

    fn transfer(&self, _target: &str) -> LocalFuture<'_, Result<(), Gone>> {
        Box::pin(async move {
            self.alive()?;
            let mut state = self.state.borrow_mut();
            let t_ms = state.now;
            state.hangup = Some(Hangup {
                t_ms,
                cause: "TRANSFERRED".to_owned(),
                by: HungUpBy::System,
                timed_out: false,
                transferred: true,
            });
            Ok(())
        })
    }

    fn play<'a>(
        &'a self,
        request: &'a PlayRequest,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<PlayOutcome, Gone>> {
        let ms = match request.loop_count {
            0 => u64::MAX,
            n => self.media_ms(&request.media).saturating_mul(u64::from(n)),
        };
        Box::pin(self.verb(self.playback(ms, &request.terminators, request.legs, beside)))
    }

    fn speak<'a>(
        &'a self,
        request: &'a SpeakRequest,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<PlayOutcome, Gone>> {
        let ms = self.speech_ms(&request.text);
        Box::pin(self.verb(self.playback(ms, &request.terminators, request.legs, beside)))
    }

    fn collect<'a>(
        &'a self,
        request: &'a CollectRequest,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<CollectOutcome, Gone>> {
        Box::pin(self.verb(self.collect_digits(request, beside)))
    }

    fn record<'a>(
        &'a self,
        request: &'a RecordRequest,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<RecordOutcome, Gone>> {
        Box::pin(async move {
            self.alive()?;
            let start = self.now();
            let stop = self
                .advance_through_breaks(
                    Until::At(start.saturating_add(request.time_limit_ms)),
                    false,
                    &|leg, d| leg == Leg::A && request.terminators.contains(d),
                    beside,
                )
                .await;
            let reason = match stop {
                Stop::Deadline
                | Stop::Break
                | Stop::PeerGone
                | Stop::PeerHangup
                | Stop::Joined
                | Stop::Woken => RecordReason::MaxLength,
                Stop::Digit(..) => RecordReason::Terminator,
                Stop::Hangup | Stop::TakenOver => RecordReason::Hangup,
            };
            let recording_id = {
                let mut state = self.state.borrow_mut();
                state.recordings += 1;
                format!("{}-rec{}", self.world.call_id, state.recordings)
            };
            park().await;
            Ok(RecordOutcome {
                recording_id,
                duration_ms: self.now() - start,
                reason,
            })
        })
    }

    fn bridge<'a>(
        &'a self,
        request: &'a BridgeRequest,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<BridgeOutcome, Gone>> {
        Box::pin(self.verb(self.run_bridge(request, beside)))
    }

    fn channels(&self) -> Vec<Channel> {
        let Some(joined) = &self.shared else {
            return Vec::new();
        };
        joined
            .shared
            .channels(&joined.call_id)
            .into_iter()
            .map(Channel::from)
            .collect()
    }

    fn wait<'a>(
        &'a self,
        place: &'a str,
        opts: &'a WaitRequest,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<WaitOutcome, Gone>> {
        Box::pin(self.verb(self.run_wait(place, opts.ms, &opts.digits, opts.since, beside)))
    }

    fn camp(&self, request: &CampRequest) -> bool {
        let Some(joined) = &self.shared else {
            return false;
        };
        joined.shared.camp(super::world::Camp {
            request: request.clone(),
            expires_at: joined.shared.now().saturating_add(request.stop_after_ms),
        });
        true
    }

    fn wake(&self, place: &str) -> usize {
        let Some(joined) = &self.shared else {
            return 0;
        };
        let waiting = joined.shared.waiting_at(place, &joined.call_id);
        for call in &waiting {
            joined.shared.poke(call, Message::Wake);
        }
        waiting.len()
    }

    fn conference<'a>(
        &'a self,
        room: &'a str,
        moderator: bool,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<ConferenceOutcome, Gone>> {
        Box::pin(self.verb(self.run_conference(room, moderator, beside)))
    }

    fn eavesdrop<'a>(
        &'a self,
        call_id: &'a str,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<EavesdropOutcome, Gone>> {
        Box::pin(self.verb(self.run_eavesdrop(call_id, beside)))
    }

    fn pickup<'a>(
        &'a self,
        call_id: &'a str,
        intercept: bool,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<BridgeOutcome, Gone>> {
        Box::pin(self.verb(self.run_pickup(call_id, intercept, beside)))
    }

    fn park<'a>(
        &'a self,
        slot: &'a str,
        ms: u64,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<ParkOutcome, Gone>> {
        Box::pin(async move {
            self.alive()?;
            let start = self.now();
            self.set_activity(Activity::Parked(slot.to_owned()));
            self.state.borrow_mut().reach = Reach::Join;
            let stop = self
                .advance(
                    Until::At(start.saturating_add(ms)),
                    true,
                    &|_, _| false,
                    beside,
                )
                .await;
            self.state.borrow_mut().reach = Reach::Nothing;
            self.set_activity(Activity::Busy);
            let joined_by = self.state.borrow_mut().joined_by.take();
            let outcome = match (stop, joined_by) {
                (Stop::Joined, Some((by, device))) => {
                    let talk = self.talk_to_call(&by, device, start, beside).await;
                    ParkOutcome {
                        reason: "retrieved",
                        by: Some(by),
                        duration_ms: self.now() - start,
                        talk_ms: talk.talk_ms,
                    }
                }
                (Stop::Hangup | Stop::TakenOver, _) => ParkOutcome {
                    reason: "hangup",
                    by: None,
                    duration_ms: self.now() - start,
                    talk_ms: 0,
                },
                _ => ParkOutcome {
                    reason: "timeout",
                    by: None,
                    duration_ms: self.now() - start,
                    talk_ms: 0,
                },
            };
            park().await;
            Ok(outcome)
        })
    }

    fn sleep<'a>(
        &'a self,
        ms: u64,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<SleepReason, Gone>> {
        Box::pin(async move {
            self.alive()?;
            let stop = self
                .advance(
                    Until::At(self.now().saturating_add(ms)),
                    true,
                    &|_, _| false,
                    beside,
                )
                .await;
            park().await;
            Ok(match stop {
                Stop::Hangup | Stop::TakenOver => SleepReason::Hangup,
                Stop::Deadline
                | Stop::Digit(..)
                | Stop::Break
                | Stop::PeerGone
                | Stop::PeerHangup
                | Stop::Joined
                | Stop::Woken => SleepReason::Completed,
            })
        })
    }

    fn send_dtmf<'a>(&'a self, _digits: &'a str) -> LocalFuture<'a, Result<(), Gone>> {
        Box::pin(async move { self.alive() })
    }

    fn respond<'a>(&'a self, code: u16, _message: &'a str) -> LocalFuture<'a, Result<(), Gone>> {
        Box::pin(async move {
            self.alive()?;
            if code >= 300 {
                let cause = crate::engine::control::cause_for_sip(code);
                self.end_with(HungUpBy::System, cause, false, Some(code));
            }
            Ok(())
        })
    }

    fn flush_dtmf(&self) {
        self.state.borrow_mut().buffer.clear();
    }

    fn http<'a>(
        &'a self,
        request: &'a HttpRequest,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, HttpOutcome> {
        Box::pin(async move {
            let outcome = self.http_response(request, beside).await;
            park().await;
            outcome
        })
    }

    // The limit of a whole-call recording is the engine's to keep
    // (`Call::recording`): the simulator records no audio.
    fn record_call(
        &self,
        start: bool,
        _time_limit_ms: Option<u64>,
    ) -> LocalFuture<'_, Result<String, Gone>> {
        Box::pin(async move {
            self.alive()?;
            Ok(self.recording(start))
        })
    }

    fn recording(&self) -> Option<String> {
        self.state.borrow().call_recording.clone()
    }

    fn detect_fax<'a>(
        &'a self,
        ms: u64,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<bool, Gone>> {
        Box::pin(async move {
            self.alive()?;
            let listen = if self.world.fax {
                ms.min(FAX_TONE_MS)
            } else {
                ms
            };
            let stop = self
                .advance_through_breaks(
                    Until::At(self.now().saturating_add(listen)),
                    true,
                    &|_, _| false,
                    beside,
                )
                .await;
            park().await;
            Ok(self.world.fax && stop == Stop::Deadline)
        })
    }

    fn peer(&self) -> Option<PeerInfo> {
        let state = self.state.borrow();
        let peer = state.peer.as_ref()?;
        Some(PeerInfo {
            call_id: peer.call_id.clone(),
            endpoint: peer.endpoint.id.clone(),
            held: state.hold.map(|hold| hold.leg),
        })
    }

    fn hold(&self, leg: Leg, _moh: Option<&str>, unhold_key: Option<char>) -> Result<bool, Gone> {
        self.alive()?;
        let mut state = self.state.borrow_mut();
        if state.peer.is_none() {
            return Ok(false);
        }
        state.hold = Some(Hold { leg, unhold_key });
        Ok(true)
    }

    fn unhold(&self) -> Result<Option<Leg>, Gone> {
        self.alive()?;
        Ok(self.state.borrow_mut().hold.take().map(|hold| hold.leg))
    }

    fn transfer_peer(&self, _target: &str) -> Result<bool, Gone> {
        self.peer_leaves()
    }

    fn hangup_peer(&self, cause: &str) -> Result<bool, Gone> {
        let left = self.peer_leaves()?;
        if left {
            self.end(HungUpBy::Callee, cause, false);
        }
        Ok(left)
    }

    fn attended_transfer<'a>(
        &'a self,
        request: &'a ConsultRequest,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<ConsultOutcome, Gone>> {
        Box::pin(self.verb(self.consult(request, beside)))
    }
}

impl SimBackend {
    /// Runs `work` as a verb: refused once the call is gone; then other
    /// calls of the worker get their turn.
    async fn verb<T>(&self, work: impl std::future::Future<Output = T>) -> Result<T, Gone> {
        self.alive()?;
        let outcome = work.await;
        park().await;
        Ok(outcome)
    }

    /// The peer leaves the bridge; false when there is none.
    fn peer_leaves(&self) -> Result<bool, Gone> {
        self.alive()?;
        if self.state.borrow().peer.is_none() {
            return Ok(false);
        }
        self.disconnect_peer();
        Ok(true)
    }

    fn recording(&self, start: bool) -> String {
        let mut state = self.state.borrow_mut();
        if !start {
            return state.call_recording.take().unwrap_or_default();
        }
        if let Some(running) = &state.call_recording {
            return running.clone();
        }
        state.recordings += 1;
        let id = format!("{}-rec{}", self.world.call_id, state.recordings);
        state.call_recording = Some(id.clone());
        id
    }
}

/// How long fax detection takes to hear a fax's tones.
const FAX_TONE_MS: u64 = 2000;
