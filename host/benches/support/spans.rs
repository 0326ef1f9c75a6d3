//! What the stage spans cost: the same gateway binary with nothing exported (the default; the
//! span call sites are disabled) against one exporting spans over OTLP/HTTP to a loopback
//! collector, in alternating rounds of one run — one client sequentially, then 32 clients.
//! The collector decodes what it receives, so the run also reports how many spans arrived
//! against how many the calls made (the batch processor drops what overflows its queue).

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use super::{post_mcp, serve_http_with};

const TOKEN: &str = "bench-token-0123456789";
const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hash","arguments":{"text":"a"}}}"#;

/// A loopback OTLP/HTTP collector counting the spans it is sent; its base URL.
async fn collector(spans: Arc<AtomicU64>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let spans = spans.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let spans = spans.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        if path == "/v1/traces" {
                            let request = ExportTraceServiceRequest::decode(body).unwrap();
                            let n: usize = request
                                .resource_spans
                                .iter()
                                .flat_map(|r| &r.scope_spans)
                                .map(|s| s.spans.len())
                                .sum();
                            spans.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}

/// A gateway on HTTP, exporting spans to `otlp` if given.
async fn gateway(dir: &Path, otlp: Option<&str>) -> (tokio::process::Child, String) {
    let telemetry = otlp
        .map(|url| format!("[telemetry]\notlp_endpoint = \"{url}\"\nmetrics = false\n"))
        .unwrap_or_default();
    serve_http_with(dir, &telemetry, TOKEN).await
}

/// `clients` concurrent clients making `per_client` calls each: every call's latency, and the
/// calls per second over the round.
async fn round(url: &str, clients: usize, per_client: usize) -> (Vec<Duration>, f64) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (url, client) = (url.to_string(), reqwest::Client::new());
            tokio::spawn(async move {
                let mut times = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    let call = Instant::now();
                    let text = post_mcp(&client, &url, TOKEN, CALL).await;
                    times.push(call.elapsed());
                    assert!(text.contains("\"isError\":false"), "{text}");
                }
                times
            })
        })
        .collect();
    let mut times = Vec::new();
    for task in tasks {
        times.extend(task.await.unwrap());
    }
    let rate = times.len() as f64 / started.elapsed().as_secs_f64();
    (times, rate)
}

pub async fn spans(n: usize) {
    let received = Arc::new(AtomicU64::new(0));
    let otlp = collector(received.clone()).await;
    let (off_dir, on_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let servers = [
        gateway(off_dir.path(), None).await,
        gateway(on_dir.path(), Some(&otlp)).await,
    ];
    // Warm both (connections, code paths), and learn how many spans one call makes.
    for (_, url) in &servers {
        round(url, 1, 200).await;
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    let per_call = received.swap(0, Ordering::Relaxed) as f64 / 200.0;
    println!("stage spans: {per_call:.1} exported per governed call");

    let us = |d: Duration| d.as_secs_f64() * 1e6;
    for (clients, per_client) in [(1, n), (32, (n / 32).max(20))] {
        let mut medians = [Vec::new(), Vec::new()];
        let mut rates = [Vec::new(), Vec::new()];
        let mut calls_on = 0;
        for turn in 0..6 {
            let on = turn % 2 == 1;
            let (mut times, rate) = round(&servers[usize::from(on)].1, clients, per_client).await;
            times.sort();
            medians[usize::from(on)].push(us(times[times.len() / 2]));
            rates[usize::from(on)].push(rate);
            if on {
                calls_on += times.len();
            }
        }
        // The batch processor's default delay is 5 s: wait for the last batch.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let got = received.swap(0, Ordering::Relaxed) as f64;
        let least = |v: &[f64]| v.iter().cloned().fold(f64::MAX, f64::min);
        let most = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
        let round1 = |v: &[f64]| v.iter().map(|x| x.round()).collect::<Vec<_>>();
        println!(
            "HTTP, {clients} client(s): median {:.0} µs off, {:.0} µs spans on (+{:.0}); {:.0} calls/s off, {:.0} on ({:.0}%); medians off {:?} on {:?}; rates off {:?} on {:?}",
            least(&medians[0]),
            least(&medians[1]),
            least(&medians[1]) - least(&medians[0]),
            most(&rates[0]),
            most(&rates[1]),
            100.0 * most(&rates[1]) / most(&rates[0]),
            round1(&medians[0]),
            round1(&medians[1]),
            round1(&rates[0]),
            round1(&rates[1]),
        );
        println!(
            "  spans received: {got:.0} of {:.0} made ({:.1}%)",
            calls_on as f64 * per_call,
            100.0 * got / (calls_on as f64 * per_call)
        );
    }
}
