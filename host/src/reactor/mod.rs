//! The reactor: one mio `Poll` loop on its own thread that turns readiness into
//! wake-ups.
//!
//! It reports readiness and never decides scheduling: an event bumps the
//! [`Source`]'s readiness counter for that direction and wakes the waker parked
//! there; the kernel's run queue decides when that process runs. Sockets are
//! registered edge-triggered for reading; interest in writing is added the
//! first time a write would block (most never do), so the reactor thread is
//! not woken by every ACK that frees send-buffer space.

mod source;

pub use source::{Direction, Source};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread;

use anyhow::Context;
use mio::event::Source as MioSource;
use mio::{Events, Interest, Poll, Registry, Token};

/// Token of the reactor's own [`mio::Waker`], never given to a source.
const WAKE_TOKEN: Token = Token(usize::MAX);

/// Handle to the reactor thread; cheap to clone via `Arc`.
#[derive(Debug)]
pub struct Reactor {
    /// Registers and deregisters sockets with the `Poll` owned by the reactor
    /// thread; shared with each source, which adds its own write interest.
    registry: Arc<Registry>,
    /// Every registered source by token. A token is never reused, so a late
    /// event for a closed socket finds nothing instead of a stranger.
    sources: Mutex<HashMap<Token, Arc<Source>>>,
    /// Next token to hand out; only grows.
    next_token: Mutex<usize>,
}

impl Reactor {
    /// Starts the reactor thread.
    ///
    /// # Errors
    /// When the OS refuses to create the poller or the thread.
    pub fn start() -> anyhow::Result<Arc<Reactor>> {
        let poll = Poll::new().context("failed to create the reactor's poller")?;
        let registry = poll
            .registry()
            .try_clone()
            .context("failed to clone the reactor's registry")?;
        // Kept alive inside the thread so the poller has a waker token; nothing wakes it today.
        let waker = mio::Waker::new(poll.registry(), WAKE_TOKEN)
            .context("failed to create the reactor's waker")?;
        let reactor = Arc::new(Reactor {
            registry: Arc::new(registry),
            sources: Mutex::new(HashMap::new()),
            next_token: Mutex::new(0),
        });
        let weak = Arc::downgrade(&reactor);
        thread::Builder::new()
            .name("mnvkd-reactor".into())
            .spawn(move || {
                let _waker = waker;
                react(poll, weak)
            })
            .context("failed to start the reactor thread")?;
        Ok(reactor)
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
        self.sources.lock().unwrap().remove(&source.token());
    }
}

/// The reactor thread's loop: wait for events, wake the parked wakers. Ends when
/// the last handle to the reactor is gone.
fn react(mut poll: Poll, reactor: std::sync::Weak<Reactor>) {
    let mut events = Events::with_capacity(1024);
    let mut ready = Vec::with_capacity(1024);
    loop {
        if let Err(err) = poll.poll(&mut events, None) {
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            tracing::error!("reactor: poll failed: {err}");
            return;
        }
        let Some(reactor) = reactor.upgrade() else {
            return;
        };
        {
            let sources = reactor.sources.lock().unwrap();
            for event in events.iter() {
                if let Some(source) = sources.get(&event.token()) {
                    ready.push((Arc::clone(source), event_directions(event)));
                }
            }
        }
        // Wake outside the table lock: a woken process may register a socket at once.
        for (source, (read, write)) in ready.drain(..) {
            if read {
                source.notify(Direction::Read);
            }
            if write {
                source.notify(Direction::Write);
            }
        }
    }
}

/// Which directions an event makes worth retrying. Errors and hang-ups wake
/// both, so the blocked operation runs and reports them.
fn event_directions(event: &mio::event::Event) -> (bool, bool) {
    let broken = event.is_error();
    (
        event.is_readable() || event.is_read_closed() || broken,
        event.is_writable() || event.is_write_closed() || broken,
    )
}
