//! The server under pressure (issue 15): it answers during a reload that
//! takes as long as the test wants, keeps tenants apart in the reload
//! status and in traces, leaves reloading every account to the operator,
//! caps tokens, rate-limits logins and drops clients that send too slowly.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use callflow::api::{AppState, Config, Rate};
use callflow::catalog::Sources;
use callflow::reload::{Paths, Reloader};
use callflow::store::{FlowsDir, Store, StoreError};

use crate::api::{
    Server, add_other_account, assert_envelope, assert_error, envelope, login, sample_flows, send,
};

/// The operator's key of the tests' servers.
pub(crate) const OPERATOR_KEY: &str = "operator-key-for-tests-0123456789";

/// An operator token, through `PUT /v2/api_auth` with [`OPERATOR_KEY`].
pub(crate) fn operator_login(server: &Server) -> String {
    let reply = send(
        "PUT",
        &server.url("/v2/api_auth"),
        None,
        Some(&envelope(&json!({"api_key": OPERATOR_KEY}))),
    );
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.body["data"]["operator"], true, "{}", reply.text);
    reply.body["auth_token"].as_str().unwrap().to_owned()
}

fn operator_config() -> Config {
    Config::default().with_operator_key(OPERATOR_KEY)
}

/// A gate full reloads wait at, inside the store's read, for as long as
/// the test keeps it closed; it says when a reload reached it.
struct Gate {
    closed: Mutex<bool>,
    opened: Condvar,
    reached: Mutex<mpsc::Sender<()>>,
}

impl Gate {
    fn open(&self) {
        *self.closed.lock().unwrap() = false;
        self.opened.notify_all();
    }
}

/// Opens the gate when dropped, so that a failing test ends (and the
/// server stops) instead of hanging.
struct OpenOnDrop(Arc<Gate>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// The flows directory behind a [`Gate`] (the first read, the server's
/// start, passes).
struct GatedStore {
    flows: FlowsDir,
    gate: Arc<Gate>,
    reads: Mutex<u32>,
}

impl Store for GatedStore {
    fn read(&self) -> Result<Sources, StoreError> {
        let first = {
            let mut reads = self.reads.lock().unwrap();
            *reads += 1;
            *reads == 1
        };
        if !first {
            let mut closed = self.gate.closed.lock().unwrap();
            if *closed {
                let _ = self.gate.reached.lock().unwrap().send(());
            }
            while *closed {
                closed = self.gate.opened.wait(closed).unwrap();
            }
        }
        self.flows.read()
    }
}

const SUNDAY: &str =
    r#"{"to": "1000", "start": "2026-12-06T03:00", "caller": [{"at_ms": 1000, "hangup": true}]}"#;

/// Status and simulate requests, more at once than the server has runtime
/// threads (none may hold a thread while a reload runs), then health
/// requests; returns the slowest health answer.
fn status_simulate_and_health(server: &Server, token: &str) -> Duration {
    // More status and simulate requests at once than the server has
    // runtime threads: none may hold a thread while the reload runs.
    let waiting: Vec<_> = (0..8)
        .map(|n| {
            let token = token.to_owned();
            let status_url = server.url("/v2/reload");
            let simulate_url = server.url("/v2/accounts/acme/simulate");
            std::thread::spawn(move || {
                if n % 2 == 0 {
                    let status = send("GET", &status_url, Some(&token), None);
                    assert_eq!(status.status, 200, "{}", status.text);
                    assert_eq!(status.body["data"]["running"], "api", "{}", status.text);
                } else {
                    let body = envelope(&serde_json::from_str::<Value>(SUNDAY).unwrap());
                    let trace = send("POST", &simulate_url, Some(&token), Some(&body));
                    assert_eq!(trace.status, 200, "{}", trace.text);
                }
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        // The test's own stopwatch, for the figure it prints.
        #[allow(clippy::disallowed_methods)]
        let asked = std::time::Instant::now();
        let health = send("GET", &server.url("/v2/health"), None, None);
        slowest = slowest.max(asked.elapsed());
        assert_eq!(health.status, 200, "{}", health.text);
    }
    for thread in waiting {
        thread.join().unwrap();
    }
    slowest
}

/// The issue's stalled server: during a reload that takes seconds,
/// `/v2/health` took seconds too, because `GET /v2/reload` and simulate
/// waited on the reload's lock on the runtime's threads. Here the reload
/// waits at a gate for as long as the test wants: health, the reload
/// status, simulations and an account write all answer while it is still
/// running (it has not answered yet), and the write survives the reload.
#[test]
fn the_server_answers_during_a_slow_reload() {
    let (_dir, flows) = sample_flows();
    let (reached, reload_reached) = mpsc::channel();
    let gate = Arc::new(Gate {
        closed: Mutex::new(true),
        opened: Condvar::new(),
        reached: Mutex::new(reached),
    });
    let store = Arc::new(GatedStore {
        flows: FlowsDir::new(&flows),
        gate: Arc::clone(&gate),
        reads: Mutex::new(0),
    });
    let paths = Paths {
        flows: flows.clone(),
        scripts: Vec::new(),
    };
    let (reloader, _) = Reloader::load_with_store(paths, store).unwrap();
    let server = Server::start_state(AppState::new(Arc::new(reloader), operator_config()));
    let token = login(&server, &flows, "acme");
    let operator = operator_login(&server);
    let _open_at_the_end = OpenOnDrop(Arc::clone(&gate));

    let (finished, reload_finished) = mpsc::channel();
    let url = server.url("/v2/reload");
    let reloading = std::thread::spawn(move || {
        let reply = send("POST", &url, Some(&operator), None);
        finished.send(reply).unwrap();
    });
    reload_reached
        .recv_timeout(Duration::from_mins(1))
        .expect("the reload reaches the store");

    let slowest = status_simulate_and_health(&server, &token);
    // A write publishes at once; readers see it before the reload ends.
    let created = send(
        "PUT",
        &server.url("/v2/accounts/acme/callflows"),
        Some(&token),
        Some(&envelope(
            &json!({"numbers": ["7777"], "flow": {"module": "answer"}}),
        )),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["data"]["id"].as_str().unwrap().to_owned();
    let listed = send(
        "GET",
        &server.url("/v2/accounts/acme/callflows?paginate=false"),
        Some(&token),
        None,
    );
    assert!(listed.text.contains(&id), "{}", listed.text);
    eprintln!("slowest /v2/health during the reload: {slowest:?}");
    assert!(
        slowest < Duration::from_secs(5),
        "health took {slowest:?} during a reload"
    );
    // Everything above answered while the reload was still running.
    assert!(
        matches!(reload_finished.try_recv(), Err(mpsc::TryRecvError::Empty)),
        "the reload ended before the gate opened"
    );

    gate.open();
    let published = reload_finished
        .recv_timeout(Duration::from_mins(1))
        .unwrap();
    reloading.join().unwrap();
    assert_eq!(published.status, 200, "{}", published.text);
    assert_eq!(published.body["data"]["outcome"], "published");
    // The write was generation 2; the reload, which had read the files
    // before it, read them again and published 3 with the write in it.
    assert_eq!(
        published.body["data"]["generation"], 3,
        "{}",
        published.text
    );
    assert_eq!(published.body["data"]["running"], Value::Null);
    let fetched = send(
        "GET",
        &server.url(&format!("/v2/accounts/acme/callflows/{id}")),
        Some(&token),
        None,
    );
    assert_eq!(fetched.status, 200, "{}", fetched.text);
    let listed = send(
        "GET",
        &server.url("/v2/accounts/acme/callflows?paginate=false"),
        Some(&token),
        None,
    );
    assert!(listed.text.contains(&id), "{}", listed.text);
}

/// Health during a write storm: writes run off the runtime's threads, so
/// health answers while they rebuild their account, one after another.
#[test]
fn health_answers_during_a_write_storm() {
    let (_dir, flows) = sample_flows();
    let server = Arc::new(Server::start(&flows, Config::default()));
    let token = login(&server, &flows, "acme");
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let server = Arc::clone(&server);
            let token = token.clone();
            std::thread::spawn(move || {
                for n in 0..10 {
                    let number = format!("7{writer}{n:02}");
                    let created = send(
                        "PUT",
                        &server.url("/v2/accounts/acme/callflows"),
                        Some(&token),
                        Some(&envelope(
                            &json!({"numbers": [number], "flow": {"module": "answer"}}),
                        )),
                    );
                    assert_eq!(created.status, 201, "{}", created.text);
                }
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    while !writers.iter().all(std::thread::JoinHandle::is_finished) {
        #[allow(clippy::disallowed_methods)] // the figure printed
        let asked = std::time::Instant::now();
        let health = send("GET", &server.url("/v2/health"), None, None);
        slowest = slowest.max(asked.elapsed());
        assert_eq!(health.status, 200, "{}", health.text);
    }
    for writer in writers {
        writer.join().unwrap();
    }
    eprintln!("slowest /v2/health during the write storm: {slowest:?}");
    assert!(slowest < Duration::from_secs(5), "health took {slowest:?}");
    let listed = send(
        "GET",
        &server.url("/v2/accounts/acme/callflows?paginate=false"),
        Some(&token),
        None,
    );
    for writer in 0..4 {
        assert!(
            listed.text.contains(&format!("\"7{writer}09\"")),
            "{}",
            listed.text
        );
    }
}

fn write(flows: &Path, relative: &str, text: &str) {
    let path = flows.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The files of every pending error a reply shows.
fn pending_files(reply: &crate::api::Reply) -> Vec<String> {
    reply.body["data"]["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["file"].as_str().unwrap().to_owned())
        .collect()
}

/// The issue's tenants: another account's token got 200 on
/// `POST /v2/reload`, saw acme's pending errors with absolute server paths,
/// and its simulate traces named acme's files. Now reloading every account
/// is the operator's (403 for an account's token, in Kazoo's envelope),
/// and each account sees its own problems only, relative to the flows
/// directory.
#[test]
fn tenants_see_their_own_reload_errors_and_cannot_reload_everyone() {
    let (dir, flows) = sample_flows();
    add_other_account(&flows);
    write(
        &flows,
        "other/callflows/main.json",
        r#"{"numbers": ["5000"], "flow": {"module": "answer"}}"#,
    );
    let server = Server::start(&flows, operator_config());
    let acme = login(&server, &flows, "acme");
    let other = login(&server, &flows, "other");
    let operator = operator_login(&server);
    let reload = server.url("/v2/reload");

    // Both accounts break a file; the operator's reload is rejected.
    write(&flows, "acme/callflows/broken.json", "{\n");
    write(&flows, "other/callflows/bad.json", "[1,\n");
    // ... and `other` claims acme's E.164 number.
    write(
        &flows,
        "other/callflows/dup.json",
        r#"{"numbers": ["+14158867900"], "flow": {"module": "answer"}}"#,
    );
    let rejected = send("POST", &reload, Some(&operator), None);
    assert_eq!(
        rejected.body["data"]["outcome"], "rejected",
        "{}",
        rejected.text
    );
    assert_eq!(
        pending_files(&rejected),
        [
            "acme/callflows/broken.json",
            "other/callflows/bad.json",
            "other/callflows/dup.json"
        ]
    );
    // The operator learns who holds the number.
    assert!(
        rejected
            .text
            .contains("also claimed by account acme (callflow main)"),
        "{}",
        rejected.text
    );

    // An account's token may not reload everyone.
    for token in [&acme, &other] {
        let refused = send("POST", &reload, Some(token), None);
        assert_error(&refused, 403, "forbidden");
        assert_eq!(refused.body["data"]["cause"], "reloading every account");
    }
    // Each sees its own errors, relative, and nothing of the other's.
    let absolute = dir.path().to_string_lossy().into_owned();
    for (token, own, foreign) in [
        (
            &other,
            &["other/callflows/bad.json", "other/callflows/dup.json"][..],
            "acme",
        ),
        (&acme, &["acme/callflows/broken.json"][..], "other/"),
    ] {
        let status = send("GET", &reload, Some(token), None);
        assert_eq!(status.status, 200, "{}", status.text);
        assert_eq!(pending_files(&status), own, "{}", status.text);
        assert!(!status.text.contains(foreign), "{}", status.text);
        assert!(!status.text.contains(&absolute), "{}", status.text);
    }
    // The other account's traces warn of its own file only.
    let trace = send(
        "POST",
        &server.url("/v2/accounts/other/simulate"),
        Some(&other),
        Some(&envelope(
            &json!({"to": "5000", "caller": [{"at_ms": 1000, "hangup": true}]}),
        )),
    );
    assert_eq!(trace.status, 200, "{}", trace.text);
    let events = trace.body["data"]["events"].as_array().unwrap();
    assert_eq!(events[0]["event"], "warning", "{}", trace.text);
    assert!(
        events[0]["message"]
            .as_str()
            .unwrap()
            .contains("other/callflows/bad.json:"),
        "{}",
        trace.text
    );
    assert!(!trace.text.contains("acme"), "{}", trace.text);
    assert!(!trace.text.contains(&absolute), "{}", trace.text);
    // The operator's token is for server-wide actions, not an account's.
    assert_error(
        &send(
            "GET",
            &server.url("/v2/accounts/acme/callflows"),
            Some(&operator),
            None,
        ),
        403,
        "forbidden",
    );
}

/// A server whose logins are not the limit under test.
fn relaxed(config: Config) -> Config {
    let many = Rate {
        burst: 1000,
        every: Duration::from_secs(1),
    };
    Config {
        auth_per_source: many,
        auth_per_key: many,
        ..config
    }
}

/// The issue's token pile (40,000 live tokens from one key): each account
/// keeps its newest `max_tokens_per_account`, the oldest expire first.
#[test]
fn live_tokens_per_account_are_capped_oldest_first() {
    let (_dir, flows) = sample_flows();
    add_other_account(&flows);
    let config = relaxed(Config {
        max_tokens_per_account: 3,
        ..Config::default()
    });
    let server = Server::start(&flows, config);
    let other = login(&server, &flows, "other");
    let tokens: Vec<String> = (0..5).map(|_| login(&server, &flows, "acme")).collect();
    let callflows = server.url("/v2/accounts/acme/callflows");
    for (n, token) in tokens.iter().enumerate() {
        let reply = send("GET", &callflows, Some(token), None);
        let expected = if n < 2 { 401 } else { 200 };
        assert_eq!(reply.status, expected, "token {n}: {}", reply.text);
    }
    // Another account's tokens are its own count.
    let reply = send(
        "GET",
        &server.url("/v2/accounts/other/callflows"),
        Some(&other),
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
}

/// Four large simulations at once took 5.7 GB. Each is bounded by the
/// per-call caps now, and the endpoint by `Config::max_simulations`: with no
/// place left it answers 503 at once, in Kazoo's envelope, naming the flag.
#[test]
fn simulations_past_the_bound_are_refused_with_503() {
    let (_dir, flows) = sample_flows();
    let server = Server::start(
        &flows,
        Config {
            max_simulations: 0,
            ..Config::default()
        },
    );
    let token = login(&server, &flows, "acme");
    let reply = send(
        "POST",
        &server.url("/v2/accounts/acme/simulate"),
        Some(&token),
        Some(&envelope(&json!({"to": "1000"}))),
    );
    assert_error(&reply, 503, "unavailable");
    assert!(
        reply
            .text
            .contains("0 simulations are already running (serve --max-simulations)"),
        "{}",
        reply.text
    );
}

/// `PUT /v2/api_auth` had no rate limit. Now: a burst per key and per
/// source address, then 429 in Kazoo's envelope with `Retry-After`.
#[test]
fn logins_are_rate_limited_per_key_and_per_source() {
    let (_dir, flows) = sample_flows();
    add_other_account(&flows);
    let hourly = |burst| Rate {
        burst,
        every: Duration::from_hours(1),
    };
    let config = Config {
        auth_per_source: hourly(5),
        auth_per_key: hourly(3),
        ..Config::default()
    };
    let server = Server::start(&flows, config);
    let key = |account: &str| {
        callflow::api::create_api_key(
            &FlowsDir::new(&flows),
            &callflow::ids::AccountId::new(account).unwrap(),
        )
        .unwrap()
    };
    let auth = |key: &str| {
        send(
            "PUT",
            &server.url("/v2/api_auth"),
            None,
            Some(&envelope(&json!({ "api_key": key }))),
        )
    };
    let acme = key("acme");
    for _ in 0..3 {
        assert_eq!(auth(&acme).status, 201);
    }
    let limited = auth(&acme);
    assert_error(&limited, 429, "too_many_requests");
    assert_eq!(limited.body["data"]["cause"], "logins with this key");
    let retry: u64 = limited.headers["retry-after"].parse().unwrap();
    assert!((1..=3600).contains(&retry), "Retry-After {retry}");
    // Another key passes, until the address's own limit.
    let other = key("other");
    assert_eq!(auth(&other).status, 201);
    let limited = auth(&other);
    assert_error(&limited, 429, "too_many_requests");
    assert_eq!(limited.body["data"]["cause"], "logins from this address");
    assert!(limited.headers.contains_key("retry-after"));
}

/// Reads what the server sends until it closes the connection; fails if
/// it is still open after a minute (the server's timeouts are far shorter).
fn read_until_closed(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_mins(1)))
        .unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server kept a slow client: {e}"),
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

/// The issue's slow clients (headers or a body that never finish, still
/// held open after 8 s): dropped once the header or body timeout passes,
/// the body with a 408 in Kazoo's envelope.
#[test]
fn clients_that_send_too_slowly_are_dropped() {
    let (_dir, flows) = sample_flows();
    let config = Config {
        header_timeout: Duration::from_millis(300),
        body_timeout: Duration::from_millis(300),
        ..Config::default()
    };
    let server = Server::start(&flows, config);

    // Headers that never end.
    let mut slow_headers = TcpStream::connect(server.addr()).unwrap();
    slow_headers
        .write_all(b"GET /v2/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let answer = read_until_closed(&mut slow_headers);
    assert!(!answer.contains("200 OK"), "{answer}");

    // A body that never ends.
    let mut slow_body = TcpStream::connect(server.addr()).unwrap();
    slow_body
        .write_all(
            b"PUT /v2/api_auth HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"data\": ",
        )
        .unwrap();
    let answer = read_until_closed(&mut slow_body);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("within 300ms"), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let reply = crate::api::Reply {
        status: 408,
        body,
        text: answer.clone(),
        headers: std::collections::BTreeMap::new(),
    };
    assert_error(&reply, 408, "request_timeout");

    // A body nobody reads (the request is refused before): closed too.
    let mut unread = TcpStream::connect(server.addr()).unwrap();
    unread
        .write_all(
            b"PUT /v2/accounts/acme/callflows HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{\"data\": ",
        )
        .unwrap();
    let answer = read_until_closed(&mut unread);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");

    // A connection left idle after a request is closed too.
    let mut idle = TcpStream::connect(server.addr()).unwrap();
    idle.write_all(b"GET /v2/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let answer = read_until_closed(&mut idle);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Clients that keep up are served as before.
    let health = send("GET", &server.url("/v2/health"), None, None);
    assert_eq!(health.status, 200, "{}", health.text);
    assert_envelope(&health, "success");
}

/// `callflow serve --operator-key-file`: a short key is refused at start
/// (exit 2, naming the file); a good one gives operator tokens that reload.
#[test]
fn serve_takes_the_operator_key_from_a_file() {
    let (dir, flows) = sample_flows();
    let flows_arg = flows.to_str().unwrap();
    let key_file = dir.path().join("operator.key");
    std::fs::write(&key_file, "short\n").unwrap();
    let key_arg = key_file.to_str().unwrap();
    let refused = crate::support::callflow(
        dir.path(),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--flows",
            flows_arg,
            "--no-watch",
            "--operator-key-file",
            key_arg,
        ],
    );
    let output = crate::support::render_output(&refused);
    assert_eq!(refused.status.code(), Some(2), "{output}");
    assert!(output.contains("shorter than 16 characters"), "{output}");
    assert!(output.contains("operator.key"), "{output}");

    std::fs::write(&key_file, format!("{OPERATOR_KEY}\n")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_callflow"))
        .args(["serve", "--listen", "127.0.0.1:0", "--flows", flows_arg])
        .args(["--no-watch", "--operator-key-file", key_arg])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (address, before) = crate::support::serving_address(&mut child);
    assert!(before.is_empty(), "{before:?}");
    let api = |method: &str, path: &str, token: Option<&str>, body: Option<&str>| {
        send(method, &format!("http://{address}{path}"), token, body)
    };
    let auth = api(
        "PUT",
        "/v2/api_auth",
        None,
        Some(&envelope(&json!({"api_key": OPERATOR_KEY}))),
    );
    let reload = auth.body["auth_token"]
        .as_str()
        .map(|token| api("POST", "/v2/reload", Some(token), None));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(auth.status, 201, "{}", auth.text);
    assert_eq!(auth.body["data"]["operator"], true, "{}", auth.text);
    let reload = reload.unwrap();
    assert_eq!(reload.status, 200, "{}", reload.text);
    assert_eq!(
        reload.body["data"]["outcome"], "published",
        "{}",
        reload.text
    );
}
