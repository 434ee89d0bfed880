//! The module host: runs module scripts in a sandboxed Luau VM.
//!
//! One VM per worker thread ([`ModuleHost`]); one coroutine per module
//! invocation. A module's script runs once per VM and generation
//! (`instances.rs`): every invocation calls the `handle` of that shared
//! instance, which is made unable to carry state between calls (what it
//! reaches is frozen, functions that assign outer variables are refused at
//! load). The VM-wide hooks (interrupt budget, `math.random`, `print`) find
//! the invocation they act for through [`Current`], which the invocation's
//! future sets each time it is polled. Documents handed to scripts are
//! frozen tables, converted once per VM and document version and shared:
//! being read-only, they cannot carry state either.
//!
//! * `sandbox.rs`: creating the VM (libraries, stripped globals, limits).
//! * `api.rs`: the whole Lua-facing API (the `call` object, `re`, `require`).
//! * `scripts.rs`: built-in and user scripts, compiled into a [`ModuleSet`].
//! * `convert.rs`: JSON ⇄ Lua.
//! * `functions.rs`: function documents (`call:run_function`), compiled and
//!   run in the same sandbox, within the asking module's budgets.
//! * `instances.rs`: shared module instances, frozen.
//! * `bytecode.rs`: which functions of a script assign outer variables.
//! * `ffi.rs`: the one `unsafe` (reading upvalues).

pub mod api;
pub mod bytecode;
mod convert;
#[allow(unsafe_code)]
mod ffi;
pub mod functions;
mod instances;
mod sandbox;
pub mod scripts;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use mlua::{Function, Lua, Table, Value as LuaValue};
use serde_json::Value;

pub use scripts::{Loaded, ModuleScript, ModuleSet, ScriptError};

use crate::engine::{Admission, Call, LocalFuture, ModuleError, ModuleRunner, Next, OnEnd};
use crate::limits::Limits;
use crate::model::ModuleNode;

/// A Luau VM that runs modules of a [`ModuleSet`]. Not `Send`: one per
/// worker thread.
pub struct ModuleHost {
    vm: Vm,
    set: RefCell<Arc<ModuleSet>>,
}

/// What running an invocation takes: the VM, its current-invocation slot
/// and the limits. Handles, cheap to clone: a metaflow that runs in the
/// middle of a verb gets a new invocation on the same VM through them.
#[derive(Clone)]
pub(crate) struct Vm {
    lua: Lua,
    current: Rc<Current>,
    limits: Limits,
}

/// The module host cannot start (the Lua VM failed to initialize).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot start the Lua VM: {message}")]
pub struct HostError {
    pub message: String,
}

/// The invocation running on the VM right now, if any.
#[derive(Default)]
pub(crate) struct Current(RefCell<Option<Rc<Invocation>>>);

impl Current {
    pub(crate) fn get(&self) -> Option<Rc<Invocation>> {
        self.0.borrow().clone()
    }

    /// The invocation, borrowed (no count changes: the interrupt's path).
    pub(crate) fn borrowed(&self) -> std::cell::Ref<'_, Option<Rc<Invocation>>> {
        self.0.borrow()
    }

    fn replace(&self, inv: Option<Rc<Invocation>>) -> Option<Rc<Invocation>> {
        std::mem::replace(&mut *self.0.borrow_mut(), inv)
    }
}

/// The function of a module's table an invocation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// `handle(call, data)`, for a node.
    Handle,
    /// `on_end(call, data)`, once the call has ended.
    OnEnd,
}

impl Entry {
    fn name(self) -> &'static str {
        match self {
            Entry::Handle => "handle",
            Entry::OnEnd => "on_end",
        }
    }
}

/// One run of a module's script: its call, node, budget and the directive
/// (`branch`, `stop`, ...) it asked for.
pub(crate) struct Invocation {
    /// `None` while a script is only being loaded (smoke test).
    pub call: Option<Rc<Call>>,
    pub module: String,
    pub entry: Entry,
    /// The module's instance, once loaded.
    pub instance: RefCell<Option<Rc<instances::ReadyModule>>>,
    /// The node's child keys, in document order, and whether each child is
    /// a module node (not `{}`).
    pub children: Vec<(String, bool)>,
    pub set: Arc<ModuleSet>,
    budget: Cell<u64>,
    killed: Cell<bool>,
    /// The heap's size when the invocation was last resumed, and how much
    /// it grew during its earlier runs (see [`Invocation::within_memory`]).
    memory_base: Cell<usize>,
    memory_grown: Cell<isize>,
    memory_budget: usize,
    /// It ran past its memory budget: every later check fails again.
    memory_killed: Cell<bool>,
    pub directive: RefCell<Option<Next>>,
    /// Documents converted for this invocation, by (type, id) (`("", "")`
    /// for the account); a save drops its entry.
    pub documents: RefCell<BTreeMap<(String, String), LuaValue>>,
    /// The call's documents' generation those conversions are of: another
    /// call of a world that saved a document since makes them stale.
    pub documents_generation: Cell<u64>,
    /// `call:update_doc`'s function is running: verbs are refused (it may
    /// run several times and must not yield).
    pub updating: Cell<bool>,
}

impl Invocation {
    /// A new invocation of `module` on `lua`, with full budgets.
    pub(crate) fn new(
        lua: &Lua,
        limits: &Limits,
        set: Arc<ModuleSet>,
        call: Option<Rc<Call>>,
        module: &str,
        entry: Entry,
        children: Vec<(String, bool)>,
    ) -> Self {
        Invocation {
            call,
            module: module.to_owned(),
            entry,
            instance: RefCell::new(None),
            children,
            set,
            budget: Cell::new(limits.interrupts_per_invoke),
            killed: Cell::new(false),
            memory_base: Cell::new(lua.used_memory()),
            memory_grown: Cell::new(0),
            memory_budget: limits.invoke_memory_bytes,
            memory_killed: Cell::new(false),
            directive: RefCell::new(None),
            documents: RefCell::new(BTreeMap::new()),
            documents_generation: Cell::new(0),
            updating: Cell::new(false),
        }
    }

    /// Uses one interrupt tick; false once the budget is spent.
    fn tick(&self) -> bool {
        let left = self.budget.get();
        if left == 0 {
            self.killed.set(true);
            return false;
        }
        self.budget.set(left - 1);
        true
    }

    /// Whether the heap grew by at most the memory budget while this
    /// invocation ran, the heap being `used` bytes now; false ever after
    /// once it did not.
    fn within_memory(&self, used: usize) -> bool {
        if self.memory_killed.get() {
            return false;
        }
        let grown = self.memory_grown.get() + delta(self.memory_base.get(), used);
        if grown > isize::try_from(self.memory_budget).unwrap_or(isize::MAX) {
            self.memory_killed.set(true);
            return false;
        }
        true
    }

    /// The invocation is resumed with the heap at `used` bytes.
    fn resumed(&self, used: usize) {
        self.memory_base.set(used);
    }

    /// The invocation yields (or ends) with the heap at `used` bytes.
    fn paused(&self, used: usize) {
        self.memory_grown
            .set(self.memory_grown.get() + delta(self.memory_base.get(), used));
    }
}

/// The VM's invocation slot and limits (its app data).
pub(crate) fn slot_and_limits(lua: &Lua) -> mlua::Result<(Rc<Current>, Limits)> {
    let current = lua
        .app_data_ref::<Rc<Current>>()
        .map(|current| Rc::clone(&current))
        .ok_or_else(|| mlua::Error::runtime("the VM has no invocation slot"))?;
    let limits = lua
        .app_data_ref::<Limits>()
        .map(|limits| *limits)
        .ok_or_else(|| mlua::Error::runtime("the VM has no limits"))?;
    Ok((current, limits))
}

/// `to - from`, as a signed byte count.
fn delta(from: usize, to: usize) -> isize {
    if to >= from {
        isize::try_from(to - from).unwrap_or(isize::MAX)
    } else {
        isize::try_from(from - to).map_or(isize::MIN, |d| -d)
    }
}

/// Polls an invocation's future with the invocation set as current, and
/// counts how the heap grows while it runs.
struct Scoped<F> {
    lua: Lua,
    current: Rc<Current>,
    inv: Rc<Invocation>,
    inner: Pin<Box<F>>,
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let previous = self.current.replace(Some(Rc::clone(&self.inv)));
        self.inv.resumed(self.lua.used_memory());
        let result = self.inner.as_mut().poll(cx);
        self.inv.paused(self.lua.used_memory());
        self.current.replace(previous);
        result
    }
}

impl ModuleHost {
    /// A new VM for `set`, with `limits`.
    pub fn new(set: Arc<ModuleSet>, limits: Limits) -> Result<Self, HostError> {
        let current = Rc::new(Current::default());
        let lua = sandbox::new_vm(&limits, Rc::clone(&current)).map_err(|e| HostError {
            message: e.to_string(),
        })?;
        lua.set_app_data(limits);
        lua.set_app_data(Collected::default());
        lua.set_app_data(Running::default());
        Ok(Self {
            vm: Vm {
                lua,
                current,
                limits,
            },
            set: RefCell::new(set),
        })
    }

    /// The module set calls started from now on use.
    pub fn module_set(&self) -> Arc<ModuleSet> {
        Arc::clone(&self.set.borrow())
    }

    /// Replaces the module set (a reload); running invocations keep theirs.
    pub fn set_module_set(&self, set: Arc<ModuleSet>) {
        *self.set.borrow_mut() = set;
        if let Some(instances) = self.vm.lua.app_data_ref::<instances::Instances>() {
            instances.clear();
        }
    }

    /// The limits its calls run under.
    pub fn limits(&self) -> Limits {
        self.vm.limits
    }

    /// Bytes the VM uses now.
    pub fn used_memory(&self) -> usize {
        self.vm.lua.used_memory()
    }
}

/// An mlua async call that is dropped with the VM's memory cap lifted.
/// Dropping it resets its Lua thread for reuse (`lua_resetthread`, which
/// may allocate a new stack) outside any protected call: an allocation
/// failing there throws through Rust frames and aborts the process, which
/// is what happened when many calls had filled the VM to its cap. The drop
/// allocates little; the cap is back right after it.
struct Headroom<F> {
    lua: Lua,
    inner: Option<Pin<Box<F>>>,
}

impl<F: Future> Future for Headroom<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            // Polled after it completed: it never will again.
            return Poll::Pending;
        };
        let result = inner.as_mut().poll(cx);
        if result.is_ready() {
            drop_with_headroom(&this.lua, this.inner.take());
        }
        result
    }
}

impl<F> Drop for Headroom<F> {
    fn drop(&mut self) {
        drop_with_headroom(&self.lua, self.inner.take());
    }
}

/// Drops `value` with the VM's memory cap lifted (see [`Headroom`]).
fn drop_with_headroom<T>(lua: &Lua, value: T) {
    match lua.set_memory_limit(0) {
        Ok(cap) => {
            drop(value);
            let _ = lua.set_memory_limit(cap);
        }
        Err(_) => drop(value),
    }
}

/// How many calls the VM runs now (app data), for admission.
#[derive(Default)]
struct Running(Rc<Cell<usize>>);

/// The heap's size after the last full collection [`Vm::collect_if_needed`]
/// forced (app data of the VM).
#[derive(Default)]
struct Collected(Cell<usize>);

impl Vm {
    /// A place for a new call, unless the VM runs `max_calls` already, or
    /// as many calls as three quarters of its cap hold at
    /// `call_reserve_bytes` each, or its heap stays over three quarters of
    /// its cap after a collection.
    fn admit(&self) -> Option<Admission> {
        let Some(running) = self
            .lua
            .app_data_ref::<Running>()
            .map(|running| Rc::clone(&running.0))
        else {
            return Some(Admission::free());
        };
        if self.limits.max_calls > 0 && running.get() >= self.limits.max_calls {
            return None;
        }
        let threshold = self.limits.vm_memory_bytes / 4 * 3;
        // Room for the calls admitted to grow: each has its reserve.
        if running.get() >= threshold / self.limits.call_reserve_bytes.max(1) {
            return None;
        }
        if self.lua.used_memory() > threshold {
            self.collect_if_needed(false);
            if self.lua.used_memory() > threshold {
                return None;
            }
        }
        running.set(running.get() + 1);
        Some(Admission::with_release(move || {
            running.set(running.get().saturating_sub(1));
        }))
    }

    /// A full collection when an invocation ran past its memory budget
    /// (`killed`: its garbage goes at once, so the calls that come next find
    /// the VM as it was, not full), or when the heap is over three quarters
    /// of the VM's cap and grew by an eighth of it since the last forced
    /// one (so that many calls legitimately holding memory do not force a
    /// full collection after every invocation).
    fn collect_if_needed(&self, killed: bool) {
        let used = self.lua.used_memory();
        let cap = self.limits.vm_memory_bytes;
        let last = self
            .lua
            .app_data_ref::<Collected>()
            .map_or(0, |collected| collected.0.get());
        if killed || (used > cap / 4 * 3 && used > last.saturating_add(cap / 8)) {
            let _ = self.lua.gc_collect();
            if let Some(collected) = self.lua.app_data_ref::<Collected>() {
                collected.0.set(self.lua.used_memory());
            }
        }
    }

    /// The VM an API function runs on, to run a nested invocation (a
    /// metaflow inside a verb) pinned to `set`.
    pub(crate) fn of(lua: &Lua, set: Arc<ModuleSet>) -> mlua::Result<Pinned> {
        let (current, limits) = slot_and_limits(lua)?;
        Ok(Pinned {
            vm: Vm {
                lua: lua.clone(),
                current,
                limits,
            },
            set,
        })
    }

    fn invocation(
        &self,
        set: Arc<ModuleSet>,
        call: Option<Rc<Call>>,
        module: &str,
        entry: Entry,
        children: Vec<(String, bool)>,
    ) -> Rc<Invocation> {
        Rc::new(Invocation::new(
            &self.lua,
            &self.limits,
            set,
            call,
            module,
            entry,
            children,
        ))
    }

    /// The module's shared instance (its chunk run once on this VM for the
    /// set's generation, frozen), checked to be a module's table.
    fn load_module(&self, inv: &Invocation) -> Result<Rc<instances::ReadyModule>, ModuleError> {
        let set = Arc::clone(&inv.set);
        let script = match set.script(&inv.module) {
            Some(Loaded::Ready(module)) => &module.script,
            Some(Loaded::Broken(err)) => {
                return Err(ModuleError {
                    module: inv.module.clone(),
                    file: Some(err.file.clone()),
                    line: err.line,
                    message: format!("the module's script does not load: {}", err.message),
                    stack: Vec::new(),
                });
            }
            None => {
                return Err(ModuleError {
                    module: inv.module.clone(),
                    file: None,
                    line: None,
                    message: "no script provides this module".to_owned(),
                    stack: Vec::new(),
                });
            }
        };
        match instances::module(&self.lua, &set, &inv.module, script) {
            Ok(Ok(ready)) => Ok(ready),
            Ok(Err(message)) => Err(ModuleError {
                module: inv.module.clone(),
                file: Some(script.file.clone()),
                line: None,
                message,
                stack: Vec::new(),
            }),
            Err(err) => Err(module_error(&inv.module, &err)),
        }
    }
}

impl ModuleHost {
    /// Loads a module without a call and reads its `schema` and
    /// `description` (the smoke test of [`ModuleSet::build`]).
    pub(crate) fn inspect(
        &self,
        name: &str,
    ) -> Result<(Option<Value>, Option<String>), ScriptError> {
        let file = match self.module_set().script(name) {
            Some(Loaded::Ready(module)) => module.script.file.clone(),
            _ => name.to_owned(),
        };
        let inv = self
            .vm
            .invocation(self.module_set(), None, name, Entry::Handle, Vec::new());
        let previous = self.vm.current.replace(Some(Rc::clone(&inv)));
        let result = self.vm.load_module(&inv);
        self.vm.current.replace(previous);
        let table = result.map_err(|e| ScriptError {
            file: e.file.unwrap_or(file.clone()),
            line: e.line,
            message: e.message,
        })?;
        let schema = match table.table.get::<LuaValue>("schema") {
            Ok(LuaValue::Nil) => None,
            Ok(LuaValue::Table(schema)) => Some(
                convert::from_lua(&self.vm.lua, &LuaValue::Table(schema)).map_err(|e| {
                    script_error(&file, &format!("`schema` is not plain data: {e}"))
                })?,
            ),
            Ok(other) => {
                return Err(script_error(
                    &file,
                    &format!("`schema` must be a table, found {}", other.type_name()),
                ));
            }
            Err(e) => return Err(script_error(&file, &e.to_string())),
        };
        let description = match table.table.get::<LuaValue>("description") {
            Ok(LuaValue::String(text)) => Some(text.to_string_lossy()),
            _ => None,
        };
        Ok((schema, description))
    }
}

impl Vm {
    /// Runs one entry (`handle` or `on_end`) of `module` with `data` on
    /// `call`; returns the invocation (for its directive) and what the entry
    /// function returned.
    async fn call_entry(
        &self,
        set: &Arc<ModuleSet>,
        call: &Rc<Call>,
        module: &str,
        entry: Entry,
        children: Vec<(String, bool)>,
        data: &serde_json::Map<String, Value>,
    ) -> (Option<Rc<Invocation>>, Result<LuaValue, ModuleError>) {
        let inv = self.invocation(
            Arc::clone(set),
            Some(Rc::clone(call)),
            module,
            entry,
            children,
        );
        let lua = self.lua.clone();
        let task = {
            let inv = Rc::clone(&inv);
            async move {
                let ready = self.load_module(&inv)?;
                *inv.instance.borrow_mut() = Some(Rc::clone(&ready));
                let prepared = (|| -> mlua::Result<(Option<Function>, LuaValue, Table)> {
                    let function = match entry {
                        Entry::Handle => Some(ready.handle.clone()),
                        Entry::OnEnd => ready.on_end.clone(),
                    };
                    // Node data lives as long as its flow: shared. `on_end`
                    // data belongs to one call.
                    let data = LuaValue::Table(match entry {
                        Entry::Handle => convert::shared_object(&lua, data)?,
                        Entry::OnEnd => convert::frozen_object(&lua, data)?,
                    });
                    let call_object = api::call_object(&lua, &inv, &ready.name)?;
                    Ok((function, data, call_object))
                })();
                let (function, data, call_object) =
                    prepared.map_err(|e| module_error(&inv.module, &e))?;
                let Some(function) = function else {
                    return Err(ModuleError {
                        module: inv.module.clone(),
                        file: None,
                        line: None,
                        message: format!("the module has no `{}` function", entry.name()),
                        stack: Vec::new(),
                    });
                };
                Headroom {
                    lua: lua.clone(),
                    inner: Some(Box::pin(
                        function.call_async::<LuaValue>((call_object, data)),
                    )),
                }
                .await
                .map_err(|e| module_error(&inv.module, &e))
            }
        };
        let scoped = Scoped {
            lua: self.lua.clone(),
            current: Rc::clone(&self.current),
            inv: Rc::clone(&inv),
            inner: Box::pin(task),
        };
        let result = scoped.await;
        self.collect_if_needed(inv.memory_killed.get());
        // A budget that ran out is what ended it, whatever error it raised.
        let stopped = if inv.memory_killed.get() {
            Some(format!(
                "ran past its memory budget of {} MiB (the heap it may grow while it runs)",
                self.limits.invoke_memory_bytes >> 20
            ))
        } else if inv.killed.get() {
            Some(format!(
                "ran past its budget of {} interrupts (an endless loop?)",
                self.limits.interrupts_per_invoke
            ))
        } else {
            None
        };
        if let Some(message) = stopped {
            let error = ModuleError {
                module: module.to_owned(),
                file: result.as_ref().err().and_then(|e| e.file.clone()),
                line: result.as_ref().err().and_then(|e| e.line),
                message,
                stack: result
                    .as_ref()
                    .err()
                    .map(|e| e.stack.clone())
                    .unwrap_or_default(),
            };
            return (Some(inv), Err(error));
        }
        (Some(inv), result)
    }

    /// Runs the `handle` of module `name` (the node's module, or
    /// `metaflows/<module>` for a metaflow node) for `node` on `call`.
    async fn run(
        &self,
        set: &Arc<ModuleSet>,
        call: &Rc<Call>,
        name: &str,
        node: &ModuleNode,
    ) -> Result<Next, ModuleError> {
        let children = node
            .children
            .iter()
            .map(|(key, child)| (key.clone(), child.as_module().is_some()))
            .collect();
        let (inv, result) = self
            .call_entry(set, call, name, Entry::Handle, children, &node.data)
            .await;
        let returned = match result {
            Ok(value) => value,
            // A verb called after the caller hung up (or after a metaflow
            // took the call elsewhere) ends the module, raising "hangup";
            // the engine sees why. Any other error is the script's own, and
            // is reported even when the call is over.
            Err(err) if (call.is_gone() || call.has_takeover()) && err.message == "hangup" => {
                return Ok(Next::Continue("_".to_owned()));
            }
            Err(err) => return Err(err),
        };
        if let Some(directive) = inv.and_then(|inv| inv.directive.borrow_mut().take()) {
            return Ok(directive);
        }
        match returned {
            LuaValue::Nil => Ok(Next::Continue("_".to_owned())),
            LuaValue::String(key) if !key.as_bytes().is_empty() => {
                Ok(Next::Continue(key.to_string_lossy()))
            }
            other => Err(ModuleError {
                module: name.to_owned(),
                file: None,
                line: None,
                message: format!(
                    "handle returned {}; it must return a child key (a non-empty string), nil for \"_\", or a call:branch/stop/transfer directive",
                    describe_value(&other)
                ),
                stack: Vec::new(),
            }),
        }
    }
}

impl ModuleHost {
    /// This host running calls on `set` (a generation): a call run through
    /// the returned runner keeps `set` for every node until it ends, whatever
    /// the host's own set becomes in the meantime.
    pub fn pinned(&self, set: Arc<ModuleSet>) -> Pinned {
        Pinned {
            vm: self.vm.clone(),
            set,
        }
    }
}

impl Vm {
    async fn run_on_end(
        &self,
        set: &Arc<ModuleSet>,
        call: &Rc<Call>,
        handler: &OnEnd,
    ) -> Result<(), ModuleError> {
        // What `on_end` returns, and any directive it gives, is ignored: the
        // walk is over.
        let (_, result) = self
            .call_entry(
                set,
                call,
                &handler.module,
                Entry::OnEnd,
                Vec::new(),
                &handler.data,
            )
            .await;
        result.map(drop)
    }
}

/// A [`ModuleHost`] bound to one module set; see [`ModuleHost::pinned`].
pub struct Pinned {
    vm: Vm,
    set: Arc<ModuleSet>,
}

/// The name a metaflow module has in a [`ModuleSet`].
fn metaflow_name(module: &str) -> String {
    format!("{}{module}", scripts::METAFLOW_PREFIX)
}

impl ModuleRunner for Pinned {
    fn admit(&self) -> Option<Admission> {
        self.vm.admit()
    }

    fn provides(&self, module: &str) -> bool {
        self.set.module(module).is_some()
    }

    fn invoke<'a>(
        &'a self,
        call: &'a Rc<Call>,
        node: &'a ModuleNode,
    ) -> LocalFuture<'a, Result<Next, ModuleError>> {
        Box::pin(self.vm.run(&self.set, call, &node.module, node))
    }

    fn invoke_on_end<'a>(
        &'a self,
        call: &'a Rc<Call>,
        handler: &'a OnEnd,
    ) -> LocalFuture<'a, Result<(), ModuleError>> {
        Box::pin(self.vm.run_on_end(&self.set, call, handler))
    }

    fn provides_metaflow(&self, module: &str) -> bool {
        self.set.metaflow(module).is_some()
    }

    fn invoke_metaflow<'a>(
        &'a self,
        call: &'a Rc<Call>,
        node: &'a ModuleNode,
    ) -> LocalFuture<'a, Result<Next, ModuleError>> {
        Box::pin(async move {
            self.vm
                .run(&self.set, call, &metaflow_name(&node.module), node)
                .await
        })
    }
}

/// The host on its current module set, looked up at each node: for hosts
/// whose set does not change while calls run (a CLI simulation, a
/// benchmark). Across reloads, run calls through [`ModuleHost::pinned`].
impl ModuleRunner for ModuleHost {
    fn admit(&self) -> Option<Admission> {
        self.vm.admit()
    }

    fn provides(&self, module: &str) -> bool {
        self.module_set().module(module).is_some()
    }

    fn invoke<'a>(
        &'a self,
        call: &'a Rc<Call>,
        node: &'a ModuleNode,
    ) -> LocalFuture<'a, Result<Next, ModuleError>> {
        Box::pin(async move { self.pinned(self.module_set()).invoke(call, node).await })
    }

    fn invoke_on_end<'a>(
        &'a self,
        call: &'a Rc<Call>,
        handler: &'a OnEnd,
    ) -> LocalFuture<'a, Result<(), ModuleError>> {
        Box::pin(async move {
            self.pinned(self.module_set())
                .invoke_on_end(call, handler)
                .await
        })
    }

    fn provides_metaflow(&self, module: &str) -> bool {
        self.module_set().metaflow(module).is_some()
    }

    fn invoke_metaflow<'a>(
        &'a self,
        call: &'a Rc<Call>,
        node: &'a ModuleNode,
    ) -> LocalFuture<'a, Result<Next, ModuleError>> {
        Box::pin(async move {
            self.pinned(self.module_set())
                .invoke_metaflow(call, node)
                .await
        })
    }
}

fn describe_value(value: &LuaValue) -> String {
    match value {
        LuaValue::String(_) => "an empty string".to_owned(),
        LuaValue::Boolean(b) => format!("the boolean {b}"),
        LuaValue::Integer(n) => format!("the number {n}"),
        LuaValue::Number(n) => format!("the number {n}"),
        other => format!("a {}", other.type_name()),
    }
}

fn script_error(file: &str, message: &str) -> ScriptError {
    ScriptError {
        file: file.to_owned(),
        line: None,
        message: message.to_owned(),
    }
}

/// Turns a Lua error into a [`ModuleError`] with the script location and
/// the chain of script frames it passed through.
fn module_error(module: &str, err: &mlua::Error) -> ModuleError {
    let (message, location) = api::describe_error(err);
    let (file, line) = location.map_or((None, None), |(f, l)| (Some(f), Some(l)));
    ModuleError {
        module: module.to_owned(),
        file,
        line,
        message,
        stack: api::error_stack(err),
    }
}
