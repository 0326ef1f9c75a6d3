//! Hostile: tries every kind of change through a read-only grant — create, write, truncate,
//! append, rename, delete, mkdir, rmdir, symlink, hard link, set times. Reports which succeeded;
//! the test asserts none did and that the directory on the host is unchanged.
use portcullis_sdk::{Error, Output, Tool, export_tools, json};
use schemars::JsonSchema;
use serde::Deserialize;
use std::fs::{self, OpenOptions};
use std::io::Write;

#[derive(Deserialize, JsonSchema)]
struct WriteInput {
    /// The granted directory inside the sandbox.
    dir: String,
    /// An existing file in it.
    file: String,
    /// An existing subdirectory in it.
    subdir: String,
}

struct Mutate;

/// Creates a symlink with the raw WASI call on the preopen whose guest path is `dir`
/// (std has no stable symlink on WASI).
fn symlink(dir: &str, target: &str, link: &str) -> std::io::Result<()> {
    let preopens = wasip2::filesystem::preopens::get_directories();
    let (descriptor, _) = preopens
        .iter()
        .find(|(_, path)| path == dir)
        .ok_or_else(|| std::io::Error::other("no such preopen"))?;
    descriptor
        .symlink_at(target, link)
        .map_err(|code| std::io::Error::other(format!("{code:?}")))
}

impl Tool for Mutate {
    type Input = WriteInput;
    const NAME: &'static str = "mutate";
    const DESCRIPTION: &'static str = "Tries to change a directory.";

    fn call(input: WriteInput) -> Result<Output, Error> {
        let dir = &input.dir;
        let file = format!("{dir}/{}", input.file);
        let subdir = format!("{dir}/{}", input.subdir);
        let attempts: Vec<(&str, std::io::Result<()>)> = vec![
            ("create", fs::write(format!("{dir}/new.txt"), b"pwned")),
            ("overwrite", fs::write(&file, b"pwned")),
            (
                "truncate",
                OpenOptions::new()
                    .write(true)
                    .open(&file)
                    .and_then(|f| f.set_len(0)),
            ),
            (
                "append",
                OpenOptions::new()
                    .append(true)
                    .open(&file)
                    .and_then(|mut f| f.write_all(b"pwned")),
            ),
            (
                "set_len_via_read_handle",
                fs::File::open(&file).and_then(|f| f.set_len(1)),
            ),
            ("rename", fs::rename(&file, format!("{dir}/renamed.txt"))),
            ("remove_file", fs::remove_file(&file)),
            ("create_dir", fs::create_dir(format!("{dir}/newdir"))),
            ("remove_dir", fs::remove_dir(&subdir)),
            ("symlink", symlink(dir, &input.file, "link")),
            ("hard_link", fs::hard_link(&file, format!("{dir}/hardlink"))),
            (
                "set_modified",
                fs::File::open(&file).and_then(|f| f.set_modified(std::time::UNIX_EPOCH)),
            ),
        ];
        let report: Vec<_> = attempts
            .into_iter()
            .map(|(name, result)| {
                json!({ "op": name, "succeeded": result.is_ok(),
                        "error": result.err().map(|e| e.to_string()) })
            })
            .collect();
        Output::structured(&json!({ "attempts": report }))
    }
}

export_tools!(Mutate);
