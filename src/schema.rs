//! Module data schemas: the small JSON Schema subset module scripts use to
//! declare the `data` they accept (`scripts/README.md`, "Schemas").
//!
//! Keywords: `type` (a name or a list of names among `string`, `integer`,
//! `number`, `boolean`, `object`, `array`, `null`), `enum`, `minimum`,
//! `maximum`, `minLength`, `maxLength`, `pattern` (Kazoo's regex dialect),
//! `properties`, `required`, `additionalProperties` (`false`, or a schema
//! every key not in `properties` must fit), `items`,
//! `minItems`, `maxItems`, `oneOf` / `anyOf` (valid when any alternative is);
//! `format: "uri"` (a URL calls fetch: an internal host is an
//! `internal_url` warning, which `callflow check` and API writes hold as an
//! error unless private addresses are allowed);
//! `default` and `description` are documentation. Other keywords are ignored.
//!
//! Like Crossbar's non-strict validation, a string that reads as the integer,
//! number or boolean a schema wants (`"20"` for 20) is accepted with a
//! `coerced` warning rather than a type error.
//!
//! Written here rather than taken from a JSON Schema crate: the general
//! validators bring URL, IDNA and big-number stacks for formats and remote
//! references modules never use, and none does Kazoo's coercion.

use serde_json::{Map, Value};

use crate::model::diagnostic::pointer_push;
use crate::model::{Code, Diagnostic, type_name};
use crate::pattern;

/// Checks `value` (at `pointer`) against `schema`, pushing a diagnostic for
/// every problem.
pub fn check(schema: &Value, value: &Value, pointer: &str, diags: &mut Vec<Diagnostic>) {
    let Value::Object(schema) = schema else {
        return;
    };
    let coerced;
    let value = match check_type(schema, value, pointer, diags) {
        TypeCheck::Mismatch => return,
        TypeCheck::Ok => value,
        TypeCheck::Coerced(converted) => {
            coerced = converted;
            &coerced
        }
    };
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(value)
    {
        diags.push(Diagnostic::error(
            Code::Enum,
            pointer,
            format!("must be one of {}, found {value}", enum_list(allowed)),
        ));
    }
    match value {
        Value::Number(n) => check_number(schema, n, pointer, diags),
        Value::String(text) => check_string(schema, text, pointer, diags),
        Value::Array(items) => check_array(schema, items, pointer, diags),
        Value::Object(obj) => check_object(schema, obj, pointer, diags),
        Value::Null | Value::Bool(_) => {}
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(Value::Array(alternatives)) = schema.get(key) {
            let any = alternatives.iter().any(|alt| {
                let mut scratch = Vec::new();
                check(alt, value, pointer, &mut scratch);
                scratch.iter().all(|d| !d.is_error())
            });
            if !any {
                diags.push(Diagnostic::error(
                    Code::Type,
                    pointer,
                    "matches none of the allowed forms",
                ));
            }
        }
    }
}

/// The allowed values of an `enum`, all of them when there are a few, else
/// the first ones and how many in all (Kazoo's TTS voices are over a hundred).
fn enum_list(allowed: &[Value]) -> String {
    const SHOWN: usize = 8;
    let shown = if allowed.len() <= 2 * SHOWN {
        allowed.len()
    } else {
        SHOWN
    };
    let list: Vec<String> = allowed.iter().take(shown).map(Value::to_string).collect();
    if shown == allowed.len() {
        list.join(", ")
    } else {
        format!("{}, ... ({} values in all)", list.join(", "), allowed.len())
    }
}

/// `count` followed by `noun`, in the plural unless `count` is 1.
fn plural(count: u64, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

enum TypeCheck {
    Ok,
    Mismatch,
    Coerced(Value),
}

fn type_names(schema: &Map<String, Value>) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(name)) => vec![name.as_str()],
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn has_type(value: &Value, name: &str) -> bool {
    match name {
        "string" => value.is_string(),
        "integer" => value.as_f64().is_some_and(|n| n.fract() == 0.0),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "null" => value.is_null(),
        _ => true,
    }
}

fn check_type(
    schema: &Map<String, Value>,
    value: &Value,
    pointer: &str,
    diags: &mut Vec<Diagnostic>,
) -> TypeCheck {
    let names = type_names(schema);
    if names.is_empty() || names.iter().any(|name| has_type(value, name)) {
        return TypeCheck::Ok;
    }
    if let Value::String(text) = value {
        for name in &names {
            let converted = match *name {
                "integer" => text.trim().parse::<i64>().ok().map(Value::from),
                "number" => text.trim().parse::<f64>().ok().map(Value::from),
                "boolean" => match text.as_str() {
                    "true" => Some(Value::Bool(true)),
                    "false" => Some(Value::Bool(false)),
                    _ => None,
                },
                _ => None,
            };
            if let Some(converted) = converted {
                diags.push(Diagnostic::warning(
                    Code::Coerced,
                    pointer,
                    format!(
                        "is the string {value} where {} {name} is expected; Kazoo converts it, modules see the string",
                        article(name)
                    ),
                ));
                return TypeCheck::Coerced(converted);
            }
        }
    }
    let expected: Vec<String> = names
        .iter()
        .map(|name| format!("{} {name}", article(name)))
        .collect();
    diags.push(Diagnostic::error(
        Code::Type,
        pointer,
        format!(
            "must be {}, found {}",
            expected.join(" or "),
            type_name(value)
        ),
    ));
    TypeCheck::Mismatch
}

fn article(name: &str) -> &'static str {
    if matches!(
        name.as_bytes().first(),
        Some(b'a' | b'e' | b'i' | b'o' | b'u')
    ) {
        "an"
    } else {
        "a"
    }
}

/// Checks `minimum` and `maximum`. Messages show the number as written
/// (`-1e+308`, not its 309 digits).
fn check_number(
    schema: &Map<String, Value>,
    number: &serde_json::Number,
    pointer: &str,
    diags: &mut Vec<Diagnostic>,
) {
    let n = number.as_f64().unwrap_or(0.0);
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && n < min
    {
        diags.push(Diagnostic::error(
            Code::Minimum,
            pointer,
            format!("must be at least {min}, found {number}"),
        ));
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && n > max
    {
        diags.push(Diagnostic::error(
            Code::Maximum,
            pointer,
            format!("must be at most {max}, found {number}"),
        ));
    }
}

fn check_string(
    schema: &Map<String, Value>,
    text: &str,
    pointer: &str,
    diags: &mut Vec<Diagnostic>,
) {
    let len = text.chars().count();
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && (len as u64) < min
    {
        diags.push(Diagnostic::error(
            Code::MinLength,
            pointer,
            format!("must be at least {}, found {len}", plural(min, "character")),
        ));
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && (len as u64) > max
    {
        diags.push(Diagnostic::error(
            Code::MaxLength,
            pointer,
            format!(
                "must not be more than {}, found {len}",
                plural(max, "character")
            ),
        ));
    }
    if schema.get("format").and_then(Value::as_str) == Some("uri")
        && let Some(reason) = crate::sim::network::refused(text)
    {
        diags.push(Diagnostic::warning(
            Code::InternalUrl,
            pointer,
            format!("{text:?} names an internal address: {reason}"),
        ));
    }
    if let Some(Value::String(regex)) = schema.get("pattern")
        && let Ok(compiled) = pattern::compile(regex)
        && !compiled.is_match(text)
    {
        diags.push(Diagnostic::error(
            Code::Pattern,
            pointer,
            format!("{text:?} does not match {regex}"),
        ));
    }
}

fn check_array(
    schema: &Map<String, Value>,
    items: &[Value],
    pointer: &str,
    diags: &mut Vec<Diagnostic>,
) {
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && (items.len() as u64) < min
    {
        diags.push(Diagnostic::error(
            Code::MinLength,
            pointer,
            format!(
                "needs at least {}, found {}",
                plural(min, "item"),
                items.len()
            ),
        ));
    }
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && (items.len() as u64) > max
    {
        diags.push(Diagnostic::error(
            Code::MaxLength,
            pointer,
            format!(
                "takes at most {}, found {}",
                plural(max, "item"),
                items.len()
            ),
        ));
    }
    if let Some(item_schema) = schema.get("items") {
        for (index, item) in items.iter().enumerate() {
            check(
                item_schema,
                item,
                &pointer_push(pointer, &index.to_string()),
                diags,
            );
        }
    }
}

fn check_object(
    schema: &Map<String, Value>,
    obj: &Map<String, Value>,
    pointer: &str,
    diags: &mut Vec<Diagnostic>,
) {
    let properties = schema.get("properties").and_then(Value::as_object);
    if let Some(Value::Array(required)) = schema.get("required") {
        for name in required.iter().filter_map(Value::as_str) {
            // Crossbar writes a property's default in before checking, so a
            // required property with a default is never missing.
            let has_default = properties
                .and_then(|p| p.get(name))
                .is_some_and(|p| p.get("default").is_some());
            if !obj.contains_key(name) && !has_default {
                diags.push(Diagnostic::error(
                    Code::Required,
                    pointer_push(pointer, name),
                    format!("`{name}` is required"),
                ));
            }
        }
    }
    let additional = schema.get("additionalProperties");
    for (key, value) in obj {
        match (properties.and_then(|p| p.get(key)), additional) {
            (Some(property), _) => check(property, value, &pointer_push(pointer, key), diags),
            // A schema for every other key (a map of names to settings).
            (None, Some(each @ Value::Object(_))) => {
                check(each, value, &pointer_push(pointer, key), diags);
            }
            (None, Some(Value::Bool(false))) if key != "skip_module" => {
                diags.push(Diagnostic::error(
                    Code::UnknownKey,
                    pointer_push(pointer, key),
                    format!("`{key}` is not a setting of this module"),
                ));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(schema: &Value, value: &Value) -> Vec<String> {
        let mut diags = Vec::new();
        check(schema, value, "/data", &mut diags);
        diags.iter().map(Diagnostic::one_line).collect()
    }

    #[test]
    fn checks_the_subset() {
        let schema = json!({
            "type": "object",
            "required": ["text"],
            "additionalProperties": false,
            "properties": {
                "text": {"type": "string", "minLength": 1, "maxLength": 5},
                "timeout": {"type": "integer", "minimum": 1},
                "strategy": {"type": "string", "enum": ["single", "simultaneous"]},
                "terminators": {"type": "array", "items": {"type": "string", "pattern": "^[0-9*#]$"}},
                "answer": {"type": "boolean"},
                "duration": {"oneOf": [{"type": "integer"}, {"type": "string", "pattern": "^\\d+$"}]}
            }
        });
        assert!(run(&schema, &json!({"text": "hi", "skip_module": true})).is_empty());
        assert_eq!(
            run(
                &schema,
                &json!({"timeout": 0, "strategy": "random", "terminators": ["1", "x"], "color": 1,
                       "answer": "yes", "duration": "x"})
            ),
            vec![
                "error required /data/text: `text` is required",
                "error minimum /data/timeout: must be at least 1, found 0",
                "error enum /data/strategy: must be one of \"single\", \"simultaneous\", found \"random\"",
                "error pattern /data/terminators/1: \"x\" does not match ^[0-9*#]$",
                "error unknown_key /data/color: `color` is not a setting of this module",
                "error type /data/answer: must be a boolean, found a string",
                "error type /data/duration: matches none of the allowed forms",
            ]
        );
        assert_eq!(
            run(
                &schema,
                &json!({"text": "toolong", "timeout": "20", "answer": "false"})
            ),
            vec![
                "error maxLength /data/text: must not be more than 5 characters, found 7",
                "warning coerced /data/timeout: is the string \"20\" where an integer is expected; Kazoo converts it, modules see the string",
                "warning coerced /data/answer: is the string \"false\" where a boolean is expected; Kazoo converts it, modules see the string",
            ]
        );
    }

    #[test]
    fn a_required_property_with_a_default_may_be_left_out() {
        let schema = json!({
            "type": "object",
            "required": ["code", "text"],
            "properties": {"code": {"type": "integer", "default": 486}, "text": {"type": "string"}}
        });
        assert_eq!(
            run(&schema, &json!({})),
            vec!["error required /data/text: `text` is required"]
        );
    }

    #[test]
    fn additional_properties_may_be_a_schema_for_every_other_key() {
        let schema = json!({
            "type": "object",
            "properties": {"system": {"type": "array"}},
            "additionalProperties": {"type": "object", "properties": {"prefix": {"type": "string"}}}
        });
        assert!(run(&schema, &json!({"system": [], "^1": {"prefix": "+1"}})).is_empty());
        assert_eq!(
            run(
                &schema,
                &json!({"system": {}, "^1": {"prefix": 1}, "^2": 2})
            ),
            vec![
                "error type /data/system: must be an array, found an object",
                "error type /data/^1/prefix: must be a string, found a number",
                "error type /data/^2: must be an object, found a number",
            ]
        );
    }

    #[test]
    fn uri_fields_name_internal_hosts() {
        let schema = json!({"type": "string", "format": "uri"});
        assert_eq!(
            run(&schema, &json!("http://0x7f000001/x")),
            vec![
                "warning internal_url /data: \"http://0x7f000001/x\" names an internal address: refused: 0x7f000001 (127.0.0.1) is a loopback, link-local or private address (allow private addresses to reach it)"
            ]
        );
        assert!(run(&schema, &json!("https://ivr.example.com/x")).is_empty());
        // Without the keyword a URL is only a string.
        assert!(run(&json!({"type": "string"}), &json!("http://localhost/")).is_empty());
    }

    #[test]
    fn numbers_out_of_range_are_shown_as_written() {
        let schema = json!({"type": "integer", "minimum": 1, "maximum": 6});
        assert_eq!(
            run(&schema, &json!(-1e308)),
            vec!["error minimum /data: must be at least 1, found -1e+308"]
        );
        assert_eq!(
            run(&schema, &json!(7)),
            vec!["error maximum /data: must be at most 6, found 7"]
        );
    }

    #[test]
    fn long_enums_are_shortened_and_counts_agree() {
        let voices: Vec<String> = (0..20).map(|i| format!("v{i}")).collect();
        let schema = json!({"type": "string", "enum": voices});
        assert_eq!(
            run(&schema, &json!("robot")),
            vec![
                "error enum /data: must be one of \"v0\", \"v1\", \"v2\", \"v3\", \"v4\", \"v5\", \"v6\", \"v7\", ... (20 values in all), found \"robot\""
            ]
        );
        let schema = json!({"type": "string", "minLength": 1});
        assert_eq!(
            run(&schema, &json!("")),
            vec!["error minLength /data: must be at least 1 character, found 0"]
        );
    }
}
