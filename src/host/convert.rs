//! JSON ⇄ Lua conversions for the module host.
//!
//! JSON to Lua: `null` becomes `nil`, arrays carry mlua's array metatable
//! (so an empty one goes back to JSON as `[]`), objects remember the
//! document order of their keys (in a weak-keyed table `json.keys` reads:
//! Kazoo's semantics sometimes follow it, Lua's `pairs` does not), and tables
//! handed to scripts as read-only (node data, documents) are frozen
//! recursively. Lua to JSON: the keys of a table converted from JSON come
//! out in their document order (what `json.keys` gives), all others sorted,
//! so what a script builds reaches traces in the same order on every run
//! and every Luau version; empty tables become `{}` unless marked as arrays
//! (`json.array`).

use mlua::serde::DeserializeOptions;
use mlua::{Lua, LuaSerdeExt, Table, Value as LuaValue};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// The VM's weak-keyed table: object table → its keys in document order
/// (kept for objects whose keys are not already sorted).
struct KeyOrder(Table);

/// Node data converted by this VM (frozen, shared by every invocation of
/// the node), by the address of the node's data, with a copy of the data to
/// check a hit against: once a reloaded flow is freed, another can reuse the
/// address.
#[derive(Default)]
struct SharedObjects(RefCell<BTreeMap<usize, SharedObject>>);

/// A node's data and its converted table.
type SharedObject = (Map<String, Value>, Table);

/// Beyond this many objects the VM's cache of node data starts afresh.
const SHARED_OBJECTS_MAX: usize = 4096;

/// Creates the key-order table and the node data cache (at VM creation).
pub fn register(lua: &Lua) -> mlua::Result<()> {
    let order = lua.create_table()?;
    let meta = lua.create_table()?;
    meta.set("__mode", "k")?;
    order.set_metatable(Some(meta))?;
    lua.set_app_data(KeyOrder(order));
    lua.set_app_data(SharedObjects::default());
    Ok(())
}

/// `object` (a node's data) as a read-only table, converted once per VM.
pub fn shared_object(lua: &Lua, object: &Map<String, Value>) -> mlua::Result<Table> {
    let address = std::ptr::from_ref(object).addr();
    if let Some(cache) = lua.app_data_ref::<SharedObjects>()
        && let Some((copy, table)) = cache.0.borrow().get(&address)
        && same_objects(copy, object)
    {
        return Ok(table.clone());
    }
    let table = frozen_object(lua, object)?;
    if let Some(cache) = lua.app_data_ref::<SharedObjects>() {
        let mut cache = cache.0.borrow_mut();
        if cache.len() >= SHARED_OBJECTS_MAX {
            cache.clear();
        }
        cache.insert(address, (object.clone(), table.clone()));
    }
    Ok(table)
}

/// `object` as a read-only table of its own (not shared).
pub fn frozen_object(lua: &Lua, object: &Map<String, Value>) -> mlua::Result<Table> {
    let table = object_table(lua, object)?;
    freeze(&table)?;
    Ok(table)
}

/// Equal, keys in the same order at every level (`==` ignores order).
fn same_objects(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && same_values(va, vb))
}

fn same_values(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => same_objects(a, b),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_values(x, y))
        }
        _ => a == b,
    }
}

fn key_order(lua: &Lua) -> mlua::Result<Table> {
    lua.app_data_ref::<KeyOrder>()
        .map(|order| order.0.clone())
        .ok_or_else(|| mlua::Error::runtime("the key-order table is not registered"))
}

/// `value` as a Lua value (`null` → `nil`).
pub fn to_lua(lua: &Lua, value: &Value) -> mlua::Result<LuaValue> {
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
                table.raw_set(index + 1, to_lua(lua, item)?)?;
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
        table.raw_set(key.as_str(), to_lua(lua, value)?)?;
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

/// A Lua value as JSON: the keys of a table converted from JSON in their
/// document order (as `keys` gives them), any others sorted.
pub fn from_lua(lua: &Lua, value: &LuaValue) -> mlua::Result<Value> {
    let options = DeserializeOptions::new()
        .sort_keys(true)
        .deny_unsupported_types(false)
        .encode_empty_tables_as_array(false);
    let mut json = lua.from_value_with(value.clone(), options)?;
    restore_order(lua, &key_order(lua)?, value, &mut json)?;
    Ok(json)
}

/// Puts the keys of each object of `json` back in the document order
/// recorded for the table it came from (`json` has sorted keys).
fn restore_order(lua: &Lua, order: &Table, value: &LuaValue, json: &mut Value) -> mlua::Result<()> {
    let LuaValue::Table(table) = value else {
        return Ok(());
    };
    match json {
        Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                if matches!(item, Value::Array(_) | Value::Object(_)) {
                    restore_order(lua, order, &table.raw_get(index + 1)?, item)?;
                }
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if matches!(item, Value::Array(_) | Value::Object(_)) {
                    restore_order(lua, order, &table.raw_get(key.as_str())?, item)?;
                }
            }
            if order.raw_get::<LuaValue>(table)?.is_nil() {
                return Ok(());
            }
            let mut sorted = std::mem::take(map);
            for key in keys(lua, table)? {
                if let Some((key, item)) = sorted.shift_remove_entry(&key) {
                    map.insert(key, item);
                }
            }
            // Keys `keys` does not list (not strings in Lua): as they were.
            map.extend(sorted);
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vm() -> Lua {
        let lua = Lua::new();
        register(&lua).unwrap();
        lua
    }

    fn object(value: &Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn node_data_is_converted_once_and_frozen() {
        let lua = vm();
        let data = object(&json!({"b": 1, "a": {"c": [1, 2]}}));
        let first = shared_object(&lua, &data).unwrap();
        let second = shared_object(&lua, &data).unwrap();
        assert_eq!(first.to_pointer(), second.to_pointer());
        assert!(first.is_readonly());
        assert_eq!(keys(&lua, &first).unwrap(), ["b", "a"]);
    }

    #[test]
    fn other_data_at_the_same_address_is_converted_afresh() {
        // The map stays where it is while its content changes, as a freed
        // flow's address can be reused by another.
        let lua = vm();
        let mut data = object(&json!({"b": 1, "a": 2}));
        let first = shared_object(&lua, &data).unwrap();
        data.insert("b".into(), json!(3));
        let changed = shared_object(&lua, &data).unwrap();
        assert_ne!(first.to_pointer(), changed.to_pointer());
        assert_eq!(changed.get::<i64>("b").unwrap(), 3);
        // Same pairs, another order: a new table, with the new order.
        let mut reordered = Map::new();
        reordered.insert("a".into(), json!(2));
        reordered.insert("b".into(), json!(3));
        data = reordered;
        let third = shared_object(&lua, &data).unwrap();
        assert_ne!(changed.to_pointer(), third.to_pointer());
        assert_eq!(keys(&lua, &third).unwrap(), ["a", "b"]);
        // Same content, another order one level down: a new table too.
        data = object(&json!({"o": {"y": 1, "x": 2}}));
        let nested = shared_object(&lua, &data).unwrap();
        data = object(&json!({"o": {"x": 2, "y": 1}}));
        let renested = shared_object(&lua, &data).unwrap();
        assert_ne!(nested.to_pointer(), renested.to_pointer());
        let inner: Table = renested.get("o").unwrap();
        assert_eq!(keys(&lua, &inner).unwrap(), ["x", "y"]);
    }

    #[test]
    fn tables_from_json_go_back_in_document_order() {
        let lua = vm();
        let text = json!({"z": {"b": 1, "a": 2}, "y": [{"d": 1, "c": 2}], "x": 3});
        let value = to_lua(&lua, &text).unwrap();
        let LuaValue::Table(table) = &value else {
            panic!("not a table");
        };
        table.set("w", 4).unwrap();
        table.set("v", 5).unwrap();
        let built = lua.create_table().unwrap();
        built.set("n", 1).unwrap();
        built.set("m", 2).unwrap();
        table.set("u", built).unwrap();
        let back = from_lua(&lua, &value).unwrap();
        assert_eq!(
            back.to_string(),
            r#"{"z":{"b":1,"a":2},"y":[{"d":1,"c":2}],"x":3,"u":{"m":2,"n":1},"v":5,"w":4}"#
        );
    }

    #[test]
    fn keys_follow_the_document_then_sort_the_rest() {
        let lua = vm();
        let table = match to_lua(&lua, &json!({"z": 1, "y": 2, "x": 3})).unwrap() {
            LuaValue::Table(table) => table,
            other => panic!("not a table: {other:?}"),
        };
        table.set("y", LuaValue::Nil).unwrap();
        table.set("b", 4).unwrap();
        table.set("a", 5).unwrap();
        assert_eq!(keys(&lua, &table).unwrap(), ["z", "x", "a", "b"]);
    }
}
