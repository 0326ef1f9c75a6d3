//! The admin API through the real binary: its own listener and credentials, approvals
//! approved and denied over HTTP with the same rules as the CLI, policy reload.

use serde_json::{Value, json};

use crate::gateway::{HttpServer, call, http_client, http_server, text};
use crate::governance::{APPROVERS, approval_id};
use crate::ops::{DORA, TOKEN, ops_setup_with};
use crate::upstream::ControlPlane;

const SAM_ADMIN: &str = "sam-admin-token-0123456789";
const SUE_ADMIN: &str = "sue-admin-token-0123456789";
const DAN_ADMIN: &str = "dan-admin-token-0123456789";

fn admin_config() -> String {
    let hash = portcullis::mcp::http::token_hash;
    format!("{APPROVERS}\n[admin]\nlisten = \"127.0.0.1:0\"\n",)
        .replace(
            "[principals.sam]\nroles = [\"sre\"]\n",
            &format!(
                "[principals.sam]\nroles = [\"sre\"]\nadmin_tokens = [\"{}\"]\n",
                hash(SAM_ADMIN)
            ),
        )
        .replace(
            "[principals.sue]\nroles = [\"sre\", \"oncall\"]\n",
            &format!(
                "[principals.sue]\nroles = [\"sre\", \"oncall\"]\nadmin_tokens = [\"{}\"]\n",
                hash(SUE_ADMIN)
            ),
        )
}

/// The admin API's base URL, from the server's log.
async fn admin_url(server: &HttpServer) -> String {
    server.wait_for_log("admin API at").await;
    let log = server.log.lock().unwrap();
    let line = log.iter().find(|l| l.contains("admin API at")).unwrap();
    line.split("admin API at ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches('/')
        .trim_end_matches("/v1")
        .to_string()
}

async fn request(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut builder = match method {
        "GET" => client.get(url),
        _ => client.post(url),
    };
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    if let Some(body) = body {
        builder = builder
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = builder.send().await.expect("admin request");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn operators_approve_over_the_admin_api_with_their_own_credentials() {
    let cp = ControlPlane::start("127.0.0.1", TOKEN).await;
    let more = admin_config().replace(
        "[principals.dan]\nroles = [\"deploy\"]\n",
        &format!(
            "[principals.dan]\nroles = [\"deploy\"]\nadmin_tokens = [\"{}\"]\n",
            portcullis::mcp::http::token_hash(DAN_ADMIN)
        ),
    );
    let (s, _secrets) = ops_setup_with(&cp, "prod", Some(TOKEN), &more);
    let server = http_server(&s).await;
    let base = admin_url(&server).await;

    // No token, a wrong one, an MCP token: 401 with a challenge; health needs none.
    for token in [None, Some("wrong-token-0123456789"), Some(DORA)] {
        let (status, body) = request("GET", &format!("{base}/v1/approvals"), token, None).await;
        assert_eq!(status, 401, "{token:?}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("admin token"),
            "{body}"
        );
    }
    assert_eq!(
        request("GET", &format!("{base}/healthz"), None, None)
            .await
            .0,
        200
    );
    // An admin token is not an MCP token.
    let refused = crate::gateway::raw_http(
        &server,
        &crate::gateway::post(
            &server,
            SAM_ADMIN,
            "",
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        ),
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");

    let client = http_client(&server, DORA).await;
    let pending = call(&client, "restart_service", json!({"name": "web"}))
        .await
        .unwrap();
    let id = approval_id(&pending);
    let (status, list) = request(
        "GET",
        &format!("{base}/v1/approvals"),
        Some(SAM_ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["approvals"][0]["id"], id.as_str());
    assert_eq!(list["approvals"][0]["arguments"], json!({"name": "web"}));
    let (status, _) = request(
        "GET",
        &format!("{base}/v1/approvals/ap_nope"),
        Some(SAM_ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 404);

    let approve = format!("{base}/v1/approvals/{id}/approve");
    let (status, body) = request(
        "POST",
        &format!("{base}/v1/approvals/{id}/deny"),
        Some(SAM_ADMIN),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 400, "a denial needs a reason: {body}");
    let (status, body) = request("POST", &approve, Some(DAN_ADMIN), None).await;
    assert_eq!(status, 403, "dan holds no sre role: {body}");
    let (status, body) = request("POST", &approve, Some(SAM_ADMIN), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "waiting for 2 approvals from sre, 1 given");
    assert!(
        body["votes"][0]["origin"]
            .as_str()
            .unwrap()
            .starts_with("admin-api 127.0.0.1:"),
        "{body}"
    );
    let (status, body) = request("POST", &approve, Some(SAM_ADMIN), None).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = request(
        "POST",
        &approve,
        Some(SUE_ADMIN),
        Some(json!({"reason": "ok"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "approved");

    let ran = call(&client, "restart_service", json!({"name": "web"}))
        .await
        .unwrap();
    assert_eq!(ran.is_error, Some(false), "{}", text(&ran));

    let (status, body) = request(
        "POST",
        &format!("{base}/v1/policy/reload"),
        Some(SAM_ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["policy_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let (status, body) = request("GET", &format!("{base}/v1/tools"), Some(SAM_ADMIN), None).await;
    assert_eq!(status, 200, "{body}");
    let ops = body["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "ops")
        .unwrap_or_else(|| panic!("no ops component: {body}"));
    assert!(ops["digest"].as_str().unwrap().starts_with("sha256:"));
    assert!(
        ops["tools"]
            .as_array()
            .unwrap()
            .contains(&json!("restart_service"))
    );
    let (status, body) = request(
        "POST",
        &format!("{base}/v1/tools/reload"),
        Some(SAM_ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reloaded"]["unchanged"], 2, "{body}");
    assert_eq!(body["reloaded"]["added"], json!([]), "{body}");
    let (status, body) = request(
        "GET",
        &format!("{base}/v1/openapi.yaml"),
        Some(SAM_ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.as_str().unwrap().contains("openapi: 3.1.0"));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_hold_no_argument_or_secret() {
    const CANARY: &str = "metric-canary-8c2f91";
    let cp = ControlPlane::start("127.0.0.1", TOKEN).await;
    let (s, _secrets) = ops_setup_with(&cp, "staging", Some(TOKEN), &admin_config());
    let server = http_server(&s).await;
    let base = admin_url(&server).await;
    let dora = http_client(&server, DORA).await;
    for _ in 0..3 {
        let r = call(&dora, "list_services", json!({})).await.unwrap();
        assert_eq!(r.is_error, Some(false), "{}", text(&r));
    }
    let denied = call(&dora, "restart_service", json!({"name": CANARY}))
        .await
        .unwrap();
    assert_eq!(denied.is_error, Some(true));
    let _ = call(&dora, CANARY, json!({"x": CANARY})).await;

    // Admin credentials only.
    let (status, _) = request("GET", &format!("{base}/metrics"), None, None).await;
    assert_eq!(status, 401);
    let (status, body) = request("GET", &format!("{base}/metrics"), Some(SAM_ADMIN), None).await;
    assert_eq!(status, 200);
    let text = body.as_str().unwrap().to_string();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let sample = |name: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| format!("{:?}", s.value))
    };
    let listed = [("tool", "list_services"), ("outcome", "ok")];
    assert_eq!(
        sample("portcullis_calls_total", &listed).as_deref(),
        Some("Counter(3.0)"),
        "{text}"
    );
    let denial = [("tool", "restart_service"), ("reason", "denied")];
    assert_eq!(
        sample("portcullis_refusals_total", &denial).as_deref(),
        Some("Counter(1.0)"),
        "{text}"
    );
    let unknown = [("tool", "(unknown)"), ("reason", "unknown_tool")];
    assert_eq!(
        sample("portcullis_refusals_total", &unknown).as_deref(),
        Some("Counter(1.0)"),
        "{text}"
    );
    for part in ["instantiate", "call"] {
        let count = format!("portcullis_{part}_duration_seconds_count");
        assert!(
            sample(&count, &[("tool", "list_services")]).is_some(),
            "{count}: {text}"
        );
    }
    assert!(sample("portcullis_policy_decision_duration_seconds_count", &[]).is_some());
    assert!(!text.contains(CANARY), "an argument reached the metrics");
    assert!(!text.contains(TOKEN), "the secret reached the metrics");
}
