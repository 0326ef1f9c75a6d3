//! Where policy text comes from: a directory (read recursively) or the embedded defaults.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The default policies, built into the binary (the same files as `policies/`).
const EMBEDDED: &[(&str, &str)] = &[
    (
        "portcullis.rego",
        include_str!("../../../policies/portcullis.rego"),
    ),
    ("ops.rego", include_str!("../../../policies/ops.rego")),
    (
        "portcullis_test.rego",
        include_str!("../../../policies/portcullis_test.rego"),
    ),
    (
        "ops_test.rego",
        include_str!("../../../policies/ops_test.rego"),
    ),
    ("data.json", include_str!("../../../policies/data.json")),
];

/// Directory levels below the policy directory that are read.
const MAX_DEPTH: usize = 16;

/// Where policies come from.
#[derive(Clone, Debug)]
pub enum PolicySource {
    Dir(PathBuf),
    Embedded,
}

impl std::fmt::Display for PolicySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(dir) => write!(f, "{}", dir.display()),
            Self::Embedded => write!(f, "the embedded default policies"),
        }
    }
}

/// Collects every `.rego` and `.json` file below `dir`, recursively, sorted by path. Symbolic
/// links to directories are not followed (a loop must not hang a reload); anything that cannot
/// be read is an error, never silently skipped.
fn collect(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<()> {
    if depth > MAX_DEPTH {
        bail!(
            "{}: policy directories nest deeper than {MAX_DEPTH} levels",
            dir.display()
        );
    }
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading the directory {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading the directory {}", dir.display()))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .with_context(|| format!("reading {}", path.display()))?;
        if kind.is_dir() {
            collect(&path, depth + 1, out)?;
        } else if path
            .extension()
            .is_some_and(|ext| ext == "rego" || ext == "json")
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads `(name, text)` of every `.rego` and `.json` file in `source`; a file's name is its path
/// relative to the policy directory.
pub fn read(source: &PolicySource) -> Result<Vec<(String, String)>> {
    match source {
        PolicySource::Embedded => Ok(EMBEDDED
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()),
        PolicySource::Dir(dir) => {
            let mut files = Vec::new();
            collect(dir, 0, &mut files)
                .with_context(|| format!("reading the policy directory {}", dir.display()))?;
            files.sort();
            files
                .into_iter()
                .map(|path| {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let name = path
                        .strip_prefix(dir)
                        .unwrap_or(&path)
                        .to_string_lossy()
                        .into_owned();
                    Ok((name, text))
                })
                .collect()
        }
    }
}

/// What a change to `source` would change: each policy file's path, size and modification
/// time (`None` for the embedded policies, or when the directory cannot be read: a reload then
/// reports why).
pub fn fingerprint(source: &PolicySource) -> Option<Vec<(PathBuf, u64, std::time::SystemTime)>> {
    let PolicySource::Dir(dir) = source else {
        return None;
    };
    let mut files = Vec::new();
    collect(dir, 0, &mut files).ok()?;
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(&path).ok()?;
            Some((path, meta.len(), meta.modified().ok()?))
        })
        .collect()
}
