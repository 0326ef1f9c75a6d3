//! Secrets: named values the operator configures (`[secrets.NAME]`), resolved for a call only
//! by the names its decision grants.
//!
//! Lifecycle: every source is read once at start ([`Secrets::load`]); a call gets the values of
//! its granted names ([`Secrets::for_call`]). Values live in zeroized memory, never enter policy
//! input, logs, errors or metrics, and are scrubbed from everything a call returns
//! (`egress::scrub`). Sources are a trait so that Vault or a cloud KMS is one more
//! implementation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::egress::Scrubber;

/// Where a secret's value comes from.
pub trait SecretSource: Send + Sync {
    /// For messages: `env CONTROL_PLANE_TOKEN`, `file /etc/portcullis/token` (never the value).
    fn describe(&self) -> String;
    /// Reads the value.
    fn read(&self) -> Result<Zeroizing<String>, String>;
}

/// An environment variable of the gateway process.
pub struct EnvSource(pub String);

impl SecretSource for EnvSource {
    fn describe(&self) -> String {
        format!("env {}", self.0)
    }

    fn read(&self) -> Result<Zeroizing<String>, String> {
        std::env::var(&self.0)
            .map(Zeroizing::new)
            .map_err(|_| format!("the environment variable {} is not set", self.0))
    }
}

/// A file; one trailing newline is removed.
pub struct FileSource(pub PathBuf);

impl SecretSource for FileSource {
    fn describe(&self) -> String {
        format!("file {}", self.0.display())
    }

    fn read(&self) -> Result<Zeroizing<String>, String> {
        let bytes = Zeroizing::new(
            std::fs::read(&self.0).map_err(|e| format!("cannot read {}: {e}", self.0.display()))?,
        );
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| format!("{} is not UTF-8", self.0.display()))?;
        let text = text.strip_suffix('\n').unwrap_or(text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        Ok(Zeroizing::new(text.to_string()))
    }
}

/// One configured secret: its value, or why it has none.
struct Entry {
    source: String,
    value: Result<Zeroizing<String>, String>,
}

/// Every configured secret.
#[derive(Clone, Default)]
pub struct Secrets {
    entries: Arc<BTreeMap<String, Entry>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.entries.keys()).finish()
    }
}

/// The secrets of one call: names and values.
#[derive(Clone, Default)]
pub struct CallSecrets {
    values: Arc<BTreeMap<String, Zeroizing<String>>>,
}

impl std::fmt::Debug for CallSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.values.keys()).finish()
    }
}

impl CallSecrets {
    /// The secrets `values` (name, value).
    pub fn from_values(values: Vec<(String, Zeroizing<String>)>) -> Self {
        Self {
            values: Arc::new(values.into_iter().collect()),
        }
    }

    /// These secrets and `other`'s (this one's value where both have a name).
    pub fn merged(self, other: &CallSecrets) -> Self {
        if other.values.is_empty() {
            return self;
        }
        let mut values = (*other.values).clone();
        values.extend(self.values.iter().map(|(k, v)| (k.clone(), v.clone())));
        Self {
            values: Arc::new(values),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(|v| v.as_str())
    }

    /// Names and values.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// A scrubber for every value of the call.
    pub fn scrubber(&self) -> Scrubber {
        Scrubber::new(
            self.values
                .iter()
                .map(|(name, value)| (name.clone(), Zeroizing::new(value.as_bytes().to_vec())))
                .collect(),
        )
    }
}

/// A secret name: what `[secrets.NAME]` and grants may use.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

impl Secrets {
    /// Reads every source once. A source that cannot be read is not an error here (the gateway
    /// starts, and calls granted that secret are denied, saying why); it is returned as a
    /// warning for the operator.
    pub fn load(
        sources: Vec<(String, Box<dyn SecretSource>)>,
    ) -> Result<(Self, Vec<String>), String> {
        let mut entries = BTreeMap::new();
        let mut warnings = Vec::new();
        for (name, source) in sources {
            if !valid_name(&name) {
                return Err(format!(
                    "secrets.{name}: a secret name is letters, digits, `_`, `-` and `.`"
                ));
            }
            let value = source.read().and_then(|v| {
                if v.chars().count() < Scrubber::MIN_LEN {
                    Err(format!(
                        "its value is shorter than {} characters, too short to scrub reliably",
                        Scrubber::MIN_LEN
                    ))
                } else {
                    Ok(v)
                }
            });
            if let Err(e) = &value {
                warnings.push(format!("secret {name} ({}): {e}", source.describe()));
            }
            entries.insert(
                name,
                Entry {
                    source: source.describe(),
                    value,
                },
            );
        }
        Ok((
            Self {
                entries: Arc::new(entries),
            },
            warnings,
        ))
    }

    /// The configured names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Why `name` cannot be given to a call, if it cannot.
    pub fn unavailable(&self, name: &str) -> Option<String> {
        match self.entries.get(name) {
            None => Some(format!(
                "secret {name} is not configured ([secrets.{name}])"
            )),
            Some(Entry {
                source,
                value: Err(e),
            }) => Some(format!("secret {name} ({source}) has no value: {e}")),
            Some(_) => None,
        }
    }

    /// The values of `names` for one call.
    pub fn for_call<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<CallSecrets, String> {
        let mut values = BTreeMap::new();
        for name in names {
            if let Some(why) = self.unavailable(name) {
                return Err(why);
            }
            if let Some(Entry { value: Ok(v), .. }) = self.entries.get(name) {
                values.insert(name.to_string(), v.clone());
            }
        }
        Ok(CallSecrets {
            values: Arc::new(values),
        })
    }
}

/// A source with a fixed value, for tests.
#[cfg(test)]
pub(crate) struct Fixed(pub &'static str);

#[cfg(test)]
impl SecretSource for Fixed {
    fn describe(&self) -> String {
        "fixed".into()
    }
    fn read(&self) -> Result<Zeroizing<String>, String> {
        Ok(Zeroizing::new(self.0.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_names_with_values_resolve() {
        let (secrets, warnings) = Secrets::load(vec![
            ("TOKEN".into(), Box::new(Fixed("canary-1234"))),
            ("SHORT".into(), Box::new(Fixed("ab"))),
            (
                "MISSING".into(),
                Box::new(EnvSource("PORTCULLIS_TEST_SURELY_UNSET".into())),
            ),
        ])
        .unwrap();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings.iter().all(|w| !w.contains("canary")));
        let call = secrets.for_call(["TOKEN"]).unwrap();
        assert_eq!(call.get("TOKEN"), Some("canary-1234"));
        assert_eq!(call.get("OTHER"), None);
        assert!(
            secrets
                .for_call(["NOPE"])
                .unwrap_err()
                .contains("not configured")
        );
        let e = secrets.for_call(["MISSING"]).unwrap_err();
        assert!(e.contains("PORTCULLIS_TEST_SURELY_UNSET"), "{e}");
        assert!(
            secrets
                .for_call(["SHORT"])
                .unwrap_err()
                .contains("too short")
        );
        assert!(!format!("{secrets:?} {call:?}").contains("canary"));
        assert!(Secrets::load(vec![("a b".into(), Box::new(Fixed("xxxxx")))]).is_err());
    }

    #[test]
    fn files_lose_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        std::fs::write(&path, "value-1\n").unwrap();
        assert_eq!(FileSource(path).read().unwrap().as_str(), "value-1");
    }
}
