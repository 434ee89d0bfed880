//! Media audio and voicemail messages over the REST API: uploads (WAV and
//! MP3) converted to 8 kHz mono and downloaded back, every refusal, and a
//! box's messages listed, fetched, moved between folders, deleted and
//! played, never another box's.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use callflow::api::Config;

use crate::api::{Reply, Server, assert_envelope, assert_error, envelope, login, sample_flows};

/// Sends `body` as it is, with `content_type` when given; the answer's
/// bytes as they came.
fn send_raw(
    method: &str,
    url: &str,
    token: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> (Reply, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_mins(1)))
        .build()
        .into();
    let mut builder = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("X-Auth-Token", token);
    if let Some(content_type) = content_type {
        builder = builder.header("Content-Type", content_type);
    }
    let mut response = agent.run(builder.body(body.to_vec()).unwrap()).unwrap();
    let headers: BTreeMap<String, String> = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    let bytes = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let reply = Reply {
        status: response.status().as_u16(),
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
        headers,
    };
    (reply, bytes)
}

/// `seconds` of a 440 Hz tone at `rate` Hz, `channels` channels, 16 bits.
fn tone_wav(rate: u32, channels: u16, seconds: u32) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut out, spec).unwrap();
    for i in 0..rate * seconds {
        let t = f64::from(i) / f64::from(rate);
        let v = (std::f64::consts::TAU * 440.0 * t).sin() * 12_000.0;
        for _ in 0..channels {
            #[allow(clippy::cast_possible_truncation)]
            writer.write_sample(v as i16).unwrap();
        }
    }
    writer.finalize().unwrap();
    out.into_inner()
}

/// A WAV file's rate, channels, bits and samples.
fn read_wav(bytes: &[u8]) -> (u32, u16, u16, Vec<i16>) {
    let mut reader = hound::WavReader::new(Cursor::new(bytes)).unwrap();
    let spec = reader.spec();
    let samples = reader.samples::<i16>().map(Result::unwrap).collect();
    (
        spec.sample_rate,
        spec.channels,
        spec.bits_per_sample,
        samples,
    )
}

fn write_json(path: &Path, value: &Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

const MP3: &[u8] = include_bytes!("fixtures/tone-500hz-1s.mp3");

#[test]
fn uploads_are_converted_for_calls_and_downloaded() {
    let (_dir, flows) = sample_flows();
    write_json(
        &flows.join("acme/media/hold.json"),
        &json!({"name": "Hold music", "media_source": "tts", "tts": {"text": "Please hold."}}),
    );
    let server = Server::start(&flows, Config::default());
    let token = login(&server, &flows, "acme");
    let raw = server.url("/v2/accounts/acme/media/hold/raw");

    // 20 s of 16 kHz stereo: 1.28 MB, over the 1 MiB of JSON bodies.
    let wav = tone_wav(16_000, 2, 20);
    assert!(wav.len() > Config::default().max_body);
    let (uploaded, _) = send_raw("POST", &raw, &token, Some("audio/wav"), &wav);
    assert_eq!(uploaded.status, 200, "{}", uploaded.text);
    assert_envelope(&uploaded, "success");
    let data = &uploaded.body["data"];
    assert_eq!(data["id"], "hold");
    assert_eq!(data["name"], "Hold music");
    assert_eq!(data["media_source"], "upload");
    assert_eq!(data["content_type"], "audio/wav");
    let stored = std::fs::read(flows.join("acme/media/hold.wav")).unwrap();
    assert_eq!(data["content_length"], stored.len());
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(flows.join("acme/media/hold.json")).unwrap())
            .unwrap();
    assert_eq!(on_disk["media_source"], "upload");
    assert!(on_disk["pvt_modified"].is_i64());

    let (downloaded, bytes) = send_raw("GET", &raw, &token, None, b"");
    assert_eq!(downloaded.status, 200);
    assert_eq!(downloaded.headers["content-type"], "audio/wav");
    assert_eq!(bytes, stored);
    let (rate, channels, bits, samples) = read_wav(&bytes);
    assert_eq!((rate, channels, bits), (8000, 1, 16));
    let len = i64::try_from(samples.len()).unwrap();
    assert!((len - 160_000).abs() < 400, "{len} samples for 20 s");
    let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap();
    assert!((10_000..14_000).contains(&peak), "peak {peak}");

    // MP3 (`audio/mpeg` and its alias) replaces it.
    for content_type in ["audio/mpeg", "audio/mp3"] {
        let (uploaded, _) = send_raw("POST", &raw, &token, Some(content_type), MP3);
        assert_eq!(uploaded.status, 200, "{content_type}: {}", uploaded.text);
        let (_, bytes) = send_raw("GET", &raw, &token, None, b"");
        let (rate, channels, _, samples) = read_wav(&bytes);
        assert_eq!((rate, channels), (8000, 1));
        assert!(
            (7600..9600).contains(&samples.len()),
            "{} samples for 1 s",
            samples.len()
        );
        assert_eq!(uploaded.body["data"]["content_length"], bytes.len());
    }
}

#[test]
fn bad_uploads_and_missing_audio_are_refused() {
    let (_dir, flows) = sample_flows();
    let config = Config {
        max_upload: 200 << 10,
        ..Config::default()
    };
    let server = Server::start(&flows, config);
    let token = login(&server, &flows, "acme");
    // A media document without audio (spoken when played).
    let greeting = server.url("/v2/accounts/acme/media/main-greeting/raw");
    let wav = tone_wav(8000, 1, 1);

    for content_type in [Some("text/plain"), Some("audio/ogg"), None] {
        let (reply, _) = send_raw("POST", &greeting, &token, content_type, &wav);
        assert_error(&reply, 415, "unsupported_media_type");
        assert!(
            reply.body["data"]["message"]
                .as_str()
                .unwrap()
                .contains("audio/wav"),
            "{}",
            reply.text
        );
    }
    let garbage = b"RIFF but not really a wave file at all".repeat(20);
    for (content_type, format) in [("audio/wav", "WAV"), ("audio/mpeg", "MP3")] {
        let (reply, _) = send_raw("POST", &greeting, &token, Some(content_type), &garbage);
        assert_error(&reply, 400, "invalid request");
        let message = reply.body["data"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("not {format} audio")),
            "{message}"
        );
    }
    // Just over the upload limit (208 KB: the server reads up to the limit
    // before it answers, and the rest must fit the socket's buffers, else
    // the client's write fails before it reads the answer).
    let big = tone_wav(8000, 1, 13);
    assert!(big.len() > 200 << 10 && big.len() < 210 << 10);
    let (reply, _) = send_raw("POST", &greeting, &token, Some("audio/wav"), &big);
    assert_error(&reply, 413, "request_entity_too_large");
    assert_eq!(reply.body["data"]["cause"], 200 << 10);
    // Nothing was written by the refusals.
    assert!(!flows.join("acme/media/main-greeting.wav").exists());
    let on_disk = std::fs::read_to_string(flows.join("acme/media/main-greeting.json")).unwrap();
    assert!(on_disk.contains("\"tts\""), "{on_disk}");

    // No audio, no document, a bad id: 404 bad_identifier.
    let (reply, _) = send_raw("GET", &greeting, &token, None, b"");
    assert_error(&reply, 404, "bad_identifier");
    let missing = server.url("/v2/accounts/acme/media/no-such-media/raw");
    let (reply, _) = send_raw("GET", &missing, &token, None, b"");
    assert_error(&reply, 404, "bad_identifier");
    let (reply, _) = send_raw("POST", &missing, &token, Some("audio/wav"), &wav);
    assert_error(&reply, 404, "bad_identifier");
    assert!(!flows.join("acme/media/no-such-media.wav").exists());
    let bad = server.url("/v2/accounts/acme/media/a.b/raw");
    let (reply, _) = send_raw("GET", &bad, &token, None, b"");
    assert_error(&reply, 404, "bad_identifier");
}

/// A message of box `vm-1001` (Kazoo's metadata, as the voicemail module
/// writes it).
fn message(media_id: &str, folder: &str, timestamp: i64) -> Value {
    json!({
        "media_id": media_id,
        "call_id": format!("call-{media_id}"),
        "caller_id_number": "1002",
        "caller_id_name": "Bob Jones",
        "from": "1002",
        "to": "1001",
        "length": 4000,
        "timestamp": timestamp,
        "folder": folder,
    })
}

/// Boxes `vm-1001` (messages `m-old` (new) and `m-new` (saved)) and
/// `vm-1002` (`m-bob`), each message's media document and audio.
fn voicemail_flows() -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, flows) = sample_flows();
    let acme = flows.join("acme");
    let mut alice: Value =
        serde_json::from_str(&std::fs::read_to_string(acme.join("vmboxes/vm-1001.json")).unwrap())
            .unwrap();
    alice["messages"] = json!([
        message("m-new", "saved", 63_900_000_100),
        message("m-old", "new", 63_900_000_000),
    ]);
    write_json(&acme.join("vmboxes/vm-1001.json"), &alice);
    let mut bob: Value =
        serde_json::from_str(&std::fs::read_to_string(acme.join("vmboxes/vm-1002.json")).unwrap())
            .unwrap();
    bob["messages"] = json!([message("m-bob", "new", 63_900_000_050)]);
    write_json(&acme.join("vmboxes/vm-1002.json"), &bob);
    for (id, seconds) in [("m-old", 1), ("m-new", 2), ("m-bob", 3)] {
        write_json(
            &acme.join(format!("media/{id}.json")),
            &json!({"name": format!("Message {id}"), "media_source": "recording"}),
        );
        std::fs::write(
            acme.join(format!("media/{id}.wav")),
            tone_wav(8000, 1, seconds),
        )
        .unwrap();
    }
    (dir, flows)
}

fn folder_on_disk(flows: &Path, media_id: &str) -> Value {
    let text = std::fs::read_to_string(flows.join("acme/vmboxes/vm-1001.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["media_id"] == media_id)
        .unwrap()["folder"]
        .clone()
}

#[test]
fn voicemail_messages_list_fetch_move_delete_and_play() {
    let (_dir, flows) = voicemail_flows();
    let server = Server::start(&flows, Config::default());
    let token = login(&server, &flows, "acme");
    let messages = server.url("/v2/accounts/acme/vmboxes/vm-1001/messages");
    let get = |url: &str| send_raw("GET", url, &token, None, b"").0;

    // The list: oldest first, Kazoo's metadata.
    let listed = get(&messages);
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_envelope(&listed, "success");
    let ids: Vec<&str> = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["media_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["m-old", "m-new"]);
    assert_eq!(listed.body["data"][0]["caller_id_name"], "Bob Jones");
    assert_eq!(listed.body["data"][0]["length"], 4000);
    for (query, expected) in [
        ("?folder=saved", vec!["m-new"]),
        ("?filter_folder=new", vec!["m-old"]),
        ("?folder=deleted", vec![]),
        ("?page_size=1", vec!["m-old"]),
    ] {
        let reply = get(&format!("{messages}{query}"));
        assert_eq!(reply.status, 200, "{query}: {}", reply.text);
        let ids: Vec<&str> = reply.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["media_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, expected, "{query}");
    }
    assert_error(
        &get(&format!("{messages}?folder=archive")),
        400,
        "validation error",
    );

    // One message.
    let one = get(&format!("{messages}/m-old"));
    assert_eq!(one.status, 200, "{}", one.text);
    assert_eq!(one.body["data"]["folder"], "new");
    assert_eq!(one.body["data"]["call_id"], "call-m-old");

    // Its audio: the file as stored.
    let (raw, bytes) = send_raw("GET", &format!("{messages}/m-old/raw"), &token, None, b"");
    assert_eq!(raw.status, 200, "{}", raw.text);
    assert_eq!(raw.headers["content-type"], "audio/wav");
    assert_eq!(
        bytes,
        std::fs::read(flows.join("acme/media/m-old.wav")).unwrap()
    );

    move_and_delete(&server, &flows, &token);
    not_in_this_box(&server, &token);
}

fn move_and_delete(server: &Server, flows: &Path, token: &str) {
    let messages = server.url("/v2/accounts/acme/vmboxes/vm-1001/messages");
    let post =
        |url: &str, body: &[u8]| send_raw("POST", url, token, Some("application/json"), body).0;
    let saved = post(
        &format!("{messages}/m-old"),
        envelope(&json!({"folder": "saved"})).as_bytes(),
    );
    assert_eq!(saved.status, 200, "{}", saved.text);
    assert_eq!(saved.body["data"]["folder"], "saved");
    assert_eq!(saved.body["data"]["media_id"], "m-old");
    assert_eq!(folder_on_disk(flows, "m-old"), "saved");
    // The query string, without a body.
    let back = post(&format!("{messages}/m-old?folder=new"), b"");
    assert_eq!(back.body["data"]["folder"], "new", "{}", back.text);
    assert_eq!(folder_on_disk(flows, "m-old"), "new");
    // A folder that is none of Kazoo's: nothing changes.
    let bad = post(
        &format!("{messages}/m-old"),
        envelope(&json!({"folder": "archive"})).as_bytes(),
    );
    assert_error(&bad, 400, "validation error");
    assert_eq!(bad.body["data"]["folder"]["enum"]["value"], "archive");
    assert_eq!(folder_on_disk(flows, "m-old"), "new");
    // DELETE: to the deleted folder, the audio kept.
    let (deleted, _) = send_raw("DELETE", &format!("{messages}/m-old"), token, None, b"");
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    assert_eq!(deleted.body["data"]["folder"], "deleted");
    assert_eq!(folder_on_disk(flows, "m-old"), "deleted");
    assert!(flows.join("acme/media/m-old.wav").is_file());
    let (in_deleted, _) = send_raw(
        "GET",
        &format!("{messages}?folder=deleted"),
        token,
        None,
        b"",
    );
    assert_eq!(in_deleted.body["data"][0]["media_id"], "m-old");
    // The other message and the box's settings are untouched.
    assert_eq!(folder_on_disk(flows, "m-new"), "saved");
    let text = std::fs::read_to_string(flows.join("acme/vmboxes/vm-1001.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["mailbox"], "1001");
    assert_eq!(doc["messages"].as_array().unwrap().len(), 2);
}

fn not_in_this_box(server: &Server, token: &str) {
    let alice = server.url("/v2/accounts/acme/vmboxes/vm-1001/messages");
    // m-bob exists (its media and audio too), but in Bob's box.
    for (method, path) in [
        ("GET", "/m-bob"),
        ("GET", "/m-bob/raw"),
        ("POST", "/m-bob"),
        ("DELETE", "/m-bob"),
        ("GET", "/no-such-message"),
    ] {
        let body = envelope(&json!({"folder": "saved"}));
        let (reply, _) = send_raw(
            method,
            &format!("{alice}{path}"),
            token,
            Some("application/json"),
            if method == "POST" {
                body.as_bytes()
            } else {
                b""
            },
        );
        assert_error(&reply, 404, "bad_identifier");
    }
    let bob = server.url("/v2/accounts/acme/vmboxes/vm-1002/messages/m-bob");
    let (reply, _) = send_raw("GET", &bob, token, None, b"");
    assert_eq!(reply.body["data"]["folder"], "new", "{}", reply.text);
    for url in [
        "/v2/accounts/acme/vmboxes/no-such-box/messages",
        "/v2/accounts/acme/vmboxes/no-such-box/messages/m-bob",
    ] {
        let (reply, _) = send_raw("GET", &server.url(url), token, None, b"");
        assert_error(&reply, 404, "bad_identifier");
    }
}

/// A TTS media document created through the API is spoken into its audio
/// on save (espeak-ng, which `.ci/test` installs), so `raw` serves it; a
/// changed text is spoken again.
#[test]
fn a_tts_document_is_rendered_when_saved() {
    if !callflow::media::tts::Espeak::default().installed() {
        println!("SKIPPED a_tts_document_is_rendered_when_saved: espeak-ng is not installed");
        return;
    }
    let (_dir, flows) = sample_flows();
    let server = Server::start(&flows, Config::default());
    let token = login(&server, &flows, "acme");
    let created = crate::api::send(
        "PUT",
        &server.url("/v2/accounts/acme/media"),
        Some(&token),
        Some(&envelope(&json!({
            "name": "Closed", "media_source": "tts", "tts": {"text": "We are closed."}
        }))),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    assert!(
        created.body["data"]["_read_only"]["tts"]
            .as_str()
            .is_some_and(|note| note.contains("rendered")),
        "{}",
        created.text
    );
    let id = created.body["data"]["id"].as_str().unwrap().to_owned();
    let raw = server.url(&format!("/v2/accounts/acme/media/{id}/raw"));
    let (first, bytes) = send_raw("GET", &raw, &token, None, b"");
    assert_eq!(first.status, 200, "{}", first.text);
    let (rate, channels, _, samples) = read_wav(&bytes);
    assert_eq!((rate, channels), (8000, 1));
    assert!(samples.len() > 4000, "{} samples of speech", samples.len());

    let patched = crate::api::send(
        "PATCH",
        &server.url(&format!("/v2/accounts/acme/media/{id}")),
        Some(&token),
        Some(&envelope(
            &json!({"tts": {"text": "We are closed for the holidays, see you in January."}}),
        )),
    );
    assert_eq!(patched.status, 200, "{}", patched.text);
    let (_, longer) = send_raw("GET", &raw, &token, None, b"");
    assert!(
        longer.len() > bytes.len(),
        "the new text is spoken: {} ≤ {}",
        longer.len(),
        bytes.len()
    );
}
