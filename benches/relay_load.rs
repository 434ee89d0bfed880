//! Relayed calls under load: SIPp calls a number routed to the account's
//! carrier (`resources`), whose gateway is a second SIPp that answers at
//! once; the server bridges the two legs and relays RTP between them. All
//! on 127.0.0.1. SIPp does the signalling only: the two SDPs name two
//! sockets of this benchmark (the caller's side A, the callee's side B),
//! which send and receive every RTP packet themselves. Prints, as JSON:
//!
//! * **held**: calls up at once with media flowing both ways (both of its
//!   streams delivered a packet in the last 200 ms), for `--calls` calls
//!   placed at `--rate` per second and held `--hold-s` seconds; calls
//!   whose streams delivered anything at all, each way;
//! * **relay latency**, each way: every 20 ms each side of each call sends
//!   a PCMU packet (160 bytes) to the server's port of its leg (side A
//!   learns it from the 200's SDP, which the caller SIPp logs with
//!   `<log>`; side B from where the relayed packets come from). The
//!   payload, which the relay passes on untouched (both legs PCMU),
//!   carries the call, the side, a sequence number and the send time
//!   (`CLOCK_REALTIME`, read just before `sendto`); the other side notes
//!   the kernel's receive time of the relayed packet (`SO_TIMESTAMPNS`).
//!   On loopback the kernel stamps a packet when its sender hands it to the
//!   loopback device, so the difference runs from the packet entering the
//!   server's socket to the relayed packet leaving the server: the relay's
//!   added latency, plus this benchmark's own `sendto` (a few µs).
//!   `baseline` is that overhead: the same measurement on packets sent from
//!   side A straight to side B (every 2 ms), under the same load. p50, p99,
//!   p99.9 and max over the whole run and over the plateau (every call up);
//!   packets sent and received each way (the streams stop 0.5 s before the
//!   caller's BYE, so none is lost to a closing leg);
//! * **cpu and memory** over the plateau: the server's CPU per call and in
//!   all (% of a core, /proc/PID/stat), this benchmark's, both SIPp
//!   processes', and the rest of the machine's (other work: the figures
//!   are only clean when it is near 0; `other_cpu_before_percent` is the
//!   same just before the calls); the server's RSS at the peak over the
//!   idle server's, per call;
//! * whether every call completed: SIPp's successful and failed calls and
//!   exit codes, caller and gateway.
//!
//! Streams are spread evenly over the 20 ms (each call has its own phase,
//! as independent phones would), never sent in one burst per tick. The
//! sending thread runs at the priority `callflow serve` asks for its RTP
//! threads (niceness about -10, with root or `CAP_SYS_NICE`): a sender
//! that runs late sends bursts, which the relay then queues, adding the
//! benchmark's lateness to the relay's latency. `sender_late` is how late
//! each packet left against its schedule; the receivers need no priority
//! (the kernel's timestamps do not wait for them).
//!
//! `cargo bench --bench relay_load [-- --calls 500 --rate 100 --hold-s 20]`
//!
//! Needs `sipp` (Debian `sip-tester`).

// Counts, times and levels move between integers and floats for reporting.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{BufRead, BufReader, Read, Seek};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

/// The caller: offers PCMU on side A's socket, logs the server's RTP port
/// from the 200's SDP, holds, hangs up.
const UAC: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="relay caller: media from the benchmark's side A, BYE after the hold">
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
o=caller 53655765 2353687637 IN IP4 [local_ip]
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio [a_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true" rrs="true">
    <action>
      <ereg regexp="m=audio ([0-9]+)" search_in="body" check_it="true" assign_to="m,port"/>
      <log message="up [call_number] [$port] ([$m])"/>
    </action>
  </recv>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:+14155550100@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Contact: <sip:sipp@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
  <pause milliseconds="HOLD_MS"/>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:+14155550100@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
Contact: <sip:sipp@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200" crlf="true"/>
</scenario>
"#;

/// The carrier's gateway: answers at once (no 180: no ringback) with side
/// B's socket in its SDP, waits for the BYE.
const UAS: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="relay callee: answers at once with the benchmark's side B, waits for BYE">
  <recv request="INVITE"/>
  <send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:carrier@[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=callee 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio [b_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
]]></send>
  <recv request="ACK"/>
  <recv request="BYE" timeout="HOLD_TIMEOUT_MS"/>
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

/// The number dialled (the callflow's number, the resource's rule).
const NUMBER: &str = "+15550200001";
/// The RTP packet interval.
const PTIME_NS: i64 = 20_000_000;
/// Side A sends a baseline packet straight to side B this often.
const BASELINE_NS: i64 = 2_000_000;
/// The payload's first bytes: a packet of this benchmark.
const MAGIC: &[u8; 4] = b"CFRB";
/// The baseline's call number (SIPp numbers calls from 1).
const BASELINE: u32 = 0;

struct Args {
    calls: u32,
    rate: u32,
    hold_s: u32,
}

fn args() -> Args {
    let mut out = Args {
        calls: 500,
        rate: 100,
        hold_s: 20,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let value = argv.get(i + 1).and_then(|v| v.parse::<u32>().ok());
        match (argv[i].as_str(), value) {
            ("--calls", Some(v)) => out.calls = v,
            ("--rate", Some(v)) => out.rate = v.max(1),
            ("--hold-s", Some(v)) => out.hold_s = v.max(2),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    out
}

/// The first of `count` consecutive free UDP ports on 127.0.0.1, the first
/// even (SIPp's `-mp`: audio, RTCP and video above it).
fn free_ports(count: u16) -> u16 {
    for _ in 0..1000 {
        let first = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
            .expect("a free UDP port on 127.0.0.1");
        if first % 2 == 1 || first.checked_add(count).is_none() {
            continue;
        }
        if (first..first + count).all(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok()) {
            return first;
        }
    }
    panic!("no {count} consecutive free ports on 127.0.0.1");
}

fn free_port() -> u16 {
    free_ports(1)
}

/// Nanoseconds on a clock (`CLOCK_REALTIME` is the kernel's receive
/// timestamps' clock).
fn clock_ns(clock: nix::time::ClockId) -> i64 {
    let now = nix::time::clock_gettime(clock).expect("a clock");
    now.tv_sec() * 1_000_000_000 + now.tv_nsec()
}

fn realtime_ns() -> i64 {
    clock_ns(nix::time::ClockId::CLOCK_REALTIME)
}

fn monotonic_ns() -> i64 {
    clock_ns(nix::time::ClockId::CLOCK_MONOTONIC)
}

/// Writes the benchmark's flows: the number (a trunk call routes by the
/// numbers callflows claim) goes to the account's carrier, whose gateway is
/// the callee SIPp (PCMU only: the relay passes payloads on untouched, no
/// transcoding).
fn flows(dir: &Path, gateway_port: u16) {
    let account = dir.join("bench");
    for sub in ["callflows", "resources"] {
        std::fs::create_dir_all(account.join(sub)).expect("writable");
    }
    std::fs::write(
        account.join("account.json"),
        r#"{"name": "Bench", "realm": "bench.example", "timezone": "UTC"}"#,
    )
    .expect("writable");
    std::fs::write(
        account.join("callflows/relay.json"),
        r#"{"name": "Off-net through the carrier", "numbers": ["+15550200001"],
            "flow": {"module": "resources", "data": {}, "children": {}}}"#,
    )
    .expect("writable");
    std::fs::write(
        account.join("resources/carrier.json"),
        format!(
            r#"{{"name": "The callee SIPp", "enabled": true, "rules": ["^\\+1555020\\d{{4}}$"],
                "gateways": [{{"server": "127.0.0.1:{gateway_port}", "codecs": ["PCMU"]}}]}}"#
        ),
    )
    .expect("writable");
}

/// Starts the server; returns it and its SIP port.
fn server(dir: &Path) -> (Child, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_callflow"))
        .args(["serve", "--listen", "127.0.0.1:0", "--sip", "127.0.0.1:0"])
        // Above the kernel's ephemeral ports and the SIP tests' ranges.
        .args([
            "--trunk",
            "127.0.0.1",
            "--rtp-ports",
            "61000-64999",
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

/// Kills what it holds when dropped (a panic included).
struct Reaper(Vec<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// CPU seconds (user + system) of a process so far.
fn cpu_seconds(pid: &str) -> f64 {
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

/// The machine's (busy, total) CPU ticks so far (/proc/stat).
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let values: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().take(8).sum();
    // idle and iowait
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    (total - idle, total)
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

/// A SIPp command for `scenario` with `extra` arguments, on 127.0.0.1 with
/// ports of its own.
fn sipp(scenario: &Path, extra: &[String], dir: &Path) -> Command {
    let mut command = Command::new("sipp");
    command
        .arg("-sf")
        .arg(scenario)
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args(["-mp", &free_ports(4).to_string()])
        .args(["-cp", &free_port().to_string()])
        .args(extra)
        .args(["-nostdin", "-timeout_error", "-max_socket", "4096"])
        .current_dir(dir)
        .stdin(Stdio::null());
    command
}

const NO_SIPP: &str = "sipp runs (Debian: apt-get install sip-tester)";

/// A count from SIPp's final statistics ("Successful call", "Failed call").
fn sipp_count(text: &str, what: &str) -> u32 {
    text.lines()
        .find(|l| l.trim_start().starts_with(what))
        .and_then(|l| l.split('|').nth(2))
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(0)
}

/// What the sender learns.
enum Learnt {
    /// The caller's 200 came: the server's port of leg A (monotonic ns).
    Up { call: u32, port: u16, at: i64 },
    /// The first relayed packet of a call reached side B from this port of
    /// the server's leg B.
    LegB { call: u32, port: u16 },
}

/// Reads SIPp's `<log>` lines (`up <call> <port>`) as they are written.
fn tail_log(path: &Path, learnt: &mpsc::Sender<Learnt>, stop: &AtomicBool) {
    let mut offset = 0;
    let mut pending = String::new();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(5));
        let Ok(mut file) = std::fs::File::open(path) else {
            continue;
        };
        if file.seek(std::io::SeekFrom::Start(offset)).is_err() {
            continue;
        }
        let mut text = String::new();
        let Ok(read) = file.read_to_string(&mut text) else {
            continue;
        };
        offset += read as u64;
        pending.push_str(&text);
        let at = monotonic_ns();
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            let words: Vec<&str> = line.split_whitespace().collect();
            if let Some(i) = words.iter().position(|w| *w == "up")
                && let (Some(call), Some(port)) = (
                    words.get(i + 1).and_then(|w| w.parse().ok()),
                    words.get(i + 2).and_then(|w| w.parse().ok()),
                )
            {
                let _ = learnt.send(Learnt::Up { call, port, at });
            }
        }
    }
}

/// One stream (a call's side A or B, or the baseline) due at `.0`.
type Due = Reverse<(i64, u32, u8)>;

/// Packets sent: A→B, B→A, baseline.
#[derive(Default)]
struct Sent {
    ab: u64,
    ba: u64,
    baseline: u64,
    /// How late each packet of a call left against its schedule, ns (a
    /// late sender sends bursts).
    late: Vec<u32>,
}

/// Asks for the priority of the server's RTP threads (niceness about -10;
/// needs root or `CAP_SYS_NICE`), as `callflow serve` does for them: the
/// sender then competes with the relay as an equal. A sender that runs
/// late sends bursts, which the relay would queue: that is not the relay's
/// latency (how late it ran is reported).
fn raise_priority() {
    use thread_priority::{ThreadPriority, ThreadPriorityValue, set_current_thread_priority};
    if let Ok(value) = ThreadPriorityValue::try_from(75_u8)
        && let Err(e) = set_current_thread_priority(ThreadPriority::Crossplatform(value))
    {
        eprintln!("the sender runs at the normal priority: {e:?}");
    }
}

/// A call's streams, as the sender sees them.
#[derive(Clone, Copy, Default)]
struct Streams {
    /// The server's RTP ports of legs A and B (0: not known yet).
    leg_a: u16,
    leg_b: u16,
    /// When both streams stop (monotonic ns).
    until: i64,
    /// The last sequence numbers sent by sides A and B.
    seq: [u32; 2],
}

/// Sends every stream's packets on time until `stop`: side A's to the
/// server's leg A port, side B's to leg B's, the baseline from A to B.
/// Each call's streams stop 0.5 s before its BYE (`hold_ns` after its 200).
fn send(
    sides: &[Arc<UdpSocket>; 2],
    learnt: &mpsc::Receiver<Learnt>,
    hold_ns: i64,
    stop: &AtomicBool,
) -> Sent {
    raise_priority();
    let b_addr = sides[1].local_addr().expect("bound");
    let mut sent = Sent::default();
    let mut heap: BinaryHeap<Due> = BinaryHeap::new();
    let mut calls: Vec<Streams> = Vec::new();
    let mut baseline_seq = 0_u32;
    heap.push(Reverse((monotonic_ns(), BASELINE, 0)));
    let mut packet = [0_u8; 12 + 160];
    while !stop.load(Ordering::Relaxed) {
        while let Ok(event) = learnt.try_recv() {
            match event {
                Learnt::Up { call, port, at } => {
                    let i = call as usize;
                    if calls.len() <= i {
                        calls.resize(i + 1, Streams::default());
                    }
                    calls[i] = Streams {
                        leg_a: port,
                        until: at + hold_ns - 500_000_000,
                        ..Streams::default()
                    };
                    // Each call's own phase within the 20 ms.
                    let phase = i64::from(call.wrapping_mul(7919) % 20_000) * 1000;
                    heap.push(Reverse((monotonic_ns() + phase, call, 0)));
                }
                Learnt::LegB { call, port } => {
                    if let Some(streams) = calls.get_mut(call as usize)
                        && streams.leg_b == 0
                    {
                        streams.leg_b = port;
                        heap.push(Reverse((monotonic_ns() + PTIME_NS / 2, call, 1)));
                    }
                }
            }
        }
        let now = monotonic_ns();
        while let Some(&Reverse((due, call, side))) = heap.peek() {
            if due > now {
                break;
            }
            heap.pop();
            if call == BASELINE {
                baseline_seq += 1;
                build(&mut packet, BASELINE, 0, baseline_seq);
                if stamp_and_send(&sides[0], &mut packet, b_addr) {
                    sent.baseline += 1;
                }
                heap.push(Reverse((due + BASELINE_NS, call, side)));
                continue;
            }
            let Some(streams) = calls.get_mut(call as usize) else {
                continue;
            };
            if now >= streams.until {
                continue; // the call's streams are over
            }
            let s = usize::from(side);
            streams.seq[s] += 1;
            build(&mut packet, call, side, streams.seq[s]);
            let port = if side == 0 {
                streams.leg_a
            } else {
                streams.leg_b
            };
            let to = SocketAddr::from(([127, 0, 0, 1], port));
            let late = monotonic_ns() - due;
            sent.late.push(u32::try_from(late).unwrap_or(u32::MAX));
            if stamp_and_send(&sides[s], &mut packet, to) {
                if side == 0 {
                    sent.ab += 1;
                } else {
                    sent.ba += 1;
                }
            }
            heap.push(Reverse((due + PTIME_NS, call, side)));
        }
        // Sleep until the next packet is due (1 ms at most: new calls).
        let next = heap
            .peek()
            .map_or(1_000_000, |Reverse((due, ..))| due - now);
        if next > 0 {
            std::thread::sleep(Duration::from_nanos(next.min(1_000_000) as u64));
        }
    }
    sent
}

/// An RTP packet (PCMU, 160 bytes of payload) of a stream, its send time
/// left for [`stamp_and_send`]. Payload: magic, call, side, sequence number,
/// send time (ns), then PCMU silence.
fn build(packet: &mut [u8; 172], call: u32, side: u8, seq: u32) {
    packet[0] = 0x80;
    packet[1] = 0; // PCMU
    packet[2..4].copy_from_slice(&(seq as u16).to_be_bytes());
    packet[4..8].copy_from_slice(&seq.wrapping_mul(160).to_be_bytes());
    packet[8..12].copy_from_slice(&(call.wrapping_mul(2) + u32::from(side)).to_be_bytes());
    let payload = &mut packet[12..];
    payload.fill(0xff);
    payload[0..4].copy_from_slice(MAGIC);
    payload[4..8].copy_from_slice(&call.to_be_bytes());
    payload[8] = side;
    payload[9..13].copy_from_slice(&seq.to_be_bytes());
}

/// Writes the send time into the payload and sends at once.
fn stamp_and_send(socket: &UdpSocket, packet: &mut [u8; 172], to: SocketAddr) -> bool {
    packet[12 + 13..12 + 21].copy_from_slice(&realtime_ns().to_be_bytes());
    socket.send_to(packet, to).is_ok()
}

/// What one side received.
#[derive(Default)]
struct Received {
    /// (kernel receive time, latency), ns, of every relayed packet.
    relayed: Vec<(i64, u32)>,
    /// Latencies of the baseline packets (side B only), ns.
    baseline: Vec<(i64, u32)>,
    /// Packets that came to the wrong side, or with a latency below 0 or
    /// above 4 s.
    odd: u64,
}

/// Receives every packet of side `side` (0: A, 1: B), noting the kernel's
/// receive time (`SO_TIMESTAMPNS`), until `stop`. Side B reports where each
/// call's leg B sends from; both note each call's last arrival in `last`.
fn receive(
    socket: &UdpSocket,
    side: u8,
    last: &[[AtomicI64; 2]],
    learnt: &mpsc::Sender<Learnt>,
    stop: &AtomicBool,
) -> Received {
    use nix::sys::socket::{
        ControlMessageOwned, MsgFlags, SockaddrIn, recvmsg, setsockopt, sockopt,
    };
    use std::os::fd::AsRawFd;
    setsockopt(socket, sockopt::ReceiveTimestampns, &true).expect("SO_TIMESTAMPNS");
    let mut out = Received::default();
    let mut known = vec![false; last.len()];
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
        let from = message.address.map_or(0, |a| a.port());
        let Some(at) = message.cmsgs().ok().and_then(|mut cmsgs| {
            cmsgs.find_map(|c| match c {
                ControlMessageOwned::ScmTimestampns(ts) => {
                    Some(ts.tv_sec() * 1_000_000_000 + ts.tv_nsec())
                }
                _ => None,
            })
        }) else {
            continue;
        };
        if len < 12 + 21 || &buf[12..16] != MAGIC {
            continue;
        }
        let payload = &buf[12..len];
        let call = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
        let sent_by = payload[8];
        let mut sent_at = [0_u8; 8];
        sent_at.copy_from_slice(&payload[13..21]);
        let latency = at - i64::from_be_bytes(sent_at);
        let Ok(latency) = u32::try_from(latency) else {
            out.odd += 1;
            continue;
        };
        if sent_by == side {
            out.odd += 1;
            continue;
        }
        if call == BASELINE {
            out.baseline.push((at, latency));
            continue;
        }
        out.relayed.push((at, latency));
        let i = call as usize;
        if let Some(seen) = last.get(i) {
            seen[usize::from(side)].store(at, Ordering::Relaxed);
            if side == 1 && !known[i] {
                known[i] = true;
                let _ = learnt.send(Learnt::LegB { call, port: from });
            }
        }
    }
    out
}

/// One look at the server and the machine.
#[derive(Clone, Copy, Default)]
struct Sample {
    /// Realtime, ns.
    at: i64,
    /// Calls with packets both ways in the last 200 ms.
    held: usize,
    rss_kb: u64,
    /// CPU seconds so far: the server, this benchmark, both SIPp processes.
    server: f64,
    bench: f64,
    sipp: f64,
    /// The machine's busy and total ticks so far.
    machine: (u64, u64),
}

/// Looks every 250 ms until `done`.
fn watch(pid: u32, sipps: &[u32], last: &[[AtomicI64; 2]], done: &AtomicBool) -> Vec<Sample> {
    let server = pid.to_string();
    let sipps: Vec<String> = sipps.iter().map(u32::to_string).collect();
    let mut samples = Vec::new();
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(250));
        let at = realtime_ns();
        let held = last
            .iter()
            .filter(|sides| {
                sides
                    .iter()
                    .all(|seen| at - seen.load(Ordering::Relaxed) < 200_000_000)
            })
            .count();
        samples.push(Sample {
            at,
            held,
            rss_kb: status_kb(pid, "VmRSS"),
            server: cpu_seconds(&server),
            bench: cpu_seconds("self"),
            sipp: sipps.iter().map(|p| cpu_seconds(p)).sum(),
            machine: machine_ticks(),
        });
    }
    samples
}

/// What the server did while every call was up.
#[derive(Default)]
struct Load {
    /// Calls with packets both ways at once, at most.
    peak_held: usize,
    /// The plateau: the first and last look of the first stretch with
    /// every call up (98% of the peak or more), realtime ns.
    plateau: (i64, i64),
    /// CPU over the plateau, % of a core: the server, this benchmark, the
    /// SIPp processes, everything else on the machine.
    server_cpu: f64,
    bench_cpu: f64,
    sipp_cpu: f64,
    other_cpu: f64,
    peak_rss: u64,
    rss_at_peak: u64,
}

impl Load {
    fn of(samples: &[Sample]) -> Self {
        let peak_held = samples.iter().map(|s| s.held).max().unwrap_or(0);
        let up = |s: &&Sample| s.held * 100 >= peak_held * 98 && peak_held > 0;
        let first = samples.iter().position(|s| up(&s)).unwrap_or(0);
        let len = samples[first..].iter().take_while(up).count();
        let window = &samples[first..first + len];
        let (Some(start), Some(end)) = (window.first(), window.last()) else {
            return Self::default();
        };
        let seconds = (end.at - start.at) as f64 / 1e9;
        let percent = |cpu: f64| cpu / seconds.max(f64::MIN_POSITIVE) * 100.0;
        let busy = end.machine.0.saturating_sub(start.machine.0) as f64
            / end.machine.1.saturating_sub(start.machine.1).max(1) as f64
            * 100.0
            * cpus() as f64;
        let (server_cpu, bench_cpu, sipp_cpu) = (
            percent(end.server - start.server),
            percent(end.bench - start.bench),
            percent(end.sipp - start.sipp),
        );
        let at_peak = samples.iter().find(|s| s.held == peak_held);
        Self {
            peak_held,
            plateau: (start.at, end.at),
            server_cpu,
            bench_cpu,
            sipp_cpu,
            other_cpu: (busy - server_cpu - bench_cpu - sipp_cpu).max(0.0),
            peak_rss: samples.iter().map(|s| s.rss_kb).max().unwrap_or(0),
            rss_at_peak: at_peak.map_or(0, |s| s.rss_kb),
        }
    }
}

/// Nearest-rank percentile of sorted values, in per mille.
fn permille(sorted: &[u32], p: usize) -> u32 {
    let rank = (p * sorted.len())
        .div_ceil(1000)
        .clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or(0)
}

/// `"<name>_p50_us": .., p99, p999, max` of latencies (ns), received within
/// `window` (realtime ns).
fn latency_json(name: &str, samples: &[(i64, u32)], window: (i64, i64)) -> String {
    let values = samples
        .iter()
        .filter(|(at, _)| *at >= window.0 && *at <= window.1)
        .map(|&(_, latency)| latency)
        .collect();
    percentiles_json(name, values)
}

/// `"<name>_n": .., "<name>_p50_us": .., p99, p999, max` of times in ns.
fn percentiles_json(name: &str, mut values: Vec<u32>) -> String {
    values.sort_unstable();
    let us = |ns: u32| f64::from(ns) / 1000.0;
    format!(
        "\"{name}_n\": {}, \"{name}_p50_us\": {:.1}, \"{name}_p99_us\": {:.1}, \"{name}_p999_us\": {:.1}, \"{name}_max_us\": {:.1}",
        values.len(),
        us(permille(&values, 500)),
        us(permille(&values, 990)),
        us(permille(&values, 999)),
        us(values.last().copied().unwrap_or(0)),
    )
}

/// The benchmark's two sides: sockets with room for a few hundred ms of
/// packets (8 MB when allowed).
fn sides() -> [Arc<UdpSocket>; 2] {
    let bind = || {
        use nix::sys::socket::{setsockopt, sockopt};
        let socket = UdpSocket::bind("127.0.0.1:0").expect("a socket of the benchmark");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("a timeout");
        let size = 8 << 20;
        let _ = setsockopt(&socket, sockopt::RcvBufForce, &size)
            .or_else(|_| setsockopt(&socket, sockopt::RcvBuf, &size));
        Arc::new(socket)
    };
    [bind(), bind()]
}

/// How busy the machine is over the next second (other work on it), % of
/// a core.
fn machine_busy_now() -> f64 {
    let before = machine_ticks();
    std::thread::sleep(Duration::from_secs(1));
    let after = machine_ticks();
    after.0.saturating_sub(before.0) as f64 / after.1.saturating_sub(before.1).max(1) as f64
        * 100.0
        * cpus() as f64
}

/// The machine's CPUs.
fn cpus() -> usize {
    std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .count()
        .max(1)
}

/// Everything measured, for the report.
struct Measured {
    /// SIPp's exit code and output: the caller, the carrier's gateway.
    caller: (i32, String),
    gateway: (i32, String),
    /// Other work on the machine just before the calls, % of a core.
    busy_before: f64,
    idle_rss: u64,
    rss_after: u64,
    cpu_total: f64,
    load: Load,
    media: MediaReport,
}

/// Starts the carrier's gateway: a SIPp that answers with side B's socket.
fn start_gateway(args: &Args, dir: &Path, port: u16, side_b: u16) -> Child {
    let scenario = dir.join("uas.xml");
    let timeout_ms = (u64::from(args.hold_s) + 60) * 1000;
    std::fs::write(
        &scenario,
        UAS.replace("HOLD_TIMEOUT_MS", &timeout_ms.to_string()),
    )
    .expect("writable");
    let out = std::fs::File::create(dir.join("uas.out")).expect("writable");
    sipp(
        &scenario,
        &[
            "-p".into(),
            port.to_string(),
            "-key".into(),
            "b_port".into(),
            side_b.to_string(),
            "-m".into(),
            args.calls.to_string(),
            "-timeout".into(),
            format!("{}s", args.hold_s + 120),
        ],
        dir,
    )
    .stderr(out.try_clone().expect("a file handle"))
    .stdout(out)
    .spawn()
    .expect(NO_SIPP)
}

/// Starts placing the calls: SIPp with side A's socket in its SDP, logging
/// the server's ports to `log`.
fn start_caller(args: &Args, dir: &Path, sip_port: u16, side_a: u16, log: &Path) -> Child {
    let scenario = dir.join("uac.xml");
    let hold_ms = u64::from(args.hold_s) * 1000;
    std::fs::write(&scenario, UAC.replace("HOLD_MS", &hold_ms.to_string())).expect("writable");
    sipp(
        &scenario,
        &[
            format!("127.0.0.1:{sip_port}"),
            "-s".into(),
            NUMBER.into(),
            "-p".into(),
            free_port().to_string(),
            "-key".into(),
            "a_port".into(),
            side_a.to_string(),
            "-m".into(),
            args.calls.to_string(),
            "-r".into(),
            args.rate.to_string(),
            "-l".into(),
            args.calls.to_string(),
            "-timeout".into(),
            format!("{}s", args.hold_s + 120),
            "-trace_logs".into(),
            "-log_file".into(),
            log.display().to_string(),
        ],
        dir,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect(NO_SIPP)
}

/// The media threads: two receivers, the sender, the log reader.
struct Media {
    stop: Arc<AtomicBool>,
    /// Per call (SIPp numbers them from 1), the last arrival at sides A and
    /// B (realtime ns).
    last: Arc<Vec<[AtomicI64; 2]>>,
    receivers: Vec<std::thread::JoinHandle<Received>>,
    sender: std::thread::JoinHandle<Sent>,
    tail: std::thread::JoinHandle<()>,
}

/// What the media threads saw.
struct MediaReport {
    sent: Sent,
    /// What sides A and B received.
    received: [Received; 2],
    /// Calls whose streams A→B and B→A delivered packets.
    with_media: [usize; 2],
}

impl Media {
    fn start(args: &Args, sides: &[Arc<UdpSocket>; 2], log: &Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let last: Arc<Vec<[AtomicI64; 2]>> = Arc::new(
            (0..=args.calls)
                .map(|_| [AtomicI64::new(0), AtomicI64::new(0)])
                .collect(),
        );
        let (learnt_tx, learnt_rx) = mpsc::channel();
        let receivers = (0..2_u8)
            .map(|side| {
                let socket = Arc::clone(&sides[usize::from(side)]);
                let (last, stop) = (Arc::clone(&last), Arc::clone(&stop));
                let learnt = learnt_tx.clone();
                std::thread::spawn(move || receive(&socket, side, &last, &learnt, &stop))
            })
            .collect();
        let sender = {
            let (sides, stop) = (sides.clone(), Arc::clone(&stop));
            let hold_ns = i64::from(args.hold_s) * 1_000_000_000;
            std::thread::spawn(move || send(&sides, &learnt_rx, hold_ns, &stop))
        };
        let tail = {
            let (log, stop) = (log.to_owned(), Arc::clone(&stop));
            std::thread::spawn(move || tail_log(&log, &learnt_tx, &stop))
        };
        Self {
            stop,
            last,
            receivers,
            sender,
            tail,
        }
    }

    fn finish(self) -> MediaReport {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.sender.join().expect("the sender");
        self.tail.join().expect("the log reader");
        let mut received = self
            .receivers
            .into_iter()
            .map(|r| r.join().expect("a receiver"));
        let received = [
            received.next().unwrap_or_default(),
            received.next().unwrap_or_default(),
        ];
        let with_media = |side: usize| {
            self.last
                .iter()
                .skip(1)
                .filter(|s| s[side].load(Ordering::Relaxed) > 0)
                .count()
        };
        MediaReport {
            sent,
            received,
            with_media: [with_media(1), with_media(0)],
        }
    }
}

/// Starts the server and the carrier's gateway, places the calls, sends
/// and receives their media, watches the server.
fn measure(args: &Args, dir: &Path) -> Measured {
    let sides = sides();
    let side_port = |i: usize| sides[i].local_addr().expect("bound").port();
    let gateway_port = free_port();
    flows(&dir.join("flows"), gateway_port);
    let (server, sip_port) = server(dir);
    let pid = server.id();
    let mut reaper = Reaper(vec![server]);
    let busy_before = machine_busy_now();
    let idle_rss = status_kb(pid, "VmRSS");
    reaper
        .0
        .push(start_gateway(args, dir, gateway_port, side_port(1)));

    let log = dir.join("uac_logs.log");
    let media = Media::start(args, &sides, &log);
    let cpu_before = cpu_seconds(&pid.to_string());
    let caller = start_caller(args, dir, sip_port, side_port(0), &log);
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let sipps = [caller.id(), reaper.0[1].id()];
        let (last, done) = (Arc::clone(&media.last), Arc::clone(&done));
        std::thread::spawn(move || watch(pid, &sipps, &last, &done))
    };
    let output = caller.wait_with_output().expect("sipp ends");
    let caller = (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    );
    done.store(true, Ordering::Relaxed);
    let cpu_total = cpu_seconds(&pid.to_string()) - cpu_before;
    let rss_after = status_kb(pid, "VmRSS");
    // The gateway ends with its last BYE; give it a few seconds.
    let mut code = -1;
    for _ in 0..100 {
        if let Ok(Some(status)) = reaper.0[1].try_wait() {
            code = status.code().unwrap_or(-1);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let gateway = (
        code,
        std::fs::read_to_string(dir.join("uas.out")).unwrap_or_default(),
    );
    let load = Load::of(&watcher.join().expect("the watcher"));
    let media = media.finish();
    drop(reaper);
    Measured {
        caller,
        gateway,
        busy_before,
        idle_rss,
        rss_after,
        cpu_total,
        load,
        media,
    }
}

fn main() {
    let args = args();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let m = measure(&args, dir.path());
    for (name, (code, output)) in [("caller", &m.caller), ("gateway", &m.gateway)] {
        if *code != 0 {
            eprintln!("sipp ({name}) exited with {code}:\n{output}");
        }
    }
    let load = &m.load;
    let plateau_s = (load.plateau.1 - load.plateau.0) as f64 / 1e9;
    let per_call = load.peak_held.max(1) as f64;
    let rss_per_call = load.rss_at_peak.saturating_sub(m.idle_rss) as f64 / per_call;
    let [at_a, at_b] = &m.media.received;
    let all = (i64::MIN, i64::MAX);
    println!(
        "{{\"calls\": {}, \"rate\": {}, \"hold_s\": {}, \"caller_exit\": {}, \"caller_successful\": {}, \
\"caller_failed\": {}, \"gateway_exit\": {}, \"gateway_successful\": {}, \"gateway_failed\": {}, \
\"held_both_ways\": {}, \"calls_with_media_a_to_b\": {}, \"calls_with_media_b_to_a\": {}, \
\"plateau_s\": {plateau_s:.1}, \"cpu_per_call_percent\": {:.3}, \"server_cpu_percent\": {:.1}, \
\"bench_cpu_percent\": {:.1}, \"sipp_cpu_percent\": {:.1}, \"other_cpu_percent\": {:.1}, \
\"other_cpu_before_percent\": {:.1}, \"server_cpu_total_s\": {:.1}, \"rss_idle_kb\": {}, \
\"rss_at_peak_kb\": {}, \"rss_peak_kb\": {}, \"rss_after_kb\": {}, \"rss_per_call_kb\": {rss_per_call:.0}, \
\"sent_a_to_b\": {}, \"received_a_to_b\": {}, \"sent_b_to_a\": {}, \"received_b_to_a\": {}, \
\"odd_packets\": {}, {}, {}, {}, {}, {}, {}}}",
        args.calls,
        args.rate,
        args.hold_s,
        m.caller.0,
        sipp_count(&m.caller.1, "Successful call"),
        sipp_count(&m.caller.1, "Failed call"),
        m.gateway.0,
        sipp_count(&m.gateway.1, "Successful call"),
        sipp_count(&m.gateway.1, "Failed call"),
        load.peak_held,
        m.media.with_media[0],
        m.media.with_media[1],
        load.server_cpu / per_call,
        load.server_cpu,
        load.bench_cpu,
        load.sipp_cpu,
        load.other_cpu,
        m.busy_before,
        m.cpu_total,
        m.idle_rss,
        load.rss_at_peak,
        load.peak_rss,
        m.rss_after,
        m.media.sent.ab,
        at_b.relayed.len(),
        m.media.sent.ba,
        at_a.relayed.len(),
        at_a.odd + at_b.odd,
        latency_json("a_to_b", &at_b.relayed, all),
        latency_json("b_to_a", &at_a.relayed, all),
        latency_json("plateau_a_to_b", &at_b.relayed, load.plateau),
        latency_json("plateau_b_to_a", &at_a.relayed, load.plateau),
        latency_json("baseline", &at_b.baseline, all),
        percentiles_json("sender_late", m.media.sent.late.clone()),
    );
}
