//! The executor: a run queue of coroutines, the I/O waits and timers they
//! park on, and the one host call (`watch`, `sleep`, or the blocked
//! operation itself) made when none of them can run.
//!
//! I/O waits go to the host's interest set (`watch`): a handle is armed
//! when a coroutine starts waiting on it and the host reports it once
//! ready, so a wait costs the handles that changed or became ready, never
//! every handle waited on (a process serving a thousand connections waits
//! on a thousand).
//!
//! Single-threaded: a micro-process runs one thread, so the state lives in
//! thread-locals and wakers only push a task's number onto the run queue.

use std::cell::{Cell, RefCell};
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use crate::{sys, PollFd};

/// Task number of the future given to [`block_on`]; never a slab index.
const MAIN: usize = usize::MAX;

/// Task polls between two looks (a `poll` with timeout 0) at the I/O waits,
/// so coroutines that keep each other busy in the heap cannot starve those
/// waiting on handles.
const POLLS_PER_LOOK: u32 = 256;

/// Most reports one `watch` returns, and most changes one passes: arming
/// handles that are not open reports each at once, and the host wants
/// room for all of them.
const WATCH_BATCH: usize = 64;

/// Set in an I/O wait's result when it is the only thing any coroutine
/// waits for: the operation may block the process, since nothing else in
/// the heap could run meanwhile.
pub(crate) const EXCLUSIVE: u16 = 0x100;

thread_local! {
    static EXECUTOR: Executor = Executor::default();
    /// Woken task numbers, in wake order; separate from [`EXECUTOR`] so a
    /// waker never borrows what a running task may hold.
    static RUN_QUEUE: RefCell<VecDeque<usize>> = const { RefCell::new(VecDeque::new()) };
    /// Whether [`block_on`] is running (it does not nest).
    static IN_BLOCK_ON: Cell<bool> = const { Cell::new(false) };
}

/// Everything the coroutines of this process share.
#[derive(Default)]
struct Executor {
    /// Spawned coroutines by number; `None` while free or while running
    /// (taken out so that it can spawn).
    tasks: RefCell<Vec<Option<Task>>>,
    /// Free slots in `tasks`.
    free: RefCell<Vec<usize>>,
    /// Live spawned coroutines (running ones included).
    live: Cell<usize>,
    /// I/O waits by id; `None` once completed or dropped.
    waits: RefCell<Vec<Option<IoWait>>>,
    /// Free slots in `waits`.
    free_waits: RefCell<Vec<usize>>,
    /// Waits not completed yet.
    pending: Cell<usize>,
    /// Per handle waited on: its waits and what the host has armed.
    interests: RefCell<HashMap<i32, Interest, BuildHasherDefault<HandleHasher>>>,
    /// Handles whose waits changed since the host's interest set was last
    /// brought up to date.
    dirty: RefCell<Vec<i32>>,
    /// The changes of the last `watch`, kept for their allocation.
    changes: RefCell<Vec<PollFd>>,
    /// Timers, earliest first.
    timers: RefCell<BinaryHeap<Timer>>,
    /// Tie-breaker for timers with the same deadline: registration order.
    timer_seq: Cell<u64>,
    /// Whether [`block_on`]'s own future was woken.
    main_woken: Cell<bool>,
}

/// A spawned coroutine.
struct Task {
    /// Its body.
    future: Pin<Box<dyn Future<Output = ()>>>,
    /// Its waker, made once: the same waker every poll, so the waits it
    /// registers compare equal.
    waker: Waker,
    /// What `waker` wakes, to clear its queued mark.
    header: Arc<TaskWaker>,
}

/// A coroutine's interest in a handle.
struct IoWait {
    /// The handle.
    handle: i32,
    /// `PollFd::READABLE` and/or `PollFd::WRITABLE`.
    events: u16,
    /// Whom to wake.
    waker: Waker,
    /// What the host reported, once it did.
    result: Option<u16>,
}

/// The waits on one handle, and its entry in the host's interest set.
#[derive(Default)]
struct Interest {
    /// Ids of the waits on it.
    waits: Vec<usize>,
    /// The events armed in the host (0: not armed). The host disarms a
    /// handle when it reports it.
    armed: u16,
    /// Whether it is in [`Executor::dirty`].
    dirty: bool,
}

impl Interest {
    /// Notes that the waits on `handle` (this interest's) changed, once.
    fn mark_dirty(&mut self, handle: i32, dirty: &RefCell<Vec<i32>>) {
        if !self.dirty {
            self.dirty = true;
            dirty.borrow_mut().push(handle);
        }
    }
}

/// The hasher of handle numbers: one multiplication (Fibonacci hashing).
/// Handles are small integers the guest cannot choose, and SipHash cost
/// a few hundred instructions per request in a server's hot path.
#[derive(Default)]
struct HandleHasher(u64);

impl Hasher for HandleHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_i32(&mut self, value: i32) {
        self.0 = u64::from(value as u32).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A sleeping coroutine's deadline.
struct Timer {
    /// When, in [`now_ns`] nanoseconds.
    deadline: u64,
    /// Registration order.
    seq: u64,
    /// Whom to wake.
    waker: Waker,
}

impl PartialEq for Timer {
    fn eq(&self, other: &Timer) -> bool {
        (self.deadline, self.seq) == (other.deadline, other.seq)
    }
}

impl Eq for Timer {}

impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Timer) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timer {
    /// Reversed: `BinaryHeap` is a max-heap, the earliest must come first.
    fn cmp(&self, other: &Timer) -> std::cmp::Ordering {
        (other.deadline, other.seq).cmp(&(self.deadline, self.seq))
    }
}

/// The waker of one task: waking queues its number once.
struct TaskWaker {
    /// The task's number.
    id: usize,
    /// Whether the number is in the run queue now.
    queued: AtomicBool,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.id == MAIN {
            EXECUTOR.with(|executor| executor.main_woken.set(true));
        } else if !self.queued.swap(true, Ordering::Relaxed) {
            RUN_QUEUE.with(|queue| queue.borrow_mut().push_back(self.id));
        }
    }
}

/// Starts `future` as a new coroutine of this process; it first runs when
/// the running coroutine next waits (or, outside [`block_on`], once
/// `block_on` is called). Coroutines run in the order they are spawned and
/// woken.
pub(crate) fn spawn_boxed(future: Pin<Box<dyn Future<Output = ()>>>) {
    EXECUTOR.with(|executor| {
        let id = match executor.free.borrow_mut().pop() {
            Some(id) => id,
            None => {
                let mut tasks = executor.tasks.borrow_mut();
                tasks.push(None);
                tasks.len() - 1
            }
        };
        let header = Arc::new(TaskWaker {
            id,
            queued: AtomicBool::new(true),
        });
        executor.tasks.borrow_mut()[id] = Some(Task {
            future,
            waker: Waker::from(Arc::clone(&header)),
            header,
        });
        executor.live.set(executor.live.get() + 1);
        RUN_QUEUE.with(|queue| queue.borrow_mut().push_back(id));
    });
}

/// Runs `future` and every spawned coroutine until `future` completes;
/// returns its output. Coroutines still waiting then stay, and run again at
/// the next `block_on`.
///
/// # Panics
///
/// When every coroutine waits for another and none waits for a handle or a
/// timer: nothing could ever wake them (a deadlock in the heap). When called
/// from inside a coroutine (`block_on` does not nest: await instead).
///
/// # Examples
///
/// ```
/// use mnvkd_guest::task;
///
/// let (tx, rx) = task::channel(1);
/// task::spawn(async move { tx.send("from a coroutine").await.unwrap() }).detach();
/// assert_eq!(task::block_on(rx.recv()), Some("from a coroutine"));
/// ```
pub fn block_on<F: Future>(future: F) -> F::Output {
    assert!(
        !IN_BLOCK_ON.replace(true),
        "mnvkd_guest::task::block_on called from inside a coroutine"
    );
    // Cleared however this returns (a panic aborts a guest, but not a test).
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            IN_BLOCK_ON.set(false);
        }
    }
    let _leave = Leave;
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(TaskWaker {
        id: MAIN,
        queued: AtomicBool::new(false),
    }));
    let mut cx = Context::from_waker(&waker);
    EXECUTOR.with(|executor| executor.main_woken.set(true));
    let mut polls = 0u32;
    loop {
        if EXECUTOR.with(|executor| executor.main_woken.replace(false)) {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
            polls += 1;
        }
        let Some(id) = RUN_QUEUE.with(|queue| queue.borrow_mut().pop_front()) else {
            if !EXECUTOR.with(|executor| executor.main_woken.get()) {
                EXECUTOR.with(|executor| executor.wait(false));
            }
            polls = 0;
            continue;
        };
        run(id);
        polls += 1;
        if polls >= POLLS_PER_LOOK {
            polls = 0;
            EXECUTOR.with(|executor| executor.wait(true));
        }
    }
}

/// Polls task `id` once.
fn run(id: usize) {
    let task = EXECUTOR.with(|executor| {
        executor
            .tasks
            .borrow_mut()
            .get_mut(id)
            .and_then(Option::take)
    });
    let Some(mut task) = task else {
        return; // finished since it was woken
    };
    // Cleared before the poll: a wake during it queues the task again.
    task.header.queued.store(false, Ordering::Relaxed);
    let mut cx = Context::from_waker(&task.waker);
    let done = task.future.as_mut().poll(&mut cx).is_ready();
    EXECUTOR.with(|executor| {
        if done {
            executor.free.borrow_mut().push(id);
            executor.live.set(executor.live.get() - 1);
        } else {
            executor.tasks.borrow_mut()[id] = Some(task);
        }
    });
}

impl Executor {
    /// Blocks the process until an I/O wait or a timer fires (`look`: only
    /// looks, with timeout 0), and wakes whom it concerns.
    fn wait(&self, look: bool) {
        // Reading the clock is a host call: only when someone sleeps.
        let now = (!self.timers.borrow().is_empty()).then(now_ns);
        let next = now.and_then(|now| self.fire_timers(now));
        if next.is_some() && next == now {
            return;
        }
        let timeout_ms = match (look, next, now) {
            (true, _, _) => 0,
            // Whole milliseconds, rounded up.
            (false, Some(at), Some(now)) => {
                i32::try_from((at - now).div_ceil(1_000_000)).unwrap_or(i32::MAX)
            }
            (false, _, _) => -1,
        };
        match (self.pending.get(), timeout_ms) {
            (0, 0) => {}
            (0, -1) => panic!(
                "mnvkd_guest::task: every coroutine waits for another and none for a handle or a timer (deadlock)"
            ),
            (0, ms) => {
                // SAFETY: the import touches no memory.
                unsafe { sys::sleep(ms as u32) };
            }
            (1, -1) => {
                // The only thing anyone waits for: let that operation block.
                let only = self.waits.borrow().iter().enumerate().find_map(|(id, wait)| {
                    let wait = wait.as_ref()?;
                    wait.result.is_none().then_some((id, wait.events))
                });
                let (id, events) = only.expect("one wait is pending");
                self.complete(id, events | EXCLUSIVE);
            }
            (_, timeout_ms) => self.watch(timeout_ms),
        }
        // Timers that came due meanwhile fire at the next wait, which reads
        // the clock first: one clock read (a host call) per wait, not two.
    }

    /// Brings the host's interest set up to date with the waits, waits up
    /// to `timeout_ms` for a handle to be ready, and completes the waits
    /// on the handles reported.
    fn watch(&self, timeout_ms: i32) {
        let changes = self.changes();
        // Uninitialized: the host writes the reports it returns; zeroing
        // 64 entries (512 bytes) at every wait would be wasted.
        let mut ready = [const { MaybeUninit::<PollFd>::uninit() }; WATCH_BATCH];
        let mut chunks = changes.chunks(WATCH_BATCH).peekable();
        let mut reported = false;
        loop {
            let chunk = chunks.next().unwrap_or(&[]);
            // Only the last call may block, and only when nothing came yet:
            // every change is in before the process sleeps.
            let last = chunks.peek().is_none();
            let timeout_ms = if last && !reported { timeout_ms } else { 0 };
            // SAFETY: `chunk` is valid for reads of its length, `ready`
            // for writes of its length.
            let n = unsafe {
                sys::watch(
                    chunk.as_ptr(),
                    chunk.len(),
                    ready.as_mut_ptr().cast::<PollFd>(),
                    ready.len(),
                    timeout_ms,
                )
            };
            let n = usize::try_from(n).expect("watch with checked arguments failed");
            reported |= n > 0;
            for report in &ready[..n] {
                // SAFETY: `watch` wrote the first `n` entries.
                let report = unsafe { report.assume_init_ref() };
                self.reported(report.handle, report.revents);
            }
            if last {
                break;
            }
        }
        *self.changes.borrow_mut() = changes;
    }

    /// The changes that bring the host's interest set to the waits: for
    /// each handle whose waits changed, the events its pending waits want.
    fn changes(&self) -> Vec<PollFd> {
        let mut changes = std::mem::take(&mut *self.changes.borrow_mut());
        changes.clear();
        let mut dirty = self.dirty.borrow_mut();
        let mut interests = self.interests.borrow_mut();
        let waits = self.waits.borrow();
        for handle in dirty.drain(..) {
            let Some(interest) = interests.get_mut(&handle) else {
                continue;
            };
            interest.dirty = false;
            // Lazy only if every waiter asked for it: its operation reads
            // with `try-read` and waits again on `again`, so a stale
            // readable costs a retry where an exact one costs the host a
            // `poll(2)`. One that would block after a stale readable (the
            // blocking `accept`) gets the exact answer.
            let (wanted, all_lazy) = interest
                .waits
                .iter()
                .filter_map(|&id| waits[id].as_ref())
                .filter(|wait| wait.result.is_none())
                .fold((0, true), |(events, lazy), wait| {
                    (
                        events | wait.events,
                        lazy && wait.events & PollFd::LAZY != 0,
                    )
                });
            let wanted = if all_lazy {
                wanted
            } else {
                wanted & !PollFd::LAZY
            };
            if wanted != interest.armed {
                changes.push(PollFd::new(handle, wanted));
                interest.armed = wanted;
            }
        }
        changes
    }

    /// Completes the pending waits on `handle` that `revents` answers; the
    /// host disarmed it.
    fn reported(&self, handle: i32, revents: u16) {
        let mut interests = self.interests.borrow_mut();
        let Some(interest) = interests.get_mut(&handle) else {
            return;
        };
        interest.armed = 0;
        // Waits it does not answer (a writer, when readable came) are armed
        // again at the next wait.
        interest.mark_dirty(handle, &self.dirty);
        let mut waits = self.waits.borrow_mut();
        for &id in &interest.waits {
            let Some(Some(wait)) = waits.get_mut(id) else {
                continue;
            };
            if wait.result.is_none()
                && revents & (wait.events | PollFd::HANGUP | PollFd::INVALID) != 0
            {
                self.settle(wait, revents);
            }
        }
    }

    /// Wakes the waiter of wait `id` with `revents`.
    fn complete(&self, id: usize, revents: u16) {
        if let Some(Some(wait)) = self.waits.borrow_mut().get_mut(id) {
            self.settle(wait, revents);
        }
    }

    /// Gives `wait` its result and wakes its waiter.
    fn settle(&self, wait: &mut IoWait, revents: u16) {
        if wait.result.is_none() {
            self.pending.set(self.pending.get() - 1);
        }
        wait.result = Some(revents);
        // Only queues the task's number: no executor state is borrowed.
        wait.waker.wake_by_ref();
    }

    /// Wakes the sleepers whose deadline passed; returns the next deadline
    /// (`now` itself if any fired).
    fn fire_timers(&self, now: u64) -> Option<u64> {
        let mut timers = self.timers.borrow_mut();
        let mut fired = false;
        while timers.peek().is_some_and(|timer| timer.deadline <= now) {
            // Woken one by one, not gathered in a list: a list of
            // thousands could not grow in a nearly full heap. A wake only
            // queues a task number (room made by `reserve`).
            timers.pop().expect("peeked").waker.wake();
            fired = true;
        }
        if fired {
            Some(now)
        } else {
            timers.peek().map(|timer| timer.deadline)
        }
    }
}

/// I/O waits, and timers, one coroutine has at once as [`reserve`] counts
/// them: a connection's session waits for its handle and a timeout at most.
const WAITS_PER_TASK: usize = 2;

/// Handles waited on besides one per coroutine (the listener, pipes), as
/// [`reserve`] counts them.
const SPARE_HANDLES: usize = 8;

/// Makes room in the executor's tables for `tasks` more coroutines, and
/// for every coroutine to have [`WAITS_PER_TASK`] waits and timers, so
/// that they do not grow until more are spawned; `false` when the heap
/// cannot hold that.
///
/// The tables grow by doubling, so a process serving thousands of
/// connections asks for one large block now and then. In a nearly full
/// heap that block may not exist even where many small ones do, and a
/// failed allocation aborts the process (every connection in it): so a
/// server makes the room before it takes a connection, when failing only
/// means waiting (`Listener::serve_each`).
pub(crate) fn reserve(tasks: usize) -> bool {
    /// Room in `vec` for `len` items in all.
    fn upto<T>(vec: &mut Vec<T>, len: usize) -> bool {
        vec.try_reserve(len.saturating_sub(vec.len())).is_ok()
    }
    EXECUTOR.with(|executor| {
        let mut all_tasks = executor.tasks.borrow_mut();
        let task_slots = all_tasks.len().saturating_add(tasks);
        let wait_slots = task_slots.saturating_mul(WAITS_PER_TASK);
        let handles = task_slots.saturating_add(SPARE_HANDLES);
        let mut interests = executor.interests.borrow_mut();
        let more_handles = handles.saturating_sub(interests.len());
        let mut timers = executor.timers.borrow_mut();
        let more_timers = wait_slots.saturating_sub(timers.len());
        upto(&mut all_tasks, task_slots)
            && upto(&mut executor.free.borrow_mut(), task_slots)
            && upto(&mut executor.waits.borrow_mut(), wait_slots)
            && upto(&mut executor.free_waits.borrow_mut(), wait_slots)
            && interests.try_reserve(more_handles).is_ok()
            && upto(&mut executor.dirty.borrow_mut(), handles)
            && upto(&mut executor.changes.borrow_mut(), handles)
            && timers.try_reserve(more_timers).is_ok()
            && RUN_QUEUE.with(|queue| {
                let mut queue = queue.borrow_mut();
                let additional = task_slots.saturating_sub(queue.len());
                queue.try_reserve(additional).is_ok()
            })
    })
}

/// Registers interest in `events` on `handle`; returns the wait's id, for
/// [`wait_result`] and [`remove_wait`].
pub(crate) fn add_wait(handle: i32, events: u16, waker: &Waker) -> usize {
    EXECUTOR.with(|executor| {
        let wait = IoWait {
            handle,
            events,
            waker: waker.clone(),
            result: None,
        };
        let id = {
            let mut waits = executor.waits.borrow_mut();
            match executor.free_waits.borrow_mut().pop() {
                Some(id) => {
                    waits[id] = Some(wait);
                    id
                }
                None => {
                    waits.push(Some(wait));
                    waits.len() - 1
                }
            }
        };
        executor.pending.set(executor.pending.get() + 1);
        // One lookup: this runs on every wait.
        let mut interests = executor.interests.borrow_mut();
        let interest = interests.entry(handle).or_default();
        interest.waits.push(id);
        interest.mark_dirty(handle, &executor.dirty);
        id
    })
}

/// What the host reported for wait `id`, once it did.
pub(crate) fn wait_result(id: usize) -> Option<u16> {
    EXECUTOR.with(|executor| {
        executor
            .waits
            .borrow()
            .get(id)
            .and_then(|wait| wait.as_ref()?.result)
    })
}

/// Forgets wait `id` (completed, or its future dropped).
pub(crate) fn remove_wait(id: usize) {
    EXECUTOR.with(|executor| {
        let Some(wait) = executor
            .waits
            .borrow_mut()
            .get_mut(id)
            .and_then(Option::take)
        else {
            return;
        };
        executor.free_waits.borrow_mut().push(id);
        if wait.result.is_none() {
            executor.pending.set(executor.pending.get() - 1);
        }
        if let Some(interest) = executor.interests.borrow_mut().get_mut(&wait.handle) {
            interest.waits.retain(|&other| other != id);
            interest.mark_dirty(wait.handle, &executor.dirty);
        }
    });
}

/// Wakes `waker` at `deadline` ([`now_ns`] nanoseconds).
pub(crate) fn add_timer(deadline: u64, waker: &Waker) {
    EXECUTOR.with(|executor| {
        let seq = executor.timer_seq.get();
        executor.timer_seq.set(seq + 1);
        executor.timers.borrow_mut().push(Timer {
            deadline,
            seq,
            waker: waker.clone(),
        });
    });
}

/// The monotonic clock of timers, in nanoseconds: WASI's monotonic clock
/// read with the import itself, not through `Instant` (libc's
/// `clock_gettime` and `timespec` arithmetic cost some 300 instructions a
/// read, and the executor reads the clock at every wait while a timer is
/// pending).
#[cfg(target_arch = "wasm32")]
pub(crate) fn now_ns() -> u64 {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    extern "C" {
        // The signature std's own import has: the linker joins the two.
        fn clock_time_get(id: i32, precision: i64, time: *mut u64) -> i32;
    }
    const MONOTONIC: i32 = 1;
    let mut time = 0;
    // SAFETY: `time` is valid for an aligned 8-byte write. The monotonic
    // clock always exists; on an error `time` stays 0, which fires timers
    // early rather than never.
    unsafe { clock_time_get(MONOTONIC, 1, &mut time) };
    time
}

/// The monotonic clock of timers, in nanoseconds (natively: since its
/// first read).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn now_ns() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let since = EPOCH.get_or_init(std::time::Instant::now).elapsed();
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
}

/// Spawned coroutines alive now (running or waiting; not the future given
/// to [`block_on`]).
///
/// # Examples
///
/// ```
/// use mnvkd_guest::task;
///
/// task::block_on(async {
///     let (tx, rx) = task::channel::<()>(1);
///     task::spawn(async move { rx.recv().await }).detach();
///     task::yield_now().await;
///     assert_eq!(task::live(), 1); // waiting in `recv`
///     drop(tx);
///     task::yield_now().await;
///     assert_eq!(task::live(), 0);
/// });
/// ```
pub fn live() -> usize {
    EXECUTOR.with(|executor| executor.live.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `reserve` made room for is spawned without a table growing.
    #[test]
    fn spawning_what_was_reserved_grows_no_table() {
        assert!(reserve(100));
        let capacities = || {
            EXECUTOR.with(|executor| {
                (
                    executor.tasks.borrow().capacity(),
                    executor.free.borrow().capacity(),
                    RUN_QUEUE.with(|queue| queue.borrow().capacity()),
                )
            })
        };
        let before = capacities();
        assert!(before.0 >= 100 && before.1 >= 100 && before.2 >= 100);
        for _ in 0..100 {
            spawn_boxed(Box::pin(std::future::pending()));
        }
        assert_eq!(capacities(), before);
        assert!(!reserve(usize::MAX / 4), "more than the address space");
    }

    #[test]
    fn timers_pop_earliest_first() {
        let now = now_ns();
        let mut heap = BinaryHeap::new();
        for (i, ms) in [30u64, 10, 20].into_iter().enumerate() {
            heap.push(Timer {
                deadline: now + ms * 1_000_000,
                seq: i as u64,
                waker: Waker::noop().clone(),
            });
        }
        let order: Vec<u64> = std::iter::from_fn(|| heap.pop().map(|t| t.seq)).collect();
        assert_eq!(order, [1, 2, 0]);
    }
}
