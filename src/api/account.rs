//! The account document itself (`/v2/accounts/{ACCOUNT_ID}`: fetch,
//! replace, PATCH) and its metaflows (`/v2/accounts/{ACCOUNT_ID}/metaflows`:
//! fetch, replace, PATCH, delete, as Kazoo's `cb_metaflows`). Both edit
//! `account.json` under the account's write lock, validated with `callflow
//! check`'s account checks, written atomically and published.
//!
//! Private keys (`pvt_*`, `_*`: the API keys' hashes among them) are never
//! shown and always kept.

use std::sync::{Arc, PoisonError};

use axum::extract::State;
use axum::http::{HeaderMap, Method};
use serde_json::{Value, json};

use super::auth::Authed;
use super::documents::{check_revision, if_match, now_seconds, revision};
use super::envelope::{ApiError, Success};
use super::kazoo;
use super::state::AppState;
use super::{Body, blocking, request_data_off};
use crate::ids::AccountId;
use crate::model::Object;

/// The stored account document (an empty one for an account folder without
/// `account.json`) and its revision.
fn load(state: &AppState, account: &AccountId) -> Result<(Object, Option<String>), ApiError> {
    match state.store.read_account_file(account)? {
        None => Ok((Object::new(), None)),
        Some(text) => {
            let doc = serde_json::from_str::<Object>(&text).map_err(|_| {
                ApiError::Internal(format!(
                    "account.json of {account} is not a JSON object on disk (see `callflow check`)"
                ))
            })?;
            Ok((doc, Some(revision(&text))))
        }
    }
}

/// [`load`] off the runtime.
async fn load_off(
    state: &Arc<AppState>,
    account: &AccountId,
) -> Result<(Object, Option<String>), ApiError> {
    let state = Arc::clone(state);
    let account = account.clone();
    blocking(move || load(&state, &account)).await
}

/// The public account as shown.
fn shown(account: &AccountId, doc: &Object) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("id".into(), json!(account.as_str()));
    out.extend(
        kazoo::public(doc)
            .into_iter()
            .filter(|(key, _)| key != "id"),
    );
    Value::Object(out)
}

/// The realm an account document gives its account (`realm`, else the
/// account's id, as [`crate::live::account_realm`] has it), as written, and
/// as compared: trimmed, in lower case.
fn realm_of(account: &AccountId, doc: &Object) -> (String, String) {
    let realm = doc
        .get("realm")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
        .unwrap_or(account.as_str())
        .trim()
        .to_owned();
    let key = realm.to_ascii_lowercase();
    (realm, key)
}

/// Refuses a realm another account has (Kazoo's `unique` error on
/// `realm`): the SIP directory finds devices by realm and user name, so
/// the account that came first would keep the other's logins. Only a
/// change of realm is checked, so an account is never kept from editing
/// by a clash it did not make (`callflow check` reports those).
fn check_realm(
    state: &AppState,
    account: &AccountId,
    stored: &Object,
    doc: &Object,
) -> Result<(), ApiError> {
    let (realm, key) = realm_of(account, doc);
    if key == realm_of(account, stored).1 {
        return Ok(());
    }
    let taken = state.catalog().accounts().any(|other| {
        other.account.id != *account
            && crate::live::account_realm(other)
                .trim()
                .to_ascii_lowercase()
                == key
    });
    if !taken {
        return Ok(());
    }
    let mut errors = kazoo::KazooErrors::new();
    errors.insert(
        "realm".into(),
        json!({"unique": {"message": format!("realm {realm} is already in use"), "cause": realm}}),
    );
    Err(ApiError::Validation(errors))
}

/// Changes the public part of `account.json` with `change`, validates the
/// result and saves it: under the account's write lock, then the file's
/// own lock (other processes write it too: `callflow api-key`), from the
/// read to the write; a change of realm holds the server's claims lock
/// until it is published too.
fn edit(
    state: &AppState,
    account: &AccountId,
    expected: Option<&String>,
    change: impl FnOnce(&mut Object) -> Result<(), ApiError>,
) -> Result<(Object, String), ApiError> {
    let lock = state.write_lock(account);
    let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
    if state.account(account).is_none() {
        return Err(ApiError::BadIdentifier(account.to_string()));
    }
    let _file = state.store.lock_account(account)?;
    let (stored, current) = load(state, account)?;
    check_revision(expected, current.as_ref(), "account.json")?;
    let mut doc = kazoo::public(&stored);
    change(&mut doc)?;
    doc.remove("id");
    // Realms belong to one account server-wide: held from the check to
    // the publication, so two accounts cannot both take one.
    let _claims =
        (realm_of(account, &doc).1 != realm_of(account, &stored).1).then(|| state.claims_lock());
    check_realm(state, account, &stored, &doc)?;
    let mut errors = kazoo::KazooErrors::new();
    let text = serde_json::to_string(&doc).map_err(|e| ApiError::Internal(e.to_string()))?;
    let generation = state.generation();
    let diags = crate::catalog::check_account_text(account, &text, generation.modules.as_ref());
    let diags: Vec<_> = diags
        .into_iter()
        .filter(|d| d.code != crate::model::Code::UnknownModule)
        .collect();
    kazoo::add_diagnostics(&mut errors, &diags, &doc, state.config.allow_private_urls);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let mut full = doc;
    full.extend(kazoo::private(&stored));
    full.insert("pvt_modified".into(), now_seconds());
    state.store.write_account(account, &full)?;
    let (_, rev) = load(state, account)?;
    state.reload_account(account)?;
    Ok((full, rev.unwrap_or_default()))
}

async fn edit_blocking(
    state: Arc<AppState>,
    account: AccountId,
    expected: Option<String>,
    change: impl FnOnce(&mut Object) -> Result<(), ApiError> + Send + 'static,
) -> Result<(Object, String), ApiError> {
    blocking(move || edit(&state, &account, expected.as_ref(), change)).await
}

/// `GET /v2/accounts/{ACCOUNT_ID}`.
pub(crate) async fn fetch(
    State(state): State<Arc<AppState>>,
    Authed(account): Authed,
) -> Result<Success, ApiError> {
    let (doc, rev) = load_off(&state, &account).await?;
    let reply = Success::ok(shown(&account, &doc));
    Ok(match rev {
        Some(rev) => reply.with_revision(rev),
        None => reply,
    })
}

/// `POST /v2/accounts/{ACCOUNT_ID}` (replace the public fields) and
/// `PATCH` (merge).
pub(crate) async fn replace_or_patch(
    State(state): State<Arc<AppState>>,
    Authed(account): Authed,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Result<Success, ApiError> {
    let mut data = request_data_off(body).await?;
    let expected = match data.remove("_rev") {
        Some(Value::String(rev)) => Some(rev),
        _ => if_match(&headers),
    };
    let request = kazoo::public(&data);
    let patch = method == Method::PATCH;
    let (doc, rev) = edit_blocking(state, account.clone(), expected, move |doc| {
        if patch {
            kazoo::merge_patch(doc, &request);
        } else {
            *doc = request;
        }
        Ok(())
    })
    .await?;
    Ok(Success::ok(shown(&account, &doc)).with_revision(rev))
}

/// The account's `metaflows` as shown (`{}` when it has none).
fn metaflows_of(doc: &Object) -> Value {
    doc.get("metaflows").cloned().unwrap_or_else(|| json!({}))
}

/// `GET /v2/accounts/{ACCOUNT_ID}/metaflows`.
pub(crate) async fn metaflows(
    State(state): State<Arc<AppState>>,
    Authed(account): Authed,
) -> Result<Success, ApiError> {
    let (doc, rev) = load_off(&state, &account).await?;
    let reply = Success::ok(metaflows_of(&doc));
    Ok(match rev {
        Some(rev) => reply.with_revision(rev),
        None => reply,
    })
}

/// `POST /v2/accounts/{ACCOUNT_ID}/metaflows` (replace), `PATCH` (merge)
/// and `DELETE` (the account has no metaflows of its own then).
pub(crate) async fn change_metaflows(
    State(state): State<Arc<AppState>>,
    Authed(account): Authed,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Result<Success, ApiError> {
    let request = if method == Method::DELETE {
        None
    } else {
        Some(request_data_off(body).await?)
    };
    let (doc, rev) = edit_blocking(state, account, if_match(&headers), move |doc| {
        match (request, method == Method::PATCH) {
            (None, _) => {
                doc.remove("metaflows");
            }
            (Some(request), true) => {
                let mut merged = match doc.remove("metaflows") {
                    Some(Value::Object(stored)) => stored,
                    _ => Object::new(),
                };
                kazoo::merge_patch(&mut merged, &request);
                doc.insert("metaflows".into(), Value::Object(merged));
            }
            (Some(request), false) => {
                doc.insert("metaflows".into(), Value::Object(request));
            }
        }
        Ok(())
    })
    .await?;
    Ok(Success::ok(metaflows_of(&doc)).with_revision(rev))
}
