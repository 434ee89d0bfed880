//! The project file, `callflow.toml`, as a user meets it: `callflow init`
//! writes it, every command finds it from a subdirectory and needs no
//! flags, flags win over it, a bad one is an error naming the file and
//! place; broken scripts and flows fail `callflow test`.

use std::fs;
use std::io::BufRead;
use std::path::PathBuf;

use crate::support::{callflow, copy_tree, render_output};

/// `callflow init demo` in a fresh directory: (the tempdir, the project).
fn scaffold() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let output = callflow(tmp.path(), &["init", "demo"]);
    assert_eq!(output.status.code(), Some(0), "{}", render_output(&output));
    // The real path: the project file is named by it.
    let project = fs::canonicalize(tmp.path().join("demo")).unwrap();
    (tmp, project)
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn init_writes_the_project_file_and_its_readme_tells_of_it() {
    let (_tmp, project) = scaffold();
    let text = fs::read_to_string(project.join("callflow.toml")).unwrap();
    assert!(text.contains("flows = \"flows\""), "{text}");
    assert!(text.contains("scripts = [\"scripts\"]"), "{text}");
    let readme = fs::read_to_string(project.join("README.md")).unwrap();
    assert!(readme.contains("callflow.toml"), "{readme}");
    assert!(readme.contains("callflow dev"), "{readme}");
}

#[test]
fn every_command_runs_without_flags_from_a_subdirectory() {
    let (_tmp, project) = scaffold();
    let sub = project.join("tests");
    let using = format!(
        "callflow: using project file {}",
        project.join("callflow.toml").display()
    );

    // check finds the flows and the project's own module: no warning.
    let output = callflow(&sub, &["-v", "check"]);
    assert_eq!(output.status.code(), Some(0), "{}", render_output(&output));
    assert!(
        stderr(&output).contains(&using),
        "{}",
        render_output(&output)
    );
    assert!(
        stdout(&output).contains("checked 1 account in ../flows"),
        "{}",
        render_output(&output)
    );
    assert!(
        stdout(&output).contains("no errors, no warnings"),
        "{}",
        render_output(&output)
    );
    // Without -v, nothing is said about it.
    let output = callflow(&sub, &["check"]);
    assert!(
        !stderr(&output).contains("project file"),
        "{}",
        render_output(&output)
    );

    // simulate without a scenario file runs the project's module.
    let output = callflow(
        &sub,
        &["simulate", "--to", "1000", "--from", "+12125550123"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", render_output(&output));
    assert!(
        stdout(&output).contains("message=\"VIP caller +12125550123\""),
        "{}",
        render_output(&output)
    );

    for args in [
        &["route", "1000"][..],
        &["graph", "main"],
        &["graph", "main", "--coverage"],
        &["test"],
        &["bench", "front-desk.json", "--calls", "2"],
    ] {
        let output = callflow(&sub, args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            render_output(&output)
        );
    }
    let output = callflow(&sub, &["test"]);
    assert!(
        stdout(&output).ends_with("2 passed, 0 failed\n"),
        "{}",
        render_output(&output)
    );
}

#[test]
fn flags_win_over_the_project_file() {
    let (_tmp, project) = scaffold();
    let output = callflow(&project, &["check", "--flows", "elsewhere"]);
    assert_eq!(output.status.code(), Some(2), "{}", render_output(&output));
    assert!(
        stderr(&output).contains("elsewhere"),
        "{}",
        render_output(&output)
    );
    // --scripts replaces the project's: the project's module is missing.
    let empty = project.join("empty");
    fs::create_dir(&empty).unwrap();
    let output = callflow(&project, &["check", "--scripts", "empty"]);
    assert!(
        stdout(&output).contains("greet"),
        "{}",
        render_output(&output)
    );
    // And a project's flows that do not exist are named in the error.
    fs::write(project.join("callflow.toml"), "flows = \"nowhere\"\n").unwrap();
    let output = callflow(&project.join("scripts"), &["route", "1000"]);
    assert_eq!(output.status.code(), Some(2), "{}", render_output(&output));
    assert!(
        stderr(&output).contains("nowhere"),
        "{}",
        render_output(&output)
    );
}

#[test]
fn a_bad_project_file_is_an_error_naming_the_file_and_place() {
    let (_tmp, project) = scaffold();
    let file = project.join("callflow.toml");
    for (text, expected) in [
        (
            "flows = \"flows\"\nscript = [\"scripts\"]\n",
            "unknown field `script`",
        ),
        ("[serve]\nport = 8000\n", "unknown field `port`"),
        ("flows = \"flows\"\ntests = [\"tests\"\n", "line 2, column"),
        ("[serve]\nrtp_ports = \"1-2\"\n", "serve.rtp_ports"),
    ] {
        fs::write(&file, text).unwrap();
        let output = callflow(&project.join("flows"), &["check"]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{text}: {}",
            render_output(&output)
        );
        let stderr = stderr(&output);
        assert!(
            stderr.contains(&format!("bad project file {}", file.display())),
            "{text}: {stderr}"
        );
        assert!(stderr.contains(expected), "{text}: {stderr}");
    }
}

#[test]
fn a_broken_unused_script_fails_the_tests() {
    let (_tmp, project) = scaffold();
    fs::write(
        project.join("scripts/unused.lua"),
        "return {handle=function(c) if true c:answer() end end}",
    )
    .unwrap();
    let output = callflow(&project, &["test"]);
    assert_eq!(output.status.code(), Some(1), "{}", render_output(&output));
    let text = stdout(&output);
    // Listed first, naming the file; the scenarios still run.
    assert!(text.starts_with("BROKEN  error[script]"), "{text}");
    assert!(text.contains("--> scripts/unused.lua:1"), "{text}");
    assert!(
        text.ends_with(
            "2 passed, 0 failed; 1 error in the scripts or flows (listed first; --allow-broken to pass without them)\n"
        ),
        "{text}"
    );
    // The JUnit report says so too: an errored case per broken file.
    let output = callflow(&project, &["test", "--format", "junit"]);
    assert_eq!(output.status.code(), Some(1), "{}", render_output(&output));
    let xml = stdout(&output);
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let all = doc.root_element();
    assert_eq!(all.attribute("tests"), Some("3"), "{xml}");
    assert_eq!(all.attribute("errors"), Some("1"), "{xml}");
    let broken = all
        .children()
        .find(|n| n.attribute("name") == Some("scripts and flows"))
        .unwrap_or_else(|| panic!("{xml}"));
    let case = broken
        .children()
        .find(|n| n.has_tag_name("testcase"))
        .unwrap();
    assert_eq!(case.attribute("file"), Some("scripts/unused.lua"), "{xml}");
    let error = case.children().find(|n| n.has_tag_name("error")).unwrap();
    assert_eq!(error.attribute("type"), Some("script"), "{xml}");
    assert!(
        error.attribute("message").unwrap().contains("syntax error"),
        "{xml}"
    );
    // --allow-broken: today's behaviour, a warning on stderr.
    let output = callflow(&project, &["test", "--allow-broken"]);
    assert_eq!(output.status.code(), Some(0), "{}", render_output(&output));
    assert!(
        !stdout(&output).contains("BROKEN"),
        "{}",
        render_output(&output)
    );
    assert!(
        stderr(&output).contains("scripts/unused.lua"),
        "{}",
        render_output(&output)
    );
}

#[test]
fn a_flow_with_an_error_fails_the_tests() {
    let (_tmp, project) = scaffold();
    fs::write(
        project.join("flows/demo/callflows/broken.json"),
        r#"{"numbers": ["5555"], "flow": {"module": "answer", "data": {}, "children": "x"}}"#,
    )
    .unwrap();
    let check = callflow(&project, &["check"]);
    assert_eq!(check.status.code(), Some(1), "{}", render_output(&check));
    let output = callflow(&project, &["test"]);
    assert_eq!(output.status.code(), Some(1), "{}", render_output(&output));
    assert!(
        stdout(&output).contains("flows/demo/callflows/broken.json"),
        "{}",
        render_output(&output)
    );
    let output = callflow(&project, &["test", "--allow-broken"]);
    assert_eq!(output.status.code(), Some(0), "{}", render_output(&output));
}

#[test]
fn the_project_flows_count_even_when_no_scenario_uses_them() {
    let (_tmp, project) = scaffold();
    copy_tree(&project.join("flows"), &project.join("more"));
    fs::write(
        project.join("more/demo/callflows/broken.json"),
        r#"{"numbers": ["5555"], "flow": {"module": "answer", "data": {}, "children": "x"}}"#,
    )
    .unwrap();
    fs::write(
        project.join("callflow.toml"),
        "flows = \"more\"\nscripts = [\"scripts\"]\n",
    )
    .unwrap();
    // The scenarios name their own flows (../flows), which are fine.
    let output = callflow(&project, &["test"]);
    assert_eq!(output.status.code(), Some(1), "{}", render_output(&output));
    assert!(
        stdout(&output).contains("--> more/demo/callflows/broken.json at /flow/children"),
        "{}",
        render_output(&output)
    );
    assert!(
        stdout(&output).contains("2 passed, 0 failed; 1 error"),
        "{}",
        render_output(&output)
    );
}

/// Reads stderr lines until one contains `needle`.
fn read_until(lines: &mut impl Iterator<Item = std::io::Result<String>>, needle: &str) -> String {
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(needle) {
            return seen;
        }
    }
    panic!("no line with {needle:?} in:\n{seen}");
}

#[test]
fn dev_without_flags_reloads_an_edited_module() {
    let (_tmp, project) = scaffold();
    let file = project.join("callflow.toml");
    let text = fs::read_to_string(&file).unwrap();
    // A free port: the test must not depend on 8000 being free.
    let text = text.replace("listen = \"127.0.0.1:8000\"", "listen = \"127.0.0.1:0\"");
    assert!(text.contains("127.0.0.1:0"), "{text}");
    fs::write(&file, text).unwrap();
    // From a subdirectory, no directory flags (the helper only picks a
    // free port and turns the poll off); stderr read with a timeout.
    let dev = crate::reload::Dev::start(&project.join("flows"), &[]);
    let seen = dev.until("callflow: serving");
    assert!(seen.contains("serving . on http://127.0.0.1:"), "{seen}");
    let module = project.join("scripts/greet.lua");
    let text = fs::read_to_string(&module).unwrap();
    fs::write(&module, text.replace("Welcome to ", "Hello from ")).unwrap();
    // The scenarios re-run (the stored trace now differs) and the server
    // reloads; either line may come first.
    let mut seen = dev.until("1 passed, 1 failed");
    if !seen.contains("reloaded (watch): generation 2") {
        seen.push_str(&dev.until("reloaded (watch): generation 2"));
    }
    assert!(seen.contains("Hello from Demo Co."), "{seen}");
}

#[test]
fn serve_without_flags_takes_its_settings_from_the_project_file() {
    let (_tmp, project) = scaffold();
    fs::write(
        project.join("callflow.toml"),
        "flows = \"flows\"\nscripts = [\"scripts\"]\ntraces = \"calls\"\n\n[serve]\nlisten = \"127.0.0.1:0\"\nsip = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_callflow"))
        .current_dir(project.join("scripts"))
        .args(["-v", "serve"])
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let seen = read_until(&mut lines, "callflow: serving");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        seen.contains(&format!(
            "callflow: using project file {}",
            project.join("callflow.toml").display()
        )),
        "{seen}"
    );
    assert!(seen.contains("traces of real calls in ../calls"), "{seen}");
    assert!(
        seen.contains("serving ../flows on http://127.0.0.1:"),
        "{seen}"
    );
}
