//! Far ends of bridged calls: SIPp instances in server mode that the
//! server calls, as registered devices or as carriers' gateways.
//!
//! A case's `far_ends` name them. Each gets a free port; a `device` is
//! registered at that port by the raw client (a third-party REGISTER whose
//! Via asks for no `rport`: the server calls the Contact), then its
//! `scenario` runs there in the background; `{{port:NAME}}` in the flows'
//! JSON files becomes its port (a resource document's gateway `server`).
//! A far end without a scenario is a port where nothing answers (a dead
//! gateway). Once the caller is done, each far end must exit as its
//! `exit_code` says and have received what `received` says.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::harness::{Sipp, SippRun, Tools, Transport, free_port, sip_dir};
use super::raw::{Answer, Challenge, Client, authorization, request};
use callflow::sip::digest::Algorithm;

/// One far end of a case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FarEnd {
    /// Its name, for `{{port:NAME}}` and failure messages.
    pub name: String,
    /// Register it as this device of `siptest` (its `sip.username` and
    /// `sip.password` are read from the flows).
    #[serde(default)]
    pub device: Option<String>,
    /// Its SIPp scenario (in `tests/sip/`); none: nothing listens there.
    #[serde(default)]
    pub scenario: Option<String>,
    /// More SIPp arguments (`-rtp_echo`).
    #[serde(default)]
    pub sipp_args: Vec<String>,
    /// Calls it takes before exiting (`-m`).
    #[serde(default = "one")]
    pub calls: u32,
    #[serde(default)]
    pub exit_code: i32,
    /// Messages it must have received, by the start of their first line.
    #[serde(default)]
    pub received: BTreeMap<String, usize>,
    /// The credentials its challenge must be answered with: the digest of
    /// the `Proxy-Authorization` it received is checked.
    #[serde(default)]
    pub digest: Option<Credentials>,
    /// Register as a phone behind NAT would: from its own port, with a
    /// Via asking for `rport` and a Via and Contact naming an address
    /// where nothing listens (127.0.0.9:5060); the server must call where
    /// the REGISTER came from (RFC 3581).
    #[serde(default)]
    pub nat: bool,
}

/// A username and password.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

fn one() -> u32 {
    1
}

/// The ports of a case's far ends, by name.
pub fn ports(far_ends: &[FarEnd]) -> BTreeMap<String, u16> {
    far_ends
        .iter()
        .map(|far| (far.name.clone(), free_port()))
        .collect()
}

/// Replaces `{{port:NAME}}` in every JSON file under `dir`.
pub fn substitute(dir: &Path, ports: &BTreeMap<String, u16>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            substitute(&path, ports);
        } else if path.extension().is_some_and(|x| x == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            if !text.contains("{{port:") {
                continue;
            }
            let mut out = text.clone();
            for (name, port) in ports {
                out = out.replace(&format!("{{{{port:{name}}}}}"), &port.to_string());
            }
            std::fs::write(&path, out).unwrap();
        }
    }
}

/// A device's SIP credentials, from the flows.
fn credentials(flows: &Path, device: &str) -> (String, String) {
    let path = flows.join(format!("siptest/devices/{device}.json"));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let text = |key: &str| doc["sip"][key].as_str().unwrap().to_owned();
    (text("username"), text("password"))
}

/// Where a phone behind NAT believes it is: nothing listens there.
const NAT_INSIDE: &str = "127.0.0.9:5060";

/// Registers `device` with the server at `127.0.0.1:port` (digest MD5):
/// a third-party REGISTER, or with `nat` one sent from `port` itself,
/// naming [`NAT_INSIDE`] as its address.
pub fn register(
    server: SocketAddr,
    flows: &Path,
    device: &str,
    port: u16,
    nat: bool,
) -> Result<(), String> {
    let (username, password) = credentials(flows, device);
    let client = if nat {
        Client::on_port(server, port)
    } else {
        Client::new(server)
    };
    let uri = "sip:siptest.example.com";
    let (via, contact) = if nat {
        (format!("{NAT_INSIDE};rport"), NAT_INSIDE.to_owned())
    } else {
        // No rport: the server calls the Contact, SIPp's port.
        (
            format!("127.0.0.1:{}", client.port),
            format!("127.0.0.1:{port}"),
        )
    };
    let send = |cseq: u32, authorization: Option<&str>| {
        let mut headers = vec![
            (
                "Via",
                format!("SIP/2.0/UDP {via};branch={}", Client::branch()),
            ),
            (
                "From",
                format!("<sip:{username}@siptest.example.com>;tag=far-{port}"),
            ),
            ("To", format!("<sip:{username}@siptest.example.com>")),
            (
                "Call-ID",
                format!("far-{port}-{}@127.0.0.1", std::process::id()),
            ),
            ("CSeq", format!("{cseq} REGISTER")),
            ("Contact", format!("<sip:{username}@{contact}>")),
            ("Expires", "300".to_owned()),
            ("Max-Forwards", "70".to_owned()),
        ];
        if let Some(value) = authorization {
            headers.push(("Authorization", value.to_owned()));
        }
        client.send(&request("REGISTER", uri, &headers, ""));
        client.final_response("REGISTER")
    };
    let first = send(1, None);
    let challenge = Challenge::of(&first, "WWW-Authenticate")
        .into_iter()
        .find(|c| c.algorithm == "MD5")
        .ok_or_else(|| format!("no MD5 challenge for {device}:\n{}", first.text))?;
    let answer = authorization(
        &challenge,
        &Answer {
            algorithm: Algorithm::Md5,
            username: &username,
            password: &password,
            method: "REGISTER",
            uri,
            nc: 1,
            cnonce: "far0end",
        },
    );
    let second = send(2, Some(&answer));
    if second.status() == Some(200) {
        Ok(())
    } else {
        Err(format!("{device} was not registered:\n{}", second.text))
    }
}

/// A far end running in the background.
pub struct Running {
    pub far: FarEnd,
    handle: Option<std::thread::JoinHandle<SippRun>>,
}

/// Starts the far ends that have a scenario (and registers the devices).
pub fn start(
    tools: &'static Tools,
    server: SocketAddr,
    flows: &Path,
    far_ends: &[FarEnd],
    ports: &BTreeMap<String, u16>,
) -> Result<Vec<Running>, String> {
    let mut running = Vec::new();
    for far in far_ends {
        let port = ports[&far.name];
        if far.nat
            && let Some(device) = &far.device
        {
            // From its own port, before SIPp takes it.
            register(server, flows, device, port, true)?;
        }
        let handle = far.scenario.as_ref().map(|scenario| {
            let sipp = Sipp {
                scenario: sip_dir().join(scenario),
                service: "far".to_owned(),
                server,
                port,
                transport: Transport::Udp,
                calls: far.calls,
                extra: far.sipp_args.clone(),
            };
            std::thread::spawn(move || sipp.run(tools))
        });
        running.push(Running {
            far: far.clone(),
            handle,
        });
    }
    // SIPp binds its port at once; registering after it started means the
    // server's first INVITE finds it listening.
    wait_listening(far_ends, ports);
    for far in far_ends.iter().filter(|f| !f.nat) {
        if let Some(device) = &far.device {
            register(server, flows, device, ports[&far.name], false)?;
        }
    }
    Ok(running)
}

/// Waits until every far end with a scenario has bound its UDP port.
fn wait_listening(far_ends: &[FarEnd], ports: &BTreeMap<String, u16>) {
    let deadline = super::harness::Deadline::after(Duration::from_secs(10));
    for far in far_ends.iter().filter(|f| f.scenario.is_some()) {
        let port = ports[&far.name];
        while deadline.left().is_some() && !udp_bound(port) {
            // Waiting for SIPp to start, on the wall clock.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether some socket has UDP `port` of 127.0.0.1, read from
/// `/proc/net/udp`: probing by binding it ourselves could take it from
/// SIPp at the very moment it starts (it then fails, "Address already in
/// use").
fn udp_bound(port: u16) -> bool {
    let wanted = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/udp").is_ok_and(|table| {
        table
            .lines()
            .skip(1)
            .filter_map(|line| line.split_whitespace().nth(1))
            .any(|local| local == wanted)
    })
}

/// Waits for each far end and says what went wrong.
pub fn finish(running: Vec<Running>) -> Vec<String> {
    let mut problems = Vec::new();
    for mut run in running {
        let Some(handle) = run.handle.take() else {
            continue;
        };
        let far = &run.far;
        let Ok(result) = handle.join() else {
            problems.push(format!("far end {} panicked", far.name));
            continue;
        };
        if result.code != Some(far.exit_code) {
            problems.push(format!(
                "far end {} exited with {:?}, {} expected\n{}",
                far.name,
                result.code,
                far.exit_code,
                result.report()
            ));
            continue;
        }
        if let Some(credentials) = &far.digest
            && let Err(problem) = check_digest(&result.messages, credentials)
        {
            problems.push(format!("far end {}: {problem}", far.name));
        }
        for (start, count) in &far.received {
            let got = result.received(start);
            if got != *count {
                problems.push(format!(
                    "far end {} received {got} message(s) starting {start:?}, {count} expected\n{}",
                    far.name,
                    result.report()
                ));
            }
        }
    }
    problems
}

/// Checks the `Proxy-Authorization` a far end received (its `-trace_msg`
/// log): the digest response must be the one `credentials` give for that
/// nonce, URI, nc and cnonce (MD5, qop=auth).
fn check_digest(messages: &str, credentials: &Credentials) -> Result<(), String> {
    let line = messages
        .lines()
        .find(|l| l.starts_with("Proxy-Authorization:"))
        .ok_or("no Proxy-Authorization received")?;
    let value = line.trim_start_matches("Proxy-Authorization:").trim();
    let params = value
        .strip_prefix("Digest")
        .ok_or_else(|| format!("not a digest: {value}"))?;
    let get = |key: &str| {
        params.split(',').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case(key)
                .then(|| v.trim().trim_matches('"').to_owned())
        })
    };
    let field = |key: &str| get(key).ok_or_else(|| format!("no {key} in {value}"));
    let nc = u32::from_str_radix(&field("nc")?, 16).map_err(|e| e.to_string())?;
    let challenge = Challenge {
        realm: field("realm")?,
        nonce: field("nonce")?,
        algorithm: "MD5".to_owned(),
        qop: Some("auth".to_owned()),
    };
    let uri = field("uri")?;
    let cnonce = field("cnonce")?;
    let expected = authorization(
        &challenge,
        &Answer {
            algorithm: Algorithm::Md5,
            username: &credentials.username,
            password: &credentials.password,
            method: "INVITE",
            uri: &uri,
            nc,
            cnonce: &cnonce,
        },
    );
    let response = |text: &str| {
        text.split(',')
            .find_map(|p| p.trim().strip_prefix("response="))
            .map(|r| r.trim_matches('"').to_owned())
    };
    if response(&expected) == get("response") && field("username")? == credentials.username {
        Ok(())
    } else {
        Err(format!(
            "the digest does not verify with {}'s password: {value}",
            credentials.username
        ))
    }
}
