//! The one mapping from a tool call's outcome to its MCP answer: results with their
//! `_meta` (plan, job, trace, policy, idempotency), and each refusal as the agent should see it.

use rmcp::model::{CallToolResult, ContentBlock, ErrorData, MetaObject};
use serde_json::{Map, Value, json};

use super::content;
use crate::gate::{CallOutcome, GateError, KeyUse};
use crate::grants::show_bytes;
use crate::runner::RunReport;

/// Where an agent puts its idempotency key: `params._meta["portcullis/idempotency_key"]`.
pub const IDEMPOTENCY_KEY_META: &str = "portcullis/idempotency_key";

fn meta(plan_hash: Option<&str>, report: Option<&RunReport>) -> Option<MetaObject> {
    let mut map = Map::new();
    if let Some(hash) = plan_hash {
        map.insert("portcullis/plan_hash".into(), json!(hash));
    }
    if let Some(report) = report {
        map.insert("portcullis/fuel_used".into(), json!(report.fuel_used));
        map.insert(
            "portcullis/elapsed_us".into(),
            json!(report.elapsed.as_micros() as u64),
        );
        if !report.egress.is_empty() {
            map.insert("portcullis/egress".into(), json!(report.egress));
        }
    }
    (!map.is_empty()).then_some(MetaObject(map))
}

/// How long a client told "busy" should wait before it tries again.
pub const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// The largest JSON-RPC message the gateway sends. MCP clients drop longer ones (rmcp's stdio
/// lines and SSE events stop at 16 MiB, silently), so a result that encodes to more is
/// reported as an output limit instead of being sent and lost.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Room for the JSON-RPC envelope around a result.
const ENVELOPE_BYTES: usize = 1024;

/// `Some(size)` when `result` encodes to more than [`MAX_MESSAGE_BYTES`]. Only a call whose
/// output limit allows results near that size pays for measuring.
fn oversized(result: &CallToolResult, output_limit: u64) -> Option<usize> {
    if output_limit < (MAX_MESSAGE_BYTES / 8) as u64 {
        // Escaping at most sextuples text (`\u0000`) and base64 adds a third.
        return None;
    }
    // A result that cannot even be encoded counts as too large.
    let size = serde_json::to_vec(result)
        .map_or(usize::MAX, |bytes| bytes.len())
        .saturating_add(ENVELOPE_BYTES);
    (size > MAX_MESSAGE_BYTES).then_some(size)
}

/// The one mapping from a gateway outcome to an MCP answer.
pub fn to_mcp(result: Result<CallOutcome, GateError>) -> Result<CallToolResult, ErrorData> {
    match result {
        Ok(outcome) => {
            let output = outcome.report.outcome.as_ref().map_err(|e| {
                ErrorData::internal_error(format!("inconsistent outcome: {e}"), None)
            })?;
            let mut result =
                CallToolResult::success(output.content.iter().map(content::block).collect());
            result.structured_content = output.structured.clone();
            result.is_error = Some(output.is_error);
            if let Some(size) = oversized(&result, outcome.limits.output_bytes) {
                result = CallToolResult::error(vec![ContentBlock::text(format!(
                    "output limit reached: the result encodes to {} as an MCP message; a message may be at most {}",
                    show_bytes(size as u64),
                    show_bytes(MAX_MESSAGE_BYTES as u64)
                ))]);
            }
            let mut meta =
                meta(Some(&outcome.plan_hash), Some(&outcome.report)).unwrap_or_default();
            meta.insert("portcullis/job".into(), json!(outcome.job));
            meta.insert("portcullis/trace_id".into(), json!(outcome.trace_id));
            meta.insert(
                "portcullis/policy_digest".into(),
                json!(outcome.policy_digest),
            );
            if let Some(KeyUse { key, replayed }) = &outcome.idempotency {
                meta.insert(
                    "portcullis/idempotency".into(),
                    json!({ "key": key, "replayed": replayed }),
                );
            }
            Ok(result.with_meta(Some(meta)))
        }
        Err(GateError::UnknownTool(name)) => Err(ErrorData::invalid_params(
            format!("unknown tool `{name}`"),
            None,
        )),
        Err(error @ GateError::UnknownItem { .. }) => Err(error.into()),
        Err(
            error @ (GateError::Arguments(_)
            | GateError::Schema(_)
            | GateError::BadKey(_)
            | GateError::Delegation(_)
            | GateError::State(_)
            | GateError::Unrecorded(_)),
        ) => Ok(CallToolResult::error(vec![ContentBlock::text(
            error.to_string(),
        )])),
        Err(ref error @ (GateError::PendingApproval(ref a) | GateError::ApprovalDenied(ref a))) => {
            let mut meta = meta(Some(&a.plan_hash), None).unwrap_or_default();
            meta.insert("portcullis/approval".into(), approval_meta(a));
            Ok(
                CallToolResult::error(vec![ContentBlock::text(error.to_string())])
                    .with_meta(Some(meta)),
            )
        }
        Err(ref error @ GateError::KeyConflict { .. })
        | Err(ref error @ GateError::InDoubt { .. }) => {
            Ok(CallToolResult::error(vec![ContentBlock::text(
                error.to_string(),
            )]))
        }
        Err(ref error @ GateError::RateLimited { ref limit, .. }) => {
            let mut meta = Map::new();
            meta.insert(
                "portcullis/rate_limit".into(),
                json!({ "key": limit.key, "max": limit.max, "window_s": limit.window_s, "used": limit.used, "resets_at": crate::time::rfc3339(limit.resets_at) }),
            );
            Ok(
                CallToolResult::error(vec![ContentBlock::text(error.to_string())])
                    .with_meta(Some(MetaObject(meta))),
            )
        }
        Err(
            ref error @ (GateError::Replayed { ref plan_hash, .. }
            | GateError::OutcomeUnrecorded { ref plan_hash, .. }),
        ) => Ok(
            CallToolResult::error(vec![ContentBlock::text(error.to_string())])
                .with_meta(meta(Some(plan_hash), None)),
        ),
        Err(ref error @ GateError::Denied { ref plan_hash, .. }) => Ok(CallToolResult::error(
            vec![ContentBlock::text(error.to_string())],
        )
        .with_meta(meta(Some(plan_hash), None))),
        Err(error @ GateError::Busy(_)) => {
            let mut meta = Map::new();
            meta.insert(
                "portcullis/retry_after_ms".into(),
                json!(RETRY_AFTER.as_millis() as u64),
            );
            Ok(
                CallToolResult::error(vec![ContentBlock::text(error.to_string())])
                    .with_meta(Some(MetaObject(meta))),
            )
        }
        Err(
            ref error @ GateError::Run {
                ref plan_hash,
                ref report,
            },
        ) => Ok(
            CallToolResult::error(vec![ContentBlock::text(error.to_string())])
                .with_meta(meta(Some(plan_hash), Some(report))),
        ),
    }
}

/// An approval as the agent sees it: what it waits for and what to do.
fn approval_meta(a: &crate::state::Approval) -> Value {
    json!({
        "id": a.id,
        "status": a.status,
        "state": crate::approvals::status_message(a),
        "reason": a.requirement.reason,
        "approvers": a.requirement.approvers,
        "roles": a.requirement.roles,
        "given": crate::approvals::counted(&a.requirement, &a.principal, &a.votes).len(),
        "expires_at": crate::time::rfc3339(a.expires_at),
        "policy_digest": a.policy_digest,
        "next": "repeat this identical call after approval; it runs once",
    })
}
