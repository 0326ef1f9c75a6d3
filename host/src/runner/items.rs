//! What a resource read, a prompt and a completion return, converted under the output cap.

use serde::Serialize;

use super::bindings::portcullis::tool::types as wit;
use super::output::{self, Content, ResourceBody, Role, bad_output, within};
use super::{CallOutput, RunError, ToolFailureKind};
use crate::egress::Scrubber;

/// Most suggestions a completion may carry (MCP's own bound).
pub const MAX_COMPLETIONS: usize = 100;

/// What a component answered.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Answer {
    Call(CallOutput),
    Read(ReadOutput),
    Get(PromptOutput),
    Complete(CompletionOutput),
}

impl Answer {
    /// Replaces every secret value of the call in the answer.
    pub fn scrub(&mut self, scrubber: &Scrubber) {
        if scrubber.is_empty() {
            return;
        }
        match self {
            Self::Call(call) => output::scrub(call, scrubber),
            Self::Read(read) => read
                .contents
                .iter_mut()
                .for_each(|body| output::scrub_body(body, scrubber)),
            Self::Get(prompt) => {
                if let Some(text) = &mut prompt.description {
                    scrubber.text_in_place(text);
                }
                for message in &mut prompt.messages {
                    output::scrub_content(&mut message.content, scrubber);
                }
            }
            Self::Complete(done) => done
                .values
                .iter_mut()
                .for_each(|v| scrubber.text_in_place(v)),
        }
    }
}

/// The contents of a resource read.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReadOutput {
    pub contents: Vec<ResourceBody>,
}

impl ReadOutput {
    /// At least one item, each with exactly one of text and blob.
    pub(super) fn convert(
        uri: &str,
        contents: Vec<wit::EmbeddedResource>,
        cap: u64,
    ) -> Result<Self, RunError> {
        within(contents.iter().map(output::body_size).sum(), cap)?;
        if contents.is_empty() {
            return Err(bad_output(&format!(
                "the read of `{uri}` returned no contents"
            )));
        }
        let contents = contents
            .into_iter()
            .map(output::body)
            .collect::<Result<_, _>>()?;
        Ok(Self { contents })
    }
}

/// One message of a prompt.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PromptMessage {
    pub role: Role,
    pub content: Content,
}

/// A prompt's messages.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PromptOutput {
    pub description: Option<String>,
    pub messages: Vec<PromptMessage>,
}

impl PromptOutput {
    pub(super) fn convert(result: wit::PromptResult, cap: u64) -> Result<Self, RunError> {
        let total = result.description.as_ref().map_or(0, String::len)
            + result
                .messages
                .iter()
                .map(|m| output::size(&m.content))
                .sum::<usize>();
        within(total, cap)?;
        let messages = result
            .messages
            .into_iter()
            .map(|m| {
                Ok(PromptMessage {
                    role: output::role(m.role),
                    content: output::content(m.content)?,
                })
            })
            .collect::<Result<_, RunError>>()?;
        Ok(Self {
            description: result.description,
            messages,
        })
    }
}

/// Suggested values for an argument.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CompletionOutput {
    pub values: Vec<String>,
    pub total: Option<u32>,
    pub has_more: bool,
}

impl CompletionOutput {
    pub(super) fn convert(done: wit::Completion, cap: u64) -> Result<Self, RunError> {
        within(done.values.iter().map(String::len).sum(), cap)?;
        if done.values.len() > MAX_COMPLETIONS {
            return Err(bad_output(&format!(
                "a completion carries at most {MAX_COMPLETIONS} values, not {}",
                done.values.len()
            )));
        }
        Ok(Self {
            values: done.values,
            total: done.total,
            has_more: done.has_more,
        })
    }
}

/// The component's refusal of a read.
pub(super) fn read_failure(error: wit::ReadError) -> RunError {
    match error {
        wit::ReadError::NotFound(uri) => RunError::Tool {
            kind: ToolFailureKind::UnknownTool,
            message: format!("the component has no resource `{uri}`"),
        },
        wit::ReadError::Failed(message) => RunError::Tool {
            kind: ToolFailureKind::Failed,
            message,
        },
    }
}

/// The component's refusal of a prompt.
pub(super) fn prompt_failure(error: wit::PromptError) -> RunError {
    let (kind, message) = match error {
        wit::PromptError::UnknownPrompt(name) => (
            ToolFailureKind::UnknownTool,
            format!("the component has no prompt named `{name}`"),
        ),
        wit::PromptError::InvalidArguments(m) => (
            ToolFailureKind::InvalidInput,
            format!("invalid arguments: {m}"),
        ),
        wit::PromptError::Failed(m) => (ToolFailureKind::Failed, m),
    };
    RunError::Tool { kind, message }
}
