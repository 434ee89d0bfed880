//! JSON ⇄ Lua conversions for the module host.
//!
//! JSON to Lua: `null` becomes `nil`, arrays carry mlua's array metatable
//! (so an empty one goes back to JSON as `[]`), objects remember the
//! document order of their keys (in a weak-keyed table `json.keys` reads:
//! Kazoo's semantics sometimes follow it, Lua's `pairs` does not), and tables
//! handed to scripts as read-only (node data, documents) are frozen
//! recursively. Lua to JSON:
//! keys are sorted, so what a script builds reaches traces in the same order
//! on every run and every Luau version; empty tables become `{}` unless
//! marked as arrays (`json.array`).

use mlua::serde::DeserializeOptions;
use mlua::{Lua, LuaSerdeExt, Table, Value as LuaValue};
use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// The VM's weak-keyed table: object table → its keys in document order
/// (kept for objects whose keys are not already sorted).
struct KeyOrder(Table);

/// Creates the key-order table (at VM creation).
pub fn register(lua: &Lua) -> mlua::Result<()> {
    let order = lua.create_table()?;
    let meta = lua.create_table()?;
    meta.set("__mode", "k")?;
    order.set_metatable(Some(meta))?;
    lua.set_app_data(KeyOrder(order));
    Ok(())
}

fn key_order(lua: &Lua) -> mlua::Result<Table> {
    lua.app_data_ref::<KeyOrder>()
        .map(|order| order.0.clone())
        .ok_or_else(|| mlua::Error::runtime("the key-order table is not registered"))
}

/// `value` as a Lua value (`null` → `nil`).
pub fn to_lua(lua: &Lua, value: &Value) -> mlua::Result<LuaValue> {
    convert(lua, value)
}

/// A JSON object as a Lua table (its key order remembered).
pub fn object_to_lua(lua: &Lua, object: &Map<String, Value>) -> mlua::Result<Table> {
    object_table(lua, object)
}

fn convert(lua: &Lua, value: &Value) -> mlua::Result<LuaValue> {
    Ok(match value {
        Value::Null => LuaValue::Nil,
        Value::Bool(b) => LuaValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => LuaValue::Integer(i),
            None => LuaValue::Number(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(text) => LuaValue::String(lua.create_string(text)?),
        Value::Array(items) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (index, item) in items.iter().enumerate() {
                table.raw_set(index + 1, convert(lua, item)?)?;
            }
            table.set_metatable(Some(lua.array_metatable()))?;
            LuaValue::Table(table)
        }
        Value::Object(object) => LuaValue::Table(object_table(lua, object)?),
    })
}

fn object_table(lua: &Lua, object: &Map<String, Value>) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(0, object.len())?;
    for (key, value) in object {
        table.raw_set(key.as_str(), convert(lua, value)?)?;
    }
    // Keys already in sorted order need no record (`keys` sorts the rest);
    // others are kept as one JSON string, which costs one allocation where a
    // table of keys costs one per key.
    let sorted = object
        .keys()
        .zip(object.keys().skip(1))
        .all(|(a, b)| a <= b);
    if !sorted {
        let names: Vec<&String> = object.keys().collect();
        let text = serde_json::to_string(&names).map_err(mlua::Error::external)?;
        key_order(lua)?.raw_set(&table, text)?;
    }
    Ok(table)
}

/// The keys of `table`: those it was converted from JSON with, in document
/// order (the ones still present), then any others, sorted (string keys
/// only).
pub fn keys(lua: &Lua, table: &Table) -> mlua::Result<Vec<String>> {
    let mut present = BTreeSet::new();
    for pair in table.pairs::<LuaValue, LuaValue>() {
        if let (LuaValue::String(key), _) = pair? {
            present.insert(key.to_string_lossy());
        }
    }
    let mut out = Vec::with_capacity(present.len());
    if let Some(text) = key_order(lua)?.raw_get::<Option<mlua::LuaString>>(table)? {
        let known: Vec<String> =
            serde_json::from_slice(&text.as_bytes()).map_err(mlua::Error::external)?;
        for key in known {
            if present.remove(&key) {
                out.push(key);
            }
        }
    }
    // What is left is sorted already.
    out.extend(present);
    Ok(out)
}

/// `value` as a Lua value whose tables are all read-only.
pub fn to_lua_frozen(lua: &Lua, value: &Value) -> mlua::Result<LuaValue> {
    let converted = to_lua(lua, value)?;
    if let LuaValue::Table(table) = &converted {
        freeze(table)?;
    }
    Ok(converted)
}

/// Makes `table` and every table reachable from it read-only.
pub fn freeze(table: &Table) -> mlua::Result<()> {
    if table.is_readonly() {
        return Ok(());
    }
    table.set_readonly(true);
    for pair in table.pairs::<LuaValue, LuaValue>() {
        let (key, value) = pair?;
        for inner in [key, value] {
            if let LuaValue::Table(inner) = inner {
                freeze(&inner)?;
            }
        }
    }
    Ok(())
}

/// A Lua value as JSON, keys sorted.
pub fn from_lua(lua: &Lua, value: LuaValue) -> mlua::Result<Value> {
    let options = DeserializeOptions::new()
        .sort_keys(true)
        .deny_unsupported_types(false)
        .encode_empty_tables_as_array(false);
    lua.from_value_with(value, options)
}
