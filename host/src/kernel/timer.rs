//! Timers: a thread that wakes sleeping processes at their deadlines.
//!
//! Timers are kept in a map ordered by (deadline, id), so equal deadlines stay
//! distinct and the earliest is the first entry. The thread sleeps on a
//! condition variable until the earliest deadline or until an earlier timer is
//! added. A [`Sleep`] removes its entry when dropped, so a cancelled wait (a
//! `poll` that returned on I/O, a killed process) leaves nothing behind.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Instant;

use anyhow::Context as _;

/// The timer table and its thread.
#[derive(Debug)]
pub struct Timers {
    /// Pending timers by (deadline, id); each waker is woken once, at its deadline.
    pending: Mutex<BTreeMap<(Instant, u64), Waker>>,
    /// Signalled when a timer earlier than all others is added.
    changed: Condvar,
    /// Next timer id; only grows.
    next_id: AtomicU64,
}

impl Timers {
    /// Starts the timer thread.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start() -> anyhow::Result<Arc<Timers>> {
        let timers = Arc::new(Timers {
            pending: Mutex::new(BTreeMap::new()),
            changed: Condvar::new(),
            next_id: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&timers);
        thread::Builder::new()
            .name("mnvkd-timers".into())
            .spawn(move || fire(weak))
            .context("failed to start the timer thread")?;
        Ok(timers)
    }

    /// A future that completes at `deadline`.
    pub fn sleep_until(self: &Arc<Self>, deadline: Instant) -> Sleep {
        Sleep {
            timers: Arc::clone(self),
            deadline,
            id: None,
        }
    }
}

/// Completes at its deadline; see [`Timers::sleep_until`].
#[derive(Debug)]
pub struct Sleep {
    timers: Arc<Timers>,
    deadline: Instant,
    /// Set while registered in the table.
    id: Option<u64>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            self.cancel();
            return Poll::Ready(());
        }
        let id = match self.id {
            Some(id) => id,
            None => {
                let id = self.timers.next_id.fetch_add(1, Ordering::Relaxed);
                self.id = Some(id);
                id
            }
        };
        let mut pending = self.timers.pending.lock().unwrap();
        let earliest = pending.keys().next().map(|(deadline, _)| *deadline);
        pending.insert((self.deadline, id), cx.waker().clone());
        if earliest.is_none_or(|earliest| self.deadline < earliest) {
            self.timers.changed.notify_one();
        }
        Poll::Pending
    }
}

impl Sleep {
    fn cancel(&mut self) {
        if let Some(id) = self.id.take() {
            self.timers
                .pending
                .lock()
                .unwrap()
                .remove(&(self.deadline, id));
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// The timer thread: wake what is due, sleep until the next deadline. Ends
/// when the timer table is dropped.
fn fire(timers: std::sync::Weak<Timers>) {
    let mut due = Vec::new();
    loop {
        let Some(timers) = timers.upgrade() else {
            return;
        };
        {
            let mut pending = timers.pending.lock().unwrap();
            let now = Instant::now();
            while let Some(entry) = pending.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            if due.is_empty() {
                // Wait for the next deadline (or a second at most, so a dropped
                // table ends the thread).
                let wait = pending
                    .keys()
                    .next()
                    .map_or(std::time::Duration::from_secs(1), |(deadline, _)| {
                        deadline.saturating_duration_since(now)
                    });
                drop(timers.changed.wait_timeout(pending, wait).unwrap());
            }
        }
        for waker in due.drain(..) {
            waker.wake();
        }
    }
}
