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
