//! Outbound HTTP for guests (`wasi:http/outgoing-handler`), as far as each call's grants allow.
//!
//! Lifecycle: [`Egress`] is built once at start from `[egress]` (caps, pinned names, CA bundle,
//! the connection pool); [`Egress::prepare`] makes the per-call [`CallEgress`] from the
//! decision's `http` grants and the call's secrets. Every request a guest makes passes
//! [`CallEgress`]'s send hook (`send`): grant check, resolution, deny ranges, connection to the
//! checked address, credential injection, caps and scrubbing. With no `http` grant every
//! request fails before any DNS or socket work.

mod address;
mod body;
mod connect;
mod grant;
mod ranges;
mod resolve;
mod scrub;
mod send;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;

pub use address::{Host, parse_host};
pub use grant::{HostPattern, HttpGrant, HttpRule, Inject, parse_cli_grant, split_port};
pub use ranges::{canonical, deny_reason};
pub use resolve::Resolver;
pub use scrub::Scrubber;

use crate::grants::{MIB, show_bytes};
use crate::secrets::CallSecrets;

/// Bodies as wasmtime-wasi-http passes them.
pub type Body = UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>;

/// Caps on one call's outbound HTTP. Every one is explicit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// Requests one call may make.
    pub max_requests: u32,
    /// Requests of one call in flight at once (until their response bodies end or are dropped).
    pub max_concurrent: u32,
    pub max_request_body: u64,
    pub max_response_body: u64,
    /// Header bytes (names + values) of one request or response.
    pub max_header_bytes: usize,
    /// Headers of one request or response.
    pub max_headers: usize,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub between_bytes_timeout: Duration,
}

impl Default for Caps {
    fn default() -> Self {
        Self {
            max_requests: 32,
            max_concurrent: 4,
            max_request_body: MIB,
            max_response_body: 4 * MIB,
            max_header_bytes: 32 * 1024,
            max_headers: 64,
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(10),
            between_bytes_timeout: Duration::from_secs(10),
        }
    }
}

/// `[egress]` as configured.
#[derive(Clone, Debug)]
pub struct EgressConfig {
    pub caps: Caps,
    /// Names answered from this map, never from DNS.
    pub resolve: BTreeMap<String, Vec<String>>,
    /// Extra trusted CAs (PEM), for internal services.
    pub ca_bundle: Option<PathBuf>,
    /// Idle connections kept per upstream address; 0 turns pooling off.
    pub pool_max_idle: usize,
    pub pool_idle_timeout: Duration,
}

impl Default for EgressConfig {
    fn default() -> Self {
        Self {
            caps: Caps::default(),
            resolve: BTreeMap::new(),
            ca_bundle: None,
            pool_max_idle: 8,
            pool_idle_timeout: Duration::from_secs(30),
        }
    }
}

/// What the gateway shares across calls: settings, resolver, TLS configuration, pool.
pub struct Egress {
    caps: Caps,
    resolver: Resolver,
    tls: Arc<rustls::ClientConfig>,
    pool: connect::Pool,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress").field("caps", &self.caps).finish()
    }
}

/// One request a call made, for its report (no header values, no bodies, no query).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EgressEvent {
    pub method: String,
    /// `scheme://host:port/path`, the path without its query.
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub bytes_out: u64,
    pub bytes_in: u64,
    /// Why the request failed or was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether a credential was injected.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub injected: bool,
}

/// The requests of one call, shared with the tasks that send them.
pub type EventLog = Arc<Mutex<Vec<EgressEvent>>>;

/// Events kept per call.
pub const MAX_EVENTS: usize = 256;

impl Egress {
    pub fn new(config: &EgressConfig) -> Result<Self, String> {
        let caps = config.caps;
        if caps.max_concurrent == 0 {
            return Err("egress.max_concurrent must be at least 1".into());
        }
        Ok(Self {
            caps,
            resolver: Resolver::new(&config.resolve)?,
            tls: connect::tls_config(config.ca_bundle.as_deref())?,
            pool: connect::Pool::new(config.pool_max_idle, config.pool_idle_timeout),
        })
    }

    pub fn caps(&self) -> Caps {
        self.caps
    }

    /// Checks a decision's http grants without preparing a call: the reason for the first bad one.
    pub fn check(grants: &[HttpGrant]) -> Result<Vec<HttpRule>, String> {
        grants.iter().map(HttpRule::compile).collect()
    }

    /// The send hook of one call.
    pub fn prepare(
        self: &Arc<Self>,
        grants: &[HttpGrant],
        secrets: &CallSecrets,
        scrubber: Scrubber,
    ) -> Result<CallEgress, String> {
        let rules = Self::check(grants)?;
        for rule in &rules {
            if let Some(inject) = &rule.inject
                && secrets.get(&inject.secret).is_none()
            {
                return Err(format!(
                    "http grant `{}` injects secret {}, which the call does not have",
                    rule.spec, inject.secret
                ));
            }
        }
        Ok(CallEgress {
            shared: self.clone(),
            rules: Arc::new(rules),
            secrets: secrets.clone(),
            scrubber,
            requests: 0,
            inflight: Arc::new(tokio::sync::Semaphore::new(
                self.caps.max_concurrent as usize,
            )),
            events: Arc::default(),
        })
    }
}

/// The outbound HTTP of one call: its rules, its secrets, its counters, its events.
pub struct CallEgress {
    shared: Arc<Egress>,
    rules: Arc<Vec<HttpRule>>,
    secrets: CallSecrets,
    scrubber: Scrubber,
    requests: u32,
    inflight: Arc<tokio::sync::Semaphore>,
    events: EventLog,
}

impl CallEgress {
    /// A hook for a call with no http grant: every request is refused before any I/O.
    pub fn none(shared: &Arc<Egress>) -> Self {
        Self {
            shared: shared.clone(),
            rules: Arc::default(),
            secrets: CallSecrets::default(),
            scrubber: Scrubber::default(),
            requests: 0,
            inflight: Arc::new(tokio::sync::Semaphore::new(1)),
            events: Arc::default(),
        }
    }

    /// What the call sent, so far.
    pub fn events(&self) -> Vec<EgressEvent> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A refusal by the gateway, as the guest sees it.
fn refused(message: String) -> wasmtime_wasi_http::Error {
    wasmtime_wasi_http::Error::InternalError(Some(format!("denied by the gateway: {message}")))
}

/// A cap hit, as the guest sees it.
fn capped(what: &str, limit: u64, key: &str) -> wasmtime_wasi_http::Error {
    wasmtime_wasi_http::Error::InternalError(Some(format!(
        "{what} exceeds the gateway's limit of {} (egress.{key})",
        show_bytes(limit)
    )))
}

/// What an error says, for the call's record: the gateway's own text without the
/// `internal error:` wrapper its type adds.
fn describe(error: &wasmtime_wasi_http::Error) -> String {
    match error {
        wasmtime_wasi_http::Error::InternalError(Some(message)) => message.clone(),
        other => other.to_string(),
    }
}
