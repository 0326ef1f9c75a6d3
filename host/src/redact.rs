//! Redaction: what a decision's `redact` paths name is recorded by its shape only, and the
//! strings of arguments are cut out of texts that could quote them (audit records, the
//! policy-error log).
//!
//! A path is `args.` followed by object keys (or array indexes) separated by dots; `*` matches
//! every key or item at that level (`args.items.*.password`). The value there is replaced by
//! its shape (`"[redacted: string, 12 bytes]"`); the strings it held (3 characters or more) are
//! also cut out of every text the record carries (reasons, errors), which can quote them.

use serde_json::Value;

/// The redactions of one call.
#[derive(Debug, Default)]
pub struct Redactor {
    /// The redacted strings, longest first.
    secrets: Vec<String>,
}

fn shape(value: &Value) -> Value {
    let shape = match value {
        Value::Null => "null".to_string(),
        Value::Bool(_) => "boolean".to_string(),
        Value::Number(_) => "number".to_string(),
        Value::String(s) => format!("string, {} bytes", s.len()),
        Value::Array(items) => format!("array, {} items", items.len()),
        Value::Object(map) => format!("object, {} keys", map.len()),
    };
    Value::String(format!("[redacted: {shape}]"))
}

fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) if s.chars().count() >= 3 => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

fn apply(value: &mut Value, path: &[&str], secrets: &mut Vec<String>) {
    let Some((first, rest)) = path.split_first() else {
        strings(value, secrets);
        *value = shape(value);
        return;
    };
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if *first == "*" || key == first {
                    apply(child, rest, secrets);
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                if *first == "*" || first.parse() == Ok(i) {
                    apply(child, rest, secrets);
                }
            }
        }
        _ => {}
    }
}

impl Redactor {
    /// Redacts `args` in place by `paths` (those not under `args.` name nothing in them).
    pub fn apply(args: &mut Value, paths: &[String]) -> Self {
        let mut secrets = Vec::new();
        for path in paths {
            let Some(rest) = path.strip_prefix("args") else {
                continue;
            };
            let parts: Vec<&str> = rest.split('.').filter(|p| !p.is_empty()).collect();
            if parts.is_empty() {
                strings(args, &mut secrets);
                *args = shape(args);
            } else {
                apply(args, &parts, &mut secrets);
            }
        }
        Self::cutting(secrets)
    }

    /// Cuts every string of `value` (3 characters or more) out of texts, changing nothing.
    pub fn strings_of(value: &Value) -> Self {
        let mut secrets = Vec::new();
        strings(value, &mut secrets);
        Self::cutting(secrets)
    }

    /// Longest first, so that a string containing another is cut whole.
    fn cutting(mut secrets: Vec<String>) -> Self {
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    /// Replaces every value in `args` by its shape, keeping the keys and the nesting: for a
    /// call that was denied, whose decision names no redactions.
    pub fn leaves(args: &mut Value) -> Self {
        fn walk(value: &mut Value, secrets: &mut Vec<String>) {
            match value {
                Value::Object(map) => map.values_mut().for_each(|v| walk(v, secrets)),
                Value::Array(items) => items.iter_mut().for_each(|v| walk(v, secrets)),
                leaf => {
                    strings(leaf, secrets);
                    *leaf = shape(leaf);
                }
            }
        }
        let mut secrets = Vec::new();
        walk(args, &mut secrets);
        Self::cutting(secrets)
    }

    /// `text` with every redacted string cut out.
    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.to_string();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "[redacted]");
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_keep_the_shape_only() {
        let mut args = json!({
            "path": "notes.txt",
            "content": "hunter2-canary",
            "items": [{"password": "pw-one", "user": "a"}, {"password": 7}],
            "deep": {"a": {"b": [1, 2, 3]}},
        });
        let redactor = Redactor::apply(
            &mut args,
            &[
                "args.content".into(),
                "args.items.*.password".into(),
                "args.deep.a".into(),
                "args.missing.x".into(),
                "input.other".into(),
            ],
        );
        assert_eq!(
            args,
            json!({
                "path": "notes.txt",
                "content": "[redacted: string, 14 bytes]",
                "items": [
                    {"password": "[redacted: string, 6 bytes]", "user": "a"},
                    {"password": "[redacted: number]"}
                ],
                "deep": {"a": "[redacted: object, 1 keys]"},
            })
        );
        assert_eq!(
            redactor.scrub("denied: hunter2-canary and pw-one, not notes.txt"),
            "denied: [redacted] and [redacted], not notes.txt"
        );
        let mut all = json!({"x": "secret-value"});
        let redactor = Redactor::apply(&mut all, &["args".into()]);
        assert_eq!(all, json!("[redacted: object, 1 keys]"));
        assert_eq!(redactor.scrub("secret-value"), "[redacted]");
        let mut denied = json!({"path": ".env", "n": 3, "list": ["abc", true]});
        let redactor = Redactor::leaves(&mut denied);
        assert_eq!(
            denied,
            json!({
                "path": "[redacted: string, 4 bytes]",
                "n": "[redacted: number]",
                "list": ["[redacted: string, 3 bytes]", "[redacted: boolean]"],
            })
        );
        assert_eq!(
            redactor.scrub("path .env, abc"),
            "path [redacted], [redacted]"
        );
    }
}
