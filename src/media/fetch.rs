//! Media URLs: an `http(s)://` WAV file downloaded once into the cache
//! (`<cache>/media/<sha256 of the URL>.wav`) and played from there ever
//! after, as Kazoo caches media it fetched. Blocking.
//!
//! Loopback, private and link-local hosts are refused unless allowed (the
//! check the simulator's HTTP uses, [`crate::sim::network::guard`]), at
//! every redirect too, which is why redirects are followed here and not by
//! the HTTP client. A download is bounded in time and size; a body that is
//! not a WAV file is refused and nothing is cached, so a failed fetch is
//! tried again at the next play.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::audio::{AudioError, Clip};
use super::tts::cache_key;

/// Limits of one download.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Of each request (redirects each get their own).
    pub timeout: Duration,
    /// The largest body accepted, in bytes.
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(15),
            max_bytes: 20 << 20,
        }
    }
}

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 5;

/// Where the download of `url` is cached.
pub fn cache_path(cache: &Path, url: &str) -> PathBuf {
    cache
        .join("media")
        .join(format!("{}.wav", cache_key(&["url", url])))
}

/// The cached file of `url`, downloading it first when it is not cached.
pub fn cached(
    cache: &Path,
    url: &str,
    allow_private: bool,
    limits: Limits,
) -> Result<PathBuf, String> {
    let path = cache_path(cache, url);
    if path.is_file() {
        return Ok(path);
    }
    let body = download(url, allow_private, limits)?;
    if !(body.len() >= 12 && &body[..4] == b"RIFF" && &body[8..12] == b"WAVE") {
        return Err(format!(
            "{url}: not a WAV file (only WAV media URLs can be played)"
        ));
    }
    let dir = path.parent().unwrap_or(cache);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut temp = tempfile::Builder::new()
        .prefix(".url.")
        .suffix(".wav")
        .tempfile_in(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    temp.write_all(&body)
        .map_err(|e| format!("{}: {e}", temp.path().display()))?;
    // A WAV header over broken audio is refused before it is cached.
    Clip::from_wav(temp.path()).map_err(|e| match e {
        AudioError::Wav { message, .. } => format!("{url}: not a playable WAV file: {message}"),
        e @ AudioError::Tone { .. } => format!("{url}: {e}"),
    })?;
    temp.persist(&path)
        .map_err(|e| format!("{}: {}", path.display(), e.error))?;
    Ok(path)
}

/// The body at `url`, following redirects; `Err` says what failed.
pub fn download(url: &str, allow_private: bool, limits: Limits) -> Result<Vec<u8>, String> {
    let agent = crate::sim::network::agent(
        ureq::Agent::config_builder()
            .timeout_global(Some(limits.timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .build(),
        allow_private,
    );
    let mut current = url.to_owned();
    for _ in 0..=MAX_REDIRECTS {
        crate::sim::network::guard(&current, allow_private)
            .map_err(|e| format!("{current}: {e}"))?;
        let mut response = agent
            .get(&current)
            .call()
            .map_err(|e| format!("{current}: {e}"))?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| format!("{current}: HTTP {status} without a Location"))?;
            current = resolve(&current, location)
                .ok_or_else(|| format!("{current}: cannot follow the redirect to {location:?}"))?;
            continue;
        }
        if !status.is_success() {
            return Err(format!("{current}: HTTP {}", status.as_u16()));
        }
        let declared = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limits.max_bytes) {
            return Err(too_large(&current, limits));
        }
        return response
            .body_mut()
            .with_config()
            .limit(limits.max_bytes)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => too_large(&current, limits),
                e => format!("{current}: {e}"),
            });
    }
    Err(format!("{url}: more than {MAX_REDIRECTS} redirects"))
}

fn too_large(url: &str, limits: Limits) -> String {
    format!(
        "{url}: larger than {} bytes, the most a media URL may be",
        limits.max_bytes
    )
}

/// A redirect's `Location` against the URL that answered it: absolute,
/// scheme-relative (`//host/x`), path-absolute (`/x`) or relative (`x`).
fn resolve(base: &str, location: &str) -> Option<String> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return Some(location.to_owned());
    }
    let (scheme, rest) = base.split_once("://")?;
    if let Some(authority_path) = location.strip_prefix("//") {
        return Some(format!("{scheme}://{authority_path}"));
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let origin = format!("{scheme}://{}", &rest[..authority_end]);
    if location.starts_with('/') {
        return Some(format!("{origin}{location}"));
    }
    let path = &rest[authority_end..];
    let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    let dir = if dir.is_empty() { "/" } else { dir };
    Some(format!("{origin}{dir}{location}"))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::thread::JoinHandle;

    use super::*;

    /// One second of 8 kHz 16-bit silence as WAV bytes.
    pub(crate) fn wav_bytes() -> Vec<u8> {
        let mut cursor = std::io::Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for i in 0..8000_i32 {
            writer
                .write_sample(i16::try_from(i % 100).unwrap())
                .unwrap();
        }
        writer.finalize().unwrap();
        cursor.into_inner()
    }

    /// A server on 127.0.0.1 that answers `responses.len()` connections,
    /// one canned response each, then stops. Returns its base URL.
    pub(crate) fn serve(responses: Vec<Vec<u8>>) -> (String, JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let mut served = 0;
            for response in responses {
                let (mut stream, _) = listener.accept().unwrap();
                let mut request = Vec::new();
                let mut buf = [0_u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = stream.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                let _ = stream.write_all(&response);
                served += 1;
            }
            served
        });
        (base, handle)
    }

    pub(crate) fn ok(body: &[u8]) -> Vec<u8> {
        let mut response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: audio/wav\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        response.extend_from_slice(body);
        response
    }

    /// A 200 without a length: the body ends when the connection closes.
    fn until_close(body: &[u8]) -> Vec<u8> {
        let mut response = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_vec();
        response.extend_from_slice(body);
        response
    }

    fn status(line: &str, headers: &str) -> Vec<u8> {
        format!("HTTP/1.1 {line}\r\n{headers}content-length: 0\r\nconnection: close\r\n\r\n")
            .into_bytes()
    }

    #[test]
    fn private_hosts_are_refused_before_connecting() {
        let dir = tempfile::tempdir().unwrap();
        for url in [
            "http://127.0.0.1:9/a.wav",
            "http://localhost:9/a.wav",
            "http://[::1]:9/a.wav",
        ] {
            let err = cached(dir.path(), url, false, Limits::default()).unwrap_err();
            assert!(err.contains("refused"), "{url}: {err}");
        }
        assert!(!cache_path(dir.path(), "http://127.0.0.1:9/a.wav").exists());
    }

    #[test]
    fn fetched_once_then_played_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let wav = wav_bytes();
        let (base, server) = serve(vec![ok(&wav)]);
        let url = format!("{base}/greeting.wav");
        let path = cached(dir.path(), &url, true, Limits::default()).unwrap();
        assert_eq!(path, cache_path(dir.path(), &url));
        assert_eq!(std::fs::read(&path).unwrap(), wav);
        assert_eq!(server.join().unwrap(), 1);
        // The server is gone: a second play is served from the cache.
        assert_eq!(
            cached(dir.path(), &url, true, Limits::default()).unwrap(),
            path
        );
        assert!(path.starts_with(dir.path().join("media")));
        assert_ne!(
            cache_path(dir.path(), &url),
            cache_path(dir.path(), &format!("{url}?v=2"))
        );
    }

    #[test]
    fn redirects_are_followed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let wav = wav_bytes();
        let (base, server) = serve(vec![
            status("302 Found", "location: /real/file.wav\r\n"),
            ok(&wav),
        ]);
        let path = cached(
            dir.path(),
            &format!("{base}/moved.wav"),
            true,
            Limits::default(),
        )
        .unwrap();
        assert_eq!(std::fs::read(path).unwrap(), wav);
        assert_eq!(server.join().unwrap(), 2);
        assert_eq!(
            resolve("https://a.example/x/y.wav?q=1", "z.wav").as_deref(),
            Some("https://a.example/x/z.wav")
        );
        assert_eq!(
            resolve("https://a.example/x/y.wav", "/z.wav").as_deref(),
            Some("https://a.example/z.wav")
        );
        assert_eq!(
            resolve("https://a.example", "z.wav").as_deref(),
            Some("https://a.example/z.wav")
        );
        assert_eq!(
            resolve("https://a.example/x", "//b.example/z.wav").as_deref(),
            Some("https://b.example/z.wav")
        );
        assert_eq!(
            resolve("https://a.example/x", "http://127.0.0.1/z.wav").as_deref(),
            Some("http://127.0.0.1/z.wav")
        );
    }

    #[test]
    fn failures_are_errors_and_nothing_is_cached() {
        let dir = tempfile::tempdir().unwrap();
        let small = Limits {
            timeout: Duration::from_secs(5),
            max_bytes: 1000,
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (status("404 Not Found", ""), "HTTP 404"),
            (ok(b"<html>not audio</html>"), "not a WAV file"),
            (ok(&wav_bytes()), "larger than"),
            (
                ok(b"RIFF\x24\x00\x00\x00WAVEfmt broken"),
                "not a playable WAV file",
            ),
            (until_close(&wav_bytes()), "larger than"),
            (status("301 Moved", ""), "without a Location"),
        ];
        for (response, expected) in cases {
            let (base, server) = serve(vec![response]);
            let url = format!("{base}/greeting.wav");
            let err = cached(dir.path(), &url, true, small).unwrap_err();
            assert!(err.contains(expected), "{expected}: {err}");
            assert!(!cache_path(dir.path(), &url).exists());
            server.join().unwrap();
        }
    }
}
