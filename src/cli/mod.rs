//! Command-line interface: one file per subcommand. Subcommands write their
//! results to stdout and return the process exit code; problems that make a
//! command impossible (a missing flows directory, an unknown account) are
//! `anyhow` errors, printed by `main` with exit code 2.

mod account;
mod bench;
mod check;
mod dev;
mod dev_tests;
mod graph;
mod init;
mod junit;
mod project;
mod route;
mod scenario;
mod serve;
mod simulate;
mod suite;
mod test;
mod types;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use callflow::catalog::{AccountFlows, Catalog, Modules};
use callflow::host::ModuleSet;
use callflow::model::Diagnostic;
use callflow::store::{FlowsDir, Store};
use project::Project;

/// Exit code for unusable input (bad arguments, missing files).
pub const EXIT_USAGE: u8 = 2;

/// `callflow --version`: the package version, the commit and the build
/// date (`unknown` where build.rs could not tell).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("CALLFLOW_COMMIT"),
    ", built ",
    env!("CALLFLOW_BUILD_DATE"),
    ")"
);

/// A Kazoo-compatible callflow interpreter whose modules are Lua scripts.
#[derive(Debug, Parser)]
#[command(
    name = "callflow",
    version = VERSION,
    about,
    long_about = None,
    after_help = "Every command but `init` and `scenario` reads callflow.toml, the project file, from the current directory or the nearest one above it: its flows, scripts, tests, traces and [serve] settings stand in for the flags not given."
)]
pub struct Cli {
    /// Log more (-v: info, and which project file is used; -vv: debug,
    /// -vvv: trace); `RUST_LOG` overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate every document of a flows directory and report all problems.
    ///
    /// Exit status: 0 when there are no errors (warnings allowed), 1 when there
    /// are errors, 2 when the flows directory cannot be read.
    Check(check::CheckArgs),
    /// Show which callflow a dialled number reaches, as Kazoo would route it.
    ///
    /// Exit status: 0 when a callflow is found, 1 when none is, 2 on unusable
    /// input (missing flows directory, unknown account).
    Route(route::RouteArgs),
    /// Simulate a call in virtual time and print its trace.
    ///
    /// Give a scenario file, or describe the call with --to (and --account,
    /// --from, --dtmf, --hangup-at). Exit status: 0 when the call was
    /// simulated without an `error` event in its trace, 1 when it had one
    /// (a module raised or did not load; the trace is printed all the same;
    /// --keep-going makes it 0), 2 on a bad scenario or unusable input.
    Simulate(simulate::SimulateArgs),
    /// Run scenario files and compare each call's trace with its
    /// expectation (a stored <name>.trace, an inline "expect", or both).
    ///
    /// Runs every *.json under the paths (default: tests) in parallel and
    /// prints the results in file order, a diff for each failure, then
    /// `N passed, N failed`. --update writes the expected traces from the
    /// calls as they run now. Errors in the scripts and flows the scenarios
    /// load are listed first and fail the run (--allow-broken: warnings).
    /// Exit status: 0 when all pass and nothing is broken, 1 when one fails
    /// or a script or flow has an error, 2 on an unusable scenario, path or
    /// expected trace.
    Test(test::TestArgs),
    /// Draw a callflow as a Graphviz (dot) or Mermaid diagram: child keys
    /// on the edges, module data on the nodes; --trace highlights the path
    /// a call took, --coverage shades what no scenario reaches.
    ///
    /// Exit status: 0 when the diagram is printed, 2 on unusable input
    /// (unknown callflow or account, unreadable trace, no scenario).
    Graph(graph::GraphArgs),
    /// Scaffold a project: flows, a custom module typed for your editor,
    /// scenarios with expected traces, a README and a CI workflow that
    /// runs `callflow test`; its callflow.toml lets every command run in
    /// it without flags.
    ///
    /// Exit status: 0 when the project is written, 2 when the directory is
    /// not empty (without --force) or a file cannot be written.
    Init(init::InitArgs),
    /// Run many simulated calls of a scenario at once and print throughput
    /// and memory as JSON.
    ///
    /// Exit status: 0 when the calls ran (calls with an `error` event are
    /// counted in "errors", not a failure), 2 on unusable input.
    Bench(bench::BenchArgs),
    /// Serve Kazoo's callflows REST API (/v2/accounts/{id}/callflows) on the
    /// flows directory.
    ///
    /// Clients exchange an API key (`callflow api-key create`) for a token
    /// (PUT `/v2/api_auth`). Writes go to the flows directory atomically and
    /// route the next call. Stops cleanly on Ctrl-C or SIGTERM.
    ///
    /// Exit status (and `dev`'s): 0 after a clean stop, 2 when it cannot
    /// start (flows that cannot be read, an address in use).
    Serve(serve::ServeArgs),
    /// The server plus the edit-save-hear loop for module authors: when a
    /// script, a flow or a scenario changes, re-runs the scenarios (under
    /// --tests) it can affect and reports pass/fail as `callflow test`
    /// does, with a diff for each failure and a summary line.
    Dev(dev::DevArgs),
    /// Make scenario files: `from-trace` turns a real call's trace into a
    /// scenario that replays it.
    #[command(subcommand)]
    Scenario(scenario::ScenarioCommand),
    /// Manage accounts (folders of the flows directory).
    #[command(subcommand)]
    Account(account::AccountCommand),
    /// Manage an account's API keys: create, list, revoke.
    ///
    /// Keys are kept in the account's account.json as SHA-256 hashes with
    /// an id, a name, and when each was created and last used.
    #[command(subcommand, name = "api-key")]
    ApiKey(account::ApiKeyCommand),
}

/// Where module scripts come from, besides the built-in ones.
#[derive(Debug, Args)]
struct ScriptsArgs {
    /// A directory of module scripts (<module>.lua, lib/<helper>.lua): adds
    /// modules and overrides built-in ones of the same name. Repeatable.
    /// Default: callflow.toml's `scripts`, else none.
    #[arg(long = "scripts", value_name = "DIR")]
    scripts: Vec<PathBuf>,
}

impl ScriptsArgs {
    /// The built-in scripts plus those of `--scripts` (and `extra`), each
    /// directory once.
    fn load(&self, extra: &[PathBuf]) -> (ModuleSet, Vec<Diagnostic>) {
        ModuleSet::load(&self.dirs(extra), 1)
    }

    /// The directories of `--scripts` and `extra`, each once, in order.
    fn dirs(&self, extra: &[PathBuf]) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for dir in self.scripts.iter().chain(extra) {
            if !dirs.contains(dir) {
                dirs.push(dir.clone());
            }
        }
        dirs
    }

    /// Without `--scripts`, the project's script directories.
    fn apply(&mut self, project: &Project) {
        if self.scripts.is_empty() {
            self.scripts.clone_from(&project.scripts);
        }
    }
}

/// Where the flows directory is.
#[derive(Debug, Args)]
struct FlowsArgs {
    /// The flows directory: <DIR>/<account>/callflows/<id>.json, ...
    /// Default: callflow.toml's `flows`, else flows.
    #[arg(long, value_name = "DIR")]
    flows: Option<PathBuf>,
}

impl FlowsArgs {
    /// The flows directory: `--flows`, the project's, else `flows`.
    fn dir(&self) -> &Path {
        self.flows.as_deref().unwrap_or(Path::new(DEFAULT_FLOWS))
    }

    /// Without `--flows`, the project's flows directory.
    fn apply(&mut self, project: &Project) {
        if self.flows.is_none() {
            self.flows.clone_from(&project.flows);
        }
    }
}

/// The flows directory when neither a flag, a scenario nor the project
/// names one.
const DEFAULT_FLOWS: &str = "flows";

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Human-readable text.
    Text,
    /// One JSON object, for tools.
    Json,
}

/// Runs the parsed command line; returns the exit code.
pub fn run(mut cli: Cli) -> anyhow::Result<ExitCode> {
    // `init` makes a project and `scenario from-trace` writes the paths it
    // is given: neither reads one.
    if !matches!(cli.command, Command::Init(_) | Command::Scenario(_))
        && let Some(project) = project::discover()?
    {
        if cli.verbose > 0 {
            eprintln!("callflow: using project file {}", project.file.display());
        }
        cli.command.apply(&project);
    }
    match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Route(args) => route::run(&args),
        Command::Simulate(args) => simulate::run(&args),
        Command::Test(args) => test::run(&args),
        Command::Graph(args) => graph::run(&args),
        Command::Init(args) => init::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Dev(args) => dev::run(&args),
        Command::Scenario(command) => scenario::run(&command),
        Command::Account(command) => account::run_account(&command),
        Command::ApiKey(command) => account::run_api_key(&command),
    }
}

impl Command {
    /// Fills in what the command line left out from the project file.
    fn apply(&mut self, project: &Project) {
        match self {
            Command::Check(args) => args.apply(project),
            Command::Route(args) => args.apply(project),
            Command::Simulate(args) => args.apply(project),
            Command::Test(args) => args.apply(project),
            Command::Graph(args) => args.apply(project),
            Command::Bench(args) => args.apply(project),
            Command::Serve(args) => args.apply(project),
            Command::Dev(args) => args.apply(project),
            Command::Account(command) => command.apply(project),
            Command::ApiKey(command) => command.apply(project),
            Command::Init(_) | Command::Scenario(_) => {}
        }
    }
}

impl Cli {
    /// The log filter when neither `RUST_LOG` nor -v says: the server logs
    /// one line per request (info); other commands only warnings. The SIP
    /// stack logs every packet at info: it says only warnings unless -vv.
    pub fn default_log_level(&self) -> &'static str {
        match (&self.command, self.verbose) {
            (_, 0) if !matches!(self.command, Command::Serve(_) | Command::Dev(_)) => "warn",
            (_, 0 | 1) => "info,rsipstack=warn",
            (_, 2) => "debug",
            _ => "trace",
        }
    }
}

/// Sends logs to stderr; the level comes from `RUST_LOG`, else `default`.
pub fn init_logging(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .init();
}

impl FlowsArgs {
    /// Reads and validates the flows directory.
    fn load(&self, modules: &dyn Modules) -> anyhow::Result<(Catalog, Vec<Diagnostic>)> {
        load_flows(self.dir(), modules)
    }
}

/// Reads and validates a flows directory.
fn load_flows(
    dir: &std::path::Path,
    modules: &dyn Modules,
) -> anyhow::Result<(Catalog, Vec<Diagnostic>)> {
    let sources = FlowsDir::new(dir)
        .read()
        .context("cannot load flows (choose the flows directory with --flows DIR)")?;
    Ok(Catalog::build(sources, modules))
}

/// Prints problems that do not stop a command (to stderr), with a count.
fn report_problems(what: &str, diagnostics: &[Diagnostic]) {
    let (errors, _) = callflow::model::diagnostic::count(diagnostics);
    for diag in diagnostics.iter().filter(|d| d.is_error()) {
        eprintln!("{diag}");
    }
    if errors > 0 {
        eprintln!(
            "warning: {what} have {errors} error(s); running with what loaded (see `callflow check`)"
        );
    }
}

/// Picks the account named by `--account`, or the only one.
fn select_account<'a>(
    catalog: &'a Catalog,
    account: Option<&str>,
    flows: &std::path::Path,
) -> anyhow::Result<&'a AccountFlows> {
    if let Some(id) = account {
        if let Some(found) = catalog.account(id) {
            return Ok(found);
        }
        bail!(
            "account {id:?} not found in {}; accounts: {}",
            flows.display(),
            account_list(catalog)
        );
    }
    if let Some(only) = catalog.single_account() {
        return Ok(only);
    }
    if catalog.accounts().next().is_none() {
        bail!("{} holds no account folders", flows.display());
    }
    bail!(
        "{} holds several accounts, choose one with --account: {}",
        flows.display(),
        account_list(catalog)
    )
}

fn account_list(catalog: &Catalog) -> String {
    let ids: Vec<&str> = catalog.accounts().map(|a| a.account.id.as_str()).collect();
    if ids.is_empty() {
        "none".to_owned()
    } else {
        ids.join(", ")
    }
}
