//! Starting the real `portcullis` binary with a test configuration, and connecting real MCP
//! clients to it (rmcp over stdio and streamable HTTP).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support;

/// Bearer tokens of the test principals.
pub const ALICE: &str = "alice-test-token-0123456789";
pub const BOB: &str = "bob-test-token-0123456789";
pub const ROOT: &str = "root-test-token-0123456789";

pub type Client = RunningService<RoleClient, ()>;

fn token_hash(token: &str) -> String {
    portcullis::mcp::http::token_hash(token)
}

/// A configuration in a temporary directory: components, policies, a workspace.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub workspace: PathBuf,
    /// `RUST_LOG` for the servers started from this setup.
    pub rust_log: String,
}

/// What a setup contains.
pub struct Options<'a> {
    pub components: &'a [&'a str],
    /// `None`: the repository's `policies/`.
    pub policy: Option<&'a str>,
    pub stdio_principal: &'a str,
    pub environment: &'a str,
    /// `http.anonymous`: the principal of requests without a token.
    pub anonymous: Option<&'a str>,
    /// More lines for the `[limits]` and `[http]` tables.
    pub limits_extra: &'a str,
    pub http_extra: &'a str,
    pub rust_log: &'a str,
    /// More tables, appended to the configuration (`[egress]`, `[secrets]`, `[principals.x]`…).
    pub extra: &'a str,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Self {
            components: &["workspace", "data"],
            policy: None,
            stdio_principal: "bob",
            environment: "dev",
            anonymous: None,
            limits_extra: "",
            http_extra: "",
            rust_log: "portcullis=warn",
            extra: "",
        }
    }
}

pub fn setup(options: Options<'_>) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let tools = dir.path().join("tools");
    std::fs::create_dir(&tools).unwrap();
    for name in options.components {
        std::fs::copy(support::component(name), tools.join(format!("{name}.wasm"))).unwrap();
    }
    let policy_dir = match options.policy {
        None => support::root().join("policies"),
        Some(rego) => {
            let p = dir.path().join("policies");
            std::fs::create_dir(&p).unwrap();
            std::fs::write(p.join("policy.rego"), rego).unwrap();
            std::fs::copy(
                support::root().join("policies/data.json"),
                p.join("data.json"),
            )
            .unwrap();
            p
        }
    };
    let workspace = dir.path().join("workspace");
    std::fs::create_dir(&workspace).unwrap();
    let config = dir.path().join("portcullis.toml");
    let text = format!(
        r#"environment = "{env}"
tools_dir = "tools"
cache_dir = "{cache}"
policy_dir = "{policy}"
workspace = "workspace"

[limits]
{limits_extra}

[stdio]
principal = "{stdio}"

[http]
listen = "127.0.0.1:0"
{anonymous}
{http_extra}

[principals.alice]
roles = ["reader"]
tokens = ["{alice}"]

[principals.bob]
roles = ["writer"]
tokens = ["{bob}"]

[principals.root]
roles = ["admin"]
tokens = ["{root}"]

{extra}
"#,
        env = options.environment,
        cache = support::cache_dir().display(),
        policy = policy_dir.display(),
        stdio = options.stdio_principal,
        anonymous = options
            .anonymous
            .map(|name| format!("anonymous = \"{name}\""))
            .unwrap_or_default(),
        limits_extra = options.limits_extra,
        http_extra = options.http_extra,
        alice = token_hash(ALICE),
        bob = token_hash(BOB),
        root = token_hash(ROOT),
        extra = options.extra,
    );
    std::fs::write(&config, text).unwrap();
    Setup {
        dir,
        config,
        workspace,
        rust_log: options.rust_log.to_string(),
    }
}

/// Spans are exported this soon (ms) by the gateways tests start, where `[telemetry]` is set.
const SPAN_DELAY_MS: &str = "100";

pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_portcullis"))
}

/// An rmcp client talking to `portcullis serve --stdio` as a child process.
pub async fn stdio_client(setup: &Setup) -> Client {
    stdio_client_as(setup, None).await
}

/// The same, with `serve --stdio --as PRINCIPAL`.
pub async fn stdio_client_as(setup: &Setup, principal: Option<&str>) -> Client {
    stdio_client_with(setup, principal, ()).await
}

/// The same, with `handler` as the client's handler (of notifications, say).
pub async fn stdio_client_with<H: rmcp::ClientHandler>(
    setup: &Setup,
    principal: Option<&str>,
    handler: H,
) -> RunningService<RoleClient, H> {
    let mut command = Command::new(binary());
    command
        .arg("--config")
        .arg(&setup.config)
        .args(["serve", "--stdio"])
        .args(principal.map(|p| ["--as", p]).into_iter().flatten())
        .env("RUST_LOG", &setup.rust_log)
        .env("OTEL_BSP_SCHEDULE_DELAY", SPAN_DELAY_MS);
    let transport = TokioChildProcess::new(command).expect("spawn portcullis");
    handler
        .serve(transport)
        .await
        .expect("MCP initialize over stdio")
}

/// `portcullis serve --http` on an ephemeral loopback port; killed when dropped.
pub struct HttpServer {
    /// Held so that the server is killed when the test ends.
    pub child: Child,
    pub url: String,
    /// Everything the server wrote to stderr after it started listening.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl HttpServer {
    /// Waits (up to 10 s) until the server has logged a line containing `text`.
    pub async fn wait_for_log(&self, text: &str) {
        for _ in 0..100 {
            if self
                .log
                .lock()
                .unwrap()
                .iter()
                .any(|line| line.contains(text))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the server never logged {text:?}; it logged {:?}",
            self.log.lock().unwrap()
        );
    }
}

pub async fn http_server(setup: &Setup) -> HttpServer {
    let mut child = Command::new(binary())
        .arg("--config")
        .arg(&setup.config)
        .args(["serve", "--http"])
        .env("RUST_LOG", &setup.rust_log)
        .env("OTEL_BSP_SCHEDULE_DELAY", SPAN_DELAY_MS)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn portcullis");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.split("streamable HTTP at ").nth(1) {
                return url.trim().to_string();
            }
        }
        panic!("portcullis exited before listening");
    })
    .await
    .expect("portcullis did not start listening");
    // Keep draining stderr so the server never blocks on a full pipe, and keep it for tests.
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    HttpServer { child, url, log }
}

/// An rmcp streamable-HTTP client with `token`.
pub async fn http_client(server: &HttpServer, token: &str) -> Client {
    let config =
        StreamableHttpClientTransportConfig::with_uri(server.url.clone()).auth_header(token);
    let transport = StreamableHttpClientTransport::from_config(config);
    ().serve(transport).await.expect("MCP initialize over HTTP")
}

/// An rmcp streamable-HTTP client of MCP 2026-07-28 (`server/discover`, no session): what
/// `subscriptions/listen` and per-request capabilities need.
pub async fn http_client_discover<H: rmcp::ClientHandler>(
    server: &HttpServer,
    token: &str,
    handler: H,
) -> RunningService<RoleClient, H> {
    use rmcp::service::{ClientLifecycleMode, ClientServiceExt};
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(server.url.clone()).auth_header(token),
    );
    handler
        .serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![rmcp::model::ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("MCP server/discover over HTTP")
}

/// An rmcp streamable-HTTP client that sends no token.
pub async fn http_client_without_token(server: &HttpServer) -> Client {
    let transport = StreamableHttpClientTransport::from_uri(server.url.clone());
    ().serve(transport).await.expect("MCP initialize over HTTP")
}

/// The names of the tools `client` sees.
pub async fn tool_names(client: &Client) -> Vec<String> {
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    names
}

/// Calls `tool` with `args` (a JSON object).
pub async fn call(
    client: &rmcp::Peer<RoleClient>,
    tool: &str,
    args: Value,
) -> Result<CallToolResult, rmcp::ServiceError> {
    let Value::Object(map) = args else {
        panic!("arguments must be an object")
    };
    client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(map))
        .await
}

/// All text content of a result.
/// A `tools/call` of `tool` with `args` whose `_meta.traceparent` is `traceparent`.
pub fn traced(tool: &str, args: Value, traceparent: &str) -> CallToolRequestParams {
    let mut params = CallToolRequestParams::new(tool.to_string())
        .with_arguments(args.as_object().expect("arguments are an object").clone());
    let mut meta = rmcp::model::RequestMetaObject::new();
    meta.insert("traceparent".into(), serde_json::json!(traceparent));
    params.meta = Some(meta);
    params
}

pub fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The plan hash in a result's `_meta`.
pub fn plan_hash(result: &CallToolResult) -> Option<String> {
    result
        .meta
        .as_ref()
        .and_then(|m| m.0.get("portcullis/plan_hash"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Sends raw HTTP/1.1 to the server and returns the status code (for front-door tests that
/// must control every header).
pub async fn raw_status(server: &HttpServer, headers: &[(&str, &str)], body: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = server
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut request = "POST /mcp HTTP/1.1\r\n".to_string();
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!(
        "content-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

/// Sends `request` (a whole raw HTTP/1.1 request) and returns the whole response as text.
pub async fn raw_http(server: &HttpServer, request: &str) -> String {
    raw_http_to(&server.addr(), request).await
}

/// [`raw_http`] to `addr` (`127.0.0.1:PORT`).
pub async fn raw_http_to(addr: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response).into_owned()
}

/// A POST of `body` to /mcp with a good Host and `extra` header lines (each ending in CRLF).
pub fn post(server: &HttpServer, token: &str, extra: &str, body: &str) -> String {
    format!(
        "POST /mcp HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {token}\r\n{extra}\
         content-type: application/json\r\naccept: application/json, text/event-stream\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        server.addr(),
        body.len()
    )
}

impl HttpServer {
    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        self.url
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches("/mcp")
            .to_string()
    }
}
