//! One call as modules see it: read-only facts, mutable call state (route
//! facts, variables, caller id, language, DTMF collections, RNG), its trace,
//! and the verbs of [`CallControl`] wrapped so that each is recorded in the
//! trace with its arguments and outcome.
//!
//! A `Call` is shared (`Rc`) between the engine and the module host for the
//! life of the call; nothing in it is visible to another call.

use std::cell::{Cell, Ref, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::Next;
use super::control::{
    Beside, BridgeOutcome, BridgeRequest, CallControl, CollectOutcome, CollectRequest,
    ConsultOutcome, ConsultRequest, Gone, Hangup, HttpOutcome, HttpRequest, Leg, Legs, PeerInfo,
    PlayOutcome, PlayRequest, RecordOutcome, RecordRequest, SleepReason, SpeakRequest,
};
use super::documents::{Documents, Swap};
use crate::catalog::AccountFlows;
use crate::ids::DocId;
use crate::metaflow::Listener;
use crate::routing::Inception;
use crate::trace::{Event, Trace};

/// How many times [`Call::update_document`] tries before giving up.
pub const UPDATE_TRIES: usize = 10;

/// Why [`Call::update_document`] saved nothing.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError<E: std::error::Error + 'static> {
    /// The change itself failed.
    #[error(transparent)]
    Change(E),
    /// The store failed.
    #[error("{0}")]
    Store(String),
    /// Other writes won every try.
    #[error("the document kept changing meanwhile ({tries} tries)")]
    Busy { tries: usize },
}

/// Facts about a call that never change while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFacts {
    pub call_id: String,
    /// The dialled number, as received.
    pub to: String,
    /// The caller's number.
    pub from: String,
    pub caller_id_name: String,
    pub inception: Inception,
    /// The device the call comes from, when on-net.
    pub calling_device: Option<DocId>,
    /// Unix time (ms) at which the call started.
    pub start_epoch_ms: i64,
    /// Seed of the call's random numbers.
    pub seed: u64,
}

/// The route facts modules read; updated when a module branches to a route
/// it looked up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteFacts {
    /// The callflow currently running.
    pub callflow_id: String,
    /// The dialled number, normalized as routing saw it.
    pub number: String,
    pub capture_group: Option<String>,
    pub capture_groups: Vec<(String, String)>,
    /// Whether the call was routed by `no_match`.
    pub no_match: bool,
}

/// Caller id as modules changed it (Kazoo's `prepend_cid_*` and
/// `rewrite_cid_*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerIdChanges {
    pub prefix_name: String,
    pub prefix_number: String,
    pub rewrite_name: Option<String>,
    pub rewrite_number: Option<String>,
}

/// The state modules change.
#[derive(Debug)]
struct CallState {
    answered: bool,
    route: RouteFacts,
    variables: BTreeMap<String, Value>,
    caller_id: CallerIdChanges,
    language: Option<String>,
    collections: BTreeMap<String, String>,
    rng: fastrand::Rng,
    /// The walk is over: verbs fail as if the caller had hung up.
    ended: bool,
    on_end: Vec<OnEnd>,
    metaflows: MetaflowState,
    /// The module of the node running now and of the one that ran before.
    modules: (Option<String>, Option<String>),
    /// When the whole-call recording's time limit runs out.
    recording_until: Option<u64>,
}

/// The call's metaflows at run time.
#[derive(Debug, Default)]
struct MetaflowState {
    /// The listener (konami) of the call's bindings.
    listener: Listener,
    /// A metaflow is running: the listener waits until it is over.
    running: bool,
    /// Where a metaflow sent the call (a new flow, a transfer): the walk
    /// takes it once the node running returns; until then verbs fail.
    takeover: Option<Next>,
    /// A metaflow asked to stop the media playing to the caller.
    break_media: bool,
}

/// A module's `on_end` handler, registered with `call:on_end` to run once
/// the call has ended (Kazoo's termination handlers).
#[derive(Debug, Clone, PartialEq)]
pub struct OnEnd {
    pub module: String,
    pub data: Map<String, Value>,
}

/// At most this many `on_end` handlers per call.
pub const MAX_ON_END: usize = 16;

/// One call.
pub struct Call {
    pub facts: CallFacts,
    /// The account's documents, as they were when the call started.
    pub account: Arc<AccountFlows>,
    backend: Rc<dyn CallControl>,
    docs: Rc<dyn Documents>,
    trace: Rc<RefCell<Trace>>,
    state: RefCell<CallState>,
    /// What the module runner keeps for this call between invocations (the
    /// host: the facts table scripts read), opaque to the engine.
    runner_data: RefCell<Option<Rc<dyn std::any::Any>>>,
    /// About how many bytes the call keeps (its trace events, its
    /// variables), and how many it may keep.
    kept: Cell<usize>,
    memory_budget: Cell<usize>,
}

/// The call keeps as much as its memory budget allows: what a module asked
/// to keep more was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the call's memory budget of {budget} bytes is spent (it keeps {kept} bytes; this needs {asked} more)"
)]
pub struct OverBudget {
    pub budget: usize,
    pub kept: usize,
    pub asked: usize,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("facts", &self.facts)
            .finish_non_exhaustive()
    }
}

/// Fields of an outcome, for [`Trace::complete`].
fn fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

impl Call {
    pub fn new(
        facts: CallFacts,
        account: Arc<AccountFlows>,
        backend: Rc<dyn CallControl>,
        docs: Rc<dyn Documents>,
        trace: Rc<RefCell<Trace>>,
    ) -> Self {
        let rng = fastrand::Rng::with_seed(facts.seed);
        Self {
            facts,
            account,
            backend,
            docs,
            trace,
            state: RefCell::new(CallState {
                answered: false,
                route: RouteFacts::default(),
                variables: BTreeMap::new(),
                caller_id: CallerIdChanges::default(),
                language: None,
                collections: BTreeMap::new(),
                rng,
                ended: false,
                on_end: Vec::new(),
                metaflows: MetaflowState::default(),
                modules: (None, None),
                recording_until: None,
            }),
            runner_data: RefCell::new(None),
            kept: Cell::new(0),
            memory_budget: Cell::new(usize::MAX),
        }
    }

    /// Sets how many bytes the call may keep (its trace and variables);
    /// see [`Call::reserve`].
    pub fn set_memory_budget(&self, bytes: usize) {
        self.memory_budget.set(bytes);
    }

    /// About how many bytes the call keeps now.
    pub fn kept_bytes(&self) -> usize {
        self.kept.get()
    }

    /// Whether the call may keep `bytes` more: what a module adds to the
    /// call (log lines, events, variables) asks first, and fails when the
    /// budget is spent. The engine's own events are counted, never refused
    /// (their number is capped by the trace).
    pub fn reserve(&self, bytes: usize) -> Result<(), OverBudget> {
        let kept = self.kept.get();
        let budget = self.memory_budget.get();
        if kept.saturating_add(bytes) > budget {
            return Err(OverBudget {
                budget,
                kept,
                asked: bytes,
            });
        }
        Ok(())
    }

    /// What the module runner kept for this call, if any.
    pub fn runner_data(&self) -> Option<Rc<dyn std::any::Any>> {
        self.runner_data.borrow().clone()
    }

    /// Keeps `data` for the module runner until the call is dropped.
    pub fn set_runner_data(&self, data: Rc<dyn std::any::Any>) {
        *self.runner_data.borrow_mut() = Some(data);
    }

    /// Milliseconds of call time since the call started.
    pub fn now_ms(&self) -> u64 {
        self.backend.now_ms()
    }

    /// Unix time in milliseconds, from the call's clock.
    pub fn now_epoch_ms(&self) -> i64 {
        self.facts.start_epoch_ms + i64::try_from(self.now_ms()).unwrap_or(i64::MAX)
    }

    /// How the call ended, once it has.
    pub fn hangup_info(&self) -> Option<Hangup> {
        self.backend.hangup_info()
    }

    pub fn is_gone(&self) -> bool {
        self.backend.hangup_info().is_some()
    }

    /// The trace so far.
    pub fn trace(&self) -> Ref<'_, Trace> {
        self.trace.borrow()
    }

    /// Records an event at the current call time.
    pub fn record(&self, event: Event) {
        self.kept
            .set(self.kept.get().saturating_add(event.approx_bytes()));
        self.trace.borrow_mut().push(event);
    }

    /// An event stamped now.
    pub fn event(&self, name: &str) -> Event {
        Event::new(self.now_ms(), name)
    }

    fn alive(&self) -> Result<(), Gone> {
        let state = self.state.borrow();
        if state.ended || state.metaflows.takeover.is_some() || self.is_gone() {
            Err(Gone)
        } else {
            Ok(())
        }
    }

    // Metaflows: the listener, the one running, where it sent the call.

    /// Runs `f` on the call's metaflow listener.
    pub fn with_listener<T>(&self, f: impl FnOnce(&mut Listener) -> T) -> T {
        f(&mut self.state.borrow_mut().metaflows.listener)
    }

    pub fn in_metaflow(&self) -> bool {
        self.state.borrow().metaflows.running
    }

    pub fn set_in_metaflow(&self, running: bool) {
        self.state.borrow_mut().metaflows.running = running;
    }

    /// A metaflow sends the call elsewhere: the walk takes `next` once the
    /// node running returns; verbs fail until then.
    pub fn set_takeover(&self, next: Next) {
        self.state.borrow_mut().metaflows.takeover = Some(next);
    }

    pub fn has_takeover(&self) -> bool {
        self.state.borrow().metaflows.takeover.is_some()
    }

    pub fn take_takeover(&self) -> Option<Next> {
        self.state.borrow_mut().metaflows.takeover.take()
    }

    /// Asks the verb a metaflow interrupted to stop its media (konami's
    /// `break`).
    pub fn break_media(&self) {
        self.state.borrow_mut().metaflows.break_media = true;
    }

    pub fn take_break_media(&self) -> bool {
        std::mem::take(&mut self.state.borrow_mut().metaflows.break_media)
    }

    /// Whether the walk is over ([`Call::close`]).
    pub fn is_closed(&self) -> bool {
        self.state.borrow().ended
    }

    /// Ends the walk: from now on verbs fail as if the caller had hung up
    /// (`on_end` handlers run on a closed call).
    pub fn close(&self) {
        self.state.borrow_mut().ended = true;
    }

    /// Registers `module`'s `on_end` handler with `data`; an error once
    /// [`MAX_ON_END`] are registered or the call has ended.
    pub fn add_on_end(&self, module: &str, data: Map<String, Value>) -> Result<(), String> {
        let mut state = self.state.borrow_mut();
        if state.ended {
            return Err("the call has ended: on_end handlers cannot register more".to_owned());
        }
        if state.on_end.len() >= MAX_ON_END {
            return Err(format!("at most {MAX_ON_END} on_end handlers per call"));
        }
        state.on_end.push(OnEnd {
            module: module.to_owned(),
            data,
        });
        Ok(())
    }

    /// The registered `on_end` handlers, in registration order (emptied).
    pub fn take_on_end(&self) -> Vec<OnEnd> {
        std::mem::take(&mut self.state.borrow_mut().on_end)
    }

    // Route facts.

    pub fn route(&self) -> RouteFacts {
        self.state.borrow().route.clone()
    }

    /// `f` of the route facts, without copying them.
    pub fn with_route<R>(&self, f: impl FnOnce(&RouteFacts) -> R) -> R {
        f(&self.state.borrow().route)
    }

    pub fn set_route(&self, route: RouteFacts) {
        self.state.borrow_mut().route = route;
    }

    pub fn set_callflow_id(&self, id: &str) {
        id.clone_into(&mut self.state.borrow_mut().route.callflow_id);
    }

    // Variables, caller id, language, collections, randomness.

    pub fn variable(&self, name: &str) -> Option<Value> {
        self.state.borrow().variables.get(name).cloned()
    }

    /// Every call variable, by name.
    pub fn variables(&self) -> BTreeMap<String, Value> {
        self.state.borrow().variables.clone()
    }

    /// A node's module starts running (the walk's nodes, not metaflows or
    /// `on_end` handlers): the one running until now becomes the previous.
    pub fn enter_module(&self, module: &str) {
        let mut state = self.state.borrow_mut();
        let previous = state.modules.0.replace(module.to_owned());
        state.modules.1 = previous;
    }

    /// The module of the node that ran before the one running now (skipped
    /// nodes do not count); `None` for the first.
    pub fn previous_module(&self) -> Option<String> {
        self.state.borrow().modules.1.clone()
    }

    /// Sets (or with `Value::Null` removes) a call variable.
    pub fn set_variable(&self, name: &str, value: Value) {
        self.record(
            self.event("set")
                .with("name", name)
                .with("value", value.clone()),
        );
        self.kept.set(
            self.kept
                .get()
                .saturating_add(name.len() + crate::trace::approx_bytes(&value)),
        );
        let mut state = self.state.borrow_mut();
        if value.is_null() {
            state.variables.remove(name);
        } else {
            state.variables.insert(name.to_owned(), value);
        }
    }

    /// The caller id a bridge would present: Kazoo's prefixes on the
    /// original, replaced by rewrites where set.
    pub fn caller_id(&self) -> (String, String) {
        let state = self.state.borrow();
        let changes = &state.caller_id;
        let name = changes
            .rewrite_name
            .clone()
            .unwrap_or_else(|| format!("{}{}", changes.prefix_name, self.facts.caller_id_name));
        let number = changes
            .rewrite_number
            .clone()
            .unwrap_or_else(|| format!("{}{}", changes.prefix_number, self.facts.from));
        (name, number)
    }

    pub fn caller_id_changes(&self) -> CallerIdChanges {
        self.state.borrow().caller_id.clone()
    }

    /// Replaces the caller id changes (`set_cid`, `prepend_cid`) and records it.
    pub fn set_caller_id_changes(&self, changes: CallerIdChanges) {
        self.state.borrow_mut().caller_id = changes;
        let (name, number) = self.caller_id();
        self.record(
            self.event("set")
                .with("name", "caller_id")
                .with("value", json!({"name": name, "number": number})),
        );
    }

    pub fn language(&self) -> Option<String> {
        self.state.borrow().language.clone()
    }

    pub fn set_language(&self, language: &str) {
        self.record(
            self.event("set")
                .with("name", "language")
                .with("value", language),
        );
        self.state.borrow_mut().language = Some(language.to_owned());
    }

    /// Digits stored under a collection name by `collect`.
    pub fn collection(&self, name: &str) -> String {
        self.state
            .borrow()
            .collections
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// Runs `f` with the call's random number generator.
    pub fn with_rng<T>(&self, f: impl FnOnce(&mut fastrand::Rng) -> T) -> T {
        f(&mut self.state.borrow_mut().rng)
    }

    /// Drops buffered DTMF and, when named, a stored collection.
    pub fn flush_dtmf(&self, collection: Option<&str>) {
        self.backend.flush_dtmf();
        if let Some(name) = collection {
            self.state.borrow_mut().collections.remove(name);
        }
    }

    /// The account's documents as this call sees them (its own writes
    /// included).
    pub fn documents(&self) -> &dyn Documents {
        self.docs.as_ref()
    }

    /// Saves a document through the documents port and records it.
    pub fn save_document(
        &self,
        doc_type: &crate::ids::DocType,
        id: &DocId,
        body: Map<String, Value>,
    ) -> Result<(), String> {
        self.docs.put(doc_type, id, body)?;
        self.record(
            self.event("store")
                .with("doc_type", doc_type.as_str())
                .with("id", id.as_str()),
        );
        Ok(())
    }

    /// Changes a document atomically: reads it as stored now (other calls'
    /// writes included), gives it to `change` and writes what `change`
    /// returns only if the document did not change meanwhile; on a conflict
    /// it starts again, at most [`UPDATE_TRIES`] times. `change` returning
    /// `None` leaves the document as it is. Returns the document saved (or
    /// `None`); recorded as a `store` event (with `conflicts` when some
    /// tries lost a race).
    pub fn update_document<E: std::error::Error + 'static>(
        &self,
        doc_type: &crate::ids::DocType,
        id: &DocId,
        mut change: impl FnMut(Option<Arc<Map<String, Value>>>) -> Result<Option<Map<String, Value>>, E>,
    ) -> Result<Option<Map<String, Value>>, UpdateError<E>> {
        for conflicts in 0..UPDATE_TRIES {
            let (now, revision) = self
                .docs
                .current(doc_type, id)
                .map_err(UpdateError::Store)?;
            let Some(mut body) = change(now).map_err(UpdateError::Change)? else {
                return Ok(None);
            };
            body.remove("id");
            match self
                .docs
                .put_if(doc_type, id, revision, body.clone())
                .map_err(UpdateError::Store)?
            {
                Swap::Written => {
                    let mut event = self
                        .event("store")
                        .with("doc_type", doc_type.as_str())
                        .with("id", id.as_str());
                    if conflicts > 0 {
                        event = event.with("conflicts", conflicts);
                    }
                    self.record(event);
                    return Ok(Some(body));
                }
                Swap::Conflict => {}
            }
        }
        Err(UpdateError::Busy {
            tries: UPDATE_TRIES,
        })
    }

    // Verbs: each checks the call is alive, records its event, runs on the
    // backend and completes the event with the outcome.

    /// Answers the call; recorded the first time only. Returns whether it
    /// answered now (false when it already was).
    pub async fn answer(&self) -> Result<bool, Gone> {
        self.alive()?;
        if self.is_answered() {
            return Ok(false);
        }
        self.record(self.event("answer"));
        self.backend.answer().await?;
        self.state.borrow_mut().answered = true;
        Ok(true)
    }

    pub fn is_answered(&self) -> bool {
        self.state.borrow().answered
    }

    pub async fn ring(&self) -> Result<(), Gone> {
        self.alive()?;
        self.record(self.event("ring"));
        self.backend.ring().await
    }

    /// Hangs up the call (recorded by the backend as a `hangup` event).
    pub async fn hangup(&self, cause: &str) {
        self.backend.hangup(cause).await;
    }

    pub async fn transfer(&self, target: &str) -> Result<(), Gone> {
        self.alive()?;
        self.record(self.event("transfer").with("target", target));
        self.backend.transfer(target).await
    }

    pub async fn play(
        &self,
        request: &PlayRequest,
        beside: &dyn Beside,
    ) -> Result<PlayOutcome, Gone> {
        self.alive()?;
        let mut event = self.event("play").with("media", request.media.as_str());
        if request.loop_count != 1 {
            event = event.with("loop_count", request.loop_count);
        }
        if request.legs != Legs::A {
            event = event.with("leg", request.legs.as_str());
        }
        let pending = self.trace.borrow_mut().begin(event);
        let outcome = self.backend.play(request, beside).await?;
        self.trace
            .borrow_mut()
            .complete(pending, play_fields(&outcome));
        Ok(outcome)
    }

    /// `tts` or `say` (`name`), with the request's text and style.
    pub async fn speak(
        &self,
        name: &str,
        request: &SpeakRequest,
        beside: &dyn Beside,
    ) -> Result<PlayOutcome, Gone> {
        self.alive()?;
        let style_key = if name == "say" { "type" } else { "voice" };
        let mut event = self
            .event(name)
            .with("text", request.text.as_str())
            .with(style_key, request.style.as_str());
        if let Some(method) = &request.method {
            event = event.with("method", method.as_str());
        }
        if let Some(language) = &request.language {
            event = event.with("language", language.as_str());
        }
        if request.legs != Legs::A {
            event = event.with("leg", request.legs.as_str());
        }
        let pending = self.trace.borrow_mut().begin(event);
        let outcome = self.backend.speak(request, beside).await?;
        self.trace
            .borrow_mut()
            .complete(pending, play_fields(&outcome));
        Ok(outcome)
    }

    /// Collects digits; stores them under `collection` when given.
    pub async fn collect(
        &self,
        request: &CollectRequest,
        collection: Option<&str>,
        beside: &dyn Beside,
    ) -> Result<CollectOutcome, Gone> {
        self.alive()?;
        let mut event = self
            .event("collect")
            .with("max_digits", request.max_digits)
            .with("timeout_ms", request.timeout_ms);
        if let Some(prompt) = &request.prompt {
            event = event.with("prompt", prompt.as_str());
        }
        let pending = self.trace.borrow_mut().begin(event);
        let outcome = self.backend.collect(request, beside).await?;
        self.trace.borrow_mut().complete(
            pending,
            fields(json!({
                "digits": outcome.digits,
                "reason": outcome.reason,
                "duration_ms": outcome.duration_ms,
            })),
        );
        if let Some(name) = collection {
            self.state
                .borrow_mut()
                .collections
                .insert(name.to_owned(), outcome.digits.clone());
        }
        Ok(outcome)
    }

    pub async fn record_media(
        &self,
        request: &RecordRequest,
        beside: &dyn Beside,
    ) -> Result<RecordOutcome, Gone> {
        self.alive()?;
        let event = self
            .event("record")
            .with("time_limit_ms", request.time_limit_ms);
        let pending = self.trace.borrow_mut().begin(event);
        let outcome = self.backend.record(request, beside).await?;
        self.trace.borrow_mut().complete(
            pending,
            fields(json!({
                "recording_id": outcome.recording_id,
                "reason": outcome.reason,
                "duration_ms": outcome.duration_ms,
            })),
        );
        Ok(outcome)
    }

    pub async fn bridge(
        &self,
        request: &BridgeRequest,
        beside: &dyn Beside,
    ) -> Result<BridgeOutcome, Gone> {
        self.alive()?;
        let endpoints: Vec<&str> = request.endpoints.iter().map(|e| e.id.as_str()).collect();
        let event = bridge_option_fields(
            self.event("bridge")
                .with("endpoints", json!(endpoints))
                .with("strategy", json!(request.strategy))
                .with("timeout_s", request.timeout_s),
            request,
        );
        let pending = self.trace.borrow_mut().begin(event);
        // Without the module's ringback, the callflow's (`ringback.early`,
        // Kazoo's Ringback-Media).
        let early = request
            .ringback
            .is_none()
            .then(|| {
                let callflow_id = self.route().callflow_id;
                self.account
                    .callflows
                    .get(callflow_id.as_str())
                    .and_then(|flow| flow.ringback.as_ref()?.early.clone())
            })
            .flatten();
        let filled;
        let request = if early.is_some() {
            filled = BridgeRequest {
                ringback: early,
                ..request.clone()
            };
            &filled
        } else {
            request
        };
        let outcome = self.backend.bridge(request, beside).await?;
        let outcome_fields = self.bridged(&outcome, true);
        self.trace.borrow_mut().complete(pending, outcome_fields);
        Ok(outcome)
    }

    /// A bridge's (or pickup's) outcome fields for its event, in order
    /// (`answered_by` when `show_by`); an answered one sets Kazoo's
    /// `call_bridged` flag (read by missed-call alerts).
    fn bridged(&self, outcome: &BridgeOutcome, show_by: bool) -> Map<String, Value> {
        let mut outcome_fields = fields(json!({
            "status": outcome.status.as_str(),
            "cause": outcome.cause,
            "sip": outcome.sip,
        }));
        if let Some(by) = &outcome.answered_by {
            if show_by {
                outcome_fields.insert("answered_by".into(), json!(by));
            }
            self.state
                .borrow_mut()
                .variables
                .insert("call_bridged".to_owned(), Value::Bool(true));
        }
        outcome_fields.insert("duration_ms".into(), json!(outcome.duration_ms));
        outcome_fields
    }

    /// The other calls this call can see.
    pub fn channels(&self) -> Vec<crate::engine::control::Channel> {
        self.backend.channels()
    }

    /// Joins another call while it rings or is parked (see
    /// [`crate::engine::control::CallControl::pickup`]); one `pickup`
    /// event with the outcome.
    pub async fn pickup(
        &self,
        call_id: &str,
        intercept: bool,
        beside: &dyn Beside,
    ) -> Result<BridgeOutcome, Gone> {
        self.alive()?;
        let mut event = self.event("pickup").with("call_id", call_id);
        if intercept {
            event = event.with("intercept", true);
        }
        let pending = self.trace.borrow_mut().begin(event);
        let outcome = self.backend.pickup(call_id, intercept, beside).await?;
        let outcome_fields = self.bridged(&outcome, false);
        self.trace.borrow_mut().complete(pending, outcome_fields);
        Ok(outcome)
    }

    /// Waits at a place until woken, a digit, the time or the hang-up; one
    /// `wait` event with the outcome.
    pub async fn wait_at(
        &self,
        place: &str,
        opts: &crate::engine::control::WaitRequest,
        beside: &dyn Beside,
    ) -> Result<crate::engine::control::WaitOutcome, Gone> {
        self.alive()?;
        let mut event = self.event("wait").with("place", place);
        if opts.ms != u64::MAX {
            event = event.with("timeout_ms", opts.ms);
        }
        let pending = self.trace.borrow_mut().begin(event);
        let outcome = self.backend.wait(place, opts, beside).await?;
        let mut outcome_fields = fields(json!({ "reason": outcome.reason }));
        if let Some(digit) = outcome.digit {
            outcome_fields.insert("digit".into(), json!(digit.to_string()));
        }
        outcome_fields.insert("duration_ms".into(), json!(outcome.duration_ms));
        self.trace.borrow_mut().complete(pending, outcome_fields);
        Ok(outcome)
    }

    /// Wakes the calls waiting at a place; how many.
    pub fn wake(&self, place: &str) -> usize {
        self.backend.wake(place)
    }

    /// Camps on busy devices for this call's device (see
    /// [`crate::engine::control::CallControl::camp`]); one `camp` event.
    /// False without a calling device, or when the backend cannot watch.
    pub fn camp(&self, number: &str, targets: &[String], ring_ms: u64, stop_after_ms: u64) -> bool {
        let device = self
            .facts
            .calling_device
            .as_ref()
            .map(|d| d.as_str().to_owned());
        let camped = device.is_some_and(|device| {
            self.backend.camp(&crate::engine::control::CampRequest {
                device,
                from: self.facts.from.clone(),
                caller_id_name: self.facts.caller_id_name.clone(),
                number: number.to_owned(),
                targets: targets.to_vec(),
                ring_ms,
                stop_after_ms,
            })
        });
        self.record(
            self.event("camp")
                .with("number", number)
                .with("targets", json!(targets))
                .with("camped", camped),
        );
        camped
    }

    /// In a conference room until the caller hangs up; one `conference`
    /// event with the outcome.
    pub async fn conference(
        &self,
        room: &str,
        moderator: bool,
        beside: &dyn Beside,
    ) -> Result<crate::engine::control::ConferenceOutcome, Gone> {
        self.alive()?;
        let mut event = self.event("conference").with("room", room);
        if moderator {
            event = event.with("moderator", true);
        }
        let pending = self.trace.borrow_mut().begin(event);
        let outcome = self.backend.conference(room, moderator, beside).await?;
        self.trace.borrow_mut().complete(
            pending,
            fields(json!({
                "members": outcome.members,
                "reason": outcome.reason,
                "duration_ms": outcome.duration_ms,
            })),
        );
        Ok(outcome)
    }

    /// Listens to another call until it ends; one `eavesdrop` event with
    /// the outcome.
    pub async fn eavesdrop(
        &self,
        call_id: &str,
        beside: &dyn Beside,
    ) -> Result<crate::engine::control::EavesdropOutcome, Gone> {
        self.alive()?;
        let pending = self
            .trace
            .borrow_mut()
            .begin(self.event("eavesdrop").with("call_id", call_id));
        let outcome = self.backend.eavesdrop(call_id, beside).await?;
        self.trace.borrow_mut().complete(
            pending,
            fields(json!({ "reason": outcome.reason, "duration_ms": outcome.duration_ms })),
        );
        Ok(outcome)
    }

    /// Waits in a parking slot, where another call may retrieve it; one
    /// `park` event with the outcome.
    pub async fn park(
        &self,
        slot: &str,
        ms: u64,
        beside: &dyn Beside,
    ) -> Result<crate::engine::control::ParkOutcome, Gone> {
        self.alive()?;
        let mut event = self.event("park").with("slot", slot);
        if ms != u64::MAX {
            event = event.with("timeout_ms", ms);
        }
        let pending = self.trace.borrow_mut().begin(event);
        let outcome = self.backend.park(slot, ms, beside).await?;
        let mut outcome_fields = fields(json!({ "reason": outcome.reason }));
        if let Some(by) = &outcome.by {
            outcome_fields.insert("by".into(), json!(by));
        }
        outcome_fields.insert("duration_ms".into(), json!(outcome.duration_ms));
        self.trace.borrow_mut().complete(pending, outcome_fields);
        Ok(outcome)
    }

    pub async fn sleep(&self, ms: u64, beside: &dyn Beside) -> Result<SleepReason, Gone> {
        self.alive()?;
        let pending = self
            .trace
            .borrow_mut()
            .begin(self.event("sleep").with("ms", ms));
        let reason = self.backend.sleep(ms, beside).await?;
        self.trace
            .borrow_mut()
            .complete(pending, fields(json!({ "reason": reason })));
        Ok(reason)
    }

    /// Waits until the call ends (the caller hangs up, or its time runs out).
    pub async fn wait_for_hangup(&self, beside: &dyn Beside) -> Result<(), Gone> {
        self.alive()?;
        let pending = self.trace.borrow_mut().begin(self.event("wait"));
        let reason = self.backend.sleep(u64::MAX, beside).await?;
        self.trace
            .borrow_mut()
            .complete(pending, fields(json!({ "reason": reason })));
        Ok(())
    }

    /// Starts or stops recording the whole call; a recording started with
    /// a time limit is over once it is reached ([`Call::recording`]).
    pub async fn record_call(
        &self,
        start: bool,
        time_limit_ms: Option<u64>,
    ) -> Result<String, Gone> {
        self.alive()?;
        let new = start && self.recording().is_none();
        if new && self.backend.recording().is_some() {
            // Past its time limit: over, though the backend still has it.
            self.backend.record_call(false, None).await?;
        }
        let id = self.backend.record_call(start, time_limit_ms).await?;
        let mut event = self
            .event("record_call")
            .with("action", if start { "start" } else { "stop" })
            .with("recording_id", id.as_str());
        if new && let Some(limit) = time_limit_ms {
            event = event.with("time_limit_ms", limit);
        }
        self.record(event);
        let mut state = self.state.borrow_mut();
        if !start {
            state.recording_until = None;
        } else if new {
            state.recording_until = time_limit_ms.map(|ms| self.now_ms().saturating_add(ms));
        }
        Ok(id)
    }

    /// Listens for fax tones.
    pub async fn detect_fax(&self, ms: u64, beside: &dyn Beside) -> Result<bool, Gone> {
        self.alive()?;
        let pending = self.trace.borrow_mut().begin(self.event("fax_detect"));
        let fax = self.backend.detect_fax(ms, beside).await?;
        self.trace.borrow_mut().complete(
            pending,
            fields(json!({ "result": if fax { "fax" } else { "voice" } })),
        );
        Ok(fax)
    }

    pub async fn send_dtmf(&self, digits: &str) -> Result<(), Gone> {
        self.alive()?;
        self.record(self.event("send_dtmf").with("digits", digits));
        self.backend.send_dtmf(digits).await
    }

    pub async fn respond(&self, code: u16, message: &str) -> Result<(), Gone> {
        self.alive()?;
        self.record(
            self.event("respond")
                .with("code", code)
                .with("message", message),
        );
        self.backend.respond(code, message).await
    }

    pub async fn http(&self, request: &HttpRequest, beside: &dyn Beside) -> HttpOutcome {
        let pending = self.trace.borrow_mut().begin(
            self.event("http")
                .with("method", request.method.as_str())
                .with("url", request.url.as_str()),
        );
        let outcome = self.backend.http(request, beside).await;
        let mut outcome_fields = fields(json!({ "status": outcome.status }));
        if let Some(error) = &outcome.error {
            outcome_fields.insert("error".into(), json!(error));
        }
        self.trace.borrow_mut().complete(pending, outcome_fields);
        outcome
    }
}

impl Call {
    // Legs of a bridge, for metaflows.

    /// The id of the whole-call recording running, if any.
    pub fn recording(&self) -> Option<String> {
        let until = self.state.borrow().recording_until;
        if until.is_some_and(|until| self.now_ms() >= until) {
            return None;
        }
        self.backend.recording()
    }

    /// The peer bridged to the call now, if any.
    pub fn peer(&self) -> Option<PeerInfo> {
        self.backend.peer()
    }

    /// Holds `leg` (it hears `moh`) until `unhold_key` on the other leg;
    /// false when no bridge is up.
    pub fn hold(
        &self,
        leg: Leg,
        moh: Option<&str>,
        unhold_key: Option<char>,
    ) -> Result<bool, Gone> {
        self.alive()?;
        let held = self.backend.hold(leg, moh, unhold_key)?;
        if held {
            let mut event = self.event("leg_hold").with("leg", leg.as_str());
            if let Some(moh) = moh {
                event = event.with("moh", moh);
            }
            if let Some(key) = unhold_key {
                event = event.with("unhold_key", key.to_string());
            }
            self.record(event);
        }
        Ok(held)
    }

    /// Takes the held leg off hold; false when none was.
    pub fn unhold(&self) -> Result<bool, Gone> {
        self.alive()?;
        let held = self.backend.unhold()?;
        if let Some(leg) = held {
            self.record(self.event("leg_unhold").with("leg", leg.as_str()));
        }
        Ok(held.is_some())
    }

    /// Blind-transfers the peer to `target`; false when no bridge is up.
    pub fn transfer_peer(&self, target: &str) -> Result<bool, Gone> {
        self.alive()?;
        if self.backend.peer().is_none() {
            return Ok(false);
        }
        self.record(
            self.event("transfer")
                .with("target", target)
                .with("leg", Leg::B.as_str()),
        );
        self.backend.transfer_peer(target)
    }

    /// The peer hangs up; false when no bridge is up.
    pub fn hangup_peer(&self, cause: &str) -> Result<bool, Gone> {
        self.alive()?;
        self.backend.hangup_peer(cause)
    }

    /// An attended transfer; recorded as a `transfer` event of type
    /// `attended` completed with its result.
    pub async fn attended_transfer(
        &self,
        request: &ConsultRequest,
        beside: &dyn Beside,
    ) -> Result<ConsultOutcome, Gone> {
        self.alive()?;
        let endpoints: Vec<&str> = request.endpoints.iter().map(|e| e.id.as_str()).collect();
        let mut event = self
            .event("transfer")
            .with("target", request.target.as_str())
            .with(
                "type",
                if request.complete_on_answer {
                    "move"
                } else {
                    "attended"
                },
            )
            .with("transferor", request.transferor.as_str())
            .with("endpoints", json!(endpoints));
        if let Some(takeback) = &request.takeback {
            event = event.with("takeback", takeback.as_str());
        }
        if let Some(moh) = &request.moh {
            event = event.with("moh", moh.as_str());
        }
        if let Some(ringback) = &request.ringback {
            event = event.with("ringback", ringback.as_str());
        }
        let pending = self.trace.borrow_mut().begin(event);
        let outcome = self.backend.attended_transfer(request, beside).await?;
        let mut outcome_fields = fields(json!({ "result": outcome.result }));
        if let Some(by) = &outcome.answered_by {
            outcome_fields.insert("answered_by".into(), json!(by));
        }
        outcome_fields.insert("duration_ms".into(), json!(outcome.duration_ms));
        self.trace.borrow_mut().complete(pending, outcome_fields);
        Ok(outcome)
    }
}

fn play_fields(outcome: &PlayOutcome) -> Map<String, Value> {
    let mut map = fields(json!({ "reason": outcome.reason }));
    if let Some(digit) = outcome.digit {
        map.insert("digit".into(), json!(digit.to_string()));
    }
    map.insert("duration_ms".into(), json!(outcome.duration_ms));
    map
}

/// The bridge event's fields for the options a module set (none when it set
/// none, so traces of plain bridges stay as they were).
fn bridge_option_fields(mut event: Event, request: &BridgeRequest) -> Event {
    let options = &request.options;
    if options.caller_id_set {
        event = event.with(
            "caller_id",
            json!({"name": request.caller_id_name, "number": request.caller_id_number}),
        );
    }
    let per_endpoint: Map<String, Value> = request
        .endpoints
        .iter()
        .filter_map(|e| {
            let (name, number) = e.caller_id.as_ref()?;
            Some((e.id.clone(), json!({"name": name, "number": number})))
        })
        .collect();
    if !per_endpoint.is_empty() {
        event = event.with("endpoint_caller_ids", Value::Object(per_endpoint));
    }
    if !options.headers.is_empty() {
        let headers: Map<String, Value> = options
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), json!(value)))
            .collect();
        event = event.with("headers", Value::Object(headers));
    }
    if let Some(confirm) = &options.confirm {
        event = event.with("confirm_key", confirm.key.to_string());
        if let Some(media) = &confirm.media {
            event = event.with("confirm_media", media.as_str());
        }
    }
    if let Some(limit) = options.time_limit_s {
        event = event.with("time_limit_s", limit);
    }
    if options.ignore_early_media {
        event = event.with("ignore_early_media", true);
    }
    event
}
