//! An attended transfer on a real call (Kazoo's konami `transfer` with
//! `attended`, and `move`), with the simulator's rules on real legs.
//!
//! The transferee hears music on hold (its phone gets no re-INVITE: the
//! music simply replaces the transferor's voice), the transferor hears
//! ringback (or the target's early media) while the target rings, then
//! talks to it. Then:
//!
//! * the transferor hanging up completes it: the transferee talks to the
//!   target. While the target still rings this is a partial transfer: the
//!   target answering connects them; its failing hangs up the transferee,
//!   as Kazoo does. When the transferor is the caller and the target has
//!   answered, the call (the caller's leg, whose trace this is) ends there
//!   and the callee and the target go on talking on their own;
//! * the takeback digits, the target failing or hanging up: the two
//!   original legs talk again;
//! * the transferee hanging up: the transferor talks to the target.
//!
//! A `move` (`complete_on_answer`) leaves the two legs talking while the
//! target rings (no music, no ringback, no takeback) and completes when it
//! answers: the transferor's side leaves.
//!
//! One difference from the simulator, where a transferor who is the caller
//! may hang up while the target rings and the transfer goes on: on a real
//! call the caller's leg owns the call, so the ringing is cancelled, the
//! callee hung up, and the result is `hangup`.

use std::time::Duration;

use super::PeerEvent;
use super::backend::{Connected, LiveBackend, Stop};
use super::bridge::{Called, Listener, Ringing, outcome_of_failures};
use super::midcall::Holding;
use crate::engine::control::{
    Beside, BridgeEndpoint, BridgeRequest, BridgeStatus, ConsultOutcome, ConsultRequest,
    ConsultResult, Leg,
};
use crate::engine::rules::Takeback;
use crate::media::session::{self, Control, Handle};
use crate::sip::LegEvent;

/// How often a transfer that goes on without the call checks its legs.
const DETACHED_POLL: Duration = Duration::from_millis(200);

/// How the target's ringing ended.
enum Ended {
    Answered(u64),
    Failed,
    Takeback,
    CallerGone,
}

impl LiveBackend {
    /// `call:attended_transfer` on a real call (see the module docs).
    pub(super) async fn run_consult(
        &self,
        request: &ConsultRequest,
        beside: &dyn Beside,
    ) -> ConsultOutcome {
        let start = self.now();
        let sides = (
            self.side(request.transferor),
            self.side(request.transferor.other()),
        );
        let (Some((_, transferor)), Some((_, transferee))) = sides else {
            return ConsultOutcome {
                result: ConsultResult::Failed,
                answered_by: None,
                duration_ms: 0,
            };
        };
        self.end_hold(true);
        self.set_consulting(true);
        if !request.complete_on_answer {
            // The transferee waits with music; the transferor is on its own.
            session::unrelay(&[&transferor, &transferee]);
            let play = self.start_moh(&transferee, request.moh.as_deref());
            self.set_holding(Some(Holding {
                held: request.transferor.other(),
                by_phone: false,
                unhold_key: None,
                play,
            }));
        }
        let (result, answered_by) = self.consult(request, transferor, beside).await;
        self.set_consulting(false);
        ConsultOutcome {
            result,
            answered_by,
            duration_ms: self.now() - start,
        }
    }

    async fn consult(
        &self,
        request: &ConsultRequest,
        transferor_media: Handle,
        beside: &dyn Beside,
    ) -> (ConsultResult, Option<String>) {
        let transferor = request.transferor;
        let ring = request.ring();
        let takeback = Takeback::new(request);
        let stop_on = |leg: Leg, digit: char| takeback.pressed(leg, digit);
        let listener = if request.complete_on_answer {
            Listener::Nobody
        } else {
            Listener::Leg(transferor_media.clone())
        };
        let mut ringing = Ringing::new(&ring, self.now(), listener);
        let (ended, peer_left) = self
            .ring_target(&ring, &mut ringing, &stop_on, beside)
            .await;
        self.stop_ringback(&mut ringing);
        let answered = match ended {
            Ended::Answered(id) => id,
            Ended::Takeback => {
                self.end_legs(ringing.legs_mut(), |_| true).await;
                self.restore();
                return (ConsultResult::Takeback, None);
            }
            Ended::CallerGone => {
                self.end_legs(ringing.legs_mut(), |_| true).await;
                self.end_hold(false);
                return (ConsultResult::Hangup, None);
            }
            Ended::Failed => {
                self.end_legs(ringing.legs_mut(), |_| true).await;
                let result = match outcome_of_failures(&ring, &ringing, self.now()).status {
                    BridgeStatus::Busy => ConsultResult::Busy,
                    BridgeStatus::NoAnswer => ConsultResult::NoAnswer,
                    _ => ConsultResult::Failed,
                };
                if peer_left && transferor == Leg::B {
                    // A partial transfer nobody answered: Kazoo hangs up
                    // the transferee.
                    self.end_hold(false);
                    self.end_ours("NORMAL_CLEARING").await;
                } else {
                    self.restore();
                }
                if peer_left {
                    beside.bridged(None);
                }
                return (result, None);
            }
        };
        self.end_legs(ringing.legs_mut(), |c| c.id != answered)
            .await;
        let Some((target, endpoint)) = ringing.take(answered) else {
            self.restore();
            return (ConsultResult::Failed, None);
        };
        target.media.send(Control::Start);
        let answered_by = Some(endpoint.id.clone());
        let transferor_gone = peer_left && transferor == Leg::B;
        if request.complete_on_answer || transferor_gone {
            if transferor == Leg::B || peer_left {
                let result = if transferor == Leg::B {
                    ConsultResult::Completed
                } else {
                    ConsultResult::TransfereeHangup
                };
                self.take_target(target, endpoint, beside).await;
                return (result, answered_by);
            }
            // The caller moves away: the callee and the target talk on.
            self.detach(target);
            self.end_ours("NORMAL_CLEARING").await;
            return (ConsultResult::Completed, answered_by);
        }
        if peer_left {
            // The transferee (the callee) left while the target rang: the
            // caller talks to the target.
            self.take_target(target, endpoint, beside).await;
            return (ConsultResult::TransfereeHangup, answered_by);
        }
        self.talk_to_target(
            request,
            transferor_media,
            target,
            endpoint,
            beside,
            &stop_on,
        )
        .await
    }

    /// Phase 2 of an attended transfer: the transferor talks to the target
    /// until someone hangs up or the takeback digits come.
    async fn talk_to_target(
        &self,
        request: &ConsultRequest,
        transferor_media: Handle,
        target: Called,
        endpoint: BridgeEndpoint,
        beside: &dyn Beside,
        stop_on: &dyn Fn(Leg, char) -> bool,
    ) -> (ConsultResult, Option<String>) {
        let answered_by = Some(endpoint.id.clone());
        session::relay(&transferor_media, &target.media);
        let result = loop {
            match self.wait_consult(None, stop_on, beside).await {
                Stop::Peer if self.target_left(&target) => {
                    self.restore();
                    break ConsultResult::TargetHangup;
                }
                Stop::Digit(..) => {
                    drop_leg(&target).await;
                    self.restore();
                    break ConsultResult::Takeback;
                }
                Stop::PeerGone => {
                    self.take_target(target, endpoint, beside).await;
                    break if request.transferor == Leg::B {
                        ConsultResult::Completed
                    } else {
                        ConsultResult::TransfereeHangup
                    };
                }
                Stop::Hangup | Stop::TakenOver if request.transferor == Leg::A => {
                    // The transferor was the caller: its hang-up completes
                    // the transfer, which goes on without this call.
                    self.detach(target);
                    break ConsultResult::Completed;
                }
                Stop::Hangup | Stop::TakenOver => {
                    drop_leg(&target).await;
                    self.end_hold(false);
                    break ConsultResult::Hangup;
                }
                _ => {}
            }
        };
        (result, answered_by)
    }

    /// Phase 1 of an attended transfer: the target rings; the peer may
    /// leave meanwhile (the second value).
    async fn ring_target(
        &self,
        ring: &BridgeRequest,
        ringing: &mut Ringing,
        stop_on: &dyn Fn(Leg, char) -> bool,
        beside: &dyn Beside,
    ) -> (Ended, bool) {
        let mut peer_left = false;
        loop {
            self.start_due(ring, ringing);
            if let Some(id) = self.leg_events(ring, ringing).await {
                return (Ended::Answered(id), peer_left);
            }
            let Some(deadline) = self.ring_out(ring, ringing).await else {
                return (Ended::Failed, peer_left);
            };
            match self.wait_consult(Some(deadline), stop_on, beside).await {
                Stop::Digit(..) => return (Ended::Takeback, peer_left),
                Stop::PeerGone => peer_left = true,
                Stop::Hangup | Stop::TakenOver => return (Ended::CallerGone, peer_left),
                _ => {}
            }
        }
    }

    /// The original legs talk again (the music stops).
    fn restore(&self) {
        self.end_hold(false);
        match self.with_peer(|peer| peer.media.clone()) {
            Some(peer) => session::relay(self.media(), &peer),
            None => session::unrelay(&[self.media()]),
        }
    }

    /// The caller talks to the target, which becomes the peer; the old peer
    /// (gone, or the transferor of a move) leaves. Kazoo starts no
    /// metaflow binding for a transfer's target.
    async fn take_target(&self, target: Called, endpoint: BridgeEndpoint, beside: &dyn Beside) {
        self.end_hold(false);
        if let Some(peer) = self.disconnect() {
            session::unrelay(&[&peer.media]);
            peer.leg.hangup().await;
            peer.media.send(Control::Close);
        }
        session::relay(self.media(), &target.media);
        self.connect(Connected {
            id: target.id,
            leg: target.leg,
            media: target.media,
            endpoint,
            telephone_events: target.telephone_events,
        });
        beside.bridged(None);
    }

    /// The callee and the target talk without this call: their media is
    /// relayed, and when either hangs up the other is hung up too (or when
    /// the call's maximum duration is reached).
    fn detach(&self, target: Called) {
        self.end_hold(false);
        let Some(peer) = self.disconnect() else {
            self.context().runtime.spawn(async move {
                drop_leg(&target).await;
            });
            return;
        };
        self.forget_media(&peer.media);
        session::relay(&peer.media, &target.media);
        let left = self.context().max_call_ms.saturating_sub(self.now());
        self.context().runtime.spawn(async move {
            let end = tokio::time::Instant::now() + Duration::from_millis(left);
            while !peer.leg.is_over() && !target.leg.is_over() && tokio::time::Instant::now() < end
            {
                tokio::time::sleep(DETACHED_POLL).await;
            }
            peer.leg.hangup().await;
            peer.media.send(Control::Close);
            drop_leg(&target).await;
        });
    }

    /// Reads the events of the legs an attended transfer called: whether
    /// the target hung up (a re-INVITE of its phone moves its media).
    fn target_left(&self, target: &Called) -> bool {
        let mut left = false;
        while let Some((id, event)) = self.take_pending() {
            if id != target.id {
                continue;
            }
            match event {
                PeerEvent::Leg(LegEvent::Ended(_)) => left = true,
                PeerEvent::Leg(LegEvent::Reoffer(agreed)) => {
                    target.media.send(Control::Configure(agreed));
                }
                _ => {}
            }
        }
        if left {
            target.media.send(Control::Close);
        }
        left
    }
}

/// Hangs up a called leg and closes its media.
async fn drop_leg(called: &Called) {
    called.leg.hangup().await;
    called.media.send(Control::Close);
}
