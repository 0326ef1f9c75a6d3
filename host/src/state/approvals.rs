//! The approvals half of the store.

use super::Pending;
use super::records::{Approval, ApprovalStatus, Vote};

/// What creating an approval did.
#[derive(Clone, Debug, PartialEq)]
pub enum Created {
    /// The new approval was stored.
    New,
    /// A live approval (pending or approved, unexpired) for the same plan under the same
    /// policy bundle exists: concurrent identical calls share it.
    Existing(Box<Approval>),
    /// The requester already has this many live pending approvals (the cap).
    TooMany(u32),
}

pub trait ApprovalStore {
    /// The newest approval for exactly this plan under exactly this policy bundle.
    fn approval_for(&self, plan_hash: String, policy_digest: String) -> Pending<Option<Approval>>;
    /// Stores a new pending approval (its `votes` are ignored) unless a live one for the same
    /// plan and bundle exists, or the requester has `max_pending` live pending ones already.
    fn create_approval(&self, approval: Approval, max_pending: u32) -> Pending<Created>;
    fn approval(&self, id: String) -> Pending<Option<Approval>>;
    /// Approvals, newest first; only those in `status` when given.
    fn approvals(&self, status: Option<ApprovalStatus>, limit: u32) -> Pending<Vec<Approval>>;
    /// Adds a vote if the approval is still pending or approved (not yet used), unexpired at
    /// `vote.at`, and the approver has not voted: `false` when it was not added.
    fn add_vote(&self, id: String, vote: Vote) -> Pending<bool>;
    /// Moves the approval from `from` to `to`: `false` when it was not in `from` (someone else
    /// moved it first).
    fn transition(&self, id: String, from: ApprovalStatus, to: ApprovalStatus) -> Pending<bool>;
}
