//! `tests/check/<case>/`: each case is a flows directory (`flows/`, and
//! `scripts/` when the case has module scripts) with a `README.md` saying
//! what it shows, and an `args` file when the case needs more arguments.
//! `callflow check` runs on it in both formats; the exit code and output
//! are snapshotted.

use serde_json::Value;

use crate::support::{callflow, insta_settings, render_output};

#[test]
fn check_cases() {
    insta_settings().bind(|| {
        insta::glob!("../check", "*/README.md", |readme| {
            let dir = readme.parent().unwrap();
            let mut args = vec!["check", "--flows", "flows"];
            if dir.join("scripts").is_dir() {
                args.extend(["--scripts", "scripts"]);
            }
            let extra = std::fs::read_to_string(dir.join("args")).unwrap_or_default();
            args.extend(extra.split_whitespace());
            let text = callflow(dir, &args);
            args.extend(["--format", "json"]);
            let json = callflow(dir, &args);
            assert_eq!(text.status.code(), json.status.code(), "both formats agree");
            let parsed: Value = serde_json::from_slice(&json.stdout).unwrap();
            let errors = parsed["diagnostics"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["severity"] == "error")
                .count();
            assert_eq!(text.status.code(), Some(i32::from(errors > 0)));
            let pretty = serde_json::to_string_pretty(&parsed).unwrap();
            insta::assert_snapshot!(format!("{}\n--- json\n{pretty}\n", render_output(&text)));
        });
    });
}

/// The type checker (`check --types`) is a program of its own; the test
/// command (`bash .ci/test`) builds it beside the callflow binary, where the
/// `types` cases find it.
fn checker_beside_callflow() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_BIN_EXE_callflow")).with_file_name(format!(
        "callflow-luau-check{}",
        std::env::consts::EXE_SUFFIX
    ))
}

#[test]
fn the_type_checker_is_built_beside_callflow() {
    let checker = checker_beside_callflow();
    assert!(
        checker.is_file(),
        "{} is missing: build it with `cargo build -p callflow-luau-check` (bash .ci/test does)",
        checker.display()
    );
    let output = std::process::Command::new(&checker)
        .arg("--version")
        .output()
        .unwrap();
    assert!(output.status.success());
    let version = String::from_utf8(output.stdout).unwrap();
    assert!(version.contains("(Luau 0."), "{version}");
}

/// Without the checker, `--types` stops with exit status 2 and says how to
/// get it; a variable naming no file is an error naming it.
#[test]
fn without_the_type_checker_types_says_how_to_get_it() {
    // A hard link, not a copy: a copy's file is open for writing while
    // other tests fork, and running it could then fail with ETXTBSY.
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let alone = tmp.path().join("callflow");
    std::fs::hard_link(env!("CARGO_BIN_EXE_callflow"), &alone).unwrap();
    let case = crate::support::root().join("tests/check/types");
    let run = |env: Option<&str>| {
        let mut command = std::process::Command::new(&alone);
        command
            .args([
                "check",
                "--types",
                "--flows",
                "flows",
                "--scripts",
                "scripts",
            ])
            .current_dir(&case)
            .env("PATH", tmp.path())
            .env_remove("CALLFLOW_LUAU_CHECK");
        if let Some(value) = env {
            command.env("CALLFLOW_LUAU_CHECK", value);
        }
        command.output().unwrap()
    };
    let output = run(None);
    assert_eq!(output.status.code(), Some(2), "{}", render_output(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("needs the callflow-luau-check program")
            && stderr.contains("cargo build --release -p callflow-luau-check")
            && stderr.contains("CALLFLOW_LUAU_CHECK"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "nothing half-checked is printed");

    let missing = tmp.path().join("no-such-checker");
    let output = run(Some(missing.to_str().unwrap()));
    assert_eq!(output.status.code(), Some(2), "{}", render_output(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no-such-checker, which is not a file"),
        "{stderr}"
    );

    // And the checker named by the variable is the one used.
    let output = run(Some(checker_beside_callflow().to_str().unwrap()));
    assert_eq!(output.status.code(), Some(1), "{}", render_output(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("error[types]"), "{stdout}");
}
