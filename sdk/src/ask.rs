//! Asking the client while a call runs: its user ([`elicit`], [`elicit_form`], [`elicit_url`])
//! and its model ([`sample`]).

use schemars::JsonSchema;
use serde_json::{Map, Value};

use crate::bindings::portcullis::tool::host;
use crate::bindings::portcullis::tool::types as wit;
use crate::{Content, Error, Role, schema_for};

/// What the user did with a question ([`elicit`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Elicited<T> {
    /// The user answered.
    Accepted(T),
    /// The user said no.
    Declined,
    /// The user dismissed the question.
    Cancelled,
}

/// Asks the user, through the client, for a `T`: a struct of strings, numbers, booleans and
/// enums (MCP's elicitation subset; its derived schema is the form the client shows).
///
/// Works only when the call's decision grants it (`grants.elicit`) and the client declared
/// elicitation; otherwise it fails with the reason. A client before MCP 2026-07-28 is asked
/// while the call waits (stdio, or streamable HTTP with a session), and the wait counts
/// against the call's time limit. A 2026-07-28 client is asked between rounds: the call ends
/// at the question and runs again, from the start, with the answer, so do work with effects
/// after asking, not before. The answer comes from the user: check it as you would any input.
pub fn elicit<T: serde::de::DeserializeOwned + JsonSchema>(
    message: &str,
) -> Result<Elicited<T>, Error> {
    let schema = schema_for::<T>();
    match elicit_form(message, schema.as_value())? {
        Elicited::Accepted(content) => serde_json::from_value(Value::Object(content))
            .map(Elicited::Accepted)
            .map_err(|e| Error::failed(format!("the answer does not fit: {e}"))),
        Elicited::Declined => Ok(Elicited::Declined),
        Elicited::Cancelled => Ok(Elicited::Cancelled),
    }
}

/// [`elicit`] with a schema written by hand (defaults, titled enums, multi-select): the
/// gateway checks it is MCP's flat subset, and the answer against it, before you see it.
pub fn elicit_form(message: &str, schema: &Value) -> Result<Elicited<Map<String, Value>>, Error> {
    let answer = host::elicit(message, &schema.to_string()).map_err(Error::Failed)?;
    match answer.action {
        host::ElicitAction::Accept => {
            let content = answer.content.unwrap_or_else(|| "{}".into());
            serde_json::from_str(&content)
                .map(Elicited::Accepted)
                .map_err(|e| Error::failed(format!("the answer is not a JSON object: {e}")))
        }
        host::ElicitAction::Decline => Ok(Elicited::Declined),
        host::ElicitAction::Cancel => Ok(Elicited::Cancelled),
    }
}

/// Asks the user, through the client, to open `url` (an `https` address) for what must not
/// pass through the client or the gateway: a sign-in, a payment, a consent (MCP URL-mode
/// elicitation). `Accepted(())` says the user agreed to open it, not that they finished
/// there: learn the outcome from the service itself (poll it, or ask again).
///
/// Granted like [`elicit`] (`grants.elicit`), for clients that declared URL elicitation, and
/// asked the same ways. The gateway refuses a URL that is not `https`, carries
/// `user:password@`, or contains a secret granted to the call.
pub fn elicit_url(message: &str, url: &str) -> Result<Elicited<()>, Error> {
    match host::elicit_url(message, url).map_err(Error::Failed)? {
        host::ElicitAction::Accept => Ok(Elicited::Accepted(())),
        host::ElicitAction::Decline => Ok(Elicited::Declined),
        host::ElicitAction::Cancel => Ok(Elicited::Cancelled),
    }
}

/// A request for the client's model ([`sample`]): messages of text, images or audio.
#[derive(Clone, Debug)]
pub struct Sampling {
    messages: Vec<(Role, Content)>,
    system_prompt: Option<String>,
    max_tokens: u32,
    temperature: Option<f64>,
    stop_sequences: Vec<String>,
    model_hints: Vec<String>,
}

impl Sampling {
    /// One user message of text, answered in at most `max_tokens` tokens.
    pub fn ask(text: impl Into<String>, max_tokens: u32) -> Self {
        Self {
            messages: vec![(Role::User, Content::Text(text.into()))],
            system_prompt: None,
            max_tokens,
            temperature: None,
            stop_sequences: Vec::new(),
            model_hints: Vec::new(),
        }
    }

    /// Another message (text, an image or audio).
    pub fn then(mut self, role: Role, content: Content) -> Self {
        self.messages.push((role, content));
        self
    }

    /// The system prompt.
    pub fn system(mut self, prompt: impl Into<String>) -> Self {
        self.system_prompt = Some(prompt.into());
        self
    }

    /// Sampling temperature (0 to 2).
    pub fn temperature(mut self, temperature: f64) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// A sequence that ends the answer.
    pub fn stop_at(mut self, sequence: impl Into<String>) -> Self {
        self.stop_sequences.push(sequence.into());
        self
    }

    /// A model the tool would prefer (a hint: the client decides).
    pub fn prefer(mut self, model: impl Into<String>) -> Self {
        self.model_hints.push(model.into());
        self
    }
}

/// What the client's model answered.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampled {
    /// Who spoke (the assistant, normally).
    pub role: Role,
    /// Text, an image or audio.
    pub content: Content,
    /// The model, as the client names it.
    pub model: String,
    /// Why it stopped (`endTurn`, `stopSequence`, `maxTokens`, …).
    pub stop_reason: Option<String>,
}

impl Sampled {
    /// The answer's text, if it is text.
    pub fn text(&self) -> Option<&str> {
        match &self.content {
            Content::Text(text) => Some(text),
            _ => None,
        }
    }
}

/// Asks the client's model for a message (MCP sampling).
///
/// Works only when the call's decision grants it (`grants.sample`) and the client declared
/// sampling; otherwise it fails with the reason. As with [`elicit`], a 2026-07-28 client is
/// asked between rounds and the call runs again with the answer. The client and its user may
/// change or refuse the request. A wait counts against the call's time limit. The answer is the model's: check it as you would any input.
pub fn sample(request: Sampling) -> Result<Sampled, Error> {
    let messages = request
        .messages
        .into_iter()
        .map(|(role, content)| host::SamplingMessage {
            role: crate::__private::role(role),
            content: crate::__private::content(content),
        })
        .collect();
    let answer = host::sample(&host::SamplingRequest {
        messages,
        system_prompt: request.system_prompt,
        max_tokens: request.max_tokens,
        temperature: request.temperature,
        stop_sequences: request.stop_sequences,
        model_hints: request.model_hints,
    })
    .map_err(Error::Failed)?;
    let content = match answer.content.kind {
        wit::ContentKind::Image(m) => Content::Image {
            data: m.data,
            mime_type: m.mime_type,
        },
        wit::ContentKind::Audio(m) => Content::Audio {
            data: m.data,
            mime_type: m.mime_type,
        },
        wit::ContentKind::Text(text) | wit::ContentKind::Json(text) => Content::Text(text),
        _ => {
            return Err(Error::failed(
                "the model's answer is not text, an image or audio",
            ));
        }
    };
    Ok(Sampled {
        role: match answer.role {
            wit::Role::User => Role::User,
            wit::Role::Assistant => Role::Assistant,
        },
        content,
        model: answer.model,
        stop_reason: answer.stop_reason,
    })
}
