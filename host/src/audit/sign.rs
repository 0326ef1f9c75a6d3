//! The trail's signing key (ed25519) and the signatures of checkpoints and pruning markers.
//!
//! The key is a PKCS#8 PEM file, the format `openssl genpkey -algorithm ed25519` writes; one is
//! generated (mode 0600) on first start if the configured file does not exist. Public keys are
//! written `ed25519:<hex>`. A signature covers the record kind, what it vouches for (the
//! sequence number and hash of a record) and its time.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde_json::json;

use crate::state::{AuditAppend, Sealer};

/// The DER prefix of an ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32 key bytes.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The DER prefix of an ed25519 PKCS#8 v1 private key (RFC 8410), before the 32-byte seed:
/// the form OpenSSL reads and writes.
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A new private key as PKCS#8 v1 DER.
fn generate() -> Result<Vec<u8>> {
    use ring::rand::SecureRandom;
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    ring::rand::SystemRandom::new()
        .fill(&mut *seed)
        .map_err(|_| anyhow!("no randomness for the audit signing key"))?;
    let mut der = PKCS8_PREFIX.to_vec();
    der.extend_from_slice(&*seed);
    Ok(der)
}

/// What a signature covers.
pub fn signed_message(kind: &str, seq: u64, hash: &str, at_ms: u64) -> String {
    format!("portcullis-audit-{kind}-v1\n{seq}\n{hash}\n{at_ms}")
}

/// The ed25519 key that seals the trail.
pub struct Signer {
    pair: Ed25519KeyPair,
    public: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("public", &self.public)
            .finish()
    }
}

fn pem_body(text: &str, label: &str) -> Result<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text
        .find(&begin)
        .with_context(|| format!("no `{begin}` line"))?;
    let rest = &text[start + begin.len()..];
    let stop = rest
        .find(&end)
        .with_context(|| format!("no `{end}` line"))?;
    let b64: String = rest[..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .context("the PEM body is not base64")
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

impl Signer {
    /// Loads the key at `path`, generating it first if the file does not exist. The second
    /// value says whether it was generated now.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool)> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((
                Self::from_pem(&text).with_context(|| path.display().to_string())?,
                false,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let der = zeroize::Zeroizing::new(generate()?);
                let text = zeroize::Zeroizing::new(pem("PRIVATE KEY", &der));
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                let created = {
                    use std::os::unix::fs::OpenOptionsExt;
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(path)
                };
                match created {
                    Ok(mut file) => {
                        file.write_all(text.as_bytes())
                            .and_then(|()| file.sync_all())
                            .with_context(|| format!("writing {}", path.display()))?;
                        Ok((Self::from_pem(&text)?, true))
                    }
                    // Another process made it first: use that one.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let text = std::fs::read_to_string(path)?;
                        Ok((Self::from_pem(&text)?, false))
                    }
                    Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
                }
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// A key that lives in memory only.
    pub fn ephemeral() -> Result<Self> {
        Self::from_pem(&pem("PRIVATE KEY", &generate()?))
    }

    fn from_pem(text: &str) -> Result<Self> {
        let der = pem_body(text, "PRIVATE KEY")
            .context("the audit signing key must be an ed25519 PKCS#8 PEM file")?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map_err(|e| anyhow!("not an ed25519 private key: {e}"))?;
        let public = format!("ed25519:{}", hex::encode(pair.public_key().as_ref()));
        Ok(Self { pair, public })
    }

    /// `ed25519:<hex>`.
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// The public key as a SubjectPublicKeyInfo PEM (for `openssl pkeyutl -verify`).
    pub fn public_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(self.pair.public_key().as_ref());
        pem("PUBLIC KEY", &der)
    }

    /// A 32-byte key for `purpose`, derived from this key: the SHA-256 of its (deterministic,
    /// RFC 8032) signature over the purpose. Every replica with the same signing key derives
    /// the same key; nothing derived reveals the signing key or another purpose's key.
    pub fn derive_key(&self, purpose: &str) -> [u8; 32] {
        use sha2::Digest;
        let message = format!("portcullis-derived-key-v1\n{purpose}");
        sha2::Sha256::digest(self.pair.sign(message.as_bytes()).as_ref()).into()
    }

    fn sign(&self, message: &str) -> String {
        hex::encode(self.pair.sign(message.as_bytes()).as_ref())
    }
}

impl Sealer for Signer {
    fn seal(&self, kind: &'static str, seq: u64, hash: &str, at_ms: u64) -> AuditAppend {
        let sig = self.sign(&signed_message(kind, seq, hash, at_ms));
        let field = if kind == "pruned" { "up_to" } else { "covers" };
        let fields = json!({
            "kind": kind,
            "at": crate::time::rfc3339_ms(at_ms),
            "at_ms": at_ms,
            field: {"seq": seq, "hash": hash},
            "key": self.public,
            "sig": sig,
        });
        AuditAppend {
            kind,
            at_ms,
            job: None,
            principal: None,
            tool: None,
            outcome: None,
            fields: fields.to_string(),
        }
    }
}

/// Parses `ed25519:<hex>`, a bare 64-digit hex key, or a public key PEM file's text.
pub fn parse_public_key(text: &str) -> Result<String> {
    let text = text.trim();
    let bytes = if text.contains("-----BEGIN PUBLIC KEY-----") {
        let der = pem_body(text, "PUBLIC KEY")?;
        match der.strip_prefix(&SPKI_PREFIX[..]) {
            Some(key) => key.to_vec(),
            None => bail!("not an ed25519 public key"),
        }
    } else {
        hex::decode(text.strip_prefix("ed25519:").unwrap_or(text))
            .context("a public key is `ed25519:` and 64 hex digits")?
    };
    if bytes.len() != 32 {
        bail!("an ed25519 public key is 32 bytes, not {}", bytes.len());
    }
    Ok(format!("ed25519:{}", hex::encode(bytes)))
}

/// Whether `sig` (hex) is `key`'s signature of `message`.
pub fn verify(key: &str, message: &str, sig: &str) -> bool {
    let (Some(key), Ok(sig)) = (
        key.strip_prefix("ed25519:")
            .and_then(|k| hex::decode(k).ok()),
        hex::decode(sig),
    ) else {
        return false;
    };
    UnparsedPublicKey::new(&ED25519, key)
        .verify(message.as_bytes(), &sig)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k/audit.key");
        let (signer, created) = Signer::load_or_create(&path).unwrap();
        assert!(created);
        let (again, created) = Signer::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(signer.public_key(), again.public_key());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let sig = signer.sign("m");
        assert!(verify(signer.public_key(), "m", &sig));
        assert!(!verify(signer.public_key(), "n", &sig));
        assert_eq!(
            parse_public_key(&signer.public_pem()).unwrap(),
            signer.public_key()
        );
        assert!(parse_public_key("ed25519:00").is_err());
        // The file is what OpenSSL writes, and a key OpenSSL wrote loads.
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(written.starts_with("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI"));
        let openssl = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBxVJdCaaI3zWKaN3zXNLmy7ZFsBMIZiWlKNv6GKunU4\n-----END PRIVATE KEY-----\n";
        std::fs::write(&path, openssl).unwrap();
        let (theirs, _) = Signer::load_or_create(&path).unwrap();
        assert_eq!(
            theirs.public_key(),
            "ed25519:c05e0842dda3777cce930fc716a71e5b4525e770fe227b8b095232afbab77507"
        );
        std::fs::write(&path, "not a key").unwrap();
        let e = Signer::load_or_create(&path).unwrap_err();
        assert!(format!("{e:#}").contains("PKCS#8 PEM"), "{e:#}");
    }
}
