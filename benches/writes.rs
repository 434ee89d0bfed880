//! One-number writes into a large account through the REST API: the
//! account holds 100,000 numbers and 10,000 patterns (10,000 callflows of
//! 10 numbers and one pattern each, the shapes of `benches/routing.rs`),
//! and each write replaces one callflow with one number changed (`POST
//! .../callflows/{id}` on a real server on 127.0.0.1). Reported: the
//! median and 90th percentile of the whole request, of the same document
//! write alone (`FlowsDir::write_document`: its two fsyncs), and of
//! publishing it (`Reloader::reload_document`) against rebuilding the
//! whole account (`Reloader::reload_account`, what every write did before).
//!
//! Run: `cargo bench --bench writes [-- --writes N]`

// Setup failures should stop the benchmark loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A benchmark measures wall time; it is one long script of steps.
#![allow(clippy::disallowed_methods, clippy::too_many_lines)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use callflow::api::{AppState, Config, create_api_key};
use callflow::ids::{AccountId, DocId, DocType};
use callflow::reload::{Paths, Reloader};
use callflow::store::FlowsDir;

/// The server binary's allocator, so that the figures are the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CALLFLOWS: usize = 10_000;
const NUMBERS_PER_CALLFLOW: usize = 10;

fn callflow(i: usize, shift: usize) -> Map<String, Value> {
    let numbers: Vec<String> = (0..NUMBERS_PER_CALLFLOW)
        .map(|j| format!("+1415{:07}", i * NUMBERS_PER_CALLFLOW + j + shift))
        .collect();
    let pattern = match i % 4 {
        0 => format!(r"^\*{}([0-9]*)$", 1000 + i),
        1 => format!(r"^\+1{}(\d{{4}})$", 2_000_000 + i),
        2 => format!(r"^{}(\d{{2}})$", 10_000 + i),
        _ => format!(r"^011{}(\d+)$", 100_000 + i),
    };
    json!({
        "name": format!("Callflow {i}"),
        "numbers": numbers,
        "patterns": [pattern],
        "flow": {"module": "answer", "data": {}, "children": {}},
    })
    .as_object()
    .cloned()
    .unwrap()
}

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() * 9 / 10]),
    )
}

fn main() {
    let mut writes = 40usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--writes" {
            writes = args
                .next()
                .and_then(|n| n.parse().ok())
                .expect("--writes N");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    let store = FlowsDir::new(&flows);
    let account = AccountId::new("bench").unwrap();
    let callflows = DocType::new("callflows").unwrap();
    store.create_account(&account, &Map::new()).unwrap();
    let setup = Instant::now();
    for i in 0..CALLFLOWS {
        let id = DocId::new(&format!("cf{i:05}")).unwrap();
        store
            .write_document(&account, &callflows, &id, &callflow(i, 0))
            .unwrap();
    }
    let key = create_api_key(&store, &account).unwrap();
    eprintln!("wrote {CALLFLOWS} callflows in {:.1?}", setup.elapsed());

    let started = Instant::now();
    let (reloader, diagnostics) = Reloader::load(Paths {
        flows: flows.clone(),
        scripts: Vec::new(),
    })
    .unwrap();
    let load = started.elapsed();
    assert!(diagnostics.iter().all(|d| !d.is_error()), "{diagnostics:?}");
    let routes = reloader
        .current()
        .catalog
        .account("bench")
        .unwrap()
        .routes
        .len();
    assert_eq!(routes, (CALLFLOWS * NUMBERS_PER_CALLFLOW, CALLFLOWS));
    let reloader = Arc::new(reloader);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let state = Arc::new(AppState::new(Arc::clone(&reloader), Config::default()));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let address = listener.local_addr().unwrap();
    runtime.spawn(callflow::api::serve(
        listener,
        state,
        std::future::pending(),
    ));

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let base = format!("http://{address}");
    let mut reply = agent
        .put(format!("{base}/v2/api_auth"))
        .send(json!({"data": {"api_key": key}}).to_string())
        .unwrap();
    let body: Value = serde_json::from_str(&reply.body_mut().read_to_string().unwrap()).unwrap();
    let token = body["auth_token"].as_str().unwrap().to_owned();

    // The whole request: validation, the fsync'd write, publication.
    let mut request = Vec::new();
    for n in 0..writes {
        let i = (n * 37) % CALLFLOWS;
        let mut doc = callflow(i, 0);
        // One number changed: moved to a range no callflow uses.
        doc["numbers"][0] = json!(format!("+1650{:07}", n));
        let started = Instant::now();
        let mut reply = agent
            .post(format!("{base}/v2/accounts/bench/callflows/cf{i:05}"))
            .header("X-Auth-Token", &token)
            .send(json!({ "data": doc }).to_string())
            .unwrap();
        let status = reply.status().as_u16();
        let text = reply.body_mut().read_to_string().unwrap();
        request.push(started.elapsed());
        assert_eq!(status, 200, "{text}");
    }
    let (numbers, _) = reloader
        .current()
        .catalog
        .account("bench")
        .unwrap()
        .routes
        .len();
    assert_eq!(numbers, CALLFLOWS * NUMBERS_PER_CALLFLOW);

    // The same document write alone (temporary file, fsync, rename, fsync).
    let mut fsyncs = Vec::new();
    let mut publish = Vec::new();
    for n in 0..writes {
        let i = (n * 37) % CALLFLOWS;
        let id = DocId::new(&format!("cf{i:05}")).unwrap();
        let mut doc = callflow(i, 0);
        doc["numbers"][0] = json!(format!("+1651{:07}", n));
        let started = Instant::now();
        store
            .write_document(&account, &callflows, &id, &doc)
            .unwrap();
        fsyncs.push(started.elapsed());
        let started = Instant::now();
        reloader.reload_document(&account, &callflows, &id).unwrap();
        publish.push(started.elapsed());
    }
    let mut rebuild = Vec::new();
    for _ in 0..writes.min(5) {
        let started = Instant::now();
        reloader.reload_account(&account).unwrap();
        rebuild.push(started.elapsed());
    }

    let (request_p50, request_p90) = percentiles(request);
    let (fsync_p50, fsync_p90) = percentiles(fsyncs);
    let (publish_p50, publish_p90) = percentiles(publish);
    let (rebuild_p50, _) = percentiles(rebuild);
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "account": {"numbers": CALLFLOWS * NUMBERS_PER_CALLFLOW, "patterns": CALLFLOWS, "callflows": CALLFLOWS},
            "writes": writes,
            "first_load_ms": (load.as_secs_f64() * 1000.0).round(),
            "api_write_ms": {"p50": round(request_p50), "p90": round(request_p90)},
            "document_write_with_fsyncs_ms": {"p50": round(fsync_p50), "p90": round(fsync_p90)},
            "publish_one_document_ms": {"p50": round(publish_p50), "p90": round(publish_p90)},
            "api_write_minus_fsyncs_ms_p50": round(request_p50 - fsync_p50),
            "rebuild_whole_account_ms_p50": round(rebuild_p50),
        }))
        .unwrap()
    );
}

fn round(ms: f64) -> f64 {
    (ms * 100.0).round() / 100.0
}
