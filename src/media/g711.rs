//! G.711: the two codecs every SIP phone speaks (PCMU, PCMA), 8 kHz, one
//! byte per sample. The sample codecs come from `audio-codec-algorithms`;
//! this file only maps them onto RTP payload types and frames.

use audio_codec_algorithms::{decode_alaw, decode_ulaw, encode_alaw, encode_ulaw};

/// Samples per second of G.711 (and of every clip the media layer plays).
pub const RATE: u32 = 8000;
/// Samples in one 20 ms packet.
pub const FRAME: usize = 160;

/// A G.711 variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// mu-law, static payload type 0.
    Pcmu,
    /// A-law, static payload type 8.
    Pcma,
}

impl Codec {
    /// The static RTP payload type (RFC 3551).
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The SDP encoding name.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// The codec of an encoding name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("PCMU") {
            Some(Codec::Pcmu)
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(Codec::Pcma)
        } else {
            None
        }
    }

    /// Encodes linear samples into `out` (one byte each).
    pub fn encode(self, samples: &[i16], out: &mut Vec<u8>) {
        out.clear();
        match self {
            Codec::Pcmu => out.extend(samples.iter().map(|&s| encode_ulaw(s))),
            Codec::Pcma => out.extend(samples.iter().map(|&s| encode_alaw(s))),
        }
    }

    /// Decodes a payload into linear samples appended to `out`.
    pub fn decode(self, payload: &[u8], out: &mut Vec<i16>) {
        match self {
            Codec::Pcmu => out.extend(payload.iter().map(|&b| decode_ulaw(b))),
            Codec::Pcma => out.extend(payload.iter().map(|&b| decode_alaw(b))),
        }
    }

    /// The encoding of digital silence.
    pub fn silence_byte(self) -> u8 {
        match self {
            Codec::Pcmu => encode_ulaw(0),
            Codec::Pcma => encode_alaw(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_within_quantization() {
        let samples: Vec<i16> = (-80_i16..80).map(|i| i * 300).collect();
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let mut bytes = Vec::new();
            codec.encode(&samples, &mut bytes);
            assert_eq!(bytes.len(), FRAME);
            let mut back = Vec::new();
            codec.decode(&bytes, &mut back);
            for (a, b) in samples.iter().zip(&back) {
                let error = (i32::from(*a) - i32::from(*b)).abs();
                assert!(error <= i32::from(a.unsigned_abs() / 16) + 16, "{a} vs {b}");
            }
        }
        assert_eq!(Codec::from_name("pcma"), Some(Codec::Pcma));
        assert_eq!(Codec::from_name("G729"), None);
    }
}
