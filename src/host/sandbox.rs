//! Creating a sandboxed Luau VM.
//!
//! * Libraries: `string`, `table`, `math`, `utf8`, `bit32`, `buffer`. No `os`,
//!   `io`, `debug`, `coroutine` (a script's own coroutines would swallow the
//!   yields of async verbs), no `package` (Luau has no file access at all).
//! * Removed globals: `coroutine` (Luau opens it with the base library),
//!   `loadstring`, `getfenv`, `setfenv`, `collectgarbage`,
//!   `gcinfo`, `newproxy`; `require`, `print` and `math.random` are replaced
//!   by the host's own (`api.rs`).
//! * Luau sandbox mode: libraries, their metatables and the globals table are
//!   read-only.
//! * Limits: a memory cap for the whole VM, and per module invocation an
//!   interrupt budget and a memory budget (the heap's growth while it runs,
//!   checked at each interrupt); neither can be caught by `pcall` for good,
//!   because every later tick fails again.

use std::rc::Rc;

use mlua::{Lua, LuaOptions, LuaSerdeExt, StdLib, Value as LuaValue, VmState};

use super::{Current, api};
use crate::limits::Limits;

/// Globals scripts do not get.
const REMOVED: &[&str] = &[
    "coroutine",
    "loadstring",
    "getfenv",
    "setfenv",
    "collectgarbage",
    "gcinfo",
    "newproxy",
];

/// A new VM, sandboxed, with the host API registered.
pub(crate) fn new_vm(limits: &Limits, current: Rc<Current>) -> mlua::Result<Lua> {
    let libs =
        StdLib::STRING | StdLib::TABLE | StdLib::MATH | StdLib::UTF8 | StdLib::BIT | StdLib::BUFFER;
    let lua = Lua::new_with(libs, LuaOptions::new())?;
    // mlua loads `coroutine` when it creates async functions (each captures
    // `coroutine.yield`), so the API goes in first, the removals after.
    api::register(&lua, Rc::clone(&current))?;
    let globals = lua.globals();
    for name in REMOVED {
        globals.raw_set(*name, LuaValue::Nil)?;
    }
    lua.sandbox(true)?;
    // Shared by every JSON array handed to scripts: read-only, or one
    // script's change would reach the next call.
    lua.array_metatable().set_readonly(true);
    lua.set_memory_limit(limits.vm_memory_bytes)?;
    lua.set_interrupt(move |lua| match current.borrowed().as_deref() {
        Some(inv) if !inv.tick() => Err(mlua::Error::runtime(located(
            lua,
            "interrupt budget exceeded",
        ))),
        Some(inv) if !inv.within_memory(lua.used_memory()) => {
            Err(mlua::Error::runtime(located(lua, "memory budget exceeded")))
        }
        _ => Ok(VmState::Continue),
    });
    Ok(lua)
}

/// `message` prefixed with the script file and line running now
/// (`file.lua:12: message`, as Luau's own errors are), when known.
fn located(lua: &Lua, message: &str) -> String {
    lua.inspect_stack(0, |debug| {
        let file = debug.source().source?.strip_prefix('@')?.to_owned();
        let line = debug.current_line()?;
        Some(format!("{file}:{line}: {message}"))
    })
    .flatten()
    .unwrap_or_else(|| message.to_owned())
}
