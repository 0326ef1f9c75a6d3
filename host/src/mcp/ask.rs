//! Questions from a running tool to the client's user (`elicit`), as classic server → client
//! `elicitation/create` requests: on a stdio session of a client before MCP 2026-07-28 that
//! declared form elicitation. Stateless streamable HTTP cannot carry a request to the client,
//! and 2026-07-28 replaces these requests with multi-round-trip results (not served yet), so
//! there a tool's `elicit` fails with the reason.

use std::sync::Arc;

use rmcp::model::{ElicitRequestParams, ElicitationAction};
use rmcp::service::ElicitationMode;
use rmcp::{Peer, RoleServer};
use serde_json::{Value, json};

use crate::gate::Transport;
use crate::runner::{Answering, Ask, ElicitAction, ElicitAnswer, Elicitation, Notify};

/// Asks through the session's peer.
struct PeerAsk(Peer<RoleServer>);

impl Ask for PeerAsk {
    fn elicit(&self, question: Elicitation) -> Answering {
        let peer = self.0.clone();
        Box::pin(async move {
            let params: ElicitRequestParams = serde_json::from_value(json!({
                "mode": "form",
                "message": question.message,
                "requestedSchema": question.schema,
            }))
            .map_err(|e| format!("the question cannot be sent: {e}"))?;
            let result = peer
                .create_elicitation(params)
                .await
                .map_err(|e| format!("the client did not answer: {e}"))?;
            let action = match result.action {
                ElicitationAction::Accept => ElicitAction::Accept,
                ElicitationAction::Decline => ElicitAction::Decline,
                _ => ElicitAction::Cancel,
            };
            let content = match result.content {
                None => None,
                Some(Value::Object(map)) => Some(map),
                Some(_) => return Err("the client's answer is not a JSON object".into()),
            };
            Ok(ElicitAnswer { action, content })
        })
    }
}

/// The call's notices joined with a way to ask, where this request has one.
pub fn joined(
    notices: Option<Notify>,
    transport: Transport,
    legacy: bool,
    peer: &Peer<RoleServer>,
) -> Option<Notify> {
    let can_ask = transport == Transport::Stdio
        && legacy
        && peer
            .supported_elicitation_modes()
            .contains(&ElicitationMode::Form);
    if !can_ask {
        return notices;
    }
    let ask: Arc<dyn Ask> = Arc::new(PeerAsk(peer.clone()));
    Some(notices.unwrap_or_default().with_ask(ask))
}
