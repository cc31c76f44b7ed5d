//! A task: one process's future plus the scheduling state its waker updates.

use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::ptr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{RawWaker, RawWakerVTable, Waker};

use super::runq::{Priority, RunQueue};

pub(super) type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// In a run queue.
pub(super) const SCHEDULED: u8 = 1;
/// Being polled by a worker.
pub(super) const RUNNING: u8 = 2;
/// Woken from outside while running: requeue as woken.
pub(super) const WOKEN: u8 = 4;
/// Woken by itself while running (an epoch yield): requeue as yielded.
pub(super) const YIELDED: u8 = 8;
/// Completed; wakes are ignored.
pub(super) const DONE: u8 = 16;

thread_local! {
    /// The task this worker is polling, to tell a yield (self-wake) from I/O.
    static CURRENT: std::cell::Cell<*const Task> = const { std::cell::Cell::new(ptr::null()) };
    /// The run queue this worker serves (null on other threads).
    static WORKER_QUEUE: std::cell::Cell<*const RunQueue> = const { std::cell::Cell::new(ptr::null()) };
    /// A task woken by the task this worker is polling: it runs next on this
    /// worker, without a trip through the shared queue (see `worker::run`).
    static NEXT: std::cell::RefCell<Option<Arc<Task>>> = const { std::cell::RefCell::new(None) };
}

#[derive(Debug)]
pub(super) struct Task {
    /// Bit set of the constants above. Invariant: at most one of SCHEDULED and
    /// RUNNING is set, so at most one worker polls the task at a time.
    pub state: AtomicU8,
    /// The future and its accounting; locked only by the worker polling it.
    pub slot: Mutex<Slot>,
    /// Where the waker puts the task.
    pub runq: Arc<RunQueue>,
}

pub(super) struct Slot {
    /// `None` once the future completed or panicked.
    pub future: Option<BoxFuture>,
    /// Nanoseconds computed since the task last blocked (see `compute`).
    pub computed: u64,
    /// Nanoseconds the task has been polled in all; only grows.
    pub polled: u64,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("done", &self.future.is_none())
            .field("computed", &self.computed)
            .field("polled", &self.polled)
            .finish()
    }
}

impl Task {
    pub(super) fn spawn(future: BoxFuture, runq: &Arc<RunQueue>) {
        let task = Arc::new(Task {
            state: AtomicU8::new(SCHEDULED),
            slot: Mutex::new(Slot {
                future: Some(future),
                computed: 0,
                polled: 0,
            }),
            runq: Arc::clone(runq),
        });
        task.enqueue();
    }

    /// Marks `task` as the one being polled on this thread (or none).
    pub(super) fn set_current(task: Option<&Arc<Task>>) {
        CURRENT.with(|c| c.set(task.map_or(ptr::null(), Arc::as_ptr)));
    }

    /// Marks this thread as a worker of `runq`.
    pub(super) fn set_worker_queue(runq: &Arc<RunQueue>) {
        WORKER_QUEUE.with(|q| q.set(Arc::as_ptr(runq)));
    }

    /// The task to run next on this worker, if the last poll woke one.
    pub(super) fn take_next() -> Option<Arc<Task>> {
        NEXT.with(|next| next.borrow_mut().take())
    }

    /// Whether this thread is inside a task's poll (a worker running a process).
    pub(super) fn polling_here() -> bool {
        CURRENT.with(|c| !c.get().is_null())
    }

    fn schedule(self: &Arc<Self>) {
        let own = CURRENT.with(|c| ptr::eq(c.get(), Arc::as_ptr(self)));
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            let next = if state & (DONE | SCHEDULED) != 0 {
                return;
            } else if state & RUNNING != 0 {
                let flag = if own { YIELDED } else { WOKEN };
                if state & flag != 0 {
                    return;
                }
                state | flag
            } else {
                SCHEDULED
            };
            match self
                .state
                .compare_exchange(state, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) if next == SCHEDULED => {
                    self.enqueue();
                    return;
                }
                Ok(_) => return,
                Err(actual) => state = actual,
            }
        }
    }
}

impl Task {
    /// Queues a task just marked SCHEDULED. Woken or started by the process
    /// running on this worker (a pipe write, a child's exit, a `spawn`), it
    /// takes the worker's next slot: the waker is about to block (in
    /// `wait`, say), and the woken one is hot in cache; another worker
    /// taking it would cost a cross-thread wake each time (spawn+wait from
    /// a guest ran at 88-100k/s on 2 workers against 127-130k/s on 1). A
    /// task the slot held before goes to the shared queue, where an idle
    /// worker takes it.
    fn enqueue(self: &Arc<Self>) {
        let here = Task::polling_here()
            && WORKER_QUEUE.with(|q| ptr::eq(q.get(), Arc::as_ptr(&self.runq)));
        if !here {
            self.runq.push(Arc::clone(self), Priority::Woken);
            return;
        }
        let displaced = NEXT.with(|next| next.borrow_mut().replace(Arc::clone(self)));
        if let Some(task) = displaced {
            task.runq.push(task.clone(), Priority::Woken);
        }
    }
}

impl Task {
    /// A waker for `task` for the length of one poll, which counts no
    /// reference: `Waker::from(Arc::clone(task))` would add and drop one
    /// per poll, two atomic operations on the path of every message. A
    /// clone of it (what a process parks) holds a count, as any waker does.
    pub(super) fn waker_ref(task: &Arc<Task>) -> ManuallyDrop<Waker> {
        let data = Arc::as_ptr(task).cast::<()>();
        // SAFETY: `data` is an `Arc<Task>`'s pointer, as `VTABLE` expects;
        // the caller keeps `task` alive while it uses the waker, and the
        // `ManuallyDrop` keeps this waker, which owns no count, from
        // dropping one.
        ManuallyDrop::new(unsafe { Waker::from_raw(RawWaker::new(data, &VTABLE)) })
    }
}

/// The functions of every task waker: the data pointer is an `Arc<Task>`'s
/// (`Arc::into_raw`), owning one count, except in [`Task::waker_ref`]'s.
static VTABLE: RawWakerVTable = RawWakerVTable::new(clone_waker, wake, wake_by_ref, drop_waker);

unsafe fn clone_waker(data: *const ()) -> RawWaker {
    // SAFETY: `data` points to a live `Arc<Task>` (the waker cloned from
    // holds a count, or the task is being polled); the clone owns the new count.
    unsafe { Arc::increment_strong_count(data.cast::<Task>()) };
    RawWaker::new(data, &VTABLE)
}

unsafe fn wake(data: *const ()) {
    // SAFETY: a waker woken by value owns a count, which this takes over.
    let task = unsafe { Arc::from_raw(data.cast::<Task>()) };
    task.schedule();
}

unsafe fn wake_by_ref(data: *const ()) {
    // SAFETY: `data` points to a live `Arc<Task>`; `ManuallyDrop` leaves
    // its count with the waker.
    let task = ManuallyDrop::new(unsafe { Arc::from_raw(data.cast::<Task>()) });
    task.schedule();
}

unsafe fn drop_waker(data: *const ()) {
    // SAFETY: a dropped waker owns a count, which this gives back.
    drop(unsafe { Arc::from_raw(data.cast::<Task>()) });
}
