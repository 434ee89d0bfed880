//! Diagrams of a callflow's action tree: Graphviz `dot` and Mermaid
//! `flowchart`, with child keys as edge labels and a short summary of each
//! node's data. Pure: text in, text out.

use std::fmt::Write;

use serde_json::Value;

use crate::model::{Callflow, Node};

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

/// One node of the drawing.
struct Drawn {
    /// The module and data summary lines; empty for `{}` (a stop).
    lines: Vec<String>,
    /// Children: (key, index of the child in the node list).
    edges: Vec<(String, usize)>,
}

/// Renders `callflow` in `format`.
pub fn render(callflow: &Callflow, format: Format) -> String {
    let mut nodes = Vec::new();
    if let Some(flow) = &callflow.flow {
        collect(flow, &mut nodes);
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

/// Adds `node` and its subtree (depth first, children in document order);
/// returns its index.
fn collect(node: &Node, nodes: &mut Vec<Drawn>) -> usize {
    let index = nodes.len();
    nodes.push(Drawn {
        lines: Vec::new(),
        edges: Vec::new(),
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
        for (key, child) in &module.children {
            let child_index = collect(child, nodes);
            edges.push((key.clone(), child_index));
        }
        nodes[index] = Drawn { lines, edges };
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
            let _ = writeln!(out, "  n{index} [label=\"{}\"];", label.join("\\n"));
        }
    }
    for (index, node) in nodes.iter().enumerate() {
        for (key, child) in &node.edges {
            let _ = writeln!(
                out,
                "  n{index} -> n{child} [label=\"{}\"];",
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
    for (index, node) in nodes.iter().enumerate() {
        for (key, child) in &node.edges {
            let _ = writeln!(out, "  n{index} -->|\"{}\"| n{child}", mermaid_escape(key));
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
    fn long_values_are_cut() {
        assert_eq!(
            summary(&Value::String("x".repeat(40))),
            format!("{}…", "x".repeat(31))
        );
        assert_eq!(summary(&serde_json::json!(["a", 1, true])), "a, 1, true");
        assert_eq!(summary(&serde_json::json!({"a": 1})), "{…}");
    }
}
