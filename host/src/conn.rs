//! A connection: the stream socket a process was started for, registered with
//! the reactor, with poll-style non-blocking read and write.
//!
//! TCP for served apps; a Unix socket pair for `mnvkd-host run`, whose other
//! end is bridged to the terminal. Everything above this module sees one type.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use mio::net::{TcpStream, UnixStream};

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

/// A registered stream socket. Dropping it deregisters and closes the socket.
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
}

impl Connection {
    /// Registers `socket` (already non-blocking) with `reactor`.
    ///
    /// # Errors
    /// When the registration fails.
    pub fn new(mut socket: Socket, reactor: &Arc<Reactor>) -> io::Result<Connection> {
        let (source, peers) = match &mut socket {
            Socket::Tcp(stream) => {
                // Small writes (prompts, echoes) must not wait for Nagle.
                let _ = stream.set_nodelay(true);
                let peers = Peers {
                    remote: stream.peer_addr().ok(),
                    local: stream.local_addr().ok(),
                };
                (reactor.register(stream)?, peers)
            }
            Socket::Unix(stream) => {
                let peers = Peers {
                    remote: None,
                    local: None,
                };
                (reactor.register(stream)?, peers)
            }
        };
        Ok(Connection {
            socket,
            source,
            reactor: Arc::clone(reactor),
            peers,
        })
    }

    /// The connection's addresses.
    pub fn peers(&self) -> Peers {
        self.peers
    }

    /// Reads into `buf`; `Ready(Ok(0))` is end of stream.
    pub fn poll_read(&self, cx: &Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.source
            .poll_io(Direction::Read, cx, || match &self.socket {
                Socket::Tcp(stream) => (&*stream).read(buf),
                Socket::Unix(stream) => (&*stream).read(buf),
            })
    }

    /// Writes some of `buf`; returns how much was written.
    pub fn poll_write(&self, cx: &Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.source
            .poll_io(Direction::Write, cx, || self.try_write(buf))
    }

    /// Writes what the socket takes now without blocking; `WouldBlock` if nothing.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match &self.socket {
            Socket::Tcp(stream) => (&*stream).write(buf),
            Socket::Unix(stream) => (&*stream).write(buf),
        }
    }

    /// Reads what is there now without blocking; `WouldBlock` if nothing.
    /// Returns the read and the readiness count to wait on after `WouldBlock`.
    pub fn try_read(&self, buf: &mut [u8]) -> (io::Result<usize>, u64) {
        let seen = self.source.events(Direction::Read);
        let result = match &self.socket {
            Socket::Tcp(stream) => (&*stream).read(buf),
            Socket::Unix(stream) => (&*stream).read(buf),
        };
        (result, seen)
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

    /// Shuts both directions down: the peer sees end of stream at once, even
    /// while other handles to this connection are still alive.
    pub fn shutdown(&self) {
        let _ = match &self.socket {
            Socket::Tcp(stream) => stream.shutdown(Shutdown::Both),
            Socket::Unix(stream) => stream.shutdown(Shutdown::Both),
        };
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        match &mut self.socket {
            Socket::Tcp(stream) => self.reactor.deregister(stream, &self.source),
            Socket::Unix(stream) => self.reactor.deregister(stream, &self.source),
        }
    }
}
