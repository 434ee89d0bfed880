//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use callflow::catalog::{AccountSource, Catalog, KazooModules, SourceFile, Sources};
use callflow::host::{ModuleHost, ModuleSet};
use callflow::ids::{AccountId, DocId};
use callflow::model::Diagnostic;
use callflow::sim::scenario::resolve;
use callflow::sim::{self, Options, Scenario};
use callflow::store::{FlowsDir, Store};
use callflow::trace::Trace;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// insta settings: snapshots go to the top-level `snapshots/` folder, named
/// without the module path.
pub fn insta_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(root().join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings
}

/// Runs the `callflow` binary in `dir` with `args`.
pub fn callflow(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_callflow"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        // `--types` uses the checker built beside the binary.
        .env_remove("CALLFLOW_LUAU_CHECK")
        .output()
        .expect("the callflow binary runs")
}

/// stdout, stderr and exit code of a run, for snapshots.
pub fn render_output(output: &Output) -> String {
    let mut text = format!("exit: {}\n", output.status.code().unwrap_or(-1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stdout.is_empty() {
        text.push_str("--- stdout\n");
        text.push_str(&stdout);
    }
    if !stderr.is_empty() {
        text.push_str("--- stderr\n");
        text.push_str(&stderr);
    }
    text
}

/// Builds a catalog of one account `test` from callflow documents given as
/// (id, path shown in diagnostics, text).
pub fn catalog_of(callflows: &[(&str, &str, &str)]) -> (Catalog, Vec<Diagnostic>) {
    catalog_with(&KazooModules, callflows)
}

/// The built-in modules (scripts/), loaded once.
pub fn builtin_modules() -> &'static callflow::host::ModuleSet {
    static MODULES: std::sync::OnceLock<callflow::host::ModuleSet> = std::sync::OnceLock::new();
    MODULES.get_or_init(|| {
        let (set, problems) = callflow::host::ModuleSet::load(&[] as &[&Path], 1);
        assert!(problems.is_empty(), "{problems:?}");
        set
    })
}

/// An account of the given callflows `(id, path, text)`, checked against
/// `modules`.
pub fn catalog_with(
    modules: &dyn callflow::catalog::Modules,
    callflows: &[(&str, &str, &str)],
) -> (Catalog, Vec<Diagnostic>) {
    let account = AccountSource {
        id: AccountId::new("test").unwrap(),
        account: None,
        callflows: callflows
            .iter()
            .map(|(id, path, text)| {
                (
                    DocId::new(id).unwrap(),
                    SourceFile {
                        path: (*path).to_owned(),
                        text: (*text).to_owned(),
                    },
                )
            })
            .collect(),
        documents: Vec::new(),
    };
    Catalog::build(
        Sources {
            accounts: vec![account],
            diagnostics: Vec::new(),
        },
        modules,
    )
}

/// Each diagnostic as `severity code pointer`, for exact comparisons.
pub fn codes(diagnostics: &[Diagnostic]) -> Vec<String> {
    diagnostics
        .iter()
        .map(|d| format!("{} {} {}", d.severity.as_str(), d.code, d.pointer))
        .collect()
}

/// Simulates the scenario file at `path` (flows and scripts as the file
/// says, relative to it; the sample flows otherwise) on a fresh VM.
pub fn simulate_file(path: &Path) -> Trace {
    let scenario = Scenario::parse(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Relative to the repository root (the tests' working directory), so
    // that script paths in traces are the same on every machine.
    let relative = path.strip_prefix(root()).unwrap_or(path);
    simulate_in(&scenario, relative.parent().unwrap())
}

/// Simulates `scenario` as if its file were in `base` (its flows and
/// scripts relative to it; the sample flows otherwise) on a fresh VM.
pub fn simulate_in(scenario: &Scenario, base: &Path) -> Trace {
    let flows = scenario
        .flows
        .as_ref()
        .map_or_else(|| PathBuf::from("flows"), |f| resolve(base, f));
    let scripts: Vec<PathBuf> = scenario.scripts.iter().map(|s| resolve(base, s)).collect();
    let (modules, problems) = ModuleSet::load(&scripts, 1);
    assert!(
        problems.iter().all(|d| !d.is_error()),
        "script problems: {problems:?}"
    );
    let (catalog, _) = Catalog::build(FlowsDir::new(flows).read().unwrap(), &modules);
    let account = Arc::clone(sim::account_for(scenario, &catalog).unwrap());
    let host = ModuleHost::new(Arc::new(modules), Options::default().limits).unwrap();
    run_local(sim::simulate(
        scenario,
        &account,
        &host,
        &Options::default(),
        0,
    ))
    .trace
}

/// Runs a future on a current-thread runtime with a `LocalSet`.
pub fn run_local<F: std::future::Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&runtime, future)
}

/// No hidden file (a write's temporary file) is left in `dir`.
pub fn assert_no_hidden_files(dir: &Path) {
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
}

/// Copies a directory tree (the sample flows, say) into `to`.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Reads a `callflow serve` child's stderr up to the line that says where it
/// listens: gives that address (`127.0.0.1:PORT`) and the lines before it
/// (what it removed at start, the SIP line, ...), then keeps reading the
/// rest in a thread so that a full pipe never blocks the server. Panics with
/// what it read if the server exits first.
pub fn serving_address(child: &mut std::process::Child) -> (String, Vec<String>) {
    use std::io::BufRead as _;
    let stderr = child.stderr.take().expect("serve's stderr is piped");
    let mut lines = std::io::BufReader::new(stderr).lines();
    let mut before = Vec::new();
    let address = loop {
        let Some(line) = lines.next() else {
            panic!(
                "the server never said where it listens:\n{}",
                before.join("\n")
            );
        };
        let line = line.unwrap();
        if let Some(rest) = line.split("http://").nth(1) {
            break rest.split('/').next().unwrap_or_default().to_owned();
        }
        before.push(line);
    };
    std::thread::spawn(move || lines.for_each(drop));
    (address, before)
}
