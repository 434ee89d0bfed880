//! Calls side by side against one store: `call:update_doc`'s
//! compare-and-swap holds across threads (each call on its own thread,
//! runtime and Lua VM, as a server's workers run them).
//!
//! Deterministic without sleeps: the store is wrapped so that the first
//! two reads of the voicemail box wait for each other, so both calls read
//! the same box before either writes, and one of them must lose the race
//! and retry.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use callflow::catalog::Catalog;
use callflow::engine::{DocumentStore, MemoryStore, Revision, Swap};
use callflow::host::ModuleSet;
use callflow::ids::{AccountId, DocId, DocType};
use callflow::model::Object;
use callflow::sim::{self, Options, Scenario};
use callflow::store::{FlowsDir, Store};
use callflow::trace::Trace;
use serde_json::Value;

use crate::support::{copy_tree, root};

/// A store whose first `meet` reads of `vmboxes` documents wait until all
/// of them have arrived.
struct Rendezvous {
    inner: Arc<dyn DocumentStore>,
    meet: usize,
    arrived: Mutex<usize>,
    all_here: Condvar,
}

impl Rendezvous {
    fn new(inner: Arc<dyn DocumentStore>, meet: usize) -> Self {
        Self {
            inner,
            meet,
            arrived: Mutex::new(0),
            all_here: Condvar::new(),
        }
    }
}

impl DocumentStore for Rendezvous {
    fn load(
        &self,
        account: &AccountId,
        doc_type: &DocType,
        id: &DocId,
    ) -> Result<Option<(Object, Revision)>, String> {
        let read = self.inner.load(account, doc_type, id);
        if doc_type.as_str() == "vmboxes" {
            let mut arrived = self.arrived.lock().unwrap();
            *arrived += 1;
            if *arrived <= self.meet {
                self.all_here.notify_all();
                // A guard against a test that would hang, not a delay: the
                // wait ends as soon as the other call has read.
                let (arrived, timeout) = self
                    .all_here
                    .wait_timeout_while(arrived, Duration::from_mins(1), |n| *n < self.meet)
                    .unwrap();
                assert!(!timeout.timed_out(), "only {} of the calls read", *arrived);
            }
        }
        read
    }

    fn save(
        &self,
        account: &AccountId,
        doc_type: &DocType,
        id: &DocId,
        body: &Object,
        expected: Option<Revision>,
    ) -> Result<Swap, String> {
        self.inner.save(account, doc_type, id, body, expected)
    }
}

/// The sample flows' after-hours call, which leaves a message in the main
/// box (`vm-main`), made by `calls` callers at the same instant (seeds 1,
/// 2, ...), each on its own thread, all against `store`.
fn leave_messages_at_once(
    catalog: &Catalog,
    store: Arc<dyn DocumentStore>,
    calls: u64,
) -> Vec<Trace> {
    let text =
        std::fs::read_to_string(root().join("tests/scenarios/sample-main-sunday.json")).unwrap();
    let (modules, problems) = ModuleSet::load(&[] as &[&std::path::Path], 1);
    assert!(problems.iter().all(|d| !d.is_error()), "{problems:?}");
    let modules = Arc::new(modules);
    let options = Options {
        persist: Some(store),
        ..Options::default()
    };
    std::thread::scope(|threads| {
        let running: Vec<_> = (1..=calls)
            .map(|seed| {
                let mut scenario = Scenario::parse(&text).unwrap();
                scenario.seed = seed;
                let account = Arc::clone(sim::account_for(&scenario, catalog).unwrap());
                let (modules, options) = (Arc::clone(&modules), options.clone());
                threads.spawn(move || {
                    sim::run_one(&scenario, &account, modules, &options)
                        .unwrap()
                        .trace
                })
            })
            .collect();
        running.into_iter().map(|t| t.join().unwrap()).collect()
    })
}

/// The call ids of the box's messages.
fn message_calls(box_doc: &Object) -> Vec<String> {
    let mut ids: Vec<String> = box_doc["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["call_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// How many tries of the traces' `store` events of `vm-main` lost a race.
fn conflicts(traces: &[Trace]) -> Vec<u64> {
    traces
        .iter()
        .flat_map(|trace| trace.events().iter())
        .filter(|e| e.name == "store" && e.fields.get("id") == Some(&Value::from("vm-main")))
        .map(|e| {
            e.fields
                .get("conflicts")
                .and_then(Value::as_u64)
                .unwrap_or(0)
        })
        .collect()
}

fn sample_catalog(flows: &std::path::Path) -> Catalog {
    let (modules, _) = ModuleSet::load(&[] as &[&std::path::Path], 1);
    let (catalog, _) = Catalog::build(FlowsDir::new(flows).read().unwrap(), &modules);
    catalog
}

#[test]
fn two_callers_leaving_a_message_in_one_box_at_once_both_keep_it() {
    let catalog = sample_catalog(&root().join("flows"));
    let memory = Arc::new(MemoryStore::new(&catalog));
    let store = Arc::new(Rendezvous::new(Arc::clone(&memory) as _, 2));
    let traces = leave_messages_at_once(&catalog, store, 2);
    for trace in &traces {
        assert!(
            trace
                .events()
                .iter()
                .any(|e| e.name == "voicemail.new_message")
        );
        assert!(
            trace.events().iter().all(|e| e.name != "error"),
            "{}",
            trace.render_text()
        );
    }
    let stored = memory.get("acme", "vmboxes", "vm-main").unwrap();
    assert_eq!(message_calls(&stored), ["sim-1", "sim-2"]);
    let mut conflicts = conflicts(&traces);
    conflicts.sort_unstable();
    assert_eq!(conflicts, [0, 1], "one call lost the race and tried again");
}

#[test]
fn two_callers_leaving_a_message_in_one_box_of_the_flows_directory_both_keep_it() {
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    copy_tree(&root().join("flows"), &flows);
    let catalog = sample_catalog(&flows);
    let store = Arc::new(Rendezvous::new(Arc::new(FlowsDir::new(&flows)), 2));
    let traces = leave_messages_at_once(&catalog, store, 2);
    let text = std::fs::read_to_string(flows.join("acme/vmboxes/vm-main.json")).unwrap();
    let Value::Object(stored) = serde_json::from_str(&text).unwrap() else {
        panic!("{text}");
    };
    assert_eq!(message_calls(&stored), ["sim-1", "sim-2"]);
    let mut conflicts = conflicts(&traces);
    conflicts.sort_unstable();
    assert_eq!(conflicts, [0, 1], "one call lost the race and tried again");
    // The box still checks, and no temporary file is left.
    assert!(
        sample_catalog(&flows)
            .account("acme")
            .unwrap()
            .document("vmboxes", "vm-main")
            .is_some()
    );
    crate::support::assert_no_hidden_files(&flows.join("acme/vmboxes"));
}

#[test]
fn many_callers_at_once_keep_every_message() {
    // No rendezvous: whatever the interleaving, no message is lost.
    let catalog = sample_catalog(&root().join("flows"));
    let memory = Arc::new(MemoryStore::new(&catalog));
    let traces = leave_messages_at_once(&catalog, Arc::clone(&memory) as _, 6);
    assert_eq!(traces.len(), 6);
    let stored = memory.get("acme", "vmboxes", "vm-main").unwrap();
    assert_eq!(
        message_calls(&stored),
        (1..=6).map(|n| format!("sim-{n}")).collect::<Vec<_>>()
    );
}
