//! Shared module instances: each script's chunk runs once per VM and
//! generation, and every call reuses what it returned.
//!
//! Sharing is safe because nothing a call can reach through an instance can
//! change:
//! * the chunk runs without a call (`call:*`, `math.random` fail at load),
//!   in one read-only environment, so what it builds depends on the script
//!   alone, never on the call that happened to load it first;
//! * every table reachable from what it returned (fields, metatables,
//!   the values its functions captured) is frozen: a write fails;
//! * a function that assigns a variable declared outside it (an upvalue:
//!   the one thing a freeze cannot cover) is refused at load with its file
//!   and line (`bytecode.rs` finds them), as is a buffer;
//! * what a call builds while it runs is its own and dies with it.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;

use mlua::{Function, Lua, LuaString, Table, Value as LuaValue};

use super::scripts::{Compiled, ModuleSet};
use super::{Entry, Invocation, ffi};

/// Beyond this many cached instances the cache starts afresh (generations
/// come and go with reloads; running calls keep the instances they hold).
const CACHE_MAX: usize = 512;

/// Each script's instance by (generation, is a helper, name), and each
/// module's checked one by (generation, name); app data.
#[derive(Default)]
pub(crate) struct Instances(
    RefCell<BTreeMap<(u64, bool, String), LuaValue>>,
    RefCell<BTreeMap<(u64, String), Rc<ReadyModule>>>,
);

impl Instances {
    pub(crate) fn clear(&self) {
        self.0.borrow_mut().clear();
        self.1.borrow_mut().clear();
    }
}

/// A module's shared instance, checked to be a module, with what every
/// invocation needs of it at hand.
pub(crate) struct ReadyModule {
    pub table: Table,
    pub handle: Function,
    pub on_end: Option<Function>,
    /// The module's name, as the call object's `module` field.
    pub name: LuaString,
}

/// The module `name` of `set` ready to run on this VM (see [`shared`]);
/// `Err` says what is wrong with its script.
pub(crate) fn module(
    lua: &Lua,
    set: &Arc<ModuleSet>,
    name: &str,
    script: &Compiled,
) -> mlua::Result<Result<Rc<ReadyModule>, String>> {
    let key = (set.generation, name.to_owned());
    if let Some(ready) = lua
        .app_data_ref::<Instances>()
        .and_then(|instances| instances.1.borrow().get(&key).cloned())
    {
        return Ok(Ok(ready));
    }
    let table = match shared(lua, set, false, script)? {
        LuaValue::Table(table) => table,
        other => {
            return Ok(Err(format!(
                "the script returns {}, not a table {{ handle = function(call, data) ... end }}",
                other.type_name()
            )));
        }
    };
    let Ok(LuaValue::Function(handle)) = table.get::<LuaValue>("handle") else {
        return Ok(Err("the script's table has no `handle` function".to_owned()));
    };
    let on_end = match table.get::<LuaValue>("on_end") {
        Ok(LuaValue::Nil) => None,
        Ok(LuaValue::Function(on_end)) => Some(on_end),
        _ => return Ok(Err("the script's `on_end` is not a function".to_owned())),
    };
    let ready = Rc::new(ReadyModule {
        table,
        handle,
        on_end,
        name: lua.create_string(name)?,
    });
    if let Some(instances) = lua.app_data_ref::<Instances>() {
        let mut modules = instances.1.borrow_mut();
        if modules.len() >= CACHE_MAX {
            modules.clear();
        }
        modules.insert(key, Rc::clone(&ready));
    }
    Ok(Ok(ready))
}

/// The read-only environment every instance runs in: the VM's globals,
/// which it can read and never write (app data).
pub(crate) struct SharedEnv(pub Table);

/// Creates the shared environment on a new VM.
pub(crate) fn register(lua: &Lua) -> mlua::Result<()> {
    let env = lua.create_table()?;
    let meta = lua.create_table()?;
    meta.set("__index", lua.globals())?;
    meta.set("__metatable", false)?;
    env.set_metatable(Some(meta))?;
    env.set_readonly(true);
    lua.set_app_data(SharedEnv(env));
    lua.set_app_data(Instances::default());
    Ok(())
}

/// What `script` (of `set`) returned when its chunk ran on this VM, frozen;
/// run now if this VM has not yet run it for `set`'s generation.
pub(crate) fn shared(
    lua: &Lua,
    set: &Arc<ModuleSet>,
    is_lib: bool,
    script: &Compiled,
) -> mlua::Result<LuaValue> {
    let key = (set.generation, is_lib, script.name.clone());
    if let Some(value) = lua
        .app_data_ref::<Instances>()
        .and_then(|instances| instances.0.borrow().get(&key).cloned())
    {
        return Ok(value);
    }
    let env = lua
        .app_data_ref::<SharedEnv>()
        .map(|env| env.0.clone())
        .ok_or_else(|| mlua::Error::runtime("the VM has no shared environment"))?;
    let (current, limits) = super::slot_and_limits(lua)?;
    let chunk = lua
        .load(&*script.bytecode)
        .set_name(format!("@{}", script.file))
        .set_environment(env)
        .into_function()?;
    // No call: nothing of one call may end up in what every call shares.
    // Budgets of its own, so a chunk's loop or memory bomb is blamed on it.
    let inv = Rc::new(Invocation::new(
        lua,
        &limits,
        Arc::clone(set),
        None,
        &script.name,
        Entry::Handle,
        Vec::new(),
    ));
    let previous = current.replace(Some(Rc::clone(&inv)));
    let value = chunk.call::<LuaValue>(());
    current.replace(previous);
    let failure = |what: String| {
        // Where the chunk was when it was stopped, if the error says.
        match value
            .as_ref()
            .err()
            .and_then(|e| super::api::describe_error(e).1)
        {
            Some((file, line)) => mlua::Error::runtime(format!("{file}:{line}: {what}")),
            None => mlua::Error::runtime(what),
        }
    };
    if inv.memory_killed.get() {
        let _ = lua.gc_collect();
        return Err(failure(format!(
            "ran past its memory budget of {} MiB while loading",
            limits.invoke_memory_bytes >> 20
        )));
    }
    if inv.killed.get() {
        return Err(failure(format!(
            "ran past its budget of {} interrupts while loading (an endless loop?)",
            limits.interrupts_per_invoke
        )));
    }
    let value = value?;
    freeze(lua, set, &script.file, &value)?;
    if let Some(instances) = lua.app_data_ref::<Instances>() {
        let mut instances = instances.0.borrow_mut();
        if instances.len() >= CACHE_MAX {
            instances.clear();
        }
        instances.insert(key, value.clone());
    }
    Ok(value)
}

/// The function (file, line, name) that holds a value as an upvalue.
type Holder = (String, u32, String);

/// Freezes every table reachable from `value` and checks every function
/// that scripts of `set` made; the first function that assigns a variable
/// outside itself (or a buffer) is an error at its file and line.
fn freeze(lua: &Lua, set: &ModuleSet, origin: &str, value: &LuaValue) -> mlua::Result<()> {
    let mut seen: BTreeSet<usize> = BTreeSet::new();
    // The VM's globals and libraries are the host's, read-only already.
    seen.insert(lua.globals().to_pointer() as usize);
    // Each value with the function that holds it as an upvalue, if any
    // (file, line, name), to say where a buffer is kept.
    let mut stack: Vec<(LuaValue, Option<Rc<Holder>>)> = vec![(value.clone(), None)];
    while let Some((value, holder)) = stack.pop() {
        match value {
            LuaValue::Table(table) => {
                if !seen.insert(table.to_pointer() as usize) {
                    continue;
                }
                table.set_readonly(true);
                if let Some(meta) = table.metatable() {
                    stack.push((LuaValue::Table(meta), None));
                }
                for pair in table.pairs::<LuaValue, LuaValue>() {
                    let (key, value) = pair?;
                    stack.push((key, None));
                    stack.push((value, None));
                }
            }
            LuaValue::Function(function) => {
                if !seen.insert(function.to_pointer() as usize) {
                    continue;
                }
                let info = function.info();
                let Some(file) = info
                    .source
                    .as_deref()
                    .and_then(|source| source.strip_prefix('@'))
                else {
                    continue;
                };
                // Functions of the host's own Lua (the prelude) are trusted.
                let Some(script) = set.script_by_file(file) else {
                    continue;
                };
                let line = info
                    .line_defined
                    .and_then(|line| u32::try_from(line).ok())
                    .unwrap_or(0);
                match &*script.writes {
                    Err(why) => {
                        return Err(mlua::Error::runtime(format!(
                            "{file}: cannot tell what its functions assign ({why}), so it cannot be shared between calls"
                        )));
                    }
                    Ok(analysis) => {
                        if let Some((function, write)) = analysis.writes_at(line).next() {
                            let name = function.name.as_deref().map_or_else(
                                || format!("the function defined at line {line}"),
                                |n| format!("`{n}`"),
                            );
                            let variable = write
                                .name
                                .as_deref()
                                .map_or_else(|| "a variable".to_owned(), |v| format!("`{v}`"));
                            return Err(mlua::Error::runtime(format!(
                                "{file}:{}: {name} assigns {variable}, declared outside it: every call would share it, so module-level state is refused (keep what a call needs in locals of `handle`, in call:set, or in a document)",
                                write.line.unwrap_or(line)
                            )));
                        }
                    }
                }
                let name = info.name.map_or_else(
                    || format!("the function defined at line {line}"),
                    |n| format!("`{n}`"),
                );
                let holder = Rc::new((file.to_owned(), line, name));
                stack.extend(
                    ffi::upvalues(lua, &function)?
                        .into_iter()
                        .map(|value| (value, Some(Rc::clone(&holder)))),
                );
            }
            LuaValue::Buffer(_) => {
                let what = "a buffer made while the script loads: every call would share it, so it is refused (create buffers inside `handle`)";
                return Err(mlua::Error::runtime(match holder.as_deref() {
                    Some((file, line, name)) => format!("{file}:{line}: {name} keeps {what}"),
                    None => format!("the table {origin} returned holds {what}"),
                }));
            }
            _ => {}
        }
    }
    Ok(())
}
