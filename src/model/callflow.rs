//! Callflow documents: raw JSON to [`Callflow`], checking Kazoo's schema
//! (`callflows.json`, `callflows.action.json`) and Crossbar's extra rules.

use serde_json::Value;

use super::diagnostic::{Code, Diagnostic, pointer_push};
use super::json::{
    check_depth, check_length, extras, object_field, parse_object, string_field, string_list,
    type_error,
};
use super::metaflow::check_metaflows;
use super::{Callflow, FeatureCode, ModuleNode, Node, Object, Ringback};
use crate::ids::DocId;
use crate::limits::DocumentLimits;
use crate::pattern;

/// Longest number Kazoo's schema accepts.
pub const MAX_NUMBER_LEN: usize = 36;
/// Longest module name Kazoo's schema accepts.
pub const MAX_MODULE_LEN: usize = 64;

const KNOWN_KEYS: &[&str] = &[
    "numbers",
    "patterns",
    "flow",
    "name",
    "featurecode",
    "metaflow",
    "flags",
    "ringback",
];

/// Parses the callflow document `text` stored under `id`.
///
/// Returns the callflow (unless the text is not a JSON object at all) and
/// every problem found, without file names (the caller adds them). Parts that
/// are invalid are left out of the callflow: an invalid node becomes
/// [`Node::Empty`], a number that is not a string is dropped.
pub fn parse_callflow(id: &DocId, text: &str) -> (Option<Callflow>, Vec<Diagnostic>) {
    let obj = match parse_object(text, "a callflow document") {
        Ok(obj) => obj,
        Err(diag) => return (None, vec![diag]),
    };
    let mut diags = Vec::new();
    let callflow = from_object(id, &obj, &mut diags);
    (Some(callflow), diags)
}

/// Builds a callflow from an already parsed JSON object (the REST API's path).
pub(crate) fn from_object(id: &DocId, obj: &Object, diags: &mut Vec<Diagnostic>) -> Callflow {
    let limits = DocumentLimits::DEFAULT;
    if let Err(diag) = check_depth(obj, limits.max_depth) {
        diags.push(diag);
        return Callflow::empty(id.clone());
    }
    check_id(id, obj, diags);

    // A list past its limit is refused whole, before any entry is read (so
    // 80,000 patterns are not compiled one by one only to be dropped).
    let numbers = if over_limit(
        obj,
        "numbers",
        limits.max_numbers_per_callflow,
        "max_numbers_per_callflow",
        diags,
    ) {
        Vec::new()
    } else {
        unique_strings(obj, "numbers", MAX_NUMBER_LEN, diags, |_, _, _| {})
    };
    let patterns = if over_limit(
        obj,
        "patterns",
        limits.max_patterns_per_callflow,
        "max_patterns_per_callflow",
        diags,
    ) {
        Vec::new()
    } else {
        unique_strings(
            obj,
            "patterns",
            limits.max_pattern_bytes,
            diags,
            |pattern, pointer, diags| match pattern::compile_route(pattern) {
                Ok(_) => {}
                Err(err @ pattern::PatternError::TooBig { .. }) => diags.push(Diagnostic::error(
                    Code::Limit,
                    pointer,
                    format!("pattern {pattern:?} is not routed: it {err}"),
                )),
                Err(err) => {
                    // Kazoo accepts such a pattern and skips it at routing time; so do we.
                    diags.push(Diagnostic::warning(
                        Code::for_pattern(&err),
                        pointer,
                        format!("pattern {pattern:?} is skipped by routing: {err}"),
                    ));
                }
            },
        )
    };

    // Kazoo's rule looks at the lists as sent: a list of wrong-typed entries
    // is a type error, not a missing number.
    let empty_list = |key: &str| match obj.get(key) {
        None => true,
        Some(Value::Array(items)) => items.is_empty(),
        Some(_) => false,
    };
    if empty_list("numbers") && empty_list("patterns") {
        diags.push(Diagnostic::error(
            Code::Required,
            "/numbers",
            "Callflows must be assigned at least one number or pattern",
        ));
    }

    let flow = obj
        .get("flow")
        .map(|value| parse_node(value, "/flow", diags));

    let name = string_field(obj, "name", "", (0, usize::MAX), diags);
    let featurecode = object_field(obj, "featurecode", "", diags).map(|fc| FeatureCode {
        name: string_field(fc, "name", "/featurecode", (1, 128), diags),
        number: string_field(fc, "number", "/featurecode", (1, 30), diags),
        extra: extras(fc, &["name", "number"]),
    });
    let mut flags = Vec::new();
    string_list(obj, "flags", "", diags, |_, flag, _| {
        flags.push(flag.to_owned());
    });
    let ringback = object_field(obj, "ringback", "", diags).map(|rb| Ringback {
        early: string_field(rb, "early", "/ringback", (0, usize::MAX), diags),
        transfer: string_field(rb, "transfer", "/ringback", (0, usize::MAX), diags),
        extra: extras(rb, &["early", "transfer"]),
    });
    let metaflow = object_field(obj, "metaflow", "", diags).map(|mf| {
        check_metaflows(mf, "/metaflow", diags);
        mf.clone()
    });

    Callflow {
        id: id.clone(),
        name,
        numbers,
        patterns,
        flow,
        featurecode,
        metaflow,
        flags,
        ringback,
        extra: extras(obj, KNOWN_KEYS),
    }
}

/// Whether `obj[key]` is an array longer than `max`; if so, says so (an
/// error naming the limit `name`): none of its entries is routed.
fn over_limit(
    obj: &Object,
    key: &str,
    max: usize,
    name: &str,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let Some(Value::Array(items)) = obj.get(key) else {
        return false;
    };
    if items.len() <= max {
        return false;
    }
    diags.push(Diagnostic::error(
        Code::MaxItems,
        format!("/{key}"),
        format!(
            "the callflow lists {} {key}, more than the limit of {max} ({name}): \
             none of them is routed",
            items.len()
        ),
    ));
    true
}

/// Parses a flow (a node tree) given as JSON, such as one a module builds:
/// the node and the problems found (pointers relative to the node).
pub fn parse_flow(value: &Value) -> (Node, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let node = parse_node(value, "", &mut diags);
    (node, diags)
}

/// Reads `numbers` or `patterns`: strings of 1 to `max_len` characters, each
/// listed once. `check` sees every string kept, with its pointer.
fn unique_strings(
    obj: &Object,
    key: &str,
    max_len: usize,
    diags: &mut Vec<Diagnostic>,
    mut check: impl FnMut(&str, &str, &mut Vec<Diagnostic>),
) -> Vec<String> {
    let what = key.trim_end_matches('s');
    let mut kept: Vec<String> = Vec::new();
    let mut seen: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    string_list(obj, key, "", diags, |index, text, diags| {
        let pointer = format!("/{key}/{index}");
        if !check_length(text, &pointer, &format!("a {what}"), (1, max_len), diags) {
            return;
        }
        if !seen.insert(text.to_owned()) {
            diags.push(Diagnostic::error(
                Code::UniqueItems,
                pointer,
                format!("{what} {text} is listed twice"),
            ));
            return;
        }
        check(text, &pointer, diags);
        kept.push(text.to_owned());
    });
    kept
}

/// Checks that an `id` or `_id` inside the document agrees with its file name.
pub(crate) fn check_id(id: &DocId, obj: &Object, diags: &mut Vec<Diagnostic>) {
    for key in ["id", "_id"] {
        match obj.get(key) {
            None => {}
            Some(Value::String(inner)) if inner == id.as_str() => {}
            Some(Value::String(inner)) => diags.push(Diagnostic::error(
                Code::IdMismatch,
                pointer_push("", key),
                format!(
                    "the document says its {key} is {inner:?} but its file name says {:?}",
                    id.as_str()
                ),
            )),
            Some(other) => type_error(
                diags,
                &pointer_push("", key),
                &format!("`{key}`"),
                "a string",
                other,
            ),
        }
    }
}

/// Parses one node of the action tree at `pointer`.
pub(crate) fn parse_node(value: &Value, pointer: &str, diags: &mut Vec<Diagnostic>) -> Node {
    let Value::Object(obj) = value else {
        type_error(
            diags,
            pointer,
            "a node",
            "an object {module, data, children}",
            value,
        );
        return Node::Empty;
    };
    if obj.is_empty() {
        diags.push(Diagnostic::warning(
            Code::EmptyNode,
            pointer,
            "empty node {}: a call that reaches it stops here",
        ));
        return Node::Empty;
    }

    let module_pointer = pointer_push(pointer, "module");
    let module = match obj.get("module") {
        None => {
            diags.push(Diagnostic::error(
                Code::Required,
                &module_pointer,
                "a node needs a `module`",
            ));
            None
        }
        Some(Value::String(name)) => check_length(
            name,
            &module_pointer,
            "`module`",
            (1, MAX_MODULE_LEN),
            diags,
        )
        .then(|| name.clone()),
        Some(other) => {
            type_error(diags, &module_pointer, "`module`", "a string", other);
            None
        }
    };

    let data = match obj.get("data") {
        None => Some(Object::new()),
        Some(Value::Object(data)) => Some(data.clone()),
        Some(other) => {
            type_error(
                diags,
                &pointer_push(pointer, "data"),
                "`data`",
                "an object",
                other,
            );
            None
        }
    };

    let mut children = Vec::new();
    match obj.get("children") {
        None => {}
        Some(Value::Object(map)) => {
            let base = pointer_push(pointer, "children");
            for (key, child) in map {
                let child_pointer = pointer_push(&base, key);
                if key.is_empty() {
                    diags.push(Diagnostic::error(
                        Code::MinLength,
                        &child_pointer,
                        "a child key must not be empty",
                    ));
                    continue;
                }
                children.push((key.clone(), parse_node(child, &child_pointer, diags)));
            }
        }
        Some(other) => type_error(
            diags,
            &pointer_push(pointer, "children"),
            "`children`",
            "an object of nodes keyed by branch",
            other,
        ),
    }

    match (module, data) {
        (Some(module), Some(data)) => Node::Module(ModuleNode {
            module,
            data,
            children,
            extra: extras(obj, &["module", "data", "children"]),
        }),
        _ => Node::Empty,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Option<Callflow>, Vec<String>) {
        let (cf, diags) = parse_callflow(&DocId::new("cf").unwrap(), text);
        let rendered = diags.iter().map(Diagnostic::one_line).collect();
        (cf, rendered)
    }

    #[test]
    fn minimal_document() {
        let (cf, diags) = parse(r#"{"numbers":["1000"]}"#);
        assert!(diags.is_empty(), "{diags:?}");
        let cf = cf.unwrap();
        assert_eq!(cf.numbers, vec!["1000"]);
        assert!(cf.flow.is_none());
    }

    #[test]
    fn reports_everything_at_once() {
        let (cf, diags) = parse(
            r#"{"numbers":[1000, "", "1000", "1000"], "name": 3,
                "flow": {"data": [], "children": {"_": {"module": ""}, "1": 5, "2": {}}}}"#,
        );
        assert_eq!(
            diags,
            vec![
                "error type /numbers/0: each of `numbers` must be a string, found a number",
                "error minLength /numbers/1: a number must not be empty",
                "error uniqueItems /numbers/3: number 1000 is listed twice",
                "error required /flow/module: a node needs a `module`",
                "error type /flow/data: `data` must be an object, found an array",
                "error minLength /flow/children/_/module: `module` must not be empty",
                "error type /flow/children/1: a node must be an object {module, data, children}, found a number",
                "warning empty_node /flow/children/2: empty node {}: a call that reaches it stops here",
                "error type /name: `name` must be a string, found a number",
            ]
        );
        assert_eq!(cf.unwrap().flow, Some(Node::Empty));
    }

    #[test]
    fn needs_numbers_or_patterns() {
        let (_, diags) = parse(r#"{"numbers":[],"flow":{"module":"answer"}}"#);
        assert_eq!(
            diags,
            vec![
                "error required /numbers: Callflows must be assigned at least one number or pattern"
            ]
        );
        let (_, diags) = parse(r#"{"patterns":["^1$"]}"#);
        assert!(diags.is_empty());
    }

    #[test]
    fn malformed_json_has_position() {
        let (cf, diags) = parse("{\n  \"numbers\": [\"1000\",]\n}");
        assert!(cf.is_none());
        assert_eq!(diags.len(), 1);
        let (_, raw) = parse_callflow(
            &DocId::new("cf").unwrap(),
            "{\n  \"numbers\": [\"1000\",]\n}",
        );
        assert_eq!((raw[0].line, raw[0].column), (Some(2), Some(22)));
        assert!(
            diags[0].starts_with("error json : malformed JSON: "),
            "{diags:?}"
        );
    }

    #[test]
    fn id_must_match_file_name() {
        let (_, diags) = parse(r#"{"numbers":["1"],"id":"other","_id":"cf"}"#);
        assert_eq!(
            diags,
            vec![
                "error id_mismatch /id: the document says its id is \"other\" but its file name says \"cf\""
            ]
        );
    }

    #[test]
    fn unknown_keys_round_trip() {
        let text = r#"{"numbers":["611"],"realms":[],"pvt_type":"callflow",
            "flow":{"module":"device","data":{"id":""},"children":{},"remote_execution":false}}"#;
        let (cf, diags) = parse(text);
        assert!(diags.is_empty(), "{diags:?}");
        let original: Value = serde_json::from_str(text).unwrap();
        let mut expected = original.clone();
        expected["patterns"] = serde_json::json!([]);
        assert_eq!(cf.unwrap().to_value(), expected);
    }
}
