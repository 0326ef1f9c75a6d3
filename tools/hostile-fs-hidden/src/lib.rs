//! Hostile: tries every route to paths the grant hides (`.git/config`, `.env`, `secrets/key`):
//! other spellings, symlinks (its own and planted ones), hard links, renames, creation,
//! truncation, removal, set-times, stat, listing and a recursive walk. Each operation is a raw
//! `wasi:filesystem` call on the `/workspace` preopen with the path exactly as given (so no
//! libc normalisation hides a spelling), plus a few through `std::fs` with absolute paths. It
//! reports what it saw; the test asserts that nothing hidden was seen or changed, and that the
//! same operations on non-hidden control paths work.
use portcullis_sdk::{Error, Output, Tool, export_tools, json};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use wasip2::filesystem::types::{
    Datetime, Descriptor, DescriptorFlags, DescriptorType, ErrorCode, NewTimestamp, OpenFlags,
    PathFlags,
};

const PREOPEN: &str = "/workspace";

#[derive(Deserialize, JsonSchema)]
struct Op {
    /// `read`, `read_nofollow`, `stat`, `lstat`, `hash`, `readlink`, `list`, `walk`, `write`,
    /// `create_new`, `truncate`, `append`, `mkdir`, `rmdir`, `unlink`, `rename`, `link`,
    /// `symlink` (`to` is the link's target text), `set_times`, `set_times_nofollow`,
    /// `std_read`, `std_list`, `std_write` (absolute paths).
    op: String,
    path: String,
    #[serde(default)]
    to: String,
}

#[derive(Deserialize, JsonSchema)]
struct ProbeInput {
    ops: Vec<Op>,
}

#[derive(Serialize)]
struct Attempt {
    op: String,
    path: String,
    to: String,
    ok: bool,
    /// What was read or listed, or the error (a WASI error-code name).
    detail: String,
}

fn code(e: ErrorCode) -> String {
    e.name().to_string()
}

fn read_all(file: &Descriptor) -> Result<String, String> {
    let mut bytes = Vec::new();
    loop {
        let (chunk, eof) = file.read(65536, bytes.len() as u64).map_err(code)?;
        bytes.extend_from_slice(&chunk);
        if eof || chunk.is_empty() || bytes.len() > 1 << 20 {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn list(dir: &Descriptor) -> Result<Vec<(String, DescriptorType)>, String> {
    let stream = dir.read_directory().map_err(code)?;
    let mut names = Vec::new();
    while let Some(entry) = stream.read_directory_entry().map_err(code)? {
        names.push((entry.name, entry.type_));
    }
    names.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(names)
}

/// Every entry below `dir`, and the content of every regular file, like a recursive search.
fn walk(dir: &Descriptor, prefix: &str, out: &mut Vec<String>, depth: usize) -> Result<(), String> {
    if depth > 8 {
        return Ok(());
    }
    for (name, kind) in list(dir)? {
        let path = format!("{prefix}{name}");
        match kind {
            DescriptorType::Directory => {
                out.push(format!("{path}/"));
                let sub = dir
                    .open_at(
                        PathFlags::empty(),
                        &name,
                        OpenFlags::DIRECTORY,
                        DescriptorFlags::READ,
                    )
                    .map_err(code)?;
                walk(&sub, &format!("{path}/"), out, depth + 1)?;
            }
            DescriptorType::RegularFile => {
                let file = dir
                    .open_at(
                        PathFlags::empty(),
                        &name,
                        OpenFlags::empty(),
                        DescriptorFlags::READ,
                    )
                    .map_err(code)?;
                out.push(format!("{path}: {}", read_all(&file)?));
            }
            other => out.push(format!("{path} ({other:?})")),
        }
    }
    Ok(())
}

fn open(
    root: &Descriptor,
    path: &str,
    flags: PathFlags,
    oflags: OpenFlags,
    write: bool,
) -> Result<Descriptor, String> {
    let mode = if write {
        DescriptorFlags::WRITE
    } else {
        DescriptorFlags::READ
    };
    root.open_at(flags, path, oflags, mode).map_err(code)
}

fn write_at(file: &Descriptor, offset: u64) -> Result<String, String> {
    file.write(b"pwned", offset)
        .map_err(code)
        .map(|n| format!("wrote {n}"))
}

fn epoch() -> NewTimestamp {
    NewTimestamp::Timestamp(Datetime {
        seconds: 0,
        nanoseconds: 0,
    })
}

fn run(root: &Descriptor, op: &Op) -> Result<String, String> {
    let (path, to) = (op.path.as_str(), op.to.as_str());
    let follow = PathFlags::SYMLINK_FOLLOW;
    let none = PathFlags::empty();
    let done = |r: Result<(), ErrorCode>| r.map(|()| "done".to_string()).map_err(code);
    match op.op.as_str() {
        "read" => read_all(&open(root, path, follow, OpenFlags::empty(), false)?),
        "read_nofollow" => read_all(&open(root, path, none, OpenFlags::empty(), false)?),
        "stat" | "lstat" => {
            let flags = if op.op == "stat" { follow } else { none };
            let stat = root.stat_at(flags, path).map_err(code)?;
            Ok(format!("{:?} {} bytes", stat.type_, stat.size))
        }
        "hash" => {
            let hash = root.metadata_hash_at(follow, path).map_err(code)?;
            Ok(format!("{:x}{:x}", hash.upper, hash.lower))
        }
        "readlink" => root.readlink_at(path).map_err(code),
        "list" => {
            let dir = open(root, path, follow, OpenFlags::DIRECTORY, false)?;
            Ok(list(&dir)?
                .into_iter()
                .map(|(n, _)| n)
                .collect::<Vec<_>>()
                .join(","))
        }
        "walk" => {
            let dir = open(root, path, follow, OpenFlags::DIRECTORY, false)?;
            let mut out = Vec::new();
            walk(&dir, "", &mut out, 0)?;
            Ok(out.join("\n"))
        }
        "write" => write_at(
            &open(
                root,
                path,
                follow,
                OpenFlags::CREATE | OpenFlags::TRUNCATE,
                true,
            )?,
            0,
        ),
        "create_new" => write_at(
            &open(
                root,
                path,
                none,
                OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
                true,
            )?,
            0,
        ),
        "truncate" => {
            open(root, path, follow, OpenFlags::TRUNCATE, true).map(|_| "truncated".into())
        }
        "append" => {
            let file = open(root, path, follow, OpenFlags::empty(), true)?;
            let size = file.stat().map_err(code)?.size;
            write_at(&file, size)
        }
        "mkdir" => done(root.create_directory_at(path)),
        "rmdir" => done(root.remove_directory_at(path)),
        "unlink" => done(root.unlink_file_at(path)),
        "rename" => done(root.rename_at(path, root, to)),
        "link" => done(root.link_at(none, path, root, to)),
        "symlink" => done(root.symlink_at(to, path)),
        "set_times" => done(root.set_times_at(follow, path, epoch(), epoch())),
        "set_times_nofollow" => done(root.set_times_at(none, path, epoch(), epoch())),
        "std_read" => std::fs::read(path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| e.to_string()),
        "std_list" => std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .map_err(|e| e.to_string()),
        "std_write" => std::fs::write(path, b"pwned")
            .map(|()| "done".into())
            .map_err(|e| e.to_string()),
        other => Err(format!("unknown op {other}")),
    }
}

struct Probe;

impl Tool for Probe {
    type Input = ProbeInput;
    const NAME: &'static str = "probe_hidden";
    const DESCRIPTION: &'static str = "Tries the given filesystem operations in /workspace.";

    fn call(input: ProbeInput) -> Result<Output, Error> {
        let preopens = wasip2::filesystem::preopens::get_directories();
        let Some((root, _)) = preopens.iter().find(|(_, p)| p == PREOPEN) else {
            return Err(Error::failed("no /workspace preopen"));
        };
        let attempts: Vec<Attempt> = input
            .ops
            .iter()
            .map(|op| {
                let result = run(root, op);
                Attempt {
                    op: op.op.clone(),
                    path: op.path.clone(),
                    to: op.to.clone(),
                    ok: result.is_ok(),
                    detail: result.unwrap_or_else(|e| e),
                }
            })
            .collect();
        Output::structured(&json!({ "attempts": attempts }))
    }
}

export_tools!(Probe);
