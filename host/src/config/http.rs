//! `[http]`: the streamable HTTP listener and its front door.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use serde::Deserialize;

use crate::gate::ArgsCaps;
use crate::grants::{parse_bytes, parse_duration};
use crate::runner::Admission;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HttpFile {
    listen: Option<String>,
    allowed_hosts: Option<Vec<String>>,
    allowed_origins: Option<Vec<String>>,
    anonymous: Option<String>,
    max_connections: Option<usize>,
    idle_timeout: Option<String>,
    max_inflight_bytes: Option<String>,
    max_requests_per_principal: Option<usize>,
    max_rate_per_principal: Option<u32>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    shutdown_grace: Option<String>,
    max_sessions: Option<usize>,
    max_sessions_per_principal: Option<usize>,
    session_idle_timeout: Option<String>,
    sse_poll_after: Option<String>,
    sse_retry: Option<String>,
}

/// The HTTP transport's settings.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Accepted `Host` header values (host names or `host:port`).
    pub allowed_hosts: Vec<String>,
    /// Accepted `Origin` values; requests without `Origin` (non-browser clients) pass.
    pub allowed_origins: Vec<String>,
    /// The principal for requests without a token; `None` means such requests get 401.
    pub anonymous: Option<String>,
    /// Open connections at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Request bodies being parsed and served at once, in bytes (more wait, then get 503).
    pub max_inflight_bytes: u64,
    /// Requests of one principal in flight at once; more get 503 at once.
    pub max_requests_per_principal: usize,
    /// Requests of one principal per second (bursts of one second's worth); more get 429 at
    /// once. `None`: not limited here.
    pub max_rate_per_principal: Option<u32>,
    /// TLS on the listener: the certificate chain and the private key (PEM files, loaded
    /// again when they change). `None`: plain HTTP (for loopback or behind a proxy).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// On SIGTERM, how long requests in flight may take to finish (new ones get 503).
    pub shutdown_grace: Duration,
    /// Sessions of clients before MCP 2026-07-28 open at once, in all and per principal.
    pub max_sessions: usize,
    pub max_sessions_per_principal: usize,
    /// A session with no request for this long is closed.
    pub session_idle_timeout: Duration,
    /// A session's request whose SSE stream is open this long has it closed, to be resumed
    /// by the client (SEP-1699); `None`: streams stay open.
    pub sse_poll_after: Option<Duration>,
    /// How long a client waits before it comes back for a closed stream.
    pub sse_retry: Duration,
}

pub(super) fn resolve(
    file: HttpFile,
    admission: &Admission,
    args: ArgsCaps,
    at: &impl Fn(PathBuf) -> PathBuf,
) -> Result<HttpConfig> {
    let http = HttpConfig {
        listen: file
            .listen
            .as_deref()
            .unwrap_or("127.0.0.1:8080")
            .parse()
            .map_err(|e| {
                anyhow!("http.listen: {e} (expected an address such as 127.0.0.1:8080)")
            })?,
        allowed_hosts: file
            .allowed_hosts
            .unwrap_or_else(|| vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()]),
        allowed_origins: file.allowed_origins.unwrap_or_default(),
        anonymous: file.anonymous,
        max_connections: file.max_connections.unwrap_or(1024),
        idle_timeout: file
            .idle_timeout
            .as_deref()
            .map_or(Ok(Duration::from_secs(60)), |v| {
                parse_duration(v).map_err(|e| anyhow!("http.idle_timeout: {e}"))
            })?,
        max_inflight_bytes: match &file.max_inflight_bytes {
            Some(v) => parse_bytes(v).map_err(|e| anyhow!("http.max_inflight_bytes: {e}"))?,
            None => 16 * crate::grants::MIB,
        },
        max_requests_per_principal: file
            .max_requests_per_principal
            .unwrap_or_else(|| (2 * admission.max_per_principal as usize).max(8)),
        max_rate_per_principal: file.max_rate_per_principal,
        tls: match (file.tls_cert, file.tls_key) {
            (Some(cert), Some(key)) => Some((at(cert), at(key))),
            (None, None) => None,
            _ => bail!("http.tls_cert and http.tls_key go together: set both, or neither"),
        },
        shutdown_grace: file
            .shutdown_grace
            .as_deref()
            .map_or(Ok(Duration::from_secs(30)), |v| {
                parse_duration(v).map_err(|e| anyhow!("http.shutdown_grace: {e}"))
            })?,
        max_sessions: file.max_sessions.unwrap_or(1024),
        max_sessions_per_principal: file.max_sessions_per_principal.unwrap_or(32),
        session_idle_timeout: file
            .session_idle_timeout
            .as_deref()
            .map_or(Ok(Duration::from_secs(300)), |v| {
                parse_duration(v).map_err(|e| anyhow!("http.session_idle_timeout: {e}"))
            })?,
        sse_poll_after: file
            .sse_poll_after
            .as_deref()
            .map(|v| parse_duration(v).map_err(|e| anyhow!("http.sse_poll_after: {e}")))
            .transpose()?,
        sse_retry: file
            .sse_retry
            .as_deref()
            .map_or(Ok(Duration::from_secs(3)), |v| {
                parse_duration(v).map_err(|e| anyhow!("http.sse_retry: {e}"))
            })?,
    };
    if http.max_rate_per_principal == Some(0) {
        bail!("http.max_rate_per_principal must be at least 1 (leave it out for no limit)");
    }
    if http.max_requests_per_principal == 0 {
        bail!("http.max_requests_per_principal must be at least 1");
    }
    let message_cap = crate::mcp::precheck::MessageCaps::for_args(args).max_bytes as u64;
    if http.max_inflight_bytes < message_cap {
        bail!(
            "http.max_inflight_bytes must be at least limits.max_args + 64KiB ({message_cap} bytes), so that one request of the largest size fits"
        );
    }
    if http.max_connections == 0 || http.max_connections > 100_000 {
        bail!("http.max_connections must be between 1 and 100000");
    }
    if http.max_sessions_per_principal == 0 || http.max_sessions < http.max_sessions_per_principal {
        bail!(
            "http.max_sessions_per_principal must be at least 1, and http.max_sessions at least as many"
        );
    }
    if http.sse_poll_after.is_some_and(|after| after.is_zero()) {
        bail!("http.sse_poll_after must be more than 0 (leave it out to keep streams open)");
    }
    if http.session_idle_timeout.is_zero() {
        bail!("http.session_idle_timeout must be more than 0");
    }
    if http.idle_timeout.is_zero() {
        bail!("http.idle_timeout must be more than 0");
    }
    Ok(http)
}
