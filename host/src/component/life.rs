//! The bookkeeping of a component's process, as `process::run` keeps it for
//! a module's: its entry in the process table, its metrics, its CPU and
//! wall limits, the log line of its end, and its place in the app's
//! process limit (taken by the starter, given back here).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::App;
use crate::kernel::{self, Kernel};
use crate::process::table::{Listed, ProcessInfo};
use crate::process::{Exit, HeapLimiter, Limited, Pid, WallLimit};

/// One process's life, from its start to its logged end.
#[derive(Debug)]
pub struct Life {
    app: Arc<App>,
    pid: Pid,
    /// In the process table while this lives.
    listed: Listed,
    /// When it started, for the spawn-time histogram.
    started: Instant,
    /// Its wall limit, until `limit` hands it over.
    wall: Option<WallLimit>,
}

impl Life {
    /// Starts the life of process `pid` of `app`, serving `peer`. The
    /// caller holds one of the app's process places; this gives it back.
    pub fn begin(app: &Arc<App>, kernel: &Kernel, pid: Pid, peer: Option<SocketAddr>) -> Life {
        let started = Instant::now();
        app.metrics.started.fetch_add(1, Ordering::Relaxed);
        // The CPU-budget clock starts over: the task may have run another
        // process before this one (one per request on a connection).
        kernel::compute::note_io();
        let limits = &app.settings.limits;
        Life {
            app: Arc::clone(app),
            pid,
            listed: Listed::enter(pid, Arc::clone(&app.name), peer, started),
            started,
            wall: limits.max_wall.map(|limit| WallLimit::start(limit, kernel)),
        }
    }

    /// Its entry in the process table.
    pub fn info(&self) -> Arc<ProcessInfo> {
        Arc::clone(self.listed.info())
    }

    /// When it started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// `life` under the app's `max_cpu` and `max_wall`, for a process whose
    /// task had been polled for `cpu_start` when it began.
    pub async fn limit<F>(&mut self, life: F, cpu_start: Duration) -> wasmtime::Result<()>
    where
        F: Future<Output = wasmtime::Result<()>>,
    {
        let life = std::pin::pin!(life);
        let max_cpu = self.app.settings.limits.max_cpu;
        Limited::new(life, cpu_start, max_cpu, self.wall.take(), self.info()).await
    }

    /// Ends the life: how the guest call ended (`result`), logged and counted.
    pub fn end(self, result: wasmtime::Result<()>, heap: &HeapLimiter) -> Exit {
        let exit = Exit::from_result(result, heap);
        exit.log(&self.app, self.pid);
        self.app.metrics.count_exit(&exit, heap.refused.is_some());
        exit
    }
}

impl Drop for Life {
    fn drop(&mut self) {
        self.app.processes.release();
    }
}
