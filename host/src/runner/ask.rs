//! The way back to the client while a call runs: notices (progress, logs), questions for its
//! user (`elicit`) and requests to its model (`sample`, in `sample.rs`). The MCP transport provides both, where the request can carry them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::bindings::portcullis::tool::host;
use super::state::{Notice, StoreState};

/// Questions one call may ask.
pub const MAX_ELICITATIONS: u32 = 8;
/// Bytes of message plus schema in one question.
pub const MAX_QUESTION_BYTES: usize = 16 * 1024;

/// Bytes of a URL the user is asked to open.
pub const MAX_URL_BYTES: usize = 2048;

/// A question for the user.
#[derive(Clone, Debug, PartialEq)]
pub enum Elicitation {
    /// A message and the JSON Schema of the answer (MCP's flat subset).
    Form { message: String, schema: Value },
    /// A URL to open outside the client; `id` is the same each time a call asks the same
    /// thing (a rerun of a multi-round-trip request must ask exactly what was answered).
    Url {
        message: String,
        url: String,
        id: String,
    },
}

impl Elicitation {
    /// URL mode (else form mode).
    pub fn is_url(&self) -> bool {
        matches!(self, Self::Url { .. })
    }

    /// The `elicitation/create` parameters that ask it.
    pub fn params(&self) -> Value {
        match self {
            Self::Form { message, schema } => {
                json!({"mode": "form", "message": message, "requestedSchema": schema})
            }
            Self::Url { message, url, id } => {
                json!({"mode": "url", "message": message, "url": url, "elicitationId": id})
            }
        }
    }
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
fn question(message: String, schema: &str) -> Result<(Elicitation, jsonschema::Validator), String> {
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
    let validator =
        jsonschema::validator_for(&schema).map_err(|e| format!("the schema is invalid: {e}"))?;
    Ok((Elicitation::Form { message, schema }, validator))
}

/// The checks of a URL to open: `https`, with a host and without credentials, bounded.
fn url_question(message: String, url: String, index: u32) -> Result<Elicitation, String> {
    if message.len() + url.len() > MAX_QUESTION_BYTES || url.len() > MAX_URL_BYTES {
        return Err(format!(
            "the URL is longer than {MAX_URL_BYTES} bytes, or it and the message than {MAX_QUESTION_BYTES}"
        ));
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("the URL is not a valid absolute URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err("the URL must be https".into());
    }
    let Some(authority) = uri.authority() else {
        return Err("the URL has no host".into());
    };
    if authority.as_str().contains('@') {
        return Err("the URL may not carry credentials (user:password@)".into());
    }
    let digest = Sha256::digest(format!("{index}\n{url}\n{message}"));
    let id = format!("pc-{}", hex::encode(&digest[..12]));
    Ok(Elicitation::Url { message, url, id })
}

impl StoreState {
    /// The way to ask, if this call may ask the user and has not asked too often.
    fn asker(&self) -> Result<Arc<dyn Ask>, Unanswered> {
        if !self.elicit {
            return Err("elicitation is not granted to this call (grants.elicit)".into());
        }
        let Some(ask) = self.notify.as_ref().and_then(|n| n.ask.clone()) else {
            return Err("the client cannot be asked: it did not declare elicitation, or its transport cannot carry a request to it".into());
        };
        if self.elicitations >= MAX_ELICITATIONS {
            return Err(format!("a call may ask at most {MAX_ELICITATIONS} questions").into());
        }
        Ok(ask)
    }

    /// `host.elicit-url`: granted, answerable, within bounds, with no secret in the URL.
    pub(super) async fn elicitation_url(
        &mut self,
        message: String,
        url: String,
    ) -> Result<host::ElicitAction, Unanswered> {
        let ask = self.asker()?;
        if self.capabilities.scrubber.finds(&url) {
            return Err("the URL contains a secret granted to this call".into());
        }
        let mut message = message;
        self.capabilities.scrubber.text_in_place(&mut message);
        let question = url_question(message, url, self.elicitations)?;
        self.elicitations += 1;
        let answer = ask.elicit(question).await?;
        Ok(action(answer.action))
    }
}

fn action(action: ElicitAction) -> host::ElicitAction {
    match action {
        ElicitAction::Accept => host::ElicitAction::Accept,
        ElicitAction::Decline => host::ElicitAction::Decline,
        ElicitAction::Cancel => host::ElicitAction::Cancel,
    }
}

impl StoreState {
    /// `host.elicit`: granted, answerable, within bounds, its answer checked against its schema.
    pub(super) async fn elicitation(
        &mut self,
        message: String,
        schema: String,
    ) -> Result<host::ElicitAnswer, Unanswered> {
        let ask = self.asker()?;
        let mut message = message;
        self.capabilities.scrubber.text_in_place(&mut message);
        let (question, validator) = question(message, &schema)?;
        self.elicitations += 1;
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
        Ok(host::ElicitAnswer {
            action: action(answer.action),
            content,
        })
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

    #[test]
    fn urls_to_open_are_https_without_credentials_and_asked_the_same_each_time() {
        let ask = |url: &str| url_question("Sign in".into(), url.into(), 0);
        let first = ask("https://idp.example/authorize?state=1").unwrap();
        assert_eq!(first, ask("https://idp.example/authorize?state=1").unwrap());
        assert_ne!(first, ask("https://idp.example/authorize?state=2").unwrap());
        assert_eq!(first.params()["mode"], "url");
        assert!(ask("http://idp.example/").unwrap_err().contains("https"));
        assert!(ask("javascript:alert(1)").is_err());
        assert!(ask("/relative").is_err());
        assert!(
            ask("https://user:pw@idp.example/")
                .unwrap_err()
                .contains("credentials")
        );
        let long = format!("https://idp.example/{}", "a".repeat(MAX_URL_BYTES));
        assert!(ask(&long).unwrap_err().contains("longer"));
    }
}
