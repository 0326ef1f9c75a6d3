//! `elicit` and `sample` from inside a call: a stdio client of MCP 2025-11-25 that declared
//! elicitation (sampling) is asked with a classic `elicitation/create`
//! (`sampling/createMessage`) request, an elicitation's answer is checked against the schema,
//! and the tool sees the answer; without the grant, or with an answer that breaks the schema,
//! the tool's call fails with the reason and nothing is asked. (Over HTTP sessions the
//! conformance suite asks both, with the TypeScript SDK.)

// Sampling is deprecated by SEP-2577 but part of the revisions clients speak today; rmcp
// marks its types deprecated.
#![allow(deprecated)]

use std::sync::{Arc, Mutex};

use rmcp::model::{
    ClientConfig, ContentBlock, CreateMessageRequestParams, CreateMessageResult,
    ElicitRequestParams, ElicitResult, ElicitationAction, ElicitationCapability, ErrorData,
    ProtocolVersion, SamplingCapability, UrlElicitationCapability,
};
use rmcp::service::RequestContext;
use rmcp::{ClientHandler, RoleClient};
use serde_json::{Value, json};

use crate::gateway::{Options, Setup, call, setup, stdio_client_with};
use crate::support::root;

/// Answers every question with `answer` and remembers the questions; answers every sampling
/// request with "4" and remembers the requests.
#[derive(Clone)]
struct User {
    answer: Value,
    asked: Arc<Mutex<Vec<(String, Value)>>>,
}

impl ClientHandler for User {
    fn get_info(&self) -> ClientConfig {
        let mut info = ClientConfig::default();
        info.protocol_version = ProtocolVersion::V_2025_11_25;
        info.capabilities.elicitation = Some(ElicitationCapability::default());
        info.capabilities.sampling = Some(SamplingCapability::default());
        info
    }

    async fn create_message(
        &self,
        request: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let request = serde_json::to_value(&request).unwrap();
        self.asked
            .lock()
            .unwrap()
            .push(("sampling".into(), request));
        Ok(serde_json::from_value(json!({
            "role": "assistant",
            "content": {"type": "text", "text": "4"},
            "model": "test-model",
            "stopReason": "endTurn"
        }))
        .unwrap())
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let request = serde_json::to_value(&request).unwrap();
        self.asked.lock().unwrap().push((
            request["message"].as_str().unwrap_or_default().to_string(),
            request["requestedSchema"].clone(),
        ));
        Ok(ElicitResult::new(ElicitationAction::Accept).with_content(self.answer.clone()))
    }
}

fn text(result: &rmcp::model::CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| match c {
            ContentBlock::Text(t) => Some(t.text.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_granted_call_asks_the_user_and_gets_a_checked_answer() {
    let policy =
        std::fs::read_to_string(root().join("tools/conformance/policy/conformance.rego")).unwrap();
    let s = setup(Options {
        components: &["conformance"],
        policy: Some(&policy),
        ..Options::default()
    });
    let asked = Arc::new(Mutex::new(Vec::new()));
    let user = User {
        answer: json!({"username": "ada", "email": "ada@example.com"}),
        asked: asked.clone(),
    };
    let client = stdio_client_with(&s, None, user).await;
    let result = call(
        &client,
        "test_elicitation",
        json!({"message": "Who are you?"}),
    )
    .await
    .unwrap();
    assert_eq!(result.is_error, Some(false), "{result:?}");
    assert_eq!(
        text(&result),
        "User provided: username=ada, email=ada@example.com"
    );
    let questions = asked.lock().unwrap().clone();
    assert_eq!(questions.len(), 1);
    assert_eq!(questions[0].0, "Who are you?");
    assert_eq!(
        questions[0].1["properties"]["email"]["type"], "string",
        "{:?}",
        questions[0].1
    );
    client.cancel().await.unwrap();

    // An answer that breaks the schema never reaches the tool.
    let bad = User {
        answer: json!({"username": "ada"}),
        asked: Arc::default(),
    };
    let client = stdio_client_with(&s, None, bad).await;
    let result = call(&client, "test_elicitation", json!({"message": "Who?"}))
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(true));
    assert!(
        text(&result).contains("does not match the schema"),
        "{}",
        text(&result)
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn without_the_grant_nothing_is_asked() {
    let s = setup(Options {
        components: &["conformance"],
        policy: Some("package portcullis\nimport rego.v1\ndecision := {\"allow\": true}\n"),
        ..Options::default()
    });
    let asked = Arc::new(Mutex::new(Vec::new()));
    let user = User {
        answer: json!({"username": "ada", "email": "ada@example.com"}),
        asked: asked.clone(),
    };
    let client = stdio_client_with(&s, None, user).await;
    let result = call(&client, "test_elicitation", json!({"message": "Who?"}))
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(true));
    assert!(text(&result).contains("not granted"), "{}", text(&result));
    assert!(asked.lock().unwrap().is_empty());
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_granted_call_asks_the_clients_model_and_nothing_else_may() {
    let policy =
        std::fs::read_to_string(root().join("tools/conformance/policy/conformance.rego")).unwrap();
    let s = setup(Options {
        components: &["conformance"],
        policy: Some(&policy),
        ..Options::default()
    });
    let asked = Arc::new(Mutex::new(Vec::new()));
    let user = User {
        answer: json!({"username": "ada", "email": "ada@example.com"}),
        asked: asked.clone(),
    };
    let client = stdio_client_with(&s, None, user).await;
    let result = call(
        &client,
        "test_sampling",
        json!({"prompt": "What is 2 + 2?"}),
    )
    .await
    .unwrap();
    assert_eq!(result.is_error, Some(false), "{result:?}");
    assert_eq!(text(&result), "LLM response: 4");
    let requests = asked.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0].1;
    assert_eq!(request["maxTokens"], 100, "{request}");
    assert_eq!(request["messages"][0]["role"], "user", "{request}");
    assert_eq!(
        request["messages"][0]["content"]["text"], "What is 2 + 2?",
        "{request}"
    );
    // A tool granted elicitation only may not ask the model.
    let result = call(&client, "test_elicitation", json!({"message": "Who?"}))
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(false), "{result:?}");
    assert_eq!(asked.lock().unwrap().len(), 2, "one question, no sampling");
    client.cancel().await.unwrap();

    let s = setup(Options {
        components: &["conformance"],
        policy: Some("package portcullis\nimport rego.v1\ndecision := {\"allow\": true}\n"),
        ..Options::default()
    });
    let asked = Arc::new(Mutex::new(Vec::new()));
    let client = stdio_client_with(
        &s,
        None,
        User {
            answer: json!({}),
            asked: asked.clone(),
        },
    )
    .await;
    let result = call(&client, "test_sampling", json!({"prompt": "2 + 2?"}))
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(true));
    assert!(text(&result).contains("grants.sample"), "{}", text(&result));
    assert!(asked.lock().unwrap().is_empty());
    client.cancel().await.unwrap();
}

/// The hostile-asks component, its secret `CANARY` holding `canary` (in the returned
/// directory), and a policy that allows everything with `grants` and the secret.
fn hostile_asks(canary: &str, grants: &str) -> (tempfile::TempDir, Setup) {
    let secrets = tempfile::tempdir().unwrap();
    let file = secrets.path().join("canary");
    std::fs::write(&file, canary).unwrap();
    let extra = format!("[secrets]\nCANARY = {{ file = \"{}\" }}\n", file.display());
    let policy = format!(
        "package portcullis\nimport rego.v1\ndecision := {{\"allow\": true, \"grants\": \
         {{{grants}, \"secrets\": [\"CANARY\"]}}}}\n"
    );
    let s = setup(Options {
        components: &["hostile-asks"],
        policy: Some(&policy),
        extra: &extra,
        ..Options::default()
    });
    (secrets, s)
}

#[tokio::test]
async fn a_hostile_tool_can_neither_flood_the_client_nor_leak_a_secret_through_it() {
    const CANARY: &str = "asks-canary-93b1f27c";
    let (_secrets, s) = hostile_asks(CANARY, r#""sample": true, "elicit": true"#);
    let asked = Arc::new(Mutex::new(Vec::new()));
    let user = User {
        answer: json!({"ok": true}),
        asked: asked.clone(),
    };
    let client = stdio_client_with(&s, None, user).await;

    let result = call(&client, "ask_flood", json!({})).await.unwrap();
    let seen = text(&result);
    assert!(
        seen.starts_with("samples=8 (a call may make at most 8"),
        "{seen}"
    );
    assert!(
        seen.contains("questions=8 (a call may ask at most 8"),
        "{seen}"
    );
    assert!(
        seen.contains("big: the sampling request is larger than"),
        "{seen}"
    );
    let sent = asked.lock().unwrap().clone();
    let samplings = sent.iter().filter(|(kind, _)| kind == "sampling").count();
    assert_eq!(
        (samplings, sent.len()),
        (8, 16),
        "the client was asked 8 + 8 times"
    );

    asked.lock().unwrap().clear();
    let result = call(&client, "leak_secret", json!({})).await.unwrap();
    assert_eq!(text(&result), "the model said: 4", "{result:?}");
    let sent = asked.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    let request = sent[0].1.to_string();
    assert!(
        !request.contains(CANARY),
        "the secret reached the client: {request}"
    );
    assert!(request.contains("[redacted:CANARY]"), "{request}");
    client.cancel().await.unwrap();
}

/// A client that declared URL elicitation only: remembers each request, answers `action`.
#[derive(Clone)]
struct Opener {
    action: ElicitationAction,
    asked: Arc<Mutex<Vec<Value>>>,
}

impl ClientHandler for Opener {
    fn get_info(&self) -> ClientConfig {
        let mut info = ClientConfig::default();
        info.protocol_version = ProtocolVersion::V_2025_11_25;
        info.capabilities.elicitation =
            Some(ElicitationCapability::new().with_url(UrlElicitationCapability::default()));
        info
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let request = serde_json::to_value(&request).unwrap();
        self.asked.lock().unwrap().push(request);
        Ok(ElicitResult::new(self.action.clone()))
    }
}

#[tokio::test]
async fn a_tool_sends_the_user_to_an_https_url_but_never_with_a_secret() {
    const CANARY: &str = "url-canary-5f0c2a9e";
    let (_secrets, s) = hostile_asks(CANARY, r#""elicit": true"#);
    let asked = Arc::new(Mutex::new(Vec::new()));
    let opener = Opener {
        action: ElicitationAction::Accept,
        asked: asked.clone(),
    };
    let client = stdio_client_with(&s, None, opener).await;
    let url = "https://idp.example/authorize?client=portcullis";
    let result = call(&client, "sign_in", json!({"url": url})).await.unwrap();
    assert_eq!(text(&result), "opened: accepted", "{result:?}");
    let sent = asked.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["mode"], "url", "{:?}", sent[0]);
    assert_eq!(sent[0]["url"], url);
    assert_eq!(sent[0]["message"], "Sign in to continue");
    assert!(
        sent[0]["elicitationId"]
            .as_str()
            .is_some_and(|id| id.starts_with("pc-")),
        "{:?}",
        sent[0]
    );

    // The hostile variant puts its secret into the URL: refused, and nothing reaches the client.
    asked.lock().unwrap().clear();
    let result = call(&client, "sign_in", json!({"url": url, "leak": true}))
        .await
        .unwrap();
    assert_eq!(
        text(&result),
        "refused: the URL contains a secret granted to this call"
    );
    let result = call(&client, "sign_in", json!({"url": "http://idp.example/"}))
        .await
        .unwrap();
    assert_eq!(text(&result), "refused: the URL must be https");
    assert!(asked.lock().unwrap().is_empty(), "nothing was sent");

    // This client declared URL mode only: a form question is refused, not sent.
    let result = call(&client, "ask_twice", json!({})).await.unwrap();
    assert_eq!(result.is_error, Some(true), "{result:?}");
    assert!(
        text(&result).contains("did not declare form elicitation"),
        "{result:?}"
    );
    assert!(asked.lock().unwrap().is_empty());
    client.cancel().await.unwrap();

    // A client that declared form mode only is not sent a URL.
    let user = User {
        answer: json!({}),
        asked: Arc::new(Mutex::new(Vec::new())),
    };
    let client = stdio_client_with(&s, None, user.clone()).await;
    let result = call(&client, "sign_in", json!({"url": url})).await.unwrap();
    assert_eq!(
        text(&result),
        "refused: the client did not declare URL elicitation"
    );
    assert!(user.asked.lock().unwrap().is_empty());
    client.cancel().await.unwrap();
}
