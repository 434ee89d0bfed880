//! The six calls of the seed: `/v2/accounts/{ACCOUNT_ID}/callflows[/{ID}]`.
//!
//! Reads come from the catalog (listing) or the file (one document); every
//! write takes the account's write lock, re-reads the stored document,
//! checks its revision, validates, writes the file atomically and reloads
//! the account, so the next call routes with the change.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use serde_json::{Map, Value, json};

use super::auth::{Authed, random_hex, sha256_hex};
use super::envelope::{ApiError, Success};
use super::kazoo;
use super::paging::{Listing, Order};
use super::state::AppState;
use super::{Body, request_data_off};
use crate::ids::{AccountId, DocId, DocType};
use crate::model::Object;
use crate::store::CALLFLOWS;

/// What a write does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    Create,
    Replace,
    Patch,
    Delete,
}

fn callflows_type() -> DocType {
    DocType::new(CALLFLOWS).expect("\"callflows\" follows the id rule")
}

/// The revision of a stored file: the start of its SHA-256, so a hand edit
/// changes it as surely as an API write.
fn revision(text: &str) -> String {
    sha256_hex(text.as_bytes())[..32].to_owned()
}

fn doc_id(text: &str) -> Result<DocId, ApiError> {
    DocId::new(text).map_err(|_| ApiError::BadIdentifier(text.to_owned()))
}

/// A stored, not deleted, callflow document and its revision.
fn load(
    state: &AppState,
    account: &AccountId,
    id: &DocId,
) -> Result<Option<(Object, String)>, ApiError> {
    let Some(text) = state.store.read_document(account, &callflows_type(), id)? else {
        return Ok(None);
    };
    let Ok(doc) = serde_json::from_str::<Object>(&text) else {
        // A hand-broken file: the API cannot serve or merge it.
        return Err(ApiError::Internal(format!(
            "callflow {id} of account {account} is not a JSON object on disk (see `callflow check`)"
        )));
    };
    if doc.get("pvt_deleted") == Some(&Value::Bool(true)) {
        return Ok(None);
    }
    Ok(Some((doc, revision(&text))))
}

/// The public document with its id, as responses show it.
fn shown(id: &DocId, doc: &Object) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), json!(id.as_str()));
    for (key, value) in kazoo::public(doc) {
        if key != "id" {
            out.insert(key, value);
        }
    }
    Value::Object(out)
}

/// The request's document: `id`, `_rev` and private keys removed; `_rev` is
/// returned as the revision the client expects.
fn from_request(mut data: Object) -> (Object, Option<String>) {
    let rev = match data.remove("_rev") {
        Some(Value::String(rev)) => Some(rev),
        _ => None,
    };
    data.remove("id");
    (kazoo::public(&data), rev)
}

/// The revision in `If-Match` (quotes and `W/` allowed).
fn if_match(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::IF_MATCH)?.to_str().ok()?.trim();
    let value = value.strip_prefix("W/").unwrap_or(value);
    Some(value.trim_matches('"').to_owned()).filter(|v| !v.is_empty() && v != "*")
}

/// Now in Gregorian seconds, Kazoo's unit for `pvt_created` and
/// `pvt_modified` (what `created_from`, ... compare with).
fn now_seconds() -> Value {
    json!(jiff::Timestamp::now().as_second() + kazoo::UNIX_EPOCH_GREGORIAN)
}

/// One write, under the account's lock (blocking: run it off the runtime).
fn write(
    state: &AppState,
    account: &AccountId,
    id: &DocId,
    mode: Write,
    data: Object,
    expected: Option<String>,
) -> Result<(Object, String), ApiError> {
    let lock = state.write_lock(account);
    let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
    let stored = load(state, account, id)?;
    let (request, body_rev) = from_request(data);
    let expected = expected.or(body_rev);
    if let (Some(expected), Some((_, current))) = (&expected, &stored)
        && expected != current
    {
        return Err(ApiError::Conflict(format!(
            "revision {expected} is not the current revision {current} of {id}"
        )));
    }
    let flows = state
        .account(account)
        .ok_or_else(|| ApiError::BadIdentifier(account.to_string()))?;
    let (mut doc, mut private) = match (mode, stored) {
        (Write::Create, Some(_)) => {
            return Err(ApiError::Conflict(format!("document {id} exists")));
        }
        (Write::Create, None) => {
            let mut private = Object::new();
            private.insert("pvt_type".into(), json!("callflow"));
            private.insert("pvt_created".into(), now_seconds());
            (request, private)
        }
        (_, None) => return Err(ApiError::BadIdentifier(id.to_string())),
        (Write::Replace, Some((stored, _))) => (request, kazoo::private(&stored)),
        (Write::Patch, Some((stored, _))) => {
            let mut doc = kazoo::public(&stored);
            kazoo::merge_patch(&mut doc, &request);
            (doc, kazoo::private(&stored))
        }
        (Write::Delete, Some((stored, _))) => {
            let mut private = kazoo::private(&stored);
            private.insert("pvt_deleted".into(), Value::Bool(true));
            (kazoo::public(&stored), private)
        }
    };
    if mode != Write::Delete {
        // Crossbar writes the schema's defaults into the document.
        for key in ["numbers", "patterns"] {
            doc.entry(key).or_insert_with(|| json!([]));
        }
        kazoo::normalize_numbers(&mut doc, &flows);
    }
    // E.164 numbers belong to one account server-wide: a write claiming one
    // holds this lock from validation to publication, so two accounts
    // cannot both claim a number.
    let _e164 = (mode != Write::Delete && kazoo::claims_e164(&doc)).then(|| state.e164_lock());
    if mode != Write::Delete {
        let generation = state.generation();
        kazoo::validate(
            &doc,
            id,
            &flows,
            &generation.catalog,
            generation.modules.as_ref(),
            state.config.allow_private_urls,
        )
        .map_err(ApiError::Validation)?;
    }
    private.insert("pvt_modified".into(), now_seconds());
    let mut full = doc;
    full.extend(private);
    state
        .store
        .write_document(account, &callflows_type(), id, &full)?;
    let text = state
        .store
        .read_document(account, &callflows_type(), id)?
        .unwrap_or_default();
    state.reload_document(account, &callflows_type(), id)?;
    Ok((full, revision(&text)))
}

/// Runs a write off the async runtime.
async fn write_blocking(
    state: Arc<AppState>,
    account: AccountId,
    id: DocId,
    mode: Write,
    data: Object,
    expected: Option<String>,
) -> Result<(Object, String), ApiError> {
    tokio::task::spawn_blocking(move || write(&state, &account, &id, mode, data, expected))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// `GET /v2/accounts/{ACCOUNT_ID}/callflows`: summaries in id order, with
/// filters and paging.
pub(crate) async fn index(
    State(state): State<Arc<AppState>>,
    Authed(account): Authed,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Success, ApiError> {
    let flows = state
        .account(&account)
        .ok_or_else(|| ApiError::BadIdentifier(account.to_string()))?;
    let listing = Listing::parse(&params, state.config.page_size)?;
    // Filtering and summarizing a large account is work: off the runtime.
    tokio::task::spawn_blocking(move || {
        let matching = flows.callflows.values().filter(|callflow| {
            if listing.filters.is_empty() {
                return true;
            }
            let Value::Object(full) = callflow.to_value() else {
                return false;
            };
            let mut public = kazoo::public(&full);
            public.insert("id".into(), json!(callflow.id.as_str()));
            listing.passes_document(&Value::Object(public), &kazoo::private(&full))
        });
        listing.answer(
            matching,
            |callflow| callflow.id.to_string(),
            Order::Ascending,
            |callflow| kazoo::summary(callflow),
        )
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// `PUT /v2/accounts/{ACCOUNT_ID}/callflows`: create, 201.
pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    Authed(account): Authed,
    body: Body,
) -> Result<Success, ApiError> {
    let data = request_data_off(body).await?;
    let id = doc_id(&random_hex(16)?)?;
    let (doc, rev) = write_blocking(state, account, id.clone(), Write::Create, data, None).await?;
    Ok(Success::ok(shown(&id, &doc))
        .with_status(StatusCode::CREATED)
        .with_revision(rev))
}

/// `GET /v2/accounts/{ACCOUNT_ID}/callflows/{CALLFLOW_ID}`.
pub(crate) async fn fetch(
    State(state): State<Arc<AppState>>,
    Authed(account): Authed,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<Success, ApiError> {
    let id = doc_id(params.get("callflow_id").map_or("", String::as_str))?;
    let found = {
        let state = Arc::clone(&state);
        let id = id.clone();
        let account = account.clone();
        tokio::task::spawn_blocking(move || load(&state, &account, &id))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??
    };
    let (doc, rev) = found.ok_or_else(|| ApiError::BadIdentifier(id.to_string()))?;
    let mut data = shown(&id, &doc);
    if let (Value::Object(obj), Some(flows)) = (&mut data, state.account(&account)) {
        obj.insert(
            "metadata".into(),
            Value::Object(kazoo::metadata(&doc, &flows)),
        );
    }
    Ok(Success::ok(data).with_revision(rev))
}

async fn update(
    state: Arc<AppState>,
    account: AccountId,
    params: &BTreeMap<String, String>,
    headers: &HeaderMap,
    mode: Write,
    data: Object,
) -> Result<Success, ApiError> {
    let id = doc_id(params.get("callflow_id").map_or("", String::as_str))?;
    let (doc, rev) =
        write_blocking(state, account, id.clone(), mode, data, if_match(headers)).await?;
    let mut shown = shown(&id, &doc);
    if mode == Write::Delete
        && let Value::Object(obj) = &mut shown
    {
        obj.insert("_read_only".into(), json!({"deleted": true}));
    }
    Ok(Success::ok(shown).with_revision(rev))
}

/// `POST /v2/accounts/{ACCOUNT_ID}/callflows/{CALLFLOW_ID}`: replace;
/// `PATCH` on the same path: merge.
pub(crate) async fn replace_or_patch(
    State(state): State<Arc<AppState>>,
    Authed(account): Authed,
    method: Method,
    Path(params): Path<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Success, ApiError> {
    let data = request_data_off(body).await?;
    let mode = if method == Method::PATCH {
        Write::Patch
    } else {
        Write::Replace
    };
    update(state, account, &params, &headers, mode, data).await
}

/// `DELETE /v2/accounts/{ACCOUNT_ID}/callflows/{CALLFLOW_ID}`: soft delete.
pub(crate) async fn delete(
    State(state): State<Arc<AppState>>,
    Authed(account): Authed,
    Path(params): Path<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Result<Success, ApiError> {
    update(
        state,
        account,
        &params,
        &headers,
        Write::Delete,
        Object::new(),
    )
    .await
}
