//! A suite of scenario files for `callflow test` (and `graph --coverage`):
//! finds them, loads each with its flows and scripts (each distinct pair
//! once), and runs them on worker threads, reporting each result as it
//! comes in.
//!
//! Each worker thread has its own runtime and, per flows/scripts pair, its
//! own Lua VM (the VM is not `Send`); scenarios are handed out one at a time
//! from a shared counter, so a slow one does not hold up a whole share.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::bail;

use super::simulate::{Loaded, dirs_for_in, read_scenario};
use super::{ScriptsArgs, load_flows, report_problems};
use callflow::catalog::{AccountFlows, Catalog};
use callflow::host::{ModuleHost, ModuleSet};
use callflow::model::Diagnostic;
use callflow::sim::{self, Options, Scenario};
use callflow::testing::coverage::{Hits, Report, measure};
use callflow::trace::Trace;

/// The extension of a stored expected trace, next to its scenario.
pub const TRACE_EXTENSION: &str = "trace";

/// One scenario file, ready to run.
pub struct Case {
    /// The scenario file, as found under the paths given.
    pub path: PathBuf,
    pub scenario: Scenario,
    /// `<name>.trace` next to the scenario.
    pub trace_path: PathBuf,
    /// Its contents, when it exists.
    pub expected: Option<String>,
    /// Index into [`Suite::envs`].
    pub env: usize,
    pub account: Arc<AccountFlows>,
}

/// A flows directory with a set of scripts, loaded once for every scenario
/// that uses them.
pub struct Env {
    pub flows: PathBuf,
    /// The scripts directories (`--scripts`, then the scenario's).
    pub scripts: Vec<PathBuf>,
    pub modules: Arc<ModuleSet>,
    pub catalog: Catalog,
}

/// Every scenario of a run, in the order they were found.
pub struct Suite {
    pub cases: Vec<Case>,
    pub envs: Vec<Env>,
    /// The errors of the scripts and flows the scenarios use, and of the
    /// project's flows (scripts that do not load, flows `callflow check`
    /// rejects), each once.
    pub broken: Vec<Diagnostic>,
}

/// Where a suite's scenarios find their flows and scripts, besides their
/// own "flows" and "scripts".
pub struct Dirs<'a> {
    /// `--flows`: every scenario's flows directory.
    pub flows_flag: Option<&'a PathBuf>,
    /// The project's flows, for a scenario that names none.
    pub project_flows: Option<&'a PathBuf>,
    /// `--scripts` (or the project's), loaded for every scenario.
    pub scripts: &'a ScriptsArgs,
}

/// What running one scenario gave.
pub struct Ran {
    pub trace: Trace,
    /// Wall-clock time of the simulation (for JUnit).
    pub elapsed: Duration,
}

/// The scenario files under `paths` (default: `tests`), at least one.
pub fn find_under(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let default = [PathBuf::from("tests")];
    let paths = if paths.is_empty() {
        if !default[0].is_dir() {
            bail!(
                "no tests directory here: give scenario files or directories (PATH...), or scaffold a project with `callflow init DIR`"
            );
        }
        &default[..]
    } else {
        paths
    };
    let files = find(paths)?;
    if files.is_empty() {
        bail!("no scenario files (*.json) under {}", list(paths));
    }
    Ok(files)
}

/// Paths for a message: `a, b`.
pub fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The scenario files under `paths`: files as given, directories searched
/// recursively for `*.json` (hidden entries skipped), each directory in name
/// order. A path that does not exist is an error.
pub fn find(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for path in paths {
        let metadata = match std::fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(err) => bail!("cannot read {}: {err}", path.display()),
        };
        if metadata.is_dir() {
            walk(path, &mut found)?;
        } else {
            found.push(path.clone());
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    found.retain(|path| seen.insert(path.clone()));
    Ok(found)
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|err| anyhow::anyhow!("cannot read the directory {}: {err}", dir.display()))?;
    let mut entries: Vec<(String, PathBuf)> = entries
        .iter()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(name, _)| !name.starts_with('.'))
        .collect();
    entries.sort();
    for (_, path) in entries {
        // Symbolic links to directories are not followed (no cycles).
        let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        if is_dir {
            walk(&path, found)?;
        } else if path.extension().is_some_and(|e| e == "json") && path.is_file() {
            found.push(path);
        }
    }
    Ok(())
}

/// Reads every scenario file and its expected trace, and loads the flows
/// and scripts they use. Every unusable file is reported at once, each
/// naming its file. The errors of scripts and flows are kept in
/// [`Suite::broken`]; with `warn`, they are also printed on stderr as
/// warnings.
pub fn load(files: &[PathBuf], dirs: &Dirs<'_>, warn: bool) -> anyhow::Result<Suite> {
    let (suite, problems) = load_each(files, dirs, warn);
    if !problems.is_empty() {
        bail!(
            "{} unusable:\n  {}",
            if problems.len() == 1 {
                "a scenario is".to_owned()
            } else {
                format!("{} scenarios are", problems.len())
            },
            problems
                .into_iter()
                .map(|(_, problem)| problem)
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
    Ok(suite)
}

/// Reads what it can of `files` (as [`load`]): the suite of the usable
/// ones, and each unusable file with why.
pub fn load_each(
    files: &[PathBuf],
    dirs: &Dirs<'_>,
    warn: bool,
) -> (Suite, Vec<(PathBuf, String)>) {
    let mut problems: Vec<(PathBuf, String)> = Vec::new();
    let mut broken: Vec<Diagnostic> = Vec::new();
    let mut cases = Vec::new();
    let mut envs: Vec<Env> = Vec::new();
    let mut env_index: BTreeMap<(PathBuf, Vec<PathBuf>), Result<usize, String>> = BTreeMap::new();
    // Flows directories whose problems were printed (once, whatever the
    // scripts they are used with).
    let mut reported = std::collections::BTreeSet::new();
    for path in files {
        let loaded = match read_scenario(path) {
            Ok(loaded) => loaded,
            Err(err) => {
                problems.push((path.clone(), format!("{err:#}")));
                continue;
            }
        };
        let trace_path = path.with_extension(TRACE_EXTENSION);
        let expected = match std::fs::read(&trace_path) {
            Ok(bytes) => {
                let Ok(text) = String::from_utf8(bytes) else {
                    problems.push((
                        path.clone(),
                        format!("{} is not UTF-8 text", trace_path.display()),
                    ));
                    continue;
                };
                Some(text)
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => {
                problems.push((
                    path.clone(),
                    format!("cannot read {}: {err}", trace_path.display()),
                ));
                continue;
            }
        };
        let (flows, scenario_scripts) =
            dirs_for_in(dirs.flows_flag, Some(&loaded), dirs.project_flows);
        let key = (flows.clone(), scenario_scripts.clone());
        let env = env_index
            .entry(key)
            .or_insert_with(|| {
                let (env, errors) = load_env(
                    &flows,
                    &scenario_scripts,
                    dirs.scripts,
                    warn.then_some(&mut reported),
                )?;
                add_new(&mut broken, errors);
                envs.push(env);
                Ok(envs.len() - 1)
            })
            .clone();
        let env = match env {
            Ok(env) => env,
            Err(err) => {
                problems.push((path.clone(), format!("{}: {err}", path.display())));
                continue;
            }
        };
        let Loaded { scenario, .. } = loaded;
        let account = match sim::account_for(&scenario, &envs[env].catalog) {
            Ok(account) => Arc::clone(account),
            Err(err) => {
                problems.push((
                    path.clone(),
                    format!(
                        "bad scenario {}: {err} (flows: {})",
                        path.display(),
                        envs[env].flows.display()
                    ),
                ));
                continue;
            }
        };
        cases.push(Case {
            path: path.clone(),
            scenario,
            trace_path,
            expected,
            env,
            account,
        });
    }
    // The project's flows count even when no scenario uses them.
    if let Some(flows) = dirs.project_flows
        && !envs.iter().any(|env| env.flows == *flows)
        && flows.is_dir()
        && let Ok((_, errors)) = load_env(flows, &[], dirs.scripts, warn.then_some(&mut reported))
    {
        add_new(&mut broken, errors);
    }
    (
        Suite {
            cases,
            envs,
            broken,
        },
        problems,
    )
}

/// Adds the diagnostics not already in `list`.
fn add_new(list: &mut Vec<Diagnostic>, more: Vec<Diagnostic>) {
    for diag in more {
        if !list.iter().any(|d| d.to_string() == diag.to_string()) {
            list.push(diag);
        }
    }
}

/// Loads a flows directory and the scripts (built-in, `--scripts`, the
/// scenario's), with the errors in them; the error is a message for every
/// scenario using them. With `reported`, prints the problems of each
/// flows directory once.
fn load_env(
    flows: &Path,
    scenario_scripts: &[PathBuf],
    scripts: &ScriptsArgs,
    reported: Option<&mut std::collections::BTreeSet<PathBuf>>,
) -> Result<(Env, Vec<Diagnostic>), String> {
    for dir in scripts.scripts.iter().chain(scenario_scripts) {
        if !dir.is_dir() {
            return Err(format!(
                "the scripts directory {} does not exist",
                dir.display()
            ));
        }
    }
    let (modules, script_problems) = scripts.load(scenario_scripts);
    let (catalog, flow_problems) = load_flows(flows, &modules).map_err(|e| format!("{e:#}"))?;
    if let Some(reported) = reported
        && reported.insert(flows.to_path_buf())
    {
        report_problems("the scripts", &script_problems);
        report_problems("the flows", &flow_problems);
    }
    let errors = script_problems
        .into_iter()
        .chain(flow_problems)
        .filter(Diagnostic::is_error)
        .collect();
    let env = Env {
        flows: flows.to_path_buf(),
        scripts: scripts
            .scripts
            .iter()
            .chain(scenario_scripts)
            .cloned()
            .collect(),
        modules: Arc::new(modules),
        catalog,
    };
    Ok((env, errors))
}

/// The number of worker threads: `--jobs`, else one per CPU.
pub fn jobs(flag: Option<u64>) -> usize {
    flag.map_or_else(
        || std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        |n| usize::try_from(n).unwrap_or(usize::MAX),
    )
}

/// Runs the cases on `jobs` worker threads; `done` sees each result (by
/// case index) on the calling thread as soon as it is ready.
pub fn run(suite: &Suite, jobs: usize, mut done: impl FnMut(usize, Result<Ran, String>)) {
    let workers = jobs.clamp(1, suite.cases.len().max(1));
    let next = AtomicUsize::new(0);
    let (sender, receiver) = mpsc::channel();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let sender = sender.clone();
            let next = &next;
            scope.spawn(move || worker(suite, next, &sender));
        }
        drop(sender);
        for (index, result) in receiver {
            done(index, result);
        }
    });
}

/// Takes cases from `next` until none is left.
fn worker(suite: &Suite, next: &AtomicUsize, results: &mpsc::Sender<(usize, Result<Ran, String>)>) {
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            // Without a runtime this worker cannot run anything: fail the
            // cases it takes, so that none is left unreported.
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= suite.cases.len() {
                    return;
                }
                let _ = results.send((index, Err(format!("cannot start the runtime: {err}"))));
            }
        }
    };
    let options = Options::default();
    let mut hosts: BTreeMap<usize, ModuleHost> = BTreeMap::new();
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let Some(case) = suite.cases.get(index) else {
            return;
        };
        if let std::collections::btree_map::Entry::Vacant(slot) = hosts.entry(case.env) {
            match ModuleHost::new(Arc::clone(&suite.envs[case.env].modules), options.limits) {
                Ok(host) => {
                    slot.insert(host);
                }
                Err(err) => {
                    let _ = results.send((index, Err(format!("cannot start the Lua VM: {err}"))));
                    continue;
                }
            }
        }
        let Some(host) = hosts.get(&case.env) else {
            continue;
        };
        // The wall clock times the test for JUnit's `time`; the simulated
        // call never reads it.
        #[allow(clippy::disallowed_methods)]
        let started = std::time::Instant::now();
        let local = tokio::task::LocalSet::new();
        let outcome = local.block_on(
            &runtime,
            sim::simulate(&case.scenario, &case.account, host, &options, 0),
        );
        let ran = Ran {
            trace: outcome.trace,
            elapsed: started.elapsed(),
        };
        // The receiver only goes away when the whole run does.
        let _ = results.send((index, Ok(ran)));
    }
}

/// The flow coverage of every callflow in the flows directories the suite
/// used, from the traces its cases gave (by case index; `None` for a case
/// that did not run). A flows directory used with several script sets
/// counts once.
pub fn coverage(suite: &Suite, traces: &[Option<&Trace>]) -> Report {
    let dir_key = |env: usize| {
        let flows = &suite.envs[env].flows;
        std::fs::canonicalize(flows).unwrap_or_else(|_| flows.clone())
    };
    let mut hits: BTreeMap<(PathBuf, String), Hits> = BTreeMap::new();
    for (case, trace) in suite.cases.iter().zip(traces) {
        if let Some(trace) = trace {
            hits.entry((dir_key(case.env), case.account.account.id.to_string()))
                .or_default()
                .add(trace);
        }
    }
    let mut report = Report::default();
    let mut done = std::collections::BTreeSet::new();
    let none = Hits::new();
    for (index, env) in suite.envs.iter().enumerate() {
        let key = dir_key(index);
        if !done.insert(key.clone()) {
            continue;
        }
        for account in env.catalog.accounts() {
            let id = account.account.id.to_string();
            let account_hits = hits.get(&(key.clone(), id.clone())).unwrap_or(&none);
            for (callflow_id, callflow) in &account.callflows {
                if callflow.is_deleted() {
                    continue;
                }
                let file = account
                    .files
                    .get(callflow_id)
                    .cloned()
                    .unwrap_or_else(|| callflow_id.to_string());
                report
                    .callflows
                    .push(measure(&id, &file, callflow, account_hits));
            }
        }
    }
    report
}
