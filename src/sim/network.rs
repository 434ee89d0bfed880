//! Real HTTP requests, made only when a simulation is run with
//! `--allow-network` and no stub answers the URL. Blocking: the worker
//! thread waits for the response, which is fine for a single simulated call
//! and is why scenarios normally stub every request.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::engine::control::{HttpOutcome, HttpRequest};

/// Largest response body read (bytes).
const MAX_BODY: u64 = 1 << 20;

/// Makes the request; `Err` says why it failed.
pub fn request(request: &HttpRequest) -> Result<HttpOutcome, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_millis(request.timeout_ms)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut builder = ureq::http::Request::builder()
        .method(request.method.as_str())
        .uri(request.url.as_str());
    for (key, value) in &request.headers {
        builder = builder.header(key.as_str(), value.as_str());
    }
    let body = request.body.clone().unwrap_or_default();
    let built = builder.body(body).map_err(|e| e.to_string())?;
    let mut response = agent.run(built).map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let headers: BTreeMap<String, String> = response
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok(HttpOutcome {
        status,
        body,
        headers,
        error: None,
        duration_ms: 0,
    })
}
