//! Other account documents (`flows/<account>/<doc_type>/<id>.json`): users,
//! devices, vmboxes, menus, temporal rules, media, groups, lists, ... Their
//! shape belongs to the modules that read them; here we only check that each is
//! a JSON object whose id agrees with its file name.

use std::sync::Arc;

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

/// Parses the document `text` of type `doc_type` stored under `id`.
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
    let doc = Document {
        doc_type: doc_type.clone(),
        id: id.clone(),
        body: Arc::new(obj),
    };
    (Some(doc), diags)
}
