//! SDP offer/answer (RFC 3264) for one audio stream: G.711 (PCMU, PCMA)
//! and RFC 4733 telephone events. Offers are parsed with `sdp-types`; the
//! answer is small enough to write out directly.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

use super::g711::Codec;

/// Why an offer cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("the SDP is not well formed: {0}")]
    Malformed(String),
    #[error("the SDP offers no audio stream")]
    NoAudio,
    #[error("no connection address for the audio stream")]
    NoAddress,
    #[error("none of the offered codecs ({0}) is PCMU or PCMA")]
    NoCodec(String),
}

/// Which way media flows, from the offerer's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Whether we send media when this is our side's direction.
    #[must_use]
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// The direction an answer takes to an offer with this one.
    #[must_use]
    pub fn answer(self) -> Self {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }
}

/// The audio stream of an offer (or of an answer to our offer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// Where the offerer receives RTP (port 0: the stream is refused).
    pub remote: SocketAddr,
    /// Payload types in the offerer's order of preference.
    pub formats: Vec<u8>,
    /// `a=rtpmap` entries: payload type → (encoding name, clock rate).
    pub rtpmap: BTreeMap<u8, (String, u32)>,
    pub direction: Direction,
}

/// What both sides agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    /// The payload type for the codec (its static number, or the offer's).
    pub payload_type: u8,
    /// The payload type of telephone events, when the offer has them.
    pub dtmf_payload_type: Option<u8>,
    /// Where to send RTP (until symmetric RTP learns better).
    pub remote: SocketAddr,
    /// Which way media flows, from our side.
    pub direction: Direction,
}

impl Offer {
    /// Parses the first audio stream of an SDP body.
    pub fn parse(body: &[u8]) -> Result<Self, SdpError> {
        let session =
            sdp_types::Session::parse(body).map_err(|e| SdpError::Malformed(e.to_string()))?;
        let media = session
            .medias
            .iter()
            .find(|m| m.media == "audio" && m.proto.starts_with("RTP/AVP"))
            .ok_or(SdpError::NoAudio)?;
        let connection = media
            .connections
            .first()
            .or(session.connection.as_ref())
            .ok_or(SdpError::NoAddress)?;
        let address = connection
            .connection_address
            .split('/')
            .next()
            .unwrap_or_default();
        let ip: IpAddr = address.parse().map_err(|_| SdpError::NoAddress)?;
        let formats = media
            .fmt
            .split_ascii_whitespace()
            .filter_map(|f| f.parse::<u8>().ok())
            .collect();
        let mut rtpmap = BTreeMap::new();
        for value in media.get_attribute_values("rtpmap").flatten() {
            let mut parts = value.splitn(2, ' ');
            let (Some(pt), Some(encoding)) = (parts.next(), parts.next()) else {
                continue;
            };
            let Ok(pt) = pt.trim().parse::<u8>() else {
                continue;
            };
            let mut encoding = encoding.trim().split('/');
            let name = encoding.next().unwrap_or_default().to_owned();
            let clock = encoding
                .next()
                .and_then(|c| c.parse::<u32>().ok())
                .unwrap_or(8000);
            rtpmap.insert(pt, (name, clock));
        }
        let direction = [
            ("sendonly", Direction::SendOnly),
            ("recvonly", Direction::RecvOnly),
            ("inactive", Direction::Inactive),
        ]
        .into_iter()
        .find(|(name, _)| media.has_attribute(name) || session.has_attribute(name))
        .map_or(Direction::SendRecv, |(_, d)| d);
        Ok(Self {
            remote: SocketAddr::new(ip, media.port),
            formats,
            rtpmap,
            direction,
        })
    }

    /// The codec of payload type `pt`: its rtpmap, or the static number.
    fn codec_of(&self, pt: u8) -> Option<Codec> {
        match self.rtpmap.get(&pt) {
            Some((name, 8000)) => Codec::from_name(name),
            Some(_) => None,
            None => match pt {
                0 => Some(Codec::Pcmu),
                8 => Some(Codec::Pcma),
                _ => None,
            },
        }
    }

    /// Picks the first offered G.711 codec and the telephone-event type.
    pub fn negotiate(&self) -> Result<Negotiated, SdpError> {
        let (payload_type, codec) = self
            .formats
            .iter()
            .find_map(|&pt| self.codec_of(pt).map(|c| (pt, c)))
            .ok_or_else(|| {
                let offered: Vec<String> = self
                    .formats
                    .iter()
                    .map(|pt| match self.rtpmap.get(pt) {
                        Some((name, _)) => name.clone(),
                        None => pt.to_string(),
                    })
                    .collect();
                SdpError::NoCodec(offered.join(", "))
            })?;
        let dtmf_payload_type = self.formats.iter().copied().find(|pt| {
            self.rtpmap.get(pt).is_some_and(|(name, clock)| {
                name.eq_ignore_ascii_case("telephone-event") && *clock == 8000
            })
        });
        Ok(Negotiated {
            codec,
            payload_type,
            dtmf_payload_type,
            remote: self.remote,
            direction: self.direction.answer(),
        })
    }
}

/// Our side of the session: where we receive, and the `o=` line's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    /// The address advertised (`--public-addr`, else the bound one).
    pub ip: IpAddr,
    pub port: u16,
    pub session_id: u64,
    pub version: u64,
}

/// Our answer to an offer.
pub fn answer(local: &Local, agreed: &Negotiated) -> String {
    let mut formats = vec![agreed.payload_type];
    formats.extend(agreed.dtmf_payload_type);
    let mut sdp = header(local);
    let list: Vec<String> = formats.iter().map(u8::to_string).collect();
    let _ = write!(sdp, "m=audio {} RTP/AVP {}\r\n", local.port, list.join(" "));
    let _ = write!(
        sdp,
        "a=rtpmap:{} {}/8000\r\n",
        agreed.payload_type,
        agreed.codec.name()
    );
    if let Some(pt) = agreed.dtmf_payload_type {
        let _ = write!(
            sdp,
            "a=rtpmap:{pt} telephone-event/8000\r\na=fmtp:{pt} 0-16\r\n"
        );
    }
    let _ = write!(sdp, "a=ptime:20\r\na={}\r\n", agreed.direction.attribute());
    sdp
}

/// Our offer, for a caller whose INVITE had none (RFC 3261 §13.2.1) and
/// for the legs we call: PCMU, PCMA and telephone events on payload type
/// 101.
pub fn offer(local: &Local) -> String {
    offer_with(local, Direction::SendRecv)
}

/// [`offer`] with another direction (a hold before anything was agreed).
pub fn offer_with(local: &Local, direction: Direction) -> String {
    offer_of(local, &[Codec::Pcmu, Codec::Pcma], direction)
}

/// An offer of `codecs` (in this order; none: PCMU and PCMA) and
/// telephone events on payload type 101.
pub fn offer_of(local: &Local, codecs: &[Codec], direction: Direction) -> String {
    let codecs = if codecs.is_empty() {
        &[Codec::Pcmu, Codec::Pcma][..]
    } else {
        codecs
    };
    let mut sdp = header(local);
    let types: Vec<String> = codecs
        .iter()
        .map(|c| c.payload_type().to_string())
        .collect();
    let _ = write!(
        sdp,
        "m=audio {} RTP/AVP {} 101\r\n",
        local.port,
        types.join(" ")
    );
    for codec in codecs {
        let _ = write!(
            sdp,
            "a=rtpmap:{} {}/8000\r\n",
            codec.payload_type(),
            codec.name()
        );
    }
    let _ = write!(
        sdp,
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na={}\r\n",
        direction.attribute()
    );
    sdp
}

fn header(local: &Local) -> String {
    let family = if local.ip.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "v=0\r\no=callflow {} {} IN {family} {ip}\r\ns=callflow\r\nc=IN {family} {ip}\r\nt=0 0\r\n",
        local.session_id,
        local.version,
        ip = local.ip
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIPP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n\
        c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 96\r\n\
        a=rtpmap:0 PCMU/8000\r\na=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\n";

    #[test]
    fn answers_sipp_offer() {
        let offer = Offer::parse(SIPP.as_bytes()).unwrap();
        assert_eq!(offer.remote, "127.0.0.1:6000".parse().unwrap());
        let agreed = offer.negotiate().unwrap();
        assert_eq!(agreed.codec, Codec::Pcmu);
        assert_eq!(agreed.dtmf_payload_type, Some(96));
        let local = Local {
            ip: "127.0.0.1".parse().unwrap(),
            port: 20000,
            session_id: 7,
            version: 1,
        };
        let text = answer(&local, &agreed);
        assert!(text.contains("m=audio 20000 RTP/AVP 0 96\r\n"), "{text}");
        assert!(text.contains("a=rtpmap:96 telephone-event/8000\r\n"));
        // Our own answer parses back as an offer would.
        let back = Offer::parse(text.as_bytes()).unwrap();
        assert_eq!(back.remote.port(), 20000);
    }

    #[test]
    fn prefers_the_offerers_order_and_refuses_others() {
        let pcma_first = SIPP.replace("RTP/AVP 0 96", "RTP/AVP 18 8 0 96");
        let agreed = Offer::parse(pcma_first.as_bytes())
            .unwrap()
            .negotiate()
            .unwrap();
        assert_eq!(agreed.codec, Codec::Pcma);
        let g729 = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                    m=audio 6000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
        let err = Offer::parse(g729.as_bytes())
            .unwrap()
            .negotiate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "none of the offered codecs (G729) is PCMU or PCMA"
        );
        assert!(matches!(
            Offer::parse(b"not sdp"),
            Err(SdpError::Malformed(_))
        ));
        let video = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                     m=video 6000 RTP/AVP 96\r\n";
        assert_eq!(Offer::parse(video.as_bytes()), Err(SdpError::NoAudio));
    }
}
