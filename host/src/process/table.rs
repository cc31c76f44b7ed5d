//! The table of live processes, for the admin endpoint's `/processes` and
//! the micro-heap gauge of `/metrics`.
//!
//! A process enters when it starts and leaves when its [`Listed`] guard
//! drops, however it ends. What changes while it lives (its state, CPU
//! time, micro-heap size) sits in relaxed atomics the process updates
//! itself, so the table's one lock is taken twice per process life and by
//! a reader, never per poll. The table is a vector: entering pushes,
//! leaving swaps the last entry into the hole (each entry knows its
//! index), so neither hashes nor allocates beyond the vector's growth.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
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
    /// Its index in the table; changed only under the table's lock.
    index: AtomicUsize,
}

impl ProcessInfo {
    /// A process that started at `started`, not in the table (see
    /// [`Listed::enter`]).
    pub fn new(pid: Pid, app: Arc<str>, peer: Option<SocketAddr>, started: Instant) -> ProcessInfo {
        ProcessInfo {
            pid,
            app,
            peer,
            started,
            state: AtomicU8::new(RunState::Starting as u8),
            cpu_nanos: AtomicU64::new(0),
            heap_bytes: AtomicU64::new(0),
            index: AtomicUsize::new(usize::MAX),
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
    /// Enters a new process, started at `started`, into the table.
    ///
    /// # Example
    /// ```
    /// use mnvkd_host::process::{table, Pid};
    /// use std::time::Instant;
    ///
    /// let pid = Pid::next();
    /// let listed = table::Listed::enter(pid, "echo".into(), None, Instant::now());
    /// assert!(table::snapshot().iter().any(|p| p.pid == pid));
    /// drop(listed);
    /// assert!(!table::snapshot().iter().any(|p| p.pid == pid));
    /// ```
    pub fn enter(pid: Pid, app: Arc<str>, peer: Option<SocketAddr>, started: Instant) -> Listed {
        let info = Arc::new(ProcessInfo::new(pid, app, peer, started));
        let mut table = lock();
        info.index.store(table.len(), Ordering::Relaxed);
        table.push(Arc::clone(&info));
        Listed { info }
    }

    /// The entry, for the process to update.
    pub fn info(&self) -> &Arc<ProcessInfo> {
        &self.info
    }
}

impl Drop for Listed {
    fn drop(&mut self) {
        let mut table = lock();
        let index = self.info.index.load(Ordering::Relaxed);
        table.swap_remove(index);
        if let Some(moved) = table.get(index) {
            moved.index.store(index, Ordering::Relaxed);
        }
    }
}

/// Every live process now, in no particular order.
pub fn snapshot() -> Vec<Arc<ProcessInfo>> {
    lock().clone()
}

fn lock() -> std::sync::MutexGuard<'static, Vec<Arc<ProcessInfo>>> {
    static TABLE: OnceLock<Mutex<Vec<Arc<ProcessInfo>>>> = OnceLock::new();
    TABLE
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_leave_in_any_order_and_the_rest_stay_findable() {
        let now = Instant::now();
        let mut listed: Vec<Listed> = (0..5)
            .map(|_| Listed::enter(Pid::next(), "t".into(), None, now))
            .collect();
        let pids: Vec<Pid> = listed.iter().map(|l| l.info().pid).collect();
        // The first (swaps the last into its place), then the new last.
        drop(listed.remove(0));
        drop(listed.pop());
        let live: Vec<Pid> = snapshot().iter().map(|p| p.pid).collect();
        for (i, pid) in pids.iter().enumerate() {
            assert_eq!(live.contains(pid), (1..4).contains(&i), "{pid}");
        }
        drop(listed);
        let live: Vec<Pid> = snapshot().iter().map(|p| p.pid).collect();
        assert!(pids.iter().all(|pid| !live.contains(pid)));
    }
}
