//! Diagrams of a callflow's action tree: Graphviz `dot` and Mermaid
//! `flowchart`, with child keys as edge labels and a short summary of each
//! node's data. Pure: text in, text out.
//!
//! [`Marks`] add a call's path (the nodes a trace visited, drawn bold and
//! green with the edges into them) and untested parts (nodes no scenario of
//! a test run reached, shaded grey with dashed edges into them). Without
//! marks the drawing is unchanged.

use std::collections::BTreeSet;
use std::fmt::Write;

use serde_json::Value;

use crate::model::diagnostic::pointer_push;
use crate::model::{Callflow, Node};
use crate::testing::coverage::CallflowCoverage;
use crate::trace::Trace;

/// A diagram format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Dot,
    Mermaid,
}

impl Format {
    /// Parses `dot` or `mermaid`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "dot" => Some(Self::Dot),
            "mermaid" => Some(Self::Mermaid),
            _ => None,
        }
    }
}

/// At most this many data entries are summarized on a node.
const SUMMARY_ENTRIES: usize = 3;
/// Longer values are cut to this many characters.
const SUMMARY_CHARS: usize = 32;

/// Nodes to mark, by JSON Pointer (`/flow/children/1`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    /// Nodes a call visited: drawn bold, with the edges into them.
    pub path: BTreeSet<String>,
    /// Nodes no test reached: shaded, with dashed edges into them.
    pub untested: BTreeSet<String>,
}

impl Marks {
    /// The nodes of callflow `callflow_id` that `trace` visited.
    pub fn from_trace(callflow_id: &str, trace: &Trace) -> Self {
        let path = trace
            .events()
            .iter()
            .filter(|e| e.name == "node")
            .filter(|e| e.fields.get("callflow_id").and_then(Value::as_str) == Some(callflow_id))
            .filter_map(|e| e.fields.get("path").and_then(Value::as_str))
            .map(str::to_owned)
            .collect();
        Self {
            path,
            untested: BTreeSet::new(),
        }
    }

    /// The module nodes a test run never reached.
    pub fn from_coverage(coverage: &CallflowCoverage) -> Self {
        let untested = coverage
            .nodes
            .iter()
            .filter(|n| n.hits == 0)
            .map(|n| n.pointer.clone())
            .collect();
        Self {
            path: BTreeSet::new(),
            untested,
        }
    }

    fn of(&self, pointer: &str) -> Option<Mark> {
        if self.path.contains(pointer) {
            Some(Mark::Path)
        } else if self.untested.contains(pointer) {
            Some(Mark::Untested)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Path,
    Untested,
}

/// One node of the drawing.
struct Drawn {
    /// The module and data summary lines; empty for `{}` (a stop).
    lines: Vec<String>,
    /// Children: (key, index of the child in the node list).
    edges: Vec<(String, usize)>,
    mark: Option<Mark>,
}

/// Renders `callflow` in `format`.
pub fn render(callflow: &Callflow, format: Format) -> String {
    render_marked(callflow, format, &Marks::default())
}

/// Renders `callflow` in `format`, with `marks`.
pub fn render_marked(callflow: &Callflow, format: Format, marks: &Marks) -> String {
    let mut nodes = Vec::new();
    if let Some(flow) = &callflow.flow {
        collect(flow, "/flow", marks, &mut nodes);
    }
    let title = callflow
        .name
        .clone()
        .unwrap_or_else(|| callflow.id.to_string());
    match format {
        Format::Dot => dot(&title, &nodes),
        Format::Mermaid => mermaid(&title, &nodes),
    }
}

/// Adds `node` (at `pointer`) and its subtree (depth first, children in
/// document order); returns its index.
fn collect(node: &Node, pointer: &str, marks: &Marks, nodes: &mut Vec<Drawn>) -> usize {
    let index = nodes.len();
    nodes.push(Drawn {
        lines: Vec::new(),
        edges: Vec::new(),
        mark: marks.of(pointer),
    });
    if let Node::Module(module) = node {
        let mut lines = vec![module.module.clone()];
        lines.extend(
            module
                .data
                .iter()
                .filter(|(key, _)| key.as_str() != "skip_module")
                .take(SUMMARY_ENTRIES)
                .map(|(key, value)| format!("{key}: {}", summary(value))),
        );
        if module.skips() {
            lines.push("(skipped)".to_owned());
        }
        let mut edges = Vec::new();
        let children = pointer_push(pointer, "children");
        for (key, child) in &module.children {
            let child_index = collect(child, &pointer_push(&children, key), marks, nodes);
            edges.push((key.clone(), child_index));
        }
        nodes[index].lines = lines;
        nodes[index].edges = edges;
    }
    index
}

fn summary(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(|v| !v.is_object() && !v.is_array()) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(", "),
        Value::Array(_) => "[…]".to_owned(),
        Value::Object(_) => "{…}".to_owned(),
        other => other.to_string(),
    };
    if text.chars().count() > SUMMARY_CHARS {
        let cut: String = text.chars().take(SUMMARY_CHARS - 1).collect();
        format!("{cut}…")
    } else {
        text
    }
}

fn dot_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

const DOT_PATH_NODE: &str =
    ", style=\"filled,bold\", fillcolor=\"#dff0d8\", color=\"#2e7d32\", penwidth=2";
const DOT_PATH_EDGE: &str = ", color=\"#2e7d32\", penwidth=2";
const DOT_UNTESTED_NODE: &str =
    ", style=\"filled,dashed\", fillcolor=\"#eeeeee\", color=\"#9e9e9e\", fontcolor=\"#757575\"";
const DOT_UNTESTED_EDGE: &str = ", style=dashed, color=\"#9e9e9e\", fontcolor=\"#9e9e9e\"";
const MERMAID_PATH: (&str, &str) = (
    "fill:#dff0d8,stroke:#2e7d32,stroke-width:2px",
    "stroke:#2e7d32,stroke-width:2px",
);
const MERMAID_UNTESTED: (&str, &str) = (
    "fill:#eeeeee,stroke:#9e9e9e,stroke-dasharray:4 3,color:#757575",
    "stroke:#9e9e9e,stroke-dasharray:4 3",
);

fn dot(title: &str, nodes: &[Drawn]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", dot_escape(title));
    out.push_str("  node [shape=box, fontname=\"Helvetica\"];\n");
    out.push_str("  edge [fontname=\"Helvetica\"];\n");
    for (index, node) in nodes.iter().enumerate() {
        if node.lines.is_empty() {
            let _ = writeln!(out, "  n{index} [label=\"stop\", shape=plaintext];");
        } else {
            let label: Vec<String> = node.lines.iter().map(|l| dot_escape(l)).collect();
            let style = match node.mark {
                None => "",
                Some(Mark::Path) => DOT_PATH_NODE,
                Some(Mark::Untested) => DOT_UNTESTED_NODE,
            };
            let _ = writeln!(out, "  n{index} [label=\"{}\"{style}];", label.join("\\n"));
        }
    }
    for (index, node) in nodes.iter().enumerate() {
        for (key, child) in &node.edges {
            let style = match (node.mark, nodes[*child].mark) {
                (Some(Mark::Path), Some(Mark::Path)) => DOT_PATH_EDGE,
                (_, Some(Mark::Untested)) => DOT_UNTESTED_EDGE,
                _ => "",
            };
            let _ = writeln!(
                out,
                "  n{index} -> n{child} [label=\"{}\"{style}];",
                dot_escape(key)
            );
        }
    }
    out.push_str("}\n");
    out
}

/// Mermaid text inside `"..."`: quotes and markup characters as entities.
fn mermaid_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '#' => out.push_str("#35;"),
            '|' => out.push_str("#124;"),
            _ => out.push(c),
        }
    }
    out
}

fn mermaid(title: &str, nodes: &[Drawn]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "---\ntitle: \"{}\"\n---", mermaid_escape(title));
    out.push_str("flowchart TD\n");
    for (index, node) in nodes.iter().enumerate() {
        if node.lines.is_empty() {
            let _ = writeln!(out, "  n{index}((stop))");
        } else {
            let label: Vec<String> = node.lines.iter().map(|l| mermaid_escape(l)).collect();
            let _ = writeln!(out, "  n{index}[\"{}\"]", label.join("<br/>"));
        }
    }
    let mut link = 0usize;
    let mut marked_links: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for (index, node) in nodes.iter().enumerate() {
        for (key, child) in &node.edges {
            let _ = writeln!(out, "  n{index} -->|\"{}\"| n{child}", mermaid_escape(key));
            match (node.mark, nodes[*child].mark) {
                (Some(Mark::Path), Some(Mark::Path)) => marked_links[0].push(link.to_string()),
                (_, Some(Mark::Untested)) => marked_links[1].push(link.to_string()),
                _ => {}
            }
            link += 1;
        }
    }
    for (mark, class, (node_style, link_style), links) in [
        (Mark::Path, "path", MERMAID_PATH, &marked_links[0]),
        (
            Mark::Untested,
            "untested",
            MERMAID_UNTESTED,
            &marked_links[1],
        ),
    ] {
        let marked: Vec<String> = nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.mark == Some(mark) && !n.lines.is_empty())
            .map(|(index, _)| format!("n{index}"))
            .collect();
        if !marked.is_empty() {
            let _ = writeln!(out, "  classDef {class} {node_style}");
            let _ = writeln!(out, "  class {} {class}", marked.join(","));
        }
        if !links.is_empty() {
            let _ = writeln!(out, "  linkStyle {} {link_style}", links.join(","));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::DocId;
    use crate::model::parse_callflow;

    fn callflow() -> Callflow {
        let text = r#"{"name": "Main \"HQ\"", "numbers": ["1000"], "flow": {
            "module": "menu", "data": {"id": "main-menu"},
            "children": {
                "1": {"module": "callflow", "data": {"id": "sales"}},
                "_": {"module": "voicemail", "data": {"id": "vm", "skip_module": true}, "children": {"_": {}}}
            }}}"#;
        parse_callflow(&DocId::new("main").unwrap(), text)
            .0
            .unwrap()
    }

    #[test]
    fn dot_has_nodes_edges_and_escapes() {
        let out = render(&callflow(), Format::Dot);
        assert_eq!(
            out,
            "digraph \"Main \\\"HQ\\\"\" {\n  node [shape=box, fontname=\"Helvetica\"];\n  edge [fontname=\"Helvetica\"];\n  n0 [label=\"menu\\nid: main-menu\"];\n  n1 [label=\"callflow\\nid: sales\"];\n  n2 [label=\"voicemail\\nid: vm\\n(skipped)\"];\n  n3 [label=\"stop\", shape=plaintext];\n  n0 -> n1 [label=\"1\"];\n  n0 -> n2 [label=\"_\"];\n  n2 -> n3 [label=\"_\"];\n}\n"
        );
    }

    #[test]
    fn mermaid_has_nodes_edges_and_escapes() {
        let out = render(&callflow(), Format::Mermaid);
        assert_eq!(
            out,
            "---\ntitle: \"Main #quot;HQ#quot;\"\n---\nflowchart TD\n  n0[\"menu<br/>id: main-menu\"]\n  n1[\"callflow<br/>id: sales\"]\n  n2[\"voicemail<br/>id: vm<br/>(skipped)\"]\n  n3((stop))\n  n0 -->|\"1\"| n1\n  n0 -->|\"_\"| n2\n  n2 -->|\"_\"| n3\n"
        );
    }

    #[test]
    fn marks_show_a_path_and_untested_nodes() {
        let marks = Marks {
            path: ["/flow", "/flow/children/1"]
                .into_iter()
                .map(str::to_owned)
                .collect(),
            untested: ["/flow/children/_"]
                .into_iter()
                .map(str::to_owned)
                .collect(),
        };
        let out = render_marked(&callflow(), Format::Dot, &marks);
        assert!(
            out.contains(&format!(
                "  n0 [label=\"menu\\nid: main-menu\"{DOT_PATH_NODE}];\n"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "  n2 [label=\"voicemail\\nid: vm\\n(skipped)\"{DOT_UNTESTED_NODE}];\n"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!("  n0 -> n1 [label=\"1\"{DOT_PATH_EDGE}];\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!("  n0 -> n2 [label=\"_\"{DOT_UNTESTED_EDGE}];\n")),
            "{out}"
        );
        assert!(out.contains("  n2 -> n3 [label=\"_\"];\n"), "{out}");
        let out = render_marked(&callflow(), Format::Mermaid, &marks);
        assert!(
            out.ends_with(&format!(
                "  n2 -->|\"_\"| n3\n  classDef path {}\n  class n0,n1 path\n  linkStyle 0 {}\n  classDef untested {}\n  class n2 untested\n  linkStyle 1 {}\n",
                MERMAID_PATH.0, MERMAID_PATH.1, MERMAID_UNTESTED.0, MERMAID_UNTESTED.1
            )),
            "{out}"
        );
        let mut trace = Trace::new();
        trace.push(
            crate::trace::Event::new(0, "node")
                .with("callflow_id", "main")
                .with("path", "/flow"),
        );
        trace.push(
            crate::trace::Event::new(0, "node")
                .with("callflow_id", "other")
                .with("path", "/flow/children/1"),
        );
        assert_eq!(Marks::from_trace("main", &trace).path.len(), 1);
    }

    #[test]
    fn long_values_are_cut() {
        assert_eq!(
            summary(&Value::String("x".repeat(40))),
            format!("{}…", "x".repeat(31))
        );
        assert_eq!(summary(&serde_json::json!(["a", 1, true])), "a, 1, true");
        assert_eq!(summary(&serde_json::json!({"a": 1})), "{…}");
    }
}
