//! A registered socket's readiness, one gate per direction.
//!
//! mio is edge-triggered, so readiness is a counter, not a flag: an operation
//! notes the counter, tries the syscall, and on `WouldBlock` parks its waker
//! only if no event arrived in between (the counter is unchanged). That closes
//! the window where an event lands between the failed syscall and the park.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::waker_set::WakerSet;

/// One direction of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Reading (and accepting, for a listener).
    Read,
    /// Writing.
    Write,
}

/// Readiness of one registered socket, shared by the reactor and the process using it.
#[derive(Debug)]
pub struct Source {
    /// The socket's token in the reactor; unique for the reactor's lifetime.
    token: Token,
    /// `[read, write]` gates.
    gates: [Gate; 2],
    /// The socket's descriptor, to add write interest; valid while registered.
    fd: RawFd,
    /// The reactor's registry.
    registry: Arc<Registry>,
    /// Whether the socket is registered for writable events too.
    write_interest: AtomicBool,
    /// The read event count, plus one, when a read last found nothing to
    /// read; 0 once a read got bytes (or none failed yet). With it a wait
    /// for readability needs no `poll(2)`: no event since means nothing
    /// to read, an event since (and no read) means something is.
    read_drained: AtomicU64,
}

/// One direction's readiness.
#[derive(Debug, Default)]
struct Gate {
    /// Number of readiness events seen for this direction; only grows, and
    /// only with the lock held, so [`Source::park`] compares it to what
    /// its caller saw and parks atomically; [`Source::events`] reads it
    /// without the lock (twice per wait and once per `try-read`).
    events: AtomicU64,
    /// The processes waiting for the next event. Several: a connection's
    /// handle may be shared (`dup`, or kept while a copy goes to a child), and
    /// `poll` parks on reads for hang-ups while another process writes.
    wakers: Mutex<WakerSet>,
}

impl Source {
    pub(super) fn new(token: Token, fd: RawFd, registry: Arc<Registry>) -> Source {
        Source {
            token,
            gates: Default::default(),
            fd,
            registry,
            write_interest: AtomicBool::new(false),
            read_drained: AtomicU64::new(0),
        }
    }

    pub(super) fn token(&self) -> Token {
        self.token
    }

    fn gate(&self, direction: Direction) -> &Gate {
        &self.gates[direction as usize]
    }

    /// Called by the reactor on an event: count it and wake the waiter.
    pub(super) fn notify(&self, direction: Direction) {
        let wakers = {
            let gate = self.gate(direction);
            let mut wakers = gate.wakers.lock().unwrap();
            gate.events.fetch_add(1, Ordering::Release);
            wakers.take()
        };
        wakers.wake();
    }

    /// The current event count for `direction`, to pass to [`Source::park`] later.
    pub fn events(&self, direction: Direction) -> u64 {
        self.gate(direction).events.load(Ordering::Acquire)
    }

    /// Parks `cx`'s waker until the next event, unless one arrived since `seen`
    /// was read; returns `true` when parked.
    pub fn park(&self, direction: Direction, seen: u64, cx: &Context<'_>) -> bool {
        if direction == Direction::Write && !self.write_interest.swap(true, Ordering::AcqRel) {
            // The first write to park: ask for writable events from now on.
            // epoll reports the current state on re-arming, so a socket that
            // became writable meanwhile still wakes the waker parked below.
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(err) =
                self.registry
                    .reregister(&mut SourceFd(&self.fd), self.token, interest)
            {
                tracing::debug!("failed to add write interest: {err}");
                return false;
            }
        }
        let gate = self.gate(direction);
        let mut wakers = gate.wakers.lock().unwrap();
        if gate.events.load(Ordering::Acquire) != seen {
            return false;
        }
        wakers.register(cx.waker());
        true
    }

    /// Runs the non-blocking `op` once; returns its result and the event
    /// count read before it (to park on after `WouldBlock`). A read notes
    /// whether it found nothing, for [`Source::read_drained_at`].
    pub fn try_io<R>(
        &self,
        direction: Direction,
        op: impl FnOnce() -> io::Result<R>,
    ) -> (io::Result<R>, u64) {
        let seen = self.events(direction);
        let result = op();
        if direction == Direction::Read {
            let would_block =
                matches!(&result, Err(err) if err.kind() == io::ErrorKind::WouldBlock);
            let drained = if would_block { seen + 1 } else { 0 };
            self.read_drained.store(drained, Ordering::Relaxed);
        }
        (result, seen)
    }

    /// The read event count at which a read last found nothing, unless a
    /// read got bytes since.
    pub fn read_drained_at(&self) -> Option<u64> {
        self.read_drained.load(Ordering::Relaxed).checked_sub(1)
    }

    /// Runs the non-blocking `op` until it does not return `WouldBlock`; parks
    /// `cx` and returns `Pending` when it would block.
    pub fn poll_io<R>(
        &self,
        direction: Direction,
        cx: &Context<'_>,
        mut op: impl FnMut() -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            let (result, seen) = self.try_io(direction, &mut op);
            match result {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    if self.park(direction, seen, cx) {
                        return Poll::Pending;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                result => return Poll::Ready(result),
            }
        }
    }
}
