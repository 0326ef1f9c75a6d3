//! The admin HTTP API: operators list, inspect, approve and deny pending calls, and reload
//! the policy, on a listener of its own (127.0.0.1:8081 by default), with credentials of its
//! own (`admin_tokens`, never accepted on `/mcp`; MCP tokens are never accepted here).
//!
//! Every `/v1/…` request needs `Authorization: Bearer <admin token>`; the token names the
//! principal whose roles decide whether it may approve. `GET /healthz` answers without one and
//! says nothing but "ok". Bodies are JSON, at most 64 KiB; errors are `{"error": "…"}` with a
//! status that says what went wrong. The contract is `docs/admin-api.yaml` (OpenAPI 3.1,
//! also served at `/v1/openapi.yaml`).

mod routes;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::gate::Gateway;
use crate::mcp::http::token_hash;
use crate::policy::Principal;

/// The largest request body accepted.
const MAX_BODY: usize = 64 * 1024;
/// The most a request's line and headers may take.
const MAX_HEADERS: usize = 16 * 1024;
/// Connections served at once; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 64;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// What every request handler needs.
pub(crate) struct Admin {
    gateway: Arc<Gateway>,
    /// Admin token hash → principal.
    tokens: HashMap<String, Arc<Principal>>,
}

/// The admin tokens of `config`, by hash; empty when nobody may use the admin API.
fn tokens(config: &Config) -> HashMap<String, Arc<Principal>> {
    let mut map = HashMap::new();
    for (name, p) in &config.principals {
        for hash in &p.admin_token_hashes {
            if let Some(principal) = config.principal(name, "admin") {
                map.insert(hash.to_ascii_lowercase(), Arc::new(principal));
            }
        }
    }
    map
}

/// Whether the configuration asks for the admin API.
pub fn wanted(config: &Config) -> bool {
    config.admin.explicit || !tokens(config).is_empty()
}

/// Serves the admin API on `listener` until the process ends.
pub async fn serve(gateway: Arc<Gateway>, config: &Config, listener: TcpListener) -> Result<()> {
    let admin = Arc::new(Admin {
        gateway,
        tokens: tokens(config),
    });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return Ok(());
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("admin API: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(handle(&admin, request, peer).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                // Request line and headers together, not hyper's ~400 KiB default.
                .max_buf_size(MAX_HEADERS)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!("admin API connection: {e}");
            }
            drop(permit);
        });
    }
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

pub(crate) fn error(status: StatusCode, message: impl std::fmt::Display) -> Response<Full<Bytes>> {
    json_response(status, &json!({ "error": message.to_string() }))
}

/// The principal a request's admin token names, if any.
fn authenticate(admin: &Admin, request: &Request<Incoming>) -> Option<Arc<Principal>> {
    let header = request.headers().get(hyper::header::AUTHORIZATION)?;
    let token = header.to_str().ok()?.strip_prefix("Bearer ")?.trim();
    admin.tokens.get(&token_hash(token)).cloned()
}

async fn handle(
    admin: &Admin,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    if request.uri().path() == "/healthz" {
        return json_response(StatusCode::OK, &json!({ "status": "ok" }));
    }
    let Some(principal) = authenticate(admin, &request) else {
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "an admin token is required: Authorization: Bearer <token> (admin_tokens in the configuration)",
        );
        response.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer realm=\"portcullis-admin\""),
        );
        return response;
    };
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().map(str::to_string);
    let body = match tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(request.into_body(), MAX_BODY).collect(),
    )
    .await
    {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(_)) => return error(StatusCode::PAYLOAD_TOO_LARGE, "the body is over 64 KiB"),
        Err(_) => return error(StatusCode::REQUEST_TIMEOUT, "the body took too long"),
    };
    let origin = format!("admin-api {peer}");
    routes::route(
        admin,
        &principal,
        &method,
        &path,
        query.as_deref(),
        &body,
        origin,
    )
    .await
}
