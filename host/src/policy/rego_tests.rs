//! The Rego unit-test runner: every rule named `test_*` (at the start of a line, the usual
//! style) in every module must evaluate to `true`.

use serde::Serialize;

/// One test's result.
#[derive(Clone, Debug, Serialize)]
pub struct TestOutcome {
    pub file: String,
    pub name: String,
    pub passed: bool,
    /// Why it failed: `false`, undefined, or an evaluation error.
    pub detail: Option<String>,
}

/// All results.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TestReport {
    pub outcomes: Vec<TestOutcome>,
}

impl TestReport {
    pub fn passed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.passed).count()
    }

    pub fn failed(&self) -> usize {
        self.outcomes.len() - self.passed()
    }
}

fn package_of(text: &str) -> Option<&str> {
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("package "))
        .map(str::trim)
}

fn test_names(text: &str) -> Vec<&str> {
    let mut names: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("test_"))
        .filter_map(|l| {
            let end = l
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(l.len());
            Some(&l[..end]).filter(|n| !n.is_empty())
        })
        .collect();
    names.dedup();
    names
}

/// Runs the tests of every module on a clone of `engine`.
pub fn run(engine: &regorus::Engine, modules: &[(String, String)]) -> TestReport {
    let mut report = TestReport::default();
    for (file, text) in modules {
        let Some(package) = package_of(text) else {
            continue;
        };
        for name in test_names(text) {
            let mut engine = engine.clone();
            let rule = format!("data.{package}.{name}");
            let (passed, detail) = match engine.eval_rule(rule) {
                Ok(regorus::Value::Bool(true)) => (true, None),
                Ok(regorus::Value::Undefined) => {
                    (false, Some("undefined (a condition failed)".into()))
                }
                Ok(other) => (false, Some(format!("evaluated to {other}"))),
                Err(e) => (false, Some(format!("error: {e}"))),
            };
            report.outcomes.push(TestOutcome {
                file: file.clone(),
                name: name.to_string(),
                passed,
                detail,
            });
        }
    }
    report
}
