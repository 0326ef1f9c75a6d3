//! What is not one good JSON-RPC message gets a JSON-RPC error on both transports, never
//! silence or a plain-text 415: a line or body that is not JSON (-32700), a batch or a
//! non-object (-32600), an object that is no JSON-RPC message (-32600), and a served method
//! with params that do not fit it (-32602). The gateway's own loopback origin is accepted; a
//! log written to a pipe has no colour codes; every example tool's schemas are ones a strict
//! JSON Schema 2020-12 validator takes, without the spellings clients warn on; on 2026-07-28
//! requests, `Mcp-Method` and `Mcp-Name` must agree with the body (what a proxy routes on is
//! what runs).

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::gateway::{ALICE, Options, binary, http_server, post, raw_http, setup, stdio_client};

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

/// Each malformed message, the code it gets, the id it is answered to and a phrase of it.
fn cases() -> Vec<(&'static str, i64, Value, &'static str)> {
    vec![
        ("not json", -32700, Value::Null, "parse error"),
        (
            r#"{"jsonrpc":"2.0","id":2,"method":"ping""#,
            -32700,
            Value::Null,
            "parse error",
        ),
        (
            r#"[{"jsonrpc":"2.0","id":3,"method":"ping"}]"#,
            -32600,
            Value::Null,
            "batches are not supported",
        ),
        ("7", -32600, Value::Null, "is an object"),
        ("{}", -32600, Value::Null, "invalid request"),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"arguments":{}}}"#,
            -32602,
            json!(4),
            "missing field `name`",
        ),
        (
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"hash","arguments":[1]}}"#,
            -32602,
            json!(5),
            "invalid params for tools/call",
        ),
    ]
}

fn check(reply: &Value, code: i64, id: &Value, phrase: &str, message: &str) {
    assert_eq!(reply["jsonrpc"], "2.0", "{message}: {reply}");
    assert_eq!(&reply["id"], id, "{message}: {reply}");
    assert_eq!(reply["error"]["code"], code, "{message}: {reply}");
    let text = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(text.contains(phrase), "{message}: {reply}");
}

#[tokio::test]
async fn stdio_answers_every_malformed_line_and_keeps_serving() {
    let s = setup(Options::default());
    let mut child = Command::new(binary())
        .arg("--config")
        .arg(&s.config)
        .args(["serve", "--stdio"])
        .env("RUST_LOG", "portcullis=debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || -> Value {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("no reply within 20 s")
            .unwrap()
            .expect("stdout closed");
        serde_json::from_str(&line).unwrap()
    };
    stdin
        .write_all(format!("{INIT}\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(next().await["id"], 1);
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n\n")
        .await
        .unwrap();
    for (message, code, id, phrase) in cases() {
        stdin
            .write_all(format!("{message}\n").as_bytes())
            .await
            .unwrap();
        check(&next().await, code, &id, phrase, message);
    }
    // Still serving: a ping after all of them is answered.
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"ping\"}\n")
        .await
        .unwrap();
    assert_eq!(
        next().await,
        json!({"jsonrpc": "2.0", "id": 9, "result": {}})
    );
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.is_empty());
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a piped log: {stderr}"
    );
}

#[tokio::test]
async fn http_answers_every_malformed_body_with_400_and_a_json_rpc_error() {
    let s = setup(Options::default());
    let server = http_server(&s).await;
    let mut bodies = cases();
    bodies.push(("", -32700, Value::Null, "parse error"));
    for (body, code, id, phrase) in bodies {
        let response = raw_http(&server, &post(&server, ALICE, "", body)).await;
        let status = response.split_whitespace().nth(1).unwrap_or_default();
        // A -32602 is an answer to a request that was one: 200, like any JSON-RPC error.
        let expected = if code == -32602 { "200" } else { "400" };
        assert_eq!(status, expected, "{body}: {response}");
        assert!(
            response
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{body}: {response}"
        );
        let reply: Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap())
            .unwrap_or_else(|e| panic!("{body}: {e}: {response}"));
        check(&reply, code, &id, phrase, body);
    }
    // A browser page on the gateway's own loopback origin may call it; another origin, a
    // `null` one or another port may not.
    let own = format!("http://{}", server.addr());
    for (origin, status) in [
        (own.as_str(), "200"),
        ("null", "403"),
        ("http://evil.example", "403"),
        ("http://127.0.0.1:1", "403"),
    ] {
        let extra = format!("origin: {origin}\r\n");
        let response = raw_http(&server, &post(&server, ALICE, &extra, INIT)).await;
        assert_eq!(
            response.split_whitespace().nth(1),
            Some(status),
            "{origin}: {response}"
        );
    }
    let log = server.log.lock().unwrap().join("\n");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a piped log: {log}"
    );
}

/// Every schema object inside `value`, the value itself included.
fn schemas<'a>(value: &'a Value, out: &mut Vec<&'a serde_json::Map<String, Value>>) {
    match value {
        Value::Object(map) => {
            out.push(map);
            map.values().for_each(|v| schemas(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| schemas(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_example_tools_schemas_are_portable() {
    let s = setup(Options {
        components: &["workspace", "data", "fetch", "ops"],
        stdio_principal: "root",
        ..Options::default()
    });
    let client = stdio_client(&s).await;
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.len() >= 10, "{}", tools.len());
    for tool in &tools {
        let input = Value::Object((*tool.input_schema).clone());
        let output = tool
            .output_schema
            .as_ref()
            .map(|s| Value::Object((**s).clone()));
        for schema in std::iter::once(&input).chain(output.as_ref()) {
            let name = &tool.name;
            assert!(jsonschema::meta::is_valid(schema), "{name}: {schema}");
            let mut all = Vec::new();
            schemas(schema, &mut all);
            for object in all {
                if let Some(format) = object.get("format").and_then(Value::as_str) {
                    assert!(
                        [
                            "date-time",
                            "date",
                            "time",
                            "email",
                            "hostname",
                            "ipv4",
                            "ipv6",
                            "uri",
                            "uuid"
                        ]
                        .contains(&format),
                        "{name}: format {format} in {schema}"
                    );
                }
                assert_ne!(
                    object.get("items"),
                    Some(&Value::Bool(true)),
                    "{name}: {schema}"
                );
                assert!(
                    !object.get("type").is_some_and(Value::is_array),
                    "{name}: a type list in {schema}"
                );
            }
        }
    }
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn routing_headers_must_agree_with_the_body() {
    let s = setup(Options::default());
    let server = http_server(&s).await;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hash","arguments":{"text":"a"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let send = async |headers: &str| {
        let extra = format!("mcp-protocol-version: 2026-07-28\r\n{headers}");
        raw_http(&server, &post(&server, ALICE, &extra, body)).await
    };
    let agreed = send("mcp-method: tools/call\r\nmcp-name: hash\r\n").await;
    assert!(agreed.starts_with("HTTP/1.1 200"), "{agreed}");
    assert!(agreed.contains(r#""isError":false"#), "{agreed}");
    for (headers, why) in [
        (
            "mcp-method: tools/call\r\nmcp-name: write_file\r\n",
            "Mcp-Name header `write_file`",
        ),
        (
            "mcp-method: tools/list\r\nmcp-name: hash\r\n",
            "Mcp-Method header `tools/list`",
        ),
        ("mcp-name: hash\r\n", "missing required Mcp-Method"),
        ("mcp-method: tools/call\r\n", "Mcp-Name"),
    ] {
        let response = send(headers).await;
        assert!(
            response.starts_with("HTTP/1.1 400"),
            "{headers}: {response}"
        );
        assert!(
            response.contains("-32020") && response.contains(why),
            "{headers}: {response}"
        );
    }
}
