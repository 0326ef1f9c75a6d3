//! Idempotency keys, rate limits and fuel budgets end to end, through the real binary.
//! The side effect observed is a file the `write_file` tool appends to: what ran is what the
//! file holds.

use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult, RequestMetaObject};
use serde_json::{Value, json};

use crate::gateway::{Options, call, http_client, http_server, setup, stdio_client, text};

/// Calls `tool` with `args` and `_meta["portcullis/idempotency_key"] = key`.
pub async fn call_with_key(
    client: &rmcp::Peer<rmcp::RoleClient>,
    tool: &str,
    args: Value,
    key: &str,
) -> CallToolResult {
    let Value::Object(map) = args else {
        panic!("arguments must be an object")
    };
    let mut meta = RequestMetaObject::new();
    meta.insert("portcullis/idempotency_key".into(), json!(key));
    let mut params = CallToolRequestParams::new(tool.to_string()).with_arguments(map);
    params.meta = Some(meta);
    client.call_tool(params).await.expect("tools/call")
}

fn idempotency(result: &CallToolResult) -> Value {
    result
        .meta
        .as_ref()
        .and_then(|m| m.0.get("portcullis/idempotency"))
        .cloned()
        .unwrap_or(Value::Null)
}

fn append(line: &str) -> Value {
    json!({"path": "log.txt", "content": format!("{line}\n"), "mode": "append"})
}

#[tokio::test]
async fn two_hundred_concurrent_calls_with_one_key_run_once() {
    let s = setup(Options::default()); // stdio as bob (writer)
    let client = stdio_client(&s).await;
    let peer = client.peer().clone();
    let calls = (0..200).map(|_| {
        let peer = peer.clone();
        async move { call_with_key(&peer, "write_file", append("once"), "deploy-42").await }
    });
    let results = futures::future::join_all(calls).await;
    let log = std::fs::read_to_string(s.workspace.join("log.txt")).unwrap();
    assert_eq!(log, "once\n", "exactly one execution");
    let first = text(&results[0]);
    for r in &results {
        assert_eq!(r.is_error, Some(false), "{}", text(r));
        assert_eq!(text(r), first, "every duplicate gets the first outcome");
        assert_eq!(idempotency(r)["key"], "deploy-42");
    }
    let replayed = results
        .iter()
        .filter(|r| idempotency(r)["replayed"] == true)
        .count();
    assert_eq!(replayed, 199);

    // Later repeats replay too; the same key with other arguments is a conflict.
    let later = call_with_key(&peer, "write_file", append("once"), "deploy-42").await;
    assert_eq!(idempotency(&later)["replayed"], true);
    let conflict = call_with_key(&peer, "write_file", append("twice"), "deploy-42").await;
    assert_eq!(conflict.is_error, Some(true));
    assert!(
        text(&conflict).contains("already used for a different call"),
        "{}",
        text(&conflict)
    );
    // Another key is another call.
    call_with_key(&peer, "write_file", append("again"), "deploy-43").await;
    let log = std::fs::read_to_string(s.workspace.join("log.txt")).unwrap();
    assert_eq!(log, "once\nagain\n");
    // Keys are per principal: alice (a reader) may not write at all, and her key is hers.
    let bad = call_with_key(&peer, "hash", json!({"text": "x"}), "has space").await;
    assert!(
        text(&bad).contains("invalid idempotency key"),
        "{}",
        text(&bad)
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn one_key_for_two_plans_at_once_runs_one_and_refuses_the_other() {
    let s = setup(Options::default());
    let client = stdio_client(&s).await;
    let peer = client.peer().clone();
    let calls = (0..40).map(|i| {
        let peer = peer.clone();
        let line = if i % 2 == 0 { "even" } else { "odd" };
        async move { call_with_key(&peer, "write_file", append(line), "shared").await }
    });
    let results = futures::future::join_all(calls).await;
    let log = std::fs::read_to_string(s.workspace.join("log.txt")).unwrap();
    assert!(
        log == "even\n" || log == "odd\n",
        "exactly one plan ran once: {log:?}"
    );
    let winner = log.trim_end();
    for (i, r) in results.iter().enumerate() {
        let mine = if i % 2 == 0 { "even" } else { "odd" };
        if mine == winner {
            assert_eq!(r.is_error, Some(false), "{}", text(r));
        } else {
            assert!(
                text(r).contains("already used for a different call"),
                "the other plan never gets the winner's outcome: {}",
                text(r)
            );
        }
    }
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_key_survives_a_restart_and_a_crash_mid_run_is_in_doubt_never_rerun() {
    let policy = r#"package portcullis
import rego.v1
default decision := {"allow": false}
decision := {"allow": true} if input.action == "list"
decision := {"allow": true, "limits": {"timeout_ms": 20000}, "grants": {"fs": [{"host": data.gateway.workspace, "guest": "/workspace", "mode": "rw"}]}} if input.action == "call"
"#;
    let s = setup(Options {
        components: &["workspace", "hostile-sleep"],
        policy: Some(policy),
        limits_extra: "max_timeout = \"30s\"",
        ..Default::default()
    });
    let server = http_server(&s).await;
    let client = http_client(&server, crate::gateway::BOB).await;
    let done = call_with_key(client.peer(), "write_file", append("one"), "k-1").await;
    assert_eq!(done.is_error, Some(false), "{}", text(&done));

    // A run in flight when the gateway dies.
    let peer = client.peer().clone();
    let stuck =
        tokio::spawn(async move { call_with_key(&peer, "sleep_forever", json!({}), "k-2").await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut server = server;
    server.child.start_kill().unwrap(); // SIGKILL
    server.child.wait().await.unwrap();
    let _ = stuck.await;

    let server = http_server(&s).await;
    let client = http_client(&server, crate::gateway::BOB).await;
    // The finished key replays its outcome; nothing runs again.
    let replay = call_with_key(client.peer(), "write_file", append("one"), "k-1").await;
    assert_eq!(idempotency(&replay)["replayed"], true, "{replay:?}");
    assert_eq!(
        std::fs::read_to_string(s.workspace.join("log.txt")).unwrap(),
        "one\n"
    );
    // The interrupted one is in doubt, answered at once, and stays so.
    let started = std::time::Instant::now();
    let doubt = call_with_key(client.peer(), "sleep_forever", json!({}), "k-2").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "it must not run again"
    );
    assert_eq!(doubt.is_error, Some(true));
    assert!(text(&doubt).contains("was interrupted"), "{}", text(&doubt));
    let again = call_with_key(client.peer(), "sleep_forever", json!({}), "k-2").await;
    assert!(text(&again).contains("was interrupted"), "{}", text(&again));
    client.cancel().await.unwrap();
}

const RATE_POLICY: &str = r#"package portcullis
import rego.v1
default decision := {"allow": false}
decision := {"allow": true} if input.action == "list"
fuel_budget := {"key": sprintf("fuel:%s", [input.principal.id]), "max": data.budget, "window_s": 3600, "cost": "fuel"}
decision := {"allow": true, "rate": [
  {"key": sprintf("hash:%s", [input.principal.id]), "max": 2, "window_s": 3600},
  fuel_budget,
]} if {
  input.action == "call"
  input.tool.name == "hash"
}
# A budget in policy's own terms, from input.usage: 3 json_query calls an hour.
spent if input.usage.tool.calls["1h"] >= 3
decision := {"allow": true, "rate": [fuel_budget]} if {
  input.action == "call"
  input.tool.name == "json_query"
  not spent
}
decision := {"allow": false, "reasons": [sprintf("%d calls of %s this hour; the budget is 3", [input.usage.tool.calls["1h"], input.tool.name])]} if {
  input.action == "call"
  input.tool.name == "json_query"
  spent
}
"#;

fn rate_setup(budget: u64) -> crate::gateway::Setup {
    let s = setup(Options {
        policy: Some(RATE_POLICY),
        ..Default::default()
    });
    std::fs::write(
        s.dir.path().join("policies/budget.json"),
        json!({ "budget": budget }).to_string(),
    )
    .unwrap();
    s
}

#[tokio::test]
async fn rate_limits_hold_across_a_restart_and_name_the_limit() {
    let s = rate_setup(1_000_000_000_000);
    let server = http_server(&s).await;
    let client = http_client(&server, crate::gateway::BOB).await;
    for i in 0..2 {
        let ok = call(client.peer(), "hash", json!({"text": format!("{i}")}))
            .await
            .unwrap();
        assert_eq!(ok.is_error, Some(false), "{}", text(&ok));
    }
    let over = call(client.peer(), "hash", json!({"text": "2"}))
        .await
        .unwrap();
    assert_eq!(over.is_error, Some(true));
    let t = text(&over);
    assert!(
        t.contains("rate limit `hash:bob` reached: 2 of 2 calls"),
        "{t}"
    );
    assert!(t.contains("resets in"), "{t}");
    let meta = &over.meta.as_ref().unwrap().0["portcullis/rate_limit"];
    assert_eq!(meta["max"], 2);
    client.cancel().await.unwrap();
    drop(server);

    let server = http_server(&s).await;
    let client = http_client(&server, crate::gateway::BOB).await;
    let still = call(client.peer(), "hash", json!({"text": "3"}))
        .await
        .unwrap();
    assert!(
        text(&still).contains("rate limit `hash:bob` reached"),
        "{}",
        text(&still)
    );
    // Another principal has its own counter.
    let root = http_client(&server, crate::gateway::ROOT).await;
    let theirs = call(root.peer(), "hash", json!({"text": "3"}))
        .await
        .unwrap();
    assert_eq!(theirs.is_error, Some(false), "{}", text(&theirs));
    client.cancel().await.unwrap();
    root.cancel().await.unwrap();
}

#[tokio::test]
async fn a_fuel_budget_stops_calls_once_spent_and_policy_sees_usage() {
    // Budget: one unit of fuel. The first call may start (budget left), and spends it.
    let s = rate_setup(1);
    let client = stdio_client(&s).await;
    let first = call(
        &client,
        "json_query",
        json!({"document": {"a": 1}, "path": "$.a"}),
    )
    .await
    .unwrap();
    assert_eq!(first.is_error, Some(false), "{}", text(&first));
    let second = call(
        &client,
        "json_query",
        json!({"document": {"a": 1}, "path": "$.a"}),
    )
    .await
    .unwrap();
    assert_eq!(second.is_error, Some(true));
    assert!(
        text(&second).contains("rate limit `fuel:bob` reached"),
        "{}",
        text(&second)
    );
    assert!(text(&second).contains("fuel"), "{}", text(&second));
    client.cancel().await.unwrap();
    // A new gateway process reads the spent budget from the store.
    let client = stdio_client(&s).await;
    let third = call(
        &client,
        "json_query",
        json!({"document": {"a": 1}, "path": "$.a"}),
    )
    .await
    .unwrap();
    assert!(
        text(&third).contains("rate limit `fuel:bob` reached"),
        "{}",
        text(&third)
    );
    client.cancel().await.unwrap();

    // input.usage: the fourth json_query call in an hour is denied by the policy itself.
    let s = rate_setup(1_000_000_000_000);
    let client = stdio_client(&s).await;
    for _ in 0..3 {
        let r = call(
            &client,
            "json_query",
            json!({"document": {"a": 1}, "path": "$.a"}),
        )
        .await
        .unwrap();
        assert_eq!(r.is_error, Some(false), "{}", text(&r));
    }
    let fourth = call(
        &client,
        "json_query",
        json!({"document": {"a": 1}, "path": "$.a"}),
    )
    .await
    .unwrap();
    assert!(
        text(&fourth).contains("3 calls of json_query this hour; the budget is 3"),
        "{}",
        text(&fourth)
    );
    client.cancel().await.unwrap();
}
