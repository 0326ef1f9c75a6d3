//! What the benchmark measures that the gateway never does.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::{Prepared, Runner};
use crate::grants::{Grants, Limits};

impl Runner {
    /// For the benchmark only: `iterations` calls on one instance (what every call would cost
    /// without a fresh instance). Returns each call's duration.
    #[doc(hidden)]
    pub async fn bench_reused_instance(
        &self,
        pre: &Prepared,
        name: &str,
        input: &str,
        iterations: usize,
    ) -> Result<Vec<Duration>> {
        let limits = Limits {
            fuel: u64::MAX / 2,
            timeout: Duration::from_secs(3600),
            ..Limits::default()
        };
        let (mut store, _stdio) = self
            .store(
                &Grants::default(),
                &crate::secrets::CallSecrets::default(),
                &limits,
                None,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let instance = pre
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(anyhow::Error::from)?;
        let request = super::Request::Call { name, input };
        let mut times = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let started = Instant::now();
            let result = pre
                .invoke(&mut store, &instance, &request, limits.output_bytes)
                .await
                .map_err(anyhow::Error::from)?;
            times.push(started.elapsed());
            anyhow::ensure!(result.is_ok(), "the tool failed");
        }
        Ok(times)
    }
}
