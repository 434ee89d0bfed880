//! Reading what users put in the flows and scripts directories without
//! trusting it: regular files and folders only, symbolic links followed
//! only to a regular file inside the same directory, and never more than a
//! document's size limit read from any file. A FIFO, a device, a socket or
//! a link to one is refused before it is opened, so nothing can block the
//! reader or feed it without end.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

/// What an entry of a folder is, for a reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Folder,
    /// A regular file, or a symbolic link to one inside the root.
    File,
    /// Anything else, with why it is not read.
    Refused(String),
}

/// Classifies `path`, an entry under `root` (canonical: see
/// [`canonical_root`]). Folders are never reached through links (no loop,
/// no walk outside the root); a link counts as the regular file it leads to
/// only when that file is inside the root.
pub fn classify(path: &Path, root: &Path) -> Kind {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) => return Kind::Refused(format!("cannot read: {err}")),
    };
    let file_type = meta.file_type();
    if file_type.is_dir() {
        return Kind::Folder;
    }
    if file_type.is_file() {
        return Kind::File;
    }
    if !file_type.is_symlink() {
        return Kind::Refused(format!("{}, not a regular file", special(&meta)));
    }
    let Ok(target) = fs::canonicalize(path) else {
        return Kind::Refused("a symbolic link that leads nowhere".to_owned());
    };
    if !target.starts_with(root) {
        return Kind::Refused(
            "a symbolic link to outside the directory (links are followed only to files inside it)"
                .to_owned(),
        );
    }
    match fs::metadata(&target) {
        Ok(meta) if meta.is_file() => Kind::File,
        Ok(meta) if meta.is_dir() => Kind::Refused(
            "a symbolic link to a folder (links to folders are not followed)".to_owned(),
        ),
        Ok(meta) => Kind::Refused(format!(
            "a symbolic link to {}, not a regular file",
            special(&meta)
        )),
        Err(err) => Kind::Refused(format!("cannot read: {err}")),
    }
}

/// The root as [`classify`] compares link targets with: canonical when it
/// can be, else as given.
pub fn canonical_root(root: &Path) -> std::path::PathBuf {
    fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf())
}

/// A name for a special file.
fn special(meta: &fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let kind = meta.file_type();
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_socket() {
            return "a socket";
        }
        if kind.is_block_device() || kind.is_char_device() {
            return "a device";
        }
    }
    let _ = meta;
    "a special file"
}

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Refused(String),
    #[error("larger than the limit of {} KiB (max_document_bytes): not read", limit >> 10)]
    TooLarge { limit: usize },
}

/// Reads a regular file (or a link [`classify`] accepts), at most `limit`
/// bytes: a larger one is an error, and no more than `limit + 1` bytes are
/// read to find out.
pub fn read_limited(path: &Path, root: &Path, limit: usize) -> Result<Vec<u8>, ReadError> {
    match classify(path, root) {
        Kind::File => {}
        Kind::Folder => return Err(ReadError::Refused("a folder, not a file".to_owned())),
        Kind::Refused(why) => return Err(ReadError::Refused(why)),
    }
    let file = fs::File::open(path)?;
    // Checked again on the open file: it may have been replaced meanwhile.
    if !file.metadata()?.is_file() {
        return Err(ReadError::Refused("not a regular file".to_owned()));
    }
    let mut bytes = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(cap).read_to_end(&mut bytes)?;
    if bytes.len() > limit {
        return Err(ReadError::TooLarge { limit });
    }
    Ok(bytes)
}

/// Whether `name` is the temporary file of a write that never finished:
/// `.<name>.json.<random>.tmp`, as `write_atomic` makes them.
pub fn is_leftover(name: &str) -> bool {
    name.starts_with('.')
        && Path::new(name).extension().is_some_and(|x| x == "tmp")
        && name.len() > ".x.json..tmp".len()
        && name.contains(".json.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn fifos_links_out_and_large_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = canonical_root(dir.path());
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.json"), "{}").unwrap();
        std::fs::write(root.join("ok.json"), "{}").unwrap();
        std::fs::write(root.join("big.json"), vec![b' '; 2048]).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.json"), root.join("out.json"))
            .unwrap();
        std::os::unix::fs::symlink(root.join("ok.json"), root.join("in.json")).unwrap();
        std::os::unix::fs::symlink("/", root.join("rootdir")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", root.join("zero.json")).unwrap();
        let fifo = std::process::Command::new("mkfifo")
            .arg(root.join("x.json"))
            .status()
            .unwrap();
        assert!(fifo.success());

        assert_eq!(
            read_limited(&root.join("ok.json"), &root, 1024).unwrap(),
            b"{}"
        );
        assert_eq!(
            read_limited(&root.join("in.json"), &root, 1024).unwrap(),
            b"{}"
        );
        let refused = |name: &str| match read_limited(&root.join(name), &root, 1024) {
            Err(err) => err.to_string(),
            Ok(_) => panic!("{name} was read"),
        };
        assert!(refused("out.json").contains("outside"));
        assert!(refused("rootdir").contains("outside"));
        assert!(refused("zero.json").contains("outside"));
        assert!(refused("x.json").contains("a FIFO"));
        assert!(refused("big.json").contains("limit of 1 KiB"));
        assert_eq!(
            classify(&root.join("x.json"), &root),
            Kind::Refused("a FIFO, not a regular file".into())
        );
    }

    #[test]
    fn leftovers_are_told_from_documents() {
        assert!(is_leftover(".main.json.a1B2c3.tmp"));
        assert!(!is_leftover("main.json"));
        assert!(!is_leftover(".main.json.swp"));
    }
}
