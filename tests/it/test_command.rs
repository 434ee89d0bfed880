//! `callflow test`, `graph` and `init` as a user runs them.
//!
//! `tests/test-command/<case>/README.md` says what a case shows and lists
//! the commands to run in its folder (lines `$ callflow ...`); their exit
//! codes and output are snapshotted. The scaffold of `callflow init` must
//! pass out of the box, fail with a diff once its module changes, and pass
//! again after `--update`; JUnit output must be XML with JUnit's required
//! elements and attributes.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::support::{callflow, copy_tree, insta_settings, render_output, root};

#[test]
fn test_command_cases() {
    insta_settings().bind(|| {
        insta::glob!("../test-command", "*/README.md", |readme| {
            let dir = readme.parent().unwrap();
            let commands: Vec<Vec<String>> = fs::read_to_string(readme)
                .unwrap()
                .lines()
                .filter_map(|line| line.strip_prefix("$ callflow "))
                .map(|args| args.split_whitespace().map(str::to_owned).collect())
                .collect();
            if commands.is_empty() {
                return; // a fixture for other cases
            }
            let mut text = String::new();
            for args in &commands {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let output = callflow(dir, &args);
                text.push_str(&format!("$ callflow {}\n", args.join(" ")));
                text.push_str(&render_output(&output));
                text.push('\n');
            }
            insta::assert_snapshot!(text);
        });
    });
}

#[test]
fn coverage_counts_the_known_branches() {
    let dir = root().join("tests/test-command/coverage");
    let output = callflow(&dir, &["test", "--coverage-format", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", render_output(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let json: Value =
        serde_json::from_str(&stdout[stdout.find('{').unwrap()..=stdout.rfind('}').unwrap()])
            .unwrap();
    let main = &json["callflows"][0];
    assert_eq!(main["callflow_id"], "main");
    assert_eq!(
        main["nodes"],
        serde_json::json!({"covered": 4, "total": 6, "percent": 66.7})
    );
    assert_eq!(
        main["branches"],
        serde_json::json!({"covered": 3, "total": 5, "percent": 60.0})
    );
    let never: Vec<&str> = main["never_taken"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(never, ["/flow/children/3", "/flow/children/_"]);
    assert_eq!(json["callflows"][1]["nodes"]["covered"], 0);
}

#[test]
fn the_number_of_jobs_does_not_change_the_output() {
    let dir = root().join("tests/test-command/expectations");
    let one = callflow(&dir, &["test", "--jobs", "1", "--coverage"]);
    let many = callflow(&dir, &["test", "--jobs", "4", "--coverage"]);
    assert_eq!(one.status.code(), Some(1));
    assert_eq!(render_output(&one), render_output(&many));
}

/// Required by JUnit's schema (and what CI servers read): `testsuite` with
/// `name`, `tests`, `failures`, `errors`, `time`; `testcase` with `name`,
/// `classname`, `time`; `failure` with `message`.
#[test]
fn junit_output_has_the_required_elements() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("report.xml");
    let dir = root().join("tests/test-command/expectations");
    let output = callflow(
        &dir,
        &[
            "test",
            "--format",
            "junit",
            "--output",
            report.to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    // The text results still go to stdout.
    assert!(String::from_utf8_lossy(&output.stdout).ends_with("4 passed, 3 failed\n"));
    let xml = fs::read_to_string(&report).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let root_element = doc.root_element();
    assert_eq!(root_element.tag_name().name(), "testsuites");
    assert_eq!(root_element.attribute("tests"), Some("7"));
    assert_eq!(root_element.attribute("failures"), Some("3"));
    let suites: Vec<_> = root_element
        .children()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    let names: Vec<&str> = suites
        .iter()
        .map(|s| s.attribute("name").unwrap())
        .collect();
    assert_eq!(names, ["tests", "tests/more"]);
    let mut cases = 0;
    let mut failures = Vec::new();
    for suite in &suites {
        for attribute in ["name", "tests", "failures", "errors", "time"] {
            assert!(
                suite.attribute(attribute).is_some(),
                "testsuite {attribute}"
            );
        }
        let suite_cases: Vec<_> = suite
            .children()
            .filter(|n| n.has_tag_name("testcase"))
            .collect();
        assert_eq!(
            suite.attribute("tests").unwrap(),
            suite_cases.len().to_string()
        );
        for case in suite_cases {
            cases += 1;
            for attribute in ["name", "classname", "time"] {
                assert!(case.attribute(attribute).is_some(), "testcase {attribute}");
            }
            assert!(case.attribute("time").unwrap().parse::<f64>().is_ok());
            if let Some(failure) = case.children().find(|n| n.has_tag_name("failure")) {
                assert!(failure.attribute("message").is_some());
                failures.push((
                    case.attribute("name").unwrap(),
                    failure.text().unwrap_or_default().to_owned(),
                ));
            }
        }
    }
    assert_eq!(cases, 7);
    let names: Vec<&str> = failures.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, ["fail-expect", "fail-trace", "no-expectation"]);
    assert!(
        failures[1].1.contains("-00:00.100  play     media=deux"),
        "{}",
        failures[1].1
    );
    assert!(failures[1].1.contains("+00:00.100  play     media=two"));
}

#[test]
fn the_text_report_can_go_to_a_file_without_colours() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("report.txt");
    let dir = root().join("tests/test-command/expectations");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_callflow"))
        .args(["test", "--output", report.to_str().unwrap()])
        .current_dir(&dir)
        .env("CLICOLOR_FORCE", "1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "{}", render_output(&output));
    let text = fs::read_to_string(&report).unwrap();
    assert!(
        text.starts_with("FAIL    tests/fail-expect.json\n"),
        "{text}"
    );
    assert!(text.ends_with("4 passed, 3 failed\n"), "{text}");
    assert!(!text.contains('\u{1b}'), "{text}");
    // On stdout, colours follow the terminal (forced here).
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_callflow"))
        .args(["test", "tests/fail-trace.json"])
        .current_dir(&dir)
        .env("CLICOLOR_FORCE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("\u{1b}[31m-00:00.100  play     media=deux"),
        "{stdout}"
    );
}

/// Runs `callflow init` into a fresh directory; returns the project path.
fn scaffold(tmp: &Path) -> std::path::PathBuf {
    let output = callflow(tmp, &["init", "demo"]);
    assert_eq!(output.status.code(), Some(0), "{}", render_output(&output));
    tmp.join("demo")
}

#[test]
fn the_scaffold_passes_out_of_the_box_and_checks_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let project = scaffold(tmp.path());
    let output = callflow(&project, &["test", "--coverage"]);
    insta_settings().bind(|| insta::assert_snapshot!(render_output(&output)));
    assert_eq!(output.status.code(), Some(0));
    let output = callflow(&project, &["check", "--scripts", "scripts"]);
    assert_eq!(output.status.code(), Some(0), "{}", render_output(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("no errors, no warnings"));
    // The module API's types come along, unchanged.
    assert_eq!(
        fs::read_to_string(project.join("scripts/callflow.d.luau")).unwrap(),
        fs::read_to_string(root().join("scripts/callflow.d.luau")).unwrap()
    );
    // Every scenario runs the same from another directory.
    let output = callflow(tmp.path(), &["test", "demo/tests"]);
    assert_eq!(output.status.code(), Some(0), "{}", render_output(&output));
}

#[test]
fn a_changed_module_fails_with_a_diff_and_update_accepts_it() {
    let tmp = tempfile::tempdir().unwrap();
    let project = scaffold(tmp.path());
    let module = project.join("scripts/greet.lua");
    let text = fs::read_to_string(&module).unwrap();
    fs::write(&module, text.replace("Welcome to ", "Hello from ")).unwrap();

    let output = callflow(&project, &["test"]);
    insta_settings().bind(|| insta::assert_snapshot!(render_output(&output)));
    assert_eq!(output.status.code(), Some(1));

    let output = callflow(&project, &["test", "--update"]);
    assert_eq!(output.status.code(), Some(0), "{}", render_output(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("UPDATED tests/front-desk.json"));
    let trace = fs::read_to_string(project.join("tests/front-desk.trace")).unwrap();
    assert!(trace.contains("text=\"Hello from Demo Co.\""), "{trace}");

    let output = callflow(&project, &["test"]);
    assert_eq!(output.status.code(), Some(0), "{}", render_output(&output));
}

#[test]
fn update_creates_missing_traces_but_never_rewrites_inline_expectations() {
    let tmp = tempfile::tempdir().unwrap();
    // The whole folder: the scenarios use the flows of the coverage case.
    copy_tree(&root().join("tests/test-command"), tmp.path());
    let dir = tmp.path().join("expectations");
    let output = callflow(&dir, &["test", "--update"]);
    // fail-expect still fails: its expectations are inline.
    assert_eq!(output.status.code(), Some(1), "{}", render_output(&output));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        stdout.contains("UPDATED tests/fail-trace.json: rewrote tests/fail-trace.trace"),
        "{stdout}"
    );
    assert!(
        stdout.contains("CREATED tests/no-expectation.json: wrote tests/no-expectation.trace"),
        "{stdout}"
    );
    assert!(stdout.contains("PASS    tests/pass-both.json"), "{stdout}");
    assert!(
        stdout.ends_with("6 passed, 1 failed; 2 expected traces written\n"),
        "{stdout}"
    );
    assert!(!dir.join("tests/pass-expect.trace").exists());
    let output = callflow(
        &dir,
        &["test", "tests/fail-trace.json", "tests/no-expectation.json"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", render_output(&output));
}

#[test]
fn init_refuses_a_directory_that_is_not_empty() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("notes.txt"), "mine").unwrap();
    let output = callflow(tmp.path(), &["init", "."]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("is not empty"),
        "{}",
        render_output(&output)
    );
    assert!(!tmp.path().join("README.md").exists());
    let output = callflow(tmp.path(), &["init", ".", "--force"]);
    assert_eq!(output.status.code(), Some(0), "{}", render_output(&output));
    assert_eq!(
        fs::read_to_string(tmp.path().join("notes.txt")).unwrap(),
        "mine"
    );
    let output = callflow(tmp.path(), &["test"]);
    assert_eq!(output.status.code(), Some(0), "{}", render_output(&output));
}

#[test]
fn graph_highlights_the_path_of_a_trace() {
    let tmp = tempfile::tempdir().unwrap();
    let project = scaffold(tmp.path());
    let output = callflow(
        &project,
        &["simulate", "tests/vip.json", "--format", "json"],
    );
    fs::write(tmp.path().join("vip.json"), &output.stdout).unwrap();
    let trace = tmp.path().join("vip.json");
    let output = callflow(
        &project,
        &[
            "graph",
            "main",
            "--format",
            "mermaid",
            "--trace",
            trace.to_str().unwrap(),
        ],
    );
    insta_settings().bind(|| insta::assert_snapshot!(render_output(&output)));
    assert_eq!(output.status.code(), Some(0));

    // The stored text trace `callflow test` keeps draws the same path as
    // the JSON trace of the same scenario.
    let output = callflow(
        &project,
        &["simulate", "tests/front-desk.json", "--format", "json"],
    );
    fs::write(tmp.path().join("front-desk.json"), &output.stdout).unwrap();
    let front_desk = tmp.path().join("front-desk.json");
    let from_json = callflow(
        &project,
        &["graph", "main", "--trace", front_desk.to_str().unwrap()],
    );
    assert_eq!(
        from_json.status.code(),
        Some(0),
        "{}",
        render_output(&from_json)
    );
    let from_text = callflow(
        &project,
        &["graph", "main", "--trace", "tests/front-desk.trace"],
    );
    assert_eq!(
        from_text.status.code(),
        Some(0),
        "{}",
        render_output(&from_text)
    );
    assert_eq!(
        String::from_utf8_lossy(&from_text.stdout),
        String::from_utf8_lossy(&from_json.stdout)
    );
    // Something was highlighted (the unmarked drawing differs).
    let plain = callflow(&project, &["graph", "main"]);
    assert_ne!(plain.stdout, from_text.stdout);

    fs::write(tmp.path().join("bad.trace"), "00:00.000  node path\n").unwrap();
    let bad = tmp.path().join("bad.trace");
    let output = callflow(
        &project,
        &["graph", "main", "--trace", bad.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("neither JSON nor a text trace") && stderr.contains("line 1"),
        "{stderr}"
    );

    fs::write(
        tmp.path().join("bad.json"),
        "{\"events\": [{\"event\": \"node\"}]}",
    )
    .unwrap();
    let bad = tmp.path().join("bad.json");
    let output = callflow(
        &project,
        &["graph", "main", "--trace", bad.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is not a JSON trace") && stderr.contains("events[0].t_ms"),
        "{stderr}"
    );
}
