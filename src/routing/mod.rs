//! Routing: which callflow of an account serves a dialled number, exactly as
//! Kazoo's `cf_flow:lookup/2` and `cf_route_req` decide it.
//!
//! 1. The dialled number is normalized ([`Normalizer`]); `*` codes are kept.
//! 2. An exact entry of some callflow's `numbers` wins (on duplicates, the
//!    lowest callflow id, like `CouchDB`'s view order).
//! 3. Else the `patterns`: the longest match wins. Length is the whole match
//!    for a pattern without groups and the longest capture group for a pattern
//!    with groups; the first match found is accepted even when empty. Ties go
//!    to the pattern that sorts last (byte order), then to the higher callflow
//!    id: Kazoo evaluates the `CouchDB` view in reverse and keeps the earlier of
//!    equal candidates. Patterns that do not compile are skipped.
//! 4. Else the `no_match` callflow, only when the number is all digits with at
//!    most one leading `+`.
//!
//! A callflow that lists `no_match` among its numbers serves on-net callers
//! only, however it was found: off-net calls get "not found".
//!
//! Candidate patterns are found with one `RegexSet` scan rather than by trying
//! every regex in turn; only the patterns that match are run again to score
//! them.

mod normalize;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use regex::bytes::{RegexSet, RegexSetBuilder};
use serde::Serialize;

pub use normalize::Normalizer;

use crate::ids::DocId;
use crate::model::{Account, Callflow, NO_MATCH};
use crate::pattern::{self, Pattern};

/// Where a call comes from, for the `no_match` permission rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Inception {
    /// From a device or user of the account (Kazoo: an authorizing type is set).
    #[default]
    Onnet,
    /// From a carrier (Kazoo: authorizing type `resource` or none).
    Offnet,
}

impl Inception {
    pub fn as_str(self) -> &'static str {
        match self {
            Inception::Onnet => "onnet",
            Inception::Offnet => "offnet",
        }
    }
}

/// How a number found its callflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Matched {
    Number,
    Pattern,
    NoMatch,
}

impl Matched {
    pub fn as_str(self) -> &'static str {
        match self {
            Matched::Number => "number",
            Matched::Pattern => "pattern",
            Matched::NoMatch => "no_match",
        }
    }
}

/// The callflow chosen for a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub callflow_id: DocId,
    /// The normalized number that was looked up.
    pub number: String,
    pub matched: Matched,
    /// The pattern, when `matched` is [`Matched::Pattern`].
    pub pattern: Option<String>,
    /// Kazoo's `capture_group`; `None` when empty.
    pub capture_group: Option<String>,
    /// Named groups that captured something, in pattern order.
    pub capture_groups: Vec<(String, String)>,
    /// Whether the callflow is the account's `no_match` callflow (lists
    /// `no_match` among its numbers), however it was found.
    pub no_match: bool,
}

/// Why a lookup found nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("an empty number cannot be routed")]
    EmptyNumber,
    #[error("no callflow for {number}: {reason}")]
    NotFound { number: String, reason: NotFound },
}

/// The detail of a "not found".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotFound {
    /// No number or pattern matched and the number is not all digits, so
    /// `no_match` was not tried.
    NotDigits,
    /// No number or pattern matched and the account has no `no_match` callflow.
    NoNoMatch,
    /// The number led to the `no_match` callflow, which off-net callers may not use.
    OffnetNoMatch,
}

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotFound::NotDigits => {
                "no number or pattern matches, and only all-digit numbers fall back to no_match"
            }
            NotFound::NoNoMatch => {
                "no number or pattern matches, and the account has no no_match callflow"
            }
            NotFound::OffnetNoMatch => "the no_match callflow serves on-net callers only",
        })
    }
}

/// Two callflows claim the same number or pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The callflow that loses the number (and gets the error).
    pub callflow_id: DocId,
    /// The normalized number, or the pattern.
    pub value: String,
    pub is_pattern: bool,
    /// The callflow that keeps it.
    pub holder_id: DocId,
}

/// A compiled route table for one account. Immutable; rebuilt when documents change.
#[derive(Debug, Clone)]
pub struct RouteTable {
    normalizer: Normalizer,
    numbers: Numbers,
    /// Compiled patterns in evaluation order (see the module docs for ties),
    /// shared by successive tables while they do not change.
    patterns: Arc<Patterns>,
    /// One automaton over all `patterns`, same order.
    set: Option<RegexSet>,
}

/// Compiled patterns with their callflows, in evaluation order.
type Patterns = Vec<(Pattern, Target)>;

/// Shards of the exact numbers map: a write that changes a few numbers
/// copies the few shards they fall in, not the whole map (100,000 numbers
/// take 256 shards of about 400).
const SHARDS: usize = 256;

/// The exact numbers of a table, sharded by a fixed hash of the number
/// (FNV-1a: the same shards on every run and machine), each shard shared
/// between the tables of successive generations until a write changes it.
#[derive(Debug, Clone)]
struct Numbers {
    shards: Vec<Arc<BTreeMap<String, Target>>>,
    len: usize,
}

impl Default for Numbers {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Arc::new(BTreeMap::new())).collect(),
            len: 0,
        }
    }
}

impl Numbers {
    fn shard(key: &str) -> usize {
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
        // The remainder of a division by 256 fits a usize.
        usize::try_from(hash % SHARDS as u64).unwrap_or(0)
    }

    fn get(&self, key: &str) -> Option<&Target> {
        self.shards[Self::shard(key)].get(key)
    }

    fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    fn insert(&mut self, key: String, target: Target) {
        let shard = Arc::make_mut(&mut self.shards[Self::shard(&key)]);
        if shard.insert(key, target).is_none() {
            self.len += 1;
        }
    }

    fn remove(&mut self, key: &str) {
        let shard = Arc::make_mut(&mut self.shards[Self::shard(key)]);
        if shard.remove(key).is_some() {
            self.len -= 1;
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn sorted_keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self
            .shards
            .iter()
            .flat_map(|shard| shard.keys().map(String::as_str))
            .collect();
        keys.sort_unstable();
        keys
    }
}

#[derive(Debug, Clone)]
struct Target {
    callflow_id: DocId,
    no_match: bool,
}

impl RouteTable {
    /// Builds the table of one account. `callflows` may come in any order.
    /// Returns the conflicts found (numbers and patterns claimed twice).
    pub fn build<'a>(
        account: &Account,
        callflows: impl IntoIterator<Item = &'a Callflow>,
    ) -> (Self, Vec<Conflict>) {
        let normalizer = Normalizer::for_account(account);
        let mut callflows: Vec<&Callflow> = callflows.into_iter().collect();
        callflows.sort_by(|a, b| a.id.cmp(&b.id));

        let mut numbers = Numbers::default();
        let mut by_pattern: BTreeMap<&str, Vec<&Callflow>> = BTreeMap::new();
        let mut conflicts = Vec::new();
        for callflow in &callflows {
            let target = Target {
                callflow_id: callflow.id.clone(),
                no_match: callflow.is_no_match(),
            };
            for number in &callflow.numbers {
                let key = normalizer.normalize(number);
                match numbers.get(&key) {
                    None => {
                        numbers.insert(key, target.clone());
                    }
                    Some(holder) if holder.callflow_id == callflow.id => {}
                    Some(holder) => conflicts.push(Conflict {
                        callflow_id: callflow.id.clone(),
                        value: key,
                        is_pattern: false,
                        holder_id: holder.callflow_id.clone(),
                    }),
                }
            }
            for source in &callflow.patterns {
                let holders = by_pattern.entry(source.as_str()).or_default();
                if let Some(holder) = holders.first()
                    && holder.id != callflow.id
                {
                    conflicts.push(Conflict {
                        callflow_id: callflow.id.clone(),
                        value: source.clone(),
                        is_pattern: true,
                        holder_id: holder.id.clone(),
                    });
                }
                if !holders.iter().any(|c| c.id == callflow.id) {
                    holders.push(callflow);
                }
            }
        }

        // Evaluation order: patterns sorted descending, then callflow ids
        // descending, so the first of equally good candidates is the one
        // Kazoo's reversed view keeps.
        let mut patterns = Vec::new();
        for (source, holders) in by_pattern.iter().rev() {
            let Ok(compiled) = pattern::compile_route(source) else {
                continue;
            };
            for callflow in holders.iter().rev() {
                patterns.push((
                    compiled.clone(),
                    Target {
                        callflow_id: callflow.id.clone(),
                        no_match: callflow.is_no_match(),
                    },
                ));
            }
        }
        let set = build_set(&patterns);
        let table = Self {
            normalizer,
            numbers,
            patterns: Arc::new(patterns),
            set,
        };
        (table, conflicts)
    }

    /// The table with callflow `old` replaced by `new` (either may be
    /// absent: a create, a delete), without touching the other callflows'
    /// entries: what an API write into a large account needs. The numbers
    /// map is copied and edited; the pattern automaton is reused when the
    /// callflow's patterns did not change, else rebuilt from the patterns
    /// already compiled plus the new ones.
    ///
    /// `None` when only [`RouteTable::build`] gives the right answer: `old`
    /// held a number or pattern another callflow also claims (that one
    /// would take it over), which never happens in an account without
    /// `unique` conflicts. The conflicts returned are the new callflow's.
    pub fn replace(
        &self,
        old: Option<&Callflow>,
        new: Option<&Callflow>,
    ) -> Option<(Self, Vec<Conflict>)> {
        let id = old.or(new).map(|c| c.id.clone())?;
        let mut numbers = self.numbers.clone();
        let mut conflicts = Vec::new();
        if let Some(old) = old {
            for number in &old.numbers {
                let key = self.normalizer.normalize(number);
                match numbers.get(&key) {
                    Some(holder) if holder.callflow_id == id => {
                        numbers.remove(&key);
                    }
                    // Someone else holds it: `old` lost it in a conflict.
                    Some(_) => return None,
                    None => {}
                }
            }
        }
        if let Some(new) = new {
            let target = Target {
                callflow_id: id.clone(),
                no_match: new.is_no_match(),
            };
            for number in &new.numbers {
                let key = self.normalizer.normalize(number);
                match numbers.get(&key) {
                    Some(holder) if holder.callflow_id != id => {
                        if id < holder.callflow_id {
                            // The lower id keeps a number claimed twice.
                            return None;
                        }
                        conflicts.push(Conflict {
                            callflow_id: id.clone(),
                            value: key,
                            is_pattern: false,
                            holder_id: holder.callflow_id.clone(),
                        });
                    }
                    _ => {
                        numbers.insert(key, target.clone());
                    }
                }
            }
        }
        let old_patterns = old.map_or(&[][..], |c| c.patterns.as_slice());
        let new_patterns = new.map_or(&[][..], |c| c.patterns.as_slice());
        let no_match = new.is_some_and(Callflow::is_no_match);
        let (patterns, set) =
            self.replace_patterns(&id, (old_patterns, new_patterns), no_match, &mut conflicts)?;
        let table = Self {
            normalizer: self.normalizer.clone(),
            numbers,
            patterns,
            set,
        };
        Some((table, conflicts))
    }

    /// The pattern entries and automaton of [`RouteTable::replace`]: the
    /// same ones when the callflow's patterns did not change.
    fn replace_patterns(
        &self,
        id: &DocId,
        (old_patterns, new_patterns): (&[String], &[String]),
        no_match: bool,
        conflicts: &mut Vec<Conflict>,
    ) -> Option<(Arc<Patterns>, Option<RegexSet>)> {
        Some(if old_patterns == new_patterns {
            // Shared with another callflow: who wins, and the conflict to
            // report, are a full build's to say.
            if new_patterns
                .iter()
                .any(|source| self.pattern_callflows(source).any(|other| other != id))
            {
                return None;
            }
            let changed = |(_, target): &(Pattern, Target)| {
                target.callflow_id == *id && target.no_match != no_match
            };
            let mut patterns = Arc::clone(&self.patterns);
            if patterns.iter().any(changed) {
                for (_, target) in Arc::make_mut(&mut patterns) {
                    if target.callflow_id == *id {
                        target.no_match = no_match;
                    }
                }
            }
            (patterns, self.set.clone())
        } else {
            let mut by_pattern: BTreeMap<&str, Vec<Target>> = BTreeMap::new();
            let mut compiled: BTreeMap<&str, &Pattern> = BTreeMap::new();
            for (pattern, target) in self.patterns.iter() {
                compiled.insert(pattern.as_str(), pattern);
                if target.callflow_id == *id {
                    continue;
                }
                by_pattern
                    .entry(pattern.as_str())
                    .or_default()
                    .push(target.clone());
            }
            for source in old_patterns {
                if by_pattern.contains_key(source.as_str()) {
                    // Someone else claims one of `old`'s patterns.
                    return None;
                }
            }
            // The new patterns compiled once. One that does not compile is
            // not in the table, and neither is another callflow's copy of
            // it: only a full build sees such a pair as a conflict.
            let mut fresh: BTreeMap<&str, Pattern> = BTreeMap::new();
            for source in new_patterns {
                if !compiled.contains_key(source.as_str()) {
                    fresh.insert(source.as_str(), pattern::compile_route(source).ok()?);
                }
            }
            for source in new_patterns {
                let holders = by_pattern.entry(source.as_str()).or_default();
                if let Some(holder) = holders
                    .iter()
                    .max_by(|a, b| a.callflow_id.cmp(&b.callflow_id))
                {
                    if *id < holder.callflow_id {
                        return None;
                    }
                    conflicts.push(Conflict {
                        callflow_id: id.clone(),
                        value: source.clone(),
                        is_pattern: true,
                        holder_id: holder.callflow_id.clone(),
                    });
                }
                holders.push(Target {
                    callflow_id: id.clone(),
                    no_match,
                });
            }
            let mut patterns = Vec::new();
            for (source, holders) in by_pattern.iter_mut().rev() {
                let Some(pattern) = compiled.get(source).copied().or_else(|| fresh.get(source))
                else {
                    continue;
                };
                holders.sort_by(|a, b| b.callflow_id.cmp(&a.callflow_id));
                for target in holders.drain(..) {
                    patterns.push((pattern.clone(), target));
                }
            }
            let set = build_set(&patterns);
            (Arc::new(patterns), set)
        })
    }

    /// The callflows claiming a pattern exactly as written.
    pub fn pattern_callflows<'a>(
        &'a self,
        source: &'a str,
    ) -> impl Iterator<Item = &'a DocId> + 'a {
        // Patterns are in descending source order.
        let start = self
            .patterns
            .partition_point(|(pattern, _)| pattern.as_str() > source);
        self.patterns[start..]
            .iter()
            .take_while(move |(pattern, _)| pattern.as_str() == source)
            .map(|(_, target)| &target.callflow_id)
    }

    /// The normalizer of the account.
    pub fn normalizer(&self) -> &Normalizer {
        &self.normalizer
    }

    /// The normalized numbers of the table, in order.
    pub fn numbers(&self) -> impl Iterator<Item = &str> {
        self.numbers.sorted_keys().into_iter()
    }

    /// Whether a callflow claims this normalized number exactly.
    pub fn has_number(&self, number: &str) -> bool {
        self.numbers.contains_key(number)
    }

    /// The callflow that claims this normalized number exactly.
    pub fn number_callflow(&self, number: &str) -> Option<&DocId> {
        self.numbers.get(number).map(|target| &target.callflow_id)
    }

    /// Number of distinct numbers and compiled patterns in the table.
    pub fn len(&self) -> (usize, usize) {
        (self.numbers.len(), self.patterns.len())
    }

    /// Routes a dialled number for a call of the given inception: normalize,
    /// look up, apply the `no_match` permission rule.
    pub fn resolve(&self, dialled: &str, inception: Inception) -> Result<Route, RouteError> {
        let number = self.normalizer.normalize(dialled);
        let route = self.lookup(&number)?;
        if route.no_match && inception == Inception::Offnet {
            return Err(RouteError::NotFound {
                number,
                reason: NotFound::OffnetNoMatch,
            });
        }
        Ok(route)
    }

    /// Kazoo's `cf_flow:lookup/2` on an already normalized number, without
    /// the permission rule (modules such as a menu's hunt apply their own).
    pub fn lookup(&self, number: &str) -> Result<Route, RouteError> {
        if number.is_empty() {
            return Err(RouteError::EmptyNumber);
        }
        if let Some(target) = self.numbers.get(number) {
            return Ok(route(target, number, Matched::Number));
        }
        if number == NO_MATCH {
            return Err(RouteError::NotFound {
                number: number.to_owned(),
                reason: NotFound::NoNoMatch,
            });
        }
        if let Some(found) = self.best_pattern(number) {
            return Ok(found);
        }
        let digits = number.strip_prefix('+').unwrap_or(number);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RouteError::NotFound {
                number: number.to_owned(),
                reason: NotFound::NotDigits,
            });
        }
        match self.numbers.get(NO_MATCH) {
            Some(target) => Ok(route(target, number, Matched::NoMatch)),
            None => Err(RouteError::NotFound {
                number: number.to_owned(),
                reason: NotFound::NoNoMatch,
            }),
        }
    }

    fn best_pattern(&self, number: &str) -> Option<Route> {
        let mut best: Option<(usize, pattern::PatternMatch)> = None;
        let mut consider = |index: usize| {
            let (pattern, _) = &self.patterns[index];
            let Some(found) = pattern.find(number) else {
                return;
            };
            let better = match &best {
                None => true,
                Some((_, current)) => found.capture_group.len() > current.capture_group.len(),
            };
            if better {
                best = Some((index, found));
            }
        };
        match &self.set {
            Some(set) => set
                .matches(number.as_bytes())
                .iter()
                .for_each(&mut consider),
            None => (0..self.patterns.len()).for_each(&mut consider),
        }
        let (index, found) = best?;
        let (pattern, target) = &self.patterns[index];
        let mut route = route(target, number, Matched::Pattern);
        route.pattern = Some(pattern.as_str().to_owned());
        route.capture_group = Some(found.capture_group).filter(|c| !c.is_empty());
        route.capture_groups = found.capture_groups;
        Some(route)
    }

    /// The naive lookup Kazoo does (every regex in turn), for benchmarks and
    /// for tests that check the fast path agrees with it.
    pub fn lookup_naive(&self, number: &str) -> Option<(DocId, String)> {
        let mut best: Option<(usize, String)> = None;
        for (index, (pattern, _)) in self.patterns.iter().enumerate() {
            if let Some(found) = pattern.find(number)
                && best
                    .as_ref()
                    .is_none_or(|(_, cg)| found.capture_group.len() > cg.len())
            {
                best = Some((index, found.capture_group));
            }
        }
        best.map(|(index, cg)| (self.patterns[index].1.callflow_id.clone(), cg))
    }
}

fn route(target: &Target, number: &str, matched: Matched) -> Route {
    Route {
        callflow_id: target.callflow_id.clone(),
        number: number.to_owned(),
        matched,
        pattern: None,
        capture_group: None,
        capture_groups: Vec::new(),
        no_match: target.no_match,
    }
}

/// One `RegexSet` over every pattern. `None` (every pattern is then tried in
/// turn) only if the set exceeds its size limits, which a single pattern
/// cannot cause: each already compiled on its own.
fn build_set(patterns: &[(Pattern, Target)]) -> Option<RegexSet> {
    if patterns.is_empty() {
        return None;
    }
    let result = RegexSetBuilder::new(patterns.iter().map(|(p, _)| p.as_str()))
        .unicode(false)
        .size_limit(SET_SIZE_LIMIT)
        .dfa_size_limit(SET_DFA_SIZE_LIMIT)
        .build();
    match result {
        Ok(set) => Some(set),
        Err(err) => {
            tracing::warn!(
                patterns = patterns.len(),
                "pattern set too large for one automaton, trying patterns one by one: {err}"
            );
            None
        }
    }
}

/// Size limit of the compiled pattern set (all patterns of one account).
const SET_SIZE_LIMIT: usize = 512 << 20;
/// Cache for the lazy DFA of the pattern set.
const SET_DFA_SIZE_LIMIT: usize = 64 << 20;
