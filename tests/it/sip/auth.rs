//! Digest authentication with the raw client: REGISTER and device
//! INVITEs with good, wrong, unknown, replayed and disabled credentials,
//! MD5 and SHA-256 (RFC 8760). SIPp 3.6.1 cannot answer these challenges:
//! it answers only MD5 and takes the first challenge, which offers SHA-256.

use std::net::UdpSocket;
use std::time::Duration;

use serde_json::Value;

use callflow::sim::scenario::Expect;
use callflow::testing;
use callflow::trace::Trace;

use super::TRACES_TIMEOUT;
use super::harness::{Server, Trust, free_port, tools};
use super::raw::{Algorithm, Answer, Challenge, Client, Dialog, Message, authorization, request};

/// The realm of the test account, and the URI of its registrar.
const REALM: &str = "siptest.example.com";
const REGISTRAR: &str = "sip:siptest.example.com";

/// `Ok` when `response` has `status`, else what it is instead.
fn expect_status(response: &Message, status: u16, why: &str) -> Result<(), String> {
    if response.status() == Some(status) {
        Ok(())
    } else {
        Err(format!(
            "{why}: {status} expected; the response:\n{}",
            response.text
        ))
    }
}

/// The challenge of a 401 or 407 (`header`: `WWW-Authenticate` or
/// `Proxy-Authenticate`) for `algorithm`; the response must offer SHA-256
/// then MD5 (RFC 8760), in our realm, with qop auth.
fn challenge_for(
    response: &Message,
    status: u16,
    header: &str,
    algorithm: Algorithm,
) -> Result<Challenge, String> {
    expect_status(response, status, "a challenge")?;
    let offered = Challenge::of(response, header);
    let names: Vec<&str> = offered.iter().map(|c| c.algorithm.as_str()).collect();
    let proper = |c: &Challenge| c.realm == REALM && c.qop.as_deref() == Some("auth");
    if names != ["SHA-256", "MD5"] || !offered.iter().all(proper) {
        return Err(format!(
            "a challenge (realm {REALM}, qop auth) offering SHA-256 then MD5 expected:\n{}",
            response.text
        ));
    }
    Ok(offered
        .into_iter()
        .find(|c| c.algorithm == algorithm.name())
        .unwrap())
}

/// REGISTERs from `alice`'s phone, in one dialog.
struct Phone<'a> {
    client: &'a Client,
    dialog: Dialog<'a>,
    cseq: std::cell::Cell<u32>,
}

impl Phone<'_> {
    fn register(&self, authorization: Option<&str>) -> Message {
        self.cseq.set(self.cseq.get() + 1);
        let cseq = format!("{} REGISTER", self.cseq.get());
        let mut headers = self.dialog.headers(&Client::branch(), &cseq, None);
        headers.push(("Expires", "300".to_owned()));
        if let Some(value) = authorization {
            headers.push(("Authorization", value.to_owned()));
        }
        self.client
            .send(&request("REGISTER", REGISTRAR, &headers, ""));
        self.client.final_response("REGISTER")
    }

    /// A REGISTER without credentials: its challenge for `algorithm`.
    fn challenge(&self, algorithm: Algorithm) -> Result<Challenge, String> {
        challenge_for(&self.register(None), 401, "WWW-Authenticate", algorithm)
    }

    /// A REGISTER answering `challenge`.
    fn answer(
        &self,
        challenge: &Challenge,
        algorithm: Algorithm,
        user: (&str, &str),
        nc: u32,
    ) -> (String, Message) {
        let value = authorization(
            challenge,
            &Answer {
                algorithm,
                username: user.0,
                password: user.1,
                method: "REGISTER",
                uri: REGISTRAR,
                nc,
                cnonce: "0a4f113b",
            },
        );
        let response = self.register(Some(&value));
        (value, response)
    }
}

const ALICE: (&str, &str) = ("alice", "alice-secret-1");

/// REGISTER with good, wrong, missing and replayed credentials, MD5 and
/// SHA-256 (RFC 8760), a disabled device and an unknown user: the raw
/// client computes the digests (SIPp 3.6.1 answers only MD5 and takes the
/// first challenge, which offers SHA-256).
#[test]
fn sip_register_digest() {
    if tools("sip_register_digest").is_none() {
        return;
    }
    let server = Server::start(Trust::Port(free_port()), 2);
    let client = Client::new(server.sip);
    let phone = Phone {
        client: &client,
        dialog: Dialog::new(&client, "alice", format!("sip:alice@{REALM}"), "reg"),
        cseq: std::cell::Cell::new(0),
    };
    let registered = register_good(&phone).and_then(|()| register_refused(&phone));
    if let Err(failure) = registered {
        panic!("{failure}\n--- server log\n{}", server.log());
    }
}

/// Good credentials (MD5 and SHA-256) register; a replay does not.
fn register_good(phone: &Phone<'_>) -> Result<(), String> {
    let binding = format!("<sip:alice@127.0.0.1:{}>;expires=300", phone.client.port);
    let registered = |response: &Message| {
        expect_status(response, 200, "good credentials")?;
        if response.all("Contact").contains(&binding.as_str()) {
            Ok(())
        } else {
            Err(format!("Contact: {binding} expected:\n{}", response.text))
        }
    };
    let md5 = phone.challenge(Algorithm::Md5)?;
    let (good, response) = phone.answer(&md5, Algorithm::Md5, ALICE, 1);
    registered(&response)?;
    // The same credentials in a new request (same nonce, same nonce
    // count): a replay. The next count of the nonce is fine.
    expect_status(&phone.register(Some(&good)), 403, "a replayed nonce count")?;
    registered(&phone.answer(&md5, Algorithm::Md5, ALICE, 2).1)?;
    let sha = phone.challenge(Algorithm::Sha256)?;
    registered(&phone.answer(&sha, Algorithm::Sha256, ALICE, 1).1)
}

/// A wrong password, an unknown user and a disabled device are refused;
/// the first two get the same answer (no user enumeration).
fn register_refused(phone: &Phone<'_>) -> Result<(), String> {
    let wrong = phone.challenge(Algorithm::Md5)?;
    let wrong = phone
        .answer(&wrong, Algorithm::Md5, ("alice", "not-her-password"), 1)
        .1;
    expect_status(&wrong, 403, "a wrong password")?;
    let unknown = phone.challenge(Algorithm::Md5)?;
    let unknown = phone
        .answer(&unknown, Algorithm::Md5, ("mallory", ALICE.1), 1)
        .1;
    if same_but_ids(&wrong) != same_but_ids(&unknown) {
        return Err(format!(
            "an unknown user and a wrong password must get the same answer:\n{}\n---\n{}",
            wrong.text, unknown.text
        ));
    }
    let disabled = phone.challenge(Algorithm::Md5)?;
    let disabled = phone.answer(
        &disabled,
        Algorithm::Md5,
        ("disabled", "disabled-secret-1"),
        1,
    );
    expect_status(&disabled.1, 403, "a disabled device")
}

/// A response with what differs between two requests blanked: Via
/// branches, tags and the `CSeq` number.
fn same_but_ids(response: &Message) -> String {
    let blank = |text: &str, key: &str| {
        text.split(';')
            .map(|part| match part.trim().strip_prefix(key) {
                Some(_) => format!("{key}*"),
                None => part.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(";")
    };
    let mut lines = vec![response.start.clone()];
    for (name, value) in &response.headers {
        let value = match name.to_ascii_lowercase().as_str() {
            "via" => blank(value, "branch="),
            "to" | "from" => blank(value, "tag="),
            "cseq" => value.split_whitespace().skip(1).collect(),
            _ => value.clone(),
        };
        lines.push(format!("{name}: {value}"));
    }
    lines.join("\n")
}

/// Counts the PCMU packets waiting on `socket` (what the server sent).
fn drain_rtp(socket: &UdpSocket) -> usize {
    socket.set_nonblocking(true).unwrap();
    let mut buf = [0_u8; 2048];
    let mut count = 0;
    while let Ok(len) = socket.recv(&mut buf) {
        if rtp_rs::RtpReader::new(&buf[..len]).is_ok_and(|p| p.payload_type() == 0) {
            count += 1;
        }
    }
    count
}

/// `alice`'s phone calling extension 1001, with an RTP socket of its own.
struct Caller<'a> {
    client: &'a Client,
    uri: String,
    sdp: String,
    rtp: UdpSocket,
}

impl Caller<'_> {
    /// One INVITE transaction (a failure is acknowledged: same branch).
    fn invite(&self, dialog: &Dialog<'_>, auth: Option<&str>) -> Message {
        let branch = Client::branch();
        let mut headers = dialog.headers(&branch, "1 INVITE", None);
        headers.push(("Content-Type", "application/sdp".to_owned()));
        if let Some(value) = auth {
            headers.push(("Proxy-Authorization", value.to_owned()));
        }
        self.client
            .send(&request("INVITE", &self.uri, &headers, &self.sdp));
        let response = self.client.final_response("INVITE");
        if response.status() != Some(200) {
            let ack = dialog.headers(&branch, "1 ACK", response.to_tag());
            self.client.send(&request("ACK", &self.uri, &ack, ""));
        }
        response
    }

    /// An INVITE without credentials, then one answering its challenge as
    /// `user`; the final response to the second.
    fn call(
        &self,
        name: &str,
        algorithm: Algorithm,
        user: (&str, &str),
    ) -> Result<(Dialog<'_>, Message), String> {
        let dialog = Dialog::new(self.client, "alice", self.uri.clone(), name);
        let challenge = challenge_for(
            &self.invite(&dialog, None),
            407,
            "Proxy-Authenticate",
            algorithm,
        )?;
        let value = authorization(
            &challenge,
            &Answer {
                algorithm,
                username: user.0,
                password: user.1,
                method: "INVITE",
                uri: &self.uri,
                nc: 1,
                cnonce: "c0ffee",
            },
        );
        let response = self.invite(&dialog, Some(&value));
        Ok((dialog, response))
    }

    /// A call that authenticates: answered with SDP, acknowledged; the
    /// flow plays hello.wav (1 s) to us and hangs up.
    fn answered(&self, algorithm: Algorithm) -> Result<(), String> {
        let (dialog, answered) = self.call(algorithm.name(), algorithm, ALICE)?;
        expect_status(&answered, 200, algorithm.name())?;
        if !answered.body.contains("m=audio ") {
            return Err(format!("no SDP answer:\n{}", answered.text));
        }
        let target = answered.contact_uri().unwrap_or(&self.uri).to_owned();
        let ack = dialog.headers(&Client::branch(), "1 ACK", answered.to_tag());
        self.client.send(&request("ACK", &target, &ack, ""));
        let bye = self
            .client
            .request_from_server("BYE", Duration::from_secs(15));
        self.client.ok(&bye);
        let packets = drain_rtp(&self.rtp);
        if packets < 40 {
            return Err(format!(
                "{}: {packets} RTP packets of 1 s of audio reached the caller; 50 expected",
                algorithm.name()
            ));
        }
        Ok(())
    }
}

/// INVITEs from a device: without credentials a 407, with a wrong
/// password or an unknown user a 403 (no flow runs for any of them), with
/// good credentials (MD5, then SHA-256) the call runs in the device's
/// account, on-net, with `calling_device` set, and its audio reaches the
/// device.
#[test]
fn sip_device_call() {
    if tools("sip_device_call").is_none() {
        return;
    }
    let server = Server::start(Trust::Port(free_port()), 10);
    if let Err(failure) = device_calls(&server) {
        panic!("{failure}\n--- server log\n{}", server.log());
    }
}

fn device_calls(server: &Server) -> Result<(), String> {
    let client = Client::new(server.sip);
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let caller = Caller {
        client: &client,
        uri: format!("sip:1001@{}", server.sip),
        sdp: format!(
            "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
            rtp.local_addr().unwrap().port()
        ),
        rtp,
    };
    for (name, user) in [
        ("wrong-password", ("alice", "not-her-password")),
        ("unknown-user", ("mallory", ALICE.1)),
    ] {
        let (_, refused) = caller.call(name, Algorithm::Md5, user)?;
        expect_status(&refused, 403, name)?;
    }
    caller.answered(Algorithm::Md5)?;
    caller.answered(Algorithm::Sha256)?;
    // Two calls ran; the six refused INVITEs left no trace.
    let traces = server.wait_for_traces(2, TRACES_TIMEOUT)?;
    if traces.len() != 2 {
        return Err(format!("2 traces expected: {traces:#?}"));
    }
    let expect: Expect = serde_json::from_value(serde_json::json!({
        "modules": ["play"],
        "end_reason": "flow_end",
        "events": [
            {"event": "answer"},
            {"event": "play", "media": "hello", "reason": "completed"},
            {"event": "hangup", "cause": "NORMAL_CLEARING", "by": "system"}
        ]
    }))
    .unwrap();
    let fields = [
        ("account_id", "siptest"),
        ("inception", "onnet"),
        ("calling_device", "dev_alice"),
        ("callflow_id", "extension"),
        ("to", "1001"),
        ("from", "1001"),
    ];
    for trace in &traces {
        let mut problems = testing::check(&Trace::from_json(trace).unwrap(), &expect);
        for (field, value) in fields {
            if trace.get(field).and_then(Value::as_str) != Some(value) {
                problems.push(format!("the trace's {field} is not {value:?}"));
            }
        }
        if !problems.is_empty() {
            return Err(format!("{}\n{trace:#}", problems.join("\n")));
        }
    }
    Ok(())
}
