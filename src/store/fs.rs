//! The flows directory:
//!
//! ```text
//! flows/<account_id>/account.json           optional account settings
//! flows/<account_id>/callflows/<id>.json    one callflow per file; id = file stem
//! flows/<account_id>/<doc_type>/<id>.json   other documents modules read
//! ```
//!
//! Folder and file names are ids ([`crate::ids`]); anything else is reported
//! and skipped, so no id can name a path outside its folder. Hidden files
//! (`.x`, vim's `.x.swp` among them) and editor backups (`x~`) are ignored
//! silently; other
//! stray files get a warning. Entries are read in name order, so results never
//! depend on the file system's listing order.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::files::{self, Kind};
use super::{Store, StoreError};
use crate::catalog::{AccountSource, SourceFile, Sources};
use crate::engine::documents::{DocumentStore, Revision, Swap};
use crate::ids::{AccountId, DocId, DocType, IdError};
use crate::model::{Code, Diagnostic};

/// The folder that holds callflow documents inside an account.
pub const CALLFLOWS: &str = "callflows";
/// The account settings file inside an account.
pub const ACCOUNT_FILE: &str = "account.json";
/// The folder of media documents; `<id>.wav` beside `<id>.json` is the
/// media's audio.
pub const MEDIA: &str = "media";

/// A flows directory on disk.
#[derive(Debug, Clone)]
pub struct FlowsDir {
    root: PathBuf,
}

impl FlowsDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Where the audio of a media document lives: `<account>/media/<id>.wav`.
    pub fn media_audio(&self, account: &AccountId, id: &DocId) -> PathBuf {
        self.root
            .join(account.as_str())
            .join(MEDIA)
            .join(format!("{}.wav", id.as_str()))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The bytes of a media document's audio (see [`FlowsDir::media_audio`]),
    /// at most `limit` of them; `None` when there is no such file, or what is
    /// there is not one to read (a FIFO, a link out of the account).
    pub fn read_media_audio(
        &self,
        account: &AccountId,
        id: &DocId,
        limit: usize,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.media_audio(account, id);
        match files::read_limited(&path, &self.account_root(account), limit) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(files::ReadError::Io(err)) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(files::ReadError::Refused(why)) => {
                tracing::warn!("{}: ignored: {why}", path.display());
                Ok(None)
            }
            Err(files::ReadError::Io(source)) => Err(StoreError::Io { path, source }),
            Err(other) => Err(StoreError::Io {
                path,
                source: io::Error::other(other.to_string()),
            }),
        }
    }

    /// Writes a media document's audio atomically and durably, under the
    /// media folder's lock as documents are.
    pub fn write_media_audio(
        &self,
        account: &AccountId,
        id: &DocId,
        bytes: &[u8],
    ) -> Result<PathBuf, StoreError> {
        let media = DocType::new(MEDIA).map_err(|e| StoreError::Io {
            path: self.root.clone(),
            source: io::Error::other(e.to_string()),
        })?;
        let _lock = self.lock_folder(account, &media)?;
        write_atomic(
            &self.account_dir(account).join(MEDIA),
            &format!("{id}.wav"),
            bytes,
            Some(&self.account_root(account)),
        )
    }

    /// Removes a media document's audio; whether there was one.
    pub fn remove_media_audio(&self, account: &AccountId, id: &DocId) -> Result<bool, StoreError> {
        let path = self.media_audio(account, id);
        // Not through a linked media folder (the file would be elsewhere).
        match fs::canonicalize(self.account_dir(account).join(MEDIA)) {
            Ok(dir) if dir.starts_with(self.account_root(account)) => {}
            Ok(_) => return Err(StoreError::Outside { path }),
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(source) => return Err(StoreError::Io { path, source }),
        }
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }
}

impl FlowsDir {
    fn account_dir(&self, account: &AccountId) -> PathBuf {
        self.root.join(account.as_str())
    }

    /// What an account's files must stay inside once links are resolved:
    /// its folder under the canonical flows directory (so neither a linked
    /// account folder nor a link into another account's files is followed).
    fn account_root(&self, account: &AccountId) -> PathBuf {
        files::canonical_root(&self.root).join(account.as_str())
    }

    /// Writes a document atomically and durably (see [`write_atomic`]).
    /// Returns the path written.
    pub fn write_document(
        &self,
        account: &AccountId,
        doc_type: &DocType,
        id: &DocId,
        body: &crate::model::Object,
    ) -> Result<PathBuf, StoreError> {
        let _lock = self.lock_folder(account, doc_type)?;
        self.write_locked(account, doc_type, id, body)
    }

    /// Writes a document only if `unchanged` says yes to the text it holds
    /// now (`None`: no such file), the read, the check and the write done
    /// under an exclusive lock on the document's folder, which every write
    /// of a document takes ([`FlowsDir::write_document`] too): so the
    /// check and the write are one step for every thread and process
    /// writing there. Returns whether it wrote.
    pub fn write_document_if(
        &self,
        account: &AccountId,
        doc_type: &DocType,
        id: &DocId,
        body: &crate::model::Object,
        unchanged: impl FnOnce(Option<&str>) -> bool,
    ) -> Result<bool, StoreError> {
        let _lock = self.lock_folder(account, doc_type)?;
        let now = self.read_document(account, doc_type, id)?;
        if !unchanged(now.as_deref()) {
            return Ok(false);
        }
        self.write_locked(account, doc_type, id, body)?;
        Ok(true)
    }

    /// Locks a document folder (created if missing) for writing: released
    /// when the lock is dropped.
    fn lock_folder(
        &self,
        account: &AccountId,
        doc_type: &DocType,
    ) -> Result<FolderLock, StoreError> {
        let dir = self.account_dir(account).join(doc_type.as_str());
        let io = |source| StoreError::Io {
            path: dir.clone(),
            source,
        };
        if !files::ensure_dir_inside(&dir, &self.account_root(account)).map_err(io)? {
            return Err(StoreError::Outside { path: dir });
        }
        FolderLock::exclusive(&dir).map_err(io)
    }

    fn write_locked(
        &self,
        account: &AccountId,
        doc_type: &DocType,
        id: &DocId,
        body: &crate::model::Object,
    ) -> Result<PathBuf, StoreError> {
        let dir = self.account_dir(account).join(doc_type.as_str());
        write_atomic(
            &dir,
            &format!("{id}.json"),
            to_text(body).as_bytes(),
            Some(&self.account_root(account)),
        )
    }

    /// Writes `account.json` atomically and durably. A read-modify-write
    /// of the file holds [`FlowsDir::lock_account`] from the read to this
    /// write.
    pub fn write_account(
        &self,
        account: &AccountId,
        body: &crate::model::Object,
    ) -> Result<PathBuf, StoreError> {
        write_atomic(
            &self.account_dir(account),
            ACCOUNT_FILE,
            to_text(body).as_bytes(),
            Some(&self.account_root(account)),
        )
    }

    /// Locks an account's `account.json` for a read-modify-write: an
    /// exclusive lock on the account's folder, which every writer of the
    /// file takes (the server's account and API key routes, a login noting
    /// its key's use, `callflow api-key`, `callflow account create`), so a
    /// change read from the file is never undone by a write based on an
    /// older read, whichever thread or process made it. Released when
    /// dropped; not reentrant (a second lock by the same thread waits for
    /// ever). An error when the account has no folder of its own (none, or
    /// a link to one).
    pub fn lock_account(&self, account: &AccountId) -> Result<AccountLock, StoreError> {
        let dir = self.account_dir(account);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(StoreError::NotADirectory { path: dir }),
            Err(source) => return Err(StoreError::Io { path: dir, source }),
        }
        FolderLock::exclusive(&dir)
            .map(AccountLock)
            .map_err(|source| StoreError::Io { path: dir, source })
    }

    /// Creates an account folder with its `account.json`; an error when the
    /// account exists (the folder is made first, so of two creations of
    /// one account only one succeeds).
    pub fn create_account(
        &self,
        account: &AccountId,
        body: &crate::model::Object,
    ) -> Result<PathBuf, StoreError> {
        let dir = self.account_dir(account);
        let io = |source| StoreError::Io {
            path: dir.clone(),
            source,
        };
        fs::create_dir_all(&self.root).map_err(io)?;
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StoreError::Exists { path: dir });
            }
            Err(err) => return Err(io(err)),
        }
        let _lock = self.lock_account(account)?;
        self.write_account(account, body)
    }

    /// The text of one document, or `None` when there is no such file.
    pub fn read_document(
        &self,
        account: &AccountId,
        doc_type: &DocType,
        id: &DocId,
    ) -> Result<Option<String>, StoreError> {
        let path = self.document_path(account, doc_type, id);
        read_optional(&path, &self.account_root(account))
    }

    /// Where a document lives (the path diagnostics show).
    pub fn document_path(&self, account: &AccountId, doc_type: &DocType, id: &DocId) -> PathBuf {
        self.account_dir(account)
            .join(doc_type.as_str())
            .join(format!("{id}.json"))
    }

    /// One document as the catalog reads it: its path as shown in
    /// diagnostics and its text, `Ok(None)` when there is no such file.
    /// Problems with the file itself (not a regular file, too large, not
    /// UTF-8) are `Err`.
    pub fn read_source(
        &self,
        account: &AccountId,
        doc_type: &DocType,
        id: &DocId,
    ) -> Result<Option<SourceFile>, Diagnostic> {
        let path = self.document_path(account, doc_type, id);
        if fs::symlink_metadata(&path).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
            return Ok(None);
        }
        let mut diags = Vec::new();
        match read_file(&path, &self.account_root(account), &mut diags) {
            Some(file) => Ok(Some(file)),
            None => Err(diags
                .pop()
                .unwrap_or_else(|| io_error(&display(&path), &io::Error::other("unreadable")))),
        }
    }

    /// Temporary files that interrupted writes left in the flows directory
    /// (`.<id>.json.<random>.tmp`, `.<id>.wav.<random>.tmp` in an account's
    /// folders).
    pub fn leftovers(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut dirs = vec![self.root.clone()];
        let mut depth = 0;
        while !dirs.is_empty() && depth < 3 {
            let mut next = Vec::new();
            for dir in dirs {
                let Ok(entries) = fs::read_dir(&dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                    if is_dir && !name.starts_with('.') {
                        next.push(entry.path());
                    } else if entry.file_type().is_ok_and(|t| t.is_file())
                        && files::is_leftover(&name)
                    {
                        found.push(entry.path());
                    }
                }
            }
            dirs = next;
            depth += 1;
        }
        found.sort();
        found
    }

    /// Removes [`FlowsDir::leftovers`] (what a write that was never
    /// acknowledged left behind) and returns what it removed.
    pub fn sweep_leftovers(&self) -> Vec<PathBuf> {
        self.leftovers()
            .into_iter()
            .filter(|path| fs::remove_file(path).is_ok())
            .collect()
    }

    /// The ids of the account folders (names that are not ids are left out).
    pub fn account_ids(&self) -> Result<Vec<AccountId>, StoreError> {
        let root = files::canonical_root(&self.root);
        let entries =
            list(&self.root, &root, &mut Vec::new()).map_err(|source| StoreError::Io {
                path: self.root.clone(),
                source,
            })?;
        Ok(entries
            .into_iter()
            .filter(|e| e.is_dir)
            .filter_map(|e| AccountId::new(&e.name).ok())
            .collect())
    }

    /// The text of `account.json`, or `None` when there is none.
    pub fn read_account_file(&self, account: &AccountId) -> Result<Option<String>, StoreError> {
        read_optional(
            &self.account_dir(account).join(ACCOUNT_FILE),
            &self.account_root(account),
        )
    }

    /// Reads one account's files, as [`Store::read`] does for all; `None`
    /// when the account has no folder.
    pub fn read_one(&self, account: &AccountId) -> Result<Option<Sources>, StoreError> {
        let dir = self.account_dir(account);
        // A real folder, not a link to one (as the full read has it).
        if files::classify(&dir, &files::canonical_root(&self.root)) != files::Kind::Folder {
            return Ok(None);
        }
        let mut sources = Sources::default();
        let root = self.account_root(account);
        let source = read_account(account.clone(), &dir, &root, &mut sources.diagnostics);
        sources.accounts.push(source);
        Ok(Some(sources))
    }
}

/// An exclusive lock (`flock`) on a folder, held until dropped. Each lock
/// opens the folder afresh, so two threads of one process exclude each
/// other as two processes do.
#[derive(Debug)]
struct FolderLock(#[allow(dead_code, reason = "held for its lock, released on drop")] fs::File);

/// The lock of an account's `account.json` ([`FlowsDir::lock_account`]),
/// held until dropped.
#[derive(Debug)]
pub struct AccountLock(
    #[allow(dead_code, reason = "held for its lock, released on drop")] FolderLock,
);

impl FolderLock {
    fn exclusive(dir: &Path) -> io::Result<Self> {
        let folder = fs::File::open(dir)?;
        folder.lock()?;
        Ok(Self(folder))
    }
}

/// The flows directory as the store of the documents calls write
/// (`callflow simulate --persist`; a server publishes each write too):
/// a document's revision is the SHA-256 of its file.
impl DocumentStore for FlowsDir {
    fn load(
        &self,
        account: &AccountId,
        doc_type: &DocType,
        id: &DocId,
    ) -> Result<Option<(crate::model::Object, Revision)>, String> {
        let Some(text) = self
            .read_document(account, doc_type, id)
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let path = self.document_path(account, doc_type, id);
        match serde_json::from_str(&text) {
            Ok(serde_json::Value::Object(mut body)) => {
                // The id is the file name, not part of the document.
                body.remove("id");
                Ok(Some((body, Revision::of_bytes(text.as_bytes()))))
            }
            Ok(_) => Err(format!("{}: not a JSON object", path.display())),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    fn save(
        &self,
        account: &AccountId,
        doc_type: &DocType,
        id: &DocId,
        body: &crate::model::Object,
        expected: Option<Revision>,
    ) -> Result<Swap, String> {
        let written = match expected {
            None => self
                .write_document(account, doc_type, id, body)
                .map(|_| true),
            Some(expected) => self.write_document_if(account, doc_type, id, body, |now| {
                now.map_or(Revision::ABSENT, |text| Revision::of_bytes(text.as_bytes())) == expected
            }),
        };
        if written.map_err(|e| e.to_string())? {
            Ok(Swap::Written)
        } else {
            Ok(Swap::Conflict)
        }
    }
}

fn to_text(body: &crate::model::Object) -> String {
    // A JSON object always serializes.
    let mut text = serde_json::to_string_pretty(body).unwrap_or_default();
    text.push('\n');
    text
}

fn read_optional(path: &Path, root: &Path) -> Result<Option<String>, StoreError> {
    let limit = crate::limits::DocumentLimits::DEFAULT.max_document_bytes;
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    match fs::symlink_metadata(path) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(io(err)),
        Ok(_) => {}
    }
    match files::read_limited(path, root, limit) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| io(io::Error::other("the file is not UTF-8 text"))),
        Err(files::ReadError::Io(err)) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        // What `check` and the catalog ignore (a FIFO, a link out of the
        // account's folder) is no document here either.
        Err(files::ReadError::Refused(why)) => {
            tracing::warn!("{}: ignored: {why}", path.display());
            Ok(None)
        }
        Err(files::ReadError::Io(err)) => Err(io(err)),
        Err(other) => Err(io(io::Error::other(other.to_string()))),
    }
}

/// Writes `text` to the file at `path` atomically and durably (see
/// [`write_atomic`]): expected traces, reports, scaffolds.
pub fn write_file(path: &Path, text: &str) -> Result<(), StoreError> {
    write_bytes(path, text.as_bytes())
}

/// Writes `bytes` to the file at `path` atomically and durably (see
/// [`write_atomic`]): recordings.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| StoreError::Io {
            path: path.to_path_buf(),
            source: io::Error::other("not a file path"),
        })?;
    write_atomic(dir, &name, bytes, None).map(drop)
}

/// The permissions of a new document: 0644 on Unix; elsewhere the
/// temporary file's, writable.
#[cfg_attr(unix, allow(clippy::unnecessary_wraps))] // fallible elsewhere
fn new_file_permissions(temp: &fs::File) -> io::Result<fs::Permissions> {
    #[cfg(unix)]
    {
        let _ = temp;
        Ok(std::os::unix::fs::PermissionsExt::from_mode(0o644))
    }
    #[cfg(not(unix))]
    {
        let mut permissions = temp.metadata()?.permissions();
        permissions.set_readonly(false);
        Ok(permissions)
    }
}

/// Writes `text` to `dir/name` atomically and durably: it goes to a hidden
/// temporary file in `dir` (created if missing), is flushed to disk, renamed
/// over the target, and the folder is flushed. A crash leaves either the old
/// file or the new one, never a mix, and a failed write removes its
/// temporary file.
///
/// With `inside` (an account's folder, canonical), `dir` must be inside it
/// once links are resolved: a linked folder on the way is refused, nothing
/// written.
fn write_atomic(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    inside: Option<&Path>,
) -> Result<PathBuf, StoreError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Io { path, source }
    };
    match inside {
        Some(root) => {
            if !files::ensure_dir_inside(dir, root).map_err(io(dir))? {
                return Err(StoreError::Outside {
                    path: dir.to_path_buf(),
                });
            }
        }
        None => fs::create_dir_all(dir).map_err(io(dir))?,
    }
    let path = dir.join(name);
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io(dir))?;
    std::io::Write::write_all(&mut temp, bytes).map_err(io(temp.path()))?;
    // The temporary file is private (0600); the document gets the mode of
    // the file it replaces, or an ordinary file's (0644).
    let permissions = match fs::metadata(&path) {
        Ok(meta) => meta.permissions(),
        Err(_) => new_file_permissions(temp.as_file()).map_err(io(temp.path()))?,
    };
    temp.as_file()
        .set_permissions(permissions)
        .map_err(io(temp.path()))?;
    temp.as_file().sync_all().map_err(io(&path))?;
    temp.persist(&path).map_err(|e| StoreError::Io {
        path: path.clone(),
        source: e.error,
    })?;
    fs::File::open(dir)
        .and_then(|folder| folder.sync_all())
        .map_err(io(dir))?;
    Ok(path)
}

impl Store for FlowsDir {
    fn read(&self) -> Result<Sources, StoreError> {
        match fs::metadata(&self.root) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(StoreError::NotADirectory {
                    path: self.root.clone(),
                });
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::Missing {
                    path: self.root.clone(),
                });
            }
            Err(source) => {
                return Err(StoreError::Io {
                    path: self.root.clone(),
                    source,
                });
            }
        }
        let root = files::canonical_root(&self.root);
        let mut sources = Sources::default();
        let entries =
            list(&self.root, &root, &mut sources.diagnostics).map_err(|source| StoreError::Io {
                path: self.root.clone(),
                source,
            })?;
        for entry in entries {
            let path = display(&entry.path);
            if !entry.is_dir {
                sources
                    .diagnostics
                    .push(ignored(&path, "not an account folder"));
                continue;
            }
            match AccountId::new(&entry.name) {
                Ok(id) => {
                    let inside = root.join(id.as_str());
                    let account = read_account(id, &entry.path, &inside, &mut sources.diagnostics);
                    sources.accounts.push(account);
                }
                Err(err) => sources.diagnostics.push(invalid_id(&path, &err)),
            }
        }
        Ok(sources)
    }
}

struct Entry {
    name: String,
    path: PathBuf,
    is_dir: bool,
}

/// The visible entries of `dir`, sorted by name: folders and regular files
/// (see [`files::classify`]: links only to files inside `root`); anything
/// else is a warning in `diags`, and so is the temporary file of a write
/// that never finished. Names that are not UTF-8 come back lossily
/// converted, so the id check rejects them.
fn list(dir: &Path, root: &Path, diags: &mut Vec<Diagnostic>) -> io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if files::is_leftover(&name) {
            diags.push(
                Diagnostic::warning(
                    Code::Leftover,
                    "",
                    "the temporary file of a write that never finished (a crash?): \
                     `callflow serve` removes it at start; delete it",
                )
                .in_file(&display(&path)),
            );
            continue;
        }
        // Hidden files (vim's `.x.swp` among them) and editor backups.
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        let is_dir = match files::classify(&path, root) {
            Kind::Folder => true,
            Kind::File => false,
            Kind::Refused(why) => {
                diags.push(ignored(&display(&path), &why));
                continue;
            }
        };
        entries.push(Entry { name, path, is_dir });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

fn read_account(
    id: AccountId,
    dir: &Path,
    root: &Path,
    diags: &mut Vec<Diagnostic>,
) -> AccountSource {
    let mut source = AccountSource {
        id,
        account: None,
        callflows: Vec::new(),
        documents: Vec::new(),
    };
    let entries = match list(dir, root, diags) {
        Ok(entries) => entries,
        Err(err) => {
            diags.push(io_error(&display(dir), &err));
            return source;
        }
    };
    for entry in entries {
        let path = display(&entry.path);
        if !entry.is_dir {
            if entry.name == ACCOUNT_FILE {
                source.account = read_file(&entry.path, root, diags);
            } else {
                diags.push(ignored(
                    &path,
                    "an account folder holds account.json and document folders only",
                ));
            }
            continue;
        }
        let doc_type = match DocType::new(&entry.name) {
            Ok(doc_type) => doc_type,
            Err(err) => {
                diags.push(invalid_id(&path, &err));
                continue;
            }
        };
        let audio = doc_type.as_str() == MEDIA;
        for (id, file) in read_documents(&entry.path, root, audio, diags) {
            if doc_type.as_str() == CALLFLOWS {
                source.callflows.push((id, file));
            } else {
                source.documents.push((doc_type.clone(), id, file));
            }
        }
    }
    source
}

/// The documents of one folder. With `audio` (the media folder), a WAV
/// file beside a document of the same id is that media's audio.
fn read_documents(
    dir: &Path,
    root: &Path,
    audio: bool,
    diags: &mut Vec<Diagnostic>,
) -> Vec<(DocId, SourceFile)> {
    let entries = match list(dir, root, diags) {
        Ok(entries) => entries,
        Err(err) => {
            diags.push(io_error(&display(dir), &err));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = display(&entry.path);
        let stem = entry.name.strip_suffix(".json");
        match (entry.is_dir, stem) {
            (false, Some(stem)) => match DocId::new(stem) {
                Ok(id) => {
                    if let Some(file) = read_file(&entry.path, root, diags) {
                        out.push((id, file));
                    }
                }
                Err(err) => diags.push(invalid_id(&path, &err)),
            },
            (false, None)
                if audio
                    && Path::new(&entry.name)
                        .extension()
                        .is_some_and(|x| x.eq_ignore_ascii_case("wav")) =>
            {
                let stem = Path::new(&entry.name)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let json = stem + ".json";
                if !dir.join(json).is_file() {
                    diags.push(ignored(
                        &path,
                        "audio without a media document (<id>.wav goes beside <id>.json)",
                    ));
                }
            }
            _ => diags.push(ignored(&path, "documents are <id>.json files")),
        }
    }
    out
}

fn read_file(path: &Path, root: &Path, diags: &mut Vec<Diagnostic>) -> Option<SourceFile> {
    let shown = display(path);
    let limit = crate::limits::DocumentLimits::DEFAULT.max_document_bytes;
    match files::read_limited(path, root, limit) {
        Ok(bytes) => {
            if let Ok(text) = String::from_utf8(bytes) {
                Some(SourceFile { path: shown, text })
            } else {
                diags.push(
                    Diagnostic::error(Code::Json, "", "the file is not UTF-8 text").in_file(&shown),
                );
                None
            }
        }
        Err(files::ReadError::Io(err)) => {
            diags.push(io_error(&shown, &err));
            None
        }
        Err(files::ReadError::TooLarge { limit }) => {
            diags.push(
                Diagnostic::error(
                    Code::Limit,
                    "",
                    format!(
                        "the document is larger than the limit of {} KiB (max_document_bytes): \
                         not loaded",
                        limit >> 10
                    ),
                )
                .in_file(&shown),
            );
            None
        }
        Err(files::ReadError::Refused(why)) => {
            diags.push(ignored(&shown, &why));
            None
        }
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

fn ignored(path: &str, why: &str) -> Diagnostic {
    Diagnostic::warning(Code::IgnoredFile, "", format!("ignored: {why}")).in_file(path)
}

fn invalid_id(path: &str, err: &IdError) -> Diagnostic {
    Diagnostic::error(Code::InvalidId, "", format!("{err}; skipped")).in_file(path)
}

fn io_error(path: &str, err: &io::Error) -> Diagnostic {
    Diagnostic::error(Code::Io, "", format!("cannot read: {err}")).in_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lock of `account.json` is an exclusive lock on the account's
    /// folder, which any other opener (another process) meets, and it is
    /// released on drop.
    #[test]
    fn the_account_lock_excludes_other_openers_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = FlowsDir::new(dir.path());
        let account = AccountId::new("acme").unwrap();
        assert!(store.lock_account(&account).is_err(), "no such account");
        store
            .create_account(&account, &crate::model::Object::new())
            .unwrap();
        assert!(matches!(
            store.create_account(&account, &crate::model::Object::new()),
            Err(StoreError::Exists { .. })
        ));
        let held = store.lock_account(&account).unwrap();
        let other = fs::File::open(dir.path().join("acme")).unwrap();
        assert!(matches!(
            other.try_lock(),
            Err(fs::TryLockError::WouldBlock)
        ));
        drop(held);
        other.try_lock().unwrap();
    }

    #[test]
    fn writes_are_atomic_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = FlowsDir::new(dir.path());
        let account = AccountId::new("acme").unwrap();
        let doc_type = DocType::new("vmboxes").unwrap();
        let id = DocId::new("vm-1001").unwrap();
        let mut body = crate::model::Object::new();
        body.insert("messages".into(), serde_json::json!([{"length": 4000}]));
        let path = store
            .write_document(&account, &doc_type, &id, &body)
            .unwrap();
        assert_eq!(path, dir.path().join("acme/vmboxes/vm-1001.json"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(
                mode, 0o644,
                "an ordinary file, not the temporary file's 0600"
            );
        }
        body.insert("name".into(), serde_json::json!("Alice"));
        store
            .write_document(&account, &doc_type, &id, &body)
            .unwrap();
        // No temporary file is left behind, and the reader sees the last write.
        let names: Vec<_> = fs::read_dir(dir.path().join("acme/vmboxes"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("vm-1001.json")]);
        let sources = store.read().unwrap();
        let (_, _, file) = &sources.accounts[0].documents[0];
        let read: serde_json::Value = serde_json::from_str(&file.text).unwrap();
        assert_eq!(read["name"], "Alice");
    }
}
