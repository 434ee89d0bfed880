//! Metaflows: in-call DTMF feature codes (Kazoo's konami,
//! `kazoo-callflows.md` §4), as pure values: the configuration of a binding
//! ([`Binding`]: merged layers, defaults, evaluation of what was collected)
//! and the state machine that listens to a call's legs ([`Machine`],
//! [`Listener`]). Time comes in as call milliseconds; nothing here reads a
//! clock, a file or Lua.
//!
//! * A *binding* is built for an endpoint: the caller's (the a-leg, when the
//!   callflow starts) and the answering device's (the b-leg, when a bridge
//!   answers). Its `metaflows` are the account's, then the device's, then
//!   its owner's, merged recursively (later wins); the a-leg's also take the
//!   callflow's own `metaflow` last.
//! * The machine is unarmed until the binding digit arrives on a leg it
//!   listens to; then every digit of that leg is collected and restarts the
//!   digit timeout; when the timeout runs out the collected digits are
//!   evaluated (numbers, then patterns) and the machine disarms.
//!
//! The engine owns one [`Listener`] per call and runs what it fires.

mod binding;
mod machine;

pub use binding::{Binding, ListenOn, Match, MatchKind, merge};
pub use machine::{Fired, Listener, Machine};

/// A leg of the call: the caller's (the call the flow runs on) or the peer
/// bridged to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Leg {
    A,
    B,
}

impl Leg {
    pub fn as_str(self) -> &'static str {
        match self {
            Leg::A => "a",
            Leg::B => "b",
        }
    }

    /// The other leg.
    #[must_use]
    pub fn other(self) -> Leg {
        match self {
            Leg::A => Leg::B,
            Leg::B => Leg::A,
        }
    }
}

/// Defaults when no layer (nor the account's fallback key) says otherwise:
/// Kazoo's `konami_config`.
pub const DEFAULT_BINDING_DIGIT: char = '*';
pub const DEFAULT_DIGIT_TIMEOUT_MS: u64 = 800;
