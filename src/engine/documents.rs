//! The documents port: the account documents a call reads (users, devices,
//! menus, vmboxes, ...) and the state it writes that must outlive it
//! (voicemail messages, park slots, temporal rule overrides).
//!
//! [`Overlay`] serves reads from the account snapshot the call started with,
//! with the call's own writes layered on top, and hands each write to an
//! optional sink (the store) so that it survives the call and the process.
//! Without a sink (simulations by default) writes live as long as the call,
//! which keeps simulations repeatable.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::catalog::AccountFlows;
use crate::ids::{DocId, DocType};
use crate::model::Object;

/// Where a call's documents come from and its writes go.
pub trait Documents {
    /// A document, without its `id` key.
    fn get(&self, doc_type: &str, id: &str) -> Option<Arc<Object>>;
    /// The ids of every document of a type, sorted.
    fn ids(&self, doc_type: &str) -> Vec<String>;
    /// Saves a document (replacing it whole).
    fn put(&self, doc_type: &DocType, id: &DocId, body: Object) -> Result<(), String>;
    /// How many writes the documents have seen: a reader that converted
    /// documents at another generation must read them again (the calls of
    /// a multi-call scenario share one set of documents).
    fn generation(&self) -> u64 {
        0
    }
}

/// Persists a write; returns why it failed.
pub type Sink = Box<dyn Fn(&DocType, &DocId, &Object) -> Result<(), String>>;

/// An account snapshot plus the writes made since.
pub struct Overlay {
    base: Arc<AccountFlows>,
    writes: RefCell<BTreeMap<(String, String), Arc<Object>>>,
    sink: Option<Sink>,
    /// Writes so far.
    generation: std::cell::Cell<u64>,
}

impl Overlay {
    pub fn new(base: Arc<AccountFlows>, sink: Option<Sink>) -> Self {
        Self {
            base,
            writes: RefCell::new(BTreeMap::new()),
            sink,
            generation: std::cell::Cell::new(0),
        }
    }
}

impl Documents for Overlay {
    fn get(&self, doc_type: &str, id: &str) -> Option<Arc<Object>> {
        let key = (doc_type.to_owned(), id.to_owned());
        if let Some(written) = self.writes.borrow().get(&key) {
            return Some(Arc::clone(written));
        }
        self.base
            .document(doc_type, id)
            .map(|doc| Arc::clone(&doc.body))
    }

    fn ids(&self, doc_type: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .base
            .documents
            .get(doc_type)
            .map(|docs| docs.keys().map(ToString::to_string).collect())
            .unwrap_or_default();
        for (kind, id) in self.writes.borrow().keys() {
            if kind == doc_type && !ids.contains(id) {
                ids.push(id.clone());
            }
        }
        ids.sort();
        ids
    }

    fn put(&self, doc_type: &DocType, id: &DocId, mut body: Object) -> Result<(), String> {
        // The id is the file name, not part of the document.
        body.remove("id");
        if let Some(sink) = &self.sink {
            sink(doc_type, id, &body)?;
        }
        self.writes
            .borrow_mut()
            .insert((doc_type.to_string(), id.to_string()), Arc::new(body));
        self.generation.set(self.generation.get() + 1);
        Ok(())
    }

    fn generation(&self) -> u64 {
        self.generation.get()
    }
}
