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
//! * Digits pressed go to the call's DTMF buffer (except while talking on a
//!   bridge, and while recording); `collect` reads the buffer first.
//! * Playback stops at a terminator digit, which stays in the buffer.
//! * A recording stops at a terminator digit (consumed), at its time limit or
//!   at a hang-up.
//! * Bridges: see [`SimBackend::bridge_plan`].

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use serde_json::Value;

use super::scenario::{CallerAction, EndpointBehaviour, HttpStub, Media, Trigger};
use crate::engine::control::{
    BridgeEndpoint, BridgeOutcome, BridgeRequest, BridgeStatus, CallControl, CollectOutcome,
    CollectReason, CollectRequest, Gone, Hangup, HttpOutcome, HttpRequest, HungUpBy, LocalFuture,
    PlayOutcome, PlayReason, PlayRequest, RecordOutcome, RecordReason, RecordRequest, SleepReason,
    SpeakRequest, Strategy,
};
use crate::trace::{Event, Trace};

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
    pub http: BTreeMap<String, HttpStub>,
    pub allow_network: bool,
    pub allow_private_http: bool,
    pub max_call_ms: u64,
    /// The caller is a fax machine (for fax detection).
    pub fax: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Digit(char),
    Hangup,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct OnCollect {
    delay_ms: u64,
    dtmf: Option<(String, u64)>,
}

#[derive(Debug, Default)]
struct State {
    now: u64,
    hangup: Option<Hangup>,
    answered: bool,
    buffer: VecDeque<char>,
    /// Caller actions still to come, by (time, order of scheduling).
    timeline: BTreeMap<(u64, u64), Action>,
    scheduled: u64,
    on_collect: VecDeque<OnCollect>,
    recordings: u32,
    /// The id of the whole-call recording running, if any.
    call_recording: Option<String>,
}

/// Why [`SimBackend::advance`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Deadline,
    Digit(char),
    Hangup,
}

/// One simulated call's world.
pub struct SimBackend {
    world: Rc<World>,
    trace: Rc<RefCell<Trace>>,
    state: RefCell<State>,
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
        Self {
            world,
            trace,
            state: RefCell::new(state),
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

    /// Ends the call (once).
    fn end(&self, by: HungUpBy, cause: &str, timed_out: bool) {
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
        drop(state);
        self.record(
            Event::new(t_ms, "hangup")
                .with("cause", cause)
                .with("by", by.as_str()),
        );
    }

    /// Moves time forward to `deadline`, playing the caller's actions on the
    /// way: digits go to the buffer when `buffer` is set, and stop the wait
    /// when `stop_on` says so; a hang-up stops it. Reaching the call's time
    /// limit hangs up.
    fn advance(&self, deadline: u64, buffer: bool, stop_on: &dyn Fn(char) -> bool) -> Stop {
        let limit = self.world.max_call_ms;
        let capped = deadline.min(limit);
        loop {
            let next = {
                let mut state = self.state.borrow_mut();
                match state.timeline.first_key_value() {
                    Some((&(t, _), _)) if t < capped => state.timeline.pop_first(),
                    _ => None,
                }
            };
            let Some(((t, _), action)) = next else {
                break;
            };
            {
                let mut state = self.state.borrow_mut();
                state.now = state.now.max(t);
            }
            match action {
                Action::Digit(digit) => {
                    self.record(Event::new(t, "dtmf").with("digit", digit.to_string()));
                    if buffer {
                        self.state.borrow_mut().buffer.push_back(digit);
                    }
                    if stop_on(digit) {
                        return Stop::Digit(digit);
                    }
                }
                Action::Hangup => {
                    self.end(HungUpBy::Caller, "NORMAL_CLEARING", false);
                    return Stop::Hangup;
                }
            }
        }
        {
            let mut state = self.state.borrow_mut();
            state.now = state.now.max(capped);
        }
        if capped >= limit {
            self.end(HungUpBy::System, "ALLOTTED_TIMEOUT", true);
            return Stop::Hangup;
        }
        Stop::Deadline
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

    /// Plays something lasting `ms` (`u64::MAX`: until stopped).
    fn playback(&self, ms: u64, terminators: &str) -> PlayOutcome {
        let start = self.now();
        let stop = self.advance(start.saturating_add(ms), true, &|d| terminators.contains(d));
        let (reason, digit) = match stop {
            Stop::Deadline => (PlayReason::Completed, None),
            Stop::Digit(d) => (PlayReason::Terminator, Some(d)),
            Stop::Hangup => (PlayReason::Hangup, None),
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
        let at = state.now + action.delay_ms;
        match action.dtmf {
            Some((digits, interdigit)) => schedule_digits(&mut state, at, &digits, interdigit),
            None => insert(&mut state, at, Action::Hangup),
        }
    }

    fn collect_digits(&self, request: &CollectRequest) -> CollectOutcome {
        let start = self.now();
        if let Some(prompt) = &request.prompt {
            let outcome = self.playback(self.media_ms(prompt), "0123456789*#");
            if outcome.reason == PlayReason::Hangup {
                return collected(String::new(), CollectReason::Hangup, self.now() - start);
            }
        }
        self.trigger_collect();
        let waiting_since = self.now();
        let mut digits = String::new();
        let mut last_digit_at = waiting_since;
        loop {
            loop {
                let next = self.state.borrow_mut().buffer.pop_front();
                let Some(digit) = next else { break };
                last_digit_at = self.now();
                if request.terminators.contains(digit) {
                    if digits.chars().count() >= request.min_digits as usize {
                        return collected(digits, CollectReason::Terminator, self.now() - start);
                    }
                    continue;
                }
                digits.push(digit);
                if digits.chars().count() >= request.max_digits as usize {
                    return collected(digits, CollectReason::MaxDigits, self.now() - start);
                }
            }
            let deadline = if digits.is_empty() {
                waiting_since + request.timeout_ms
            } else {
                last_digit_at + request.interdigit_ms
            };
            match self.advance(deadline, true, &|_| true) {
                Stop::Deadline => {
                    return collected(digits, CollectReason::Timeout, self.now() - start);
                }
                Stop::Hangup => {
                    return collected(digits, CollectReason::Hangup, self.now() - start);
                }
                Stop::Digit(_) => {}
            }
        }
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
        let mut winner: Option<(usize, u64)> = None;
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
                request.page,
                begins,
                endpoint.timeout_s.saturating_mul(1000),
            );
            match fate {
                Fate::Answer(at) if at <= overall_end => {
                    if winner.is_none_or(|(_, best)| at < best) {
                        winner = Some((index, at));
                    }
                    if request.strategy == Strategy::Single {
                        break;
                    }
                }
                Fate::Answer(_) => failures.push(Failure::no_answer(overall_end)),
                Fate::Fail(failure) => {
                    ring_from = failure.at;
                    failures.push(failure);
                }
            }
        }
        if let Some((index, at)) = winner {
            return Plan::Answered {
                endpoint: request.endpoints[index].id.clone(),
                at,
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
    fn fate(&self, endpoint: &BridgeEndpoint, page: bool, begins: u64, timeout_ms: u64) -> Fate {
        let endpoints = &self.world.endpoints;
        let behaviour = endpoints
            .get(&endpoint.id)
            .or_else(|| endpoint.offnet.then(|| endpoints.get("offnet")).flatten())
            .cloned()
            .unwrap_or_default();
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
        if behaviour.busy {
            return fail(BridgeStatus::Busy, "USER_BUSY", 486);
        }
        if let Some(reject) = &behaviour.reject {
            return fail(BridgeStatus::Failed, &reject.cause, reject.sip);
        }
        if page {
            // Paged devices answer by themselves.
            return Fate::Answer(begins);
        }
        match behaviour.answer_after_ms {
            Some(after) if after <= timeout_ms => Fate::Answer(begins + after),
            _ => Fate::Fail(Failure::no_answer(begins.saturating_add(timeout_ms))),
        }
    }

    fn run_bridge(&self, request: &BridgeRequest) -> BridgeOutcome {
        let start = self.now();
        let plan = self.bridge_plan(request, start);
        let ring_end = match &plan {
            Plan::Answered { at, .. } => *at,
            Plan::Failed(failure) => failure.at,
        };
        // Ringing: the caller may press digits (early media) or give up.
        if self.advance(ring_end, true, &|_| false) == Stop::Hangup {
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
            return BridgeOutcome {
                status: BridgeStatus::Hangup,
                cause: cause.to_owned(),
                sip,
                answered_by: None,
                duration_ms: self.now() - start,
                talk_ms: 0,
            };
        }
        match plan {
            Plan::Failed(failure) => BridgeOutcome {
                status: failure.status,
                cause: failure.cause,
                sip: failure.sip,
                answered_by: None,
                duration_ms: self.now() - start,
                talk_ms: 0,
            },
            Plan::Answered { endpoint, at } => {
                let talk = self
                    .world
                    .endpoints
                    .get(&endpoint)
                    .and_then(|b| b.hangup_after_ms)
                    .unwrap_or(DEFAULT_TALK_MS);
                // Talking: digits go to the callee, not to our buffer.
                if self.advance(at.saturating_add(talk), false, &|_| false) == Stop::Deadline {
                    // The callee hung up; the caller's leg goes with it.
                    self.end(HungUpBy::Callee, "NORMAL_CLEARING", false);
                }
                BridgeOutcome {
                    status: BridgeStatus::Answered,
                    cause: "NORMAL_CLEARING".to_owned(),
                    sip: 200,
                    answered_by: Some(endpoint),
                    duration_ms: self.now() - start,
                    talk_ms: self.now() - at,
                }
            }
        }
    }

    fn http_response(&self, request: &HttpRequest) -> HttpOutcome {
        let start = self.now();
        if let Some(reason) =
            super::network::refused(&request.url).filter(|_| !self.world.allow_private_http)
        {
            return HttpOutcome {
                status: 0,
                body: String::new(),
                headers: BTreeMap::new(),
                error: Some(reason),
                duration_ms: 0,
            };
        }
        let Some(stub) = self.world.http.get(&request.url) else {
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
                Err(error) => HttpOutcome {
                    status: 0,
                    body: String::new(),
                    headers: BTreeMap::new(),
                    error: Some(error),
                    duration_ms: 0,
                },
            };
        };
        self.advance(start + stub.delay_ms, true, &|_| false);
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
    Answer(u64),
    Fail(Failure),
}

enum Plan {
    Answered { endpoint: String, at: u64 },
    Failed(Failure),
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
        t += interdigit;
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

    fn play<'a>(&'a self, request: &'a PlayRequest) -> LocalFuture<'a, Result<PlayOutcome, Gone>> {
        Box::pin(async move {
            self.alive()?;
            let ms = match request.loop_count {
                0 => u64::MAX,
                n => self.media_ms(&request.media).saturating_mul(u64::from(n)),
            };
            let outcome = self.playback(ms, &request.terminators);
            park().await;
            Ok(outcome)
        })
    }

    fn speak<'a>(
        &'a self,
        request: &'a SpeakRequest,
    ) -> LocalFuture<'a, Result<PlayOutcome, Gone>> {
        Box::pin(async move {
            self.alive()?;
            let chars = request.text.chars().count() as u64;
            let ms = (chars * SPEECH_MS_PER_CHAR).max(MIN_SPEECH_MS);
            let outcome = self.playback(ms, &request.terminators);
            park().await;
            Ok(outcome)
        })
    }

    fn collect<'a>(
        &'a self,
        request: &'a CollectRequest,
    ) -> LocalFuture<'a, Result<CollectOutcome, Gone>> {
        Box::pin(async move {
            self.alive()?;
            let outcome = self.collect_digits(request);
            park().await;
            Ok(outcome)
        })
    }

    fn record<'a>(
        &'a self,
        request: &'a RecordRequest,
    ) -> LocalFuture<'a, Result<RecordOutcome, Gone>> {
        Box::pin(async move {
            self.alive()?;
            let start = self.now();
            let stop = self.advance(start.saturating_add(request.time_limit_ms), false, &|d| {
                request.terminators.contains(d)
            });
            let reason = match stop {
                Stop::Deadline => RecordReason::MaxLength,
                Stop::Digit(_) => RecordReason::Terminator,
                Stop::Hangup => RecordReason::Hangup,
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
    ) -> LocalFuture<'a, Result<BridgeOutcome, Gone>> {
        Box::pin(async move {
            self.alive()?;
            let outcome = self.run_bridge(request);
            park().await;
            Ok(outcome)
        })
    }

    fn sleep(&self, ms: u64) -> LocalFuture<'_, Result<SleepReason, Gone>> {
        Box::pin(async move {
            self.alive()?;
            let stop = self.advance(self.now().saturating_add(ms), true, &|_| false);
            park().await;
            Ok(match stop {
                Stop::Hangup => SleepReason::Hangup,
                Stop::Deadline | Stop::Digit(_) => SleepReason::Completed,
            })
        })
    }

    fn send_dtmf<'a>(&'a self, _digits: &'a str) -> LocalFuture<'a, Result<(), Gone>> {
        Box::pin(async move { self.alive() })
    }

    fn respond<'a>(&'a self, code: u16, message: &'a str) -> LocalFuture<'a, Result<(), Gone>> {
        Box::pin(async move {
            self.alive()?;
            if code >= 300 {
                let cause = if message.is_empty() {
                    cause_for_sip(code)
                } else {
                    message
                };
                self.end(HungUpBy::System, cause, false);
            }
            Ok(())
        })
    }

    fn flush_dtmf(&self) {
        self.state.borrow_mut().buffer.clear();
    }

    fn http<'a>(&'a self, request: &'a HttpRequest) -> LocalFuture<'a, HttpOutcome> {
        Box::pin(async move {
            let outcome = self.http_response(request);
            park().await;
            outcome
        })
    }

    fn record_call(&self, start: bool) -> LocalFuture<'_, Result<String, Gone>> {
        Box::pin(async move {
            self.alive()?;
            Ok(self.recording(start))
        })
    }

    fn detect_fax(&self, ms: u64) -> LocalFuture<'_, Result<bool, Gone>> {
        Box::pin(async move {
            self.alive()?;
            let listen = if self.world.fax {
                ms.min(FAX_TONE_MS)
            } else {
                ms
            };
            let stop = self.advance(self.now().saturating_add(listen), true, &|_| false);
            park().await;
            Ok(self.world.fax && stop == Stop::Deadline)
        })
    }
}

impl SimBackend {
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

/// The usual hang-up cause for a SIP failure code.
fn cause_for_sip(code: u16) -> &'static str {
    match code {
        404 | 484 => "UNALLOCATED_NUMBER",
        408 | 480 => "NO_ANSWER",
        486 | 600 => "USER_BUSY",
        487 => "ORIGINATOR_CANCEL",
        503 => "NORMAL_TEMPORARY_FAILURE",
        603 => "CALL_REJECTED",
        _ => "NORMAL_UNSPECIFIED",
    }
}
