//! Type checking (`callflow check --types`, and `callflow test` when the
//! project file asks for it): the `--!strict` scripts of the script
//! directories, checked by Luau's own analysis against the call-control
//! API's declarations (`scripts/callflow.d.luau`, as built into this
//! binary).
//!
//! Luau's analysis cannot be linked into this binary (it is built from
//! another Luau release than the VM, and the two export the same C++
//! symbols), so it runs as a program of its own, `callflow-luau-check`
//! (`crates/luau-check`), found beside this binary, then on `PATH`, or
//! named by `CALLFLOW_LUAU_CHECK`. It gets every strict script in one JSON
//! request and answers with each one's diagnostics.
//!
//! Each file is checked on its own: a `require` of a helper the scripts
//! have (`lib/<name>.lua`, built in or in a script directory) gives an
//! untyped value; a `require` of a name no script provides is an error.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use callflow::host::scripts::{self, Kind, ScriptSource};
use callflow::model::Code;
use callflow::model::diagnostic::{Diagnostic, Severity};

/// The call-control API's declarations, as this binary implements it.
pub const DEFINITIONS: &str = include_str!("../../scripts/callflow.d.luau");

/// The checker's program name.
pub const CHECKER: &str = "callflow-luau-check";

/// The variable that names the checker's path.
const CHECKER_ENV: &str = "CALLFLOW_LUAU_CHECK";

/// Longest time one file may take to check.
const TIMEOUT_MS: u64 = 10_000;

/// What a type check found.
#[derive(Debug, Default)]
pub struct Report {
    /// Every diagnostic, file by file in the order the files were found.
    pub diagnostics: Vec<Diagnostic>,
    /// Strict scripts checked.
    pub checked: usize,
    /// Scripts without `--!strict`, not checked.
    pub skipped: usize,
}

#[derive(Serialize)]
struct Request<'a> {
    definitions: &'a str,
    definitions_name: &'a str,
    files: Vec<RequestFile<'a>>,
    timeout_ms: u64,
}

#[derive(Serialize)]
struct RequestFile<'a> {
    name: &'a str,
    source: &'a str,
}

#[derive(Deserialize)]
struct Answer {
    files: Vec<AnswerFile>,
}

#[derive(Deserialize)]
struct AnswerFile {
    name: String,
    timed_out: bool,
    diagnostics: Vec<AnswerDiagnostic>,
}

#[derive(Deserialize)]
struct AnswerDiagnostic {
    line: usize,
    column: usize,
    severity: String,
    message: String,
}

/// True when the script opts into strict mode: a `--!strict` directive
/// before its first line of code (comments and blank lines may come first,
/// as Luau allows).
pub fn is_strict(source: &str) -> bool {
    for line in source.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(directive) = line.strip_prefix("--!") {
            if directive.split_whitespace().next() == Some("strict") {
                return true;
            }
            continue;
        }
        if line.starts_with("--") && !line.starts_with("--[") {
            continue;
        }
        return false;
    }
    false
}

/// Type-checks the strict scripts of `dirs`. Errors (exit status 2 at the
/// command line) are a script directory that cannot be read and a checker
/// that cannot be found or run; what the checker finds is in the report.
pub fn check(dirs: &[PathBuf]) -> anyhow::Result<Report> {
    let mut sources: Vec<ScriptSource> = Vec::new();
    for dir in dirs {
        let (found, _problems) = scripts::read_dir(dir)
            .with_context(|| format!("cannot read the scripts directory {}", dir.display()))?;
        sources.extend(found);
    }
    let helpers: BTreeSet<String> = scripts::builtin_sources()
        .into_iter()
        .chain(sources.iter().cloned())
        .filter(|source| source.kind == Kind::Lib)
        .map(|source| source.name)
        .collect();
    let strict: Vec<&ScriptSource> = sources.iter().filter(|s| is_strict(&s.text)).collect();
    let mut report = Report {
        checked: strict.len(),
        skipped: sources.len() - strict.len(),
        ..Report::default()
    };
    if strict.is_empty() {
        return Ok(report);
    }
    let request = Request {
        definitions: DEFINITIONS,
        definitions_name: "callflow.d.luau",
        files: strict
            .iter()
            .map(|s| RequestFile {
                name: &s.file,
                source: &s.text,
            })
            .collect(),
        timeout_ms: TIMEOUT_MS,
    };
    let answer = run_checker(&serde_json::to_vec(&request)?)?;
    for file in answer.files {
        if file.timed_out {
            report.diagnostics.push(
                Diagnostic::error(
                    Code::Types,
                    "",
                    format!(
                        "type checking took longer than {} s and was stopped",
                        TIMEOUT_MS / 1000
                    ),
                )
                .in_file(&file.name),
            );
        }
        for found in file.diagnostics {
            if let Some(name) = found.message.strip_prefix("Unknown require: ")
                && helpers.contains(name)
            {
                // A helper the scripts have: each file is checked on its
                // own, so its value is untyped, not missing.
                continue;
            }
            // Luau puts a long explanation on lines of its own.
            let message = found
                .message
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            let severity = if found.severity == "error" {
                Severity::Error
            } else {
                Severity::Warning
            };
            let mut diag = if severity == Severity::Error {
                Diagnostic::error(Code::Types, "", message)
            } else {
                Diagnostic::warning(Code::Types, "", message)
            }
            .in_file(&file.name)
            .at_line(found.line);
            diag.column = Some(found.column);
            report.diagnostics.push(diag);
        }
    }
    Ok(report)
}

/// Runs the checker with `request` on its stdin and reads its answer.
fn run_checker(request: &[u8]) -> anyhow::Result<Answer> {
    let program = find_checker()?;
    let mut child = Command::new(&program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run the type checker {}", program.display()))?;
    // The request is written from another thread: a checker that answers
    // before reading all of it cannot block us on a full pipe.
    let mut stdin = child
        .stdin
        .take()
        .context("the type checker's stdin was not opened")?;
    let request = request.to_vec();
    let writer = std::thread::spawn(move || {
        let written = stdin.write_all(&request);
        drop(stdin);
        written
    });
    let output = child
        .wait_with_output()
        .with_context(|| format!("the type checker {} failed", program.display()))?;
    let written = writer
        .join()
        .map_err(|_| anyhow::anyhow!("writing the type checker's request panicked"))?;
    if !output.status.success() {
        bail!(
            "the type checker {} failed ({}): {}",
            program.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    written.with_context(|| format!("cannot send the scripts to {}", program.display()))?;
    serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "the type checker {} answered something other than its report",
            program.display()
        )
    })
}

/// `CALLFLOW_LUAU_CHECK`, else the checker beside this binary, else on `PATH`.
fn find_checker() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(CHECKER_ENV) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!(
            "{CHECKER_ENV} names {}, which is not a file",
            path.display()
        );
    }
    let name = format!("{CHECKER}{}", std::env::consts::EXE_SUFFIX);
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(&name)));
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(&name));
    if let Some(found) = beside.into_iter().chain(on_path).find(|p| p.is_file()) {
        return Ok(found);
    }
    bail!(
        "type checking needs the {CHECKER} program (Luau's analysis, which cannot live in this \
         binary), found neither beside callflow nor on PATH; build it from the callflow \
         repository with `cargo build --release -p {CHECKER}` (a C++17 compiler, about 4 \
         minutes) and put it beside callflow, or name it with {CHECKER_ENV}"
    )
}

#[cfg(test)]
mod tests {
    use super::is_strict;

    #[test]
    fn strict_is_a_directive_before_any_code() {
        assert!(is_strict("--!strict\nreturn {}"));
        assert!(is_strict(
            "\n-- a module\n--!native\n--!strict  \nreturn {}"
        ));
        assert!(!is_strict("--!nonstrict\nreturn {}"));
        assert!(!is_strict("--!strictly\nreturn {}"));
        assert!(!is_strict("local x = 1\n--!strict\nreturn {}"));
        assert!(!is_strict("--[[ block ]]\n--!strict\nreturn {}"));
        assert!(!is_strict(""));
    }
}
