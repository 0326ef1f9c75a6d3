//! What one store holds: the WASI context built from grants, the filesystem guard, the resource
//! limiter, the outbound HTTP hook and secrets of the call, and the host interface
//! (`portcullis:tool/host`) with its bounded log buffer and rate-limited notices.

use std::time::Instant;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::capabilities::CallCapabilities;

use super::ask::{Deferred, Notify, Unanswered};
use super::bindings::portcullis::tool::host;
use super::bindings::v01::portcullis::tool as v01;
use super::engine;
use super::fsguard::FsGuard;

/// Log lines kept per call; more are counted and dropped.
pub const MAX_LOG_LINES: usize = 256;
/// Characters kept per log line.
pub const MAX_LOG_LINE: usize = 4096;
/// Resources one call may announce as changed, and the bytes of each URI.
pub const MAX_UPDATED: usize = 16;
pub const MAX_UPDATED_URI: usize = 2048;

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

/// Something a running call tells its client: progress, or a log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    Progress {
        done: u64,
        total: Option<u64>,
        message: Option<String>,
    },
    Log {
        level: &'static str,
        message: String,
    },
}

/// Notices per second a call may send, and the burst it may save up.
pub const NOTICES_PER_SECOND: f64 = 20.0;
pub const NOTICE_BURST: f64 = 20.0;

/// A token bucket for one call's notices.
pub struct NoticeBudget {
    tokens: f64,
    at: Instant,
    pub dropped: usize,
}

impl NoticeBudget {
    pub fn new() -> Self {
        Self {
            tokens: NOTICE_BURST,
            at: Instant::now(),
            dropped: 0,
        }
    }

    /// Whether one more notice may go now.
    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * NOTICES_PER_SECOND;
        self.tokens = (self.tokens + refill).min(NOTICE_BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.dropped += 1;
            false
        }
    }
}

/// The data of one store. Dropped with the store after the call.
pub struct StoreState {
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub table: ResourceTable,
    /// Hidden paths and openable file types (`runner::fsguard`).
    pub fsguard: FsGuard,
    pub limiter: Limiter,
    /// Outbound HTTP, secrets and the scrubber of this call.
    pub capabilities: CallCapabilities,
    pub logs: Vec<LogLine>,
    pub logs_dropped: usize,
    pub notify: Option<Notify>,
    pub notices: NoticeBudget,
    /// Whether the call may ask its user (`grants.elicit`), and how often it did.
    pub elicit: bool,
    pub elicitations: u32,
    /// Whether the call may ask the client's model (`grants.sample`), and how often it did.
    pub sample: bool,
    pub samplings: u32,
    /// Resources the call said it changed (`host.resource-updated`).
    pub updated: Vec<String>,
}

impl StoreState {
    fn notice(&mut self, notice: Notice) {
        if let Some(notify) = &self.notify
            && notify.wants_notices()
            && self.notices.take()
        {
            notify.send(notice);
        }
    }
}

impl WasiHttpView for StoreState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.capabilities.egress,
        }
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// What a tool gets from `elicit` or `sample`: the answer or the refusal; a question answered
/// in a later round stops the run here (a trap the runner reports as `input_required`).
fn answered<T>(answer: Result<T, Unanswered>, what: &str) -> wasmtime::Result<Result<T, String>> {
    match answer {
        Ok(answer) => Ok(Ok(answer)),
        Err(Unanswered::Refused(reason)) => Ok(Err(reason)),
        Err(Unanswered::Later) => Err(wasmtime::Error::new(Deferred(what.to_string()))),
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
        let mut message: String = message.chars().take(MAX_LOG_LINE).collect();
        self.capabilities.scrubber.text_in_place(&mut message);
        self.notice(Notice::Log {
            level,
            message: message.clone(),
        });
        self.logs.push(LogLine { level, message });
    }

    fn progress(&mut self, done: u64, total: Option<u64>, message: Option<String>) {
        let message = message.map(|m| {
            let mut m: String = m.chars().take(MAX_LOG_LINE).collect();
            self.capabilities.scrubber.text_in_place(&mut m);
            m
        });
        self.notice(Notice::Progress {
            done,
            total,
            message,
        });
    }

    async fn elicit(
        &mut self,
        message: String,
        requested_schema: String,
    ) -> wasmtime::Result<Result<host::ElicitAnswer, String>> {
        answered(
            self.elicitation(message, requested_schema).await,
            "a question",
        )
    }

    async fn elicit_url(
        &mut self,
        message: String,
        url: String,
    ) -> wasmtime::Result<Result<host::ElicitAction, String>> {
        answered(self.elicitation_url(message, url).await, "a URL to open")
    }

    async fn sample(
        &mut self,
        request: host::SamplingRequest,
    ) -> wasmtime::Result<Result<host::SamplingAnswer, String>> {
        answered(self.sampling(request).await, "a sampling request")
    }

    fn resource_updated(&mut self, uri: String) -> Result<(), String> {
        if uri.len() > MAX_UPDATED_URI {
            return Err(format!("the URI is longer than {MAX_UPDATED_URI} bytes"));
        }
        if self.capabilities.scrubber.finds(&uri) {
            return Err("the URI contains a secret granted to this call".into());
        }
        if !self.updated.contains(&uri) {
            if self.updated.len() >= MAX_UPDATED {
                return Err(format!("a call may announce at most {MAX_UPDATED} updates"));
            }
            self.updated.push(uri);
        }
        Ok(())
    }

    fn secret(&mut self, name: String) -> Result<String, String> {
        // One answer for "not configured" and "not granted": the tool learns nothing else.
        self.capabilities
            .secrets
            .get(&name)
            .map(str::to_string)
            .ok_or_else(|| {
                let name: String = name.chars().take(128).collect();
                format!("secret `{name}` is not granted to this call")
            })
    }
}

impl super::bindings::portcullis::tool::types::Host for StoreState {}

/// 0.1.0 components get the same host functions.
impl v01::host::Host for StoreState {
    fn log(&mut self, level: v01::host::Level, message: String) {
        let level = match level {
            v01::host::Level::Trace => host::Level::Trace,
            v01::host::Level::Debug => host::Level::Debug,
            v01::host::Level::Info => host::Level::Info,
            v01::host::Level::Warn => host::Level::Warn,
            v01::host::Level::Error => host::Level::Error,
        };
        host::Host::log(self, level, message);
    }

    fn progress(&mut self, done: u64, total: Option<u64>, message: Option<String>) {
        host::Host::progress(self, done, total, message);
    }

    fn secret(&mut self, name: String) -> Result<String, String> {
        host::Host::secret(self, name)
    }
}

impl v01::types::Host for StoreState {}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    const MIB: usize = 1024 * 1024;

    #[test]
    fn notices_are_rate_limited_per_call() {
        let mut budget = NoticeBudget::new();
        let sent = (0..1000).filter(|_| budget.take()).count();
        // The burst, plus whatever refilled while the loop ran (well under a second).
        assert!(
            (NOTICE_BURST as usize..NOTICE_BURST as usize + 5).contains(&sent),
            "{sent}"
        );
        assert_eq!(budget.dropped, 1000 - sent);
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(budget.take(), "the budget refills over time");
    }

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
