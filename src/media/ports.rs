//! RTP ports: each leg binds an even port from `--rtp-ports LOW-HIGH`
//! (RTCP would take the odd one above it), handed out round-robin so a port
//! just freed is not reused at once (late packets of the old call).

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::PoisonError;

/// An inclusive range of UDP ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub low: u16,
    pub high: u16,
}

impl Default for PortRange {
    fn default() -> Self {
        Self {
            low: 16384,
            high: 32767,
        }
    }
}

impl std::str::FromStr for PortRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (low, high) = text
            .split_once('-')
            .ok_or_else(|| format!("expected LOW-HIGH (16384-32767), got {text:?}"))?;
        let parse = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| format!("{p:?} is not a port number"))
        };
        let (low, high) = (parse(low)?, parse(high)?);
        if low < 1024 || high < low.saturating_add(1) {
            return Err(format!(
                "the range {low}-{high} must lie above 1023 and hold at least two ports"
            ));
        }
        Ok(Self { low, high })
    }
}

/// Hands out RTP sockets.
#[derive(Debug)]
pub struct Ports {
    ip: IpAddr,
    range: PortRange,
    next: Mutex<u16>,
}

/// No port of the range could be bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no free RTP port in {low}-{high} on {ip}")]
pub struct NoPort {
    pub ip: IpAddr,
    pub low: u16,
    pub high: u16,
}

impl Ports {
    pub fn new(ip: IpAddr, range: PortRange) -> Self {
        Self {
            ip,
            range,
            next: Mutex::new(range.low + range.low % 2),
        }
    }

    /// Binds the next free even port of the range (non-blocking, ready
    /// for the runtime that will poll it).
    pub fn bind(&self) -> Result<std::net::UdpSocket, NoPort> {
        let first = self.range.low + self.range.low % 2;
        let count = (self.range.high - first) / 2 + 1;
        for _ in 0..count {
            let port = {
                let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
                let port = *next;
                *next = if port.saturating_add(2) > self.range.high {
                    first
                } else {
                    port + 2
                };
                port
            };
            if let Ok(socket) = std::net::UdpSocket::bind(SocketAddr::new(self.ip, port))
                && socket.set_nonblocking(true).is_ok()
            {
                return Ok(socket);
            }
        }
        Err(NoPort {
            ip: self.ip,
            low: self.range.low,
            high: self.range.high,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges() {
        assert_eq!(
            "20000-20010".parse::<PortRange>(),
            Ok(PortRange {
                low: 20000,
                high: 20010
            })
        );
        assert!("20000".parse::<PortRange>().is_err());
        assert!("100-200".parse::<PortRange>().is_err());
        assert!("30000-20000".parse::<PortRange>().is_err());
    }

    #[test]
    fn hands_out_even_ports_and_reports_exhaustion() {
        let ports = Ports::new(
            "127.0.0.1".parse().unwrap(),
            PortRange {
                low: 41001,
                high: 41004,
            },
        );
        let a = ports.bind().unwrap();
        let b = ports.bind().unwrap();
        let (pa, pb) = (
            a.local_addr().unwrap().port(),
            b.local_addr().unwrap().port(),
        );
        assert_eq!((pa % 2, pb % 2), (0, 0));
        assert_ne!(pa, pb);
        assert!(ports.bind().is_err());
        drop(a);
        assert!(ports.bind().is_ok());
    }
}
