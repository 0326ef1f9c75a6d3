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

#[tokio::test]
async fn the_front_door_refuses_ambiguous_requests() {
    let s = setup(Options::default());
    let server = http_server(&s).await;
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let status = |response: &str| response.split_whitespace().nth(1).unwrap_or("").to_string();
    // Baseline: accepted.
    assert_eq!(
        status(&raw_http(&server, &post(&server, ALICE, "", init)).await),
        "200"
    );
    // A second Host header naming another site.
    let twice = raw_http(
        &server,
        &post(&server, ALICE, "host: evil.example\r\n", init),
    )
    .await;
    assert_eq!(status(&twice), "400", "{twice}");
    // An absolute-form target naming another authority.
    let absolute =
        post(&server, ALICE, "", init).replacen("POST /mcp", "POST http://evil.example/mcp", 1);
    assert_eq!(status(&raw_http(&server, &absolute).await), "400");
    // Two Origin headers, one allowed-looking.
    let origins = raw_http(
        &server,
        &post(
            &server,
            ALICE,
            "origin: http://evil.example\r\norigin: http://evil2.example\r\n",
            init,
        ),
    )
    .await;
    assert_eq!(status(&origins), "403", "{origins}");
    // A forged Origin alone: refused by our check (rmcp's own check is off).
    let forged = raw_http(
        &server,
        &post(&server, ALICE, "origin: http://evil.example\r\n", init),
    )
    .await;
    assert_eq!(status(&forged), "403");
    assert!(forged.contains("forbidden: Origin not allowed"), "{forged}");
    // A forged Host alone.
    let host = post(&server, ALICE, "", init).replacen(&server.addr(), "evil.example", 1);
    let host = raw_http(&server, &host).await;
    assert!(host.contains("forbidden: Host not allowed"), "{host}");
}

#[tokio::test]
async fn connections_are_capped_and_idle_ones_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup(Options {
        http_extra: "max_connections = 2\nidle_timeout = \"400ms\"",
        ..Options::default()
    });
    let server = http_server(&s).await;
    let _a = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let _b = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), third.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.contains("retry-after: 1"), "{response}");
    // The two idle connections are closed by the server after the idle timeout...
    for mut idle in [_a, _b] {
        let mut buffer = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buffer))
            .await
            .expect("an idle connection was kept open");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        let _ = idle.shutdown().await;
    }
    // ... and then there is room again.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let client = http_client(&server, ALICE).await;
    assert_eq!(
        call(&client, "hash", json!({"text": "abc"}))
            .await
            .unwrap()
            .structured_content
            .unwrap()["hex"],
        SHA256_ABC
    );
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
        )
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
async fn gateway_for(s: &crate::gateway::Setup) -> portcullis::gate::Gateway {
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
        &gateway_for(&prod).await,
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
        &gateway_for(&rebuilt).await,
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

/// CPU seconds (user + system) `pid` has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[tokio::test]
async fn out_of_file_descriptors_the_accept_loop_backs_off() {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, BufReader};
    let s = setup(Options::default());
    // The gateway gets 64 file descriptors; the test opens more connections than that.
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" \"$@\"")
        .arg(crate::gateway::binary())
        .arg("--config")
        .arg(&s.config)
        .args(["serve", "--http"])
        .env("RUST_LOG", "portcullis=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.split("streamable HTTP at http://").nth(1) {
                return url.trim().trim_end_matches("/mcp").to_string();
            }
        }
        panic!("the gateway exited before listening");
    })
    .await
    .unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    let mut held = Vec::new();
    for _ in 0..100 {
        if let Ok(stream) = tokio::net::TcpStream::connect(&addr).await {
            held.push(stream);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_seconds(pid) - before;
    assert!(used < 0.5, "the accept loop spun: {used} s of CPU in 2 s");
    let failures = log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("accept failed"))
        .count();
    assert!(
        (1..=2).contains(&failures),
        "accept failures logged {failures} times: {:?}",
        log.lock().unwrap()
    );
    // Once descriptors are free again, the gateway serves.
    drop(held);
    let server = crate::gateway::HttpServer {
        child,
        url: format!("http://{addr}/mcp"),
        log,
    };
    let client = tokio::time::timeout(Duration::from_secs(20), http_client(&server, ALICE))
        .await
        .expect("the gateway did not serve again");
    let result = call(&client, "hash", json!({"text": "abc"})).await.unwrap();
    assert_eq!(result.structured_content.unwrap()["hex"], SHA256_ABC);
}

#[tokio::test]
async fn large_requests_in_flight_are_bounded() {
    use tokio::io::AsyncWriteExt;
    let s = setup(Options {
        http_extra: "max_inflight_bytes = \"1088KiB\"",
        limits_extra: "admission_wait = \"300ms\"",
        ..Options::default()
    });
    let server = http_server(&s).await;
    // A client announces a 1 MiB body and sends it slowly: it holds its room meanwhile.
    let mut slow = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {ALICE}\r\n\
         content-type: application/json\r\naccept: application/json, text/event-stream\r\n\
         content-length: 1048576\r\n\r\n{{\"jsonrpc\"",
        server.addr()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Another large request finds no room within the wait: 503 with Retry-After.
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"hash","arguments":{{"text":"{}"}}}}}}"#,
        "x".repeat(900 * 1024)
    );
    let refused = raw_http(&server, &post(&server, BOB, "", &big)).await;
    assert!(
        refused.starts_with("HTTP/1.1 503"),
        "{}",
        &refused[..200.min(refused.len())]
    );
    assert!(refused.contains("retry-after: 1"));
    assert!(refused.contains("too many large requests in flight"));
    // Once the slow client is gone, the same request is served.
    drop(slow);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let served = raw_http(&server, &post(&server, BOB, "", &big)).await;
    assert!(
        served.starts_with("HTTP/1.1 200"),
        "{}",
        &served[..200.min(served.len())]
    );
    assert!(served.contains("\"isError\":false"));
}

#[tokio::test]
async fn one_principals_flood_is_refused_while_others_are_served() {
    use tokio::io::AsyncWriteExt;
    let s = setup(Options {
        http_extra: "max_requests_per_principal = 1",
        ..Options::default()
    });
    let server = http_server(&s).await;
    // Alice has one request in flight (its body is still coming).
    let mut slow = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {ALICE}\r\n\
         content-type: application/json\r\naccept: application/json, text/event-stream\r\n\
         content-length: 1000\r\n\r\n{{\"jsonrpc\"",
        server.addr()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let hash = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hash","arguments":{"text":"abc"}}}"#;
    let refused = raw_http(&server, &post(&server, ALICE, "", hash)).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("retry-after: 1"), "{refused}");
    assert!(refused.contains("for this principal"), "{refused}");
    // Bob is not affected.
    let served = raw_http(&server, &post(&server, BOB, "", hash)).await;
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    assert!(served.contains(SHA256_ABC), "{served}");
    // Alice's room comes back with her request.
    drop(slow);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = raw_http(&server, &post(&server, ALICE, "", hash)).await;
    assert!(again.contains(SHA256_ABC), "{again}");
}

#[tokio::test]
async fn a_client_that_never_reads_cannot_keep_its_connection() {
    use tokio::io::AsyncWriteExt;
    let s = setup(Options {
        http_extra: "max_connections = 1\nidle_timeout = \"300ms\"",
        ..Options::default()
    });
    let server = http_server(&s).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut hog = socket
        .connect(server.addr().parse().unwrap())
        .await
        .unwrap();
    // Thousands of pipelined requests whose answers (403s) are never read: the server's
    // writes fill the socket buffers and stall.
    let one = "GET / HTTP/1.1\r\nhost: evil.example\r\n\r\n";
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        hog.write_all(one.repeat(300_000).as_bytes()),
    )
    .await;
    // Within idle timeout + grace the server drops the connection and its slot is free again.
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the connection slot was never given back"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let hash = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hash","arguments":{"text":"abc"}}}"#;
        let response = raw_http(&server, &post(&server, BOB, "", hash)).await;
        if response.contains(SHA256_ABC) {
            break;
        }
        assert!(
            response.is_empty() || response.starts_with("HTTP/1.1 503"),
            "{response}"
        );
    }
    drop(hog);
}
