//! The SQLite backend's audit table: appends chained inside the writing transaction.

use std::sync::Arc;

use anyhow::Result;
use rusqlite::{Connection, OptionalExtension, params};

use super::Pending;
use super::audit::{
    AuditAppend, AuditQuery, AuditRow, AuditStore, GENESIS, Pruned, Sealer, chain_body, chain_hash,
};
use super::sqlite::SqliteStore;

const COLUMNS: &str = "seq, at_ms, kind, job, principal, tool, outcome, body, hash";

/// The trail's last record (its sequence number and hash), or where a new trail starts.
fn tail(conn: &Connection) -> Result<(u64, String)> {
    Ok(conn
        .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or((0, GENESIS.to_string())))
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRow> {
    Ok(AuditRow {
        seq: r.get(0)?,
        at_ms: r.get(1)?,
        kind: r.get(2)?,
        job: r.get(3)?,
        principal: r.get(4)?,
        tool: r.get(5)?,
        outcome: r.get(6)?,
        body: r.get(7)?,
        hash: r.get(8)?,
    })
}

/// Appends `records` after the tail; the last one written.
fn append(conn: &Connection, records: Vec<AuditAppend>) -> Result<AuditRow> {
    let (mut seq, mut prev) = tail(conn)?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO audit (seq, at_ms, kind, job, principal, tool, outcome, body, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let mut last = None;
    for record in records {
        seq += 1;
        let body = chain_body(seq, &prev, &record.fields);
        let hash = chain_hash(&body);
        insert.execute(params![
            seq,
            record.at_ms,
            record.kind,
            record.job,
            record.principal,
            record.tool,
            record.outcome,
            body,
            hash
        ])?;
        prev.clone_from(&hash);
        last = Some(AuditRow {
            seq,
            at_ms: record.at_ms,
            kind: record.kind.to_string(),
            job: record.job,
            principal: record.principal,
            tool: record.tool,
            outcome: record.outcome,
            body,
            hash,
        });
    }
    last.ok_or_else(|| anyhow::anyhow!("nothing to append"))
}

/// Reads records by `query` on `conn` (also for readers with a connection of their own).
pub fn read(conn: &Connection, query: &AuditQuery) -> Result<Vec<AuditRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM audit WHERE seq > ?1
           AND (?2 IS NULL OR at_ms >= ?2) AND (?3 IS NULL OR at_ms < ?3)
           AND (?4 IS NULL OR job = ?4) AND (?5 IS NULL OR principal = ?5)
           AND (?6 IS NULL OR tool = ?6) AND (?7 IS NULL OR outcome = ?7)
           AND (?8 IS NULL OR kind = ?8)
         ORDER BY seq {} LIMIT ?9",
        if query.newest_first { "DESC" } else { "ASC" }
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement.query_map(
        params![
            query.after,
            query.since_ms,
            query.until_ms,
            query.job,
            query.principal,
            query.tool,
            query.outcome,
            query.kind,
            query.limit
        ],
        row,
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

impl AuditStore for SqliteStore {
    fn audit_append(&self, records: Vec<AuditAppend>) -> Pending<u64> {
        self.run(move |conn| Ok(append(conn, records)?.seq))
    }

    fn audit_checkpoint(&self, sealer: Arc<dyn Sealer>) -> Pending<Option<AuditRow>> {
        self.run(move |conn| {
            let last: Option<(u64, String, String)> = conn
                .prepare_cached("SELECT seq, hash, kind FROM audit ORDER BY seq DESC LIMIT 1")?
                .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            match last {
                Some((seq, hash, kind)) if kind != "checkpoint" => {
                    let at_ms = crate::time::now_ms();
                    let record = sealer.seal("checkpoint", seq, &hash, at_ms);
                    Ok(Some(append(conn, vec![record])?))
                }
                _ => Ok(None),
            }
        })
    }

    fn audit_read(&self, query: AuditQuery) -> Pending<Vec<AuditRow>> {
        self.run(move |conn| read(conn, &query))
    }

    fn audit_prune(&self, before_ms: u64, sealer: Arc<dyn Sealer>) -> Pending<Option<Pruned>> {
        self.run(move |conn| {
            let (tail_seq, _) = tail(conn)?;
            let last: Option<(u64, String)> = conn
                .prepare_cached(
                    "SELECT seq, hash FROM audit WHERE at_ms < ?1 AND seq < ?2
                     ORDER BY seq DESC LIMIT 1",
                )?
                .query_row(params![before_ms, tail_seq], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((up_to, hash)) = last else {
                return Ok(None);
            };
            let removed = conn
                .prepare_cached("DELETE FROM audit WHERE seq <= ?1")?
                .execute(params![up_to])? as u64;
            let marker = sealer.seal("pruned", up_to, &hash, crate::time::now_ms());
            Ok(Some(Pruned {
                removed,
                marker: append(conn, vec![marker])?,
            }))
        })
    }
}
