//! Hot reload: scripts and flows as immutable *generations*, rebuilt off the
//! call threads and published whole.
//!
//! A [`Reloader`] owns the current [`Generation`] (module set + catalog,
//! numbered). [`Reloader::reload`] reads every script and flow afresh,
//! compiles and smoke-loads the scripts in a scratch VM
//! ([`ModuleSet::load`]), builds the catalog, and publishes generation N+1
//! only if that introduced no error the current generation does not have:
//! a syntax error, a module without `handle`, invalid JSON or a callflow that
//! fails validation keeps the last good generation, and the new errors wait
//! in [`Status::pending`] until a fixed file is reloaded. A call takes the
//! current generation when it starts and keeps it to the end.
//!
//! Nothing a request waits on is held for a rebuild: one lock keeps full
//! reloads one at a time, publishing (reading the current generation and
//! swapping in the next) holds another for a moment, and the status
//! counters a third, so [`Reloader::current`] and [`Reloader::status`]
//! answer at once during the longest reload. A full reload builds without
//! blocking account writes and publishes only if no write published in the
//! meantime (else it builds again; the last of [`REBUILD_TRIES`] holds the
//! publishing lock while it builds, so it always ends).
//!
//! What a tenant sees is scoped: [`Reloader::status_for`] and
//! [`Reloader::notices`] show an account only the errors of its own files
//! and of the shared scripts, with paths relative to the flows directory
//! (or naming the scripts directory), never another account's.
//!
//! Triggers: [`watch`] (notify, debounced, recursive on directories; only
//! `.lua` and `.json` files count, hidden files, backups and swap files do
//! not), [`Poller`] (a content-hash check on a timer, for file systems
//! inotify misses), and explicit calls (`POST /v2/reload`, SIGHUP).
//!
//! The server's own writes are published once: a document written through
//! the API (or by a call) is published by [`Reloader::reload_document`],
//! which remembers the content it published for that file; a watch batch
//! or a poll whose changed files all still hold what was published is not
//! reloaded again (counted in [`Status::own_writes_skipped`]). A full
//! reload forgets these records (it read everything afresh).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::time::Duration;

use notify_debouncer_full::notify::RecommendedWatcher;
use notify_debouncer_full::notify::{EventKind, RecursiveMode, event::AccessKind};
use notify_debouncer_full::{
    DebounceEventResult, DebouncedEvent, RecommendedCache, new_debouncer_opt,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::catalog::{AccountFlows, Catalog};
use crate::host::ModuleSet;
use crate::ids::{AccountId, DocId, DocType};
use crate::model::Diagnostic;
use crate::store::{FlowsDir, Store, StoreError};

/// Where a server's scripts and flows live.
#[derive(Debug, Clone)]
pub struct Paths {
    pub flows: PathBuf,
    /// `--scripts` directories (the built-in scripts are in the binary).
    pub scripts: Vec<PathBuf>,
}

/// Scripts and flows as one consistent, immutable whole.
#[derive(Debug)]
pub struct Generation {
    /// 1 for the first load, then one more per publication.
    pub number: u64,
    pub modules: Arc<ModuleSet>,
    pub catalog: Arc<Catalog>,
    /// When it was published (wall clock, for the status only).
    pub loaded_at: jiff::Timestamp,
    /// Every diagnostic of its scripts and flows (errors it was published
    /// with, warnings).
    pub diagnostics: Vec<Diagnostic>,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A new generation is current.
    Published { generation: u64 },
    /// The change brought errors: the last good generation stays.
    Rejected {
        generation: u64,
        errors: Vec<Diagnostic>,
    },
}

/// The reloader's state, as `GET /v2/reload` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The generation calls start on.
    pub generation: u64,
    /// When it was published (RFC 3339).
    pub loaded_at: String,
    /// Reloads tried, and how many were rejected.
    pub reloads: u64,
    pub rejected: u64,
    /// What triggered the last reload (`watch`, `poll`, `api`, `SIGHUP`, ...).
    pub last_trigger: Option<String>,
    /// The errors of the last reload when it was rejected (empty once a
    /// reload succeeds).
    pub pending: Vec<Diagnostic>,
    /// The trigger of the reload under way, if one is.
    pub running: Option<String>,
    /// Watch batches and polls that found only the server's own writes,
    /// already published, and so reloaded nothing.
    pub own_writes_skipped: u64,
}

/// Who looks at the reloader's state: the operator sees every problem, an
/// account those of its own files and of the shared scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer<'a> {
    Operator,
    Account(&'a str),
}

/// How many times a full reload builds before it holds the publishing lock
/// over its build (account writes published while it built make it build
/// again: its files were read before them).
pub const REBUILD_TRIES: usize = 3;

#[derive(Debug, Default)]
struct Counters {
    /// Bumped by every change (see [`CountersMut`]).
    changes: u64,
    reloads: u64,
    rejected: u64,
    last_trigger: Option<String>,
    pending: Vec<Diagnostic>,
    /// Content hashes of the files as the last reload read them (with the
    /// server's own writes since).
    files: Option<FileHashes>,
    /// The trigger of the reload under way.
    running: Option<String>,
    /// Files the server wrote and published since the last full reload:
    /// the SHA-256 of the content published, `None` for a removed file.
    own_writes: BTreeMap<PathBuf, Option<[u8; 32]>>,
    own_writes_skipped: u64,
}

/// Told the result of every reload, whatever triggered it.
pub type Observer = Arc<dyn Fn(&str, &Result<Outcome, StoreError>) + Send + Sync>;

/// Owns the current generation and builds the next.
pub struct Reloader {
    paths: Paths,
    /// Where full reloads read the flows (the flows directory, or a test's
    /// store around it).
    store: Arc<dyn Store + Send + Sync>,
    /// Written only to swap one `Arc` for another (the old one is dropped
    /// after the lock is released).
    current: RwLock<Arc<Generation>>,
    /// Full reloads happen one at a time (held for a whole rebuild; no
    /// request waits on it).
    rebuilding: Mutex<()>,
    /// Publications (full reloads and account writes) happen one at a time;
    /// held to read the current generation and swap in the next.
    publishing: Mutex<()>,
    /// What the status shows; held only to read or bump it.
    counters: Mutex<Counters>,
    /// Notified whenever `counters` change ([`Reloader::wait_until`]).
    counters_changed: Condvar,
    observer: RwLock<Option<Observer>>,
}

/// [`Reloader::counters_mut`]'s guard: counts the change and wakes the
/// waiters when dropped.
struct CountersMut<'a> {
    guard: std::sync::MutexGuard<'a, Counters>,
    changed: &'a Condvar,
}

impl std::ops::Deref for CountersMut<'_> {
    type Target = Counters;
    fn deref(&self) -> &Counters {
        &self.guard
    }
}

impl std::ops::DerefMut for CountersMut<'_> {
    fn deref_mut(&mut self) -> &mut Counters {
        &mut self.guard
    }
}

impl Drop for CountersMut<'_> {
    fn drop(&mut self) {
        self.guard.changes = self.guard.changes.wrapping_add(1);
        self.changed.notify_all();
    }
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("paths", &self.paths)
            .field("generation", &self.current().number)
            .finish_non_exhaustive()
    }
}

/// An error's identity, to tell a new error from one the current generation
/// already has.
fn error_key(d: &Diagnostic) -> (String, String, String, String, Option<usize>) {
    (
        d.file.clone(),
        d.pointer.clone(),
        d.code.to_string(),
        d.message.clone(),
        d.line,
    )
}

impl Reloader {
    /// Loads generation 1 (whatever its errors: they are reported, not
    /// refused, as `callflow check` would report them). Err when the flows
    /// directory cannot be read at all.
    pub fn load(paths: Paths) -> Result<(Self, Vec<Diagnostic>), StoreError> {
        let store = Arc::new(FlowsDir::new(&paths.flows));
        Self::load_with_store(paths, store)
    }

    /// [`Reloader::load`] with full reloads reading the flows from `store`
    /// (account writes still re-read the flows directory).
    pub fn load_with_store(
        paths: Paths,
        store: Arc<dyn Store + Send + Sync>,
    ) -> Result<(Self, Vec<Diagnostic>), StoreError> {
        let files = file_hashes(&paths);
        let generation = build(&paths, store.as_ref(), 1)?;
        let diagnostics = generation.diagnostics.clone();
        let reloader = Self {
            paths,
            store,
            current: RwLock::new(Arc::new(generation)),
            rebuilding: Mutex::new(()),
            publishing: Mutex::new(()),
            counters: Mutex::new(Counters {
                files: Some(files),
                ..Counters::default()
            }),
            counters_changed: Condvar::new(),
            observer: RwLock::new(None),
        };
        Ok((reloader, diagnostics))
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// The generation new calls start on.
    pub fn current(&self) -> Arc<Generation> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Who to tell of each reload's result (the console, `callflow dev`).
    pub fn set_observer(&self, observer: Observer) {
        *self
            .observer
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(observer);
    }

    /// Reads everything afresh and publishes it unless it brings new errors.
    /// `trigger` says why (it shows in the status and reaches the observer).
    pub fn reload(&self, trigger: &str) -> Result<Outcome, StoreError> {
        let result = self.rebuild(trigger);
        let observer = self
            .observer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(observer) = observer {
            observer(trigger, &result);
        }
        result
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The counters, to change them: waiters of [`Reloader::wait_until`]
    /// look again once the guard drops.
    fn counters_mut(&self) -> CountersMut<'_> {
        CountersMut {
            guard: self.counters(),
            changed: &self.counters_changed,
        }
    }

    /// Waits until `done` holds for the status, looking again whenever the
    /// reloader's counters change (a reload, a rejected one, a skipped own
    /// write); gives up (false) once `quiet` passes with no change. For
    /// tests and tools that wait on the reloader rather than on a clock.
    pub fn wait_until(&self, quiet: Duration, done: impl Fn(&Status) -> bool) -> bool {
        loop {
            let seen = self.counters().changes;
            if done(&self.status()) {
                return true;
            }
            let counters = self.counters();
            let (counters, waited) = self
                .counters_changed
                .wait_timeout_while(counters, quiet, |c| c.changes == seen)
                .unwrap_or_else(PoisonError::into_inner);
            if waited.timed_out() && counters.changes == seen {
                return false;
            }
        }
    }

    /// Makes `next` current; the generation it replaces is dropped after the
    /// lock (freeing a catalog takes time when it is the last reference).
    fn swap(&self, next: Generation) {
        let old = {
            let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
            std::mem::replace(&mut *current, Arc::new(next))
        };
        drop(old);
    }

    fn rebuild(&self, trigger: &str) -> Result<Outcome, StoreError> {
        let _one = self
            .rebuilding
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let files = file_hashes(&self.paths);
        {
            let mut counters = self.counters_mut();
            counters.reloads += 1;
            counters.last_trigger = Some(trigger.to_owned());
            counters.files = Some(files);
            counters.running = Some(trigger.to_owned());
            // Everything is read afresh: what the server wrote is in it.
            counters.own_writes.clear();
        }
        let result = self.build_and_publish();
        let mut counters = self.counters_mut();
        counters.running = None;
        match &result {
            Ok(Outcome::Rejected { errors, .. }) => {
                counters.rejected += 1;
                counters.pending.clone_from(errors);
            }
            Ok(Outcome::Published { .. }) => counters.pending.clear(),
            Err(_) => {}
        }
        result
    }

    /// Builds the next generation from the files and publishes it unless it
    /// brings new errors; builds again when an account write published
    /// while it built (see [`REBUILD_TRIES`]).
    fn build_and_publish(&self) -> Result<Outcome, StoreError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let last = tries >= REBUILD_TRIES;
            // The last try keeps account writes out while it builds.
            let held = last.then(|| {
                self.publishing
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
            });
            let current = self.current();
            let next = build(&self.paths, self.store.as_ref(), current.number + 1)?;
            let known: std::collections::BTreeSet<_> = current
                .diagnostics
                .iter()
                .filter(|d| d.is_error())
                .map(error_key)
                .collect();
            let errors: Vec<Diagnostic> = next
                .diagnostics
                .iter()
                .filter(|d| d.is_error() && !known.contains(&error_key(d)))
                .cloned()
                .collect();
            let _publishing = held.unwrap_or_else(|| {
                self.publishing
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
            });
            if self.current().number != current.number {
                // An account write was published while this built: its
                // files may predate that write.
                continue;
            }
            if !errors.is_empty() {
                return Ok(Outcome::Rejected {
                    generation: current.number,
                    errors,
                });
            }
            let number = next.number;
            self.swap(next);
            return Ok(Outcome::Published { generation: number });
        }
    }

    /// Publishes a generation whose account `flows` was rebuilt (after an
    /// API write), keeping the modules.
    pub fn publish_account(&self, flows: Arc<AccountFlows>, diagnostics: &[Diagnostic]) -> u64 {
        let _publishing = self
            .publishing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.publish_locked(flows, diagnostics)
    }

    /// [`Reloader::publish_account`], the publishing lock held.
    fn publish_locked(&self, flows: Arc<AccountFlows>, diagnostics: &[Diagnostic]) -> u64 {
        let current = self.current();
        let mut catalog = Catalog::clone(&current.catalog);
        let account = flows.account.id.clone();
        catalog.insert(flows);
        // The account's diagnostics are replaced by the rebuilt ones.
        let mut all: Vec<Diagnostic> = current
            .diagnostics
            .iter()
            .filter(|d| !self.of_account(&d.file, &account))
            .cloned()
            .collect();
        all.extend_from_slice(diagnostics);
        let next = Generation {
            number: current.number + 1,
            modules: Arc::clone(&current.modules),
            catalog: Arc::new(catalog),
            loaded_at: jiff::Timestamp::now(),
            diagnostics: all,
        };
        let number = next.number;
        self.swap(next);
        number
    }

    /// Re-reads one account from disk and publishes it in a new generation
    /// (after a write through the API or by a call): the next call sees it.
    /// Errors of the rebuild are logged; the account is published as far
    /// as it validates, as `callflow check` would report it.
    ///
    /// The files are read and built without the publishing lock (a large
    /// account takes a while), then published only if no other write
    /// published the account meanwhile (else that write's document could be
    /// overwritten by an older read); after two such races the last try
    /// reads under the lock.
    pub fn reload_account(&self, account: &AccountId) -> Result<(), StoreError> {
        const TRIES: usize = 3;
        let store = FlowsDir::new(&self.paths.flows);
        for attempt in 1..=TRIES {
            let last = attempt == TRIES;
            let held = last.then(|| {
                self.publishing
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
            });
            let read_from = self.current();
            let before = read_from.catalog.account(account.as_str()).cloned();
            let Some(sources) = store.read_one(account)? else {
                return Ok(());
            };
            let (built, diagnostics) = Catalog::build(sources, read_from.modules.as_ref());
            let _publishing = held.unwrap_or_else(|| {
                self.publishing
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
            });
            let now = self.current().catalog.account(account.as_str()).cloned();
            let unchanged = match (&before, &now) {
                (Some(before), Some(now)) => Arc::ptr_eq(before, now),
                (None, None) => true,
                _ => false,
            };
            if !unchanged && !last {
                continue;
            }
            for diag in diagnostics.iter().filter(|d| d.is_error()) {
                tracing::warn!("{diag}");
            }
            if let Some(flows) = built.account(account.as_str()) {
                self.publish_locked(Arc::clone(flows), &diagnostics);
            }
            return Ok(());
        }
        Ok(())
    }

    /// Re-reads one document (after a write through the API or by a call)
    /// and publishes its account in a new generation, updating only what
    /// that document touches ([`AccountFlows::with_document`]); falls back
    /// to [`Reloader::reload_account`] when only a full rebuild is right.
    pub fn reload_document(
        &self,
        account: &AccountId,
        doc_type: &DocType,
        id: &DocId,
    ) -> Result<(), StoreError> {
        let store = FlowsDir::new(&self.paths.flows);
        // Held from reading the generation to publishing the next, so a
        // concurrent write to the same account cannot be lost.
        let publishing = self
            .publishing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.current();
        let Some(flows) = current.catalog.account(account.as_str()) else {
            drop(publishing);
            return self.reload_account(account);
        };
        let path = store
            .document_path(account, doc_type, id)
            .display()
            .to_string();
        let Ok(file) = store.read_source(account, doc_type, id) else {
            // Unreadable now: the full read reports it as `check` would.
            drop(publishing);
            return self.reload_account(account);
        };
        let text = file.map(|file| file.text);
        let written = (
            store.document_path(account, doc_type, id),
            text.as_deref().map(content_hash),
        );
        let diagnostics: Vec<Diagnostic> = current
            .diagnostics
            .iter()
            .filter(|d| self.of_account(&d.file, account))
            .cloned()
            .collect();
        let updated = flows.with_document(
            (doc_type, id, &path),
            text.as_deref(),
            &diagnostics,
            current.modules.as_ref(),
            &current.catalog,
        );
        let Some((next, diagnostics)) = updated else {
            drop(publishing);
            self.reload_account(account)?;
            self.note_own_write(&written.0, written.1);
            return Ok(());
        };
        for diag in diagnostics
            .iter()
            .filter(|d| d.is_error() && d.file == path)
        {
            tracing::warn!("{diag}");
        }
        self.publish_locked(Arc::new(next), &diagnostics);
        self.note_own_write(&written.0, written.1);
        Ok(())
    }

    /// Remembers that `path` was published holding content `hash` (`None`:
    /// removed), so that the watcher and the poller do not reload it again.
    fn note_own_write(&self, path: &Path, hash: Option<[u8; 32]>) {
        self.counters_mut().own_writes.insert(normal(path), hash);
    }

    /// Remembers that the server wrote `path` itself with content that needs
    /// no reload (a login noting an API key's last use in `account.json`):
    /// the watcher and the poller leave it while it holds that content.
    pub fn note_own_file(&self, path: &Path) {
        if let Ok(bytes) = std::fs::read(path) {
            self.note_own_write(path, Some(content_hash(bytes)));
        }
    }

    /// Whether every one of `paths` (changed, as the watcher saw them) is a
    /// file the server wrote and published and that still holds what was
    /// published: then there is nothing to reload. Waits for a publication
    /// under way (the write it publishes is recorded when it ends).
    fn only_own_writes(&self, paths: &[&Path]) -> bool {
        let _publishing = self
            .publishing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let root = crate::store::files::canonical_root(&self.paths.flows);
        let limit = crate::limits::DocumentLimits::DEFAULT.max_document_bytes;
        let mut counters = self.counters_mut();
        let all = !paths.is_empty()
            && paths
                .iter()
                .all(|path| match counters.own_writes.get(&normal(path)) {
                    Some(Some(hash)) => crate::store::files::read_limited(path, &root, limit)
                        .is_ok_and(|bytes| content_hash(&bytes) == *hash),
                    Some(None) => std::fs::symlink_metadata(path).is_err(),
                    None => false,
                });
        if all {
            counters.own_writes_skipped += 1;
            tracing::info!("reload (watch) skipped: the files hold what the server wrote itself");
        }
        all
    }

    /// Warnings for the traces of `account`'s calls made while a reload is
    /// rejected: each pending error of its own files or of the scripts,
    /// with its file (relative) and line. Another account's problems are
    /// only said to exist, never named.
    pub fn notices(&self, account: &str) -> Vec<String> {
        let status = self.status();
        let visible = self.visible(&status.pending, Viewer::Account(account));
        let mut notices: Vec<String> = visible
            .iter()
            .map(|error| {
                let at = match error.line {
                    Some(line) => format!("{}:{line}", error.file),
                    None => error.file.clone(),
                };
                format!(
                    "the last reload was rejected, calls run generation {}: {at}: {}",
                    status.generation, error.message
                )
            })
            .collect();
        if notices.is_empty() && !status.pending.is_empty() {
            notices.push(format!(
                "the last reload was rejected (errors outside this account), calls run generation {}",
                status.generation
            ));
        }
        notices
    }

    /// The current generation and the last reload's result, every problem
    /// with its path as read (the operator's console view).
    pub fn status(&self) -> Status {
        let current = self.current();
        let counters = self.counters();
        Status {
            generation: current.number,
            loaded_at: current.loaded_at.to_string(),
            reloads: counters.reloads,
            rejected: counters.rejected,
            last_trigger: counters.last_trigger.clone(),
            pending: counters.pending.clone(),
            running: counters.running.clone(),
            own_writes_skipped: counters.own_writes_skipped,
        }
    }

    /// The status as `viewer` may see it: pending errors scoped to it, with
    /// paths relative to the flows directory.
    pub fn status_for(&self, viewer: Viewer<'_>) -> Status {
        let mut status = self.status();
        status.pending = self.visible(&status.pending, viewer);
        status
    }

    /// The diagnostics `viewer` may see, with paths it may see: flows files
    /// relative to the flows directory (`acme/callflows/x.json`), scripts
    /// as `<scripts directory name>/<file>`. Accounts see their own files
    /// and the scripts; the operator everything.
    pub fn visible(&self, diagnostics: &[Diagnostic], viewer: Viewer<'_>) -> Vec<Diagnostic> {
        diagnostics
            .iter()
            .filter_map(|d| {
                let (file, owner) = self.shown_path(&d.file);
                let allowed = match (viewer, owner) {
                    (Viewer::Operator, _) | (Viewer::Account(_), Owner::Everyone) => true,
                    (Viewer::Account(account), Owner::Account(owner)) => account == owner,
                    (Viewer::Account(_), Owner::Operator) => false,
                };
                allowed.then(|| {
                    let mut d = d.clone();
                    d.file = file;
                    if matches!(viewer, Viewer::Account(_)) {
                        match d.code {
                            crate::model::Code::NumberInOtherAccount => {
                                d.message = crate::catalog::tenant_message(&d.message);
                            }
                            crate::model::Code::RealmInOtherAccount => {
                                d.message = crate::catalog::realm_tenant_message(&d.message);
                            }
                            _ => {}
                        }
                    }
                    d
                })
            })
            .collect()
    }

    /// Whether a diagnostic's file is one of `account`'s (under
    /// `<flows>/<account>/`, by path components, not by text).
    fn of_account(&self, file: &str, account: &AccountId) -> bool {
        matches!(self.shown_path(file).1, Owner::Account(owner) if owner == account.as_str())
    }

    /// A diagnostic's file as shown, and whose it is.
    fn shown_path<'f>(&self, file: &'f str) -> (String, Owner<'f>) {
        let path = Path::new(file);
        if let Ok(rest) = path.strip_prefix(&self.paths.flows) {
            let shown = slashed(rest);
            let mut parts = rest.components();
            let first = parts.next().and_then(|c| c.as_os_str().to_str());
            let owner = match (first, parts.next()) {
                (Some(account), Some(_)) => Owner::Account(account),
                _ => Owner::Operator,
            };
            return (shown, owner);
        }
        for dir in &self.paths.scripts {
            if let Ok(rest) = path.strip_prefix(dir) {
                let name = dir.file_name().map_or_else(
                    || "scripts".to_owned(),
                    |n| n.to_string_lossy().into_owned(),
                );
                return (format!("{name}/{}", slashed(rest)), Owner::Everyone);
            }
        }
        if file.starts_with(crate::host::scripts::BUILTIN_PREFIX) {
            return (file.to_owned(), Owner::Everyone);
        }
        (file.to_owned(), Owner::Operator)
    }

    /// Whether the files changed since the last reload read them, the
    /// server's own published writes aside (those are taken in as read).
    fn changed(&self) -> bool {
        let now = file_hashes(&self.paths);
        let mut counters = self.counters_mut();
        let Some(before) = &counters.files else {
            return true;
        };
        if *before == now {
            return false;
        }
        let own = before
            .keys()
            .chain(now.keys())
            .filter(|path| before.get(*path) != now.get(*path))
            .all(|path| match counters.own_writes.get(&normal(path)) {
                Some(Some(hash)) => now.get(path).is_some_and(|(h, _)| h == hash),
                Some(None) => !now.contains_key(path),
                None => false,
            });
        if own {
            counters.files = Some(now);
            counters.own_writes_skipped += 1;
            tracing::info!("reload (poll) skipped: the files hold what the server wrote itself");
        }
        !own
    }
}

/// Whose problem a file is.
enum Owner<'f> {
    /// A file of this account.
    Account(&'f str),
    /// The scripts every account runs.
    Everyone,
    /// Anything else (the flows directory itself, unknown places).
    Operator,
}

/// A relative path with `/` separators.
fn slashed(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn build(paths: &Paths, store: &dyn Store, number: u64) -> Result<Generation, StoreError> {
    let (modules, mut diagnostics) = ModuleSet::load(&paths.scripts, number);
    let sources = store.read()?;
    let (catalog, flow_diagnostics) = Catalog::build(sources, &modules);
    diagnostics.extend(flow_diagnostics);
    Ok(Generation {
        number,
        modules: Arc::new(modules),
        catalog: Arc::new(catalog),
        loaded_at: jiff::Timestamp::now(),
        diagnostics,
    })
}

/// Whether a path is one reloads care about: a `.lua` or `.json` file that
/// is not hidden (`.x.swp`, editors' temporary files), a backup (`x~`) or
/// vim's write test file (`4913`).
pub fn is_relevant(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    if name.starts_with('.') || name.ends_with('~') || name == "4913" {
        return false;
    }
    path.extension()
        .is_some_and(|ext| ext == "lua" || ext == "json")
}

/// Whether a debounced batch calls for a reload: a relevant file was
/// created, changed, renamed, removed or closed after writing (reading and
/// opening do not count).
pub fn needs_reload(events: &[DebouncedEvent]) -> bool {
    events.iter().any(|e| {
        let counts = match e.event.kind {
            EventKind::Create(_)
            | EventKind::Modify(_)
            | EventKind::Remove(_)
            | EventKind::Access(AccessKind::Close(_)) => true,
            EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
        };
        counts && e.event.paths.iter().any(|p| is_relevant(p))
    })
}

/// Each relevant file under the paths with the SHA-256 of its content and
/// its length. Only what the store reads counts (no FIFO to block the
/// poller, no device that never ends: see [`crate::store::files`]; such a
/// file counts by name and length, with an all-zero hash), directories are
/// not followed through symbolic links, and at most a document's size limit
/// of each file is read.
type FileHashes = BTreeMap<PathBuf, ([u8; 32], u64)>;

fn file_hashes(paths: &Paths) -> FileHashes {
    let mut files = Vec::new();
    let flows = crate::store::files::canonical_root(&paths.flows);
    collect(&paths.flows, &flows, &mut files);
    for dir in &paths.scripts {
        collect(dir, &crate::store::files::canonical_root(dir), &mut files);
    }
    let limit = crate::limits::DocumentLimits::DEFAULT.max_document_bytes;
    files
        .into_iter()
        .map(|(file, root)| {
            // What the store would refuse (a FIFO, a link out, a huge file)
            // counts by name only: reading it could block or never end.
            let hash = crate::store::files::read_limited(&file, &root, limit)
                .map_or([0; 32], |bytes| content_hash(&bytes));
            let len = std::fs::symlink_metadata(&file).map_or(0, |meta| meta.len());
            (file, (hash, len))
        })
        .collect()
}

/// A content hash of every relevant file under the paths (names, contents
/// and lengths, in a stable order; see [`file_hashes`]).
pub fn fingerprint(paths: &Paths) -> String {
    let mut hash = Sha256::new();
    for (file, (content, len)) in file_hashes(paths) {
        hash.update(file.to_string_lossy().as_bytes());
        hash.update([0]);
        hash.update(content);
        hash.update(len.to_le_bytes());
        hash.update([0]);
    }
    hash.finalize().iter().fold(String::new(), |mut out, b| {
        use std::fmt::Write;
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn content_hash(bytes: impl AsRef<[u8]>) -> [u8; 32] {
    Sha256::digest(bytes.as_ref()).into()
}

/// A path as the same file's records know it, however it was spelled: its
/// folder resolved (the file itself may be gone).
fn normal(path: &Path) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .map_or_else(|_| path.to_path_buf(), |parent| parent.join(name)),
        _ => path.to_path_buf(),
    }
}

/// The relevant files a debounced batch changed (see [`needs_reload`]).
fn changed_paths(events: &[DebouncedEvent]) -> Vec<&Path> {
    let mut paths: Vec<&Path> = events
        .iter()
        .filter(|e| {
            matches!(
                e.event.kind,
                EventKind::Create(_)
                    | EventKind::Modify(_)
                    | EventKind::Remove(_)
                    | EventKind::Access(AccessKind::Close(_))
            )
        })
        .flat_map(|e| e.event.paths.iter())
        .map(PathBuf::as_path)
        .filter(|p| is_relevant(p))
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

fn collect(dir: &Path, root: &Path, out: &mut Vec<(PathBuf, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        // Not through links: a link to `/` must not make this walk the disk.
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir {
            if !hidden {
                collect(&path, root, out);
            }
        } else if is_relevant(&path) {
            out.push((path, root.to_path_buf()));
        }
    }
}

/// Why watching could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {path}: {message}")]
pub struct WatchError {
    pub path: String,
    pub message: String,
}

/// The file watcher; stops when dropped.
pub struct Watcher {
    debouncer: Option<
        notify_debouncer_full::Debouncer<
            notify_debouncer_full::notify::RecommendedWatcher,
            notify_debouncer_full::RecommendedCache,
        >,
    >,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").finish_non_exhaustive()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // Dropping the debouncer closes the channel, which ends the thread.
        drop(self.debouncer.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The default debounce: editors' saves settle well within it, and it keeps
/// the time from a save to the new code well under a quarter second.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(100);

/// Watches the flows directory and every scripts directory (recursively, by
/// directory, so atomic saves are seen) and reloads after each debounced
/// batch of relevant changes (the reloader's observer hears the outcome).
pub fn watch(reloader: Arc<Reloader>, debounce: Duration) -> Result<Watcher, WatchError> {
    let (tx, rx) = mpsc::channel::<DebounceEventResult>();
    // Symbolic links are not followed, as the store does not follow them
    // to folders: `flows/x -> /` must not put a watch on the whole disk.
    let config = notify_debouncer_full::notify::Config::default().with_follow_symlinks(false);
    let mut debouncer = new_debouncer_opt::<_, RecommendedWatcher, RecommendedCache>(
        debounce,
        None,
        tx,
        RecommendedCache::new(),
        config,
    )
    .map_err(|e| WatchError {
        path: String::new(),
        message: e.to_string(),
    })?;
    let paths = reloader.paths().clone();
    for dir in std::iter::once(&paths.flows).chain(&paths.scripts) {
        debouncer
            .watch(dir, RecursiveMode::Recursive)
            .map_err(|e| WatchError {
                path: dir.display().to_string(),
                message: e.to_string(),
            })?;
    }
    let thread = std::thread::Builder::new()
        .name("callflow-watch".into())
        .spawn(move || {
            for batch in rx {
                match batch {
                    Ok(events) if needs_reload(&events) => {
                        if reloader.only_own_writes(&changed_paths(&events)) {
                            tracing::debug!(
                                "watch: only the server's own writes, already published"
                            );
                        } else {
                            let _ = reloader.reload("watch");
                        }
                    }
                    Ok(_) => {}
                    Err(errors) => {
                        for error in errors {
                            tracing::warn!("file watcher: {error}");
                        }
                    }
                }
            }
        })
        .map_err(|e| WatchError {
            path: String::new(),
            message: e.to_string(),
        })?;
    Ok(Watcher {
        debouncer: Some(debouncer),
        thread: Some(thread),
    })
}

/// The periodic content-hash check; stops when dropped.
#[derive(Debug)]
pub struct Poller {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Poller {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Poller {
    /// Every `interval`, hashes the files and reloads when they changed
    /// since the last reload (whoever triggered it).
    pub fn start(reloader: Arc<Reloader>, interval: Duration) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("callflow-poll".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    if reloader.changed() {
                        let _ = reloader.reload("poll");
                    }
                }
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// Where a server's calls (real ones, and simulations asked to persist)
/// keep the documents they write (`call:save_doc`, `call:update_doc`): the flows directory, each write published as an API
/// write is. Shared by every worker thread; the compare-and-swap of
/// `update_doc` is the flows directory's (a lock on the document's folder).
pub struct Published {
    pub reloader: Arc<Reloader>,
}

impl Published {
    fn flows(&self) -> FlowsDir {
        FlowsDir::new(&self.reloader.paths().flows)
    }
}

impl crate::engine::DocumentStore for Published {
    fn load(
        &self,
        account: &AccountId,
        doc_type: &DocType,
        id: &DocId,
    ) -> Result<Option<(crate::model::Object, crate::engine::Revision)>, String> {
        self.flows().load(account, doc_type, id)
    }

    fn save(
        &self,
        account: &AccountId,
        doc_type: &DocType,
        id: &DocId,
        body: &crate::model::Object,
        expected: Option<crate::engine::Revision>,
    ) -> Result<crate::engine::Swap, String> {
        let swap = self.flows().save(account, doc_type, id, body, expected)?;
        if swap == crate::engine::Swap::Written {
            self.reloader
                .reload_document(account, doc_type, id)
                .map_err(|e| e.to_string())?;
        }
        Ok(swap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify_debouncer_full::notify::event::{CreateKind, Event, ModifyKind, RemoveKind};

    #[allow(clippy::disallowed_methods)] // the event's time stamp, unused by the filter
    fn event(kind: EventKind, path: &str) -> DebouncedEvent {
        DebouncedEvent::new(
            Event::new(kind).add_path(PathBuf::from(path)),
            std::time::Instant::now(),
        )
    }

    /// A document the server wrote and published is not reloaded again by
    /// the watcher or the poller; anyone else's change to it is.
    #[test]
    fn the_servers_own_write_is_published_once() {
        let dir = tempfile::tempdir().unwrap();
        let flows = dir.path().join("flows");
        let callflows = flows.join("acme/callflows");
        std::fs::create_dir_all(&callflows).unwrap();
        let main = callflows.join("main.json");
        let doc = |number: &str| {
            format!(r#"{{"numbers": ["{number}"], "flow": {{"module": "answer"}}}}"#)
        };
        std::fs::write(&main, doc("100")).unwrap();
        let (reloader, _) = Reloader::load(Paths {
            flows: flows.clone(),
            scripts: vec![],
        })
        .unwrap();
        let (account, callflows_type, id) = (
            AccountId::new("acme").unwrap(),
            DocType::new("callflows").unwrap(),
            DocId::new("main").unwrap(),
        );
        // What the API does: write the document, then publish it.
        crate::store::write_file(&main, &doc("101")).unwrap();
        reloader
            .reload_document(&account, &callflows_type, &id)
            .unwrap();
        assert_eq!(reloader.current().number, 2);
        // Spelled another way, as a watcher may report it.
        let spelled = dir.path().join("flows/acme/../acme/callflows/main.json");
        assert!(reloader.only_own_writes(&[spelled.as_path()]));
        assert!(!reloader.changed(), "the poller takes the write as read");
        assert_eq!(reloader.status().own_writes_skipped, 2);
        assert_eq!(reloader.status().reloads, 0);
        // A file the server did not write is a change.
        let other = callflows.join("other.json");
        std::fs::write(&other, doc("102")).unwrap();
        assert!(!reloader.only_own_writes(&[main.as_path(), other.as_path()]));
        assert!(reloader.changed());
        std::fs::remove_file(&other).unwrap();
        assert!(!reloader.changed());
        // Someone else edits the document: a change.
        std::fs::write(&main, doc("103")).unwrap();
        assert!(!reloader.only_own_writes(&[main.as_path()]));
        assert!(reloader.changed());
        assert_eq!(reloader.status().own_writes_skipped, 2);
        // A removal the server published is its own too.
        reloader.reload("test").unwrap();
        std::fs::remove_file(&main).unwrap();
        reloader
            .reload_document(&account, &callflows_type, &id)
            .unwrap();
        assert!(reloader.only_own_writes(&[main.as_path()]));
        assert!(!reloader.changed());
        // A full reload forgets the records.
        reloader.reload("test").unwrap();
        assert!(!reloader.only_own_writes(&[main.as_path()]));
        assert!(!reloader.only_own_writes(&[]));
    }

    /// Who sees which problem, and under which name.
    #[test]
    fn problems_are_scoped_to_their_account() {
        let dir = tempfile::tempdir().unwrap();
        let flows = dir.path().join("flows");
        std::fs::create_dir_all(&flows).unwrap();
        let scripts = dir.path().join("site-scripts");
        let (reloader, _) = Reloader::load(Paths {
            flows: flows.clone(),
            scripts: vec![scripts.clone()],
        })
        .unwrap();
        let problem = |file: &Path| {
            Diagnostic::error(crate::model::Code::Io, "", "broken")
                .in_file(&file.display().to_string())
        };
        let all = [
            problem(&flows.join("acme/callflows/a.json")),
            problem(&flows.join("acme2/callflows/b.json")),
            problem(&flows.join("stray.json")),
            problem(&scripts.join("play.lua")),
            problem(Path::new("builtin/menu.lua")),
            problem(Path::new("/elsewhere/x.json")),
        ];
        let shown = |viewer| -> Vec<String> {
            reloader
                .visible(&all, viewer)
                .into_iter()
                .map(|d| d.file)
                .collect()
        };
        assert_eq!(
            shown(Viewer::Account("acme")),
            [
                "acme/callflows/a.json",
                "site-scripts/play.lua",
                "builtin/menu.lua"
            ]
        );
        assert_eq!(
            shown(Viewer::Account("acme2")),
            [
                "acme2/callflows/b.json",
                "site-scripts/play.lua",
                "builtin/menu.lua"
            ]
        );
        assert_eq!(
            shown(Viewer::Operator),
            [
                "acme/callflows/a.json",
                "acme2/callflows/b.json",
                "stray.json",
                "site-scripts/play.lua",
                "builtin/menu.lua",
                "/elsewhere/x.json"
            ]
        );
    }

    #[test]
    fn relevant_files() {
        for yes in ["scripts/play.lua", "flows/a/callflows/x.json"] {
            assert!(is_relevant(Path::new(yes)), "{yes}");
        }
        for no in [
            "scripts/.play.lua.swp",
            "scripts/.play.lua.tmp123",
            "scripts/play.lua~",
            "scripts/4913",
            "scripts/notes.txt",
            "flows/a/callflows/.x.json.3fa.tmp",
        ] {
            assert!(!is_relevant(Path::new(no)), "{no}");
        }
    }

    /// What notify-debouncer-full emits for each way editors save
    /// (`lua-runtime.md` §4.2): each is one batch that reloads once; swap
    /// file churn alone reloads nothing.
    #[test]
    fn editors_saves_are_one_reload() {
        let close = EventKind::Access(AccessKind::Close(
            notify_debouncer_full::notify::event::AccessMode::Write,
        ));
        let open = EventKind::Access(AccessKind::Open(
            notify_debouncer_full::notify::event::AccessMode::Any,
        ));
        let in_place = vec![
            event(open, "s/play.lua"),
            event(EventKind::Modify(ModifyKind::Any), "s/play.lua"),
            event(close, "s/play.lua"),
        ];
        let atomic = vec![
            event(EventKind::Create(CreateKind::File), "s/play.lua"),
            event(open, "s/play.lua"),
            event(close, "s/play.lua"),
        ];
        let vim = vec![
            event(EventKind::Create(CreateKind::File), "s/play.lua"),
            event(close, "s/play.lua"),
            event(EventKind::Remove(RemoveKind::File), "s/play.lua~"),
        ];
        let swap_only = vec![
            event(EventKind::Create(CreateKind::File), "s/.play.lua.swp"),
            event(EventKind::Remove(RemoveKind::File), "s/.play.lua.swp"),
        ];
        let read_only = vec![event(open, "s/play.lua")];
        assert!(needs_reload(&in_place));
        assert!(needs_reload(&atomic));
        assert!(needs_reload(&vim));
        assert!(!needs_reload(&swap_only));
        assert!(!needs_reload(&read_only));
        assert!(!needs_reload(&[event(
            EventKind::Create(CreateKind::File),
            "s/README.md"
        )]));
    }
}
