//! Flow coverage: which nodes of each callflow the traces of a test run
//! visited, and which child branches they took.
//!
//! A *node* is a module node of a callflow's `flow` (JSON Pointer
//! `/flow/children/1/...`); it is covered when a `node` event names its
//! callflow and path. A *branch* is a child key of a node leading to a
//! module node (parent pointer + key); it is taken when its child node was
//! visited. Empty children (`{}`) are not counted: reaching one runs no
//! module and leaves no event to tell it from the end of the flow. Flows
//! built by modules at run time (`inline`) are not counted either.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::{Value, json};

use crate::model::{Callflow, Node};
use crate::trace::Trace;

/// Visits per node, from traces: callflow id → pointer → count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hits {
    by_callflow: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Hits {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts the `node` events of `trace` (one account's call).
    pub fn add(&mut self, trace: &Trace) {
        for event in trace.events().iter().filter(|e| e.name == "node") {
            let field = |name: &str| event.fields.get(name).and_then(Value::as_str);
            let (Some(callflow), Some(path)) = (field("callflow_id"), field("path")) else {
                continue;
            };
            if callflow == "inline" {
                continue;
            }
            *self
                .by_callflow
                .entry(callflow.to_owned())
                .or_default()
                .entry(path.to_owned())
                .or_default() += 1;
        }
    }

    /// How often the node at `pointer` of `callflow` was visited.
    pub fn get(&self, callflow: &str, pointer: &str) -> u64 {
        self.by_callflow
            .get(callflow)
            .and_then(|nodes| nodes.get(pointer))
            .copied()
            .unwrap_or(0)
    }
}

/// One node and its visits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCoverage {
    pub pointer: String,
    pub module: String,
    pub hits: u64,
}

/// One child branch and how often it was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchCoverage {
    /// The parent node's pointer.
    pub parent: String,
    pub parent_module: String,
    pub key: String,
    /// The child node's pointer.
    pub pointer: String,
    pub module: String,
    /// Visits of the child node.
    pub hits: u64,
}

/// The coverage of one callflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallflowCoverage {
    pub account: String,
    pub callflow_id: String,
    pub name: Option<String>,
    /// The document's file, as the store names it.
    pub file: String,
    /// Module nodes, depth first in document order.
    pub nodes: Vec<NodeCoverage>,
    /// Branches to module nodes, in the same order.
    pub branches: Vec<BranchCoverage>,
}

/// Covered out of total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    pub covered: usize,
    pub total: usize,
}

/// The coverage of every callflow of the accounts a test run used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub callflows: Vec<CallflowCoverage>,
}

/// Measures `callflow` (of `account`, read from `file`) against `hits`.
pub fn measure(account: &str, file: &str, callflow: &Callflow, hits: &Hits) -> CallflowCoverage {
    let id = callflow.id.as_str();
    let mut nodes = Vec::new();
    let mut branches = Vec::new();
    if let Some(flow) = &callflow.flow {
        flow.walk("/flow", &mut |pointer, node| {
            let Node::Module(module) = node else {
                return;
            };
            nodes.push(NodeCoverage {
                pointer: pointer.to_owned(),
                module: module.module.clone(),
                hits: hits.get(id, pointer),
            });
            let children = crate::model::diagnostic::pointer_push(pointer, "children");
            for (key, child) in &module.children {
                let Node::Module(child) = child else {
                    continue;
                };
                let child_pointer = crate::model::diagnostic::pointer_push(&children, key);
                branches.push(BranchCoverage {
                    parent: pointer.to_owned(),
                    parent_module: module.module.clone(),
                    key: key.clone(),
                    hits: hits.get(id, &child_pointer),
                    pointer: child_pointer,
                    module: child.module.clone(),
                });
            }
        });
    }
    CallflowCoverage {
        account: account.to_owned(),
        callflow_id: id.to_owned(),
        name: callflow.name.clone(),
        file: file.to_owned(),
        nodes,
        branches,
    }
}

impl Count {
    /// The percentage with one decimal (`"80.0"`), rounded half up; `None`
    /// when there is nothing to count.
    pub fn percent(self) -> Option<String> {
        let tenths = self.tenths()?;
        Some(format!("{}.{}", tenths / 10, tenths % 10))
    }

    fn tenths(self) -> Option<usize> {
        (self.total > 0).then(|| (self.covered * 1000 + self.total / 2) / self.total)
    }

    fn to_json(self) -> Value {
        let percent = self
            .tenths()
            .and_then(|t| u32::try_from(t).ok())
            .map(|t| f64::from(t) / 10.0);
        json!({"covered": self.covered, "total": self.total, "percent": percent})
    }

    fn add(self, other: Count) -> Count {
        Count {
            covered: self.covered + other.covered,
            total: self.total + other.total,
        }
    }
}

impl CallflowCoverage {
    pub fn node_count(&self) -> Count {
        Count {
            covered: self.nodes.iter().filter(|n| n.hits > 0).count(),
            total: self.nodes.len(),
        }
    }

    pub fn branch_count(&self) -> Count {
        Count {
            covered: self.branches.iter().filter(|b| b.hits > 0).count(),
            total: self.branches.len(),
        }
    }

    /// Whether any scenario entered this callflow.
    pub fn reached(&self) -> bool {
        self.nodes.iter().any(|n| n.hits > 0)
    }

    /// Branches never taken from a node that was visited: where a test is
    /// missing. (Branches below an unvisited node are untested too, but
    /// the first one up the tree says it.)
    pub fn never_taken(&self) -> impl Iterator<Item = &BranchCoverage> {
        self.branches.iter().filter(|b| {
            b.hits == 0
                && self
                    .nodes
                    .iter()
                    .any(|n| n.pointer == b.parent && n.hits > 0)
        })
    }

    /// `account/callflow_id`.
    pub fn label(&self) -> String {
        format!("{}/{}", self.account, self.callflow_id)
    }
}

impl Report {
    /// Nodes and branches over every callflow.
    pub fn totals(&self) -> (Count, Count) {
        self.callflows
            .iter()
            .fold((Count::default(), Count::default()), |(n, b), cf| {
                (n.add(cf.node_count()), b.add(cf.branch_count()))
            })
    }

    /// A table for humans: one line per callflow, the never-taken branches
    /// of reached callflows under it, a total.
    pub fn render_text(&self) -> String {
        let cell = |count: Count| match count.percent() {
            Some(percent) => format!("{}/{} {percent:>5}%", count.covered, count.total),
            None => "-".to_owned(),
        };
        let mut rows: Vec<[String; 4]> = vec![[
            "callflow".to_owned(),
            "nodes".to_owned(),
            "branches".to_owned(),
            "file".to_owned(),
        ]];
        let mut notes: Vec<Vec<String>> = vec![Vec::new()];
        for callflow in &self.callflows {
            let mut file = callflow.file.clone();
            let mut lines = Vec::new();
            if callflow.nodes.is_empty() {
                file.push_str("  (no flow)");
            } else if !callflow.reached() {
                file.push_str("  (not reached)");
            } else {
                for branch in callflow.never_taken() {
                    lines.push(format!(
                        "never taken: {}  ({} -[{}]-> {})",
                        branch.pointer, branch.parent_module, branch.key, branch.module
                    ));
                }
            }
            rows.push([
                callflow.label(),
                cell(callflow.node_count()),
                cell(callflow.branch_count()),
                file,
            ]);
            notes.push(lines);
        }
        let (all_nodes, all_branches) = self.totals();
        rows.push([
            "total".to_owned(),
            cell(all_nodes),
            cell(all_branches),
            String::new(),
        ]);
        notes.push(Vec::new());
        let width = |column: usize| {
            rows.iter()
                .map(|r| r[column].chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths = [width(0), width(1), width(2)];
        let mut out = String::from("Flow coverage (module nodes run, branches taken):\n");
        for (row, lines) in rows.iter().zip(&notes) {
            let line = format!(
                "  {:<w0$}  {:>w1$}  {:>w2$}  {}",
                row[0],
                row[1],
                row[2],
                row[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            );
            out.push_str(line.trim_end());
            out.push('\n');
            for note in lines {
                let _ = writeln!(out, "      {note}");
            }
        }
        out
    }

    /// `{"callflows": [...], "total": {...}}`, everything included.
    pub fn to_json(&self) -> Value {
        let callflows: Vec<Value> = self
            .callflows
            .iter()
            .map(|cf| {
                json!({
                    "account": cf.account,
                    "callflow_id": cf.callflow_id,
                    "name": cf.name,
                    "file": cf.file,
                    "nodes": cf.node_count().to_json(),
                    "branches": cf.branch_count().to_json(),
                    "node_hits": cf.nodes.iter().map(|n| json!({
                        "pointer": n.pointer, "module": n.module, "hits": n.hits,
                    })).collect::<Vec<_>>(),
                    "branch_hits": cf.branches.iter().map(|b| json!({
                        "parent": b.parent, "key": b.key, "pointer": b.pointer,
                        "module": b.module, "hits": b.hits,
                    })).collect::<Vec<_>>(),
                    "never_taken": cf.never_taken().map(|b| json!({
                        "parent": b.parent, "key": b.key, "pointer": b.pointer,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let (nodes, branches) = self.totals();
        json!({
            "callflows": callflows,
            "total": {"nodes": nodes.to_json(), "branches": branches.to_json()},
        })
    }

    /// The LCOV tracefile format (`genhtml`, Codecov, Coveralls, editors):
    /// one record per callflow file. A node is a line (`DA`, the line where
    /// its object starts in the file, from `lines`: file → pointer → line;
    /// nodes sharing a line add up); each callflow is a function (`FN`, at
    /// its `flow`); each branch a `BRDA` on its parent's line, numbered by
    /// the parent's place among the nodes and the child's among its
    /// branches (`-` when the parent never ran).
    pub fn to_lcov(&self, lines: &BTreeMap<String, BTreeMap<String, u32>>) -> String {
        let mut out = String::new();
        for cf in &self.callflows {
            let empty = BTreeMap::new();
            let file_lines = lines.get(&cf.file).unwrap_or(&empty);
            let line_of = |pointer: &str| file_lines.get(pointer).copied().unwrap_or(1);
            let _ = writeln!(out, "TN:\nSF:{}", cf.file);
            if let Some(root) = cf.nodes.first() {
                let _ = writeln!(out, "FN:{},{}", line_of(&root.pointer), cf.callflow_id);
                let _ = writeln!(out, "FNDA:{},{}", root.hits, cf.callflow_id);
                let _ = writeln!(out, "FNF:1\nFNH:{}", u8::from(root.hits > 0));
            }
            let mut by_line: BTreeMap<u32, u64> = BTreeMap::new();
            for node in &cf.nodes {
                *by_line.entry(line_of(&node.pointer)).or_default() += node.hits;
            }
            let mut branch_no: BTreeMap<&str, usize> = BTreeMap::new();
            for branch in &cf.branches {
                let block = cf
                    .nodes
                    .iter()
                    .position(|n| n.pointer == branch.parent)
                    .unwrap_or(0);
                let parent_hits = cf.nodes.get(block).map_or(0, |n| n.hits);
                let number = branch_no.entry(branch.parent.as_str()).or_default();
                let taken = if parent_hits == 0 {
                    "-".to_owned()
                } else {
                    branch.hits.to_string()
                };
                let _ = writeln!(
                    out,
                    "BRDA:{},{block},{number},{taken}",
                    line_of(&branch.parent)
                );
                *number += 1;
            }
            let branches = cf.branch_count();
            let _ = writeln!(out, "BRF:{}\nBRH:{}", branches.total, branches.covered);
            for (line, hits) in &by_line {
                let _ = writeln!(out, "DA:{line},{hits}");
            }
            let hit_lines = by_line.values().filter(|h| **h > 0).count();
            let _ = writeln!(out, "LF:{}\nLH:{hit_lines}\nend_of_record", by_line.len());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::DocId;
    use crate::model::parse_callflow;
    use crate::testing::lines::value_lines;
    use crate::trace::Event;

    const TEXT: &str = r#"{"numbers": ["1"], "flow": {
  "module": "menu",
  "children": {
    "1": {"module": "play", "children": {"_": {"module": "hangup"}}},
    "2": {"module": "voicemail"},
    "3": {},
    "_": {"module": "play"}
  }
}}"#;

    fn trace(paths: &[&str]) -> Trace {
        let mut trace = Trace::new();
        for path in paths {
            trace.push(
                Event::new(0, "node")
                    .with("callflow_id", "main")
                    .with("path", *path)
                    .with("module", "x"),
            );
        }
        trace.push(
            Event::new(0, "node")
                .with("callflow_id", "inline")
                .with("path", "/flow"),
        );
        trace
    }

    fn report(traces: &[Trace]) -> Report {
        let callflow = parse_callflow(&DocId::new("main").unwrap(), TEXT)
            .0
            .unwrap();
        let mut hits = Hits::new();
        for t in traces {
            hits.add(t);
        }
        Report {
            callflows: vec![measure(
                "acme",
                "flows/acme/callflows/main.json",
                &callflow,
                &hits,
            )],
        }
    }

    #[test]
    fn counts_nodes_and_branches() {
        let report = report(&[
            trace(&["/flow", "/flow/children/1", "/flow/children/1/children/_"]),
            trace(&["/flow", "/flow/children/_"]),
        ]);
        let cf = &report.callflows[0];
        assert_eq!(
            cf.node_count(),
            Count {
                covered: 4,
                total: 5
            }
        );
        assert_eq!(
            cf.branch_count(),
            Count {
                covered: 3,
                total: 4
            }
        );
        assert_eq!(cf.node_count().percent().as_deref(), Some("80.0"));
        assert_eq!(
            Count {
                covered: 2,
                total: 3
            }
            .percent()
            .as_deref(),
            Some("66.7")
        );
        let never: Vec<&str> = cf.never_taken().map(|b| b.pointer.as_str()).collect();
        assert_eq!(never, vec!["/flow/children/2"]);
        assert_eq!(cf.nodes[0].hits, 2);
        assert_eq!(
            report.render_text(),
            "Flow coverage (module nodes run, branches taken):\n\
             \x20 callflow        nodes    branches  file\n\
             \x20 acme/main  4/5  80.0%  3/4  75.0%  flows/acme/callflows/main.json\n\
             \x20     never taken: /flow/children/2  (menu -[2]-> voicemail)\n\
             \x20 total      4/5  80.0%  3/4  75.0%\n"
        );
        let json = report.to_json();
        assert_eq!(
            json["total"]["nodes"],
            json!({"covered": 4, "total": 5, "percent": 80.0})
        );
        assert_eq!(
            json["callflows"][0]["never_taken"],
            json!([{"parent": "/flow", "key": "2", "pointer": "/flow/children/2"}])
        );
    }

    #[test]
    fn lcov_names_lines_of_the_file() {
        let report = report(&[trace(&["/flow", "/flow/children/_"])]);
        let mut lines = BTreeMap::new();
        lines.insert(
            "flows/acme/callflows/main.json".to_owned(),
            value_lines(TEXT),
        );
        assert_eq!(
            report.to_lcov(&lines),
            "TN:\nSF:flows/acme/callflows/main.json\nFN:1,main\nFNDA:1,main\nFNF:1\nFNH:1\n\
             BRDA:1,0,0,0\nBRDA:1,0,1,0\nBRDA:1,0,2,1\nBRDA:4,1,0,-\nBRF:4\nBRH:1\n\
             DA:1,1\nDA:4,0\nDA:5,0\nDA:7,1\nLF:4\nLH:2\nend_of_record\n"
        );
    }

    #[test]
    fn unreached_callflows_say_so() {
        let report = report(&[]);
        let text = report.render_text();
        assert!(
            text.contains("0/5   0.0%  0/4   0.0%  flows/acme/callflows/main.json  (not reached)"),
            "{text}"
        );
        assert!(!text.contains("never taken"));
    }
}
