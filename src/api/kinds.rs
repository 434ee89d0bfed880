//! The document types of the REST API: where each lives on disk, its
//! Kazoo `pvt_type`, the summary its listing shows (Kazoo's
//! `crossbar_listing` view of that type) and its few rules of its own
//! (write-only fields, a parent document). One table drives the one
//! implementation of the six calls in `documents.rs`.

use md5::Digest;
use serde_json::{Map, Value, json};

use super::envelope::ApiError;
use super::kazoo::KazooErrors;
use crate::catalog::{AccountFlows, Catalog};
use crate::ids::DocId;
use crate::model::Object;

/// What validates a document of a kind and where its listing comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// Callflows: routed (numbers normalized, `unique`, E.164 across
    /// accounts), listed from the route-ready catalog.
    Callflow,
    /// Every other type: its schema and `callflow check`'s document checks.
    Document,
}

/// One document type of the API.
#[derive(Debug)]
pub(crate) struct Kind {
    /// The path segment: `/v2/accounts/{account_id}/<path>`.
    pub path: &'static str,
    /// The folder of the flows directory the documents are files in.
    pub folder: &'static str,
    /// Kazoo's `pvt_type`, written on create.
    pub pvt_type: &'static str,
    /// The route parameter naming one document (`{user_id}`).
    pub id_param: &'static str,
    pub family: Family,
    /// The listing's row for one document (its public fields).
    pub summary: fn(&DocId, &Object) -> Value,
    /// Fields never shown (paths of keys); a replace that leaves one out
    /// keeps the stored value.
    pub write_only: &'static [&'static [&'static str]],
    /// Top-level fields calls keep (a box's `messages`): a replace or
    /// patch leaves them as stored, whatever the body says.
    pub kept: &'static [&'static str],
    /// The kind whose document owns these (list entries belong to a list),
    /// with the field naming the owner.
    pub parent: Option<(&'static Kind, &'static str)>,
    /// The kind whose documents belong to these (a list's entries): a
    /// delete takes them along, as Kazoo's does.
    pub children: Option<&'static Kind>,
    /// What a write does to the document (public, private) before it is
    /// validated: users' passwords become Kazoo's hashes.
    pub prepare: Option<Prepare>,
    /// A rule across documents the schema cannot say (devices' SIP
    /// usernames are unique in their realm).
    pub check: Option<Check>,
}

/// A kind's check of a document about to be saved as `id`, against the
/// server's published documents.
pub(crate) type Check = fn(&Object, &DocId, &AccountFlows, &Catalog, &mut KazooErrors);

/// A kind's change to a document about to be saved (public, private; the
/// stored document, when there is one).
pub(crate) type Prepare = fn(&mut Object, &mut Object, Option<&Object>) -> Result<(), ApiError>;

impl Kind {
    /// The collection's route: `/v2/accounts/{account_id}/users`, or under
    /// the parent document.
    pub(crate) fn collection(&self) -> String {
        match self.parent {
            Some((parent, _)) => format!(
                "{}/{{{}}}/{}",
                parent.collection(),
                parent.id_param,
                self.path
            ),
            None => format!("/v2/accounts/{{account_id}}/{}", self.path),
        }
    }

    /// One document's route.
    pub(crate) fn item(&self) -> String {
        format!("{}/{{{}}}", self.collection(), self.id_param)
    }

    /// The document as shown: its public fields without write-only ones.
    pub(crate) fn hide(&self, doc: &mut Object) {
        for path in self.write_only {
            remove_path(doc, path);
        }
    }

    /// A replace or patch keeps the stored value of the fields calls own.
    pub(crate) fn keep_owned(&self, doc: &mut Object, stored: &Object) {
        for key in self.kept {
            doc.remove(*key);
            if let Some(value) = stored.get(*key) {
                doc.insert((*key).to_owned(), value.clone());
            }
        }
    }

    /// A replace keeps the stored write-only fields the request left out.
    pub(crate) fn keep_write_only(&self, request: &mut Object, stored: &Object) {
        for path in self.write_only {
            if get_path(request, path).is_none()
                && let Some(value) = get_path(stored, path)
            {
                set_path(request, path, value.clone());
            }
        }
    }
}

fn get_path<'a>(doc: &'a Object, path: &[&str]) -> Option<&'a Value> {
    let (last, parents) = path.split_last()?;
    let mut at = doc;
    for key in parents {
        at = at.get(*key)?.as_object()?;
    }
    at.get(*last)
}

fn set_path(doc: &mut Object, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = doc;
    for key in parents {
        let entry = at
            .entry((*key).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(inner) = entry else {
            // A request that made the parent a non-object replaced it
            // wholesale: nothing to keep.
            return;
        };
        at = inner;
    }
    at.insert((*last).to_owned(), value);
}

fn remove_path(doc: &mut Object, path: &[&str]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = doc;
    for key in parents {
        let Some(Value::Object(inner)) = at.get_mut(*key) else {
            return;
        };
        at = inner;
    }
    at.remove(*last);
}

/// `{id, <each of keys the document has>}`: the shape of most of Kazoo's
/// listings (JavaScript's `emit` leaves out undefined values).
fn pick(id: &DocId, doc: &Object, keys: &[&str]) -> Map<String, Value> {
    let mut row = Map::new();
    row.insert("id".into(), json!(id.as_str()));
    for key in keys {
        if let Some(value) = doc.get(*key) {
            row.insert((*key).to_owned(), value.clone());
        }
    }
    row
}

fn named(id: &DocId, doc: &Object) -> Value {
    Value::Object(pick(id, doc, &["name", "flags"]))
}

fn truthy(doc: &Object, path: &[&str]) -> bool {
    get_path(doc, path).is_some_and(|v| v.as_bool().unwrap_or(!v.is_null()))
}

/// Kazoo's users listing: names, login and the features set on the user.
fn user(id: &DocId, doc: &Object) -> Value {
    let mut row = pick(
        id,
        doc,
        &[
            "first_name",
            "last_name",
            "username",
            "email",
            "priv_level",
            "presence_id",
            "flags",
        ],
    );
    let mut features = Vec::new();
    for (feature, set) in [
        ("hotdesk", truthy(doc, &["hotdesk", "enabled"])),
        ("call_forward", truthy(doc, &["call_forward", "enabled"])),
        (
            "caller_id",
            get_path(doc, &["caller_id", "external", "number"]).is_some(),
        ),
        ("vm_to_email", truthy(doc, &["vm_to_email_enabled"])),
        (
            "music_on_hold",
            get_path(doc, &["music_on_hold", "media_id"]).is_some(),
        ),
        (
            "do_not_disturb",
            truthy(doc, &["do_not_disturb", "enabled"]),
        ),
    ] {
        if set {
            features.push(json!(feature));
        }
    }
    row.insert("features".into(), Value::Array(features));
    Value::Object(row)
}

/// A user's `password` is never stored: as Kazoo does, it becomes
/// `pvt_md5_hash`, the MD5 of `username:password` (the username in lower
/// case), what Kazoo's `user_auth` compares with. A password needs a
/// username; a new username needs the password too (the hash covers both,
/// so one changed alone would leave a hash that matches nothing).
fn user_password(
    doc: &mut Object,
    private: &mut Object,
    stored: Option<&Object>,
) -> Result<(), ApiError> {
    let username = |doc: &Object| {
        doc.get("username")
            .and_then(Value::as_str)
            .map(str::to_lowercase)
    };
    let Some(password) = doc.remove("password") else {
        if private.contains_key("pvt_md5_hash")
            && stored.is_some_and(|stored| username(stored) != username(doc))
        {
            return Err(ApiError::Validation(field_error(
                "password",
                "required",
                "a new `username` needs the `password` too (it is kept as a hash of both)",
            )));
        }
        return Ok(());
    };
    let Value::String(password) = password else {
        return Err(ApiError::Validation(field_error(
            "password",
            "type",
            "must be a string",
        )));
    };
    let Some(username) = username(doc) else {
        return Err(ApiError::Validation(field_error(
            "username",
            "required",
            "a user with a password needs a `username` (the password is kept as a hash of both)",
        )));
    };
    let credentials = format!("{username}:{password}");
    private.insert(
        "pvt_md5_hash".into(),
        json!(super::auth::hex(&md5::Md5::digest(credentials.as_bytes()))),
    );
    Ok(())
}

fn field_error(path: &str, code: &str, message: &str) -> Map<String, Value> {
    let mut errors = Map::new();
    errors.insert(path.into(), json!({ code: {"message": message} }));
    errors
}

/// A device's SIP username is its login: as Kazoo's `cb_devices` does, one
/// already in use in the same realm (the device's `sip.realm`, else its
/// account's realm) by another device, of any account, is refused (the
/// registrar would take only one of them).
fn unique_sip_username(
    doc: &Object,
    id: &DocId,
    account: &AccountFlows,
    catalog: &Catalog,
    errors: &mut KazooErrors,
) {
    let realm_of = |doc: &Object, account: &AccountFlows| {
        get_path(doc, &["sip", "realm"])
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
            .map_or_else(|| crate::live::account_realm(account), str::to_owned)
            .to_ascii_lowercase()
    };
    let Some(username) = get_path(doc, &["sip", "username"])
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
    else {
        return;
    };
    let realm = realm_of(doc, account);
    for other in catalog.accounts() {
        let Some(devices) = other.documents.get("devices") else {
            continue;
        };
        for (other_id, device) in devices {
            let same_device = other.account.id == account.account.id && other_id == id;
            if !same_device
                && get_path(&device.body, &["sip", "username"]).and_then(Value::as_str)
                    == Some(username)
                && realm_of(&device.body, other) == realm
            {
                errors.insert(
                    "sip.username".into(),
                    json!({"unique": {
                        "message": format!("SIP credentials already in use in realm {realm}"),
                        "cause": username,
                    }}),
                );
                return;
            }
        }
    }
}

/// Kazoo's devices listing: the SIP username (never the password).
fn device(id: &DocId, doc: &Object) -> Value {
    let mut row = pick(
        id,
        doc,
        &["name", "owner_id", "enabled", "device_type", "flags"],
    );
    if let Some(username) = get_path(doc, &["sip", "username"]) {
        row.insert("username".into(), username.clone());
    }
    row.insert(
        "mac_address".into(),
        doc.get("mac_address").cloned().unwrap_or(json!("")),
    );
    Value::Object(row)
}

/// Kazoo's vmboxes listing: the number of messages, not the messages.
fn vmbox(id: &DocId, doc: &Object) -> Value {
    let mut row = pick(id, doc, &["name", "mailbox", "owner_id", "flags"]);
    let count = doc
        .get("messages")
        .and_then(Value::as_array)
        .map_or(0, |messages| {
            messages
                .iter()
                .filter(|m| m.get("folder").and_then(Value::as_str) != Some("deleted"))
                .count()
        });
    row.insert("messages".into(), json!(count));
    Value::Object(row)
}

fn media(id: &DocId, doc: &Object) -> Value {
    Value::Object(pick(
        id,
        doc,
        &[
            "name",
            "description",
            "media_source",
            "language",
            "is_prompt",
            "prompt_id",
            "content_type",
        ],
    ))
}

/// Kazoo's groups listing: the number of endpoints.
fn group(id: &DocId, doc: &Object) -> Value {
    let mut row = pick(id, doc, &["name", "music_on_hold", "flags"]);
    let endpoints = doc
        .get("endpoints")
        .and_then(Value::as_object)
        .map_or(0, Map::len);
    row.insert("endpoints".into(), json!(endpoints));
    Value::Object(row)
}

fn list(id: &DocId, doc: &Object) -> Value {
    Value::Object(pick(id, doc, &["name", "description", "org"]))
}

/// Kazoo's entries listing shows whole entries.
fn whole(id: &DocId, doc: &Object) -> Value {
    let mut row = doc.clone();
    row.insert("id".into(), json!(id.as_str()));
    Value::Object(row)
}

fn resource(id: &DocId, doc: &Object) -> Value {
    Value::Object(pick(
        id,
        doc,
        &[
            "name",
            "enabled",
            "weight_cost",
            "rules",
            "classifiers",
            "flags",
        ],
    ))
}

fn webhook(id: &DocId, doc: &Object) -> Value {
    Value::Object(pick(
        id,
        doc,
        &["name", "uri", "http_verb", "hook", "enabled", "retries"],
    ))
}

/// Callflows are summarized from the parsed callflow (`kazoo::summary`);
/// this is only the table's entry.
fn callflow(id: &DocId, doc: &Object) -> Value {
    Value::Object(pick(id, doc, &["name", "numbers", "patterns"]))
}

pub(crate) static CALLFLOWS: Kind = Kind {
    family: Family::Callflow,
    summary: callflow,
    ..plain(
        "callflows",
        crate::store::CALLFLOWS,
        "callflow",
        "callflow_id",
    )
};

static LISTS: Kind = Kind {
    summary: list,
    children: Some(&LIST_ENTRIES),
    ..plain("lists", "lists", "list", "list_id")
};

pub(crate) static MEDIA: Kind = Kind {
    summary: media,
    ..plain("media", crate::store::MEDIA, "media", "media_id")
};

pub(crate) static VMBOXES: Kind = Kind {
    summary: vmbox,
    // Messages are the voicemail module's (and `.../messages`'): Kazoo
    // keeps them out of the box's own writes too.
    kept: &["messages"],
    ..plain("vmboxes", "vmboxes", "vmbox", "vmbox_id")
};

/// A kind with the listing of `named` and no rules of its own.
const fn plain(
    path: &'static str,
    folder: &'static str,
    pvt_type: &'static str,
    id_param: &'static str,
) -> Kind {
    Kind {
        path,
        folder,
        pvt_type,
        id_param,
        family: Family::Document,
        summary: named,
        write_only: &[],
        kept: &[],
        parent: None,
        children: None,
        prepare: None,
        check: None,
    }
}

static USERS: Kind = Kind {
    summary: user,
    prepare: Some(user_password),
    ..plain("users", "users", "user", "user_id")
};
static DEVICES: Kind = Kind {
    write_only: &[&["sip", "password"]],
    summary: device,
    check: Some(unique_sip_username),
    ..plain("devices", "devices", "device", "device_id")
};
static MENUS: Kind = plain("menus", "menus", "menu", "menu_id");
static TEMPORAL_RULES: Kind = plain(
    "temporal_rules",
    "temporal_rules",
    "temporal_rule",
    "rule_id",
);
static TEMPORAL_RULES_SETS: Kind = plain(
    "temporal_rules_sets",
    "temporal_rule_sets",
    "temporal_rule_set",
    "rule_set_id",
);
static GROUPS: Kind = Kind {
    summary: group,
    ..plain("groups", "groups", "group", "group_id")
};
static LIST_ENTRIES: Kind = Kind {
    summary: whole,
    parent: Some((&LISTS, "list_id")),
    ..plain("entries", "list_entries", "list_entry", "entry_id")
};
static RESOURCES: Kind = Kind {
    summary: resource,
    ..plain("resources", "resources", "resource", "resource_id")
};
static WEBHOOKS: Kind = Kind {
    summary: webhook,
    ..plain("webhooks", "webhooks", "webhook", "webhook_id")
};

/// Every kind, in the order the routes are listed.
pub(crate) static KINDS: [&Kind; 14] = [
    &CALLFLOWS,
    &USERS,
    &DEVICES,
    &VMBOXES,
    &MEDIA,
    &MENUS,
    &TEMPORAL_RULES,
    &TEMPORAL_RULES_SETS,
    &GROUPS,
    &LISTS,
    &LIST_ENTRIES,
    &RESOURCES,
    &WEBHOOKS,
    &FUNCTIONS,
];

/// Our `function` module's documents (Luau source), served like the rest.
static FUNCTIONS: Kind = plain("functions", "functions", "function", "function_id");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_nest_entries_under_their_list() {
        assert_eq!(
            LIST_ENTRIES.collection(),
            "/v2/accounts/{account_id}/lists/{list_id}/entries"
        );
        assert_eq!(
            LIST_ENTRIES.item(),
            "/v2/accounts/{account_id}/lists/{list_id}/entries/{entry_id}"
        );
        assert_eq!(USERS.item(), "/v2/accounts/{account_id}/users/{user_id}");
    }

    #[test]
    fn write_only_fields_are_hidden_and_kept() {
        let mut shown: Object = serde_json::from_value(json!({
            "name": "desk", "sip": {"username": "u", "password": "p"}
        }))
        .unwrap();
        DEVICES.hide(&mut shown);
        assert_eq!(
            Value::Object(shown.clone()),
            json!({"name": "desk", "sip": {"username": "u"}})
        );
        let stored: Object =
            serde_json::from_value(json!({"sip": {"username": "u", "password": "p"}})).unwrap();
        DEVICES.keep_write_only(&mut shown, &stored);
        assert_eq!(shown["sip"]["password"], "p");
        let mut replaced: Object =
            serde_json::from_value(json!({"sip": {"password": "new"}})).unwrap();
        DEVICES.keep_write_only(&mut replaced, &stored);
        assert_eq!(replaced["sip"]["password"], "new");
    }

    #[test]
    fn every_document_kind_has_a_schema_or_is_a_callflow() {
        for kind in KINDS {
            assert!(
                kind.family == Family::Callflow
                    || crate::model::document_schema(kind.folder).is_some(),
                "{}",
                kind.path
            );
        }
    }
}
