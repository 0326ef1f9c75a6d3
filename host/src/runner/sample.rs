//! `host.sample`: a running tool asks the client's model for a message (MCP
//! `sampling/createMessage`). Granted per call (`grants.sample`), bounded in number and size,
//! with every granted secret scrubbed from what is sent; the answer is handed back as it came.

use super::ask::Unanswered;
use super::bindings::portcullis::tool::host;
use super::bindings::portcullis::tool::types as wit;
use super::output::{ContentItem, Role, content, role};
use super::state::StoreState;

/// Requests one call may make.
pub const MAX_SAMPLINGS: u32 = 8;
/// Messages in one request.
pub const MAX_SAMPLING_MESSAGES: usize = 64;
/// Bytes of text and media in one request.
pub const MAX_SAMPLING_BYTES: usize = 1024 * 1024;

/// A request for the client's model.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampling {
    /// Each message's role and content (text, image or audio).
    pub messages: Vec<(Role, ContentItem)>,
    pub system_prompt: Option<String>,
    pub max_tokens: u32,
    pub temperature: Option<f64>,
    pub stop_sequences: Vec<String>,
    pub model_hints: Vec<String>,
}

/// What the model answered.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampled {
    pub role: Role,
    pub content: ContentItem,
    pub model: String,
    pub stop_reason: Option<String>,
}

fn size(item: &ContentItem) -> usize {
    match item {
        ContentItem::Text { text } => text.len(),
        ContentItem::Image { data, mime_type } | ContentItem::Audio { data, mime_type } => {
            data.len() + mime_type.len()
        }
        _ => 0,
    }
}

/// The checks of a request, before it goes anywhere.
fn checked(request: host::SamplingRequest) -> Result<Sampling, String> {
    if request.messages.is_empty() {
        return Err("a sampling request needs at least one message".into());
    }
    if request.messages.len() > MAX_SAMPLING_MESSAGES {
        return Err(format!(
            "a sampling request has at most {MAX_SAMPLING_MESSAGES} messages"
        ));
    }
    if request.max_tokens == 0 {
        return Err("max-tokens must be at least 1".into());
    }
    if let Some(t) = request.temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(format!("the temperature must be between 0 and 2, not {t}"));
    }
    let mut messages = Vec::with_capacity(request.messages.len());
    for message in request.messages {
        let item = content(message.content).map_err(|e| e.to_string())?.item;
        if !matches!(
            item,
            ContentItem::Text { .. } | ContentItem::Image { .. } | ContentItem::Audio { .. }
        ) {
            return Err("a sampling message is text, an image or audio".into());
        }
        messages.push((role(message.role), item));
    }
    let bytes = messages.iter().map(|(_, item)| size(item)).sum::<usize>()
        + request.system_prompt.as_ref().map_or(0, String::len)
        + request
            .stop_sequences
            .iter()
            .chain(&request.model_hints)
            .map(String::len)
            .sum::<usize>();
    if bytes > MAX_SAMPLING_BYTES {
        return Err(format!(
            "the sampling request is larger than {MAX_SAMPLING_BYTES} bytes"
        ));
    }
    Ok(Sampling {
        messages,
        system_prompt: request.system_prompt,
        max_tokens: request.max_tokens,
        temperature: request.temperature,
        stop_sequences: request.stop_sequences,
        model_hints: request.model_hints,
    })
}

fn to_wit(answer: Sampled) -> host::SamplingAnswer {
    let kind = match answer.content {
        ContentItem::Image { data, mime_type } => {
            wit::ContentKind::Image(wit::Media { data, mime_type })
        }
        ContentItem::Audio { data, mime_type } => {
            wit::ContentKind::Audio(wit::Media { data, mime_type })
        }
        ContentItem::Text { text } => wit::ContentKind::Text(text),
        _ => wit::ContentKind::Text(String::new()),
    };
    host::SamplingAnswer {
        role: match answer.role {
            Role::User => wit::Role::User,
            Role::Assistant => wit::Role::Assistant,
        },
        content: wit::Content {
            kind,
            annotations: None,
        },
        model: answer.model,
        stop_reason: answer.stop_reason,
    }
}

impl StoreState {
    /// `host.sample`: granted, answerable, within bounds, scrubbed of granted secrets.
    pub(super) async fn sampling(
        &mut self,
        request: host::SamplingRequest,
    ) -> Result<host::SamplingAnswer, Unanswered> {
        if !self.sample {
            return Err("sampling is not granted to this call (grants.sample)".into());
        }
        let Some(ask) = self.notify.as_ref().and_then(|n| n.ask()) else {
            return Err(
                "the client cannot be asked: its transport cannot carry a request to it".into(),
            );
        };
        if self.samplings >= MAX_SAMPLINGS {
            return Err(
                format!("a call may make at most {MAX_SAMPLINGS} sampling requests").into(),
            );
        }
        let mut request = checked(request)?;
        self.samplings += 1;
        let scrubber = &self.capabilities.scrubber;
        for (_, item) in &mut request.messages {
            if let ContentItem::Text { text } = item {
                scrubber.text_in_place(text);
            }
        }
        if let Some(prompt) = &mut request.system_prompt {
            scrubber.text_in_place(prompt);
        }
        ask.sample(request).await.map(to_wit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(messages: Vec<host::SamplingMessage>) -> host::SamplingRequest {
        host::SamplingRequest {
            messages,
            system_prompt: None,
            max_tokens: 100,
            temperature: None,
            stop_sequences: vec![],
            model_hints: vec![],
        }
    }

    fn text(text: &str) -> host::SamplingMessage {
        host::SamplingMessage {
            role: wit::Role::User,
            content: wit::Content {
                kind: wit::ContentKind::Text(text.into()),
                annotations: None,
            },
        }
    }

    #[test]
    fn requests_are_checked_before_they_are_sent() {
        let ok = checked(request(vec![text("hello")])).unwrap();
        assert_eq!(
            ok.messages,
            vec![(
                Role::User,
                ContentItem::Text {
                    text: "hello".into()
                }
            )]
        );
        assert!(
            checked(request(vec![]))
                .unwrap_err()
                .contains("at least one")
        );
        let many = (0..=MAX_SAMPLING_MESSAGES).map(|_| text("x")).collect();
        assert!(checked(request(many)).unwrap_err().contains("at most"));
        let big = "x".repeat(MAX_SAMPLING_BYTES + 1);
        assert!(
            checked(request(vec![text(&big)]))
                .unwrap_err()
                .contains("larger")
        );
        let mut hot = request(vec![text("x")]);
        hot.temperature = Some(5.0);
        assert!(checked(hot).unwrap_err().contains("temperature"));
        let mut none = request(vec![text("x")]);
        none.max_tokens = 0;
        assert!(checked(none).unwrap_err().contains("max-tokens"));
        let link = host::SamplingMessage {
            role: wit::Role::User,
            content: wit::Content {
                kind: wit::ContentKind::Link(wit::ResourceLink {
                    uri: "file:///x".into(),
                    name: "x".into(),
                    title: None,
                    description: None,
                    mime_type: None,
                    size: None,
                }),
                annotations: None,
            },
        };
        assert!(
            checked(request(vec![link]))
                .unwrap_err()
                .contains("text, an image or audio")
        );
    }
}
