//! Results the gateway checks after the guest returned, through the real binary: structured
//! output against the declared schema, and a result too large for one MCP message.

use std::time::Duration;

use portcullis::grants::MIB;
use serde_json::json;

use crate::gateway::{Options, call, setup, stdio_client, text};

/// Allows every call; the hostile component's tool included.
const ALLOW_ALL: &str = "package portcullis\nimport rego.v1\ndecision := {\"allow\": true}\n";

#[tokio::test]
async fn output_that_breaks_its_declared_schema_is_a_tool_error() {
    let s = setup(Options {
        components: &["hostile-output", "data"],
        policy: Some(ALLOW_ALL),
        ..Options::default()
    });
    let client = stdio_client(&s).await;
    for how in ["wrong_type", "missing"] {
        let result = call(&client, "lying_output", json!({ "how": how }))
            .await
            .unwrap_or_else(|e| panic!("{how}: the client rejected the response: {e}"));
        assert_eq!(result.is_error, Some(true), "{how}");
        assert!(result.structured_content.is_none(), "{how}");
        assert!(
            text(&result).contains("does not match its declared output schema"),
            "{how}: {}",
            text(&result)
        );
    }
    let honest = call(&client, "lying_output", json!({"how": "honest"}))
        .await
        .unwrap();
    assert_eq!(honest.structured_content, Some(json!({"count": 3})));
}

/// Lets `big_return` return up to the gateway's output ceiling (16 MiB).
const BIG_OUTPUT: &str = "package portcullis\nimport rego.v1\ndecision := {\"allow\": true, \"limits\": {\"output_kb\": 16384}}\n";

#[tokio::test]
async fn a_result_too_large_for_one_mcp_message_is_an_output_error_not_a_lost_reply() {
    let s = setup(Options {
        components: &["hostile-big-return", "data"],
        policy: Some(BIG_OUTPUT),
        ..Options::default()
    });
    let client = stdio_client(&s).await;
    // Within the output limit, but with the envelope over the 16 MiB clients accept.
    let over = tokio::time::timeout(
        Duration::from_secs(60),
        call(&client, "big_return", json!({ "bytes": 16 * MIB - 100 })),
    )
    .await
    .expect("the reply was lost")
    .unwrap();
    assert_eq!(over.is_error, Some(true));
    assert!(
        text(&over).starts_with("output limit reached: the result encodes to"),
        "{}",
        &text(&over)[..200.min(text(&over).len())]
    );
    // A large result that fits arrives whole.
    let fits = call(&client, "big_return", json!({ "bytes": 8 * MIB }))
        .await
        .unwrap();
    assert_eq!(fits.is_error, Some(false));
    assert_eq!(text(&fits).len(), 8 * MIB as usize);
}
