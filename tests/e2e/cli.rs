//! The command line as an operator uses it.

use std::process::Command;

use serde_json::Value;

use crate::gateway::{Options, binary, setup};
use crate::support::root;

fn run(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(binary())
        .args(args)
        .env("RUST_LOG", "portcullis=error")
        .output()
        .expect("run portcullis");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn policy_test_runs_the_rego_tests() {
    let dir = root().join("policies");
    let (ok, out, err) = run(&["policy", "test", "--dir", dir.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(
        out.lines().last().unwrap().ends_with(" passed, 0 failed"),
        "{out}"
    );
    assert!(
        out.contains("PASS portcullis_test.rego: test_reader_may_not_write"),
        "{out}"
    );
}

#[test]
fn policy_eval_prints_the_decision_with_reasons() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input.json");
    std::fs::write(
        &input,
        r#"{"version": 1, "action": "call", "environment": "prod", "context": {},
            "principal": {"id": "bob", "roles": ["writer"], "claims": {}, "authenticated_by": "token"},
            "tool": {"name": "write_file", "component": "workspace", "digest": "sha256:00",
                     "annotations": {"read_only": false, "destructive": true, "idempotent": false, "open_world": false}},
            "args": {"path": "a.md", "content": "x"}}"#,
    )
    .unwrap();
    let (ok, out, _) = run(&["policy", "eval", "--input", input.to_str().unwrap()]);
    assert!(!ok, "a denial exits non-zero");
    let decision: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(decision["allow"], false);
    assert_eq!(
        decision["reasons"][0],
        "tool \"write_file\" changes data; in prod only the admin role may call it"
    );
}

#[test]
fn call_prints_the_decision_and_the_result() {
    let s = setup(Options::default());
    std::fs::write(s.workspace.join("n.txt"), "note").unwrap();
    let config = s.config.to_str().unwrap();
    let (ok, out, err) = run(&[
        "--config",
        config,
        "call",
        "read_file",
        r#"{"path":"n.txt"}"#,
        "--as",
        "alice",
    ]);
    assert!(ok, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"]["allow"], true);
    assert_eq!(v["decision"]["grants"]["fs"][0]["mode"], "ro");
    assert!(
        v["decision"]["plan_hash"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(v["outcome"]["result"]["content"][0]["text"], "note");

    let (ok, out, _) = run(&[
        "--config",
        config,
        "call",
        "write_file",
        r#"{"path":"x","content":"y"}"#,
        "--as",
        "alice",
    ]);
    assert!(!ok);
    assert!(out.contains("unknown tool `write_file`"), "{out}");

    let (ok, _, err) = run(&["--config", config, "call", "hash", "{}", "--as", "mallory"]);
    assert!(!ok);
    assert!(err.contains("--as `mallory`"), "{err}");
}

#[test]
fn tools_lists_components_with_digests() {
    let s = setup(Options::default());
    let (ok, out, err) = run(&["--config", s.config.to_str().unwrap(), "tools"]);
    assert!(ok, "{err}");
    assert!(out.contains("workspace  sha256:"), "{out}");
    assert!(
        out.contains("write_file") && out.contains("[destructive]"),
        "{out}"
    );
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("portcullis.toml");
    std::fs::write(&config, "[limits]\ntimeout = \"soon\"\n").unwrap();
    let (ok, _, err) = run(&["--config", config.to_str().unwrap(), "tools"]);
    assert!(!ok);
    assert!(
        err.contains("portcullis.toml") && err.contains("limits.timeout"),
        "{err}"
    );
}

#[test]
fn token_prints_a_hash_the_configuration_accepts() {
    let (ok, out, _) = run(&["token", "--principal", "ci"]);
    assert!(ok);
    let token = out.lines().next().unwrap().strip_prefix("token: ").unwrap();
    assert!(out.contains(&portcullis::mcp::http::token_hash(token)));
    assert!(out.contains("[principals.ci]"));
}

#[test]
fn run_bypasses_policy_but_not_the_input_schema() {
    let s = setup(Options::default());
    let config = s.config.to_str().unwrap();
    let (ok, _, err) = run(&["--config", config, "run", "hash", r#"{"text": 5}"#]);
    assert!(!ok);
    assert!(
        err.contains("does not match the tool's input schema") && err.contains("/text"),
        "{err}"
    );
    let (ok, out, _) = run(&["--config", config, "run", "hash", r#"{"text": "abc"}"#]);
    assert!(ok, "{out}");
    assert!(out.contains(crate::support::SHA256_ABC), "{out}");
}
