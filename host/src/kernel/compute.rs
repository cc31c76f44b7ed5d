//! How long the process being polled on this thread has computed.
//!
//! The worker records when it started polling a task and how much the task had
//! computed before; the epoch callback of the guest's store reads that here to
//! decide between going on, yielding, and ending a runaway process. "Computed"
//! means time spent in polls since the task last blocked or moved bytes: a
//! process that waits for I/O, or whose read or write went through at once
//! ([`note_io`]), starts over; one that is only preempted does not. So a
//! process streaming data as fast as the socket takes it is not a runaway.
//!
//! This clock serves fairness and catches endless loops fast; because any
//! wait or moved byte resets it, it bounds nothing in total. Beside it the
//! worker keeps each task's polled time in all, which never resets: the
//! clock of the hard limit `max_cpu` ([`polled_before`]).

use std::cell::{Cell, OnceCell};
use std::sync::Arc;
use std::time::Duration;

use super::clock::now;
use super::runq::RunQueue;

thread_local! {
    /// The poll in progress on this thread, if any.
    static SLICE: Cell<Option<Slice>> = const { Cell::new(None) };
    /// The run queue this worker serves; set once when the worker starts.
    static QUEUE: OnceCell<Arc<RunQueue>> = const { OnceCell::new() };
}

/// One poll of one task. Times are nanoseconds of the kernel's clock ([`now`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Slice {
    /// When the worker started this poll.
    pub started: u64,
    /// Compute time the task had accumulated before this poll; zeroed by [`note_io`].
    pub before: u64,
    /// Time the task was polled in all before this poll; never reset.
    pub polled: u64,
    /// When the poll ended, if the task read the clock as it returned
    /// ([`end_poll`]); the worker then reads it no more.
    pub ended: Option<u64>,
}

/// Compute time of the process currently running on this thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComputeTime {
    /// Time in the current poll: what the process has had of its turn.
    pub slice: Duration,
    /// Time computed since the process last blocked, this poll included.
    pub since_block: Duration,
    /// Whether a process woken by I/O is waiting for a worker.
    pub others_waiting: bool,
    /// Whether this process was preempted since it last blocked: a CPU hog,
    /// not a process that will block again in a moment.
    pub hog: bool,
    /// Time the task has been polled in all, this poll included: what its
    /// processes' CPU time is read from (see [`polled_before`]).
    pub polled: Duration,
}

/// Compute time of the task being polled on this thread; `None` outside a poll.
pub fn current() -> Option<ComputeTime> {
    SLICE.with(Cell::get).map(|slice| {
        let elapsed = now().saturating_sub(slice.started);
        ComputeTime {
            slice: Duration::from_nanos(elapsed),
            since_block: Duration::from_nanos(slice.before + elapsed),
            others_waiting: QUEUE.with(|queue| queue.get().is_some_and(|q| q.woken_waiting())),
            hog: slice.before > 0,
            polled: Duration::from_nanos(slice.polled + elapsed),
        }
    })
}

/// Time the task being polled on this thread was polled in all before this
/// poll (no clock read); `None` outside a poll. A process runs inside one
/// task from start to end, and that task polls nothing else meanwhile, so
/// its CPU time is this count now less this count when it started.
pub fn polled_before() -> Option<Duration> {
    SLICE
        .with(Cell::get)
        .map(|slice| Duration::from_nanos(slice.polled))
}

/// Time the task being polled on this thread has been polled in all, this
/// poll included, read as the poll ends: the caller returns from the poll
/// next, and the worker takes this reading as the poll's end instead of
/// reading the clock again. `None` outside a poll.
pub fn end_poll() -> Option<Duration> {
    SLICE.with(|cell| {
        let mut slice = cell.get()?;
        let now = now();
        slice.ended = Some(now);
        cell.set(Some(slice));
        Some(Duration::from_nanos(
            slice.polled + now.saturating_sub(slice.started),
        ))
    })
}

pub(super) fn set_queue(queue: &Arc<RunQueue>) {
    QUEUE.with(|cell| {
        let _ = cell.set(Arc::clone(queue));
    });
}

pub(super) fn enter(slice: Slice) {
    SLICE.with(|cell| cell.set(Some(slice)));
}

/// Records that the running process moved bytes: its CPU-budget clock starts
/// over, counted from the start of this poll (at most one slice early, and no
/// clock read on the I/O path).
pub fn note_io() {
    SLICE.with(|cell| {
        if let Some(mut slice) = cell.get() {
            slice.before = 0;
            cell.set(Some(slice));
        }
    });
}

/// Ends the poll; returns its slice as it stands (after any [`note_io`]).
pub(super) fn leave() -> Option<Slice> {
    SLICE.with(|cell| cell.take())
}
