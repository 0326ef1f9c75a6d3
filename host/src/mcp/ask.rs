//! Questions from a running tool to the client's user (`elicit`) and requests to its model
//! (`sample`), as classic server → client `elicitation/create` and `sampling/createMessage`
//! requests: on a session (stdio, or streamable HTTP with a session id) of
//! a client before MCP 2026-07-28 that declared elicitation (form or URL mode) or sampling. A stateless
//! request of an older client cannot carry a request to the client: there a tool's `elicit` or
//! `sample` fails with the reason. 2026-07-28 clients are asked with multi-round-trip results
//! instead (`rounds.rs`).

use std::sync::Arc;

use rmcp::model::{ClientCapabilities, ElicitRequestParams};
use rmcp::{Peer, RoleServer};
use serde_json::{Value, json};

use crate::runner::{
    Answering, Ask, Asking, ContentItem, ElicitAction, ElicitAnswer, Elicitation, Notify, Role,
    Sampled, Sampling,
};

/// What a client declared it can be asked.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Declared {
    form: bool,
    url: bool,
    pub sample: bool,
}

impl Declared {
    pub fn of(caps: &ClientCapabilities) -> Self {
        let (form, url) = match &caps.elicitation {
            None => (false, false),
            // Declared with neither mode: form, as before modes existed.
            Some(e) => (e.form.is_some() || e.url.is_none(), e.url.is_some()),
        };
        Self {
            form,
            url,
            sample: caps.sampling.is_some(),
        }
    }

    /// Whether `question` may be put to this client; the reason if not.
    pub fn elicit(&self, question: &Elicitation) -> Result<(), String> {
        match question.is_url() {
            true if !self.url => Err("the client did not declare URL elicitation".into()),
            false if !self.form => Err("the client did not declare form elicitation".into()),
            _ => Ok(()),
        }
    }

    fn any(&self) -> bool {
        self.form || self.url || self.sample
    }
}

/// Asks through the session's peer, for what its client declared.
struct PeerAsk {
    peer: Peer<RoleServer>,
    declared: Declared,
}

impl Ask for PeerAsk {
    fn elicit(&self, question: Elicitation) -> Answering {
        let peer = self.peer.clone();
        let declared = self.declared.elicit(&question);
        Box::pin(async move {
            declared?;
            let params: ElicitRequestParams = serde_json::from_value(question.params())
                .map_err(|e| format!("the question cannot be sent: {e}"))?;
            let result = peer
                .create_elicitation(params)
                .await
                .map_err(|e| format!("the client did not answer: {e}"))?;
            let result = serde_json::to_value(result).map_err(|e| e.to_string())?;
            Ok(elicit_answer(result)?)
        })
    }

    fn sample(&self, request: Sampling) -> Asking<Sampled> {
        let peer = self.peer.clone();
        let declared = self.declared.sample;
        Box::pin(async move {
            if !declared {
                return Err("the client did not declare sampling".into());
            }
            let params = serde_json::from_value(sampling_params(request))
                .map_err(|e| format!("the request cannot be sent: {e}"))?;
            let result = peer
                .create_message(params)
                .await
                .map_err(|e| format!("the client did not answer: {e}"))?;
            let result = serde_json::to_value(result).map_err(|e| e.to_string())?;
            Ok(sampled(&result)?)
        })
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

/// MCP content for a sampling message (text, image or audio: checked by the runner).
fn sampling_content(item: ContentItem) -> Value {
    use base64::Engine as _;
    let b64 = |data: &[u8]| base64::engine::general_purpose::STANDARD.encode(data);
    match item {
        ContentItem::Image { data, mime_type } => {
            json!({"type": "image", "data": b64(&data), "mimeType": mime_type})
        }
        ContentItem::Audio { data, mime_type } => {
            json!({"type": "audio", "data": b64(&data), "mimeType": mime_type})
        }
        ContentItem::Text { text } => json!({"type": "text", "text": text}),
        _ => json!({"type": "text", "text": ""}),
    }
}

/// The user's answer, from an `ElicitResult`.
pub(super) fn elicit_answer(result: Value) -> Result<ElicitAnswer, String> {
    let action = match result.get("action").and_then(Value::as_str) {
        Some("accept") => ElicitAction::Accept,
        Some("decline") => ElicitAction::Decline,
        Some("cancel") => ElicitAction::Cancel,
        _ => return Err("the client's answer has no action (accept, decline or cancel)".into()),
    };
    let content = match result.get("content") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map.clone()),
        Some(_) => return Err("the client's answer is not a JSON object".into()),
    };
    Ok(ElicitAnswer { action, content })
}

/// `sampling/createMessage` parameters.
pub(super) fn sampling_params(request: Sampling) -> Value {
    let messages: Vec<Value> = request
        .messages
        .into_iter()
        .map(|(role, item)| json!({"role": role_name(role), "content": sampling_content(item)}))
        .collect();
    let mut params = json!({"messages": messages, "maxTokens": request.max_tokens});
    let extra = [
        ("systemPrompt", request.system_prompt.map(Value::from)),
        ("temperature", request.temperature.map(Value::from)),
        (
            "stopSequences",
            (!request.stop_sequences.is_empty()).then(|| json!(request.stop_sequences)),
        ),
        (
            "modelPreferences",
            (!request.model_hints.is_empty()).then(|| {
                let hints: Vec<Value> = request
                    .model_hints
                    .iter()
                    .map(|name| json!({"name": name}))
                    .collect();
                json!({"hints": hints})
            }),
        ),
    ];
    for (key, value) in extra {
        if let Some(value) = value {
            params[key] = value;
        }
    }
    params
}

/// The model's answer: one text, image or audio item (the first, if the client sent several).
pub(super) fn sampled(result: &Value) -> Result<Sampled, String> {
    use base64::Engine as _;
    let role = match result.get("role").and_then(Value::as_str) {
        Some("assistant") => Role::Assistant,
        Some("user") => Role::User,
        _ => return Err("the client's answer has no role".into()),
    };
    let content = match result.get("content") {
        Some(Value::Array(items)) => items.first(),
        other => other,
    }
    .ok_or("the client's answer has no content")?;
    let media = |kind: &str| -> Result<(Vec<u8>, String), String> {
        let data = content
            .get("data")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let data = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| format!("the client's {kind} is not base64: {e}"))?;
        let mime = content
            .get("mimeType")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Ok((data, mime.to_string()))
    };
    let item = match content.get("type").and_then(Value::as_str) {
        Some("text") => ContentItem::Text {
            text: content
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        },
        Some("image") => {
            let (data, mime_type) = media("image")?;
            ContentItem::Image { data, mime_type }
        }
        Some("audio") => {
            let (data, mime_type) = media("audio")?;
            ContentItem::Audio { data, mime_type }
        }
        other => {
            return Err(format!(
                "the client's answer is {}, not text, an image or audio",
                other.unwrap_or("untyped")
            ));
        }
    };
    Ok(Sampled {
        role,
        content: item,
        model: result
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        stop_reason: result
            .get("stopReason")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// The call's notices joined with a way to ask, where this request has one: `session` says
/// the request came on a session of a client before 2026-07-28.
pub fn joined(notices: Option<Notify>, session: bool, peer: &Peer<RoleServer>) -> Option<Notify> {
    let declared = peer
        .peer_info()
        .map(|info| Declared::of(&info.capabilities))
        .unwrap_or_default();
    if !session || !declared.any() {
        return notices;
    }
    let ask: Arc<dyn Ask> = Arc::new(PeerAsk {
        peer: peer.clone(),
        declared,
    });
    Some(notices.unwrap_or_default().with_ask(ask))
}
