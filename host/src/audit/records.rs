//! What each audit record says. One function per kind; every body carries `kind`, `at`
//! (RFC 3339, ms), `at_ms`, and, where there is one, `job`, `principal` and `tool`, which are
//! also the store's filter columns.
//!
//! - `intent`: a call about to run — who, how, what exactly (tool, component digest, redacted
//!   arguments, plan hash), which bundle decided what (reasons, grants, limits, rate rules),
//!   the limits in force, the approval it uses. Committed before the tool runs.
//! - `outcome`: what the run did — ok / tool error / which limit, fuel, time, the output's
//!   size and hash (never the output), each outbound HTTP request (host, method, status,
//!   bytes). Committed before the result is answered.
//! - `refused`: a call that did not run, and why (denied, schema, rate limit, approval pending,
//!   busy, policy error …). `replayed`: a keyed call answered from the stored outcome.
//! - `approval`: requested, voted, approved, denied, withdrawn, consumed. `task`: task events.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::gate::{GateError, Plan};
use crate::grants::Limits;
use crate::policy::Principal;
use crate::redact::Redactor;
use crate::runner::{Reply, RunError, RunReport};
use crate::state::{Approval, AuditAppend};

/// Who asked, over what, as which job: the part every call record shares.
#[derive(Clone, Debug)]
pub struct Subject<'a> {
    pub job: &'a str,
    pub principal: &'a Principal,
    pub transport: &'a str,
    pub environment: &'a str,
    pub tool: &'a str,
    /// The W3C trace id of the call.
    pub trace_id: &'a str,
}

fn record(
    kind: &'static str,
    job: Option<&str>,
    principal: Option<&str>,
    tool: Option<&str>,
    outcome: Option<&str>,
    fields: Map<String, Value>,
) -> AuditAppend {
    let at_ms = crate::time::now_ms();
    let mut body = Map::new();
    body.insert("kind".into(), kind.into());
    body.insert("at".into(), crate::time::rfc3339_ms(at_ms).into());
    body.insert("at_ms".into(), at_ms.into());
    for (name, value) in [
        ("job", job),
        ("principal", principal),
        ("tool", tool),
        ("outcome", outcome),
    ] {
        if let Some(value) = value {
            body.insert(name.into(), value.into());
        }
    }
    body.extend(fields);
    AuditAppend {
        kind,
        at_ms,
        job: job.map(str::to_string),
        principal: principal.map(str::to_string),
        tool: tool.map(str::to_string),
        outcome: outcome.map(str::to_string),
        fields: Value::Object(body).to_string(),
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn limits(limits: &Limits) -> Value {
    json!({
        "fuel": limits.fuel,
        "memory_bytes": limits.memory_bytes,
        "timeout_ms": limits.timeout.as_millis() as u64,
        "output_bytes": limits.output_bytes,
    })
}

/// The arguments of `plan` as recorded, and the redactions for the texts after: the
/// decision's `redact` paths by their shape; for a denial (whose decision names no
/// redactions), every value by its shape.
pub fn redacted_args(plan: &Plan) -> (Value, Redactor) {
    let mut args = plan.arguments.value.clone();
    let redactor = if plan.decision.allow {
        Redactor::apply(&mut args, &plan.decision.redact)
    } else {
        Redactor::leaves(&mut args)
    };
    (args, redactor)
}

/// A call about to run.
pub fn intent(
    who: &Subject<'_>,
    plan: &Plan,
    effective: &Limits,
    approval: Option<&str>,
    facts: &Facts,
    redactor: &Redactor,
) -> AuditAppend {
    // The decision as recorded for a refusal, unless policy decided again with the approval.
    let redecided = approval.map(|_| decision_value(&plan.decision, redactor));
    let parent = plan.context.trace.parent_id.as_deref();
    intent_of(who, facts, redecided, effective, approval, parent)
}

/// A resource read, prompt or completion about to run (no approvals, no keys).
pub fn item_intent(
    who: &Subject<'_>,
    facts: &Facts,
    effective: &Limits,
    parent_span_id: Option<&str>,
) -> AuditAppend {
    intent_of(who, facts, None, effective, None, parent_span_id)
}

fn intent_of(
    who: &Subject<'_>,
    facts: &Facts,
    decision: Option<Value>,
    effective: &Limits,
    approval: Option<&str>,
    parent_span_id: Option<&str>,
) -> AuditAppend {
    let fields = json!({
        "roles": who.principal.roles,
        "auth": who.principal.authenticated_by,
        "transport": who.transport,
        "environment": who.environment,
        "component": {"name": facts.component, "digest": facts.digest},
        "plan_hash": facts.plan_hash,
        "policy_digest": &*facts.policy_digest,
        "idempotency_key": facts.key,
        "decision": decision.as_ref().unwrap_or(&facts.decision),
        "limits": limits(effective),
        "approval": approval,
        "args": facts.args,
        "decision_ns": facts.decide_ns,
        "trace_id": who.trace_id,
        "parent_span_id": parent_span_id,
    });
    record(
        "intent",
        Some(who.job),
        Some(&who.principal.id),
        Some(who.tool),
        None,
        object(fields),
    )
}

/// How a run ended, as the outcome column says it.
pub fn outcome_code<T: Reply>(report: &RunReport<T>) -> (&'static str, Option<String>) {
    let message = match &report.outcome {
        Ok(_) => None,
        Err(RunError::Limit(limit)) => Some(limit.to_string()),
        Err(RunError::Tool { message, .. } | RunError::Trap(message)) => Some(message.clone()),
        Err(RunError::Busy(busy)) => Some(busy.to_string()),
        Err(e @ (RunError::Grant(_) | RunError::Internal(_) | RunError::Deferred(_))) => {
            Some(e.to_string())
        }
    };
    (crate::runner::outcome_name(&report.outcome), message)
}

/// What a run did.
pub fn outcome<T: Reply + serde::Serialize>(
    who: &Subject<'_>,
    plan_hash: &str,
    report: &RunReport<T>,
    started_ms: u64,
    redactor: &Redactor,
) -> AuditAppend {
    let (code, error) = outcome_code(report);
    let output = report.outcome.as_ref().ok().map(|output| {
        let bytes = serde_json::to_vec(output).unwrap_or_default();
        json!({"bytes": bytes.len(), "sha256": hex::encode(Sha256::digest(&bytes))})
    });
    let egress: Vec<Value> = report
        .egress
        .iter()
        .map(|e| {
            json!({
                "method": e.method, "url": e.url, "status": e.status,
                "bytes_out": e.bytes_out, "bytes_in": e.bytes_in,
                "error": e.error, "credential_injected": e.injected,
            })
        })
        .collect();
    let fields = json!({
        "plan_hash": plan_hash,
        "error": error.map(|e| redactor.scrub(&e)),
        "fuel": report.fuel_used,
        "started_ms": started_ms,
        "elapsed_us": report.elapsed.as_micros() as u64,
        "output": output,
        "egress": egress,
        "logs_dropped": report.logs_dropped,
        "notices_dropped": report.notices_dropped,
        "trace_id": who.trace_id,
    });
    record(
        "outcome",
        Some(who.job),
        Some(&who.principal.id),
        Some(who.tool),
        Some(code),
        object(fields),
    )
}

/// Why a call did not run, as the outcome column says it.
pub fn refusal_code(error: &GateError) -> &'static str {
    match error {
        GateError::UnknownTool(_) => "unknown_tool",
        GateError::UnknownItem { .. } => "unknown_item",
        GateError::Arguments(_) | GateError::BadKey(_) => "bad_request",
        GateError::Schema(_) => "schema",
        GateError::Denied { .. } => "denied",
        GateError::Busy(_) => "busy",
        GateError::Run { .. } | GateError::Replayed { .. } => "failed",
        GateError::PendingApproval(_) => "approval_pending",
        GateError::ApprovalDenied(_) => "approval_denied",
        GateError::KeyConflict { .. } => "key_conflict",
        GateError::InDoubt { .. } => "in_doubt",
        GateError::RateLimited { .. } => "rate_limited",
        GateError::Delegation(_) => "delegation",
        GateError::State(_) => "state_error",
        GateError::Unrecorded(_) => "audit_error",
        GateError::OutcomeUnrecorded { .. } => "outcome_unrecorded",
    }
}

/// What a record says of a decided plan, kept for the records after it.
#[derive(Clone, Debug)]
pub struct Facts {
    pub plan_hash: String,
    pub policy_digest: std::sync::Arc<str>,
    pub component: String,
    pub digest: String,
    pub key: Option<String>,
    /// The redacted arguments.
    pub args: Value,
    pub decide_ns: u64,
    /// What the policy decided (reasons redacted; limits as the policy asked for them).
    pub decision: Value,
}

/// A decision as records show it: reasons redacted, limits as the policy asked for them.
fn decision_value(d: &crate::policy::Decision, redactor: &Redactor) -> Value {
    let reasons: Vec<String> = d.reasons.iter().map(|r| redactor.scrub(r)).collect();
    json!({
        "allow": d.allow, "reasons": reasons, "requires_approval": d.requires_approval,
        "grants": d.grants, "limits": d.limits, "rate": d.rate, "redact": d.redact,
    })
}

impl Facts {
    /// The facts of a resource read, prompt or completion: no idempotency key.
    #[allow(clippy::too_many_arguments)]
    pub fn item(
        plan_hash: String,
        policy_digest: std::sync::Arc<str>,
        component: &crate::catalog::LoadedComponent,
        args: Value,
        decide_ns: u64,
        decision: &crate::policy::Decision,
        redactor: &Redactor,
    ) -> Self {
        Self {
            decision: decision_value(decision, redactor),
            plan_hash,
            policy_digest,
            component: component.name.clone(),
            digest: component.digest.clone(),
            key: None,
            args,
            decide_ns,
        }
    }

    pub fn of(plan: &Plan, args: Value, redactor: &Redactor) -> Self {
        Self {
            decision: decision_value(&plan.decision, redactor),
            plan_hash: plan.plan_hash.clone(),
            policy_digest: plan.policy_digest.clone(),
            component: plan.tool.component.name.clone(),
            digest: plan.tool.component.digest.clone(),
            key: plan.context.idempotency_key.clone(),
            args,
            decide_ns: plan.decide_ns,
        }
    }
}

/// A call that did not run: `facts` are there when it got as far as a decision.
pub fn refused(
    who: &Subject<'_>,
    facts: Option<&Facts>,
    error: &GateError,
    redactor: &Redactor,
) -> AuditAppend {
    let mut fields = Map::new();
    fields.insert("roles".into(), json!(who.principal.roles));
    fields.insert("auth".into(), who.principal.authenticated_by.into());
    fields.insert("transport".into(), who.transport.into());
    fields.insert("environment".into(), who.environment.into());
    fields.insert("trace_id".into(), who.trace_id.into());
    fields.insert("reason".into(), redactor.scrub(&error.to_string()).into());
    if let Some(facts) = facts {
        fields.insert("plan_hash".into(), facts.plan_hash.clone().into());
        fields.insert("policy_digest".into(), (*facts.policy_digest).into());
        fields.insert(
            "component".into(),
            json!({"name": facts.component, "digest": facts.digest}),
        );
        fields.insert("idempotency_key".into(), json!(facts.key));
        fields.insert("args".into(), facts.args.clone());
        fields.insert("decision_ns".into(), facts.decide_ns.into());
        fields.insert("decision".into(), facts.decision.clone());
    }
    if let GateError::Denied { reasons, .. } = error {
        let reasons: Vec<String> = reasons.iter().map(|r| redactor.scrub(r)).collect();
        fields.insert("reasons".into(), json!(reasons));
    }
    if let GateError::RateLimited { limit, .. } = error {
        fields.insert("limit".into(), json!(limit));
    }
    if let GateError::PendingApproval(a) | GateError::ApprovalDenied(a) = error {
        fields.insert("approval".into(), a.id.clone().into());
    }
    record(
        "refused",
        Some(who.job),
        Some(&who.principal.id),
        Some(who.tool),
        Some(refusal_code(error)),
        fields,
    )
}

/// A keyed call answered with the stored outcome of an earlier run: nothing ran.
pub fn replayed(who: &Subject<'_>, plan: &Plan, key: &str) -> AuditAppend {
    let fields = json!({
        "transport": who.transport,
        "plan_hash": plan.plan_hash,
        "idempotency_key": key,
        "trace_id": who.trace_id,
    });
    record(
        "replayed",
        Some(who.job),
        Some(&who.principal.id),
        Some(who.tool),
        Some("replayed"),
        object(fields),
    )
}

/// An approval's event: `requested`, `voted`, `approved`, `denied`, `withdrawn`, `consumed`.
/// `by` is who acted (the voter, the requester who withdrew); `job`, the call it is for.
pub fn approval(
    event: &'static str,
    approval: &Approval,
    by: Option<&str>,
    origin: Option<&str>,
    job: Option<&str>,
) -> AuditAppend {
    let fields = json!({
        "event": event,
        "approval": approval.id,
        "requester": approval.principal,
        "by": by,
        "origin": origin,
        "plan_hash": approval.plan_hash,
        "policy_digest": approval.policy_digest,
        "status": approval.status,
        "votes": approval.votes.iter().map(|v| json!({
            "approver": v.approver, "roles": v.roles, "approve": v.approve, "at": v.at,
        })).collect::<Vec<_>>(),
    });
    record(
        "approval",
        job,
        Some(by.unwrap_or(&approval.principal)),
        Some(&approval.tool),
        Some(event),
        object(fields),
    )
}

/// A vote on an approval: `approved` or `denied` when it decided it, else `voted`.
pub fn vote(approval: &Approval, by: &str, origin: &str) -> AuditAppend {
    let event = match approval.status {
        crate::state::ApprovalStatus::Approved => "approved",
        crate::state::ApprovalStatus::Denied => "denied",
        _ => "voted",
    };
    self::approval(event, approval, Some(by), Some(origin), None)
}

/// A task's event: `created`, `running`, `completed`, `failed`, `cancelled`.
pub fn task(
    event: &'static str,
    task: &str,
    principal: &str,
    tool: &str,
    approval: &str,
) -> AuditAppend {
    let fields = json!({"event": event, "task": task, "approval": approval});
    record(
        "task",
        None,
        Some(principal),
        Some(tool),
        Some(event),
        object(fields),
    )
}
