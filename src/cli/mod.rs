//! Command-line interface: one file per subcommand. Subcommands write their
//! results to stdout and return the process exit code; problems that make a
//! command impossible (a missing flows directory, an unknown account) are
//! `anyhow` errors, printed by `main` with exit code 2.

mod account;
mod bench;
mod check;
mod dev;
mod graph;
mod init;
mod junit;
mod route;
mod scenario;
mod serve;
mod simulate;
mod suite;
mod test;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use callflow::catalog::{AccountFlows, Catalog, Modules};
use callflow::host::ModuleSet;
use callflow::model::Diagnostic;
use callflow::store::{FlowsDir, Store};

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
#[command(name = "callflow", version = VERSION, about, long_about = None)]
pub struct Cli {
    /// Log more (-v: info, -vv: debug, -vvv: trace); `RUST_LOG` overrides.
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
    /// simulated (whatever happened in it), 2 on a bad scenario or unusable
    /// input.
    Simulate(simulate::SimulateArgs),
    /// Run scenario files and compare each call's trace with its
    /// expectation (a stored <name>.trace, an inline "expect", or both).
    ///
    /// Runs every *.json under the paths (default: tests) in parallel and
    /// prints the results in file order, a diff for each failure, then
    /// `N passed, N failed`. --update writes the expected traces from the
    /// calls as they run now. Exit status: 0 when all pass, 1 when one
    /// fails, 2 on an unusable scenario, path or expected trace.
    Test(test::TestArgs),
    /// Draw a callflow as a Graphviz (dot) or Mermaid diagram: child keys
    /// on the edges, module data on the nodes; --trace highlights the path
    /// a call took, --coverage shades what no scenario reaches.
    Graph(graph::GraphArgs),
    /// Scaffold a project: flows, a custom module typed for your editor,
    /// scenarios with expected traces, a README and a CI workflow that
    /// runs `callflow test`.
    Init(init::InitArgs),
    /// Run many simulated calls of a scenario at once and print throughput
    /// and memory as JSON.
    Bench(bench::BenchArgs),
    /// Serve Kazoo's callflows REST API (/v2/accounts/{id}/callflows) on the
    /// flows directory.
    ///
    /// Clients exchange an API key (`callflow api-key create`) for a token
    /// (PUT `/v2/api_auth`). Writes go to the flows directory atomically and
    /// route the next call. Stops cleanly on Ctrl-C or SIGTERM.
    Serve(serve::ServeArgs),
    /// The server plus the edit-save-hear loop for module authors: after each
    /// reload, re-runs the scenario files and prints how their traces
    /// changed.
    Dev(dev::DevArgs),
    /// Make scenario files: `from-trace` turns a real call's trace into a
    /// scenario that replays it.
    #[command(subcommand)]
    Scenario(scenario::ScenarioCommand),
    /// Manage accounts (folders of the flows directory).
    #[command(subcommand)]
    Account(account::AccountCommand),
    /// Manage API keys.
    #[command(subcommand, name = "api-key")]
    ApiKey(account::ApiKeyCommand),
}

/// Where module scripts come from, besides the built-in ones.
#[derive(Debug, Args)]
struct ScriptsArgs {
    /// A directory of module scripts (<module>.lua, lib/<helper>.lua): adds
    /// modules and overrides built-in ones of the same name. Repeatable.
    #[arg(long = "scripts", value_name = "DIR")]
    scripts: Vec<PathBuf>,
}

impl ScriptsArgs {
    /// The built-in scripts plus those of `--scripts` (and `extra`).
    fn load(&self, extra: &[PathBuf]) -> (ModuleSet, Vec<Diagnostic>) {
        let dirs: Vec<&PathBuf> = self.scripts.iter().chain(extra).collect();
        ModuleSet::load(&dirs, 1)
    }
}

/// Where the flows directory is.
#[derive(Debug, Args)]
struct FlowsArgs {
    /// The flows directory: <DIR>/<account>/callflows/<id>.json, ...
    #[arg(long, value_name = "DIR", default_value = "flows")]
    flows: PathBuf,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Human-readable text.
    Text,
    /// One JSON object, for tools.
    Json,
}

/// Runs the parsed command line; returns the exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
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
        load_flows(&self.flows, modules)
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
