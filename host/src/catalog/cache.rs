//! The on-disk cache of compiled components, keyed by component digest and engine settings,
//! so that a restart deserialises (well under a millisecond) instead of recompiling (~100 ms per component).
//!
//! Security: a cached artifact is native code that is loaded without verification, so the cache
//! directory must be writable by the gateway alone. It is created with mode 0700.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Whether a component came from the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheOutcome {
    Hit,
    Compiled,
    Disabled,
}

/// The artifact path for a component digest under this engine's settings.
fn artifact_path(dir: &Path, engine: &Engine, digest_hex: &str) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    dir.join(format!("{digest_hex}-{:016x}.cwasm", hasher.finish()))
}

/// Returns the compiled component, from `dir` when possible; compiles and stores it otherwise.
pub fn load_or_compile(
    engine: &Engine,
    bytes: &[u8],
    digest_hex: &str,
    dir: Option<&Path>,
) -> Result<(Component, CacheOutcome)> {
    let Some(dir) = dir else {
        let component = Component::new(engine, bytes).map_err(anyhow::Error::from)?;
        return Ok((component, CacheOutcome::Disabled));
    };
    let path = artifact_path(dir, engine, digest_hex);
    // Read into memory rather than mapping the file: a mapped artifact that someone truncates
    // later would crash the gateway with SIGBUS.
    if let Ok(artifact) = fs::read(&path) {
        // SAFETY: the artifact was written by this gateway into a directory only it can write
        // (see the module docs), keyed by the digest of the component it was compiled from and
        // by the engine's compatibility hash; wasmtime also checks the header and version.
        match unsafe { Component::deserialize(engine, &artifact) } {
            Ok(component) => return Ok((component, CacheOutcome::Hit)),
            Err(e) => tracing::warn!(
                path = %path.display(),
                "cached artifact unusable, recompiling: {e}"
            ),
        }
    }
    let component = Component::new(engine, bytes).map_err(anyhow::Error::from)?;
    if let Err(e) = store(dir, &path, &component) {
        tracing::warn!(dir = %dir.display(), "could not cache the compiled component: {e:#}");
    }
    Ok((component, CacheOutcome::Compiled))
}

fn store(dir: &Path, path: &Path, component: &Component) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let bytes = component.serialize().map_err(anyhow::Error::from)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(&bytes)?;
    tmp.persist(path)?;
    Ok(())
}
