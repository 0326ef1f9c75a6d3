//! Converting what a guest returned into host values, under the output cap.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::bindings::portcullis::tool::types as wit;
use super::bindings::portcullis::tool::types::{CallResult, ContentKind, ToolError};
use super::{LimitExceeded, RunError, ToolFailureKind};
use crate::egress::Scrubber;

/// A resource's contents: exactly one of `text` and `blob`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceBody {
    pub uri: String,
    pub mime_type: Option<String>,
    pub text: Option<String>,
    pub blob: Option<Vec<u8>>,
}

/// A pointer to a resource the client may read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceLink {
    pub uri: String,
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub mime_type: Option<String>,
    pub size: Option<u64>,
}

/// One content item of a result, in MCP's vocabulary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentItem {
    Text { text: String },
    Image { data: Vec<u8>, mime_type: String },
    Audio { data: Vec<u8>, mime_type: String },
    Resource(ResourceBody),
    ResourceLink(ResourceLink),
}

/// Who a message or an item is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// MCP's content annotations.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Annotations {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audience: Vec<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

/// One content item with its annotations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Content {
    #[serde(flatten)]
    pub item: ContentItem,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Annotations>,
}

impl Content {
    /// A plain text item.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            item: ContentItem::Text { text: text.into() },
            annotations: None,
        }
    }
}

/// A completed call's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallOutput {
    pub content: Vec<Content>,
    /// Structured output; always a JSON object when present.
    pub structured: Option<Value>,
    /// The tool reports a failure the model should read.
    pub is_error: bool,
}

fn opt(text: &Option<String>) -> usize {
    text.as_ref().map_or(0, String::len)
}

pub(super) fn body_size(res: &wit::EmbeddedResource) -> usize {
    res.uri.len() + opt(&res.mime_type) + opt(&res.text) + res.blob.as_ref().map_or(0, Vec::len)
}

/// Bytes of one item, for the output cap.
pub(super) fn size(item: &wit::Content) -> usize {
    let kind = match &item.kind {
        ContentKind::Text(text) | ContentKind::Json(text) => text.len(),
        ContentKind::Image(media) | ContentKind::Audio(media) => {
            media.data.len() + media.mime_type.len()
        }
        ContentKind::Embedded(res) => body_size(res),
        ContentKind::Link(link) => {
            link.uri.len()
                + link.name.len()
                + opt(&link.title)
                + opt(&link.description)
                + opt(&link.mime_type)
        }
    };
    let notes = item
        .annotations
        .as_ref()
        .map_or(0, |a| opt(&a.last_modified));
    kind + notes
}

/// The output cap, checked.
pub(super) fn within(total: usize, cap: u64) -> Result<(), RunError> {
    if total as u64 > cap {
        return Err(LimitExceeded::Output {
            limit: cap,
            actual: total as u64,
        }
        .into());
    }
    Ok(())
}

/// Checks the size cap, then converts. Structured output must be a JSON object.
pub fn convert(result: CallResult, cap: u64) -> Result<CallOutput, RunError> {
    let total: usize = result.content.iter().map(size).sum::<usize>() + opt(&result.structured);
    within(total, cap)?;
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
        .map(content)
        .collect::<Result<_, _>>()?;
    Ok(CallOutput {
        content,
        structured,
        is_error: result.is_error,
    })
}

pub(super) fn body(r: wit::EmbeddedResource) -> Result<ResourceBody, RunError> {
    if r.text.is_some() == r.blob.is_some() {
        return Err(bad_output(&format!(
            "resource `{}` must have exactly one of text and blob",
            r.uri
        )));
    }
    Ok(ResourceBody {
        uri: r.uri,
        mime_type: r.mime_type,
        text: r.text,
        blob: r.blob,
    })
}

pub(super) fn role(role: wit::Role) -> Role {
    match role {
        wit::Role::User => Role::User,
        wit::Role::Assistant => Role::Assistant,
    }
}

/// One item, converted; annotations are checked (a priority is between 0 and 1).
pub(super) fn content(item: wit::Content) -> Result<Content, RunError> {
    let annotations = match item.annotations {
        None => None,
        Some(a) => {
            if let Some(p) = a.priority
                && !(0.0..=1.0).contains(&p)
            {
                return Err(bad_output(&format!(
                    "a content priority must be between 0 and 1, not {p}"
                )));
            }
            Some(Annotations {
                audience: a.audience.into_iter().map(role).collect(),
                priority: a.priority,
                last_modified: a.last_modified,
            })
        }
    };
    let item = match item.kind {
        ContentKind::Text(text) | ContentKind::Json(text) => ContentItem::Text { text },
        ContentKind::Image(m) => ContentItem::Image {
            data: m.data,
            mime_type: m.mime_type,
        },
        ContentKind::Audio(m) => ContentItem::Audio {
            data: m.data,
            mime_type: m.mime_type,
        },
        ContentKind::Embedded(r) => ContentItem::Resource(body(r)?),
        ContentKind::Link(l) => ContentItem::ResourceLink(ResourceLink {
            uri: l.uri,
            name: l.name,
            title: l.title,
            description: l.description,
            mime_type: l.mime_type,
            size: l.size,
        }),
    };
    Ok(Content { item, annotations })
}

pub(super) fn bad_output(message: &str) -> RunError {
    RunError::Tool {
        kind: ToolFailureKind::Failed,
        message: format!("the component returned a malformed result: {message}"),
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

/// Replaces every secret value of the call in a resource's contents.
pub(super) fn scrub_body(body: &mut ResourceBody, scrubber: &Scrubber) {
    scrubber.text_in_place(&mut body.uri);
    if let Some(text) = &mut body.text {
        scrubber.text_in_place(text);
    }
    if let Some(blob) = &mut body.blob {
        *blob = scrubber.bytes(blob);
    }
}

/// Replaces every secret value of the call in one item.
pub(super) fn scrub_content(content: &mut Content, scrubber: &Scrubber) {
    match &mut content.item {
        ContentItem::Text { text } => scrubber.text_in_place(text),
        ContentItem::Image { data, .. } | ContentItem::Audio { data, .. } => {
            *data = scrubber.bytes(data);
        }
        ContentItem::Resource(body) => scrub_body(body, scrubber),
        ContentItem::ResourceLink(link) => {
            for text in [&mut link.uri, &mut link.name] {
                scrubber.text_in_place(text);
            }
            for text in [&mut link.title, &mut link.description]
                .into_iter()
                .flatten()
            {
                scrubber.text_in_place(text);
            }
        }
    }
}

/// Replaces every secret value of the call in what it returns: text, resources, structured
/// output (keys and strings), binary data.
pub fn scrub(output: &mut CallOutput, scrubber: &Scrubber) {
    if scrubber.is_empty() {
        return;
    }
    for item in &mut output.content {
        scrub_content(item, scrubber);
    }
    if let Some(value) = &mut output.structured {
        scrub_value(value, scrubber);
    }
}

fn scrub_value(value: &mut Value, scrubber: &Scrubber) {
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
