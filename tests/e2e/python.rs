//! The official MCP Python SDK against the real binary, so we are not only tested by the SDK
//! we are built on. `scripts/test` installs the SDK into `.portcullis/venv` and sets
//! `PORTCULLIS_PYTHON`.

use serde_json::{Value, json};

use crate::gateway::{BOB, Options, Setup, binary, http_server, setup};
use crate::support::{EXAMPLE_TOOLS, SHA256_ABC, root};

/// Runs `tests/python/sdk_client.py` in `mode` against the setup, over stdio and HTTP.
async fn python_client(s: &Setup, mode: &str) -> Value {
    let python = std::env::var("PORTCULLIS_PYTHON").unwrap_or_else(|_| {
        root()
            .join(".portcullis/venv/bin/python")
            .display()
            .to_string()
    });
    assert!(
        std::path::Path::new(&python).exists(),
        "{python} is missing: scripts/test creates it (python3 -m venv + pip install -r tests/python/requirements.txt)"
    );
    let server = http_server(s).await;
    let output = tokio::process::Command::new(&python)
        .arg(root().join("tests/python/sdk_client.py"))
        .arg(binary())
        .arg(&s.config)
        .arg(&server.url)
        .arg(BOB)
        .arg(mode)
        .env("RUST_LOG", "portcullis=error")
        .output()
        .await
        .expect("run python");
    assert!(
        output.status.success(),
        "python SDK client failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON from the python client")
}

#[tokio::test]
async fn the_python_sdk_lists_and_calls_over_stdio_and_http() {
    let s = setup(Options::default());
    let seen = python_client(&s, "tools").await;
    for transport in ["stdio", "http"] {
        let t = &seen[transport];
        assert_eq!(t["server"], "portcullis", "{transport}");
        assert_eq!(t["tools"], json!(EXAMPLE_TOOLS), "{transport}");
        assert_eq!(t["ok"]["is_error"], false, "{transport}");
        assert_eq!(t["ok"]["structured"]["hex"], SHA256_ABC);
        assert_eq!(t["denied"]["is_error"], true);
        assert!(
            t["denied"]["text"]
                .as_str()
                .unwrap()
                .contains("protected prefix"),
            "{t}"
        );
        assert_eq!(t["invalid"]["is_error"], true);
        assert!(
            t["invalid"]["text"]
                .as_str()
                .unwrap()
                .contains("input schema"),
            "{t}"
        );
        assert!(
            t["unknown"].as_str().unwrap().contains("unknown tool"),
            "{t}"
        );
    }
}

#[tokio::test]
async fn the_python_sdk_reads_resources_gets_prompts_and_completes_over_stdio_and_http() {
    let policy =
        std::fs::read_to_string(root().join("tools/conformance/policy/conformance.rego")).unwrap();
    let s = setup(Options {
        components: &["conformance"],
        policy: Some(&policy),
        ..Options::default()
    });
    let seen = python_client(&s, "items").await;
    for transport in ["stdio", "http"] {
        let t = &seen[transport];
        assert_eq!(
            t["resources"],
            json!([
                "test://static-binary",
                "test://static-text",
                "test://watched-resource"
            ]),
            "{transport}"
        );
        assert_eq!(t["templates"], json!(["test://template/{id}/data"]));
        assert_eq!(
            t["text"],
            "This is the content of the static text resource."
        );
        assert_eq!(t["templated"]["id"], "42", "{t}");
        assert_eq!(t["blob_mime"], "image/png");
        assert_eq!(t["prompts"].as_array().unwrap().len(), 4, "{t}");
        assert_eq!(
            t["prompt"],
            "Prompt with arguments: arg1='first', arg2='second'"
        );
        assert_eq!(t["image"], json!(["image", "text"]));
        assert!(
            t["missing"].as_str().unwrap().contains("`arg2` is missing"),
            "{t}"
        );
        assert_eq!(t["completion"], json!(["test", "testing", "tested"]));
    }
}
