//! `callflow bench`: many simulated calls of one scenario (every n-th call
//! of another with `--mix`), several at a time, in one process; prints
//! throughput, peak memory and the calls whose trace has an `error` event,
//! as JSON.
//!
//! Each worker thread has its own runtime and Lua VM (the VM is not `Send`);
//! calls are shared out round-robin and each worker keeps its share of the
//! concurrency in flight, every call a task parked between verbs.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;

use super::simulate::{dirs_for_in, read_scenario};
use super::{ScriptsArgs, load_flows, report_problems};
use callflow::catalog::AccountFlows;
use callflow::engine::EndReason;
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

    /// The flows directory (default: the scenario's "flows", else
    /// callflow.toml's `flows`, else ./flows).
    #[arg(long, value_name = "DIR")]
    flows: Option<PathBuf>,

    /// The project's flows directory, when a scenario names none.
    #[arg(skip)]
    project_flows: Option<PathBuf>,

    /// Every EVERY-th call plays FILE instead (its own "flows" and
    /// "scripts"; the modules of every scenario are loaded for all):
    /// `--mix hostile.json:100` makes one call in a hundred hostile.
    /// Repeatable; the first that applies to a call wins.
    #[arg(long, value_name = "FILE:EVERY", value_parser = parse_mix)]
    mix: Vec<(PathBuf, u64)>,

    /// Calls each worker runs at once; one more is refused (its trace ends
    /// with reason `overload`) and counted in `refused`. Default: no limit
    /// but each worker's memory.
    #[arg(long, value_name = "N")]
    max_calls: Option<usize>,

    #[command(flatten)]
    scripts: ScriptsArgs,
}

/// What the calls of one scenario did.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    calls: u64,
    /// Calls whose trace has an `error` event.
    errors: u64,
    /// Calls refused (their trace ends with reason `overload`).
    refused: u64,
}

/// One scenario of a bench: what it plays, in which account.
struct Played {
    file: PathBuf,
    scenario: Scenario,
    account: Arc<AccountFlows>,
    /// Every this-many-th call plays it (1: the main scenario, the rest).
    every: u64,
}

/// `FILE:EVERY`, EVERY at least 2.
fn parse_mix(text: &str) -> Result<(PathBuf, u64), String> {
    let (file, every) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("`{text}`: expected FILE:EVERY (hostile.json:100)"))?;
    let every: u64 = every
        .parse()
        .map_err(|_| format!("`{every}` is not a number of calls"))?;
    if every < 2 {
        return Err(format!("`{text}`: EVERY must be at least 2"));
    }
    Ok((PathBuf::from(file), every))
}

/// Which scenario call `n` (0-based) plays, `every[i]` being how often
/// scenario `i` comes: the first mixed-in one (`i` ≥ 1) whose turn it is,
/// else the main one (0).
fn pick(every: &[u64], n: u64) -> usize {
    every
        .iter()
        .enumerate()
        .skip(1)
        .find(|(_, every)| (n + 1).is_multiple_of(**every))
        .map_or(0, |(i, _)| i)
}

/// Loads the scenarios, their flows (once per directory) and the modules of
/// them all.
fn load_played(args: &BenchArgs) -> anyhow::Result<(Vec<Played>, Arc<ModuleSet>)> {
    let mut files = vec![(args.scenario.clone(), 1)];
    files.extend(args.mix.iter().cloned());
    let mut loaded = Vec::new();
    let mut scripts: Vec<PathBuf> = Vec::new();
    for (file, every) in files {
        let scenario = read_scenario(&file)?;
        // --flows is for the main scenario; mixed-in ones bring their own.
        let flag = if every == 1 {
            args.flows.as_ref()
        } else {
            None
        };
        let (flows_dir, extra) = dirs_for_in(flag, Some(&scenario), args.project_flows.as_ref());
        for dir in extra {
            if !scripts.contains(&dir) {
                scripts.push(dir);
            }
        }
        loaded.push((file, every, scenario, flows_dir));
    }
    let (modules, script_problems) = args.scripts.load(&scripts);
    report_problems("the scripts", &script_problems);
    let mut catalogs: Vec<(PathBuf, callflow::catalog::Catalog)> = Vec::new();
    let mut played = Vec::new();
    for (file, every, scenario, flows_dir) in loaded {
        if !catalogs.iter().any(|(dir, _)| *dir == flows_dir) {
            let (catalog, flow_problems) = load_flows(&flows_dir, &modules)?;
            report_problems("the flows", &flow_problems);
            catalogs.push((flows_dir.clone(), catalog));
        }
        let catalog = catalogs
            .iter()
            .find(|(dir, _)| *dir == flows_dir)
            .map(|(_, catalog)| catalog)
            .context("the flows were just loaded")?;
        let account = Arc::clone(
            sim::account_for(&scenario.scenario, catalog)
                .with_context(|| format!("bad scenario {}", file.display()))?,
        );
        played.push(Played {
            file,
            scenario: scenario.scenario,
            account,
            every,
        });
    }
    Ok((played, Arc::new(modules)))
}

impl BenchArgs {
    pub(super) fn apply(&mut self, project: &super::Project) {
        self.scripts.apply(project);
        self.project_flows.clone_from(&project.flows);
    }
}

pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    if args.calls == 0 || args.concurrency == 0 {
        bail!("--calls and --concurrency must be at least 1");
    }
    let (played, modules) = load_played(args)?;
    let played = Arc::new(played);
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
            let played = Arc::clone(&played);
            let modules = Arc::clone(&modules);
            let max_calls = args.max_calls.unwrap_or(0);
            std::thread::spawn(move || {
                run_worker(&played, modules, calls, lanes, worker, max_calls)
            })
        })
        .collect();
    let mut counts = vec![Counts::default(); played.len()];
    let mut lua_peak = 0;
    for handle in handles {
        match handle.join() {
            Ok(result) => {
                let (result, peak) = result?;
                lua_peak += peak;
                for (total, more) in counts.iter_mut().zip(result) {
                    total.calls += more.calls;
                    total.errors += more.errors;
                    total.refused += more.refused;
                }
            }
            Err(_) => bail!("a worker thread panicked"),
        }
    }
    let wall = started.elapsed();
    let simulated: u64 = counts.iter().map(|c| c.calls).sum();
    let wall_ms = wall.as_secs_f64() * 1000.0;
    #[allow(clippy::cast_precision_loss)] // call counts are far below 2^53
    let calls_per_sec = simulated as f64 / wall.as_secs_f64().max(1e-9);
    let mut report = json!({
        "calls": simulated,
        "concurrency": args.concurrency,
        "workers": workers,
        "wall_ms": (wall_ms * 10.0).round() / 10.0,
        "calls_per_sec": calls_per_sec.round(),
        "peak_rss_kb": peak_rss_kb(),
        "peak_lua_heap_kb": lua_peak / 1024,
        "errors": counts.iter().map(|c| c.errors).sum::<u64>(),
        "refused": counts.iter().map(|c| c.refused).sum::<u64>(),
    });
    if played.len() > 1 {
        report["scenarios"] = played
            .iter()
            .zip(&counts)
            .map(|(p, c)| {
                json!({"scenario": p.file.display().to_string(), "calls": c.calls,
                    "errors": c.errors, "refused": c.refused})
            })
            .collect();
    }
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

/// Worker `index`'s share of `total`, spread as evenly as possible.
fn share(total: u64, workers: u64, index: u64) -> u64 {
    total / workers + u64::from(index < total % workers)
}

/// Runs `calls` calls on this thread, `lanes` at a time (the mix applies
/// to this worker's own sequence of calls); per scenario, the calls run and
/// those whose trace has an `error` event.
fn run_worker(
    played: &[Played],
    modules: Arc<ModuleSet>,
    calls: u64,
    lanes: u64,
    worker: u64,
    max_calls: usize,
) -> anyhow::Result<(Vec<Counts>, usize)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .context("cannot start the runtime")?;
    let local = tokio::task::LocalSet::new();
    let mut options = Options::default();
    options.limits.max_calls = max_calls;
    let host = Rc::new(ModuleHost::new(modules, options.limits)?);
    let next = Rc::new(Cell::new(0u64));
    let counts = Rc::new(RefCell::new(vec![Counts::default(); played.len()]));
    let lua_peak = Rc::new(Cell::new(0usize));
    local.block_on(&runtime, async {
        let mut tasks = Vec::new();
        for _ in 0..lanes.min(calls) {
            let host = Rc::clone(&host);
            let next = Rc::clone(&next);
            let counts = Rc::clone(&counts);
            let lua_peak = Rc::clone(&lua_peak);
            let options = options.clone();
            let plays: Vec<(Scenario, Arc<AccountFlows>)> = played
                .iter()
                .map(|p| (p.scenario.clone(), Arc::clone(&p.account)))
                .collect();
            let every: Vec<u64> = played.iter().map(|p| p.every).collect();
            tasks.push(tokio::task::spawn_local(async move {
                loop {
                    let n = next.get();
                    if n >= calls {
                        return;
                    }
                    next.set(n + 1);
                    // Call ids 1.. within each worker, unique across workers.
                    let index = n * 1000 + worker + 1;
                    let which = pick(&every, n);
                    let (scenario, account) = &plays[which];
                    let outcome =
                        sim::simulate(scenario, account, host.as_ref(), &options, index).await;
                    lua_peak.set(lua_peak.get().max(host.used_memory()));
                    let failed = outcome.trace.events().iter().any(|e| e.name == "error");
                    let mut counts = counts.borrow_mut();
                    counts[which].calls += 1;
                    counts[which].errors += u64::from(failed);
                    counts[which].refused += u64::from(outcome.end == EndReason::Overload);
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    });
    let counts = Rc::try_unwrap(counts).map_or_else(|rc| rc.borrow().clone(), RefCell::into_inner);
    Ok((counts, lua_peak.get()))
}

/// Peak resident set size of this process (kB), from /proc on Linux.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}
