//! Structure checks for metaflow configuration (Kazoo's `metaflows` schema),
//! found on callflow documents (`metaflow`), accounts, users and devices
//! (`metaflows`). [`crate::metaflow`] interprets them; here we make sure
//! they are well formed (the catalog checks their modules).

use serde_json::Value;

use super::Object;
use super::diagnostic::{Code, Diagnostic, pointer_push};
use super::json::{check_length, object_field, type_error};
use crate::pattern;

const BINDING_DIGITS: &[&str] = &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#"];
const LISTEN_ON: &[&str] = &["both", "self", "peer"];
const KNOWN_KEYS: &[&str] = &[
    "binding_digit",
    "digit_timeout",
    // Kazoo's account-level fallback spelling (konami_config).
    "digit_timeout_ms",
    "listen_on",
    "numbers",
    "patterns",
];

/// Checks a `metaflows` object at `pointer`.
pub(crate) fn check_metaflows(obj: &Object, pointer: &str, diags: &mut Vec<Diagnostic>) {
    for key in obj.keys() {
        if KNOWN_KEYS.contains(&key.as_str()) {
            continue;
        }
        let hint = match key.as_str() {
            "binding_key" => "; did you mean `binding_digit`?",
            "timeout" => "; did you mean `digit_timeout`?",
            _ => "",
        };
        diags.push(Diagnostic::warning(
            Code::UnknownKey,
            pointer_push(pointer, key),
            format!("metaflows have no `{key}` setting{hint}"),
        ));
    }
    check_enum(obj, "binding_digit", pointer, BINDING_DIGITS, diags);
    check_enum(obj, "listen_on", pointer, LISTEN_ON, diags);
    for key in ["digit_timeout", "digit_timeout_ms"] {
        if let Some(value) = obj.get(key).filter(|v| !v.is_u64()) {
            type_error(
                diags,
                &pointer_push(pointer, key),
                &format!("`{key}`"),
                "a whole number of milliseconds",
                value,
            );
        }
    }
    if let Some(numbers) = object_field(obj, "numbers", pointer, diags) {
        let base = pointer_push(pointer, "numbers");
        for (key, node) in numbers {
            let node_pointer = pointer_push(&base, key);
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_digit()) {
                diags.push(Diagnostic::error(
                    Code::Type,
                    &node_pointer,
                    format!("metaflow numbers are digits only, found {key:?}"),
                ));
            }
            check_metaflow_node(node, &node_pointer, diags);
        }
    }
    if let Some(patterns) = object_field(obj, "patterns", pointer, diags) {
        let base = pointer_push(pointer, "patterns");
        for (key, node) in patterns {
            let node_pointer = pointer_push(&base, key);
            if let Err(err) = pattern::compile(key) {
                // Kazoo's konami crashes on it; here it never matches.
                diags.push(Diagnostic::warning(
                    Code::for_pattern(&err),
                    &node_pointer,
                    format!("metaflow pattern {key:?} never matches: {err}"),
                ));
            }
            check_metaflow_node(node, &node_pointer, diags);
        }
    }
}

fn check_enum(obj: &Object, key: &str, base: &str, allowed: &[&str], diags: &mut Vec<Diagnostic>) {
    let Some(value) = obj.get(key) else { return };
    let pointer = pointer_push(base, key);
    match value {
        Value::String(text) if allowed.contains(&text.as_str()) => {}
        Value::String(text) => diags.push(Diagnostic::error(
            Code::Enum,
            pointer,
            format!(
                "`{key}` must be one of {}, found {text:?}",
                allowed.join(", ")
            ),
        )),
        other => type_error(diags, &pointer, &format!("`{key}`"), "a string", other),
    }
}

/// Checks a metaflow node: `{module, data, children}` with metaflow children.
fn check_metaflow_node(value: &Value, pointer: &str, diags: &mut Vec<Diagnostic>) {
    let Value::Object(obj) = value else {
        type_error(
            diags,
            pointer,
            "a metaflow node",
            "an object {module, data, children}",
            value,
        );
        return;
    };
    let module_pointer = pointer_push(pointer, "module");
    match obj.get("module") {
        None => diags.push(Diagnostic::error(
            Code::Required,
            module_pointer,
            "a metaflow node needs a `module`",
        )),
        Some(Value::String(name)) => {
            check_length(name, &module_pointer, "`module`", (1, 64), diags);
        }
        Some(other) => type_error(diags, &module_pointer, "`module`", "a string", other),
    }
    object_field(obj, "data", pointer, diags);
    if let Some(children) = object_field(obj, "children", pointer, diags) {
        let base = pointer_push(pointer, "children");
        for (key, child) in children {
            check_metaflow_node(child, &pointer_push(&base, key), diags);
        }
    }
}
