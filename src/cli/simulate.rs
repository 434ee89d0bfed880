//! `callflow simulate`: one call in virtual time, printed as a trace.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use super::{Format, ScriptsArgs, load_flows, report_problems};
use callflow::sim::scenario::{CallerAction, InceptionName, Trigger, resolve};
use callflow::sim::{self, Options, Persist, Scenario};
use callflow::store::FlowsDir;

// Each bool is an independent command-line switch, not a state machine.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The scenario file (JSON). Without one, describe the call with --to.
    #[arg(value_name = "SCENARIO", required_unless_present = "to")]
    scenario: Option<PathBuf>,

    /// The flows directory (default: the scenario's "flows", else
    /// callflow.toml's `flows`, else ./flows).
    #[arg(long, value_name = "DIR")]
    flows: Option<PathBuf>,

    /// The project's flows directory, when a scenario names none.
    #[arg(skip)]
    project_flows: Option<PathBuf>,

    #[command(flatten)]
    scripts: ScriptsArgs,

    /// Output format: text (one line per event) or json ({"events": [...]}).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,

    /// Let HTTP requests that no stub answers reach the network.
    #[arg(long)]
    allow_network: bool,

    /// Let HTTP requests reach loopback, link-local and private addresses
    /// (refused by default).
    #[arg(long)]
    allow_private_http: bool,

    /// Exit 0 even when the call's trace has an `error` event (a module
    /// that raised, a script that did not load): the call still goes on
    /// either way.
    #[arg(long)]
    keep_going: bool,

    /// Write the documents the call changes (voicemail messages, park slots,
    /// temporal rule overrides) back to the flows directory, atomically.
    /// Without it, changes last as long as the simulated call.
    #[arg(long)]
    persist: bool,

    #[command(flatten)]
    quick: QuickArgs,
}

/// The call without a scenario file.
#[derive(Debug, Args)]
#[group(id = "quick", multiple = true, conflicts_with = "scenario")]
struct QuickArgs {
    /// The dialled number.
    #[arg(long, value_name = "NUMBER")]
    to: Option<String>,
    /// The account (may be omitted when the flows hold one).
    #[arg(long, value_name = "ID")]
    account: Option<String>,
    /// The caller's number.
    #[arg(long, value_name = "NUMBER")]
    from: Option<String>,
    /// Where the call comes from.
    #[arg(long, value_enum)]
    inception: Option<InceptionArg>,
    /// Digits the caller presses: "1@5000,2@8000" presses 1 at 5 s and 2 at
    /// 8 s; a group without "@" ("1") is pressed when the call next waits
    /// for digits.
    #[arg(long, value_name = "SPEC")]
    dtmf: Option<String>,
    /// When the caller hangs up (ms from the start).
    #[arg(long, value_name = "MS")]
    hangup_at: Option<u64>,
    /// Seed of the call's random numbers.
    #[arg(long)]
    seed: Option<u64>,
    /// When the call starts: RFC 3339 (2026-12-01T18:00:00Z) or a local
    /// time in the account's timezone (2026-12-01T10:00). Default: Monday
    /// 2026-01-05 17:00 UTC.
    #[arg(long, value_name = "TIME")]
    start: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum InceptionArg {
    Onnet,
    Offnet,
}

/// A scenario with the directory its relative paths start from.
pub(super) struct Loaded {
    pub scenario: Scenario,
    pub base: PathBuf,
}

/// Reads and checks a scenario file; errors name the file and JSON path.
pub(super) fn read_scenario(path: &Path) -> anyhow::Result<Loaded> {
    let text = read_bounded(path, callflow::sim::scenario::MAX_SCENARIO_BYTES)
        .with_context(|| format!("cannot read scenario {}", path.display()))?;
    let scenario =
        Scenario::parse(&text).with_context(|| format!("bad scenario {}", path.display()))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(Loaded { scenario, base })
}

/// A text file, refused past `limit` bytes without reading further.
pub(super) fn read_bounded(path: &Path, limit: usize) -> anyhow::Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    if !file.metadata()?.is_file() {
        bail!("not a regular file");
    }
    let mut text = String::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(cap).read_to_string(&mut text)?;
    if text.len() > limit {
        bail!("larger than the limit of {} MiB", limit >> 20);
    }
    Ok(text)
}

fn quick_scenario(quick: &QuickArgs) -> anyhow::Result<Scenario> {
    let Some(to) = &quick.to else {
        bail!("give a scenario file, or --to NUMBER");
    };
    let mut json = serde_json::json!({ "to": to });
    if let Some(account) = &quick.account {
        json["account"] = account.clone().into();
    }
    if let Some(from) = &quick.from {
        json["from"] = from.clone().into();
    }
    if let Some(seed) = quick.seed {
        json["seed"] = seed.into();
    }
    if let Some(start) = &quick.start {
        json["start"] = start.clone().into();
    }
    let mut scenario = Scenario::parse(&json.to_string()).context("bad --to or --start")?;
    if let Some(inception) = quick.inception {
        scenario.inception = match inception {
            InceptionArg::Onnet => InceptionName::Onnet,
            InceptionArg::Offnet => InceptionName::Offnet,
        };
    }
    if let Some(spec) = &quick.dtmf {
        for group in spec.split(',').map(str::trim).filter(|g| !g.is_empty()) {
            let (digits, at) = match group.split_once('@') {
                Some((digits, at)) => {
                    let at: u64 = at.trim().parse().with_context(|| {
                        format!("--dtmf: {group:?}: the time after @ is milliseconds")
                    })?;
                    (digits.trim(), Some(at))
                }
                None => (group, None),
            };
            scenario.caller.push(CallerAction {
                at_ms: at,
                on: at.is_none().then_some(Trigger::Collect),
                delay_ms: None,
                dtmf: Some(digits.to_owned()),
                interdigit_ms: None,
                hangup: None,
            });
        }
    }
    if let Some(at) = quick.hangup_at {
        scenario.caller.push(CallerAction {
            at_ms: Some(at),
            on: None,
            delay_ms: None,
            dtmf: None,
            interdigit_ms: None,
            hangup: Some(true),
        });
    }
    // Re-check the assembled scenario (bad digits, ...).
    let text = serde_json::to_string(&scenario_json(&scenario))?;
    Scenario::parse(&text).context("bad --dtmf")
}

/// The scenario back as JSON, to check a scenario assembled from flags.
fn scenario_json(scenario: &Scenario) -> serde_json::Value {
    let caller: Vec<serde_json::Value> = scenario
        .caller
        .iter()
        .map(|a| {
            let mut obj = serde_json::Map::new();
            if let Some(at) = a.at_ms {
                obj.insert("at_ms".into(), at.into());
            }
            if a.on.is_some() {
                obj.insert("on".into(), "collect".into());
            }
            if let Some(digits) = &a.dtmf {
                obj.insert("dtmf".into(), digits.clone().into());
            }
            if let Some(hangup) = a.hangup {
                obj.insert("hangup".into(), hangup.into());
            }
            serde_json::Value::Object(obj)
        })
        .collect();
    let mut json = serde_json::json!({
        "to": scenario.to,
        "from": scenario.from,
        "seed": scenario.seed,
        "start": scenario.start,
        "caller": caller,
        "inception": match scenario.inception {
            InceptionName::Onnet => "onnet",
            InceptionName::Offnet => "offnet",
        },
    });
    if let Some(account) = &scenario.account {
        json["account"] = account.clone().into();
    }
    json
}

/// The flows and script directories for a scenario: flags first, then the
/// scenario's own (relative to its file), then the project's flows
/// directory (`project_flows`), then `./flows`.
pub(super) fn dirs_for_in(
    flows_flag: Option<&PathBuf>,
    loaded: Option<&Loaded>,
    project_flows: Option<&PathBuf>,
) -> (PathBuf, Vec<PathBuf>) {
    let flows = flows_flag.cloned().unwrap_or_else(|| {
        loaded
            .and_then(|l| l.scenario.flows.as_ref().map(|f| resolve(&l.base, f)))
            .or_else(|| project_flows.cloned())
            .unwrap_or_else(|| PathBuf::from(super::DEFAULT_FLOWS))
    });
    let scripts = loaded
        .map(|l| {
            l.scenario
                .scripts
                .iter()
                .map(|s| resolve(&l.base, s))
                .collect()
        })
        .unwrap_or_default();
    (flows, scripts)
}

impl SimulateArgs {
    pub(super) fn apply(&mut self, project: &super::Project) {
        self.scripts.apply(project);
        self.project_flows.clone_from(&project.flows);
    }
}

pub fn run(args: &SimulateArgs) -> anyhow::Result<ExitCode> {
    let loaded = match &args.scenario {
        Some(path) => Some(read_scenario(path)?),
        None => None,
    };
    let scenario = match &loaded {
        Some(loaded) => loaded.scenario.clone(),
        None => quick_scenario(&args.quick)?,
    };
    let (flows_dir, extra_scripts) = dirs_for_in(
        args.flows.as_ref(),
        loaded.as_ref(),
        args.project_flows.as_ref(),
    );
    let (modules, script_problems) = args.scripts.load(&extra_scripts);
    report_problems("the scripts", &script_problems);
    let (catalog, flow_problems) = load_flows(&flows_dir, &modules)?;
    report_problems("the flows", &flow_problems);
    let account = sim::account_for(&scenario, &catalog)
        .map_err(anyhow::Error::from)
        .context("bad scenario")?;
    let persist: Option<Persist> = args
        .persist
        .then(|| Arc::new(FlowsDir::new(&flows_dir)) as Persist);
    let options = Options {
        allow_network: args.allow_network,
        allow_private_http: args.allow_private_http,
        persist,
        ..Options::default()
    };
    let outcome = sim::run_one(&scenario, account, Arc::new(modules), &options)?;
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Text => out.write_all(outcome.trace.render_text().as_bytes())?,
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &sim::outcome_json(&outcome))?;
            writeln!(out)?;
        }
    }
    let errors = outcome
        .trace
        .events()
        .iter()
        .filter(|e| e.name == "error")
        .count();
    if errors > 0 && !args.keep_going {
        out.flush()?;
        eprintln!("callflow: the call hit {errors} error event(s) (exit 1; --keep-going exits 0)");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
