//! The embedded backend: one SQLite file (bundled SQLite, WAL) in the data directory.
//!
//! One connection writes, shared by flat combining ([`super::writer`]): a caller that finds it
//! free commits what is queued on its own thread, one that finds it taken leaves its job to the
//! holder; each job runs in a savepoint of one `BEGIN IMMEDIATE` transaction, and answers go out
//! only after COMMIT. Under load one commit (one WAL write) serves many calls. Other processes
//! (the `portcullis approvals` CLI) open the same file; SQLite serialises writers, and while
//! another holds the lock the writer's own thread waits (`busy_timeout`), never a caller's.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use rusqlite::{Connection, OptionalExtension, params};

use super::records::{Begin, Charge, Exceeded, Intent, Secs, Spans, StoredOutcome, Usage, Windows};
use super::writer::{Chore, Job, Writer};
use super::{Pending, Store, now, schema};

/// How hard a commit is made durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Survives a crash of the gateway (`kill -9`); the last commits can be lost if the machine
    /// loses power. SQLite's `synchronous = NORMAL` in WAL mode.
    #[default]
    Process,
    /// Survives power loss too: every commit waits for the disk (`synchronous = FULL`).
    Machine,
}

/// How often finished records past their retention are deleted.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Bytes of WAL kept on disk between bursts.
const WAL_SIZE_LIMIT: i64 = 64 << 20;

/// The SQLite store: the writing connection's queue ([`Writer`]).
pub struct SqliteStore {
    writer: Arc<Writer>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.writer.stop();
    }
}

fn configure(conn: &Connection, durability: Durability) -> Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let synchronous = match durability {
        Durability::Process => "NORMAL",
        Durability::Machine => "FULL",
    };
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // The writer's thread checkpoints, so that no commit on a caller's thread does.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // After a burst the WAL file is cut back to this when it starts over (it is reused, not
    // regrown, below it: a regrown file costs the kernel a zeroed page per frame).
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating it if needed) `dir/state.sqlite3`, and migrates it.
    pub fn open(dir: &Path, durability: Durability) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
        let path = dir.join("state.sqlite3");
        let mut conn = Connection::open(&path)
            .with_context(|| format!("opening the state database {}", path.display()))?;
        configure(&conn, durability)
            .with_context(|| format!("configuring the state database {}", path.display()))?;
        schema::migrate(&mut conn)
            .with_context(|| format!("migrating the state database {}", path.display()))?;
        Self::start(conn, durability == Durability::Process, Some(path))
    }

    /// A store that lives in memory only (tests).
    pub fn in_memory() -> Result<Self> {
        let mut conn = Connection::open_in_memory()?;
        schema::migrate(&mut conn)?;
        Self::start(conn, true, None)
    }

    fn start(conn: Connection, inline: bool, file: Option<std::path::PathBuf>) -> Result<Self> {
        let chore: Chore = Box::new(|conn| {
            let swept = conn
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(anyhow::Error::from)
                .and_then(|()| sweep(conn, now()))
                .and_then(|()| Ok(conn.execute_batch("COMMIT")?));
            if let Err(e) = swept {
                let _ = conn.execute_batch("ROLLBACK");
                tracing::warn!("state store: sweeping expired records failed: {e:#}");
            }
        });
        let writer = Writer::start(conn, inline, file, (SWEEP_EVERY, chore))
            .context("starting the state store's thread")?;
        Ok(Self { writer })
    }

    /// Runs `op` in the next transaction; the answer comes once that transaction committed.
    pub(super) fn run<T, F>(&self, op: F) -> Pending<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |conn| {
            let result = in_savepoint(conn, op);
            Box::new(move |committed| {
                let answer = match committed {
                    Ok(()) => result,
                    Err(e) => Err(anyhow!("the state store could not commit: {e}")),
                };
                let _ = tx.send(answer);
            })
        });
        self.writer.submit(job);
        Box::pin(async move {
            rx.await
                .map_err(|_| anyhow!("the state store failed (see the gateway log)"))?
        })
    }
}

/// Runs `op` in a savepoint: its changes are undone if it fails, whatever the others do.
fn in_savepoint<T>(conn: &Connection, op: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.execute_batch("SAVEPOINT op")?;
    let result = op(conn);
    let end = if result.is_ok() {
        "RELEASE op"
    } else {
        "ROLLBACK TO op; RELEASE op"
    };
    conn.execute_batch(end)?;
    result
}

/// Deletes what is past its retention: finished idempotency records, old windows and usage.
fn sweep(conn: &Connection, now: Secs) -> Result<()> {
    conn.execute(
        "DELETE FROM idempotency WHERE expires_at <= ?1 AND status != 'running'",
        params![now],
    )?;
    conn.execute(
        "DELETE FROM counters WHERE window_start + window_s < ?1",
        params![now],
    )?;
    conn.execute(
        "DELETE FROM usage WHERE minute < ?1",
        params![(now / 60).saturating_sub(24 * 60)],
    )?;
    conn.execute(
        "DELETE FROM tasks WHERE expires_at <= ?1 AND status IN ('completed', 'failed', 'cancelled')",
        params![now],
    )?;
    Ok(())
}

pub fn window_start(now: Secs, window_s: u64) -> Secs {
    now - now % window_s.max(1)
}

fn used(conn: &Connection, charge: &Charge, start: Secs) -> Result<u64> {
    let used: Option<u64> = conn
        .prepare_cached(
            "SELECT used FROM counters WHERE key = ?1 AND window_s = ?2 AND window_start = ?3",
        )?
        .query_row(params![charge.key, charge.window_s, start], |r| r.get(0))
        .optional()?;
    Ok(used.unwrap_or(0))
}

fn add(conn: &Connection, charge: &Charge, start: Secs, cost: u64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO counters (key, window_s, window_start, used) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT DO UPDATE SET used = used + excluded.used",
    )?
    .execute(params![charge.key, charge.window_s, start, cost])?;
    Ok(())
}

pub fn exceeded(charge: &Charge, used: u64, start: Secs) -> Exceeded {
    Exceeded {
        key: charge.key.clone(),
        max: charge.max,
        window_s: charge.window_s,
        used,
        resets_at: start + charge.window_s.max(1),
    }
}

pub(super) fn json_text(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value).context("encoding a record")
}

pub(super) fn parse<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).with_context(|| format!("the stored {what} is not readable"))
}

impl Store for SqliteStore {
    fn begin(&self, intent: Intent) -> Pending<Begin> {
        self.run(move |conn| {
            let found: Option<(String, String, String, Option<String>, u64, u64)> = conn
                .prepare_cached(
                    "SELECT plan_hash, status, owner, outcome, updated_at, expires_at
                     FROM idempotency WHERE principal = ?1 AND key = ?2",
                )?
                .query_row(params![intent.principal, intent.key], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                })
                .optional()?;
            match found {
                Some((plan_hash, status, owner, outcome, updated_at, expires_at))
                    if expires_at > intent.now || status == "running" =>
                {
                    if plan_hash != intent.plan_hash {
                        return Ok(Begin::Conflict { plan_hash });
                    }
                    match (status.as_str(), outcome) {
                        ("done", Some(outcome)) => Ok(Begin::Done(parse(&outcome, "outcome")?)),
                        ("running", _) => Ok(Begin::Running {
                            owner,
                            since: updated_at,
                        }),
                        _ => Ok(Begin::InDoubt { since: updated_at }),
                    }
                }
                _ => {
                    conn.prepare_cached(
                        "INSERT OR REPLACE INTO idempotency
                         (principal, key, plan_hash, status, owner, outcome, created_at, updated_at, expires_at)
                         VALUES (?1, ?2, ?3, 'running', ?4, NULL, ?5, ?5, ?6)",
                    )?
                    .execute(params![
                        intent.principal,
                        intent.key,
                        intent.plan_hash,
                        intent.owner,
                        intent.now,
                        intent.expires_at
                    ])?;
                    Ok(Begin::Fresh)
                }
            }
        })
    }

    fn abandon(&self, principal: String, key: String, owner: String, now: Secs) -> Pending<()> {
        self.run(move |conn| {
            conn.prepare_cached(
                "UPDATE idempotency SET status = 'in_doubt', expires_at = ?4 + (expires_at - created_at)
                 WHERE principal = ?1 AND key = ?2 AND owner = ?3 AND status = 'running'",
            )?
            .execute(params![principal, key, owner, now])?;
            Ok(())
        })
    }

    fn finish(
        &self,
        principal: String,
        key: String,
        owner: String,
        outcome: StoredOutcome,
    ) -> Pending<()> {
        self.run(move |conn| {
            conn.prepare_cached(
                "UPDATE idempotency SET status = 'done', outcome = ?4, updated_at = ?5,
                   expires_at = ?5 + (expires_at - created_at)
                 WHERE principal = ?1 AND key = ?2 AND owner = ?3 AND status = 'running'",
            )?
            .execute(params![
                principal,
                key,
                owner,
                json_text(&outcome)?,
                outcome.finished_at
            ])?;
            Ok(())
        })
    }

    fn release(&self, principal: String, key: String, owner: String) -> Pending<()> {
        self.run(move |conn| {
            conn.prepare_cached(
                "DELETE FROM idempotency
                 WHERE principal = ?1 AND key = ?2 AND owner = ?3 AND status = 'running'",
            )?
            .execute(params![principal, key, owner])?;
            Ok(())
        })
    }

    fn charge(&self, charges: Vec<Charge>, now: Secs) -> Pending<Result<(), Exceeded>> {
        self.run(move |conn| {
            for charge in &charges {
                let start = window_start(now, charge.window_s);
                let used = used(conn, charge, start)?;
                if used.saturating_add(charge.cost) > charge.max {
                    return Ok(Err(exceeded(charge, used, start)));
                }
            }
            for charge in &charges {
                add(
                    conn,
                    charge,
                    window_start(now, charge.window_s),
                    charge.cost,
                )?;
            }
            Ok(Ok(()))
        })
    }

    fn used(&self, charges: Vec<Charge>, now: Secs) -> Pending<Vec<u64>> {
        self.run(move |conn| {
            charges
                .iter()
                .map(|charge| used(conn, charge, window_start(now, charge.window_s)))
                .collect()
        })
    }

    fn record_run(
        &self,
        principal: String,
        tool: String,
        fuel: u64,
        charges: Vec<Charge>,
        now: Secs,
    ) -> Pending<()> {
        self.run(move |conn| {
            conn.prepare_cached(
                "INSERT INTO usage (principal, tool, minute, calls, fuel) VALUES (?1, ?2, ?3, 1, ?4)
                 ON CONFLICT DO UPDATE SET calls = calls + 1, fuel = fuel + excluded.fuel",
            )?
            .execute(params![principal, tool, now / 60, fuel])?;
            for charge in &charges {
                add(conn, charge, window_start(now, charge.window_s), fuel)?;
            }
            Ok(())
        })
    }

    fn flush(&self) -> Pending<()> {
        self.run(|_| Ok(()))
    }

    fn usage(&self, principal: String, tool: String, now: Secs) -> Pending<Usage> {
        self.run(move |conn| {
            let minute = now / 60;
            let (hour, day) = (minute.saturating_sub(59), minute.saturating_sub(24 * 60 - 1));
            let sums: [u64; 12] = conn
                .prepare_cached(
                    "SELECT
                       total(CASE WHEN minute >= ?3 THEN calls END), total(CASE WHEN minute >= ?4 THEN calls END), total(calls),
                       total(CASE WHEN minute >= ?3 THEN fuel END), total(CASE WHEN minute >= ?4 THEN fuel END), total(fuel),
                       total(CASE WHEN tool = ?2 AND minute >= ?3 THEN calls END), total(CASE WHEN tool = ?2 AND minute >= ?4 THEN calls END), total(CASE WHEN tool = ?2 THEN calls END),
                       total(CASE WHEN tool = ?2 AND minute >= ?3 THEN fuel END), total(CASE WHEN tool = ?2 AND minute >= ?4 THEN fuel END), total(CASE WHEN tool = ?2 THEN fuel END)
                     FROM usage WHERE principal = ?1 AND minute >= ?5",
                )?
                .query_row(params![principal, tool, minute, hour, day], |r| {
                    let mut sums = [0u64; 12];
                    for (i, sum) in sums.iter_mut().enumerate() {
                        *sum = r.get::<_, f64>(i)? as u64;
                    }
                    Ok(sums)
                })?;
            let spans = |i: usize| Spans {
                minute: sums[i],
                hour: sums[i + 1],
                day: sums[i + 2],
            };
            Ok(Usage {
                principal: Windows {
                    calls: spans(0),
                    fuel: spans(3),
                },
                tool: Windows {
                    calls: spans(6),
                    fuel: spans(9),
                },
            })
        })
    }
}
