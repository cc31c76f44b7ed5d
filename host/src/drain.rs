//! Graceful drain: the host stops taking new work, lets the work it has
//! finish, and exits.
//!
//! `serve` holds one [`Drain`]. A SIGTERM or SIGINT calls [`Drain::start`]:
//! every acceptor waiting in [`Drain::started`] wakes and closes its
//! listener, so new connections are refused at once; the main thread then
//! waits until [`Drain::live`] (processes and HTTP connections still being
//! served) reaches zero, or the drain timeout passes, and exits.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Whether the host drains, and how much work it still has.
#[derive(Debug, Default)]
pub struct Drain {
    /// Set once, by [`Drain::start`]; never cleared.
    draining: AtomicBool,
    /// Tasks parked in [`Drain::started`]; emptied (and woken) by `start`.
    waiters: Mutex<Vec<Waker>>,
    /// Units of work alive: each a [`Work`] not yet dropped.
    live: AtomicUsize,
}

impl Drain {
    /// A drain that has not started.
    pub fn new() -> Arc<Drain> {
        Arc::new(Drain::default())
    }

    /// Starts the drain (again is a no-op) and wakes every task waiting for it.
    pub fn start(&self) {
        self.draining.store(true, Ordering::SeqCst);
        let waiters = std::mem::take(&mut *self.waiters.lock().unwrap());
        for waker in waiters {
            waker.wake();
        }
    }

    /// Whether the drain has started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Completes once the drain has started.
    pub fn started(&self) -> Started<'_> {
        Started { drain: self }
    }

    /// Runs `future` until it completes (`Some`) or the drain starts (`None`).
    pub async fn unless_started<F: Future>(&self, future: F) -> Option<F::Output> {
        let mut future = std::pin::pin!(future);
        let mut started = std::pin::pin!(self.started());
        std::future::poll_fn(|cx| {
            if started.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            future.as_mut().poll(cx).map(Some)
        })
        .await
    }

    /// Counts one unit of work (a process, an HTTP connection) until the
    /// returned guard drops.
    pub fn work(self: &Arc<Drain>) -> Work {
        self.live.fetch_add(1, Ordering::SeqCst);
        Work {
            drain: Arc::clone(self),
        }
    }

    /// Units of work alive now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
}

/// The future of [`Drain::started`].
#[derive(Debug)]
pub struct Started<'a> {
    drain: &'a Drain,
}

impl Future for Started<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.drain.is_draining() {
            return Poll::Ready(());
        }
        let mut waiters = self.drain.waiters.lock().unwrap();
        // Checked again under the lock: `start` empties the list after setting the flag.
        if self.drain.is_draining() {
            return Poll::Ready(());
        }
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// One unit of live work; see [`Drain::work`].
#[derive(Debug)]
pub struct Work {
    drain: Arc<Drain>,
}

impl Drop for Work {
    fn drop(&mut self) {
        self.drain.live.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn start_wakes_waiters_and_work_is_counted() {
        let drain = Drain::new();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let mut started = Box::pin(drain.started());
        assert_eq!(started.as_mut().poll(&mut cx), Poll::Pending);
        let work = drain.work();
        assert_eq!(drain.live(), 1);
        drain.start();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(started.as_mut().poll(&mut cx), Poll::Ready(()));
        drop(work);
        assert_eq!(drain.live(), 0);
    }
}
