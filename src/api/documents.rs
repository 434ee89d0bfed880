//! Kazoo's six calls on every account document type
//! (`/v2/accounts/{ACCOUNT_ID}/<type>[/{ID}]`, the types of `kinds.rs`):
//! list with the type's summary, create, fetch, replace, PATCH and soft
//! delete.
//!
//! Reads come from the catalog (listing) or the file (one document); every
//! write takes the account's write lock, re-reads the stored document,
//! checks its revision, validates it with `callflow check`'s code (a
//! callflow with Crossbar's routing rules too), writes the file atomically
//! and durably and publishes the account, so the next call (and the
//! running calls' next read) sees the change.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use serde_json::{Map, Value, json};

use super::auth::{Authed, random_hex, sha256_hex};
use super::envelope::{ApiError, Success};
use super::kazoo;
use super::kinds::{Family, Kind};
use super::paging::{Listing, Order};
use super::state::AppState;
use super::{Body, blocking, request_data_off};
use crate::catalog::AccountFlows;
use crate::ids::{AccountId, DocId, DocType};
use crate::model::{Code, Object};

/// What a write does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    Create,
    Replace,
    Patch,
    Delete,
}

pub(crate) fn doc_type(kind: &Kind) -> DocType {
    // The table's folders are fixed names a test holds to the id rule.
    DocType::new(kind.folder).expect("every kind's folder follows the id rule")
}

/// The revision of a stored file: the start of its SHA-256, so a hand edit
/// changes it as surely as an API write.
pub(crate) fn revision(text: &str) -> String {
    sha256_hex(text.as_bytes())[..32].to_owned()
}

pub(crate) fn doc_id(text: &str) -> Result<DocId, ApiError> {
    DocId::new(text).map_err(|_| ApiError::BadIdentifier(text.to_owned()))
}

/// The document a route names, and its parent's id for nested kinds.
struct Target {
    id: Option<DocId>,
    parent: Option<DocId>,
}

impl Target {
    fn of(kind: &Kind, params: &BTreeMap<String, String>) -> Result<Self, ApiError> {
        let named = |param: &str| params.get(param).map(|text| doc_id(text)).transpose();
        Ok(Self {
            id: named(kind.id_param)?,
            parent: match kind.parent {
                Some((parent, _)) => named(parent.id_param)?,
                None => None,
            },
        })
    }

    fn id(&self) -> Result<&DocId, ApiError> {
        self.id
            .as_ref()
            .ok_or_else(|| ApiError::Internal("a route without its document id".into()))
    }
}

/// A stored, not deleted, document of type `doc_type` and its file's text.
pub(crate) fn load_text(
    state: &AppState,
    account: &AccountId,
    doc_type: &DocType,
    id: &DocId,
) -> Result<Option<(Object, String)>, ApiError> {
    let Some(text) = state.store.read_document(account, doc_type, id)? else {
        return Ok(None);
    };
    let Ok(doc) = serde_json::from_str::<Object>(&text) else {
        // A hand-broken file: the API cannot serve or merge it.
        return Err(ApiError::Internal(format!(
            "{doc_type} {id} of account {account} is not a JSON object on disk (see `callflow check`)"
        )));
    };
    if doc.get("pvt_deleted") == Some(&Value::Bool(true)) {
        return Ok(None);
    }
    Ok(Some((doc, text)))
}

/// A stored, not deleted, document of a kind and its revision.
pub(crate) fn load_stored(
    state: &AppState,
    account: &AccountId,
    kind: &Kind,
    id: &DocId,
) -> Result<Option<(Object, String)>, ApiError> {
    Ok(load_text(state, account, &doc_type(kind), id)?.map(|(doc, text)| (doc, revision(&text))))
}

/// The stored document a route names (`None` also when a nested document
/// belongs to another parent) and its revision.
fn load(
    state: &AppState,
    account: &AccountId,
    kind: &Kind,
    target: &Target,
) -> Result<Option<(Object, String)>, ApiError> {
    check_parent(state, account, kind, target)?;
    let found = load_stored(state, account, kind, target.id()?)?;
    Ok(found.filter(|(doc, _)| belongs(kind, target, doc)))
}

/// Whether a nested document is its parent's (always for other kinds).
fn belongs(kind: &Kind, target: &Target, doc: &Object) -> bool {
    match (kind.parent, &target.parent) {
        (Some((_, field)), Some(parent)) => {
            doc.get(field).and_then(Value::as_str) == Some(parent.as_str())
        }
        _ => true,
    }
}

/// A nested route's parent must exist (404 otherwise).
fn check_parent(
    state: &AppState,
    account: &AccountId,
    kind: &Kind,
    target: &Target,
) -> Result<(), ApiError> {
    if let (Some((parent, _)), Some(id)) = (kind.parent, &target.parent)
        && load_stored(state, account, parent, id)?.is_none()
    {
        return Err(ApiError::BadIdentifier(id.to_string()));
    }
    Ok(())
}

/// The public document with its id, as responses show it.
pub(crate) fn shown(kind: &Kind, id: &DocId, doc: &Object) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), json!(id.as_str()));
    let mut public = kazoo::public(doc);
    kind.hide(&mut public);
    for (key, value) in public {
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
pub(crate) fn if_match(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::IF_MATCH)?.to_str().ok()?.trim();
    let value = value.strip_prefix("W/").unwrap_or(value);
    Some(value.trim_matches('"').to_owned()).filter(|v| !v.is_empty() && v != "*")
}

/// Now in Gregorian seconds, Kazoo's unit for `pvt_created` and
/// `pvt_modified` (what `created_from`, ... compare with).
pub(crate) fn now_seconds() -> Value {
    json!(jiff::Timestamp::now().as_second() + kazoo::UNIX_EPOCH_GREGORIAN)
}

/// A stale revision is a conflict.
pub(crate) fn check_revision(
    expected: Option<&String>,
    current: Option<&String>,
    what: &str,
) -> Result<(), ApiError> {
    if let (Some(expected), Some(current)) = (expected, current)
        && expected != current
    {
        return Err(ApiError::Conflict(format!(
            "revision {expected} is not the current revision {current} of {what}"
        )));
    }
    Ok(())
}

/// The document a write saves (public part) and its private part.
fn compose(
    kind: &Kind,
    mode: Write,
    id: &DocId,
    request: Object,
    stored: Option<(Object, String)>,
) -> Result<(Object, Object), ApiError> {
    Ok(match (mode, stored) {
        (Write::Create, Some(_)) => {
            return Err(ApiError::Conflict(format!("document {id} exists")));
        }
        (Write::Create, None) => {
            let mut private = Object::new();
            private.insert("pvt_type".into(), json!(kind.pvt_type));
            private.insert("pvt_created".into(), now_seconds());
            (request, private)
        }
        (_, None) => return Err(ApiError::BadIdentifier(id.to_string())),
        (Write::Replace, Some((stored, _))) => {
            let mut request = request;
            kind.keep_write_only(&mut request, &stored);
            kind.keep_owned(&mut request, &stored);
            (request, kazoo::private(&stored))
        }
        (Write::Patch, Some((stored, _))) => {
            let mut doc = kazoo::public(&stored);
            kazoo::merge_patch(&mut doc, &request);
            kind.keep_owned(&mut doc, &stored);
            (doc, kazoo::private(&stored))
        }
        (Write::Delete, Some((stored, _))) => {
            let mut private = kazoo::private(&stored);
            private.insert("pvt_deleted".into(), Value::Bool(true));
            (kazoo::public(&stored), private)
        }
    })
}

/// Validates a document about to be saved: a callflow with Crossbar's
/// rules (`unique`, modules; [`prepared`] wrote its defaults and
/// normalized its numbers), anything else
/// with `callflow check`'s checks of its type.
fn validate(
    state: &AppState,
    kind: &Kind,
    id: &DocId,
    doc: &Object,
    flows: &AccountFlows,
) -> Result<(), ApiError> {
    let generation = state.generation();
    match kind.family {
        Family::Callflow => kazoo::validate(
            doc,
            id,
            flows,
            &generation.catalog,
            generation.modules.as_ref(),
            state.config.allow_private_urls,
        )
        .map_err(ApiError::Validation),
        Family::Document => {
            let text = serde_json::to_string(doc).map_err(|e| ApiError::Internal(e.to_string()))?;
            let diags: Vec<_> = crate::catalog::check_document_text(
                &doc_type(kind),
                id,
                &text,
                generation.modules.as_ref(),
            )
            .into_iter()
            // An endpoint's metaflow naming a module no script provides is
            // a warning, as in `callflow check` (Crossbar's metaflow schema
            // names no modules).
            .filter(|diag| diag.code != Code::UnknownModule)
            .collect();
            let mut errors = kazoo::KazooErrors::new();
            kazoo::add_diagnostics(&mut errors, &diags, doc, state.config.allow_private_urls);
            if let Some(check) = kind.check {
                check(doc, id, flows, &generation.catalog, &mut errors);
            }
            if errors.is_empty() {
                Ok(())
            } else {
                Err(ApiError::Validation(errors))
            }
        }
    }
}

/// How often a write tries again when a call changed the document between
/// its read and its write.
const WRITE_TRIES: usize = 5;

/// One write, under the account's lock (blocking: run it off the runtime).
/// Calls save documents without that lock (through the flows directory's
/// compare-and-swap), so the write is one too: the file is replaced only
/// if it still holds what was read, else everything is done again on
/// what the call left (a message left meanwhile is never lost); an
/// `If-Match` that no longer holds is then a 409.
fn write(
    state: &AppState,
    account: &AccountId,
    kind: &Kind,
    target: &Target,
    mode: Write,
    data: Object,
    expected: Option<String>,
) -> Result<Saved, ApiError> {
    let id = target.id()?;
    let lock = state.write_lock(account);
    let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
    let (request, body_rev) = from_request(data);
    let expected = expected.or(body_rev);
    let doc_type = doc_type(kind);
    for _ in 0..WRITE_TRIES {
        let stored = load(state, account, kind, target)?;
        let read = stored.as_ref().map(|(_, rev)| rev.clone());
        check_revision(expected.as_ref(), read.as_ref(), id.as_str())?;
        let (full, claims) = prepared(state, account, kind, target, mode, request.clone(), stored)?;
        // Claims across accounts (E.164 numbers, SIP usernames) hold this
        // lock from validation to publication, so two accounts cannot
        // both make the same one.
        let _claims = claims.then(|| state.claims_lock());
        if mode != Write::Delete {
            let flows = state
                .account(account)
                .ok_or_else(|| ApiError::BadIdentifier(account.to_string()))?;
            validate(state, kind, id, &full, &flows)?;
        }
        let unchanged = |now: Option<&str>| now.map(revision) == read;
        if state
            .store
            .write_document_if(account, &doc_type, id, &full, unchanged)?
        {
            let text = state
                .store
                .read_document(account, &doc_type, id)?
                .unwrap_or_default();
            state.reload_document(account, &doc_type, id)?;
            if mode == Write::Delete
                && let Some(children) = kind.children
            {
                delete_children(state, account, children, id)?;
            }
            return Ok(Saved {
                doc: full,
                rev: revision(&text),
                note: None,
            });
        }
    }
    Err(ApiError::Conflict(format!(
        "{id} kept changing (calls writing it) through {WRITE_TRIES} tries"
    )))
}

/// Soft-deletes the documents of kind `children` that belong to `parent`
/// (a deleted list's entries), each only if no call changed it meanwhile
/// (then it is read again), so none is left to match for a list that is
/// gone.
fn delete_children(
    state: &AppState,
    account: &AccountId,
    children: &Kind,
    parent: &DocId,
) -> Result<(), ApiError> {
    let Some((_, field)) = children.parent else {
        return Ok(());
    };
    let Some(flows) = state.account(account) else {
        return Ok(());
    };
    let doc_type = doc_type(children);
    let ids: Vec<DocId> = flows
        .documents
        .get(children.folder)
        .into_iter()
        .flat_map(|docs| docs.values())
        .filter(|doc| doc.body.get(field).and_then(Value::as_str) == Some(parent.as_str()))
        .map(|doc| doc.id.clone())
        .collect();
    for id in ids {
        for _ in 0..WRITE_TRIES {
            let Some((mut doc, text)) = load_text(state, account, &doc_type, &id)? else {
                break;
            };
            doc.insert("pvt_deleted".into(), Value::Bool(true));
            doc.insert("pvt_modified".into(), now_seconds());
            if state
                .store
                .write_document_if(account, &doc_type, &id, &doc, |now| {
                    now == Some(text.as_str())
                })?
            {
                state.reload_document(account, &doc_type, &id)?;
                break;
            }
        }
    }
    Ok(())
}

/// The document a write saves, whole (public and private fields, defaults
/// and normalized numbers in), and whether it makes a claim across
/// accounts.
fn prepared(
    state: &AppState,
    account: &AccountId,
    kind: &Kind,
    target: &Target,
    mode: Write,
    request: Object,
    stored: Option<(Object, String)>,
) -> Result<(Object, bool), ApiError> {
    let id = target.id()?;
    // What a kind's `prepare` compares with (users: the username).
    let before = kind
        .prepare
        .and(stored.as_ref())
        .map(|(doc, _)| kazoo::public(doc));
    let (mut doc, mut private) = compose(kind, mode, id, request, stored)?;
    if let (Some((_, field)), Some(parent)) = (kind.parent, &target.parent) {
        // A nested document names its parent, whatever the body said.
        doc.insert(field.to_owned(), json!(parent.as_str()));
    }
    let mut claims = false;
    if mode != Write::Delete {
        if let Some(prepare) = kind.prepare {
            prepare(&mut doc, &mut private, before.as_ref())?;
        }
        if kind.family == Family::Callflow {
            // Crossbar writes the schema's defaults into the document, and
            // numbers as the account's dial plan normalizes them.
            for key in ["numbers", "patterns"] {
                doc.entry(key).or_insert_with(|| json!([]));
            }
            let flows = state
                .account(account)
                .ok_or_else(|| ApiError::BadIdentifier(account.to_string()))?;
            kazoo::normalize_numbers(&mut doc, &flows);
            claims = kazoo::claims_e164(&doc);
        } else {
            claims = kind.check.is_some();
        }
    }
    private.insert("pvt_modified".into(), now_seconds());
    doc.extend(private);
    Ok((doc, claims))
}

/// What a write saved: the whole document, its revision, and a note for
/// the answer (a TTS rendering's outcome).
struct Saved {
    doc: Object,
    rev: String,
    note: Option<String>,
}

/// The answer's document: `_read_only` says what else happened.
fn answered(kind: &Kind, id: &DocId, saved: &Saved, deleted: bool) -> Value {
    let mut shown = shown(kind, id, &saved.doc);
    let mut read_only = Map::new();
    if deleted {
        read_only.insert("deleted".into(), Value::Bool(true));
    }
    if let Some(note) = &saved.note {
        read_only.insert("tts".into(), json!(note));
    }
    if !read_only.is_empty()
        && let Value::Object(obj) = &mut shown
    {
        obj.insert("_read_only".into(), Value::Object(read_only));
    }
    shown
}

/// Runs a write off the async runtime.
async fn write_blocking(
    state: Arc<AppState>,
    account: AccountId,
    kind: &'static Kind,
    target: Target,
    mode: Write,
    data: Object,
    expected: Option<String>,
) -> Result<Saved, ApiError> {
    blocking(move || {
        let mut saved = write(&state, &account, kind, &target, mode, data, expected)?;
        if mode != Write::Delete && kind.folder == crate::store::MEDIA {
            // A TTS media document is spoken into its audio now, once the
            // account's lock is released (speaking takes seconds).
            let id = target.id()?;
            saved.note = super::media::after_media_save(&state, &account, id, &saved.doc)?;
        }
        Ok(saved)
    })
    .await
}

/// Whether a listed document passes the request's filters, which see what
/// a fetch shows (never a write-only field: a filter must not confirm a
/// guessed password).
fn passes(listing: &Listing, kind: &Kind, id: &DocId, full: &Object) -> bool {
    if listing.filters.is_empty() {
        return true;
    }
    let mut public = kazoo::public(full);
    kind.hide(&mut public);
    public.insert("id".into(), json!(id.as_str()));
    listing.passes_document(&Value::Object(public), &kazoo::private(full))
}

/// The listing of a kind: summaries in id order, with filters and paging.
fn list(
    flows: &AccountFlows,
    kind: &Kind,
    parent: Option<&DocId>,
    listing: &Listing,
) -> Result<Success, ApiError> {
    if kind.family == Family::Callflow {
        let matching = flows.callflows.values().filter(|callflow| {
            let Value::Object(full) = callflow.to_value() else {
                return false;
            };
            passes(listing, kind, &callflow.id, &full)
        });
        return listing.answer(
            matching,
            |callflow| callflow.id.to_string(),
            Order::Ascending,
            |callflow| kazoo::summary(callflow),
        );
    }
    let empty = BTreeMap::new();
    let documents = flows
        .documents
        .get(kind.folder)
        .unwrap_or(&empty)
        .values()
        .filter(|doc| match (kind.parent, parent) {
            (Some((_, field)), Some(parent)) => {
                doc.body.get(field).and_then(Value::as_str) == Some(parent.as_str())
            }
            _ => true,
        })
        .filter(|doc| passes(listing, kind, &doc.id, &doc.body));
    listing.answer(
        documents,
        |doc| doc.id.to_string(),
        Order::Ascending,
        |doc| {
            let mut public = kazoo::public(&doc.body);
            kind.hide(&mut public);
            (kind.summary)(&doc.id, &public)
        },
    )
}

/// `GET /v2/accounts/{ACCOUNT_ID}/<type>`.
pub(crate) async fn index(
    State(state): State<Arc<AppState>>,
    Extension(kind): Extension<&'static Kind>,
    Authed(account): Authed,
    Path(params): Path<BTreeMap<String, String>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Success, ApiError> {
    let flows = state
        .account(&account)
        .ok_or_else(|| ApiError::BadIdentifier(account.to_string()))?;
    let listing = Listing::parse(&query, state.config.page_size)?;
    let target = Target::of(kind, &params)?;
    // Filtering and summarizing a large account is work: off the runtime.
    blocking(move || {
        check_parent(&state, &account, kind, &target)?;
        list(&flows, kind, target.parent.as_ref(), &listing)
    })
    .await
}

/// `PUT /v2/accounts/{ACCOUNT_ID}/<type>`: create, 201.
pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    Extension(kind): Extension<&'static Kind>,
    Authed(account): Authed,
    Path(params): Path<BTreeMap<String, String>>,
    body: Body,
) -> Result<Success, ApiError> {
    let data = request_data_off(body).await?;
    let mut target = Target::of(kind, &params)?;
    let id = doc_id(&random_hex(16)?)?;
    target.id = Some(id.clone());
    let saved = write_blocking(state, account, kind, target, Write::Create, data, None).await?;
    Ok(Success::ok(answered(kind, &id, &saved, false))
        .with_status(StatusCode::CREATED)
        .with_revision(saved.rev))
}

/// `GET /v2/accounts/{ACCOUNT_ID}/<type>/{ID}`.
pub(crate) async fn fetch(
    State(state): State<Arc<AppState>>,
    Extension(kind): Extension<&'static Kind>,
    Authed(account): Authed,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<Success, ApiError> {
    let target = Target::of(kind, &params)?;
    let id = target.id()?.clone();
    let found = {
        let state = Arc::clone(&state);
        let account = account.clone();
        blocking(move || load(&state, &account, kind, &target)).await?
    };
    let (doc, rev) = found.ok_or_else(|| ApiError::BadIdentifier(id.to_string()))?;
    let mut data = shown(kind, &id, &doc);
    if kind.family == Family::Callflow
        && let (Value::Object(obj), Some(flows)) = (&mut data, state.account(&account))
    {
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
    kind: &'static Kind,
    params: &BTreeMap<String, String>,
    headers: &HeaderMap,
    mode: Write,
    data: Object,
) -> Result<Success, ApiError> {
    let target = Target::of(kind, params)?;
    let id = target.id()?.clone();
    let saved = write_blocking(state, account, kind, target, mode, data, if_match(headers)).await?;
    Ok(Success::ok(answered(kind, &id, &saved, mode == Write::Delete)).with_revision(saved.rev))
}

/// `POST /v2/accounts/{ACCOUNT_ID}/<type>/{ID}`: replace; `PATCH` on the
/// same path: merge.
pub(crate) async fn replace_or_patch(
    State(state): State<Arc<AppState>>,
    Extension(kind): Extension<&'static Kind>,
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
    update(state, account, kind, &params, &headers, mode, data).await
}

/// `DELETE /v2/accounts/{ACCOUNT_ID}/<type>/{ID}`: soft delete.
pub(crate) async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(kind): Extension<&'static Kind>,
    Authed(account): Authed,
    Path(params): Path<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Result<Success, ApiError> {
    update(
        state,
        account,
        kind,
        &params,
        &headers,
        Write::Delete,
        Object::new(),
    )
    .await
}

/// `POST /v2/accounts/{ACCOUNT_ID}/devices/{DEVICE_ID}/sync` and the like:
/// Kazoo asks the phone to re-read its provisioning; there is no
/// provisioner here, so the answer says so rather than pretend.
pub(crate) async fn sync(Authed(_account): Authed) -> ApiError {
    ApiError::Unsupported(
        "devices/{DEVICE_ID}/sync: there is no phone provisioner here, so nothing to sync; \
         a registered phone picks up changes on its next call or registration"
            .to_owned(),
    )
}
