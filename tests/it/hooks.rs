//! Live call events: Kazoo's webhooks and the `GET /v2/websocket` stream.
//! A real call (SIPp, `tests/sip/answer-play-bye.xml`) against a real
//! server whose flows hold a `webhooks` document pointing to a loopback
//! receiver started here (it answers the first request 500, so a retry is
//! seen); a WebSocket client of the call's account sees the same events,
//! one of another account none; a server without `--allow-private-http`
//! refuses the same hook and sends nothing. Without `--sip` the socket
//! takes subscriptions and checks tokens. A token ended by `DELETE
//! /v2/token_auth` takes its subscriptions with it (a call then reaches
//! only the socket of a live token; without a call, the periodic re-check
//! tells); sockets are capped and idle ones closed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use callflow::api::{Config, create_api_key};
use callflow::ids::AccountId;
use callflow::store::FlowsDir;

use crate::api::{Server as ApiServer, add_other_account, login, sample_flows, send};
use crate::sip::harness::{
    Deadline, Server, Setup, Sipp, Transport, Trust, free_port, sip_dir, tools,
};

/// What the receiver got: the request line and the body.
#[derive(Debug)]
struct Received {
    line: String,
    body: Value,
}

/// A loopback HTTP receiver: answers the first request 500 and every
/// later one 200 (each on its own connection, closed after the answer).
fn receiver() -> (String, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { break };
            let status = if n == 0 {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let Some(received) = answer(stream, status) else {
                continue;
            };
            // Only what was accepted counts as delivered.
            if n > 0 && tx.send(received).is_err() {
                break;
            }
        }
    });
    (url, rx)
}

/// Reads one request and answers it with `status`.
fn answer(mut stream: TcpStream, status: &str) -> Option<Received> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let reply = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(reply.as_bytes()).ok()?;
    Some(Received {
        line: line.trim_end().to_owned(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    })
}

/// Writes a webhook document for every event of `account` to `uri`.
fn write_hook(flows: &Path, account: &str, uri: &str) {
    let dir = flows.join(account).join("webhooks");
    std::fs::create_dir_all(&dir).unwrap();
    let hook = json!({
        "name": "every event",
        "uri": uri,
        "http_verb": "post",
        "hook": "all",
        "retries": 2,
        "custom_data": {"source": "hooks-test"},
    });
    std::fs::write(dir.join("all.json"), hook.to_string()).unwrap();
}

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

fn connect(api: &str, token: Option<&str>) -> Result<Socket, tungstenite::Error> {
    let query = token
        .map(|t| format!("?auth_token={t}"))
        .unwrap_or_default();
    let (socket, _) = tungstenite::connect(format!("ws://{api}/v2/websocket{query}"))?;
    if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
        stream
            .set_read_timeout(Some(Duration::from_mins(1)))
            .unwrap();
    }
    Ok(socket)
}

fn ask(socket: &mut Socket, message: &Value) -> Value {
    socket
        .send(Message::Text(message.to_string().into()))
        .unwrap();
    loop {
        let reply = next_json(socket);
        if reply["action"] == "reply" {
            return reply;
        }
    }
}

fn next_json(socket: &mut Socket) -> Value {
    loop {
        match socket.read().expect("a WebSocket message") {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

fn subscribe(socket: &mut Socket, account: &str, bindings: &[&str]) -> Value {
    ask(
        socket,
        &json!({
            "action": "subscribe",
            "request_id": "r1",
            "data": {"account_id": account, "bindings": bindings},
        }),
    )
}

#[test]
fn the_websocket_checks_tokens_and_bindings_without_sip() {
    let (_dir, flows) = sample_flows();
    add_other_account(&flows);
    let server = ApiServer::start(&flows, Config::default());
    let token = login(&server, &flows, "acme");
    let api = server.addr().to_string();

    // A bad token is refused before the upgrade; a plain GET is no upgrade.
    match connect(&api, Some("not-a-token")) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected a 401, got {other:?}"),
    }
    let plain = send("GET", &server.url("/v2/websocket"), Some(&token), None);
    assert_eq!(plain.status, 400, "{}", plain.text);
    assert_eq!(plain.body["status"], "error");

    let mut socket = connect(&api, None).unwrap();
    // No token at all: said so.
    let reply = subscribe(&mut socket, "acme", &["call.CHANNEL_CREATE.*"]);
    assert_eq!(reply["status"], "error", "{reply}");
    // The token in the message, Kazoo's blackhole style.
    let reply = ask(
        &mut socket,
        &json!({"action": "subscribe", "auth_token": token, "request_id": 7,
                "data": {"account_id": "acme", "binding": "call.CHANNEL_CREATE.*"}}),
    );
    assert_eq!(reply["status"], "success", "{reply}");
    assert_eq!(reply["request_id"], 7);
    assert_eq!(
        reply["data"]["subscribed"],
        json!(["call.CHANNEL_CREATE.*"])
    );

    let mut socket = connect(&api, Some(&token)).unwrap();
    let reply = subscribe(&mut socket, "other", &["call.CHANNEL_CREATE.*"]);
    assert_eq!(reply["status"], "error", "{reply}");
    assert!(
        reply["data"]["errors"][0]
            .as_str()
            .unwrap()
            .contains("other")
    );
    let reply = subscribe(&mut socket, "acme", &["conference.*"]);
    assert_eq!(reply["status"], "error", "{reply}");
    let reply = subscribe(&mut socket, "acme", &["callflow.*", "call.#"]);
    assert_eq!(reply["status"], "success", "{reply}");
    let reply = ask(
        &mut socket,
        &json!({"action": "unsubscribe", "data": {"binding": "call.#"}}),
    );
    assert_eq!(
        reply["data"]["subscribed"],
        json!(["callflow.*"]),
        "{reply}"
    );
    let reply = ask(&mut socket, &json!({"action": "ping", "request_id": "p"}));
    assert_eq!(reply["status"], "success");
    socket.close(None).unwrap();
}

/// Reads until the server closes: the JSON messages before, and the close
/// frame's reason.
fn until_closed(socket: &mut Socket) -> (Vec<Value>, String) {
    let mut messages = Vec::new();
    loop {
        match socket.read().expect("a WebSocket message") {
            Message::Text(text) => messages.push(serde_json::from_str(text.as_str()).unwrap()),
            Message::Close(frame) => {
                let frame = frame.expect("a close frame with a reason");
                assert_eq!(u16::from(frame.code), 1008, "{frame:?}");
                return (messages, frame.reason.to_string());
            }
            _ => {}
        }
    }
}

#[test]
fn an_ended_token_ends_its_subscriptions_without_sip() {
    let (_dir, flows) = sample_flows();
    let server = ApiServer::start(&flows, Config::default());
    let token = login(&server, &flows, "acme");
    let kept = login(&server, &flows, "acme");
    let api = server.addr().to_string();
    let mut socket = connect(&api, Some(&token)).unwrap();
    let reply = subscribe(&mut socket, "acme", &["call.#", "callflow.*"]);
    assert_eq!(reply["status"], "success", "{reply}");
    let mut other = connect(&api, Some(&kept)).unwrap();
    let reply = subscribe(&mut other, "acme", &["call.#"]);
    assert_eq!(reply["status"], "success", "{reply}");

    let ended = send("DELETE", &server.url("/v2/token_auth"), Some(&token), None);
    assert_eq!(ended.status, 200, "{}", ended.text);
    // No call here: the periodic re-check finds it (within 5 s).
    let (messages, reason) = until_closed(&mut socket);
    assert_eq!(reason, "token ended");
    assert_eq!(messages.len(), 1, "{messages:?}");
    let notice = &messages[0];
    assert_eq!(notice["action"], "notice", "{notice}");
    assert_eq!(notice["name"], "token_ended", "{notice}");
    assert_eq!(notice["data"]["account_id"], "acme");
    assert_eq!(notice["data"]["dropped"], json!(["call.#", "callflow.*"]));
    // The socket of a live token keeps its binding.
    let reply = subscribe(&mut other, "acme", &["callflow.*"]);
    assert_eq!(
        reply["data"]["subscribed"],
        json!(["call.#", "callflow.*"]),
        "{reply}"
    );
}

#[test]
fn websockets_are_capped_and_idle_ones_closed() {
    let (_dir, flows) = sample_flows();
    let config = Config {
        max_websockets: 1,
        ..Config::default()
    };
    let server = ApiServer::start(&flows, config);
    let api = server.addr().to_string();
    let mut first = connect(&api, None).unwrap();
    match connect(&api, None) {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"], "503", "{body}");
            assert_eq!(body["message"], "unavailable", "{body}");
            assert!(
                body["data"]["cause"]
                    .as_str()
                    .unwrap()
                    .contains("1 WebSockets are open"),
                "{body}"
            );
        }
        other => panic!("expected a 503, got {other:?}"),
    }
    // Its place is free again once it closed.
    first.close(None).unwrap();
    while !matches!(first.read(), Err(_) | Ok(Message::Close(_))) {}
    let deadline = Deadline::after(Duration::from_mins(1));
    let mut again = loop {
        match connect(&api, None) {
            Ok(socket) => break socket,
            Err(tungstenite::Error::Http(response)) if response.status() == 503 => {
                assert!(deadline.left().is_some(), "the place was never freed");
                // The server frees it when the socket's task ends.
                std::thread::yield_now();
            }
            Err(e) => panic!("{e}"),
        }
    };
    let reply = ask(&mut again, &json!({"action": "ping"}));
    assert_eq!(reply["status"], "success");

    // A socket that never subscribes is closed after the idle limit.
    let config = Config {
        websocket_idle: Duration::from_millis(200),
        ..Config::default()
    };
    let server = ApiServer::start(&flows, config);
    let mut idle = connect(&server.addr().to_string(), None).unwrap();
    let (messages, reason) = until_closed(&mut idle);
    assert_eq!(reason, "idle");
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["name"], "idle", "{messages:?}");
}

/// A SIP server on a copy of the SIP flows with the hook written, and an
/// API key for `siptest` and one for `other`.
struct Lab {
    server: Server,
    api: String,
    keys: [String; 2],
    _flows: tempfile::TempDir,
}

fn lab(hook: &str, allow_private: bool) -> Lab {
    let flows = tempfile::tempdir().unwrap();
    crate::support::copy_tree(&sip_dir().join("flows"), flows.path());
    write_hook(flows.path(), "siptest", hook);
    std::fs::create_dir_all(flows.path().join("other")).unwrap();
    std::fs::write(
        flows.path().join("other/account.json"),
        json!({"name": "Other"}).to_string(),
    )
    .unwrap();
    let key = |account: &str| {
        create_api_key(
            &FlowsDir::new(flows.path()),
            &AccountId::new(account).unwrap(),
        )
        .unwrap()
    };
    let keys = [key("siptest"), key("other")];
    let server = Server::launch(&Setup {
        trust: Trust::Loopback,
        rtp_ports: 10,
        digest: "md5".to_owned(),
        flows: flows.path().to_path_buf(),
        scripts: sip_dir().join("scripts"),
        extra: if allow_private {
            vec!["--allow-private-http".to_owned()]
        } else {
            Vec::new()
        },
    });
    let api = server.api_address();
    Lab {
        server,
        api,
        keys,
        _flows: flows,
    }
}

impl Lab {
    fn token(&self, which: usize) -> String {
        let reply = send(
            "PUT",
            &format!("http://{}/v2/api_auth", self.api),
            None,
            Some(&json!({"data": {"api_key": self.keys[which]}}).to_string()),
        );
        assert_eq!(reply.status, 201, "{}", reply.text);
        reply.body["auth_token"].as_str().unwrap().to_owned()
    }

    /// One call to the play-and-wait flow, hung up by SIPp; its trace.
    fn call(&self) -> Value {
        let tools = tools("hooks").expect("SIPp");
        let run = Sipp {
            scenario: sip_dir().join("answer-play-bye.xml"),
            service: "+15550100001".to_owned(),
            server: self.server.sip,
            port: free_port(),
            transport: Transport::Udp,
            calls: 1,
            extra: Vec::new(),
        }
        .run(tools);
        assert_eq!(run.code, Some(0), "{}", run.report());
        let traces = self
            .server
            .wait_for_traces(1, Duration::from_mins(1))
            .unwrap_or_else(|e| panic!("{e}\n{}", self.server.log()));
        traces.into_iter().next().unwrap()
    }
}

/// The `hook_event` of the channel events of `call_id` among `received`.
fn channel_events(received: &[Value], call_id: &str) -> Vec<String> {
    received
        .iter()
        .filter(|e| e["call_id"] == call_id)
        .filter_map(|e| e["hook_event"].as_str())
        .filter(|name| name.starts_with("channel_"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_real_call_fires_its_webhooks_and_websocket_events() {
    if tools("a_real_call_fires_its_webhooks_and_websocket_events").is_none() {
        return;
    }
    let (hook, received) = receiver();
    let lab = lab(&hook, true);
    let mut ours = connect(&lab.api, Some(&lab.token(0))).unwrap();
    let reply = subscribe(
        &mut ours,
        "siptest",
        &[
            "call.CHANNEL_CREATE.*",
            "call.CHANNEL_ANSWER.*",
            "call.CHANNEL_DESTROY.*",
        ],
    );
    assert_eq!(reply["status"], "success", "{reply}");
    let other_token = lab.token(1);
    let mut theirs = connect(&lab.api, Some(&other_token)).unwrap();
    let reply = subscribe(&mut theirs, "siptest", &["#"]);
    assert_eq!(reply["status"], "error", "{reply}");
    let reply = subscribe(&mut theirs, "other", &["#"]);
    assert_eq!(reply["status"], "success", "{reply}");

    let trace = lab.call();
    let call_id = trace["call_id"].as_str().unwrap().to_owned();

    // The hook: every event, the first attempt refused (500) and retried.
    let deadline = Deadline::after(Duration::from_mins(1));
    let mut bodies = Vec::new();
    while channel_events(&bodies, &call_id).len() < 3 {
        let left = deadline.left().unwrap_or_else(|| {
            panic!(
                "3 channel events expected, got {bodies:?}\n{}",
                lab.server.log()
            )
        });
        let got = received.recv_timeout(left).unwrap_or_else(|_| {
            panic!("hook events: {bodies:?}\n{}", lab.server.log());
        });
        assert!(got.line.starts_with("POST /hook "), "{}", got.line);
        bodies.push(got.body);
    }
    assert_eq!(
        channel_events(&bodies, &call_id),
        ["channel_create", "channel_answer", "channel_destroy"]
    );
    let create = &bodies[0];
    assert_eq!(create["account_id"], "siptest");
    assert_eq!(create["callee_id_number"], "+15550100001");
    assert_eq!(create["inception"], "offnet");
    assert_eq!(create["source"], "hooks-test", "custom_data merged");
    let destroy = bodies
        .iter()
        .find(|b| b["hook_event"] == "channel_destroy")
        .unwrap();
    assert_eq!(destroy["hangup_cause"], "NORMAL_CLEARING");
    let modules: Vec<&str> = bodies
        .iter()
        .filter(|b| b["hook_event"] == "callflow")
        .filter_map(|b| b["module"].as_str())
        .collect();
    assert_eq!(modules, ["play", "sleep"]);
    assert!(
        lab.server.log().contains("attempt 1 of 3"),
        "{}",
        lab.server.log()
    );

    // The WebSocket of the account: the same three, in order.
    let mut names = Vec::new();
    while names.len() < 3 {
        let event = next_json(&mut ours);
        assert_eq!(event["action"], "event", "{event}");
        assert_eq!(event["data"]["call_id"], call_id.as_str());
        assert_eq!(
            event["routing_key"],
            format!("call.{}.{call_id}", event["name"].as_str().unwrap())
        );
        names.push(event["name"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        names,
        ["CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_DESTROY"]
    );

    // Another account's socket, bound to everything, got none of them.
    let reply = ask(&mut theirs, &json!({"action": "ping", "request_id": "p"}));
    assert_eq!(reply["status"], "success");
}

#[test]
fn a_call_after_its_token_ended_reaches_only_live_subscriptions() {
    if tools("a_call_after_its_token_ended_reaches_only_live_subscriptions").is_none() {
        return;
    }
    let (hook, _received) = receiver();
    let lab = lab(&hook, true);
    let (ended, live) = (lab.token(0), lab.token(0));
    let bindings = ["call.#"];
    let mut gone = connect(&lab.api, Some(&ended)).unwrap();
    assert_eq!(
        subscribe(&mut gone, "siptest", &bindings)["status"],
        "success"
    );
    let mut kept = connect(&lab.api, Some(&live)).unwrap();
    assert_eq!(
        subscribe(&mut kept, "siptest", &bindings)["status"],
        "success"
    );
    let reply = send(
        "DELETE",
        &format!("http://{}/v2/token_auth", lab.api),
        Some(&ended),
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.text);

    let trace = lab.call();
    let call_id = trace["call_id"].as_str().unwrap();
    // The live token's socket: the call's events.
    let mut names = Vec::new();
    while names.len() < 3 {
        let event = next_json(&mut kept);
        assert_eq!(event["action"], "event", "{event}");
        assert_eq!(event["data"]["call_id"], call_id);
        names.push(event["name"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        names,
        ["CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_DESTROY"]
    );
    // The ended token's: told, closed, no event (whether the first event
    // or the periodic re-check found the token ended).
    let (messages, reason) = until_closed(&mut gone);
    assert_eq!(reason, "token ended");
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["name"], "token_ended", "{messages:?}");
    assert_eq!(messages[0]["data"]["dropped"], json!(bindings));
}

#[test]
fn a_hook_to_a_private_address_is_refused() {
    if tools("a_hook_to_a_private_address_is_refused").is_none() {
        return;
    }
    let (hook, received) = receiver();
    let lab = lab(&hook, false);
    lab.call();
    let deadline = Deadline::after(Duration::from_mins(1));
    while !lab.server.log().contains("not sent to") {
        assert!(
            deadline.left().is_some(),
            "no refusal logged:\n{}",
            lab.server.log()
        );
        // Polling the server's console for the refusal, not timing the test.
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = lab.server.log();
    assert!(log.contains("is a loopback"), "{log}");
    // Logged once for the hook and its URL, whatever the events.
    assert_eq!(log.matches("not sent to").count(), 1, "{log}");
    assert!(received.try_recv().is_err(), "a refused hook was sent");
}
