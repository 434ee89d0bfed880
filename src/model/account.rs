//! Account documents (`flows/<account>/account.json`): name, time zone,
//! caller id, dial plan, metaflows. The file is optional; without it an
//! account has Kazoo's defaults.

use serde_json::Value;

use super::Object;
use super::diagnostic::{Code, Diagnostic, pointer_push};
use super::json::{extras, object_field, parse_object, string_field, type_error};
use super::metaflow::check_metaflows;
use crate::ids::AccountId;
use crate::pattern::{self, Pattern};

/// An account and the settings routing and modules read from it.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: AccountId,
    pub name: Option<String>,
    /// IANA time zone name (checked against the bundled database).
    pub timezone: Option<String>,
    pub caller_id: Option<Object>,
    /// The account's `dial_plan`, applied to dialled numbers before the E.164
    /// converters, in document order.
    pub dial_plan: Vec<DialPlanRule>,
    pub metaflows: Option<Object>,
    /// Every other key, unchanged.
    pub extra: Object,
}

/// One `dial_plan` entry: `"<regex>": {"prefix": ..., "suffix": ...}`.
#[derive(Debug, Clone)]
pub struct DialPlanRule {
    pub pattern: Pattern,
    pub prefix: String,
    pub suffix: String,
    pub description: Option<String>,
}

impl Account {
    /// An account without `account.json`.
    pub fn new(id: AccountId) -> Self {
        Self {
            id,
            name: None,
            timezone: None,
            caller_id: None,
            dial_plan: Vec::new(),
            metaflows: None,
            extra: Object::new(),
        }
    }
}

/// Parses `account.json` of account `id`. Invalid parts are left out.
pub fn parse_account(id: &AccountId, text: &str) -> (Account, Vec<Diagnostic>) {
    let mut account = Account::new(id.clone());
    let obj = match parse_object(text, "an account document") {
        Ok(obj) => obj,
        Err(diag) => return (account, vec![diag]),
    };
    let mut diags = Vec::new();
    for key in ["id", "_id"] {
        if let Some(Value::String(inner)) = obj.get(key)
            && inner != id.as_str()
        {
            diags.push(Diagnostic::error(
                Code::IdMismatch,
                pointer_push("", key),
                format!(
                    "the account document says its {key} is {inner:?} but its folder is {:?}",
                    id.as_str()
                ),
            ));
        }
    }
    account.name = string_field(&obj, "name", "", (0, usize::MAX), &mut diags);
    account.timezone = string_field(&obj, "timezone", "", (1, usize::MAX), &mut diags)
        .filter(|tz| check_timezone(tz, &mut diags));
    account.caller_id = object_field(&obj, "caller_id", "", &mut diags).cloned();
    if let Some(plan) = object_field(&obj, "dial_plan", "", &mut diags) {
        account.dial_plan = parse_dial_plan(plan, &mut diags);
    }
    account.metaflows = object_field(&obj, "metaflows", "", &mut diags).map(|mf| {
        check_metaflows(mf, "/metaflows", &mut diags);
        mf.clone()
    });
    account.extra = extras(
        &obj,
        &["name", "timezone", "caller_id", "dial_plan", "metaflows"],
    );
    (account, diags)
}

fn check_timezone(name: &str, diags: &mut Vec<Diagnostic>) -> bool {
    if jiff::tz::TimeZone::get(name).is_ok() {
        return true;
    }
    diags.push(Diagnostic::error(
        Code::Timezone,
        "/timezone",
        format!("{name:?} is not an IANA time zone (such as \"America/Los_Angeles\")"),
    ));
    false
}

fn parse_dial_plan(plan: &Object, diags: &mut Vec<Diagnostic>) -> Vec<DialPlanRule> {
    let mut rules = Vec::with_capacity(plan.len());
    for (regex, rule) in plan {
        let pointer = pointer_push("/dial_plan", regex);
        let Value::Object(rule) = rule else {
            type_error(
                diags,
                &pointer,
                "a dial plan rule",
                "an object {prefix, suffix}",
                rule,
            );
            continue;
        };
        let prefix = string_field(rule, "prefix", &pointer, (0, usize::MAX), diags);
        let suffix = string_field(rule, "suffix", &pointer, (0, usize::MAX), diags);
        let description = string_field(rule, "description", &pointer, (0, usize::MAX), diags);
        match pattern::compile(regex) {
            Ok(pattern) => rules.push(DialPlanRule {
                pattern,
                prefix: prefix.unwrap_or_default(),
                suffix: suffix.unwrap_or_default(),
                description,
            }),
            Err(err) => {
                diags.push(Diagnostic::error(
                    Code::for_pattern(&err),
                    pointer,
                    format!("dial plan regex {regex:?} {err}"),
                ));
            }
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_settings() {
        let id = AccountId::new("acme").unwrap();
        let (account, diags) = parse_account(
            &id,
            r#"{"name":"Acme","timezone":"America/Los_Angeles",
                "dial_plan":{"^(\\d{7})$":{"prefix":"+1415","description":"local"}},
                "realm":"acme.example.com"}"#,
        );
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(account.name.as_deref(), Some("Acme"));
        assert_eq!(account.dial_plan.len(), 1);
        assert_eq!(account.dial_plan[0].prefix, "+1415");
        assert_eq!(account.extra.len(), 1);
    }

    #[test]
    fn reports_bad_settings() {
        let id = AccountId::new("acme").unwrap();
        let (account, diags) = parse_account(
            &id,
            r#"{"timezone":"Mars/Olympus","dial_plan":{"*1":{},"^1$":3},"_id":"x"}"#,
        );
        let codes: Vec<_> = diags
            .iter()
            .map(|d| (d.code.as_str(), d.pointer.as_str()))
            .collect();
        assert_eq!(
            codes,
            vec![
                ("id_mismatch", "/_id"),
                ("timezone", "/timezone"),
                ("invalid_pattern", "/dial_plan/*1"),
                ("type", "/dial_plan/^1$"),
            ]
        );
        assert!(account.timezone.is_none());
    }
}
