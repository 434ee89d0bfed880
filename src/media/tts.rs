//! Text to speech behind a trait, so that a cloud engine can be added:
//! [`Espeak`] renders offline with espeak-ng (a Debian package), and every
//! rendering is cached on disk by engine, voice, language and text.

use std::fmt::Write;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// A speech engine: text in, a WAV file out (any rate; the library
/// resamples).
pub trait Tts: Send + Sync {
    /// The engine's name (part of the cache key).
    fn name(&self) -> &str;
    /// Renders `text` into the WAV file at `out`.
    fn render(
        &self,
        text: &str,
        voice: &str,
        language: Option<&str>,
        out: &Path,
    ) -> Result<(), String>;
}

/// espeak-ng, run as a process (`espeak-ng -v VOICE -w OUT -- TEXT`).
#[derive(Debug, Clone)]
pub struct Espeak {
    pub program: PathBuf,
}

impl Default for Espeak {
    fn default() -> Self {
        Self {
            program: PathBuf::from("espeak-ng"),
        }
    }
}

/// Longest text spoken at once (characters).
pub const MAX_TEXT: usize = 4000;

/// Longest a rendering may take (espeak-ng speaks [`MAX_TEXT`] characters
/// in well under a second); past it the process is killed.
pub const RENDER_TIMEOUT: Duration = Duration::from_secs(30);

/// How often [`wait_bounded`] looks at the process.
const POLL: Duration = Duration::from_millis(10);

/// Waits for `child` at most about `timeout` (counted in polls, not read
/// from a clock): its exit status, or `None` when it is still running.
fn wait_bounded(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let polls = timeout.as_millis() / POLL.as_millis().max(1) + 1;
    for _ in 0..polls {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        std::thread::sleep(POLL);
    }
    child.try_wait()
}

impl Espeak {
    /// Whether the program can be found: a path that is a file, or a name
    /// found in a `PATH` folder.
    pub fn installed(&self) -> bool {
        if self.program.components().count() > 1 {
            return self.program.is_file();
        }
        std::env::var_os("PATH").is_some_and(|paths| {
            std::env::split_paths(&paths).any(|dir| dir.join(&self.program).is_file())
        })
    }

    /// espeak's voice for Kazoo's `female/en-US` style voices and a
    /// language (`en-us`, `fr-ca`, ...).
    pub fn voice(voice: &str, language: Option<&str>) -> String {
        let (gender, lang) = match voice.split_once('/') {
            Some((gender, lang)) => (gender, Some(lang)),
            None => (voice, None),
        };
        let lang = language
            .or(lang)
            .unwrap_or("en-us")
            .to_ascii_lowercase()
            .replace('_', "-");
        let lang: String = lang
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(16)
            .collect();
        let lang = if lang.is_empty() {
            "en-us".to_owned()
        } else {
            lang
        };
        if gender.eq_ignore_ascii_case("female") {
            format!("{lang}+f3")
        } else {
            lang
        }
    }
}

impl Tts for Espeak {
    fn name(&self) -> &'static str {
        "espeak-ng"
    }

    fn render(
        &self,
        text: &str,
        voice: &str,
        language: Option<&str>,
        out: &Path,
    ) -> Result<(), String> {
        let text: String = text.chars().take(MAX_TEXT).collect();
        let mut child = Command::new(&self.program)
            .arg("-v")
            .arg(Self::voice(voice, language))
            .arg("-w")
            .arg(out)
            .arg("--")
            .arg(&text)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot run {} ({e}); install it (Debian: apt-get install espeak-ng)",
                    self.program.display()
                )
            })?;
        let status = wait_bounded(&mut child, RENDER_TIMEOUT)
            .map_err(|e| format!("{}: {e}", self.program.display()))?;
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{} took longer than {RENDER_TIMEOUT:?}: stopped",
                self.program.display()
            ));
        };
        if !status.success() {
            let mut stderr = String::new();
            if let Some(pipe) = child.stderr.take() {
                let _ = pipe.take(16 << 10).read_to_string(&mut stderr);
            }
            return Err(format!(
                "{} failed: {}",
                self.program.display(),
                stderr.trim()
            ));
        }
        Ok(())
    }
}

/// The cache file of a rendering: `<cache>/tts/<sha256>.wav`.
pub fn cache_path(
    cache: &Path,
    engine: &str,
    voice: &str,
    language: Option<&str>,
    text: &str,
) -> PathBuf {
    let key = cache_key(&[engine, voice, language.unwrap_or(""), text]);
    cache.join("tts").join(format!("{key}.wav"))
}

/// A cache file's name: the SHA-256 of `parts` (each ended by a NUL, so
/// that `["ab", "c"]` and `["a", "bc"]` differ), in hex.
pub fn cache_key(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let mut name = String::new();
    for byte in hasher.finalize() {
        let _ = write!(name, "{byte:02x}");
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voices_and_cache_keys() {
        assert_eq!(Espeak::voice("female/en-US", None), "en-us+f3");
        assert_eq!(Espeak::voice("male/fr-CA", None), "fr-ca");
        assert_eq!(Espeak::voice("female/en-US", Some("de-de")), "de-de+f3");
        assert_eq!(Espeak::voice("x; rm -rf /", Some("en;`x`")), "enx");
        let dir = Path::new("/c");
        let a = cache_path(dir, "e", "v", None, "hello");
        assert_ne!(a, cache_path(dir, "e", "v", Some("fr"), "hello"));
        assert_ne!(a, cache_path(dir, "e", "v", None, "hello!"));
        assert!(a.starts_with("/c/tts"));
    }
}
