//! Policy hot reload by watching the policy directory: a bundle whose own Rego tests fail keeps
//! the last good one (and the log says which test), a good one takes effect, and calls made
//! throughout are all answered.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::json;

use crate::gateway::{ALICE, Options, call, http_client, http_server, setup, text};

const ALLOW: &str = "package portcullis\nimport rego.v1\ndecision := {\"allow\": true}\n\
    test_hash_is_allowed if decision.allow with input as {\"action\": \"call\"}\n";

#[tokio::test]
async fn a_changed_policy_file_is_reloaded_only_if_its_tests_pass() {
    let s = setup(Options {
        policy: Some(ALLOW),
        rust_log: "portcullis=info",
        ..Options::default()
    });
    let policy_file = s.dir.path().join("policies/policy.rego");
    let server = http_server(&s).await;
    let client = http_client(&server, ALICE).await;
    // Callers that keep calling through every reload; none may go unanswered.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let (peer, stop, answered) = (client.peer().clone(), stop.clone(), answered.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let params = rmcp::model::CallToolRequestParams::new("hash")
                        .with_arguments(json!({"text": "x"}).as_object().unwrap().clone());
                    peer.call_tool(params).await.expect("a call was dropped");
                    answered.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();

    // Denies calls, and its own test says calls must be allowed: refused, the old one stays.
    let deny = "package portcullis\nimport rego.v1\n\
        decision := {\"allow\": true} if input.action == \"list\"\n\
        decision := {\"allow\": false, \"reasons\": [\"closed for maintenance\"]} if input.action == \"call\"\n";
    std::fs::write(&policy_file, format!("{deny}test_hash_is_allowed if data.portcullis.decision.allow with input as {{\"action\": \"call\"}}\n")).unwrap();
    server
        .wait_for_log("policy.rego: test_hash_is_allowed")
        .await;
    let ok = call(&client, "hash", json!({"text": "x"})).await.unwrap();
    assert_eq!(
        ok.is_error,
        Some(false),
        "a bundle with a failing test replaced the policy"
    );

    // The same policy with a test that agrees: it takes effect.
    std::fs::write(&policy_file, format!("{deny}test_calls_are_closed if not data.portcullis.decision.allow with input as {{\"action\": \"call\"}}\n")).unwrap();
    server
        .wait_for_log("policy reloaded (a policy file changed)")
        .await;
    let denied = call(&client, "hash", json!({"text": "x"})).await.unwrap();
    assert_eq!(denied.is_error, Some(true));
    assert!(
        text(&denied).contains("closed for maintenance"),
        "{}",
        text(&denied)
    );

    stop.store(true, Ordering::SeqCst);
    for caller in callers {
        caller.await.unwrap();
    }
    assert!(answered.load(Ordering::SeqCst) > 0);
}
