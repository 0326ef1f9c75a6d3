//! Why a call did not run (or ran and failed). Each case maps to one MCP answer.

use crate::runner::RunReport;
use crate::state::{Approval, Exceeded, Secs};

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// No such tool, or one this principal may not see: the same answer for both.
    #[error("unknown tool `{0}`")]
    UnknownTool(String),
    /// No such resource or prompt, or one this principal may not see.
    #[error("unknown {kind} `{name}`")]
    UnknownItem { kind: &'static str, name: String },
    #[error("invalid arguments: {0}")]
    Arguments(#[from] super::ArgsError),
    #[error("the arguments do not match the tool's input schema: {}", .0.join("; "))]
    Schema(Vec<String>),
    #[error("denied by policy: {}", .reasons.join("; "))]
    Denied {
        reasons: Vec<String>,
        plan_hash: String,
    },
    /// No room to run the call within the admission wait: retry shortly.
    #[error(transparent)]
    Busy(#[from] crate::runner::Busy),
    /// The call ran and failed; `report.outcome` holds the error.
    #[error("{}", run_error(report))]
    Run {
        plan_hash: String,
        report: Box<RunReport>,
    },
    /// The call waits for approval; nothing ran.
    #[error(
        "approval pending: {} ({}); approval id {}. Nothing ran. Repeat this identical call once it is approved.",
        .0.requirement.reason,
        crate::approvals::status_message(.0),
        .0.id
    )]
    PendingApproval(Box<Approval>),
    #[error("approval {} was denied: {}; nothing ran", .0.id, crate::approvals::status_message(.0))]
    ApprovalDenied(Box<Approval>),
    #[error("invalid idempotency key: {0}")]
    BadKey(String),
    #[error(
        "idempotency key `{key}` was already used for a different call (plan {plan_hash}); use a new key for a new call"
    )]
    KeyConflict { key: String, plan_hash: String },
    #[error(
        "idempotency key `{key}`: a run of this call was interrupted at {} before its outcome was recorded; it may or may not have taken effect, and it will not be run again under this key. Check the system it acts on, then use a new key.",
        crate::time::rfc3339(*.since)
    )]
    InDoubt { key: String, since: Secs },
    #[error("{message}")]
    RateLimited { limit: Exceeded, message: String },
    /// The credential the policy grants could not be obtained for the caller (token
    /// exchange): nothing ran, no approval or rate was used, and a key taken is free again.
    #[error("no delegated credential, so the call did not run: {0}")]
    Delegation(String),
    /// The governance store failed: the call does not run (fail closed).
    #[error("the gateway's state store failed, so the call did not run: {0}")]
    State(String),
    /// The audit trail could not record the call's intent: it does not run (fail closed).
    #[error("the audit trail could not record this call, so it did not run: {0}")]
    Unrecorded(String),
    /// The call ran, but its outcome could not be recorded: its result is withheld.
    #[error(
        "the call ran, but the audit trail could not record its outcome, so its result is withheld ({error}); it may have taken effect: check the system it acts on"
    )]
    OutcomeUnrecorded { plan_hash: String, error: String },
    /// The stored outcome of a run under the same key, which failed.
    #[error("{error}")]
    Replayed { plan_hash: String, error: String },
}

fn run_error(report: &RunReport) -> String {
    match &report.outcome {
        Err(error) => error.to_string(),
        Ok(_) => "the call failed".to_string(),
    }
}

impl GateError {
    /// The plan the error is about, when the call got as far as being decided.
    pub fn plan_hash(&self) -> Option<&str> {
        match self {
            Self::Denied { plan_hash, .. }
            | Self::Run { plan_hash, .. }
            | Self::OutcomeUnrecorded { plan_hash, .. }
            | Self::Replayed { plan_hash, .. } => Some(plan_hash),
            Self::PendingApproval(approval) | Self::ApprovalDenied(approval) => {
                Some(&approval.plan_hash)
            }
            _ => None,
        }
    }
}
