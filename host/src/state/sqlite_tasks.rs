//! The SQLite backend's task table.

use anyhow::anyhow;
use rusqlite::params;
use serde_json::Value;

use super::Pending;
use super::sqlite::{SqliteStore, json_text, parse};
use super::tasks::{TaskMove, TaskRecord, TaskState, TaskStore};

const COLUMNS: &str = "id, principal, requester, tool, args, transport, approval_id, status, owner, \
     message, result, created_at, updated_at, expires_at";

fn read(
    conn: &rusqlite::Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> anyhow::Result<Vec<TaskRecord>> {
    let mut statement = conn.prepare_cached(sql)?;
    let rows = statement.query_map(args, |r| {
        Ok((
            [
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
            ],
            [
                r.get::<_, Option<String>>(8)?,
                r.get::<_, Option<String>>(9)?,
                r.get::<_, Option<String>>(10)?,
            ],
            [
                r.get::<_, u64>(11)?,
                r.get::<_, u64>(12)?,
                r.get::<_, u64>(13)?,
            ],
        ))
    })?;
    let mut tasks = Vec::new();
    for row in rows {
        let (text, optional, times) = row?;
        let [
            id,
            principal,
            requester,
            tool,
            args,
            transport,
            approval_id,
            status,
        ] = text;
        let [owner, message, result] = optional;
        let state = TaskState::parse(&status)
            .ok_or_else(|| anyhow!("task {id} has an unknown status `{status}`"))?;
        tasks.push(TaskRecord {
            principal,
            requester: parse(&requester, "requester")?,
            tool,
            args: parse(&args, "task arguments")?,
            transport,
            approval_id,
            state,
            owner,
            message,
            result: result
                .map(|r| parse::<Value>(&r, "task result"))
                .transpose()?,
            created_at: times[0],
            updated_at: times[1],
            expires_at: times[2],
            id,
        });
    }
    Ok(tasks)
}

impl TaskStore for SqliteStore {
    fn create_task(&self, t: TaskRecord) -> Pending<()> {
        self.run(move |conn| {
            conn.prepare_cached(&format!(
                "INSERT INTO tasks ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
            ))?
            .execute(params![
                t.id,
                t.principal,
                json_text(&t.requester)?,
                t.tool,
                json_text(&t.args)?,
                t.transport,
                t.approval_id,
                t.state.as_str(),
                t.owner,
                t.message,
                t.result.as_ref().map(json_text).transpose()?,
                t.created_at,
                t.updated_at,
                t.expires_at,
            ])?;
            Ok(())
        })
    }

    fn task(&self, id: String) -> Pending<Option<TaskRecord>> {
        self.run(move |conn| {
            let sql = format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1");
            Ok(read(conn, &sql, params![id])?.pop())
        })
    }

    fn tasks_in(&self, state: TaskState, limit: u32) -> Pending<Vec<TaskRecord>> {
        self.run(move |conn| {
            let sql = format!(
                "SELECT {COLUMNS} FROM tasks WHERE status = ?1 ORDER BY updated_at LIMIT ?2"
            );
            read(conn, &sql, params![state.as_str(), limit])
        })
    }

    fn move_task(&self, id: String, from: TaskState, change: TaskMove) -> Pending<bool> {
        self.run(move |conn| {
            let moved = conn
                .prepare_cached(
                    "UPDATE tasks SET status = ?3, owner = ?4, message = ?5, result = ?6, updated_at = ?7
                     WHERE id = ?1 AND status = ?2",
                )?
                .execute(params![
                    id,
                    from.as_str(),
                    change.to.as_str(),
                    change.owner,
                    change.message,
                    change.result.as_ref().map(json_text).transpose()?,
                    change.now
                ])?;
            Ok(moved == 1)
        })
    }
}
