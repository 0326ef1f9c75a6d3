//! Shared helpers: finding components, loading a catalog, running a call.

use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis::catalog::Catalog;
use portcullis::grants::{FsGrant, FsMode, Grants, Limits};
use portcullis::runner::{Admission, CallOutput, EngineSettings, RunError, RunReport, Runner};
use serde_json::Value;

/// The tools of the example components, sorted: what a writer sees.
pub const EXAMPLE_TOOLS: [&str; 6] = [
    "hash",
    "json_query",
    "list_dir",
    "read_file",
    "search_text",
    "write_file",
];

/// The example tools a reader sees (all but `write_file`).
pub const READ_TOOLS: [&str; 5] = ["hash", "json_query", "list_dir", "read_file", "search_text"];

/// SHA-256 of "abc", what the `hash` tool must return for it.
pub const SHA256_ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// Where `scripts/build-tools` put a component (`workspace`, `hostile-loop`, …).
pub fn component(name: &str) -> PathBuf {
    let dir = if name.starts_with("hostile-") {
        "hostile"
    } else if name.starts_with("legacy-") {
        "legacy"
    } else if name == "conformance" {
        "conformance"
    } else if name.ends_with("-py") || name.ends_with("-js") {
        "languages"
    } else {
        "tools"
    };
    let path = root()
        .join(".portcullis")
        .join(dir)
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-tools and scripts/build-languages (the test command does)",
        path.display()
    );
    path
}

/// A compile cache shared by the tests (compiling each component once per test run).
pub fn cache_dir() -> PathBuf {
    root().join(".portcullis").join("test-cache")
}

/// Admission for `max_concurrent` instances, all of them open to one principal.
pub fn admission(max_concurrent: u32) -> Admission {
    Admission {
        max_concurrent,
        max_per_principal: max_concurrent,
        max_total_memory: u64::from(max_concurrent) * 256 * 1024 * 1024,
        wait: Duration::from_millis(100),
    }
}

/// A runner with a small pool, and a catalog of the named components.
pub async fn load(names: &[&str]) -> (Runner, Catalog) {
    let runner = Runner::new(
        EngineSettings {
            admission: admission(4),
            max_memory_bytes: 256 * 1024 * 1024,
        },
        portcullis::capabilities::Capabilities::basic(Vec::new()),
    )
    .expect("runner");
    let mut catalog = Catalog::default();
    for name in names {
        catalog
            .add_file(&runner, &component(name), Some(&cache_dir()))
            .await
            .unwrap_or_else(|e| panic!("loading {name}: {e:#}"));
    }
    (runner, catalog)
}

/// Calls `tool` with `input` under `grants` and `limits`.
pub async fn call(
    runner: &Runner,
    catalog: &Catalog,
    tool: &str,
    input: Value,
    grants: &Grants,
    limits: &Limits,
) -> RunReport {
    let entry = catalog
        .get(tool)
        .unwrap_or_else(|| panic!("no tool {tool}"));
    // Every call has a bound of its own: a limit that stops holding fails the test with a
    // message instead of hanging the suite. The timeout covers a call that yields; a guest that
    // never yields holds the test's thread, so a watchdog thread ends the test binary then.
    let bound = limits.timeout + Duration::from_secs(20);
    let (finished, watched) = std::sync::mpsc::channel::<()>();
    let watched_tool = tool.to_string();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            watched.recv_timeout(bound + Duration::from_secs(5))
        {
            eprintln!("{watched_tool} never returned and never yielded: the deadline did not hold");
            std::process::abort();
        }
    });
    let _finished = finished;
    tokio::time::timeout(
        bound,
        runner.call(
            &entry.component.prepared,
            tool,
            &input.to_string(),
            grants,
            limits,
        ),
    )
    .await
    .unwrap_or_else(|_| {
        panic!("{tool} was still running {bound:?} after it started: a limit did not hold")
    })
}

/// The successful output of a report, or a panic that shows the error.
pub fn ok(report: &RunReport) -> &CallOutput {
    match &report.outcome {
        Ok(out) => out,
        Err(e) => panic!("call failed: {e}"),
    }
}

/// The error of a report, or a panic that shows the output.
pub fn err(report: &RunReport) -> &RunError {
    match &report.outcome {
        Ok(out) => panic!("call succeeded but should not have: {out:?}"),
        Err(e) => e,
    }
}

/// The structured output of a successful call.
pub fn structured(report: &RunReport) -> &Value {
    ok(report).structured.as_ref().expect("structured output")
}

/// Limits with a short timeout, for hostile components.
pub fn short_limits() -> Limits {
    Limits {
        timeout: Duration::from_secs(2),
        ..Limits::default()
    }
}

/// A grant of `host` at `guest`.
pub fn dir_grant(host: &Path, guest: &str, mode: FsMode) -> Grants {
    Grants {
        fs: vec![FsGrant {
            host: host.canonicalize().expect("canonical path"),
            guest: guest.into(),
            mode,
            hide: Vec::new(),
        }],
        ..Grants::default()
    }
}

/// Runs `openssl` with `args` (test keys and certificates); panics with its stderr on failure.
pub fn openssl(args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
