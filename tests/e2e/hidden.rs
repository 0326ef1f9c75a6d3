//! Hidden paths (`hide` on fs grants) and openable file types, enforced by the runner's
//! filesystem layer (`runner::fsguard`), attacked for real: `hostile-fs-hidden` tries every
//! route to `.git/config`, `.env` and `secrets/key`, the example `workspace` tool searches and
//! lists the whole grant, and a FIFO sits in the workspace. Each attack has a control: the same
//! operation on a path that is not hidden works, so the attacks are real.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use portcullis::grants::{FsMode, Grants, Limits};
use portcullis::runner::RunError;
use serde_json::{Value, json};

use crate::support::{call, dir_grant, err, load, ok, short_limits, structured};

const CANARY_GIT: &str = "CANARY-git-config-4c1d0e";
const CANARY_HEAD: &str = "CANARY-git-head-77ab2f";
const CANARY_ENV: &str = "CANARY-dotenv-b81a3c";
const CANARY_KEY: &str = "CANARY-secret-key-19e0d4";
const CANARIES: [&str; 4] = [CANARY_GIT, CANARY_HEAD, CANARY_ENV, CANARY_KEY];

/// The default policy's hidden entries.
const HIDE: [&str; 3] = [".git", ".env", "secrets"];

/// A grant of `dir` at `/workspace` shaped like the default policy's: `hide` set.
fn hidden_grant(dir: &Path, mode: FsMode) -> Grants {
    let mut grants = dir_grant(dir, "/workspace", mode);
    grants.fs[0].hide = HIDE.iter().map(|s| s.to_string()).collect();
    grants
}

/// A workspace with the hidden files, control twins that are not hidden, and symlinks planted
/// by "someone else" pointing into the hidden paths in every way.
fn workspace() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().canonicalize().unwrap();
    let w = |p: &str, content: &str| {
        let path = ws.join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    };
    let d = |p: &str| fs::create_dir_all(ws.join(p)).unwrap();
    let l = |target: &str, link: &str| symlink(target, ws.join(link)).unwrap();
    w(".git/config", CANARY_GIT);
    w(".git/HEAD", CANARY_HEAD);
    d(".git/refs");
    w(".env", CANARY_ENV);
    w("secrets/key", CANARY_KEY);
    w("ctl/config", "control-config");
    w("ctl/HEAD", "control-head");
    d("ctl/refs");
    w("ctl.env", "control-env");
    w("ctl-secrets/key", "control-key");
    w("victim.txt", "victim");
    w("victim2.txt", "victim2");
    d("sub");
    l("..", "sub/up");
    l(ws.join(".git/config").to_str().unwrap(), "pre-abs");
    l(".git/config", "pre-rel");
    l("sub/chain2", "pre-chain1");
    l("../.git/config", "sub/chain2");
    l(".git", "pre-dir");
    l("./.env", "pre-env");
    l("secrets", "pre-secrets");
    l("../secrets/key", "sub/pre-key");
    l("ctl/config", "ctl-rel");
    l("sub/ctl-chain2", "ctl-chain1");
    l("../ctl/config", "sub/ctl-chain2");
    l("ctl", "ctl-dir");
    tmp
}

/// Content and modification time of everything under `dir` (symlinks not followed).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (String, Option<SystemTime>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let content = if meta.is_dir() {
                stack.push(path.clone());
                "<dir>".to_string()
            } else if meta.is_symlink() {
                format!("-> {}", fs::read_link(&path).unwrap().display())
            } else {
                fs::read_to_string(&path).unwrap()
            };
            out.insert(path, (content, meta.modified().ok()));
        }
    }
    out
}

/// The hidden files and directories, with everything in them.
fn hidden_state(ws: &Path) -> BTreeMap<PathBuf, (String, Option<SystemTime>)> {
    let mut state = snapshot(&ws.join(".git"));
    state.extend(snapshot(&ws.join("secrets")));
    let env = ws.join(".env");
    let meta = fs::metadata(&env).unwrap();
    state.insert(
        env.clone(),
        (fs::read_to_string(&env).unwrap(), meta.modified().ok()),
    );
    state
}

/// What an attempt must give.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Fails exactly as if the path did not exist.
    NoEntry,
    /// Fails (the error may differ, e.g. an absolute symlink is an escape).
    Fails,
    /// Works (setting up a later attack, or a control).
    Works,
}

fn op(expect: Expect, op: &str, path: &str, to: &str) -> (Expect, Value) {
    (expect, json!({"op": op, "path": path, "to": to}))
}

/// Runs the ops in one call of `probe_hidden`; returns each attempt with its expectation.
async fn probe(
    runner: &portcullis::runner::Runner,
    catalog: &portcullis::catalog::Catalog,
    grants: &Grants,
    ops: &[(Expect, Value)],
) -> (Vec<(Expect, Value)>, String) {
    let input: Vec<&Value> = ops.iter().map(|(_, v)| v).collect();
    let report = call(
        runner,
        catalog,
        "probe_hidden",
        json!({ "ops": input }),
        grants,
        &short_limits(),
    )
    .await;
    let out = structured(&report).clone();
    let attempts = out["attempts"].as_array().unwrap().clone();
    assert_eq!(attempts.len(), ops.len());
    let all = out.to_string();
    (ops.iter().map(|(e, _)| *e).zip(attempts).collect(), all)
}

fn check(results: &[(Expect, Value)]) {
    for (expect, attempt) in results {
        let (okay, detail) = (attempt["ok"] == true, attempt["detail"].as_str().unwrap());
        match expect {
            Expect::NoEntry => assert!(
                !okay && detail == "no-entry",
                "expected no-entry: {attempt}"
            ),
            Expect::Fails => assert!(!okay, "expected a failure: {attempt}"),
            Expect::Works => assert!(okay, "expected success: {attempt}"),
        }
    }
}

/// Every spelling of the three hidden targets, read, stat'ed and hashed.
fn spellings() -> Vec<&'static str> {
    vec![
        ".git/config",
        "./.git/config",
        "././.git/config",
        ".//.git/config",
        ".git//config",
        ".git/./config",
        "sub/../.git/config",
        "sub/up/.git/config",
        "sub/up/./.git//config",
        "pre-dir/config",
        "pre-dir/../.git/config",
        "pre-rel",
        "pre-chain1",
        "sub/chain2",
        ".git/HEAD",
        ".env",
        "./.env",
        ".//.env",
        "sub/../.env",
        "sub/up/.env",
        "pre-env",
        "secrets/key",
        "./secrets/key",
        "secrets//key",
        "secrets/./key",
        "secrets/../secrets/key",
        "sub/pre-key",
        "pre-secrets/key",
        "sub/up/secrets/key",
    ]
}

#[tokio::test]
async fn hidden_paths_are_unreachable_by_every_route() {
    use Expect::*;
    let tmp = workspace();
    let ws = tmp.path().canonicalize().unwrap();
    let before = hidden_state(&ws);
    let (runner, catalog) = load(&["hostile-fs-hidden"]).await;
    let grants = hidden_grant(&ws, FsMode::Rw);

    let mut ops = Vec::new();
    for path in spellings() {
        for kind in ["read", "stat", "hash"] {
            ops.push(op(NoEntry, kind, path, ""));
        }
    }
    for path in [".git/config", "./.env", ".git", "secrets", "secrets/key"] {
        for kind in ["lstat", "read_nofollow", "readlink"] {
            ops.push(op(NoEntry, kind, path, ""));
        }
    }
    // An absolute symlink is an escape for cap-std already; whatever the error, no content.
    ops.push(op(Fails, "read", "pre-abs", ""));
    ops.push(op(NoEntry, "read", ".git/config/", ""));
    for dir in [
        ".git",
        "./.git",
        ".git/",
        ".//.git/.",
        "pre-dir",
        "pre-dir/",
        "sub/up/.git",
        "secrets",
        "pre-secrets",
        ".git/refs",
    ] {
        ops.push(op(NoEntry, "list", dir, ""));
        ops.push(op(NoEntry, "walk", dir, ""));
    }
    // Symlinks the guest plants itself: creating them works, using them does not.
    ops.push(op(Works, "symlink", "g-rel", ".git/config"));
    ops.push(op(Works, "symlink", "g-dir", "./.git"));
    ops.push(op(Works, "symlink", "g-up", "sub/.."));
    ops.push(op(Works, "symlink", "sub/g-key", "../secrets/key"));
    ops.push(op(Works, "symlink", "g-env", "sub/up/.env"));
    for path in [
        "g-rel",
        "g-dir/config",
        "g-up/.env",
        "sub/g-key",
        "g-env",
        "g-up/secrets/key",
    ] {
        ops.push(op(NoEntry, "read", path, ""));
        ops.push(op(NoEntry, "write", path, ""));
    }
    ops.push(op(NoEntry, "list", "g-dir", ""));
    // Changes of every kind, in and into the hidden paths.
    for (kind, path, to) in [
        ("write", ".git/config", ""),
        ("write", "./.git//config", ""),
        ("write", "pre-rel", ""),
        ("write", "pre-dir/config", ""),
        ("truncate", ".env", ""),
        ("truncate", "pre-env", ""),
        ("append", "secrets/key", ""),
        ("append", "sub/pre-key", ""),
        ("create_new", ".git/new", ""),
        ("create_new", "secrets/new", ""),
        ("create_new", "pre-dir/new", ""),
        ("mkdir", ".git/newdir", ""),
        ("mkdir", "secrets/d", ""),
        ("mkdir", ".git", ""),
        ("rmdir", ".git/refs", ""),
        ("rmdir", "pre-dir/refs", ""),
        ("unlink", ".git/HEAD", ""),
        ("unlink", ".env", ""),
        ("unlink", "./secrets/key", ""),
        ("rename", ".env", "stolen-env"),
        ("rename", ".git/config", "stolen-config"),
        ("rename", ".git", "stolen-git"),
        ("rename", "victim.txt", ".git/victim"),
        ("rename", "victim.txt", "secrets/victim"),
        ("rename", "victim.txt", ".env"),
        ("rename", "victim.txt", "pre-dir/config"),
        ("link", ".git/config", "hl"),
        ("link", "secrets/key", "hl-key"),
        ("link", "victim.txt", ".git/victim"),
        ("symlink", ".git/evil", "x"),
        ("symlink", "secrets/evil", "x"),
        ("symlink", ".env", "x"),
        ("set_times", ".git/config", ""),
        ("set_times", "pre-rel", ""),
        ("set_times", "g-env", ""),
        ("set_times_nofollow", ".env", ""),
        ("set_times_nofollow", "secrets", ""),
    ] {
        ops.push(op(NoEntry, kind, path, to));
    }
    // Through libc with absolute paths.
    for path in [
        "/workspace/.git/config",
        "/workspace/./.env",
        "/workspace//secrets/key",
        "/workspace/pre-rel",
    ] {
        ops.push(op(Fails, "std_read", path, ""));
        ops.push(op(Fails, "std_write", path, ""));
    }
    ops.push(op(Fails, "std_list", "/workspace/.git", ""));
    // Listings and a recursive walk of everything.
    ops.push(op(Works, "list", ".", ""));
    ops.push(op(Works, "list", "sub/up", ""));
    ops.push(op(Works, "walk", ".", ""));
    ops.push(op(Works, "std_list", "/workspace", ""));

    let (results, all) = probe(&runner, &catalog, &grants, &ops).await;
    for canary in CANARIES {
        assert!(
            !all.contains(canary),
            "a hidden file leaked {canary}: {all}"
        );
    }
    check(&results);
    for (_, attempt) in &results {
        if attempt["ok"] == true && ["list", "std_list"].contains(&attempt["op"].as_str().unwrap())
        {
            let names: Vec<&str> = attempt["detail"].as_str().unwrap().split(',').collect();
            for hidden in HIDE {
                assert!(!names.contains(&hidden), "{hidden} listed: {attempt}");
            }
            assert!(names.contains(&"ctl"), "the listing is empty: {attempt}");
        }
        if attempt["op"] == "walk" && attempt["ok"] == true {
            let walked = attempt["detail"].as_str().unwrap();
            for line in walked.lines() {
                for hidden in HIDE {
                    assert!(
                        !line.starts_with(&format!("{hidden}/"))
                            && !line.starts_with(&format!("{hidden}:")),
                        "walk reached {line}"
                    );
                }
            }
            // The walk is real: it reads what is not hidden.
            assert!(walked.contains("ctl/config: control-config"), "{walked}");
        }
    }
    assert_eq!(hidden_state(&ws), before, "a hidden path changed");
    for name in ["stolen-env", "stolen-config", "stolen-git", "hl", "hl-key"] {
        assert!(
            fs::symlink_metadata(ws.join(name)).is_err(),
            "{name} was created"
        );
    }
    assert_eq!(fs::read_to_string(ws.join("victim.txt")).unwrap(), "victim");
}

#[tokio::test]
async fn the_same_routes_to_paths_that_are_not_hidden_work() {
    use Expect::*;
    let tmp = workspace();
    let ws = tmp.path().canonicalize().unwrap();
    let (runner, catalog) = load(&["hostile-fs-hidden"]).await;
    let grants = hidden_grant(&ws, FsMode::Rw);
    let mut ops = Vec::new();
    for path in [
        "ctl/config",
        "./ctl/config",
        "././ctl//config",
        "sub/../ctl/config",
        "sub/up/ctl/config",
        "ctl-dir/config",
        "ctl-rel",
        "ctl-chain1",
        "ctl.env",
        "./ctl-secrets/key",
    ] {
        for kind in ["read", "stat", "hash"] {
            ops.push(op(Works, kind, path, ""));
        }
    }
    for (kind, path, to) in [
        ("list", "ctl", ""),
        ("list", "ctl-dir/", ""),
        ("symlink", "c-rel", "ctl/config"),
        ("read", "c-rel", ""),
        ("std_read", "/workspace/ctl/config", ""),
        ("set_times", "ctl/config", ""),
        ("set_times_nofollow", "ctl-rel", ""),
        ("write", "ctl/config", ""),
        ("truncate", "ctl.env", ""),
        ("append", "ctl-rel", ""),
        ("create_new", "ctl/new", ""),
        ("mkdir", "ctl/newdir", ""),
        ("rmdir", "ctl/refs", ""),
        ("unlink", "ctl/HEAD", ""),
        ("link", "ctl/config", "chl"),
        ("rename", "ctl-secrets/key", "moved-key"),
        ("rename", "victim.txt", "ctl/victim"),
        ("rename", "victim2.txt", "ctl.env"),
        ("std_write", "/workspace/ctl/std", ""),
        // Names that merely start like hidden ones are not hidden.
        ("create_new", ".gitignore", ""),
        ("mkdir", ".git-other", ""),
        ("create_new", ".envrc", ""),
        ("mkdir", "secrets2", ""),
        ("mkdir", "sub/.git", ""),
    ] {
        ops.push(op(Works, kind, path, to));
    }
    let (results, _) = probe(&runner, &catalog, &grants, &ops).await;
    check(&results);
    assert_eq!(
        fs::read_to_string(ws.join("ctl/config")).unwrap(),
        "pwnedpwned"
    );
    assert!(ws.join("chl").exists() && ws.join("moved-key").exists());
    assert!(ws.join("ctl/victim").exists() && !ws.join("ctl/HEAD").exists());
}

#[tokio::test]
async fn nested_hidden_paths_and_their_ancestors() {
    use Expect::*;
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().canonicalize().unwrap();
    fs::create_dir_all(ws.join("config/private")).unwrap();
    fs::write(ws.join("config/private/token"), CANARY_KEY).unwrap();
    fs::write(ws.join("config/public"), "public").unwrap();
    fs::create_dir_all(ws.join("plant/private")).unwrap();
    fs::write(ws.join("plant/private/token"), "planted").unwrap();
    let mut grants = dir_grant(&ws, "/workspace", FsMode::Rw);
    // Written unnormalised on purpose: the store normalises it.
    grants.fs[0].hide = vec!["./config//private/".into(), "absent/dir".into()];
    let (runner, catalog) = load(&["hostile-fs-hidden"]).await;
    let ops = [
        op(NoEntry, "read", "config/private/token", ""),
        op(NoEntry, "list", "config/private", ""),
        op(Works, "list", "config", ""),
        op(Works, "read", "config/public", ""),
        // Moving an ancestor would move the hidden path; planting one under an absent ancestor
        // would create it.
        op(Fails, "rename", "config", "moved"),
        op(Fails, "rename", "plant", "absent"),
        op(Fails, "symlink", "absent", "plant"),
        op(NoEntry, "mkdir", "absent/dir", ""),
        op(Works, "mkdir", "absent", ""),
        op(NoEntry, "mkdir", "absent/dir", ""),
        op(NoEntry, "rename", "plant/private", "absent/dir"),
        op(Works, "rename", "plant/private", "absent/other"),
    ];
    let (results, all) = probe(&runner, &catalog, &grants, &ops).await;
    assert!(!all.contains(CANARY_KEY), "{all}");
    check(&results);
    assert_eq!(results[2].1["detail"], "public");
    assert!(ws.join("config/private/token").exists());
    assert!(!ws.join("absent/dir").exists());
}

#[tokio::test]
async fn a_hidden_entry_that_is_a_symlink_hides_its_target_too() {
    use Expect::*;
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().canonicalize().unwrap();
    fs::create_dir(ws.join("real-git")).unwrap();
    fs::write(ws.join("real-git/config"), CANARY_GIT).unwrap();
    symlink("real-git", ws.join(".git")).unwrap();
    fs::create_dir_all(ws.join("cfg/private")).unwrap();
    fs::write(ws.join("cfg/private/token"), CANARY_KEY).unwrap();
    symlink("cfg", ws.join("config")).unwrap();
    let mut grants = dir_grant(&ws, "/workspace", FsMode::Rw);
    grants.fs[0].hide = vec![".git".into(), "config/private".into()];
    let (runner, catalog) = load(&["hostile-fs-hidden"]).await;
    let ops = [
        op(NoEntry, "read", ".git/config", ""),
        op(NoEntry, "read", "real-git/config", ""),
        op(NoEntry, "list", "real-git/", ""),
        op(NoEntry, "rename", "real-git", "moved"),
        op(NoEntry, "read", "config/private/token", ""),
        op(NoEntry, "read", "cfg/private/token", ""),
        op(Works, "list", "cfg", ""),
        op(Works, "walk", ".", ""),
    ];
    let (results, all) = probe(&runner, &catalog, &grants, &ops).await;
    for canary in CANARIES {
        assert!(!all.contains(canary), "{all}");
    }
    check(&results);
    assert_eq!(results[6].1["detail"], "");
}

#[tokio::test]
async fn bad_hide_entries_are_grant_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (runner, catalog) = load(&["hostile-fs-hidden"]).await;
    for (bad, says) in [("../x", "`..`"), ("/etc", "absolute"), ("./", "empty")] {
        let mut grants = dir_grant(tmp.path(), "/workspace", FsMode::Ro);
        grants.fs[0].hide = vec![bad.into()];
        let report = call(
            &runner,
            &catalog,
            "probe_hidden",
            json!({"ops": []}),
            &grants,
            &short_limits(),
        )
        .await;
        let error = err(&report);
        assert!(matches!(error, RunError::Grant(_)), "{error}");
        assert!(error.to_string().contains(says), "{error}");
    }
}

fn text(report: &portcullis::runner::RunReport) -> String {
    ok(report)
        .content
        .iter()
        .map(|c| format!("{c:?}"))
        .collect::<Vec<_>>()
        .join("\n")
        + &ok(report)
            .structured
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default()
}

#[tokio::test]
async fn workspace_search_and_listing_leave_hidden_paths_out() {
    let tmp = workspace();
    let ws = tmp.path().canonicalize().unwrap();
    let (runner, catalog) = load(&["workspace"]).await;
    let grants = hidden_grant(&ws, FsMode::Ro);
    let limits = Limits::default();

    for (query, case_sensitive) in [("CANARY", true), ("canary", false)] {
        let search = call(
            &runner,
            &catalog,
            "search_text",
            json!({"query": query, "path": ".", "case_sensitive": case_sensitive}),
            &grants,
            &limits,
        )
        .await;
        let out = structured(&search);
        assert_eq!(out["matches"], json!([]), "{out}");
        assert!(out["files_searched"].as_u64().unwrap() >= 5, "{out}");
    }
    // The search is real: it finds what is not hidden.
    let control = call(
        &runner,
        &catalog,
        "search_text",
        json!({"query": "control-config", "path": "."}),
        &grants,
        &limits,
    )
    .await;
    assert_eq!(structured(&control)["matches"][0]["path"], "ctl/config");

    let listing = call(
        &runner,
        &catalog,
        "list_dir",
        json!({"path": ".", "recursive": true}),
        &grants,
        &limits,
    )
    .await;
    let entries = structured(&listing)["entries"].as_array().unwrap().clone();
    assert!(entries.iter().any(|e| e["path"] == "ctl/config"));
    for entry in &entries {
        let path = entry["path"].as_str().unwrap();
        for hidden in HIDE {
            assert!(
                path != hidden && !path.starts_with(&format!("{hidden}/")),
                "listed {path}"
            );
        }
    }
    for path in [
        "./.git/config",
        ".git//config",
        "pre-rel",
        "sub/pre-key",
        "pre-env",
    ] {
        let read = call(
            &runner,
            &catalog,
            "read_file",
            json!({ "path": path }),
            &grants,
            &limits,
        )
        .await;
        let shown = text(&read);
        assert!(ok(&read).is_error, "{path}: {shown}");
        for canary in CANARIES {
            assert!(!shown.contains(canary), "{path} leaked: {shown}");
        }
    }
}

/// `read_file` on a FIFO (directly, through a symlink, nested) returns a clean error at once,
/// with or without hidden paths, and the next call works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_is_refused_at_open_without_blocking() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().canonicalize().unwrap();
    fs::create_dir(ws.join("sub")).unwrap();
    for fifo in ["pipe", "sub/pipe"] {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            ws.join(fifo),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
    }
    symlink("pipe", ws.join("pipe-link")).unwrap();
    symlink("sub", ws.join("sub-link")).unwrap();
    fs::write(ws.join("ok.txt"), "fine").unwrap();
    let (runner, catalog) = load(&["workspace"]).await;
    let shared = std::sync::Arc::new((runner, catalog));
    let limits = Limits {
        timeout: Duration::from_secs(3),
        ..Limits::default()
    };
    for grants in [
        dir_grant(&ws, "/workspace", FsMode::Ro),
        hidden_grant(&ws, FsMode::Rw),
    ] {
        for path in ["pipe", "./pipe", "pipe-link", "sub/pipe", "sub-link/pipe"] {
            let started = Instant::now();
            // On its own task: if it blocks its thread, this test's timer still runs.
            let (task_shared, task_grants) = (shared.clone(), grants.clone());
            let run = tokio::spawn(async move {
                let (runner, catalog) = &*task_shared;
                call(
                    runner,
                    catalog,
                    "read_file",
                    json!({ "path": path }),
                    &task_grants,
                    &limits,
                )
                .await
            });
            let Ok(report) = tokio::time::timeout(Duration::from_secs(8), run).await else {
                // Unblock the stuck reader so the test process can end, then fail.
                for fifo in ["pipe", "sub/pipe"] {
                    let flags = rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::NONBLOCK;
                    let _ = rustix::fs::open(ws.join(fifo), flags, rustix::fs::Mode::empty());
                }
                panic!("read_file on {path} blocked");
            };
            let report = report.unwrap();
            let elapsed = started.elapsed();
            assert!(elapsed < Duration::from_secs(1), "{path} took {elapsed:?}");
            let out = ok(&report);
            assert!(out.is_error, "{path}: {out:?}");
            assert!(
                text(&report).contains("ermission denied"),
                "{path}: {}",
                text(&report)
            );
        }
        let (runner, catalog) = &*shared;
        let fine = call(
            runner,
            catalog,
            "read_file",
            json!({"path": "ok.txt"}),
            &grants,
            &limits,
        )
        .await;
        assert!(text(&fine).contains("fine"), "{}", text(&fine));
    }
}
