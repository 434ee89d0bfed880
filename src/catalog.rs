//! The catalog: every account of a flows directory, parsed, validated and
//! with its route table built. Pure: it is given file contents ([`Sources`],
//! read by a [`crate::store`]) and does no I/O of its own.
//!
//! Building checks what no single document can: numbers and patterns claimed
//! by two callflows (Kazoo's `unique`), E.164 numbers claimed in two
//! accounts, `callflow` nodes that name a callflow the account lacks, and
//! the modules of metaflows (the account's, each callflow's, each device's
//! and user's).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;

use crate::ids::{AccountId, DocId, DocType};
use crate::limits::DocumentLimits;
use crate::model::{
    Account, Callflow, Code, Diagnostic, Document, Node, Object, check_metaflows, parse_account,
    parse_callflow, parse_document, parse_flow,
};
use crate::routing::RouteTable;

/// A file as read by a store.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path to show in diagnostics.
    pub path: String,
    pub text: String,
}

/// The files of one account.
#[derive(Debug, Clone)]
pub struct AccountSource {
    pub id: AccountId,
    /// `account.json`, when present.
    pub account: Option<SourceFile>,
    pub callflows: Vec<(DocId, SourceFile)>,
    /// Other documents, by type (the folder name) and id.
    pub documents: Vec<(DocType, DocId, SourceFile)>,
}

/// Everything a store read, with the problems it met while listing (ids that
/// are not valid, unreadable files, stray files).
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub accounts: Vec<AccountSource>,
    pub diagnostics: Vec<Diagnostic>,
}

/// What the catalog needs to know about modules: which exist, and the data
/// schema each declares. The module host's [`crate::host::ModuleSet`]
/// implements it; [`KazooModules`] knows Kazoo's module names only.
pub trait Modules {
    /// Whether a module of this name exists.
    fn provides(&self, name: &str) -> bool;
    /// The schema of the module's node data, when it declares one.
    fn schema(&self, name: &str) -> Option<&Value>;
    /// Whether a metaflow module of this name exists.
    fn provides_metaflow(&self, name: &str) -> bool;
    /// The schema of a metaflow module's node data, when it declares one.
    fn metaflow_schema(&self, name: &str) -> Option<&Value>;
    /// Whether the Luau source of a `functions` document compiles: `Err`
    /// with the source's line and the message when it does not. Only the
    /// module host can tell; by default (Kazoo's names alone) every source
    /// passes.
    fn compile_function(&self, source: &str) -> Result<(), (Option<u32>, String)> {
        let _ = source;
        Ok(())
    }
}

/// Kazoo's module inventory, without schemas.
#[derive(Debug, Clone, Copy, Default)]
pub struct KazooModules;

impl Modules for KazooModules {
    fn provides(&self, name: &str) -> bool {
        crate::model::kazoo::is_kazoo_module(name)
    }

    fn schema(&self, _name: &str) -> Option<&Value> {
        None
    }

    fn provides_metaflow(&self, name: &str) -> bool {
        crate::model::kazoo::is_kazoo_metaflow(name)
    }

    fn metaflow_schema(&self, _name: &str) -> Option<&Value> {
        None
    }
}

/// Every account, ready to route and run calls.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    accounts: BTreeMap<AccountId, Arc<AccountFlows>>,
}

/// One account: its settings, documents and route table.
#[derive(Debug, Clone)]
pub struct AccountFlows {
    pub account: Account,
    pub callflows: BTreeMap<DocId, Arc<Callflow>>,
    pub documents: BTreeMap<DocType, BTreeMap<DocId, Document>>,
    pub routes: RouteTable,
    /// Callflow id → the file it came from.
    pub files: BTreeMap<DocId, String>,
}

impl AccountFlows {
    /// The account's realm: `realm` in `account.json`, else its id.
    pub fn realm(&self) -> String {
        self.account
            .extra
            .get("realm")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
            .map_or_else(|| self.account.id.to_string(), str::to_owned)
    }
}

impl Catalog {
    /// Parses and validates everything in `sources`. Returns the catalog and
    /// every diagnostic, the store's included, sorted by file.
    ///
    /// `modules` tells which module names exist (nodes naming anything else
    /// get an `unknown_module` warning) and what data each accepts.
    pub fn build(sources: Sources, modules: &dyn Modules) -> (Self, Vec<Diagnostic>) {
        let mut diagnostics = sources.diagnostics;
        let mut accounts = BTreeMap::new();
        let mut account_files = BTreeMap::new();
        for source in sources.accounts {
            let id = source.id.clone();
            let flows = build_account(&source, modules, &mut diagnostics);
            if let Some(file) = source.account {
                account_files.insert(id.clone(), file.path);
            }
            accounts.insert(id, Arc::new(flows));
        }
        check_numbers_across_accounts(&accounts, &mut diagnostics);
        check_realms_across_accounts(&accounts, &account_files, &mut diagnostics);
        // A stable sort keeps each file's diagnostics in discovery order.
        diagnostics.sort_by(|a, b| a.file.cmp(&b.file));
        (Self { accounts }, diagnostics)
    }

    pub fn accounts(&self) -> impl Iterator<Item = &Arc<AccountFlows>> {
        self.accounts.values()
    }

    pub fn account(&self, id: &str) -> Option<&Arc<AccountFlows>> {
        self.accounts.get(id)
    }

    /// The first account (in id order) other than `except` whose callflow
    /// claims the normalized E.164 number, with that callflow.
    pub fn number_elsewhere(&self, number: &str, except: &str) -> Option<(&AccountId, &DocId)> {
        if !number.starts_with('+') {
            return None;
        }
        self.accounts
            .iter()
            .filter(|(id, _)| id.as_str() != except)
            .find_map(|(id, flows)| Some((id, flows.routes.number_callflow(number)?)))
    }

    /// The only account, when there is exactly one.
    pub fn single_account(&self) -> Option<&Arc<AccountFlows>> {
        let mut all = self.accounts.values();
        match (all.next(), all.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    }
}

impl Catalog {
    /// Adds or replaces one account (a rebuilt account after a write).
    pub fn insert(&mut self, flows: Arc<AccountFlows>) {
        self.accounts.insert(flows.account.id.clone(), flows);
    }
}

impl AccountFlows {
    /// The numbers and patterns the account's callflows list (as admitted,
    /// before normalizing or compiling): what the account limits count,
    /// in [`Catalog::build`] as on a write.
    pub fn listed_totals(&self) -> (usize, usize) {
        self.callflows
            .values()
            .fold((0, 0), |(numbers, patterns), c| {
                (numbers + c.numbers.len(), patterns + c.patterns.len())
            })
    }

    /// Callflows other than `except` listing each of `patterns` exactly as
    /// written, whether it compiles or not (the route table holds only the
    /// ones that do): pattern → holder.
    pub fn pattern_holders<'a>(
        &'a self,
        patterns: &'a [String],
        except: &DocId,
    ) -> BTreeMap<&'a str, &'a DocId> {
        let mut found = BTreeMap::new();
        let mut missing: BTreeSet<&str> = BTreeSet::new();
        for pattern in patterns {
            match self
                .routes
                .pattern_callflows(pattern)
                .find(|id| *id != except)
            {
                Some(holder) => {
                    found.insert(pattern.as_str(), holder);
                }
                None => {
                    missing.insert(pattern.as_str());
                }
            }
        }
        // Only an account with patterns that do not compile can hold a
        // copy the table does not show.
        if !missing.is_empty() && self.listed_totals().1 != self.routes.len().1 {
            for (id, callflow) in &self.callflows {
                if id == except {
                    continue;
                }
                for pattern in &callflow.patterns {
                    if let Some(source) = missing.take(pattern.as_str()) {
                        found.insert(source, id);
                    }
                }
            }
        }
        found
    }

    /// A document of the given type and id.
    pub fn document(&self, doc_type: &str, id: &str) -> Option<&Document> {
        self.documents.get(doc_type)?.get(id)
    }

    /// The account with one document replaced by `text` (or removed: `None`)
    /// and the account's diagnostics updated, without parsing, checking or
    /// routing any other document again: what a write into a large account
    /// needs (see `benches/routing.rs`). `path` is the document's file as
    /// the store shows it; `diagnostics`, the account's current ones (every
    /// file); `catalog`, the other accounts.
    ///
    /// `None` when only a full rebuild of the account gives the same
    /// answer as [`Catalog::build`]: `account.json` changed, the account has
    /// `unique` or cross-account conflicts, or the new callflow would take a
    /// number or pattern from another callflow.
    pub fn with_document(
        &self,
        (doc_type, id, path): (&DocType, &DocId, &str),
        text: Option<&str>,
        diagnostics: &[Diagnostic],
        modules: &dyn Modules,
        catalog: &Catalog,
    ) -> Option<(AccountFlows, Vec<Diagnostic>)> {
        let mut next = AccountFlows {
            account: self.account.clone(),
            callflows: BTreeMap::new(),
            documents: BTreeMap::new(),
            routes: self.routes.clone(),
            files: BTreeMap::new(),
        };
        let file = text.map(|text| SourceFile {
            path: path.to_owned(),
            text: text.to_owned(),
        });
        let mut kept: Vec<Diagnostic> = diagnostics
            .iter()
            .filter(|d| d.file != path)
            .cloned()
            .collect();
        if doc_type.as_str() == crate::store::MEDIA && file.is_some() {
            // Its audio beside it is no longer "audio without a media
            // document".
            if let Some(stem) = path.strip_suffix(".json") {
                let audio = format!("{stem}.wav");
                kept.retain(|d| !(d.code == Code::IgnoredFile && d.file == audio));
            }
        }
        if doc_type.as_str() != crate::store::CALLFLOWS {
            let mut documents = self.documents.clone();
            let of_type = documents.entry(doc_type.clone()).or_default();
            of_type.remove(id);
            if let Some(file) = &file {
                let (doc, diags) = document_of(doc_type, id, file, modules);
                kept.extend(diags);
                if let Some(doc) = doc {
                    of_type.insert(id.clone(), doc);
                }
            }
            next.callflows.clone_from(&self.callflows);
            next.files.clone_from(&self.files);
            next.documents = documents;
            kept.sort_by(|a, b| a.file.cmp(&b.file));
            return Some((next, kept));
        }
        self.with_callflow(next, (id, path), file.as_ref(), kept, modules, catalog)
    }

    /// [`AccountFlows::with_document`] for a callflow: `next` is the
    /// account so far (its route table still the old one), `kept` the
    /// diagnostics of the other files.
    fn with_callflow(
        &self,
        mut next: AccountFlows,
        (id, path): (&DocId, &str),
        file: Option<&SourceFile>,
        mut kept: Vec<Diagnostic>,
        modules: &dyn Modules,
        catalog: &Catalog,
    ) -> Option<(AccountFlows, Vec<Diagnostic>)> {
        let conflicted = |d: &Diagnostic| {
            matches!(d.code, Code::Unique | Code::NumberInOtherAccount)
                || (d.code == Code::Limit && matches!(d.pointer.as_str(), "/numbers" | "/patterns"))
        };
        if kept.iter().any(conflicted) {
            return None;
        }
        let old = self.callflows.get(id).map(AsRef::as_ref);
        let (numbers, patterns) = self.listed_totals();
        let mut totals = Totals {
            numbers: numbers.saturating_sub(old.map_or(0, |c| c.numbers.len())),
            patterns: patterns.saturating_sub(old.map_or(0, |c| c.patterns.len())),
        };
        let (new, mut found) = match file {
            Some(file) => callflow_of(id, file, &mut totals).unwrap_or_default(),
            None => (None, Vec::new()),
        };
        if found.iter().any(conflicted) {
            // Past an account limit: which callflow loses is a matter of
            // id order over the whole account.
            return None;
        }
        let normalizer = self.routes.normalizer();
        let claimed_elsewhere = new.iter().flat_map(|c| &c.numbers).any(|number| {
            let key = normalizer.normalize(number);
            catalog
                .number_elsewhere(&key, self.account.id.as_str())
                .is_some()
        });
        if claimed_elsewhere {
            return None;
        }
        let (routes, conflicts) = match (old, &new) {
            (None, None) => (self.routes.clone(), Vec::new()),
            _ => self.routes.replace(old, new.as_ref())?,
        };
        next.routes = routes;
        next.callflows.clone_from(&self.callflows);
        next.files.clone_from(&self.files);
        next.documents.clone_from(&self.documents);
        let existed = old.is_some();
        if let Some(callflow) = new {
            next.callflows.insert(id.clone(), Arc::new(callflow));
            next.files.insert(id.clone(), path.to_owned());
        } else {
            next.callflows.remove(id);
            next.files.remove(id);
        }
        let exists = |target: &str| next.callflows.contains_key(target);
        if let Some(callflow) = next.callflows.get(id) {
            let mut checked = check_nodes(callflow, &exists, modules);
            if let Some(metaflow) = &callflow.metaflow {
                checked.extend(check_metaflow_nodes(metaflow, "/metaflow", modules));
            }
            found.extend(checked.into_iter().map(|d| d.in_file(path)));
        }
        found.extend(conflict_diagnostics(
            conflicts,
            &next.callflows,
            &next.files,
        ));
        if existed != next.callflows.contains_key(id) {
            // Callflows that branch here gain or lose their target.
            for (other, callflow) in &next.callflows {
                if other == id || !branches_to(callflow, id) {
                    continue;
                }
                let Some(file) = next.files.get(other) else {
                    continue;
                };
                kept.retain(|d| !(d.file == *file && d.code == Code::MissingCallflow));
                found.extend(
                    check_nodes(callflow, &exists, modules)
                        .into_iter()
                        .filter(|d| d.code == Code::MissingCallflow)
                        .map(|d| d.in_file(file)),
                );
            }
        }
        kept.extend(found);
        kept.sort_by(|a, b| a.file.cmp(&b.file));
        Some((next, kept))
    }
}

/// Whether a node of `callflow` is a `callflow` node naming `target`.
fn branches_to(callflow: &Callflow, target: &DocId) -> bool {
    let mut found = false;
    if let Some(flow) = &callflow.flow {
        flow.walk("", &mut |_, node| {
            if let Node::Module(node) = node
                && node.module == "callflow"
                && node.data.get("id").and_then(Value::as_str) == Some(target.as_str())
            {
                found = true;
            }
        });
    }
    found
}

fn build_account(
    source: &AccountSource,
    modules: &dyn Modules,
    diagnostics: &mut Vec<Diagnostic>,
) -> AccountFlows {
    let account = match &source.account {
        None => Account::new(source.id.clone()),
        Some(file) => {
            let (account, diags) = parse_account(&source.id, &file.text);
            diagnostics.extend(diags.into_iter().map(|d| d.in_file(&file.path)));
            account
        }
    };

    let mut callflows = BTreeMap::new();
    let mut files = BTreeMap::new();
    let mut totals = Totals::default();
    for (id, file) in &source.callflows {
        let Some((callflow, diags)) = callflow_of(id, file, &mut totals) else {
            continue;
        };
        diagnostics.extend(diags);
        if let Some(callflow) = callflow {
            callflows.insert(id.clone(), Arc::new(callflow));
            files.insert(id.clone(), file.path.clone());
        }
    }

    if let (Some(metaflows), Some(file)) = (&account.metaflows, &source.account) {
        diagnostics.extend(
            check_metaflow_nodes(metaflows, "/metaflows", modules)
                .into_iter()
                .map(|d| d.in_file(&file.path)),
        );
    }

    let mut documents: BTreeMap<DocType, BTreeMap<DocId, Document>> = BTreeMap::new();
    for (doc_type, id, file) in &source.documents {
        let (doc, diags) = document_of(doc_type, id, file, modules);
        diagnostics.extend(diags);
        if let Some(doc) = doc {
            documents
                .entry(doc_type.clone())
                .or_default()
                .insert(id.clone(), doc);
        }
    }

    let (routes, conflicts) = RouteTable::build(&account, callflows.values().map(AsRef::as_ref));
    diagnostics.extend(conflict_diagnostics(conflicts, &callflows, &files));

    for (id, callflow) in &callflows {
        let exists = |target: &str| callflows.contains_key(target);
        let mut found = check_nodes(callflow, &exists, modules);
        if let Some(metaflow) = &callflow.metaflow {
            found.extend(check_metaflow_nodes(metaflow, "/metaflow", modules));
        }
        diagnostics.extend(found.into_iter().map(|d| d.in_file(&files[id])));
    }

    AccountFlows {
        account,
        callflows,
        documents,
        routes,
        files,
    }
}

/// The `unique` errors of route-table conflicts, in the loser's file.
fn conflict_diagnostics(
    conflicts: Vec<crate::routing::Conflict>,
    callflows: &BTreeMap<DocId, Arc<Callflow>>,
    files: &BTreeMap<DocId, String>,
) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    for conflict in conflicts {
        let (Some(holder), Some(file)) = (
            callflows.get(&conflict.holder_id),
            files.get(&conflict.callflow_id),
        ) else {
            continue;
        };
        let (what, pointer) = if conflict.is_pattern {
            ("Pattern", "/patterns")
        } else {
            ("Number", "/numbers")
        };
        found.push(
            Diagnostic::error(
                Code::Unique,
                pointer,
                format!(
                    "{what} {} exists in callflow {} {}",
                    conflict.value,
                    holder.id,
                    holder.display_name()
                ),
            )
            .in_file(file),
        );
    }
    found
}

/// The numbers and patterns of an account's callflows so far, against
/// [`DocumentLimits`]' per-account limits.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    numbers: usize,
    patterns: usize,
}

impl Totals {
    /// Counts `callflow` in, unless it would take the account past a limit:
    /// then its numbers (or patterns) are left out, with an error.
    fn admit(&mut self, callflow: &mut Callflow, diags: &mut Vec<Diagnostic>) {
        let limits = DocumentLimits::DEFAULT;
        for (list, total, max, what, name) in [
            (
                &mut callflow.numbers,
                &mut self.numbers,
                limits.max_numbers_per_account,
                "numbers",
                "max_numbers_per_account",
            ),
            (
                &mut callflow.patterns,
                &mut self.patterns,
                limits.max_patterns_per_account,
                "patterns",
                "max_patterns_per_account",
            ),
        ] {
            if *total + list.len() > max {
                diags.push(Diagnostic::error(
                    Code::Limit,
                    format!("/{what}"),
                    account_limit_message(
                        list.len(),
                        what,
                        *total,
                        max,
                        name,
                        "none of them is routed",
                    ),
                ));
                list.clear();
            }
            *total += list.len();
        }
    }
}

/// Why a callflow's numbers or patterns are not routed: the account would
/// hold more than its limit.
pub fn account_limit_message(
    count: usize,
    what: &str,
    others: usize,
    max: usize,
    name: &str,
    outcome: &str,
) -> String {
    format!(
        "the account's other callflows have {others} {what}; these {count} would take it past \
         the limit of {max} ({name}): {outcome}"
    )
}

/// One callflow file parsed, its diagnostics in its file; `None` when it
/// is soft-deleted (kept on disk to recover, invisible otherwise).
fn callflow_of(
    id: &DocId,
    file: &SourceFile,
    totals: &mut Totals,
) -> Option<(Option<Callflow>, Vec<Diagnostic>)> {
    let (mut callflow, mut diags) = parse_callflow(id, &file.text);
    if callflow.as_ref().is_some_and(Callflow::is_deleted) {
        return None;
    }
    if let Some(callflow) = &mut callflow {
        totals.admit(callflow, &mut diags);
    }
    let diags = diags.into_iter().map(|d| d.in_file(&file.path)).collect();
    Some((callflow, diags))
}

/// What `callflow check` finds in an account document's text, its
/// pointers relative to the document: the one check of an API write of
/// the account (`PUT`/`POST`/`PATCH` on the account or its metaflows).
pub fn check_account_text(id: &AccountId, text: &str, modules: &dyn Modules) -> Vec<Diagnostic> {
    let (account, mut diags) = parse_account(id, text);
    if let Some(metaflows) = &account.metaflows {
        diags.extend(check_metaflow_nodes(metaflows, "/metaflows", modules));
    }
    diags
}

/// What `callflow check` finds in one document of type `doc_type` (not a
/// callflow), its pointers relative to the document: the one check of an
/// API write of such a document.
pub fn check_document_text(
    doc_type: &DocType,
    id: &DocId,
    text: &str,
    modules: &dyn Modules,
) -> Vec<Diagnostic> {
    let file = SourceFile {
        path: String::new(),
        text: text.to_owned(),
    };
    document_of(doc_type, id, &file, modules).1
}

/// One other document parsed (with its endpoint metaflows checked), its
/// diagnostics in its file; no document when it is soft-deleted (kept on
/// disk to recover, invisible to calls and listings, as callflows are).
fn document_of(
    doc_type: &DocType,
    id: &DocId,
    file: &SourceFile,
    modules: &dyn Modules,
) -> (Option<Document>, Vec<Diagnostic>) {
    let (doc, mut diags) = parse_document(doc_type, id, &file.text);
    if doc
        .as_ref()
        .is_some_and(|doc| doc.body.get("pvt_deleted") == Some(&Value::Bool(true)))
    {
        return (None, Vec::new());
    }
    if let Some(doc) = &doc
        && matches!(doc_type.as_str(), "devices" | "users")
    {
        check_endpoint_metaflows(&doc.body, modules, &mut diags);
    }
    if let Some(doc) = &doc
        && doc_type.as_str() == "functions"
    {
        check_function_source(&doc.body, modules, &mut diags);
    }
    let diags = diags.into_iter().map(|d| d.in_file(&file.path)).collect();
    (doc, diags)
}

/// A function document's Luau source must compile (the schema has checked
/// its `language` and that `source` is a string).
fn check_function_source(body: &Object, modules: &dyn Modules, diags: &mut Vec<Diagnostic>) {
    let Some(Value::String(source)) = body.get("source") else {
        return;
    };
    if body
        .get("language")
        .is_some_and(|language| language != "luau")
    {
        return;
    }
    if let Err((line, message)) = modules.compile_function(source) {
        let at = line.map_or_else(String::new, |line| format!(" (line {line} of the source)"));
        diags.push(Diagnostic::error(
            Code::Script,
            "/source",
            format!("the function does not compile{at}: {message}"),
        ));
    }
}

/// E.164 numbers (`+...`) claimed by callflows of two accounts. A call from
/// a trunk is routed to the account whose callflow claims the dialled
/// number, by number alone (`live::directory::number_owner`), so such a
/// number is ambiguous: the first account in id order keeps it, every later
/// claimant gets an error. Extensions and `*` codes are per account: any
/// account may have its own 1000.
fn check_numbers_across_accounts(
    accounts: &BTreeMap<AccountId, Arc<AccountFlows>>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let mut holders: BTreeMap<&str, (&AccountId, &DocId)> = BTreeMap::new();
    for (account, flows) in accounts {
        for number in flows.routes.numbers().filter(|n| n.starts_with('+')) {
            let Some(callflow) = flows.routes.number_callflow(number) else {
                continue;
            };
            let Some((holder, holder_callflow)) = holders.get(number) else {
                holders.insert(number, (account, callflow));
                continue;
            };
            let Some(file) = flows.files.get(callflow) else {
                continue;
            };
            diagnostics.push(
                Diagnostic::error(
                    Code::NumberInOtherAccount,
                    "/numbers",
                    claimed_elsewhere(number, holder, holder_callflow),
                )
                .in_file(file),
            );
        }
    }
}

/// Realms two accounts have (after trimming, in any case). The SIP
/// directory finds a device by realm and user name (`live::directory`), and
/// the first account in id order wins: the other's devices could not log
/// in, or logins would reach the wrong account. An account without `realm`
/// has its id as realm and keeps it; of accounts that name it in `realm`,
/// the first in id order keeps it when no account has it as id. Every
/// other one gets an error in its `account.json`.
fn check_realms_across_accounts(
    accounts: &BTreeMap<AccountId, Arc<AccountFlows>>,
    account_files: &BTreeMap<AccountId, String>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    // Lower-case realm → the accounts with it: those that have it as id
    // first, then in id order.
    let mut by_realm: BTreeMap<String, Vec<(bool, &AccountId, String)>> = BTreeMap::new();
    for (id, flows) in accounts {
        let realm = flows.realm();
        let named = realm != id.as_str();
        by_realm
            .entry(realm.trim().to_ascii_lowercase())
            .or_default()
            .push((named, id, realm));
    }
    for holders in by_realm.values_mut() {
        holders.sort_by_key(|(named, id, _)| (*named, *id));
        let Some(((_, first, _), others)) = holders.split_first() else {
            continue;
        };
        for (_, id, realm) in others {
            let Some(file) = account_files.get(*id) else {
                continue;
            };
            diagnostics.push(
                Diagnostic::error(
                    Code::RealmInOtherAccount,
                    "/realm",
                    realm_elsewhere(realm.trim(), first),
                )
                .in_file(file),
            );
        }
    }
}

/// The message of [`Code::RealmInOtherAccount`].
pub fn realm_elsewhere(realm: &str, account: &AccountId) -> String {
    format!(
        "realm {realm} is also the realm of account {account}: SIP devices of one could not \
         log in, or would log in to the other"
    )
}

/// [`realm_elsewhere`] as a tenant sees it, from its message: which
/// account has the realm is not its business.
#[must_use]
pub fn realm_tenant_message(message: &str) -> String {
    let realm = message.split(' ').nth(1).unwrap_or_default();
    format!("realm {realm} is already in use by another account")
}

/// The message of [`Code::NumberInOtherAccount`].
pub fn claimed_elsewhere(number: &str, account: &AccountId, callflow: &DocId) -> String {
    format!(
        "{number} is also claimed by account {account} (callflow {callflow}): a call from a \
         trunk could reach either"
    )
}

/// [`claimed_elsewhere`] as a tenant sees it: which account and callflow
/// hold the number is not its business (the operator's `check` shows them).
pub fn claimed_by_another_account(number: &str) -> String {
    format!("{number} is also claimed by another account: a call from a trunk could reach either")
}

/// A [`Code::NumberInOtherAccount`] message with the other account's name
/// taken out (the number is its first word).
#[must_use]
pub fn tenant_message(message: &str) -> String {
    claimed_by_another_account(message.split(' ').next().unwrap_or_default())
}

/// Checks a device's or user's `metaflows`: its structure and its modules.
fn check_endpoint_metaflows(body: &Object, modules: &dyn Modules, diags: &mut Vec<Diagnostic>) {
    match body.get("metaflows") {
        None => {}
        Some(Value::Object(metaflows)) => {
            check_metaflows(metaflows, "/metaflows", diags);
            diags.extend(check_metaflow_nodes(metaflows, "/metaflows", modules));
        }
        Some(other) => diags.push(Diagnostic::error(
            Code::Type,
            "/metaflows",
            format!(
                "`metaflows` must be an object, found {}",
                crate::model::type_name(other)
            ),
        )),
    }
}

/// Checks the nodes of a `metaflows` object at `pointer` (its `numbers` and
/// `patterns` trees): each module is a metaflow module, and its data fits
/// that module's schema. The diagnostics have no file yet.
pub fn check_metaflow_nodes(
    metaflows: &Object,
    pointer: &str,
    modules: &dyn Modules,
) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    for list in ["numbers", "patterns"] {
        let Some(Value::Object(entries)) = metaflows.get(list) else {
            continue;
        };
        let base = crate::model::diagnostic::pointer_push(pointer, list);
        for (key, value) in entries {
            let (node, _) = parse_flow(value);
            let top = crate::model::diagnostic::pointer_push(&base, key);
            node.walk(&top, &mut |at, node| {
                let Node::Module(node) = node else { return };
                if !modules.provides_metaflow(&node.module) {
                    let effect = if at == top {
                        "pressing this code does nothing"
                    } else {
                        "the metaflow stops here"
                    };
                    found.push(Diagnostic::warning(
                        Code::UnknownModule,
                        format!("{at}/module"),
                        format!(
                            "no metaflow script provides module {:?}: {effect}",
                            node.module
                        ),
                    ));
                    return;
                }
                if let Some(schema) = modules.metaflow_schema(&node.module) {
                    let data = Value::Object(node.data.clone());
                    crate::schema::check(schema, &data, &format!("{at}/data"), &mut found);
                }
            });
        }
    }
    found
}

/// Checks every node of `callflow`: its module exists, its data fits the
/// module's schema, and a `callflow` node's `data.id` names a callflow
/// `exists` knows. The diagnostics have no file yet.
pub fn check_nodes(
    callflow: &Callflow,
    exists: &dyn Fn(&str) -> bool,
    modules: &dyn Modules,
) -> Vec<Diagnostic> {
    let Some(flow) = &callflow.flow else {
        return Vec::new();
    };
    let mut found = Vec::new();
    flow.walk("/flow", &mut |pointer, node| {
        let Node::Module(node) = node else { return };
        if !modules.provides(&node.module) {
            let kazoo = if crate::model::kazoo::is_kazoo_module(&node.module) {
                " (a Kazoo module no script implements yet)"
            } else {
                ""
            };
            found.push(Diagnostic::warning(
                Code::UnknownModule,
                format!("{pointer}/module"),
                format!(
                    "no script provides module {:?}{kazoo}: a call skips this node to `_`",
                    node.module
                ),
            ));
            return;
        }
        if let Some(schema) = modules.schema(&node.module) {
            let data = Value::Object(node.data.clone());
            crate::schema::check(schema, &data, &format!("{pointer}/data"), &mut found);
        }
        if node.module != "callflow" || node.skips() {
            return;
        }
        if let Some(Value::String(target)) = node.data.get("id")
            && !exists(target) {
                found.push(Diagnostic::warning(
                    Code::MissingCallflow,
                    format!("{pointer}/data/id"),
                    format!(
                        "callflow {target:?} does not exist in this account: a call here continues with `_`"
                    ),
                ));
            }
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tenant sees the realm it cannot have, not which account has it.
    #[test]
    fn the_tenant_message_of_a_realm_names_no_account() {
        let holder = AccountId::new("acme").unwrap();
        let message = realm_elsewhere("sip.example.com", &holder);
        assert!(message.contains("acme"), "{message}");
        assert_eq!(
            realm_tenant_message(&message),
            "realm sip.example.com is already in use by another account"
        );
    }
}
