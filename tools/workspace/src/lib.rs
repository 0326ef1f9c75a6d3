//! `workspace`: read, list, search and write files inside the directory the gateway granted at
//! `/workspace`. Paths in every input are relative to that directory. The sandbox is what keeps
//! the tool inside it (nothing else is preopened); the checks here only give clearer errors.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use portcullis_sdk::{Annotations, Error, Output, Tool, export_tools, schema_for};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where the granted directory appears inside the sandbox.
const ROOT: &str = "/workspace";

/// Resolves a workspace-relative path, refusing absolute paths and `..`.
fn resolve(path: &str) -> Result<PathBuf, Error> {
    let rel = Path::new(path);
    for part in rel.components() {
        match part {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(Error::invalid_input(format!(
                    "path `{path}` uses `..`; paths are relative to the workspace and stay inside it"
                )));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(Error::invalid_input(format!(
                    "path `{path}` is absolute; give a path relative to the workspace"
                )));
            }
        }
    }
    Ok(Path::new(ROOT).join(rel))
}

/// The workspace-relative form of a sandbox path, for output.
fn relative(path: &Path) -> String {
    let rel = path.strip_prefix(ROOT).unwrap_or(path);
    let text = rel.to_string_lossy();
    if text.is_empty() {
        ".".into()
    } else {
        text.into_owned()
    }
}

fn io_failure(path: &str, error: std::io::Error) -> Output {
    Output::failure(format!("{path}: {error}"))
}

fn default_dot() -> String {
    ".".into()
}

// ---------------------------------------------------------------------------------------------

/// Input of `read_file`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReadFileInput {
    /// File path relative to the workspace.
    #[schemars(extend("x-portcullis-path" = true))]
    path: String,
    /// Byte offset to start reading at.
    #[serde(default)]
    offset: u64,
    /// At most this many bytes are returned (default 262144).
    #[schemars(range(min = 1, max = 1048576))]
    max_bytes: Option<u32>,
}

struct ReadFile;

impl Tool for ReadFile {
    type Input = ReadFileInput;
    const NAME: &'static str = "read_file";
    const TITLE: Option<&'static str> = Some("Read a file");
    const DESCRIPTION: &'static str = "Reads a UTF-8 text file from the workspace. Large files \
        can be read in pieces with `offset` and `max_bytes`.";
    const ANNOTATIONS: Annotations = Annotations::READ_ONLY;

    fn call(input: ReadFileInput) -> Result<Output, Error> {
        let path = resolve(&input.path)?;
        let max = u64::from(input.max_bytes.unwrap_or(256 * 1024));
        let mut file = match fs::File::open(&path) {
            Ok(file) => file,
            Err(e) => return Ok(io_failure(&input.path, e)),
        };
        let size = file.metadata()?.len();
        file.seek(SeekFrom::Start(input.offset))?;
        let mut bytes = Vec::new();
        file.take(max).read_to_end(&mut bytes)?;
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(_) => {
                return Ok(Output::failure(format!(
                    "{}: not UTF-8 text ({size} bytes)",
                    input.path
                )));
            }
        };
        let end = input.offset + text.len() as u64;
        let mut out = Output::text(text);
        if end < size {
            out = out.with(portcullis_sdk::Content::Text(format!(
                "[truncated: showed bytes {}..{end} of {size}; continue with offset {end}]",
                input.offset
            )));
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------

/// Input of `list_dir`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListDirInput {
    /// Directory relative to the workspace (default: the workspace itself).
    #[schemars(extend("x-portcullis-path" = true))]
    #[serde(default = "default_dot")]
    path: String,
    /// List subdirectories too (symlinks are listed, never followed).
    #[serde(default)]
    recursive: bool,
    /// At most this many entries (default 1000).
    #[schemars(range(min = 1, max = 100000))]
    max_entries: Option<u32>,
}

/// One directory entry.
#[derive(Serialize, JsonSchema)]
struct Entry {
    /// Path relative to the workspace.
    path: String,
    /// `file`, `dir` or `symlink`.
    kind: &'static str,
    /// Size in bytes (files only).
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
}

/// Output of `list_dir`.
#[derive(Serialize, JsonSchema)]
struct Listing {
    entries: Vec<Entry>,
    /// More entries exist than were returned.
    truncated: bool,
}

struct ListDir;

fn walk(dir: &Path, recursive: bool, max: usize, out: &mut Listing) -> std::io::Result<()> {
    let mut children: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    children.sort_by_key(|e| e.file_name());
    for child in children {
        if out.entries.len() >= max {
            out.truncated = true;
            return Ok(());
        }
        let path = child.path();
        let meta = fs::symlink_metadata(&path)?;
        let (kind, size) = if meta.is_symlink() {
            ("symlink", None)
        } else if meta.is_dir() {
            ("dir", None)
        } else {
            ("file", Some(meta.len()))
        };
        out.entries.push(Entry {
            path: relative(&path),
            kind,
            size,
        });
        if recursive && kind == "dir" {
            walk(&path, true, max, out)?;
        }
    }
    Ok(())
}

impl Tool for ListDir {
    type Input = ListDirInput;
    const NAME: &'static str = "list_dir";
    const TITLE: Option<&'static str> = Some("List a directory");
    const DESCRIPTION: &'static str = "Lists files and directories in the workspace, optionally \
        recursively, with their kind and size.";
    const ANNOTATIONS: Annotations = Annotations::READ_ONLY;

    fn output_schema() -> Option<portcullis_sdk::schemars::Schema> {
        Some(schema_for::<Listing>())
    }

    fn call(input: ListDirInput) -> Result<Output, Error> {
        let dir = resolve(&input.path)?;
        let max = input.max_entries.unwrap_or(1000) as usize;
        let mut listing = Listing {
            entries: Vec::new(),
            truncated: false,
        };
        if let Err(e) = walk(&dir, input.recursive, max, &mut listing) {
            return Ok(io_failure(&input.path, e));
        }
        Output::structured(&listing)
    }
}

// ---------------------------------------------------------------------------------------------

/// Input of `search_text`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SearchTextInput {
    /// The text to look for (a literal string, not a pattern).
    #[schemars(length(min = 1, max = 1024))]
    query: String,
    /// File or directory to search, relative to the workspace (default: everything).
    #[serde(default = "default_dot")]
    #[schemars(extend("x-portcullis-path" = true))]
    path: String,
    /// Match case exactly (default true).
    #[serde(default = "yes")]
    case_sensitive: bool,
    /// At most this many matching lines (default 100).
    #[schemars(range(min = 1, max = 10000))]
    max_results: Option<u32>,
}

fn yes() -> bool {
    true
}

/// One matching line.
#[derive(Serialize, JsonSchema)]
struct Match {
    /// File path relative to the workspace.
    path: String,
    /// 1-based line number.
    line: usize,
    /// The line's text (at most 500 characters).
    text: String,
}

/// Output of `search_text`.
#[derive(Serialize, JsonSchema)]
struct SearchResult {
    matches: Vec<Match>,
    files_searched: usize,
    /// More matches exist than were returned.
    truncated: bool,
}

struct SearchText;

struct Search<'a> {
    needle: &'a str,
    case_sensitive: bool,
    max: usize,
    result: SearchResult,
}

impl Search<'_> {
    fn visit(&mut self, path: &Path) -> std::io::Result<()> {
        if self.result.truncated {
            return Ok(());
        }
        let meta = fs::symlink_metadata(path)?;
        if meta.is_dir() {
            let mut children: Vec<_> = fs::read_dir(path)?.collect::<Result<_, _>>()?;
            children.sort_by_key(|e| e.file_name());
            for child in children {
                self.visit(&child.path())?;
            }
        } else if meta.is_file() {
            self.search_file(path)?;
        }
        Ok(())
    }

    fn search_file(&mut self, path: &Path) -> std::io::Result<()> {
        let Ok(text) = fs::read_to_string(path) else {
            return Ok(()); // binary or unreadable: skipped
        };
        self.result.files_searched += 1;
        for (index, line) in text.lines().enumerate() {
            let hit = if self.case_sensitive {
                line.contains(self.needle)
            } else {
                line.to_lowercase().contains(self.needle)
            };
            if !hit {
                continue;
            }
            if self.result.matches.len() >= self.max {
                self.result.truncated = true;
                return Ok(());
            }
            self.result.matches.push(Match {
                path: relative(path),
                line: index + 1,
                text: line.chars().take(500).collect(),
            });
        }
        Ok(())
    }
}

impl Tool for SearchText {
    type Input = SearchTextInput;
    const NAME: &'static str = "search_text";
    const TITLE: Option<&'static str> = Some("Search text");
    const DESCRIPTION: &'static str = "Finds lines containing a literal string in the text files \
        of the workspace (or of one file or directory in it). Symlinks are not followed.";
    const ANNOTATIONS: Annotations = Annotations::READ_ONLY;

    fn output_schema() -> Option<portcullis_sdk::schemars::Schema> {
        Some(schema_for::<SearchResult>())
    }

    fn call(input: SearchTextInput) -> Result<Output, Error> {
        let root = resolve(&input.path)?;
        let needle = if input.case_sensitive {
            input.query.clone()
        } else {
            input.query.to_lowercase()
        };
        let mut search = Search {
            needle: &needle,
            case_sensitive: input.case_sensitive,
            max: input.max_results.unwrap_or(100) as usize,
            result: SearchResult {
                matches: Vec::new(),
                files_searched: 0,
                truncated: false,
            },
        };
        if let Err(e) = search.visit(&root) {
            return Ok(io_failure(&input.path, e));
        }
        Output::structured(&search.result)
    }
}

// ---------------------------------------------------------------------------------------------

/// How `write_file` treats an existing file.
#[derive(Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum WriteMode {
    /// Fail if the file exists.
    CreateNew,
    /// Replace the file's contents.
    Overwrite,
    /// Add to the end of the file (creating it if needed).
    Append,
}

/// Input of `write_file`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WriteFileInput {
    /// File path relative to the workspace.
    #[schemars(extend("x-portcullis-path" = true))]
    path: String,
    /// The text to write.
    content: String,
    /// What to do if the file exists (default `create_new`).
    #[serde(default = "create_new")]
    mode: WriteMode,
    /// Create missing parent directories.
    #[serde(default)]
    create_dirs: bool,
}

fn create_new() -> WriteMode {
    WriteMode::CreateNew
}

struct WriteFile;

impl Tool for WriteFile {
    type Input = WriteFileInput;
    const NAME: &'static str = "write_file";
    const TITLE: Option<&'static str> = Some("Write a file");
    const DESCRIPTION: &'static str = "Writes a UTF-8 text file in the workspace. By default it \
        refuses to replace an existing file; set `mode` to `overwrite` or `append` to change that.";
    const ANNOTATIONS: Annotations = Annotations::DESTRUCTIVE;

    fn call(input: WriteFileInput) -> Result<Output, Error> {
        let path = resolve(&input.path)?;
        if input.create_dirs
            && let Some(parent) = path.parent()
            && let Err(e) = fs::create_dir_all(parent)
        {
            return Ok(io_failure(&input.path, e));
        }
        let mut options = fs::OpenOptions::new();
        match input.mode {
            WriteMode::CreateNew => options.write(true).create_new(true),
            WriteMode::Overwrite => options.write(true).create(true).truncate(true),
            WriteMode::Append => options.append(true).create(true),
        };
        let mut file = match options.open(&path) {
            Ok(file) => file,
            Err(e) => return Ok(io_failure(&input.path, e)),
        };
        if let Err(e) = file.write_all(input.content.as_bytes()) {
            return Ok(io_failure(&input.path, e));
        }
        Ok(Output::text(format!(
            "wrote {} bytes to {}",
            input.content.len(),
            input.path
        )))
    }
}

export_tools!(ReadFile, ListDir, SearchText, WriteFile);
