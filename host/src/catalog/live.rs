//! The catalog in force, and reloading it from the tool directory.
//!
//! A reload looks at every `*.wasm` in the directory again: a file whose bytes have the digest
//! already loaded keeps its compiled component and pinned descriptors; a new or changed file is
//! compiled (off the async runtime's threads, through the compile cache) and described like at
//! start; a file that is gone takes its tools with it. The new catalog replaces the old one only
//! when every component loaded and no two offer one tool name: otherwise the last good catalog
//! stays in force and the error says which file and why. Calls already planned keep the tool
//! entry (and component) they were planned with.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Catalog, component_files, load_component};
use crate::runner::Runner;

/// The catalog in force, swapped whole by a reload.
pub struct Live {
    current: RwLock<Arc<Catalog>>,
    source: Option<Source>,
    /// One reload at a time: two would compile the same files twice.
    reloading: tokio::sync::Mutex<()>,
}

/// Where the catalog was loaded from.
struct Source {
    dir: PathBuf,
    cache_dir: Option<PathBuf>,
}

/// What a reload changed, by component name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Reloaded {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: usize,
}

impl Reloaded {
    /// Whether the catalog is any different.
    pub fn changed_anything(&self) -> bool {
        !(self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty())
    }
}

impl std::fmt::Display for Reloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |names: &[String]| {
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        };
        write!(
            f,
            "added: {}; changed: {}; removed: {}; unchanged: {}",
            list(&self.added),
            list(&self.changed),
            list(&self.removed),
            self.unchanged
        )
    }
}

/// What the tool directory looks like: each component file with its size and modification
/// time. A reload is due when this changes.
pub type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

impl Live {
    /// A catalog that cannot be reloaded (built in memory, e.g. by tests and benches).
    pub fn fixed(catalog: Catalog) -> Self {
        Self {
            current: RwLock::new(Arc::new(catalog)),
            source: None,
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// This catalog, loaded from `dir`, reloadable from there.
    pub fn reloadable_from(self, dir: &Path, cache_dir: Option<&Path>) -> Self {
        Self {
            source: Some(Source {
                dir: dir.to_path_buf(),
                cache_dir: cache_dir.map(Path::to_path_buf),
            }),
            ..self
        }
    }

    /// The catalog in force now.
    pub fn current(&self) -> Arc<Catalog> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The tool directory, if the catalog came from one.
    pub fn dir(&self) -> Option<&Path> {
        self.source.as_ref().map(|s| s.dir.as_path())
    }

    /// The tool directory's component files as they are now (`None`: no directory, or it
    /// cannot be read).
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        let files = component_files(self.dir()?).ok()?;
        Some(
            files
                .into_iter()
                .map(|path| {
                    let meta = std::fs::metadata(&path).ok();
                    let size = meta.as_ref().map_or(0, |m| m.len());
                    let modified = meta.and_then(|m| m.modified().ok());
                    (path, size, modified)
                })
                .collect(),
        )
    }

    /// Loads the tool directory again (see the module documentation).
    pub async fn reload(&self, runner: &Runner) -> Result<Reloaded> {
        let Some(source) = &self.source else {
            bail!("this catalog was not loaded from a tool directory");
        };
        let _one = self.reloading.lock().await;
        let old = self.current();
        let mut next = Catalog::default();
        let mut report = Reloaded::default();
        let files = component_files(&source.dir)?;
        for path in &files {
            let bytes = std::fs::read(path)
                .with_context(|| format!("reading the component {}", path.display()))?;
            let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
            let before = old.components.iter().find(|c| &c.path == path);
            let entry = match before {
                Some(component) if component.digest == digest => {
                    report.unchanged += 1;
                    (component.clone(), old.items_of(component))
                }
                _ => {
                    let loaded = load_component(runner, path, bytes, source.cache_dir.as_deref())
                        .await
                        .with_context(|| format!("loading {}", path.display()))?;
                    let names = if before.is_some() {
                        &mut report.changed
                    } else {
                        &mut report.added
                    };
                    names.push(loaded.0.name.clone());
                    loaded
                }
            };
            next.insert(entry)
                .with_context(|| format!("loading {}", path.display()))?;
        }
        report.removed = old
            .components
            .iter()
            .filter(|c| !files.contains(&c.path))
            .map(|c| c.name.clone())
            .collect();
        if report.changed_anything() {
            *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        }
        Ok(report)
    }
}
