//! The kernel: M processes multiplexed onto N worker threads.
//!
//! A process is a future (a wasmtime `call_async` on its own fiber). Workers
//! take ready tasks from a shared [`runq`], poll them once, and go on; a task
//! that blocks parks its waker with the reactor and leaves the worker free. A
//! ticker thread advances the wasmtime epoch every [`TICK`], which makes a
//! computing guest call back into [`compute`] and, past its slice, yield.
//!
//! A worker with nothing to run turns the reactor itself (thread-per-core:
//! readiness wakes a process on the thread that runs it); while every
//! worker runs a CPU hog, a watch thread turns it instead, so I/O still
//! preempts the hog at once. The kernel never reads or writes sockets: it
//! polls futures and requeues them when their wakers fire. See
//! docs/kernel.md for the choices and figures.

mod clock;
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

/// The epoch ticker's period: [`TICK`], unless `MNVKD_TICK_MS` says
/// otherwise. That is for measuring only (`scripts/bench-instr`): under
/// valgrind guest code runs some 50 times slower, so a 1 ms tick preempts it
/// every few requests, as often as the machine's load makes it, and the
/// instruction count per request would move with the load.
fn ticker_period() -> Duration {
    std::env::var("MNVKD_TICK_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(TICK, Duration::from_millis)
}

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
    /// Starts `threads` workers, which turn `reactor` when idle, the watch
    /// thread and the epoch ticker for `engine`.
    ///
    /// # Errors
    /// When a thread or the timer runtime cannot be started.
    pub fn start(
        threads: usize,
        engine: &wasmtime::Engine,
        reactor: &Arc<crate::reactor::Reactor>,
    ) -> anyhow::Result<Kernel> {
        clock::init();
        let preempt_engine = engine.clone();
        let runq = Arc::new(RunQueue::new(
            move || preempt_engine.increment_epoch(),
            Arc::clone(reactor),
        ));
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
        let watched = Arc::clone(&runq);
        thread::Builder::new()
            .name("mnvkd-watch".into())
            .spawn(move || watched.watch())
            .context("failed to start the watch thread")?;
        let engine = engine.clone();
        let tick = ticker_period();
        thread::Builder::new()
            .name("mnvkd-ticker".into())
            .spawn(move || loop {
                thread::sleep(tick);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reactor::Reactor;
    use std::future::poll_fn;
    use std::sync::mpsc;
    use std::sync::Mutex;
    use std::task::{Poll, Waker};

    /// The one worker waits in the reactor (nothing is queued, no socket is
    /// registered); a task woken from another thread must still run: the
    /// push interrupts the worker's turn. Without that, this test hangs.
    #[test]
    fn a_wake_from_another_thread_interrupts_a_worker_waiting_in_the_reactor() {
        let engine = wasmtime::Engine::default();
        let reactor = Reactor::start().unwrap();
        let kernel = Kernel::start(1, &engine, &reactor).unwrap();
        for round in 0..100 {
            let parked = Arc::new(Mutex::new(None::<Waker>));
            let (done, finished) = mpsc::channel();
            let slot = Arc::clone(&parked);
            let mut woken = false;
            kernel.spawn(poll_fn(move |cx| {
                if woken {
                    done.send(()).unwrap();
                    return Poll::Ready(());
                }
                woken = true;
                *slot.lock().unwrap() = Some(cx.waker().clone());
                Poll::Pending
            }));
            // Wait until the task parked; the worker then has nothing to run.
            let waker = loop {
                if let Some(waker) = parked.lock().unwrap().take() {
                    break waker;
                }
                thread::sleep(Duration::from_micros(100));
            };
            // Let the worker settle into its turn some of the time.
            if round % 2 == 0 {
                thread::sleep(Duration::from_millis(2));
            }
            waker.wake();
            finished
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("round {round}: the woken task never ran"));
        }
    }
}
