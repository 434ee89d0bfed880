//! JSON ⇄ Lua conversions for the module host.
//!
//! JSON to Lua: `null` becomes `nil`, arrays carry mlua's array metatable
//! (so an empty one goes back to JSON as `[]`), and tables handed to scripts
//! as read-only (node data, documents) are frozen recursively. Lua to JSON:
//! keys are sorted, so what a script builds reaches traces in the same order
//! on every run and every Luau version; empty tables become `{}` unless
//! marked as arrays (`json.array`).

use mlua::serde::{DeserializeOptions, SerializeOptions};
use mlua::{Lua, LuaSerdeExt, Table, Value as LuaValue};
use serde_json::Value;

/// `value` as a Lua value (`null` → `nil`).
pub fn to_lua(lua: &Lua, value: &Value) -> mlua::Result<LuaValue> {
    let options = SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false)
        .set_array_metatable(true);
    lua.to_value_with(value, options)
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
