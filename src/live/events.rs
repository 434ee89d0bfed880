//! The live event bus: what real calls tell the world as they run, for
//! webhooks ([`super::hooks`]) and the API's WebSocket. Each call publishes
//! `channel_create` when it arrives, `channel_answer` when it is answered,
//! a `callflow` event for each node its flow runs and `channel_destroy`
//! when it ends, each with Kazoo's webhook fields.
//!
//! The bus is a `tokio::sync::broadcast` channel: publishing never blocks
//! nor waits on a consumer (a consumer that falls behind loses the oldest
//! events and is told how many). The engine knows nothing of it: the
//! worker gives each call's trace an [`Observer`] that turns the trace's
//! `answer` and `node` events into bus events with a non-blocking send.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::ids::AccountId;
use crate::trace::{Event, Observer};

/// Events the bus holds for its slowest consumer; past it, that consumer
/// loses the oldest.
pub const BUS_CAPACITY: usize = 1024;

/// Seconds from year 0 (Gregorian) to the Unix epoch: Kazoo's timestamps
/// are Gregorian seconds.
pub const GREGORIAN_UNIX_OFFSET: i64 = 62_167_219_200;

/// The bus real calls publish on.
pub type Bus = broadcast::Sender<Arc<CallEvent>>;

/// A new bus with no consumer yet.
pub fn bus() -> Bus {
    broadcast::channel(BUS_CAPACITY).0
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ChannelCreate,
    ChannelAnswer,
    ChannelDestroy,
    /// A node of the call's flow started.
    Callflow,
}

impl Kind {
    /// The name webhooks' `hook` field and payload's `hook_event` use.
    pub fn hook(self) -> &'static str {
        match self {
            Kind::ChannelCreate => "channel_create",
            Kind::ChannelAnswer => "channel_answer",
            Kind::ChannelDestroy => "channel_destroy",
            Kind::Callflow => "callflow",
        }
    }

    /// The event's name on the WebSocket (Kazoo's call event names).
    pub fn name(self) -> &'static str {
        match self {
            Kind::ChannelCreate => "CHANNEL_CREATE",
            Kind::ChannelAnswer => "CHANNEL_ANSWER",
            Kind::ChannelDestroy => "CHANNEL_DESTROY",
            Kind::Callflow => "CALLFLOW",
        }
    }

    /// The routing key WebSocket bindings match: `call.CHANNEL_CREATE.<call
    /// id>` as Kazoo's call events, `callflow.<call id>` for nodes.
    pub fn routing_key(self, call_id: &str) -> String {
        match self {
            Kind::Callflow => format!("callflow.{call_id}"),
            _ => format!("call.{}.{call_id}", self.name()),
        }
    }
}

/// One event of one call, as published.
#[derive(Debug, Clone, PartialEq)]
pub struct CallEvent {
    pub kind: Kind,
    pub account: AccountId,
    pub call_id: String,
    /// Kazoo's webhook payload (without a hook's `custom_data`).
    pub data: Map<String, Value>,
}

/// The facts of a call every event carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    pub account: AccountId,
    pub call_id: String,
    /// `onnet` (a device called) or `offnet` (a trunk).
    pub inception: String,
    pub caller_id_name: String,
    pub caller_id_number: String,
    /// The number dialled.
    pub to: String,
    /// The calling device, when a device called.
    pub authorizing_id: Option<String>,
}

/// Kazoo's webhook payload of `kind` for `channel` at `at`, with the
/// event's own fields (`extra`) last.
pub fn payload(
    kind: Kind,
    channel: &Channel,
    at: jiff::Timestamp,
    extra: Map<String, Value>,
) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("account_id".into(), json!(channel.account.as_str()));
    if let Some(device) = &channel.authorizing_id {
        data.insert("authorizing_id".into(), json!(device));
        data.insert("authorizing_type".into(), json!("device"));
    }
    // Every call the server runs came to it: Kazoo's `inbound` leg.
    data.insert("call_direction".into(), json!("inbound"));
    data.insert("call_id".into(), json!(channel.call_id));
    data.insert("callee_id_name".into(), json!(channel.to));
    data.insert("callee_id_number".into(), json!(channel.to));
    data.insert("caller_id_name".into(), json!(channel.caller_id_name));
    data.insert("caller_id_number".into(), json!(channel.caller_id_number));
    data.insert("from".into(), json!(channel.caller_id_number));
    data.insert("hook_event".into(), json!(kind.hook()));
    data.insert("inception".into(), json!(channel.inception));
    data.insert("request".into(), json!(channel.to));
    data.insert(
        "timestamp".into(),
        json!(at.as_second() + GREGORIAN_UNIX_OFFSET),
    );
    data.insert("to".into(), json!(channel.to));
    data.extend(extra);
    data
}

/// What a call publishes its events with.
#[derive(Debug, Clone)]
pub struct Publisher {
    bus: Bus,
    channel: Arc<Channel>,
}

impl Publisher {
    pub fn new(bus: Bus, channel: Channel) -> Self {
        Self {
            bus,
            channel: Arc::new(channel),
        }
    }

    /// Publishes `kind` now; never waits (no consumer is no error).
    pub fn publish(&self, kind: Kind, extra: Map<String, Value>) {
        if self.bus.receiver_count() == 0 {
            return;
        }
        let event = CallEvent {
            kind,
            account: self.channel.account.clone(),
            call_id: self.channel.call_id.clone(),
            data: payload(kind, &self.channel, jiff::Timestamp::now(), extra),
        };
        let _ = self.bus.send(Arc::new(event));
    }

    /// The `channel_destroy` of a call that ended with `cause` after
    /// `duration_ms` (answered for `talk_ms` of it).
    pub fn destroyed(&self, cause: &str, duration_ms: u64, talk_ms: Option<u64>) {
        let mut extra = Map::new();
        extra.insert("hangup_cause".into(), json!(cause));
        extra.insert("duration_seconds".into(), json!(duration_ms / 1000));
        extra.insert(
            "billing_seconds".into(),
            json!(talk_ms.map_or(0, |ms| ms.div_ceil(1000))),
        );
        self.publish(Kind::ChannelDestroy, extra);
    }

    /// The observer a call's trace is given: `answer` is `channel_answer`,
    /// each `node` a `callflow` event (its callflow, JSON Pointer and
    /// module).
    pub fn observer(&self) -> Observer {
        let publisher = self.clone();
        Observer::new(move |event: &Event| match event.name.as_str() {
            "answer" => publisher.publish(Kind::ChannelAnswer, Map::new()),
            "node" => {
                let mut extra = Map::new();
                for key in ["callflow_id", "path", "module"] {
                    if let Some(value) = event.fields.get(key) {
                        extra.insert(key.to_owned(), value.clone());
                    }
                }
                publisher.publish(Kind::Callflow, extra);
            }
            _ => {}
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Trace;

    fn channel() -> Channel {
        Channel {
            account: AccountId::new("acme").unwrap(),
            call_id: "c1".into(),
            inception: "onnet".into(),
            caller_id_name: "Alice".into(),
            caller_id_number: "1001".into(),
            to: "2001".into(),
            authorizing_id: Some("desk".into()),
        }
    }

    #[test]
    fn the_payload_has_kazoos_fields() {
        let at = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        let mut extra = Map::new();
        extra.insert("hangup_cause".into(), json!("NORMAL_CLEARING"));
        let data = payload(Kind::ChannelDestroy, &channel(), at, extra);
        assert_eq!(data["account_id"], "acme");
        assert_eq!(data["call_id"], "c1");
        assert_eq!(data["call_direction"], "inbound");
        assert_eq!(data["caller_id_name"], "Alice");
        assert_eq!(data["caller_id_number"], "1001");
        assert_eq!(data["callee_id_number"], "2001");
        assert_eq!(data["to"], "2001");
        assert_eq!(data["authorizing_id"], "desk");
        assert_eq!(data["hook_event"], "channel_destroy");
        assert_eq!(data["hangup_cause"], "NORMAL_CLEARING");
        assert_eq!(data["timestamp"], 1_700_000_000 + GREGORIAN_UNIX_OFFSET);
    }

    #[test]
    fn a_trace_observer_publishes_answers_and_nodes() {
        let bus = bus();
        let mut events = bus.subscribe();
        let publisher = Publisher::new(bus, channel());
        let mut trace = Trace::with_max_events(1);
        trace.observe(publisher.observer());
        trace.push(Event::new(0, "answer"));
        trace.push(Event::new(1, "play"));
        // Past the trace's cap: the bus still hears it.
        trace.push(
            Event::new(2, "node")
                .with("callflow_id", "main")
                .with("path", "/flow")
                .with("module", "play"),
        );
        publisher.destroyed("NORMAL_CLEARING", 2500, Some(1200));
        let answer = events.try_recv().unwrap();
        assert_eq!(answer.kind, Kind::ChannelAnswer);
        let node = events.try_recv().unwrap();
        assert_eq!(node.kind, Kind::Callflow);
        assert_eq!(node.data["module"], "play");
        assert_eq!(node.data["callflow_id"], "main");
        let end = events.try_recv().unwrap();
        assert_eq!(end.data["duration_seconds"], 2);
        assert_eq!(end.data["billing_seconds"], 2);
        assert!(events.try_recv().is_err());
    }

    #[test]
    fn routing_keys_follow_kazoos_call_events() {
        assert_eq!(
            Kind::ChannelCreate.routing_key("abc"),
            "call.CHANNEL_CREATE.abc"
        );
        assert_eq!(Kind::Callflow.routing_key("abc"), "callflow.abc");
    }
}
