//! Delegated credentials (RFC 8693 token exchange) through the real binary: an http grant
//! asks for a token exchanged for the caller, the test-local issuer is the token endpoint, a
//! demo control plane records what reached it, and the `hostile-egress` component returns
//! everything it got. The upstream sees a token for the real user; the tool, the agent and the
//! log see neither that token nor the agent's own; a caller with nothing to exchange, and an
//! exchange the issuer refuses, fail before anything leaves.

use serde_json::{Value, json};

use crate::audit::export;
use crate::gateway::{ALICE, Options, call, http_client, http_server, setup, text};
use crate::idempotency::call_with_key;
use crate::issuer::{EXCHANGE_CLIENT, EXCHANGE_SECRET, Issuer, REFUSED_AUDIENCE};
use crate::upstream::ControlPlane;

const AUDIENCE: &str = "https://cp.test.example";

/// Every call gets http to the control plane with a token exchanged for the caller: for eve,
/// one for an audience the issuer refuses.
fn policy(cp: &ControlPlane) -> String {
    format!(
        r#"package portcullis
import rego.v1
decision := {{"allow": true}} if input.action == "list"
audience := "{REFUSED_AUDIENCE}" if input.principal.id == "eve" else := "{AUDIENCE}"
decision := {{"allow": true, "limits": {{"timeout_ms": 15000}}, "grants": {{"http": [{{
	"host": "{host}", "schemes": ["http"], "ports": [{port}],
	"inject": {{"header": "Authorization", "format": "Bearer {{}}",
		"exchange": {{"audience": audience, "scope": "services:read"}}}},
}}]}}}} if input.action == "call"
"#,
        host = cp.host,
        port = cp.port
    )
}

async fn echo(client: &crate::gateway::Client, cp: &ControlPlane) -> (Value, String) {
    let result = call(
        client,
        "request",
        json!({"method": "GET", "url": format!("{}/debug/echo", cp.url)}),
    )
    .await
    .unwrap();
    let all = format!("{result:?}");
    let hop = result
        .structured_content
        .as_ref()
        .and_then(|s| s["hops"].get(0).cloned())
        .unwrap_or(Value::Null);
    (hop, all)
}

#[tokio::test]
async fn a_grant_injects_a_token_exchanged_for_the_caller_and_nothing_else() {
    let issuer = Issuer::start().await;
    let cp = ControlPlane::start("127.0.0.1", "control-plane-token-1").await;
    let secrets = tempfile::tempdir().unwrap();
    let client_secret = secrets.path().join("client");
    std::fs::write(&client_secret, EXCHANGE_SECRET).unwrap();
    let extra = format!(
        "{}\n[secrets]\nEXCHANGE = {{ file = \"{}\" }}\n\n[ceilings]\nhttp = [\"127.0.0.0/8\"]\n\n\
         [token_exchange]\ntoken_endpoint = \"{}/token\"\nclient_id = \"{EXCHANGE_CLIENT}\"\nclient_secret = \"EXCHANGE\"\n",
        issuer.config(""),
        client_secret.display(),
        issuer.url
    );
    let policy = policy(&cp);
    let s = setup(Options {
        components: &["hostile-egress"],
        policy: Some(&policy),
        rust_log: "portcullis=debug",
        extra: &extra,
        ..Options::default()
    });
    let server = http_server(&s).await;

    // ada's call reaches the upstream with a token the issuer made for ada and this audience.
    let ada_token = issuer.token("ada", json!({}));
    let ada = http_client(&server, &ada_token).await;
    let (hop, all) = echo(&ada, &cp).await;
    assert_eq!(hop["status"], 200, "{all}");
    let seen = cp.requests().await;
    let delegated = format!("xchg.ada.{AUDIENCE}.0");
    assert_eq!(
        seen.last().unwrap()["headers"]["authorization"],
        format!("Bearer {delegated}")
    );
    // The upstream echoed it back: the tool and the agent get the scrub marker instead.
    assert!(
        all.contains(&format!(
            "[redacted:exchanged:aud={AUDIENCE};scope=services:read]"
        )),
        "{all}"
    );
    assert!(
        !all.contains("xchg."),
        "the delegated token reached the tool: {all}"
    );
    let exchanges = issuer.exchanges();
    assert_eq!(exchanges.len(), 1);
    let form = &exchanges[0].form;
    assert!(exchanges[0].client_ok, "the gateway's client credentials");
    assert_eq!(
        form["subject_token"], ada_token,
        "the subject is ada's token"
    );
    assert_eq!(form["audience"], AUDIENCE);
    assert_eq!(form["scope"], "services:read");

    // The next call of ada's reuses the token; bo gets one of his own.
    let (hop, _) = echo(&ada, &cp).await;
    assert_eq!(hop["status"], 200);
    assert_eq!(
        issuer.exchanges().len(),
        1,
        "ada's token was exchanged again"
    );
    let bo = http_client(&server, &issuer.token("bo", json!({}))).await;
    let (hop, _) = echo(&bo, &cp).await;
    assert_eq!(hop["status"], 200);
    assert_eq!(issuer.exchanges().len(), 2);
    assert_eq!(
        cp.requests().await.last().unwrap()["headers"]["authorization"],
        format!("Bearer xchg.bo.{AUDIENCE}.1")
    );

    // A caller with a static token has nothing to exchange; eve's exchange is refused. Neither
    // call starts its tool, and nothing reaches the upstream or falls back to a credential.
    let before = cp.requests().await.len();
    let alice = http_client(&server, ALICE).await;
    let (hop, all) = echo(&alice, &cp).await;
    assert_eq!(hop, Value::Null, "{all}");
    assert!(all.contains("no OAuth access token to exchange"), "{all}");
    let eve = http_client(&server, &issuer.token("eve", json!({}))).await;
    let (hop, all) = echo(&eve, &cp).await;
    assert_eq!(hop, Value::Null, "{all}");
    assert!(
        all.contains("invalid_target: no tokens for that audience"),
        "{all}"
    );
    // Under an idempotency key, a refused exchange leaves the key free: the repeat, once the
    // failure is no longer remembered, asks the issuer again instead of replaying a failure.
    let args = json!({"method": "GET", "url": format!("{}/debug/echo", cp.url)});
    let first = call_with_key(&eve, "request", args.clone(), "eve-1").await;
    assert!(
        text(&first).contains("no delegated credential, so the call did not run"),
        "{first:?}"
    );
    let asked = issuer.exchanges().len();
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let again = call_with_key(&eve, "request", args, "eve-1").await;
    assert!(text(&again).contains("invalid_target"), "{again:?}");
    assert_eq!(
        issuer.exchanges().len(),
        asked + 1,
        "the key kept the failure"
    );
    assert_eq!(
        cp.requests().await.len(),
        before,
        "a refused call sent a request"
    );
    // Each refusal is in the audit trail as one, with its reason; none has an intent.
    let refused = export(&s, &["--outcome", "delegation"]);
    assert_eq!(refused.len(), 4, "{refused:?}");
    for r in &refused {
        assert_eq!(r["kind"], "refused");
        assert!(
            r["reason"]
                .as_str()
                .unwrap()
                .contains("no delegated credential"),
            "{r}"
        );
    }
    let intents = export(&s, &["--kind", "intent"]);
    assert!(
        intents
            .iter()
            .all(|r| r["principal"] != "eve" && r["principal"] != "alice"),
        "{intents:?}"
    );

    // The agents' tokens never reached the upstream; no token is in the gateway's log.
    let upstream = serde_json::to_string(&cp.requests().await).unwrap();
    assert!(!upstream.contains(&ada_token));
    let log = server.log.lock().unwrap().join("\n");
    let trail = serde_json::to_string(&export(&s, &[])).unwrap();
    for secret in [ada_token.as_str(), delegated.as_str(), EXCHANGE_SECRET] {
        assert!(!log.contains(secret), "{secret} is in the log");
        assert!(!trail.contains(secret), "{secret} is in the audit trail");
    }
    assert!(log.contains("exchanged the caller's access token"), "{log}");
    for client in [ada, bo, alice, eve] {
        client.cancel().await.unwrap();
    }
}

/// The README's delegation example, with its configuration taken from the README: the dev
/// issuer as identity provider and token endpoint, the demo control plane as the upstream,
/// the default policy's `http_fetch`.
#[tokio::test]
async fn the_readme_delegation_example_works() {
    use base64::Engine;
    let readme = std::fs::read_to_string(crate::support::root().join("README.md")).unwrap();
    assert!(readme.contains("export EXCHANGE_SECRET=dev-exchange-secret"));
    let toml = readme
        .split_once("cat > delegate.toml <<'TOML'\n")
        .and_then(|(_, rest)| rest.split_once("\nTOML\n"))
        .expect("the README's delegate.toml")
        .0;
    let (script, _issuer, url) = crate::issuer::dev_issuer().await;
    let cp = ControlPlane::start("127.0.0.1", "control-plane-token-2").await;
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("exchange");
    std::fs::write(&secret, "dev-exchange-secret").unwrap();
    let config = toml
        .replace("http://127.0.0.1:9400", &url)
        .replace("8091", &cp.port.to_string())
        .replace(
            "{ env = \"EXCHANGE_SECRET\" }",
            &format!("{{ file = \"{}\" }}", secret.display()),
        );
    let s = setup(Options {
        components: &["fetch"],
        extra: &config,
        ..Options::default()
    });
    let server = http_server(&s).await;
    let out = std::process::Command::new(&script)
        .args([
            "token", "--sub", "ada", "--roles", "reader", "--issuer", &url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let ada = http_client(&server, &token).await;
    let result = call(
        &ada,
        "http_fetch",
        json!({"url": format!("{}/debug/echo", cp.url)}),
    )
    .await
    .unwrap();
    let all = format!("{result:?}");
    let audience = format!("http://127.0.0.1:{}", cp.port);
    assert_eq!(result.is_error, Some(false), "{all}");
    assert!(
        all.contains(&format!(
            "[redacted:exchanged:aud={audience};scope=services:read]"
        )),
        "{all}"
    );
    // The upstream got a token the issuer made for ada, for it, on behalf of portcullis.
    let seen = cp.requests().await;
    let header = seen.last().unwrap()["headers"]["authorization"]
        .as_str()
        .unwrap()
        .to_string();
    let delegated = header.strip_prefix("Bearer ").expect("a bearer token");
    assert_ne!(delegated, token, "the agent's own token went upstream");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(delegated.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "ada");
    assert_eq!(claims["aud"], audience.as_str());
    assert_eq!(claims["act"]["sub"], "portcullis");
    assert_eq!(claims["scope"], "services:read");
    ada.cancel().await.unwrap();
}
