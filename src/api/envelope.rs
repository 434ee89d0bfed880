//! Kazoo's response envelope and the API's one error type.
//!
//! Success: `{"auth_token", "data", "request_id", "revision", "status":
//! "success", "timestamp", "version", ...paging}`. Error: `{"auth_token",
//! "data": {...}, "error": "<HTTP code>", "message", "request_id", "status":
//! "error", "timestamp", "version"}`. The request id and the token echoed
//! back come from the [`RequestContext`] the logging middleware sets for the
//! request's task.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// What every envelope of one request shares.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestContext {
    pub request_id: String,
    /// The token the request carried (echoed back as `auth_token`).
    pub auth_token: Option<String>,
    /// The server's body limit (for the 413 message).
    pub max_body: usize,
}

tokio::task_local! {
    pub(crate) static REQUEST: RequestContext;
}

fn context() -> RequestContext {
    REQUEST.try_with(Clone::clone).unwrap_or_default()
}

/// The body limit of the request being served.
pub(crate) fn max_body() -> usize {
    context().max_body
}

/// Now, as Kazoo prints envelope timestamps (UTC, whole seconds).
fn timestamp() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

fn base(status: &str) -> Map<String, Value> {
    let ctx = context();
    let mut out = Map::new();
    out.insert(
        "auth_token".into(),
        Value::String(ctx.auth_token.unwrap_or_default()),
    );
    out.insert("request_id".into(), Value::String(ctx.request_id));
    out.insert("status".into(), status.into());
    out.insert("timestamp".into(), Value::String(timestamp()));
    out.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    out
}

fn json_response(status: StatusCode, body: &Map<String, Value>, etag: Option<&str>) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(body).unwrap_or_default(),
    )
        .into_response();
    if let Some(etag) = etag.and_then(|rev| HeaderValue::from_str(&format!("\"{rev}\"")).ok()) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// A success envelope around `data`.
#[derive(Debug)]
pub(crate) struct Success {
    pub status: StatusCode,
    pub data: Value,
    /// The document's revision (also sent as `ETag`).
    pub revision: Option<String>,
    /// Extra top-level keys (paging).
    pub extra: Map<String, Value>,
}

impl Success {
    pub fn ok(data: Value) -> Self {
        Self {
            status: StatusCode::OK,
            data,
            revision: None,
            extra: Map::new(),
        }
    }

    #[must_use]
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    #[must_use]
    pub fn with_revision(mut self, revision: String) -> Self {
        self.revision = Some(revision);
        self
    }
}

impl IntoResponse for Success {
    fn into_response(self) -> Response {
        let mut body = base("success");
        body.insert("data".into(), self.data);
        if let Some(revision) = &self.revision {
            body.insert("revision".into(), Value::String(revision.clone()));
        }
        body.extend(self.extra);
        json_response(self.status, &body, self.revision.as_deref())
    }
}

/// Everything a request can fail with, each mapped to Kazoo's status, error
/// name and `data`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No token, an unknown or an expired one (401).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// A valid token for another account (403).
    #[error("this token does not give access to account {0}")]
    Forbidden(String),
    /// A server-wide action asked with an account's token (403).
    #[error(
        "{0} is the operator's: authenticate with the operator key (serve --operator-key-file)"
    )]
    OperatorOnly(&'static str),
    /// Too many attempts (429); `Retry-After` says in how many seconds the
    /// next one passes.
    #[error("too many requests: {what}; retry in {retry_after_s} s")]
    TooManyRequests {
        what: &'static str,
        retry_after_s: u64,
    },
    /// The body did not arrive in time (408); the connection is closed.
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(std::time::Duration),
    /// An account or document that does not exist, or an id that cannot be
    /// one (404).
    #[error("bad identifier {0}")]
    BadIdentifier(String),
    /// No such route (404).
    #[error("no such resource: {0}")]
    NotFound(String),
    /// A route of real calls on a server that does not answer SIP (404).
    #[error("real calls are off: start the server with --sip ADDR")]
    RealCallsOff,
    /// The document does not validate (400); `data` in Kazoo's shape
    /// `{"<path>": {"<code>": {"message": ...}}}`.
    #[error("validation error")]
    Validation(Map<String, Value>),
    /// The body is not the JSON envelope expected (400).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A body of a type the route does not take (415); the message names
    /// the types it does.
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// A stale revision (409).
    #[error("conflicting documents: {0}")]
    Conflict(String),
    /// A method the route does not have (405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A Kazoo route that has nothing to do here (405), with why.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// A body over the limit (413).
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    /// The server cannot take this now (503): every simulation worker is
    /// busy, or the one it went to is full.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Something broke on our side (500); logged once, not shown in detail.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, Value) {
        match self {
            ApiError::InvalidCredentials => (
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                json!({"message": "invalid credentials"}),
            ),
            ApiError::Forbidden(account) => (
                StatusCode::FORBIDDEN,
                "forbidden",
                json!({"message": self.to_string(), "cause": account}),
            ),
            ApiError::OperatorOnly(what) => (
                StatusCode::FORBIDDEN,
                "forbidden",
                json!({"message": self.to_string(), "cause": what}),
            ),
            ApiError::TooManyRequests {
                what,
                retry_after_s,
            } => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                json!({"message": self.to_string(), "cause": what, "retry_after_s": retry_after_s}),
            ),
            ApiError::BodyTimeout(_) => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                json!({"message": self.to_string()}),
            ),
            ApiError::BadIdentifier(id) => (
                StatusCode::NOT_FOUND,
                "bad_identifier",
                json!({"message": "bad identifier", "cause": id}),
            ),
            ApiError::NotFound(path) => (
                StatusCode::NOT_FOUND,
                "not_found",
                json!({"message": "not found", "cause": path}),
            ),
            ApiError::RealCallsOff => (
                StatusCode::NOT_FOUND,
                "real_calls_off",
                json!({"message": self.to_string()}),
            ),
            ApiError::Validation(errors) => (
                StatusCode::BAD_REQUEST,
                "validation error",
                Value::Object(errors.clone()),
            ),
            ApiError::InvalidRequest(why) => (
                StatusCode::BAD_REQUEST,
                "invalid request",
                json!({"message": why}),
            ),
            ApiError::UnsupportedMediaType(why) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                json!({"message": why}),
            ),
            ApiError::Unavailable(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                json!({"message": "try again later", "cause": why}),
            ),
            ApiError::Conflict(why) => (
                StatusCode::CONFLICT,
                "datastore_conflict",
                json!({"message": "conflicting documents", "cause": why}),
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                json!({"message": "method not allowed"}),
            ),
            ApiError::Unsupported(why) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "not_supported",
                json!({"message": why}),
            ),
            ApiError::TooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_entity_too_large",
                json!({"message": self.to_string(), "cause": limit}),
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                json!({"message": "internal error"}),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(request_id = %context().request_id, "{detail}");
        }
        let (status, message, data) = self.parts();
        let mut body = base("error");
        body.insert("data".into(), data);
        body.insert("error".into(), Value::String(status.as_u16().to_string()));
        body.insert("message".into(), message.into());
        let mut response = json_response(status, &body, None);
        match &self {
            ApiError::TooManyRequests { retry_after_s, .. } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
            }
            ApiError::BodyTimeout(_) => {
                // A client this slow is not kept.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(err: crate::store::StoreError) -> Self {
        ApiError::Internal(err.to_string())
    }
}
