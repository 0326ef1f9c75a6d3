//! `[state]`: where and how durably the governance store keeps approvals, idempotency records
//! and counters. `[admin]`: the operators' HTTP API. `[webhook]`: where approval events go.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use serde::Deserialize;

use crate::grants::parse_duration;
use crate::state::sqlite::Durability;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StateFile {
    durability: Option<String>,
    idempotency_retention: Option<String>,
    approval_hold: Option<String>,
}

/// The store's settings.
#[derive(Clone, Copy, Debug)]
pub struct StateConfig {
    pub durability: Durability,
    /// How long an idempotency key's outcome is kept (and the key refused for other calls).
    pub idempotency_retention: Duration,
    /// How long a call that needs approval is held open waiting for the decision before it is
    /// answered "pending" (clients without tasks; 0: answer at once).
    pub approval_hold: Duration,
}

pub(super) fn resolve(file: StateFile) -> Result<StateConfig> {
    let durability = match file.durability.as_deref() {
        None | Some("process") => Durability::Process,
        Some("machine") => Durability::Machine,
        Some(other) => bail!("state.durability: `{other}` is not `process` or `machine`"),
    };
    let idempotency_retention = match &file.idempotency_retention {
        Some(v) => parse_duration(v).map_err(|e| anyhow!("state.idempotency_retention: {e}"))?,
        None => Duration::from_secs(24 * 3600),
    };
    if idempotency_retention < Duration::from_secs(1)
        || idempotency_retention > Duration::from_secs(90 * 24 * 3600)
    {
        bail!("state.idempotency_retention must be between 1s and 90 days");
    }
    let approval_hold = match &file.approval_hold {
        Some(v) => parse_duration(v).map_err(|e| anyhow!("state.approval_hold: {e}"))?,
        None => Duration::ZERO,
    };
    if approval_hold > Duration::from_secs(300) {
        bail!("state.approval_hold must be at most 5m");
    }
    Ok(StateConfig {
        durability,
        idempotency_retention,
        approval_hold,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AdminFile {
    listen: Option<String>,
}

/// The admin API's listener. It runs when some principal has `admin_tokens`.
#[derive(Clone, Copy, Debug)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Whether `[admin] listen` was set explicitly (then admin tokens are required).
    pub explicit: bool,
}

pub(super) fn resolve_admin(file: AdminFile) -> Result<AdminConfig> {
    let explicit = file.listen.is_some();
    let listen = file
        .listen
        .as_deref()
        .unwrap_or("127.0.0.1:8081")
        .parse()
        .map_err(|e| anyhow!("admin.listen: {e} (expected an address such as 127.0.0.1:8081)"))?;
    Ok(AdminConfig { listen, explicit })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WebhookFile {
    url: String,
    secret: Option<String>,
    queue: Option<usize>,
    max_attempts: Option<u32>,
    timeout: Option<String>,
}

/// Where approval events are posted: JSON, signed with HMAC-SHA256 when `secret` is set.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL.
    pub url: String,
    /// The name of a `[secrets]` entry holding the HMAC key.
    pub secret: Option<String>,
    /// Events waiting for delivery at most; more are dropped (and logged).
    pub queue: usize,
    /// Delivery attempts per event, with exponential backoff between them.
    pub max_attempts: u32,
    /// Per attempt: connect, send and read the status.
    pub timeout: Duration,
}

pub(super) fn resolve_webhook(
    file: Option<WebhookFile>,
    secrets: &std::collections::BTreeMap<String, super::SecretSpec>,
) -> Result<Option<WebhookConfig>> {
    let Some(file) = file else {
        return Ok(None);
    };
    if !(file.url.starts_with("http://") || file.url.starts_with("https://")) {
        bail!("webhook.url must be an http:// or https:// URL");
    }
    if let Some(name) = &file.secret
        && !secrets.contains_key(name)
    {
        bail!("webhook.secret names `{name}`, which is not defined under [secrets]");
    }
    let queue = file.queue.unwrap_or(1000);
    let max_attempts = file.max_attempts.unwrap_or(5);
    if queue == 0 || queue > 1_000_000 || max_attempts == 0 || max_attempts > 20 {
        bail!("webhook.queue must be 1..1000000 and webhook.max_attempts 1..20");
    }
    let timeout = match &file.timeout {
        Some(v) => parse_duration(v).map_err(|e| anyhow!("webhook.timeout: {e}"))?,
        None => Duration::from_secs(5),
    };
    Ok(Some(WebhookConfig {
        url: file.url,
        secret: file.secret,
        queue,
        max_attempts,
        timeout,
    }))
}
