//! What an app's processes did, counted for the admin endpoint's `/metrics`.
//!
//! Plain relaxed atomics bumped where the thing happens (an accept, a
//! process's start and end, a byte through a connection): no lock, no
//! allocation, so counting costs a few nanoseconds per event. Shared by
//! every version of an app, like its process count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::process::{Exit, Limit};

/// Upper bounds, in seconds, of the spawn-latency histogram's buckets:
/// from the pool's few microseconds to a cold page-fault storm.
pub const SPAWN_BUCKETS: [f64; 10] = [
    5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 1e-2, 1e-1,
];

/// One app's counters.
///
/// # Example
/// ```
/// use mnvkd_host::app::AppMetrics;
/// use std::sync::atomic::Ordering;
///
/// let metrics = AppMetrics::default();
/// metrics.count_bytes_in(5);
/// assert_eq!(metrics.bytes_in.load(Ordering::Relaxed), 5);
/// ```
#[derive(Debug, Default)]
pub struct AppMetrics {
    /// Connections accepted for the app.
    pub connections: AtomicU64,
    /// Processes started (each connection's, each request's, each child).
    pub started: AtomicU64,
    /// Processes ended, however they ended.
    pub ended: AtomicU64,
    /// Processes ended by a trap (not by a limit).
    pub trapped: AtomicU64,
    /// Processes ended by `--cpu-budget`.
    pub killed_cpu_budget: AtomicU64,
    /// Processes ended by `--max-cpu`.
    pub killed_max_cpu: AtomicU64,
    /// Processes ended by `--max-wall`.
    pub killed_max_wall: AtomicU64,
    /// Processes that ended after the micro-heap cap refused them memory.
    pub killed_memory: AtomicU64,
    /// Bytes read from the app's connections.
    pub bytes_in: AtomicU64,
    /// Bytes written to the app's connections.
    pub bytes_out: AtomicU64,
    /// Capability checks that refused a guest (e.g. `connect` outside `allow_outbound`).
    pub denied: AtomicU64,
    /// Spawn latency (process start to `_start` called), per bucket of
    /// [`SPAWN_BUCKETS`] (not cumulative), plus one for the rest.
    pub spawn_buckets: [AtomicU64; SPAWN_BUCKETS.len() + 1],
    /// Sum of all spawn latencies, in nanoseconds.
    pub spawn_nanos: AtomicU64,
}

impl AppMetrics {
    /// Counts `n` bytes read from a connection.
    pub fn count_bytes_in(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts `n` bytes written to a connection.
    pub fn count_bytes_out(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts one spawn that took `latency` from start to `_start`.
    pub fn count_spawn(&self, latency: Duration) {
        let seconds = latency.as_secs_f64();
        let bucket = SPAWN_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(SPAWN_BUCKETS.len());
        self.spawn_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.spawn_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Counts a process's end: always `ended`, and the cause when it was
    /// killed; `out_of_memory` when the micro-heap cap had refused it.
    pub fn count_exit(&self, exit: &Exit, out_of_memory: bool) {
        self.ended.fetch_add(1, Ordering::Relaxed);
        let Exit::Failed(failure) = exit else {
            return;
        };
        let counter = match failure.limit {
            Some(Limit::CpuBudget) => &self.killed_cpu_budget,
            Some(Limit::MaxCpu) => &self.killed_max_cpu,
            Some(Limit::MaxWall) => &self.killed_max_wall,
            None if out_of_memory => &self.killed_memory,
            None => &self.trapped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::Failure;

    #[test]
    fn spawn_latencies_fall_in_their_bucket() {
        let metrics = AppMetrics::default();
        metrics.count_spawn(Duration::from_micros(3));
        metrics.count_spawn(Duration::from_micros(30));
        metrics.count_spawn(Duration::from_secs(1));
        let counts: Vec<u64> = metrics
            .spawn_buckets
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts, [1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(metrics.spawn_nanos.load(Ordering::Relaxed), 1_000_033_000);
    }

    #[test]
    fn exits_count_by_cause() {
        let metrics = AppMetrics::default();
        let killed = |limit| {
            Exit::Failed(Failure {
                cause: String::new(),
                limit,
            })
        };
        metrics.count_exit(&Exit::Exited(0), false);
        metrics.count_exit(&killed(None), false);
        metrics.count_exit(&killed(None), true);
        metrics.count_exit(&killed(Some(Limit::MaxCpu)), false);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        assert_eq!(get(&metrics.ended), 4);
        assert_eq!(get(&metrics.trapped), 1);
        assert_eq!(get(&metrics.killed_memory), 1);
        assert_eq!(get(&metrics.killed_max_cpu), 1);
        assert_eq!(get(&metrics.killed_cpu_budget), 0);
    }
}
