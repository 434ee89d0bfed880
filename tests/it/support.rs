//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use callflow::catalog::{AccountSource, Catalog, SourceFile, Sources};
use callflow::ids::{AccountId, DocId};
use callflow::model::Diagnostic;
use callflow::model::kazoo::is_kazoo_module;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// insta settings: snapshots go to the top-level `snapshots/` folder, named
/// without the module path.
pub fn insta_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(root().join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings
}

/// Runs the `callflow` binary in `dir` with `args`.
pub fn callflow(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_callflow"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("the callflow binary runs")
}

/// stdout, stderr and exit code of a run, for snapshots.
pub fn render_output(output: &Output) -> String {
    let mut text = format!("exit: {}\n", output.status.code().unwrap_or(-1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stdout.is_empty() {
        text.push_str("--- stdout\n");
        text.push_str(&stdout);
    }
    if !stderr.is_empty() {
        text.push_str("--- stderr\n");
        text.push_str(&stderr);
    }
    text
}

/// Builds a catalog of one account `test` from callflow documents given as
/// (id, path shown in diagnostics, text).
pub fn catalog_of(callflows: &[(&str, &str, &str)]) -> (Catalog, Vec<Diagnostic>) {
    let account = AccountSource {
        id: AccountId::new("test").unwrap(),
        account: None,
        callflows: callflows
            .iter()
            .map(|(id, path, text)| {
                (
                    DocId::new(id).unwrap(),
                    SourceFile {
                        path: (*path).to_owned(),
                        text: (*text).to_owned(),
                    },
                )
            })
            .collect(),
        documents: Vec::new(),
    };
    Catalog::build(
        Sources {
            accounts: vec![account],
            diagnostics: Vec::new(),
        },
        &is_kazoo_module,
    )
}

/// Each diagnostic as `severity code pointer`, for exact comparisons.
pub fn codes(diagnostics: &[Diagnostic]) -> Vec<String> {
    diagnostics
        .iter()
        .map(|d| format!("{} {} {}", d.severity.as_str(), d.code, d.pointer))
        .collect()
}
