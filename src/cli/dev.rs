//! `callflow dev`: the server plus the edit-save-hear loop. At start and
//! after every change of a script, a flow document or a scenario, it
//! re-runs the scenarios the change can affect and reports them as
//! `callflow test` does (see [`super::dev_tests`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use notify_debouncer_full::notify::RecursiveMode;

use super::dev_tests::{self, DevTests};
use super::serve::{self, ServeArgs};

#[derive(Debug, Args)]
pub struct DevArgs {
    /// The directory searched (recursively) for *.json scenarios, re-run
    /// when what they depend on changes. Default: callflow.toml's first
    /// `tests`, else tests.
    #[arg(long, value_name = "DIR")]
    tests: Option<PathBuf>,

    #[command(flatten)]
    serve: ServeArgs,
}

impl DevArgs {
    /// What the command line left out, from the project file.
    pub(super) fn apply(&mut self, project: &super::Project) {
        if self.tests.is_none() {
            self.tests = project.tests.first().cloned();
        }
        self.serve.apply(project);
    }
}

pub fn run(args: &DevArgs) -> anyhow::Result<ExitCode> {
    let reloader = serve::start(&args.serve)?;
    let tests_dir = args.tests.clone().unwrap_or_else(|| PathBuf::from("tests"));
    let mut tests = DevTests::new(&tests_dir, args.serve.flows.dir(), &args.serve.scripts);
    eprintln!("callflow dev: watching {}", tests.watched());
    if !tests_dir.is_dir() {
        eprintln!(
            "callflow dev: no tests directory {}: no scenarios to run",
            tests_dir.display()
        );
    }
    let (poke, pokes) = mpsc::channel::<()>();
    let mut watch = if args.serve.no_watch {
        None
    } else {
        let debounce = Duration::from_millis(args.serve.debounce_ms);
        Some(
            dev_tests::watch(&tests, debounce, poke.clone())
                .context("cannot watch the files (try --no-watch)")?,
        )
    };
    // The first round runs once the watcher is on, so that no save made
    // after its results are printed can go unseen.
    let added = tests
        .round(&mut anstream::stderr())
        .context("cannot write the results")?;
    watch_more(watch.as_mut(), added);
    // Every reload (the server's watcher, its poll, SIGHUP, an API write)
    // is a reason to look too: a round with nothing new prints nothing.
    reloader.set_observer(Arc::new(move |trigger, result| {
        serve::print_reload(trigger, result);
        let _ = poke.send(());
    }));
    std::thread::Builder::new()
        .name("callflow-dev-tests".into())
        .spawn(move || {
            while pokes.recv().is_ok() {
                // One round for a burst of pokes.
                while pokes.try_recv().is_ok() {}
                match tests.round(&mut anstream::stderr()) {
                    Ok(added) => watch_more(watch.as_mut(), added),
                    Err(err) => tracing::warn!("callflow dev: cannot write the results: {err}"),
                }
            }
        })
        .context("cannot start the test thread")?;
    serve::serve(&args.serve, &reloader)
}

/// Watches directories a scenario named since the watcher started.
fn watch_more(watch: Option<&mut dev_tests::Watch>, dirs: Vec<PathBuf>) {
    let Some(watch) = watch else { return };
    for dir in dirs {
        if let Err(err) = watch.watch(&dir, RecursiveMode::Recursive) {
            tracing::warn!("cannot watch {}: {err}", dir.display());
        }
    }
}
