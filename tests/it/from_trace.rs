//! `tests/from-trace/<case>/`: traces of real calls (captured with SIPp
//! against `callflow serve --sip`, as each case's README says) turned into
//! scenarios: the scenario and the notes are snapshotted, and the replay
//! must pass its own `expect`. A flow changed after the call must make the
//! replay fail with a clear message, and the CLI must make a scenario that
//! `callflow test` passes.

use std::fs;
use std::path::{Path, PathBuf};

use callflow::sim::Scenario;
use callflow::testing::check;
use callflow::testing::from_trace::{ScenarioPaths, convert};

use crate::support::{callflow, copy_tree, insta_settings, render_output, root, simulate_in};

/// The `--flows` of the `$ callflow scenario from-trace` line of a case's
/// README: how the case is meant to be converted.
fn flows_of(readme: &Path) -> String {
    let text = fs::read_to_string(readme).unwrap();
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix("$ callflow scenario from-trace "))
        .unwrap_or_else(|| {
            panic!(
                "{}: no `$ callflow scenario from-trace` line",
                readme.display()
            )
        });
    let args: Vec<&str> = line.split_whitespace().collect();
    let at = args.iter().position(|a| *a == "--flows").unwrap();
    args[at + 1].to_owned()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn from_trace() {
    let mut cases = 0;
    insta_settings().bind(|| {
        insta::glob!("../from-trace", "*/trace.json", |path| {
            cases += 1;
            let dir = path.parent().unwrap();
            let paths = ScenarioPaths {
                flows: Some(flows_of(&dir.join("README.md"))),
                scripts: Vec::new(),
            };
            let conversion = convert(&read_json(path), &paths)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let mut text = serde_json::to_string_pretty(&conversion.scenario).unwrap();
            text.push_str("\n--- notes\n");
            for note in &conversion.notes {
                text.push_str(note);
                text.push('\n');
            }
            insta::assert_snapshot!(text);

            let scenario = Scenario::parse(&conversion.scenario.to_string()).unwrap();
            let base = dir.strip_prefix(root()).unwrap();
            let trace = simulate_in(&scenario, base);
            let failures = check(&trace, scenario.expect.as_ref().unwrap());
            assert!(
                failures.is_empty(),
                "{}: the replay does not pass its expect:\n{}\n\nthe replay's trace:\n{}",
                dir.display(),
                failures.join("\n"),
                trace.render_text()
            );
        });
    });
    assert!(cases >= 4, "only {cases} cases in tests/from-trace");
}

/// A temporary project: the test flows and a real trace.
fn project() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cases = root().join("tests/from-trace");
    copy_tree(&cases.join("flows"), &dir.path().join("flows"));
    let trace = dir.path().join("trace.json");
    fs::copy(cases.join("menu-support/trace.json"), &trace).unwrap();
    (dir, trace)
}

#[test]
fn the_cli_makes_a_scenario_that_callflow_test_passes() {
    let (dir, _) = project();
    let made = callflow(
        dir.path(),
        &[
            "scenario",
            "from-trace",
            "trace.json",
            "--output",
            "tests/replay.json",
            "--flows",
            "flows",
        ],
    );
    assert_eq!(made.status.code(), Some(0), "{}", render_output(&made));
    let scenario = read_json(&dir.path().join("tests/replay.json"));
    assert_eq!(scenario["flows"], "../flows");
    let stderr = String::from_utf8_lossy(&made.stderr);
    assert!(stderr.contains("wrote tests/replay.json"), "{stderr}");
    assert!(
        stderr.contains("note: events[9]: a warning of the real call, not in the replay: bridging real legs (dev_support) is not available yet"),
        "{stderr}"
    );

    let tested = callflow(dir.path(), &["test"]);
    assert_eq!(tested.status.code(), Some(0), "{}", render_output(&tested));
    assert!(
        String::from_utf8_lossy(&tested.stdout).contains("1 passed, 0 failed"),
        "{}",
        render_output(&tested)
    );

    // Without --output the scenario goes to stdout, paths relative to here.
    let printed = callflow(
        dir.path(),
        &["scenario", "from-trace", "trace.json", "--flows", "flows"],
    );
    assert_eq!(
        printed.status.code(),
        Some(0),
        "{}",
        render_output(&printed)
    );
    let json: serde_json::Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert_eq!(json["flows"], "flows");
    assert_eq!(json["caller"], scenario["caller"]);
}

/// The menu's child `2` now goes to sales' goodbye instead of support: the
/// replay of the call that pressed 2 must fail, saying what changed.
#[test]
fn a_changed_flow_fails_the_replay() {
    let (dir, _) = project();
    let main = dir.path().join("flows/acme/callflows/main.json");
    let mut callflow_doc = read_json(&main);
    callflow_doc["flow"]["children"]["2"] = callflow_doc["flow"]["children"]["1"].clone();
    fs::write(&main, serde_json::to_string_pretty(&callflow_doc).unwrap()).unwrap();

    let made = callflow(
        dir.path(),
        &[
            "scenario",
            "from-trace",
            "trace.json",
            "-o",
            "tests/replay.json",
            "--flows",
            "flows",
        ],
    );
    assert_eq!(made.status.code(), Some(0), "{}", render_output(&made));
    let tested = callflow(dir.path(), &["test"]);
    assert_eq!(tested.status.code(), Some(1), "{}", render_output(&tested));
    insta_settings().bind(|| insta::assert_snapshot!(render_output(&tested)));
}

/// Unusable input: exit status 2 and a message naming the file and what is
/// wrong with it.
#[test]
fn unusable_traces_are_refused() {
    let (dir, _) = project();
    let write = |name: &str, text: &str| fs::write(dir.path().join(name), text).unwrap();
    write("broken.json", "{\"events\": [");
    write(
        "simulated.json",
        r#"{"events": [{"t_ms": 0, "event": "answer"}]}"#,
    );
    write("list.json", "[]");
    write(
        "bad-event.json",
        r#"{"account_id": "acme", "to": "1000", "start": "2026-12-06T11:53:24Z", "events": [{"event": "dtmf", "digit": "2"}]}"#,
    );
    write(
        "bad-digit.json",
        r#"{"account_id": "acme", "to": "1000", "start": "2026-12-06T11:53:24Z", "events": [{"t_ms": 5, "event": "dtmf", "digit": "x"}]}"#,
    );
    let mut text = String::new();
    for args in [
        &["scenario", "from-trace", "missing.json"][..],
        &["scenario", "from-trace", "broken.json"],
        &["scenario", "from-trace", "list.json"],
        &["scenario", "from-trace", "simulated.json"],
        &["scenario", "from-trace", "bad-event.json"],
        &["scenario", "from-trace", "bad-digit.json"],
        &[
            "scenario",
            "from-trace",
            "trace.json",
            "--flows",
            "no-such-dir",
        ],
        &[
            "scenario",
            "from-trace",
            "trace.json",
            "--scripts",
            "no-scripts",
        ],
    ] {
        let output = callflow(dir.path(), args);
        text.push_str(&format!("$ callflow {}\n", args.join(" ")));
        text.push_str(&render_output(&output));
        text.push('\n');
    }
    insta_settings().bind(|| insta::assert_snapshot!(text));
}
