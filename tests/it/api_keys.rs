//! API keys and tokens over the API: an account's own keys (list, create,
//! revoke), logins noting a key's last use, tokens that die with their key,
//! `DELETE /v2/token_auth`, and `account.json` files of older versions.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

use callflow::api::{AppState, Config, create_key, revoke_key};
use callflow::ids::AccountId;
use callflow::reload::Paths;
use callflow::store::FlowsDir;

use crate::api::{
    Reply, Server, add_other_account, assert_envelope, assert_error, envelope, login, sample_flows,
    send,
};

const KEYS: &str = "/v2/accounts/acme/api_keys";
const CALLFLOWS: &str = "/v2/accounts/acme/callflows";

/// Seconds from year 0 to 1970, Kazoo's offset of Gregorian seconds.
const GREGORIAN_1970: i64 = 62_167_219_200;

fn acme() -> AccountId {
    AccountId::new("acme").unwrap()
}

/// `PUT /v2/api_auth` with `key`.
fn log_in(server: &Server, key: &str) -> Reply {
    send(
        "PUT",
        &server.url("/v2/api_auth"),
        None,
        Some(&envelope(&json!({ "api_key": key }))),
    )
}

fn token_of(reply: &Reply) -> String {
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.body["auth_token"].as_str().unwrap().to_owned()
}

/// Creates a key through the API; returns its id and the key.
fn create(server: &Server, token: &str, name: &str) -> (String, String) {
    let reply = send(
        "PUT",
        &server.url(KEYS),
        Some(token),
        Some(&envelope(&json!({ "name": name }))),
    );
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_envelope(&reply, "success");
    let data = &reply.body["data"];
    (
        data["id"].as_str().unwrap().to_owned(),
        data["api_key"].as_str().unwrap().to_owned(),
    )
}

/// The account's keys as `GET .../api_keys` lists them, by id.
fn listed(server: &Server, token: &str) -> Vec<Value> {
    let reply = send("GET", &server.url(KEYS), Some(token), None);
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(!reply.text.contains("sha256"), "{}", reply.text);
    assert!(!reply.text.contains("api_key"), "{}", reply.text);
    reply.body["data"].as_array().unwrap().clone()
}

fn find<'a>(keys: &'a [Value], id: &str) -> Option<&'a Value> {
    keys.iter().find(|k| k["id"] == id)
}

fn account_file(flows: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(flows.join("acme/account.json")).unwrap())
        .unwrap()
}

#[test]
fn keys_are_created_listed_and_revoked() {
    let (_dir, flows) = sample_flows();
    let server = Server::start(&flows, Config::default());
    let token = login(&server, &flows, "acme");

    let reply = send(
        "PUT",
        &server.url(KEYS),
        Some(&token),
        Some(&envelope(&json!({"name": "ci bot"}))),
    );
    assert_eq!(reply.status, 201, "{}", reply.text);
    let data = &reply.body["data"];
    let id = data["id"].as_str().unwrap().to_owned();
    let key = data["api_key"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 12, "{id}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    assert_eq!(key.len(), 64);
    assert!(!key.starts_with(&id), "the id is not taken from the key");
    assert_eq!(data["name"], "ci bot");
    assert!(data["created"].as_i64().unwrap() > GREGORIAN_1970 + 1_700_000_000);
    assert_eq!(data["last_used"], Value::Null);
    let stored = std::fs::read_to_string(flows.join("acme/account.json")).unwrap();
    assert!(!stored.contains(&key), "only the hash is stored");

    // Without a name, one is made from the id.
    let reply = send(
        "PUT",
        &server.url(KEYS),
        Some(&token),
        Some("{\"data\": {}}"),
    );
    assert_eq!(reply.status, 201, "{}", reply.text);
    let unnamed = reply.body["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(reply.body["data"]["name"], format!("key-{unnamed}"));

    let keys = listed(&server, &token);
    assert_eq!(keys.len(), 3, "the login's key and two more: {keys:?}");
    let ids: Vec<&str> = keys.iter().map(|k| k["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "in id order");
    let shown = find(&keys, &id).unwrap();
    assert_eq!(shown["name"], "ci bot");
    let mut fields: Vec<&str> = shown
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["created", "id", "last_used", "name"]);

    let reply = send(
        "DELETE",
        &server.url(&format!("{KEYS}/{id}")),
        Some(&token),
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["data"]["id"], id.as_str());
    assert_eq!(reply.body["data"]["_read_only"]["deleted"], true);
    assert!(find(&listed(&server, &token), &id).is_none());
    assert_error(&log_in(&server, &key), 401, "invalid_credentials");

    let again = send(
        "DELETE",
        &server.url(&format!("{KEYS}/{id}")),
        Some(&token),
        None,
    );
    assert_error(&again, 404, "bad_identifier");
    assert_eq!(again.body["data"]["cause"], id.as_str());
}

#[test]
fn a_login_notes_the_keys_last_use_at_most_once_a_minute() {
    let (_dir, flows) = sample_flows();
    let server = Server::start(&flows, Config::default());
    let token = login(&server, &flows, "acme");
    let (id, key) = create(&server, &token, "phone app");
    assert_eq!(
        find(&listed(&server, &token), &id).unwrap()["last_used"],
        Value::Null
    );

    let before = jiff::Timestamp::now().as_second() + GREGORIAN_1970;
    token_of(&log_in(&server, &key));
    let used = find(&listed(&server, &token), &id).unwrap()["last_used"]
        .as_i64()
        .unwrap();
    assert!(used >= before && used <= before + 60, "{used} vs {before}");

    // A use noted 30 s ago is kept; one of 2 minutes ago is renewed.
    let set_last_used = |ago: i64| {
        let mut doc = account_file(&flows);
        let at = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() - ago).unwrap();
        for entry in doc["pvt_api_keys"].as_array_mut().unwrap() {
            if entry["id"] == id.as_str() {
                entry["last_used"] = json!(at.to_string());
            }
        }
        std::fs::write(flows.join("acme/account.json"), doc.to_string()).unwrap();
        at.as_second() + GREGORIAN_1970
    };
    let recent = set_last_used(30);
    token_of(&log_in(&server, &key));
    let shown = find(&listed(&server, &token), &id).unwrap()["last_used"].clone();
    assert_eq!(shown, json!(recent));
    let old = set_last_used(120);
    token_of(&log_in(&server, &key));
    let shown = find(&listed(&server, &token), &id).unwrap()["last_used"]
        .as_i64()
        .unwrap();
    assert!(shown >= old + 119, "renewed: {shown} vs {old}");
}

#[test]
fn the_tokens_of_a_revoked_key_stop_working() {
    let (_dir, flows) = sample_flows();
    let server = Server::start(&flows, Config::default());
    let admin = login(&server, &flows, "acme");
    let (id, key) = create(&server, &admin, "doomed");
    let doomed = token_of(&log_in(&server, &key));
    let second = token_of(&log_in(&server, &key));
    for token in [&doomed, &second] {
        assert_eq!(
            send("GET", &server.url(CALLFLOWS), Some(token), None).status,
            200
        );
    }

    let reply = send(
        "DELETE",
        &server.url(&format!("{KEYS}/{id}")),
        Some(&admin),
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    for token in [&doomed, &second] {
        let reply = send("GET", &server.url(CALLFLOWS), Some(token), None);
        assert_error(&reply, 401, "invalid_credentials");
        let reply = send("GET", &server.url("/v2/reload"), Some(token), None);
        assert_error(&reply, 401, "invalid_credentials");
    }
    // Other keys' tokens are untouched.
    assert_eq!(
        send("GET", &server.url(CALLFLOWS), Some(&admin), None).status,
        200
    );
}

#[test]
fn a_key_revoked_on_disk_ends_its_tokens_once_the_server_reloads() {
    let (_dir, flows) = sample_flows();
    let paths = Paths {
        flows: flows.clone(),
        scripts: Vec::new(),
    };
    let (state, _) = AppState::load(paths, Config::default()).unwrap();
    let reloader = Arc::clone(state.reloader());
    let server = Server::start_state(state);
    let admin = login(&server, &flows, "acme");
    let (id, key) = create(&server, &admin, "cli-revoked");
    let token = token_of(&log_in(&server, &key));
    assert_eq!(
        send("GET", &server.url(CALLFLOWS), Some(&token), None).status,
        200
    );

    // A key made on disk (`callflow api-key create`), unknown to the
    // catalog: its token is confirmed on disk.
    let store = FlowsDir::new(&flows);
    let (made, made_key) = create_key(&store, &acme(), Some("made on disk")).unwrap();
    let made_token = token_of(&log_in(&server, &made_key));
    assert_eq!(
        send("GET", &server.url(CALLFLOWS), Some(&made_token), None).status,
        200
    );

    // What `callflow api-key revoke` does, from another process.
    revoke_key(&store, &acme(), &id).unwrap();
    revoke_key(&store, &acme(), &made.id).unwrap();
    assert_error(&log_in(&server, &key), 401, "invalid_credentials");
    // The watcher's (or SIGHUP's, or POST /v2/reload's) reload.
    reloader.reload("test").unwrap();
    for token in [&token, &made_token] {
        let reply = send("GET", &server.url(CALLFLOWS), Some(token), None);
        assert_error(&reply, 401, "invalid_credentials");
    }
    assert_eq!(
        send("GET", &server.url(CALLFLOWS), Some(&admin), None).status,
        200
    );
}

#[test]
fn delete_token_auth_ends_the_token_it_carries() {
    let (_dir, flows) = sample_flows();
    let server = Server::start(&flows, Config::default());
    let token = login(&server, &flows, "acme");
    let other = login(&server, &flows, "acme");

    let reply = send("DELETE", &server.url("/v2/token_auth"), Some(&token), None);
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_envelope(&reply, "success");
    assert_eq!(reply.body["data"], json!({}));
    assert_eq!(reply.body["auth_token"], "");

    let reply = send("GET", &server.url(CALLFLOWS), Some(&token), None);
    assert_error(&reply, 401, "invalid_credentials");
    let again = send("DELETE", &server.url("/v2/token_auth"), Some(&token), None);
    assert_error(&again, 401, "invalid_credentials");
    let none = send("DELETE", &server.url("/v2/token_auth"), None, None);
    assert_error(&none, 401, "invalid_credentials");
    // Only that token: the key and its other tokens still work.
    assert_eq!(
        send("GET", &server.url(CALLFLOWS), Some(&other), None).status,
        200
    );
}

#[test]
fn another_accounts_keys_are_forbidden() {
    let (_dir, flows) = sample_flows();
    add_other_account(&flows);
    let server = Server::start(&flows, Config::default());
    let acme_token = login(&server, &flows, "acme");
    let (id, _) = create(&server, &acme_token, "acme's");
    let before = account_file(&flows);
    let other = login(&server, &flows, "other");

    let list = send("GET", &server.url(KEYS), Some(&other), None);
    assert_error(&list, 403, "forbidden");
    let create = send(
        "PUT",
        &server.url(KEYS),
        Some(&other),
        Some(&envelope(&json!({"name": "intruder"}))),
    );
    assert_error(&create, 403, "forbidden");
    let revoke = send(
        "DELETE",
        &server.url(&format!("{KEYS}/{id}")),
        Some(&other),
        None,
    );
    assert_error(&revoke, 403, "forbidden");
    assert_eq!(account_file(&flows), before);
    let own = send(
        "GET",
        &server.url("/v2/accounts/other/api_keys"),
        Some(&other),
        None,
    );
    assert_eq!(own.status, 200, "{}", own.text);
    assert_eq!(
        own.body["data"].as_array().unwrap().len(),
        1,
        "only its own"
    );
}

#[test]
fn bad_names_and_ids_get_clear_errors() {
    let (_dir, flows) = sample_flows();
    let server = Server::start(&flows, Config::default());
    let token = login(&server, &flows, "acme");
    let long = "x".repeat(129);
    for (name, code) in [
        (json!(""), "minLength"),
        (json!("   "), "minLength"),
        (json!(long), "maxLength"),
        (json!("tab\there"), "type"),
        (json!(5), "type"),
    ] {
        let reply = send(
            "PUT",
            &server.url(KEYS),
            Some(&token),
            Some(&envelope(&json!({ "name": name }))),
        );
        assert_error(&reply, 400, "validation error");
        let message = reply.body["data"]["name"][code]["message"].as_str();
        assert!(
            message.is_some_and(|m| m.contains("name")),
            "{}",
            reply.text
        );
    }
    let reply = send(
        "PUT",
        &server.url(KEYS),
        Some(&token),
        Some("{\"data\": 5}"),
    );
    assert_error(&reply, 400, "invalid request");
    let reply = send("PUT", &server.url(KEYS), Some(&token), Some("nope"));
    assert_error(&reply, 400, "invalid request");
    assert_eq!(listed(&server, &token).len(), 1, "nothing was created");

    for id in ["000000000000", "not-a-key", "x%20y"] {
        let reply = send(
            "DELETE",
            &server.url(&format!("{KEYS}/{id}")),
            Some(&token),
            None,
        );
        assert_error(&reply, 404, "bad_identifier");
        assert!(reply.body["data"]["cause"].is_string(), "{}", reply.text);
    }
    let reply = send(
        "GET",
        &server.url("/v2/accounts/nope/api_keys"),
        Some(&token),
        None,
    );
    assert_error(&reply, 403, "forbidden");
    let reply = send("GET", &server.url(KEYS), None, None);
    assert_error(&reply, 401, "invalid_credentials");
}

#[test]
fn keys_of_older_account_files_are_migrated_and_other_keys_kept() {
    let (_dir, flows) = sample_flows();
    let key = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let hash = {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(key.as_bytes());
        digest.iter().fold(String::new(), |mut out, b| {
            std::fmt::Write::write_fmt(&mut out, format_args!("{b:02x}")).unwrap();
            out
        })
    };
    let mut doc = account_file(&flows);
    doc["custom"] = json!({"kept": [1, 2, 3]});
    doc["pvt_api_keys"] = json!([{"sha256": hash, "created": "2024-05-01T12:00:00.25Z"}]);
    std::fs::write(flows.join("acme/account.json"), doc.to_string()).unwrap();
    let server = Server::start(&flows, Config::default());

    let token = token_of(&log_in(&server, key));
    assert_eq!(
        send("GET", &server.url(CALLFLOWS), Some(&token), None).status,
        200
    );
    let keys = listed(&server, &token);
    assert_eq!(keys.len(), 1, "{keys:?}");
    let id = keys[0]["id"].as_str().unwrap();
    assert_eq!(keys[0]["name"], format!("key-{id}"));
    let created = jiff::Timestamp::from_second(1_714_564_800).unwrap();
    assert_eq!(keys[0]["created"], created.as_second() + GREGORIAN_1970);
    assert!(keys[0]["last_used"].is_i64());

    let stored = account_file(&flows);
    let entry = &stored["pvt_api_keys"][0];
    assert_eq!(entry["id"], id);
    assert_eq!(entry["sha256"], hash.as_str());
    let mut others = stored.as_object().unwrap().clone();
    others.remove("pvt_api_keys");
    let mut expected = doc.as_object().unwrap().clone();
    expected.remove("pvt_api_keys");
    assert_eq!(others, expected, "every other key as it was");
}
