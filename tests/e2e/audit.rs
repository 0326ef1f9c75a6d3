//! The audit trail end to end, through the real binary: a real run verifies and each tampered
//! copy of it fails at the record that was touched; `kill -9` in the middle of a stream of
//! calls loses no intent and no answered outcome; a full disk fails calls closed while the
//! gateway keeps serving; a canary secret and a redacted argument reach no sink.

use std::path::{Path, PathBuf};
use std::process::Output;

use rusqlite::Connection;
use serde_json::{Value, json};

use crate::gateway::{
    BOB, Options, Setup, binary, call, http_client, http_server, setup, stdio_client, text,
};
use crate::governance::{APPROVERS, approval_id, approve, stderr, stdout};
use crate::ops::{DORA, TOKEN, ops_setup_with};
use crate::upstream::ControlPlane;

/// `portcullis audit ARGS…` against `s`'s configuration.
fn audit(s: &Setup, args: &[&str]) -> Output {
    std::process::Command::new(binary())
        .arg("--config")
        .arg(&s.config)
        .arg("audit")
        .args(args)
        .output()
        .expect("run portcullis audit")
}

/// Every record `audit export` prints with `filters`, as JSON.
pub fn export(s: &Setup, filters: &[&str]) -> Vec<Value> {
    let mut args = vec!["export"];
    args.extend_from_slice(filters);
    let o = audit(s, &args);
    assert!(o.status.success(), "export: {}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn data_dir(s: &Setup) -> PathBuf {
    s.dir.path().join(".portcullis/data")
}

pub fn job(result: &rmcp::model::CallToolResult) -> String {
    result.meta.as_ref().unwrap().0["portcullis/job"]
        .as_str()
        .expect("the result names its job")
        .to_string()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// `verify` on the trail after `tamper`, from a fresh copy of `pristine`: its stdout.
fn verify_tampered(s: &Setup, pristine: &Path, tamper: &str) -> String {
    let data = data_dir(s);
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::remove_file(path).unwrap();
        }
    }
    copy_dir(pristine, &data);
    Connection::open(data.join("state.sqlite3"))
        .unwrap()
        .execute_batch(tamper)
        .unwrap();
    let o = audit(s, &["verify"]);
    assert!(
        !o.status.success(),
        "`{tamper}` went unnoticed: {}",
        stdout(&o)
    );
    stdout(&o)
}

#[tokio::test]
async fn a_real_trail_verifies_and_every_tampered_copy_fails_at_the_right_record() {
    let s = setup(Options::default()); // stdio as bob (writer)
    // Before anything ran: no trail to check, and checking creates none (and no key).
    let o = audit(&s, &["verify"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no state store at"), "{}", stderr(&o));
    assert!(!data_dir(&s).exists());
    let client = stdio_client(&s).await;
    let mut jobs = Vec::new();
    for i in 0..12 {
        let r = call(&client, "hash", json!({"text": format!("t{i}")}))
            .await
            .unwrap();
        assert_eq!(r.is_error, Some(false), "{}", text(&r));
        jobs.push(job(&r));
    }
    let wrote = call(
        &client,
        "write_file",
        json!({"path": "a.txt", "content": "x"}),
    )
    .await
    .unwrap();
    let schema = call(&client, "hash", json!({"text": 7})).await.unwrap();
    assert_eq!(schema.is_error, Some(true));
    client.cancel().await.unwrap(); // exits, sealing the trail

    let o = audit(&s, &["verify"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("audit trail: OK"), "{}", stdout(&o));

    // What an operator reads back: each call's intent and outcome, the refusal.
    let shown = audit(&s, &["show", &job(&wrote)]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    let shown = stdout(&shown);
    assert!(shown.contains("\"kind\": \"intent\"") && shown.contains("\"kind\": \"outcome\""));
    assert!(shown.contains("[redacted: string, 1 bytes]"), "{shown}");
    let records = export(&s, &[]);
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "intent").count(), 13);
    assert_eq!(kinds.iter().filter(|k| **k == "outcome").count(), 13);
    assert_eq!(kinds.last(), Some(&"checkpoint"));
    let refused = export(&s, &["--outcome", "schema"]);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["principal"], "bob");
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains("input schema")
    );
    for r in &records {
        assert_eq!(r["hash"].as_str().unwrap().len(), 64);
    }
    // The decision log: one OPA event per decided call, the bundle as its revision.
    let decisions = export(&s, &["--format", "opa"]);
    assert_eq!(decisions.len(), 13, "{decisions:?}");
    let write = decisions
        .iter()
        .find(|d| d["decision_id"] == job(&wrote).as_str())
        .expect("the write_file decision");
    assert_eq!(write["erased"], json!(["/input/args/content"]));
    assert_eq!(write["result"]["allow"], true);
    assert!(
        write["bundles"]["portcullis"]["revision"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(
        write["metrics"]["timer_rego_query_eval_ns"]
            .as_u64()
            .unwrap()
            > 0
    );
    let last = records.last().unwrap()["seq"].as_u64().unwrap();
    let pristine = s.dir.path().join("pristine");
    copy_dir(&data_dir(&s), &pristine);

    let flipped = verify_tampered(
        &s,
        &pristine,
        "UPDATE audit SET body = replace(body, '\"fuel\":', '\"fuel\": ') WHERE seq = 4",
    );
    assert!(
        flipped.contains("BROKEN at record 4") && flipped.contains("edited"),
        "{flipped}"
    );
    let deleted = verify_tampered(&s, &pristine, "DELETE FROM audit WHERE seq = 7");
    assert!(
        deleted.contains("at record 7") && deleted.contains("missing"),
        "{deleted}"
    );
    let swapped = verify_tampered(
        &s,
        &pristine,
        "UPDATE audit SET seq = -1 WHERE seq = 9; UPDATE audit SET seq = 9 WHERE seq = 10;
         UPDATE audit SET seq = 10 WHERE seq = -1;",
    );
    assert!(
        swapped.contains("at record 9") && swapped.contains("reordered"),
        "{swapped}"
    );
    let truncated = verify_tampered(
        &s,
        &pristine,
        &format!("DELETE FROM audit WHERE seq > {}", last - 3),
    );
    assert!(
        truncated.contains(&format!("ends at record {}", last - 3))
            && truncated.contains("deleted from the end"),
        "{truncated}"
    );
    let checkpoint = verify_tampered(
        &s,
        &pristine,
        &format!("DELETE FROM audit WHERE seq = {last}"),
    );
    assert!(
        checkpoint.contains(&format!("record {last}")),
        "{checkpoint}"
    );

    // Pinned to another key, the untouched trail is not trusted.
    copy_dir(&pristine, &data_dir(&s));
    let other = format!("ed25519:{}", "ab".repeat(32));
    let o = audit(&s, &["verify", "--public-key", &other]);
    assert!(!o.status.success());
    assert!(
        stdout(&o).contains("signed by a trusted key"),
        "{}",
        stdout(&o)
    );
    let key = stdout(&audit(&s, &["key"])).trim().to_string();
    let o = audit(&s, &["verify", "--public-key", &key]);
    assert!(o.status.success(), "{}", stdout(&o));
}

/// Everything allowed, `write_file` with the workspace; its content redacted.
const OPEN_WORKSPACE: &str = r#"package portcullis
import rego.v1
decision := {"allow": true} if input.action == "list"
decision := {"allow": true, "redact": ["args.content"], "grants": {"fs": [
	{"host": data.gateway.workspace, "guest": "/workspace", "mode": "rw"}]}} if input.action == "call"
"#;

#[tokio::test]
async fn kill_9_in_a_stream_of_calls_loses_no_intent_and_no_answered_outcome() {
    let s = setup(Options {
        policy: Some(OPEN_WORKSPACE),
        ..Options::default()
    });
    let mut answered = Vec::new();
    for cycle in 0..3u64 {
        let mut server = http_server(&s).await;
        let client = http_client(&server, BOB).await;
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let peer = client.peer().clone();
                tokio::spawn(async move {
                    let mut jobs = Vec::new();
                    for n in 0.. {
                        let args =
                            json!({"path": format!("c{cycle}-w{w}-{n}.txt"), "content": "x"});
                        let params = rmcp::model::CallToolRequestParams::new("write_file")
                            .with_arguments(args.as_object().unwrap().clone());
                        match peer.call_tool(params).await {
                            Ok(r) if r.is_error == Some(false) => jobs.push(job(&r)),
                            Ok(r) => panic!("{}", text(&r)),
                            Err(_) => break, // the gateway died under this call
                        }
                    }
                    jobs
                })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(1500 + 500 * cycle)).await;
        server.child.start_kill().unwrap(); // SIGKILL: no chance to seal or flush
        server.child.wait().await.unwrap();
        for w in writers {
            answered.extend(w.await.unwrap());
        }
    }
    assert!(
        answered.len() >= 300,
        "only {} calls were answered",
        answered.len()
    );

    let o = audit(&s, &["verify"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let records = export(&s, &[]);
    let mut intents = std::collections::HashMap::new();
    let mut written = std::collections::HashSet::new();
    let mut outcomes = std::collections::HashSet::new();
    for r in &records {
        let job = r["job"].as_str().unwrap_or_default().to_string();
        match r["kind"].as_str().unwrap() {
            "intent" => {
                assert_eq!(r["args"]["content"], "[redacted: string, 1 bytes]");
                written.insert(r["args"]["path"].as_str().unwrap().to_string());
                intents.insert(job, r["seq"].as_u64().unwrap());
            }
            "outcome" => {
                let seq = r["seq"].as_u64().unwrap();
                let intent = intents.get(&job).copied();
                assert!(
                    intent.is_some_and(|i| i < seq),
                    "an outcome without an intent: {r}"
                );
                outcomes.insert(job);
            }
            _ => {}
        }
    }
    for job in &answered {
        assert!(
            outcomes.contains(job),
            "job {job} was answered but has no outcome record"
        );
    }
    // Every file the tool wrote was written by a call whose intent is on record.
    let files: Vec<String> = std::fs::read_dir(&s.workspace)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.len() >= answered.len());
    for file in &files {
        assert!(
            written.contains(file),
            "{file} was written without an intent record"
        );
    }
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the filesystem holding `path` until a write fails for want of space.
fn fill(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![7u8; 16 * 1024];
    loop {
        if let Err(e) = file.write_all(&chunk).and_then(|()| file.sync_all()) {
            assert_eq!(e.raw_os_error(), Some(28), "{e}"); // ENOSPC
            return;
        }
    }
}

#[tokio::test]
async fn a_full_disk_fails_calls_closed_and_the_gateway_keeps_serving() {
    let s = setup(Options {
        policy: Some(OPEN_WORKSPACE),
        ..Options::default()
    });
    let data = s.dir.path().join("small");
    std::fs::create_dir(&data).unwrap();
    let mounted = rustix::process::getuid().is_root()
        && std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(&data)
            .status()
            .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED: mounting a small tmpfs needs root; the full-disk test did not run");
        return;
    }
    let _mount = Mount(data.clone());
    let config = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        format!("data_dir = \"{}\"\n{config}", data.display()),
    )
    .unwrap();
    let client = stdio_client(&s).await;
    let before = call(
        &client,
        "write_file",
        json!({"path": "before.txt", "content": "x"}),
    )
    .await
    .unwrap();
    assert_eq!(before.is_error, Some(false), "{}", text(&before));

    fill(&data.join("filler"));
    let mut refused = None;
    for i in 0..2_000 {
        let r = call(&client, "hash", json!({"text": format!("{i}")}))
            .await
            .unwrap();
        if r.is_error == Some(true) {
            refused = Some(text(&r));
            break;
        }
    }
    let refused = refused.expect("no call failed on a full disk");
    assert!(
        refused.contains("could not record this call, so it did not run")
            || refused.contains("could not record its outcome"),
        "{refused}"
    );
    assert!(refused.contains("full"), "{refused}");
    // A call with a side effect: refused, and it did not run (unless it says it ran).
    let during = call(
        &client,
        "write_file",
        json!({"path": "during.txt", "content": "x"}),
    )
    .await
    .unwrap();
    assert_eq!(during.is_error, Some(true), "{}", text(&during));
    let ran = text(&during).contains("the call ran");
    assert_eq!(
        s.workspace.join("during.txt").exists(),
        ran,
        "{}",
        text(&during)
    );
    // The gateway still answers what needs no store.
    assert!(!client.list_all_tools().await.unwrap().is_empty());

    std::fs::remove_file(data.join("filler")).unwrap();
    let after = call(
        &client,
        "write_file",
        json!({"path": "after.txt", "content": "x"}),
    )
    .await
    .unwrap();
    assert_eq!(after.is_error, Some(false), "{}", text(&after));
    client.cancel().await.unwrap();
    let o = audit(&s, &["verify"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}

#[tokio::test]
async fn a_canary_secret_and_a_redacted_argument_reach_no_sink() {
    const REDACTED: &str = "redacted-canary-5d1e0b";
    let cp = ControlPlane::start("127.0.0.1", TOKEN).await;
    let (mut s, _secrets) = ops_setup_with(&cp, "staging", Some(TOKEN), APPROVERS);
    std::fs::copy(
        crate::support::component("workspace"),
        s.dir.path().join("tools/workspace.wasm"),
    )
    .unwrap();
    s.rust_log = "portcullis=debug".into();
    let otlp = crate::otlp::Receiver::start().await;
    let mut config = std::fs::read_to_string(&s.config).unwrap();
    config.push_str(&otlp.config());
    std::fs::write(&s.config, config).unwrap();
    let server = http_server(&s).await;
    let dora = http_client(&server, DORA).await;
    let bob = http_client(&server, BOB).await;
    let mut answers = String::new();
    let restarted = call(&dora, "restart_service", json!({"name": "web"}))
        .await
        .unwrap();
    assert_eq!(restarted.is_error, Some(false), "{}", text(&restarted));
    let written = json!({"path": "n.txt", "content": REDACTED});
    for _ in 0..2 {
        // The second fails in the tool (the file exists), with an error message.
        let r = call(&bob, "write_file", written.clone()).await.unwrap();
        answers.push_str(&format!("{r:?}"));
    }
    let denied = call(
        &bob,
        "write_file",
        json!({"path": ".env", "content": REDACTED}),
    )
    .await
    .unwrap();
    assert_eq!(denied.is_error, Some(true));
    answers.push_str(&format!("{restarted:?}{denied:?}"));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    drop((dora, bob));
    let log = server.log.lock().unwrap().join("\n");
    drop(server);

    let mut sinks = vec![("answers".to_string(), answers)];
    for args in [&["export"][..], &["tail", "-n", "1000", "--json"]] {
        let o = audit(&s, args);
        assert!(o.status.success(), "{}", stderr(&o));
        sinks.push((format!("audit {args:?}"), stdout(&o) + &stderr(&o)));
    }
    assert!(log.contains("call"), "{log}");
    sinks.push(("the gateway's log".into(), log));
    otlp.wait("the spans of the calls", |got| {
        got.spans
            .iter()
            .filter(|s| s.name == "tools/call write_file")
            .count()
            == 3
            && got.spans.iter().any(|s| s.name == "egress")
    })
    .await;
    sinks.push(("the exported spans and metrics".into(), otlp.raw()));
    for entry in std::fs::read_dir(data_dir(&s)).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            sinks.push((
                path.display().to_string(),
                String::from_utf8_lossy(&bytes).into(),
            ));
        }
    }
    let exported = &sinks[1].1;
    assert!(
        exported.contains("[redacted: string, 22 bytes]"),
        "{exported}"
    );
    assert!(
        exported.contains("\"credential_injected\":true"),
        "{exported}"
    );
    for (sink, content) in &sinks {
        assert!(!content.contains(TOKEN), "the secret reached {sink}");
        if let Some(at) = content.find(REDACTED) {
            let around = &content[at.saturating_sub(300)..(at + 100).min(content.len())];
            panic!("the redacted argument reached {sink}: …{around}…");
        }
    }
}

#[tokio::test]
async fn approvals_leave_their_events_and_the_run_names_its_approval() {
    let cp = ControlPlane::start("127.0.0.1", TOKEN).await;
    let (s, _secrets) = ops_setup_with(&cp, "prod", Some(TOKEN), APPROVERS);
    let client = stdio_client(&s).await; // as dora (deploy)
    let args = json!({"name": "web"});
    let pending = call(&client, "restart_service", args.clone())
        .await
        .unwrap();
    let id = approval_id(&pending);
    approve(&s, &id, "sam");
    approve(&s, &id, "sue");
    let ran = call(&client, "restart_service", args).await.unwrap();
    assert_eq!(ran.is_error, Some(false), "{}", text(&ran));
    client.cancel().await.unwrap();

    let events: Vec<(String, String)> = export(&s, &["--kind", "approval"])
        .iter()
        .map(|r| {
            (
                r["event"].as_str().unwrap().into(),
                r["principal"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected = [("requested", "dora"), ("voted", "sam"), ("approved", "sue")];
    assert_eq!(
        events,
        expected.map(|(e, p)| (e.to_string(), p.to_string()))
    );
    let refused = export(&s, &["--outcome", "approval_pending"]);
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["approval"], id.as_str());
    let intents = export(&s, &["--kind", "intent", "--tool", "restart_service"]);
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0]["approval"], id.as_str());
    assert_eq!(intents[0]["environment"], "prod");
    let o = audit(&s, &["verify"]);
    assert!(o.status.success(), "{}", stdout(&o));
}

#[tokio::test]
async fn sigterm_seals_the_trail_before_the_gateway_exits() {
    let s = setup(Options {
        // Only the exit can seal what this test records.
        extra: "[audit]\ncheckpoint_every = \"1h\"\n",
        ..Options::default()
    });
    let mut server = http_server(&s).await;
    let client = http_client(&server, BOB).await;
    let r = call(&client, "hash", json!({"text": "t"})).await.unwrap();
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    let pid = server.child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(killed.unwrap().success());
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), server.child.wait())
        .await
        .expect("the gateway did not exit on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let o = audit(&s, &["verify", "--json"]);
    assert!(o.status.success(), "{}", stdout(&o));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["unsealed"], 0, "{report}");
    assert!(report["checkpoints"].as_u64().unwrap() >= 1, "{report}");
}
