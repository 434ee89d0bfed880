//! `callflow bench`: many simulated calls of one scenario, several at a
//! time, in one process; prints throughput and peak memory as JSON.
//!
//! Each worker thread has its own runtime and Lua VM (the VM is not `Send`);
//! calls are shared out round-robin and each worker keeps its share of the
//! concurrency in flight, every call a task parked between verbs.

use std::cell::Cell;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;

use super::simulate::{dirs_for, read_scenario};
use super::{ScriptsArgs, load_flows, report_problems};
use callflow::catalog::AccountFlows;
use callflow::host::{ModuleHost, ModuleSet};
use callflow::sim::{self, Options, Scenario};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The scenario file each call plays.
    #[arg(value_name = "SCENARIO")]
    scenario: PathBuf,

    /// How many calls to simulate.
    #[arg(long, default_value_t = 1000)]
    calls: u64,

    /// How many calls are in flight at once (over all workers).
    #[arg(long, default_value_t = 1)]
    concurrency: u64,

    /// Worker threads, each with its own Lua VM (default: one per core).
    #[arg(long)]
    workers: Option<u64>,

    /// The flows directory (default: the scenario's "flows", else ./flows).
    #[arg(long, value_name = "DIR")]
    flows: Option<PathBuf>,

    #[command(flatten)]
    scripts: ScriptsArgs,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    if args.calls == 0 || args.concurrency == 0 {
        bail!("--calls and --concurrency must be at least 1");
    }
    let loaded = read_scenario(&args.scenario)?;
    let (flows_dir, extra_scripts) = dirs_for(args.flows.as_ref(), Some(&loaded));
    let (modules, script_problems) = args.scripts.load(&extra_scripts);
    report_problems("the scripts", &script_problems);
    let (catalog, flow_problems) = load_flows(&flows_dir, &modules)?;
    report_problems("the flows", &flow_problems);
    let scenario = Arc::new(loaded.scenario);
    let account = Arc::clone(sim::account_for(&scenario, &catalog).context("bad scenario")?);
    let modules = Arc::new(modules);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let workers = args
        .workers
        .unwrap_or(cores)
        .clamp(1, args.calls.min(args.concurrency));

    // Wall-clock time is what a benchmark measures; the simulated calls
    // themselves never read it.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|worker| {
            let calls = share(args.calls, workers, worker);
            let lanes = share(args.concurrency, workers, worker).max(1);
            let scenario = Arc::clone(&scenario);
            let account = Arc::clone(&account);
            let modules = Arc::clone(&modules);
            std::thread::spawn(move || {
                run_worker(&scenario, &account, modules, calls, lanes, worker)
            })
        })
        .collect();
    let mut simulated = 0;
    for handle in handles {
        match handle.join() {
            Ok(result) => simulated += result?,
            Err(_) => bail!("a worker thread panicked"),
        }
    }
    let wall = started.elapsed();
    let wall_ms = wall.as_secs_f64() * 1000.0;
    #[allow(clippy::cast_precision_loss)] // call counts are far below 2^53
    let calls_per_sec = simulated as f64 / wall.as_secs_f64().max(1e-9);
    let report = json!({
        "calls": simulated,
        "concurrency": args.concurrency,
        "workers": workers,
        "wall_ms": (wall_ms * 10.0).round() / 10.0,
        "calls_per_sec": calls_per_sec.round(),
        "peak_rss_kb": peak_rss_kb(),
    });
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

/// Worker `index`'s share of `total`, spread as evenly as possible.
fn share(total: u64, workers: u64, index: u64) -> u64 {
    total / workers + u64::from(index < total % workers)
}

/// Runs `calls` calls on this thread, `lanes` at a time.
fn run_worker(
    scenario: &Scenario,
    account: &Arc<AccountFlows>,
    modules: Arc<ModuleSet>,
    calls: u64,
    lanes: u64,
    worker: u64,
) -> anyhow::Result<u64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .context("cannot start the runtime")?;
    let local = tokio::task::LocalSet::new();
    let options = Options::default();
    let host = Rc::new(ModuleHost::new(modules, options.limits)?);
    let next = Rc::new(Cell::new(0u64));
    let done = local.block_on(&runtime, async {
        let mut tasks = Vec::new();
        for _ in 0..lanes.min(calls) {
            let host = Rc::clone(&host);
            let next = Rc::clone(&next);
            let scenario = scenario.clone();
            let account = Arc::clone(account);
            let options = options.clone();
            tasks.push(tokio::task::spawn_local(async move {
                let mut ran = 0u64;
                loop {
                    let n = next.get();
                    if n >= calls {
                        return ran;
                    }
                    next.set(n + 1);
                    // Call ids 1.. within each worker, unique across workers.
                    let index = n * 1000 + worker + 1;
                    sim::simulate(&scenario, &account, host.as_ref(), &options, index).await;
                    ran += 1;
                }
            }));
        }
        let mut total = 0;
        for task in tasks {
            total += task.await.unwrap_or(0);
        }
        total
    });
    Ok(done)
}

/// Peak resident set size of this process (kB), from /proc on Linux.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}
