//! The HTTP front door under hostile clients, against the real binary: ambiguous requests,
//! connection and in-flight caps, a flood from one principal, clients that never read, and an
//! accept loop out of file descriptors. Each test attempts the attack and checks that the
//! gateway keeps serving.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::gateway::{
    ALICE, BOB, HttpServer, Options, call, http_client, http_server, post, raw_http, setup,
};
use crate::support::SHA256_ABC;

/// Starts a request as `token` that announces a `length`-byte body and sends only its start:
/// it stays in flight (holding its room) until the stream is dropped.
async fn slow_request(server: &HttpServer, token: &str, length: usize) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut slow = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\naccept: application/json, text/event-stream\r\n\
         content-length: {length}\r\n\r\n{{\"jsonrpc\"",
        server.addr()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    slow
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
    let s = setup(Options {
        http_extra: "max_inflight_bytes = \"1088KiB\"",
        limits_extra: "admission_wait = \"300ms\"",
        ..Options::default()
    });
    let server = http_server(&s).await;
    // A client announces a 1 MiB body and sends it slowly: it holds its room meanwhile.
    let slow = slow_request(&server, ALICE, 1048576).await;
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
    let s = setup(Options {
        http_extra: "max_requests_per_principal = 1",
        ..Options::default()
    });
    let server = http_server(&s).await;
    // Alice has one request in flight (its body is still coming).
    let slow = slow_request(&server, ALICE, 1000).await;
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

#[tokio::test]
async fn one_principal_over_its_request_rate_gets_429_and_others_go_on() {
    let s = setup(Options {
        http_extra: "max_rate_per_principal = 5",
        ..Options::default()
    });
    let server = http_server(&s).await;
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let status = |response: &str| response.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut answers = Vec::new();
    for _ in 0..8 {
        answers.push(raw_http(&server, &post(&server, ALICE, "", list)).await);
    }
    let limited: Vec<_> = answers.iter().filter(|a| status(a) == "429").collect();
    assert!(
        (1..=3).contains(&limited.len()),
        "{:?}",
        answers.iter().map(|a| status(a)).collect::<Vec<_>>()
    );
    let refused = limited[0].to_ascii_lowercase();
    assert!(
        refused.contains("retry-after: 1") && refused.contains("request rate"),
        "{refused}"
    );
    // Another principal is not affected, and the first gets through again after a second.
    assert_eq!(
        status(&raw_http(&server, &post(&server, BOB, "", list)).await),
        "200"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        status(&raw_http(&server, &post(&server, ALICE, "", list)).await),
        "200"
    );
}

#[tokio::test]
async fn sigterm_finishes_calls_in_flight_and_refuses_new_ones() {
    let policy = "package portcullis\nimport rego.v1\n\
        decision := {\"allow\": true} if input.action == \"list\"\n\
        decision := {\"allow\": true, \"limits\": {\"timeout_ms\": 2000}} if input.action == \"call\"\n";
    let s = setup(Options {
        components: &["hostile-sleep", "data"],
        policy: Some(policy),
        http_extra: "shutdown_grace = \"20s\"",
        ..Options::default()
    });
    let mut server = http_server(&s).await;
    let client = http_client(&server, BOB).await;
    let peer = client.peer().clone();
    let in_flight = tokio::spawn(async move {
        let params = rmcp::model::CallToolRequestParams::new("sleep_forever")
            .with_arguments(serde_json::Map::new());
        peer.call_tool(params).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = server.child.id().unwrap().to_string();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(term.unwrap().success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Draining: a new request is refused at once, and told to go elsewhere.
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let refused = raw_http(&server, &post(&server, ALICE, "", list)).await;
    assert!(
        refused.starts_with("HTTP/1.1 503") && refused.contains("shutting down"),
        "{refused}"
    );
    // The call in flight is answered (its own deadline, 2 s), not cut off.
    let answered = in_flight
        .await
        .unwrap()
        .expect("the call in flight was dropped");
    assert_eq!(answered.is_error, Some(true));
    // Then the gateway exits cleanly, well before the grace period is over.
    let started = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(10), server.child.wait())
        .await
        .expect("the gateway did not exit after draining")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
