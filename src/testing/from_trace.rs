//! A real call's trace document (what `callflow serve --sip` writes under
//! `--traces`) turned into a scenario that replays it, with an inline
//! `expect`: any call that went wrong in production becomes a regression
//! test for `callflow test` (`callflow scenario from-trace`).
//!
//! It lives in `testing`, beside [`super::check`], rather than in `sim`:
//! what it makes is a test (a scenario and its expectation), and the rule of
//! how close the replay must be is a testing rule. Like the rest of
//! `testing` it is pure: JSON in, scenario JSON out; the CLI reads and
//! writes the files.
//!
//! **What the scenario replays.** The call as it came in (account, `to`,
//! `from`, `caller_id_name`, `inception`, `calling_device`, `start`, so
//! that temporal rules see the same time); what the caller did, at the
//! times the call heard it (each digit as `{"at_ms", "dtmf"}`, the hang-up
//! as `{"at_ms", "hangup": true}`); how long each media and each spoken
//! text lasted (`media.durations_ms`, `media.speech_ms`); what the world
//! answered: the HTTP responses (`http` stubs, with the time each took),
//! and the bridges that failed (`endpoints` that reject, are busy or do not
//! answer, with the real cause and SIP code).
//!
//! **How close the replay must be** (what the generated `expect` checks):
//! the same modules in the same order; the same route (`callflow_id`), the
//! same digits collected by each `collect`, the same branches and the same
//! metaflows fired (digits collected, what matched), in order; the same
//! module errors (by module), and none when the real call had none; the same
//! hang-up cause and end reason. Times and durations are not compared.
//!
//! **What is left out, and why.** Timing: a real call's clock runs on while
//! media loads and TTS renders (tens of ms per prompt), which the
//! simulator's virtual clock does not count, so the replay runs slightly
//! ahead of the real call; the caller's actions keep their real times, and a
//! caller who acted within such a margin of a verb's end may land in the
//! next verb. The live backend's own `log` warnings (a missing prompt, a
//! bridge that real calls cannot make yet) and `warning` notices: the
//! simulator has none; they come back as notes. The trace does not say how
//! long a `collect`'s prompt played (only the whole collect's duration), so
//! it is estimated (see `Prompts`); a media or a text that was only ever
//! interrupted lasted, in the replay, what it played plus [`MARGIN_MS`]. A
//! hang-up cause the simulator cannot make (the caller's CANCEL, a lost ACK)
//! is not expected. Recordings that ended on silence end at their time limit
//! in the replay.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::sim::scenario::{DEFAULT_SEED, Object};
use crate::trace::{Event, Trace, TraceJsonError};

/// What a media or a text that was only ever interrupted lasts in the
/// replay beyond what it played: the caller's digit or hang-up must still
/// find it playing although the replay runs ahead of the real call.
pub const MARGIN_MS: u64 = 1000;

/// Where the scenario's flows and scripts are, relative to the scenario
/// file (as scenarios name them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScenarioPaths {
    pub flows: Option<String>,
    pub scripts: Vec<String>,
}

/// The scenario and what the replay cannot reproduce.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    /// The scenario: a JSON object, keys in reading order.
    pub scenario: Value,
    /// One line per thing of the real call the replay leaves out or
    /// estimates, for the user to read.
    pub notes: Vec<String>,
}

/// A document that is not a usable trace of a real call; names the JSON
/// path of what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FromTraceError {
    #[error("{path}: {message}")]
    Field { path: String, message: String },
    /// An event without its time or name (the message names the path).
    #[error(transparent)]
    Events(#[from] TraceJsonError),
}

fn field_error(path: impl Into<String>, message: impl Into<String>) -> FromTraceError {
    FromTraceError::Field {
        path: path.into(),
        message: message.into(),
    }
}

/// Turns a trace document into a scenario that replays the call.
pub fn convert(document: &Value, paths: &ScenarioPaths) -> Result<Conversion, FromTraceError> {
    let header = Header::read(document)?;
    let trace = Trace::from_json(document)?;
    let events = trace.events();
    let mut notes = Vec::new();
    let caller = caller_actions(events, &mut notes)?;
    let media = media(events, &mut notes)?;
    let endpoints = endpoints(events, &mut notes);
    let http = http_stubs(document, &header, events, &mut notes)?;
    let outcome = outcome(events, &mut notes);
    notes.extend(live_notes(events));

    let mut scenario = Map::new();
    scenario.insert("description".into(), json!(header.description()));
    scenario.insert("account".into(), json!(header.account));
    scenario.insert("to".into(), json!(header.to));
    for (key, value) in [
        ("from", &header.from),
        ("caller_id_name", &header.caller_id_name),
        ("inception", &header.inception),
        ("calling_device", &header.calling_device),
    ] {
        if let Some(value) = value {
            scenario.insert(key.into(), json!(value));
        }
    }
    scenario.insert("start".into(), json!(header.start));
    if let Some(flows) = &paths.flows {
        scenario.insert("flows".into(), json!(flows));
    }
    if !paths.scripts.is_empty() {
        scenario.insert("scripts".into(), json!(paths.scripts));
    }
    if !caller.is_empty() {
        scenario.insert("caller".into(), Value::Array(caller));
    }
    if !media.is_empty() {
        scenario.insert("media".into(), Value::Object(media));
    }
    if !endpoints.is_empty() {
        scenario.insert("endpoints".into(), Value::Object(endpoints));
    }
    if !http.is_empty() {
        scenario.insert("http".into(), Value::Object(http));
    }
    if let Some(max) = outcome.max_call_ms {
        scenario.insert("max_call_ms".into(), json!(max));
    }
    scenario.insert("expect".into(), expect(events, &outcome));
    let scenario = Value::Object(scenario);
    // The scenario must be one `callflow test` reads: a failure here is a
    // value of the trace this conversion let through.
    crate::sim::Scenario::parse(&scenario.to_string())
        .map_err(|e| field_error(".", format!("the scenario made from it is unusable: {e}")))?;
    Ok(Conversion { scenario, notes })
}

/// The call as it came in, from the document's top-level fields.
#[derive(Debug)]
struct Header {
    call_id: Option<String>,
    account: String,
    to: String,
    from: Option<String>,
    caller_id_name: Option<String>,
    inception: Option<String>,
    calling_device: Option<String>,
    start: String,
}

impl Header {
    fn read(document: &Value) -> Result<Self, FromTraceError> {
        let Value::Object(doc) = document else {
            return Err(field_error(
                ".",
                "not a trace document: expected a JSON object (a real call's trace, as `callflow serve --sip` writes under --traces)",
            ));
        };
        if !doc.get("events").is_some_and(Value::is_array) {
            return Err(field_error(
                "events",
                "not a trace document: no list of events (a real call's trace, as `callflow serve --sip` writes under --traces)",
            ));
        }
        let account = required(doc, "account_id", "a real call's trace names its account")?;
        let to = required(doc, "to", "the dialled number")?;
        let start = required(doc, "start", "when the call started (RFC 3339)")?;
        if start.parse::<jiff::Timestamp>().is_err() {
            return Err(field_error(
                "start",
                format!("{start:?} is not an RFC 3339 time such as 2026-11-25T14:30:00Z"),
            ));
        }
        let inception = optional(doc, "inception")?;
        if let Some(name) = inception
            .as_deref()
            .filter(|n| !matches!(*n, "onnet" | "offnet"))
        {
            return Err(field_error(
                "inception",
                format!("expected \"onnet\" or \"offnet\", not {name:?}"),
            ));
        }
        Ok(Self {
            call_id: optional(doc, "call_id")?,
            account,
            to,
            from: optional(doc, "from")?,
            caller_id_name: optional(doc, "caller_id_name")?,
            inception,
            calling_device: optional(doc, "calling_device")?,
            start,
        })
    }

    fn description(&self) -> String {
        let id = self.call_id.as_deref().unwrap_or("(no call id)");
        let from = self.from.as_deref().unwrap_or("(unknown caller)");
        format!(
            "Replay of the real call {id} from {from} to {} at {} (made by `callflow scenario from-trace`).",
            self.to, self.start
        )
    }
}

/// A non-empty string field.
fn required(doc: &Object, key: &str, what: &str) -> Result<String, FromTraceError> {
    match optional(doc, key)? {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(field_error(key, format!("missing: {what}"))),
    }
}

/// A string field that may be absent or null.
fn optional(doc: &Object, key: &str) -> Result<Option<String>, FromTraceError> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(field_error(key, format!("expected a string, not {other}"))),
    }
}

/// The JSON path of an event's field.
fn at(index: usize, field: &str) -> String {
    format!("events[{index}].{field}")
}

fn str_field<'a>(event: &'a Event, key: &str) -> Option<&'a str> {
    event.fields.get(key).and_then(Value::as_str)
}

/// A number of milliseconds the event must have.
fn ms_field(event: &Event, index: usize, key: &str) -> Result<u64, FromTraceError> {
    event
        .fields
        .get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| field_error(at(index, key), "expected milliseconds (a number)"))
}

fn is_caller_digit(event: &Event) -> bool {
    event.name == "dtmf" && !event.fields.contains_key("leg")
}

fn is_caller_hangup(event: &Event) -> bool {
    event.name == "hangup" && str_field(event, "by") == Some("caller")
}

/// Whether the caller's hang-up is one the simulator makes: its caller
/// hangs up with `NORMAL_CLEARING` (a BYE), never with a CANCEL.
fn is_plain_hangup(event: &Event) -> bool {
    str_field(event, "cause") == Some("NORMAL_CLEARING")
}

/// One DTMF digit: 0-9, *, # or A-D.
fn is_one_digit(text: &str) -> bool {
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D'),
        _ => false,
    }
}

/// A system hang-up the live backend makes for a caller that vanished
/// (no ACK); the simulator has it as the caller hanging up.
const LOST_CALLER: &str = "RECOVERY_ON_TIMER_EXPIRE";

/// The caller's digits and hang-up, in time order.
fn caller_actions(events: &[Event], notes: &mut Vec<String>) -> Result<Vec<Value>, FromTraceError> {
    let mut actions: Vec<(u64, Value)> = Vec::new();
    for (index, event) in events.iter().enumerate() {
        if is_caller_digit(event) {
            let digit = str_field(event, "digit")
                .filter(|d| is_one_digit(d))
                .ok_or_else(|| {
                    field_error(
                        at(index, "digit"),
                        "expected one DTMF digit: 0-9, *, # or A-D",
                    )
                })?;
            actions.push((event.t_ms, json!({"at_ms": event.t_ms, "dtmf": digit})));
        } else if is_caller_hangup(event) {
            if !is_plain_hangup(event) {
                notes.push(format!(
                    "{}: the caller hung up with {}; the replay's caller hangs up with NORMAL_CLEARING, so the cause is not expected",
                    at(index, "cause"),
                    str_field(event, "cause").unwrap_or("no cause")
                ));
            }
            actions.push((event.t_ms, json!({"at_ms": event.t_ms, "hangup": true})));
        } else if event.name == "hangup" && str_field(event, "cause") == Some(LOST_CALLER) {
            notes.push(format!(
                "{}: the caller stopped answering ({LOST_CALLER}); the replay has the caller hang up then, so neither the cause nor the end reason is expected",
                at(index, "cause")
            ));
            actions.push((event.t_ms, json!({"at_ms": event.t_ms, "hangup": true})));
        }
    }
    actions.sort_by_key(|(t, _)| *t);
    Ok(actions.into_iter().map(|(_, action)| action).collect())
}

/// `media`: how long each media and each spoken text lasted.
fn media(events: &[Event], notes: &mut Vec<String>) -> Result<Map<String, Value>, FromTraceError> {
    let mut played = Lengths::default();
    let mut spoken = Lengths::default();
    let mut prompts = Prompts::default();
    for (index, event) in events.iter().enumerate() {
        if event.fields.get("leg").and_then(Value::as_str) == Some("b") {
            continue; // nothing plays to a callee on a real call yet
        }
        match event.name.as_str() {
            "play" => {
                let Some(media) = str_field(event, "media") else {
                    continue;
                };
                let loops = event
                    .fields
                    .get("loop_count")
                    .map_or(Some(1), Value::as_u64)
                    .ok_or_else(|| field_error(at(index, "loop_count"), "expected a number"))?;
                if loops > 0 {
                    played.add(media, event, index, loops)?;
                }
            }
            "tts" | "say" => {
                if let Some(text) = str_field(event, "text") {
                    spoken.add(text, event, index, 1)?;
                }
            }
            "collect" => prompts.add(events, index)?,
            _ => {}
        }
    }
    let mut media = Map::new();
    for (key, lengths, prompts) in [
        ("durations_ms", played, prompts),
        ("speech_ms", spoken, Prompts::default()),
    ] {
        let resolved = lengths.resolve(prompts);
        for (name, (_, how)) in &resolved {
            match how {
                Source::Completed => {}
                Source::Prompt => notes.push(format!(
                    "media.{key}.{name}: estimated from the collections it prompted (the trace does not say how long a collection's prompt played)"
                )),
                Source::Interrupted => notes.push(format!(
                    "media.{key}.{name}: only ever interrupted: replayed as what it played plus {MARGIN_MS} ms"
                )),
            }
        }
        if !resolved.is_empty() {
            let lengths: BTreeMap<&String, u64> =
                resolved.iter().map(|(name, (ms, _))| (name, *ms)).collect();
            media.insert(key.into(), json!(lengths));
        }
    }
    Ok(media)
}

/// What the trace says about how long each media (or text) lasts.
#[derive(Debug, Default)]
struct Lengths {
    /// From a playback that completed (the first one).
    completed: BTreeMap<String, u64>,
    /// From playbacks a digit or a hang-up stopped: at least this long.
    interrupted: BTreeMap<String, u64>,
}

impl Lengths {
    fn add(
        &mut self,
        name: &str,
        event: &Event,
        index: usize,
        loops: u64,
    ) -> Result<(), FromTraceError> {
        let Some(reason) = str_field(event, "reason") else {
            return Ok(()); // not completed: the call ended inside the verb
        };
        let played = ms_field(event, index, "duration_ms")?;
        if reason == "completed" {
            self.completed
                .entry(name.to_owned())
                .or_insert(played / loops);
        } else {
            let bound = played.div_ceil(loops) + MARGIN_MS;
            let entry = self.interrupted.entry(name.to_owned()).or_insert(bound);
            *entry = (*entry).max(bound);
        }
        Ok(())
    }

    /// Each name's length and where it comes from: a completed
    /// playback's, else a collection's exact estimate, else the largest
    /// bound (of interrupted playbacks and collections).
    fn resolve(self, prompts: Prompts) -> BTreeMap<String, (u64, Source)> {
        let mut out: BTreeMap<String, (u64, Source)> = self
            .interrupted
            .into_iter()
            .map(|(name, ms)| (name, (ms, Source::Interrupted)))
            .collect();
        for (name, estimate) in prompts.0 {
            let entry = out.entry(name).or_insert((0, Source::Prompt));
            if let Some(exact) = estimate.exact {
                *entry = (exact, Source::Prompt);
            } else {
                let bound = estimate.at_least.unwrap_or_default();
                if bound >= entry.0 {
                    *entry = (bound, Source::Prompt);
                }
            }
        }
        for (name, ms) in self.completed {
            out.insert(name, (ms, Source::Completed));
        }
        out
    }
}

/// Where a length comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Completed,
    Prompt,
    Interrupted,
}

/// Estimates of how long `collect` prompts played, by media: the trace has
/// only the whole collection's duration. For each collection:
/// * the caller pressed a digit or hung up during it: the prompt lasted
///   until then at most, or was stopped by it: replaying it as lasting until
///   then gives the same collection (a digit just at a prompt's end is
///   collected, a hang-up ends the wait) — a bound, the largest one wins;
/// * otherwise it timed out: the prompt lasted the duration less the
///   timeout; or the digits were already pressed: it lasted the duration.
///   These are exact, and the first one wins over bounds.
#[derive(Debug, Default)]
struct Prompts(BTreeMap<String, Estimate>);

#[derive(Debug, Default, Clone, Copy)]
struct Estimate {
    exact: Option<u64>,
    at_least: Option<u64>,
}

impl Prompts {
    fn add(&mut self, events: &[Event], index: usize) -> Result<(), FromTraceError> {
        let collect = &events[index];
        let (Some(prompt), Some(reason)) =
            (str_field(collect, "prompt"), str_field(collect, "reason"))
        else {
            return Ok(());
        };
        let duration = ms_field(collect, index, "duration_ms")?;
        let end = collect.t_ms.saturating_add(duration);
        let first = events[index + 1..]
            .iter()
            .take_while(|e| e.t_ms <= end)
            .find(|e| is_caller_digit(e) || is_caller_hangup(e));
        let estimate = self.0.entry(prompt.to_owned()).or_default();
        match first {
            Some(event) => {
                let offset = event.t_ms.saturating_sub(collect.t_ms);
                estimate.at_least = Some(estimate.at_least.unwrap_or(0).max(offset));
            }
            None if estimate.exact.is_some() => {}
            None if reason == "timeout" => {
                let timeout = ms_field(collect, index, "timeout_ms")?;
                estimate.exact = Some(duration.saturating_sub(timeout));
            }
            None => estimate.exact = Some(duration),
        }
        Ok(())
    }
}

/// `endpoints`: how each device or number of a failed bridge fails, as it
/// did in the real call (the first bridge that names it wins).
fn endpoints(events: &[Event], notes: &mut Vec<String>) -> Map<String, Value> {
    let mut out = Map::new();
    for (index, event) in events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.name == "bridge")
    {
        let ids: Vec<&str> = event
            .fields
            .get("endpoints")
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let behaviour = match str_field(event, "status") {
            Some("failed") => json!({"reject": {
                "cause": str_field(event, "cause").unwrap_or("CALL_REJECTED"),
                "sip": event.fields.get("sip").and_then(Value::as_u64).unwrap_or(603),
            }}),
            Some("busy") => json!({"busy": true}),
            Some("no_answer") => continue, // unlisted endpoints ring unanswered
            other => {
                notes.push(format!(
                    "{}: a bridge that ended {} is not replayed (the replay's endpoints ring without answering)",
                    at(index, "status"),
                    other.unwrap_or("without a status")
                ));
                continue;
            }
        };
        for id in ids {
            out.entry(id.to_owned())
                .or_insert_with(|| behaviour.clone());
        }
    }
    out
}

/// `http`: the answers the call met, by URL (the first answer of a URL
/// wins), each taking the time it took.
fn http_stubs(
    document: &Value,
    header: &Header,
    events: &[Event],
    notes: &mut Vec<String>,
) -> Result<Map<String, Value>, FromTraceError> {
    let answers: &[Value] = match document.pointer("/replay/http") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(list)) => list,
        Some(_) => {
            return Err(field_error(
                "replay.http",
                "expected a list of HTTP answers",
            ));
        }
    };
    let sim_call_id = crate::sim::call_id(DEFAULT_SEED, 0);
    let mut stubs = Map::new();
    for (index, answer) in answers.iter().enumerate() {
        let path = format!("replay.http[{index}].url");
        let (url, stub) = http_answer(answer, index)?;
        let url = match header
            .call_id
            .as_deref()
            .filter(|id| !id.is_empty() && url.contains(id))
        {
            Some(id) => {
                notes.push(format!(
                    "{path}: the URL holds the call id; the stub has the replay's ({sim_call_id}) in its place"
                ));
                url.replace(id, &sim_call_id)
            }
            None => url,
        };
        if let Some(reason) = crate::sim::network::refused(&url) {
            notes.push(format!(
                "{path}: {reason}; `callflow test` refuses such URLs before any stub, so the replay's request fails"
            ));
        }
        match stubs.get(&url) {
            Some(first) if *first != stub => notes.push(format!(
                "{path}: {url} answered differently before; the replay answers it as the first time every time"
            )),
            Some(_) => {}
            None => {
                stubs.insert(url, stub);
            }
        }
    }
    for (index, event) in events.iter().enumerate().filter(|(_, e)| e.name == "http") {
        if let (Some(url), Some(error)) = (str_field(event, "url"), str_field(event, "error")) {
            notes.push(format!(
                "{}: the request to {url} failed ({error}); the replay has no stub for it, so it fails too",
                at(index, "error")
            ));
        }
    }
    Ok(stubs)
}

/// One answer of `replay.http`: its URL and the stub that gives it.
fn http_answer(answer: &Value, index: usize) -> Result<(String, Value), FromTraceError> {
    let path = |field: &str| format!("replay.http[{index}].{field}");
    let url = answer
        .get("url")
        .and_then(Value::as_str)
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .ok_or_else(|| field_error(path("url"), "expected an http:// or https:// URL"))?;
    let status = answer
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .ok_or_else(|| field_error(path("status"), "expected an HTTP status code"))?;
    let mut stub = Map::new();
    stub.insert("status".into(), json!(status));
    match answer.get("body") {
        None | Some(Value::Null) => {}
        Some(Value::String(body)) if body.is_empty() => {}
        Some(Value::String(body)) => {
            stub.insert("body".into(), json!(body));
        }
        Some(_) => return Err(field_error(path("body"), "expected the body as a string")),
    }
    match answer.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(headers)) => {
            if let Some((name, _)) = headers.iter().find(|(_, v)| !v.is_string()) {
                return Err(field_error(
                    path(&format!("headers.{name}")),
                    "expected a string",
                ));
            }
            if !headers.is_empty() {
                stub.insert("headers".into(), Value::Object(headers.clone()));
            }
        }
        Some(_) => {
            return Err(field_error(
                path("headers"),
                "expected an object of strings",
            ));
        }
    }
    match answer.get("duration_ms") {
        None | Some(Value::Null) => {}
        Some(value) => {
            let delay = value.as_u64().ok_or_else(|| {
                field_error(path("duration_ms"), "expected milliseconds (a number)")
            })?;
            if delay > 0 {
                stub.insert("delay_ms".into(), json!(delay));
            }
        }
    }
    Ok((url.to_owned(), Value::Object(stub)))
}

/// How the call ended, as far as the replay can reproduce it.
#[derive(Debug, Default)]
struct Outcome {
    hangup_cause: Option<String>,
    end_reason: Option<String>,
    /// The call ran out of time: the replay's limit is the same instant.
    max_call_ms: Option<u64>,
}

fn outcome(events: &[Event], notes: &mut Vec<String>) -> Outcome {
    let mut outcome = Outcome {
        end_reason: events
            .iter()
            .rev()
            .find(|e| e.name == "end")
            .and_then(|e| str_field(e, "reason"))
            .map(str::to_owned),
        ..Outcome::default()
    };
    if outcome.end_reason.is_none() {
        notes.push("the trace has no `end` event: the end reason is not expected".to_owned());
    }
    let Some((index, hangup)) = events.iter().enumerate().find(|(_, e)| e.name == "hangup") else {
        return outcome;
    };
    let cause = str_field(hangup, "cause").map(str::to_owned);
    match (str_field(hangup, "by"), cause.as_deref()) {
        (Some("caller"), Some(_)) if !is_plain_hangup(hangup) => {}
        (_, Some(LOST_CALLER)) => outcome.end_reason = None,
        (Some("callee"), _) => notes.push(format!(
            "{}: the callee hung up; the replay has no answered bridge, so the cause is not expected",
            at(index, "by")
        )),
        (_, Some("ALLOTTED_TIMEOUT")) => {
            outcome.max_call_ms = Some(hangup.t_ms);
            outcome.hangup_cause = cause;
        }
        _ => outcome.hangup_cause = cause,
    }
    outcome
}

/// The inline expectation: see the module documentation for the rule.
fn expect(events: &[Event], outcome: &Outcome) -> Value {
    let modules: Vec<&str> = events
        .iter()
        .filter(|e| e.name == "node")
        .filter_map(|e| str_field(e, "module"))
        .collect();
    let decided: Vec<Value> = events.iter().filter_map(decision).collect();
    let mut expect = Map::new();
    expect.insert("modules".into(), json!(modules));
    if let Some(cause) = &outcome.hangup_cause {
        expect.insert("hangup_cause".into(), json!(cause));
    }
    if let Some(reason) = &outcome.end_reason {
        expect.insert("end_reason".into(), json!(reason));
    }
    if !decided.is_empty() {
        expect.insert("events".into(), Value::Array(decided));
    }
    if !events.iter().any(|e| e.name == "error") {
        expect.insert("absent".into(), json!([{"event": "error"}]));
    }
    Value::Object(expect)
}

/// What an event says the call decided, as an `expect.events` entry; `None`
/// for everything else.
fn decision(event: &Event) -> Option<Value> {
    let keys: &[&str] = match event.name.as_str() {
        "route" if event.fields.contains_key("error") => &["error"],
        "route" | "branch" => &["callflow_id"],
        "collect" => &["digits"],
        "metaflow" => &["leg", "collected", "match", "key"],
        "error" => &["module"],
        _ => return None,
    };
    let mut pattern = Map::new();
    pattern.insert("event".into(), json!(event.name));
    for key in keys {
        if let Some(value) = event.fields.get(*key) {
            pattern.insert((*key).to_owned(), value.clone());
        }
    }
    Some(Value::Object(pattern))
}

/// Notes for what the live backend recorded that a simulation does not:
/// its warnings, and recordings that ended on silence.
fn live_notes(events: &[Event]) -> Vec<String> {
    let mut notes = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let live_log = event.name == "log" && str_field(event, "module") == Some("live");
        if live_log || event.name == "warning" {
            notes.push(format!(
                "events[{index}]: a warning of the real call, not in the replay: {}",
                str_field(event, "message").unwrap_or_default()
            ));
        } else if event.name == "record" && str_field(event, "reason") == Some("silence") {
            notes.push(format!(
                "{}: the recording ended on silence; the replay's records until its time limit, a terminator or the hang-up",
                at(index, "reason")
            ));
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trace document of a call to 1000 with these events.
    fn document(events: &Value) -> Value {
        json!({
            "call_id": "c0ffee",
            "account_id": "acme",
            "from": "+14155550100",
            "to": "1000",
            "start": "2026-12-07T17:00:00Z",
            "events": events,
        })
    }

    fn convert_events(events: &Value) -> Conversion {
        convert(&document(events), &ScenarioPaths::default()).unwrap()
    }

    fn error_of(document: &Value) -> String {
        convert(document, &ScenarioPaths::default())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_name_the_json_path() {
        let with = |key: &str, value: Value| {
            let mut doc = document(&json!([]));
            doc[key] = value;
            doc
        };
        let without = |key: &str| {
            let mut doc = document(&json!([]));
            doc.as_object_mut().unwrap().remove(key);
            doc
        };
        for (doc, expected) in [
            (
                json!("trace"),
                ".: not a trace document: expected a JSON object (a real call's trace, as `callflow serve --sip` writes under --traces)",
            ),
            (
                without("events"),
                "events: not a trace document: no list of events (a real call's trace, as `callflow serve --sip` writes under --traces)",
            ),
            (
                without("account_id"),
                "account_id: missing: a real call's trace names its account",
            ),
            (
                with("account_id", json!("")),
                "account_id: missing: a real call's trace names its account",
            ),
            (with("to", json!(1000)), "to: expected a string, not 1000"),
            (
                with("start", json!("yesterday")),
                "start: \"yesterday\" is not an RFC 3339 time such as 2026-11-25T14:30:00Z",
            ),
            (
                with("inception", json!("internal")),
                "inception: expected \"onnet\" or \"offnet\", not \"internal\"",
            ),
            (
                document(&json!([{"t_ms": 1}])),
                "events[0].event: expected the event's name",
            ),
            (
                document(&json!([{"t_ms": 1, "event": "dtmf", "digit": "12"}])),
                "events[0].digit: expected one DTMF digit: 0-9, *, # or A-D",
            ),
            (
                document(
                    &json!([{"t_ms": 1, "event": "play", "media": "m", "reason": "completed"}]),
                ),
                "events[0].duration_ms: expected milliseconds (a number)",
            ),
            (
                document(&json!([{"t_ms": 1, "event": "play", "media": "m", "loop_count": "2"}])),
                "events[0].loop_count: expected a number",
            ),
            (
                with("replay", json!({"http": {}})),
                "replay.http: expected a list of HTTP answers",
            ),
            (
                with("replay", json!({"http": [{"url": "ftp://x"}]})),
                "replay.http[0].url: expected an http:// or https:// URL",
            ),
            (
                with(
                    "replay",
                    json!({"http": [{"url": "https://x", "status": 70000}]}),
                ),
                "replay.http[0].status: expected an HTTP status code",
            ),
            (
                with(
                    "replay",
                    json!({"http": [{"url": "https://x", "status": 200, "body": {}}]}),
                ),
                "replay.http[0].body: expected the body as a string",
            ),
            (
                with(
                    "replay",
                    json!({"http": [{"url": "https://x", "status": 200, "headers": {"a": 1}}]}),
                ),
                "replay.http[0].headers.a: expected a string",
            ),
        ] {
            assert_eq!(error_of(&doc), expected);
        }
    }

    #[test]
    fn the_call_as_it_came_in() {
        let mut doc = document(&json!([]));
        doc["caller_id_name"] = json!("Alice");
        doc["inception"] = json!("onnet");
        doc["calling_device"] = json!("dev_alice");
        let paths = ScenarioPaths {
            flows: Some("../flows".into()),
            scripts: vec!["../scripts".into()],
        };
        let scenario = convert(&doc, &paths).unwrap().scenario;
        assert_eq!(
            scenario,
            json!({
                "description": "Replay of the real call c0ffee from +14155550100 to 1000 at 2026-12-07T17:00:00Z (made by `callflow scenario from-trace`).",
                "account": "acme", "to": "1000", "from": "+14155550100", "caller_id_name": "Alice",
                "inception": "onnet", "calling_device": "dev_alice", "start": "2026-12-07T17:00:00Z",
                "flows": "../flows", "scripts": ["../scripts"],
                "expect": {"modules": [], "absent": [{"event": "error"}]},
            })
        );
        let keys: Vec<&String> = scenario.as_object().unwrap().keys().collect();
        assert_eq!(keys[..3], ["description", "account", "to"]);
    }

    #[test]
    fn the_caller_digits_and_hangup_at_their_times() {
        let conversion = convert_events(&json!([
            {"t_ms": 900, "event": "dtmf", "digit": "*"},
            {"t_ms": 950, "event": "dtmf", "digit": "5", "leg": "b"},
            {"t_ms": 1000, "event": "dtmf", "digit": "1"},
            {"t_ms": 4000, "event": "hangup", "cause": "NORMAL_CLEARING", "by": "caller"},
            {"t_ms": 4000, "event": "end", "reason": "caller_hangup", "duration_ms": 4000},
        ]));
        assert_eq!(
            conversion.scenario["caller"],
            json!([
                {"at_ms": 900, "dtmf": "*"},
                {"at_ms": 1000, "dtmf": "1"},
                {"at_ms": 4000, "hangup": true},
            ])
        );
        assert_eq!(
            conversion.scenario["expect"]["hangup_cause"],
            "NORMAL_CLEARING"
        );
        assert_eq!(conversion.scenario["expect"]["end_reason"], "caller_hangup");
        assert_eq!(conversion.notes, Vec::<String>::new());
    }

    #[test]
    fn causes_the_simulator_cannot_make_are_not_expected() {
        let cancel = convert_events(&json!([
            {"t_ms": 300, "event": "hangup", "cause": "ORIGINATOR_CANCEL", "by": "caller"},
            {"t_ms": 300, "event": "end", "reason": "caller_hangup"},
        ]));
        assert_eq!(
            cancel.scenario["caller"],
            json!([{"at_ms": 300, "hangup": true}])
        );
        assert_eq!(
            cancel.scenario["expect"],
            json!({"modules": [], "end_reason": "caller_hangup", "absent": [{"event": "error"}]})
        );
        assert_eq!(
            cancel.notes,
            [
                "events[0].cause: the caller hung up with ORIGINATOR_CANCEL; the replay's caller hangs up with NORMAL_CLEARING, so the cause is not expected"
            ]
        );

        let lost = convert_events(&json!([
            {"t_ms": 32000, "event": "hangup", "cause": "RECOVERY_ON_TIMER_EXPIRE", "by": "system"},
            {"t_ms": 32000, "event": "end", "reason": "module_hangup"},
        ]));
        assert_eq!(
            lost.scenario["caller"],
            json!([{"at_ms": 32000, "hangup": true}])
        );
        assert_eq!(
            lost.scenario["expect"],
            json!({"modules": [], "absent": [{"event": "error"}]})
        );
        assert_eq!(lost.notes.len(), 1, "{:?}", lost.notes);

        let timeout = convert_events(&json!([
            {"t_ms": 60000, "event": "hangup", "cause": "ALLOTTED_TIMEOUT", "by": "system"},
            {"t_ms": 60000, "event": "end", "reason": "max_duration"},
        ]));
        assert_eq!(timeout.scenario["max_call_ms"], 60000);
        assert_eq!(
            timeout.scenario["expect"]["hangup_cause"],
            "ALLOTTED_TIMEOUT"
        );
    }

    #[test]
    fn media_lengths_from_completed_and_interrupted_playbacks() {
        let media = convert_events(&json!([
            {"t_ms": 0, "event": "play", "media": "hold", "loop_count": 3, "reason": "completed", "duration_ms": 3000},
            {"t_ms": 3000, "event": "play", "media": "long", "reason": "terminator", "duration_ms": 4000},
            {"t_ms": 7000, "event": "play", "media": "long", "reason": "hangup", "duration_ms": 5000},
            {"t_ms": 12000, "event": "play", "media": "once", "reason": "completed", "duration_ms": 700},
            {"t_ms": 12700, "event": "play", "media": "once", "reason": "terminator", "duration_ms": 100},
            {"t_ms": 12800, "event": "play", "media": "forever", "loop_count": 0, "reason": "hangup", "duration_ms": 9000},
            {"t_ms": 21800, "event": "play", "media": "to-callee", "leg": "b", "reason": "completed", "duration_ms": 0},
            {"t_ms": 21800, "event": "play", "media": "cut-off"},
            {"t_ms": 21800, "event": "tts", "text": "Hello.", "voice": "female", "reason": "completed", "duration_ms": 820},
            {"t_ms": 22620, "event": "say", "text": "42", "type": "number", "reason": "terminator", "duration_ms": 300},
        ]));
        assert_eq!(
            media.scenario["media"],
            json!({
                "durations_ms": {"hold": 1000, "long": 6000, "once": 700},
                "speech_ms": {"42": 1300, "Hello.": 820},
            })
        );
        assert_eq!(
            media.notes,
            [
                "media.durations_ms.long: only ever interrupted: replayed as what it played plus 1000 ms",
                "media.speech_ms.42: only ever interrupted: replayed as what it played plus 1000 ms",
                "the trace has no `end` event: the end reason is not expected",
            ]
        );
    }

    /// A collection of `prompt` at `t_ms`, with its outcome.
    fn collect(t_ms: u64, prompt: &str, digits: &str, reason: &str, duration_ms: u64) -> Value {
        json!({"t_ms": t_ms, "event": "collect", "max_digits": 1, "timeout_ms": 5000, "prompt": prompt,
               "digits": digits, "reason": reason, "duration_ms": duration_ms})
    }

    #[test]
    fn collection_prompts_are_estimated() {
        let durations =
            |events: Value| convert_events(&events).scenario["media"]["durations_ms"].clone();
        // Timed out without a digit: the prompt is the rest.
        assert_eq!(
            durations(json!([collect(0, "menu", "", "timeout", 7500)])),
            json!({"menu": 2500})
        );
        // Digits already pressed: the prompt played whole.
        assert_eq!(
            durations(json!([
                {"t_ms": 100, "event": "dtmf", "digit": "1"},
                collect(200, "menu", "1", "max_digits", 2500),
            ])),
            json!({"menu": 2500})
        );
        // A digit or the hang-up during it: the latest one bounds it, and an
        // exact estimate wins over bounds.
        let bounded = json!([
            collect(0, "menu", "2", "max_digits", 1200),
            {"t_ms": 1200, "event": "dtmf", "digit": "2"},
            collect(2000, "menu", "3", "max_digits", 4000),
            {"t_ms": 6000, "event": "dtmf", "digit": "3"},
            collect(7000, "other", "", "hangup", 900),
            {"t_ms": 7900, "event": "hangup", "cause": "NORMAL_CLEARING", "by": "caller"},
        ]);
        assert_eq!(
            durations(bounded.clone()),
            json!({"menu": 4000, "other": 900})
        );
        let mut with_exact = bounded.as_array().unwrap().clone();
        with_exact.push(collect(8000, "menu", "", "timeout", 8000));
        assert_eq!(
            durations(Value::Array(with_exact)),
            json!({"menu": 3000, "other": 900})
        );
        // A completed playback of the same media says best.
        assert_eq!(
            durations(json!([
                collect(0, "menu", "", "timeout", 7500),
                {"t_ms": 7500, "event": "play", "media": "menu", "reason": "completed", "duration_ms": 2400},
            ])),
            json!({"menu": 2400})
        );
    }

    #[test]
    fn the_decisions_are_expected_in_order() {
        let conversion = convert_events(&json!([
            {"t_ms": 0, "event": "route", "dialled": "1000", "number": "1000", "callflow_id": "main", "matched": "number"},
            {"t_ms": 0, "event": "node", "callflow_id": "main", "path": "/flow", "module": "menu"},
            collect(0, "greeting", "2", "max_digits", 2100),
            {"t_ms": 2100, "event": "dtmf", "digit": "2"},
            {"t_ms": 2100, "event": "node", "callflow_id": "main", "path": "/flow/children/2", "module": "callflow"},
            {"t_ms": 2100, "event": "branch", "callflow_id": "support"},
            {"t_ms": 2100, "event": "node", "callflow_id": "support", "path": "/flow", "module": "broken"},
            {"t_ms": 2100, "event": "error", "module": "broken", "file": "scripts/broken.lua", "line": 3, "message": "boom"},
            {"t_ms": 3000, "event": "metaflow", "leg": "a", "binding": "callflow", "collected": "*9", "match": "number", "key": "9", "module": "record_call"},
            {"t_ms": 3000, "event": "log", "level": "info", "module": "broken", "message": "kept out"},
            {"t_ms": 3100, "event": "hangup", "cause": "NORMAL_CLEARING", "by": "system"},
            {"t_ms": 3100, "event": "end", "reason": "flow_end", "duration_ms": 3100},
        ]));
        assert_eq!(
            conversion.scenario["expect"],
            json!({
                "modules": ["menu", "callflow", "broken"],
                "hangup_cause": "NORMAL_CLEARING",
                "end_reason": "flow_end",
                "events": [
                    {"event": "route", "callflow_id": "main"},
                    {"event": "collect", "digits": "2"},
                    {"event": "branch", "callflow_id": "support"},
                    {"event": "error", "module": "broken"},
                    {"event": "metaflow", "leg": "a", "collected": "*9", "match": "number", "key": "9"},
                ],
            })
        );
        let unrouted = convert_events(&json!([
            {"t_ms": 0, "event": "route", "dialled": "1000", "error": "not_found", "message": "no callflow"},
        ]));
        assert_eq!(
            unrouted.scenario["expect"]["events"],
            json!([{"event": "route", "error": "not_found"}])
        );
        assert_eq!(
            unrouted.notes,
            ["the trace has no `end` event: the end reason is not expected"]
        );
    }

    #[test]
    fn failed_bridges_fail_the_same_way() {
        let conversion = convert_events(&json!([
            {"t_ms": 0, "event": "bridge", "endpoints": ["dev_a", "dev_b"], "status": "failed", "cause": "FACILITY_NOT_IMPLEMENTED", "sip": 501},
            {"t_ms": 0, "event": "bridge", "endpoints": ["dev_b", "dev_c"], "status": "busy", "cause": "USER_BUSY", "sip": 486},
            {"t_ms": 0, "event": "bridge", "endpoints": ["dev_d"], "status": "no_answer", "cause": "NO_ANSWER", "sip": 480},
            {"t_ms": 0, "event": "bridge", "endpoints": ["dev_e"], "status": "answered", "answered_by": "dev_e"},
            {"t_ms": 0, "event": "log", "level": "warning", "module": "live", "message": "no bridging yet"},
            {"t_ms": 0, "event": "warning", "message": "reload rejected"},
        ]));
        let reject = json!({"reject": {"cause": "FACILITY_NOT_IMPLEMENTED", "sip": 501}});
        assert_eq!(
            conversion.scenario["endpoints"],
            json!({"dev_a": reject, "dev_b": reject, "dev_c": {"busy": true}})
        );
        assert_eq!(
            conversion.notes,
            [
                "events[3].status: a bridge that ended answered is not replayed (the replay's endpoints ring without answering)",
                "the trace has no `end` event: the end reason is not expected",
                "events[4]: a warning of the real call, not in the replay: no bridging yet",
                "events[5]: a warning of the real call, not in the replay: reload rejected",
            ]
        );
    }

    #[test]
    fn http_answers_become_stubs() {
        let mut doc = document(&json!([
            {"t_ms": 0, "event": "http", "method": "GET", "url": "https://down.example.com/", "status": 0, "error": "connection refused"},
        ]));
        doc["replay"] = json!({"http": [
            {"method": "GET", "url": "https://ivr.example.com/next?call=c0ffee", "status": 200,
             "body": "{\"ok\":true}", "headers": {"content-type": "application/json"}, "duration_ms": 85},
            {"method": "GET", "url": "https://ivr.example.com/next?call=c0ffee", "status": 500, "body": "", "headers": {}, "duration_ms": 3},
            {"method": "POST", "url": "https://ivr.example.com/log", "status": 204, "body": "", "headers": {}, "duration_ms": 0},
            {"method": "GET", "url": "http://127.0.0.1:8080/x", "status": 200},
        ]});
        let conversion = convert(&doc, &ScenarioPaths::default()).unwrap();
        assert_eq!(
            conversion.scenario["http"],
            json!({
                "https://ivr.example.com/next?call=sim-1": {
                    "status": 200, "body": "{\"ok\":true}",
                    "headers": {"content-type": "application/json"}, "delay_ms": 85,
                },
                "https://ivr.example.com/log": {"status": 204},
                "http://127.0.0.1:8080/x": {"status": 200},
            })
        );
        assert_eq!(
            conversion.notes,
            [
                "replay.http[0].url: the URL holds the call id; the stub has the replay's (sim-1) in its place",
                "replay.http[1].url: the URL holds the call id; the stub has the replay's (sim-1) in its place",
                "replay.http[1].url: https://ivr.example.com/next?call=sim-1 answered differently before; the replay answers it as the first time every time",
                "replay.http[3].url: refused: 127.0.0.1 is a loopback, link-local or private address (allow private addresses to reach it); `callflow test` refuses such URLs before any stub, so the replay's request fails",
                "events[0].error: the request to https://down.example.com/ failed (connection refused); the replay has no stub for it, so it fails too",
                "the trace has no `end` event: the end reason is not expected",
            ]
        );
    }
}
