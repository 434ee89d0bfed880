//! The REST API (`callflow serve`): Kazoo's Crossbar API for an account
//! and its documents on the flows directory, Kazoo's registrations and the
//! real calls of `--sip`, live call events, plus a few routes Kazoo lacks.
//!
//! | method | path | |
//! | --- | --- | --- |
//! | PUT | `/v2/api_auth` | API key → auth token (no token needed) |
//! | DELETE | `/v2/token_auth` | end the request's token |
//! | GET | `/v2/health` | liveness (no token needed) |
//! | GET | `/v2/openapi.json` | this API's OpenAPI description (no token needed) |
//! | GET | `/v2/reload` | the current generation, the pending reload errors |
//! | POST | `/v2/reload` | reload scripts and flows now (operator token only) |
//! | GET, POST, PATCH | `/v2/accounts/{account_id}` | the account document |
//! | GET, POST, PATCH, DELETE | `/v2/accounts/{account_id}/metaflows` | the account's metaflows |
//! | GET, PUT | `/v2/accounts/{account_id}/<type>` | list (summaries, filters, paging), create |
//! | GET, POST, PATCH, DELETE | `/v2/accounts/{account_id}/<type>/{id}` | fetch, replace, merge, soft delete |
//! | POST | `/v2/accounts/{account_id}/devices/{device_id}/sync` | 405: no provisioner here |
//! | GET | `/v2/accounts/{account_id}/media/{media_id}/raw` | a media document's audio (`audio/wav`) |
//! | POST | `/v2/accounts/{account_id}/media/{media_id}/raw` | upload its audio (`audio/wav`, `audio/mpeg`) |
//! | GET | `/v2/accounts/{account_id}/vmboxes/{vmbox_id}/messages` | a box's messages (`?folder=`, filters, paging) |
//! | GET | `/v2/accounts/{account_id}/vmboxes/{vmbox_id}/messages/{media_id}` | one message |
//! | POST | `/v2/accounts/{account_id}/vmboxes/{vmbox_id}/messages/{media_id}` | change its folder |
//! | DELETE | `/v2/accounts/{account_id}/vmboxes/{vmbox_id}/messages/{media_id}` | move it to `deleted` |
//! | GET | `/v2/accounts/{account_id}/vmboxes/{vmbox_id}/messages/{media_id}/raw` | its audio (`audio/wav`) |
//! | GET | `/v2/accounts/{account_id}/callflows/{callflow_id}/graph` | diagram |
//! | POST | `/v2/accounts/{account_id}/simulate` | simulate a call |
//! | GET, PUT | `/v2/accounts/{account_id}/api_keys` | the account's API keys (never the keys); create one (shown once) |
//! | DELETE | `/v2/accounts/{account_id}/api_keys/{key_id}` | revoke an API key and its tokens |
//! | GET | `/v2/accounts/{account_id}/registrations` | live SIP registrations (Kazoo's fields, paging) |
//! | GET | `/v2/accounts/{account_id}/calls` | recent real calls, newest first (paging) |
//! | GET | `/v2/accounts/{account_id}/calls/{call_id}` | one real call with its trace |
//! | GET | `/v2/accounts/{account_id}/channels` | the calls running now |
//! | GET | `/v2/websocket` | live call events (WebSocket, Kazoo's blackhole protocol) |
//!
//! `<type>` is each kind of `kinds.rs`: callflows, users, devices,
//! vmboxes, media, menus, `temporal_rules`, `temporal_rules_sets`, groups,
//! lists, `lists/{list_id}/entries`, resources, webhooks, functions.
//! Registrations, calls and channels need `--sip`; without it they answer
//! 404 `real_calls_off`. The WebSocket works without it (no call, no event).
//!
//! * `envelope.rs`: Kazoo's envelope and [`ApiError`], the one error type.
//! * `auth.rs`: logins, tokens, the `Authed` extractor.
//! * `keys.rs`: API keys in `account.json`, and their routes.
//! * `kinds.rs`: the document types: folder, `pvt_type`, listing summary,
//!   write-only fields, parent.
//! * `documents.rs`: the six calls, once, for every kind.
//! * `account.rs`: the account document and its metaflows.
//! * `kazoo.rs`: Crossbar's validation shape, PATCH merge, listing rules.
//! * `paging.rs`: Crossbar's paging and filters, for every listing.
//! * `extras.rs`: simulate, graph, health, OpenAPI, reload.
//! * `live.rs`: registrations and real calls.
//! * `websocket.rs`: the live call events WebSocket.
//! * `media.rs`: media audio (download, upload converted for calls, TTS
//!   rendered on save) and voicemail messages.
//! * `state.rs`: what requests share.
//! * `limit.rs`: the rate limits of logins.
//!
//! The edges: a request's headers must arrive within
//! [`Config::header_timeout`] (idle keep-alive connections too) and its
//! body within [`Config::body_timeout`] (408), else the connection is
//! closed; handlers never block the runtime's threads (files, reloads,
//! parsing and simulations run on `spawn_blocking` or the simulation
//! workers).

mod account;
mod auth;
mod documents;
mod envelope;
mod extras;
mod kazoo;
mod keys;
mod kinds;
mod limit;
mod live;
mod media;
mod paging;
mod state;
mod websocket;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, put};
use axum::{Extension, Router};
use serde_json::Value;

pub use auth::random_hex;
pub use envelope::ApiError;
pub use extras::OPENAPI;
pub use keys::{
    API_KEYS_FIELD, ApiKey, KeyError, LAST_USE_RESOLUTION, check_name, create_api_key, create_key,
    list_keys, revoke_key,
};
pub use state::{
    AppState, Config, DEFAULT_AUTH_PER_KEY, DEFAULT_AUTH_PER_SOURCE, DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_SIMULATIONS, DEFAULT_MAX_TOKENS_PER_ACCOUNT,
    DEFAULT_MAX_UPLOAD, Rate,
};

use envelope::{REQUEST, RequestContext};

use crate::model::Object;

/// Every route, as `(method, path)`; the OpenAPI description must list
/// exactly these (a test checks both against the router).
pub const ROUTES: &[(&str, &str)] = &[
    ("PUT", "/v2/api_auth"),
    ("GET", "/v2/health"),
    ("GET", "/v2/openapi.json"),
    ("GET", "/v2/reload"),
    ("POST", "/v2/reload"),
    ("GET", "/v2/accounts/{account_id}"),
    ("POST", "/v2/accounts/{account_id}"),
    ("PATCH", "/v2/accounts/{account_id}"),
    ("GET", "/v2/accounts/{account_id}/metaflows"),
    ("POST", "/v2/accounts/{account_id}/metaflows"),
    ("PATCH", "/v2/accounts/{account_id}/metaflows"),
    ("DELETE", "/v2/accounts/{account_id}/metaflows"),
    ("GET", "/v2/accounts/{account_id}/callflows"),
    ("PUT", "/v2/accounts/{account_id}/callflows"),
    ("GET", "/v2/accounts/{account_id}/callflows/{callflow_id}"),
    ("POST", "/v2/accounts/{account_id}/callflows/{callflow_id}"),
    ("PATCH", "/v2/accounts/{account_id}/callflows/{callflow_id}"),
    (
        "DELETE",
        "/v2/accounts/{account_id}/callflows/{callflow_id}",
    ),
    (
        "GET",
        "/v2/accounts/{account_id}/callflows/{callflow_id}/graph",
    ),
    ("GET", "/v2/accounts/{account_id}/users"),
    ("PUT", "/v2/accounts/{account_id}/users"),
    ("GET", "/v2/accounts/{account_id}/users/{user_id}"),
    ("POST", "/v2/accounts/{account_id}/users/{user_id}"),
    ("PATCH", "/v2/accounts/{account_id}/users/{user_id}"),
    ("DELETE", "/v2/accounts/{account_id}/users/{user_id}"),
    ("GET", "/v2/accounts/{account_id}/devices"),
    ("PUT", "/v2/accounts/{account_id}/devices"),
    ("GET", "/v2/accounts/{account_id}/devices/{device_id}"),
    ("POST", "/v2/accounts/{account_id}/devices/{device_id}"),
    ("PATCH", "/v2/accounts/{account_id}/devices/{device_id}"),
    ("DELETE", "/v2/accounts/{account_id}/devices/{device_id}"),
    ("POST", "/v2/accounts/{account_id}/devices/{device_id}/sync"),
    ("GET", "/v2/accounts/{account_id}/vmboxes"),
    ("PUT", "/v2/accounts/{account_id}/vmboxes"),
    ("GET", "/v2/accounts/{account_id}/vmboxes/{vmbox_id}"),
    ("POST", "/v2/accounts/{account_id}/vmboxes/{vmbox_id}"),
    ("PATCH", "/v2/accounts/{account_id}/vmboxes/{vmbox_id}"),
    ("DELETE", "/v2/accounts/{account_id}/vmboxes/{vmbox_id}"),
    ("GET", "/v2/accounts/{account_id}/media"),
    ("PUT", "/v2/accounts/{account_id}/media"),
    ("GET", "/v2/accounts/{account_id}/media/{media_id}"),
    ("POST", "/v2/accounts/{account_id}/media/{media_id}"),
    ("PATCH", "/v2/accounts/{account_id}/media/{media_id}"),
    ("DELETE", "/v2/accounts/{account_id}/media/{media_id}"),
    ("GET", "/v2/accounts/{account_id}/menus"),
    ("PUT", "/v2/accounts/{account_id}/menus"),
    ("GET", "/v2/accounts/{account_id}/menus/{menu_id}"),
    ("POST", "/v2/accounts/{account_id}/menus/{menu_id}"),
    ("PATCH", "/v2/accounts/{account_id}/menus/{menu_id}"),
    ("DELETE", "/v2/accounts/{account_id}/menus/{menu_id}"),
    ("GET", "/v2/accounts/{account_id}/temporal_rules"),
    ("PUT", "/v2/accounts/{account_id}/temporal_rules"),
    ("GET", "/v2/accounts/{account_id}/temporal_rules/{rule_id}"),
    ("POST", "/v2/accounts/{account_id}/temporal_rules/{rule_id}"),
    (
        "PATCH",
        "/v2/accounts/{account_id}/temporal_rules/{rule_id}",
    ),
    (
        "DELETE",
        "/v2/accounts/{account_id}/temporal_rules/{rule_id}",
    ),
    ("GET", "/v2/accounts/{account_id}/temporal_rules_sets"),
    ("PUT", "/v2/accounts/{account_id}/temporal_rules_sets"),
    (
        "GET",
        "/v2/accounts/{account_id}/temporal_rules_sets/{rule_set_id}",
    ),
    (
        "POST",
        "/v2/accounts/{account_id}/temporal_rules_sets/{rule_set_id}",
    ),
    (
        "PATCH",
        "/v2/accounts/{account_id}/temporal_rules_sets/{rule_set_id}",
    ),
    (
        "DELETE",
        "/v2/accounts/{account_id}/temporal_rules_sets/{rule_set_id}",
    ),
    ("GET", "/v2/accounts/{account_id}/groups"),
    ("PUT", "/v2/accounts/{account_id}/groups"),
    ("GET", "/v2/accounts/{account_id}/groups/{group_id}"),
    ("POST", "/v2/accounts/{account_id}/groups/{group_id}"),
    ("PATCH", "/v2/accounts/{account_id}/groups/{group_id}"),
    ("DELETE", "/v2/accounts/{account_id}/groups/{group_id}"),
    ("GET", "/v2/accounts/{account_id}/lists"),
    ("PUT", "/v2/accounts/{account_id}/lists"),
    ("GET", "/v2/accounts/{account_id}/lists/{list_id}"),
    ("POST", "/v2/accounts/{account_id}/lists/{list_id}"),
    ("PATCH", "/v2/accounts/{account_id}/lists/{list_id}"),
    ("DELETE", "/v2/accounts/{account_id}/lists/{list_id}"),
    ("GET", "/v2/accounts/{account_id}/lists/{list_id}/entries"),
    ("PUT", "/v2/accounts/{account_id}/lists/{list_id}/entries"),
    (
        "GET",
        "/v2/accounts/{account_id}/lists/{list_id}/entries/{entry_id}",
    ),
    (
        "POST",
        "/v2/accounts/{account_id}/lists/{list_id}/entries/{entry_id}",
    ),
    (
        "PATCH",
        "/v2/accounts/{account_id}/lists/{list_id}/entries/{entry_id}",
    ),
    (
        "DELETE",
        "/v2/accounts/{account_id}/lists/{list_id}/entries/{entry_id}",
    ),
    ("GET", "/v2/accounts/{account_id}/resources"),
    ("PUT", "/v2/accounts/{account_id}/resources"),
    ("GET", "/v2/accounts/{account_id}/resources/{resource_id}"),
    ("POST", "/v2/accounts/{account_id}/resources/{resource_id}"),
    ("PATCH", "/v2/accounts/{account_id}/resources/{resource_id}"),
    (
        "DELETE",
        "/v2/accounts/{account_id}/resources/{resource_id}",
    ),
    ("GET", "/v2/accounts/{account_id}/webhooks"),
    ("PUT", "/v2/accounts/{account_id}/webhooks"),
    ("GET", "/v2/accounts/{account_id}/webhooks/{webhook_id}"),
    ("POST", "/v2/accounts/{account_id}/webhooks/{webhook_id}"),
    ("PATCH", "/v2/accounts/{account_id}/webhooks/{webhook_id}"),
    ("DELETE", "/v2/accounts/{account_id}/webhooks/{webhook_id}"),
    ("GET", "/v2/accounts/{account_id}/functions"),
    ("PUT", "/v2/accounts/{account_id}/functions"),
    ("GET", "/v2/accounts/{account_id}/functions/{function_id}"),
    ("POST", "/v2/accounts/{account_id}/functions/{function_id}"),
    ("PATCH", "/v2/accounts/{account_id}/functions/{function_id}"),
    (
        "DELETE",
        "/v2/accounts/{account_id}/functions/{function_id}",
    ),
    ("POST", "/v2/accounts/{account_id}/simulate"),
    ("GET", "/v2/accounts/{account_id}/registrations"),
    ("GET", "/v2/accounts/{account_id}/calls"),
    ("GET", "/v2/accounts/{account_id}/calls/{call_id}"),
    ("GET", "/v2/accounts/{account_id}/channels"),
    ("GET", "/v2/websocket"),
    ("DELETE", "/v2/token_auth"),
    ("GET", "/v2/accounts/{account_id}/api_keys"),
    ("PUT", "/v2/accounts/{account_id}/api_keys"),
    ("DELETE", "/v2/accounts/{account_id}/api_keys/{key_id}"),
    ("GET", "/v2/accounts/{account_id}/media/{media_id}/raw"),
    ("POST", "/v2/accounts/{account_id}/media/{media_id}/raw"),
    (
        "GET",
        "/v2/accounts/{account_id}/vmboxes/{vmbox_id}/messages",
    ),
    (
        "GET",
        "/v2/accounts/{account_id}/vmboxes/{vmbox_id}/messages/{media_id}",
    ),
    (
        "POST",
        "/v2/accounts/{account_id}/vmboxes/{vmbox_id}/messages/{media_id}",
    ),
    (
        "DELETE",
        "/v2/accounts/{account_id}/vmboxes/{vmbox_id}/messages/{media_id}",
    ),
    (
        "GET",
        "/v2/accounts/{account_id}/vmboxes/{vmbox_id}/messages/{media_id}/raw",
    ),
];

/// A request body, or why it could not be read (too large, ...).
pub(crate) type Body = Result<Bytes, BytesRejection>;

/// Bodies up to this are parsed on the runtime's thread (well under a
/// millisecond); larger ones, up to the body limit, on a blocking thread.
const INLINE_PARSE_BYTES: usize = 64 << 10;

/// [`request_data`], off the runtime's threads when the body is large.
pub(crate) async fn request_data_off(body: Body) -> Result<Object, ApiError> {
    match &body {
        Ok(bytes) if bytes.len() > INLINE_PARSE_BYTES => {
            tokio::task::spawn_blocking(move || request_data(body))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
        }
        _ => request_data(body),
    }
}

/// Runs blocking work (files, locks, decoding, processes) off the
/// runtime's threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// The `data` object of a request envelope `{"data": {...}}`.
pub(crate) fn request_data(body: Body) -> Result<Object, ApiError> {
    let bytes = body.map_err(|rejection| {
        if let Some(late) = timed_out(&rejection) {
            ApiError::BodyTimeout(late.0)
        } else if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(envelope::max_body())
        } else {
            ApiError::InvalidRequest(rejection.body_text())
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::InvalidRequest(
            "the request needs a JSON body {\"data\": {...}}".to_owned(),
        ));
    }
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::InvalidRequest(format!(
            "malformed JSON at line {}, column {}: {e}",
            e.line(),
            e.column()
        ))
    })?;
    match value {
        Value::Object(mut envelope) => match envelope.remove("data") {
            Some(Value::Object(data)) => Ok(data),
            Some(other) => Err(ApiError::InvalidRequest(format!(
                "`data` must be an object, not {}",
                crate::model::type_name(&other)
            ))),
            None => Err(ApiError::InvalidRequest(
                "the body must be an envelope {\"data\": {...}}".to_owned(),
            )),
        },
        other => Err(ApiError::InvalidRequest(format!(
            "the body must be an envelope {{\"data\": {{...}}}}, not {}",
            crate::model::type_name(&other)
        ))),
    }
}

/// A body that did not arrive within the body timeout.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
struct BodyTimedOut(Duration);

/// Whether a body could not be read because it came too slowly.
fn timed_out(rejection: &BytesRejection) -> Option<BodyTimedOut> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(error) = cause {
        if let Some(late) = error.downcast_ref::<BodyTimedOut>() {
            return Some(*late);
        }
        cause = error.source();
    }
    None
}

/// A request body that fails once its deadline passes.
struct Deadline {
    inner: axum::body::Body,
    sleep: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending if this.sleep.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut(this.timeout)))))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Gives the request's body its deadline (the body timeout from now, when
/// the headers are in): a handler reading it after that gets 408.
async fn body_deadline(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let timeout = state.config.body_timeout;
    let request = request.map(|inner| {
        axum::body::Body::new(Deadline {
            inner,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        })
    });
    next.run(request).await
}

/// The application: every route, the body limit, and the middleware that
/// gives each request its id and logs it.
pub fn router(state: Arc<AppState>) -> Router {
    let max_body = state.config.max_body;
    // Audio uploads have their own, larger, limit (the route's layer runs
    // after the global one, so its limit is the one in force there).
    let max_upload = state.config.max_upload;
    let messages = "/v2/accounts/{account_id}/vmboxes/{vmbox_id}/messages";
    let mut router = Router::new()
        .route("/v2/api_auth", put(auth::api_auth))
        .route("/v2/health", get(extras::health))
        .route("/v2/openapi.json", get(extras::openapi))
        .route(
            "/v2/reload",
            get(extras::reload_status).post(extras::reload_now),
        )
        .route(
            "/v2/accounts/{account_id}",
            get(account::fetch)
                .post(account::replace_or_patch)
                .patch(account::replace_or_patch),
        )
        .route(
            "/v2/accounts/{account_id}/metaflows",
            get(account::metaflows)
                .post(account::change_metaflows)
                .patch(account::change_metaflows)
                .delete(account::change_metaflows),
        );
    // The six calls of every document type: one implementation, the kind
    // handed to it as an extension.
    for kind in kinds::KINDS {
        router = router
            .route(
                &kind.collection(),
                get(documents::index)
                    .put(documents::create)
                    .layer(Extension(kind)),
            )
            .route(
                &kind.item(),
                get(documents::fetch)
                    .post(documents::replace_or_patch)
                    .patch(documents::replace_or_patch)
                    .delete(documents::delete)
                    .layer(Extension(kind)),
            );
    }
    router
        .route(
            "/v2/accounts/{account_id}/callflows/{callflow_id}/graph",
            get(extras::graph),
        )
        .route(
            "/v2/accounts/{account_id}/devices/{device_id}/sync",
            axum::routing::post(documents::sync),
        )
        .route(
            "/v2/accounts/{account_id}/simulate",
            axum::routing::post(extras::simulate),
        )
        .route(
            "/v2/accounts/{account_id}/registrations",
            get(live::registrations),
        )
        .route("/v2/accounts/{account_id}/calls", get(live::calls))
        .route("/v2/accounts/{account_id}/channels", get(live::channels))
        .route("/v2/accounts/{account_id}/calls/{call_id}", get(live::call))
        .route("/v2/websocket", get(websocket::websocket))
        .route("/v2/token_auth", axum::routing::delete(auth::end_token))
        .route(
            "/v2/accounts/{account_id}/api_keys",
            get(keys::index).put(keys::create),
        )
        .route(
            "/v2/accounts/{account_id}/api_keys/{key_id}",
            axum::routing::delete(keys::delete),
        )
        .route(
            "/v2/accounts/{account_id}/media/{media_id}/raw",
            get(media::raw)
                .post(media::upload)
                .layer(DefaultBodyLimit::max(max_upload)),
        )
        .route(messages, get(media::messages))
        .route(
            &format!("{messages}/{{media_id}}"),
            get(media::message)
                .post(media::change_message)
                .delete(media::delete_message),
        )
        .route(
            &format!("{messages}/{{media_id}}/raw"),
            get(media::message_raw),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            body_deadline,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            context_and_log,
        ))
        .with_state(state)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound(request.uri().path().to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// The request id: the client's `X-Request-ID` when it is a sane one, else
/// a new random one.
fn request_id(request: &Request) -> String {
    request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| crate::ids::is_valid_id(v))
        .map(str::to_owned)
        .or_else(|| auth::random_hex(16).ok())
        .unwrap_or_default()
}

/// Sets the request's context (id, token) for the envelopes, and logs one
/// line per request with its status and latency.
async fn context_and_log(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    // Latency in the log: the server's edge may read the clock.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let context = RequestContext {
        request_id: request_id(&request),
        auth_token: auth::token_from(request.headers(), request.uri()),
        max_body: state.config.max_body,
    };
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let id = context.request_id.clone();
    let mut response = REQUEST.scope(context, next.run(request)).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    tracing::info!(
        request_id = %id,
        status = response.status().as_u16(),
        latency_ms = %format!("{:.1}", started.elapsed().as_secs_f64() * 1000.0),
        "{method} {path}"
    );
    response
}

/// Serves the API on `listener` until `shutdown` resolves, then finishes
/// the requests in flight. HTTP/1.1, each connection on its own task;
/// headers must arrive within [`Config::header_timeout`] (hyper's header
/// read timeout, idle keep-alive connections included), and every request
/// carries its peer's address (`ConnectInfo`) for the rate limits.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let header_timeout = state.config.header_timeout;
    let app = router(state);
    // Connections hear the shutdown through `stop`; each holds a clone of
    // `open`, so `all_closed` resolves when the last one is done.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let (all_closed, open) = tokio::sync::watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, a connection reset before accept:
                    // wait a little rather than spin.
                    tracing::warn!("accept: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let mut stopping = stopping.clone();
        let open = open.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let mut request = request.map(axum::body::Body::new);
                    request
                        .extensions_mut()
                        .insert(ConnectInfo::<SocketAddr>(remote));
                    let mut app = app.clone();
                    // A router is always ready (axum's `poll_ready` is `Ready`).
                    tower_service::Service::call(&mut app, request)
                },
            );
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout);
            // Upgrades: the WebSocket of `GET /v2/websocket`.
            let connection = builder
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .with_upgrades();
            let mut connection = std::pin::pin!(connection);
            let mut draining = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(error) = result {
                            tracing::debug!("connection from {remote}: {error}");
                        }
                        break;
                    }
                    changed = stopping.changed(), if !draining => {
                        draining = true;
                        if changed.is_ok() {
                            connection.as_mut().graceful_shutdown();
                        }
                    }
                }
            }
            drop(open);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    drop(open);
    all_closed.closed().await;
    Ok(())
}
