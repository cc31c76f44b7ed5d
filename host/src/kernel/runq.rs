//! The run queue shared by all workers: woken tasks before preempted ones.
//!
//! A task woken by I/O has been waiting for the outside world and will usually
//! block again soon; a preempted task wants CPU. Serving the woken first keeps
//! echo latency at one poll instead of one slice per CPU hog, and a small
//! quota keeps the preempted from starving. One queue for all workers (not one
//! per worker with stealing) because with a few cores the lock is cheap and it
//! balances perfectly; docs/kernel.md has the measurements.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::task::Task;
use crate::reactor::Reactor;

/// After this many woken tasks in a row, one preempted task runs if any waits.
const WOKEN_STREAK_LIMIT: u32 = 8;

/// After this many tasks taken from the queue without a turn of the
/// reactor, a worker looks for readiness (without waiting) before the next:
/// a queue that never empties must not hide new I/O for long.
const POPS_PER_TURN: u32 = 32;

/// How long the watch thread waits for readiness per turn while a CPU hog
/// runs; it re-checks whether hogs still run this often.
const WATCH_TURN: Duration = Duration::from_millis(1);

thread_local! {
    /// Whether this thread is in its own `Reactor::turn`, waking what
    /// became ready: a push from there needs no `Reactor::wake`, the turn
    /// returns by itself (the wake was an eventfd write, and an empty turn
    /// after it, per request on one worker).
    static TURNING_HERE: Cell<bool> = const { Cell::new(false) };
}

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
    /// Signalled once per push; workers wait here when both queues are empty
    /// and another thread turns the reactor.
    available: Condvar,
    /// Signalled when a CPU hog starts running and nobody watches for I/O.
    hog_started: Condvar,
    /// The sockets' readiness, turned by a worker with nothing to run.
    reactor: Arc<Reactor>,
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
    /// A thread is turning the reactor (or about to): no other may.
    turning: bool,
    /// ... and it is a worker waiting without a timeout: work pushed from
    /// elsewhere must interrupt it (`Reactor::wake`).
    turn_blocks: bool,
    /// Tasks popped since a worker last turned the reactor.
    pops_since_turn: u32,
    /// Tasks pushed as woken, ever: the watch thread compares it across a
    /// turn to tell whether the turn woke anyone.
    woken_pushes: u64,
}

impl RunQueue {
    /// A queue whose `preempt` makes running guests reach their epoch
    /// check, and whose workers turn `reactor` when they have nothing to run.
    pub(super) fn new(
        preempt: impl Fn() + Send + Sync + 'static,
        reactor: Arc<Reactor>,
    ) -> RunQueue {
        RunQueue {
            queues: Mutex::default(),
            available: Condvar::new(),
            hog_started: Condvar::new(),
            reactor,
            woken_waiting: AtomicBool::new(false),
            hogs_running: AtomicUsize::new(0),
            preempt: Box::new(preempt),
        }
    }

    pub(super) fn push(&self, task: Arc<Task>, priority: Priority) {
        self.push_and_wake(task, priority, true);
    }

    /// Queues `task` behind what waits, for the calling worker to take in
    /// its turn: no other worker is woken for it. A worker moving a task
    /// from its next slot to the queue (for fairness) uses this; waking an
    /// idle worker would only move the pair of processes passing messages
    /// to the other core, and every message after across cores (2 workers
    /// ran pipe ping-pong at 0.8M round trips/s against 1.1M on 1).
    pub(super) fn push_behind(&self, task: Arc<Task>) {
        self.push_and_wake(task, Priority::Woken, false);
    }

    fn push_and_wake(&self, task: Arc<Task>, priority: Priority, wake_others: bool) {
        let (preempt, wake_worker, wake_turner) = {
            let mut queues = self.queues.lock().unwrap();
            match priority {
                Priority::Woken => {
                    queues.woken.push_back(task);
                    queues.woken_pushes += 1;
                    self.woken_waiting.store(true, Ordering::Relaxed);
                }
                Priority::Yielded => queues.yielded.push_back(task),
            }
            if !wake_others {
                return;
            }
            // Every worker busy, one of them with a CPU hog, and a task woken
            // from outside (I/O, a timer): make the hogs check in now instead
            // of at the next tick (once per pop). Processes that block soon
            // anyway are not disturbed: each check costs them a callback.
            let preempt = priority == Priority::Woken
                && !Task::polling_here()
                && queues.idle == 0
                && !queues.turn_blocks
                && self.hogs_running.load(Ordering::Relaxed) > 0
                && !queues.preempt_requested;
            queues.preempt_requested |= preempt;
            // A worker waiting in the reactor runs it, unless an idle one can.
            let wake_turner = queues.idle == 0 && queues.turn_blocks && !TURNING_HERE.get();
            if wake_turner {
                // Once is enough: the turn returns and finds the queue.
                queues.turn_blocks = false;
            }
            (preempt, queues.idle > 0, wake_turner)
        };
        if preempt {
            (self.preempt)();
        }
        // A notify is a futex syscall even with nobody waiting: skip it then.
        if wake_worker {
            self.available.notify_one();
        }
        if wake_turner {
            self.reactor.wake();
        }
    }

    /// Takes the next task to run. With none, the worker turns the reactor
    /// (waiting for readiness itself, so the process it wakes runs on this
    /// thread), or, while another thread turns it, waits for a push.
    pub(super) fn pop(&self) -> Arc<Task> {
        let mut queues = self.queues.lock().unwrap();
        loop {
            let starving_io = queues.pops_since_turn >= POPS_PER_TURN
                || (queues.woken.is_empty() && !queues.yielded.is_empty());
            if starving_io && !queues.turning {
                // Work is queued, but I/O may be waiting too: look, don't wait.
                queues = self.turn_reactor(queues, Some(Duration::ZERO)).0;
            }
            if let Some(task) = queues.next() {
                queues.preempt_requested = false;
                queues.pops_since_turn += 1;
                self.woken_waiting
                    .store(!queues.woken.is_empty(), Ordering::Relaxed);
                return task;
            }
            if !queues.turning {
                queues = self.turn_reactor(queues, None).0;
                continue;
            }
            queues.idle += 1;
            queues = self.available.wait(queues).unwrap();
            queues.idle -= 1;
        }
    }

    /// Turns the reactor (nobody else may be: `turning` is false), waiting
    /// up to `timeout` with the queue unlocked; a wait without a timeout is
    /// interrupted by pushes (`turn_blocks`). Then another thread may turn
    /// it, and an idle worker is asked to if nothing is queued for it (so
    /// new I/O is seen while this one runs what the turn woke). Returns
    /// the queue locked again and the number of readiness events.
    fn turn_reactor<'a>(
        &'a self,
        mut queues: std::sync::MutexGuard<'a, Queues>,
        timeout: Option<Duration>,
    ) -> (std::sync::MutexGuard<'a, Queues>, usize) {
        queues.turning = true;
        queues.turn_blocks = timeout.is_none();
        queues.pops_since_turn = 0;
        drop(queues);
        TURNING_HERE.set(true);
        let events = self.reactor.turn(timeout);
        TURNING_HERE.set(false);
        let mut queues = self.queues.lock().unwrap();
        queues.turning = false;
        queues.turn_blocks = false;
        if queues.idle > 0 {
            self.available.notify_one();
        }
        (queues, events)
    }

    /// The watch thread: while a CPU hog runs and no worker turns the
    /// reactor, turns it (waiting at most [`WATCH_TURN`] at a time), so
    /// readiness is seen at once and the hog preempted for the process it
    /// wakes. Otherwise it sleeps. Runs forever.
    pub(super) fn watch(&self) -> ! {
        let mut queues = self.queues.lock().unwrap();
        loop {
            if self.hogs_running.load(Ordering::Relaxed) == 0 {
                queues = self.hog_started.wait(queues).unwrap();
                continue;
            }
            if queues.turning {
                // A worker turns it; look again shortly.
                drop(queues);
                std::thread::sleep(WATCH_TURN / 10);
                queues = self.queues.lock().unwrap();
                continue;
            }
            let pushes = queues.woken_pushes;
            let events;
            (queues, events) = self.turn_reactor(queues, Some(WATCH_TURN));
            if events > 0 && queues.woken_pushes == pushes {
                // Readiness for no waiting process: for the "hog" itself, a
                // busy server (one process serving many connections) that
                // is preempted at its ticks, not a spinner. Turning again
                // at once would take its core event after event (at 1000
                // connections, 240 context switches per 1000 requests, a
                // third of the CPU); look again after a turn's time, as a
                // tick would.
                drop(queues);
                std::thread::sleep(WATCH_TURN);
                queues = self.queues.lock().unwrap();
            }
        }
    }

    /// Counts a worker starting (`true`) or ending a poll of a CPU hog.
    pub(super) fn hog_running(&self, running: bool) {
        if running {
            if self.hogs_running.fetch_add(1, Ordering::Relaxed) == 0 {
                // The watch thread may sleep: with every worker busy, nobody
                // would see I/O until a hog's slice ends. Locked, so the
                // notify cannot fall between its check and its wait.
                let _queues = self.queues.lock().unwrap();
                self.hog_started.notify_one();
            }
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
