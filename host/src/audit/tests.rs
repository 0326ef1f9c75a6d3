//! The trail against tampering: each edit an attacker with the database file could make is
//! caught at the record it touched, and the untouched trail verifies.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, params};

use super::*;
use crate::state::sqlite::{Durability, SqliteStore};

struct Trail {
    dir: tempfile::TempDir,
    audit: Arc<Audit>,
}

fn config(dir: &Path) -> AuditConfig {
    AuditConfig {
        enabled: true,
        signing_key: dir.join("audit-signing.key"),
        trusted_keys: Vec::new(),
        checkpoint_every: std::time::Duration::from_secs(1),
        retention: None,
    }
}

fn record(n: u64) -> AuditAppend {
    AuditAppend {
        kind: "intent",
        at_ms: 1_000 + n,
        job: Some(format!("job-{n}")),
        principal: Some("alice".into()),
        tool: Some("hash".into()),
        outcome: None,
        fields: format!(
            r#"{{"kind":"intent","at_ms":{},"job":"job-{n}","principal":"alice","tool":"hash"}}"#,
            1_000 + n
        ),
    }
}

/// A trail of ten records, a checkpoint after the fifth and one at the end (records 6, 12).
async fn trail() -> Trail {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path(), Durability::Process).unwrap());
    let audit = Arc::new(Audit::open(&config(dir.path()), dir.path(), store).unwrap());
    audit.append((1..=5).map(record).collect()).await.unwrap();
    assert_eq!(audit.checkpoint().await.unwrap(), Some(6));
    audit.append((6..=10).map(record).collect()).await.unwrap();
    assert_eq!(audit.checkpoint().await.unwrap(), Some(12));
    assert_eq!(
        audit.checkpoint().await.unwrap(),
        None,
        "nothing new to seal"
    );
    Trail { dir, audit }
}

async fn verify(trail: &Trail) -> Report {
    let audit = &trail.audit;
    verify_trail(&*audit.store, audit.trusted_keys(), audit.head_path())
        .await
        .unwrap()
}

fn db(trail: &Trail) -> Connection {
    Connection::open(trail.dir.path().join("state.sqlite3")).unwrap()
}

fn problem(report: &Report) -> (u64, String) {
    let p = report
        .problem
        .clone()
        .expect("the tampering was not detected");
    (p.seq, p.why)
}

#[tokio::test]
async fn untouched_trail_verifies() {
    let t = trail().await;
    let report = verify(&t).await;
    assert!(report.problem.is_none(), "{:?}", report.problem);
    assert_eq!((report.records, report.checkpoints), (12, 2));
    assert_eq!(report.unsealed, 0);
    assert_eq!(report.keys.len(), 1);
}

#[tokio::test]
async fn a_flipped_byte_is_caught_at_its_record() {
    let t = trail().await;
    db(&t)
        .execute(
            "UPDATE audit SET body = replace(body, 'job-4', 'job-X'), job = 'job-X' WHERE seq = 4",
            [],
        )
        .unwrap();
    let (seq, why) = problem(&verify(&t).await);
    assert_eq!(seq, 4);
    assert!(why.contains("edited"), "{why}");
}

#[tokio::test]
async fn a_deleted_record_is_caught() {
    let t = trail().await;
    db(&t)
        .execute("DELETE FROM audit WHERE seq = 3", [])
        .unwrap();
    let (seq, why) = problem(&verify(&t).await);
    assert_eq!(seq, 3);
    assert!(why.contains("record 3 is missing"), "{why}");
}

#[tokio::test]
async fn two_swapped_records_are_caught() {
    let t = trail().await;
    let conn = db(&t);
    let get = |seq: u64| -> (String, String) {
        conn.query_row(
            "SELECT body, hash FROM audit WHERE seq = ?1",
            params![seq],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    let (seven, eight) = (get(7), get(8));
    // Each row takes the other's body, hash and columns: only the order changed.
    for (seq, from, (body, hash)) in [(7u64, 8u64, &eight), (8, 7, &seven)] {
        conn.execute(
            "UPDATE audit SET body = ?2, hash = ?3, job = ?4, at_ms = ?5 WHERE seq = ?1",
            params![seq, body, hash, format!("job-{from}"), 1_000 + from],
        )
        .unwrap();
    }
    let (seq, why) = problem(&verify(&t).await);
    assert_eq!(seq, 7);
    assert!(why.contains("reordered"), "{why}");
}

#[tokio::test]
async fn a_truncated_tail_is_caught() {
    let t = trail().await;
    db(&t)
        .execute("DELETE FROM audit WHERE seq > 9", [])
        .unwrap();
    let (seq, why) = problem(&verify(&t).await);
    assert_eq!(seq, 10);
    assert!(
        why.contains("ends at record 9") && why.contains("deleted from the end"),
        "{why}"
    );
}

#[tokio::test]
async fn a_deleted_last_checkpoint_is_caught() {
    let t = trail().await;
    db(&t)
        .execute("DELETE FROM audit WHERE seq = 12", [])
        .unwrap();
    let (seq, why) = problem(&verify(&t).await);
    assert_eq!(seq, 12);
    assert!(why.contains("record 12"), "{why}");
}

#[tokio::test]
async fn a_forged_checkpoint_is_caught() {
    let t = trail().await;
    // Re-sealed with another key: the chain holds, the signature is not trusted.
    let other = Signer::ephemeral().unwrap();
    let conn = db(&t);
    let (hash5,): (String,) = conn
        .query_row("SELECT hash FROM audit WHERE seq = 5", [], |r| {
            Ok((r.get(0)?,))
        })
        .unwrap();
    let forged = other.seal("checkpoint", 5, &hash5, 1);
    let body = crate::state::audit::chain_body(6, &hash5, &forged.fields);
    conn.execute(
        "UPDATE audit SET body = ?1, hash = ?2, at_ms = 1 WHERE seq = 6",
        params![body, crate::state::audit::chain_hash(&body)],
    )
    .unwrap();
    let (seq, why) = problem(&verify(&t).await);
    // Its hash changed, so record 7 no longer follows it; but first the signature fails.
    assert_eq!(seq, 6);
    assert!(why.contains("not a trusted key"), "{why}");
}

#[tokio::test]
async fn pruning_leaves_a_signed_marker_and_verifies() {
    let t = trail().await;
    assert_eq!(t.audit.prune(1_004).await.unwrap(), Some(3));
    let report = verify(&t).await;
    assert!(report.problem.is_none(), "{:?}", report.problem);
    assert_eq!(report.pruned_up_to, Some(3));
    assert_eq!(report.first_seq, Some(4));
    // Without the marker, the missing start is tampering.
    db(&t)
        .execute("DELETE FROM audit WHERE kind = 'pruned'", [])
        .unwrap();
    let (seq, why) = problem(&verify(&t).await);
    assert_eq!(seq, 1);
    assert!(why.contains("records 1–3 are missing"), "{why}");
}

#[tokio::test]
async fn a_rewritten_head_is_refused() {
    let t = trail().await;
    let mut head = read_head(t.audit.head_path()).unwrap().unwrap();
    assert!(verify::head_is_signed(&head, t.audit.trusted_keys()));
    head.body = head.body.replace("\"covers\"", "\"covers\" ");
    assert!(!verify::head_is_signed(&head, t.audit.trusted_keys()));
    assert!(!verify::head_is_signed(
        &read_head(t.audit.head_path()).unwrap().unwrap(),
        &BTreeSet::new()
    ));
    std::fs::write(t.audit.head_path(), serde_json::to_vec(&head).unwrap()).unwrap();
    let (seq, why) = problem(&verify(&t).await);
    assert_eq!(seq, 12);
    assert!(
        why.contains("not a checkpoint signed by a trusted key"),
        "{why}"
    );
}
