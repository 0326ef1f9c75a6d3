//! Fail closed, for real: hostile policies, hostile clients and hostile guests against the
//! real binary. Each test attempts the attack and asserts the safe outcome and that the
//! gateway keeps serving.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::gateway::{
    ALICE, BOB, Options, call, http_client, http_server, plan_hash, post, raw_http, setup,
    stdio_client, text,
};
use crate::support::SHA256_ABC;

/// A policy in the default policy's style whose `deny` rule hits a builtin error for some
/// arguments: the VM of regorus would treat that rule as undefined and allow the call.
const ERRORING_DENY: &str = r#"package portcullis
import rego.v1
default decision := {"allow": false, "reasons": ["default"]}
decision := {"allow": true} if { input.action == "list" }
decision := {"allow": true} if { input.action == "call"; count(deny) == 0 }
decision := {"allow": false, "reasons": [m | some m in deny]} if { input.action == "call"; count(deny) > 0 }
deny contains "text too long" if { to_number(input.args.text) > 100 }
"#;

#[tokio::test]
async fn a_runtime_error_in_a_deny_rule_denies_with_a_reference() {
    let s = setup(Options {
        policy: Some(ERRORING_DENY),
        ..Options::default()
    });
    let server = http_server(&s).await;
    let client = http_client(&server, ALICE).await;
    // A number: the rule evaluates, does not fire, the call runs.
    let ok = call(&client, "hash", json!({"text": "7"})).await.unwrap();
    assert_eq!(ok.is_error, Some(false), "{}", text(&ok));
    // Not a number: to_number fails. The call must not run.
    let denied = call(&client, "hash", json!({"text": "abc-canary-77"}))
        .await
        .unwrap();
    assert_eq!(denied.is_error, Some(true));
    let message = text(&denied);
    assert!(
        message.starts_with("denied by policy: policy error (ref pe-"),
        "{message}"
    );
    assert!(denied.structured_content.is_none());
    for internal in ["to_number", "policy.rego", "abc-canary-77"] {
        assert!(!message.contains(internal), "{message} leaks {internal}");
    }
    // The operator finds the details under the reference.
    let reference = message
        .split("(ref ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap()
        .to_string();
    server.wait_for_log(&reference).await;
    let log = server.log.lock().unwrap().join("\n");
    assert!(log.contains("could not parse string as number"), "{log}");
    // The value the builtin failed on is an argument: not in the log either.
    assert!(!log.contains("abc-canary-77"), "{log}");
    // Still serving.
    let again = call(
        &client,
        "hash",
        json!({"text": "abc", "algorithm": "sha256"}),
    )
    .await
    .unwrap();
    assert_eq!(again.is_error, Some(true));
    let fine = call(&client, "hash", json!({"text": "12"})).await.unwrap();
    assert_eq!(fine.is_error, Some(false));
}

#[tokio::test]
async fn a_decision_of_the_wrong_shape_denies() {
    for decision in [
        "[true]",
        "\"allow\"",
        "1",
        "{\"allow\": \"yes\"}",
        "{\"allow\": true, \"unexpected\": 1}",
        "{\"allow\": true, \"grants\": [[], [], {}, []]}",
    ] {
        let policy = format!(
            "package portcullis\nimport rego.v1\ndecision := {{\"allow\": true}} if input.action == \"list\"\n\
             decision := {decision} if input.action == \"call\"\n"
        );
        let s = setup(Options {
            policy: Some(&policy),
            ..Options::default()
        });
        let client = stdio_client(&s).await;
        let result = call(&client, "hash", json!({"text": "abc"})).await.unwrap();
        assert_eq!(result.is_error, Some(true), "{decision}: {}", text(&result));
        assert!(
            text(&result).contains("policy error (ref pe-"),
            "{decision}: {}",
            text(&result)
        );
    }
}

/// Lets every principal use every tool; `spin` gets fuel for far more than its 4 s deadline.
const SPIN_POLICY: &str = r#"package portcullis
import rego.v1
decision := {"allow": true, "limits": {"fuel": 500000000000, "timeout_ms": 4000}} if input.tool.name == "spin"
decision := {"allow": true} if input.tool.name != "spin"
"#;

#[tokio::test]
async fn spinning_guests_of_one_principal_do_not_stall_another() {
    let s = setup(Options {
        components: &["hostile-loop", "data"],
        policy: Some(SPIN_POLICY),
        limits_extra: "max_concurrent = 8\nmax_per_principal = 4\nadmission_wait = \"500ms\"\nmax_fuel = 1000000000000",
        ..Options::default()
    });
    let server = http_server(&s).await;
    let bob = http_client(&server, BOB).await;
    // Warm up both paths.
    assert_eq!(
        call(&bob, "hash", json!({"text": "abc"}))
            .await
            .unwrap()
            .structured_content
            .unwrap()["hex"],
        SHA256_ABC
    );
    let started = Instant::now();
    let spin =
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"spin","arguments":{}}}"#;
    let request = post(&server, ALICE, "", spin);
    let spinners: Vec<_> = (0..8)
        .map(|_| {
            let (server_addr, request) = (server.addr(), request.clone());
            tokio::spawn(async move {
                let response = crate::gateway::raw_http_to(&server_addr, &request).await;
                (response, started.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Bob's trivial call is answered while alice's guests spin.
    let asked = Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        call(&bob, "hash", json!({"text": "abc"})),
    )
    .await
    .expect("bob's call was never answered")
    .unwrap();
    let waited = asked.elapsed();
    assert_eq!(answer.structured_content.unwrap()["hex"], SHA256_ABC);
    assert!(
        waited < Duration::from_secs(2),
        "a trivial call waited {waited:?} behind spinning guests"
    );
    let mut timed_out = 0;
    let mut busy = 0;
    for spinner in spinners {
        let (response, ended) = tokio::time::timeout(Duration::from_secs(30), spinner)
            .await
            .expect("a spinning guest outlived its deadline by far")
            .unwrap();
        if response.starts_with("HTTP/1.1 503") {
            // Over HTTP a call refused as busy is 503 + Retry-After, with the tool error.
            busy += 1;
            assert!(response.contains("retry-after: 1"), "{response}");
            assert!(
                response.contains("busy: no room within 500 ms"),
                "{response}"
            );
            assert!(response.contains("portcullis/retry_after_ms"), "{response}");
        } else {
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            assert!(response.contains("time limit reached"), "{response}");
            // The deadline is kept: 4 s plus scheduling slack, not seconds more.
            assert!(ended < Duration::from_secs(6), "ended after {ended:?}");
            timed_out += 1;
        }
    }
    // Alice holds at most her share; the rest were told to come back.
    assert_eq!((timed_out, busy), (4, 4));
}

#[tokio::test]
async fn duplicate_keys_and_inexact_integers_are_refused_before_policy() {
    let s = setup(Options::default());
    std::fs::write(s.workspace.join("notes.md"), "notes").unwrap();
    let server = http_server(&s).await;
    // The same key twice: one parser would read notes.md, another .git/config.
    let body = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"notes.md","path":".git/config"}}}"#;
    let response = raw_http(&server, &post(&server, ALICE, "", body)).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("duplicate key `path`"), "{response}");
    assert!(response.contains("\"isError\":true"), "{response}");
    assert!(!response.contains("notes"), "{response}");

    let client = http_client(&server, ALICE).await;
    let big = call(
        &client,
        "json_query",
        json!({"document": {"n": 9007199254740993u64}, "path": "$.n"}),
    )
    .await
    .unwrap();
    assert_eq!(big.is_error, Some(true));
    assert!(text(&big).contains("outside ±2^53"), "{}", text(&big));
    assert!(plan_hash(&big).is_none(), "refused before any plan");
}

#[tokio::test]
async fn workspace_paths_reach_policy_and_tool_in_one_spelling() {
    let s = setup(Options::default());
    std::fs::create_dir(s.workspace.join(".git")).unwrap();
    std::fs::write(s.workspace.join(".git/config"), "[core]\n").unwrap();
    let client = stdio_client(&s).await;
    for spelling in ["./.git/config", ".//.git///config", "././.git/./config"] {
        let denied = call(&client, "read_file", json!({ "path": spelling }))
            .await
            .unwrap();
        assert_eq!(
            text(&denied),
            "denied by policy: path \".git/config\" is under the protected prefix \".git/\"",
            "{spelling}"
        );
    }
    for (bad, problem) in [("../outside", "uses `..`"), ("/etc/passwd", "is absolute")] {
        let refused = call(&client, "read_file", json!({ "path": bad }))
            .await
            .unwrap();
        assert_eq!(refused.is_error, Some(true));
        assert!(text(&refused).contains(problem), "{}", text(&refused));
    }
    // The tool receives the normalised value: the file lands where policy was told.
    std::fs::create_dir(s.workspace.join("a")).unwrap();
    let wrote = call(
        &client,
        "write_file",
        json!({"path": "./a//b.txt", "content": "x"}),
    )
    .await
    .unwrap();
    assert_eq!(wrote.is_error, Some(false), "{}", text(&wrote));
    assert_eq!(
        std::fs::read_to_string(s.workspace.join("a/b.txt")).unwrap(),
        "x"
    );
    let same = call(
        &client,
        "write_file",
        json!({"path": "a/b.txt", "content": "x", "mode": "overwrite"}),
    );
    let again = call(
        &client,
        "write_file",
        json!({"path": "././a/b.txt", "content": "x", "mode": "overwrite"}),
    );
    let (same, again) = tokio::join!(same, again);
    assert_eq!(plan_hash(&same.unwrap()), plan_hash(&again.unwrap()));
}

#[tokio::test]
async fn arguments_and_results_never_reach_the_log_at_any_level() {
    let s = setup(Options {
        rust_log: "trace",
        ..Options::default()
    });
    let server = http_server(&s).await;
    let client = http_client(&server, BOB).await;
    let canary = "canary-7f3a9c-argument";
    let result = call(&client, "hash", json!({ "text": canary }))
        .await
        .unwrap();
    let digest = result.structured_content.unwrap()["hex"]
        .as_str()
        .unwrap()
        .to_string();
    let wrote = call(
        &client,
        "write_file",
        json!({"path": "c.txt", "content": "canary-content-51d2"}),
    )
    .await
    .unwrap();
    assert_eq!(wrote.is_error, Some(false));
    let read = call(&client, "read_file", json!({"path": "c.txt"}))
        .await
        .unwrap();
    assert_eq!(text(&read), "canary-content-51d2");
    // A denial whose reason quotes the argument.
    let _ = call(&client, "read_file", json!({"path": ".env-canary-9e1"})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = server.log.lock().unwrap().join("\n");
    assert!(log.len() > 1000, "trace logging is on: {} bytes", log.len());
    for secret in [
        canary,
        &digest,
        "canary-content-51d2",
        ".env-canary-9e1",
        BOB,
    ] {
        assert!(!log.contains(secret), "the log contains {secret}");
    }
}

/// The plan hash for `tool` with `args` as `principal`, through the gateway's own pipeline.
async fn planned(
    gateway: &portcullis::gate::Gateway,
    principal: &str,
    tool: &str,
    args: Value,
) -> String {
    let config = principal_config(principal);
    let plan = gateway
        .plan(
            &config,
            tool,
            portcullis::gate::RawArgs::Text(&args.to_string()),
            portcullis::gate::Transport::Cli,
            portcullis::gate::Asked::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{tool} {args}: {e}"));
    plan.plan_hash
}

fn principal_config(id: &str) -> portcullis::policy::Principal {
    portcullis::policy::Principal {
        id: id.into(),
        roles: vec!["admin".into()],
        claims: Default::default(),
        authenticated_by: "cli",
    }
}

/// A gateway over `setup`, whose `data` component may be replaced by a variant.
async fn gateway_for(s: &crate::gateway::Setup) -> std::sync::Arc<portcullis::gate::Gateway> {
    let config = portcullis::config::Config::load(Some(&s.config)).unwrap();
    portcullis::cli::build_gateway(&config).await.unwrap()
}

#[tokio::test]
async fn the_plan_hash_binds_tool_digest_arguments_principal_and_environment() {
    let dev = setup(Options::default());
    let gateway = gateway_for(&dev).await;
    let base = planned(&gateway, "alice", "read_file", json!({"path": "notes.md"})).await;
    // Canonically equal arguments: the same plan.
    assert_eq!(
        base,
        planned(
            &gateway,
            "alice",
            "read_file",
            json!({"path": "./notes.md"})
        )
        .await
    );
    assert_eq!(
        planned(
            &gateway,
            "alice",
            "hash",
            json!({"text": "a", "algorithm": "sha256"})
        )
        .await,
        planned(
            &gateway,
            "alice",
            "hash",
            serde_json::from_str(r#"{"algorithm":"sha256","text":"a"}"#).unwrap()
        )
        .await
    );
    // One thing different at a time: a different plan.
    let other_tool = planned(&gateway, "alice", "list_dir", json!({"path": "notes.md"})).await;
    let other_args = planned(&gateway, "alice", "read_file", json!({"path": "other.md"})).await;
    let other_principal = planned(&gateway, "bob", "read_file", json!({"path": "notes.md"})).await;
    let prod = setup(Options {
        environment: "prod",
        ..Options::default()
    });
    let other_environment = planned(
        &*gateway_for(&prod).await,
        "alice",
        "read_file",
        json!({"path": "notes.md"}),
    )
    .await;
    // The same tool from a component whose bytes differ (a custom section appended).
    let rebuilt = setup(Options::default());
    let wasm = rebuilt.dir.path().join("tools/workspace.wasm");
    let mut bytes = std::fs::read(&wasm).unwrap();
    bytes.extend_from_slice(&[0x00, 0x03, 0x01, b'x', b'y']);
    std::fs::write(&wasm, bytes).unwrap();
    let other_digest = planned(
        &*gateway_for(&rebuilt).await,
        "alice",
        "read_file",
        json!({"path": "notes.md"}),
    )
    .await;
    let all = [
        &base,
        &other_tool,
        &other_args,
        &other_principal,
        &other_environment,
        &other_digest,
    ];
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert_ne!(a, b, "two different plans share a hash");
        }
    }
}
