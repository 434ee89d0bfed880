//! `callflow init DIR`: scaffolds a project of one's own: its project file
//! (`callflow.toml`), flows with one account and a callflow, a custom module typed against the API's Luau
//! definitions (with editor settings), scenarios with their expectations, a
//! README and a CI workflow. The files are embedded in the binary
//! (`src/cli/templates/init/`), and a test runs `callflow test` on them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The project directory (created if missing; must be empty).
    #[arg(value_name = "DIR")]
    dir: PathBuf,

    /// Scaffold into a directory that is not empty, overwriting files of
    /// the same names (others are left alone).
    #[arg(long)]
    force: bool,
}

/// Every file of the scaffold: path relative to the project, contents.
pub const FILES: &[(&str, &str)] = &[
    ("README.md", include_str!("templates/init/README.md")),
    (
        "callflow.toml",
        include_str!("templates/init/callflow.toml"),
    ),
    (".luaurc", include_str!("templates/init/.luaurc")),
    (
        ".vscode/settings.json",
        include_str!("templates/init/.vscode/settings.json"),
    ),
    (
        ".vscode/extensions.json",
        include_str!("templates/init/.vscode/extensions.json"),
    ),
    (
        ".github/workflows/callflow.yml",
        include_str!("templates/init/.github/workflows/callflow.yml"),
    ),
    (
        "flows/demo/account.json",
        include_str!("templates/init/flows/demo/account.json"),
    ),
    (
        "flows/demo/callflows/main.json",
        include_str!("templates/init/flows/demo/callflows/main.json"),
    ),
    (
        "flows/demo/devices/dev_front.json",
        include_str!("templates/init/flows/demo/devices/dev_front.json"),
    ),
    (
        "flows/demo/devices/dev_manager.json",
        include_str!("templates/init/flows/demo/devices/dev_manager.json"),
    ),
    (
        "flows/demo/vmboxes/vm-main.json",
        include_str!("templates/init/flows/demo/vmboxes/vm-main.json"),
    ),
    (
        "scripts/greet.lua",
        include_str!("templates/init/scripts/greet.lua"),
    ),
    ("scripts/callflow.d.luau", super::types::DEFINITIONS),
    (
        "tests/front-desk.json",
        include_str!("templates/init/tests/front-desk.json"),
    ),
    (
        "tests/front-desk.trace",
        include_str!("templates/init/tests/front-desk.trace"),
    ),
    (
        "tests/vip.json",
        include_str!("templates/init/tests/vip.json"),
    ),
];

pub fn run(args: &InitArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.dir;
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() && !args.force {
                bail!(
                    "{} is not empty: choose a new directory, or add --force to write the scaffold's files into it (overwriting files of the same names)",
                    dir.display()
                );
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => bail!(
            "cannot use {} as the project directory: {err}",
            dir.display()
        ),
    }
    for (path, contents) in FILES {
        write(&dir.join(path), contents)?;
    }
    println!(
        "created a callflow project in {}: {} files\n\nnext:\n  cd {}\n  callflow test              # run the scenarios under tests/\n  callflow test --coverage   # and see what they do not reach\n  callflow dev               # serve, reload on save, re-run the scenarios\n\ncallflow.toml names the project's directories; README.md says more.",
        dir.display(),
        FILES.len(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create the directory {}", parent.display()))?;
    }
    callflow::store::write_file(path, contents)
        .with_context(|| format!("cannot write {}", path.display()))
}
