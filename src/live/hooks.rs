//! Kazoo's webhooks for real calls: each event of the bus
//! ([`super::events`]) is matched against its account's `webhooks`
//! documents in the current generation (enabled, not deleted, `hook` the
//! event's name or `all`), and each match is queued for sending: a POST of
//! the payload as JSON, or a GET with its fields as query parameters, with
//! the hook's `custom_data` merged over it.
//!
//! Each account has its own bounded queue and its own sender task, so a
//! slow receiver delays only its own account's hooks, and a full queue
//! drops the new event (logged and counted) instead of waiting: nothing
//! here ever slows a call. A failed request (no answer, or not 2xx) is
//! tried again at most `retries` times with a growing backoff. A URL naming
//! a loopback, link-local or private address is refused as `call:http`
//! refuses it, unless private addresses are allowed: logged once per hook
//! and URL, never sent nor retried.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{broadcast, mpsc};

use super::events::{Bus, CallEvent};
use crate::catalog::AccountFlows;
use crate::engine::control::{HttpOutcome, HttpRequest};
use crate::ids::AccountId;
use crate::reload::Reloader;

/// The folder of webhook documents.
pub const WEBHOOKS: &str = "webhooks";

/// How hooks are sent.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Requests waiting per account; past it, new events are dropped.
    pub queue: usize,
    /// The wait before the first retry; doubled for each next one.
    pub backoff: Duration,
    /// One request's time limit.
    pub timeout: Duration,
    /// Let hooks reach loopback and private addresses
    /// (`--allow-private-http`).
    pub allow_private: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            queue: 256,
            backoff: Duration::from_millis(250),
            timeout: Duration::from_secs(5),
            allow_private: false,
        }
    }
}

/// What became of the hooks so far (for logs and tests).
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests answered 2xx.
    pub sent: AtomicU64,
    /// Attempts that failed (each retry counts).
    pub failed: AtomicU64,
    /// Events dropped because their account's queue was full.
    pub dropped: AtomicU64,
    /// Events not sent because the hook's URL is a private address.
    pub refused: AtomicU64,
}

/// How a hook is requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
}

/// One event for one hook.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The webhook document's id.
    pub hook: String,
    pub uri: String,
    pub verb: Verb,
    pub retries: u32,
    /// The payload, `custom_data` merged in.
    pub body: Map<String, Value>,
}

/// Kazoo's bound of `retries`.
const MAX_RETRIES: u32 = 4;

/// The deliveries `event` makes in `account`: one per enabled, not
/// deleted webhook whose `hook` is the event's or `all`, in id order.
/// Documents without a usable `uri` are skipped (`callflow check` reports
/// them).
pub fn deliveries(account: &AccountFlows, event: &CallEvent) -> Vec<Delivery> {
    let Some(hooks) = account.documents.get(WEBHOOKS) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for (id, doc) in hooks {
        let body = &doc.body;
        let enabled = body.get("enabled").and_then(Value::as_bool) != Some(false);
        let deleted = body.get("pvt_deleted").and_then(Value::as_bool) == Some(true);
        let hook = body.get("hook").and_then(Value::as_str);
        let wanted = hook.is_some_and(|h| h == "all" || h == event.kind.hook());
        let Some(uri) = body.get("uri").and_then(Value::as_str) else {
            continue;
        };
        if !enabled || deleted || !wanted || uri.is_empty() {
            continue;
        }
        let verb = match body.get("http_verb").and_then(Value::as_str) {
            Some(verb) if verb.eq_ignore_ascii_case("get") => Verb::Get,
            _ => Verb::Post,
        };
        let retries = body
            .get("retries")
            .and_then(Value::as_u64)
            .map_or(2, |r| u32::try_from(r).unwrap_or(MAX_RETRIES))
            .min(MAX_RETRIES);
        let mut payload = event.data.clone();
        if let Some(Value::Object(custom)) = body.get("custom_data") {
            for (key, value) in custom {
                payload.insert(key.clone(), value.clone());
            }
        }
        found.push(Delivery {
            hook: id.as_str().to_owned(),
            uri: uri.to_owned(),
            verb,
            retries,
            body: payload,
        });
    }
    found
}

/// The HTTP request of a delivery: the payload as a JSON body (POST), or
/// as query parameters after the URI's own (GET; objects and arrays as
/// JSON text).
pub fn request(delivery: &Delivery, timeout: Duration) -> HttpRequest {
    let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    let mut headers = BTreeMap::new();
    headers.insert("User-Agent".to_owned(), "callflow-webhooks".to_owned());
    match delivery.verb {
        Verb::Post => {
            headers.insert("Content-Type".to_owned(), "application/json".to_owned());
            HttpRequest {
                method: "POST".to_owned(),
                url: delivery.uri.clone(),
                headers,
                body: Some(Value::Object(delivery.body.clone()).to_string()),
                timeout_ms,
            }
        }
        Verb::Get => {
            let query: Vec<String> = delivery
                .body
                .iter()
                .map(|(key, value)| {
                    let text = match value {
                        Value::String(text) => text.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    format!("{}={}", encode(key), encode(&text))
                })
                .collect();
            let (base, fragment) = delivery
                .uri
                .split_once('#')
                .map_or((delivery.uri.as_str(), None), |(b, f)| (b, Some(f)));
            let joiner = if base.contains('?') { '&' } else { '?' };
            let mut url = format!("{base}{joiner}{}", query.join("&"));
            if let Some(fragment) = fragment {
                url.push('#');
                url.push_str(fragment);
            }
            HttpRequest {
                method: "GET".to_owned(),
                url,
                headers,
                body: None,
                timeout_ms,
            }
        }
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Sends one request (blocking: it runs on a blocking thread); `Err` when
/// there is no response, or the address was refused (`refused: ...`).
pub type Sender = Arc<dyn Fn(&HttpRequest) -> Result<HttpOutcome, String> + Send + Sync>;

/// The real sender: `ureq` through the same guard `call:http` uses.
pub fn http_sender(allow_private: bool) -> Sender {
    Arc::new(move |request| crate::sim::network::request(request, allow_private))
}

/// The per-account queues and their sender tasks.
pub struct Dispatcher {
    queues: BTreeMap<AccountId, mpsc::Sender<Delivery>>,
    settings: Settings,
    sender: Sender,
    stats: Arc<Stats>,
    runtime: tokio::runtime::Handle,
}

impl Dispatcher {
    pub fn new(settings: Settings, sender: Sender, runtime: tokio::runtime::Handle) -> Self {
        Self {
            queues: BTreeMap::new(),
            settings,
            sender,
            stats: Arc::new(Stats::default()),
            runtime,
        }
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Queues a delivery for `account` without waiting; `false` (logged
    /// and counted) when its queue is full and it was dropped.
    pub fn offer(&mut self, account: &AccountId, delivery: Delivery) -> bool {
        let queue = self.queues.entry(account.clone()).or_insert_with(|| {
            let (queue, pending) = mpsc::channel(self.settings.queue.max(1));
            self.runtime.spawn(drain(
                account.clone(),
                pending,
                self.settings,
                Arc::clone(&self.sender),
                Arc::clone(&self.stats),
            ));
            queue
        });
        match queue.try_send(delivery) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(delivery)) => {
                let dropped = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                let event = delivery
                    .body
                    .get("hook_event")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                tracing::warn!(
                    "webhook {} of account {account}: queue full, {event} event dropped ({dropped} dropped so far)",
                    delivery.hook,
                );
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.queues.remove(account);
                false
            }
        }
    }
}

/// Sends an account's deliveries one after the other (so a receiver gets
/// a call's events in order), each on a blocking thread.
async fn drain(
    account: AccountId,
    mut pending: mpsc::Receiver<Delivery>,
    settings: Settings,
    sender: Sender,
    stats: Arc<Stats>,
) {
    let mut refused_told = BTreeSet::new();
    while let Some(delivery) = pending.recv().await {
        if !settings.allow_private
            && let Some(reason) = crate::sim::network::refused(&delivery.uri)
        {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            if refused_told.insert((delivery.hook.clone(), delivery.uri.clone())) {
                tracing::warn!(
                    "webhook {} of account {account} not sent to {}: {reason}",
                    delivery.hook,
                    delivery.uri
                );
            }
            continue;
        }
        send_with_retries(&account, &delivery, &settings, &sender, &stats).await;
    }
}

/// Tries a delivery once and then up to `retries` more times while it
/// fails; a refused address is not retried.
async fn send_with_retries(
    account: &AccountId,
    delivery: &Delivery,
    settings: &Settings,
    sender: &Sender,
    stats: &Stats,
) {
    let request = request(delivery, settings.timeout);
    let mut backoff = settings.backoff;
    for attempt in 0..=delivery.retries {
        let send = Arc::clone(sender);
        let owned = request.clone();
        let outcome = tokio::task::spawn_blocking(move || send(&owned))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        let problem = match outcome {
            Ok(answer) if (200..300).contains(&answer.status) => {
                stats.sent.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(answer) => answer
                .error
                .unwrap_or_else(|| format!("answered {}", answer.status)),
            Err(refused) if refused.starts_with("refused") => {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "webhook {} of account {account} not sent to {}: {refused}",
                    delivery.hook,
                    delivery.uri
                );
                return;
            }
            Err(error) => error,
        };
        stats.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            "webhook {} of account {account} to {} (attempt {} of {}): {problem}",
            delivery.hook,
            delivery.uri,
            attempt + 1,
            delivery.retries + 1
        );
        if attempt < delivery.retries {
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
        }
    }
}

/// Starts the dispatcher on the current runtime: it hears every event of
/// `bus` and queues the hooks of the event's account, as the current
/// generation of flows has them.
pub fn start(bus: &Bus, reloader: Arc<Reloader>, settings: Settings) -> Arc<Stats> {
    let mut events = bus.subscribe();
    let mut dispatcher = Dispatcher::new(
        settings,
        http_sender(settings.allow_private),
        tokio::runtime::Handle::current(),
    );
    let stats = Arc::clone(dispatcher.stats());
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(event) => {
                    let catalog = Arc::clone(&reloader.current().catalog);
                    let Some(account) = catalog.account(event.account.as_str()) else {
                        continue;
                    };
                    for delivery in deliveries(account, &event) {
                        dispatcher.offer(&event.account, delivery);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(lost)) => {
                    dispatcher
                        .stats()
                        .dropped
                        .fetch_add(lost, Ordering::Relaxed);
                    tracing::warn!("webhooks fell behind the calls: {lost} event(s) lost");
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    stats
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::json;

    use super::*;
    use crate::live::events::{Channel, Kind, payload};

    fn event(kind: Kind) -> CallEvent {
        let channel = Channel {
            account: AccountId::new("acme").unwrap(),
            call_id: "c1".into(),
            inception: "offnet".into(),
            caller_id_name: "Alice Smith".into(),
            caller_id_number: "+15550001".into(),
            to: "2001".into(),
            authorizing_id: None,
        };
        let at = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        CallEvent {
            kind,
            account: channel.account.clone(),
            call_id: "c1".into(),
            data: payload(kind, &channel, at, Map::new()),
        }
    }

    fn account(hooks: &[(&str, Value)]) -> Arc<AccountFlows> {
        let documents = hooks
            .iter()
            .map(|(id, body)| {
                (
                    crate::ids::DocType::new(WEBHOOKS).unwrap(),
                    crate::ids::DocId::new(id).unwrap(),
                    crate::catalog::SourceFile {
                        path: format!("acme/webhooks/{id}.json"),
                        text: body.to_string(),
                    },
                )
            })
            .collect();
        let sources = crate::catalog::Sources {
            accounts: vec![crate::catalog::AccountSource {
                id: AccountId::new("acme").unwrap(),
                account: None,
                callflows: Vec::new(),
                documents,
            }],
            diagnostics: Vec::new(),
        };
        let (catalog, _) = crate::catalog::Catalog::build(sources, &crate::catalog::KazooModules);
        Arc::clone(catalog.account("acme").unwrap())
    }

    fn delivery(retries: u32) -> Delivery {
        Delivery {
            hook: "h".into(),
            uri: "http://hooks.example.com/in".into(),
            verb: Verb::Post,
            retries,
            body: Map::new(),
        }
    }

    fn settings() -> Settings {
        Settings {
            queue: 2,
            backoff: Duration::ZERO,
            timeout: Duration::from_secs(1),
            allow_private: false,
        }
    }

    #[allow(clippy::unnecessary_wraps, reason = "what the fake senders return")]
    fn answering(status: u16) -> Result<HttpOutcome, String> {
        Ok(HttpOutcome {
            status,
            body: String::new(),
            headers: BTreeMap::new(),
            error: None,
            duration_ms: 0,
        })
    }

    #[test]
    fn hooks_match_by_event_enabled_and_not_deleted() {
        let flows = account(&[
            (
                "a-create",
                json!({"name": "a", "uri": "http://x.example.com/a", "hook": "channel_create",
                       "custom_data": {"team": "blue", "call_id": "mine"}}),
            ),
            (
                "b-all",
                json!({"name": "b", "uri": "http://x.example.com/b?k=1", "hook": "all",
                       "http_verb": "get", "retries": 9}),
            ),
            (
                "c-off",
                json!({"name": "c", "uri": "http://x.example.com/c", "hook": "all", "enabled": false}),
            ),
            (
                "d-gone",
                json!({"name": "d", "uri": "http://x.example.com/d", "hook": "all", "pvt_deleted": true}),
            ),
            (
                "e-answer",
                json!({"name": "e", "uri": "http://x.example.com/e", "hook": "channel_answer"}),
            ),
        ]);
        let found = deliveries(&flows, &event(Kind::ChannelCreate));
        let ids: Vec<&str> = found.iter().map(|d| d.hook.as_str()).collect();
        assert_eq!(ids, ["a-create", "b-all"]);
        assert_eq!(found[0].verb, Verb::Post);
        assert_eq!(found[0].retries, 2);
        assert_eq!(found[0].body["team"], "blue");
        // custom_data overwrites the event's fields, as Kazoo's does.
        assert_eq!(found[0].body["call_id"], "mine");
        assert_eq!(found[1].verb, Verb::Get);
        assert_eq!(found[1].retries, MAX_RETRIES);
        let get = request(&found[1], Duration::from_secs(1));
        assert_eq!(get.method, "GET");
        assert!(
            get.url.starts_with("http://x.example.com/b?k=1&"),
            "{}",
            get.url
        );
        assert!(
            get.url.contains("caller_id_name=Alice%20Smith"),
            "{}",
            get.url
        );
        assert!(
            get.url.contains("caller_id_number=%2B15550001"),
            "{}",
            get.url
        );
        assert!(get.body.is_none());
        let post = request(&found[0], Duration::from_secs(1));
        let body: Value = serde_json::from_str(post.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["hook_event"], "channel_create");
        assert_eq!(post.headers["Content-Type"], "application/json");
    }

    #[tokio::test]
    async fn a_failing_hook_is_tried_retries_plus_one_times() {
        let calls = Arc::new(Mutex::new(0_u32));
        let counted = Arc::clone(&calls);
        let sender: Sender = Arc::new(move |_| {
            *counted.lock().unwrap() += 1;
            answering(500)
        });
        let stats = Stats::default();
        let acme = AccountId::new("acme").unwrap();
        send_with_retries(&acme, &delivery(3), &settings(), &sender, &stats).await;
        assert_eq!(*calls.lock().unwrap(), 4);
        assert_eq!(stats.failed.load(Ordering::Relaxed), 4);
        assert_eq!(stats.sent.load(Ordering::Relaxed), 0);

        // Second time lucky: one retry, then done.
        let calls = Arc::new(Mutex::new(0_u32));
        let counted = Arc::clone(&calls);
        let sender: Sender = Arc::new(move |_| {
            let mut n = counted.lock().unwrap();
            *n += 1;
            if *n == 1 {
                Err("reset".into())
            } else {
                answering(204)
            }
        });
        let stats = Stats::default();
        send_with_retries(&acme, &delivery(3), &settings(), &sender, &stats).await;
        assert_eq!(*calls.lock().unwrap(), 2);
        assert_eq!(stats.sent.load(Ordering::Relaxed), 1);

        // A refused address is not retried.
        let calls = Arc::new(Mutex::new(0_u32));
        let counted = Arc::clone(&calls);
        let sender: Sender = Arc::new(move |_| {
            *counted.lock().unwrap() += 1;
            Err("refused: 10.0.0.1 is private".into())
        });
        let stats = Stats::default();
        send_with_retries(&acme, &delivery(3), &settings(), &sender, &stats).await;
        assert_eq!(*calls.lock().unwrap(), 1);
        assert_eq!(stats.refused.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_full_queue_drops_without_waiting() {
        // The receiver never answers until the test lets it.
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let sender: Sender = Arc::new(move |_| {
            let _ = gate.lock().unwrap().recv();
            answering(200)
        });
        let mut dispatcher = Dispatcher::new(settings(), sender, tokio::runtime::Handle::current());
        let acme = AccountId::new("acme").unwrap();
        let beta = AccountId::new("beta").unwrap();
        let offered: Vec<bool> = (0..10)
            .map(|_| dispatcher.offer(&acme, delivery(0)))
            .collect();
        // At most the queue (2) and the one being sent were taken.
        let taken = offered.iter().filter(|ok| **ok).count();
        assert!((2..=3).contains(&taken), "{offered:?}");
        let dropped = dispatcher.stats().dropped.load(Ordering::Relaxed);
        assert_eq!(dropped, 10 - taken as u64);
        // Another account has a queue of its own.
        assert!(dispatcher.offer(&beta, delivery(0)));
        for _ in 0..20 {
            let _ = release.send(());
        }
    }

    #[tokio::test]
    async fn private_addresses_are_refused_unless_allowed() {
        let calls = Arc::new(Mutex::new(0_u32));
        let counted = Arc::clone(&calls);
        let sender: Sender = Arc::new(move |_| {
            *counted.lock().unwrap() += 1;
            answering(200)
        });
        let (queue, pending) = mpsc::channel(4);
        let stats = Arc::new(Stats::default());
        let acme = AccountId::new("acme").unwrap();
        let task = tokio::spawn(drain(
            acme,
            pending,
            settings(),
            Arc::clone(&sender),
            Arc::clone(&stats),
        ));
        let mut private = delivery(2);
        private.uri = "http://127.0.0.1:9/hook".into();
        queue.send(private.clone()).await.unwrap();
        queue.send(private).await.unwrap();
        drop(queue);
        task.await.unwrap();
        assert_eq!(*calls.lock().unwrap(), 0);
        assert_eq!(stats.refused.load(Ordering::Relaxed), 2);
    }
}
