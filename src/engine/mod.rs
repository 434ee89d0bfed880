//! The executor: runs a callflow's action tree with Kazoo's `cf_exe`
//! semantics (`kazoo-callflows.md` §2).
//!
//! * A module's result is a child key: `continue(key)` goes to
//!   `children[key]`, falls back to `_` for any missing key, and stops when
//!   `_` is missing. An empty node `{}` stops.
//! * `branch` enters another flow and pushes the branching node's `_` child
//!   (when it has a non-empty one) on a return stack; `stop` pops that stack
//!   (a return from a sub-flow) or, when it is empty, ends the call.
//! * At most [`Limits::max_branches`] branches per call; the next one ends the
//!   call (`branch_limit`).
//! * `data.skip_module: true` and modules nobody provides skip to `_`.
//! * `transfer` and `usurp` end the walk without a hang-up.
//! * A module that fails (script error, limit, bad return value) is recorded
//!   as an `error` event and the call continues with `_`, as Kazoo does for a
//!   crashed module.
//!
//! * A metaflow that takes the call elsewhere (a new flow, a transfer) is a
//!   *takeover*: the node running is abandoned (its verbs fail) and the walk
//!   goes where the metaflow said, with an empty return stack
//!   ([`metaflows`]).
//!
//! The engine knows nothing of Lua or of the outside world: modules run
//! through [`ModuleRunner`] (the module host), verbs through
//! [`control::CallControl`] (the simulator, later a media server).

pub mod call;
pub mod control;
pub mod documents;
pub mod metaflows;
pub mod rules;

use std::rc::Rc;
use std::sync::Arc;

use serde_json::json;

pub use call::{
    Call, CallFacts, CallerIdChanges, MAX_ON_END, OnEnd, OverBudget, RouteFacts, UPDATE_TRIES,
    UpdateError,
};
pub use control::{CallControl, Gone, Hangup, HungUpBy, LocalFuture};
pub use documents::{DocumentStore, Documents, MemoryStore, Overlay, Revision, Swap};
pub use metaflows::Listening;

use crate::limits::Limits;
use crate::model::diagnostic::pointer_push;
use crate::model::{Callflow, ModuleNode, Node};

/// What a module asks the executor to do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Go to this child (falling back to `_`).
    Continue(String),
    /// Enter another flow.
    Branch(BranchTarget),
    /// Return from the current sub-flow, or end the call (with this hang-up
    /// cause, when given).
    Stop(Option<String>),
    /// The call was transferred: end without a hang-up.
    Transfer,
    /// Another application took the call (conference, fax): end without a
    /// hang-up.
    Usurp(String),
    /// Replace the current node with this flow (Kazoo's
    /// `continue_with_flow`, the pivot hand-off): the return stack and the
    /// branch count are untouched.
    Replace(Arc<Node>),
}

/// Where a branch goes.
#[derive(Debug, Clone, PartialEq)]
pub enum BranchTarget {
    /// Another callflow of the account.
    Callflow(Arc<Callflow>),
    /// A flow built by a module (pivot-style), run as if it were a callflow
    /// called `inline`.
    Flow(Arc<Node>),
}

/// Why a module failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleError {
    pub module: String,
    /// The script file the error comes from, when known.
    pub file: Option<String>,
    pub line: Option<u32>,
    pub message: String,
    /// The script frames (`file:line`) the error passed through, innermost
    /// first: the function that failed, the helpers and module that called
    /// it. Empty when unknown.
    pub stack: Vec<String>,
}

/// Runs modules: the module host implements it; engine tests use fakes.
pub trait ModuleRunner {
    /// Whether a module of this name exists.
    fn provides(&self, module: &str) -> bool;
    /// Runs `node`'s module on `call`.
    fn invoke<'a>(
        &'a self,
        call: &'a Rc<Call>,
        node: &'a ModuleNode,
    ) -> LocalFuture<'a, Result<Next, ModuleError>>;
    /// Runs the `on_end` handler a module registered, once `call` has ended.
    fn invoke_on_end<'a>(
        &'a self,
        call: &'a Rc<Call>,
        handler: &'a OnEnd,
    ) -> LocalFuture<'a, Result<(), ModuleError>>;
    /// Whether a metaflow module of this name exists (a namespace of its
    /// own: `node.module` names a metaflow module, not a callflow module).
    fn provides_metaflow(&self, module: &str) -> bool;
    /// Runs a metaflow node's module on `call`.
    fn invoke_metaflow<'a>(
        &'a self,
        call: &'a Rc<Call>,
        node: &'a ModuleNode,
    ) -> LocalFuture<'a, Result<Next, ModuleError>>;
    /// Takes a new call, or `None` when it can take no more (the call is
    /// then refused: [`EndReason::Overload`]); the call holds its place
    /// until the [`Admission`] is dropped.
    fn admit(&self) -> Option<Admission> {
        Some(Admission::free())
    }
}

/// A call's place on a runner (see [`ModuleRunner::admit`]).
pub struct Admission(Option<Box<dyn FnOnce()>>);

impl Admission {
    /// A place that costs nothing.
    pub fn free() -> Self {
        Self(None)
    }

    /// A place given back by `release` when the call is over.
    pub fn with_release(release: impl FnOnce() + 'static) -> Self {
        Self(Some(Box::new(release)))
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(release) = self.0.take() {
            release();
        }
    }
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// No node left to run: the system hung up.
    FlowEnd,
    CallerHangup,
    CalleeHangup,
    /// A module hung up (`hangup`, `response`).
    ModuleHangup,
    Transfer,
    Usurped,
    BranchLimit,
    /// The call lasted [`Limits::max_call_ms`].
    MaxDuration,
    /// No callflow matched the dialled number.
    NoRoute,
    /// The worker could take no more calls: refused before routing.
    Overload,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::FlowEnd => "flow_end",
            EndReason::CallerHangup => "caller_hangup",
            EndReason::CalleeHangup => "callee_hangup",
            EndReason::ModuleHangup => "module_hangup",
            EndReason::Transfer => "transfer",
            EndReason::Usurped => "usurped",
            EndReason::BranchLimit => "branch_limit",
            EndReason::MaxDuration => "max_duration",
            EndReason::NoRoute => "no_route",
            EndReason::Overload => "overload",
        }
    }
}

/// A place in a flow: the flow's root and the child keys leading to a node.
#[derive(Debug, Clone)]
struct Frame {
    root: Root,
    keys: Vec<String>,
}

#[derive(Debug, Clone)]
enum Root {
    Callflow(Arc<Callflow>),
    Inline(Arc<Node>),
}

impl Frame {
    fn new(root: Root) -> Self {
        Self {
            root,
            keys: Vec::new(),
        }
    }

    fn callflow_id(&self) -> &str {
        match &self.root {
            Root::Callflow(callflow) => callflow.id.as_str(),
            Root::Inline(_) => "inline",
        }
    }

    /// The node this frame points at; `None` for a callflow without `flow`.
    fn node(&self) -> Option<&Node> {
        let mut node = match &self.root {
            Root::Callflow(callflow) => callflow.flow.as_ref()?,
            Root::Inline(node) => node.as_ref(),
        };
        for key in &self.keys {
            node = node.as_module()?.child(key)?;
        }
        Some(node)
    }

    /// JSON Pointer of the node inside its document.
    fn pointer(&self) -> String {
        let mut pointer = "/flow".to_owned();
        for key in &self.keys {
            pointer = pointer_push(&pointer_push(&pointer, "children"), key);
        }
        pointer
    }

    fn child(&self, key: &str) -> Self {
        let mut keys = self.keys.clone();
        keys.push(key.to_owned());
        Self {
            root: self.root.clone(),
            keys,
        }
    }
}

/// Runs `callflow` on `call` until the call ends, then hangs it up if it is
/// still up, runs the `on_end` handlers modules registered, and records the
/// `end` event.
pub async fn run(
    call: &Rc<Call>,
    callflow: Arc<Callflow>,
    runner: &dyn ModuleRunner,
    limits: &Limits,
) -> EndReason {
    metaflows::start(call, &callflow);
    let reason = walk(call, Frame::new(Root::Callflow(callflow)), runner, limits).await;
    finish(call, reason, Some(runner)).await
}

/// Routes the dialled number in the call's account (recording the `route`
/// event), then runs the callflow it reaches, or ends the call unrouted:
/// what every call does, simulated or real.
pub async fn route_and_run(
    call: &Rc<Call>,
    dialled: &str,
    inception: crate::routing::Inception,
    runner: &dyn ModuleRunner,
    limits: &Limits,
) -> EndReason {
    call.set_memory_budget(limits.call_memory_bytes);
    let Some(_admitted) = runner.admit() else {
        // Refused before anything runs (SIP 503); the calls running go on.
        call.hangup("SWITCH_CONGESTION").await;
        return finish(call, EndReason::Overload, None).await;
    };
    let account = Arc::clone(&call.account);
    match account.routes.resolve(dialled, inception) {
        Ok(route) => {
            let mut event = crate::trace::Event::new(call.now_ms(), "route")
                .with("dialled", dialled)
                .with("number", route.number.as_str())
                .with("callflow_id", route.callflow_id.as_str())
                .with("matched", route.matched.as_str());
            if let Some(pattern) = &route.pattern {
                event = event.with("pattern", pattern.as_str());
            }
            if let Some(capture) = &route.capture_group {
                event = event.with("capture_group", capture.as_str());
            }
            call.record(event);
            call.set_route(RouteFacts {
                callflow_id: route.callflow_id.to_string(),
                number: route.number.clone(),
                capture_group: route.capture_group.clone(),
                capture_groups: route.capture_groups.clone(),
                no_match: route.no_match,
            });
            match account.callflows.get(&route.callflow_id) {
                Some(callflow) => run(call, Arc::clone(callflow), runner, limits).await,
                None => end_unrouted(call).await,
            }
        }
        Err(err) => {
            call.record(
                crate::trace::Event::new(call.now_ms(), "route")
                    .with("dialled", dialled)
                    .with("error", "not_found")
                    .with("message", err.to_string()),
            );
            end_unrouted(call).await
        }
    }
}

/// Ends a call that was never routed.
pub async fn end_unrouted(call: &Rc<Call>) -> EndReason {
    call.hangup("NO_ROUTE_DESTINATION").await;
    finish(call, EndReason::NoRoute, None).await
}

/// A walk that stopped with an empty return stack, with its hang-up cause.
struct Stopped(Option<String>);

async fn walk(
    call: &Rc<Call>,
    mut frame: Frame,
    runner: &dyn ModuleRunner,
    limits: &Limits,
) -> EndReason {
    let mut stack: Vec<Frame> = Vec::new();
    let mut branches_left = limits.max_branches;
    loop {
        if let Some(gone) = call.hangup_info() {
            return gone_reason(&gone);
        }
        let Some(Node::Module(node)) = frame.node() else {
            // An empty node, or a callflow without `flow`: stop.
            match stop(&mut frame, &mut stack, None) {
                Ok(()) => continue,
                Err(stopped) => return end_walk(call, stopped).await,
            }
        };
        call.set_callflow_id(frame.callflow_id());
        call.record(
            call.event("node")
                .with("callflow_id", frame.callflow_id())
                .with("path", frame.pointer())
                .with("module", node.module.as_str()),
        );
        let next = run_node(call, node, runner).await;
        // Kazoo: a destroyed channel ends the executor whatever the module said.
        if let Some(gone) = call.hangup_info() {
            return gone_reason(&gone);
        }
        // A metaflow took the call elsewhere while the node ran: whatever the
        // module said, the walk goes there, with nothing to return to.
        let (next, takeover) = match call.take_takeover() {
            Some(elsewhere) => {
                stack.clear();
                (elsewhere, true)
            }
            None => (next, false),
        };
        match next {
            Next::Continue(key) => {
                let target = if node.child(&key).is_some() {
                    Some(key)
                } else if key != "_" && node.child("_").is_some() {
                    Some("_".to_owned())
                } else {
                    None
                };
                match target {
                    Some(key) => frame = frame.child(&key),
                    None => {
                        if let Err(stopped) = stop(&mut frame, &mut stack, None) {
                            return end_walk(call, stopped).await;
                        }
                    }
                }
            }
            Next::Branch(target) => {
                if branches_left == 0 {
                    call.record(
                        call.event("branch_limit")
                            .with("max_branches", limits.max_branches),
                    );
                    call.hangup("NORMAL_CLEARING").await;
                    return EndReason::BranchLimit;
                }
                branches_left -= 1;
                if !takeover && matches!(node.child("_"), Some(Node::Module(_))) {
                    stack.push(frame.child("_"));
                }
                frame = match target {
                    BranchTarget::Callflow(callflow) => {
                        call.record(
                            call.event("branch")
                                .with("callflow_id", callflow.id.as_str()),
                        );
                        Frame::new(Root::Callflow(callflow))
                    }
                    BranchTarget::Flow(flow) => {
                        call.record(call.event("branch").with("callflow_id", "inline"));
                        Frame::new(Root::Inline(flow))
                    }
                };
            }
            Next::Stop(cause) => {
                if let Err(stopped) = stop(&mut frame, &mut stack, cause) {
                    return end_walk(call, stopped).await;
                }
            }
            Next::Replace(flow) => {
                call.record(
                    call.event("branch")
                        .with("callflow_id", "inline")
                        .with("replace", true),
                );
                frame = Frame::new(Root::Inline(flow));
            }
            Next::Transfer => return EndReason::Transfer,
            Next::Usurp(app) => {
                call.record(call.event("usurp").with("app", app));
                return EndReason::Usurped;
            }
        }
    }
}

/// Runs one node's module (or skips it) and says where to go next; a failed
/// module is recorded and continues with `_`.
async fn run_node(call: &Rc<Call>, node: &ModuleNode, runner: &dyn ModuleRunner) -> Next {
    if node.skips() {
        call.record(skip(call, node, "skip_module"));
        return Next::Continue("_".to_owned());
    }
    if !runner.provides(&node.module) {
        call.record(skip(call, node, "unknown_module"));
        return Next::Continue("_".to_owned());
    }
    call.enter_module(&node.module);
    match runner.invoke(call, node).await {
        Ok(next) => next,
        Err(err) => {
            record_error(call, &err);
            Next::Continue("_".to_owned())
        }
    }
}

/// Records a module failure as an `error` event.
fn record_error(call: &Call, err: &ModuleError) {
    let mut event = call.event("error").with("module", err.module.as_str());
    if let Some(file) = &err.file {
        event = event.with("file", file.as_str());
    }
    if let Some(line) = err.line {
        event = event.with("line", line);
    }
    event = event.with("message", err.message.as_str());
    if !err.stack.is_empty() {
        event = event.with("stack", err.stack.clone());
    }
    call.record(event);
}

fn skip(call: &Call, node: &ModuleNode, reason: &str) -> crate::trace::Event {
    call.event("skip")
        .with("module", node.module.as_str())
        .with("reason", reason)
}

/// Kazoo's `stop`: pop the return stack, or end the walk.
fn stop(frame: &mut Frame, stack: &mut Vec<Frame>, cause: Option<String>) -> Result<(), Stopped> {
    match stack.pop() {
        Some(resume) => {
            *frame = resume;
            Ok(())
        }
        None => Err(Stopped(cause)),
    }
}

async fn end_walk(call: &Rc<Call>, Stopped(cause): Stopped) -> EndReason {
    let cause = cause.unwrap_or_else(|| "NORMAL_CLEARING".to_owned());
    call.hangup(&cause).await;
    EndReason::FlowEnd
}

fn gone_reason(gone: &Hangup) -> EndReason {
    if gone.transferred {
        EndReason::Transfer
    } else if gone.timed_out {
        EndReason::MaxDuration
    } else {
        match gone.by {
            HungUpBy::Caller => EndReason::CallerHangup,
            HungUpBy::Callee => EndReason::CalleeHangup,
            HungUpBy::System => EndReason::ModuleHangup,
        }
    }
}

/// Hangs up a call still up after the walk (not for transfers and usurped
/// calls, which leave without one), runs the `on_end` handlers in the order
/// they were registered (a failing one is recorded and the next runs), and
/// records `end`.
async fn finish(
    call: &Rc<Call>,
    reason: EndReason,
    runner: Option<&dyn ModuleRunner>,
) -> EndReason {
    if !matches!(reason, EndReason::Transfer | EndReason::Usurped) && !call.is_gone() {
        call.hangup("NORMAL_CLEARING").await;
    }
    call.close();
    if let Some(runner) = runner {
        for handler in call.take_on_end() {
            call.record(call.event("on_end").with("module", handler.module.as_str()));
            if let Err(err) = runner.invoke_on_end(call, &handler).await {
                record_error(call, &err);
            }
        }
    }
    call.record(
        call.event("end")
            .with("reason", reason.as_str())
            .with("duration_ms", json!(call.now_ms())),
    );
    reason
}

#[cfg(test)]
mod tests {
    //! The executor with a Rust module runner: no Lua involved.

    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use super::*;
    use crate::catalog::{AccountSource, Catalog, KazooModules, SourceFile, Sources};
    use crate::ids::{AccountId, DocId};
    use crate::sim::{SimBackend, World, scenario::Media};
    use crate::trace::Trace;

    /// Modules whose result is fixed by name: `go_<key>` continues to
    /// `<key>`, `branch_<id>` branches to callflow `<id>`, `stop` stops,
    /// `fail` fails.
    struct Scripted;

    impl ModuleRunner for Scripted {
        fn provides(&self, module: &str) -> bool {
            module != "missing"
        }

        fn invoke<'a>(
            &'a self,
            call: &'a Rc<Call>,
            node: &'a ModuleNode,
        ) -> LocalFuture<'a, Result<Next, ModuleError>> {
            Box::pin(async move {
                let name = node.module.as_str();
                if let Some(key) = name.strip_prefix("go_") {
                    return Ok(Next::Continue(key.to_owned()));
                }
                if let Some(id) = name.strip_prefix("branch_") {
                    let target = Arc::clone(&call.account.callflows[id]);
                    return Ok(Next::Branch(BranchTarget::Callflow(target)));
                }
                if let Some(id) = name.strip_prefix("takeover_") {
                    // What a metaflow does in the middle of a verb.
                    let target = Arc::clone(&call.account.callflows[id]);
                    call.set_takeover(Next::Branch(BranchTarget::Callflow(target)));
                    assert!(
                        call.ring().await.is_err(),
                        "verbs fail until the walk takes it"
                    );
                    return Ok(Next::Continue("x".to_owned()));
                }
                match name {
                    "stop" => Ok(Next::Stop(Some("USER_BUSY".to_owned()))),
                    "fail" => Err(ModuleError {
                        module: name.to_owned(),
                        file: None,
                        line: None,
                        message: "failed".to_owned(),
                        stack: Vec::new(),
                    }),
                    "on_end" => {
                        call.add_on_end(name, serde_json::Map::new()).unwrap();
                        Ok(Next::Continue("_".to_owned()))
                    }
                    _ => Ok(Next::Continue("_".to_owned())),
                }
            })
        }

        fn invoke_on_end<'a>(
            &'a self,
            call: &'a Rc<Call>,
            handler: &'a OnEnd,
        ) -> LocalFuture<'a, Result<(), ModuleError>> {
            Box::pin(async move {
                // Verbs fail once the call has ended.
                assert!(call.ring().await.is_err());
                Err(ModuleError {
                    module: handler.module.clone(),
                    file: None,
                    line: None,
                    message: "ended".to_owned(),
                    stack: Vec::new(),
                })
            })
        }

        fn provides_metaflow(&self, _module: &str) -> bool {
            false
        }

        fn invoke_metaflow<'a>(
            &'a self,
            _call: &'a Rc<Call>,
            _node: &'a ModuleNode,
        ) -> LocalFuture<'a, Result<Next, ModuleError>> {
            Box::pin(async { Ok(Next::Stop(None)) })
        }
    }

    /// A call of an account `a` holding `callflows` `(id, text)`, its
    /// writes going to `store` (if any), and its trace.
    fn test_call(
        callflows: &[(&str, &str)],
        limits: Limits,
        store: Option<Arc<dyn DocumentStore>>,
    ) -> (Rc<Call>, Rc<RefCell<Trace>>) {
        let sources = Sources {
            accounts: vec![AccountSource {
                id: AccountId::new("a").unwrap(),
                account: None,
                callflows: callflows
                    .iter()
                    .map(|(id, text)| {
                        (
                            DocId::new(id).unwrap(),
                            SourceFile {
                                path: format!("{id}.json"),
                                text: (*text).to_owned(),
                            },
                        )
                    })
                    .collect(),
                documents: Vec::new(),
            }],
            diagnostics: Vec::new(),
        };
        let (catalog, _) = Catalog::build(sources, &KazooModules);
        let account = Arc::clone(catalog.single_account().unwrap());
        let trace = Rc::new(RefCell::new(Trace::new()));
        let world = Rc::new(World {
            call_id: "t".into(),
            endpoints: BTreeMap::new(),
            media: Media::default(),
            http: BTreeMap::new(),
            allow_network: false,
            allow_private_http: false,
            max_call_ms: limits.max_call_ms,
            max_dtmf_digits: limits.max_dtmf_digits,
            fax: false,
        });
        let backend = Rc::new(SimBackend::new(world, &[], Rc::clone(&trace)));
        let facts = CallFacts {
            call_id: "t".into(),
            to: "1".into(),
            from: "2".into(),
            caller_id_name: "x".into(),
            inception: crate::routing::Inception::Onnet,
            calling_device: None,
            start_epoch_ms: 0,
            seed: 1,
        };
        let docs = Rc::new(Overlay::new(Arc::clone(&account), store));
        let call = Rc::new(Call::new(facts, account, backend, docs, Rc::clone(&trace)));
        (call, trace)
    }

    /// A call of an empty account whose writes go to a new memory store.
    fn call_on_memory() -> (Arc<MemoryStore>, Rc<Call>, Rc<RefCell<Trace>>) {
        let store = Arc::new(MemoryStore::new(&Catalog::default()));
        let (call, trace) = test_call(&[], Limits::default(), Some(Arc::clone(&store) as _));
        (store, call, trace)
    }

    /// The voicemail box the update tests change.
    fn box_key() -> (AccountId, crate::ids::DocType, DocId) {
        (
            AccountId::new("a").unwrap(),
            crate::ids::DocType::new("vmboxes").unwrap(),
            DocId::new("box").unwrap(),
        )
    }

    fn messages(doc: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
        doc["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().to_owned())
            .collect()
    }

    /// Appends `message` to the `messages` of a document.
    fn with_message(
        doc: Option<&serde_json::Map<String, serde_json::Value>>,
        message: &str,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut doc = doc.cloned().unwrap_or_default();
        let list = doc
            .entry("messages")
            .or_insert_with(|| serde_json::json!([]));
        list.as_array_mut().unwrap().push(message.into());
        doc
    }

    #[test]
    fn a_conflicting_update_is_retried_on_the_new_document() {
        let (store, call, trace) = call_on_memory();
        let (account, vmboxes, id) = box_key();
        let mut seen = Vec::new();
        let saved = call
            .update_document(&vmboxes, &id, |now| {
                seen.push(now.as_deref().map(messages).unwrap_or_default());
                if seen.len() == 1 {
                    // Another call leaves its message between this read
                    // and this write.
                    let other = with_message(None, "other");
                    let written = store.save(&account, &vmboxes, &id, &other, None);
                    assert_eq!(written, Ok(Swap::Written));
                }
                Ok::<_, std::convert::Infallible>(Some(with_message(now.as_deref(), "mine")))
            })
            .unwrap()
            .unwrap();
        assert_eq!(seen, [Vec::<String>::new(), vec!["other".to_owned()]]);
        assert_eq!(messages(&saved), ["other", "mine"]);
        let stored = store.get("a", "vmboxes", "box").unwrap();
        assert_eq!(messages(&stored), ["other", "mine"]);
        assert_eq!(
            messages(&call.documents().get("vmboxes", "box").unwrap()),
            ["other", "mine"],
            "the call's own reads see what it saved"
        );
        let trace = trace.borrow();
        let store_event = trace.events().iter().find(|e| e.name == "store").unwrap();
        assert_eq!(store_event.fields["conflicts"], 1);
    }

    #[test]
    fn an_update_that_always_loses_gives_up_and_none_leaves_the_document() {
        let (store, call, trace) = call_on_memory();
        let (account, vmboxes, id) = box_key();
        let mut tries = 0;
        let lost = call.update_document(&vmboxes, &id, |now| {
            tries += 1;
            let other = with_message(now.as_deref(), "other");
            store.save(&account, &vmboxes, &id, &other, None).unwrap();
            Ok::<_, std::convert::Infallible>(Some(with_message(now.as_deref(), "mine")))
        });
        assert!(matches!(
            lost,
            Err(UpdateError::Busy {
                tries: UPDATE_TRIES
            })
        ));
        assert_eq!(tries, UPDATE_TRIES);
        let kept = call.update_document(&vmboxes, &id, |_| Ok::<_, std::convert::Infallible>(None));
        assert!(matches!(kept, Ok(None)));
        assert_eq!(
            messages(&store.get("a", "vmboxes", "box").unwrap()).len(),
            UPDATE_TRIES
        );
        assert!(trace.borrow().events().iter().all(|e| e.name != "store"));
    }

    fn run_with(callflows: &[(&str, &str)], limits: Limits) -> String {
        let (call, trace) = test_call(callflows, limits, None);
        let start = Arc::clone(&call.account.callflows["main"]);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(run(&call, start, &Scripted, &limits));
        let events = trace.borrow();
        events
            .events()
            .iter()
            .map(|e| match e.name.as_str() {
                "node" => format!(
                    "{}:{}",
                    e.fields["callflow_id"].as_str().unwrap(),
                    e.fields["path"].as_str().unwrap()
                ),
                "end" => format!("end:{}", e.fields["reason"].as_str().unwrap()),
                "on_end" | "error"
                    if e.fields.contains_key("module") && e.fields["module"] == "on_end" =>
                {
                    format!(
                        "{}:{}",
                        e.name,
                        e.fields
                            .get("message")
                            .and_then(|m| m.as_str())
                            .unwrap_or("on_end")
                    )
                }
                "hangup" => format!("hangup:{}", e.fields["cause"].as_str().unwrap()),
                other => other.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn fallback_stop_and_return() {
        let main = r#"{"numbers":["1"],"flow":{"module":"go_nope","children":{
            "_":{"module":"branch_sub","children":{"_":{"module":"go_x","children":{"x":{}}}}}}}}"#;
        let sub =
            r#"{"numbers":["2"],"flow":{"module":"fail","children":{"_":{"module":"stop"}}}}"#;
        assert_eq!(
            run_with(&[("main", main), ("sub", sub)], Limits::default()),
            "main:/flow main:/flow/children/_ branch sub:/flow error sub:/flow/children/_ \
             main:/flow/children/_/children/_ hangup:NORMAL_CLEARING end:flow_end"
        );
    }

    #[test]
    fn a_takeover_wins_over_the_module_and_leaves_nothing_to_return_to() {
        let main = r#"{"numbers":["1"],"flow":{"module":"takeover_sub","children":{
            "x":{"module":"go_x"},"_":{"module":"go_y"}}}}"#;
        let sub = r#"{"numbers":["2"],"flow":{"module":"stop"}}"#;
        assert_eq!(
            run_with(&[("main", main), ("sub", sub)], Limits::default()),
            "main:/flow branch sub:/flow hangup:USER_BUSY end:flow_end"
        );
    }

    #[test]
    fn stop_with_a_cause_and_no_return_stack_hangs_up_with_it() {
        let main =
            r#"{"numbers":["1"],"flow":{"module":"missing","children":{"_":{"module":"stop"}}}}"#;
        assert_eq!(
            run_with(&[("main", main)], Limits::default()),
            "main:/flow skip main:/flow/children/_ hangup:USER_BUSY end:flow_end"
        );
    }

    #[test]
    fn on_end_handlers_run_after_the_hangup_on_a_closed_call() {
        let main =
            r#"{"numbers":["1"],"flow":{"module":"on_end","children":{"_":{"module":"on_end"}}}}"#;
        assert_eq!(
            run_with(&[("main", main)], Limits::default()),
            "main:/flow main:/flow/children/_ hangup:NORMAL_CLEARING \
             on_end:on_end error:ended on_end:on_end error:ended end:flow_end"
        );
    }

    #[test]
    fn the_branch_limit_is_configurable() {
        let main = r#"{"numbers":["1"],"flow":{"module":"branch_main"}}"#;
        let limits = Limits {
            max_branches: 2,
            ..Limits::default()
        };
        assert_eq!(
            run_with(&[("main", main)], limits),
            "main:/flow branch main:/flow branch main:/flow branch_limit hangup:NORMAL_CLEARING end:branch_limit"
        );
    }
}
