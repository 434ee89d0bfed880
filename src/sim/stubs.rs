//! Which of a scenario's HTTP stubs answers a request.
//!
//! A stub is keyed by a URL. It answers a request whose scheme, host (with
//! its port) and path are the key's (scheme and host in any case, an empty
//! path as `/`) when every condition it sets holds:
//!
//! - each `name=value` pair in the key's query string, and in its
//!   `match.query` object, is in the request's query string (values compared
//!   percent-decoded, `+` as a space; other parameters are allowed);
//! - its `match.method`, if any, is the request's method (in any case);
//! - its `match.body`, if any: a string must occur in the request's body;
//!   any other JSON value must be contained in the body read as JSON (an
//!   object's listed keys with contained values, arrays and scalars equal).
//!
//! Of the stubs that answer, the most specific wins: the one with the most
//! conditions (query pairs, method and body count one each); on a tie, the
//! first listed (keys in sorted order, then a key's stubs in their order).
//! An exact URL with its whole query string therefore still answers the
//! request it names, and a bare `https://app.example.com/ivr` answers a
//! GET whatever the query string.

use std::collections::BTreeMap;

use serde_json::Value;

use super::scenario::{HttpStub, HttpStubs};
use crate::engine::control::HttpRequest;

/// A URL taken apart as far as stubs care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `http` or `https`, lower case.
    pub scheme: String,
    /// `host[:port]`, lower case.
    pub host: String,
    /// From the first `/` on, `/` when empty.
    pub path: String,
    /// Decoded `name=value` pairs of the query string, in order.
    pub query: Vec<(String, String)>,
}

impl Url {
    /// `None` unless `http://` or `https://` and a host follow.
    pub fn parse(url: &str) -> Option<Self> {
        let (scheme, rest) = url.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return None;
        }
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (host, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/"),
        };
        // User information is not part of the host.
        let host = host.rsplit_once('@').map_or(host, |(_, host)| host);
        if host.is_empty() {
            return None;
        }
        Some(Self {
            scheme,
            host: host.to_ascii_lowercase(),
            path: path.to_owned(),
            query: parse_query(query),
        })
    }
}

/// `a=1&b=x+y&c` into decoded pairs (`c` has the empty value).
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            (decode(name), decode(value))
        })
        .collect()
}

/// Percent-decoding with `+` as a space; malformed escapes stay as written.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |at: usize| bytes.get(at).and_then(|b| char::from(*b).to_digit(16));
                if let (Some(high), Some(low)) = (hex(i + 1), hex(i + 2)) {
                    // Two hex digits make one byte (at most 255).
                    out.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How many conditions `stub` keyed by `key` sets, if it answers `request`.
fn specificity(key: &Url, stub: &HttpStub, request: &HttpRequest, url: &Url) -> Option<usize> {
    if key.scheme != url.scheme || key.host != url.host || key.path != url.path {
        return None;
    }
    let wanted = key
        .query
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .chain(
            stub.request
                .query
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        );
    let mut conditions = 0;
    for (name, value) in wanted {
        if !url.query.iter().any(|(n, v)| n == name && v == value) {
            return None;
        }
        conditions += 1;
    }
    if let Some(method) = &stub.request.method {
        if !method.eq_ignore_ascii_case(&request.method) {
            return None;
        }
        conditions += 1;
    }
    if let Some(body) = &stub.request.body {
        let sent = request.body.as_deref().unwrap_or_default();
        let holds = match body {
            Value::String(part) => sent.contains(part.as_str()),
            wanted => serde_json::from_str::<Value>(sent).is_ok_and(|sent| contains(&sent, wanted)),
        };
        if !holds {
            return None;
        }
        conditions += 1;
    }
    Some(conditions)
}

/// `wanted` is in `value`: an object's keys with contained values, anything
/// else equal.
fn contains(value: &Value, wanted: &Value) -> bool {
    match (value, wanted) {
        (Value::Object(have), Value::Object(want)) => want
            .iter()
            .all(|(key, w)| have.get(key).is_some_and(|h| contains(h, w))),
        _ => value == wanted,
    }
}

/// The stub that answers `request`: the most specific, the first listed on
/// a tie (see the module's documentation).
pub fn find<'a>(
    stubs: &'a BTreeMap<String, HttpStubs>,
    request: &HttpRequest,
) -> Option<&'a HttpStub> {
    let url = Url::parse(&request.url)?;
    let mut best: Option<(usize, &HttpStub)> = None;
    for (key, listed) in stubs {
        let Some(key) = Url::parse(key) else {
            continue;
        };
        for stub in &listed.0 {
            if let Some(score) = specificity(&key, stub, request, &url)
                && best.is_none_or(|(top, _)| score > top)
            {
                best = Some((score, stub));
            }
        }
    }
    best.map(|(_, stub)| stub)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::scenario::RequestMatch;

    fn stub(status: u16, request: RequestMatch) -> HttpStub {
        HttpStub {
            status,
            body: None,
            headers: BTreeMap::new(),
            delay_ms: 0,
            request,
        }
    }

    fn get(url: &str) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            url: url.into(),
            headers: BTreeMap::new(),
            body: None,
            timeout_ms: 1000,
        }
    }

    fn answer(stubs: &BTreeMap<String, HttpStubs>, request: &HttpRequest) -> Option<u16> {
        find(stubs, request).map(|s| s.status)
    }

    #[test]
    fn urls_come_apart() {
        let url =
            Url::parse("HTTPS://App.Example.com:8443/ivr/a?x=1&Digits%5Bdefault%5D=4+2&flag#top")
                .unwrap();
        assert_eq!(url.scheme, "https");
        assert_eq!(url.host, "app.example.com:8443");
        assert_eq!(url.path, "/ivr/a");
        assert_eq!(
            url.query,
            [
                ("x".to_owned(), "1".to_owned()),
                ("Digits[default]".to_owned(), "4 2".to_owned()),
                ("flag".to_owned(), String::new()),
            ]
        );
        assert_eq!(Url::parse("https://h").unwrap().path, "/");
        assert_eq!(Url::parse("https://u:p@h/x").unwrap().host, "h");
        assert!(Url::parse("ftp://h/x").is_none());
        assert!(Url::parse("https:///x").is_none());
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz%41"), "%zzA");
    }

    #[test]
    fn a_bare_url_answers_any_query_string() {
        let stubs = BTreeMap::from([(
            "https://app.example.com/ivr".to_owned(),
            HttpStubs(vec![stub(200, RequestMatch::default())]),
        )]);
        assert_eq!(
            answer(&stubs, &get("https://app.example.com/ivr?Call-ID=1&From=2")),
            Some(200)
        );
        assert_eq!(
            answer(&stubs, &get("https://APP.example.com/ivr")),
            Some(200)
        );
        assert_eq!(answer(&stubs, &get("http://app.example.com/ivr")), None);
        assert_eq!(answer(&stubs, &get("https://app.example.com/ivr/2")), None);
        assert_eq!(answer(&stubs, &get("https://other.example.com/ivr")), None);
    }

    #[test]
    fn the_most_specific_stub_wins() {
        let post = RequestMatch {
            method: Some("post".into()),
            ..RequestMatch::default()
        };
        let digits = RequestMatch {
            query: BTreeMap::from([("Digits".to_owned(), "1".to_owned())]),
            ..RequestMatch::default()
        };
        let json_body = RequestMatch {
            method: Some("POST".into()),
            body: Some(serde_json::json!({"Digits": "2"})),
            ..RequestMatch::default()
        };
        let form_body = RequestMatch {
            body: Some(Value::String("Digits=3".into())),
            ..RequestMatch::default()
        };
        let stubs = BTreeMap::from([
            (
                "https://h/ivr".to_owned(),
                HttpStubs(vec![
                    stub(200, RequestMatch::default()),
                    stub(201, post),
                    stub(202, digits),
                    stub(203, json_body),
                    stub(204, form_body),
                ]),
            ),
            // The exact URL: two query pairs.
            (
                "https://h/ivr?Digits=1&From=9".to_owned(),
                HttpStubs(vec![stub(205, RequestMatch::default())]),
            ),
        ]);
        assert_eq!(answer(&stubs, &get("https://h/ivr")), Some(200));
        assert_eq!(answer(&stubs, &get("https://h/ivr?Digits=1")), Some(202));
        assert_eq!(
            answer(&stubs, &get("https://h/ivr?From=9&Digits=1&x=y")),
            Some(205)
        );
        let mut request = get("https://h/ivr");
        request.method = "POST".into();
        assert_eq!(answer(&stubs, &request), Some(201));
        request.body = Some(r#"{"Digits": "2", "From": "9"}"#.into());
        assert_eq!(answer(&stubs, &request), Some(203));
        request.body = Some(r#"{"Digits": "3"}"#.into());
        assert_eq!(answer(&stubs, &request), Some(201));
        request.body = Some("From=9&Digits=3".into());
        // Method (201) and body (204) tie at one condition: the first listed.
        assert_eq!(answer(&stubs, &request), Some(201));
        request.method = "GET".into();
        assert_eq!(answer(&stubs, &request), Some(204));
    }
}
