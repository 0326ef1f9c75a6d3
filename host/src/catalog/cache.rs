//! The on-disk cache of compiled components, so that a restart deserialises (well under a
//! millisecond) instead of recompiling (~100 ms per component).
//!
//! A cached artifact is native code, and `Component::deserialize` trusts it (`unsafe`). So an
//! artifact is loaded only when all of this holds:
//! - the cache directory is a real directory (not a link) owned by the gateway's user and not
//!   writable by group or others, and its key readable by the gateway's user alone; otherwise
//!   the cache is not used at all (compile every time) and the operator is told why. (Its
//!   ancestors are not checked, and the files are opened by path after the check: a user who
//!   can replace the directory between the two is not defended against. Keep the cache under a
//!   directory only the gateway's user can write.)
//! - the file carries an HMAC-SHA256 tag, under a key kept in that directory (`key`, mode
//!   0600), over the component's digest, the wasmtime version, the engine's compatibility hash
//!   and the artifact itself. An artifact copied under another component's name, built by
//!   another engine configuration, or edited in any byte fails the tag and is recompiled.
//!
//! File names are sha256 of digest + engine identity (stable across builds, unlike
//! `DefaultHasher`).

use std::fs;
use std::hash::Hasher;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

type Tag = hmac::Hmac<Sha256>;

/// Bytes of the tag at the start of each artifact file.
const TAG_LEN: usize = 32;
/// Bytes of the cache key.
const KEY_LEN: usize = 32;

/// Whether a component came from the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheOutcome {
    Hit,
    Compiled,
    /// No cache directory configured, or the directory is not safe to load code from.
    Disabled,
}

/// Feeds `Hash` output into sha256, so the engine's compatibility hash has stable bytes.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// What identifies the engine an artifact was compiled by: the engine's compatibility hash
/// (wasmtime's version, the engine configuration and the target) and this gateway's version.
fn engine_identity(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
    format!(
        "portcullis-{}-{}",
        env!("CARGO_PKG_VERSION"),
        hex::encode(hasher.0.finalize())
    )
}

/// A usable cache directory with its key.
struct Cache {
    dir: PathBuf,
    key: [u8; KEY_LEN],
    identity: String,
}

impl Cache {
    fn artifact_path(&self, digest_hex: &str) -> PathBuf {
        let name = Sha256::digest(format!("{digest_hex}\0{}", self.identity));
        self.dir.join(format!("{}.cwasm", hex::encode(name)))
    }

    fn tag(&self, digest_hex: &str, artifact: &[u8]) -> Result<Tag> {
        let mut mac = Tag::new_from_slice(&self.key).context("cache key")?;
        mac.update(b"portcullis-compiled-component-v1\0");
        mac.update(digest_hex.as_bytes());
        mac.update(b"\0");
        mac.update(self.identity.as_bytes());
        mac.update(b"\0");
        mac.update(artifact);
        Ok(mac)
    }
}

fn current_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Refuses a path that is a link, not ours, or open to others beyond `mask`'s bits being
/// clear (`0o022`: not writable by group or others; `0o077`: not even readable).
fn check_private(path: &Path, what: &str, dir: bool, mask: u32) -> Result<()> {
    let meta = fs::symlink_metadata(path).with_context(|| format!("{}", path.display()))?;
    if meta.file_type().is_symlink() || meta.is_dir() != dir {
        bail!("{} is not a plain {what}", path.display());
    }
    if meta.uid() != current_uid() {
        bail!(
            "{} is owned by uid {}, not by the gateway's user (uid {})",
            path.display(),
            meta.uid(),
            current_uid()
        );
    }
    if meta.permissions().mode() & mask != 0 {
        bail!(
            "{} is open to group or others (mode {:o}); run `chmod go-{}` on it",
            path.display(),
            meta.permissions().mode() & 0o777,
            if mask & 0o044 != 0 { "rwx" } else { "w" }
        );
    }
    Ok(())
}

/// Opens (creating if needed) the cache in `dir`, or says why it must not be used.
fn open(dir: &Path, engine: &Engine) -> Result<Cache> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    check_private(dir, "directory", true, 0o022)?;
    let key_path = dir.join("key");
    if !key_path.exists() {
        let mut key = [0u8; KEY_LEN];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut key))
            .context("reading /dev/urandom")?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(&key)?;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o600))?;
        // Another gateway may have created it meanwhile: keep theirs.
        let _ = tmp.persist_noclobber(&key_path);
    }
    // The key must stay secret: whoever can read it can tag code of their own.
    check_private(&key_path, "file", false, 0o077)?;
    let mut key = [0u8; KEY_LEN];
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&key_path)
        .with_context(|| format!("opening {}", key_path.display()))?;
    file.read_exact(&mut key)
        .with_context(|| format!("{} is not a cache key", key_path.display()))?;
    Ok(Cache {
        dir: dir.to_path_buf(),
        key,
        identity: engine_identity(engine),
    })
}

/// Returns the compiled component, from `dir` when a verified artifact is there; compiles (and
/// stores it, when the directory is usable) otherwise.
pub fn load_or_compile(
    engine: &Engine,
    bytes: &[u8],
    digest_hex: &str,
    dir: Option<&Path>,
) -> Result<(Component, CacheOutcome)> {
    let compile = || Component::new(engine, bytes).map_err(anyhow::Error::from);
    let Some(dir) = dir else {
        return Ok((compile()?, CacheOutcome::Disabled));
    };
    let cache = match open(dir, engine) {
        Ok(cache) => cache,
        Err(e) => {
            tracing::warn!("not using the compile cache (compiling instead): {e:#}");
            return Ok((compile()?, CacheOutcome::Disabled));
        }
    };
    let path = cache.artifact_path(digest_hex);
    // Read into memory rather than mapping the file: a mapped artifact that someone truncates
    // later would crash the gateway with SIGBUS.
    if let Ok(file) = fs::read(&path) {
        match verified(&cache, digest_hex, &file) {
            Ok(artifact) => {
                // SAFETY: `artifact` is byte-for-byte what this gateway serialised for this
                // component digest and this engine (the HMAC tag under our private key proves
                // it), read from a directory only the gateway's user can write.
                match unsafe { Component::deserialize(engine, artifact) } {
                    Ok(component) => return Ok((component, CacheOutcome::Hit)),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), "cached artifact unusable, recompiling: {e}")
                    }
                }
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), "cached artifact refused, recompiling: {e:#}")
            }
        }
    }
    let component = compile()?;
    if let Err(e) = store(&cache, digest_hex, &path, &component) {
        tracing::warn!(dir = %dir.display(), "could not cache the compiled component: {e:#}");
    }
    Ok((component, CacheOutcome::Compiled))
}

/// The artifact inside `file`, if its tag is right.
fn verified<'a>(cache: &Cache, digest_hex: &str, file: &'a [u8]) -> Result<&'a [u8]> {
    if file.len() < TAG_LEN {
        bail!("too short");
    }
    let (tag, artifact) = file.split_at(TAG_LEN);
    cache
        .tag(digest_hex, artifact)?
        .verify_slice(tag)
        .map_err(|_| anyhow::anyhow!("its tag does not match this component and engine"))?;
    Ok(artifact)
}

fn store(cache: &Cache, digest_hex: &str, path: &Path, component: &Component) -> Result<()> {
    let artifact = component.serialize().map_err(anyhow::Error::from)?;
    let tag = cache.tag(digest_hex, &artifact)?.finalize().into_bytes();
    let mut tmp = tempfile::NamedTempFile::new_in(&cache.dir)?;
    tmp.write_all(&tag)?;
    tmp.write_all(&artifact)?;
    tmp.persist(path)?;
    Ok(())
}
