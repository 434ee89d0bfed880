//! What the server shares between requests: the flows directory, the
//! module set, the catalog calls and routes read, per-account write locks
//! and the auth tokens handed out.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use crate::catalog::{AccountFlows, Catalog};
use crate::ids::{AccountId, DocId, DocType};
use crate::limits::Limits;
use crate::live::CallLog;
use crate::model::Diagnostic;
use crate::reload::{Generation, Paths, Reloader};
use crate::sip::SipServer;
use crate::store::{FlowsDir, StoreError};

/// Server settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long an auth token lives.
    pub token_ttl: Duration,
    /// Items per page when a list request gives no `page_size`.
    pub page_size: usize,
    /// Largest request body accepted.
    pub max_body: usize,
    /// Limits of simulated calls (`POST .../simulate`).
    pub limits: Limits,
}

/// Kazoo's default page size (`crossbar.pagination_page_size`).
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

impl Default for Config {
    fn default() -> Self {
        Self {
            token_ttl: Duration::from_hours(1),
            page_size: DEFAULT_PAGE_SIZE,
            max_body: DEFAULT_MAX_BODY,
            limits: Limits::default(),
        }
    }
}

/// An auth token handed out by `PUT /v2/api_auth`.
#[derive(Debug, Clone)]
struct Token {
    account: AccountId,
    expires: jiff::Timestamp,
}

/// The server's shared state.
pub struct AppState {
    pub(crate) store: FlowsDir,
    /// The current generation of scripts and flows (what routing, listing
    /// and new calls read), replaced whole by reloads and after each write.
    pub(crate) reloader: Arc<Reloader>,
    pub(crate) config: Config,
    /// One lock per account: writes to an account happen one at a time, so
    /// two requests claiming the same number cannot both pass the `unique`
    /// check.
    writes: Mutex<BTreeMap<AccountId, Arc<Mutex<()>>>>,
    /// Held by writes that claim E.164 numbers (taken after the account's
    /// lock): those numbers are unique across accounts.
    e164: Mutex<()>,
    tokens: Mutex<BTreeMap<String, Token>>,
    /// Real calls, when the server answers SIP: registrations and the
    /// traces of calls.
    live: OnceLock<Live>,
    /// Warm VMs for `POST .../simulate`, started with the first one.
    simulators: OnceLock<Result<crate::sim::pool::SimPool, String>>,
}

/// What the API shows of real calls.
#[derive(Clone)]
pub(crate) struct Live {
    pub sip: Arc<SipServer>,
    pub calls: Arc<CallLog>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("flows", &self.store.root())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Loads the scripts and the flows directory; returns the state and the
    /// problems found (documents with errors are served as they are, and
    /// routed as far as they validate, as `callflow check` reports them).
    pub fn load(paths: Paths, config: Config) -> Result<(Self, Vec<Diagnostic>), StoreError> {
        let (reloader, diagnostics) = Reloader::load(paths)?;
        Ok((Self::new(Arc::new(reloader), config), diagnostics))
    }

    /// The state around a reloader (which a watcher may share).
    pub fn new(reloader: Arc<Reloader>, config: Config) -> Self {
        Self {
            store: FlowsDir::new(&reloader.paths().flows),
            reloader,
            config,
            writes: Mutex::new(BTreeMap::new()),
            e164: Mutex::new(()),
            tokens: Mutex::new(BTreeMap::new()),
            live: OnceLock::new(),
            simulators: OnceLock::new(),
        }
    }

    /// The simulation workers (one per core), started on first use.
    pub(crate) fn simulators(&self) -> Result<&crate::sim::pool::SimPool, String> {
        self.simulators
            .get_or_init(|| {
                let cores = std::thread::available_parallelism().map_or(1, usize::from);
                crate::sim::pool::SimPool::start(cores)
                    .map_err(|e| format!("cannot start the simulation workers: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Lets the API show real calls: registrations and call traces.
    pub fn set_live(&self, sip: &Arc<SipServer>, calls: &Arc<CallLog>) {
        let _ = self.live.set(Live {
            sip: Arc::clone(sip),
            calls: Arc::clone(calls),
        });
    }

    /// Real calls, or the error their routes answer without `--sip`.
    pub(crate) fn live(&self) -> Result<&Live, super::envelope::ApiError> {
        self.live
            .get()
            .ok_or(super::envelope::ApiError::RealCallsOff)
    }

    pub fn reloader(&self) -> &Arc<Reloader> {
        &self.reloader
    }

    /// The generation new calls and requests use.
    pub(crate) fn generation(&self) -> Arc<Generation> {
        self.reloader.current()
    }

    /// The catalog as of now.
    pub fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(&self.reloader.current().catalog)
    }

    pub(crate) fn account(&self, id: &AccountId) -> Option<Arc<AccountFlows>> {
        self.catalog().account(id.as_str()).cloned()
    }

    /// The write lock of an account.
    pub(crate) fn write_lock(&self, account: &AccountId) -> Arc<Mutex<()>> {
        let mut locks = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(locks.entry(account.clone()).or_default())
    }

    /// The lock of writes claiming E.164 numbers (take it after the
    /// account's own).
    pub(crate) fn e164_lock(&self) -> MutexGuard<'_, ()> {
        self.e164.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Re-reads one account from disk and publishes it in a new generation:
    /// the next call and request see it.
    pub(crate) fn reload_account(&self, account: &AccountId) -> Result<(), StoreError> {
        self.reloader.reload_account(account)
    }

    /// Publishes one document just written (see
    /// [`crate::reload::Reloader::reload_document`]).
    pub(crate) fn reload_document(
        &self,
        account: &AccountId,
        doc_type: &DocType,
        id: &DocId,
    ) -> Result<(), StoreError> {
        self.reloader.reload_document(account, doc_type, id)
    }

    /// Hands out a token for `account`; returns it and when it expires.
    pub(crate) fn issue_token(
        &self,
        account: &AccountId,
    ) -> Result<(String, jiff::Timestamp), super::envelope::ApiError> {
        let now = jiff::Timestamp::now();
        let ttl = jiff::SignedDuration::try_from(self.config.token_ttl)
            .unwrap_or(jiff::SignedDuration::MAX);
        let expires = now.saturating_add(ttl).unwrap_or(now);
        let token = super::auth::random_hex(32)?;
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        tokens.retain(|_, t| t.expires > now);
        tokens.insert(
            token.clone(),
            Token {
                account: account.clone(),
                expires,
            },
        );
        Ok((token, expires))
    }

    /// The account a live token is for.
    pub(crate) fn token_account(&self, token: &str) -> Option<AccountId> {
        let tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        tokens
            .get(token)
            .filter(|t| t.expires > jiff::Timestamp::now())
            .map(|t| t.account.clone())
    }
}
