//! A real softphone against the real server: baresip registers as a device,
//! calls a flow, and records what it hears. The test finds the prompt's tone
//! in what baresip received (the caller hears the prompt), and drives the
//! sample's main menu with a digit pressed on the phone (the README's
//! softphone steps).
//!
//! baresip 1.0 puts the host's interface address in its SDP, never
//! 127.0.0.1, and refuses to start on loopback alone; so each test runs the
//! server and baresip in a network namespace of its own, whose only other
//! interface is a veth holding 127.0.0.2: baresip advertises that loopback
//! address, and no packet leaves the namespace. This needs root (CI runs as
//! root) and `ip` (iproute2); `CALLFLOW_SKIP_SIP_TESTS=1` skips, as for the
//! SIPp tier.

// Audio: sample counts and levels move between integers and floats.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::sip::harness::Deadline;

use serde_json::Value;

/// Why these tests cannot run here, unless skipping is asked for.
fn missing_tools() -> Option<String> {
    let has = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let mut missing = Vec::new();
    if !has("baresip") {
        missing.push("baresip-core");
    }
    if !has("ip") {
        missing.push("iproute2");
    }
    if !missing.is_empty() {
        return Some(format!(
            "baresip tests need {}: apt-get install -y --no-install-recommends {}",
            missing.join(", "),
            missing.join(" ")
        ));
    }
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("baresip tests make a network namespace: run them as root".to_owned());
    }
    None
}

/// Whether to run: fails with the install command when a tool is missing,
/// unless `CALLFLOW_SKIP_SIP_TESTS=1`.
pub(crate) fn should_run() -> bool {
    if std::env::var("CALLFLOW_SKIP_SIP_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED: CALLFLOW_SKIP_SIP_TESTS=1 (real softphone tests)");
        return false;
    }
    if let Some(why) = missing_tools() {
        panic!("{why} (or set CALLFLOW_SKIP_SIP_TESTS=1 to skip real-call tests)");
    }
    true
}

fn run(command: &mut Command) {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A network namespace with loopback and a veth holding 127.0.0.2, IPv6
/// off (baresip would pick a link-local address); deleted on drop.
pub(crate) struct Namespace(String);

impl Namespace {
    pub(crate) fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "cf-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Self(name);
        let ip = |args: &[&str]| {
            run(Command::new("ip").args(["-n", &ns.0]).args(args));
        };
        ip(&["link", "set", "lo", "up"]);
        ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
        run(Command::new("ip")
            .args(["netns", "exec", &ns.0, "sysctl", "-q", "-w"])
            .args([
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ]));
        ip(&["addr", "add", "127.0.0.2/8", "dev", "v0"]);
        ip(&["link", "set", "v0", "up"]);
        ip(&["link", "set", "v1", "up"]);
        ns
    }

    pub(crate) fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.0, program]);
        command
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The server, in the namespace, with SIP on 127.0.0.1:5060 (the namespace
/// is fresh: every port is free).
pub(crate) struct Server(Child);

impl Server {
    pub(crate) fn start(ns: &Namespace, flows: &Path, traces: &Path) -> Self {
        let mut child = ns
            .command(env!("CARGO_BIN_EXE_callflow"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--sip",
                "127.0.0.1:5060",
            ])
            .args(["--rtp-ports", "30000-30100", "--no-watch"])
            .arg("--flows")
            .arg(flows)
            .arg("--traces")
            .arg(traces)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        loop {
            let line = lines
                .next()
                .expect("the server says where SIP listens")
                .unwrap();
            if line.starts_with("callflow: SIP on ") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Self(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A baresip configuration folder: an account for `user`/`password` on the
/// server, silence as its microphone, and the `sndfile` module dumping
/// what it hears as `dump-*-dec.wav`.
fn baresip_config(dir: &Path, user: &str, password: &str) {
    std::fs::create_dir_all(dir).unwrap();
    write_tone(&dir.join("silence.wav"), 0.0, 8000, 30.0);
    let config = format!(
        "poll_method epoll\nsip_listen 127.0.0.1:5062\n\
         audio_player aufile,{dir}/played.wav\naudio_source aufile,{dir}/silence.wav\n\
         audio_alert aufile,/dev/null\nmodule_path /usr/lib/baresip/modules\n\
         module stdio.so\nmodule g711.so\nmodule aufile.so\nmodule sndfile.so\n\
         module_app account.so\nmodule_app menu.so\nsnd_path {dir}/\n",
        dir = dir.display()
    );
    std::fs::write(dir.join("config"), config).unwrap();
    std::fs::write(
        dir.join("accounts"),
        format!("<sip:{user}@127.0.0.1:5060>;auth_pass={password};regint=300;audio_codecs=PCMU\n"),
    )
    .unwrap();
}

/// A WAV of a sine (`frequency` 0: silence).
pub(crate) fn write_tone(path: &Path, frequency: f64, rate: u32, seconds: f64) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = hound::WavWriter::create(path, spec).unwrap();
    let total = (f64::from(rate) * seconds) as u32;
    for i in 0..total {
        let t = f64::from(i) / f64::from(rate);
        let sample = 12_000.0 * (2.0 * std::f64::consts::PI * frequency * t).sin();
        wav.write_sample(sample as i16).unwrap();
    }
    wav.finalize().unwrap();
}

/// baresip in the namespace: dials `uri` once registered, presses `digits`
/// once the call is established, and quits after `seconds`.
fn call(ns: &Namespace, config: &Path, uri: &str, digits: &str, seconds: u32) -> String {
    let mut child = ns
        .command("baresip")
        .args(["-4", "-n", "v0", "-t", &seconds.to_string(), "-f"])
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut output = String::new();
    let mut dialled = false;
    for line in BufReader::new(stdout).split(b'\n') {
        let line = String::from_utf8_lossy(&line.unwrap()).into_owned();
        output.push_str(&line);
        output.push('\n');
        if !dialled && line.contains("baresip is ready") {
            dialled = true;
            writeln!(stdin, "/dial {uri}").unwrap();
        }
        if line.contains("Call established") {
            for digit in digits.chars() {
                write!(stdin, "{digit}").unwrap();
                stdin.flush().unwrap();
            }
        }
    }
    child.wait().unwrap();
    output
}

/// The trace documents written under `traces`.
pub(crate) fn traces(traces: &Path) -> Vec<Value> {
    let deadline = Deadline::after(Duration::from_secs(20));
    loop {
        let files: Vec<PathBuf> = walk(traces);
        if !files.is_empty() || deadline.left().is_none() {
            return files
                .iter()
                .map(|f| serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap())
                .collect();
        }
        // Waiting for the server to write the trace of a call that ended.
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else if path.extension().is_some_and(|x| x == "json") {
                out.push(path);
            }
        }
    }
    out
}

/// Events of a trace document, as `name key=value` lines.
pub(crate) fn events(trace: &Value) -> Vec<String> {
    trace["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// The loud part of what baresip heard, and its frequency (zero
/// crossings).
fn heard_tone(dir: &Path) -> (f64, f64) {
    let dump = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .unwrap_or_else(|| panic!("baresip wrote no dump-*-dec.wav in {}", dir.display()));
    let mut reader = hound::WavReader::open(&dump).unwrap();
    let rate = f64::from(reader.spec().sample_rate);
    let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let loud: Vec<i16> = samples
        .chunks(160)
        .filter(|frame| {
            let energy: f64 = frame.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
            (energy / frame.len() as f64).sqrt() > 1000.0
        })
        .flatten()
        .copied()
        .collect();
    let crossings = loud.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    let seconds = loud.len() as f64 / rate;
    (seconds, crossings as f64 / 2.0 / seconds.max(f64::EPSILON))
}

#[test]
fn a_softphone_hears_the_prompt() {
    if !should_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    let account = flows.join("phones");
    for sub in ["callflows", "devices", "media"] {
        std::fs::create_dir_all(account.join(sub)).unwrap();
    }
    std::fs::write(
        account.join("account.json"),
        r#"{"name": "Phones", "realm": "phones.example", "timezone": "UTC"}"#,
    )
    .unwrap();
    std::fs::write(
        account.join("devices/dev_bs.json"),
        r#"{"name": "baresip", "sip": {"username": "bs", "password": "bs-secret"}}"#,
    )
    .unwrap();
    std::fs::write(
        account.join("callflows/tone.json"),
        r#"{"numbers": ["1200"], "flow": {"module": "play", "data": {"id": "tone"},
            "children": {"_": {"module": "hangup", "data": {}, "children": {}}}}}"#,
    )
    .unwrap();
    std::fs::write(
        account.join("media/tone.json"),
        r#"{"name": "A 1 kHz tone"}"#,
    )
    .unwrap();
    // 16 kHz on purpose: the server resamples it to 8 kHz.
    write_tone(&account.join("media/tone.wav"), 1000.0, 16_000, 3.0);

    let ns = Namespace::new();
    let _server = Server::start(&ns, &flows, &dir.path().join("traces"));
    let phone = dir.path().join("baresip");
    baresip_config(&phone, "bs", "bs-secret");
    let output = call(&ns, &phone, "sip:1200@127.0.0.1:5060", "", 8);
    assert!(output.contains("Call established"), "baresip:\n{output}");

    let (seconds, frequency) = heard_tone(&phone);
    assert!(
        (2.5..3.5).contains(&seconds),
        "heard {seconds:.2} s of loud audio, the prompt lasts 3 s"
    );
    assert!(
        (frequency - 1000.0).abs() < 25.0,
        "heard {frequency:.0} Hz, the prompt is 1000 Hz"
    );
    let traces = traces(&dir.path().join("traces"));
    assert_eq!(traces.len(), 1, "{traces:?}");
    let trace = &traces[0];
    assert_eq!(trace["inception"], "onnet");
    assert_eq!(trace["calling_device"], "dev_bs");
    assert_eq!(trace["end"], "module_hangup", "{trace}");
    let events = events(trace);
    assert!(
        events.iter().any(|e| e.contains(r#""event":"play""#)
            && e.contains(r#""media":"tone""#)
            && e.contains(r#""reason":"completed""#)),
        "{events:#?}"
    );
}

#[test]
fn the_readme_softphone_steps_reach_support() {
    if !should_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    crate::support::copy_tree(&crate::support::root().join("flows"), &flows);
    let ns = Namespace::new();
    let _server = Server::start(&ns, &flows, &dir.path().join("traces"));
    let phone = dir.path().join("baresip");
    baresip_config(&phone, "alice-desk", "alice-secret");
    // Registered as Alice's desk phone, dial the main menu and press 2
    // (RFC 4733 from the phone) during the greeting.
    let output = call(&ns, &phone, "1100", "2", 14);
    assert!(output.contains("Call established"), "baresip:\n{output}");
    let traces = traces(&dir.path().join("traces"));
    assert_eq!(traces.len(), 1, "{traces:?}");
    let trace = &traces[0];
    assert_eq!(trace["calling_device"], "dev_alice");
    assert_eq!(trace["callflow_id"], "main-menu");
    let events = events(trace);
    let position = |needle: &[&str]| {
        events
            .iter()
            .position(|e| needle.iter().all(|n| e.contains(n)))
            .unwrap_or_else(|| panic!("no event with {needle:?} in {events:#?}"))
    };
    let collected = position(&[
        r#""event":"collect""#,
        r#""prompt":"main-greeting""#,
        r#""digits":"2""#,
    ]);
    let branch = position(&[r#""event":"branch""#, r#""callflow_id":"support""#]);
    assert!(collected < branch);
}
