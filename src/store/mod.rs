//! Stores: where documents live. The flows directory ([`FlowsDir`]) is the
//! embedded default; a database backend can come later behind [`Store`].
//!
//! A store only reads and writes files; parsing and validation belong to
//! [`crate::model`] and [`crate::catalog`].

pub mod files;
mod fs;

use std::path::PathBuf;

pub use fs::{ACCOUNT_FILE, AccountLock, CALLFLOWS, FlowsDir, MEDIA, write_bytes, write_file};

use crate::catalog::Sources;

/// A place documents are read from.
pub trait Store {
    /// Reads every account's files. Problems with single files (unreadable,
    /// badly named) are diagnostics in the result; `Err` means the store as a
    /// whole is unusable.
    fn read(&self) -> Result<Sources, StoreError>;
}

/// The store as a whole cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("flows directory {:?} does not exist", path.display().to_string())]
    Missing { path: PathBuf },
    #[error("{:?} is not a directory", path.display().to_string())]
    NotADirectory { path: PathBuf },
    #[error("{} already exists", path.display())]
    Exists { path: PathBuf },
    #[error(
        "{} leads out of its account's folder (a symbolic link): not written",
        path.display()
    )]
    Outside { path: PathBuf },
    #[error("cannot read or write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}
