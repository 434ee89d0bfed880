//! The whole Lua-facing API, in one file: the `call` object modules get,
//! and the globals `re`, `require`, `print` and `math.random`.
//!
//! [`API`] lists every function and field with its signature;
//! `scripts/README.md` documents each one under the same heading and
//! `scripts/callflow.d.luau` declares its types (a test checks all three
//! agree).
//!
//! Verbs return outcome tables. A caller hang-up during a verb is an outcome
//! (`reason = "hangup"`); a verb called once the call is gone raises the
//! error `"hangup"` (a plain string), which ends the module unless the
//! script catches it with `pcall` to clean up. Directives (`branch`, `stop`,
//! `transfer`, `usurp`) take effect when `handle` returns.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use mlua::{
    Function, IntoLuaMulti, Lua, LuaSerdeExt, MultiValue, Table, Value as LuaValue, Variadic,
};
use serde_json::{Value, json};

use super::convert::{from_lua, to_lua, to_lua_frozen};
use super::{Current, Invocation, Pinned, Vm};
use crate::engine::control::{
    BridgeEndpoint, BridgeOptions, BridgeRequest, Carriers, CollectRequest, Confirm,
    ConsultRequest, HttpRequest, Leg, Legs, PlayOutcome, PlayRequest, RecordRequest, SpeakRequest,
    Strategy, WaitRequest,
};
use crate::engine::{
    BranchTarget, Call, CallerIdChanges, Listening, Next, RouteFacts, UpdateError,
};
use crate::ids::{DocId, DocType};
use crate::limits::Limits;
use crate::model::{Callflow, Object, parse_flow};
use crate::pattern::{self, Pattern};
use crate::routing::RouteError;
use crate::trace::CORE_EVENTS;

/// One entry of the API: a `call` method or field, or a global.
#[derive(Debug, Clone, Copy)]
pub struct ApiItem {
    /// How scripts write it: `call:play`, `call.to`, `re.match`, ...
    pub name: &'static str,
    pub signature: &'static str,
    pub summary: &'static str,
}

macro_rules! api {
    ($( $name:literal : $sig:literal => $summary:literal ),* $(,)?) => {
        &[ $( ApiItem { name: $name, signature: $sig, summary: $summary } ),* ]
    };
}

/// Every function and field scripts can use.
pub const API: &[ApiItem] = api![
    "call:answer": "call:answer() -> boolean" => "Answer the call; true if it answered now, false if it already was.",
    "call:hangup": "call:hangup(cause?)" => "Hang up now (cause defaults to NORMAL_CLEARING).",
    "call:ring": "call:ring()" => "Send ringing to the caller.",
    "call:play": "call:play(media, {terminators, loop, leg}?) -> {reason, digit, duration_ms}" => "Play a media file, URL or tone.",
    "call:tts": "call:tts(text, {voice, language, terminators, leg}?) -> {reason, digit, duration_ms}" => "Speak text.",
    "call:say": "call:say(text, {type, method, language, terminators, leg}?) -> {reason, digit, duration_ms}" => "Say a number, date, spelled name, ...",
    "call:collect_digits": "call:collect_digits({max, min, timeout_ms, interdigit_ms, terminators, prompt, collection}?) -> {digits, reason, duration_ms}" => "Collect DTMF digits.",
    "call:record": "call:record({time_limit_s, terminators, name, silence_s, format}?) -> {recording_id, duration_ms, reason}" => "Record the caller.",
    "call:bridge": "call:bridge(endpoints, {timeout_s, strategy, ringback, page, carriers, caller_id, headers, confirm, time_limit_s, ignore_early_media}?) -> {status, cause, sip, answered_by, duration_ms, talk_ms}" => "Ring devices or off-net numbers and connect the caller to the first that answers.",
    "call:sleep": "call:sleep(ms) -> {reason}" => "Wait, or until the caller hangs up.",
    "call:send_dtmf": "call:send_dtmf(digits)" => "Send DTMF to the caller.",
    "call:respond": "call:respond(code, message?)" => "Send a SIP response; a final one (>= 300) ends the call.",
    "call:transfer": "call:transfer(target, {type, leg, endpoints, ...}?) -> directive | boolean | {result, answered_by, duration_ms}?, error" => "Transfer the call (a directive: the flow ends without a hang-up), or blind-transfer the peer, or an attended transfer.",
    "call:wait_for_hangup": "call:wait_for_hangup()" => "Wait until the call ends.",
    "call:record_call": "call:record_call(\"start\" | \"stop\", {time_limit_s, format}?) -> recording_id" => "Start or stop recording the whole call.",
    "call:detect_fax": "call:detect_fax(seconds?) -> \"fax\" | \"voice\"" => "Listen for fax tones.",
    "call:get": "call:get(name) -> value" => "Read a call variable.",
    "call:set": "call:set(name, value)" => "Set (or with nil remove) a call variable.",
    "call:variables": "call:variables() -> {[string]: any}" => "Every call variable, as a new table.",
    "call:previous_module": "call:previous_module() -> string?" => "The module of the node that ran before this one.",
    "call:caller_id": "call:caller_id() -> {name, number, original_name, original_number, prefix_name, prefix_number}" => "The caller id bridges present.",
    "call:set_caller_id": "call:set_caller_id({name, number, prefix_name, prefix_number})" => "Rewrite or prefix the caller id.",
    "call:language": "call:language() -> string?" => "The call's language.",
    "call:set_language": "call:set_language(language)" => "Set the call's language.",
    "call:doc": "call:doc(type, id) -> table?" => "Read an account document (read-only).",
    "call:docs": "call:docs(type) -> {table, ...}" => "Every account document of a type, by id.",
    "call:save_doc": "call:save_doc(type, id, doc)" => "Save a document that must outlive the call.",
    "call:update_doc": "call:update_doc(type, id, fn) -> table?" => "Change a document atomically: fn(doc) returns the new document (or nil), retried if another call changed it meanwhile.",
    "call:lookup": "call:lookup(number, {normalize}?) -> route?, reason" => "Route a number as the router would.",
    "call:normalize": "call:normalize(number) -> string" => "A number as routing normalizes it (dial plan, E.164).",
    "call:account": "call:account() -> table" => "The account document (read-only).",
    "call:branch": "call:branch(callflow_id | route | flow) -> directive?, error" => "Enter another flow when handle returns.",
    "call:stop": "call:stop(cause?) -> directive" => "Return from this sub-flow, or end the call.",
    "call:replace_flow": "call:replace_flow(flow) -> directive?, error" => "Replace the current node with a flow (Kazoo's pivot hand-off).",
    "call:run_function": "call:run_function(id, data?) -> value?, error" => "Run the account's function document `id` (Luau) with (call, data); what it returns (a flow, for the function module).",
    "call:on_end": "call:on_end(data?)" => "Run this module's on_end(call, data) once the call has ended.",
    "call:usurp": "call:usurp(app) -> directive" => "Hand the call to another application; the flow ends without a hang-up.",
    "call:children": "call:children() -> {key, ...}" => "The node's child keys, in document order.",
    "call:has_child": "call:has_child(key) -> boolean" => "Whether the node has a non-empty child with this key.",
    "call:log": "call:log(level, message)" => "Add a log line to the trace.",
    "call:emit": "call:emit({event = name, ...})" => "Add a module's own event to the trace.",
    "call:now": "call:now() -> number" => "Unix time in milliseconds, from the call's clock.",
    "call:elapsed_ms": "call:elapsed_ms() -> number" => "Milliseconds since the call started.",
    "call:date": "call:date(timezone?) -> {year, month, day, hour, minute, second, weekday, yday, timezone}" => "The call's current local time.",
    "call:collection": "call:collection(name) -> string" => "Digits stored by collect_digits under this name.",
    "call:flush_dtmf": "call:flush_dtmf(collection?)" => "Drop buffered digits (and a stored collection).",
    "call:http": "call:http({url, method, headers, body, timeout_ms}) -> {status, body, headers, error}" => "Make an HTTP request.",
    "call:peer": "call:peer() -> {call_id, endpoint, held}?" => "The peer bridged to the call now (metaflows run during bridges).",
    "call:channels": "call:channels() -> {{call_id, name, from, to, calling_device, state, ringing, answered_by, slot}}" => "The other calls of the world (a multi-call scenario's, or the server's calls of the account), in the order they began.",
    "call:wait": "call:wait(place, {timeout_ms, digits, since}?) -> {reason, digit, duration_ms}" => "Wait at a place (a queue) until another call wakes it, a digit, the time or the hang-up.",
    "call:wake": "call:wake(place) -> number" => "Wake the other calls waiting at a place; how many.",
    "call:camp": "call:camp(number, targets, {timeout_s, stop_after_s}?) -> boolean" => "Camp on busy devices: once all are free, ring this call's device back and dial number from it.",
    "call:conference": "call:conference(room, {moderator}?) -> {members, reason, duration_ms}" => "Join a conference room until the caller hangs up; the members hear each other join and leave.",
    "call:eavesdrop": "call:eavesdrop(call_id) -> {reason, duration_ms}" => "Listen to another call until it ends (digits 1, 2, 3, 0: whisper to its caller, to its peer, three-way, listen).",
    "call:park": "call:park(slot, {timeout_ms}?) -> {reason, by, duration_ms, talk_ms}" => "Wait in a parking slot (until timeout_ms, or hang-up) where another call may retrieve it (call:pickup).",
    "call:pickup": "call:pickup(call_id, {intercept}?) -> {status, cause, sip, answered_by, duration_ms, talk_ms}" => "Join another call while it rings (pickup) or is parked (retrieve), or with intercept while it talks; talk until one hangs up.",
    "call:hold": "call:hold(leg, {moh, unhold_key}?) -> boolean" => "Hold a leg of the bridge until the unhold key on the other leg.",
    "call:unhold": "call:unhold() -> boolean" => "Take the held leg off hold.",
    "call:transfer_peer": "call:transfer_peer(target) -> boolean" => "Blind-transfer the peer; the bridge ends, the caller's leg stays.",
    "call:hangup_peer": "call:hangup_peer(cause?) -> boolean" => "The peer hangs up (which ends the caller's leg too).",
    "call:attended_transfer": "call:attended_transfer(target, endpoints, {transferor, takeback, moh, ringback, timeout_s, complete_on_answer}) -> {result, answered_by, duration_ms}?, error" => "Attended transfer between the bridge's legs and a target.",
    "call:recording": "call:recording() -> recording_id?" => "The whole-call recording running, if any.",
    "call:break_media": "call:break_media()" => "Stop the media a metaflow interrupted (konami's break).",
    "call.to": "call.to: string" => "The dialled number, as received.",
    "call.from": "call.from: string" => "The caller's number.",
    "call.caller_id_name": "call.caller_id_name: string" => "The caller's name.",
    "call.account_id": "call.account_id: string" => "The account.",
    "call.callflow_id": "call.callflow_id: string" => "The callflow running now.",
    "call.number": "call.number: string" => "The dialled number, normalized as routing saw it.",
    "call.capture_group": "call.capture_group: string?" => "What the matching pattern captured.",
    "call.capture_groups": "call.capture_groups: {[string]: string}" => "Named captures.",
    "call.inception": "call.inception: \"onnet\" | \"offnet\"" => "Where the call comes from.",
    "call.call_id": "call.call_id: string" => "The call's id.",
    "call.calling_device": "call.calling_device: string?" => "The device the call comes from, when on-net.",
    "call.no_match": "call.no_match: boolean" => "Whether the call was routed by no_match.",
    "call.module": "call.module: string" => "The module running.",
    "re.match": "re.match(pattern, text) -> {match, groups, named}?" => "Match a Kazoo regex.",
    "calendar.days_in_month": "calendar.days_in_month(year, month) -> number" => "Days in a month.",
    "calendar.weekday": "calendar.weekday(year, month, day) -> number" => "Day of the week, 1 (Monday) to 7 (Sunday).",
    "calendar.to_days": "calendar.to_days(year, month, day) -> number" => "Days since 0000-01-01 (Erlang's gregorian days).",
    "calendar.from_days": "calendar.from_days(days) -> year, month, day" => "The date of a gregorian day number.",
    "calendar.iso_week": "calendar.iso_week(year, month, day) -> iso_year, week" => "ISO week of a date.",
    "calendar.from_iso_week": "calendar.from_iso_week(iso_year, week) -> year, month, day" => "The Monday of an ISO week (weeks past the year's last carry on).",
    "calendar.date": "calendar.date(epoch_ms, timezone?) -> {year, month, day, hour, minute, second, weekday, yday, timezone, offset_s}" => "Local time of an instant in an IANA time zone.",
    "re.test": "re.test(pattern, text) -> boolean" => "Whether a Kazoo regex matches.",
    "json.decode": "json.decode(text) -> value?, error" => "Parse JSON text (null becomes nil).",
    "json.encode": "json.encode(value) -> string" => "JSON text of a value (keys in document order for tables from JSON, else sorted).",
    "json.array": "json.array(t?) -> table" => "Mark a table as a JSON array, so that an empty one stays [].",
    "json.keys": "json.keys(t) -> {string}" => "A table's keys in document order (as converted from JSON), then any others sorted.",
    "require": "require(name) -> value" => "Load a helper from scripts/lib/.",
    "print": "print(...)" => "Log to the trace (level info).",
    "math.random": "math.random(m?, n?) -> number" => "Random numbers seeded per call.",
];

/// Digits that stop playback unless a script says otherwise.
const ALL_DIGITS: &str = "1234567890*#";

/// Builds the `call` object and the helper tables (`re`, `calendar`) from raw
/// functions; see
/// [`register`]. Raw functions return `true, results...` when they ran,
/// `false` when the call is gone (raised as the plain string "hangup") and
/// `false, message` on a usage error (raised at the script's line).
const PRELUDE: &str = r#"
local raw, raw_helpers = ...
local Call = {}
local function pass(ok, ...)
    if ok then
        return ...
    end
    local message = ...
    if message == nil then
        error("hangup", 0)
    end
    error(message, 3)
end
for name, f in raw do
    Call[name] = function(self, ...)
        if getmetatable(self) ~= "call" then
            error("call:" .. name .. "(...) is a method: write call:" .. name .. "(...) with a colon", 2)
        end
        return pass(f(...))
    end
end
local helpers = {}
for helper, functions in raw_helpers do
    local wrapped = {}
    for name, f in functions do
        wrapped[name] = function(...)
            return pass(f(...))
        end
    end
    helpers[helper] = table.freeze(wrapped)
end
table.freeze(Call)
local facts_meta = { __index = Call, __metatable = "call" }
-- The metatable of a call's objects: its facts (shared by its invocations),
-- with the methods behind them.
local function make_facts(facts)
    setmetatable(facts, facts_meta)
    return { __index = facts, __metatable = "call" }
end
return make_facts, helpers
"#;

const MAKE_FACTS: &str = "callflow.make_facts";

/// Registers the globals and the call constructor on a new VM (before
/// sandboxing).
pub(crate) fn register(lua: &Lua, current: Rc<Current>) -> mlua::Result<()> {
    lua.set_app_data(current);
    lua.set_app_data(DocumentCache::default());
    lua.set_app_data(super::functions::Compiled::default());
    super::convert::register(lua)?;
    lua.set_app_data(AccountCache::default());
    super::instances::register(lua)?;
    let globals = lua.globals();
    globals.set("print", lua.create_function(print)?)?;
    globals.set("require", lua.create_function(require)?)?;
    let math: Table = globals.get("math")?;
    math.set("random", lua.create_function(random)?)?;
    math.set("randomseed", lua.create_function(randomseed)?)?;
    let raw_re = lua.create_table()?;
    raw_re.set("match", checked(lua, re_match)?)?;
    raw_re.set("test", checked(lua, re_test)?)?;
    let raw_helpers = lua.create_table()?;
    raw_helpers.set("re", raw_re)?;
    raw_helpers.set("calendar", calendar_functions(lua)?)?;
    raw_helpers.set("json", json_functions(lua)?)?;

    let raw = raw_functions(lua)?;
    let (make_facts, helpers): (Function, Table) = lua
        .load(PRELUDE)
        .set_name("=callflow")
        .call((raw, raw_helpers))?;
    lua.set_named_registry_value(MAKE_FACTS, make_facts)?;
    for pair in helpers.pairs::<String, Table>() {
        let (name, table) = pair?;
        globals.set(name, table)?;
    }
    lua.set_app_data(ModuleKey(lua.create_string("module")?));
    Ok(())
}

/// The `call` object for an invocation: facts as fields, verbs as methods.
pub(crate) fn call_object(
    lua: &Lua,
    inv: &Invocation,
    name: &mlua::LuaString,
) -> mlua::Result<Table> {
    let Some(call) = &inv.call else {
        let meta = make_facts(lua, &lua.create_table()?)?;
        return make_call(lua, name, &meta);
    };
    // The facts change only when the route does: built once per route and
    // shared by the call's invocations (read-only), and so is each module's
    // call object (read-only too, so sharing it carries nothing).
    if let Some(kept) = call.runner_data()
        && let Ok(kept) = kept.downcast::<KeptFacts>()
        && call.with_route(|route| *route == kept.route)
    {
        if let Some(object) = kept.objects.borrow().get(&inv.module) {
            return Ok(object.clone());
        }
        let object = make_call(lua, name, &kept.meta)?;
        let mut objects = kept.objects.borrow_mut();
        if objects.len() < KEPT_OBJECTS_MAX {
            objects.insert(inv.module.clone(), object.clone());
        }
        return Ok(object);
    }
    let route = call.route();
    let facts = lua.create_table()?;
    facts.set("to", call.facts.to.as_str())?;
    facts.set("from", call.facts.from.as_str())?;
    facts.set("caller_id_name", call.facts.caller_id_name.as_str())?;
    facts.set("account_id", call.account.account.id.as_str())?;
    facts.set("callflow_id", route.callflow_id.as_str())?;
    facts.set("number", route.number.as_str())?;
    facts.set("capture_group", route.capture_group.as_deref())?;
    let groups = lua.create_table()?;
    for (name, value) in &route.capture_groups {
        groups.set(name.as_str(), value.as_str())?;
    }
    groups.set_readonly(true);
    facts.set("capture_groups", groups)?;
    facts.set("inception", call.facts.inception.as_str())?;
    facts.set("call_id", call.facts.call_id.as_str())?;
    facts.set(
        "calling_device",
        call.facts.calling_device.as_ref().map(DocId::as_str),
    )?;
    facts.set("no_match", route.no_match)?;
    let meta = make_facts(lua, &facts)?;
    let object = make_call(lua, name, &meta)?;
    call.set_runner_data(Rc::new(KeptFacts {
        route,
        meta,
        objects: std::cell::RefCell::new(BTreeMap::from([(inv.module.clone(), object.clone())])),
    }));
    Ok(object)
}

/// Call objects a call keeps, at most (one per module it ran).
const KEPT_OBJECTS_MAX: usize = 64;

/// The metatable of a call's objects, the route its facts are of, and the
/// call object of each module that ran on that route.
struct KeptFacts {
    route: crate::engine::RouteFacts,
    meta: Table,
    objects: std::cell::RefCell<BTreeMap<String, Table>>,
}

/// The metatable of call objects with these facts: they and the methods
/// behind them, all read-only (protected metatables keep `table.freeze`
/// away).
fn make_facts(lua: &Lua, facts: &Table) -> mlua::Result<Table> {
    let with_methods: Function = lua.named_registry_value(MAKE_FACTS)?;
    let meta: Table = with_methods.call(facts)?;
    facts.set_readonly(true);
    meta.set_readonly(true);
    Ok(meta)
}

/// An invocation's call object: its module, the facts behind.
fn make_call(lua: &Lua, name: &mlua::LuaString, meta: &Table) -> mlua::Result<Table> {
    let call = lua.create_table_with_capacity(0, 1)?;
    let key = lua
        .app_data_ref::<ModuleKey>()
        .map(|key| key.0.clone())
        .ok_or_else(|| mlua::Error::runtime("the VM has no call constructor"))?;
    call.raw_set(key, name)?;
    call.set_metatable(Some(meta.clone()))?;
    call.set_readonly(true);
    Ok(call)
}

/// The string `"module"`, the call object's one field of its own (app data).
struct ModuleKey(mlua::LuaString);

// Plumbing shared by the raw functions.

/// Fails (an error in the module) unless the call may keep `bytes` more.
fn reserve(call: &Call, bytes: usize) -> mlua::Result<()> {
    call.reserve(bytes)
        .map_err(|e| mlua::Error::runtime(e.to_string()))
}

fn current(lua: &Lua) -> mlua::Result<Rc<Invocation>> {
    lua.app_data_ref::<Rc<Current>>()
        .and_then(|current| current.get())
        .ok_or_else(|| mlua::Error::runtime("no module is running"))
}

fn call_of(inv: &Invocation, name: &str) -> mlua::Result<Rc<Call>> {
    inv.call.clone().ok_or_else(|| {
        // `math.random` is named as is, verbs as methods of the call.
        let shown = if name.contains('.') {
            name.to_owned()
        } else {
            format!("call:{name}")
        };
        mlua::Error::runtime(format!(
            "{shown} is only available while handling a call, not while the script loads"
        ))
    })
}

/// `true, values...`: the verb ran.
fn done(lua: &Lua, values: impl IntoLuaMulti) -> mlua::Result<MultiValue> {
    let mut out = values.into_lua_multi(lua)?;
    out.push_front(LuaValue::Boolean(true));
    Ok(out)
}

/// `false`: the call is gone (the prelude raises "hangup").
fn gone() -> MultiValue {
    MultiValue::from_iter([LuaValue::Boolean(false)])
}

/// `false, message`: a usage error, raised by the prelude at the script's
/// line with this one-line message.
fn failed(lua: &Lua, err: &mlua::Error) -> mlua::Result<MultiValue> {
    let (message, _) = describe_error(err);
    (false, message).into_lua_multi(lua)
}

/// A synchronous raw function whose errors become `false, message`.
fn checked<A, R>(
    lua: &Lua,
    f: impl Fn(&Lua, A) -> mlua::Result<R> + 'static,
) -> mlua::Result<Function>
where
    A: mlua::FromLuaMulti,
    R: IntoLuaMulti,
{
    lua.create_function(move |lua, args: A| match f(lua, args) {
        Ok(values) => done(lua, values),
        Err(err) => failed(lua, &err),
    })
}

/// Registers a synchronous raw function. Bodies return `done(..)` themselves
/// (so they can return several values); errors become `false, message`.
macro_rules! sync_fn {
    ($lua:ident, $raw:ident, $name:literal, $f:expr) => {
        $raw.set(
            $name,
            $lua.create_function(move |lua, args| match ($f)(lua, args) {
                Ok(values) => Ok(values),
                Err(err) => failed(lua, &err),
            })?,
        )?;
    };
}
/// Registers an async raw function (a verb): finds the invocation and its
/// call, runs the body; errors become `false, message`.
macro_rules! async_fn {
    ($lua0:ident, $raw:ident, $name:literal, |$lua:ident, $call:ident, $inv:ident, $args:ident : $ty:ty| $body:expr) => {
        $raw.set(
            $name,
            $lua0.create_async_function(|$lua: Lua, $args: $ty| async move {
                let result: mlua::Result<MultiValue> = async {
                    let $inv = current(&$lua)?;
                    let $call = call_of(&$inv, $name)?;
                    not_updating(&$inv, $name)?;
                    $body
                }
                .await;
                match result {
                    Ok(values) => Ok(values),
                    Err(err) => failed(&$lua, &err),
                }
            })?,
        )?;
    };
}

fn raw_functions(lua: &Lua) -> mlua::Result<Table> {
    let raw = lua.create_table()?;
    register_control(lua, &raw)?;
    register_media(lua, &raw)?;
    register_background(lua, &raw)?;
    register_documents(lua, &raw)?;
    register_input(lua, &raw)?;
    register_outside(lua, &raw)?;
    register_world(lua, &raw)?;
    register_places(lua, &raw)?;
    register_state(lua, &raw)?;
    register_flow(lua, &raw)?;
    register_directives(lua, &raw)?;
    register_functions(lua, &raw)?;
    register_trace(lua, &raw)?;
    register_legs(lua, &raw)?;
    register_transfers(lua, &raw)?;
    Ok(raw)
}

/// What `tts` and `say` speak: the style (voice, say type) is read from
/// option `style_key`.
fn speak_request(
    call: &Call,
    text: String,
    opts: Option<&Table>,
    style_key: &str,
    default_style: &str,
) -> mlua::Result<SpeakRequest> {
    Ok(SpeakRequest {
        say: style_key == "type",
        text,
        style: opt_string(opts, style_key)?.unwrap_or_else(|| default_style.to_owned()),
        method: if style_key == "type" {
            opt_string(opts, "method")?
        } else {
            None
        },
        language: opt_string(opts, "language")?.or_else(|| call.language()),
        terminators: opt_digits(opts, "terminators")?.unwrap_or_else(|| ALL_DIGITS.to_owned()),
        legs: opt_legs(call, opts)?,
    })
}

/// Runs the `tts` or `say` verb, listening for metaflows meanwhile.
async fn speak(
    lua: &Lua,
    call: &Rc<Call>,
    inv: &Invocation,
    verb: &'static str,
    request: &SpeakRequest,
) -> mlua::Result<MultiValue> {
    let runner = nested(lua, inv)?;
    match call
        .speak(verb, request, &Listening::new(call, &runner))
        .await
    {
        Ok(outcome) => done(lua, play_table(lua, &outcome)?),
        Err(_) => Ok(gone()),
    }
}

/// The runner for metaflows that fire during a verb of `inv`: a new
/// invocation on the same VM, pinned to the invocation's module set.
fn nested(lua: &Lua, inv: &Invocation) -> mlua::Result<Pinned> {
    Vm::of(lua, Arc::clone(&inv.set))
}

/// `"a"` (the caller's leg) or `"b"` (the peer's).
fn leg_arg(name: &str) -> mlua::Result<Leg> {
    match name {
        "a" => Ok(Leg::A),
        "b" => Ok(Leg::B),
        other => Err(mlua::Error::runtime(format!(
            "a leg is \"a\" (the caller's) or \"b\" (the bridged peer's), not {other:?}"
        ))),
    }
}

/// The `leg` option of media verbs: `"a"` (default), `"b"` or `"both"`;
/// the peer's leg only while a bridge is up.
fn opt_legs(call: &Call, opts: Option<&Table>) -> mlua::Result<Legs> {
    let legs = match opt_string(opts, "leg")?.as_deref() {
        None | Some("a") => return Ok(Legs::A),
        Some("b") => Legs::B,
        Some("both") => Legs::Both,
        Some(other) => {
            return Err(mlua::Error::runtime(format!(
                "option `leg` is \"a\", \"b\" or \"both\", not {other:?}"
            )));
        }
    };
    match (legs, call.peer()) {
        (_, Some(_)) => Ok(legs),
        (Legs::Both, None) => Ok(Legs::A),
        _ => Err(mlua::Error::runtime(
            "option `leg = \"b\"` needs a bridged peer (see call:peer)",
        )),
    }
}

/// The legs of a bridge, for metaflow modules: the peer, hold, unhold.
fn register_legs(lua: &Lua, raw: &Table) -> mlua::Result<()> {
    sync_fn!(lua, raw, "channels", |lua, (): ()| {
        let call = call_of(&*current(lua)?, "channels")?;
        let list = lua.create_table()?;
        for channel in call.channels() {
            let table = lua.create_table()?;
            table.set("call_id", channel.call_id)?;
            table.set("name", channel.name)?;
            table.set("from", channel.from)?;
            table.set("to", channel.to)?;
            table.set("calling_device", channel.calling_device)?;
            table.set("state", channel.state)?;
            table.set("ringing", lua.create_sequence_from(channel.ringing)?)?;
            table.set("answered_by", channel.answered_by)?;
            table.set("slot", channel.slot)?;
            table.set("since", channel.since)?;
            list.push(table)?;
        }
        done(lua, list)
    });
    sync_fn!(lua, raw, "wake", |lua, place: String| {
        let call = call_of(&*current(lua)?, "wake")?;
        done(lua, call.wake(&place))
    });
    sync_fn!(lua, raw, "camp", |lua,
                                (number, targets, opts): (
        String,
        Table,
        Option<Table>
    )| {
        let call = call_of(&*current(lua)?, "camp")?;
        let targets = targets
            .sequence_values::<String>()
            .collect::<mlua::Result<Vec<String>>>()
            .map_err(|_| mlua::Error::runtime("camp: targets must be a list of device ids"))?;
        let opts = opts.as_ref();
        let ring_ms = opt_u64(opts, "timeout_s")?
            .unwrap_or(CAMP_RING_S)
            .saturating_mul(1000);
        let stop_after_ms = opt_u64(opts, "stop_after_s")?
            .unwrap_or(CAMP_STOP_AFTER_S)
            .saturating_mul(1000);
        done(lua, call.camp(&number, &targets, ring_ms, stop_after_ms))
    });
    sync_fn!(lua, raw, "peer", |lua, (): ()| {
        let call = call_of(&*current(lua)?, "peer")?;
        let Some(peer) = call.peer() else {
            return done(lua, LuaValue::Nil);
        };
        let table = lua.create_table()?;
        table.set("call_id", peer.call_id)?;
        table.set("endpoint", peer.endpoint)?;
        table.set("held", peer.held.map(Leg::as_str))?;
        done(lua, table)
    });
    sync_fn!(
        lua,
        raw,
        "hold",
        |lua, (leg, opts): (String, Option<Table>)| {
            let call = call_of(&*current(lua)?, "hold")?;
            let leg = leg_arg(&leg)?;
            let moh = opt_string(opts.as_ref(), "moh")?;
            let key = match opt_digits(opts.as_ref(), "unhold_key")? {
                None => None,
                Some(key) if key.chars().count() == 1 => key.chars().next(),
                Some(key) => {
                    return Err(mlua::Error::runtime(format!(
                        "option `unhold_key` is one digit, not {key:?}"
                    )));
                }
            };
            match call.hold(leg, moh.as_deref(), key) {
                Ok(held) => done(lua, held),
                Err(_) => Ok(gone()),
            }
        }
    );
    sync_fn!(lua, raw, "unhold", |lua, (): ()| {
        let call = call_of(&*current(lua)?, "unhold")?;
        match call.unhold() {
            Ok(was) => done(lua, was),
            Err(_) => Ok(gone()),
        }
    });
    Ok(())
}

/// Transfers (`call:transfer` and, for metaflow modules, the peer's and
/// attended ones), the peer's hang-up, the whole-call recording, `break`.
fn register_transfers(lua: &Lua, raw: &Table) -> mlua::Result<()> {
    async_fn!(
        lua,
        raw,
        "transfer",
        |lua, call, inv, args: (String, Option<Table>)| {
            let (target, opts) = args;
            let opts = opts.as_ref();
            let leg = leg_arg(opt_string(opts, "leg")?.as_deref().unwrap_or("a"))?;
            match opt_string(opts, "type")?.as_deref().unwrap_or("blind") {
                "blind" if leg == Leg::A => match call.transfer(&target).await {
                    Ok(()) => {
                        *inv.directive.borrow_mut() = Some(Next::Transfer);
                        done(&lua, true)
                    }
                    Err(_) => Ok(gone()),
                },
                // The peer leaves; the caller's leg stays (not a directive).
                "blind" => match call.transfer_peer(&target) {
                    Ok(moved) => done(&lua, moved),
                    Err(_) => Ok(gone()),
                },
                "attended" => {
                    let list: Table = match opt_value(opts, "endpoints")? {
                        LuaValue::Table(list) => list,
                        _ => {
                            return Err(mlua::Error::runtime(
                                "an attended call:transfer needs `endpoints` (what to ring for the target)",
                            ));
                        }
                    };
                    // `leg` is the one transferred: the other consults.
                    let transferor = match leg {
                        Leg::A => Leg::B,
                        Leg::B => Leg::A,
                    };
                    attended(&lua, &call, &inv, target, &list, opts, transferor).await
                }
                other => Err(mlua::Error::runtime(format!(
                    "a transfer's type is \"blind\" or \"attended\", not {other:?}"
                ))),
            }
        }
    );
    sync_fn!(lua, raw, "transfer_peer", |lua, target: String| {
        let call = call_of(&*current(lua)?, "transfer_peer")?;
        match call.transfer_peer(&target) {
            Ok(done_) => done(lua, done_),
            Err(_) => Ok(gone()),
        }
    });
    sync_fn!(lua, raw, "hangup_peer", |lua, cause: Option<String>| {
        let call = call_of(&*current(lua)?, "hangup_peer")?;
        match call.hangup_peer(cause.as_deref().unwrap_or("NORMAL_CLEARING")) {
            Ok(hung_up) => done(lua, hung_up),
            Err(_) => Ok(gone()),
        }
    });
    sync_fn!(lua, raw, "recording", |lua, (): ()| {
        let call = call_of(&*current(lua)?, "recording")?;
        done(lua, call.recording())
    });
    sync_fn!(lua, raw, "break_media", |lua, (): ()| {
        let call = call_of(&*current(lua)?, "break_media")?;
        if !call.in_metaflow() {
            return Err(mlua::Error::runtime(
                "call:break_media is for metaflow modules: it stops the media a metaflow interrupted",
            ));
        }
        call.break_media();
        done(lua, ())
    });
    async_fn!(lua, raw, "attended_transfer", |lua,
                                              call,
                                              inv,
                                              args: (
        String,
        Table,
        Option<Table>
    )| {
        let (target, list, opts) = args;
        let transferor = match opt_string(opts.as_ref(), "transferor")? {
            Some(leg) => leg_arg(&leg)?,
            None => {
                return Err(mlua::Error::runtime(
                    "call:attended_transfer needs the `transferor` leg (\"a\" or \"b\")",
                ));
            }
        };
        attended(&lua, &call, &inv, target, &list, opts.as_ref(), transferor).await
    });
    Ok(())
}

/// An attended transfer (`call:attended_transfer`, `call:transfer` with
/// `type = "attended"`): `transferor` consults the target while the other
/// leg waits.
async fn attended(
    lua: &Lua,
    call: &Rc<Call>,
    inv: &Rc<Invocation>,
    target: String,
    list: &Table,
    opts: Option<&Table>,
    transferor: Leg,
) -> mlua::Result<MultiValue> {
    let timeout_s = opt_u64(opts, "timeout_s")?.unwrap_or(20);
    let mut endpoints = Vec::new();
    for item in list.sequence_values::<LuaValue>() {
        endpoints.push(bridge_endpoint(item?, timeout_s, &call.caller_id())?);
    }
    if call.peer().is_none() {
        return done(lua, (LuaValue::Nil, "no bridge is up"));
    }
    let request = ConsultRequest {
        target,
        endpoints,
        transferor,
        timeout_s,
        takeback: opt_digits(opts, "takeback")?,
        moh: opt_string(opts, "moh")?,
        ringback: opt_string(opts, "ringback")?,
        complete_on_answer: opt_bool(opts, "complete_on_answer")?.unwrap_or(false),
        caller_id: call.caller_id(),
    };
    let runner = nested(lua, inv)?;
    match call
        .attended_transfer(&request, &Listening::new(call, &runner))
        .await
    {
        Ok(outcome) => {
            let table = lua.create_table()?;
            table.set("result", snake(&outcome.result))?;
            table.set("answered_by", outcome.answered_by)?;
            table.set("duration_ms", outcome.duration_ms)?;
            done(lua, table)
        }
        Err(_) => Ok(gone()),
    }
}

/// Call control: answer, hang up, ring, wait, DTMF, SIP responses.
fn register_control(lua: &Lua, raw: &Table) -> mlua::Result<()> {
    async_fn!(lua, raw, "answer", |lua, call, inv, _args: ()| {
        let _ = &inv;
        match call.answer().await {
            Ok(now) => done(&lua, now),
            Err(_) => Ok(gone()),
        }
    });
    async_fn!(
        lua,
        raw,
        "hangup",
        |lua, call, inv, cause: Option<String>| {
            let _ = &inv;
            call.hangup(cause.as_deref().unwrap_or("NORMAL_CLEARING"))
                .await;
            done(&lua, ())
        }
    );
    async_fn!(lua, raw, "ring", |lua, call, inv, _args: ()| {
        let _ = &inv;
        match call.ring().await {
            Ok(()) => done(&lua, ()),
            Err(_) => Ok(gone()),
        }
    });
    async_fn!(lua, raw, "sleep", |lua, call, inv, ms: f64| {
        let ms = non_negative(ms, "sleep milliseconds")?;
        let runner = nested(&lua, &inv)?;
        match call.sleep(ms, &Listening::new(&call, &runner)).await {
            Ok(reason) => {
                let table = lua.create_table()?;
                table.set("reason", snake(&reason))?;
                done(&lua, table)
            }
            Err(_) => Ok(gone()),
        }
    });
    async_fn!(lua, raw, "send_dtmf", |lua, call, inv, digits: String| {
        let _ = &inv;
        if digits.is_empty()
            || !digits
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D' | 'a'..='d'))
        {
            return Err(mlua::Error::runtime(format!(
                "send_dtmf takes digits 0-9, *, # and A-D, not {digits:?}"
            )));
        }
        match call.send_dtmf(&digits).await {
            Ok(()) => done(&lua, ()),
            Err(_) => Ok(gone()),
        }
    });
    async_fn!(
        lua,
        raw,
        "respond",
        |lua, call, inv, args: (f64, Option<String>)| {
            let _ = &inv;
            let (code, message) = args;
            let code = u16::try_from(non_negative(code, "response code")?)
                .ok()
                .filter(|c| (100..700).contains(c))
                .ok_or_else(|| mlua::Error::runtime("a SIP response code is 100 to 699"))?;
            match call.respond(code, message.as_deref().unwrap_or("")).await {
                Ok(()) => done(&lua, ()),
                Err(_) => Ok(gone()),
            }
        }
    );
    Ok(())
}

/// Waiting, whole-call recording, fax detection.
fn register_background(lua: &Lua, raw: &Table) -> mlua::Result<()> {
    async_fn!(lua, raw, "wait_for_hangup", |lua, call, inv, _args: ()| {
        let runner = nested(&lua, &inv)?;
        match call.wait_for_hangup(&Listening::new(&call, &runner)).await {
            Ok(()) => done(&lua, ()),
            Err(_) => Ok(gone()),
        }
    });
    async_fn!(
        lua,
        raw,
        "record_call",
        |lua, call, inv, args: (String, Option<Table>)| {
            let _ = &inv;
            let (action, opts) = args;
            let opts = opts.as_ref();
            recording_format(opts)?;
            let time_limit_ms = opt_u64(opts, "time_limit_s")?
                .filter(|s| *s > 0)
                .map(|s| s.saturating_mul(1000));
            let start = match action.as_str() {
                "start" => true,
                "stop" => false,
                other => {
                    return Err(mlua::Error::runtime(format!(
                        "record_call takes \"start\" or \"stop\", not {other:?}"
                    )));
                }
            };
            match call.record_call(start, time_limit_ms).await {
                Ok(id) => done(&lua, id),
                Err(_) => Ok(gone()),
            }
        }
    );
    async_fn!(
        lua,
        raw,
        "detect_fax",
        |lua, call, inv, seconds: Option<f64>| {
            let ms = non_negative(seconds.unwrap_or(5.0), "fax detection seconds")? * 1000;
            let runner = nested(&lua, &inv)?;
            match call.detect_fax(ms, &Listening::new(&call, &runner)).await {
                Ok(fax) => done(&lua, if fax { "fax" } else { "voice" }),
                Err(_) => Ok(gone()),
            }
        }
    );
    Ok(())
}

/// Account documents: reading them, saving state that outlives the call.
fn register_documents(lua: &Lua, raw: &Table) -> mlua::Result<()> {
    sync_fn!(lua, raw, "doc", |lua, (doc_type, id): (String, String)| {
        let inv = current(lua)?;
        let call = call_of(&inv, "doc")?;
        done(lua, cached_document(lua, &inv, &call, &doc_type, &id)?)
    });
    sync_fn!(lua, raw, "account", |lua, (): ()| {
        let inv = current(lua)?;
        let call = call_of(&inv, "account")?;
        let key = (String::new(), String::new());
        if let Some(table) = inv.documents.borrow().get(&key) {
            return done(lua, table.clone());
        }
        // Shared per VM like other documents, keyed by the account snapshot.
        let address = Arc::as_ptr(&call.account).addr();
        if let Some(cache) = lua.app_data_ref::<AccountCache>()
            && let Some((_, table)) = cache.0.borrow().get(&address)
        {
            inv.documents.borrow_mut().insert(key, table.clone());
            return done(lua, table.clone());
        }
        let account = &call.account.account;
        // Private fields (API key hashes among them) stay out of scripts' reach.
        let mut doc: serde_json::Map<String, Value> = account
            .extra
            .iter()
            .filter(|(name, _)| !crate::model::is_private_key(name))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        doc.insert("id".into(), json!(account.id.as_str()));
        if let Some(name) = &account.name {
            doc.insert("name".into(), json!(name));
        }
        if let Some(timezone) = &account.timezone {
            doc.insert("timezone".into(), json!(timezone));
        }
        if let Some(caller_id) = &account.caller_id {
            doc.insert("caller_id".into(), Value::Object(caller_id.clone()));
        }
        if let Some(metaflows) = &account.metaflows {
            doc.insert("metaflows".into(), Value::Object(metaflows.clone()));
        }
        let table = to_lua_frozen(lua, &Value::Object(doc))?;
        if let Some(cache) = lua.app_data_ref::<AccountCache>() {
            let mut cache = cache.0.borrow_mut();
            if cache.len() >= ACCOUNT_CACHE_MAX {
                cache.clear();
            }
            cache.insert(address, (Arc::clone(&call.account), table.clone()));
        }
        inv.documents.borrow_mut().insert(key, table.clone());
        done(lua, table)
    });
    sync_fn!(lua, raw, "docs", |lua, doc_type: String| {
        let inv = current(lua)?;
        let call = call_of(&inv, "docs")?;
        let ids: Vec<String> = if doc_type == "callflows" {
            call.account
                .callflows
                .keys()
                .map(ToString::to_string)
                .collect()
        } else {
            call.documents().ids(&doc_type)
        };
        let list = lua.create_table()?;
        for id in ids {
            let doc = cached_document(lua, &inv, &call, &doc_type, &id)?;
            if !doc.is_nil() {
                list.raw_push(doc)?;
            }
        }
        list.set_readonly(true);
        done(lua, list)
    });
    register_writes(lua, raw)
}

/// Saving documents that outlive the call: whole, or atomically changed.
fn register_writes(lua: &Lua, raw: &Table) -> mlua::Result<()> {
    sync_fn!(lua, raw, "save_doc", |lua,
                                    (doc_type, id, body): (
        String,
        String,
        Table
    )| {
        let inv = current(lua)?;
        let call = call_of(&inv, "save_doc")?;
        not_updating(&inv, "save_doc")?;
        let (doc_type, id) = writable(&doc_type, &id)?;
        let Value::Object(body) = from_lua(lua, &LuaValue::Table(body))? else {
            return Err(mlua::Error::runtime("a document is a table of fields"));
        };
        call.save_document(&doc_type, &id, body)
            .map_err(|e| mlua::Error::runtime(format!("cannot save {doc_type}/{id}: {e}")))?;
        inv.documents
            .borrow_mut()
            .remove(&(doc_type.to_string(), id.to_string()));
        done(lua, ())
    });
    sync_fn!(lua, raw, "update_doc", |lua,
                                      (doc_type, id, change): (
        String,
        String,
        Function
    )| {
        let inv = current(lua)?;
        let call = call_of(&inv, "update_doc")?;
        not_updating(&inv, "update_doc")?;
        let (doc_type, id) = writable(&doc_type, &id)?;
        let saved = call
            .update_document(&doc_type, &id, |now| {
                // A fresh, writable copy each try (with its id, as call:doc
                // gives it), so a change may edit and return it.
                let doc = match now {
                    Some(body) => {
                        let mut value = (*body).clone();
                        value.shift_insert(0, "id".into(), json!(id.as_str()));
                        to_lua(lua, &Value::Object(value))?
                    }
                    None => LuaValue::Nil,
                };
                // Called without yielding: a change that calls a verb fails
                // (it may run several times, so it must only compute).
                inv.updating.set(true);
                let returned = change.call::<LuaValue>(doc);
                inv.updating.set(false);
                match returned? {
                    LuaValue::Nil => Ok(None),
                    table @ LuaValue::Table(_) => match from_lua(lua, &table)? {
                        Value::Object(body) => Ok(Some(body)),
                        _ => Err(mlua::Error::runtime(
                            "update_doc: the function returned a list, not a document",
                        )),
                    },
                    other => Err(mlua::Error::runtime(format!(
                        "update_doc: the function must return a document (a table) or nil (got {})",
                        other.type_name()
                    ))),
                }
            })
            .map_err(|e| match e {
                UpdateError::Change(e) => e,
                e => mlua::Error::runtime(format!("cannot update {doc_type}/{id}: {e}")),
            })?;
        inv.documents
            .borrow_mut()
            .remove(&(doc_type.to_string(), id.to_string()));
        match saved {
            Some(mut body) => {
                body.shift_insert(0, "id".into(), json!(id.as_str()));
                done(lua, to_lua(lua, &Value::Object(body))?)
            }
            None => done(lua, LuaValue::Nil),
        }
    });
    Ok(())
}

/// Fails while `call:update_doc`'s function runs: writing (or a verb) there
/// would happen once per try.
fn not_updating(inv: &Invocation, name: &str) -> mlua::Result<()> {
    if inv.updating.get() {
        return Err(mlua::Error::runtime(format!(
            "call:{name} cannot run inside call:update_doc's function (it may run several times: it only computes the document)"
        )));
    }
    Ok(())
}

/// A document modules may write: a valid type (not callflows or
/// functions) and id.
fn writable(doc_type: &str, id: &str) -> mlua::Result<(DocType, DocId)> {
    let doc_type = DocType::new(doc_type).map_err(|e| mlua::Error::runtime(e.to_string()))?;
    // Callflows and functions are what calls run: written by people (the
    // REST API, the flows directory), never by a call.
    if matches!(doc_type.as_str(), "callflows" | super::functions::DOC_TYPE) {
        return Err(mlua::Error::runtime(format!(
            "{doc_type} are not saved by modules; use the REST API or the flows directory"
        )));
    }
    let id = DocId::new(id).map_err(|e| mlua::Error::runtime(e.to_string()))?;
    Ok((doc_type, id))
}

/// Media: playback and speech.
fn register_media(lua: &Lua, raw: &Table) -> mlua::Result<()> {
    async_fn!(
        lua,
        raw,
        "play",
        |lua, call, inv, args: (String, Option<Table>)| {
            let (media, opts) = args;
            let request = PlayRequest {
                media,
                terminators: opt_digits(opts.as_ref(), "terminators")?
                    .unwrap_or_else(|| ALL_DIGITS.to_owned()),
                loop_count: match opt_u64(opts.as_ref(), "loop")? {
                    Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
                    None => 1,
                },
                legs: opt_legs(&call, opts.as_ref())?,
            };
            let runner = nested(&lua, &inv)?;
            match call.play(&request, &Listening::new(&call, &runner)).await {
                Ok(outcome) => done(&lua, play_table(&lua, &outcome)?),
                Err(_) => Ok(gone()),
            }
        }
    );
    async_fn!(
        lua,
        raw,
        "tts",
        |lua, call, inv, args: (String, Option<Table>)| {
            let (text, opts) = args;
            let request = speak_request(&call, text, opts.as_ref(), "voice", "female")?;
            speak(&lua, &call, &inv, "tts", &request).await
        }
    );
    async_fn!(
        lua,
        raw,
        "say",
        |lua, call, inv, args: (String, Option<Table>)| {
            let (text, opts) = args;
            let request = speak_request(&call, text, opts.as_ref(), "type", "name_spelled")?;
            speak(&lua, &call, &inv, "say", &request).await
        }
    );
    Ok(())
}

/// Input: digit collection and recording.
fn register_input(lua: &Lua, raw: &Table) -> mlua::Result<()> {
    async_fn!(
        lua,
        raw,
        "collect_digits",
        |lua, call, inv, opts: Option<Table>| {
            let opts = opts.as_ref();
            let request = CollectRequest {
                max_digits: u32::try_from(opt_u64(opts, "max")?.unwrap_or(1).max(1))
                    .unwrap_or(u32::MAX),
                min_digits: u32::try_from(opt_u64(opts, "min")?.unwrap_or(0)).unwrap_or(u32::MAX),
                timeout_ms: opt_u64(opts, "timeout_ms")?.unwrap_or(5000),
                interdigit_ms: opt_u64(opts, "interdigit_ms")?.unwrap_or(2000),
                terminators: opt_digits(opts, "terminators")?.unwrap_or_else(|| "#".to_owned()),
                prompt: opt_string(opts, "prompt")?,
            };
            let collection = opt_string(opts, "collection")?;
            let runner = nested(&lua, &inv)?;
            let beside = Listening::new(&call, &runner);
            match call.collect(&request, collection.as_deref(), &beside).await {
                Ok(outcome) => {
                    let table = lua.create_table()?;
                    table.set("digits", outcome.digits)?;
                    table.set("reason", snake(&outcome.reason))?;
                    table.set("duration_ms", outcome.duration_ms)?;
                    done(&lua, table)
                }
                Err(_) => Ok(gone()),
            }
        }
    );
    async_fn!(lua, raw, "record", |lua, call, inv, opts: Option<Table>| {
        let opts = opts.as_ref();
        recording_format(opts)?;
        let request = RecordRequest {
            time_limit_ms: opt_u64(opts, "time_limit_s")?.unwrap_or(3600) * 1000,
            terminators: opt_digits(opts, "terminators")?.unwrap_or_else(|| "#".to_owned()),
            name: opt_string(opts, "name")?,
            // Kazoo's b_record: 5 s below the silence threshold end it.
            silence_ms: match opt_u64(opts, "silence_s")?.unwrap_or(5) {
                0 => None,
                s => Some(s.saturating_mul(1000)),
            },
        };
        let runner = nested(&lua, &inv)?;
        match call
            .record_media(&request, &Listening::new(&call, &runner))
            .await
        {
            Ok(outcome) => {
                let table = lua.create_table()?;
                table.set("recording_id", outcome.recording_id)?;
                table.set("duration_ms", outcome.duration_ms)?;
                table.set("reason", snake(&outcome.reason))?;
                done(&lua, table)
            }
            Err(_) => Ok(gone()),
        }
    });
    Ok(())
}

/// Places other calls of the world meet at: waiting lines and conference
/// rooms.
fn register_places(lua: &Lua, raw: &Table) -> mlua::Result<()> {
    async_fn!(
        lua,
        raw,
        "wait",
        |lua, call, inv, args: (String, Option<Table>)| {
            let (place, opts) = args;
            let opts = opts.as_ref();
            let request = WaitRequest {
                ms: opt_u64(opts, "timeout_ms")?.unwrap_or(u64::MAX),
                digits: opt_digits(opts, "digits")?.unwrap_or_default(),
                since: opt_u64(opts, "since")?.and_then(|ms| i64::try_from(ms).ok()),
            };
            let runner = nested(&lua, &inv)?;
            match call
                .wait_at(&place, &request, &Listening::new(&call, &runner))
                .await
            {
                Ok(outcome) => {
                    let table = lua.create_table()?;
                    table.set("reason", outcome.reason)?;
                    table.set("digit", outcome.digit.map(String::from))?;
                    table.set("duration_ms", outcome.duration_ms)?;
                    done(&lua, table)
                }
                Err(_) => Ok(gone()),
            }
        }
    );
    async_fn!(
        lua,
        raw,
        "conference",
        |lua, call, inv, args: (String, Option<Table>)| {
            let (room, opts) = args;
            let moderator = opt_bool(opts.as_ref(), "moderator")?.unwrap_or(false);
            let runner = nested(&lua, &inv)?;
            match call
                .conference(&room, moderator, &Listening::new(&call, &runner))
                .await
            {
                Ok(outcome) => {
                    let table = lua.create_table()?;
                    table.set("members", outcome.members)?;
                    table.set("reason", outcome.reason)?;
                    table.set("duration_ms", outcome.duration_ms)?;
                    done(&lua, table)
                }
                Err(_) => Ok(gone()),
            }
        }
    );
    Ok(())
}

/// Reaching other calls of the world: parking and pickups.
fn register_world(lua: &Lua, raw: &Table) -> mlua::Result<()> {
    async_fn!(lua, raw, "eavesdrop", |lua, call, inv, call_id: String| {
        let runner = nested(&lua, &inv)?;
        match call
            .eavesdrop(&call_id, &Listening::new(&call, &runner))
            .await
        {
            Ok(outcome) => {
                let table = lua.create_table()?;
                table.set("reason", outcome.reason)?;
                table.set("duration_ms", outcome.duration_ms)?;
                done(&lua, table)
            }
            Err(_) => Ok(gone()),
        }
    });
    async_fn!(
        lua,
        raw,
        "park",
        |lua, call, inv, args: (String, Option<Table>)| {
            let (slot, opts) = args;
            let ms = opt_u64(opts.as_ref(), "timeout_ms")?.unwrap_or(u64::MAX);
            let runner = nested(&lua, &inv)?;
            match call.park(&slot, ms, &Listening::new(&call, &runner)).await {
                Ok(outcome) => {
                    let table = lua.create_table()?;
                    table.set("reason", outcome.reason)?;
                    table.set("by", outcome.by)?;
                    table.set("duration_ms", outcome.duration_ms)?;
                    table.set("talk_ms", outcome.talk_ms)?;
                    done(&lua, table)
                }
                Err(_) => Ok(gone()),
            }
        }
    );
    async_fn!(
        lua,
        raw,
        "pickup",
        |lua, call, inv, args: (String, Option<Table>)| {
            let (call_id, opts) = args;
            let intercept = opt_bool(opts.as_ref(), "intercept")?.unwrap_or(false);
            let runner = nested(&lua, &inv)?;
            match call
                .pickup(&call_id, intercept, &Listening::new(&call, &runner))
                .await
            {
                Ok(outcome) => done(&lua, bridge_outcome(&lua, outcome)?),
                Err(_) => Ok(gone()),
            }
        }
    );
    Ok(())
}

/// Reaching other parties: bridges and HTTP.
fn register_outside(lua: &Lua, raw: &Table) -> mlua::Result<()> {
    async_fn!(
        lua,
        raw,
        "bridge",
        |lua, call, inv, args: (Table, Option<Table>)| {
            let (list, opts) = args;
            let opts = opts.as_ref();
            let timeout_s = opt_u64(opts, "timeout_s")?.unwrap_or(20);
            let strategy = match opt_string(opts, "strategy")?.as_deref() {
                None | Some("simultaneous") => Strategy::Simultaneous,
                Some("single") => Strategy::Single,
                Some(other) => {
                    return Err(mlua::Error::runtime(format!(
                        "bridge strategy must be \"simultaneous\" or \"single\", not {other:?}"
                    )));
                }
            };
            let (caller_id_name, caller_id_number) =
                opt_caller_id(opts, "caller_id", call.caller_id())?
                    .unwrap_or_else(|| call.caller_id());
            let bridge_caller_id = (caller_id_name.clone(), caller_id_number.clone());
            let mut endpoints = Vec::new();
            for item in list.sequence_values::<LuaValue>() {
                endpoints.push(bridge_endpoint(item?, timeout_s, &bridge_caller_id)?);
            }
            let options = bridge_options(opts)?;
            let request = BridgeRequest {
                endpoints,
                strategy,
                timeout_s,
                ringback: opt_string(opts, "ringback")?,
                page: opt_bool(opts, "page")?.unwrap_or(false),
                caller_id_name,
                caller_id_number,
                carriers: carriers_option(opts)?,
                options,
            };
            let runner = nested(&lua, &inv)?;
            match call.bridge(&request, &Listening::new(&call, &runner)).await {
                Ok(outcome) => done(&lua, bridge_outcome(&lua, outcome)?),
                Err(_) => Ok(gone()),
            }
        }
    );
    async_fn!(lua, raw, "http", |lua, call, inv, request: Table| {
        let request = http_request(&lua, &request)?;
        let runner = nested(&lua, &inv)?;
        let outcome = call.http(&request, &Listening::new(&call, &runner)).await;
        let table = lua.create_table()?;
        table.set("status", outcome.status)?;
        table.set("body", outcome.body)?;
        let headers = lua.create_table()?;
        for (key, value) in &outcome.headers {
            headers.set(key.as_str(), value.as_str())?;
        }
        table.set("headers", headers)?;
        table.set("error", outcome.error)?;
        table.set("duration_ms", outcome.duration_ms)?;
        done(&lua, table)
    });

    Ok(())
}

/// Call state: variables, caller id, language, DTMF collections.
fn register_state(lua: &Lua, raw: &Table) -> mlua::Result<()> {
    sync_fn!(lua, raw, "get", |lua, name: String| {
        let call = call_of(&*current(lua)?, "get")?;
        let value = match call.variable(&name) {
            Some(value) => to_lua(lua, &value)?,
            None => LuaValue::Nil,
        };
        done(lua, value)
    });
    sync_fn!(lua, raw, "variables", |lua, (): ()| {
        let call = call_of(&*current(lua)?, "variables")?;
        let variables: serde_json::Map<String, Value> = call.variables().into_iter().collect();
        done(lua, to_lua(lua, &Value::Object(variables))?)
    });
    sync_fn!(lua, raw, "previous_module", |lua, (): ()| {
        let call = call_of(&*current(lua)?, "previous_module")?;
        done(lua, call.previous_module())
    });
    sync_fn!(lua, raw, "set", |lua, (name, value): (String, LuaValue)| {
        let call = call_of(&*current(lua)?, "set")?;
        if name.is_empty() {
            return Err(mlua::Error::runtime("a call variable needs a name"));
        }
        let value = from_lua(lua, &value)?;
        // The variable and its `set` event.
        reserve(&call, 2 * (name.len() + crate::trace::approx_bytes(&value)))?;
        call.set_variable(&name, value);
        done(lua, ())
    });
    sync_fn!(lua, raw, "caller_id", |lua, (): ()| {
        let call = call_of(&*current(lua)?, "caller_id")?;
        let (name, number) = call.caller_id();
        let changes = call.caller_id_changes();
        let table = lua.create_table()?;
        table.set("name", name)?;
        table.set("number", number)?;
        table.set("original_name", call.facts.caller_id_name.as_str())?;
        table.set("original_number", call.facts.from.as_str())?;
        table.set("prefix_name", changes.prefix_name)?;
        table.set("prefix_number", changes.prefix_number)?;
        done(lua, table)
    });
    sync_fn!(lua, raw, "set_caller_id", |lua, opts: Table| {
        let call = call_of(&*current(lua)?, "set_caller_id")?;
        let mut changes = call.caller_id_changes();
        let set = |target: &mut Option<String>, value: Option<String>| {
            if let Some(value) = value {
                *target = Some(value).filter(|v| !v.is_empty());
            }
        };
        set(&mut changes.rewrite_name, opt_string(Some(&opts), "name")?);
        set(
            &mut changes.rewrite_number,
            opt_string(Some(&opts), "number")?,
        );
        if let Some(prefix) = opt_string(Some(&opts), "prefix_name")? {
            changes.prefix_name = prefix;
        }
        if let Some(prefix) = opt_string(Some(&opts), "prefix_number")? {
            changes.prefix_number = prefix;
        }
        call.set_caller_id_changes(CallerIdChanges { ..changes });
        done(lua, ())
    });
    sync_fn!(lua, raw, "language", |lua, (): ()| {
        let call = call_of(&*current(lua)?, "language")?;
        done(lua, call.language())
    });
    sync_fn!(lua, raw, "set_language", |lua, language: String| {
        let call = call_of(&*current(lua)?, "set_language")?;
        call.set_language(&language);
        done(lua, ())
    });
    sync_fn!(lua, raw, "collection", |lua, name: String| {
        let call = call_of(&*current(lua)?, "collection")?;
        done(lua, call.collection(&name))
    });
    sync_fn!(lua, raw, "flush_dtmf", |lua, collection: Option<String>| {
        let call = call_of(&*current(lua)?, "flush_dtmf")?;
        call.flush_dtmf(collection.as_deref());
        done(lua, ())
    });
    Ok(())
}

/// The flow: routes and the node's children.
fn register_flow(lua: &Lua, raw: &Table) -> mlua::Result<()> {
    sync_fn!(lua, raw, "lookup", |lua,
                                  (number, opts): (
        String,
        Option<Table>
    )| {
        let call = call_of(&*current(lua)?, "lookup")?;
        let routes = &call.account.routes;
        let number = if opt_bool(opts.as_ref(), "normalize")?.unwrap_or(false) {
            routes.normalizer().normalize(&number)
        } else {
            number
        };
        match routes.lookup(&number) {
            Ok(route) => {
                let table = lua.create_table()?;
                table.set("callflow_id", route.callflow_id.as_str())?;
                table.set("number", route.number.as_str())?;
                table.set("matched", route.matched.as_str())?;
                table.set("pattern", route.pattern.as_deref())?;
                table.set("capture_group", route.capture_group.as_deref())?;
                let groups = lua.create_table()?;
                for (name, value) in &route.capture_groups {
                    groups.set(name.as_str(), value.as_str())?;
                }
                table.set("capture_groups", groups)?;
                table.set("no_match", route.no_match)?;
                done(lua, table)
            }
            Err(err @ (RouteError::NotFound { .. } | RouteError::EmptyNumber)) => {
                done(lua, (LuaValue::Nil, err.to_string()))
            }
        }
    });
    sync_fn!(lua, raw, "normalize", |lua, number: String| {
        let call = call_of(&*current(lua)?, "normalize")?;
        done(lua, call.account.routes.normalizer().normalize(&number))
    });
    sync_fn!(lua, raw, "children", |lua, (): ()| {
        let inv = current(lua)?;
        let keys: Vec<&str> = inv.children.iter().map(|(k, _)| k.as_str()).collect();
        done(lua, lua.create_sequence_from(keys)?)
    });
    sync_fn!(lua, raw, "has_child", |lua, key: String| {
        let inv = current(lua)?;
        done(lua, inv.children.iter().any(|(k, full)| *full && *k == key))
    });
    Ok(())
}

/// Directives (`branch`, `replace_flow`, `stop`, `usurp`) and `on_end`.
fn register_directives(lua: &Lua, raw: &Table) -> mlua::Result<()> {
    sync_fn!(lua, raw, "branch", |lua, target: LuaValue| {
        let inv = current(lua)?;
        let call = call_of(&inv, "branch")?;
        match branch_target(lua, &call, target)? {
            Ok(target) => {
                *inv.directive.borrow_mut() = Some(Next::Branch(target));
                done(lua, true)
            }
            Err(reason) => done(lua, (LuaValue::Nil, reason)),
        }
    });
    sync_fn!(lua, raw, "replace_flow", |lua, flow: Table| {
        let inv = current(lua)?;
        call_of(&inv, "replace_flow")?;
        let value = from_lua(lua, &LuaValue::Table(flow))?;
        let (node, diags) = parse_flow(&value);
        if let Some(diag) = diags.iter().find(|d| d.is_error()) {
            let at = if diag.pointer.is_empty() {
                "/"
            } else {
                &diag.pointer
            };
            return done(
                lua,
                (
                    LuaValue::Nil,
                    format!("invalid flow at {at}: {}", diag.message),
                ),
            );
        }
        *inv.directive.borrow_mut() = Some(Next::Replace(Arc::new(node)));
        done(lua, true)
    });
    sync_fn!(lua, raw, "stop", |lua, cause: Option<String>| {
        let inv = current(lua)?;
        call_of(&inv, "stop")?;
        *inv.directive.borrow_mut() = Some(Next::Stop(cause));
        done(lua, true)
    });
    sync_fn!(lua, raw, "usurp", |lua, app: String| {
        let inv = current(lua)?;
        call_of(&inv, "usurp")?;
        *inv.directive.borrow_mut() = Some(Next::Usurp(app));
        done(lua, true)
    });
    sync_fn!(lua, raw, "on_end", |lua, data: Option<Table>| {
        let inv = current(lua)?;
        let call = call_of(&inv, "on_end")?;
        if inv.entry == super::Entry::OnEnd {
            return Err(mlua::Error::runtime(
                "call:on_end cannot be used in on_end: the call has ended",
            ));
        }
        let has_handler = inv
            .instance
            .borrow()
            .as_ref()
            .is_some_and(|ready| ready.on_end.is_some());
        if !has_handler {
            return Err(mlua::Error::runtime(format!(
                "module {} has no on_end function: return {{ handle = ..., on_end = function(call, data) ... end }}",
                inv.module
            )));
        }
        let data = match data {
            Some(table) => match from_lua(lua, &LuaValue::Table(table))? {
                Value::Object(object) => object,
                // An empty table converts as an object too; a list does not.
                _ => {
                    return Err(mlua::Error::runtime(
                        "call:on_end takes a table of named fields, not a list",
                    ));
                }
            },
            None => serde_json::Map::new(),
        };
        reserve(
            &call,
            crate::trace::approx_bytes(&Value::Object(data.clone())),
        )?;
        call.add_on_end(&inv.module, data)
            .map_err(mlua::Error::runtime)?;
        done(lua, ())
    });
    Ok(())
}

/// `run_function`: a function document run with the module's call object
/// (`functions.rs`). Usage errors and a missing document are the usual
/// `false, message` and `nil, error`; the function's own errors (syntax,
/// raised, a budget) are raised as they are, so the error event names its
/// document and line.
fn register_functions(lua: &Lua, raw: &Table) -> mlua::Result<()> {
    raw.set(
        "run_function",
        lua.create_async_function(|lua: Lua, (id, data): (String, LuaValue)| async move {
            let inv = match current(&lua) {
                Ok(inv) => inv,
                Err(err) => return failed(&lua, &err),
            };
            let prepared = (|| -> mlua::Result<Result<(String, String, Table), String>> {
                not_updating(&inv, "run_function")?;
                let call = call_of(&inv, "run_function")?;
                let id = DocId::new(&id).map_err(|e| mlua::Error::runtime(e.to_string()))?;
                let file =
                    super::functions::chunk_name(call.account.account.id.as_str(), id.as_str());
                let Some(body) = call
                    .documents()
                    .get(super::functions::DOC_TYPE, id.as_str())
                else {
                    return Ok(Err(format!(
                        "no {} document {:?} in this account",
                        super::functions::DOC_TYPE,
                        id.as_str()
                    )));
                };
                let source = match super::functions::source_of(&body) {
                    Ok(source) => source.to_owned(),
                    Err(why) => return Ok(Err(format!("{file}: {why}"))),
                };
                let name = inv
                    .instance
                    .borrow()
                    .as_ref()
                    .map(|ready| ready.name.clone())
                    .ok_or_else(|| mlua::Error::runtime("no module is running"))?;
                Ok(Ok((file, source, call_object(&lua, &inv, &name)?)))
            })();
            let (file, source, call_object) = match prepared {
                Ok(Ok(ready)) => ready,
                Ok(Err(reason)) => return done(&lua, (LuaValue::Nil, reason)),
                Err(err) => return failed(&lua, &err),
            };
            let function = super::functions::load(&lua, &file, &source)?;
            // What decides is what the function returns: a directive it
            // gives (call:branch, call:stop, ...) is not the module's.
            let before = inv.directive.borrow_mut().take();
            let returned = super::Headroom {
                lua: lua.clone(),
                inner: Some(Box::pin(
                    function.call_async::<LuaValue>((call_object, data)),
                )),
            }
            .await;
            *inv.directive.borrow_mut() = before;
            done(&lua, returned?)
        })?,
    )?;
    Ok(())
}

/// Trace and clock: log, emit, now, elapsed, date.
fn register_trace(lua: &Lua, raw: &Table) -> mlua::Result<()> {
    sync_fn!(
        lua,
        raw,
        "log",
        |lua, (level, message): (String, String)| {
            let inv = current(lua)?;
            if !matches!(level.as_str(), "debug" | "info" | "warning" | "error") {
                return Err(mlua::Error::runtime(format!(
                    "log level must be debug, info, warning or error, not {level:?}"
                )));
            }
            let max = lua
                .app_data_ref::<Limits>()
                .map_or(usize::MAX, |limits| limits.max_log_bytes);
            let message = cut(&message, max);
            if let Some(call) = &inv.call {
                reserve(call, message.len())?;
            }
            log(&inv, &level, &message);
            done(lua, ())
        }
    );
    sync_fn!(lua, raw, "emit", |lua, event: Table| {
        let inv = current(lua)?;
        let call = call_of(&inv, "emit")?;
        let name: String = event
            .get::<Option<String>>("event")?
            .ok_or_else(|| mlua::Error::runtime("call:emit needs an `event` name"))?;
        let valid = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
        if !valid || CORE_EVENTS.contains(&name.as_str()) {
            return Err(mlua::Error::runtime(format!(
                "event name {name:?} must be lower-case letters, digits, '_' and '.', and not one of the engine's own events"
            )));
        }
        let Value::Object(fields) = from_lua(lua, &LuaValue::Table(event))? else {
            return Err(mlua::Error::runtime("call:emit takes a table"));
        };
        let max = lua
            .app_data_ref::<Limits>()
            .map_or(usize::MAX, |limits| limits.max_emit_bytes);
        let size = serde_json::to_string(&fields).map_or(0, |text| text.len());
        if size > max {
            return Err(mlua::Error::runtime(format!(
                "call:emit of {size} bytes: an event may have {max} bytes of fields at most"
            )));
        }
        reserve(&call, size)?;
        let mut recorded = call.event(&name).with("module", inv.module.as_str());
        for (key, value) in fields {
            if !matches!(key.as_str(), "event" | "t_ms" | "module") {
                recorded = recorded.with(&key, value);
            }
        }
        call.record(recorded);
        done(lua, ())
    });
    sync_fn!(lua, raw, "now", |lua, (): ()| {
        let call = call_of(&*current(lua)?, "now")?;
        #[allow(clippy::cast_precision_loss)] // epoch milliseconds fit in 53 bits until year 287396
        let now = call.now_epoch_ms() as f64;
        done(lua, now)
    });
    sync_fn!(lua, raw, "elapsed_ms", |lua, (): ()| {
        let call = call_of(&*current(lua)?, "elapsed_ms")?;
        done(lua, call.now_ms())
    });
    sync_fn!(lua, raw, "date", |lua, timezone: Option<String>| {
        let call = call_of(&*current(lua)?, "date")?;
        let name = timezone
            .or_else(|| call.account.account.timezone.clone())
            .unwrap_or_else(|| "UTC".to_owned());
        done(lua, local_date(lua, call.now_epoch_ms(), &name)?)
    });
    Ok(())
}

/// A document as a read-only Lua table (nil when there is none). Converted
/// once per invocation, and, for documents other than callflows, once per VM
/// for each version of the document: modules read the same devices, users
/// and boxes on every call. Sharing is safe because the tables are frozen
/// (no script can change them, so none can pass state through them).
fn cached_document(
    lua: &Lua,
    inv: &Invocation,
    call: &Call,
    doc_type: &str,
    id: &str,
) -> mlua::Result<LuaValue> {
    let key = (doc_type.to_owned(), id.to_owned());
    fresh_documents(inv, call);
    if let Some(table) = inv.documents.borrow().get(&key) {
        return Ok(table.clone());
    }
    let table = if doc_type == "callflows" {
        match call.account.callflows.get(id) {
            Some(callflow) => shared_callflow(lua, callflow)?,
            None => LuaValue::Nil,
        }
    } else {
        match call.documents().get(doc_type, id) {
            Some(body) => shared_document(lua, &body, id)?,
            None => LuaValue::Nil,
        }
    };
    inv.documents.borrow_mut().insert(key, table.clone());
    Ok(table)
}

/// A bridge's (or a pickup's) outcome as the table `call:bridge` returns.
fn bridge_outcome(
    lua: &Lua,
    outcome: crate::engine::control::BridgeOutcome,
) -> mlua::Result<Table> {
    let table = lua.create_table()?;
    table.set("status", outcome.status.as_str())?;
    table.set("cause", outcome.cause)?;
    table.set("sip", outcome.sip)?;
    table.set("answered_by", outcome.answered_by)?;
    table.set("duration_ms", outcome.duration_ms)?;
    table.set("talk_ms", outcome.talk_ms)?;
    Ok(table)
}

/// Forgets the invocation's converted documents when the call's documents
/// were written since (by another call of the world, or this one).
fn fresh_documents(inv: &Invocation, call: &Call) {
    let generation = call.documents().generation();
    if inv.documents_generation.get() != generation {
        inv.documents.borrow_mut().clear();
        inv.documents_generation.set(generation);
    }
}

/// Documents converted by this VM (bodies and callflows), by the address
/// of what they came from (held, so the address cannot be reused) and id.
#[derive(Default)]
struct DocumentCache(std::cell::RefCell<BTreeMap<(usize, String), SharedDocument>>);

/// A converted document and what it came from.
type SharedDocument = (Arc<dyn std::any::Any + Send + Sync>, LuaValue);

/// Account documents converted by this VM, by the address of their account
/// snapshot (held, so the address cannot be reused).
#[derive(Default)]
struct AccountCache(
    std::cell::RefCell<BTreeMap<usize, (Arc<crate::catalog::AccountFlows>, LuaValue)>>,
);

/// Beyond this many account snapshots the VM's cache starts afresh.
const ACCOUNT_CACHE_MAX: usize = 256;

/// Beyond this many documents the VM's cache starts afresh.
const DOCUMENT_CACHE_MAX: usize = 4096;

fn shared_document(lua: &Lua, body: &Arc<Object>, id: &str) -> mlua::Result<LuaValue> {
    converted_once(lua, Arc::clone(body) as _, id, || {
        let mut value = (**body).clone();
        // First, as Kazoo's `_id` usually is (json.keys, json.encode).
        value.shift_insert(0, "id".into(), json!(id));
        Value::Object(value)
    })
}

fn shared_callflow(lua: &Lua, callflow: &Arc<Callflow>) -> mlua::Result<LuaValue> {
    converted_once(lua, Arc::clone(callflow) as _, callflow.id.as_str(), || {
        let mut doc = callflow.to_value();
        if let Value::Object(obj) = &mut doc {
            obj.insert("id".into(), json!(callflow.id.as_str()));
        }
        doc
    })
}

/// The frozen table of `document()`, converted once per VM for `source`
/// and `id` (see [`DocumentCache`]).
fn converted_once(
    lua: &Lua,
    source: Arc<dyn std::any::Any + Send + Sync>,
    id: &str,
    document: impl FnOnce() -> Value,
) -> mlua::Result<LuaValue> {
    let key = (Arc::as_ptr(&source).cast::<()>().addr(), id.to_owned());
    if let Some(cache) = lua.app_data_ref::<DocumentCache>()
        && let Some((_, table)) = cache.0.borrow().get(&key)
    {
        return Ok(table.clone());
    }
    let table = to_lua_frozen(lua, &document())?;
    if let Some(cache) = lua.app_data_ref::<DocumentCache>() {
        let mut cache = cache.0.borrow_mut();
        if cache.len() >= DOCUMENT_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, (source, table.clone()));
    }
    Ok(table)
}

/// Resolves what `call:branch` was given; `Ok(Err(reason))` when there is no
/// such target.
fn branch_target(
    lua: &Lua,
    call: &Call,
    target: LuaValue,
) -> mlua::Result<Result<BranchTarget, String>> {
    let flows = &call.account.callflows;
    match target {
        LuaValue::String(id) => {
            let id = id.to_string_lossy();
            Ok(flows
                .get(id.as_str())
                .map(|cf| BranchTarget::Callflow(Arc::clone(cf)))
                .ok_or_else(|| format!("no callflow {id:?} in this account")))
        }
        LuaValue::Table(table) => {
            if let Some(id) = table.get::<Option<String>>("callflow_id")? {
                let Some(callflow) = flows.get(id.as_str()) else {
                    return Ok(Err(format!("no callflow {id:?} in this account")));
                };
                // A route from call:lookup: its captures become the call's.
                let mut route = call.route();
                route.capture_group = table.get::<Option<String>>("capture_group")?;
                route.capture_groups = Vec::new();
                if let Some(groups) = table.get::<Option<Table>>("capture_groups")? {
                    for pair in groups.pairs::<String, String>() {
                        route.capture_groups.push(pair?);
                    }
                    route.capture_groups.sort();
                }
                route.no_match = table.get::<Option<bool>>("no_match")?.unwrap_or(false);
                call.set_route(RouteFacts { ..route });
                return Ok(Ok(BranchTarget::Callflow(Arc::clone(callflow))));
            }
            let value = from_lua(lua, &LuaValue::Table(table))?;
            let (node, diags) = parse_flow(&value);
            match diags.iter().find(|d| d.is_error()) {
                Some(diag) => Ok(Err(format!(
                    "invalid flow at {}: {}",
                    if diag.pointer.is_empty() {
                        "/"
                    } else {
                        &diag.pointer
                    },
                    diag.message
                ))),
                None => Ok(Ok(BranchTarget::Flow(Arc::new(node)))),
            }
        }
        other => Err(mlua::Error::runtime(format!(
            "call:branch takes a callflow id, a route from call:lookup or a flow table, not {}",
            other.type_name()
        ))),
    }
}

/// One element of `call:bridge`'s endpoint list: a device id, a
/// `{id, delay, timeout}` table, or `{number = ...}` for an off-net number.
fn bridge_endpoint(
    item: LuaValue,
    timeout_s: u64,
    caller_id: &(String, String),
) -> mlua::Result<BridgeEndpoint> {
    match item {
        LuaValue::String(id) => Ok(BridgeEndpoint {
            id: id.to_string_lossy(),
            offnet: false,
            delay_s: 0,
            timeout_s,
            call_waiting: true,
            caller_id: None,
        }),
        LuaValue::Table(t) => {
            let (id, offnet) = match (
                t.get::<Option<String>>("id")?,
                t.get::<Option<String>>("number")?,
            ) {
                (Some(id), None) => (id, false),
                (None, Some(number)) => (number, true),
                _ => {
                    return Err(mlua::Error::runtime(
                        "a bridge endpoint table has an `id` (a device) or a `number` (off-net), not both",
                    ));
                }
            };
            Ok(BridgeEndpoint {
                id,
                offnet,
                delay_s: opt_u64(Some(&t), "delay")?.unwrap_or(0),
                timeout_s: opt_u64(Some(&t), "timeout")?.unwrap_or(timeout_s),
                call_waiting: opt_bool(Some(&t), "call_waiting")?.unwrap_or(true),
                caller_id: opt_caller_id(Some(&t), "caller_id", caller_id.clone())?,
            })
        }
        other => Err(mlua::Error::runtime(format!(
            "bridge endpoints are device ids or {{id, delay, timeout}} / {{number, ...}} tables, not {}",
            other.type_name()
        ))),
    }
}

/// Option `key` as a caller id `{name, number}` (either may be left out:
/// it keeps `default`'s); `None` when not given.
fn opt_caller_id(
    opts: Option<&Table>,
    key: &str,
    default: (String, String),
) -> mlua::Result<Option<(String, String)>> {
    match opt_value(opts, key)? {
        LuaValue::Nil => Ok(None),
        LuaValue::Table(t) => {
            let name = opt_string(Some(&t), "name")?.unwrap_or(default.0);
            let number = opt_string(Some(&t), "number")?.unwrap_or(default.1);
            if name.contains(['\r', '\n', '"'])
                || number.contains(['\r', '\n', '"', '<', '>', '@', ' '])
            {
                return Err(mlua::Error::runtime(format!(
                    "option `{key}`: a caller id cannot hold quotes, angle brackets, line breaks (or, in the number, @ and spaces)"
                )));
            }
            Ok(Some((name, number)))
        }
        other => Err(mlua::Error::runtime(format!(
            "option `{key}` must be a table {{name, number}}, not {}",
            other.type_name()
        ))),
    }
}

/// Headers a module may add to a bridge's INVITEs: `X-` headers, a SIP
/// token for a name, a value on one line.
fn sip_headers(opts: Option<&Table>) -> mlua::Result<Vec<(String, String)>> {
    let table = match opt_value(opts, "headers")? {
        LuaValue::Nil => return Ok(Vec::new()),
        LuaValue::Table(t) => t,
        other => {
            return Err(mlua::Error::runtime(format!(
                "option `headers` must be a table of name = value, not {}",
                other.type_name()
            )));
        }
    };
    let mut headers = Vec::new();
    for pair in table.pairs::<String, String>() {
        let (name, value) = pair?;
        check_sip_header(&name, &value).map_err(mlua::Error::runtime)?;
        headers.push((name, value));
    }
    headers.sort();
    Ok(headers)
}

/// Why a custom SIP header is refused (only `X-` headers, SIP tokens for
/// names, one-line values of at most 256 bytes).
pub(crate) fn check_sip_header(name: &str, value: &str) -> Result<(), String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c);
    if !(name.len() > 2 && name[..2].eq_ignore_ascii_case("x-") && name.chars().all(token)) {
        return Err(format!(
            "bridge header {name:?}: only X- headers with a SIP token for a name can be added"
        ));
    }
    if value.len() > 256 || value.chars().any(char::is_control) {
        return Err(format!(
            "bridge header {name}: a value is one line of at most 256 bytes"
        ));
    }
    Ok(())
}

/// A recording's `format` option: both backends make WAV files (8 kHz,
/// 16-bit mono), so `"wav"` is the one format there is.
fn recording_format(opts: Option<&Table>) -> mlua::Result<()> {
    match opt_string(opts, "format")?.as_deref() {
        None | Some("wav") => Ok(()),
        Some(other) => Err(mlua::Error::runtime(format!(
            "recordings are WAV files (8 kHz, 16-bit mono): format {other:?} is not made here"
        ))),
    }
}

/// `call:bridge`'s options beyond whom to ring and how.
fn bridge_options(opts: Option<&Table>) -> mlua::Result<BridgeOptions> {
    let confirm = match opt_value(opts, "confirm")? {
        LuaValue::Nil => None,
        LuaValue::Table(t) => {
            let key = opt_digits(Some(&t), "key")?.unwrap_or_else(|| "1".to_owned());
            let mut keys = key.chars();
            let (Some(key), None) = (keys.next(), keys.next()) else {
                return Err(mlua::Error::runtime("option `confirm.key` is one digit"));
            };
            Some(Confirm {
                key,
                media: opt_string(Some(&t), "media")?,
            })
        }
        other => {
            return Err(mlua::Error::runtime(format!(
                "option `confirm` must be a table {{key, media}}, not {}",
                other.type_name()
            )));
        }
    };
    Ok(BridgeOptions {
        caller_id_set: !opt_value(opts, "caller_id")?.is_nil(),
        headers: sip_headers(opts)?,
        confirm,
        time_limit_s: opt_u64(opts, "time_limit_s")?.filter(|s| *s > 0),
        ignore_early_media: opt_bool(opts, "ignore_early_media")?.unwrap_or(false),
    })
}

fn http_request(lua: &Lua, table: &Table) -> mlua::Result<HttpRequest> {
    let url: String = table
        .get::<Option<String>>("url")?
        .ok_or_else(|| mlua::Error::runtime("call:http needs a `url`"))?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(mlua::Error::runtime(format!(
            "call:http takes http:// or https:// URLs, not {url:?}"
        )));
    }
    let method = opt_string(Some(table), "method")?
        .unwrap_or_else(|| "GET".to_owned())
        .to_ascii_uppercase();
    let mut headers = BTreeMap::new();
    if let Some(given) = table.get::<Option<Table>>("headers")? {
        for pair in given.pairs::<String, String>() {
            let (key, value) = pair?;
            headers.insert(key.to_ascii_lowercase(), value);
        }
    }
    let body = match table.get::<LuaValue>("body")? {
        LuaValue::Nil => None,
        LuaValue::String(text) => Some(text.to_string_lossy()),
        LuaValue::Table(body) => {
            headers
                .entry("content-type".to_owned())
                .or_insert_with(|| "application/json".to_owned());
            Some(from_lua(lua, &LuaValue::Table(body))?.to_string())
        }
        other => {
            return Err(mlua::Error::runtime(format!(
                "an HTTP body is a string or a table, not {}",
                other.type_name()
            )));
        }
    };
    Ok(HttpRequest {
        method,
        url,
        headers,
        body,
        timeout_ms: opt_u64(Some(table), "timeout_ms")?.unwrap_or(5000),
    })
}

fn play_table(lua: &Lua, outcome: &PlayOutcome) -> mlua::Result<Table> {
    let table = lua.create_table()?;
    table.set("reason", snake(&outcome.reason))?;
    table.set("digit", outcome.digit.map(String::from))?;
    table.set("duration_ms", outcome.duration_ms)?;
    Ok(table)
}

/// The `snake_case` name serde gives an outcome enum.
fn snake(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => name,
        _ => String::new(),
    }
}

/// `message`, cut to at most `max` bytes (at a character boundary) with a
/// note of how much was cut.
fn cut(message: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if message.len() <= max {
        return std::borrow::Cow::Borrowed(message);
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!(
        "{}… [{} more bytes cut]",
        &message[..end],
        message.len() - end
    ))
}

fn log(inv: &Invocation, level: &str, message: &str) {
    if let Some(call) = &inv.call {
        call.record(
            call.event("log")
                .with("level", level)
                .with("module", inv.module.as_str())
                .with("message", message),
        );
    } else {
        tracing::info!(module = %inv.module, "{message}");
    }
}

// Options tables.

/// `carriers = {resources = "local" | "global", hunt_account_id, flags}`.
fn carriers_option(opts: Option<&Table>) -> mlua::Result<Option<Carriers>> {
    let table = match opt_value(opts, "carriers")? {
        LuaValue::Nil => return Ok(None),
        LuaValue::Table(table) => table,
        other => {
            return Err(mlua::Error::runtime(format!(
                "option `carriers` must be a table, not {}",
                other.type_name()
            )));
        }
    };
    let local = match opt_string(Some(&table), "resources")?.as_deref() {
        None | Some("local") => true,
        Some("global") => false,
        Some(other) => {
            return Err(mlua::Error::runtime(format!(
                "carriers.resources must be \"local\" or \"global\", not {other:?}"
            )));
        }
    };
    let mut flags = Vec::new();
    if let LuaValue::Table(list) = table.get::<LuaValue>("flags")? {
        for flag in list.sequence_values::<String>() {
            flags.push(flag?);
        }
    }
    Ok(Some(Carriers {
        local,
        account: opt_string(Some(&table), "hunt_account_id")?,
        flags,
    }))
}

fn opt_value(opts: Option<&Table>, key: &str) -> mlua::Result<LuaValue> {
    match opts {
        Some(table) => table.get(key),
        None => Ok(LuaValue::Nil),
    }
}

/// How long a camp's callback rings the caller's phone by default (s).
const CAMP_RING_S: u64 = 20;
/// How long a camp lasts by default (s): Kazoo's camper gives up after
/// 31 minutes.
const CAMP_STOP_AFTER_S: u64 = 31 * 60;

fn opt_string(opts: Option<&Table>, key: &str) -> mlua::Result<Option<String>> {
    match opt_value(opts, key)? {
        LuaValue::Nil => Ok(None),
        LuaValue::String(text) => Ok(Some(text.to_string_lossy())),
        other => Err(mlua::Error::runtime(format!(
            "option `{key}` must be a string, not {}",
            other.type_name()
        ))),
    }
}

fn opt_bool(opts: Option<&Table>, key: &str) -> mlua::Result<Option<bool>> {
    match opt_value(opts, key)? {
        LuaValue::Nil => Ok(None),
        LuaValue::Boolean(b) => Ok(Some(b)),
        other => Err(mlua::Error::runtime(format!(
            "option `{key}` must be a boolean, not {}",
            other.type_name()
        ))),
    }
}

fn opt_u64(opts: Option<&Table>, key: &str) -> mlua::Result<Option<u64>> {
    match opt_value(opts, key)? {
        LuaValue::Nil => Ok(None),
        LuaValue::Integer(n) => Ok(Some(u64::try_from(n).map_err(|_| negative(key))?)),
        LuaValue::Number(n) => Ok(Some(non_negative(n, key)?)),
        LuaValue::String(text) => text
            .to_str()
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| mlua::Error::runtime(format!("option `{key}` must be a number"))),
        other => Err(mlua::Error::runtime(format!(
            "option `{key}` must be a number, not {}",
            other.type_name()
        ))),
    }
}

fn negative(what: &str) -> mlua::Error {
    mlua::Error::runtime(format!("{what} must be a whole number >= 0"))
}

fn non_negative(n: f64, what: &str) -> mlua::Result<u64> {
    if n.is_finite() && n >= 0.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_992.0 {
        // Checked above: a whole, non-negative number within f64's exact range.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(n as u64)
    } else {
        Err(negative(what))
    }
}

/// Digits given as a string (`"#*"`) or a list (`{"#", "*"}`).
fn opt_digits(opts: Option<&Table>, key: &str) -> mlua::Result<Option<String>> {
    let digits = match opt_value(opts, key)? {
        LuaValue::Nil => return Ok(None),
        LuaValue::String(text) => text.to_string_lossy(),
        LuaValue::Table(list) => {
            let mut out = String::new();
            for item in list.sequence_values::<String>() {
                out.push_str(&item?);
            }
            out
        }
        other => {
            return Err(mlua::Error::runtime(format!(
                "option `{key}` must be a string or a list of digits, not {}",
                other.type_name()
            )));
        }
    };
    if !digits
        .chars()
        .all(|c| c.is_ascii_digit() || c == '*' || c == '#')
    {
        return Err(mlua::Error::runtime(format!(
            "option `{key}` takes digits 0-9, * and #, not {digits:?}"
        )));
    }
    Ok(Some(digits))
}

// Globals.

// The signature `create_function` wants: owned arguments, a `Result`.
#[allow(clippy::needless_pass_by_value, clippy::unnecessary_wraps)]
fn print(lua: &Lua, args: Variadic<LuaValue>) -> mlua::Result<()> {
    let parts: Vec<String> = args
        .iter()
        .map(|v| match v {
            LuaValue::String(s) => s.to_string_lossy(),
            other => other
                .to_string()
                .unwrap_or_else(|_| other.type_name().to_owned()),
        })
        .collect();
    if let Ok(inv) = current(lua) {
        log(&inv, "info", &parts.join("\t"));
    } else {
        tracing::info!("lua: {}", parts.join("\t"));
    }
    Ok(())
}

#[allow(clippy::needless_pass_by_value)] // mlua hands callbacks owned arguments
fn require(lua: &Lua, name: String) -> mlua::Result<LuaValue> {
    let inv = current(lua)?;
    let lib = inv.set.lib(&name).ok_or_else(|| {
        mlua::Error::runtime(format!(
            "module {name:?} not found: helpers are scripts/lib/<name>.lua"
        ))
    })?;
    // One instance per VM and generation, frozen (see `instances.rs`).
    super::instances::shared(lua, &inv.set, true, lib)
}

fn random(lua: &Lua, (m, n): (Option<f64>, Option<f64>)) -> mlua::Result<f64> {
    let inv = current(lua)?;
    let call = call_of(&inv, "math.random")?;
    call.with_rng(|rng| {
        let mut range = |low: f64, high: f64| -> mlua::Result<f64> {
            if !(low.is_finite() && high.is_finite()) || low > high {
                return Err(mlua::Error::runtime("math.random: interval is empty"));
            }
            // Whole numbers within f64's exact integer range, as Lua's are.
            #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
            let value = rng.i64(low.floor() as i64..=high.floor() as i64) as f64;
            Ok(value)
        };
        match (m, n) {
            (None, _) => Ok(rng.f64()),
            (Some(m), None) => range(1.0, m),
            (Some(m), Some(n)) => range(m, n),
        }
    })
}

fn randomseed(lua: &Lua, seed: f64) -> mlua::Result<()> {
    let call = call_of(&*current(lua)?, "math.randomseed")?;
    // The seed's bits, whatever number it is.
    call.with_rng(|rng| rng.seed(seed.to_bits()));
    Ok(())
}

/// The `json` helper table: decode, encode, array.
fn json_functions(lua: &Lua) -> mlua::Result<Table> {
    let table = lua.create_table()?;
    table.set(
        "decode",
        checked(
            lua,
            |lua, text: mlua::LuaString| match serde_json::from_slice::<Value>(&text.as_bytes()) {
                Ok(value) => Ok((to_lua(lua, &value)?, LuaValue::Nil)),
                Err(err) => Ok((
                    LuaValue::Nil,
                    LuaValue::String(lua.create_string(format!("invalid JSON: {err}"))?),
                )),
            },
        )?,
    )?;
    table.set(
        "encode",
        checked(lua, |lua, value: LuaValue| {
            serde_json::to_string(&from_lua(lua, &value)?)
                .map_err(|e| mlua::Error::runtime(e.to_string()))
        })?,
    )?;
    table.set(
        "keys",
        checked(lua, |lua, t: Table| {
            lua.create_sequence_from(super::convert::keys(lua, &t)?)
        })?,
    )?;
    table.set(
        "array",
        checked(lua, |lua, items: Option<Table>| {
            let items = match items {
                Some(items) => items,
                None => lua.create_table()?,
            };
            items.set_metatable(Some(lua.array_metatable()))?;
            Ok(items)
        })?,
    )?;
    Ok(table)
}

/// Erlang's `calendar:date_to_gregorian_days` origin: day 0 is 0000-01-01.
fn day_zero() -> jiff::civil::Date {
    jiff::civil::date(0, 1, 1)
}

fn civil(year: i64, month: i64, day: i64) -> mlua::Result<jiff::civil::Date> {
    let invalid = || mlua::Error::runtime(format!("{year}-{month}-{day} is not a date"));
    jiff::civil::Date::new(
        i16::try_from(year).map_err(|_| invalid())?,
        i8::try_from(month).map_err(|_| invalid())?,
        i8::try_from(day).map_err(|_| invalid())?,
    )
    .map_err(|_| invalid())
}

fn ymd(date: jiff::civil::Date) -> (i64, i64, i64) {
    (
        i64::from(date.year()),
        i64::from(date.month()),
        i64::from(date.day()),
    )
}

fn add_days(date: jiff::civil::Date, days: i64) -> mlua::Result<jiff::civil::Date> {
    date.checked_add(
        jiff::Span::new()
            .try_days(days)
            .map_err(|e| mlua::Error::runtime(e.to_string()))?,
    )
    .map_err(|e| mlua::Error::runtime(e.to_string()))
}

/// The `calendar` helpers: civil-date arithmetic for time-based modules.
fn calendar_functions(lua: &Lua) -> mlua::Result<Table> {
    let table = lua.create_table()?;
    table.set(
        "days_in_month",
        checked(lua, |_, (year, month): (i64, i64)| {
            Ok(i64::from(civil(year, month, 1)?.days_in_month()))
        })?,
    )?;
    table.set(
        "weekday",
        checked(lua, |_, (year, month, day): (i64, i64, i64)| {
            Ok(i64::from(
                civil(year, month, day)?.weekday().to_monday_one_offset(),
            ))
        })?,
    )?;
    table.set(
        "to_days",
        checked(lua, |_, (year, month, day): (i64, i64, i64)| {
            let span = civil(year, month, day)?
                .since((jiff::Unit::Day, day_zero()))
                .map_err(|e| mlua::Error::runtime(e.to_string()))?;
            Ok(i64::from(span.get_days()))
        })?,
    )?;
    table.set(
        "from_days",
        checked(lua, |_, days: i64| Ok(ymd(add_days(day_zero(), days)?)))?,
    )?;
    table.set(
        "iso_week",
        checked(lua, |_, (year, month, day): (i64, i64, i64)| {
            let week = civil(year, month, day)?.iso_week_date();
            Ok((i64::from(week.year()), i64::from(week.week())))
        })?,
    )?;
    table.set(
        "from_iso_week",
        checked(lua, |_, (year, week): (i64, i64)| {
            let year =
                i16::try_from(year).map_err(|_| mlua::Error::runtime("year out of range"))?;
            let monday = jiff::civil::ISOWeekDate::new(year, 1, jiff::civil::Weekday::Monday)
                .map_err(|e| mlua::Error::runtime(e.to_string()))?
                .date();
            Ok(ymd(add_days(monday, (week - 1) * 7)?))
        })?,
    )?;
    table.set(
        "date",
        checked(lua, |lua, (epoch_ms, timezone): (i64, Option<String>)| {
            local_date(lua, epoch_ms, timezone.as_deref().unwrap_or("UTC"))
        })?,
    )?;
    Ok(table)
}

/// A local date and time table for an instant in a time zone.
fn local_date(lua: &Lua, epoch_ms: i64, name: &str) -> mlua::Result<Table> {
    let tz = jiff::tz::TimeZone::get(name)
        .map_err(|_| mlua::Error::runtime(format!("unknown time zone {name:?}")))?;
    let stamp = jiff::Timestamp::from_millisecond(epoch_ms)
        .map_err(|e| mlua::Error::runtime(e.to_string()))?;
    let local = stamp.to_zoned_datetime(tz);
    let table = lua.create_table()?;
    table.set("year", local.year())?;
    table.set("month", local.month())?;
    table.set("day", local.day())?;
    table.set("hour", local.hour())?;
    table.set("minute", local.minute())?;
    table.set("second", local.second())?;
    table.set("weekday", local.weekday().to_monday_one_offset())?;
    table.set("yday", local.day_of_year())?;
    table.set("timezone", name)?;
    table.set("offset_s", local.offset().seconds())?;
    Ok(table)
}

/// A compiled `re` pattern (compiled once per thread: `pattern::compile`
/// caches).
fn compiled(source: &str) -> mlua::Result<Pattern> {
    pattern::compile(source)
        .map_err(|err| mlua::Error::runtime(format!("invalid pattern {source:?}: {err}")))
}

fn re_match(lua: &Lua, (source, text): (String, String)) -> mlua::Result<LuaValue> {
    let pattern = compiled(&source)?;
    let Some(caps) = pattern.regex().captures(text.as_bytes()) else {
        return Ok(LuaValue::Nil);
    };
    let as_text = |m: Option<regex::bytes::Match<'_>>| {
        m.map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
    };
    let table = lua.create_table()?;
    table.set("match", as_text(caps.get(0)))?;
    let groups = lua.create_table()?;
    for index in 1..caps.len() {
        // Groups that did not take part are empty strings, as in Erlang's re.
        groups.raw_seti(index, as_text(caps.get(index)).unwrap_or_default())?;
    }
    table.set("groups", groups)?;
    let named = lua.create_table()?;
    for name in pattern.regex().capture_names().flatten() {
        if let Some(value) = as_text(caps.name(name)) {
            named.set(name, value)?;
        }
    }
    table.set("named", named)?;
    Ok(LuaValue::Table(table))
}

fn re_test(_lua: &Lua, (source, text): (String, String)) -> mlua::Result<bool> {
    Ok(compiled(&source)?.is_match(&text))
}

/// A Lua error as a one-line message and, when known, the script file and
/// line it comes from.
pub fn describe_error(err: &mlua::Error) -> (String, Option<(String, u32)>) {
    match err {
        mlua::Error::CallbackError { traceback, cause } => {
            let (message, location) = describe_error(cause);
            (message, location.or_else(|| traceback_location(traceback)))
        }
        mlua::Error::WithContext { context, cause } => {
            let (message, location) = describe_error(cause);
            (format!("{context}: {message}"), location)
        }
        mlua::Error::MemoryError(_) => (
            "out of memory: the worker's Lua VM reached its memory limit".to_owned(),
            None,
        ),
        mlua::Error::RuntimeError(text) | mlua::Error::SyntaxError { message: text, .. } => {
            let first = text.lines().next().unwrap_or_default();
            match split_location(first) {
                Some((file, line, message)) => (sanitize(message), Some((file, line))),
                None => (sanitize(first), traceback_location(text)),
            }
        }
        other => {
            let text = other.to_string();
            let first = text.lines().next().unwrap_or_default().to_owned();
            (sanitize(&first), traceback_location(&text))
        }
    }
}

/// `file.lua:12: message` → (file, 12, message).
fn split_location(text: &str) -> Option<(String, u32, &str)> {
    let (head, message) = text.split_once(": ")?;
    let (file, line) = head.rsplit_once(':')?;
    if !is_lua_file(file) {
        return None;
    }
    Some((file.to_owned(), line.parse().ok()?, message))
}

/// A script file, or the chunk of a function document
/// (`<account>/functions/<id>.json`).
fn is_lua_file(name: &str) -> bool {
    std::path::Path::new(name)
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("lua"))
        || super::functions::is_function_file(name)
}

/// The innermost script frame of a traceback.
fn traceback_location(text: &str) -> Option<(String, u32)> {
    text.lines().find_map(script_frame)
}

/// A traceback line naming a script frame (`\tfile.lua:12: in function
/// 'f'`, as `luaL_traceback` writes each level from `lua_getinfo`'s
/// `short_src` and `currentline`) → (file, 12). The API's own frames
/// (`callflow`), C functions and levels without a line are not script
/// frames.
fn script_frame(line: &str) -> Option<(String, u32)> {
    let (head, _) = line.trim().split_once(": in ")?;
    let (file, number) = head.rsplit_once(':')?;
    if is_lua_file(file) {
        Some((file.to_owned(), number.parse().ok()?))
    } else {
        None
    }
}

/// The script frames of the traceback mlua attached to `text` (the levels
/// after its `stack traceback:` line), innermost first, as `file:line`.
fn traceback_frames(text: &str) -> Vec<String> {
    let Some((_, levels)) = text.split_once("stack traceback:") else {
        return Vec::new();
    };
    levels
        .lines()
        .filter_map(script_frame)
        .map(|(file, line)| format!("{file}:{line}"))
        .collect()
}

/// The chain of script frames (`file:line`, innermost first) a Lua error
/// passed through: the levels of the stack Luau had when it was raised, as
/// the traceback mlua takes there records them (the coroutine's stack for
/// an error in a module's code, the caller's for an error an API function
/// raised). Empty when no traceback names a script.
pub fn error_stack(err: &mlua::Error) -> Vec<String> {
    match err {
        // The cause's own traceback, when it has one, was taken deeper
        // (on the same stack): it holds every level the outer one does.
        mlua::Error::CallbackError { traceback, cause } => {
            let inner = error_stack(cause);
            if inner.is_empty() {
                traceback_frames(traceback)
            } else {
                inner
            }
        }
        mlua::Error::WithContext { cause, .. } => error_stack(cause),
        mlua::Error::RuntimeError(text) => traceback_frames(text),
        mlua::Error::MemoryError(_) | mlua::Error::SyntaxError { .. } => Vec::new(),
        other => traceback_frames(&other.to_string()),
    }
}

/// Error values that are tables or functions print as addresses, which
/// differ from run to run; say what they are instead.
fn sanitize(message: &str) -> String {
    for kind in ["table", "function", "userdata", "thread"] {
        if message.starts_with(&format!("{kind}: 0x")) {
            return format!("error() was called with a {kind}, not a message");
        }
    }
    message.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridges_add_only_one_line_x_headers() {
        assert!(check_sip_header("X-Account-Tag", "gold; tier=1").is_ok());
        assert!(check_sip_header("x-lower", "").is_ok());
        for (name, value) in [
            ("Via", "SIP/2.0/UDP evil"),
            ("X-", "v"),
            ("X-Bad Name", "v"),
            ("X-Colon:", "v"),
            ("X-Split", "a\r\nVia: SIP/2.0/UDP evil"),
            ("X-Long", &"a".repeat(257)),
        ] {
            assert!(check_sip_header(name, value).is_err(), "{name}: {value:?}");
        }
    }

    #[test]
    fn long_log_messages_are_cut_at_a_character() {
        assert_eq!(cut("short", 10), "short");
        // "é" is two bytes: a cut inside it backs off to before it.
        assert_eq!(cut("abcé", 4), "abc… [2 more bytes cut]");
        assert_eq!(cut("abcdef", 3), "abc… [3 more bytes cut]");
    }

    /// A chunk named `@file` (as the host names scripts) with `source`.
    fn function(lua: &Lua, file: &str, source: &str) -> mlua::Function {
        lua.load(source)
            .set_name(format!("@{file}"))
            .eval()
            .unwrap()
    }

    #[test]
    fn an_error_in_a_helper_has_the_chain_of_script_frames() {
        let lua = Lua::new();
        let helper = function(
            &lua,
            "scripts/lib/x.lua",
            "return function(n)\n  local t = nil\n  return t.field + n\nend",
        );
        lua.globals().set("helper", helper).unwrap();
        let module = function(
            &lua,
            "scripts/blocklist.lua",
            "return function()\n  local hit = helper(1)\n  return hit\nend",
        );
        let err = module.call::<()>(()).unwrap_err();
        assert_eq!(
            error_stack(&err),
            ["scripts/lib/x.lua:3", "scripts/blocklist.lua:2"]
        );
        let (_, location) = describe_error(&err);
        assert_eq!(location, Some(("scripts/lib/x.lua".to_owned(), 3)));
    }

    #[test]
    fn an_error_an_api_function_raises_has_the_frames_that_called_it() {
        let lua = Lua::new();
        let api = lua
            .create_function(|_, ()| -> mlua::Result<()> {
                Err(mlua::Error::runtime("a SIP response code is 100 to 699"))
            })
            .unwrap();
        lua.globals().set("api", api).unwrap();
        let helper = function(
            &lua,
            "scripts/lib/x.lua",
            "return function()\n  api()\n  return 1\nend",
        );
        lua.globals().set("helper", helper).unwrap();
        let module = function(
            &lua,
            "builtin/m.lua",
            "return function()\n\n  helper()\n  return 2\nend",
        );
        let err = module.call::<()>(()).unwrap_err();
        assert_eq!(
            error_stack(&err),
            ["scripts/lib/x.lua:2", "builtin/m.lua:3"]
        );
    }

    #[test]
    fn frames_come_from_the_traceback_not_the_message() {
        let text = "scripts/a.lua:1: in function 'f' is what it said\nstack traceback:\n\t[C]: in function 'error'\n\tscripts/b.lua:7: in function 'g'\n\tcallflow:3: in ?\n\tscripts/c.lua:9: in ?";
        assert_eq!(
            error_stack(&mlua::Error::RuntimeError(text.to_owned())),
            ["scripts/b.lua:7", "scripts/c.lua:9"]
        );
        assert!(error_stack(&mlua::Error::runtime("no traceback")).is_empty());
    }

    /// The raw functions registered are exactly the `call:` methods of [`API`].
    #[test]
    fn api_list_matches_the_registered_functions() {
        let lua = Lua::new();
        let raw = raw_functions(&lua).unwrap();
        let mut registered: Vec<String> = raw
            .pairs::<String, LuaValue>()
            .map(|pair| format!("call:{}", pair.unwrap().0))
            .collect();
        registered.sort();
        let mut listed: Vec<String> = API
            .iter()
            .filter(|item| item.name.starts_with("call:"))
            .map(|item| item.name.to_owned())
            .collect();
        listed.sort();
        assert_eq!(registered, listed);
    }
}
