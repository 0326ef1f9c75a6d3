//! The way back to the client while a call runs: notices (progress, logs), questions for its
//! user (`elicit`) and requests to its model (`sample`, in `sample.rs`). The MCP transport provides both, where the request can carry them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::bindings::portcullis::tool::host;
use super::state::{Notice, StoreState};

/// Questions one call may ask.
pub const MAX_ELICITATIONS: u32 = 8;
/// Bytes of message plus schema in one question.
pub const MAX_QUESTION_BYTES: usize = 16 * 1024;

/// A question for the user: a message and the JSON Schema of the answer (MCP's flat subset).
#[derive(Clone, Debug, PartialEq)]
pub struct Elicitation {
    pub message: String,
    pub schema: Value,
}

/// What the user did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElicitAction {
    Accept,
    Decline,
    Cancel,
}

/// The user's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct ElicitAnswer {
    pub action: ElicitAction,
    pub content: Option<Map<String, Value>>,
}

/// Why a question got no answer in this run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unanswered {
    /// It will get none: the reason goes back to the tool.
    Refused(String),
    /// The client answers it in a later round (a multi-round-trip request): this run stops
    /// here, and the call runs again with the answer.
    Later,
}

impl From<String> for Unanswered {
    fn from(reason: String) -> Self {
        Self::Refused(reason)
    }
}

impl From<&str> for Unanswered {
    fn from(reason: &str) -> Self {
        Self::Refused(reason.to_string())
    }
}

/// The trap that stops a run at a question answered in a later round.
#[derive(Debug, thiserror::Error)]
#[error("the call waits for the client's answer to {0}")]
pub struct Deferred(pub String);

/// The future of an answer from the client.
pub type Asking<T> = Pin<Box<dyn Future<Output = Result<T, Unanswered>> + Send>>;
/// The future of the user's answer.
pub type Answering = Asking<ElicitAnswer>;

/// Someone who can put a question to the client's user, or a request to its model.
pub trait Ask: Send + Sync {
    fn elicit(&self, question: Elicitation) -> Answering;
    fn sample(&self, request: super::sample::Sampling) -> Asking<super::sample::Sampled>;
}

/// Where a call's notices go and who answers its questions.
#[derive(Clone, Default)]
pub struct Notify {
    notices: Option<Arc<dyn Fn(Notice) + Send + Sync>>,
    ask: Option<Arc<dyn Ask>>,
}

impl Notify {
    /// Notices go to `send`.
    pub fn notices(send: impl Fn(Notice) + Send + Sync + 'static) -> Self {
        Self {
            notices: Some(Arc::new(send)),
            ask: None,
        }
    }

    /// The same, with questions going to `ask`.
    pub fn with_ask(mut self, ask: Arc<dyn Ask>) -> Self {
        self.ask = Some(ask);
        self
    }

    pub(super) fn send(&self, notice: Notice) -> bool {
        match &self.notices {
            Some(send) => {
                send(notice);
                true
            }
            None => false,
        }
    }

    pub(super) fn wants_notices(&self) -> bool {
        self.notices.is_some()
    }

    pub(super) fn ask(&self) -> Option<Arc<dyn Ask>> {
        self.ask.clone()
    }
}

/// The checks of a question, before it goes anywhere.
fn question(message: String, schema: &str) -> Result<Elicitation, String> {
    if message.len() + schema.len() > MAX_QUESTION_BYTES {
        return Err(format!(
            "the question is larger than {MAX_QUESTION_BYTES} bytes (message and schema)"
        ));
    }
    let schema: Value =
        serde_json::from_str(schema).map_err(|e| format!("the schema is not JSON: {e}"))?;
    // MCP's subset: an object of primitive properties; rmcp's type says exactly that.
    serde_json::from_value::<rmcp::model::ElicitationSchema>(schema.clone()).map_err(|e| {
        format!("the schema is not an elicitation schema (an object of primitive properties): {e}")
    })?;
    jsonschema::validator_for(&schema).map_err(|e| format!("the schema is invalid: {e}"))?;
    Ok(Elicitation { message, schema })
}

impl StoreState {
    /// `host.elicit`: granted, answerable, within bounds, its answer checked against its schema.
    pub(super) async fn elicitation(
        &mut self,
        message: String,
        schema: String,
    ) -> Result<host::ElicitAnswer, Unanswered> {
        if !self.elicit {
            return Err("elicitation is not granted to this call (grants.elicit)".into());
        }
        let Some(ask) = self.notify.as_ref().and_then(|n| n.ask.clone()) else {
            return Err("the client cannot be asked: it did not declare elicitation, or its transport cannot carry a request to it".into());
        };
        if self.elicitations >= MAX_ELICITATIONS {
            return Err(format!("a call may ask at most {MAX_ELICITATIONS} questions").into());
        }
        let mut message = message;
        self.capabilities.scrubber.text_in_place(&mut message);
        let question = question(message, &schema)?;
        self.elicitations += 1;
        let validator = jsonschema::validator_for(&question.schema).map_err(|e| e.to_string())?;
        let answer = ask.elicit(question).await?;
        let content = match (answer.action, answer.content) {
            (ElicitAction::Accept, Some(content)) => {
                let value = Value::Object(content);
                if let Some(problem) = validator.iter_errors(&value).next() {
                    return Err(format!(
                        "the answer does not match the schema: {}",
                        problem.masked()
                    )
                    .into());
                }
                Some(value.to_string())
            }
            (ElicitAction::Accept, None) => {
                return Err("the user accepted but the client sent no content".into());
            }
            _ => None,
        };
        let action = match answer.action {
            ElicitAction::Accept => host::ElicitAction::Accept,
            ElicitAction::Decline => host::ElicitAction::Decline,
            ElicitAction::Cancel => host::ElicitAction::Cancel,
        };
        Ok(host::ElicitAnswer { action, content })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_are_checked_before_they_are_asked() {
        let flat =
            r#"{"type":"object","properties":{"name":{"type":"string"}},"required":["name"]}"#;
        assert!(question("Who?".into(), flat).is_ok());
        let nested = r#"{"type":"object","properties":{"a":{"type":"object","properties":{}}}}"#;
        assert!(
            question("?".into(), nested)
                .unwrap_err()
                .contains("elicitation schema")
        );
        assert!(question("?".into(), "[]").is_err());
        assert!(
            question("?".into(), "nope")
                .unwrap_err()
                .contains("not JSON")
        );
        let big = "x".repeat(MAX_QUESTION_BYTES);
        assert!(question(big, flat).unwrap_err().contains("larger"));
    }
}
