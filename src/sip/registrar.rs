//! Registrations: where each device can be reached, as its REGISTER
//! requests said. In memory (shared storage comes with several nodes);
//! the `GET .../registrations` API lists them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// Shortest registration accepted (shorter asks get 423 with this).
pub const MIN_EXPIRES: u32 = 60;
/// Longest registration granted (longer asks are cut down to it).
pub const MAX_EXPIRES: u32 = 3600;
/// What a REGISTER without `Expires` gets.
pub const DEFAULT_EXPIRES: u32 = 3600;
/// Contacts one device may register at once.
pub const MAX_CONTACTS: usize = 10;

/// One contact of a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Binding {
    pub account_id: String,
    /// The device document's id (Kazoo's `authorizing_id`).
    pub authorizing_id: String,
    pub username: String,
    pub realm: String,
    /// The Contact URI the device asked to be reached at.
    pub contact: String,
    /// Where the REGISTER came from (what a call to the device uses when
    /// the Contact is behind NAT).
    pub source_ip: String,
    pub source_port: u16,
    /// Calls go to the source rather than to the Contact (RFC 3581: the
    /// REGISTER's Via asked for `rport`, or a NAT rewrote its address).
    #[serde(skip)]
    pub nat: bool,
    pub transport: String,
    pub user_agent: Option<String>,
    pub call_id: String,
    /// Seconds granted.
    pub expires: u32,
    /// Unix seconds of the registration.
    pub registered_at: i64,
    #[serde(skip)]
    pub until: Instant,
}

/// A device's contacts changed: what the REGISTER asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Add or refresh a contact for `expires` seconds (0 removes it).
    Contact { binding: Box<Binding> },
    /// `Contact: *` with `Expires: 0`: remove them all.
    RemoveAll,
}

/// All registrations, by (account, device).
#[derive(Debug, Default)]
pub struct Registrations {
    devices: BTreeMap<(String, String), Vec<Binding>>,
}

impl Registrations {
    /// Applies a REGISTER's changes for (account, device); returns the
    /// device's contacts afterwards.
    pub fn apply(
        &mut self,
        account: &str,
        device: &str,
        changes: Vec<Change>,
        now: Instant,
    ) -> Vec<Binding> {
        let key = (account.to_owned(), device.to_owned());
        let mut bindings = self.devices.remove(&key).unwrap_or_default();
        bindings.retain(|b| b.until > now);
        for change in changes {
            match change {
                Change::RemoveAll => bindings.clear(),
                Change::Contact { binding } => {
                    bindings.retain(|b| b.contact != binding.contact);
                    if binding.expires > 0 {
                        if bindings.len() >= MAX_CONTACTS {
                            bindings.remove(0);
                        }
                        bindings.push(*binding);
                    }
                }
            }
        }
        if !bindings.is_empty() {
            self.devices.insert(key, bindings.clone());
        }
        bindings
    }

    /// The live registrations of an account (all accounts with `None`), by
    /// device then contact.
    pub fn list(&mut self, account: Option<&str>, now: Instant) -> Vec<Binding> {
        self.devices.retain(|_, bindings| {
            bindings.retain(|b| b.until > now);
            !bindings.is_empty()
        });
        self.devices
            .iter()
            .filter(|((a, _), _)| account.is_none_or(|wanted| wanted == a))
            .flat_map(|(_, bindings)| bindings.iter().cloned())
            .collect()
    }

    /// The live contacts of one device.
    pub fn contacts(&self, account: &str, device: &str, now: Instant) -> Vec<Binding> {
        self.devices
            .get(&(account.to_owned(), device.to_owned()))
            .map(|bindings| bindings.iter().filter(|b| b.until > now).cloned().collect())
            .unwrap_or_default()
    }
}

/// The expiry a REGISTER asks for a contact: the contact's `expires`
/// parameter, else the `Expires` header, else the default.
pub fn asked_expires(contact_param: Option<u32>, header: Option<u32>) -> u32 {
    contact_param.or(header).unwrap_or(DEFAULT_EXPIRES)
}

/// What is granted for an ask: `Err(MIN_EXPIRES)` when too brief (423).
pub fn grant(asked: u32) -> Result<u32, u32> {
    match asked {
        0 => Ok(0),
        n if n < MIN_EXPIRES => Err(MIN_EXPIRES),
        n => Ok(n.min(MAX_EXPIRES)),
    }
}

/// A binding for `expires` seconds from `now`.
#[allow(clippy::too_many_arguments)]
pub fn binding(
    account_id: &str,
    authorizing_id: &str,
    username: &str,
    realm: &str,
    contact: &str,
    source: SocketAddr,
    transport: &str,
    user_agent: Option<String>,
    call_id: &str,
    expires: u32,
    now: Instant,
) -> Binding {
    Binding {
        account_id: account_id.to_owned(),
        authorizing_id: authorizing_id.to_owned(),
        username: username.to_owned(),
        realm: realm.to_owned(),
        contact: contact.to_owned(),
        source_ip: source.ip().to_string(),
        source_port: source.port(),
        nat: true,
        transport: transport.to_owned(),
        user_agent,
        call_id: call_id.to_owned(),
        expires,
        registered_at: jiff::Timestamp::now().as_second(),
        until: now + Duration::from_secs(u64::from(expires)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(uri: &str, expires: u32, now: Instant) -> Change {
        Change::Contact {
            binding: Box::new(binding(
                "acme",
                "dev_alice",
                "alice-desk",
                "acme.example",
                uri,
                "127.0.0.1:5062".parse().unwrap(),
                "udp",
                None,
                "c1",
                expires,
                now,
            )),
        }
    }

    #[test]
    fn registers_refreshes_expires_and_removes() {
        let now = Instant::now();
        let mut regs = Registrations::default();
        let after = regs.apply("acme", "dev_alice", vec![contact("sip:a@1", 60, now)], now);
        assert_eq!(after.len(), 1);
        let after = regs.apply("acme", "dev_alice", vec![contact("sip:a@2", 120, now)], now);
        assert_eq!(after.len(), 2);
        let after = regs.apply("acme", "dev_alice", vec![contact("sip:a@1", 300, now)], now);
        assert_eq!(after.len(), 2, "a refresh replaces");
        assert_eq!(regs.list(Some("acme"), now).len(), 2);
        assert_eq!(regs.list(Some("other"), now).len(), 0);
        let later = now + Duration::from_secs(200);
        assert_eq!(
            regs.contacts("acme", "dev_alice", later).len(),
            1,
            "a@2 expired"
        );
        regs.apply("acme", "dev_alice", vec![contact("sip:a@1", 0, now)], later);
        assert!(regs.list(None, later).is_empty());
        regs.apply("acme", "dev_alice", vec![contact("sip:a@1", 60, now)], now);
        regs.apply("acme", "dev_alice", vec![Change::RemoveAll], now);
        assert!(regs.list(None, now).is_empty());
    }

    #[test]
    fn expiry_bounds() {
        assert_eq!(grant(0), Ok(0));
        assert_eq!(grant(30), Err(MIN_EXPIRES));
        assert_eq!(grant(600), Ok(600));
        assert_eq!(grant(86_400), Ok(MAX_EXPIRES));
        assert_eq!(asked_expires(Some(120), Some(600)), 120);
        assert_eq!(asked_expires(None, Some(600)), 600);
        assert_eq!(asked_expires(None, None), DEFAULT_EXPIRES);
    }
}
