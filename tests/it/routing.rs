//! `tests/routing/*.json`: each file is one account (`account`, `callflows`)
//! and a table of `calls`, each a dialled number (optionally `"inception":
//! "offnet"`) and the route it must get, rendered as one line:
//! `<normalized> -> <callflow> by <number|pattern|no_match> [<pattern>]
//! [capture_group=<cg>] [<name>=<value>...]` or `<normalized> -> not found
//! (<reason>)`.

use std::fs;

use serde::Deserialize;
use serde_json::{Map, Value};

use callflow::catalog::KazooModules;
use callflow::catalog::{AccountSource, Catalog, SourceFile, Sources};
use callflow::ids::{AccountId, DocId};
use callflow::routing::{Inception, NotFound, Route, RouteError, RouteTable};

use crate::support::root;

#[derive(Debug, Deserialize)]
struct Case {
    #[allow(dead_code)]
    about: String,
    account: Option<Value>,
    callflows: Map<String, Value>,
    calls: Vec<Call>,
}

#[derive(Debug, Deserialize)]
struct Call {
    dial: String,
    #[serde(default)]
    inception: Option<String>,
    expect: String,
}

fn table_of(case: &Case) -> RouteTable {
    let account = AccountSource {
        id: AccountId::new("test").unwrap(),
        account: case.account.as_ref().map(|a| SourceFile {
            path: "account.json".into(),
            text: a.to_string(),
        }),
        callflows: case
            .callflows
            .iter()
            .map(|(id, doc)| {
                (
                    DocId::new(id).unwrap(),
                    SourceFile {
                        path: format!("{id}.json"),
                        text: doc.to_string(),
                    },
                )
            })
            .collect(),
        documents: Vec::new(),
    };
    let (catalog, _) = Catalog::build(
        Sources {
            accounts: vec![account],
            diagnostics: Vec::new(),
        },
        &KazooModules,
    );
    catalog.single_account().unwrap().routes.clone()
}

fn render(result: &Result<Route, RouteError>) -> String {
    match result {
        Ok(route) => {
            let mut line = format!(
                "{} -> {} by {}",
                route.number,
                route.callflow_id,
                route.matched.as_str()
            );
            if let Some(pattern) = &route.pattern {
                line += &format!(" {pattern}");
            }
            if let Some(cg) = &route.capture_group {
                line += &format!(" capture_group={cg}");
            }
            for (name, value) in &route.capture_groups {
                line += &format!(" {name}={value}");
            }
            line
        }
        Err(RouteError::EmptyNumber) => "not found (empty)".to_owned(),
        Err(RouteError::NotFound { number, reason }) => {
            let reason = match reason {
                NotFound::NotDigits => "not_digits",
                NotFound::NoNoMatch => "no_no_match",
                NotFound::OffnetNoMatch => "offnet_no_match",
            };
            format!("{number} -> not found ({reason})")
        }
    }
}

#[test]
fn routing_tables() {
    let dir = root().join("tests/routing");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 10);
    let mut failures = Vec::new();
    for path in files {
        let case: Case = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        let table = table_of(&case);
        for call in &case.calls {
            let inception = match call.inception.as_deref() {
                None | Some("onnet") => Inception::Onnet,
                Some("offnet") => Inception::Offnet,
                Some(other) => panic!("unknown inception {other}"),
            };
            let actual = render(&table.resolve(&call.dial, inception));
            if actual != call.expect {
                failures.push(format!(
                    "{}: {} ({inception:?})\n  expected {}\n  got      {actual}",
                    path.file_name().unwrap().to_string_lossy(),
                    call.dial,
                    call.expect
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The `RegexSet` fast path picks the same callflow and capture as Kazoo's
/// loop over every pattern, on a few thousand generated patterns and numbers.
#[test]
fn fast_path_agrees_with_the_naive_loop() {
    let mut callflows = Map::new();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let shapes = [
        |n: u64| format!("^\\*{}([0-9]*)$", n % 100),
        |n: u64| format!("^\\+1415{}(\\d{{4}})$", n % 1000),
        |n: u64| format!("^{}\\d{{{}}}$", n % 10, n % 5 + 1),
        |n: u64| format!("{}(\\d)", n % 100),
        |n: u64| format!("^(?P<ext>{}\\d\\d)$", n % 10),
    ];
    for i in 0..800u64 {
        let n = next();
        let pattern = shapes[usize::try_from(n % 5).unwrap()](n / 7);
        callflows.insert(
            format!("cf{i}"),
            serde_json::json!({"patterns": [pattern], "flow": {"module": "answer"}}),
        );
    }
    let case = Case {
        about: String::new(),
        account: None,
        callflows,
        calls: Vec::new(),
    };
    let table = table_of(&case);
    let mut matched = 0;
    for _ in 0..1500 {
        let n = next();
        let number = match n % 4 {
            0 => format!("*{}", n % 100_000),
            1 => format!("+1415{:07}", n % 10_000_000),
            2 => format!("{}", n % 1_000_000),
            _ => format!("{}", n % 1000),
        };
        let fast = table.lookup(&number).ok().filter(|r| r.pattern.is_some());
        let naive = table.lookup_naive(&number);
        let fast = fast.map(|r| (r.callflow_id, r.capture_group.unwrap_or_default()));
        assert_eq!(fast, naive, "{number}");
        matched += usize::from(naive.is_some());
    }
    assert!(
        matched > 200,
        "the generated numbers hit patterns ({matched})"
    );
}
