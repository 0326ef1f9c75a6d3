//! Arguments: byte and depth caps, one parse, one canonical form, the plan hash.
//!
//! Parse once, canonicalise once: the value policy sees and the bytes the tool receives come
//! from the same parse, so there is no parser differential between decision and execution.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::ijson::kind;

/// Why arguments were refused before any policy or instance.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    #[error("the arguments are {actual} bytes; the limit is {limit}")]
    TooLarge { limit: usize, actual: usize },
    #[error("the arguments are nested deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("the arguments are not valid JSON: {0}")]
    NotJson(String),
    #[error("the arguments must be a JSON object, not {0}")]
    NotAnObject(&'static str),
    #[error(
        "the integer {value} at {at} is outside ±2^53 (9007199254740992), where JSON numbers stop being exact; send it as a string"
    )]
    InexactInteger { at: String, value: String },
    #[error("`{field}` is a workspace path: {problem}")]
    Path { field: String, problem: String },
}

/// Caps applied to every call's arguments.
#[derive(Clone, Copy, Debug)]
pub struct ArgsCaps {
    pub max_bytes: usize,
    pub max_depth: usize,
}

/// Parsed, checked arguments with their canonical JSON.
#[derive(Clone, Debug)]
pub struct Arguments {
    pub value: Value,
    pub canonical: String,
}

/// Nesting depth of `value` (a scalar is 0), stopping early past `limit`.
fn depth_exceeds(value: &Value, limit: usize) -> bool {
    fn walk(value: &Value, remaining: usize) -> bool {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => return false,
        };
        if remaining == 0 {
            return true;
        }
        for child in children {
            if walk(child, remaining - 1) {
                return true;
            }
        }
        false
    }
    walk(value, limit)
}

/// Whether raw JSON nests deeper than `limit`, counted without parsing (brackets outside
/// strings). Safe on any input, including truncated or invalid JSON.
pub fn nesting_exceeds(text: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in text {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The largest integer every JSON implementation represents exactly (I-JSON, RFC 7493).
const MAX_EXACT: u64 = 1 << 53;

/// The first integer that policy (Rego numbers) and the tool could read as different values,
/// as (JSON pointer, value). Nothing is allocated unless one is found: this walks every
/// argument of every call.
fn find_inexact(value: &Value) -> Option<(String, String)> {
    match value {
        Value::Number(n) => {
            let inexact = match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => u > MAX_EXACT,
                (None, Some(i)) => i.unsigned_abs() > MAX_EXACT,
                // A float: one IEEE double, the same on every side.
                (None, None) => false,
            };
            inexact.then(|| (String::new(), n.to_string()))
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| find_inexact(item).map(|(at, n)| (format!("/{i}{at}"), n))),
        Value::Object(map) => map
            .iter()
            .find_map(|(key, item)| find_inexact(item).map(|(at, n)| (format!("/{key}{at}"), n))),
        _ => None,
    }
}

/// The one spelling of a workspace-relative path: `.` segments and repeated or trailing `/`
/// removed; absolute paths, `..` and control characters refused. `""` and `"."` become `"."`.
pub fn normalize_path(path: &str) -> Result<String, String> {
    if path.starts_with('/') {
        return Err(format!(
            "`{}` is absolute; give a path relative to the workspace",
            path.escape_debug()
        ));
    }
    if path.chars().any(char::is_control) {
        return Err("it contains control characters".into());
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(format!(
                    "`{}` uses `..`; paths stay inside the workspace",
                    path.escape_debug()
                ));
            }
            part => parts.push(part),
        }
    }
    Ok(if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    })
}

fn normalize_paths(value: &mut Value, fields: &[String]) -> Result<(), ArgsError> {
    let Value::Object(map) = value else {
        return Ok(());
    };
    for field in fields {
        if let Some(Value::String(path)) = map.get_mut(field) {
            *path = normalize_path(path).map_err(|problem| ArgsError::Path {
                field: field.clone(),
                problem,
            })?;
        }
    }
    Ok(())
}

fn finish(
    mut value: Value,
    caps: ArgsCaps,
    path_fields: &[String],
) -> Result<Arguments, ArgsError> {
    if !value.is_object() {
        return Err(ArgsError::NotAnObject(kind(&value)));
    }
    // Depth 1 is the arguments object itself.
    if depth_exceeds(&value, caps.max_depth) {
        return Err(ArgsError::TooDeep {
            limit: caps.max_depth,
        });
    }
    if let Some((at, value)) = find_inexact(&value) {
        let at = if at.is_empty() { "/".into() } else { at };
        return Err(ArgsError::InexactInteger { at, value });
    }
    normalize_paths(&mut value, path_fields)?;
    let canonical = serde_json_canonicalizer::to_string(&value)
        .map_err(|e| ArgsError::NotJson(e.to_string()))?;
    if canonical.len() > caps.max_bytes {
        return Err(ArgsError::TooLarge {
            limit: caps.max_bytes,
            actual: canonical.len(),
        });
    }
    Ok(Arguments { value, canonical })
}

/// From raw JSON text (CLI, tests): the byte and depth caps apply before parsing; duplicate keys
/// are refused. `path_fields` are normalised (see [`normalize_path`]).
pub fn from_text(
    text: &str,
    caps: ArgsCaps,
    path_fields: &[String],
) -> Result<Arguments, ArgsError> {
    if text.len() > caps.max_bytes {
        return Err(ArgsError::TooLarge {
            limit: caps.max_bytes,
            actual: text.len(),
        });
    }
    if nesting_exceeds(text.as_bytes(), caps.max_depth) {
        return Err(ArgsError::TooDeep {
            limit: caps.max_depth,
        });
    }
    crate::ijson::check_unique_keys(text.as_bytes()).map_err(ArgsError::NotJson)?;
    let value: Value = serde_json::from_str(text).map_err(|e| ArgsError::NotJson(e.to_string()))?;
    finish(value, caps, path_fields)
}

/// From the object an MCP transport already parsed (its own byte caps applied first).
pub fn from_object(
    object: Option<Map<String, Value>>,
    caps: ArgsCaps,
    path_fields: &[String],
) -> Result<Arguments, ArgsError> {
    finish(Value::Object(object.unwrap_or_default()), caps, path_fields)
}

/// `sha256:` over the canonical JSON of everything that defines what will run.
pub fn plan_hash(
    tool: &str,
    component_digest: &str,
    args: &Value,
    principal: &str,
    environment: &str,
) -> String {
    let plan = serde_json::json!({
        "tool": tool,
        "component_digest": component_digest,
        "args": args,
        "principal": principal,
        "environment": environment,
    });
    let canonical = serde_json_canonicalizer::to_string(&plan).unwrap_or_default();
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CAPS: ArgsCaps = ArgsCaps {
        max_bytes: 1024,
        max_depth: 8,
    };

    #[test]
    fn canonical_form_is_stable() {
        let a = from_text(
            r#"{"b": 1, "a": [1.0, "x"], "c": {"z": null, "y": true}}"#,
            CAPS,
            &[],
        )
        .unwrap();
        let b = from_text(r#"{"c":{"y":true,"z":null},"a":[1,"x"],"b":1}"#, CAPS, &[]).unwrap();
        assert_eq!(
            a.canonical,
            r#"{"a":[1,"x"],"b":1,"c":{"y":true,"z":null}}"#
        );
        assert_eq!(a.canonical, b.canonical);
        let h = |v: &Arguments| plan_hash("t", "sha256:c", &v.value, "alice", "dev");
        assert_eq!(h(&a), h(&b));
        assert_ne!(h(&a), plan_hash("t", "sha256:c", &a.value, "bob", "dev"));
        assert_ne!(
            h(&a),
            plan_hash("t", "sha256:other", &a.value, "alice", "dev")
        );
        assert_ne!(h(&a), plan_hash("t", "sha256:c", &a.value, "alice", "prod"));
    }

    #[test]
    fn caps_apply_before_parsing() {
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(
            from_text(&deep, CAPS, &[]).unwrap_err(),
            ArgsError::TooDeep { limit: 8 }
        );
        let big = format!(r#"{{"s": "{}"}}"#, "x".repeat(2000));
        assert!(matches!(
            from_text(&big, CAPS, &[]),
            Err(ArgsError::TooLarge { limit: 1024, .. })
        ));
        // Brackets inside strings do not count.
        assert!(from_text(&format!(r#"{{"s": "{}"}}"#, "[".repeat(100)), CAPS, &[]).is_ok());
        assert_eq!(
            from_text("[1]", CAPS, &[]).unwrap_err(),
            ArgsError::NotAnObject("an array")
        );
        assert!(matches!(
            from_text("{", CAPS, &[]),
            Err(ArgsError::NotJson(_))
        ));
    }

    #[test]
    fn parsed_objects_get_the_same_checks() {
        let mut deep = json!(1);
        for _ in 0..20 {
            deep = json!({ "a": deep });
        }
        let Value::Object(map) = deep else {
            unreachable!()
        };
        assert_eq!(
            from_object(Some(map), CAPS, &[]).unwrap_err(),
            ArgsError::TooDeep { limit: 8 }
        );
        assert_eq!(from_object(None, CAPS, &[]).unwrap().canonical, "{}");
    }

    #[test]
    fn integers_beyond_2_53_are_refused_wherever_they_are() {
        for text in [
            r#"{"n": 9007199254740993}"#,
            r#"{"a": [1, {"b": -9007199254740993}]}"#,
            r#"{"n": 18446744073709551615}"#,
        ] {
            let error = from_text(text, CAPS, &[]).unwrap_err();
            assert!(
                matches!(error, ArgsError::InexactInteger { .. }),
                "{text}: {error}"
            );
            assert!(error.to_string().contains("send it as a string"), "{error}");
        }
        assert!(from_text(r#"{"n": 9007199254740992, "f": 1.5e300}"#, CAPS, &[]).is_ok());
        let error = from_text(r#"{"a": {"b": [0, 9007199254740993]}}"#, CAPS, &[]).unwrap_err();
        assert!(error.to_string().contains("/a/b/1"), "{error}");
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let error =
            from_text(r#"{"path": "ok.txt", "path": ".git/config"}"#, CAPS, &[]).unwrap_err();
        assert!(
            error.to_string().contains("duplicate key `path`"),
            "{error}"
        );
    }

    #[test]
    fn workspace_paths_have_one_spelling() {
        let fields = ["path".to_string()];
        for (given, normal) in [
            ("./.git//config", ".git/config"),
            ("././a/./b/", "a/b"),
            ("", "."),
            (".", "."),
            ("a//b", "a/b"),
        ] {
            let args = from_text(&json!({"path": given}).to_string(), CAPS, &fields).unwrap();
            assert_eq!(args.value["path"], normal, "{given}");
            assert_eq!(args.canonical, json!({"path": normal}).to_string());
        }
        for bad in ["/etc/passwd", "a/../../b", "..", "a/\\u0000b"] {
            let text = format!(r#"{{"path": "{bad}"}}"#);
            let error = from_text(&text, CAPS, &fields).unwrap_err();
            assert!(matches!(error, ArgsError::Path { .. }), "{bad}: {error}");
        }
        // Fields that are not marked are left alone.
        let args = from_text(r#"{"other": "./x"}"#, CAPS, &fields).unwrap();
        assert_eq!(args.value["other"], "./x");
    }
}
