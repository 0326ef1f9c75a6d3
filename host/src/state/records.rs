//! What the store keeps: idempotency intents and outcomes, approvals and their votes, rate
//! counters and usage. Plain data; the rules that act on it live in the gate's stages and in
//! [`crate::approvals`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::policy::types::ApprovalRequirement;

/// Seconds since the Unix epoch.
pub type Secs = u64;

/// An intent to run a plan under an idempotency key, recorded before the run.
#[derive(Clone, Debug)]
pub struct Intent {
    pub principal: String,
    pub key: String,
    pub plan_hash: String,
    /// The process that will run it (a random id per gateway start).
    pub owner: String,
    pub now: Secs,
    /// When the record may be forgotten (and the key used again).
    pub expires_at: Secs,
}

/// What recording an intent found.
#[derive(Clone, Debug, PartialEq)]
pub enum Begin {
    /// No live record: the intent is recorded and the caller runs the plan.
    Fresh,
    /// The plan ran under this key; here is what it returned.
    Done(StoredOutcome),
    /// The same plan is running under this key in the process `owner` (or was, if that
    /// process died: see [`crate::state::Lease::alive`]).
    Running { owner: String, since: Secs },
    /// The key was used for another plan.
    Conflict { plan_hash: String },
    /// A run under this key was interrupted (a crash) before its outcome was recorded: it may
    /// or may not have had its effect, and it is never re-run.
    InDoubt { since: Secs },
}

/// The outcome of a run, as replayed to a caller who repeats the key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredOutcome {
    /// The tool's result (MCP `CallToolResult` fields), when the run completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why the run failed, when it did (a limit, a trap, a tool error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub fuel_used: u64,
    pub finished_at: Secs,
}

/// One rate or budget charge: `cost` units against `max` per fixed window of `window_s`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charge {
    pub key: String,
    pub window_s: u64,
    pub max: u64,
    pub cost: u64,
}

/// A limit a charge would exceed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Exceeded {
    pub key: String,
    pub max: u64,
    pub window_s: u64,
    pub used: u64,
    /// When the current window ends.
    pub resets_at: Secs,
}

/// Calls and fuel of one principal over recent windows: in total and for one tool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub principal: Windows,
    pub tool: Windows,
}

/// Sums over the last minute, hour and day.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Windows {
    pub calls: Spans,
    pub fuel: Spans,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Spans {
    #[serde(rename = "1m")]
    pub minute: u64,
    #[serde(rename = "1h")]
    pub hour: u64,
    #[serde(rename = "24h")]
    pub day: u64,
}

/// Where an approval stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalStatus {
    /// Waiting for approvers.
    Pending,
    /// Enough approvers: the identical call may run, once.
    Approved,
    /// An approver refused it.
    Denied,
    /// The requester took it back.
    Withdrawn,
    /// The approved plan ran.
    Consumed,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Withdrawn => "withdrawn",
            Self::Consumed => "consumed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Approved,
            Self::Denied,
            Self::Withdrawn,
            Self::Consumed,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }
}

/// A call waiting for (or holding) human approval, bound to its exact plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Approval {
    pub id: String,
    pub plan_hash: String,
    /// The policy bundle that asked for the approval; another bundle voids it.
    pub policy_digest: String,
    pub tool: String,
    pub component: String,
    pub component_digest: String,
    pub principal: String,
    pub environment: String,
    /// The canonical arguments, exactly as they will run.
    pub args: Value,
    pub annotations: Value,
    pub requirement: ApprovalRequirement,
    /// The decision's reasons and grants, for the approver.
    pub reasons: Vec<String>,
    pub grants: Value,
    pub status: ApprovalStatus,
    pub created_at: Secs,
    pub expires_at: Secs,
    pub votes: Vec<Vote>,
}

impl Approval {
    /// Whether it can no longer be approved or used.
    pub fn expired(&self, now: Secs) -> bool {
        now >= self.expires_at
    }
}

/// One approver's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    pub approver: String,
    pub roles: Vec<String>,
    pub approve: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub at: Secs,
    /// Where the verdict came from: `cli (uid 1000)`, `admin-api 127.0.0.1:51234`, …
    pub origin: String,
}
