//! The run queue shared by all workers: woken tasks before preempted ones.
//!
//! A task woken by I/O has been waiting for the outside world and will usually
//! block again soon; a preempted task wants CPU. Serving the woken first keeps
//! echo latency at one poll instead of one slice per CPU hog, and a small
//! quota keeps the preempted from starving. One queue for all workers (not one
//! per worker with stealing) because with a few cores the lock is cheap and it
//! balances perfectly; docs/kernel.md has the measurements.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use super::task::Task;

/// After this many woken tasks in a row, one preempted task runs if any waits.
const WOKEN_STREAK_LIMIT: u32 = 8;

/// Why a task is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Priority {
    /// New, or woken by something outside itself (I/O, another process).
    Woken,
    /// Preempted by the epoch ticker; still has work to do.
    Yielded,
}

pub(super) struct RunQueue {
    queues: Mutex<Queues>,
    /// Signalled once per push; workers wait here when both queues are empty.
    available: Condvar,
    /// Whether a woken task is waiting; read by running guests' epoch callbacks.
    woken_waiting: AtomicBool,
    /// Workers now polling a CPU hog (a task preempted since it last blocked).
    hogs_running: AtomicUsize,
    /// Makes running guests check in soon (advances the wasmtime epoch).
    preempt: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for RunQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunQueue")
            .field("queues", &self.queues)
            .field("woken_waiting", &self.woken_waiting)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Queues {
    /// Tasks woken from outside, in wake order.
    woken: VecDeque<Arc<Task>>,
    /// Tasks that yielded at their epoch deadline, in yield order.
    yielded: VecDeque<Arc<Task>>,
    /// Woken tasks popped since the last yielded one; bounded by `WOKEN_STREAK_LIMIT`.
    woken_streak: u32,
    /// Workers waiting on `available`.
    idle: usize,
    /// A preemption was requested and no worker has popped a task since.
    preempt_requested: bool,
}

impl RunQueue {
    /// A queue whose `preempt` makes running guests reach their epoch check.
    pub(super) fn new(preempt: impl Fn() + Send + Sync + 'static) -> RunQueue {
        RunQueue {
            queues: Mutex::default(),
            available: Condvar::new(),
            woken_waiting: AtomicBool::new(false),
            hogs_running: AtomicUsize::new(0),
            preempt: Box::new(preempt),
        }
    }

    pub(super) fn push(&self, task: Arc<Task>, priority: Priority) {
        let (preempt, wake_worker) = {
            let mut queues = self.queues.lock().unwrap();
            match priority {
                Priority::Woken => {
                    queues.woken.push_back(task);
                    self.woken_waiting.store(true, Ordering::Relaxed);
                }
                Priority::Yielded => queues.yielded.push_back(task),
            }
            // Every worker busy, one of them with a CPU hog, and a task woken
            // from outside (I/O, a timer): make the hogs check in now instead
            // of at the next tick (once per pop). Processes that block soon
            // anyway are not disturbed: each check costs them a callback.
            let preempt = priority == Priority::Woken
                && !Task::polling_here()
                && queues.idle == 0
                && self.hogs_running.load(Ordering::Relaxed) > 0
                && !queues.preempt_requested;
            queues.preempt_requested |= preempt;
            (preempt, queues.idle > 0)
        };
        if preempt {
            (self.preempt)();
        }
        // A notify is a futex syscall even with nobody waiting: skip it then.
        if wake_worker {
            self.available.notify_one();
        }
    }

    /// Takes the next task to run, waiting while there is none.
    pub(super) fn pop(&self) -> Arc<Task> {
        let mut queues = self.queues.lock().unwrap();
        loop {
            if let Some(task) = queues.next() {
                queues.preempt_requested = false;
                self.woken_waiting
                    .store(!queues.woken.is_empty(), Ordering::Relaxed);
                return task;
            }
            queues.idle += 1;
            queues = self.available.wait(queues).unwrap();
            queues.idle -= 1;
        }
    }

    /// Counts a worker starting (`true`) or ending a poll of a CPU hog.
    pub(super) fn hog_running(&self, running: bool) {
        if running {
            self.hogs_running.fetch_add(1, Ordering::Relaxed);
        } else {
            self.hogs_running.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// How many tasks wait: (woken, preempted).
    pub(super) fn lengths(&self) -> (usize, usize) {
        let queues = self.queues.lock().unwrap();
        (queues.woken.len(), queues.yielded.len())
    }

    /// Whether a woken task waits for a worker.
    pub(super) fn woken_waiting(&self) -> bool {
        self.woken_waiting.load(Ordering::Relaxed)
    }
}

impl Queues {
    fn next(&mut self) -> Option<Arc<Task>> {
        let starved = self.woken_streak >= WOKEN_STREAK_LIMIT && !self.yielded.is_empty();
        if !starved {
            if let Some(task) = self.woken.pop_front() {
                self.woken_streak += 1;
                return Some(task);
            }
        }
        self.woken_streak = 0;
        self.yielded.pop_front().or_else(|| self.woken.pop_front())
    }
}
