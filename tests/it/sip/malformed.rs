//! The malformed corpus (`tests/sip/malformed/*.txt`, what each may get in
//! `tests/sip/malformed.json`) over UDP and over TCP: 400 or silence, never
//! a flow; afterwards the server still answers OPTIONS and completes a call.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::harness::{Deadline, Server, Sipp, Tools, Transport, Trust, free_port, sip_dir, tools};
use super::raw::{Client, Message};
use super::{Job, TRACES_TIMEOUT, run_all};

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

/// How long to listen for answers that may not come.
const ANSWER_WINDOW: Duration = Duration::from_millis(1500);
/// How long an answer that must come may take (on a loaded machine).
const REQUIRED_WAIT: Duration = Duration::from_secs(10);
/// When an unanswered datagram is sent again (RFC 3261's T1), as a UDP
/// client does: a burst of datagrams may overflow the server's socket.
const RESEND_AFTER: Duration = Duration::from_millis(500);

/// What is awaited from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Await {
    /// A final response: listen until it comes (at most
    /// [`REQUIRED_WAIT`]).
    Final,
    /// Whatever comes within [`ANSWER_WINDOW`], if anything.
    Anything,
}

impl Await {
    fn deadline(self) -> Deadline {
        Deadline::after(match self {
            Await::Final => REQUIRED_WAIT,
            Await::Anything => ANSWER_WINDOW,
        })
    }

    /// Whether listening can stop, with these statuses received.
    fn done(self, statuses: &[u16]) -> bool {
        self == Await::Final && statuses.iter().any(|s| *s >= 200)
    }
}

/// The statuses a server sent back to one message over UDP; while awaiting
/// a final response and hearing nothing, the message is sent again.
fn answers_udp(server: SocketAddr, bytes: &[u8], awaiting: Await) -> Result<Vec<u16>, String> {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let send = || socket.send_to(bytes, server).map_err(|e| e.to_string());
    send()?;
    let deadline = awaiting.deadline();
    let mut resend = Deadline::after(RESEND_AFTER);
    let mut statuses = Vec::new();
    let mut heard = false;
    let mut buf = vec![0_u8; 70_000];
    while let Some(left) = deadline.left() {
        if awaiting.done(&statuses) {
            break;
        }
        let wait = match (awaiting, heard) {
            (Await::Final, false) => left.min(resend.left().unwrap_or_default()),
            _ => left,
        };
        socket
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .map_err(|e| e.to_string())?;
        if let Ok(len) = socket.recv(&mut buf) {
            heard = true;
            statuses.extend(Message::parse(&buf[..len]).and_then(|m| m.status()));
        } else if awaiting == Await::Final && !heard && resend.left().is_none() {
            send()?;
            resend = Deadline::after(RESEND_AFTER);
        }
    }
    Ok(statuses)
}

/// The statuses a server sent back to one message over TCP. The
/// connection stays open for the answer: rsipstack closes a connection as
/// soon as its peer stops writing, before answering what it read.
fn answers_tcp(server: SocketAddr, bytes: &[u8], awaiting: Await) -> Result<Vec<u16>, String> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(server).map_err(|e| e.to_string())?;
    stream.write_all(bytes).map_err(|e| e.to_string())?;
    let deadline = awaiting.deadline();
    let mut received = Vec::new();
    let mut statuses = Vec::new();
    let mut buf = vec![0_u8; 70_000];
    while let Some(left) = deadline.left() {
        if awaiting.done(&statuses) {
            break;
        }
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(len) => received.extend_from_slice(&buf[..len]),
            Err(_) => {}
        }
        // Each response starts the stream or follows the blank line ending
        // the previous one (our answers have no bodies).
        statuses = String::from_utf8_lossy(&received)
            .split("\r\n\r\n")
            .filter_map(|part| Message::parse(part.as_bytes())?.status())
            .collect();
    }
    Ok(statuses)
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
                let allowed = manifest.files.get(name).unwrap_or(&manifest.default);
                let awaiting = if allowed.required {
                    Await::Final
                } else {
                    Await::Anything
                };
                let handle = scope.spawn(move || match transport {
                    Transport::Udp => answers_udp(server.sip, bytes, awaiting),
                    Transport::Tcp => answers_tcp(server.sip, bytes, awaiting),
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
            Transport::Udp => answers_udp(server, text.as_bytes(), Await::Final)?,
            Transport::Tcp => answers_tcp(server, text.as_bytes(), Await::Final)?,
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
