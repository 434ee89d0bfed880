//! Testing users' flows (`callflow test`): expectations checked against a
//! trace, line diffs between an expected and an actual trace, and flow
//! coverage. Pure functions over traces and callflows: the binary finds the
//! files, runs the scenarios and prints.
//!
//! A scenario's expectation is its stored trace (`<name>.trace`, the exact
//! [`crate::trace::Trace::render_text`]), compared line by line with
//! [`diff`], and/or its inline `"expect"` object
//! ([`crate::sim::scenario::Expect`]), checked with [`check`].
//! [`from_trace`] makes such a scenario, expectation included, from the
//! trace of a real call.

pub mod coverage;
pub mod from_trace;
pub mod lines;

use std::fmt::Write;

use serde_json::Value;
use similar::{ChangeTag, TextDiff};

use crate::sim::scenario::{Expect, Object};
use crate::trace::{Event, Trace, format_time, render_event};

/// Lines of context around each change in a diff.
pub const DIFF_CONTEXT: usize = 3;
/// At most this many candidate events are shown when an expected event is
/// missing.
const CANDIDATES: usize = 5;

/// Checks `trace` against the inline expectations; returns one message per
/// unmet expectation (empty when all hold).
pub fn check(trace: &Trace, expect: &Expect) -> Vec<String> {
    let mut failures = Vec::new();
    let events = trace.events();
    if let Some(modules) = &expect.modules {
        let visited: Vec<&str> = events
            .iter()
            .filter(|e| e.name == "node")
            .filter_map(|e| e.fields.get("module").and_then(Value::as_str))
            .collect();
        if visited != *modules {
            failures.push(format!(
                "modules: expected [{}], the call visited [{}]",
                modules.join(", "),
                visited.join(", ")
            ));
        }
    }
    for (key, expected, event, field) in [
        ("hangup_cause", &expect.hangup_cause, "hangup", "cause"),
        ("end_reason", &expect.end_reason, "end", "reason"),
    ] {
        let Some(expected) = expected else {
            continue;
        };
        let actual = field_of(trace, event, field);
        if actual.as_deref() != Some(expected.as_str()) {
            let found = actual.map_or_else(
                || format!("the call has no {event} event"),
                |a| format!("got {a}"),
            );
            failures.push(format!("{key}: expected {expected}, {found}"));
        }
    }
    // Each expected event is looked for after the last one found.
    let mut from = 0;
    let mut last_found: Option<(usize, u64)> = None;
    for (index, pattern) in expect.events.iter().enumerate() {
        if let Some(offset) = events[from..].iter().position(|e| matches(e, pattern)) {
            from += offset + 1;
            last_found = Some((index, events[from - 1].t_ms));
            continue;
        }
        let mut message = format!("events[{index}]: no event matches {}", compact(pattern));
        let name = pattern.get("event").and_then(Value::as_str).unwrap_or("");
        let place = match last_found {
            Some((found, t_ms)) => {
                let _ = write!(message, " after events[{found}] (at {})", format_time(t_ms));
                "after it"
            }
            None => "in the trace",
        };
        let candidates: Vec<&Event> = events[from..].iter().filter(|e| e.name == name).collect();
        if candidates.is_empty() {
            let _ = write!(message, "; no `{name}` event {place}");
        } else {
            let _ = write!(message, "; the `{name}` events {place}:");
            for event in candidates.iter().take(CANDIDATES) {
                message.push_str("\n  ");
                render_event(&mut message, event);
            }
            if candidates.len() > CANDIDATES {
                let _ = write!(message, "\n  ... {} more", candidates.len() - CANDIDATES);
            }
        }
        failures.push(message);
    }
    for (index, pattern) in expect.absent.iter().enumerate() {
        if let Some(found) = events.iter().find(|e| matches(e, pattern)) {
            let mut message = format!("absent[{index}]: {} is in the trace:\n  ", compact(pattern));
            render_event(&mut message, found);
            failures.push(message);
        }
    }
    failures
}

/// Whether `event` has every field of `pattern` (`event` is its name, `t_ms`
/// its time, `call` its call in a multi-call trace) with an equal value.
pub fn matches(event: &Event, pattern: &Object) -> bool {
    pattern.iter().all(|(key, expected)| match key.as_str() {
        "event" => expected.as_str() == Some(event.name.as_str()),
        "t_ms" => expected.as_u64() == Some(event.t_ms),
        "call" => expected.as_str().is_some() && expected.as_str() == event.call.as_deref(),
        _ => event.fields.get(key) == Some(expected),
    })
}

/// The string value of `field` in the last `name` event.
fn field_of(trace: &Trace, name: &str, field: &str) -> Option<String> {
    let value = trace.last(name)?.fields.get(field)?;
    Some(
        value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned),
    )
}

fn compact(pattern: &Object) -> String {
    Value::Object(pattern.clone()).to_string()
}

/// How a line of a diff relates the expected text to the actual one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffKind {
    /// A hunk header: `@@ -3,4 +3,5 @@`.
    Hunk,
    /// In both.
    Same,
    /// Only in the expected text.
    Removed,
    /// Only in the actual text.
    Added,
}

/// One line of a diff, without its newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffLine {
    pub kind: DiffKind,
    pub text: String,
}

/// The unified diff (hunks with [`DIFF_CONTEXT`] lines of context) from
/// `expected` to `actual`, or `None` when they are the same. Line endings
/// are compared without `\r`, so a trace checked out with CRLF still matches.
pub fn diff(expected: &str, actual: &str) -> Option<Vec<DiffLine>> {
    let expected = expected.replace("\r\n", "\n");
    let actual = actual.replace("\r\n", "\n");
    if expected == actual {
        return None;
    }
    let diff = TextDiff::from_lines(&expected, &actual);
    let mut out = Vec::new();
    for group in diff.grouped_ops(DIFF_CONTEXT) {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            continue;
        };
        let old = first.old_range().start..last.old_range().end;
        let new = first.new_range().start..last.new_range().end;
        out.push(DiffLine {
            kind: DiffKind::Hunk,
            text: format!("@@ -{} +{} @@", hunk_range(&old), hunk_range(&new)),
        });
        for op in &group {
            for change in diff.iter_changes(op) {
                let kind = match change.tag() {
                    ChangeTag::Equal => DiffKind::Same,
                    ChangeTag::Delete => DiffKind::Removed,
                    ChangeTag::Insert => DiffKind::Added,
                };
                let mut text = change.value().to_owned();
                let missing_newline = !text.ends_with('\n');
                if !missing_newline {
                    text.pop();
                }
                out.push(DiffLine { kind, text });
                if missing_newline {
                    out.push(DiffLine {
                        kind: DiffKind::Hunk,
                        text: "\\ No newline at end of file".to_owned(),
                    });
                }
            }
        }
    }
    Some(out)
}

/// `start,len` with 1-based lines, as unified diffs write it.
fn hunk_range(range: &std::ops::Range<usize>) -> String {
    let len = range.end - range.start;
    match len {
        0 => format!("{},0", range.start),
        1 => format!("{}", range.start + 1),
        _ => format!("{},{len}", range.start + 1),
    }
}

/// A diff as plain text: `-`, `+` and ` ` prefixes.
pub fn render_diff(lines: &[DiffLine]) -> String {
    let mut out = String::new();
    for line in lines {
        let prefix = match line.kind {
            DiffKind::Hunk => "",
            DiffKind::Same => " ",
            DiffKind::Removed => "-",
            DiffKind::Added => "+",
        };
        out.push_str(prefix);
        out.push_str(&line.text);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn trace() -> Trace {
        let mut trace = Trace::new();
        trace.push(
            Event::new(0, "node")
                .with("callflow_id", "main")
                .with("path", "/flow")
                .with("module", "greet"),
        );
        trace.push(Event::new(0, "tts").with("text", "Welcome"));
        trace.push(
            Event::new(0, "node")
                .with("callflow_id", "main")
                .with("path", "/flow/children/_")
                .with("module", "device"),
        );
        trace.push(
            Event::new(4000, "bridge")
                .with("status", "answered")
                .with("answered_by", "dev_front"),
        );
        trace.push(
            Event::new(34000, "hangup")
                .with("cause", "NORMAL_CLEARING")
                .with("by", "callee"),
        );
        trace.push(Event::new(34000, "end").with("reason", "callee_hangup"));
        trace
    }

    fn expect(value: serde_json::Value) -> Expect {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn met_expectations_pass() {
        let e = expect(json!({
            "modules": ["greet", "device"],
            "hangup_cause": "NORMAL_CLEARING",
            "end_reason": "callee_hangup",
            "events": [{"event": "tts"}, {"event": "bridge", "answered_by": "dev_front", "t_ms": 4000}],
            "absent": [{"event": "error"}, {"event": "bridge", "status": "busy"}],
        }));
        assert_eq!(check(&trace(), &e), Vec::<String>::new());
    }

    #[test]
    fn unmet_expectations_say_what_differs() {
        let e = expect(json!({
            "modules": ["greet"],
            "hangup_cause": "USER_BUSY",
            "end_reason": "flow_end",
            "events": [{"event": "bridge"}, {"event": "tts"}, {"event": "play"}],
            "absent": [{"event": "bridge", "status": "answered"}],
        }));
        assert_eq!(
            check(&trace(), &e),
            vec![
                "modules: expected [greet], the call visited [greet, device]",
                "hangup_cause: expected USER_BUSY, got NORMAL_CLEARING",
                "end_reason: expected flow_end, got callee_hangup",
                "events[1]: no event matches {\"event\":\"tts\"} after events[0] (at 00:04.000); no `tts` event after it",
                "events[2]: no event matches {\"event\":\"play\"} after events[0] (at 00:04.000); no `play` event after it",
                "absent[0]: {\"event\":\"bridge\",\"status\":\"answered\"} is in the trace:\n  00:04.000  bridge   status=answered answered_by=dev_front",
            ]
        );
        let e = expect(json!({"events": [{"event": "bridge", "status": "busy"}]}));
        assert_eq!(
            check(&trace(), &e),
            vec![
                "events[0]: no event matches {\"event\":\"bridge\",\"status\":\"busy\"}; the `bridge` events in the trace:\n  00:04.000  bridge   status=answered answered_by=dev_front"
            ]
        );
    }

    #[test]
    fn diffs_show_changed_lines_with_context() {
        assert_eq!(diff("a\nb\n", "a\r\nb\r\n"), None);
        let expected = "1\n2\n3\n4\n5\n6\n7\n8\n";
        let actual = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n";
        let lines = diff(expected, actual).unwrap();
        assert_eq!(
            render_diff(&lines),
            "@@ -2,7 +2,8 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n+9\n"
        );
        assert_eq!(
            render_diff(&diff("a\n", "a\nb").unwrap()),
            "@@ -1 +1,2 @@\n a\n+b\n\\ No newline at end of file\n"
        );
        assert_eq!(
            render_diff(&diff("a\n", "").unwrap()),
            "@@ -1 +0,0 @@\n-a\n"
        );
    }
}
