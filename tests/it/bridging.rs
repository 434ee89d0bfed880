//! Bridged real calls between real softphones: baresip instances registered
//! as the sample's devices, each sending a tone of its own frequency and
//! recording what it hears, in a network namespace with the server (see
//! `softphone.rs` for why). Each test checks what people would: that both
//! sides hear each other, that hang-ups propagate, that `*2` + extension
//! and a phone's own transfer button move the caller, that a hold plays
//! music to the held side, that one phone picks up the call ringing
//! another, retrieves a parked call, meets another in a conference room,
//! or listens to a call and whispers to each side; and that the trace of
//! each call says so.

// Audio: sample counts and levels move between integers and floats.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::sip::harness::Deadline;
use crate::softphone::{Namespace, Server, events, should_run, write_tone};

/// How long a phone may take to do what it is told.
const PATIENCE: Duration = Duration::from_secs(15);

/// A baresip phone in the namespace, registered as a device.
struct Phone {
    name: String,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    log: Arc<Mutex<String>>,
    dir: PathBuf,
}

impl Phone {
    /// Starts baresip as `user` on SIP port `port`, sending a sine of
    /// `tone` Hz, answering by itself when `auto_answer`; returns once it
    /// registered.
    fn start(
        ns: &Namespace,
        dir: &Path,
        user: &str,
        port: u16,
        tone: f64,
        auto_answer: bool,
    ) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        write_tone(&dir.join("tone.wav"), tone, 8000, 120.0);
        let config = format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{port}\n\
             audio_player aufile,{dir}/played.wav\naudio_source aufile,{dir}/tone.wav\n\
             audio_alert aufile,/dev/null\nmodule_path /usr/lib/baresip/modules\n\
             module stdio.so\nmodule g711.so\nmodule aufile.so\nmodule sndfile.so\n\
             module_app account.so\nmodule_app menu.so\nsnd_path {dir}/\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("config"), config).unwrap();
        let password = user.replace("-desk", "-secret");
        let answer = if auto_answer { ";answermode=auto" } else { "" };
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{user}@127.0.0.1:5060>;auth_pass={password};regint=300;audio_codecs=PCMU{answer}\n"
            ),
        )
        .unwrap();
        let mut child = ns
            .command("baresip")
            .args(["-4", "-n", "v0", "-f"])
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(String::new()));
        let keep = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).split(b'\n') {
                let Ok(line) = line else { break };
                let line = String::from_utf8_lossy(&line).into_owned();
                keep.lock().unwrap().push_str(&format!("{line}\n"));
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut phone = Self {
            name: user.to_owned(),
            child,
            stdin,
            lines,
            log,
            dir: dir.to_owned(),
        };
        phone.expect("200 OK");
        phone
    }

    /// Waits for an output line containing `needle`.
    fn wait_for(&mut self, needle: &str) -> bool {
        let deadline = Deadline::after(PATIENCE);
        while let Some(left) = deadline.left() {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// [`Phone::wait_for`], or the test fails with what the phone said.
    fn expect(&mut self, needle: &str) {
        assert!(
            self.wait_for(needle),
            "{} never said {needle:?}:\n{}",
            self.name,
            self.log()
        );
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// A command (`/dial 1002`, `/hangup`...).
    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Keys pressed during a call (each sends its DTMF).
    fn press(&mut self, keys: &str) {
        for key in keys.chars() {
            write!(self.stdin, "{key}").unwrap();
            self.stdin.flush().unwrap();
        }
    }

    /// What the phone heard so far: the frequency of each loud 100 ms of
    /// its received audio (zero crossings), in order.
    fn heard(&self) -> Vec<f64> {
        self.loud_windows()
            .iter()
            .map(|w| {
                let crossings = w.windows(2).filter(|p| (p[0] < 0) != (p[1] < 0)).count();
                crossings as f64 / 2.0 / 0.1
            })
            .collect()
    }

    /// The loud 100 ms windows of what the phone heard so far, in order.
    fn loud_windows(&self) -> Vec<Vec<i16>> {
        let mut samples = Vec::new();
        let mut dumps: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .collect();
        dumps.sort();
        for dump in dumps {
            samples.extend(wav_samples(&dump));
        }
        samples
            .chunks(800)
            .filter(|w| w.len() == 800)
            .filter(|w| {
                let energy: f64 = w.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
                (energy / w.len() as f64).sqrt() >= 1000.0
            })
            .map(<[i16]>::to_vec)
            .collect()
    }

    /// How many loud 100 ms windows heard so far carry `hz` as a good part
    /// (a fifth or more) of their energy, among other sounds: a mix.
    fn heard_in_mix(&self, hz: f64) -> usize {
        self.loud_windows()
            .iter()
            .filter(|w| callflow::media::audio::tone_share(w, hz) >= 0.2)
            .count()
    }

    /// How many 100 ms windows heard so far are `hz` (± 4 %).
    fn heard_of(&self, hz: f64) -> usize {
        self.heard()
            .iter()
            .filter(|f| (*f - hz).abs() < hz * 0.04)
            .count()
    }

    /// Waits until the phone heard `hz` for at least `seconds` more than
    /// it had when asked.
    fn hears(&self, hz: f64, seconds: f64) -> bool {
        self.hears_by(|phone| phone.heard_of(hz), seconds)
    }

    /// Waits until `count` (100 ms windows) grew by `seconds` worth.
    fn hears_by(&self, count: impl Fn(&Self) -> usize, seconds: f64) -> bool {
        let before = count(self);
        let wanted = before + (seconds * 10.0) as usize;
        let deadline = Deadline::after(PATIENCE);
        while deadline.left().is_some() {
            if count(self) >= wanted {
                return true;
            }
            // Waiting for audio to arrive, on the wall clock.
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// [`Phone::hears`], or the test fails with what it heard.
    fn expect_to_hear(&self, hz: f64, seconds: f64) {
        assert!(
            self.hears(hz, seconds),
            "{} never heard {hz} Hz for {seconds} s; it heard (Hz per 100 ms): {:?}\n{}",
            self.name,
            self.heard().iter().map(|f| f.round()).collect::<Vec<_>>(),
            self.log()
        );
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "/quit");
        let _ = self.stdin.flush();
        let deadline = Deadline::after(Duration::from_secs(3));
        while deadline.left().is_some() {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The 16-bit samples of a WAV being written (its header may not have its
/// final sizes yet): everything after the `data` chunk's header.
fn wav_samples(path: &Path) -> Vec<i16> {
    let bytes = std::fs::read(path).unwrap_or_default();
    let Some(start) = bytes.windows(4).position(|w| w == b"data") else {
        return Vec::new();
    };
    bytes
        .get(start + 8..)
        .unwrap_or_default()
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// The sample flows, a server in a namespace, and where traces go.
struct Pbx {
    dir: tempfile::TempDir,
    ns: Namespace,
    _server: Server,
}

impl Pbx {
    fn start(adjust: impl FnOnce(&Path)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let flows = dir.path().join("flows");
        crate::support::copy_tree(&crate::support::root().join("flows"), &flows);
        adjust(&flows.join("acme"));
        let ns = Namespace::new();
        let server = Server::start(&ns, &flows, &dir.path().join("traces"));
        Self {
            dir,
            ns,
            _server: server,
        }
    }

    fn phone(&self, user: &str, port: u16, tone: f64, auto_answer: bool) -> Phone {
        Phone::start(
            &self.ns,
            &self.dir.path().join(user),
            user,
            port,
            tone,
            auto_answer,
        )
    }

    /// Alice, Bob and Carol's phones (Bob's and Carol's answer by
    /// themselves); Alice calls Bob (1002) and hears him.
    fn alice_talks_to_bob(&self) -> (Phone, Phone, Phone) {
        let mut alice = self.phone("alice-desk", 5062, ALICE_HZ, false);
        let mut bob = self.phone("bob-desk", 5064, BOB_HZ, true);
        let carol = self.phone("carol-desk", 5066, CAROL_HZ, true);
        alice.send("/dial 1002");
        bob.expect("Call established");
        alice.expect_to_hear(BOB_HZ, 1.0);
        (alice, bob, carol)
    }

    /// The traces written, once there are `count`, oldest call first.
    fn traces(&self, count: usize) -> Vec<Value> {
        let dir = self.dir.path().join("traces");
        let deadline = Deadline::after(Duration::from_secs(20));
        loop {
            let mut files = Vec::new();
            walk(&dir, &mut files);
            if files.len() >= count || deadline.left().is_none() {
                let mut traces: Vec<Value> = files
                    .iter()
                    .map(|f| serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap())
                    .collect();
                traces.sort_by_key(|t| t["start"].as_str().unwrap_or_default().to_owned());
                assert_eq!(traces.len(), count, "traces: {traces:#?}");
                return traces;
            }
            // Waiting for the server to write the traces of calls that ended.
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The sample account with `*4` + extension for an attended transfer
/// (takeback `*1`).
fn attended_on_star_4(account: &Path) {
    let path = account.join("account.json");
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    doc["metaflows"]["patterns"]["^4(\\d+)$"] = serde_json::json!({
        "module": "transfer", "data": {"transfer_type": "attended"}
    });
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "json") {
                out.push(path);
            }
        }
    }
}

/// The account's music on hold: a tone we can recognise ([`MUSIC_HZ`]).
fn hold_music(account: &Path) {
    let path = account.join("account.json");
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    doc["music_on_hold"] = serde_json::json!({"media_id": "hold-music"});
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    std::fs::write(
        account.join("media/hold-music.json"),
        r#"{"name": "Hold music", "media_source": "upload"}"#,
    )
    .unwrap();
    write_tone(&account.join("media/hold-music.wav"), MUSIC_HZ, 8000, 5.0);
}

/// The index of the first event having every `needle`, after `from`.
fn find(events: &[String], from: usize, needles: &[&str]) -> Option<usize> {
    events
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, e)| needles.iter().all(|n| e.contains(n)))
        .map(|(i, _)| i)
}

/// Asserts the events hold each group of needles, in this order.
fn assert_in_order(trace: &Value, groups: &[&[&str]]) {
    let events = events(trace);
    let mut at = 0;
    for needles in groups {
        match find(&events, at, needles) {
            Some(i) => at = i + 1,
            None => panic!("no event with {needles:?} after event {at} in {events:#?}"),
        }
    }
}

const ALICE_HZ: f64 = 600.0;
const BOB_HZ: f64 = 900.0;
const CAROL_HZ: f64 = 1300.0;
/// The test account's music on hold.
const MUSIC_HZ: f64 = 350.0;

#[test]
fn an_extension_call_talks_both_ways_and_either_side_hangs_up() {
    if !should_run() {
        return;
    }
    let pbx = Pbx::start(|_| {});
    let mut alice = pbx.phone("alice-desk", 5062, ALICE_HZ, false);
    let mut bob = pbx.phone("bob-desk", 5064, BOB_HZ, true);

    // Alice calls Bob; Bob's phone answers; each hears the other.
    alice.send("/dial 1002");
    bob.expect("Call established");
    alice.expect("Call established");
    alice.expect_to_hear(BOB_HZ, 2.0);
    bob.expect_to_hear(ALICE_HZ, 2.0);
    // The caller hangs up: the callee's call ends too.
    alice.send("/hangup");
    bob.expect("terminated");

    // Again; this time the callee hangs up first.
    alice.send("/dial 1002");
    bob.expect("Call established");
    alice.expect("Call established");
    alice.expect_to_hear(BOB_HZ, 1.0);
    bob.send("/hangup");
    alice.expect("terminated");

    let traces = pbx.traces(2);
    for trace in &traces {
        assert_eq!(trace["calling_device"], "dev_alice");
        assert_eq!(trace["callflow_id"], "ext-1002");
        assert_in_order(
            trace,
            &[&[
                r#""event":"bridge""#,
                r#""status":"answered""#,
                r#""answered_by":"dev_bob""#,
            ]],
        );
    }
    assert_in_order(&traces[0], &[&[r#""event":"hangup""#, r#""by":"caller""#]]);
    assert_in_order(&traces[1], &[&[r#""event":"hangup""#, r#""by":"callee""#]]);
}

#[test]
fn the_callee_transfers_the_caller_with_star_2() {
    if !should_run() {
        return;
    }
    let pbx = Pbx::start(|_| {});
    let (mut alice, mut bob, mut carol) = pbx.alice_talks_to_bob();
    // Bob presses *2 1003 (the sample account's transfer metaflow).
    bob.press("*21003");
    carol.expect("Call established");
    bob.expect("terminated");
    alice.expect_to_hear(CAROL_HZ, 2.0);
    carol.expect_to_hear(ALICE_HZ, 2.0);
    alice.send("/hangup");
    carol.expect("terminated");

    let traces = pbx.traces(1);
    assert_in_order(
        &traces[0],
        &[
            &[r#""event":"bridge""#, r#""answered_by":"dev_bob""#],
            &[r#""event":"dtmf""#, r#""digit":"*""#, r#""leg":"b""#],
            &[
                r#""event":"metaflow""#,
                r#""module":"transfer""#,
                r#""leg":"b""#,
            ],
            &[r#""event":"transfer.blind""#, r#""target":"1003""#],
            &[r#""event":"bridge""#, r#""answered_by":"dev_carol""#],
            &[r#""event":"hangup""#, r#""by":"caller""#],
        ],
    );
}

#[test]
fn the_callee_consults_a_colleague_takes_the_caller_back_then_hands_it_over() {
    if !should_run() {
        return;
    }
    let pbx = Pbx::start(attended_on_star_4);
    let (mut alice, mut bob, mut carol) = pbx.alice_talks_to_bob();

    // Bob consults Carol while Alice waits; Alice hears nothing of either.
    bob.press("*41003");
    carol.expect("Call established");
    bob.expect_to_hear(CAROL_HZ, 1.0);
    carol.expect_to_hear(BOB_HZ, 1.0);
    assert_eq!(
        alice.heard_of(CAROL_HZ),
        0,
        "the caller heard the consultation"
    );
    // Takeback: Carol is dropped, Alice and Bob talk again.
    bob.press("*1");
    carol.expect("terminated");
    alice.expect_to_hear(BOB_HZ, 1.0);
    bob.expect_to_hear(ALICE_HZ, 1.0);
    assert_eq!(
        alice.heard_of(CAROL_HZ),
        0,
        "the caller heard the consultation"
    );

    // Again, and this time Bob hangs up: Alice talks to Carol.
    bob.press("*41003");
    carol.expect("Call established");
    bob.expect_to_hear(CAROL_HZ, 1.0);
    bob.send("/hangup");
    bob.expect("terminated");
    alice.expect_to_hear(CAROL_HZ, 2.0);
    carol.expect_to_hear(ALICE_HZ, 2.0);
    alice.send("/hangup");
    carol.expect("terminated");

    let traces = pbx.traces(1);
    assert_in_order(
        &traces[0],
        &[
            &[r#""event":"bridge""#, r#""answered_by":"dev_bob""#],
            &[
                r#""event":"transfer""#,
                r#""type":"attended""#,
                r#""transferor":"b""#,
                r#""result":"takeback""#,
            ],
            &[
                r#""event":"transfer""#,
                r#""type":"attended""#,
                r#""result":"completed""#,
                r#""answered_by":"dev_carol""#,
            ],
            &[r#""event":"hangup""#, r#""by":"caller""#],
        ],
    );
    // Alice, Bob, then Carol: each was relayed the other side's audio.
    let media = traces[0]["media"].as_array().unwrap();
    assert_eq!(media.len(), 3, "{media:?}");
    assert_eq!(media[2]["endpoint"], "dev_carol", "{media:?}");
    for leg in media {
        assert!(leg["relayed"].as_u64().unwrap() > 50, "{media:?}");
    }
}

#[test]
fn the_caller_consults_then_leaves_the_callee_with_the_target() {
    if !should_run() {
        return;
    }
    let pbx = Pbx::start(attended_on_star_4);
    let (mut alice, mut bob, mut carol) = pbx.alice_talks_to_bob();
    alice.press("*41003");
    carol.expect("Call established");
    alice.expect_to_hear(CAROL_HZ, 1.0);
    assert_eq!(
        bob.heard_of(CAROL_HZ),
        0,
        "the transferee heard the consultation"
    );
    // Alice hangs up: her call ends, Bob and Carol talk on.
    alice.send("/hangup");
    alice.expect("terminated");
    bob.expect_to_hear(CAROL_HZ, 2.0);
    carol.expect_to_hear(BOB_HZ, 2.0);
    carol.send("/hangup");
    bob.expect("terminated");

    let traces = pbx.traces(1);
    assert_in_order(
        &traces[0],
        &[
            &[r#""event":"bridge""#, r#""answered_by":"dev_bob""#],
            &[
                r#""event":"transfer""#,
                r#""transferor":"a""#,
                r#""result":"completed""#,
                r#""answered_by":"dev_carol""#,
            ],
            &[r#""event":"hangup""#, r#""by":"caller""#],
        ],
    );
}

#[test]
fn a_phones_hold_button_plays_music_to_the_other_side() {
    if !should_run() {
        return;
    }
    let pbx = Pbx::start(hold_music);
    let mut alice = pbx.phone("alice-desk", 5062, ALICE_HZ, false);
    let mut bob = pbx.phone("bob-desk", 5064, BOB_HZ, true);

    alice.send("/dial 1002");
    bob.expect("Call established");
    bob.expect_to_hear(ALICE_HZ, 1.0);
    // Alice's hold button: a re-INVITE with sendonly; Bob hears the music.
    alice.send("/hold");
    bob.expect_to_hear(MUSIC_HZ, 2.0);
    // Resumed: Bob hears Alice again. (baresip 1.0 does not restart its own
    // decoding after its hold, though our packets reach it: Alice's side is
    // not checked here.)
    alice.send("/resume");
    bob.expect_to_hear(ALICE_HZ, 2.0);
    alice.send("/hangup");
    bob.expect("terminated");

    let traces = pbx.traces(1);
    assert_in_order(
        &traces[0],
        &[
            &[r#""event":"bridge""#, r#""answered_by":"dev_bob""#],
            &[
                r#""event":"leg_hold""#,
                r#""leg":"b""#,
                r#""by":"phone""#,
                r#""moh":"hold-music""#,
            ],
            &[r#""event":"leg_unhold""#, r#""leg":"b""#, r#""by":"phone""#],
            &[r#""event":"hangup""#, r#""by":"caller""#],
        ],
    );
}

#[test]
fn a_phones_transfer_button_moves_the_caller() {
    if !should_run() {
        return;
    }
    let pbx = Pbx::start(|_| {});
    let (mut alice, mut bob, mut carol) = pbx.alice_talks_to_bob();
    // Bob's phone transfers the call to 1003: a REFER.
    bob.send("/transfer 1003");
    carol.expect("Call established");
    bob.expect("terminated");
    alice.expect_to_hear(CAROL_HZ, 2.0);
    alice.send("/hangup");
    carol.expect("terminated");

    let traces = pbx.traces(1);
    assert_in_order(
        &traces[0],
        &[
            &[r#""event":"bridge""#, r#""answered_by":"dev_bob""#],
            &[
                r#""event":"metaflow""#,
                r#""binding":"refer""#,
                r#""collected":"1003""#,
                r#""leg":"b""#,
            ],
            &[r#""event":"transfer.blind""#, r#""target":"1003""#],
            &[r#""event":"bridge""#, r#""answered_by":"dev_carol""#],
            &[r#""event":"hangup""#, r#""by":"caller""#],
        ],
    );
}

#[test]
fn a_page_reaches_every_phone_one_way() {
    if !should_run() {
        return;
    }
    let pbx = Pbx::start(|account| {
        std::fs::write(
            account.join("callflows/page-office.json"),
            r#"{"name": "Page the office", "numbers": ["2100"],
                "flow": {"module": "page_group", "data": {"endpoints": [
                    {"id": "dev_bob", "endpoint_type": "device"},
                    {"id": "dev_carol", "endpoint_type": "device"}]},
                "children": {}}}"#,
        )
        .unwrap();
    });
    let mut alice = pbx.phone("alice-desk", 5062, ALICE_HZ, false);
    let mut bob = pbx.phone("bob-desk", 5064, BOB_HZ, true);
    let mut carol = pbx.phone("carol-desk", 5066, CAROL_HZ, true);

    alice.send("/dial 2100");
    bob.expect("Call established");
    carol.expect("Call established");
    alice.expect("Call established");
    bob.expect_to_hear(ALICE_HZ, 2.0);
    carol.expect_to_hear(ALICE_HZ, 2.0);
    // One way: nothing of Bob's or Carol's reaches Alice.
    assert_eq!(alice.heard_of(BOB_HZ) + alice.heard_of(CAROL_HZ), 0);
    alice.send("/hangup");
    bob.expect("terminated");
    carol.expect("terminated");

    let traces = pbx.traces(1);
    assert_in_order(
        &traces[0],
        &[
            &[r#""event":"bridge""#, r#""status":"answered""#],
            &[r#""event":"hangup""#, r#""by":"caller""#],
        ],
    );
    // The caller and both paged phones; the phones were relayed the
    // caller's audio, the caller nothing of theirs (silence only).
    let media = traces[0]["media"].as_array().unwrap();
    assert_eq!(media.len(), 3, "{media:?}");
    assert_eq!(media[0]["relayed"], 0, "{media:?}");
    for paged in &media[1..] {
        assert!(paged["relayed"].as_u64().unwrap() > 50, "{media:?}");
    }
}

#[test]
fn a_phone_picks_up_the_call_ringing_another() {
    if !should_run() {
        return;
    }
    let pbx = Pbx::start(|_| {});
    let mut alice = pbx.phone("alice-desk", 5062, ALICE_HZ, false);
    let mut bob = pbx.phone("bob-desk", 5064, BOB_HZ, false);
    let mut carol = pbx.phone("carol-desk", 5066, CAROL_HZ, false);

    // Alice calls Bob, whose phone rings; Carol dials *8 + his extension.
    alice.send("/dial 1002");
    bob.expect("Incoming call");
    carol.send("/dial *81002");
    carol.expect("Call established");
    alice.expect("Call established");
    // Bob's phone stops ringing (the CANCEL: baresip says its session
    // closed); Alice and Carol talk.
    bob.expect("session closed");
    alice.expect_to_hear(CAROL_HZ, 2.0);
    carol.expect_to_hear(ALICE_HZ, 2.0);
    assert_eq!(alice.heard_of(BOB_HZ), 0, "Bob never answered");
    alice.send("/hangup");
    carol.expect("terminated");

    let traces = pbx.traces(2);
    assert_in_order(
        &traces[0],
        &[
            &[
                r#""event":"bridge""#,
                r#""status":"answered""#,
                r#""answered_by":"dev_carol""#,
            ],
            &[r#""event":"hangup""#, r#""by":"caller""#],
        ],
    );
    assert_in_order(
        &traces[1],
        &[
            &[r#""event":"pickup""#, r#""status":"answered""#],
            &[r#""event":"hangup""#, r#""by":"callee""#],
        ],
    );
}

#[test]
fn a_parked_call_waits_with_music_until_another_phone_retrieves_it() {
    if !should_run() {
        return;
    }
    let pbx = Pbx::start(hold_music);
    let mut alice = pbx.phone("alice-desk", 5062, ALICE_HZ, false);
    let mut carol = pbx.phone("carol-desk", 5066, CAROL_HZ, false);

    // Alice dials *4 (valet park): she hears the slot, then the music.
    alice.send("/dial *4");
    alice.expect("Call established");
    alice.expect_to_hear(MUSIC_HZ, 2.0);
    // Carol retrieves slot 101: the two talk.
    carol.send("/dial *5101");
    carol.expect("Call established");
    alice.expect_to_hear(CAROL_HZ, 2.0);
    carol.expect_to_hear(ALICE_HZ, 2.0);
    carol.send("/hangup");
    alice.expect("terminated");

    let traces = pbx.traces(2);
    assert_in_order(
        &traces[0],
        &[
            &[
                r#""event":"park""#,
                r#""slot":"101""#,
                r#""reason":"retrieved""#,
            ],
            &[r#""event":"hangup""#, r#""by":"callee""#],
        ],
    );
    assert_in_order(
        &traces[1],
        &[
            &[r#""event":"pickup""#, r#""status":"answered""#],
            &[r#""event":"hangup""#, r#""by":"caller""#],
        ],
    );
}

#[test]
fn phones_in_a_conference_room_hear_each_other() {
    if !should_run() {
        return;
    }
    let pbx = Pbx::start(|account| {
        std::fs::create_dir_all(account.join("conferences")).unwrap();
        std::fs::write(
            account.join("conferences/room1.json"),
            r#"{"name": "Room 1"}"#,
        )
        .unwrap();
        std::fs::write(
            account.join("callflows/room.json"),
            r#"{"name": "Room 1", "numbers": ["2200"],
                "flow": {"module": "conference", "data": {"id": "room1",
                    "welcome_prompt": {"play": false}}, "children": {}}}"#,
        )
        .unwrap();
    });
    let mut alice = pbx.phone("alice-desk", 5062, ALICE_HZ, false);
    let mut bob = pbx.phone("bob-desk", 5064, BOB_HZ, false);

    alice.send("/dial 2200");
    alice.expect("Call established");
    bob.send("/dial 2200");
    bob.expect("Call established");
    // Each hears the other through the room's mixer, never itself.
    alice.expect_to_hear(BOB_HZ, 2.0);
    bob.expect_to_hear(ALICE_HZ, 2.0);
    assert_eq!(alice.heard_of(ALICE_HZ), 0, "Alice heard herself");
    assert_eq!(bob.heard_of(BOB_HZ), 0, "Bob heard himself");
    // Bob leaves first (his call's trace written: it is over), then Alice.
    bob.send("/hangup");
    bob.expect("terminated");
    pbx.traces(1);
    alice.send("/hangup");
    alice.expect("terminated");

    let traces = pbx.traces(2);
    assert_in_order(
        &traces[0],
        &[
            // The verb's event shows when it began, with its outcome.
            &[
                r#""event":"conference""#,
                r#""room":"room1""#,
                r#""members":0"#,
            ],
            &[r#""event":"conference_member""#, r#""action":"join""#],
            &[r#""event":"conference_member""#, r#""action":"leave""#],
        ],
    );
    assert_in_order(
        &traces[1],
        &[&[
            r#""event":"conference""#,
            r#""room":"room1""#,
            r#""members":1"#,
        ]],
    );
}

#[test]
fn an_eavesdropper_listens_then_whispers_to_each_side() {
    if !should_run() {
        return;
    }
    let pbx = Pbx::start(|account| {
        std::fs::write(
            account.join("callflows/listen.json"),
            r#"{"name": "Listen to Bob's calls", "numbers": ["2300"],
                "flow": {"module": "eavesdrop", "data": {"device_id": "dev_bob",
                    "approved_device_id": "dev_carol"}, "children": {}}}"#,
        )
        .unwrap();
    });
    let (mut alice, bob, mut carol) = pbx.alice_talks_to_bob();
    let expect_in_mix = |phone: &Phone, hz: f64| {
        assert!(
            phone.hears_by(|p| p.heard_in_mix(hz), 1.0),
            "{} never heard {hz} Hz in what it heard (Hz per 100 ms): {:?}",
            phone.name,
            phone.heard().iter().map(|f| f.round()).collect::<Vec<_>>()
        );
    };
    // Carol listens: she hears both sides; nobody hears her.
    carol.send("/dial 2300");
    carol.expect("Call established");
    expect_in_mix(&carol, ALICE_HZ);
    expect_in_mix(&carol, BOB_HZ);
    assert_eq!(alice.heard_in_mix(CAROL_HZ) + bob.heard_in_mix(CAROL_HZ), 0);
    // 1: she whispers to the caller, Alice; Bob still hears only Alice.
    carol.press("1");
    expect_in_mix(&alice, CAROL_HZ);
    assert_eq!(bob.heard_in_mix(CAROL_HZ), 0, "Bob heard the whisper");
    // 2: to the peer, Bob; Alice hears Bob alone again.
    carol.press("2");
    expect_in_mix(&bob, CAROL_HZ);
    alice.expect_to_hear(BOB_HZ, 1.0);
    // 0: listening again: Bob hears Alice alone again. Then Alice hangs up
    // and Carol's listening ends.
    carol.press("0");
    bob.expect_to_hear(ALICE_HZ, 1.0);
    alice.send("/hangup");
    carol.expect("terminated");

    let traces = pbx.traces(2);
    assert_in_order(
        &traces[1],
        &[
            &[r#""event":"eavesdrop""#, r#""reason":"target_ended""#],
            &[r#""event":"eavesdrop_mode""#, r#""mode":"whisper_caller""#],
            &[r#""event":"eavesdrop_mode""#, r#""mode":"whisper_peer""#],
            &[r#""event":"eavesdrop_mode""#, r#""mode":"listen""#],
        ],
    );
}
