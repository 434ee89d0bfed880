//! RFC 4733 telephone events: digits in RTP, in and out.
//!
//! The payload is four bytes (event, end bit + volume, duration). A sender
//! repeats an event in several packets sharing one RTP timestamp (and
//! sends the end packet three times), so a digit is reported once per
//! (SSRC, timestamp): `SIPp` even restarts the timestamp at each `play_dtmf`
//! with a new SSRC, so the timestamp alone is not enough. Small enough
//! that no crate does just this.

use std::collections::VecDeque;

/// The digit of an event code (0-9, `*`, `#`, A-D).
pub fn digit_of(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

/// The event code of a digit.
pub fn event_of(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => Some(digit as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(digit as u8 - b'A' + 12),
        'a'..='d' => Some(digit as u8 - b'a' + 12),
        _ => None,
    }
}

/// One telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub event: u8,
    pub end: bool,
    pub volume: u8,
    /// In timestamp units (1/8000 s).
    pub duration: u16,
}

impl Event {
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let [event, flags, d1, d2, ..] = *payload else {
            return None;
        };
        Some(Self {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3f,
            duration: u16::from_be_bytes([d1, d2]),
        })
    }

    pub fn to_bytes(self) -> [u8; 4] {
        let [d1, d2] = self.duration.to_be_bytes();
        [
            self.event,
            (if self.end { 0x80 } else { 0 }) | (self.volume & 0x3f),
            d1,
            d2,
        ]
    }
}

/// Reports each digit once, however many packets carry it.
#[derive(Debug, Default)]
pub struct Detector {
    /// (SSRC, timestamp) of the events reported lately.
    seen: VecDeque<(u32, u32)>,
}

/// How many recent events are remembered for deduplication.
const REMEMBERED: usize = 32;

impl Detector {
    /// A packet of telephone events arrived: the digit, if it is a new one.
    pub fn packet(&mut self, ssrc: u32, timestamp: u32, payload: &[u8]) -> Option<char> {
        let event = Event::parse(payload)?;
        let digit = digit_of(event.event)?;
        if self.seen.contains(&(ssrc, timestamp)) {
            return None;
        }
        if self.seen.len() == REMEMBERED {
            self.seen.pop_front();
        }
        self.seen.push_back((ssrc, timestamp));
        Some(digit)
    }
}

/// Packets (20 ms apart) that send one digit: its tone for `tone_ms`, then
/// the end packet three times (RFC 4733 §2.5.1.4).
pub fn digit_packets(digit: char, tone_ms: u32) -> Vec<Event> {
    let Some(event) = event_of(digit) else {
        return Vec::new();
    };
    let packets = (tone_ms / 20).max(1);
    let mut out = Vec::new();
    for n in 1..=packets {
        out.push(Event {
            event,
            end: false,
            volume: 10,
            duration: u16::try_from(n * 160).unwrap_or(u16::MAX),
        });
    }
    let last = Event {
        end: true,
        ..out[out.len() - 1]
    };
    out.extend([last; 3]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_and_codes() {
        for (digit, code) in [
            ('0', 0),
            ('9', 9),
            ('*', 10),
            ('#', 11),
            ('A', 12),
            ('D', 15),
        ] {
            assert_eq!(event_of(digit), Some(code));
            assert_eq!(digit_of(code), Some(digit));
        }
        assert_eq!(digit_of(16), None);
        assert_eq!(event_of('x'), None);
    }

    #[test]
    fn one_report_per_ssrc_and_timestamp() {
        let mut detector = Detector::default();
        let packets = digit_packets('5', 100);
        assert_eq!(packets.len(), 8);
        assert!(packets[..5].iter().all(|p| !p.end));
        let mut reported = Vec::new();
        for packet in &packets {
            reported.extend(detector.packet(1, 24000, &packet.to_bytes()));
        }
        // SIPp's next play_dtmf: same timestamp, new SSRC.
        reported.extend(detector.packet(2, 24000, &packets[0].to_bytes()));
        // The same SSRC, a later digit.
        reported.extend(
            detector.packet(
                2,
                25600,
                &Event {
                    event: 11,
                    ..packets[0]
                }
                .to_bytes(),
            ),
        );
        assert_eq!(reported, vec!['5', '5', '#']);
        assert_eq!(detector.packet(1, 1, &[1, 2]), None);
    }
}
