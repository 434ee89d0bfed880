//! `callflow serve`: the REST API on the flows directory, with hot reload of
//! scripts and flows.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use callflow::store::FlowsDir;
use clap::Args;

use super::{FlowsArgs, ScriptsArgs, report_problems};
use callflow::api::{self, AppState, Config};
use callflow::live;
use callflow::media::PortRange;
use callflow::reload::{self, Outcome, Paths, Poller, Reloader};
use callflow::sip::digest::Algorithm;
use callflow::sip::{self, Trunk};
use callflow::store::StoreError;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port). Default:
    /// callflow.toml's `serve.listen`, else 127.0.0.1:8000.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

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

    /// A file holding the operator's key (its first line; keep it
    /// private). `PUT /v2/api_auth` with that key gives an operator token,
    /// the only one `POST /v2/reload` (reloading every account) accepts and
    /// the only one that sees every account's reload errors. Without it
    /// `POST /v2/reload` answers 403 to every token: reload with SIGHUP or
    /// the file watcher.
    #[arg(long, value_name = "FILE")]
    pub operator_key_file: Option<PathBuf>,

    /// Seconds a client may take to send a request's headers (idle
    /// keep-alive connections too); then the connection is closed.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_s: u64,

    /// Seconds a client may take to send a request's body once its headers
    /// are in; then 408 and the connection is closed.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_s: u64,

    /// Simulations (`POST .../simulate`) the server handles at once, all
    /// accounts together; past it they are refused with 503.
    #[arg(long, value_name = "N", default_value_t = callflow::api::DEFAULT_MAX_SIMULATIONS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4096))]
    pub max_simulations: usize,

    #[command(flatten)]
    pub sip: SipArgs,
}

/// Real calls: a SIP endpoint and registrar (off unless `--sip` is given).
#[derive(Debug, Args)]
#[command(next_help_heading = "Real calls (SIP)")]
pub struct SipArgs {
    /// Answer SIP on this address, UDP and TCP on the same port
    /// (127.0.0.1:5060; port 0 picks a free one). Off unless given.
    #[arg(long, value_name = "ADDR")]
    pub sip: Option<SocketAddr>,

    /// The UDP ports RTP may use (even ones are bound). Default:
    /// callflow.toml's `serve.rtp_ports`, else 16384-32767.
    #[arg(long, value_name = "LOW-HIGH")]
    pub rtp_ports: Option<PortRange>,

    /// The address that goes into Contact and SDP when it differs from the
    /// bound one (a server behind NAT).
    #[arg(long, value_name = "IP")]
    pub public_addr: Option<IpAddr>,

    /// A source trusted to send calls without credentials (a carrier): an
    /// IP, or IP:port. Repeatable. Its calls are off-net, routed by the
    /// E.164 number dialled.
    #[arg(long, value_name = "ADDR")]
    pub trunk: Vec<Trunk>,

    /// Where the traces of real calls go
    /// (<DIR>/<account>/<YYYY-MM-DD>/<call-id>.json); default
    /// callflow.toml's `traces`, else `traces` beside the flows directory.
    #[arg(long, value_name = "DIR")]
    pub traces: Option<PathBuf>,

    /// A folder of system prompts (<name>.wav), searched before the
    /// built-in prompt map. Repeatable.
    #[arg(long, value_name = "DIR")]
    pub prompts: Vec<PathBuf>,

    /// The digest algorithms challenges offer, in order: md5, sha-256, or
    /// both (`sha-256,md5`: RFC 8760). Answers with either are accepted
    /// whatever this says. Some SIP stacks (baresip 1.0) fail on any
    /// SHA-256 challenge, hence MD5 alone by default.
    #[arg(long, value_name = "ALGS", default_value = "md5", value_parser = parse_digest)]
    pub digest: Algorithms,

    /// Threads running calls, each with its own Lua VM (default: one per
    /// core).
    #[arg(long, value_name = "N")]
    pub call_workers: Option<usize>,

    /// Let `http` requests and media URLs of real calls reach loopback,
    /// private and link-local addresses, and let API writes save URL
    /// fields (`pivot.voice_url`, `webhook.uri`, ...) that name them (else
    /// a 400 `internal_url`). For lab setups.
    #[arg(long)]
    pub allow_private_http: bool,

    /// Real calls each call worker runs at once; one more is refused
    /// (503, trace `end` reason `overload`). Default: no limit but each
    /// worker's memory (a worker whose Lua heap stays over three quarters
    /// of its cap refuses new calls too).
    #[arg(long, value_name = "N")]
    pub max_calls: Option<usize>,

    /// The session interval (RFC 4028 session timers) asked of the phones
    /// and carriers we call, in seconds: the session is refreshed (a
    /// re-INVITE) every half interval by whichever side the answer names;
    /// 0 asks for none.
    #[arg(long, value_name = "SECONDS", default_value_t = 1800)]
    pub session_expires: u32,

    /// The shortest session interval accepted from a caller (`Min-SE`):
    /// shorter ones get 422.
    #[arg(long, value_name = "SECONDS", default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..))]
    pub min_session_expires: u32,
}

/// Digest algorithms, in the order challenges offer them.
#[derive(Debug, Clone)]
pub struct Algorithms(Vec<Algorithm>);

fn parse_digest(text: &str) -> Result<Algorithms, String> {
    let mut out = Vec::new();
    for name in text.split(',').map(str::trim) {
        let algorithm = Algorithm::parse(name)
            .ok_or_else(|| format!("unknown digest algorithm {name:?} (md5, sha-256)"))?;
        if !out.contains(&algorithm) {
            out.push(algorithm);
        }
    }
    Ok(Algorithms(out))
}

impl SipArgs {
    /// The real-call options, when `--sip` is given.
    pub fn options(&self, flows: &Path) -> Option<live::Options> {
        let listen = self.sip?;
        let beside_flows = flows
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let traces = self
            .traces
            .clone()
            .unwrap_or_else(|| beside_flows.join("traces"));
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir)
            .join("callflow");
        Some(live::Options {
            sip: sip::Config {
                listen,
                public_ip: self.public_addr,
                trunks: self.trunk.clone(),
                user_agent: format!("callflow/{}", env!("CARGO_PKG_VERSION")),
                digest: self.digest.0.clone(),
                session_expires: self.session_expires,
                min_session_expires: self.min_session_expires,
            },
            rtp_ports: self.rtp_ports.unwrap_or_default(),
            traces,
            cache,
            prompts: self.prompts.clone(),
            workers: self.call_workers.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
            }),
            limits: callflow::limits::Limits {
                max_calls: self.max_calls.unwrap_or(0),
                ..callflow::limits::Limits::default()
            },
            allow_private_http: self.allow_private_http,
        })
    }
}

/// The address `serve` listens on when neither a flag nor the project
/// file says.
const DEFAULT_LISTEN: &str = "127.0.0.1:8000";

impl ServeArgs {
    /// What the command line left out, from the project file: its flows,
    /// scripts and traces, and its `[serve]` table.
    pub(super) fn apply(&mut self, project: &super::Project) {
        let serve = &project.serve;
        self.flows.apply(project);
        self.scripts.apply(project);
        if self.listen.is_none() {
            self.listen.clone_from(&serve.listen);
        }
        if self.operator_key_file.is_none() {
            self.operator_key_file.clone_from(&serve.operator_key_file);
        }
        let sip = &mut self.sip;
        sip.sip = sip.sip.or(serve.sip);
        sip.public_addr = sip.public_addr.or(serve.public_addr);
        sip.rtp_ports = sip.rtp_ports.or(serve.rtp_ports);
        if sip.trunk.is_empty() {
            sip.trunk.clone_from(&serve.trunks);
        }
        if sip.prompts.is_empty() {
            sip.prompts.clone_from(&serve.prompts);
        }
        if sip.traces.is_none() {
            sip.traces.clone_from(&project.traces);
        }
    }

    /// The address to listen on.
    fn listen(&self) -> &str {
        self.listen.as_deref().unwrap_or(DEFAULT_LISTEN)
    }
}

pub fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    // Temporary files of writes a crash interrupted: never acknowledged, so
    // nothing is lost by removing them (said once, on the console).
    for path in FlowsDir::new(args.flows.dir()).sweep_leftovers() {
        eprintln!(
            "removed {}: the temporary file of a write that never finished",
            path.display()
        );
    }
    let reloader = start(args)?;
    reloader.set_observer(Arc::new(print_reload));
    serve(args, &reloader)
}

/// Loads generation 1 (reporting its problems) and starts the watcher.
pub(super) fn start(args: &ServeArgs) -> anyhow::Result<Arc<Reloader>> {
    let paths = Paths {
        flows: args.flows.dir().to_path_buf(),
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
    let mut config = Config {
        token_ttl: Duration::from_secs(args.token_ttl),
        header_timeout: Duration::from_secs(args.header_timeout_s),
        body_timeout: Duration::from_secs(args.body_timeout_s),
        max_simulations: args.max_simulations,
        allow_private_urls: args.sip.allow_private_http,
        ..Config::default()
    };
    if let Some(file) = &args.operator_key_file {
        config = config.with_operator_key(&operator_key(file)?);
    }
    let state = Arc::new(AppState::new(Arc::clone(reloader), config));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen())
            .await
            .with_context(|| format!("cannot listen on {}", args.listen()))?;
        let address = listener.local_addr()?;
        reload_on_sighup(Arc::clone(reloader));
        let _live = match args.sip.options(args.flows.dir()) {
            Some(options) => {
                let traces = options.traces.clone();
                let live = live::start(options, Arc::clone(reloader))
                    .await
                    .context("cannot start real calls")?;
                eprintln!(
                    "callflow: SIP on {} (UDP and TCP), traces of real calls in {}",
                    live.sip_addr(),
                    traces.display()
                );
                state.set_live(&live);
                Some(live)
            }
            None => None,
        };
        let watching = if args.no_watch {
            "reloads on POST /v2/reload or SIGHUP"
        } else {
            "watching the files"
        };
        eprintln!(
            "callflow: serving {} on http://{address}/v2, generation {} ({watching}; Ctrl-C to stop)",
            args.flows.dir().display(),
            reloader.current().number
        );
        api::serve(listener, state, shutdown_signal())
            .await
            .context("the server failed")
    })?;
    eprintln!("callflow: stopped");
    Ok(ExitCode::SUCCESS)
}

/// The operator's key: the first line of `file`, at least 16 characters.
fn operator_key(file: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the operator key file {}", file.display()))?;
    let key = text.lines().next().unwrap_or_default().trim().to_owned();
    anyhow::ensure!(
        key.chars().count() >= 16,
        "the operator key in {} is shorter than 16 characters (try `openssl rand -hex 32`)",
        file.display()
    );
    Ok(key)
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
