//! The carriers of off-net calls on real calls: Kazoo's resource documents
//! (`resources/<id>.json` of an account; the system's are those of the
//! account folder `offnet`, Kazoo's `offnet` database), read as stepswitch
//! reads them:
//!
//! * a resource is used when `enabled` (default true), it has every flag
//!   the request asks for, and one of its `rules` (regular expressions)
//!   matches the number; a rule's capture group, when it has one, is the
//!   number sent; resources go by `weight_cost` (default 50, lower first),
//!   then id;
//! * each of its `gateways` that is `enabled` (default true) is tried in
//!   order: `sip:<prefix><number><suffix>@<server>` (or its `route`, a
//!   static URI), with `username`/`password` for a 401/407 challenge,
//!   offering only its `codecs` among PCMU and PCMA, giving up after
//!   `progress_timeout` seconds without a response (default 6; not
//!   verified against Kazoo);
//! * `invite_format` `npan` sends the number without `+1`, `1npan`
//!   without `+`; the others (`route`, the default, `e164`, `username`)
//!   send it as the rule gives it.
//!
//! Whether a failure moves to the next gateway (and so to the next
//! resource) is [`fails_over`].

use serde_json::Value;

use crate::catalog::{AccountFlows, Catalog};
use crate::engine::control::Carriers;
use crate::media::Codec;

/// The account folder whose resources are the system's carriers.
pub const SYSTEM_CARRIERS: &str = "offnet";

/// How long a gateway may stay silent before the next is tried.
pub const PROGRESS_TIMEOUT_S: u64 = 6;

/// One gateway to try, ready to dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    /// The resource document it belongs to.
    pub resource: String,
    /// The Request-URI.
    pub uri: String,
    /// Digest credentials for a challenge.
    pub credential: Option<(String, String)>,
    /// The codecs to offer (empty: PCMU and PCMA).
    pub codecs: Vec<Codec>,
    pub progress_timeout_s: u64,
}

/// Whether a gateway's failure moves the call to the next gateway: it
/// could not take the call (no answer from it at all, refused credentials,
/// none of our codecs, server failures), as opposed to an answer about the
/// number (busy, no answer, does not exist, declined).
pub fn fails_over(code: u16) -> bool {
    matches!(code, 401 | 403 | 407 | 408 | 488 | 500..=599)
        || (code >= 600 && !matches!(code, 600 | 603 | 604))
}

/// The gateways to try for `number`, in order.
pub fn gateways(
    catalog: &Catalog,
    own: &AccountFlows,
    number: &str,
    carriers: Option<&Carriers>,
) -> Vec<Gateway> {
    let default = Carriers {
        local: true,
        ..Carriers::default()
    };
    let carriers = carriers.unwrap_or(&default);
    let account = if carriers.local {
        match &carriers.account {
            Some(id) if id != own.account.id.as_str() => catalog.account(id).map(AsRef::as_ref),
            _ => Some(own),
        }
    } else {
        catalog.account(SYSTEM_CARRIERS).map(AsRef::as_ref)
    };
    let Some(account) = account else {
        return Vec::new();
    };
    let Some(resources) = account.documents.get("resources") else {
        return Vec::new();
    };
    let mut eligible: Vec<(i64, &str, String, &crate::model::Object)> = Vec::new();
    for (id, doc) in resources {
        let body = &doc.body;
        if body.get("enabled").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let flags: Vec<&str> = strings(body.get("flags"));
        if !carriers.flags.iter().all(|f| flags.contains(&f.as_str())) {
            continue;
        }
        let Some(sent) = strings(body.get("rules"))
            .into_iter()
            .find_map(|rule| number_for(rule, number))
        else {
            continue;
        };
        let weight = body
            .get("weight_cost")
            .and_then(Value::as_i64)
            .unwrap_or(50);
        eligible.push((weight, id.as_str(), sent, body));
    }
    eligible.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let mut out = Vec::new();
    for (_, id, sent, body) in eligible {
        let Some(list) = body.get("gateways").and_then(Value::as_array) else {
            continue;
        };
        for gateway in list {
            if let Some(gateway) = gateway_of(id, gateway, &sent) {
                out.push(gateway);
            }
        }
    }
    out
}

/// The strings of a JSON array (others skipped).
fn strings(value: Option<&Value>) -> Vec<&str> {
    value
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The number a rule sends for `number`: its capture group, else the
/// number; `None` when it does not match (or does not compile).
fn number_for(rule: &str, number: &str) -> Option<String> {
    let pattern = crate::pattern::compile(rule).ok()?;
    let found = pattern.find(number)?;
    Some(if pattern.has_groups() {
        found.capture_group
    } else {
        number.to_owned()
    })
}

fn gateway_of(resource: &str, gateway: &Value, number: &str) -> Option<Gateway> {
    let text = |key: &str| {
        gateway
            .get(key)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    if gateway.get("enabled").and_then(Value::as_bool) == Some(false) {
        return None;
    }
    let number = match text("invite_format") {
        Some("npan") => number.trim_start_matches("+1").to_owned(),
        Some("1npan") => number.trim_start_matches('+').to_owned(),
        _ => number.to_owned(),
    };
    let uri = if let Some(route) = text("route") {
        route.to_owned()
    } else {
        let server = text("server")?;
        let port = gateway
            .get("port")
            .and_then(Value::as_u64)
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        format!(
            "sip:{}{number}{}@{server}{port}",
            text("prefix").unwrap_or_default(),
            text("suffix").unwrap_or_default()
        )
    };
    let credential = match (text("username"), text("password")) {
        (Some(user), Some(password)) => Some((user.to_owned(), password.to_owned())),
        _ => None,
    };
    let codecs = strings(gateway.get("codecs"))
        .into_iter()
        .filter_map(Codec::from_name)
        .collect();
    Some(Gateway {
        resource: resource.to_owned(),
        uri,
        credential,
        codecs,
        progress_timeout_s: gateway
            .get("progress_timeout")
            .and_then(Value::as_u64)
            .filter(|t| *t > 0)
            .unwrap_or(PROGRESS_TIMEOUT_S),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules_send_their_capture() {
        assert_eq!(
            number_for(r"^\+1(\d{10})$", "+14158867900"),
            Some("4158867900".to_owned())
        );
        assert_eq!(
            number_for(r"^\+1\d{10}$", "+14158867900"),
            Some("+14158867900".to_owned())
        );
        assert_eq!(number_for(r"^\+44", "+14158867900"), None);
        assert_eq!(number_for("(unclosed", "+1"), None);
    }

    #[test]
    fn gateways_become_uris() {
        let gateway = json!({
            "server": "sip.carrier.example",
            "prefix": "9",
            "suffix": "#1",
            "username": "acme",
            "password": "secret",
            "codecs": ["PCMA", "G729"],
            "progress_timeout": 3
        });
        assert_eq!(
            gateway_of("carrier", &gateway, "4158867900"),
            Some(Gateway {
                resource: "carrier".to_owned(),
                uri: "sip:94158867900#1@sip.carrier.example".to_owned(),
                credential: Some(("acme".to_owned(), "secret".to_owned())),
                codecs: vec![Codec::Pcma],
                progress_timeout_s: 3,
            })
        );
        let npan = json!({"server": "gw", "port": 5080, "invite_format": "npan"});
        assert_eq!(
            gateway_of("c", &npan, "+14158867900").map(|g| g.uri),
            Some("sip:4158867900@gw:5080".to_owned())
        );
        let route = json!({"server": "gw", "route": "sip:trunk@10.0.0.1"});
        assert_eq!(
            gateway_of("c", &route, "+1").map(|g| (g.uri, g.progress_timeout_s)),
            Some(("sip:trunk@10.0.0.1".to_owned(), PROGRESS_TIMEOUT_S))
        );
        assert_eq!(
            gateway_of("c", &json!({"server": "gw", "enabled": false}), "1"),
            None
        );
        assert_eq!(gateway_of("c", &json!({"prefix": "9"}), "1"), None);
    }

    #[test]
    fn failures_of_the_gateway_fail_over() {
        for code in [401, 403, 407, 408, 488, 500, 502, 503, 504, 606] {
            assert!(fails_over(code), "{code}");
        }
        for code in [404, 480, 484, 486, 487, 600, 603, 604] {
            assert!(!fails_over(code), "{code}");
        }
    }
}
