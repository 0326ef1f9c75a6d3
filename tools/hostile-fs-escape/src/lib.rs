//! Hostile: tries to read files outside its preopened directory — `..`, absolute paths,
//! symlinks that point out (absolute, relative, chained, looping), sibling directories with a
//! shared prefix. Reports what it could read; the test asserts it read nothing outside.
use portcullis_sdk::{Error, Output, Tool, export_tools};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fs;

#[derive(Deserialize, JsonSchema)]
struct EscapeInput {
    /// Paths to try, as seen inside the sandbox.
    paths: Vec<String>,
}

#[derive(Serialize)]
struct Attempt {
    path: String,
    /// `read` (with the content) or `denied` (with the error).
    outcome: &'static str,
    detail: String,
}

struct Escape;

fn attempt(path: &str) -> Attempt {
    let (outcome, detail) = match fs::read(path) {
        Ok(bytes) => ("read", String::from_utf8_lossy(&bytes).into_owned()),
        Err(read_err) => match fs::read_dir(path) {
            Ok(entries) => (
                "read",
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            Err(_) => ("denied", read_err.to_string()),
        },
    };
    Attempt {
        path: path.to_string(),
        outcome,
        detail,
    }
}

impl Tool for Escape {
    type Input = EscapeInput;
    const NAME: &'static str = "escape";
    const DESCRIPTION: &'static str = "Tries to read the given paths.";

    fn call(input: EscapeInput) -> Result<Output, Error> {
        let results: Vec<Attempt> = input.paths.iter().map(|p| attempt(p)).collect();
        Output::structured(&portcullis_sdk::json!({ "attempts": results }))
    }
}

export_tools!(Escape);
