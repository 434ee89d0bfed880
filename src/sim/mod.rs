//! The call simulator: runs a scenario's call through the router, the
//! engine and the module host, in virtual time, and returns its trace.
//!
//! Deterministic: the same scenario, flows and scripts give a byte-identical
//! trace. Time is the call's own clock (advanced by what the scenario
//! implies), randomness comes from the scenario's seed, and nothing reads the
//! wall clock or the network (unless `allow_network` is set and a request has
//! no stub).

mod backend;
pub mod network;
pub mod pool;
pub mod scenario;
pub mod stubs;
pub mod world;

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

pub use backend::{
    DEFAULT_INTERDIGIT_MS, DEFAULT_TALK_MS, MIN_SPEECH_MS, SPEECH_MS_PER_CHAR, SimBackend, World,
};
pub use scenario::{Scenario, ScenarioError};

use backend::InWorld;
use scenario::PlannedCall;
use world::Shared;

use crate::catalog::{AccountFlows, Catalog};
use crate::engine::{self, Call, CallFacts, EndReason, ModuleRunner, Overlay};
use crate::ids::DocId;
use crate::limits::Limits;
use crate::routing::Inception;
use crate::trace::{Event, Trace};

/// Where the documents calls write are kept, shared by every call that uses
/// it (the flows directory, or an [`engine::MemoryStore`] for calls
/// simulated side by side): `call:update_doc` compares and swaps there.
pub type Persist = Arc<dyn engine::DocumentStore>;

/// How to run simulations.
#[derive(Clone, Default)]
pub struct Options {
    pub limits: Limits,
    /// Let HTTP requests without a stub reach the network.
    pub allow_network: bool,
    /// Let HTTP requests reach loopback, link-local and private addresses.
    pub allow_private_http: bool,
    /// Where documents calls write go (voicemail messages, park slots, rule
    /// overrides); without it they last as long as the call.
    pub persist: Option<Persist>,
    /// Warnings recorded at the start of every call (a server's rejected
    /// reload, say).
    pub notices: Vec<String>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("limits", &self.limits)
            .field("allow_network", &self.allow_network)
            .field("allow_private_http", &self.allow_private_http)
            .field("persist", &self.persist.is_some())
            .field("notices", &self.notices)
            .finish()
    }
}

/// The result of one simulated call (or of a multi-call scenario's calls).
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The call's trace; for several calls, theirs merged in time order,
    /// each event labelled with its call (times are the world's: ms since
    /// the scenario's start).
    pub trace: Trace,
    /// How the call (the first call) ended.
    pub end: EndReason,
    /// Each call of a multi-call scenario, in scenario order (empty for
    /// one call).
    pub calls: Vec<CallRun>,
}

/// The outcome as JSON: the trace (`{"events": [...]}`), or for several
/// calls `{"calls": [{"id", "at_ms", "end", "events": [...]}, ...]}` in
/// scenario order (events in the world's time, without `call` labels).
pub fn outcome_json(outcome: &Outcome) -> serde_json::Value {
    if outcome.calls.is_empty() {
        return outcome.trace.to_json();
    }
    let calls: Vec<serde_json::Value> = outcome
        .calls
        .iter()
        .map(|run| {
            let events: Vec<serde_json::Value> = run
                .trace
                .events()
                .iter()
                .map(|event| {
                    let mut event = event.clone();
                    event.call = None;
                    event.to_json()
                })
                .collect();
            serde_json::json!({
                "id": run.id,
                "at_ms": run.at_ms,
                "end": run.end.as_str(),
                "events": events,
            })
        })
        .collect();
    serde_json::json!({ "calls": calls })
}

/// One call of a multi-call scenario.
#[derive(Debug, Clone)]
pub struct CallRun {
    pub id: String,
    pub at_ms: u64,
    /// Its events, in the world's time, labelled with `id`.
    pub trace: Trace,
    pub end: EndReason,
}

/// Finds the scenario's account (named, or the only one).
pub fn account_for<'a>(
    scenario: &Scenario,
    catalog: &'a Catalog,
) -> Result<&'a Arc<AccountFlows>, ScenarioError> {
    let error = |message: String| ScenarioError {
        path: "account".to_owned(),
        message,
    };
    let accounts: Vec<&str> = catalog.accounts().map(|a| a.account.id.as_str()).collect();
    let found = match &scenario.account {
        Some(id) => catalog.account(id).ok_or_else(|| {
            error(format!(
                "no account {id:?} in the flows (accounts: {})",
                accounts.join(", ")
            ))
        })?,
        None => catalog.single_account().ok_or_else(|| {
            error(format!(
                "the flows hold {} accounts ({}): say which with \"account\"",
                accounts.len(),
                accounts.join(", ")
            ))
        })?,
    };
    let devices = std::iter::once(("calling_device".to_owned(), &scenario.calling_device)).chain(
        scenario.calls.iter().enumerate().map(|(index, call)| {
            (
                format!("calls[{index}].calling_device"),
                &call.calling_device,
            )
        }),
    );
    for (path, device) in devices {
        if let Some(device) = device
            && found.document("devices", device).is_none()
        {
            return Err(ScenarioError {
                path,
                message: format!("no device {device:?} in account {}", found.account.id),
            });
        }
    }
    Ok(found)
}

/// Simulates one call on a fresh single-threaded runtime and Lua VM, on the
/// current thread (blocking): what `callflow simulate` and the API's
/// `simulate` route do.
pub fn run_one(
    scenario: &Scenario,
    account: &Arc<AccountFlows>,
    modules: Arc<crate::host::ModuleSet>,
    options: &Options,
) -> Result<Outcome, RunError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| RunError(format!("cannot start the runtime: {e}")))?;
    let local = tokio::task::LocalSet::new();
    let host = crate::host::ModuleHost::new(modules, options.limits)
        .map_err(|e| RunError(e.to_string()))?;
    Ok(local.block_on(&runtime, simulate(scenario, account, &host, options, 0)))
}

/// A simulation could not start (no runtime, no Lua VM).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RunError(pub String);

/// The id of a simulated call: `sim-<seed>`, and `-<index>` for the calls
/// of a benchmark after the first.
pub fn call_id(seed: u64, index: u64) -> String {
    if index == 0 {
        format!("sim-{seed}")
    } else {
        format!("sim-{seed}-{index}")
    }
}

/// Simulates the scenario's call (or, for a multi-call scenario, its calls
/// in one world). `index` tells calls of one benchmark apart (it becomes
/// part of the call id); 0 for a single simulation.
pub async fn simulate(
    scenario: &Scenario,
    account: &Arc<AccountFlows>,
    runner: &dyn ModuleRunner,
    options: &Options,
    index: u64,
) -> Outcome {
    if scenario.is_multi_call() {
        return simulate_calls(scenario, account, runner, options, index).await;
    }
    let docs = Rc::new(Overlay::new(Arc::clone(account), options.persist.clone()));
    let setup = Setup {
        call_id: call_id(scenario.seed, index),
        seed: scenario.seed.wrapping_add(index),
        offset_ms: 0,
        world: None,
    };
    let (trace, end) = run_call(scenario, account, runner, options, &docs, setup).await;
    Outcome {
        trace,
        end,
        calls: Vec::new(),
    }
}

/// What sets one call of a simulation apart.
struct Setup {
    call_id: String,
    seed: u64,
    /// When it starts, in the world's time.
    offset_ms: u64,
    world: Option<Rc<Shared>>,
}

/// Runs one call of `scenario` to its end: its trace and how it ended.
async fn run_call(
    scenario: &Scenario,
    account: &Arc<AccountFlows>,
    runner: &dyn ModuleRunner,
    options: &Options,
    docs: &Rc<Overlay>,
    setup: Setup,
) -> (Trace, EndReason) {
    let world = Rc::new(World {
        call_id: setup.call_id.clone(),
        endpoints: scenario.endpoints.clone(),
        media: scenario.media.clone(),
        http: scenario.http.clone(),
        allow_network: options.allow_network,
        allow_private_http: options.allow_private_http,
        fax: scenario.fax,
        max_call_ms: scenario.max_call_ms.unwrap_or(options.limits.max_call_ms),
        max_dtmf_digits: options.limits.max_dtmf_digits,
    });
    let trace = Rc::new(RefCell::new(Trace::with_max_events(
        options.limits.max_trace_events,
    )));
    let mut backend = SimBackend::new(world, &scenario.caller, Rc::clone(&trace));
    if let Some(shared) = setup.world {
        backend = backend.in_world(InWorld {
            shared,
            offset_ms: setup.offset_ms,
            call_id: setup.call_id.clone(),
            device: scenario.calling_device.clone(),
        });
    }
    let inception: Inception = scenario.inception.into();
    let start_epoch_ms = scenario
        .start_epoch_ms(account.account.timezone.as_deref())
        .saturating_add(i64::try_from(setup.offset_ms).unwrap_or(i64::MAX));
    let facts = CallFacts {
        call_id: setup.call_id,
        to: scenario.to.clone(),
        from: scenario.from.clone(),
        caller_id_name: scenario
            .caller_id_name
            .clone()
            .unwrap_or_else(|| scenario.from.clone()),
        inception,
        calling_device: scenario
            .calling_device
            .as_deref()
            .and_then(|d| DocId::new(d).ok()),
        start_epoch_ms,
        seed: setup.seed,
    };
    let call = Rc::new(Call::new(
        facts,
        Arc::clone(account),
        Rc::new(backend),
        Rc::clone(docs) as Rc<dyn crate::engine::Documents>,
        Rc::clone(&trace),
    ));

    for notice in &options.notices {
        call.record(Event::new(0, "warning").with("message", notice.as_str()));
    }
    let end = engine::route_and_run(&call, &scenario.to, inception, runner, &options.limits).await;
    drop(call);
    let trace = trace.borrow().clone();
    (trace, end)
}

/// A call's trace and how it ended.
type Finished = (Trace, EndReason);

/// The calls of a multi-call simulation (the scenario's, then the ones the
/// world placed), each with its result once it ended.
type CallList = Rc<RefCell<Vec<(PlannedCall, Option<Finished>)>>>;

/// Simulates the calls of a multi-call scenario in one world: one clock,
/// one set of documents, each call seeing the others
/// ([`world::Shared`]). The outcome's trace merges theirs in time order,
/// each event labelled with its call; `end` is how the first call ended.
async fn simulate_calls(
    scenario: &Scenario,
    account: &Arc<AccountFlows>,
    runner: &dyn ModuleRunner,
    options: &Options,
    index: u64,
) -> Outcome {
    let shared = Shared::new();
    let docs = Rc::new(Overlay::new(Arc::clone(account), options.persist.clone()));
    // The scenario's calls, then the calls the world places (callbacks),
    // each with its result once it ends.
    let planned: CallList = Rc::new(RefCell::new(
        scenario
            .planned_calls()
            .into_iter()
            .map(|call| (call, None))
            .collect(),
    ));
    let run = |position: usize| -> Pin<Box<dyn Future<Output = ()> + '_>> {
        let shared = Rc::clone(&shared);
        let docs = Rc::clone(&docs);
        let planned = Rc::clone(&planned);
        Box::pin(async move {
            let call = planned.borrow()[position].0.clone();
            shared.sleep_until(call.at_ms, None).await;
            let call_id = if index == 0 {
                format!("sim-{}-{}", scenario.seed, call.id)
            } else {
                format!("sim-{}-{index}-{}", scenario.seed, call.id)
            };
            shared.register(world::SlotInit {
                call_id: call_id.clone(),
                name: call.id.clone(),
                from: call.scenario.from.clone(),
                to: call.scenario.to.clone(),
                calling_device: call.scenario.calling_device.clone(),
            });
            let setup = Setup {
                call_id: call_id.clone(),
                seed: scenario
                    .seed
                    .wrapping_add(index)
                    .wrapping_add(position as u64),
                offset_ms: call.at_ms,
                world: Some(Rc::clone(&shared)),
            };
            let ran = run_call(&call.scenario, account, runner, options, &docs, setup).await;
            shared.set_activity(&call_id, world::Activity::Ended);
            planned.borrow_mut()[position].1 = Some(ran);
            shared.leave();
        })
    };
    let runs: Vec<_> = (0..planned.borrow().len())
        .map(|position| {
            shared.enter();
            run(position)
        })
        .collect();
    let start = |spawn: world::Spawn| {
        let position = {
            let mut planned = planned.borrow_mut();
            planned.push((scenario.callback(&spawn), None));
            planned.len() - 1
        };
        run(position)
    };
    world::drive(&shared, runs, &start).await;
    let planned =
        Rc::try_unwrap(planned).map_or_else(|rc| rc.borrow().clone(), RefCell::into_inner);
    let mut calls = Vec::new();
    for (call, result) in planned {
        // A call the driver could not finish (a bug) shows as an error.
        let (trace, end) = result.unwrap_or_else(|| {
            let mut trace = Trace::new();
            trace.push(
                Event::new(0, "error").with("message", "the call did not finish (simulator bug)"),
            );
            (trace, EndReason::FlowEnd)
        });
        calls.push(CallRun {
            id: call.id.clone(),
            at_ms: call.at_ms,
            trace: trace.shifted(call.at_ms, &call.id),
            end,
        });
    }
    let trace = Trace::merged(calls.iter().map(|run| &run.trace));
    let end = calls.first().map_or(EndReason::FlowEnd, |run| run.end);
    Outcome { trace, end, calls }
}
