//! The rate stage: the decision's `rate` rules, enforced atomically in the store.
//!
//! `cost: "calls"` rules are charged before the run, all or none: a call over any of them does
//! not run. `cost: "fuel"` rules are budgets: a call starts only while its window has budget
//! left, and the fuel it used is charged after it ran. Windows are fixed (aligned to multiples
//! of `window_s` since the epoch), so "when it resets" is exact.

use crate::policy::types::{RateCost, RateRule};
use crate::state::{Charge, Exceeded, Secs};

/// The longest window a rule may have: 31 days.
const MAX_WINDOW_S: u64 = 31 * 24 * 3600;
/// The longest key, in bytes.
const MAX_KEY_BYTES: usize = 512;

/// A decision's rules as charges: `(calls, fuel)`.
pub struct Charges {
    pub calls: Vec<Charge>,
    pub fuel: Vec<Charge>,
}

/// Reads the rules, refusing malformed ones (a rule the gateway cannot enforce is a denial).
pub fn charges(rules: &[RateRule]) -> Result<Charges, Vec<String>> {
    let mut problems = Vec::new();
    let mut out = Charges {
        calls: Vec::new(),
        fuel: Vec::new(),
    };
    for (i, rule) in rules.iter().enumerate() {
        if rule.key.is_empty() || rule.key.len() > MAX_KEY_BYTES {
            problems.push(format!(
                "rate[{i}]: the key must be 1 to {MAX_KEY_BYTES} bytes"
            ));
            continue;
        }
        if rule.window_s == 0 || rule.window_s > MAX_WINDOW_S {
            problems.push(format!(
                "rate[{i}] ({}): window_s must be between 1 and {MAX_WINDOW_S}",
                rule.key
            ));
            continue;
        }
        let charge = Charge {
            key: rule.key.clone(),
            window_s: rule.window_s,
            max: rule.max,
            cost: 1,
        };
        match rule.cost {
            RateCost::Calls => out.calls.push(charge),
            RateCost::Fuel => out.fuel.push(charge),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Seconds from `now` until `at`, never negative.
pub fn seconds_until(at: Secs, now: Secs) -> u64 {
    at.saturating_sub(now)
}

/// The agent's message for a limit that stopped a call.
pub fn describe(limit: &Exceeded, fuel: bool, now: Secs) -> String {
    let unit = if fuel { "fuel" } else { "calls" };
    format!(
        "rate limit `{}` reached: {} of {} {unit} used in this {}s window; it resets in {}s",
        limit.key,
        limit.used,
        limit.max,
        limit.window_s,
        seconds_until(limit.resets_at, now)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(key: &str, window_s: u64, cost: RateCost) -> RateRule {
        RateRule {
            key: key.into(),
            max: 3,
            window_s,
            cost,
        }
    }

    #[test]
    fn rules_split_by_cost_and_bad_ones_are_refused() {
        let c = charges(&[
            rule("a", 60, RateCost::Calls),
            rule("b", 3600, RateCost::Fuel),
        ])
        .unwrap();
        assert_eq!((c.calls.len(), c.fuel.len()), (1, 1));
        let e = charges(&[rule("", 60, RateCost::Calls), rule("x", 0, RateCost::Fuel)])
            .err()
            .unwrap();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[1].contains("window_s"), "{e:?}");
    }
}
