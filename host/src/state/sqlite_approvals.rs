//! The SQLite backend's approvals and their votes.

use anyhow::{Result, anyhow};
use rusqlite::{Connection, params};

use super::Pending;
use super::approvals::{ApprovalStore, Created};
use super::records::{Approval, ApprovalStatus, Vote};
use super::sqlite::{SqliteStore, json_text, parse};

const APPROVAL_COLUMNS: &str = "id, plan_hash, policy_digest, tool, component, component_digest, \
     principal, environment, args, annotations, requirement, reasons, grants, status, created_at, \
     expires_at";

fn approval_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<[String; 14]> {
    let mut text: [String; 14] = Default::default();
    for (i, slot) in text.iter_mut().enumerate() {
        *slot = row.get(i)?;
    }
    Ok(text)
}

fn read_approvals(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Approval>> {
    let mut statement = conn.prepare_cached(sql)?;
    let rows = statement.query_map(args, |row| {
        Ok((
            approval_row(row)?,
            row.get::<_, u64>(14)?,
            row.get::<_, u64>(15)?,
        ))
    })?;
    let mut approvals = Vec::new();
    for row in rows {
        let (t, created_at, expires_at) = row?;
        let [
            id,
            plan_hash,
            policy_digest,
            tool,
            component,
            component_digest,
            principal,
            environment,
            args,
            annotations,
            requirement,
            reasons,
            grants,
            status,
        ] = t;
        let status = ApprovalStatus::parse(&status)
            .ok_or_else(|| anyhow!("approval {id} has an unknown status `{status}`"))?;
        let votes = votes(conn, &id)?;
        approvals.push(Approval {
            plan_hash,
            policy_digest,
            tool,
            component,
            component_digest,
            principal,
            environment,
            args: parse(&args, "arguments")?,
            annotations: parse(&annotations, "annotations")?,
            requirement: parse(&requirement, "requirement")?,
            reasons: parse(&reasons, "reasons")?,
            grants: parse(&grants, "grants")?,
            status,
            created_at,
            expires_at,
            votes,
            id,
        });
    }
    Ok(approvals)
}

fn votes(conn: &Connection, id: &str) -> Result<Vec<Vote>> {
    let mut statement = conn.prepare_cached(
        "SELECT approver, roles, approve, reason, at, origin FROM approval_votes
         WHERE approval_id = ?1 ORDER BY at, approver",
    )?;
    let rows = statement.query_map(params![id], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, bool>(2)?,
            row.get::<_, Option<String>>(3)?,
            row.get::<_, u64>(4)?,
            row.get::<_, String>(5)?,
        ))
    })?;
    let mut votes = Vec::new();
    for row in rows {
        let (approver, roles, approve, reason, at, origin) = row?;
        votes.push(Vote {
            approver,
            roles: parse(&roles, "approver roles")?,
            approve,
            reason,
            at,
            origin,
        });
    }
    Ok(votes)
}

impl ApprovalStore for SqliteStore {
    fn approval_for(&self, plan_hash: String, policy_digest: String) -> Pending<Option<Approval>> {
        self.run(move |conn| {
            let sql = format!(
                "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE plan_hash = ?1 AND policy_digest = ?2
                 ORDER BY seq DESC LIMIT 1"
            );
            Ok(read_approvals(conn, &sql, params![plan_hash, policy_digest])?.pop())
        })
    }

    fn create_approval(&self, a: Approval, max_pending: u32) -> Pending<Created> {
        self.run(move |conn| {
            let sql = format!(
                "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE plan_hash = ?1 AND policy_digest = ?2
                 AND status IN ('pending', 'approved') AND expires_at > ?3 ORDER BY seq DESC LIMIT 1"
            );
            if let Some(live) =
                read_approvals(conn, &sql, params![a.plan_hash, a.policy_digest, a.created_at])?.pop()
            {
                return Ok(Created::Existing(Box::new(live)));
            }
            let pending: u32 = conn
                .prepare_cached(
                    "SELECT count(*) FROM approvals WHERE principal = ?1 AND status = 'pending' AND expires_at > ?2",
                )?
                .query_row(params![a.principal, a.created_at], |r| r.get(0))?;
            if pending >= max_pending {
                return Ok(Created::TooMany(pending));
            }
            conn.prepare_cached(
                "INSERT INTO approvals (id, plan_hash, policy_digest, tool, component, component_digest,
                   principal, environment, args, annotations, requirement, reasons, grants, status,
                   created_at, expires_at, seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                   (SELECT coalesce(max(seq), 0) + 1 FROM approvals))",
            )?
            .execute(params![
                a.id,
                a.plan_hash,
                a.policy_digest,
                a.tool,
                a.component,
                a.component_digest,
                a.principal,
                a.environment,
                json_text(&a.args)?,
                json_text(&a.annotations)?,
                json_text(&a.requirement)?,
                json_text(&a.reasons)?,
                json_text(&a.grants)?,
                a.status.as_str(),
                a.created_at,
                a.expires_at,
            ])?;
            Ok(Created::New)
        })
    }

    fn approval(&self, id: String) -> Pending<Option<Approval>> {
        self.run(move |conn| {
            let sql = format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = ?1");
            Ok(read_approvals(conn, &sql, params![id])?.pop())
        })
    }

    fn approvals(&self, status: Option<ApprovalStatus>, limit: u32) -> Pending<Vec<Approval>> {
        self.run(move |conn| {
            let sql = format!(
                "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE ?1 IS NULL OR status = ?1
                 ORDER BY seq DESC LIMIT ?2"
            );
            read_approvals(
                conn,
                &sql,
                params![status.map(ApprovalStatus::as_str), limit],
            )
        })
    }

    fn add_vote(&self, id: String, vote: Vote) -> Pending<bool> {
        self.run(move |conn| {
            let added = conn
                .prepare_cached(
                    "INSERT INTO approval_votes (approval_id, approver, roles, approve, reason, at, origin)
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE EXISTS (
                       SELECT 1 FROM approvals WHERE id = ?1 AND status IN ('pending', 'approved') AND expires_at > ?6)
                     ON CONFLICT DO NOTHING",
                )?
                .execute(params![
                    id,
                    vote.approver,
                    json_text(&vote.roles)?,
                    vote.approve,
                    vote.reason,
                    vote.at,
                    vote.origin
                ])?;
            Ok(added == 1)
        })
    }

    fn transition(&self, id: String, from: ApprovalStatus, to: ApprovalStatus) -> Pending<bool> {
        self.run(move |conn| {
            let moved = conn
                .prepare_cached("UPDATE approvals SET status = ?3 WHERE id = ?1 AND status = ?2")?
                .execute(params![id, from.as_str(), to.as_str()])?;
            Ok(moved == 1)
        })
    }
}
