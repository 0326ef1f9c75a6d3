//! `portcullis.toml`: one file, every key optional, documented defaults (see
//! `portcullis.example.toml`). Unknown keys and bad values are errors that name the key and the
//! file. Relative paths are resolved against the file's directory (against the working
//! directory when there is no file).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::gate::ArgsCaps;
use crate::grants::{Limits, parse_bytes, parse_duration};
use crate::policy::Principal;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    environment: Option<String>,
    tools_dir: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    policy_dir: Option<PathBuf>,
    workspace: Option<PathBuf>,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    stdio: StdioFile,
    #[serde(default)]
    http: HttpFile,
    principals: Option<BTreeMap<String, PrincipalFile>>,
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StdioFile {
    principal: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    listen: Option<String>,
    allowed_hosts: Option<Vec<String>>,
    allowed_origins: Option<Vec<String>>,
    anonymous: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalFile {
    #[serde(default)]
    roles: Vec<String>,
    /// `sha256:<hex>` of each bearer token (see `portcullis token`).
    #[serde(default)]
    tokens: Vec<String>,
    #[serde(default)]
    claims: Map<String, Value>,
}

/// A principal as configured.
#[derive(Clone, Debug, PartialEq)]
pub struct PrincipalConfig {
    pub roles: Vec<String>,
    pub token_hashes: Vec<String>,
    pub claims: Map<String, Value>,
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
    /// The directory the default policy grants to the workspace tools.
    pub workspace: PathBuf,
    pub default_limits: Limits,
    pub ceilings: Limits,
    pub max_concurrent: u32,
    pub args: ArgsCaps,
    pub stdio_principal: String,
    pub http: HttpConfig,
    pub principals: BTreeMap<String, PrincipalConfig>,
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
        let max_concurrent = l.max_concurrent.unwrap_or(32);
        if max_concurrent == 0 || max_concurrent > 1000 {
            bail!("limits.max_concurrent must be between 1 and 1000");
        }

        let principals: BTreeMap<String, PrincipalConfig> = match file.principals {
            Some(map) => map
                .into_iter()
                .map(|(name, p)| {
                    for hash in &p.tokens {
                        check_hash(&name, hash)?;
                    }
                    Ok((
                        name,
                        PrincipalConfig {
                            roles: p.roles,
                            token_hashes: p.tokens,
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
                    claims: Map::new(),
                },
            )]),
        };
        let stdio_principal = file.stdio.principal.unwrap_or_else(|| "local".into());
        let http = HttpConfig {
            listen: file
                .http
                .listen
                .as_deref()
                .unwrap_or("127.0.0.1:8080")
                .parse()
                .map_err(|e| {
                    anyhow!("http.listen: {e} (expected an address such as 127.0.0.1:8080)")
                })?,
            allowed_hosts: file
                .http
                .allowed_hosts
                .unwrap_or_else(|| vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()]),
            allowed_origins: file.http.allowed_origins.unwrap_or_default(),
            anonymous: file.http.anonymous,
        };
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
            workspace: at(file
                .workspace
                .unwrap_or_else(|| ".portcullis/workspace".into())),
            default_limits,
            ceilings,
            max_concurrent,
            args,
            stdio_principal,
            http,
            principals,
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
