//! One test per hostile component (`tools/hostile-*`): each attack is attempted for real, the
//! safe outcome is asserted (the right error naming the limit, nothing leaked or changed), and a
//! normal call afterwards must still succeed. `every_hostile_component_has_a_test` fails when a
//! new hostile component arrives without a test here.

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use portcullis::catalog::Catalog;
use portcullis::grants::{FsMode, Grants, Limits, MIB};
use portcullis::runner::{LimitExceeded, RunError, RunReport, Runner};
use serde_json::{Value, json};

use crate::support::{SHA256_ABC, call, dir_grant, err, load, ok, short_limits, structured};

/// Loads a hostile component together with the `data` example tool.
async fn hostile(name: &str) -> (Runner, Catalog) {
    load(&[name, "data"]).await
}

/// A normal call on the same runner still works after the attack.
async fn still_serving(runner: &Runner, catalog: &Catalog) {
    let report = call(
        runner,
        catalog,
        "hash",
        json!({"text": "abc"}),
        &Grants::default(),
        &Limits::default(),
    )
    .await;
    assert_eq!(structured(&report)["hex"], SHA256_ABC);
}

/// Calls `tool` with no grants and short limits: how most attacks are attempted.
async fn attempt(runner: &Runner, catalog: &Catalog, tool: &str, input: Value) -> RunReport {
    call(
        runner,
        catalog,
        tool,
        input,
        &Grants::default(),
        &short_limits(),
    )
    .await
}

fn limit(error: &RunError) -> &LimitExceeded {
    match error {
        RunError::Limit(limit) => limit,
        other => panic!("expected a limit error, got: {other}"),
    }
}

#[tokio::test]
async fn infinite_loop_runs_out_of_fuel() {
    let (runner, catalog) = hostile("hostile-loop").await;
    let limits = Limits {
        fuel: 50_000_000,
        ..short_limits()
    };
    let report = call(
        &runner,
        &catalog,
        "spin",
        json!({}),
        &Grants::default(),
        &limits,
    )
    .await;
    let error = err(&report);
    assert_eq!(limit(error), &LimitExceeded::Fuel { limit: 50_000_000 });
    assert!(error.to_string().contains("fuel limit reached"), "{error}");
    assert!(error.to_string().contains("50000000"), "{error}");
    assert_eq!(report.fuel_used, 50_000_000);
    still_serving(&runner, &catalog).await;
}

/// Runs `tool` under a 300 ms deadline (and effectively unlimited fuel): it must end with the
/// time limit, named with its value, within the deadline plus generous slack for a loaded
/// machine, and the gateway must keep serving.
async fn times_out_at_the_deadline(component: &str, tool: &str) {
    let (runner, catalog) = hostile(component).await;
    let deadline = Duration::from_millis(300);
    let limits = Limits {
        fuel: u64::MAX / 2,
        timeout: deadline,
        ..Limits::default()
    };
    let started = Instant::now();
    let report = call(
        &runner,
        &catalog,
        tool,
        json!({}),
        &Grants::default(),
        &limits,
    )
    .await;
    let elapsed = started.elapsed();
    let error = err(&report);
    assert!(
        matches!(limit(error), LimitExceeded::Timeout { limit } if *limit == deadline),
        "{error}"
    );
    assert!(error.to_string().contains("300 ms"), "{error}");
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    // Fuel used is what ran before the deadline: neither nothing nor the whole budget.
    assert!(
        report.fuel_used < limits.fuel,
        "fuel_used {} of {}",
        report.fuel_used,
        limits.fuel
    );
    still_serving(&runner, &catalog).await;
}

#[tokio::test]
async fn infinite_loop_is_interrupted_at_the_deadline() {
    // The epoch deadline traps a guest that never calls the host.
    times_out_at_the_deadline("hostile-loop", "spin").await;
}

#[tokio::test]
async fn memory_bomb_hits_the_memory_limit() {
    let (runner, catalog) = hostile("hostile-memory").await;
    let limits = Limits {
        memory_bytes: 32 * MIB,
        ..short_limits()
    };
    let report = call(
        &runner,
        &catalog,
        "grab_memory",
        json!({}),
        &Grants::default(),
        &limits,
    )
    .await;
    let error = err(&report);
    assert!(
        matches!(limit(error), LimitExceeded::Memory { limit, requested } if *limit == 32 * MIB && *requested > 32 * MIB),
        "{error}"
    );
    assert!(error.to_string().contains("the limit is 32 MiB"), "{error}");
    still_serving(&runner, &catalog).await;
}

#[tokio::test]
async fn unbounded_recursion_traps_on_the_stack_limit() {
    let (runner, catalog) = hostile("hostile-recursion").await;
    let report = attempt(&runner, &catalog, "recurse", json!({})).await;
    let error = err(&report);
    assert!(
        matches!(limit(error), LimitExceeded::Stack { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("stack limit reached"), "{error}");
    still_serving(&runner, &catalog).await;
}

#[tokio::test]
async fn stdout_flood_is_capped() {
    let (runner, catalog) = hostile("hostile-stdout").await;
    let report = attempt(&runner, &catalog, "flood_stdout", json!({})).await;
    let error = err(&report);
    assert!(
        matches!(limit(error), LimitExceeded::Stdio { stream: "stdout", limit } if *limit == 64 * 1024),
        "{error}"
    );
    assert!(report.stdout.len() <= 64 * 1024);
    assert!(report.stdout.starts_with(b"{\"jsonrpc\""));
    assert_eq!(report.stderr, b"stderr noise\n");
    still_serving(&runner, &catalog).await;
}

#[tokio::test]
async fn huge_return_values_hit_the_output_or_transfer_limit() {
    let (runner, catalog) = hostile("hostile-big-return").await;
    let limits = Limits {
        output_bytes: MIB,
        ..short_limits()
    };
    let none = Grants::default();
    let big_return = |bytes: u64| {
        call(
            &runner,
            &catalog,
            "big_return",
            json!({ "bytes": bytes }),
            &none,
            &limits,
        )
    };
    // Over the output cap: refused after the copy, naming both sizes.
    let over = big_return(2 * MIB).await;
    let error = err(&over);
    assert_eq!(
        limit(error),
        &LimitExceeded::Output {
            limit: MIB,
            actual: 2 * MIB
        }
    );
    assert!(
        error
            .to_string()
            .contains("returned 2 MiB; the limit is 1 MiB"),
        "{error}"
    );
    // Far over: refused while copying, so the host never allocates it.
    let huge = big_return(64 * MIB).await;
    let error = err(&huge);
    assert!(
        matches!(
            limit(error),
            LimitExceeded::Transfer { .. } | LimitExceeded::Memory { .. }
        ),
        "{error}"
    );
    let eight = big_return(8 * MIB).await;
    let error = err(&eight);
    assert_eq!(limit(error), &LimitExceeded::Transfer { limit: 4 * MIB });
    assert!(
        error.to_string().contains("transfer limit reached"),
        "{error}"
    );
    // The same tool under the cap works.
    assert!(!ok(&big_return(1000).await).is_error);
    // A legal result under a larger output limit is never cut by a smaller hidden cap (the
    // host-call budget grows with the output limit).
    let large = Limits {
        output_bytes: 12 * MIB,
        ..short_limits()
    };
    let ten = call(
        &runner,
        &catalog,
        "big_return",
        json!({ "bytes": 10 * MIB }),
        &none,
        &large,
    )
    .await;
    assert!(!ok(&ten).is_error);
    still_serving(&runner, &catalog).await;
}

/// A granted directory next to a secret, with symlinks that point out in every way.
struct EscapeFixture {
    _tmp: tempfile::TempDir,
    granted: std::path::PathBuf,
}

const CANARY: &str = "CANARY-7f3a91-outside-the-grant";

fn escape_fixture() -> EscapeFixture {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();
    let granted = base.join("proj");
    let evil = base.join("proj-evil");
    fs::create_dir_all(granted.join("sub")).unwrap();
    fs::create_dir_all(&evil).unwrap();
    fs::write(base.join("secret.txt"), CANARY).unwrap();
    fs::write(evil.join("secret.txt"), CANARY).unwrap();
    fs::write(granted.join("inside.txt"), "inside").unwrap();
    symlink(base.join("secret.txt"), granted.join("abs")).unwrap();
    symlink("../secret.txt", granted.join("rel")).unwrap();
    symlink("sub/../../secret.txt", granted.join("rel-through-sub")).unwrap();
    symlink("chain2", granted.join("chain1")).unwrap();
    symlink("../secret.txt", granted.join("chain2")).unwrap();
    symlink("loop2", granted.join("loop1")).unwrap();
    symlink("loop1", granted.join("loop2")).unwrap();
    symlink("..", granted.join("up")).unwrap();
    symlink("/", granted.join("root")).unwrap();
    symlink("../proj-evil", granted.join("sibling")).unwrap();
    EscapeFixture { _tmp: tmp, granted }
}

#[tokio::test]
async fn filesystem_escapes_are_contained() {
    let fixture = escape_fixture();
    let (runner, catalog) = hostile("hostile-fs-escape").await;
    let grants = dir_grant(&fixture.granted, "/workspace", FsMode::Rw);
    let attempts = [
        "/workspace/../secret.txt",
        "/workspace/sub/../../secret.txt",
        "/workspace/abs",
        "/workspace/rel",
        "/workspace/rel-through-sub",
        "/workspace/chain1",
        "/workspace/loop1",
        "/workspace/up/secret.txt",
        "/workspace/root/etc/passwd",
        "/workspace/sibling/secret.txt",
        "/workspace-evil/secret.txt",
        "/proj-evil/secret.txt",
        "/etc/passwd",
        "/",
        "..",
        "../secret.txt",
        "secret.txt",
        "/workspace/%2e%2e/secret.txt",
    ];
    let mut paths: Vec<&str> = attempts.to_vec();
    paths.push("/workspace/inside.txt");
    let report = call(
        &runner,
        &catalog,
        "escape",
        json!({ "paths": paths }),
        &grants,
        &short_limits(),
    )
    .await;
    let out = structured(&report);
    let results = out["attempts"].as_array().expect("attempts");
    assert_eq!(results.len(), paths.len());
    for result in results {
        let path = result["path"].as_str().unwrap();
        let detail = result["detail"].as_str().unwrap();
        assert!(
            !detail.contains(CANARY),
            "{path} leaked the secret: {result}"
        );
        if path == "/workspace/inside.txt" {
            assert_eq!(result["outcome"], "read", "control read failed: {result}");
            assert_eq!(detail, "inside");
        } else {
            assert_eq!(result["outcome"], "denied", "{path} escaped: {result}");
        }
    }
    still_serving(&runner, &catalog).await;
}

/// Every file and directory under `dir` with its content and modification time.
fn snapshot(dir: &Path) -> BTreeMap<String, (String, Option<std::time::SystemTime>)> {
    let mut out = BTreeMap::new();
    for entry in walk(dir) {
        let meta = fs::symlink_metadata(&entry).unwrap();
        let content = if meta.is_file() {
            fs::read_to_string(&entry).unwrap()
        } else if meta.is_symlink() {
            format!("-> {}", fs::read_link(&entry).unwrap().display())
        } else {
            "<dir>".into()
        };
        let key = entry.strip_prefix(dir).unwrap().display().to_string();
        out.insert(key, (content, meta.modified().ok()));
    }
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

fn write_fixture() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("keep.txt"), "original").unwrap();
    fs::create_dir(tmp.path().join("subdir")).unwrap();
    tmp
}

async fn mutate(runner: &Runner, catalog: &Catalog, dir: &Path, mode: FsMode) -> Vec<Value> {
    let report = call(
        runner,
        catalog,
        "mutate",
        json!({"dir": "/data", "file": "keep.txt", "subdir": "subdir"}),
        &dir_grant(dir, "/data", mode),
        &short_limits(),
    )
    .await;
    structured(&report)["attempts"].as_array().unwrap().clone()
}

#[tokio::test]
async fn read_only_grant_cannot_change_anything() {
    let (runner, catalog) = hostile("hostile-fs-write").await;

    let ro = write_fixture();
    let before = snapshot(ro.path());
    let attempts = mutate(&runner, &catalog, ro.path(), FsMode::Ro).await;
    assert!(attempts.len() >= 12);
    for attempt in &attempts {
        assert_eq!(
            attempt["succeeded"], false,
            "read-only grant allowed: {attempt}"
        );
    }
    assert_eq!(
        snapshot(ro.path()),
        before,
        "the read-only directory changed"
    );

    // The same attempts through a read-write grant do change things: the attacks are real.
    let rw = write_fixture();
    let attempts = mutate(&runner, &catalog, rw.path(), FsMode::Rw).await;
    let succeeded: Vec<&str> = attempts
        .iter()
        .filter(|a| a["succeeded"] == true)
        .map(|a| a["op"].as_str().unwrap())
        .collect();
    for op in ["create", "overwrite", "truncate", "create_dir", "symlink"] {
        assert!(
            succeeded.contains(&op),
            "{op} failed under rw: {attempts:?}"
        );
    }
    assert!(rw.path().join("new.txt").exists());
    still_serving(&runner, &catalog).await;
}

#[tokio::test]
async fn nothing_ambient_is_inherited() {
    let (runner, catalog) = hostile("hostile-env").await;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let input = json!({ "connect": addr });

    // No grants: nothing at all.
    let report = call(
        &runner,
        &catalog,
        "probe_ambient",
        input.clone(),
        &Grants::default(),
        &short_limits(),
    )
    .await;
    let seen = structured(&report);
    assert_eq!(seen["env"], json!([]), "inherited env: {seen}");
    assert_eq!(seen["args"], json!([]), "inherited args: {seen}");
    assert_eq!(seen["stdin"], "", "stdin had data: {seen}");
    assert!(
        seen["root"].as_str().unwrap().starts_with("Err"),
        "saw /: {seen}"
    );
    assert!(
        seen["dot"].as_str().unwrap().starts_with("Err"),
        "saw .: {seen}"
    );
    assert!(
        seen["tcp"].as_str().unwrap().starts_with("Err"),
        "network: {seen}"
    );
    assert!(
        seen["dns"].as_str().unwrap().starts_with("Err"),
        "dns: {seen}"
    );
    assert!(
        listener.accept().is_err(),
        "the guest reached a host socket"
    );

    // Granted env: exactly that, nothing of the gateway's own environment.
    let mut grants = Grants::default();
    grants.env.insert("REGION".into(), "eu-west-1".into());
    let report = call(
        &runner,
        &catalog,
        "probe_ambient",
        input,
        &grants,
        &short_limits(),
    )
    .await;
    assert_eq!(structured(&report)["env"], json!([["REGION", "eu-west-1"]]));
    still_serving(&runner, &catalog).await;
}

#[tokio::test]
async fn guest_blocked_in_a_host_call_hits_the_wall_clock() {
    // Epochs cannot interrupt a host call; the async wall-clock timeout must.
    times_out_at_the_deadline("hostile-sleep", "sleep_forever").await;
}

#[tokio::test]
async fn beyond_the_concurrency_bound_calls_get_a_fast_busy_error() {
    let runner = Runner::new(
        portcullis::runner::EngineSettings {
            admission: crate::support::admission(1),
            max_memory_bytes: 64 * MIB,
        },
        portcullis::capabilities::Capabilities::basic(Vec::new()),
    )
    .unwrap();
    let mut catalog = Catalog::default();
    for name in ["hostile-sleep", "data"] {
        catalog
            .add_file(
                &runner,
                &crate::support::component(name),
                Some(&crate::support::cache_dir()),
            )
            .await
            .unwrap();
    }
    let limits = Limits {
        timeout: Duration::from_millis(1500),
        ..Limits::default()
    };
    let none = Grants::default();
    let blocker = call(
        &runner,
        &catalog,
        "sleep_forever",
        json!({}),
        &none,
        &limits,
    );
    let second = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let report = call(
            &runner,
            &catalog,
            "hash",
            json!({"text": "a"}),
            &none,
            &limits,
        )
        .await;
        (report, started.elapsed())
    };
    let (_, (report, waited)) = tokio::join!(blocker, second);
    let error = err(&report);
    assert!(matches!(error, RunError::Busy(_)), "{error}");
    assert!(
        error
            .to_string()
            .contains("busy: 1 calls are already running"),
        "{error}"
    );
    // It did not queue behind the blocker (which holds the slot for 1.5 s).
    assert!(waited < Duration::from_secs(1), "busy took {waited:?}");
    // Once the slot is free, calls run again.
    still_serving(&runner, &catalog).await;
}

#[tokio::test]
async fn state_does_not_carry_between_calls() {
    let (runner, catalog) = hostile("hostile-state").await;
    for secret in ["first", "second", "third"] {
        let report = attempt(
            &runner,
            &catalog,
            "carry_state",
            json!({ "secret": secret }),
        )
        .await;
        assert_eq!(
            structured(&report),
            &json!({"calls": 1, "previous": null}),
            "state leaked from an earlier call"
        );
    }
    still_serving(&runner, &catalog).await;
}

/// Wraps a core module written in WAT into a `tool-component` component of
/// `portcullis:tool@0.1.0` (whose exports the WAT names), as wasm-tools does.
fn componentize(source: &Path) -> Vec<u8> {
    let mut module =
        wat::parse_file(source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_dir(crate::support::root().join("wit/legacy/0.1"))
        .unwrap();
    let world = resolve
        .select_world(&[package], Some("tool-component"))
        .unwrap();
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
        false,
    )
    .unwrap();
    wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}

/// Loads a hostile component written in WAT (`tests/hostile/NAME.wat`, for attacks Rust
/// guests cannot express) together with the `data` example tool.
async fn hostile_wat(name: &str) -> (Runner, Catalog, tempfile::TempDir) {
    let bytes = componentize(&crate::support::root().join(format!("tests/hostile/{name}.wat")));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.wasm"));
    fs::write(&path, bytes).unwrap();
    let (runner, mut catalog) = load(&["data"]).await;
    catalog
        .add_file(&runner, &path, None)
        .await
        .unwrap_or_else(|e| panic!("loading {name}: {e:#}"));
    (runner, catalog, dir)
}

#[tokio::test]
async fn table_growth_is_refused_at_the_table_limit() {
    let (runner, catalog, _dir) = hostile_wat("hostile-table").await;
    let report = attempt(&runner, &catalog, "grow_table", json!({})).await;
    let error = err(&report);
    assert!(
        matches!(limit(error), LimitExceeded::Table { requested, .. } if *requested > 1_000_000),
        "{error}"
    );
    assert!(error.to_string().contains("table limit reached"), "{error}");
    still_serving(&runner, &catalog).await;
}

#[test]
fn every_hostile_component_has_a_test() {
    // Hidden paths, results checked by the gateway, outbound HTTP, resources and prompts, and
    // asking the client have their own modules.
    let source = [
        include_str!("hostile.rs"),
        include_str!("hidden.rs"),
        include_str!("results.rs"),
        include_str!("egress.rs"),
        include_str!("items.rs"),
        include_str!("elicit.rs"),
    ]
    .concat();
    let root = crate::support::root();
    let mut missing = Vec::new();
    for entry in fs::read_dir(root.join("tools")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        // Every test loads its component by its quoted name.
        if name.starts_with("hostile-") && !source.contains(&format!("\"{name}\"")) {
            missing.push(name);
        }
    }
    for entry in fs::read_dir(root.join("tests/hostile")).unwrap() {
        let file = entry.unwrap().file_name().to_string_lossy().into_owned();
        let name = file.trim_end_matches(".wat");
        if !source.contains(&format!("hostile_wat(\"{name}\")")) {
            missing.push(file);
        }
    }
    assert!(
        missing.is_empty(),
        "hostile components without a test: {missing:?}"
    );
}
