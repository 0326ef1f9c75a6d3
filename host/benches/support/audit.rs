//! The audit trail's cost: governed calls with `[audit] enabled = false` against the default
//! (on), in alternating rounds of one run, sequentially in process and with 32 HTTP clients.

use std::path::Path;
use std::time::{Duration, Instant};

use portcullis::config::Config;
use portcullis::gate::{Asked, RawArgs, Transport};
use serde_json::{Value, json};

use super::{bench_config_with, post_mcp, serve_http_with, stats};

const OFF: &str = "[audit]\nenabled = false\n";

fn config(dir: &Path, audit_on: bool) -> std::path::PathBuf {
    bench_config_with(dir, if audit_on { "" } else { OFF })
}

/// Sequential governed `hash` calls in process: median per round, off and on alternating.
pub async fn sequential(n: usize) {
    let mut gateways = Vec::new();
    let mut dirs = Vec::new();
    for on in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::load(Some(&config(dir.path(), on))).unwrap();
        let gateway = portcullis::cli::build_gateway(&config).await.unwrap();
        gateways.push((gateway, config.principal("local", "stdio").unwrap()));
        dirs.push(dir);
    }
    let Value::Object(map) = json!({"text": "a"}) else {
        unreachable!()
    };
    let mut medians = [Vec::new(), Vec::new()];
    for round in 0..6 {
        let on = round % 2 == 1;
        let (gateway, principal) = &gateways[usize::from(on)];
        let mut times = Vec::with_capacity(n);
        for i in 0..n + 200 {
            let args = RawArgs::Object(Some(map.clone()));
            let started = Instant::now();
            let outcome = gateway
                .call(
                    principal,
                    "hash",
                    args,
                    Transport::Cli,
                    Asked::default(),
                    None,
                )
                .await;
            if i >= 200 {
                times.push(started.elapsed());
            }
            assert!(outcome.is_ok());
        }
        medians[usize::from(on)].push(stats(times).median);
    }
    let us = |d: &Duration| d.as_secs_f64() * 1e6;
    let show = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.1}", us(d)))
            .collect::<Vec<_>>()
    };
    println!(
        "governed hash in process, audit off: medians {:?} µs; on: {:?} µs",
        show(&medians[0]),
        show(&medians[1])
    );
    let best = |v: &[Duration]| v.iter().min().copied().unwrap_or_default();
    println!(
        "  audit cost (best round against best round): +{:.1} µs per call",
        us(&best(&medians[1])) - us(&best(&medians[0]))
    );
}

/// Calls per second with 32 concurrent HTTP clients, audit off and on, alternating.
pub async fn throughput(n: usize) {
    let token = "bench-token-0123456789";
    let mut servers = Vec::new();
    let mut dirs = Vec::new();
    for on in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        servers.push(serve_http_with(dir.path(), if on { "" } else { OFF }, token).await);
        dirs.push(dir);
    }
    let clients = 32;
    let per_client = (n / clients).max(20);
    let mut rates = [Vec::new(), Vec::new()];
    for round in 0..6 {
        let on = round % 2 == 1;
        let url = servers[usize::from(on)].1.clone();
        let started = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let (url, client) = (url.clone(), reqwest::Client::new());
                tokio::spawn(async move {
                    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hash","arguments":{"text":"a"}}}"#;
                    for _ in 0..per_client {
                        let text = post_mcp(&client, &url, token, body).await;
                        assert!(text.contains("\"isError\":false"), "{text}");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        rates[usize::from(on)]
            .push((clients * per_client) as f64 / started.elapsed().as_secs_f64());
    }
    let best = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    println!(
        "HTTP, 32 clients: {:.0} calls/s with the audit off, {:.0} with it on ({:.0}%); rounds off {:?}, on {:?}",
        best(&rates[0]),
        best(&rates[1]),
        100.0 * best(&rates[1]) / best(&rates[0]),
        rates[0].iter().map(|r| r.round()).collect::<Vec<_>>(),
        rates[1].iter().map(|r| r.round()).collect::<Vec<_>>(),
    );
}
