//! A mixer: the audio of a conference room, or of a call someone listens
//! to. Inputs are taps on RTP sessions ([`Input`]): what a member says, and
//! for an eavesdrop also what the listened-to caller hears. Every 20 ms the
//! mixer takes one frame from each input and sends each member with an
//! output the sum of every input but its own, as PCMU packets relayed into
//! its session ([`super::Control::RelayIn`], which transcodes to the leg's
//! codec).
//!
//! * **Latency is bounded.** An input's queue holds at most
//!   [`MAX_QUEUED`] samples; older ones are dropped (a sender whose clock
//!   runs fast, a burst after a stall).
//! * **Silence fills gaps.** An input with nothing queued counts as silence
//!   for that tick: a member who says nothing costs nothing.
//! * **Sums saturate** at the range of 16-bit samples.
//!
//! The mixer runs while a [`Mixer`] handle or an [`Input`] tap lives.

use std::collections::{BTreeMap, VecDeque};

use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use super::g711::{Codec, FRAME};
use super::session::{MediaEvent, PTIME, Relayed, Tap};

/// [`FRAME`] as an RTP timestamp step.
const FRAME_TICKS: u32 = 160;
const _: () = assert!(FRAME_TICKS as usize == FRAME);

/// At most this many samples wait in an input (60 ms).
pub const MAX_QUEUED: usize = FRAME * 3;

enum Command {
    /// A member: `out` hears the others (none: it only speaks).
    Join {
        id: u64,
        out: Option<mpsc::UnboundedSender<Relayed>>,
    },
    Leave {
        id: u64,
    },
    /// Audio of input `id`.
    Audio {
        id: u64,
        samples: Vec<i16>,
    },
}

/// A running mixer.
#[derive(Debug, Clone)]
pub struct Mixer {
    commands: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Join { id, .. } => write!(f, "Join({id})"),
            Command::Leave { id } => write!(f, "Leave({id})"),
            Command::Audio { id, samples } => write!(f, "Audio({id}, {})", samples.len()),
        }
    }
}

impl Mixer {
    /// Starts a mixer on `runtime` (the media runtime).
    pub fn start(runtime: &tokio::runtime::Handle) -> Self {
        let (commands, receiver) = mpsc::unbounded_channel();
        runtime.spawn(run(receiver));
        Self { commands }
    }

    /// Member `id` hears the sum of every other input through `out`.
    pub fn join(&self, id: u64, out: mpsc::UnboundedSender<Relayed>) {
        let _ = self.commands.send(Command::Join { id, out: Some(out) });
    }

    /// Member `id` leaves: its input and output are dropped.
    pub fn leave(&self, id: u64) {
        let _ = self.commands.send(Command::Leave { id });
    }

    /// A tap that feeds a session's audio in: what its far end says as
    /// input `inbound`, and, when `outbound` is given, what the session
    /// sends to the far end as that input (an eavesdrop hears both sides).
    pub fn input(&self, inbound: u64, outbound: Option<u64>) -> Input {
        Input {
            commands: self.commands.clone(),
            inbound,
            outbound,
        }
    }
}

/// A session tap feeding a [`Mixer`].
pub struct Input {
    commands: mpsc::UnboundedSender<Command>,
    inbound: u64,
    outbound: Option<u64>,
}

impl Tap for Input {
    fn inbound(&mut self, samples: &[i16]) -> Option<MediaEvent> {
        let _ = self.commands.send(Command::Audio {
            id: self.inbound,
            samples: samples.to_vec(),
        });
        None
    }

    fn outbound(&mut self, samples: &[i16]) {
        if let Some(id) = self.outbound {
            let _ = self.commands.send(Command::Audio {
                id,
                samples: samples.to_vec(),
            });
        }
    }

    fn finish(self: Box<Self>) -> Option<MediaEvent> {
        None
    }
}

/// One input or member.
#[derive(Default)]
struct Member {
    queued: VecDeque<i16>,
    out: Option<mpsc::UnboundedSender<Relayed>>,
    /// This tick's frame.
    frame: Vec<i16>,
}

/// The mixing itself, apart from the clock (tested without one).
#[derive(Default)]
struct Mix {
    members: BTreeMap<u64, Member>,
    /// Members that left: their audio still in flight is dropped.
    left: std::collections::BTreeSet<u64>,
    timestamp: u32,
    ticks: u64,
    encoded: Vec<u8>,
}

impl Mix {
    fn command(&mut self, command: Command) {
        match command {
            Command::Join { id, out } => {
                self.left.remove(&id);
                self.members.entry(id).or_default().out = out;
            }
            Command::Leave { id } => {
                self.members.remove(&id);
                self.left.insert(id);
            }
            Command::Audio { id, .. } if self.left.contains(&id) => {}
            Command::Audio { id, samples } => {
                let member = self.members.entry(id).or_default();
                member.queued.extend(samples);
                let excess = member.queued.len().saturating_sub(MAX_QUEUED);
                member.queued.drain(..excess);
            }
        }
    }

    /// One 20 ms frame out to every member with an output.
    fn tick(&mut self) {
        let mut total = [0_i32; FRAME];
        for member in self.members.values_mut() {
            member.frame.clear();
            let take = member.queued.len().min(FRAME);
            member.frame.extend(member.queued.drain(..take));
            member.frame.resize(FRAME, 0);
            for (sum, &sample) in total.iter_mut().zip(&member.frame) {
                *sum += i32::from(sample);
            }
        }
        let marker = self.ticks == 0;
        let mut mixed = [0_i16; FRAME];
        for member in self.members.values_mut() {
            let Some(out) = &member.out else { continue };
            for ((slot, &sum), &own) in mixed.iter_mut().zip(&total).zip(&member.frame) {
                let others = sum - i32::from(own);
                *slot = i16::try_from(others.clamp(i32::from(i16::MIN), i32::from(i16::MAX)))
                    .unwrap_or_default();
            }
            Codec::Pcmu.encode(&mixed, &mut self.encoded);
            let packet = Relayed {
                codec: Codec::Pcmu,
                timestamp: self.timestamp,
                marker,
                payload: self.encoded.clone(),
            };
            if out.send(packet).is_err() {
                member.out = None;
            }
        }
        self.ticks += 1;
        // The RTP timestamp moves one frame.
        self.timestamp = self.timestamp.wrapping_add(FRAME_TICKS);
    }
}

async fn run(mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut ticker = tokio::time::interval(PTIME);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut mix = Mix::default();
    loop {
        tokio::select! {
            biased;
            command = commands.recv() => match command {
                Some(command) => mix.command(command),
                None => break,
            },
            _ = ticker.tick() => mix.tick(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(packet: &Relayed) -> Vec<i16> {
        let mut out = Vec::new();
        packet.codec.decode(&packet.payload, &mut out);
        out
    }

    fn member(mix: &mut Mix, id: u64) -> mpsc::UnboundedReceiver<Relayed> {
        let (tx, rx) = mpsc::unbounded_channel();
        mix.command(Command::Join { id, out: Some(tx) });
        rx
    }

    fn say(mix: &mut Mix, id: u64, level: i16, samples: usize) {
        mix.command(Command::Audio {
            id,
            samples: vec![level; samples],
        });
    }

    #[test]
    fn each_member_hears_the_others_not_itself() {
        let mut mix = Mix::default();
        let mut a = member(&mut mix, 1);
        let mut b = member(&mut mix, 2);
        let mut c = member(&mut mix, 3);
        say(&mut mix, 1, 1000, FRAME);
        say(&mut mix, 2, 2000, FRAME);
        mix.tick();
        let level = |rx: &mut mpsc::UnboundedReceiver<Relayed>| {
            let packet = rx.try_recv().unwrap();
            let samples = decoded(&packet);
            assert_eq!(samples.len(), FRAME);
            i32::from(samples[0])
        };
        // mu-law is within a few percent of the linear sum.
        let near = |got: i32, want: i32| (got - want).abs() <= want / 20 + 8;
        let (heard_a, heard_b, heard_c) = (level(&mut a), level(&mut b), level(&mut c));
        assert!(near(heard_a, 2000), "a heard {heard_a}");
        assert!(near(heard_b, 1000), "b heard {heard_b}");
        assert!(near(heard_c, 3000), "c heard {heard_c}");
    }

    #[test]
    fn silence_fills_a_quiet_input_and_timestamps_move_a_frame_a_tick() {
        let mut mix = Mix::default();
        let mut a = member(&mut mix, 1);
        mix.tick();
        mix.tick();
        let first = a.try_recv().unwrap();
        let second = a.try_recv().unwrap();
        assert!(first.marker && !second.marker);
        assert_eq!(second.timestamp.wrapping_sub(first.timestamp), 160);
        assert!(decoded(&first).iter().all(|&s| s == 0));
    }

    #[test]
    fn sums_saturate_and_queues_stay_short() {
        let mut mix = Mix::default();
        let mut listener = member(&mut mix, 9);
        say(&mut mix, 1, i16::MAX, FRAME * 10);
        say(&mut mix, 2, i16::MAX, FRAME);
        assert_eq!(mix.members[&1].queued.len(), MAX_QUEUED);
        mix.tick();
        let loud = decoded(&listener.try_recv().unwrap());
        assert!(loud.iter().all(|&s| s > 30_000), "{:?}", &loud[..4]);
    }

    #[test]
    fn a_member_who_left_hears_nothing_more() {
        let mut mix = Mix::default();
        let mut a = member(&mut mix, 1);
        mix.command(Command::Leave { id: 1 });
        // Its audio still in flight brings no ghost back.
        say(&mut mix, 1, 1000, FRAME);
        assert!(!mix.members.contains_key(&1));
        mix.tick();
        assert!(a.try_recv().is_err());
        drop(a);
        let (tx, rx) = mpsc::unbounded_channel();
        drop(rx);
        mix.command(Command::Join {
            id: 2,
            out: Some(tx),
        });
        mix.tick();
        assert!(mix.members[&2].out.is_none(), "a closed output is dropped");
    }
}
