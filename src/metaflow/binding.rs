//! A metaflow binding: the merged configuration of one endpoint, with
//! Kazoo's defaults, and the evaluation of collected digits (numbers first,
//! then patterns in document order).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::{DEFAULT_BINDING_DIGIT, DEFAULT_DIGIT_TIMEOUT_MS, Leg};
use crate::model::{Node, Object, parse_flow};
use crate::pattern::{self, Pattern};

/// Which legs a binding listens to, relative to its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenOn {
    /// The endpoint's own leg (the default).
    SelfLeg,
    /// The other leg.
    Peer,
    Both,
}

impl ListenOn {
    pub fn as_str(self) -> &'static str {
        match self {
            ListenOn::SelfLeg => "self",
            ListenOn::Peer => "peer",
            ListenOn::Both => "both",
        }
    }
}

/// One endpoint's metaflows, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Binding {
    /// Whose binding it is, for traces: the device id, or `callflow` for a
    /// call without a calling device whose callflow has a `metaflow` layer.
    pub owner: String,
    /// The leg of the endpoint the binding was built for.
    pub side: Leg,
    pub binding_digit: char,
    pub digit_timeout_ms: u64,
    pub listen_on: ListenOn,
    numbers: BTreeMap<String, Arc<Node>>,
    /// In document order; a pattern that does not compile is kept as `None`
    /// and never matches (`callflow check` warns about it).
    patterns: Vec<(String, Option<Pattern>, Arc<Node>)>,
}

/// How collected digits matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    Number,
    Pattern,
}

impl MatchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchKind::Number => "number",
            MatchKind::Pattern => "pattern",
        }
    }
}

/// The metaflow collected digits select.
#[derive(Debug, Clone)]
pub struct Match {
    pub kind: MatchKind,
    /// The `numbers` key or the `patterns` regex.
    pub key: String,
    /// The pattern's capture groups, the whole match left out (`""` for a
    /// group that did not take part); empty for numbers.
    pub captures: Vec<String>,
    /// The top metaflow node.
    pub node: Arc<Node>,
}

/// Merges `layer` into `base` the way Kazoo's `kz_json:merge_recursive`
/// does: objects merge key by key, anything else in `layer` replaces what
/// `base` has.
pub fn merge(base: &mut Object, layer: &Object) {
    for (key, value) in layer {
        match (base.get_mut(key), value) {
            (Some(Value::Object(inner)), Value::Object(more)) => merge(inner, more),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

impl Binding {
    /// The binding of an endpoint on leg `side` whose metaflows are `layers`
    /// merged in order (later wins). `account` is the account's own
    /// `metaflows`, read for Kazoo's account-level fallback key
    /// `digit_timeout_ms`. `None` when the merged object is empty: Kazoo
    /// starts no binding then.
    pub fn build(
        layers: &[&Object],
        account: Option<&Object>,
        owner: &str,
        side: Leg,
    ) -> Option<Self> {
        let mut merged = Object::new();
        for layer in layers {
            merge(&mut merged, layer);
        }
        if merged.is_empty() {
            return None;
        }
        let binding_digit = match merged.get("binding_digit") {
            Some(Value::String(text)) => single_dtmf(text),
            _ => None,
        }
        .unwrap_or(DEFAULT_BINDING_DIGIT);
        let digit_timeout_ms = merged
            .get("digit_timeout")
            .and_then(Value::as_u64)
            .or_else(|| account?.get("digit_timeout_ms")?.as_u64())
            .unwrap_or(DEFAULT_DIGIT_TIMEOUT_MS);
        let listen_on = match merged.get("listen_on").and_then(Value::as_str) {
            Some("peer") => ListenOn::Peer,
            Some("both") => ListenOn::Both,
            // "self", absent, or anything else: the endpoint's own leg.
            _ => ListenOn::SelfLeg,
        };
        let nodes = |key: &str| -> Vec<(String, Arc<Node>)> {
            match merged.get(key) {
                Some(Value::Object(entries)) => entries
                    .iter()
                    .map(|(k, v)| (k.clone(), Arc::new(parse_flow(v).0)))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let numbers = nodes("numbers").into_iter().collect();
        let patterns = nodes("patterns")
            .into_iter()
            .map(|(source, node)| {
                let compiled = pattern::compile(&source).ok();
                (source, compiled, node)
            })
            .collect();
        Some(Self {
            owner: owner.to_owned(),
            side,
            binding_digit,
            digit_timeout_ms,
            listen_on,
            numbers,
            patterns,
        })
    }

    /// Whether the binding listens to `leg`.
    pub fn listens_to(&self, leg: Leg) -> bool {
        match self.listen_on {
            ListenOn::Both => true,
            ListenOn::SelfLeg => leg == self.side,
            ListenOn::Peer => leg != self.side,
        }
    }

    /// The metaflow `collected` selects: an exact `numbers` key first, else
    /// the first of `patterns` (in document order) that matches anywhere
    /// (unless it says `^`/`$`).
    pub fn evaluate(&self, collected: &str) -> Option<Match> {
        if let Some(node) = self.numbers.get(collected) {
            return Some(Match {
                kind: MatchKind::Number,
                key: collected.to_owned(),
                captures: Vec::new(),
                node: Arc::clone(node),
            });
        }
        self.patterns.iter().find_map(|(source, compiled, node)| {
            let caps = compiled.as_ref()?.regex().captures(collected.as_bytes())?;
            let captures = caps
                .iter()
                .skip(1)
                .map(|group| {
                    group.map_or_else(String::new, |m| {
                        String::from_utf8_lossy(m.as_bytes()).into_owned()
                    })
                })
                .collect();
            Some(Match {
                kind: MatchKind::Pattern,
                key: source.clone(),
                captures,
                node: Arc::clone(node),
            })
        })
    }
}

/// A single DTMF digit (`0`-`9`, `*`, `#`).
fn single_dtmf(text: &str) -> Option<char> {
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_digit() || c == '*' || c == '#' => Some(c),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> Object {
        match value {
            Value::Object(obj) => obj,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn merge_is_recursive_and_later_wins() {
        let mut base = object(json!({
            "binding_digit": "*",
            "numbers": {"1": {"module": "hold"}, "2": {"module": "park", "data": {"slot": "1"}}},
            "listen_on": "self"
        }));
        merge(
            &mut base,
            &object(json!({
                "binding_digit": "#",
                "numbers": {"2": {"data": {"slot": "2"}}, "3": {"module": "hangup"}},
            })),
        );
        assert_eq!(
            Value::Object(base),
            json!({
                "binding_digit": "#",
                "numbers": {
                    "1": {"module": "hold"},
                    "2": {"module": "park", "data": {"slot": "2"}},
                    "3": {"module": "hangup"}
                },
                "listen_on": "self"
            })
        );
    }

    #[test]
    fn defaults_and_the_account_fallback_key() {
        let account = object(json!({"digit_timeout_ms": 1500, "numbers": {}}));
        let binding = Binding::build(&[&account], Some(&account), "dev", Leg::A).unwrap();
        assert_eq!(binding.binding_digit, '*');
        assert_eq!(binding.digit_timeout_ms, 1500);
        assert_eq!(binding.listen_on, ListenOn::SelfLeg);
        let device =
            object(json!({"digit_timeout": 300, "binding_digit": "**", "listen_on": "peer"}));
        let binding = Binding::build(&[&account, &device], Some(&account), "dev", Leg::B).unwrap();
        assert_eq!(binding.digit_timeout_ms, 300);
        assert_eq!(binding.binding_digit, '*', "an invalid digit falls back");
        assert!(binding.listens_to(Leg::A) && !binding.listens_to(Leg::B));
        assert!(Binding::build(&[&Object::new()], None, "dev", Leg::A).is_none());
    }

    #[test]
    fn numbers_first_then_patterns_in_document_order() {
        let layer = object(json!({
            "numbers": {"12": {"module": "hold"}},
            "patterns": {
                "^1(\\d)$": {"module": "park"},
                "^1(2)?(\\d)$": {"module": "transfer"},
                "(x)|^9": {"module": "play"}
            }
        }));
        let binding = Binding::build(&[&layer], None, "dev", Leg::A).unwrap();
        let m = binding.evaluate("12").unwrap();
        assert_eq!((m.kind, m.key.as_str()), (MatchKind::Number, "12"));
        let m = binding.evaluate("13").unwrap();
        assert_eq!(
            (m.key.as_str(), m.captures.clone()),
            ("^1(\\d)$", vec!["3".to_owned()])
        );
        let m = binding.evaluate("123").unwrap();
        assert_eq!(m.captures, vec!["2".to_owned(), "3".to_owned()]);
        let m = binding.evaluate("95").unwrap();
        assert_eq!(
            m.captures,
            vec![String::new()],
            "a group that did not take part"
        );
        assert!(binding.evaluate("4").is_none());
    }
}
