//! Multi-round-trip requests (MCP 2026-07-28, SEP-2322): how a tool's `elicit` and `sample`
//! reach a client of the stateless protocol, which has no server → client requests.
//!
//! The call runs until the tool asks something no earlier round answered. There the instance
//! stops (the host function traps), nothing of it is kept, and the client gets an
//! `InputRequiredResult`: the question as an input request, and a sealed `requestState`. The
//! client retries the same request with its answer in `inputResponses` and the state echoed;
//! the call is governed again (decision, limits, rate, audit) and runs again from the start in
//! a fresh instance, where every question asked before is answered from the state, in order.
//!
//! The state is HMAC-SHA256 sealed under a key derived from the audit signing key (which
//! replicas share), and bound to the principal, the method, the target and the digest of the
//! arguments, with an expiry: a client cannot forge an earlier answer, move answers to another
//! call, principal or argument set, or use them late. It is integrity-protected, not secret:
//! it holds the client's own answers and digests of the questions, never a question itself.
//! A tool that asks something else on the rerun than what was answered gets a refusal, never
//! the answer meant for another question.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use rmcp::model::{ErrorData, InputRequest, InputRequests, InputRequiredResult, InputResponses};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::ask::{Declared, elicit_answer, sampled, sampling_params};
use crate::audit::Signer;
use crate::gate::GateError;
use crate::runner::{
    Answering, Ask, Asking, Elicitation, Notify, RunError, Sampled, Sampling, Unanswered,
};

type Seal = hmac::Hmac<Sha256>;

/// How long a request state stays usable after it was issued.
pub const STATE_LIFETIME_S: u64 = 15 * 60;
/// Bytes of a sealed request state: the answers of every round travel in it.
pub const MAX_STATE_BYTES: usize = 1024 * 1024;
/// The purpose the sealing key is derived for.
const KEY_PURPOSE: &str = "mcp-request-state";

/// What one request is, as the state is bound to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    principal: String,
    method: String,
    target: String,
    /// `sha256:` of the canonical JSON of the arguments.
    args: String,
}

impl Binding {
    pub fn new(principal: &str, method: &str, target: &str, args: &Map<String, Value>) -> Self {
        let canonical =
            serde_json_canonicalizer::to_string(&Value::Object(args.clone())).unwrap_or_default();
        Self {
            principal: principal.to_string(),
            method: method.to_string(),
            target: target.to_string(),
            args: format!("sha256:{}", hex::encode(Sha256::digest(canonical))),
        }
    }
}

/// A question asked and answered in an earlier round.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Given {
    /// `sha256:` of the request as it was sent (method and parameters).
    digest: String,
    response: Value,
}

/// The question a round stopped at.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Pending {
    key: String,
    digest: String,
}

/// What the sealed state says.
#[derive(Serialize, Deserialize)]
struct State {
    v: u8,
    #[serde(flatten)]
    binding: Binding,
    /// Unix seconds after which the state is refused.
    expires: u64,
    given: Vec<Given>,
    pending: Pending,
}

/// The question this round stopped at, to be sent.
struct Asked {
    pending: Pending,
    request: Value,
}

/// The `Ask` of one round of a request from a 2026-07-28 client.
pub struct Rounds {
    binding: Binding,
    given: Vec<Given>,
    /// Questions the tool asked in this round so far, and the one it stopped at.
    asked: Mutex<(usize, Option<Asked>)>,
    /// What the client declared it can answer.
    declared: Declared,
}

fn invalid(message: impl Into<String>) -> ErrorData {
    ErrorData::invalid_params(message.into(), None)
}

fn digest(request: &Value) -> String {
    let canonical = serde_json_canonicalizer::to_string(request).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(canonical)))
}

fn now_s() -> u64 {
    crate::time::now_ms() / 1000
}

fn mac(signer: &Signer, body: &str) -> Result<Seal, String> {
    let key = signer.derive_key(KEY_PURPOSE);
    let mut mac = Seal::new_from_slice(&key).map_err(|_| "unusable request-state key")?;
    mac.update(body.as_bytes());
    Ok(mac)
}

fn seal(signer: &Signer, state: &State) -> Result<String, String> {
    let json = serde_json::to_vec(state).map_err(|e| e.to_string())?;
    let body = URL_SAFE_NO_PAD.encode(json);
    let tag = URL_SAFE_NO_PAD.encode(mac(signer, &body)?.finalize().into_bytes());
    let sealed = format!("{body}.{tag}");
    if sealed.len() > MAX_STATE_BYTES {
        return Err(format!(
            "the answers of this call exceed {MAX_STATE_BYTES} bytes of request state"
        ));
    }
    Ok(sealed)
}

/// The state the client echoed, if it is one this gateway sealed for this very request and it
/// has not expired.
fn open(signer: &Signer, sealed: &str, binding: &Binding) -> Result<State, ErrorData> {
    const REFUSED: &str = "requestState is not valid for this request: it was changed, has expired, or was issued for another request";
    let (body, tag) = sealed.split_once('.').ok_or_else(|| invalid(REFUSED))?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| invalid(REFUSED))?;
    mac(signer, body)
        .map_err(|e| ErrorData::internal_error(e, None))?
        .verify_slice(&tag)
        .map_err(|_| invalid(REFUSED))?;
    let json = URL_SAFE_NO_PAD.decode(body).map_err(|_| invalid(REFUSED))?;
    let state: State = serde_json::from_slice(&json).map_err(|_| invalid(REFUSED))?;
    if state.v != 1 || state.binding != *binding || state.expires < now_s() {
        return Err(invalid(REFUSED));
    }
    Ok(state)
}

impl Rounds {
    /// This round of `binding`: the first (no state, no responses), or a retry whose state
    /// opens and whose responses answer exactly what the last round asked.
    pub fn start(
        signer: &Signer,
        binding: Binding,
        state: Option<&str>,
        responses: Option<InputResponses>,
        declared: Declared,
    ) -> Result<Self, ErrorData> {
        let mut responses = responses.unwrap_or_default();
        let given = match state {
            None if responses.is_empty() => Vec::new(),
            None => {
                return Err(invalid(
                    "inputResponses without requestState: this gateway asks for input with a requestState, to be echoed with the answers",
                ));
            }
            Some(sealed) => {
                let state = open(signer, sealed, &binding)?;
                let response = responses.remove(&state.pending.key).ok_or_else(|| {
                    invalid(format!(
                        "inputResponses has no answer to `{}`, which the last round asked",
                        state.pending.key
                    ))
                })?;
                if let Some(other) = responses.keys().next() {
                    return Err(invalid(format!(
                        "inputResponses answers `{other}`, which was not asked"
                    )));
                }
                let mut given = state.given;
                given.push(Given {
                    digest: state.pending.digest,
                    response,
                });
                given
            }
        };
        Ok(Self {
            binding,
            given,
            asked: Mutex::new((0, None)),
            declared,
        })
    }

    /// The answer to the next question, if an earlier round has it; otherwise this round
    /// stops at it.
    fn round(&self, method: &str, params: Value) -> Result<Value, Unanswered> {
        let request = json!({"method": method, "params": params});
        let digest = digest(&request);
        let mut asked = self.asked.lock().unwrap_or_else(|e| e.into_inner());
        let index = asked.0;
        asked.0 += 1;
        match self.given.get(index) {
            Some(given) if given.digest == digest => Ok(given.response.clone()),
            Some(_) => Err(Unanswered::Refused(
                "the tool asked something other than what was answered in an earlier round; a tool that asks must ask the same things in the same order every round".into(),
            )),
            None => {
                let pending = Pending {
                    key: format!("ask-{index}"),
                    digest,
                };
                asked.1 = Some(Asked { pending, request });
                Err(Unanswered::Later)
            }
        }
    }

    /// The `InputRequiredResult` of a round that stopped at a question.
    pub fn input_required(&self, signer: &Signer) -> Result<InputRequiredResult, ErrorData> {
        let mut asked = self.asked.lock().unwrap_or_else(|e| e.into_inner());
        let Asked { pending, request } = asked.1.take().ok_or_else(|| {
            ErrorData::internal_error("the call stopped without a question", None)
        })?;
        let input: InputRequest = serde_json::from_value(request).map_err(|e| {
            ErrorData::internal_error(format!("the question cannot be sent: {e}"), None)
        })?;
        let state = State {
            v: 1,
            binding: self.binding.clone(),
            expires: now_s() + STATE_LIFETIME_S,
            given: self.given.clone(),
            pending: pending.clone(),
        };
        let sealed = seal(signer, &state).map_err(invalid)?;
        let requests = InputRequests::from([(pending.key, input)]);
        Ok(InputRequiredResult::new(Some(requests), Some(sealed)))
    }
}

impl Ask for Rounds {
    fn elicit(&self, question: Elicitation) -> Answering {
        let answer = match self.declared.elicit(&question) {
            Ok(()) => self
                .round("elicitation/create", question.params())
                .and_then(|response| elicit_answer(response).map_err(Unanswered::Refused)),
            Err(reason) => Err(Unanswered::Refused(reason)),
        };
        Box::pin(std::future::ready(answer))
    }

    fn sample(&self, request: Sampling) -> Asking<Sampled> {
        let answer = if self.declared.sample {
            self.round("sampling/createMessage", sampling_params(request))
                .and_then(|response| sampled(&response).map_err(Unanswered::Refused))
        } else {
            Err("the client did not declare sampling".into())
        };
        Box::pin(std::future::ready(answer))
    }
}

/// The rounds of a `tools/call` from a 2026-07-28 client (`stateless`), with the call's
/// notices joined to them; an older client's request must not carry round fields.
pub fn begin(
    signer: &Signer,
    stateless: bool,
    context: &rmcp::service::RequestContext<rmcp::RoleServer>,
    principal: &str,
    request: &mut rmcp::model::CallToolRequestParams,
) -> Result<Option<Arc<Rounds>>, ErrorData> {
    if !stateless {
        if request.request_state.is_some() || request.input_responses.is_some() {
            return Err(invalid(
                "requestState and inputResponses belong to MCP 2026-07-28 multi-round-trip requests; this request was made with an older protocol version",
            ));
        }
        return Ok(None);
    }
    let caps = context.client_capabilities().unwrap_or_default();
    let binding = Binding::new(
        principal,
        "tools/call",
        &request.name,
        request.arguments.as_ref().unwrap_or(&Map::new()),
    );
    let rounds = Rounds::start(
        signer,
        binding,
        request.request_state.as_deref(),
        request.input_responses.take(),
        Declared::of(&caps),
    )?;
    Ok(Some(Arc::new(rounds)))
}

/// `notices` with the rounds as the way to ask.
pub fn joined(notices: Option<Notify>, rounds: &Arc<Rounds>) -> Notify {
    let ask: Arc<dyn Ask> = rounds.clone();
    notices.unwrap_or_default().with_ask(ask)
}

/// The `InputRequiredResult` of a call that stopped at a question, if it did.
pub fn stopped(
    signer: &Signer,
    rounds: Option<&Arc<Rounds>>,
    result: &Result<crate::gate::CallOutcome, GateError>,
) -> Option<Result<InputRequiredResult, ErrorData>> {
    let Err(GateError::Run { report, .. }) = result else {
        return None;
    };
    if !matches!(report.outcome, Err(RunError::Deferred(_))) {
        return None;
    }
    Some(match rounds {
        Some(rounds) => rounds.input_required(signer),
        None => Err(ErrorData::internal_error(
            "the call stopped at a question no round can carry",
            None,
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn everything() -> Declared {
        Declared::of(
            &serde_json::from_value(
                json!({"elicitation": {"form": {}, "url": {}}, "sampling": {}}),
            )
            .unwrap(),
        )
    }

    fn question(text: &str) -> Elicitation {
        Elicitation::Form {
            message: text.into(),
            schema: json!({"type": "object", "properties": {"ok": {"type": "boolean"}}}),
        }
    }

    fn binding(args: Value) -> Binding {
        let Value::Object(args) = args else { panic!() };
        Binding::new("alice", "tools/call", "deploy", &args)
    }

    async fn ask(rounds: &Rounds, text: &str) -> Result<bool, Unanswered> {
        let answer = rounds.elicit(question(text)).await?;
        Ok(answer
            .content
            .and_then(|c| c["ok"].as_bool())
            .unwrap_or(false))
    }

    fn answered(key: &str, ok: bool) -> InputResponses {
        InputResponses::from([(
            key.to_string(),
            json!({"action": "accept", "content": {"ok": ok}}),
        )])
    }

    /// One round: the tool asks `texts` in order until it is stopped; the state to retry with.
    async fn round(
        signer: &Signer,
        b: &Binding,
        state: Option<String>,
        responses: Option<InputResponses>,
        texts: &[&str],
    ) -> Result<(Vec<bool>, Option<(String, String)>), ErrorData> {
        let rounds = Rounds::start(signer, b.clone(), state.as_deref(), responses, everything())?;
        let mut seen = Vec::new();
        for text in texts {
            match ask(&rounds, text).await {
                Ok(ok) => seen.push(ok),
                Err(Unanswered::Later) => {
                    let result = rounds.input_required(signer)?;
                    let key = result.input_requests.unwrap().into_keys().next().unwrap();
                    return Ok((seen, Some((key, result.request_state.unwrap()))));
                }
                Err(Unanswered::Refused(reason)) => return Err(invalid(reason)),
            }
        }
        Ok((seen, None))
    }

    #[tokio::test]
    async fn answers_come_back_in_order_and_bound_to_their_request() {
        let signer = Signer::ephemeral().unwrap();
        let b = binding(json!({"service": "api"}));
        let texts = ["first?", "second?"];
        let (seen, next) = round(&signer, &b, None, None, &texts).await.unwrap();
        assert!(seen.is_empty());
        let (key, state) = next.unwrap();
        assert_eq!(key, "ask-0");
        let (seen, next) = round(
            &signer,
            &b,
            Some(state.clone()),
            Some(answered(&key, true)),
            &texts,
        )
        .await
        .unwrap();
        assert_eq!(seen, [true]);
        let (key2, state2) = next.unwrap();
        assert_eq!(key2, "ask-1");
        let (seen, next) = round(
            &signer,
            &b,
            Some(state2.clone()),
            Some(answered(&key2, false)),
            &texts,
        )
        .await
        .unwrap();
        assert_eq!(seen, [true, false]);
        assert!(next.is_none());

        // Another argument set, principal or gateway key: the state does not open.
        let mallory = Map::from_iter([("service".to_string(), json!("api"))]);
        for other in [
            binding(json!({"service": "db"})),
            Binding::new("mallory", "tools/call", "deploy", &mallory),
            Binding::new("alice", "tools/call", "destroy", &mallory),
        ] {
            let err = Rounds::start(
                &signer,
                other,
                Some(&state2),
                Some(answered(&key2, true)),
                everything(),
            )
            .err()
            .unwrap();
            assert!(err.message.contains("not valid"), "{}", err.message);
        }
        let stranger = Signer::ephemeral().unwrap();
        assert!(
            Rounds::start(
                &stranger,
                b.clone(),
                Some(&state2),
                Some(answered(&key2, true)),
                everything()
            )
            .is_err()
        );

        // A changed state (the first answer flipped) does not open either.
        let (body, tag) = state2.split_once('.').unwrap();
        let mut json: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap();
        json["given"][0]["response"]["content"]["ok"] = json!(false);
        let forged = format!(
            "{}.{tag}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&json).unwrap())
        );
        assert!(
            Rounds::start(
                &signer,
                b.clone(),
                Some(&forged),
                Some(answered(&key2, true)),
                everything()
            )
            .is_err()
        );

        // Answers to what was not asked, or none to what was, are refused.
        let err = Rounds::start(
            &signer,
            b.clone(),
            Some(&state2),
            Some(answered("ask-7", true)),
            everything(),
        )
        .err()
        .unwrap();
        assert!(
            err.message.contains("no answer to `ask-1`"),
            "{}",
            err.message
        );
        let mut extra = answered(&key2, true);
        extra.insert("ask-9".into(), json!({}));
        assert!(
            Rounds::start(&signer, b.clone(), Some(&state2), Some(extra), everything()).is_err()
        );
        assert!(
            Rounds::start(
                &signer,
                b,
                None,
                Some(answered("ask-0", true)),
                everything()
            )
            .is_err()
        );
    }

    #[tokio::test]
    async fn a_tool_that_asks_something_else_on_the_rerun_gets_no_answer() {
        let signer = Signer::ephemeral().unwrap();
        let b = binding(json!({}));
        let (_, next) = round(&signer, &b, None, None, &["delete the test database?"])
            .await
            .unwrap();
        let (key, state) = next.unwrap();
        let err = round(
            &signer,
            &b,
            Some(state),
            Some(answered(&key, true)),
            &["delete every database?"],
        )
        .await
        .err()
        .unwrap();
        assert!(err.message.contains("something other"), "{}", err.message);
    }
}
