//! The decision log: each `tools/call` decision as an OPA decision-log event.
//!
//! It is a view of the audit trail, not a second log: the `intent` record of a call that ran
//! and the `refused` record of one the policy decided and that did not run hold the policy's
//! input (as recorded: arguments redacted) and its result, the bundle digest and how long the
//! evaluation took. So the decision log is as tamper-evident as the trail, costs no write of
//! its own, and takes the same filters. `tools/list` decisions are not logged.

use serde_json::{Value, json};

/// The JSON Pointers of `redact` paths (`args.a.b` → `/input/args/a/b`).
fn erased(redact: &Value) -> Vec<String> {
    redact
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|path| path.starts_with("args"))
        .map(|path| format!("/input/{}", path.replace('.', "/")))
        .collect()
}

/// The OPA decision-log event of a record, if the record holds a decision.
pub fn opa_event(record: &Value) -> Option<Value> {
    let decision = match record["kind"].as_str()? {
        "intent" | "refused" => record.get("decision")?,
        _ => return None,
    };
    let mut result = decision.clone();
    if let Some(map) = result.as_object_mut() {
        map.retain(|_, v| !v.is_null());
    }
    let erased = if decision["allow"] == true {
        erased(&decision["redact"])
    } else {
        // A denial's arguments are recorded by shape only.
        vec!["/input/args".to_string()]
    };
    Some(json!({
        "decision_id": record["job"],
        "trace_id": record["trace_id"],
        "path": "portcullis/decision",
        "timestamp": record["at"],
        "requested_by": record["principal"],
        "bundles": {"portcullis": {"revision": record["policy_digest"]}},
        "input": {
            "action": "call",
            "principal": {
                "id": record["principal"],
                "roles": record["roles"],
                "authenticated_by": record["auth"],
            },
            "tool": {
                "name": record["tool"],
                "component": record["component"]["name"],
                "digest": record["component"]["digest"],
            },
            "args": record["args"],
            "plan_hash": record["plan_hash"],
            "environment": record["environment"],
            "context": {
                "request_id": record["job"],
                "transport": record["transport"],
                "idempotency_key": record["idempotency_key"],
            },
        },
        "result": result,
        "metrics": {"timer_rego_query_eval_ns": record["decision_ns"]},
        "erased": erased,
        "labels": {"app": "portcullis", "version": env!("CARGO_PKG_VERSION")},
        "audit_seq": record["seq"],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_and_denials_become_events_others_do_not() {
        let intent = json!({
            "seq": 4, "kind": "intent", "job": "gw_1-0", "at": "2026-12-01T00:00:00.000Z",
            "principal": "bob", "roles": ["writer"], "auth": "stdio", "tool": "write_file",
            "component": {"name": "workspace", "digest": "sha256:c"},
            "args": {"path": "a", "content": "[redacted: string, 1 bytes]"},
            "plan_hash": "sha256:p", "policy_digest": "sha256:b", "environment": "dev",
            "transport": "stdio", "idempotency_key": null, "decision_ns": 12000,
            "decision": {"allow": true, "redact": ["args.content"], "requires_approval": null},
        });
        let event = opa_event(&intent).unwrap();
        assert_eq!(event["decision_id"], "gw_1-0");
        assert_eq!(event["bundles"]["portcullis"]["revision"], "sha256:b");
        assert_eq!(event["erased"], json!(["/input/args/content"]));
        assert_eq!(
            event["result"],
            json!({"allow": true, "redact": ["args.content"]})
        );
        assert_eq!(event["metrics"]["timer_rego_query_eval_ns"], 12000);
        assert_eq!(event["input"]["principal"]["roles"], json!(["writer"]));
        let mut denied = intent.clone();
        denied["kind"] = "refused".into();
        denied["decision"] = json!({"allow": false, "reasons": ["no"]});
        assert_eq!(
            opa_event(&denied).unwrap()["erased"],
            json!(["/input/args"])
        );
        assert!(opa_event(&json!({"kind": "outcome"})).is_none());
        assert!(opa_event(&json!({"kind": "refused", "outcome": "schema"})).is_none());
    }
}
