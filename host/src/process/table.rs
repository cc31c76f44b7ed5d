//! The table of live processes, for the admin endpoint's `/processes` and
//! the micro-heap gauge of `/metrics`.
//!
//! A process enters when it starts and leaves when its [`Listed`] guard
//! drops, however it ends. What changes while it lives (its state, CPU
//! time, micro-heap size) sits in relaxed atomics the process updates
//! itself, so the table's one lock is taken twice per process life and by
//! a reader, never per poll.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::Pid;

/// What a live process is doing, as `/processes` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Not polled yet: queued for its first turn.
    Starting,
    /// On a worker now.
    Running,
    /// Off the workers: blocked on I/O, a timer or a child, or queued.
    Waiting,
}

impl RunState {
    /// Its name in `/processes`.
    pub fn name(self) -> &'static str {
        match self {
            RunState::Starting => "starting",
            RunState::Running => "running",
            RunState::Waiting => "waiting",
        }
    }

    fn from_u8(value: u8) -> RunState {
        match value {
            0 => RunState::Starting,
            1 => RunState::Running,
            _ => RunState::Waiting,
        }
    }
}

/// One live process as the table holds it.
#[derive(Debug)]
pub struct ProcessInfo {
    /// Its pid.
    pub pid: Pid,
    /// Its app's name.
    pub app: Arc<str>,
    /// The client at the other end of its connection, if it has one.
    pub peer: Option<SocketAddr>,
    /// When it started.
    pub started: Instant,
    state: AtomicU8,
    cpu_nanos: AtomicU64,
    heap_bytes: AtomicU64,
}

impl ProcessInfo {
    /// A process that starts now, not in the table (see [`Listed::enter`]).
    pub fn new(pid: Pid, app: Arc<str>, peer: Option<SocketAddr>) -> ProcessInfo {
        ProcessInfo {
            pid,
            app,
            peer,
            started: Instant::now(),
            state: AtomicU8::new(RunState::Starting as u8),
            cpu_nanos: AtomicU64::new(0),
            heap_bytes: AtomicU64::new(0),
        }
    }

    /// Records what the process is doing.
    pub fn set_state(&self, state: RunState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// Records its CPU time so far.
    pub fn set_cpu_time(&self, cpu: Duration) {
        let nanos = u64::try_from(cpu.as_nanos()).unwrap_or(u64::MAX);
        self.cpu_nanos.store(nanos, Ordering::Relaxed);
    }

    /// Records the size of its linear memory.
    pub fn set_heap_bytes(&self, bytes: usize) {
        self.heap_bytes.store(bytes as u64, Ordering::Relaxed);
    }

    /// What it is doing now.
    pub fn state(&self) -> RunState {
        RunState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Its CPU time as last recorded (at its last poll).
    pub fn cpu_time(&self) -> Duration {
        Duration::from_nanos(self.cpu_nanos.load(Ordering::Relaxed))
    }

    /// The size of its linear memory in bytes.
    pub fn heap_bytes(&self) -> u64 {
        self.heap_bytes.load(Ordering::Relaxed)
    }
}

/// A process's place in the table: it leaves the table when this drops.
#[derive(Debug)]
pub struct Listed {
    info: Arc<ProcessInfo>,
}

impl Listed {
    /// Enters a new process into the table.
    ///
    /// # Example
    /// ```
    /// use mnvkd_host::process::{table, Pid};
    ///
    /// let pid = Pid::next();
    /// let listed = table::Listed::enter(pid, "echo".into(), None);
    /// assert!(table::snapshot().iter().any(|p| p.pid == pid));
    /// drop(listed);
    /// assert!(!table::snapshot().iter().any(|p| p.pid == pid));
    /// ```
    pub fn enter(pid: Pid, app: Arc<str>, peer: Option<SocketAddr>) -> Listed {
        let info = Arc::new(ProcessInfo::new(pid, app, peer));
        lock().insert(pid, Arc::clone(&info));
        Listed { info }
    }

    /// The entry, for the process to update.
    pub fn info(&self) -> &Arc<ProcessInfo> {
        &self.info
    }
}

impl Drop for Listed {
    fn drop(&mut self) {
        lock().remove(&self.info.pid);
    }
}

/// Every live process now, in no particular order.
pub fn snapshot() -> Vec<Arc<ProcessInfo>> {
    lock().values().cloned().collect()
}

fn lock() -> std::sync::MutexGuard<'static, HashMap<Pid, Arc<ProcessInfo>>> {
    static TABLE: OnceLock<Mutex<HashMap<Pid, Arc<ProcessInfo>>>> = OnceLock::new();
    TABLE
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
