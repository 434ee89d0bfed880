//! Other account documents (`flows/<account>/<doc_type>/<id>.json`): users,
//! devices, vmboxes, menus, temporal rules, media, groups, lists, ... Each is
//! a JSON object whose id agrees with its file name; the types Kazoo has a
//! schema for (and the module scripts read) are checked against our own
//! schema of that type (`schemas/documents/<type>.json`), as callflow nodes
//! are against their modules' schemas. Unknown keys are accepted, as Kazoo
//! accepts them; other types (the state modules keep: `parked_calls`,
//! `ring_group_toggles`, ...) are only checked to be objects.

use std::sync::{Arc, LazyLock};

use serde_json::Value;

use super::diagnostic::Diagnostic;
use super::json::parse_object;
use super::{Object, callflow::check_id};
use crate::ids::{DocId, DocType};

/// A document modules can read through the call-control API.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub doc_type: DocType,
    pub id: DocId,
    /// The document as stored; shared, since many calls read the same one.
    pub body: Arc<Object>,
}

/// The schema files, by document type (the folder name).
const SCHEMA_FILES: &[(&str, &str)] = &[
    (
        "devices",
        include_str!("../../schemas/documents/devices.json"),
    ),
    (
        "functions",
        include_str!("../../schemas/documents/functions.json"),
    ),
    (
        "groups",
        include_str!("../../schemas/documents/groups.json"),
    ),
    (
        "list_entries",
        include_str!("../../schemas/documents/list_entries.json"),
    ),
    ("lists", include_str!("../../schemas/documents/lists.json")),
    ("media", include_str!("../../schemas/documents/media.json")),
    ("menus", include_str!("../../schemas/documents/menus.json")),
    (
        "resources",
        include_str!("../../schemas/documents/resources.json"),
    ),
    (
        "temporal_rule_sets",
        include_str!("../../schemas/documents/temporal_rule_sets.json"),
    ),
    (
        "temporal_rules",
        include_str!("../../schemas/documents/temporal_rules.json"),
    ),
    ("users", include_str!("../../schemas/documents/users.json")),
    (
        "vmboxes",
        include_str!("../../schemas/documents/vmboxes.json"),
    ),
    (
        "webhooks",
        include_str!("../../schemas/documents/webhooks.json"),
    ),
];

static SCHEMAS: LazyLock<Vec<(&'static str, Value)>> = LazyLock::new(|| {
    SCHEMA_FILES
        .iter()
        .map(|(doc_type, text)| {
            // The files are embedded at build time, and the tests below parse
            // every one, so this cannot fail at run time.
            let schema = serde_json::from_str(text).expect("embedded document schemas are JSON");
            (*doc_type, schema)
        })
        .collect()
});

/// The schema documents of type `doc_type` are checked against, when there
/// is one.
pub fn document_schema(doc_type: &str) -> Option<&'static Value> {
    SCHEMAS
        .iter()
        .find(|(name, _)| *name == doc_type)
        .map(|(_, schema)| schema)
}

/// The document types that have a schema, in name order.
pub fn schema_types() -> impl Iterator<Item = &'static str> {
    SCHEMA_FILES.iter().map(|(name, _)| *name)
}

/// Checks the body of a document of type `doc_type` against the type's
/// schema (nothing for a type without one). The one check of a document's
/// shape: the catalog (`callflow check`, reloads) runs it through
/// [`parse_document`], and an API write of such a document calls it too.
/// Pointers are relative to the document; the diagnostics have no file yet.
pub fn check_document(doc_type: &str, body: &Object) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    if let Some(schema) = document_schema(doc_type) {
        // The checker takes a value; documents are small next to the parse.
        let value = Value::Object(body.clone());
        crate::schema::check(schema, &value, "", &mut diags);
    }
    diags
}

/// Parses the document `text` of type `doc_type` stored under `id`, and
/// checks it against its type's schema ([`check_document`]).
pub fn parse_document(
    doc_type: &DocType,
    id: &DocId,
    text: &str,
) -> (Option<Document>, Vec<Diagnostic>) {
    let obj = match parse_object(text, "a document") {
        Ok(obj) => obj,
        Err(diag) => return (None, vec![diag]),
    };
    let mut diags = Vec::new();
    check_id(id, &obj, &mut diags);
    diags.extend(check_document(doc_type.as_str(), &obj));
    let doc = Document {
        doc_type: doc_type.clone(),
        id: id.clone(),
        body: Arc::new(obj),
    };
    (Some(doc), diags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Diagnostic;

    fn check(doc_type: &str, text: &str) -> Vec<String> {
        let doc_type = DocType::new(doc_type).unwrap();
        let id = DocId::new("x").unwrap();
        let (doc, diags) = parse_document(&doc_type, &id, text);
        assert!(doc.is_some());
        diags.iter().map(Diagnostic::one_line).collect()
    }

    #[test]
    fn every_schema_is_an_object_schema() {
        for doc_type in schema_types() {
            let schema = document_schema(doc_type).unwrap();
            assert_eq!(schema["type"], "object", "{doc_type}");
            assert!(schema["properties"].is_object(), "{doc_type}");
        }
        assert!(document_schema("parked_calls").is_none());
    }

    #[test]
    fn every_pattern_of_the_schemas_compiles() {
        fn walk(value: &Value, at: &str) {
            match value {
                Value::Object(obj) => {
                    if let Some(Value::String(regex)) = obj.get("pattern") {
                        assert!(crate::pattern::compile(regex).is_ok(), "{at}: {regex}");
                    }
                    for (key, child) in obj {
                        walk(child, &format!("{at}/{key}"));
                    }
                }
                Value::Array(items) => items.iter().for_each(|item| walk(item, at)),
                _ => {}
            }
        }
        for doc_type in schema_types() {
            walk(document_schema(doc_type).unwrap(), doc_type);
        }
    }

    #[test]
    fn a_menu_of_the_wrong_types_gets_an_error_per_field() {
        assert_eq!(
            check(
                "menus",
                r#"{"name": "Main", "max_extension_length": -1e308, "retries": "lots", "timeout": {}}"#
            ),
            vec![
                "error minimum /max_extension_length: must be at least 1, found -1e+308",
                "error type /retries: must be an integer, found a string",
                "error type /timeout: must be an integer, found an object",
            ]
        );
    }

    #[test]
    fn unknown_keys_and_private_keys_are_accepted() {
        assert!(
            check(
                "menus",
                r#"{"name": "Main", "color": 1, "pvt_type": "menu"}"#
            )
            .is_empty()
        );
        assert!(check("parked_calls", r#"{"slots": 5}"#).is_empty());
    }

    #[test]
    fn a_required_field_with_a_default_may_be_left_out() {
        // `media_source` is required with a default; `name` has none.
        assert_eq!(
            check("media", "{}"),
            vec!["error required /name: `name` is required"]
        );
    }
}
