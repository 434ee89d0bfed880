//! What the SIP layer asks of the flows: which realm a domain is, which
//! device a username is (with its password), and which account a number
//! dialled from a trunk belongs to. Answered from the current generation,
//! with an index rebuilt when the generation changes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

use crate::catalog::{AccountFlows, Catalog};
use crate::reload::Reloader;
use crate::sip::{DeviceCredentials, Directory};

/// The realm of an account: `realm` in account.json, else its id.
pub fn account_realm(account: &AccountFlows) -> String {
    account.realm()
}

/// The account whose callflows claim an E.164 number (`+...`): what a
/// trunk call to it runs in. `callflow check` reports a number claimed in
/// two accounts; the first account in id order wins meanwhile.
pub fn number_owner(catalog: &Catalog, number: &str) -> Option<Arc<AccountFlows>> {
    if !number.starts_with('+') {
        return None;
    }
    catalog
        .accounts()
        .find(|account| account.routes.has_number(number))
        .cloned()
}

#[derive(Debug, Default)]
struct Index {
    /// Lower-case realm → the realm as written.
    realms: BTreeMap<String, String>,
    /// (lower-case realm, username) → credentials.
    devices: BTreeMap<(String, String), DeviceCredentials>,
}

impl Index {
    fn build(catalog: &Catalog) -> Self {
        let mut index = Index::default();
        for account in catalog.accounts() {
            let realm = account_realm(account);
            index
                .realms
                .entry(realm.to_ascii_lowercase())
                .or_insert_with(|| realm.clone());
            let Some(devices) = account.documents.get("devices") else {
                continue;
            };
            for (id, doc) in devices {
                let sip = doc.body.get("sip");
                let text = |key: &str| {
                    sip.and_then(|s| s.get(key))
                        .and_then(Value::as_str)
                        .filter(|v| !v.is_empty())
                };
                let (Some(username), Some(password)) = (text("username"), text("password")) else {
                    continue;
                };
                let device_realm = text("realm").unwrap_or(&realm).to_ascii_lowercase();
                let enabled = doc
                    .body
                    .get("enabled")
                    .and_then(Value::as_bool)
                    .unwrap_or(true);
                index
                    .devices
                    .entry((device_realm, username.to_owned()))
                    .or_insert_with(|| DeviceCredentials {
                        account: account.account.id.to_string(),
                        device: id.to_string(),
                        password: password.to_owned(),
                        enabled,
                    });
            }
        }
        index
    }
}

/// [`Directory`] over a reloader's current generation.
pub struct FlowsDirectory {
    reloader: Arc<Reloader>,
    index: Mutex<Option<(u64, Arc<Index>)>>,
}

impl FlowsDirectory {
    pub fn new(reloader: Arc<Reloader>) -> Self {
        Self {
            reloader,
            index: Mutex::new(None),
        }
    }

    fn index(&self) -> Arc<Index> {
        let generation = self.reloader.current();
        let mut cached = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        match &*cached {
            Some((number, index)) if *number == generation.number => Arc::clone(index),
            _ => {
                let index = Arc::new(Index::build(&generation.catalog));
                *cached = Some((generation.number, Arc::clone(&index)));
                index
            }
        }
    }
}

impl Directory for FlowsDirectory {
    fn realm(&self, domain: &str) -> Option<String> {
        let index = self.index();
        if let Some(realm) = index.realms.get(&domain.to_ascii_lowercase()) {
            return Some(realm.clone());
        }
        // A phone that names the server by address: with one account,
        // that account's realm.
        let mut realms = index.realms.values();
        match (realms.next(), realms.next()) {
            (Some(only), None) => Some(only.clone()),
            _ => None,
        }
    }

    fn device(&self, realm: &str, username: &str) -> Option<DeviceCredentials> {
        self.index()
            .devices
            .get(&(realm.to_ascii_lowercase(), username.to_owned()))
            .cloned()
    }
}
