//! Routing lookup benchmark: one account with 100,000 numbers and 10,000
//! patterns; an exact hit, a pattern hit and a miss through the route table
//! (one `RegexSet` scan), next to Kazoo's loop over every regex, in the same
//! run. Also the time to build the table, which happens on every change.
//!
//! Run: `cargo bench --bench routing`

// Setup failures should stop the benchmark loudly.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::Map;

use callflow::ids::{AccountId, DocId};
use callflow::model::{Account, Callflow, ModuleNode, Node};
use callflow::routing::{Inception, RouteTable};

const CALLFLOWS: usize = 10_000;
const NUMBERS_PER_CALLFLOW: usize = 10;

/// 10,000 callflows, each with 10 numbers (DIDs) and one pattern of one of
/// four shapes seen in real accounts: feature codes, DID blocks, extension
/// ranges and international prefixes.
fn account_callflows() -> Vec<Callflow> {
    (0..CALLFLOWS)
        .map(|i| {
            let numbers = (0..NUMBERS_PER_CALLFLOW)
                .map(|j| format!("+1415{:07}", i * NUMBERS_PER_CALLFLOW + j))
                .collect();
            let pattern = match i % 4 {
                0 => format!(r"^\*{}([0-9]*)$", 1000 + i),
                1 => format!(r"^\+1{}(\d{{4}})$", 2_000_000 + i),
                2 => format!(r"^{}(\d{{2}})$", 10_000 + i),
                _ => format!(r"^011{}(\d+)$", 100_000 + i),
            };
            Callflow {
                id: DocId::new(&format!("cf{i:05}")).unwrap(),
                name: None,
                numbers,
                patterns: vec![pattern],
                flow: Some(Node::Module(ModuleNode {
                    module: "answer".into(),
                    data: Map::new(),
                    children: Vec::new(),
                    extra: Map::new(),
                })),
                featurecode: None,
                metaflow: None,
                flags: Vec::new(),
                ringback: None,
                extra: Map::new(),
            }
        })
        .collect()
}

fn routing(c: &mut Criterion) {
    let account = Account::new(AccountId::new("bench").unwrap());
    let callflows = account_callflows();
    let (table, conflicts) = RouteTable::build(&account, &callflows);
    assert!(conflicts.is_empty());
    assert_eq!(table.len(), (CALLFLOWS * NUMBERS_PER_CALLFLOW, CALLFLOWS));

    // The same three numbers for both paths.
    let exact = "+14150054321";
    let pattern_hit = "+120071214567"; // DID block ^\+12007121(\d{4})$ of cf07121
    let miss = "+19998887777";
    let hit = table.resolve(pattern_hit, Inception::Onnet).unwrap();
    assert_eq!(
        Some(hit.callflow_id.clone()),
        table.lookup_naive(pattern_hit).map(|(id, _)| id)
    );
    assert!(table.resolve(exact, Inception::Onnet).is_ok());
    assert!(table.resolve(miss, Inception::Onnet).is_err());
    assert!(table.lookup_naive(miss).is_none());

    let mut group = c.benchmark_group("lookup");
    group.bench_function("table/exact_hit", |b| {
        b.iter(|| table.resolve(black_box(exact), Inception::Onnet));
    });
    group.bench_function("table/pattern_hit", |b| {
        b.iter(|| table.resolve(black_box(pattern_hit), Inception::Onnet));
    });
    group.bench_function("table/miss", |b| {
        b.iter(|| table.resolve(black_box(miss), Inception::Onnet));
    });
    group.bench_function("naive/pattern_hit", |b| {
        b.iter(|| table.lookup_naive(black_box(pattern_hit)));
    });
    group.bench_function("naive/miss", |b| {
        b.iter(|| table.lookup_naive(black_box(miss)));
    });
    group.finish();

    let mut group = c.benchmark_group("build");
    group.sample_size(10);
    group.bench_function("table/100k_numbers_10k_patterns", |b| {
        b.iter(|| RouteTable::build(&account, black_box(&callflows)));
    });
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
