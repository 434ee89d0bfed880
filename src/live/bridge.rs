//! `bridge` on a real call: the legs it calls, how they ring (the
//! simulator's rules: simultaneous or single, per-endpoint delay and
//! timeout, an overall timeout), ringback or the callee's early media for
//! the caller, the winner connected (media relayed both ways), the losers
//! cancelled (CANCEL), and the outcome table the simulator has.
//!
//! Each leg is an INVITE to a registered contact of a device (sent to where
//! its REGISTER came from: it may be behind NAT), with our SDP offer and an
//! RTP session of its own; its events come to the call's channel as
//! [`Incoming::Peer`].

use super::backend::{Connected, LiveBackend, Stop};
use super::carriers;
use super::crosscall::Reach;
use super::{Incoming, PeerEvent};
use crate::engine::control::{
    Beside, BridgeEndpoint, BridgeOutcome, BridgeRequest, BridgeStatus, CONFIRM_TIMEOUT_MS,
    Strategy,
};
use crate::media::Offer;
use crate::media::session::{self, Control, Handle, MediaEvent};
use crate::sim::world::Activity;
use crate::sip::{Dial, Leg as SipLeg, LegEvent};
use crate::trace::Event;

/// What the caller hears while callees ring without early media (the
/// callflow's or account's `ringback` wins when the module names one).
pub const RINGBACK: &str = "tone_stream://%(2000,4000,440,480);loops=-1";

/// One called leg of a bridge (one contact of one endpoint).
pub(super) struct Called {
    pub(super) id: u64,
    endpoint: usize,
    pub(super) leg: SipLeg,
    pub(super) media: Handle,
    /// What its SDP agreed, once known (early media or the answer).
    pub(super) telephone_events: bool,
    over: bool,
    /// A gateway that has not answered by then is given up.
    progress_until: Option<u64>,
    /// Any response came (a provisional one, or the answer).
    progressed: bool,
    /// Answered, it hears the confirm prompt (this play) until it presses
    /// the bridge's confirm key.
    confirming: Option<u64>,
}

/// Where a leg of a bridge goes.
struct Target {
    uri: String,
    destination: Option<(std::net::SocketAddr, &'static str)>,
    credential: Option<(String, String)>,
    codecs: Vec<crate::media::Codec>,
    progress_timeout_s: Option<u64>,
}

/// Why an endpoint failed.
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

    /// The outcome of a SIP failure code: busy (486, 600), no answer (408,
    /// 480) or failed, with the code's cause
    /// ([`crate::engine::control::cause_for_sip`]).
    fn of_sip(at: u64, code: u16) -> Self {
        let status = match code {
            486 | 600 => BridgeStatus::Busy,
            408 | 480 => BridgeStatus::NoAnswer,
            _ => BridgeStatus::Failed,
        };
        Self {
            at,
            status,
            cause: crate::engine::control::cause_for_sip(code).to_owned(),
            sip: code,
        }
    }
}

#[derive(Debug, Clone)]
enum Ring {
    /// Not started yet: it rings from this time.
    Waiting(u64),
    /// Ringing until this time.
    Ringing(u64),
    Failed(Failure),
}

struct Endpoint {
    target: BridgeEndpoint,
    ring: Ring,
    /// Off-net: the gateways still to try.
    gateways: std::collections::VecDeque<carriers::Gateway>,
}

/// What a callee asked to confirm a bridge hears when the bridge names no
/// prompt (FreeSWITCH's group confirm file, as Kazoo sends it).
const CONFIRM_PROMPT: &str = "ivr-group_confirm";

/// Who hears a bridge's ringback or its callee's early media.
pub(super) enum Listener {
    /// The caller (a 183 first).
    Caller,
    /// A leg already talking (an attended transfer's transferor).
    Leg(Handle),
    /// Nobody (a move: the legs talk on while the target rings).
    Nobody,
}

/// A bridge while it rings.
pub(super) struct Ringing {
    start: u64,
    overall_end: u64,
    endpoints: Vec<Endpoint>,
    legs: Vec<Called>,
    /// Who hears the ringback or early media.
    listener: Listener,
    /// The ringback playing to the listener.
    ringback: Option<u64>,
    /// The leg whose early media the listener hears.
    early: Option<u64>,
}

impl Ringing {
    pub(super) fn new(request: &BridgeRequest, start: u64, listener: Listener) -> Self {
        let endpoints = request
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| Endpoint {
                target: e.clone(),
                gateways: std::collections::VecDeque::new(),
                ring: match request.strategy {
                    Strategy::Simultaneous => Ring::Waiting(start + e.delay_s * 1000),
                    Strategy::Single if i == 0 => Ring::Waiting(start + e.delay_s * 1000),
                    Strategy::Single => Ring::Waiting(u64::MAX),
                },
            })
            .collect();
        Self {
            start,
            overall_end: start.saturating_add(request.timeout_s.saturating_mul(1000)),
            endpoints,
            legs: Vec::new(),
            listener,
            ringback: None,
            early: None,
        }
    }

    /// Takes the leg `id` out (the one that answered), with the endpoint
    /// it rang for.
    pub(super) fn take(&mut self, id: u64) -> Option<(Called, BridgeEndpoint)> {
        let position = self.legs.iter().position(|c| c.id == id)?;
        let called = self.legs.swap_remove(position);
        let endpoint = self.endpoints[called.endpoint].target.clone();
        Some((called, endpoint))
    }

    /// The legs still ringing.
    pub(super) fn legs_mut(&mut self) -> &mut [Called] {
        &mut self.legs
    }

    /// When something next happens, or `None` when nothing rings or waits
    /// any more (or the overall timeout passed).
    fn deadline(&self, now: u64) -> Option<u64> {
        let progress = self
            .legs
            .iter()
            .filter(|c| !c.over && !c.progressed)
            .filter_map(|c| c.progress_until);
        let live = self.endpoints.iter().any(|e| match e.ring {
            Ring::Ringing(_) => true,
            Ring::Waiting(at) => at < self.overall_end,
            Ring::Failed(_) => false,
        });
        if !live || now >= self.overall_end {
            return None;
        }
        self.endpoints
            .iter()
            .filter_map(|e| match e.ring {
                Ring::Waiting(at) | Ring::Ringing(at) => Some(at),
                Ring::Failed(_) => None,
            })
            .chain(progress)
            .chain([self.overall_end])
            .min()
    }
}

impl LiveBackend {
    /// Places one leg of a bridge (our offer from a new RTP port); its
    /// events come as [`Incoming::Peer`]. `None` when it cannot be placed.
    fn place(&self, index: usize, target: Target, request: &BridgeRequest) -> Option<Called> {
        let context = self.context();
        let Some((socket, local)) = super::rtp_for_a_leg(&context.ports, context.media_ip) else {
            self.warn("no free RTP port for a bridged leg".to_owned());
            return None;
        };
        let mut headers = Vec::new();
        if request.page {
            // Kazoo's auto-answer headers for intercom and paging.
            headers.push((
                "Alert-Info".to_owned(),
                "<http://127.0.0.1>;info=alert-autoanswer;delay=0".to_owned(),
            ));
            headers.push((
                "Call-Info".to_owned(),
                "<sip:127.0.0.1>;answer-after=0".to_owned(),
            ));
        }
        // The module's own headers (X- only, checked by the API).
        headers.extend(request.options.headers.iter().cloned());
        // What this endpoint sees: its own caller id, else the bridge's.
        let (caller_id_name, caller_id_number) = request
            .endpoints
            .get(index)
            .and_then(|e| e.caller_id.clone())
            .unwrap_or_else(|| {
                (
                    request.caller_id_name.clone(),
                    request.caller_id_number.clone(),
                )
            });
        let progress_until = target
            .progress_timeout_s
            .map(|s| self.now().saturating_add(s.saturating_mul(1000)));
        let dial = Dial {
            uri: target.uri,
            destination: target.destination,
            from_user: caller_id_number,
            from_display: Some(caller_id_name).filter(|n| !n.is_empty()),
            headers,
            credential: target.credential,
            codecs: target.codecs,
            local,
        };
        let (leg, leg_events) = match context.sip.dial(&dial) {
            Ok(placed) => placed,
            Err(message) => {
                self.warn(format!("cannot call {}: {message}", dial.uri));
                return None;
            }
        };
        let id = self.next_leg();
        let (media_tx, media_events) = tokio::sync::mpsc::unbounded_channel();
        let media = session::start(socket, None, media_tx, &context.media_runtime);
        forward_peer(
            &context.runtime,
            &context.events,
            id,
            leg_events,
            media_events,
        );
        Some(Called {
            id,
            endpoint: index,
            leg,
            media,
            telephone_events: false,
            over: false,
            progress_until,
            progressed: false,
            confirming: None,
        })
    }

    /// Starts an endpoint ringing: every registered contact of a device, or
    /// the first gateway of the carriers for an off-net number (the others
    /// wait in `gateways`). Empty when nothing can be called.
    fn dial_endpoint(
        &self,
        index: usize,
        endpoint: &mut Endpoint,
        request: &BridgeRequest,
    ) -> Vec<Called> {
        let context = self.context();
        if endpoint.target.offnet {
            endpoint.gateways = carriers::gateways(
                &context.catalog,
                &context.account,
                &endpoint.target.id,
                request.carriers.as_ref(),
            )
            .into();
            return self
                .next_gateway(index, endpoint, request)
                .into_iter()
                .collect();
        }
        let contacts = context
            .sip
            .contacts(context.account.account.id.as_str(), &endpoint.target.id);
        contacts
            .into_iter()
            .filter_map(|contact| {
                // Behind NAT: where its REGISTER came from; else its Contact.
                let source = format!("{}:{}", contact.source_ip, contact.source_port);
                let transport = if contact.transport == "tcp" {
                    "tcp"
                } else {
                    "udp"
                };
                let destination = source
                    .parse()
                    .ok()
                    .filter(|_| contact.nat)
                    .map(|addr| (addr, transport));
                let target = Target {
                    uri: contact.contact.clone(),
                    destination,
                    credential: None,
                    codecs: Vec::new(),
                    progress_timeout_s: None,
                };
                self.place(index, target, request)
            })
            .collect()
    }

    /// Dials the next gateway of an off-net endpoint, skipping those that
    /// cannot be placed; `None` when none is left.
    fn next_gateway(
        &self,
        index: usize,
        endpoint: &mut Endpoint,
        request: &BridgeRequest,
    ) -> Option<Called> {
        while let Some(gateway) = endpoint.gateways.pop_front() {
            let target = Target {
                uri: gateway.uri.clone(),
                destination: None,
                credential: gateway.credential.clone(),
                codecs: gateway.codecs.clone(),
                progress_timeout_s: Some(gateway.progress_timeout_s),
            };
            if let Some(called) = self.place(index, target, request) {
                self.record_event(
                    crate::trace::Event::new(self.now(), "gateway")
                        .with("resource", gateway.resource.as_str())
                        .with("uri", gateway.uri.as_str()),
                );
                return Some(called);
            }
        }
        None
    }

    /// `bridge` on a real call (see the module docs).
    pub(super) async fn run_bridge(
        &self,
        request: &BridgeRequest,
        beside: &dyn Beside,
    ) -> BridgeOutcome {
        let start = self.now();
        if self.connected().is_some() {
            return BridgeOutcome::failed(0, BridgeStatus::Failed, "INCOMPATIBLE_DESTINATION", 488);
        }
        if request.page {
            return self.run_page(request, beside).await;
        }
        let mut ringing = Ringing::new(request, start, Listener::Caller);
        // Ringing: another call may pick it up.
        self.set_activity(Activity::Ringing(
            request.endpoints.iter().map(|e| e.id.clone()).collect(),
        ));
        self.set_reach(Reach::Join);
        let winner = loop {
            self.start_due(request, &mut ringing);
            if let Some(id) = self.leg_events(request, &mut ringing).await {
                break Some(id);
            }
            let Some(deadline) = self.ring_out(request, &mut ringing).await else {
                break None;
            };
            let stop = self.wait_peers(deadline, beside).await;
            if let Stop::Joined = stop
                && let Some(joiner) = self.take_joiner()
            {
                self.set_reach(Reach::Nothing);
                self.end_legs(&mut ringing.legs, |_| true).await;
                self.stop_ringback(&mut ringing);
                session::unrelay(&[self.media()]);
                return self.talk_to_joiner(joiner, start, beside).await;
            }
            if let Stop::Hangup | Stop::TakenOver = stop {
                self.set_reach(Reach::Nothing);
                self.set_activity(Activity::Busy);
                self.end_legs(&mut ringing.legs, |_| true).await;
                self.stop_ringback(&mut ringing);
                let (cause, sip) = if self.timed_out() {
                    ("ALLOTTED_TIMEOUT", 408)
                } else {
                    ("ORIGINATOR_CANCEL", 487)
                };
                return BridgeOutcome::failed(self.now() - start, BridgeStatus::Hangup, cause, sip);
            }
        };
        self.set_reach(Reach::Nothing);
        self.set_activity(Activity::Busy);
        self.stop_ringback(&mut ringing);
        let Some(winner) = winner else {
            self.end_legs(&mut ringing.legs, |_| true).await;
            if ringing.early.is_some() {
                session::unrelay(&[self.media()]);
            }
            return outcome_of_failures(request, &ringing, self.now());
        };
        self.connect_winner(ringing, winner, request.options.time_limit_s, beside)
            .await
    }

    /// Ends the ringing of endpoints whose time ran out; when the ringing
    /// next needs attention (`None`: nothing rings or waits any more).
    pub(super) async fn ring_out(
        &self,
        request: &BridgeRequest,
        ringing: &mut Ringing,
    ) -> Option<u64> {
        let now = self.now();
        for index in 0..ringing.endpoints.len() {
            if let Ring::Ringing(until) = ringing.endpoints[index].ring
                && until <= now.min(ringing.overall_end)
            {
                self.end_legs(&mut ringing.legs, |c| c.endpoint == index)
                    .await;
                ringing.endpoints[index].ring = Ring::Failed(Failure::no_answer(until));
                self.next_single(request, &mut ringing.endpoints, index);
            }
        }
        ringing.deadline(now)
    }

    /// Endpoints whose time has come start ringing.
    pub(super) fn start_due(&self, request: &BridgeRequest, ringing: &mut Ringing) {
        let now = self.now();
        for index in 0..ringing.endpoints.len() {
            let Ring::Waiting(at) = ringing.endpoints[index].ring else {
                continue;
            };
            if at > now || at >= ringing.overall_end {
                continue;
            }
            let called = self.dial_endpoint(index, &mut ringing.endpoints[index], request);
            let endpoint = &mut ringing.endpoints[index];
            endpoint.ring = if !called.is_empty() {
                Ring::Ringing(now.saturating_add(endpoint.target.timeout_s.saturating_mul(1000)))
            } else if endpoint.target.offnet {
                // No carrier takes the number.
                Ring::Failed(Failure {
                    at: now,
                    status: BridgeStatus::Failed,
                    cause: "NO_ROUTE_DESTINATION".to_owned(),
                    sip: 404,
                })
            } else {
                // The simulator's `unregistered`: a device with no contact.
                Ring::Failed(Failure {
                    at: now,
                    status: BridgeStatus::Failed,
                    cause: "USER_NOT_REGISTERED".to_owned(),
                    sip: 404,
                })
            };
            ringing.legs.extend(called);
        }
    }

    /// What the ringing legs did (and gateways silent past their progress
    /// timeout); the id of one that answered.
    pub(super) async fn leg_events(
        &self,
        request: &BridgeRequest,
        ringing: &mut Ringing,
    ) -> Option<u64> {
        let now = self.now();
        let silent: Vec<u64> = ringing
            .legs
            .iter()
            .filter(|c| !c.over && !c.progressed && c.progress_until.is_some_and(|t| t <= now))
            .map(|c| c.id)
            .collect();
        for id in silent {
            if let Some(called) = ringing.legs.iter().find(|c| c.id == id) {
                called.leg.hangup().await;
            }
            self.leg_failed(request, ringing, id, 408);
        }
        while let Some((id, event)) = self.take_pending() {
            let Some(called) = ringing.legs.iter_mut().find(|c| c.id == id && !c.over) else {
                continue;
            };
            if matches!(
                event,
                PeerEvent::Leg(LegEvent::Ringing | LegEvent::Early(_) | LegEvent::Answered(_))
            ) {
                called.progressed = true;
            }
            match event {
                PeerEvent::Leg(LegEvent::Ringing)
                    if ringing.early.is_none()
                        && ringing.ringback.is_none()
                        && !matches!(ringing.listener, Listener::Nobody) =>
                {
                    let play = self.start_ringback(request, &ringing.listener).await;
                    ringing.ringback = Some(play);
                }
                PeerEvent::Leg(LegEvent::Early(_))
                    if request.options.ignore_early_media
                        && ringing.ringback.is_none()
                        && !matches!(ringing.listener, Listener::Nobody) =>
                {
                    // Ringback instead of the callee's early media.
                    let play = self.start_ringback(request, &ringing.listener).await;
                    ringing.ringback = Some(play);
                }
                PeerEvent::Leg(LegEvent::Early(body)) if !request.options.ignore_early_media => {
                    called.telephone_events = configure(&called.media, &body);
                    if ringing.early.is_none() {
                        let media = called.media.clone();
                        self.stop_ringback(ringing);
                        if let Listener::Caller = ringing.listener {
                            self.early_media();
                        }
                        media.send(Control::Start);
                        if let Some(listener) = self.hearer(&ringing.listener) {
                            session::relay_one_way(&media, &[listener]);
                        }
                        ringing.early = Some(id);
                    }
                }
                PeerEvent::Leg(LegEvent::Answered(body)) => {
                    called.telephone_events = configure(&called.media, &body);
                    let Some(confirm) = &request.options.confirm else {
                        return Some(id);
                    };
                    // It takes the call by pressing the key while the
                    // prompt plays; meanwhile the caller hears ringing and
                    // the others ring on. Not in time: its endpoint is over
                    // (`ring_out`), as one that never answered.
                    called.media.send(Control::Start);
                    let prompt = confirm.media.as_deref().unwrap_or(CONFIRM_PROMPT);
                    called.confirming = Some(self.play_to(&called.media, prompt));
                    let index = called.endpoint;
                    ringing.endpoints[index].ring =
                        Ring::Ringing(now.saturating_add(CONFIRM_TIMEOUT_MS));
                }
                PeerEvent::Leg(LegEvent::Dtmf(digit))
                | PeerEvent::Media(MediaEvent::Dtmf(digit))
                    if called.confirming.is_some()
                        && request.options.confirm.as_ref().map(|c| c.key) == Some(digit) =>
                {
                    if let Some(play) = called.confirming.take() {
                        called.media.send(Control::Stop { id: play });
                    }
                    return Some(id);
                }
                PeerEvent::Leg(LegEvent::Failed(code, _)) => {
                    self.leg_failed(request, ringing, id, code);
                }
                PeerEvent::Leg(LegEvent::Ended(_)) => {
                    self.leg_failed(request, ringing, id, 487);
                }
                _ => {}
            }
        }
        None
    }

    /// A ringing leg failed with `code`: an off-net number goes on to its
    /// next gateway when the failure is the gateway's ([`carriers::fails_over`]);
    /// an endpoint whose legs all failed has failed.
    fn leg_failed(&self, request: &BridgeRequest, ringing: &mut Ringing, id: u64, code: u16) {
        let Some(called) = ringing.legs.iter_mut().find(|c| c.id == id && !c.over) else {
            return;
        };
        called.over = true;
        called.media.send(Control::Close);
        let index = called.endpoint;
        if ringing.early == Some(id) {
            // Its early media is over: the listener hears nothing from it.
            if let Some(listener) = self.hearer(&ringing.listener) {
                listener.send(Control::RelayIn(None));
            }
            ringing.early = None;
        }
        if !matches!(ringing.endpoints[index].ring, Ring::Ringing(_)) {
            return;
        }
        if ringing.endpoints[index].target.offnet && carriers::fails_over(code) {
            let next = self.next_gateway(index, &mut ringing.endpoints[index], request);
            if let Some(next) = next {
                ringing.legs.push(next);
                return;
            }
        }
        if ringing
            .legs
            .iter()
            .filter(|c| c.endpoint == index)
            .all(|c| c.over)
        {
            ringing.endpoints[index].ring = Ring::Failed(Failure::of_sip(self.now(), code));
            self.next_single(request, &mut ringing.endpoints, index);
        }
    }

    /// The winner: the other legs are cancelled, the caller answered, media
    /// relayed both ways, and the two talk.
    async fn connect_winner(
        &self,
        mut ringing: Ringing,
        winner: u64,
        time_limit_s: Option<u64>,
        beside: &dyn Beside,
    ) -> BridgeOutcome {
        let start = ringing.start;
        self.end_legs(&mut ringing.legs, |c| c.id != winner).await;
        let Some((called, endpoint)) = ringing.take(winner) else {
            return BridgeOutcome::failed(
                self.now() - start,
                BridgeStatus::Failed,
                "NORMAL_UNSPECIFIED",
                500,
            );
        };
        let answered_at = self.now();
        if crate::engine::CallControl::answer(self).await.is_err() {
            called.leg.hangup().await;
            called.media.send(Control::Close);
            return BridgeOutcome::failed(
                self.now() - start,
                BridgeStatus::Hangup,
                "ORIGINATOR_CANCEL",
                487,
            );
        }
        called.media.send(Control::Start);
        session::relay(self.media(), &called.media);
        self.connect(Connected {
            id: called.id,
            leg: called.leg,
            media: called.media,
            endpoint: endpoint.clone(),
            telephone_events: called.telephone_events,
        });
        beside.bridged(Some(&endpoint));
        let limit = time_limit_s.map(|s| answered_at.saturating_add(s.saturating_mul(1000)));
        self.set_activity(Activity::Answered(endpoint.id.clone()));
        self.talk(beside, limit).await;
        self.set_activity(Activity::Busy);
        beside.bridged(None);
        BridgeOutcome::answered(endpoint.id, self.now() - start, self.now() - answered_at)
    }

    /// A page: every device rings with the auto-answer headers, and each
    /// that answers hears the caller (one way: several callees cannot talk
    /// back without a mixer). The caller is answered with the first; the
    /// page lasts until the caller hangs up, a metaflow takes the call, or
    /// every paged device has hung up. The outcome is the bridge's:
    /// answered by the first, else the failures' table.
    async fn run_page(&self, request: &BridgeRequest, beside: &dyn Beside) -> BridgeOutcome {
        let start = self.now();
        let mut ringing = Ringing::new(request, start, Listener::Caller);
        let mut paged: Vec<Called> = Vec::new();
        let mut first: Option<(u64, String)> = None;
        loop {
            self.start_due(request, &mut ringing);
            while let Some((id, event)) = self.take_pending() {
                let ringing_leg = ringing.legs.iter().position(|c| c.id == id && !c.over);
                match (event, ringing_leg) {
                    (PeerEvent::Leg(LegEvent::Answered(body)), Some(index)) => {
                        let called = ringing.legs.swap_remove(index);
                        configure(&called.media, &body);
                        called.media.send(Control::Start);
                        if first.is_none() {
                            if crate::engine::CallControl::answer(self).await.is_err() {
                                called.leg.hangup().await;
                                called.media.send(Control::Close);
                                break;
                            }
                            let endpoint = &ringing.endpoints[called.endpoint].target;
                            first = Some((self.now(), endpoint.id.clone()));
                        }
                        let endpoint = &ringing.endpoints[called.endpoint].target.id;
                        self.note_media(endpoint, &called.media);
                        paged.push(called);
                        let targets: Vec<&Handle> = paged.iter().map(|c| &c.media).collect();
                        session::relay_one_way(self.media(), &targets);
                    }
                    (PeerEvent::Leg(LegEvent::Failed(code, _)), Some(_)) => {
                        self.leg_failed(request, &mut ringing, id, code);
                    }
                    (PeerEvent::Leg(LegEvent::Ended(_)), Some(_)) => {
                        self.leg_failed(request, &mut ringing, id, 487);
                    }
                    (PeerEvent::Leg(LegEvent::Ended(_)), None) => {
                        if let Some(index) = paged.iter().position(|c| c.id == id) {
                            let gone = paged.swap_remove(index);
                            gone.media.send(Control::Close);
                            let targets: Vec<&Handle> = paged.iter().map(|c| &c.media).collect();
                            session::relay_one_way(self.media(), &targets);
                        }
                    }
                    _ => {}
                }
            }
            let now = self.now();
            if first.is_some() && paged.is_empty() {
                break;
            }
            let deadline = match (&first, ringing.deadline(now)) {
                (None, None) => break,
                (None, Some(deadline)) => Some(deadline),
                // Paging: only the ringing ones have deadlines.
                (Some(_), deadline) => deadline,
            };
            if let Some(deadline) = deadline {
                self.ring_out(request, &mut ringing).await;
                if let Stop::Hangup | Stop::TakenOver = self.wait_peers(deadline, beside).await {
                    break;
                }
            } else if let Stop::Hangup | Stop::TakenOver = self.wait_connected_page(beside).await {
                break;
            }
        }
        self.end_legs(&mut ringing.legs, |_| true).await;
        session::unrelay(&[self.media()]);
        for called in &paged {
            called.leg.hangup().await;
            called.media.send(Control::Close);
        }
        match first {
            Some((answered_at, by)) => {
                BridgeOutcome::answered(by, self.now() - start, self.now() - answered_at)
            }
            None if self.is_gone_now() => BridgeOutcome::failed(
                self.now() - start,
                BridgeStatus::Hangup,
                "ORIGINATOR_CANCEL",
                487,
            ),
            None => outcome_of_failures(request, &ringing, self.now()),
        }
    }

    /// With the `single` strategy, the endpoint after `failed` starts
    /// after its own delay.
    fn next_single(&self, request: &BridgeRequest, endpoints: &mut [Endpoint], failed: usize) {
        if request.strategy != Strategy::Single {
            return;
        }
        if let Some(next) = endpoints.get_mut(failed + 1)
            && let Ring::Waiting(_) = next.ring
        {
            next.ring = Ring::Waiting(self.now() + next.target.delay_s * 1000);
        }
    }

    /// Ends the legs `which` selects (CANCEL or BYE) and closes their media.
    pub(super) async fn end_legs(&self, legs: &mut [Called], which: impl Fn(&Called) -> bool) {
        for called in legs.iter_mut().filter(|c| !c.over && which(c)) {
            called.over = true;
            called.leg.hangup().await;
            called.media.send(Control::Close);
        }
    }

    /// Plays the ringback (the request's, else a standard tone) to the
    /// listener: the caller (after a 183), or a leg already talking.
    async fn start_ringback(&self, request: &BridgeRequest, listener: &Listener) -> u64 {
        let name = request
            .ringback
            .clone()
            .unwrap_or_else(|| RINGBACK.to_owned());
        let clip = self.clip(move |lib, acc| lib.media(acc, &name, None)).await;
        let Listener::Leg(listener) = listener else {
            self.early_media();
            return self.play_clip(clip, 0);
        };
        let id = self.next_id();
        listener.send(Control::Play {
            id,
            clip,
            times: Some(0),
        });
        id
    }

    /// Stops the ringback playing, if any.
    pub(super) fn stop_ringback(&self, ringing: &mut Ringing) {
        if let Some(id) = ringing.ringback.take()
            && let Some(listener) = self.hearer(&ringing.listener)
        {
            listener.send(Control::Stop { id });
        }
    }

    /// The session of a listener, if anybody listens.
    fn hearer<'a>(&'a self, listener: &'a Listener) -> Option<&'a Handle> {
        match listener {
            Listener::Caller => Some(self.media()),
            Listener::Leg(media) => Some(media),
            Listener::Nobody => None,
        }
    }

    /// The answered bridge's talk: until a side hangs up, a metaflow takes
    /// the call elsewhere, or the peer leaves; then the peer's leg ends.
    ///
    /// Another call may intercept it (`call:pickup` with `intercept`): the
    /// callee is hung up and the intercepting call takes its place.
    async fn talk(&self, beside: &dyn Beside, limit: Option<u64>) {
        self.set_reach(Reach::Intercept);
        let mut out_of_time = false;
        let joiner = loop {
            match self.wait_connected(beside, limit).await {
                Stop::Hangup | Stop::TakenOver | Stop::PeerGone => break None,
                // The bridge's time limit: the call ends, both legs
                // (`ALLOTTED_TIMEOUT`, as FreeSWITCH's scheduled hang-up).
                Stop::Deadline if limit.is_some_and(|at| self.now() >= at) => {
                    out_of_time = true;
                    break None;
                }
                Stop::Joined => {
                    if let Some(joiner) = self.take_joiner() {
                        break Some(joiner);
                    }
                }
                _ => {}
            }
        };
        self.set_reach(Reach::Nothing);
        self.end_hold(false);
        let old = self.disconnect();
        if let Some(peer) = &old {
            session::unrelay(&[self.media(), &peer.media]);
            peer.leg.hangup().await;
            peer.media.send(Control::Close);
        }
        if let Some(joiner) = joiner {
            let id = joiner.device.clone().unwrap_or_else(|| joiner.by.clone());
            let mut event = Event::new(self.now(), "intercepted").with("by", joiner.by.as_str());
            if let Some(peer) = &old {
                event = event.with("peer", peer.endpoint.id.as_str());
            }
            self.trace_event(event.with("answered_by", id));
            self.talk_to_joiner(joiner, self.now(), beside).await;
            return;
        }
        if out_of_time {
            self.end_ours("ALLOTTED_TIMEOUT").await;
            return;
        }
        // The callee hung up: the caller's leg ends too (a BYE).
        self.finish_after_callee().await;
    }
}

/// Sends a leg's events to the call's channel as [`Incoming::Peer`].
fn forward_peer(
    runtime: &tokio::runtime::Handle,
    events: &tokio::sync::mpsc::UnboundedSender<Incoming>,
    id: u64,
    mut leg_events: tokio::sync::mpsc::UnboundedReceiver<LegEvent>,
    mut media_events: tokio::sync::mpsc::UnboundedReceiver<MediaEvent>,
) {
    let tx = events.clone();
    runtime.spawn(async move {
        while let Some(event) = leg_events.recv().await {
            if tx.send(Incoming::Peer(id, PeerEvent::Leg(event))).is_err() {
                break;
            }
        }
    });
    let tx = events.clone();
    runtime.spawn(async move {
        while let Some(event) = media_events.recv().await {
            if tx
                .send(Incoming::Peer(id, PeerEvent::Media(event)))
                .is_err()
            {
                break;
            }
        }
    });
}

/// Applies a leg's SDP answer to its session; whether it takes RFC 4733.
fn configure(media: &Handle, body: &[u8]) -> bool {
    match Offer::parse(body).and_then(|offer| offer.negotiate()) {
        Ok(agreed) => {
            media.send(Control::Configure(agreed));
            agreed.dtmf_payload_type.is_some()
        }
        Err(_) => false,
    }
}

/// The simulator's rules for a bridge nobody answered: `simultaneous`:
/// busy when all were busy, no answer when any rang out, else the last
/// failure; `single`: the last failure; the overall timeout: no answer.
pub(super) fn outcome_of_failures(
    request: &BridgeRequest,
    ringing: &Ringing,
    now: u64,
) -> BridgeOutcome {
    let (start, overall_end) = (ringing.start, ringing.overall_end);
    let failures: Vec<&Failure> = ringing
        .endpoints
        .iter()
        .filter_map(|e| match &e.ring {
            Ring::Failed(f) => Some(f),
            _ => None,
        })
        .collect();
    let duration = now - start;
    let Some(last) = failures.iter().max_by_key(|f| f.at) else {
        if now >= overall_end && !request.endpoints.is_empty() {
            return BridgeOutcome::failed(duration, BridgeStatus::NoAnswer, "NO_ANSWER", 480);
        }
        return BridgeOutcome::failed(duration, BridgeStatus::Failed, "NO_ROUTE_DESTINATION", 404);
    };
    if failures.len() < request.endpoints.len() {
        return BridgeOutcome::failed(duration, BridgeStatus::NoAnswer, "NO_ANSWER", 480);
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
    match status {
        BridgeStatus::NoAnswer => BridgeOutcome::failed(duration, status, "NO_ANSWER", 480),
        BridgeStatus::Busy => BridgeOutcome::failed(duration, status, "USER_BUSY", 486),
        _ => BridgeOutcome::failed(duration, status, &last.cause, last.sip),
    }
}
