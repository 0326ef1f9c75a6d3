//! The catalog: every component in the tool directory, loaded once.
//!
//! For each `*.wasm` file: sha256 digest of its bytes; compile (or load the cached compiled
//! artifact, see [`cache`]); pre-instantiate against the runner's linker; call `describe()` once
//! in a sandbox with no grants; check and pin each descriptor. Two tools with one name are a
//! load error naming both components.

pub mod cache;
mod descriptor;
mod live;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

pub use cache::CacheOutcome;
pub use descriptor::{Descriptor, ToolAnnotations};
pub use live::{Live, Reloaded};

use crate::runner::{Prepared, Runner};

/// One loaded component.
pub struct LoadedComponent {
    /// The file stem, e.g. `workspace` for `workspace.wasm`.
    pub name: String,
    pub path: PathBuf,
    /// `sha256:` of the component's bytes.
    pub digest: String,
    pub prepared: Prepared,
    pub cache: CacheOutcome,
}

/// One tool, with the component that provides it.
pub struct ToolEntry {
    pub descriptor: Descriptor,
    pub component: Arc<LoadedComponent>,
    /// The input schema, compiled once.
    pub validator: jsonschema::Validator,
    /// The declared output schema, compiled once: structured output must match it.
    pub output_validator: Option<jsonschema::Validator>,
    /// Top-level input fields marked as workspace paths (`"x-portcullis-path": true`): the gate
    /// normalises them before policy and tool see them.
    pub path_fields: Vec<String>,
}

/// The `*.wasm` files in `dir`, sorted by name.
fn component_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the tool directory {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "wasm"))
        .collect();
    files.sort();
    Ok(files)
}

/// Everything loaded from the tool directory.
#[derive(Default)]
pub struct Catalog {
    components: Vec<Arc<LoadedComponent>>,
    tools: BTreeMap<String, Arc<ToolEntry>>,
}

impl Catalog {
    /// Loads every `*.wasm` in `dir` (sorted by name). `cache_dir` holds compiled artifacts;
    /// `None` compiles every time.
    pub async fn load(runner: &Runner, dir: &Path, cache_dir: Option<&Path>) -> Result<Self> {
        let files = component_files(dir)?;
        let mut catalog = Catalog::default();
        for path in files {
            catalog
                .add_file(runner, &path, cache_dir)
                .await
                .with_context(|| format!("loading {}", path.display()))?;
        }
        Ok(catalog)
    }

    /// Loads one component file into the catalog.
    pub async fn add_file(
        &mut self,
        runner: &Runner,
        path: &Path,
        cache_dir: Option<&Path>,
    ) -> Result<()> {
        let bytes = std::fs::read(path).context("reading the component")?;
        let loaded = load_component(runner, path, bytes, cache_dir).await?;
        self.insert(loaded)
    }

    /// Adds a loaded component and its tools; a tool name already taken is an error naming
    /// both components.
    fn insert(
        &mut self,
        (component, tools): (Arc<LoadedComponent>, Vec<Arc<ToolEntry>>),
    ) -> Result<()> {
        for tool in &tools {
            if let Some(existing) = self.tools.get(&tool.descriptor.name) {
                bail!(
                    "tool name `{}` is offered by both `{}` ({}) and `{}` ({}); tool names must be unique",
                    tool.descriptor.name,
                    existing.component.name,
                    existing.component.path.display(),
                    component.name,
                    component.path.display()
                );
            }
        }
        for tool in tools {
            self.tools.insert(tool.descriptor.name.clone(), tool);
        }
        self.components.push(component);
        Ok(())
    }

    /// The tools `component` offers here.
    fn tools_of(&self, component: &Arc<LoadedComponent>) -> Vec<Arc<ToolEntry>> {
        self.tools
            .values()
            .filter(|tool| Arc::ptr_eq(&tool.component, component))
            .cloned()
            .collect()
    }

    /// The tool called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<ToolEntry>> {
        self.tools.get(name)
    }

    /// All tools, sorted by name.
    pub fn tools(&self) -> impl Iterator<Item = &Arc<ToolEntry>> {
        self.tools.values()
    }

    /// All components, in load order.
    pub fn components(&self) -> &[Arc<LoadedComponent>] {
        &self.components
    }

    /// A table for people: components, digests, tools, annotations, warnings.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for component in &self.components {
            let _ = writeln!(
                out,
                "{}  {}  ({})",
                component.name,
                component.digest,
                component.path.display()
            );
            for tool in self.tools.values() {
                if !Arc::ptr_eq(&tool.component, component) {
                    continue;
                }
                let d = &tool.descriptor;
                let a = d.annotations;
                let mut flags = Vec::new();
                for (set, label) in [
                    (a.read_only, "read-only"),
                    (a.destructive, "destructive"),
                    (a.idempotent, "idempotent"),
                    (a.open_world, "open-world"),
                ] {
                    if set {
                        flags.push(label);
                    }
                }
                let summary = d.description.lines().next().unwrap_or_default();
                let _ = writeln!(out, "  {:<16} [{}] {}", d.name, flags.join(", "), summary);
                for warning in &d.warnings {
                    let _ = writeln!(out, "    WARNING: description {warning}");
                }
            }
        }
        out
    }
}

/// Compiles (or loads from the cache, off the async runtime's threads), prepares and
/// describes one component, and checks its descriptors.
async fn load_component(
    runner: &Runner,
    path: &Path,
    bytes: Vec<u8>,
    cache_dir: Option<&Path>,
) -> Result<(Arc<LoadedComponent>, Vec<Arc<ToolEntry>>)> {
    let digest_hex = hex::encode(Sha256::digest(&bytes));
    let (engine, cache, digest) = (
        runner.engine().clone(),
        cache_dir.map(Path::to_path_buf),
        digest_hex.clone(),
    );
    let (component, cache) = tokio::task::spawn_blocking(move || {
        cache::load_or_compile(&engine, &bytes, &digest, cache.as_deref())
    })
    .await
    .context("compiling the component")?
    .context("compiling the component")?;
    let prepared = runner.prepare(&component)?;
    let infos = runner
        .describe(&prepared)
        .await
        .map_err(|e| anyhow::anyhow!("describe() failed: {e}"))?;
    if infos.is_empty() {
        bail!("describe() returned no tools");
    }
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let loaded = Arc::new(LoadedComponent {
        name,
        path: path.to_path_buf(),
        digest: format!("sha256:{digest_hex}"),
        prepared,
        cache,
    });
    let mut tools: Vec<Arc<ToolEntry>> = Vec::new();
    for info in infos {
        let descriptor = descriptor::check(info).map_err(anyhow::Error::msg)?;
        for warning in &descriptor.warnings {
            tracing::warn!(tool = %descriptor.name, component = %path.display(), "description {warning}");
        }
        let validator = jsonschema::validator_for(&descriptor.input_schema)
            .map_err(|e| anyhow::anyhow!("tool `{}`: input schema: {e}", descriptor.name))?;
        let output_validator = descriptor
            .output_schema
            .as_ref()
            .map(jsonschema::validator_for)
            .transpose()
            .map_err(|e| anyhow::anyhow!("tool `{}`: output schema: {e}", descriptor.name))?;
        let path_fields = descriptor::path_fields(&descriptor.input_schema);
        if tools.iter().any(|t| t.descriptor.name == descriptor.name) {
            bail!(
                "`{}` offers the tool name `{}` twice",
                loaded.name,
                descriptor.name
            );
        }
        tools.push(Arc::new(ToolEntry {
            descriptor,
            component: loaded.clone(),
            validator,
            output_validator,
            path_fields,
        }));
    }
    Ok((loaded, tools))
}
