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
        return Kind::Refused(OUTSIDE.to_owned());
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
    // The folder it is in must be the root or inside it: a linked folder
    // on the way (`callflows -> /elsewhere`) is refused like a linked file.
    let parent = path.parent().unwrap_or(path);
    if !fs::canonicalize(parent)?.starts_with(root) {
        return Err(ReadError::Refused(OUTSIDE.to_owned()));
    }
    // What to open: the file, or the file a link leads to (canonical, so
    // no link is left in it), checked inside the root once more: the entry
    // may have been replaced since `classify` looked.
    let target = if fs::symlink_metadata(path)?.file_type().is_symlink() {
        let target = fs::canonicalize(path)?;
        if !target.starts_with(root) {
            return Err(ReadError::Refused(OUTSIDE.to_owned()));
        }
        target
    } else {
        path.to_path_buf()
    };
    let file = open_no_follow(&target)?;
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

const OUTSIDE: &str =
    "a symbolic link to outside the directory (links are followed only to files inside it)";

/// Opens `path` for reading without following a link in its last part (a
/// link swapped in since it was checked fails with `ELOOP`) and without
/// waiting for a writer (a FIFO swapped in opens at once, then is refused
/// as not a regular file).
fn open_no_follow(path: &Path) -> io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    options.open(path)
}

/// Whether the folder `dir` (created as needed) is `root` or inside it once
/// links are resolved: what a write checks before it writes there. The
/// nearest folder of `dir` that exists must be inside `root` or on the way
/// to it; then `dir` is made and checked again.
pub fn ensure_dir_inside(dir: &Path, root: &Path) -> io::Result<bool> {
    let mut existing = dir;
    while fs::symlink_metadata(existing).is_err() {
        match existing.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => existing = parent,
            _ => break,
        }
    }
    let real = fs::canonicalize(existing)?;
    if !(real.starts_with(root) || root.starts_with(&real)) {
        return Ok(false);
    }
    fs::create_dir_all(dir)?;
    Ok(fs::canonicalize(dir)?.starts_with(root))
}

/// Whether `name` is the temporary file of a write that never finished:
/// `.<name>.json.<random>.tmp` (a document) or `.<name>.wav.<random>.tmp`
/// (media audio), as `write_atomic` makes them.
pub fn is_leftover(name: &str) -> bool {
    name.starts_with('.')
        && Path::new(name).extension().is_some_and(|x| x == "tmp")
        && name.len() > ".x.wav..tmp".len()
        && (name.contains(".json.") || name.contains(".wav."))
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

    #[cfg(unix)]
    #[test]
    fn linked_folders_are_not_read_through_nor_written_into() {
        let dir = tempfile::tempdir().unwrap();
        let root = canonical_root(dir.path());
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.json"), "{}").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("linked")).unwrap();
        // A regular file, but in a folder that leads out.
        let err = read_limited(&root.join("linked/secret.json"), &root, 1024).unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
        // Writes: a folder on the way that leads out is refused, and
        // nothing is made out there.
        assert!(!ensure_dir_inside(&root.join("linked/new"), &root).unwrap());
        assert!(!outside.path().join("new").exists());
        assert!(ensure_dir_inside(&root.join("a/b"), &root).unwrap());
        assert!(root.join("a/b").is_dir());
        // The root's own folder, not yet made, is on the way to it.
        let account = root.join("acme");
        assert!(ensure_dir_inside(&account.join("callflows"), &account).unwrap());
    }

    #[cfg(unix)]
    #[test]
    fn opening_never_follows_a_last_link_nor_waits_on_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let root = canonical_root(dir.path());
        std::fs::write(root.join("ok.json"), "{}").unwrap();
        std::os::unix::fs::symlink(root.join("ok.json"), root.join("link.json")).unwrap();
        let fifo = std::process::Command::new("mkfifo")
            .arg(root.join("x.json"))
            .status()
            .unwrap();
        assert!(fifo.success());
        // What a link or a FIFO swapped in after `classify` meets.
        let err = open_no_follow(&root.join("link.json")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "{err}");
        // Without O_NONBLOCK this open waits for a writer forever.
        let opened = open_no_follow(&root.join("x.json")).unwrap();
        assert!(!opened.metadata().unwrap().is_file());
    }

    #[test]
    fn leftovers_are_told_from_documents() {
        assert!(is_leftover(".main.json.a1B2c3.tmp"));
        assert!(is_leftover(".greeting.wav.a1B2c3.tmp"));
        assert!(!is_leftover(".greeting.wav"));
        assert!(!is_leftover("main.json"));
        assert!(!is_leftover(".main.json.swp"));
    }
}
