//! The rules of verbs that both backends follow, as pure state machines fed
//! with timed inputs: the simulator feeds them virtual time, the live
//! backend the wall clock and real digits. One copy of each rule, so that
//! the same flow gives the same trace shape on a simulated and a real call.

use std::future::Future;

use super::control::{CollectOutcome, CollectReason, CollectRequest, ConsultRequest, Leg};

/// A DTMF collection (`collect`) after its prompt: digits are taken from
/// the call's buffer one by one; terminators end it once `min_digits` are
/// in (earlier ones are dropped); `max_digits` ends it; the first digit is
/// awaited `timeout_ms` from the start of the wait, each next one
/// `interdigit_ms` from the last digit taken.
#[derive(Debug, Clone)]
pub struct Collector<'a> {
    request: &'a CollectRequest,
    digits: String,
    waiting_since: u64,
    last_digit_at: u64,
}

impl<'a> Collector<'a> {
    /// Starts waiting at `now` (the end of the prompt).
    pub fn new(request: &'a CollectRequest, now: u64) -> Self {
        Self {
            request,
            digits: String::new(),
            waiting_since: now,
            last_digit_at: now,
        }
    }

    /// A digit taken from the buffer at `now`; the reason the collection
    /// ends, if it does.
    pub fn digit(&mut self, digit: char, now: u64) -> Option<CollectReason> {
        self.last_digit_at = now;
        if self.request.terminators.contains(digit) {
            if self.digits.chars().count() >= self.request.min_digits as usize {
                return Some(CollectReason::Terminator);
            }
            return None;
        }
        self.digits.push(digit);
        (self.digits.chars().count() >= self.request.max_digits as usize)
            .then_some(CollectReason::MaxDigits)
    }

    /// When the collection times out if no digit comes first.
    pub fn deadline(&self) -> u64 {
        if self.digits.is_empty() {
            self.waiting_since.saturating_add(self.request.timeout_ms)
        } else {
            self.last_digit_at
                .saturating_add(self.request.interdigit_ms)
        }
    }

    /// The digits collected.
    pub fn digits(&self) -> &str {
        &self.digits
    }

    pub fn into_digits(self) -> String {
        self.digits
    }
}

/// What a backend's wait during a collection came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// The deadline came first.
    Timeout,
    /// The call is gone (or was taken elsewhere).
    Hangup,
    /// Something else happened (a digit arrived, a metaflow ran): look
    /// at the buffer again.
    Again,
}

/// Runs a collection after its prompt: takes digits from the buffer
/// (`next_digit`) while there are some, and otherwise asks the backend to
/// `wait` until the rule's deadline. `now` is the call's clock; `start`
/// when the verb (prompt included) began, for the outcome's duration.
pub async fn collect<W: Future<Output = Waited>>(
    request: &CollectRequest,
    start: u64,
    now: &dyn Fn() -> u64,
    next_digit: &dyn Fn() -> Option<char>,
    mut wait: impl FnMut(u64) -> W,
) -> CollectOutcome {
    let mut collector = Collector::new(request, now());
    let end = |collector: Collector<'_>, reason| CollectOutcome {
        digits: collector.into_digits(),
        reason,
        duration_ms: now().saturating_sub(start),
    };
    loop {
        while let Some(digit) = next_digit() {
            if let Some(reason) = collector.digit(digit, now()) {
                return end(collector, reason);
            }
        }
        match wait(collector.deadline()).await {
            Waited::Timeout => return end(collector, CollectReason::Timeout),
            Waited::Hangup => return end(collector, CollectReason::Hangup),
            Waited::Again => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> CollectRequest {
        CollectRequest {
            max_digits: 4,
            min_digits: 2,
            timeout_ms: 5000,
            interdigit_ms: 2000,
            terminators: "#".into(),
            prompt: None,
        }
    }

    #[test]
    fn digits_terminators_and_deadlines() {
        let request = request();
        let mut c = Collector::new(&request, 1000);
        assert_eq!(c.deadline(), 6000);
        assert_eq!(c.digit('#', 1500), None, "too early: dropped");
        assert_eq!(
            c.deadline(),
            6000,
            "a dropped terminator starts no inter-digit wait"
        );
        assert_eq!(c.digit('1', 2000), None);
        assert_eq!(c.deadline(), 4000);
        assert_eq!(c.digit('2', 2500), None);
        assert_eq!(c.digit('#', 2600), Some(CollectReason::Terminator));
        assert_eq!(c.digits(), "12");
        let mut full = Collector::new(&request, 0);
        for d in ['1', '2', '3'] {
            assert_eq!(full.digit(d, 10), None);
        }
        assert_eq!(full.digit('4', 20), Some(CollectReason::MaxDigits));
        assert_eq!(full.into_digits(), "1234");
    }
}

/// The transferor's digits during an attended transfer, watched for the
/// takeback code (none for a move: it completes on answer).
#[derive(Debug)]
pub struct Takeback {
    code: Option<String>,
    transferor: Leg,
    typed: std::cell::RefCell<String>,
}

impl Takeback {
    pub fn new(request: &ConsultRequest) -> Self {
        Self {
            code: request
                .takeback
                .clone()
                .filter(|code| !code.is_empty() && !request.complete_on_answer),
            transferor: request.transferor,
            typed: std::cell::RefCell::new(String::new()),
        }
    }

    /// Whether `digit` of `leg` completes the takeback code.
    pub fn pressed(&self, leg: Leg, digit: char) -> bool {
        let Some(code) = &self.code else {
            return false;
        };
        if leg != self.transferor {
            return false;
        }
        let mut typed = self.typed.borrow_mut();
        typed.push(digit);
        typed.ends_with(code.as_str())
    }
}

/// What a call may take of something from outside (digits, the caller's
/// events): a count with a ceiling, the same for both backends. Past it,
/// what comes is dropped, and the first drop is reported once (a `limit`
/// event naming `what` and `max`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cap {
    what: &'static str,
    max: usize,
    taken: std::cell::Cell<usize>,
}

impl Cap {
    pub const fn new(what: &'static str, max: usize) -> Self {
        Self {
            what,
            max,
            taken: std::cell::Cell::new(0),
        }
    }

    /// Takes one more: `Ok(())` while within the ceiling; past it
    /// `Err(Some(event))` the first time (the `limit` event to record, at
    /// `t_ms`), `Err(None)` after.
    pub fn take(&self, t_ms: u64) -> Result<(), Option<crate::trace::Event>> {
        let taken = self.taken.get().saturating_add(1);
        self.taken.set(taken);
        if taken <= self.max {
            return Ok(());
        }
        Err((taken == self.max + 1).then(|| {
            crate::trace::Event::new(t_ms, "limit")
                .with("what", self.what)
                .with("max", self.max)
        }))
    }
}

#[cfg(test)]
mod cap_tests {
    use super::Cap;

    #[test]
    fn a_cap_takes_up_to_its_max_and_reports_the_first_drop_once() {
        let cap = Cap::new("dtmf_digits", 2);
        assert!(cap.take(1).is_ok());
        assert!(cap.take(2).is_ok());
        let first = cap.take(3).unwrap_err().expect("reported");
        assert_eq!(first.name, "limit");
        assert_eq!(first.fields["what"], "dtmf_digits");
        assert_eq!(first.fields["max"], 2);
        assert_eq!(cap.take(4), Err(None));
    }
}
