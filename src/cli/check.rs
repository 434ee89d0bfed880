//! `callflow check`: validate a flows directory and the module scripts.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::{FlowsArgs, Format, ScriptsArgs};
use callflow::model::Code;
use callflow::model::diagnostic::{self, Severity};

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    flows: FlowsArgs,

    #[command(flatten)]
    scripts: ScriptsArgs,

    /// Output format; json prints {"diagnostics":[{severity, file, pointer, code, message}]}.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,

    /// For lab setups whose calls really reach local services: a URL field
    /// (`pivot.voice_url`, `webhook.uri`, ...) naming a loopback, private or
    /// link-local address is a warning, not an error.
    #[arg(long)]
    allow_private_urls: bool,

    /// Also type-check the `--!strict` scripts of the script directories
    /// with Luau's own analysis, against the call-control API's types
    /// (needs the callflow-luau-check program; see the README). Default:
    /// callflow.toml's `[check] types`, else off.
    #[arg(long)]
    types: bool,
}

impl CheckArgs {
    pub(super) fn apply(&mut self, project: &super::Project) {
        self.flows.apply(project);
        self.scripts.apply(project);
        self.types |= project.types;
    }
}

pub fn run(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    // Scripts first (their schemas check the flows), then the flows.
    let (modules, mut diagnostics) = args.scripts.load(&[]);
    let (catalog, flow_diagnostics) = args.flows.load(&modules)?;
    diagnostics.extend(flow_diagnostics);
    let typed = if args.types {
        let report = super::types::check(&args.scripts.dirs(&[]))?;
        diagnostics.extend(report.diagnostics);
        Some((report.checked, report.skipped))
    } else {
        None
    };
    if !args.allow_private_urls {
        // The catalog says "warning" (calls refuse such a request unless
        // allowed); saved through the API it would be refused: an error.
        for diag in &mut diagnostics {
            if diag.code == Code::InternalUrl {
                diag.severity = Severity::Error;
            }
        }
    }
    let (errors, warnings) = diagnostic::count(&diagnostics);
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer(&mut out, &json!({ "diagnostics": diagnostics }))?;
            writeln!(out)?;
        }
        Format::Text => {
            for diag in &diagnostics {
                writeln!(out, "{diag}\n")?;
            }
            let accounts = catalog.accounts().count();
            let callflows: usize = catalog.accounts().map(|a| a.callflows.len()).sum();
            let documents: usize = catalog
                .accounts()
                .map(|a| {
                    a.documents
                        .values()
                        .map(std::collections::BTreeMap::len)
                        .sum::<usize>()
                })
                .sum();
            let scripts = modules.module_names().count();
            writeln!(
                out,
                "checked {} in {} ({} {}, {} {}) and {} {}: {}, {}",
                plural(accounts, "account"),
                args.flows.dir().display(),
                callflows,
                if callflows == 1 {
                    "callflow"
                } else {
                    "callflows"
                },
                documents,
                if documents == 1 {
                    "other document"
                } else {
                    "other documents"
                },
                scripts,
                if scripts == 1 { "module" } else { "modules" },
                plural(errors, "error"),
                plural(warnings, "warning")
            )?;
            if let Some((checked, skipped)) = typed {
                writeln!(
                    out,
                    "type-checked {} ({} without --!strict not checked)",
                    plural(checked, "strict script"),
                    skipped
                )?;
            }
        }
    }
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn plural(n: usize, word: &str) -> String {
    match n {
        0 => format!("no {word}s"),
        1 => format!("1 {word}"),
        n => format!("{n} {word}s"),
    }
}
