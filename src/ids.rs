//! Validated identifiers: account ids, document ids and document types.
//!
//! Every id that becomes part of a file name goes through one of these types, so
//! no id can ever name a path outside its folder. The rule is Kazoo-compatible
//! (its 32-hex ids fit) and strict enough to be safe on every file system:
//! 1 to 64 characters from `A-Z a-z 0-9 _ -`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest id accepted, in characters.
pub const MAX_ID_LEN: usize = 64;

/// An id that does not follow the rule; the message names what it was for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid {kind} {value:?}: ids are 1 to {MAX_ID_LEN} characters from A-Z, a-z, 0-9, '_' and '-'"
)]
pub struct IdError {
    /// What the id was for: "account id", "document id", "document type".
    pub kind: &'static str,
    /// The rejected text.
    pub value: String,
}

/// Whether `text` follows the id rule.
pub fn is_valid_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_ID_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks `text` against the id rule.
            pub fn new(text: &str) -> Result<Self, IdError> {
                if is_valid_id(text) {
                    Ok(Self(text.to_owned()))
                } else {
                    Err(IdError { kind: $kind, value: text.to_owned() })
                }
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(text: String) -> Result<Self, IdError> {
                if is_valid_id(&text) {
                    Ok(Self(text))
                } else {
                    Err(IdError { kind: $kind, value: text })
                }
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(text: &str) -> Result<Self, IdError> {
                Self::new(text)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// An account id: the name of a folder under `flows/`.
    AccountId,
    "account id"
);
id_type!(
    /// A document id: the stem of a `<id>.json` file.
    DocId,
    "document id"
);
id_type!(
    /// A document type: the name of a folder inside an account (`callflows`, `users`, ...).
    DocType,
    "document type"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kazoo_ids_and_readable_names() {
        for ok in [
            "4fe4c6ab0dd2d3e4e3a4d2e4c7a6b001",
            "acme",
            "main-menu",
            "ext_1001",
            &"a".repeat(64),
        ] {
            assert!(DocId::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_anything_that_could_leave_its_folder() {
        for bad in [
            "",
            ".",
            "..",
            "../etc/passwd",
            "a/b",
            "a\\b",
            "a b",
            "a.json",
            "é",
            "nul\0",
            &"a".repeat(65),
        ] {
            let err = AccountId::new(bad).unwrap_err();
            assert_eq!(err.kind, "account id");
            assert!(err.to_string().contains("invalid account id"), "{err}");
        }
    }

    #[test]
    fn serde_validates() {
        let ok: DocId = serde_json::from_str("\"main\"").unwrap();
        assert_eq!(ok.as_str(), "main");
        assert!(serde_json::from_str::<DocId>("\"../x\"").is_err());
    }
}
