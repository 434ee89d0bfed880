//! Small helpers the parsers share: JSON syntax errors, type names and checks
//! that push a diagnostic when a value is not what the schema wants.

use serde_json::Value;

use super::Object;
use super::diagnostic::{Code, Diagnostic, pointer_push};

/// Parses `text` as a JSON object; on failure returns the diagnostic (with
/// line and column for syntax errors).
pub(crate) fn parse_object(text: &str, what: &str) -> Result<Object, Diagnostic> {
    let limits = crate::limits::DocumentLimits::DEFAULT;
    if text.len() > limits.max_document_bytes {
        return Err(Diagnostic::error(
            Code::Limit,
            "",
            format!(
                "{what} of {} bytes is larger than the limit of {} KiB \
                 (max_document_bytes): not loaded",
                text.len(),
                limits.max_document_bytes >> 10
            ),
        ));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(obj)) => {
            check_depth(&obj, limits.max_depth)?;
            Ok(obj)
        }
        Ok(other) => Err(Diagnostic::error(
            Code::Type,
            "",
            format!("{what} must be a JSON object, found {}", type_name(&other)),
        )),
        Err(err) => Err(syntax_error(&err)),
    }
}

/// An error when `obj` nests arrays and objects deeper than `max` levels
/// (counted without recursion, so no document can exhaust the stack).
pub(crate) fn check_depth(obj: &Object, max: usize) -> Result<(), Diagnostic> {
    let mut stack: Vec<(&Value, usize)> = obj.values().map(|v| (v, 2)).collect();
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Object(inner) => Box::new(inner.values()),
            Value::Array(items) => Box::new(items.iter()),
            _ => continue,
        };
        if depth > max {
            return Err(Diagnostic::error(
                Code::Limit,
                "",
                format!(
                    "the document nests arrays and objects more than {max} deep (max_depth): \
                     not loaded"
                ),
            ));
        }
        stack.extend(children.map(|child| (child, depth + 1)));
    }
    Ok(())
}

/// A diagnostic for a JSON syntax error.
pub(crate) fn syntax_error(err: &serde_json::Error) -> Diagnostic {
    // serde_json appends " at line L column C" to its message; we report the
    // position in its own fields.
    let text = err.to_string();
    let message = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(head, _)| head);
    Diagnostic::error(Code::Json, "", format!("malformed JSON: {message}"))
        .at(err.line(), err.column())
}

/// "a string", "an array", ... for messages.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Pushes a `type` error: `<what> must be <expected>, found <actual>`.
pub(crate) fn type_error(
    diags: &mut Vec<Diagnostic>,
    pointer: &str,
    what: &str,
    expected: &str,
    found: &Value,
) {
    diags.push(Diagnostic::error(
        Code::Type,
        pointer,
        format!("{what} must be {expected}, found {}", type_name(found)),
    ));
}

/// Checks an optional string with length bounds (in characters).
pub(crate) fn string_field(
    obj: &Object,
    key: &str,
    base: &str,
    bounds: (usize, usize),
    diags: &mut Vec<Diagnostic>,
) -> Option<String> {
    let value = obj.get(key)?;
    let pointer = pointer_push(base, key);
    let Value::String(text) = value else {
        type_error(diags, &pointer, &format!("`{key}`"), "a string", value);
        return None;
    };
    if check_length(text, &pointer, &format!("`{key}`"), bounds, diags) {
        Some(text.clone())
    } else {
        None
    }
}

/// Checks a string's length in characters; pushes `minLength`/`maxLength`.
pub(crate) fn check_length(
    text: &str,
    pointer: &str,
    what: &str,
    (min, max): (usize, usize),
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let len = text.chars().count();
    if len < min {
        let message = if min == 1 {
            format!("{what} must not be empty")
        } else {
            format!("{what} must be at least {min} characters")
        };
        diags.push(Diagnostic::error(Code::MinLength, pointer, message));
        false
    } else if len > max {
        diags.push(Diagnostic::error(
            Code::MaxLength,
            pointer,
            format!("{what} must not be more than {max} characters, found {len}"),
        ));
        false
    } else {
        true
    }
}

/// Checks an optional array of strings, calling `each` with the index and
/// text of every string in order; non-strings get a `type` error in their
/// place in the sequence. Returns the array's length (0 when absent or not
/// an array).
pub(crate) fn string_list(
    obj: &Object,
    key: &str,
    base: &str,
    diags: &mut Vec<Diagnostic>,
    mut each: impl FnMut(usize, &str, &mut Vec<Diagnostic>),
) -> usize {
    let Some(value) = obj.get(key) else {
        return 0;
    };
    let pointer = pointer_push(base, key);
    let Value::Array(items) = value else {
        type_error(
            diags,
            &pointer,
            &format!("`{key}`"),
            "an array of strings",
            value,
        );
        return 0;
    };
    for (index, item) in items.iter().enumerate() {
        match item {
            Value::String(text) => each(index, text, diags),
            other => type_error(
                diags,
                &pointer_push(&pointer, &index.to_string()),
                &format!("each of `{key}`"),
                "a string",
                other,
            ),
        }
    }
    items.len()
}

/// Checks an optional object; returns it when it is one.
pub(crate) fn object_field<'a>(
    obj: &'a Object,
    key: &str,
    base: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<&'a Object> {
    let value = obj.get(key)?;
    match value {
        Value::Object(inner) => Some(inner),
        other => {
            type_error(
                diags,
                &pointer_push(base, key),
                &format!("`{key}`"),
                "an object",
                other,
            );
            None
        }
    }
}

/// Copies every key not in `known` into a new object, in document order.
pub(crate) fn extras(obj: &Object, known: &[&str]) -> Object {
    obj.iter()
        .filter(|(key, _)| !known.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}
