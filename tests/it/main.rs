//! The single integration-test binary (one binary links faster than many).
//! Each module below says what belongs in it; data-driven cases live in
//! folders under `tests/` and their snapshots in the top-level `snapshots/`.

// A failed unwrap is a failed test, with its location: what tests want.
#![allow(clippy::unwrap_used)]
// Test output is built by appending; speed does not matter here.
#![allow(clippy::format_push_string)]

/// Shared helpers: the callflow binary, insta settings, rendering.
mod support;

/// The REST API on a real server and a real HTTP client.
mod api;
/// The REST API's document types, one conversation per file
/// (`tests/api/`).
mod api_documents;
/// API keys and tokens: an account's keys over the API, last use, revoked
/// keys' tokens, `DELETE /v2/token_auth`.
mod api_keys;
/// Media audio (uploads converted, downloads) and voicemail messages over
/// the REST API.
mod api_media;
/// Crossbar parity on the real server: negated filters, date ranges,
/// internal URLs refused on save.
mod api_parity;
/// Bridged real calls between baresip phones: audio both ways, hang-ups,
/// transfers, holds.
mod bridging;
/// `tests/check/<case>/`: whole flows directories through `callflow check`,
/// stdout and exit code snapshotted.
mod check;
/// The real binary on the bundled sample flows, as the README uses it.
mod cli;
/// Calls side by side against one store: `call:update_doc` keeps every
/// caller's voicemail message.
mod concurrent;
/// A real server SIGKILLed during a storm of writes: every acknowledged
/// write is on disk, no file is corrupt, a restarted server serves them.
mod crash;
/// `tests/kazoo-examples/`: every Kazoo example document loads, with exactly
/// the diagnostics `EXPECTED.json` lists.
mod examples;
/// `tests/from-trace/<case>/`: real calls' traces turned into scenarios
/// (snapshotted) that must replay as the calls happened.
mod from_trace;
/// Fuzzing: mutated documents, scenarios and API requests never panic,
/// never get a 5xx, and finish in bounded time (fixed seed).
mod fuzz;
/// Issue 15's reproductions for documents, scenarios and files: limits,
/// incremental writes against full rebuilds, FIFOs and links refused.
mod hardening;
/// The server under pressure: answers during a slow reload, tenants kept
/// apart, reloading everyone the operator's, tokens capped, logins
/// rate-limited, slow clients dropped.
mod hardening_api;
/// Live call events: webhooks of a real call, the WebSocket.
mod hooks;
/// `tests/invalid/*.json`: one broken callflow document per file, its
/// diagnostics snapshotted.
mod invalid;
/// The API of real calls: registrations from real REGISTERs, call traces,
/// `serve --sip`.
mod live_api;
/// `callflow.toml`: found from a subdirectory, flags over it, errors
/// naming the file; broken scripts and flows fail `callflow test`.
mod project;
/// Hot reload: generations, calls across reloads, the watcher, `callflow dev`.
mod reload;
/// `tests/routing/*.json`: one account per file and a table of dialled numbers
/// with the route each must get.
mod routing;
/// Sandbox violations, many calls on one VM: nothing leaks.
mod sandbox;
/// `tests/scenarios/*.json`: one simulated call per file, its trace
/// snapshotted (and simulated twice: it must not change).
mod scenarios;
/// `tests/sip/`: real calls from SIPp and a raw SIP client to `callflow
/// serve --sip`, on 127.0.0.1.
mod sip;
/// A real softphone (baresip, in a network namespace) hears the prompt and
/// drives the sample's menu.
mod softphone;
/// `tests/state/*.lua`: every way a module could keep state between calls
/// is refused at load or cannot be seen by the next call.
mod state;
/// `tests/test-command/<case>/`: `callflow test`, `graph` and `init` as a
/// user runs them; the `init` scaffold passes out of the box.
mod test_command;
/// Repository rules that keep the code base consistent.
mod tidy;
