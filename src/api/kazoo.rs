//! Crossbar's rules for callflow documents: validation with `callflow
//! check`'s own code, mapped to Kazoo's error shape; the number
//! normalization, PATCH merge, listing summary and filters.

use serde_json::{Map, Value, json};

use crate::catalog::{AccountFlows, Catalog, Modules, check_metaflow_nodes, check_nodes};
use crate::ids::DocId;
use crate::model::{
    Callflow, Code, Diagnostic, Node, Object, callflow_from_object, is_private_key,
};

/// Errors in Kazoo's shape: `{"<dotted path>": {"<code>": {"message", ...}}}`.
pub(crate) type KazooErrors = Map<String, Value>;

/// A JSON Pointer as Kazoo's dotted key path (`/flow/children/_/module` →
/// `flow.children._.module`; a `.` inside a key is written `%2E`).
pub(crate) fn kazoo_path(pointer: &str) -> String {
    if pointer.is_empty() {
        return "document".to_owned();
    }
    pointer
        .split('/')
        .skip(1)
        .map(|segment| {
            segment
                .replace("~1", "/")
                .replace("~0", "~")
                .replace('.', "%2E")
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn add_error(errors: &mut KazooErrors, path: String, code: &str, detail: Value) {
    let entry = errors
        .entry(path)
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(codes) = entry {
        // A later error for the same path and code overwrites, as in Kazoo.
        codes.insert(code.to_owned(), detail);
    }
}

/// Puts `numbers` through the account's normalizer, as Crossbar does on
/// save (`knm_converters:normalize/2`); entries that are not strings are
/// left for validation to report.
pub(crate) fn normalize_numbers(doc: &mut Object, account: &AccountFlows) {
    if let Some(Value::Array(numbers)) = doc.get_mut("numbers") {
        for number in numbers.iter_mut() {
            if let Value::String(text) = number {
                *text = account.routes.normalizer().normalize(text);
            }
        }
    }
}

/// Validates a callflow document about to be saved as `id` in `account`:
/// the document's own rules (its `metaflow` layer included) and each node's
/// module and data (as `callflow check`, but an unknown module is an error
/// here, as in Crossbar), then
/// Kazoo's `unique` rule against the account's other callflows, and no
/// E.164 number another account's callflow claims. A URL field naming an
/// internal address (`internal_url`) is an error unless
/// `allow_private_urls`.
pub(crate) fn validate(
    doc: &Object,
    id: &DocId,
    account: &AccountFlows,
    catalog: &Catalog,
    modules: &dyn Modules,
    allow_private_urls: bool,
) -> Result<(), KazooErrors> {
    let mut diags: Vec<Diagnostic> = Vec::new();
    let callflow = callflow_from_object(id, doc, &mut diags);
    let exists = |target: &str| target == id.as_str() || account.callflows.contains_key(target);
    diags.extend(check_nodes(&callflow, &exists, modules));
    if let Some(metaflow) = &callflow.metaflow {
        // The callflow's own metaflow layer: node data against the metaflow
        // modules' schemas. Crossbar's metaflow schema names no modules, so
        // an unknown metaflow module stays a warning (left out here).
        diags.extend(
            check_metaflow_nodes(metaflow, "/metaflow", modules)
                .into_iter()
                .filter(|diag| diag.code != Code::UnknownModule),
        );
    }

    let mut errors = KazooErrors::new();
    add_diagnostics(&mut errors, &diags, doc, allow_private_urls);
    unique(&callflow, account, &mut errors);
    claimed_elsewhere(&callflow, account, catalog, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// `callflow check`'s diagnostics of `doc` as Kazoo's validation errors:
/// every error, and an `internal_url` warning unless private addresses are
/// allowed (warnings otherwise pass, as Crossbar's non-strict mode does).
pub(crate) fn add_diagnostics(
    errors: &mut KazooErrors,
    diags: &[Diagnostic],
    doc: &Object,
    allow_private_urls: bool,
) {
    for diag in diags {
        let mut detail = Map::new();
        let (code, message) = match diag.code {
            // Crossbar's wording, which tools may match on.
            Code::UnknownModule => (
                "error",
                format!(
                    "unable to find callflow schema for module {} (no script provides it)",
                    module_at(doc, &diag.pointer)
                ),
            ),
            Code::InternalUrl if !allow_private_urls => {
                // Kazoo's extension errors carry the value.
                if let Some(value) = value_at(doc, &diag.pointer) {
                    detail.insert("value".into(), value.clone());
                }
                (diag.code.as_str(), diag.message.clone())
            }
            _ if diag.is_error() => (diag.code.as_str(), diag.message.clone()),
            _ => continue,
        };
        detail.insert("message".into(), json!(message));
        add_error(
            errors,
            kazoo_path(&diag.pointer),
            code,
            Value::Object(detail),
        );
    }
}

/// The string at `pointer` in `doc` (a node's `module`).
fn module_at(doc: &Object, pointer: &str) -> String {
    value_at(doc, pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The value at a JSON Pointer into `doc` (objects only).
fn value_at<'a>(doc: &'a Object, pointer: &str) -> Option<&'a Value> {
    let mut segments = pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"));
    let first = segments.next()?;
    segments.try_fold(doc.get(&first)?, |value, key| value.as_object()?.get(&key))
}

/// Kazoo's `unique` rule: no number or pattern of another callflow (looked
/// up in the account's route table, so a write costs the same whatever the
/// account's size), and the account's limits on numbers and patterns.
fn unique(callflow: &Callflow, account: &AccountFlows, errors: &mut KazooErrors) {
    let normalizer = account.routes.normalizer();
    let holder = |id: &DocId| {
        let name = account
            .callflows
            .get(id)
            .map_or(id.as_str(), |c| c.display_name());
        format!("{id} {name}")
    };
    for number in &callflow.numbers {
        let key = normalizer.normalize(number);
        if let Some(other) = account
            .routes
            .number_callflow(&key)
            .filter(|other| **other != callflow.id)
        {
            add_error(
                errors,
                "numbers".into(),
                "unique",
                json!({
                    "message": format!("Number {number} exists in callflow {}", holder(other)),
                    "cause": number,
                }),
            );
        }
    }
    for (pattern, other) in account.pattern_holders(&callflow.patterns, &callflow.id) {
        add_error(
            errors,
            "patterns".into(),
            "unique",
            json!({
                "message": format!("Pattern {pattern} exists in callflow {}", holder(other)),
                "cause": pattern,
            }),
        );
    }
    let limits = crate::limits::DocumentLimits::DEFAULT;
    let old = account.callflows.get(&callflow.id);
    let (numbers, patterns) = account.listed_totals();
    for (key, total, mine, count, max, name) in [
        (
            "numbers",
            numbers,
            old.map_or(0, |c| c.numbers.len()),
            callflow.numbers.len(),
            limits.max_numbers_per_account,
            "max_numbers_per_account",
        ),
        (
            "patterns",
            patterns,
            old.map_or(0, |c| c.patterns.len()),
            callflow.patterns.len(),
            limits.max_patterns_per_account,
            "max_patterns_per_account",
        ),
    ] {
        let others = total.saturating_sub(mine);
        if others + count > max {
            add_error(
                errors,
                key.into(),
                Code::Limit.as_str(),
                json!({
                    "message": crate::catalog::account_limit_message(count, key, others, max, name, "the document is refused"),
                    "target": max,
                }),
            );
        }
    }
}

/// Whether the document's `numbers` hold an E.164 number (`+...`).
pub(crate) fn claims_e164(doc: &Object) -> bool {
    doc.get("numbers")
        .and_then(Value::as_array)
        .is_some_and(|numbers| {
            numbers
                .iter()
                .any(|n| n.as_str().is_some_and(|n| n.starts_with('+')))
        })
}

/// E.164 numbers a callflow of another account claims (`callflow check`'s
/// `number_in_other_account`): a call from a trunk could reach either, so
/// the write is refused (the account that has it keeps it).
fn claimed_elsewhere(
    callflow: &Callflow,
    account: &AccountFlows,
    catalog: &Catalog,
    errors: &mut KazooErrors,
) {
    let normalizer = account.routes.normalizer();
    for number in &callflow.numbers {
        let key = normalizer.normalize(number);
        if catalog
            .number_elsewhere(&key, account.account.id.as_str())
            .is_some()
        {
            add_error(
                errors,
                "numbers".into(),
                Code::NumberInOtherAccount.as_str(),
                json!({
                    "message": crate::catalog::claimed_by_another_account(&key),
                    "cause": number,
                }),
            );
        }
    }
}

/// The public part of a document: without `_*` and `pvt_*` keys.
pub(crate) fn public(doc: &Object) -> Object {
    doc.iter()
        .filter(|(key, _)| !is_private_key(key))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// The private part of a stored document.
pub(crate) fn private(doc: &Object) -> Object {
    doc.iter()
        .filter(|(key, _)| is_private_key(key))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// Kazoo's PATCH merge: objects merge recursively and request values win,
/// arrays and scalars replace, `null` deletes the key, and an empty object
/// replaces an object wholesale.
pub(crate) fn merge_patch(stored: &mut Object, patch: &Object) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                stored.remove(key);
            }
            Value::Object(inner) if !inner.is_empty() => {
                if let Some(Value::Object(target)) = stored.get_mut(key) {
                    merge_patch(target, inner);
                } else {
                    let mut fresh = Object::new();
                    merge_patch(&mut fresh, inner);
                    stored.insert(key.clone(), Value::Object(fresh));
                }
            }
            other => {
                stored.insert(key.clone(), other.clone());
            }
        }
    }
}

/// Distinct module names in tree order (depth first), skipping nodes with
/// `skip_module` (their children still count), as Kazoo's listing view.
pub(crate) fn modules_of(callflow: &Callflow) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    if let Some(flow) = &callflow.flow {
        flow.walk("", &mut |_, node| {
            if let Node::Module(node) = node
                && !node.skips()
                && !names.contains(&node.module)
            {
                names.push(node.module.clone());
            }
        });
    }
    names
}

/// A listing item (§5.4): `{id, name, type, numbers, patterns, featurecode
/// (false when absent), owner_id, group_id, modules, flags}`; keys the
/// document lacks are left out.
pub(crate) fn summary(callflow: &Callflow) -> Value {
    let doc = match callflow.to_value() {
        Value::Object(doc) => doc,
        _ => Object::new(),
    };
    let mut out = Map::new();
    out.insert("id".into(), json!(callflow.id.as_str()));
    for key in ["name", "type", "numbers", "patterns"] {
        if let Some(value) = doc.get(key) {
            out.insert(key.into(), value.clone());
        }
    }
    out.insert(
        "featurecode".into(),
        doc.get("featurecode")
            .cloned()
            .unwrap_or(Value::Bool(false)),
    );
    for key in ["owner_id", "group_id"] {
        if let Some(value) = doc.get(key) {
            out.insert(key.into(), value.clone());
        }
    }
    out.insert("modules".into(), json!(modules_of(callflow)));
    out.insert(
        "flags".into(),
        doc.get("flags").cloned().unwrap_or_else(|| json!([])),
    );
    Value::Object(out)
}

/// Kazoo's `metadata` of a fetched callflow (§5.5): for every node `data`
/// value under a key `id` or containing `_id`, and every child key of two or
/// more characters other than `_`, that names a document of the account:
/// `{name, numbers, pvt_type}` (a user's name is "first last").
pub(crate) fn metadata(doc: &Object, account: &AccountFlows) -> Map<String, Value> {
    let mut ids = Vec::new();
    if let Some(flow) = doc.get("flow") {
        referenced_ids(flow, &mut ids);
    }
    let mut out = Map::new();
    for id in ids {
        if out.contains_key(&id) {
            continue;
        }
        if let Some(entry) = describe(account, &id) {
            out.insert(id, entry);
        }
    }
    out
}

fn referenced_ids(node: &Value, ids: &mut Vec<String>) {
    let Some(node) = node.as_object() else { return };
    if let Some(Value::Object(data)) = node.get("data") {
        for (key, value) in data {
            if key == "id" || key.contains("_id") {
                match value {
                    Value::String(id) => ids.push(id.clone()),
                    Value::Array(items) => {
                        ids.extend(items.iter().filter_map(Value::as_str).map(str::to_owned));
                    }
                    _ => {}
                }
            }
        }
    }
    if let Some(Value::Object(children)) = node.get("children") {
        for (key, child) in children {
            if key.chars().count() >= 2 && key != "_" {
                ids.push(key.clone());
            }
            referenced_ids(child, ids);
        }
    }
}

/// `{name, numbers, pvt_type}` of the document `id`, if the account has one.
fn describe(account: &AccountFlows, id: &str) -> Option<Value> {
    if let Some(callflow) = account.callflows.get(id) {
        let mut entry = Map::new();
        if let Some(name) = &callflow.name {
            entry.insert("name".into(), json!(name));
        }
        entry.insert("numbers".into(), json!(callflow.numbers));
        entry.insert("pvt_type".into(), json!("callflow"));
        return Some(Value::Object(entry));
    }
    let (doc_type, doc) = account
        .documents
        .iter()
        .find_map(|(doc_type, docs)| docs.get(id).map(|doc| (doc_type, doc)))?;
    let body = &doc.body;
    let text = |key: &str| body.get(key).and_then(Value::as_str);
    let name = match (text("first_name"), text("last_name")) {
        (Some(first), Some(last)) => Some(format!("{first} {last}")),
        _ => text("name").map(str::to_owned),
    };
    let kind = match doc_type.as_str() {
        "vmboxes" => "vmbox".to_owned(),
        "media" => "media".to_owned(),
        other => other.strip_suffix('s').unwrap_or(other).to_owned(),
    };
    let mut entry = Map::new();
    if let Some(name) = name {
        entry.insert("name".into(), json!(name));
    }
    if let Some(numbers) = body.get("numbers") {
        entry.insert("numbers".into(), numbers.clone());
    }
    entry.insert("pvt_type".into(), json!(kind));
    Some(Value::Object(entry))
}

/// Seconds from year 0 to the Unix epoch: Kazoo's timestamps
/// (`pvt_created`, `pvt_modified`, `created_from`, ...) are Gregorian
/// seconds, `calendar:datetime_to_gregorian_seconds/1`.
pub(crate) const UNIX_EPOCH_GREGORIAN: i64 = 62_167_219_200;

/// Which of a document's timestamps a date-range filter reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stamp {
    /// `pvt_created`.
    Created,
    /// `pvt_modified`.
    Modified,
}

impl Stamp {
    fn key(self) -> &'static str {
        match self {
            Stamp::Created => "pvt_created",
            Stamp::Modified => "pvt_modified",
        }
    }
}

/// One query-string filter, as Crossbar's `crossbar_filter` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Filter {
    /// `filter_<path>=<value>`: the value at `path` equals `value` (an array
    /// matches when it contains it).
    Equals(Vec<String>, String),
    /// `filter_not_<path>=<value>`: not [`Filter::Equals`]; a document
    /// without the path passes.
    NotEquals(Vec<String>, String),
    /// `has_key=<path>`.
    HasKey(Vec<String>),
    /// `key_missing=<path>`.
    KeyMissing(Vec<String>),
    /// `has_value=<path>`: present and not empty.
    HasValue(Vec<String>),
    /// `created_from`, `modified_from`: the timestamp is at or after these
    /// Gregorian seconds. A document without it passes (Kazoo compares
    /// `undefined`, an atom, which Erlang orders after every number).
    From(Stamp, i64),
    /// `created_to`, `modified_to`: the timestamp is at or before these
    /// Gregorian seconds. A document without it does not pass.
    To(Stamp, i64),
}

fn path_of(text: &str) -> Vec<String> {
    text.split('.').map(str::to_owned).collect()
}

/// A document's timestamp as Gregorian seconds: an integer (or a string
/// holding one, as `kz_json:get_integer_value` reads it). Values
/// before 1970 in Gregorian seconds were written by callflow before it
/// wrote Kazoo's unit, in Unix seconds: they are read as such.
fn stamp_of(private: &Object, stamp: Stamp) -> Option<i64> {
    let seconds = match private.get(stamp.key())? {
        Value::Number(n) => n.as_i64()?,
        Value::String(text) => text.trim().parse().ok()?,
        _ => return None,
    };
    Some(if (0..UNIX_EPOCH_GREGORIAN).contains(&seconds) {
        seconds + UNIX_EPOCH_GREGORIAN
    } else {
        seconds
    })
}

impl Filter {
    /// The filter a query parameter asks for, if it is one; `Err` names the
    /// parameter whose value is not usable.
    pub(crate) fn parse(key: &str, value: &str) -> Result<Option<Self>, String> {
        if let Some(path) = key.strip_prefix("filter_not_") {
            return Ok(Some(Filter::NotEquals(path_of(path), value.to_owned())));
        }
        if let Some(path) = key.strip_prefix("filter_") {
            return Ok(Some(Filter::Equals(path_of(path), value.to_owned())));
        }
        let seconds = || {
            value.trim().parse::<i64>().map_err(|_| {
                format!("{key} must be an integer number of Gregorian seconds, not {value:?}")
            })
        };
        Ok(match key {
            "has_key" => Some(Filter::HasKey(path_of(value))),
            "key_missing" => Some(Filter::KeyMissing(path_of(value))),
            "has_value" => Some(Filter::HasValue(path_of(value))),
            "created_from" => Some(Filter::From(Stamp::Created, seconds()?)),
            "created_to" => Some(Filter::To(Stamp::Created, seconds()?)),
            "modified_from" => Some(Filter::From(Stamp::Modified, seconds()?)),
            "modified_to" => Some(Filter::To(Stamp::Modified, seconds()?)),
            _ => None,
        })
    }

    /// Whether a document passes: `doc` is its public part with `id`
    /// (what path filters see), `private` its `pvt_*` keys (what date
    /// ranges read).
    pub(crate) fn matches(&self, doc: &Value, private: &Object) -> bool {
        let at = |path: &[String]| {
            path.iter()
                .try_fold(doc, |value, key| value.as_object()?.get(key))
        };
        let text = |value: &Value| match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let equals = |path: &[String], wanted: &str| match at(path) {
            Some(Value::Array(items)) => items.iter().any(|v| text(v) == wanted),
            Some(value) => text(value) == wanted,
            None => false,
        };
        match self {
            Filter::Equals(path, wanted) => equals(path, wanted),
            Filter::NotEquals(path, wanted) => !equals(path, wanted),
            Filter::HasKey(path) => at(path).is_some(),
            Filter::KeyMissing(path) => at(path).is_none(),
            Filter::HasValue(path) => match at(path) {
                None | Some(Value::Null) => false,
                Some(Value::String(s)) => !s.is_empty(),
                Some(Value::Array(a)) => !a.is_empty(),
                Some(Value::Object(o)) => !o.is_empty(),
                Some(_) => true,
            },
            Filter::From(stamp, bound) => stamp_of(private, *stamp).is_none_or(|t| t >= *bound),
            Filter::To(stamp, bound) => stamp_of(private, *stamp).is_some_and(|t| t <= *bound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_dotted() {
        assert_eq!(kazoo_path("/numbers"), "numbers");
        assert_eq!(
            kazoo_path("/flow/children/_/data/id"),
            "flow.children._.data.id"
        );
        assert_eq!(kazoo_path("/flow/children/a.b~1c"), "flow.children.a%2Eb/c");
        assert_eq!(kazoo_path(""), "document");
    }

    #[test]
    fn merge_patch_follows_kazoo() {
        let mut stored: Object = serde_json::from_value(json!({
            "name": "a", "numbers": ["1", "2"], "flow": {"module": "play", "data": {"id": "x", "loop": 2}},
            "ringback": {"early": "r"}
        }))
        .unwrap();
        let patch: Object = serde_json::from_value(json!({
            "numbers": ["3"], "name": null, "flow": {"data": {"id": "y"}}, "ringback": {}, "new": {"k": 1}
        }))
        .unwrap();
        merge_patch(&mut stored, &patch);
        assert_eq!(
            Value::Object(stored),
            json!({"numbers": ["3"], "flow": {"module": "play", "data": {"id": "y", "loop": 2}},
                   "ringback": {}, "new": {"k": 1}})
        );
    }

    #[test]
    fn filters() {
        let doc = json!({"id": "a", "name": "Main", "numbers": ["1000"], "featurecode": {"name": "x"}, "flags": []});
        let none = Object::new();
        let f = |k: &str, v: &str| Filter::parse(k, v).unwrap().unwrap().matches(&doc, &none);
        assert!(f("filter_name", "Main"));
        assert!(!f("filter_name", "main"));
        assert!(f("filter_numbers", "1000"));
        assert!(f("filter_featurecode.name", "x"));
        assert!(f("has_key", "featurecode"));
        assert!(!f("key_missing", "featurecode"));
        assert!(f("key_missing", "owner_id"));
        assert!(!f("has_value", "flags"));
        assert!(f("filter_not_name", "main"));
        assert!(!f("filter_not_name", "Main"));
        assert!(!f("filter_not_numbers", "1000"));
        assert!(!f("filter_not_featurecode.name", "x"));
        assert!(f("filter_not_featurecode.number", "x"), "absent: differs");
        assert_eq!(Filter::parse("page_size", "1"), Ok(None));
    }

    #[test]
    fn date_ranges_read_gregorian_seconds() {
        let doc = json!({"id": "a"});
        let stamped: Object = serde_json::from_value(
            json!({"pvt_created": 63_900_000_000_i64, "pvt_modified": "63900000100"}),
        )
        .unwrap();
        // Written by callflow before it wrote Gregorian seconds.
        let unix: Object = serde_json::from_value(json!({"pvt_created": 1_732_780_800})).unwrap();
        let none = Object::new();
        let f = |k: &str, v: &str, private: &Object| {
            Filter::parse(k, v).unwrap().unwrap().matches(&doc, private)
        };
        assert!(f("created_from", "63900000000", &stamped));
        assert!(!f("created_from", "63900000001", &stamped));
        assert!(f("created_to", "63900000000", &stamped));
        assert!(!f("created_to", "63899999999", &stamped));
        assert!(f("modified_from", "63900000100", &stamped));
        assert!(!f("modified_to", "63900000099", &stamped));
        assert!(f(
            "created_from",
            &(1_732_780_800 + UNIX_EPOCH_GREGORIAN).to_string(),
            &unix
        ));
        assert!(f(
            "created_to",
            &(1_732_780_800 + UNIX_EPOCH_GREGORIAN).to_string(),
            &unix
        ));
        // Without the field: every `_from` passes, every `_to` fails.
        assert!(f("created_from", "0", &none) && f("modified_from", "99999999999", &none));
        assert!(!f("created_to", "99999999999", &none) && !f("modified_to", "0", &none));
        let bad = Filter::parse("modified_to", "yesterday").unwrap_err();
        assert!(bad.starts_with("modified_to "), "{bad}");
    }
}
