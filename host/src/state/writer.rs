//! The store's one writing connection, shared by flat combining.
//!
//! A caller queues its job and, if the connection is free, takes it and commits everything
//! queued — its own job and any that arrived meanwhile — in one transaction, on its own thread:
//! no hop to another thread and back, which costs more than the commit itself. A caller that
//! finds the connection taken leaves its job to whoever holds it: the holder looks at the queue
//! again after it lets go, so no job is stranded, and under load one commit serves many calls
//! (group commit). Each job runs in a savepoint; answers go out only after COMMIT.
//!
//! Nothing slow runs on a caller's thread: a caller never waits for the database lock (another
//! process holding it, e.g. the CLI, makes `BEGIN` fail at once), and then the writer's own
//! thread takes over, waits with `busy_timeout`, and commits the queue, while callers keep
//! queueing. That thread also sweeps expired records and checkpoints the WAL (with a second
//! connection, so writers are not held up); with `durability = "machine"`, where every commit
//! waits for the disk, it commits everything.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode};

pub(super) type Deliver = Box<dyn FnOnce(Result<(), String>) + Send>;
pub(super) type Job = Box<dyn FnOnce(&Connection) -> Deliver + Send>;

/// The most jobs one transaction takes.
const MAX_GROUP: usize = 512;
/// How long the writer's thread waits for the database lock.
const PATIENCE: Duration = Duration::from_secs(5);
/// How often the writer's thread looks for work to sweep, and checkpoints an idle WAL.
const TICK: Duration = Duration::from_secs(1);
/// How often it checkpoints while commits keep coming: this bounds the WAL to about this much
/// of the write rate (the file is reused from its start after each complete checkpoint).
const BUSY_TICK: Duration = Duration::from_millis(100);

struct Queue {
    jobs: VecDeque<Job>,
    /// The writer's thread commits the queue (the database was busy, or commits are slow):
    /// callers only queue. Cleared by the thread with the queue locked, before it drains.
    handoff: bool,
    stopping: bool,
}

/// Maintenance the writer's thread runs on the connection now and then.
pub(super) type Chore = Box<dyn Fn(&Connection) + Send + Sync>;

pub(super) struct Writer {
    conn: Mutex<Connection>,
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Callers commit on their own threads (else the writer's thread commits everything).
    inline: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

impl Writer {
    /// Starts the writer for `conn`; `file` (for a WAL checkpoint connection) and `chore`
    /// (run about every `every`) are for the writer's thread.
    pub(super) fn start(
        conn: Connection,
        inline: bool,
        file: Option<PathBuf>,
        chore: (Duration, Chore),
    ) -> std::io::Result<Arc<Self>> {
        let writer = Arc::new(Self {
            conn: Mutex::new(conn),
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                handoff: false,
                stopping: false,
            }),
            wake: Condvar::new(),
            inline,
        });
        let thread = writer.clone();
        std::thread::Builder::new()
            .name("portcullis-state".into())
            .spawn(move || thread.serve(file, chore))?;
        Ok(writer)
    }

    /// Queues `job`, and commits the queue now if the connection is free.
    pub(super) fn submit(&self, job: Job) {
        let handoff = {
            let mut queue = lock(&self.queue);
            queue.jobs.push_back(job);
            queue.handoff |= !self.inline;
            queue.handoff
        };
        if handoff {
            self.wake.notify_one();
            return;
        }
        loop {
            let Ok(conn) = self.conn.try_lock() else {
                return; // the holder sees this job when it lets go
            };
            if !self.drain(&conn, false) {
                lock(&self.queue).handoff = true;
                self.wake.notify_one();
                return;
            }
            drop(conn);
            let queue = lock(&self.queue);
            if queue.jobs.is_empty() || queue.handoff {
                return;
            }
        }
    }

    /// Tells the writer's thread to commit what is queued and stop.
    pub(super) fn stop(&self) {
        lock(&self.queue).stopping = true;
        self.wake.notify_one();
    }

    /// Commits the queue, group by group, until it is empty: `false` (the group back in the
    /// queue) if the database was busy and `patient` is not set.
    fn drain(&self, conn: &Connection, patient: bool) -> bool {
        let _ = conn.busy_timeout(if patient { PATIENCE } else { Duration::ZERO });
        loop {
            let group: Vec<Job> = {
                let mut queue = lock(&self.queue);
                let n = queue.jobs.len().min(MAX_GROUP);
                queue.jobs.drain(..n).collect()
            };
            if group.is_empty() {
                return true;
            }
            if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
                if !patient && busy(&e) {
                    let mut queue = lock(&self.queue);
                    for job in group.into_iter().rev() {
                        queue.jobs.push_front(job);
                    }
                    return false;
                }
                tracing::error!("state store: cannot begin a transaction: {e}");
                continue; // dropping the jobs answers each caller with an error
            }
            commit(conn, group);
        }
    }

    /// The writer's thread: takes over when asked, and does the chores.
    fn serve(&self, file: Option<PathBuf>, (every, chore): (Duration, Chore)) {
        let checkpointer = file.and_then(|path| Connection::open(path).ok());
        let mut chored = Instant::now();
        // The first look comes soon: a burst right after start is bounded like any other.
        let (mut tick, mut frames) = (BUSY_TICK, None);
        loop {
            let (handoff, stopping) = {
                let queue = lock(&self.queue);
                let (queue, _) = self
                    .wake
                    .wait_timeout_while(queue, tick, |q| !q.handoff && !q.stopping)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                (queue.handoff, queue.stopping)
            };
            let due = chored.elapsed() >= every;
            if handoff || stopping || due {
                self.holding(|conn| {
                    if due && !stopping {
                        chored = Instant::now();
                        chore(conn);
                    }
                    lock(&self.queue).handoff = false;
                });
            }
            if stopping {
                return;
            }
            if let Some(checkpointer) = &checkpointer {
                // The WAL's frame count moves only with commits (or its restart).
                let now = self.checkpoint(checkpointer, frames);
                tick = if now.is_some() && now != frames {
                    BUSY_TICK
                } else {
                    TICK
                };
                frames = now;
            }
        }
    }

    /// Runs `f` with the writing connection held, then commits what was queued meanwhile
    /// (callers that found the connection taken left their jobs to this holder).
    fn holding(&self, f: impl FnOnce(&Connection)) {
        let conn = lock(&self.conn);
        f(&conn);
        self.drain(&conn, true);
        drop(conn);
        while !lock(&self.queue).jobs.is_empty() {
            let conn = lock(&self.conn);
            self.drain(&conn, true);
        }
    }

    /// Copies the WAL into the database; the frames it holds, if it could tell. `last` is what
    /// the previous call returned.
    ///
    /// The copy runs on the second connection while writers go on. SQLite starts the WAL over
    /// only at a commit that finds every frame copied, which never happens while commits keep
    /// landing during the copy, and then the file grows by every commit for as long as the load
    /// lasts (a gigabyte a minute on a busy gateway, each new page zeroed by the kernel). So
    /// when commits landed since the last look, what landed during the copy is copied again
    /// with the writing connection held, which is short, and the next commit starts over.
    fn checkpoint(&self, checkpointer: &Connection, last: Option<i64>) -> Option<i64> {
        let copy =
            |conn: &Connection| match conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1))
            {
                Ok(frames) => Some(frames),
                Err(e) => {
                    tracing::debug!("state store: WAL checkpoint: {e}");
                    None
                }
            };
        let frames = copy(checkpointer)?;
        if frames == 0 || Some(frames) == last {
            return Some(frames);
        }
        let mut rest = None;
        self.holding(|conn| rest = copy(conn));
        rest
    }
}

/// Runs `group` (inside a begun transaction), commits, then answers each job.
fn commit(conn: &Connection, group: Vec<Job>) {
    let mut deliveries: Vec<Deliver> = Vec::with_capacity(group.len());
    let mut jobs = group.into_iter();
    for job in jobs.by_ref() {
        deliveries.push(job(conn));
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (disk full, I/O error): nothing of this
            // group is committed, and the rest must not run outside a transaction.
            break;
        }
    }
    let lost = conn.is_autocommit();
    drop(jobs); // the jobs not run answer their callers with an error
    let committed = if lost {
        Err("the transaction was rolled back by SQLite".to_string())
    } else {
        conn.execute_batch("COMMIT").map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            e.to_string()
        })
    };
    if let Err(e) = &committed {
        tracing::error!("state store: commit failed: {e}");
    }
    for deliver in deliveries {
        deliver(committed.clone());
    }
}
