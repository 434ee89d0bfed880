//! Repository rules (rust-analyzer's tidy checks): every Rust source file
//! opens with a `//!` paragraph; the Lua API's list, its documentation and
//! its type definitions agree; every script in `scripts/` is built in, and
//! every module (callflow and metaflow) has its README section.

use std::fs;
use std::path::Path;

use crate::support::root;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_source_file_says_what_it_owns() {
    let mut files = Vec::new();
    for dir in ["src", "tests/it", "benches"] {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(files.len() > 10);
    let missing: Vec<String> = files
        .iter()
        .filter(|path| !fs::read_to_string(path).unwrap().starts_with("//!"))
        .map(|path| path.strip_prefix(root()).unwrap().display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! header: {missing:?}"
    );
}

#[test]
fn the_api_docs_and_types_list_the_same_names() {
    use callflow::host::api::API;
    let readme = fs::read_to_string(root().join("scripts/README.md")).unwrap();
    let types = fs::read_to_string(root().join("scripts/callflow.d.luau")).unwrap();
    let headings: Vec<&str> = readme
        .lines()
        .filter_map(|line| line.strip_prefix("### `"))
        .filter_map(|rest| rest.strip_suffix('`'))
        .collect();
    let mut listed: Vec<&str> = API.iter().map(|item| item.name).collect();
    let mut documented = headings.clone();
    listed.sort_unstable();
    documented.sort_unstable();
    assert_eq!(
        documented, listed,
        "scripts/README.md headings vs host::api::API"
    );
    for item in API {
        let declared = if let Some(method) = item.name.strip_prefix("call:") {
            types.contains(&format!("function {method}(self"))
        } else if let Some(field) = item.name.strip_prefix("call.") {
            types.contains(&format!("\t{field}: "))
        } else if let Some(function) = item
            .name
            .strip_prefix("re.")
            .or_else(|| item.name.strip_prefix("calendar."))
        {
            types.contains(&format!("\t{function}: ("))
        } else {
            // require, print, math.random: Luau's own declarations.
            true
        };
        assert!(
            declared,
            "{} is not declared in scripts/callflow.d.luau",
            item.name
        );
        assert!(
            readme.contains(item.signature) || item.signature.starts_with("call."),
            "scripts/README.md does not show the signature {}",
            item.signature
        );
    }
}

#[test]
fn every_script_is_built_in() {
    use callflow::host::scripts::BUILTIN;
    let mut on_disk = Vec::new();
    for (dir, prefix) in [
        ("scripts", ""),
        ("scripts/lib", "lib/"),
        ("scripts/metaflows", "metaflows/"),
    ] {
        for entry in fs::read_dir(root().join(dir)).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if Path::new(&name).extension().is_some_and(|e| e == "lua") {
                on_disk.push(format!("{prefix}{name}"));
            }
        }
    }
    on_disk.sort();
    let mut built_in: Vec<String> = BUILTIN.iter().map(|(path, _)| (*path).to_owned()).collect();
    built_in.sort();
    assert_eq!(on_disk, built_in, "scripts/ vs host::scripts::BUILTIN");
}

/// The `#### <name>` headings of a `## <title>` chapter of scripts/README.md.
fn chapter_sections<'a>(readme: &'a str, title: &str) -> Vec<&'a str> {
    let (_, chapter) = readme
        .split_once(&format!("\n## {title}\n"))
        .unwrap_or_else(|| panic!("scripts/README.md has a \"{title}\" chapter"));
    let chapter = chapter.split("\n## ").next().unwrap_or_default();
    let mut sections: Vec<&str> = chapter
        .lines()
        .filter_map(|line| line.strip_prefix("#### "))
        .collect();
    sections.sort_unstable();
    sections
}

#[test]
fn every_built_in_module_has_a_readme_section() {
    use callflow::host::scripts::BUILTIN;
    let readme = fs::read_to_string(root().join("scripts/README.md")).unwrap();
    let mut modules: Vec<&str> = BUILTIN
        .iter()
        .filter_map(|(path, _)| path.strip_suffix(".lua"))
        .filter(|name| !name.contains('/'))
        .collect();
    modules.sort_unstable();
    assert_eq!(
        chapter_sections(&readme, "Built-in modules"),
        modules,
        "`#### <module>` sections in scripts/README.md vs scripts/*.lua"
    );
    let mut metaflows: Vec<&str> = BUILTIN
        .iter()
        .filter_map(|(path, _)| path.strip_prefix("metaflows/")?.strip_suffix(".lua"))
        .collect();
    metaflows.sort_unstable();
    assert_eq!(
        chapter_sections(&readme, "Metaflow modules"),
        metaflows,
        "`#### <module>` sections of \"Metaflow modules\" in scripts/README.md vs scripts/metaflows/*.lua"
    );
}

/// Every callflow module Kazoo has is built in, but `skel` (Kazoo's
/// template for writing modules, which does nothing).
#[test]
fn every_kazoo_module_is_built_in() {
    use callflow::host::scripts::BUILTIN;
    let built_in: Vec<&str> = BUILTIN
        .iter()
        .filter_map(|(path, _)| path.strip_suffix(".lua"))
        .filter(|name| !name.contains('/'))
        .collect();
    let missing: Vec<&&str> = callflow::model::kazoo::KAZOO_MODULES
        .iter()
        .filter(|name| **name != "skel" && !built_in.contains(name))
        .collect();
    assert!(
        missing.is_empty(),
        "Kazoo modules with no built-in script: {missing:?}"
    );
}
