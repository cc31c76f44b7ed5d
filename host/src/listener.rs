//! A TCP listener registered with the reactor: the acceptor's, or a
//! listener-mode process's handle 0.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::task::{Context, Poll};

use mio::net::TcpListener;

use crate::conn::{readiness, Connection, Readiness, Socket};
use crate::reactor::{Direction, Reactor, Source};

/// Pending connections the kernel queues for a listener (capped by
/// `net.core.somaxconn`).
const BACKLOG: libc::c_int = 4096;

/// A non-blocking listener. Dropping it deregisters and closes it.
#[derive(Debug)]
pub struct Listener {
    /// The socket.
    listener: TcpListener,
    /// Its readiness, fed by the reactor.
    source: Arc<Source>,
    /// The reactor it is registered with.
    reactor: Arc<Reactor>,
}

impl Listener {
    /// Registers `listener` with `reactor`, making it non-blocking.
    ///
    /// # Errors
    /// When the socket cannot be made non-blocking or registered.
    pub fn new(listener: std::net::TcpListener, reactor: &Arc<Reactor>) -> io::Result<Listener> {
        listener.set_nonblocking(true)?;
        // std listens with a backlog of 128: a burst of connects beyond it
        // loses SYNs and costs those clients a one-second retransmit.
        // SAFETY: a valid listening fd; listen() again only resizes the backlog.
        if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut listener = TcpListener::from_std(listener);
        let fd = listener.as_raw_fd();
        let source = reactor.register(&mut listener, fd)?;
        Ok(Listener {
            listener,
            source,
            reactor: Arc::clone(reactor),
        })
    }

    /// The bound address.
    ///
    /// # Errors
    /// When the OS cannot tell.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts the next connection, registered with the reactor.
    pub fn poll_accept(&self, cx: &Context<'_>) -> Poll<io::Result<Connection>> {
        self.source
            .poll_io(Direction::Read, cx, || self.listener.accept())
            .map(|accepted| {
                accepted.and_then(|(stream, _)| Connection::new(Socket::Tcp(stream), &self.reactor))
            })
    }

    /// Stops the listener taking connections, though handles to it live on:
    /// pending and new connections are refused, accepts fail.
    pub fn shutdown(&self) {
        // SAFETY: shutdown(2) on the fd this listener owns; it stays open
        // (and registered) until the listener drops.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
    }

    /// Readiness now (readable = a connection waits); parks `cx` if not readable.
    pub fn readiness(&self, cx: Option<&Context<'_>>) -> Readiness {
        readiness(&self.source, self.listener.as_raw_fd(), true, false, cx)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.reactor.deregister(&mut self.listener, &self.source);
    }
}
