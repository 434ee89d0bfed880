//! `callflow scenario`: making scenario files. `from-trace` turns the trace
//! of a real call into a scenario that replays it, with the expectation
//! `callflow test` checks ([`callflow::testing::from_trace`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use callflow::sim::scenario::resolve;
use callflow::testing::from_trace::{self, ScenarioPaths};

#[derive(Debug, Subcommand)]
pub enum ScenarioCommand {
    /// Turn a real call's trace into a scenario that replays it: any call
    /// that went wrong becomes a regression test for `callflow test`.
    ///
    /// The scenario replays the call as it came in (account, number,
    /// caller, start time), the caller's digits and hang-up at their real
    /// times, how long its media and speech lasted, the HTTP answers it met
    /// and the bridges that failed. Its "expect" holds what the call
    /// decided: the modules in order, the route, the digits each collection
    /// got, the branches and metaflows, module errors, the hang-up cause and
    /// the end reason; times are not compared. What the replay cannot
    /// reproduce is listed on stderr. Exit status: 0 when the scenario was
    /// written, 2 when the trace is unusable or a file cannot be written.
    FromTrace(FromTraceArgs),
}

#[derive(Debug, Args)]
pub struct FromTraceArgs {
    /// The trace of a real call: <traces>/<account>/<YYYY-MM-DD>/<call-id>.json.
    #[arg(value_name = "TRACE.json")]
    trace: PathBuf,

    /// Write the scenario here (atomically) instead of to stdout.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,

    /// The flows directory the scenario runs on, written into it relative
    /// to the scenario file (default: none, so `callflow test` uses its
    /// --flows or ./flows).
    #[arg(long, value_name = "DIR")]
    flows: Option<PathBuf>,

    /// A scripts directory the scenario loads, written into it relative to
    /// the scenario file. Repeatable.
    #[arg(long = "scripts", value_name = "DIR")]
    scripts: Vec<PathBuf>,
}

pub fn run(command: &ScenarioCommand) -> anyhow::Result<ExitCode> {
    let ScenarioCommand::FromTrace(args) = command;
    let text = std::fs::read_to_string(&args.trace)
        .with_context(|| format!("cannot read the trace {}", args.trace.display()))?;
    let document: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", args.trace.display()))?;
    // Paths are written relative to where the scenario goes: its folder, or
    // the current one when it goes to stdout.
    let base = args
        .output
        .as_deref()
        .and_then(Path::parent)
        .unwrap_or(Path::new(""));
    let paths = ScenarioPaths {
        flows: args
            .flows
            .as_deref()
            .map(|dir| relative_folder(dir, base, "flows directory"))
            .transpose()?,
        scripts: args
            .scripts
            .iter()
            .map(|dir| relative_folder(dir, base, "scripts directory"))
            .collect::<anyhow::Result<_>>()?,
    };
    let conversion = from_trace::convert(&document, &paths)
        .with_context(|| format!("{} is not a usable trace", args.trace.display()))?;
    for note in &conversion.notes {
        eprintln!("note: {note}");
    }
    let mut pretty = serde_json::to_string_pretty(&conversion.scenario)?;
    pretty.push('\n');
    match &args.output {
        Some(path) => {
            if !base.as_os_str().is_empty() {
                std::fs::create_dir_all(base)
                    .with_context(|| format!("cannot create {}", base.display()))?;
            }
            callflow::store::write_file(path, &pretty)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{pretty}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `dir` (which must exist) relative to `base`, both taken from the
/// current directory and compared lexically, as `callflow test` resolves a
/// scenario's paths; `/` separated.
fn relative_folder(dir: &Path, base: &Path, what: &str) -> anyhow::Result<String> {
    if !dir.is_dir() {
        bail!("the {what} {} does not exist", dir.display());
    }
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let absolute = |path: &Path| resolve(&cwd, path);
    let relative = pathdiff::diff_paths(absolute(dir), absolute(base))
        .with_context(|| format!("cannot name {} from {}", dir.display(), base.display()))?;
    let text = relative.to_string_lossy().replace('\\', "/");
    Ok(if text.is_empty() {
        ".".to_owned()
    } else {
        text
    })
}
