//! Every document of `tests/kazoo-examples/` (a copy of the 60 real Kazoo
//! documents in `../shared/kazoo-examples`, with their `INDEX.md`) loads
//! with the built-in modules, and gives exactly the diagnostics
//! `EXPECTED.json` lists for it (module data checked against each module's
//! schema). Negative examples are expected to give the diagnostic their
//! INDEX entry predicts. No node names a module the scripts lack, except in
//! the example made for that.

use std::collections::BTreeMap;
use std::fs;

use serde::Deserialize;
use serde_json::{Value, json};

use callflow::ids::{AccountId, DocId};
use callflow::model::{parse_account, parse_callflow};

use crate::support::{builtin_modules, catalog_with, codes, root};

#[derive(Debug, Deserialize)]
struct Expected {
    /// How to load the file: `doc` (a whole callflow document), `node` (a
    /// flow node, wrapped as `{"numbers":["example"],"flow":...}`),
    /// `envelope` (a Crossbar request body `{"data":{...}}`), `metaflows` (a
    /// metaflows object, loaded as an account's `metaflows`).
    kind: String,
    /// `severity code pointer` of each diagnostic, in order.
    diagnostics: Vec<String>,
    /// Why those diagnostics (free text for readers).
    #[allow(dead_code)]
    why: Option<String>,
}

#[test]
fn every_kazoo_example_loads_as_expected() {
    let dir = root().join("tests/kazoo-examples");
    let expected: BTreeMap<String, Expected> =
        serde_json::from_str(&fs::read_to_string(dir.join("EXPECTED.json")).unwrap()).unwrap();
    let mut files: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| {
            std::path::Path::new(name)
                .extension()
                .is_some_and(|ext| ext == "json")
                && name != "EXPECTED.json"
        })
        .collect();
    files.sort();
    assert_eq!(files.len(), 60, "the 60 Kazoo examples");
    assert_eq!(
        files,
        expected.keys().cloned().collect::<Vec<_>>(),
        "EXPECTED.json lists every example"
    );

    let mut failures = Vec::new();
    for file in &files {
        let text = fs::read_to_string(dir.join(file)).unwrap();
        let case = &expected[file];
        let actual = load(&case.kind, &text);
        if actual != case.diagnostics {
            failures.push(format!(
                "{file}: expected {:?}\n  got {actual:?}",
                case.diagnostics
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));

    // Every module the examples use exists, but in the one negative example
    // about an unknown module.
    let unknown: Vec<&String> = expected
        .iter()
        .filter(|(_, case)| {
            case.diagnostics
                .iter()
                .any(|d| d.contains(" unknown_module "))
        })
        .map(|(file, _)| file)
        .collect();
    assert_eq!(unknown, ["crossbar-test-unknown-module-nope.json"]);
}

fn load(kind: &str, text: &str) -> Vec<String> {
    let value: Value = serde_json::from_str(text).unwrap();
    match kind {
        "doc" => load_doc(&value),
        "node" => load_doc(&json!({"numbers": ["example"], "flow": value})),
        "envelope" => load_doc(&value["data"]),
        "metaflows" => {
            let account = if value.get("metaflows").is_some() {
                value
            } else {
                json!({ "metaflows": value })
            };
            let id = AccountId::new("example").unwrap();
            let (_, diags) = parse_account(&id, &account.to_string());
            codes(&diags)
        }
        other => panic!("unknown kind {other}"),
    }
}

/// Loads a callflow document through the catalog (so cross-document checks
/// run too) and checks that it round-trips: unknown keys kept unchanged.
fn load_doc(doc: &Value) -> Vec<String> {
    let id = doc.get("_id").and_then(Value::as_str).unwrap_or("example");
    let text = doc.to_string();
    let (catalog, diags) = catalog_with(builtin_modules(), &[(id, "example.json", &text)]);

    let (callflow, _) = parse_callflow(&DocId::new(id).unwrap(), &text);
    if diags.iter().all(|d| !d.is_error()) {
        let canonical = canonical(doc.clone());
        assert_eq!(
            callflow.unwrap().to_value(),
            canonical,
            "round trip of {id}"
        );
        assert!(catalog.single_account().unwrap().callflows.contains_key(id));
    }
    codes(&diags)
}

/// The document as the model writes it back: Kazoo's schema defaults filled
/// in (`numbers`, `patterns`, and each node's `data` and `children`), every
/// other key unchanged.
fn canonical(mut doc: Value) -> Value {
    fn node(value: &mut Value) {
        let Some(obj) = value.as_object_mut() else {
            return;
        };
        if obj.is_empty() {
            return;
        }
        obj.entry("data").or_insert(json!({}));
        let children = obj.entry("children").or_insert(json!({}));
        for child in children.as_object_mut().unwrap().values_mut() {
            node(child);
        }
    }
    let obj = doc.as_object_mut().unwrap();
    obj.entry("numbers").or_insert(json!([]));
    obj.entry("patterns").or_insert(json!([]));
    if let Some(flow) = obj.get_mut("flow") {
        node(flow);
    }
    doc
}
