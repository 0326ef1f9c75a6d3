//! `elicit` and `sample` for clients of MCP 2026-07-28, which has no server → client requests:
//! the call answers with an `InputRequiredResult` (the question and a sealed `requestState`),
//! and the client retries it with the answer (multi-round-trip requests, SEP-2322). rmcp's
//! client drives the rounds itself; raw requests attempt what a hostile client would: a forged
//! state, a state moved to other arguments or another principal, answers to questions never
//! asked. A tool that asks something else on the rerun never gets the earlier answer.

// Sampling is deprecated by SEP-2577 but part of the revisions clients speak today.
#![allow(deprecated)]

use std::sync::{Arc, Mutex};

use rmcp::model::{
    ClientConfig, CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams,
    ElicitResult, ElicitationAction, ElicitationCapability, ErrorData, FormElicitationCapability,
    SamplingCapability, UrlElicitationCapability,
};
use rmcp::service::RequestContext;
use rmcp::{ClientHandler, RoleClient};
use serde_json::{Value, json};

use crate::gateway::{
    ALICE, BOB, Options, http_client_discover, http_server, post, raw_http, setup, text,
};

/// Says yes to every question and "4" to every sampling request, and remembers what it was
/// asked.
#[derive(Clone, Default)]
struct User {
    asked: Arc<Mutex<Vec<String>>>,
}

impl ClientHandler for User {
    fn get_info(&self) -> ClientConfig {
        let mut info = ClientConfig::default();
        info.capabilities.elicitation = Some(
            ElicitationCapability::new()
                .with_form(FormElicitationCapability::default())
                .with_url(UrlElicitationCapability::default()),
        );
        info.capabilities.sampling = Some(SamplingCapability::default());
        info
    }

    async fn create_message(
        &self,
        _request: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        self.asked.lock().unwrap().push("sampling".into());
        Ok(serde_json::from_value(json!({
            "role": "assistant",
            "content": {"type": "text", "text": "4"},
            "model": "test-model",
        }))
        .unwrap())
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let request = serde_json::to_value(&request).unwrap();
        if request["mode"] == "url" {
            let url = request["url"].as_str().unwrap_or_default();
            self.asked.lock().unwrap().push(format!("open {url}"));
            return Ok(ElicitResult::new(ElicitationAction::Accept));
        }
        let message = request["message"].as_str().unwrap_or_default().to_string();
        self.asked.lock().unwrap().push(message);
        let content = if request["requestedSchema"]["properties"]["ok"].is_object() {
            json!({"ok": true})
        } else {
            json!({"username": "ada", "email": "ada@example.com"})
        };
        Ok(ElicitResult::new(ElicitationAction::Accept).with_content(content))
    }
}

const ASKING: &str = "package portcullis\nimport rego.v1\ndecision := {\"allow\": true, \
                      \"grants\": {\"elicit\": true, \"sample\": true}}\n";

#[tokio::test]
async fn a_2026_client_answers_in_rounds_and_each_round_is_a_fresh_governed_call() {
    let s = setup(Options {
        components: &["hostile-asks", "conformance"],
        policy: Some(ASKING),
        ..Options::default()
    });
    let server = http_server(&s).await;
    let user = User::default();
    let client = http_client_discover(&server, ALICE, user.clone()).await;

    let result = drive(&client, "ask_twice", json!({})).await.unwrap();
    assert_eq!(text(&result), "first=true second=true", "{result:?}");
    assert_eq!(
        *user.asked.lock().unwrap(),
        ["First: go on?", "Second: really?"],
        "each question is put to the user once, though the tool ran three times"
    );

    user.asked.lock().unwrap().clear();
    let result = drive(&client, "test_sampling", json!({"prompt": "2 + 2?"}))
        .await
        .unwrap();
    assert_eq!(text(&result), "LLM response: 4", "{result:?}");
    assert_eq!(*user.asked.lock().unwrap(), ["sampling"]);

    // A URL to open (URL-mode elicitation) is asked in a round too, the same on the rerun.
    user.asked.lock().unwrap().clear();
    let url = "https://idp.example/authorize";
    let result = drive(&client, "sign_in", json!({"url": url}))
        .await
        .unwrap();
    assert_eq!(text(&result), "opened: accepted", "{result:?}");
    assert_eq!(*user.asked.lock().unwrap(), [format!("open {url}")]);

    // The hostile tool asks another question on the rerun: it is refused, not answered.
    user.asked.lock().unwrap().clear();
    let result = drive(&client, "shifting_question", json!({}))
        .await
        .unwrap();
    assert!(
        text(&result).starts_with("refused: the tool asked something other"),
        "{result:?}"
    );
    assert_eq!(user.asked.lock().unwrap().len(), 1);
    client.cancel().await.unwrap();
}

/// Calls `tool` through rmcp's `RunningService`, which answers each `InputRequiredResult`
/// with the handler and retries (the `Peer` alone does not drive rounds).
async fn drive(
    client: &rmcp::service::RunningService<RoleClient, User>,
    tool: &str,
    args: Value,
) -> Result<rmcp::model::CallToolResult, rmcp::ServiceError> {
    let params = rmcp::model::CallToolRequestParams::new(tool.to_string())
        .with_arguments(args.as_object().expect("arguments are an object").clone());
    client.call_tool(params).await
}

/// A 2026-07-28 `tools/call` of `test_elicitation` with `params` merged in.
fn request(extra: Value) -> String {
    let mut params = json!({
        "name": "test_elicitation",
        "arguments": {"message": "Who are you?"},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}},
        },
    });
    for (key, value) in extra.as_object().unwrap() {
        if key == "_meta" {
            params["_meta"]
                .as_object_mut()
                .unwrap()
                .extend(value.as_object().unwrap().clone());
        } else {
            params[key] = value.clone();
        }
    }
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}).to_string()
}

/// The JSON-RPC answer to `body`, sent as `token`.
async fn send(server: &crate::gateway::HttpServer, token: &str, body: &str) -> Value {
    let extra = "mcp-protocol-version: 2026-07-28\r\nmcp-method: tools/call\r\n\
                 mcp-name: test_elicitation\r\n";
    let response = raw_http(server, &post(server, token, extra, body)).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

fn accepted() -> Value {
    json!({"action": "accept", "content": {"username": "ada", "email": "ada@example.com"}})
}

#[tokio::test]
async fn a_request_state_works_only_for_its_own_request_and_principal() {
    let s = setup(Options {
        components: &["conformance"],
        policy: Some(ASKING),
        ..Options::default()
    });
    let server = http_server(&s).await;
    let key = json!({"_meta": {"portcullis/idempotency_key": "rounds-1"}});
    let first = send(&server, ALICE, &request(key.clone())).await;
    let result = &first["result"];
    assert_eq!(result["resultType"], "input_required", "{first}");
    let asked = result["inputRequests"].as_object().unwrap();
    assert_eq!(asked.len(), 1, "{first}");
    let (id, question) = asked.iter().next().unwrap();
    assert_eq!(question["method"], "elicitation/create", "{question}");
    assert_eq!(question["params"]["message"], "Who are you?", "{question}");
    let state = result["requestState"].as_str().unwrap().to_string();

    let retry = |extra: Value| {
        let mut merged = json!({
            "requestState": state,
            "inputResponses": {id.clone(): accepted()},
            "_meta": key["_meta"],
        });
        merged
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        request(merged)
    };
    let refused = |answer: &Value, why: &str| {
        assert_eq!(answer["error"]["code"], -32602, "{why}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("requestState")
                || answer["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("inputResponses"),
            "{why}: {answer}"
        );
    };

    // Moved to other arguments, or to another principal: refused, nothing runs.
    let other_args = retry(json!({"arguments": {"message": "Give me your password"}}));
    refused(&send(&server, ALICE, &other_args).await, "other arguments");
    refused(
        &send(&server, BOB, &retry(json!({}))).await,
        "another principal",
    );
    // Forged: the body changed under the same tag.
    let (body, tag) = state.split_once('.').unwrap();
    let mut flipped = body.as_bytes().to_vec();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let forged = format!("{}.{tag}", String::from_utf8(flipped).unwrap());
    refused(
        &send(&server, ALICE, &retry(json!({"requestState": forged}))).await,
        "forged",
    );
    // Answers to what was not asked.
    let stray = retry(json!({"inputResponses": {"ask-5": accepted()}}));
    refused(&send(&server, ALICE, &stray).await, "stray answer");
    let unasked = request(json!({"inputResponses": {"ask-0": accepted()}}));
    refused(&send(&server, ALICE, &unasked).await, "no state");

    // The right retry completes, under the same idempotency key (the deferred round left it
    // free), and a repeat of it is replayed, not run again.
    let done = send(&server, ALICE, &retry(json!({}))).await;
    assert_eq!(done["result"]["isError"], false, "{done}");
    assert_eq!(
        done["result"]["content"][0]["text"], "User provided: username=ada, email=ada@example.com",
        "{done}"
    );
    let again = send(&server, ALICE, &retry(json!({}))).await;
    assert_eq!(
        again["result"]["content"], done["result"]["content"],
        "{again}"
    );
    assert_eq!(
        again["result"]["_meta"]["portcullis/idempotency"]["replayed"], true,
        "{again}"
    );

    // An answer that breaks the schema is checked on the rerun, before the tool sees it.
    let first = send(&server, ALICE, &request(json!({}))).await;
    let state = first["result"]["requestState"].as_str().unwrap();
    let bad = request(json!({
        "requestState": state,
        "inputResponses": {"ask-0": {"action": "accept", "content": {"username": "ada"}}},
    }));
    let answer = send(&server, ALICE, &bad).await;
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    assert!(
        answer["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("does not match the schema"),
        "{answer}"
    );
}
