//! API keys: how `account.json` keeps them (`pvt_api_keys`), the
//! operations `callflow api-key` and the API share (create, list, revoke,
//! note a use), and the routes of an account's own keys
//! (`/v2/accounts/{account_id}/api_keys[/{key_id}]`).
//!
//! A stored key is `{"id", "name", "sha256", "created", "last_used"}`: the
//! id is short, public and random (not derived from the key), the times
//! are RFC 3339 (the API shows them in Gregorian seconds as Kazoo's
//! `pvt_created`, the CLI in ISO 8601), and the key itself is never
//! stored, only its SHA-256. Files of older versions keep only `sha256`
//! and `created`: such keys get an id and a name on the next write (any
//! key operation, a login with the key included). Every other key of
//! `account.json` is written back as it was.
//!
//! Each operation that may write the file holds the account's file lock
//! ([`FlowsDir::lock_account`]) from its read to its write, as every
//! writer of `account.json` does: a key revoked by `callflow api-key
//! revoke` while the server notes a login is not brought back by the
//! server's write. The server calls them under the account's write lock
//! too (which orders its own writes), taken before the file lock.

use std::sync::{Arc, PoisonError};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::auth::{Authed, hex, sha256_hex};
use super::envelope::{ApiError, Success};
use super::kazoo::UNIX_EPOCH_GREGORIAN;
use super::paging::{Listing, Order};
use super::state::AppState;
use super::{Body, request_data};
use crate::ids::AccountId;
use crate::model::Object;
use crate::store::{AccountLock, FlowsDir, StoreError};

/// Where `account.json` keeps the account's API keys (their hashes).
pub const API_KEYS_FIELD: &str = "pvt_api_keys";

/// A login writes a key's `last_used` only when the stored one is older
/// than this, so frequent logins do not rewrite `account.json` each time.
pub const LAST_USE_RESOLUTION: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// The longest key name, in characters.
pub const MAX_NAME_CHARS: usize = 128;

/// Hex characters of a key id (48 random bits).
const ID_HEX_BYTES: usize = 6;

/// What may be shown of an API key: never its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// `None` only for a hand-edited entry without a readable time.
    pub created: Option<jiff::Timestamp>,
    /// The last login with the key (to [`LAST_USE_RESOLUTION`]).
    pub last_used: Option<jiff::Timestamp>,
}

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("account {0} does not exist (create it with `callflow account create`)")]
    NoAccount(String),
    #[error("account.json of {account} is not a JSON object: {message}")]
    BadAccountFile { account: String, message: String },
    #[error("account {account} has no API key {id} (see `callflow api-key list {account}`)")]
    UnknownKey { account: String, id: String },
    #[error("bad key name: {message}")]
    BadName {
        /// Kazoo's validation code (`type`, `minLength`, `maxLength`).
        code: &'static str,
        message: String,
    },
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<KeyError> for ApiError {
    fn from(err: KeyError) -> Self {
        match err {
            KeyError::NoAccount(account) => ApiError::BadIdentifier(account),
            KeyError::UnknownKey { id, .. } => ApiError::BadIdentifier(id),
            KeyError::BadName { code, message } => {
                let mut errors = Map::new();
                errors.insert("name".into(), json!({ code: {"message": message} }));
                ApiError::Validation(errors)
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// Now, to the second (what is stored and shown).
fn now() -> jiff::Timestamp {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second()).unwrap_or(now)
}

fn time_of(entry: &Object, field: &str) -> Option<jiff::Timestamp> {
    entry.get(field)?.as_str()?.parse().ok()
}

fn str_of<'a>(entry: &'a Object, field: &str) -> Option<&'a str> {
    entry.get(field).and_then(Value::as_str)
}

/// A name given for a key: 1 to [`MAX_NAME_CHARS`] characters, no control
/// characters, not only white space.
pub fn check_name(name: &str) -> Result<(), KeyError> {
    let bad = |code, message: &str| {
        Err(KeyError::BadName {
            code,
            message: message.to_owned(),
        })
    };
    if name.trim().is_empty() {
        return bad("minLength", "the name must not be empty");
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return bad(
            "maxLength",
            &format!("the name must be at most {MAX_NAME_CHARS} characters"),
        );
    }
    if name.chars().any(char::is_control) {
        return bad("type", "the name must not hold control characters");
    }
    Ok(())
}

/// An account's `account.json` and its keys, read for an operation.
struct KeyRing {
    account: AccountId,
    doc: Object,
    /// Entries of an older version were given an id and a name: the file
    /// must be written even when the operation changes nothing else.
    migrated: bool,
    /// The file's lock, held from the read to the write (`None`: read
    /// only, never saved).
    lock: Option<AccountLock>,
}

impl KeyRing {
    /// Reads the keys to change them: holds the file's lock until dropped.
    fn load(store: &FlowsDir, account: &AccountId) -> Result<Self, KeyError> {
        if !store.root().join(account.as_str()).is_dir() {
            return Err(KeyError::NoAccount(account.to_string()));
        }
        let lock = store.lock_account(account)?;
        let mut ring = Self::read(store, account)?;
        ring.lock = Some(lock);
        Ok(ring)
    }

    /// Reads the keys only (the file is replaced atomically, so a read
    /// without the lock sees one whole version of it).
    fn read(store: &FlowsDir, account: &AccountId) -> Result<Self, KeyError> {
        if !store.root().join(account.as_str()).is_dir() {
            return Err(KeyError::NoAccount(account.to_string()));
        }
        let doc: Object = match store.read_account_file(account)? {
            Some(text) => serde_json::from_str(&text).map_err(|e| KeyError::BadAccountFile {
                account: account.to_string(),
                message: e.to_string(),
            })?,
            None => Object::new(),
        };
        let mut ring = Self {
            account: account.clone(),
            doc,
            migrated: false,
            lock: None,
        };
        ring.migrate()?;
        Ok(ring)
    }

    /// Gives the keys stored without an id (older versions) an id and a
    /// name.
    fn migrate(&mut self) -> Result<(), KeyError> {
        let Some(Value::Array(entries)) = self.doc.get_mut(API_KEYS_FIELD) else {
            return Ok(());
        };
        for entry in entries.iter_mut().filter_map(Value::as_object_mut) {
            if entry.get("sha256").and_then(Value::as_str).is_none()
                || entry.get("id").and_then(Value::as_str).is_some()
            {
                continue;
            }
            let id = new_id()?;
            if str_of(entry, "name").is_none() {
                entry.insert("name".into(), json!(format!("key-{id}")));
            }
            entry.insert("id".into(), json!(id));
            self.migrated = true;
        }
        Ok(())
    }

    /// The stored entries that are keys (an object with `id` and
    /// `sha256`); anything else in the array is kept but ignored.
    fn entries(&self) -> impl Iterator<Item = &Object> {
        self.doc
            .get(API_KEYS_FIELD)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .filter(|e| str_of(e, "id").is_some() && str_of(e, "sha256").is_some())
    }

    fn entries_mut(&mut self) -> Option<&mut Vec<Value>> {
        match self.doc.get_mut(API_KEYS_FIELD) {
            Some(Value::Array(entries)) => Some(entries),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<ApiKey> {
        self.entries().map(shown).collect()
    }

    fn save(&self, store: &FlowsDir) -> Result<(), KeyError> {
        debug_assert!(self.lock.is_some(), "account.json written without its lock");
        store.write_account(&self.account, &self.doc)?;
        Ok(())
    }
}

fn shown(entry: &Object) -> ApiKey {
    let id = str_of(entry, "id").unwrap_or_default().to_owned();
    ApiKey {
        name: str_of(entry, "name").map_or_else(|| format!("key-{id}"), str::to_owned),
        id,
        created: time_of(entry, "created"),
        last_used: time_of(entry, "last_used"),
    }
}

fn new_id() -> Result<String, KeyError> {
    let mut bytes = [0u8; ID_HEX_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(hex(&bytes))
}

/// Creates an API key for `account` named `name` (default `key-<id>`):
/// stores its SHA-256 in `account.json` (atomically) and returns what is
/// shown of it with the key, which is never stored.
pub fn create_key(
    store: &FlowsDir,
    account: &AccountId,
    name: Option<&str>,
) -> Result<(ApiKey, String), KeyError> {
    if let Some(name) = name {
        check_name(name)?;
    }
    let mut ring = KeyRing::load(store, account)?;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
    let key = hex(&bytes);
    let mut id = new_id()?;
    while ring.entries().any(|e| str_of(e, "id") == Some(id.as_str())) {
        id = new_id()?;
    }
    let name = name.map_or_else(|| format!("key-{id}"), str::to_owned);
    let mut entry = Object::new();
    entry.insert("id".into(), json!(id));
    entry.insert("name".into(), json!(name));
    entry.insert("sha256".into(), json!(sha256_hex(key.as_bytes())));
    entry.insert("created".into(), json!(now().to_string()));
    let shown = shown(&entry);
    match ring.entries_mut() {
        Some(entries) => entries.push(Value::Object(entry)),
        None => {
            ring.doc.insert(
                API_KEYS_FIELD.into(),
                Value::Array(vec![Value::Object(entry)]),
            );
        }
    }
    ring.save(store)?;
    Ok((shown, key))
}

/// Creates an API key for `account` with the default name; returns the key
/// (shown once: only its SHA-256 is stored).
pub fn create_api_key(store: &FlowsDir, account: &AccountId) -> Result<String, KeyError> {
    create_key(store, account, None).map(|(_, key)| key)
}

/// The keys of `account`, in the order they were created.
pub fn list_keys(store: &FlowsDir, account: &AccountId) -> Result<Vec<ApiKey>, KeyError> {
    let ring = KeyRing::load(store, account)?;
    if ring.migrated {
        ring.save(store)?;
    }
    Ok(ring.keys())
}

/// Removes the key `id` of `account`; returns what it was.
pub fn revoke_key(store: &FlowsDir, account: &AccountId, id: &str) -> Result<ApiKey, KeyError> {
    let mut ring = KeyRing::load(store, account)?;
    let unknown = || KeyError::UnknownKey {
        account: account.to_string(),
        id: id.to_owned(),
    };
    let entries = ring.entries_mut().ok_or_else(unknown)?;
    let at = entries
        .iter()
        .position(|e| {
            e.as_object()
                .is_some_and(|e| str_of(e, "id") == Some(id) && str_of(e, "sha256").is_some())
        })
        .ok_or_else(unknown)?;
    let gone = entries.remove(at);
    ring.save(store)?;
    // `position` found an object.
    Ok(gone.as_object().map_or_else(
        || ApiKey {
            id: id.to_owned(),
            name: String::new(),
            created: None,
            last_used: None,
        },
        shown,
    ))
}

/// A login noted by [`note_use`].
#[derive(Debug)]
pub(crate) struct Noted {
    /// The key's id.
    pub id: String,
    /// Whether `account.json` was written.
    pub wrote: bool,
    /// The ids of every key of the account, as written.
    pub ids: std::collections::BTreeSet<String>,
}

/// Notes a login with the key whose SHA-256 is `hash`: writes its
/// `last_used` when the stored one is older than [`LAST_USE_RESOLUTION`]
/// (or the file needs migrating). `None` when `account` has no such key
/// (revoked meanwhile).
pub(crate) fn note_use(
    store: &FlowsDir,
    account: &AccountId,
    hash: &str,
) -> Result<Option<Noted>, KeyError> {
    let mut ring = KeyRing::load(store, account)?;
    let now = now();
    let Some(entry) = ring.entries_mut().and_then(|entries| {
        entries
            .iter_mut()
            .filter_map(Value::as_object_mut)
            .find(|e| str_of(e, "sha256") == Some(hash) && str_of(e, "id").is_some())
    }) else {
        return Ok(None);
    };
    let id = str_of(entry, "id").unwrap_or_default().to_owned();
    let stale = time_of(entry, "last_used")
        .is_none_or(|last| now.duration_since(last) >= LAST_USE_RESOLUTION);
    if stale {
        entry.insert("last_used".into(), json!(now.to_string()));
    }
    let wrote = stale || ring.migrated;
    if wrote {
        ring.save(store)?;
    }
    let ids = key_ids(&ring.doc).into_iter().map(str::to_owned).collect();
    Ok(Some(Noted { id, wrote, ids }))
}

/// The ids of the keys an `account.json` holds.
pub(crate) fn key_ids(account: &Object) -> std::collections::BTreeSet<&str> {
    account
        .get(API_KEYS_FIELD)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .filter(|e| str_of(e, "sha256").is_some())
        .filter_map(|e| str_of(e, "id"))
        .collect()
}

/// Whether `account.json` of `account` on disk holds the key `id`.
pub(crate) fn key_on_disk(
    store: &FlowsDir,
    account: &AccountId,
    id: &str,
) -> Result<bool, KeyError> {
    match KeyRing::read(store, account) {
        Ok(ring) => Ok(has_key(&ring.doc, id)),
        Err(KeyError::NoAccount(_)) => Ok(false),
        Err(other) => Err(other),
    }
}

/// Whether `account` (as the catalog has its `account.json`) holds a key
/// with this id.
pub(crate) fn has_key(account: &Object, id: &str) -> bool {
    account
        .get(API_KEYS_FIELD)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .any(|e| str_of(e, "id") == Some(id) && str_of(e, "sha256").is_some())
}

/// After a write of `account.json` under the account's lock: the catalog
/// reads it again (tokens are checked against its keys), and the watcher
/// need not.
fn republish(state: &AppState, account: &AccountId) -> Result<(), KeyError> {
    state.reload_account(account)?;
    state.wrote_account_file(account);
    Ok(())
}

/// Gregorian seconds, Kazoo's unit for times.
fn gregorian(time: Option<jiff::Timestamp>) -> Value {
    time.map_or(Value::Null, |t| json!(t.as_second() + UNIX_EPOCH_GREGORIAN))
}

/// A key as the API shows it.
fn api_view(key: &ApiKey) -> Value {
    json!({
        "id": key.id,
        "name": key.name,
        "created": gregorian(key.created),
        "last_used": gregorian(key.last_used),
    })
}

/// Runs a key operation under the account's write lock, off the runtime.
/// An operation that writes `account.json` republishes the account (so the
/// catalog's copy of the keys matches the file) and tells the reloader it
/// did.
async fn locked<T: Send + 'static>(
    state: &Arc<AppState>,
    account: AccountId,
    op: impl FnOnce(&AppState, &AccountId) -> Result<T, KeyError> + Send + 'static,
) -> Result<T, ApiError> {
    let state = Arc::clone(state);
    tokio::task::spawn_blocking(move || {
        let lock = state.write_lock(&account);
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        op(&state, &account)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(ApiError::from)
}

/// `GET /v2/accounts/{account_id}/api_keys`: the account's keys in id
/// order (paging and filters as every listing).
pub(crate) async fn index(
    State(state): State<Arc<AppState>>,
    Authed(account): Authed,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Success, ApiError> {
    let listing = Listing::parse(&params, state.config.page_size)?;
    let mut keys = locked(&state, account, |state, account| {
        let ring = KeyRing::load(&state.store, account)?;
        if ring.migrated {
            ring.save(&state.store)?;
            republish(state, account)?;
        }
        Ok(ring.keys())
    })
    .await?;
    keys.sort_by(|a, b| a.id.cmp(&b.id));
    let rows = keys.iter().map(api_view).filter(|row| listing.passes(row));
    listing.answer(
        rows,
        |row| row["id"].as_str().unwrap_or_default().to_owned(),
        Order::Ascending,
        |row| row,
    )
}

/// `PUT /v2/accounts/{account_id}/api_keys`: `{"data": {"name": ...}}`
/// (the name is optional) → 201 with the key, shown this once.
pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    Authed(account): Authed,
    body: Body,
) -> Result<Success, ApiError> {
    let data = request_data(body)?;
    let name = match data.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name.clone()),
        Some(_) => {
            return Err(KeyError::BadName {
                code: "type",
                message: "the name must be a string".to_owned(),
            }
            .into());
        }
    };
    let (key, secret) = locked(&state, account, move |state, account| {
        let created = create_key(&state.store, account, name.as_deref())?;
        republish(state, account)?;
        Ok(created)
    })
    .await?;
    let mut data = api_view(&key);
    if let Value::Object(obj) = &mut data {
        obj.insert("api_key".into(), json!(secret));
    }
    Ok(Success::ok(data).with_status(StatusCode::CREATED))
}

/// `DELETE /v2/accounts/{account_id}/api_keys/{key_id}`: revokes the key;
/// the tokens it gave stop working at once.
pub(crate) async fn delete(
    State(state): State<Arc<AppState>>,
    Authed(account): Authed,
    Path((_, id)): Path<(String, String)>,
) -> Result<Success, ApiError> {
    let key = locked(&state, account, move |state, account| {
        let key = revoke_key(&state.store, account, &id)?;
        state.end_tokens_of_key(account, &key.id);
        republish(state, account)?;
        Ok(key)
    })
    .await?;
    let mut data = api_view(&key);
    if let Value::Object(obj) = &mut data {
        obj.insert("_read_only".into(), json!({"deleted": true}));
    }
    Ok(Success::ok(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two writers of one `account.json` (two handles, as the server and
    /// `callflow api-key` are), one creating keys while the other revokes:
    /// every read-modify-write holds the file's lock, so no key revoked
    /// comes back and no key created is lost.
    #[test]
    fn interleaved_creates_and_revokes_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let account = AccountId::new("acme").unwrap();
        let store = FlowsDir::new(dir.path());
        store.create_account(&account, &Object::new()).unwrap();
        let old: Vec<String> = (0..30)
            .map(|_| create_key(&store, &account, None).unwrap().0.id)
            .collect();
        let creator = {
            let store = FlowsDir::new(dir.path());
            let account = account.clone();
            std::thread::spawn(move || {
                (0..30)
                    .map(|i| {
                        let name = format!("new-{i}");
                        create_key(&store, &account, Some(&name)).unwrap().0.id
                    })
                    .collect::<std::collections::BTreeSet<_>>()
            })
        };
        for id in &old {
            revoke_key(&store, &account, id).unwrap();
        }
        let added = creator.join().unwrap();
        let left: std::collections::BTreeSet<_> = list_keys(&store, &account)
            .unwrap()
            .into_iter()
            .map(|key| key.id)
            .collect();
        assert_eq!(left, added);
    }
}
