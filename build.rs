//! Embeds the built-in module scripts: lists `scripts/*.lua`,
//! `scripts/lib/*.lua` and `scripts/metaflows/*.lua` into `$OUT_DIR/builtin_scripts.rs` as
//! `(path, include_str!(..))` pairs, so adding a script file is all it takes
//! to ship a built-in module.

use std::fmt::Write;
use std::fs;
use std::path::Path;

fn lua_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| {
                    Path::new(name).extension().is_some_and(|e| e == "lua")
                        && !name.starts_with('.')
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scripts = root.join("scripts");
    println!("cargo:rerun-if-changed=scripts");
    println!("cargo:rerun-if-changed=scripts/lib");
    println!("cargo:rerun-if-changed=scripts/metaflows");
    let mut out = String::from("&[\n");
    for (dir, prefix) in [
        (scripts.clone(), ""),
        (scripts.join("lib"), "lib/"),
        (scripts.join("metaflows"), "metaflows/"),
    ] {
        for name in lua_files(&dir) {
            let path = dir.join(&name);
            let _ = writeln!(
                out,
                "    ({:?}, include_str!({:?})),",
                format!("{prefix}{name}"),
                path.display().to_string()
            );
        }
    }
    out.push_str("]\n");
    let target = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("builtin_scripts.rs");
    fs::write(target, out).expect("OUT_DIR is writable");
}
