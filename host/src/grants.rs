//! What one call may use: capabilities (`Grants`) and budgets (`Limits`).
//!
//! Both come from the policy decision (or, for `portcullis run`, from the command line). The
//! runner builds an instance from them and from nothing else: whatever is not granted here does
//! not exist inside the instance.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a preopened directory may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsMode {
    /// Read files and list directories; no change of any kind.
    Ro,
    /// Read and change.
    Rw,
}

/// A host directory made visible inside the instance at `guest`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsGrant {
    /// Absolute path of an existing directory on the gateway host.
    pub host: PathBuf,
    /// Absolute path at which the tool sees it, e.g. `/workspace`.
    pub guest: String,
    pub mode: FsMode,
    /// Paths relative to `host` (e.g. `.git`, `.env`, `config/private`) that do not exist for
    /// the tool: every path-based filesystem operation on them, or on anything below them, by
    /// any spelling and through any symlink, fails as if they were absent, and listings leave
    /// them out. Enforced by the runner's filesystem layer (`runner::fsguard`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hide: Vec<String>,
}

/// Validates and normalises one `hide` entry: relative, no `..`, not empty; `.` components and
/// repeated or trailing `/` are collapsed (`./.git//` → `.git`).
pub fn normalize_hide(entry: &str) -> Result<String, String> {
    if entry.starts_with('/') {
        return Err(format!(
            "hide entry `{entry}` is absolute; give a path relative to the grant's directory"
        ));
    }
    if entry.contains('\0') {
        return Err("a hide entry contains a NUL byte".into());
    }
    let mut parts = Vec::new();
    for part in entry.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(format!(
                    "hide entry `{entry}` uses `..`; entries name paths inside the grant"
                ));
            }
            name => parts.push(name),
        }
    }
    if parts.is_empty() {
        return Err(format!(
            "hide entry `{entry}` is empty (it would hide the whole grant; grant less instead)"
        ));
    }
    Ok(parts.join("/"))
}

pub use crate::egress::HttpGrant;

/// Every capability one call receives.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    #[serde(default)]
    pub fs: Vec<FsGrant>,
    #[serde(default)]
    pub http: Vec<HttpGrant>,
    /// Environment variables, exactly these and no others.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Names of secrets the tool may resolve with `secret(name)`.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Whether the tool may ask the user for input through the client (`elicit`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub elicit: bool,
    /// Whether the tool may ask the client's model for a message (`sample`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sample: bool,
}

/// Budgets for one call. Every field is always set: no wasmtime default is relied on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Wasm fuel (roughly, instructions executed).
    pub fuel: u64,
    /// Linear memory, in bytes, across all memories of the instance.
    pub memory_bytes: u64,
    /// Wall-clock time for instantiation plus the call.
    pub timeout: Duration,
    /// Size of the returned content plus structured output, in bytes.
    pub output_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 1_000_000_000,
            memory_bytes: 64 * MIB,
            timeout: Duration::from_secs(5),
            output_bytes: MIB,
        }
    }
}

/// One mebibyte.
pub const MIB: u64 = 1024 * 1024;

/// Parses a byte size such as `64MiB`, `512KiB`, `1GiB`, `1048576`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a size (examples: 64MiB, 512KiB, 1048576)"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => 1024 * MIB,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}` (use B, KiB, MiB or GiB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Parses a duration such as `2s`, `500ms`, `1m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (examples: 500ms, 2s, 1m)"))?;
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" | "min" => Ok(Duration::from_secs(n.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(n.saturating_mul(3600))),
        "d" => Ok(Duration::from_secs(n.saturating_mul(86_400))),
        other => Err(format!(
            "`{text}`: unknown unit `{other}` (use ms, s, m, h or d)"
        )),
    }
}

/// `64 MiB`, `512 KiB`, `17 bytes`: for messages.
pub fn show_bytes(n: u64) -> String {
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_bytes("64MiB"), Ok(64 * MIB));
        assert_eq!(parse_bytes("512 KiB"), Ok(512 * 1024));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert!(parse_bytes("12XB").unwrap_err().contains("unknown unit"));
        assert!(parse_bytes("lots").unwrap_err().contains("not a size"));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("2w").unwrap_err().contains("unknown unit"));
        assert_eq!(show_bytes(64 * MIB), "64 MiB");
        assert_eq!(show_bytes(1000), "1000 bytes");
    }

    #[test]
    fn hide_entries_are_normalised_or_refused() {
        assert_eq!(normalize_hide(".git"), Ok(".git".into()));
        assert_eq!(normalize_hide("./.git//"), Ok(".git".into()));
        assert_eq!(
            normalize_hide("config/./private"),
            Ok("config/private".into())
        );
        for bad in ["", ".", "./", "/etc", "a/../b", "..", "a\0b"] {
            assert!(normalize_hide(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(normalize_hide("a/../b").unwrap_err().contains("`..`"));
        assert!(normalize_hide("/etc").unwrap_err().contains("absolute"));
    }

    #[test]
    fn fs_grants_parse_with_and_without_hide() {
        let plain: FsGrant =
            serde_json::from_str(r#"{"host": "/srv", "guest": "/w", "mode": "ro"}"#).unwrap();
        assert!(plain.hide.is_empty());
        let hidden: FsGrant = serde_json::from_str(
            r#"{"host": "/srv", "guest": "/w", "mode": "rw", "hide": [".git", ".env"]}"#,
        )
        .unwrap();
        assert_eq!(hidden.hide, [".git", ".env"]);
    }
}
