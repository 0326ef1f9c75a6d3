//! Checks on a raw JSON-RPC message before anything parses it: size, nesting depth, one JSON
//! value without repeated keys, and one message (an object, not a batch).
//!
//! A message over a cap is answered here, with an error a model can read when it is a
//! `tools/call` (and a JSON-RPC error otherwise), instead of being dropped by the protocol layer
//! or overflowing a parser's recursion limit. The `id` and `method` are found by a tolerant scan
//! that never builds the document. Text that is not JSON gets -32700 and a batch or a non-object
//! -32600, both with `id: null` (JSON-RPC 2.0 §5.1: the id could not be read).

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
    if method.as_deref() != Some("tools/call") {
        return Some(invalid_request(id, problem));
    }
    let response = json!({
        "jsonrpc": "2.0",
        "id": id,
        "result": {
            "content": [{ "type": "text", "text": format!("invalid arguments: {problem}") }],
            "isError": true
        }
    });
    Some(response.to_string())
}

/// JSON-RPC error codes (JSON-RPC 2.0 §5.1).
const PARSE_ERROR: i32 = -32700;
const INVALID_REQUEST: i32 = -32600;

fn error_reply(id: Value, code: i32, message: String) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string()
}

fn invalid_request(id: Value, problem: &str) -> String {
    error_reply(id, INVALID_REQUEST, format!("invalid request: {problem}"))
}

/// The JSON-RPC "invalid request" answer for a JSON object that is not a JSON-RPC message,
/// to its id if one can be read, else to `null`.
pub fn invalid(message: &[u8], problem: &str) -> String {
    let (id, _) = scan_envelope(message);
    invalid_request(id.unwrap_or(Value::Null), problem)
}

/// The top-level `method` of a message, found without parsing it.
pub fn method(message: &[u8]) -> Option<String> {
    scan_envelope(message).1
}

/// Outcome of checking one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the caps: hand it to the protocol layer.
    Pass,
    /// Over a cap: send this response (if any) instead.
    Refuse(Option<String>),
    /// Not one JSON-RPC message (not JSON, a batch, not an object): this JSON-RPC error is the
    /// answer (over HTTP with 400).
    Malformed(String),
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
    match crate::ijson::check(message) {
        Ok(()) => {}
        Err(crate::ijson::Problem::Duplicate(duplicate)) => {
            let problem = format!("the message has a {duplicate}; every key must appear once");
            return Verdict::Refuse(refusal(message, &problem));
        }
        Err(crate::ijson::Problem::Syntax(e)) => {
            let message = format!("parse error: the message is not one JSON value ({e})");
            return Verdict::Malformed(error_reply(Value::Null, PARSE_ERROR, message));
        }
    }
    match message.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Verdict::Pass,
        Some(b'[') => Verdict::Malformed(invalid_request(
            Value::Null,
            "JSON-RPC batches are not supported (MCP has none since 2025-06-18); send one message at a time",
        )),
        _ => Verdict::Malformed(invalid_request(
            Value::Null,
            "a JSON-RPC message is an object",
        )),
    }
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
    fn what_is_not_one_message_gets_a_json_rpc_error_to_null() {
        for (text, code, why) in [
            (&b"not json"[..], -32700, "parse error"),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"ping""#,
                -32700,
                "parse error",
            ),
            (b"", -32700, "parse error"),
            (
                br#"[{"jsonrpc":"2.0","id":2,"method":"ping"}]"#,
                -32600,
                "batches are not supported",
            ),
            (b"[]", -32600, "batches"),
            (b"42", -32600, "is an object"),
        ] {
            let Verdict::Malformed(reply) = check(text, CAPS) else {
                panic!("{:?} passed", String::from_utf8_lossy(text))
            };
            let v: Value = serde_json::from_str(&reply).unwrap();
            assert_eq!(v["id"], Value::Null);
            assert_eq!(v["error"]["code"], code, "{reply}");
            assert!(
                v["error"]["message"].as_str().unwrap().contains(why),
                "{reply}"
            );
        }
        let v: Value = serde_json::from_str(&invalid(br#"{"id":9,"x":1}"#, "no method")).unwrap();
        assert_eq!(
            (v["id"].clone(), v["error"]["code"].clone()),
            (json!(9), json!(-32600))
        );
        let v: Value = serde_json::from_str(&invalid(b"{}", "no method")).unwrap();
        assert_eq!(v["id"], Value::Null);
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
