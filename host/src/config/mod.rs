//! `portcullis.toml`: one file, every key optional, documented defaults (see
//! `portcullis.example.toml`). Unknown keys and bad values are errors that name the key and the
//! file. Relative paths are resolved against the file's directory (against the working
//! directory when there is no file).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use serde_json::{Map, Value};

mod audit;
mod capabilities;
mod exchange;
mod governance;
mod http;
mod oauth;
mod telemetry;

pub use audit::AuditConfig;
pub use capabilities::{CapabilitiesConfig, SecretSpec};
pub use governance::{AdminConfig, StateConfig, WebhookConfig};
pub use http::HttpConfig;
pub use oauth::OAuthConfig;
pub(crate) use oauth::https_or_loopback;
pub use telemetry::TelemetryConfig;

use crate::gate::ArgsCaps;
use crate::grants::{Limits, parse_bytes, parse_duration};
use crate::policy::{EvalLimits, Principal};
use crate::runner::Admission;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    environment: Option<String>,
    tools_dir: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    policy_dir: Option<PathBuf>,
    policy_watch: Option<bool>,
    tools_watch: Option<bool>,
    workspace: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    #[serde(default)]
    state: governance::StateFile,
    #[serde(default)]
    admin: governance::AdminFile,
    #[serde(default)]
    audit: audit::AuditFile,
    #[serde(default)]
    telemetry: telemetry::TelemetryFile,
    webhook: Option<governance::WebhookFile>,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    stdio: StdioFile,
    #[serde(default)]
    http: http::HttpFile,
    oauth: Option<oauth::OAuthFile>,
    principals: Option<BTreeMap<String, PrincipalFile>>,
    #[serde(default)]
    egress: capabilities::EgressFile,
    #[serde(default)]
    secrets: BTreeMap<String, capabilities::SecretFile>,
    #[serde(default)]
    ceilings: capabilities::CeilingsFile,
    token_exchange: Option<exchange::ExchangeFile>,
    /// Operator values for policy, visible as `data.gateway.settings`.
    settings: Option<toml::Table>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    fuel: Option<u64>,
    memory: Option<String>,
    timeout: Option<String>,
    output: Option<String>,
    max_fuel: Option<u64>,
    max_memory: Option<String>,
    max_timeout: Option<String>,
    max_output: Option<String>,
    max_concurrent: Option<u32>,
    max_args: Option<String>,
    max_args_depth: Option<usize>,
    max_per_principal: Option<u32>,
    max_total_memory: Option<String>,
    admission_wait: Option<String>,
    policy_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StdioFile {
    principal: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalFile {
    #[serde(default)]
    roles: Vec<String>,
    /// `sha256:<hex>` of each bearer token (see `portcullis token`).
    #[serde(default)]
    tokens: Vec<String>,
    /// `sha256:<hex>` of each token for the admin API (never accepted on /mcp).
    #[serde(default)]
    admin_tokens: Vec<String>,
    #[serde(default)]
    claims: Map<String, Value>,
}

/// A principal as configured.
#[derive(Clone, Debug, PartialEq)]
pub struct PrincipalConfig {
    pub roles: Vec<String>,
    pub token_hashes: Vec<String>,
    /// Hashes of the principal's admin API tokens.
    pub admin_token_hashes: Vec<String>,
    pub claims: Map<String, Value>,
}

/// The resolved configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from, if any.
    pub file: Option<PathBuf>,
    pub environment: String,
    pub tools_dir: PathBuf,
    pub cache_dir: PathBuf,
    /// `None`: the embedded default policies.
    pub policy_dir: Option<PathBuf>,
    /// Reload the policy when a file in `policy_dir` changes (default on).
    pub policy_watch: bool,
    /// Reload the catalog when a component in `tools_dir` is added, removed or changed
    /// (default on).
    pub tools_watch: bool,
    /// The directory the default policy grants to the workspace tools.
    pub workspace: PathBuf,
    /// Where the state store lives (approvals, idempotency records, counters).
    pub data_dir: PathBuf,
    pub state: StateConfig,
    pub admin: AdminConfig,
    pub webhook: Option<WebhookConfig>,
    pub audit: AuditConfig,
    /// OTLP export of spans and metrics (`[telemetry]` and `OTEL_*`).
    pub telemetry: TelemetryConfig,
    pub default_limits: Limits,
    pub ceilings: Limits,
    pub admission: Admission,
    pub policy_limits: EvalLimits,
    pub args: ArgsCaps,
    pub stdio_principal: String,
    pub http: HttpConfig,
    /// `/mcp` as an OAuth resource server (JWT access tokens), if configured.
    pub oauth: Option<OAuthConfig>,
    pub principals: BTreeMap<String, PrincipalConfig>,
    /// Outbound HTTP, secrets and the capability ceilings.
    pub capabilities: CapabilitiesConfig,
    /// `[settings]`, for policy (`data.gateway.settings`).
    pub settings: Value,
}

fn check_hash(principal: &str, hash: &str) -> Result<()> {
    let hex = hash.strip_prefix("sha256:").unwrap_or("");
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!(
            "principals.{principal}.tokens: `{hash}` is not `sha256:` followed by 64 hex digits (make one with `portcullis token`)"
        );
    }
    Ok(())
}

/// Admission settings from `[limits]`, defaulting from the machine's cores.
fn admission(l: &LimitsFile, ceilings: &Limits, defaults: &Limits) -> Result<Admission> {
    let machine = Admission::for_this_machine();
    let max_concurrent = l.max_concurrent.unwrap_or(machine.max_concurrent);
    if max_concurrent == 0 || max_concurrent > 1000 {
        bail!("limits.max_concurrent must be between 1 and 1000");
    }
    let max_per_principal = l
        .max_per_principal
        .unwrap_or_else(|| (max_concurrent / 2).max(1));
    if max_per_principal == 0 || max_per_principal > max_concurrent {
        bail!(
            "limits.max_per_principal must be between 1 and limits.max_concurrent ({max_concurrent})"
        );
    }
    let max_total_memory = match &l.max_total_memory {
        Some(v) => parse_bytes(v).map_err(|e| anyhow!("limits.max_total_memory: {e}"))?,
        None => u64::from(max_concurrent).saturating_mul(defaults.memory_bytes),
    };
    if max_total_memory < ceilings.memory_bytes {
        bail!(
            "limits.max_total_memory must be at least limits.max_memory, so that one call at the ceiling can run"
        );
    }
    let wait = match &l.admission_wait {
        Some(v) => parse_duration(v).map_err(|e| anyhow!("limits.admission_wait: {e}"))?,
        None => machine.wait,
    };
    if wait > Duration::from_secs(60) {
        bail!("limits.admission_wait must be at most 60s");
    }
    Ok(Admission {
        max_concurrent,
        max_per_principal,
        max_total_memory,
        wait,
    })
}

/// Refuses a token hash configured twice (for one principal or two): which principal it would
/// authenticate as must never depend on the order of the file.
fn check_unique_tokens(principals: &BTreeMap<String, PrincipalConfig>) -> Result<()> {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for (name, p) in principals {
        for hash in p.token_hashes.iter().chain(&p.admin_token_hashes) {
            if let Some(other) = seen.insert(hash.to_ascii_lowercase(), name) {
                bail!(
                    "the token hash `{hash}` is configured for both principals.{other} and principals.{name}; each token must name one principal"
                );
            }
        }
    }
    Ok(())
}

impl Config {
    /// Reads `path`, or the defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else {
            return Self::resolve(File::default(), None);
        };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: File = toml::from_str(&text)
            .map_err(|e| anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        Self::resolve(file, Some(path)).with_context(|| format!("in {}", path.display()))
    }

    fn resolve(file: File, path: Option<&Path>) -> Result<Self> {
        let base = match path.and_then(Path::parent) {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => std::env::current_dir().context("finding the working directory")?,
        };
        let at = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let size = |key: &str, value: &Option<String>, default: u64| -> Result<u64> {
            value.as_deref().map_or(Ok(default), |v| {
                parse_bytes(v).map_err(|e| anyhow!("limits.{key}: {e}"))
            })
        };
        let time = |key: &str, value: &Option<String>, default| -> Result<std::time::Duration> {
            value.as_deref().map_or(Ok(default), |v| {
                parse_duration(v).map_err(|e| anyhow!("limits.{key}: {e}"))
            })
        };
        let l = &file.limits;
        let base_limits = Limits::default();
        let default_limits = Limits {
            fuel: l.fuel.unwrap_or(base_limits.fuel),
            memory_bytes: size("memory", &l.memory, base_limits.memory_bytes)?,
            timeout: time("timeout", &l.timeout, base_limits.timeout)?,
            output_bytes: size("output", &l.output, base_limits.output_bytes)?,
        };
        let ceilings = Limits {
            fuel: l.max_fuel.unwrap_or(20_000_000_000),
            memory_bytes: size("max_memory", &l.max_memory, 256 * crate::grants::MIB)?,
            timeout: time(
                "max_timeout",
                &l.max_timeout,
                std::time::Duration::from_secs(60),
            )?,
            output_bytes: size("max_output", &l.max_output, 16 * crate::grants::MIB)?,
        };
        for (key, over) in [
            ("fuel", default_limits.fuel > ceilings.fuel),
            (
                "memory",
                default_limits.memory_bytes > ceilings.memory_bytes,
            ),
            ("timeout", default_limits.timeout > ceilings.timeout),
            (
                "output",
                default_limits.output_bytes > ceilings.output_bytes,
            ),
        ] {
            if over {
                bail!("limits.{key} is above limits.max_{key}");
            }
        }
        let max_args = size("max_args", &l.max_args, crate::grants::MIB)?;
        let args = ArgsCaps {
            max_bytes: usize::try_from(max_args)
                .map_err(|_| anyhow!("limits.max_args: too large"))?,
            max_depth: l.max_args_depth.unwrap_or(64),
        };
        if args.max_depth == 0 || args.max_depth > 100 {
            bail!("limits.max_args_depth must be between 1 and 100");
        }
        let admission = admission(l, &ceilings, &default_limits)?;
        let policy_limits = EvalLimits {
            timeout: time(
                "policy_timeout",
                &l.policy_timeout,
                EvalLimits::default().timeout,
            )?,
        };
        if policy_limits.timeout.is_zero() || policy_limits.timeout > Duration::from_secs(10) {
            bail!("limits.policy_timeout must be between 1ms and 10s");
        }

        let principals: BTreeMap<String, PrincipalConfig> = match file.principals {
            Some(map) => map
                .into_iter()
                .map(|(name, p)| {
                    for hash in p.tokens.iter().chain(&p.admin_tokens) {
                        check_hash(&name, hash)?;
                    }
                    Ok((
                        name,
                        PrincipalConfig {
                            roles: p.roles,
                            token_hashes: p.tokens,
                            admin_token_hashes: p.admin_tokens,
                            claims: p.claims,
                        },
                    ))
                })
                .collect::<Result<_>>()?,
            // Without a file: one local principal for stdio, allowed to read and write.
            None => BTreeMap::from([(
                "local".to_string(),
                PrincipalConfig {
                    roles: vec!["writer".into()],
                    token_hashes: Vec::new(),
                    admin_token_hashes: Vec::new(),
                    claims: Map::new(),
                },
            )]),
        };
        check_unique_tokens(&principals)?;
        let stdio_principal = file.stdio.principal.unwrap_or_else(|| "local".into());
        let http = http::resolve(file.http, &admission, args, &at)?;
        for (key, name) in [
            ("stdio.principal", Some(&stdio_principal)),
            ("http.anonymous", http.anonymous.as_ref()),
        ] {
            if let Some(name) = name
                && !principals.contains_key(name)
            {
                bail!("{key} names `{name}`, which is not defined under [principals]");
            }
        }
        let oauth = oauth::resolve(file.oauth)?;
        let mut capabilities =
            capabilities::resolve(file.egress, file.secrets, file.ceilings, &at)?;
        capabilities.exchange =
            exchange::resolve(file.token_exchange, oauth.is_some(), &capabilities.secrets)?;
        let admin = governance::resolve_admin(file.admin)?;
        if admin.explicit && principals.values().all(|p| p.admin_token_hashes.is_empty()) {
            bail!(
                "admin.listen is set, but no principal has admin_tokens: the admin API would accept nobody"
            );
        }
        let webhook = governance::resolve_webhook(file.webhook, &capabilities.secrets)?;
        let settings = match file.settings {
            Some(table) => serde_json::to_value(table).context("settings")?,
            None => Value::Object(Map::new()),
        };
        let data_dir = at(file.data_dir.unwrap_or_else(|| ".portcullis/data".into()));
        let audit = audit::resolve(file.audit, &data_dir, at)?;
        let telemetry = telemetry::resolve(file.telemetry, &|var| std::env::var(var).ok())?;
        let environment = file.environment.unwrap_or_else(|| "dev".into());
        if environment.is_empty() {
            bail!("environment must not be empty");
        }
        Ok(Self {
            file: path.map(Path::to_path_buf),
            environment,
            tools_dir: at(file.tools_dir.unwrap_or_else(|| ".portcullis/tools".into())),
            cache_dir: at(file.cache_dir.unwrap_or_else(|| ".portcullis/cache".into())),
            policy_dir: file.policy_dir.map(at),
            policy_watch: file.policy_watch.unwrap_or(true),
            tools_watch: file.tools_watch.unwrap_or(true),
            workspace: at(file
                .workspace
                .unwrap_or_else(|| ".portcullis/workspace".into())),
            data_dir,
            state: governance::resolve(file.state)?,
            audit,
            telemetry,
            admin,
            webhook,
            default_limits,
            ceilings,
            admission,
            policy_limits,
            args,
            stdio_principal,
            http,
            oauth,
            principals,
            capabilities,
            settings,
        })
    }

    /// The principal called `name`, authenticated as `how`.
    pub fn principal(&self, name: &str, how: &'static str) -> Option<Principal> {
        self.principals.get(name).map(|p| Principal {
            id: name.to_string(),
            roles: p.roles.clone(),
            claims: p.claims.clone(),
            authenticated_by: how,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portcullis.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path)).map_err(|e| anyhow!("{e:#}"))
    }

    #[test]
    fn defaults_without_a_file() {
        let c = Config::load(None).unwrap();
        assert_eq!(c.environment, "dev");
        assert_eq!(c.stdio_principal, "local");
        assert!(c.policy_dir.is_none());
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
        assert!(c.http.anonymous.is_none());
        assert_eq!(c.default_limits, Limits::default());
    }

    #[test]
    fn errors_name_the_key_and_the_file() {
        let e = load("enviroment = \"prod\"\n").unwrap_err().to_string();
        assert!(
            e.contains("portcullis.toml") && e.contains("enviroment"),
            "{e}"
        );
        let e = load("[limits]\nmemory = \"lots\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("portcullis.toml") && e.contains("limits.memory"),
            "{e}"
        );
        let e = load("[http]\nlisten = \"nowhere\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("http.listen"), "{e}");
        let e = load("[principals.ci]\ntokens = [\"hunter2\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("principals.ci.tokens"), "{e}");
        let e = load("[stdio]\nprincipal = \"ghost\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("stdio.principal") && e.contains("ghost"), "{e}");
        // The same token (hex case aside) for two principals.
        let h = "ab".repeat(32);
        let e = load(&format!(
            "[principals.a]\ntokens = [\"sha256:{h}\"]\n[principals.b]\ntokens = [\"sha256:{}\"]\n",
            h.to_ascii_uppercase()
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("principals.a") && e.contains("principals.b") && e.contains("one principal"),
            "{e}"
        );
        let e = load(&format!(
            "[principals.a]\ntokens = [\"sha256:{h}\", \"sha256:{h}\"]\n",
            h = "cd".repeat(32)
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("one principal"), "{e}");
        let e = load("[limits]\nmax_per_principal = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("limits.max_per_principal"), "{e}");
        let e = load("[limits]\nmax_total_memory = \"64MiB\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("limits.max_total_memory"), "{e}");
        let e = load("[limits]\nmemory = \"1GiB\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("limits.memory is above limits.max_memory"),
            "{e}"
        );
    }

    #[test]
    fn the_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../portcullis.example.toml");
        let c = Config::load(Some(&path)).unwrap();
        assert!(c.principals.contains_key("local"));
        assert!(c.policy_dir.as_ref().unwrap().ends_with("policies"));
    }
}
