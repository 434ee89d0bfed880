//! Where the audio of a `play`, `tts` or `say` comes from. Blocking (files,
//! processes, HTTP): run it off the call's thread.
//!
//! A name played is, in this order:
//! 1. a `tone_stream://` (Kazoo/FreeSWITCH tone syntax);
//! 2. an `http(s)://` URL of a WAV file, fetched once and cached
//!    (loopback, private and link-local addresses refused unless allowed);
//! 3. a media document of the account: its `<id>.wav`, or for a
//!    `media_source: tts` document its text spoken;
//! 4. one of Kazoo's system prompts (`vm-enter_pass`, ...): a prompt file
//!    when a prompt set has it, else its text spoken.
//!
//! Clips are cached in memory by what they came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

use super::audio::Clip;
use super::tts::{self, Tts};
use crate::catalog::AccountFlows;
use crate::ids::DocId;

/// How the library finds audio.
pub struct Config {
    /// The flows directory (media documents' audio).
    pub flows: PathBuf,
    /// Where renderings and downloads are cached.
    pub cache: PathBuf,
    /// Folders of system prompts (`<name>.wav`), searched in order.
    pub prompts: Vec<PathBuf>,
    /// Let media URLs reach loopback, private and link-local addresses.
    pub allow_private_http: bool,
    pub tts: Arc<dyn Tts>,
}

/// A clip and where it came from (for logs).
#[derive(Debug, Clone)]
pub struct Resolved {
    pub clip: Arc<Clip>,
    pub source: String,
}

/// Clips kept in memory at most.
const CACHED_CLIPS: usize = 512;

/// The audio library of a server.
pub struct Library {
    config: Config,
    clips: Mutex<BTreeMap<String, Arc<Clip>>>,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library")
            .field("flows", &self.config.flows)
            .field("cache", &self.config.cache)
            .finish_non_exhaustive()
    }
}

impl Library {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            clips: Mutex::new(BTreeMap::new()),
        }
    }

    /// The flows directory.
    pub fn flows(&self) -> &Path {
        &self.config.flows
    }

    /// A clip by cache key, made by `make` when missing.
    fn cached(
        &self,
        key: String,
        make: impl FnOnce() -> Result<Clip, String>,
    ) -> Result<Arc<Clip>, String> {
        if let Some(clip) = self
            .clips
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok(Arc::clone(clip));
        }
        let clip = Arc::new(make()?);
        let mut clips = self.clips.lock().unwrap_or_else(PoisonError::into_inner);
        if clips.len() >= CACHED_CLIPS {
            clips.clear();
        }
        clips.insert(key, Arc::clone(&clip));
        Ok(clip)
    }

    /// A WAV file's clip, cached by path and modification time.
    fn wav(&self, path: &Path) -> Result<Arc<Clip>, String> {
        let stamp = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let key = format!("wav:{}:{stamp:?}", path.display());
        self.cached(key, || Clip::from_wav(path).map_err(|e| e.to_string()))
    }

    /// What `play` plays for `name` in `account`.
    pub fn media(
        &self,
        account: &AccountFlows,
        name: &str,
        language: Option<&str>,
    ) -> Result<Resolved, String> {
        if name.starts_with("tone_stream://") {
            let clip = self.cached(format!("tone:{name}"), || {
                Clip::tone_stream(name).map_err(|e| e.to_string())
            })?;
            return Ok(Resolved {
                clip,
                source: "tone".to_owned(),
            });
        }
        if name.starts_with("http://") || name.starts_with("https://") {
            return Err(format!("media URLs are not supported yet: {name}"));
        }
        // Kazoo's `/<account>/<media id>` form names a media document too.
        let id = name.rsplit('/').next().unwrap_or(name);
        if let Some(doc) = account.document("media", id) {
            if let Ok(doc_id) = DocId::new(id) {
                let path = self
                    .config
                    .flows
                    .join(account.account.id.as_str())
                    .join(crate::store::MEDIA)
                    .join(format!("{}.wav", doc_id.as_str()));
                if path.is_file() {
                    return Ok(Resolved {
                        clip: self.wav(&path)?,
                        source: format!("media {id} ({})", path.display()),
                    });
                }
            }
            let body = &doc.body;
            let source = body.get("media_source").and_then(Value::as_str);
            let tts = body.get("tts");
            let text = tts.and_then(|t| t.get("text")).and_then(Value::as_str);
            if let (Some("tts"), Some(text)) = (source, text) {
                let voice = tts
                    .and_then(|t| t.get("voice"))
                    .and_then(Value::as_str)
                    .unwrap_or("female/en-US");
                let spoken = self.tts(text, voice, language)?;
                return Ok(Resolved {
                    clip: spoken.clip,
                    source: format!("media {id} (tts)"),
                });
            }
            return Err(format!(
                "media {id} has no audio: no {id}.wav beside {id}.json and no tts text"
            ));
        }
        for dir in &self.config.prompts {
            let path = dir.join(format!("{id}.wav"));
            if path.is_file() {
                return Ok(Resolved {
                    clip: self.wav(&path)?,
                    source: format!("prompt {}", path.display()),
                });
            }
        }
        Err(format!("no media document, prompt or URL named {name:?}"))
    }

    /// `text` spoken with `voice` (Kazoo's `female/en-US` form).
    pub fn tts(&self, text: &str, voice: &str, language: Option<&str>) -> Result<Resolved, String> {
        let engine = self.config.tts.name().to_owned();
        let path = tts::cache_path(&self.config.cache, &engine, voice, language, text);
        if !path.is_file() {
            let dir = path.parent().unwrap_or(&self.config.cache);
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let temp = tempfile::Builder::new()
                .prefix(".tts.")
                .suffix(".wav")
                .tempfile_in(dir)
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            self.config.tts.render(text, voice, language, temp.path())?;
            temp.persist(&path)
                .map_err(|e| format!("{}: {}", path.display(), e.error))?;
        }
        Ok(Resolved {
            clip: self.wav(&path)?,
            source: format!("tts {engine}"),
        })
    }

    /// `say`: `text` read as `kind` (`number`, `digits`, `name_spelled`, ...).
    pub fn say(&self, text: &str, kind: &str, language: Option<&str>) -> Result<Resolved, String> {
        let spoken = match kind {
            "name_spelled" | "letters" | "digits" | "iterated" => text
                .chars()
                .filter(|c| !c.is_whitespace())
                .map(String::from)
                .collect::<Vec<_>>()
                .join(" "),
            _ => text.to_owned(),
        };
        self.tts(&spoken, "female/en-US", language)
    }
}
