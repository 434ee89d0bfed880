//! `callflow graph`: draws a callflow (Graphviz dot or Mermaid), optionally
//! with the path a call took (`--trace`) or the parts no scenario reaches
//! (`--coverage`, which runs the scenarios as `callflow test` does).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use super::suite;
use super::{FlowsArgs, ScriptsArgs, load_flows, report_problems, select_account};
use callflow::catalog::KazooModules;
use callflow::graph::{self, Marks};
use callflow::trace::Trace;

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The callflow's id (its file name without .json).
    #[arg(value_name = "CALLFLOW_ID")]
    callflow: String,

    /// The account; may be omitted when the flows directory holds one.
    #[arg(long, value_name = "ID")]
    account: Option<String>,

    #[command(flatten)]
    flows: FlowsArgs,

    /// Diagram format.
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    format: GraphFormat,

    /// Highlight the nodes a call visited: a JSON trace, as
    /// `callflow simulate SCENARIO --format json` prints it, or a text
    /// trace (the `.trace` files `callflow test` stores).
    #[arg(long, value_name = "TRACE", conflicts_with = "coverage")]
    trace: Option<PathBuf>,

    /// Shade the nodes no scenario reaches (and dash the branches into
    /// them): runs the scenarios under --tests on this flows directory.
    #[arg(long)]
    coverage: bool,

    /// With --coverage: scenario files or directories (default:
    /// callflow.toml's `tests`, else tests).
    #[arg(long = "tests", value_name = "PATH", requires = "coverage")]
    tests: Vec<PathBuf>,

    /// With --coverage: worker threads (default: one per CPU).
    #[arg(long, short = 'j', value_name = "N", requires = "coverage", value_parser = clap::value_parser!(u64).range(1..))]
    jobs: Option<u64>,

    #[command(flatten)]
    scripts: ScriptsArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum GraphFormat {
    /// Graphviz (render with `dot -Tsvg`).
    Dot,
    /// Mermaid flowchart (GitHub and GitLab render it in Markdown).
    Mermaid,
}

impl GraphArgs {
    pub(super) fn apply(&mut self, project: &super::Project) {
        self.flows.apply(project);
        self.scripts.apply(project);
        if self.tests.is_empty() {
            self.tests.clone_from(&project.tests);
        }
    }
}

pub fn run(args: &GraphArgs) -> anyhow::Result<ExitCode> {
    let (catalog, problems) = load_flows(args.flows.dir(), &KazooModules)?;
    report_problems("the flows", &problems);
    let account = select_account(&catalog, args.account.as_deref(), args.flows.dir())?;
    let Some(callflow) = account.callflows.get(args.callflow.as_str()) else {
        let ids: Vec<&str> = account
            .callflows
            .keys()
            .map(callflow::ids::DocId::as_str)
            .collect();
        bail!(
            "no callflow {:?} in account {} (callflows: {})",
            args.callflow,
            account.account.id,
            if ids.is_empty() {
                "none".to_owned()
            } else {
                ids.join(", ")
            }
        );
    };
    let marks = if let Some(path) = &args.trace {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the trace {}", path.display()))?;
        let trace = if text.trim_start().starts_with('{') {
            let json: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("the trace {} is not JSON", path.display()))?;
            Trace::from_json(&json).with_context(|| {
                format!(
                    "the trace {} is not a JSON trace (`callflow simulate --format json`)",
                    path.display()
                )
            })?
        } else {
            Trace::from_text(&text).with_context(|| {
                format!(
                    "the trace {} is neither JSON nor a text trace (a `.trace` file `callflow test` stores)",
                    path.display()
                )
            })?
        };
        Marks::from_trace(&args.callflow, &trace)
    } else if args.coverage {
        coverage_marks(args, account.account.id.as_str())?
    } else {
        Marks::default()
    };
    let format = match args.format {
        GraphFormat::Dot => graph::Format::Dot,
        GraphFormat::Mermaid => graph::Format::Mermaid,
    };
    print!("{}", graph::render_marked(callflow, format, &marks));
    Ok(ExitCode::SUCCESS)
}

/// Runs the scenarios that use this flows directory and marks what they
/// never reach in the callflow.
fn coverage_marks(args: &GraphArgs, account: &str) -> anyhow::Result<Marks> {
    let files = suite::find_under(&args.tests)?;
    let dirs = suite::Dirs {
        flows_flag: None,
        project_flows: args.flows.flows.as_ref(),
        scripts: &args.scripts,
    };
    let mut loaded = suite::load(&files, &dirs, true)?;
    let here = std::fs::canonicalize(args.flows.dir())
        .with_context(|| format!("cannot read {}", args.flows.dir().display()))?;
    let same_dir: Vec<bool> = loaded
        .envs
        .iter()
        .map(|env| std::fs::canonicalize(&env.flows).is_ok_and(|dir| dir == here))
        .collect();
    loaded.cases.retain(|case| same_dir[case.env]);
    if loaded.cases.is_empty() {
        bail!(
            "no scenario under {} runs on the flows directory {}",
            if args.tests.is_empty() {
                "tests".to_owned()
            } else {
                suite::list(&args.tests)
            },
            args.flows.dir().display()
        );
    }
    let jobs = suite::jobs(args.jobs);
    let mut traces: Vec<Option<Trace>> = (0..loaded.cases.len()).map(|_| None).collect();
    let mut failures = Vec::new();
    suite::run(&loaded, jobs, |index, result| match result {
        Ok(ran) => traces[index] = Some(ran.trace),
        Err(message) => failures.push(format!("{}: {message}", loaded.cases[index].path.display())),
    });
    for failure in &failures {
        eprintln!("warning: {failure}");
    }
    let refs: Vec<Option<&Trace>> = traces.iter().map(Option::as_ref).collect();
    let report = suite::coverage(&loaded, &refs);
    Ok(report
        .callflows
        .iter()
        .find(|cf| cf.account == account && cf.callflow_id == args.callflow)
        .map(Marks::from_coverage)
        .unwrap_or_default())
}
