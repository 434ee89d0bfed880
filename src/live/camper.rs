//! A camp's callback on the server (Kazoo's camper): once the devices a
//! call camped on are all free ([`super::world::World::call_back_free`]),
//! the server rings the camper's device (its first registration) for the
//! camp's ring time; when it answers, that leg becomes a new call from the
//! device to the camped number, run like any call the device makes (its
//! trace, its flow: the number's callflow rings the target). Nobody
//! answering ends the camp (one try), as in the simulator.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Launch, Service, launch};
use crate::engine::control::CampRequest;
use crate::media::{Offer, sdp};
use crate::routing::Inception;
use crate::sip::{self, Dial, LegEvent};

/// Rings `request.device` of `account` and, answered, starts the call to
/// `request.number` from it.
pub(super) async fn call_back(service: Arc<Service>, account: String, request: CampRequest) {
    let started = Instant::now();
    let started_at = jiff::Timestamp::now();
    let generation = service.reloader.current();
    let Some(flows) = generation.catalog.account(&account).cloned() else {
        return;
    };
    let Some(contact) = service
        .sip
        .contacts(&account, &request.device)
        .into_iter()
        .next()
    else {
        tracing::info!(
            "camp: {} is not registered, no callback for {}",
            request.device,
            request.number
        );
        return;
    };
    let Some((socket, our_sdp, dial, source, transport)) =
        callback_dial(&service, &contact, &request.number)
    else {
        return;
    };
    let (leg, mut leg_events) = match service.sip.dial(&dial) {
        Ok(placed) => placed,
        Err(message) => {
            tracing::warn!("camp: cannot call {}: {message}", dial.uri);
            return;
        }
    };
    let ring = Duration::from_millis(request.ring_ms);
    let Some(body) = answer_of(&mut leg_events, ring).await else {
        leg.hangup().await;
        return;
    };
    let agreed = Offer::parse(&body).and_then(|offer| offer.negotiate()).ok();
    let info = sip::CallInfo {
        sip_call_id: leg.call_id(),
        dialled: request.number.clone(),
        from_user: request.from.clone(),
        from_name: Some(request.caller_id_name.clone()),
        source: source.unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
        transport,
        user_agent: contact.user_agent.clone(),
        sdp: None,
    };
    launch(
        &service,
        Launch {
            started,
            started_at,
            generation,
            account: flows,
            inception: Inception::Onnet,
            calling_device: Some(request.device),
            info,
            leg,
            leg_events,
            socket,
            agreed,
            sdp: our_sdp,
            delayed_offer: false,
            answered: true,
        },
    );
}

/// What a callback dials: its RTP socket, our SDP offer, the INVITE, where
/// the phone registered from and over what.
type CallbackDial = (
    std::net::UdpSocket,
    String,
    Dial,
    Option<std::net::SocketAddr>,
    &'static str,
);

/// The INVITE of a callback to `contact`, showing `number` as the caller.
fn callback_dial(service: &Service, contact: &sip::Binding, number: &str) -> Option<CallbackDial> {
    let Some((socket, local)) = super::rtp_for_a_leg(&service.ports, service.media_ip) else {
        tracing::warn!("camp: no free RTP port for a callback");
        return None;
    };
    let our_sdp = sdp::offer(&local);
    let transport = if contact.transport == "tcp" {
        "tcp"
    } else {
        "udp"
    };
    let source: Option<std::net::SocketAddr> =
        format!("{}:{}", contact.source_ip, contact.source_port)
            .parse()
            .ok();
    let dial = Dial {
        uri: contact.contact.clone(),
        // Behind NAT: where its REGISTER came from; else its Contact.
        destination: source.filter(|_| contact.nat).map(|addr| (addr, transport)),
        // The phone shows whom it is called back for.
        from_user: number.to_owned(),
        from_display: Some(format!("Callback {number}")),
        headers: Vec::new(),
        credential: None,
        codecs: Vec::new(),
        local,
    };
    Some((socket, our_sdp, dial, source, transport))
}

/// The SDP of the answer, if the leg answers within `ring`.
async fn answer_of(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<LegEvent>,
    ring: Duration,
) -> Option<Vec<u8>> {
    let answered = tokio::time::timeout(ring, async {
        while let Some(event) = events.recv().await {
            match event {
                LegEvent::Answered(body) => return Some(body),
                LegEvent::Failed(..) | LegEvent::Ended(_) => return None,
                _ => {}
            }
        }
        None
    });
    answered.await.ok().flatten()
}

/// Where a callback starts: on the service's runtime, off the call that
/// freed the devices. It holds the service weakly (the service holds the
/// world that holds it).
pub(super) fn placer(service: &Arc<Service>) -> super::world::Placer {
    let service = Arc::downgrade(service);
    Arc::new(move |account: String, request: CampRequest| {
        if let Some(service) = service.upgrade() {
            let runtime = service.runtime.clone();
            runtime.spawn(call_back(service, account, request));
        }
    })
}
