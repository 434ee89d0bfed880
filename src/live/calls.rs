//! The traces of real calls on disk (`<traces>/<account>/<YYYY-MM-DD>/<call
//! id>.json`, the UTC date the call started) and the index of recent calls
//! the calls API lists, newest first.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;
use serde_json::Value;

use crate::ids::{AccountId, DocId};
use crate::store::StoreError;

/// Calls kept in the index per account (older ones stay on disk).
pub const INDEXED_PER_ACCOUNT: usize = 10_000;

/// One finished call, as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallSummary {
    pub call_id: String,
    pub account_id: String,
    pub from: String,
    pub to: String,
    pub callflow_id: Option<String>,
    /// When the call started (RFC 3339, UTC).
    pub start: String,
    pub duration_ms: u64,
    pub hangup_cause: Option<String>,
    /// Why the call ended (`caller_hangup`, `flow_end`, ...).
    pub end: String,
    #[serde(skip)]
    pub path: PathBuf,
}

impl CallSummary {
    /// The summary of a trace document (what [`CallLog::write`] stores).
    pub fn from_document(document: &Value, path: PathBuf) -> Option<Self> {
        let text = |key: &str| document.get(key).and_then(Value::as_str).map(str::to_owned);
        Some(Self {
            call_id: text("call_id")?,
            account_id: text("account_id")?,
            from: text("from").unwrap_or_default(),
            to: text("to").unwrap_or_default(),
            callflow_id: text("callflow_id"),
            start: text("start")?,
            duration_ms: document
                .get("duration_ms")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            hangup_cause: text("hangup_cause"),
            end: text("end").unwrap_or_default(),
            path,
        })
    }
}

/// Recent calls by account, oldest first within each.
#[derive(Debug)]
pub struct CallLog {
    root: PathBuf,
    index: Mutex<BTreeMap<String, Vec<CallSummary>>>,
}

impl CallLog {
    /// Opens (creating) the traces directory and indexes the traces in it.
    pub fn open(root: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(root)?;
        let mut index: BTreeMap<String, Vec<CallSummary>> = BTreeMap::new();
        for account in sorted_dirs(root)? {
            let mut calls = Vec::new();
            // Newest days first, until the index is full.
            for day in sorted_dirs(&account)?.into_iter().rev() {
                let mut files: Vec<PathBuf> = std::fs::read_dir(&day)?
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect();
                files.sort();
                for file in files {
                    let Ok(text) = std::fs::read_to_string(&file) else {
                        continue;
                    };
                    let Ok(document) = serde_json::from_str::<Value>(&text) else {
                        continue;
                    };
                    if let Some(summary) = CallSummary::from_document(&document, file) {
                        calls.push(summary);
                    }
                }
                if calls.len() >= INDEXED_PER_ACCOUNT {
                    break;
                }
            }
            calls.sort_by(|a, b| a.start.cmp(&b.start).then(a.call_id.cmp(&b.call_id)));
            let excess = calls.len().saturating_sub(INDEXED_PER_ACCOUNT);
            calls.drain(..excess);
            if let Some(name) = account.file_name().and_then(|n| n.to_str()) {
                index.insert(name.to_owned(), calls);
            }
        }
        Ok(Self {
            root: root.to_path_buf(),
            index: Mutex::new(index),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes a call's trace document atomically and indexes it. The
    /// account and call ids are checked (they become file names).
    pub fn write(&self, document: &Value) -> Result<PathBuf, StoreError> {
        let invalid = |what: &str| StoreError::Io {
            path: self.root.clone(),
            source: io::Error::other(format!("a trace without a valid {what}")),
        };
        let account = document
            .get("account_id")
            .and_then(Value::as_str)
            .and_then(|a| AccountId::new(a).ok())
            .ok_or_else(|| invalid("account_id"))?;
        let call_id = document
            .get("call_id")
            .and_then(Value::as_str)
            .and_then(|c| DocId::new(c).ok())
            .ok_or_else(|| invalid("call_id"))?;
        let start = document
            .get("start")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("start"))?;
        let day: String = start.chars().take(10).collect();
        if day.len() != 10 || !day.chars().all(|c| c.is_ascii_digit() || c == '-') {
            return Err(invalid("start date"));
        }
        let path = self
            .root
            .join(account.as_str())
            .join(&day)
            .join(format!("{}.json", call_id.as_str()));
        let mut text = serde_json::to_string_pretty(document).map_err(|e| StoreError::Io {
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        text.push('\n');
        crate::store::write_file(&path, &text)?;
        if let Some(summary) = CallSummary::from_document(document, path.clone()) {
            let mut index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
            let calls = index.entry(account.to_string()).or_default();
            calls.push(summary);
            if calls.len() > INDEXED_PER_ACCOUNT {
                calls.remove(0);
            }
        }
        Ok(path)
    }

    /// An account's recent calls, newest first.
    pub fn list(&self, account: &str) -> Vec<CallSummary> {
        let index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        index
            .get(account)
            .map(|calls| calls.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// One call's whole trace document.
    pub fn read(&self, account: &str, call_id: &str) -> Option<Result<Value, String>> {
        let path = {
            let index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
            index
                .get(account)?
                .iter()
                .find(|c| c.call_id == call_id)?
                .path
                .clone()
        };
        Some(
            std::fs::read_to_string(&path)
                .map_err(|e| format!("{}: {e}", path.display()))
                .and_then(|text| {
                    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
                }),
        )
    }
}

fn sorted_dirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_lists_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let log = CallLog::open(dir.path()).unwrap();
        for (id, start) in [
            ("a1", "2026-12-06T10:00:00Z"),
            ("b2", "2026-12-07T09:00:00Z"),
        ] {
            log.write(&json!({
                "call_id": id, "account_id": "acme", "from": "1001", "to": "1100",
                "callflow_id": "main-menu", "start": start, "duration_ms": 5000,
                "hangup_cause": "NORMAL_CLEARING", "end": "caller_hangup", "events": []
            }))
            .unwrap();
        }
        assert!(dir.path().join("acme/2026-12-07/b2.json").is_file());
        let ids: Vec<String> = log.list("acme").into_iter().map(|c| c.call_id).collect();
        assert_eq!(ids, ["b2", "a1"], "newest first");
        assert_eq!(log.read("acme", "a1").unwrap().unwrap()["to"], "1100");
        assert!(log.read("acme", "zz").is_none());
        assert!(log.list("other").is_empty());
        let again = CallLog::open(dir.path()).unwrap();
        assert_eq!(again.list("acme").len(), 2);
        // Ids that would leave their folder are refused.
        assert!(
            log.write(
                &json!({"call_id": "../x", "account_id": "acme", "start": "2026-12-06T10:00:00Z"})
            )
            .is_err()
        );
        assert!(
            log.write(&json!({"call_id": "x", "account_id": "acme", "start": "../../etc"}))
                .is_err()
        );
    }
}
