//! What a script's Luau bytecode says about the variables its functions
//! write: the one fact the host needs to share a module's instance between
//! calls safely.
//!
//! A module's chunk runs once per VM and generation; calls then run the
//! functions it left behind. A function keeps state between calls only
//! through a variable declared outside it that it (or a function nested in
//! it) assigns: an *upvalue* written with `SETUPVAL`. Tables are frozen by
//! the host; upvalues cannot be, so the host refuses a shared function that
//! writes one of its own upvalues, and this module finds which do.
//!
//! For every function prototype, [`Analysis`] records the upvalues it
//! writes, directly or through the functions nested in it (a nested
//! function's `CAPTURE UPVAL` passes its parent's upvalue down, so a write
//! there writes the parent's). A write to a local of the function itself
//! (captured by reference) is per run, and fine. The format is Luau's
//! (`lvmload.cpp`, versions 3 to 12); what this reader does not know is an
//! error, and the host then refuses to share the script rather than guess.

use std::collections::BTreeMap;

/// Opcodes (Luau's `LuauOpcode`) this reader acts on.
const LOP_SETUPVAL: u8 = 10;
const LOP_NEWCLOSURE: u8 = 19;
const LOP_DUPCLOSURE: u8 = 64;
const LOP_CAPTURE: u8 = 70;
/// `LCT_UPVAL`: a nested function captures its parent's upvalue.
const LCT_UPVAL: u8 = 2;
const LBC_CONSTANT_CLOSURE: u8 = 6;

/// One upvalue a function writes, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The variable's name (bytecode of debug level 2 keeps it).
    pub name: Option<String>,
    /// The line of the assignment.
    pub line: Option<u32>,
}

/// One function of the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// The line its definition starts on (what `debug.info(f, "l")` says).
    pub line_defined: u32,
    pub name: Option<String>,
    /// Its upvalues that it or a function nested in it assigns.
    pub writes: Vec<Write>,
}

/// Every function of a script, by the line it starts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Analysis {
    functions: BTreeMap<u32, Vec<Function>>,
}

impl Analysis {
    /// The upvalue writes of the functions defined on `line` (several
    /// functions can start on one line: all of theirs).
    pub fn writes_at(&self, line: u32) -> impl Iterator<Item = (&Function, &Write)> {
        self.functions
            .get(&line)
            .into_iter()
            .flatten()
            .flat_map(|function| function.writes.iter().map(move |write| (function, write)))
    }
}

/// A prototype as read.
struct Proto {
    code: Vec<u32>,
    /// Child prototypes (indices into the script's list), for `NEWCLOSURE`.
    children: Vec<usize>,
    /// Closure constants: constant index → prototype, for `DUPCLOSURE`.
    closures: BTreeMap<u32, usize>,
    line_defined: u32,
    name: Option<String>,
    /// Line of each instruction, when the bytecode has line info.
    lines: Option<Vec<u32>>,
    upvalue_names: Vec<Option<String>>,
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let byte = *self
            .data
            .get(self.at)
            .ok_or_else(|| format!("bytecode ends early (at byte {})", self.at))?;
        self.at += 1;
        Ok(byte)
    }

    fn skip(&mut self, n: usize) -> Result<(), String> {
        if self.data.len() - self.at < n {
            return Err(format!("bytecode ends early (at byte {})", self.at));
        }
        self.at += n;
        Ok(())
    }

    fn u32(&mut self) -> Result<u32, String> {
        let mut bytes = [0u8; 4];
        for byte in &mut bytes {
            *byte = self.byte()?;
        }
        Ok(u32::from_le_bytes(bytes))
    }

    fn varint(&mut self) -> Result<u32, String> {
        let mut result: u64 = 0;
        let mut shift = 0;
        loop {
            let byte = self.byte()?;
            result |= u64::from(byte & 127) << shift;
            if byte & 128 == 0 {
                break;
            }
            shift += 7;
            if shift > 35 {
                return Err("a varint is too long".to_owned());
            }
        }
        u32::try_from(result).map_err(|_| "a varint is too large".to_owned())
    }

    fn varint64(&mut self) -> Result<(), String> {
        for _ in 0..10 {
            if self.byte()? & 128 == 0 {
                return Ok(());
            }
        }
        Err("a varint is too long".to_owned())
    }

    fn count(&mut self) -> Result<usize, String> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| "a count is too large".to_owned())?;
        // Every counted item takes at least a byte: a larger count is corrupt.
        if n > self.data.len() {
            return Err(format!("a count of {n} is past the bytecode's end"));
        }
        Ok(n)
    }

    fn string(&mut self, strings: &[String]) -> Result<Option<String>, String> {
        let id = self.count()?;
        if id == 0 {
            return Ok(None);
        }
        strings
            .get(id - 1)
            .cloned()
            .map(Some)
            .ok_or_else(|| format!("string {id} is not in the table"))
    }
}

/// Reads `bytecode` (as `mlua::Compiler` makes it) into its functions' writes.
pub(crate) fn analyze(bytecode: &[u8]) -> Result<Analysis, String> {
    let mut r = Reader {
        data: bytecode,
        at: 0,
    };
    let version = r.byte()?;
    if version == 0 {
        return Err("the bytecode is a compile error".to_owned());
    }
    if !(3..=12).contains(&version) {
        return Err(format!("bytecode version {version} is not supported"));
    }
    let types_version = if version >= 4 { r.byte()? } else { 0 };
    let strings = (0..r.count()?)
        .map(|_| {
            let len = r.count()?;
            let start = r.at;
            r.skip(len)?;
            Ok(String::from_utf8_lossy(&bytecode[start..start + len]).into_owned())
        })
        .collect::<Result<Vec<_>, String>>()?;
    if types_version == 3 {
        // Userdata type names: (index, name)*, ended by index 0.
        while r.byte()? != 0 {
            r.string(&strings)?;
        }
    }
    let mut protos = Vec::new();
    for _ in 0..r.count()? {
        protos.push(read_proto(&mut r, version, types_version, &strings)?);
    }
    let main = r.count()?;
    if main >= protos.len() {
        return Err("the main function is not in the bytecode".to_owned());
    }
    let mut writes: Vec<Option<Vec<(u8, Write)>>> = vec![None; protos.len()];
    let mut analysis = Analysis::default();
    for index in 0..protos.len() {
        let found = proto_writes(&protos, index, &mut writes, 0)?;
        let proto = &protos[index];
        analysis
            .functions
            .entry(proto.line_defined)
            .or_default()
            .push(Function {
                line_defined: proto.line_defined,
                name: proto.name.clone(),
                writes: found.into_iter().map(|(_, write)| write).collect(),
            });
    }
    Ok(analysis)
}

fn read_proto(
    r: &mut Reader<'_>,
    version: u8,
    types_version: u8,
    strings: &[String],
) -> Result<Proto, String> {
    let size = if version >= 12 {
        Some(r.count()?)
    } else {
        None
    };
    let start = r.at;
    r.skip(2)?; // maxstacksize, numparams
    let nups = r.byte()?;
    r.skip(1)?; // is_vararg
    let mut flags = 0;
    if version >= 4 {
        flags = r.byte()?;
        if (1..=3).contains(&types_version) {
            let typesize = r.count()?;
            r.skip(typesize)?;
        }
    }
    let code = (0..r.count()?)
        .map(|_| r.u32())
        .collect::<Result<Vec<_>, String>>()?;
    let closures = read_constants(r, strings)?;
    let children = (0..r.count()?)
        .map(|_| r.count())
        .collect::<Result<Vec<_>, String>>()?;
    let line_defined = r.varint()?;
    let name = r.string(strings)?;
    let lines = read_lines(r, code.len())?;
    let mut upvalue_names = vec![None; usize::from(nups)];
    if r.byte()? != 0 {
        for _ in 0..r.count()? {
            r.string(strings)?;
            r.varint()?;
            r.varint()?;
            r.skip(1)?;
        }
        let count = r.count()?;
        for index in 0..count {
            let name = r.string(strings)?;
            if let Some(slot) = upvalue_names.get_mut(index) {
                *slot = name;
            }
        }
    }
    if version >= 11 {
        for _ in 0..r.count()? {
            r.skip(1)?;
            r.varint()?;
        }
    }
    if version >= 12 {
        // LPF_INLINABLE: a cost follows; then skip whatever else is there.
        if flags & (1 << 3) != 0 {
            r.varint64()?;
        }
        if let Some(size) = size {
            r.at = start + size;
            if r.at > r.data.len() {
                return Err("a function's size is past the bytecode's end".to_owned());
            }
        }
    }
    Ok(Proto {
        code,
        children,
        closures,
        line_defined,
        name,
        lines,
        upvalue_names,
    })
}

/// Reads a prototype's constants; returns its closure constants
/// (constant index → prototype).
fn read_constants(r: &mut Reader<'_>, strings: &[String]) -> Result<BTreeMap<u32, usize>, String> {
    let mut closures = BTreeMap::new();
    for k in 0..r.count()? {
        match r.byte()? {
            0 => {}                        // nil
            1 => r.skip(1)?,               // boolean
            2 => r.skip(8)?,               // number
            3 => drop(r.string(strings)?), // string
            4 => r.skip(4)?,               // import
            7 => r.skip(16)?,              // vector (floats)
            11 => r.skip(32)?,             // vector (doubles)
            9 => {
                r.skip(1)?; // sign
                r.varint64()?;
            }
            5 => {
                for _ in 0..r.count()? {
                    r.varint()?;
                }
            }
            8 => {
                for _ in 0..r.count()? {
                    r.varint()?;
                    r.skip(4)?;
                }
            }
            LBC_CONSTANT_CLOSURE => {
                let fid = r.count()?;
                closures.insert(u32::try_from(k).unwrap_or(u32::MAX), fid);
            }
            10 => {
                r.varint()?; // class name
                let members = u64::from(r.varint()?) + u64::from(r.varint()?);
                for _ in 0..members {
                    r.varint()?;
                }
            }
            kind => return Err(format!("constant kind {kind} is not supported")),
        }
    }
    Ok(closures)
}

/// Reads a prototype's line info: the line of each of its `count`
/// instructions, if the bytecode has them.
fn read_lines(r: &mut Reader<'_>, count: usize) -> Result<Option<Vec<u32>>, String> {
    Ok(if r.byte()? != 0 {
        let gap_log2 = r.byte()?;
        if gap_log2 > 31 {
            return Err("line info is corrupt".to_owned());
        }
        let mut offsets = Vec::with_capacity(count);
        let mut last: u8 = 0;
        for _ in 0..count {
            last = last.wrapping_add(r.byte()?);
            offsets.push(last);
        }
        let intervals = if count == 0 {
            0
        } else {
            ((count - 1) >> gap_log2) + 1
        };
        let mut absolute = Vec::with_capacity(intervals);
        let mut line: i64 = 0;
        for _ in 0..intervals {
            line += i64::from(r.u32()?.cast_signed());
            absolute.push(line);
        }
        Some(
            offsets
                .iter()
                .enumerate()
                .map(|(pc, offset)| {
                    let base = absolute.get(pc >> gap_log2).copied().unwrap_or(0);
                    u32::try_from(base + i64::from(*offset)).unwrap_or(0)
                })
                .collect(),
        )
    } else {
        None
    })
}

/// Luau's `getOpLength`: which opcodes take an auxiliary word.
fn op_length(op: u8) -> usize {
    match op {
        7
        | 8
        | 12
        | 15
        | 16
        | 20
        | 27..=32
        | 53
        | 55
        | 58
        | 66
        | 74
        | 75
        | 60
        | 77..=80
        | 83..=88
        | 90 => 2,
        _ => 1,
    }
}

/// The upvalues (by index) `protos[index]` writes, itself or through the
/// functions nested in it, memoized in `memo`.
fn proto_writes(
    protos: &[Proto],
    index: usize,
    memo: &mut Vec<Option<Vec<(u8, Write)>>>,
    depth: usize,
) -> Result<Vec<(u8, Write)>, String> {
    if let Some(Some(done)) = memo.get(index) {
        return Ok(done.clone());
    }
    if depth > 200 {
        return Err("functions nest too deeply".to_owned());
    }
    let proto = protos
        .get(index)
        .ok_or_else(|| format!("function {index} is not in the bytecode"))?;
    let line_at = |pc: usize| {
        proto
            .lines
            .as_ref()
            .and_then(|lines| lines.get(pc).copied())
    };
    let mut found: BTreeMap<u8, Write> = BTreeMap::new();
    let note = |upvalue: u8, line: Option<u32>, found: &mut BTreeMap<u8, Write>| {
        found.entry(upvalue).or_insert_with(|| Write {
            name: proto
                .upvalue_names
                .get(usize::from(upvalue))
                .cloned()
                .flatten(),
            line,
        });
    };
    let mut pc = 0;
    while pc < proto.code.len() {
        let insn = proto.code[pc];
        let [op, _, b, _] = insn.to_le_bytes();
        let d = (insn.cast_signed() >> 16).cast_unsigned();
        match op {
            LOP_SETUPVAL => note(b, line_at(pc), &mut found),
            LOP_NEWCLOSURE | LOP_DUPCLOSURE => {
                let child = if op == LOP_NEWCLOSURE {
                    usize::try_from(d)
                        .ok()
                        .and_then(|d| proto.children.get(d).copied())
                } else {
                    proto.closures.get(&d).copied()
                };
                let child = child.ok_or_else(|| {
                    format!("a closure at instruction {pc} names no known function")
                })?;
                let child_writes = proto_writes(protos, child, memo, depth + 1)?;
                // The CAPTUREs that follow give the child's upvalues in order.
                for (upvalue, write) in child_writes {
                    let capture = proto
                        .code
                        .get(pc + 1 + usize::from(upvalue))
                        .copied()
                        .ok_or_else(|| format!("a closure at instruction {pc} lacks captures"))?;
                    let [cop, kind, source, _] = capture.to_le_bytes();
                    if cop != LOP_CAPTURE {
                        return Err(format!("a closure at instruction {pc} lacks captures"));
                    }
                    if kind == LCT_UPVAL {
                        let line = write.line.or_else(|| line_at(pc));
                        note(source, line, &mut found);
                        // The name is the parent's for that upvalue, if any.
                        if let Some(entry) = found.get_mut(&source)
                            && entry.name.is_none()
                        {
                            entry.name.clone_from(&write.name);
                        }
                    }
                }
            }
            _ => {}
        }
        pc += op_length(op);
    }
    let found: Vec<(u8, Write)> = found.into_iter().collect();
    if let Some(slot) = memo.get_mut(index) {
        *slot = Some(found.clone());
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlua::chunk::Compiler;

    fn compile(source: &str) -> Vec<u8> {
        Compiler::new()
            .set_debug_level(2)
            .compile(source)
            .expect("compiles")
    }

    fn writes(source: &str) -> Vec<(u32, Option<String>, Option<u32>)> {
        let analysis = analyze(&compile(source)).expect("reads");
        analysis
            .functions
            .values()
            .flatten()
            .flat_map(|f| {
                f.writes
                    .iter()
                    .map(|w| (f.line_defined, w.name.clone(), w.line))
            })
            .collect()
    }

    #[test]
    fn a_function_assigning_a_variable_outside_it_is_found_with_the_line() {
        let source = "local count = 0\nlocal M = {}\nfunction M.handle(call)\n  count = count + 1\nend\nreturn M\n";
        assert_eq!(writes(source), vec![(3, Some("count".into()), Some(4))]);
    }

    #[test]
    fn a_write_through_a_nested_function_counts_for_the_outer_one() {
        let source = "local n = 0\nlocal M = {}\nfunction M.handle(call)\n  local function bump()\n    n = n + 1\n  end\n  bump()\nend\nreturn M\n";
        let found = writes(source);
        assert!(found.contains(&(3, Some("n".into()), Some(5))), "{found:?}");
        assert!(found.contains(&(4, Some("n".into()), Some(5))), "{found:?}");
    }

    #[test]
    fn a_function_writing_its_own_locals_from_closures_writes_nothing_shared() {
        let source = "local M = {}\nfunction M.handle(call)\n  local seen = 0\n  local function bump() seen = seen + 1 end\n  bump()\n  return tostring(seen)\nend\nreturn M\n";
        let found = writes(source);
        // bump writes its upvalue (handle's local), handle writes nothing.
        assert_eq!(found, vec![(4, Some("seen".into()), Some(4))]);
    }

    #[test]
    fn reading_outer_variables_and_mutating_tables_are_not_writes() {
        let source = "local limit = 3\nlocal cache = {}\nlocal M = {}\nfunction M.handle(call)\n  cache.x = limit\n  return cache.x\nend\nreturn M\n";
        assert_eq!(writes(source), Vec::new());
    }

    #[test]
    fn every_builtin_script_is_readable() {
        for (name, text) in crate::host::scripts::BUILTIN {
            let bytecode = compile(text);
            analyze(&bytecode).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn corrupt_bytecode_is_an_error_not_a_panic() {
        let bytecode = compile("local a = 1\nreturn function() a = 2 end\n");
        for cut in 0..bytecode.len() {
            let _ = analyze(&bytecode[..cut]);
        }
        let mut flipped = bytecode.clone();
        for i in 0..flipped.len() {
            flipped[i] ^= 0xff;
            let _ = analyze(&flipped);
            flipped[i] ^= 0xff;
        }
    }
}
