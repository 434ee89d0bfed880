//! Where values start in a JSON text: the 1-based line of every value,
//! by JSON Pointer, so coverage can name lines of a callflow file (lcov).
//!
//! A small scanner over text that `serde_json` already accepted: it follows
//! the same grammar (objects, arrays, strings with escapes, scalars), decodes
//! keys with `serde_json` itself, and gives up (returning what it found so
//! far) on anything malformed rather than guessing. When a key appears twice
//! in an object, the later value wins, as it does for `serde_json`.

use std::collections::BTreeMap;

use crate::model::diagnostic::pointer_push;

/// The line (1-based) where each value of `text` starts, by JSON Pointer
/// (`""` is the whole document).
pub fn value_lines(text: &str) -> BTreeMap<String, u32> {
    let mut scanner = Scanner {
        bytes: text.as_bytes(),
        text,
        pos: 0,
        line: 1,
        out: BTreeMap::new(),
    };
    // A malformed text keeps the lines found before the problem.
    let _ = scanner.value("");
    scanner.out
}

struct Scanner<'a> {
    bytes: &'a [u8],
    text: &'a str,
    pos: usize,
    line: u32,
    out: BTreeMap<String, u32>,
}

impl Scanner<'_> {
    fn value(&mut self, pointer: &str) -> Option<()> {
        self.whitespace();
        self.out.insert(pointer.to_owned(), self.line);
        match self.peek()? {
            b'{' => {
                self.pos += 1;
                self.whitespace();
                if self.eat(b'}') {
                    return Some(());
                }
                loop {
                    self.whitespace();
                    let key = self.string()?;
                    self.whitespace();
                    if !self.eat(b':') {
                        return None;
                    }
                    self.value(&pointer_push(pointer, &key))?;
                    self.whitespace();
                    if self.eat(b'}') {
                        return Some(());
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                }
            }
            b'[' => {
                self.pos += 1;
                self.whitespace();
                if self.eat(b']') {
                    return Some(());
                }
                let mut index = 0usize;
                loop {
                    self.value(&pointer_push(pointer, &index.to_string()))?;
                    index += 1;
                    self.whitespace();
                    if self.eat(b']') {
                        return Some(());
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                }
            }
            b'"' => self.string().map(|_| ()),
            _ => {
                // A number, true, false or null: up to the next delimiter.
                let start = self.pos;
                while let Some(b) = self.peek() {
                    if matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\r' | b'\n') {
                        break;
                    }
                    self.pos += 1;
                }
                (self.pos > start).then_some(())
            }
        }
    }

    /// A string at the cursor, decoded.
    fn string(&mut self) -> Option<String> {
        let start = self.pos;
        if !self.eat(b'"') {
            return None;
        }
        loop {
            match self.peek()? {
                b'\\' => self.pos += 2,
                b'"' => {
                    self.pos += 1;
                    break;
                }
                // Raw newlines are not allowed in JSON strings.
                b'\n' => return None,
                _ => self.pos += 1,
            }
        }
        let raw = self.text.get(start..self.pos)?;
        serde_json::from_str(raw).ok()
    }

    fn whitespace(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b'\n' => self.line += 1,
                b' ' | b'\t' | b'\r' => {}
                _ => return,
            }
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_nested_values() {
        let text = "{\n  \"numbers\": [\"1000\",\n    \"1001\"],\n  \"flow\": {\n    \"module\": \"menu\",\n    \"children\": {\"a/b\": {\"module\": \"x\\\"y\"},\n      \"_\": {}}\n  }\n}\n";
        let lines = value_lines(text);
        let get = |p: &str| lines.get(p).copied();
        assert_eq!(get(""), Some(1));
        assert_eq!(get("/numbers/0"), Some(2));
        assert_eq!(get("/numbers/1"), Some(3));
        assert_eq!(get("/flow"), Some(4));
        assert_eq!(get("/flow/children/a~1b"), Some(6));
        assert_eq!(get("/flow/children/a~1b/module"), Some(6));
        assert_eq!(get("/flow/children/_"), Some(7));
    }

    #[test]
    fn the_later_duplicate_wins_and_bad_text_keeps_what_was_found() {
        let lines = value_lines("{\"a\": 1,\n\"a\": 2}");
        assert_eq!(lines.get("/a"), Some(&2));
        let lines = value_lines("{\"a\": 1,\n\"b\": }");
        assert_eq!(lines.get("/a"), Some(&1));
        assert_eq!(lines.get("/b"), Some(&2));
        assert!(value_lines("").contains_key(""));
        assert_eq!(value_lines("\"unterminated").len(), 1);
    }
}
