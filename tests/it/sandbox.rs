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

    let shared = run_local(async {
        let tasks: Vec<_> = scenarios
            .iter()
            .cloned()
            .map(|scenario| {
                let host = Rc::clone(&host);
                let account = Arc::clone(&account);
                tokio::task::spawn_local(async move {
                    sim::simulate(&scenario, &account, host.as_ref(), &Options::default(), 0)
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
    });

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
