//! A small set of wakers, all woken at once: the waiters on one source of
//! readiness (a socket direction, a pipe end).
//!
//! A handle can be shared (`dup`, or a stream passed to a child while the
//! parent keeps a copy), so several processes may wait on the same direction
//! at once; one slot would let the last waiter silently replace the others.
//! Waking every waiter on readiness is cheap here because the sets are tiny
//! (one entry per waiting process) and a woken process just retries its
//! operation; one that finds nothing parks again.

use std::task::Waker;

/// The wakers parked on one source, at most one per distinct task.
#[derive(Debug, Default)]
pub struct WakerSet {
    /// The parked wakers; no two `will_wake` each other.
    wakers: Vec<Waker>,
}

impl WakerSet {
    /// An empty set.
    pub const fn new() -> WakerSet {
        WakerSet { wakers: Vec::new() }
    }

    /// Parks `waker` until the next [`WakerSet::take`], unless an equivalent
    /// one is parked already (a task polled twice stays one entry).
    pub fn register(&mut self, waker: &Waker) {
        if !self.wakers.iter().any(|parked| parked.will_wake(waker)) {
            self.wakers.push(waker.clone());
        }
    }

    /// Whether no waker is parked.
    pub fn is_empty(&self) -> bool {
        self.wakers.is_empty()
    }

    /// Takes every parked waker out, to wake once the caller's lock is
    /// released (a woken task may run at once on another worker).
    #[must_use = "the taken wakers must be woken"]
    pub fn take(&mut self) -> Wakers {
        Wakers(std::mem::take(&mut self.wakers))
    }
}

/// Wakers taken out of a [`WakerSet`]; [`Wakers::wake`] wakes them all.
#[derive(Debug, Default)]
pub struct Wakers(Vec<Waker>);

impl Wakers {
    /// Wakes every taken waker.
    pub fn wake(self) {
        for waker in self.0 {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn every_distinct_waiter_is_woken_once() {
        let (a, b) = (
            Arc::new(Counter(AtomicUsize::new(0))),
            Arc::new(Counter(AtomicUsize::new(0))),
        );
        let (wa, wb) = (Waker::from(Arc::clone(&a)), Waker::from(Arc::clone(&b)));
        let mut set = WakerSet::new();
        set.register(&wa);
        set.register(&wb);
        set.register(&wa);
        set.take().wake();
        assert!(set.is_empty());
        assert_eq!(a.0.load(Ordering::Relaxed), 1);
        assert_eq!(b.0.load(Ordering::Relaxed), 1);
        set.take().wake();
        assert_eq!(
            a.0.load(Ordering::Relaxed),
            1,
            "a take wakes only the parked"
        );
    }
}
