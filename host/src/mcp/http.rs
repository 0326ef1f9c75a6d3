//! MCP over streamable HTTP at `/mcp`.
//!
//! Every request passes the front door before rmcp sees it: `Host` and `Origin` are checked
//! (DNS-rebinding protection) → 403; the bearer token is checked against the configured
//! hashes → 401 (or the configured anonymous principal); the body is read up to the message cap
//! and checked for size and depth. The server is stateless (no MCP sessions), so there is no
//! session id another principal could reuse. The agent's token is never passed on to tools and
//! never logged.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use super::Handler;
use super::precheck::{self, MessageCaps, Verdict};
use crate::config::Config;
use crate::gate::{Gateway, Transport};
use crate::policy::Principal;

type Body = BoxBody<Bytes, Infallible>;

/// How long a client may take to send its request headers, and then its body.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// `sha256:<hex>` of a bearer token, as stored in the configuration.
pub fn token_hash(token: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(token.as_bytes())))
}

/// Everything the front door needs, built once.
struct FrontDoor {
    allowed_hosts: Vec<String>,
    allowed_origins: Vec<String>,
    tokens: HashMap<String, Arc<Principal>>,
    anonymous: Option<Arc<Principal>>,
    caps: MessageCaps,
    mcp: StreamableHttpService<Handler, NeverSessionManager>,
}

fn plain(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{message}\n"))).boxed());
    *response.status_mut() = status;
    response
}

fn json_reply(text: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(text)).boxed());
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

impl FrontDoor {
    fn host_allowed(&self, host: &str) -> bool {
        let name = match host.rsplit_once(':') {
            Some((name, port))
                if !name.is_empty()
                    && port.bytes().all(|b| b.is_ascii_digit())
                    && !host.ends_with(']') =>
            {
                name
            }
            _ => host,
        };
        self.allowed_hosts
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(host) || allowed.eq_ignore_ascii_case(name))
    }

    /// The principal of a request, or why it gets 401.
    fn authenticate(&self, request: &Request<Incoming>) -> Result<Arc<Principal>, &'static str> {
        match request.headers().get(hyper::header::AUTHORIZATION) {
            None => self
                .anonymous
                .clone()
                .ok_or("unauthorized: send `Authorization: Bearer <token>`"),
            Some(value) => {
                let token = value
                    .to_str()
                    .ok()
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .ok_or("unauthorized: malformed Authorization header")?;
                self.tokens
                    .get(&token_hash(token))
                    .cloned()
                    .ok_or("unauthorized: unknown token")
            }
        }
    }

    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        let host = request
            .headers()
            .get(hyper::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if !self.host_allowed(&host) {
            return plain(StatusCode::FORBIDDEN, "forbidden: Host not allowed");
        }
        if let Some(origin) = request.headers().get(hyper::header::ORIGIN) {
            let origin = origin.to_str().unwrap_or_default();
            if !self.allowed_origins.iter().any(|o| o == origin) {
                return plain(StatusCode::FORBIDDEN, "forbidden: Origin not allowed");
            }
        }
        if request.uri().path() != "/mcp" {
            return plain(StatusCode::NOT_FOUND, "not found: the MCP endpoint is /mcp");
        }
        let principal = match self.authenticate(&request) {
            Ok(principal) => principal,
            Err(message) => {
                let mut response = plain(StatusCode::UNAUTHORIZED, message);
                response.headers_mut().insert(
                    hyper::header::WWW_AUTHENTICATE,
                    hyper::header::HeaderValue::from_static("Bearer"),
                );
                return response;
            }
        };
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(principal);
        // The token has done its job; nothing after this point (rmcp, handlers, their logs)
        // gets to see it.
        parts.headers.remove(hyper::header::AUTHORIZATION);
        let read = tokio::time::timeout(BODY_TIMEOUT, read_capped(body, self.caps.max_bytes));
        let (bytes, complete) = match read.await {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    &format!("reading the request body: {e}"),
                );
            }
            Err(_) => {
                return plain(
                    StatusCode::REQUEST_TIMEOUT,
                    &format!(
                        "the request body did not arrive within {} s",
                        BODY_TIMEOUT.as_secs()
                    ),
                );
            }
        };
        let verdict = if complete {
            precheck::check(&bytes, self.caps)
        } else {
            precheck::oversized(&bytes, self.caps)
        };
        match verdict {
            Verdict::Pass => {}
            Verdict::Refuse(Some(reply)) => return json_reply(reply),
            Verdict::Refuse(None) => {
                return plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the request is over the size or depth cap",
                );
            }
        }
        self.mcp
            .handle(Request::from_parts(parts, Full::new(bytes)))
            .await
    }
}

/// Reads at most `limit` bytes of `body`; `false` when there was more (the rest is not read).
async fn read_capped(mut body: Incoming, limit: usize) -> Result<(Bytes, bool), hyper::Error> {
    let mut buffer = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if buffer.len() + data.len() > limit {
                let room = limit - buffer.len();
                buffer.extend_from_slice(&data[..room]);
                return Ok((buffer.freeze(), false));
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok((buffer.freeze(), true))
}

/// Serves MCP over HTTP on `listener` until the process ends.
pub async fn serve(gateway: Arc<Gateway>, config: &Config, listener: TcpListener) -> Result<()> {
    let mut tokens = HashMap::new();
    for (name, p) in &config.principals {
        let principal = Arc::new(config.principal(name, "token").context("principal")?);
        for hash in &p.token_hashes {
            tokens.insert(hash.to_ascii_lowercase(), principal.clone());
        }
    }
    let anonymous = match &config.http.anonymous {
        Some(name) => Some(Arc::new(
            config
                .principal(name, "anonymous")
                .with_context(|| format!("http.anonymous `{name}`"))?,
        )),
        None => None,
    };
    let caps = MessageCaps::for_args(config.args);
    let mut mcp_config = StreamableHttpServerConfig::default();
    mcp_config.legacy_session_mode = false;
    mcp_config.json_response = true;
    mcp_config.allowed_hosts = config.http.allowed_hosts.clone();
    mcp_config.allowed_origins = config.http.allowed_origins.clone();
    mcp_config.max_request_body_bytes = caps.max_bytes;
    let mcp_config = mcp_config.enforce_origin_validation();
    let factory_gateway = gateway.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(Handler::new(factory_gateway.clone(), None, Transport::Http)),
        Arc::new(NeverSessionManager::default()),
        mcp_config,
    );
    let door = Arc::new(FrontDoor {
        allowed_hosts: config.http.allowed_hosts.clone(),
        allowed_origins: config.http.allowed_origins.clone(),
        tokens,
        anonymous,
        caps,
        mcp,
    });
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                continue;
            }
        };
        let door = door.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let door = door.clone();
                async move { Ok::<_, Infallible>(door.handle(request).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(64 * 1024)
                .max_headers(64)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}
