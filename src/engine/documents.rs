//! The documents port: the account documents a call reads (users, devices,
//! menus, vmboxes, ...) and the state it writes that must outlive it
//! (voicemail messages, park slots, temporal rule overrides).
//!
//! [`Overlay`] serves reads from the account snapshot the call started with,
//! with the call's own writes layered on top, and hands each write to an
//! optional [`DocumentStore`] (the flows directory on a server) so that it
//! survives the call and the process. Without a store (simulations by
//! default) writes live as long as the call, which keeps simulations
//! repeatable.
//!
//! Calls run side by side, so a read-modify-write of a shared document
//! (a voicemail box's messages) goes through [`Documents::current`] and
//! [`Documents::put_if`]: the document as the store holds it *now*, with its
//! [`Revision`], and a write that happens only if the revision is still the
//! same (compare-and-swap). The store makes that check and the write one
//! step for every call of the process ([`MemoryStore`] under a mutex; the
//! flows directory under a lock on the document's folder), so two calls
//! updating one document cannot lose each other's change:
//! [`Call::update_document`](super::Call::update_document) retries on a
//! conflict.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};

use crate::catalog::{AccountFlows, Catalog};
use crate::ids::{AccountId, DocId, DocType};
use crate::model::Object;

/// Which version of a document a store holds: it changes whenever the
/// document does. Compared only with revisions from the same store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Revision(Option<[u8; 32]>);

impl Revision {
    /// The revision of a document that does not exist.
    pub const ABSENT: Self = Self(None);

    /// The revision of a document stored as these bytes (its SHA-256).
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self(Some(Sha256::digest(bytes).into()))
    }

    /// The revision of a document held as a value (the SHA-256 of its JSON
    /// text; key order counts, as it does in a file).
    pub fn of(body: &Object) -> Self {
        // A map of JSON values always serializes; an empty text would only
        // make every such document one revision (conflicts never missed:
        // the content is still compared).
        Self::of_bytes(&serde_json::to_vec(body).unwrap_or_default())
    }
}

/// What a conditional write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swap {
    /// The document was written.
    Written,
    /// The document changed since the expected revision: nothing written.
    Conflict,
}

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
    /// The document as it is now where writes go (other calls' writes
    /// included), without its `id` key, and its revision.
    fn current(
        &self,
        doc_type: &DocType,
        id: &DocId,
    ) -> Result<(Option<Arc<Object>>, Revision), String>;
    /// Saves a document only if its revision is still `expected`.
    fn put_if(
        &self,
        doc_type: &DocType,
        id: &DocId,
        expected: Revision,
        body: Object,
    ) -> Result<Swap, String>;
}

/// Where the documents calls write are kept, shared by every call of the
/// process (and by every thread): it must make [`DocumentStore::save`]'s
/// check and write one step.
pub trait DocumentStore: Send + Sync {
    /// A document as stored now, with its revision; `None` when there is
    /// none.
    fn load(
        &self,
        account: &AccountId,
        doc_type: &DocType,
        id: &DocId,
    ) -> Result<Option<(Object, Revision)>, String>;
    /// Writes a document (without its `id` key): always with `expected`
    /// `None`, else only if the stored revision is still `expected`.
    fn save(
        &self,
        account: &AccountId,
        doc_type: &DocType,
        id: &DocId,
        body: &Object,
        expected: Option<Revision>,
    ) -> Result<Swap, String>;
}

/// An account snapshot plus the writes made since.
pub struct Overlay {
    base: Arc<AccountFlows>,
    writes: RefCell<BTreeMap<(String, String), Arc<Object>>>,
    store: Option<Arc<dyn DocumentStore>>,
    /// Writes so far.
    generation: std::cell::Cell<u64>,
}

impl Overlay {
    pub fn new(base: Arc<AccountFlows>, store: Option<Arc<dyn DocumentStore>>) -> Self {
        Self {
            base,
            writes: RefCell::new(BTreeMap::new()),
            store,
            generation: std::cell::Cell::new(0),
        }
    }

    fn remember(&self, doc_type: &DocType, id: &DocId, body: Object) {
        self.writes
            .borrow_mut()
            .insert((doc_type.to_string(), id.to_string()), Arc::new(body));
        self.generation.set(self.generation.get() + 1);
    }
}

impl Documents for Overlay {
    fn generation(&self) -> u64 {
        self.generation.get()
    }

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
        if let Some(store) = &self.store {
            store.save(&self.base.account.id, doc_type, id, &body, None)?;
        }
        self.remember(doc_type, id, body);
        Ok(())
    }

    fn current(
        &self,
        doc_type: &DocType,
        id: &DocId,
    ) -> Result<(Option<Arc<Object>>, Revision), String> {
        if let Some(store) = &self.store {
            return Ok(match store.load(&self.base.account.id, doc_type, id)? {
                Some((body, revision)) => (Some(Arc::new(body)), revision),
                None => (None, Revision::ABSENT),
            });
        }
        let body = self.get(doc_type.as_str(), id.as_str());
        let revision = body.as_deref().map_or(Revision::ABSENT, Revision::of);
        Ok((body, revision))
    }

    fn put_if(
        &self,
        doc_type: &DocType,
        id: &DocId,
        expected: Revision,
        mut body: Object,
    ) -> Result<Swap, String> {
        body.remove("id");
        let swap = if let Some(store) = &self.store {
            store.save(&self.base.account.id, doc_type, id, &body, Some(expected))?
        } else {
            // Only this call writes here: the check is against its own view.
            let now = self.get(doc_type.as_str(), id.as_str());
            if now.as_deref().map_or(Revision::ABSENT, Revision::of) == expected {
                Swap::Written
            } else {
                Swap::Conflict
            }
        };
        if swap == Swap::Written {
            self.remember(doc_type, id, body);
        }
        Ok(swap)
    }
}

/// A [`DocumentStore`] in memory, starting from a catalog's documents:
/// what simulations of calls side by side share (the check and the write
/// happen under one mutex).
pub struct MemoryStore {
    docs: Mutex<BTreeMap<(String, String, String), Arc<Object>>>,
}

impl MemoryStore {
    /// A store holding every document of the catalog's accounts.
    pub fn new(catalog: &Catalog) -> Self {
        let mut docs = BTreeMap::new();
        for account in catalog.accounts() {
            for (doc_type, of_type) in &account.documents {
                for (id, doc) in of_type {
                    docs.insert(
                        (
                            account.account.id.to_string(),
                            doc_type.to_string(),
                            id.to_string(),
                        ),
                        Arc::clone(&doc.body),
                    );
                }
            }
        }
        Self {
            docs: Mutex::new(docs),
        }
    }

    /// A document as stored now.
    pub fn get(&self, account: &str, doc_type: &str, id: &str) -> Option<Arc<Object>> {
        self.docs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(account.to_owned(), doc_type.to_owned(), id.to_owned()))
            .cloned()
    }
}

impl DocumentStore for MemoryStore {
    fn load(
        &self,
        account: &AccountId,
        doc_type: &DocType,
        id: &DocId,
    ) -> Result<Option<(Object, Revision)>, String> {
        Ok(self
            .get(account.as_str(), doc_type.as_str(), id.as_str())
            .map(|body| ((*body).clone(), Revision::of(&body))))
    }

    fn save(
        &self,
        account: &AccountId,
        doc_type: &DocType,
        id: &DocId,
        body: &Object,
        expected: Option<Revision>,
    ) -> Result<Swap, String> {
        let mut docs = self.docs.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (account.to_string(), doc_type.to_string(), id.to_string());
        if let Some(expected) = expected {
            let now = docs
                .get(&key)
                .map_or(Revision::ABSENT, |body| Revision::of(body));
            if now != expected {
                return Ok(Swap::Conflict);
            }
        }
        docs.insert(key, Arc::new(body.clone()));
        Ok(Swap::Written)
    }
}
