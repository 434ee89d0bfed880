//! [`LiveBackend`]: the call-control port on a real call. Each verb turns
//! into SIP (answer, ring, final responses, BYE) and media (plays,
//! telephone events, taps) on the call's leg, and waits for what the far
//! end does, on the wall clock: digits (RFC 4733 and SIP INFO), its
//! hang-up, the end of a play, the metaflow listener's deadline.
//!
//! The rules are the simulator's (and for `collect`, literally the same
//! [`Collector`]): digits go to the call's buffer except while recording;
//! playback stops at a terminator digit, which stays in the buffer; a
//! recording stops at a terminator (consumed), its time limit, silence or
//! the hang-up; every digit reaches the metaflow listener, and when its
//! deadline comes first the metaflow runs inside the verb.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Incoming;
use super::PeerEvent;
use crate::catalog::AccountFlows;
use crate::engine::control::{
    Beside, BridgeOutcome, BridgeRequest, CallControl, Channel, CollectOutcome, CollectReason,
    CollectRequest, ConferenceOutcome, ConsultOutcome, ConsultRequest, EavesdropOutcome, Gone,
    Hangup, HttpOutcome, HttpRequest, HungUpBy, Leg, Legs, LocalFuture, ParkOutcome, PeerInfo,
    PlayOutcome, PlayReason, PlayRequest, RecordOutcome, RecordReason, RecordRequest, Resume,
    SleepReason, SpeakRequest, WaitOutcome, WaitRequest,
};
use crate::engine::rules::{self, Waited};
use crate::media::library::{Library, Resolved};
use crate::media::session::{self, Control, Handle, MediaEvent};
use crate::media::{Clip, Offer};
use crate::sip::{EndedBy, Leg as SipLeg, LegEvent};
use crate::trace::{Event, Trace};

/// What a call needs from the server.
pub struct Context {
    pub library: Arc<Library>,
    pub account: Arc<AccountFlows>,
    pub runtime: tokio::runtime::Handle,
    pub allow_private_http: bool,
    pub max_call_ms: u64,
    /// [`crate::limits::Limits::max_dtmf_digits`].
    pub max_dtmf_digits: usize,
    /// [`crate::limits::Limits::max_caller_events`].
    pub max_caller_events: usize,
    /// For the legs a bridge calls: the SIP endpoint, RTP ports, the media
    /// runtime and the address of our SDP.
    pub sip: Arc<crate::sip::SipServer>,
    /// Every account of the call's generation (carriers of other
    /// accounts, the system's).
    pub catalog: Arc<crate::catalog::Catalog>,
    pub ports: Arc<crate::media::Ports>,
    pub media_runtime: tokio::runtime::Handle,
    pub media_ip: std::net::IpAddr,
    /// The call's own event channel (the legs a bridge calls report there).
    pub events: mpsc::UnboundedSender<Incoming>,
    /// The server's running calls.
    pub world: Arc<super::world::World>,
}

/// What the far end did to the dialog, noted by the task that hears it
/// first: its hang-up (so it gets its real time even while no verb
/// listens) and its ACK (a BYE must wait for it: RFC 3261 §15).
#[derive(Debug)]
pub struct FarEnd {
    ended: Mutex<Option<(Instant, EndedBy)>>,
    /// `true` once the ACK (or the end) came.
    settled: tokio::sync::watch::Sender<bool>,
}

impl Default for FarEnd {
    fn default() -> Self {
        Self {
            ended: Mutex::new(None),
            settled: tokio::sync::watch::Sender::new(false),
        }
    }
}

/// How long a BYE waits for the ACK of our 200 (64 × T1, when the server
/// transaction gives up and ends the dialog itself).
const ACK_WAIT: Duration = Duration::from_secs(32);

impl FarEnd {
    pub fn set(&self, by: EndedBy) {
        let mut ended = self.ended.lock().unwrap_or_else(PoisonError::into_inner);
        if ended.is_none() {
            *ended = Some((Instant::now(), by));
        }
        drop(ended);
        self.settled.send_replace(true);
    }

    /// The caller acknowledged our answer.
    pub fn confirmed(&self) {
        self.settled.send_replace(true);
    }

    fn get(&self) -> Option<(Instant, EndedBy)> {
        *self.ended.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the ACK or the end came (at most [`ACK_WAIT`]).
    async fn settled(&self) {
        let mut settled = self.settled.subscribe();
        let _ = tokio::time::timeout(ACK_WAIT, settled.wait_for(|s| *s)).await;
    }
}

/// Why a wait ended.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Stop {
    Deadline,
    Digit(Leg, char),
    Hangup,
    /// A metaflow asked to stop the media.
    Break,
    /// A metaflow took the call elsewhere.
    TakenOver,
    /// The media event waited for.
    Media(MediaEvent),
    /// A leg a bridge called did something (see the pending events).
    Peer,
    /// The connected peer left (transferred, hung up by a metaflow).
    PeerGone,
    /// A phone asked for a transfer (SIP REFER) to this number.
    Refer(Leg, String),
    /// Another call picked this one up or retrieved it (see
    /// [`LiveBackend::take_joiner`]).
    Joined,
    /// Another call woke this one where it waits.
    Woken,
}

/// The callee a bridge connected the caller to.
pub(super) struct Connected {
    pub id: u64,
    pub leg: SipLeg,
    pub media: Handle,
    pub endpoint: crate::engine::control::BridgeEndpoint,
    /// Its SDP took RFC 4733 events (else digits go to it as SIP INFO).
    pub telephone_events: bool,
}

#[derive(Default)]
struct State {
    hangup: Option<Hangup>,
    answered: bool,
    /// 183 or 200 sent: media flows.
    media_started: bool,
    buffer: VecDeque<char>,
    next_id: u64,
    recordings: u32,
    call_recording: Option<(String, u64)>,
    /// The caller's leg was ended by us (a BYE or a final response).
    signalled: bool,
    /// The bridged callee.
    peer: Option<Connected>,
    /// Events of legs a bridge called, for the bridge to read.
    pending: VecDeque<(u64, PeerEvent)>,
    /// Numbers given to called legs.
    legs: u64,
    /// A hold in progress.
    hold: Option<super::midcall::Holding>,
    /// The call of the world joined to this one.
    world_peer: Option<super::crosscall::WorldPeer>,
    /// A call whose join was accepted, for the verb to connect.
    joiner: Option<super::crosscall::Joiner>,
    /// The call this one eavesdrops on.
    listening_to: Option<String>,
}

/// One real call's outside world.
pub struct LiveBackend {
    call_id: String,
    started: Instant,
    leg: SipLeg,
    media: Handle,
    /// Our SDP: the answer to the caller's offer, or our offer.
    sdp: String,
    /// The INVITE had no offer: the ACK brings the caller's answer.
    delayed_offer: bool,
    /// Held across the wait for the next event (only one verb waits at a
    /// time: a metaflow's verbs run between two waits).
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<Incoming>>,
    far_end: Arc<FarEnd>,
    trace: Rc<RefCell<Trace>>,
    state: RefCell<State>,
    context: Arc<Context>,
    /// Recordings made (media documents to write when the call ends).
    pub(super) made: RefCell<Vec<super::Recording>>,
    /// The HTTP answers the call met, for `callflow scenario from-trace`.
    http_answers: RefCell<Vec<serde_json::Value>>,
    closed: Cell<bool>,
    /// The music on hold wanted now (see [`super::midcall::MohSlot`]).
    moh: super::midcall::MohSlot,
    /// Every callee's media that was connected (with its endpoint), for
    /// the trace's `media` report.
    peers_media: RefCell<Vec<(String, Handle)>>,
    /// An attended transfer runs: the peer's hang-up leaves the call
    /// ([`Stop::PeerGone`]) and no digit crosses between the legs.
    consulting: Cell<bool>,
    /// Digits taken (both legs) and the caller's other events.
    digits: rules::Cap,
    caller_events: rules::Cap,
    /// What messages of other calls may end the verb waiting now.
    reach: Cell<super::crosscall::Reach>,
    /// The device the call comes from (for the calls it joins).
    device: RefCell<Option<String>>,
    /// The world was told the call ended ([`LiveBackend::world_ended`]).
    pub(super) world_told: Cell<bool>,
}

impl LiveBackend {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        call_id: String,
        started: Instant,
        leg: SipLeg,
        media: Handle,
        sdp: String,
        delayed_offer: bool,
        events: mpsc::UnboundedReceiver<Incoming>,
        far_end: Arc<FarEnd>,
        trace: Rc<RefCell<Trace>>,
        context: Arc<Context>,
    ) -> Self {
        Self {
            call_id,
            started,
            leg,
            media,
            sdp,
            delayed_offer,
            events: tokio::sync::Mutex::new(events),
            far_end,
            trace,
            state: RefCell::new(State::default()),
            made: RefCell::new(Vec::new()),
            http_answers: RefCell::new(Vec::new()),
            closed: Cell::new(false),
            moh: super::midcall::MohSlot::default(),
            peers_media: RefCell::new(Vec::new()),
            consulting: Cell::new(false),
            digits: rules::Cap::new("dtmf_digits", context.max_dtmf_digits),
            caller_events: rules::Cap::new("caller_events", context.max_caller_events),
            reach: Cell::new(super::crosscall::Reach::Nothing),
            device: RefCell::new(None),
            world_told: Cell::new(false),
            context,
        }
    }

    /// Takes one from `cap`; false (and the first time a `limit` event)
    /// once it is spent.
    fn within(&self, cap: &rules::Cap) -> bool {
        match cap.take(self.now()) {
            Ok(()) => true,
            Err(limit) => {
                if let Some(limit) = limit {
                    self.record(limit);
                }
                false
            }
        }
    }

    fn ms_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.started).as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn now(&self) -> u64 {
        self.ms_at(Instant::now())
    }

    fn instant(&self, ms: u64) -> Instant {
        self.started + Duration::from_millis(ms)
    }

    fn record(&self, event: Event) {
        self.trace.borrow_mut().push(event);
    }

    /// A warning in the trace, from the live backend itself.
    pub(super) fn warn(&self, message: String) {
        self.record(
            Event::new(self.now(), "log")
                .with("level", "warning")
                .with("module", "live")
                .with("message", message),
        );
    }

    pub(super) fn next_id(&self) -> u64 {
        let mut state = self.state.borrow_mut();
        state.next_id += 1;
        state.next_id
    }

    /// Notes a hang-up the far end made, at the time it was heard.
    fn check_far_end(&self) {
        if self.state.borrow().hangup.is_some() {
            return;
        }
        if let Some((at, by)) = self.far_end.get() {
            let (hung_up_by, cause) = match by {
                EndedBy::Bye => (HungUpBy::Caller, "NORMAL_CLEARING"),
                EndedBy::Cancel => (HungUpBy::Caller, "ORIGINATOR_CANCEL"),
                EndedBy::NoAck | EndedBy::Expired => (HungUpBy::System, "RECOVERY_ON_TIMER_EXPIRE"),
                EndedBy::Us => (HungUpBy::System, "NORMAL_CLEARING"),
            };
            self.end_at(self.ms_at(at), hung_up_by, cause);
        }
    }

    fn is_gone(&self) -> bool {
        self.check_far_end();
        self.state.borrow().hangup.is_some()
    }

    fn alive(&self) -> Result<(), Gone> {
        if self.is_gone() { Err(Gone) } else { Ok(()) }
    }

    /// Ends the call (once), recording the `hangup` event.
    fn end_at(&self, t_ms: u64, by: HungUpBy, cause: &str) {
        self.end_at_with(t_ms, by, cause, None);
    }

    /// [`Self::end_at`]; `sip_code` is the SIP response that ended the
    /// call, when one did.
    fn end_at_with(&self, t_ms: u64, by: HungUpBy, cause: &str, sip_code: Option<u16>) {
        let mut state = self.state.borrow_mut();
        if state.hangup.is_some() {
            return;
        }
        state.hangup = Some(Hangup {
            t_ms,
            cause: cause.to_owned(),
            by,
            timed_out: cause == "ALLOTTED_TIMEOUT",
            transferred: false,
        });
        drop(state);
        let mut event = Event::new(t_ms, "hangup").with("cause", cause);
        if let Some(code) = sip_code {
            event = event.with("sip_code", code);
        }
        self.record(event.with("by", by.as_str()));
        self.world_ended();
    }

    /// Ends the call from our side: BYE after the answer, a final response
    /// before it.
    pub(super) async fn end_ours(&self, cause: &str) {
        if self.state.borrow().hangup.is_some() {
            return;
        }
        self.end_at(self.now(), HungUpBy::System, cause);
        self.signal_end(cause).await;
    }

    async fn signal_end(&self, cause: &str) {
        let answered = {
            let mut state = self.state.borrow_mut();
            state.signalled = true;
            state.answered
        };
        if answered {
            // A BYE before the caller's ACK could overtake our 200.
            self.far_end.settled().await;
            let leg = self.leg.clone();
            let reason = format!("Q.850;cause={};text=\"{cause}\"", q850(cause));
            let _ = self
                .context
                .runtime
                .spawn(async move { leg.bye(Some(reason)).await })
                .await;
        } else {
            self.leg.refuse(sip_for_cause(cause), "");
        }
        self.media.send(Control::Close);
    }

    /// Starts media before the answer (183 with SDP), once.
    pub(super) fn early_media(&self) {
        let mut state = self.state.borrow_mut();
        if state.media_started {
            return;
        }
        state.media_started = true;
        drop(state);
        self.leg.progress(&self.sdp);
        self.media.send(Control::Start);
    }

    /// What a replay of this call needs beyond its events: the HTTP
    /// answers it met (`{"http": [{method, url, status, body, headers}]}`).
    pub(super) fn replay(&self) -> serde_json::Value {
        serde_json::json!({ "http": self.http_answers.borrow().clone() })
    }

    /// Called once the call is over: closes the leg and the media, and
    /// waits until the media is over (recordings are complete files).
    pub(super) async fn close(&self) {
        if self.closed.replace(true) {
            return;
        }
        if self.state.borrow().hangup.is_none() {
            self.end_ours("NORMAL_CLEARING").await;
        }
        self.finish_after_callee().await;
        if let Some(peer) = self.disconnect() {
            session::unrelay(&[&self.media, &peer.media]);
            peer.leg.hangup().await;
            peer.media.send(Control::Close);
        }
        let call_recording = self.state.borrow_mut().call_recording.take();
        if let Some((_, tap)) = call_recording {
            self.media.send(Control::Untap { id: tap });
        }
        self.media.send(Control::Close);
        // A call that left without a hang-up (a transfer) tells the world
        // here.
        self.world_ended();
        self.context.world.leave(&self.call_id);
        self.media.ended().await;
    }

    /// Waits until `until` (call time), an event that stops the verb, or a
    /// hang-up. Digits go to the buffer when `buffer` is set; `stop_on`
    /// says which digits end the wait; `done` which media event does. The
    /// metaflow listener's deadline runs what it fires, here.
    async fn wait(
        &self,
        until: Option<u64>,
        buffer: bool,
        stop_on: &dyn Fn(Leg, char) -> bool,
        beside: &dyn Beside,
        done: &dyn Fn(&MediaEvent) -> bool,
    ) -> Stop {
        self.wait_inner(until, buffer, stop_on, beside, done, false)
            .await
    }

    /// What a bridge waits for while its legs ring: digits (buffered), a
    /// leg's event ([`Stop::Peer`]), its deadline, a hang-up.
    pub(super) async fn wait_peers(&self, deadline: u64, beside: &dyn Beside) -> Stop {
        self.wait_inner(
            Some(deadline),
            true,
            &|_, _| false,
            beside,
            &|_| false,
            true,
        )
        .await
    }

    /// What an attended transfer waits for: the transferor's digits
    /// (`stop_on`), a called leg's event ([`Stop::Peer`]), the peer leaving
    /// ([`Stop::PeerGone`]), a hang-up, `deadline`.
    pub(super) async fn wait_consult(
        &self,
        deadline: Option<u64>,
        stop_on: &dyn Fn(Leg, char) -> bool,
        beside: &dyn Beside,
    ) -> Stop {
        self.wait_inner(deadline, false, stop_on, beside, &|_| false, true)
            .await
    }

    pub(super) fn set_consulting(&self, on: bool) {
        self.consulting.set(on);
    }

    /// What an answered bridge waits for: a hang-up of either side, a
    /// metaflow taking the call, the peer leaving.
    pub(super) async fn wait_connected(&self, beside: &dyn Beside, until: Option<u64>) -> Stop {
        if self.state.borrow().peer.is_none() {
            return Stop::PeerGone;
        }
        self.wait_inner(until, false, &|_, _| false, beside, &|_| false, false)
            .await
    }

    /// What a page waits for once paging: a hang-up, a metaflow taking
    /// the call, a paged leg's event ([`Stop::Peer`]).
    pub(super) async fn wait_connected_page(&self, beside: &dyn Beside) -> Stop {
        self.wait_inner(None, false, &|_, _| false, beside, &|_| false, true)
            .await
    }

    pub(super) async fn wait_inner(
        &self,
        until: Option<u64>,
        buffer: bool,
        stop_on: &dyn Fn(Leg, char) -> bool,
        beside: &dyn Beside,
        done: &dyn Fn(&MediaEvent) -> bool,
        peers: bool,
    ) -> Stop {
        loop {
            if peers && !self.state.borrow().pending.is_empty() {
                return Stop::Peer;
            }
            if self.is_gone() {
                return Stop::Hangup;
            }
            let listener = beside.deadline();
            let limit = self.context.max_call_ms;
            let next = [until, listener, Some(limit)].into_iter().flatten().min();
            let received = {
                let mut events = self.events.lock().await;
                match next {
                    Some(t) => {
                        tokio::select! {
                            biased;
                            event = events.recv() => Some(event),
                            () = tokio::time::sleep_until(self.instant(t)) => None,
                        }
                    }
                    None => Some(events.recv().await),
                }
            };
            match received {
                None => {
                    let now = self.now();
                    if listener.is_some_and(|t| t <= now) {
                        // The metaflow's verbs reach for nothing of the
                        // verb waiting here, which reaches again after.
                        let reach = self.reach.replace(super::crosscall::Reach::Nothing);
                        let resumed = beside.fire().await;
                        self.reach.set(reach);
                        match resumed {
                            Resume::Continue if !self.is_gone() => continue,
                            Resume::Break if !self.is_gone() => return Stop::Break,
                            Resume::Stop if !self.is_gone() => return Stop::TakenOver,
                            _ => return Stop::Hangup,
                        }
                    }
                    if now >= limit {
                        self.end_ours("ALLOTTED_TIMEOUT").await;
                        return Stop::Hangup;
                    }
                    if until.is_some_and(|t| t <= now) {
                        return Stop::Deadline;
                    }
                }
                Some(None) => {
                    // Leg and media are gone without a word: treat as the
                    // caller leaving.
                    self.far_end.set(EndedBy::Bye);
                    self.check_far_end();
                    return Stop::Hangup;
                }
                Some(Some(incoming)) => {
                    match self.handle(incoming, buffer, stop_on, beside, done) {
                        None => {}
                        Some(Stop::Peer) if !peers => {}
                        Some(Stop::Refer(leg, target)) => {
                            if let Some(stop) = self.phone_transfer(leg, &target, beside).await {
                                return stop;
                            }
                        }
                        Some(stop) => return stop,
                    }
                }
            }
        }
    }

    fn handle(
        &self,
        incoming: Incoming,
        buffer: bool,
        stop_on: &dyn Fn(Leg, char) -> bool,
        beside: &dyn Beside,
        done: &dyn Fn(&MediaEvent) -> bool,
    ) -> Option<Stop> {
        match &incoming {
            Incoming::Leg(LegEvent::Dtmf(_)) | Incoming::Media(MediaEvent::Dtmf(_))
                if !self.within(&self.digits) =>
            {
                return None;
            }
            Incoming::Leg(LegEvent::Reoffer(_) | LegEvent::Refer(_))
                if !self.within(&self.caller_events) =>
            {
                return None;
            }
            _ => {}
        }
        let digit = match incoming {
            Incoming::Leg(LegEvent::Ended(by)) => {
                self.far_end.set(by);
                self.check_far_end();
                return Some(Stop::Hangup);
            }
            Incoming::Leg(LegEvent::AckSdp(body)) => {
                if self.delayed_offer
                    && let Ok(agreed) = Offer::parse(&body).and_then(|o| o.negotiate())
                {
                    self.media.send(Control::Configure(agreed));
                }
                return None;
            }
            Incoming::Leg(LegEvent::Dtmf(digit)) | Incoming::Media(MediaEvent::Dtmf(digit)) => {
                digit
            }
            Incoming::Media(event) => {
                return done(&event).then_some(Stop::Media(event));
            }
            Incoming::Peer(id, event) => return self.peer_event(id, event, stop_on, beside),
            Incoming::World(event) => return self.on_world(event),
            Incoming::Leg(LegEvent::Reoffer(agreed)) => {
                self.reoffered(Leg::A, agreed);
                return None;
            }
            Incoming::Leg(LegEvent::Refer(target)) => return Some(Stop::Refer(Leg::A, target)),
            Incoming::Leg(
                LegEvent::Confirmed
                | LegEvent::Ringing
                | LegEvent::Early(_)
                | LegEvent::Answered(_)
                | LegEvent::Failed(..)
                | LegEvent::ReferProgress(_),
            ) => return None,
        };
        let now = self.now();
        self.record(Event::new(now, "dtmf").with("digit", digit.to_string()));
        let connected = self.state.borrow().peer.is_some();
        if buffer && !connected {
            self.state.borrow_mut().buffer.push_back(digit);
        }
        if connected && !self.consulting.get() {
            self.send_digit_to_peer(digit);
        }
        beside.dtmf(now, Leg::A, digit);
        self.unhold_by_key(Leg::A, digit);
        stop_on(Leg::A, digit).then_some(Stop::Digit(Leg::A, digit))
    }

    /// An event of a leg a bridge called: the connected peer's digits and
    /// hang-up are handled here (its hang-up ends the call, as any callee
    /// hang-up does); the rest waits for the bridge.
    fn peer_event(
        &self,
        id: u64,
        event: PeerEvent,
        stop_on: &dyn Fn(Leg, char) -> bool,
        beside: &dyn Beside,
    ) -> Option<Stop> {
        let connected = self.state.borrow().peer.as_ref().map(|p| p.id) == Some(id);
        if !connected {
            self.state.borrow_mut().pending.push_back((id, event));
            return Some(Stop::Peer);
        }
        match event {
            PeerEvent::Leg(LegEvent::Dtmf(_)) | PeerEvent::Media(MediaEvent::Dtmf(_))
                if !self.within(&self.digits) =>
            {
                None
            }
            PeerEvent::Leg(LegEvent::Dtmf(digit)) | PeerEvent::Media(MediaEvent::Dtmf(digit)) => {
                let now = self.now();
                self.record(
                    Event::new(now, "dtmf")
                        .with("digit", digit.to_string())
                        .with("leg", Leg::B.as_str()),
                );
                if !self.consulting.get() {
                    self.send_digit_to_caller(digit);
                }
                beside.dtmf(now, Leg::B, digit);
                self.unhold_by_key(Leg::B, digit);
                stop_on(Leg::B, digit).then_some(Stop::Digit(Leg::B, digit))
            }
            PeerEvent::Leg(LegEvent::Reoffer(agreed)) => {
                self.reoffered(Leg::B, agreed);
                None
            }
            PeerEvent::Leg(LegEvent::Refer(target)) => Some(Stop::Refer(Leg::B, target)),
            PeerEvent::Leg(LegEvent::Ended(_)) if self.consulting.get() => {
                // An attended transfer decides what the peer's leaving means.
                if let Some(peer) = self.disconnect() {
                    session::unrelay(&[&self.media, &peer.media]);
                    peer.media.send(Control::Close);
                }
                Some(Stop::PeerGone)
            }
            PeerEvent::Leg(LegEvent::Ended(_)) => {
                self.end_hold(false);
                if let Some(peer) = self.disconnect() {
                    session::unrelay(&[&self.media, &peer.media]);
                    peer.media.send(Control::Close);
                }
                self.end_at(self.now(), HungUpBy::Callee, "NORMAL_CLEARING");
                Some(Stop::Hangup)
            }
            _ => None,
        }
    }

    /// A caller's digit for the bridged callee.
    fn send_digit_to_peer(&self, digit: char) {
        let state = self.state.borrow();
        let Some(peer) = &state.peer else { return };
        self.send_digit(&peer.media, &peer.leg, peer.telephone_events, digit);
    }

    /// A callee's digit for the caller.
    fn send_digit_to_caller(&self, digit: char) {
        let events = self.sdp.contains("telephone-event");
        self.send_digit(&self.media, &self.leg, events, digit);
    }

    /// A digit to a leg: RFC 4733 when its SDP took `telephone_events`,
    /// else SIP INFO.
    fn send_digit(&self, media: &Handle, leg: &SipLeg, telephone_events: bool, digit: char) {
        if telephone_events {
            media.send(Control::Dtmf {
                id: 0,
                digits: digit.to_string(),
            });
        } else {
            let leg = leg.clone();
            self.context
                .runtime
                .spawn(async move { leg.info_digit(digit).await });
        }
    }

    /// The callee hung up: the caller's leg ends too (a BYE), once.
    pub(super) async fn finish_after_callee(&self) {
        let pending = {
            let state = self.state.borrow();
            !state.signalled
                && self.far_end.get().is_none()
                && state
                    .hangup
                    .as_ref()
                    .is_some_and(|h| h.by == HungUpBy::Callee)
        };
        if pending {
            self.signal_end("NORMAL_CLEARING").await;
        }
    }

    // What the bridge and mid-call features need of the backend.

    pub(super) fn context(&self) -> &Context {
        &self.context
    }

    pub(super) fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The call joins the server's world of calls (see
    /// [`super::world::World`]): the others of its account see it.
    pub fn enter_world(&self, facts: &crate::engine::CallFacts) {
        *self.device.borrow_mut() = facts.calling_device.as_ref().map(|d| d.as_str().to_owned());
        self.context.world.enter(
            self.context.account.account.id.as_str(),
            facts,
            self.media.clone(),
            self.context.events.clone(),
        );
    }

    pub(super) fn calling_device(&self) -> Option<String> {
        self.device.borrow().clone()
    }

    pub(super) fn is_answered(&self) -> bool {
        self.state.borrow().answered
    }

    /// The call's leg is one we placed and that answered (a callback):
    /// its media runs, and `answer` has nothing to do.
    pub fn answered_already(&self) {
        let mut state = self.state.borrow_mut();
        state.answered = true;
        state.media_started = true;
        state.signalled = false;
    }

    /// The call has hung up (or left).
    pub(super) fn has_ended(&self) -> bool {
        self.state.borrow().hangup.is_some()
    }

    pub(super) fn reach(&self) -> super::crosscall::Reach {
        self.reach.get()
    }

    pub(super) fn set_reach(&self, reach: super::crosscall::Reach) {
        self.reach.set(reach);
    }

    pub(super) fn joiner_slot<T>(
        &self,
        f: impl FnOnce(&mut Option<super::crosscall::Joiner>) -> T,
    ) -> T {
        f(&mut self.state.borrow_mut().joiner)
    }

    pub(super) fn world_peer<T>(
        &self,
        f: impl FnOnce(&mut Option<super::crosscall::WorldPeer>) -> T,
    ) -> T {
        f(&mut self.state.borrow_mut().world_peer)
    }

    pub(super) fn listening_to<T>(&self, f: impl FnOnce(&mut Option<String>) -> T) -> T {
        f(&mut self.state.borrow_mut().listening_to)
    }

    /// Ends the call now (once), recording the `hangup` event.
    pub(super) fn end_at_now(&self, by: HungUpBy, cause: &str) {
        self.end_at(self.now(), by, cause);
    }

    pub(super) fn trace_event(&self, event: Event) {
        self.record(event);
    }

    /// Takes `digit` back out of the buffer when it is the last one there
    /// (a digit that answered a wait).
    pub(super) fn unbuffer(&self, digit: char) {
        let mut state = self.state.borrow_mut();
        if state.buffer.back() == Some(&digit) {
            state.buffer.pop_back();
        }
    }

    /// Waits for anything that ends a verb: the hang-up, `until`, a digit
    /// of `stop_on`, a message of another call the verb reaches for.
    pub(super) async fn wait_any(
        &self,
        until: Option<u64>,
        buffer: bool,
        stop_on: &dyn Fn(Leg, char) -> bool,
        beside: &dyn Beside,
    ) -> Stop {
        self.wait_inner(until, buffer, stop_on, beside, &|_| false, false)
            .await
    }

    pub(super) fn sip_leg(&self) -> &SipLeg {
        &self.leg
    }

    pub(super) fn with_peer<T>(&self, f: impl FnOnce(&Connected) -> T) -> Option<T> {
        self.state.borrow().peer.as_ref().map(f)
    }

    pub(super) fn moh_slot(&self) -> super::midcall::MohSlot {
        Arc::clone(&self.moh)
    }

    pub(super) fn holding(&self) -> Option<super::midcall::Holding> {
        self.state.borrow().hold
    }

    /// Sets the hold; returns the one it replaces.
    pub(super) fn set_holding(
        &self,
        hold: Option<super::midcall::Holding>,
    ) -> Option<super::midcall::Holding> {
        std::mem::replace(&mut self.state.borrow_mut().hold, hold)
    }

    pub(super) fn record_event(&self, event: Event) {
        self.record(event);
    }

    pub(super) fn is_gone_now(&self) -> bool {
        self.is_gone()
    }

    pub(super) fn media(&self) -> &Handle {
        &self.media
    }

    pub(super) fn next_leg(&self) -> u64 {
        let mut state = self.state.borrow_mut();
        state.legs += 1;
        state.legs
    }

    pub(super) fn take_pending(&self) -> Option<(u64, PeerEvent)> {
        self.state.borrow_mut().pending.pop_front()
    }

    pub(super) fn connected(&self) -> Option<u64> {
        self.state.borrow().peer.as_ref().map(|p| p.id)
    }

    pub(super) fn connect(&self, peer: Connected) {
        self.note_media(&peer.endpoint.id, &peer.media);
        self.context
            .world
            .set_peer_media(&self.call_id, Some(peer.media.clone()));
        self.state.borrow_mut().peer = Some(peer);
    }

    /// A callee's media, for the trace's `media` report.
    pub(super) fn note_media(&self, endpoint: &str, media: &Handle) {
        self.peers_media
            .borrow_mut()
            .push((endpoint.to_owned(), media.clone()));
    }

    /// What each leg's media carried (`a`: the caller; then every callee
    /// connected, `b`, with its endpoint), once the call is over.
    pub(super) async fn media_report(&self) -> serde_json::Value {
        let leg = |mut head: serde_json::Value, stats: session::Stats| {
            if let (Some(map), Ok(serde_json::Value::Object(more))) =
                (head.as_object_mut(), serde_json::to_value(stats))
            {
                map.extend(more);
            }
            head
        };
        let peers = self.peers_media.borrow().clone();
        let mut legs = vec![leg(serde_json::json!({"leg": "a"}), self.media.stats())];
        for (endpoint, media) in peers {
            media.send(Control::Close);
            media.ended().await;
            legs.push(leg(
                serde_json::json!({"leg": "b", "endpoint": endpoint}),
                media.stats(),
            ));
        }
        serde_json::Value::Array(legs)
    }

    /// Leaves `media` out of the trace's `media` report (a leg that goes
    /// on without the call: closing it at the call's end would cut it).
    pub(super) fn forget_media(&self, media: &Handle) {
        self.peers_media
            .borrow_mut()
            .retain(|(_, noted)| !noted.same(media));
    }

    pub(super) fn disconnect(&self) -> Option<Connected> {
        let peer = self.state.borrow_mut().peer.take();
        if peer.is_some() {
            self.context.world.set_peer_media(&self.call_id, None);
        }
        peer
    }

    pub(super) fn timed_out(&self) -> bool {
        self.state
            .borrow()
            .hangup
            .as_ref()
            .is_some_and(|h| h.timed_out)
    }

    /// Plays a clip to the caller (`times` 0: until stopped); its id.
    pub(super) fn play_clip(&self, clip: Arc<Clip>, times: u32) -> u64 {
        let id = self.next_id();
        self.media.send(Control::Play {
            id,
            clip,
            times: Some(times),
        });
        id
    }

    /// [`LiveBackend::wait`] for verbs a `break` does not stop.
    async fn wait_through_breaks(
        &self,
        until: Option<u64>,
        buffer: bool,
        stop_on: &dyn Fn(Leg, char) -> bool,
        beside: &dyn Beside,
        done: &dyn Fn(&MediaEvent) -> bool,
    ) -> Stop {
        loop {
            match self.wait(until, buffer, stop_on, beside, done).await {
                Stop::Break => {}
                stop => return stop,
            }
        }
    }

    /// Runs blocking work (files, processes, HTTP) off the call's thread.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        self.context.runtime.spawn_blocking(work).await.ok()
    }

    /// A clip for a media name; a missing one is a warning and a short
    /// silence, never a dead call.
    pub(super) async fn clip(
        &self,
        resolve: impl FnOnce(&Library, &AccountFlows) -> Result<Resolved, String> + Send + 'static,
    ) -> Arc<Clip> {
        let library = Arc::clone(&self.context.library);
        let account = Arc::clone(&self.context.account);
        let found = self
            .blocking(move || resolve(&library, &account))
            .await
            .unwrap_or_else(|| Err("the media lookup failed".to_owned()));
        match found {
            Ok(resolved) => resolved.clip,
            Err(message) => {
                self.warn(message);
                Arc::new(Clip::silence(MISSING_MEDIA_MS))
            }
        }
    }

    /// Plays `clip` `times` times (0: until stopped) to the caller.
    async fn playback(
        &self,
        clip: Arc<Clip>,
        times: u32,
        terminators: &str,
        legs: Legs,
        beside: &dyn Beside,
    ) -> PlayOutcome {
        let start = self.now();
        if !legs.includes(Leg::A) {
            // Only the caller's leg exists until bridging comes.
            return PlayOutcome {
                reason: PlayReason::Completed,
                digit: None,
                duration_ms: 0,
            };
        }
        self.early_media();
        let id = self.next_id();
        self.media.send(Control::Play {
            id,
            clip,
            times: Some(times),
        });
        let stop = self
            .wait(
                None,
                true,
                &|leg, d| legs.includes(leg) && terminators.contains(d),
                beside,
                &|e| matches!(e, MediaEvent::Played { id: done, .. } if *done == id),
            )
            .await;
        let (reason, digit) = match stop {
            Stop::Media(_)
            | Stop::Deadline
            | Stop::Break
            | Stop::Peer
            | Stop::PeerGone
            | Stop::Refer(..)
            | Stop::Joined
            | Stop::Woken => (PlayReason::Completed, None),
            Stop::Digit(_, d) => (PlayReason::Terminator, Some(d)),
            Stop::Hangup | Stop::TakenOver => (PlayReason::Hangup, None),
        };
        if !matches!(stop, Stop::Media(_)) {
            self.media.send(Control::Stop { id });
        }
        PlayOutcome {
            reason,
            digit,
            duration_ms: self.now().saturating_sub(start),
        }
    }

    async fn collect_digits(
        &self,
        request: &CollectRequest,
        beside: &dyn Beside,
    ) -> CollectOutcome {
        let start = self.now();
        if let Some(prompt) = &request.prompt {
            let name = prompt.clone();
            let clip = self.clip(move |lib, acc| lib.media(acc, &name, None)).await;
            let outcome = self
                .playback(clip, 1, "0123456789*#", Legs::A, beside)
                .await;
            if outcome.reason == PlayReason::Hangup {
                return collected(String::new(), CollectReason::Hangup, self.now() - start);
            }
        }
        rules::collect(
            request,
            start,
            &|| self.now(),
            &|| self.state.borrow_mut().buffer.pop_front(),
            |deadline| async move {
                match self
                    .wait(
                        Some(deadline),
                        true,
                        &|leg, _| leg == Leg::A,
                        beside,
                        &|_| false,
                    )
                    .await
                {
                    Stop::Deadline => Waited::Timeout,
                    Stop::Hangup | Stop::TakenOver => Waited::Hangup,
                    Stop::Digit(..)
                    | Stop::Break
                    | Stop::Media(_)
                    | Stop::Peer
                    | Stop::PeerGone
                    | Stop::Refer(..)
                    | Stop::Joined
                    | Stop::Woken => Waited::Again,
                }
            },
        )
        .await
    }

    /// A new recording id: `<call id>-rec<n>`.
    fn recording_id(&self) -> String {
        let mut state = self.state.borrow_mut();
        state.recordings += 1;
        format!("{}-rec{}", self.call_id, state.recordings)
    }
}

/// What a missing prompt plays instead.
const MISSING_MEDIA_MS: u32 = 500;

fn collected(digits: String, reason: CollectReason, duration_ms: u64) -> CollectOutcome {
    CollectOutcome {
        digits,
        reason,
        duration_ms,
    }
}

/// The SIP response for a hang-up cause before the answer (`FreeSWITCH`'s
/// `hangup_cause_to_sip`, the table in the README); 480 for the others.
pub fn sip_for_cause(cause: &str) -> u16 {
    match cause {
        "UNALLOCATED_NUMBER" | "NO_ROUTE_TRANSIT_NET" | "NO_ROUTE_DESTINATION" => 404,
        "USER_BUSY" => 486,
        "NO_USER_RESPONSE" | "ALLOTTED_TIMEOUT" => 408,
        "CALL_REJECTED" => 603,
        "NUMBER_CHANGED" | "REDIRECTION_TO_NEW_DESTINATION" => 410,
        "DESTINATION_OUT_OF_ORDER" => 502,
        "INVALID_NUMBER_FORMAT" => 484,
        "FACILITY_REJECTED" | "FACILITY_NOT_IMPLEMENTED" | "SERVICE_NOT_IMPLEMENTED" => 501,
        "REQUESTED_CHAN_UNAVAIL"
        | "NORMAL_CIRCUIT_CONGESTION"
        | "NETWORK_OUT_OF_ORDER"
        | "NORMAL_TEMPORARY_FAILURE"
        | "SWITCH_CONGESTION" => 503,
        "INCOMPATIBLE_DESTINATION" | "BEARERCAPABILITY_NOTAVAIL" => 488,
        "RECOVERY_ON_TIMER_EXPIRE" => 504,
        "ORIGINATOR_CANCEL" => 487,
        _ => 480,
    }
}

/// The Q.850 cause number of a cause name (for the BYE's `Reason`).
fn q850(cause: &str) -> u16 {
    match cause {
        "UNALLOCATED_NUMBER" => 1,
        "NO_ROUTE_DESTINATION" => 3,
        "NORMAL_CLEARING" => 16,
        "USER_BUSY" => 17,
        "NO_USER_RESPONSE" => 18,
        "NO_ANSWER" => 19,
        "CALL_REJECTED" => 21,
        "NUMBER_CHANGED" => 22,
        "EXCHANGE_ROUTING_ERROR" => 25,
        "INVALID_NUMBER_FORMAT" => 28,
        "NETWORK_OUT_OF_ORDER" => 38,
        "NORMAL_TEMPORARY_FAILURE" => 41,
        "SERVICE_UNAVAILABLE" => 63,
        "FACILITY_NOT_IMPLEMENTED" => 69,
        "SERVICE_NOT_IMPLEMENTED" => 79,
        "INCOMPATIBLE_DESTINATION" => 88,
        "RECOVERY_ON_TIMER_EXPIRE" => 102,
        "INTERWORKING" => 127,
        "ALLOTTED_TIMEOUT" => 602,
        _ => 31,
    }
}

/// A call that ends without [`LiveBackend::close`] (its task dropped)
/// leaves the world too: the calls joined to it or listening are told, and
/// no other call sees a ghost.
impl Drop for LiveBackend {
    fn drop(&mut self) {
        self.world_ended();
        self.context.world.leave(&self.call_id);
    }
}

impl CallControl for LiveBackend {
    fn now_ms(&self) -> u64 {
        self.now()
    }

    fn hangup_info(&self) -> Option<Hangup> {
        self.check_far_end();
        self.state.borrow().hangup.clone()
    }

    fn answer(&self) -> LocalFuture<'_, Result<(), Gone>> {
        Box::pin(async move {
            self.alive()?;
            if self.state.borrow().answered {
                return Ok(());
            }
            if !self.leg.answer(&self.sdp) {
                self.far_end.set(EndedBy::Cancel);
                return Err(Gone);
            }
            let mut state = self.state.borrow_mut();
            state.answered = true;
            state.media_started = true;
            drop(state);
            self.media.send(Control::Start);
            Ok(())
        })
    }

    fn ring(&self) -> LocalFuture<'_, Result<(), Gone>> {
        Box::pin(async move {
            self.alive()?;
            if !self.state.borrow().answered {
                self.leg.ring();
            }
            Ok(())
        })
    }

    fn hangup(&self, cause: &str) -> LocalFuture<'_, ()> {
        let cause = cause.to_owned();
        Box::pin(async move { self.end_ours(&cause).await })
    }

    fn transfer(&self, target: &str) -> LocalFuture<'_, Result<(), Gone>> {
        let target = target.to_owned();
        Box::pin(async move {
            self.alive()?;
            self.warn(format!(
                "transfer to {target} needs a second leg, which real calls get with bridging: the call ends here"
            ));
            let t_ms = self.now();
            self.state.borrow_mut().hangup = Some(Hangup {
                t_ms,
                cause: "TRANSFERRED".to_owned(),
                by: HungUpBy::System,
                timed_out: false,
                transferred: true,
            });
            self.signal_end("NORMAL_CLEARING").await;
            Ok(())
        })
    }

    fn play<'a>(
        &'a self,
        request: &'a PlayRequest,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<PlayOutcome, Gone>> {
        Box::pin(async move {
            self.alive()?;
            let name = request.media.clone();
            let clip = self.clip(move |lib, acc| lib.media(acc, &name, None)).await;
            Ok(self
                .playback(
                    clip,
                    request.loop_count,
                    &request.terminators,
                    request.legs,
                    beside,
                )
                .await)
        })
    }

    fn speak<'a>(
        &'a self,
        request: &'a SpeakRequest,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<PlayOutcome, Gone>> {
        Box::pin(async move {
            self.alive()?;
            let (say, text, style, method, language) = (
                request.say,
                request.text.clone(),
                request.style.clone(),
                request.method.clone(),
                request.language.clone(),
            );
            let clip = self
                .clip(move |lib, _| {
                    if say {
                        lib.say(&text, &style, method.as_deref(), language.as_deref())
                    } else {
                        lib.tts(&text, &style, language.as_deref())
                    }
                })
                .await;
            Ok(self
                .playback(clip, 1, &request.terminators, request.legs, beside)
                .await)
        })
    }

    fn collect<'a>(
        &'a self,
        request: &'a CollectRequest,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<CollectOutcome, Gone>> {
        Box::pin(async move {
            self.alive()?;
            Ok(self.collect_digits(request, beside).await)
        })
    }

    fn record<'a>(
        &'a self,
        request: &'a RecordRequest,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<RecordOutcome, Gone>> {
        Box::pin(async move {
            self.alive()?;
            self.early_media();
            let start = self.now();
            let recording_id = self.recording_id();
            let tap_id = self.next_id();
            let (tap, file) = super::record::caller(&self.context, &recording_id, request, tap_id);
            self.media.send(Control::Tap { id: tap_id, tap });
            let stop = self
                .wait_through_breaks(
                    Some(start.saturating_add(request.time_limit_ms)),
                    false,
                    &|leg, d| leg == Leg::A && request.terminators.contains(d),
                    beside,
                    &|e| matches!(e, MediaEvent::Tap { id, what, .. } if *id == tap_id && what == "silence"),
                )
                .await;
            let reason = match stop {
                Stop::Deadline
                | Stop::Break
                | Stop::Peer
                | Stop::PeerGone
                | Stop::Refer(..)
                | Stop::Joined
                | Stop::Woken => RecordReason::MaxLength,
                Stop::Media(_) => RecordReason::Silence,
                Stop::Digit(..) => RecordReason::Terminator,
                Stop::Hangup | Stop::TakenOver => RecordReason::Hangup,
            };
            let duration_ms = self.now().saturating_sub(start);
            self.media.send(Control::Untap { id: tap_id });
            self.made.borrow_mut().push(super::Recording {
                id: recording_id.clone(),
                file,
                name: request.name.clone(),
                duration_ms,
            });
            Ok(RecordOutcome {
                recording_id,
                duration_ms,
                reason,
            })
        })
    }

    fn bridge<'a>(
        &'a self,
        request: &'a BridgeRequest,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<BridgeOutcome, Gone>> {
        Box::pin(async move {
            self.alive()?;
            Ok(self.run_bridge(request, beside).await)
        })
    }

    fn sleep<'a>(
        &'a self,
        ms: u64,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<SleepReason, Gone>> {
        Box::pin(async move {
            self.alive()?;
            let until = self.now().saturating_add(ms);
            let stop = self
                .wait(Some(until), true, &|_, _| false, beside, &|_| false)
                .await;
            Ok(match stop {
                Stop::Hangup | Stop::TakenOver => SleepReason::Hangup,
                _ => SleepReason::Completed,
            })
        })
    }

    fn send_dtmf<'a>(&'a self, digits: &'a str) -> LocalFuture<'a, Result<(), Gone>> {
        Box::pin(async move {
            self.alive()?;
            self.early_media();
            let id = self.next_id();
            self.media.send(Control::Dtmf {
                id,
                digits: digits.to_owned(),
            });
            let limit = self.now() + 200 * digits.chars().count() as u64 + 1000;
            self.wait(
                Some(limit),
                true,
                &|_, _| false,
                &crate::engine::control::Alone,
                &|e| matches!(e, MediaEvent::DtmfSent { id: done } if *done == id),
            )
            .await;
            Ok(())
        })
    }

    fn respond<'a>(&'a self, code: u16, message: &'a str) -> LocalFuture<'a, Result<(), Gone>> {
        Box::pin(async move {
            self.alive()?;
            let answered = self.state.borrow().answered;
            match code {
                183 if !answered => self.early_media(),
                100..=299 if !answered => self.leg.provisional(code, message),
                300.. => {
                    let cause = crate::engine::control::cause_for_sip(code);
                    self.end_at_with(self.now(), HungUpBy::System, cause, Some(code));
                    if answered {
                        self.signal_end(cause).await;
                    } else {
                        self.leg.refuse(code, message);
                        self.media.send(Control::Close);
                    }
                }
                _ => {}
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
            let start = self.now();
            let failed = HttpOutcome::failed;
            if let Some(reason) = crate::sim::network::refused(&request.url)
                .filter(|_| !self.context.allow_private_http)
            {
                return failed(reason);
            }
            let id = self.next_id();
            let owned = request.clone();
            let allow = self.context.allow_private_http;
            let events = self.context.runtime.clone();
            let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
            // The answer comes back through `done_rx`; the task itself is
            // not awaited.
            drop(events.spawn_blocking(move || {
                let _ = done_tx.send(crate::sim::network::request(&owned, allow));
            }));
            // Digits pressed meanwhile are heard (and buffered); the
            // response ends the wait.
            let outcome = loop {
                if let Ok(result) = done_rx.try_recv() {
                    break Some(result);
                }
                let stop = tokio::select! {
                    result = &mut done_rx => {
                        break result.ok();
                    }
                    stop = self.wait(
                        Some(self.now() + 50),
                        true,
                        &|_, _| false,
                        beside,
                        &|_| false,
                    ) => stop,
                };
                if matches!(stop, Stop::Hangup | Stop::TakenOver) {
                    // HTTP is allowed after the call is gone: finish it.
                    break (&mut done_rx).await.ok();
                }
            };
            let _ = id;
            match outcome {
                Some(Ok(mut outcome)) => {
                    outcome.duration_ms = self.now().saturating_sub(start);
                    self.http_answers.borrow_mut().push(serde_json::json!({
                        "method": request.method,
                        "url": request.url,
                        "status": outcome.status,
                        "body": outcome.body,
                        "headers": outcome.headers,
                        "duration_ms": outcome.duration_ms,
                    }));
                    outcome
                }
                Some(Err(error)) => failed(error),
                None => failed("the request was lost".to_owned()),
            }
        })
    }

    fn record_call(
        &self,
        start: bool,
        time_limit_ms: Option<u64>,
    ) -> LocalFuture<'_, Result<String, Gone>> {
        Box::pin(async move {
            self.alive()?;
            if !start {
                let running = self.state.borrow_mut().call_recording.take();
                return Ok(match running {
                    Some((id, tap)) => {
                        self.media.send(Control::Untap { id: tap });
                        id
                    }
                    None => String::new(),
                });
            }
            if let Some((id, _)) = &self.state.borrow().call_recording {
                return Ok(id.clone());
            }
            let recording_id = self.recording_id();
            let tap_id = self.next_id();
            let (tap, file) =
                super::record::whole_call(&self.context, &recording_id, tap_id, time_limit_ms);
            self.media.send(Control::Tap { id: tap_id, tap });
            self.made.borrow_mut().push(super::Recording {
                id: recording_id.clone(),
                file,
                name: Some(format!("Call recording {recording_id}")),
                duration_ms: 0,
            });
            self.state.borrow_mut().call_recording = Some((recording_id.clone(), tap_id));
            Ok(recording_id)
        })
    }

    fn recording(&self) -> Option<String> {
        self.state
            .borrow()
            .call_recording
            .as_ref()
            .map(|(id, _)| id.clone())
    }

    fn detect_fax<'a>(
        &'a self,
        ms: u64,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<bool, Gone>> {
        Box::pin(async move {
            self.alive()?;
            self.early_media();
            let tap_id = self.next_id();
            self.media.send(Control::Tap {
                id: tap_id,
                tap: super::record::fax_detector(tap_id),
            });
            let stop = self
                .wait_through_breaks(
                    Some(self.now().saturating_add(ms)),
                    true,
                    &|_, _| false,
                    beside,
                    &|e| matches!(e, MediaEvent::Tap { id, what, .. } if *id == tap_id && what == "fax"),
                )
                .await;
            self.media.send(Control::Untap { id: tap_id });
            Ok(matches!(stop, Stop::Media(_)))
        })
    }

    fn peer(&self) -> Option<PeerInfo> {
        let state = self.state.borrow();
        let peer = state.peer.as_ref()?;
        Some(PeerInfo {
            call_id: peer.leg.call_id(),
            endpoint: peer.endpoint.id.clone(),
            held: state.hold.map(|h| h.held),
        })
    }

    fn hold(&self, leg: Leg, moh: Option<&str>, unhold_key: Option<char>) -> Result<bool, Gone> {
        self.alive()?;
        Ok(self.hold_leg(leg, moh, unhold_key))
    }

    fn unhold(&self) -> Result<Option<Leg>, Gone> {
        self.alive()?;
        Ok(self.end_hold(true))
    }

    fn transfer_peer(&self, target: &str) -> Result<bool, Gone> {
        self.alive()?;
        let Some(peer) = self.disconnect() else {
            return Ok(false);
        };
        // The peer's phone calls the target itself (REFER), then leaves
        // this call; the caller's leg stays.
        session::unrelay(&[&self.media, &peer.media]);
        let host = self.context.sip.local_addr();
        let uri = format!("sip:{target}@{host}");
        self.context.runtime.spawn(async move {
            peer.leg.refer(&uri).await;
            peer.leg.hangup().await;
            peer.media.send(Control::Close);
        });
        Ok(true)
    }

    fn hangup_peer(&self, cause: &str) -> Result<bool, Gone> {
        self.alive()?;
        let Some(peer) = self.disconnect() else {
            return Ok(false);
        };
        session::unrelay(&[&self.media, &peer.media]);
        self.context.runtime.spawn(async move {
            peer.leg.hangup().await;
            peer.media.send(Control::Close);
        });
        // As any callee hang-up, it ends the caller's leg too.
        self.end_at(self.now(), HungUpBy::Callee, cause);
        Ok(true)
    }

    fn attended_transfer<'a>(
        &'a self,
        request: &'a ConsultRequest,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<ConsultOutcome, Gone>> {
        Box::pin(async move {
            self.alive()?;
            Ok(self.run_consult(request, beside).await)
        })
    }

    fn channels(&self) -> Vec<Channel> {
        self.world_channels()
    }

    fn wait<'a>(
        &'a self,
        place: &'a str,
        opts: &'a WaitRequest,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<WaitOutcome, Gone>> {
        Box::pin(async move {
            self.alive()?;
            Ok(self.run_wait(place, opts, beside).await)
        })
    }

    fn wake(&self, place: &str) -> usize {
        self.run_wake(place)
    }

    fn camp(&self, request: &crate::engine::control::CampRequest) -> bool {
        self.run_camp(request)
    }

    fn conference<'a>(
        &'a self,
        room: &'a str,
        moderator: bool,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<ConferenceOutcome, Gone>> {
        Box::pin(async move {
            self.alive()?;
            Ok(self.run_conference(room, moderator, beside).await)
        })
    }

    fn eavesdrop<'a>(
        &'a self,
        call_id: &'a str,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<EavesdropOutcome, Gone>> {
        Box::pin(async move {
            self.alive()?;
            Ok(self.run_eavesdrop(call_id, beside).await)
        })
    }

    fn park<'a>(
        &'a self,
        slot: &'a str,
        ms: u64,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<ParkOutcome, Gone>> {
        Box::pin(async move {
            self.alive()?;
            Ok(self.run_park(slot, ms, beside).await)
        })
    }

    fn pickup<'a>(
        &'a self,
        call_id: &'a str,
        intercept: bool,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<BridgeOutcome, Gone>> {
        Box::pin(async move {
            self.alive()?;
            Ok(self.run_pickup(call_id, intercept, beside).await)
        })
    }
}
