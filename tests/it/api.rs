//! The REST API on a real server (an ephemeral loopback port) with a real
//! HTTP client: the seed's six calls, every error, paging and filters,
//! durability across restarts, concurrent writes, and the OpenAPI
//! description against the router.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use callflow::api::{self, AppState, Config, ROUTES, create_api_key};
use callflow::ids::AccountId;
use callflow::live;
use callflow::reload::Paths;
use callflow::store::FlowsDir;

use crate::support::{callflow, copy_tree, render_output, root};

/// A server running on its own runtime thread; stops (gracefully) on drop.
pub(crate) struct Server {
    addr: SocketAddr,
    /// Where SIP listens, when the server answers real calls.
    pub(crate) sip: Option<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub(crate) fn start(flows: &Path, config: Config) -> Self {
        Self::start_with_scripts(flows, Vec::new(), config)
    }

    pub(crate) fn start_with_scripts(flows: &Path, scripts: Vec<PathBuf>, config: Config) -> Self {
        Self::launch(flows, scripts, config, None)
    }

    /// With real calls, as `serve --sip 127.0.0.1:0 --traces <traces>`.
    pub(crate) fn start_live(flows: &Path, traces: &Path, cache: &Path) -> Self {
        let options = live::Options {
            sip: callflow::sip::Config {
                listen: "127.0.0.1:0".parse().unwrap(),
                public_ip: None,
                trunks: Vec::new(),
                user_agent: "callflow-test".to_owned(),
                digest: vec![
                    callflow::sip::digest::Algorithm::Md5,
                    callflow::sip::digest::Algorithm::Sha256,
                ],
                session_expires: 1800,
                min_session_expires: 90,
            },
            rtp_ports: "40000-40099".parse().unwrap(),
            traces: traces.to_path_buf(),
            cache: cache.to_path_buf(),
            prompts: Vec::new(),
            workers: 1,
            limits: callflow::limits::Limits::default(),
            allow_private_http: false,
        };
        Self::launch(flows, Vec::new(), Config::default(), Some(options))
    }

    fn launch(
        flows: &Path,
        scripts: Vec<PathBuf>,
        config: Config,
        live: Option<live::Options>,
    ) -> Self {
        let paths = Paths {
            flows: flows.to_path_buf(),
            scripts,
        };
        let (state, _) = AppState::load(paths, config).unwrap();
        Self::launch_state(state, live)
    }

    /// A server on a state made by the test (its own reloader).
    pub(crate) fn start_state(state: AppState) -> Self {
        Self::launch_state(state, None)
    }

    fn launch_state(state: AppState, live: Option<live::Options>) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, started) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let state = Arc::new(state);
                let live = match live {
                    Some(options) => {
                        let live = live::start(options, Arc::clone(state.reloader()))
                            .await
                            .unwrap();
                        state.set_live(&live);
                        Some(live)
                    }
                    None => None,
                };
                ready.send(live.as_ref().map(live::Live::sip_addr)).unwrap();
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                api::serve(listener, state, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        let sip = started.recv().expect("the server starts");
        Self {
            addr,
            sip,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Where the API listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

/// An HTTP response: status and parsed body (or the raw text).
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Value,
    pub(crate) text: String,
    pub(crate) headers: BTreeMap<String, String>,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

pub(crate) fn send(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> Reply {
    send_with(method, url, token, body, &[])
}

fn send_with(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    if let Some(token) = token {
        builder = builder.header("X-Auth-Token", token);
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(body.unwrap_or_default().as_bytes().to_vec())
        .unwrap();
    let mut response = agent().run(request).unwrap();
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    let text = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        body,
        text,
        headers,
    }
}

/// A copy of the sample flows in a temporary directory.
pub(crate) fn sample_flows() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    copy_tree(&root().join("flows"), &flows);
    (dir, flows)
}

/// A second, empty account `other` (for 403s and numbers across accounts).
pub(crate) fn add_other_account(flows: &Path) {
    FlowsDir::new(flows)
        .create_account(&AccountId::new("other").unwrap(), &serde_json::Map::new())
        .unwrap();
}

/// An auth token for `account`, through an API key and `PUT /v2/api_auth`.
pub(crate) fn login(server: &Server, flows: &Path, account: &str) -> String {
    let key = create_api_key(&FlowsDir::new(flows), &AccountId::new(account).unwrap()).unwrap();
    let reply = send(
        "PUT",
        &server.url("/v2/api_auth"),
        None,
        Some(&json!({"data": {"api_key": key}}).to_string()),
    );
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.body["data"]["account_id"], account);
    reply.body["auth_token"].as_str().unwrap().to_owned()
}

pub(crate) fn envelope(data: &Value) -> String {
    json!({ "data": data }).to_string()
}

const CALLFLOWS: &str = "/v2/accounts/acme/callflows";

pub(crate) fn assert_envelope(reply: &Reply, status: &str) {
    for key in ["auth_token", "request_id", "status", "timestamp", "version"] {
        assert!(reply.body.get(key).is_some(), "{key} in {}", reply.text);
    }
    assert_eq!(reply.body["status"], status, "{}", reply.text);
}

pub(crate) fn assert_error(reply: &Reply, status: u16, message: &str) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_envelope(reply, "error");
    assert_eq!(reply.body["error"], status.to_string(), "{}", reply.text);
    assert_eq!(reply.body["message"], message, "{}", reply.text);
}

#[test]
fn the_six_calls_of_the_seed_round_trip() {
    let (_dir, flows) = sample_flows();
    let server = Server::start(&flows, Config::default());
    let token = login(&server, &flows, "acme");
    let token = Some(token.as_str());

    // PUT: create.
    let doc = json!({"name": "Lobby", "numbers": ["2500"], "flow": {"module": "play", "data": {"id": "welcome"}}});
    let created = send("PUT", &server.url(CALLFLOWS), token, Some(&envelope(&doc)));
    assert_eq!(created.status, 201, "{}", created.text);
    assert_envelope(&created, "success");
    let id = created.body["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        created.body["data"]["patterns"],
        json!([]),
        "defaults written"
    );
    let revision = created.body["revision"].as_str().unwrap().to_owned();
    assert_eq!(created.headers["etag"], format!("\"{revision}\""));

    // The new callflow routes at once: in the binary (reading the files) and
    // in a call simulated by the server.
    let route = callflow(
        &root(),
        &["route", "--flows", flows.to_str().unwrap(), "2500"],
    );
    assert!(
        String::from_utf8_lossy(&route.stdout).contains(&id),
        "{}",
        render_output(&route)
    );
    let simulated = send(
        "POST",
        &server.url("/v2/accounts/acme/simulate"),
        token,
        Some(&envelope(&json!({"to": "2500"}))),
    );
    assert_eq!(simulated.status, 200, "{}", simulated.text);
    let events = simulated.body["data"]["events"].as_array().unwrap();
    assert_eq!(events[0]["callflow_id"], id.as_str());
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "play" && e["media"] == "welcome")
    );

    fetch_list_replace_patch_delete(&server, &flows, token, &id, &revision);
}

fn fetch_list_replace_patch_delete(
    server: &Server,
    flows: &Path,
    token: Option<&str>,
    id: &str,
    revision: &str,
) {
    // GET one: the document, id added, private fields hidden.
    let url = server.url(&format!("{CALLFLOWS}/{id}"));
    let fetched = send("GET", &url, token, None);
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.body["data"]["id"], id);
    assert_eq!(fetched.body["data"]["name"], "Lobby");
    assert_eq!(fetched.body["revision"], revision);
    let keys: Vec<&String> = fetched.body["data"].as_object().unwrap().keys().collect();
    assert!(
        keys.iter()
            .all(|k| !k.starts_with('_') && !k.starts_with("pvt_")),
        "{keys:?}"
    );
    let on_disk: Value = serde_json::from_str(
        &std::fs::read_to_string(flows.join(format!("acme/callflows/{id}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(on_disk["pvt_type"], "callflow");

    // GET list: summary items.
    let list = send("GET", &server.url(CALLFLOWS), token, None);
    assert_eq!(list.status, 200);
    assert_eq!(list.body["revision"], "automatic");
    let item = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(
        item,
        json!({"id": id, "name": "Lobby", "numbers": ["2500"], "patterns": [], "featurecode": false, "modules": ["play"], "flags": []})
    );

    // POST: replace (numbers normalized on save).
    let replaced = send(
        "POST",
        &url,
        token,
        Some(&envelope(
            &json!({"name": "Lobby 2", "numbers": ["4155550123"], "flow": {"module": "answer"}}),
        )),
    );
    assert_eq!(replaced.status, 200, "{}", replaced.text);
    assert_eq!(replaced.body["data"]["numbers"], json!(["+14155550123"]));
    assert_ne!(replaced.body["revision"], revision);

    // PATCH: merge; null deletes, arrays replace, objects merge.
    let patched = send(
        "PATCH",
        &url,
        token,
        Some(&envelope(
            &json!({"name": null, "flags": ["x"], "flow": {"data": {"k": 1}}}),
        )),
    );
    assert_eq!(patched.status, 200, "{}", patched.text);
    let data = &patched.body["data"];
    assert!(data.get("name").is_none());
    assert_eq!(data["flags"], json!(["x"]));
    assert_eq!(data["flow"], json!({"module": "answer", "data": {"k": 1}}));
    assert_eq!(data["numbers"], json!(["+14155550123"]));

    // DELETE: soft delete.
    let deleted = send("DELETE", &url, token, None);
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    assert_eq!(deleted.body["data"]["_read_only"], json!({"deleted": true}));
    assert_error(&send("GET", &url, token, None), 404, "bad_identifier");
    let list = send("GET", &server.url(CALLFLOWS), token, None);
    assert!(!list.text.contains(id));
    let on_disk: Value = serde_json::from_str(
        &std::fs::read_to_string(flows.join(format!("acme/callflows/{id}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(on_disk["pvt_deleted"], true, "kept on disk, recoverable");
    let route = callflow(
        &root(),
        &["route", "--flows", flows.to_str().unwrap(), "4155550123"],
    );
    assert!(!String::from_utf8_lossy(&route.stdout).contains(id));
    // The flows directory still checks clean.
    let check = callflow(&root(), &["check", "--flows", flows.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(0), "{}", render_output(&check));
}

#[test]
fn auth_and_routing_errors_have_kazoos_shape() {
    let (_dir, flows) = sample_flows();
    // A second account, for the 403.
    add_other_account(&flows);
    let server = Server::start(&flows, Config::default());
    let raw = login(&server, &flows, "acme");
    let token = Some(raw.as_str());
    let list = server.url(CALLFLOWS);

    // 401: no token, a wrong one, a bad API key.
    assert_error(&send("GET", &list, None, None), 401, "invalid_credentials");
    assert_error(
        &send("GET", &list, Some("nope"), None),
        401,
        "invalid_credentials",
    );
    let bad_key = send(
        "PUT",
        &server.url("/v2/api_auth"),
        None,
        Some(&envelope(&json!({"api_key": "x"}))),
    );
    assert_error(&bad_key, 401, "invalid_credentials");
    // Bearer works as well as X-Auth-Token.
    let bearer = send_with(
        "GET",
        &list,
        None,
        None,
        &[("Authorization", &format!("Bearer {raw}"))],
    );
    assert_eq!(bearer.status, 200);
    // 403: another account's resources.
    assert_error(
        &send(
            "GET",
            &server.url("/v2/accounts/other/callflows"),
            token,
            None,
        ),
        403,
        "forbidden",
    );
    // 404: ids that cannot exist, unknown callflows, unknown routes.
    assert_error(
        &send(
            "GET",
            &server.url("/v2/accounts/..%2F..%2Fetc/callflows"),
            token,
            None,
        ),
        404,
        "bad_identifier",
    );
    assert_error(
        &send(
            "GET",
            &server.url(&format!("{CALLFLOWS}/nope")),
            token,
            None,
        ),
        404,
        "bad_identifier",
    );
    assert_error(
        &send("GET", &server.url(&format!("{CALLFLOWS}/a.b")), token, None),
        404,
        "bad_identifier",
    );
    assert_error(
        &send("GET", &server.url("/v2/nothing"), token, None),
        404,
        "not_found",
    );
    // 405: other methods.
    assert_error(
        &send("TRACE", &list, token, None),
        405,
        "method_not_allowed",
    );
    assert_error(
        &send("DELETE", &list, token, None),
        405,
        "method_not_allowed",
    );
}

#[test]
fn malformed_requests_have_kazoos_shape() {
    let (_dir, flows) = sample_flows();
    let server = Server::start(&flows, Config::default());
    let token = login(&server, &flows, "acme");
    let token = Some(token.as_str());
    let list = server.url(CALLFLOWS);
    // 400: malformed JSON (with its position), not an envelope.
    let malformed = send("PUT", &list, token, Some("{\"data\": {"));
    assert_error(&malformed, 400, "invalid request");
    assert!(
        malformed.body["data"]["message"]
            .as_str()
            .unwrap()
            .contains("line 1, column 10"),
        "{}",
        malformed.text
    );
    assert_error(
        &send("PUT", &list, token, Some("[1]")),
        400,
        "invalid request",
    );
    assert_error(
        &send("PUT", &list, token, Some("{\"data\": 3}")),
        400,
        "invalid request",
    );
    assert_error(&send("PUT", &list, token, None), 400, "invalid request");
    // 413: over 1 MiB.
    let big = envelope(&json!({"numbers": ["1"], "name": "x".repeat(1 << 20)}));
    assert_error(
        &send("PUT", &list, token, Some(&big)),
        413,
        "request_entity_too_large",
    );
}

#[test]
fn validation_errors_have_kazoos_shape() {
    let (_dir, flows) = sample_flows();
    let server = Server::start(&flows, Config::default());
    let token = login(&server, &flows, "acme");
    let token = Some(token.as_str());
    let list = server.url(CALLFLOWS);
    // 400 validation errors, in Kazoo's shape.
    let invalid = |doc: Value| {
        let reply = send("PUT", &list, token, Some(&envelope(&doc)));
        assert_error(&reply, 400, "validation error");
        reply.body["data"].clone()
    };
    assert_eq!(
        invalid(json!({"numbers": ["1000"]})),
        json!({"numbers": {"unique": {"message": "Number 1000 exists in callflow main Main number", "cause": "1000"}}})
    );
    assert_eq!(
        invalid(json!({"name": "x"})),
        json!({"numbers": {"required": {"message": "Callflows must be assigned at least one number or pattern"}}})
    );
    let typed = invalid(json!({"numbers": "1000"}));
    assert!(typed["numbers"]["type"].is_object(), "{typed}");
    let unknown = invalid(json!({"numbers": ["7777"], "flow": {"module": "nope"}}));
    assert_eq!(
        unknown["flow.module"]["error"]["message"],
        "unable to find callflow schema for module nope (no script provides it)"
    );
    let schema = invalid(
        json!({"numbers": ["7777"], "flow": {"module": "ring_group", "data": {"endpoints": ["dev_bob"]}}}),
    );
    assert!(
        schema["flow.data.endpoints.0"]["type"].is_object(),
        "{schema}"
    );
    let metaflow = invalid(json!({"numbers": ["7777"], "metaflow": {
        "listen_on": "nobody",
        "numbers": {"2": {"module": "transfer", "data": {"transfer_type": "sideways"}}}
    }}));
    assert!(
        metaflow["metaflow.listen_on"]["enum"].is_object(),
        "{metaflow}"
    );
    assert!(
        metaflow["metaflow.numbers.2.data.transfer_type"]["enum"].is_object(),
        "{metaflow}"
    );
    let pattern = invalid(json!({"patterns": ["^\\*97([0-9]*)$"]}));
    assert!(
        pattern["patterns"]["unique"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Pattern ^\\*97")
    );
}

#[test]
fn an_e164_number_of_another_account_is_refused() {
    let (_dir, flows) = sample_flows();
    add_other_account(&flows);
    let server = Server::start(&flows, Config::default());
    let token = login(&server, &flows, "other");
    let list = server.url("/v2/accounts/other/callflows");
    // acme's main number, written as a trunk would dial it: refused, as
    // `callflow check` would report it (a trunk call could reach either).
    let doc = json!({"numbers": ["4158867900", "1000"]});
    let reply = send("PUT", &list, Some(&token), Some(&envelope(&doc)));
    assert_error(&reply, 400, "validation error");
    assert_eq!(
        reply.body["data"],
        json!({"numbers": {"number_in_other_account": {
            // Which account holds it is not `other`'s business.
            "message": "+14158867900 is also claimed by another account: a call from a trunk could reach either",
            "cause": "+14158867900"
        }}}),
        "{}",
        reply.text
    );
    // Extensions are the account's own: another account's 1000 is fine.
    let own = send(
        "PUT",
        &list,
        Some(&token),
        Some(&envelope(&json!({"numbers": ["1000", "+14158867999"]}))),
    );
    assert_eq!(own.status, 201, "{}", own.text);
    // Two accounts racing for one number: exactly one gets it.
    let acme = login(&server, &flows, "acme");
    for round in 0..10 {
        let racers: Vec<_> = [("acme", acme.clone()), ("other", token.clone())]
            .into_iter()
            .map(|(account, token)| {
                let url = server.url(&format!("/v2/accounts/{account}/callflows"));
                std::thread::spawn(move || {
                    let doc = json!({"numbers": [format!("+1415555{round:04}")]});
                    send("PUT", &url, Some(&token), Some(&envelope(&doc))).status
                })
            })
            .collect();
        let mut statuses: Vec<u16> = racers.into_iter().map(|t| t.join().unwrap()).collect();
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 400], "round {round}");
    }
    let check = callflow(&root(), &["check", "--flows", flows.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(0), "{}", render_output(&check));
}

/// A realm is one account's: the SIP directory finds devices by realm and
/// user name, so a second account with it could take the first's logins.
/// A PATCH taking another account's realm (its `realm`, or its id when it
/// has none; in any case, trimmed) is refused as Kazoo refuses it, and
/// nothing is written.
#[test]
fn a_realm_of_another_account_is_refused() {
    let (_dir, flows) = sample_flows();
    add_other_account(&flows);
    let server = Server::start(&flows, Config::default());
    let other = login(&server, &flows, "other");
    let acme = login(&server, &flows, "acme");
    let other_file = flows.join("other/account.json");
    let before = std::fs::read(&other_file).unwrap();
    let patch = |account: &str, token: &str, body: &Value| {
        let url = server.url(&format!("/v2/accounts/{account}"));
        send("PATCH", &url, Some(token), Some(&envelope(body)))
    };
    let reply = patch("other", &other, &json!({"realm": " ACME.sip.example.com "}));
    assert_error(&reply, 400, "validation error");
    assert_eq!(
        reply.body["data"],
        json!({"realm": {"unique": {
            "message": "realm ACME.sip.example.com is already in use",
            "cause": "ACME.sip.example.com"
        }}}),
        "{}",
        reply.text
    );
    assert_eq!(
        std::fs::read(&other_file).unwrap(),
        before,
        "nothing written"
    );
    // `other` has no realm: its id is its realm.
    let reply = patch("acme", &acme, &json!({"realm": "Other"}));
    assert_error(&reply, 400, "validation error");
    assert_eq!(reply.body["data"]["realm"]["unique"]["cause"], "Other");
    // A free realm is taken; an edit keeping the realm is not checked.
    let reply = patch("other", &other, &json!({"realm": "pbx.other.example"}));
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reply = patch("acme", &acme, &json!({"name": "Acme Corp."}));
    assert_eq!(reply.status, 200, "{}", reply.text);
    // Two accounts racing for one realm: exactly one gets it.
    for round in 0..5 {
        let racers: Vec<_> = [("acme", acme.clone()), ("other", other.clone())]
            .into_iter()
            .map(|(account, token)| {
                let url = server.url(&format!("/v2/accounts/{account}"));
                std::thread::spawn(move || {
                    let body = envelope(&json!({"realm": format!("r{round}.example")}));
                    send("PATCH", &url, Some(&token), Some(&body)).status
                })
            })
            .collect();
        let mut statuses: Vec<u16> = racers.into_iter().map(|t| t.join().unwrap()).collect();
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 400], "round {round}");
    }
    let check = callflow(&root(), &["check", "--flows", flows.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(0), "{}", render_output(&check));
}

#[test]
fn stale_revisions_conflict_and_tokens_expire() {
    let (_dir, flows) = sample_flows();
    let server = Server::start(&flows, Config::default());
    let token = login(&server, &flows, "acme");
    let token = Some(token.as_str());
    let list = server.url(CALLFLOWS);
    // 409: a stale revision, in If-Match or in `_rev`.
    let created = send(
        "PUT",
        &list,
        token,
        Some(&envelope(&json!({"numbers": ["2600"]}))),
    );
    assert_eq!(created.status, 201);
    let id = created.body["data"]["id"].as_str().unwrap();
    let rev = created.body["revision"].as_str().unwrap();
    let url = server.url(&format!("{CALLFLOWS}/{id}"));
    let stale = send_with(
        "POST",
        &url,
        token,
        Some(&envelope(&json!({"numbers": ["2601"]}))),
        &[("If-Match", "\"0000\"")],
    );
    assert_error(&stale, 409, "datastore_conflict");
    let stale = send(
        "PATCH",
        &url,
        token,
        Some(&envelope(&json!({"name": "x", "_rev": "0000"}))),
    );
    assert_error(&stale, 409, "datastore_conflict");
    let fresh = send_with(
        "PATCH",
        &url,
        token,
        Some(&envelope(&json!({"name": "y"}))),
        &[("If-Match", &format!("\"{rev}\""))],
    );
    assert_eq!(fresh.status, 200, "{}", fresh.text);
    // The failed requests changed nothing.
    assert_eq!(
        send("GET", &url, token, None).body["data"]["numbers"],
        json!(["2600"])
    );

    // An expired token.
    drop(server);
    let server = Server::start(
        &flows,
        Config {
            token_ttl: Duration::ZERO,
            ..Config::default()
        },
    );
    let expired = login(&server, &flows, "acme");
    assert_error(
        &send("GET", &server.url(CALLFLOWS), Some(&expired), None),
        401,
        "invalid_credentials",
    );
}

#[test]
fn listing_pages_and_filters() {
    let (_dir, flows) = sample_flows();
    let server = Server::start(&flows, Config::default());
    let token = login(&server, &flows, "acme");
    let token = Some(token.as_str());
    let all = send(
        "GET",
        &server.url(&format!("{CALLFLOWS}?paginate=false")),
        token,
        None,
    );
    assert!(all.body.get("page_size").is_none() && all.body.get("next_start_key").is_none());
    let ids: Vec<String> = all.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 22);
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "ordered by id");

    // Pages of 5, following next_start_key.
    let mut paged = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let query = match &next {
            Some(key) => format!("{CALLFLOWS}?page_size=5&start_key={key}"),
            None => format!("{CALLFLOWS}?page_size=5"),
        };
        let page = send("GET", &server.url(&query), token, None);
        assert_eq!(page.status, 200, "{}", page.text);
        let items = page.body["data"].as_array().unwrap();
        assert_eq!(page.body["page_size"], items.len());
        paged.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_owned()));
        match page.body.get("next_start_key").and_then(Value::as_str) {
            Some(key) => next = Some(key.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, ids);

    // Filters.
    let names = |query: &str| -> Vec<String> {
        let reply = send(
            "GET",
            &server.url(&format!("{CALLFLOWS}?paginate=false&{query}")),
            token,
            None,
        );
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names("filter_name=Sales"), ["sales"]);
    assert_eq!(names("filter_numbers=1001"), ["ext-1001"]);
    let feature_codes = names("has_key=featurecode");
    assert!(
        !feature_codes.is_empty() && feature_codes.iter().all(|id| id.starts_with("fc-")),
        "{feature_codes:?}"
    );
    let plain = names("key_missing=featurecode");
    assert_eq!(plain.len() + feature_codes.len(), 22);
    let bad = send(
        "GET",
        &server.url(&format!("{CALLFLOWS}?page_size=0")),
        token,
        None,
    );
    assert_error(&bad, 400, "invalid request");
    let bad = send(
        "GET",
        &server.url(&format!("{CALLFLOWS}?start_key=%%%")),
        token,
        None,
    );
    assert_eq!(bad.status, 400, "{}", bad.text);
}

#[test]
fn a_restart_keeps_every_acknowledged_write() {
    let (_dir, flows) = sample_flows();
    let mut acknowledged = BTreeMap::new();
    {
        let server = Server::start(&flows, Config::default());
        let token = login(&server, &flows, "acme");
        for n in 0..20 {
            let reply = send(
                "PUT",
                &server.url(CALLFLOWS),
                Some(&token),
                Some(&envelope(
                    &json!({"name": format!("n{n}"), "numbers": [format!("30{n:02}")]}),
                )),
            );
            assert_eq!(reply.status, 201, "{}", reply.text);
            acknowledged.insert(
                reply.body["data"]["id"].as_str().unwrap().to_owned(),
                reply.body["revision"].as_str().unwrap().to_owned(),
            );
        }
    }
    let server = Server::start(&flows, Config::default());
    let token = login(&server, &flows, "acme");
    for (id, revision) in &acknowledged {
        let reply = send(
            "GET",
            &server.url(&format!("{CALLFLOWS}/{id}")),
            Some(&token),
            None,
        );
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["revision"], revision.as_str());
    }
}

#[test]
fn concurrent_writes_lose_nothing_and_claim_a_number_once() {
    let (_dir, flows) = sample_flows();
    let server = Server::start(&flows, Config::default());
    let token = login(&server, &flows, "acme");
    let base = server.url(CALLFLOWS);

    // 8 writers, each creating 10 callflows and patching each once.
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (base, token) = (base.clone(), token.clone());
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for n in 0..10 {
                    let doc =
                        json!({"name": format!("w{w}-{n}"), "numbers": [format!("4{w}{n:02}")]});
                    let reply = send("PUT", &base, Some(&token), Some(&envelope(&doc)));
                    assert_eq!(reply.status, 201, "{}", reply.text);
                    let id = reply.body["data"]["id"].as_str().unwrap().to_owned();
                    let patch = json!({"flags": [format!("f{w}{n}")]});
                    let reply = send(
                        "PATCH",
                        &format!("{base}/{id}"),
                        Some(&token),
                        Some(&envelope(&patch)),
                    );
                    assert_eq!(reply.status, 200, "{}", reply.text);
                    acked.push((
                        id,
                        reply.body["revision"].as_str().unwrap().to_owned(),
                        format!("f{w}{n}"),
                    ));
                }
                acked
            })
        })
        .collect();
    // Meanwhile, pairs of clients race for the same number.
    let mut race_winners = Vec::new();
    for round in 0..10 {
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let (base, token) = (base.clone(), token.clone());
                std::thread::spawn(move || {
                    let doc = json!({"numbers": [format!("59{round:02}")]});
                    send("PUT", &base, Some(&token), Some(&envelope(&doc)))
                })
            })
            .collect();
        let replies: Vec<Reply> = racers.into_iter().map(|t| t.join().unwrap()).collect();
        let statuses: BTreeSet<u16> = replies.iter().map(|r| r.status).collect();
        assert_eq!(statuses, BTreeSet::from([201, 400]), "{replies:?}");
        let loser = replies.iter().find(|r| r.status == 400).unwrap();
        assert!(
            loser.body["data"]["numbers"]["unique"].is_object(),
            "{}",
            loser.text
        );
        race_winners
            .push(replies.iter().find(|r| r.status == 201).unwrap().body["data"]["id"].clone());
    }
    let acked: Vec<(String, String, String)> = writers
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(acked.len(), 80);

    // Every acknowledged document is there, as acknowledged; no temporary
    // file is left.
    for (id, revision, flag) in &acked {
        let reply = send("GET", &format!("{base}/{id}"), Some(&token), None);
        assert_eq!(reply.body["revision"], revision.as_str());
        assert_eq!(reply.body["data"]["flags"], json!([flag]));
    }
    let names: Vec<String> = std::fs::read_dir(flows.join("acme/callflows"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    assert_eq!(names.len(), 22 + 80 + 10);
    let check = callflow(&root(), &["check", "--flows", flows.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(0), "{}", render_output(&check));
    assert_eq!(race_winners.len(), 10);
}

#[test]
fn the_openapi_description_matches_the_router() {
    let spec: Value = serde_json::from_str(api::OPENAPI).unwrap();
    let mut described = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if method != "parameters" {
                described.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(described, routed, "openapi.json vs api::ROUTES");

    // Every route answers on the real router (neither "no such route" nor
    // "method not allowed"), and the served description is the file.
    let (_dir, flows) = sample_flows();
    let server = Server::start(&flows, Config::default());
    let token = login(&server, &flows, "acme");
    for (method, path) in ROUTES {
        // Every other parameter names a document or a call that may not
        // exist: a 404 `bad_identifier` still proves the route.
        let path = path.replace("{account_id}", "acme");
        let path = path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "main"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let reply = send(
            method,
            &server.url(&path),
            Some(&token),
            Some("{\"data\": {}}"),
        );
        assert!(
            // `not_supported` is a route's own honest 405 (device sync).
            (reply.status != 405 || reply.body["message"] == "not_supported")
                && reply.body["message"] != "not_found",
            "{method} {path}: {}",
            reply.text
        );
    }
    let document = send("GET", &server.url("/v2/openapi.json"), None, None);
    assert_eq!(document.body, spec);
}

#[test]
fn graph_health_and_simulate() {
    let (_dir, flows) = sample_flows();
    let server = Server::start(&flows, Config::default());
    let token = login(&server, &flows, "acme");
    let token = Some(token.as_str());
    let dot = send(
        "GET",
        &server.url(&format!("{CALLFLOWS}/main/graph")),
        token,
        None,
    );
    assert_eq!(dot.status, 200);
    assert!(dot.headers["content-type"].starts_with("text/vnd.graphviz"));
    assert!(
        dot.text.contains("n0 -> n1 [label=\"business-hours\"];"),
        "{}",
        dot.text
    );
    let mermaid = send(
        "GET",
        &server.url(&format!("{CALLFLOWS}/main/graph?format=mermaid")),
        token,
        None,
    );
    assert!(
        mermaid.text.contains("n0 -->|\"_\"| n2"),
        "{}",
        mermaid.text
    );
    let bad = send(
        "GET",
        &server.url(&format!("{CALLFLOWS}/main/graph?format=png")),
        token,
        None,
    );
    assert_error(&bad, 400, "invalid request");

    // Kazoo's metadata: the documents the flow names.
    let main = send(
        "GET",
        &server.url(&format!("{CALLFLOWS}/main")),
        token,
        None,
    );
    assert_eq!(
        main.body["data"]["metadata"],
        json!({
            "business-hours": {"name": "Business hours", "pvt_type": "temporal_rule"},
            "main-menu": {"name": "Main menu", "numbers": ["1100"], "pvt_type": "callflow"},
            "after-hours": {"name": "After hours", "pvt_type": "media"},
            "vm-main": {"name": "Acme main mailbox", "pvt_type": "vmbox"}
        }),
        "{}",
        main.text
    );

    let health = send("GET", &server.url("/v2/health"), None, None);
    assert_eq!(health.status, 200);
    assert_eq!(health.body["data"]["status"], "ok");

    // The scenario's account is the path's; flows and scripts are the server's.
    let simulate = server.url("/v2/accounts/acme/simulate");
    let sunday = json!({"to": "1000", "start": "2026-12-06T03:00", "caller": [{"at_ms": 30000, "hangup": true}]});
    let reply = send("POST", &simulate, token, Some(&envelope(&sunday)));
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["data"]["end"], "caller_hangup");
    assert!(reply.text.contains("after-hours"), "{}", reply.text);
    for bad in [
        json!({"to": "1", "flows": "/etc"}),
        json!({"to": "1", "account": "other"}),
        json!({"to": ""}),
    ] {
        assert_error(
            &send("POST", &simulate, token, Some(&envelope(&bad))),
            400,
            "invalid request",
        );
    }
}

#[test]
fn the_binary_manages_accounts_keys_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    std::fs::create_dir(&flows).unwrap();
    let flows_arg = flows.to_str().unwrap();
    let created = callflow(
        dir.path(),
        &[
            "account",
            "create",
            "Beta Corp",
            "--id",
            "beta",
            "--timezone",
            "Europe/Paris",
            "--flows",
            flows_arg,
        ],
    );
    assert_eq!(
        created.status.code(),
        Some(0),
        "{}",
        render_output(&created)
    );
    assert_eq!(String::from_utf8_lossy(&created.stdout).trim(), "beta");
    let again = callflow(
        dir.path(),
        &[
            "account", "create", "Beta", "--id", "beta", "--flows", flows_arg,
        ],
    );
    assert_eq!(again.status.code(), Some(2), "{}", render_output(&again));
    let bad = callflow(
        dir.path(),
        &[
            "account", "create", "X", "--id", "../x", "--flows", flows_arg,
        ],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", render_output(&bad));
    let generated = callflow(
        dir.path(),
        &["account", "create", "Gamma", "--flows", flows_arg],
    );
    let gamma = String::from_utf8_lossy(&generated.stdout).trim().to_owned();
    assert_eq!(gamma.len(), 32);

    let key = callflow(
        dir.path(),
        &[
            "api-key",
            "create",
            "--account",
            "beta",
            "--flows",
            flows_arg,
        ],
    );
    assert_eq!(key.status.code(), Some(0), "{}", render_output(&key));
    let key = String::from_utf8_lossy(&key.stdout).trim().to_owned();
    assert_eq!(key.len(), 64);
    serve_answers_with_the_key(&flows, &key);
}

fn serve_answers_with_the_key(flows: &Path, key: &str) {
    let dir = flows.parent().unwrap();
    let flows_arg = flows.to_str().unwrap();
    let account = std::fs::read_to_string(flows.join("beta/account.json")).unwrap();
    assert!(!account.contains(key), "only the hash is stored");
    let missing = callflow(
        dir,
        &[
            "api-key",
            "create",
            "--account",
            "nope",
            "--flows",
            flows_arg,
        ],
    );
    assert_eq!(
        missing.status.code(),
        Some(2),
        "{}",
        render_output(&missing)
    );

    // `callflow serve` on a free port: it says where, and answers.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_callflow"))
        .args(["serve", "--listen", "127.0.0.1:0", "--flows", flows_arg])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (address, before) = crate::support::serving_address(&mut child);
    assert!(before.is_empty(), "{before:?}");
    let reply = send(
        "PUT",
        &format!("http://{address}/v2/api_auth"),
        None,
        Some(&envelope(&json!({"api_key": key}))),
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.body["data"]["account_id"], "beta");
}

#[test]
fn reloads_on_request_and_rejected_reloads_show_in_traces() {
    let (dir, flows) = sample_flows();
    let scripts = dir.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    let play = |media: &str| {
        format!("return {{ handle = function(call, data) call:play(\"{media}\") end }}\n")
    };
    std::fs::write(scripts.join("play.lua"), play("one")).unwrap();
    let config = Config::default().with_operator_key(crate::hardening_api::OPERATOR_KEY);
    let server = Server::start_with_scripts(&flows, vec![scripts.clone()], config);
    let token = login(&server, &flows, "acme");
    let token = Some(token.as_str());
    // Reloading every account is the operator's.
    let operator = crate::hardening_api::operator_login(&server);
    let operator = Some(operator.as_str());
    let reload = server.url("/v2/reload");
    assert_error(
        &send("GET", &reload, None, None),
        401,
        "invalid_credentials",
    );
    let status = send("GET", &reload, token, None);
    assert_eq!(status.body["data"]["generation"], 1, "{}", status.text);

    // A change, reloaded on request: the next call runs it.
    std::fs::write(scripts.join("play.lua"), play("two")).unwrap();
    let reloaded = send("POST", &reload, operator, None);
    assert_eq!(
        reloaded.body["data"]["outcome"], "published",
        "{}",
        reloaded.text
    );
    assert_eq!(reloaded.body["data"]["generation"], 2);
    let simulate = server.url("/v2/accounts/acme/simulate");
    let sunday = envelope(
        &json!({"to": "1000", "start": "2026-12-06T03:00", "caller": [{"at_ms": 1000, "hangup": true}]}),
    );
    let trace = send("POST", &simulate, token, Some(&sunday));
    assert!(trace.text.contains(r#""media":"two""#), "{}", trace.text);

    // A syntax error: rejected, shown in the status and in calls' traces,
    // which still run generation 2.
    std::fs::write(scripts.join("play.lua"), "return {\n").unwrap();
    let rejected = send("POST", &reload, operator, None);
    assert_eq!(
        rejected.body["data"]["outcome"], "rejected",
        "{}",
        rejected.text
    );
    assert_eq!(rejected.body["data"]["generation"], 2);
    let pending = &rejected.body["data"]["pending"][0];
    assert_eq!(pending["file"], "scripts/play.lua", "{pending}");
    assert!(pending["line"].is_number(), "{pending}");
    let trace = send("POST", &simulate, token, Some(&sunday));
    let events = trace.body["data"]["events"].as_array().unwrap();
    assert_eq!(events[0]["event"], "warning", "{}", trace.text);
    assert!(events[0]["message"].as_str().unwrap().contains("play.lua"));
    assert!(trace.text.contains(r#""media":"two""#), "{}", trace.text);

    // Fixed: recovered.
    std::fs::write(scripts.join("play.lua"), play("three")).unwrap();
    let fixed = send("POST", &reload, operator, None);
    assert_eq!(fixed.body["data"]["outcome"], "published");
    assert_eq!(fixed.body["data"]["pending"], json!([]));
    let trace = send("POST", &simulate, token, Some(&sunday));
    assert!(trace.text.contains(r#""media":"three""#), "{}", trace.text);
    assert!(
        !trace.text.contains(r#""event":"warning""#),
        "{}",
        trace.text
    );
}

/// `callflow serve`, watching the files: a `PUT` of a callflow makes one
/// generation. The watcher sees the file the write changed and recognizes
/// the server's own write (its counter moves) instead of reloading it again.
#[test]
fn serve_publishes_an_api_write_once() {
    /// The server, killed when the test ends, failed or not.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let (dir, flows) = sample_flows();
    let key = create_api_key(&FlowsDir::new(&flows), &AccountId::new("acme").unwrap()).unwrap();
    let mut child = Killed(
        std::process::Command::new(env!("CARGO_BIN_EXE_callflow"))
            // -v: the server says when it skips a reload of its own write.
            .args([
                "-v",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--poll-s",
                "0",
                "--flows",
            ])
            .arg(&flows)
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let Ok(line) = line else { return };
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let until = |needle: &str| -> String {
        let mut seen = String::new();
        loop {
            match lines.recv_timeout(Duration::from_mins(1)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => {
                    seen.push_str(&line);
                    seen.push('\n');
                }
                Err(err) => panic!("no line with {needle:?} ({err}) in:\n{seen}"),
            }
        }
    };
    let serving = until("http://");
    let address = serving
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();
    let base = format!("http://{address}");
    let auth = send(
        "PUT",
        &format!("{base}/v2/api_auth"),
        None,
        Some(&envelope(&json!({"api_key": key}))),
    );
    assert_eq!(auth.status, 201, "{}", auth.text);
    let token = auth.body["auth_token"].as_str().unwrap().to_owned();
    let token = Some(token.as_str());
    let doc = json!({"name": "Once", "numbers": ["5999"], "flow": {"module": "play", "data": {"id": "once"}}});
    let created = send(
        "PUT",
        &format!("{base}{CALLFLOWS}"),
        token,
        Some(&envelope(&doc)),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    // The watcher looks at the write and leaves it.
    until("reload (watch) skipped: the files hold what the server wrote itself");
    let status = send("GET", &format!("{base}/v2/reload"), token, None);
    assert_eq!(status.status, 200, "{}", status.text);
    assert_eq!(
        status.body["data"]["own_writes_skipped"], 1,
        "{}",
        status.text
    );
    drop(child);
    assert_eq!(status.body["data"]["generation"], 2, "{}", status.text);
    assert_eq!(status.body["data"]["reloads"], 0, "{}", status.text);
}
