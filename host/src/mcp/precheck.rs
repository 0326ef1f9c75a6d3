//! Checks on a raw JSON-RPC message before anything parses it: size and nesting depth.
//!
//! A message over either cap is answered here, with an error a model can read when it is a
//! `tools/call` (and a JSON-RPC error otherwise), instead of being dropped by the protocol layer
//! or overflowing a parser's recursion limit. The `id` and `method` are found by a tolerant scan
//! that never builds the document.

use serde_json::{Value, json};

use crate::gate::ArgsCaps;
use crate::gate::args::nesting_exceeds;

/// Caps on a whole message, derived from the argument caps.
#[derive(Clone, Copy, Debug)]
pub struct MessageCaps {
    pub max_bytes: usize,
    pub max_depth: usize,
}

impl MessageCaps {
    /// Room for the JSON-RPC envelope around the arguments (`{params:{arguments:…}}`).
    pub fn for_args(args: ArgsCaps) -> Self {
        Self {
            max_bytes: args.max_bytes + 64 * 1024,
            max_depth: args.max_depth + 3,
        }
    }
}

/// The top-level `id` (raw JSON scalar) and `method` of a message, if they can be found in
/// `bytes` (which may be a truncated prefix).
fn scan_envelope(bytes: &[u8]) -> (Option<Value>, Option<String>) {
    let (mut depth, mut i) = (0usize, 0usize);
    let (mut id, mut method) = (None, None);
    let mut key: Option<String> = None;
    let mut expect_key = false;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                let text = bytes.get(start..i.min(bytes.len())).unwrap_or_default();
                if depth == 1 && expect_key {
                    key = std::str::from_utf8(text).ok().map(str::to_string);
                    expect_key = false;
                } else if depth == 1 {
                    let value = std::str::from_utf8(text).ok().map(str::to_string);
                    match key.take().as_deref() {
                        Some("id") => id = value.map(Value::String),
                        Some("method") => method = value,
                        _ => {}
                    }
                }
            }
            b'{' | b'[' => {
                depth += 1;
                expect_key = depth == 1 && bytes[i] == b'{';
                if depth == 2 {
                    key = None;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => expect_key = true,
            b'-' | b'0'..=b'9' if depth == 1 && key.as_deref() == Some("id") => {
                let start = i;
                while i + 1 < bytes.len() && matches!(bytes[i + 1], b'-' | b'0'..=b'9') {
                    i += 1;
                }
                id = std::str::from_utf8(&bytes[start..=i])
                    .ok()
                    .and_then(|n| n.parse::<i64>().ok())
                    .map(Value::from);
                key = None;
            }
            _ => {}
        }
        i += 1;
    }
    (id, method)
}

/// The answer for a message that breaks a cap: a tool error for `tools/call`, a JSON-RPC
/// "invalid request" otherwise; `None` when the message has no id (nothing to answer).
fn refusal(prefix: &[u8], problem: &str) -> Option<String> {
    let (id, method) = scan_envelope(prefix);
    let id = id?;
    let response = if method.as_deref() == Some("tools/call") {
        json!({
            "jsonrpc": "2.0",
            "id": id,
            "result": {
                "content": [{ "type": "text", "text": format!("invalid arguments: {problem}") }],
                "isError": true
            }
        })
    } else {
        json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": { "code": -32600, "message": format!("invalid request: {problem}") }
        })
    };
    Some(response.to_string())
}

/// The JSON-RPC "invalid request" answer for a message with an id that could not be parsed.
pub fn invalid(message: &[u8], problem: &str) -> Option<String> {
    let (id, _) = scan_envelope(message);
    id.map(|id| {
        json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": { "code": -32600, "message": format!("invalid request: {problem}") }
        })
        .to_string()
    })
}

/// Outcome of checking one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the caps: hand it to the protocol layer.
    Pass,
    /// Over a cap: send this response (if any) instead.
    Refuse(Option<String>),
}

/// Checks a complete message.
pub fn check(message: &[u8], caps: MessageCaps) -> Verdict {
    if message.len() > caps.max_bytes {
        return oversized(message, caps);
    }
    if nesting_exceeds(message, caps.max_depth) {
        let problem = format!(
            "the message is nested deeper than {} levels (arguments may nest {})",
            caps.max_depth,
            caps.max_depth - 3
        );
        return Verdict::Refuse(refusal(message, &problem));
    }
    if let Err(duplicate) = crate::ijson::check_unique_keys(message) {
        let problem = format!("the message has a {duplicate}; every key must appear once");
        return Verdict::Refuse(refusal(message, &problem));
    }
    Verdict::Pass
}

/// The verdict for a message known to exceed the byte cap, from its first bytes.
pub fn oversized(prefix: &[u8], caps: MessageCaps) -> Verdict {
    let problem = format!(
        "the message is larger than {} bytes (arguments may be {} bytes)",
        caps.max_bytes,
        caps.max_bytes.saturating_sub(64 * 1024)
    );
    Verdict::Refuse(refusal(&prefix[..prefix.len().min(64 * 1024)], &problem))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: MessageCaps = MessageCaps {
        max_bytes: 200,
        max_depth: 6,
    };

    #[test]
    fn envelope_scan_finds_id_and_method_in_any_order() {
        let m = br#"{"params":{"id":"inner","method":"x"},"method":"tools/call","jsonrpc":"2.0","id":7}"#;
        assert_eq!(
            scan_envelope(m),
            (Some(json!(7)), Some("tools/call".into()))
        );
        let m = br#"{"id":"a\"b","method":"ping"}"#;
        assert_eq!(
            scan_envelope(m),
            (Some(json!("a\\\"b")), Some("ping".into()))
        );
        assert_eq!(scan_envelope(br#"{"method":"notifications/x"}"#).0, None);
    }

    #[test]
    fn deep_tool_calls_get_a_tool_error() {
        let deep = format!(
            r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"t","arguments":{{"a":{}1{}}}}}}}"#,
            "[".repeat(10),
            "]".repeat(10)
        );
        let Verdict::Refuse(Some(response)) = check(deep.as_bytes(), CAPS) else {
            panic!("not refused")
        };
        let v: Value = serde_json::from_str(&response).unwrap();
        assert_eq!(v["id"], 3);
        assert_eq!(v["result"]["isError"], true);
        assert!(
            v["result"]["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("nested deeper")
        );
    }

    #[test]
    fn oversized_other_requests_get_a_protocol_error() {
        let big = format!(
            r#"{{"jsonrpc":"2.0","id":"x","method":"ping","params":{{"p":"{}"}}}}"#,
            "y".repeat(300)
        );
        let Verdict::Refuse(Some(response)) = check(big.as_bytes(), CAPS) else {
            panic!("not refused")
        };
        let v: Value = serde_json::from_str(&response).unwrap();
        assert_eq!(v["error"]["code"], -32600);
        assert_eq!(
            check(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, CAPS),
            Verdict::Pass
        );
    }

    #[test]
    fn duplicate_keys_are_refused_before_parsing() {
        let m = br#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"t","arguments":{"path":"a","path":".git/config"}}}"#;
        let Verdict::Refuse(Some(response)) = check(
            m,
            MessageCaps {
                max_bytes: 4096,
                max_depth: 8,
            },
        ) else {
            panic!("not refused")
        };
        let v: Value = serde_json::from_str(&response).unwrap();
        assert_eq!(v["result"]["isError"], true);
        assert!(
            v["result"]["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("duplicate key `path`")
        );
    }
}
