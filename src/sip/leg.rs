//! One call leg (a dialog we answered or placed): what the application asks
//! of it (ring, answer, re-offer, hang up, REFER and its NOTIFYs) and
//! [`forward`], which turns what its far end does into [`LegEvent`]s and
//! answers the in-dialog requests that need no application: re-INVITE and
//! UPDATE (a new offer, a hold, a session refresh), INFO, OPTIONS, and
//! REFER (accepted here, carried out by the application).
//!
//! Session timers (RFC 4028): a leg whose INVITE or 200 negotiated one is
//! refreshed by us when we are the refresher (a re-INVITE with the same
//! SDP every half interval); when the far end is, a session it stops
//! refreshing ends (BYE) a third of the interval (at most 32 s) before it
//! expires.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver, TerminatedReason};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Header, Method, StatusCode, StatusCodeKind};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{EndedBy, LegEvent};
use crate::media::sdp::{self, Direction, Local, Negotiated, Offer};

/// A session timer agreed on a leg (RFC 4028).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timer {
    /// The session interval, in seconds.
    pub interval: u32,
    /// Whether we send the refreshes (else the far end does).
    pub we_refresh: bool,
}

/// Our side of a leg's SDP, for the offers and answers after the first.
#[derive(Debug)]
struct Session {
    local: Local,
    /// What the last offer/answer agreed (the codec, telephone events).
    agreed: Option<Negotiated>,
    /// The SDP we sent last (a refresh sends it again, unchanged).
    sent: Option<String>,
    /// We hold the far end (our last offer said `sendonly`).
    holding: bool,
    timer: Option<Timer>,
    /// When the session was last refreshed (either side).
    refreshed: Instant,
}

impl Session {
    /// `body` as we send it: the `o=` version goes up only when the
    /// description changed (RFC 3264 §8).
    fn send(&mut self, make: impl Fn(&Local) -> String) -> String {
        let same = make(&self.local);
        if self.sent.as_deref() == Some(same.as_str()) {
            return same;
        }
        if self.sent.is_some() {
            self.local.version += 1;
        }
        let body = make(&self.local);
        self.sent = Some(body.clone());
        body
    }

    /// Our answer to a new offer from the far end.
    fn answer(&mut self, offer: &[u8]) -> Result<(String, Negotiated), sdp::SdpError> {
        let agreed = Offer::parse(offer)?.negotiate()?;
        let mut ours = agreed;
        if self.holding {
            // Still holding: we keep sending music, never receive.
            ours.direction = match agreed.direction {
                Direction::SendRecv | Direction::SendOnly => Direction::SendOnly,
                Direction::RecvOnly | Direction::Inactive => Direction::Inactive,
            };
        }
        self.agreed = Some(agreed);
        let body = self.send(|local| sdp::answer(local, &ours));
        Ok((body, agreed))
    }

    /// Our new offer with `direction` (a hold or its end).
    fn reoffer(&mut self, direction: Direction) -> String {
        self.holding = direction != Direction::SendRecv;
        let agreed = self.agreed;
        self.send(|local| match agreed {
            Some(mut agreed) => {
                agreed.direction = direction;
                sdp::answer(local, &agreed)
            }
            None => sdp::offer_with(local, direction),
        })
    }
}

/// One call leg: a dialog we answered (or are about to) or placed.
#[derive(Clone)]
pub struct Leg {
    dialog: InviteDialog,
    session: Arc<Mutex<Session>>,
    /// We ended it (a CANCEL may cross the far end's 200: that answer is
    /// acknowledged and ended with a BYE at once).
    dropped: Arc<std::sync::atomic::AtomicBool>,
    /// Its session timer ended it (our BYE).
    expired: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Leg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leg")
            .field("id", &self.dialog.id().to_string())
            .finish_non_exhaustive()
    }
}

fn sdp_header() -> Header {
    Header::ContentType("application/sdp".into())
}

/// A SIP status for a final response, with our reason phrase when given.
pub(super) fn status(code: u16, reason: &str) -> StatusCode {
    if reason.is_empty() {
        StatusCode::from(code)
    } else {
        StatusCode::Other(code, reason.to_owned())
    }
}

/// The `Session-Expires` header of a leg's timer; `role_uac`: whether we
/// are the dialog's UAC.
fn session_expires(timer: Timer, role_uac: bool) -> Header {
    let refresher = if timer.we_refresh == role_uac {
        "uac"
    } else {
        "uas"
    };
    Header::Other(
        "Session-Expires".into(),
        format!("{};refresher={refresher}", timer.interval),
    )
}

impl Leg {
    /// A leg and the task that forwards its dialog's states (spawned on
    /// the current runtime).
    pub(super) fn start(
        layer: Arc<DialogLayer>,
        dialog: InviteDialog,
        states: DialogStateReceiver,
        local: Local,
        sent: Option<String>,
        timer: Option<Timer>,
    ) -> (Self, mpsc::UnboundedReceiver<LegEvent>) {
        let session = Arc::new(Mutex::new(Session {
            local,
            agreed: None,
            sent,
            holding: false,
            timer,
            refreshed: Instant::now(),
        }));
        let leg = Self {
            dialog,
            session,
            dropped: Arc::default(),
            expired: Arc::default(),
        };
        let (events_tx, events) = mpsc::unbounded_channel();
        tokio::spawn(forward(layer, leg.clone(), states, events_tx));
        (leg, events)
    }

    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn outbound(&self) -> bool {
        self.dialog.role() == rsipstack::transaction::key::TransactionRole::Client
    }

    /// Whether the dialog is over (a CANCEL may have won a race).
    pub fn is_over(&self) -> bool {
        self.dialog.state().is_terminated()
    }

    /// 180 Ringing.
    pub fn ring(&self) {
        if !self.is_over() {
            let _ = self.dialog.ringing(None, None);
        }
    }

    /// 183 Session Progress with our SDP (early media).
    pub fn progress(&self, sdp: &str) {
        if !self.is_over() {
            self.remember(sdp);
            let _ = self
                .dialog
                .ringing(Some(vec![sdp_header()]), Some(sdp.as_bytes().to_vec()));
        }
    }

    /// A provisional response other than 180/183 (`call:respond`).
    pub fn provisional(&self, code: u16, reason: &str) {
        if self.is_over() {
            return;
        }
        match code {
            180 => self.ring(),
            _ => {
                let _ = self.dialog.ringing(
                    Some(vec![Header::Other(
                        "X-Callflow-Status".into(),
                        format!("{code} {reason}"),
                    )]),
                    None,
                );
            }
        }
    }

    /// 200 OK with our SDP (and the session timer agreed, if any); false
    /// when the dialog is already over.
    pub fn answer(&self, sdp: &str) -> bool {
        if self.is_over() {
            return false;
        }
        self.remember(sdp);
        let mut headers = vec![sdp_header()];
        let timer = self.session().timer;
        if let Some(timer) = timer {
            headers.push(session_expires(timer, false));
            if !timer.we_refresh {
                headers.push(Header::Other("Require".into(), "timer".into()));
            }
        }
        let accepted = self
            .dialog
            .accept(Some(headers), Some(sdp.as_bytes().to_vec()))
            .is_ok();
        if accepted && let Some(timer) = timer {
            tokio::spawn(keep_alive(self.clone(), timer));
        }
        accepted
    }

    /// A final failure response before the answer.
    pub fn refuse(&self, code: u16, reason: &str) {
        if self.is_over() {
            return;
        }
        let _ = self.dialog.reject(Some(status(code, reason)), None);
    }

    /// BYE (after the answer), with a `Reason` header when given.
    pub async fn bye(&self, reason: Option<String>) {
        if self.is_over() {
            return;
        }
        let _ = match reason {
            Some(reason) => self.dialog.bye_with_reason(reason).await,
            None => self.dialog.bye().await,
        };
    }

    /// Ends a leg we called: CANCEL while it rings, BYE once answered.
    pub async fn hangup(&self) {
        self.dropped
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if self.is_over() {
            return;
        }
        let _ = self.dialog.hangup().await;
    }

    /// Sends a digit as SIP INFO (`application/dtmf-relay`), for a far end
    /// that takes no RFC 4733 events.
    pub async fn info_digit(&self, digit: char) {
        if self.is_over() {
            return;
        }
        let body = format!("Signal={digit}\r\nDuration=160\r\n");
        let _ = self
            .dialog
            .info(
                Some(vec![Header::ContentType("application/dtmf-relay".into())]),
                Some(body.into_bytes()),
            )
            .await;
    }

    /// Asks the far end to call `target` itself (REFER, a blind
    /// transfer); true when it accepted (2xx).
    pub async fn refer(&self, target: &str) -> bool {
        if self.is_over() {
            return false;
        }
        let refer_to = format!("<{target}>");
        matches!(
            self.dialog.refer(refer_to.as_str(), None, None).await,
            Ok(Some(response)) if response.status_code.kind() == StatusCodeKind::Successful
        )
    }

    /// Tells the far end how the REFER it sent is going (RFC 3515): a
    /// NOTIFY whose body is the status line `code reason`; `done` ends the
    /// implicit subscription.
    pub async fn notify_refer(&self, code: u16, reason: &str, done: bool) {
        if self.is_over() {
            return;
        }
        let state = if done {
            "terminated;reason=noresource"
        } else {
            "active;expires=60"
        };
        let headers = vec![
            Header::Event("refer".into()),
            Header::SubscriptionState(state.into()),
            Header::ContentType("message/sipfrag;version=2.0".into()),
        ];
        let body = format!("SIP/2.0 {code} {reason}\r\n").into_bytes();
        let _ = self.dialog.notify(Some(headers), Some(body)).await;
    }

    /// Puts the far end on hold (`sendonly`: it hears what we send, music)
    /// or takes it off (`sendrecv`) with a re-INVITE; what its answer
    /// agreed, or `None` when it refused or the leg is over.
    pub async fn reoffer(&self, direction: Direction) -> Option<Negotiated> {
        if self.is_over() {
            return None;
        }
        let (body, timer) = {
            let mut session = self.session();
            (session.reoffer(direction), session.timer)
        };
        let mut headers = vec![sdp_header()];
        if let Some(timer) = timer {
            headers.push(session_expires(timer, self.outbound()));
        }
        let response = self
            .dialog
            .reinvite_with_glare_retry(Some(headers), Some(body.into_bytes()), 3)
            .await
            .ok()
            .flatten()?;
        if response.status_code.kind() != StatusCodeKind::Successful {
            return None;
        }
        self.session().refreshed = Instant::now();
        let agreed = Offer::parse(&response.body)
            .and_then(|offer| offer.negotiate())
            .ok()?;
        self.session().agreed = Some(agreed);
        Some(agreed)
    }

    /// The SIP Call-ID of the leg.
    pub fn call_id(&self) -> String {
        self.dialog.id().call_id
    }

    fn remember(&self, sdp: &str) {
        self.session().sent = Some(sdp.to_owned());
    }

    /// What the far end's SDP agreed (its answer to our offer, or early
    /// media), for later offers.
    pub(super) fn agreed(&self, body: &[u8]) {
        if let Ok(agreed) = Offer::parse(body).and_then(|offer| offer.negotiate()) {
            self.session().agreed = Some(agreed);
        }
    }

    /// A refresh: the same SDP again, with the timer's header.
    async fn refresh(&self, timer: Timer) -> bool {
        let body = self.session().sent.clone();
        let mut headers = vec![session_expires(timer, self.outbound())];
        if body.is_some() {
            headers.push(sdp_header());
        }
        let response = self
            .dialog
            .reinvite_with_glare_retry(Some(headers), body.map(String::into_bytes), 3)
            .await;
        match response {
            Ok(Some(response)) => {
                let code = u16::from(response.status_code.clone());
                if response.status_code.kind() == StatusCodeKind::Successful {
                    self.session().refreshed = Instant::now();
                }
                // RFC 4028 §10: only these end the session.
                code != 408 && code != 481
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }
}

/// The session timer of a leg once answered: refreshes when we are the
/// refresher; else a BYE when the far end stops refreshing. Ends with the
/// dialog.
async fn keep_alive(leg: Leg, timer: Timer) {
    let interval = Duration::from_secs(u64::from(timer.interval));
    loop {
        let refreshed = leg.session().refreshed;
        let due = if timer.we_refresh {
            refreshed + interval / 2
        } else {
            // RFC 4028 §10: a BYE at (interval - min(32 s, interval / 3)).
            refreshed + interval - (interval / 3).min(Duration::from_secs(32))
        };
        tokio::time::sleep_until(due).await;
        if leg.is_over() {
            return;
        }
        if leg.session().refreshed != refreshed {
            continue;
        }
        if timer.we_refresh {
            if !leg.refresh(timer).await {
                leg.expired
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                leg.bye(Some("SIP;cause=408;text=\"Session refresh failed\"".into()))
                    .await;
                return;
            }
        } else {
            leg.expired
                .store(true, std::sync::atomic::Ordering::Relaxed);
            leg.bye(Some("SIP;cause=408;text=\"Session expired\"".into()))
                .await;
            return;
        }
    }
}

/// The value of the first of `names` (a header's long and compact forms).
fn header_value(request: &rsipstack::sip::Request, names: &[&str]) -> Option<String> {
    use rsipstack::sip::HeadersExt as _;
    names.iter().find_map(|name| request.header_value(name))
}

/// The user part of a REFER's `Refer-To` (the number to transfer to); an
/// error response for one we do not carry out.
fn refer_target(request: &rsipstack::sip::Request) -> Result<String, (u16, &'static str)> {
    let Some(value) = header_value(request, &["Refer-To", "r"]) else {
        return Err((400, "Bad Request (no Refer-To)"));
    };
    // `"name" <uri>` or a bare URI.
    let value = value.trim();
    let uri = match value.split_once('<') {
        Some((_, rest)) => rest.split('>').next().unwrap_or(rest),
        None => value,
    };
    if uri.to_ascii_lowercase().contains("replaces=") {
        return Err((501, "Not Implemented (REFER with Replaces)"));
    }
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
        .or_else(|| uri.strip_prefix("tel:"))
        .unwrap_or(uri);
    let user = rest.split(['@', ';', '?']).next().unwrap_or_default();
    let user = percent_decode(user);
    if user.is_empty() || user.len() > 64 || !user.chars().all(|c| c.is_ascii_graphic()) {
        return Err((400, "Bad Request (no number in Refer-To)"));
    }
    Ok(user)
}

/// `%23` → `#` (phones escape `#` and `*` in URIs).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(value) = u8::from_str_radix(hex, 16)
        {
            out.push(value);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The session interval a response or request carries (`Session-Expires`,
/// compact `x`) and its `refresher`, if any.
pub(super) fn session_timer_of(
    request_or_response: impl Fn(&[&str]) -> Option<String>,
) -> Option<(u32, Option<String>)> {
    let value = request_or_response(&["Session-Expires", "x"])?;
    let mut parts = value.split(';');
    let interval = parts.next()?.trim().parse().ok()?;
    let refresher = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("refresher")
            .then(|| v.trim().to_ascii_lowercase())
    });
    Some((interval, refresher))
}

/// Turns a dialog's states into [`LegEvent`]s, answers the in-dialog
/// requests the application need not see, and removes the dialog when it
/// ends (nothing else does).
async fn forward(
    layer: Arc<DialogLayer>,
    leg: Leg,
    mut states: DialogStateReceiver,
    events: mpsc::UnboundedSender<LegEvent>,
) {
    let outbound = leg.outbound();
    let mut answered = false;
    while let Some(state) = states.recv().await {
        match state {
            DialogState::Early(_, response) if outbound => {
                let event = if response.body.is_empty() {
                    LegEvent::Ringing
                } else {
                    leg.agreed(&response.body);
                    LegEvent::Early(response.body.clone())
                };
                let _ = events.send(event);
            }
            DialogState::Confirmed(..)
                if outbound
                    && !answered
                    && leg.dropped.load(std::sync::atomic::Ordering::Relaxed) =>
            {
                // Its 200 crossed our CANCEL: acknowledged (by the
                // transaction), now ended.
                answered = true;
                let late = leg.clone();
                tokio::spawn(async move { late.bye(None).await });
            }
            DialogState::Confirmed(_, response) if outbound && !answered => {
                answered = true;
                leg.agreed(&response.body);
                start_timer_of_answer(&leg, &response);
                let _ = events.send(LegEvent::Answered(response.body.clone()));
            }
            DialogState::Confirmed(..) if outbound => {}
            DialogState::Confirmed(..) => {
                if let Some(ack) = leg.dialog.last_remote_ack()
                    && !ack.body.is_empty()
                {
                    leg.agreed(&ack.body);
                    let _ = events.send(LegEvent::AckSdp(ack.body.clone()));
                }
                let _ = events.send(LegEvent::Confirmed);
            }
            DialogState::Info(_, request, handle) => {
                let digit = info_digit(&request);
                let _ = handle.reply(StatusCode::OK).await;
                if let Some(digit) = digit {
                    let _ = events.send(LegEvent::Dtmf(digit));
                }
            }
            DialogState::Updated(_, request, handle) => {
                let (code, headers, body, agreed) = reoffered(&leg, &request);
                let _ = handle.respond(code, Some(headers), body).await;
                if let Some(agreed) = agreed {
                    let _ = events.send(LegEvent::Reoffer(agreed));
                }
            }
            DialogState::Options(_, _, handle) => {
                let _ = handle.reply(StatusCode::OK).await;
            }
            DialogState::Notify(_, request, handle) if outbound => {
                // Progress of a REFER we sent.
                let _ = handle.reply(StatusCode::OK).await;
                let _ = events.send(LegEvent::ReferProgress(sipfrag_code(&request.body)));
            }
            DialogState::Refer(_, request, handle) => match refer_target(&request) {
                Ok(target) => {
                    let _ = handle.reply(StatusCode::Accepted).await;
                    let _ = events.send(LegEvent::Refer(target));
                }
                Err((code, reason)) => {
                    let _ = handle.reply(status(code, reason)).await;
                }
            },
            DialogState::Notify(_, _, handle)
            | DialogState::Message(_, _, handle)
            | DialogState::Publish(_, _, handle) => {
                let _ = handle.reply(StatusCode::NotImplemented).await;
            }
            DialogState::Terminated(id, reason) => {
                layer.remove_dialog(&id);
                if outbound && !answered {
                    let _ = events.send(failure_of(&reason));
                    break;
                }
                let by = match reason {
                    _ if leg.expired.load(std::sync::atomic::Ordering::Relaxed) => EndedBy::Expired,
                    TerminatedReason::UasBye | TerminatedReason::UacBye => EndedBy::Bye,
                    TerminatedReason::UacCancel => EndedBy::Cancel,
                    TerminatedReason::Timeout => EndedBy::NoAck,
                    _ => EndedBy::Us,
                };
                let _ = events.send(LegEvent::Ended(by));
                break;
            }
            _ => {}
        }
    }
    // The dialog is gone however it ended (and so is its memory).
    layer.remove_dialog(&leg.dialog.id());
}

/// How a call we placed failed, from the way its dialog ended.
fn failure_of(reason: &TerminatedReason) -> LegEvent {
    let (code, phrase) = match reason {
        TerminatedReason::UasOther(code) | TerminatedReason::ProxyError(code) => {
            (u16::from(code.clone()), code.text().to_owned())
        }
        TerminatedReason::UasBusy => (486, "Busy Here".to_owned()),
        TerminatedReason::UasDecline => (603, "Decline".to_owned()),
        TerminatedReason::ProxyAuthRequired => (407, "Proxy Authentication Required".to_owned()),
        TerminatedReason::UacCancel => (487, "Request Terminated".to_owned()),
        TerminatedReason::Timeout => (408, "Request Timeout".to_owned()),
        other => (500, format!("{other:?}")),
    };
    LegEvent::Failed(code, phrase)
}

/// The session timer a callee's 200 agreed: we refresh when it names us
/// (`refresher=uac`, we placed the call).
fn start_timer_of_answer(leg: &Leg, response: &rsipstack::sip::Response) {
    use rsipstack::sip::HeadersExt as _;
    let Some((interval, refresher)) =
        session_timer_of(|names| names.iter().find_map(|n| response.header_value(n)))
    else {
        return;
    };
    if interval == 0 {
        return;
    }
    let timer = Timer {
        interval,
        we_refresh: refresher.as_deref() != Some("uas"),
    };
    {
        let mut session = leg.session();
        session.timer = Some(timer);
        session.refreshed = Instant::now();
    }
    tokio::spawn(keep_alive(leg.clone(), timer));
}

/// Our response to a re-INVITE or UPDATE: a new offer answered (the
/// agreement for the media), none answered with ours again (a refresh, or
/// an offerless re-INVITE), an unusable one refused with 488.
fn reoffered(
    leg: &Leg,
    request: &rsipstack::sip::Request,
) -> (StatusCode, Vec<Header>, Option<Vec<u8>>, Option<Negotiated>) {
    let mut headers = Vec::new();
    let timer = {
        let mut session = leg.session();
        session.refreshed = Instant::now();
        session.timer
    };
    if let Some(timer) = timer {
        headers.push(session_expires(timer, leg.outbound()));
    }
    if request.body.is_empty() {
        if request.method == Method::Update {
            return (StatusCode::OK, headers, None, None);
        }
        let ours = leg.session().sent.clone();
        if ours.is_some() {
            headers.push(sdp_header());
        }
        return (StatusCode::OK, headers, ours.map(String::into_bytes), None);
    }
    let answered = leg.session().answer(&request.body);
    match answered {
        Ok((body, agreed)) => {
            headers.push(sdp_header());
            (
                StatusCode::OK,
                headers,
                Some(body.into_bytes()),
                Some(agreed),
            )
        }
        Err(err) => (
            status(488, &format!("Not Acceptable Here ({err})")),
            Vec::new(),
            None,
            None,
        ),
    }
}

/// The status code of a REFER progress NOTIFY (`SIP/2.0 200 OK`); 0 when
/// unreadable.
fn sipfrag_code(body: &[u8]) -> u16 {
    String::from_utf8_lossy(body)
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// The digit of a SIP INFO (`application/dtmf-relay`: `Signal=5`;
/// `application/dtmf`: `5`).
fn info_digit(request: &rsipstack::sip::Request) -> Option<char> {
    let content_type = header_value(request, &["Content-Type", "c"]).unwrap_or_default();
    let body = String::from_utf8_lossy(&request.body);
    let value = if content_type.eq_ignore_ascii_case("application/dtmf-relay") {
        body.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("Signal")
                .then(|| v.trim().to_owned())
        })?
    } else if content_type.eq_ignore_ascii_case("application/dtmf") {
        body.trim().to_owned()
    } else {
        return None;
    };
    let mut chars = value.chars();
    let digit = chars.next()?;
    if chars.next().is_some() {
        return match value.as_str() {
            "10" => Some('*'),
            "11" => Some('#'),
            _ => None,
        };
    }
    crate::media::dtmf::event_of(digit).and(Some(digit.to_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> rsipstack::sip::Request {
        match rsipstack::sip::SipMessage::try_from(text) {
            Ok(rsipstack::sip::SipMessage::Request(request)) => request,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn refer(refer_to: &str) -> rsipstack::sip::Request {
        parse(&format!(
            "REFER sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n\
             From: <sip:b@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>;tag=2\r\nCall-ID: c\r\n\
             CSeq: 2 REFER\r\n{refer_to}Content-Length: 0\r\n\r\n"
        ))
    }

    #[test]
    fn reads_refer_targets() {
        assert_eq!(
            refer_target(&refer("Refer-To: <sip:1003@127.0.0.1;user=phone>\r\n")),
            Ok("1003".to_owned())
        );
        assert_eq!(
            refer_target(&refer("Refer-To: sip:%2A97@acme.example\r\n")),
            Ok("*97".to_owned())
        );
        assert_eq!(
            refer_target(&refer("Refer-To: sip:1003@127.0.0.1:5060\r\n")),
            Ok("1003".to_owned())
        );
        assert_eq!(
            refer_target(&refer(
                "Refer-To: <sip:1003@h?Replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D2>\r\n"
            )),
            Err((501, "Not Implemented (REFER with Replaces)"))
        );
        assert_eq!(
            refer_target(&refer("")),
            Err((400, "Bad Request (no Refer-To)"))
        );
        assert_eq!(
            refer_target(&refer("Refer-To: <sip:@h>\r\n")),
            Err((400, "Bad Request (no number in Refer-To)"))
        );
    }

    #[test]
    fn reads_session_timers() {
        let get = |value: &'static str| move |_: &[&str]| Some(value.to_owned());
        assert_eq!(
            session_timer_of(get("1800;refresher=UAC")),
            Some((1800, Some("uac".to_owned())))
        );
        assert_eq!(session_timer_of(get("90")), Some((90, None)));
        assert_eq!(session_timer_of(get("soon")), None);
        assert_eq!(sipfrag_code(b"SIP/2.0 200 OK\r\n"), 200);
        assert_eq!(sipfrag_code(b"garbage"), 0);
    }

    #[test]
    fn versions_go_up_only_when_the_description_changes() {
        let mut session = Session {
            local: Local {
                ip: "127.0.0.1".parse().unwrap(),
                port: 20000,
                session_id: 7,
                version: 1,
            },
            agreed: None,
            sent: None,
            holding: false,
            timer: None,
            refreshed: Instant::now(),
        };
        let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                     m=audio 6000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
        let (first, _) = session.answer(offer.as_bytes()).unwrap();
        assert!(first.contains("o=callflow 7 1 "), "{first}");
        let (again, _) = session.answer(offer.as_bytes()).unwrap();
        assert_eq!(first, again);
        let held = offer.replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n");
        let (answer, agreed) = session.answer(held.as_bytes()).unwrap();
        assert!(answer.contains("o=callflow 7 2 "), "{answer}");
        assert!(answer.contains("a=recvonly"), "{answer}");
        assert_eq!(agreed.direction, Direction::RecvOnly);
        let ours = session.reoffer(Direction::SendOnly);
        assert!(
            ours.contains("o=callflow 7 3 ") && ours.contains("a=sendonly"),
            "{ours}"
        );
        let (answer, _) = session.answer(offer.as_bytes()).unwrap();
        assert!(answer.contains("a=sendonly"), "still holding: {answer}");
    }
}
