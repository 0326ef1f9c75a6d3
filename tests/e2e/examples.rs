//! The example tools through the runner: what a user of `workspace` and `data` relies on.

use std::fs;

use portcullis::grants::{FsMode, Grants, Limits};
use portcullis::runner::{RunError, ToolFailureKind};
use serde_json::json;

use crate::support::{call, dir_grant, err, load, ok, structured};

fn text(out: &portcullis::runner::CallOutput) -> String {
    out.content
        .iter()
        .map(|c| match &c.item {
            portcullis::runner::ContentItem::Text { text } => text.clone(),
            other => format!("{other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn workspace_tools_work_inside_the_grant() {
    let (runner, catalog) = load(&["workspace"]).await;
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("src")).unwrap();
    fs::write(
        tmp.path().join("src/main.rs"),
        "fn main() {\n    println!(\"hi\");\n}\n",
    )
    .unwrap();
    let rw = dir_grant(tmp.path(), "/workspace", FsMode::Rw);
    let limits = Limits::default();

    let wrote = call(
        &runner,
        &catalog,
        "write_file",
        json!({"path": "notes/todo.md", "content": "- ship it\n", "create_dirs": true}),
        &rw,
        &limits,
    )
    .await;
    assert_eq!(text(ok(&wrote)), "wrote 10 bytes to notes/todo.md");
    assert_eq!(
        fs::read_to_string(tmp.path().join("notes/todo.md")).unwrap(),
        "- ship it\n"
    );

    // create_new refuses to replace; the model reads why.
    let again = call(
        &runner,
        &catalog,
        "write_file",
        json!({"path": "notes/todo.md", "content": "x"}),
        &rw,
        &limits,
    )
    .await;
    assert!(ok(&again).is_error);
    assert!(text(ok(&again)).contains("notes/todo.md"));

    let read = call(
        &runner,
        &catalog,
        "read_file",
        json!({"path": "src/main.rs"}),
        &rw,
        &limits,
    )
    .await;
    assert!(text(ok(&read)).contains("println!"));

    let partial = call(
        &runner,
        &catalog,
        "read_file",
        json!({"path": "src/main.rs", "max_bytes": 5}),
        &rw,
        &limits,
    )
    .await;
    assert!(text(ok(&partial)).starts_with("fn ma"));
    assert!(text(ok(&partial)).contains("continue with offset 5"));

    let listing = call(
        &runner,
        &catalog,
        "list_dir",
        json!({"recursive": true}),
        &rw,
        &limits,
    )
    .await;
    let paths: Vec<&str> = structured(&listing)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["notes", "notes/todo.md", "src", "src/main.rs"]);

    let found = call(
        &runner,
        &catalog,
        "search_text",
        json!({"query": "PRINTLN", "case_sensitive": false}),
        &rw,
        &limits,
    )
    .await;
    assert_eq!(
        structured(&found)["matches"],
        json!([{"path": "src/main.rs", "line": 2, "text": "    println!(\"hi\");"}])
    );

    let escape = call(
        &runner,
        &catalog,
        "read_file",
        json!({"path": "../etc/passwd"}),
        &rw,
        &limits,
    )
    .await;
    assert!(matches!(
        err(&escape),
        RunError::Tool {
            kind: ToolFailureKind::InvalidInput,
            ..
        }
    ));
}

#[tokio::test]
async fn workspace_write_through_a_read_only_grant_fails_cleanly() {
    let (runner, catalog) = load(&["workspace"]).await;
    let tmp = tempfile::tempdir().unwrap();
    let ro = dir_grant(tmp.path(), "/workspace", FsMode::Ro);
    let report = call(
        &runner,
        &catalog,
        "write_file",
        json!({"path": "x.txt", "content": "nope"}),
        &ro,
        &Limits::default(),
    )
    .await;
    assert!(ok(&report).is_error, "write through ro grant did not fail");
    assert!(!tmp.path().join("x.txt").exists());
}

#[tokio::test]
async fn workspace_without_a_grant_sees_no_files() {
    let (runner, catalog) = load(&["workspace"]).await;
    let report = call(
        &runner,
        &catalog,
        "list_dir",
        json!({}),
        &Grants::default(),
        &Limits::default(),
    )
    .await;
    assert!(ok(&report).is_error);
}

#[tokio::test]
async fn data_tools_compute_and_report_fuel() {
    let (runner, catalog) = load(&["data"]).await;
    let none = Grants::default();
    let limits = Limits::default();
    let hashed = call(
        &runner,
        &catalog,
        "hash",
        json!({"text": "abc", "algorithm": "sha512"}),
        &none,
        &limits,
    )
    .await;
    assert!(
        structured(&hashed)["hex"]
            .as_str()
            .unwrap()
            .starts_with("ddaf35a193617aba")
    );
    assert!(hashed.fuel_used > 0, "fuel used is reported");

    let queried = call(
        &runner,
        &catalog,
        "json_query",
        json!({"document": {"items": [{"id": 1}, {"id": 2}]}, "path": "$.items[*].id"}),
        &none,
        &limits,
    )
    .await;
    assert_eq!(structured(&queried)["matches"], json!([1, 2]));

    let bad = call(
        &runner,
        &catalog,
        "json_query",
        json!({"document": {}, "path": "items"}),
        &none,
        &limits,
    )
    .await;
    let error = err(&bad);
    assert!(error.to_string().contains("must start with `$`"), "{error}");
}
