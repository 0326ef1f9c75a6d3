//! Converting what a guest returned into host values, under the output cap.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::bindings::portcullis::tool::types::{CallResult, Content, ToolError};
use super::{LimitExceeded, RunError, ToolFailureKind};

/// One content item of a result, in MCP's vocabulary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentItem {
    Text {
        text: String,
    },
    Image {
        data: Vec<u8>,
        mime_type: String,
    },
    Audio {
        data: Vec<u8>,
        mime_type: String,
    },
    Resource {
        uri: String,
        mime_type: Option<String>,
        text: Option<String>,
        blob: Option<Vec<u8>>,
    },
}

/// A completed call's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallOutput {
    pub content: Vec<ContentItem>,
    /// Structured output; always a JSON object when present.
    pub structured: Option<Value>,
    /// The tool reports a failure the model should read.
    pub is_error: bool,
}

fn size(item: &Content) -> usize {
    match item {
        Content::Text(text) | Content::Json(text) => text.len(),
        Content::Image(media) | Content::Audio(media) => media.data.len() + media.mime_type.len(),
        Content::Embedded(res) => {
            res.uri.len()
                + res.mime_type.as_ref().map_or(0, String::len)
                + res.text.as_ref().map_or(0, String::len)
                + res.blob.as_ref().map_or(0, Vec::len)
        }
    }
}

/// Checks the size cap, then converts. Structured output must be a JSON object.
pub fn convert(result: CallResult, cap: u64) -> Result<CallOutput, RunError> {
    let total: usize = result.content.iter().map(size).sum::<usize>()
        + result.structured.as_ref().map_or(0, String::len);
    if total as u64 > cap {
        return Err(LimitExceeded::Output {
            limit: cap,
            actual: total as u64,
        }
        .into());
    }
    let structured = match result.structured {
        None => None,
        Some(text) => match serde_json::from_str::<Value>(&text) {
            Ok(value @ Value::Object(_)) => Some(value),
            Ok(_) => return Err(bad_output("structured output is not a JSON object")),
            Err(e) => return Err(bad_output(&format!("structured output is not JSON: {e}"))),
        },
    };
    let content = result
        .content
        .into_iter()
        .map(|item| match item {
            Content::Text(text) | Content::Json(text) => ContentItem::Text { text },
            Content::Image(m) => ContentItem::Image {
                data: m.data,
                mime_type: m.mime_type,
            },
            Content::Audio(m) => ContentItem::Audio {
                data: m.data,
                mime_type: m.mime_type,
            },
            Content::Embedded(r) => ContentItem::Resource {
                uri: r.uri,
                mime_type: r.mime_type,
                text: r.text,
                blob: r.blob,
            },
        })
        .collect();
    Ok(CallOutput {
        content,
        structured,
        is_error: result.is_error,
    })
}

fn bad_output(message: &str) -> RunError {
    RunError::Tool {
        kind: ToolFailureKind::Failed,
        message: format!("the tool returned a malformed result: {message}"),
    }
}

/// The tool's own error, passed on.
pub fn tool_failure(error: ToolError) -> RunError {
    let (kind, message) = match error {
        ToolError::UnknownTool(name) => (
            ToolFailureKind::UnknownTool,
            format!("the component has no tool named `{name}`"),
        ),
        ToolError::InvalidInput(m) => {
            (ToolFailureKind::InvalidInput, format!("invalid input: {m}"))
        }
        ToolError::Failed(m) => (ToolFailureKind::Failed, m),
    };
    RunError::Tool { kind, message }
}

/// Replaces every secret value of the call in what it returns: text, resources, structured
/// output (keys and strings), binary data.
pub fn scrub(output: &mut CallOutput, scrubber: &crate::egress::Scrubber) {
    if scrubber.is_empty() {
        return;
    }
    for item in &mut output.content {
        match item {
            ContentItem::Text { text } => scrubber.text_in_place(text),
            ContentItem::Image { data, .. } | ContentItem::Audio { data, .. } => {
                *data = scrubber.bytes(data);
            }
            ContentItem::Resource {
                uri, text, blob, ..
            } => {
                scrubber.text_in_place(uri);
                if let Some(text) = text {
                    scrubber.text_in_place(text);
                }
                if let Some(blob) = blob {
                    *blob = scrubber.bytes(blob);
                }
            }
        }
    }
    if let Some(value) = &mut output.structured {
        scrub_value(value, scrubber);
    }
}

fn scrub_value(value: &mut Value, scrubber: &crate::egress::Scrubber) {
    match value {
        Value::String(s) => scrubber.text_in_place(s),
        Value::Array(items) => items.iter_mut().for_each(|v| scrub_value(v, scrubber)),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (mut key, mut v) in entries {
                scrubber.text_in_place(&mut key);
                scrub_value(&mut v, scrubber);
                map.insert(key, v);
            }
        }
        _ => {}
    }
}
