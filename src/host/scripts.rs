//! Module scripts: where they come from, and the compiled, checked set a VM
//! runs ([`ModuleSet`]).
//!
//! * Built-in modules and helpers are embedded in the binary (the files of
//!   `scripts/`), so `callflow` works from any directory.
//! * Each `--scripts DIR` adds `DIR/<module>.lua`, helpers in `DIR/lib/`
//!   and metaflow modules in `DIR/metaflows/`; later sources override
//!   earlier ones of the same kind and name.
//! * Metaflow modules are a namespace of their own: the set holds them as
//!   `metaflows/<name>`, a name no callflow node can use.
//!
//! Building a set compiles every script to Luau bytecode (syntax errors with
//! file and line) and smoke-loads every module in a scratch sandbox: its
//! chunk must return a table with a `handle` function; its `schema` and
//! `description` are read there. A module that fails stays in the set as
//! broken, so a call reaching it records the error instead of silently
//! skipping it. This is the only code that reads script files.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use mlua::chunk::Compiler;
use serde_json::Value;

use super::ModuleHost;
use super::bytecode::Analysis;
use crate::limits::Limits;
use crate::model::{Code, Diagnostic};

/// Built-in modules and helpers: (path under `scripts/`, source). Generated
/// by `build.rs` from the files of `scripts/`.
pub const BUILTIN: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/builtin_scripts.rs"));

/// Where built-in scripts say they come from in errors.
pub const BUILTIN_PREFIX: &str = "builtin/";

/// Whether a script is a callflow module, a helper or a metaflow module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Module,
    Lib,
    Metaflow,
}

/// The prefix of metaflow modules' names in a [`ModuleSet`].
pub const METAFLOW_PREFIX: &str = "metaflows/";

/// One script's source text.
#[derive(Debug, Clone)]
pub struct ScriptSource {
    pub kind: Kind,
    /// Module name (file stem), helper name (`require` name), or
    /// `metaflows/<file stem>` for a metaflow module.
    pub name: String,
    /// The path shown in errors.
    pub file: String,
    pub text: String,
}

/// A compiled script.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub name: String,
    pub file: String,
    pub bytecode: Arc<[u8]>,
    /// Which of its functions assign variables outside themselves (from a
    /// second compile with variable names), or why that is unknown.
    pub writes: Arc<Result<Analysis, String>>,
}

/// A module ready to run.
#[derive(Debug, Clone)]
pub struct ModuleScript {
    pub script: Compiled,
    /// The `schema` the module declares for its node data.
    pub schema: Option<Value>,
    pub description: Option<String>,
}

/// A script that does not compile or load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptError {
    pub file: String,
    pub line: Option<u32>,
    pub message: String,
}

/// A module of the set: ready, or broken with the reason.
#[derive(Debug, Clone)]
pub enum Loaded {
    Ready(ModuleScript),
    Broken(ScriptError),
}

/// Every module and helper a VM can run, immutable once built.
#[derive(Debug, Clone, Default)]
pub struct ModuleSet {
    pub generation: u64,
    modules: BTreeMap<String, Loaded>,
    libs: BTreeMap<String, Compiled>,
}

/// Whether `name` can name a module or helper.
pub fn is_script_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 64
        && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The built-in scripts as sources.
pub fn builtin_sources() -> Vec<ScriptSource> {
    BUILTIN
        .iter()
        .filter_map(|(path, text)| {
            let (kind, stem) = if let Some(rest) = path.strip_prefix("lib/") {
                (Kind::Lib, rest)
            } else if path.starts_with(METAFLOW_PREFIX) {
                (Kind::Metaflow, *path)
            } else {
                (Kind::Module, *path)
            };
            Some(ScriptSource {
                kind,
                name: stem.strip_suffix(".lua")?.to_owned(),
                file: format!("{BUILTIN_PREFIX}{path}"),
                text: (*text).to_owned(),
            })
        })
        .collect()
}

/// Reads the scripts of a `--scripts` directory: `<name>.lua` modules,
/// `lib/<name>.lua` helpers and `metaflows/<name>.lua` metaflow modules. Other files are left alone (editor settings,
/// type definitions, docs); badly named `.lua` files get a warning.
pub fn read_dir(dir: &Path) -> Result<(Vec<ScriptSource>, Vec<Diagnostic>), std::io::Error> {
    let mut sources = Vec::new();
    let mut diags = Vec::new();
    read_into(dir, Kind::Module, &mut sources, &mut diags)?;
    let lib = dir.join("lib");
    if lib.is_dir() {
        read_into(&lib, Kind::Lib, &mut sources, &mut diags)?;
    }
    let metaflows = dir.join("metaflows");
    if metaflows.is_dir() {
        read_into(&metaflows, Kind::Metaflow, &mut sources, &mut diags)?;
    }
    Ok((sources, diags))
}

fn read_into(
    dir: &Path,
    kind: Kind,
    sources: &mut Vec<ScriptSource>,
    diags: &mut Vec<Diagnostic>,
) -> Result<(), std::io::Error> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let Some(stem) = name.strip_suffix(".lua") else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let shown = path.display().to_string();
        let root = crate::store::files::canonical_root(dir);
        match crate::store::files::classify(&path, &root) {
            crate::store::files::Kind::File => {}
            crate::store::files::Kind::Folder => continue,
            crate::store::files::Kind::Refused(why) => {
                diags.push(
                    Diagnostic::warning(Code::IgnoredFile, "", format!("ignored: {why}"))
                        .in_file(&shown),
                );
                continue;
            }
        }
        if !is_script_name(stem) {
            diags.push(
                Diagnostic::warning(
                    Code::IgnoredFile,
                    "",
                    "ignored: script names are lower-case letters, digits and '_', starting with a letter",
                )
                .in_file(&shown),
            );
            continue;
        }
        let name = match kind {
            Kind::Metaflow => format!("{METAFLOW_PREFIX}{stem}"),
            Kind::Module | Kind::Lib => stem.to_owned(),
        };
        let limit = crate::limits::DocumentLimits::DEFAULT.max_document_bytes;
        let read = crate::store::files::read_limited(&path, &root, limit).and_then(|bytes| {
            String::from_utf8(bytes).map_err(|_| {
                crate::store::files::ReadError::Refused("the file is not UTF-8 text".to_owned())
            })
        });
        match read {
            Ok(text) => sources.push(ScriptSource {
                kind,
                name,
                file: shown,
                text,
            }),
            Err(err) => {
                diags.push(Diagnostic::error(Code::Io, "", err.to_string()).in_file(&shown));
            }
        }
    }
    Ok(())
}

/// Compiles Luau source to bytecode; errors carry the line.
pub fn compile(source: &ScriptSource) -> Result<Compiled, ScriptError> {
    let bytecode = bytecode(&source.text).map_err(|(line, message)| ScriptError {
        file: source.file.clone(),
        line,
        message,
    })?;
    // Level 2 adds variable names, for the host's refusal of shared
    // state (see `bytecode.rs`); the VM runs the level-1 bytecode,
    // so error messages stay as they were.
    let writes = Compiler::new()
        .set_debug_level(2)
        .compile(&source.text)
        .map_err(|e| e.to_string())
        .and_then(|named| super::bytecode::analyze(&named));
    Ok(Compiled {
        name: source.name.clone(),
        file: source.file.clone(),
        bytecode: bytecode.into(),
        writes: Arc::new(writes),
    })
}

/// Luau source compiled to the bytecode the VM runs (debug level 1: line
/// numbers for error messages), or the line and message of its syntax
/// error (`syntax error: ...`). Modules and function documents
/// (`host::functions`) compile through it.
pub(crate) fn bytecode(text: &str) -> Result<Vec<u8>, (Option<u32>, String)> {
    Compiler::new()
        .set_debug_level(1)
        .compile(text)
        .map_err(|err| {
            let text = match &err {
                mlua::Error::SyntaxError { message, .. } => message.clone(),
                other => other.to_string(),
            };
            // Luau reports "<line>: <message>".
            match text.split_once(": ") {
                Some((line, rest)) if line.parse::<u32>().is_ok() => {
                    (line.parse().ok(), format!("syntax error: {rest}"))
                }
                _ => (None, format!("syntax error: {text}")),
            }
        })
}

impl ScriptError {
    /// The error as a `script` diagnostic.
    pub fn to_diagnostic(&self) -> Diagnostic {
        let diag = Diagnostic::error(Code::Script, "", self.message.clone()).in_file(&self.file);
        match self.line {
            Some(line) => diag.at_line(line as usize),
            None => diag,
        }
    }
}

impl ModuleSet {
    /// Compiles and checks `sources` (later ones override earlier ones of
    /// the same kind and name). Returns the set and every problem found.
    pub fn build(sources: Vec<ScriptSource>, generation: u64) -> (Self, Vec<Diagnostic>) {
        let mut by_name: BTreeMap<(bool, String), ScriptSource> = BTreeMap::new();
        for source in sources {
            // Metaflow names carry their prefix: they share the modules' map
            // without ever meeting a callflow module's name.
            by_name.insert((source.kind == Kind::Lib, source.name.clone()), source);
        }
        let mut set = ModuleSet {
            generation,
            ..ModuleSet::default()
        };
        let mut diags = Vec::new();
        for ((is_lib, name), source) in by_name {
            match (compile(&source), is_lib) {
                (Ok(compiled), true) => {
                    set.libs.insert(name, compiled);
                }
                (Ok(compiled), false) => {
                    set.modules.insert(
                        name,
                        Loaded::Ready(ModuleScript {
                            script: compiled,
                            schema: None,
                            description: None,
                        }),
                    );
                }
                (Err(err), is_lib) => {
                    diags.push(err.to_diagnostic());
                    if !is_lib {
                        set.modules.insert(name, Loaded::Broken(err));
                    }
                }
            }
        }
        set.smoke_load(&mut diags);
        (set, diags)
    }

    /// The built-in scripts plus those of `dirs`, in that order of precedence.
    pub fn load(dirs: &[impl AsRef<Path>], generation: u64) -> (Self, Vec<Diagnostic>) {
        let mut sources = builtin_sources();
        let mut diags = Vec::new();
        for dir in dirs {
            let dir = dir.as_ref();
            match read_dir(dir) {
                Ok((found, problems)) => {
                    sources.extend(found);
                    diags.extend(problems);
                }
                Err(err) => diags.push(
                    Diagnostic::error(
                        Code::Io,
                        "",
                        format!("cannot read the scripts directory: {err}"),
                    )
                    .in_file(&dir.display().to_string()),
                ),
            }
        }
        let (set, more) = Self::build(sources, generation);
        diags.extend(more);
        (set, diags)
    }

    /// Runs each module's chunk in a scratch sandbox; records its schema and
    /// description, or marks it broken.
    fn smoke_load(&mut self, diags: &mut Vec<Diagnostic>) {
        let snapshot = Arc::new(self.clone());
        let host = match ModuleHost::new(Arc::clone(&snapshot), Limits::default()) {
            Ok(host) => host,
            Err(err) => {
                diags.push(
                    Diagnostic::error(Code::Script, "", format!("cannot start the Lua VM: {err}"))
                        .in_file("scripts"),
                );
                return;
            }
        };
        for (name, loaded) in &mut self.modules {
            let Loaded::Ready(module) = loaded else {
                continue;
            };
            match host.inspect(name) {
                Ok((schema, description)) => {
                    module.schema = schema;
                    module.description = description;
                }
                Err(err) => {
                    diags.push(err.to_diagnostic());
                    *loaded = Loaded::Broken(err);
                }
            }
        }
    }

    /// A callflow module (never a metaflow module).
    pub fn module(&self, name: &str) -> Option<&Loaded> {
        if name.contains('/') {
            return None;
        }
        self.modules.get(name)
    }

    /// A metaflow module, by its name in metaflow nodes (`transfer`).
    pub fn metaflow(&self, name: &str) -> Option<&Loaded> {
        if name.contains('/') {
            return None;
        }
        self.modules.get(&format!("{METAFLOW_PREFIX}{name}"))
    }

    /// A module of either kind by its name in the set (`metaflows/<name>`
    /// for metaflow modules).
    pub(crate) fn script(&self, name: &str) -> Option<&Loaded> {
        self.modules.get(name)
    }

    /// The script (module or helper) whose file is `file`.
    pub(crate) fn script_by_file(&self, file: &str) -> Option<&Compiled> {
        self.modules
            .values()
            .filter_map(|loaded| match loaded {
                Loaded::Ready(module) => Some(&module.script),
                Loaded::Broken(_) => None,
            })
            .chain(self.libs.values())
            .find(|script| script.file == file)
    }

    pub fn lib(&self, name: &str) -> Option<&Compiled> {
        self.libs.get(name)
    }

    /// Callflow module names, sorted.
    pub fn module_names(&self) -> impl Iterator<Item = &str> {
        self.modules
            .keys()
            .map(String::as_str)
            .filter(|name| !name.contains('/'))
    }

    /// Metaflow module names (without their prefix), sorted.
    pub fn metaflow_names(&self) -> impl Iterator<Item = &str> {
        self.modules
            .keys()
            .filter_map(|name| name.strip_prefix(METAFLOW_PREFIX))
    }
}

impl crate::catalog::Modules for ModuleSet {
    fn provides(&self, name: &str) -> bool {
        self.module(name).is_some()
    }

    fn schema(&self, name: &str) -> Option<&Value> {
        match self.module(name)? {
            Loaded::Ready(module) => module.schema.as_ref(),
            Loaded::Broken(_) => None,
        }
    }

    fn provides_metaflow(&self, name: &str) -> bool {
        self.metaflow(name).is_some()
    }

    fn metaflow_schema(&self, name: &str) -> Option<&Value> {
        match self.metaflow(name)? {
            Loaded::Ready(module) => module.schema.as_ref(),
            Loaded::Broken(_) => None,
        }
    }

    fn compile_function(&self, source: &str) -> Result<(), (Option<u32>, String)> {
        bytecode(source).map(drop)
    }
}
