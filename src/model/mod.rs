//! The document model: Kazoo callflow documents, account documents and the
//! other account documents modules read, in a validated, immutable form.
//!
//! Raw JSON (`serde_json::Value`) is turned into these types by the parsers in
//! this module; they report every problem at once as [`Diagnostic`]s and
//! build what they can. Past this module, nothing inspects raw JSON for
//! structure: only a node's `data` stays dynamic, because its shape belongs to
//! the module that reads it.

mod account;
mod callflow;
pub mod diagnostic;
mod document;
mod json;
pub mod kazoo;
mod metaflow;

use serde_json::{Map, Value};

pub use account::{Account, DialPlanRule, parse_account};
pub(crate) use callflow::from_object as callflow_from_object;
pub use callflow::{parse_callflow, parse_flow};
pub use diagnostic::{Code, Diagnostic, Severity};
pub use document::{Document, check_document, document_schema, parse_document, schema_types};
pub(crate) use json::type_name;
pub(crate) use metaflow::check_metaflows;

use crate::ids::DocId;

/// The `numbers` entry that marks an account's fallback callflow (Kazoo's
/// `no_match`).
pub const NO_MATCH: &str = "no_match";

/// Whether a top-level key is private (Kazoo's `_*` and `pvt_*`): kept in
/// storage, hidden from API responses and from scripts' view of the account.
pub fn is_private_key(key: &str) -> bool {
    key.starts_with('_') || key.starts_with("pvt_")
}

/// A JSON object, in document order.
pub type Object = Map<String, Value>;

/// A callflow document (`flows/<account>/callflows/<id>.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct Callflow {
    /// The file stem; Kazoo's document id.
    pub id: DocId,
    pub name: Option<String>,
    /// Static numbers as written in the document (normalized per account when
    /// routing tables are built, since normalization depends on the dial plan).
    pub numbers: Vec<String>,
    /// Regex patterns as written, in document order.
    pub patterns: Vec<String>,
    /// The action tree; `None` when the document has no `flow` (a branch to it
    /// stops at once, as Kazoo does).
    pub flow: Option<Node>,
    pub featurecode: Option<FeatureCode>,
    /// The callflow-level metaflow layer: the last layer of the caller's
    /// metaflows on this callflow (Kazoo ignores it; see [`crate::metaflow`]).
    pub metaflow: Option<Object>,
    pub flags: Vec<String>,
    pub ringback: Option<Ringback>,
    /// Every other key, kept unchanged and in document order (`type`,
    /// `contact_list`, `owner_id`, private `pvt_*` and `_*` fields, ...).
    pub extra: Object,
}

/// A node of the action tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `{}`: the executor stops here (Kazoo's `launch_cf_module` on an empty object).
    Empty,
    /// `{module, data, children}`.
    Module(ModuleNode),
}

/// A node that runs a module.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleNode {
    /// The module name (1 to 64 characters).
    pub module: String,
    /// The module's arguments; `{}` when absent.
    pub data: Object,
    /// Children by key, in document order (`"_"` is the default child).
    pub children: Vec<(String, Node)>,
    /// Other keys of the node (`remote_execution`, UI metadata, ...).
    pub extra: Object,
}

/// `featurecode`: metadata for UIs; routing does not read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureCode {
    pub name: Option<String>,
    pub number: Option<String>,
    pub extra: Object,
}

/// `ringback`: media played to the caller while a bridge rings or transfers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ringback {
    pub early: Option<String>,
    pub transfer: Option<String>,
    pub extra: Object,
}

impl ModuleNode {
    /// The child for `key`, if the node has one.
    pub fn child(&self, key: &str) -> Option<&Node> {
        self.children.iter().find(|(k, _)| k == key).map(|(_, n)| n)
    }

    /// Whether `data.skip_module` is `true`.
    pub fn skips(&self) -> bool {
        self.data.get("skip_module") == Some(&Value::Bool(true))
    }
}

impl Node {
    /// The module node, unless the node is empty.
    pub fn as_module(&self) -> Option<&ModuleNode> {
        match self {
            Node::Empty => None,
            Node::Module(node) => Some(node),
        }
    }

    /// The node as JSON, unknown keys included.
    pub fn to_value(&self) -> Value {
        let Node::Module(node) = self else {
            return Value::Object(Object::new());
        };
        let mut out = Object::new();
        out.insert("module".into(), Value::String(node.module.clone()));
        out.insert("data".into(), Value::Object(node.data.clone()));
        let children = node
            .children
            .iter()
            .map(|(key, child)| (key.clone(), child.to_value()))
            .collect();
        out.insert("children".into(), Value::Object(children));
        extend(&mut out, &node.extra);
        Value::Object(out)
    }

    /// Visits this node and every node below it, depth first in document
    /// order, with each node's JSON Pointer relative to `pointer`.
    pub fn walk<'a>(&'a self, pointer: &str, visit: &mut dyn FnMut(&str, &'a Node)) {
        visit(pointer, self);
        if let Node::Module(node) = self {
            let children = diagnostic::pointer_push(pointer, "children");
            for (key, child) in &node.children {
                child.walk(&diagnostic::pointer_push(&children, key), visit);
            }
        }
    }
}

impl Callflow {
    /// A callflow with nothing but its id (what is left of a document too
    /// large or too deep to read).
    pub fn empty(id: DocId) -> Self {
        Self {
            id,
            name: None,
            numbers: Vec::new(),
            patterns: Vec::new(),
            flow: None,
            featurecode: None,
            metaflow: None,
            flags: Vec::new(),
            ringback: None,
            extra: Object::new(),
        }
    }

    /// Whether the document was soft-deleted (`pvt_deleted: true`, as Kazoo
    /// marks it): it stays on disk but neither routes nor lists.
    pub fn is_deleted(&self) -> bool {
        self.extra.get("pvt_deleted") == Some(&Value::Bool(true))
    }

    /// The document as JSON (without `id`, which is the file name), unknown
    /// keys included: what the store writes back.
    pub fn to_value(&self) -> Value {
        let mut out = Object::new();
        if let Some(name) = &self.name {
            out.insert("name".into(), Value::String(name.clone()));
        }
        out.insert("numbers".into(), strings(&self.numbers));
        out.insert("patterns".into(), strings(&self.patterns));
        if let Some(fc) = &self.featurecode {
            let fields = [("name", &fc.name), ("number", &fc.number)];
            out.insert("featurecode".into(), object_of(&fields, &fc.extra));
        }
        if !self.flags.is_empty() {
            out.insert("flags".into(), strings(&self.flags));
        }
        if let Some(rb) = &self.ringback {
            let fields = [("early", &rb.early), ("transfer", &rb.transfer)];
            out.insert("ringback".into(), object_of(&fields, &rb.extra));
        }
        if let Some(metaflow) = &self.metaflow {
            out.insert("metaflow".into(), Value::Object(metaflow.clone()));
        }
        if let Some(flow) = &self.flow {
            out.insert("flow".into(), flow.to_value());
        }
        extend(&mut out, &self.extra);
        Value::Object(out)
    }

    /// A name for humans: `name`, else the id.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(self.id.as_str())
    }

    /// Whether this is the account's `no_match` callflow.
    pub fn is_no_match(&self) -> bool {
        self.numbers.iter().any(|n| n == NO_MATCH)
    }
}

fn strings(list: &[String]) -> Value {
    Value::Array(list.iter().cloned().map(Value::String).collect())
}

/// An object of the given optional string fields, then `extra`.
fn object_of(fields: &[(&str, &Option<String>)], extra: &Object) -> Value {
    let mut obj = Object::new();
    for (key, value) in fields {
        if let Some(value) = value {
            obj.insert((*key).to_owned(), Value::String(value.clone()));
        }
    }
    extend(&mut obj, extra);
    Value::Object(obj)
}

fn extend(out: &mut Object, extra: &Object) {
    for (key, value) in extra {
        out.insert(key.clone(), value.clone());
    }
}
