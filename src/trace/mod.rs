//! Execution traces: what happened during a call, as an ordered list of
//! events `{"t_ms": <call time>, "event": <name>, ...fields}`.
//!
//! Two renderings: JSON (`{"events": [...]}`, for tools and the API) and a
//! compact text form, one line per event, for humans and snapshots. Both are
//! byte-identical for the same scenario, flows and scripts: fields keep their
//! insertion order, maps coming from scripts are sorted, and times are call
//! time, never wall-clock time.
//!
//! A verb is recorded when it starts ([`Trace::begin`]) and completed with its
//! outcome when it ends ([`Trace::complete`]), so that what happened during it
//! (a digit pressed, a hangup) follows it in the list and times never go
//! backwards.

use std::fmt::Write;

use serde_json::{Map, Value};

/// Names of the events the engine and the call-control API record. A
/// module's own events (`call:emit`) must not reuse them.
pub const CORE_EVENTS: &[&str] = &[
    "answer",
    "branch",
    "branch_limit",
    "bridge",
    "camp",
    "collect",
    "conference",
    "conference_member",
    "dtmf",
    "eavesdrop",
    "eavesdrop_mode",
    "end",
    "error",
    "fax_detect",
    "hangup",
    "http",
    "intercepted",
    "leg_hold",
    "leg_unhold",
    "log",
    "metaflow",
    "metaflow_node",
    "node",
    "on_end",
    "park",
    "pickup",
    "play",
    "record",
    "record_call",
    "respond",
    "ring",
    "route",
    "say",
    "send_dtmf",
    "set",
    "skip",
    "sleep",
    "stop",
    "store",
    "transfer",
    "tts",
    "usurp",
    "wait",
    "warning",
];

/// One event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Milliseconds of call time since the call started.
    pub t_ms: u64,
    pub name: String,
    /// Fields in the order they were added.
    pub fields: Map<String, Value>,
    /// In the merged trace of a multi-call scenario, the call the event
    /// belongs to (its `id` in the scenario); `None` in a call's own trace.
    pub call: Option<Box<str>>,
}

/// A handle to an event begun with [`Trace::begin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending(usize);

/// The events of one call, in order.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    events: Vec<Event>,
    /// At most this many events (see [`Trace::with_max_events`]).
    max_events: Option<usize>,
    /// The `limit` event recorded when the trace filled up, and how many
    /// events were dropped since.
    full: Option<(usize, u64)>,
    /// Told of each event as it is recorded (see [`Trace::observe`]).
    observer: Option<Observer>,
}

/// Hears each event a trace records, as it is recorded: how a real call's
/// events reach the live event bus. It must return at once (a channel's
/// non-blocking send): it runs inside the call. The trace itself stays a
/// value; what the observer does with the events is its own.
#[derive(Clone)]
pub struct Observer(std::sync::Arc<dyn Fn(&Event) + Send + Sync>);

impl Observer {
    pub fn new(hear: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(hear))
    }
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

/// Events a full trace still records: how the call went wrong and ended.
const ALWAYS_RECORDED: &[&str] = &["error", "hangup", "end"];

impl PartialEq for Trace {
    fn eq(&self, other: &Self) -> bool {
        self.events == other.events
    }
}

/// About what a JSON value takes in memory, for budgets.
pub fn approx_bytes(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 8,
        Value::String(text) => 24 + text.len(),
        Value::Array(items) => 24 + items.iter().map(approx_bytes).sum::<usize>(),
        Value::Object(fields) => {
            24 + fields
                .iter()
                .map(|(key, value)| 24 + key.len() + approx_bytes(value))
                .sum::<usize>()
        }
    }
}

impl Event {
    /// About what the event takes in memory, for budgets.
    pub fn approx_bytes(&self) -> usize {
        48 + self.name.len()
            + self
                .fields
                .iter()
                .map(|(key, value)| 24 + key.len() + approx_bytes(value))
                .sum::<usize>()
    }

    pub fn new(t_ms: u64, name: &str) -> Self {
        Self {
            t_ms,
            name: name.to_owned(),
            fields: Map::new(),
            call: None,
        }
    }

    /// Adds a field (builder style).
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.to_owned(), value.into());
        self
    }

    /// The event as JSON: `{"t_ms", "event", ...fields}`.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        if let Some(call) = &self.call {
            obj.insert("call".into(), Value::from(&**call));
        }
        obj.insert("t_ms".into(), Value::from(self.t_ms));
        obj.insert("event".into(), Value::from(self.name.clone()));
        for (key, value) in &self.fields {
            obj.insert(key.clone(), value.clone());
        }
        Value::Object(obj)
    }
}

impl Trace {
    pub fn new() -> Self {
        Self::default()
    }

    /// A trace that keeps at most `max` events: past it, only `error`,
    /// `hangup` and `end` events are recorded, and one `limit` event
    /// (`what=trace_events`) says so and counts those `dropped`.
    pub fn with_max_events(max: usize) -> Self {
        Self {
            max_events: Some(max),
            ..Self::default()
        }
    }

    /// Tells `observer` of every event recorded from now on (the events
    /// a full trace leaves out included: the observer hears what happened,
    /// not what the trace kept).
    pub fn observe(&mut self, observer: Observer) {
        self.observer = Some(observer);
    }

    pub fn push(&mut self, event: Event) {
        self.tell(&event);
        if self.room_for(&event) {
            self.events.push(event);
        }
    }

    fn tell(&self, event: &Event) {
        if let Some(Observer(hear)) = &self.observer {
            hear(event);
        }
    }

    /// Whether `event` is recorded (see [`Trace::with_max_events`]).
    fn room_for(&mut self, event: &Event) -> bool {
        let Some(max) = self.max_events else {
            return true;
        };
        if self.events.len() < max || ALWAYS_RECORDED.contains(&event.name.as_str()) {
            return true;
        }
        let (at, dropped) = *self.full.get_or_insert_with(|| {
            self.events.push(
                Event::new(event.t_ms, "limit")
                    .with("what", "trace_events")
                    .with("max", max),
            );
            (self.events.len() - 1, 0)
        });
        self.full = Some((at, dropped + 1));
        if let Some(limit) = self.events.get_mut(at) {
            limit
                .fields
                .insert("dropped".into(), Value::from(dropped + 1));
        }
        false
    }

    /// Records the start of a verb; fields added later with [`Trace::complete`].
    pub fn begin(&mut self, event: Event) -> Pending {
        self.tell(&event);
        if !self.room_for(&event) {
            return Pending(usize::MAX);
        }
        self.events.push(event);
        Pending(self.events.len() - 1)
    }

    /// Adds the outcome fields to an event begun earlier.
    pub fn complete(&mut self, pending: Pending, fields: Map<String, Value>) {
        if let Some(event) = self.events.get_mut(pending.0) {
            event.fields.extend(fields);
        }
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The last event with this name.
    pub fn last(&self, name: &str) -> Option<&Event> {
        self.events.iter().rev().find(|e| e.name == name)
    }

    /// `{"events": [...]}`.
    pub fn to_json(&self) -> Value {
        let events = self.events.iter().map(Event::to_json).collect();
        let mut obj = Map::new();
        obj.insert("events".into(), Value::Array(events));
        Value::Object(obj)
    }

    /// Reads back what [`Trace::to_json`] wrote (`{"events": [...]}`, as
    /// `callflow simulate --format json` prints it).
    pub fn from_json(value: &Value) -> Result<Self, TraceJsonError> {
        let error = |message: String| TraceJsonError(message);
        let events = value
            .get("events")
            .and_then(Value::as_array)
            .ok_or_else(|| error("expected an object {\"events\": [...]}".to_owned()))?;
        let mut trace = Trace::new();
        for (index, event) in events.iter().enumerate() {
            let Value::Object(obj) = event else {
                return Err(error(format!("events[{index}]: expected an object")));
            };
            let t_ms = obj.get("t_ms").and_then(Value::as_u64).ok_or_else(|| {
                error(format!(
                    "events[{index}].t_ms: expected milliseconds (a number)"
                ))
            })?;
            let name = obj.get("event").and_then(Value::as_str).ok_or_else(|| {
                error(format!("events[{index}].event: expected the event's name"))
            })?;
            let mut parsed = Event::new(t_ms, name);
            parsed.call = obj.get("call").and_then(Value::as_str).map(Box::from);
            for (key, value) in obj {
                if key != "t_ms" && key != "event" && key != "call" {
                    parsed.fields.insert(key.clone(), value.clone());
                }
            }
            trace.push(parsed);
        }
        Ok(trace)
    }

    /// The trace with each event `offset_ms` later and labelled as the
    /// call `call` (one call of a multi-call scenario, in the world's time).
    #[must_use]
    pub fn shifted(&self, offset_ms: u64, call: &str) -> Trace {
        let mut shifted = self.clone();
        for event in &mut shifted.events {
            event.t_ms = event.t_ms.saturating_add(offset_ms);
            event.call = Some(Box::from(call));
        }
        shifted
    }

    /// The events of several traces in time order; at the same instant,
    /// the earlier trace's first (each trace keeps its own order).
    pub fn merged<'a>(traces: impl IntoIterator<Item = &'a Trace>) -> Trace {
        let mut all: Vec<(u64, usize, usize, &Event)> = Vec::new();
        for (which, trace) in traces.into_iter().enumerate() {
            // Events begun early and completed late keep their begin
            // time: within a trace, order is the trace's own.
            let mut floor = 0;
            for (index, event) in trace.events.iter().enumerate() {
                floor = floor.max(event.t_ms);
                all.push((floor, which, index, event));
            }
        }
        all.sort_by_key(|(t, which, index, _)| (*t, *which, *index));
        Trace {
            events: all.into_iter().map(|(_, _, _, e)| e.clone()).collect(),
            ..Trace::default()
        }
    }

    /// One line per event: `mm:ss.mmm  name     key=value ...`.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        // The calls of a merged trace, each line `[id]` first, padded so
        // that the times line up.
        let width = self
            .events
            .iter()
            .filter_map(|event| event.call.as_ref().map(|call| call.len()))
            .max();
        for event in &self.events {
            if let (Some(width), Some(call)) = (width, &event.call) {
                let _ = write!(out, "[{call}]{:pad$} ", "", pad = width - call.len());
            }
            render_event(&mut out, event);
            out.push('\n');
        }
        out
    }
}

impl Trace {
    /// Reads back what [`Trace::render_text`] wrote (the `.trace` files
    /// `callflow test` stores). The text form is lossy in one way: a string
    /// that looks like a number, `true`, `false` or `null` was written bare
    /// and reads back as that JSON value. Event names, times, and fields such
    /// as a node's `path` and `callflow_id` read back as they were.
    pub fn from_text(text: &str) -> Result<Self, TraceTextError> {
        let mut trace = Trace::new();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let error = |message: &str| TraceTextError {
                line: index + 1,
                message: message.to_owned(),
            };
            // A merged multi-call trace starts each line with `[call id]`.
            let (call, line) = match line.strip_prefix('[').and_then(|rest| rest.split_once(']')) {
                Some((call, rest)) if !call.is_empty() => (Some(call), rest.trim_start()),
                _ => (None, line),
            };
            let (time, rest) = line
                .split_once("  ")
                .ok_or_else(|| error("expected `mm:ss.mmm  event ...`"))?;
            let t_ms = parse_time(time).ok_or_else(|| error("expected a time `mm:ss.mmm`"))?;
            let rest = rest.trim_start();
            let (name, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
            if name.is_empty() {
                return Err(error("expected the event's name after the time"));
            }
            let mut event = Event::new(t_ms, name);
            event.call = call.map(Box::from);
            loop {
                rest = rest.trim_start();
                if rest.is_empty() {
                    break;
                }
                let (key, after) = rest
                    .split_once('=')
                    .ok_or_else(|| error("expected `key=value`"))?;
                if key.is_empty() || key.contains(' ') {
                    return Err(error("expected `key=value`"));
                }
                let (value, after) = parse_text_value(after)
                    .ok_or_else(|| error(&format!("the value of {key} is not readable")))?;
                event.fields.insert(key.to_owned(), value);
                rest = after;
            }
            trace.push(event);
        }
        Ok(trace)
    }
}

/// `mm:ss.mmm` or `h:mm:ss.mmm` back to milliseconds (see [`format_time`]).
fn parse_time(text: &str) -> Option<u64> {
    let (clock, ms) = text.split_once('.')?;
    let ms: u64 = ms.parse().ok()?;
    let mut total: u64 = 0;
    for part in clock.split(':') {
        total = total.checked_mul(60)?.checked_add(part.parse().ok()?)?;
    }
    total.checked_mul(1000)?.checked_add(ms)
}

/// One value as [`render_value`] wrote it, and the text after it: compact
/// JSON (quoted strings, objects, arrays) or a bare token up to the next
/// space.
fn parse_text_value(text: &str) -> Option<(Value, &str)> {
    if text.starts_with(['"', '{', '[']) {
        let mut values = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        let value = values.next()?.ok()?;
        let end = values.byte_offset();
        return Some((value, &text[end..]));
    }
    let end = text.find(' ').unwrap_or(text.len());
    let token = &text[..end];
    let value = match serde_json::from_str::<Value>(token) {
        Ok(value @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => value,
        _ => Value::String(token.to_owned()),
    };
    Some((value, &text[end..]))
}

/// A text trace that [`Trace::from_text`] cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct TraceTextError {
    pub line: usize,
    pub message: String,
}

/// A JSON trace that [`Trace::from_json`] cannot read; the message names
/// the JSON path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TraceJsonError(pub String);

/// Renders one event on one line (without the newline).
pub fn render_event(out: &mut String, event: &Event) {
    out.push_str(&format_time(event.t_ms));
    let _ = write!(out, "  {:<8}", event.name);
    for (key, value) in &event.fields {
        out.push(' ');
        out.push_str(key);
        out.push('=');
        render_value(out, value);
    }
    // Events without fields leave the name's padding at the end of the line.
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
}

/// `mm:ss.mmm`, or `h:mm:ss.mmm` from one hour on.
pub fn format_time(t_ms: u64) -> String {
    let ms = t_ms % 1000;
    let s = (t_ms / 1000) % 60;
    let m = (t_ms / 60_000) % 60;
    let h = t_ms / 3_600_000;
    if h > 0 {
        format!("{h}:{m:02}:{s:02}.{ms:03}")
    } else {
        format!("{m:02}:{s:02}.{ms:03}")
    }
}

/// Strings that need no quotes stay bare; everything else is compact JSON.
fn render_value(out: &mut String, value: &Value) {
    match value {
        Value::String(text) if is_bare(text) => out.push_str(text),
        other => out.push_str(&other.to_string()),
    }
}

fn is_bare(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'_' | b'-' | b'.' | b':' | b'/' | b'+' | b'*' | b'#' | b'@'
                )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_traces_label_their_calls_and_read_back() {
        let mut a = Trace::new();
        a.push(Event::new(0, "route").with("number", "ext-1001"));
        a.push(Event::new(30_000, "end"));
        let mut b = Trace::new();
        b.push(Event::new(0, "route").with("number", "*81001"));
        b.push(Event::new(25_000, "end"));
        let merged = Trace::merged([&a.shifted(0, "alice"), &b.shifted(5_000, "bob")]);
        let text = merged.render_text();
        assert_eq!(
            text,
            "[alice] 00:00.000  route    number=ext-1001\n\
             [bob]   00:05.000  route    number=*81001\n\
             [alice] 00:30.000  end\n\
             [bob]   00:30.000  end\n"
        );
        assert_eq!(Trace::from_text(&text).unwrap(), merged);
        assert_eq!(Trace::from_json(&merged.to_json()).unwrap(), merged);
        assert_eq!(merged.events()[1].to_json()["call"], "bob");
    }

    #[test]
    fn a_full_trace_keeps_how_the_call_ended() {
        let mut trace = Trace::with_max_events(2);
        trace.push(Event::new(0, "a"));
        trace.push(Event::new(1, "b"));
        let pending = trace.begin(Event::new(2, "play"));
        trace.complete(pending, Map::new());
        trace.push(Event::new(3, "c"));
        trace.push(Event::new(4, "error"));
        trace.push(Event::new(5, "end"));
        let names: Vec<&str> = trace.events().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "limit", "error", "end"]);
        assert_eq!(trace.events()[2].fields["dropped"], 2);
        assert_eq!(trace.events()[2].t_ms, 2);
    }

    #[test]
    fn renders_lines() {
        let mut trace = Trace::new();
        let pending = trace.begin(Event::new(0, "play").with("media", "greeting"));
        trace.push(Event::new(5000, "dtmf").with("digit", "1"));
        let mut outcome = Map::new();
        outcome.insert("reason".into(), "terminator".into());
        outcome.insert("digit".into(), "1".into());
        trace.complete(pending, outcome);
        trace.push(
            Event::new(3_725_042, "log")
                .with("message", "two words")
                .with("n", 3),
        );
        trace.push(Event::new(3_725_042, "answer"));
        assert_eq!(
            trace.render_text(),
            "00:00.000  play     media=greeting reason=terminator digit=1\n\
             00:05.000  dtmf     digit=1\n\
             1:02:05.042  log      message=\"two words\" n=3\n\
             1:02:05.042  answer\n"
        );
        assert_eq!(
            trace.to_json()["events"][0],
            serde_json::json!({"t_ms": 0, "event": "play", "media": "greeting", "reason": "terminator", "digit": "1"})
        );
    }

    #[test]
    fn json_round_trips() {
        let mut trace = Trace::new();
        trace.push(Event::new(5, "node").with("path", "/flow").with("n", 1));
        trace.push(Event::new(9, "end"));
        assert_eq!(Trace::from_json(&trace.to_json()), Ok(trace));
        let bad = serde_json::json!({"events": [{"t_ms": 1, "event": "a"}, {"event": "b"}]});
        assert_eq!(
            Trace::from_json(&bad).unwrap_err().to_string(),
            "events[1].t_ms: expected milliseconds (a number)"
        );
        assert!(Trace::from_json(&serde_json::json!([])).is_err());
    }

    #[test]
    fn text_reads_back() {
        let mut trace = Trace::new();
        trace.push(
            Event::new(5, "node")
                .with("callflow_id", "main")
                .with("path", "/flow/children/_")
                .with("n", 1)
                .with("ok", true),
        );
        trace.push(
            Event::new(3_725_042, "log")
                .with("message", "two words = \"x\"")
                .with("data", serde_json::json!({"a": [1, " b"]}))
                .with("empty", ""),
        );
        trace.push(Event::new(3_725_042, "answer"));
        assert_eq!(Trace::from_text(&trace.render_text()), Ok(trace));
        // Lossy: a string that looks like a number reads back as one.
        let digits = Trace::from_text("00:00.000  dtmf     digit=1\n").unwrap();
        assert_eq!(digits.events()[0].fields["digit"], 1);
        let err = Trace::from_text("00:00.000  a\nnot a trace\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(Trace::from_text("00:00.000  a k\n").is_err());
        assert!(Trace::from_text("00:00.000  a k=\"open\n").is_err());
    }

    #[test]
    fn core_events_are_sorted() {
        assert!(CORE_EVENTS.windows(2).all(|w| w[0] < w[1]));
    }
}
