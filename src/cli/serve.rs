//! `callflow serve`: the REST API on the flows directory.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::{FlowsArgs, ScriptsArgs, report_problems};
use callflow::api::{self, AppState, Config};
use callflow::store::FlowsDir;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    listen: String,

    #[command(flatten)]
    flows: FlowsArgs,

    #[command(flatten)]
    scripts: ScriptsArgs,

    /// How long auth tokens live, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    token_ttl: u64,
}

pub fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let (modules, script_problems) = args.scripts.load(&[]);
    report_problems("the scripts", &script_problems);
    let config = Config {
        token_ttl: Duration::from_secs(args.token_ttl),
        ..Config::default()
    };
    let (state, flow_problems) =
        AppState::load(FlowsDir::new(&args.flows.flows), Arc::new(modules), config)
            .context("cannot load flows (choose the flows directory with --flows DIR)")?;
    report_problems("the flows", &flow_problems);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let address = listener.local_addr()?;
        eprintln!(
            "callflow: serving {} on http://{address}/v2 (Ctrl-C to stop)",
            args.flows.flows.display()
        );
        api::serve(listener, Arc::new(state), shutdown_signal())
            .await
            .context("the server failed")
    })?;
    eprintln!("callflow: stopped");
    Ok(ExitCode::SUCCESS)
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
