//! Beyond Kazoo: simulate a call over HTTP, draw a callflow, health, the
//! reload status and the OpenAPI description.
//!
//! Nothing here blocks the runtime's threads: parsing a scenario and
//! drawing run on `spawn_blocking`, reloads too, and the status and health
//! read the current generation and the reloader's counters, which no
//! reload holds.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::auth::{Authed, Caller};
use super::envelope::{ApiError, Success};
use super::state::{AppState, Holder};
use super::{Body, request_data_off};
use crate::engine::EndReason;
use crate::graph::{self, Format};
use crate::reload::Viewer;
use crate::sim::pool::PoolError;
use crate::sim::{self, Options, Scenario};

/// The OpenAPI description of every route (checked against the router by a
/// test).
pub const OPENAPI: &str = include_str!("openapi.json");

/// `GET /v2/health`: no authentication.
pub(crate) async fn health(State(state): State<Arc<AppState>>) -> Success {
    let catalog = state.catalog();
    let accounts = catalog.accounts().count();
    let callflows: usize = catalog.accounts().map(|a| a.callflows.len()).sum();
    Success::ok(json!({"status": "ok", "accounts": accounts, "callflows": callflows}))
}

/// `GET /v2/openapi.json`. A body sent along is read first: closing a
/// connection with unread bytes makes the kernel reset it, and a client
/// could lose the (large) answer.
pub(crate) async fn openapi(_body: super::Body) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// `POST /v2/accounts/{ACCOUNT_ID}/simulate`: `{"data": <scenario>}` →
/// the trace. The account comes from the path; `flows` and `scripts` are the
/// server's own; HTTP requests reach only the scenario's stubs. With
/// `?persist=true` the documents the call writes (a voicemail message, a
/// park slot, ...) are saved in the flows directory and published, as a
/// real call's are (`callflow simulate --persist`); without it they last
/// as long as the call.
pub(crate) async fn simulate(
    State(state): State<Arc<AppState>>,
    Authed(account): Authed,
    Query(query): Query<BTreeMap<String, String>>,
    body: Body,
) -> Result<Success, ApiError> {
    let persist = match query.get("persist").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::InvalidRequest(format!(
                "persist must be true or false, not {other:?}"
            )));
        }
    };
    // Held to the end of the simulation: past the bound, 503 at once.
    let _place = state.simulations.admit().map_err(|max| {
        ApiError::Unavailable(format!(
            "{max} simulations are already running (serve --max-simulations)"
        ))
    })?;
    let mut data = request_data_off(body).await?;
    for key in ["flows", "scripts"] {
        if data.contains_key(key) {
            return Err(ApiError::InvalidRequest(format!(
                "the scenario's `{key}` is the server's own: leave it out"
            )));
        }
    }
    match data.get("account") {
        None => {
            data.insert("account".into(), json!(account.as_str()));
        }
        Some(Value::String(named)) if named == account.as_str() => {}
        Some(other) => {
            return Err(ApiError::InvalidRequest(format!(
                "the scenario names account {other} but the path says {account}"
            )));
        }
    }
    if persist && !data.contains_key("seed") {
        // A call's id (`sim-<seed>`) names what it saves (its recordings):
        // kept calls get one of their own.
        let seed = u64::from_str_radix(&super::random_hex(8)?, 16)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        data.insert("seed".into(), json!(seed));
    }
    // The call keeps this generation to its end, whatever reloads happen.
    let generation = state.generation();
    let catalog = Arc::clone(&generation.catalog);
    // Parsing up to a whole body is work: off the runtime's threads.
    let (scenario, flows) = tokio::task::spawn_blocking(move || {
        let scenario = Scenario::parse(&Value::Object(data).to_string())
            .map_err(|e| ApiError::InvalidRequest(format!("bad scenario: {e}")))?;
        let flows = Arc::clone(
            sim::account_for(&scenario, &catalog)
                .map_err(|e| ApiError::InvalidRequest(format!("bad scenario: {e}")))?,
        );
        Ok::<_, ApiError>((scenario, flows))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    let options = Options {
        limits: state.config.limits,
        // Only this account's problems (and the scripts'), never another's.
        notices: state.reloader.notices(account.as_str()),
        persist: persist.then(|| {
            Arc::new(crate::reload::Published {
                reloader: Arc::clone(&state.reloader),
            }) as sim::Persist
        }),
        ..Options::default()
    };
    let modules = Arc::clone(&generation.modules);
    // On a warm worker VM (the pool's), not a VM per request.
    let outcome = state
        .simulators()
        .map_err(ApiError::Internal)?
        .simulate(scenario, flows, modules, options)
        .await
        .map_err(|e| match e {
            PoolError::Busy { .. } => ApiError::Unavailable(e.to_string()),
            PoolError::Stopped | PoolError::Run(_) => ApiError::Internal(e.to_string()),
        })?;
    if outcome.end == EndReason::Overload {
        return Err(ApiError::Unavailable(
            "the simulation worker is full (its calls or its memory)".to_owned(),
        ));
    }
    let mut trace = outcome.trace.to_json();
    if let Value::Object(obj) = &mut trace {
        obj.insert("end".into(), json!(outcome.end.as_str()));
    }
    Ok(Success::ok(trace))
}

/// `GET .../callflows/{CALLFLOW_ID}/graph?format=dot|mermaid` (default
/// `dot`): the diagram as text.
pub(crate) async fn graph(
    State(state): State<Arc<AppState>>,
    Authed(account): Authed,
    Path(params): Path<BTreeMap<String, String>>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let id = params.get("callflow_id").cloned().unwrap_or_default();
    let format_name = query.get("format").map_or("dot", String::as_str);
    let format = Format::parse(format_name).ok_or_else(|| {
        ApiError::InvalidRequest(format!(
            "format must be dot or mermaid, not {format_name:?}"
        ))
    })?;
    let flows = state
        .account(&account)
        .ok_or_else(|| ApiError::BadIdentifier(account.to_string()))?;
    let callflow = flows
        .callflows
        .get(id.as_str())
        .ok_or_else(|| ApiError::BadIdentifier(id.clone()))?;
    let content_type = match format {
        Format::Dot => "text/vnd.graphviz; charset=utf-8",
        Format::Mermaid => "text/plain; charset=utf-8",
    };
    let callflow = Arc::clone(callflow);
    let drawn = tokio::task::spawn_blocking(move || graph::render(&callflow, format))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, content_type)], drawn).into_response())
}

/// `GET /v2/reload`: the current generation, when it was published, the
/// reload under way (`running`) and the errors of a rejected reload: an
/// account's token sees only its own files' (and the scripts'), with paths
/// relative to the flows directory; the operator's sees all.
pub(crate) async fn reload_status(
    State(state): State<Arc<AppState>>,
    Caller(holder): Caller,
) -> Result<Success, ApiError> {
    let viewer = match &holder {
        Holder::Operator => Viewer::Operator,
        Holder::Account(account) => Viewer::Account(account.as_str()),
    };
    let status = serde_json::to_value(state.reloader.status_for(viewer))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Success::ok(status))
}

/// `POST /v2/reload`: reload every account now (the operator's token
/// only: 403 for an account's); the status after it, with `outcome`
/// (`published` or `rejected`).
pub(crate) async fn reload_now(
    State(state): State<Arc<AppState>>,
    Caller(holder): Caller,
) -> Result<Success, ApiError> {
    if holder != Holder::Operator {
        return Err(ApiError::OperatorOnly("reloading every account"));
    }
    let reloader = Arc::clone(&state.reloader);
    let outcome = tokio::task::spawn_blocking(move || reloader.reload("api"))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let mut status = serde_json::to_value(state.reloader.status_for(Viewer::Operator))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Value::Object(obj) = &mut status {
        let name = match outcome {
            crate::reload::Outcome::Published { .. } => "published",
            crate::reload::Outcome::Rejected { .. } => "rejected",
        };
        obj.insert("outcome".into(), json!(name));
    }
    Ok(Success::ok(status))
}
