//! `callflow serve`: the REST API on the flows directory, with hot reload of
//! scripts and flows.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::{FlowsArgs, ScriptsArgs, report_problems};
use callflow::api::{self, AppState, Config};
use callflow::reload::{self, Outcome, Paths, Poller, Reloader};
use callflow::store::StoreError;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    pub listen: String,

    #[command(flatten)]
    pub flows: FlowsArgs,

    #[command(flatten)]
    pub scripts: ScriptsArgs,

    /// How long auth tokens live, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub token_ttl: u64,

    /// Neither watch nor poll the files: reload only on POST /v2/reload or
    /// SIGHUP (for production setups that deploy explicitly).
    #[arg(long)]
    pub no_watch: bool,

    /// How long a burst of file changes must settle before a reload, in
    /// milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub debounce_ms: u64,

    /// How often to compare the files' contents with the last reload's, for
    /// changes the watcher misses (network file systems); 0 turns it off.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub poll_s: u64,
}

pub fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let reloader = start(args)?;
    reloader.set_observer(Arc::new(print_reload));
    serve(args, &reloader)
}

/// Loads generation 1 (reporting its problems) and starts the watcher.
pub(super) fn start(args: &ServeArgs) -> anyhow::Result<Arc<Reloader>> {
    let paths = Paths {
        flows: args.flows.flows.clone(),
        scripts: args.scripts.scripts.clone(),
    };
    let (reloader, problems) = Reloader::load(paths)
        .context("cannot load flows (choose the flows directory with --flows DIR)")?;
    report_problems("the scripts and flows", &problems);
    Ok(Arc::new(reloader))
}

/// Serves until Ctrl-C or SIGTERM, reloading on file changes (unless
/// `--no-watch`), on the content-hash poll and on SIGHUP.
pub(super) fn serve(args: &ServeArgs, reloader: &Arc<Reloader>) -> anyhow::Result<ExitCode> {
    let _watcher = if args.no_watch {
        None
    } else {
        Some(
            reload::watch(
                Arc::clone(reloader),
                Duration::from_millis(args.debounce_ms),
            )
            .context("cannot watch the files (try --no-watch)")?,
        )
    };
    let _poller = if args.no_watch || args.poll_s == 0 {
        None
    } else {
        Some(
            Poller::start(Arc::clone(reloader), Duration::from_secs(args.poll_s))
                .context("cannot start the poller")?,
        )
    };
    let config = Config {
        token_ttl: Duration::from_secs(args.token_ttl),
        ..Config::default()
    };
    let state = Arc::new(AppState::new(Arc::clone(reloader), config));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let address = listener.local_addr()?;
        let watching = if args.no_watch {
            "reloads on POST /v2/reload or SIGHUP"
        } else {
            "watching the files"
        };
        eprintln!(
            "callflow: serving {} on http://{address}/v2, generation {} ({watching}; Ctrl-C to stop)",
            args.flows.flows.display(),
            reloader.current().number
        );
        reload_on_sighup(Arc::clone(reloader));
        api::serve(listener, state, shutdown_signal())
            .await
            .context("the server failed")
    })?;
    eprintln!("callflow: stopped");
    Ok(ExitCode::SUCCESS)
}

/// Prints a reload's result on the console.
pub(super) fn print_reload(trigger: &str, result: &Result<Outcome, StoreError>) {
    match result {
        Ok(Outcome::Published { generation }) => {
            eprintln!("callflow: reloaded ({trigger}): generation {generation}");
        }
        Ok(Outcome::Rejected { generation, errors }) => {
            eprintln!(
                "callflow: reload ({trigger}) rejected, calls stay on generation {generation}:"
            );
            for error in errors {
                eprintln!("{error}");
            }
        }
        Err(err) => eprintln!("callflow: reload ({trigger}) failed: {err}"),
    }
}

/// Reloads on SIGHUP (Unix).
fn reload_on_sighup(reloader: Arc<Reloader>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hangups.recv().await.is_some() {
            let reloader = Arc::clone(&reloader);
            let _ = tokio::task::spawn_blocking(move || reloader.reload("SIGHUP")).await;
        }
    });
    #[cfg(not(unix))]
    drop(reloader);
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
