//! How a call looks in a trace: one `transport` span per call (the root of the call's stages:
//! validate, state, decide, gate, idempotency, approval, admit, rate, record, instantiate, call,
//! egress), continuing the agent's trace when it sent one.
//!
//! Attributes are names, codes, hashes and numbers: the tool (only as the catalog names it),
//! the principal, the decision, the plan hash, fuel, the outcome. Never argument values,
//! results or secrets.

use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{CallOutcome, GateError, Gateway, Transport};
use crate::policy::{Decision, Principal};
use crate::telemetry::{STAGE, TraceContext};

/// A decision as one word: allow, deny or approval.
pub fn decision_name(decision: &Decision) -> &'static str {
    if !decision.allow {
        "deny"
    } else if decision.requires_approval.is_some() {
        "approval"
    } else {
        "allow"
    }
}

impl Gateway {
    /// The span of one MCP request (`method`, e.g. `tools/call`) for `tool_name`: its parent is
    /// the agent's span when `trace` came from the agent.
    pub fn request_span(
        &self,
        method: &'static str,
        tool_name: &str,
        principal: &Principal,
        transport: Transport,
        trace: Option<&TraceContext>,
    ) -> Span {
        // Nothing on the per-call path when nothing exports spans.
        if !tracing::enabled!(target: STAGE, tracing::Level::INFO) {
            return Span::none();
        }
        let catalog = self.catalog.current();
        let tool = catalog
            .get(tool_name)
            .map_or("(unknown)", |t| t.descriptor.name.as_str());
        let span = tracing::info_span!(
            target: STAGE,
            "transport",
            otel.name = format!("{method} {tool}"),
            otel.kind = "server",
            otel.status_code = Empty,
            mcp.method.name = method,
            gen_ai.operation.name = "execute_tool",
            gen_ai.tool.name = tool,
            enduser.id = principal.id.as_str(),
            portcullis.transport = transport.name(),
            portcullis.environment = self.settings.environment.as_str(),
            portcullis.job = Empty,
            portcullis.plan_hash = Empty,
            portcullis.decision = Empty,
            portcullis.fuel = Empty,
            portcullis.outcome = Empty,
            error.type = Empty,
        );
        if let Some(parent) = trace.and_then(TraceContext::remote_parent) {
            let _ = span.set_parent(parent);
        }
        span
    }
}

/// Records how the call ended on its request span.
pub fn finish(span: &Span, result: &Result<CallOutcome, GateError>) {
    if span.is_disabled() {
        return;
    }
    match result {
        Ok(outcome) => {
            span.record("portcullis.plan_hash", outcome.plan_hash.as_str());
            span.record("portcullis.decision", decision_name(&outcome.decision));
            span.record("portcullis.fuel", outcome.report.fuel_used);
            let code = crate::runner::outcome_name(&outcome.report.outcome);
            span.record("portcullis.outcome", code);
            if code != "ok" {
                span.record("error.type", code);
            }
        }
        Err(error) => {
            let code = match error {
                GateError::Run { report, .. } => {
                    span.record("portcullis.fuel", report.fuel_used);
                    crate::runner::outcome_name(&report.outcome)
                }
                _ => crate::audit::records::refusal_code(error),
            };
            if let Some(plan_hash) = error.plan_hash() {
                span.record("portcullis.plan_hash", plan_hash);
            }
            span.record("portcullis.outcome", code);
            span.record("error.type", code);
            span.record("otel.status_code", "ERROR");
        }
    }
}
