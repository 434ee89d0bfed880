//! Media audio and voicemail messages:
//! `/v2/accounts/{ACCOUNT_ID}/media/{MEDIA_ID}/raw` (the audio of a media
//! document, downloaded or uploaded) and
//! `/v2/accounts/{ACCOUNT_ID}/vmboxes/{VMBOX_ID}/messages[/{MEDIA_ID}[/raw]]`
//! (Kazoo's `cb_vmboxes` message calls), plus [`after_media_save`], which
//! the document writer calls so that a TTS media document is spoken once,
//! when it is saved, rather than at its first play.
//!
//! Audio is stored as calls play it cheapest: `media/<id>.wav` beside
//! `media/<id>.json`, 8 kHz mono 16-bit PCM ([`crate::media::convert`]).
//! An upload (`audio/wav` or `audio/mpeg`) is decoded, mixed down and
//! resampled, written atomically, and the document gets Kazoo's
//! `content_type`, `content_length` and `media_source: "upload"`.
//!
//! A box's messages are the `messages` array of its vmboxes document (what
//! the voicemail module keeps; Kazoo 3.x's layout), each with Kazoo's
//! message metadata; a message's audio is the media audio of its
//! `media_id`. Only a message listed in the box is served: a media id of
//! another box is 404 here, whatever exists. Changing a folder re-reads
//! the box and writes it only if no call changed it meanwhile (the
//! compare-and-swap of `call:update_doc`), so a message left during the
//! request is kept. `DELETE` moves the message to the `deleted` folder,
//! as Kazoo does (and as the voicemail menu's delete key does); its audio
//! is kept.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::auth::Authed;
use super::documents::{doc_id, doc_type, load_text, revision, shown};
use super::envelope::{ApiError, Success};
use super::kazoo;
use super::kinds;
use super::paging::{Listing, Order};
use super::state::AppState;
use super::{Body, blocking, request_data_off};
use crate::ids::{AccountId, DocId};
use crate::media::convert::{self, Format};
use crate::media::tts::{Espeak, MAX_TEXT, Tts};
use crate::model::Object;

/// The largest audio file served: 30 minutes of 8 kHz 16-bit audio (the
/// longest clip a call plays) is 28.8 MB.
const MAX_AUDIO_BYTES: usize = 64 << 20;

/// Kazoo's message folders.
const FOLDERS: [&str; 3] = ["new", "saved", "deleted"];

/// The voice of a TTS document without one (the media schema's default).
const DEFAULT_VOICE: &str = "female/en-US";

/// Tries of a folder change against calls writing the same box.
const SWAP_ATTEMPTS: usize = 5;

fn id_param(params: &BTreeMap<String, String>, name: &str) -> Result<DocId, ApiError> {
    doc_id(params.get(name).map_or("", String::as_str))
}

/// A WAV file as the answer (Kazoo answers raw audio, not an envelope).
fn audio_response(bytes: Vec<u8>) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "audio/wav")], bytes).into_response()
}

/// `GET /v2/accounts/{ACCOUNT_ID}/media/{MEDIA_ID}/raw`: the audio.
pub(crate) async fn raw(
    State(state): State<Arc<AppState>>,
    Authed(account): Authed,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let id = id_param(&params, "media_id")?;
    let audio = blocking(move || {
        if load_text(&state, &account, &doc_type(&kinds::MEDIA), &id)?.is_none() {
            return Err(ApiError::BadIdentifier(id.to_string()));
        }
        state
            .store
            .read_media_audio(&account, &id, MAX_AUDIO_BYTES)?
            .ok_or_else(|| ApiError::BadIdentifier(format!("{id} (no audio)")))
    })
    .await?;
    Ok(audio_response(audio))
}

/// The bytes of an upload, or why they could not be read.
fn upload_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if let Some(late) = super::timed_out(&rejection) {
            ApiError::BodyTimeout(late.0)
        } else if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(limit)
        } else {
            ApiError::InvalidRequest(rejection.body_text())
        }
    })
}

/// `POST /v2/accounts/{ACCOUNT_ID}/media/{MEDIA_ID}/raw`: new audio for a
/// media document (`audio/wav` or `audio/mpeg`), converted for calls.
pub(crate) async fn upload(
    State(state): State<Arc<AppState>>,
    Authed(account): Authed,
    Path(params): Path<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Success, ApiError> {
    let id = id_param(&params, "media_id")?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let format = Format::from_content_type(content_type).ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!(
            "Content-Type {content_type:?} is not audio this route takes: send audio/wav \
             (audio/x-wav, audio/wave) or audio/mpeg (audio/mp3)"
        ))
    })?;
    let bytes = upload_body(body, state.config.max_upload)?;
    blocking(move || store_upload(&state, &account, &id, format, &bytes)).await
}

/// Converts an upload and stores it with its document's new fields.
fn store_upload(
    state: &AppState,
    account: &AccountId,
    id: &DocId,
    format: Format,
    bytes: &[u8],
) -> Result<Success, ApiError> {
    let media = doc_type(&kinds::MEDIA);
    // Missing documents first, before the work of decoding.
    if load_text(state, account, &media, id)?.is_none() {
        return Err(ApiError::BadIdentifier(id.to_string()));
    }
    let converted = convert::to_phone_wav(bytes, format)
        .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let lock = state.write_lock(account);
    let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
    let (mut doc, _) = load_text(state, account, &media, id)?
        .ok_or_else(|| ApiError::BadIdentifier(id.to_string()))?;
    state.store.write_media_audio(account, id, &converted.wav)?;
    doc.insert("content_type".into(), json!("audio/wav"));
    doc.insert("content_length".into(), json!(converted.wav.len()));
    doc.insert("media_source".into(), json!("upload"));
    doc.insert(
        "pvt_modified".into(),
        json!(jiff::Timestamp::now().as_second() + kazoo::UNIX_EPOCH_GREGORIAN),
    );
    state.store.write_document(account, &media, id, &doc)?;
    let text = state
        .store
        .read_document(account, &media, id)?
        .unwrap_or_default();
    state.reload_document(account, &media, id)?;
    tracing::info!(
        "media {id} of {account}: {} ms of uploaded audio stored",
        converted.duration_ms
    );
    Ok(Success::ok(shown(&super::kinds::MEDIA, id, &doc)).with_revision(revision(&text)))
}

/// Called by the document writer after it saved a media document (under
/// the account's write lock or not: this takes no lock of the account).
/// Blocking (a process runs): call it off the runtime.
///
/// A `media_source: "tts"` document with a `tts.text` is spoken now (the
/// first [`MAX_TEXT`] characters, with `tts.voice`) into `<id>.wav`,
/// written atomically, and a note for the answer says so. Without a speech
/// engine (espeak-ng not installed) nothing is rendered: `Ok(None)`, a log
/// line, and any older `<id>.wav` (an earlier text's) removed, so calls
/// speak the text when they play it, as they do for documents written by
/// hand. A rendering that fails is a note too: the document is saved.
#[allow(
    dead_code,
    reason = "called by the document writer (api/documents.rs), merged from another branch"
)]
pub(crate) fn after_media_save(
    state: &AppState,
    account: &AccountId,
    id: &DocId,
    doc: &Object,
) -> Result<Option<String>, ApiError> {
    render_tts(state, account, id, doc, &Espeak::default())
}

/// `(text, voice)` of a TTS media document.
fn tts_of(doc: &Object) -> Option<(&str, &str)> {
    if doc.get("media_source").and_then(Value::as_str) != Some("tts") {
        return None;
    }
    let tts = doc.get("tts")?;
    let text = tts
        .get("text")
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty())?;
    let voice = tts
        .get("voice")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_VOICE);
    Some((text, voice))
}

fn render_tts(
    state: &AppState,
    account: &AccountId,
    id: &DocId,
    doc: &Object,
    engine: &Espeak,
) -> Result<Option<String>, ApiError> {
    let Some((text, voice)) = tts_of(doc) else {
        return Ok(None);
    };
    if !engine.installed() {
        let removed = state.store.remove_media_audio(account, id)?;
        tracing::info!(
            "media {id} of {account}: no speech engine ({} not found): tts.text is spoken when \
             played{}",
            engine.program.display(),
            if removed {
                "; the older audio removed"
            } else {
                ""
            }
        );
        return Ok(None);
    }
    let temp = tempfile::Builder::new()
        .prefix("callflow-tts-")
        .suffix(".wav")
        .tempfile()
        .map_err(|e| ApiError::Internal(format!("a temporary file for speech: {e}")))?;
    if let Err(e) = engine.render(text, voice, None, temp.path()) {
        tracing::warn!("media {id} of {account}: tts.text not rendered: {e}");
        return Ok(Some(format!(
            "tts.text was not rendered ({e}); calls try again when they play it"
        )));
    }
    // Our own temporary file, outside the flows directory.
    let spoken = std::fs::read(temp.path())
        .map_err(|e| ApiError::Internal(format!("{}: {e}", temp.path().display())))?;
    let converted = convert::to_phone_wav(&spoken, Format::Wav)
        .map_err(|e| ApiError::Internal(format!("{}'s output: {e}", engine.name())))?;
    state.store.write_media_audio(account, id, &converted.wav)?;
    let cut = if text.chars().count() > MAX_TEXT {
        format!(" (its first {MAX_TEXT} characters)")
    } else {
        String::new()
    };
    Ok(Some(format!(
        "tts.text{cut} rendered with {} (voice {}) to {id}.wav: {} ms",
        engine.name(),
        Espeak::voice(voice, None),
        converted.duration_ms
    )))
}

// ---------------------------------------------------------------------------
// Voicemail messages

/// A box's stored document and its file's text; 404 when there is none.
fn load_box(
    state: &AppState,
    account: &AccountId,
    box_id: &DocId,
) -> Result<(Object, String), ApiError> {
    load_text(state, account, &doc_type(&kinds::VMBOXES), box_id)?
        .ok_or_else(|| ApiError::BadIdentifier(box_id.to_string()))
}

/// The message objects of a box document.
fn messages_of(doc: &Object) -> impl Iterator<Item = &Object> {
    doc.get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

fn media_id_of(message: &Object) -> Option<&str> {
    message.get("media_id").and_then(Value::as_str)
}

/// A message as the API shows it: its metadata, `folder` `new` when it
/// has none (as Kazoo's fetch does).
fn shown_message(message: &Object) -> Value {
    let mut out = kazoo::public(message);
    if out.get("folder").and_then(Value::as_str).is_none() {
        out.insert("folder".into(), json!("new"));
    }
    Value::Object(out)
}

/// The message of `media_id` in the box; 404 when the box does not list it.
fn find_message<'a>(doc: &'a Object, media_id: &DocId) -> Result<&'a Object, ApiError> {
    messages_of(doc)
        .find(|m| media_id_of(m) == Some(media_id.as_str()))
        .ok_or_else(|| ApiError::BadIdentifier(media_id.to_string()))
}

/// A folder name, or Kazoo's validation error for `folder`.
fn parse_folder(value: &str) -> Result<&'static str, ApiError> {
    FOLDERS.into_iter().find(|f| *f == value).ok_or_else(|| {
        let mut errors = Map::new();
        errors.insert(
            "folder".into(),
            json!({"enum": {
                "message": format!("folder must be one of new, saved, deleted, not {value:?}"),
                "target": FOLDERS,
                "value": value,
            }}),
        );
        ApiError::Validation(errors)
    })
}

/// `GET /v2/accounts/{ACCOUNT_ID}/vmboxes/{VMBOX_ID}/messages`: the box's
/// messages, oldest first (`timestamp`, then `media_id`); `?folder=` keeps
/// one folder; Crossbar's filters (`filter_folder=saved`, ...) and paging.
pub(crate) async fn messages(
    State(state): State<Arc<AppState>>,
    Authed(account): Authed,
    Path(params): Path<BTreeMap<String, String>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Success, ApiError> {
    let box_id = id_param(&params, "vmbox_id")?;
    let mut folder = None;
    let mut rest = Vec::new();
    for (key, value) in query {
        if key == "folder" {
            folder = Some(parse_folder(&value)?);
        } else {
            rest.push((key, value));
        }
    }
    let listing = Listing::parse(&rest, state.config.page_size)?;
    blocking(move || {
        let (doc, _) = load_box(&state, &account, &box_id)?;
        let mut rows: Vec<Value> = messages_of(&doc)
            .map(shown_message)
            .filter(|m| folder.is_none_or(|f| m["folder"] == f))
            .filter(|m| listing.passes(m))
            .collect();
        let key = |m: &Value| {
            (
                m["timestamp"].as_i64().unwrap_or_default(),
                m["media_id"].as_str().unwrap_or_default().to_owned(),
            )
        };
        rows.sort_by_key(key);
        listing.answer(rows, key, Order::Ascending, |m| m)
    })
    .await
}

/// `GET /v2/accounts/{ACCOUNT_ID}/vmboxes/{VMBOX_ID}/messages/{MEDIA_ID}`.
pub(crate) async fn message(
    State(state): State<Arc<AppState>>,
    Authed(account): Authed,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<Success, ApiError> {
    let box_id = id_param(&params, "vmbox_id")?;
    let media_id = id_param(&params, "media_id")?;
    blocking(move || {
        let (doc, _) = load_box(&state, &account, &box_id)?;
        Ok(Success::ok(shown_message(find_message(&doc, &media_id)?)))
    })
    .await
}

/// `GET .../vmboxes/{VMBOX_ID}/messages/{MEDIA_ID}/raw`: the message's
/// audio.
pub(crate) async fn message_raw(
    State(state): State<Arc<AppState>>,
    Authed(account): Authed,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let box_id = id_param(&params, "vmbox_id")?;
    let media_id = id_param(&params, "media_id")?;
    let audio = blocking(move || {
        let (doc, _) = load_box(&state, &account, &box_id)?;
        find_message(&doc, &media_id)?;
        state
            .store
            .read_media_audio(&account, &media_id, MAX_AUDIO_BYTES)?
            .ok_or_else(|| ApiError::BadIdentifier(format!("{media_id} (no audio)")))
    })
    .await?;
    Ok(audio_response(audio))
}

/// Moves a message to `folder`: the box re-read and written only if no one
/// wrote it meanwhile (else tried again).
fn set_folder(
    state: &AppState,
    account: &AccountId,
    box_id: &DocId,
    media_id: &DocId,
    folder: &str,
) -> Result<Value, ApiError> {
    let vmboxes = doc_type(&kinds::VMBOXES);
    let lock = state.write_lock(account);
    let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
    for _ in 0..SWAP_ATTEMPTS {
        let (mut doc, text) = load_box(state, account, box_id)?;
        find_message(&doc, media_id)?;
        let mut changed = None;
        if let Some(Value::Array(messages)) = doc.get_mut("messages") {
            for message in messages.iter_mut().filter_map(Value::as_object_mut) {
                if media_id_of(message) == Some(media_id.as_str()) {
                    message.insert("folder".into(), json!(folder));
                    changed.get_or_insert_with(|| shown_message(message));
                }
            }
        }
        let Some(changed) = changed else {
            return Err(ApiError::BadIdentifier(media_id.to_string()));
        };
        let written = state
            .store
            .write_document_if(account, &vmboxes, box_id, &doc, |now| {
                now == Some(text.as_str())
            })?;
        if written {
            state.reload_document(account, &vmboxes, box_id)?;
            return Ok(changed);
        }
    }
    Err(ApiError::Conflict(format!(
        "voicemail box {box_id} kept changing under the request ({SWAP_ATTEMPTS} tries)"
    )))
}

/// The folder a `POST` asks for: `data.folder`, else `?folder=`, else
/// `saved` (Kazoo's default).
fn requested_folder(data: &Object, query: &[(String, String)]) -> Result<&'static str, ApiError> {
    if data.contains_key("source_id") {
        return Err(ApiError::InvalidRequest(
            "source_id (moving or copying a message to other boxes) is not supported; \
             change its folder with {\"data\": {\"folder\": \"saved\"}}"
                .to_owned(),
        ));
    }
    match data.get("folder") {
        Some(Value::String(folder)) => parse_folder(folder),
        Some(other) => parse_folder(&other.to_string()),
        None => query
            .iter()
            .find(|(k, _)| k == "folder")
            .map_or(Ok("saved"), |(_, v)| parse_folder(v)),
    }
}

/// `POST .../vmboxes/{VMBOX_ID}/messages/{MEDIA_ID}` with
/// `{"data": {"folder": "saved"}}` (or `?folder=saved`): changes the
/// message's folder; the answer is the message.
pub(crate) async fn change_message(
    State(state): State<Arc<AppState>>,
    Authed(account): Authed,
    Path(params): Path<BTreeMap<String, String>>,
    Query(query): Query<Vec<(String, String)>>,
    body: Body,
) -> Result<Success, ApiError> {
    let box_id = id_param(&params, "vmbox_id")?;
    let media_id = id_param(&params, "media_id")?;
    let data = match &body {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Object::new(),
        _ => request_data_off(body).await?,
    };
    let folder = requested_folder(&data, &query)?;
    let message =
        blocking(move || set_folder(&state, &account, &box_id, &media_id, folder)).await?;
    Ok(Success::ok(message))
}

/// `DELETE .../vmboxes/{VMBOX_ID}/messages/{MEDIA_ID}`: the message moves
/// to the `deleted` folder (Kazoo's delete; its audio is kept).
pub(crate) async fn delete_message(
    State(state): State<Arc<AppState>>,
    Authed(account): Authed,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<Success, ApiError> {
    let box_id = id_param(&params, "vmbox_id")?;
    let media_id = id_param(&params, "media_id")?;
    let message =
        blocking(move || set_folder(&state, &account, &box_id, &media_id, "deleted")).await?;
    Ok(Success::ok(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reload::Paths;

    /// A server state on a flows directory with account `acme` and the
    /// media document `doc` as `spoken`.
    fn state_with(doc: &Value) -> (tempfile::TempDir, AppState, AccountId, DocId) {
        let dir = tempfile::tempdir().unwrap();
        let flows = dir.path().join("flows");
        std::fs::create_dir_all(flows.join("acme/media")).unwrap();
        std::fs::write(flows.join("acme/account.json"), r#"{"name": "Acme"}"#).unwrap();
        std::fs::write(flows.join("acme/media/spoken.json"), doc.to_string()).unwrap();
        let paths = Paths {
            flows,
            scripts: Vec::new(),
        };
        let (state, _) = AppState::load(paths, super::super::Config::default()).unwrap();
        let account = AccountId::new("acme").unwrap();
        let id = DocId::new("spoken").unwrap();
        (dir, state, account, id)
    }

    fn object(value: &Value) -> Object {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn tts_documents_are_rendered_when_saved() {
        if !Espeak::default().installed() {
            println!("SKIPPED tts_documents_are_rendered_when_saved: espeak-ng is not installed");
            return;
        }
        let doc = json!({"name": "Spoken", "media_source": "tts",
            "tts": {"text": "Thank you for calling.", "voice": "male/en-US"}});
        let (_dir, state, account, id) = state_with(&doc);
        let note = after_media_save(&state, &account, &id, &object(&doc))
            .unwrap()
            .expect("a note");
        assert!(note.contains("rendered with espeak-ng"), "{note}");
        assert!(note.contains("voice en-us"), "{note}");
        let wav = state
            .store
            .read_media_audio(&account, &id, MAX_AUDIO_BYTES)
            .unwrap()
            .expect("spoken.wav");
        let reader = hound::WavReader::new(std::io::Cursor::new(&wav)).unwrap();
        let spec = reader.spec();
        assert_eq!(
            (spec.sample_rate, spec.channels, spec.bits_per_sample),
            (8000, 1, 16)
        );
        let ms = u64::from(reader.duration()) / 8;
        assert!((500..5000).contains(&ms), "{ms} ms");

        // Not a TTS document: nothing to do.
        let upload = json!({"name": "Spoken", "media_source": "upload"});
        assert_eq!(
            after_media_save(&state, &account, &id, &object(&upload)).unwrap(),
            None
        );
        let empty = json!({"name": "Spoken", "media_source": "tts", "tts": {"text": " "}});
        assert_eq!(
            after_media_save(&state, &account, &id, &object(&empty)).unwrap(),
            None
        );
    }

    #[test]
    fn without_an_engine_nothing_is_rendered_and_older_audio_goes() {
        let doc = json!({"name": "Spoken", "media_source": "tts", "tts": {"text": "Hello."}});
        let (_dir, state, account, id) = state_with(&doc);
        state
            .store
            .write_media_audio(&account, &id, &convert::encode_wav(&[0; 800]))
            .unwrap();
        let missing = Espeak {
            program: "/nonexistent/espeak-ng".into(),
        };
        assert_eq!(
            render_tts(&state, &account, &id, &object(&doc), &missing).unwrap(),
            None
        );
        assert!(!state.store.media_audio(&account, &id).exists());
        // Nothing to remove the second time.
        assert_eq!(
            render_tts(&state, &account, &id, &object(&doc), &missing).unwrap(),
            None
        );
    }

    #[test]
    fn folders_are_validated() {
        assert_eq!(parse_folder("saved").unwrap(), "saved");
        let Err(ApiError::Validation(errors)) = parse_folder("archive") else {
            panic!("a validation error");
        };
        assert_eq!(errors["folder"]["enum"]["value"], "archive");
        let query = vec![("folder".to_owned(), "new".to_owned())];
        assert_eq!(requested_folder(&Object::new(), &query).unwrap(), "new");
        assert_eq!(requested_folder(&Object::new(), &[]).unwrap(), "saved");
        let body = object(&json!({"folder": "deleted"}));
        assert_eq!(requested_folder(&body, &query).unwrap(), "deleted");
        let moved = object(&json!({"source_id": "vm-2"}));
        assert!(matches!(
            requested_folder(&moved, &[]),
            Err(ApiError::InvalidRequest(_))
        ));
    }
}
