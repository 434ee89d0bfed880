//! Hot reload: generations, calls in flight across reloads, broken and
//! deleted scripts, many reloads under load, the file watcher, and
//! `callflow dev`.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use callflow::host::ModuleHost;
use callflow::reload::{self, Outcome, Paths, Reloader};
use callflow::sim::{self, Options, Scenario};
use callflow::trace::Trace;

use crate::support::run_local;

/// A project in a temporary directory: one account whose callflow 100 runs
/// the scripts `first` (which sleeps) then `second`, each logging the
/// version it was written with.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let callflows = dir.path().join("flows/acme/callflows");
        std::fs::create_dir_all(&callflows).unwrap();
        std::fs::create_dir_all(dir.path().join("scripts")).unwrap();
        std::fs::write(
            callflows.join("main.json"),
            r#"{"numbers": ["100"], "flow": {"module": "first", "data": {"wait": 60000},
                "children": {"_": {"module": "second"}}}}"#,
        )
        .unwrap();
        let project = Self { dir };
        project.write_version(1);
        project
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn paths(&self) -> Paths {
        Paths {
            flows: self.path("flows"),
            scripts: vec![self.path("scripts")],
        }
    }

    /// Writes both scripts at `version`, as an editor's atomic save would.
    fn write_version(&self, version: u32) {
        for name in ["first", "second"] {
            self.save(
                &format!("scripts/{name}.lua"),
                &format!(
                    r#"local VERSION = "v{version}"
return {{
	handle = function(call, data)
		call:log("info", "{name} " .. VERSION)
		if data.wait then
			call:sleep(data.wait)
			call:log("info", "{name} after the sleep " .. VERSION)
		end
	end,
}}
"#
                ),
            );
        }
    }

    /// Writes a file atomically: a hidden temporary file, renamed over.
    fn save(&self, relative: &str, text: &str) {
        let target = self.path(relative);
        let temp = target.with_file_name(format!(
            ".{}.tmp",
            target.file_name().unwrap().to_string_lossy()
        ));
        std::fs::write(&temp, text).unwrap();
        std::fs::rename(&temp, &target).unwrap();
    }
}

fn scenario() -> Scenario {
    Scenario::parse(r#"{"to": "100"}"#).unwrap()
}

/// The versions a trace's log lines name, in order.
fn versions(trace: &Trace) -> Vec<String> {
    trace
        .events()
        .iter()
        .filter(|e| e.name == "log")
        .filter_map(|e| e.fields["message"].as_str())
        .map(|m| m.rsplit(' ').next().unwrap().to_owned())
        .collect()
}

/// A VM for calls on `reloader`'s generations.
fn host_for(reloader: &Reloader) -> ModuleHost {
    ModuleHost::new(
        reloader.current().modules.clone(),
        Options::default().limits,
    )
    .unwrap()
}

/// Runs a call on `reloader`'s current generation with `host`, pinned to it.
async fn call_on(reloader: &Reloader, host: &ModuleHost) -> Trace {
    let generation = reloader.current();
    let account = Arc::clone(generation.catalog.single_account().unwrap());
    let runner = host.pinned(Arc::clone(&generation.modules));
    sim::simulate(&scenario(), &account, &runner, &Options::default(), 0)
        .await
        .trace
}

#[test]
fn a_call_in_flight_keeps_its_generation_and_new_calls_get_the_new_one() {
    let project = Project::new();
    let (reloader, problems) = Reloader::load(project.paths()).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(reloader.current().number, 1);
    let reloader = Rc::new(reloader);
    let host = Rc::new(host_for(&reloader));

    let (before, after) = run_local(async {
        let first = {
            let (reloader, host) = (Rc::clone(&reloader), Rc::clone(&host));
            tokio::task::spawn_local(async move { call_on(&reloader, &host).await })
        };
        // Let the first call reach its sleep, then change the scripts.
        tokio::task::yield_now().await;
        project.write_version(2);
        assert_eq!(
            reloader.reload("test").unwrap(),
            Outcome::Published { generation: 2 }
        );
        let second = call_on(&reloader, &host).await;
        (first.await.unwrap(), second)
    });
    // The first call started on generation 1 and finished on it: the rest
    // of `first` after the sleep, and `second`, ran the old code.
    assert_eq!(
        versions(&before),
        ["v1", "v1", "v1"],
        "{}",
        before.render_text()
    );
    assert_eq!(
        versions(&after),
        ["v2", "v2", "v2"],
        "{}",
        after.render_text()
    );
    assert_eq!(reloader.status().generation, 2);
}

#[test]
fn a_broken_script_keeps_the_last_good_generation_until_it_is_fixed() {
    let project = Project::new();
    let (reloader, _) = Reloader::load(project.paths()).unwrap();

    // A syntax error.
    project.save(
        "scripts/second.lua",
        "return { handle = function(call) call:log( end }\n",
    );
    let Outcome::Rejected { generation, errors } = reloader.reload("test").unwrap() else {
        panic!("a syntax error must not be published");
    };
    assert_eq!(generation, 1);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].file.ends_with("second.lua"), "{:?}", errors[0]);
    assert!(
        errors[0].line.is_some(),
        "the error names its line: {:?}",
        errors[0]
    );
    let status = reloader.status();
    assert_eq!((status.generation, status.rejected), (1, 1));
    assert_eq!(status.pending.len(), 1);
    // Calls still run the last good code.
    let host = ModuleHost::new(
        reloader.current().modules.clone(),
        Options::default().limits,
    )
    .unwrap();
    let trace = run_local(call_on(&reloader, &host));
    assert_eq!(versions(&trace), ["v1", "v1", "v1"]);

    // A module without `handle`, and a callflow that is not JSON: rejected too.
    project.save("scripts/second.lua", "return { schema = {} }\n");
    assert!(matches!(
        reloader.reload("test").unwrap(),
        Outcome::Rejected { .. }
    ));
    project.write_version(3);
    project.save("flows/acme/callflows/main.json", "{\"numbers\": [");
    let Outcome::Rejected { errors, .. } = reloader.reload("test").unwrap() else {
        panic!("invalid JSON must not be published");
    };
    assert!(errors[0].file.ends_with("main.json"), "{errors:?}");

    // Fixing the files recovers by itself on the next reload.
    project.save(
        "flows/acme/callflows/main.json",
        r#"{"numbers": ["100"], "flow": {"module": "first", "children": {"_": {"module": "second"}}}}"#,
    );
    assert_eq!(
        reloader.reload("test").unwrap(),
        Outcome::Published { generation: 2 }
    );
    assert!(reloader.status().pending.is_empty());
    let trace = run_local(call_on(&reloader, &host));
    assert_eq!(versions(&trace), ["v3", "v3"]);
}

#[test]
fn a_deleted_module_makes_its_nodes_skip_with_a_warning() {
    let project = Project::new();
    let (reloader, _) = Reloader::load(project.paths()).unwrap();
    std::fs::remove_file(project.path("scripts/second.lua")).unwrap();
    assert_eq!(
        reloader.reload("test").unwrap(),
        Outcome::Published { generation: 2 }
    );
    let generation = reloader.current();
    let warning = generation
        .diagnostics
        .iter()
        .find(|d| d.code.as_str() == "unknown_module")
        .expect("the reload warns about the node");
    assert!(warning.file.ends_with("main.json"), "{warning:?}");
    let host = ModuleHost::new(generation.modules.clone(), Options::default().limits).unwrap();
    let trace = run_local(call_on(&reloader, &host)).render_text();
    assert!(
        trace.contains("skip     module=second reason=unknown_module"),
        "{trace}"
    );
}

#[test]
fn two_hundred_reloads_among_five_thousand_calls() {
    let project = Project::new();
    let (reloader, _) = Reloader::load(project.paths()).unwrap();
    let reloader = Rc::new(reloader);
    let host = Rc::new(host_for(&reloader));
    let traces = run_local(async {
        let mut tasks = Vec::new();
        for round in 0..200u32 {
            for _ in 0..25 {
                let (reloader, host) = (Rc::clone(&reloader), Rc::clone(&host));
                tasks.push(tokio::task::spawn_local(async move {
                    call_on(&reloader, &host).await
                }));
            }
            // Calls start, reach their sleep, and the scripts change under them.
            tokio::task::yield_now().await;
            project.write_version(round + 2);
            assert!(matches!(
                reloader.reload("test").unwrap(),
                Outcome::Published { .. }
            ));
        }
        let mut traces = Vec::new();
        for task in tasks {
            traces.push(task.await.unwrap());
        }
        traces
    });
    assert_eq!(traces.len(), 5000);
    assert_eq!(reloader.current().number, 201);
    let mut seen = std::collections::BTreeSet::new();
    for trace in &traces {
        let v = versions(trace);
        assert_eq!(v.len(), 3, "{}", trace.render_text());
        assert!(
            v.iter().all(|x| *x == v[0]),
            "one generation per call: {v:?}"
        );
        let end = trace.events().last().unwrap();
        assert_eq!(end.name, "end");
        seen.insert(v[0].clone());
    }
    // Every round's calls ran on the generation current when they started.
    assert_eq!(seen.len(), 200);
}

/// A reloader of `project` with its file watcher on, and each reload's
/// trigger and outcome as they happen.
fn watched(
    project: &Project,
) -> (
    Arc<Reloader>,
    std::sync::mpsc::Receiver<(String, Option<Outcome>)>,
    impl Sized,
) {
    let (reloader, _) = Reloader::load(project.paths()).unwrap();
    let reloader = Arc::new(reloader);
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    reloader.set_observer(Arc::new(move |trigger, result| {
        let _ = tx
            .lock()
            .unwrap()
            .send((trigger.to_owned(), result.as_ref().ok().cloned()));
    }));
    let watcher = reload::watch(Arc::clone(&reloader), reload::DEFAULT_DEBOUNCE).unwrap();
    (reloader, rx, watcher)
}

#[test]
fn the_watcher_reloads_after_a_save() {
    let project = Project::new();
    let (_reloader, rx, _watcher) = watched(&project);
    // Files that do not count change nothing; a saved script does.
    std::fs::write(project.path("scripts/notes.txt"), "x").unwrap();
    std::fs::write(project.path("scripts/.second.lua.swp"), "x").unwrap();
    project.write_version(2);
    let (trigger, outcome) = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(trigger, "watch");
    assert_eq!(outcome, Some(Outcome::Published { generation: 2 }));
}

/// A document written and published by the server (as a `PUT` through the
/// API does) is not reloaded again by the watcher; someone else's save of
/// the same file is.
#[test]
fn the_watcher_leaves_the_servers_own_write_alone() {
    use callflow::ids::{AccountId, DocId, DocType};
    use callflow::store::FlowsDir;
    let project = Project::new();
    let (reloader, rx, _watcher) = watched(&project);
    let (account, doc_type, id) = (
        AccountId::new("acme").unwrap(),
        DocType::new("callflows").unwrap(),
        DocId::new("main").unwrap(),
    );
    let doc: callflow::model::Object =
        serde_json::from_str(r#"{"numbers": ["100", "101"], "flow": {"module": "second"}}"#)
            .unwrap();
    FlowsDir::new(project.path("flows"))
        .write_document(&account, &doc_type, &id, &doc)
        .unwrap();
    reloader.reload_document(&account, &doc_type, &id).unwrap();
    assert_eq!(reloader.current().number, 2);
    // The watcher sees the write and recognizes it (its counter moves).
    assert!(
        reloader.wait_until(Duration::from_secs(20), |s| s.own_writes_skipped > 0),
        "the watcher never looked at the write"
    );
    assert!(rx.try_recv().is_err(), "the write was reloaded again");
    let status = reloader.status();
    assert_eq!((status.generation, status.reloads), (2, 0));
    // An editor's save of the same file is reloaded.
    project.save(
        "flows/acme/callflows/main.json",
        r#"{"numbers": ["100"], "flow": {"module": "first"}}"#,
    );
    let (trigger, outcome) = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(trigger, "watch");
    assert_eq!(outcome, Some(Outcome::Published { generation: 3 }));
}

/// A `callflow dev` child and its stderr, line by line (read on a thread,
/// so that a silent child fails the test instead of hanging it); killed
/// when dropped.
pub(crate) struct Dev {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Dev {
    pub(crate) fn start(dir: &std::path::Path, args: &[&str]) -> Self {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_callflow"))
            .current_dir(dir)
            .arg("dev")
            .args(["--listen", "127.0.0.1:0", "--poll-s", "0"])
            .args(args)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, lines }
    }

    /// The lines up to the first containing `needle`.
    pub(crate) fn until(&self, needle: &str) -> String {
        let mut seen = String::new();
        loop {
            match self.lines.recv_timeout(Duration::from_mins(2)) {
                Ok(line) => {
                    seen.push_str(&line);
                    seen.push('\n');
                    if line.contains(needle) {
                        return seen;
                    }
                }
                Err(err) => panic!("no line with {needle:?} ({err}) in:\n{seen}"),
            }
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn callflow_dev_reruns_a_scenario_when_its_module_changes() {
    let project = Project::new();
    std::fs::create_dir_all(project.path("tests")).unwrap();
    project.save(
        "tests/call.json",
        r#"{"to": "100", "expect": {"events": [{"event": "log", "message": "first v1"}]}}"#,
    );
    let dev = Dev::start(
        project.dir.path(),
        &["--flows", "flows", "--scripts", "scripts"],
    );
    let seen = dev.until("serving flows");
    assert!(
        seen.contains("callflow dev: watching flows, scripts, tests"),
        "{seen}"
    );
    assert!(seen.contains("PASS    tests/call.json"), "{seen}");
    assert!(
        seen.contains("callflow dev: 1 passed, 0 failed (1 re-run, 0 unchanged)"),
        "{seen}"
    );

    // A new version: a reload, and the scenario's expectation fails.
    project.write_version(2);
    let seen = dev.until("unchanged)");
    assert!(seen.contains("FAIL    tests/call.json"), "{seen}");
    assert!(
        seen.contains(r#"expect.events[0]: no event matches {"event":"log","message":"first v1"}"#),
        "{seen}"
    );
    assert!(
        seen.contains("callflow dev: 0 passed, 1 failed (1 re-run, 0 unchanged)"),
        "{seen}"
    );

    // A syntax error: rejected with file and line, calls stay on v2.
    project.save("scripts/first.lua", "return {\n");
    let seen = dev.until("rejected");
    assert!(
        seen.contains("rejected, calls stay on generation 2"),
        "{seen}"
    );
    dev.until("first.lua");
}

/// Issue 16: in a `callflow init` project, with no flags, a behaviour
/// change of the module fails the scenario with a diff, the fix passes
/// again, and an edited scenario re-runs alone.
#[test]
fn callflow_dev_tests_an_init_project() {
    let dir = tempfile::tempdir().unwrap();
    let init = crate::support::callflow(dir.path(), &["init", "demo"]);
    assert!(init.status.success(), "{init:?}");
    let root = dir.path().join("demo");
    let save = |relative: &str, text: &str| {
        let temp = root.join(format!("{relative}.tmp~"));
        std::fs::write(&temp, text).unwrap();
        std::fs::rename(&temp, root.join(relative)).unwrap();
    };
    let greet = std::fs::read_to_string(root.join("scripts/greet.lua")).unwrap();
    let dev = Dev::start(&root, &[]);
    let seen = dev.until("unchanged)");
    assert!(
        seen.contains("callflow dev: watching flows, scripts, tests"),
        "{seen}"
    );
    assert!(seen.contains("PASS    tests/front-desk.json"), "{seen}");
    assert!(seen.contains("PASS    tests/vip.json"), "{seen}");
    assert!(
        seen.contains("callflow dev: 2 passed, 0 failed (2 re-run, 0 unchanged)"),
        "{seen}"
    );

    save(
        "scripts/greet.lua",
        &greet.replace("Welcome to ", "Hello from "),
    );
    let seen = dev.until("unchanged)");
    assert!(
        seen.contains("callflow dev: changed: scripts/greet.lua"),
        "{seen}"
    );
    assert!(seen.contains("FAIL    tests/front-desk.json"), "{seen}");
    assert!(seen.contains("PASS    tests/vip.json"), "{seen}");
    assert!(
        seen.contains(r#"-00:00.000  tts      text="Welcome to Demo Co.""#),
        "{seen}"
    );
    assert!(
        seen.contains(r#"+00:00.000  tts      text="Hello from Demo Co.""#),
        "{seen}"
    );
    assert!(
        seen.contains("callflow dev: 1 passed, 1 failed (2 re-run, 0 unchanged)"),
        "{seen}"
    );

    save("scripts/greet.lua", &greet);
    let seen = dev.until("unchanged)");
    assert!(seen.contains("PASS    tests/front-desk.json"), "{seen}");
    assert!(
        seen.contains("callflow dev: 2 passed, 0 failed (2 re-run, 0 unchanged)"),
        "{seen}"
    );

    // A scenario file changed: it runs again, alone.
    let vip = std::fs::read_to_string(root.join("tests/vip.json")).unwrap();
    save(
        "tests/vip.json",
        &vip.replace("A VIP caller", "A very important caller"),
    );
    let seen = dev.until("unchanged)");
    assert!(
        seen.contains("callflow dev: changed: tests/vip.json"),
        "{seen}"
    );
    assert!(seen.contains("PASS    tests/vip.json"), "{seen}");
    assert!(!seen.contains("front-desk"), "{seen}");
    assert!(
        seen.contains("callflow dev: 2 passed, 0 failed (1 re-run, 1 unchanged)"),
        "{seen}"
    );
}

/// Issue 15: a menu of the wrong types passed every check. A reload now
/// holds it against the menus schema, as `callflow check` does: the
/// generation is kept, and the errors name the file and each field.
#[test]
fn a_menu_of_the_wrong_types_is_not_published() {
    let project = Project::new();
    let (reloader, _) = Reloader::load(project.paths()).unwrap();
    std::fs::create_dir_all(project.path("flows/acme/menus")).unwrap();
    project.save(
        "flows/acme/menus/main.json",
        r#"{"name": "Main", "max_extension_length": -1e308, "retries": "lots", "timeout": {}}"#,
    );
    let Outcome::Rejected { generation, errors } = reloader.reload("test").unwrap() else {
        panic!("a menu of the wrong types must not be published");
    };
    assert_eq!(generation, 1);
    let found: Vec<(&str, &str)> = errors
        .iter()
        .map(|d| (d.pointer.as_str(), d.code.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("/max_extension_length", "minimum"),
            ("/retries", "type"),
            ("/timeout", "type"),
        ]
    );
    assert!(
        errors.iter().all(|d| d.file.ends_with("menus/main.json")),
        "{errors:?}"
    );

    project.save(
        "flows/acme/menus/main.json",
        r#"{"name": "Main", "max_extension_length": 4, "retries": 3, "timeout": 10000}"#,
    );
    assert_eq!(
        reloader.reload("test").unwrap(),
        Outcome::Published { generation: 2 }
    );
}
