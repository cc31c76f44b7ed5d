//! The wasmtime engine: compiler settings, epoch preemption and the pooling
//! allocator, sized on purpose.
//!
//! Sizing arithmetic (docs/kernel.md has the measurements):
//! - A pooled process holds one memory slot, one instance slot, one table slot
//!   and one fiber-stack slot (a component's process up to
//!   `CORE_INSTANCES_PER_COMPONENT` instance and table slots). Slots are
//!   reserved up front for `slots` processes.
//! - A memory slot costs `max_memory + GUARD` of address space: 10 000 slots of
//!   16 MiB + 2 MiB are 180 GiB of the 128 TiB a process may map, so address
//!   space is not the limit; explicit bounds checks are the price of slots
//!   smaller than 4 GiB.
//! - The limit is `vm.max_map_count`: the stack pool costs 2 mappings per slot
//!   up front and a live process about 4 more. [`pool_slots`] divides the
//!   mapping budget by [`MAPPINGS_PER_PROCESS`].

use std::fs;

use anyhow::Context;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::process::MAX_TABLE_ELEMENTS;

/// Address-space guard after each linear memory: 2 MiB, and one page more
/// so that memory slots do not start at a multiple of a cache way. Slots are
/// laid out back to back, `max_memory + GUARD` apart; with 16 MiB + 2 MiB
/// every process's guest stack top (and each other hot line) fell in the
/// same L2 sets, 8 ways for all processes. The extra page moves each slot's
/// lines 64 sets on: at 50 connections hello-http's L2 misses fell from
/// 23.4 to 6.6 a request in `scripts/bench-cache` (docs/benchmarks.md).
const GUARD: u64 = (2 << 20) + 4096;
/// Fiber stack of a process: its Wasm stack plus room for host imports, which
/// run on the same stack (an idle process's host frames take 2-5 KiB). Only
/// touched pages are resident, but the kernel's page tables cost about 4 KiB
/// per 2 MiB of stack slots holding a live process: 1 MiB stacks cost an idle
/// connection 2 KiB in page tables, 512 KiB stacks 1 KiB (docs/benchmarks.md).
const ASYNC_STACK: usize = 512 << 10;
/// The part of [`ASYNC_STACK`] the guest's own frames may use; deeper recursion traps.
const WASM_STACK: usize = 256 << 10;
/// Bytes at the start of a reused memory or table slot that are zeroed in
/// place instead of returned to the kernel: a new process then finds its
/// first pages already mapped (no page faults, no `madvise` and TLB
/// shoot-downs on exit). Measured: spawn of the Rust echo 15.5 → 3.6 µs
/// median, same RSS per live process (docs/benchmarks.md).
const KEEP_RESIDENT: usize = 64 << 10;
/// Core instances and tables a component's process may take from the pool:
/// a component links its main module with small shim modules (indirect
/// call tables), each a core instance, most with a table. Instance and
/// table slots cost no mappings of their own (each pool is one reservation).
const CORE_INSTANCES_PER_COMPONENT: u32 = 4;
/// Mappings one pooled process may need at most: 2 for its stack slot, up to
/// 4 for its memory (image, heap, reserved tail) and table.
pub const MAPPINGS_PER_PROCESS: usize = 6;
/// Mappings left for the host's own code, heap and threads.
const MAPPINGS_FOR_HOST: usize = 4096;
/// Used when `/proc/sys/vm/max_map_count` cannot be read (Linux's default).
const DEFAULT_MAX_MAP_COUNT: usize = 65530;

/// How many processes the pool can hold at once, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSizing {
    /// Process slots: instances, memories, tables and stacks alike.
    pub slots: usize,
    /// The largest micro-heap any app may have, in bytes.
    pub max_memory: u64,
    /// The `vm.max_map_count` the slots were fitted to.
    pub max_map_count: usize,
}

/// Fits `wanted` process slots to the mapping budget of this machine.
pub fn pool_slots(wanted: usize, max_memory: u64) -> PoolSizing {
    let max_map_count = fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(DEFAULT_MAX_MAP_COUNT);
    let budget = max_map_count.saturating_sub(MAPPINGS_FOR_HOST) / MAPPINGS_PER_PROCESS;
    PoolSizing {
        slots: wanted.min(budget).max(1),
        max_memory,
        max_map_count,
    }
}

/// Builds the engine every app shares.
///
/// # Errors
/// When wasmtime rejects the configuration or cannot reserve the pool.
pub fn new(sizing: &PoolSizing) -> anyhow::Result<Engine> {
    let slots = u32::try_from(sizing.slots).context("too many process slots")?;
    let mut pool = PoolingAllocationConfig::new();
    let core_slots = slots.saturating_mul(CORE_INSTANCES_PER_COMPONENT);
    pool.total_component_instances(slots)
        .total_core_instances(core_slots)
        .total_memories(slots)
        .total_tables(core_slots)
        .total_stacks(slots)
        .max_memory_size(sizing.max_memory as usize)
        .table_elements(MAX_TABLE_ELEMENTS)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        // Resets only the pages a process dirtied (Linux 6.7+; else ignored).
        .pagemap_scan(Enabled::Auto);
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .memory_init_cow(true)
        .memory_reservation(sizing.max_memory)
        .memory_guard_size(GUARD)
        .memory_reservation_for_growth(0)
        .async_stack_size(ASYNC_STACK)
        .max_wasm_stack(WASM_STACK)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    // Names guest functions for `perf` (docs/benchmarks.md, "Profiling").
    if std::env::var_os("MNVKD_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .with_context(|| {
            format!(
                "failed to create the engine with {} process slots of {} bytes",
                sizing.slots, sizing.max_memory
            )
        })
}
