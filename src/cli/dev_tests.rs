//! The tests of `callflow dev`: when a script, a flow document or a
//! scenario changes, the scenarios it can affect run again and are judged
//! as `callflow test` judges them (stored `.trace`, inline `"expect"`), a
//! diff for each failure, then one summary line.
//!
//! Changes are found by content, not from the watcher's events: each round
//! takes a [`Snapshot`] of the watched directories and compares it with the
//! last one, so an editor's atomic save, a burst of saves or a trigger with
//! nothing new all come out right. The watcher (and every reload of the
//! server) only says when to look.
//!
//! What is re-run ([`plan`]): a scenario runs again when
//! * it is new, or it could not be loaded or run last time;
//! * its scenario file or its `.trace` changed;
//! * a file of its flows directory changed inside its account's folder, or
//!   outside any account folder (a file right under the flows directory);
//! * a module script `<dir>/<module>.lua` of one of its scripts directories
//!   changed and its last call ran that module (a `node` event names it);
//! * any other file of one of its scripts directories changed (a helper
//!   under `lib/`, a metaflow module: anything may `require` a helper).
//!
//! A simulated call runs one account's flows only, and a module's schema
//! only adds warnings (never changes what a call does), so other changes
//! cannot change its trace: another account's documents, a module the call
//! never reached. Removed scenario files drop out of the summary.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use notify_debouncer_full::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, RecommendedCache, new_debouncer_opt};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::ScriptsArgs;
use super::simulate::{dirs_for_in, read_scenario};
use super::suite::{self, TRACE_EXTENSION};
use super::test::{self, Status};

/// What a scenario's last run depended on, as absolute paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footprint {
    /// The scenario file.
    pub scenario: PathBuf,
    /// Its expected trace (it may not exist).
    pub trace: PathBuf,
    pub flows: PathBuf,
    /// The account whose flows the call ran.
    pub account: String,
    /// Every scripts directory the call could load scripts from.
    pub scripts: Vec<PathBuf>,
    /// The modules the call ran (`node` events).
    pub modules: BTreeSet<String>,
}

/// How a scenario did the last time it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    Failed,
    /// It could not be loaded or run.
    Error,
}

/// The last result of one scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub verdict: Verdict,
    /// `None` when it did not run: then any change runs it again.
    pub footprint: Option<Footprint>,
}

/// What a round does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Scenario files to run, in the order they were found.
    pub run: Vec<PathBuf>,
    /// Scenario files whose last result stands.
    pub unchanged: Vec<PathBuf>,
}

/// Decides which of the scenario files `found` (as found under the tests
/// directory) run again, from their last results and the files that
/// changed (absolute, as in a [`Snapshot`]). The rule is the module's.
pub fn plan(
    found: &[PathBuf],
    previous: &BTreeMap<PathBuf, Record>,
    changed: &BTreeSet<PathBuf>,
) -> Plan {
    let mut plan = Plan::default();
    for file in found {
        let rerun = match previous.get(file) {
            Some(Record {
                footprint: Some(footprint),
                ..
            }) => changed.iter().any(|path| affects(footprint, path)),
            Some(Record {
                footprint: None, ..
            }) => !changed.is_empty(),
            None => true,
        };
        if rerun {
            plan.run.push(file.clone());
        } else {
            plan.unchanged.push(file.clone());
        }
    }
    plan
}

/// Whether a change of `path` can change the outcome of the run `footprint`
/// describes.
pub fn affects(footprint: &Footprint, path: &Path) -> bool {
    if path == footprint.scenario || path == footprint.trace {
        return true;
    }
    if let Ok(inside) = path.strip_prefix(&footprint.flows) {
        let mut parts = inside.components();
        let first = parts.next();
        let nested = parts.next().is_some();
        // A file right under the flows directory is no account's: unsure.
        return !nested
            || first.is_some_and(|first| first.as_os_str() == footprint.account.as_str());
    }
    footprint.scripts.iter().any(|dir| {
        let Ok(inside) = path.strip_prefix(dir) else {
            return false;
        };
        let mut parts = inside.components();
        match (parts.next(), parts.next()) {
            // A module script: only if the call ran that module.
            (Some(name), None) => Path::new(name.as_os_str())
                .file_stem()
                .and_then(|stem| stem.to_str())
                .is_none_or(|module| footprint.modules.contains(module)),
            // A helper, a metaflow module, anything else.
            _ => true,
        }
    })
}

/// The summary line: `3 passed, 1 failed (2 re-run, 2 unchanged)`.
pub fn summary(records: &BTreeMap<PathBuf, Record>, plan: &Plan) -> String {
    let count = |verdict| records.values().filter(|r| r.verdict == verdict).count();
    let errors = count(Verdict::Error);
    let failed = count(Verdict::Failed) + errors;
    let mut line = format!("{} passed, {failed} failed", records.len() - failed);
    if errors > 0 {
        let _ = write!(line, " ({errors} could not run)");
    }
    let _ = write!(
        line,
        " ({} re-run, {} unchanged)",
        plan.run.len(),
        plan.unchanged.len()
    );
    line
}

/// A content hash of each watched file, by absolute path.
pub type Snapshot = BTreeMap<PathBuf, [u8; 32]>;

/// The files of `dirs` (absolute) that can change a scenario's outcome:
/// scripts and documents (as the server's reload counts them), scenarios
/// and expected traces; hidden entries are skipped and symbolic links to
/// directories are not followed.
pub fn snapshot(dirs: &[PathBuf]) -> Snapshot {
    let mut files = Snapshot::new();
    for dir in dirs {
        hash_tree(dir, &mut files);
    }
    files
}

fn hash_tree(dir: &Path, out: &mut Snapshot) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            hash_tree(&path, out);
            continue;
        }
        let counts = callflow::reload::is_relevant(&path)
            || path.extension().is_some_and(|e| e == TRACE_EXTENSION);
        if counts && let Ok(bytes) = std::fs::read(&path) {
            out.insert(path, Sha256::digest(&bytes).into());
        }
    }
}

/// The paths that differ between two snapshots (new, changed, removed).
pub fn changes(before: &Snapshot, after: &Snapshot) -> BTreeSet<PathBuf> {
    let mut changed: BTreeSet<PathBuf> = after
        .iter()
        .filter(|(path, hash)| before.get(*path) != Some(*hash))
        .map(|(path, _)| path.clone())
        .collect();
    changed.extend(before.keys().filter(|p| !after.contains_key(*p)).cloned());
    changed
}

/// An absolute, resolved path when it exists; else as given.
fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// A path as the user knows it: relative to the current directory when
/// it is inside it.
fn shown(path: &Path) -> String {
    let here = std::env::current_dir().map(|d| absolute(&d)).ok();
    here.and_then(|here| path.strip_prefix(here).ok().map(Path::to_path_buf))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

/// The scenarios of a `callflow dev` session and their last results.
pub struct DevTests {
    tests: PathBuf,
    /// The server's flows directory: a scenario that names none runs there.
    flows: PathBuf,
    scripts: ScriptsArgs,
    /// Every directory watched, absolute, in the order printed.
    dirs: Vec<PathBuf>,
    snapshot: Snapshot,
    records: BTreeMap<PathBuf, Record>,
    /// Whether a round ran (the first runs everything and names no change).
    started: bool,
}

impl DevTests {
    /// The session's tests: the scenarios under `tests`, with the server's
    /// flows and scripts directories and those the scenarios name.
    pub fn new(tests: &Path, flows: &Path, scripts: &ScriptsArgs) -> Self {
        let mut session = Self {
            tests: tests.to_path_buf(),
            flows: flows.to_path_buf(),
            scripts: ScriptsArgs {
                scripts: scripts.scripts.clone(),
            },
            dirs: Vec::new(),
            snapshot: Snapshot::new(),
            records: BTreeMap::new(),
            started: false,
        };
        session.add_dir(flows);
        for dir in &scripts.scripts {
            session.add_dir(dir);
        }
        session.add_dir(tests);
        session.add_scenario_dirs();
        session
    }

    /// Adds a directory to watch, if it exists and is new: whether it was.
    fn add_dir(&mut self, dir: &Path) -> bool {
        let dir = absolute(dir);
        let new = dir.is_dir() && !self.dirs.contains(&dir);
        if new {
            self.dirs.push(dir);
        }
        new
    }

    /// Adds the flows and scripts directories the scenarios name; returns
    /// those that were not watched yet.
    fn add_scenario_dirs(&mut self) -> Vec<PathBuf> {
        let mut added = Vec::new();
        for file in scenario_files(&self.tests) {
            if let Ok(loaded) = read_scenario(&file) {
                let (flows, extra) = dirs_for_in(None, Some(&loaded), Some(&self.flows));
                for dir in std::iter::once(&flows).chain(&extra) {
                    if self.add_dir(dir) {
                        added.push(absolute(dir));
                    }
                }
            }
        }
        added
    }

    /// The watched directories, as the user knows them.
    pub fn watched(&self) -> String {
        let names: Vec<String> = self.dirs.iter().map(|d| shown(d)).collect();
        names.join(", ")
    }

    /// One round: finds what changed since the last round, re-runs the
    /// scenarios it affects and writes their results and the summary to
    /// `out`. Nothing is written when nothing changed.
    /// The directories it returns are newly named by a scenario: the caller
    /// watches them from then on.
    pub fn round(&mut self, out: &mut dyn std::io::Write) -> std::io::Result<Vec<PathBuf>> {
        let added = self.add_scenario_dirs();
        if !added.is_empty() {
            let names: Vec<String> = added.iter().map(|p| shown(p)).collect();
            writeln!(out, "callflow dev: watching {} too", names.join(", "))?;
        }
        let snapshot = snapshot(&self.dirs);
        let changed = changes(&self.snapshot, &snapshot);
        let first = !self.started;
        self.started = true;
        self.snapshot = snapshot;
        if changed.is_empty() && !first {
            return Ok(added);
        }
        let found = scenario_files(&self.tests);
        self.records.retain(|file, _| found.contains(file));
        let plan = plan(&found, &self.records, &changed);
        if !first {
            let names: Vec<String> = changed.iter().map(|p| shown(p)).collect();
            writeln!(out, "callflow dev: changed: {}", names.join(", "))?;
        }
        let mut text = String::new();
        for (file, record, block) in run_files(&plan.run, &self.flows, &self.scripts) {
            text.push_str(&block);
            self.records.insert(file, record);
        }
        out.write_all(text.as_bytes())?;
        writeln!(out, "callflow dev: {}", summary(&self.records, &plan))?;
        out.flush()?;
        Ok(added)
    }
}

/// The scenario files under the tests directory (none when it is missing).
fn scenario_files(tests: &Path) -> Vec<PathBuf> {
    if tests.is_dir() {
        suite::find(&[tests.to_path_buf()]).unwrap_or_default()
    } else {
        Vec::new()
    }
}

/// Runs `files` as `callflow test` would; each file's record and report
/// block, in the order given.
fn run_files(
    files: &[PathBuf],
    flows: &PathBuf,
    scripts: &ScriptsArgs,
) -> Vec<(PathBuf, Record, String)> {
    let dirs = suite::Dirs {
        flows_flag: None,
        project_flows: Some(flows),
        scripts,
    };
    // Problems of the scripts and flows are shown by the server's reloads.
    let (suite, problems) = suite::load_each(files, &dirs, false);
    let mut blocks: BTreeMap<PathBuf, (Record, String)> = BTreeMap::new();
    for (file, message) in problems {
        let record = Record {
            verdict: Verdict::Error,
            footprint: None,
        };
        let block = test::render_case_error(&file, &message);
        blocks.insert(file, (record, block));
    }
    suite::run(&suite, suite::jobs(None), |index, result| {
        let case = &suite.cases[index];
        let (outcome, footprint) = match result {
            Ok(ran) => {
                let env = &suite.envs[case.env];
                let footprint = Footprint {
                    scenario: absolute(&case.path),
                    trace: absolute(&case.path).with_extension(TRACE_EXTENSION),
                    flows: absolute(&env.flows),
                    account: case.account.account.id.to_string(),
                    scripts: env.scripts.iter().map(|d| absolute(d)).collect(),
                    modules: ran
                        .trace
                        .events()
                        .iter()
                        .filter(|e| e.name == "node")
                        .filter_map(|e| e.fields.get("module").and_then(Value::as_str))
                        .map(str::to_owned)
                        .collect(),
                };
                (test::judge(case, &ran, false), Some(footprint))
            }
            Err(message) => (
                test::Outcome {
                    status: Status::Error(message),
                    elapsed_s: 0.0,
                },
                None,
            ),
        };
        let verdict = match outcome.status {
            Status::Pass | Status::Written { .. } => Verdict::Passed,
            Status::Fail(_) => Verdict::Failed,
            Status::Error(_) => Verdict::Error,
        };
        let block = test::render_case(case, &outcome);
        blocks.insert(case.path.clone(), (Record { verdict, footprint }, block));
    });
    files
        .iter()
        .filter_map(|file| {
            let (record, block) = blocks.remove(file)?;
            Some((file.clone(), record, block))
        })
        .collect()
}

/// Watches `dirs` and sends a message after each debounced batch of
/// changes; stops when dropped.
pub type Watch = notify_debouncer_full::Debouncer<RecommendedWatcher, RecommendedCache>;

/// Starts watching the session's directories (watch more with
/// [`Watch::watch`]); `poke` hears of each batch.
pub fn watch(
    tests: &DevTests,
    debounce: Duration,
    poke: mpsc::Sender<()>,
) -> anyhow::Result<Watch> {
    let config = notify_debouncer_full::notify::Config::default().with_follow_symlinks(false);
    let mut debouncer = new_debouncer_opt::<_, RecommendedWatcher, RecommendedCache>(
        debounce,
        None,
        move |result: DebounceEventResult| {
            if result.is_ok() {
                let _ = poke.send(());
            }
        },
        RecommendedCache::new(),
        config,
    )?;
    for dir in &tests.dirs {
        debouncer.watch(dir, RecursiveMode::Recursive)?;
    }
    Ok(debouncer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn footprint() -> Footprint {
        Footprint {
            scenario: PathBuf::from("/p/tests/a.json"),
            trace: PathBuf::from("/p/tests/a.trace"),
            flows: PathBuf::from("/p/flows"),
            account: "demo".to_owned(),
            scripts: vec![PathBuf::from("/p/scripts")],
            modules: ["greet", "device"].into_iter().map(str::to_owned).collect(),
        }
    }

    fn record(verdict: Verdict, footprint: Option<Footprint>) -> Record {
        Record { verdict, footprint }
    }

    #[test]
    fn what_a_change_affects() {
        let fp = footprint();
        let yes = [
            "/p/tests/a.json",
            "/p/tests/a.trace",
            "/p/flows/demo/callflows/main.json",
            "/p/flows/demo/account.json",
            "/p/flows/stray.json",
            "/p/scripts/greet.lua",
            "/p/scripts/device.lua",
            "/p/scripts/lib/util.lua",
            "/p/scripts/metaflows/transfer.lua",
        ];
        for path in yes {
            assert!(affects(&fp, Path::new(path)), "{path} must affect");
        }
        let no = [
            "/p/tests/b.json",
            "/p/tests/b.trace",
            "/p/flows/other/callflows/main.json",
            "/p/scripts/voicemail.lua",
            "/p/elsewhere/greet.lua",
        ];
        for path in no {
            assert!(!affects(&fp, Path::new(path)), "{path} must not affect");
        }
    }

    #[test]
    fn the_plan_reruns_the_affected_the_new_and_the_broken() {
        let a = PathBuf::from("tests/a.json");
        let b = PathBuf::from("tests/b.json");
        let c = PathBuf::from("tests/c.json");
        let d = PathBuf::from("tests/d.json");
        let mut b_print = footprint();
        b_print.scenario = PathBuf::from("/p/tests/b.json");
        b_print.trace = PathBuf::from("/p/tests/b.trace");
        b_print.modules = ["device"].into_iter().map(str::to_owned).collect();
        let previous = BTreeMap::from([
            (a.clone(), record(Verdict::Passed, Some(footprint()))),
            (b.clone(), record(Verdict::Passed, Some(b_print))),
            (c.clone(), record(Verdict::Error, None)),
        ]);
        let found = [a.clone(), b.clone(), c.clone(), d.clone()];
        let changed = BTreeSet::from([PathBuf::from("/p/scripts/greet.lua")]);
        let plan = plan(&found, &previous, &changed);
        assert_eq!(plan.run, [a.clone(), c.clone(), d.clone()]);
        assert_eq!(plan.unchanged, std::slice::from_ref(&b));

        // Nothing changed: only the new one runs.
        let plan = super::plan(&found, &previous, &BTreeSet::new());
        assert_eq!(plan.run, [d]);
        assert_eq!(plan.unchanged, [a, b, c]);
    }

    #[test]
    fn the_summary_counts_every_scenario_and_the_round() {
        let records = BTreeMap::from([
            (PathBuf::from("a"), record(Verdict::Passed, None)),
            (PathBuf::from("b"), record(Verdict::Failed, None)),
            (PathBuf::from("c"), record(Verdict::Passed, None)),
            (PathBuf::from("d"), record(Verdict::Passed, None)),
        ]);
        let plan = Plan {
            run: vec![PathBuf::from("a"), PathBuf::from("b")],
            unchanged: vec![PathBuf::from("c"), PathBuf::from("d")],
        };
        assert_eq!(
            summary(&records, &plan),
            "3 passed, 1 failed (2 re-run, 2 unchanged)"
        );
        let mut records = records;
        records.insert(PathBuf::from("e"), record(Verdict::Error, None));
        assert_eq!(
            summary(&records, &plan),
            "3 passed, 2 failed (1 could not run) (2 re-run, 2 unchanged)"
        );
    }

    #[test]
    fn changes_are_found_by_content() {
        let before = Snapshot::from([
            (PathBuf::from("/a"), [1; 32]),
            (PathBuf::from("/b"), [2; 32]),
            (PathBuf::from("/c"), [3; 32]),
        ]);
        let after = Snapshot::from([
            (PathBuf::from("/a"), [1; 32]),
            (PathBuf::from("/b"), [9; 32]),
            (PathBuf::from("/d"), [4; 32]),
        ]);
        let found: Vec<PathBuf> = changes(&before, &after).into_iter().collect();
        assert_eq!(
            found,
            [
                PathBuf::from("/b"),
                PathBuf::from("/c"),
                PathBuf::from("/d")
            ]
        );
    }

    /// A project of two accounts, each with a scenario whose call runs one
    /// module of its own.
    fn project() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let write = |relative: &str, text: &str| {
            let path = dir.path().join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        for (account, module) in [("acme", "first"), ("beta", "second")] {
            write(
                &format!("flows/{account}/callflows/main.json"),
                &format!(r#"{{"numbers": ["100"], "flow": {{"module": "{module}"}}}}"#),
            );
            write(
                &format!("scripts/{module}.lua"),
                &format!(
                    r#"return {{ handle = function(call) call:log("info", "{module} v1") end }}"#
                ),
            );
            write(
                &format!("tests/{account}.json"),
                &format!(
                    r#"{{"flows": "../flows", "scripts": ["../scripts"], "account": "{account}", "to": "100",
                        "expect": {{"events": [{{"event": "log", "message": "{module} v1"}}]}}}}"#
                ),
            );
        }
        dir
    }

    fn round(tests: &mut DevTests) -> String {
        let mut out = Vec::new();
        tests.round(&mut out).unwrap();
        // Styles are stripped on the way to a console that does not take them.
        anstream::adapter::strip_str(&String::from_utf8(out).unwrap()).to_string()
    }

    #[test]
    fn a_round_reruns_what_a_change_affects() {
        let dir = project();
        let root = dir.path();
        let mut tests = DevTests::new(
            &root.join("tests"),
            &root.join("flows"),
            &ScriptsArgs { scripts: vec![] },
        );
        let base = absolute(root);
        let watched: Vec<&Path> = tests.dirs.iter().map(PathBuf::as_path).collect();
        assert_eq!(
            watched,
            [base.join("flows"), base.join("tests"), base.join("scripts")]
        );

        let out = round(&mut tests);
        assert!(out.contains("PASS    "), "{out}");
        assert!(
            out.ends_with("callflow dev: 2 passed, 0 failed (2 re-run, 0 unchanged)\n"),
            "{out}"
        );
        // Nothing changed: nothing to say.
        assert_eq!(round(&mut tests), "");

        // A module only beta's call runs.
        std::fs::write(
            root.join("scripts/second.lua"),
            r#"return { handle = function(call) call:log("info", "second v2") end }"#,
        )
        .unwrap();
        let out = round(&mut tests);
        assert!(out.contains("FAIL    "), "{out}");
        assert!(out.contains("beta.json"), "{out}");
        assert!(!out.contains("acme.json"), "{out}");
        assert!(out.contains("expect.events[0]: no event matches"), "{out}");
        assert!(
            out.ends_with("callflow dev: 1 passed, 1 failed (1 re-run, 1 unchanged)\n"),
            "{out}"
        );

        // A document of acme's: acme alone runs; beta's failure stands.
        std::fs::write(
            root.join("flows/acme/callflows/main.json"),
            r#"{"numbers": ["100", "101"], "flow": {"module": "first"}}"#,
        )
        .unwrap();
        let out = round(&mut tests);
        assert!(out.contains("acme.json"), "{out}");
        assert!(!out.contains("beta.json"), "{out}");
        assert!(
            out.ends_with("callflow dev: 1 passed, 1 failed (1 re-run, 1 unchanged)\n"),
            "{out}"
        );

        // A helper may be required by anything: both run. A removed
        // scenario drops out.
        std::fs::create_dir_all(root.join("scripts/lib")).unwrap();
        std::fs::write(root.join("scripts/lib/util.lua"), "return {}").unwrap();
        std::fs::remove_file(root.join("tests/acme.json")).unwrap();
        let out = round(&mut tests);
        assert!(
            out.ends_with("callflow dev: 0 passed, 1 failed (1 re-run, 0 unchanged)\n"),
            "{out}"
        );

        // A new scenario naming a new scripts directory: watched from now on.
        std::fs::create_dir_all(root.join("more")).unwrap();
        std::fs::write(
            root.join("tests/more.json"),
            r#"{"flows": "../flows", "scripts": ["../scripts", "../more"], "account": "acme",
                "to": "100", "expect": {"events": [{"event": "log", "message": "first v1"}]}}"#,
        )
        .unwrap();
        let out = round(&mut tests);
        assert!(out.contains("callflow dev: watching "), "{out}");
        assert!(tests.dirs.contains(&base.join("more")), "{out}");
        assert!(
            out.ends_with("callflow dev: 1 passed, 1 failed (1 re-run, 1 unchanged)\n"),
            "{out}"
        );
        std::fs::write(
            root.join("more/first.lua"),
            r#"return { handle = function(call) call:log("info", "first v3") end }"#,
        )
        .unwrap();
        let out = round(&mut tests);
        assert!(out.contains("more.json"), "{out}");
        assert!(
            out.ends_with("callflow dev: 0 passed, 2 failed (1 re-run, 1 unchanged)\n"),
            "{out}"
        );
    }
}
