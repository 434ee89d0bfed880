//! The world of real calls: every call the server runs now, as the others
//! see it (`call:channels`), and the messages through which one call acts
//! on another: a pickup or a retrieve joining it, a wake, a conference
//! room's members coming and going, the end of a call someone listens to.
//! The simulator's world ([`crate::sim::world`]) keeps the same rules on a
//! virtual clock; this one is shared by the worker threads.
//!
//! * **Accounts are walls.** A call sees and reaches only the calls of its
//!   own account; every look-up takes the account.
//! * **A call acts on another only by message** ([`WorldEvent`], into the
//!   other call's event channel). The receiver decides: a pickup of a call
//!   that stopped ringing a moment ago is refused by that call, not
//!   decided by a stale look-up ([`Reply`]).
//! * **Media crosses calls** through the sessions' relays (a pickup, a
//!   retrieve) or a [`Mixer`] (a conference room, an eavesdrop); the world
//!   holds each call's session handle and each room's mixer.
//! * The lock is held only to read or change the registry, never across an
//!   await.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::Incoming;
use crate::engine::CallFacts;
use crate::engine::control::{CampRequest, Channel};
use crate::media::Handle;
use crate::media::mixer::Mixer;
use crate::sim::world::{self as sim_world, Activity};

/// What one call tells another.
#[derive(Debug, Clone)]
pub enum WorldEvent {
    /// `by` picks this call up (while it rings or is parked), or with
    /// `intercept` takes its callee's place; `media` is its session. The
    /// receiver relays the two sessions and accepts through `reply`, or
    /// drops it (refused).
    Joined {
        by: String,
        device: Option<String>,
        media: Handle,
        intercept: bool,
        reply: Reply,
    },
    /// `by` ended: the call it was joined to, or listened to.
    Left { by: String },
    /// Another call woke the calls waiting where this one waits.
    Wake,
    /// `by` joined the conference room this call is in.
    RoomJoined { by: String, moderator: bool },
    /// `by` left it.
    RoomLeft { by: String },
}

impl PartialEq for WorldEvent {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                Self::Joined {
                    by: a, reply: r, ..
                },
                Self::Joined {
                    by: b, reply: s, ..
                },
            ) => a == b && Arc::ptr_eq(&r.0, &s.0),
            (Self::Left { by: a }, Self::Left { by: b })
            | (Self::RoomLeft { by: a }, Self::RoomLeft { by: b }) => a == b,
            (Self::Wake, Self::Wake) => true,
            (
                Self::RoomJoined {
                    by: a,
                    moderator: m,
                },
                Self::RoomJoined {
                    by: b,
                    moderator: n,
                },
            ) => a == b && m == n,
            _ => false,
        }
    }
}

/// The answer to a [`WorldEvent::Joined`]: accepted, or dropped unanswered.
#[derive(Debug, Clone)]
pub struct Reply(Arc<Mutex<Option<oneshot::Sender<()>>>>);

impl Reply {
    pub fn new() -> (Self, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        (Self(Arc::new(Mutex::new(Some(tx)))), rx)
    }

    /// The join is accepted: the two calls are connected; false when the
    /// joining call gave up waiting (then nothing is connected).
    pub fn accept(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .is_some_and(|tx| tx.send(()).is_ok())
    }

    /// The join is refused (the call is no longer where the picker saw it).
    pub fn refuse(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
}

/// Whether `activity` is being in conference room `room`.
fn in_room(activity: &Activity, room: &str) -> bool {
    matches!(activity, Activity::Conference(at) if at == room)
}

/// One running call.
struct Entry {
    /// Order of arrival.
    seq: u64,
    account: String,
    from: String,
    to: String,
    calling_device: Option<String>,
    activity: Activity,
    since: Option<i64>,
    media: Handle,
    /// The session of whoever the call talks to (its callee's, or the
    /// joined call's): an eavesdropper whispers to it.
    peer_media: Option<Handle>,
    inbox: mpsc::UnboundedSender<Incoming>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    calls: BTreeMap<String, Entry>,
    /// Conference rooms by account and name, each with its mixer.
    rooms: BTreeMap<(String, String), Mixer>,
    /// The calls listening to each call.
    listeners: BTreeMap<String, Vec<String>>,
    /// Camps waiting for their devices: (account, request, until when).
    camps: Vec<(String, CampRequest, Instant)>,
}

/// Who places a camp's callback (the service: it rings the device).
pub type Placer = Arc<dyn Fn(String, CampRequest) + Send + Sync>;

/// The registry of running calls (see the module docs).
#[derive(Default)]
pub struct World {
    inner: Mutex<Inner>,
    /// Ids of taps one call puts on another's session: far above the ids
    /// a call gives its own plays and taps.
    taps: AtomicU64,
    /// Places camps' callbacks, once the service set it.
    placer: std::sync::OnceLock<Placer>,
}

/// Tap ids a call puts on another call's session start here.
const FOREIGN_TAPS: u64 = 1 << 48;

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("calls", &self.lock().calls.len())
            .finish_non_exhaustive()
    }
}

impl World {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A call starts: the others of `account` see it, busy.
    pub fn enter(
        &self,
        account: &str,
        facts: &CallFacts,
        media: Handle,
        inbox: mpsc::UnboundedSender<Incoming>,
    ) {
        let mut inner = self.lock();
        inner.next += 1;
        let seq = inner.next;
        inner.calls.insert(
            facts.call_id.clone(),
            Entry {
                seq,
                account: account.to_owned(),
                from: facts.from.clone(),
                to: facts.to.clone(),
                calling_device: facts.calling_device.as_ref().map(|d| d.as_str().to_owned()),
                activity: Activity::Busy,
                since: None,
                media,
                peer_media: None,
                inbox,
            },
        );
    }

    /// A call is over: gone from the registry (and from any listener
    /// list); a room it leaves empty closes.
    pub fn leave(&self, call_id: &str) {
        let mut inner = self.lock();
        let gone = inner.calls.remove(call_id);
        inner.listeners.remove(call_id);
        for listeners in inner.listeners.values_mut() {
            listeners.retain(|l| l != call_id);
        }
        if let Some(gone) = gone {
            let rooms: Vec<String> = inner
                .rooms
                .keys()
                .filter(|(account, _)| *account == gone.account)
                .map(|(_, room)| room.clone())
                .collect();
            for room in rooms {
                Self::close_if_empty(&mut inner, &gone.account, &room);
            }
        }
    }

    pub fn set_activity(&self, call_id: &str, activity: Activity) {
        if let Some(entry) = self.lock().calls.get_mut(call_id) {
            entry.activity = activity;
            entry.since = None;
        }
    }

    /// `call_id` waits at `place`, since `since` (as it says).
    pub fn set_waiting(&self, call_id: &str, place: &str, since: Option<i64>) {
        if let Some(entry) = self.lock().calls.get_mut(call_id) {
            entry.activity = Activity::Waiting(place.to_owned());
            entry.since = since;
        }
    }

    /// What `call_id` of `account` does now (`None`: no such call there).
    pub fn activity(&self, account: &str, call_id: &str) -> Option<Activity> {
        self.lock()
            .calls
            .get(call_id)
            .filter(|entry| entry.account == account)
            .map(|entry| entry.activity.clone())
    }

    /// `call_id`'s session, when it is a call of `account`.
    pub fn media(&self, account: &str, call_id: &str) -> Option<Handle> {
        self.lock()
            .calls
            .get(call_id)
            .filter(|entry| entry.account == account)
            .map(|entry| entry.media.clone())
    }

    /// `call_id` talks to whoever `media` is (`None`: nobody now).
    pub fn set_peer_media(&self, call_id: &str, media: Option<Handle>) {
        if let Some(entry) = self.lock().calls.get_mut(call_id) {
            entry.peer_media = media;
        }
    }

    /// The session of whoever `call_id` of `account` talks to.
    pub fn peer_media(&self, account: &str, call_id: &str) -> Option<Handle> {
        self.lock()
            .calls
            .get(call_id)
            .filter(|entry| entry.account == account)
            .and_then(|entry| entry.peer_media.clone())
    }

    /// The running calls of `account` but `except`, in the order they
    /// began.
    pub fn channels(&self, account: &str, except: Option<&str>) -> Vec<Channel> {
        let inner = self.lock();
        let mut calls: Vec<(&String, &Entry)> = inner
            .calls
            .iter()
            .filter(|(id, entry)| {
                entry.account == account
                    && Some(id.as_str()) != except
                    && entry.activity != Activity::Ended
            })
            .collect();
        calls.sort_by_key(|(_, entry)| entry.seq);
        calls
            .into_iter()
            .map(|(id, entry)| {
                Channel::from(sim_world::Channel {
                    call_id: id.clone(),
                    name: id.clone(),
                    from: entry.from.clone(),
                    to: entry.to.clone(),
                    calling_device: entry.calling_device.clone(),
                    activity: entry.activity.clone(),
                    since: entry.since,
                })
            })
            .collect()
    }

    /// Sends `event` to `call_id` when it is a running call of `account`.
    pub fn send(&self, account: &str, call_id: &str, event: WorldEvent) -> bool {
        self.lock()
            .calls
            .get(call_id)
            .filter(|entry| entry.account == account)
            .is_some_and(|entry| entry.inbox.send(Incoming::World(event)).is_ok())
    }

    /// The calls of `account` but `except` that `matches`.
    fn calls_where(
        &self,
        account: &str,
        except: &str,
        matches: impl Fn(&Activity) -> bool,
    ) -> Vec<String> {
        Self::calls_in(&self.lock(), account, except, matches)
    }

    /// [`World::calls_where`] with the lock held.
    fn calls_in(
        inner: &Inner,
        account: &str,
        except: &str,
        matches: impl Fn(&Activity) -> bool,
    ) -> Vec<String> {
        let mut calls: Vec<(&String, &Entry)> = inner
            .calls
            .iter()
            .filter(|(id, entry)| {
                entry.account == account && id.as_str() != except && matches(&entry.activity)
            })
            .collect();
        calls.sort_by_key(|(_, entry)| entry.seq);
        calls.into_iter().map(|(id, _)| id.clone()).collect()
    }

    /// The calls of `account` but `except` waiting at `place`.
    pub fn waiting_at(&self, account: &str, place: &str, except: &str) -> Vec<String> {
        self.calls_where(
            account,
            except,
            |activity| matches!(activity, Activity::Waiting(at) if at == place),
        )
    }

    /// The calls of `account` but `except` waiting anywhere.
    pub fn all_waiting(&self, account: &str, except: &str) -> Vec<String> {
        self.calls_where(account, except, |activity| {
            matches!(activity, Activity::Waiting(_))
        })
    }

    /// The calls of `account` but `except` in conference room `room`.
    pub fn room_members(&self, account: &str, room: &str, except: &str) -> Vec<String> {
        self.calls_where(account, except, |activity| in_room(activity, room))
    }

    /// `call_id` of `account` enters room `room`: the room's mixer
    /// (started on `runtime` when the room was empty) and the members
    /// there before it, in one step (a room closing meanwhile cannot split
    /// its members between two mixers).
    pub fn join_room(
        &self,
        account: &str,
        room: &str,
        call_id: &str,
        runtime: &tokio::runtime::Handle,
    ) -> (Mixer, Vec<String>) {
        let mut inner = self.lock();
        let others = Self::calls_in(&inner, account, call_id, |activity| in_room(activity, room));
        if let Some(entry) = inner.calls.get_mut(call_id) {
            entry.activity = Activity::Conference(room.to_owned());
            entry.since = None;
        }
        let mixer = inner
            .rooms
            .entry((account.to_owned(), room.to_owned()))
            .or_insert_with(|| Mixer::start(runtime))
            .clone();
        (mixer, others)
    }

    /// `call_id` leaves room `room` (still running: busy again); the room
    /// closes once nobody is in it.
    pub fn leave_room(&self, account: &str, room: &str, call_id: &str) {
        let mut inner = self.lock();
        if let Some(entry) = inner.calls.get_mut(call_id)
            && in_room(&entry.activity, room)
        {
            entry.activity = Activity::Busy;
        }
        Self::close_if_empty(&mut inner, account, room);
    }

    fn close_if_empty(inner: &mut Inner, account: &str, room: &str) {
        let empty = !inner
            .calls
            .values()
            .any(|entry| entry.account == account && in_room(&entry.activity, room));
        if empty {
            inner.rooms.remove(&(account.to_owned(), room.to_owned()));
        }
    }

    /// `listener` listens to `target`: it is told when `target` ends.
    pub fn listen(&self, target: &str, listener: &str) {
        self.lock()
            .listeners
            .entry(target.to_owned())
            .or_default()
            .push(listener.to_owned());
    }

    /// `listener` no longer listens to `target`.
    pub fn unlisten(&self, target: &str, listener: &str) {
        if let Some(listeners) = self.lock().listeners.get_mut(target) {
            listeners.retain(|l| l != listener);
        }
    }

    /// The calls listening to `target`, forgotten.
    pub fn take_listeners(&self, target: &str) -> Vec<String> {
        self.lock().listeners.remove(target).unwrap_or_default()
    }

    /// The service places callbacks with `placer`.
    pub fn set_placer(&self, placer: Placer) {
        let _ = self.placer.set(placer);
    }

    /// Camps on `request.targets` for a call of `account`; false when
    /// nothing places callbacks.
    pub fn camp(&self, account: &str, request: CampRequest) -> bool {
        if self.placer.get().is_none() {
            return false;
        }
        let until = Instant::now() + Duration::from_millis(request.stop_after_ms);
        self.lock().camps.push((account.to_owned(), request, until));
        true
    }

    /// Places the callbacks of the camps whose devices are all free now
    /// (and forgets the expired ones).
    pub fn call_back_free(&self) {
        let now = Instant::now();
        let ready: Vec<(String, CampRequest)> = {
            let mut inner = self.lock();
            let camps = std::mem::take(&mut inner.camps);
            let mut ready = Vec::new();
            for (account, request, until) in camps {
                if until <= now {
                    continue;
                }
                let busy = request
                    .targets
                    .iter()
                    .any(|device| Self::device_busy(&inner, &account, device));
                if busy {
                    inner.camps.push((account, request, until));
                } else {
                    ready.push((account, request));
                }
            }
            ready
        };
        if let Some(placer) = self.placer.get() {
            for (account, request) in ready {
                placer(account, request);
            }
        }
    }

    /// `device` of `account` is on a call: the device of a call running,
    /// or the endpoint one talks to.
    fn device_busy(inner: &Inner, account: &str, device: &str) -> bool {
        inner.calls.values().any(|entry| {
            entry.account == account
                && entry.activity != Activity::Ended
                && (entry.calling_device.as_deref() == Some(device)
                    || entry.activity == Activity::Answered(device.to_owned()))
        })
    }

    /// A tap id for a tap on another call's session.
    pub fn foreign_tap(&self) -> u64 {
        FOREIGN_TAPS + self.taps.fetch_add(1, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(call_id: &str, from: &str) -> CallFacts {
        CallFacts {
            call_id: call_id.to_owned(),
            to: "1000".to_owned(),
            from: from.to_owned(),
            caller_id_name: String::new(),
            inception: crate::routing::Inception::Onnet,
            calling_device: None,
            start_epoch_ms: 0,
            seed: 0,
        }
    }

    fn media(runtime: &tokio::runtime::Runtime) -> Handle {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let (events, _) = mpsc::unbounded_channel();
        crate::media::session::start(socket, None, events, runtime.handle())
    }

    #[test]
    fn accounts_are_walls_and_order_is_arrival() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let world = World::default();
        let (inbox, mut received) = mpsc::unbounded_channel();
        world.enter("acme", &facts("c2", "201"), media(&runtime), inbox.clone());
        world.enter("acme", &facts("c1", "202"), media(&runtime), inbox.clone());
        world.enter("other", &facts("c3", "203"), media(&runtime), inbox);
        world.set_activity("c1", Activity::Parked("1".to_owned()));
        let seen = world.channels("acme", Some("x"));
        let ids: Vec<&str> = seen.iter().map(|c| c.call_id.as_str()).collect();
        assert_eq!(ids, ["c2", "c1"]);
        assert_eq!(seen[1].state, "parked");
        assert_eq!(seen[1].slot.as_deref(), Some("1"));
        assert!(world.activity("acme", "c3").is_none());
        assert!(!world.send("acme", "c3", WorldEvent::Wake));
        assert!(world.send("other", "c3", WorldEvent::Wake));
        assert_eq!(
            received.try_recv().unwrap(),
            Incoming::World(WorldEvent::Wake)
        );
        world.leave("c2");
        assert_eq!(world.channels("acme", None).len(), 1);
    }

    #[test]
    fn a_refused_join_drops_the_reply() {
        let (reply, mut rx) = Reply::new();
        reply.refuse();
        assert!(rx.try_recv().is_err());
        let (reply, mut rx) = Reply::new();
        assert!(reply.clone().accept());
        assert!(rx.try_recv().is_ok());
        // The joining call gave up: the accept says so.
        let (reply, rx) = Reply::new();
        drop(rx);
        assert!(!reply.accept());
    }
}
