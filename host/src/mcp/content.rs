//! The gateway's content, resource contents and prompt messages in rmcp's types.

use base64::Engine as _;
use rmcp::model::{self, ContentBlock, ResourceContents};

use crate::runner::{Content, ContentAnnotations, ContentItem, PromptMessage, ResourceBody, Role};

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn role(role: Role) -> model::Role {
    match role {
        Role::User => model::Role::User,
        Role::Assistant => model::Role::Assistant,
    }
}

fn annotations(a: &ContentAnnotations) -> model::Annotations {
    let mut out = model::Annotations::default();
    if !a.audience.is_empty() {
        out.audience = Some(a.audience.iter().copied().map(role).collect());
    }
    out.priority = a.priority.map(|p| p as f32);
    out.last_modified = a.last_modified.clone();
    out
}

/// A resource's contents, text or base64 blob.
pub fn contents(body: &ResourceBody) -> ResourceContents {
    let contents = match (&body.text, &body.blob) {
        (Some(text), _) => ResourceContents::text(text.clone(), body.uri.clone()),
        (None, Some(blob)) => ResourceContents::blob(b64(blob), body.uri.clone()),
        (None, None) => ResourceContents::text(String::new(), body.uri.clone()),
    };
    match (&body.mime_type, contents) {
        (Some(mime), contents) => contents.with_mime_type(mime.clone()),
        // `ResourceContents::text` assumes text/plain; the component said nothing.
        (
            None,
            ResourceContents::TextResourceContents {
                uri, text, meta, ..
            },
        ) => ResourceContents::TextResourceContents {
            uri,
            mime_type: None,
            text,
            meta,
        },
        (None, contents) => contents,
    }
}

/// One content item with its annotations.
pub fn block(content: &Content) -> ContentBlock {
    let mut block = match &content.item {
        ContentItem::Text { text } => ContentBlock::text(text.clone()),
        ContentItem::Image { data, mime_type } => ContentBlock::image(b64(data), mime_type.clone()),
        ContentItem::Audio { data, mime_type } => ContentBlock::audio(b64(data), mime_type.clone()),
        ContentItem::Resource(body) => ContentBlock::resource(contents(body)),
        ContentItem::ResourceLink(link) => {
            let mut resource = model::Resource::new(link.uri.clone(), link.name.clone());
            resource.title = link.title.clone();
            resource.description = link.description.clone();
            resource.mime_type = link.mime_type.clone();
            resource.size = link.size;
            ContentBlock::resource_link(resource)
        }
    };
    if let Some(a) = &content.annotations {
        let slot = match &mut block {
            ContentBlock::Text(c) => &mut c.annotations,
            ContentBlock::Image(c) => &mut c.annotations,
            ContentBlock::Audio(c) => &mut c.annotations,
            ContentBlock::Resource(c) => &mut c.annotations,
            ContentBlock::ResourceLink(c) => &mut c.annotations,
            _ => return block,
        };
        *slot = Some(annotations(a));
    }
    block
}

/// One message of a prompt.
pub fn message(message: &PromptMessage) -> model::PromptMessage {
    model::PromptMessage::new(role(message.role), block(&message.content))
}
