//! Fuel budgets on the call path without a store round trip per call.
//!
//! A budget is checked before every call it covers (the default policy gives every principal
//! one), and a round trip to the store's thread costs more than the call itself on a small
//! machine (docs/perf.md). So this process keeps what it knows of each budget window: loaded
//! from the store on first use and at most [`REFRESH`] old, and counting this process's own
//! charges as they are queued. The store stays the record (every charge goes there, in order);
//! other processes sharing the store are seen within [`REFRESH`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::state::sqlite::{exceeded, window_start};
use crate::state::{Charge, Exceeded, Secs, Store};

/// How stale this process's view of a window may be.
pub const REFRESH: Duration = Duration::from_secs(1);

#[derive(Clone, Copy)]
struct Window {
    start: Secs,
    used: u64,
    loaded: Instant,
}

/// This process's view of the fuel budgets it has checked.
#[derive(Default)]
pub struct Budgets {
    windows: Mutex<HashMap<(String, u64), Window>>,
}

impl Budgets {
    /// The first budget of `charges` whose window is used up, reading the store only for
    /// windows not seen in the last [`REFRESH`].
    pub async fn exhausted(
        &self,
        store: &dyn Store,
        charges: &[Charge],
        now: Secs,
    ) -> anyhow::Result<Option<Exceeded>> {
        let stale: Vec<Charge> = {
            let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
            charges
                .iter()
                .filter(|c| {
                    windows.get(&(c.key.clone(), c.window_s)).is_none_or(|w| {
                        w.start != window_start(now, c.window_s) || w.loaded.elapsed() > REFRESH
                    })
                })
                .cloned()
                .collect()
        };
        if !stale.is_empty() {
            let used = store.used(stale.clone(), now).await?;
            let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
            for (charge, used) in stale.iter().zip(used) {
                windows.insert(
                    (charge.key.clone(), charge.window_s),
                    Window {
                        start: window_start(now, charge.window_s),
                        used,
                        loaded: Instant::now(),
                    },
                );
            }
        }
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        Ok(charges.iter().find_map(|c| {
            let w = windows.get(&(c.key.clone(), c.window_s))?;
            (w.used >= c.max).then(|| exceeded(c, w.used, w.start))
        }))
    }

    /// Counts `fuel` against `charges` here; the caller queues the same charge to the store.
    pub fn charge(&self, charges: &[Charge], fuel: u64, now: Secs) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        for c in charges {
            if let Some(w) = windows.get_mut(&(c.key.clone(), c.window_s))
                && w.start == window_start(now, c.window_s)
            {
                w.used = w.used.saturating_add(fuel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::sqlite::SqliteStore;

    #[tokio::test]
    async fn a_budget_is_seen_used_up_without_asking_the_store_again() {
        let store = SqliteStore::in_memory().unwrap();
        let budgets = Budgets::default();
        let budget = [Charge {
            key: "fuel:p".into(),
            window_s: 3600,
            max: 10,
            cost: 0,
        }];
        let now = 3600 * 5;
        assert!(
            budgets
                .exhausted(&store, &budget, now)
                .await
                .unwrap()
                .is_none()
        );
        budgets.charge(&budget, 10, now);
        let e = budgets
            .exhausted(&store, &budget, now)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((e.used, e.resets_at), (10, 3600 * 6));
        // A new window starts from what the store says (here: nothing).
        assert!(
            budgets
                .exhausted(&store, &budget, now + 3600)
                .await
                .unwrap()
                .is_none()
        );
    }
}
