//! The approval webhook through the real binary: a receiver started here gets each new
//! pending approval and each vote, signed with HMAC-SHA256; a webhook that fails never holds
//! up a call.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::gateway::{Options, call, setup, stdio_client, text};
use crate::governance::{approval_id, approve};

const KEY: &str = "hook-signing-key-0123456789";

/// One request the receiver got: headers (lowercased names) and body.
#[derive(Clone, Debug)]
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A webhook receiver on loopback answering 200 to everything.
async fn receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, length) = loop {
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (end + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let headers = head
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_string()))
                    .collect();
                sink.lock().unwrap().push(Received {
                    headers,
                    body: buf[head_end..].to_vec(),
                });
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                // Close gracefully: the client reads the answer before the connection ends.
                let _ = stream.shutdown().await;
                let _ = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut chunk)).await;
            });
        }
    });
    (url, got)
}

const POLICY: &str = r#"package portcullis
import rego.v1
default decision := {"allow": false}
decision := {"allow": true} if input.action == "list"
decision := {"allow": true, "requires_approval": {"approvers": 2, "roles": ["sre"], "reason": "two sres"}} if input.action == "call"
"#;

fn hooked(url: &str, keyfile: &std::path::Path) -> crate::gateway::Setup {
    let extra = format!(
        "[principals.sam]\nroles = [\"sre\"]\n[principals.sue]\nroles = [\"sre\"]\n\
         [secrets]\nHOOK_KEY = {{ file = \"{}\" }}\n\
         [webhook]\nurl = \"{url}\"\nsecret = \"HOOK_KEY\"\nmax_attempts = 2\ntimeout = \"1s\"\n",
        keyfile.display()
    );
    setup(Options {
        policy: Some(POLICY),
        extra: Box::leak(extra.into_boxed_str()),
        ..Default::default()
    })
}

async fn wait_for(got: &Arc<Mutex<Vec<Received>>>, count: usize) -> Vec<Received> {
    for _ in 0..100 {
        if got.lock().unwrap().len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    got.lock().unwrap().clone()
}

// Multi-threaded: the approvals CLI blocks this thread while it delivers to the receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_get_signed_events_for_requests_and_decisions() {
    let (url, got) = receiver().await;
    let keys = tempfile::tempdir().unwrap();
    let keyfile = keys.path().join("hook.key");
    std::fs::write(&keyfile, KEY).unwrap();
    let s = hooked(&url, &keyfile);
    let client = stdio_client(&s).await;
    let pending = call(&client, "hash", json!({"text": "secret-argument-value"}))
        .await
        .unwrap();
    let id = approval_id(&pending);
    let events = wait_for(&got, 1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let requested = &events[0];
    assert_eq!(
        requested.header("x-portcullis-event"),
        Some("approval.requested")
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(&requested.body);
    let expected = format!("sha256:{}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        requested
            .header("x-portcullis-signature")
            .map(|s| s.replacen('=', ":", 1)),
        Some(expected),
        "the signature is HMAC-SHA256 of the body"
    );
    let body = requested.json();
    assert_eq!(body["event"], "approval.requested");
    assert_eq!(body["data"]["id"], id.as_str());
    assert_eq!(
        body["data"]["state"],
        "waiting for 2 approvals from sre, 0 given"
    );
    assert!(
        !String::from_utf8_lossy(&requested.body).contains("secret-argument-value"),
        "arguments never go to the webhook"
    );

    approve(&s, &id, "sam");
    approve(&s, &id, "sue");
    let events = wait_for(&got, 3).await;
    let names: Vec<Value> = events.iter().map(|e| e.json()["event"].clone()).collect();
    assert_eq!(
        names,
        ["approval.requested", "approval.voted", "approval.approved"]
    );
    assert_eq!(events[2].json()["data"]["status"], "approved");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_failing_webhook_never_holds_up_a_call() {
    // Nothing listens on this port: every delivery fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let keys = tempfile::tempdir().unwrap();
    let keyfile = keys.path().join("hook.key");
    std::fs::write(&keyfile, KEY).unwrap();
    let s = hooked(&url, &keyfile);
    let client = stdio_client(&s).await;
    for i in 0..5 {
        let started = Instant::now();
        let pending = call(&client, "hash", json!({ "text": format!("{i}") }))
            .await
            .unwrap();
        assert!(
            text(&pending).contains("approval pending"),
            "{}",
            text(&pending)
        );
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }
    client.cancel().await.unwrap();
}
