//! Approvals as MCP tasks (the Tasks extension, `io.modelcontextprotocol/tasks`, SEP-2663).
//!
//! A client that declares the extension and makes a call that needs approval gets a task
//! instead of a "pending" result: `working`, with a status message saying what it waits for.
//! The task lives in the store, so it survives restarts and can be polled from another process.
//! Once the approval is given the gateway runs the call — under the idempotency key
//! `task:<id>`, so a run a crash interrupts is reported in doubt, never run twice — and the
//! task completes with the tool's result. A denied or expired approval, or an approval the
//! plan no longer matches (policy bundle, component), completes it with an error result that
//! says so; `tasks/cancel` by the requester withdraws the approval. Tasks advance when polled
//! and on a timer, whoever polls. Only the requester may see or cancel a task.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolResult, ContentBlock, DetailedTask, ErrorData, GetTaskResult, JsonObject, Task,
    TaskPayload, TaskStatus,
};
use serde_json::{Map, Value, json};
use tracing::Instrument;

use crate::approvals::{status_message, withdraw};
use crate::gate::{GateError, Gateway, RawArgs, Transport};
use crate::policy::Principal;
use crate::state::{Approval, ApprovalStatus, TaskMove, TaskRecord, TaskState, now};
use crate::time::rfc3339;

/// How often clients are asked to poll, and how often the gateway advances tasks itself.
const POLL: Duration = Duration::from_secs(1);
/// How long a finished task is kept.
const KEEP_S: u64 = 24 * 3600;

fn internal(e: impl std::fmt::Display) -> ErrorData {
    ErrorData::internal_error(format!("task store: {e}"), None)
}

/// The requester as stored with the task, and back.
fn requester(principal: &Principal) -> Value {
    json!(principal)
}

/// The requester as configured *now* (roles and claims may have changed since the task was
/// made; a principal no longer configured runs nothing). An OAuth principal is not in the
/// configuration: it is the one its token named when the task was made.
fn principal_of(gateway: &Gateway, value: &Value) -> Option<Principal> {
    let how = match value.get("authenticated_by")?.as_str()? {
        "oauth" => {
            return Some(Principal {
                id: value.get("id")?.as_str()?.to_string(),
                roles: serde_json::from_value(value.get("roles")?.clone()).ok()?,
                claims: value.get("claims")?.as_object()?.clone(),
                authenticated_by: "oauth",
            });
        }
        "stdio" => "stdio",
        "token" => "token",
        "anonymous" => "anonymous",
        "cli" => "cli",
        _ => return None,
    };
    gateway.current_principal(value.get("id")?.as_str()?, how)
}

/// Records a task for a call that waits for `approval`.
pub async fn create(
    gateway: &Gateway,
    principal: &Principal,
    tool: &str,
    args: Option<Map<String, Value>>,
    transport: Transport,
    approval: &Approval,
) -> Result<Task, ErrorData> {
    let at = now();
    let id = format!("tk_{}", crate::time::random_hex(12).map_err(internal)?);
    let record = TaskRecord {
        id,
        principal: principal.id.clone(),
        requester: requester(principal),
        tool: tool.to_string(),
        args: Value::Object(args.unwrap_or_default()),
        transport: match transport {
            Transport::Http => "http",
            _ => "stdio",
        }
        .into(),
        approval_id: approval.id.clone(),
        state: TaskState::Waiting,
        owner: None,
        message: Some(status_message(approval)),
        result: None,
        created_at: at,
        updated_at: at,
        expires_at: approval.expires_at.saturating_add(KEEP_S),
    };
    gateway
        .state
        .create_task(record.clone())
        .await
        .map_err(internal)?;
    gateway
        .audit
        .record(crate::audit::records::task(
            "created",
            &record.id,
            &record.principal,
            &record.tool,
            &record.approval_id,
        ))
        .await;
    Ok(wire(&record))
}

fn wire(record: &TaskRecord) -> Task {
    let status = match record.state {
        TaskState::Waiting | TaskState::Running => TaskStatus::Working,
        TaskState::Completed => TaskStatus::Completed,
        TaskState::Failed => TaskStatus::Failed,
        TaskState::Cancelled => TaskStatus::Cancelled,
    };
    let mut task = Task::new(
        record.id.clone(),
        status,
        rfc3339(record.created_at),
        rfc3339(record.updated_at),
    )
    .with_ttl_ms(record.expires_at.saturating_sub(record.created_at) * 1000)
    .with_poll_interval_ms(POLL.as_millis() as u64);
    if let Some(message) = &record.message {
        task = task.with_status_message(message.clone());
    }
    task
}

fn object(value: Option<&Value>) -> JsonObject {
    value
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// The task with its payload, as `tasks/get` answers.
fn detailed(record: &TaskRecord) -> GetTaskResult {
    let payload = match record.state {
        TaskState::Waiting | TaskState::Running => TaskPayload::Working,
        TaskState::Completed => TaskPayload::Completed {
            result: object(record.result.as_ref()),
        },
        TaskState::Failed => TaskPayload::Failed {
            error: object(record.result.as_ref()),
        },
        TaskState::Cancelled => TaskPayload::Cancelled,
    };
    GetTaskResult::new(DetailedTask::new(wire(record), payload))
}

/// The requester's task `id`; anyone else's, or none, is "unknown" (-32602).
async fn owned(
    gateway: &Gateway,
    principal: &Principal,
    id: &str,
) -> Result<TaskRecord, ErrorData> {
    match gateway.state.task(id.to_string()).await.map_err(internal)? {
        Some(record) if record.principal == principal.id => Ok(record),
        _ => Err(ErrorData::invalid_params(
            format!("unknown task `{id}`"),
            None,
        )),
    }
}

/// `tasks/get`: advances the task if it can, then reports it.
pub async fn get(
    gateway: &Arc<Gateway>,
    principal: &Principal,
    id: &str,
) -> Result<GetTaskResult, ErrorData> {
    let record = owned(gateway, principal, id).await?;
    advance(gateway, record).await;
    Ok(detailed(&owned(gateway, principal, id).await?))
}

/// `tasks/cancel`: the requester withdraws the approval; a task already running finishes.
pub async fn cancel(gateway: &Gateway, principal: &Principal, id: &str) -> Result<(), ErrorData> {
    let record = owned(gateway, principal, id).await?;
    // The task first (only a waiting one can be cancelled; one the gateway already started
    // finishes), then its approval, pending or approved, so that nothing can use it.
    let cancelled = gateway
        .state
        .move_task(
            record.id.clone(),
            TaskState::Waiting,
            TaskMove::to(TaskState::Cancelled)
                .message("cancelled by the requester; the approval is withdrawn"),
        )
        .await
        .map_err(internal)?;
    if cancelled {
        withdraw(&gateway.state, &record.approval_id, &principal.id)
            .await
            .map_err(internal)?;
        gateway
            .audit
            .record(crate::audit::records::task(
                "cancelled",
                &record.id,
                &principal.id,
                &record.tool,
                &record.approval_id,
            ))
            .await;
    }
    Ok(())
}

async fn end(
    gateway: &Gateway,
    record: &TaskRecord,
    to: TaskState,
    message: Option<String>,
    result: Option<Value>,
) {
    let moved = gateway
        .state
        .move_task(
            record.id.clone(),
            record.state,
            TaskMove {
                owner: record.owner.clone(),
                message,
                result,
                ..TaskMove::to(to)
            },
        )
        .await;
    if let Err(e) = moved {
        tracing::error!(task = %record.id, "updating a task failed: {e:#}");
    }
}

/// An error result the model reads (`completed`, `isError: true`).
fn error_result(text: String) -> Value {
    json!(CallToolResult::error(vec![ContentBlock::text(text)]))
}

/// One step: follow the approval, start the run once approved, take over a run whose process
/// died.
pub async fn advance(gateway: &Arc<Gateway>, record: TaskRecord) {
    match record.state {
        TaskState::Waiting => {}
        TaskState::Running => {
            if let Some(owner) = &record.owner
                && !gateway.owner_alive(owner)
            {
                // Its run was interrupted: the idempotency key reports it in doubt.
                let gateway = gateway.clone();
                tokio::spawn(async move { run(&gateway, record).await });
            }
            return;
        }
        _ => return,
    }
    let approval = match gateway.state.approval(record.approval_id.clone()).await {
        Ok(Some(approval)) => approval,
        Ok(None) => {
            end(
                gateway,
                &record,
                TaskState::Completed,
                None,
                Some(error_result(
                    "the task's approval no longer exists; nothing ran".into(),
                )),
            )
            .await;
            return;
        }
        Err(e) => {
            tracing::error!(task = %record.id, "reading a task's approval failed: {e:#}");
            return;
        }
    };
    let message = status_message(&approval);
    let ended = |text: String| {
        (
            TaskState::Completed,
            Some(message.clone()),
            Some(error_result(text)),
        )
    };
    let outcome = match approval.status {
        ApprovalStatus::Pending | ApprovalStatus::Approved if approval.expired(now()) => {
            Some(ended(format!(
                "approval {} expired at {}; nothing ran",
                approval.id,
                rfc3339(approval.expires_at)
            )))
        }
        ApprovalStatus::Pending => {
            if record.message.as_deref() != Some(message.as_str()) {
                let _ = gateway
                    .state
                    .move_task(
                        record.id.clone(),
                        TaskState::Waiting,
                        TaskMove::to(TaskState::Waiting).message(message),
                    )
                    .await;
            }
            return;
        }
        ApprovalStatus::Approved => {
            let claimed = gateway
                .state
                .move_task(
                    record.id.clone(),
                    TaskState::Waiting,
                    TaskMove {
                        owner: Some(gateway.owner_id().to_string()),
                        ..TaskMove::to(TaskState::Running).message("approved; running")
                    },
                )
                .await;
            if matches!(claimed, Ok(true)) {
                let gateway = gateway.clone();
                let mut record = record;
                record.state = TaskState::Running;
                record.owner = Some(gateway.owner_id().to_string());
                tokio::spawn(async move { run(&gateway, record).await });
            }
            return;
        }
        ApprovalStatus::Denied => Some(ended(format!(
            "approval {} was {message}; nothing ran",
            approval.id
        ))),
        ApprovalStatus::Withdrawn => Some((TaskState::Cancelled, Some(message), None)),
        ApprovalStatus::Consumed => Some(ended(format!(
            "approval {} was used by another identical call; this task did not run it",
            approval.id
        ))),
    };
    if let Some((to, message, result)) = outcome {
        end(gateway, &record, to, message, result).await;
    }
}

/// Runs the approved call as its requester, under the key `task:<id>`, and records the result.
async fn run(gateway: &Arc<Gateway>, record: TaskRecord) {
    let Some(principal) = principal_of(gateway, &record.requester) else {
        let text = format!(
            "the requester `{}` is no longer a configured principal; nothing ran",
            record.principal
        );
        end(
            gateway,
            &record,
            TaskState::Completed,
            None,
            Some(error_result(text)),
        )
        .await;
        return;
    };
    let transport = if record.transport == "http" {
        Transport::Http
    } else {
        Transport::Stdio
    };
    let args = record.args.as_object().cloned();
    let key = format!("task:{}", record.id);
    let span = gateway.request_span("tools/call", &record.tool, &principal, transport, None);
    let result = gateway
        .call(
            &principal,
            &record.tool,
            RawArgs::Object(args),
            transport,
            crate::gate::Asked::key(Some(key)),
            None,
        )
        .instrument(span.clone())
        .await;
    crate::gate::finish_span(&span, &result);
    let (to, message, result) = match result {
        Err(GateError::PendingApproval(a)) if a.id == record.approval_id => {
            // The policy, seeing the approvals, asks for more: wait again.
            let _ = gateway
                .state
                .move_task(
                    record.id.clone(),
                    TaskState::Running,
                    TaskMove::to(TaskState::Waiting).message(status_message(&a)),
                )
                .await;
            return;
        }
        Err(GateError::PendingApproval(a)) => (
            TaskState::Completed,
            Some("approval void".into()),
            Some(error_result(format!(
                "approval {} no longer matches this call (the policy bundle or the component changed); nothing ran. A new approval, {}, is pending for the identical call.",
                record.approval_id, a.id
            ))),
        ),
        other => match super::to_mcp(other) {
            Ok(result) => (
                TaskState::Completed,
                Some("done".into()),
                Some(json!(result)),
            ),
            Err(error) => (TaskState::Failed, Some("failed".into()), Some(json!(error))),
        },
    };
    end(gateway, &record, to, message, result).await;
}

/// Advances waiting tasks, and runs whose process died, every second, for as long as the
/// gateway serves.
pub fn spawn_advancer(gateway: Arc<Gateway>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for state in [TaskState::Waiting, TaskState::Running] {
                match gateway.state.tasks_in(state, 100).await {
                    Ok(tasks) => {
                        for task in tasks {
                            advance(&gateway, task).await;
                        }
                    }
                    Err(e) => tracing::warn!("listing tasks failed: {e:#}"),
                }
            }
        }
    });
}
