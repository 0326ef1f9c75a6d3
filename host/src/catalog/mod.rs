//! The catalog: every component in the tool directory, loaded once.
//!
//! For each `*.wasm` file: sha256 digest of its bytes; compile (or load the cached compiled
//! artifact, see [`cache`]); pre-instantiate against the runner's linker; call `describe()` once
//! in a sandbox with no grants; check and pin each descriptor. Two tools with one name are a
//! load error naming both components.

pub mod cache;
mod descriptor;
mod items;
mod live;
mod producers;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

pub use cache::CacheOutcome;
pub use descriptor::{Descriptor, ToolAnnotations};
pub use items::{ItemText, PromptArg, PromptEntry, ResourceEntry, TemplateEntry, UriTemplate};
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
    /// Bytes of the `.wasm` file, what it says it was written in, and how long compiling (or
    /// loading it from the cache) took.
    pub size: u64,
    pub language: Option<String>,
    pub load_time: std::time::Duration,
    /// Whether it answers `completion/complete` for its prompts and templates.
    pub completes: bool,
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

/// What one component offers.
#[derive(Default)]
pub(crate) struct Items {
    tools: Vec<Arc<ToolEntry>>,
    resources: Vec<Arc<ResourceEntry>>,
    templates: Vec<Arc<TemplateEntry>>,
    prompts: Vec<Arc<PromptEntry>>,
}

/// Where a resource URI leads.
pub enum Resolved {
    Fixed(Arc<ResourceEntry>),
    Template {
        entry: Arc<TemplateEntry>,
        variables: Vec<(String, String)>,
    },
}

/// Everything loaded from the tool directory.
#[derive(Default)]
pub struct Catalog {
    components: Vec<Arc<LoadedComponent>>,
    tools: BTreeMap<String, Arc<ToolEntry>>,
    resources: BTreeMap<String, Arc<ResourceEntry>>,
    templates: BTreeMap<String, Arc<TemplateEntry>>,
    prompts: BTreeMap<String, Arc<PromptEntry>>,
}

/// A name taken twice, as a load error naming both components.
fn taken(
    what: &str,
    name: &str,
    first: &LoadedComponent,
    second: &LoadedComponent,
) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} `{name}` is offered by both `{}` ({}) and `{}` ({}); it must be unique",
        first.name,
        first.path.display(),
        second.name,
        second.path.display()
    )
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

    /// Adds a loaded component and what it offers; a tool name, resource URI, template or
    /// prompt name already taken is an error naming both components.
    fn insert(&mut self, (component, items): (Arc<LoadedComponent>, Items)) -> Result<()> {
        for tool in &items.tools {
            if let Some(existing) = self.tools.get(&tool.descriptor.name) {
                return Err(taken(
                    "tool name",
                    &tool.descriptor.name,
                    &existing.component,
                    &component,
                ));
            }
        }
        for resource in &items.resources {
            if let Some(existing) = self.resources.get(&resource.uri) {
                return Err(taken(
                    "resource",
                    &resource.uri,
                    &existing.component,
                    &component,
                ));
            }
        }
        for template in &items.templates {
            if let Some(existing) = self.templates.get(template.template.as_str()) {
                let text = template.template.as_str();
                return Err(taken(
                    "resource template",
                    text,
                    &existing.component,
                    &component,
                ));
            }
        }
        for prompt in &items.prompts {
            if let Some(existing) = self.prompts.get(&prompt.text.name) {
                return Err(taken(
                    "prompt",
                    &prompt.text.name,
                    &existing.component,
                    &component,
                ));
            }
        }
        for tool in items.tools {
            self.tools.insert(tool.descriptor.name.clone(), tool);
        }
        for resource in items.resources {
            self.resources.insert(resource.uri.clone(), resource);
        }
        for template in items.templates {
            self.templates
                .insert(template.template.as_str().to_string(), template);
        }
        for prompt in items.prompts {
            self.prompts.insert(prompt.text.name.clone(), prompt);
        }
        self.components.push(component);
        Ok(())
    }

    /// What `component` offers here.
    fn items_of(&self, component: &Arc<LoadedComponent>) -> Items {
        fn of<T>(
            map: &BTreeMap<String, Arc<T>>,
            component: &Arc<LoadedComponent>,
            owner: impl Fn(&T) -> &Arc<LoadedComponent>,
        ) -> Vec<Arc<T>> {
            map.values()
                .filter(|item| Arc::ptr_eq(owner(item), component))
                .cloned()
                .collect()
        }
        Items {
            tools: of(&self.tools, component, |t| &t.component),
            resources: of(&self.resources, component, |r| &r.component),
            templates: of(&self.templates, component, |t| &t.component),
            prompts: of(&self.prompts, component, |p| &p.component),
        }
    }

    /// The fixed resources, sorted by URI.
    pub fn resources(&self) -> impl Iterator<Item = &Arc<ResourceEntry>> {
        self.resources.values()
    }

    /// The resource templates, sorted.
    pub fn templates(&self) -> impl Iterator<Item = &Arc<TemplateEntry>> {
        self.templates.values()
    }

    /// The prompts, sorted by name.
    pub fn prompts(&self) -> impl Iterator<Item = &Arc<PromptEntry>> {
        self.prompts.values()
    }

    /// The prompt called `name`.
    pub fn prompt(&self, name: &str) -> Option<&Arc<PromptEntry>> {
        self.prompts.get(name)
    }

    /// The template declared as `text`.
    pub fn template(&self, text: &str) -> Option<&Arc<TemplateEntry>> {
        self.templates.get(text)
    }

    /// Where `uri` leads: a fixed resource, or the one template it matches. A URI that
    /// matches templates of two components is refused rather than guessed.
    pub fn resolve(&self, uri: &str) -> Result<Option<Resolved>, String> {
        if let Some(entry) = self.resources.get(uri) {
            return Ok(Some(Resolved::Fixed(entry.clone())));
        }
        let mut found: Option<Resolved> = None;
        for entry in self.templates.values() {
            let Some(variables) = entry.template.matches(uri) else {
                continue;
            };
            if let Some(Resolved::Template { entry: first, .. }) = &found {
                return Err(format!(
                    "the URI matches two resource templates, `{}` and `{}`; the gateway does not guess",
                    first.template.as_str(),
                    entry.template.as_str()
                ));
            }
            found = Some(Resolved::Template {
                entry: entry.clone(),
                variables,
            });
        }
        Ok(found)
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
            let how = match component.cache {
                CacheOutcome::Hit => "from the compile cache",
                CacheOutcome::Compiled | CacheOutcome::Disabled => "compiled",
            };
            let _ = writeln!(
                out,
                "  {:.1} MB, {}, {how} in {:.2} s",
                mb(component.size),
                component.language.as_deref().unwrap_or("language unknown"),
                component.load_time.as_secs_f64()
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
            let items = self.items_of(component);
            let listed = items
                .resources
                .iter()
                .map(|r| ("resource", r.uri.as_str(), &r.text, &r.warnings));
            let listed = listed
                .chain(
                    items
                        .templates
                        .iter()
                        .map(|t| ("template", t.template.as_str(), &t.text, &t.warnings)),
                )
                .chain(
                    items
                        .prompts
                        .iter()
                        .map(|p| ("prompt", p.text.name.as_str(), &p.text, &p.warnings)),
                );
            for (kind, id, text, warnings) in listed {
                let summary = text.description.as_deref().unwrap_or(&text.name);
                let summary = summary.lines().next().unwrap_or_default();
                let _ = writeln!(out, "  {kind} {id}  {summary}");
                for warning in warnings {
                    let _ = writeln!(out, "    WARNING: description {warning}");
                }
            }
        }
        out
    }
}

/// Components larger than this (an interpreter inside) are announced before they load.
const LARGE_COMPONENT: u64 = 4 * 1024 * 1024;

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Compiles (or loads from the cache, off the async runtime's threads), prepares and
/// describes one component, and checks its descriptors.
async fn load_component(
    runner: &Runner,
    path: &Path,
    bytes: Vec<u8>,
    cache_dir: Option<&Path>,
) -> Result<(Arc<LoadedComponent>, Items)> {
    let digest_hex = hex::encode(Sha256::digest(&bytes));
    let (size, language) = (bytes.len() as u64, producers::language(&bytes));
    if size > LARGE_COMPONENT {
        // Compiling one takes seconds the first time: say so before, not only after.
        tracing::info!(component = %path.display(), size_mb = mb(size), language = language.as_deref().unwrap_or("unknown"), "loading a large component");
    }
    let started = std::time::Instant::now();
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
    let load_time = started.elapsed();
    if size > LARGE_COMPONENT {
        tracing::info!(component = %path.display(), ?cache, seconds = load_time.as_secs_f64(), "loaded a large component");
    }
    let prepared = runner.prepare(&component)?;
    let described = runner
        .describe(&prepared)
        .await
        .map_err(|e| anyhow::anyhow!("describe() failed: {e}"))?;
    if described.tools.is_empty()
        && described.resources.is_empty()
        && described.templates.is_empty()
        && described.prompts.is_empty()
    {
        bail!("describe() returned no tools, resources or prompts");
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
        size,
        language,
        load_time,
        completes: described.completes,
    });
    let mut items = Items::default();
    let tools = &mut items.tools;
    for info in described.tools {
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
    for info in described.resources {
        let entry = items::resource(info, &loaded).map_err(anyhow::Error::msg)?;
        if items.resources.iter().any(|r| r.uri == entry.uri) {
            bail!(
                "`{}` offers the resource `{}` twice",
                loaded.name,
                entry.uri
            );
        }
        items.resources.push(Arc::new(entry));
    }
    for info in described.templates {
        let entry = items::template(info, &loaded).map_err(anyhow::Error::msg)?;
        let text = entry.template.as_str();
        if items.templates.iter().any(|t| t.template.as_str() == text) {
            bail!(
                "`{}` offers the resource template `{text}` twice",
                loaded.name
            );
        }
        items.templates.push(Arc::new(entry));
    }
    for info in described.prompts {
        let entry = items::prompt(info, &loaded).map_err(anyhow::Error::msg)?;
        if items.prompts.iter().any(|p| p.text.name == entry.text.name) {
            bail!(
                "`{}` offers the prompt `{}` twice",
                loaded.name,
                entry.text.name
            );
        }
        items.prompts.push(Arc::new(entry));
    }
    let warned = items.resources.iter().map(|r| (&r.uri, &r.warnings));
    let warned = warned
        .chain(items.templates.iter().map(|t| (&t.text.name, &t.warnings)))
        .chain(items.prompts.iter().map(|p| (&p.text.name, &p.warnings)));
    for (item, warnings) in warned {
        for warning in warnings {
            tracing::warn!(item = %item, component = %path.display(), "description {warning}");
        }
    }
    Ok((loaded, items))
}
