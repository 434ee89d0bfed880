//! SIP digest authentication (RFC 3261 §22, RFC 8760): challenges, the
//! check of a client's answer, nonces that expire and cannot be replayed,
//! and a throttle on sources that keep failing.
//!
//! Pure: the clock is passed in, so every rule is unit-tested.
//! rsipstack has digest helpers, but its typed header rewrites the `uri`
//! parameter and its `compute_digest` formats `nc` in decimal, so the
//! verification is ours (a few lines over `md-5` and `sha2`).

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;
use std::net::IpAddr;
use std::time::Duration;

use md5::Md5;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

/// A digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// `MD5` or `SHA-256` (case-insensitive).
    pub fn parse(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if name.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    fn hash(self, text: &str) -> String {
        let bytes: Vec<u8> = match self {
            Algorithm::Md5 => Md5::digest(text.as_bytes()).to_vec(),
            Algorithm::Sha256 => Sha256::digest(text.as_bytes()).to_vec(),
        };
        let mut hex = String::with_capacity(bytes.len() * 2);
        for byte in bytes {
            let _ = write!(hex, "{byte:02x}");
        }
        hex
    }
}

/// The parameters of an `Authorization` or `Proxy-Authorization` header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Option<String>,
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub cnonce: Option<String>,
}

impl Credentials {
    /// Parses `Digest username="..", realm="..", ...`; `None` when it is
    /// not a digest or a required parameter is missing.
    pub fn parse(header: &str) -> Option<Self> {
        let rest = header.trim();
        let (scheme, params) = rest.split_once(char::is_whitespace)?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return None;
        }
        let mut out = Self::default();
        for (key, value) in auth_params(params) {
            match key.to_ascii_lowercase().as_str() {
                "username" => out.username = value,
                "realm" => out.realm = value,
                "nonce" => out.nonce = value,
                "uri" => out.uri = value,
                "response" => out.response = value,
                "algorithm" => out.algorithm = Some(value),
                "qop" => out.qop = Some(value),
                "nc" => out.nc = Some(value),
                "cnonce" => out.cnonce = Some(value),
                _ => {}
            }
        }
        if out.username.is_empty() || out.nonce.is_empty() || out.response.is_empty() {
            return None;
        }
        Some(out)
    }

    /// The algorithm named (MD5 when none is).
    pub fn algorithm(&self) -> Option<Algorithm> {
        match &self.algorithm {
            None => Some(Algorithm::Md5),
            Some(name) => Algorithm::parse(name),
        }
    }

    /// Whether the response is right for `password` and `method`.
    pub fn verify(&self, password: &str, method: &str) -> bool {
        let Some(algorithm) = self.algorithm() else {
            return false;
        };
        let ha1 = algorithm.hash(&format!("{}:{}:{password}", self.username, self.realm));
        let ha2 = algorithm.hash(&format!("{method}:{}", self.uri));
        let expected = match (&self.qop, &self.nc, &self.cnonce) {
            (Some(qop), Some(nc), Some(cnonce)) if qop.eq_ignore_ascii_case("auth") => {
                algorithm.hash(&format!("{ha1}:{}:{nc}:{cnonce}:{qop}:{ha2}", self.nonce))
            }
            (Some(_), _, _) => return false,
            (None, ..) => algorithm.hash(&format!("{ha1}:{}:{ha2}", self.nonce)),
        };
        constant_time_eq(
            expected.as_bytes(),
            self.response.to_ascii_lowercase().as_bytes(),
        )
    }

    /// The nonce count, when `qop` is used.
    pub fn nonce_count(&self) -> Option<u32> {
        u32::from_str_radix(self.nc.as_deref()?, 16).ok()
    }
}

/// Compares without stopping at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `key=value` pairs of an auth header, values unquoted (`\"` escapes kept
/// simple: a backslash takes the next character).
fn auth_params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_owned();
        if key.is_empty() {
            return out;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
            let trimmed = value.trim().len();
            value.truncate(trimmed);
        }
        out.push((key, value));
    }
}

/// How long a nonce may be used.
pub const NONCE_TTL: Duration = Duration::from_mins(5);
/// Nonces remembered at most (the oldest are forgotten first).
pub const MAX_NONCES: usize = 100_000;

#[derive(Debug, Clone)]
struct NonceState {
    issued: Instant,
    /// Highest nonce count seen (qop=auth).
    nc: u32,
    /// Used without qop (such a nonce is good once).
    spent: bool,
}

/// What a nonce check says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    Fresh,
    /// Known but too old: challenge again with `stale=true`.
    Stale,
    /// Never issued, forgotten, or used again (a replay).
    Unknown,
}

/// Nonces handed out in challenges.
#[derive(Debug, Default)]
pub struct Nonces {
    by_value: BTreeMap<String, NonceState>,
    order: VecDeque<String>,
}

impl Nonces {
    /// A new nonce (random hex from the OS).
    pub fn issue(&mut self, now: Instant) -> String {
        let mut bytes = [0_u8; 16];
        // A failing OS generator would only make nonces predictable-ish;
        // fall back to the clock-seeded generator rather than refuse.
        if getrandom::fill(&mut bytes).is_err() {
            bytes = fastrand::u128(..).to_le_bytes();
        }
        let nonce: String = bytes.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
        while self.order.len() >= MAX_NONCES {
            if let Some(old) = self.order.pop_front() {
                self.by_value.remove(&old);
            }
        }
        self.order.push_back(nonce.clone());
        self.by_value.insert(
            nonce.clone(),
            NonceState {
                issued: now,
                nc: 0,
                spent: false,
            },
        );
        nonce
    }

    /// Checks the nonce and count of credentials whose response is right,
    /// and records their use.
    pub fn check(&mut self, credentials: &Credentials, now: Instant) -> NonceCheck {
        let Some(state) = self.by_value.get_mut(&credentials.nonce) else {
            return NonceCheck::Unknown;
        };
        if now.saturating_duration_since(state.issued) > NONCE_TTL {
            return NonceCheck::Stale;
        }
        match credentials.nonce_count() {
            Some(nc) if credentials.qop.is_some() => {
                if nc <= state.nc {
                    return NonceCheck::Unknown;
                }
                state.nc = nc;
            }
            _ => {
                if state.spent {
                    return NonceCheck::Unknown;
                }
                state.spent = true;
            }
        }
        NonceCheck::Fresh
    }

    /// Forgets expired nonces.
    pub fn prune(&mut self, now: Instant) {
        while let Some(old) = self.order.front() {
            let expired = self
                .by_value
                .get(old)
                .is_none_or(|s| now.saturating_duration_since(s.issued) > NONCE_TTL * 2);
            if !expired {
                break;
            }
            if let Some(old) = self.order.pop_front() {
                self.by_value.remove(&old);
            }
        }
    }
}

/// A challenge header's value.
pub fn challenge(realm: &str, nonce: &str, algorithm: Algorithm, stale: bool) -> String {
    let mut value = format!(
        "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"",
        algorithm.name()
    );
    if stale {
        value.push_str(", stale=true");
    }
    value
}

/// Failures from one source before it is refused for a while.
pub const MAX_FAILURES: u32 = 10;
/// The window failures are counted in, and how long a source is refused.
pub const FAILURE_WINDOW: Duration = Duration::from_mins(1);

#[derive(Debug, Clone)]
struct Record {
    since: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
}

/// Sources that keep failing authentication are refused for a while.
#[derive(Debug, Default)]
pub struct Throttle {
    by_ip: BTreeMap<IpAddr, Record>,
}

impl Throttle {
    /// Whether requests from `ip` are refused now.
    pub fn blocked(&mut self, ip: IpAddr, now: Instant) -> bool {
        match self.by_ip.get(&ip) {
            Some(Record {
                blocked_until: Some(until),
                ..
            }) if *until > now => true,
            Some(Record {
                blocked_until: Some(_),
                ..
            }) => {
                self.by_ip.remove(&ip);
                false
            }
            _ => false,
        }
    }

    /// A failed authentication from `ip`.
    pub fn failed(&mut self, ip: IpAddr, now: Instant) {
        if self.by_ip.len() > 100_000 {
            self.by_ip
                .retain(|_, r| now.saturating_duration_since(r.since) < FAILURE_WINDOW);
        }
        let record = self.by_ip.entry(ip).or_insert(Record {
            since: now,
            failures: 0,
            blocked_until: None,
        });
        if now.saturating_duration_since(record.since) > FAILURE_WINDOW {
            record.since = now;
            record.failures = 0;
        }
        record.failures += 1;
        if record.failures >= MAX_FAILURES {
            record.blocked_until = Some(now + FAILURE_WINDOW);
        }
    }

    /// A successful authentication from `ip` clears its failures.
    pub fn succeeded(&mut self, ip: IpAddr) {
        self.by_ip.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of RFC 2617 §3.5 (qop=auth, MD5), with the SIP
    /// method in place of HTTP's.
    fn rfc2617(method_uri: (&str, &str)) -> Credentials {
        let (method, uri) = method_uri;
        let realm = "testrealm@host.com";
        let nonce = "dcd98b7102dd2f0e8b11d0f600bfb0c093";
        let algorithm = Algorithm::Md5;
        let ha1 = algorithm.hash(&format!("Mufasa:{realm}:Circle Of Life"));
        let ha2 = algorithm.hash(&format!("{method}:{uri}"));
        let response = algorithm.hash(&format!("{ha1}:{nonce}:00000001:0a4f113b:auth:{ha2}"));
        Credentials {
            username: "Mufasa".into(),
            realm: realm.into(),
            nonce: nonce.into(),
            uri: uri.into(),
            response,
            algorithm: None,
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
            cnonce: Some("0a4f113b".into()),
        }
    }

    #[test]
    fn rfc_2617_example() {
        let creds = rfc2617(("GET", "/dir/index.html"));
        assert_eq!(creds.response, "6629fae49393a05397450978507c4ef1");
        assert!(creds.verify("Circle Of Life", "GET"));
        assert!(!creds.verify("circle of life", "GET"));
        assert!(!creds.verify("Circle Of Life", "POST"));
    }

    #[test]
    fn parses_headers() {
        let header = r#"Digest username="alice-desk", realm="acme.sip.example.com", nonce="abc",
            uri="sip:acme.sip.example.com", response="0123", algorithm=SHA-256, qop=auth, nc=0000000a, cnonce="x\"y""#;
        let creds = Credentials::parse(header).unwrap();
        assert_eq!(creds.username, "alice-desk");
        assert_eq!(creds.uri, "sip:acme.sip.example.com");
        assert_eq!(creds.algorithm(), Some(Algorithm::Sha256));
        assert_eq!(creds.nonce_count(), Some(10));
        assert_eq!(creds.cnonce.as_deref(), Some("x\"y"));
        assert!(Credentials::parse("Basic abc").is_none());
        assert!(Credentials::parse("Digest realm=\"x\"").is_none());
        assert!(Credentials::parse("").is_none());
    }

    #[test]
    fn sha256_without_qop() {
        let algorithm = Algorithm::Sha256;
        let ha1 = algorithm.hash("bob:r:pw");
        let ha2 = algorithm.hash("REGISTER:sip:r");
        let creds = Credentials {
            username: "bob".into(),
            realm: "r".into(),
            nonce: "n".into(),
            uri: "sip:r".into(),
            response: algorithm.hash(&format!("{ha1}:n:{ha2}")),
            algorithm: Some("SHA-256".into()),
            ..Credentials::default()
        };
        assert!(creds.verify("pw", "REGISTER"));
        assert!(!creds.verify("pw", "INVITE"));
        let unknown = Credentials {
            algorithm: Some("MD5-sess".into()),
            ..creds
        };
        assert!(!unknown.verify("pw", "REGISTER"));
    }

    #[test]
    fn nonces_expire_and_cannot_be_replayed() {
        let start = Instant::now();
        let mut nonces = Nonces::default();
        let nonce = nonces.issue(start);
        let mut creds = Credentials {
            nonce: nonce.clone(),
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
            ..Credentials::default()
        };
        assert_eq!(nonces.check(&creds, start), NonceCheck::Fresh);
        assert_eq!(nonces.check(&creds, start), NonceCheck::Unknown, "same nc");
        creds.nc = Some("0000000a".into());
        assert_eq!(
            nonces.check(&creds, start),
            NonceCheck::Fresh,
            "nc 10 after 1"
        );
        creds.nc = Some("00000009".into());
        assert_eq!(
            nonces.check(&creds, start),
            NonceCheck::Unknown,
            "nc going back"
        );
        let later = start + NONCE_TTL + Duration::from_secs(1);
        creds.nc = Some("0000000b".into());
        assert_eq!(nonces.check(&creds, later), NonceCheck::Stale);
        // Without qop a nonce is good once.
        let once = nonces.issue(start);
        let plain = Credentials {
            nonce: once,
            ..Credentials::default()
        };
        assert_eq!(nonces.check(&plain, start), NonceCheck::Fresh);
        assert_eq!(nonces.check(&plain, start), NonceCheck::Unknown);
        let made_up = Credentials {
            nonce: "0".repeat(32),
            ..Credentials::default()
        };
        assert_eq!(nonces.check(&made_up, start), NonceCheck::Unknown);
        nonces.prune(start + NONCE_TTL * 3);
        assert_eq!(nonces.check(&creds, start), NonceCheck::Unknown, "pruned");
    }

    #[test]
    fn throttles_repeated_failures() {
        let start = Instant::now();
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let mut throttle = Throttle::default();
        for _ in 0..MAX_FAILURES - 1 {
            throttle.failed(ip, start);
        }
        assert!(!throttle.blocked(ip, start));
        throttle.failed(ip, start);
        assert!(throttle.blocked(ip, start));
        assert!(!throttle.blocked("127.0.0.8".parse().unwrap(), start));
        assert!(!throttle.blocked(ip, start + FAILURE_WINDOW + Duration::from_secs(1)));
        throttle.failed(ip, start);
        throttle.succeeded(ip);
        assert!(!throttle.blocked(ip, start));
    }
}
