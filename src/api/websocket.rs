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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

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

/// The upgrade: an invalid token given here is a 401 before it.
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
    let events = state.live_events();
    Ok(upgrade
        .max_message_size(MAX_MESSAGE)
        .on_upgrade(move |socket| run(socket, state, token, events)))
}

/// One socket's subscriptions: bindings by account.
#[derive(Debug, Default)]
struct Subscriptions {
    by_account: BTreeMap<AccountId, BTreeSet<String>>,
}

impl Subscriptions {
    fn count(&self) -> usize {
        self.by_account.values().map(BTreeSet::len).sum()
    }

    /// The first binding of the event's account its routing key matches.
    fn matching(&self, event: &CallEvent) -> Option<(&str, String)> {
        let bindings = self.by_account.get(&event.account)?;
        let key = event.kind.routing_key(&event.call_id);
        let words: Vec<&str> = key.split('.').collect();
        let binding = bindings.iter().find(|binding| {
            let pattern: Vec<&str> = binding.split('.').collect();
            topic_matches(&pattern, &words)
        })?;
        Some((binding.as_str(), key))
    }
}

/// AMQP topic matching: `*` is one word, `#` zero or more.
fn topic_matches(pattern: &[&str], key: &[&str]) -> bool {
    match (pattern.split_first(), key.split_first()) {
        (None, None) => true,
        (Some((&"#", rest)), _) => {
            topic_matches(rest, key)
                || key
                    .split_first()
                    .is_some_and(|(_, key_rest)| topic_matches(pattern, key_rest))
        }
        (Some((word, rest)), Some((key_word, key_rest))) => {
            (*word == "*" || word == key_word) && topic_matches(rest, key_rest)
        }
        _ => false,
    }
}

/// Why a binding is refused, if it is.
fn check_binding(binding: &str) -> Option<String> {
    let first = binding.split('.').next().unwrap_or_default();
    if binding.is_empty() || binding.len() > MAX_BINDING_LEN {
        return Some(format!(
            "a binding is 1 to {MAX_BINDING_LEN} characters: {binding:?}"
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

async fn run(
    mut socket: WebSocket,
    state: Arc<AppState>,
    token: Option<String>,
    mut events: Option<broadcast::Receiver<Arc<CallEvent>>>,
) {
    let mut subscriptions = Subscriptions::default();
    loop {
        let out = tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    Some(handle(&state, token.as_deref(), &mut subscriptions, text.as_str()).await)
                }
                Some(Ok(Message::Binary(_))) => Some(error_reply(&Value::Null, "messages are JSON text")),
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => None,
            },
            event = next_event(&mut events) => match event {
                Ok(event) => subscriptions.matching(&event).map(|(binding, key)| json!({
                    "action": "event",
                    "subscribed_key": binding,
                    "subscription_key": binding,
                    "name": event.kind.name(),
                    "routing_key": key,
                    "account_id": event.account.as_str(),
                    "data": Value::Object(event.data.clone()),
                })),
                Err(broadcast::error::RecvError::Lagged(lost)) => Some(json!({
                    "action": "notice",
                    "name": "events_dropped",
                    "data": {"dropped": lost, "message": "this client was too slow: events were dropped"},
                })),
                Err(broadcast::error::RecvError::Closed) => {
                    events = None;
                    None
                }
            },
        };
        if let Some(out) = out
            && socket
                .send(Message::Text(out.to_string().into()))
                .await
                .is_err()
        {
            break;
        }
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
async fn handle(
    state: &Arc<AppState>,
    connection_token: Option<&str>,
    subscriptions: &mut Subscriptions,
    text: &str,
) -> Value {
    let Ok(Value::Object(message)) = serde_json::from_str::<Value>(text) else {
        return error_reply(&Value::Null, "expected a JSON object");
    };
    let request_id = message.get("request_id").cloned().unwrap_or(Value::Null);
    let action = message.get("action").and_then(Value::as_str).unwrap_or("");
    let result = match action {
        "ping" => Ok(json!({})),
        "subscribe" | "unsubscribe" => {
            subscribe(state, connection_token, subscriptions, &message, action).await
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
    let held = subscriptions.by_account.entry(account.clone()).or_default();
    if action == "subscribe" {
        let new = bindings.iter().filter(|b| !held.contains(*b)).count();
        let total = subscriptions.count() + new;
        if total > MAX_BINDINGS {
            return Err(format!("at most {MAX_BINDINGS} bindings per connection"));
        }
        let held = subscriptions.by_account.entry(account.clone()).or_default();
        held.extend(bindings);
    } else if bindings.is_empty() {
        held.clear();
    } else {
        for binding in &bindings {
            held.remove(binding);
        }
    }
    let now: Vec<&String> = subscriptions
        .by_account
        .get(&account)
        .map(|held| held.iter().collect())
        .unwrap_or_default();
    Ok(json!({"account_id": account.as_str(), "subscribed": now}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, key: &str) -> bool {
        let pattern: Vec<&str> = pattern.split('.').collect();
        let key: Vec<&str> = key.split('.').collect();
        topic_matches(&pattern, &key)
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
}
