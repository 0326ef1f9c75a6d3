//! The official MCP Python SDK against the real binary, so we are not only tested by the SDK
//! we are built on. `scripts/test` installs the SDK into `.portcullis/venv` and sets
//! `PORTCULLIS_PYTHON`.

use serde_json::{Value, json};

use crate::gateway::{BOB, Options, binary, http_server, setup};
use crate::support::{EXAMPLE_TOOLS, SHA256_ABC, root};

#[tokio::test]
async fn the_python_sdk_lists_and_calls_over_stdio_and_http() {
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
    let s = setup(Options::default());
    let server = http_server(&s).await;
    let output = tokio::process::Command::new(&python)
        .arg(root().join("tests/python/sdk_client.py"))
        .arg(binary())
        .arg(&s.config)
        .arg(&server.url)
        .arg(BOB)
        .env("RUST_LOG", "portcullis=error")
        .output()
        .await
        .expect("run python");
    assert!(
        output.status.success(),
        "python SDK client failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).expect("JSON from the python client");
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
