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
    parked: Parked,
}

/// One waiter needs no allocation: a process parks and is woken once per
/// message it waits for, and a `Vec` taken out on every wake would be
/// allocated again on the next park (two allocator calls per message).
/// Same size as a `Vec` (24 bytes): the sets live in every socket source.
#[derive(Debug, Default)]
enum Parked {
    /// Nobody waits.
    #[default]
    None,
    /// One task waits (the usual case).
    One(Waker),
    /// Two or more distinct tasks wait (a shared handle).
    Many(Vec<Waker>),
}

impl WakerSet {
    /// An empty set.
    pub const fn new() -> WakerSet {
        WakerSet {
            parked: Parked::None,
        }
    }

    /// Parks `waker` until the next [`WakerSet::take`], unless an equivalent
    /// one is parked already (a task polled twice stays one entry).
    pub fn register(&mut self, waker: &Waker) {
        match &mut self.parked {
            Parked::None => self.parked = Parked::One(waker.clone()),
            Parked::One(parked) if parked.will_wake(waker) => {}
            Parked::One(_) => {
                let Parked::One(first) = std::mem::take(&mut self.parked) else {
                    unreachable!("matched above")
                };
                self.parked = Parked::Many(vec![first, waker.clone()]);
            }
            Parked::Many(wakers) => {
                if !wakers.iter().any(|parked| parked.will_wake(waker)) {
                    wakers.push(waker.clone());
                }
            }
        }
    }

    /// Whether no waker is parked.
    pub fn is_empty(&self) -> bool {
        matches!(self.parked, Parked::None)
    }

    /// Takes every parked waker out, to wake once the caller's lock is
    /// released (a woken task may run at once on another worker).
    #[must_use = "the taken wakers must be woken"]
    pub fn take(&mut self) -> Wakers {
        Wakers(std::mem::take(&mut self.parked))
    }
}

/// Wakers taken out of a [`WakerSet`]; [`Wakers::wake`] wakes them all.
#[derive(Debug, Default)]
pub struct Wakers(Parked);

impl Wakers {
    /// Wakes every taken waker.
    pub fn wake(self) {
        match self.0 {
            Parked::None => {}
            Parked::One(waker) => waker.wake(),
            Parked::Many(wakers) => wakers.into_iter().for_each(Waker::wake),
        }
    }
}

const _: () = assert!(std::mem::size_of::<WakerSet>() == std::mem::size_of::<Vec<Waker>>());

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

    #[test]
    fn one_waiter_parked_twice_is_one_entry_and_a_third_joins_many() {
        let counters: Vec<_> = (0..3)
            .map(|_| Arc::new(Counter(AtomicUsize::new(0))))
            .collect();
        let wakers: Vec<_> = counters
            .iter()
            .map(|c| Waker::from(Arc::clone(c)))
            .collect();
        let mut set = WakerSet::new();
        set.register(&wakers[0]);
        set.register(&wakers[0]);
        set.take().wake();
        assert_eq!(counters[0].0.load(Ordering::Relaxed), 1);
        for waker in [&wakers[0], &wakers[1], &wakers[2], &wakers[1], &wakers[0]] {
            set.register(waker);
        }
        set.take().wake();
        let woken: Vec<_> = counters
            .iter()
            .map(|c| c.0.load(Ordering::Relaxed))
            .collect();
        assert_eq!(woken, [2, 1, 1]);
    }
}
