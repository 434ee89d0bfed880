//! `callflow route`: which callflow a dialled number reaches.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde_json::{Map, Value, json};

use super::{FlowsArgs, Format, select_account};
use callflow::catalog::KazooModules;
use callflow::model::diagnostic;
use callflow::routing::{Inception, RouteError};

#[derive(Debug, Args)]
pub struct RouteArgs {
    /// The dialled number (the SIP request user), e.g. 4158867900, 1001, *97.
    number: String,

    /// The account to route in; may be omitted when the flows directory holds one account.
    #[arg(long, value_name = "ID")]
    account: Option<String>,

    #[command(flatten)]
    flows: FlowsArgs,

    /// Where the call comes from: on-net callers (devices, users) may reach
    /// the `no_match` callflow, off-net callers (carriers) may not.
    #[arg(long, value_enum, default_value_t = InceptionArg::Onnet)]
    inception: InceptionArg,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum InceptionArg {
    /// From a device or user of the account.
    Onnet,
    /// From a carrier.
    Offnet,
}

impl From<InceptionArg> for Inception {
    fn from(arg: InceptionArg) -> Self {
        match arg {
            InceptionArg::Onnet => Inception::Onnet,
            InceptionArg::Offnet => Inception::Offnet,
        }
    }
}

impl RouteArgs {
    pub(super) fn apply(&mut self, project: &super::Project) {
        self.flows.apply(project);
    }
}

pub fn run(args: &RouteArgs) -> anyhow::Result<ExitCode> {
    let (catalog, diagnostics) = args.flows.load(&KazooModules)?;
    let (errors, _) = diagnostic::count(&diagnostics);
    if errors > 0 {
        tracing::warn!(
            "{} has {errors} validation error(s); routing uses what loaded (run `callflow check`)",
            args.flows.dir().display()
        );
    }
    let flows = select_account(&catalog, args.account.as_deref(), args.flows.dir())?;
    let account = flows.account.id.as_str();
    let result = flows.routes.resolve(&args.number, args.inception.into());
    let mut out = std::io::stdout().lock();
    match result {
        Ok(route) => {
            let name = flows
                .callflows
                .get(&route.callflow_id)
                .and_then(|cf| cf.name.clone());
            match args.format {
                Format::Json => {
                    let mut obj = Map::new();
                    obj.insert("account".into(), json!(account));
                    obj.insert("dialled".into(), json!(args.number));
                    obj.insert("number".into(), json!(route.number));
                    obj.insert("callflow_id".into(), json!(route.callflow_id.as_str()));
                    obj.insert("name".into(), json!(name));
                    obj.insert("matched".into(), json!(route.matched.as_str()));
                    if let Some(pattern) = &route.pattern {
                        obj.insert("pattern".into(), json!(pattern));
                    }
                    if let Some(cg) = &route.capture_group {
                        obj.insert("capture_group".into(), json!(cg));
                    }
                    if !route.capture_groups.is_empty() {
                        let groups: Map<String, Value> = route
                            .capture_groups
                            .iter()
                            .map(|(k, v)| (k.clone(), json!(v)))
                            .collect();
                        obj.insert("capture_groups".into(), Value::Object(groups));
                    }
                    serde_json::to_writer(&mut out, &obj)?;
                    writeln!(out)?;
                }
                Format::Text => {
                    writeln!(out, "account        {account}")?;
                    writeln!(out, "dialled        {}", args.number)?;
                    if route.number != args.number {
                        writeln!(out, "normalized     {}", route.number)?;
                    }
                    match &name {
                        Some(name) => {
                            writeln!(out, "callflow       {} ({name})", route.callflow_id)?;
                        }
                        None => writeln!(out, "callflow       {}", route.callflow_id)?,
                    }
                    match &route.pattern {
                        Some(pattern) => writeln!(out, "matched        pattern {pattern}")?,
                        None => writeln!(out, "matched        {}", route.matched.as_str())?,
                    }
                    if let Some(cg) = &route.capture_group {
                        writeln!(out, "capture_group  {cg}")?;
                    }
                    for (key, value) in &route.capture_groups {
                        writeln!(out, "capture_groups.{key}  {value}")?;
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            let number = match &err {
                RouteError::NotFound { number, .. } => number.clone(),
                RouteError::EmptyNumber => String::new(),
            };
            match args.format {
                Format::Json => {
                    let obj = json!({
                        "error": "not_found",
                        "account": account,
                        "dialled": args.number,
                        "number": number,
                        "message": err.to_string(),
                    });
                    serde_json::to_writer(&mut out, &obj)?;
                    writeln!(out)?;
                }
                Format::Text => writeln!(out, "not found: {err}")?,
            }
            Ok(ExitCode::from(1))
        }
    }
}
