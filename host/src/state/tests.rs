use super::sqlite::SqliteStore;
use super::*;

fn intent(key: &str, plan: &str, owner: &str, now: Secs) -> Intent {
    Intent {
        principal: "p".into(),
        key: key.into(),
        plan_hash: plan.into(),
        owner: owner.into(),
        now,
        expires_at: now + 100,
    }
}

fn outcome(text: &str) -> StoredOutcome {
    StoredOutcome {
        result: Some(serde_json::json!({ "text": text })),
        error: None,
        fuel_used: 7,
        finished_at: 1,
    }
}

#[tokio::test]
async fn a_key_runs_once_conflicts_on_another_plan_and_expires() {
    let store = SqliteStore::in_memory().unwrap();
    assert_eq!(
        store.begin(intent("k", "a", "me", 10)).await.unwrap(),
        Begin::Fresh
    );
    assert_eq!(
        store.begin(intent("k", "a", "me", 11)).await.unwrap(),
        Begin::Running {
            owner: "me".into(),
            since: 10
        }
    );
    store
        .finish("p".into(), "k".into(), "me".into(), outcome("x"))
        .await
        .unwrap();
    assert_eq!(
        store.begin(intent("k", "a", "me", 12)).await.unwrap(),
        Begin::Done(outcome("x"))
    );
    assert_eq!(
        store.begin(intent("k", "b", "me", 12)).await.unwrap(),
        Begin::Conflict {
            plan_hash: "a".into()
        }
    );
    // Past its retention the key is free again.
    assert_eq!(
        store.begin(intent("k", "b", "me", 200)).await.unwrap(),
        Begin::Fresh
    );
}

#[tokio::test]
async fn a_run_of_another_process_without_an_outcome_is_in_doubt_for_good() {
    let store = SqliteStore::in_memory().unwrap();
    assert_eq!(
        store.begin(intent("k", "a", "old", 10)).await.unwrap(),
        Begin::Fresh
    );
    assert_eq!(
        store.begin(intent("k", "a", "new", 20)).await.unwrap(),
        Begin::Running {
            owner: "old".into(),
            since: 10
        }
    );
    // Its process is gone: the gate abandons the run, which stays in doubt.
    store
        .abandon("p".into(), "k".into(), "old".into(), 20)
        .await
        .unwrap();
    assert_eq!(
        store.begin(intent("k", "a", "new", 20)).await.unwrap(),
        Begin::InDoubt { since: 10 }
    );
    // A finish arriving late does not turn it into "done".
    store
        .finish("p".into(), "k".into(), "old".into(), outcome("x"))
        .await
        .unwrap();
    assert_eq!(
        store.begin(intent("k", "a", "new", 30)).await.unwrap(),
        Begin::InDoubt { since: 10 }
    );
    // A released intent leaves nothing behind.
    assert_eq!(
        store.begin(intent("j", "a", "new", 30)).await.unwrap(),
        Begin::Fresh
    );
    // Only the owner's release counts.
    store
        .release("p".into(), "j".into(), "other".into())
        .await
        .unwrap();
    assert!(matches!(
        store.begin(intent("j", "a", "x", 30)).await.unwrap(),
        Begin::Running { .. }
    ));
    store
        .release("p".into(), "j".into(), "new".into())
        .await
        .unwrap();
    assert_eq!(
        store.begin(intent("j", "b", "new", 31)).await.unwrap(),
        Begin::Fresh
    );
}

#[tokio::test]
async fn charges_are_all_or_nothing_per_window() {
    let store = SqliteStore::in_memory().unwrap();
    let charge = |key: &str, max| Charge {
        key: key.into(),
        window_s: 60,
        max,
        cost: 1,
    };
    for _ in 0..2 {
        store
            .charge(vec![charge("a", 2), charge("b", 5)], 120)
            .await
            .unwrap()
            .unwrap();
    }
    let over = store
        .charge(vec![charge("b", 5), charge("a", 2)], 150)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        (over.key.as_str(), over.used, over.resets_at),
        ("a", 2, 180)
    );
    // "b" was not charged for the refused call: 2 used, 3 left.
    for _ in 0..3 {
        store
            .charge(vec![charge("b", 5)], 170)
            .await
            .unwrap()
            .unwrap();
    }
    assert!(
        store
            .charge(vec![charge("b", 5)], 170)
            .await
            .unwrap()
            .is_err()
    );
    // The next window starts empty.
    store
        .charge(vec![charge("a", 2)], 180)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn fuel_budgets_and_usage_add_up() {
    let store = SqliteStore::in_memory().unwrap();
    let budget = Charge {
        key: "fuel:p".into(),
        window_s: 3600,
        max: 100,
        cost: 0,
    };
    let now = 7200 + 30;
    assert_eq!(
        store.used(vec![budget.clone()], now).await.unwrap(),
        vec![0]
    );
    for (tool, fuel) in [("hash", 60), ("hash", 50), ("read", 5)] {
        store
            .record_run("p".into(), tool.into(), fuel, vec![budget.clone()], now)
            .await
            .unwrap();
    }
    assert_eq!(store.used(vec![budget], now).await.unwrap(), vec![115]);
    let usage = store.usage("p".into(), "hash".into(), now).await.unwrap();
    assert_eq!(usage.principal.calls.hour, 3);
    assert_eq!(usage.principal.fuel.day, 115);
    assert_eq!(usage.tool.calls.minute, 2);
    assert_eq!(usage.tool.fuel.hour, 110);
    let later = store
        .usage("p".into(), "hash".into(), now + 7200)
        .await
        .unwrap();
    assert_eq!((later.tool.calls.hour, later.tool.calls.day), (0, 2));
}

/// Not a test: `cargo test --release -p portcullis --lib store_latency -- --ignored --nocapture`
/// prints the latency of store operations on a file-backed store.
fn counter(key: &str) -> Charge {
    Charge {
        key: key.into(),
        window_s: 3600,
        max: u64::MAX,
        cost: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_from_many_threads_at_once_all_commit_once() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        std::sync::Arc::new(SqliteStore::open(dir.path(), sqlite::Durability::Process).unwrap());
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..250 {
                    store
                        .charge(vec![counter("c")], 1000)
                        .await
                        .unwrap()
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        store.used(vec![counter("c")], 1000).await.unwrap(),
        vec![4000]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_starts_over_under_sustained_commits() {
    // Commits that never pause used to keep the checkpoint from ever finishing, so the WAL grew
    // by every commit for as long as the load lasted.
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), sqlite::Durability::Process).unwrap();
    let wal = dir.path().join("state.sqlite3-wal");
    let started = std::time::Instant::now();
    let mut commits = 0u64;
    while started.elapsed() < std::time::Duration::from_millis(2500) {
        // One caller, each charge awaited: one commit, at least one 4 KiB frame, per charge.
        store
            .charge(vec![counter(&format!("c{}", commits % 64))], 1000)
            .await
            .unwrap()
            .unwrap();
        commits += 1;
    }
    let size = std::fs::metadata(&wal).unwrap().len();
    assert!(
        size < commits * 4096 / 2,
        "{commits} commits left a WAL of {size} bytes: it never started over"
    );
}

#[tokio::test]
async fn a_database_locked_by_another_process_never_blocks_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), sqlite::Durability::Process).unwrap();
    store.flush().await.unwrap();
    // Another process (the CLI, say) holds the write lock.
    let other = rusqlite::Connection::open(dir.path().join("state.sqlite3")).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let queued = std::time::Instant::now();
    let charged = store.charge(vec![counter("c")], 1000);
    // Queued, not waited for: the store's own thread waits for the lock.
    assert!(queued.elapsed() < std::time::Duration::from_secs(1));
    let released = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        other.execute_batch("COMMIT").unwrap();
    });
    charged.await.unwrap().unwrap();
    released.join().unwrap();
    // And once the lock is free, callers commit in place again.
    store
        .charge(vec![counter("c")], 1000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.used(vec![counter("c")], 1000).await.unwrap(), vec![2]);
}

#[tokio::test]
#[ignore]
async fn store_latency() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), sqlite::Durability::Process).unwrap();
    let budget = Charge {
        key: "fuel:p".into(),
        window_s: 3600,
        max: u64::MAX,
        cost: 0,
    };
    let n = 5000;
    let t = std::time::Instant::now();
    for _ in 0..n {
        store.run(|_| Ok(())).await.unwrap();
    }
    println!("empty job: {:?}", t.elapsed() / n);
    let t = std::time::Instant::now();
    for _ in 0..n {
        store.used(vec![budget.clone()], 1000).await.unwrap();
    }
    println!("used: {:?}", t.elapsed() / n);
    let t = std::time::Instant::now();
    for _ in 0..n {
        store
            .record_run("p".into(), "t".into(), 5, vec![budget.clone()], 1000)
            .await
            .unwrap();
    }
    println!("record_run: {:?}", t.elapsed() / n);
    let t = std::time::Instant::now();
    for i in 0..n {
        store
            .begin(intent(&format!("k{i}"), "a", "me", 10))
            .await
            .unwrap();
    }
    println!("begin: {:?}", t.elapsed() / n);
    let fields = format!(
        r#"{{"kind":"intent","at_ms":1,"job":"j","principal":"p","tool":"t","pad":"{}"}}"#,
        "x".repeat(900)
    );
    let t = std::time::Instant::now();
    for i in 0..n {
        let record = AuditAppend {
            kind: "intent",
            at_ms: 1,
            job: Some(format!("j{i}")),
            principal: Some("p".into()),
            tool: Some("t".into()),
            outcome: None,
            fields: fields.clone(),
        };
        store.audit_append(vec![record]).await.unwrap();
    }
    println!("audit_append (1 KB): {:?}", t.elapsed() / n);
}

#[tokio::test]
#[ignore]
async fn hop_latency() {
    let (tx, rx) = std::sync::mpsc::channel::<tokio::sync::oneshot::Sender<()>>();
    std::thread::spawn(move || {
        while let Ok(reply) = rx.recv() {
            let _ = reply.send(());
        }
    });
    let n = 5000;
    let t = std::time::Instant::now();
    for _ in 0..n {
        let (otx, orx) = tokio::sync::oneshot::channel();
        tx.send(otx).unwrap();
        orx.await.unwrap();
    }
    println!("hop: {:?}", t.elapsed() / n);
    let conn =
        rusqlite::Connection::open(tempfile::tempdir().unwrap().keep().join("x.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    let t = std::time::Instant::now();
    for _ in 0..n {
        conn.execute_batch("BEGIN IMMEDIATE; SAVEPOINT op; RELEASE op; COMMIT")
            .unwrap();
    }
    println!("empty transaction: {:?}", t.elapsed() / n);
    let t = std::time::Instant::now();
    for _ in 0..n {
        conn.execute_batch("BEGIN DEFERRED; COMMIT").unwrap();
    }
    println!("empty deferred transaction: {:?}", t.elapsed() / n);
}
