//! What the server shares between requests: the flows directory, the
//! module set, the catalog calls and routes read, per-account write locks
//! and the auth tokens handed out.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use crate::catalog::{AccountFlows, Catalog};
use crate::host::ModuleSet;
use crate::ids::AccountId;
use crate::limits::Limits;
use crate::model::Diagnostic;
use crate::store::{FlowsDir, Store, StoreError};

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
    pub(crate) modules: Arc<ModuleSet>,
    pub(crate) config: Config,
    /// What routing and listing read; replaced whole, one account at a time,
    /// after each write.
    catalog: RwLock<Arc<Catalog>>,
    /// One lock per account: writes to an account happen one at a time, so
    /// two requests claiming the same number cannot both pass the `unique`
    /// check.
    writes: Mutex<BTreeMap<AccountId, Arc<Mutex<()>>>>,
    tokens: Mutex<BTreeMap<String, Token>>,
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
    /// Loads the flows directory; returns the state and the problems found
    /// (documents with errors are served as they are, and routed as far as
    /// they validate, as `callflow check` reports them).
    pub fn load(
        store: FlowsDir,
        modules: Arc<ModuleSet>,
        config: Config,
    ) -> Result<(Self, Vec<Diagnostic>), StoreError> {
        let (catalog, diagnostics) = Catalog::build(store.read()?, modules.as_ref());
        let state = Self {
            store,
            modules,
            config,
            catalog: RwLock::new(Arc::new(catalog)),
            writes: Mutex::new(BTreeMap::new()),
            tokens: Mutex::new(BTreeMap::new()),
        };
        Ok((state, diagnostics))
    }

    /// The catalog as of now.
    pub fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(&self.catalog.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn account(&self, id: &AccountId) -> Option<Arc<AccountFlows>> {
        self.catalog().account(id.as_str()).cloned()
    }

    /// The write lock of an account.
    pub(crate) fn write_lock(&self, account: &AccountId) -> Arc<Mutex<()>> {
        let mut locks = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(locks.entry(account.clone()).or_default())
    }

    /// Re-reads one account from disk and publishes it: the next call and
    /// request see it. Diagnostics of the rebuild are logged.
    pub(crate) fn reload_account(&self, account: &AccountId) -> Result<(), StoreError> {
        let Some(sources) = self.store.read_one(account)? else {
            return Ok(());
        };
        let (built, diagnostics) = Catalog::build(sources, self.modules.as_ref());
        for diag in diagnostics.iter().filter(|d| d.is_error()) {
            tracing::warn!("{diag}");
        }
        if let Some(flows) = built.account(account.as_str()) {
            let mut catalog = self.catalog.write().unwrap_or_else(PoisonError::into_inner);
            let mut next = Catalog::clone(&catalog);
            next.insert(Arc::clone(flows));
            *catalog = Arc::new(next);
        }
        Ok(())
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
