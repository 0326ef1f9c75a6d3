//! The operations walkthrough, end to end: the real binary with the default policies and the
//! `ops` component, the demo control plane on loopback, an rmcp client over stdio and HTTP.
//! The agent restarts a service in staging with a credential only the gateway holds, is asked
//! for approval in prod, and sees progress and log notifications of a deploy.

#![allow(deprecated)] // MCP logging types

use std::sync::{Arc, Mutex};

use rmcp::model::{
    CallToolRequestParams, LoggingLevel, LoggingMessageNotificationParam, NumberOrString,
    ProgressNotificationParam, ProgressToken, RequestMetaObject,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::TokioChildProcess;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::gateway::{Options, Setup, binary, call, http_server, setup, text};
use crate::upstream::ControlPlane;

pub const TOKEN: &str = "cp-canary-7f3a9c51e2";
/// Bearer token of the `dora` principal (role `deploy`) over HTTP.
pub const DORA: &str = "dora-test-token-0123456789";
/// The demo control plane's seeded `web` artifact, pinned in `data.ops.artifacts`.
fn pinned_web_artifact() -> String {
    let data: Value = serde_json::from_str(
        &std::fs::read_to_string(crate::support::root().join("policies/data.json")).unwrap(),
    )
    .unwrap();
    data["ops"]["artifacts"]["web"][0]
        .as_str()
        .expect("data.ops.artifacts.web has a pinned digest")
        .to_string()
}

/// A setup whose control plane is `cp` and whose secret file holds `token` (or is missing).
pub fn ops_setup(
    cp: &ControlPlane,
    environment: &str,
    token: Option<&str>,
) -> (Setup, tempfile::TempDir) {
    ops_setup_with(cp, environment, token, "")
}

/// [`ops_setup`] with more configuration appended (principals, `[state]`, …).
pub fn ops_setup_with(
    cp: &ControlPlane,
    environment: &str,
    token: Option<&str>,
    more: &str,
) -> (Setup, tempfile::TempDir) {
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("cp.token");
    if let Some(token) = token {
        std::fs::write(&token_file, format!("{token}\n")).unwrap();
    }
    let extra = format!(
        r#"[secrets]
CONTROL_PLANE_TOKEN = {{ file = "{file}" }}

[ceilings]
http = ["*", "127.0.0.1"]

[settings]
control_plane = {{ url = "{url}", host = "{host}", port = {port}, scheme = "http" }}

[principals.dora]
roles = ["deploy"]
tokens = ["{dora}"]

{more}
"#,
        file = token_file.display(),
        url = cp.url,
        host = cp.host,
        port = cp.port,
        dora = portcullis::mcp::http::token_hash(DORA),
    );
    let s = setup(Options {
        components: &["ops", "fetch"],
        environment,
        stdio_principal: "dora",
        extra: Box::leak(extra.into_boxed_str()),
        ..Options::default()
    });
    (s, secrets)
}

/// Notifications a client received, in order, as short strings.
#[derive(Clone, Default)]
pub struct Recorder(pub Arc<Mutex<Vec<String>>>);

impl ClientHandler for Recorder {
    async fn on_progress(&self, p: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        self.0.lock().unwrap().push(format!(
            "progress {}/{} {}",
            p.progress,
            p.total.map_or("?".into(), |t| t.to_string()),
            p.message.unwrap_or_default()
        ));
    }

    async fn on_logging_message(
        &self,
        p: LoggingMessageNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.0.lock().unwrap().push(format!(
            "log {:?} {}",
            p.level,
            p.data.as_str().unwrap_or("")
        ));
    }
}

pub type RecordingClient = RunningService<RoleClient, Recorder>;

async fn stdio_recording(s: &Setup, recorder: Recorder) -> RecordingClient {
    let mut command = Command::new(binary());
    command
        .arg("--config")
        .arg(&s.config)
        .args(["serve", "--stdio"])
        .env("RUST_LOG", &s.rust_log);
    recorder
        .serve(TokioChildProcess::new(command).unwrap())
        .await
        .expect("MCP initialize over stdio")
}

/// Calls with a progress token and a log level in `_meta`.
async fn call_with_notices(
    client: &RecordingClient,
    tool: &str,
    args: Value,
) -> rmcp::model::CallToolResult {
    let Value::Object(map) = args else {
        unreachable!()
    };
    let mut meta = RequestMetaObject::default();
    meta.set_progress_token(ProgressToken(NumberOrString::Number(7)));
    meta.set_log_level(LoggingLevel::Info);
    let mut params = CallToolRequestParams::new(tool.to_string()).with_arguments(map);
    params.meta = Some(meta);
    client.call_tool(params).await.expect("tools/call")
}

fn authorization_of(request: &Value) -> Option<String> {
    request["headers"]["authorization"]
        .as_str()
        .map(str::to_string)
}

#[tokio::test]
async fn an_agent_restarts_a_service_in_staging_with_a_credential_it_never_holds() {
    let cp = ControlPlane::start("127.0.0.1", TOKEN).await;
    let (s, _secrets) = ops_setup(&cp, "staging", Some(TOKEN));
    let client = crate::gateway::stdio_client(&s).await;

    let listed = call(&client, "list_services", json!({})).await.unwrap();
    assert_eq!(listed.is_error, Some(false), "{}", text(&listed));
    assert!(text(&listed).contains("web"), "{}", text(&listed));

    let restarted = call(&client, "restart_service", json!({"name": "web"}))
        .await
        .unwrap();
    assert_eq!(restarted.is_error, Some(false), "{}", text(&restarted));
    let seen = cp.requests().await;
    let restart = seen
        .iter()
        .find(|r| r["path"] == "/v1/services/web/restart")
        .expect("the control plane received the restart");
    assert_eq!(restart["method"], "POST");
    assert_eq!(
        authorization_of(restart).as_deref(),
        Some(&*format!("Bearer {TOKEN}"))
    );
    let everything = format!("{listed:?} {restarted:?}");
    assert!(
        !everything.contains(TOKEN),
        "the credential reached the agent"
    );
    assert_eq!(
        restarted.meta.as_ref().unwrap().0["portcullis/egress"][0]["injected"],
        true
    );

    // A service the policy does not list for staging: denied before any request is made.
    cp.clear().await;
    let billing = call(&client, "restart_service", json!({"name": "billing"}))
        .await
        .unwrap();
    assert_eq!(billing.is_error, Some(true));
    assert!(
        text(&billing).starts_with("denied by policy:"),
        "{}",
        text(&billing)
    );
    assert!(cp.requests().await.is_empty());
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn production_changes_require_approval_and_reads_do_not() {
    let cp = ControlPlane::start("127.0.0.1", TOKEN).await;
    let (s, _secrets) = ops_setup(&cp, "prod", Some(TOKEN));
    let client = crate::gateway::stdio_client(&s).await;
    let got = call(&client, "get_service", json!({"name": "api"}))
        .await
        .unwrap();
    assert_eq!(got.is_error, Some(false), "{}", text(&got));
    cp.clear().await;
    for (tool, args) in [
        ("restart_service", json!({"name": "web"})),
        ("scale_service", json!({"name": "web", "replicas": 4})),
    ] {
        let result = call(&client, tool, args).await.unwrap();
        assert_eq!(result.is_error, Some(true), "{tool}");
        let t = text(&result);
        assert!(
            t.contains("approval pending")
                && t.contains("waiting for 2 approvals from sre, 0 given"),
            "{tool}: {t}"
        );
    }
    assert!(
        cp.requests().await.is_empty(),
        "nothing reached the control plane"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn deploy_takes_only_a_pinned_digest_and_reports_progress_over_stdio() {
    let cp = ControlPlane::start("127.0.0.1", TOKEN).await;
    let (s, _secrets) = ops_setup(&cp, "staging", Some(TOKEN));
    let recorder = Recorder::default();
    let client = stdio_recording(&s, recorder.clone()).await;

    let tag = call_with_notices(
        &client,
        "deploy",
        json!({"service": "web", "artifact": "latest"}),
    )
    .await;
    assert_eq!(tag.is_error, Some(true));
    assert!(text(&tag).contains("input schema"), "{}", text(&tag));
    let unpinned = format!("sha256:{}", "0".repeat(64));
    let other = call_with_notices(
        &client,
        "deploy",
        json!({"service": "web", "artifact": unpinned}),
    )
    .await;
    assert_eq!(other.is_error, Some(true));
    assert!(text(&other).contains("pinned"), "{}", text(&other));
    assert!(
        recorder.0.lock().unwrap().is_empty(),
        "no notices from calls that did not run"
    );

    let artifact = pinned_web_artifact();
    let deployed = call_with_notices(
        &client,
        "deploy",
        json!({"service": "web", "artifact": artifact}),
    )
    .await;
    assert_eq!(deployed.is_error, Some(false), "{}", text(&deployed));
    let notes = recorder.0.lock().unwrap().clone();
    assert!(notes.iter().any(|n| n.starts_with("progress")), "{notes:?}");
    assert!(notes.iter().any(|n| n.starts_with("log Info")), "{notes:?}");
    assert!(!format!("{notes:?}").contains(TOKEN));
    let seen = cp.requests().await;
    let deploy = seen
        .iter()
        .find(|r| r["path"] == "/v1/services/web/deploy")
        .unwrap();
    assert!(deploy["body"].as_str().unwrap().contains(&artifact));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn progress_and_logs_reach_an_http_client_on_the_response_stream() {
    let cp = ControlPlane::start("127.0.0.1", TOKEN).await;
    let (s, _secrets) = ops_setup(&cp, "staging", Some(TOKEN));
    let server = http_server(&s).await;
    let recorder = Recorder::default();
    let config =
        StreamableHttpClientTransportConfig::with_uri(server.url.clone()).auth_header(DORA);
    let client: RecordingClient = recorder
        .clone()
        .serve(StreamableHttpClientTransport::from_config(config))
        .await
        .expect("MCP initialize over HTTP");
    let deployed = call_with_notices(
        &client,
        "deploy",
        json!({"service": "web", "artifact": pinned_web_artifact()}),
    )
    .await;
    assert_eq!(deployed.is_error, Some(false), "{}", text(&deployed));
    let notes = recorder.0.lock().unwrap().clone();
    assert!(notes.iter().any(|n| n.starts_with("progress")), "{notes:?}");
    assert!(notes.iter().any(|n| n.starts_with("log Info")), "{notes:?}");
    // The gateway's own log never shows the credential.
    assert!(!server.log.lock().unwrap().iter().any(|l| l.contains(TOKEN)));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_missing_credential_denies_the_call_and_says_why() {
    let cp = ControlPlane::start("127.0.0.1", TOKEN).await;
    let (s, _secrets) = ops_setup(&cp, "staging", None);
    let client = crate::gateway::stdio_client(&s).await;
    let result = call(&client, "list_services", json!({})).await.unwrap();
    assert_eq!(result.is_error, Some(true));
    let t = text(&result);
    assert!(
        t.contains("secret CONTROL_PLANE_TOKEN") && t.contains("has no value"),
        "{t}"
    );
    assert!(cp.requests().await.is_empty());
    client.cancel().await.unwrap();
}
