//! Function documents: Kazoo's `cf_function`, with Luau instead of
//! JavaScript. A document `flows/<account>/functions/<id>.json` holds
//! `{"name": ..., "language": "luau", "source": "<Luau chunk>"}`; the chunk
//! returns a `function(call, data)`, which returns a flow (or nil).
//!
//! A function runs in the sandbox module scripts run in, inside the
//! invocation of the module that asked (`call:run_function`, `api.rs`):
//! the same VM, libraries and read-only environment as module instances
//! (`instances::SharedEnv`), and the same interrupt and memory budgets, which
//! it spends for that module. Unlike a module's, its chunk runs again at
//! every run and nothing of it is kept (only its bytecode, by source), so
//! there is nothing to freeze: one call's run cannot reach another's.
//! Compiling goes through `scripts::bytecode`, the compiler modules use, and
//! `callflow check` compiles every function document the same way
//! (`catalog::Modules::compile_function`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use mlua::{Function, Lua, Value as LuaValue};
use serde_json::Value;

use super::instances::SharedEnv;
use crate::model::Object;

/// The document type (folder) of function documents.
pub const DOC_TYPE: &str = "functions";

/// The one language a function document may name (the default).
pub const LANGUAGE: &str = "luau";

/// The name a function document's chunk runs under (in its errors and
/// tracebacks): its path relative to the flows directory.
pub(crate) fn chunk_name(account: &str, id: &str) -> String {
    format!("{account}/{DOC_TYPE}/{id}.json")
}

/// Whether `file`, a chunk name an error names, is a function document's.
pub(crate) fn is_function_file(file: &str) -> bool {
    let path = std::path::Path::new(file);
    path.extension().is_some_and(|ext| ext == "json")
        && path
            .parent()
            .and_then(std::path::Path::file_name)
            .is_some_and(|dir| dir == DOC_TYPE)
}

/// The Luau source of a function document, or why it has none to run (a
/// `language` other than `luau`, no `source` string).
pub fn source_of(body: &Object) -> Result<&str, String> {
    match body.get("language") {
        None => {}
        Some(Value::String(language)) if language == LANGUAGE => {}
        Some(other) => {
            return Err(format!(
                "language {other} is not supported (only \"{LANGUAGE}\")"
            ));
        }
    }
    match body.get("source") {
        Some(Value::String(source)) => Ok(source),
        _ => Err("the document has no `source` string".to_owned()),
    }
}

/// Beyond this many sources the VM's bytecode cache starts afresh.
const CACHE_MAX: usize = 256;

/// Compiled function sources, by chunk name (app data of the VM): the
/// source they came from and its bytecode or its syntax error.
#[derive(Default)]
pub(crate) struct Compiled(RefCell<BTreeMap<String, (String, Compilation)>>);

type Compilation = Result<Arc<[u8]>, (Option<u32>, String)>;

/// The bytecode of `source`, compiled once per VM for each version of a
/// document.
fn compiled(lua: &Lua, file: &str, source: &str) -> Compilation {
    if let Some(cache) = lua.app_data_ref::<Compiled>()
        && let Some((cached, result)) = cache.0.borrow().get(file)
        && cached == source
    {
        return result.clone();
    }
    let result = super::scripts::bytecode(source).map(Arc::from);
    if let Some(cache) = lua.app_data_ref::<Compiled>() {
        let mut cache = cache.0.borrow_mut();
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(file.to_owned(), (source.to_owned(), result.clone()));
    }
    result
}

/// The function the chunk of `source` (named `file`) returns: compiled (or
/// its syntax error raised at `file:line`), its chunk run now in the shared
/// read-only environment, under the running invocation's budgets.
pub(crate) fn load(lua: &Lua, file: &str, source: &str) -> mlua::Result<Function> {
    let bytecode = compiled(lua, file, source).map_err(|(line, message)| {
        mlua::Error::runtime(match line {
            Some(line) => format!("{file}:{line}: {message}"),
            None => format!("{file}: {message}"),
        })
    })?;
    let env = lua
        .app_data_ref::<SharedEnv>()
        .map(|env| env.0.clone())
        .ok_or_else(|| mlua::Error::runtime("the VM has no shared environment"))?;
    let chunk = lua
        .load(&*bytecode)
        .set_name(format!("@{file}"))
        .set_environment(env)
        .into_function()?;
    match chunk.call::<LuaValue>(())? {
        LuaValue::Function(function) => Ok(function),
        other => Err(mlua::Error::runtime(format!(
            "{file}: the source returns {}, not a function(call, data)",
            other.type_name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_files_are_told_from_other_json() {
        assert!(is_function_file("acme/functions/vip.json"));
        assert!(is_function_file(&chunk_name("acme", "vip")));
        assert!(!is_function_file("acme/callflows/vip.json"));
        assert!(!is_function_file("functions.lua"));
    }

    #[test]
    fn only_luau_sources_run() {
        let object = |text: &str| serde_json::from_str::<Object>(text).unwrap();
        assert_eq!(
            source_of(&object(r#"{"source": "return nil"}"#)),
            Ok("return nil")
        );
        assert_eq!(
            source_of(&object(r#"{"language": "luau", "source": "x"}"#)),
            Ok("x")
        );
        assert!(
            source_of(&object(r#"{"language": "javascript", "source": "x"}"#))
                .unwrap_err()
                .contains("\"javascript\" is not supported")
        );
        assert!(source_of(&object(r#"{"name": "x"}"#)).is_err());
    }
}
