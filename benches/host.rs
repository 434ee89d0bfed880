//! Host overhead per module invocation: the same `handle` run through the
//! module host (`ModuleRunner::invoke` on a call: the coroutine, budgets,
//! the call object, node data shared as a frozen table, the shared module
//! instance) and called directly in a bare Luau VM with a stub call object
//! and a plain data table. Prints both times per invocation and the ratio.
//!
//! `cargo bench --bench host [-- --invocations N]`

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use callflow::catalog::Catalog;
use callflow::engine::{Call, CallFacts, ModuleRunner, Overlay};
use callflow::host::scripts::{Kind, ScriptSource, builtin_sources};
use callflow::host::{ModuleHost, ModuleSet};
use callflow::model::{ModuleNode, Object};
use callflow::sim::{Options, SimBackend, World};
use callflow::store::{FlowsDir, Store};
use callflow::trace::Trace;
use mlua::{Function, Lua, Table};
use serde_json::json;

/// A small module of the usual shape: reads its data, the call's facts and
/// a call variable, and picks a child.
const MODULE: &str = r#"
local M = {}
M.description = "benchmark"
local function total(items)
	local n = 0
	for _, item in items do
		n += #item
	end
	return n
end
function M.handle(call, data)
	local n = total(data.items)
	local seen = call:get("seen")
	if call.to == data.to and seen == nil then
		n += 1
	end
	if n > data.threshold then
		return "match"
	end
	return nil
end
return M
"#;

fn invocations() -> u32 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--invocations")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000)
}

fn data() -> serde_json::Value {
    json!({"items": ["alpha", "beta", "gamma", "delta"], "to": "1100", "threshold": 10})
}

#[allow(clippy::disallowed_methods)] // a benchmark measures wall-clock time
fn through_host(n: u32) -> f64 {
    let mut sources = builtin_sources();
    sources.push(ScriptSource {
        kind: Kind::Module,
        name: "bench_module".to_owned(),
        file: "bench_module.lua".to_owned(),
        text: MODULE.to_owned(),
    });
    let (modules, problems) = ModuleSet::build(sources, 1);
    assert!(problems.is_empty(), "{problems:?}");
    let (catalog, _) = Catalog::build(
        FlowsDir::new("flows").read().expect("the sample flows"),
        &modules,
    );
    let account = Arc::clone(catalog.accounts().next().expect("the sample account"));
    let host = ModuleHost::new(Arc::new(modules), Options::default().limits).expect("a VM");
    let trace = Rc::new(RefCell::new(Trace::with_max_events(1000)));
    let world = Rc::new(World {
        call_id: "bench".to_owned(),
        endpoints: std::collections::BTreeMap::default(),
        media: callflow::sim::scenario::Media::default(),
        http: std::collections::BTreeMap::default(),
        allow_network: false,
        allow_private_http: false,
        max_call_ms: u64::MAX,
        max_dtmf_digits: 10_000,
        fax: false,
    });
    let backend = Rc::new(SimBackend::new(world, &[], Rc::clone(&trace)));
    let facts = CallFacts {
        call_id: "bench".to_owned(),
        to: "1100".to_owned(),
        from: "1001".to_owned(),
        caller_id_name: "Bench".to_owned(),
        inception: callflow::routing::Inception::Onnet,
        calling_device: None,
        start_epoch_ms: 0,
        seed: 1,
    };
    let docs = Rc::new(Overlay::new(Arc::clone(&account), None));
    let call = Rc::new(Call::new(facts, account, backend, docs, trace));
    let serde_json::Value::Object(data) = data() else {
        unreachable!("the data is an object")
    };
    let node = ModuleNode {
        module: "bench_module".to_owned(),
        data: Object::from_iter(data),
        children: Vec::new(),
        extra: Object::new(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        for _ in 0..1000 {
            host.invoke(&call, &node).await.expect("runs");
        }
        let started = Instant::now();
        for _ in 0..n {
            host.invoke(&call, &node).await.expect("runs");
        }
        started.elapsed().as_secs_f64() * 1e9 / f64::from(n)
    })
}

#[allow(clippy::disallowed_methods)] // a benchmark measures wall-clock time
fn bare(n: u32) -> f64 {
    let lua = Lua::new();
    let module: Table = lua.load(MODULE).eval().expect("the module loads");
    let handle: Function = module.get("handle").expect("handle");
    let stub: Table = lua
        .load(
            r#"setmetatable({ to = "1100", from = "1001" }, { __index = {
                get = function(self, name) return nil end,
            } })"#,
        )
        .eval()
        .expect("the stub");
    let data: mlua::Value = mlua::LuaSerdeExt::to_value(&lua, &data()).expect("data");
    for _ in 0..1000 {
        let _: mlua::Value = handle.call((&stub, &data)).expect("runs");
    }
    let started = Instant::now();
    for _ in 0..n {
        let _: mlua::Value = handle.call((&stub, &data)).expect("runs");
    }
    started.elapsed().as_secs_f64() * 1e9 / f64::from(n)
}

fn main() {
    let n = invocations();
    let host_ns = through_host(n);
    let bare_ns = bare(n);
    println!(
        "{}",
        json!({
            "invocations": n,
            "host_ns_per_invocation": host_ns.round(),
            "bare_luau_ns_per_call": bare_ns.round(),
            "ratio": (host_ns / bare_ns * 100.0).round() / 100.0,
        })
    );
}
