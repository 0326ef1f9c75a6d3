//! The gateway as agents see it: the real binary over stdio and streamable HTTP, driven by the
//! rmcp client.

use serde_json::{Value, json};

use crate::gateway::{
    ALICE, BOB, Options, ROOT, call, http_client, http_client_without_token, http_server,
    plan_hash, raw_status, setup, stdio_client, stdio_client_as, text, tool_names,
};
use crate::support::{EXAMPLE_TOOLS, READ_TOOLS};

#[tokio::test]
async fn tools_list_is_filtered_per_principal() {
    let s = setup(Options::default());
    let server = http_server(&s).await;
    let alice = http_client(&server, ALICE).await;
    assert_eq!(tool_names(&alice).await, READ_TOOLS);
    let bob = http_client(&server, BOB).await;
    assert_eq!(tool_names(&bob).await, EXAMPLE_TOOLS);

    // Schemas and annotations come from the component.
    let tools = bob.list_all_tools().await.unwrap();
    let write = tools.iter().find(|t| t.name == "write_file").unwrap();
    let annotations = write.annotations.as_ref().unwrap();
    assert_eq!(annotations.destructive_hint, Some(true));
    assert_eq!(write.input_schema["type"], "object");
    assert!(write.input_schema["properties"]["content"].is_object());
    let list = tools.iter().find(|t| t.name == "list_dir").unwrap();
    assert!(list.output_schema.is_some());

    // Over stdio the configured principal (bob) sees the same.
    let stdio = stdio_client(&s).await;
    assert_eq!(tool_names(&stdio).await, EXAMPLE_TOOLS);
}

#[tokio::test]
async fn an_allowed_call_runs_with_its_grant() {
    let s = setup(Options::default());
    let client = stdio_client(&s).await;
    let wrote = call(
        &client,
        "write_file",
        json!({"path": "hello.txt", "content": "hi there\n"}),
    )
    .await
    .unwrap();
    assert_eq!(wrote.is_error, Some(false), "{}", text(&wrote));
    assert_eq!(
        std::fs::read_to_string(s.workspace.join("hello.txt")).unwrap(),
        "hi there\n"
    );
    assert!(plan_hash(&wrote).unwrap().starts_with("sha256:"));

    let listing = call(&client, "list_dir", json!({})).await.unwrap();
    assert_eq!(
        listing.structured_content,
        Some(
            json!({"entries": [{"path": "hello.txt", "kind": "file", "size": 9}], "truncated": false})
        )
    );
    let read = call(&client, "read_file", json!({"path": "hello.txt"}))
        .await
        .unwrap();
    assert_eq!(text(&read), "hi there\n");
}

#[tokio::test]
async fn a_denied_call_explains_itself() {
    let s = setup(Options::default());
    std::fs::create_dir(s.workspace.join(".git")).unwrap();
    std::fs::write(s.workspace.join(".git/config"), "secret").unwrap();
    let server = http_server(&s).await;
    let alice = http_client(&server, ALICE).await;

    // A field-level constraint.
    let denied = call(&alice, "read_file", json!({"path": ".git/config"}))
        .await
        .unwrap();
    assert_eq!(denied.is_error, Some(true));
    assert_eq!(
        text(&denied),
        "denied by policy: path \".git/config\" is under the protected prefix \".git/\""
    );
    assert!(plan_hash(&denied).is_some());

    // Other spellings reach policy as the same path (and the grant hides it anyway).
    for path in ["././.git/config", ".//.git/config", "./././.git/config"] {
        let hidden = call(&alice, "read_file", json!({ "path": path }))
            .await
            .unwrap();
        assert_eq!(hidden.is_error, Some(true), "{path}");
        assert!(
            !text(&hidden).contains("secret"),
            "{path}: {}",
            text(&hidden)
        );
        assert!(
            text(&hidden).contains("protected prefix"),
            "{path}: {}",
            text(&hidden)
        );
    }

    // Tools that reach the files without naming them find nothing: the grant hides them.
    let search = call(&alice, "search_text", json!({"query": "secret"}))
        .await
        .unwrap();
    let listing = call(&alice, "list_dir", json!({"recursive": true}))
        .await
        .unwrap();
    for result in [&search, &listing] {
        let everything = format!("{} {:?}", text(result), result.structured_content);
        assert!(!everything.contains(".git"), "{everything}");
        assert!(!everything.contains("secret\""), "{everything}");
    }

    // A tool alice may not list answers like a tool that does not exist.
    let hidden = call(&alice, "write_file", json!({"path": "x", "content": "y"}))
        .await
        .unwrap_err();
    let missing = call(&alice, "no_such_tool", json!({})).await.unwrap_err();
    assert!(
        hidden.to_string().contains("unknown tool `write_file`"),
        "{hidden}"
    );
    assert!(
        missing.to_string().contains("unknown tool `no_such_tool`"),
        "{missing}"
    );
    assert!(!s.workspace.join("x").exists());
}

#[tokio::test]
async fn schema_violations_are_tool_errors_before_anything_runs() {
    let s = setup(Options::default());
    let client = stdio_client(&s).await;
    let bad = call(&client, "hash", json!({"text": 5, "algorithm": "md5"}))
        .await
        .unwrap();
    assert_eq!(bad.is_error, Some(true));
    let message = text(&bad);
    assert!(
        message.starts_with("the arguments do not match the tool's input schema"),
        "{message}"
    );
    assert!(message.contains("/text"), "{message}");
    assert!(message.contains("/algorithm"), "{message}");
    // No plan, no decision, no instance.
    assert!(plan_hash(&bad).is_none());
    let unknown = call(
        &client,
        "write_file",
        json!({"path": "a", "content": "b", "extra": 1}),
    )
    .await
    .unwrap();
    assert_eq!(unknown.is_error, Some(true));
    assert!(!s.workspace.join("a").exists());
}

#[tokio::test]
async fn prod_rules_are_stricter() {
    let s = setup(Options {
        environment: "prod",
        ..Options::default()
    });
    let client = stdio_client(&s).await;
    let denied = call(
        &client,
        "write_file",
        json!({"path": "a.txt", "content": "x"}),
    )
    .await
    .unwrap();
    assert_eq!(
        text(&denied),
        "denied by policy: tool \"write_file\" changes data; in prod only the admin role may call it"
    );
}

#[tokio::test]
async fn stdio_and_http_give_the_same_decision() {
    let s = setup(Options::default());
    std::fs::write(s.workspace.join("f.txt"), "same").unwrap();
    let stdio = stdio_client(&s).await;
    let server = http_server(&s).await;
    let http = http_client(&server, BOB).await;
    for (tool, args) in [
        ("read_file", json!({"path": "f.txt"})),
        ("read_file", json!({"path": ".env"})),
        ("hash", json!({"text": "same"})),
        (
            "write_file",
            json!({"path": "f.txt", "content": "x", "mode": "overwrite"}),
        ),
    ] {
        let a = call(&stdio, tool, args.clone()).await.unwrap();
        let b = call(&http, tool, args.clone()).await.unwrap();
        assert_eq!(a.is_error, b.is_error, "{tool} {args}");
        assert_eq!(text(&a), text(&b), "{tool} {args}");
        assert_eq!(a.structured_content, b.structured_content, "{tool} {args}");
        assert_eq!(plan_hash(&a), plan_hash(&b), "{tool} {args}");
    }
}

#[tokio::test]
async fn http_front_door_rejects_bad_tokens_and_forged_headers() {
    let s = setup(Options::default());
    let server = http_server(&s).await;
    let host = server
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_string();
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let bearer = format!("Bearer {ALICE}");
    assert_eq!(
        raw_status(&server, &[("host", &host)], init).await,
        401,
        "no token"
    );
    assert_eq!(
        raw_status(
            &server,
            &[("host", &host), ("authorization", "Bearer wrong")],
            init
        )
        .await,
        401,
        "wrong token"
    );
    assert_eq!(
        raw_status(
            &server,
            &[("host", &host), ("authorization", "Basic YWxpY2U6eA==")],
            init
        )
        .await,
        401,
        "wrong scheme"
    );
    assert_eq!(
        raw_status(
            &server,
            &[("host", "evil.example"), ("authorization", &bearer)],
            init
        )
        .await,
        403,
        "forged Host"
    );
    assert_eq!(
        raw_status(
            &server,
            &[
                ("host", &host),
                ("origin", "http://evil.example"),
                ("authorization", &bearer)
            ],
            init
        )
        .await,
        403,
        "forged Origin"
    );
    assert_eq!(
        raw_status(
            &server,
            &[("host", &host), ("authorization", &bearer)],
            init
        )
        .await,
        200,
        "the same request with a good token and headers"
    );
    // The server is still serving after all that.
    let alice = http_client(&server, ALICE).await;
    assert_eq!(tool_names(&alice).await, READ_TOOLS);
}

const BROKEN_POLICY: &str = r#"package portcullis
import rego.v1
# Lists everything; every call decision is a runtime error.
decision := {"allow": true} if input.action == "list"
decision := {"allow": to_number(input.tool.name) > 0} if input.action == "call"
"#;

#[tokio::test]
async fn a_policy_error_fails_closed_and_the_gateway_keeps_serving() {
    let s = setup(Options {
        policy: Some(BROKEN_POLICY),
        ..Options::default()
    });
    let client = stdio_client(&s).await;
    for _ in 0..2 {
        let result = call(&client, "hash", json!({"text": "x"})).await.unwrap();
        assert_eq!(result.is_error, Some(true));
        // The agent gets a reference, never the policy's internals.
        let message = text(&result);
        assert!(
            message.starts_with("denied by policy: policy error (ref pe-"),
            "{message}"
        );
        assert!(!message.contains("to_number"), "{message}");
    }
    assert_eq!(tool_names(&client).await.len(), 6);
}

fn nested(depth: usize) -> Value {
    let mut value = json!("bottom");
    for _ in 0..depth {
        value = json!([value]);
    }
    value
}

#[tokio::test]
async fn deep_or_oversized_arguments_get_a_clean_error() {
    let s = setup(Options::default());
    let stdio = stdio_client(&s).await;
    let server = http_server(&s).await;
    let http = http_client(&server, BOB).await;
    for client in [&stdio, &http] {
        // Deeper than the argument cap, and deeper than serde_json's own recursion limit.
        for depth in [80, 1000] {
            let result = call(
                client,
                "json_query",
                json!({"document": nested(depth), "path": "$"}),
            )
            .await
            .unwrap();
            assert_eq!(result.is_error, Some(true));
            assert!(
                text(&result).contains("nested deeper than"),
                "{}",
                text(&result)
            );
        }
        let big = "x".repeat(2 * 1024 * 1024);
        let result = call(client, "hash", json!({"text": big})).await.unwrap();
        assert_eq!(result.is_error, Some(true));
        assert!(text(&result).contains("larger than"), "{}", text(&result));
        // Still serving.
        let ok = call(client, "hash", json!({"text": "abc"})).await.unwrap();
        assert_eq!(ok.is_error, Some(false));
    }
}

#[tokio::test]
async fn a_guest_flooding_stdout_cannot_touch_the_stdio_protocol() {
    let s = setup(Options {
        components: &["hostile-stdout", "data"],
        stdio_principal: "root",
        ..Options::default()
    });
    let client = stdio_client(&s).await;
    let flood = call(&client, "flood_stdout", json!({})).await.unwrap();
    assert_eq!(flood.is_error, Some(true));
    assert!(
        text(&flood).contains("stdout limit reached"),
        "{}",
        text(&flood)
    );
    // The protocol stream is intact: the next call works.
    let ok = call(&client, "hash", json!({"text": "abc"})).await.unwrap();
    assert_eq!(ok.is_error, Some(false));
    let _ = ROOT;
}

#[tokio::test]
async fn sighup_reloads_policy_and_a_broken_reload_keeps_the_last_good_one() {
    let allow_all = "package portcullis\nimport rego.v1\ndecision := {\"allow\": true}\n";
    let s = setup(Options {
        policy: Some(allow_all),
        ..Options::default()
    });
    let policy_file = s.dir.path().join("policies/policy.rego");
    let server = http_server(&s).await;
    let client = http_client(&server, ALICE).await;
    let hangup = |server: &crate::gateway::HttpServer| {
        let pid = server.child.id().expect("server running").to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    let hash = || call(&client, "hash", json!({"text": "x"}));
    assert_eq!(hash().await.unwrap().is_error, Some(false));

    // A broken policy: the reload fails and the last good policy stays.
    std::fs::write(&policy_file, "package portcullis\ndecision := {").unwrap();
    hangup(&server);
    server.wait_for_log("policy reload failed").await;
    assert_eq!(
        hash().await.unwrap().is_error,
        Some(false),
        "a broken reload replaced the policy"
    );

    // A good policy that lists everything and denies calls takes effect.
    let deny_calls = "package portcullis\nimport rego.v1\n\
        decision := {\"allow\": true} if input.action == \"list\"\n\
        decision := {\"allow\": false, \"reasons\": [\"closed for maintenance\"]} if input.action == \"call\"\n";
    std::fs::write(&policy_file, deny_calls).unwrap();
    hangup(&server);
    let mut denied = None;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let result = hash().await.unwrap();
        if result.is_error == Some(true) {
            denied = Some(text(&result));
            break;
        }
    }
    assert_eq!(
        denied.as_deref(),
        Some("denied by policy: closed for maintenance")
    );
}

#[tokio::test]
async fn an_anonymous_principal_only_when_configured() {
    let s = setup(Options {
        anonymous: Some("bob"),
        ..Options::default()
    });
    let server = http_server(&s).await;
    let anonymous = http_client_without_token(&server).await;
    // bob's roles, but as `anonymous`: the default policy withholds destructive tools.
    assert!(
        tool_names(&anonymous)
            .await
            .contains(&"write_file".to_string())
    );
    let write = call(
        &anonymous,
        "write_file",
        json!({"path": "a", "content": "b"}),
    )
    .await
    .unwrap();
    assert_eq!(
        text(&write),
        "denied by policy: tool \"write_file\" changes data; anonymous callers may only use read-only tools"
    );
    assert_eq!(
        call(&anonymous, "hash", json!({"text": "a"}))
            .await
            .unwrap()
            .is_error,
        Some(false)
    );
    // A wrong token is still refused, anonymous or not.
    let host = server
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_string();
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    assert_eq!(
        raw_status(
            &server,
            &[("host", &host), ("authorization", "Bearer nope")],
            ping
        )
        .await,
        401
    );
}

#[tokio::test]
async fn serve_stdio_as_picks_the_principal() {
    let s = setup(Options::default());
    let alice = stdio_client_as(&s, Some("alice")).await;
    assert_eq!(tool_names(&alice).await, READ_TOOLS);
}

const UNHONOURABLE: &str = r#"package portcullis
import rego.v1
decision := {"allow": true} if input.action == "list"
decision := {"allow": true, "grants": {"http": [{"host": "10.0.0.1"}], "secrets": ["NOPE"]}} if {
	input.action == "call"
	input.tool.name == "hash"
}
decision := {"allow": true, "grants": {"fs": [{"host": "/", "guest": "/w", "mode": "rw"}]}} if {
	input.action == "call"
	input.tool.name == "read_file"
}
decision := {"allow": true, "requires_approval": {"approvers": 0, "reason": "nobody"}, "rate": [{"key": "k", "max": 1, "window_s": 0}]} if {
	input.action == "call"
	input.tool.name == "json_query"
}
decision := {"allow": true, "limits": {"memory_mb": 100000}} if {
	input.action == "call"
	input.tool.name == "list_dir"
}
"#;

#[tokio::test]
async fn what_the_runner_cannot_honour_or_the_ceilings_forbid_is_denied_never_dropped() {
    let s = setup(Options {
        policy: Some(UNHONOURABLE),
        ..Options::default()
    });
    let client = stdio_client(&s).await;
    let cases = [
        (
            "hash",
            json!({"text": "x"}),
            "the policy grants http host `10.0.0.1`, beyond the gateway's ceiling (ceilings.http); secret NOPE is not configured ([secrets.NOPE])",
        ),
        (
            "read_file",
            json!({"path": "etc/passwd"}),
            "the policy grants directory `/`, outside the gateway's ceiling (ceilings.fs: WORKSPACE)",
        ),
        (
            "json_query",
            json!({"document": {}, "path": "$"}),
            "requires_approval.approvers must be at least 1; rate[0] (k): window_s must be between 1 and 2678400",
        ),
        (
            "list_dir",
            json!({}),
            "the policy's limits exceed the gateway's ceilings for: memory_mb",
        ),
    ];
    let workspace = s.workspace.canonicalize().unwrap();
    for (tool, args, reason) in cases {
        let result = call(&client, tool, args).await.unwrap();
        assert_eq!(result.is_error, Some(true), "{tool}");
        let reason = reason.replace("WORKSPACE", &workspace.display().to_string());
        assert_eq!(
            text(&result),
            format!("denied by policy: {reason}"),
            "{tool}"
        );
    }
}
