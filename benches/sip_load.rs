//! Real calls under load: SIPp calls an IVR flow (answer, a 10 s prompt,
//! a digit collection that times out, hang-up) on `callflow serve --sip`,
//! all on 127.0.0.1. Prints, as JSON:
//!
//! * **held**: concurrent calls reached (streams of prompt audio seen at
//!   once), for `--calls` calls placed at `--rate` per second;
//! * **pacing**: every RTP packet the server sends goes to a sink socket of
//!   this benchmark (SIPp's SDP names it), which notes each arrival; the
//!   deviation of each packet's interval from 20 ms, per stream: mean, p99,
//!   max;
//! * **cpu and memory** of the server process: CPU seconds per call-second
//!   while all calls are up, RSS at the peak and per call;
//! * **setups per second**: a second run places short calls (answer, hang
//!   up) at `--setup-rate` and reports the rate SIPp achieved with no
//!   failed call.
//!
//! `cargo bench --bench sip_load [-- --calls 500 --rate 100 --setup-rate 150 --setup-calls 3000]`
//!
//! Needs `sipp` (Debian `sip-tester`).

// Counts, times and levels move between integers and floats for reporting.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const UAC: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="IVR caller: media to the benchmark's sink, waits for the server's BYE">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:+14155550100@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:sipp@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP4 [local_ip]
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio [sink_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true"/>
  <send><![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:+14155550100@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Contact: <sip:sipp@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0
]]></send>
  <recv request="BYE" timeout="60000"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0
]]></send>
</scenario>
"#;

struct Args {
    calls: u32,
    rate: u32,
    setup_calls: u32,
    setup_rate: u32,
}

fn args() -> Args {
    let mut out = Args {
        calls: 500,
        rate: 100,
        setup_calls: 3000,
        setup_rate: 150,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let value = argv.get(i + 1).and_then(|v| v.parse::<u32>().ok());
        match (argv[i].as_str(), value) {
            ("--calls", Some(v)) => out.calls = v,
            ("--rate", Some(v)) => out.rate = v,
            ("--setup-calls", Some(v)) => out.setup_calls = v,
            ("--setup-rate", Some(v)) => out.setup_rate = v,
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    out
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port on 127.0.0.1")
}

/// Writes the benchmark's flows: a trunk number that runs the IVR and one
/// that answers and hangs up.
fn flows(dir: &Path) {
    let account = dir.join("bench");
    for sub in ["callflows", "media"] {
        std::fs::create_dir_all(account.join(sub)).expect("writable");
    }
    std::fs::write(
        account.join("account.json"),
        r#"{"name": "Bench", "realm": "bench.example", "timezone": "UTC"}"#,
    )
    .expect("writable");
    std::fs::write(
        account.join("callflows/ivr.json"),
        r#"{"numbers": ["+12025550100"], "flow": {"module": "play", "data": {"id": "prompt"},
            "children": {"_": {"module": "collect_dtmf", "data": {"max_digits": 1, "timeout": 2000},
            "children": {"_": {"module": "hangup", "data": {}, "children": {}}}}}}}"#,
    )
    .expect("writable");
    std::fs::write(
        account.join("callflows/setup.json"),
        r#"{"numbers": ["+12025550101"], "flow": {"module": "answer", "data": {},
            "children": {"_": {"module": "hangup", "data": {}, "children": {}}}}}"#,
    )
    .expect("writable");
    std::fs::write(
        account.join("media/prompt.json"),
        r#"{"name": "A 10 s prompt", "media_source": "upload"}"#,
    )
    .expect("writable");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav =
        hound::WavWriter::create(account.join("media/prompt.wav"), spec).expect("writable");
    for i in 0..80_000_u32 {
        let t = f64::from(i) / 8000.0;
        let sample = (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16;
        wav.write_sample(sample).expect("writable");
    }
    wav.finalize().expect("writable");
}

/// Starts the server; returns it and its SIP port.
fn server(dir: &Path) -> (Child, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_callflow"))
        .args(["serve", "--listen", "127.0.0.1:0", "--sip", "127.0.0.1:0"])
        .args([
            "--trunk",
            "127.0.0.1",
            "--rtp-ports",
            "20000-29999",
            "--no-watch",
        ])
        .arg("--flows")
        .arg(dir.join("flows"))
        .arg("--traces")
        .arg(dir.join("traces"))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("the callflow binary starts");
    let stderr = child.stderr.take().expect("piped");
    let mut lines = BufReader::new(stderr).lines();
    let port = loop {
        let line = lines
            .next()
            .expect("the server prints its SIP address")
            .expect("readable");
        if let Some(rest) = line.strip_prefix("callflow: SIP on 127.0.0.1:") {
            break rest
                .split_whitespace()
                .next()
                .and_then(|p| p.parse().ok())
                .expect("a port");
        }
    };
    // Keep draining stderr so the server never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    (child, port)
}

/// CPU seconds (user + system) of a process so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}

/// A field of /proc/PID/status in kB (`VmRSS`, `VmHWM`).
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| {
            rest.trim_start_matches(':')
                .split_whitespace()
                .next()
                .map(str::to_owned)
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// What the sink saw.
#[derive(Default)]
struct Sink {
    /// Per SSRC: the last arrival (kernel time, ns).
    last: BTreeMap<u32, i128>,
    /// |interval - 20 ms| of every packet after a stream's first, in µs.
    deviations_us: Vec<u32>,
    /// SSRCs seen lately, and when (kernel time, ns).
    active: BTreeMap<u32, i128>,
    packets: u64,
}

#[allow(clippy::disallowed_methods)] // a benchmark measures wall-clock time
fn sipp(
    scenario: &Path,
    port: u16,
    service: &str,
    calls: u32,
    rate: u32,
    sink: u16,
    dir: &Path,
) -> (bool, Duration, String) {
    let started = Instant::now();
    let output = Command::new("sipp")
        .arg("-sf")
        .arg(scenario)
        .arg(format!("127.0.0.1:{port}"))
        .args(["-s", service, "-i", "127.0.0.1"])
        .args([
            "-p",
            &free_port().to_string(),
            "-cp",
            &free_port().to_string(),
        ])
        .args(["-key", "sink_port", &sink.to_string()])
        .args([
            "-m",
            &calls.to_string(),
            "-r",
            &rate.to_string(),
            "-l",
            &calls.to_string(),
        ])
        .args([
            "-nostdin",
            "-timeout",
            "300s",
            "-timeout_error",
            "-max_socket",
            "4096",
        ])
        .current_dir(dir)
        .output()
        .expect("sipp runs (Debian: apt-get install sip-tester)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status.success(), started.elapsed(), text)
}

/// Receives every RTP packet the server sends, noting when the kernel got
/// each (`SO_TIMESTAMPNS`: a capture's timestamps, so this thread's own
/// scheduling delays do not count), until `stop`.
fn receive(socket: &UdpSocket, sink: &Mutex<Sink>, stop: &AtomicBool) {
    use nix::sys::socket::{
        ControlMessageOwned, MsgFlags, SockaddrIn, recvmsg, setsockopt, sockopt,
    };
    use std::os::fd::AsRawFd;
    setsockopt(socket, sockopt::ReceiveTimestampns, &true).expect("SO_TIMESTAMPNS");
    let mut buf = [0_u8; 2048];
    let mut space = nix::cmsg_space!(nix::sys::time::TimeSpec);
    while !stop.load(Ordering::Relaxed) {
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let Ok(message) = recvmsg::<SockaddrIn>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        ) else {
            continue;
        };
        let len = message.bytes;
        let Some(at_ns) = message.cmsgs().ok().and_then(|mut cmsgs| {
            cmsgs.find_map(|c| match c {
                ControlMessageOwned::ScmTimestampns(ts) => {
                    Some(i128::from(ts.tv_sec()) * 1_000_000_000 + i128::from(ts.tv_nsec()))
                }
                _ => None,
            })
        }) else {
            continue;
        };
        if len < 12 || buf[1] & 0x7f != 0 {
            continue; // not PCMU audio (telephone events)
        }
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let mut sink = sink.lock().expect("not poisoned");
        sink.packets += 1;
        if let Some(previous) = sink.last.insert(ssrc, at_ns) {
            let interval_us = (at_ns - previous) / 1000;
            let deviation =
                u32::try_from((interval_us - 20_000).unsigned_abs()).unwrap_or(u32::MAX);
            sink.deviations_us.push(deviation);
        }
        sink.active.insert(ssrc, at_ns);
    }
}

/// What the server did while every call was up.
#[derive(Default)]
struct Load {
    peak_streams: usize,
    plateau_secs: f64,
    plateau_cpu: f64,
    peak_rss: u64,
    rss_at_peak: u64,
}

/// Samples the streams seen, CPU and RSS every 250 ms until `done`.
#[allow(clippy::disallowed_methods)] // a benchmark measures wall-clock time
fn watch(pid: u32, sink: &Mutex<Sink>, done: &AtomicBool) -> Load {
    let mut load = Load::default();
    // (when, streams up, the server's CPU seconds so far)
    let mut samples: Vec<(Instant, usize, f64)> = Vec::new();
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(250));
        let now = Instant::now();
        let streams = {
            let mut sink = sink.lock().expect("not poisoned");
            // Streams whose last packet is within 200 ms of the newest.
            let newest = sink.active.values().copied().max().unwrap_or(0);
            sink.active.retain(|_, seen| newest - *seen < 200_000_000);
            sink.active.len()
        };
        let rss = status_kb(pid, "VmRSS");
        load.peak_rss = load.peak_rss.max(rss);
        if streams > load.peak_streams {
            load.peak_streams = streams;
            load.rss_at_peak = rss;
        }
        samples.push((now, streams, cpu_seconds(pid)));
    }
    // The plateau, worked out once the peak is known (a running maximum
    // would count the ramp as plateau): the first stretch of samples with
    // 95% of the peak's streams up or more.
    let up = |streams: usize| load.peak_streams > 0 && streams * 100 >= load.peak_streams * 95;
    if let Some(first) = samples.iter().position(|s| up(s.1)) {
        let last = samples[first..]
            .iter()
            .position(|s| !up(s.1))
            .map_or(samples.len() - 1, |n| first + n - 1);
        let ((since, _, cpu0), (until, _, cpu1)) = (samples[first], samples[last]);
        load.plateau_secs = until.duration_since(since).as_secs_f64();
        load.plateau_cpu = cpu1 - cpu0;
    }
    load
}

/// Nearest-rank percentile of sorted values, in per mille.
fn permille(sorted: &[u32], p: usize) -> u32 {
    let rank = (p * sorted.len())
        .div_ceil(1000)
        .clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or(0)
}

/// "Successful call" from SIPp's final statistics.
fn successful(text: &str) -> u32 {
    text.lines()
        .find(|l| l.trim_start().starts_with("Successful call"))
        .and_then(|l| l.split('|').nth(2))
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(0)
}

fn main() {
    let args = args();
    let dir = tempfile::tempdir().expect("a temporary directory");
    flows(&dir.path().join("flows"));
    let scenario = dir.path().join("uac.xml");
    std::fs::write(&scenario, UAC).expect("writable");
    let (mut child, port) = server(dir.path());
    let pid = child.id();
    let idle_rss = status_kb(pid, "VmRSS");

    let socket = UdpSocket::bind("127.0.0.1:0").expect("a sink socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("a timeout");
    let sink_port = socket.local_addr().expect("bound").port();
    let sink = Arc::new(Mutex::new(Sink::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let receiver = {
        let (sink, stop) = (Arc::clone(&sink), Arc::clone(&stop));
        std::thread::spawn(move || receive(&socket, &sink, &stop))
    };

    // The IVR calls, watched for concurrency, CPU and memory.
    let cpu_before = cpu_seconds(pid);
    let ivr_done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (sink, done) = (Arc::clone(&sink), Arc::clone(&ivr_done));
        std::thread::spawn(move || watch(pid, &sink, &done))
    };
    let (ok, _, output) = sipp(
        &scenario,
        port,
        "12025550100",
        args.calls,
        args.rate,
        sink_port,
        dir.path(),
    );
    ivr_done.store(true, Ordering::Relaxed);
    if !ok {
        eprintln!("sipp (IVR calls) failed:\n{output}");
    }
    let load = watcher.join().expect("the watcher");
    let cpu_total = cpu_seconds(pid) - cpu_before;
    let rss_after = status_kb(pid, "VmRSS");

    // Call setups per second: short calls at a high rate.
    let (setup_ok, setup_elapsed, setup_output) = sipp(
        &scenario,
        port,
        "12025550101",
        args.setup_calls,
        args.setup_rate,
        sink_port,
        dir.path(),
    );
    if !setup_ok {
        eprintln!("sipp (short calls) failed:\n{setup_output}");
    }
    stop.store(true, Ordering::Relaxed);
    receiver.join().expect("the receiver");
    let _ = child.kill();
    let _ = child.wait();

    let sink = sink.lock().expect("not poisoned");
    let mut deviations = sink.deviations_us.clone();
    deviations.sort_unstable();
    let mean = if deviations.is_empty() {
        0.0
    } else {
        deviations.iter().map(|&d| f64::from(d)).sum::<f64>() / deviations.len() as f64
    };
    let cpu_per_call = if load.plateau_secs > 0.0 && load.peak_streams > 0 {
        load.plateau_cpu / load.plateau_secs / load.peak_streams as f64 * 100.0
    } else {
        0.0
    };
    let rss_per_call = if load.peak_streams > 0 {
        load.rss_at_peak.saturating_sub(idle_rss) as f64 / load.peak_streams as f64
    } else {
        0.0
    };
    let setups = successful(&setup_output);
    println!(
        "{{\"calls\": {}, \"rate\": {}, \"ivr_successful\": {}, \"held_streams\": {}, \"plateau_s\": {:.1}, \
\"cpu_per_call_percent\": {cpu_per_call:.3}, \"cpu_total_s\": {cpu_total:.1}, \"rss_idle_kb\": {idle_rss}, \
\"rss_at_peak_kb\": {}, \"rss_peak_kb\": {}, \"rss_after_kb\": {rss_after}, \"rss_per_call_kb\": {rss_per_call:.0}, \
\"packets\": {}, \"pacing_mean_us\": {mean:.0}, \"pacing_p50_us\": {}, \"pacing_p99_us\": {}, \"pacing_p999_us\": {}, \
\"pacing_max_us\": {}, \"setup_calls\": {}, \"setup_rate\": {}, \"setup_successful\": {setups}, \"setups_per_s\": {:.1}}}",
        args.calls,
        args.rate,
        successful(&output),
        load.peak_streams,
        load.plateau_secs,
        load.rss_at_peak,
        load.peak_rss,
        sink.packets,
        permille(&deviations, 500),
        permille(&deviations, 990),
        permille(&deviations, 999),
        deviations.last().copied().unwrap_or(0),
        args.setup_calls,
        args.setup_rate,
        f64::from(setups) / setup_elapsed.as_secs_f64(),
    );
}
