//! `[state]`: where and how durably the governance store keeps approvals, idempotency records
//! and counters.

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
}

/// The store's settings.
#[derive(Clone, Copy, Debug)]
pub struct StateConfig {
    pub durability: Durability,
    /// How long an idempotency key's outcome is kept (and the key refused for other calls).
    pub idempotency_retention: Duration,
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
    Ok(StateConfig {
        durability,
        idempotency_retention,
    })
}
