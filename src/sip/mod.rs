//! SIP signalling for real calls, over rsipstack (transactions, dialogs,
//! UDP and TCP), behind this small interface: [`start`] binds the port and
//! hands each authorized INVITE to the caller as an [`Invite`]; a started
//! call is a [`Leg`] (ring, progress, answer, refuse, hang up) whose
//! [`LegEvent`]s say what the far end did. REGISTER, digest checks and
//! everything else SIP needs stay in here.
//!
//! * `digest.rs`: digest authentication (MD5, SHA-256), nonces, throttle.
//! * `registrar.rs`: registrations in memory.
//! * `server.rs`: the endpoint, the dispatcher, INVITEs in and out.
//! * `leg.rs`: a call leg: its requests, re-offers, session timers, REFER.
//!
//! rsipstack moves fast and breaks its API between minor versions: it is
//! pinned exactly and no type of it leaves this module.

pub mod digest;
mod leg;
pub mod registrar;
mod server;

use std::net::{IpAddr, SocketAddr};

pub use leg::Leg;
pub use registrar::Binding;
pub use server::{Dial, Invite, SipServer, start};

/// Settings of the SIP endpoint.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen, UDP and TCP on the same port (port 0: any free
    /// port, the same for both).
    pub listen: SocketAddr,
    /// What goes into Contact and SDP when it differs from the bound
    /// address (a server behind NAT).
    pub public_ip: Option<IpAddr>,
    /// Sources trusted to send calls without credentials (carriers).
    pub trunks: Vec<Trunk>,
    /// The `User-Agent` / `Server` name.
    pub user_agent: String,
    /// The digest challenges sent, in order (one header each). Answers
    /// with either algorithm are checked whatever the list says.
    pub digest: Vec<digest::Algorithm>,
    /// The session interval (RFC 4028) asked of the legs we call, in
    /// seconds; 0 asks for none.
    pub session_expires: u32,
    /// The shortest session interval accepted (`Min-SE`; shorter gets 422).
    pub min_session_expires: u32,
}

/// A trusted source: an address, or an address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trunk {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

impl Trunk {
    pub fn matches(&self, source: SocketAddr) -> bool {
        self.ip == source.ip() && self.port.is_none_or(|p| p == source.port())
    }
}

impl std::str::FromStr for Trunk {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(Self {
                ip: addr.ip(),
                port: Some(addr.port()),
            });
        }
        text.parse::<IpAddr>()
            .map(|ip| Self { ip, port: None })
            .map_err(|_| format!("{text:?} is not an IP address or IP:port"))
    }
}

/// A device's SIP credentials, as the flows say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCredentials {
    pub account: String,
    pub device: String,
    pub password: String,
    /// A disabled device is refused.
    pub enabled: bool,
}

/// Where the SIP layer looks up realms and devices (the live layer answers
/// from the current generation of flows).
pub trait Directory: Send + Sync + 'static {
    /// The realm to challenge a request for `domain` with (the domain of
    /// its From, or To for REGISTER); `None` when no account has it.
    fn realm(&self, domain: &str) -> Option<String>;
    /// The device whose `sip.username` is `username` in the account whose
    /// realm is `realm`.
    fn device(&self, realm: &str, username: &str) -> Option<DeviceCredentials>;
}

/// Who sent an INVITE that may run a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A device that authenticated.
    Device {
        account: String,
        device: String,
        username: String,
    },
    /// A trusted carrier (`--trunk`).
    Trunk { source: SocketAddr },
}

/// What an INVITE says about the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    /// The SIP Call-ID.
    pub sip_call_id: String,
    /// The user part of the Request-URI: the dialled number.
    pub dialled: String,
    /// The user part and display name of From.
    pub from_user: String,
    pub from_name: Option<String>,
    /// Where the INVITE came from.
    pub source: SocketAddr,
    /// `udp` or `tcp`.
    pub transport: &'static str,
    pub user_agent: Option<String>,
    /// The SDP offer, if the INVITE had one.
    pub sdp: Option<Vec<u8>>,
}

/// What the far end of a leg did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegEvent {
    /// The caller acknowledged our answer (ACK).
    Confirmed,
    /// A leg we called: it rings (a provisional response without SDP).
    Ringing,
    /// A leg we called: early media (a provisional response with SDP).
    Early(Vec<u8>),
    /// A leg we called: it answered (200, its SDP; we sent the ACK).
    Answered(Vec<u8>),
    /// A leg we called: a final failure response (code, reason phrase).
    Failed(u16, String),
    /// A digit sent by SIP INFO (`application/dtmf-relay` or
    /// `application/dtmf`).
    Dtmf(char),
    /// The SDP of the ACK, for a caller whose INVITE had no offer.
    AckSdp(Vec<u8>),
    /// A new offer in a re-INVITE or UPDATE, answered: what it agreed
    /// (a new address, or a hold: `recvonly`/`inactive` from our side).
    Reoffer(crate::media::Negotiated),
    /// The far end asks for a blind transfer to this number (REFER,
    /// accepted with 202): tell it how it went with [`Leg::notify_refer`].
    Refer(String),
    /// Progress of a REFER we sent: the status code its NOTIFY reports.
    ReferProgress(u16),
    /// The leg is over.
    Ended(EndedBy),
}

/// How a leg ended, from the far end's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedBy {
    /// BYE from the caller.
    Bye,
    /// CANCEL before the answer.
    Cancel,
    /// Our answer was never acknowledged (no ACK in 32 s).
    NoAck,
    /// Its session timer ran out unrefreshed (RFC 4028): we sent a BYE.
    Expired,
    /// We ended it (BYE or a final response).
    Us,
}

/// The SIP endpoint cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SipError {
    #[error("cannot listen for SIP on {addr}: {message}")]
    Bind { addr: SocketAddr, message: String },
}
