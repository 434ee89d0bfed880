//! Embeds the built-in module scripts: lists `scripts/*.lua`,
//! `scripts/lib/*.lua` and `scripts/metaflows/*.lua` into `$OUT_DIR/builtin_scripts.rs` as
//! `(path, include_str!(..))` pairs, so adding a script file is all it takes
//! to ship a built-in module.
//!
//! Also stamps the build for `callflow --version`: `CALLFLOW_COMMIT` (the
//! short commit, `unknown` without git) and `CALLFLOW_BUILD_DATE` (from
//! `SOURCE_DATE_EPOCH` when set, else the commit's date, so that the same
//! commit builds the same binary; `unknown` when neither is known). Without
//! git, or outside a git checkout, the build goes on.

use std::fmt::Write;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

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

/// `git ARGS` in `root`, its trimmed output when it succeeds.
fn git(root: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Days since 1970-01-01 as a civil date (Howard Hinnant's algorithm).
fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Sets `CALLFLOW_COMMIT` and `CALLFLOW_BUILD_DATE` (see the file's doc).
fn stamp(root: &Path) {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // Only this checkout's own repository, not one that happens to hold
    // the sources (a vendored copy).
    let own = git(root, &["rev-parse", "--show-toplevel"])
        .and_then(|top| fs::canonicalize(top).ok())
        .zip(fs::canonicalize(root).ok())
        .is_some_and(|(top, root)| top == root);
    let commit = own
        .then(|| git(root, &["rev-parse", "--short", "HEAD"]))
        .flatten();
    if own {
        // A new commit re-runs this script: HEAD, the branch it names and
        // the packed refs.
        let mut watched: Vec<PathBuf> = Vec::new();
        if let Some(dir) = git(root, &["rev-parse", "--absolute-git-dir"]) {
            watched.push(Path::new(&dir).join("HEAD"));
        }
        if let Some(common) = git(root, &["rev-parse", "--git-common-dir"]) {
            let common = root.join(common);
            watched.push(common.join("packed-refs"));
            if let Some(branch) = git(root, &["symbolic-ref", "-q", "HEAD"]) {
                watched.push(common.join(branch));
            }
        }
        for path in watched.iter().filter(|p| p.exists()) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    let date = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|epoch| epoch.trim().parse::<i64>().ok())
        .map(|epoch| civil_date(epoch.div_euclid(86_400)))
        .or_else(|| {
            commit
                .as_ref()
                .and_then(|_| git(root, &["show", "-s", "--format=%ct", "HEAD"]))
                .and_then(|epoch| epoch.parse::<i64>().ok())
                .map(|epoch| civil_date(epoch.div_euclid(86_400)))
        });
    println!(
        "cargo:rustc-env=CALLFLOW_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    println!(
        "cargo:rustc-env=CALLFLOW_BUILD_DATE={}",
        date.as_deref().unwrap_or("unknown")
    );
}

fn main() {
    // Read when the script runs, not when it was compiled: a build script
    // compiled in one checkout and reused from a copied target directory
    // must still embed this checkout's scripts.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let root = manifest_dir.as_deref().unwrap_or(Path::new("."));
    stamp(root);
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
