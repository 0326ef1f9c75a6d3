//! Approvals: the two-person rule, and what operators do to a pending call.
//!
//! An approval is bound to one plan (tool, component digest, canonical arguments, principal,
//! environment) under one policy bundle; the gate looks it up by both, so any change voids it.
//! Approvers are principals from the configuration: N distinct ones, each holding one of the
//! required roles (when roles are given), never the requester unless the requirement says
//! `allow_self`. One approver's denial denies the call. What counts is decided here, for every
//! backend; the store only records votes and moves statuses atomically.

use std::sync::Arc;

use anyhow::Result;

use crate::policy::Principal;
use crate::policy::types::ApprovalRequirement;
use crate::state::{Approval, ApprovalStatus, Store, Vote, now};

/// Why a vote was not taken.
#[derive(Debug, thiserror::Error)]
pub enum VoteError {
    #[error("no approval `{0}`")]
    NotFound(String),
    #[error("approval {id} is {status}; only a pending or approved (unused) approval takes votes")]
    NotPending { id: String, status: &'static str },
    #[error("approval {0} has expired")]
    Expired(String),
    #[error(
        "`{0}` requested this call and may not approve or deny it (the policy does not allow self-approval)"
    )]
    OwnCall(String),
    #[error("`{approver}` holds none of the roles this approval needs ({})", .roles.join(", "))]
    MissingRole {
        approver: String,
        roles: Vec<String>,
    },
    #[error("`{0}` has already voted on this approval")]
    AlreadyVoted(String),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// Whether `principal` may vote under `requirement` on a call `requester` made.
fn eligible(
    requirement: &ApprovalRequirement,
    requester: &str,
    approver: &str,
    roles: &[String],
) -> Result<(), VoteError> {
    if approver == requester && !requirement.allow_self {
        return Err(VoteError::OwnCall(approver.to_string()));
    }
    if !requirement.roles.is_empty() && !roles.iter().any(|r| requirement.roles.contains(r)) {
        return Err(VoteError::MissingRole {
            approver: approver.to_string(),
            roles: requirement.roles.clone(),
        });
    }
    Ok(())
}

/// The approving votes that count toward `requirement`: distinct eligible approvers.
pub fn counted<'a>(
    requirement: &ApprovalRequirement,
    requester: &str,
    votes: &'a [Vote],
) -> Vec<&'a Vote> {
    votes
        .iter()
        .filter(|v| v.approve && eligible(requirement, requester, &v.approver, &v.roles).is_ok())
        .collect()
}

/// Whether the votes meet `requirement` (and no eligible approver denied).
pub fn satisfied(requirement: &ApprovalRequirement, requester: &str, votes: &[Vote]) -> bool {
    let denied = votes.iter().any(|v| !v.approve);
    !denied && counted(requirement, requester, votes).len() >= requirement.approvers as usize
}

/// What the approval waits for, in words: "waiting for 2 approvals, 1 given".
pub fn status_message(approval: &Approval) -> String {
    let given = counted(&approval.requirement, &approval.principal, &approval.votes).len();
    let needed = approval.requirement.approvers;
    let noun = if needed == 1 { "approval" } else { "approvals" };
    let roles = if approval.requirement.roles.is_empty() {
        String::new()
    } else {
        format!(" from {}", approval.requirement.roles.join(" or "))
    };
    match approval.status {
        ApprovalStatus::Pending => format!("waiting for {needed} {noun}{roles}, {given} given"),
        ApprovalStatus::Approved => format!("approved ({given} of {needed} given)"),
        ApprovalStatus::Denied => {
            let by = approval.votes.iter().find(|v| !v.approve);
            match by {
                Some(v) => format!(
                    "denied by {}{}",
                    v.approver,
                    v.reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
                None => "denied".into(),
            }
        }
        ApprovalStatus::Withdrawn => "withdrawn by the requester".into(),
        ApprovalStatus::Consumed => "approved and run".into(),
    }
}

/// Records `voter`'s verdict on approval `id`, and moves it to approved or denied when that
/// verdict decides it. `origin` says where the verdict came from.
pub async fn vote(
    store: &Arc<dyn Store>,
    id: &str,
    voter: &Principal,
    approve: bool,
    reason: Option<String>,
    origin: String,
) -> Result<Approval, VoteError> {
    let at = now();
    let approval = store
        .approval(id.to_string())
        .await?
        .ok_or_else(|| VoteError::NotFound(id.to_string()))?;
    // An approved approval still takes votes until it is used: policy, seeing the approvals,
    // may ask for more than the requirement it first gave.
    if !matches!(
        approval.status,
        ApprovalStatus::Pending | ApprovalStatus::Approved
    ) {
        return Err(VoteError::NotPending {
            id: approval.id,
            status: approval.status.as_str(),
        });
    }
    if approval.expired(at) {
        return Err(VoteError::Expired(approval.id));
    }
    eligible(
        &approval.requirement,
        &approval.principal,
        &voter.id,
        &voter.roles,
    )?;
    if approval.votes.iter().any(|v| v.approver == voter.id) {
        return Err(VoteError::AlreadyVoted(voter.id.clone()));
    }
    let vote = Vote {
        approver: voter.id.clone(),
        roles: voter.roles.clone(),
        approve,
        reason,
        at,
        origin,
    };
    if !store.add_vote(id.to_string(), vote).await? {
        // Someone else voted as this principal, or the approval moved on, in between.
        return Err(match store.approval(id.to_string()).await? {
            Some(a) if a.status != ApprovalStatus::Pending => VoteError::NotPending {
                id: a.id,
                status: a.status.as_str(),
            },
            Some(a) if a.expired(now()) => VoteError::Expired(a.id),
            _ => VoteError::AlreadyVoted(voter.id.clone()),
        });
    }
    let updated = store
        .approval(id.to_string())
        .await?
        .ok_or_else(|| VoteError::NotFound(id.to_string()))?;
    let next = if !approve {
        Some(ApprovalStatus::Denied)
    } else if satisfied(&updated.requirement, &updated.principal, &updated.votes) {
        Some(ApprovalStatus::Approved)
    } else {
        None
    };
    if let Some(next) = next {
        let moved = store
            .transition(id.to_string(), ApprovalStatus::Pending, next)
            .await?;
        if !moved && next == ApprovalStatus::Denied {
            store
                .transition(id.to_string(), ApprovalStatus::Approved, next)
                .await?;
        }
    }
    // A denial cast while this approval was being counted still wins.
    if let Some(raced) = store.approval(id.to_string()).await?
        && raced.status == ApprovalStatus::Approved
        && raced.votes.iter().any(|v| !v.approve)
    {
        store
            .transition(
                id.to_string(),
                ApprovalStatus::Approved,
                ApprovalStatus::Denied,
            )
            .await?;
    }
    store
        .approval(id.to_string())
        .await?
        .ok_or_else(|| VoteError::NotFound(id.to_string()))
}

/// The requester takes an approval back, pending or approved (not yet used).
pub async fn withdraw(store: &Arc<dyn Store>, id: &str, requester: &str) -> Result<bool> {
    match store.approval(id.to_string()).await? {
        Some(a) if a.principal == requester => {
            for from in [ApprovalStatus::Pending, ApprovalStatus::Approved] {
                if store
                    .transition(id.to_string(), from, ApprovalStatus::Withdrawn)
                    .await?
                {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests;
