//! The call-control port: the one trait through which the engine reaches the
//! outside world ([`CallControl`]), and the requests and outcomes of its verbs.
//!
//! The simulator implements it now ([`crate::sim`]); a real media backend
//! (SIP/RTP) will implement it later. Each verb returns an outcome; a caller
//! hang-up during a verb is an outcome (`reason: hangup`), and every verb
//! called once the call is gone returns [`Gone`].
//!
//! Verbs that take time run with a [`Beside`]: the call's metaflow listener
//! (Kazoo's konami), which hears every digit of both legs and, when its
//! digit timeout runs out, runs what it selected *inside* the verb, at that
//! instant. The verb then goes on toward its own end ([`Resume::Continue`]),
//! stops its media ([`Resume::Break`]) or ends at once because the metaflow
//! took the call elsewhere ([`Resume::Stop`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use serde::Serialize;

pub use crate::metaflow::Leg;

/// A future that stays on the worker thread that created it.
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// The call is gone: no verb can run on it any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

/// Who ended a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HungUpBy {
    Caller,
    Callee,
    System,
}

impl HungUpBy {
    pub fn as_str(self) -> &'static str {
        match self {
            HungUpBy::Caller => "caller",
            HungUpBy::Callee => "callee",
            HungUpBy::System => "system",
        }
    }
}

/// How and when a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hangup {
    pub t_ms: u64,
    pub cause: String,
    pub by: HungUpBy,
    /// The call reached [`crate::limits::Limits::max_call_ms`].
    pub timed_out: bool,
    /// The call left this system by a transfer (no hangup was sent).
    pub transferred: bool,
}

/// The legs media plays to: the caller's (the default), the bridged
/// peer's, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Legs {
    #[default]
    A,
    B,
    Both,
}

impl Legs {
    pub fn as_str(self) -> &'static str {
        match self {
            Legs::A => "a",
            Legs::B => "b",
            Legs::Both => "both",
        }
    }

    /// Whether `leg` hears the media (and its digits can stop it).
    pub fn includes(self, leg: Leg) -> bool {
        matches!(
            (self, leg),
            (Legs::Both, _) | (Legs::A, Leg::A) | (Legs::B, Leg::B)
        )
    }
}

/// Play one media (file id, URL, `tone_stream://`...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayRequest {
    pub media: String,
    /// Digits that stop playback (digits of the legs it plays to); a caller's
    /// digit stays in the call's DTMF buffer.
    pub terminators: String,
    /// Times to play it; 0 plays until a terminator or a hang-up.
    pub loop_count: u32,
    pub legs: Legs,
}

/// Text to speech or a `say` of a number, date, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakRequest {
    /// `say` (the style is a say type) rather than `tts` (the style is a
    /// voice).
    pub say: bool,
    pub text: String,
    /// `tts` voice, or the `say` type (`number`, `items`, ...).
    pub style: String,
    /// How `say` reads it (`pronounced`, `iterated`, `counted`).
    pub method: Option<String>,
    pub language: Option<String>,
    pub terminators: String,
    pub legs: Legs,
}

/// Why a playback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlayReason {
    Completed,
    Terminator,
    Hangup,
}

/// What a playback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayOutcome {
    pub reason: PlayReason,
    /// The terminator pressed, when `reason` is `Terminator`.
    pub digit: Option<char>,
    pub duration_ms: u64,
}

/// Collect DTMF digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectRequest {
    pub max_digits: u32,
    /// A terminator pressed before this many digits is ignored.
    pub min_digits: u32,
    /// Wait for the first digit (from the end of the prompt).
    pub timeout_ms: u64,
    /// Wait between digits.
    pub interdigit_ms: u64,
    pub terminators: String,
    /// Played first; any digit stops it and counts.
    pub prompt: Option<String>,
}

/// Why a collection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CollectReason {
    MaxDigits,
    Terminator,
    Timeout,
    Hangup,
}

/// The digits collected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectOutcome {
    pub digits: String,
    pub reason: CollectReason,
    pub duration_ms: u64,
}

/// Record the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRequest {
    pub time_limit_ms: u64,
    pub terminators: String,
    /// A name for the recording (media name).
    pub name: Option<String>,
    /// End the recording after this much silence (real calls; the
    /// simulator's callers are never silent).
    pub silence_ms: Option<u64>,
}

/// Why a recording ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordReason {
    Terminator,
    MaxLength,
    /// The caller was silent for the request's `silence_ms`.
    Silence,
    Hangup,
}

/// The recording made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordOutcome {
    pub recording_id: String,
    pub duration_ms: u64,
    pub reason: RecordReason,
}

/// How endpoints of a bridge ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// All at once (each after its own delay); the first to answer wins.
    Simultaneous,
    /// One after another, in order.
    Single,
}

/// One endpoint to ring: a device, or an off-net number (a carrier).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BridgeEndpoint {
    /// The device id, or the number when `offnet`.
    pub id: String,
    /// An off-net destination reached through a carrier.
    pub offnet: bool,
    /// Seconds before it starts ringing.
    pub delay_s: u64,
    /// Seconds it rings before giving up.
    pub timeout_s: u64,
    /// It rings even while on another call (its call waiting is on, as
    /// Kazoo's default is); with it off, a device on a call is busy.
    pub call_waiting: bool,
    /// The caller id this endpoint sees (name, number), when not the
    /// bridge's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller_id: Option<(String, String)>,
}

/// What a bridge asks beyond whom to ring (`call:bridge`'s options).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BridgeOptions {
    /// The caller id was set by the module (not the call's).
    pub caller_id_set: bool,
    /// Custom SIP headers on every INVITE (`X-` headers only).
    pub headers: Vec<(String, String)>,
    /// The callee must press this key after answering to take the call
    /// (Kazoo's `confirm_key`), hearing `media` meanwhile, within
    /// [`CONFIRM_TIMEOUT_MS`]; until it does, the caller still hears
    /// ringing and the other endpoints still ring.
    pub confirm: Option<Confirm>,
    /// Talk time limit in seconds: both backends end the call then (both
    /// legs, `ALLOTTED_TIMEOUT` by the system), unless a side hung up first.
    pub time_limit_s: Option<u64>,
    /// The caller hears ringback instead of callees' early media.
    pub ignore_early_media: bool,
}

/// How long a callee asked to confirm a bridge has, from its answer, to
/// press the key (the prompt plays meanwhile); then it is hung up, as a
/// callee that never answered.
pub const CONFIRM_TIMEOUT_MS: u64 = 10_000;

/// A callee's confirmation of a bridge (see [`BridgeOptions::confirm`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    pub key: char,
    pub media: Option<String>,
}

/// Ring endpoints and connect the caller to the first that answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeRequest {
    pub endpoints: Vec<BridgeEndpoint>,
    pub strategy: Strategy,
    /// Overall limit in seconds.
    pub timeout_s: u64,
    pub ringback: Option<String>,
    /// Page: endpoints answer at once (auto-answer), as Kazoo's `page_group`.
    pub page: bool,
    /// What the callees see.
    pub caller_id_name: String,
    pub caller_id_number: String,
    /// For off-net numbers: which carriers (Kazoo's resources) to use.
    /// Simulations ignore it (the scenario plays the carrier).
    pub carriers: Option<Carriers>,
    pub options: BridgeOptions,
}

/// The carriers an off-net call may use (what Kazoo's stepswitch reads of
/// an offnet request).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Carriers {
    /// The account's own resources (`use_local_resources`), else the
    /// system's.
    pub local: bool,
    /// Whose local resources (`hunt_account_id`); the call's account when
    /// `None`.
    pub account: Option<String>,
    /// Flags every resource used must have.
    pub flags: Vec<String>,
}

/// How a bridge ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BridgeStatus {
    Answered,
    Busy,
    NoAnswer,
    Failed,
    Cancelled,
    Hangup,
}

impl BridgeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BridgeStatus::Answered => "answered",
            BridgeStatus::Busy => "busy",
            BridgeStatus::NoAnswer => "no_answer",
            BridgeStatus::Failed => "failed",
            BridgeStatus::Cancelled => "cancelled",
            BridgeStatus::Hangup => "hangup",
        }
    }
}

/// What a bridge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeOutcome {
    pub status: BridgeStatus,
    /// Hang-up cause (Q.850 name): `NORMAL_CLEARING`, `USER_BUSY`, `NO_ANSWER`, ...
    pub cause: String,
    /// SIP response code of the failure (or 200).
    pub sip: u16,
    pub answered_by: Option<String>,
    /// Ringing plus talking time.
    pub duration_ms: u64,
    /// Talking time, when answered.
    pub talk_ms: u64,
}

impl BridgeOutcome {
    /// A bridge that connected `by`.
    pub fn answered(by: String, duration_ms: u64, talk_ms: u64) -> Self {
        Self {
            status: BridgeStatus::Answered,
            cause: "NORMAL_CLEARING".to_owned(),
            sip: 200,
            answered_by: Some(by),
            duration_ms,
            talk_ms,
        }
    }

    /// A bridge that connected nobody.
    pub fn failed(duration_ms: u64, status: BridgeStatus, cause: &str, sip: u16) -> Self {
        Self {
            status,
            cause: cause.to_owned(),
            sip,
            answered_by: None,
            duration_ms,
            talk_ms: 0,
        }
    }
}

/// The peer bridged to the call now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer leg's call id.
    pub call_id: String,
    /// The device (or off-net number) that answered.
    pub endpoint: String,
    /// The leg on hold, if any.
    pub held: Option<Leg>,
}

/// An attended transfer (Kazoo's konami `transfer`): the transferee (the
/// leg that is not the transferor) waits on hold while the transferor rings
/// the target and may talk to it; the transferor hanging up completes the
/// transfer, the takeback digits cancel it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsultRequest {
    /// The number transferred to, for the trace.
    pub target: String,
    /// What to ring for it.
    pub endpoints: Vec<BridgeEndpoint>,
    pub transferor: Leg,
    /// How long the target rings.
    pub timeout_s: u64,
    /// Digits of the transferor that cancel the transfer (`*1`).
    pub takeback: Option<String>,
    /// Music the transferee hears.
    pub moh: Option<String>,
    /// What the transferor hears while the target rings.
    pub ringback: Option<String>,
    /// Complete as soon as the target answers, without holding the
    /// transferee (a `move`: the transferor's side moves to the target).
    pub complete_on_answer: bool,
    /// The caller id the target sees (name, number).
    pub caller_id: (String, String),
}

impl ConsultRequest {
    /// How the target rings: every endpoint at once, for `timeout_s`, the
    /// target seeing the caller's id.
    pub fn ring(&self) -> BridgeRequest {
        BridgeRequest {
            endpoints: self.endpoints.clone(),
            strategy: Strategy::Simultaneous,
            timeout_s: self.timeout_s,
            ringback: self.ringback.clone(),
            page: false,
            caller_id_name: self.caller_id.0.clone(),
            caller_id_number: self.caller_id.1.clone(),
            carriers: None,
            options: BridgeOptions::default(),
        }
    }
}

/// How an attended transfer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsultResult {
    /// The transferee and the target are connected.
    Completed,
    /// The transferor took the call back: the original legs talk again.
    Takeback,
    /// The target did not answer (busy, no answer, failed): the original
    /// legs talk again.
    NoAnswer,
    Busy,
    Failed,
    /// The target hung up after answering: the original legs talk again.
    TargetHangup,
    /// The transferee hung up: the transferor and the target talk.
    TransfereeHangup,
    /// The caller's leg is gone.
    Hangup,
}

/// What an attended transfer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsultOutcome {
    pub result: ConsultResult,
    pub answered_by: Option<String>,
    pub duration_ms: u64,
}

/// What a verb does once the listener beside it has run a metaflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Go on toward the verb's own end.
    Continue,
    /// Stop the media playing to the caller now (konami's `break`).
    Break,
    /// The call is gone or was taken elsewhere: end the verb now.
    Stop,
}

/// The metaflow listener that runs beside a verb (see the module docs).
pub trait Beside {
    /// When the listener wants to run next (an armed digit timeout).
    fn deadline(&self) -> Option<u64>;
    /// A digit pressed on `leg` at `t_ms`.
    fn dtmf(&self, t_ms: u64, leg: Leg, digit: char);
    /// A peer answered a bridge (`Some`), or the bridge is over (`None`).
    fn bridged(&self, peer: Option<&BridgeEndpoint>);
    /// The deadline has come: run what is due.
    fn fire(&self) -> LocalFuture<'_, Resume>;
    /// The phone on `leg` asked for a blind transfer to `target` (a SIP
    /// REFER): run it as the `transfer` metaflow pressed on that leg would.
    /// [`Resume::Stop`] when the call went elsewhere.
    fn refer<'a>(&'a self, leg: Leg, target: &'a str) -> LocalFuture<'a, Resume>;
}

/// Nothing listens beside the verb.
#[derive(Debug, Clone, Copy, Default)]
pub struct Alone;

impl Beside for Alone {
    fn deadline(&self) -> Option<u64> {
        None
    }
    fn dtmf(&self, _t_ms: u64, _leg: Leg, _digit: char) {}
    fn bridged(&self, _peer: Option<&BridgeEndpoint>) {}
    fn fire(&self) -> LocalFuture<'_, Resume> {
        Box::pin(async { Resume::Continue })
    }
    fn refer<'a>(&'a self, _leg: Leg, _target: &'a str) -> LocalFuture<'a, Resume> {
        Box::pin(async { Resume::Continue })
    }
}

/// Why a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SleepReason {
    Completed,
    Hangup,
}

/// An HTTP request made on behalf of a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
    pub timeout_ms: u64,
}

/// The HTTP response, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOutcome {
    /// HTTP status; 0 when the request failed.
    pub status: u16,
    pub body: String,
    pub headers: BTreeMap<String, String>,
    /// Why the request failed, when it did.
    pub error: Option<String>,
    pub duration_ms: u64,
}

impl HttpOutcome {
    /// A request that got no response, and why.
    pub fn failed(error: String) -> Self {
        Self {
            status: 0,
            body: String::new(),
            headers: BTreeMap::new(),
            error: Some(error),
            duration_ms: 0,
        }
    }
}

/// The hang-up cause (Q.850 name) of a SIP response code: FreeSWITCH's
/// mapping (`sofia_glue_sip_cause_to_freeswitch`, RFC 4497's), which is
/// what Kazoo reports. The one table for both backends: the cause of a
/// final `respond` and of a callee's failure response in a bridge.
pub fn cause_for_sip(code: u16) -> &'static str {
    match code {
        200 => "NORMAL_CLEARING",
        401 | 402 | 403 | 407 | 603 | 608 => "CALL_REJECTED",
        404 => "UNALLOCATED_NUMBER",
        485 | 604 => "NO_ROUTE_DESTINATION",
        408 | 504 => "RECOVERY_ON_TIMER_EXPIRE",
        410 => "NUMBER_CHANGED",
        413 | 414 | 416 | 420 | 421 | 423 | 505 | 513 => "INTERWORKING",
        480 => "NO_USER_RESPONSE",
        400 | 481 | 500 | 503 => "NORMAL_TEMPORARY_FAILURE",
        486 | 600 => "USER_BUSY",
        484 => "INVALID_NUMBER_FORMAT",
        488 | 606 => "INCOMPATIBLE_DESTINATION",
        502 => "NETWORK_OUT_OF_ORDER",
        405 => "SERVICE_UNAVAILABLE",
        406 | 415 | 501 => "SERVICE_NOT_IMPLEMENTED",
        482 | 483 => "EXCHANGE_ROUTING_ERROR",
        487 => "ORIGINATOR_CANCEL",
        _ => "NORMAL_UNSPECIFIED",
    }
}

/// The outside world of one call: the media server, the caller, the callees.
///
/// Implementations record what they observe during a verb (digits pressed,
/// hang-ups) in the call's trace as they happen.
pub trait CallControl {
    /// Milliseconds of call time since the call started.
    fn now_ms(&self) -> u64;
    /// How the call ended, once it has.
    fn hangup_info(&self) -> Option<Hangup>;
    /// Answers the call (no-op when already answered).
    fn answer(&self) -> LocalFuture<'_, Result<(), Gone>>;
    /// Sends ringing to the caller.
    fn ring(&self) -> LocalFuture<'_, Result<(), Gone>>;
    /// Hangs up the call with `cause` (no-op when already gone).
    fn hangup(&self, cause: &str) -> LocalFuture<'_, ()>;
    /// Hands the call to another destination; it leaves without a hang-up.
    fn transfer(&self, target: &str) -> LocalFuture<'_, Result<(), Gone>>;
    fn play<'a>(
        &'a self,
        request: &'a PlayRequest,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<PlayOutcome, Gone>>;
    fn speak<'a>(
        &'a self,
        request: &'a SpeakRequest,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<PlayOutcome, Gone>>;
    fn collect<'a>(
        &'a self,
        request: &'a CollectRequest,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<CollectOutcome, Gone>>;
    fn record<'a>(
        &'a self,
        request: &'a RecordRequest,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<RecordOutcome, Gone>>;
    fn bridge<'a>(
        &'a self,
        request: &'a BridgeRequest,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<BridgeOutcome, Gone>>;
    /// Waits `ms` milliseconds, or until the caller hangs up.
    fn sleep<'a>(
        &'a self,
        ms: u64,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<SleepReason, Gone>>;
    /// Sends DTMF to the caller.
    fn send_dtmf<'a>(&'a self, digits: &'a str) -> LocalFuture<'a, Result<(), Gone>>;
    /// Sends a SIP response; a final one (>= 300) on an unanswered call ends it.
    fn respond<'a>(&'a self, code: u16, message: &'a str) -> LocalFuture<'a, Result<(), Gone>>;
    /// Drops the digits pressed so far.
    fn flush_dtmf(&self);
    /// Makes an HTTP request (allowed after the call is gone).
    fn http<'a>(
        &'a self,
        request: &'a HttpRequest,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, HttpOutcome>;
    /// Starts (`true`) or stops recording the whole call; returns the
    /// recording's id. A recording started with `time_limit_ms` holds at
    /// most that much audio.
    fn record_call(
        &self,
        start: bool,
        time_limit_ms: Option<u64>,
    ) -> LocalFuture<'_, Result<String, Gone>>;
    /// The id of the whole-call recording running, if any.
    fn recording(&self) -> Option<String>;
    /// Listens up to `ms` for fax tones; true when the caller is a fax.
    fn detect_fax<'a>(
        &'a self,
        ms: u64,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<bool, Gone>>;
    /// The peer bridged to the call now, if any.
    fn peer(&self) -> Option<PeerInfo>;
    /// Puts `leg` of the bridge on hold (it hears `moh`, else the
    /// account's music) until `unhold_key` is pressed on the other leg, or
    /// [`CallControl::unhold`]; false when no bridge is up.
    fn hold(&self, leg: Leg, moh: Option<&str>, unhold_key: Option<char>) -> Result<bool, Gone>;
    /// Takes the held leg off hold; returns it.
    fn unhold(&self) -> Result<Option<Leg>, Gone>;
    /// Blind-transfers the peer to `target`: it leaves, the bridge ends and
    /// the caller's leg stays; false when no bridge is up.
    fn transfer_peer(&self, target: &str) -> Result<bool, Gone>;
    /// The peer hangs up (which ends the caller's leg too, as any callee
    /// hang-up does); false when no bridge is up.
    fn hangup_peer(&self, cause: &str) -> Result<bool, Gone>;
    /// An attended transfer between the bridge's legs and a target.
    fn attended_transfer<'a>(
        &'a self,
        request: &'a ConsultRequest,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<ConsultOutcome, Gone>>;
    /// The other calls this call can see (the world of calls), in the
    /// order they began. A backend without a world sees none.
    fn channels(&self) -> Vec<Channel> {
        Vec::new()
    }
    /// Waits at `place` (a name: a queue) until another call wakes it
    /// ([`CallControl::wake`]), the caller presses one of `digits`, the
    /// time is up or the caller hangs up. A backend without a world is
    /// never woken.
    fn wait<'a>(
        &'a self,
        place: &'a str,
        opts: &'a WaitRequest,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<WaitOutcome, Gone>> {
        let _ = (place, beside);
        Box::pin(async move {
            let start = self.now_ms();
            let reason = match self.sleep(opts.ms, beside).await? {
                SleepReason::Completed => "timeout",
                SleepReason::Hangup => "hangup",
            };
            Ok(WaitOutcome {
                reason,
                digit: None,
                duration_ms: self.now_ms().saturating_sub(start),
            })
        })
    }
    /// Wakes the other calls waiting at `place`; how many.
    fn wake(&self, place: &str) -> usize {
        let _ = place;
        0
    }
    /// Camps on `request.targets`: once none of them is on a call, the
    /// world rings `request.device` and, when it answers, that answered
    /// leg dials `request.number` as a new call. False when nothing can
    /// watch the devices (a backend without a world).
    fn camp(&self, request: &CampRequest) -> bool {
        let _ = request;
        false
    }
    /// Joins conference room `room` until the caller hangs up; the other
    /// members hear it join and leave. A backend without a world has an
    /// empty room: it waits for the hang-up.
    fn conference<'a>(
        &'a self,
        room: &'a str,
        moderator: bool,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<ConferenceOutcome, Gone>> {
        let _ = (room, moderator);
        Box::pin(async move {
            let start = self.now_ms();
            self.sleep(u64::MAX, beside).await?;
            Ok(ConferenceOutcome {
                members: 0,
                reason: "hangup",
                duration_ms: self.now_ms().saturating_sub(start),
            })
        })
    }
    /// Listens to the call `call_id` until it ends or this call hangs up.
    /// A backend without a world has nothing to listen to.
    fn eavesdrop<'a>(
        &'a self,
        call_id: &'a str,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<EavesdropOutcome, Gone>> {
        let _ = (call_id, beside);
        Box::pin(async move {
            Ok(EavesdropOutcome {
                reason: "no_call",
                duration_ms: 0,
            })
        })
    }
    /// Waits in parking slot `slot` for at most `ms` (`u64::MAX`: until
    /// the caller hangs up), where another call may retrieve it
    /// ([`CallControl::pickup`]). A backend without a world only waits.
    fn park<'a>(
        &'a self,
        slot: &'a str,
        ms: u64,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<ParkOutcome, Gone>> {
        let _ = slot;
        Box::pin(async move {
            let start = self.now_ms();
            let reason = match self.sleep(ms, beside).await? {
                SleepReason::Completed => "timeout",
                SleepReason::Hangup => "hangup",
            };
            Ok(ParkOutcome {
                reason,
                by: None,
                duration_ms: self.now_ms().saturating_sub(start),
                talk_ms: 0,
            })
        })
    }
    /// Joins the call `call_id` while its bridge rings (a pickup: the bridge
    /// is answered by this call) or while it is parked (a retrieve); with
    /// `intercept`, also while its bridge is answered (its callee is hung
    /// up and this call takes its place). The two talk until one hangs up.
    /// A call in none of those states fails at once
    /// (`NO_ROUTE_DESTINATION`, 404), as does a backend without a world.
    fn pickup<'a>(
        &'a self,
        call_id: &'a str,
        intercept: bool,
        beside: &'a dyn Beside,
    ) -> LocalFuture<'a, Result<BridgeOutcome, Gone>> {
        let _ = (call_id, intercept, beside);
        Box::pin(async move {
            Ok(BridgeOutcome::failed(
                0,
                BridgeStatus::Failed,
                "NO_ROUTE_DESTINATION",
                404,
            ))
        })
    }
}

/// A camp on busy devices ([`CallControl::camp`]): Kazoo's camper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampRequest {
    /// The device to call back (the camping call's).
    pub device: String,
    /// Who the callback is from, as the camping call was.
    pub from: String,
    pub caller_id_name: String,
    /// What the callback dials once the device answers.
    pub number: String,
    /// The devices that must all be free.
    pub targets: Vec<String>,
    /// How long the device rings for the callback.
    pub ring_ms: u64,
    /// How long the camp lasts.
    pub stop_after_ms: u64,
}

/// How a wait in a parking slot ended ([`CallControl::park`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkOutcome {
    /// `timeout`, `retrieved` (another call took it and they talked until
    /// one hung up) or `hangup`.
    pub reason: &'static str,
    /// The call that retrieved it.
    pub by: Option<String>,
    /// Time in the slot, plus the conversation when retrieved.
    pub duration_ms: u64,
    pub talk_ms: u64,
}

/// What [`CallControl::wait`] waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitRequest {
    /// At most this long (`u64::MAX`: until woken or the hang-up).
    pub ms: u64,
    /// Digits of the caller that end the wait.
    pub digits: String,
    /// Since when the call says it waits (shown to others).
    pub since: Option<i64>,
}

/// How a [`CallControl::wait`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitOutcome {
    /// `woken` (another call), `digit`, `timeout` or `hangup`.
    pub reason: &'static str,
    pub digit: Option<char>,
    pub duration_ms: u64,
}

/// How a stay in a conference ended ([`CallControl::conference`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConferenceOutcome {
    /// Members in the room when the call joined (itself not counted).
    pub members: usize,
    /// `hangup`: the caller left.
    pub reason: &'static str,
    pub duration_ms: u64,
}

/// How an eavesdrop ended ([`CallControl::eavesdrop`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EavesdropOutcome {
    /// `target_ended`, `hangup` (this call), or `no_call` (nothing to
    /// listen to).
    pub reason: &'static str,
    pub duration_ms: u64,
}

/// Another call, as [`CallControl::channels`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub call_id: String,
    /// The call's id in its scenario (`alice`), where it has one.
    pub name: String,
    pub from: String,
    pub to: String,
    pub calling_device: Option<String>,
    /// `busy` (running its flow), `ringing`, `answered` or `parked`.
    pub state: &'static str,
    /// While ringing: the endpoints (device ids, numbers) it rings.
    pub ringing: Vec<String>,
    /// While answered: who it talks to (a device id, number or call id).
    pub answered_by: Option<String>,
    /// While parked: the slot; in a conference: the room; waiting: where.
    pub slot: Option<String>,
    /// While waiting: since when, as the call said (ms since the epoch).
    pub since: Option<i64>,
}
