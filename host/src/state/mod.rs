//! Durable governance state: idempotency records, approvals, rate counters, usage, tasks and
//! the audit trail.
//!
//! One small interface, [`Store`]: each method is one short transaction with one purpose, so a
//! second backend (PostgreSQL, for replicas) implements the same methods as the same
//! transactions, and the rules that use them ([`crate::gate`], [`crate::approvals`]) never know
//! which backend they talk to. Rules live above the interface; the backends only store, compare
//! and count, each change atomically. See docs/decisions.md ("State").
//!
//! The embedded backend is SQLite ([`sqlite`]): bundled, WAL, versioned migrations, one
//! writing connection shared by flat combining (a free connection commits on the caller's
//! thread, with no hop; a busy one takes the caller's job into its next group commit; anything
//! that waits — another process's lock, fsync with `durability = "machine"`, sweeps, WAL
//! checkpoints — happens on the store's own thread).

mod approvals;
pub mod audit;
mod owners;
mod records;
mod schema;
pub mod sqlite;
mod sqlite_approvals;
mod sqlite_audit;
mod sqlite_tasks;
mod tasks;
mod writer;

use std::future::Future;
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;

pub use approvals::{ApprovalStore, Created};
pub use audit::{AuditAppend, AuditQuery, AuditRow, AuditStore, Pruned, Sealer};
pub use owners::Lease;
pub use tasks::{TaskMove, TaskRecord, TaskState, TaskStore};

pub use records::{
    Approval, ApprovalStatus, Begin, Charge, Exceeded, Intent, Secs, Spans, StoredOutcome, Usage,
    Vote, Windows,
};

/// What a store method returns: a future that does not borrow its arguments. The operation is
/// queued when the method is called, so operations run in call order, whether or not (and
/// whenever) their futures are awaited.
pub type Pending<T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'static>>;

/// Seconds since the Unix epoch, now.
pub fn now() -> Secs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The governance store. Every method is one transaction; none blocks the caller's thread.
pub trait Store: ApprovalStore + TaskStore + AuditStore + Send + Sync + 'static {
    // --- idempotency ------------------------------------------------------------------------

    /// Records `intent` unless a live record holds the key (see [`Begin`]).
    fn begin(&self, intent: Intent) -> Pending<Begin>;
    /// Marks the run `owner` left running under the key as in doubt (its process died); the
    /// record is kept for its retention from `now`.
    fn abandon(&self, principal: String, key: String, owner: String, now: Secs) -> Pending<()>;
    /// Stores the outcome of the run `begin` allowed `owner`; the record is kept for its
    /// retention from `outcome.finished_at`.
    fn finish(
        &self,
        principal: String,
        key: String,
        owner: String,
        outcome: StoredOutcome,
    ) -> Pending<()>;
    /// Forgets `owner`'s intent whose plan did not run (denied, pending approval, over a limit).
    fn release(&self, principal: String, key: String, owner: String) -> Pending<()>;

    // --- rates and usage ---------------------------------------------------------------------

    /// Adds every charge, or none: `Err` names the first limit one of them would exceed.
    fn charge(&self, charges: Vec<Charge>, now: Secs) -> Pending<Result<(), Exceeded>>;
    /// How much of each charge's current window is used (`cost` is ignored).
    fn used(&self, charges: Vec<Charge>, now: Secs) -> Pending<Vec<u64>>;
    /// Records one run of `tool` by `principal` that used `fuel`, and adds `fuel` to `charges`
    /// (fuel budgets, charged after the run whatever the limit).
    fn record_run(
        &self,
        principal: String,
        tool: String,
        fuel: u64,
        charges: Vec<Charge>,
        now: Secs,
    ) -> Pending<()>;
    /// Resolves once everything queued before it is committed (at shutdown).
    fn flush(&self) -> Pending<()>;
    /// Calls and fuel of `principal` (and of it with `tool`) over the last minute, hour, day.
    fn usage(&self, principal: String, tool: String, now: Secs) -> Pending<Usage>;
}

#[cfg(test)]
mod tests;
