//! Warm simulation workers: threads that each keep a Lua VM and run the
//! simulations handed to them one after another, so a request does not pay
//! for a new VM (what `POST .../simulate` runs on).
//!
//! A simulation on a warm VM gives the trace a fresh VM gives: module
//! instances and documents a VM keeps are frozen, and each call has its
//! own state (`tests/state/`). Each job is pinned to the module set it
//! names (its generation), as server calls are.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::{Options, Outcome, RunError, Scenario, simulate};
use crate::catalog::AccountFlows;
use crate::host::{ModuleHost, ModuleSet};

/// Simulations a worker holds waiting beyond the one it runs.
pub const QUEUE_PER_WORKER: usize = 256;

/// Why a pooled simulation did not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Every worker's queue is full: try again later.
    #[error("every simulation worker is busy ({workers} workers, {queue} waiting each)")]
    Busy { workers: usize, queue: usize },
    /// The workers are gone (the process is stopping).
    #[error("the simulation workers stopped")]
    Stopped,
    /// The worker could not run it (no Lua VM).
    #[error(transparent)]
    Run(#[from] RunError),
}

struct Job {
    scenario: Scenario,
    account: Arc<AccountFlows>,
    modules: Arc<ModuleSet>,
    options: Options,
    reply: oneshot::Sender<Result<Outcome, RunError>>,
}

/// Worker threads with warm VMs.
pub struct SimPool {
    workers: Vec<mpsc::Sender<Job>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for SimPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimPool")
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

impl SimPool {
    /// Starts `workers` threads (at least one).
    pub fn start(workers: usize) -> std::io::Result<Self> {
        let mut senders = Vec::new();
        for index in 0..workers.max(1) {
            let (tx, rx) = mpsc::channel(QUEUE_PER_WORKER);
            std::thread::Builder::new()
                .name(format!("simulate-{index}"))
                .spawn(move || work(rx))?;
            senders.push(tx);
        }
        Ok(Self {
            workers: senders,
            next: AtomicUsize::new(0),
        })
    }

    /// How many workers run simulations.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Simulates `scenario` on a warm worker (the next one with room).
    pub async fn simulate(
        &self,
        scenario: Scenario,
        account: Arc<AccountFlows>,
        modules: Arc<ModuleSet>,
        options: Options,
    ) -> Result<Outcome, PoolError> {
        let (reply, answer) = oneshot::channel();
        let mut job = Job {
            scenario,
            account,
            modules,
            options,
            reply,
        };
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.workers.len();
        let mut sent = false;
        for offset in 0..count {
            match self.workers[(start + offset) % count].try_send(job) {
                Ok(()) => {
                    sent = true;
                    break;
                }
                Err(mpsc::error::TrySendError::Full(back)) => job = back,
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(PoolError::Stopped),
            }
        }
        if !sent {
            return Err(PoolError::Busy {
                workers: count,
                queue: QUEUE_PER_WORKER,
            });
        }
        answer
            .await
            .map_err(|_| PoolError::Stopped)?
            .map_err(PoolError::Run)
    }
}

/// One worker: a runtime, and a VM made for the first job and kept.
fn work(mut jobs: mpsc::Receiver<Job>) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    let local = tokio::task::LocalSet::new();
    let mut host: Option<ModuleHost> = None;
    while let Some(job) = jobs.blocking_recv() {
        let ready = match host.take() {
            // A new generation replaces the set (and the instances of the
            // old one); other limits need another VM.
            Some(warm) if warm.limits() == job.options.limits => {
                if warm.module_set().generation != job.modules.generation {
                    warm.set_module_set(Arc::clone(&job.modules));
                }
                Ok(warm)
            }
            _ => ModuleHost::new(Arc::clone(&job.modules), job.options.limits)
                .map_err(|e| RunError(e.to_string())),
        };
        let warm = match ready {
            Ok(warm) => warm,
            Err(err) => {
                let _ = job.reply.send(Err(err));
                continue;
            }
        };
        let runner = warm.pinned(Arc::clone(&job.modules));
        let outcome = local.block_on(
            &runtime,
            simulate(&job.scenario, &job.account, &runner, &job.options, 0),
        );
        let _ = job.reply.send(Ok(outcome));
        host = Some(warm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::store::{FlowsDir, Store};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    fn load(
        scripts: &[&str],
        flows: &str,
        scenario: &str,
    ) -> (Scenario, Arc<AccountFlows>, Arc<ModuleSet>) {
        let (modules, _) = ModuleSet::load(scripts, 1);
        let (catalog, _) = Catalog::build(FlowsDir::new(flows).read().expect("flows"), &modules);
        let scenario = Scenario::parse(scenario).expect("scenario");
        let account = Arc::clone(super::super::account_for(&scenario, &catalog).expect("account"));
        (scenario, account, Arc::new(modules))
    }

    #[test]
    fn a_warm_worker_gives_the_trace_a_fresh_vm_gives() {
        let text = std::fs::read_to_string("tests/scenarios/sample-ivr.json").expect("scenario");
        let (scenario, account, modules) = load(&[], "flows", &text);
        let fresh = super::super::run_one(
            &scenario,
            &account,
            Arc::clone(&modules),
            &Options::default(),
        )
        .expect("runs")
        .trace
        .render_text();
        let pool = SimPool::start(1).expect("pool");
        runtime().block_on(async {
            for _ in 0..3 {
                let outcome = pool
                    .simulate(
                        scenario.clone(),
                        Arc::clone(&account),
                        Arc::clone(&modules),
                        Options::default(),
                    )
                    .await
                    .expect("simulates");
                assert_eq!(outcome.trace.render_text(), fresh);
            }
        });
    }

    #[test]
    fn a_full_pool_says_busy_instead_of_queueing_without_end() {
        // Each call loops until its interrupt budget runs out (tens of ms):
        // the worker's queue fills long before it drains.
        let (scenario, account, modules) = load(
            &["tests/engine/scripts"],
            "tests/engine/flows",
            r#"{"to": "203"}"#,
        );
        let pool = Arc::new(SimPool::start(1).expect("pool"));
        let mut options = Options::default();
        options.limits.interrupts_per_invoke = 20_000;
        let results = runtime().block_on(async {
            let tasks: Vec<_> = (0..QUEUE_PER_WORKER + 8)
                .map(|_| {
                    let (pool, scenario, account, modules, options) = (
                        Arc::clone(&pool),
                        scenario.clone(),
                        Arc::clone(&account),
                        Arc::clone(&modules),
                        options.clone(),
                    );
                    tokio::spawn(
                        async move { pool.simulate(scenario, account, modules, options).await },
                    )
                })
                .collect();
            let mut results = Vec::new();
            for task in tasks {
                results.push(task.await.expect("task"));
            }
            results
        });
        let busy = results
            .iter()
            .filter(|r| matches!(r, Err(PoolError::Busy { .. })))
            .count();
        let ran = results.iter().filter(|r| r.is_ok()).count();
        assert!(busy >= 1, "no simulation was refused");
        assert_eq!(busy + ran, results.len(), "{results:?}");
        assert!(ran >= QUEUE_PER_WORKER, "{ran} ran");
    }
}
