//! Real calls over the API: Kazoo's registrations listing, and the recent
//! calls of an account with their traces. They need the server to answer
//! SIP (`--sip`); without it they answer 404 `real_calls_off`, so that a
//! client never mistakes "this server takes no calls" for "nobody is
//! registered" or "nobody called".

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use serde_json::{Map, Value, json};

use super::auth::Authed;
use super::envelope::{ApiError, Success};
use super::paging::{Listing, Order};
use super::state::AppState;
use crate::catalog::AccountFlows;
use crate::ids::DocId;
use crate::live::{CallSummary, account_realm};
use crate::sip::Binding;

/// Seconds from year 0 of the Gregorian calendar to the Unix epoch: Kazoo
/// gives timestamps in Gregorian seconds (`event_timestamp`).
const GREGORIAN_UNIX_OFFSET: i64 = 62_167_219_200;

/// One registration in Kazoo's shape (`cb_registrations`), from our
/// registrar's binding:
///
/// | field | from |
/// | --- | --- |
/// | `username` | the digest username (the device's `sip.username`) |
/// | `contact` | the Contact URI the device registered |
/// | `realm` | the domain of the REGISTER's To: the account's realm when the phone is set up as Kazoo expects, the server's address when the phone names it so |
/// | `account_realm`, `account_name` | the account's `realm` (its id without one) and `name` |
/// | `authorizing_id`, `authorizing_type` | the device document's id, `device` |
/// | `owner_id` | the device's `owner_id`, when it has one |
/// | `network_ip`, `network_port` | where the REGISTER came from |
/// | `user_agent`, `call_id` | the REGISTER's `User-Agent` and `Call-ID` |
/// | `expires` | seconds granted |
/// | `event_timestamp` | when it registered, in Kazoo's Gregorian seconds |
/// | `registered_at` | the same in Unix seconds (ours) |
/// | `transport` | `udp` or `tcp` (ours; Kazoo has it in the contact's parameters) |
///
/// Kazoo's proxy fields (`proxy_ip`, `proxy_port`), `original_contact`,
/// `contact_ip`/`contact_port`, `from_*`/`to_*` are not given: there is no
/// proxy in front, and the others repeat `contact`, `username` and `realm`.
fn registration(binding: &Binding, account: &AccountFlows) -> Value {
    let mut out = Map::new();
    out.insert("account_name".into(), json!(account.account.name));
    out.insert("account_realm".into(), json!(account_realm(account)));
    out.insert("authorizing_type".into(), json!("device"));
    if let Some(owner) = account
        .document("devices", &binding.authorizing_id)
        .and_then(|device| device.body.get("owner_id"))
    {
        out.insert("owner_id".into(), owner.clone());
    }
    out.insert("authorizing_id".into(), json!(binding.authorizing_id));
    out.insert("call_id".into(), json!(binding.call_id));
    out.insert("contact".into(), json!(binding.contact));
    out.insert(
        "event_timestamp".into(),
        json!(binding.registered_at.saturating_add(GREGORIAN_UNIX_OFFSET)),
    );
    out.insert("expires".into(), json!(binding.expires));
    out.insert("network_ip".into(), json!(binding.source_ip));
    out.insert("network_port".into(), json!(binding.source_port));
    out.insert("realm".into(), json!(binding.realm));
    out.insert("registered_at".into(), json!(binding.registered_at));
    out.insert("transport".into(), json!(binding.transport));
    out.insert("user_agent".into(), json!(binding.user_agent));
    out.insert("username".into(), json!(binding.username));
    Value::Object(out)
}

/// `GET /v2/accounts/{ACCOUNT_ID}/registrations`: the account's live
/// registrations, by username then contact, with Crossbar's paging and
/// filters (Kazoo answers them all at once; `paginate=false` does here).
pub(crate) async fn registrations(
    State(state): State<Arc<AppState>>,
    Authed(account): Authed,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Success, ApiError> {
    let live = state.live()?;
    let listing = Listing::parse(&params, state.config.page_size)?;
    let flows = state
        .account(&account)
        .ok_or_else(|| ApiError::BadIdentifier(account.to_string()))?;
    let mut bindings = live.sip.registrations(Some(account.as_str()));
    bindings.sort_by(|a, b| (&a.username, &a.contact).cmp(&(&b.username, &b.contact)));
    let shown = bindings
        .into_iter()
        .map(|binding| {
            let key = (binding.username.clone(), binding.contact.clone());
            (key, registration(&binding, &flows))
        })
        .filter(|(_, doc)| listing.passes(doc));
    listing.answer(
        shown,
        |(key, _)| key.clone(),
        Order::Ascending,
        |(_, doc)| doc,
    )
}

/// A call's place in the listing: its start (nanoseconds since the epoch;
/// an unreadable start sorts as the oldest) and its id.
fn call_key(call: &CallSummary) -> (i128, String) {
    let start = call
        .start
        .parse::<jiff::Timestamp>()
        .map_or(i128::MIN, jiff::Timestamp::as_nanosecond);
    (start, call.call_id.clone())
}

/// A call as the listing shows it.
fn call_summary(call: &CallSummary) -> Value {
    json!({
        "call_id": call.call_id,
        "from": call.from,
        "to": call.to,
        "callflow_id": call.callflow_id,
        "start": call.start,
        "duration_ms": call.duration_ms,
        "hangup_cause": call.hangup_cause,
        "end": call.end,
    })
}

/// `GET /v2/accounts/{ACCOUNT_ID}/calls`: the account's recent real calls
/// (the last [`crate::live::calls::INDEXED_PER_ACCOUNT`]), newest first,
/// with Crossbar's paging and filters.
pub(crate) async fn calls(
    State(state): State<Arc<AppState>>,
    Authed(account): Authed,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Success, ApiError> {
    let live = state.live()?;
    let listing = Listing::parse(&params, state.config.page_size)?;
    // The index is in the order calls ended; the listing is by start.
    let mut calls: Vec<((i128, String), Value)> = live
        .calls
        .list(account.as_str())
        .iter()
        .map(|call| (call_key(call), call_summary(call)))
        .filter(|(_, shown)| listing.passes(shown))
        .collect();
    calls.sort_by(|(a, _), (b, _)| Reverse(a).cmp(&Reverse(b)));
    listing.answer(
        calls,
        |(key, _)| key.clone(),
        Order::Descending,
        |(_, shown)| shown,
    )
}

/// `GET /v2/accounts/{ACCOUNT_ID}/calls/{CALL_ID}`: one call with its whole
/// trace document. An id that cannot be a call's never reaches the disk.
pub(crate) async fn call(
    State(state): State<Arc<AppState>>,
    Authed(account): Authed,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<Success, ApiError> {
    let calls = Arc::clone(&state.live()?.calls);
    let requested = params.get("call_id").map_or("", String::as_str);
    let id = DocId::new(requested).map_err(|_| ApiError::BadIdentifier(requested.to_owned()))?;
    let read = tokio::task::spawn_blocking(move || calls.read(account.as_str(), id.as_str()))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    match read {
        Some(Ok(document)) => Ok(Success::ok(document)),
        Some(Err(why)) => Err(ApiError::Internal(format!("the trace of a call: {why}"))),
        None => Err(ApiError::BadIdentifier(requested.to_owned())),
    }
}

/// A running call as `GET .../channels` shows it: Kazoo's channel fields
/// where they mean the same (`uuid`, `destination`, `answered`,
/// `authorizing_id`), and ours (`state`, `ringing`, `answered_by`, `slot`,
/// `since`): what `call:channels()` gives a module.
fn channel(channel: &crate::engine::control::Channel) -> Value {
    let mut out = Map::new();
    out.insert("uuid".into(), json!(channel.call_id));
    out.insert("call_id".into(), json!(channel.call_id));
    out.insert("from".into(), json!(channel.from));
    out.insert("destination".into(), json!(channel.to));
    out.insert("to".into(), json!(channel.to));
    out.insert("state".into(), json!(channel.state));
    out.insert("answered".into(), json!(channel.answered_by.is_some()));
    if let Some(device) = &channel.calling_device {
        out.insert("authorizing_id".into(), json!(device));
        out.insert("authorizing_type".into(), json!("device"));
    }
    if !channel.ringing.is_empty() {
        out.insert("ringing".into(), json!(channel.ringing));
    }
    if let Some(by) = &channel.answered_by {
        out.insert("answered_by".into(), json!(by));
    }
    if let Some(slot) = &channel.slot {
        out.insert("slot".into(), json!(slot));
    }
    if let Some(since) = channel.since {
        out.insert("since".into(), json!(since));
    }
    Value::Object(out)
}

/// `GET /v2/accounts/{ACCOUNT_ID}/channels`: the account's calls running
/// now, in the order they began, with Crossbar's paging and filters.
pub(crate) async fn channels(
    State(state): State<Arc<AppState>>,
    Authed(account): Authed,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Success, ApiError> {
    let live = state.live()?;
    let listing = Listing::parse(&params, state.config.page_size)?;
    let shown = live
        .world
        .channels(account.as_str(), None)
        .iter()
        .enumerate()
        .map(|(order, running)| (order, channel(running)))
        .filter(|(_, doc)| listing.passes(doc))
        .collect::<Vec<_>>();
    listing.answer(shown, |(order, _)| *order, Order::Ascending, |(_, doc)| doc)
}
