//! `callflow-luau-check`: type-checks Luau sources with Luau's own
//! analysis, for `callflow check --types`.
//!
//! It reads one JSON request on stdin and writes one JSON report on stdout:
//!
//! ```text
//! request: {"definitions": "<callflow.d.luau>", "definitions_name": "callflow.d.luau",
//!           "files": [{"name": "scripts/x.lua", "source": "..."}], "timeout_ms": 10000}
//! report:  {"luau": "0.710", "files": [{"name": "scripts/x.lua", "timed_out": false,
//!           "diagnostics": [{"line": 4, "column": 21, "end_line": 4, "end_column": 31,
//!                            "severity": "error", "message": "..."}]}]}
//! ```
//!
//! Lines and columns are 1-based. Every source is checked in strict mode with
//! the new solver; a file's `require`s are not followed (each file is checked
//! on its own). Bad requests and definitions that do not load are errors on
//! stderr with exit status 2; the report is written only when every file was
//! checked, whatever it found.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use luau_analyze::{CheckOptions, Checker, Severity};
use serde::{Deserialize, Serialize};

/// The Luau release the checker was built from (luau-analyze 0.0.1's pin).
const LUAU_VERSION: &str = "0.710";

/// The largest request read (definitions and every script together).
const MAX_REQUEST_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    definitions: String,
    definitions_name: String,
    files: Vec<SourceFile>,
    timeout_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFile {
    name: String,
    source: String,
}

#[derive(Serialize)]
struct Report {
    luau: &'static str,
    files: Vec<FileReport>,
}

#[derive(Serialize)]
struct FileReport {
    name: String,
    timed_out: bool,
    diagnostics: Vec<Diagnostic>,
}

#[derive(Serialize)]
struct Diagnostic {
    line: u32,
    column: u32,
    end_line: u32,
    end_column: u32,
    severity: &'static str,
    message: String,
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        None => {}
        Some("--version" | "-V") => {
            println!(
                "callflow-luau-check {} (Luau {LUAU_VERSION})",
                env!("CARGO_PKG_VERSION")
            );
            return ExitCode::SUCCESS;
        }
        Some("--help" | "-h") => {
            println!(
                "callflow-luau-check: Luau's type checker for `callflow check --types`.\n\n\
                 Reads a JSON request on stdin, writes a JSON report on stdout; \
                 run by callflow, not by hand.\n\nOptions:\n  -V, --version  print the version and Luau's\n  -h, --help     print this help"
            );
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("callflow-luau-check: unexpected argument `{other}` (see --help)");
            return ExitCode::from(2);
        }
    }
    match run() {
        Ok(report) => {
            let mut stdout = std::io::stdout().lock();
            let written = serde_json::to_writer(&mut stdout, &report)
                .map_err(std::io::Error::from)
                .and_then(|()| stdout.write_all(b"\n"))
                .and_then(|()| stdout.flush());
            match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("callflow-luau-check: writing the report: {error}");
                    ExitCode::from(2)
                }
            }
        }
        Err(message) => {
            eprintln!("callflow-luau-check: {message}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<Report, String> {
    let mut input = Vec::new();
    std::io::stdin()
        .take(MAX_REQUEST_BYTES + 1)
        .read_to_end(&mut input)
        .map_err(|error| format!("reading the request: {error}"))?;
    if input.len() as u64 > MAX_REQUEST_BYTES {
        return Err(format!(
            "the request is larger than {MAX_REQUEST_BYTES} bytes"
        ));
    }
    let request: Request =
        serde_json::from_slice(&input).map_err(|error| format!("a bad request: {error}"))?;
    let mut checker = Checker::new().map_err(|error| format!("starting Luau: {error}"))?;
    checker
        .add_definitions_with_name(&request.definitions, &request.definitions_name)
        .map_err(|error| format!("{}: {error}", request.definitions_name))?;
    let timeout = Duration::from_millis(request.timeout_ms);
    let mut files = Vec::with_capacity(request.files.len());
    for file in request.files {
        let options = CheckOptions {
            timeout: Some(timeout),
            module_name: Some(&file.name),
            cancellation_token: None,
        };
        let result = checker
            .check_with_options(&file.source, options)
            .map_err(|error| format!("{}: {error}", file.name))?;
        let diagnostics = result
            .diagnostics
            .into_iter()
            .map(|d| Diagnostic {
                line: d.line.saturating_add(1),
                column: d.col.saturating_add(1),
                end_line: d.end_line.saturating_add(1),
                end_column: d.end_col.saturating_add(1),
                severity: match d.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                },
                message: d.message,
            })
            .collect();
        files.push(FileReport {
            name: file.name,
            timed_out: result.timed_out,
            diagnostics,
        });
    }
    Ok(Report {
        luau: LUAU_VERSION,
        files,
    })
}
