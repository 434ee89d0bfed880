//! Real HTTP requests, made only when a simulation is run with
//! `--allow-network` and no stub answers the URL. Blocking: the worker
//! thread waits for the response, which is fine for a single simulated call
//! and is why scenarios normally stub every request.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};
use std::time::Duration;

use crate::engine::control::{HttpOutcome, HttpRequest};

/// Largest response body read (bytes).
const MAX_BODY: u64 = 1 << 20;

/// Why a URL may not be requested: its host is loopback, link-local,
/// private or otherwise internal, by name (`localhost`) or by literal
/// address in any form a resolver reads (`127.0.0.1`, `2130706433`,
/// `0x7f000001`, `0177.0.0.1`, `127.1`, `[::ffff:127.0.0.1]`, ...). `None`
/// when it may, or when only resolving the name could tell ([`guard`]
/// does that before connecting). The one check of a URL's host without
/// the network: calls make it before a request, and `callflow check` and
/// the API's writes make it on the URL fields of module data (schema
/// `format: "uri"`, see [`crate::schema`]).
pub fn refused(url: &str) -> Option<String> {
    let host = host_of(url)?;
    let lower = host.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name == "localhost" || name.ends_with(".localhost") {
        return Some(format!(
            "refused: {host} is this machine (allow private addresses to reach it)"
        ));
    }
    let ip = literal_ip(name)?;
    let written = host.trim_start_matches('[').trim_end_matches(']');
    // The address as written, or its usual form after it when it differs.
    let shown = if written == ip.to_string() {
        written.to_owned()
    } else {
        format!("{written} ({ip})")
    };
    is_private(ip).then(|| {
        format!(
            "refused: {shown} is a loopback, link-local or private address (allow private \
             addresses to reach it)"
        )
    })
}

/// The host part of a `scheme://` URL (`[...]` kept around an IPv6
/// address).
fn host_of(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return None;
    }
    let authority = rest.split(['/', '?', '#', '\\']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(end) = host_port.find(']') {
        return Some(&host_port[..=end]);
    }
    Some(host_port.split(':').next().unwrap_or(host_port))
}

/// The address a host names literally: a bracketed IPv6 address (a zone
/// id left out), or an IPv4 address as `inet_aton` reads it (and so the
/// resolver a request goes through): one to four parts, each decimal,
/// `0x` hex or `0` octal, the last filling the bytes left.
fn literal_ip(host: &str) -> Option<IpAddr> {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let address = inner.split('%').next().unwrap_or(inner);
        return address.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip);
    }
    let parts = host
        .split('.')
        .map(number_part)
        .collect::<Option<Vec<u32>>>()?;
    let byte = |n: u32| n <= 0xff;
    let value = match parts.as_slice() {
        [a] => *a,
        [a, b] if byte(*a) && *b <= 0x00ff_ffff => a << 24 | b,
        [a, b, c] if byte(*a) && byte(*b) && *c <= 0xffff => a << 24 | b << 16 | c,
        [a, b, c, d] if [a, b, c, d].iter().all(|n| byte(**n)) => a << 24 | b << 16 | c << 8 | d,
        _ => return None,
    };
    Some(IpAddr::V4(Ipv4Addr::from(value)))
}

/// One part of an `inet_aton` address: decimal, `0x` hex or `0` octal.
fn number_part(part: &str) -> Option<u32> {
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

/// Whether an address is loopback, private, link-local or otherwise not a
/// public host: unspecified, "this network" (0/8), shared (100.64/10),
/// IETF protocol (192.0.0/24), benchmarking (198.18/15), multicast,
/// reserved and broadcast; in IPv6 also unique-local, site-local,
/// multicast, and IPv4 addresses carried inside (mapped, compatible,
/// NAT64, 6to4).
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 100 && (b & 0xc0) == 64)
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b & 0xfe) == 18)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded = |high: u16, low: u16| {
                let [h1, h2] = high.to_be_bytes();
                let [l1, l2] = low.to_be_bytes();
                is_private(IpAddr::V4(Ipv4Addr::new(h1, h2, l1, l2)))
            };
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local
                || v6.to_ipv4().is_some_and(|v4| is_private(IpAddr::V4(v4)))
                || (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && embedded(s[6], s[7])) // NAT64
                || (s[0] == 0x2002 && embedded(s[1], s[2])) // 6to4
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

/// The HTTP agent of calls' requests (`call:http`, webhooks, media URLs)
/// with `config`. Unless `allow_private`, its resolver refuses a host any of
/// whose addresses is private when it connects: the addresses checked are
/// the ones used, so a name that resolves to a public address for
/// [`guard`] and to a private one a moment later (DNS rebinding) is
/// refused too.
pub fn agent(config: ureq::config::Config, allow_private: bool) -> ureq::Agent {
    if allow_private {
        ureq::Agent::new_with_config(config)
    } else {
        ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::default(),
            PublicOnly::default(),
        )
    }
}

/// ureq's resolver, refusing private addresses (see [`agent`]). ureq's
/// resolver trait is outside its semver promise (`unversioned`): the lock
/// file pins the version, and a change there fails to compile here.
#[derive(Debug, Default)]
struct PublicOnly {
    inner: ureq::unversioned::resolver::DefaultResolver,
}

impl ureq::unversioned::resolver::Resolver for PublicOnly {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let addrs = self.inner.resolve(uri, config, timeout)?;
        if let Some(private) = addrs.iter().find(|addr| is_private(addr.ip())) {
            return Err(ureq::Error::Io(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "refused: {} resolves to {}, a private address (allow private addresses to \
                     reach it)",
                    uri.host().unwrap_or_default(),
                    private.ip()
                ),
            )));
        }
        Ok(addrs)
    }
}

/// Makes the request; `Err` says why it failed. Unless `allow_private`, a
/// host that resolves to a private address is refused before connecting.
/// Redirects are not followed: a 3xx is the answer (its `location` header
/// says where), so a public address cannot send the request on to a
/// private one unchecked; a caller that follows it asks again, checked.
pub fn request(request: &HttpRequest, allow_private: bool) -> Result<HttpOutcome, String> {
    guard(&request.url, allow_private)?;
    let agent = agent(
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(request.timeout_ms)))
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .build(),
        allow_private,
    );
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

    /// A one-request HTTP server on loopback answering `reply`; the
    /// request line it got comes out of the channel.
    fn one_shot(reply: String) -> (u16, std::sync::mpsc::Receiver<String>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if let Ok((stream, _)) = listener.accept() {
                let mut line = String::new();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let _ = reader.read_line(&mut line);
                let _ = tx.send(line);
                let mut stream = stream;
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        (port, rx)
    }

    #[test]
    fn the_connecting_resolver_refuses_private_addresses() {
        use ureq::unversioned::resolver::Resolver;
        let config = ureq::config::Config::default();
        let resolve = |url: &str| {
            PublicOnly::default().resolve(
                &url.parse().unwrap(),
                &config,
                ureq::unversioned::transport::NextTimeout::default(),
            )
        };
        for url in [
            "http://localhost:8080/x",
            "http://127.0.0.1/",
            "http://[::1]:80/",
        ] {
            let refused = resolve(url).unwrap_err().to_string();
            assert!(refused.contains("a private address"), "{url}: {refused}");
        }
        // And an agent that refuses them never connects: the request fails
        // at resolution, whatever `guard` said.
        let agent = agent(ureq::config::Config::default(), false);
        let refused = agent
            .get("http://localhost:9/")
            .call()
            .unwrap_err()
            .to_string();
        assert!(refused.contains("a private address"), "{refused}");
    }

    #[test]
    fn redirects_come_back_unfollowed() {
        let (target, hits) = one_shot("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".into());
        let (first, _) = one_shot(format!(
            "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{target}/inside\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        ));
        let outcome = request(
            &HttpRequest {
                method: "GET".into(),
                url: format!("http://127.0.0.1:{first}/"),
                headers: BTreeMap::new(),
                body: None,
                timeout_ms: 5000,
            },
            true,
        )
        .unwrap();
        assert_eq!(outcome.status, 302);
        assert_eq!(
            outcome.headers["location"],
            format!("http://127.0.0.1:{target}/inside")
        );
        // The redirect's target never heard from us (its server would have
        // sent the request line at once).
        assert!(hits.try_recv().is_err());
    }

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
            // The literal forms a resolver reads.
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0x7F.0.0.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://10.1/",
            "http://LOCALHOST./",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::127.0.0.1]/",
            "http://[fe80::1%25eth0]/",
            "http://[fd00::1]/",
            "http://[64:ff9b::a00:1]/",
            "http://[2002:c0a8:1::1]/",
            "http://[::]/",
            "http://100.64.0.1/",
            "http://198.18.0.1/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "ftp://127.0.0.1/rec",
        ] {
            assert!(refused(url).is_some(), "{url}");
        }
        for url in [
            "https://app.example.com/ivr",
            "http://93.184.216.34/",
            "http://[2001:db8::1]/",
            "http://1e100.net/",
            "http://0x7f000001.example.com/",
            "http://[::ffff:93.184.216.34]/",
            "http://1572395042/",
            "not a url",
        ] {
            assert!(refused(url).is_none(), "{url}");
        }
    }
}
