//! An app's limit on live processes, with a fair wait for the next free one.
//!
//! Whoever waits (the acceptor, the HTTP front of each connection with a
//! request ready, a listener-mode supervisor) queues in arrival order; a
//! process that ends hands its place straight to the first waiter, so a
//! newcomer cannot take it first and no waiter is ever forgotten. `spawn`
//! only ever tries ([`ProcessLimit::try_acquire`]): it gets a place only
//! when nobody is waiting.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

/// Counts an app's live processes against its `max_processes`.
#[derive(Debug)]
pub struct ProcessLimit {
    /// The app's name, for the log.
    app: std::sync::Arc<str>,
    /// Most live processes at once; at least 1.
    max: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Live processes, places handed to waiters included; `live <= max`.
    live: usize,
    /// Waiters in arrival order. A granted one holds a place (counted in
    /// `live`) that it takes on its next poll, or gives back when dropped.
    queue: VecDeque<Waiter>,
    /// The ticket of the next waiter; tickets only grow.
    next_ticket: u64,
}

#[derive(Debug)]
struct Waiter {
    ticket: u64,
    waker: Waker,
    granted: bool,
}

impl ProcessLimit {
    /// A limit of `max` live processes (at least 1) for the app named `app`.
    pub fn new(app: std::sync::Arc<str>, max: usize) -> ProcessLimit {
        ProcessLimit {
            app,
            max: max.max(1),
            state: Mutex::new(State::default()),
        }
    }

    /// Waits, in arrival order, for a place for one more process.
    pub fn acquire(&self) -> Acquire<'_> {
        Acquire {
            limit: self,
            ticket: None,
        }
    }

    /// Takes a place now if one is free and nobody waits for it.
    pub fn try_acquire(&self) -> bool {
        let mut state = self.state.lock().unwrap();
        if state.queue.is_empty() && state.live < self.max {
            state.live += 1;
            true
        } else {
            false
        }
    }

    /// Gives back a place taken by [`acquire`](Self::acquire) or
    /// [`try_acquire`](Self::try_acquire): to the first waiter, if any.
    pub fn release(&self) {
        let waker = {
            let mut state = self.state.lock().unwrap();
            match state.queue.iter_mut().find(|w| !w.granted) {
                Some(waiter) => {
                    waiter.granted = true;
                    Some(waiter.waker.clone())
                }
                None => {
                    state.live -= 1;
                    None
                }
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Live processes, places handed to waiters included.
    pub fn live(&self) -> usize {
        self.state.lock().unwrap().live
    }

    /// Processes waiting for a place.
    pub fn waiting(&self) -> usize {
        let state = self.state.lock().unwrap();
        state.queue.iter().filter(|w| !w.granted).count()
    }
}

/// The future of [`ProcessLimit::acquire`]: ready when the caller holds a
/// place. Dropped before that, it leaves the queue (passing on a place it
/// was granted meanwhile).
#[derive(Debug)]
pub struct Acquire<'a> {
    limit: &'a ProcessLimit,
    /// Set once queued.
    ticket: Option<u64>,
}

impl Future for Acquire<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let limit = self.limit;
        let mut state = limit.state.lock().unwrap();
        let Some(ticket) = self.ticket else {
            if state.queue.is_empty() && state.live < limit.max {
                state.live += 1;
                tracing::debug!(app = %limit.app, live = state.live, "took a process place");
                return Poll::Ready(());
            }
            tracing::debug!(app = %limit.app, waiting = state.queue.len() + 1, "waits for a process place");
            let ticket = state.next_ticket;
            state.next_ticket += 1;
            state.queue.push_back(Waiter {
                ticket,
                waker: cx.waker().clone(),
                granted: false,
            });
            self.ticket = Some(ticket);
            return Poll::Pending;
        };
        let at = state
            .queue
            .iter()
            .position(|w| w.ticket == ticket)
            .expect("a queued waiter stays queued until it is ready or dropped");
        if state.queue[at].granted {
            state.queue.remove(at);
            tracing::debug!(app = %limit.app, live = state.live, "took a process place");
            drop(state);
            self.ticket = None;
            return Poll::Ready(());
        }
        state.queue[at].waker.clone_from(cx.waker());
        Poll::Pending
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket else { return };
        let granted = {
            let mut state = self.limit.state.lock().unwrap();
            let at = state.queue.iter().position(|w| w.ticket == ticket);
            at.and_then(|at| state.queue.remove(at))
                .is_some_and(|w| w.granted)
        };
        if granted {
            self.limit.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn poll(fut: &mut Pin<Box<Acquire<'_>>>, flag: &Arc<Flag>) -> Poll<()> {
        let waker = Waker::from(Arc::clone(flag));
        fut.as_mut().poll(&mut Context::from_waker(&waker))
    }

    fn flag() -> Arc<Flag> {
        Arc::new(Flag(false.into()))
    }

    #[test]
    fn waiters_get_places_in_arrival_order() {
        let limit = ProcessLimit::new("t".into(), 2);
        assert!(limit.try_acquire());
        assert!(limit.try_acquire());
        let flags: Vec<_> = (0..10).map(|_| flag()).collect();
        let mut waiters: Vec<_> = (0..10).map(|_| Box::pin(limit.acquire())).collect();
        for (w, f) in waiters.iter_mut().zip(&flags) {
            assert_eq!(poll(w, f), Poll::Pending);
        }
        assert!(!limit.try_acquire(), "no place is taken past the queue");
        for i in 0..10 {
            limit.release();
            assert!(flags[i].0.load(std::sync::atomic::Ordering::SeqCst));
            for later in &flags[i + 1..] {
                assert!(!later.0.load(std::sync::atomic::Ordering::SeqCst));
            }
            assert_eq!(poll(&mut waiters[i], &flags[i]), Poll::Ready(()));
        }
        assert_eq!(limit.live(), 2);
        limit.release();
        limit.release();
        assert_eq!(limit.live(), 0);
    }

    #[test]
    fn a_dropped_waiter_passes_its_place_on() {
        let limit = ProcessLimit::new("t".into(), 1);
        assert!(limit.try_acquire());
        let (first, second) = (flag(), flag());
        let mut a = Box::pin(limit.acquire());
        let mut b = Box::pin(limit.acquire());
        assert_eq!(poll(&mut a, &first), Poll::Pending);
        assert_eq!(poll(&mut b, &second), Poll::Pending);
        limit.release(); // granted to `a` …
        drop(a); // … which leaves: `b` gets it
        assert!(second.0.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(poll(&mut b, &second), Poll::Ready(()));
        assert_eq!(limit.live(), 1);
        assert_eq!(limit.waiting(), 0);
    }
}
