//! Resources, prompts and completion served by components through the WIT contract and
//! governed by policy (`list`, `read`, `get`, `complete`), over the real binary with rmcp's
//! client; and a component built against `portcullis:tool@0.1.0` still loads and runs.

use rmcp::ServiceError;
use rmcp::model::{
    ContentBlock, GetPromptRequestParams, ReadResourceRequestParams, ResourceContents,
};
use serde_json::{Value, json};

use crate::gateway::{Options, call, setup, stdio_client};

/// Lists everything but `test://watched-resource` and the image prompt; reads and gets what it
/// lists, except: `test://static-binary` and ids starting with `secret` are denied (with the
/// policy input quoted in the reason), and the embedded-resource prompt too.
const POLICY: &str = r#"
package portcullis

import rego.v1

default decision := {"allow": false, "reasons": ["no rule allows this"]}

hidden_resource if input.resource.uri == "test://watched-resource"
hidden_prompt if input.prompt.name == "test_prompt_with_image"

decision := {"allow": true} if {
	input.action == "list"
	input.resource
	not hidden_resource
}

decision := {"allow": true} if {
	input.action == "list"
	input.prompt
	not hidden_prompt
}

decision := {"allow": true} if {
	input.action == "list"
	input.tool
}

decision := {"allow": true} if {
	input.action == "call"
	input.tool.name == "legacy_echo"
}

decision := {"allow": true} if {
	input.action == "read"
	not hidden_resource
	input.resource.uri != "test://static-binary"
	not startswith(object.get(input.args, "id", ""), "secret")
}

decision := {"allow": false, "reasons": [msg]} if {
	input.action == "read"
	startswith(object.get(input.args, "id", ""), "secret")
	msg := sprintf("id %s of %s from %s is secret", [input.args.id, input.resource.template, input.resource.component])
}

decision := {"allow": false, "reasons": ["binary resources are not for agents"]} if {
	input.action == "read"
	input.resource.uri == "test://static-binary"
}

decision := {"allow": true} if {
	input.action in {"get", "complete"}
	not hidden_prompt
	input.prompt.name != "test_prompt_with_embedded_resource"
}
"#;

/// The JSON-RPC error of a failed request.
fn rpc_error(result: Result<impl std::fmt::Debug, ServiceError>) -> (i32, String) {
    match result {
        Err(ServiceError::McpError(e)) => (e.code.0, e.message.to_string()),
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

fn text_of(contents: &ResourceContents) -> (&str, &str) {
    match contents {
        ResourceContents::TextResourceContents { uri, text, .. } => (uri, text),
        other => panic!("expected text contents, got {other:?}"),
    }
}

#[tokio::test]
async fn resources_prompts_and_completion_are_served_by_components_and_governed() {
    let s = setup(Options {
        components: &["conformance", "legacy-v01"],
        policy: Some(POLICY),
        ..Options::default()
    });
    let client = stdio_client(&s).await;
    let info = client.peer_info().expect("initialised");
    assert!(info.capabilities.resources.is_some() && info.capabilities.prompts.is_some());
    assert!(info.capabilities.completions.is_some());

    // Listing is filtered by policy.
    let mut uris: Vec<String> = client
        .list_all_resources()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.uri.clone())
        .collect();
    uris.sort();
    assert_eq!(uris, ["test://static-binary", "test://static-text"]);
    let templates = client.list_all_resource_templates().await.unwrap();
    assert_eq!(templates.len(), 1);
    assert_eq!(templates[0].uri_template, "test://template/{id}/data");
    assert_eq!(templates[0].mime_type.as_deref(), Some("application/json"));
    let mut prompts: Vec<String> = client
        .list_all_prompts()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name.clone())
        .collect();
    prompts.sort();
    assert_eq!(
        prompts,
        [
            "test_prompt_with_arguments",
            "test_prompt_with_embedded_resource",
            "test_simple_prompt"
        ]
    );

    // A fixed resource and a template read, in fresh instances.
    let read = |uri: &str| client.read_resource(ReadResourceRequestParams::new(uri));
    let text = read("test://static-text").await.unwrap();
    assert_eq!(
        text_of(&text.contents[0]),
        (
            "test://static-text",
            "This is the content of the static text resource."
        )
    );
    let data = read("test://template/a%20b/data").await.unwrap();
    let (uri, body) = text_of(&data.contents[0]);
    assert_eq!(uri, "test://template/a%20b/data");
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["id"], "a b", "the variable is percent-decoded");

    // Denied: the policy's reason, which saw the template's variables and facts.
    let (code, message) = rpc_error(read("test://template/secret-1/data").await);
    assert_eq!(code, -32010, "{message}");
    assert!(
        message.contains("id secret-1 of test://template/{id}/data from conformance is secret"),
        "{message}"
    );
    let (code, message) = rpc_error(read("test://static-binary").await);
    assert_eq!(code, -32010);
    assert!(
        message.contains("binary resources are not for agents"),
        "{message}"
    );
    // Hidden and missing resources get the same answer.
    let (hidden_code, hidden) = rpc_error(read("test://watched-resource").await);
    let (missing_code, missing) = rpc_error(read("test://nothing-here").await);
    assert_eq!((hidden_code, missing_code), (-32002, -32002));
    assert_eq!(
        hidden.replace("watched-resource", "X"),
        missing.replace("nothing-here", "X")
    );
    // A subscription needs a resource the principal may see.
    #[allow(deprecated)]
    let watched = client
        .subscribe(rmcp::model::SubscribeRequestParams::new(
            "test://watched-resource",
        ))
        .await;
    assert_eq!(rpc_error(watched).0, -32002);
    #[allow(deprecated)]
    client
        .subscribe(rmcp::model::SubscribeRequestParams::new(
            "test://static-text",
        ))
        .await
        .unwrap();

    // Prompts: arguments are checked against the declaration before anything runs.
    let get = |name: &str, args: Value| {
        let mut params = GetPromptRequestParams::new(name);
        if let Value::Object(map) = args {
            params = params.with_arguments(map);
        }
        client.get_prompt(params)
    };
    let prompt = get(
        "test_prompt_with_arguments",
        json!({"arg1": "one", "arg2": "two"}),
    )
    .await
    .unwrap();
    match &prompt.messages[0].content {
        ContentBlock::Text(t) => {
            assert_eq!(t.text, "Prompt with arguments: arg1='one', arg2='two'")
        }
        other => panic!("expected text, got {other:?}"),
    }
    let (code, message) =
        rpc_error(get("test_prompt_with_arguments", json!({"arg1": "one"})).await);
    assert_eq!(code, -32602);
    assert!(
        message.contains("required argument `arg2` is missing"),
        "{message}"
    );
    let (code, message) = rpc_error(
        get(
            "test_prompt_with_arguments",
            json!({"arg1": "1", "arg2": "2", "arg3": "3"}),
        )
        .await,
    );
    assert_eq!(code, -32602);
    assert!(message.contains("no argument `arg3`"), "{message}");
    let (code, message) = rpc_error(
        get(
            "test_prompt_with_arguments",
            json!({"arg1": 1, "arg2": "2"}),
        )
        .await,
    );
    assert_eq!(code, -32602);
    assert!(message.contains("strings"), "{message}");
    let (code, message) = rpc_error(
        get(
            "test_prompt_with_embedded_resource",
            json!({"resourceUri": "x://y"}),
        )
        .await,
    );
    assert_eq!(code, -32010);
    assert!(message.contains("no rule allows this"), "{message}");
    let (hidden_code, hidden) = rpc_error(get("test_prompt_with_image", json!({})).await);
    let (missing_code, missing) = rpc_error(get("no_such_prompt", json!({})).await);
    assert_eq!((hidden_code, missing_code), (-32602, -32602));
    assert_eq!(
        hidden.replace("test_prompt_with_image", "X"),
        missing.replace("no_such_prompt", "X")
    );

    // Completion, from the prompt's component.
    let values = client
        .complete_prompt_simple("test_prompt_with_arguments", "arg1", "test")
        .await
        .unwrap();
    assert_eq!(values, ["test", "testing", "tested"]);
    let undeclared = client
        .complete_prompt_simple("test_prompt_with_arguments", "nope", "")
        .await;
    assert_eq!(rpc_error(undeclared).0, -32602);

    // The 0.1.0 component: listed and called as before, its content upgraded.
    let result = call(&client, "legacy_echo", json!({"say": "hi"}))
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(false));
    let kinds = &result.content;
    assert!(
        matches!(&kinds[0], ContentBlock::Text(t) if t.text == r#"echo: {"say":"hi"}"#),
        "{kinds:?}"
    );
    assert!(matches!(&kinds[1], ContentBlock::Resource(_)), "{kinds:?}");
    client.cancel().await.unwrap();
}

/// Grants the workspace to reads of `hostile://file/{name}` only.
const HOSTILE_POLICY: &str = r#"
package portcullis

import rego.v1

default decision := {"allow": false}

decision := {"allow": true} if input.action in {"list", "get"}

decision := {"allow": true} if {
	input.action == "read"
	input.resource.uri == "hostile://state"
}

decision := {"allow": true, "grants": {"fs": [{"host": data.gateway.workspace, "guest": "/workspace", "mode": "ro"}]}} if {
	input.action == "read"
	input.resource.template == "hostile://file/{name}"
}
"#;

fn read_text(result: &rmcp::model::ReadResourceResult) -> String {
    text_of(&result.contents[0]).1.to_string()
}

#[tokio::test]
async fn reads_and_prompts_run_in_fresh_instances_with_only_their_grants_and_are_audited() {
    let s = setup(Options {
        components: &["hostile-items"],
        policy: Some(HOSTILE_POLICY),
        ..Options::default()
    });
    std::fs::write(s.workspace.join("notes.txt"), "granted notes").unwrap();
    std::fs::write(s.dir.path().join("outside.txt"), "CANARY-outside-7f3a").unwrap();
    let client = stdio_client(&s).await;
    let read = |uri: &str| client.read_resource(ReadResourceRequestParams::new(uri));

    // No state survives from one read to the next.
    for _ in 0..3 {
        assert_eq!(
            read_text(&read("hostile://state").await.unwrap()),
            "reads=1"
        );
    }
    // The read's own grant works...
    let granted = read_text(&read("hostile://file/notes.txt").await.unwrap());
    assert_eq!(granted, "read /workspace/notes.txt: granted notes");
    // ...and a decoded variable cannot climb out of it.
    for uri in [
        "hostile://file/..%2Foutside.txt",
        "hostile://file/%2E%2E%2Foutside.txt",
        "hostile://file/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    ] {
        let seen = read_text(&read(uri).await.unwrap());
        assert!(seen.starts_with("refused "), "{uri}: {seen}");
        assert!(
            !seen.contains("CANARY") && !seen.contains("root:"),
            "{uri}: {seen}"
        );
    }
    // A prompt without a grant has no workspace and no environment.
    let peek = client
        .get_prompt(GetPromptRequestParams::new("hostile_peek"))
        .await
        .unwrap();
    let ContentBlock::Text(t) = &peek.messages[0].content else {
        panic!("expected text")
    };
    assert!(
        t.text.starts_with("refused /workspace/notes.txt"),
        "{}",
        t.text
    );
    assert!(t.text.ends_with("env: []"), "{}", t.text);
    // Reading what the policy does not allow is denied, and nothing runs.
    let (code, _) = rpc_error(read("hostile://nothing").await);
    assert_eq!(code, -32002);
    client.cancel().await.unwrap();

    // Every read left its intent and outcome; the prompt too.
    let records = crate::audit::export(&s, &[]);
    let of = |tool: &str, kind: &str| {
        records
            .iter()
            .filter(|r| r["tool"] == tool && r["kind"] == kind)
            .count()
    };
    assert_eq!(of("resource:hostile://state", "intent"), 3);
    assert_eq!(of("resource:hostile://state", "outcome"), 3);
    assert_eq!(of("resource:hostile://file/{name}", "intent"), 4);
    assert_eq!(of("resource:hostile://file/{name}", "outcome"), 4);
    assert_eq!(of("prompt:hostile_peek", "outcome"), 1);
    let intent = records
        .iter()
        .find(|r| r["tool"] == "resource:hostile://file/{name}" && r["kind"] == "intent")
        .unwrap();
    assert_eq!(intent["args"], json!({"name": "notes.txt"}), "{intent}");
    assert_eq!(intent["component"]["name"], "hostile-items");
}

#[tokio::test]
async fn a_denied_read_over_http_keeps_its_reason_out_of_the_log() {
    let s = setup(Options {
        components: &["conformance"],
        policy: Some(POLICY),
        rust_log: "debug",
        ..Options::default()
    });
    let server = crate::gateway::http_server(&s).await;
    let client = crate::gateway::http_client(&server, crate::gateway::ALICE).await;
    let canary = "CANARY-template-id-51c9";
    let uri = format!("test://template/secret-{canary}/data");
    let (code, message) = rpc_error(
        client
            .read_resource(ReadResourceRequestParams::new(uri.as_str()))
            .await,
    );
    assert_eq!(code, -32010);
    assert!(
        message.contains(canary),
        "the agent reads the reason: {message}"
    );
    client.cancel().await.unwrap();
    let log = server.log.lock().unwrap().join("\n");
    assert!(!log.contains(canary), "{log}");
}
