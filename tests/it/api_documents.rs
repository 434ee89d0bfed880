//! `tests/api/*.json`: one REST conversation per file, run against a real
//! server on a copy of the sample flows; the transcript (each request, its
//! status and the answer's data, ids of created documents shown as `{1}`,
//! `{2}`, ...) and what `callflow check` then says of the flows directory
//! are snapshotted.
//!
//! A case is `{"description": "...", "steps": [...]}`; a step is
//! `{"method": "PUT", "path": "users", "body": {...}}` (the path under
//! `/v2/accounts/acme/`, `{N}` the N-th created id; `"raw": true` sends
//! the body as text) or `{"disk": "devices/{1}"}`, which shows the stored
//! file (without its timestamps).

use std::fs;
use std::path::Path;

use serde_json::{Map, Value, json};

use callflow::api::Config;

use crate::api::{Server, login, sample_flows, send};
use crate::support::{callflow, insta_settings, root};

/// Replaces `{N}` by the N-th created id.
fn fill(text: &str, ids: &[String]) -> String {
    let mut out = text.to_owned();
    for (n, id) in ids.iter().enumerate().rev() {
        out = out.replace(&format!("{{{}}}", n + 1), id);
    }
    out
}

/// Shows created ids as `{N}` again.
fn unfill(text: &str, ids: &[String]) -> String {
    let mut out = text.to_owned();
    for (n, id) in ids.iter().enumerate() {
        out = out.replace(id, &format!("{{{}}}", n + 1));
    }
    out
}

/// What the transcript shows of an answer: the status, and the envelope's
/// `data`, `error` and `message` (ids, tokens and times vary).
fn shown_reply(status: u16, body: &Value) -> Value {
    let mut out = Map::new();
    out.insert("status".into(), json!(status));
    for key in ["error", "message", "data", "page_size", "next_start_key"] {
        if let Some(value) = body.get(key) {
            out.insert(key.into(), value.clone());
        }
    }
    for key in ["auth_token", "request_id", "status", "timestamp", "version"] {
        assert!(body.get(key).is_some(), "the envelope lacks {key}: {body}");
    }
    Value::Object(out)
}

fn stored(flows: &Path, path: &str) -> Value {
    let text = fs::read_to_string(flows.join("acme").join(format!("{path}.json")))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut doc: Map<String, Value> = serde_json::from_str(&text).unwrap();
    doc.remove("pvt_created");
    doc.remove("pvt_modified");
    Value::Object(doc)
}

fn run_case(text: &str) -> String {
    let case: Value = serde_json::from_str(text).unwrap();
    let (_dir, flows) = sample_flows();
    let server = Server::start(&flows, Config::default());
    let token = login(&server, &flows, "acme");
    let mut ids: Vec<String> = Vec::new();
    let mut transcript = vec![format!(
        "# {}",
        case["description"].as_str().unwrap_or_default()
    )];
    for step in case["steps"].as_array().unwrap() {
        if let Some(path) = step["disk"].as_str() {
            let path = fill(path, &ids);
            let doc = serde_json::to_string_pretty(&stored(&flows, &path)).unwrap();
            transcript.push(format!(
                "DISK {}\n{}",
                unfill(&path, &ids),
                unfill(&doc, &ids)
            ));
            continue;
        }
        let method = step["method"].as_str().unwrap();
        let path = fill(step["path"].as_str().unwrap(), &ids);
        let body = match &step["body"] {
            Value::Null => None,
            Value::String(raw) if step["raw"] == true => Some(raw.clone()),
            other => Some(fill(&json!({ "data": other }).to_string(), &ids)),
        };
        let url = if path.is_empty() {
            server.url("/v2/accounts/acme")
        } else {
            server.url(&format!("/v2/accounts/acme/{path}"))
        };
        let reply = send(method, &url, Some(&token), body.as_deref());
        if method == "PUT"
            && reply.status == 201
            && let Some(id) = reply.body["data"]["id"].as_str()
        {
            ids.push(id.to_owned());
        }
        let shown = serde_json::to_string_pretty(&shown_reply(reply.status, &reply.body)).unwrap();
        transcript.push(format!(
            "{method} {}\n{}",
            unfill(&path, &ids),
            unfill(&shown, &ids)
        ));
    }
    let check = callflow(&root(), &["check", "--flows", flows.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&check.stdout).replace(flows.to_str().unwrap(), "<flows>");
    transcript.push(format!(
        "callflow check: exit {}\n{}",
        check.status.code().unwrap_or(-1),
        unfill(said.trim_end(), &ids)
    ));
    transcript.join("\n\n")
}

#[test]
fn api_conversations() {
    insta_settings().bind(|| {
        insta::glob!("../api", "*.json", |path| {
            let text = fs::read_to_string(path).unwrap();
            insta::assert_snapshot!(run_case(&text));
        });
    });
}

/// The README's provisioning walkthrough, run as written (bash and curl)
/// against a fresh server on a copy of the sample flows: every answer a
/// success, the message left and moved, `callflow check` clean.
#[test]
fn the_readme_walkthrough_runs_as_written() {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let section = &readme[readme
        .find("### Provision an extension with curl")
        .expect("the README's walkthrough")..];
    let start = section.find("```sh\n").unwrap() + "```sh\n".len();
    let script = &section[start..start + section[start..].find("\n```").unwrap()];

    let dir = tempfile::tempdir().unwrap();
    crate::support::copy_tree(&root().join("flows"), &dir.path().join("flows"));
    let greeting = "tests/sip/flows/siptest/media/hello.wav";
    fs::create_dir_all(dir.path().join(greeting).parent().unwrap()).unwrap();
    fs::copy(root().join(greeting), dir.path().join(greeting)).unwrap();
    let flows = dir.path().join("flows");
    let key = callflow::api::create_api_key(
        &callflow::store::FlowsDir::new(&flows),
        &callflow::ids::AccountId::new("acme").unwrap(),
    )
    .unwrap();
    let server = Server::start(&flows, Config::default());
    let script = script
        .replace("http://127.0.0.1:8000", &server.url(""))
        .replace("cargo run -q --", env!("CARGO_BIN_EXE_callflow"));
    let output = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env("KEY", &key)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!said.contains("\"status\":\"error\""), "{said}");
    assert!(
        said.contains("\"event\":\"voicemail.new_message\""),
        "{said}"
    );
    assert!(said.contains("\"folder\":\"saved\""), "{said}");
    assert!(said.contains("no errors, no warnings"), "{said}");
    assert!(
        !said.contains("s3cret-Pa55"),
        "a device's password is never shown"
    );
    let greeting = fs::read(dir.path().join("greeting.wav")).unwrap();
    assert_eq!(&greeting[..4], b"RIFF", "the greeting downloaded as WAV");
}

/// An API write and calls saving the same document (a box getting
/// messages, through the store's compare-and-swap as calls do) never
/// lose each other's changes: every message the "calls" left is there,
/// and so is the API's last name.
#[test]
fn api_writes_and_calls_saving_the_same_box_lose_nothing() {
    use callflow::engine::{DocumentStore, Swap};
    use callflow::ids::{AccountId, DocId, DocType};

    let (_dir, flows) = sample_flows();
    let server = Server::start(&flows, Config::default());
    let token = login(&server, &flows, "acme");
    let created = send(
        "PUT",
        &server.url("/v2/accounts/acme/vmboxes"),
        Some(&token),
        Some(&json!({"data": {"name": "Race", "mailbox": "2900"}}).to_string()),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["data"]["id"].as_str().unwrap().to_owned();

    let store = callflow::store::FlowsDir::new(&flows);
    let (account, doc_type) = (
        AccountId::new("acme").unwrap(),
        DocType::new("vmboxes").unwrap(),
    );
    let box_id = DocId::new(&id).unwrap();
    let calls = std::thread::spawn(move || {
        for n in 0..40 {
            loop {
                let (mut doc, revision) =
                    store.load(&account, &doc_type, &box_id).unwrap().unwrap();
                let messages = doc.entry("messages").or_insert_with(|| json!([]));
                messages
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"media_id": format!("m{n}"), "folder": "new"}));
                let swap = store
                    .save(&account, &doc_type, &box_id, &doc, Some(revision))
                    .unwrap();
                if swap == Swap::Written {
                    break;
                }
            }
        }
    });
    for n in 0..40 {
        let url = server.url(&format!("/v2/accounts/acme/vmboxes/{id}"));
        let (method, body) = if n % 2 == 0 {
            ("PATCH", json!({"data": {"name": format!("Race {n}")}}))
        } else {
            (
                "POST",
                json!({"data": {"name": format!("Race {n}"), "mailbox": "2900"}}),
            )
        };
        let reply = send(method, &url, Some(&token), Some(&body.to_string()));
        assert!(reply.status == 200 || reply.status == 409, "{}", reply.text);
    }
    calls.join().unwrap();
    let stored = stored(&flows, &format!("vmboxes/{id}"));
    let left: Vec<&str> = stored["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["media_id"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..40).map(|n| format!("m{n}")).collect();
    assert_eq!(
        left,
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(
        stored["name"].as_str().unwrap().starts_with("Race"),
        "{stored}"
    );
}
