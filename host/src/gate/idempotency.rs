//! The idempotency stage: one key, one execution.
//!
//! A key is scoped to its principal and stored with the plan hash: the same key and plan after
//! a run returns the stored outcome and runs nothing; the same key with another plan is a
//! conflict. The intent is durable before the run starts, so a run a crash interrupted is
//! reported in doubt on retry, never re-run. Concurrent duplicates in this process wait for the
//! first one's outcome (a watch channel per key in flight) instead of polling the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::state::{Begin, Intent, Lease, Store, StoredOutcome, now};

use super::GateError;

/// The longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 200;

/// Checks a key the agent sent: 1 to 200 printable ASCII characters.
pub fn check_key(key: &str) -> Result<(), GateError> {
    let printable = key.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if key.is_empty() || key.len() > MAX_KEY_BYTES || !printable {
        return Err(GateError::BadKey(format!(
            "the idempotency key must be 1 to {MAX_KEY_BYTES} printable ASCII characters without spaces"
        )));
    }
    Ok(())
}

/// Where a key in flight in this process stands.
#[derive(Clone, Debug)]
enum Slot {
    Running,
    Done(Arc<StoredOutcome>),
    /// The plan did not run (denied, pending, over a limit): waiters start over.
    Released,
}

/// Per key in flight: the plan running under it, and its watchers.
type Keys = HashMap<(String, String), (String, watch::Sender<Slot>)>;

/// The keys in flight in this process.
#[derive(Default)]
pub struct InFlight {
    keys: Mutex<Keys>,
}

/// What beginning a keyed call found.
pub enum Started {
    /// This call runs the plan; report its outcome through the guard.
    Owner(KeyGuard),
    /// The plan already ran under this key.
    Replay(Arc<StoredOutcome>),
}

/// The right to run the plan under a key. Dropped without [`KeyGuard::finish`], the intent is
/// released (the plan did not run); after [`KeyGuard::started`], it is marked in doubt instead.
pub struct KeyGuard {
    store: Arc<dyn Store>,
    inflight: Arc<InFlight>,
    principal: String,
    key: String,
    /// This process's owner id: the store only changes records this process owns.
    owner: String,
    /// The store holds this call's intent.
    armed: bool,
    started: bool,
    done: bool,
}

impl KeyGuard {
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The run is about to start: from here on a lost outcome means "in doubt".
    pub fn started(&mut self) {
        self.started = true;
    }

    /// The run ended without an outcome to keep (it stopped at a question the client answers
    /// in a later round): the key is free again.
    pub fn release(mut self) {
        self.started = false;
    }

    /// Records the outcome, then wakes the waiters. The record is queued to the store before
    /// anyone is woken, so every later look at the key (here or in another process) finds it;
    /// its commit is not waited for: if the gateway dies before it, a repeat is told "in doubt"
    /// (never run again), which is what the durable intent guarantees.
    pub fn finish(mut self, outcome: StoredOutcome) {
        self.done = true;
        let outcome = Arc::new(outcome);
        let stored = self.store.finish(
            self.principal.clone(),
            self.key.clone(),
            self.owner.clone(),
            (*outcome).clone(),
        );
        self.settle(Slot::Done(outcome));
        tokio::spawn(async move {
            if let Err(e) = stored.await {
                tracing::error!("recording the outcome of a keyed call failed: {e:#}");
            }
        });
    }

    fn settle(&self, slot: Slot) {
        let mut keys = self.inflight.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, tx)) = keys.remove(&(self.principal.clone(), self.key.clone())) {
            tx.send_replace(slot);
        }
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.settle(Slot::Released);
        if !self.armed {
            // Dropped while the intent was being recorded: if the store recorded it, it stays
            // "running" for this process, which then reports the key in doubt (never a re-run).
            return;
        }
        let (principal, key) = (self.principal.clone(), self.key.clone());
        if self.started {
            // The run began and its outcome is lost (the call was cancelled mid-run): the
            // record stays "running" for this process, which reports it in doubt from now on.
            tracing::warn!(principal = %principal, "a keyed call stopped mid-run; its key is in doubt");
            return;
        }
        let release = self.store.release(principal, key, self.owner.clone());
        tokio::spawn(async move {
            if let Err(e) = release.await {
                tracing::warn!("releasing an idempotency key failed: {e:#}");
            }
        });
    }
}

impl InFlight {
    /// Begins a call under `key`: the owner runs it; a duplicate waits for the owner's outcome,
    /// or gets the stored one. A duplicate of a run in another live process polls the store
    /// until that run is recorded (for up to `wait`).
    #[allow(clippy::too_many_arguments)]
    pub async fn begin(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        lease: &Lease,
        wait: std::time::Duration,
        principal: &str,
        key: &str,
        plan_hash: &str,
        retention_s: u64,
    ) -> Result<Started, GateError> {
        let id = (principal.to_string(), key.to_string());
        let owner = lease.id();
        let deadline = tokio::time::Instant::now() + wait;
        // A duplicate whose owner did not run the plan starts over, until the deadline.
        while tokio::time::Instant::now() < deadline {
            let waiting = {
                let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
                match keys.get(&id) {
                    // Another plan runs under this key here: that is a conflict, not a wait.
                    Some((theirs, _)) if theirs != plan_hash => {
                        return Err(GateError::KeyConflict {
                            key: key.to_string(),
                            plan_hash: theirs.clone(),
                        });
                    }
                    Some((_, tx)) => Some(tx.subscribe()),
                    None => {
                        let tx = watch::Sender::new(Slot::Running);
                        keys.insert(id.clone(), (plan_hash.to_string(), tx));
                        None
                    }
                }
            };
            if let Some(mut rx) = waiting {
                let slot = rx
                    .wait_for(|slot| !matches!(slot, Slot::Running))
                    .await
                    .map(|slot| slot.clone())
                    .unwrap_or(Slot::Released);
                match slot {
                    Slot::Done(outcome) => return Ok(Started::Replay(outcome)),
                    _ => continue,
                }
            }
            let mut guard = KeyGuard {
                store: store.clone(),
                inflight: self.clone(),
                principal: principal.to_string(),
                key: key.to_string(),
                owner: owner.to_string(),
                armed: false,
                started: false,
                done: false,
            };
            let at = now();
            let intent = Intent {
                principal: principal.to_string(),
                key: key.to_string(),
                plan_hash: plan_hash.to_string(),
                owner: owner.to_string(),
                now: at,
                expires_at: at.saturating_add(retention_s),
            };
            let begun = store.begin(intent).await;
            if matches!(begun, Ok(Begin::Fresh)) {
                guard.armed = true;
                return Ok(Started::Owner(guard));
            }
            // The store holds no intent of ours: settle the waiters with what it said.
            guard.done = true;
            let (slot, result) = match begun {
                Ok(Begin::Done(outcome)) => {
                    let outcome = Arc::new(outcome);
                    (Slot::Done(outcome.clone()), Ok(Started::Replay(outcome)))
                }
                Ok(Begin::Conflict { plan_hash: theirs }) => (
                    Slot::Released,
                    Err(GateError::KeyConflict {
                        key: key.to_string(),
                        plan_hash: theirs,
                    }),
                ),
                Ok(Begin::InDoubt { since }) => (
                    Slot::Released,
                    Err(GateError::InDoubt {
                        key: key.to_string(),
                        since,
                    }),
                ),
                // Another process runs it and is alive: look again shortly.
                Ok(Begin::Running { owner: theirs, .. })
                    if theirs != owner && lease.alive(&theirs) =>
                {
                    guard.settle(Slot::Released);
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
                // Its process died mid-run: in doubt, for good.
                Ok(Begin::Running {
                    owner: theirs,
                    since,
                }) if theirs != owner => {
                    if let Err(e) = store
                        .abandon(principal.to_string(), key.to_string(), theirs, now())
                        .await
                    {
                        tracing::warn!("marking an interrupted run in doubt failed: {e:#}");
                    }
                    (
                        Slot::Released,
                        Err(GateError::InDoubt {
                            key: key.to_string(),
                            since,
                        }),
                    )
                }
                // Running under this process's id with nobody waiting on it here: an earlier
                // run in this process lost its outcome.
                Ok(Begin::Running { .. } | Begin::Fresh) => (
                    Slot::Released,
                    Err(GateError::InDoubt {
                        key: key.to_string(),
                        since: at,
                    }),
                ),
                Err(e) => (Slot::Released, Err(GateError::State(format!("{e:#}")))),
            };
            guard.settle(slot);
            return result;
        }
        Err(GateError::State(format!(
            "the call under idempotency key `{key}` is still running elsewhere; retry later"
        )))
    }
}
