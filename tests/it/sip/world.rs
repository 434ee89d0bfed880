//! The world of real calls: calls of one server that reach each other,
//! with SIPp callers talking (Debian's `g711a.pcap`, so raw sockets are
//! needed, as for the other audio cases).
//!
//! * a caller parks (`+15550100033`, valet park: the first free slot, 101)
//!   and another retrieves it (`+15550100034`: slot 101);
//! * a call rings a phone and another call picks it up (`group_pickup`):
//!   the phone is cancelled, the two callers talk;
//! * three callers in one conference room, each hearing the room's mix.
//!
//! Each test starts the joining call only once the server's channels API
//! (`GET /v2/accounts/siptest/channels`) shows the first call where it
//! must be (parked, ringing, in the room): the order never depends on
//! timing. Media is checked in each trace's `media` report: audio relayed
//! into each caller's leg came from the other call (or the room's mixer).

use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};

use callflow::ids::AccountId;
use callflow::store::FlowsDir;

use super::harness::{
    Deadline, Server, Setup, Sipp, SippRun, Tools, Transport, Trust, free_port,
    raw_packets_allowed, sip_dir, tools,
};
use super::{TRACES_TIMEOUT, far};

/// A server on a copy of the SIP flows, with an API key for `siptest`.
struct World {
    server: Server,
    api: String,
    token: String,
    _flows: tempfile::TempDir,
}

impl World {
    fn start(far_ends: &[far::FarEnd]) -> (Self, std::collections::BTreeMap<String, u16>) {
        Self::start_trusting(far_ends, Trust::Loopback)
    }

    /// [`World::start`] trusting only `trust` as a trunk (other sources
    /// authenticate as devices).
    fn start_trusting(
        far_ends: &[far::FarEnd],
        trust: Trust,
    ) -> (Self, std::collections::BTreeMap<String, u16>) {
        let flows = tempfile::tempdir().unwrap();
        crate::support::copy_tree(&sip_dir().join("flows"), flows.path());
        let ports = far::ports(far_ends);
        far::substitute(flows.path(), &ports);
        let key = callflow::api::create_api_key(
            &FlowsDir::new(flows.path()),
            &AccountId::new("siptest").unwrap(),
        )
        .unwrap();
        let server = Server::launch(&Setup {
            trust,
            rtp_ports: 60,
            digest: "md5".to_owned(),
            flows: flows.path().to_path_buf(),
            scripts: sip_dir().join("scripts"),
            extra: Vec::new(),
        });
        let api = format!("http://{}/v2", server.api_address());
        let auth = crate::api::send(
            "PUT",
            &format!("{api}/api_auth"),
            None,
            Some(&crate::api::envelope(&json!({"api_key": key}))),
        );
        assert_eq!(auth.status, 201, "{}", auth.text);
        let token = auth.body["auth_token"].as_str().unwrap().to_owned();
        (
            Self {
                server,
                api,
                token,
                _flows: flows,
            },
            ports,
        )
    }

    fn channels(&self) -> Vec<Value> {
        let reply = crate::api::send(
            "GET",
            &format!("{}/accounts/siptest/channels", self.api),
            Some(&self.token),
            None,
        );
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.body["data"].as_array().cloned().unwrap_or_default()
    }

    /// Polls the channels until `count` of them are in `state` (30 s at
    /// most); those channels.
    fn wait_for(&self, state: &str, count: usize) -> Vec<Value> {
        let deadline = Deadline::after(Duration::from_secs(30));
        loop {
            let found: Vec<Value> = self
                .channels()
                .into_iter()
                .filter(|c| c["state"] == state)
                .collect();
            if found.len() >= count {
                return found;
            }
            assert!(
                deadline.left().is_some(),
                "no {count} call(s) {state} in 30 s: {:?}\n--- server log\n{}",
                self.channels(),
                self.server.log()
            );
            // Polling the server's state, not timing the test.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn call(&self, tools: &'static Tools, scenario: &str, dial: &str) -> JoinHandle<SippRun> {
        self.call_from(tools, scenario, dial, free_port())
    }

    /// [`World::call`] from SIP port `port`.
    fn call_from(
        &self,
        tools: &'static Tools,
        scenario: &str,
        dial: &str,
        port: u16,
    ) -> JoinHandle<SippRun> {
        let sipp = Sipp {
            scenario: sip_dir().join(scenario),
            service: dial.to_owned(),
            server: self.server.sip,
            port,
            transport: Transport::Udp,
            calls: 1,
            extra: Vec::new(),
        };
        std::thread::spawn(move || sipp.run(tools))
    }

    fn fail(&self, what: &str, runs: &[&SippRun]) -> String {
        let reports: Vec<String> = runs.iter().map(|r| r.report()).collect();
        format!(
            "{what}\n{}\n--- server log\n{}",
            reports.join("\n"),
            self.server.log()
        )
    }

    /// Every call ended well for SIPp; the traces.
    fn traces(&self, runs: &[&SippRun], count: usize) -> Vec<Value> {
        let traces = self.server.wait_for_traces(count, TRACES_TIMEOUT);
        let shown = |traces: &Result<Vec<Value>, String>| match traces {
            Ok(traces) => traces
                .iter()
                .map(|t| format!("--- trace\n{}", super::render(t)))
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => e.clone(),
        };
        for run in runs {
            assert_eq!(
                run.successful_calls(),
                Some(1),
                "{}",
                self.fail(&format!("a caller failed\n{}", shown(&traces)), runs)
            );
        }
        let traces = traces.unwrap_or_else(|e| panic!("{}", self.fail(&e, runs)));
        assert_eq!(traces.len(), count, "{}", self.fail("traces", runs));
        traces
    }
}

/// The trace of the call that dialled `to`.
fn trace_to<'a>(traces: &'a [Value], to: &str) -> &'a Value {
    traces
        .iter()
        .find(|t| t["to"] == to)
        .unwrap_or_else(|| panic!("no trace of a call to {to}: {traces:#?}"))
}

fn events<'a>(trace: &'a Value, name: &str) -> Vec<&'a Value> {
    trace["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["event"] == name)
        .collect()
}

/// Audio packets relayed into the caller's leg (`a`) of a trace.
fn relayed_to_caller(trace: &Value) -> u64 {
    trace["media"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|leg| leg["leg"] == "a")
        .and_then(|leg| leg["relayed"].as_u64())
        .unwrap_or(0)
}

fn ready(test: &str) -> Option<&'static Tools> {
    let tools = tools(test)?;
    match raw_packets_allowed(test) {
        Ok(true) => Some(tools),
        Ok(false) => None,
        Err(e) => panic!("{e}"),
    }
}

/// At least this many packets of the other side's speech (4 s of talk at
/// 50 a second is 200; jitter at the start and end is allowed for).
const TALKED: u64 = 100;

/// A call of the test: its SIPp scenario and the number it dials.
type Caller<'a> = (&'a str, &'a str);

/// What [`two_calls`] saw.
struct Two {
    /// The channels in the state waited for, when the second call began.
    seen: Vec<Value>,
    /// The first call's trace, then the second's.
    first: Value,
    second: Value,
}

/// Phones (`far_ends`) registered; the `first` call; once the channels
/// show it in `state`, the `second`; both calls and phones end well.
/// `None` when the tools are missing (the test is skipped loudly).
fn two_calls(
    test: &str,
    far_ends: &[far::FarEnd],
    first: Caller<'_>,
    state: &str,
    second: Caller<'_>,
) -> Option<Two> {
    let tools = ready(test)?;
    let (world, ports) = World::start(far_ends);
    let flows = world.server.flows();
    let running = far::start(tools, world.server.sip, Path::new(&flows), far_ends, &ports)
        .unwrap_or_else(|e| panic!("{e}\n{}", world.server.log()));
    let one = world.call(tools, first.0, first.1);
    let seen = world.wait_for(state, 1);
    let two = world.call(tools, second.0, second.1);
    let (two, one) = (two.join().unwrap(), one.join().unwrap());
    let problems = far::finish(running);
    assert!(
        problems.is_empty(),
        "{}",
        world.fail(&problems.join("\n"), &[&one, &two])
    );
    let traces = world.traces(&[&one, &two], 2);
    Some(Two {
        seen,
        first: trace_to(&traces, first.1).clone(),
        second: trace_to(&traces, second.1).clone(),
    })
}

/// Both callers heard the other (audio relayed into each caller's leg).
fn talked(traces: &[&Value]) {
    for trace in traces {
        assert!(
            relayed_to_caller(trace) >= TALKED,
            "too little audio relayed to {}: {}",
            trace["to"],
            trace["media"]
        );
    }
}

/// A far end registered as `device`, playing `scenario`, that must receive
/// these messages.
fn phone(name: &str, device: &str, scenario: &str, received: &Value, args: &[&str]) -> far::FarEnd {
    serde_json::from_value(json!({
        "name": name,
        "device": device,
        "scenario": scenario,
        "sipp_args": args,
        "received": received,
    }))
    .unwrap()
}

/// The echo phone, registered as `dev_echo`: answers at once, echoes RTP,
/// waits for the server's BYE.
fn echo_phone() -> far::FarEnd {
    phone(
        "echo",
        "dev_echo",
        "far/answer-now.xml",
        &json!({"INVITE": 1, "ACK": 1, "BYE": 1}),
        &["-rtp_echo"],
    )
}

/// The log lines of the test module `world_probe` in a trace.
fn probe_said(trace: &Value) -> Vec<String> {
    events(trace, "log")
        .iter()
        .filter_map(|e| e["message"].as_str())
        .filter(|m| m.starts_with("world_probe"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_real_call_parked_is_retrieved_by_another() {
    let Some(Two {
        seen,
        first: held,
        second: joiner,
    }) = two_calls(
        "a_real_call_parked_is_retrieved_by_another",
        &[],
        ("world-held.xml", "+15550100033"),
        "parked",
        ("world-joiner.xml", "+15550100034"),
    )
    else {
        return;
    };
    assert_eq!(seen[0]["slot"], "101", "the valet's first free slot");
    let park = events(&held, "park");
    assert!(
        park.iter().any(|e| e["reason"] == "retrieved"
            && e["by"] == joiner["call_id"]
            && e["slot"] == "101"),
        "{park:?}"
    );
    let pickup = events(&joiner, "pickup");
    assert!(
        pickup.iter().any(|e| e["call_id"] == held["call_id"]),
        "{pickup:?}"
    );
    // The retriever hung up: the parked caller's leg was ended by us.
    assert_eq!(events(&held, "hangup")[0]["by"], "callee", "{held:#}");
    talked(&[&held, &joiner]);
}

#[test]
fn a_ringing_real_call_is_picked_up_by_another() {
    let slow = phone(
        "slow",
        "dev_slow",
        "far/ring-cancel.xml",
        &json!({"INVITE": 1, "CANCEL": 1, "ACK": 1}),
        &[],
    );
    let Some(Two {
        seen,
        first: rang,
        second: picking,
    }) = two_calls(
        "a_ringing_real_call_is_picked_up_by_another",
        &[slow],
        ("world-held.xml", "+15550100030"),
        "ringing",
        ("world-joiner.xml", "+15550100031"),
    )
    else {
        return;
    };
    assert_eq!(seen[0]["ringing"], json!(["dev_slow"]), "{seen:?}");
    let bridge = events(&rang, "bridge");
    assert!(
        bridge
            .iter()
            .any(|e| e["status"] == "answered" && e["answered_by"] == picking["call_id"]),
        "{bridge:?}"
    );
    assert!(
        events(&picking, "pickup")
            .iter()
            .any(|e| e["call_id"] == rang["call_id"]),
        "{picking:#}"
    );
    talked(&[&rang, &picking]);
}

#[test]
fn an_answered_real_call_is_intercepted_by_another() {
    let Some(Two { first, second, .. }) = two_calls(
        "an_answered_real_call_is_intercepted_by_another",
        &[echo_phone()],
        ("world-held.xml", "+15550100012"),
        "answered",
        ("world-joiner.xml", "+15550100036"),
    ) else {
        return;
    };
    let intercepted = events(&first, "intercepted");
    assert_eq!(intercepted.len(), 1, "{first:#}");
    assert_eq!(intercepted[0]["by"], second["call_id"]);
    assert_eq!(intercepted[0]["peer"], "dev_echo");
    assert_eq!(probe_said(&second), ["world_probe intercept: answered"]);
    // The interceptor talked to the first caller, not to the echo phone.
    talked(&[&second]);
}

#[test]
fn a_real_call_is_listened_to_by_another() {
    // The talking call stays 15 s; the listener comes once it is answered,
    // listens 4 s and hangs up.
    let Some(Two { first, second, .. }) = two_calls(
        "a_real_call_is_listened_to_by_another",
        &[echo_phone()],
        ("world-member.xml", "+15550100012"),
        "answered",
        ("world-joiner.xml", "+15550100035"),
    ) else {
        return;
    };
    let eavesdrop = events(&second, "eavesdrop");
    assert_eq!(eavesdrop.len(), 1, "{second:#}");
    assert_eq!(eavesdrop[0]["call_id"], first["call_id"]);
    assert_eq!(eavesdrop[0]["reason"], "hangup");
    talked(&[&second]);
    // The talking call went on with its phone, undisturbed.
    assert!(
        events(&first, "bridge")
            .iter()
            .any(|e| e["answered_by"] == "dev_echo"),
        "{first:#}"
    );
    assert_eq!(events(&first, "hangup")[0]["by"], "caller");
}

#[test]
fn a_waiting_real_call_is_woken_by_another() {
    let Some(Two {
        seen,
        first,
        second,
    }) = two_calls(
        "a_waiting_real_call_is_woken_by_another",
        &[],
        ("world-held.xml", "+15550100037"),
        "waiting",
        ("world-joiner.xml", "+15550100038"),
    )
    else {
        return;
    };
    assert_eq!(seen[0]["slot"], "line", "{seen:?}");
    assert_eq!(probe_said(&first), ["world_probe wait: woken"]);
    assert_eq!(probe_said(&second), ["world_probe wake: 1"]);
}

#[test]
fn three_real_callers_share_a_conference_room() {
    let Some(tools) = ready("three_real_callers_share_a_conference_room") else {
        return;
    };
    let (world, _) = World::start(&[]);
    // Two members stay 15 s; the third comes once both are in the room,
    // talks 4 s and leaves.
    let first = world.call(tools, "world-member.xml", "+15550100032");
    world.wait_for("conference", 1);
    let second = world.call(tools, "world-member.xml", "+15550100032");
    world.wait_for("conference", 2);
    let third = world.call(tools, "world-joiner.xml", "+15550100032");
    let runs = [third, second, first].map(|run| run.join().unwrap());
    let traces = world.traces(&runs.iter().collect::<Vec<_>>(), 3);
    let outcome = |trace: &Value| {
        events(trace, "conference")
            .first()
            .map(|e| e["members"].as_u64().unwrap_or(u64::MAX))
    };
    let mut members: Vec<Option<u64>> = traces.iter().map(outcome).collect();
    members.sort_unstable();
    // Each found those before it in the room.
    assert_eq!(members, [Some(0), Some(1), Some(2)], "{traces:#?}");
    let first_in = traces.iter().find(|t| outcome(t) == Some(0)).unwrap();
    let joins = events(first_in, "conference_member")
        .iter()
        .filter(|e| e["action"] == "join")
        .count();
    assert_eq!(
        joins, 2,
        "the first member heard both others come: {first_in:#}"
    );
    for trace in &traces {
        assert!(
            relayed_to_caller(trace) >= TALKED,
            "the room's mix reached {} too little: {}",
            trace["call_id"],
            trace["media"]
        );
    }
}

/// Alice's desk phone camps on the busy desk phone (`*51011`); when the
/// desk's call ends, the server calls Alice's phone back (a SIPp phone
/// registered as `dev_alice`), and once it answers, that leg dials 1011:
/// the desk rings again and answers. The callback is a call of its own,
/// from `dev_alice`, with its trace.
#[test]
fn a_camped_phone_is_called_back_when_the_target_is_free() {
    let Some(tools) = ready("a_camped_phone_is_called_back_when_the_target_is_free") else {
        return;
    };
    let desk = phone(
        "desk",
        "dev_desk",
        "far/answer.xml",
        &json!({"INVITE": 2, "ACK": 2, "BYE": 2}),
        &["-m", "2"],
    );
    let alice = phone(
        "alice",
        "dev_alice",
        "far/answer-bye.xml",
        &json!({"INVITE": 1, "ACK": 1}),
        &[],
    );
    // Only the trunk caller's port is a trunk: Alice's INVITE authenticates.
    let trunk = free_port();
    let far_ends = [desk, alice];
    let (world, ports) = World::start_trusting(&far_ends, Trust::Port(trunk));
    let flows = world.server.flows();
    let running = far::start(
        tools,
        world.server.sip,
        Path::new(&flows),
        &far_ends,
        &ports,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", world.server.log()));
    // The desk talks to a trunk caller for 15 s.
    let talking = world.call_from(tools, "world-member.xml", "+15550100011", trunk);
    world.wait_for("answered", 1);
    // Alice's desk phone camps on it and hears camper-queue.
    let camper = world
        .call(tools, "device-call-sipp.xml", "*51011")
        .join()
        .unwrap();
    let talking = talking.join().unwrap();
    let problems = far::finish(running);
    assert!(
        problems.is_empty(),
        "{}",
        world.fail(&problems.join("\n"), &[&talking, &camper])
    );
    let traces = world.traces(&[&talking, &camper], 3);
    let request = trace_to(&traces, "*51011");
    let camp = events(request, "camp");
    assert!(
        camp.iter()
            .any(|e| e["camped"] == true && e["number"] == "1011"),
        "{request:#}"
    );
    let callback = trace_to(&traces, "1011");
    assert_eq!(callback["calling_device"], "dev_alice", "{callback:#}");
    let bridge = events(callback, "bridge");
    assert!(
        bridge
            .iter()
            .any(|e| e["status"] == "answered" && e["answered_by"] == "dev_desk"),
        "{callback:#}"
    );
    assert_eq!(
        events(callback, "hangup")[0]["by"],
        "caller",
        "{callback:#}"
    );
}
