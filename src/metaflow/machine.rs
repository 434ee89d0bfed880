//! The state machine of one binding (Kazoo's `konami_code_statem`), and the
//! call's listener holding the caller's binding and the bridged peer's.
//!
//! * unarmed: digits are ignored, but the binding digit on a leg the binding
//!   listens to arms the machine for that leg, with an empty buffer and the
//!   digit timeout running.
//! * armed: every digit of the armed leg is appended (the binding digit
//!   too: Kazoo's `use_fast_rearm` is off by default) and restarts the
//!   timeout; digits of the other leg are ignored.
//! * timeout: the buffer is evaluated and the machine disarms (the buffer
//!   is cleared whatever the outcome).

use super::{Binding, Leg, Match};

/// One binding's state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    binding_digit: char,
    timeout_ms: u64,
    listen_a: bool,
    listen_b: bool,
    armed: Option<Armed>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Armed {
    leg: Leg,
    collected: String,
    deadline: u64,
}

impl Machine {
    /// An unarmed machine listening to the legs `listens` says.
    pub fn new(binding_digit: char, timeout_ms: u64, listens: impl Fn(Leg) -> bool) -> Self {
        Self {
            binding_digit,
            timeout_ms,
            listen_a: listens(Leg::A),
            listen_b: listens(Leg::B),
            armed: None,
        }
    }

    fn listens(&self, leg: Leg) -> bool {
        match leg {
            Leg::A => self.listen_a,
            Leg::B => self.listen_b,
        }
    }

    /// A digit pressed on `leg` at `t_ms`.
    pub fn dtmf(&mut self, t_ms: u64, leg: Leg, digit: char) {
        let deadline = t_ms.saturating_add(self.timeout_ms);
        let arms = digit == self.binding_digit && self.listens(leg);
        match &mut self.armed {
            Some(armed) if armed.leg == leg => {
                armed.collected.push(digit);
                armed.deadline = deadline;
            }
            None if arms => {
                self.armed = Some(Armed {
                    leg,
                    collected: String::new(),
                    deadline,
                });
            }
            // Armed for the other leg, or not the binding digit: ignored.
            Some(_) | None => {}
        }
    }

    /// When the digit timeout runs out, while armed.
    pub fn deadline(&self) -> Option<u64> {
        self.armed.as_ref().map(|armed| armed.deadline)
    }

    /// At `now`, past the deadline: disarms and returns the armed leg and
    /// what it collected.
    pub fn fire(&mut self, now: u64) -> Option<(Leg, String)> {
        if self.deadline()? > now {
            return None;
        }
        self.armed.take().map(|armed| (armed.leg, armed.collected))
    }

    pub fn is_armed(&self) -> bool {
        self.armed.is_some()
    }
}

/// What a binding's machine fired: who pressed, what, and what it selects.
#[derive(Debug, Clone)]
pub struct Fired {
    pub leg: Leg,
    /// The binding's owner (see [`Binding::owner`]).
    pub binding: String,
    pub collected: String,
    pub matched: Option<Match>,
}

/// The metaflow listener of one call: the caller's binding and, while a
/// bridge is up, the answering device's, each with its machine.
#[derive(Debug, Default)]
pub struct Listener {
    a: Option<(Binding, Machine)>,
    b: Option<(Binding, Machine)>,
}

fn armed(binding: Binding) -> (Binding, Machine) {
    let machine = Machine::new(binding.binding_digit, binding.digit_timeout_ms, |leg| {
        binding.listens_to(leg)
    });
    (binding, machine)
}

impl Listener {
    /// The caller's binding (replacing any).
    pub fn set_caller(&mut self, binding: Option<Binding>) {
        self.a = binding.map(armed);
    }

    /// The bridged peer's binding; `None` when the bridge is over (its
    /// machine goes with it, armed or not).
    pub fn set_peer(&mut self, binding: Option<Binding>) {
        self.b = binding.map(armed);
    }

    /// Whether any binding listens at all.
    pub fn is_active(&self) -> bool {
        self.a.is_some() || self.b.is_some()
    }

    /// A digit pressed on `leg` at `t_ms`: every machine hears it.
    pub fn dtmf(&mut self, t_ms: u64, leg: Leg, digit: char) {
        for (_, machine) in [&mut self.a, &mut self.b].into_iter().flatten() {
            machine.dtmf(t_ms, leg, digit);
        }
    }

    /// The earliest digit timeout of an armed machine.
    pub fn deadline(&self) -> Option<u64> {
        [&self.a, &self.b]
            .into_iter()
            .flatten()
            .filter_map(|(_, machine)| machine.deadline())
            .min()
    }

    /// The next machine due at `now` (the caller's binding first), fired and
    /// evaluated.
    pub fn due(&mut self, now: u64) -> Option<Fired> {
        for (binding, machine) in [&mut self.a, &mut self.b].into_iter().flatten() {
            if let Some((leg, collected)) = machine.fire(now) {
                let matched = binding.evaluate(&collected);
                return Some(Fired {
                    leg,
                    binding: binding.owner.clone(),
                    collected,
                    matched,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::Object;

    fn machine(listen: &[Leg]) -> Machine {
        Machine::new('*', 800, |leg| listen.contains(&leg))
    }

    #[test]
    fn unarmed_ignores_everything_but_the_binding_digit_on_a_listened_leg() {
        let mut m = machine(&[Leg::A]);
        m.dtmf(0, Leg::A, '1');
        m.dtmf(10, Leg::B, '*');
        assert!(!m.is_armed());
        m.dtmf(100, Leg::A, '*');
        assert_eq!(m.deadline(), Some(900));
    }

    #[test]
    fn every_digit_of_the_armed_leg_restarts_the_timer() {
        let mut m = machine(&[Leg::A, Leg::B]);
        m.dtmf(0, Leg::B, '*');
        m.dtmf(500, Leg::B, '2');
        m.dtmf(600, Leg::A, '9'); // the other leg: ignored
        m.dtmf(1000, Leg::B, '*'); // the binding digit again is collected
        assert_eq!(m.deadline(), Some(1800));
        assert_eq!(m.fire(1799), None);
        assert_eq!(m.fire(1800), Some((Leg::B, "2*".to_owned())));
        assert!(!m.is_armed());
        assert_eq!(m.deadline(), None);
    }

    #[test]
    fn a_timeout_clears_the_buffer() {
        let mut m = machine(&[Leg::A]);
        m.dtmf(0, Leg::A, '*');
        m.dtmf(100, Leg::A, '7');
        assert_eq!(m.fire(900), Some((Leg::A, "7".to_owned())));
        m.dtmf(2000, Leg::A, '3');
        assert!(!m.is_armed(), "digits after the timeout do not re-arm");
        m.dtmf(2100, Leg::A, '*');
        m.dtmf(2200, Leg::A, '3');
        assert_eq!(m.fire(3000), Some((Leg::A, "3".to_owned())));
    }

    #[test]
    fn the_listener_fires_the_callers_binding_first() {
        let layer: Object = match json!({"numbers": {"1": {"module": "hold"}}, "listen_on": "both"})
        {
            serde_json::Value::Object(obj) => obj,
            _ => unreachable!(),
        };
        let mut listener = Listener::default();
        listener.set_caller(Binding::build(&[&layer], None, "dev_a", Leg::A));
        listener.set_peer(Binding::build(&[&layer], None, "dev_b", Leg::B));
        listener.dtmf(0, Leg::B, '*');
        listener.dtmf(100, Leg::B, '1');
        assert_eq!(listener.deadline(), Some(900));
        let first = listener.due(900).unwrap();
        assert_eq!((first.binding.as_str(), first.leg), ("dev_a", Leg::B));
        assert_eq!(first.matched.unwrap().key, "1");
        let second = listener.due(900).unwrap();
        assert_eq!(second.binding, "dev_b");
        assert!(listener.due(900).is_none());
        listener.set_peer(None);
        listener.dtmf(1000, Leg::B, '*');
        listener.dtmf(1000, Leg::A, '*');
        assert_eq!(listener.deadline(), Some(1800));
    }
}
