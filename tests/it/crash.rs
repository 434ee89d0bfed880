//! A real `callflow serve` (the built binary, on 127.0.0.1) SIGKILLed in
//! the middle of a storm of callflow writes from several clients (create,
//! replace, patch, delete), at points fixed by the number of acknowledged
//! writes. After each kill: every acknowledged write is on disk with the
//! acknowledged content (or that of a later write, sent but not yet
//! acknowledged), every `.json` file of the flows directory parses, and a
//! restarted server serves what is on disk.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use callflow::api::create_api_key;
use callflow::ids::AccountId;
use callflow::store::FlowsDir;

use crate::api::sample_flows;
use crate::fuzz::assert_json_files_parse;

/// A callflow's state as the test tells writes apart: its `name` (unique
/// per write) and whether it is deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    name: String,
    deleted: bool,
}

/// What the clients did to one callflow.
#[derive(Debug, Default)]
struct History {
    /// The last acknowledged state.
    acked: Option<State>,
    /// Writes sent after it whose answer never came (the server died).
    pending: Vec<State>,
}

#[derive(Debug, Default)]
struct Ledger {
    docs: BTreeMap<String, History>,
    /// Writes acknowledged in this round.
    acked: usize,
    /// Clients still writing in this round.
    running: usize,
}

/// Counts a client out when it ends, however it ends (a failed assertion
/// included), so that the test never waits for a kill that cannot come.
struct Running(Shared);

impl Drop for Running {
    fn drop(&mut self) {
        let (ledger, signal) = &*self.0;
        // A poisoned lock still counts the client out.
        let mut ledger = ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ledger.running -= 1;
        signal.notify_all();
    }
}

/// The ledger and a signal for each acknowledged write.
type Shared = Arc<(Mutex<Ledger>, Condvar)>;

/// A `callflow serve` child process; killed (`SIGKILL`) on drop.
struct Served {
    child: Child,
    base: String,
}

impl Served {
    fn start(flows: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_callflow"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--flows",
                flows.to_str().unwrap(),
            ])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (address, before) = crate::support::serving_address(&mut child);
        // Lines before the address say which temporary files of
        // interrupted writes it removed.
        for line in &before {
            assert!(
                line.contains("the temporary file of a write that never finished"),
                "{line}"
            );
        }
        // Whatever a kill left is gone once the server is up.
        assert_eq!(
            callflow::store::FlowsDir::new(flows).leftovers(),
            Vec::<std::path::PathBuf>::new()
        );
        Self {
            child,
            base: format!("http://{address}"),
        }
    }

    fn kill(&mut self) {
        // `Child::kill` is SIGKILL on Unix: no chance to finish anything.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A request; `Err` when the server did not answer (it was killed).
fn http(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Value), ureq::Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    if let Some(token) = token {
        request = request.header("X-Auth-Token", token);
    }
    let body = body.map(Value::to_string).unwrap_or_default().into_bytes();
    let mut response = agent.run(request.body(body).unwrap())?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string()?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

fn login(server: &Served, key: &str) -> String {
    let (status, body) = http(
        "PUT",
        &format!("{}/v2/api_auth", server.base),
        None,
        Some(&json!({"data": {"api_key": key}})),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    body["auth_token"].as_str().unwrap().to_owned()
}

fn document(name: &str, number: &str) -> Value {
    json!({
        "data": {
            "name": name,
            "numbers": [number],
            "flow": {"module": "play", "data": {"id": name}},
        }
    })
}

/// One client's writes: a fixed sequence (creates, replaces, patches,
/// deletes of its own callflows), until the server stops answering or the
/// sequence ends.
fn client(base: &str, token: &str, round: usize, me: usize, shared: &Shared) {
    let _running = Running(Arc::clone(shared));
    let url = format!("{base}/v2/accounts/acme/callflows");
    // (id, number) of this client's live callflows.
    let mut live: Vec<(String, String)> = Vec::new();
    for step in 0..200 {
        let name = format!("r{round}-c{me}-s{step}");
        if live.is_empty() || step % 5 == 0 {
            let number = format!("8{round}{me}{step:03}");
            let Ok((status, body)) =
                http("PUT", &url, Some(token), Some(&document(&name, &number)))
            else {
                return;
            };
            assert_eq!(status, 201, "{body}");
            let id = body["data"]["id"].as_str().unwrap().to_owned();
            acknowledge(
                shared,
                &id,
                false,
                State {
                    name,
                    deleted: false,
                },
            );
            live.push((id, number));
            continue;
        }
        let (id, number) = live[step % live.len()].clone();
        let doc_url = format!("{url}/{id}");
        let (method, body, state) = match step % 4 {
            0 | 1 => (
                "POST",
                Some(document(&name, &number)),
                State {
                    name,
                    deleted: false,
                },
            ),
            2 => (
                "PATCH",
                Some(json!({"data": {"name": name}})),
                State {
                    name,
                    deleted: false,
                },
            ),
            _ => {
                let last = last_name(shared, &id);
                (
                    "DELETE",
                    None,
                    State {
                        name: last,
                        deleted: true,
                    },
                )
            }
        };
        if state.deleted {
            live.retain(|(other, _)| *other != id);
        }
        shared
            .0
            .lock()
            .unwrap()
            .docs
            .get_mut(&id)
            .unwrap()
            .pending
            .push(state.clone());
        let Ok((status, reply)) = http(method, &doc_url, Some(token), body.as_ref()) else {
            return;
        };
        assert_eq!(status, 200, "{method} {id}: {reply}");
        if !state.deleted {
            assert_eq!(reply["data"]["name"], state.name.as_str(), "{reply}");
        }
        acknowledge(shared, &id, true, state);
    }
}

fn last_name(shared: &Shared, id: &str) -> String {
    let ledger = shared.0.lock().unwrap();
    let history = &ledger.docs[id];
    history.acked.as_ref().unwrap().name.clone()
}

/// Records an acknowledged write (of an existing callflow when `existing`),
/// and wakes whoever waits for a count of them.
fn acknowledge(shared: &Shared, id: &str, existing: bool, state: State) {
    let (ledger, signal) = &**shared;
    let mut ledger = ledger.lock().unwrap();
    let history = ledger.docs.entry(id.to_owned()).or_default();
    assert_eq!(existing, history.acked.is_some(), "{id}");
    history.acked = Some(state);
    history.pending.clear();
    ledger.acked += 1;
    signal.notify_all();
}

/// After a kill: each callflow on disk is in its acknowledged state or a
/// later one sent; that state becomes the acknowledged one.
fn check_disk(flows: &Path, shared: &Shared) {
    assert_json_files_parse(flows);
    let mut ledger = shared.0.lock().unwrap();
    for (id, history) in &mut ledger.docs {
        let path = flows.join(format!("acme/callflows/{id}.json"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("acknowledged {id} is not on disk: {e}"));
        let on_disk: Value = serde_json::from_str(&text).unwrap();
        let state = State {
            name: on_disk["name"].as_str().unwrap_or_default().to_owned(),
            deleted: on_disk["pvt_deleted"] == json!(true),
        };
        let acked = history.acked.clone().unwrap();
        assert!(
            state == acked || history.pending.contains(&state),
            "{id}: on disk {state:?}, acknowledged {acked:?}, sent since {:?}",
            history.pending
        );
        history.acked = Some(state);
        history.pending.clear();
    }
}

/// A (restarted) server serves every callflow as it is on disk.
fn check_served(server: &Served, token: &str, shared: &Shared) {
    let ledger = shared.0.lock().unwrap();
    for (id, history) in &ledger.docs {
        let url = format!("{}/v2/accounts/acme/callflows/{id}", server.base);
        let (status, body) = http("GET", &url, Some(token), None).unwrap();
        let state = history.acked.as_ref().unwrap();
        if state.deleted {
            assert_eq!(status, 404, "{id} was deleted: {body}");
        } else {
            assert_eq!(status, 200, "{id}: {body}");
            assert_eq!(body["data"]["name"], state.name.as_str(), "{id}: {body}");
        }
    }
}

#[test]
fn acknowledged_writes_survive_sigkill_during_a_write_storm() {
    const CLIENTS: usize = 4;
    /// The server is killed once this many writes of a round are
    /// acknowledged.
    const KILL_AFTER: [usize; 4] = [1, 12, 30, 45];

    let (_dir, flows) = sample_flows();
    let key = create_api_key(&FlowsDir::new(&flows), &AccountId::new("acme").unwrap()).unwrap();
    let shared: Shared = Arc::default();
    for (round, kill_after) in KILL_AFTER.into_iter().enumerate() {
        let mut server = Served::start(&flows);
        let token = login(&server, &key);
        // What the last kill left is served after the restart.
        check_served(&server, &token, &shared);
        {
            let mut ledger = shared.0.lock().unwrap();
            ledger.acked = 0;
            ledger.running = CLIENTS;
        }
        let clients: Vec<_> = (0..CLIENTS)
            .map(|me| {
                let (base, token, shared) =
                    (server.base.clone(), token.clone(), Arc::clone(&shared));
                std::thread::spawn(move || client(&base, &token, round, me, &shared))
            })
            .collect();
        {
            let (ledger, signal) = &*shared;
            let ledger = ledger.lock().unwrap();
            let ledger = signal
                .wait_while(ledger, |l| l.acked < kill_after && l.running > 0)
                .unwrap();
            assert!(ledger.acked >= kill_after, "the clients stopped early");
            drop(ledger);
        }
        server.kill();
        for client in clients {
            client.join().unwrap();
        }
        check_disk(&flows, &shared);
    }
    let server = Served::start(&flows);
    let token = login(&server, &key);
    check_served(&server, &token, &shared);
    let ledger = shared.0.lock().unwrap();
    assert!(
        ledger.docs.len() >= 10,
        "{} callflows written",
        ledger.docs.len()
    );
    assert!(
        ledger
            .docs
            .values()
            .any(|h| h.acked.as_ref().unwrap().deleted),
        "some deleted"
    );
}
