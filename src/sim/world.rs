//! The shared world of a multi-call scenario: one virtual clock for all
//! its calls, and the registry through which a call sees and reaches the
//! others (a ringing call to pick up, a parked call to retrieve).
//!
//! The calls run as futures of one task, one at a time: a call runs until
//! it waits on the clock ([`Shared::sleep_until`]); when every call waits,
//! the earliest wait (ties in the order they began) is woken and the clock
//! jumps to its time. So the calls interleave in time order, each step the
//! same every run, and a call acts on another only between the other's
//! steps: it leaves a [`Message`] in the other's inbox and wakes it early
//! ([`Shared::poke`]), at the current time.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// What one call does to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// The call `by` answers this call's ringing bridge (a pickup) or takes
    /// it from its parking slot (a retrieve), from `device` when it has one.
    /// With `intercept`, also a call whose bridge is answered: it talks
    /// to `by` instead, and its callee is hung up.
    Joined {
        by: String,
        device: Option<String>,
        intercept: bool,
    },
    /// The call joined to this one (`by`) hung up.
    Left { by: String },
    /// `by` joined the conference room this call is in.
    RoomJoined { by: String, moderator: bool },
    /// `by` left the conference room this call is in.
    RoomLeft { by: String },
    /// Wakes a call waiting somewhere ([`Shared::waiting_at`]).
    Wake,
}

/// What a call is doing, as others see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activity {
    /// Running its flow (no bridge, not parked).
    Busy,
    /// Its bridge rings these endpoints (ids).
    Ringing(Vec<String>),
    /// Talking to the endpoint (an id) or the call (a call id) it is joined to.
    Answered(String),
    /// Waiting in a parking slot.
    Parked(String),
    /// In a conference room.
    Conference(String),
    /// Waiting somewhere (a queue), where another call may wake it.
    Waiting(String),
    /// Over.
    Ended,
}

impl Activity {
    pub fn as_str(&self) -> &'static str {
        match self {
            Activity::Busy => "busy",
            Activity::Ringing(_) => "ringing",
            Activity::Answered(_) => "answered",
            Activity::Parked(_) => "parked",
            Activity::Conference(_) => "conference",
            Activity::Waiting(_) => "waiting",
            Activity::Ended => "ended",
        }
    }
}

impl From<Channel> for crate::engine::control::Channel {
    /// What a module sees of another call (`call:channels`).
    fn from(channel: Channel) -> Self {
        let (ringing, answered_by, slot) = match &channel.activity {
            Activity::Ringing(endpoints) => (endpoints.clone(), None, None),
            Activity::Answered(by) => (Vec::new(), Some(by.clone()), None),
            Activity::Parked(slot) | Activity::Conference(slot) | Activity::Waiting(slot) => {
                (Vec::new(), None, Some(slot.clone()))
            }
            Activity::Busy | Activity::Ended => (Vec::new(), None, None),
        };
        Self {
            state: channel.activity.as_str(),
            since: channel.since,
            call_id: channel.call_id,
            name: channel.name,
            from: channel.from,
            to: channel.to,
            calling_device: channel.calling_device,
            ringing,
            answered_by,
            slot,
        }
    }
}

/// A `conference_member` event: `by` came into (`join`) or left (`leave`)
/// the room of the call whose trace shows it; the simulator's and real
/// calls' rooms say it alike.
pub fn member_event(t_ms: u64, action: &str, by: String, moderator: bool) -> crate::trace::Event {
    let mut event = crate::trace::Event::new(t_ms, "conference_member")
        .with("action", action)
        .with("call_id", by);
    if moderator {
        event = event.with("moderator", true);
    }
    event
}

/// The `eavesdrop_mode` event of a listener's `digit` (FreeSWITCH's
/// eavesdrop with DTMF: 1 whispers to the target's caller, 2 to its peer,
/// 3 makes it three-way, any other listens again).
pub fn eavesdrop_mode_event(t_ms: u64, digit: char) -> crate::trace::Event {
    let mode = match digit {
        '1' => "whisper_caller",
        '2' => "whisper_peer",
        '3' => "three_way",
        _ => "listen",
    };
    crate::trace::Event::new(t_ms, "eavesdrop_mode").with("mode", mode)
}

/// One call, as the world knows it.
#[derive(Debug)]
pub struct Slot {
    pub call_id: String,
    /// The scenario's id for the call (`alice`).
    pub name: String,
    pub from: String,
    pub to: String,
    pub calling_device: Option<String>,
    pub activity: Activity,
    /// What the call said, while it waits, of when it began waiting (a
    /// queue's entry time, ms since the epoch).
    pub since: Option<i64>,
    inbox: VecDeque<Message>,
    /// The wait the call is in, if any: what [`Shared::poke`] cuts short.
    waiting: Option<Rc<Wait>>,
}

/// A call's view of another: what `call:channels()` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub call_id: String,
    pub name: String,
    pub from: String,
    pub to: String,
    pub calling_device: Option<String>,
    pub activity: Activity,
    pub since: Option<i64>,
}

#[derive(Debug, Default)]
struct Wait {
    fired: Cell<bool>,
    /// Woken early by a message, not by the clock.
    poked: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

/// The clock and the calls of one multi-call scenario.
#[derive(Debug, Default)]
pub struct Shared {
    now: Cell<u64>,
    seq: Cell<u64>,
    waits: RefCell<BTreeMap<(u64, u64), Rc<Wait>>>,
    /// Calls not waiting on the clock (running, or ready to run).
    running: Cell<usize>,
    calls: RefCell<BTreeMap<String, Slot>>,
    /// Call ids in the order the calls joined the world.
    order: RefCell<Vec<String>>,
    /// The calls eavesdropping on each call.
    listeners: RefCell<BTreeMap<String, Vec<String>>>,
    /// Camps waiting for their devices, in the order they were made.
    camps: RefCell<Vec<Camp>>,
    /// Calls the world places (callbacks), for the driver to start.
    spawns: RefCell<Vec<Spawn>>,
    /// Callbacks placed so far (their ids count up).
    callbacks: Cell<u64>,
}

/// A camp on busy devices (see [`crate::engine::control::CampRequest`]),
/// until `expires_at` (world time).
#[derive(Debug, Clone)]
pub struct Camp {
    pub request: crate::engine::control::CampRequest,
    pub expires_at: u64,
}

/// A call the world places: it starts at `at_ms` (world time) as a call
/// from `calling_device` to `to`, whose caller hangs up after
/// `hangup_after_ms` and presses `dtmf`.
#[derive(Debug, Clone)]
pub struct Spawn {
    pub id: String,
    pub at_ms: u64,
    pub to: String,
    pub from: String,
    pub caller_id_name: String,
    pub calling_device: String,
    pub hangup_after_ms: u64,
    pub dtmf: Vec<super::scenario::TimedDtmf>,
}

/// Why a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woke {
    /// Its time came.
    Time,
    /// Another call left a message first.
    Poked,
}

impl Shared {
    pub fn new() -> Rc<Self> {
        Rc::new(Self::default())
    }

    /// The world's time, in ms since the scenario started.
    pub fn now(&self) -> u64 {
        self.now.get()
    }

    /// A call future starts running (counted until it waits or ends).
    pub fn enter(&self) {
        self.running.set(self.running.get() + 1);
    }

    /// A call future ended.
    pub fn leave(&self) {
        self.running.set(self.running.get().saturating_sub(1));
    }

    /// Adds a call to the registry.
    pub fn register(&self, slot: SlotInit) {
        self.order.borrow_mut().push(slot.call_id.clone());
        self.calls.borrow_mut().insert(
            slot.call_id.clone(),
            Slot {
                call_id: slot.call_id,
                name: slot.name,
                from: slot.from,
                to: slot.to,
                calling_device: slot.calling_device,
                activity: Activity::Busy,
                since: None,
                inbox: VecDeque::new(),
                waiting: None,
            },
        );
    }

    /// Waits until the world's time is `t` (at once when it is past); with
    /// `call`, a message to that call ends the wait early.
    pub fn sleep_until(&self, t: u64, call: Option<&str>) -> Sleep<'_> {
        let wait = Rc::new(Wait::default());
        if let Some(id) = call
            && self
                .calls
                .borrow()
                .get(id)
                .is_some_and(|slot| !slot.inbox.is_empty())
        {
            // A message came while it ran: it does not wait at all.
            wait.fired.set(true);
            wait.poked.set(true);
            return Sleep {
                shared: self,
                wait,
                key: (0, 0),
            };
        }
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        self.waits
            .borrow_mut()
            .insert((t.max(self.now.get()), seq), Rc::clone(&wait));
        self.running.set(self.running.get().saturating_sub(1));
        if let Some(id) = call
            && let Some(slot) = self.calls.borrow_mut().get_mut(id)
        {
            slot.waiting = Some(Rc::clone(&wait));
        }
        Sleep {
            shared: self,
            wait,
            key: (t.max(self.now.get()), seq),
        }
    }

    /// When no call runs, wakes the earliest wait and moves the clock to
    /// it. False when there is nothing to wake.
    pub fn step(&self) -> bool {
        if self.running.get() > 0 {
            return true;
        }
        let Some(((t, _), wait)) = self.waits.borrow_mut().pop_first() else {
            return false;
        };
        self.now.set(self.now.get().max(t));
        fire(&wait, false);
        self.running.set(self.running.get() + 1);
        true
    }

    /// True while a call runs (the driver lets it go on).
    pub fn busy(&self) -> bool {
        self.running.get() > 0
    }

    /// Leaves `message` for `call` and wakes it now if it waits.
    pub fn poke(&self, call: &str, message: Message) {
        let mut calls = self.calls.borrow_mut();
        let Some(slot) = calls.get_mut(call) else {
            return;
        };
        slot.inbox.push_back(message);
        let Some(wait) = slot.waiting.take() else {
            return;
        };
        drop(calls);
        if wait.fired.get() {
            return;
        }
        self.waits.borrow_mut().retain(|_, w| !Rc::ptr_eq(w, &wait));
        fire(&wait, true);
        self.running.set(self.running.get() + 1);
    }

    /// `call` waits at `place`, saying since when.
    pub fn set_waiting(&self, call: &str, place: &str, since: Option<i64>) {
        if let Some(slot) = self.calls.borrow_mut().get_mut(call)
            && slot.activity != Activity::Ended
        {
            slot.activity = Activity::Waiting(place.to_owned());
            slot.since = since;
        }
    }

    /// The calls but `except` whose activity `wanted` accepts, in the order
    /// they joined the world.
    fn calls_where(&self, except: &str, wanted: impl Fn(&Activity) -> bool) -> Vec<String> {
        let calls = self.calls.borrow();
        self.order
            .borrow()
            .iter()
            .filter(|id| id.as_str() != except)
            .filter(|id| {
                calls
                    .get(id.as_str())
                    .is_some_and(|slot| wanted(&slot.activity))
            })
            .cloned()
            .collect()
    }

    /// The calls but `except` waiting at `place`.
    pub fn waiting_at(&self, place: &str, except: &str) -> Vec<String> {
        self.calls_where(
            except,
            |activity| matches!(activity, Activity::Waiting(at) if at == place),
        )
    }

    /// The calls but `except` waiting anywhere.
    pub fn all_waiting(&self, except: &str) -> Vec<String> {
        self.calls_where(except, |activity| matches!(activity, Activity::Waiting(_)))
    }

    /// The calls but `except` in conference room `room`.
    pub fn room_members(&self, room: &str, except: &str) -> Vec<String> {
        self.calls_where(
            except,
            |activity| matches!(activity, Activity::Conference(at) if at == room),
        )
    }

    /// `listener` eavesdrops on `target`: it hears when `target` ends.
    pub fn listen(&self, target: &str, listener: &str) {
        self.listeners
            .borrow_mut()
            .entry(target.to_owned())
            .or_default()
            .push(listener.to_owned());
    }

    /// The calls eavesdropping on `target`, forgotten.
    pub fn take_listeners(&self, target: &str) -> Vec<String> {
        self.listeners
            .borrow_mut()
            .remove(target)
            .unwrap_or_default()
    }

    /// The messages left for `call`, oldest first.
    pub fn take_messages(&self, call: &str) -> Vec<Message> {
        self.calls
            .borrow_mut()
            .get_mut(call)
            .map(|slot| slot.inbox.drain(..).collect())
            .unwrap_or_default()
    }

    /// Sets what `call` is doing.
    pub fn set_activity(&self, call: &str, activity: Activity) {
        if let Some(slot) = self.calls.borrow_mut().get_mut(call)
            && slot.activity != Activity::Ended
        {
            slot.activity = activity;
            slot.since = None;
        }
    }

    pub fn activity(&self, call: &str) -> Option<Activity> {
        self.calls
            .borrow()
            .get(call)
            .map(|slot| slot.activity.clone())
    }

    /// Every call but `except` that has not ended, in the order they
    /// joined the world.
    pub fn channels(&self, except: &str) -> Vec<Channel> {
        let calls = self.calls.borrow();
        self.order
            .borrow()
            .iter()
            .filter(|id| id.as_str() != except)
            .filter_map(|id| calls.get(id))
            .filter(|slot| slot.activity != Activity::Ended)
            .map(|slot| Channel {
                call_id: slot.call_id.clone(),
                name: slot.name.clone(),
                from: slot.from.clone(),
                to: slot.to.clone(),
                calling_device: slot.calling_device.clone(),
                activity: slot.activity.clone(),
                since: slot.since,
            })
            .collect()
    }

    /// Adds a camp.
    pub fn camp(&self, camp: Camp) {
        self.camps.borrow_mut().push(camp);
    }

    /// The camps whose devices are all free now, taken (and the expired
    /// ones dropped), in the order they were made.
    pub fn ready_camps(&self) -> Vec<Camp> {
        let now = self.now();
        let camps = std::mem::take(&mut *self.camps.borrow_mut());
        let mut ready = Vec::new();
        let mut waiting = Vec::new();
        for camp in camps {
            if camp.expires_at <= now {
                continue;
            }
            if camp
                .request
                .targets
                .iter()
                .all(|t| !self.device_busy(t, ""))
            {
                ready.push(camp);
            } else {
                waiting.push(camp);
            }
        }
        *self.camps.borrow_mut() = waiting;
        ready
    }

    /// The id of the next callback the world places.
    pub fn next_callback_id(&self) -> String {
        let n = self.callbacks.get() + 1;
        self.callbacks.set(n);
        format!("callback-{n}")
    }

    /// Asks the driver to start a call.
    pub fn spawn(&self, spawn: Spawn) {
        self.spawns.borrow_mut().push(spawn);
    }

    /// The calls to start, taken.
    pub fn take_spawns(&self) -> Vec<Spawn> {
        std::mem::take(&mut *self.spawns.borrow_mut())
    }

    /// True when `device` is on a call other than `except`: the calling
    /// device of a call that has not ended, or the endpoint a call talks to.
    pub fn device_busy(&self, device: &str, except: &str) -> bool {
        self.calls.borrow().values().any(|slot| {
            slot.call_id != except
                && slot.activity != Activity::Ended
                && (slot.calling_device.as_deref() == Some(device)
                    || slot.activity == Activity::Answered(device.to_owned()))
        })
    }
}

/// What [`Shared::register`] takes.
#[derive(Debug, Clone)]
pub struct SlotInit {
    pub call_id: String,
    pub name: String,
    pub from: String,
    pub to: String,
    pub calling_device: Option<String>,
}

fn fire(wait: &Wait, poked: bool) {
    wait.fired.set(true);
    wait.poked.set(poked);
    if let Some(waker) = wait.waker.borrow_mut().take() {
        waker.wake();
    }
}

/// The future of [`Shared::sleep_until`].
pub struct Sleep<'a> {
    shared: &'a Shared,
    wait: Rc<Wait>,
    key: (u64, u64),
}

impl Future for Sleep<'_> {
    type Output = Woke;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Woke> {
        if self.wait.fired.get() {
            return Poll::Ready(if self.wait.poked.get() {
                Woke::Poked
            } else {
                Woke::Time
            });
        }
        *self.wait.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Sleep<'_> {
    /// A wait dropped before its time (its call was cancelled) leaves the
    /// clock, and its call counts as running again until it says otherwise.
    fn drop(&mut self) {
        if !self.wait.fired.get() {
            self.wait.fired.set(true);
            self.shared.waits.borrow_mut().remove(&self.key);
            self.shared
                .running
                .set(self.shared.running.get().saturating_add(1));
        }
    }
}

/// Runs the calls of a multi-call scenario to their end on one clock:
/// `calls` are their futures, each already counted with
/// [`Shared::enter`] and calling [`Shared::leave`] when it ends.
pub async fn drive<'a>(
    shared: &Shared,
    calls: Vec<Pin<Box<dyn Future<Output = ()> + 'a>>>,
    start: &dyn Fn(Spawn) -> Pin<Box<dyn Future<Output = ()> + 'a>>,
) {
    let mut calls = calls;
    let mut done = vec![false; calls.len()];
    std::future::poll_fn(|cx| {
        loop {
            // Calls the world placed since (callbacks) join the others.
            for spawn in shared.take_spawns() {
                shared.enter();
                calls.push(start(spawn));
                done.push(false);
            }
            // Poll every call that may have progress to make, in order.
            for (index, call) in calls.iter_mut().enumerate() {
                if !done[index] && call.as_mut().poll(cx).is_ready() {
                    done[index] = true;
                }
            }
            if done.iter().all(|d| *d) {
                return Poll::Ready(());
            }
            if shared.busy() {
                // A call yielded to the executor (it is ready again): let
                // the runtime come back to us.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if !shared.step() {
                // Every call waits and nothing is scheduled: none can
                // ever wake (a bug); end rather than hang.
                return Poll::Ready(());
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two calls sleeping on the clock wake in time order (ties in the
    /// order they began waiting), and a poke cuts a wait short at the
    /// current time.
    #[test]
    fn calls_wake_in_time_order_and_a_poke_wakes_early() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let shared = Shared::new();
        let log: Rc<RefCell<Vec<String>>> = Rc::default();
        let calls: Vec<Pin<Box<dyn Future<Output = ()>>>> = vec![
            {
                shared.enter();
                let (shared, log) = (Rc::clone(&shared), Rc::clone(&log));
                Box::pin(async move {
                    shared.register(SlotInit {
                        call_id: "a".into(),
                        name: "a".into(),
                        from: String::new(),
                        to: String::new(),
                        calling_device: None,
                    });
                    let woke = shared.sleep_until(10_000, Some("a")).await;
                    log.borrow_mut()
                        .push(format!("a {woke:?} at {}", shared.now()));
                    let messages = shared.take_messages("a");
                    log.borrow_mut().push(format!("a got {messages:?}"));
                    shared.leave();
                })
            },
            {
                shared.enter();
                let (shared, log) = (Rc::clone(&shared), Rc::clone(&log));
                Box::pin(async move {
                    shared.sleep_until(3_000, None).await;
                    log.borrow_mut().push(format!("b at {}", shared.now()));
                    shared.poke("a", Message::Left { by: "b".into() });
                    shared.sleep_until(3_000, None).await;
                    log.borrow_mut()
                        .push(format!("b again at {}", shared.now()));
                    shared.leave();
                })
            },
        ];
        runtime.block_on(drive(&shared, calls, &|_| Box::pin(async {})));
        assert_eq!(
            *log.borrow(),
            [
                "b at 3000",
                "a Poked at 3000",
                "a got [Left { by: \"b\" }]",
                "b again at 3000",
            ]
        );
    }
}
