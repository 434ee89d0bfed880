//! Scenario files: a simulated call and the world around it.
//!
//! ```json
//! {
//!   "account": "acme", "to": "1000", "from": "+14155550100", "caller_id_name": "Alice",
//!   "inception": "onnet", "calling_device": "dev_alice",
//!   "start": "2026-11-25T14:30:00Z", "seed": 1,
//!   "caller": [ {"on": "collect", "dtmf": "1"}, {"at_ms": 5000, "dtmf": "2"}, {"at_ms": 60000, "hangup": true} ],
//!   "endpoints": {
//!     "dev_bob":   {"answer_after_ms": 4000, "hangup_after_ms": 30000},
//!     "dev_carol": {"busy": true},
//!     "dev_dave":  {"reject": {"cause": "CALL_REJECTED", "sip": 603}},
//!     "dev_erin":  {"unregistered": true}
//!   },
//!   "media": {"default_ms": 3000, "durations_ms": {"greeting": 8000}, "speech_ms": {"Goodbye.": 900}},
//!   "http": {"https://app.example.com/ivr": {"status": 200, "body": {}},
//!            "https://app.example.com/cdr": [{"match": {"method": "POST"}, "status": 204}]}
//! }
//! ```
//!
//! Everything but `to` has a default. Unknown keys are errors (a typo must
//! not silently change a test), and every error names its JSON path.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::routing::Inception;

/// The default start: Monday 2026-01-05 17:00 UTC (09:00 in California,
/// 12:00 in New York, 18:00 in Paris), so that business hours are open.
pub const DEFAULT_START: &str = "2026-01-05T17:00:00Z";
/// The default caller number.
pub const DEFAULT_FROM: &str = "+14155550100";
/// The default seed (of `math.random`, and part of the call id).
pub const DEFAULT_SEED: u64 = 1;

/// A parsed, checked scenario.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What the scenario is about (for readers; not used).
    #[serde(default)]
    pub description: Option<String>,
    /// The account; may be omitted when the flows hold one account.
    #[serde(default)]
    pub account: Option<String>,
    /// The dialled number (of the one call; with `calls`, each call has
    /// its own).
    #[serde(default)]
    pub to: String,
    #[serde(default = "default_from")]
    pub from: String,
    /// Defaults to `from`.
    #[serde(default)]
    pub caller_id_name: Option<String>,
    #[serde(default)]
    pub inception: InceptionName,
    #[serde(default)]
    pub calling_device: Option<String>,
    /// When the call starts: an RFC 3339 instant (`2026-11-25T14:30:00Z`)
    /// or a local date-time without offset (`2026-12-01T10:00`), read in the
    /// account's timezone (UTC when it has none).
    #[serde(default = "default_start")]
    pub start: String,
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default)]
    pub caller: Vec<CallerAction>,
    #[serde(default)]
    pub endpoints: BTreeMap<String, EndpointBehaviour>,
    #[serde(default)]
    pub media: Media,
    /// HTTP stubs by URL: one stub or a list (see [`super::stubs`] for
    /// which one answers a request).
    #[serde(default)]
    pub http: BTreeMap<String, HttpStubs>,
    /// The flows directory, relative to the scenario file (a command-line
    /// `--flows` wins).
    #[serde(default)]
    pub flows: Option<PathBuf>,
    /// Script directories, relative to the scenario file (added after those
    /// given on the command line).
    #[serde(default)]
    pub scripts: Vec<PathBuf>,
    /// Longest call, in ms (default: the engine's limit, four hours).
    #[serde(default)]
    pub max_call_ms: Option<u64>,
    /// The caller is a fax machine (what fax detection hears).
    #[serde(default)]
    pub fax: bool,
    /// What `callflow test` checks in the trace; the simulator ignores it.
    #[serde(default)]
    pub expect: Option<Expect>,
    /// Several calls in one world (devices, endpoints, documents, time):
    /// each as the top level describes one call. The top level's `from`,
    /// `caller_id_name`, `inception`, `fax` and `max_call_ms` are their
    /// defaults; `to`, `caller` and `calling_device` belong to each call.
    #[serde(default)]
    pub calls: Vec<CallSpec>,
}

/// One call of a multi-call scenario.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallSpec {
    /// The call's name in traces (`[alice]`): letters, digits, `_` and
    /// `-`, at most 32, unique in the scenario.
    pub id: String,
    /// When the call starts, in ms after the scenario's `start`.
    #[serde(default)]
    pub at_ms: u64,
    pub to: String,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub caller_id_name: Option<String>,
    #[serde(default)]
    pub inception: Option<InceptionName>,
    #[serde(default)]
    pub calling_device: Option<String>,
    #[serde(default)]
    pub caller: Vec<CallerAction>,
    #[serde(default)]
    pub fax: Option<bool>,
    #[serde(default)]
    pub max_call_ms: Option<u64>,
}

/// One call of a scenario, ready to simulate.
#[derive(Debug, Clone)]
pub struct PlannedCall {
    /// Its id in the scenario (`alice`).
    pub id: String,
    pub at_ms: u64,
    /// The call alone: the scenario with this call's fields.
    pub scenario: Scenario,
}

impl Scenario {
    /// True for a scenario of several calls (`calls`).
    pub fn is_multi_call(&self) -> bool {
        !self.calls.is_empty()
    }

    /// The calls of a multi-call scenario, each as a one-call scenario
    /// (empty for a one-call scenario).
    pub fn planned_calls(&self) -> Vec<PlannedCall> {
        self.calls
            .iter()
            .map(|spec| PlannedCall {
                id: spec.id.clone(),
                at_ms: spec.at_ms,
                scenario: Scenario {
                    to: spec.to.clone(),
                    from: spec.from.clone().unwrap_or_else(|| self.from.clone()),
                    caller_id_name: spec
                        .caller_id_name
                        .clone()
                        .or_else(|| self.caller_id_name.clone()),
                    inception: spec.inception.unwrap_or(self.inception),
                    calling_device: spec.calling_device.clone(),
                    caller: spec.caller.clone(),
                    fax: spec.fax.unwrap_or(self.fax),
                    max_call_ms: spec.max_call_ms.or(self.max_call_ms),
                    calls: Vec::new(),
                    expect: None,
                    ..self.clone()
                },
            })
            .collect()
    }

    /// A call the world places (a camp's callback): the device's leg,
    /// answered, dials `spawn.to`; its caller is the device's behaviour.
    pub fn callback(&self, spawn: &super::world::Spawn) -> PlannedCall {
        let mut caller: Vec<CallerAction> = spawn
            .dtmf
            .iter()
            .map(|press| CallerAction {
                at_ms: Some(press.at_ms),
                on: None,
                delay_ms: None,
                dtmf: Some(press.digits.clone()),
                interdigit_ms: None,
                hangup: None,
            })
            .collect();
        caller.push(CallerAction {
            at_ms: Some(spawn.hangup_after_ms),
            on: None,
            delay_ms: None,
            dtmf: None,
            interdigit_ms: None,
            hangup: Some(true),
        });
        PlannedCall {
            id: spawn.id.clone(),
            at_ms: spawn.at_ms,
            scenario: Scenario {
                to: spawn.to.clone(),
                from: spawn.from.clone(),
                caller_id_name: Some(spawn.caller_id_name.clone()),
                inception: InceptionName::Onnet,
                calling_device: Some(spawn.calling_device.clone()),
                caller,
                calls: Vec::new(),
                expect: None,
                ..self.clone()
            },
        }
    }

    /// The checks of a multi-call scenario's calls.
    fn check_calls(&self) -> Result<(), ScenarioError> {
        let fail = |path: String, message: String| Err(ScenarioError { path, message });
        if !self.to.is_empty() || !self.caller.is_empty() || self.calling_device.is_some() {
            return fail(
                ".".into(),
                "with `calls`, each call has its own `to`, `caller` and `calling_device`: move them into the calls".into(),
            );
        }
        if self.calls.len() > MAX_CALLS {
            return fail(
                "calls".into(),
                format!(
                    "the scenario has {} calls, more than the limit of {MAX_CALLS}",
                    self.calls.len()
                ),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for (index, spec) in self.calls.iter().enumerate() {
            let valid = !spec.id.is_empty()
                && spec.id.len() <= 32
                && spec
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                return fail(
                    format!("calls[{index}].id"),
                    format!(
                        "{:?} is not a call id: 1 to 32 letters, digits, `_` or `-`",
                        spec.id
                    ),
                );
            }
            if !seen.insert(spec.id.as_str()) {
                return fail(
                    format!("calls[{index}].id"),
                    format!("two calls are named {:?}", spec.id),
                );
            }
        }
        for (index, planned) in self.planned_calls().into_iter().enumerate() {
            planned.scenario.check().map_err(|err| ScenarioError {
                path: format!("calls[{index}].{}", err.path),
                message: err.message,
            })?;
        }
        Ok(())
    }
}

/// Calls one scenario may hold.
pub const MAX_CALLS: usize = 100;

/// Inline assertions on a scenario's trace (`"expect"`), checked by
/// `callflow test` ([`crate::testing::check`]). Each part is optional, but
/// at least one must be given.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The modules of the `node` events, in order: the whole list.
    #[serde(default)]
    pub modules: Option<Vec<String>>,
    /// The `cause` of the `hangup` event.
    #[serde(default)]
    pub hangup_cause: Option<String>,
    /// The `reason` of the `end` event.
    #[serde(default)]
    pub end_reason: Option<String>,
    /// Events that must appear, in this order (others may come between):
    /// `{"event": <name>, <field>: <value>, ...}`, every field given equal.
    #[serde(default)]
    pub events: Vec<Object>,
    /// Events that must not appear: no event may match any of these.
    #[serde(default)]
    pub absent: Vec<Object>,
}

/// A JSON object, in document order.
pub type Object = serde_json::Map<String, Value>;

/// `"onnet"` or `"offnet"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InceptionName {
    #[default]
    Onnet,
    Offnet,
}

impl From<InceptionName> for Inception {
    fn from(name: InceptionName) -> Self {
        match name {
            InceptionName::Onnet => Inception::Onnet,
            InceptionName::Offnet => Inception::Offnet,
        }
    }
}

/// One thing the caller does: when (`at_ms`, or `on: "collect"`) and what
/// (`dtmf` or `hangup`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerAction {
    /// Milliseconds from the start of the call.
    #[serde(default)]
    pub at_ms: Option<u64>,
    /// `"collect"`: when the call next starts waiting for digits.
    #[serde(default)]
    pub on: Option<Trigger>,
    /// With `on`: how long after the trigger.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Digits pressed one by one.
    #[serde(default)]
    pub dtmf: Option<String>,
    /// Between two digits (default 100 ms).
    #[serde(default)]
    pub interdigit_ms: Option<u64>,
    #[serde(default)]
    pub hangup: Option<bool>,
}

/// What an `on` action waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Collect,
}

/// How a simulated device behaves when a bridge rings it. Devices not
/// listed ring without answering.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointBehaviour {
    /// Answers after ringing this long.
    #[serde(default)]
    pub answer_after_ms: Option<u64>,
    /// Once answered, hangs up after this long (default 30 s).
    #[serde(default)]
    pub hangup_after_ms: Option<u64>,
    #[serde(default)]
    pub busy: bool,
    #[serde(default)]
    pub reject: Option<Reject>,
    #[serde(default)]
    pub unregistered: bool,
    /// DTMF the device presses once answered (the callee's side of
    /// metaflows): each entry's `at_ms` counts from the answer, its digits
    /// 100 ms apart.
    #[serde(default)]
    pub dtmf: Vec<TimedDtmf>,
}

/// A rejection: cause and SIP code (default `CALL_REJECTED`, 603).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reject {
    #[serde(default = "default_reject_cause")]
    pub cause: String,
    #[serde(default = "default_reject_sip")]
    pub sip: u16,
}

/// Digits pressed at a time.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimedDtmf {
    pub at_ms: u64,
    pub digits: String,
}

/// How long media plays.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Media {
    #[serde(default = "default_media_ms")]
    pub default_ms: u64,
    #[serde(default)]
    pub durations_ms: BTreeMap<String, u64>,
    /// How long a `tts` or `say` of this exact text lasts (what a real call
    /// measured: `callflow scenario from-trace` fills it); other texts last
    /// [`crate::sim::SPEECH_MS_PER_CHAR`] per character.
    #[serde(default)]
    pub speech_ms: BTreeMap<String, u64>,
}

impl Default for Media {
    fn default() -> Self {
        Self {
            default_ms: default_media_ms(),
            durations_ms: BTreeMap::new(),
            speech_ms: BTreeMap::new(),
        }
    }
}

/// A canned HTTP response.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpStub {
    #[serde(default = "default_http_status")]
    pub status: u16,
    /// A string is sent as is; anything else as JSON.
    #[serde(default)]
    pub body: Option<Value>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How long the request takes.
    #[serde(default)]
    pub delay_ms: u64,
    /// What the request must also carry for this stub to answer it.
    #[serde(default, rename = "match")]
    pub request: RequestMatch,
}

/// A stub's conditions on the request, beyond its URL (see
/// [`super::stubs`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestMatch {
    /// `GET`, `POST`, ... in any case.
    #[serde(default)]
    pub method: Option<String>,
    /// Query parameters the request must have, decoded.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// A string the body contains, or JSON the body (read as JSON) contains.
    #[serde(default)]
    pub body: Option<Value>,
}

/// The stubs of one URL: a stub object or a list of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpStubs(pub Vec<HttpStub>);

impl<'de> Deserialize<'de> for HttpStubs {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrMany;
        impl<'de> serde::de::Visitor<'de> for OneOrMany {
            type Value = HttpStubs;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a stub object or a list of stub objects")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<HttpStubs, A::Error> {
                let stub =
                    HttpStub::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(HttpStubs(vec![stub]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<HttpStubs, A::Error> {
                let stubs = Vec::<HttpStub>::deserialize(
                    serde::de::value::SeqAccessDeserializer::new(seq),
                )?;
                Ok(HttpStubs(stubs))
            }
        }
        deserializer.deserialize_any(OneOrMany)
    }
}

fn default_from() -> String {
    DEFAULT_FROM.to_owned()
}
fn default_start() -> String {
    DEFAULT_START.to_owned()
}
fn default_seed() -> u64 {
    DEFAULT_SEED
}
fn default_media_ms() -> u64 {
    3000
}
fn default_http_status() -> u16 {
    200
}
fn default_reject_cause() -> String {
    "CALL_REJECTED".to_owned()
}
fn default_reject_sip() -> u16 {
    603
}

/// A scenario that cannot be used; the message names the JSON path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ScenarioError {
    /// JSON path of the problem (`caller[2].at_ms`), or `.` for the whole file.
    pub path: String,
    pub message: String,
}

/// Bytes of one scenario file or API scenario: far more than a scenario
/// within [`Limits`](crate::limits::Limits)' per-call caps needs.
pub const MAX_SCENARIO_BYTES: usize = 4 << 20;

impl Scenario {
    /// Parses and checks scenario JSON, refusing what a call could not take
    /// anyway: more than [`MAX_SCENARIO_BYTES`], more DTMF digits than
    /// `max_dtmf_digits`, more caller actions (and endpoint key presses)
    /// than `max_caller_events`, more expected events than
    /// `max_trace_events` (the defaults of [`crate::limits::Limits`]).
    pub fn parse(text: &str) -> Result<Self, ScenarioError> {
        if text.len() > MAX_SCENARIO_BYTES {
            return Err(ScenarioError {
                path: ".".to_owned(),
                message: format!(
                    "the scenario is {} bytes, more than the limit of {} MiB",
                    text.len(),
                    MAX_SCENARIO_BYTES >> 20
                ),
            });
        }
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let scenario: Scenario =
            serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
                // serde_path_to_error says "?" where it has no path yet.
                let path = match err.path().to_string() {
                    p if p == "?" => ".".to_owned(),
                    p => p,
                };
                let inner = err.into_inner();
                let message = match (inner.line(), inner.column()) {
                    (0, _) => inner.to_string(),
                    (line, column) => {
                        let text = inner.to_string();
                        let head = text
                            .rsplit_once(" at line ")
                            .map_or(text.as_str(), |(h, _)| h);
                        format!("{head} (line {line}, column {column})")
                    }
                };
                ScenarioError { path, message }
            })?;
        // Nothing but white space may follow the scenario object.
        deserializer.end().map_err(|err| ScenarioError {
            path: ".".to_owned(),
            message: format!(
                "unexpected text after the scenario object (line {}, column {})",
                err.line(),
                err.column()
            ),
        })?;
        scenario.check()?;
        scenario.check_caps(&crate::limits::Limits::default())?;
        Ok(scenario)
    }

    /// The per-call caps, applied to what the scenario asks for.
    fn check_caps(&self, limits: &crate::limits::Limits) -> Result<(), ScenarioError> {
        let over = |path: &str, what: String, max: usize, name: &str| {
            Err(ScenarioError {
                path: path.to_owned(),
                message: format!(
                    "{what}, more than a call takes ({max}, the limit {name}): shorten the scenario"
                ),
            })
        };
        let endpoint_presses = self.endpoints.values().flat_map(|e| &e.dtmf);
        let callers = || {
            self.caller
                .iter()
                .chain(self.calls.iter().flat_map(|call| &call.caller))
        };
        let digits: usize = callers()
            .filter_map(|a| a.dtmf.as_deref())
            .chain(endpoint_presses.clone().map(|p| p.digits.as_str()))
            .map(str::len)
            .sum();
        if digits > limits.max_dtmf_digits {
            return over(
                ".",
                format!("the scenario presses {digits} DTMF digits"),
                limits.max_dtmf_digits,
                "max_dtmf_digits",
            );
        }
        let actions = callers().count() + endpoint_presses.count();
        if actions > limits.max_caller_events {
            return over(
                "caller",
                format!("the scenario has {actions} caller actions and endpoint key presses"),
                limits.max_caller_events,
                "max_caller_events",
            );
        }
        if let Some(expect) = &self.expect {
            let events = expect.events.len() + expect.absent.len();
            if events > limits.max_trace_events {
                return over(
                    "expect",
                    format!("the scenario expects {events} events"),
                    limits.max_trace_events,
                    "max_trace_events",
                );
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), ScenarioError> {
        let fail = |path: String, message: &str| {
            Err(ScenarioError {
                path,
                message: message.to_owned(),
            })
        };
        if self.is_multi_call() {
            return self
                .check_calls()
                .and_then(|()| self.expect.as_ref().map_or(Ok(()), Expect::check));
        }
        if self.to.is_empty() {
            return fail(
                "to".into(),
                "the dialled number is missing or empty (or give `calls`)",
            );
        }
        if self.start.parse::<jiff::Timestamp>().is_err()
            && self.start.parse::<jiff::civil::DateTime>().is_err()
        {
            return fail(
                "start".into(),
                "must be an RFC 3339 time such as 2026-11-25T14:30:00Z, or a local time such as 2026-12-01T10:00 (read in the account's timezone)",
            );
        }
        for (index, action) in self.caller.iter().enumerate() {
            let path = |field: &str| format!("caller[{index}]{field}");
            match (action.at_ms, action.on) {
                (Some(_), Some(_)) => {
                    return fail(path(""), "give either `at_ms` or `on`, not both");
                }
                (None, None) => return fail(path(""), "say when: `at_ms` or `on: \"collect\"`"),
                (Some(_), None) if action.delay_ms.is_some() => {
                    return fail(path(".delay_ms"), "`delay_ms` goes with `on`");
                }
                _ => {}
            }
            match (&action.dtmf, action.hangup) {
                (Some(_), Some(true)) => {
                    return fail(path(""), "give either `dtmf` or `hangup`, not both");
                }
                (None, None | Some(false)) => {
                    return fail(path(""), "say what: `dtmf` or `hangup: true`");
                }
                (Some(digits), _) => check_dtmf(digits, &path(".dtmf"))?,
                _ => {}
            }
        }
        for (id, endpoint) in &self.endpoints {
            let outcomes = [
                endpoint.answer_after_ms.is_some(),
                endpoint.busy,
                endpoint.reject.is_some(),
                endpoint.unregistered,
            ];
            if outcomes.iter().filter(|set| **set).count() > 1 {
                return fail(
                    format!("endpoints.{id}"),
                    "choose one of answer_after_ms, busy, reject, unregistered",
                );
            }
            for (index, press) in endpoint.dtmf.iter().enumerate() {
                check_dtmf(
                    &press.digits,
                    &format!("endpoints.{id}.dtmf[{index}].digits"),
                )?;
            }
        }
        if let Some(expect) = &self.expect {
            expect.check()?;
        }
        for (url, stubs) in &self.http {
            if super::stubs::Url::parse(url).is_none() {
                return fail(
                    format!("http.{url}"),
                    "stub URLs start with http:// or https:// and name a host",
                );
            }
            for (index, stub) in stubs.0.iter().enumerate() {
                if stub.request.method.as_deref().is_some_and(str::is_empty) {
                    return fail(
                        format!("http.{url}[{index}].match.method"),
                        "the method must not be empty",
                    );
                }
            }
        }
        Ok(())
    }

    /// The start as Unix milliseconds; a local start is read in `timezone`
    /// (an IANA name; UTC when `None` or unknown). A local time that a DST
    /// change skips or repeats resolves as RFC 9557 "compatible" does (the
    /// later instant for a gap, the earlier for a fold).
    pub fn start_epoch_ms(&self, timezone: Option<&str>) -> i64 {
        if let Ok(stamp) = self.start.parse::<jiff::Timestamp>() {
            return stamp.as_millisecond();
        }
        let Ok(local) = self.start.parse::<jiff::civil::DateTime>() else {
            return 0; // `check` rejects this start
        };
        let tz = timezone
            .and_then(|name| jiff::tz::TimeZone::get(name).ok())
            .unwrap_or(jiff::tz::TimeZone::UTC);
        tz.to_timestamp(local)
            .map_or(0, jiff::Timestamp::as_millisecond)
    }
}

impl Expect {
    fn check(&self) -> Result<(), ScenarioError> {
        let nothing = self.modules.is_none()
            && self.hangup_cause.is_none()
            && self.end_reason.is_none()
            && self.events.is_empty()
            && self.absent.is_empty();
        if nothing {
            return Err(ScenarioError {
                path: "expect".to_owned(),
                message: "give at least one of `modules`, `hangup_cause`, `end_reason`, `events`, `absent`".to_owned(),
            });
        }
        for (list, patterns) in [("events", &self.events), ("absent", &self.absent)] {
            for (index, pattern) in patterns.iter().enumerate() {
                if !matches!(pattern.get("event"), Some(Value::String(name)) if !name.is_empty()) {
                    return Err(ScenarioError {
                        path: format!("expect.{list}[{index}]"),
                        message: "needs `\"event\"`: the event's name, such as \"bridge\""
                            .to_owned(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// `relative` resolved against `base` (the scenario's folder), with `.` and
/// `..` folded away lexically so that paths read well in traces
/// (`tests/scenarios/../engine/scripts` becomes `tests/engine/scripts`).
pub fn resolve(base: &Path, relative: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in base.join(relative).components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if matches!(out.components().next_back(), Some(Component::Normal(_))) {
                    out.pop();
                } else {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

fn check_dtmf(digits: &str, path: &str) -> Result<(), ScenarioError> {
    if digits.is_empty()
        || !digits
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D'))
    {
        return Err(ScenarioError {
            path: path.to_owned(),
            message: format!("DTMF is digits 0-9, *, # and A-D, not {digits:?}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_paths() {
        let r = |b: &str, p: &str| resolve(Path::new(b), Path::new(p)).display().to_string();
        assert_eq!(
            r("tests/scenarios", "../engine/scripts"),
            "tests/engine/scripts"
        );
        assert_eq!(r("tests/scenarios", "./flows"), "tests/scenarios/flows");
        assert_eq!(r("", "../x"), "../x");
        assert_eq!(r("a", ".."), ".");
        assert_eq!(r("/abs/dir", "/other"), "/other");
    }

    #[test]
    fn calls_inherit_the_top_level_and_are_checked_each() {
        let s = Scenario::parse(
            r#"{"from": "2000", "inception": "offnet", "calls": [
                {"id": "a", "to": "1001"},
                {"id": "b", "at_ms": 5000, "to": "1002", "from": "3000", "calling_device": "d"}]}"#,
        )
        .unwrap();
        let calls = s.planned_calls();
        assert_eq!(calls.len(), 2);
        assert_eq!((calls[0].id.as_str(), calls[0].at_ms), ("a", 0));
        assert_eq!(calls[0].scenario.from, "2000");
        assert_eq!(calls[0].scenario.inception, InceptionName::Offnet);
        assert_eq!(
            (calls[1].scenario.from.as_str(), calls[1].at_ms),
            ("3000", 5000)
        );
        assert_eq!(calls[1].scenario.calling_device.as_deref(), Some("d"));
        assert!(calls.iter().all(|c| c.scenario.calls.is_empty()));

        let err = |text: &str| Scenario::parse(text).unwrap_err();
        let e = err(r#"{"to": "1", "calls": [{"id": "a", "to": "1"}]}"#);
        assert!(e.message.contains("move them into the calls"), "{e:?}");
        let e = err(r#"{"calls": [{"id": "a", "to": "1"}, {"id": "a", "to": "2"}]}"#);
        assert_eq!(e.path, "calls[1].id");
        let e = err(r#"{"calls": [{"id": "a b", "to": "1"}]}"#);
        assert_eq!(e.path, "calls[0].id");
        let e = err(r#"{"calls": [{"id": "a", "to": "1", "caller": [{"at_ms": 1}]}]}"#);
        assert_eq!(e.path, "calls[0].caller[0]");
        let e = err(r#"{"calls": [{"id": "a"}]}"#);
        assert!(e.message.contains("missing field `to`"), "{e:?}");
        let e = err("{}");
        assert_eq!(e.path, "to");
    }

    #[test]
    fn defaults() {
        let s = Scenario::parse(r#"{"to": "1000"}"#).unwrap();
        assert_eq!(s.from, DEFAULT_FROM);
        assert_eq!(s.seed, 1);
        assert_eq!(s.media.default_ms, 3000);
        assert_eq!(s.start_epoch_ms(None), 1_767_632_400_000);
    }

    #[test]
    fn a_local_start_is_read_in_the_timezone() {
        let s = Scenario::parse(r#"{"to": "1", "start": "2026-12-01T10:00"}"#).unwrap();
        // 10:00 in Los Angeles (PST, UTC-8) is 18:00 UTC.
        let utc_18 = "2026-12-01T18:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond();
        assert_eq!(s.start_epoch_ms(Some("America/Los_Angeles")), utc_18);
        assert_eq!(s.start_epoch_ms(None), utc_18 - 8 * 3_600_000);
        // In summer, PDT (UTC-7).
        let s = Scenario::parse(r#"{"to": "1", "start": "2026-07-05T03:00:00"}"#).unwrap();
        let utc_10 = "2026-07-05T10:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond();
        assert_eq!(s.start_epoch_ms(Some("America/Los_Angeles")), utc_10);
    }

    #[test]
    fn errors_name_the_path() {
        for (text, expected) in [
            (
                r"{}",
                "to: the dialled number is missing or empty (or give `calls`)",
            ),
            (
                r#"{"to": "1", "caller": [{"at_ms": "5"}]}"#,
                "caller[0].at_ms: invalid type: string \"5\", expected u64 (line 1, column 36)",
            ),
            (
                r#"{"to": "1", "callr": []}"#,
                "callr: unknown field `callr`, expected one of `description`, `account`, `to`, `from`, `caller_id_name`, `inception`, `calling_device`, `start`, `seed`, `caller`, `endpoints`, `media`, `http`, `flows`, `scripts`, `max_call_ms`, `fax`, `expect`, `calls` (line 1, column 19)",
            ),
            (
                r#"{"to": "1", "caller": [{"dtmf": "1"}]}"#,
                "caller[0]: say when: `at_ms` or `on: \"collect\"`",
            ),
            (
                r#"{"to": "1", "caller": [{"at_ms": 1, "dtmf": "1x"}]}"#,
                "caller[0].dtmf: DTMF is digits 0-9, *, # and A-D, not \"1x\"",
            ),
            (
                r#"{"to": "1", "endpoints": {"d": {"busy": true, "unregistered": true}}}"#,
                "endpoints.d: choose one of answer_after_ms, busy, reject, unregistered",
            ),
            (
                r#"{"to": "1", "endpoints": {"d": {"dtmf": [{"at_ms": 1, "digits": "*2x"}]}}}"#,
                "endpoints.d.dtmf[0].digits: DTMF is digits 0-9, *, # and A-D, not \"*2x\"",
            ),
            (
                r#"{"to": "1", "endpoints": {"d": {"dtmf": [{"digits": "*2"}]}}}"#,
                "endpoints.d.dtmf[0]: missing field `at_ms` (line 1, column 57)",
            ),
            (
                r#"{"to": "1", "start": "yesterday"}"#,
                "start: must be an RFC 3339 time such as 2026-11-25T14:30:00Z, or a local time such as 2026-12-01T10:00 (read in the account's timezone)",
            ),
            (
                r#"{"to": "1", "expect": {}}"#,
                "expect: give at least one of `modules`, `hangup_cause`, `end_reason`, `events`, `absent`",
            ),
            (
                r#"{"to": "1", "expect": {"events": [{"digit": "1"}]}}"#,
                "expect.events[0]: needs `\"event\"`: the event's name, such as \"bridge\"",
            ),
            (
                r#"{"to": "1", "expect": {"modules": "menu"}}"#,
                "expect.modules: invalid type: string \"menu\", expected a sequence (line 1, column 40)",
            ),
            (
                "{\"to\": \"1\",",
                ".: EOF while parsing a value (line 1, column 11)",
            ),
        ] {
            assert_eq!(
                Scenario::parse(text).unwrap_err().to_string(),
                expected,
                "{text}"
            );
        }
    }
}
