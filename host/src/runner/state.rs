//! What one store holds: the WASI context built from grants, the filesystem guard, the resource
//! limiter, and the
//! host interface (`portcullis:tool/host`) with its bounded log buffer.

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::portcullis::tool::host;
use super::engine;
use super::fsguard::FsGuard;

/// Log lines kept per call; more are counted and dropped.
pub const MAX_LOG_LINES: usize = 256;
/// Characters kept per log line.
pub const MAX_LOG_LINE: usize = 4096;

/// Which resource limit a guest ran into (recorded by the limiter; traps do not say).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitHit {
    Memory { limit: u64, requested: u64 },
    Table { limit: usize, requested: usize },
}

/// Enforces per-call memory and table limits and remembers the first one hit.
pub struct Limiter {
    /// The call's memory limit, across all of its linear memories together (admission
    /// reserves exactly this much for the call).
    pub memory_bytes: u64,
    /// Bytes of linear memory the call's memories have now, together.
    pub memory_used: u64,
    pub table_elements: usize,
    pub hit: Option<LimitHit>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self
            .memory_used
            .saturating_sub(current as u64)
            .saturating_add(desired as u64);
        if total > self.memory_bytes {
            self.hit.get_or_insert(LimitHit::Memory {
                limit: self.memory_bytes,
                requested: total,
            });
            return Ok(false);
        }
        self.memory_used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            self.hit.get_or_insert(LimitHit::Table {
                limit: self.table_elements,
                requested: desired,
            });
            return Ok(false);
        }
        Ok(true)
    }

    // The same ceilings as the pool's, enforced per store as well.
    fn instances(&self) -> usize {
        engine::MAX_CORE_INSTANCES_PER_COMPONENT as usize + 1
    }

    fn tables(&self) -> usize {
        engine::MAX_TABLES_PER_COMPONENT as usize
    }

    fn memories(&self) -> usize {
        engine::MAX_MEMORIES_PER_COMPONENT as usize
    }
}

/// One log line from the guest.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
}

/// The data of one store. Dropped with the store after the call.
pub struct StoreState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    /// Hidden paths and openable file types (`runner::fsguard`).
    pub fsguard: FsGuard,
    pub limiter: Limiter,
    pub logs: Vec<LogLine>,
    pub logs_dropped: usize,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl host::Host for StoreState {
    fn log(&mut self, level: host::Level, message: String) {
        if self.logs.len() >= MAX_LOG_LINES {
            self.logs_dropped += 1;
            return;
        }
        let level = match level {
            host::Level::Trace => "trace",
            host::Level::Debug => "debug",
            host::Level::Info => "info",
            host::Level::Warn => "warn",
            host::Level::Error => "error",
        };
        let message: String = message.chars().take(MAX_LOG_LINE).collect();
        self.logs.push(LogLine { level, message });
    }
}

impl super::bindings::portcullis::tool::types::Host for StoreState {}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    const MIB: usize = 1024 * 1024;

    #[test]
    fn the_memory_limit_holds_across_all_memories_of_a_call() {
        let mut limiter = Limiter {
            memory_bytes: 64 * MIB as u64,
            memory_used: 0,
            table_elements: 10,
            hit: None,
        };
        // Two memories created, then each grown: together they may not pass the limit.
        assert!(limiter.memory_growing(0, MIB, None).unwrap());
        assert!(limiter.memory_growing(0, MIB, None).unwrap());
        assert!(limiter.memory_growing(MIB, 40 * MIB, None).unwrap());
        assert!(!limiter.memory_growing(MIB, 40 * MIB, None).unwrap());
        assert_eq!(
            limiter.hit,
            Some(LimitHit::Memory {
                limit: 64 * MIB as u64,
                requested: 80 * MIB as u64
            })
        );
        // The second may still grow within what is left.
        assert!(limiter.memory_growing(MIB, 24 * MIB, None).unwrap());
    }
}
