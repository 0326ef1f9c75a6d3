//! Admission: how many instances run at once, how many of them one principal may hold, and how
//! much guest memory they may reserve together.
//!
//! A call waits at most [`Admission::wait`] for room, then gets a clear "busy, retry" error.
//! Fairness comes from two levels of FIFO semaphores: a principal first takes one of its own
//! `max_per_principal` permits, and only then queues for a shared slot, so one principal can
//! never hold (or queue for) more than its share while others wait. Memory is reserved in
//! whole MiB at the call's own memory ceiling (all of its linear memories together, see the
//! limiter), taken at once or refused, so the sum of what running guests may grow to never
//! exceeds `max_total_memory` and a large call never makes smaller ones queue behind it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::grants::{MIB, show_bytes};

/// Admission settings (see `[limits]` in the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission {
    /// Instances running at once.
    pub max_concurrent: u32,
    /// Of those, how many one principal may hold.
    pub max_per_principal: u32,
    /// The sum of the memory ceilings of running calls, in bytes.
    pub max_total_memory: u64,
    /// How long a call may wait for room before it is refused as busy.
    pub wait: Duration,
}

impl Admission {
    /// Defaults from the machine: four instances per core (guests yield at every epoch tick,
    /// so more instances than cores still share the cores fairly), half of them per principal,
    /// 64 MiB of guest memory each.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let max_concurrent = u32::try_from(cores.saturating_mul(4).clamp(4, 256)).unwrap_or(8);
        Self {
            max_concurrent,
            max_per_principal: (max_concurrent / 2).max(1),
            max_total_memory: u64::from(max_concurrent) * 64 * MIB,
            wait: Duration::from_secs(1),
        }
    }
}

/// Proof that a call was admitted; room is given back when it is dropped.
pub struct Ticket {
    _principal: Option<OwnedSemaphorePermit>,
    _slot: OwnedSemaphorePermit,
    _memory: Option<OwnedSemaphorePermit>,
}

/// Why a call was not admitted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("busy: {0}; try again shortly")]
pub struct Busy(pub String);

/// The admission controller shared by every call.
pub struct Admitter {
    settings: Admission,
    slots: Arc<Semaphore>,
    /// Free guest memory, one permit per MiB.
    memory: Arc<Semaphore>,
    principals: PerKey,
}

/// Keys remembered before idle ones are forgotten.
const MAX_REMEMBERED: usize = 4096;

/// A FIFO semaphore of `limit` permits per key (a principal), created on first use; keys with
/// nothing running or queued are forgotten once many are remembered.
pub struct PerKey {
    limit: usize,
    map: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl PerKey {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The permits of `key`.
    pub fn permits(&self, key: &str) -> Arc<Semaphore> {
        let Ok(mut map) = self.map.lock() else {
            // A poisoned map only loses the per-key share; global bounds still hold.
            return Arc::new(Semaphore::new(self.limit));
        };
        if map.len() >= MAX_REMEMBERED {
            // Only the map holds a key with nothing running or queued.
            map.retain(|_, permits| Arc::strong_count(permits) > 1);
        }
        map.entry(key.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.limit)))
            .clone()
    }
}

fn mib(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(MIB)).unwrap_or(u32::MAX)
}

impl Admitter {
    pub fn new(settings: Admission) -> Self {
        Self {
            settings,
            slots: Arc::new(Semaphore::new(settings.max_concurrent as usize)),
            memory: Arc::new(Semaphore::new(mib(settings.max_total_memory) as usize)),
            principals: PerKey::new(settings.max_per_principal as usize),
        }
    }

    /// Waits (at most the configured time) for room for one call of `principal` whose guest
    /// may grow to `memory_bytes`.
    pub async fn admit(&self, principal: &str, memory_bytes: u64) -> Result<Ticket, Busy> {
        let wanted = mib(memory_bytes);
        if u64::from(wanted) * MIB > self.settings.max_total_memory {
            return Err(Busy(format!(
                "the call's memory limit of {} is more than the gateway's total guest memory of {}",
                show_bytes(memory_bytes),
                show_bytes(self.settings.max_total_memory)
            )));
        }
        let own = self.principals.permits(principal);
        let wait = self.settings.wait;
        let queue = async {
            let principal = own.acquire_owned().await.ok();
            let slot = self.slots.clone().acquire_owned().await.ok()?;
            Some((principal, slot))
        };
        match tokio::time::timeout(wait, queue).await {
            Ok(Some((principal, slot))) => {
                // Memory is taken now or not at all: a FIFO wait for many MiB would make every
                // smaller call behind it wait too, whoever it belongs to.
                let memory = self
                    .memory
                    .clone()
                    .try_acquire_many_owned(wanted)
                    .map_err(|_| {
                        Busy(format!(
                            "not enough guest memory free for the call's limit of {} ({} in all)",
                            show_bytes(memory_bytes),
                            show_bytes(self.settings.max_total_memory)
                        ))
                    })?;
                Ok(Ticket {
                    _principal: principal,
                    _slot: slot,
                    _memory: Some(memory),
                })
            }
            _ => Err(Busy(format!(
                "no room within {} ms ({} calls may run at once, {} per principal, {} of guest memory in all)",
                wait.as_millis(),
                self.settings.max_concurrent,
                self.settings.max_per_principal,
                show_bytes(self.settings.max_total_memory)
            ))),
        }
    }

    /// Admits one call now or not at all, outside any principal's share (the CLI, tests).
    pub fn admit_now(&self, memory_bytes: u64) -> Result<Ticket, Busy> {
        let busy = || {
            Busy(format!(
                "{} calls are already running",
                self.settings.max_concurrent
            ))
        };
        let slot = self.slots.clone().try_acquire_owned().map_err(|_| busy())?;
        let memory = self
            .memory
            .clone()
            .try_acquire_many_owned(mib(memory_bytes))
            .map_err(|_| busy())?;
        Ok(Ticket {
            _principal: None,
            _slot: slot,
            _memory: Some(memory),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Admission {
        Admission {
            max_concurrent: 4,
            max_per_principal: 2,
            max_total_memory: 256 * MIB,
            wait: Duration::from_millis(100),
        }
    }

    #[tokio::test]
    async fn one_principal_cannot_take_every_slot() {
        let admitter = Admitter::new(settings());
        let a1 = admitter.admit("a", MIB).await.unwrap();
        let _a2 = admitter.admit("a", MIB).await.unwrap();
        let busy = admitter.admit("a", MIB).await.err().unwrap();
        assert!(busy.to_string().contains("2 per principal"), "{busy}");
        // Another principal still gets in at once.
        let _b = admitter.admit("b", MIB).await.unwrap();
        drop(a1);
        assert!(admitter.admit("a", MIB).await.is_ok());
    }

    #[tokio::test]
    async fn total_guest_memory_is_bounded() {
        let admitter = Admitter::new(settings());
        let _big = admitter.admit("a", 200 * MIB).await.unwrap();
        assert!(admitter.admit("b", 64 * MIB).await.is_err());
        assert!(admitter.admit("b", 56 * MIB).await.is_ok());
        let too_big = admitter.admit("c", 300 * MIB).await.err().unwrap();
        assert!(
            too_big
                .to_string()
                .contains("more than the gateway's total"),
            "{too_big}"
        );
    }
}
