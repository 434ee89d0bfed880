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

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

pub use backend::{
    DEFAULT_INTERDIGIT_MS, DEFAULT_TALK_MS, MIN_SPEECH_MS, SPEECH_MS_PER_CHAR, SimBackend, World,
};
pub use scenario::{Scenario, ScenarioError};

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

/// The result of one simulated call.
#[derive(Debug, Clone)]
pub struct Outcome {
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
    if let Some(device) = &scenario.calling_device
        && found.document("devices", device).is_none()
    {
        return Err(ScenarioError {
            path: "calling_device".to_owned(),
            message: format!("no device {device:?} in account {}", found.account.id),
        });
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

/// Simulates the scenario's call. `index` tells calls of one benchmark apart
/// (it becomes part of the call id); 0 for a single simulation.
pub async fn simulate(
    scenario: &Scenario,
    account: &Arc<AccountFlows>,
    runner: &dyn ModuleRunner,
    options: &Options,
    index: u64,
) -> Outcome {
    let call_id = call_id(scenario.seed, index);
    let world = Rc::new(World {
        call_id: call_id.clone(),
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
    let backend = Rc::new(SimBackend::new(world, &scenario.caller, Rc::clone(&trace)));
    let inception: Inception = scenario.inception.into();
    let facts = CallFacts {
        call_id,
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
        start_epoch_ms: scenario.start_epoch_ms(account.account.timezone.as_deref()),
        seed: scenario.seed.wrapping_add(index),
    };
    let docs = Rc::new(Overlay::new(Arc::clone(account), options.persist.clone()));
    let call = Rc::new(Call::new(
        facts,
        Arc::clone(account),
        backend,
        docs,
        Rc::clone(&trace),
    ));

    for notice in &options.notices {
        call.record(Event::new(0, "warning").with("message", notice.as_str()));
    }
    let end = engine::route_and_run(&call, &scenario.to, inception, runner, &options.limits).await;
    drop(call);
    let trace = trace.borrow().clone();
    Outcome { trace, end }
}
