//! What a tool returned, checked against what it declared: structured output must match the
//! tool's output schema, or the call is a tool error (never a response the client rejects).

use crate::catalog::ToolEntry;
use crate::runner::{RunError, RunReport, ToolFailureKind};

/// Turns a successful result whose structured output breaks the declared output schema into a
/// tool error naming up to four problems (values masked: they may be secret).
pub fn enforce_schema(tool: &ToolEntry, report: &mut RunReport) {
    let Some(validator) = &tool.output_validator else {
        return;
    };
    let Ok(output) = &report.outcome else {
        return;
    };
    if output.is_error {
        return;
    }
    let problems: Vec<String> = match &output.structured {
        None => vec!["no structured output, but the tool declares an output schema".into()],
        Some(value) => validator
            .iter_errors(value)
            .take(4)
            .map(|e| {
                let at = e.instance_path().to_string();
                format!(
                    "{}: {}",
                    if at.is_empty() { "(root)" } else { &at },
                    e.masked()
                )
            })
            .collect(),
    };
    if !problems.is_empty() {
        report.outcome = Err(RunError::Tool {
            kind: ToolFailureKind::Failed,
            message: format!(
                "the tool's result does not match its declared output schema: {}",
                problems.join("; ")
            ),
        });
    }
}
