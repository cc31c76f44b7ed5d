//! The run queue shared by all workers: woken tasks before preempted ones.
//!
//! A task woken by I/O has been waiting for the outside world and will usually
//! block again soon; a preempted task wants CPU. Serving the woken first keeps
//! echo latency at one poll instead of one slice per CPU hog, and a small
//! quota keeps the preempted from starving. One queue for all workers (not one
//! per worker with stealing) because with a few cores the lock is cheap and it
//! balances perfectly; docs/kernel.md has the measurements.

use std::collections::VecDeque;
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

#[derive(Debug, Default)]
pub(super) struct RunQueue {
    queues: Mutex<Queues>,
    /// Signalled once per push; workers wait here when both queues are empty.
    available: Condvar,
}

#[derive(Debug, Default)]
struct Queues {
    /// Tasks woken from outside, in wake order.
    woken: VecDeque<Arc<Task>>,
    /// Tasks that yielded at their epoch deadline, in yield order.
    yielded: VecDeque<Arc<Task>>,
    /// Woken tasks popped since the last yielded one; bounded by `WOKEN_STREAK_LIMIT`.
    woken_streak: u32,
}

impl RunQueue {
    pub(super) fn push(&self, task: Arc<Task>, priority: Priority) {
        {
            let mut queues = self.queues.lock().unwrap();
            match priority {
                Priority::Woken => queues.woken.push_back(task),
                Priority::Yielded => queues.yielded.push_back(task),
            }
        }
        self.available.notify_one();
    }

    /// Takes the next task to run, waiting while there is none.
    pub(super) fn pop(&self) -> Arc<Task> {
        let mut queues = self.queues.lock().unwrap();
        loop {
            if let Some(task) = queues.next() {
                return task;
            }
            queues = self.available.wait(queues).unwrap();
        }
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
