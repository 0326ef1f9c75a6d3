//! Outbound HTTP, attacked for real: the real binary, an rmcp client, the `hostile-egress`
//! component (which sends whatever it is told and returns everything it got), and demo
//! control planes on loopback as upstreams that record what reached them.

use serde_json::{Value, json};

use crate::gateway::{Client, Options, Setup, call, http_server, setup, stdio_client, text};
use crate::upstream::ControlPlane;

const TOKEN: &str = "egress-canary-4d1f8b2a";
const CANARY: &str = "secret-canary-93e7c0aa";

/// A policy that allows everything it lists and grants `grants` (JSON) to every call.
fn policy(grants: &Value) -> &'static str {
    Box::leak(
        format!(
            "package portcullis\nimport rego.v1\n\
             decision := {{\"allow\": true}} if input.action == \"list\"\n\
             decision := {{\"allow\": true, \"grants\": {grants}, \"limits\": {{\"timeout_ms\": 15000}}}} if input.action == \"call\"\n"
        )
        .into_boxed_str(),
    )
}

/// A gateway with the hostile component, `grants` for every call, and `extra` configuration.
fn egress_setup(grants: Value, extra: &str) -> (Setup, tempfile::TempDir) {
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("token");
    let canary = secrets.path().join("canary");
    std::fs::write(&token, TOKEN).unwrap();
    std::fs::write(&canary, CANARY).unwrap();
    let extra = format!(
        "[secrets]\nCP_TOKEN = {{ file = \"{}\" }}\nCANARY = {{ file = \"{}\" }}\n\n\
         [ceilings]\nhttp = [\"*\", \"127.0.0.0/8\"]\n\n{extra}\n",
        token.display(),
        canary.display()
    );
    let s = setup(Options {
        components: &["hostile-egress"],
        policy: Some(policy(&grants)),
        extra: Box::leak(extra.into_boxed_str()),
        ..Options::default()
    });
    (s, secrets)
}

fn http_grant(cp: &ControlPlane) -> Value {
    json!({"host": cp.host, "schemes": ["http"], "ports": [cp.port]})
}

/// Every hop of a `request` call: `{url, status, headers, body, error}`.
async fn request(client: &Client, args: Value) -> (Vec<Value>, String) {
    let result = call(client, "request", args).await.unwrap();
    let all = format!("{result:?}");
    let hops = result
        .structured_content
        .as_ref()
        .and_then(|s| s["hops"].as_array().cloned())
        .unwrap_or_else(|| panic!("no hops in {all}"));
    (hops, all)
}

fn error(hop: &Value) -> String {
    hop["error"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn an_injected_credential_goes_only_to_its_host_and_never_comes_back() {
    let cp = ControlPlane::start("127.0.0.1", TOKEN).await;
    let other = ControlPlane::start("127.0.0.2", "other-token-123").await;
    let mut with_token = http_grant(&cp);
    with_token["inject"] =
        json!({"header": "Authorization", "secret": "CP_TOKEN", "format": "Bearer {}"});
    let (s, _keep) = egress_setup(json!({"http": [with_token, http_grant(&other)]}), "");
    let client = stdio_client(&s).await;

    // The upstream reflects the credential in its body and a header: the tool sees neither.
    let (hops, all) = request(
        &client,
        json!({"method": "GET", "url": format!("{}/debug/echo", cp.url),
               "headers": {"authorization": "Bearer forged-by-the-tool"}}),
    )
    .await;
    assert_eq!(hops[0]["status"], 200, "{all}");
    assert!(all.contains("[redacted:CP_TOKEN]"), "{all}");
    assert!(
        !all.contains(TOKEN),
        "the credential reached the tool or the agent: {all}"
    );
    let seen = cp.requests().await;
    assert_eq!(
        seen.last().unwrap()["headers"]["authorization"],
        format!("Bearer {TOKEN}"),
        "the gateway's credential replaced the tool's"
    );

    // A redirect to another host is not followed by the gateway…
    let to = format!("{}/debug/echo", other.url);
    let redirect = format!("{}/debug/redirect?to={to}", cp.url);
    let (hops, _) = request(&client, json!({"method": "GET", "url": redirect})).await;
    assert_eq!(hops.len(), 1);
    assert_eq!(hops[0]["status"], 302);
    assert!(
        other.requests().await.is_empty(),
        "the gateway followed a redirect"
    );
    // …and when the tool follows it, the credential does not go along.
    let (hops, all) = request(
        &client,
        json!({"method": "GET", "url": redirect, "follow_redirects": true}),
    )
    .await;
    assert_eq!(hops.len(), 2, "{all}");
    assert_eq!(hops[1]["status"], 200, "{all}");
    let there = other.requests().await;
    assert_eq!(there.len(), 1);
    assert_ne!(
        there[0]["headers"]["authorization"],
        format!("Bearer {TOKEN}")
    );
    assert!(!all.contains(TOKEN));

    // The tool cannot ask for the injected credential either.
    let asked = call(
        &client,
        "read_secret",
        json!({"name": "CP_TOKEN", "sink": "result"}),
    )
    .await
    .unwrap();
    assert!(
        text(&asked).contains("secret unavailable"),
        "{}",
        text(&asked)
    );
    assert!(!format!("{asked:?}").contains(TOKEN));

    // A compressed answer to a request that carried the credential is refused.
    let (hops, all) = request(
        &client,
        json!({"method": "GET", "url": format!("{}/debug/gzip-echo", cp.url)}),
    )
    .await;
    assert!(error(&hops[0]).contains("compressed"), "{all}");
    assert!(!all.contains(TOKEN));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn what_the_grant_does_not_name_is_refused_before_it_leaves() {
    let cp = ControlPlane::start("127.0.0.1", TOKEN).await;
    let mut grant = http_grant(&cp);
    grant["paths"] = json!(["/debug/"]);
    let (s, _keep) = egress_setup(json!({"http": [grant]}), "");
    let client = stdio_client(&s).await;
    let base = &cp.url;
    let port = cp.port;
    for (method, url, want) in [
        (
            "GET",
            format!("https://127.0.0.1:{port}/debug/ping"),
            "scheme https is not granted",
        ),
        (
            "GET",
            format!("http://127.0.0.1:{}/debug/ping", port + 1),
            "is not granted for host 127.0.0.1",
        ),
        (
            "POST",
            format!("{base}/debug/ping"),
            "method POST is not granted",
        ),
        (
            "GET",
            format!("{base}/v1/services"),
            "is not under a granted prefix",
        ),
        (
            "GET",
            format!("{base}/debug/../v1/services"),
            "is not under a granted prefix",
        ),
        (
            "GET",
            format!("{base}/debug/%2e%2e/v1/services"),
            "is not under a granted prefix",
        ),
        (
            "GET",
            format!("http://127.0.0.2:{port}/debug/ping"),
            "host 127.0.0.2 is not granted",
        ),
        (
            "GET",
            format!("http://localhost:{port}/debug/ping"),
            "host localhost is not granted",
        ),
        (
            "GET",
            format!("http://user@127.0.0.1:{port}/debug/ping"),
            "user information",
        ),
    ] {
        let (hops, all) = request(&client, json!({"method": method, "url": url})).await;
        let e = error(&hops[0]);
        assert!(
            e.contains("denied by the gateway") && e.contains(want),
            "{url}: {all}"
        );
    }
    assert!(
        cp.requests().await.is_empty(),
        "a refused request reached the upstream"
    );
    // The granted address in other spellings is the granted address.
    for spelling in ["2130706433", "0x7f.1", "127.1", "0177.0.0.1"] {
        let url = format!("http://{spelling}:{port}/debug/ping");
        let (hops, all) = request(&client, json!({"method": "GET", "url": url})).await;
        assert_eq!(hops[0]["status"], 200, "{spelling}: {all}");
    }
    assert_eq!(cp.requests().await.len(), 4);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn names_that_resolve_to_private_or_metadata_addresses_are_refused() {
    let cp = ControlPlane::start("127.0.0.1", TOKEN).await;
    let port = cp.port;
    let names = [
        "cp.test",
        "meta.test",
        "mapped.test",
        "mixed.test",
        "nat64.test",
    ];
    let grants: Vec<Value> = names
        .iter()
        .map(|n| json!({"host": n, "schemes": ["http"], "ports": [port]}))
        .chain([json!({"host": "ok.test", "schemes": ["http"], "ports": [port], "allow_private": ["127.0.0.1"]})])
        .collect();
    let resolve = r#"[egress.resolve]
"cp.test" = ["127.0.0.1"]
"ok.test" = ["127.0.0.1"]
"meta.test" = ["169.254.169.254"]
"mapped.test" = ["::ffff:127.0.0.1"]
"mixed.test" = ["93.184.216.34", "10.0.0.1"]
"nat64.test" = ["64:ff9b::a9fe:a9fe"]
"#;
    let (s, _keep) = egress_setup(json!({"http": grants}), resolve);
    let client = stdio_client(&s).await;
    for (name, want) in [
        ("cp.test", "resolves to 127.0.0.1, a loopback address"),
        ("meta.test", "a cloud metadata address"),
        ("mapped.test", "a loopback address"),
        ("mixed.test", "resolves to 10.0.0.1, a private address"),
        ("nat64.test", "a cloud metadata address"),
    ] {
        let url = format!("http://{name}:{port}/debug/ping");
        let (hops, all) = request(&client, json!({"method": "GET", "url": url})).await;
        assert!(error(&hops[0]).contains(want), "{name}: {all}");
    }
    assert!(cp.requests().await.is_empty());
    let url = format!("http://ok.test:{port}/debug/ping");
    let (hops, all) = request(&client, json!({"method": "GET", "url": url})).await;
    assert_eq!(
        hops[0]["status"], 200,
        "a grant that names the address may reach it: {all}"
    );
    assert_eq!(
        cp.requests().await[0]["headers"]["host"],
        format!("ok.test:{port}")
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn grants_beyond_the_ceiling_are_denied() {
    let (s, _keep) = egress_setup(
        json!({"http": [{"host": "169.254.169.254", "schemes": ["http"]}]}),
        "",
    );
    let client = stdio_client(&s).await;
    let result = call(
        &client,
        "request",
        json!({"method": "GET", "url": "http://169.254.169.254/"}),
    )
    .await
    .unwrap();
    assert_eq!(result.is_error, Some(true));
    assert!(
        text(&result).contains("beyond the gateway's ceiling (ceilings.http)"),
        "{}",
        text(&result)
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn huge_slow_and_trickling_answers_and_bursts_hit_their_caps() {
    let cp = ControlPlane::start("127.0.0.1", TOKEN).await;
    let mut grant = http_grant(&cp);
    grant["methods"] = json!(["GET", "POST"]);
    let caps = "[egress]\nmax_response_body = \"64KiB\"\nmax_request_body = \"16KiB\"\n\
                between_bytes_timeout = \"300ms\"\nfirst_byte_timeout = \"500ms\"\n\
                max_requests = 5\nmax_concurrent = 2\n";
    let (s, _keep) = egress_setup(json!({"http": [grant]}), caps);
    let client = stdio_client(&s).await;
    let base = &cp.url;
    for (url, want) in [
        (
            format!("{base}/debug/big?bytes=1000000"),
            "exceeds the gateway's limit of 64 KiB",
        ),
        (
            format!("{base}/debug/trickle?chunks=5&delay_ms=1000"),
            "timeout",
        ),
        (format!("{base}/debug/slow?delay_ms=3000"), "timeout"),
    ] {
        let (hops, all) = request(&client, json!({"method": "GET", "url": url})).await;
        assert!(
            error(&hops[0])
                .to_lowercase()
                .contains(&want.to_lowercase()),
            "{url}: {all}"
        );
    }
    let upload = call(
        &client,
        "upload",
        json!({"url": format!("{base}/debug/echo"), "bytes": 100000}),
    )
    .await
    .unwrap();
    assert!(
        text(&upload).contains("request body exceeds the gateway's limit of 16 KiB"),
        "{}",
        text(&upload)
    );
    let burst = call(
        &client,
        "burst",
        json!({"url": format!("{base}/debug/ping"), "count": 8, "concurrent": false}),
    )
    .await
    .unwrap();
    assert!(
        text(&burst).contains("more than 5 requests"),
        "{}",
        text(&burst)
    );
    let egress = &burst.meta.as_ref().unwrap().0["portcullis/egress"];
    assert_eq!(
        egress.as_array().unwrap().len(),
        8,
        "every request is in the report"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn secrets_resolve_only_by_grant_and_never_reach_any_sink() {
    let cp = ControlPlane::start("127.0.0.1", TOKEN).await;
    let mut grant = http_grant(&cp);
    grant["methods"] = json!(["GET", "POST"]);
    let (s, _keep) = egress_setup(json!({"http": [grant], "secrets": ["CANARY"]}), "");
    let mut s = s;
    s.rust_log = "portcullis=debug,info".into();
    let server = http_server(&s).await;
    let client = crate::gateway::http_client(&server, crate::gateway::BOB).await;
    let not_granted = call(
        &client,
        "read_secret",
        json!({"name": "CP_TOKEN", "sink": "result"}),
    )
    .await
    .unwrap();
    assert!(
        text(&not_granted).contains("secret unavailable: secret `CP_TOKEN` is not granted"),
        "{}",
        text(&not_granted)
    );
    let mut everything = format!("{not_granted:?}");
    for sink in ["result", "log", "stderr", "error", "http"] {
        let mut args = json!({"name": "CANARY", "sink": sink});
        if sink == "http" {
            args["url"] = json!(format!("{}/debug/echo", cp.url));
        }
        let result = call(&client, "read_secret", args).await.unwrap();
        let all = format!("{result:?}");
        assert!(
            all.contains("[redacted:CANARY]") || sink == "log" || sink == "stderr",
            "{sink}: {all}"
        );
        everything.push_str(&all);
    }
    assert!(
        !everything.contains(CANARY),
        "a secret reached the agent: {everything}"
    );
    // The upstream it was granted for received it (the tool sent it); nothing else did.
    assert!(format!("{:?}", cp.requests().await).contains(CANARY));
    let log = server.log.lock().unwrap().join("\n");
    assert!(
        !log.contains(CANARY) && !log.contains(TOKEN),
        "a secret reached the gateway's log"
    );
    client.cancel().await.unwrap();
}

/// A test CA and a certificate it signed for `cp.test` (and 127.0.0.1), made with the openssl
/// CLI: `(ca, cert, key)`.
fn certificates(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let p = |name: &str| dir.join(name);
    std::fs::write(
        p("ext"),
        "subjectAltName=DNS:cp.test,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl {args:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=portcullis test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=cp.test",
        "-keyout",
        "key.pem",
        "-out",
        "leaf.csr",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext",
        "-out",
        "cert.pem",
    ]);
    (p("ca.pem"), p("cert.pem"), p("key.pem"))
}

#[tokio::test]
async fn https_upstreams_are_verified_against_the_web_roots_and_the_operators_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let cp = ControlPlane::start_with(
        "127.0.0.1",
        TOKEN,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
    .await;
    assert!(cp.url.starts_with("https://"), "{}", cp.url);
    let grant = json!({"host": "cp.test", "ports": [cp.port], "allow_private": ["127.0.0.1"]});
    let url = format!("https://cp.test:{}/debug/ping", cp.port);
    let resolve = "[egress.resolve]\n\"cp.test\" = [\"127.0.0.1\"]\n";

    // Without the operator's CA the certificate is not trusted.
    let (s, _keep) = egress_setup(json!({"http": [grant.clone()]}), resolve);
    let client = stdio_client(&s).await;
    let (hops, all) = request(&client, json!({"method": "GET", "url": url})).await;
    assert!(hops[0]["status"].is_null(), "{all}");
    assert!(error(&hops[0]).contains("TLS"), "{all}");
    client.cancel().await.unwrap();

    // With it (egress.ca_bundle), the request goes through, verified for the granted name.
    let extra = format!("[egress]\nca_bundle = \"{}\"\n\n{resolve}", ca.display());
    let (s, _keep) = egress_setup(json!({"http": [grant]}), &extra);
    let client = stdio_client(&s).await;
    let (hops, all) = request(&client, json!({"method": "GET", "url": url})).await;
    assert_eq!(hops[0]["status"], 200, "{all}");
    assert_eq!(hops[0]["body"], "pong");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn portcullis_run_grants_exactly_its_flags() {
    let cp = ControlPlane::start("127.0.0.1", TOKEN).await;
    let (s, _keep) = egress_setup(json!({}), "");
    let run = |grant: Option<String>, url: String| {
        let mut command = std::process::Command::new(crate::gateway::binary());
        command
            .arg("--config")
            .arg(&s.config)
            .args(["run", "request"]);
        command.arg(json!({"method": "GET", "url": url}).to_string());
        if let Some(grant) = grant {
            command.args(["--grant-http", &grant]);
        }
        let out = command.output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let url = format!("{}/debug/ping", cp.url);
    let none = run(None, url.clone());
    assert!(none.contains("this call has no http grant"), "{none}");
    let granted = run(
        Some(format!("http://127.0.0.1:{}/debug/,GET", cp.port)),
        url,
    );
    assert!(
        granted.contains("\"status\": 200") || granted.contains("pong"),
        "{granted}"
    );
    let elsewhere = run(
        Some(format!("http://127.0.0.1:{}/debug/,GET", cp.port)),
        format!("{}/v1/services", cp.url),
    );
    assert!(
        elsewhere.contains("is not under a granted prefix"),
        "{elsewhere}"
    );
}
