//! Versioned migrations. `PRAGMA user_version` holds how many have run; each runs once, in its
//! own transaction, in order. A database from a newer gateway (more migrations than this one
//! knows) is refused rather than guessed at. Never edit a migration that has shipped: add one.

use anyhow::{Context, Result, bail};
use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: idempotency, approvals, rates, usage.
    "
    CREATE TABLE idempotency (
        principal  TEXT NOT NULL,
        key        TEXT NOT NULL,
        plan_hash  TEXT NOT NULL,
        status     TEXT NOT NULL CHECK (status IN ('running', 'done', 'in_doubt')),
        owner      TEXT NOT NULL,
        outcome    TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (principal, key)
    ) WITHOUT ROWID;
    CREATE INDEX idempotency_expiry ON idempotency (expires_at);

    CREATE TABLE approvals (
        id               TEXT PRIMARY KEY,
        plan_hash        TEXT NOT NULL,
        policy_digest    TEXT NOT NULL,
        tool             TEXT NOT NULL,
        component        TEXT NOT NULL,
        component_digest TEXT NOT NULL,
        principal        TEXT NOT NULL,
        environment      TEXT NOT NULL,
        args             TEXT NOT NULL,
        annotations      TEXT NOT NULL,
        requirement      TEXT NOT NULL,
        reasons          TEXT NOT NULL,
        grants           TEXT NOT NULL,
        status           TEXT NOT NULL,
        created_at       INTEGER NOT NULL,
        expires_at       INTEGER NOT NULL,
        seq              INTEGER NOT NULL
    );
    CREATE INDEX approvals_plan ON approvals (plan_hash, policy_digest, seq);
    CREATE INDEX approvals_seq ON approvals (seq);

    CREATE TABLE approval_votes (
        approval_id TEXT NOT NULL REFERENCES approvals (id),
        approver    TEXT NOT NULL,
        roles       TEXT NOT NULL,
        approve     INTEGER NOT NULL,
        reason      TEXT,
        at          INTEGER NOT NULL,
        origin      TEXT NOT NULL,
        PRIMARY KEY (approval_id, approver)
    ) WITHOUT ROWID;

    CREATE TABLE counters (
        key          TEXT NOT NULL,
        window_s     INTEGER NOT NULL,
        window_start INTEGER NOT NULL,
        used         INTEGER NOT NULL,
        PRIMARY KEY (key, window_s, window_start)
    ) WITHOUT ROWID;

    CREATE TABLE usage (
        principal TEXT NOT NULL,
        tool      TEXT NOT NULL,
        minute    INTEGER NOT NULL,
        calls     INTEGER NOT NULL,
        fuel      INTEGER NOT NULL,
        PRIMARY KEY (principal, minute, tool)
    ) WITHOUT ROWID;
    ",
    // 2: MCP tasks for calls that wait for approval.
    "
    CREATE TABLE tasks (
        id          TEXT PRIMARY KEY,
        principal   TEXT NOT NULL,
        requester   TEXT NOT NULL,
        tool        TEXT NOT NULL,
        args        TEXT NOT NULL,
        transport   TEXT NOT NULL,
        approval_id TEXT NOT NULL,
        status      TEXT NOT NULL CHECK (status IN ('waiting', 'running', 'completed', 'failed', 'cancelled')),
        owner       TEXT,
        message     TEXT,
        result      TEXT,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL
    );
    CREATE INDEX tasks_status ON tasks (status, updated_at);
    ",
    // 3: the audit trail, one hash chain (see state/audit.rs).
    "
    CREATE TABLE audit (
        seq       INTEGER PRIMARY KEY,
        at_ms     INTEGER NOT NULL,
        kind      TEXT NOT NULL,
        job       TEXT,
        principal TEXT,
        tool      TEXT,
        outcome   TEXT,
        body      TEXT NOT NULL,
        hash      TEXT NOT NULL
    );
    CREATE INDEX audit_job ON audit (job) WHERE job IS NOT NULL;
    ",
];

/// Brings the database up to date.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let version: usize = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .context("reading the schema version")?;
    if version > MIGRATIONS.len() {
        bail!(
            "the state database has schema version {version}, newer than this gateway knows ({}); use a newer portcullis or another data_dir",
            MIGRATIONS.len()
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .with_context(|| format!("migration {}", i + 1))?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_a_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: usize = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len());
        conn.pragma_update(None, "user_version", 99).unwrap();
        let e = migrate(&mut conn).unwrap_err().to_string();
        assert!(e.contains("newer than this gateway knows"), "{e}");
    }
}
