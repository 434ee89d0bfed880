//! Kazoo's regexes (callflow `patterns`, dial plans, E.164 converters) in the
//! dialect of the `regex` crate.
//!
//! Kazoo compiles patterns with Erlang's `re` (PCRE) with no options, on byte
//! strings. We mirror that with `regex::bytes` and Unicode off: `\d` is ASCII,
//! matching is byte-wise, and lengths are byte lengths. The `regex` crate runs
//! in linear time, so no pattern can stall a lookup; the price is that a few
//! PCRE-only constructs (look-around, backreferences, atomic groups, ...) do not
//! compile. [`compile`] tells those apart from plain mistakes so that
//! diagnostics can say which one it is.

use std::fmt;

use regex::bytes::{Regex, RegexBuilder};

/// A compiled Kazoo pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    /// Shared: cloning a `Regex` builds a new cache pool, and route tables
    /// and the compile cache hand out clones all the time.
    regex: std::sync::Arc<Regex>,
    group_count: usize,
}

/// What [`Pattern::find`] returns: Kazoo's score and capture values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternMatch {
    /// The text Kazoo scores a match by, and stores as `capture_group`: the
    /// whole match for a pattern without groups, else the longest capture group
    /// (the first of equally long ones). May be empty.
    pub capture_group: String,
    /// Named groups that captured something, in the order they appear in the pattern.
    pub capture_groups: Vec<(String, String)>,
}

/// Why a pattern does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternError {
    /// Valid PCRE that the `regex` crate does not support; names the
    /// construct and where it starts (1-based character).
    Unsupported { construct: &'static str, at: usize },
    /// Not a valid regex at all (Kazoo's PCRE rejects it too).
    Invalid { message: String },
    /// Compiles to more than the size limit allows (bytes).
    TooBig { limit: usize },
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatternError::Unsupported { construct, at } => write!(
                f,
                "uses {construct} at character {at}, PCRE syntax that the linear-time regex engine lacks"
            ),
            PatternError::Invalid { message } => f.write_str(message),
            PatternError::TooBig { limit } => write!(
                f,
                "compiles to more than {} KiB, the limit of a callflow pattern \
                 (max_pattern_compiled_bytes)",
                limit >> 10
            ),
        }
    }
}

impl std::error::Error for PatternError {}

/// Compiled patterns larger than this are rejected (the `regex` crate's own
/// guard against patterns such as `\d{1000}{1000}`).
const SIZE_LIMIT: usize = 1 << 20;

/// Beyond this many patterns a thread's cache of compiled ones starts afresh.
const CACHE_MAX: usize = 1024;

thread_local! {
    /// Patterns this thread compiled: calls compile the same metaflow and
    /// module patterns again and again, and a compiled regex is shared
    /// (cloning one clones a reference).
    static COMPILED: std::cell::RefCell<std::collections::BTreeMap<String, Result<Pattern, PatternError>>> =
        const { std::cell::RefCell::new(std::collections::BTreeMap::new()) };
}

/// Compiles `source` as Kazoo would use it: unanchored unless it says `^`/`$`,
/// byte-oriented, ASCII classes. Compiled once per thread (cached).
pub fn compile(source: &str) -> Result<Pattern, PatternError> {
    if let Some(found) = COMPILED.with_borrow(|cache| cache.get(source).cloned()) {
        return found;
    }
    let compiled = compile_uncached(source);
    COMPILED.with_borrow_mut(|cache| {
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(source.to_owned(), compiled.clone());
    });
    compiled
}

/// Compiles a callflow's pattern for routing: as [`compile`], within
/// [`crate::limits::DocumentLimits::max_pattern_compiled_bytes`], not cached
/// (a route table keeps what it compiled).
pub fn compile_route(source: &str) -> Result<Pattern, PatternError> {
    compile_within(
        source,
        crate::limits::DocumentLimits::DEFAULT.max_pattern_compiled_bytes,
    )
}

fn compile_uncached(source: &str) -> Result<Pattern, PatternError> {
    compile_within(source, SIZE_LIMIT)
}

fn compile_within(source: &str, size_limit: usize) -> Result<Pattern, PatternError> {
    // The `regex` crate reads `a++` as a repeated repetition, which matches
    // more than PCRE's possessive `a++`: refuse rather than differ silently.
    if let Some((construct @ "a possessive quantifier", at)) = pcre_only_construct(source) {
        return Err(PatternError::Unsupported { construct, at });
    }
    match builder(source).size_limit(size_limit).build() {
        Ok(regex) => {
            let group_count = regex.captures_len() - 1;
            Ok(Pattern {
                source: source.to_owned(),
                regex: std::sync::Arc::new(regex),
                group_count,
            })
        }
        Err(regex::Error::CompiledTooBig(_)) => Err(PatternError::TooBig { limit: size_limit }),
        Err(err) => Err(classify(source, &err)),
    }
}

/// The builder every Kazoo-dialect regex in the crate is compiled with.
pub(crate) fn builder(source: &str) -> RegexBuilder {
    let mut builder = RegexBuilder::new(source);
    builder.unicode(false).size_limit(SIZE_LIMIT);
    builder
}

impl Pattern {
    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The compiled regex.
    pub fn regex(&self) -> &Regex {
        &self.regex
    }

    /// Whether the pattern has capture groups (named or not).
    pub fn has_groups(&self) -> bool {
        self.group_count > 0
    }

    /// Whether the pattern matches anywhere in `text`.
    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text.as_bytes())
    }

    /// Matches `text` and scores it the way `cf_flow:test_callflow_patterns/3` does.
    pub fn find(&self, text: &str) -> Option<PatternMatch> {
        let hay = text.as_bytes();
        if !self.has_groups() {
            let m = self.regex.find(hay)?;
            return Some(PatternMatch {
                capture_group: lossy(m.as_bytes()),
                capture_groups: Vec::new(),
            });
        }
        let caps = self.regex.captures(hay)?;
        let mut longest: &[u8] = b"";
        for group in caps.iter().skip(1) {
            let value = group.map_or(&b""[..], |m| m.as_bytes());
            if value.len() > longest.len() {
                longest = value;
            }
        }
        let capture_groups = self
            .regex
            .capture_names()
            .enumerate()
            .filter_map(|(index, name)| {
                let value = caps.get(index)?.as_bytes();
                match name {
                    Some(name) if !value.is_empty() => Some((name.to_owned(), lossy(value))),
                    _ => None,
                }
            })
            .collect();
        Some(PatternMatch {
            capture_group: lossy(longest),
            capture_groups,
        })
    }

    /// The value of the last capture group that took part in the match, or the
    /// whole match when none did: `lists:last/1` of Erlang's `{capture, all}`,
    /// which is how dial plans and E.164 converters pick the number's root.
    pub fn last_capture(&self, text: &str) -> Option<String> {
        let caps = self.regex.captures(text.as_bytes())?;
        let last = caps.iter().flatten().last()?;
        Some(lossy(last.as_bytes()))
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Explains why `source` failed to compile, in one line.
fn classify(source: &str, err: &regex::Error) -> PatternError {
    if let Some((construct, at)) = pcre_only_construct(source) {
        return PatternError::Unsupported { construct, at };
    }
    let parsed = regex_syntax::ast::parse::Parser::new().parse(source);
    if let Err(ast_err) = &parsed {
        use regex_syntax::ast::ErrorKind;
        let at = ast_err.span().start.column;
        let construct = match ast_err.kind() {
            ErrorKind::UnsupportedLookAround => Some("look-around"),
            ErrorKind::UnsupportedBackreference => Some("a backreference"),
            _ => None,
        };
        return match construct {
            Some(construct) => PatternError::Unsupported { construct, at },
            None => PatternError::Invalid {
                message: format!("{} at character {at}", ast_err.kind()),
            },
        };
    }
    let translated = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(source);
    let message = match translated {
        Err(regex_syntax::Error::Translate(hir_err)) => format!(
            "{} at character {}",
            hir_err.kind(),
            hir_err.span().start.column
        ),
        _ => match err {
            regex::Error::CompiledTooBig(limit) => {
                format!("the compiled pattern is larger than the {limit}-byte limit")
            }
            other => other
                .to_string()
                .lines()
                .last()
                .unwrap_or_default()
                .to_owned(),
        },
    };
    PatternError::Invalid { message }
}

/// Finds a PCRE construct that the `regex` crate has no equivalent for, and
/// the character (1-based) where it starts.
fn pcre_only_construct(source: &str) -> Option<(&'static str, usize)> {
    const GROUPS: &[(&str, &str)] = &[
        ("(?=", "look-around"),
        ("(?!", "look-around"),
        ("(?<=", "look-around"),
        ("(?<!", "look-around"),
        ("(?>", "an atomic group"),
        ("(?|", "a branch-reset group"),
        ("(?'", "a quoted group name"),
        ("(?P=", "a backreference"),
        ("(?P>", "a subroutine call"),
        ("(?&", "a subroutine call"),
        ("(?R)", "recursion"),
        ("(?C", "a callout"),
        ("(*", "a backtracking verb"),
    ];
    const ESCAPES: &[(u8, &str)] = &[
        (b'K', "\\K"),
        (b'G', "\\G"),
        (b'Z', "\\Z"),
        (b'h', "\\h"),
        (b'H', "\\H"),
        (b'R', "\\R"),
        (b'X', "\\X"),
        (b'g', "a backreference"),
        (b'k', "a backreference"),
    ];
    let bytes = source.as_bytes();
    let mut in_class = false;
    // Whether the previous token was a quantifier (`+ * ? }`), so that a `+`
    // right after it makes it possessive.
    let mut after_quantifier = false;
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'\\' {
            let next = bytes.get(i + 1).copied().unwrap_or_default();
            if !in_class {
                if let Some((_, name)) = ESCAPES.iter().find(|(c, _)| *c == next) {
                    return Some((name, column(source, i)));
                }
                if next.is_ascii_digit() && next != b'0' {
                    return Some(("a backreference", column(source, i)));
                }
            }
            after_quantifier = false;
            i += 2;
            continue;
        }
        if in_class {
            in_class = byte != b']';
            i += 1;
            continue;
        }
        match byte {
            b'[' => in_class = true,
            b'(' => {
                let rest = &source[i..];
                if let Some((_, name)) = GROUPS.iter().find(|(p, _)| rest.starts_with(p)) {
                    return Some((name, column(source, i)));
                }
            }
            b'+' if after_quantifier => {
                return Some(("a possessive quantifier", column(source, i)));
            }
            _ => {}
        }
        let group_syntax = byte == b'?' && i > 0 && bytes[i - 1] == b'(';
        after_quantifier = matches!(byte, b'+' | b'*' | b'?' | b'}') && !group_syntax;
        i += 1;
    }
    None
}

/// The 1-based character position of byte offset `index`.
fn column(source: &str, index: usize) -> usize {
    source
        .get(..index)
        .map_or(index, |head| head.chars().count())
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> Option<(String, Vec<(String, String)>)> {
        compile(pattern)
            .unwrap()
            .find(text)
            .map(|m| (m.capture_group, m.capture_groups))
    }

    #[test]
    fn scores_whole_match_without_groups() {
        assert_eq!(m(r"^\*9.*$", "*971000").unwrap().0, "*971000");
        assert_eq!(m(r"00", "1001").unwrap().0, "00");
    }

    #[test]
    fn scores_longest_group_with_groups() {
        assert_eq!(m(r"^\*97([0-9]*)$", "*971000").unwrap().0, "1000");
        assert_eq!(m(r"^(1)(234)(56)$", "123456").unwrap().0, "234");
        // Ties keep the first group.
        assert_eq!(m(r"^(12)(34)$", "1234").unwrap().0, "12");
        // Empty capture is still a match.
        assert_eq!(m(r"^\*97([0-9]*)$", "*97").unwrap().0, "");
        // Unset groups count as empty.
        assert_eq!(m(r"^(?:(a)|(bb))$", "bb").unwrap().0, "bb");
    }

    #[test]
    fn named_groups_drop_empty_values() {
        let (cg, named) = m(r"^(?P<ext>\d+)(?<tail>#?)$", "1000").unwrap();
        assert_eq!(cg, "1000");
        assert_eq!(named, vec![("ext".to_owned(), "1000".to_owned())]);
    }

    #[test]
    fn ascii_digit_class() {
        assert!(
            m(r"^\d+$", "١٢٣").is_none(),
            "Arabic-Indic digits are not \\d in PCRE"
        );
    }

    #[test]
    fn last_capture_is_last_participating_group() {
        let p = compile(r"^011(\d{5,})$|^00(\d{5,})$").unwrap();
        assert_eq!(p.last_capture("011442079460000").unwrap(), "442079460000");
        assert_eq!(p.last_capture("00442079460000").unwrap(), "442079460000");
        let p = compile(r"^[2-9]\d{7,}$").unwrap();
        assert_eq!(p.last_capture("442079460000").unwrap(), "442079460000");
    }

    #[test]
    fn classifies_errors() {
        let err = compile(r"*55(\d+)").unwrap_err();
        assert!(matches!(err, PatternError::Invalid { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "repetition operator missing expression at character 1"
        );
        for (pattern, construct) in [
            (r"^(?=1)\d+$", "look-around"),
            (r"^(?<!0)1$", "look-around"),
            (r"^(\d)\1$", "a backreference"),
            (r"^(?>12|1)2$", "an atomic group"),
            (r"^\d++$", "a possessive quantifier"),
            (r"^1{2}+$", "a possessive quantifier"),
            (r"^1\Z", "\\Z"),
        ] {
            match compile(pattern).unwrap_err() {
                PatternError::Unsupported { construct: c, .. } => {
                    assert_eq!(c, construct, "{pattern}");
                }
                other @ (PatternError::Invalid { .. } | PatternError::TooBig { .. }) => {
                    panic!("{pattern}: {other:?}")
                }
            }
        }
        // Escaped quantifier characters are literals, not quantifiers.
        assert!(compile(r"^\++1$").unwrap().is_match("++1"));
        assert!(compile(r"^[+]+1$").unwrap().is_match("++1"));
        assert!(compile(r"^(?:12)+$").unwrap().is_match("1212"));
        let err = compile(r"[").unwrap_err();
        assert!(matches!(err, PatternError::Invalid { .. }));
        let err = compile(r"(?:\d{1000}){1000}").unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
    }

    #[test]
    fn route_patterns_have_a_compiled_size_limit() {
        assert!(compile_route(r"^\+?1?(\d{10})$").is_ok());
        let err = compile_route(r"^[0-9]{0,300}12345$").unwrap_err();
        assert!(matches!(err, PatternError::TooBig { limit } if limit == 16 << 10));
        assert!(
            err.to_string().contains("max_pattern_compiled_bytes"),
            "{err}"
        );
        // Modules' own regexes keep the larger limit.
        assert!(compile(r"^[0-9]{0,300}12345$").is_ok());
    }
}
