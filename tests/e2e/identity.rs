//! `/mcp` as an OAuth 2.1 resource server, against the real binary and a test-local issuer:
//! valid tokens work over a real MCP client and their claims reach policy; every way of
//! forging or misusing a token is refused with 401 and a challenge that points at the
//! protected resource metadata; a missing scope is a 403 naming it; the issuer's keys are
//! fetched again for an unknown `kid`, but not for every one; tokens never reach the log.

use std::sync::atomic::Ordering;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

use crate::gateway::{
    ALICE, HttpServer, Options, call, http_client, http_server, post, raw_http, setup, text,
    tool_names,
};
use crate::issuer::{Issuer, RESOURCE, SigningKey, now, unsigned};
use crate::support::SHA256_ABC;

/// `hash` for the research department's readers who came with an OAuth token; the reason
/// names what policy saw otherwise.
const POLICY: &str = r#"package portcullis
import rego.v1
decision := {"allow": true} if input.action == "list"
allowed if {
	input.principal.authenticated_by == "oauth"
	input.principal.claims.department == "research"
	"reader" in input.principal.roles
}
decision := {"allow": true} if {
	input.action == "call"
	allowed
}
decision := {"allow": false, "reasons": [sprintf("%v of %v with roles %v may not", [input.principal.id, object.get(input.principal.claims, "department", "-"), input.principal.roles])]} if {
	input.action == "call"
	not allowed
}
"#;

const CALL_HASH: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hash","arguments":{"text":"abc"}}}"#;
const CALL_WRITE: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"a.txt","content":"x"}}}"#;

const METADATA_URL: &str = "https://mcp.test.example/.well-known/oauth-protected-resource/mcp";

async fn gateway(issuer: &Issuer, oauth_extra: &str) -> (crate::gateway::Setup, HttpServer) {
    let extra = issuer.config(&format!(
        "roles_claim = \"realm_access.roles\"\nscopes = [\"mcp\"]\n{oauth_extra}\n[oauth.tool_scopes]\nwrite_file = [\"files:write\"]\n"
    ));
    let s = setup(Options {
        policy: Some(POLICY),
        rust_log: "portcullis=debug",
        extra: &extra,
        ..Options::default()
    });
    let server = http_server(&s).await;
    (s, server)
}

/// Status line and headers of a raw answer, lower-cased, and its body.
fn parse(response: &str) -> (u16, String, String) {
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_string())
}

fn challenge(head: &str) -> String {
    head.lines()
        .find_map(|l| l.strip_prefix("www-authenticate: "))
        .unwrap_or_else(|| panic!("no WWW-Authenticate in {head}"))
        .to_string()
}

async fn send(server: &HttpServer, token: &str, body: &str) -> (u16, String, String) {
    parse(&raw_http(server, &post(server, token, "", body)).await)
}

fn reader(department: &str, scope: &str) -> serde_json::Value {
    json!({"department": department, "realm_access": {"roles": ["reader"]}, "scope": scope})
}

#[tokio::test]
async fn a_valid_token_works_and_its_claims_reach_policy() {
    let issuer = Issuer::start().await;
    let (_s, server) = gateway(&issuer, "").await;
    let token = issuer.token("ada", reader("research", "mcp"));
    // A real MCP client with the token: lists and calls.
    let client = http_client(&server, &token).await;
    assert!(tool_names(&client).await.contains(&"hash".to_string()));
    let result = call(&client, "hash", json!({"text": "abc"})).await.unwrap();
    assert_eq!(result.is_error, Some(false), "{}", text(&result));
    assert!(text(&result).contains(SHA256_ABC));
    // Another department: policy saw the subject, the claim and the roles from the claim path.
    let sales = http_client(&server, &issuer.token("bo", reader("sales", "mcp"))).await;
    let denied = call(&sales, "hash", json!({"text": "abc"})).await.unwrap();
    assert_eq!(denied.is_error, Some(true));
    assert!(
        text(&denied).contains("bo of sales with roles") && text(&denied).contains("reader"),
        "{}",
        text(&denied)
    );
    // Static tokens keep working beside OAuth (policy refuses them: not oauth).
    let (status, _, body) = send(&server, ALICE, CALL_HASH).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("alice of - with roles"), "{body}");
    // The issuer's keys were fetched once, for all of this.
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn forged_and_misused_tokens_get_401_with_a_challenge() {
    let issuer = Issuer::start().await;
    let (_s, server) = gateway(&issuer, "").await;
    let good = issuer.claims("eve", reader("research", "mcp"));
    let es = &issuer.es;
    let stranger = SigningKey::es256("es-1"); // same kid, another key
    let unknown = SigningKey::es256("not-published");
    // One character in the middle of the signature changed (the last one may be padding bits).
    let mut tampered = es.sign(&good).into_bytes();
    let at = tampered.len() - 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let hmac = |secret: &[u8]| {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(es.kid.clone());
        encode(&header, &good, &EncodingKey::from_secret(secret).unwrap()).unwrap()
    };
    let with = |change: serde_json::Value| {
        let mut claims = good.clone();
        for (k, v) in change.as_object().unwrap() {
            claims[k] = v.clone();
        }
        es.sign(&claims)
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "wrong audience",
            with(json!({"aud": "https://other.example/mcp"})),
            "not for this resource",
        ),
        (
            "wrong issuer",
            with(json!({"iss": "https://evil.example"})),
            "another issuer",
        ),
        ("expired", with(json!({"exp": now() - 600})), "has expired"),
        (
            "not yet valid",
            with(json!({"nbf": now() + 600})),
            "not valid yet",
        ),
        (
            "no expiry",
            es.sign(&json!({"iss": issuer.url, "aud": RESOURCE, "sub": "eve"})),
            "no exp",
        ),
        ("no subject", with(json!({"sub": null})), "subject"),
        (
            "alg none",
            unsigned(&json!({"alg": "none", "kid": es.kid}), &good, b""),
            "not a JWT",
        ),
        (
            "HMAC with the published JWK",
            hmac(es.jwk.to_string().as_bytes()),
            "algorithm is not accepted",
        ),
        (
            "HMAC with the raw public key",
            hmac(&es.public),
            "algorithm is not accepted",
        ),
        (
            "RS256 header on the EC key",
            unsigned(&json!({"alg": "RS256", "kid": es.kid}), &good, &[7; 256]),
            "does not match",
        ),
        (
            "unknown kid",
            unknown.sign(&good),
            "not one of the issuer's keys",
        ),
        (
            "same kid, another key",
            stranger.sign(&good),
            "does not verify",
        ),
        ("tampered signature", tampered, "does not verify"),
        (
            "not a JWT at all",
            "opaque-token-of-no-one".to_string(),
            "not a JWT",
        ),
    ];
    for (what, token, why) in &cases {
        let (status, head, body) = send(&server, token, CALL_HASH).await;
        assert_eq!(status, 401, "{what}: {body}");
        let c = challenge(&head);
        assert!(
            c.starts_with("bearer ")
                && c.contains(&format!("resource_metadata=\"{METADATA_URL}\""))
                && c.contains("error=\"invalid_token\""),
            "{what}: {c}"
        );
        assert!(body.contains(why), "{what}: {body}");
    }
    // No token: a challenge without an error, naming the scope every request needs.
    let bare = format!(
        "POST /mcp HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{CALL_HASH}",
        server.addr(),
        CALL_HASH.len()
    );
    let (status, head, _) = parse(&raw_http(&server, &bare).await);
    assert_eq!(status, 401);
    assert_eq!(
        challenge(&head),
        format!("bearer resource_metadata=\"{METADATA_URL}\", scope=\"mcp\"")
    );
    // The unknown kid came within `jwks_min_refresh` (30 s) of the fetch at start: no
    // other fetch (the refetch itself is tested with a short interval below).
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 1);
    // No token, and no signature of one, reached the log (at debug).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = server.log.lock().unwrap().join("\n");
    for (what, token, _) in &cases {
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            !log.contains(token.as_str()) && (signature.len() < 8 || !log.contains(signature)),
            "{what}: the token is in the log"
        );
    }
}

#[tokio::test]
async fn scopes_are_required_per_request_and_per_tool() {
    let issuer = Issuer::start().await;
    let (_s, server) = gateway(&issuer, "").await;
    // Without the scope every request needs.
    let none = issuer.token("ada", reader("research", "email"));
    let (status, head, body) = send(&server, &none, CALL_HASH).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("lacks the scope mcp"), "{body}");
    let c = challenge(&head);
    assert!(
        c.contains("error=\"insufficient_scope\"") && c.contains("scope=\"mcp\""),
        "{c}"
    );
    // `mcp` is enough for hash, not for write_file, whose challenge asks for both.
    let mcp = issuer.token("ada", reader("research", "mcp"));
    assert_eq!(send(&server, &mcp, CALL_HASH).await.0, 200);
    let (status, head, body) = send(&server, &mcp, CALL_WRITE).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("lacks the scope files:write"), "{body}");
    assert!(challenge(&head).contains("scope=\"files:write mcp\""));
    // `scp` as a list is read too.
    let both = issuer.token(
        "ada",
        json!({"department": "research", "realm_access": {"roles": ["reader"]}, "scp": ["mcp", "files:write"]}),
    );
    let (status, _, body) = send(&server, &both, CALL_WRITE).await;
    assert_eq!(status, 200, "{body}");
    // A body that hides its method (a batch) is refused, not guessed.
    let batch = format!("[{CALL_WRITE}]");
    assert_eq!(send(&server, &mcp, &batch).await.0, 400);
    // A writer sees write_file listed only with the scope to call it.
    let writer = |scope: &str| {
        issuer.token(
            "wes",
            json!({"department": "research", "realm_access": {"roles": ["writer"]}, "scope": scope}),
        )
    };
    let without = http_client(&server, &writer("mcp")).await;
    let listed = tool_names(&without).await;
    assert!(listed.contains(&"hash".to_string()), "{listed:?}");
    assert!(!listed.contains(&"write_file".to_string()), "{listed:?}");
    let with = http_client(&server, &writer("mcp files:write")).await;
    assert!(tool_names(&with).await.contains(&"write_file".to_string()));
    for client in [without, with] {
        client.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn the_protected_resource_metadata_is_served() {
    let issuer = Issuer::start().await;
    let (_s, server) = gateway(&issuer, "").await;
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let request = format!(
            "GET {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n",
            server.addr()
        );
        let (status, head, body) = parse(&raw_http(&server, &request).await);
        assert_eq!(status, 200, "{path}: {body}");
        assert!(head.contains("content-type: application/json"));
        let document: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(document["resource"], RESOURCE);
        assert_eq!(document["authorization_servers"], json!([issuer.url]));
        assert_eq!(document["scopes_supported"], json!(["files:write", "mcp"]));
        assert_eq!(document["bearer_methods_supported"], json!(["header"]));
        // A forged Host is refused before anything is served.
        let forged = request.replace(&server.addr(), "evil.example");
        assert_eq!(parse(&raw_http(&server, &forged).await).0, 403);
    }
}

#[tokio::test]
async fn a_rotated_key_is_fetched_when_a_token_names_it() {
    let issuer = Issuer::start().await;
    let (_s, server) = gateway(&issuer, "jwks_min_refresh = \"1s\"\njwks_max_age = \"1h\"").await;
    let rsa = SigningKey::rs256("rs-2");
    let claims = issuer.claims("ada", reader("research", "mcp"));
    // Not published yet: refused, after one fetch for it.
    assert_eq!(send(&server, &rsa.sign(&claims), CALL_HASH).await.0, 401);
    let fetched = issuer.fetches.load(Ordering::SeqCst);
    // Published (RS256): accepted once the interval has passed.
    issuer.publish(&rsa);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, body) = send(&server, &rsa.sign(&claims), CALL_HASH).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(SHA256_ABC), "{body}");
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), fetched + 1);
    // A flood of made-up kids costs the issuer at most one fetch per interval.
    for n in 0..20 {
        let forged = SigningKey::es256(&format!("made-up-{n}"));
        assert_eq!(send(&server, &forged.sign(&claims), CALL_HASH).await.0, 401);
    }
    assert!(issuer.fetches.load(Ordering::SeqCst) <= fetched + 3);
}

/// The README's walkthrough, with `scripts/dev-issuer` as the identity provider.
#[tokio::test]
async fn the_readme_identity_example_works() {
    let (script, _issuer, url) = crate::issuer::dev_issuer().await;
    let extra = format!(
        "[oauth]\nissuer = \"{url}\"\nresource = \"http://127.0.0.1:8080/mcp\"\nscopes = [\"mcp\"]\n\
         [oauth.tool_scopes]\nwrite_file = [\"files:write\"]\n"
    );
    let s = setup(Options {
        extra: &extra,
        ..Options::default()
    });
    let server = http_server(&s).await;
    let out = std::process::Command::new(&script)
        .args([
            "token", "--sub", "ada", "--roles", "reader", "--scope", "mcp", "--issuer", &url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let (status, _, body) = send(&server, &token, CALL_HASH).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(SHA256_ABC), "{body}");
    assert_eq!(send(&server, &token, CALL_WRITE).await.0, 403);
    let bare = format!(
        "POST /mcp HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}",
        server.addr()
    );
    let (status, head, _) = parse(&raw_http(&server, &bare).await);
    assert_eq!(status, 401);
    assert!(challenge(&head).contains(
        "resource_metadata=\"http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp\""
    ));
}
