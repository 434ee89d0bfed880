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
use std::sync::{Arc, PoisonError};

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

use super::keys::{self, KeyError};

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

/// The account whose `account.json` holds this key's hash (read from disk,
/// so keys created while the server runs work at once).
fn key_account(store: &FlowsDir, hash: &str) -> Result<Option<AccountId>, StoreError> {
    for account in store.account_ids()? {
        let Some(text) = store.read_account_file(&account)? else {
            continue;
        };
        let Ok(doc) = serde_json::from_str::<Object>(&text) else {
            continue;
        };
        let known = doc
            .get(super::keys::API_KEYS_FIELD)
            .and_then(Value::as_array)
            .is_some_and(|keys| {
                keys.iter()
                    .any(|k| k.get("sha256").and_then(Value::as_str) == Some(hash))
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
        return token_reply(&state, Holder::Operator, None, ("operator", json!(true)));
    }
    let blocking = Arc::clone(&state);
    let (account, key_id) = tokio::task::spawn_blocking(move || login(&blocking, &hash))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??
        .ok_or(ApiError::InvalidCredentials)?;
    let who = ("account_id", json!(account.as_str()));
    token_reply(&state, Holder::Account(account), Some(key_id), who)
}

/// The account and id of the key whose SHA-256 is `hash`, its use noted
/// under the account's write lock (written at most once a minute).
///
/// That write is the server's own: the reloader is told so, sparing a
/// reload per login, when the file's keys are those the catalog holds
/// (else the file changed behind the server's back, and the watcher must
/// read it). A key the catalog does not hold yet is confirmed for this
/// generation, as [`key_is_live`] would find it on disk.
fn login(state: &AppState, hash: &str) -> Result<Option<(AccountId, String)>, KeyError> {
    let Some(account) = key_account(&state.store, hash)? else {
        return Ok(None);
    };
    let generation = state.generation();
    let flows = generation.catalog.account(account.as_str());
    let lock = state.write_lock(&account);
    let guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
    let noted = match keys::note_use(&state.store, &account, hash) {
        Ok(Some(noted)) => noted,
        // Revoked, or the account removed, since the look-up.
        Ok(None) | Err(KeyError::NoAccount(_)) => return Ok(None),
        Err(other) => return Err(other),
    };
    let cached = flows.map(|f| keys::key_ids(&f.account.extra));
    if noted.wrote
        && cached.as_ref().is_some_and(|cached| {
            cached.len() == noted.ids.len() && cached.iter().all(|id| noted.ids.contains(*id))
        })
    {
        state.wrote_account_file(&account);
    }
    drop(guard);
    if !cached.is_some_and(|cached| cached.contains(noted.id.as_str())) {
        state.confirm_key(&account, &noted.id, Some(generation.number));
    }
    Ok(Some((account, noted.id)))
}

/// A new token for `holder` as Kazoo answers a login (201, the token beside
/// `data`), `data` saying who it is for (`who`) and when it expires.
fn token_reply(
    state: &AppState,
    holder: Holder,
    key_id: Option<String>,
    (key, value): (&str, Value),
) -> Result<Success, ApiError> {
    let (token, expires) = state.issue_token(holder, key_id)?;
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
///
/// A token from an API key works while the key does. The catalog's copy
/// of `account.json` answers first (no file read per request): it follows
/// the file through the server's own key writes, the file watcher, the
/// poll, SIGHUP and `POST /v2/reload`. A key it does not hold is looked up
/// on disk (off the runtime), once per generation while it is there. So a
/// key revoked through the API ends its tokens at once, and one revoked by
/// `callflow api-key revoke` when the server next reads `account.json`.
/// A token whose key is gone is ended.
async fn token_holder(parts: &Parts, state: &Arc<AppState>) -> Result<Holder, ApiError> {
    let token = token_from(&parts.headers, &parts.uri).ok_or(ApiError::InvalidCredentials)?;
    holder_of(state, &token).await
}

/// Whom a live token was handed to, its key still there (see
/// [`token_holder`]); the WebSocket asks this too.
pub(crate) async fn holder_of(state: &Arc<AppState>, token: &str) -> Result<Holder, ApiError> {
    let (holder, key_id) = state
        .token_holder(token)
        .ok_or(ApiError::InvalidCredentials)?;
    if let (Holder::Account(account), Some(key_id)) = (&holder, key_id)
        && !key_is_live(state, account, key_id).await?
    {
        state.end_token(token);
        return Err(ApiError::InvalidCredentials);
    }
    Ok(holder)
}

/// Whether the API key `key_id` of `account` still exists (see
/// [`token_holder`]).
async fn key_is_live(
    state: &Arc<AppState>,
    account: &AccountId,
    key_id: String,
) -> Result<bool, ApiError> {
    let generation = state.generation();
    let cached = generation
        .catalog
        .account(account.as_str())
        .is_some_and(|flows| keys::has_key(&flows.account.extra, &key_id));
    if cached || state.key_confirmed(account, &key_id, generation.number) {
        return Ok(true);
    }
    let blocking = Arc::clone(state);
    let account = account.clone();
    tokio::task::spawn_blocking(move || {
        let live = keys::key_on_disk(&blocking.store, &account, &key_id)?;
        blocking.confirm_key(&account, &key_id, live.then_some(generation.number));
        Ok::<_, KeyError>(live)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(ApiError::from)
}

/// `DELETE /v2/token_auth`: ends the token the request carries (401
/// without a live one). As Kazoo answers: 200, empty `data`, and no
/// `auth_token` echoed back.
pub(crate) async fn end_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    Caller(_): Caller,
) -> Success {
    if let Some(token) = token_from(&headers, &uri) {
        state.end_token(&token);
    }
    let mut success = Success::ok(json!({}));
    success
        .extra
        .insert("auth_token".into(), Value::String(String::new()));
    success
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
        let holder = token_holder(parts, state).await?;
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
        token_holder(parts, state).await.map(Caller)
    }
}
