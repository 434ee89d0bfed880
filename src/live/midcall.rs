//! Mid-call on a real call, once a bridge is up: holds (a metaflow's
//! `call:hold`, or a phone's own hold button: its re-INVITE with
//! `sendonly`/`inactive`), music on hold for the held side, and a phone's
//! blind transfer (its REFER), carried out as the `transfer` metaflow
//! would, with NOTIFYs telling the phone how it went.

use std::sync::{Arc, Mutex, PoisonError};

use super::backend::{LiveBackend, Stop};
use crate::engine::control::{Beside, Leg, Resume};
use crate::media::Negotiated;
use crate::media::sdp::Direction;
use crate::media::session::{Control, Handle};
use crate::sip::Leg as SipLeg;
use crate::trace::Event;

/// A hold in progress.
#[derive(Debug, Clone, Copy)]
pub(super) struct Holding {
    /// The leg that hears music.
    pub held: Leg,
    /// The other leg's phone asked (its re-INVITE), not a metaflow.
    pub by_phone: bool,
    pub unhold_key: Option<char>,
    /// The music's play id on the held leg's session.
    pub play: u64,
}

/// The play id of the music on hold wanted now (0: none), shared with the
/// task that loads the music: it starts the play only if still wanted.
pub(super) type MohSlot = Arc<Mutex<u64>>;

impl LiveBackend {
    /// A leg's SIP side and media: the caller's, or the connected peer's.
    pub(super) fn side(&self, leg: Leg) -> Option<(SipLeg, Handle)> {
        match leg {
            Leg::A => Some((self.sip_leg().clone(), self.media().clone())),
            Leg::B => self.with_peer(|peer| (peer.leg.clone(), peer.media.clone())),
        }
    }

    /// The account's music on hold (`music_on_hold.media_id`), else the
    /// default.
    fn account_moh(&self) -> String {
        self.context()
            .account
            .account
            .extra
            .get("music_on_hold")
            .and_then(|m| m.get("media_id"))
            .and_then(serde_json::Value::as_str)
            .filter(|id| !id.is_empty())
            .unwrap_or("default_moh")
            .to_owned()
    }

    /// Starts music on `media` (looped until stopped); its play id. The
    /// music loads off the call's thread.
    pub(super) fn start_moh(&self, media: &Handle, name: Option<&str>) -> u64 {
        let id = self.next_id();
        let slot = self.moh_slot();
        *slot.lock().unwrap_or_else(PoisonError::into_inner) = id;
        let name = name.map_or_else(|| self.account_moh(), str::to_owned);
        self.load_and_play(media, id, name, 0, Some(slot));
        id
    }

    /// Plays `name` once on `media` (another leg than the caller's: a
    /// callee's prompt); its play id. It loads off the call's thread.
    pub(super) fn play_to(&self, media: &Handle, name: &str) -> u64 {
        let id = self.next_id();
        self.load_and_play(media, id, name.to_owned(), 1, None);
        id
    }

    /// Resolves `name` off the call's thread and plays it `times` (0:
    /// until stopped) as play `id` on `media`; with `wanted`, only if that
    /// slot still holds `id` by then.
    fn load_and_play(
        &self,
        media: &Handle,
        id: u64,
        name: String,
        times: u32,
        wanted: Option<super::midcall::MohSlot>,
    ) {
        let library = Arc::clone(&self.context().library);
        let account = Arc::clone(&self.context().account);
        let media = media.clone();
        self.context().runtime.spawn(async move {
            let found = tokio::task::spawn_blocking(move || library.media(&account, &name, None))
                .await
                .ok()
                .and_then(Result::ok);
            let Some(resolved) = found else { return };
            // Held while sending: a stop in between would miss the play.
            let guard = wanted
                .as_ref()
                .map(|slot| slot.lock().unwrap_or_else(PoisonError::into_inner));
            if guard.as_ref().is_none_or(|wanted| **wanted == id) {
                media.send(Control::Play {
                    id,
                    clip: resolved.clip,
                    times: Some(times),
                });
            }
            drop(guard);
        });
    }

    pub(super) fn stop_moh(&self, media: &Handle, id: u64) {
        let slot = self.moh_slot();
        let mut wanted = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if *wanted == id {
            *wanted = 0;
        }
        media.send(Control::Stop { id });
    }

    /// `call:hold`: `leg` hears `moh`; its phone is told (a re-INVITE
    /// with `sendonly`). False without a bridge.
    pub(super) fn hold_leg(&self, leg: Leg, moh: Option<&str>, unhold_key: Option<char>) -> bool {
        if self.connected().is_none() {
            return false;
        }
        self.end_hold(false);
        let Some((sip, media)) = self.side(leg) else {
            return false;
        };
        let play = self.start_moh(&media, moh);
        self.set_holding(Some(Holding {
            held: leg,
            by_phone: false,
            unhold_key,
            play,
        }));
        self.reoffer(sip, media, Direction::SendOnly);
        true
    }

    /// Ends the hold running, if any: the music stops; a metaflow's hold
    /// takes the held phone off hold (`sendrecv`) when `tell` is set.
    /// Returns the leg that was held.
    pub(super) fn end_hold(&self, tell: bool) -> Option<Leg> {
        let holding = self.set_holding(None)?;
        if let Some((sip, media)) = self.side(holding.held) {
            self.stop_moh(&media, holding.play);
            if tell && !holding.by_phone {
                self.reoffer(sip, media, Direction::SendRecv);
            }
        }
        Some(holding.held)
    }

    /// A re-INVITE to `sip` off the call's thread; what it agrees goes to
    /// the leg's media.
    fn reoffer(&self, sip: SipLeg, media: Handle, direction: Direction) {
        self.context().runtime.spawn(async move {
            if let Some(agreed) = sip.reoffer(direction).await {
                media.send(Control::Configure(agreed));
            }
        });
    }

    /// The unhold key pressed on the leg that is not held ends a
    /// metaflow's hold (a `leg_unhold` event, as in simulation).
    pub(super) fn unhold_by_key(&self, pressed: Leg, digit: char) {
        let Some(holding) = self.holding() else {
            return;
        };
        if holding.by_phone || holding.held == pressed || holding.unhold_key != Some(digit) {
            return;
        }
        self.end_hold(true);
        self.record_event(
            Event::new(self.now(), "leg_unhold")
                .with("leg", holding.held.as_str())
                .with("key", digit.to_string()),
        );
    }

    /// A new offer from `leg`'s phone (already answered by the SIP layer):
    /// its media follows, and a hold from its button puts the other leg
    /// on music (`leg_hold` with `by` `phone`); resuming ends it.
    pub(super) fn reoffered(&self, leg: Leg, agreed: Negotiated) {
        if let Some((_, media)) = self.side(leg) {
            media.send(Control::Configure(agreed));
        }
        if self.connected().is_none() {
            return;
        }
        let holds = !agreed.direction.sends();
        let holding = self.holding();
        let other = leg.other();
        match holding {
            None if holds => {
                let Some((_, media)) = self.side(other) else {
                    return;
                };
                let moh = self.account_moh();
                let play = self.start_moh(&media, Some(&moh));
                self.set_holding(Some(Holding {
                    held: other,
                    by_phone: true,
                    unhold_key: None,
                    play,
                }));
                self.record_event(
                    Event::new(self.now(), "leg_hold")
                        .with("leg", other.as_str())
                        .with("moh", moh)
                        .with("by", "phone"),
                );
            }
            Some(h) if h.by_phone && h.held == other && !holds => {
                self.end_hold(false);
                self.record_event(
                    Event::new(self.now(), "leg_unhold")
                        .with("leg", other.as_str())
                        .with("by", "phone"),
                );
            }
            _ => {}
        }
    }

    /// A phone's REFER (already accepted with 202): NOTIFY 100, the blind
    /// transfer run as the `transfer` metaflow pressed on `leg` would,
    /// then NOTIFY 200 when the call went elsewhere or the peer left (503
    /// otherwise). How the waiting verb goes on: `None` to keep waiting.
    pub(super) async fn phone_transfer(
        &self,
        leg: Leg,
        target: &str,
        beside: &dyn Beside,
    ) -> Option<Stop> {
        let (sip, _) = self.side(leg)?;
        let notify = |code: u16, reason: &'static str, done: bool| {
            let sip = sip.clone();
            self.context()
                .runtime
                .spawn(async move { sip.notify_refer(code, reason, done).await })
        };
        let _ = notify(100, "Trying", false).await;
        let peer_before = self.connected();
        let resume = beside.refer(leg, target).await;
        let gone = self.is_gone_now();
        let peer_left = peer_before.is_some() && self.connected() != peer_before;
        let done = resume == Resume::Stop || gone || peer_left;
        let (code, reason) = if done {
            (200, "OK")
        } else {
            (503, "Service Unavailable")
        };
        let _ = notify(code, reason, true).await;
        if gone {
            Some(Stop::Hangup)
        } else if resume == Resume::Stop {
            Some(Stop::TakenOver)
        } else if peer_left {
            Some(Stop::PeerGone)
        } else {
            None
        }
    }
}
