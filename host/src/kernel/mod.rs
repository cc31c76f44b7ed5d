//! The kernel: M processes multiplexed onto N worker threads.
//!
//! A process is a future (a wasmtime `call_async` on its own fiber). Workers
//! take ready tasks from a shared [`runq`], poll them once, and go on; a task
//! that blocks parks its waker with the reactor and leaves the worker free. A
//! ticker thread advances the wasmtime epoch every [`TICK`], which makes a
//! computing guest call back into [`compute`] and, past its slice, yield.
//!
//! The kernel never touches sockets: it only polls futures and requeues them
//! when their wakers fire. See docs/kernel.md for the choices and figures.

pub mod compute;
mod runq;
mod task;
pub mod timer;
mod worker;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;

use runq::RunQueue;
use task::Task;
use timer::{Sleep, Timers};

/// Period of the epoch ticker: the longest a guest computes before it yields
/// to other processes waiting for a worker.
pub const TICK: Duration = Duration::from_millis(1);

/// The shortest turn a guest gets before it yields to a process woken by I/O.
/// When every worker is busy, a wake advances the epoch at once, so the woken
/// process waits about this long instead of up to a whole [`TICK`].
pub const MIN_SLICE: Duration = Duration::from_micros(50);

/// Handle to the running kernel: spawn processes onto it.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// Where woken and preempted tasks wait for a worker.
    runq: Arc<RunQueue>,
    /// Number of worker threads.
    threads: usize,
    /// Deadlines of sleeping processes.
    timers: Arc<Timers>,
    /// Tasks each worker has polled, by worker index.
    polls: Arc<[WorkerPolls]>,
}

/// One worker's poll count, alone on its cache line so that workers do not
/// slow each other down counting.
#[derive(Debug, Default)]
#[repr(align(64))]
struct WorkerPolls(AtomicU64);

/// What the kernel is doing, for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelStats {
    /// Tasks woken (by I/O, a timer, another process) waiting for a worker.
    pub woken_queued: usize,
    /// Preempted tasks waiting for a worker.
    pub preempted_queued: usize,
    /// Polls each worker has made, by worker index.
    pub polls: Vec<u64>,
}

impl Kernel {
    /// Starts `threads` workers and the epoch ticker for `engine`.
    ///
    /// # Errors
    /// When a thread or the timer runtime cannot be started.
    pub fn start(threads: usize, engine: &wasmtime::Engine) -> anyhow::Result<Kernel> {
        let preempt_engine = engine.clone();
        let runq = Arc::new(RunQueue::new(move || preempt_engine.increment_epoch()));
        // wasmtime-wasi's poll_oneoff (a guest's sleep) waits on tokio's timer;
        // this runtime only drives that timer, on one thread of its own.
        let timers = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mnvkd-timer")
            .enable_time()
            .build()
            .context("failed to start the timer runtime")?;
        let timers = Arc::new(timers);
        let polls: Arc<[WorkerPolls]> = (0..threads).map(|_| WorkerPolls::default()).collect();
        for index in 0..threads {
            let runq = Arc::clone(&runq);
            let timers = Arc::clone(&timers);
            let polls = Arc::clone(&polls);
            thread::Builder::new()
                .name(format!("mnvkd-worker-{index}"))
                .spawn(move || {
                    let _timer_context = timers.enter();
                    worker::run(&runq, &polls[index].0)
                })
                .with_context(|| format!("failed to start worker {index}"))?;
        }
        let engine = engine.clone();
        thread::Builder::new()
            .name("mnvkd-ticker".into())
            .spawn(move || loop {
                thread::sleep(TICK);
                engine.increment_epoch();
            })
            .context("failed to start the epoch ticker")?;
        let timers = Timers::start()?;
        Ok(Kernel {
            runq,
            threads,
            timers,
            polls,
        })
    }

    /// The run queue's lengths and each worker's poll count now.
    pub fn stats(&self) -> KernelStats {
        let (woken_queued, preempted_queued) = self.runq.lengths();
        KernelStats {
            woken_queued,
            preempted_queued,
            polls: self
                .polls
                .iter()
                .map(|p| p.0.load(Ordering::Relaxed))
                .collect(),
        }
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// A future that completes at `deadline`.
    pub fn sleep_until(&self, deadline: Instant) -> Sleep {
        self.timers.sleep_until(deadline)
    }

    /// Queues `future` to run on some worker; it runs until it completes.
    pub fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        Task::spawn(Box::pin(future), &self.runq);
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Kernel>();
};
