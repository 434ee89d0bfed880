//! `tests/invalid/*.json`: one broken callflow document per file. Each is
//! loaded on its own (id = file stem) and its diagnostics are snapshotted in
//! the text form `callflow check` prints.

use std::fs;

use crate::support::{catalog_of, insta_settings};

#[test]
fn invalid_documents() {
    insta_settings().bind(|| {
        insta::glob!("../invalid", "*.json", |path| {
            let text = fs::read_to_string(path).unwrap();
            let stem = path.file_stem().unwrap().to_str().unwrap();
            let shown = format!("tests/invalid/{stem}.json");
            let (_, diagnostics) = catalog_of(&[(stem, &shown, &text)]);
            assert!(!diagnostics.is_empty(), "{shown} has no diagnostic");
            let rendered: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            insta::assert_snapshot!(rendered.join("\n\n"));
        });
    });
}
