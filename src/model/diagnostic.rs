//! Diagnostics: every problem found in a flows directory, each with its file,
//! JSON Pointer, severity, stable code and message.
//!
//! Loading never stops at the first problem: parsers return what they could
//! build together with a list of diagnostics (rust-analyzer's "broken input is
//! not an error").

use std::fmt;

use serde::Serialize;

use crate::pattern::PatternError;

/// How bad a diagnostic is. Errors make `callflow check` exit 1; warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// A stable diagnostic code. Codes Kazoo's Crossbar also reports (`type`,
/// `required`, `unique`, ...) keep Kazoo's spelling, so the REST API can report
/// them in Kazoo's shape; our own codes are `snake_case`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Code {
    /// The file is not well-formed JSON.
    Json,
    /// A value has the wrong JSON type.
    Type,
    /// A required value is missing.
    Required,
    /// A number or pattern is already used by another callflow of the account.
    Unique,
    /// An E.164 number is also claimed by a callflow of another account: a
    /// call from a trunk, routed by number alone, could reach either.
    NumberInOtherAccount,
    /// An account's realm is also another account's: SIP devices are found
    /// by realm and user name, so one account could take the other's
    /// logins.
    RealmInOtherAccount,
    /// The same value appears twice in one list.
    UniqueItems,
    /// A list has more entries than allowed (Kazoo's `maxItems`).
    MaxItems,
    /// A document, or an account's documents together, over one of
    /// [`crate::limits::DocumentLimits`].
    Limit,
    /// A temporary file an interrupted write left behind.
    Leftover,
    /// A string is shorter than allowed.
    MinLength,
    /// A string is longer than allowed.
    MaxLength,
    /// A value is not one of the allowed ones.
    Enum,
    /// The `id` (or `_id`) inside a document differs from its file name.
    IdMismatch,
    /// An account id, document id or document type does not follow the id rule.
    InvalidId,
    /// A node is `{}`: the call stops there.
    EmptyNode,
    /// A regex does not compile at all.
    InvalidPattern,
    /// A regex uses PCRE syntax the `regex` crate lacks.
    UnsupportedPattern,
    /// A `callflow` node names a callflow the account does not have.
    MissingCallflow,
    /// A node names a module nothing provides: calls skip it to `_`.
    UnknownModule,
    /// A key the schema does not know (likely a typo).
    UnknownKey,
    /// A file that is not part of the flows layout.
    IgnoredFile,
    /// A file or folder could not be read.
    Io,
    /// A time zone that is not in the IANA database.
    Timezone,
    /// A Lua script that does not compile or load.
    Script,
    /// A number below a schema's `minimum`.
    Minimum,
    /// A number above a schema's `maximum`.
    Maximum,
    /// A string that does not match a schema's `pattern`.
    Pattern,
    /// A value Kazoo's non-strict validation would convert (`"20"` for 20).
    Coerced,
    /// A URL field (schema `format: "uri"`) naming a loopback, private,
    /// link-local or otherwise internal host: a warning in the catalog
    /// (calls refuse the request unless private addresses are allowed), an
    /// error for `callflow check` and API writes unless they allow them.
    InternalUrl,
    /// What Luau's type checker found in a `--!strict` script
    /// (`callflow check --types`).
    Types,
}

impl Code {
    /// The code for a pattern that does not compile.
    pub fn for_pattern(err: &PatternError) -> Self {
        match err {
            PatternError::Unsupported { .. } => Code::UnsupportedPattern,
            PatternError::Invalid { .. } => Code::InvalidPattern,
            PatternError::TooBig { .. } => Code::Limit,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Code::Json => "json",
            Code::Type => "type",
            Code::Required => "required",
            Code::Unique => "unique",
            Code::NumberInOtherAccount => "number_in_other_account",
            Code::RealmInOtherAccount => "realm_in_other_account",
            Code::UniqueItems => "uniqueItems",
            Code::MaxItems => "maxItems",
            Code::Limit => "limit",
            Code::Leftover => "leftover",
            Code::MinLength => "minLength",
            Code::MaxLength => "maxLength",
            Code::Enum => "enum",
            Code::IdMismatch => "id_mismatch",
            Code::InvalidId => "invalid_id",
            Code::EmptyNode => "empty_node",
            Code::InvalidPattern => "invalid_pattern",
            Code::UnsupportedPattern => "unsupported_pattern",
            Code::MissingCallflow => "missing_callflow",
            Code::UnknownModule => "unknown_module",
            Code::UnknownKey => "unknown_key",
            Code::IgnoredFile => "ignored_file",
            Code::Io => "io",
            Code::Timezone => "timezone",
            Code::Script => "script",
            Code::Minimum => "minimum",
            Code::Maximum => "maximum",
            Code::Pattern => "pattern",
            Code::Coerced => "coerced",
            Code::InternalUrl => "internal_url",
            Code::Types => "types",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One problem, located by file and JSON Pointer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The file, as the flows directory was named on the command line.
    pub file: String,
    /// RFC 6901 pointer into the document (`""` for the whole document).
    pub pointer: String,
    pub code: Code,
    pub message: String,
    /// Line (1-based) for syntax errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Column (1-based) for syntax errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}

impl Diagnostic {
    pub fn error(code: Code, pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, code, pointer.into(), message.into())
    }

    pub fn warning(code: Code, pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, code, pointer.into(), message.into())
    }

    fn new(severity: Severity, code: Code, pointer: String, message: String) -> Self {
        Self {
            severity,
            file: String::new(),
            pointer,
            code,
            message,
            line: None,
            column: None,
        }
    }

    /// Sets the file the diagnostic belongs to.
    #[must_use]
    pub fn in_file(mut self, file: &str) -> Self {
        file.clone_into(&mut self.file);
        self
    }

    /// Adds a line and column (1-based).
    #[must_use]
    pub fn at(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    /// Adds a line (1-based), for sources that report no column.
    #[must_use]
    pub fn at_line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }

    /// `severity code pointer: message` on one line (for tests and logs).
    pub fn one_line(&self) -> String {
        format!(
            "{} {} {}: {}",
            self.severity.as_str(),
            self.code,
            self.pointer,
            self.message
        )
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// Two lines, compiler style:
    ///
    /// ```text
    /// error[unique]: Number 1000 exists in callflow main Main number
    ///   --> flows/acme/callflows/dup.json at /numbers/0
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}[{}]: {}\n  --> {}",
            self.severity.as_str(),
            self.code,
            self.message,
            self.file
        )?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if !self.pointer.is_empty() {
            write!(f, " at {}", self.pointer)?;
        }
        Ok(())
    }
}

/// Counts of errors and warnings in a list of diagnostics.
pub fn count(diagnostics: &[Diagnostic]) -> (usize, usize) {
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    (errors, diagnostics.len() - errors)
}

/// Appends `key` to a JSON Pointer, escaping `~` and `/` as RFC 6901 says.
pub fn pointer_push(base: &str, key: &str) -> String {
    let mut out = String::with_capacity(base.len() + key.len() + 1);
    out.push_str(base);
    out.push('/');
    for c in key.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_escapes() {
        assert_eq!(
            pointer_push("/flow/children", "a/b~c"),
            "/flow/children/a~1b~0c"
        );
        assert_eq!(pointer_push("", "numbers"), "/numbers");
    }

    #[test]
    fn renders_compiler_style() {
        let d = Diagnostic::error(Code::Json, "", "expected `,` or `}`")
            .in_file("flows/a/callflows/x.json")
            .at(3, 7);
        assert_eq!(
            d.to_string(),
            "error[json]: expected `,` or `}`\n  --> flows/a/callflows/x.json:3:7"
        );
        let d = Diagnostic::warning(Code::EmptyNode, "/flow/children/_", "empty").in_file("f.json");
        assert_eq!(
            d.to_string(),
            "warning[empty_node]: empty\n  --> f.json at /flow/children/_"
        );
    }
}
