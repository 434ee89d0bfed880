//! Real HTTP requests, made only when a simulation is run with
//! `--allow-network` and no stub answers the URL. Blocking: the worker
//! thread waits for the response, which is fine for a single simulated call
//! and is why scenarios normally stub every request.

use std::collections::BTreeMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::time::Duration;

use crate::engine::control::{HttpOutcome, HttpRequest};

/// Largest response body read (bytes).
const MAX_BODY: u64 = 1 << 20;

/// Why a URL may not be requested: its host is loopback, link-local,
/// private (or unspecified), by name (`localhost`) or by literal address.
/// `None` when it may.
pub fn refused(url: &str) -> Option<String> {
    let host = host_of(url)?;
    let lower = host.to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") {
        return Some(format!(
            "refused: {host} is this machine (allow private addresses to reach it)"
        ));
    }
    let ip: IpAddr = lower
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    is_private(ip).then(|| {
        format!("refused: {ip} is a loopback, link-local or private address (allow private addresses to reach it)")
    })
}

/// The host part of an http(s) URL.
fn host_of(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(end) = host_port.find(']') {
        return Some(&host_port[..=end]);
    }
    Some(host_port.split(':').next().unwrap_or(host_port))
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64 // 100.64/10
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00 // unique local
                || (v6.segments()[0] & 0xffc0) == 0xfe80 // link-local
                || v6.to_ipv4_mapped().is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

/// Unless `allow_private`, refuses a URL whose host resolves to a private
/// address (checked before connecting). Media URLs of real calls use it too.
pub fn guard(url: &str, allow_private: bool) -> Result<(), String> {
    if let Some(host) = host_of(url).filter(|_| !allow_private) {
        let port = if url.starts_with("https://") { 443 } else { 80 };
        let name = host.trim_start_matches('[').trim_end_matches(']');
        let addrs = (name, port).to_socket_addrs().map_err(|e| e.to_string())?;
        for addr in addrs {
            if is_private(addr.ip()) {
                return Err(format!(
                    "refused: {host} resolves to {}, a private address (allow private addresses to reach it)",
                    addr.ip()
                ));
            }
        }
    }
    Ok(())
}

/// Makes the request; `Err` says why it failed. Unless `allow_private`, a
/// host that resolves to a private address is refused before connecting.
pub fn request(request: &HttpRequest, allow_private: bool) -> Result<HttpOutcome, String> {
    guard(&request.url, allow_private)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_private_hosts() {
        for url in [
            "http://localhost/x",
            "http://127.0.0.1:8080/x",
            "https://10.1.2.3/",
            "http://192.168.0.1",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/x",
            "http://[fe80::1]/x",
            "http://user@172.16.0.9/x",
            "http://0.0.0.0/",
        ] {
            assert!(refused(url).is_some(), "{url}");
        }
        for url in [
            "https://app.example.com/ivr",
            "http://93.184.216.34/",
            "http://[2001:db8::1]/",
        ] {
            assert!(refused(url).is_none(), "{url}");
        }
    }
}
