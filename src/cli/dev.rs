//! `callflow dev`: the server plus the edit-save-hear loop. After every
//! reload it re-runs the scenario files and prints, as a diff, how each
//! scenario's trace changed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use clap::Args;
use similar::TextDiff;

use super::serve::{self, ServeArgs};
use super::simulate::{dirs_for, read_scenario};
use callflow::catalog::Catalog;
use callflow::host::ModuleSet;
use callflow::reload::Outcome;
use callflow::sim::{self, Options};
use callflow::store::{FlowsDir, Store};

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Scenario files, or directories searched for `*.json` scenarios,
    /// re-run after every reload (default: callflow.toml's `tests`, else
    /// tests/scenarios if it exists, else tests).
    #[arg(value_name = "SCENARIOS")]
    scenarios: Vec<PathBuf>,

    #[command(flatten)]
    serve: ServeArgs,
}

impl DevArgs {
    /// What the command line left out, from the project file.
    pub(super) fn apply(&mut self, project: &super::Project) {
        if self.scenarios.is_empty() {
            self.scenarios.clone_from(&project.tests);
        }
        self.serve.apply(project);
    }
}

/// The scenario files under `paths`, sorted.
fn scenario_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let defaults = [PathBuf::from("tests/scenarios"), PathBuf::from("tests")];
    let roots: Vec<PathBuf> = if paths.is_empty() {
        defaults
            .iter()
            .find(|p| p.is_dir())
            .cloned()
            .into_iter()
            .collect()
    } else {
        paths.to_vec()
    };
    let mut files = Vec::new();
    for root in &roots {
        if root.is_file() {
            files.push(root.clone());
        } else if root.is_dir() {
            collect(root, &mut files);
        } else {
            anyhow::bail!("no scenario file or directory {}", root.display());
        }
    }
    files.sort();
    Ok(files)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

/// Scripts and flows loaded for one round of re-runs, by (flows directory,
/// scripts directories): scenarios mostly share a few.
type Loads = BTreeMap<(PathBuf, Vec<PathBuf>), (Arc<ModuleSet>, Catalog)>;

/// Simulates one scenario file as `callflow simulate FILE --scripts ...`
/// would: its trace, or why it could not run.
fn run_scenario(path: &Path, scripts: &[PathBuf], flows: &Path, loads: &mut Loads) -> String {
    let mut attempt = || -> anyhow::Result<String> {
        let loaded = read_scenario(path)?;
        let (scenario_flows, extra) = dirs_for(None, Some(&loaded));
        let flows_dir = if loaded.scenario.flows.is_some() {
            scenario_flows
        } else {
            flows.to_path_buf()
        };
        let dirs: Vec<PathBuf> = scripts.iter().chain(&extra).cloned().collect();
        let key = (flows_dir.clone(), dirs.clone());
        if !loads.contains_key(&key) {
            let (modules, _) = ModuleSet::load(&dirs, 1);
            let sources = FlowsDir::new(&flows_dir)
                .read()
                .with_context(|| format!("cannot read the flows of {}", path.display()))?;
            let (catalog, _) = Catalog::build(sources, &modules);
            loads.insert(key.clone(), (Arc::new(modules), catalog));
        }
        let (modules, catalog) = &loads[&key];
        let account = sim::account_for(&loaded.scenario, catalog)?;
        let outcome = sim::run_one(
            &loaded.scenario,
            account,
            Arc::clone(modules),
            &Options::default(),
        )?;
        Ok(outcome.trace.render_text())
    };
    attempt().unwrap_or_else(|e| format!("error: {e:#}\n"))
}

/// The traces of the last run, by scenario file.
struct Runs {
    files: Vec<PathBuf>,
    scripts: Vec<PathBuf>,
    flows: PathBuf,
    traces: Mutex<BTreeMap<PathBuf, String>>,
}

impl Runs {
    /// Runs every scenario; prints the ones whose trace changed since the
    /// last run, as unified diffs, and a summary line.
    fn rerun(&self) {
        let mut traces = self.traces.lock().unwrap_or_else(PoisonError::into_inner);
        let mut changed = 0;
        let mut loads = Loads::new();
        for file in &self.files {
            let trace = run_scenario(file, &self.scripts, &self.flows, &mut loads);
            if let Some(before) = traces.get(file)
                && *before != trace
            {
                changed += 1;
                let name = file.display().to_string();
                eprint!(
                    "{}",
                    TextDiff::from_lines(before.as_str(), trace.as_str())
                        .unified_diff()
                        .context_radius(2)
                        .header(&format!("{name} (before)"), &format!("{name} (after)"))
                );
            }
            traces.insert(file.clone(), trace);
        }
        eprintln!(
            "callflow dev: {} scenario(s) re-run, {changed} trace(s) changed",
            self.files.len()
        );
    }
}

pub fn run(args: &DevArgs) -> anyhow::Result<ExitCode> {
    let files = scenario_files(&args.scenarios)?;
    let reloader = serve::start(&args.serve)?;
    let runs = Arc::new(Runs {
        files,
        scripts: args.serve.scripts.scripts.clone(),
        flows: args.serve.flows.dir().to_path_buf(),
        traces: Mutex::new(BTreeMap::new()),
    });
    runs.rerun();
    {
        let runs = Arc::clone(&runs);
        reloader.set_observer(Arc::new(move |trigger, result| {
            serve::print_reload(trigger, result);
            if matches!(result, Ok(Outcome::Published { .. })) {
                runs.rerun();
            }
        }));
    }
    serve::serve(&args.serve, &reloader)
}
