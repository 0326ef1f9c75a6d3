//! The agent's W3C trace context, end to end: a `traceparent` in the request `_meta` is
//! continued into the result and the audit records; an invalid one starts a new trace.

use serde_json::json;

use crate::audit::{export, job};
use crate::gateway::{Options, setup, stdio_client, traced};

#[tokio::test]
async fn the_agents_trace_id_is_continued_into_the_result_and_the_records() {
    let s = setup(Options::default());
    let client = stdio_client(&s).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traced = |parent: &str| traced("hash", json!({"text": "t"}), parent);
    let result = client
        .call_tool(traced(&format!("00-{trace_id}-00f067aa0ba902b7-01")))
        .await
        .unwrap();
    let meta = &result.meta.as_ref().unwrap().0;
    assert_eq!(meta["portcullis/trace_id"], trace_id);
    // An invalid traceparent starts a new trace, as does none.
    let invalid = client
        .call_tool(traced(&format!(
            "00-{}-00f067aa0ba902b7-01",
            trace_id.to_uppercase()
        )))
        .await
        .unwrap();
    let other = invalid.meta.as_ref().unwrap().0["portcullis/trace_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(other, trace_id);
    assert_eq!(other.len(), 32);
    let job = job(&result);
    client.cancel().await.unwrap();
    let records = export(&s, &["--kind", "intent"]);
    let intent = records.iter().find(|r| r["job"] == job.as_str()).unwrap();
    assert_eq!(intent["trace_id"], trace_id);
    assert_eq!(intent["parent_span_id"], "00f067aa0ba902b7");
    let outcomes = export(&s, &["--kind", "outcome"]);
    let outcome = outcomes.iter().find(|r| r["job"] == job.as_str()).unwrap();
    assert_eq!(outcome["trace_id"], trace_id);
}
