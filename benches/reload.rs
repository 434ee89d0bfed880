//! Hot reload latency: the time from writing a script (an editor's atomic
//! save) to the first new call that runs the new code, with the server's
//! watcher and its default debounce. 100 edits; prints p50, p99 and max.
//!
//! `cargo bench --bench reload`

use std::sync::Arc;
use std::time::{Duration, Instant};

use callflow::reload::{self, Paths, Reloader};
use callflow::sim::{self, Options, Scenario};

const EDITS: u32 = 100;

fn save(path: &std::path::Path, text: &str) {
    let temp = path.with_file_name(".probe.lua.tmp");
    std::fs::write(&temp, text).expect("the temporary directory is writable");
    std::fs::rename(&temp, path).expect("the temporary directory is writable");
}

fn script(version: u32) -> String {
    format!("return {{ handle = function(call) call:log(\"info\", \"v{version}\") end }}\n")
}

#[allow(clippy::disallowed_methods)] // a benchmark measures wall-clock time
fn main() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let callflows = dir.path().join("flows/bench/callflows");
    std::fs::create_dir_all(&callflows).expect("writable");
    std::fs::create_dir_all(dir.path().join("scripts")).expect("writable");
    std::fs::write(
        callflows.join("main.json"),
        r#"{"numbers": ["100"], "flow": {"module": "probe"}}"#,
    )
    .expect("writable");
    let probe = dir.path().join("scripts/probe.lua");
    std::fs::write(&probe, script(0)).expect("writable");
    let paths = Paths {
        flows: dir.path().join("flows"),
        scripts: vec![dir.path().join("scripts")],
    };
    let (reloader, _) = Reloader::load(paths).expect("the project loads");
    let reloader = Arc::new(reloader);
    let _watcher =
        reload::watch(Arc::clone(&reloader), reload::DEFAULT_DEBOUNCE).expect("the watcher starts");
    let scenario = Scenario::parse(r#"{"to": "100"}"#).expect("a valid scenario");

    let mut latencies = Vec::new();
    for version in 1..=EDITS {
        save(&probe, &script(version));
        let written = Instant::now();
        let wanted = format!("v{version}");
        loop {
            let generation = reloader.current();
            let account = generation.catalog.single_account().expect("one account");
            let outcome = sim::run_one(
                &scenario,
                account,
                Arc::clone(&generation.modules),
                &Options::default(),
            )
            .expect("the call runs");
            if outcome.trace.render_text().contains(&wanted) {
                latencies.push(written.elapsed());
                break;
            }
            assert!(written.elapsed() < Duration::from_secs(10), "no reload");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    // Nearest-rank percentile, `percent` of the sorted latencies.
    let at = |percent: usize| {
        let rank = (percent * latencies.len()).div_ceil(100);
        latencies[rank.clamp(1, latencies.len()) - 1]
    };
    println!(
        "{{\"edits\": {EDITS}, \"debounce_ms\": {}, \"p50_ms\": {:.1}, \"p99_ms\": {:.1}, \"max_ms\": {:.1}}}",
        reload::DEFAULT_DEBOUNCE.as_millis(),
        ms(at(50)),
        ms(at(99)),
        ms(*latencies.last().expect("100 edits")),
    );
}
