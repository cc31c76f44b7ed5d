//! A worker thread: pop a task, poll it once, requeue or park it, repeat.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use super::clock;
use super::compute::{self, Slice};
use super::runq::{Priority, RunQueue};
use super::task::{Task, DONE, RUNNING, SCHEDULED, WOKEN, YIELDED};

/// Most tasks run in a row from the worker's next slot before the shared
/// queue gets a turn: two processes passing messages cannot hold a worker.
const NEXT_SLOT_STREAK: u32 = 16;

/// Runs tasks from `runq` forever, counting each poll in `polls`.
pub(super) fn run(runq: &Arc<RunQueue>, polls: &AtomicU64) -> ! {
    compute::set_queue(runq);
    Task::set_worker_queue(runq);
    loop {
        let task = runq.pop();
        // One clock read per poll: a poll's end is the next one's start.
        let mut now = poll_once(task, clock::now());
        let mut streak = 0;
        while let Some(next) = Task::take_next() {
            if streak == NEXT_SLOT_STREAK {
                runq.push_behind(next);
                break;
            }
            streak += 1;
            now = poll_once(next, now);
        }
        // Once per pop, not per poll: one relaxed add on a line only this
        // worker writes.
        polls.fetch_add(u64::from(streak) + 1, Ordering::Relaxed);
    }
}

/// Polls `task` once, starting at `started` (nanoseconds of
/// [`clock::now`]); returns when the poll ended.
fn poll_once(task: Arc<Task>, started: u64) -> u64 {
    task.state.store(RUNNING, Ordering::Release);
    let waker = Task::waker_ref(&task);
    let mut cx = Context::from_waker(&waker);
    let mut slot = task
        .slot
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (before, polled) = (slot.computed, slot.polled);
    let Some(future) = slot.future.as_mut() else {
        task.state.store(DONE, Ordering::Release);
        return started;
    };
    compute::enter(Slice {
        started,
        before,
        polled,
        ended: None,
    });
    let hog = before > 0;
    if hog {
        task.runq.hog_running(true);
    }
    Task::set_current(Some(&task));
    let result = catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx)));
    Task::set_current(None);
    if hog {
        task.runq.hog_running(false);
    }
    let slice = compute::leave();
    let ended = slice.and_then(|s| s.ended).unwrap_or_else(clock::now);
    let elapsed = ended.saturating_sub(started);
    slot.polled += elapsed;
    let computed = slice.map_or(0, |s| s.before + elapsed);
    match result {
        Ok(Poll::Pending) => {}
        Ok(Poll::Ready(())) => {
            slot.future = None;
            task.state.store(DONE, Ordering::Release);
            return ended;
        }
        Err(_) => {
            // The panic message went to stderr through the panic hook.
            tracing::error!("a process panicked inside the host; it was ended");
            slot.future = None;
            task.state.store(DONE, Ordering::Release);
            return ended;
        }
    }
    let mut state = task.state.load(Ordering::Acquire);
    loop {
        let (next, requeue) = if state & YIELDED != 0 {
            (SCHEDULED, Some(Priority::Yielded))
        } else if state & WOKEN != 0 {
            (SCHEDULED, Some(Priority::Woken))
        } else {
            (0, None)
        };
        match task
            .state
            .compare_exchange(state, next, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                // Preempted: the compute clock runs on. Blocked (even if already
                // woken again): the process waited, so its clock starts over.
                slot.computed = match requeue {
                    Some(Priority::Yielded) => computed,
                    _ => 0,
                };
                drop(slot);
                if let Some(priority) = requeue {
                    task.runq.push(Arc::clone(&task), priority);
                }
                return ended;
            }
            Err(actual) => state = actual,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::sync::Mutex;
    use std::task::Waker;
    use std::thread;
    use std::time::Duration;

    #[test]
    fn polled_time_grows_across_blocks_while_the_budget_starts_over() {
        let reactor = crate::reactor::Reactor::start().unwrap();
        let runq = Arc::new(RunQueue::new(|| {}, reactor));
        // What each poll sees: (polled before it, compute time since the block).
        let seen = Arc::new(Mutex::new(Vec::new()));
        let waker = Arc::new(Mutex::new(None::<Waker>));
        let (seen_in, waker_in) = (Arc::clone(&seen), Arc::clone(&waker));
        Task::spawn(
            Box::pin(poll_fn(move |cx| {
                let now = compute::current().expect("inside a poll");
                let polled = compute::polled_before().expect("inside a poll");
                seen_in.lock().unwrap().push((polled, now.since_block));
                thread::sleep(Duration::from_millis(20));
                *waker_in.lock().unwrap() = Some(cx.waker().clone());
                // Blocks (nothing to do until woken from outside).
                Poll::<()>::Pending
            })),
            &runq,
        );
        for _ in 0..3 {
            poll_once(runq.pop(), clock::now());
            // Woken from outside the poll: the task blocked and is queued again.
            waker.lock().unwrap().take().unwrap().wake();
        }
        let seen = seen.lock().unwrap();
        let ms = Duration::from_millis;
        assert_eq!(seen[0].0, Duration::ZERO);
        assert!(seen[1].0 >= ms(20) && seen[2].0 >= ms(40), "{seen:?}");
        assert!(
            seen.iter().all(|&(_, since_block)| since_block < ms(20)),
            "the budget's clock starts over at every block: {seen:?}"
        );
    }

    fn worker_queue() -> Arc<RunQueue> {
        let reactor = crate::reactor::Reactor::start().unwrap();
        let runq = Arc::new(RunQueue::new(|| {}, reactor));
        // This test's thread polls as a worker of `runq`.
        Task::set_worker_queue(&runq);
        runq
    }

    #[test]
    fn a_task_started_by_the_running_task_runs_next_on_its_worker() {
        let runq = worker_queue();
        let ran = Arc::new(Mutex::new(Vec::new()));
        let (queue, log) = (Arc::clone(&runq), Arc::clone(&ran));
        Task::spawn(
            Box::pin(async move {
                for child in ["first", "second"] {
                    let log = Arc::clone(&log);
                    Task::spawn(
                        Box::pin(async move { log.lock().unwrap().push(child) }),
                        &queue,
                    );
                }
            }),
            &runq,
        );
        // Spawned from outside a poll: the shared queue.
        assert_eq!(runq.lengths(), (1, 0));
        poll_once(runq.pop(), clock::now());
        // The second child holds the next slot; the first moved on to the
        // shared queue, where an idle worker would take it.
        assert_eq!(runq.lengths(), (1, 0));
        poll_once(
            Task::take_next().expect("a child in the next slot"),
            clock::now(),
        );
        assert_eq!(*ran.lock().unwrap(), ["second"]);
        poll_once(runq.pop(), clock::now());
        assert_eq!(*ran.lock().unwrap(), ["second", "first"]);
        assert!(Task::take_next().is_none());
    }

    #[test]
    fn a_polls_waker_counts_no_reference_and_a_parked_clone_holds_one() {
        let runq = worker_queue();
        let parked = Arc::new(Mutex::new(None::<Waker>));
        let slot = Arc::clone(&parked);
        let mut polls = 0;
        Task::spawn(
            Box::pin(poll_fn(move |cx| {
                polls += 1;
                if polls == 2 {
                    return Poll::Ready(());
                }
                *slot.lock().unwrap() = Some(cx.waker().clone());
                Poll::Pending
            })),
            &runq,
        );
        let task = runq.pop();
        poll_once(Arc::clone(&task), clock::now());
        assert_eq!(Arc::strong_count(&task), 2, "ours and the parked clone's");
        // Woken from outside a poll: the clone's count goes to the queue.
        parked.lock().unwrap().take().unwrap().wake();
        assert_eq!(Arc::strong_count(&task), 2, "ours and the queue's");
        poll_once(runq.pop(), clock::now());
        assert_eq!(Arc::strong_count(&task), 1, "done: only ours");
        assert_eq!(task.state.load(Ordering::Acquire), DONE);
    }
}
