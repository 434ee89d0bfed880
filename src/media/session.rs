//! One call leg's RTP session: a task that owns the leg's UDP socket, sends
//! a packet every 20 ms and reads every packet that arrives.
//!
//! * **Sending.** Packets leave on a monotonic schedule (`start + n × 20 ms`),
//!   never in bursts: a tick that comes late sends one packet and the next
//!   keeps the schedule. The RTP timestamp follows the schedule, so a
//!   skipped tick shows as a gap, not as drift. Once started, something is
//!   always sent: the clip on top of the play stack, telephone events, or
//!   silence.
//! * **Receiving** never stops, whatever plays (a digit pressed during a
//!   prompt is never lost): RFC 4733 events go to the [`super::dtmf::Detector`]
//!   at once; audio goes through a small reorder buffer, is decoded, and is
//!   offered to the taps (recorders, detectors).
//! * **Symmetric RTP.** Until the far end's first packet arrives, packets go
//!   to the address of its SDP; from then on, to where its packets come from
//!   (a phone behind NAT advertises an address nobody can reach).
//!
//! The task is driven by [`Control`] messages and reports [`MediaEvent`]s;
//! it never calls up into signalling.

// RTP sequence numbers and timestamps are modular (RFC 3550): truncating
// and wrapping casts are the arithmetic the protocol defines.
#![allow(clippy::cast_possible_truncation)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rtp_rs::{RtpPacketBuilder, RtpReader, Seq};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

use super::audio::{Clip, Repeat};
use super::dtmf::{self, Detector};
use super::g711::{Codec, FRAME};
use super::sdp::Negotiated;

/// The packet interval.
pub const PTIME: Duration = Duration::from_millis(20);

/// At most this much whispered audio waits to be mixed in (60 ms).
const WHISPER_QUEUE: usize = FRAME * 3;

/// How many plays stopped before they started a session remembers.
const STOPPED_EARLY: usize = 16;

/// Something that listens to the audio of a leg: a recorder, a detector.
/// `inbound` gets the far end's audio in order (lost packets as silence),
/// `outbound` what this side sends, 160 samples (20 ms) at a time.
pub trait Tap: Send {
    /// The far end's audio; may report an event (a recording that heard
    /// enough silence, a fax tone).
    fn inbound(&mut self, samples: &[i16]) -> Option<MediaEvent>;
    /// What this side sent.
    fn outbound(&mut self, _samples: &[i16]) {}
    /// The tap is removed (or the session ends): its last word.
    fn finish(self: Box<Self>) -> Option<MediaEvent>;
}

/// What the session is told to do.
pub enum Control {
    /// Start sending (after a 183 or a 200 with our SDP).
    Start,
    /// What the far end's SDP agreed, learnt late (the ACK's answer to the
    /// offer we made for an INVITE without one).
    Configure(Negotiated),
    /// Plays `clip` over whatever plays now (which resumes after it);
    /// `times` overrides the clip's own repeat count (0: until stopped).
    Play {
        id: u64,
        clip: Arc<Clip>,
        times: Option<u32>,
    },
    /// Stops the play `id`; reported as [`MediaEvent::Played`].
    Stop { id: u64 },
    /// Sends digits as RFC 4733 events (100 ms each, 60 ms apart).
    Dtmf { id: u64, digits: String },
    /// Attaches a tap.
    Tap { id: u64, tap: Box<dyn Tap> },
    /// Detaches a tap: its [`Tap::finish`] is reported.
    Untap { id: u64 },
    /// Ends the session (taps finish).
    Close,
    /// Forwards the far end's audio packets, as they arrive, to these
    /// sessions (a bridge; several for a page); empty stops.
    RelayOut(Vec<mpsc::UnboundedSender<Relayed>>),
    /// Sends the audio relayed from another session as it arrives (its own
    /// plays, ringback or music on hold, win over it while they play);
    /// `None` stops.
    RelayIn(Option<mpsc::UnboundedReceiver<Relayed>>),
    /// Mixes this audio into whatever the session sends (an eavesdropper,
    /// `owner`, whispering to this leg; one at a time, the last wins);
    /// `None` stops it if `owner` still whispers.
    Whisper {
        owner: u64,
        input: Option<mpsc::UnboundedReceiver<Relayed>>,
    },
}

/// An audio packet relayed from one leg to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    pub codec: Codec,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Vec<u8>,
}

/// Connects two sessions both ways (a bridge): each sends what the other
/// hears.
pub fn relay(a: &Handle, b: &Handle) {
    relay_one_way(a, &[b]);
    relay_one_way(b, &[a]);
}

/// Sends what `from` hears to every session of `to` (a page), not back.
pub fn relay_one_way(from: &Handle, to: &[&Handle]) {
    let mut senders = Vec::new();
    for target in to {
        let (tx, rx) = mpsc::unbounded_channel();
        target.send(Control::RelayIn(Some(rx)));
        senders.push(tx);
    }
    from.send(Control::RelayOut(senders));
}

/// Undoes [`relay`] or [`relay_one_way`] for these sessions.
pub fn unrelay(sessions: &[&Handle]) {
    for session in sessions {
        session.send(Control::RelayOut(Vec::new()));
        session.send(Control::RelayIn(None));
    }
}

/// What the session reports.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// A digit the far end pressed (RFC 4733).
    Dtmf(char),
    /// A play ended (by itself or stopped) after `ms`.
    Played { id: u64, ms: u64 },
    /// Digits were sent.
    DtmfSent { id: u64 },
    /// A tap's report: `what` says what it is (`silence`, `fax`,
    /// `recorded`...), `ms` the audio it covered, `detail` the rest.
    Tap {
        id: u64,
        what: String,
        ms: u64,
        detail: String,
    },
}

/// What a session carried, for the trace of its call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Audio packets received from the far end.
    pub received: u64,
    /// Packets sent to the far end (audio and telephone events).
    pub sent: u64,
    /// Of those, audio relayed from another leg.
    pub relayed: u64,
}

/// A running session, as the call that owns it sees it.
#[derive(Debug, Clone)]
pub struct Handle {
    control: mpsc::UnboundedSender<Control>,
    /// Closed when the session task ends (its taps finished).
    ended: watch::Receiver<()>,
    /// Filled in when the session ends.
    stats: Arc<std::sync::Mutex<Stats>>,
}

impl Handle {
    /// Sends a control message; false when the session is over.
    pub fn send(&self, control: Control) -> bool {
        self.control.send(control).is_ok()
    }

    /// Resolves once the session is over and its taps have finished (a
    /// recording's file is complete): after [`Control::Close`].
    pub async fn ended(&self) {
        let mut ended = self.ended.clone();
        while ended.changed().await.is_ok() {}
    }

    /// Whether both handles control the same session.
    pub fn same(&self, other: &Handle) -> bool {
        self.control.same_channel(&other.control)
    }

    /// What the session carried (complete once [`Handle::ended`]).
    pub fn stats(&self) -> Stats {
        *self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Starts a session on `socket` (bound by the caller) with what the offer
/// and answer agreed; events go to `events`. `remote` may be unknown (an
/// INVITE without SDP): symmetric RTP then learns it. The session runs on
/// `runtime` (the media runtime, apart from signalling, so that nothing
/// else delays a packet), which also polls the socket.
pub fn start(
    socket: std::net::UdpSocket,
    agreed: Option<Negotiated>,
    events: mpsc::UnboundedSender<MediaEvent>,
    runtime: &tokio::runtime::Handle,
) -> Handle {
    let (control, commands) = mpsc::unbounded_channel();
    let (ended_tx, ended) = watch::channel(());
    let stats = Arc::new(std::sync::Mutex::new(Stats::default()));
    let report = Arc::clone(&stats);
    runtime.spawn(async move {
        // Registered with the runtime that polls it.
        match UdpSocket::from_std(socket) {
            Ok(socket) => {
                let mut session = Session::new(socket, agreed, events, ended_tx);
                session.run(commands).await;
                *report
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = session.stats;
            }
            Err(e) => tracing::warn!("an RTP socket cannot be polled: {e}"),
        }
    });
    Handle {
        control,
        ended,
        stats,
    }
}

struct Playing {
    id: u64,
    clip: Arc<Clip>,
    /// Plays left after this one (`None`: until stopped).
    left: Option<u32>,
    pos: usize,
    frames: u64,
}

/// One packet of telephone events waiting to go.
enum Outgoing {
    Event {
        event: dtmf::Event,
        first: bool,
        /// The play id to report when this is the last packet.
        done: Option<u64>,
    },
    /// A frame of silence between digits.
    Gap,
}

struct Session {
    socket: UdpSocket,
    remote: Option<SocketAddr>,
    /// Where the far end's SDP said to send (a new one re-targets).
    sdp_remote: Option<SocketAddr>,
    latched: bool,
    /// Whether we send at all (not while the SDP says `recvonly` or
    /// `inactive` from our side: a phone holding us).
    sending: bool,
    codec: Codec,
    payload_type: u8,
    dtmf_payload_type: Option<u8>,
    ssrc: u32,
    seq: Seq,
    timestamp0: u32,
    /// The timestamp of the telephone event being sent.
    event_start: u32,
    started: Option<Instant>,
    plays: Vec<Playing>,
    dtmf_out: std::collections::VecDeque<Outgoing>,
    detector: Detector,
    reorder: Reorder,
    taps: Vec<(u64, Box<dyn Tap>)>,
    /// Where the far end's audio goes (bridged sessions).
    relay_out: Vec<mpsc::UnboundedSender<Relayed>>,
    /// Audio from a bridged session, to send on.
    relay_in: Option<mpsc::UnboundedReceiver<Relayed>>,
    /// (the first relayed timestamp, the timestamp it was sent with): the
    /// relayed stream keeps its spacing on our timeline.
    relay_ts: Option<(u32, u32)>,
    /// Audio mixed into what we send ([`Control::Whisper`]), decoded, at
    /// most [`WHISPER_QUEUE`] samples.
    whisper_in: Option<mpsc::UnboundedReceiver<Relayed>>,
    whisper_owner: u64,
    whisper: std::collections::VecDeque<i16>,
    /// Plays stopped before they started (their clip loads elsewhere):
    /// they never start. The last few only: ids are never reused.
    stopped_early: std::collections::VecDeque<u64>,
    events: mpsc::UnboundedSender<MediaEvent>,
    frame: Vec<i16>,
    encoded: Vec<u8>,
    decoded: Vec<i16>,
    packet: Vec<u8>,
    stats: Stats,
    /// Dropped with the session, after its taps finish: what
    /// [`Handle::ended`] waits for.
    _ended: watch::Sender<()>,
}

impl Session {
    fn new(
        socket: UdpSocket,
        agreed: Option<Negotiated>,
        events: mpsc::UnboundedSender<MediaEvent>,
        ended: watch::Sender<()>,
    ) -> Self {
        let seed = fastrand::u64(..);
        Self {
            socket,
            remote: agreed.map(|a| a.remote).filter(|r| r.port() != 0),
            sdp_remote: agreed.map(|a| a.remote),
            latched: false,
            sending: agreed.is_none_or(|a| a.direction.sends()),
            codec: agreed.map_or(Codec::Pcmu, |a| a.codec),
            payload_type: agreed.map_or(0, |a| a.payload_type),
            dtmf_payload_type: agreed.and_then(|a| a.dtmf_payload_type),
            ssrc: (seed >> 32) as u32,
            seq: Seq::from(seed as u16),
            timestamp0: seed as u32,
            event_start: 0,
            started: None,
            plays: Vec::new(),
            dtmf_out: std::collections::VecDeque::new(),
            detector: Detector::default(),
            reorder: Reorder::default(),
            taps: Vec::new(),
            relay_out: Vec::new(),
            relay_in: None,
            relay_ts: None,
            whisper_in: None,
            whisper_owner: 0,
            whisper: std::collections::VecDeque::new(),
            stopped_early: std::collections::VecDeque::new(),
            events,
            frame: Vec::with_capacity(FRAME),
            encoded: Vec::with_capacity(FRAME),
            decoded: Vec::with_capacity(FRAME * 4),
            // Room for any packet a UDP datagram on Ethernet carries (relayed
            // packets keep their size: 30 ms, 60 ms ptimes).
            packet: vec![0; 1500],
            stats: Stats::default(),
            _ended: ended,
        }
    }

    async fn run(&mut self, mut commands: mpsc::UnboundedReceiver<Control>) {
        let mut ticker = tokio::time::interval(PTIME);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut buf = vec![0_u8; 2048];
        let mut was_ticking = false;
        loop {
            // A bridged leg with nothing of its own to send waits for the
            // other leg's packets only: no 50 wake-ups a second for nothing.
            let ticking = self.started.is_some()
                && (self.relay_in.is_none() || !self.plays.is_empty() || !self.dtmf_out.is_empty());
            if ticking
                && !was_ticking
                && let Some(at) = self.next_slot()
            {
                ticker.reset_at(at);
            }
            was_ticking = ticking;
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    None | Some(Control::Close) => break,
                    Some(command) => self.control(command, &mut ticker),
                },
                at = ticker.tick(), if ticking => self.tick(at).await,
                received = self.socket.recv_from(&mut buf) => {
                    if let Ok((len, from)) = received {
                        self.received(&buf[..len], from);
                    }
                }
                relayed = next_relayed(&mut self.relay_in) => match relayed {
                    Some(packet) => self.send_relayed(packet).await,
                    None => self.relay_in = None,
                },
                whispered = next_relayed(&mut self.whisper_in) => {
                    if let Some(packet) = whispered {
                        self.whispered(&packet);
                    } else {
                        self.whisper_in = None;
                        self.whisper.clear();
                    }
                }
            }
        }
        for (_, tap) in std::mem::take(&mut self.taps) {
            if let Some(event) = tap.finish() {
                let _ = self.events.send(event);
            }
        }
    }

    fn report(&self, event: MediaEvent) {
        let _ = self.events.send(event);
    }

    fn control(&mut self, command: Control, ticker: &mut tokio::time::Interval) {
        match command {
            Control::Start => {
                if self.started.is_none() {
                    let now = Instant::now();
                    self.started = Some(now);
                    ticker.reset_at(now);
                }
            }
            Control::Play { id, .. } if self.stopped_early.contains(&id) => {
                self.stopped_early.retain(|stopped| *stopped != id);
                self.report(MediaEvent::Played { id, ms: 0 });
            }
            Control::Play { id, clip, times } => {
                let left = match (times, clip.repeat) {
                    (Some(0), _) | (None | Some(_), Repeat::Forever) => None,
                    (Some(n), Repeat::Times(m)) => Some(n.saturating_mul(m) - 1),
                    (None, Repeat::Times(m)) => Some(m.saturating_sub(1)),
                };
                if clip.samples.is_empty() {
                    self.report(MediaEvent::Played { id, ms: 0 });
                } else {
                    self.plays.push(Playing {
                        id,
                        clip,
                        left,
                        pos: 0,
                        frames: 0,
                    });
                }
            }
            Control::Stop { id } => self.stop_play(id),
            Control::Dtmf { id, digits } => {
                let mut packets: Vec<Outgoing> = Vec::new();
                for digit in digits.chars() {
                    let events = dtmf::digit_packets(digit, 100);
                    for (n, event) in events.iter().enumerate() {
                        packets.push(Outgoing::Event {
                            event: *event,
                            first: n == 0,
                            done: None,
                        });
                    }
                    packets.extend([Outgoing::Gap, Outgoing::Gap, Outgoing::Gap]);
                }
                // The last event packet reports the digits sent.
                match packets.iter_mut().rev().find_map(|p| match p {
                    Outgoing::Event { done, .. } => Some(done),
                    Outgoing::Gap => None,
                }) {
                    Some(done) => *done = Some(id),
                    None => self.report(MediaEvent::DtmfSent { id }),
                }
                self.dtmf_out.extend(packets);
            }
            Control::Configure(agreed) => {
                self.codec = agreed.codec;
                self.payload_type = agreed.payload_type;
                self.dtmf_payload_type = agreed.dtmf_payload_type;
                self.sending = agreed.direction.sends();
                if self.sdp_remote != Some(agreed.remote) {
                    // A new address (a re-INVITE moved the stream): send
                    // there until symmetric RTP learns better again.
                    self.sdp_remote = Some(agreed.remote);
                    self.latched = false;
                }
                if !self.latched && agreed.remote.port() != 0 {
                    self.remote = Some(agreed.remote);
                }
            }
            Control::Tap { id, tap } => self.taps.push((id, tap)),
            Control::Untap { id } => {
                if let Some(index) = self.taps.iter().position(|(t, _)| *t == id) {
                    let (_, tap) = self.taps.remove(index);
                    if let Some(event) = tap.finish() {
                        self.report(event);
                    }
                }
            }
            Control::Close => {}
            Control::RelayOut(senders) => self.relay_out = senders,
            Control::RelayIn(receiver) => {
                self.relay_in = receiver;
                self.relay_ts = None;
            }
            Control::Whisper { owner, input } => {
                if input.is_some() || owner == self.whisper_owner {
                    self.whisper_owner = owner;
                    self.whisper_in = input;
                    self.whisper.clear();
                }
            }
        }
    }

    /// Stops play `id`, reporting its end; one not started yet never will.
    fn stop_play(&mut self, id: u64) {
        if let Some(index) = self.plays.iter().position(|p| p.id == id) {
            let playing = self.plays.remove(index);
            self.report(MediaEvent::Played {
                id,
                ms: playing.frames * 20,
            });
        } else {
            if self.stopped_early.len() >= STOPPED_EARLY {
                self.stopped_early.pop_front();
            }
            self.stopped_early.push_back(id);
        }
    }

    /// A whispered packet: queued (decoded) for what we send next.
    fn whispered(&mut self, packet: &Relayed) {
        let mut samples = Vec::with_capacity(packet.payload.len());
        packet.codec.decode(&packet.payload, &mut samples);
        self.whisper.extend(samples);
        let excess = self.whisper.len().saturating_sub(WHISPER_QUEUE);
        self.whisper.drain(..excess);
    }

    /// Adds the whispered audio waiting to `samples` (saturating); false
    /// when nothing was whispered.
    fn add_whisper(whisper: &mut std::collections::VecDeque<i16>, samples: &mut [i16]) -> bool {
        if whisper.is_empty() {
            return false;
        }
        let take = whisper.len().min(samples.len());
        for (sample, added) in samples.iter_mut().zip(whisper.drain(..take)) {
            *sample = sample.saturating_add(added);
        }
        true
    }

    /// The next 20 ms of what plays (silence when nothing does), advancing
    /// the top of the play stack and reporting plays that end.
    fn next_frame(&mut self) {
        self.frame.clear();
        if let Some(top) = self.plays.last_mut() {
            top.frames += 1;
            while self.frame.len() < FRAME {
                let want = FRAME - self.frame.len();
                let samples = &top.clip.samples;
                let end = (top.pos + want).min(samples.len());
                self.frame.extend_from_slice(&samples[top.pos..end]);
                top.pos = end;
                if top.pos < samples.len() {
                    continue;
                }
                match top.left {
                    Some(0) => break,
                    Some(n) => {
                        top.left = Some(n - 1);
                        top.pos = 0;
                    }
                    None => top.pos = 0,
                }
            }
            if top.pos >= top.clip.samples.len() && top.left == Some(0) {
                let done = self.plays.pop();
                if let Some(done) = done {
                    self.report(MediaEvent::Played {
                        id: done.id,
                        ms: done.frames * 20,
                    });
                }
            }
        }
        self.frame.resize(FRAME, 0);
    }

    async fn tick(&mut self, at: Instant) {
        let Some(started) = self.started else { return };
        // The slot this tick stands for: the schedule, not the clock.
        let slot = (at.saturating_duration_since(started).as_micros() + 10_000) / 20_000;
        let timestamp = self
            .timestamp0
            .wrapping_add((slot as u32).wrapping_mul(FRAME as u32));
        match self.dtmf_out.pop_front() {
            Some(Outgoing::Event { event, first, done }) if self.dtmf_payload_type.is_some() => {
                if let Some(id) = done {
                    self.report(MediaEvent::DtmfSent { id });
                }
                // Every packet of one event carries the event's start time.
                if first {
                    self.event_start = timestamp;
                }
                self.encoded.clear();
                self.encoded.extend(event.to_bytes());
                self.frame.clear();
                self.frame.resize(FRAME, 0);
                let pt = self.dtmf_payload_type.unwrap_or(101);
                self.send_payload(pt, first, self.event_start).await;
            }
            other => {
                if let Some(Outgoing::Event { done: Some(id), .. }) = other {
                    // No telephone-event negotiated: nothing can carry it.
                    self.report(MediaEvent::DtmfSent { id });
                }
                if self.relay_in.is_some() && self.plays.is_empty() {
                    // Bridged: the other leg's audio goes out as it comes.
                    return;
                }
                self.next_frame();
                let mut encoded = std::mem::take(&mut self.encoded);
                if self.whisper.is_empty() {
                    self.codec.encode(&self.frame, &mut encoded);
                } else {
                    // Taps (an eavesdropper among them) hear the frame
                    // without the whisper.
                    self.decoded.clear();
                    self.decoded.extend_from_slice(&self.frame);
                    Self::add_whisper(&mut self.whisper, &mut self.decoded);
                    self.codec.encode(&self.decoded, &mut encoded);
                }
                self.encoded = encoded;
                self.send_payload(self.payload_type, false, timestamp).await;
            }
        }
        for (_, tap) in &mut self.taps {
            tap.outbound(&self.frame);
        }
    }

    /// Sends a packet relayed from the bridged session, at once: our SSRC
    /// and sequence, its timestamp moved onto our timeline, transcoded
    /// when the legs speak different G.711 laws. Dropped while something
    /// plays to this leg (music on hold, a tone).
    async fn send_relayed(&mut self, packet: Relayed) {
        if !self.plays.is_empty() || self.started.is_none() {
            return;
        }
        let now_slot = self.current_timestamp();
        let (first_in, first_out) = *self.relay_ts.get_or_insert((packet.timestamp, now_slot));
        let timestamp = first_out.wrapping_add(packet.timestamp.wrapping_sub(first_in));
        self.encoded.clear();
        if packet.codec == self.codec && self.whisper.is_empty() {
            self.encoded.extend_from_slice(&packet.payload);
        } else {
            self.decoded.clear();
            packet.codec.decode(&packet.payload, &mut self.decoded);
            Self::add_whisper(&mut self.whisper, &mut self.decoded);
            let mut encoded = std::mem::take(&mut self.encoded);
            self.codec.encode(&self.decoded, &mut encoded);
            self.encoded = encoded;
        }
        if !self.taps.is_empty() {
            self.decoded.clear();
            packet.codec.decode(&packet.payload, &mut self.decoded);
            for (_, tap) in &mut self.taps {
                tap.outbound(&self.decoded);
            }
        }
        if self
            .send_payload(self.payload_type, packet.marker, timestamp)
            .await
        {
            self.stats.relayed += 1;
        }
    }

    /// The timestamp of the 20 ms slot we are in.
    /// When the schedule's next 20 ms slot is due (up to 1 ms late: the
    /// slot now), once started.
    fn next_slot(&self) -> Option<Instant> {
        let started = self.started?;
        let elapsed = Instant::now()
            .saturating_duration_since(started)
            .as_micros();
        let slot = u32::try_from((elapsed + 19_000) / 20_000).ok()?;
        Some(started + PTIME * slot)
    }

    fn current_timestamp(&self) -> u32 {
        let Some(started) = self.started else {
            return self.timestamp0;
        };
        let slot = Instant::now()
            .saturating_duration_since(started)
            .as_micros()
            / 20_000;
        self.timestamp0
            .wrapping_add((slot as u32).wrapping_mul(FRAME as u32))
    }

    /// Sends `self.encoded` as one RTP packet; whether it went.
    async fn send_payload(&mut self, payload_type: u8, marker: bool, timestamp: u32) -> bool {
        let Some(remote) = self.remote.filter(|_| self.sending) else {
            return false;
        };
        let builder = RtpPacketBuilder::new()
            .payload_type(payload_type)
            .marked(marker)
            .ssrc(self.ssrc)
            .sequence(self.seq)
            .timestamp(timestamp)
            .payload(&self.encoded);
        self.seq = self.seq.next();
        let Ok(len) = builder.build_into(&mut self.packet) else {
            return false;
        };
        // A lost packet is lost: the schedule goes on (no retries, no burst).
        let sent = self
            .socket
            .send_to(&self.packet[..len], remote)
            .await
            .is_ok();
        if sent {
            self.stats.sent += 1;
        }
        sent
    }

    fn received(&mut self, packet: &[u8], from: SocketAddr) {
        let Ok(rtp) = RtpReader::new(packet) else {
            return;
        };
        if rtp.version() != 2 {
            return;
        }
        if !self.latched && from.port() != 0 {
            self.remote = Some(from);
            self.latched = true;
        }
        let payload_type = rtp.payload_type();
        if Some(payload_type) == self.dtmf_payload_type {
            if let Some(digit) = self
                .detector
                .packet(rtp.ssrc(), rtp.timestamp(), rtp.payload())
            {
                self.report(MediaEvent::Dtmf(digit));
            }
            return;
        }
        if payload_type != self.payload_type {
            return;
        }
        self.stats.received += 1;
        if !self.relay_out.is_empty() {
            let packet = Relayed {
                codec: self.codec,
                timestamp: rtp.timestamp(),
                marker: rtp.mark(),
                payload: rtp.payload().to_vec(),
            };
            self.relay_out
                .retain(|target| target.send(packet.clone()).is_ok());
        }
        if self.taps.is_empty() {
            return;
        }
        let seq: u16 = rtp.sequence_number().into();
        let frames = self.reorder.push(seq, rtp.timestamp(), rtp.payload());
        for frame in frames {
            self.decoded.clear();
            match frame {
                Frame::Audio(payload) => self.codec.decode(&payload, &mut self.decoded),
                Frame::Lost(samples) => self.decoded.resize(samples, 0),
            }
            for (_, tap) in &mut self.taps {
                if let Some(event) = tap.inbound(&self.decoded) {
                    let _ = self.events.send(event);
                }
            }
        }
    }
}

/// The next packet relayed to this session, or never when none is.
async fn next_relayed(relay: &mut Option<mpsc::UnboundedReceiver<Relayed>>) -> Option<Relayed> {
    match relay {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// What the reorder buffer hands on, in order.
enum Frame {
    Audio(Vec<u8>),
    /// Samples of silence standing for packets that never came.
    Lost(usize),
}

/// A small reorder buffer: packets are handed on in sequence order; a
/// packet that arrives early waits for the ones before it, at most
/// [`Reorder::DEPTH`] packets, after which the missing ones count as lost.
#[derive(Default)]
struct Reorder {
    /// The next sequence number expected and its timestamp.
    next: Option<(u16, u32)>,
    held: Vec<(u16, u32, Vec<u8>)>,
}

impl Reorder {
    const DEPTH: usize = 3;
    /// Loss gaps longer than this (in samples) are not filled.
    const MAX_GAP: u32 = 8000;

    fn push(&mut self, seq: u16, timestamp: u32, payload: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        let Some((next, _)) = self.next else {
            self.next = Some((
                seq.wrapping_add(1),
                timestamp.wrapping_add(payload.len() as u32),
            ));
            out.push(Frame::Audio(payload.to_vec()));
            return out;
        };
        let ahead = seq.wrapping_sub(next);
        if ahead >= 0x8000 {
            // Late or duplicated: its time has passed.
            return out;
        }
        if ahead > 0 {
            if !self.held.iter().any(|(s, ..)| *s == seq) {
                self.held.push((seq, timestamp, payload.to_vec()));
            }
            if self.held.len() <= Self::DEPTH {
                return out;
            }
            // Give up on the missing packets: skip to the earliest held.
            self.held.sort_by_key(|(s, ..)| s.wrapping_sub(next));
            let (first, first_ts, _) = &self.held[0];
            let (_, expected_ts) = self.next.unwrap_or((*first, *first_ts));
            let gap = first_ts.wrapping_sub(expected_ts);
            if gap > 0 && gap <= Self::MAX_GAP {
                out.push(Frame::Lost(gap as usize));
            }
            self.next = Some((*first, *first_ts));
        } else {
            self.held.push((seq, timestamp, payload.to_vec()));
        }
        // Hand on everything now in sequence.
        while let Some((next, _)) = self.next {
            let Some(index) = self.held.iter().position(|(s, ..)| *s == next) else {
                break;
            };
            let (seq, ts, payload) = self.held.remove(index);
            self.next = Some((seq.wrapping_add(1), ts.wrapping_add(payload.len() as u32)));
            out.push(Frame::Audio(payload));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A play stopped before it arrived (its clip loads on another task)
    /// never starts, and still reports its end once.
    #[test]
    fn a_play_stopped_before_it_arrives_never_starts() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let (events, mut reported) = mpsc::unbounded_channel();
        let session = start(socket, None, events, runtime.handle());
        session.send(Control::Stop { id: 7 });
        session.send(Control::Play {
            id: 7,
            clip: Arc::new(Clip::silence(60_000)),
            times: Some(1),
        });
        let event = runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), reported.recv()).await
        });
        assert_eq!(
            event.ok().flatten(),
            Some(MediaEvent::Played { id: 7, ms: 0 })
        );
        session.send(Control::Close);
    }

    fn seqs(frames: &[Frame]) -> Vec<String> {
        frames
            .iter()
            .map(|f| match f {
                Frame::Audio(p) => format!("a{}", p[0]),
                Frame::Lost(n) => format!("lost{n}"),
            })
            .collect()
    }

    #[test]
    fn reorders_and_gives_up_on_loss() {
        let mut buffer = Reorder::default();
        let mut out = Vec::new();
        let mut push = |seq: u16| {
            let ts = u32::from(seq) * 160;
            buffer.push(seq, ts, &[seq as u8; 160])
        };
        out.extend(push(10));
        out.extend(push(12)); // 11 is late
        out.extend(push(11));
        out.extend(push(11)); // duplicate
        out.extend(push(14)); // 13 lost
        out.extend(push(15));
        out.extend(push(16));
        out.extend(push(17));
        assert_eq!(
            seqs(&out),
            ["a10", "a11", "a12", "lost160", "a14", "a15", "a16", "a17"]
        );
    }
}
