//! Approvals as MCP tasks, end to end: an rmcp client that declares the Tasks extension calls
//! a prod restart, gets a task, and polls it while operators approve through the CLI; the task
//! completes with the tool's result and the control plane sees exactly one restart. A task
//! survives a gateway restart; a denial completes it with an error result; `tasks/cancel`
//! withdraws the approval; another principal cannot see it.

use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ClientCapabilities,
    GetTaskParams, Implementation, TaskPayload, TaskStatus,
};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

use crate::gateway::{HttpServer, Setup, binary, http_client_discover, http_server};
use crate::governance::{APPROVERS, approvals, approve, stderr, stdout};
use crate::ops::{DORA, TOKEN, ops_setup_with};
use crate::upstream::ControlPlane;

type TaskClient = RunningService<RoleClient, rmcp::model::ClientConfig>;

fn config() -> rmcp::model::ClientConfig {
    rmcp::model::ClientConfig::new(
        ClientCapabilities::builder().enable_tasks().build(),
        Implementation::new("tasks-test", "0.1.0"),
    )
}

async fn stdio_tasks(s: &Setup, principal: Option<&str>) -> TaskClient {
    let mut command = tokio::process::Command::new(binary());
    command
        .arg("--config")
        .arg(&s.config)
        .args(["serve", "--stdio"])
        .args(principal.map(|p| ["--as", p]).into_iter().flatten())
        .env("RUST_LOG", &s.rust_log);
    config()
        .serve(TokioChildProcess::new(command).unwrap())
        .await
        .expect("MCP initialize over stdio")
}

async fn http_tasks(server: &HttpServer, token: &str) -> TaskClient {
    // Over stateless HTTP the client's capabilities travel with each request: MCP 2026-07-28.
    http_client_discover(server, token, config()).await
}

/// Calls `restart_service` for `name`, expecting a task; returns its id and status message.
async fn restart_task(client: &TaskClient, name: &str) -> (String, String) {
    let Value::Object(args) = json!({ "name": name }) else {
        unreachable!()
    };
    let response = client
        .call_tool_once(CallToolRequestParams::new("restart_service").with_arguments(args))
        .await
        .expect("tools/call");
    let CallToolResponse::Task(created) = response else {
        panic!("expected a task, got {response:?}")
    };
    assert_eq!(created.task.status, TaskStatus::Working);
    (
        created.task.task_id.clone(),
        created.task.status_message.clone().unwrap_or_default(),
    )
}

/// Polls until the task is terminal (at most 20 s).
async fn finished(client: &TaskClient, id: &str) -> TaskPayload {
    for _ in 0..200 {
        let got = client
            .peer()
            .get_task(GetTaskParams::new(id.to_string()))
            .await
            .expect("tasks/get");
        if got.task.status().is_terminal() {
            return got.task.payload;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("task {id} never finished");
}

fn completed(payload: TaskPayload) -> CallToolResult {
    match payload {
        TaskPayload::Completed { result } => serde_json::from_value(Value::Object(result)).unwrap(),
        other => panic!("expected completed, got {other:?}"),
    }
}

fn text(result: &CallToolResult) -> String {
    crate::gateway::text(result)
}

/// The approval id a task waits for (the CLI lists it).
fn pending_id(s: &Setup) -> String {
    let listed = stdout(&approvals(s, &["list"]));
    listed
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("nothing pending: {listed}"))
        .to_string()
}

async fn restarts(cp: &ControlPlane, service: &str) -> usize {
    let path = format!("/v1/services/{service}/restart");
    cp.requests()
        .await
        .iter()
        .filter(|r| r["path"] == path.as_str())
        .count()
}

#[tokio::test]
async fn an_approved_task_completes_with_the_tools_result_and_runs_once() {
    let cp = ControlPlane::start("127.0.0.1", TOKEN).await;
    let (s, _secrets) = ops_setup_with(&cp, "prod", Some(TOKEN), APPROVERS);
    let client = stdio_tasks(&s, None).await; // dora
    let (id, message) = restart_task(&client, "web").await;
    assert!(id.starts_with("tk_"), "{id}");
    assert_eq!(message, "waiting for 2 approvals from sre, 0 given");
    let approval = pending_id(&s);
    approve(&s, &approval, "sam");
    let got = client
        .peer()
        .get_task(GetTaskParams::new(id.clone()))
        .await
        .unwrap();
    assert_eq!(got.task.status(), TaskStatus::Working);
    assert_eq!(
        got.task.task.status_message.as_deref(),
        Some("waiting for 2 approvals from sre, 1 given")
    );
    // Someone else's task does not exist for them.
    let dan = stdio_tasks(&s, Some("dan")).await;
    assert!(
        dan.peer()
            .get_task(GetTaskParams::new(id.clone()))
            .await
            .is_err()
    );
    approve(&s, &approval, "sue");
    let result = completed(finished(&client, &id).await);
    assert_eq!(result.is_error, Some(false), "{}", text(&result));
    assert_eq!(restarts(&cp, "web").await, 1);
    // Polling a finished task again reports the same result and runs nothing.
    let again = completed(finished(&client, &id).await);
    assert_eq!(again, result);
    assert_eq!(restarts(&cp, "web").await, 1);
    client.cancel().await.unwrap();
    dan.cancel().await.unwrap();
}

#[tokio::test]
async fn a_task_survives_a_gateway_restart_and_completes_after_approval() {
    let cp = ControlPlane::start("127.0.0.1", TOKEN).await;
    let (s, _secrets) = ops_setup_with(&cp, "prod", Some(TOKEN), APPROVERS);
    let server = http_server(&s).await;
    let client = http_tasks(&server, DORA).await;
    let (id, _) = restart_task(&client, "api").await;
    client.cancel().await.unwrap();
    drop(server);

    let approval = pending_id(&s);
    approve(&s, &approval, "sam");
    approve(&s, &approval, "sue");
    let server = http_server(&s).await;
    let client = http_tasks(&server, DORA).await;
    let result = completed(finished(&client, &id).await);
    assert_eq!(result.is_error, Some(false), "{}", text(&result));
    assert_eq!(restarts(&cp, "api").await, 1);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_denied_task_says_so_and_a_cancelled_one_withdraws_its_approval() {
    let cp = ControlPlane::start("127.0.0.1", TOKEN).await;
    let (s, _secrets) = ops_setup_with(&cp, "prod", Some(TOKEN), APPROVERS);
    let client = stdio_tasks(&s, None).await;
    let (denied, _) = restart_task(&client, "web").await;
    let approval = pending_id(&s);
    let o = approvals(
        &s,
        &[
            "deny",
            &approval,
            "--as",
            "sam",
            "--reason",
            "change freeze",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let result = completed(finished(&client, &denied).await);
    assert_eq!(result.is_error, Some(true));
    assert!(
        text(&result).contains("denied by sam: change freeze"),
        "{}",
        text(&result)
    );

    let (cancelled, _) = restart_task(&client, "worker").await;
    let worker_approval = pending_id(&s);
    client
        .peer()
        .cancel_task(CancelTaskParams::new(cancelled.clone()))
        .await
        .unwrap();
    assert!(matches!(
        finished(&client, &cancelled).await,
        TaskPayload::Cancelled
    ));
    let shown: Value = serde_json::from_str(&stdout(&approvals(
        &s,
        &["show", &worker_approval, "--json"],
    )))
    .unwrap();
    assert_eq!(shown["status"], "withdrawn");
    let late = approvals(&s, &["approve", &worker_approval, "--as", "sam"]);
    assert!(!late.status.success());
    assert_eq!(
        restarts(&cp, "web").await + restarts(&cp, "worker").await,
        0
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_task_whose_run_a_crash_interrupted_is_in_doubt_and_never_rerun() {
    let policy = r#"package portcullis
import rego.v1
default decision := {"allow": false}
decision := {"allow": true} if input.action == "list"
decision := {"allow": true, "limits": {"timeout_ms": 20000}, "requires_approval": {"approvers": 1, "reason": "slow"}} if input.action == "call"
"#;
    let s = crate::gateway::setup(crate::gateway::Options {
        components: &["hostile-sleep"],
        policy: Some(policy),
        limits_extra: "max_timeout = \"30s\"",
        extra: "[principals.sam]\nroles = [\"sre\"]\n",
        ..Default::default()
    });
    let server = http_server(&s).await;
    let client = http_tasks(&server, crate::gateway::BOB).await;
    let response = client
        .call_tool_once(CallToolRequestParams::new("sleep_forever"))
        .await
        .unwrap();
    let CallToolResponse::Task(created) = response else {
        panic!("expected a task, got {response:?}")
    };
    let id = created.task.task_id.clone();
    approve(&s, &pending_id(&s), "sam");
    // The gateway starts the run within a second; then it dies mid-run.
    let mut running = false;
    for _ in 0..50 {
        let got = client
            .peer()
            .get_task(GetTaskParams::new(id.clone()))
            .await
            .unwrap();
        if got.task.task.status_message.as_deref() == Some("approved; running") {
            running = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(running, "the approved task never started");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut server = server;
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();

    let server = http_server(&s).await;
    let client = http_tasks(&server, crate::gateway::BOB).await;
    let started = std::time::Instant::now();
    let result = completed(finished(&client, &id).await);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "it must not run again"
    );
    assert_eq!(result.is_error, Some(true));
    assert!(
        text(&result).contains("was interrupted"),
        "{}",
        text(&result)
    );
    client.cancel().await.unwrap();
}
