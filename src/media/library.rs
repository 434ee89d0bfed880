//! Where the audio of a `play`, `tts` or `say` comes from. Blocking (files,
//! processes, HTTP): run it off the call's thread.
//!
//! A name played is, in this order:
//! 1. a `tone_stream://` (Kazoo/FreeSWITCH tone syntax);
//! 2. an `http(s)://` URL of a WAV file, fetched once and cached
//!    (loopback, private and link-local addresses refused unless allowed);
//! 3. a media document of the account: its `<id>.wav`, or for a
//!    `media_source: tts` document its text spoken;
//! 4. one of Kazoo's system prompts (`vm-enter_pass`, ...): a file of a
//!    `--prompts` folder, else the Asterisk recordings that say the same
//!    ([`super::prompts`], found in [`PROMPT_SETS`]), else its text spoken.
//!    A missing one is an `Err` naming what was looked for where; the live
//!    backend turns it into a warning and a short silence.
//!
//! `say` composes an English sentence ([`super::say`]) and speaks it.
//! Clips are cached in memory by what they came from; downloads and
//! renderings on disk under the cache folder.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

use super::audio::{self, Clip};
use super::tts::{self, Tts};
use super::{fetch, prompts, say};
use crate::catalog::AccountFlows;
use crate::ids::DocId;
use crate::store::FlowsDir;

/// How the library finds audio.
pub struct Config {
    /// The flows directory (media documents' audio).
    pub flows: PathBuf,
    /// Where renderings and downloads are cached.
    pub cache: PathBuf,
    /// Folders of system prompts by Kazoo's names (`<name>.wav`, or in a
    /// language subfolder), searched in order before [`PROMPT_SETS`].
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

/// Where installs put Asterisk's English prompts (Debian's
/// `asterisk-core-sounds-en-wav` the first), searched in order for the files
/// the prompt table names.
pub const PROMPT_SETS: &[&str] = &[
    "/usr/share/asterisk/sounds/en_US_f_Allison",
    "/usr/share/asterisk/sounds/en",
    "/var/lib/asterisk/sounds/en",
];

/// Where installs put music on hold (Debian's `asterisk-moh-opsound-wav`
/// the first): the first WAV, by name, of the first folder that has one is
/// `default_moh`.
pub const MOH_SETS: &[&str] = &["/usr/share/asterisk/moh", "/var/lib/asterisk/moh"];

/// Names that mean "the default music on hold": Kazoo's and FreeSWITCH's.
pub const DEFAULT_MOH: &[&str] = &["default_moh", "local_stream://default"];

/// The audio library of a server.
pub struct Library {
    config: Config,
    prompt_sets: Vec<PathBuf>,
    fetch: fetch::Limits,
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
            prompt_sets: PROMPT_SETS.iter().map(PathBuf::from).collect(),
            fetch: fetch::Limits::default(),
            clips: Mutex::new(BTreeMap::new()),
        }
    }

    /// Searches these Asterisk prompt sets instead of [`PROMPT_SETS`].
    #[must_use]
    pub fn with_prompt_sets(mut self, sets: Vec<PathBuf>) -> Self {
        self.prompt_sets = sets;
        self
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

    /// WAV files played one after the other, as one clip.
    fn wavs(&self, paths: &[PathBuf]) -> Result<Arc<Clip>, String> {
        if let [path] = paths {
            return self.wav(path);
        }
        let mut key = String::from("wavs");
        for path in paths {
            let stamp = std::fs::metadata(path)
                .and_then(|m| m.modified())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let _ = write!(key, "|{}:{stamp:?}", path.display());
        }
        self.cached(key, || {
            let mut samples = Vec::new();
            for path in paths {
                samples.extend_from_slice(&self.wav(path)?.samples);
            }
            Ok(Clip::once(samples))
        })
    }

    /// What `play` plays for `name` in `account`; `language` is the call's
    /// (it picks a `--prompts` subfolder, see [`Self::prompt`]).
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
        if DEFAULT_MOH.contains(&name) {
            return Ok(self.default_moh());
        }
        if name.starts_with("http://") || name.starts_with("https://") {
            let path = fetch::cached(
                &self.config.cache,
                name,
                self.config.allow_private_http,
                self.fetch,
            )?;
            return Ok(Resolved {
                clip: self.wav(&path)?,
                source: format!("url {name}"),
            });
        }
        // Kazoo's `/<account>/<media id>` form names a media document too.
        let id = name.rsplit('/').next().unwrap_or(name);
        if account.document("media", id).is_some() || self.recorded(account, id) {
            return self.document(account, id, language);
        }
        self.prompt(name, language)
    }

    /// The default music on hold: the first WAV of [`MOH_SETS`], else a
    /// tune of our own (a slow arpeggio), so that a hold is never silent.
    fn default_moh(&self) -> Resolved {
        for dir in MOH_SETS {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut wavs: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("wav")))
                .collect();
            wavs.sort();
            for path in wavs {
                if let Ok(clip) = self.wav(&path) {
                    return Resolved {
                        clip,
                        source: format!("music on hold {}", path.display()),
                    };
                }
            }
        }
        let clip = self
            .cached("moh:tune".to_owned(), || Ok(Clip::once(audio::hold_tune())))
            .unwrap_or_else(|_: String| Arc::new(Clip::silence(1000)));
        Resolved {
            clip,
            source: "music on hold (built-in tune)".to_owned(),
        }
    }

    /// Whether `<id>.wav` is in the account's media folder without a
    /// document yet: a recording of a call still running (its document is
    /// written when the call ends), played back by a review step.
    fn recorded(&self, account: &AccountFlows, id: &str) -> bool {
        DocId::new(id).is_ok_and(|doc_id| {
            FlowsDir::new(&self.config.flows)
                .media_audio(&account.account.id, &doc_id)
                .is_file()
        })
    }

    /// A media document's audio: its `<id>.wav`, or its TTS text spoken.
    fn document(
        &self,
        account: &AccountFlows,
        id: &str,
        language: Option<&str>,
    ) -> Result<Resolved, String> {
        if let Ok(doc_id) = DocId::new(id) {
            let path = FlowsDir::new(&self.config.flows).media_audio(&account.account.id, &doc_id);
            if path.is_file() {
                return Ok(Resolved {
                    clip: self.wav(&path)?,
                    source: format!("media {id} ({})", path.display()),
                });
            }
        }
        let body = account.document("media", id).map(|doc| &doc.body);
        let source = body
            .and_then(|b| b.get("media_source"))
            .and_then(Value::as_str);
        let tts = body.and_then(|b| b.get("tts"));
        let text = tts.and_then(|t| t.get("text")).and_then(Value::as_str);
        if let (Some("tts"), Some(text)) = (source, text) {
            let voice = tts
                .and_then(|t| t.get("voice"))
                .and_then(Value::as_str)
                .unwrap_or(PROMPT_VOICE);
            let spoken = self.tts(text, voice, language)?;
            return Ok(Resolved {
                clip: spoken.clip,
                source: format!("media {id} (tts)"),
            });
        }
        Err(format!(
            "media {id} has no audio: no {id}.wav beside {id}.json and no tts text"
        ))
    }

    /// One of Kazoo's system prompts (or a file of a prompt folder), in
    /// this order:
    /// 1. `<name>.wav` in a `--prompts` folder, trying first the language's
    ///    subfolder (`en-us/`, then `en/us/` as kazoo-sounds lays them out);
    /// 2. the Asterisk files the prompt table maps it onto, in the first
    ///    prompt set that has them all (a name not in the table: a file of
    ///    that name, so Asterisk's own names play too);
    /// 3. spoken by the TTS: the table's English text, or, for a name
    ///    shaped like Kazoo's (`hotdesk-new_thing`) that the table lacks,
    ///    the name in words, so the caller hears what was meant rather than
    ///    silence.
    ///
    /// Anything else is an `Err` that says what was looked for where.
    fn prompt(&self, played: &str, language: Option<&str>) -> Result<Resolved, String> {
        let folders = || {
            let all: Vec<String> = self
                .config
                .prompts
                .iter()
                .chain(&self.prompt_sets)
                .map(|d| d.display().to_string())
                .collect();
            if all.is_empty() {
                "no prompt folder".to_owned()
            } else {
                all.join(", ")
            }
        };
        let Some(reference) = prompts::parse(played) else {
            return Err(format!(
                "no media document, prompt or URL named {played:?} (not a prompt file name)"
            ));
        };
        let name = reference.name.as_str();
        let language = reference.language.as_deref().or(language);
        for dir in &self.config.prompts {
            for path in prompt_candidates(dir, name, language) {
                if path.is_file() {
                    return Ok(Resolved {
                        clip: self.wav(&path)?,
                        source: format!("prompt {name} ({})", path.display()),
                    });
                }
            }
        }
        let known = prompts::lookup(name);
        let by_name = [name];
        let files = known.map_or(&by_name[..], |p| p.asterisk);
        if !files.is_empty() {
            for set in &self.prompt_sets {
                let paths: Vec<PathBuf> =
                    files.iter().map(|f| set.join(format!("{f}.wav"))).collect();
                if paths.iter().all(|p| p.is_file()) {
                    return Ok(Resolved {
                        clip: self.wavs(&paths)?,
                        source: format!(
                            "prompt {name} ({} in {})",
                            files.join(" + "),
                            set.display()
                        ),
                    });
                }
            }
        }
        let (text, what) = match known {
            Some(prompt) => (prompt.text.to_owned(), "its text"),
            None if prompts::looks_like_prompt(name) => {
                (prompts::readable(name), "its name: not a known prompt")
            }
            None => {
                return Err(format!(
                    "no media document, prompt or URL named {played:?}: no {name}.wav in {}, and it is not one of Kazoo's system prompts",
                    folders()
                ));
            }
        };
        let spoken = self
            .tts(&text, PROMPT_VOICE, english(language))
            .map_err(|e| {
                format!(
                    "prompt {name}: no file in {}, and speaking it failed: {e}",
                    folders()
                )
            })?;
        Ok(Resolved {
            clip: spoken.clip,
            source: format!("prompt {name} (spoken, {what}: no file in {})", folders()),
        })
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

    /// `say`: `text` read as say type `kind` with say method `method`
    /// (`number` + `iterated`, `current_date_time`, `name_spelled`, ...;
    /// see [`say::sentence`]), spoken in English: a call in another language
    /// hears English (the source says so).
    pub fn say(
        &self,
        text: &str,
        kind: &str,
        method: Option<&str>,
        language: Option<&str>,
    ) -> Result<Resolved, String> {
        let sentence =
            say::sentence(text, kind, method, jiff::Timestamp::now()).map_err(|e| e.to_string())?;
        let spoken = self.tts(&sentence, PROMPT_VOICE, english(language))?;
        let note = match language {
            Some(lang) if english(Some(lang)).is_none() => {
                format!(" (in English: say has no {lang} sentences)")
            }
            _ => String::new(),
        };
        Ok(Resolved {
            clip: spoken.clip,
            source: format!("say {kind}: {sentence:?}{note}"),
        })
    }
}

/// The voice prompts, `say` and voiceless TTS documents are spoken with.
const PROMPT_VOICE: &str = "female/en-US";

/// `language` when it is a variant of English (`en`, `en-gb`), else
/// `None` (the voice's own `en-US`): prompt texts and say sentences are
/// English, so another language's voice would mangle them.
fn english(language: Option<&str>) -> Option<&str> {
    language.filter(|l| {
        let lower = l.to_ascii_lowercase();
        lower == "en" || lower.starts_with("en-") || lower.starts_with("en_")
    })
}

/// Where a `--prompts` folder may hold `name`: the language's subfolder
/// (`en-us/`, then `en/us/`), then the folder itself.
fn prompt_candidates(dir: &Path, name: &str, language: Option<&str>) -> Vec<PathBuf> {
    let file = format!("{name}.wav");
    let mut candidates = Vec::new();
    if let Some(lang) = language.filter(|l| prompts::is_language(l)) {
        let lang = lang.to_ascii_lowercase();
        candidates.push(dir.join(&lang).join(&file));
        if let Some((primary, region)) = lang.split_once('-') {
            candidates.push(dir.join(primary).join(region).join(&file));
        }
    }
    candidates.push(dir.join(file));
    candidates
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::catalog::{Catalog, KazooModules};
    use crate::media::fetch::tests::{ok, serve, wav_bytes};
    use crate::media::g711::RATE;
    use crate::store::Store;

    /// A speech engine that writes 10 ms of a tone per character and
    /// remembers what it was asked to say.
    #[derive(Default)]
    struct FakeTts {
        said: Mutex<Vec<String>>,
    }

    impl Tts for FakeTts {
        fn name(&self) -> &'static str {
            "fake"
        }

        fn render(
            &self,
            text: &str,
            _voice: &str,
            _language: Option<&str>,
            out: &Path,
        ) -> Result<(), String> {
            self.said.lock().unwrap().push(text.to_owned());
            write_wav(out, text.chars().count() * 80);
            Ok(())
        }
    }

    fn write_wav(path: &Path, samples: usize) {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..samples {
            writer
                .write_sample(i16::try_from(i % 64).unwrap() * 100)
                .unwrap();
        }
        writer.finalize().unwrap();
    }

    struct Fixture {
        dir: tempfile::TempDir,
        account: Arc<AccountFlows>,
        tts: Arc<FakeTts>,
    }

    impl Fixture {
        /// A flows directory with account `acme` and two media documents:
        /// `greeting` (a WAV of 0.5 s) and `spoken` (`media_source: tts`).
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let media = dir.path().join("flows/acme/media");
            std::fs::create_dir_all(&media).unwrap();
            std::fs::write(
                dir.path().join("flows/acme/account.json"),
                r#"{"name": "Acme"}"#,
            )
            .unwrap();
            std::fs::write(media.join("greeting.json"), r#"{"name": "Greeting"}"#).unwrap();
            write_wav(&media.join("greeting.wav"), 4000);
            std::fs::write(
                media.join("spoken.json"),
                r#"{"name": "Spoken", "media_source": "tts", "tts": {"text": "Welcome to Acme."}}"#,
            )
            .unwrap();
            let sources = FlowsDir::new(dir.path().join("flows")).read().unwrap();
            let (catalog, _) = Catalog::build(sources, &KazooModules);
            let account = Arc::clone(catalog.single_account().unwrap());
            Self {
                dir,
                account,
                tts: Arc::new(FakeTts::default()),
            }
        }

        fn library(&self, prompts: Vec<PathBuf>, allow_private_http: bool) -> Library {
            Library::new(Config {
                flows: self.dir.path().join("flows"),
                cache: self.dir.path().join("cache"),
                prompts,
                allow_private_http,
                tts: Arc::clone(&self.tts) as Arc<dyn Tts>,
            })
        }

        /// A library with no Asterisk prompt set: prompts come from
        /// `--prompts` folders or are spoken.
        fn bare(&self, prompts: Vec<PathBuf>) -> Library {
            self.library(prompts, false).with_prompt_sets(Vec::new())
        }

        fn said(&self) -> Vec<String> {
            self.tts.said.lock().unwrap().clone()
        }
    }

    #[test]
    fn documents_tones_and_missing_names() {
        let fx = Fixture::new();
        let library = fx.bare(Vec::new());
        let media = |name: &str| library.media(&fx.account, name, None);

        let greeting = media("greeting").unwrap();
        assert_eq!(greeting.clip.samples.len(), 4000);
        assert!(
            greeting.source.starts_with("media greeting"),
            "{}",
            greeting.source
        );
        let by_path = media("/acme/greeting").unwrap();
        assert!(
            Arc::ptr_eq(&greeting.clip, &by_path.clip),
            "cached in memory"
        );

        let spoken = media("spoken").unwrap();
        assert_eq!(spoken.source, "media spoken (tts)");
        assert_eq!(fx.said(), ["Welcome to Acme."]);
        assert_eq!(spoken.clip.samples.len(), "Welcome to Acme.".len() * 80);

        let tone = media("tone_stream://%(250,0,1000)").unwrap();
        assert_eq!(
            (tone.source.as_str(), tone.clip.duration_ms()),
            ("tone", Some(250))
        );
        assert!(media("tone_stream://%(x)").is_err());

        for missing in ["no_such_media", "Greeting2", "../../etc/passwd", "a b"] {
            let err = media(missing).unwrap_err();
            assert!(err.contains(&format!("{missing:?}")), "{err}");
        }
        let err = media("no_such_media").unwrap_err();
        assert!(err.contains("not one of Kazoo's system prompts"), "{err}");
        assert_eq!(fx.said().len(), 1, "nothing else was spoken");
    }

    #[test]
    fn prompts_from_prompt_folders_by_language() {
        let fx = Fixture::new();
        let folder = fx.dir.path().join("prompts");
        std::fs::create_dir_all(folder.join("fr/ca")).unwrap();
        std::fs::create_dir_all(folder.join("en-us")).unwrap();
        write_wav(&folder.join("vm-goodbye.wav"), 100);
        write_wav(&folder.join("en-us/vm-goodbye.wav"), 200);
        write_wav(&folder.join("fr/ca/vm-goodbye.wav"), 300);
        let library = fx.bare(vec![folder.clone()]);
        let len = |name: &str, language: Option<&str>| {
            library
                .media(&fx.account, name, language)
                .unwrap()
                .clip
                .samples
                .len()
        };
        assert_eq!(len("vm-goodbye", None), 100);
        assert_eq!(len("vm-goodbye", Some("en-US")), 200);
        assert_eq!(len("vm-goodbye", Some("fr-ca")), 300);
        assert_eq!(len("vm-goodbye", Some("de-de")), 100);
        assert_eq!(len("/system_media/fr-ca%2Fvm-goodbye", None), 300);
        assert_eq!(
            len("prompt://system_media/vm-goodbye/en-us", Some("fr-ca")),
            200
        );
        assert!(fx.said().is_empty());
    }

    #[test]
    fn prompts_without_files_are_spoken() {
        let fx = Fixture::new();
        let empty = fx.dir.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let library = fx
            .bare(vec![empty])
            .with_prompt_sets(vec![fx.dir.path().join("none")]);
        let enter_pass = library.media(&fx.account, "vm-enter_pass", None).unwrap();
        assert!(
            enter_pass.source.contains("spoken, its text"),
            "{}",
            enter_pass.source
        );
        let unknown = library
            .media(&fx.account, "system_media/hotdesk-new_thing", None)
            .unwrap();
        assert!(
            unknown.source.contains("not a known prompt"),
            "{}",
            unknown.source
        );
        assert_eq!(
            fx.said(),
            [
                prompts::lookup("vm-enter_pass").unwrap().text,
                "hotdesk new thing"
            ]
        );
    }

    #[test]
    fn prompts_from_an_asterisk_set() {
        let fx = Fixture::new();
        let set = fx.dir.path().join("asterisk");
        std::fs::create_dir_all(&set).unwrap();
        write_wav(&set.join("vm-INBOX.wav"), 100);
        write_wav(&set.join("vm-message.wav"), 50);
        write_wav(&set.join("hello-world.wav"), 70);
        let library = fx
            .bare(Vec::new())
            .with_prompt_sets(vec![fx.dir.path().join("none"), set]);
        let media = |name: &str| library.media(&fx.account, name, None).unwrap();
        let new_message = media("vm-new_message");
        assert_eq!(
            new_message.clip.samples.len(),
            150,
            "{}",
            new_message.source
        );
        assert!(
            new_message.source.contains("vm-INBOX + vm-message"),
            "{}",
            new_message.source
        );
        // Asterisk's own names play from the set too.
        assert_eq!(media("hello-world").clip.samples.len(), 70);
        // One of the files missing: the whole prompt is spoken instead.
        let new_messages = media("vm-new_messages");
        assert!(
            new_messages.source.contains("spoken"),
            "{}",
            new_messages.source
        );
        assert_eq!(fx.said(), ["new messages"]);
    }

    /// Debian's `asterisk-core-sounds-en-wav`, where CI installs it.
    #[test]
    fn system_prompts_play_from_the_installed_set() {
        let Some(dir) = prompts::tests::installed_set() else {
            return;
        };
        let fx = Fixture::new();
        let library = fx.library(Vec::new(), false);
        for name in [
            "vm-person",
            "vm-enter_pass",
            "menu-invalid_entry",
            "vm-not_available",
        ] {
            let played = library.media(&fx.account, name, None).unwrap();
            let set = dir.display().to_string();
            assert!(played.source.contains(&set), "{name}: {}", played.source);
            let ms = played.clip.duration_ms().unwrap();
            assert!((300..10_000).contains(&ms), "{name}: {ms} ms");
        }
        assert!(fx.said().is_empty());
    }

    #[test]
    fn media_urls() {
        let fx = Fixture::new();
        let wav = wav_bytes();
        let (base, server) = serve(vec![ok(&wav)]);
        let url = format!("{base}/hold.wav");
        let refused = fx
            .bare(Vec::new())
            .media(&fx.account, &url, None)
            .unwrap_err();
        assert!(refused.contains("refused"), "{refused}");
        let library = fx.library(Vec::new(), true);
        let played = library.media(&fx.account, &url, None).unwrap();
        assert_eq!(played.source, format!("url {url}"));
        assert_eq!(played.clip.duration_ms(), Some(1000));
        assert_eq!(server.join().unwrap(), 1);
        // Fetched once: a new library (empty memory) finds it on disk.
        let again = fx
            .library(Vec::new(), true)
            .media(&fx.account, &url, None)
            .unwrap();
        assert_eq!(again.clip.samples, played.clip.samples);
    }

    #[test]
    fn say_speaks_the_sentence() {
        let fx = Fixture::new();
        let library = fx.bare(Vec::new());
        let said = library.say("42", "number", None, Some("en-us")).unwrap();
        assert_eq!(said.source, "say number: \"forty-two\"");
        let iterated = library
            .say("42", "number", Some("iterated"), Some("fr-ca"))
            .unwrap();
        assert!(
            iterated
                .source
                .ends_with("(in English: say has no fr-ca sentences)"),
            "{}",
            iterated.source
        );
        assert_eq!(fx.said(), ["forty-two", "four two"]);
        let err = library.say("42", "weather", None, None).unwrap_err();
        assert!(err.contains("unknown type \"weather\""), "{err}");
    }

    /// The real engine, once: espeak-ng is installed here and in CI.
    #[test]
    fn espeak_says_a_number() {
        let dir = tempfile::tempdir().unwrap();
        let library = Library::new(Config {
            flows: dir.path().join("flows"),
            cache: dir.path().join("cache"),
            prompts: Vec::new(),
            allow_private_http: false,
            tts: Arc::new(tts::Espeak::default()),
        });
        let said = library
            .say("1796637900", "current_date_time", None, None)
            .unwrap_or_else(|e| panic!("{e} (apt-get install espeak-ng)"));
        let ms = said.clip.duration_ms().unwrap();
        assert!((2000..15_000).contains(&ms), "{ms} ms for {}", said.source);
        let peak = said
            .clip
            .samples
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap();
        assert!(peak > 1000, "silent: peak {peak}");
    }
}
