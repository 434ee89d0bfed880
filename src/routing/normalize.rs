//! Number normalization, as Kazoo's `knm_converters:normalize/2` does it:
//! numbers that start with `+` are kept; otherwise the account's `dial_plan`
//! regexes are tried in document order (the first match is rewritten), then
//! the E.164 converters (the first match is rewritten). A rewrite is
//! `prefix + root + suffix`, where root is the last capture group that took
//! part in the match (the whole match for a regex without groups).
//!
//! Feature codes (`*...`) are never normalized. Kazoo exempts them only on the
//! dialled side (`kapps_call:to_e164/2`); we exempt them on the document side
//! too, so that a dial plan can never make a `*` code unreachable.

use std::sync::LazyLock;

use crate::model::{Account, DialPlanRule};
use crate::pattern::{self, Pattern};

/// Kazoo's default `e164_converters` (`knm_converter_regex.erl`), in order.
const DEFAULT_CONVERTERS: &[(&str, &str)] = &[
    (r"^(\+?1)?([2-9][0-9]{2}[2-9][0-9]{6})$", "+1"),
    (r"^011(\d{5,})$|^00(\d{5,})$", "+"),
    (r"^[2-9]\d{7,}$", "+"),
];

static CONVERTERS: LazyLock<Vec<(Pattern, &'static str)>> = LazyLock::new(|| {
    DEFAULT_CONVERTERS
        .iter()
        .map(|(regex, prefix)| {
            // The converters are constants covered by the tests below, so
            // they always compile.
            let pattern = pattern::compile(regex).expect("default E.164 converters compile");
            (pattern, *prefix)
        })
        .collect()
});

/// Normalizes numbers for one account.
#[derive(Debug, Clone, Default)]
pub struct Normalizer {
    dial_plan: Vec<DialPlanRule>,
}

impl Normalizer {
    /// A normalizer with the account's dial plan.
    pub fn for_account(account: &Account) -> Self {
        Self {
            dial_plan: account.dial_plan.clone(),
        }
    }

    /// The number as Kazoo would store and look it up.
    pub fn normalize(&self, number: &str) -> String {
        if number.is_empty() || number.starts_with('+') || number.starts_with('*') {
            return number.to_owned();
        }
        let planned = self
            .dial_plan
            .iter()
            .find_map(|rule| {
                let root = rule.pattern.last_capture(number)?;
                Some(format!("{}{root}{}", rule.prefix, rule.suffix))
            })
            .unwrap_or_else(|| number.to_owned());
        CONVERTERS
            .iter()
            .find_map(|(pattern, prefix)| {
                let root = pattern.last_capture(&planned)?;
                Some(format!("{prefix}{root}"))
            })
            .unwrap_or(planned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::AccountId;
    use crate::model::parse_account;

    #[test]
    fn default_converters() {
        let n = Normalizer::default();
        for (input, expected) in [
            ("4158867900", "+14158867900"),
            ("14158867900", "+14158867900"),
            ("+14158867900", "+14158867900"),
            ("011442079460000", "+442079460000"),
            ("00442079460000", "+442079460000"),
            ("442079460000", "+442079460000"),
            ("0114420", "0114420"),
            ("1000", "1000"),
            ("2003", "2003"),
            ("*97", "*97"),
            ("*4158867900", "*4158867900"),
            ("no_match", "no_match"),
            ("1000#", "1000#"),
            ("", ""),
        ] {
            assert_eq!(n.normalize(input), expected, "{input}");
        }
    }

    #[test]
    fn dial_plan_first_then_converters() {
        let (account, diags) = parse_account(
            &AccountId::new("a").unwrap(),
            r#"{"dial_plan":{"^(\\d{7})$":{"prefix":"415"},"^9(\\d+)$":{"prefix":"","suffix":""}}}"#,
        );
        assert!(diags.is_empty());
        let n = Normalizer::for_account(&account);
        assert_eq!(n.normalize("8867900"), "+14158867900");
        assert_eq!(n.normalize("94158867900"), "+14158867900");
        assert_eq!(n.normalize("1000"), "1000");
        assert_eq!(n.normalize("+3312345678"), "+3312345678");
    }
}
