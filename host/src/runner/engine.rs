//! The one wasmtime `Engine` and its settings. Every limit is set here explicitly; nothing
//! relies on a wasmtime default (some releases ship permissive ones).

use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::admission::Admission;

/// How often the epoch advances; a runaway guest is interrupted within one tick of its deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Engine-wide ceilings. Per-call limits (from policy) must fit under them.
#[derive(Clone, Copy, Debug)]
pub struct EngineSettings {
    /// How many instances run at once, per principal and in guest memory (the pool is sized
    /// for `admission.max_concurrent`).
    pub admission: Admission,
    /// The largest linear memory any instance may have (per-call limits are lower or equal).
    pub max_memory_bytes: u64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            admission: Admission::for_this_machine(),
            max_memory_bytes: 1024 * crate::grants::MIB,
        }
    }
}

/// wasm stack a guest may use before it traps with "call stack exhausted".
pub const MAX_WASM_STACK: usize = 512 * 1024;
/// Each call runs on its own fiber stack: wasm stack plus room for host functions.
const ASYNC_STACK: usize = MAX_WASM_STACK + 1024 * 1024;
/// Table elements per table (Rust components use a few hundred).
pub const MAX_TABLE_ELEMENTS: usize = 20_000;
/// Core instances inside one component (main module plus adapter shims).
pub const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 32;
/// Linear memories per component (Rust components have one).
pub const MAX_MEMORIES_PER_COMPONENT: u32 = 2;
/// Tables per component.
pub const MAX_TABLES_PER_COMPONENT: u32 = 8;

/// Builds the engine: pooling allocator with resident memory reuse, copy-on-write memory
/// images, fuel, epoch interruption, async support, fixed stack and table limits.
pub fn build(settings: EngineSettings) -> Result<Engine> {
    let slots = settings.admission.max_concurrent + 4; // + a few for `describe` at load time
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .total_core_instances(slots * MAX_CORE_INSTANCES_PER_COMPONENT)
        .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
        .total_memories(slots * MAX_MEMORIES_PER_COMPONENT)
        .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
        .max_memories_per_module(1)
        .total_tables(slots * MAX_TABLES_PER_COMPONENT)
        .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
        .max_tables_per_module(2)
        .table_elements(MAX_TABLE_ELEMENTS)
        .total_stacks(slots)
        .max_memory_size(settings.max_memory_bytes as usize)
        // Keep the first pages of each slot mapped between calls and reset them with the
        // pagemap scan instead of madvise: the difference between ~26 µs and ~10 µs per call.
        .linear_memory_keep_resident(1024 * 1024)
        .table_keep_resident(64 * 1024)
        .async_stack_keep_resident(64 * 1024)
        .pagemap_scan(Enabled::Auto);

    let mut config = Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(ASYNC_STACK)
        .async_stack_zeroing(false)
        .wasm_component_model(true)
        .concurrency_support(false)
        .parallel_compilation(true);
    let engine = Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("configuring the wasmtime engine")?;
    start_epoch_ticker(&engine);
    Ok(engine)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is dropped.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = thread::Builder::new()
        .name("portcullis-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(e) = spawned {
        // Without the ticker epoch deadlines never fire; the async wall-clock timeout and fuel
        // still bound every call, so keep serving but say so loudly.
        tracing::error!("could not start the epoch thread: {e}");
    }
}
