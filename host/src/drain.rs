//! Graceful drain: the host stops taking new work, lets the work it has
//! finish, and exits.
//!
//! `serve` holds one [`Drain`]. A SIGTERM or SIGINT calls [`Drain::start`]
//! (the host reports itself not ready), then [`Drain::close`]: every
//! acceptor waiting in [`Drain::closed`] wakes and closes its listener, so
//! new connections are refused. With `--reuse-port` a hand-over pause comes
//! between the two, while a new host takes the new connections. The main
//! thread then waits until [`Drain::live`] (HTTP connections still being
//! served) and the apps' live processes reach zero, or the drain timeout
//! passes, and exits.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use crate::waker_set::WakerSet;

/// Whether the host drains, and how much work it still has.
#[derive(Debug, Default)]
pub struct Drain {
    /// Set once, by [`Drain::start`]; never cleared.
    draining: AtomicBool,
    /// Set once, by [`Drain::close`], after `draining`; never cleared.
    closed: AtomicBool,
    /// Tasks parked in [`Drain::closed`]; emptied (and woken) by `close`.
    waiters: Mutex<WakerSet>,
    /// Units of work alive: each a [`Work`] not yet dropped.
    live: AtomicUsize,
}

impl Drain {
    /// A drain that has not started.
    pub fn new() -> Arc<Drain> {
        Arc::new(Drain::default())
    }

    /// Starts the drain: the host is no longer ready (again is a no-op).
    pub fn start(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Closes the listeners: wakes every task waiting in [`Drain::closed`]
    /// (again is a no-op). Starts the drain too if it had not.
    pub fn close(&self) {
        self.start();
        self.closed.store(true, Ordering::SeqCst);
        let waiters = self.waiters.lock().unwrap().take();
        waiters.wake();
    }

    /// Whether the drain has started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Whether the listeners are to close.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Completes once the listeners are to close.
    pub fn closed(&self) -> Closed<'_> {
        Closed { drain: self }
    }

    /// Runs `future` until it completes (`Some`) or the listeners are to
    /// close (`None`).
    pub async fn unless_closed<F: Future>(&self, future: F) -> Option<F::Output> {
        let mut future = std::pin::pin!(future);
        let mut closed = std::pin::pin!(self.closed());
        std::future::poll_fn(|cx| {
            if closed.as_mut().poll(cx).is_ready() {
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

/// The future of [`Drain::closed`].
#[derive(Debug)]
pub struct Closed<'a> {
    drain: &'a Drain,
}

impl Future for Closed<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.drain.is_closed() {
            return Poll::Ready(());
        }
        let mut waiters = self.drain.waiters.lock().unwrap();
        // Checked again under the lock: `close` empties the list after setting the flag.
        if self.drain.is_closed() {
            return Poll::Ready(());
        }
        waiters.register(cx.waker());
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
    use std::task::{Wake, Waker};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn close_wakes_waiters_and_work_is_counted() {
        let drain = Drain::new();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let mut closed = Box::pin(drain.closed());
        assert_eq!(closed.as_mut().poll(&mut cx), Poll::Pending);
        let work = drain.work();
        assert_eq!(drain.live(), 1);
        drain.start();
        assert!(drain.is_draining());
        assert_eq!(closed.as_mut().poll(&mut cx), Poll::Pending);
        drain.close();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(closed.as_mut().poll(&mut cx), Poll::Ready(()));
        drop(work);
        assert_eq!(drain.live(), 0);
    }
}
