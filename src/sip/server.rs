//! The SIP endpoint: transports, the dispatcher of incoming transactions,
//! REGISTER, the authorization of INVITEs, and the call [`Leg`].

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use rsipstack::EndpointBuilder;
use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::platform::CancellationToken;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::tcp_listener::TcpListenerConnection;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipAddr, SipConnection, TransportLayer};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::digest::{self, Credentials, NonceCheck, Nonces, Throttle};
use super::leg::{Leg, Timer, session_timer_of, status};
use super::registrar::{self, Binding, Change, Registrations};
use super::{CallInfo, Config, Directory, Identity, LegEvent, SipError};

/// Methods we answer.
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REGISTER, UPDATE";

/// INVITEs waiting for the live layer, at most.
const PENDING_INVITES: usize = 1024;

/// The running SIP endpoint.
pub struct SipServer {
    shared: Arc<Shared>,
    cancel: CancellationToken,
}

impl std::fmt::Debug for SipServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipServer")
            .field("local", &self.shared.local)
            .finish_non_exhaustive()
    }
}

struct Shared {
    config: Config,
    directory: Arc<dyn Directory>,
    layer: Arc<DialogLayer>,
    local: SocketAddr,
    auth: Mutex<Auth>,
    registrations: Mutex<Registrations>,
    invites: mpsc::Sender<Invite>,
}

#[derive(Default)]
struct Auth {
    nonces: Nonces,
    throttle: Throttle,
}

impl SipServer {
    /// The address SIP listens on (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// Live registrations of an account (of all with `None`).
    pub fn registrations(&self, account: Option<&str>) -> Vec<Binding> {
        self.shared
            .registrations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .list(account, Instant::now())
    }

    /// The live contacts of a device (for calls to it).
    pub fn contacts(&self, account: &str, device: &str) -> Vec<Binding> {
        self.shared
            .registrations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contacts(account, device, Instant::now())
    }

    /// Places a call (an INVITE with our SDP offer): returns the leg and
    /// the channel of what its far end does (ringing, early media, the
    /// answer or the failure, then digits and its hang-up). A 401/407 is
    /// answered with `dial.credential` when given.
    pub fn dial(&self, dial: &Dial) -> Result<(Leg, mpsc::UnboundedReceiver<LegEvent>), String> {
        let shared = &self.shared;
        let host = contact_host(shared);
        let uri =
            |text: &str| rsipstack::sip::Uri::try_from(text).map_err(|e| format!("{text:?}: {e}"));
        let to = uri(&dial.uri)?;
        let from = uri(&format!("sip:{}@{host}", dial.from_user))?;
        let contact = uri(&contact_uri(shared))?;
        let destination = dial.destination.map(|(addr, transport)| SipAddr {
            r#type: Some(if transport == "tcp" {
                rsipstack::sip::Transport::Tcp
            } else {
                rsipstack::sip::Transport::Udp
            }),
            addr: addr.into(),
        });
        let mut headers: Vec<Header> = dial
            .headers
            .iter()
            .map(|(name, value)| Header::Other(name.clone(), value.clone()))
            .collect();
        let asked = shared.config.session_expires;
        if asked > 0 {
            let min = shared.config.min_session_expires;
            headers.push(Header::Supported("timer".into()));
            headers.push(Header::Other(
                "Session-Expires".into(),
                asked.max(min).to_string(),
            ));
            headers.push(Header::Other("Min-SE".into(), min.to_string()));
        }
        let offer = crate::media::sdp::offer_of(
            &dial.local,
            &dial.codecs,
            crate::media::sdp::Direction::SendRecv,
        );
        let option = InviteOption {
            caller_display_name: dial.from_display.clone(),
            caller: from,
            callee: to,
            destination,
            content_type: Some("application/sdp".to_owned()),
            offer: Some(offer.clone().into_bytes()),
            contact,
            credential: dial
                .credential
                .as_ref()
                .map(|(username, password)| Credential {
                    username: username.clone(),
                    password: password.clone(),
                    realm: None,
                    ..Credential::default()
                }),
            headers: Some(headers),
            ..InviteOption::default()
        };
        let layer = Arc::clone(&shared.layer);
        let (state_tx, states) = layer.new_dialog_state_channel();
        let (dialog, _outcome) = layer
            .do_invite_async(option, state_tx)
            .map_err(|e| e.to_string())?;
        Ok(Leg::start(
            layer,
            dialog,
            states,
            dial.local,
            Some(offer),
            None,
        ))
    }

    /// Stops the endpoint (transports close).
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }
}

impl Drop for SipServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Binds UDP and TCP on `config.listen` and serves: REGISTER, OPTIONS and
/// in-dialog requests here; each INVITE allowed to run a flow goes out on
/// the returned channel.
pub async fn start(
    config: Config,
    directory: Arc<dyn Directory>,
) -> Result<(SipServer, mpsc::Receiver<Invite>), SipError> {
    let bind_error = |message: String| SipError::Bind {
        addr: config.listen,
        message,
    };
    let cancel = CancellationToken::new();
    let transport = TransportLayer::new(cancel.clone());
    let external = |port: u16| config.public_ip.map(|ip| SocketAddr::new(ip, port));
    // Port 0 lets the kernel pick a UDP port whose TCP twin may be taken
    // (say, the source port of an outgoing connection): pick again.
    let attempts = if config.listen.port() == 0 { 20 } else { 1 };
    let mut bound = Err(String::new());
    for _ in 0..attempts {
        let udp = UdpConnection::create_connection(config.listen, None, Some(cancel.child_token()))
            .await
            .map_err(|e| bind_error(e.to_string()))?;
        let local = udp
            .get_addr()
            .get_socketaddr()
            .map_err(|e| bind_error(e.to_string()))?;
        let local = SocketAddr::new(config.listen.ip(), local.port());
        // The TCP listener binds when the endpoint starts: check the port
        // now, so that a taken port is a clear error rather than a log line.
        bound = match std::net::TcpListener::bind(local) {
            Ok(_) => Ok((udp, local)),
            Err(e) => Err(format!("TCP: {e}")),
        };
        if bound.is_ok() {
            break;
        }
    }
    let (udp, local) = bound.map_err(bind_error)?;
    let udp = if config.public_ip.is_some() {
        drop(udp);
        UdpConnection::create_connection(local, external(local.port()), Some(cancel.child_token()))
            .await
            .map_err(|e| bind_error(e.to_string()))?
    } else {
        udp
    };
    transport.add_transport(udp.into());
    let tcp = TcpListenerConnection::new(local, external(local.port()))
        .await
        .map_err(|e| bind_error(format!("TCP: {e}")))?;
    transport.add_transport(tcp.into());
    let endpoint = EndpointBuilder::new()
        .with_cancel_token(cancel.clone())
        .with_transport_layer(transport)
        .with_user_agent(&config.user_agent)
        .build();
    let incoming = endpoint
        .incoming_transactions()
        .map_err(|e| bind_error(e.to_string()))?;
    let layer = Arc::new(DialogLayer::new(endpoint.inner.clone()));
    let (invites, invites_rx) = mpsc::channel(PENDING_INVITES);
    let shared = Arc::new(Shared {
        config,
        directory,
        layer,
        local,
        auth: Mutex::new(Auth::default()),
        registrations: Mutex::new(Registrations::default()),
        invites,
    });
    tokio::spawn(async move { endpoint.serve().await });
    tokio::spawn(dispatch(Arc::clone(&shared), incoming));
    Ok((SipServer { shared, cancel }, invites_rx))
}

/// Hands every new transaction to its handler, each in its own task.
async fn dispatch(shared: Arc<Shared>, mut incoming: rsipstack::transaction::TransactionReceiver) {
    while let Some(tx) = incoming.recv().await {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move { handle(shared, tx).await });
    }
}

fn source_of(tx: &Transaction) -> Option<SocketAddr> {
    let connection = tx.connection.as_ref()?;
    connection.get_remote_addr()?.get_socketaddr().ok()
}

fn transport_of(tx: &Transaction) -> &'static str {
    match tx.connection.as_ref().map(SipConnection::transport) {
        Some(rsipstack::sip::Transport::Tcp) => "tcp",
        _ => "udp",
    }
}

fn has_to_tag(tx: &Transaction) -> bool {
    tx.original
        .to_header()
        .ok()
        .and_then(|to| to.tag().ok().flatten())
        .is_some()
}

async fn handle(shared: Arc<Shared>, mut tx: Transaction) {
    let in_dialog = has_to_tag(&tx);
    let method = tx.original.method;
    // What rsipstack's lenient parser lets through (nothing answers an ACK).
    if method != Method::Ack
        && let Some(refusal) = malformed(&tx.original)
    {
        let _ = tx.reply(refusal).await;
        if method == Method::Invite {
            finish(&mut tx).await;
        }
        return;
    }
    if in_dialog {
        match shared.layer.match_dialog(&tx) {
            Some(mut dialog) => {
                let _ = dialog.handle(&mut tx).await;
            }
            None if method == Method::Ack => {}
            None => {
                let _ = tx.reply(StatusCode::CallTransactionDoesNotExist).await;
            }
        }
        return;
    }
    match method {
        Method::Register => register(&shared, tx).await,
        Method::Invite => invite(&shared, tx).await,
        Method::Options => {
            let _ = tx
                .reply_with(
                    StatusCode::OK,
                    vec![
                        Header::Other("Allow".into(), ALLOW.into()),
                        Header::Other("Accept".into(), "application/sdp".into()),
                    ],
                    None,
                )
                .await;
        }
        Method::Ack => {}
        Method::Bye | Method::Info | Method::Update => {
            let _ = tx.reply(StatusCode::CallTransactionDoesNotExist).await;
        }
        _ => {
            let _ = tx
                .reply_with(
                    StatusCode::MethodNotAllowed,
                    vec![Header::Other("Allow".into(), ALLOW.into())],
                    None,
                )
                .await;
        }
    }
}

/// Why a request that parsed must still be refused: a SIP version other
/// than 2.0 (505), a `CSeq` whose method is not the request's (RFC 3261
/// §8.1.1.5: 400), a Content-Length that is not a number or promises more
/// than the message holds (§18.3: 400), control characters in a header
/// (400). rsipstack reads such a Content-Length as 0 or cuts the body
/// short, and keeps the rest.
fn malformed(request: &rsipstack::sip::Request) -> Option<StatusCode> {
    if request.version != rsipstack::sip::Version::V2 {
        return Some(StatusCode::VersionNotSupported);
    }
    let cseq_method = request.cseq_header().ok().and_then(|c| c.method().ok());
    if cseq_method.is_some_and(|m| m != request.method) {
        return Some(status(400, "Bad Request (CSeq method)"));
    }
    if let Some(declared) = request.header_value("Content-Length") {
        match declared.parse::<usize>() {
            Ok(length) if length <= request.body.len() => {}
            _ => return Some(status(400, "Bad Request (Content-Length)")),
        }
    }
    let control = |text: &str| text.chars().any(|c| c.is_control() && c != '\t');
    if request
        .headers
        .iter()
        .any(|h| control(h.name()) || control(h.value()))
    {
        return Some(status(400, "Bad Request (control characters in a header)"));
    }
    None
}

/// The user and host of a header's URI (From, To).
fn user_and_host(value: &str) -> (String, String, Option<String>) {
    match rsipstack::sip::typed::From::parse(value) {
        Ok(parsed) => (
            parsed.uri.auth.map(|a| a.user).unwrap_or_default(),
            parsed.uri.host_with_port.host.to_string(),
            parsed.display_name.filter(|n| !n.is_empty()),
        ),
        Err(_) => (String::new(), String::new(), None),
    }
}

/// The credentials of a request: the header the challenge asked for
/// (`Proxy-Authorization` for INVITE), else the other one.
fn credentials_of(tx: &Transaction, proxy: bool) -> Option<Credentials> {
    let find = |want_proxy: bool| {
        tx.original.headers.iter().find_map(|h| match h {
            Header::ProxyAuthorization(v) if want_proxy => Some(v.value().to_owned()),
            Header::Authorization(v) if !want_proxy => Some(v.value().to_owned()),
            _ => None,
        })
    };
    find(proxy)
        .or_else(|| find(!proxy))
        .as_deref()
        .and_then(Credentials::parse)
}

/// What a digest check concluded.
enum Verdict {
    /// The device authenticated.
    Device(super::DeviceCredentials, String),
    /// Send a (new) challenge; `true`: the nonce was stale.
    Challenge(bool),
    /// Refuse: wrong credentials, unknown user, disabled device, replay.
    Forbidden,
    /// Too many failures from this source lately.
    Throttled,
}

/// Checks a request's digest credentials against the device they name.
fn authenticate(shared: &Shared, tx: &Transaction, source: SocketAddr, proxy: bool) -> Verdict {
    let now = Instant::now();
    let mut auth = shared.auth.lock().unwrap_or_else(PoisonError::into_inner);
    if auth.throttle.blocked(source.ip(), now) {
        return Verdict::Throttled;
    }
    let Some(credentials) = credentials_of(tx, proxy) else {
        return Verdict::Challenge(false);
    };
    let method = tx.original.method.to_string();
    let device = shared
        .directory
        .device(&credentials.realm, &credentials.username);
    // Unknown users are checked against a made-up password, so that they
    // cost the same and get the same answer as a wrong password.
    let password = device
        .as_ref()
        .map_or("\u{0}unknown", |d| d.password.as_str());
    let right = credentials.verify(password, &method);
    if !right {
        auth.throttle.failed(source.ip(), now);
        return Verdict::Forbidden;
    }
    match auth.nonces.check(&credentials, now) {
        NonceCheck::Fresh => {}
        NonceCheck::Stale => return Verdict::Challenge(true),
        NonceCheck::Unknown => {
            auth.throttle.failed(source.ip(), now);
            return Verdict::Forbidden;
        }
    }
    match device {
        Some(device) if device.enabled => {
            auth.throttle.succeeded(source.ip());
            Verdict::Device(device, credentials.username)
        }
        _ => {
            auth.throttle.failed(source.ip(), now);
            Verdict::Forbidden
        }
    }
}

/// Sends a challenge for `domain`, one header per configured algorithm
/// (RFC 8760 allows several; some stacks, baresip 1.0's among them, fail
/// on any SHA-256 challenge, so the default is MD5 alone).
async fn challenge(shared: &Shared, tx: &mut Transaction, domain: &str, proxy: bool, stale: bool) {
    let realm = shared
        .directory
        .realm(domain)
        .unwrap_or_else(|| domain.to_owned());
    let now = Instant::now();
    let nonce = {
        let mut auth = shared.auth.lock().unwrap_or_else(PoisonError::into_inner);
        auth.nonces.prune(now);
        auth.nonces.issue(now)
    };
    let header = |algorithm| {
        let value = digest::challenge(&realm, &nonce, algorithm, stale);
        if proxy {
            Header::ProxyAuthenticate(value.into())
        } else {
            Header::WwwAuthenticate(value.into())
        }
    };
    let status = if proxy {
        StatusCode::ProxyAuthenticationRequired
    } else {
        StatusCode::Unauthorized
    };
    let _ = tx
        .reply_with(
            status,
            shared.config.digest.iter().map(|a| header(*a)).collect(),
            None,
        )
        .await;
}

async fn register(shared: &Shared, mut tx: Transaction) {
    let Some(source) = source_of(&tx) else {
        let _ = tx.reply(StatusCode::BadRequest).await;
        return;
    };
    let to = tx
        .original
        .to_header()
        .map(|h| h.value().to_owned())
        .unwrap_or_default();
    let (_, domain, _) = user_and_host(&to);
    let (device, username) = match authenticate(shared, &tx, source, false) {
        Verdict::Device(device, username) => (device, username),
        Verdict::Challenge(stale) => {
            return challenge(shared, &mut tx, &domain, false, stale).await;
        }
        Verdict::Forbidden => {
            let _ = tx.reply(StatusCode::Forbidden).await;
            return;
        }
        Verdict::Throttled => return throttled(&mut tx).await,
    };
    let header_expires = tx
        .original
        .expires_header()
        .and_then(|e| e.value().trim().parse::<u32>().ok());
    let contacts: Vec<String> = tx
        .original
        .contact_headers()
        .iter()
        .flat_map(|c| split_contacts(c.value()))
        .collect();
    let call_id = tx
        .original
        .call_id_header()
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    let user_agent = tx
        .original
        .user_agent_header()
        .map(|h| h.value().to_owned());
    let now = Instant::now();
    let asked = Asked {
        account: &device.account,
        device: &device.device,
        username: &username,
        realm: &domain,
        source,
        transport: transport_of(&tx),
        user_agent,
        call_id: &call_id,
        header_expires,
        nat: behind_nat(&tx.original, source),
    };
    let changes = match contact_changes(&contacts, &asked, now) {
        Ok(changes) => changes,
        Err(Refusal::Malformed) => {
            let _ = tx.reply(StatusCode::BadRequest).await;
            return;
        }
        Err(Refusal::TooBrief(min)) => {
            let _ = tx
                .reply_with(
                    StatusCode::IntervalTooBrief,
                    vec![Header::Other("Min-Expires".into(), min.to_string())],
                    None,
                )
                .await;
            return;
        }
    };
    let bindings = shared
        .registrations
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .apply(&device.account, &device.device, changes, now);
    let mut headers: Vec<Header> = bindings
        .iter()
        .map(|b| {
            Header::Other(
                "Contact".into(),
                format!("<{}>;expires={}", b.contact, b.expires),
            )
        })
        .collect();
    headers.push(Header::Other(
        "Date".into(),
        jiff::Timestamp::now()
            .strftime("%a, %d %b %Y %H:%M:%S GMT")
            .to_string(),
    ));
    let _ = tx.reply_with(StatusCode::OK, headers, None).await;
}

/// What a REGISTER asks, beside its contacts.
struct Asked<'a> {
    account: &'a str,
    device: &'a str,
    username: &'a str,
    realm: &'a str,
    source: SocketAddr,
    transport: &'a str,
    user_agent: Option<String>,
    call_id: &'a str,
    header_expires: Option<u32>,
    nat: bool,
}

/// Why a REGISTER's contacts are refused.
enum Refusal {
    /// 400: a contact that does not parse, or a `*` with others or
    /// without `Expires: 0`.
    Malformed,
    /// 423 with the shortest expiry accepted.
    TooBrief(u32),
}

/// The changes a REGISTER's contacts ask for.
fn contact_changes(
    contacts: &[String],
    asked: &Asked<'_>,
    now: Instant,
) -> Result<Vec<Change>, Refusal> {
    let mut changes = Vec::new();
    for contact in contacts {
        if contact.trim() == "*" {
            if asked.header_expires != Some(0) || contacts.len() > 1 {
                return Err(Refusal::Malformed);
            }
            changes.push(Change::RemoveAll);
            continue;
        }
        let parsed =
            rsipstack::sip::typed::Contact::parse(contact).map_err(|_| Refusal::Malformed)?;
        let wanted = registrar::asked_expires(contact_expires(contact), asked.header_expires);
        let granted = registrar::grant(wanted).map_err(Refusal::TooBrief)?;
        let mut binding = Box::new(registrar::binding(
            asked.account,
            asked.device,
            asked.username,
            asked.realm,
            &parsed.uri.to_string(),
            asked.source,
            asked.transport,
            asked.user_agent.clone(),
            asked.call_id,
            granted,
            now,
        ));
        binding.nat = asked.nat;
        changes.push(Change::Contact { binding });
    }
    Ok(changes)
}

/// Whether a device is reached where its requests come from rather than at
/// its Contact (RFC 3581): its top Via asks for `rport`, or names another
/// address than the one the request came from (a NAT rewrote it).
fn behind_nat(request: &rsipstack::sip::Request, source: SocketAddr) -> bool {
    use rsipstack::sip::HeadersExt as _;
    let Some(via) = request
        .header_value("Via")
        .or_else(|| request.header_value("v"))
    else {
        return true;
    };
    let top = via.split(',').next().unwrap_or_default();
    let mut parts = top.split(';');
    let sent = parts.next().unwrap_or_default();
    let rport = parts.any(|p| {
        let p = p.trim().to_ascii_lowercase();
        p == "rport" || p.starts_with("rport=")
    });
    let sent_by = sent.split_whitespace().nth(1).unwrap_or_default();
    let sent_by = sent_by
        .parse::<SocketAddr>()
        .or_else(|_| format!("{sent_by}:5060").parse::<SocketAddr>())
        .ok();
    rport || sent_by != Some(source)
}

/// Too many failures from the source: refused for a while.
async fn throttled(tx: &mut Transaction) {
    let _ = tx
        .reply_with(
            StatusCode::Forbidden,
            vec![Header::Other(
                "Retry-After".into(),
                digest::FAILURE_WINDOW.as_secs().to_string(),
            )],
            None,
        )
        .await;
}

/// The contacts of one Contact header value (`a, b`), commas inside `<>`
/// or quotes kept.
fn split_contacts(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let (mut angle, mut quote) = (false, false);
    for c in value.chars() {
        match c {
            '"' => quote = !quote,
            '<' if !quote => angle = true,
            '>' if !quote => angle = false,
            ',' if !quote && !angle => {
                out.push(std::mem::take(&mut current).trim().to_owned());
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_owned());
    }
    out
}

/// The `expires` parameter of a contact (after its `>`).
fn contact_expires(contact: &str) -> Option<u32> {
    let params = contact.rsplit_once('>').map_or(contact, |(_, p)| p);
    params.split(';').find_map(|p| {
        let (key, value) = p.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("expires")
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

async fn invite(shared: &Shared, mut tx: Transaction) {
    let Some(source) = source_of(&tx) else {
        let _ = tx.reply(StatusCode::BadRequest).await;
        return finish(&mut tx).await;
    };
    // The dialog needs the caller's Contact (RFC 3261 §8.1.1.8): without
    // one the call could never be answered.
    if tx.original.contact_headers().is_empty() {
        let _ = tx.reply(status(400, "Bad Request (no Contact)")).await;
        return finish(&mut tx).await;
    }
    let from = tx
        .original
        .from_header()
        .map(|h| h.value().to_owned())
        .unwrap_or_default();
    let (from_user, from_domain, from_name) = user_and_host(&from);
    let identity = if shared.config.trunks.iter().any(|t| t.matches(source)) {
        Identity::Trunk { source }
    } else {
        match authenticate(shared, &tx, source, true) {
            Verdict::Device(device, username) => Identity::Device {
                account: device.account,
                device: device.device,
                username,
            },
            Verdict::Challenge(stale) => {
                challenge(shared, &mut tx, &from_domain, true, stale).await;
                return finish(&mut tx).await;
            }
            Verdict::Forbidden => {
                let _ = tx.reply(StatusCode::Forbidden).await;
                return finish(&mut tx).await;
            }
            Verdict::Throttled => {
                throttled(&mut tx).await;
                return finish(&mut tx).await;
            }
        }
    };
    let info = CallInfo {
        sip_call_id: tx
            .original
            .call_id_header()
            .map(|c| c.value().to_owned())
            .unwrap_or_default(),
        dialled: tx
            .original
            .uri
            .auth
            .as_ref()
            .map(|a| a.user.clone())
            .unwrap_or_default(),
        from_user,
        from_name,
        source,
        transport: transport_of(&tx),
        user_agent: tx
            .original
            .user_agent_header()
            .map(|h| h.value().to_owned()),
        sdp: (!tx.original.body.is_empty()).then(|| tx.original.body.clone()),
    };
    let timer = match timer_asked(shared, &tx.original) {
        Ok(timer) => timer,
        Err(min) => {
            let _ = tx
                .reply_with(
                    status(422, "Session Interval Too Small"),
                    vec![Header::Other("Min-SE".into(), min.to_string())],
                    None,
                )
                .await;
            return finish(&mut tx).await;
        }
    };
    let _ = tx.send_trying().await;
    let invite = Invite {
        tx,
        info,
        identity,
        layer: Arc::clone(&shared.layer),
        contact: contact_uri(shared),
        timer,
    };
    if let Err(
        mpsc::error::TrySendError::Full(mut invite) | mpsc::error::TrySendError::Closed(mut invite),
    ) = shared.invites.try_send(invite)
    {
        let _ = invite
            .tx
            .reply_with(
                StatusCode::ServiceUnavailable,
                vec![Header::Other("Retry-After".into(), "5".into())],
                None,
            )
            .await;
        finish(&mut invite.tx).await;
    }
}

/// The session timer an INVITE asks for (RFC 4028 §9), as we answer it:
/// its interval, refreshed by the side it names, else by the caller when
/// it supports timers (else by us); `Err(Min-SE)` when the interval is
/// shorter than we accept.
fn timer_asked(shared: &Shared, request: &rsipstack::sip::Request) -> Result<Option<Timer>, u32> {
    let Some((interval, refresher)) =
        session_timer_of(|names| names.iter().find_map(|n| request.header_value(n)))
    else {
        return Ok(None);
    };
    let min = shared.config.min_session_expires;
    if interval < min {
        return Err(min);
    }
    let supported = request.header_contains_token("Supported", "timer")
        || request
            .header_value("k")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("timer")));
    let we_refresh = match refresher.as_deref() {
        Some("uas") => true,
        Some("uac") => false,
        _ => !supported,
    };
    Ok(Some(Timer {
        interval,
        we_refresh,
    }))
}

/// Keeps reading an INVITE transaction after its final response, until it
/// ends: rsipstack runs a transaction's timers only while it is read, and
/// over UDP a failure response must be retransmitted until the caller's
/// ACK (RFC 3261 §17.2.1; Timer H ends it after 64*T1 without one).
async fn finish(tx: &mut Transaction) {
    while tx.receive().await.is_some() {}
}

/// Our address as a URI host (the public one when set).
fn contact_host(shared: &Shared) -> String {
    match shared.config.public_ip.unwrap_or(shared.local.ip()) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Our Contact: the public address when set.
fn contact_uri(shared: &Shared) -> String {
    format!(
        "sip:callflow@{}:{}",
        contact_host(shared),
        shared.local.port()
    )
}

/// A call to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dial {
    /// The Request-URI: a registered Contact, or `sip:number@gateway`.
    pub uri: String,
    /// Where to send it when not to the URI's host: a registered phone's
    /// source address (it may be behind NAT), and `udp` or `tcp`.
    pub destination: Option<(SocketAddr, &'static str)>,
    /// The caller id shown: From's user part and display name.
    pub from_user: String,
    pub from_display: Option<String>,
    /// More headers (auto-answer for intercom and paging, ...).
    pub headers: Vec<(String, String)>,
    /// Digest credentials for a 401/407 (a carrier's gateway).
    pub credential: Option<(String, String)>,
    /// The codecs to offer (none: PCMU and PCMA).
    pub codecs: Vec<crate::media::Codec>,
    /// Where our media is (the offer is made from it).
    pub local: crate::media::sdp::Local,
}

/// An authorized INVITE: the live layer refuses it or starts the call.
pub struct Invite {
    tx: Transaction,
    pub info: CallInfo,
    pub identity: Identity,
    layer: Arc<DialogLayer>,
    contact: String,
    /// The session timer the INVITE asked for, as we will answer it.
    timer: Option<Timer>,
}

impl std::fmt::Debug for Invite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invite")
            .field("info", &self.info)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Invite {
    /// Refuses the call with a final response (no dialog).
    pub async fn refuse(mut self, code: u16, reason: &str) {
        let _ = self.tx.reply(status(code, reason)).await;
        finish(&mut self.tx).await;
    }

    /// Starts the call: a dialog answers the INVITE transaction from now
    /// on. `local` is where our media is. Returns the leg and the channel
    /// of what its far end does.
    pub fn start(
        self,
        local: crate::media::sdp::Local,
    ) -> Result<(Leg, mpsc::UnboundedReceiver<LegEvent>), String> {
        let Invite {
            mut tx,
            layer,
            contact,
            timer,
            ..
        } = self;
        let contact_uri =
            rsipstack::sip::Uri::try_from(contact.as_str()).map_err(|e| e.to_string())?;
        let (state_tx, states) = layer.new_dialog_state_channel();
        let dialog = layer
            .get_or_create_server_invite(&tx, state_tx, None, Some(contact_uri))
            .map_err(|e| e.to_string())?;
        // rsipstack 0.7.14 gives the 487 after a CANCEL a new To tag; keep
        // the dialog's, as RFC 3261 §8.2.6.2 wants.
        let tag = dialog.id().local_tag;
        if let Ok(to) = tx.original.to_header_mut() {
            let _ = to.mut_tag(tag.into());
        }
        let offer = tx.original.body.clone();
        let mut handler = dialog.clone();
        tokio::spawn(async move {
            let _ = handler.handle(&mut tx).await;
            // The dialog stops reading after a CANCEL's 487 (and after the
            // ACK of a failure): keep the transaction running to its end.
            finish(&mut tx).await;
        });
        let (leg, events) = Leg::start(layer, dialog, states, local, None, timer);
        if !offer.is_empty() {
            leg.agreed(&offer);
        }
        Ok((leg, events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> rsipstack::sip::Request {
        match rsipstack::sip::SipMessage::try_from(text) {
            Ok(rsipstack::sip::SipMessage::Request(request)) => request,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn refuses_what_the_parser_lets_through() {
        let options = |version: &str, extra: &str, body: &str| {
            parse(&format!(
                "OPTIONS sip:a@127.0.0.1 {version}\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n\
                 From: <sip:b@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\nCall-ID: c\r\n\
                 CSeq: 1 OPTIONS\r\n{extra}\r\n{body}"
            ))
        };
        let code = |r: &rsipstack::sip::Request| malformed(r).map(u16::from);
        assert_eq!(code(&options("SIP/2.0", "Content-Length: 0\r\n", "")), None);
        assert_eq!(code(&options("SIP/2.0", "", "")), None);
        assert_eq!(
            code(&options("SIP/2.0", "Content-Length: 4\r\n", "abcd")),
            None
        );
        assert_eq!(
            code(&options("SIP/3.0", "Content-Length: 0\r\n", "")),
            Some(505)
        );
        for bad in ["500", "-5", "ten", "99999999999999999999999"] {
            let request = options("SIP/2.0", &format!("Content-Length: {bad}\r\n"), "abcd");
            assert_eq!(code(&request), Some(400), "Content-Length: {bad}");
        }
        let nul = options("SIP/2.0", "Subject: a\0b\r\nContent-Length: 0\r\n", "");
        assert_eq!(code(&nul), Some(400));
        let tab = options("SIP/2.0", "Subject: a\tb\r\nContent-Length: 0\r\n", "");
        assert_eq!(code(&tab), None);
        let other_method = parse(
            "INVITE sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n\
             From: <sip:b@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\nCall-ID: c\r\n\
             CSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(code(&other_method), Some(400));
    }

    #[test]
    fn nat_from_via() {
        let register = |via: &str| {
            parse(&format!(
                "REGISTER sip:acme SIP/2.0\r\nVia: {via}\r\n\
                 From: <sip:b@acme>;tag=1\r\nTo: <sip:b@acme>\r\nCall-ID: c\r\n\
                 CSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
            ))
        };
        let source: SocketAddr = "127.0.0.1:5070".parse().unwrap();
        let nat = |via: &str| behind_nat(&register(via), source);
        assert!(!nat("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1"));
        assert!(nat("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1;rport"));
        assert!(nat("SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK1"));
        assert!(!behind_nat(
            &register("SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1"),
            "127.0.0.1:5060".parse().unwrap()
        ));
    }

    #[test]
    fn contacts_and_expires() {
        assert_eq!(
            split_contacts("<sip:a@1;x=1>;expires=60, \"B, c\" <sip:b@2>"),
            ["<sip:a@1;x=1>;expires=60", "\"B, c\" <sip:b@2>"]
        );
        assert_eq!(contact_expires("<sip:a@1;expires=9>;expires=60"), Some(60));
        assert_eq!(contact_expires("<sip:a@1>"), None);
        assert_eq!(contact_expires("sip:a@1;expires=30"), Some(30));
    }
}
