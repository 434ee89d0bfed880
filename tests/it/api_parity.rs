//! Issue 19's Crossbar parity, through a real server: `filter_not_<path>`,
//! the date ranges (`created_from`, ..., `modified_to`) at their bounds,
//! and URL fields naming internal addresses refused on save.

use serde_json::{Value, json};

use callflow::api::Config;

use crate::api::{Server, assert_error, envelope, login, sample_flows, send};

const CALLFLOWS: &str = "/v2/accounts/acme/callflows";

/// Kazoo's Gregorian seconds of 1970-01-01.
const EPOCH: i64 = 62_167_219_200;
const CREATED_OLD: i64 = 63_800_000_000;
const MODIFIED_OLD: i64 = 63_800_000_500;
const CREATED_NEW: i64 = 63_900_000_000;
const MODIFIED_NEW: i64 = 63_900_000_500;

/// The ids a listing query answers, in order.
fn ids(server: &Server, token: &str, query: &str) -> Vec<String> {
    let reply = send(
        "GET",
        &server.url(&format!("{CALLFLOWS}?paginate=false&{query}")),
        Some(token),
        None,
    );
    assert_eq!(reply.status, 200, "{query}: {}", reply.text);
    reply.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The sample flows plus two callflows written by hand with Kazoo's
/// private timestamps and a nested key (the sample's own have neither),
/// served: the directory, the server, a token, every callflow id.
fn stamped_server() -> (tempfile::TempDir, Server, String, Vec<String>) {
    let (dir, flows) = sample_flows();
    let callflows = flows.join("acme/callflows");
    for (id, number, team, created, modified) in [
        ("zz-old", "7001", "red", CREATED_OLD, MODIFIED_OLD),
        ("zz-new", "7002", "blue", CREATED_NEW, MODIFIED_NEW),
    ] {
        let doc = json!({
            "name": id, "numbers": [number], "meta": {"team": team},
            "flow": {"module": "hangup", "data": {}, "children": {}},
            "pvt_type": "callflow", "pvt_created": created, "pvt_modified": modified,
        });
        std::fs::write(callflows.join(format!("{id}.json")), doc.to_string()).unwrap();
    }
    let server = Server::start(&flows, Config::default());
    let token = login(&server, &flows, "acme");
    let all = ids(&server, &token, "");
    assert_eq!(all.len(), 24);
    (dir, server, token, all)
}

/// `all` without `gone`, in order.
fn without(all: &[String], gone: &[&str]) -> Vec<String> {
    all.iter()
        .filter(|id| !gone.contains(&id.as_str()))
        .cloned()
        .collect()
}

#[test]
fn negated_filters_follow_crossbar() {
    let (_dir, server, token, all) = stamped_server();
    let without = |gone: &[&str]| without(&all, gone);
    // filter_ and filter_not_ on a nested path: one lists what the other
    // does not; a document without the path differs from any value.
    assert_eq!(ids(&server, &token, "filter_meta.team=red"), ["zz-old"]);
    assert_eq!(
        ids(&server, &token, "filter_not_meta.team=red"),
        without(&["zz-old"])
    );
    assert_eq!(ids(&server, &token, "filter_not_meta.team=green"), all);
    assert_eq!(ids(&server, &token, "filter_name=Sales"), ["sales"]);
    assert_eq!(
        ids(&server, &token, "filter_not_name=Sales"),
        without(&["sales"])
    );
    // Arrays: a list holding the value is not "not equal".
    assert_eq!(
        ids(&server, &token, "filter_not_numbers=7002"),
        without(&["zz-new"])
    );
    // Combined, every filter must pass.
    assert_eq!(
        ids(&server, &token, "filter_not_meta.team=red&has_key=meta"),
        ["zz-new"]
    );
}

#[test]
fn date_ranges_follow_crossbar_at_their_bounds() {
    let (_dir, server, token, all) = stamped_server();
    let without = |gone: &[&str]| without(&all, gone);
    // Date ranges, inclusive. A document without `pvt_created` passes every
    // `_from` and fails every `_to`, as in Kazoo.
    assert_eq!(
        ids(&server, &token, &format!("created_from={CREATED_OLD}")),
        all
    );
    assert_eq!(
        ids(
            &server,
            &token,
            &format!("created_from={}", CREATED_OLD + 1)
        ),
        without(&["zz-old"])
    );
    assert_eq!(
        ids(
            &server,
            &token,
            &format!("created_from={}", CREATED_NEW + 1)
        ),
        without(&["zz-old", "zz-new"])
    );
    assert_eq!(
        ids(&server, &token, &format!("created_to={CREATED_OLD}")),
        ["zz-old"]
    );
    assert!(ids(&server, &token, &format!("created_to={}", CREATED_OLD - 1)).is_empty());
    assert_eq!(
        ids(&server, &token, &format!("created_to={CREATED_NEW}")),
        ["zz-new", "zz-old"]
    );
    assert_eq!(
        ids(
            &server,
            &token,
            &format!("created_from={CREATED_NEW}&created_to={CREATED_NEW}")
        ),
        ["zz-new"]
    );
    assert_eq!(
        ids(&server, &token, &format!("modified_to={MODIFIED_OLD}")),
        ["zz-old"]
    );
    assert!(
        ids(
            &server,
            &token,
            &format!("modified_to={}", MODIFIED_OLD - 1)
        )
        .is_empty()
    );
    assert_eq!(
        ids(&server, &token, &format!("modified_from={MODIFIED_NEW}")),
        without(&["zz-old"])
    );
    assert_eq!(
        ids(
            &server,
            &token,
            &format!("modified_from={}", MODIFIED_NEW + 1)
        ),
        without(&["zz-old", "zz-new"])
    );
    assert_eq!(
        ids(
            &server,
            &token,
            &format!(
                "modified_from={}&modified_to={MODIFIED_NEW}",
                MODIFIED_OLD + 1
            )
        ),
        ["zz-new"]
    );
}

#[test]
fn writes_stamp_gregorian_seconds_and_bad_dates_are_refused() {
    let (_dir, server, token, _) = stamped_server();
    // A write sets both timestamps, in Gregorian seconds.
    let before = jiff::Timestamp::now().as_second() + EPOCH;
    let created = send(
        "PUT",
        &server.url(CALLFLOWS),
        Some(&token),
        Some(&envelope(
            &json!({"numbers": ["7003"], "flow": {"module": "hangup", "data": {}}}),
        )),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["data"]["id"].as_str().unwrap().to_owned();
    let after = jiff::Timestamp::now().as_second() + EPOCH;
    let range = format!(
        "created_from={before}&created_to={after}&modified_from={before}&modified_to={after}"
    );
    assert_eq!(ids(&server, &token, &range), std::slice::from_ref(&id));
    assert!(!ids(&server, &token, &format!("created_to={}", before - 1)).contains(&id));

    // A value that is not an integer is a 400 naming the parameter.
    for parameter in ["created_from", "created_to", "modified_from", "modified_to"] {
        let reply = send(
            "GET",
            &server.url(&format!("{CALLFLOWS}?{parameter}=yesterday")),
            Some(&token),
            None,
        );
        assert_error(&reply, 400, "invalid request");
        let message = reply.body["data"]["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("{parameter} ")), "{message}");
    }
}

/// Every literal form of an internal address the runtime check knows.
const INTERNAL: &[&str] = &[
    "http://localhost/123",
    "http://LOCALHOST./123",
    "http://api.localhost/123",
    "http://127.0.0.1/123",
    "http://127.0.0.1:8080/123",
    "http://user:secret@127.0.0.1/123",
    "http://2130706433/123",
    "http://0x7f000001/123",
    "http://0x7f.0.0.1/123",
    "http://0177.0.0.1/123",
    "http://0177.0.0.01/123",
    "http://127.1/123",
    "http://0/123",
    "http://0.0.0.0/123",
    "http://10.0.0.1/123",
    "http://172.16.0.1/123",
    "http://192.168.1.1/123",
    "http://169.254.169.254/latest/meta-data",
    "http://100.64.0.1/123",
    "http://198.18.0.1/123",
    "http://224.0.0.1/123",
    "http://255.255.255.255/123",
    "http://[::1]/123",
    "http://[::]/123",
    "http://[::ffff:127.0.0.1]/123",
    "http://[::ffff:7f00:1]/123",
    "http://[::127.0.0.1]/123",
    "http://[fe80::1]/123",
    "http://[fe80::1%25eth0]/123",
    "http://[fd00::1]/123",
    "http://[fec0::1]/123",
    "http://[64:ff9b::a9fe:a9fe]/123",
    "http://[2002:7f00:1::1]/123",
];

fn pivot_to(url: &str) -> Value {
    json!({"numbers": ["7100"], "flow": {"module": "pivot", "data": {"voice_url": url}, "children": {}}})
}

#[test]
fn internal_urls_are_refused_on_save() {
    let (_dir, flows) = sample_flows();
    let server = Server::start(&flows, Config::default());
    let token = login(&server, &flows, "acme");
    for url in INTERNAL {
        let reply = send(
            "PUT",
            &server.url(CALLFLOWS),
            Some(&token),
            Some(&envelope(&pivot_to(url))),
        );
        assert_error(&reply, 400, "validation error");
        let error = &reply.body["data"]["flow.data.voice_url"]["internal_url"];
        assert_eq!(error["value"], *url, "{url}: {}", reply.text);
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("private address"),
            "{}",
            reply.text
        );
    }
    // Every URL field, nested: webhook, record_call, record_caller, cdr_url.
    let nested = json!({"numbers": ["7101"], "flow": {
        "module": "pivot",
        "data": {"voice_url": "https://ivr.example.com/", "cdr_url": "http://10.9.8.7/cdr"},
        "children": {"_": {"module": "webhook", "data": {"uri": "http://192.168.0.10/hook"}, "children": {
            "_": {"module": "record_call", "data": {"action": "start", "url": "http://[::1]/store"}, "children": {
                "_": {"module": "record_caller", "data": {"url": "ftp://127.0.0.1/rec"}, "children": {}}
            }}
        }}}
    }});
    let reply = send(
        "PUT",
        &server.url(CALLFLOWS),
        Some(&token),
        Some(&envelope(&nested)),
    );
    assert_error(&reply, 400, "validation error");
    let paths: Vec<&String> = reply.body["data"].as_object().unwrap().keys().collect();
    assert_eq!(
        paths,
        [
            "flow.data.cdr_url",
            "flow.children._.data.uri",
            "flow.children._.children._.data.url",
            "flow.children._.children._.children._.data.url",
        ],
        "{}",
        reply.text
    );
    // PATCH and POST are checked too.
    let public = pivot_to("https://ivr.example.com/start");
    let created = send(
        "PUT",
        &server.url(CALLFLOWS),
        Some(&token),
        Some(&envelope(&public)),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    let one = format!(
        "{CALLFLOWS}/{}",
        created.body["data"]["id"].as_str().unwrap()
    );
    let patch = json!({"flow": {"data": {"voice_url": "http://0x0a000001/"}}});
    let reply = send(
        "PATCH",
        &server.url(&one),
        Some(&token),
        Some(&envelope(&patch)),
    );
    assert_error(&reply, 400, "validation error");
    assert_eq!(
        reply.body["data"]["flow.data.voice_url"]["internal_url"]["value"],
        "http://0x0a000001/"
    );
    let replaced = send(
        "POST",
        &server.url(&one),
        Some(&token),
        Some(&envelope(&pivot_to("http://127.1/"))),
    );
    assert_error(&replaced, 400, "validation error");
    // Names only the resolver could tell are left to the call's own check.
    let named = send(
        "POST",
        &server.url(&one),
        Some(&token),
        Some(&envelope(&pivot_to("http://0x7f000001.example.com/"))),
    );
    assert_eq!(named.status, 200, "{}", named.text);
}

#[test]
fn a_lab_server_saves_internal_urls() {
    let (_dir, flows) = sample_flows();
    let config = Config {
        allow_private_urls: true,
        ..Config::default()
    };
    let server = Server::start(&flows, config);
    let token = login(&server, &flows, "acme");
    let reply = send(
        "PUT",
        &server.url(CALLFLOWS),
        Some(&token),
        Some(&envelope(&pivot_to("http://localhost/123"))),
    );
    assert_eq!(reply.status, 201, "{}", reply.text);
}
