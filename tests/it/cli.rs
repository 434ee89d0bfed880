//! The real binary on the bundled sample flows (`flows/acme`), as the README
//! shows it: `check` is clean, `route` answers for every number and pattern,
//! and bad input gets a clear error with exit code 2.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value;

use callflow::store::{FlowsDir, Store};

use crate::support::{callflow, copy_tree, insta_settings, render_output, root};

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn check_on_the_sample_flows_is_clean() {
    let output = callflow(&root(), &["check"]);
    assert_eq!(output.status.code(), Some(0), "{}", render_output(&output));
    let text = stdout(&output);
    assert!(text.contains(": no errors, no warnings"), "{text}");
}

/// A dialled number for each pattern of the sample account. Every pattern
/// must be listed, so a new pattern in the sample needs an example here.
const PATTERN_EXAMPLES: &[(&str, &str, Option<&str>)] = &[
    (r"^\*97([0-9]*)$", "*971001", Some("1001")),
    (r"^\*\*([0-9]*)$", "**1002", Some("1002")),
    (r"^\*72([0-9]*)$", "*724155550123", Some("4155550123")),
    (r"^\*3([0-9]*)$", "*3101", Some("101")),
    (r"^\*0([0-9]*)$", "*01003", Some("1003")),
    (r"^\*5([0-9]+)$", "*5101", Some("101")),
    (r"^\*8([0-9]+)$", "*81002", Some("1002")),
];

#[test]
fn route_answers_for_every_number_and_pattern_of_the_sample() {
    let sources = FlowsDir::new(root().join("flows")).read().unwrap();
    let account = &sources.accounts[0];
    let mut numbers: BTreeMap<String, String> = BTreeMap::new();
    let mut patterns: BTreeMap<String, String> = BTreeMap::new();
    for (id, file) in &account.callflows {
        let doc: Value = serde_json::from_str(&file.text).unwrap();
        for n in doc["numbers"].as_array().unwrap() {
            numbers.insert(n.as_str().unwrap().to_owned(), id.to_string());
        }
        for p in doc["patterns"].as_array().unwrap() {
            patterns.insert(p.as_str().unwrap().to_owned(), id.to_string());
        }
    }
    assert!(numbers.len() >= 10 && !patterns.is_empty());

    for (number, id) in &numbers {
        let dialled = if number == "no_match" {
            "4155550123"
        } else {
            number
        };
        let output = callflow(&root(), &["route", dialled, "--format", "json"]);
        assert_eq!(output.status.code(), Some(0), "{}", render_output(&output));
        let route: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(route["callflow_id"], id.as_str(), "{dialled}");
        let expected = if number == "no_match" {
            "no_match"
        } else {
            "number"
        };
        assert_eq!(route["matched"], expected, "{dialled}");
    }

    assert_eq!(
        patterns.keys().collect::<Vec<_>>().len(),
        PATTERN_EXAMPLES.len(),
        "one example per sample pattern"
    );
    for (pattern, dialled, capture) in PATTERN_EXAMPLES {
        let id = patterns
            .get(*pattern)
            .unwrap_or_else(|| panic!("{pattern} is in the sample"));
        let output = callflow(&root(), &["route", dialled, "--format", "json"]);
        assert_eq!(output.status.code(), Some(0), "{}", render_output(&output));
        let route: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(route["callflow_id"], id.as_str(), "{dialled}");
        assert_eq!(route["matched"], "pattern");
        assert_eq!(route["pattern"], *pattern);
        assert_eq!(route["capture_group"].as_str(), *capture);
    }
}

#[test]
fn route_json_shape() {
    let output = callflow(&root(), &["route", "4158867900", "--format", "json"]);
    assert_eq!(
        stdout(&output),
        concat!(
            r#"{"account":"acme","dialled":"4158867900","number":"+14158867900","#,
            r#""callflow_id":"main","name":"Main number","matched":"number"}"#,
            "\n"
        )
    );
    let output = callflow(&root(), &["route", "*3", "--format", "json"]);
    let route: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        route.get("capture_group").is_none(),
        "empty capture omitted"
    );
    assert!(route.get("capture_groups").is_none());

    let output = callflow(
        &root(),
        &[
            "route",
            "5550100",
            "--inception",
            "offnet",
            "--format",
            "json",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let error: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(error["error"], "not_found");
    assert_eq!(error["number"], "+14155550100");
}

#[test]
fn route_and_errors_read_well() {
    insta_settings().bind(|| {
        let runs: &[&[&str]] = &[
            &["route", "4158867900"],
            &["route", "*971001"],
            &["route", "*99"],
            &["route", "5550100", "--inception", "offnet"],
            &["route", "1000", "--account", "nope"],
            &["route", "1000", "--flows", "no/such/dir"],
            &["check", "--flows", "Cargo.toml"],
            &["route"],
        ];
        let mut text = String::new();
        for args in runs {
            let output = callflow(&root(), args);
            writeln!(
                text,
                "$ callflow {}\n{}",
                args.join(" "),
                render_output(&output)
            )
            .unwrap();
        }
        insta::assert_snapshot!(text);
    });
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        &["--help"][..],
        &["check", "--help"],
        &["route", "--help"],
        &["simulate", "--help"],
        &["bench", "--help"],
        &["test", "--help"],
        &["graph", "--help"],
        &["init", "--help"],
        &["serve", "--help"],
        &["account", "--help"],
        &["api-key", "--help"],
        &["api-key", "create", "--help"],
        &["api-key", "list", "--help"],
        &["api-key", "revoke", "--help"],
        &["scenario", "--help"],
        &["scenario", "from-trace", "--help"],
    ] {
        let output = callflow(&root(), args);
        assert_eq!(output.status.code(), Some(0));
        assert!(stdout(&output).contains("Usage: callflow"), "{args:?}");
    }
}

#[test]
fn simulate_prints_the_same_trace_as_the_library() {
    let path = root().join("tests/scenarios/sample-ivr.json");
    let output = callflow(&root(), &["simulate", "tests/scenarios/sample-ivr.json"]);
    assert_eq!(output.status.code(), Some(0), "{}", render_output(&output));
    assert_eq!(
        stdout(&output),
        crate::support::simulate_file(&path).render_text()
    );

    let json = callflow(
        &root(),
        &[
            "simulate",
            "tests/scenarios/sample-ivr.json",
            "--format",
            "json",
        ],
    );
    let parsed: Value = serde_json::from_slice(&json.stdout).unwrap();
    let events = parsed["events"].as_array().unwrap();
    assert_eq!(events[0]["event"], "route");
    assert_eq!(events.last().unwrap()["event"], "end");
    assert!(events.iter().all(|e| e["t_ms"].is_u64()));
}

/// The README's metaflow sample shows the trace the binary prints.
#[test]
fn the_readme_shows_the_real_metaflow_trace() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let command = "$ cargo run -q -- simulate tests/scenarios/sample-metaflow-transfer.json\n";
    let (_, after) = readme
        .split_once(command)
        .expect("the README shows the metaflow sample");
    let (shown, _) = after.split_once("```").unwrap();
    let output = callflow(
        &root(),
        &["simulate", "tests/scenarios/sample-metaflow-transfer.json"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", render_output(&output));
    assert_eq!(shown, stdout(&output));
    assert!(shown.contains("metaflow leg=b binding=dev_bob collected=21004"));
    assert!(shown.contains("branch   callflow_id=ext-1004"));
}

#[test]
fn simulate_without_a_scenario_file() {
    let output = callflow(
        &root(),
        &[
            "simulate",
            "--to",
            "1100",
            "--dtmf",
            "9,2",
            "--hangup-at",
            "60000",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", render_output(&output));
    let text = stdout(&output);
    assert!(
        text.contains("route    dialled=1100 number=1100 callflow_id=main-menu"),
        "{text}"
    );
    assert!(text.contains("branch   callflow_id=support"), "{text}");
}

#[test]
fn simulate_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"to": "1000", "caller": [{"at_ms": 10, "dtmf": "1"}, {"at_ms": "soon", "hangup": true}]}"#).unwrap();
    let unknown = dir.path().join("unknown.json");
    std::fs::write(&unknown, r#"{"to": "1000", "account": "globex"}"#).unwrap();
    let flows = root().join("flows");
    let flows = flows.to_str().unwrap();
    for (args, expected) in [
        (
            vec!["simulate", bad.to_str().unwrap(), "--flows", flows],
            "caller[1].at_ms: invalid type: string \"soon\", expected u64",
        ),
        (
            vec!["simulate", unknown.to_str().unwrap(), "--flows", flows],
            "account: no account \"globex\" in the flows (accounts: acme)",
        ),
        (
            vec!["simulate", "--to", "1000", "--dtmf", "1@soon"],
            "--dtmf: \"1@soon\": the time after @ is milliseconds",
        ),
        (
            vec!["simulate", "--to", "1000", "--dtmf", "x"],
            "DTMF is digits 0-9, *, # and A-D",
        ),
        (
            vec!["simulate", "missing.json"],
            "cannot read scenario missing.json",
        ),
    ] {
        let output = callflow(&root(), &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn a_module_that_raises_shows_its_file_and_line_and_the_call_goes_on_but_fails() {
    let dir = tempfile::tempdir().unwrap();
    let play = std::fs::read_to_string(root().join("scripts/play.lua")).unwrap();
    let broken = play.replacen(
        "\t\tlocal media = kazoo.string(data.id)",
        "\t\terror(\"the play module is broken\")\n\t\tlocal media = kazoo.string(data.id)",
        1,
    );
    assert_ne!(broken, play);
    std::fs::write(dir.path().join("play.lua"), &broken).unwrap();
    let line = broken
        .lines()
        .position(|l| l.contains("is broken"))
        .unwrap()
        + 1;
    let scripts = dir.path().to_str().unwrap();
    let args = [
        "simulate",
        "tests/scenarios/sample-main-sunday.json",
        "--scripts",
        scripts,
    ];
    // The error event fails the run (exit 1) after the whole trace...
    let output = callflow(&root(), &args);
    assert_eq!(output.status.code(), Some(1), "{}", render_output(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("the call hit 1 error event(s) (exit 1; --keep-going exits 0)"),
        "{}",
        render_output(&output)
    );
    // ... unless --keep-going, which prints the same trace.
    let kept = callflow(&root(), &[&args[..], &["--keep-going"]].concat());
    assert_eq!(kept.status.code(), Some(0), "{}", render_output(&kept));
    assert_eq!(kept.stdout, output.stdout);
    let text = stdout(&output);
    let error = format!(
        "error    module=play file={scripts}/play.lua line={line} message=\"the play module is broken\""
    );
    assert!(text.contains(&error), "{text}");
    // The call went on to the play node's "_" child.
    assert!(
        text.contains(
            "node     callflow_id=main path=/flow/children/_/children/_ module=voicemail"
        ),
        "{text}"
    );
}

#[test]
fn an_error_in_a_helper_shows_the_chain_of_frames() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("lib")).unwrap();
    std::fs::write(
        dir.path().join("lib/boom.lua"),
        "local M = {}\n\nfunction M.explode(what)\n\terror(\"blew up: \" .. what)\nend\n\nreturn M\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("play.lua"),
        "local boom = require(\"boom\")\n\nreturn {\n\thandle = function(call, data)\n\t\tboom.explode(\"now\")\n\t\treturn nil\n\tend,\n}\n",
    )
    .unwrap();
    let scripts = dir.path().to_str().unwrap();
    let run = || {
        let output = callflow(
            &root(),
            &[
                "simulate",
                "tests/scenarios/sample-main-sunday.json",
                "--scripts",
                scripts,
            ],
        );
        // The call hit an error event: simulate says so in its status.
        assert_eq!(output.status.code(), Some(1), "{}", render_output(&output));
        stdout(&output)
    };
    let text = run();
    let error = format!(
        "error    module=play file={scripts}/lib/boom.lua line=4 message=\"blew up: now\" stack=[\"{scripts}/lib/boom.lua:4\",\"{scripts}/play.lua:5\"]"
    );
    assert!(text.contains(&error), "{text}");
    assert_eq!(run(), text, "the same trace every run");
}

/// `callflow bench` of the sample IVR with `args`: its JSON report.
fn bench(args: &[&str]) -> Value {
    let mut all = vec!["bench", "tests/scenarios/sample-ivr.json"];
    all.extend(args);
    let output = callflow(&root(), &all);
    assert_eq!(output.status.code(), Some(0), "{}", render_output(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn bench_prints_its_figures() {
    let report = bench(&["--calls", "40", "--concurrency", "8"]);
    assert_eq!(report["calls"], 40);
    assert_eq!(report["concurrency"], 8);
    for key in [
        "wall_ms",
        "calls_per_sec",
        "peak_rss_kb",
        "peak_lua_heap_kb",
    ] {
        assert!(report[key].is_number(), "{key}: {report}");
    }
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["refused"], 0, "{report}");
}

#[test]
fn bench_mixes_in_a_memory_hog_whose_errors_stay_its_own() {
    let report = bench(&[
        "--mix",
        "tests/scenarios/sandbox-memory-hog.json:10",
        "--calls",
        "60",
        "--concurrency",
        "6",
        "--workers",
        "2",
    ]);
    // Each worker runs 30 calls: its 10th, 20th and 30th are hogs.
    assert_eq!(report["calls"], 60, "{report}");
    assert_eq!(report["errors"], 6, "{report}");
    assert_eq!(report["scenarios"][0]["calls"], 54, "{report}");
    assert_eq!(report["scenarios"][0]["errors"], 0, "{report}");
    assert_eq!(report["scenarios"][1]["calls"], 6, "{report}");
    assert_eq!(report["scenarios"][1]["errors"], 6, "{report}");
}

#[test]
fn bench_counts_the_calls_a_full_worker_refuses() {
    let report = bench(&[
        "--calls",
        "40",
        "--concurrency",
        "20",
        "--workers",
        "1",
        "--max-calls",
        "5",
    ]);
    // 20 lanes, 5 places: the first 5 calls run; the other lanes' calls
    // are refused until the 40 are used up.
    assert_eq!(report["calls"], 40, "{report}");
    assert_eq!(report["refused"], 35, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
}

#[test]
fn bench_refuses_a_bad_mix() {
    for (mix, says) in [
        (
            "tests/scenarios/sandbox-memory-hog.json",
            "expected FILE:EVERY",
        ),
        ("tests/scenarios/sandbox-memory-hog.json:1", "at least 2"),
        (
            "tests/scenarios/sandbox-memory-hog.json:often",
            "not a number",
        ),
        ("tests/scenarios/missing.json:5", "cannot read scenario"),
    ] {
        let output = callflow(
            &root(),
            &["bench", "tests/scenarios/sample-ivr.json", "--mix", mix],
        );
        assert_eq!(
            output.status.code(),
            Some(2),
            "{mix}: {}",
            render_output(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{mix}: {stderr}");
    }
}

#[test]
fn persisted_voicemail_messages_survive_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    copy_tree(&root().join("flows"), &flows);
    let scenario = root().join("tests/scenarios/sample-main-sunday.json");
    let messages = || -> Vec<Value> {
        let text = std::fs::read_to_string(flows.join("acme/vmboxes/vm-main.json")).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        doc["messages"].as_array().cloned().unwrap_or_default()
    };
    assert!(messages().is_empty());

    // Without --persist, the message lasts as long as the call.
    let args = |persist: bool| {
        let mut args = vec![
            "simulate".to_owned(),
            scenario.display().to_string(),
            "--flows".to_owned(),
            flows.display().to_string(),
        ];
        if persist {
            args.push("--persist".to_owned());
        }
        args
    };
    let run = |persist: bool| {
        let owned = args(persist);
        let borrowed: Vec<&str> = owned.iter().map(String::as_str).collect();
        let output = callflow(dir.path(), &borrowed);
        assert_eq!(output.status.code(), Some(0), "{}", render_output(&output));
        stdout(&output)
    };
    assert!(run(false).contains("voicemail.new_message"));
    assert!(messages().is_empty());

    // With it, each call's message is written to the box, and the next
    // process (a fresh catalog) sees the earlier ones.
    run(true);
    let first = messages();
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["folder"], "new");
    assert_eq!(first[0]["length"], 21400);
    run(true);
    assert_eq!(messages().len(), 2);

    // The box is still a valid document, and no temporary file is left.
    let check = callflow(dir.path(), &["check", "--flows", flows.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(0), "{}", render_output(&check));
    crate::support::assert_no_hidden_files(&flows.join("acme/vmboxes"));
}

/// `--version` names the commit and its date (build.rs), or `unknown`
/// outside a git checkout.
#[test]
fn version_names_the_commit_and_the_build_date() {
    let output = callflow(&root(), &["--version"]);
    assert_eq!(output.status.code(), Some(0), "{}", render_output(&output));
    let text = stdout(&output);
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(root())
            .args(args)
            .env("TZ", "UTC")
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    assert!(
        text.starts_with(&format!(
            "callflow {} (commit {commit}, built ",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    let date = text
        .trim_end()
        .strip_suffix(')')
        .and_then(|rest| rest.rsplit_once("built "))
        .map(|(_, date)| date.to_owned())
        .unwrap_or_default();
    if std::env::var_os("SOURCE_DATE_EPOCH").is_none() && commit != "unknown" {
        // The commit's own date (UTC): a rebuild of the same commit says the same.
        let wanted = git(&[
            "show",
            "-s",
            "--format=%cd",
            "--date=format-local:%Y-%m-%d",
            "HEAD",
        ]);
        assert_eq!(Some(date), wanted, "{text}");
    } else {
        assert!(
            date == "unknown" || (date.len() == 10 && date.as_bytes()[4] == b'-'),
            "{text}"
        );
    }
}

#[test]
fn api_keys_are_created_listed_and_revoked_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    copy_tree(&root().join("flows"), &flows);
    let flows_arg = flows.to_str().unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["api-key"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--flows", flows_arg]);
        callflow(dir.path(), &all)
    };

    let created = run(&["create", "acme", "--name", "ci bot"]);
    assert_eq!(
        created.status.code(),
        Some(0),
        "{}",
        render_output(&created)
    );
    let key = stdout(&created).trim().to_owned();
    assert_eq!(key.len(), 64);
    let said = String::from_utf8_lossy(&created.stderr).into_owned();
    assert!(said.contains("(ci bot)"), "{said}");
    assert!(
        !std::fs::read_to_string(flows.join("acme/account.json"))
            .unwrap()
            .contains(&key)
    );
    let unnamed = run(&["create", "acme"]);
    assert_eq!(
        unnamed.status.code(),
        Some(0),
        "{}",
        render_output(&unnamed)
    );

    let json = run(&["list", "acme", "--format", "json"]);
    assert_eq!(json.status.code(), Some(0), "{}", render_output(&json));
    let listed: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(listed["account"], "acme");
    let keys = listed["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{listed}");
    let ci = &keys[0];
    assert_eq!(ci["name"], "ci bot");
    assert_eq!(ci["last_used"], Value::Null);
    let id = ci["id"].as_str().unwrap().to_owned();
    let created_at = ci["created"].as_str().unwrap();
    assert!(
        created_at.parse::<jiff::Timestamp>().is_ok(),
        "ISO 8601: {created_at}"
    );
    let other = keys[1]["id"].as_str().unwrap();
    assert_eq!(keys[1]["name"], format!("key-{other}"));

    let table = run(&["list", "acme"]);
    assert_eq!(table.status.code(), Some(0), "{}", render_output(&table));
    let text = stdout(&table);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for column in ["ID", "NAME", "CREATED", "LAST USED"] {
        assert!(lines[0].contains(column), "{text}");
    }
    assert!(
        lines[1].starts_with(&id) && lines[1].contains("ci bot"),
        "{text}"
    );
    assert!(
        lines[1].contains(created_at) && lines[1].ends_with("never"),
        "{text}"
    );
    assert!(!text.contains(&key));

    let revoked = run(&["revoke", "acme", &id]);
    assert_eq!(
        revoked.status.code(),
        Some(0),
        "{}",
        render_output(&revoked)
    );
    assert!(stdout(&revoked).contains(&id));
    let after: Value =
        serde_json::from_slice(&run(&["list", "acme", "--format", "json"]).stdout).unwrap();
    assert_eq!(after["keys"].as_array().unwrap().len(), 1, "{after}");

    // Unknown keys and accounts, bad names: exit 2 and a message naming them.
    for (args, named) in [
        (vec!["revoke", "acme", id.as_str()], id.as_str()),
        (vec!["revoke", "nope", id.as_str()], "nope"),
        (vec!["list", "nope"], "nope"),
        (vec!["create", "nope"], "nope"),
        (vec!["create", "acme", "--name", ""], "name"),
    ] {
        let output = run(&args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            render_output(&output)
        );
        let said = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(said.contains(named), "{args:?}: {said}");
    }
}
