//! What the SIP tests drive: the tools they need (SIPp, sox, Debian's
//! pcaps), ports nobody else in this process holds, a real `callflow serve
//! --sip` on a temporary copy of `tests/sip/flows`, SIPp runs whose failures
//! carry SIPp's output and logs, the traces a server writes, and sox's view
//! of a WAV file. Everything listens and sends on 127.0.0.1 only.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{copy_tree, root};

/// The command that installs what the SIP tests need (Debian).
pub const INSTALL: &str = "apt-get install -y --no-install-recommends sip-tester sox";
/// Set to 1 to skip the SIP tests where the tools are missing.
pub const SKIP_VAR: &str = "CALLFLOW_SKIP_SIP_TESTS";

/// A moment to wait for real processes (SIPp, the server) until: the one
/// place the SIP tests read the wall clock.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(Instant);

impl Deadline {
    #[allow(
        clippy::disallowed_methods,
        reason = "waiting for real processes takes the wall clock"
    )]
    pub fn after(wait: Duration) -> Self {
        Self(Instant::now() + wait)
    }

    /// The time left, `None` once it has passed.
    #[allow(
        clippy::disallowed_methods,
        reason = "waiting for real processes takes the wall clock"
    )]
    pub fn left(self) -> Option<Duration> {
        self.0.checked_duration_since(Instant::now())
    }
}

/// The folder of SIP test data.
pub fn sip_dir() -> PathBuf {
    root().join("tests/sip")
}

/// Whether the SIP tests may be skipped (`CALLFLOW_SKIP_SIP_TESTS=1`).
fn skipping() -> bool {
    std::env::var(SKIP_VAR).is_ok_and(|v| v == "1")
}

/// `problem` and how to fix it as a failure, or (with
/// `CALLFLOW_SKIP_SIP_TESTS=1`) a loud skip line on stderr and `Ok`.
fn missing(test: &str, problem: &str) -> Result<(), String> {
    if skipping() {
        // Straight to the process's stderr: libtest would hide eprintln!'s
        // output of a passing test.
        let line = format!(
            "\n!!!!!!!! SKIPPED SIP TEST {test}: {problem} ({SKIP_VAR}=1 is set; CI must not set it)\n"
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
        return Ok(());
    }
    Err(format!(
        "{test}: {problem}.\nInstall the SIP test tools with: {INSTALL}\n\
         (or set {SKIP_VAR}=1 to skip the SIP tests on this machine: see tests/sip/README.md)"
    ))
}

/// The tools the SIP tests run.
#[derive(Debug)]
pub struct Tools {
    /// The folder of the pcaps Debian's sip-tester ships (g711a.pcap, ...).
    pub pcaps: PathBuf,
}

/// Runs `program` once to see whether it is installed.
fn installed(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Where `dpkg` says sip-tester put `g711a.pcap` (else the usual place).
fn pcap_dir() -> Option<PathBuf> {
    let listed = Command::new("dpkg")
        .args(["-L", "sip-tester"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    listed
        .lines()
        .find(|l| l.ends_with("/g711a.pcap"))
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/usr/share/sip-tester/g711a.pcap")))
        .filter(|p| p.is_file())
        .and_then(|p| p.parent().map(Path::to_path_buf))
}

/// The tools, when installed; otherwise the test fails with the install
/// command (or is skipped loudly, see [`SKIP_VAR`]).
pub fn tools(test: &str) -> Option<&'static Tools> {
    static TOOLS: OnceLock<Result<Tools, String>> = OnceLock::new();
    let found = TOOLS.get_or_init(|| {
        let mut lacking = Vec::new();
        if !installed("sipp", "-v") {
            lacking.push("`sipp` (Debian package sip-tester)");
        }
        if !installed("sox", "--version") {
            lacking.push("`sox`");
        }
        let pcaps = pcap_dir();
        if pcaps.is_none() {
            lacking.push("sip-tester's g711a.pcap");
        }
        match pcaps {
            Some(pcaps) if lacking.is_empty() => Ok(Tools { pcaps }),
            _ => Err(format!("missing {}", lacking.join(", "))),
        }
    });
    match found {
        Ok(tools) => Some(tools),
        Err(problem) => {
            if let Err(failure) = missing(test, problem) {
                panic!("{failure}");
            }
            None
        }
    }
}

/// Whether SIPp may send raw packets (`play_pcap_audio`): root, or a sipp
/// binary with `CAP_NET_RAW`. Otherwise a failure saying so (or, skipping,
/// `Ok(false)`).
pub fn raw_packets_allowed(test: &str) -> Result<bool, String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if uid == "0" {
        return Ok(true);
    }
    let capable = Command::new("sh")
        .args(["-c", "getcap \"$(command -v sipp)\""])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cap_net_raw"));
    if !capable {
        missing(
            test,
            &format!(
                "SIPp's play_pcap_audio needs root or CAP_NET_RAW, and this runs as uid {uid}: \
                 run as root or `sudo setcap cap_net_raw+ep \"$(command -v sipp)\"`"
            ),
        )?;
    }
    Ok(capable)
}

/// Whether UDP and TCP can both bind `port` on 127.0.0.1 now.
fn bindable(port: u16) -> bool {
    UdpSocket::bind(("127.0.0.1", port)).is_ok() && TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// The first of `count` consecutive ports free for UDP and TCP on
/// 127.0.0.1 (SIPp's `-p`, `-cp`, `-mp`, far ends). They come from
/// 10000-19999, below the kernel's ephemeral ports: a port the kernel hands
/// to some socket bound to port 0 (a client, a server's SIP port) could
/// otherwise be taken between this pick and its use. Each is handed out
/// once per run; the first is even (SIPp's media port: RTCP above it).
pub fn free_ports(count: u16) -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(10_000);
    loop {
        let first = NEXT.fetch_add(count + count % 2, Ordering::Relaxed);
        assert!(first < 20_000 - count, "out of test ports (10000-19999)");
        if (first..first + count).all(bindable) {
            return first;
        }
    }
}

/// A free port (see [`free_ports`]).
pub fn free_port() -> u16 {
    free_ports(1)
}

/// A range of `size` RTP ports for one server, distinct from every other
/// server's in this process (20000-31999: below the kernel's ephemeral
/// ports, above those [`free_ports`] hands out).
fn rtp_range(size: u16) -> (u16, u16) {
    static NEXT: AtomicU16 = AtomicU16::new(20_000);
    let low = NEXT.fetch_add(size, Ordering::Relaxed);
    assert!(low < 32_000 - size, "out of RTP port ranges");
    (low, low + size - 1)
}

/// Which sources a server trusts to call without credentials.
#[derive(Debug, Clone, Copy)]
pub enum Trust {
    /// Any port of 127.0.0.1 (`--trunk 127.0.0.1`).
    Loopback,
    /// One UDP source port (`--trunk 127.0.0.1:PORT`): every other source
    /// is untrusted.
    Port(u16),
}

/// How to start a server.
pub struct Setup {
    pub trust: Trust,
    pub rtp_ports: u16,
    /// `--digest`.
    pub digest: String,
    /// The flows folder (copied) and the scripts folder.
    pub flows: PathBuf,
    pub scripts: PathBuf,
    /// More arguments for `callflow serve`.
    pub extra: Vec<String>,
}

/// A running `callflow serve --sip` on a temporary copy of the test flows;
/// killed on drop.
pub struct Server {
    child: Child,
    pub sip: SocketAddr,
    dir: tempfile::TempDir,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts a server trusting `trust`, with `rtp_ports` RTP ports,
    /// challenging with SHA-256 then MD5 (RFC 8760).
    pub fn start(trust: Trust, rtp_ports: u16) -> Self {
        Self::start_with(trust, rtp_ports, "sha-256,md5")
    }

    /// The same, with the server's `--digest` list.
    pub fn start_with(trust: Trust, rtp_ports: u16, digest: &str) -> Self {
        Self::launch(&Setup {
            trust,
            rtp_ports,
            digest: digest.to_owned(),
            flows: sip_dir().join("flows"),
            scripts: sip_dir().join("scripts"),
            extra: Vec::new(),
        })
    }

    /// A server as `setup` says (its flows copied to a temporary folder).
    pub fn launch(setup: &Setup) -> Self {
        let Setup {
            trust,
            rtp_ports,
            digest,
            flows,
            scripts,
            extra,
        } = setup;
        let (trust, rtp_ports) = (*trust, *rtp_ports);
        let dir = tempfile::tempdir().unwrap();
        copy_tree(flows, &dir.path().join("flows"));
        let (low, high) = rtp_range(rtp_ports);
        let trunk = match trust {
            Trust::Loopback => "127.0.0.1".to_owned(),
            Trust::Port(port) => format!("127.0.0.1:{port}"),
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_callflow"))
            .arg("serve")
            .args([
                "--sip",
                "127.0.0.1:0",
                "--listen",
                "127.0.0.1:0",
                "--no-watch",
            ])
            .arg("--flows")
            .arg(dir.path().join("flows"))
            .arg("--scripts")
            .arg(scripts)
            .args(extra)
            .arg("--traces")
            .arg(dir.path().join("traces"))
            .args(["--rtp-ports", &format!("{low}-{high}"), "--trunk", &trunk])
            .args(["--digest", digest.as_str()])
            // TTS and downloads are cached per server: nothing leaks between
            // runs or into the user's cache.
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the callflow binary runs");
        let log = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line
                    .strip_prefix("callflow: SIP on ")
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|addr| addr.parse::<SocketAddr>().ok())
                {
                    let _ = port_tx.send(addr);
                }
                let mut log = lines.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let Ok(sip) = port_rx.recv_timeout(Duration::from_mins(1)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the server never said where SIP listens; its output:\n{}",
                log.lock().unwrap()
            );
        };
        Self {
            child,
            sip,
            dir,
            log,
        }
    }

    /// The server's copy of the flows (recordings land in it).
    pub fn flows(&self) -> PathBuf {
        self.dir.path().join("flows")
    }

    /// The server's process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server printed so far.
    /// Where the server's API listens (`host:port`), from its console
    /// (said just after where SIP listens).
    pub fn api_address(&self) -> String {
        let deadline = Deadline::after(Duration::from_secs(30));
        loop {
            if let Some(address) = self
                .log()
                .lines()
                .find_map(|line| line.split("http://").nth(1))
                .and_then(|rest| rest.split('/').next())
            {
                return address.to_owned();
            }
            assert!(
                deadline.left().is_some(),
                "the server never said where its API listens:\n{}",
                self.log()
            );
            // Waiting for the server's console, on the wall clock.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The trace files written so far (`<traces>/<account>/<day>/<id>.json`).
    pub fn trace_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        collect_json(&self.dir.path().join("traces"), &mut files);
        files.sort();
        files
    }

    /// Waits until the server has written `count` traces (a trace is
    /// written just after its call ends), at most `timeout`; returns them.
    pub fn wait_for_traces(&self, count: usize, timeout: Duration) -> Result<Vec<Value>, String> {
        let deadline = Deadline::after(timeout);
        loop {
            let files = self.trace_files();
            if files.len() >= count {
                return files
                    .iter()
                    .map(|f| {
                        let text = std::fs::read_to_string(f).map_err(|e| e.to_string())?;
                        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", f.display()))
                    })
                    .collect();
            }
            if deadline.left().is_none() {
                return Err(format!(
                    "{} trace(s) written in {timeout:?}, {count} expected",
                    files.len()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect_json(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_json(&path, out);
        } else if path.extension().is_some_and(|x| x == "json")
            && !entry.file_name().to_string_lossy().starts_with('.')
        {
            out.push(path);
        }
    }
}

/// How SIPp talks to the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
}

/// One SIPp run: a scenario of `tests/sip/` against a server.
#[derive(Debug, Clone)]
pub struct Sipp {
    pub scenario: PathBuf,
    /// `-s`: the user part of the Request-URI (the number dialled).
    pub service: String,
    pub server: SocketAddr,
    /// SIPp's own SIP port (`-p`).
    pub port: u16,
    pub transport: Transport,
    /// `-m`: calls to make.
    pub calls: u32,
    pub extra: Vec<String>,
}

/// What a SIPp run did.
#[derive(Debug)]
pub struct SippRun {
    pub command: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// `-trace_err`: unexpected messages and timeouts.
    pub errors: String,
    /// `-trace_msg`: every message sent and received.
    pub messages: String,
}

/// The last `max` bytes of `text` (at a character boundary).
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

impl Sipp {
    /// Runs SIPp to its end (its own `-timeout` bounds it) in a fresh
    /// working directory holding `pcap/` (the pcaps Debian ships).
    pub fn run(&self, tools: &Tools) -> SippRun {
        let work = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(&tools.pcaps, work.path().join("pcap")).unwrap();
        let (errors, messages) = (
            work.path().join("errors.log"),
            work.path().join("messages.log"),
        );
        let media = free_ports(4);
        let control = free_port();
        let mut args: Vec<String> = vec![
            "-sf".into(),
            self.scenario.display().to_string(),
            "-s".into(),
            self.service.clone(),
            self.server.to_string(),
            "-i".into(),
            "127.0.0.1".into(),
            "-mi".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.port.to_string(),
            "-mp".into(),
            media.to_string(),
            "-cp".into(),
            control.to_string(),
            "-m".into(),
            self.calls.to_string(),
            "-nostdin".into(),
            "-timeout".into(),
            "60s".into(),
            "-timeout_error".into(),
            "-trace_err".into(),
            "-error_file".into(),
            errors.display().to_string(),
            "-trace_msg".into(),
            "-message_file".into(),
            messages.display().to_string(),
        ];
        if self.transport == Transport::Tcp {
            args.extend(["-t".into(), "t1".into()]);
        }
        args.extend(self.extra.iter().cloned());
        let output = Command::new("sipp")
            .args(&args)
            .current_dir(work.path())
            .stdin(Stdio::null())
            .output()
            .expect("sipp runs");
        let read = |path: &Path| {
            std::fs::read(path)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        SippRun {
            command: format!("sipp {}", args.join(" ")),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            errors: read(&errors),
            messages: read(&messages),
        }
    }
}

impl SippRun {
    /// Everything there is to know about the run, for a failure message.
    pub fn report(&self) -> String {
        format!(
            "--- {}\n--- exit code {:?}\n--- stdout (end)\n{}\n--- stderr\n{}\n\
             --- -trace_err log (end)\n{}\n--- -trace_msg log (end)\n{}",
            self.command,
            self.code,
            tail(&self.stdout, 4000),
            tail(&self.stderr, 4000),
            tail(&self.errors, 8000),
            tail(&self.messages, 12_000),
        )
    }

    /// The cumulative count of "Successful call" in SIPp's final screen.
    pub fn successful_calls(&self) -> Option<u64> {
        self.stdout
            .lines()
            .rev()
            .filter(|l| l.trim_start().starts_with("Successful call"))
            .find_map(|l| l.split('|').nth(2)?.trim().parse().ok())
    }

    /// How many messages SIPp received whose first line starts with
    /// `start` (`SIP/2.0 487`, `BYE`).
    pub fn received(&self, start: &str) -> usize {
        self.messages
            .split("-----------------------------------------------")
            .filter(|entry| entry.contains("message received"))
            .filter(|entry| {
                entry
                    .lines()
                    .skip_while(|l| !l.contains("message received"))
                    .nth(2)
                    .is_some_and(|first| first.starts_with(start))
            })
            .count()
    }
}

/// Length in seconds and RMS amplitude (0..1) of a sound file, as
/// `sox FILE -n stat` reports them.
pub fn sox_stat(file: &Path) -> Result<(f64, f64), String> {
    let output = Command::new("sox")
        .arg(file)
        .args(["-n", "stat"])
        .output()
        .map_err(|e| format!("sox: {e}"))?;
    let text = String::from_utf8_lossy(&output.stderr);
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(':').next())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .ok_or_else(|| format!("`sox {} -n stat` said no {name:?}:\n{text}", file.display()))
    };
    Ok((field("Length (seconds)")?, field("RMS     amplitude")?))
}
