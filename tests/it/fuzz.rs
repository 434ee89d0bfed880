//! Fuzz tests kept in the repository: the real documents (`flows/`, every
//! `tests/**/flows`, `tests/kazoo-examples/`), the real scenarios
//! (`tests/scenarios/`) and API requests, mutated (byte flips, truncation,
//! deep nesting, huge arrays, wrong types, odd Unicode, very long strings,
//! hostile regex patterns), fed to the parsers, `Catalog::build`, the route
//! tables, the simulator (with small limits) and the API router (in
//! process, through `tower::ServiceExt::oneshot`). Nothing may panic, the
//! API never answers 5xx, and each case finishes within a generous
//! wall-clock bound (the speed targets live in `benches/`).
//!
//! Deterministic: proptest's `TestRunner` with a fixed ChaCha seed and no
//! failure persistence, so every run tries the same cases; a failure prints
//! the shrunk input.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{Value, json};

use callflow::api::ROUTES;
use callflow::catalog::{AccountSource, Catalog, SourceFile, Sources};
use callflow::host::{ModuleHost, ModuleSet};
use callflow::ids::{AccountId, DocId};
use callflow::limits::Limits;
use callflow::routing::Inception;
use callflow::sim::scenario::resolve;
use callflow::sim::{self, Options, Scenario};
use callflow::store::{FlowsDir, Store};

use crate::support::{builtin_modules, copy_tree, root};

/// The longest one case may take: generous (a case takes milliseconds),
/// so that a loaded machine cannot make it flake; unbounded work blows it.
const CASE_BUDGET: Duration = Duration::from_secs(15);

/// A case still running after this is taken for a hang: the process is
/// aborted with the input (a hung test would otherwise never report).
const HANG: Duration = Duration::from_mins(2);

/// A runner that tries the same `cases` on every run.
fn runner(cases: u32) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        max_shrink_iters: 256,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
}

/// Runs `work` for the case `what`; fails the case past [`CASE_BUDGET`],
/// aborts the process past [`HANG`].
fn bounded<T>(what: &str, work: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let label = what.chars().take(2000).collect::<String>();
    let watchdog = std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(HANG) {
            eprintln!("fuzz case hung for {HANG:?}: {label}");
            std::process::abort();
        }
    });
    // Measures the work of a case; the wall clock decides nothing else.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let value = work();
    let took = started.elapsed();
    drop(done);
    watchdog.join().unwrap();
    if took > CASE_BUDGET {
        return Err(TestCaseError::fail(format!(
            "took {took:?} (bound {CASE_BUDGET:?}): {}",
            what.chars().take(2000).collect::<String>()
        )));
    }
    Ok(value)
}

// ---------------------------------------------------------------------------
// Mutations

/// One change to a document's text.
#[derive(Debug, Clone)]
enum Mutation {
    /// XOR a byte with a non-zero mask (the result read as lossy UTF-8).
    FlipByte(Index, u8),
    /// Cut the text there.
    Truncate(Index),
    /// Raw text inserted there.
    Splice(Index, String),
    /// The n-th JSON value (pre-order) replaced.
    Replace(Index, Value),
    /// In the n-th JSON object, a key set.
    SetKey(Index, String, Value),
    /// The n-th JSON value wrapped in arrays (true) or objects, this deep.
    Nest(Index, usize, bool),
    /// The `flow` replaced by a chain of nodes this deep.
    DeepFlow(usize, String),
    /// A scenario changed in a way its parser accepts, often enough to
    /// reach the simulator.
    Scenario(Tweak),
}

/// Well-typed changes to a scenario: extreme values, many events.
#[derive(Debug, Clone)]
enum Tweak {
    To(String),
    /// A caller action pressing these digits at this time.
    Digits(u64, String),
    /// This many caller actions, this far apart, each pressing `1`.
    ManyActions(usize, u64),
    /// Digits pressed once the call collects, after this delay.
    OnCollect(u64, String),
    /// Every caller action's gap between digits.
    Interdigit(u64),
    MaxCallMs(u64),
    Seed(u64),
    Start(String),
    /// Every endpoint (and `dev_x`) answers after this long and presses
    /// this many digits.
    Endpoints(u64, usize),
    /// How long media and speech last.
    MediaMs(u64),
}

/// Strings people do not expect: control and invisible characters,
/// other scripts' digits, surrogate-range edges, path tricks.
const ODD: &[&str] = &[
    "",
    "\u{0}",
    "\u{feff}1000",
    "\u{202e}1000",
    "1\u{200b}000",
    "e\u{301}",
    "\u{1d7d9}\u{1d7d8}\u{1d7d8}\u{1d7d8}",
    "\u{661}\u{660}\u{660}\u{660}",
    "\u{ffff}",
    "\u{10ffff}",
    "\u{1f600}",
    "../../etc/passwd",
    "/dev/zero",
    "%2e%2e",
    "a\nb\r\n",
    "\"",
    "\\",
    "+",
    "*97",
    "+1",
    "no_match",
    "callflow",
    "_",
    "pvt_deleted",
    " ",
];

/// Regexes meant to hurt: catastrophic backtracking elsewhere, huge
/// compiled sizes, PCRE-only syntax, plain mistakes.
const HOSTILE_PATTERNS: &[&str] = &[
    "(a*)*$",
    "^(a|a)*$",
    "^(\\d+)+$",
    "^[0-9]{0,300}12345$",
    "^\\d{1000}$",
    "a{1000}{1000}",
    "(?:a{100}){100}",
    "^(?=1)\\d+$",
    "(?<=1)2",
    "(1)\\1",
    "(?>1)",
    "1++",
    "[",
    "(",
    "\\",
    ")",
    "{1,2}",
    "\\p{Greek}",
    "(?u)\\w+",
    "[[:alpha:]]",
    "(?i)\u{1c5}",
    "\\x{10FFFF}",
    "^$",
    ".*",
    "",
    "^\\+?1?(\\d{10})$",
    "^(?<name>\\d+)$",
    "^(((((((((((((((((((((1)))))))))))))))))))))$",
];

/// Raw fragments that break JSON in interesting ways.
const FRAGMENTS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    ",",
    ":",
    "null",
    "\\u0000",
    "\"\\ud800\"",
    "\\ud800",
    "\u{feff}",
    "1e999999",
    "-",
    "/*",
    "\u{0}",
    "\u{7f}",
    "{\"a\":",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    "}{",
    "NaN",
    "Infinity",
];

/// Keys that mean something somewhere (callflows, accounts, documents,
/// scenarios), plus odd ones.
const KEYS: &[&str] = &[
    "numbers",
    "patterns",
    "flow",
    "module",
    "data",
    "children",
    "_",
    "name",
    "featurecode",
    "metaflow",
    "metaflows",
    "dial_plan",
    "timezone",
    "_id",
    "id",
    "pvt_deleted",
    "pvt_type",
    "flags",
    "owner_id",
    "max_extension_length",
    "retries",
    "timeout",
    "endpoints",
    "binding_digit",
    "to",
    "from",
    "caller",
    "at_ms",
    "dtmf",
    "hangup",
    "start",
    "seed",
    "max_call_ms",
    "media",
    "http",
    "account",
    "calling_device",
    "inception",
    "expect",
    "\u{0}",
    "",
];

fn odd_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(ODD).prop_map(str::to_owned),
        2 => prop::collection::vec(any::<char>(), 0..24).prop_map(String::from_iter),
        1 => "[0-9+*#]{0,20}",
    ]
}

fn long_string() -> impl Strategy<Value = String> {
    (
        1_000usize..100_000,
        prop::sample::select(&["9", "\u{e9}", "a", "\u{1f600}", "(", "\\d"][..]),
    )
        .prop_map(|(n, unit)| unit.repeat(n))
}

fn hostile_pattern() -> impl Strategy<Value = String> {
    prop::sample::select(HOSTILE_PATTERNS).prop_map(str::to_owned)
}

/// A large array: numbers, patterns, the same number again and again,
/// nodes.
fn huge_array() -> impl Strategy<Value = Value> {
    (0usize..4, 0usize..3_000).prop_map(|(kind, len)| {
        let items: Vec<Value> = match kind {
            0 => (0..len).map(|i| json!(format!("+1415{i:07}"))).collect(),
            1 => (0..len.min(300))
                .map(|i| json!(format!("^\\+?1?415{i}(\\d*)$")))
                .collect(),
            2 => (0..len).map(|_| json!("1000")).collect(),
            _ => (0..len)
                .map(|i| json!({"module": "play", "data": {"id": i}}))
                .collect(),
        };
        Value::Array(items)
    })
}

fn leaf() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        prop::sample::select(vec![
            json!(-1),
            json!(0),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(1e308),
            json!(-1e308),
            json!(5e-324),
            json!(0.5),
            json!(-0.0),
        ]),
        any::<i64>().prop_map(Value::from),
        odd_string().prop_map(Value::from),
        hostile_pattern().prop_map(Value::from),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => odd_string(),
    ]
}

/// A value of any type, sometimes large.
fn weird_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => leaf(),
        1 => long_string().prop_map(Value::from),
        1 => huge_array(),
        2 => prop::collection::vec(leaf(), 0..8).prop_map(Value::from),
        2 => prop::collection::btree_map(key(), leaf(), 0..6)
            .prop_map(|m| Value::Object(m.into_iter().collect())),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        2 => (any::<Index>(), 1u8..=255).prop_map(|(at, mask)| Mutation::FlipByte(at, mask)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), prop_oneof![
                prop::sample::select(FRAGMENTS).prop_map(str::to_owned),
                odd_string(),
            ])
            .prop_map(|(at, text)| Mutation::Splice(at, text)),
        6 => (any::<Index>(), weird_value()).prop_map(|(at, v)| Mutation::Replace(at, v)),
        6 => (any::<Index>(), key(), weird_value())
            .prop_map(|(at, k, v)| Mutation::SetKey(at, k, v)),
        1 => (any::<Index>(), 1usize..300, any::<bool>())
            .prop_map(|(at, depth, array)| Mutation::Nest(at, depth, array)),
        1 => (1usize..200, prop::sample::select(&["play", "callflow", "menu", "nope", ""][..]))
            .prop_map(|(depth, module)| Mutation::DeepFlow(depth, module.to_owned())),
    ]
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..3)
}

/// Every value in pre-order.
fn count_values(value: &Value, objects_only: bool) -> usize {
    let own = usize::from(!objects_only || value.is_object());
    own + match value {
        Value::Array(items) => items.iter().map(|v| count_values(v, objects_only)).sum(),
        Value::Object(map) => map.values().map(|v| count_values(v, objects_only)).sum(),
        _ => 0,
    }
}

/// The n-th value in pre-order (among objects only, when asked).
fn nth_value(value: &mut Value, n: usize, objects_only: bool) -> Option<&mut Value> {
    let mut stack = vec![value];
    let mut seen = 0;
    while let Some(v) = stack.pop() {
        if !objects_only || v.is_object() {
            if seen == n {
                return Some(v);
            }
            seen += 1;
        }
        match v {
            Value::Array(items) => stack.extend(items.iter_mut().rev()),
            Value::Object(map) => {
                let values: Vec<&mut Value> = map.values_mut().collect();
                stack.extend(values.into_iter().rev());
            }
            _ => {}
        }
    }
    None
}

/// `text` with the mutations applied in turn. JSON-level ones change
/// nothing once the text no longer parses.
fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut text = text.to_owned();
    for mutation in mutations {
        match mutation {
            Mutation::FlipByte(at, mask) => {
                if text.is_empty() {
                    continue;
                }
                let mut bytes = text.into_bytes();
                let i = at.index(bytes.len());
                bytes[i] ^= mask;
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
            Mutation::Truncate(at) => {
                let mut i = at.index(text.len() + 1);
                while !text.is_char_boundary(i) {
                    i -= 1;
                }
                text.truncate(i);
            }
            Mutation::Splice(at, fragment) => {
                let mut i = at.index(text.len() + 1);
                while !text.is_char_boundary(i) {
                    i -= 1;
                }
                text.insert_str(i, fragment);
            }
            Mutation::Replace(..)
            | Mutation::SetKey(..)
            | Mutation::Nest(..)
            | Mutation::DeepFlow(..)
            | Mutation::Scenario(..) => {
                let Ok(mut doc) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                mutate_value(&mut doc, mutation);
                text = doc.to_string();
            }
        }
    }
    text
}

fn mutate_value(doc: &mut Value, mutation: &Mutation) {
    match mutation {
        Mutation::Replace(at, with) => {
            let n = at.index(count_values(doc, false));
            if let Some(target) = nth_value(doc, n, false) {
                *target = with.clone();
            }
        }
        Mutation::SetKey(at, key, with) => {
            let count = count_values(doc, true);
            if count == 0 {
                return;
            }
            if let Some(Value::Object(map)) = nth_value(doc, at.index(count), true) {
                map.insert(key.clone(), with.clone());
            }
        }
        Mutation::Nest(at, depth, array) => {
            let n = at.index(count_values(doc, false));
            if let Some(target) = nth_value(doc, n, false) {
                for _ in 0..*depth {
                    let inner = target.take();
                    *target = if *array {
                        json!([inner])
                    } else {
                        json!({ "children": { "_": inner } })
                    };
                }
            }
        }
        Mutation::DeepFlow(depth, module) => {
            let mut flow = json!({"module": module, "data": {"id": "x"}});
            for _ in 0..*depth {
                flow = json!({"module": module, "data": {}, "children": {"_": flow}});
            }
            if let Value::Object(map) = doc {
                map.insert("flow".into(), flow);
            }
        }
        Mutation::Scenario(tweak) => {
            if let Value::Object(map) = doc {
                tweak_scenario(map, tweak);
            }
        }
        Mutation::FlipByte(..) | Mutation::Truncate(..) | Mutation::Splice(..) => {}
    }
}

fn caller(map: &mut serde_json::Map<String, Value>) -> Option<&mut Vec<Value>> {
    match map.entry("caller").or_insert_with(|| json!([])) {
        Value::Array(actions) => Some(actions),
        _ => None,
    }
}

fn tweak_scenario(map: &mut serde_json::Map<String, Value>, tweak: &Tweak) {
    match tweak {
        Tweak::To(to) => {
            map.insert("to".into(), json!(to));
        }
        Tweak::Digits(at_ms, digits) => {
            if let Some(actions) = caller(map) {
                actions.push(json!({"at_ms": at_ms, "dtmf": digits}));
            }
        }
        Tweak::ManyActions(count, gap) => {
            if let Some(actions) = caller(map) {
                actions.extend(
                    (0..*count as u64)
                        .map(|i| json!({"at_ms": i.saturating_mul(*gap), "dtmf": "1"})),
                );
            }
        }
        Tweak::OnCollect(delay, digits) => {
            if let Some(actions) = caller(map) {
                actions.push(json!({"on": "collect", "delay_ms": delay, "dtmf": digits}));
            }
        }
        Tweak::Interdigit(gap) => {
            if let Some(actions) = caller(map) {
                for action in actions.iter_mut().filter_map(Value::as_object_mut) {
                    action.insert("interdigit_ms".into(), json!(gap));
                }
            }
        }
        Tweak::MaxCallMs(ms) => {
            map.insert("max_call_ms".into(), json!(ms));
        }
        Tweak::Seed(seed) => {
            map.insert("seed".into(), json!(seed));
        }
        Tweak::Start(start) => {
            map.insert("start".into(), json!(start));
        }
        Tweak::Endpoints(answer, digits) => {
            let endpoints = map.entry("endpoints").or_insert_with(|| json!({}));
            if let Value::Object(endpoints) = endpoints {
                endpoints.entry("dev_x").or_insert_with(|| json!({}));
                for behaviour in endpoints.values_mut().filter_map(Value::as_object_mut) {
                    behaviour.insert("answer_after_ms".into(), json!(answer));
                    let dtmf: Vec<Value> = (0..*digits as u64)
                        .map(|i| json!({"at_ms": i * 50, "digits": "*9"}))
                        .collect();
                    behaviour.insert("dtmf".into(), Value::Array(dtmf));
                }
            }
        }
        Tweak::MediaMs(ms) => {
            map.insert(
                "media".into(),
                json!({"default_ms": ms, "durations_ms": {"welcome": ms}, "speech_ms": {"x": ms}}),
            );
        }
    }
}

/// Times at the edges: zero, small, huge, the largest.
fn edge_ms() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        0u64..100_000,
        Just(u64::from(u32::MAX)),
        Just(i64::MAX as u64),
        Just(u64::MAX),
    ]
}

fn digits() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[0-9*#]{0,12}",
        1 => (1usize..5_000).prop_map(|n| "1".repeat(n)),
        1 => odd_string(),
    ]
}

fn tweak() -> impl Strategy<Value = Tweak> {
    prop_oneof![
        1 => (prop_oneof!["[0-9+*#]{0,16}", odd_string(), Just("1100".to_owned())]).prop_map(Tweak::To),
        3 => (edge_ms(), digits()).prop_map(|(at, d)| Tweak::Digits(at, d)),
        2 => (0usize..3_000, edge_ms()).prop_map(|(n, gap)| Tweak::ManyActions(n, gap)),
        1 => (edge_ms(), digits()).prop_map(|(delay, d)| Tweak::OnCollect(delay, d)),
        1 => edge_ms().prop_map(Tweak::Interdigit),
        1 => edge_ms().prop_map(Tweak::MaxCallMs),
        1 => any::<u64>().prop_map(Tweak::Seed),
        1 => prop::sample::select(
            &[
                "2026-03-08T02:30",
                "2026-11-01T01:30",
                "9999-12-31T23:59:59Z",
                "-009999-01-01T00:00:00Z",
                "1970-01-01T00:00:00Z",
                "2026-02-30T10:00",
                "now",
            ][..]
        )
        .prop_map(|s| Tweak::Start(s.to_owned())),
        1 => (edge_ms(), 0usize..500).prop_map(|(answer, n)| Tweak::Endpoints(answer, n)),
        1 => edge_ms().prop_map(Tweak::MediaMs),
    ]
}

/// Mostly well-typed changes, sometimes any mutation.
fn scenario_mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(
        prop_oneof![
            4 => tweak().prop_map(Mutation::Scenario),
            1 => mutation(),
        ],
        1..4,
    )
}

// ---------------------------------------------------------------------------
// Documents through the catalog and the router

/// Where a seed document sits in its sources.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Account,
    Callflow(usize),
    Document(usize),
}

/// A real document and the sources (its whole flows directory) it came from.
struct DocSeed {
    sources: Arc<Sources>,
    account: usize,
    slot: Slot,
    text: String,
    label: String,
}

/// Directories named `flows` under `dir` (not looking inside them).
fn flows_dirs(dir: &Path, found: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    entries.sort();
    for path in entries {
        if path.file_name().is_some_and(|n| n == "flows") {
            found.push(path);
        } else {
            flows_dirs(&path, found);
        }
    }
}

/// One account `example` holding `callflow` (or `account` as its
/// `account.json`).
fn example_sources(callflow: Option<String>, account: Option<String>) -> Sources {
    Sources {
        accounts: vec![AccountSource {
            id: AccountId::new("example").unwrap(),
            account: account.map(|text| SourceFile {
                path: "example/account.json".into(),
                text,
            }),
            callflows: callflow
                .map(|text| {
                    (
                        DocId::new("example").unwrap(),
                        SourceFile {
                            path: "example/callflows/example.json".into(),
                            text,
                        },
                    )
                })
                .into_iter()
                .collect(),
            documents: Vec::new(),
        }],
        diagnostics: Vec::new(),
    }
}

/// Every document of the repository's flows directories and Kazoo examples.
fn doc_seeds() -> Vec<DocSeed> {
    let mut dirs = vec![root().join("flows")];
    flows_dirs(&root().join("tests"), &mut dirs);
    let mut seeds = Vec::new();
    for dir in dirs {
        let sources = Arc::new(FlowsDir::new(&dir).read().unwrap());
        for (a, account) in sources.accounts.iter().enumerate() {
            let mut add = |slot, file: &SourceFile| {
                seeds.push(DocSeed {
                    sources: Arc::clone(&sources),
                    account: a,
                    slot,
                    text: file.text.clone(),
                    label: file.path.clone(),
                });
            };
            if let Some(file) = &account.account {
                add(Slot::Account, file);
            }
            for (i, (_, file)) in account.callflows.iter().enumerate() {
                add(Slot::Callflow(i), file);
            }
            for (i, (_, _, file)) in account.documents.iter().enumerate() {
                add(Slot::Document(i), file);
            }
        }
    }
    let examples = root().join("tests/kazoo-examples");
    let expected: BTreeMap<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(examples.join("EXPECTED.json")).unwrap())
            .unwrap();
    for (file, case) in expected {
        let value: Value =
            serde_json::from_str(&std::fs::read_to_string(examples.join(&file)).unwrap()).unwrap();
        let (sources, slot) = match case["kind"].as_str().unwrap() {
            "node" => (
                example_sources(
                    Some(json!({"numbers": ["example"], "flow": value}).to_string()),
                    None,
                ),
                Slot::Callflow(0),
            ),
            "envelope" => (
                example_sources(Some(value["data"].to_string()), None),
                Slot::Callflow(0),
            ),
            "metaflows" => {
                let account = if value.get("metaflows").is_some() {
                    value
                } else {
                    json!({ "metaflows": value })
                };
                (
                    example_sources(None, Some(account.to_string())),
                    Slot::Account,
                )
            }
            _ => (
                example_sources(Some(value.to_string()), None),
                Slot::Callflow(0),
            ),
        };
        let text = match slot {
            Slot::Account => sources.accounts[0].account.as_ref().unwrap().text.clone(),
            _ => sources.accounts[0].callflows[0].1.text.clone(),
        };
        seeds.push(DocSeed {
            sources: Arc::new(sources),
            account: 0,
            slot,
            text,
            label: format!("kazoo-examples/{file}"),
        });
    }
    seeds
}

/// Numbers dialled at every mutated account, besides its own.
const DIALLED: &[&str] = &[
    "1000",
    "+14155550123",
    "4155550123",
    "",
    "*97",
    "0",
    "+",
    "99999999999999999999999999999999999999999999999999",
    "\u{661}\u{660}\u{660}\u{660}",
    "\u{0}",
    "no_match",
];

/// Builds the catalog with the mutated document in place, routes numbers
/// in every account and writes every callflow back.
fn build_and_route(seed: &DocSeed, text: String) {
    let mut sources = (*seed.sources).clone();
    let account = &mut sources.accounts[seed.account];
    match seed.slot {
        Slot::Account => {
            account.account = Some(SourceFile {
                path: seed.label.clone(),
                text,
            });
        }
        Slot::Callflow(i) => account.callflows[i].1.text = text,
        Slot::Document(i) => account.documents[i].2.text = text,
    }
    let (catalog, _) = Catalog::build(sources, builtin_modules());
    for flows in catalog.accounts() {
        let own: Vec<String> = flows.routes.numbers().take(8).map(str::to_owned).collect();
        for number in own
            .iter()
            .map(String::as_str)
            .chain(DIALLED.iter().copied())
        {
            for inception in [Inception::Onnet, Inception::Offnet] {
                let _ = flows.routes.resolve(number, inception);
            }
            let _ = flows.routes.lookup(number);
        }
        for (id, callflow) in &flows.callflows {
            let (again, _) = callflow::model::parse_callflow(id, &callflow.to_value().to_string());
            assert!(again.is_some(), "{id} written back does not parse again");
        }
    }
}

#[test]
fn mutated_documents_never_panic_the_catalog_or_the_router() {
    let seeds = doc_seeds();
    assert!(seeds.len() > 400, "{} seed documents", seeds.len());
    let strategy = (any::<Index>(), mutations());
    runner(300)
        .run(&strategy, |(seed, changes)| {
            let seed = &seeds[seed.index(seeds.len())];
            let text = mutate(&seed.text, &changes);
            let what = format!("{} mutated by {changes:?}", seed.label);
            bounded(&what, || build_and_route(seed, text))
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn hostile_patterns_compile_or_fail_in_bounded_time() {
    // Every hostile pattern, alone and all together, in one callflow.
    let mut all = Vec::new();
    for pattern in HOSTILE_PATTERNS {
        let doc = json!({"patterns": [pattern], "flow": {"module": "play"}}).to_string();
        let (catalog, diags) = bounded(pattern, || {
            crate::support::catalog_of(&[("p", "p.json", &doc)])
        })
        .unwrap();
        let routes = &catalog.single_account().unwrap().routes;
        bounded(pattern, || {
            for number in DIALLED {
                let _ = routes.resolve(number, Inception::Onnet);
            }
        })
        .unwrap();
        // A pattern routing cannot use is a diagnostic naming it.
        if routes.len().1 == 0 {
            assert!(
                diags.iter().any(|d| d.pointer == "/patterns/0"),
                "{pattern}: {diags:?}"
            );
        }
        all.push(json!(pattern));
    }
    let doc = json!({"patterns": all, "flow": {"module": "play"}}).to_string();
    bounded("all hostile patterns", || {
        crate::support::catalog_of(&[("p", "p.json", &doc)])
    })
    .unwrap();
}

// ---------------------------------------------------------------------------
// Flows directories on disk through the store

/// One change to a flows directory on disk (no links, FIFOs or devices:
/// the store's handling of those has tests of its own).
#[derive(Debug, Clone)]
enum FsChange {
    /// A file's bytes changed: flipped, cut, or invalid UTF-8 inserted
    /// (the store reads bytes, not text).
    Bytes(Index, Vec<Mutation>, Option<Vec<u8>>),
    /// A file with these bytes at this path (relative to `flows/`).
    File(String, Vec<u8>),
    /// A directory at this path.
    Dir(String),
    /// A file whose name is not UTF-8, in this folder.
    BadName(String),
}

/// Paths the store might not expect.
const ODD_PATHS: &[&str] = &[
    "acme/callflows/x.json",
    "acme/callflows/y.json/z.json",
    "acme/callflows/sub/deeper.json",
    "acme/callflows/.hidden.json",
    "acme/callflows/.main.json.a1b2c3.tmp",
    "acme/callflows/a b.json",
    "acme/callflows/\u{e9}t\u{e9}.json",
    "acme/callflows/main.JSON",
    "acme/callflows/README",
    "acme/account.json/x.json",
    "acme/weird-type/x.json",
    "acme/menus/x.json",
    "readme.json",
    "bad account/callflows/x.json",
    "other/account.json",
    "other/callflows/x.json",
];

/// Contents the store might not expect.
fn file_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(b"{}".to_vec()),
        Just(b"\xef\xbb\xbf{\"numbers\": [\"1000\"]}".to_vec()),
        Just(b"\xff\xfe{\x00}\x00".to_vec()),
        Just(b"{\"numbers\": [\"\xff\"]}".to_vec()),
        (1usize..300_000).prop_map(|n| {
            let mut bytes = vec![b' '; n];
            bytes.extend_from_slice(b"{}");
            bytes
        }),
        prop::collection::vec(any::<u8>(), 0..300),
        weird_value().prop_map(|v| v.to_string().into_bytes()),
    ]
}

fn fs_change() -> impl Strategy<Value = FsChange> {
    let folders = prop::sample::select(&["acme", "acme/callflows", "acme/users", ""][..]);
    prop_oneof![
        4 => (
            any::<Index>(),
            mutations(),
            prop::option::of(prop::collection::vec(any::<u8>(), 1..4)),
        )
            .prop_map(|(at, changes, raw)| FsChange::Bytes(at, changes, raw)),
        2 => (prop::sample::select(ODD_PATHS), file_bytes())
            .prop_map(|(path, bytes)| FsChange::File(path.to_owned(), bytes)),
        1 => prop::sample::select(ODD_PATHS).prop_map(|p| FsChange::Dir(p.to_owned())),
        1 => folders.prop_map(|f| FsChange::BadName(f.to_owned())),
    ]
}

/// Every file under `dir`, sorted.
fn files_under(dir: &Path, found: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files_under(&path, found);
        } else {
            found.push(path);
        }
    }
}

fn apply_fs_change(flows: &Path, change: &FsChange) {
    use std::os::unix::ffi::OsStrExt as _;
    match change {
        FsChange::Bytes(at, changes, raw) => {
            let mut files = Vec::new();
            files_under(flows, &mut files);
            let path = &files[at.index(files.len())];
            // Lossy: an earlier change of the same case may have left
            // bytes that are not UTF-8 in this file.
            let text = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
            let mut bytes = mutate(&text, changes).into_bytes();
            if let Some(raw) = raw {
                // Bytes that are not UTF-8, in the middle.
                let middle = bytes.len() / 2;
                bytes.splice(middle..middle, raw.iter().map(|b| b | 0x80));
            }
            std::fs::write(path, bytes).unwrap();
        }
        FsChange::File(path, bytes) => {
            let path = flows.join(path);
            if std::fs::create_dir_all(path.parent().unwrap()).is_ok() && !path.is_dir() {
                let _ = std::fs::write(path, bytes);
            }
        }
        FsChange::Dir(path) => {
            let _ = std::fs::create_dir_all(flows.join(path));
        }
        FsChange::BadName(folder) => {
            let name = std::ffi::OsStr::from_bytes(b"bad\xff\xfe.json");
            let _ = std::fs::write(flows.join(folder).join(name), b"{}");
        }
    }
}

#[test]
fn mutated_flows_directories_are_read_without_panic() {
    let strategy = prop::collection::vec(fs_change(), 1..4);
    runner(60)
        .run(&strategy, |changes| {
            let dir = tempfile::tempdir().unwrap();
            let flows = dir.path().join("flows");
            copy_tree(&root().join("flows"), &flows);
            for change in &changes {
                apply_fs_change(&flows, change);
            }
            let what = format!("the sample flows changed by {changes:?}");
            bounded(&what, || {
                // A store that cannot be read at all is an error, not a panic.
                if let Ok(sources) = FlowsDir::new(&flows).read() {
                    let (catalog, _) = Catalog::build(sources, builtin_modules());
                    for flows in catalog.accounts() {
                        for number in DIALLED {
                            let _ = flows.routes.resolve(number, Inception::Offnet);
                        }
                    }
                }
            })
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

// ---------------------------------------------------------------------------
// Scenarios through the parser and the simulator

/// Small limits: bounded work whatever the scenario asks.
fn small_limits() -> Limits {
    Limits {
        max_branches: 20,
        interrupts_per_invoke: 1_000_000,
        vm_memory_bytes: 64 << 20,
        invoke_memory_bytes: 4 << 20,
        call_memory_bytes: 1 << 20,
        max_trace_events: 400,
        max_dtmf_digits: 200,
        max_caller_events: 50,
        max_call_ms: 30 * 60 * 1000,
        ..Limits::default()
    }
}

struct ScenarioSeed {
    text: String,
    label: String,
    flows: PathBuf,
    scripts: Vec<PathBuf>,
}

fn scenario_seeds() -> Vec<ScenarioSeed> {
    let dir = root().join("tests/scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    // Relative to the repository root, as the scenario tests run them.
    let base = Path::new("tests/scenarios");
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let scenario = Scenario::parse(&text).unwrap();
            ScenarioSeed {
                flows: scenario
                    .flows
                    .as_ref()
                    .map_or_else(|| PathBuf::from("flows"), |f| resolve(base, f)),
                scripts: scenario.scripts.iter().map(|s| resolve(base, s)).collect(),
                label: path.file_name().unwrap().to_string_lossy().into_owned(),
                text,
            }
        })
        .collect()
}

/// A scenario's flows directory and script directories.
type WorldKey = (PathBuf, Vec<PathBuf>);

/// The flows and scripts of a scenario, loaded once.
struct World {
    modules: Arc<ModuleSet>,
    catalog: Catalog,
    host: ModuleHost,
}

#[test]
fn mutated_scenarios_parse_or_fail_and_simulate_within_small_limits() {
    let seeds = scenario_seeds();
    assert!(seeds.len() > 300, "{} seed scenarios", seeds.len());
    let worlds: RefCell<BTreeMap<WorldKey, Rc<World>>> = RefCell::default();
    let options = Options {
        limits: small_limits(),
        ..Options::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let strategy = (any::<Index>(), scenario_mutations());
    runner(200)
        .run(&strategy, |(seed, changes)| {
            let seed = &seeds[seed.index(seeds.len())];
            let text = mutate(&seed.text, &changes);
            let what = format!("{} mutated by {changes:?}", seed.label);
            let Ok(mut scenario) = bounded(&what, || Scenario::parse(&text))? else {
                return Ok(());
            };
            // The files stay the original's: a mutated path must not send
            // the simulator walking the disk.
            scenario.flows = None;
            scenario.scripts = Vec::new();
            let key = (seed.flows.clone(), seed.scripts.clone());
            let world = worlds
                .borrow_mut()
                .entry(key)
                .or_insert_with(|| {
                    let (modules, _) = ModuleSet::load(&seed.scripts, 1);
                    let modules = Arc::new(modules);
                    let (catalog, _) =
                        Catalog::build(FlowsDir::new(&seed.flows).read().unwrap(), &*modules);
                    let host = ModuleHost::new(Arc::clone(&modules), small_limits()).unwrap();
                    Rc::new(World {
                        modules,
                        catalog,
                        host,
                    })
                })
                .clone();
            let Ok(account) = sim::account_for(&scenario, &world.catalog) else {
                return Ok(());
            };
            let account = Arc::clone(account);
            let outcome = bounded(&what, || {
                local.block_on(
                    &runtime,
                    sim::simulate(&scenario, &account, &world.host, &options, 0),
                )
            })?;
            let events = outcome.trace.events().len();
            prop_assert!(
                events <= small_limits().max_trace_events + 8,
                "{events} events: {what}"
            );
            let _ = &world.modules;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

// ---------------------------------------------------------------------------
// API requests through the router

/// One request to the API router.
#[derive(Debug, Clone)]
struct ApiRequest {
    method: &'static str,
    path: String,
    token: bool,
    body: Vec<u8>,
}

const METHODS: &[&str] = &[
    "GET", "PUT", "POST", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE",
];

const QUERIES: &[&str] = &[
    "",
    "?page_size=-1",
    "?page_size=0",
    "?page_size=99999999999999999999999",
    "?start_key=%%%",
    "?start_key=AAAA",
    "?paginate=false",
    "?filter_name=x",
    "?filter_numbers=1000",
    "?format=dot",
    "?format=mermaid",
    "?format=%00",
    "?auth_token=nope",
    "?a=1&a=2&&&=",
];

/// A path segment: a real id, or something odd, percent-encoded.
fn segment(real: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        16 => Just(real.to_owned()),
        1 => Just("other".to_owned()),
        1 => Just("..".to_owned()),
        1 => Just("%2e%2e%2fetc".to_owned()),
        1 => Just("a".repeat(65)),
        1 => Just("a".repeat(5000)),
        2 => odd_string().prop_map(|s| percent_encode(&s)),
    ]
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The id of a callflow of the sample flows (acme), for real paths.
const SAMPLE_CALLFLOW: &str = "main-menu";

/// A route of the API, writes more often than reads, its template filled
/// in, its method sometimes another one; now and then a path of no route.
fn api_path() -> impl Strategy<Value = (&'static str, String)> {
    let writes: Vec<usize> = (0..ROUTES.len())
        .filter(|&i| ROUTES[i].0 != "GET")
        .collect();
    (
        prop_oneof![
            2 => 0..ROUTES.len(),
            3 => prop::sample::select(writes),
        ],
        prop::option::weighted(0.1, prop::sample::select(METHODS)),
        segment("acme"),
        segment(SAMPLE_CALLFLOW),
        prop::sample::select(QUERIES),
        prop::bool::weighted(0.05),
    )
        .prop_map(|(route, other, a, c, query, odd)| {
            let (method, template) = ROUTES[route];
            let path = if odd {
                format!("/v2/{a}//{c}/")
            } else {
                template
                    .replace("{account_id}", &a)
                    .split('/')
                    .map(|segment| {
                        if segment.starts_with('{') {
                            c.as_str()
                        } else {
                            segment
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("/")
            };
            (other.unwrap_or(method), format!("{path}{query}"))
        })
}

/// Request bodies: mutated callflows for the callflow routes, mutated
/// scenarios for simulate, sometimes nothing or bytes.
fn api_request(
    callflows: Arc<Vec<String>>,
    scenarios: Arc<Vec<String>>,
) -> impl Strategy<Value = ApiRequest> {
    (
        api_path(),
        prop::bool::weighted(0.9),
        0u8..10,
        prop::collection::vec(any::<u8>(), 0..200),
        any::<Index>(),
        prop::collection::vec(mutation(), 0..3),
        prop::collection::vec(tweak().prop_map(Mutation::Scenario), 0..3),
    )
        .prop_map(
            move |((method, path), token, kind, bytes, seed, changes, tweaks)| {
                let body = match kind {
                    0 => Vec::new(),
                    1 => bytes,
                    _ => {
                        let (seeds, changes) = if path.contains("/simulate") {
                            (&scenarios, tweaks)
                        } else {
                            (&callflows, changes)
                        };
                        let text = mutate(&seeds[seed.index(seeds.len())], &changes);
                        if kind == 2 {
                            text.into_bytes()
                        } else {
                            format!("{{\"data\": {text}}}").into_bytes()
                        }
                    }
                };
                ApiRequest {
                    method,
                    path,
                    token,
                    body,
                }
            },
        )
}

/// Request bodies to mutate: the sample callflows (and a key request);
/// the scenarios of the sample flows without their files.
fn body_seeds(flows: &Path) -> (Vec<String>, Vec<String>) {
    let sources = FlowsDir::new(flows).read().unwrap();
    // With numbers of their own, so that a create or replace can succeed.
    let mut callflows: Vec<String> = sources
        .accounts
        .iter()
        .flat_map(|a| a.callflows.iter())
        .enumerate()
        .map(|(i, (_, file))| {
            let mut doc: Value = serde_json::from_str(&file.text).unwrap();
            doc["numbers"] = json!([format!("5{i:03}")]);
            doc["patterns"] = json!([]);
            doc.to_string()
        })
        .collect();
    callflows.push(json!({"api_key": "x"}).to_string());
    let mut scenarios = Vec::new();
    for seed in scenario_seeds() {
        if seed.flows != Path::new("flows") {
            continue;
        }
        let mut value: Value = serde_json::from_str(&seed.text).unwrap();
        if let Value::Object(map) = &mut value {
            map.remove("flows");
            map.remove("scripts");
        }
        scenarios.push(value.to_string());
    }
    assert!(scenarios.len() >= 5, "{} sample scenarios", scenarios.len());
    (callflows, scenarios)
}

#[test]
fn mutated_api_requests_never_get_a_5xx() {
    use axum::body::Body;
    use tower::ServiceExt as _;

    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    copy_tree(&root().join("flows"), &flows);
    assert!(
        flows
            .join(format!("acme/callflows/{SAMPLE_CALLFLOW}.json"))
            .is_file()
    );
    let key =
        callflow::api::create_api_key(&FlowsDir::new(&flows), &AccountId::new("acme").unwrap())
            .unwrap();
    let config = callflow::api::Config {
        limits: small_limits(),
        ..callflow::api::Config::default()
    };
    let paths = callflow::reload::Paths {
        flows: flows.clone(),
        scripts: Vec::new(),
    };
    let (state, _) = callflow::api::AppState::load(paths, config).unwrap();
    let router = callflow::api::router(Arc::new(state));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let call = |method: &str, path: &str, token: Option<&str>, body: Vec<u8>| {
        let mut request = axum::http::Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("X-Auth-Token", token);
        }
        let request = request.body(Body::from(body)).unwrap();
        runtime.block_on(async {
            let response = router.clone().oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
                .await
                .unwrap();
            (status, bytes)
        })
    };
    let (status, bytes) = call(
        "PUT",
        "/v2/api_auth",
        None,
        json!({"data": {"api_key": key}}).to_string().into_bytes(),
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&bytes));
    let reply: Value = serde_json::from_slice(&bytes).unwrap();
    let token = reply["auth_token"].as_str().unwrap().to_owned();

    let (callflows, scenarios) = body_seeds(&flows);
    runner(300)
        .run(
            &api_request(Arc::new(callflows), Arc::new(scenarios)),
            |request| {
                let what = format!(
                    "{} {} token={} body={:?}",
                    request.method,
                    request.path,
                    request.token,
                    String::from_utf8_lossy(&request.body)
                );
                let (status, bytes) = bounded(&what, || {
                    call(
                        request.method,
                        &request.path,
                        request.token.then_some(token.as_str()),
                        request.body.clone(),
                    )
                })?;
                let text = String::from_utf8_lossy(&bytes);
                prop_assert!(status < 500, "{status} {text}: {what}");
                if status >= 400 && request.method != "HEAD" {
                    // Kazoo's error envelope, whatever went wrong.
                    let reply: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    prop_assert_eq!(&reply["status"], "error", "{} {}: {}", status, text, what);
                    prop_assert_eq!(
                        &reply["error"],
                        &json!(status.to_string()),
                        "{} {}: {}",
                        status,
                        text,
                        what
                    );
                }
                Ok(())
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));

    // Still healthy, and whatever was written is a document that parses.
    let (status, _) = call("GET", "/v2/health", None, Vec::new());
    assert_eq!(status, 200);
    assert_json_files_parse(&flows);
    let (_, diagnostics) = Catalog::build(FlowsDir::new(&flows).read().unwrap(), builtin_modules());
    let _ = diagnostics;
}

/// Every `.json` file under `dir` (but hidden ones: temporary files of
/// writes) parses as JSON.
pub(crate) fn assert_json_files_parse(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            assert_json_files_parse(&path);
        } else if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            if let Err(e) = serde_json::from_str::<Value>(&text) {
                panic!("{} is corrupt: {e}", path.display());
            }
        }
    }
}

/// Found by `mutated_scenarios_parse_or_fail_and_simulate_within_small_limits`
/// (`{"caller": [{"at_ms": 18446744073709551615, "dtmf": "1"}]}`): the
/// simulator added the gap between digits to a time at the end of `u64`
/// (a panic in a debug build, digits pressed at the start of the call in a
/// release build). Times now saturate: such digits never come.
#[test]
fn caller_times_at_the_end_of_time_saturate() {
    let scenario = Scenario::parse(
        &json!({
            "account": "acme",
            "to": "1100",
            "caller": [
                {"at_ms": u64::MAX, "dtmf": "12"},
                {"on": "collect", "delay_ms": u64::MAX, "dtmf": "34", "interdigit_ms": u64::MAX},
                {"at_ms": 30_000, "hangup": true},
            ],
        })
        .to_string(),
    )
    .unwrap();
    let text = crate::support::simulate_in(&scenario, &root()).render_text();
    // The menu hears nothing until the caller hangs up at 30 s.
    assert_eq!(text.matches("collect  ").count(), 3, "{text}");
    assert_eq!(
        text.matches("digits=\"\"").count(),
        3,
        "no digit pressed: {text}"
    );
    assert!(
        text.ends_with("00:30.000  end      reason=caller_hangup duration_ms=30000\n"),
        "{text}"
    );
}
