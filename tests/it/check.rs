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
