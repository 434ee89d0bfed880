//! `callflow test`: runs scenario files and compares each trace with its
//! expectation (a stored `<name>.trace`, an inline `"expect"`, or both);
//! prints results in the order the files were found, a diff for each
//! failure, optionally JUnit XML and flow coverage.
//!
//! Broken code fails the run: the errors of the scripts and flows the
//! scenarios load (a script that does not compile or load, a flow `callflow
//! check` rejects) are listed first, and the run exits 1 even when every
//! scenario passes (`--allow-broken` makes them warnings on stderr again).
//!
//! Exit status: 0 when every scenario passes and nothing is broken, 1 when
//! one fails or a script or flow has an error, 2 when a scenario, a path or
//! an expected trace is unusable (nothing runs then) or a file cannot be
//! written.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anstyle::{AnsiColor, Style};
use anyhow::Context;
use clap::{Args, ValueEnum};

use super::junit;
use super::suite::{self, Case, Ran, Suite};
use super::{EXIT_USAGE, ScriptsArgs};
use callflow::model::Diagnostic;
use callflow::testing::lines::value_lines;
use callflow::testing::{self, DiffKind, DiffLine};

// Each bool is an independent command-line switch, not a state machine.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Scenario files, or directories searched (recursively) for *.json
    /// scenarios. Default: callflow.toml's `tests`, else tests.
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,

    /// Worker threads, each with its own Lua VM (default: one per CPU).
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    jobs: Option<u64>,

    /// Write the expected trace (<name>.trace) of every scenario that has
    /// one or has no expectation at all, from the call as it runs now.
    /// Inline "expect" objects are still checked, never rewritten.
    #[arg(long)]
    update: bool,

    /// Report format: text (one line per scenario, diffs for failures) or
    /// junit (JUnit XML).
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    format: ReportFormat,

    /// Write the report to FILE instead of stdout. With --format junit the
    /// text results still print to stdout.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// Report flow coverage: per callflow, the nodes run and branches taken
    /// by the scenarios, and the branches never taken.
    #[arg(long)]
    coverage: bool,

    /// Coverage format (implies --coverage): text, json or lcov.
    #[arg(long, value_enum, value_name = "FORMAT")]
    coverage_format: Option<CoverageFormat>,

    /// Write the coverage report to FILE instead of stdout (implies
    /// --coverage).
    #[arg(long, value_name = "FILE")]
    coverage_output: Option<PathBuf>,

    /// The flows directory for every scenario (default: each scenario's
    /// "flows", else callflow.toml's `flows`, else ./flows).
    #[arg(long, value_name = "DIR")]
    flows: Option<PathBuf>,

    /// Run even when scripts or flows have errors, and exit 0 if every
    /// scenario passes (the errors are warnings on stderr).
    #[arg(long)]
    allow_broken: bool,

    /// Type-check the `--!strict` scripts first (as `callflow check
    /// --types`): type errors count as broken code. Default:
    /// callflow.toml's `[check] types`, else off.
    #[arg(long)]
    types: bool,

    /// The project's flows directory, when a scenario names none.
    #[arg(skip)]
    project_flows: Option<PathBuf>,

    #[command(flatten)]
    scripts: ScriptsArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReportFormat {
    /// Human-readable text.
    Text,
    /// JUnit XML, for CI servers.
    Junit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CoverageFormat {
    /// A table per callflow, with the branches never taken.
    Text,
    /// Everything, for tools.
    Json,
    /// LCOV tracefile (genhtml, Codecov, Coveralls, editors).
    Lcov,
}

/// How one scenario did.
pub enum Status {
    Pass,
    /// The expected trace was written: created (no file before) or updated.
    Written {
        created: bool,
    },
    Fail(Vec<Problem>),
    /// The scenario could not run, or its trace could not be written.
    Error(String),
}

/// Why a scenario failed.
pub enum Problem {
    /// The trace differs from the stored one.
    Diff {
        trace_path: PathBuf,
        lines: Vec<DiffLine>,
    },
    /// Inline expectations not met.
    Expect(Vec<String>),
    /// Neither a stored trace nor an inline expectation.
    NoExpectation { trace_path: PathBuf },
}

/// The result of one scenario, for the reports.
pub struct Outcome {
    pub status: Status,
    pub elapsed_s: f64,
}

impl TestArgs {
    pub(super) fn apply(&mut self, project: &super::Project) {
        self.scripts.apply(project);
        if self.paths.is_empty() {
            self.paths.clone_from(&project.tests);
        }
        self.project_flows.clone_from(&project.flows);
        self.types |= project.types;
    }
}

pub fn run(args: &TestArgs) -> anyhow::Result<ExitCode> {
    let files = suite::find_under(&args.paths)?;
    let dirs = suite::Dirs {
        flows_flag: args.flows.as_ref(),
        project_flows: args.project_flows.as_ref(),
        scripts: &args.scripts,
    };
    let suite = suite::load(&files, &dirs, args.allow_broken)?;
    let broken = broken_code(args, &suite)?;
    let broken = broken.as_slice();
    let jobs = suite::jobs(args.jobs);

    // Text results go to stdout unless the report (in text) goes to a file
    // or the JUnit report goes to stdout.
    let text_to_stdout = match args.format {
        ReportFormat::Text => args.output.is_none(),
        ReportFormat::Junit => args.output.is_some(),
    };
    let mut stdout = anstream::stdout();
    let mut text_report = String::new();
    let progress = Progress::new(suite.cases.len(), jobs);

    let count = suite.cases.len();
    let mut outcomes: Vec<Option<Outcome>> = (0..count).map(|_| None).collect();
    let mut traces: Vec<Option<callflow::trace::Trace>> = (0..count).map(|_| None).collect();
    let mut printed = 0;
    let mut write_error: Option<std::io::Error> = None;
    // Broken scripts and flows first: they may be why a scenario fails.
    let block = render_broken(broken);
    if text_to_stdout {
        if let Err(err) = stdout.write_all(block.as_bytes()) {
            write_error.get_or_insert(err);
        }
    } else {
        text_report.push_str(&block);
    }
    suite::run(&suite, jobs, |index, result| {
        let case = &suite.cases[index];
        let outcome = match result {
            Ok(ran) => {
                let outcome = judge(case, &ran, args.update);
                traces[index] = Some(ran.trace);
                outcome
            }
            Err(message) => Outcome {
                status: Status::Error(message),
                elapsed_s: 0.0,
            },
        };
        outcomes[index] = Some(outcome);
        progress.done();
        // Print every result now ready, in the order the files were found.
        while let Some(Some(outcome)) = outcomes.get(printed) {
            let block = render_case(&suite.cases[printed], outcome);
            if text_to_stdout {
                progress.clear();
                if let Err(err) = stdout.write_all(block.as_bytes()) {
                    write_error.get_or_insert(err);
                }
            } else {
                text_report.push_str(&block);
            }
            printed += 1;
        }
        progress.show();
    });
    progress.clear();
    if let Some(err) = write_error {
        return Err(err).context("cannot write the results");
    }
    let outcomes: Vec<Outcome> = outcomes.into_iter().flatten().collect();

    let mut summary = String::new();
    if args.coverage || args.coverage_format.is_some() || args.coverage_output.is_some() {
        let text = coverage_report(args, &suite, &traces)?;
        match &args.coverage_output {
            Some(path) => write_file(path, &text, "the coverage report")?,
            None => summary.push_str(&text),
        }
    }
    summary.push_str(&closing_line(&outcomes, broken.len()));
    if text_to_stdout {
        stdout.write_all(summary.as_bytes())?;
    } else {
        text_report.push_str(&summary);
    }
    write_report(args, (&suite, broken), &outcomes, &text_report)?;
    stdout.flush()?;

    let errors = outcomes
        .iter()
        .any(|o| matches!(o.status, Status::Error(_)));
    let failures = outcomes.iter().any(|o| matches!(o.status, Status::Fail(_)));
    Ok(if errors {
        ExitCode::from(EXIT_USAGE)
    } else if failures || !broken.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Writes the report where `--format` and `--output` say, when it is not
/// the text already printed.
fn write_report(
    args: &TestArgs,
    (suite, broken): (&Suite, &[Diagnostic]),
    outcomes: &[Outcome],
    text_report: &str,
) -> anyhow::Result<()> {
    match (args.format, &args.output) {
        (ReportFormat::Text, None) => {}
        (ReportFormat::Text, Some(path)) => {
            write_file(path, &strip(text_report), "the report")?;
        }
        (ReportFormat::Junit, Some(path)) => {
            write_file(
                path,
                &junit::render(suite, outcomes, broken),
                "the JUnit report",
            )?;
        }
        (ReportFormat::Junit, None) => {
            // The XML has stdout; the text results go to stderr.
            anstream::stdout().write_all(junit::render(suite, outcomes, broken).as_bytes())?;
            eprint!("{}", strip(text_report));
        }
    }
    Ok(())
}

/// The coverage report in the format asked for.
fn coverage_report(
    args: &TestArgs,
    suite: &Suite,
    traces: &[Option<callflow::trace::Trace>],
) -> anyhow::Result<String> {
    let trace_refs: Vec<Option<&callflow::trace::Trace>> =
        traces.iter().map(Option::as_ref).collect();
    let report = suite::coverage(suite, &trace_refs);
    Ok(match args.coverage_format.unwrap_or(CoverageFormat::Text) {
        CoverageFormat::Text => report.render_text(),
        CoverageFormat::Json => {
            let mut json = serde_json::to_string_pretty(&report.to_json())?;
            json.push('\n');
            json
        }
        CoverageFormat::Lcov => {
            // Lines come from the files as they are now; a node whose line
            // cannot be found is put on line 1.
            let lines = report
                .callflows
                .iter()
                .filter_map(|cf| {
                    let text = std::fs::read_to_string(&cf.file).ok()?;
                    Some((cf.file.clone(), value_lines(&text)))
                })
                .collect();
            report.to_lcov(&lines)
        }
    })
}

/// Compares a case's trace with its expectations; writes the expected trace
/// under `--update`.
pub(super) fn judge(case: &Case, ran: &Ran, update: bool) -> Outcome {
    let actual = ran.trace.render_text();
    let mut problems = Vec::new();
    if let Some(expect) = &case.scenario.expect {
        let unmet = testing::check(&ran.trace, expect);
        if !unmet.is_empty() {
            problems.push(Problem::Expect(unmet));
        }
    }
    let diff = case
        .expected
        .as_deref()
        .and_then(|expected| testing::diff(expected, &actual));
    let status = if update && (case.expected.is_some() || case.scenario.expect.is_none()) {
        if case.expected.is_some() && diff.is_none() {
            fail_or(problems, Status::Pass)
        } else {
            match callflow::store::write_file(&case.trace_path, &actual) {
                Ok(()) => fail_or(
                    problems,
                    Status::Written {
                        created: case.expected.is_none(),
                    },
                ),
                Err(err) => Status::Error(err.to_string()),
            }
        }
    } else {
        if let Some(lines) = diff {
            problems.insert(
                0,
                Problem::Diff {
                    trace_path: case.trace_path.clone(),
                    lines,
                },
            );
        }
        if case.expected.is_none() && case.scenario.expect.is_none() {
            problems.push(Problem::NoExpectation {
                trace_path: case.trace_path.clone(),
            });
        }
        fail_or(problems, Status::Pass)
    };
    Outcome {
        status,
        elapsed_s: ran.elapsed.as_secs_f64(),
    }
}

fn fail_or(problems: Vec<Problem>, otherwise: Status) -> Status {
    if problems.is_empty() {
        otherwise
    } else {
        Status::Fail(problems)
    }
}

const GREEN: Style = AnsiColor::Green.on_default();
const RED: Style = AnsiColor::Red.on_default();
const BOLD_RED: Style = AnsiColor::Red.on_default().bold();
const YELLOW: Style = AnsiColor::Yellow.on_default();
const CYAN: Style = AnsiColor::Cyan.on_default();

fn styled(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}

/// A case's result as text, with styles (stripped where colours are off).
pub(super) fn render_case(case: &Case, outcome: &Outcome) -> String {
    let path = case.path.display();
    let mut out = String::new();
    match &outcome.status {
        Status::Pass => {
            let _ = writeln!(out, "{} {path}", styled(GREEN, "PASS   "));
        }
        Status::Written { created } => {
            let (label, verb) = if *created {
                ("CREATED", "wrote")
            } else {
                ("UPDATED", "rewrote")
            };
            let _ = writeln!(
                out,
                "{} {path}: {verb} {}",
                styled(YELLOW, label),
                case.trace_path.display()
            );
        }
        Status::Error(message) => {
            out.push_str(&render_case_error(&case.path, message));
        }
        Status::Fail(problems) => {
            let _ = writeln!(out, "{} {path}", styled(BOLD_RED, "FAIL   "));
            for problem in problems {
                out.push_str(&render_problem(problem, &case.path, true));
            }
        }
    }
    out
}

/// A scenario that could not run, as [`render_case`] shows it.
pub(super) fn render_case_error(path: &Path, message: &str) -> String {
    format!(
        "{} {}: {message}\n",
        styled(BOLD_RED, "ERROR  "),
        path.display()
    )
}

/// One failure, indented; `styles` adds colours to the diff.
pub fn render_problem(problem: &Problem, scenario: &Path, styles: bool) -> String {
    const INDENT: &str = "    ";
    let mut out = String::new();
    match problem {
        Problem::Diff { trace_path, lines } => {
            let _ = writeln!(
                out,
                "{INDENT}the trace differs from {} (-expected +actual):",
                trace_path.display()
            );
            for line in lines {
                let (prefix, style) = match line.kind {
                    DiffKind::Hunk => ("", CYAN),
                    DiffKind::Same => (" ", Style::new()),
                    DiffKind::Removed => ("-", RED),
                    DiffKind::Added => ("+", GREEN),
                };
                let text = format!("{prefix}{}", line.text);
                let text = if styles { styled(style, &text) } else { text };
                let _ = writeln!(out, "{INDENT}{text}");
            }
            let _ = writeln!(
                out,
                "{INDENT}if the new trace is right, accept it: callflow test --update {}",
                scenario.display()
            );
        }
        Problem::Expect(unmet) => {
            for message in unmet {
                let message = message.replace('\n', &format!("\n{INDENT}  "));
                let _ = writeln!(out, "{INDENT}expect.{message}");
            }
        }
        Problem::NoExpectation { trace_path } => {
            let _ = writeln!(
                out,
                "{INDENT}no expectation: write the current trace to {} with `callflow test --update {}` (and review it), or add an \"expect\" object to the scenario",
                trace_path.display(),
                scenario.display()
            );
        }
    }
    out
}

/// The errors of scripts and flows, one block each.
/// The errors that fail the run besides the scenarios: those of the
/// scripts and flows, and with `--types` the type errors (none with
/// `--allow-broken`, which prints the type errors on stderr as `suite::load`
/// does the others).
fn broken_code(args: &TestArgs, suite: &Suite) -> anyhow::Result<Vec<Diagnostic>> {
    let mut broken: Vec<Diagnostic> = if args.allow_broken {
        Vec::new()
    } else {
        suite.broken.clone()
    };
    if args.types {
        let found = super::types::check(&args.scripts.dirs(&[]))?.diagnostics;
        if args.allow_broken {
            super::report_problems("the scripts' types", &found);
        } else {
            broken.extend(found.into_iter().filter(Diagnostic::is_error));
        }
    }
    Ok(broken)
}

fn render_broken(broken: &[Diagnostic]) -> String {
    let mut out = String::new();
    for diag in broken {
        let text = diag.to_string().replace('\n', "\n        ");
        let _ = writeln!(out, "{} {text}", styled(BOLD_RED, "BROKEN "));
    }
    out
}

/// `N passed, N failed`, and what else happened.
fn closing_line(outcomes: &[Outcome], broken: usize) -> String {
    let count = |f: fn(&Status) -> bool| outcomes.iter().filter(|o| f(&o.status)).count();
    let failed = count(|s| matches!(s, Status::Fail(_) | Status::Error(_)));
    let errors = count(|s| matches!(s, Status::Error(_)));
    let written = count(|s| matches!(s, Status::Written { .. }));
    let mut line = format!("{} passed, {failed} failed", outcomes.len() - failed);
    if errors > 0 {
        let _ = write!(line, " ({errors} could not run)");
    }
    if written > 0 {
        let noun = if written == 1 { "trace" } else { "traces" };
        let _ = write!(line, "; {written} expected {noun} written");
    }
    if broken > 0 {
        let noun = if broken == 1 { "error" } else { "errors" };
        let _ = write!(
            line,
            "; {broken} {noun} in the scripts or flows (listed first; --allow-broken to pass without them)"
        );
    }
    line.push('\n');
    line
}

/// Removes styles (for files).
fn strip(text: &str) -> String {
    anstream::adapter::strip_str(text).to_string()
}

fn write_file(path: &Path, text: &str, what: &str) -> anyhow::Result<()> {
    callflow::store::write_file(path, text).with_context(|| format!("cannot write {what}"))
}

/// A progress line on stderr, only when stderr is a terminal.
struct Progress {
    total: usize,
    jobs: usize,
    done: std::cell::Cell<usize>,
    on: bool,
}

impl Progress {
    fn new(total: usize, jobs: usize) -> Self {
        Self {
            total,
            jobs: jobs.min(total).max(1),
            done: std::cell::Cell::new(0),
            on: std::io::stderr().is_terminal(),
        }
    }

    fn done(&self) {
        self.done.set(self.done.get() + 1);
    }

    fn show(&self) {
        if self.on && self.done.get() < self.total {
            eprint!(
                "\r\x1b[2K[{}/{}] running scenarios on {} {}",
                self.done.get(),
                self.total,
                self.jobs,
                if self.jobs == 1 { "thread" } else { "threads" }
            );
        }
    }

    fn clear(&self) {
        if self.on {
            eprint!("\r\x1b[2K");
        }
    }
}
