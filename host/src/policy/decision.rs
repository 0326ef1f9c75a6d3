//! Reading the decision document: its shape is checked exactly before it is typed.
//!
//! serde alone is not enough: a derived struct also accepts a JSON *array* (fields by position),
//! so `[true]` would read as `{"allow": true}`. Every place the contract says "object" is checked
//! to be an object here, `allow` must be a boolean, and unknown fields are refused by the types.

use anyhow::{Result, anyhow, bail};
use serde_json::Value;

use crate::ijson::kind;

use super::DECISION_RULE;
use super::types::Decision;

fn object<'a>(value: &'a Value, at: &str) -> Result<&'a serde_json::Map<String, Value>> {
    value
        .as_object()
        .ok_or_else(|| anyhow!("`{at}` must be an object, not {}", kind(value)))
}

/// `at` holds an array of objects (or is absent).
fn objects(parent: &serde_json::Map<String, Value>, key: &str, at: &str) -> Result<()> {
    match parent.get(key) {
        None => Ok(()),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                object(item, &format!("{at}.{key}[{i}]"))?;
            }
            Ok(())
        }
        Some(other) => bail!("`{at}.{key}` must be an array, not {}", kind(other)),
    }
}

/// Checks everything about the shape that serde would let through.
fn check_shape(value: &Value) -> Result<()> {
    let decision = object(value, "decision")?;
    match decision.get("allow") {
        Some(Value::Bool(_)) => {}
        Some(other) => bail!("`decision.allow` must be a boolean, not {}", kind(other)),
        None => bail!("`decision.allow` is missing"),
    }
    if let Some(grants) = decision.get("grants") {
        let grants = object(grants, "decision.grants")?;
        objects(grants, "fs", "decision.grants")?;
        objects(grants, "http", "decision.grants")?;
        if let Some(env) = grants.get("env") {
            object(env, "decision.grants.env")?;
        }
    }
    if let Some(limits) = decision.get("limits") {
        object(limits, "decision.limits")?;
    }
    match decision.get("requires_approval") {
        None | Some(Value::Null) => {}
        Some(approval) => {
            object(approval, "decision.requires_approval")?;
        }
    }
    objects(decision, "rate", "decision")?;
    Ok(())
}

/// The typed decision, or why the document is not one.
pub fn parse(value: &regorus::Value) -> Result<Decision> {
    if *value == regorus::Value::Undefined {
        bail!("`{DECISION_RULE}` is undefined for this input");
    }
    let json = value.to_json_str().map_err(|e| anyhow!("{e}"))?;
    let document: Value = serde_json::from_str(&json).map_err(|e| anyhow!("{e}"))?;
    check_shape(&document).map_err(|e| anyhow!("`{DECISION_RULE}` is malformed: {e}"))?;
    serde_json::from_value::<Decision>(document)
        .map_err(|e| anyhow!("`{DECISION_RULE}` is malformed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_json(value: Value) -> Result<Decision> {
        parse(&regorus::Value::from(value))
    }

    #[test]
    fn only_the_exact_shape_is_a_decision() {
        let bad = [
            (json!([true]), "must be an object, not an array"),
            (json!("allow"), "not a string"),
            (json!(1), "not a number"),
            (json!(true), "not a boolean"),
            (json!({}), "`decision.allow` is missing"),
            (json!({"allow": "true"}), "must be a boolean, not a string"),
            (json!({"allow": 1}), "must be a boolean, not a number"),
            (json!({"allow": null}), "must be a boolean, not null"),
            (json!({"allow": true, "extra": 1}), "unknown field `extra`"),
            (
                json!({"allow": true, "grants": [[], [], {}, []]}),
                "`decision.grants` must be an object",
            ),
            (
                json!({"allow": true, "grants": {"fs": [["/", "/w", "rw"]]}}),
                "decision.grants.fs[0]",
            ),
            (
                json!({"allow": true, "limits": [1, 2, 3, 4]}),
                "`decision.limits` must be an object",
            ),
            (
                json!({"allow": true, "requires_approval": [2, "x"]}),
                "requires_approval",
            ),
            (
                json!({"allow": true, "rate": [["k", 1, 1]]}),
                "decision.rate[0]",
            ),
            (
                json!({"allow": true, "grants": {"env": [["A", "b"]]}}),
                "decision.grants.env",
            ),
        ];
        for (value, expected) in bad {
            let error = format!("{:#}", parse_json(value.clone()).unwrap_err());
            assert!(error.contains(expected), "{value}: {error}");
        }
        let good =
            parse_json(json!({"allow": true, "grants": {"fs": []}, "requires_approval": null}))
                .unwrap();
        assert!(good.allow);
    }
}
