//! Metaflows at run time: the call's bindings, the listener that runs beside
//! every verb ([`Listening`]), and Kazoo's `konami_code_exe` rules for
//! running a metaflow tree.
//!
//! * The caller's binding is built when the walk starts: the account's
//!   `metaflows`, the calling device's, its owner's, then the routed
//!   callflow's own `metaflow` (Kazoo ignores that last layer; we honour
//!   it). Without a calling device Kazoo starts no binding; here the
//!   callflow's layer alone (over the account's) still makes one.
//! * The peer's binding is built when a bridge answers, from the answering
//!   device (account, device, owner), and dropped when the bridge ends.
//! * A fired machine is recorded as a `metaflow` event. The matched top
//!   node gets `dtmf_leg` (the pressing leg's call id) and, for a pattern,
//!   `collected` and `captures` in its data; its children get their own
//!   data only. A module's result: nil (`continue`) goes to the child `_`,
//!   a key to that child (falling back to `_`), `call:stop()` ends the
//!   metaflow; `call:branch`, `call:replace_flow`, `call:transfer` and
//!   `call:usurp` take the call elsewhere (the walk takes them once the node
//!   running returns). An unknown module is recorded and ends the metaflow;
//!   a failing one is recorded as an `error` and ends it.
//! * One metaflow runs at a time: while one runs, digits still reach the
//!   machines, but a machine whose timeout runs out fires once it is over.

use std::rc::Rc;

use serde_json::{Value, json};

use super::control::{Beside, BridgeEndpoint, Leg, LocalFuture, Resume};
use super::{Call, ModuleRunner, Next, record_error};
use crate::metaflow::{Binding, Fired, Match};
use crate::model::diagnostic::pointer_push;
use crate::model::{Callflow, ModuleNode, Node, Object};

/// Builds the caller's binding for a walk starting at `callflow`.
pub fn start(call: &Call, callflow: &Callflow) {
    let account = call.account.account.metaflows.as_ref();
    let device = call.facts.calling_device.as_ref().and_then(|id| {
        call.documents()
            .get("devices", id.as_str())
            .map(|doc| (id.to_string(), doc))
    });
    let binding = match &device {
        Some((id, doc)) => {
            let owner = owner_of(call, doc);
            let mut layers: Vec<&Object> = Vec::new();
            layers.extend(account);
            layers.extend(metaflows_of(doc));
            layers.extend(owner.as_deref().and_then(metaflows_of));
            layers.extend(callflow.metaflow.as_ref());
            Binding::build(&layers, account, id, Leg::A)
        }
        None => callflow.metaflow.as_ref().and_then(|own| {
            let mut layers: Vec<&Object> = Vec::new();
            layers.extend(account);
            layers.push(own);
            Binding::build(&layers, account, "callflow", Leg::A)
        }),
    };
    call.with_listener(|listener| listener.set_caller(binding));
}

/// The binding of the device that answered a bridge.
fn peer_binding(call: &Call, endpoint: &BridgeEndpoint) -> Option<Binding> {
    if endpoint.offnet {
        return None;
    }
    let doc = call.documents().get("devices", &endpoint.id)?;
    let account = call.account.account.metaflows.as_ref();
    let owner = owner_of(call, &doc);
    let mut layers: Vec<&Object> = Vec::new();
    layers.extend(account);
    layers.extend(metaflows_of(&doc));
    layers.extend(owner.as_deref().and_then(metaflows_of));
    Binding::build(&layers, account, &endpoint.id, Leg::B)
}

fn metaflows_of(doc: &Object) -> Option<&Object> {
    doc.get("metaflows").and_then(Value::as_object)
}

/// The user document owning a device.
fn owner_of(call: &Call, device: &Object) -> Option<std::sync::Arc<Object>> {
    let owner = device.get("owner_id")?.as_str()?;
    call.documents().get("users", owner)
}

/// The listener beside a verb of `call`, running metaflows through `runner`.
pub struct Listening<'a> {
    call: &'a Rc<Call>,
    runner: &'a dyn ModuleRunner,
}

impl<'a> Listening<'a> {
    pub fn new(call: &'a Rc<Call>, runner: &'a dyn ModuleRunner) -> Self {
        Self { call, runner }
    }
}

impl Beside for Listening<'_> {
    fn deadline(&self) -> Option<u64> {
        if self.call.in_metaflow() || self.call.is_closed() {
            return None;
        }
        self.call.with_listener(|listener| listener.deadline())
    }

    fn dtmf(&self, t_ms: u64, leg: Leg, digit: char) {
        self.call
            .with_listener(|listener| listener.dtmf(t_ms, leg, digit));
    }

    fn bridged(&self, peer: Option<&BridgeEndpoint>) {
        let binding = peer.and_then(|endpoint| peer_binding(self.call, endpoint));
        self.call
            .with_listener(|listener| listener.set_peer(binding));
    }

    fn fire(&self) -> LocalFuture<'_, Resume> {
        Box::pin(fire(self.call, self.runner))
    }

    fn refer<'a>(&'a self, leg: Leg, target: &'a str) -> LocalFuture<'a, Resume> {
        Box::pin(refer(self.call, self.runner, leg, target))
    }
}

/// A phone's blind transfer (SIP REFER): the `transfer` metaflow, blind,
/// to `target`, as if `leg` had pressed it; recorded as a `metaflow`
/// event with `binding` `refer`.
async fn refer(call: &Rc<Call>, runner: &dyn ModuleRunner, leg: Leg, target: &str) -> Resume {
    if call.in_metaflow() || call.is_gone() || call.has_takeover() {
        return Resume::Continue;
    }
    call.record(
        call.event("metaflow")
            .with("leg", leg.as_str())
            .with("binding", "refer")
            .with("collected", target)
            .with("match", "refer")
            .with("module", "transfer"),
    );
    let mut data = Object::new();
    data.insert("target".into(), json!(target));
    data.insert("transfer_type".into(), json!("blind"));
    data.insert("dtmf_leg".into(), json!(leg_call_id(call, leg)));
    let node = ModuleNode {
        module: "transfer".to_owned(),
        data,
        children: Vec::new(),
        extra: Object::new(),
    };
    call.set_in_metaflow(true);
    run_tree(call, runner, node).await;
    call.set_in_metaflow(false);
    if call.is_gone() || call.has_takeover() {
        Resume::Stop
    } else {
        Resume::Continue
    }
}

/// Runs every machine due now, one after the other; says how the verb they
/// interrupted goes on.
async fn fire(call: &Rc<Call>, runner: &dyn ModuleRunner) -> Resume {
    if call.in_metaflow() {
        return Resume::Continue;
    }
    loop {
        if call.is_gone() || call.has_takeover() {
            return Resume::Stop;
        }
        let now = call.now_ms();
        let Some(fired) = call.with_listener(|listener| listener.due(now)) else {
            break;
        };
        record_fired(call, &fired);
        if let Some(matched) = &fired.matched {
            call.set_in_metaflow(true);
            run(call, runner, &fired, matched).await;
            call.set_in_metaflow(false);
        }
    }
    if call.take_break_media() {
        Resume::Break
    } else {
        Resume::Continue
    }
}

fn record_fired(call: &Call, fired: &Fired) {
    let mut event = call
        .event("metaflow")
        .with("leg", fired.leg.as_str())
        .with("binding", fired.binding.as_str())
        .with("collected", fired.collected.as_str());
    match &fired.matched {
        Some(m) => {
            event = event
                .with("match", m.kind.as_str())
                .with("key", m.key.as_str());
            if m.kind == crate::metaflow::MatchKind::Pattern {
                event = event.with("captures", json!(m.captures));
            }
            let module = m.node.as_module().map_or("", |node| node.module.as_str());
            event = event.with("module", module);
        }
        None => event = event.with("match", "none"),
    }
    call.record(event);
}

/// The call id of a leg, as `dtmf_leg` gives it.
fn leg_call_id(call: &Call, leg: Leg) -> String {
    match leg {
        Leg::A => call.facts.call_id.clone(),
        Leg::B => call
            .peer()
            .map_or_else(|| format!("{}-b", call.facts.call_id), |peer| peer.call_id),
    }
}

/// Runs a matched metaflow tree (Kazoo's `konami_code_exe:handle/2`).
async fn run(call: &Rc<Call>, runner: &dyn ModuleRunner, fired: &Fired, matched: &Match) {
    let Some(top) = matched.node.as_module() else {
        return;
    };
    let mut node = top.clone();
    node.data
        .insert("dtmf_leg".into(), json!(leg_call_id(call, fired.leg)));
    if matched.kind == crate::metaflow::MatchKind::Pattern {
        node.data.insert("collected".into(), json!(fired.collected));
        node.data.insert("captures".into(), json!(matched.captures));
    }
    run_tree(call, runner, node).await;
}

/// Runs a metaflow tree from its top node (its data complete).
async fn run_tree(call: &Rc<Call>, runner: &dyn ModuleRunner, mut node: ModuleNode) {
    let mut path = String::new();
    loop {
        if !path.is_empty() {
            call.record(
                call.event("metaflow_node")
                    .with("path", path.as_str())
                    .with("module", node.module.as_str()),
            );
        }
        if !runner.provides_metaflow(&node.module) {
            call.record(
                call.event("skip")
                    .with("module", node.module.as_str())
                    .with("reason", "unknown_metaflow"),
            );
            return;
        }
        let next = match runner.invoke_metaflow(call, &node).await {
            Ok(next) => next,
            Err(err) => {
                record_error(call, &err);
                return;
            }
        };
        if call.is_gone() {
            return;
        }
        let key = match next {
            Next::Continue(key) => key,
            Next::Stop(_) => return,
            elsewhere @ (Next::Branch(_) | Next::Replace(_) | Next::Transfer | Next::Usurp(_)) => {
                call.set_takeover(elsewhere);
                return;
            }
        };
        let Some((key, child)) = child_of(&node, &key) else {
            return;
        };
        path = pointer_push(&pointer_push(&path, "children"), &key);
        node = child;
    }
}

/// The child for `key`, falling back to `_`; `None` when there is neither
/// (or it is `{}`).
fn child_of(node: &ModuleNode, key: &str) -> Option<(String, ModuleNode)> {
    let (key, child) = match node.child(key) {
        Some(child) => (key, child),
        None => ("_", node.child("_")?),
    };
    match child {
        Node::Module(module) => Some((key.to_owned(), module.clone())),
        Node::Empty => None,
    }
}
