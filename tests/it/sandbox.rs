//! Sandbox violations end only the module that tried them: run concurrently
//! on one VM, every sandbox scenario and a few ordinary calls give exactly
//! the traces they give alone on fresh VMs, so nothing leaked between calls
//! and the VM stayed usable.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use callflow::catalog::Catalog;
use callflow::host::{ModuleHost, ModuleSet};
use callflow::sim::{self, Options, Scenario};
use callflow::store::{FlowsDir, Store};

use crate::support::{root, run_local, simulate_file};

#[test]
fn violations_leave_the_vm_and_other_calls_intact() {
    let dir = root().join("tests/scenarios");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("sandbox-"))
        .collect();
    names.sort();
    assert!(names.len() >= 15, "{names:?}");
    // Ordinary calls before, between and after the violations.
    let mut order = vec!["module-play.json".to_owned()];
    for name in &names {
        order.push(name.clone());
        order.push("api-collect-digits.json".to_owned());
    }
    order.push("engine-nested-branch.json".to_owned());

    let (modules, _) = ModuleSet::load(&[PathBuf::from("tests/engine/scripts")], 1);
    let (catalog, _) = Catalog::build(
        FlowsDir::new("tests/engine/flows").read().unwrap(),
        &modules,
    );
    let account = Arc::clone(catalog.single_account().unwrap());
    let host = Rc::new(ModuleHost::new(Arc::new(modules), Options::default().limits).unwrap());
    let scenarios: Vec<Scenario> = order
        .iter()
        .map(|name| Scenario::parse(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap())
        .collect();

    let shared = concurrently(&host, &account, scenarios, &Options::default());

    for (name, trace) in order.iter().zip(&shared) {
        let alone = simulate_file(&dir.join(name));
        assert_eq!(
            trace.render_text(),
            alone.render_text(),
            "{name} differs when run beside the others on one VM"
        );
    }
    // The violations really were caught.
    let errors = shared
        .iter()
        .filter(|t| t.events().iter().any(|e| e.name == "error"))
        .count();
    assert!(errors >= 14, "{errors} calls recorded an error");
}

/// Simulates every scenario at once on one host (call `i` with index `i`).
fn concurrently(
    host: &Rc<ModuleHost>,
    account: &Arc<callflow::catalog::AccountFlows>,
    scenarios: Vec<Scenario>,
    options: &Options,
) -> Vec<callflow::trace::Trace> {
    run_local(async {
        let tasks: Vec<_> = scenarios
            .into_iter()
            .zip(0..)
            .map(|(scenario, index)| {
                let (host, account, options) =
                    (Rc::clone(host), Arc::clone(account), options.clone());
                tokio::task::spawn_local(async move {
                    sim::simulate(&scenario, &account, host.as_ref(), &options, index)
                        .await
                        .trace
                })
            })
            .collect();
        let mut traces = Vec::new();
        for task in tasks {
            traces.push(task.await.unwrap());
        }
        traces
    })
}

/// A call of the engine test flows to `to`, simulated alone.
fn limits_call(to: &str) -> callflow::trace::Trace {
    let scenario = Scenario::parse(&format!(
        r#"{{"to": "{to}", "flows": "../engine/flows", "scripts": ["../engine/scripts"]}}"#
    ))
    .unwrap();
    crate::support::simulate_in(&scenario, std::path::Path::new("tests/scenarios"))
}

#[test]
fn what_one_call_keeps_is_bounded() {
    let limits = Options::default().limits;

    // 60 log lines of 1 MB: each kept cut to the limit, saying so.
    let trace = limits_call("243");
    let logs: Vec<&str> = trace
        .events()
        .iter()
        .filter(|e| e.name == "log" && e.fields["module"] == "sb_log_flood")
        .map(|e| e.fields["message"].as_str().unwrap())
        .collect();
    assert_eq!(logs.len(), 60);
    for message in logs {
        assert!(
            message.len() <= limits.max_log_bytes + 40,
            "{}",
            message.len()
        );
        assert!(
            message.ends_with(&format!(
                "… [{} more bytes cut]",
                1_000_000 - limits.max_log_bytes
            )),
            "{}",
            &message[message.len() - 40..]
        );
    }

    // 30,000 events: the trace keeps its maximum, says how many it dropped,
    // and still records how the call ended.
    let trace = limits_call("244");
    let events = trace.events();
    let limit = events
        .iter()
        .find(|e| e.name == "limit")
        .expect("a limit event");
    assert_eq!(limit.fields["what"], "trace_events");
    assert_eq!(limit.fields["max"], limits.max_trace_events);
    let ticks = events.iter().filter(|e| e.name == "tick").count();
    let dropped = limit.fields["dropped"].as_u64().unwrap();
    assert_eq!(
        ticks as u64 + dropped,
        30_000 + 2,
        "the probe's node and log were dropped too"
    );
    assert_eq!(
        events.len(),
        limits.max_trace_events + 3,
        "limit, hangup, end"
    );
    assert_eq!(events.last().unwrap().name, "end");

    // One event of 100 KB: an error in the module that emitted it.
    let trace = limits_call("245");
    let error = trace
        .events()
        .iter()
        .find(|e| e.name == "error")
        .expect("an error");
    assert_eq!(error.fields["module"], "sb_emit_big");
    assert!(
        error.fields["message"].as_str().unwrap().contains(&format!(
            "an event may have {} bytes of fields at most",
            limits.max_emit_bytes
        )),
        "{error:?}"
    );
    assert!(trace.events().iter().all(|e| e.name != "big"));

    // A hundred variables of 1 MB: past the call's budget, call:set fails in
    // the module that asked, and the call goes on.
    let trace = limits_call("246");
    let sets = trace.events().iter().filter(|e| e.name == "set").count();
    let budget_mib = limits.call_memory_bytes >> 20;
    assert!(sets > 0 && sets < budget_mib, "{sets} variables kept");
    let error = trace
        .events()
        .iter()
        .find(|e| e.name == "error")
        .expect("an error");
    assert_eq!(error.fields["module"], "sb_keep_flood");
    assert!(
        error.fields["message"]
            .as_str()
            .unwrap()
            .contains("the call's memory budget"),
        "{error:?}"
    );
    assert!(
        trace
            .events()
            .iter()
            .any(|e| e.name == "log" && e.fields["module"] == "probe")
    );
}

/// Calls that fill their worker's VM to its cap get memory errors; the
/// process goes on. (mlua resets a finished call's Lua thread outside any
/// protected call; with the VM full, that allocation failing aborted the
/// whole process: "Rust cannot catch foreign exceptions".)
#[test]
fn a_full_vm_fails_calls_never_the_process() {
    let (modules, account) = sample();
    let mut options = Options::default();
    options.limits.vm_memory_bytes = 6 << 20;
    options.limits.invoke_memory_bytes = 1 << 20;
    // No reserve per call: admission alone would keep the VM from filling.
    options.limits.call_reserve_bytes = 1;
    let host = Rc::new(ModuleHost::new(Arc::new(modules), options.limits).unwrap());
    let scenario = Scenario::parse(
        &std::fs::read_to_string(root().join("tests/scenarios/sample-ivr.json")).unwrap(),
    )
    .unwrap();
    let traces = concurrently(&host, &account, vec![scenario; 1500], &options);
    let failed = traces
        .iter()
        .filter(|t| t.events().iter().any(|e| e.name == "error"))
        .count();
    assert!(failed > 0, "the VM never filled: the test proves nothing");
    for trace in &traces {
        assert_eq!(trace.events().last().unwrap().name, "end");
    }
}

/// A worker at its `max_calls` refuses the next call at once (SIP 503,
/// `end` reason `overload`); the call it runs goes on as if alone.
#[test]
fn a_full_worker_refuses_the_next_call_and_the_running_one_goes_on() {
    let (modules, account) = sample();
    let mut options = Options::default();
    options.limits.max_calls = 1;
    let host = Rc::new(ModuleHost::new(Arc::new(modules), options.limits).unwrap());
    let path = root().join("tests/scenarios/sample-ivr.json");
    let scenario = Scenario::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let traces = concurrently(&host, &account, vec![scenario.clone(), scenario], &options);
    assert_eq!(
        traces[0].render_text(),
        simulate_file(&path).render_text(),
        "the running call changed"
    );
    let refused: Vec<String> = traces[1]
        .events()
        .iter()
        .map(|e| format!("{} {}", e.name, serde_json::Value::Object(e.fields.clone())))
        .collect();
    assert_eq!(
        refused,
        [
            r#"hangup {"cause":"SWITCH_CONGESTION","by":"system"}"#,
            r#"end {"reason":"overload","duration_ms":0}"#,
        ],
        "{refused:?}"
    );
}

#[test]
fn a_call_takes_a_bounded_number_of_digits() {
    // The sample IVR's caller presses 1 once; this one presses 30 digits
    // into the menu while its cap is 5.
    let (modules, account) = sample();
    let mut options = Options::default();
    options.limits.max_dtmf_digits = 5;
    let presses: Vec<String> = (0..30)
        .map(|i| format!(r#"{{"at_ms": {}, "dtmf": "9"}}"#, 100 + i * 10))
        .collect();
    let scenario = Scenario::parse(&format!(
        r#"{{"to": "1100", "from": "1001", "calling_device": "dev_alice",
            "caller": [{}, {{"at_ms": 5000, "hangup": true}}]}}"#,
        presses.join(", ")
    ))
    .unwrap();
    let trace = sim::run_one(&scenario, &account, Arc::new(modules), &options)
        .unwrap()
        .trace;
    let names: Vec<&str> = trace.events().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names.iter().filter(|n| **n == "dtmf").count(),
        5,
        "{names:?}"
    );
    let limits: Vec<_> = trace
        .events()
        .iter()
        .filter(|e| e.name == "limit")
        .collect();
    assert_eq!(limits.len(), 1, "{names:?}");
    assert_eq!(limits[0].fields["what"], "dtmf_digits");
    assert_eq!(limits[0].fields["max"], 5);
    // The hang-up still ends the call.
    assert_eq!(
        trace.events().last().unwrap().fields["reason"],
        "caller_hangup"
    );
}

/// With each call's reserve, a worker takes no more calls than its VM can
/// hold as they grow: the rest are refused at once, and every call it took
/// runs without an error.
#[test]
fn a_worker_admits_only_the_calls_its_vm_can_hold() {
    let (modules, account) = sample();
    let mut options = Options::default();
    options.limits.vm_memory_bytes = 6 << 20;
    options.limits.invoke_memory_bytes = 1 << 20;
    let host = Rc::new(ModuleHost::new(Arc::new(modules), options.limits).unwrap());
    let path = root().join("tests/scenarios/sample-ivr.json");
    let scenario = Scenario::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let traces = concurrently(&host, &account, vec![scenario; 1500], &options);
    let alone = simulate_file(&path).render_text();
    let capacity = options.limits.vm_memory_bytes / 4 * 3 / options.limits.call_reserve_bytes;
    // Call ids (in recording ids) differ; everything else is the call alone.
    let ids = regex::Regex::new(r"sim-\d+(-\d+)?-").unwrap();
    let unify = |text: &str| ids.replace_all(text, "sim-N-").into_owned();
    let mut taken = 0;
    for trace in &traces {
        let end = trace.events().last().unwrap();
        if end.fields["reason"] == "overload" {
            continue;
        }
        taken += 1;
        assert_eq!(unify(&trace.render_text()), unify(&alone));
    }
    assert!(
        taken > 0 && taken <= capacity,
        "{taken} calls taken, capacity {capacity}"
    );
}

/// The built-in modules and the sample account.
fn sample() -> (ModuleSet, Arc<callflow::catalog::AccountFlows>) {
    let (modules, _) = ModuleSet::load(&[] as &[PathBuf], 1);
    let (catalog, _) = Catalog::build(FlowsDir::new("flows").read().unwrap(), &modules);
    let account = Arc::clone(catalog.single_account().unwrap());
    (modules, account)
}
