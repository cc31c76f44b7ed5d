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
    /// The read event count, plus one, when a read last left nothing to
    /// read: it found nothing, or got fewer bytes than it asked for; 0 once
    /// a read filled its buffer. It starts at 1 (drained at count 0): what
    /// is queued when the socket is registered comes as its first event.
    /// Until the next event, a read needs no syscall (it would find
    /// nothing) and neither does a wait for readability: an event since
    /// means there is something.
    read_drained: AtomicU64,
    /// Whether an event reported end of stream or an error. A short read
    /// then no longer means the queue is empty: the end of stream behind
    /// the bytes brought its event before the read.
    read_closed: AtomicBool,
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
            // Nothing to read until the first event: registering a socket
            // that has bytes (or end of stream) already queued reports
            // them as an event, edge-triggered or not, so a new
            // connection's first read needs no syscall to learn it is
            // empty. (As with any drained mark, a zero-timeout `poll`
            // says "not readable" until the reactor has seen that event.)
            read_drained: AtomicU64::new(1),
            read_closed: AtomicBool::new(false),
        }
    }

    pub(super) fn token(&self) -> Token {
        self.token
    }

    fn gate(&self, direction: Direction) -> &Gate {
        &self.gates[direction as usize]
    }

    /// Called by the reactor on an event: count it and wake the waiter.
    /// `closed`: the event reported end of stream or an error.
    pub(super) fn notify(&self, direction: Direction, closed: bool) {
        if closed {
            // Before the count: a reader that sees the count sees this.
            self.read_closed.store(true, Ordering::Relaxed);
        }
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
    /// count read before it (to park on after `WouldBlock`). A read (or
    /// accept) notes whether it found nothing, for
    /// [`Source::read_drained_at`], and is not made at all when the last
    /// one found nothing and no event came since: `WouldBlock` then.
    pub fn try_io<R>(
        &self,
        direction: Direction,
        op: impl FnOnce() -> io::Result<R>,
    ) -> (io::Result<R>, u64) {
        if direction == Direction::Read {
            return self.read_unless_drained(op, would_block);
        }
        let seen = self.events(direction);
        (op(), seen)
    }

    /// Runs the non-blocking read `op` into a buffer of `capacity` bytes,
    /// like [`Source::try_io`], unless the last read left nothing and no
    /// event came since: then it returns `WouldBlock` without the syscall.
    ///
    /// A read that got fewer bytes than it asked for took all there was,
    /// so the read after it (a server that answered a request, looking for
    /// the next) would find nothing: that was one failed `recv` per
    /// request. Bytes arriving after the short read bring an event, and the
    /// count read before it then differs. End of stream queued behind the
    /// bytes would not bring a new one; it brought its event already, and
    /// `read_closed` keeps the next read.
    pub fn try_read(
        &self,
        capacity: usize,
        op: impl FnOnce() -> io::Result<usize>,
    ) -> (io::Result<usize>, u64) {
        self.read_unless_drained(op, |result| match result {
            Ok(n) => *n > 0 && *n < capacity && !self.read_closed.load(Ordering::Relaxed),
            Err(_) => would_block(result),
        })
    }

    /// The read side of [`Source::try_io`] and [`Source::try_read`]:
    /// `WouldBlock` without calling `op` when the last read left nothing
    /// and no event came since; else runs `op` and notes, as `drained`
    /// judges its result, whether it left nothing.
    fn read_unless_drained<R>(
        &self,
        op: impl FnOnce() -> io::Result<R>,
        drained: impl FnOnce(&io::Result<R>) -> bool,
    ) -> (io::Result<R>, u64) {
        let seen = self.events(Direction::Read);
        if self.read_drained.load(Ordering::Relaxed) == seen + 1 {
            return (Err(io::ErrorKind::WouldBlock.into()), seen);
        }
        let result = op();
        let mark = if drained(&result) { seen + 1 } else { 0 };
        self.read_drained.store(mark, Ordering::Relaxed);
        (result, seen)
    }

    /// Forgets that the last read left nothing: the socket was shut down
    /// here, and reads now end the stream without an event saying so.
    pub fn forget_drained(&self) {
        self.read_drained.store(0, Ordering::Relaxed);
    }

    /// Notes that nothing was readable at read event count `seen` (a probe
    /// found nothing after an event for bytes a read had already taken).
    pub fn note_drained_at(&self, seen: u64) {
        self.read_drained.store(seen + 1, Ordering::Relaxed);
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

/// Whether a non-blocking operation found nothing to do.
fn would_block<R>(result: &io::Result<R>) -> bool {
    matches!(result, Err(err) if err.kind() == io::ErrorKind::WouldBlock)
}
