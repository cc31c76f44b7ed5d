//! Timers: a thread that wakes sleeping processes at their deadlines.
//!
//! Timers are kept in a map ordered by (deadline, id), so equal deadlines stay
//! distinct and the earliest is the first entry. The thread sleeps on a
//! condition variable until the earliest deadline (a second at most) or until
//! a timer due before it wakes up anyway is added: the long timeouts of idle
//! connections never wake it. A [`Sleep`] removes its entry when dropped, so
//! a cancelled wait (a killed process, a shorter `poll` timeout) leaves
//! nothing behind; the `poll` import keeps its process's timer registered
//! from one call to the next (`abi/poll.rs`).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Instant;

use anyhow::Context as _;

/// Longest the timer thread sleeps without looking at its table.
const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The timer table and its thread.
#[derive(Debug)]
pub struct Timers {
    pending: Mutex<Table>,
    /// Signalled when a timer earlier than all others is added.
    changed: Condvar,
    /// Next timer id; only grows.
    next_id: AtomicU64,
}

/// The timers and when the thread will look at them next.
#[derive(Debug, Default)]
struct Table {
    /// Pending timers by (deadline, id); each waker is woken once, at its deadline.
    timers: BTreeMap<(Instant, u64), Waker>,
    /// When the thread, asleep, wakes up on its own; `None` while it works.
    wakes_at: Option<Instant>,
}

impl Timers {
    /// Starts the timer thread.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start() -> anyhow::Result<Arc<Timers>> {
        let timers = Arc::new(Timers {
            pending: Mutex::new(Table::default()),
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
            waker: None,
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
    /// The waker registered in the table, so that polling again with the
    /// same one (a `poll` kept waiting, a timer kept between polls) takes
    /// no lock.
    waker: Option<Waker>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            self.cancel();
            return Poll::Ready(());
        }
        if self.id.is_some()
            && self
                .waker
                .as_ref()
                .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        let id = match self.id {
            Some(id) => id,
            None => {
                let id = self.timers.next_id.fetch_add(1, Ordering::Relaxed);
                self.id = Some(id);
                id
            }
        };
        let mut table = self.timers.pending.lock().unwrap();
        table.timers.insert((self.deadline, id), cx.waker().clone());
        if table.wakes_at.is_none_or(|at| self.deadline < at) {
            self.timers.changed.notify_one();
        }
        drop(table);
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Sleep {
    /// When it completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Moves the deadline to `deadline`; the next poll registers it again.
    pub fn reset(&mut self, deadline: Instant) {
        self.cancel();
        self.deadline = deadline;
    }

    fn cancel(&mut self) {
        self.waker = None;
        if let Some(id) = self.id.take() {
            self.timers
                .pending
                .lock()
                .unwrap()
                .timers
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
            let mut table = timers.pending.lock().unwrap();
            table.wakes_at = None;
            let now = Instant::now();
            while let Some(entry) = table.timers.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            if due.is_empty() {
                // Wait for the next deadline, a second at most, so a dropped
                // table ends the thread.
                let wait = table
                    .timers
                    .keys()
                    .next()
                    .map_or(MAX_WAIT, |(deadline, _)| {
                        deadline.saturating_duration_since(now).min(MAX_WAIT)
                    });
                table.wakes_at = Some(now + wait);
                drop(timers.changed.wait_timeout(table, wait).unwrap());
            }
        }
        for waker in due.drain(..) {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn registered(timers: &Timers) -> usize {
        timers.pending.lock().unwrap().timers.len()
    }

    #[test]
    fn a_sleep_registers_once_moves_and_leaves_nothing_behind() {
        let timers = Timers::start().unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        let far = Instant::now() + Duration::from_secs(60);
        let mut sleep = timers.sleep_until(far);
        assert!(Pin::new(&mut sleep).poll(&mut cx).is_pending());
        // Polled again with the same waker: still the one entry.
        assert!(Pin::new(&mut sleep).poll(&mut cx).is_pending());
        assert_eq!(registered(&timers), 1);
        // Reset to a deadline already past: unregistered, then ready.
        sleep.reset(Instant::now());
        assert_eq!(registered(&timers), 0);
        assert!(Pin::new(&mut sleep).poll(&mut cx).is_ready());
        sleep.reset(far);
        assert!(Pin::new(&mut sleep).poll(&mut cx).is_pending());
        assert_eq!(registered(&timers), 1);
        drop(sleep);
        assert_eq!(registered(&timers), 0);
    }
}
