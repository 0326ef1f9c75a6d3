//! `[egress]`, `[secrets]`, `[ceilings]` and `[settings]`: what calls may be granted beyond
//! their limits, and the operator's values for policy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use serde::Deserialize;

use crate::capabilities::{Capabilities, Ceilings, HttpCeiling};
use crate::delegation::{Delegation, ExchangeConfig};
use crate::egress::{Caps, EgressConfig};
use crate::grants::{parse_bytes, parse_duration};
use crate::secrets::{EnvSource, FileSource, SecretSource, Secrets};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EgressFile {
    max_requests: Option<u32>,
    max_concurrent: Option<u32>,
    max_request_body: Option<String>,
    max_response_body: Option<String>,
    max_header_bytes: Option<String>,
    max_headers: Option<usize>,
    connect_timeout: Option<String>,
    first_byte_timeout: Option<String>,
    between_bytes_timeout: Option<String>,
    ca_bundle: Option<PathBuf>,
    pool_max_idle: Option<usize>,
    pool_idle_timeout: Option<String>,
    #[serde(default)]
    resolve: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SecretFile {
    env: Option<String>,
    file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CeilingsFile {
    fs: Option<Vec<PathBuf>>,
    http: Option<Vec<String>>,
    secrets: Option<Vec<String>>,
}

/// Where a secret comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSpec {
    Env(String),
    File(PathBuf),
}

/// The capability settings, resolved (paths absolute) but not yet opened.
#[derive(Clone, Debug)]
pub struct CapabilitiesConfig {
    pub egress: EgressConfig,
    pub secrets: BTreeMap<String, SecretSpec>,
    /// `None`: the workspace only.
    pub fs_ceiling: Option<Vec<PathBuf>>,
    pub http_ceiling: Vec<HttpCeiling>,
    pub secrets_ceiling: Option<Vec<String>>,
    /// `[token_exchange]`, if configured (resolved beside `[oauth]`, which it needs).
    pub exchange: Option<ExchangeConfig>,
}

pub(super) fn resolve(
    egress: EgressFile,
    secrets: BTreeMap<String, SecretFile>,
    ceilings: CeilingsFile,
    at: &dyn Fn(PathBuf) -> PathBuf,
) -> Result<CapabilitiesConfig> {
    let defaults = Caps::default();
    let size = |key: &str, v: &Option<String>, d: u64| -> Result<u64> {
        v.as_deref().map_or(Ok(d), |v| {
            parse_bytes(v).map_err(|e| anyhow!("egress.{key}: {e}"))
        })
    };
    let time = |key: &str, v: &Option<String>, d| -> Result<std::time::Duration> {
        let t = v.as_deref().map_or(Ok(d), |v| {
            parse_duration(v).map_err(|e| anyhow!("egress.{key}: {e}"))
        })?;
        if t.is_zero() {
            bail!("egress.{key} must be more than 0");
        }
        Ok(t)
    };
    let caps = Caps {
        max_requests: egress.max_requests.unwrap_or(defaults.max_requests),
        max_concurrent: egress.max_concurrent.unwrap_or(defaults.max_concurrent),
        max_request_body: size(
            "max_request_body",
            &egress.max_request_body,
            defaults.max_request_body,
        )?,
        max_response_body: size(
            "max_response_body",
            &egress.max_response_body,
            defaults.max_response_body,
        )?,
        max_header_bytes: usize::try_from(size(
            "max_header_bytes",
            &egress.max_header_bytes,
            defaults.max_header_bytes as u64,
        )?)
        .map_err(|_| anyhow!("egress.max_header_bytes: too large"))?,
        max_headers: egress.max_headers.unwrap_or(defaults.max_headers),
        connect_timeout: time(
            "connect_timeout",
            &egress.connect_timeout,
            defaults.connect_timeout,
        )?,
        first_byte_timeout: time(
            "first_byte_timeout",
            &egress.first_byte_timeout,
            defaults.first_byte_timeout,
        )?,
        between_bytes_timeout: time(
            "between_bytes_timeout",
            &egress.between_bytes_timeout,
            defaults.between_bytes_timeout,
        )?,
    };
    if caps.max_concurrent == 0 || caps.max_concurrent > 64 {
        bail!("egress.max_concurrent must be between 1 and 64");
    }
    if caps.max_requests > 10_000 {
        bail!("egress.max_requests must be at most 10000");
    }
    if caps.max_headers == 0 || caps.max_headers > 1000 {
        bail!("egress.max_headers must be between 1 and 1000");
    }
    if caps.max_header_bytes < 1024 || caps.max_header_bytes > 1024 * 1024 {
        bail!("egress.max_header_bytes must be between 1KiB and 1MiB");
    }
    let base = EgressConfig::default();
    let egress = EgressConfig {
        caps,
        resolve: egress.resolve,
        ca_bundle: egress.ca_bundle.map(at),
        pool_max_idle: egress.pool_max_idle.unwrap_or(base.pool_max_idle),
        pool_idle_timeout: time(
            "pool_idle_timeout",
            &egress.pool_idle_timeout,
            base.pool_idle_timeout,
        )?,
    };
    // Parse names and addresses now, so that a bad entry is a start-up error with its key.
    crate::egress::Resolver::new(&egress.resolve).map_err(|e| anyhow!(e))?;

    let mut specs = BTreeMap::new();
    for (name, s) in secrets {
        if !crate::secrets::valid_name(&name) {
            bail!("secrets.{name}: a secret name is letters, digits, `_`, `-` and `.`");
        }
        let spec = match (s.env, s.file) {
            (Some(var), None) => SecretSpec::Env(var),
            (None, Some(file)) => SecretSpec::File(at(file)),
            _ => bail!("secrets.{name}: give exactly one of `env` and `file`"),
        };
        specs.insert(name, spec);
    }
    let http_ceiling = match ceilings.http {
        None => vec![HttpCeiling::Public],
        Some(list) => list
            .iter()
            .map(|entry| HttpCeiling::parse(entry).map_err(|e| anyhow!("ceilings.http: {e}")))
            .collect::<Result<_>>()?,
    };
    if let Some(names) = &ceilings.secrets {
        for name in names {
            if !specs.contains_key(name) {
                bail!("ceilings.secrets names {name}, which is not configured under [secrets]");
            }
        }
    }
    Ok(CapabilitiesConfig {
        egress,
        secrets: specs,
        fs_ceiling: ceilings.fs.map(|roots| roots.into_iter().map(at).collect()),
        http_ceiling,
        secrets_ceiling: ceilings.secrets,
        exchange: None,
    })
}

impl SecretSpec {
    /// Where the value is read from.
    pub fn source(&self) -> Box<dyn SecretSource> {
        match self {
            SecretSpec::Env(var) => Box::new(EnvSource(var.clone())),
            SecretSpec::File(path) => Box::new(FileSource(path.clone())),
        }
    }
}

impl CapabilitiesConfig {
    /// Opens everything: reads the secrets, builds the egress settings and the ceilings. Returns
    /// warnings for the operator (secrets without a value).
    pub fn open(&self, workspace: &Path) -> Result<(Capabilities, Vec<String>)> {
        let sources: Vec<(String, Box<dyn SecretSource>)> = self
            .secrets
            .iter()
            .map(|(name, spec)| (name.clone(), spec.source()))
            .collect();
        let (secrets, warnings) = Secrets::load(sources).map_err(|e| anyhow!(e))?;
        let roots = self
            .fs_ceiling
            .clone()
            .unwrap_or_else(|| vec![workspace.to_path_buf()]);
        let fs = roots
            .iter()
            .map(|root| {
                std::fs::canonicalize(root)
                    .map_err(|e| anyhow!("ceilings.fs: {}: {e}", root.display()))
            })
            .collect::<Result<_>>()?;
        let ceilings = Ceilings {
            fs,
            http: self.http_ceiling.clone(),
            secrets: self.secrets_ceiling.clone(),
        };
        let delegation = match &self.exchange {
            Some(config) => Some(Delegation::new(config, &secrets).map_err(|e| anyhow!(e))?),
            None => None,
        };
        let capabilities = Capabilities::new(&self.egress, secrets, ceilings)
            .map_err(|e| anyhow!(e))?
            .with_delegation(delegation);
        Ok((capabilities, warnings))
    }
}
