//! The reactor: one mio `Poll` that turns readiness into wake-ups, polled by
//! the kernel's workers themselves.
//!
//! It reports readiness and never decides scheduling: an event bumps the
//! [`Source`]'s readiness counter for that direction and wakes the waker parked
//! there; the kernel's run queue decides when that process runs. Sockets are
//! registered edge-triggered for reading; interest in writing is added the
//! first time a write would block (most never do).
//!
//! There is no reactor thread: a worker with nothing to run waits in
//! [`Reactor::turn`] itself, so a readiness event wakes a process on the
//! thread that will run it, with no hand-off between threads (the kernel's
//! run queue decides who turns, `kernel/runq.rs`). [`Reactor::wake`]
//! interrupts a turn when work arrives from elsewhere (a timer, another
//! worker).

mod source;

pub use source::{Direction, Source};

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use mio::event::Source as MioSource;
use mio::{Events, Interest, Poll, Registry, Token};

/// Token of the reactor's own [`mio::Waker`], never given to a source.
const WAKE_TOKEN: Token = Token(usize::MAX);

/// The poller: register sockets here; the kernel's workers turn it.
#[derive(Debug)]
pub struct Reactor {
    /// Registers and deregisters sockets with the `Poll`; shared with each
    /// source, which adds its own write interest.
    registry: Arc<Registry>,
    /// Every registered source by token. A token is never reused, so a late
    /// event for a closed socket finds nothing instead of a stranger.
    sources: Mutex<HashMap<Token, Arc<Source>, BuildHasherDefault<TokenHasher>>>,
    /// Next token to hand out; only grows.
    next_token: Mutex<usize>,
    /// The `Poll` and its buffers; held by the one thread turning it.
    poller: Mutex<Poller>,
    /// Interrupts a turn in progress.
    waker: mio::Waker,
}

/// What a turn needs, kept between turns so that none allocates.
#[derive(Debug)]
struct Poller {
    poll: Poll,
    events: Events,
    ready: Vec<(Arc<Source>, (bool, bool, bool))>,
}

impl Reactor {
    /// A reactor with nothing registered. Nothing waits for its events
    /// until a kernel turns it (`Kernel::start`).
    ///
    /// # Errors
    /// When the OS refuses to create the poller.
    pub fn start() -> anyhow::Result<Arc<Reactor>> {
        let poll = Poll::new().context("failed to create the reactor's poller")?;
        let registry = poll
            .registry()
            .try_clone()
            .context("failed to clone the reactor's registry")?;
        let waker = mio::Waker::new(poll.registry(), WAKE_TOKEN)
            .context("failed to create the reactor's waker")?;
        Ok(Arc::new(Reactor {
            registry: Arc::new(registry),
            sources: Mutex::new(HashMap::default()),
            next_token: Mutex::new(0),
            poller: Mutex::new(Poller {
                poll,
                events: Events::with_capacity(1024),
                ready: Vec::with_capacity(1024),
            }),
            waker,
        }))
    }

    /// Waits up to `timeout` (`None`: until an event or [`Reactor::wake`])
    /// for readiness, and wakes the wakers parked on what became ready.
    /// Returns how many sources were ready. One thread turns at a time
    /// (another blocks until it is done): the kernel's run queue chooses
    /// which.
    pub fn turn(&self, timeout: Option<Duration>) -> usize {
        let mut poller = self.poller.lock().unwrap();
        let Poller {
            poll,
            events,
            ready,
        } = &mut *poller;
        if let Err(err) = poll.poll(events, timeout) {
            if err.kind() != std::io::ErrorKind::Interrupted {
                tracing::error!("reactor: poll failed: {err}");
            }
            return 0;
        }
        {
            let sources = self.sources.lock().unwrap();
            for event in events.iter() {
                if let Some(source) = sources.get(&event.token()) {
                    ready.push((Arc::clone(source), event_directions(event)));
                }
            }
        }
        let count = ready.len();
        // Wake outside the table lock: a woken process may register a socket at once.
        for (source, (read, write, closed)) in ready.drain(..) {
            if read {
                source.notify(Direction::Read, closed);
            }
            if write {
                source.notify(Direction::Write, closed);
            }
        }
        count
    }

    /// Makes the turn in progress (or the next one) return at once.
    pub fn wake(&self) {
        if let Err(err) = self.waker.wake() {
            tracing::error!("reactor: failed to wake the poller: {err}");
        }
    }

    /// Registers `io` (whose descriptor is `fd`) for readable events and
    /// returns its source; writable events follow once a write parks.
    ///
    /// # Errors
    /// When the OS refuses the registration (e.g. the fd is already closed).
    pub fn register(
        &self,
        io: &mut impl MioSource,
        fd: std::os::fd::RawFd,
    ) -> std::io::Result<Arc<Source>> {
        let token = {
            let mut next = self.next_token.lock().unwrap();
            *next += 1;
            Token(*next)
        };
        let source = Arc::new(Source::new(token, fd, Arc::clone(&self.registry)));
        self.sources
            .lock()
            .unwrap()
            .insert(token, Arc::clone(&source));
        if let Err(err) = self.registry.register(io, token, Interest::READABLE) {
            self.sources.lock().unwrap().remove(&token);
            return Err(err);
        }
        Ok(source)
    }

    /// Forgets `io`; call before closing it.
    pub fn deregister(&self, io: &mut impl MioSource, source: &Source) {
        // Closing the fd removes it from epoll anyway; an error here changes nothing.
        let _ = self.registry.deregister(io);
        self.forget(source);
    }

    /// Forgets `source` without deregistering its socket, for a socket
    /// about to be closed whose descriptor is not shared: the close takes
    /// it out of the `epoll` set.
    pub fn forget(&self, source: &Source) {
        self.sources.lock().unwrap().remove(&source.token());
    }
}

/// Hashes a token (a counter the reactor hands out, never chosen by a
/// guest or a client) with one multiply: SipHash's resistance to chosen
/// keys buys nothing here and cost two hashes per request.
#[derive(Debug, Default)]
struct TokenHasher(u64);

impl Hasher for TokenHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte) | (self.0 << 8));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: spreads consecutive tokens over the high bits,
        // which the table's probe groups use.
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Which directions an event makes worth retrying, and whether it reports
/// end of stream or an error. Errors and hang-ups wake both, so the blocked
/// operation runs and reports them.
fn event_directions(event: &mio::event::Event) -> (bool, bool, bool) {
    let broken = event.is_error();
    (
        event.is_readable() || event.is_read_closed() || broken,
        event.is_writable() || event.is_write_closed() || broken,
        event.is_read_closed() || broken,
    )
}
