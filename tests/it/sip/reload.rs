//! Hot reload with real calls: a call in progress keeps the generation of
//! scripts and flows it started with, while the next call runs the new
//! code. The first call's module holds at an HTTP request to this test
//! (a gate on 127.0.0.1) until the script has been rewritten and the
//! server reloaded (SIGHUP; its console says when), so the order of events
//! never depends on timing.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use super::harness::{Deadline, Server, Setup, Sipp, Transport, Trust, free_port, sip_dir, tools};

/// The probe module, version `version`: it asks the gate, then logs its
/// version.
fn probe(gate: u16, version: &str) -> String {
    format!(
        "return {{ handle = function(call)\n\
         \tcall:answer()\n\
         \tcall:http({{ url = \"http://127.0.0.1:{gate}/hold\" }})\n\
         \tcall:log(\"info\", \"probe {version}\")\n\
         end }}\n"
    )
}

/// An HTTP server on 127.0.0.1 that answers the first request only when
/// told to (and reports that it arrived), and the others at once.
fn gate() -> (u16, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (arrived_tx, arrived) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|read| read > 2) {
                line.clear();
            }
            if n == 0 {
                let _ = arrived_tx.send(());
                let _ = release_rx.recv();
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (port, arrived, release)
}

fn write_flows(dir: &Path) {
    let account = dir.join("reload");
    std::fs::create_dir_all(account.join("callflows")).unwrap();
    std::fs::write(
        account.join("account.json"),
        r#"{"name": "Reload", "timezone": "UTC"}"#,
    )
    .unwrap();
    std::fs::write(
        account.join("callflows/probe.json"),
        r#"{"numbers": ["+15550100099"], "flow": {"module": "probe", "data": {}, "children": {}}}"#,
    )
    .unwrap();
}

/// The `probe` log line and the generation of a trace document.
fn version_and_generation(trace: &serde_json::Value) -> (String, u64) {
    let version = trace["events"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|e| e["message"].as_str().filter(|m| m.starts_with("probe ")))
        .unwrap_or("(no probe line)")
        .to_owned();
    (version, trace["generation"].as_u64().unwrap_or(0))
}

#[test]
fn sip_calls_keep_their_generation_across_a_reload() {
    let Some(tools) = tools("sip_calls_keep_their_generation_across_a_reload") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (flows, scripts) = (dir.path().join("flows"), dir.path().join("scripts"));
    write_flows(&flows);
    std::fs::create_dir_all(&scripts).unwrap();
    let (gate_port, arrived, release) = gate();
    std::fs::write(scripts.join("probe.lua"), probe(gate_port, "v1")).unwrap();
    let server = Server::launch(&Setup {
        trust: Trust::Loopback,
        rtp_ports: 10,
        digest: "md5".to_owned(),
        flows,
        scripts: scripts.clone(),
        extra: vec!["--allow-private-http".to_owned()],
    });
    let call = |server: &Server| Sipp {
        scenario: sip_dir().join("burst.xml"),
        service: "+15550100099".to_owned(),
        server: server.sip,
        port: free_port(),
        transport: Transport::Udp,
        calls: 1,
        extra: Vec::new(),
    };

    // The first call starts on generation 1 and holds at the gate.
    let first = std::thread::scope(|scope| {
        let first = scope.spawn(|| call(&server).run(tools));
        arrived
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("the first call never reached the gate:\n{}", server.log()));
        // A new version of the script, and a reload.
        std::fs::write(scripts.join("probe.lua"), probe(gate_port, "v2")).unwrap();
        let status = std::process::Command::new("kill")
            .args(["-HUP", &server.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Deadline::after(Duration::from_secs(30));
        while !server.log().contains("reloaded (SIGHUP): generation 2") {
            assert!(deadline.left().is_some(), "no reload:\n{}", server.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        // The second call runs the new code while the first still holds.
        let second = call(&server).run(tools);
        assert_eq!(second.code, Some(0), "{}", second.report());
        release.send(()).unwrap();
        first.join().unwrap()
    });
    assert_eq!(first.code, Some(0), "{}", first.report());

    let traces = server.wait_for_traces(2, Duration::from_secs(30)).unwrap();
    let mut seen: Vec<(String, u64)> = traces.iter().map(version_and_generation).collect();
    seen.sort_by_key(|(_, generation)| *generation);
    assert_eq!(
        seen,
        [("probe v1".to_owned(), 1), ("probe v2".to_owned(), 2)],
        "the call in progress keeps generation 1, the next runs generation 2"
    );
}
