//! The ephemeral runner: every call gets a fresh `Store` and instance, built from a
//! pre-instantiated component and from the call's grants alone, run under fuel, memory, stack,
//! epoch and wall-clock limits, and dropped when the call returns.
//!
//! Nothing is inherited from the gateway process: no environment, no arguments, no stdin, no
//! network, no filesystem beyond the granted preopens. The guest's stdout and stderr go to small
//! bounded buffers (on the stdio transport the real stdout is the protocol).

mod admission;
mod ask;
mod bench;
pub mod bindings;
mod engine;
mod exports;
mod fsguard;
mod items;
mod output;
mod report;
mod sample;
mod state;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tracing::Instrument;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

pub use admission::{Admission, Admitter, Busy, PerKey, Ticket};
pub use ask::{
    Answering, Ask, Asking, Deferred, ElicitAction, ElicitAnswer, Elicitation, Notify, Unanswered,
};
pub use bindings::portcullis::tool::types::{
    Annotations, CompletionRequest, CompletionTarget, PromptArgument, PromptInfo, ResourceInfo,
    ResourceTemplate, ToolInfo,
};
pub use engine::{EPOCH_TICK, EngineSettings};
pub use exports::{Described, Prepared, Request};
pub use items::{
    Answer, CompletionOutput, MAX_COMPLETIONS, PromptMessage, PromptOutput, ReadOutput,
};
pub use output::{
    Annotations as ContentAnnotations, CallOutput, Content, ContentItem, ResourceBody,
    ResourceLink, Role,
};
pub use report::{Reply, RunReport};
pub use sample::{Sampled, Sampling};
pub use state::{LogLine, Notice};

use crate::capabilities::Capabilities;
use crate::grants::{FsMode, Grants, Limits, show_bytes};
use crate::secrets::CallSecrets;
use crate::telemetry::STAGE;
use state::{LimitHit, Limiter, NoticeBudget, StoreState};

/// Bytes of stdout and of stderr kept per call.
pub const STDIO_CAPACITY: usize = 64 * 1024;
/// Largest `wasi:random` request a guest may make.
const MAX_RANDOM_BYTES: u64 = 64 * 1024;
/// Bytes a guest may pass to the host in one host call (e.g. one `write` of a file), at least;
/// the budget grows with the call's output limit so that a legal result always fits.
const MAX_HOSTCALL_BYTES: usize = 4 * 1024 * 1024;
/// Fuel between two voluntary yields of a running guest (about a millisecond of wasm): other
/// calls get the thread at least this often, not only at every epoch tick.
const FUEL_YIELD_INTERVAL: u64 = 1_000_000;
/// Live resource handles (files, streams, pollables) per call.
const MAX_RESOURCES: usize = 1024;
/// File I/O runs on the calling thread (no blocking-pool hand-off): fast, but a blocked
/// syscall cannot be interrupted by the deadline — hence `fsguard` refuses FIFOs and devices.
const ALLOW_BLOCKING_CURRENT_THREAD: bool = true;

/// Which limit ended a call, with its value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    #[error("fuel limit reached: the call used all {limit} units of fuel")]
    Fuel { limit: u64 },
    #[error(
        "memory limit reached: the tool asked for {} of linear memory; the limit is {}",
        show_bytes(*.requested), show_bytes(*.limit)
    )]
    Memory { limit: u64, requested: u64 },
    #[error(
        "table limit reached: the tool asked for {requested} table elements; the limit is {limit}"
    )]
    Table { limit: usize, requested: usize },
    #[error("time limit reached: the call ran longer than {} ms", .limit.as_millis())]
    Timeout { limit: Duration },
    #[error("stack limit reached: the tool exhausted its {} wasm stack (unbounded recursion?)", show_bytes(*.limit))]
    Stack { limit: u64 },
    #[error("output limit reached: the tool returned {}; the limit is {}", show_bytes(*.actual), show_bytes(*.limit))]
    Output { limit: u64, actual: u64 },
    #[error("{stream} limit reached: the tool wrote more than {} to {stream}", show_bytes(*.limit))]
    Stdio { stream: &'static str, limit: u64 },
    #[error(
        "transfer limit reached: the tool passed more than {} to the host at once (one result or one host call)",
        show_bytes(*.limit)
    )]
    Transfer { limit: u64 },
}

/// How the tool itself reported failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolFailureKind {
    UnknownTool,
    InvalidInput,
    Failed,
}

/// Why a call produced no result.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Busy(#[from] Busy),
    #[error("invalid grant: {0}")]
    Grant(String),
    /// A credential to be exchanged for the caller could not be had; the tool did not start.
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    #[error("the tool crashed: {0}")]
    Trap(String),
    #[error("{message}")]
    Tool {
        kind: ToolFailureKind,
        message: String,
    },
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
    /// The tool asked what the client answers in a later round of a multi-round-trip
    /// request: this run stopped there, and nothing of it is kept.
    #[error("the call waits for the client's answer to {0}")]
    Deferred(String),
}

/// A run's outcome as a fixed code: ok, tool_error, limit, trap, busy, input_required or
/// error.
pub fn outcome_name<T: Reply>(outcome: &Result<T, RunError>) -> &'static str {
    match outcome {
        Ok(output) if output.is_error() => "tool_error",
        Ok(_) => "ok",
        Err(RunError::Limit(_)) => "limit",
        Err(RunError::Tool { .. }) => "tool_error",
        Err(RunError::Trap(_)) => "trap",
        Err(RunError::Busy(_)) => "busy",
        Err(RunError::Deferred(_)) => "input_required",
        Err(RunError::Grant(_) | RunError::Internal(_)) => "error",
    }
}

/// The engine, the linker with exactly the host interfaces tools may import, and the bound on
/// concurrent instances.
pub struct Runner {
    engine: Engine,
    linker: Linker<StoreState>,
    admitter: Admitter,
    settings: EngineSettings,
    capabilities: Capabilities,
}

impl Runner {
    /// Builds the engine (see [`EngineSettings`]) and the linker: standard WASI p2 (whose
    /// filesystem, sockets and environment are empty unless granted), with `wasi:filesystem`
    /// replaced by the guarded layer (`fsguard`: hidden paths, only regular files and
    /// directories opened), `wasi:http` through the egress hook (`egress`), plus
    /// `portcullis:tool/host`.
    pub fn new(settings: EngineSettings, capabilities: Capabilities) -> Result<Self> {
        let engine = engine::build(settings)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI")?;
        // The filesystem interfaces again, guarded: hidden paths, openable file types.
        fsguard::add_to_linker(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking the guarded wasi:filesystem")?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking wasi:http")?;
        bindings::ServerComponent::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |state| state,
        )
        .map_err(anyhow::Error::from)
        .context("linking portcullis:tool/host")?;
        bindings::v01::ToolComponent::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |state| state,
        )
        .map_err(anyhow::Error::from)
        .context("linking portcullis:tool/host@0.1.0")?;
        Ok(Self {
            engine,
            linker,
            admitter: Admitter::new(settings.admission),
            settings,
            capabilities,
        })
    }

    /// Egress, secrets and ceilings.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn settings(&self) -> EngineSettings {
        self.settings
    }

    /// Waits, within the configured bound, for room to run one call of `principal` (see
    /// [`admission`]).
    pub async fn admit(&self, principal: &str, limits: &Limits) -> Result<Ticket, Busy> {
        self.admitter.admit(principal, limits.memory_bytes).await
    }

    /// Resolves a compiled component's imports against the linker, once.
    pub fn prepare(&self, component: &Component) -> Result<Prepared> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(anyhow::Error::from)
            .context("the component imports something portcullis does not provide")?;
        Prepared::new(pre)
    }

    /// Calls every `describe` the component exports, in one sandbox with no grants at all.
    pub async fn describe(&self, pre: &Prepared) -> Result<Described, RunError> {
        let limits = Limits::default();
        let (mut store, _stdio) =
            self.store(&Grants::default(), &CallSecrets::default(), &limits, None)?;
        let run = async {
            let instance = pre.pre.instantiate_async(&mut store).await?;
            pre.describe(&mut store, &instance).await
        };
        match tokio::time::timeout(limits.timeout, run).await {
            Ok(Ok(tools)) => Ok(tools),
            Ok(Err(e)) => Err(classify(e, &store, &limits, None)),
            Err(_) => Err(LimitExceeded::Timeout {
                limit: limits.timeout,
            }
            .into()),
        }
    }

    /// Runs tool `name` with `input` (canonical JSON) in a fresh instance that holds exactly
    /// `grants`, under `limits`, if there is room right now (for the CLI and tests; the gateway
    /// admits first, see [`Self::admit`]).
    pub async fn call(
        &self,
        pre: &Prepared,
        name: &str,
        input: &str,
        grants: &Grants,
        limits: &Limits,
    ) -> RunReport {
        match self.admitter.admit_now(limits.memory_bytes) {
            Ok(ticket) => {
                let none = CallSecrets::default();
                self.call_admitted(ticket, pre, name, input, grants, limits, None, &none)
                    .await
            }
            Err(busy) => RunReport::failed(busy.into(), Instant::now()),
        }
    }

    /// The tokens `grants` asks to be exchanged for the caller `subject`, or why there are
    /// none: the one step of a call that waits on the network, done before it is admitted.
    pub async fn delegate(
        &self,
        grants: &Grants,
        subject: Option<&crate::delegation::SubjectToken>,
    ) -> Result<CallSecrets, String> {
        self.capabilities.delegate(grants, subject).await
    }

    /// [`Self::call`] for an admitted call; the ticket is given back when the call ends.
    /// Progress and log notices go to `notify`, if given; `delegated` holds the tokens
    /// exchanged for the caller ([`Self::delegate`]), for grants that inject one.
    #[allow(clippy::too_many_arguments)]
    pub async fn call_admitted(
        &self,
        ticket: Ticket,
        pre: &Prepared,
        name: &str,
        input: &str,
        grants: &Grants,
        limits: &Limits,
        notify: Option<Notify>,
        delegated: &CallSecrets,
    ) -> RunReport {
        let request = Request::Call { name, input };
        self.run_admitted(ticket, pre, &request, grants, limits, notify, delegated)
            .await
            .map(|answer| match answer {
                Answer::Call(output) => Ok(output),
                _ => Err(RunError::Internal(anyhow::anyhow!(
                    "a tool call was answered with something else"
                ))),
            })
    }

    /// Runs any request (a tool call, a resource read, a prompt, a completion) in a fresh
    /// instance that holds exactly `grants`, under `limits`, as [`Self::call_admitted`] does.
    #[allow(clippy::too_many_arguments)]
    pub async fn run_admitted(
        &self,
        _ticket: Ticket,
        pre: &Prepared,
        request: &Request<'_>,
        grants: &Grants,
        limits: &Limits,
        notify: Option<Notify>,
        delegated: &CallSecrets,
    ) -> RunReport<Answer> {
        let started = Instant::now();
        let instantiating = tracing::info_span!(target: STAGE, "instantiate");
        let calling = tracing::info_span!(
            target: STAGE,
            "call",
            portcullis.fuel = tracing::field::Empty,
            portcullis.outcome = tracing::field::Empty,
        );
        let made = instantiating.in_scope(|| self.store(grants, delegated, limits, notify));
        let (mut store, (stdout, stderr)) = match made {
            Ok(parts) => parts,
            Err(e) => return RunReport::failed(e, started),
        };
        let mut instantiated = None;
        let run = async {
            let instance = pre
                .pre
                .instantiate_async(&mut store)
                .instrument(instantiating)
                .await?;
            instantiated = Some(started.elapsed());
            pre.invoke(&mut store, &instance, request, limits.output_bytes)
                .instrument(calling.clone())
                .await
        };
        let outcome = match tokio::time::timeout(limits.timeout, run).await {
            Err(_) => Err(LimitExceeded::Timeout {
                limit: limits.timeout,
            }
            .into()),
            Ok(Err(e)) => Err(stdio_overflow(&stdout, &stderr)
                .unwrap_or_else(|| classify(e, &store, limits, Some(&stderr)))),
            Ok(Ok(Err(refused @ RunError::Tool { .. }))) => {
                Err(stdio_overflow(&stdout, &stderr).unwrap_or(refused))
            }
            Ok(Ok(Err(refused))) => Err(refused),
            Ok(Ok(Ok(answer))) => Ok(answer),
        };
        let fuel_used = limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        let elapsed = started.elapsed();
        calling.record("portcullis.fuel", fuel_used);
        calling.record("portcullis.outcome", outcome_name(&outcome));
        let state = store.into_data();
        let mut report = RunReport {
            outcome,
            fuel_used,
            elapsed,
            instantiated: instantiated.unwrap_or(elapsed),
            stdout: stdout.contents().to_vec(),
            stderr: stderr.contents().to_vec(),
            logs: state.logs,
            logs_dropped: state.logs_dropped,
            egress: state.capabilities.egress.events(),
            notices_dropped: state.notices.dropped,
            updated: state.updated,
        };
        report.scrub(&state.capabilities.scrubber);
        report
    }

    /// A fresh store whose WASI context holds exactly `grants`, with every limit set.
    pub(crate) fn store(
        &self,
        grants: &Grants,
        delegated: &CallSecrets,
        limits: &Limits,
        notify: Option<Notify>,
    ) -> Result<(Store<StoreState>, (MemoryOutputPipe, MemoryOutputPipe)), RunError> {
        if limits.memory_bytes > self.settings.max_memory_bytes {
            return Err(RunError::Grant(format!(
                "memory limit {} exceeds the gateway's maximum of {}",
                show_bytes(limits.memory_bytes),
                show_bytes(self.settings.max_memory_bytes)
            )));
        }
        let capabilities = self
            .capabilities
            .prepare(grants, delegated)
            .map_err(RunError::Grant)?;
        let stdout = MemoryOutputPipe::new(STDIO_CAPACITY);
        let stderr = MemoryOutputPipe::new(STDIO_CAPACITY);
        let wasi = wasi_context(grants, &stdout, &stderr)?;
        let fsguard = fsguard::FsGuard::new(&grants.fs, ALLOW_BLOCKING_CURRENT_THREAD)
            .map_err(RunError::Grant)?;
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        let state = StoreState {
            wasi,
            http: http_context(self.capabilities.egress.caps()),
            table,
            fsguard,
            capabilities,
            notify,
            notices: NoticeBudget::new(),
            limiter: Limiter {
                memory_bytes: limits.memory_bytes,
                memory_used: 0,
                table_elements: engine::MAX_TABLE_ELEMENTS,
                hit: None,
            },
            logs: Vec::new(),
            logs_dropped: 0,
            elicit: grants.elicit,
            elicitations: 0,
            sample: grants.sample,
            samplings: 0,
            updated: Vec::new(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_hostcall_fuel(hostcall_budget(limits));
        store
            .set_fuel(limits.fuel)
            .and_then(|()| store.fuel_async_yield_interval(Some(FUEL_YIELD_INTERVAL)))
            .map_err(|e| RunError::Internal(e.into()))?;
        // At every epoch tick the guest yields its thread to the scheduler (so spinning guests
        // never starve other calls), until its deadline, when it traps. The async timeout
        // around the call covers time spent blocked inside host calls.
        let deadline = Instant::now() + limits.timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ))
            }
        });
        Ok((store, (stdout, stderr)))
    }
}

/// Bytes the guest may move into the host in one host call or one result: enough for any
/// result within the output limit (plus encoding overhead), and never less than the floor for
/// host calls such as a file `write`.
fn hostcall_budget(limits: &Limits) -> usize {
    let output = usize::try_from(limits.output_bytes).unwrap_or(usize::MAX);
    output
        .saturating_mul(2)
        .saturating_add(64 * 1024)
        .max(MAX_HOSTCALL_BYTES)
}

/// The wasi:http context of a call, with its field limit stated: fields (headers) a guest
/// builds may take this much host memory in their in-memory form, a few times the header
/// bytes the send hook lets through.
fn http_context(caps: crate::egress::Caps) -> wasmtime_wasi_http::WasiHttpCtx {
    let mut ctx = wasmtime_wasi_http::WasiHttpCtx::new();
    ctx.set_field_size_limit(caps.max_header_bytes.saturating_mul(4).max(64 * 1024));
    ctx
}

/// The WASI context for one call: deny by default, then exactly the grants.
///
/// Defaults, stated rather than inherited: stdin closed; stdout/stderr into bounded memory
/// pipes; no environment variables; no arguments; no preopens; TCP, UDP and name lookup off;
/// random requests capped.
fn wasi_context(
    grants: &Grants,
    stdout: &MemoryOutputPipe,
    stderr: &MemoryOutputPipe,
) -> Result<WasiCtx, RunError> {
    let mut builder = WasiCtxBuilder::new();
    builder
        .allow_blocking_current_thread(ALLOW_BLOCKING_CURRENT_THREAD)
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .max_random_size(MAX_RANDOM_BYTES);
    for (key, value) in &grants.env {
        builder.env(key, value);
    }
    let mut guests: Vec<&str> = Vec::new();
    for grant in &grants.fs {
        if !grant.host.is_absolute() {
            return Err(RunError::Grant(format!(
                "fs grant host path `{}` must be absolute",
                grant.host.display()
            )));
        }
        if !grant.guest.starts_with('/') {
            return Err(RunError::Grant(format!(
                "fs grant guest path `{}` must be absolute",
                grant.guest
            )));
        }
        if guests.contains(&grant.guest.as_str()) {
            return Err(RunError::Grant(format!(
                "two fs grants share the guest path `{}`",
                grant.guest
            )));
        }
        guests.push(&grant.guest);
        let perms = match grant.mode {
            FsMode::Ro => FsPerms::ReadOnly,
            FsMode::Rw => FsPerms::ReadWrite,
        };
        builder
            .preopened_dir(&grant.host, &grant.guest, perms)
            .map_err(|e| {
                RunError::Grant(format!(
                    "cannot open granted directory `{}`: {e}",
                    grant.host.display()
                ))
            })?;
    }
    Ok(builder.build())
}

/// A call that failed with a full stdout or stderr buffer failed because of it: once the buffer
/// is full the guest's writes fail (Rust's `print!` then panics; `write!` returns an error).
fn stdio_overflow(stdout: &MemoryOutputPipe, stderr: &MemoryOutputPipe) -> Option<RunError> {
    // Writes are buffered by the guest, so "full" means: no room left for another buffer.
    const MARGIN: usize = 8 * 1024;
    [("stdout", stdout), ("stderr", stderr)]
        .into_iter()
        .find(|(_, pipe)| pipe.contents().len() + MARGIN > STDIO_CAPACITY)
        .map(|(stream, _)| {
            LimitExceeded::Stdio {
                stream,
                limit: STDIO_CAPACITY as u64,
            }
            .into()
        })
}

/// Turns a trap or host error into the limit it represents, if any.
fn classify(
    error: wasmtime::Error,
    store: &Store<StoreState>,
    limits: &Limits,
    stderr: Option<&MemoryOutputPipe>,
) -> RunError {
    if let Some(Deferred(what)) = error.downcast_ref::<Deferred>() {
        return RunError::Deferred(what.clone());
    }
    // wasmtime's error for exhausted hostcall fuel is private; its message is pinned by a test.
    if format!("{error:#}").contains("fuel allocated for hostcalls has been exhausted") {
        return LimitExceeded::Transfer {
            limit: hostcall_budget(limits) as u64,
        }
        .into();
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => return LimitExceeded::Fuel { limit: limits.fuel }.into(),
        Some(Trap::Interrupt) => {
            return LimitExceeded::Timeout {
                limit: limits.timeout,
            }
            .into();
        }
        Some(Trap::StackOverflow) => {
            return LimitExceeded::Stack {
                limit: engine::MAX_WASM_STACK as u64,
            }
            .into();
        }
        _ => {}
    }
    // A refused `memory.grow` or `table.grow` does not trap by itself; the guest's allocator
    // then aborts. Fuel, deadline and stack (above) are definite causes and come first: a guest
    // that survived a refused grow and later ran out of fuel ran out of fuel.
    match store.data().limiter.hit {
        Some(LimitHit::Memory { limit, requested }) => {
            return LimitExceeded::Memory { limit, requested }.into();
        }
        Some(LimitHit::Table { limit, requested }) => {
            return LimitExceeded::Table { limit, requested }.into();
        }
        None => {}
    }
    let mut stderr_tail = String::new();
    if let Some(stderr) = stderr {
        let bytes = stderr.contents();
        let text = String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(1024)..]);
        let text = text.trim();
        if !text.is_empty() {
            stderr_tail = format!(" (stderr: {text})");
        }
    }
    let reason = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => error.to_string(),
    };
    RunError::Trap(format!("{reason}{stderr_tail}"))
}
