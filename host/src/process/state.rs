//! The store data of a micro-process: one field per capability context.

use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::abi::handles::IoCtx;
use crate::app::App;
use crate::host_memory::HostMemory;

use super::table::ProcessInfo;
use super::{Pid, Runtime, TreeMember};

/// Everything a process's host imports can reach. A guest can touch only what
/// is in here: its connection, its handles, its WASI context.
pub struct ProcessState {
    /// This process's id, for logs.
    pub pid: Pid,
    /// The app this process is an instance of: its limits and grants.
    pub app: Arc<App>,
    /// The kernel and reactor, for `spawn`, `sleep` and `connect`.
    pub runtime: Runtime,
    /// Layer 0: WASI preview 1 with the connection as stdin/stdout.
    pub wasi: WasiP1Ctx,
    /// Layer 1: the handle table.
    pub io: IoCtx,
    /// The micro-heap cap, and whether the guest ran into it.
    pub heap: HeapLimiter,
    /// The guest's exported `memory`, once an import has looked it up.
    pub memory: Option<wasmtime::Memory>,
    /// Bytes the host buffers for this process (pipes it reads, stdio),
    /// against `max_host_memory`.
    pub host_memory: Arc<HostMemory>,
    /// Its place in its connection's process tree, for the spawn quota.
    pub tree: TreeMember,
    /// Its kernel task's polled time when it started: its CPU time in all
    /// (for `max_cpu`) is the task's polled time since (`process::cpu_time`).
    pub cpu_start: std::time::Duration,
}

/// Caps a process's linear memory and table growth; remembers a refused
/// growth so that the trap that usually follows can be explained in the log.
#[derive(Debug)]
pub struct HeapLimiter {
    /// Largest linear memory in bytes.
    pub max_memory: usize,
    /// The largest growth refused so far, in bytes asked for.
    pub refused: Option<usize>,
    /// The process's entry in the process table: told each new size.
    pub info: Arc<ProcessInfo>,
}

/// Most table elements a process may have; equal to the pool's table slot size.
pub const MAX_TABLE_ELEMENTS: usize = 10_000;

impl ResourceLimiter for HeapLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.refused = Some(self.refused.map_or(desired, |r| r.max(desired)));
            return Ok(false);
        }
        self.info.set_heap_bytes(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

impl std::fmt::Debug for ProcessState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessState")
            .field("pid", &self.pid)
            .field("app", &self.app.name)
            .field("io", &self.io)
            .field("heap", &self.heap)
            .field("host_memory", &self.host_memory)
            .field("tree", &self.tree)
            .finish_non_exhaustive()
    }
}
