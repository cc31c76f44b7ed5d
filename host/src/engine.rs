//! The wasmtime engine: compiler settings, epoch preemption and the pooling
//! allocator, sized on purpose.
//!
//! Sizing arithmetic (docs/kernel.md has the measurements):
//! - A pooled process holds one memory slot, one instance slot, one table slot
//!   and one fiber-stack slot (a component's process up to
//!   `CORE_INSTANCES_PER_COMPONENT` instance and table slots). Slots are
//!   reserved up front for `slots` processes.
//! - A memory slot reserves 4 GiB + `GUARD` of address space: a 32-bit guest
//!   cannot address past it, so guard pages stand in for bounds checks and
//!   guest code runs without them (a third fewer instructions in the HTTP
//!   guest's code, see [`BoundsChecks`]). 10 000 slots take 40 TiB of the
//!   128 TiB a process may map. Where that does not fit (more slots than
//!   [`UNCHECKED_BUDGET`] holds, or an address-space limit such as
//!   valgrind's or `ulimit -v`), slots are `max_memory + GUARD` and guest
//!   code checks every access.
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
/// Address space the memory pool may take with 4 GiB slots: half of the
/// 128 TiB of an x86-64 or aarch64 process, leaving the rest for the host.
/// About 16 000 slots.
const UNCHECKED_BUDGET: u64 = 64 << 40;
/// A slot that a 32-bit guest cannot address past.
const FULL_RESERVATION: u64 = 4 << 30;
/// Set to `explicit` to compile bounds checks into guest code whatever the
/// address space allows: to measure what they cost, or to keep a host's
/// address space small.
pub const BOUNDS_CHECKS_ENV: &str = "MNVKD_BOUNDS_CHECKS";

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
    /// How guest code keeps to its micro-heap; [`new`] falls back to
    /// [`BoundsChecks::Explicit`] when the 4 GiB slots cannot be reserved.
    pub bounds_checks: BoundsChecks,
}

/// How guest code is kept inside its micro-heap. Both are safe: an access
/// outside traps either way.
///
/// Measured (docs/benchmarks.md, "Guard pages instead of bounds checks"):
/// without checks the HTTP guest's own code ran 2,722 instructions a
/// request instead of 3,987, and two coroutines switching in one heap took
/// 21.2 ns a switch instead of 28.9. The price is address space (4 GiB a
/// slot, reserved, never resident) and the page tables of a live process:
/// its slot no longer shares a page-middle directory with its neighbours'
/// (about 4 KiB more a process: 9.2 KiB against 5.3 at 10 000 echo
/// connections).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundsChecks {
    /// 4 GiB slots: a guard page traps every access outside the heap, and
    /// guest code checks nothing.
    Elided,
    /// Slots of `max_memory`: guest code compares every access with the
    /// heap's size.
    Explicit(WhyExplicit),
}

/// Why guest code checks its accesses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhyExplicit {
    /// [`BOUNDS_CHECKS_ENV`] asked for it.
    Asked,
    /// More slots than [`UNCHECKED_BUDGET`] holds at 4 GiB each.
    TooManySlots,
    /// Reserving 4 GiB slots failed (an address-space limit).
    ReserveFailed,
}

impl std::fmt::Display for BoundsChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BoundsChecks::Elided => write!(f, "guard pages (4 GiB slots, no bounds checks)"),
            BoundsChecks::Explicit(WhyExplicit::Asked) => {
                write!(f, "bounds checks (as {BOUNDS_CHECKS_ENV} asks)")
            }
            BoundsChecks::Explicit(WhyExplicit::TooManySlots) => {
                write!(f, "bounds checks (too many slots for 4 GiB each)")
            }
            BoundsChecks::Explicit(WhyExplicit::ReserveFailed) => {
                write!(f, "bounds checks (4 GiB slots could not be reserved)")
            }
        }
    }
}

impl PoolSizing {
    /// Each memory slot's reservation, without its guard.
    fn reservation(&self) -> u64 {
        match self.bounds_checks {
            BoundsChecks::Elided => FULL_RESERVATION,
            BoundsChecks::Explicit(_) => self.max_memory,
        }
    }
}

/// How `slots` memory slots can keep guest code inside its heap, given
/// the value of [`BOUNDS_CHECKS_ENV`].
fn bounds_checks_for(slots: usize, asked: Option<&str>) -> BoundsChecks {
    if asked == Some("explicit") {
        return BoundsChecks::Explicit(WhyExplicit::Asked);
    }
    let wanted = (slots as u64).saturating_mul(FULL_RESERVATION + GUARD);
    if wanted > UNCHECKED_BUDGET {
        return BoundsChecks::Explicit(WhyExplicit::TooManySlots);
    }
    BoundsChecks::Elided
}

/// Fits `wanted` process slots to the mapping budget of this machine.
pub fn pool_slots(wanted: usize, max_memory: u64) -> PoolSizing {
    let max_map_count = fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(DEFAULT_MAX_MAP_COUNT);
    let budget = max_map_count.saturating_sub(MAPPINGS_FOR_HOST) / MAPPINGS_PER_PROCESS;
    let slots = wanted.min(budget).max(1);
    PoolSizing {
        slots,
        max_memory,
        max_map_count,
        bounds_checks: bounds_checks_for(slots, std::env::var(BOUNDS_CHECKS_ENV).ok().as_deref()),
    }
}

/// Builds the engine every app shares. When the 4 GiB slots of
/// [`BoundsChecks::Elided`] cannot be reserved, builds it with explicit
/// bounds checks instead and notes that in `sizing`.
///
/// # Errors
/// When wasmtime rejects the configuration or cannot reserve the pool.
pub fn new(sizing: &mut PoolSizing) -> anyhow::Result<Engine> {
    match build(sizing) {
        Err(err) if sizing.bounds_checks == BoundsChecks::Elided => {
            tracing::debug!("4 GiB memory slots could not be reserved ({err:#}); guest code checks its accesses");
            sizing.bounds_checks = BoundsChecks::Explicit(WhyExplicit::ReserveFailed);
            build(sizing)
        }
        built => built,
    }
}

/// [`new`] with `sizing` as it is.
fn build(sizing: &PoolSizing) -> anyhow::Result<Engine> {
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
        .memory_reservation(sizing.reservation())
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
                sizing.slots,
                sizing.reservation()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_pages_unless_asked_or_too_many_slots() {
        assert_eq!(bounds_checks_for(10_239, None), BoundsChecks::Elided);
        assert_eq!(bounds_checks_for(10_239, Some("")), BoundsChecks::Elided);
        assert_eq!(
            bounds_checks_for(1, Some("explicit")),
            BoundsChecks::Explicit(WhyExplicit::Asked)
        );
        // vm.max_map_count raised to 262 144 allows 43 000 slots: 172 TiB.
        assert_eq!(
            bounds_checks_for(43_000, None),
            BoundsChecks::Explicit(WhyExplicit::TooManySlots)
        );
    }

    #[test]
    fn a_slot_reserves_the_32_bit_space_or_the_heap() {
        let mut sizing = pool_slots(2, 16 << 20);
        sizing.bounds_checks = BoundsChecks::Elided;
        assert_eq!(sizing.reservation(), 4 << 30);
        sizing.bounds_checks = BoundsChecks::Explicit(WhyExplicit::Asked);
        assert_eq!(sizing.reservation(), 16 << 20);
        new(&mut sizing).expect("a small pool with bounds checks");
        assert_eq!(
            sizing.bounds_checks,
            BoundsChecks::Explicit(WhyExplicit::Asked)
        );
    }
}
