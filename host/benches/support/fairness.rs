//! A trivial call's latency while guests of another principal spin: fairness under load.

use std::time::{Duration, Instant};

use super::{post_mcp, report, root, serve_http, tools_dir};

/// Lets every principal call everything; `spin` burns fuel until its 2 s deadline.
const SPIN_POLICY: &str = "package portcullis\nimport rego.v1\n\
decision := {\"allow\": true, \"limits\": {\"fuel\": 500000000000, \"timeout_ms\": 2000}} if input.tool.name == \"spin\"\n\
decision := {\"allow\": true} if input.tool.name != \"spin\"\n";

/// A trivial call's latency over HTTP while 4 × cores guests of another principal spin.
pub async fn fairness(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let tools = dir.path().join("tools");
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&tools).unwrap();
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::copy(tools_dir().join("data.wasm"), tools.join("data.wasm")).unwrap();
    let spin = root().join(".portcullis/hostile/hostile-loop.wasm");
    std::fs::copy(&spin, tools.join("hostile-loop.wasm")).unwrap();
    std::fs::write(policies.join("p.rego"), SPIN_POLICY).unwrap();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "tools_dir = \"tools\"\ncache_dir = \"{}\"\npolicy_dir = \"policies\"\n\
             [stdio]\nprincipal = \"other\"\n\
             [limits]\nmax_concurrent = {}\nmax_per_principal = {}\nmax_fuel = 1000000000000\n\
             [http]\nlisten = \"127.0.0.1:0\"\n\
             [principals.spinner]\ntokens = [\"{}\"]\n[principals.other]\ntokens = [\"{}\"]\n",
            root().join(".portcullis/cache").display(),
            cores * 8,
            cores * 4,
            portcullis::mcp::http::token_hash("spinner-token-0123456789"),
            portcullis::mcp::http::token_hash("other-token-0123456789"),
        ),
    )
    .unwrap();
    let (_child, url) = serve_http(&config).await;
    let hash = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hash","arguments":{"text":"a"}}}"#;
    let spin_call =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"spin","arguments":{}}}"#;
    let client = reqwest::Client::new();
    let measure = |label: &'static str| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let mut times = Vec::with_capacity(n);
            for _ in 0..n {
                let started = Instant::now();
                let text = post_mcp(&client, &url, "other-token-0123456789", hash).await;
                times.push(started.elapsed());
                assert!(text.contains("\"isError\":false"), "{text}");
            }
            report(label, times);
        }
    };
    measure("trivial call over HTTP, unloaded").await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spinners: Vec<_> = (0..cores * 4)
        .map(|_| {
            let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    post_mcp(&client, &url, "spinner-token-0123456789", spin_call).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    measure("trivial call over HTTP, 4 x cores guests of another principal spinning").await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for spinner in spinners {
        let _ = spinner.await;
    }
}
