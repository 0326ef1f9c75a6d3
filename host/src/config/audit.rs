//! `[audit]`: the audit trail — on or off, its signing key, how often it is sealed, how long
//! it is kept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use serde::Deserialize;

use crate::grants::parse_duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditFile {
    enabled: Option<bool>,
    signing_key: Option<PathBuf>,
    #[serde(default)]
    trusted_keys: Vec<String>,
    checkpoint_every: Option<String>,
    retention: Option<String>,
}

/// The audit trail's settings.
#[derive(Clone, Debug)]
pub struct AuditConfig {
    /// Record every call (default). Off, nothing is recorded: for measuring, not for serving.
    pub enabled: bool,
    /// The ed25519 key (PKCS#8 PEM) that signs checkpoints; generated there on first start.
    pub signing_key: PathBuf,
    /// Public keys whose signatures `audit verify` accepts besides the signing key's (keys
    /// rotated out), each `ed25519:<hex>`.
    pub trusted_keys: Vec<String>,
    /// How often a checkpoint seals what was recorded since the last one.
    pub checkpoint_every: Duration,
    /// Records older than this are pruned (behind a signed marker); `None` keeps everything.
    pub retention: Option<Duration>,
}

pub(super) fn resolve(
    file: AuditFile,
    data_dir: &Path,
    at: impl Fn(PathBuf) -> PathBuf,
) -> Result<AuditConfig> {
    let checkpoint_every = match &file.checkpoint_every {
        Some(v) => parse_duration(v).map_err(|e| anyhow!("audit.checkpoint_every: {e}"))?,
        None => Duration::from_secs(1),
    };
    if checkpoint_every < Duration::from_millis(100) || checkpoint_every > Duration::from_secs(3600)
    {
        bail!("audit.checkpoint_every must be between 100ms and 1h");
    }
    let retention = match &file.retention {
        Some(v) => Some(parse_duration(v).map_err(|e| anyhow!("audit.retention: {e}"))?),
        None => None,
    };
    if retention.is_some_and(|r| r < Duration::from_secs(3600)) {
        bail!("audit.retention must be at least 1h");
    }
    let trusted_keys = file
        .trusted_keys
        .iter()
        .map(|k| {
            crate::audit::parse_public_key(k)
                .map_err(|e| anyhow!("audit.trusted_keys `{k}`: {e:#}"))
        })
        .collect::<Result<_>>()?;
    Ok(AuditConfig {
        enabled: file.enabled.unwrap_or(true),
        signing_key: file
            .signing_key
            .map_or_else(|| data_dir.join("audit-signing.key"), at),
        trusted_keys,
        checkpoint_every,
        retention,
    })
}
