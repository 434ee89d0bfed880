//! The program's only `unsafe`: reading a Lua function's upvalues, for
//! which mlua has no safe API. The host walks them to freeze what a shared
//! module instance can reach (`instances.rs`).

use mlua::{Function, Lua, MultiValue, Value as LuaValue};

/// The values of `function`'s upvalues, in order (none for a C function
/// without any).
pub(crate) fn upvalues(lua: &Lua, function: &Function) -> mlua::Result<Vec<LuaValue>> {
    // SAFETY: `exec_raw` pushes `function` as the only argument (stack index
    // 1) and runs the closure as a protected C function, whose stack then
    // becomes the results. `lua_getupvalue` only reads: it pushes the n-th
    // upvalue's value and returns its name, or returns NULL and pushes
    // nothing past the last one. `lua_checkstack` makes room for each push
    // first (on failure the loop stops: fewer values, never an overflow).
    // Finally `lua_remove` takes the function off, leaving only upvalues.
    let values: MultiValue = unsafe {
        lua.exec_raw(function, |state| {
            let mut n = 1;
            while mlua::ffi::lua_checkstack(state, 2) != 0
                && !mlua::ffi::lua_getupvalue(state, 1, n).is_null()
            {
                n += 1;
            }
            mlua::ffi::lua_remove(state, 1);
        })
    }?;
    Ok(values.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_upvalues_of_lua_and_c_functions() {
        let lua = Lua::new();
        let f: Function = lua
            .load("local a, b = tostring(1), {} return function() return a, b end")
            .eval()
            .expect("evaluates");
        let values = upvalues(&lua, &f).expect("reads");
        assert_eq!(values.len(), 2);
        assert_eq!(
            values[0]
                .as_string()
                .map(mlua::LuaString::to_string_lossy)
                .as_deref(),
            Some("1")
        );
        assert!(values[1].is_table());
        let print: Function = lua.globals().get("print").expect("print");
        assert!(upvalues(&lua, &print).expect("reads").is_empty());
    }
}
