//! The approval stage: a decision that `requires_approval` runs only with the approvals it
//! asks for, given for exactly this plan under exactly this policy bundle.
//!
//! The first such call records a pending approval and is answered "pending". Approvers vote
//! through the CLI or the admin API ([`crate::approvals`]). Once votes exist, the policy decides
//! again with them in `input.approvals` (so it can ask for more, or for other roles), and the
//! identical call runs when the requirement it returns is met, consuming the approval: one
//! approval, one run.

use serde_json::json;

use crate::approvals::satisfied;
use crate::policy::Principal;
use crate::policy::types::{ApprovalRequirement, ApprovalSeen};
use crate::state::{Approval, ApprovalStatus, Created, Secs, now};

use super::{GateError, Gateway, Plan};

/// A requirement's lifetime when it names none: one hour.
pub const DEFAULT_TTL_S: u64 = 3600;
/// The longest lifetime a requirement may ask for: seven days.
pub const MAX_TTL_S: u64 = 7 * 24 * 3600;
/// Live pending approvals one principal may have at once: more calls that need approval are
/// refused until some are decided (an agent cannot flood the approvers' queue).
pub const MAX_PENDING_PER_PRINCIPAL: u32 = 100;

/// What the approval stage lets through: the approval to consume, if the run uses one.
pub struct Admitted {
    pub consume: Option<String>,
}

fn live(approval: &Approval, at: Secs) -> bool {
    matches!(
        approval.status,
        ApprovalStatus::Pending | ApprovalStatus::Approved
    ) && !approval.expired(at)
}

/// The approvals given, as policy sees them.
pub fn seen(approval: &Approval) -> Vec<ApprovalSeen> {
    approval
        .votes
        .iter()
        .filter(|v| v.approve)
        .map(|v| ApprovalSeen {
            approver: v.approver.clone(),
            roles: v.roles.clone(),
            at: crate::time::rfc3339(v.at),
        })
        .collect()
}

fn new_id() -> Result<String, GateError> {
    crate::time::random_hex(12)
        .map(|hex| format!("ap_{hex}"))
        .map_err(|e| GateError::State(format!("{e:#}")))
}

impl Gateway {
    /// Lets `plan` through, or answers pending / denied. May replace `plan.decision` with the
    /// decision made with the approvals given.
    pub(super) async fn admit_approval(
        &self,
        principal: &Principal,
        plan: &mut Plan,
    ) -> Result<Admitted, GateError> {
        let Some(requirement) = plan.decision.requires_approval.clone() else {
            return Ok(Admitted { consume: None });
        };
        let at = now();
        let store = &self.state;
        let existing = store
            .approval_for(plan.plan_hash.clone(), plan.policy_digest.to_string())
            .await
            .map_err(|e| GateError::State(format!("{e:#}")))?;
        match existing {
            // A denial stands even if it raced an approving vote (fail closed).
            Some(approval) if live(&approval, at) && approval.votes.iter().any(|v| !v.approve) => {
                Err(GateError::ApprovalDenied(Box::new(approval)))
            }
            Some(approval) if live(&approval, at) => {
                if approval.votes.iter().any(|v| v.approve) {
                    let given = seen(&approval);
                    self.redecide(principal, plan, &given)?;
                    if !plan.decision.allow {
                        // Seeing the approvals, the policy denies: that is the answer.
                        let mut reasons = plan.decision.reasons.clone();
                        if reasons.is_empty() {
                            reasons.push("denied by policy (no reason given)".into());
                        }
                        return Err(GateError::Denied {
                            reasons,
                            plan_hash: plan.plan_hash.clone(),
                        });
                    }
                    let still = plan.decision.requires_approval.clone();
                    let met = match &still {
                        None => true,
                        Some(now_required) => {
                            satisfied(now_required, &principal.id, &approval.votes)
                        }
                    };
                    if met {
                        return Ok(Admitted {
                            consume: Some(approval.id),
                        });
                    }
                }
                Err(GateError::PendingApproval(Box::new(approval)))
            }
            Some(approval)
                if approval.status == ApprovalStatus::Denied && !approval.expired(at) =>
            {
                Err(GateError::ApprovalDenied(Box::new(approval)))
            }
            _ => {
                let approval = self.new_approval(principal, plan, requirement, at)?;
                let created = store
                    .create_approval(approval.clone(), MAX_PENDING_PER_PRINCIPAL)
                    .await
                    .map_err(|e| GateError::State(format!("{e:#}")))?;
                match created {
                    Created::New => {}
                    // An identical call made at the same moment asked first: share its approval.
                    Created::Existing(live) => return Err(GateError::PendingApproval(live)),
                    Created::TooMany(n) => {
                        return Err(GateError::Denied {
                            reasons: vec![format!(
                                "{n} of your calls already wait for approval (the most is {MAX_PENDING_PER_PRINCIPAL}); wait for them to be decided"
                            )],
                            plan_hash: plan.plan_hash.clone(),
                        });
                    }
                }
                tracing::info!(approval = %approval.id, tool = %approval.tool, principal = %principal.id, "approval requested");
                if let Some(webhook) = &self.webhook {
                    webhook.send("approval.requested", event(&approval));
                }
                self.audit
                    .record(crate::audit::records::approval(
                        "requested",
                        &approval,
                        Some(&principal.id),
                        None,
                        Some(&plan.context.request_id),
                    ))
                    .await;
                Err(GateError::PendingApproval(Box::new(approval)))
            }
        }
    }

    fn new_approval(
        &self,
        principal: &Principal,
        plan: &Plan,
        requirement: ApprovalRequirement,
        at: Secs,
    ) -> Result<Approval, GateError> {
        let ttl = requirement
            .ttl_s
            .unwrap_or(DEFAULT_TTL_S)
            .clamp(1, MAX_TTL_S);
        Ok(Approval {
            id: new_id()?,
            plan_hash: plan.plan_hash.clone(),
            policy_digest: plan.policy_digest.to_string(),
            tool: plan.tool.descriptor.name.clone(),
            component: plan.tool.component.name.clone(),
            component_digest: plan.tool.component.digest.clone(),
            principal: principal.id.clone(),
            environment: self.settings.environment.clone(),
            args: plan.arguments.value.clone(),
            annotations: json!(plan.tool.descriptor.annotations),
            requirement,
            reasons: plan.decision.reasons.clone(),
            grants: json!(plan.decision.grants),
            status: ApprovalStatus::Pending,
            created_at: at,
            expires_at: at.saturating_add(ttl),
            votes: Vec::new(),
        })
    }

    /// Uses up the approval for this run: exactly one run per approval.
    pub(super) async fn consume_approval(&self, id: &str) -> Result<(), GateError> {
        for from in [ApprovalStatus::Approved, ApprovalStatus::Pending] {
            let moved = self
                .state
                .transition(id.to_string(), from, ApprovalStatus::Consumed)
                .await
                .map_err(|e| GateError::State(format!("{e:#}")))?;
            if moved {
                return Ok(());
            }
        }
        Err(GateError::State(format!(
            "approval {id} was used by another call at the same moment; repeat the call to request a new approval"
        )))
    }

    /// Records that `by` voted on an approval (and maybe decided it), and tells whoever listens.
    pub fn approval_decided(&self, approval: &Approval, by: &str, origin: &str) {
        voted(self.webhook.as_ref(), approval);
        self.audit
            .note(crate::audit::records::vote(approval, by, origin));
    }
}

/// An approval as a webhook event carries it: what waits, for whom, and where it stands;
/// never the arguments (they may be secret: approvers read them with the CLI or the admin API).
pub fn event(a: &Approval) -> serde_json::Value {
    json!({
        "id": a.id,
        "status": a.status,
        "state": crate::approvals::status_message(a),
        "tool": a.tool,
        "component_digest": a.component_digest,
        "principal": a.principal,
        "environment": a.environment,
        "requirement": a.requirement,
        "plan_hash": a.plan_hash,
        "policy_digest": a.policy_digest,
        "created_at": crate::time::rfc3339(a.created_at),
        "expires_at": crate::time::rfc3339(a.expires_at),
        "votes": a.votes.iter().map(|v| json!({
            "approver": v.approver, "approve": v.approve, "reason": v.reason,
            "at": crate::time::rfc3339(v.at), "origin": v.origin,
        })).collect::<Vec<_>>(),
        "show": format!("portcullis approvals show {}", a.id),
    })
}

/// Logs a vote and sends its event: `approval.approved`, `approval.denied`, or
/// `approval.voted` while more approvals are needed.
pub fn voted(webhook: Option<&crate::webhook::Webhook>, approval: &Approval) {
    tracing::info!(
        approval = %approval.id,
        status = approval.status.as_str(),
        votes = approval.votes.len(),
        "approval vote"
    );
    let name = match approval.status {
        ApprovalStatus::Approved => "approval.approved",
        ApprovalStatus::Denied => "approval.denied",
        _ => "approval.voted",
    };
    if let Some(webhook) = webhook {
        webhook.send(name, event(approval));
    }
}
