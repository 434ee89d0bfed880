//! Real calls: the live backend of the call-control port, beside the
//! simulator. The SIP layer ([`crate::sip`]) hands over each authorized
//! INVITE; this module decides which account and number it is for,
//! negotiates media ([`crate::media`]), and runs the call on a worker
//! thread's Lua VM with the engine, the same way a simulated call runs,
//! recording the same trace. When the call ends, the trace is written under
//! `--traces` and listed by the calls API.
//!
//! * `backend.rs`: [`LiveBackend`], the verbs on a real leg.
//! * `workers.rs`: the threads that run calls (one Lua VM each).
//! * `record.rs`: taps that record or detect.
//! * `calls.rs`: the trace files and the index of recent calls.
//! * `directory.rs`: realms, devices and numbers, from the current
//!   generation of flows.
//! * `events.rs`: the bus real calls publish their events on (channel
//!   create, answer, destroy, callflow nodes); `hooks.rs`: Kazoo's
//!   webhooks, sent from it.
//! * `world.rs`: the calls running now, as the others see them;
//!   `crosscall.rs`: the verbs that reach across calls (pickup, park,
//!   wait, conference, eavesdrop).
//!
//! This is the one place (with the media sessions) that reads the wall
//! clock for calls: a real call's `t_ms` is milliseconds since its INVITE.

pub mod backend;
mod bridge;
pub mod calls;
mod camper;
mod carriers;
mod consult;
mod crosscall;
mod directory;
pub mod events;
pub mod hooks;
mod midcall;
mod record;
mod workers;
pub mod world;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;

pub use backend::LiveBackend;
pub use calls::{CallLog, CallSummary};
pub use directory::{FlowsDirectory, account_realm};

use crate::catalog::AccountFlows;
use crate::engine::CallFacts;
use crate::ids::DocId;
use crate::limits::Limits;
use crate::media::library::{self, Library};
use crate::media::session::MediaEvent;
use crate::media::{Offer, PortRange, Ports, sdp};
use crate::reload::Reloader;
use crate::routing::Inception;
use crate::sip::{self, Identity, Invite, LegEvent, SipServer};

/// What the far end did, from either the signalling or the media; and
/// what a leg a bridge called did (by the bridge's number for it).
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Leg(LegEvent),
    Media(MediaEvent),
    Peer(u64, PeerEvent),
    /// Another call of the server acted on this one.
    World(world::WorldEvent),
}

/// What a leg a bridge called did.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerEvent {
    Leg(LegEvent),
    Media(MediaEvent),
}

/// A recording a call made: its media document is written when the call
/// ends.
#[derive(Debug, Clone)]
pub struct Recording {
    pub id: String,
    pub file: PathBuf,
    pub name: Option<String>,
    pub duration_ms: u64,
}

/// How to run real calls.
#[derive(Debug, Clone)]
pub struct Options {
    /// The SIP endpoint (`--sip`, `--public-addr`, `--trunk`).
    pub sip: sip::Config,
    /// RTP ports (`--rtp-ports`), bound on the SIP address.
    pub rtp_ports: PortRange,
    /// Where traces of real calls go (`--traces`).
    pub traces: PathBuf,
    /// Where TTS renderings and downloaded media are cached.
    pub cache: PathBuf,
    /// Folders of system prompts, searched in order.
    pub prompts: Vec<PathBuf>,
    /// Threads running calls (each with its own Lua VM).
    pub workers: usize,
    pub limits: Limits,
    /// Let `http` and media URLs reach loopback and private addresses.
    pub allow_private_http: bool,
}

/// Real calls cannot start.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    Sip(#[from] sip::SipError),
    #[error("cannot start the call workers: {0}")]
    Workers(String),
    #[error("cannot use {path} for traces: {message}")]
    Traces { path: PathBuf, message: String },
    #[error(
        "--sip {0} listens on every address: give --public-addr IP, the address phones and carriers reach (it goes into Contact and SDP)"
    )]
    Address(SocketAddr),
}

/// The running real-call service.
pub struct Live {
    sip: Arc<SipServer>,
    calls: Arc<CallLog>,
    world: Arc<world::World>,
    events: events::Bus,
    hooks: Arc<hooks::Stats>,
    _workers: Arc<workers::Workers>,
    /// The runtime of the RTP sessions (taken on drop).
    media: Option<tokio::runtime::Runtime>,
}

impl Drop for Live {
    fn drop(&mut self) {
        // Dropped from async code (the server's runtime): a blocking
        // shutdown would panic there.
        if let Some(media) = self.media.take() {
            media.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("sip", &self.sip.local_addr())
            .finish_non_exhaustive()
    }
}

impl Live {
    /// Where SIP listens.
    pub fn sip_addr(&self) -> SocketAddr {
        self.sip.local_addr()
    }

    pub fn sip(&self) -> &Arc<SipServer> {
        &self.sip
    }

    pub fn calls(&self) -> &Arc<CallLog> {
        &self.calls
    }

    /// The calls running now.
    pub fn world(&self) -> &Arc<world::World> {
        &self.world
    }

    /// The bus of the calls' events (subscribe to hear them).
    pub fn events(&self) -> &events::Bus {
        &self.events
    }

    /// What became of the webhooks so far.
    pub fn hooks(&self) -> &Arc<hooks::Stats> {
        &self.hooks
    }
}

/// What every call of the service shares.
struct Service {
    reloader: Arc<Reloader>,
    sip: Arc<SipServer>,
    ports: Arc<Ports>,
    library: Arc<Library>,
    workers: Arc<workers::Workers>,
    calls: Arc<CallLog>,
    world: Arc<world::World>,
    events: events::Bus,
    options: Options,
    /// What goes into our SDP.
    media_ip: IpAddr,
    /// Signalling, files, processes.
    runtime: tokio::runtime::Handle,
    /// The RTP sessions, on threads of their own.
    media_runtime: tokio::runtime::Handle,
}

/// Asks for a higher priority for the RTP thread calling it (niceness
/// about -10), as media servers do; refused without root or
/// `CAP_SYS_NICE`, and then RTP runs at the normal priority.
fn raise_priority() {
    use thread_priority::{ThreadPriority, ThreadPriorityValue, set_current_thread_priority};
    if let Ok(value) = ThreadPriorityValue::try_from(75_u8)
        && let Err(e) = set_current_thread_priority(ThreadPriority::Crossplatform(value))
    {
        tracing::debug!("RTP thread priority left as it is: {e:?}");
    }
}

/// Starts SIP, the workers and the accept loop (on the current runtime).
pub async fn start(options: Options, reloader: Arc<Reloader>) -> Result<Live, LiveError> {
    if options.sip.listen.ip().is_unspecified() && options.sip.public_ip.is_none() {
        return Err(LiveError::Address(options.sip.listen));
    }
    let calls = Arc::new(
        CallLog::open(&options.traces).map_err(|e| LiveError::Traces {
            path: options.traces.clone(),
            message: e.to_string(),
        })?,
    );
    let directory = Arc::new(FlowsDirectory::new(Arc::clone(&reloader)));
    let (sip, invites) = sip::start(options.sip.clone(), directory).await?;
    let sip = Arc::new(sip);
    let workers = Arc::new(
        workers::Workers::start(options.workers.max(1), &reloader, options.limits)
            .map_err(LiveError::Workers)?,
    );
    let library = Arc::new(Library::new(library::Config {
        flows: reloader.paths().flows.clone(),
        cache: options.cache.clone(),
        prompts: options.prompts.clone(),
        allow_private_http: options.allow_private_http,
        tts: Arc::new(crate::media::tts::Espeak::default()),
    }));
    // RTP on its own thread, so that no SIP message, HTTP request or file
    // write delays a packet.
    let media = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("callflow-rtp")
        .on_thread_start(raise_priority)
        .enable_all()
        .build()
        .map_err(|e| LiveError::Workers(format!("the RTP runtime: {e}")))?;
    let bind_ip = sip.local_addr().ip();
    let world = Arc::new(world::World::default());
    let events = events::bus();
    let hooks = hooks::start(
        &events,
        Arc::clone(&reloader),
        hooks::Settings {
            allow_private: options.allow_private_http,
            ..hooks::Settings::default()
        },
    );
    let service = Arc::new(Service {
        sip: Arc::clone(&sip),
        ports: Arc::new(Ports::new(bind_ip, options.rtp_ports)),
        media_ip: options.sip.public_ip.unwrap_or(bind_ip),
        reloader,
        library,
        workers: Arc::clone(&workers),
        calls: Arc::clone(&calls),
        world: Arc::clone(&world),
        events: events.clone(),
        options,
        runtime: tokio::runtime::Handle::current(),
        media_runtime: media.handle().clone(),
    });
    service.world.set_placer(camper::placer(&service));
    tokio::spawn(accept_loop(service, invites));
    Ok(Live {
        sip,
        calls,
        world,
        events,
        hooks,
        _workers: workers,
        media: Some(media),
    })
}

async fn accept_loop(service: Arc<Service>, mut invites: mpsc::Receiver<Invite>) {
    while let Some(invite) = invites.recv().await {
        let service = Arc::clone(&service);
        tokio::spawn(async move { accept(&service, invite).await });
    }
}

/// An RTP socket for a leg we place, and what our offer says of it.
fn rtp_for_a_leg(ports: &Ports, ip: IpAddr) -> Option<(std::net::UdpSocket, sdp::Local)> {
    let socket = ports.bind().ok()?;
    let port = socket.local_addr().ok()?.port();
    let local = sdp::Local {
        ip,
        port,
        session_id: fastrand::u64(1..u64::MAX / 2),
        version: 1,
    };
    Some((socket, local))
}

/// A new 32-hex call id.
fn new_call_id() -> String {
    let mut bytes = [0_u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        bytes = fastrand::u128(..).to_le_bytes();
    }
    bytes.iter().fold(String::with_capacity(32), |mut hex, b| {
        use std::fmt::Write;
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

/// The caller id of an on-net call: `caller_id.internal` of the device,
/// its owner, then the account.
fn device_caller_id(account: &AccountFlows, device: &str) -> (Option<String>, Option<String>) {
    let device_doc = account.document("devices", device);
    let owner = device_doc
        .and_then(|d| d.body.get("owner_id"))
        .and_then(serde_json::Value::as_str)
        .and_then(|owner| account.document("users", owner));
    let mut account_doc = serde_json::Map::new();
    if let Some(caller_id) = &account.account.caller_id {
        account_doc.insert(
            "caller_id".into(),
            serde_json::Value::Object(caller_id.clone()),
        );
    }
    let bodies = [
        device_doc.map(|d| serde_json::Value::Object((*d.body).clone())),
        owner.map(|d| serde_json::Value::Object((*d.body).clone())),
        Some(serde_json::Value::Object(account_doc)),
    ];
    let field = |name: &str| {
        bodies.iter().flatten().find_map(|body| {
            body.pointer(&format!("/caller_id/internal/{name}"))
                .and_then(serde_json::Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        })
    };
    (field("name"), field("number"))
}

/// The RTP socket of an incoming call, what its offer agreed (none for an
/// INVITE without one) and our SDP (the answer, or our offer); else the
/// SIP refusal.
type LocalMedia = (
    std::net::UdpSocket,
    sdp::Local,
    Option<crate::media::Negotiated>,
    String,
);

fn local_media(service: &Service, offer: Option<&[u8]>) -> Result<LocalMedia, (u16, String)> {
    let agreed = match offer {
        Some(body) => match Offer::parse(body).and_then(|offer| offer.negotiate()) {
            Ok(agreed) => Some(agreed),
            Err(err) => return Err((488, format!("Not Acceptable Here ({err})"))),
        },
        None => None,
    };
    let Ok(socket) = service.ports.bind() else {
        return Err((503, "Service Unavailable (no RTP port)".to_owned()));
    };
    let Ok(local_port) = socket.local_addr().map(|a| a.port()) else {
        return Err((500, "Server Internal Error".to_owned()));
    };
    let local = sdp::Local {
        ip: service.media_ip,
        port: local_port,
        session_id: fastrand::u64(1..u64::MAX / 2),
        version: 1,
    };
    let our_sdp = match &agreed {
        Some(agreed) => sdp::answer(&local, agreed),
        None => sdp::offer(&local),
    };
    Ok((socket, local, agreed, our_sdp))
}

/// Decides where an INVITE goes and starts its call, or refuses it.
async fn accept(service: &Arc<Service>, invite: Invite) {
    let started = Instant::now();
    let started_at = jiff::Timestamp::now();
    let generation = service.reloader.current();
    let info = invite.info.clone();
    let Some((account, inception, calling_device)) = destination(&generation.catalog, &invite)
    else {
        return invite.refuse(404, "Not Found").await;
    };
    let (socket, local, agreed, our_sdp) = match local_media(service, info.sdp.as_deref()) {
        Ok(media) => media,
        Err((code, reason)) => return invite.refuse(code, &reason).await,
    };
    let (leg, leg_events) = match invite.start(local) {
        Ok(started) => started,
        Err(message) => {
            tracing::warn!("cannot start a call: {message}");
            return;
        }
    };
    launch(
        service,
        Launch {
            started,
            started_at,
            generation,
            account,
            inception,
            calling_device,
            delayed_offer: agreed.is_none(),
            info,
            leg,
            leg_events,
            socket,
            agreed,
            sdp: our_sdp,
            answered: false,
        },
    );
}

/// A call to start: its leg (an INVITE answered or to answer, or a leg
/// the server placed that answered: a callback), media and facts.
struct Launch {
    started: Instant,
    started_at: jiff::Timestamp,
    generation: Arc<crate::reload::Generation>,
    account: Arc<AccountFlows>,
    inception: Inception,
    calling_device: Option<String>,
    info: sip::CallInfo,
    leg: sip::Leg,
    leg_events: mpsc::UnboundedReceiver<LegEvent>,
    socket: std::net::UdpSocket,
    agreed: Option<crate::media::Negotiated>,
    /// Our SDP (the answer, or our offer).
    sdp: String,
    /// The INVITE had no offer: the ACK brings the answer.
    delayed_offer: bool,
    /// The leg is answered already (we placed it).
    answered: bool,
}

/// Starts a call on a worker: its media, its facts, its backend's context.
fn launch(service: &Arc<Service>, call: Launch) {
    let Launch {
        started,
        started_at,
        generation,
        account,
        inception,
        calling_device,
        info,
        leg,
        leg_events,
        socket,
        agreed,
        sdp: our_sdp,
        delayed_offer,
        answered,
    } = call;
    let (media_tx, media_events) = mpsc::unbounded_channel();
    let media = crate::media::session::start(socket, agreed, media_tx, &service.media_runtime);
    let far_end = Arc::new(backend::FarEnd::default());
    if answered {
        // We sent the ACK: a BYE need not wait for one.
        far_end.confirmed();
        media.send(crate::media::Control::Start);
    }
    let (events_tx, events) = merge(leg_events, media_events, Arc::clone(&far_end));
    let call_id = new_call_id();
    let (name, number) = match &calling_device {
        Some(device) => device_caller_id(&account, device),
        None => (None, None),
    };
    let from = number.unwrap_or_else(|| info.from_user.clone());
    let facts = CallFacts {
        call_id: call_id.clone(),
        to: info.dialled.clone(),
        from: from.clone(),
        caller_id_name: name
            .or_else(|| info.from_name.clone())
            .unwrap_or_else(|| from.clone()),
        inception,
        calling_device: calling_device.as_deref().and_then(|d| DocId::new(d).ok()),
        start_epoch_ms: started_at.as_millisecond(),
        seed: fastrand::u64(..),
    };
    let context = Arc::new(backend::Context {
        library: Arc::clone(&service.library),
        account: Arc::clone(&account),
        runtime: service.runtime.clone(),
        allow_private_http: service.options.allow_private_http,
        max_call_ms: service.options.limits.max_call_ms,
        max_dtmf_digits: service.options.limits.max_dtmf_digits,
        max_caller_events: service.options.limits.max_caller_events,
        sip: Arc::clone(&service.sip),
        catalog: Arc::clone(&generation.catalog),
        ports: Arc::clone(&service.ports),
        media_runtime: service.media_runtime.clone(),
        media_ip: service.media_ip,
        events: events_tx,
        world: Arc::clone(&service.world),
    });
    let notices = service.reloader.notices(account.account.id.as_str());
    let publisher = events::Publisher::new(
        service.events.clone(),
        events::Channel {
            account: account.account.id.clone(),
            call_id: call_id.clone(),
            inception: inception.as_str().to_owned(),
            caller_id_name: facts.caller_id_name.clone(),
            caller_id_number: facts.from.clone(),
            to: facts.to.clone(),
            authorizing_id: calling_device.clone(),
        },
    );
    let job = workers::CallJob {
        call_id,
        generation,
        account,
        facts,
        inception,
        info,
        leg,
        media,
        sdp: our_sdp,
        delayed_offer,
        answered,
        events,
        far_end,
        started,
        started_at,
        context,
        notices,
        log: Arc::clone(&service.calls),
        reloader: Arc::clone(&service.reloader),
        limits: service.options.limits,
        publisher,
    };
    service.workers.run(job);
}

/// The account an INVITE runs in, its inception and calling device: the
/// device's account, or for a trunk the account whose callflow claims the
/// E.164 number dialled.
fn destination(
    catalog: &crate::catalog::Catalog,
    invite: &Invite,
) -> Option<(Arc<AccountFlows>, Inception, Option<String>)> {
    match &invite.identity {
        Identity::Device {
            account, device, ..
        } => catalog
            .account(account)
            .map(|flows| (Arc::clone(flows), Inception::Onnet, Some(device.clone()))),
        Identity::Trunk { .. } => {
            let number = crate::routing::Normalizer::default().normalize(&invite.info.dialled);
            directory::number_owner(catalog, &number).map(|flows| (flows, Inception::Offnet, None))
        }
    }
}

/// One channel of what the far end does: the leg's events and the media's,
/// in the order they come; the far end's hang-up is also noted at once.
fn merge(
    mut leg_events: mpsc::UnboundedReceiver<LegEvent>,
    mut media_events: mpsc::UnboundedReceiver<MediaEvent>,
    far_end: Arc<backend::FarEnd>,
) -> (
    mpsc::UnboundedSender<Incoming>,
    mpsc::UnboundedReceiver<Incoming>,
) {
    let (events_tx, events) = mpsc::unbounded_channel();
    let leg_tx = events_tx.clone();
    let peers_tx = events_tx.clone();
    tokio::spawn(async move {
        while let Some(event) = leg_events.recv().await {
            match &event {
                LegEvent::Ended(by) => far_end.set(*by),
                LegEvent::Confirmed => far_end.confirmed(),
                _ => {}
            }
            if leg_tx.send(Incoming::Leg(event)).is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(event) = media_events.recv().await {
            if events_tx.send(Incoming::Media(event)).is_err() {
                break;
            }
        }
    });
    (peers_tx, events)
}
