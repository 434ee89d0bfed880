//! `tests/scenarios/*.json`: one simulated call per file. Each is simulated
//! twice (the traces must be byte-identical) and its text trace snapshotted.

use std::fs;

use crate::support::{insta_settings, simulate_file};

#[test]
fn scenarios() {
    let mut settings = insta_settings();
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        insta::glob!("../scenarios", "*.json", |path| {
            let text = fs::read_to_string(path).unwrap();
            let description =
                serde_json::from_str::<serde_json::Value>(&text).unwrap()["description"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
            let first = simulate_file(path);
            let second = simulate_file(path);
            assert_eq!(
                first.render_text(),
                second.render_text(),
                "{} is not deterministic",
                path.display()
            );
            assert_eq!(first.to_json(), second.to_json());
            let mut with_description = insta_settings();
            with_description.set_description(description);
            with_description.bind(|| insta::assert_snapshot!(first.render_text()));
        });
    });
}

/// insta keeps a snapshot's metadata when its trace is unchanged, so an
/// edited scenario description would stay stale in `snapshots/`: compare
/// them (refresh with `INSTA_FORCE_UPDATE=1 INSTA_UPDATE=always cargo test`).
#[test]
fn snapshot_descriptions_match_their_scenarios() {
    let root = crate::support::root();
    let mut stale = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(root.join("tests/scenarios"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    entries.sort();
    assert!(!entries.is_empty());
    for path in entries {
        let scenario: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        let wanted = scenario["description"].as_str().unwrap_or_default();
        let name = path.file_name().unwrap().to_string_lossy();
        let snap = root.join(format!("snapshots/scenarios@{name}.snap"));
        let Ok(text) = fs::read_to_string(&snap) else {
            // A missing snapshot is the scenario test's to report.
            continue;
        };
        let header = text.split("\n---\n").next().unwrap_or_default();
        let found = header
            .lines()
            .find_map(|line| line.strip_prefix("description: "))
            .map(|value| {
                if value.starts_with('"') {
                    serde_json::from_str::<String>(value).unwrap_or_else(|_| value.to_owned())
                } else {
                    value.to_owned()
                }
            })
            .unwrap_or_default();
        if found != wanted {
            stale.push(format!("{name}: snapshot has {found:?}"));
        }
    }
    assert!(
        stale.is_empty(),
        "snapshot descriptions differ from their scenarios (refresh with \
         INSTA_FORCE_UPDATE=1 INSTA_UPDATE=always cargo test):\n{}",
        stale.join("\n")
    );
}
