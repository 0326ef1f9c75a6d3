//! The per-call costs that matter, measured: a fresh instance per call versus a reused one,
//! one policy decision, the whole in-process governed call, a governed `http_fetch` against a
//! plain request to the same loopback server, and a governed call over stdio and over HTTP
//! through the real binary.
//!
//! Run `scripts/build-tools` first, then `cargo bench -p portcullis --bench pipeline`.
//! `BENCH_ITERATIONS` scales every loop (default 20000 in process, a tenth of it over stdio);
//! `BENCH_IN_PROCESS_ONLY=1` stops after the in-process instance measurements;
//! `BENCH_SKIP_TRANSPORTS=1` after the governed call in process (no stdio, HTTP, fairness);
//! `BENCH_EGRESS_ONLY=1` runs only the outbound HTTP comparison; `BENCH_AUDIT_ONLY=1` only
//! the audit trail's cost (off against on); `BENCH_SPANS_ONLY=1` only the stage spans' cost
//! (nothing exported against OTLP export to a loopback collector); `BENCH_LANGUAGES_ONLY=1`
//! only the same tool in Rust, Python and JavaScript (after `scripts/build-languages`).
//! Results go into docs/perf.md.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/audit.rs"]
mod audit;
#[path = "support/egress.rs"]
mod egress;
#[path = "support/fairness.rs"]
mod fairness;
#[path = "support/languages.rs"]
mod languages;
#[path = "support/spans.rs"]
mod spans;

use portcullis::capabilities::Capabilities;
use portcullis::catalog::Catalog;
use portcullis::config::Config;
use portcullis::gate::{Asked, RawArgs, Transport};
use portcullis::grants::{Grants, Limits};
use portcullis::policy::{Action, INPUT_VERSION, PolicyInput, RequestContext, ToolFacts};
use portcullis::runner::{EngineSettings, Runner};
use serde_json::{Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn tools_dir() -> PathBuf {
    let dir = root().join(".portcullis/tools");
    assert!(
        dir.join("data.wasm").exists(),
        "run scripts/build-tools first"
    );
    dir
}

struct Stats {
    median: Duration,
    p99: Duration,
    mean: Duration,
}

fn stats(mut times: Vec<Duration>) -> Stats {
    times.sort();
    let n = times.len();
    Stats {
        median: times[n / 2],
        p99: times[(n * 99 / 100).min(n - 1)],
        mean: times.iter().sum::<Duration>() / n as u32,
    }
}

fn report(name: &str, times: Vec<Duration>) -> Stats {
    let s = stats(times);
    println!(
        "{name:<58} median {:>9.2} µs   p99 {:>9.2} µs   mean {:>9.2} µs",
        s.median.as_secs_f64() * 1e6,
        s.p99.as_secs_f64() * 1e6,
        s.mean.as_secs_f64() * 1e6
    );
    s
}

fn iterations() -> usize {
    std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// A configuration file for the benchmarks: the example tools, the default policies.
fn bench_config(dir: &Path) -> PathBuf {
    bench_config_with(dir, "")
}

/// The same, with more configuration tables appended.
fn bench_config_with(dir: &Path, extra: &str) -> PathBuf {
    bench_config_in(dir, &tools_dir(), extra)
}

/// The same, with the components in `tools`.
fn bench_config_in(dir: &Path, tools: &Path, extra: &str) -> PathBuf {
    let path = dir.join("portcullis.toml");
    std::fs::create_dir_all(dir.join("workspace")).unwrap();
    std::fs::write(
        &path,
        format!(
            "tools_dir = \"{}\"\ncache_dir = \"{}\"\npolicy_dir = \"{}\"\nworkspace = \"workspace\"\n\
             [principals.local]\nroles = [\"writer\"]\n{extra}",
            tools.display(),
            root().join(".portcullis/cache").display(),
            root().join("policies").display()
        ),
    )
    .unwrap();
    path
}

async fn in_process(n: usize) {
    let runner = Runner::new(EngineSettings::default(), Capabilities::basic(Vec::new())).unwrap();
    let catalog = Catalog::load(
        &runner,
        &tools_dir(),
        Some(&root().join(".portcullis/cache")),
    )
    .await
    .unwrap();
    let tool = catalog.get("hash").unwrap();
    let pre = &tool.component.prepared;
    let input = r#"{"text":"a"}"#;
    let limits = Limits::default();
    let grants = Grants::default();

    // Warm up the pool slots.
    for _ in 0..1000 {
        runner
            .call(pre, "hash", input, &grants, &limits)
            .await
            .outcome
            .unwrap();
    }
    let mut fresh = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let report = runner.call(pre, "hash", input, &grants, &limits).await;
        fresh.push(started.elapsed());
        assert!(report.outcome.is_ok());
    }
    let fresh = report("fresh instance + call + drop (hash, no grants)", fresh);
    let reused = runner
        .bench_reused_instance(pre, "hash", input, n)
        .await
        .unwrap();
    let reused = report("same call on one reused instance", reused);
    println!(
        "{:<58} {:.1}× (freshness costs {:.2} µs)",
        "  fresh / reused",
        fresh.median.as_secs_f64() / reused.median.as_secs_f64(),
        (fresh.median.as_secs_f64() - reused.median.as_secs_f64()) * 1e6
    );

    // The same with a read-only directory grant (one preopen).
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("a.txt"), "hello").unwrap();
    let workspace = catalog.get("read_file").unwrap();
    let ro = |hide: &[&str]| Grants {
        fs: vec![portcullis::grants::FsGrant {
            host: ws.path().canonicalize().unwrap(),
            guest: "/workspace".into(),
            mode: portcullis::grants::FsMode::Ro,
            hide: hide.iter().map(|h| h.to_string()).collect(),
        }],
        ..Grants::default()
    };
    // Without hidden paths, then with the default policy's three (the fsguard's cost).
    for (name, grants) in [
        ("fresh instance + read_file through a ro preopen", ro(&[])),
        (
            "  the same, hiding .git, .env, secrets",
            ro(&[".git", ".env", "secrets"]),
        ),
    ] {
        let mut with_fs = Vec::with_capacity(n);
        for _ in 0..n {
            let started = Instant::now();
            let report = runner
                .call(
                    &workspace.component.prepared,
                    "read_file",
                    r#"{"path":"a.txt"}"#,
                    &grants,
                    &limits,
                )
                .await;
            with_fs.push(started.elapsed());
            assert!(!report.outcome.unwrap().is_error);
        }
        report(name, with_fs);
    }
}

async fn governed(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::load(Some(&bench_config(dir.path()))).unwrap();
    let gateway = portcullis::cli::build_gateway(&config).await.unwrap();
    let principal = config.principal("local", "stdio").unwrap();

    let catalog = gateway.catalog.current();
    let tool = catalog.get("hash").unwrap();
    let context = RequestContext {
        time: "2026-11-22T00:00:00Z".into(),
        request_id: "bench".into(),
        transport: "cli",
        idempotency_key: None,
        trace: portcullis::telemetry::TraceContext::root(),
        subject_token: None,
    };
    let args = json!({"text": "a"});
    let input = PolicyInput {
        version: INPUT_VERSION,
        action: Action::Call,
        principal: &principal,
        tool: Some(ToolFacts {
            name: "hash".into(),
            component: tool.component.name.clone(),
            digest: tool.component.digest.clone(),
            descriptor_digest: tool.descriptor.digest.clone(),
            annotations: tool.descriptor.annotations,
        }),
        resource: None,
        prompt: None,
        args: Some(&args),
        plan_hash: Some("sha256:00"),
        environment: "dev",
        context: &context,
        usage: None,
        approvals: None,
    };
    // New arguments every time: the decision is evaluated (policy/memo.rs keeps it, but no
    // later call asks for it again).
    let mut decide = Vec::with_capacity(n);
    for i in 0..n {
        let args = json!({ "text": format!("a{i}") });
        let plan = format!("sha256:{i}");
        let input = PolicyInput {
            args: Some(&args),
            plan_hash: Some(&plan),
            ..input.clone()
        };
        let started = Instant::now();
        let decision = gateway.policy.decide(&input);
        decide.push(started.elapsed());
        assert!(decision.allow);
    }
    report(
        "policy decision (regorus interpreter, strict, default policy)",
        decide,
    );
    let mut remembered = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let decision = gateway.policy.decide(&input);
        remembered.push(started.elapsed());
        assert!(decision.allow);
    }
    report("  the same input again (remembered decision)", remembered);

    let Value::Object(map) = json!({"text": "a"}) else {
        unreachable!()
    };
    for _ in 0..1000 {
        gateway
            .call(
                &principal,
                "hash",
                RawArgs::Object(Some(map.clone())),
                Transport::Cli,
                Asked::default(),
                None,
            )
            .await
            .unwrap();
    }
    let mut pipeline = Vec::with_capacity(n);
    for _ in 0..n {
        let args = RawArgs::Object(Some(map.clone()));
        let started = Instant::now();
        let outcome = gateway
            .call(
                &principal,
                "hash",
                args,
                Transport::Cli,
                Asked::default(),
                None,
            )
            .await;
        pipeline.push(started.elapsed());
        assert!(outcome.is_ok());
    }
    report(
        "governed call in process (validate+hash+decide+run)",
        pipeline,
    );
    // The same with new arguments every call: no remembered decision to reuse.
    let mut fresh = Vec::with_capacity(n);
    for i in 0..n {
        let Value::Object(map) = json!({ "text": format!("b{i}") }) else {
            unreachable!()
        };
        let started = Instant::now();
        let outcome = gateway
            .call(
                &principal,
                "hash",
                RawArgs::Object(Some(map)),
                Transport::Cli,
                Asked::default(),
                None,
            )
            .await;
        fresh.push(started.elapsed());
        assert!(outcome.is_ok());
    }
    report("  the same with new arguments every call", fresh);
    // The same call with an idempotency key: a durable intent before the run and the outcome
    // after it (a new key each time, so every call runs).
    let mut keyed = Vec::with_capacity(n);
    for i in 0..n {
        let args = RawArgs::Object(Some(map.clone()));
        let started = Instant::now();
        let outcome = gateway
            .call(
                &principal,
                "hash",
                args,
                Transport::Cli,
                Asked::key(Some(format!("bench-{i}"))),
                None,
            )
            .await;
        keyed.push(started.elapsed());
        assert!(outcome.is_ok_and(|o| o.idempotency.is_some_and(|k| !k.replayed)));
    }
    report(
        "the same call with an idempotency key (intent + outcome stored)",
        keyed,
    );
    let mut plans = Vec::with_capacity(n);
    let mut executes = Vec::with_capacity(n);
    for _ in 0..n {
        let args = RawArgs::Object(Some(map.clone()));
        let started = Instant::now();
        let plan = gateway
            .plan(&principal, "hash", args, Transport::Cli, Asked::default())
            .await
            .unwrap();
        plans.push(started.elapsed());
        let started = Instant::now();
        let outcome = gateway.execute(&principal, plan, None).await;
        executes.push(started.elapsed());
        assert!(outcome.is_ok());
    }
    report("  of which plan (validate+hash+decide)", plans);
    report("  of which execute (gate+admit+run+check)", executes);

    // Refusing a tool that does not exist and one the principal may not see: the same work.
    let reader = portcullis::policy::Principal {
        id: "reader".into(),
        roles: vec!["reader".into()],
        claims: Default::default(),
        authenticated_by: "cli",
    };
    let write_args = json!({"path": "a.txt", "content": "x"});
    for (name, tool) in [
        ("refusal: unknown tool", "no_such_tool"),
        ("refusal: tool hidden from the principal", "write_file"),
    ] {
        let Value::Object(map) = write_args.clone() else {
            unreachable!()
        };
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let args = RawArgs::Object(Some(map.clone()));
            let started = Instant::now();
            let refused = gateway
                .plan(&reader, tool, args, Transport::Cli, Asked::default())
                .await;
            times.push(started.elapsed());
            assert!(matches!(
                refused,
                Err(portcullis::gate::GateError::UnknownTool(_))
            ));
        }
        report(name, times);
    }
}

fn stdio(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let config = bench_config(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("--config")
        .arg(&config)
        .args(["serve", "--stdio"])
        .env("RUST_LOG", "portcullis=error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn portcullis");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let send = |text: &str, stdin: &mut std::process::ChildStdin| {
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    };
    send(
        r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#,
        &mut stdin,
    );
    stdout.read_line(&mut line).unwrap();
    send(
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        &mut stdin,
    );
    let mut times = Vec::with_capacity(n);
    for id in 1..=(n + 200) {
        let request = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"hash","arguments":{{"text":"a"}}}}}}"#
        );
        let started = Instant::now();
        send(&request, &mut stdin);
        line.clear();
        stdout.read_line(&mut line).unwrap();
        if id > 200 {
            times.push(started.elapsed());
        }
        assert!(line.contains("\"isError\":false"), "{line}");
    }
    report("governed call over stdio, round trip (real binary)", times);
    drop(stdin);
    let _ = child.wait();
}

/// `portcullis serve --http` with `config`; killed when the child is dropped.
async fn serve_http(config: &Path) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("--config")
        .arg(config)
        .args(["serve", "--http"])
        .env("RUST_LOG", "portcullis=error")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn portcullis");
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stderr.take().unwrap()));
    let url = loop {
        let line = lines.next_line().await.unwrap().expect("portcullis exited");
        if let Some(url) = line.split("streamable HTTP at ").nth(1) {
            break url.trim().to_string();
        }
    };
    (child, url)
}

/// The bench configuration with `extra`, served over HTTP on an ephemeral port by the real
/// binary, with `token` for the principal `local` and room for 64 of its requests at once.
async fn serve_http_with(dir: &Path, extra: &str, token: &str) -> (tokio::process::Child, String) {
    let path = bench_config_with(dir, extra);
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[principals.local]\n",
        &format!(
            "[http]\nlisten = \"127.0.0.1:0\"\nmax_requests_per_principal = 64\n[principals.local]\ntokens = [\"{}\"]\n",
            portcullis::mcp::http::token_hash(token)
        ),
    );
    std::fs::write(&path, text).unwrap();
    serve_http(&path).await
}

/// One JSON-RPC request to the gateway's MCP endpoint with `token`; the response body.
async fn post_mcp(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: impl Into<reqwest::Body>,
) -> String {
    client
        .post(url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A governed call over streamable HTTP through the real binary: one keep-alive connection,
/// sequential requests, bearer token checked on each.
async fn http(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let config = bench_config(dir.path());
    let token = "bench-token-0123456789";
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "tokens = [\"{}\"]\n[http]\nlisten = \"127.0.0.1:0\"\n",
        portcullis::mcp::http::token_hash(token)
    ));
    std::fs::write(&config, text).unwrap();
    let (_child, url) = serve_http(&config).await;
    let client = reqwest::Client::new();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hash","arguments":{"text":"a"}}}"#;
    let mut times = Vec::with_capacity(n);
    for i in 0..(n + 200) {
        let started = Instant::now();
        let text = post_mcp(&client, &url, token, body).await;
        if i >= 200 {
            times.push(started.elapsed());
        }
        assert!(text.contains("\"isError\":false"), "{text}");
    }
    report(
        "governed call over HTTP, keep-alive round trip (real binary)",
        times,
    );
}

/// Calls per second over HTTP with 32 concurrent clients, without and with an idempotency key
/// (a new key per call, so every call runs), alternating twice.
async fn throughput(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let config = bench_config(dir.path());
    let token = "bench-token-0123456789";
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "tokens = [\"{}\"]\n[http]\nlisten = \"127.0.0.1:0\"\nmax_requests_per_principal = 64\n",
        portcullis::mcp::http::token_hash(token)
    ));
    std::fs::write(&config, text).unwrap();
    let (_child, url) = serve_http(&config).await;
    let clients = 32;
    let per_client = (n / clients).max(20);
    let mut rates = [Vec::new(), Vec::new()];
    for round in 0..4 {
        let keyed = round % 2 == 1;
        let started = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let (url, client) = (url.clone(), reqwest::Client::new());
                tokio::spawn(async move {
                    for i in 0..per_client {
                        let meta = if keyed {
                            format!(r#","_meta":{{"portcullis/idempotency_key":"r{round}-c{c}-{i}"}}"#)
                        } else {
                            String::new()
                        };
                        let body = format!(
                            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"hash","arguments":{{"text":"a"}}{meta}}}}}"#
                        );
                        let text = post_mcp(&client, &url, token, body).await;
                        assert!(text.contains("\"isError\":false"), "{text}");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let rate = (clients * per_client) as f64 / started.elapsed().as_secs_f64();
        rates[usize::from(keyed)].push(rate);
    }
    let best = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    println!(
        "HTTP, 32 clients: {:.0} calls/s without a key, {:.0} with one ({:.0}% of it)",
        best(&rates[0]),
        best(&rates[1]),
        100.0 * best(&rates[1]) / best(&rates[0])
    );
}

fn main() {
    let n = iterations();
    println!(
        "portcullis pipeline benchmark: {n} iterations in process, {} over stdio",
        n / 10
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    if std::env::var_os("BENCH_THROUGHPUT_ONLY").is_some() {
        let multi = tokio::runtime::Runtime::new().unwrap();
        multi.block_on(throughput((n / 2).max(640)));
        return;
    }
    if std::env::var_os("BENCH_AUDIT_ONLY").is_some() {
        runtime.block_on(audit::sequential((n / 6).max(1000)));
        let multi = tokio::runtime::Runtime::new().unwrap();
        multi.block_on(audit::throughput((n / 2).max(640)));
        return;
    }
    if std::env::var_os("BENCH_SPANS_ONLY").is_some() {
        let multi = tokio::runtime::Runtime::new().unwrap();
        multi.block_on(spans::spans((n / 10).max(500)));
        return;
    }
    if std::env::var_os("BENCH_LANGUAGES_ONLY").is_some() {
        runtime.block_on(languages::languages((n / 10).max(200)));
        return;
    }
    if std::env::var_os("BENCH_EGRESS_ONLY").is_some() {
        runtime.block_on(egress::egress((n / 4).max(500)));
        return;
    }
    runtime.block_on(in_process(n));
    if std::env::var_os("BENCH_IN_PROCESS_ONLY").is_some() {
        return;
    }
    runtime.block_on(governed(n));
    runtime.block_on(egress::egress((n / 4).max(500)));
    if std::env::var_os("BENCH_SKIP_TRANSPORTS").is_some() {
        return;
    }
    stdio((n / 10).max(100));
    let multi = tokio::runtime::Runtime::new().unwrap();
    multi.block_on(http((n / 10).max(100)));
    multi.block_on(throughput((n / 2).max(640)));
    multi.block_on(fairness::fairness((n / 20).max(100)));
}
