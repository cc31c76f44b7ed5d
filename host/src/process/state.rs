//! The store data of a micro-process: one field per capability context.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime_wasi::p1::WasiP1Ctx;

use super::LazyWasi;

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
    /// Layer 0: WASI preview 1 with the connection as stdin/stdout, built
    /// on the guest's first call into wasmtime-wasi ([`ProcessState::wasi`]).
    pub wasi: LazyWasi,
    /// Its environment variables after the app's (CGI's, the peers'),
    /// served by `environ.rs`.
    pub env: Vec<(super::EnvText, super::EnvText)>,
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

impl ProcessState {
    /// The process's WASI preview-1 context, built now if this is the
    /// guest's first call that needs it.
    pub fn wasi(&mut self) -> &mut WasiP1Ctx {
        self.wasi.get(&self.app, self.pid)
    }
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
    /// The micro-heap bytes of all the app's live processes; this process's
    /// part is `charged`, given back when the limiter is dropped.
    pub app_heap: Arc<AppHeap>,
    /// Most bytes `app_heap` may reach (`max_app_memory`); `None`: no cap.
    pub max_app_memory: Option<u64>,
    /// Whether the refused growth was refused by `max_app_memory` (rather
    /// than `max_memory`).
    pub refused_by_app: bool,
    /// Bytes this process has added to `app_heap`.
    charged: u64,
}

impl HeapLimiter {
    /// A limiter for a new process of an app whose live micro-heaps are
    /// counted in `app_heap`.
    pub fn new(
        max_memory: usize,
        max_app_memory: Option<u64>,
        app_heap: Arc<AppHeap>,
        info: Arc<ProcessInfo>,
    ) -> HeapLimiter {
        HeapLimiter {
            max_memory,
            refused: None,
            info,
            app_heap,
            max_app_memory,
            refused_by_app: false,
            charged: 0,
        }
    }

    fn refuse(&mut self, desired: usize, by_app: bool) -> wasmtime::Result<bool> {
        if self.refused.is_none_or(|refused| desired >= refused) {
            self.refused = Some(desired);
            self.refused_by_app = by_app;
        }
        Ok(false)
    }
}

impl Drop for HeapLimiter {
    fn drop(&mut self) {
        self.app_heap.release(self.charged);
    }
}

/// The micro-heap bytes of all live processes of one app, against its
/// `max_app_memory`: so that many processes of one app, each within
/// `max_memory`, cannot take the machine between them. Shared by every
/// version of the app a reload makes.
#[derive(Debug, Default)]
pub struct AppHeap {
    /// Sum of the micro-heaps of the app's live processes (their
    /// [`HeapLimiter`]s' charges), in bytes.
    bytes: AtomicU64,
}

impl AppHeap {
    /// Bytes in the app's live micro-heaps.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Adds `delta` bytes if the total stays within `cap`.
    fn try_charge(&self, delta: u64, cap: Option<u64>) -> bool {
        self.bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |bytes| {
                let total = bytes.checked_add(delta)?;
                cap.is_none_or(|cap| total <= cap).then_some(total)
            })
            .is_ok()
    }

    /// Gives back `delta` bytes.
    fn release(&self, delta: u64) {
        self.bytes.fetch_sub(delta, Ordering::AcqRel);
    }
}

/// Most table elements a process may have; equal to the pool's table slot size.
pub const MAX_TABLE_ELEMENTS: usize = 10_000;

impl ResourceLimiter for HeapLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            return self.refuse(desired, false);
        }
        let delta = desired.saturating_sub(current) as u64;
        if !self.app_heap.try_charge(delta, self.max_app_memory) {
            return self.refuse(desired, true);
        }
        self.charged += delta;
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
