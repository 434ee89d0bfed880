//! Real calls against real SIP software, on 127.0.0.1 with ephemeral ports:
//! the `callflow` binary serving SIP (`callflow serve --sip`) on a temporary
//! copy of `tests/sip/flows`, called by SIPp 3.6.1 (`tests/sip/<case>.xml`,
//! each with a sidecar `<case>.json` saying what to dial, from where, what
//! SIPp must see and what the call's trace must show: the inline
//! expectations of `callflow test`), and by a raw SIP client where SIPp
//! cannot go (digest answers, replays, SHA-256). `tests/sip/README.md` says
//! what each case checks and how to run or skip them.

mod harness;
mod raw;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use callflow::sim::scenario::Expect;
use callflow::testing;
use callflow::trace::Trace;

use harness::{
    Deadline, Server, Sipp, Tools, Transport, Trust, free_port, raw_packets_allowed, sip_dir,
    sox_stat, tools,
};
use raw::{Algorithm, Answer, Challenge, Client, Dialog, Message, authorization, request};

/// How long a server may take to write the traces of calls that ended.
const TRACES_TIMEOUT: Duration = Duration::from_mins(1);

/// The number whose flow answers 486 at once: a call to it proves, once its
/// trace is written, that calls before it left no trace.
const BARRIER: &str = "+15550100099";

/// Who calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Source {
    /// A `--trunk` source: runs flows without credentials.
    #[default]
    Trunk,
    /// Neither a trunk nor authenticated.
    Untrusted,
}

/// A sidecar: `tests/sip/<case>.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[allow(dead_code, reason = "documentation of the case, read by people")]
    description: String,
    /// The SIPp scenario in `tests/sip/` (default `<case>.xml`).
    #[serde(default)]
    scenario: Option<String>,
    /// What SIPp dials (`-s`: the user part of the Request-URI).
    dial: String,
    #[serde(default)]
    source: Source,
    #[serde(default)]
    transport: Transport,
    /// More arguments for SIPp (`-r 50`, ...).
    #[serde(default)]
    sipp_args: Vec<String>,
    /// Calls SIPp makes (`-m`).
    #[serde(default = "one")]
    calls: u32,
    /// SIPp's exit code (0: every call succeeded).
    #[serde(default)]
    exit_code: i32,
    /// RTP ports the server gets.
    #[serde(default = "rtp_ports")]
    rtp_ports: u16,
    /// Messages SIPp must have received, by the start of their first line
    /// (`"SIP/2.0 487"`): how many.
    #[serde(default)]
    received: BTreeMap<String, usize>,
    /// Traces the server must write (default: one per call from a trunk,
    /// none from an untrusted source).
    #[serde(default)]
    traces: Option<usize>,
    /// What every trace must show.
    #[serde(default)]
    expect: Option<Expect>,
    /// Fields every trace document must have, with these values.
    #[serde(default)]
    document: serde_json::Map<String, Value>,
    /// The recording the call made.
    #[serde(default)]
    recording: Option<RecordingCheck>,
}

fn one() -> u32 {
    1
}

fn rtp_ports() -> u16 {
    40
}

/// What a call's recording must hold (checked with sox).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordingCheck {
    /// How long the caller's audio lasted.
    seconds: f64,
    /// How far the WAV's length may be from it.
    tolerance: f64,
    /// The least RMS amplitude (0..1) of the WAV.
    min_rms: f64,
}

/// Every sidecar of `tests/sip/`, by case name.
fn cases() -> Vec<(String, Case)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(sip_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter(|p| p.file_stem().is_some_and(|s| s != "malformed"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let case =
                serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(&text))
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (name, case)
        })
        .collect()
}

/// The text of a panic, for a failure message.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic".to_owned())
}

/// A check that runs on its own thread.
type Job<'a> = Box<dyn FnOnce() -> Result<(), String> + Send + 'a>;

/// Runs `jobs` at once (each waits on real calls, not on the CPU) and fails
/// with every failure.
fn run_all(jobs: Vec<(String, Job<'_>)>) {
    let failures: Vec<String> = std::thread::scope(|scope| {
        let running: Vec<_> = jobs
            .into_iter()
            .map(|(name, job)| (name, scope.spawn(job)))
            .collect();
        running
            .into_iter()
            .filter_map(|(name, handle)| match handle.join() {
                Ok(Ok(())) => None,
                Ok(Err(failure)) => Some(format!("=== {name}: {failure}")),
                Err(panic) => Some(format!("=== {name} panicked: {}", panic_text(&*panic))),
            })
            .collect()
    });
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

/// Every SIPp case of `tests/sip/*.json`, each against its own server.
#[test]
fn sip_scenarios() {
    let Some(tools) = tools("sip_scenarios") else {
        return;
    };
    let cases = cases();
    assert!(cases.len() >= 10, "the SIPp cases are missing");
    let jobs = cases
        .iter()
        .map(|(name, case)| {
            let job: Job<'_> = Box::new(move || run_case(tools, name, case));
            (name.clone(), job)
        })
        .collect();
    run_all(jobs);
}

/// Runs one case: a server, SIPp, then the checks of the sidecar.
fn run_case(tools: &Tools, name: &str, case: &Case) -> Result<(), String> {
    let scenario = sip_dir().join(case.scenario.clone().unwrap_or(format!("{name}.xml")));
    let text = std::fs::read_to_string(&scenario).map_err(|e| format!("{e}"))?;
    if text.contains("play_pcap_audio") && !raw_packets_allowed(name)? {
        return Ok(());
    }
    // The barrier call comes from a port the server trusts; the case's
    // calls come from another one, trusted only when the case says so.
    let barrier_port = free_port();
    let trust = match case.source {
        Source::Trunk => Trust::Loopback,
        Source::Untrusted => Trust::Port(barrier_port),
    };
    let server = Server::start(trust, case.rtp_ports);
    let run = Sipp {
        scenario,
        service: case.dial.clone(),
        server: server.sip,
        port: free_port(),
        transport: case.transport,
        calls: case.calls,
        extra: case.sipp_args.clone(),
    }
    .run(tools);
    let failed =
        |what: String| format!("{what}\n{}\n--- server log\n{}", run.report(), server.log());
    if run.code != Some(case.exit_code) {
        return Err(failed(format!(
            "SIPp exited with {:?}, {} expected",
            run.code, case.exit_code
        )));
    }
    if case.exit_code == 0 && run.successful_calls() != Some(u64::from(case.calls)) {
        return Err(failed(format!(
            "SIPp counted {:?} successful calls, {} expected",
            run.successful_calls(),
            case.calls
        )));
    }
    for (start, count) in &case.received {
        let got = run.received(start);
        if got != *count {
            return Err(failed(format!(
                "SIPp received {got} message(s) starting {start:?}, {count} expected"
            )));
        }
    }
    let expected = case.traces.unwrap_or(match case.source {
        Source::Trunk => case.calls as usize,
        Source::Untrusted => 0,
    });
    if expected == 0 {
        return no_trace_but_the_barrier(tools, &server, barrier_port).map_err(failed);
    }
    let traces = server
        .wait_for_traces(expected, TRACES_TIMEOUT)
        .map_err(&failed)?;
    if traces.len() != expected {
        return Err(failed(format!(
            "{} traces written, {expected} expected",
            traces.len()
        )));
    }
    let problems: Vec<String> = traces
        .iter()
        .flat_map(|trace| check_trace(case, &server, trace))
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(failed(problems.join("\n")))
    }
}

/// Calls the barrier number from the trusted port and waits for its trace:
/// then it must be the only trace (what came before ran no flow).
fn no_trace_but_the_barrier(tools: &Tools, server: &Server, port: u16) -> Result<(), String> {
    let run = Sipp {
        scenario: sip_dir().join("busy-486.xml"),
        service: BARRIER.to_owned(),
        server: server.sip,
        port,
        transport: Transport::Udp,
        calls: 1,
        extra: Vec::new(),
    }
    .run(tools);
    if run.code != Some(0) {
        return Err(format!("the barrier call failed:\n{}", run.report()));
    }
    let traces = server.wait_for_traces(1, TRACES_TIMEOUT)?;
    let to: Vec<&str> = traces
        .iter()
        .map(|t| t.get("to").and_then(Value::as_str).unwrap_or("?"))
        .collect();
    if to == [BARRIER] {
        Ok(())
    } else {
        Err(format!(
            "only the barrier call ({BARRIER}) may leave a trace; traces of calls to {to:?}"
        ))
    }
}

/// The trace's events, one per line, for failure messages.
fn render(trace: &Value) -> String {
    trace
        .get("events")
        .and_then(Value::as_array)
        .map(|events| {
            events
                .iter()
                .map(|e| format!("  {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// What is wrong with one trace of a case.
fn check_trace(case: &Case, server: &Server, document: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let trace = match Trace::from_json(document) {
        Ok(trace) => trace,
        Err(e) => return vec![format!("the trace does not read back: {e}")],
    };
    if let Some(expect) = &case.expect {
        problems.extend(testing::check(&trace, expect));
    }
    for (field, value) in &case.document {
        if document.get(field) != Some(value) {
            problems.push(format!(
                "the trace's {field} is {}, {value} expected",
                document.get(field).unwrap_or(&Value::Null)
            ));
        }
    }
    if let Some(check) = &case.recording {
        problems.extend(check_recording(check, server, &trace, document));
    }
    if !problems.is_empty() {
        problems.push(format!("the trace:\n{}", render(document)));
    }
    problems
}

/// The recording of a call: its WAV (named by the `record` event's
/// `recording_id`) lasts as long as the caller spoke and holds sound, and
/// its media document is beside it.
fn check_recording(
    check: &RecordingCheck,
    server: &Server,
    trace: &Trace,
    document: &Value,
) -> Vec<String> {
    let Some(id) = trace
        .last("record")
        .and_then(|e| e.fields.get("recording_id"))
        .and_then(Value::as_str)
    else {
        return vec!["no record event with a recording_id".to_owned()];
    };
    let account = document
        .get("account_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let media = server.flows().join(account).join("media");
    let wav = media.join(format!("{id}.wav"));
    let mut problems = Vec::new();
    match sox_stat(&wav) {
        Ok((seconds, rms)) => {
            if (seconds - check.seconds).abs() > check.tolerance {
                problems.push(format!(
                    "{} lasts {seconds} s, {} ± {} expected",
                    wav.display(),
                    check.seconds,
                    check.tolerance
                ));
            }
            if rms < check.min_rms {
                problems.push(format!(
                    "{} has an RMS amplitude of {rms}, at least {} expected (silence?)",
                    wav.display(),
                    check.min_rms
                ));
            }
        }
        Err(e) => problems.push(e),
    }
    let doc_path = media.join(format!("{id}.json"));
    let doc: Option<Value> = std::fs::read_to_string(&doc_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    if doc
        .as_ref()
        .and_then(|d| d.get("media_source"))
        .and_then(Value::as_str)
        != Some("recording")
    {
        problems.push(format!(
            "{} is missing or not a recording's media document: {doc:?}",
            doc_path.display()
        ));
    }
    problems
}

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

/// An SDP offer of PCMU to a port nobody reads (the calls below are never
/// answered).
const SILENT_OFFER: &str = "v=0\r\no=carrier 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
                            t=0 0\r\nm=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// Calls `number` from a trunk, cancels after the 180 when `cancel`, and
/// checks that the failure (`status`) is retransmitted until the ACK, and
/// not after it.
fn retransmitted_until_ack(
    server: &Server,
    number: &str,
    cancel: bool,
    status: u16,
) -> Result<(), String> {
    let client = Client::new(server.sip);
    let uri = format!("sip:{number}@{}", server.sip);
    let dialog = Dialog::new(
        &client,
        "carrier",
        uri.clone(),
        &format!("retransmit-{number}"),
    );
    let branch = Client::branch();
    let mut headers = dialog.headers(&branch, "1 INVITE", None);
    headers.push(("Content-Type", "application/sdp".to_owned()));
    client.send(&request("INVITE", &uri, &headers, SILENT_OFFER));
    if cancel {
        while client
            .next(Duration::from_secs(10))
            .ok_or("no 180 for the INVITE")?
            .status()
            != Some(180)
        {}
        client.send(&request(
            "CANCEL",
            &uri,
            &dialog.headers(&branch, "1 CANCEL", None),
            "",
        ));
    }
    let first = client.final_response("INVITE");
    // Not acknowledged yet: the same response comes again (timer G).
    let again = client.final_response("INVITE");
    if first.status() != Some(status) || again.status() != Some(status) {
        return Err(format!(
            "{status} twice expected (sent, then retransmitted for want of an ACK); got:\n{}\n{}",
            first.text, again.text
        ));
    }
    let ack = dialog.headers(&branch, "1 ACK", first.to_tag());
    client.send(&request("ACK", &uri, &ack, ""));
    // The next retransmission would come at most 2 s after the last one.
    let deadline = Deadline::after(Duration::from_millis(2500));
    while let Some(left) = deadline.left() {
        if let Some(late) = client.next(left)
            && late.status() == Some(status)
        {
            return Err(format!(
                "{status} retransmitted after the ACK:\n{}",
                late.text
            ));
        }
    }
    Ok(())
}

/// A failure to an INVITE is retransmitted over UDP until the caller's ACK
/// (RFC 3261 §17.2.1), and stops with it: the 487 after a CANCEL, and a
/// flow's 486.
#[test]
fn sip_failures_retransmitted_until_ack() {
    if tools("sip_failures_retransmitted_until_ack").is_none() {
        return;
    }
    let server = Server::start(Trust::Loopback, 10);
    let server = &server;
    let with_log = move |failure: String| format!("{failure}\n--- server log\n{}", server.log());
    run_all(vec![
        (
            "487 after CANCEL".to_owned(),
            Box::new(move || {
                retransmitted_until_ack(server, "+15550100004", true, 487).map_err(with_log)
            }),
        ),
        (
            "486 from the flow".to_owned(),
            Box::new(move || {
                retransmitted_until_ack(server, "+15550100005", false, 486).map_err(with_log)
            }),
        ),
    ]);
}

/// What the manifest `tests/sip/malformed.json` allows for a message.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Allowed {
    /// Final responses allowed.
    answers: Vec<u16>,
    /// Whether a final response must come.
    required: bool,
    #[serde(default)]
    #[allow(dead_code, reason = "documentation of the exception, read by people")]
    why: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    #[allow(dead_code, reason = "documentation of the manifest, read by people")]
    description: String,
    default: Allowed,
    files: BTreeMap<String, Allowed>,
}

/// How long to wait for an answer to a malformed message.
const ANSWER_WINDOW: Duration = Duration::from_millis(1500);

/// What comes back on a socket until the answer window closes (or the
/// socket does): `recv` reads with the time left as its timeout.
fn listen(mut recv: impl FnMut(&mut [u8], Duration) -> std::io::Result<usize>) -> Vec<Vec<u8>> {
    let deadline = Deadline::after(ANSWER_WINDOW);
    let mut chunks = Vec::new();
    let mut buf = vec![0_u8; 70_000];
    while let Some(left) = deadline.left() {
        match recv(&mut buf, left.max(Duration::from_millis(1))) {
            Ok(0) | Err(_) => break,
            Ok(len) => chunks.push(buf[..len].to_vec()),
        }
    }
    chunks
}

/// The statuses a server sent back to one message over UDP.
fn answers_udp(server: SocketAddr, bytes: &[u8]) -> Result<Vec<u16>, String> {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    socket.send_to(bytes, server).map_err(|e| e.to_string())?;
    let datagrams = listen(|buf, left| {
        socket.set_read_timeout(Some(left))?;
        socket.recv(buf)
    });
    Ok(datagrams
        .iter()
        .filter_map(|d| Message::parse(d)?.status())
        .collect())
}

/// The statuses a server sent back to one message over TCP. The
/// connection stays open for the answer: rsipstack closes a connection as
/// soon as its peer stops writing, before answering what it read.
fn answers_tcp(server: SocketAddr, bytes: &[u8]) -> Result<Vec<u16>, String> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(server).map_err(|e| e.to_string())?;
    stream.write_all(bytes).map_err(|e| e.to_string())?;
    let received = listen(|buf, left| {
        stream.set_read_timeout(Some(left))?;
        stream.read(buf)
    })
    .concat();
    let text = String::from_utf8_lossy(&received);
    // Each response starts the stream or follows the blank line ending the
    // previous one (our answers have no bodies).
    Ok(text
        .split("\r\n\r\n")
        .filter_map(|part| Message::parse(part.as_bytes())?.status())
        .collect())
}

/// Sends every message of `tests/sip/malformed/` over one transport, each
/// on its own socket; returns what is wrong.
fn send_corpus(
    server: &Server,
    transport: Transport,
    corpus: &[(String, Vec<u8>)],
    manifest: &Manifest,
) -> Vec<String> {
    let results: Vec<(String, Result<Vec<u16>, String>)> = std::thread::scope(|scope| {
        let sending: Vec<_> = corpus
            .iter()
            .map(|(name, bytes)| {
                let handle = scope.spawn(move || match transport {
                    Transport::Udp => answers_udp(server.sip, bytes),
                    Transport::Tcp => answers_tcp(server.sip, bytes),
                });
                (name.clone(), handle)
            })
            .collect();
        sending
            .into_iter()
            .map(|(name, h)| (name, h.join().unwrap()))
            .collect()
    });
    let mut problems = Vec::new();
    for (name, result) in results {
        let allowed = manifest.files.get(&name).unwrap_or(&manifest.default);
        let finals: Vec<u16> = match result {
            Ok(statuses) => statuses.into_iter().filter(|s| *s >= 200).collect(),
            Err(e) => {
                problems.push(format!("{name} over {transport:?}: cannot send: {e}"));
                continue;
            }
        };
        if let Some(bad) = finals.iter().find(|s| !allowed.answers.contains(s)) {
            problems.push(format!(
                "{name} over {transport:?}: answered {bad}, only {:?} (or nothing) allowed",
                allowed.answers
            ));
        }
        if allowed.required && finals.is_empty() {
            problems.push(format!(
                "{name} over {transport:?}: no answer, one of {:?} required",
                allowed.answers
            ));
        }
    }
    problems
}

/// OPTIONS over UDP and TCP: the server answers 200.
fn options_answered(server: SocketAddr) -> Result<(), String> {
    for transport in [Transport::Udp, Transport::Tcp] {
        let text = format!(
            "OPTIONS sip:callflow@{server} SIP/2.0\r\nVia: SIP/2.0/{} 127.0.0.1:5060;rport;branch={}\r\n\
             From: <sip:probe@127.0.0.1>;tag=probe\r\nTo: <sip:callflow@{server}>\r\n\
             Call-ID: probe-{transport:?}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n",
            if transport == Transport::Udp {
                "UDP"
            } else {
                "TCP"
            },
            Client::branch(),
        );
        let statuses = match transport {
            Transport::Udp => answers_udp(server, text.as_bytes())?,
            Transport::Tcp => answers_tcp(server, text.as_bytes())?,
        };
        if statuses.first() != Some(&200) {
            return Err(format!(
                "OPTIONS over {transport:?} got {statuses:?}, 200 expected"
            ));
        }
    }
    Ok(())
}

/// The malformed corpus over one transport, then the server still answers
/// OPTIONS and completes a normal call, the only call with a trace.
fn malformed_over(
    tools: &Tools,
    transport: Transport,
    corpus: &[(String, Vec<u8>)],
    manifest: &Manifest,
) -> Result<(), String> {
    let server = Server::start(Trust::Loopback, 10);
    let with_log = |what: String| format!("{what}\n--- server log\n{}", server.log());
    let problems = send_corpus(&server, transport, corpus, manifest);
    if !problems.is_empty() {
        return Err(with_log(problems.join("\n")));
    }
    options_answered(server.sip).map_err(with_log)?;
    let run = Sipp {
        scenario: sip_dir().join("answer-play-bye.xml"),
        service: "+15550100001".to_owned(),
        server: server.sip,
        port: free_port(),
        transport,
        calls: 1,
        extra: Vec::new(),
    }
    .run(tools);
    if run.code != Some(0) {
        return Err(with_log(format!(
            "a normal call after the corpus failed:\n{}",
            run.report()
        )));
    }
    let traces = server
        .wait_for_traces(1, TRACES_TIMEOUT)
        .map_err(with_log)?;
    let flows: Vec<&str> = traces
        .iter()
        .map(|t| t.get("callflow_id").and_then(Value::as_str).unwrap_or("?"))
        .collect();
    if flows != ["play-bye"] {
        return Err(with_log(format!(
            "only the normal call may leave a trace; traces of {flows:?}"
        )));
    }
    Ok(())
}

/// `tests/sip/malformed/*.txt` over UDP and over TCP: 400 or silence (or
/// what the manifest allows), never a flow; the server stays up.
#[test]
fn sip_malformed_corpus() {
    let Some(tools) = tools("sip_malformed_corpus") else {
        return;
    };
    let dir = sip_dir().join("malformed");
    let mut corpus: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    corpus.sort();
    assert!(corpus.len() >= 20, "the malformed corpus is missing");
    let manifest: Manifest =
        serde_json::from_str(&std::fs::read_to_string(sip_dir().join("malformed.json")).unwrap())
            .unwrap();
    for listed in manifest.files.keys() {
        assert!(
            corpus.iter().any(|(name, _)| name == listed),
            "malformed.json lists {listed}, which is not in {}",
            dir.display()
        );
    }
    let corpus = &corpus;
    let manifest = &manifest;
    run_all(
        [Transport::Udp, Transport::Tcp]
            .into_iter()
            .map(|transport| {
                let job: Job<'_> =
                    Box::new(move || malformed_over(tools, transport, corpus, manifest));
                (format!("{transport:?}"), job)
            })
            .collect(),
    );
}
