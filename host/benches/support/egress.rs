//! A governed `http_fetch` of a small response from a loopback server, against a plain request
//! to the same server from the same process; pooled and unpooled upstream connections.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use portcullis::config::Config;
use portcullis::gate::{Asked, RawArgs, Transport};
use serde_json::{Value, json};

use super::{bench_config_with, report};

/// A loopback HTTP/1.1 server answering every request with `pong`.
async fn pong_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                        b"pong",
                    ))))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

/// Plain requests on one kept-alive connection: the floor for any gateway.
async fn bare(port: u16, n: usize) -> Vec<Duration> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut times = Vec::with_capacity(n);
    for i in 0..n + 200 {
        let started = Instant::now();
        let req = hyper::Request::get("/debug/ping")
            .header("host", format!("127.0.0.1:{port}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"pong");
        if i >= 200 {
            times.push(started.elapsed());
        }
    }
    times
}

fn config(dir: &std::path::Path, port: u16, pool_max_idle: usize) -> Config {
    let extra = format!(
        "[egress]\npool_max_idle = {pool_max_idle}\n\
         [ceilings]\nhttp = [\"*\", \"127.0.0.1\"]\n\
         [settings]\nfetch = [{{ host = \"127.0.0.1\", schemes = [\"http\"], ports = [{port}] }}]\n"
    );
    Config::load(Some(&bench_config_with(dir, &extra))).unwrap()
}

/// Each governed call's time, and how much of it was plan (validate + hash + decide).
async fn governed(port: u16, n: usize, pool_max_idle: usize) -> (Vec<Duration>, Vec<Duration>) {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), port, pool_max_idle);
    let gateway = portcullis::cli::build_gateway(&config).await.unwrap();
    let principal = config.principal("local", "stdio").unwrap();
    let Value::Object(map) = json!({"url": format!("http://127.0.0.1:{port}/debug/ping")}) else {
        unreachable!()
    };
    let mut times = Vec::with_capacity(n);
    let mut plans = Vec::with_capacity(n);
    for i in 0..n + 200 {
        let args = RawArgs::Object(Some(map.clone()));
        let started = Instant::now();
        let plan = gateway
            .plan(
                &principal,
                "http_fetch",
                args,
                Transport::Cli,
                Asked::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("http_fetch refused: {e}"));
        let planned = started.elapsed();
        let outcome = gateway.execute(&principal, plan, None).await;
        let elapsed = started.elapsed();
        let outcome = outcome.unwrap_or_else(|e| panic!("http_fetch failed: {e}"));
        assert!(outcome.report.outcome.is_ok_and(|o| !o.is_error));
        if i >= 200 {
            times.push(elapsed);
            plans.push(planned);
        }
    }
    (times, plans)
}

pub async fn egress(n: usize) {
    let port = pong_server().await;
    let plain = report(
        "plain GET on a kept-alive connection (hyper, in process)",
        bare(port, n).await,
    );
    let (times, plans) = governed(port, n, 8).await;
    let pooled = report("governed http_fetch, pooled upstream connections", times);
    report("  of which plan (validate+hash+decide)", plans);
    let (times, _) = governed(port, n, 0).await;
    let unpooled = report("governed http_fetch, a new connection per request", times);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{:<58} pooled {:>7.1} µs   unpooled {:>7.1} µs",
        "gateway overhead over the plain request (medians)",
        us(pooled.median) - us(plain.median),
        us(unpooled.median) - us(plain.median)
    );
}
