//! Authentication: API keys (stored as SHA-256 hashes in `account.json`),
//! `PUT /v2/api_auth` exchanging a key for an expiring token, and the
//! [`Authed`] extractor every account route uses.
//!
//! A token is scoped to one account: a request for another account is 403.
//! The operator's key (`serve --operator-key-file`) gives an operator
//! token, which only server-wide actions take (`POST /v2/reload`).
//! Tokens live in the server's memory, so a restart asks clients to
//! authenticate again (documents, keys and everything else are on disk).
//! Logins are rate-limited per source address and per key (429 with
//! `Retry-After`), and each holder keeps at most
//! `Config::max_tokens_per_account` live tokens (the oldest expire first).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::envelope::{ApiError, Success};
use super::state::{AppState, Holder};
use super::{Body, request_data};
use crate::ids::AccountId;
use crate::model::Object;
use crate::store::{FlowsDir, StoreError};

/// Where `account.json` keeps the hashes of the account's API keys.
pub const API_KEYS_FIELD: &str = "pvt_api_keys";

/// `n` random bytes from the operating system, as lower-case hex (ids,
/// keys, tokens).
pub fn random_hex(n: usize) -> Result<String, ApiError> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::Internal(format!("no randomness from the OS: {e}")))?;
    Ok(hex(&bytes))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// SHA-256 of `text`, as lower-case hex.
pub(crate) fn sha256_hex(text: &[u8]) -> String {
    hex(&Sha256::digest(text))
}

/// Why an API key could not be created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("account {0} does not exist (create it with `callflow account create`)")]
    NoAccount(String),
    #[error("account.json of {account} is not a JSON object: {message}")]
    BadAccountFile { account: String, message: String },
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates an API key for `account`: stores its SHA-256 in `account.json`
/// (atomically) and returns the key, which is never stored.
pub fn create_api_key(store: &FlowsDir, account: &AccountId) -> Result<String, KeyError> {
    if !store.root().join(account.as_str()).is_dir() {
        return Err(KeyError::NoAccount(account.to_string()));
    }
    let mut doc: Object = match store.read_account_file(account)? {
        Some(text) => serde_json::from_str(&text).map_err(|e| KeyError::BadAccountFile {
            account: account.to_string(),
            message: e.to_string(),
        })?,
        None => Object::new(),
    };
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
    let key = hex(&bytes);
    let entry = json!({
        "sha256": sha256_hex(key.as_bytes()),
        "created": jiff::Timestamp::now().to_string(),
    });
    match doc.get_mut(API_KEYS_FIELD) {
        Some(Value::Array(keys)) => keys.push(entry),
        _ => {
            doc.insert(API_KEYS_FIELD.into(), Value::Array(vec![entry]));
        }
    }
    store.write_account(account, &doc)?;
    Ok(key)
}

/// The account whose `account.json` holds this key's hash (read from disk,
/// so keys created while the server runs work at once).
fn key_account(store: &FlowsDir, key: &str) -> Result<Option<AccountId>, StoreError> {
    let hash = sha256_hex(key.as_bytes());
    for account in store.account_ids()? {
        let Some(text) = store.read_account_file(&account)? else {
            continue;
        };
        let Ok(doc) = serde_json::from_str::<Object>(&text) else {
            continue;
        };
        let known = doc
            .get(API_KEYS_FIELD)
            .and_then(Value::as_array)
            .is_some_and(|keys| {
                keys.iter()
                    .any(|k| k.get("sha256").and_then(Value::as_str) == Some(hash.as_str()))
            });
        if known {
            return Ok(Some(account));
        }
    }
    Ok(None)
}

/// Seconds to wait, rounded up, for `Retry-After`.
fn retry_after(wait: std::time::Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// `PUT /v2/api_auth`: `{"data": {"api_key": "..."}}` → 201 with a token
/// (an account's, or the operator's for the operator key). 429 past the
/// rate of the source address or of the key.
pub(crate) async fn api_auth(
    State(state): State<Arc<AppState>>,
    source: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Body,
) -> Result<Success, ApiError> {
    // The rate limits' clock: the server's edge may read it.
    let now = tokio::time::Instant::now();
    if let Some(Extension(ConnectInfo(source))) = source {
        state
            .logins
            .source(source.ip(), now)
            .map_err(|wait| ApiError::TooManyRequests {
                what: "logins from this address",
                retry_after_s: retry_after(wait),
            })?;
    }
    let data = request_data(body)?;
    let Some(key) = data.get("api_key").and_then(Value::as_str) else {
        let mut errors = serde_json::Map::new();
        errors.insert(
            "api_key".into(),
            json!({"required": {"message": "Field is required but missing"}}),
        );
        return Err(ApiError::Validation(errors));
    };
    let hash = sha256_hex(key.as_bytes());
    state
        .logins
        .key(&hash, now)
        .map_err(|wait| ApiError::TooManyRequests {
            what: "logins with this key",
            retry_after_s: retry_after(wait),
        })?;
    if state.config.operator_key_sha256.as_deref() == Some(hash.as_str()) {
        return token_reply(&state, Holder::Operator, ("operator", json!(true)));
    }
    let key = key.to_owned();
    let blocking = Arc::clone(&state);
    let account = tokio::task::spawn_blocking(move || {
        let Some(account) = key_account(&blocking.store, &key)? else {
            return Ok(None);
        };
        if blocking.account(&account).is_none() {
            // An account created since the server started.
            blocking.reload_account(&account)?;
        }
        Ok::<_, StoreError>(Some(account))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??
    .ok_or(ApiError::InvalidCredentials)?;
    let who = ("account_id", json!(account.as_str()));
    token_reply(&state, Holder::Account(account), who)
}

/// A new token for `holder` as Kazoo answers a login (201, the token beside
/// `data`), `data` saying who it is for (`who`) and when it expires.
fn token_reply(
    state: &AppState,
    holder: Holder,
    (key, value): (&str, Value),
) -> Result<Success, ApiError> {
    let (token, expires) = state.issue_token(holder)?;
    let mut success = Success::ok(json!({
        key: value,
        "expires": expires.to_string(),
        "ttl_s": state.config.token_ttl.as_secs(),
    }))
    .with_status(StatusCode::CREATED);
    success
        .extra
        .insert("auth_token".into(), Value::String(token));
    Ok(success)
}

/// The token a request carries: `X-Auth-Token`, else the `auth_token` query
/// parameter, else `Authorization: Bearer <token>` (Kazoo's order).
pub(crate) fn token_from(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    if let Some(token) = headers.get("x-auth-token").and_then(|v| v.to_str().ok()) {
        return Some(token.trim().to_owned()).filter(|t| !t.is_empty());
    }
    if let Ok(Query(params)) = Query::<BTreeMap<String, String>>::try_from_uri(uri)
        && let Some(token) = params.get("auth_token")
    {
        return Some(token.clone()).filter(|t| !t.is_empty());
    }
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// Whom the request's live token was handed to (401 without one).
fn token_holder(parts: &Parts, state: &AppState) -> Result<Holder, ApiError> {
    let token = token_from(&parts.headers, &parts.uri).ok_or(ApiError::InvalidCredentials)?;
    state
        .token_holder(&token)
        .ok_or(ApiError::InvalidCredentials)
}

/// A request authenticated for the account in its path.
#[derive(Debug, Clone)]
pub(crate) struct Authed(pub AccountId);

impl FromRequestParts<Arc<AppState>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let holder = token_holder(parts, state)?;
        let Path(params) = Path::<BTreeMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
        let requested = params.get("account_id").cloned().unwrap_or_default();
        if AccountId::new(&requested).is_err() {
            return Err(ApiError::BadIdentifier(requested));
        }
        let account = match holder {
            Holder::Account(account) if account.as_str() == requested => account,
            // The operator's token is for server-wide actions only.
            Holder::Account(_) | Holder::Operator => return Err(ApiError::Forbidden(requested)),
        };
        if state.account(&account).is_none() {
            return Err(ApiError::BadIdentifier(requested));
        }
        Ok(Authed(account))
    }
}

/// A request with a live token, the operator's or any account's
/// (server-wide routes such as `/v2/reload`).
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub Holder);

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        token_holder(parts, state).map(Caller)
    }
}
