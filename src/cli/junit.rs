//! JUnit XML for `callflow test --format junit`: one `<testsuite>` per
//! directory of scenario files, one `<testcase>` per scenario (`name` the
//! file stem, `classname` the directory with `.` for `/`, `file`, `time` in
//! seconds), a `<failure>` with the diff or the unmet expectations as its
//! text, an `<error>` for a scenario that could not run. The shape CI
//! servers read (Jenkins, GitLab, GitHub test reporters); written by hand
//! with XML escaping, no timestamps or host names.

use std::fmt::Write;

use callflow::model::Diagnostic;

use super::suite::{Case, Suite};
use super::test::{Outcome, Problem, Status, render_problem};

/// The report as an XML document.
pub fn render(suite: &Suite, outcomes: &[Outcome], broken: &[Diagnostic]) -> String {
    // Suites by directory, in the order their first scenario was found.
    let mut suites: Vec<(String, Vec<(&Case, &Outcome)>)> = Vec::new();
    for (case, outcome) in suite.cases.iter().zip(outcomes) {
        let dir = case
            .path
            .parent()
            .map(|p| p.display().to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| ".".to_owned());
        match suites.iter_mut().find(|(name, _)| *name == dir) {
            Some((_, cases)) => cases.push((case, outcome)),
            None => suites.push((dir, vec![(case, outcome)])),
        }
    }
    let all: Vec<&Outcome> = outcomes.iter().collect();
    let (tests, failures, errors, time) = totals(&all);
    // Each error in the scripts or flows is an errored test case of its
    // own suite, so a CI report shows why the run failed.
    let (tests, errors) = (tests + broken.len(), errors + broken.len());
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"callflow test\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time:.3}\">"
    );
    for (dir, cases) in &suites {
        let outcomes: Vec<&Outcome> = cases.iter().map(|(_, o)| *o).collect();
        let (tests, failures, errors, time) = totals(&outcomes);
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"0\" time=\"{time:.3}\">",
            escape(dir)
        );
        let classname = dir.replace(['/', '\\'], ".");
        for (case, outcome) in cases {
            let name = case.path.file_stem().map_or_else(
                || case.path.display().to_string(),
                |s| s.to_string_lossy().into_owned(),
            );
            let _ = write!(
                out,
                "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\" time=\"{:.3}\"",
                escape(&name),
                escape(&classname),
                escape(&case.path.display().to_string()),
                outcome.elapsed_s
            );
            match &outcome.status {
                Status::Pass | Status::Written { .. } => out.push_str("/>\n"),
                Status::Fail(problems) => {
                    let text: String = problems
                        .iter()
                        .map(|p| render_problem(p, &case.path, false))
                        .collect();
                    let _ = writeln!(
                        out,
                        ">\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>",
                        escape(&summary(problems)),
                        kind(problems),
                        escape(&text)
                    );
                }
                Status::Error(message) => {
                    let _ = writeln!(
                        out,
                        ">\n      <error message=\"{}\" type=\"error\">{}</error>\n    </testcase>",
                        escape(message),
                        escape(message)
                    );
                }
            }
        }
        out.push_str("  </testsuite>\n");
    }
    if !broken.is_empty() {
        let _ = writeln!(
            out,
            "  <testsuite name=\"scripts and flows\" tests=\"{n}\" failures=\"0\" errors=\"{n}\" skipped=\"0\" time=\"0.000\">",
            n = broken.len()
        );
        for diag in broken {
            let _ = writeln!(
                out,
                "    <testcase name=\"{}\" classname=\"broken\" file=\"{}\" time=\"0.000\">\n      <error message=\"{}\" type=\"{}\">{}</error>\n    </testcase>",
                escape(&diag.file),
                escape(&diag.file),
                escape(&diag.message),
                escape(diag.code.as_str()),
                escape(&diag.to_string())
            );
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// Tests, failures, errors and seconds.
fn totals(outcomes: &[&Outcome]) -> (usize, usize, usize, f64) {
    let failures = outcomes
        .iter()
        .filter(|o| matches!(o.status, Status::Fail(_)))
        .count();
    let errors = outcomes
        .iter()
        .filter(|o| matches!(o.status, Status::Error(_)))
        .count();
    let time = outcomes.iter().map(|o| o.elapsed_s).sum();
    (outcomes.len(), failures, errors, time)
}

/// A one-line message for the failure.
fn summary(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|problem| match problem {
            Problem::Diff { trace_path, .. } => {
                format!("the trace differs from {}", trace_path.display())
            }
            Problem::Expect(unmet) => format!(
                "{} inline expectation{} not met",
                unmet.len(),
                if unmet.len() == 1 { "" } else { "s" }
            ),
            Problem::NoExpectation { .. } => "no expectation".to_owned(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn kind(problems: &[Problem]) -> &'static str {
    match problems.first() {
        Some(Problem::Diff { .. }) => "trace",
        Some(Problem::Expect(_)) => "expect",
        _ => "no_expectation",
    }
}

/// Text or attribute value escaped for XML 1.0; characters XML 1.0 cannot
/// carry at all (most control characters) become U+FFFD.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c < ' ' || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_control_characters() {
        assert_eq!(
            escape("a<b>&\"c\"'d'\n\u{1b}[31m"),
            "a&lt;b&gt;&amp;&quot;c&quot;&apos;d&apos;\n\u{fffd}[31m"
        );
    }
}
