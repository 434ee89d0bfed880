//! Media for real calls, owned by this project (the SIP stack does
//! signalling only): SDP offer/answer, RTP sessions paced at 20 ms, G.711,
//! RFC 4733 digits, clips to play (WAV, tones), taps that record or detect.
//!
//! * `sdp.rs`: the offer parsed, a codec chosen, the answer written.
//! * `session.rs`: one leg's RTP task (send, receive, symmetric RTP, taps).
//! * `mixer.rs`: conference rooms and eavesdrops: each member hears the
//!   sum of the others.
//! * `g711.rs`, `dtmf.rs`: the codecs and telephone events.
//! * `audio.rs`: clips (8 kHz mono), from WAV files and tone streams.
//! * `convert.rs`: uploaded WAV and MP3 audio made into what calls play
//!   cheapest (8 kHz mono 16-bit PCM WAV).
//! * `ports.rs`: the RTP port range.
//! * `library.rs`: what a name played is (tone, URL, media document,
//!   system prompt) and what `say` says; `fetch.rs`: media URLs downloaded
//!   once into the cache; `prompts.rs`: Kazoo's system prompts, their
//!   English texts and the Asterisk recordings that say the same;
//!   `say.rs`: say types as English sentences; `tts.rs`: speech
//!   (espeak-ng), cached on disk.
//!
//! Media never calls up into signalling: a call's task decides, the
//! session reports.

pub mod audio;
pub mod convert;
pub mod dtmf;
pub mod fetch;
pub mod g711;
pub mod library;
pub mod mixer;
pub mod ports;
pub mod prompts;
pub mod say;
pub mod sdp;
pub mod session;
pub mod tts;

pub use audio::{AudioError, Clip, Repeat};
pub use g711::Codec;
pub use ports::{NoPort, PortRange, Ports};
pub use sdp::{Negotiated, Offer, SdpError};
pub use session::{Control, Handle, MediaEvent, Tap};
