//! MCP tasks, durable: a call that waits for approval, answered as a task the client polls.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Pending, Secs};

/// Where a task stands. `waiting` and `running` are both "working" to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Its approval is not decided yet.
    Waiting,
    /// Approved; a gateway process (`owner`) runs the plan.
    Running,
    /// Ended with a tool result (which may be an error result: denied, expired, in doubt).
    Completed,
    /// Ended with a protocol error.
    Failed,
    /// The requester cancelled it.
    Cancelled,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Waiting,
            Self::Running,
            Self::Completed,
            Self::Failed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// One task: the call it stands for, its approval, and how it ended.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRecord {
    /// Unguessable (`tk_` + 24 random hex digits).
    pub id: String,
    /// The requester's id (only they may see or cancel the task).
    pub principal: String,
    /// The requester as they were authenticated (id, roles, claims, how), to run the call as.
    pub requester: Value,
    pub tool: String,
    /// The arguments as the client sent them.
    pub args: Value,
    pub transport: String,
    pub approval_id: String,
    pub state: TaskState,
    /// The process running it (`running`).
    pub owner: Option<String>,
    /// What it waits for, in words.
    pub message: Option<String>,
    /// `completed`: the `CallToolResult`; `failed`: the JSON-RPC error object.
    pub result: Option<Value>,
    pub created_at: Secs,
    pub updated_at: Secs,
    pub expires_at: Secs,
}

/// The task half of the store.
pub trait TaskStore {
    fn create_task(&self, task: TaskRecord) -> Pending<()>;
    fn task(&self, id: String) -> Pending<Option<TaskRecord>>;
    /// Tasks in `state`, oldest first.
    fn tasks_in(&self, state: TaskState, limit: u32) -> Pending<Vec<TaskRecord>>;
    /// Moves the task from `from` to `change.to`, setting the change's fields: `false` when it
    /// was not in `from` (someone else moved it first).
    fn move_task(&self, id: String, from: TaskState, change: TaskMove) -> Pending<bool>;
}

/// A task's next state and the fields that go with it (unset fields are cleared).
#[derive(Clone, Debug, PartialEq)]
pub struct TaskMove {
    pub to: TaskState,
    pub owner: Option<String>,
    pub message: Option<String>,
    pub result: Option<Value>,
    pub now: Secs,
}

impl TaskMove {
    /// To `state`, now, with nothing else set.
    pub fn to(state: TaskState) -> Self {
        Self {
            to: state,
            owner: None,
            message: None,
            result: None,
            now: super::now(),
        }
    }

    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }
}
