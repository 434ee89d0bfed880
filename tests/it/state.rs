//! Module instances are shared between calls, so every way a module could
//! keep state is either refused when it loads or cannot be seen by the next
//! call (`tests/state/README.md`). One case per file, snapshotted.

use std::path::PathBuf;
use std::sync::Arc;

use callflow::host::{Loaded, ModuleHost, ModuleSet};
use callflow::sim::{self, Options, Scenario};

use crate::support::{catalog_with, insta_settings, run_local};

#[test]
fn state_cases() {
    let (modules, problems) = ModuleSet::load(&[PathBuf::from("tests/state")], 1);
    let modules = Arc::new(modules);
    insta_settings().bind(|| {
        insta::glob!("../state", "*.lua", |path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let output = run_case(&modules, &problems, &name);
            insta::assert_snapshot!(output);
        });
    });
}

fn run_case(
    modules: &Arc<ModuleSet>,
    problems: &[callflow::model::Diagnostic],
    name: &str,
) -> String {
    if let Some(Loaded::Broken(err)) = modules.module(name) {
        // The refusal is a diagnostic of the file that holds the state.
        assert!(
            problems
                .iter()
                .any(|d| d.file == err.file && d.message == err.message),
            "{name}: {problems:?}"
        );
        return format!(
            "refused at load\n{}:{}: {}\n",
            err.file,
            err.line.map_or_else(|| "?".to_owned(), |l| l.to_string()),
            err.message
        );
    }
    let callflow =
        format!(r#"{{"numbers": ["100"], "flow": {{"module": "{name}", "data": {{}}}}}}"#);
    let path = format!("tests/state/{name}.json");
    let (catalog, diags) = catalog_with(modules.as_ref(), &[("case", &path, &callflow)]);
    assert!(diags.iter().all(|d| !d.is_error()), "{name}: {diags:?}");
    let account = Arc::clone(catalog.single_account().unwrap());
    let host = ModuleHost::new(Arc::clone(modules), Options::default().limits).unwrap();
    let scenario = Scenario::parse(r#"{"to": "100"}"#).unwrap();
    // Two calls, one after the other, on one VM (one instance).
    let traces: Vec<String> = (0..2)
        .map(|index| {
            let outcome = run_local(sim::simulate(
                &scenario,
                &account,
                &host,
                &Options::default(),
                index,
            ));
            outcome.trace.render_text()
        })
        .collect();
    let unify = |trace: &str| trace.replace("sim-2", "sim-1");
    assert_eq!(
        unify(&traces[0]),
        unify(&traces[1]),
        "{name}: the second call saw what the first did"
    );
    format!(
        "loads; the second call's trace is the first's:\n{}",
        traces[0]
    )
}
