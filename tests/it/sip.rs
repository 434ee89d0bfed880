//! Real calls against real SIP software, on 127.0.0.1 with ephemeral ports:
//! the `callflow` binary serving SIP (`callflow serve --sip`) on a temporary
//! copy of `tests/sip/flows`, called by SIPp 3.6.1 (`tests/sip/<case>.xml`,
//! each with a sidecar `<case>.json` saying what to dial, from where, what
//! SIPp must see and what the call's trace must show: the inline
//! expectations of `callflow test`), and by a raw SIP client where SIPp
//! cannot go (digest answers, replays, SHA-256). `tests/sip/README.md` says
//! what each case checks and how to run or skip them.
//!
//! * here: the SIPp cases of the sidecars, and failures retransmitted
//!   until ACK;
//! * `auth.rs`: REGISTER and device INVITEs with the raw client;
//! * `malformed.rs`: the malformed corpus over UDP and TCP;
//! * `reload.rs`: a call keeps its generation across a reload, the next
//!   call runs the new code;
//! * `world.rs`: calls that reach each other (park and retrieve, pickup,
//!   a conference room);
//! * `harness.rs`: tools, ports, the server, SIPp runs, traces, sox;
//! * `raw.rs`: the raw SIP client and its digests.

mod auth;
mod far;
pub(crate) mod harness;
mod malformed;
mod raw;
mod reload;
mod world;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use callflow::sim::scenario::Expect;
use callflow::testing;
use callflow::trace::Trace;

use harness::{
    Deadline, Server, Setup, Sipp, Tools, Transport, Trust, free_port, raw_packets_allowed,
    sip_dir, sox_stat, tools,
};
use raw::{Client, Dialog, request};

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
    /// The server's `--digest` (default `sha-256,md5`; SIPp answers only
    /// an MD5 challenge offered first).
    #[serde(default)]
    digest: Option<String>,
    /// More arguments for the server (`--min-session-expires 2`).
    #[serde(default)]
    server_args: Vec<String>,
    /// SIPp far ends the server calls (devices, gateways): see `far.rs`.
    #[serde(default)]
    far_ends: Vec<far::FarEnd>,
    /// Every leg in each trace's `media` report received and sent at least
    /// this many packets (audio went both ways through every leg).
    #[serde(default)]
    media_min_packets: Option<u64>,
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
    let mut cases = cases();
    assert!(cases.len() >= 10, "the SIPp cases are missing");
    // `CALLFLOW_SIP_CASES=a,b` runs only those cases (while working on them).
    if let Ok(only) = std::env::var("CALLFLOW_SIP_CASES") {
        let only: Vec<&str> = only.split(',').map(str::trim).collect();
        cases.retain(|(name, _)| only.contains(&name.as_str()));
        assert!(!cases.is_empty(), "CALLFLOW_SIP_CASES names no case");
    }
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
fn run_case(tools: &'static Tools, name: &str, case: &Case) -> Result<(), String> {
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
    // The far ends' ports go into a copy of the flows (gateways' servers).
    let ports = far::ports(&case.far_ends);
    let flows = tempfile::tempdir().map_err(|e| e.to_string())?;
    crate::support::copy_tree(&sip_dir().join("flows"), flows.path());
    far::substitute(flows.path(), &ports);
    let server = Server::launch(&Setup {
        trust,
        rtp_ports: case.rtp_ports,
        digest: case
            .digest
            .clone()
            .unwrap_or_else(|| "sha-256,md5".to_owned()),
        flows: flows.path().to_path_buf(),
        scripts: sip_dir().join("scripts"),
        extra: case.server_args.clone(),
    });
    let far_ends =
        far::start(tools, server.sip, flows.path(), &case.far_ends, &ports).map_err(|e| {
            format!(
                "{e}
--- server log
{}",
                server.log()
            )
        })?;
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
    let far_problems = far::finish(far_ends);
    let failed =
        |what: String| format!("{what}\n{}\n--- server log\n{}", run.report(), server.log());
    if !far_problems.is_empty() {
        return Err(failed(far_problems.join("\n")));
    }
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
    if let Some(least) = case.media_min_packets {
        problems.extend(check_media(least, document));
    }
    if !problems.is_empty() {
        problems.push(format!("the trace:\n{}", render(document)));
    }
    problems
}

/// Every leg of the trace's `media` report (the caller and each callee
/// connected) received and sent at least `least` packets.
fn check_media(least: u64, document: &Value) -> Vec<String> {
    let legs = document
        .get("media")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if legs.len() < 2 {
        return vec![format!("a bridged call has two legs of media: {legs:?}")];
    }
    legs.iter()
        .filter(|leg| {
            let count = |key: &str| leg.get(key).and_then(Value::as_u64).unwrap_or(0);
            count("received") < least || count("sent") < least
        })
        .map(|leg| format!("a leg carried fewer than {least} packets each way: {leg}"))
        .collect()
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
    // We acknowledged the first retransmission (0.5 s after the response);
    // were the ACK ignored, the next two would come 1 s and 3 s later. One
    // may already be on its way when the ACK arrives: two fail.
    let deadline = Deadline::after(Duration::from_millis(3300));
    let mut late = Vec::new();
    while let Some(left) = deadline.left() {
        if let Some(message) = client.next(left)
            && message.status() == Some(status)
        {
            late.push(message.text);
        }
    }
    if late.len() > 1 {
        return Err(format!(
            "{status} retransmitted {} times after the ACK:\n{}",
            late.len(),
            late.join("\n")
        ));
    }
    Ok(())
}

/// Two callers leave a voicemail message in one box at once, on a real
/// server (its worker threads, the flows directory): both messages are in
/// the box afterwards (`call:update_doc`'s compare-and-swap on the file).
#[test]
fn two_real_callers_leaving_a_message_in_one_box_both_keep_it() {
    let Some(tools) = tools("two_real_callers_leaving_a_message_in_one_box_both_keep_it") else {
        return;
    };
    let server = Server::start(Trust::Loopback, 10);
    let run = Sipp {
        scenario: sip_dir().join("answer-play-bye.xml"),
        service: "+15550100020".to_owned(),
        server: server.sip,
        port: free_port(),
        transport: Transport::Udp,
        calls: 2,
        extra: Vec::new(),
    }
    .run(tools);
    let failed =
        |what: String| format!("{what}\n{}\n--- server log\n{}", run.report(), server.log());
    assert_eq!(run.successful_calls(), Some(2), "{}", failed(String::new()));
    let traces = server
        .wait_for_traces(2, TRACES_TIMEOUT)
        .unwrap_or_else(|e| panic!("{}", failed(e)));
    assert_eq!(traces.len(), 2, "{}", failed(String::new()));
    let text = std::fs::read_to_string(server.flows().join("siptest/vmboxes/box.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let mut calls: Vec<String> = doc["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", failed(format!("no messages in {text}"))))
        .iter()
        .map(|m| m["call_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    calls.sort();
    let mut expected: Vec<String> = traces
        .iter()
        .map(|t| t["call_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    expected.sort();
    assert_eq!(calls, expected, "{}", failed(text));
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
