//! Graceful shutdown: on SIGTERM or SIGINT the HTTP front door stops taking requests (503
//! "shutting down", `Connection: close`, so a load balancer sends the next one elsewhere) while
//! the requests already in flight finish and are answered, up to a grace period; then the
//! audit trail is sealed and the process exits. Process-wide, as the signal is.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static DRAINING: AtomicBool = AtomicBool::new(false);
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
/// Wakes what waits for shutdown (long-lived streams, which end rather than hold it up).
static DRAIN_STARTED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// A request in flight; dropping it ends it.
pub struct InFlight(());

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Marks a request in flight, or `None` once the gateway is shutting down.
pub fn enter() -> Option<InFlight> {
    IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
    let guard = InFlight(());
    // Checked after counting: a request that counted itself before `drain` looked at the
    // count is waited for, and one counted after sees the flag.
    if DRAINING.load(Ordering::SeqCst) {
        return None;
    }
    Some(guard)
}

/// Stops new requests and waits up to `grace` for those in flight; how many were left.
pub async fn drain(grace: Duration) -> usize {
    DRAINING.store(true, Ordering::SeqCst);
    DRAIN_STARTED.notify_waiters();
    let started = Instant::now();
    loop {
        let left = IN_FLIGHT.load(Ordering::SeqCst);
        if left == 0 || started.elapsed() >= grace {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Returns once the gateway has begun shutting down.
pub async fn draining() {
    let started = DRAIN_STARTED.notified();
    // Registered before looking at the flag: a drain in between still wakes this.
    tokio::pin!(started);
    started.as_mut().enable();
    if DRAINING.load(Ordering::SeqCst) {
        return;
    }
    started.await;
}
