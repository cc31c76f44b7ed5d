//! A connection: the stream socket a process was started for, registered with
//! the reactor, with poll-style non-blocking read and write.
//!
//! TCP for served apps; a Unix socket pair for `mnvkd-host run`, whose other
//! end is bridged to the terminal. Everything above this module sees one type.
//!
//! A connection may stand behind several handles (`dup`, possibly passed to
//! other processes): it counts them, and closing the last one shuts the
//! socket down, so a process that reads a connection while its child writes
//! it does not cut the child off by closing its own handle.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use mio::net::{TcpStream, UnixStream};

use crate::app::AppMetrics;
use crate::reactor::{Direction, Reactor, Source};

/// The OS socket under a connection.
#[derive(Debug)]
pub enum Socket {
    /// An accepted TCP connection.
    Tcp(TcpStream),
    /// One end of a socket pair (the `run` subcommand).
    Unix(UnixStream),
}

/// Where a connection comes from and goes to, for the guest's environment.
#[derive(Debug, Clone, Copy)]
pub struct Peers {
    /// The client's address, if the socket has one.
    pub remote: Option<SocketAddr>,
    /// The listener's address the client connected to.
    pub local: Option<SocketAddr>,
}

/// A registered stream socket. Dropping it closes the socket, which takes
/// it out of the reactor's `epoll` set too.
#[derive(Debug)]
pub struct Connection {
    /// The socket; non-blocking.
    socket: Socket,
    /// Its readiness, fed by the reactor.
    source: Arc<Source>,
    /// The reactor it is registered with.
    reactor: Arc<Reactor>,
    /// Addresses, read once at accept.
    peers: Peers,
    /// Where the bytes through it are counted, once an app took it.
    meter: OnceLock<Arc<AppMetrics>>,
    /// Open handles to it in all processes: 1 at first, one more per `dup`,
    /// one less per close; the socket is shut down when it reaches 0.
    handles: AtomicUsize,
}

impl Connection {
    /// Registers `socket` (already non-blocking) with `reactor`.
    ///
    /// # Errors
    /// When the registration fails.
    pub fn new(socket: Socket, reactor: &Arc<Reactor>) -> io::Result<Connection> {
        let peers = match &socket {
            Socket::Tcp(stream) => {
                // Small writes (prompts, echoes) must not wait for Nagle.
                let _ = stream.set_nodelay(true);
                Peers {
                    remote: stream.peer_addr().ok(),
                    local: stream.local_addr().ok(),
                }
            }
            Socket::Unix(_) => Peers {
                remote: None,
                local: None,
            },
        };
        Connection::register(socket, peers, reactor)
    }

    /// Registers a TCP connection a [`Listener`](crate::listener::Listener)
    /// accepted from `remote`, on `local` if the listener's address says
    /// which (not a wildcard). No system call but the registration: the
    /// listener's `TCP_NODELAY` is the accepted socket's too (Linux copies
    /// it), and accept told the client's address.
    ///
    /// # Errors
    /// When the registration fails.
    pub fn accepted(
        stream: TcpStream,
        remote: SocketAddr,
        local: Option<SocketAddr>,
        reactor: &Arc<Reactor>,
    ) -> io::Result<Connection> {
        let local = local.or_else(|| stream.local_addr().ok());
        let peers = Peers {
            remote: Some(remote),
            local,
        };
        Connection::register(Socket::Tcp(stream), peers, reactor)
    }

    fn register(
        mut socket: Socket,
        peers: Peers,
        reactor: &Arc<Reactor>,
    ) -> io::Result<Connection> {
        let source = match &mut socket {
            Socket::Tcp(stream) => {
                let fd = stream.as_raw_fd();
                reactor.register(stream, fd)?
            }
            Socket::Unix(stream) => {
                let fd = stream.as_raw_fd();
                reactor.register(stream, fd)?
            }
        };
        Ok(Connection {
            socket,
            source,
            reactor: Arc::clone(reactor),
            peers,
            meter: OnceLock::new(),
            handles: AtomicUsize::new(1),
        })
    }

    /// Counts the bytes read and written from now on in `metrics` (the
    /// app that accepted it); the first app to ask keeps it.
    pub fn meter(&self, metrics: &Arc<AppMetrics>) {
        let _ = self.meter.set(Arc::clone(metrics));
    }

    /// The connection's addresses.
    pub fn peers(&self) -> Peers {
        self.peers
    }

    /// Whether `TCP_NODELAY` is set (tests: accepted sockets inherit it).
    #[cfg(test)]
    pub(crate) fn nodelay(&self) -> io::Result<bool> {
        match &self.socket {
            Socket::Tcp(stream) => stream.nodelay(),
            Socket::Unix(_) => Ok(false),
        }
    }

    /// Reads into `buf`; `Ready(Ok(0))` is end of stream.
    pub fn poll_read(&self, cx: &Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            let (result, seen) = self.try_read(buf);
            match result {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    if self.source.park(Direction::Read, seen, cx) {
                        return Poll::Pending;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                result => return Poll::Ready(result),
            }
        }
    }

    fn read_socket(&self, buf: &mut [u8]) -> io::Result<usize> {
        let read = match &self.socket {
            Socket::Tcp(stream) => (&*stream).read(buf),
            Socket::Unix(stream) => (&*stream).read(buf),
        };
        if let (Ok(n), Some(meter)) = (&read, self.meter.get()) {
            meter.count_bytes_in(*n);
        }
        read
    }

    /// Writes some of `buf`; returns how much was written.
    pub fn poll_write(&self, cx: &Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.source
            .poll_io(Direction::Write, cx, || self.try_write(buf))
    }

    /// Writes what the socket takes now without blocking; `WouldBlock` if nothing.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        let written = match &self.socket {
            Socket::Tcp(stream) => (&*stream).write(buf),
            Socket::Unix(stream) => (&*stream).write(buf),
        };
        if let (Ok(n), Some(meter)) = (&written, self.meter.get()) {
            meter.count_bytes_out(*n);
        }
        written
    }

    /// Reads what is there now without blocking; `WouldBlock` if nothing.
    /// Returns the read and the readiness count to wait on after `WouldBlock`.
    pub fn try_read(&self, buf: &mut [u8]) -> (io::Result<usize>, u64) {
        let capacity = buf.len();
        self.source.try_read(capacity, || self.read_socket(buf))
    }

    /// Waits for a read event newer than `seen` (from [`Connection::try_read`]).
    pub fn poll_readable(&self, cx: &Context<'_>, seen: u64) -> Poll<()> {
        if self.source.park(Direction::Read, seen, cx) {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// Waits for a write event newer than `seen`.
    pub fn poll_writable(&self, cx: &Context<'_>, seen: u64) -> Poll<()> {
        if self.source.park(Direction::Write, seen, cx) {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// The current write-readiness count, to pass to [`Connection::poll_writable`].
    pub fn write_events(&self) -> u64 {
        self.source.events(Direction::Write)
    }

    /// Opens an outbound TCP connection; it completes in the background, see
    /// [`Connection::poll_connected`].
    ///
    /// # Errors
    /// When the socket cannot be created or registered.
    pub fn connect(addr: SocketAddr, reactor: &Arc<Reactor>) -> io::Result<Connection> {
        Connection::new(Socket::Tcp(TcpStream::connect(addr)?), reactor)
    }

    /// Completes when an outbound connection is established or has failed.
    pub fn poll_connected(&self, cx: &Context<'_>) -> Poll<io::Result<()>> {
        let Socket::Tcp(stream) = &self.socket else {
            return Poll::Ready(Ok(()));
        };
        loop {
            let seen = self.source.events(Direction::Write);
            if let Some(err) = stream.take_error()? {
                return Poll::Ready(Err(err));
            }
            match stream.peer_addr() {
                Ok(_) => return Poll::Ready(Ok(())),
                Err(err)
                    if err.kind() == io::ErrorKind::NotConnected
                        || err.raw_os_error() == Some(libc::EINPROGRESS) =>
                {
                    if self.source.park(Direction::Write, seen, cx) {
                        return Poll::Pending;
                    }
                }
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }

    /// Readiness now, as (readable, writable, hang-up); parks `cx` for the
    /// wanted directions (reads always, for hang-ups) when nothing wanted is ready.
    pub fn readiness(
        &self,
        want_read: bool,
        want_write: bool,
        lazy: bool,
        cx: Option<&Context<'_>>,
    ) -> Readiness {
        let fd = match &self.socket {
            Socket::Tcp(stream) => stream.as_raw_fd(),
            Socket::Unix(stream) => stream.as_raw_fd(),
        };
        readiness(&self.source, fd, want_read, want_write, lazy, cx)
    }

    /// Counts one more handle to this connection (`dup`).
    pub fn add_handle(&self) {
        self.handles.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one handle less (closed, or dropped with its process); the
    /// last one shuts both directions down. Returns whether it was the last.
    pub fn close_handle(&self) -> bool {
        let last = self.handles.fetch_sub(1, Ordering::AcqRel) == 1;
        if last {
            self.shutdown();
        }
        last
    }

    /// Shuts the read direction down: reads return end of stream from now
    /// on, through every handle, while writes go on.
    pub fn shutdown_read(&self) {
        let _ = match &self.socket {
            Socket::Tcp(stream) => stream.shutdown(Shutdown::Read),
            Socket::Unix(stream) => stream.shutdown(Shutdown::Read),
        };
        self.source.forget_drained();
    }

    /// Shuts both directions down: the peer sees end of stream at once, even
    /// while other handles to this connection are still alive.
    pub fn shutdown(&self) {
        let _ = match &self.socket {
            Socket::Tcp(stream) => stream.shutdown(Shutdown::Both),
            Socket::Unix(stream) => stream.shutdown(Shutdown::Both),
        };
        self.source.forget_drained();
    }

    /// Shuts the write direction down: the peer sees end of stream, and this
    /// side can still read what the peer sends.
    pub fn shutdown_write(&self) {
        let _ = match &self.socket {
            Socket::Tcp(stream) => stream.shutdown(Shutdown::Write),
            Socket::Unix(stream) => stream.shutdown(Shutdown::Write),
        };
    }
}

impl Drop for Connection {
    /// Forgets the socket's readiness; the socket is closed right after,
    /// and closing it takes it out of the `epoll` set (the host holds the
    /// only descriptor of it), so no `EPOLL_CTL_DEL` is needed first: one
    /// system call less per connection. An event already on its way for it
    /// finds no source and is dropped (`Reactor::turn`).
    fn drop(&mut self) {
        self.reactor.forget(&self.source);
    }
}

/// What a zero-timeout `poll(2)` says of a socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readiness {
    /// Data, end of stream or a connection to accept is waiting.
    pub readable: bool,
    /// A write would not block.
    pub writable: bool,
    /// The peer is gone or the socket has an error.
    pub hangup: bool,
}

/// Level-triggered readiness of `fd` (one `poll(2)` with timeout 0), parking
/// `cx` on `source` when none of the wanted conditions hold. The event counts
/// are read before the probe, so an event racing with it is never lost.
///
/// A reader that waits after its read found the stream drained (the HTTP
/// loop between requests) is answered from the event count: no event since
/// means nothing to read, without a syscall. An event since usually means
/// bytes, but not always: it may be for bytes the read already took (it
/// was queued before the read and counted after). With `lazy` that event
/// is taken as readable all the same (stale at times; the caller reads
/// with `try-read` and waits again on `again`); otherwise the probe
/// decides, and a probe that finds nothing moves the drained mark to the
/// count it saw, so the next wait is answered from the count again.
pub(crate) fn readiness(
    source: &Source,
    fd: RawFd,
    want_read: bool,
    want_write: bool,
    lazy: bool,
    cx: Option<&Context<'_>>,
) -> Readiness {
    loop {
        let seen_read = source.events(Direction::Read);
        let seen_write = source.events(Direction::Write);
        let drained = source
            .read_drained_at()
            .filter(|_| want_read && !want_write);
        if let Some(drained) = drained {
            if seen_read == drained {
                match cx {
                    None => return Readiness::default(),
                    Some(cx) if source.park(Direction::Read, seen_read, cx) => {
                        return Readiness::default()
                    }
                    // An event came in between: look again.
                    Some(_) => continue,
                }
            }
            if lazy {
                return Readiness {
                    readable: true,
                    ..Readiness::default()
                };
            }
        }
        let mut probe = libc::pollfd {
            fd,
            events: libc::POLLIN | libc::POLLOUT | libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd, count 1, timeout 0: poll only writes `revents`.
        let ready = unsafe { libc::poll(&mut probe, 1, 0) };
        let bits = probe.revents;
        let now = if ready < 0 {
            Readiness {
                hangup: true,
                ..Readiness::default()
            }
        } else {
            Readiness {
                readable: bits & (libc::POLLIN | libc::POLLRDHUP | libc::POLLHUP) != 0,
                writable: bits & libc::POLLOUT != 0,
                // POLLRDHUP alone is a half-close: end of stream to read, not a hang-up.
                hangup: bits & (libc::POLLHUP | libc::POLLERR) != 0,
            }
        };
        if drained.is_some() && !now.readable && !now.hangup {
            // The event since the drain was for bytes already taken.
            source.note_drained_at(seen_read);
        }
        let wanted = (want_read && now.readable) || (want_write && now.writable) || now.hangup;
        let Some(cx) = cx else { return now };
        if wanted {
            return now;
        }
        let parked_read = source.park(Direction::Read, seen_read, cx);
        let parked_write = !want_write || source.park(Direction::Write, seen_write, cx);
        if parked_read && parked_write {
            return now;
        }
    }
}
