//! The API of real calls on a real server: registrations that real REGISTER
//! requests made (over UDP on loopback, digest computed here), recent calls
//! from trace files, the wiring of `callflow serve --sip`, and the answer
//! without `--sip`.

use std::fmt::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use md5::Md5;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use callflow::api::{Config, create_api_key};
use callflow::ids::AccountId;
use callflow::live::CallLog;
use callflow::store::FlowsDir;

use crate::api::{
    Reply, Server, add_other_account, assert_error, envelope, login, sample_flows, send,
};

const REALM: &str = "acme.sip.example.com";
const REGISTRATIONS: &str = "/v2/accounts/acme/registrations";
const CALLS: &str = "/v2/accounts/acme/calls";

/// Gives a sample device a SIP password.
fn set_password(flows: &Path, device: &str, password: &str) {
    let path = flows.join(format!("acme/devices/{device}.json"));
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    doc["sip"]["password"] = json!(password);
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
}

fn hex_digest<D: Digest>(text: &str) -> String {
    D::digest(text.as_bytes())
        .iter()
        .fold(String::new(), |mut hex, b| {
            write!(hex, "{b:02x}").unwrap();
            hex
        })
}

/// A parameter of a digest challenge (`nonce="..."`).
fn param<'a>(challenge: &'a str, name: &str) -> &'a str {
    let start = challenge
        .find(&format!("{name}=\""))
        .unwrap_or_else(|| panic!("{name} in {challenge}"))
        + name.len()
        + 2;
    let end = challenge[start..].find('"').unwrap() + start;
    &challenge[start..end]
}

/// A SIP phone on a loopback UDP socket.
struct Phone {
    socket: UdpSocket,
    username: String,
    cseq: u32,
}

impl Phone {
    fn new(username: &str) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Self {
            socket,
            username: username.to_owned(),
            cseq: 0,
        }
    }

    fn port(&self) -> u16 {
        self.socket.local_addr().unwrap().port()
    }

    /// Sends one REGISTER and returns the final response.
    fn send(&mut self, server: SocketAddr, contact: &str, authorization: Option<&str>) -> String {
        self.cseq += 1;
        let (user, port, cseq) = (&self.username, self.port(), self.cseq);
        let mut request = format!(
            "REGISTER sip:{REALM} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{user}-{port}-{cseq};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{user}@{REALM}>;tag=t{port}\r\n\
             To: <sip:{user}@{REALM}>\r\n\
             Call-ID: reg-{user}-{port}\r\n\
             CSeq: {cseq} REGISTER\r\n\
             Contact: <{contact}>\r\n\
             Expires: 600\r\n\
             User-Agent: callflow-test phone\r\n"
        );
        if let Some(authorization) = authorization {
            request.push_str(&format!("Authorization: {authorization}\r\n"));
        }
        request.push_str("Content-Length: 0\r\n\r\n");
        self.socket.send_to(request.as_bytes(), server).unwrap();
        let mut buffer = [0_u8; 8192];
        loop {
            let n = self.socket.recv(&mut buffer).expect("a SIP response");
            let response = String::from_utf8_lossy(&buffer[..n]).into_owned();
            // Provisional responses (1xx) are not the answer.
            if !response.starts_with("SIP/2.0 1") {
                return response;
            }
        }
    }

    /// Registers `contact` with digest credentials (MD5 or SHA-256, as the
    /// challenge offers), as a phone does: challenged, then answered.
    fn register(&mut self, server: SocketAddr, contact: &str, password: &str, sha256: bool) {
        let answer = self.try_register(server, contact, password, sha256);
        assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    }

    /// Whether a registration with `password` (MD5) is refused.
    fn register_refused(&mut self, server: SocketAddr, contact: &str, password: &str) -> bool {
        let answer = self.try_register(server, contact, password, false);
        answer.starts_with("SIP/2.0 401") || answer.starts_with("SIP/2.0 403")
    }

    /// A challenged REGISTER answered with `password`: the final response.
    fn try_register(
        &mut self,
        server: SocketAddr,
        contact: &str,
        password: &str,
        sha256: bool,
    ) -> String {
        let challenged = self.send(server, contact, None);
        assert!(challenged.starts_with("SIP/2.0 401"), "{challenged}");
        let algorithm = if sha256 { "SHA-256" } else { "MD5" };
        let challenge = challenged
            .lines()
            .find(|l| {
                l.to_ascii_lowercase().starts_with("www-authenticate:")
                    && l.contains(&format!("algorithm={algorithm}"))
            })
            .unwrap_or_else(|| panic!("an {algorithm} challenge in {challenged}"));
        let (realm, nonce) = (param(challenge, "realm"), param(challenge, "nonce"));
        assert_eq!(realm, REALM);
        let hash = |text: &str| {
            if sha256 {
                hex_digest::<Sha256>(text)
            } else {
                hex_digest::<Md5>(text)
            }
        };
        let uri = format!("sip:{REALM}");
        let ha1 = hash(&format!("{}:{realm}:{password}", self.username));
        let ha2 = hash(&format!("REGISTER:{uri}"));
        let response = hash(&format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
        let authorization = format!(
            "Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{response}\", algorithm={algorithm}, qop=auth, nc=00000001, cnonce=\"c0ffee\"",
            self.username
        );
        self.send(server, contact, Some(&authorization))
    }
}

/// Every page of a listing, following `next_start_key`.
fn walk(server: &Server, path: &str, token: &str, page_size: usize) -> Vec<Value> {
    let mut items = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let mut query = format!("{path}?page_size={page_size}");
        if let Some(key) = &next {
            query.push_str(&format!("&start_key={key}"));
        }
        let page = send("GET", &server.url(&query), Some(token), None);
        assert_eq!(page.status, 200, "{}", page.text);
        let data = page.body["data"].as_array().unwrap();
        assert!(data.len() <= page_size);
        assert_eq!(page.body["page_size"], data.len());
        items.extend(data.iter().cloned());
        match page.body.get("next_start_key").and_then(Value::as_str) {
            Some(key) => next = Some(key.to_owned()),
            None => return items,
        }
    }
}

fn all(server: &Server, path: &str, token: &str) -> Reply {
    let reply = send(
        "GET",
        &server.url(&format!("{path}?paginate=false")),
        Some(token),
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply
}

/// 401 without a token, 403 for another account, 404 for an id that
/// cannot be an account.
fn assert_guarded(server: &Server, token: &str, path: &str) {
    assert_error(
        &send("GET", &server.url(path), None, None),
        401,
        "invalid_credentials",
    );
    let other = path.replace("/acme/", "/other/");
    assert_error(
        &send("GET", &server.url(&other), Some(token), None),
        403,
        "forbidden",
    );
    let bad = path.replace("/acme/", "/..%2F..%2Fetc/");
    assert_error(
        &send("GET", &server.url(&bad), Some(token), None),
        404,
        "bad_identifier",
    );
}

#[test]
fn registrations_list_what_real_registers_made() {
    let (dir, flows) = sample_flows();
    set_password(&flows, "dev_alice", "alice-secret");
    set_password(&flows, "dev_bob", "bob-secret");
    let server = Server::start_live(
        &flows,
        &dir.path().join("traces"),
        &dir.path().join("cache"),
    );
    let sip = server.sip.unwrap();
    let token = login(&server, &flows, "acme");
    let empty = all(&server, REGISTRATIONS, &token);
    assert_eq!(empty.body["data"], json!([]));

    // Bob with SHA-256, then Alice with MD5 from two phones (two
    // contacts): the listing sorts by username, then contact.
    let mut bob = Phone::new("bob-desk");
    bob.register(sip, "sip:bob-desk@127.0.0.1:5062", "bob-secret", true);
    let mut alice_a = Phone::new("alice-desk");
    alice_a.register(sip, "sip:alice-desk@127.0.0.1:5071", "alice-secret", false);
    let mut alice_b = Phone::new("alice-desk");
    alice_b.register(sip, "sip:alice-desk@127.0.0.1:5070", "alice-secret", false);

    let listed = all(&server, REGISTRATIONS, &token);
    let data = listed.body["data"].as_array().unwrap();
    let order: Vec<(&str, &str)> = data
        .iter()
        .map(|r| {
            (
                r["username"].as_str().unwrap(),
                r["contact"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            ("alice-desk", "sip:alice-desk@127.0.0.1:5070"),
            ("alice-desk", "sip:alice-desk@127.0.0.1:5071"),
            ("bob-desk", "sip:bob-desk@127.0.0.1:5062"),
        ],
        "{}",
        listed.text
    );
    assert!(listed.body.get("next_start_key").is_none());

    // Kazoo's fields.
    let first = &data[0];
    let registered_at = first["registered_at"].as_i64().unwrap();
    assert_eq!(
        first["event_timestamp"].as_i64().unwrap() - registered_at,
        62_167_219_200,
        "Gregorian seconds"
    );
    assert_eq!(
        first,
        &json!({
            "account_name": "Acme Corp",
            "account_realm": REALM,
            "authorizing_type": "device",
            "owner_id": "alice",
            "authorizing_id": "dev_alice",
            "call_id": format!("reg-alice-desk-{}", alice_b.port()),
            "contact": "sip:alice-desk@127.0.0.1:5070",
            "event_timestamp": first["event_timestamp"],
            "expires": 600,
            "network_ip": "127.0.0.1",
            "network_port": alice_b.port(),
            "realm": REALM,
            "registered_at": registered_at,
            "transport": "udp",
            "user_agent": "callflow-test phone",
            "username": "alice-desk",
        })
    );

    // Pages of 2, filters, and the guards every account route has.
    assert_eq!(walk(&server, REGISTRATIONS, &token, 2), *data);
    assert_eq!(walk(&server, REGISTRATIONS, &token, 1), *data);
    let bobs = send(
        "GET",
        &server.url(&format!("{REGISTRATIONS}?filter_username=bob-desk")),
        Some(&token),
        None,
    );
    assert_eq!(
        bobs.body["data"].as_array().unwrap().len(),
        1,
        "{}",
        bobs.text
    );
    assert_eq!(bobs.body["data"][0]["owner_id"], "bob");
    assert_guarded(&server, &token, REGISTRATIONS);
    let bad = send(
        "GET",
        &server.url(&format!("{REGISTRATIONS}?start_key=nope")),
        Some(&token),
        None,
    );
    assert_error(&bad, 400, "invalid request");
}

/// A call's trace document, as the live backend writes it.
fn trace(account: &str, call_id: &str, start: &str, to: &str) -> Value {
    json!({
        "call_id": call_id, "sip_call_id": format!("sip-{call_id}"), "account_id": account,
        "from": "1001", "caller_id_name": "Alice", "to": to, "inception": "onnet",
        "callflow_id": if to == "1000" { json!("main") } else { Value::Null },
        "start": start, "duration_ms": 4200, "hangup_cause": "NORMAL_CLEARING",
        "end": "caller_hangup", "events": [{"t_ms": 0, "event": "start"}],
    })
}

/// Writes traces the way a running server does, before the server starts
/// (it indexes what is there): in an order that is not the start order.
fn write_traces(traces: &Path) -> Vec<Value> {
    let log = CallLog::open(traces).unwrap();
    let documents = vec![
        trace("acme", "c2", "2026-12-06T10:00:00Z", "1000"),
        trace("acme", "c4", "2026-12-07T08:00:00Z", "1000"),
        trace("acme", "c1", "2026-12-05T09:00:00Z", "1100"),
        // Later within the same second than c2: a text sort gets it wrong.
        trace("acme", "c3", "2026-12-06T10:00:00.5Z", "1000"),
        trace("acme", "c5", "2026-12-06T23:59:59.999Z", "1000"),
        // A start that does not parse sorts as the oldest.
        trace("acme", "c0", "2026-12-08-not-a-time", "1000"),
        trace("other", "o1", "2026-12-07T09:00:00Z", "1000"),
    ];
    for document in &documents {
        log.write(document).unwrap();
    }
    documents
}

#[test]
fn calls_list_newest_first_and_give_their_traces() {
    let (dir, flows) = sample_flows();
    add_other_account(&flows);
    let traces = dir.path().join("traces");
    let documents = write_traces(&traces);
    let server = Server::start_live(&flows, &traces, &dir.path().join("cache"));
    let token = login(&server, &flows, "acme");

    let listed = all(&server, CALLS, &token);
    let data = listed.body["data"].as_array().unwrap();
    let ids: Vec<&str> = data
        .iter()
        .map(|c| c["call_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c4", "c5", "c3", "c2", "c1", "c0"], "{}", listed.text);
    assert_eq!(
        data[0],
        json!({
            "call_id": "c4", "from": "1001", "to": "1000", "callflow_id": "main",
            "start": "2026-12-07T08:00:00Z", "duration_ms": 4200,
            "hangup_cause": "NORMAL_CLEARING", "end": "caller_hangup",
        })
    );
    assert_eq!(data[4]["callflow_id"], Value::Null);
    assert_eq!(walk(&server, CALLS, &token, 2), *data);
    assert_eq!(walk(&server, CALLS, &token, 4), *data);
    let default_page = send("GET", &server.url(CALLS), Some(&token), None);
    assert_eq!(default_page.body["page_size"], 6, "{}", default_page.text);
    let to_menu = send(
        "GET",
        &server.url(&format!("{CALLS}?paginate=false&filter_to=1100")),
        Some(&token),
        None,
    );
    assert_eq!(to_menu.body["data"][0]["call_id"], "c1", "{}", to_menu.text);
    assert_eq!(to_menu.body["data"].as_array().unwrap().len(), 1);

    // One call: its whole trace document.
    let one = send(
        "GET",
        &server.url(&format!("{CALLS}/c3")),
        Some(&token),
        None,
    );
    assert_eq!(one.status, 200, "{}", one.text);
    assert_eq!(one.body["data"], documents[3]);

    // Unknown calls, another account's, and ids that cannot be a call's.
    for id in ["nope", "o1", "a.b", "..%2F..%2Fetc%2Fpasswd", "%20"] {
        assert_error(
            &send(
                "GET",
                &server.url(&format!("{CALLS}/{id}")),
                Some(&token),
                None,
            ),
            404,
            "bad_identifier",
        );
    }
    assert_guarded(&server, &token, CALLS);
    assert_guarded(&server, &token, &format!("{CALLS}/c3"));

    // A trace that went away from disk: the server says so, and stays up.
    std::fs::remove_file(traces.join("acme/2026-12-05/c1.json")).unwrap();
    assert_error(
        &send(
            "GET",
            &server.url(&format!("{CALLS}/c1")),
            Some(&token),
            None,
        ),
        500,
        "internal_error",
    );
    assert_eq!(
        all(&server, CALLS, &token).body["data"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
}

#[test]
fn without_sip_the_real_call_routes_say_so() {
    let (_dir, flows) = sample_flows();
    let server = Server::start(&flows, Config::default());
    let token = login(&server, &flows, "acme");
    for path in [REGISTRATIONS, CALLS, "/v2/accounts/acme/calls/c1"] {
        let reply = send("GET", &server.url(path), Some(&token), None);
        assert_error(&reply, 404, "real_calls_off");
        assert_eq!(
            reply.body["data"]["message"],
            "real calls are off: start the server with --sip ADDR"
        );
        // Credentials are checked first.
        assert_guarded(&server, &token, path);
    }
}

/// Kills the child process on drop (a failed assertion included).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_with_sip_shows_its_traces_and_registrations() {
    let (dir, flows) = sample_flows();
    let traces = dir.path().join("traces");
    write_traces(&traces);
    let key = create_api_key(&FlowsDir::new(&flows), &AccountId::new("acme").unwrap()).unwrap();
    let mut child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_callflow"))
            .args(["serve", "--listen", "127.0.0.1:0", "--sip", "127.0.0.1:0"])
            .args([
                "--no-watch",
                "--call-workers",
                "1",
                "--rtp-ports",
                "40100-40199",
            ])
            .arg("--flows")
            .arg(&flows)
            .arg("--traces")
            .arg(&traces)
            .env_remove("RUST_LOG")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (address, before) = crate::support::serving_address(&mut child.0);
    // Real calls start first: their line comes before the server's.
    let [sip_line] = before.as_slice() else {
        panic!("{before:?}")
    };
    assert!(
        sip_line.starts_with("callflow: SIP on 127.0.0.1:") && sip_line.contains("(UDP and TCP)"),
        "{sip_line}"
    );
    let api = format!("http://{address}/v2");
    let auth = send(
        "PUT",
        &format!("{api}/api_auth"),
        None,
        Some(&envelope(&json!({"api_key": key}))),
    );
    assert_eq!(auth.status, 201, "{}", auth.text);
    let token = auth.body["auth_token"].as_str().unwrap();
    // The traces written before it started, and no registration yet.
    for (route, count) in [("calls", 6), ("registrations", 0)] {
        let reply = send(
            "GET",
            &format!("{api}/accounts/acme/{route}"),
            Some(token),
            None,
        );
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(
            reply.body["data"].as_array().unwrap().len(),
            count,
            "{route}"
        );
    }
}

/// A device provisioned through the REST API takes real registrations at
/// once (the write is published to the SIP directory), a password changed
/// with a PATCH replaces the old one, and a deleted device registers no
/// more.
#[test]
fn a_device_written_through_the_api_registers_at_once() {
    let (dir, flows) = sample_flows();
    let server = Server::start_live(
        &flows,
        &dir.path().join("traces"),
        &dir.path().join("cache"),
    );
    let sip = server.sip.unwrap();
    let token = login(&server, &flows, "acme");
    let devices = server.url("/v2/accounts/acme/devices");
    let created = send(
        "PUT",
        &devices,
        Some(&token),
        Some(
            &json!({"data": {"name": "Dana desk phone", "owner_id": "alice",
                "sip": {"username": "dana-desk", "password": "first-Pa55"}}})
            .to_string(),
        ),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["data"]["id"].as_str().unwrap().to_owned();
    let mut phone = Phone::new("dana-desk");
    phone.register(sip, "sip:dana-desk@127.0.0.1:5090", "first-Pa55", false);
    let listed = all(&server, REGISTRATIONS, &token);
    assert_eq!(
        listed.body["data"][0]["username"], "dana-desk",
        "{}",
        listed.text
    );
    assert_eq!(
        listed.body["data"][0]["authorizing_id"],
        id.as_str(),
        "{}",
        listed.text
    );

    let device = format!("{devices}/{id}");
    let patched = send(
        "PATCH",
        &device,
        Some(&token),
        Some(&json!({"data": {"sip": {"password": "second-Pa55"}}}).to_string()),
    );
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert!(phone.register_refused(sip, "sip:dana-desk@127.0.0.1:5090", "first-Pa55"));
    phone.register(sip, "sip:dana-desk@127.0.0.1:5090", "second-Pa55", true);

    let deleted = send("DELETE", &device, Some(&token), None);
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    assert!(phone.register_refused(sip, "sip:dana-desk@127.0.0.1:5090", "second-Pa55"));
}
