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
    /// Largest audio upload accepted (`POST .../media/{media_id}/raw`),
    /// in place of `max_body` on that route.
    pub max_upload: usize,
    /// Limits of simulated calls (`POST .../simulate`).
    pub limits: Limits,
    /// The SHA-256 (hex) of the operator's key, when one is set
    /// (`serve --operator-key-file`): `PUT /v2/api_auth` with that key
    /// gives an operator token, the only kind `POST /v2/reload` accepts.
    pub operator_key_sha256: Option<String>,
    /// A request's headers must arrive within this (from the connection's
    /// start or the end of the previous request), else the connection is
    /// closed.
    pub header_timeout: Duration,
    /// A request's whole body must arrive within this once the headers
    /// did, else 408 and the connection is closed.
    pub body_timeout: Duration,
    /// Live tokens per account (and for the operator): issuing one more
    /// expires the oldest.
    pub max_tokens_per_account: usize,
    /// `PUT /v2/api_auth` attempts per source address.
    pub auth_per_source: Rate,
    /// `PUT /v2/api_auth` attempts per API key presented.
    pub auth_per_key: Rate,
    /// `POST .../simulate` requests handled at once, all accounts together
    /// (parsing and running); past it, 503.
    pub max_simulations: usize,
    /// Accept documents whose URL fields (`pivot.voice_url`, `webhook.uri`,
    /// ...) name loopback, private or link-local addresses (`serve
    /// --allow-private-http`, for lab setups); else such a write is a 400.
    pub allow_private_urls: bool,
    /// A WebSocket (`GET /v2/websocket`) holding no subscription this long
    /// (from its upgrade, or since its last subscription ended) is closed.
    pub websocket_idle: Duration,
    /// Sockets of `GET /v2/websocket` open at once, all clients together:
    /// past it, the upgrade is a 503.
    pub max_websockets: usize,
}

impl Config {
    /// Sets the operator's key (only its SHA-256 is kept; surrounding
    /// white space is not part of it).
    #[must_use]
    pub fn with_operator_key(mut self, key: &str) -> Self {
        self.operator_key_sha256 = Some(super::auth::sha256_hex(key.trim().as_bytes()));
        self
    }
}

/// A rate: `burst` at once, then one more every `every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub burst: u32,
    pub every: Duration,
}

/// Seconds a client may take to send a request's headers.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Seconds a client may take to send a request's body (1 MiB in 30 s is
/// 35 KB/s).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Live tokens per account: enough for many clients of one account, and a
/// bound on what a leaked key can pile up.
pub const DEFAULT_MAX_TOKENS_PER_ACCOUNT: usize = 100;
/// Logins per source address: 20 at once, then 20 a minute.
pub const DEFAULT_AUTH_PER_SOURCE: Rate = Rate {
    burst: 20,
    every: Duration::from_secs(3),
};
/// Logins per API key: 10 at once, then 10 a minute.
pub const DEFAULT_AUTH_PER_KEY: Rate = Rate {
    burst: 10,
    every: Duration::from_secs(6),
};

/// Simulations at once: each is bounded by [`Limits`] and runs on one of
/// the simulation workers (one per core), so more at once only wait.
pub const DEFAULT_MAX_SIMULATIONS: usize = 16;
/// Kazoo's default page size (`crossbar.pagination_page_size`).
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;
/// 32 MiB: ten minutes (the longest upload, see
/// [`crate::media::convert::MAX_SECONDS`]) of 16-bit 16 kHz mono WAV with
/// room to spare, or hours of MP3.
pub const DEFAULT_MAX_UPLOAD: usize = 32 << 20;
/// A minute to subscribe after connecting.
pub const DEFAULT_WEBSOCKET_IDLE: Duration = Duration::from_mins(1);
/// Sockets of `GET /v2/websocket` open at once: each is a task and a bus receiver.
pub const DEFAULT_MAX_WEBSOCKETS: usize = 1024;

impl Default for Config {
    fn default() -> Self {
        Self {
            token_ttl: Duration::from_hours(1),
            page_size: DEFAULT_PAGE_SIZE,
            max_body: DEFAULT_MAX_BODY,
            max_upload: DEFAULT_MAX_UPLOAD,
            limits: Limits::default(),
            operator_key_sha256: None,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_tokens_per_account: DEFAULT_MAX_TOKENS_PER_ACCOUNT,
            auth_per_source: DEFAULT_AUTH_PER_SOURCE,
            auth_per_key: DEFAULT_AUTH_PER_KEY,
            max_simulations: DEFAULT_MAX_SIMULATIONS,
            allow_private_urls: false,
            websocket_idle: DEFAULT_WEBSOCKET_IDLE,
            max_websockets: DEFAULT_MAX_WEBSOCKETS,
        }
    }
}

/// Whom a token was handed to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Holder {
    /// An account's API key: that account's routes, its own reload status.
    Account(AccountId),
    /// The operator's key: server-wide actions (`POST /v2/reload`).
    Operator,
}

/// An auth token handed out by `PUT /v2/api_auth`.
#[derive(Debug, Clone)]
struct Token {
    holder: Holder,
    /// The id of the API key it came from (an account's token): it works
    /// while the key is in `account.json`.
    key_id: Option<String>,
    /// When it was issued: its place among its holder's tokens (the
    /// oldest expire first past the cap).
    issued: u64,
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
    /// Held by writes that claim something unique across accounts (see
    /// [`AppState::claims_lock`]).
    claims: Mutex<()>,
    tokens: Mutex<Tokens>,
    /// API keys found in `account.json` on disk but not in the catalog's
    /// copy (created since it was read), with the generation they were
    /// found in: their tokens work without another look until the next
    /// generation.
    confirmed_keys: Mutex<BTreeMap<(AccountId, String), u64>>,
    /// `PUT /v2/api_auth` attempts by source address and by key.
    pub(crate) logins: super::limit::Logins,
    /// Places for `POST .../simulate` requests ([`Config::max_simulations`]).
    pub(crate) simulations: super::limit::Simulations,
    /// Places for open sockets of `GET /v2/websocket` ([`Config::max_websockets`]), a permit
    /// held by each socket's task.
    pub(crate) websockets: Arc<tokio::sync::Semaphore>,
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
    pub world: Arc<crate::live::world::World>,
    /// The calls' events, for the WebSocket.
    pub events: crate::live::events::Bus,
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
            writes: Mutex::new(BTreeMap::new()),
            claims: Mutex::new(()),
            tokens: Mutex::new(Tokens::default()),
            confirmed_keys: Mutex::new(BTreeMap::new()),
            logins: super::limit::Logins::new(config.auth_per_source, config.auth_per_key),
            simulations: super::limit::Simulations::new(config.max_simulations),
            websockets: Arc::new(tokio::sync::Semaphore::new(
                config
                    .max_websockets
                    .min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
            live: OnceLock::new(),
            simulators: OnceLock::new(),
            config,
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

    /// Lets the API show real calls: registrations, the calls running
    /// now and the traces of calls.
    pub fn set_live(&self, live: &crate::live::Live) {
        let _ = self.live.set(Live {
            sip: Arc::clone(live.sip()),
            calls: Arc::clone(live.calls()),
            world: Arc::clone(live.world()),
            events: live.events().clone(),
        });
    }

    /// A receiver of the real calls' events; `None` without `--sip`.
    pub(crate) fn live_events(
        &self,
    ) -> Option<tokio::sync::broadcast::Receiver<Arc<crate::live::events::CallEvent>>> {
        self.live.get().map(|live| live.events.subscribe())
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

    /// The server-wide lock of claims across accounts: it serializes every
    /// write that claims something no other account may have (E.164
    /// numbers, realms, SIP user names of a realm), held from the check
    /// that nobody else has it to the write's publication. Take it after
    /// the account's write lock (and after the lock of its
    /// `account.json` when the write holds that), never before.
    pub(crate) fn claims_lock(&self) -> MutexGuard<'_, ()> {
        self.claims.lock().unwrap_or_else(PoisonError::into_inner)
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

    /// Hands out a token to `holder`; returns it and when it expires.
    /// Past [`Config::max_tokens_per_account`] live tokens of one holder,
    /// the oldest is expired.
    pub(crate) fn issue_token(
        &self,
        holder: Holder,
        key_id: Option<String>,
    ) -> Result<(String, jiff::Timestamp), super::envelope::ApiError> {
        let now = jiff::Timestamp::now();
        let ttl = jiff::SignedDuration::try_from(self.config.token_ttl)
            .unwrap_or(jiff::SignedDuration::MAX);
        let expires = now.saturating_add(ttl).unwrap_or(now);
        let token = super::auth::random_hex(32)?;
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        // Kept by its SHA-256, as API keys are: a look-up compares hashes,
        // so its time says nothing about the tokens held.
        tokens.insert(
            super::auth::sha256_hex(token.as_bytes()),
            (holder, key_id),
            expires,
            now,
            self.config.max_tokens_per_account,
        );
        Ok((token, expires))
    }

    /// Whom a live token was handed to, and the id of the API key it came
    /// from.
    pub(crate) fn token_holder(&self, token: &str) -> Option<(Holder, Option<String>)> {
        let tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        tokens
            .by_token
            .get(&super::auth::sha256_hex(token.as_bytes()))
            .filter(|t| t.expires > jiff::Timestamp::now())
            .map(|t| (t.holder.clone(), t.key_id.clone()))
    }

    /// Whether the key `key_id` of `account` was found on disk in
    /// generation `generation`.
    pub(crate) fn key_confirmed(&self, account: &AccountId, key_id: &str, generation: u64) -> bool {
        let confirmed = self
            .confirmed_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        confirmed.get(&(account.clone(), key_id.to_owned())) == Some(&generation)
    }

    /// Notes that the key `key_id` of `account` was found on disk in
    /// generation `generation` (`None`: it was not).
    pub(crate) fn confirm_key(&self, account: &AccountId, key_id: &str, generation: Option<u64>) {
        let mut confirmed = self
            .confirmed_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = (account.clone(), key_id.to_owned());
        match generation {
            Some(generation) => confirmed.insert(key, generation),
            None => confirmed.remove(&key),
        };
    }

    /// Ends a token (`DELETE /v2/token_auth`, or its key is gone).
    pub(crate) fn end_token(&self, token: &str) {
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        tokens.remove(&super::auth::sha256_hex(token.as_bytes()));
    }

    /// Ends the tokens an account's API key gave (the key was revoked).
    pub(crate) fn end_tokens_of_key(&self, account: &AccountId, key_id: &str) {
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        let holder = Holder::Account(account.clone());
        let range = (holder.clone(), 0)..=(holder, u64::MAX);
        let ended: Vec<String> = tokens
            .by_holder
            .range(range)
            .map(|(_, token)| token.clone())
            .filter(|token| {
                tokens.by_token.get(token).and_then(|t| t.key_id.as_deref()) == Some(key_id)
            })
            .collect();
        for token in ended {
            tokens.remove(&token);
        }
        drop(tokens);
        self.confirm_key(account, key_id, None);
    }

    /// Tells the reloader that the server wrote `account.json` of
    /// `account` itself: its watcher and poller need not reload it (the
    /// catalog's copy of the keys is only a cache, see `auth.rs`).
    pub(crate) fn wrote_account_file(&self, account: &AccountId) {
        self.reloader.note_own_file(
            &self
                .store
                .root()
                .join(account.as_str())
                .join(crate::store::ACCOUNT_FILE),
        );
    }
}

/// The live tokens, and each holder's in the order they were issued.
#[derive(Debug, Default)]
struct Tokens {
    /// By the token's SHA-256 (hex).
    by_token: BTreeMap<String, Token>,
    /// (holder, issued) → token.
    by_holder: BTreeMap<(Holder, u64), String>,
    issued: u64,
}

impl Tokens {
    /// Adds a token; drops the expired ones, then the holder's oldest while
    /// it has `cap` or more.
    fn insert(
        &mut self,
        token: String,
        (holder, key_id): (Holder, Option<String>),
        expires: jiff::Timestamp,
        now: jiff::Timestamp,
        cap: usize,
    ) {
        let stale: Vec<String> = self
            .by_token
            .iter()
            .filter(|(_, t)| t.expires <= now)
            .map(|(token, _)| token.clone())
            .collect();
        for token in stale {
            self.remove(&token);
        }
        let range = (holder.clone(), 0)..=(holder.clone(), u64::MAX);
        let held: Vec<String> = self
            .by_holder
            .range(range)
            .map(|(_, t)| t.clone())
            .collect();
        let excess = (held.len() + 1).saturating_sub(cap.max(1));
        for oldest in held.iter().take(excess) {
            self.remove(oldest);
        }
        self.issued += 1;
        self.by_holder
            .insert((holder.clone(), self.issued), token.clone());
        self.by_token.insert(
            token,
            Token {
                holder,
                key_id,
                issued: self.issued,
                expires,
            },
        );
    }

    fn remove(&mut self, token: &str) {
        if let Some(gone) = self.by_token.remove(token) {
            self.by_holder.remove(&(gone.holder, gone.issued));
        }
    }

    #[cfg(test)]
    fn held_by(&self, holder: &Holder) -> usize {
        self.by_token
            .values()
            .filter(|t| &t.holder == holder)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_tokens_expire_past_the_cap() {
        let now = jiff::Timestamp::from_second(1_000_000).unwrap();
        let later = jiff::Timestamp::from_second(1_003_600).unwrap();
        let acme = Holder::Account(AccountId::new("acme").unwrap());
        let beta = Holder::Account(AccountId::new("beta").unwrap());
        let mut tokens = Tokens::default();
        for n in 0..5 {
            tokens.insert(format!("a{n}"), (acme.clone(), None), later, now, 3);
        }
        tokens.insert("b0".into(), (beta.clone(), None), later, now, 3);
        assert_eq!(tokens.held_by(&acme), 3);
        assert_eq!(tokens.held_by(&beta), 1);
        for gone in ["a0", "a1"] {
            assert!(!tokens.by_token.contains_key(gone), "{gone}");
        }
        for kept in ["a2", "a3", "a4", "b0"] {
            assert!(tokens.by_token.contains_key(kept), "{kept}");
        }
        // Expired tokens go first, whoever held them.
        tokens.insert("o0".into(), (Holder::Operator, None), later, later, 3);
        assert_eq!(tokens.by_token.len(), 1);
        assert_eq!(tokens.by_holder.len(), 1);
    }
}
