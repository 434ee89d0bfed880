//! `GET /v2/websocket`: the events of real calls as they happen, in the
//! manner of Kazoo's blackhole. The client sends
//! `{"action": "subscribe", "auth_token": ..., "request_id": ...,
//! "data": {"account_id": ..., "binding": "call.CHANNEL_CREATE.*"}}`
//! (or `"bindings": [...]`; `unsubscribe` alike, `ping`); each gets
//! `{"action": "reply", "request_id", "status": "success"|"error",
//! "data"}`. Each event whose routing key (`call.CHANNEL_CREATE.<call
//! id>`, `call.CHANNEL_ANSWER.<id>`, `call.CHANNEL_DESTROY.<id>`,
//! `callflow.<id>`) matches a binding (AMQP topics: `*` one word, `#` any
//! number) comes as `{"action": "event", "subscribed_key", "name",
//! "routing_key", "account_id", "data"}`, `data` being the webhook
//! payload.
//!
//! A token (query `auth_token` or header `X-Auth-Token` at the upgrade,
//! or `auth_token` in each subscribe) only subscribes to its own account.
//! Each socket reads the event bus through its own receiver: a client too
//! slow to take its events loses the oldest and is told how many
//! (`{"action": "notice", "name": "events_dropped"}`); the calls never
//! wait for it. Without `--sip` subscriptions work and no event comes.
//!
//! A binding lasts while the token that (last) subscribed it does: before
//! an event of an account goes out, and every [`RECHECK_EVERY`] for all,
//! the socket asks [`holder_of`] about its tokens (an in-memory look-up,
//! the API key confirmed as every route does). The bindings of a token
//! that ended (expired, `DELETE /v2/token_auth`, its API key revoked) are
//! dropped with `{"action": "notice", "name": "token_ended", "data":
//! {"account_id", "dropped": [...], "message"}}`; a socket left with no
//! binding is then closed (code 1008, "token ended").
//!
//! Limits: a binding is at most [`MAX_BINDING_WORDS`] words, matched by a
//! table of pattern words × key words (no backtracking); a socket with no
//! binding for [`Config::websocket_idle`](super::Config::websocket_idle)
//! (since its upgrade or its last binding's end) gets `{"action":
//! "notice", "name": "idle"}` and is closed (1008, "idle"); at most
//! [`Config::max_websockets`](super::Config::max_websockets) sockets are
//! open at once, past it the upgrade is a 503 `unavailable`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;
use tokio::time::{Instant, MissedTickBehavior};

use super::auth::{holder_of, token_from};
use super::envelope::ApiError;
use super::state::{AppState, Holder};
use crate::ids::AccountId;
use crate::live::events::CallEvent;

/// The largest message a client may send.
const MAX_MESSAGE: usize = 64 << 10;
/// Bindings one socket may hold, all accounts together.
const MAX_BINDINGS: usize = 64;
/// The longest binding.
const MAX_BINDING_LEN: usize = 255;
/// The most words in a binding.
const MAX_BINDING_WORDS: usize = 16;
/// How often a socket re-checks all its tokens, events or not.
const RECHECK_EVERY: Duration = Duration::from_secs(5);

/// The upgrade: an invalid token given here is a 401 before it; past
/// [`Config::max_websockets`](super::Config::max_websockets) open
/// sockets, a 503.
pub(crate) async fn websocket(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let token = token_from(&headers, &uri);
    if let Some(token) = &token {
        holder_of(&state, token).await?;
    }
    let upgrade = upgrade.map_err(|e| {
        ApiError::InvalidRequest(format!("GET /v2/websocket is a WebSocket upgrade: {e}"))
    })?;
    let permit = Arc::clone(&state.websockets)
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::Unavailable(format!(
                "{} WebSockets are open, the most this server takes: try again later",
                state.config.max_websockets
            ))
        })?;
    let events = state.live_events();
    Ok(upgrade
        .max_message_size(MAX_MESSAGE)
        .on_upgrade(move |socket| async move {
            run(socket, state, token, events).await;
            drop(permit);
        }))
}

/// One socket's subscriptions: by account, each binding with the token
/// that (last) subscribed it. No account is kept without a binding.
#[derive(Debug, Default)]
struct Subscriptions {
    by_account: BTreeMap<AccountId, BTreeMap<String, String>>,
}

impl Subscriptions {
    fn count(&self) -> usize {
        self.by_account.values().map(BTreeMap::len).sum()
    }

    fn is_empty(&self) -> bool {
        self.by_account.values().all(BTreeMap::is_empty)
    }

    /// The tokens the bindings (of `account`, or all) were made with, each
    /// with its account.
    fn tokens(&self, account: Option<&AccountId>) -> BTreeSet<(String, AccountId)> {
        self.by_account
            .iter()
            .filter(|(held, _)| account.is_none_or(|account| account == *held))
            .flat_map(|(held, bindings)| {
                bindings
                    .values()
                    .map(move |token| (token.clone(), held.clone()))
            })
            .collect()
    }

    /// Drops the bindings made with a `dead` token; a `token_ended` notice
    /// for each account that lost some.
    fn drop_tokens(&mut self, dead: &BTreeSet<String>) -> Vec<Value> {
        let mut notices = Vec::new();
        for (account, bindings) in &mut self.by_account {
            let dropped: Vec<String> = bindings
                .iter()
                .filter(|(_, token)| dead.contains(*token))
                .map(|(binding, _)| binding.clone())
                .collect();
            if dropped.is_empty() {
                continue;
            }
            for binding in &dropped {
                bindings.remove(binding);
            }
            notices.push(json!({
                "action": "notice",
                "name": "token_ended",
                "data": {
                    "account_id": account.as_str(),
                    "dropped": dropped,
                    "message": "the token these bindings were subscribed with ended \
                                (expired, logged out or its API key revoked): \
                                subscriptions dropped",
                },
            }));
        }
        self.by_account.retain(|_, bindings| !bindings.is_empty());
        notices
    }

    /// Subscribes `token` to `bindings` of `account` (a binding held
    /// already is the token's now), or unsubscribes them (none: all of the
    /// account's); the account's bindings after.
    fn apply(
        &mut self,
        account: &AccountId,
        token: &str,
        subscribe: bool,
        bindings: Vec<String>,
    ) -> Result<Vec<String>, String> {
        let held = self.by_account.get(account);
        if subscribe {
            let new = bindings
                .iter()
                .filter(|b| held.is_none_or(|held| !held.contains_key(*b)))
                .count();
            if self.count() + new > MAX_BINDINGS {
                return Err(format!("at most {MAX_BINDINGS} bindings per connection"));
            }
            let held = self.by_account.entry(account.clone()).or_default();
            for binding in bindings {
                held.insert(binding, token.to_owned());
            }
        } else if let Some(held) = self.by_account.get_mut(account) {
            if bindings.is_empty() {
                held.clear();
            }
            for binding in &bindings {
                held.remove(binding);
            }
        }
        self.by_account.retain(|_, bindings| !bindings.is_empty());
        Ok(self
            .by_account
            .get(account)
            .map(|held| held.keys().cloned().collect())
            .unwrap_or_default())
    }

    /// The first binding of the event's account its routing key matches.
    fn matching(&self, event: &CallEvent) -> Option<(&str, String)> {
        let bindings = self.by_account.get(&event.account)?;
        let key = event.kind.routing_key(&event.call_id);
        let words: Vec<&str> = key.split('.').collect();
        let binding = bindings
            .keys()
            .find(|binding| topic_matches(&pattern_words(binding), &words))?;
        Some((binding.as_str(), key))
    }
}

/// A binding's words for matching: consecutive `#` are one (`#.#` matches
/// what `#` does).
fn pattern_words(binding: &str) -> Vec<&str> {
    let mut words: Vec<&str> = Vec::new();
    for word in binding.split('.') {
        if word == "#" && words.last() == Some(&"#") {
            continue;
        }
        words.push(word);
    }
    words
}

/// AMQP topic matching: `*` is one word, `#` zero or more.
fn topic_matches(pattern: &[&str], key: &[&str]) -> bool {
    topic_match_steps(pattern, key).0
}

/// [`topic_matches`], and the cells computed: a table of whether
/// `pattern[i..]` matches `key[j..]`, filled one pattern word at a time
/// from the last, so (pattern words + 1) × (key words + 1) cells at most.
fn topic_match_steps(pattern: &[&str], key: &[&str]) -> (bool, usize) {
    let k = key.len();
    // next[j]: whether the pattern's words after the current one match
    // key[j..]; with none left, only the empty rest of the key does.
    let mut next: Vec<bool> = (0..=k).map(|j| j == k).collect();
    let mut row = vec![false; k + 1];
    let mut steps = 0;
    for word in pattern.iter().rev() {
        for j in (0..=k).rev() {
            steps += 1;
            row[j] = if *word == "#" {
                // `#` takes no word, or key[j] and maybe more (row[j + 1]
                // is this row's, already computed).
                next[j] || (j < k && row[j + 1])
            } else {
                j < k && (*word == "*" || *word == key[j]) && next[j + 1]
            };
        }
        std::mem::swap(&mut row, &mut next);
    }
    (next[0], steps)
}

/// Why a binding is refused, if it is.
fn check_binding(binding: &str) -> Option<String> {
    let first = binding.split('.').next().unwrap_or_default();
    if binding.is_empty() || binding.len() > MAX_BINDING_LEN {
        return Some(format!(
            "a binding is 1 to {MAX_BINDING_LEN} characters: {binding:?}"
        ));
    }
    let words = binding.split('.').count();
    if words > MAX_BINDING_WORDS {
        return Some(format!(
            "a binding has at most {MAX_BINDING_WORDS} words, {binding:?} has {words}"
        ));
    }
    if binding.split('.').any(str::is_empty) {
        return Some(format!("empty word in binding {binding:?}"));
    }
    if !matches!(first, "call" | "callflow" | "*" | "#") {
        return Some(format!(
            "unsupported binding {binding:?}: bindings start with call. or callflow. \
             (call.CHANNEL_CREATE.*, call.CHANNEL_ANSWER.*, call.CHANNEL_DESTROY.*, callflow.*)"
        ));
    }
    None
}

/// When a socket with no binding is closed: `since` is when it last
/// came to have none (its upgrade, or its last binding's end). Pure over
/// the instants passed in.
#[derive(Debug, Clone, Copy)]
struct Idle {
    since: Option<Instant>,
}

impl Idle {
    fn started(now: Instant) -> Self {
        Self { since: Some(now) }
    }

    /// Notes whether the socket holds a binding as of `now`.
    fn note(&mut self, subscribed: bool, now: Instant) {
        if subscribed {
            self.since = None;
        } else if self.since.is_none() {
            self.since = Some(now);
        }
    }

    /// When the socket is closed unless it subscribes; `None`: it holds a
    /// binding (or the limit is past any instant).
    fn deadline(self, limit: Duration) -> Option<Instant> {
        self.since.and_then(|since| since.checked_add(limit))
    }

    fn over(self, now: Instant, limit: Duration) -> bool {
        self.deadline(limit).is_some_and(|deadline| now >= deadline)
    }
}

/// One open socket.
struct Connection {
    socket: WebSocket,
    state: Arc<AppState>,
    /// The token given at the upgrade.
    token: Option<String>,
    subscriptions: Subscriptions,
    /// Set when ended tokens took the last binding: close.
    token_ended: bool,
}

impl Connection {
    /// The event as the client gets it, if a binding matches, after the
    /// tokens of its account are re-checked (and notices if some ended).
    async fn deliver(&mut self, event: &CallEvent) -> Vec<Value> {
        if !self.subscriptions.by_account.contains_key(&event.account) {
            return Vec::new();
        }
        let mut out = self.recheck(Some(&event.account)).await;
        if let Some((binding, key)) = self.subscriptions.matching(event) {
            out.push(json!({
                "action": "event",
                "subscribed_key": binding,
                "subscription_key": binding,
                "name": event.kind.name(),
                "routing_key": key,
                "account_id": event.account.as_str(),
                "data": Value::Object(event.data.clone()),
            }));
        }
        out
    }

    /// Drops the bindings whose token ended (of `account`, or all): the
    /// notices saying so.
    async fn recheck(&mut self, account: Option<&AccountId>) -> Vec<Value> {
        let mut dead = BTreeSet::new();
        for (token, account) in self.subscriptions.tokens(account) {
            // Any failure counts as ended: a subscription never outlives
            // a token that cannot be confirmed.
            let live = matches!(
                holder_of(&self.state, &token).await,
                Ok(Holder::Account(holder)) if holder == account
            );
            if !live {
                dead.insert(token);
            }
        }
        if dead.is_empty() {
            return Vec::new();
        }
        let notices = self.subscriptions.drop_tokens(&dead);
        self.token_ended = self.subscriptions.is_empty();
        notices
    }

    async fn send(&mut self, message: &Value) -> Result<(), axum::Error> {
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
    }

    /// Closes with code 1008 and `reason`.
    async fn close(&mut self, reason: &'static str) {
        let frame = CloseFrame {
            code: close_code::POLICY,
            reason: Utf8Bytes::from_static(reason),
        };
        // The socket ends here whether or not the client hears it.
        let _ = self.socket.send(Message::Close(Some(frame))).await;
    }
}

async fn run(
    socket: WebSocket,
    state: Arc<AppState>,
    token: Option<String>,
    mut events: Option<broadcast::Receiver<Arc<CallEvent>>>,
) {
    let idle_limit = state.config.websocket_idle;
    let mut idle = Idle::started(Instant::now());
    let mut recheck = tokio::time::interval_at(Instant::now() + RECHECK_EVERY, RECHECK_EVERY);
    recheck.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut conn = Connection {
        socket,
        state,
        token,
        subscriptions: Subscriptions::default(),
        token_ended: false,
    };
    loop {
        let deadline = idle.deadline(idle_limit);
        let out = tokio::select! {
            incoming = conn.socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => vec![handle(&mut conn, text.as_str()).await],
                Some(Ok(Message::Binary(_))) => vec![error_reply(&Value::Null, "messages are JSON text")],
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => Vec::new(),
            },
            event = next_event(&mut events) => match event {
                Ok(event) => conn.deliver(&event).await,
                Err(broadcast::error::RecvError::Lagged(lost)) => vec![json!({
                    "action": "notice",
                    "name": "events_dropped",
                    "data": {"dropped": lost, "message": "this client was too slow: events were dropped"},
                })],
                Err(broadcast::error::RecvError::Closed) => {
                    events = None;
                    Vec::new()
                }
            },
            _ = recheck.tick() => conn.recheck(None).await,
            () = until(deadline) => Vec::new(),
        };
        let now = Instant::now();
        idle.note(!conn.subscriptions.is_empty(), now);
        for message in &out {
            if conn.send(message).await.is_err() {
                return;
            }
        }
        if conn.token_ended {
            conn.close("token ended").await;
            break;
        }
        if idle.over(now, idle_limit) {
            let notice = json!({
                "action": "notice",
                "name": "idle",
                "data": {"message": format!(
                    "no subscription for {} s: closing", idle_limit.as_secs_f64()
                )},
            });
            if conn.send(&notice).await.is_ok() {
                conn.close("idle").await;
            }
            break;
        }
    }
}

/// Waits until `deadline`; forever without one.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The next event of the bus; never, without one.
async fn next_event(
    events: &mut Option<broadcast::Receiver<Arc<CallEvent>>>,
) -> Result<Arc<CallEvent>, broadcast::error::RecvError> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

fn error_reply(request_id: &Value, message: &str) -> Value {
    json!({
        "action": "reply",
        "request_id": request_id,
        "status": "error",
        "data": {"errors": [message]},
    })
}

/// Answers one client message.
async fn handle(conn: &mut Connection, text: &str) -> Value {
    let Ok(Value::Object(message)) = serde_json::from_str::<Value>(text) else {
        return error_reply(&Value::Null, "expected a JSON object");
    };
    let request_id = message.get("request_id").cloned().unwrap_or(Value::Null);
    let action = message.get("action").and_then(Value::as_str).unwrap_or("");
    let result = match action {
        "ping" => Ok(json!({})),
        "subscribe" | "unsubscribe" => {
            subscribe(
                &conn.state,
                conn.token.as_deref(),
                &mut conn.subscriptions,
                &message,
                action,
            )
            .await
        }
        other => Err(format!(
            "unknown action {other:?}: subscribe, unsubscribe or ping"
        )),
    };
    match result {
        Ok(data) => json!({
            "action": "reply",
            "request_id": request_id,
            "status": "success",
            "data": data,
        }),
        Err(message) => error_reply(&request_id, &message),
    }
}

/// A subscribe or unsubscribe: the token's account, the bindings checked.
async fn subscribe(
    state: &Arc<AppState>,
    connection_token: Option<&str>,
    subscriptions: &mut Subscriptions,
    message: &Map<String, Value>,
    action: &str,
) -> Result<Value, String> {
    let token = message
        .get("auth_token")
        .and_then(Value::as_str)
        .or(connection_token)
        .ok_or("auth_token missing: give it in the message or when connecting")?;
    let account = match holder_of(state, token).await {
        Ok(Holder::Account(account)) => account,
        Ok(Holder::Operator) => {
            return Err("the operator's token subscribes to no account's events".to_owned());
        }
        Err(_) => return Err("invalid credentials".to_owned()),
    };
    let data = message.get("data").and_then(Value::as_object);
    if let Some(asked) = data.and_then(|d| d.get("account_id"))
        && asked.as_str() != Some(account.as_str())
    {
        return Err(format!(
            "this token does not give access to account {}",
            asked.as_str().unwrap_or(&asked.to_string())
        ));
    }
    let mut bindings: Vec<String> = Vec::new();
    if let Some(one) = data.and_then(|d| d.get("binding")).and_then(Value::as_str) {
        bindings.push(one.to_owned());
    }
    if let Some(many) = data
        .and_then(|d| d.get("bindings"))
        .and_then(Value::as_array)
    {
        for binding in many {
            let text = binding.as_str().ok_or("data.bindings: expected strings")?;
            bindings.push(text.to_owned());
        }
    }
    if bindings.is_empty() && action == "subscribe" {
        return Err("data.binding (or data.bindings) missing".to_owned());
    }
    if let Some(problem) = bindings.iter().find_map(|b| check_binding(b)) {
        return Err(problem);
    }
    let now = subscriptions.apply(&account, token, action == "subscribe", bindings)?;
    Ok(json!({"account_id": account.as_str(), "subscribed": now}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, key: &str) -> bool {
        let key: Vec<&str> = key.split('.').collect();
        topic_matches(&pattern_words(pattern), &key)
    }

    /// The plain recursive definition (exponential on `#` runs), to check
    /// the table against on small cases.
    fn reference(pattern: &[&str], key: &[&str]) -> bool {
        match (pattern.split_first(), key.split_first()) {
            (None, None) => true,
            (Some((&"#", rest)), _) => {
                reference(rest, key) || !key.is_empty() && reference(pattern, &key[1..])
            }
            (Some((word, rest)), Some((key_word, key_rest))) => {
                (*word == "*" || word == key_word) && reference(rest, key_rest)
            }
            _ => false,
        }
    }

    /// Every sequence of up to `max` words over `alphabet`.
    fn sequences<'a>(alphabet: &[&'a str], max: usize) -> Vec<Vec<&'a str>> {
        let mut all = vec![Vec::new()];
        let mut last = vec![Vec::new()];
        for _ in 0..max {
            last = last
                .iter()
                .flat_map(|seq: &Vec<&'a str>| {
                    alphabet.iter().map(move |word| {
                        let mut longer = seq.clone();
                        longer.push(*word);
                        longer
                    })
                })
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    #[test]
    fn the_table_agrees_with_the_definition() {
        let patterns = sequences(&["#", "*", "a", "b"], 4);
        let keys = sequences(&["a", "b"], 4);
        for pattern in &patterns {
            for key in &keys {
                let (got, _) = topic_match_steps(pattern, key);
                assert_eq!(got, reference(pattern, key), "{pattern:?} vs {key:?}");
                let joined = pattern.join(".");
                let collapsed = pattern_words(&joined);
                if !pattern.is_empty() {
                    assert_eq!(topic_matches(&collapsed, key), got, "{pattern:?}");
                }
            }
        }
    }

    #[test]
    fn a_backtracking_binding_is_refused_and_would_match_in_a_bounded_table() {
        // 255 characters: within the length, not within the words.
        let binding = format!("{}z", "#.".repeat(127));
        assert_eq!(binding.len(), MAX_BINDING_LEN);
        let refused = check_binding(&binding).expect("refused");
        assert!(refused.contains("at most 16 words"), "{refused}");
        // Even taken whole, matching a long key that fails costs one cell
        // per (pattern word + 1) × (key word + 1) at most, where the old
        // backtracking explored a number of paths exponential in both.
        let raw: Vec<&str> = binding.split('.').collect();
        let key = vec!["a"; 200];
        let (matched, steps) = topic_match_steps(&raw, &key);
        assert!(!matched);
        assert!(steps <= (raw.len() + 1) * (key.len() + 1), "{steps}");
        // Collapsed, it is `#.z`: two words.
        assert_eq!(pattern_words(&binding), ["#", "z"]);
        let (matched, steps) = topic_match_steps(&pattern_words(&binding), &key);
        assert!(!matched);
        assert!(steps <= 3 * 201, "{steps}");
        let mut ends_in_z = key.clone();
        ends_in_z.push("z");
        assert!(topic_matches(&pattern_words(&binding), &ends_in_z));
    }

    #[test]
    fn bindings_have_at_most_16_words() {
        let sixteen = format!("call{}", ".*".repeat(15));
        assert!(check_binding(&sixteen).is_none(), "{sixteen}");
        let seventeen = format!("{sixteen}.x");
        let refused = check_binding(&seventeen).expect("refused");
        assert!(refused.contains("has 17"), "{refused}");
    }

    #[test]
    fn bindings_match_as_amqp_topics() {
        assert!(matches("call.CHANNEL_CREATE.*", "call.CHANNEL_CREATE.abc"));
        assert!(!matches("call.CHANNEL_CREATE.*", "call.CHANNEL_ANSWER.abc"));
        assert!(matches("call.*.*", "call.CHANNEL_DESTROY.abc"));
        assert!(matches("call.#", "call.CHANNEL_DESTROY.abc"));
        assert!(matches("#", "callflow.abc"));
        assert!(matches("callflow.*", "callflow.abc"));
        assert!(!matches("callflow.*", "call.CHANNEL_CREATE.abc"));
        assert!(matches(
            "call.CHANNEL_ANSWER.abc",
            "call.CHANNEL_ANSWER.abc"
        ));
        assert!(!matches("call.*", "call.CHANNEL_ANSWER.abc"));
        // `#` takes zero words too, in any place; runs of it are one.
        assert!(matches("call.#.abc", "call.abc"));
        assert!(matches("call.#.#.abc", "call.CHANNEL_CREATE.abc"));
        assert!(matches("#.abc", "call.CHANNEL_CREATE.abc"));
        assert!(!matches("#.abc", "call.CHANNEL_CREATE.abd"));
        assert!(matches("call.*.#", "call.CHANNEL_CREATE"));
        assert!(!matches("call.*.*.#", "call.CHANNEL_CREATE"));
    }

    #[test]
    fn odd_bindings_are_refused() {
        assert!(check_binding("call.CHANNEL_CREATE.*").is_none());
        assert!(check_binding("callflow.*").is_none());
        assert!(check_binding("").is_some());
        assert!(check_binding("call..x").is_some());
        assert!(check_binding("conference.event.*").is_some());
        assert!(check_binding(&"call.".repeat(100)).is_some());
    }

    fn account(name: &str) -> AccountId {
        AccountId::new(name).unwrap()
    }

    fn bindings(list: &[&str]) -> Vec<String> {
        list.iter().map(|b| (*b).to_owned()).collect()
    }

    #[test]
    fn an_ended_token_takes_its_bindings_and_only_them() {
        let acme = account("acme");
        let other = account("other");
        let mut subs = Subscriptions::default();
        let now = subs
            .apply(&acme, "t1", true, bindings(&["call.#", "callflow.*"]))
            .unwrap();
        assert_eq!(now, ["call.#", "callflow.*"]);
        // t2 takes callflow.* over and adds one; another account's token.
        subs.apply(&acme, "t2", true, bindings(&["callflow.*", "#"]))
            .unwrap();
        subs.apply(&other, "t3", true, bindings(&["#"])).unwrap();
        assert_eq!(subs.count(), 4);
        let tokens: Vec<(String, AccountId)> = subs.tokens(Some(&acme)).into_iter().collect();
        assert_eq!(
            tokens,
            [
                ("t1".to_owned(), acme.clone()),
                ("t2".to_owned(), acme.clone())
            ]
        );

        let notices = subs.drop_tokens(&BTreeSet::from(["t1".to_owned()]));
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0]["action"], "notice");
        assert_eq!(notices[0]["name"], "token_ended");
        assert_eq!(notices[0]["data"]["account_id"], "acme");
        assert_eq!(notices[0]["data"]["dropped"], json!(["call.#"]));
        assert_eq!(subs.count(), 3);

        let notices = subs.drop_tokens(&BTreeSet::from(["t2".to_owned(), "t3".to_owned()]));
        assert_eq!(notices.len(), 2);
        assert!(subs.is_empty());
        assert!(
            subs.by_account.is_empty(),
            "no account kept without bindings"
        );
        // Nothing dropped, nothing said.
        assert!(
            subs.drop_tokens(&BTreeSet::from(["t1".to_owned()]))
                .is_empty()
        );
    }

    #[test]
    fn unsubscribing_and_the_binding_cap() {
        let acme = account("acme");
        let mut subs = Subscriptions::default();
        let many: Vec<String> = (0..MAX_BINDINGS).map(|n| format!("call.*.c{n}")).collect();
        subs.apply(&acme, "t", true, many).unwrap();
        // Held already: no more than the cap.
        subs.apply(&acme, "t", true, bindings(&["call.*.c0"]))
            .unwrap();
        let refused = subs.apply(&acme, "t", true, bindings(&["callflow.*"]));
        assert!(refused.unwrap_err().contains("at most 64"));
        let now = subs
            .apply(&acme, "t", false, bindings(&["call.*.c0"]))
            .unwrap();
        assert_eq!(now.len(), MAX_BINDINGS - 1);
        let now = subs.apply(&acme, "t", false, Vec::new()).unwrap();
        assert!(now.is_empty());
        assert!(subs.is_empty());
        // Unsubscribing an account never subscribed is no error.
        assert!(
            subs.apply(&account("other"), "t", false, Vec::new())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_socket_without_a_binding_is_idle_from_its_upgrade_or_its_last_binding() {
        let limit = Duration::from_mins(1);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut idle = Idle::started(t0);
        assert!(!idle.over(at(59), limit));
        assert!(idle.over(at(60), limit));
        assert_eq!(idle.deadline(limit), Some(at(60)));
        // Subscribed at 30 s: never idle while it holds a binding.
        idle.note(true, at(30));
        assert_eq!(idle.deadline(limit), None);
        assert!(!idle.over(at(1000), limit));
        // Its last binding gone at 100 s: a minute from then.
        idle.note(false, at(100));
        idle.note(false, at(120));
        assert!(!idle.over(at(159), limit));
        assert!(idle.over(at(160), limit));
        // A limit past any instant: never.
        assert_eq!(Idle::started(t0).deadline(Duration::MAX), None);
    }
}
