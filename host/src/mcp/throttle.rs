//! Requests per principal per second at the HTTP front door: a token bucket per principal,
//! refilled at the configured rate and holding at most one second's worth (the burst). A
//! request over it gets 429 at once, with how long to wait; other principals are unaffected.
//! This bounds how fast one principal can make the gateway work (authentication, parsing,
//! policy); the governance rate rules bound what calls may do, durably.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Principals tracked at most; past it, full buckets (idle principals) are forgotten.
const MAX_TRACKED: usize = 100_000;

struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct Throttle {
    per_second: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Throttle {
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second: f64::from(per_second),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request's token for `principal`, or says how long until there is one.
    pub fn take(&self, principal: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(principal) {
            let (rate, burst) = (self.per_second, self.per_second);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(principal.to_string()).or_insert(Bucket {
            tokens: self.per_second,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.per_second);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_and_others_unaffected() {
        let t = Throttle::new(5);
        for _ in 0..5 {
            assert!(t.take("a").is_ok());
        }
        let wait = t.take("a").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(200),
            "{wait:?}"
        );
        assert!(t.take("b").is_ok());
        std::thread::sleep(Duration::from_millis(250));
        assert!(t.take("a").is_ok());
    }
}
