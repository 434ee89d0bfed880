//! callflow: a Kazoo-compatible callflow interpreter whose modules are Lua
//! scripts.
//!
//! # Layout
//!
//! In data-flow order:
//!
//! * [`ids`]: validated account ids, document ids and document types; the only
//!   way a name becomes part of a path.
//! * [`store`]: where documents live; [`store::FlowsDir`] reads the flows
//!   directory into [`catalog::Sources`] (file contents, no parsing).
//! * [`model`]: callflow, account and other documents, parsed from JSON into
//!   validated immutable types, with [`model::Diagnostic`]s for every problem.
//! * [`pattern`]: Kazoo's regexes in the `regex` crate's dialect.
//! * [`routing`]: number normalization and the route table that picks the
//!   callflow for a dialled number, exactly as Kazoo does.
//! * [`catalog`]: every account of a store, parsed, cross-checked and routed.
//! * [`schema`]: the JSON Schema subset modules declare their data with.
//! * [`metaflow`]: in-call feature codes (Kazoo's konami): bindings and the
//!   state machine, pure.
//! * [`trace`]: what happened during a call, as events; text and JSON.
//! * [`engine`]: the executor (Kazoo's `cf_exe`) and the call-control port.
//! * [`host`]: the Luau module host and the Lua-facing API.
//! * [`sim`]: the deterministic call simulator (scenarios, virtual time).
//! * [`testing`]: what `callflow test` checks: inline expectations, trace
//!   diffs, flow coverage (text, JSON, LCOV).
//! * [`graph`]: diagrams of a callflow (Graphviz dot, Mermaid), optionally
//!   marked with a call's path or a test run's coverage.
//! * [`reload`]: hot reload: generations of scripts and flows, the file
//!   watcher and the content-hash poller.
//! * [`api`]: the REST API server (Kazoo's callflows API), on axum.
//! * [`limits`]: every limit, documented in one place.
//!
//! The binary (`src/main.rs`, `src/cli/`) is the only place that prints,
//! chooses exit codes or uses `anyhow`.

pub mod api;
pub mod catalog;
pub mod engine;
pub mod graph;
pub mod host;
pub mod ids;
pub mod limits;
pub mod live;
pub mod media;
pub mod metaflow;
pub mod model;
pub mod pattern;
pub mod reload;
pub mod routing;
pub mod schema;
pub mod sim;
pub mod sip;
pub mod store;
pub mod testing;
pub mod trace;
