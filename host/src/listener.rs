//! A TCP listener registered with the reactor: the acceptor's, or a
//! listener-mode process's handle 0.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::task::{Context, Poll};

use mio::net::{TcpListener, TcpStream};

use crate::conn::{readiness, Connection, Readiness};
use crate::reactor::{Direction, Reactor, Source};

/// Pending connections the kernel queues for a listener (capped by
/// `net.core.somaxconn`).
const BACKLOG: libc::c_int = 4096;
/// `SO_ATTACH_REUSEPORT_CBPF` (asm-generic/socket.h), which the libc crate
/// has for Android only.
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

/// Binds a TCP listener at `addr`; with `reuse_port`, with `SO_REUSEPORT`, so
/// a second host can bind the same address and take over (see
/// [`Listener::hand_over`]).
///
/// # Errors
/// When the socket cannot be made or bound (e.g. the address is in use).
pub fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// A non-blocking listener. Dropping it deregisters and closes it.
#[derive(Debug)]
pub struct Listener {
    /// The socket.
    listener: TcpListener,
    /// Its readiness, fed by the reactor.
    source: Arc<Source>,
    /// The reactor it is registered with.
    reactor: Arc<Reactor>,
    /// Set by [`Listener::shutdown`]; then accepts fail with `NotConnected`.
    shut: std::sync::atomic::AtomicBool,
    /// The address every accepted connection has as its local one; `None`
    /// for a wildcard address (each connection's is asked then).
    local: Option<SocketAddr>,
}

impl Listener {
    /// Registers `listener` with `reactor`, making it non-blocking.
    ///
    /// # Errors
    /// When the socket cannot be made non-blocking or registered.
    /// A listener from [`bind`] already has its backlog; one from elsewhere
    /// (std listens with 128) gets [`BACKLOG`] here, as a burst of connects
    /// beyond the backlog loses SYNs and costs those clients a one-second
    /// retransmit.
    pub fn new(listener: std::net::TcpListener, reactor: &Arc<Reactor>) -> io::Result<Listener> {
        listener.set_nonblocking(true)?;
        // SAFETY: a valid listening fd; listen() again only resizes the backlog.
        if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // Accepted sockets inherit TCP_NODELAY on Linux: set once here
        // instead of once per connection (small writes must not wait for
        // Nagle). A test checks the inheritance.
        socket2::SockRef::from(&listener).set_tcp_nodelay(true)?;
        let local = listener
            .local_addr()
            .ok()
            .filter(|addr| !addr.ip().is_unspecified());
        let mut listener = TcpListener::from_std(listener);
        let fd = listener.as_raw_fd();
        let source = reactor.register(&mut listener, fd)?;
        Ok(Listener {
            listener,
            source,
            reactor: Arc::clone(reactor),
            shut: std::sync::atomic::AtomicBool::new(false),
            local,
        })
    }

    /// The bound address.
    ///
    /// # Errors
    /// When the OS cannot tell.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts the next connection, registered with the reactor; after
    /// [`shutdown`](Self::shutdown), fails with `NotConnected` (a guest's
    /// `accept` returns `pipe`: no more connections will come).
    pub fn poll_accept(&self, cx: &Context<'_>) -> Poll<io::Result<Connection>> {
        if let Err(err) = self.open() {
            return Poll::Ready(Err(err));
        }
        self.source
            .poll_io(Direction::Read, cx, || self.listener.accept())
            .map(|accepted| self.adopt(accepted))
    }

    /// Accepts the next connection if one is waiting, registered with the
    /// reactor; `WouldBlock` when none is. After a `WouldBlock`, and until
    /// the next readiness event, the backlog is known to be empty: this
    /// answers without the syscall ([`Source::try_io`]), and a lazy wait
    /// ([`Self::readiness`]) parks without a probe. After
    /// [`shutdown`](Self::shutdown), fails with `NotConnected`, as
    /// [`Self::poll_accept`] does.
    pub fn try_accept(&self) -> io::Result<Connection> {
        self.open()?;
        let (accepted, _) = self
            .source
            .try_io(Direction::Read, || self.listener.accept());
        self.adopt(accepted)
    }

    /// `NotConnected` after [`shutdown`](Self::shutdown): no more
    /// connections will come. Checked before the backlog, so that a drain
    /// is seen even while the backlog is known to be empty.
    fn open(&self) -> io::Result<()> {
        if self.shut.load(std::sync::atomic::Ordering::Acquire) {
            return Err(io::ErrorKind::NotConnected.into());
        }
        Ok(())
    }

    /// An accepted socket as a registered connection.
    fn adopt(&self, accepted: io::Result<(TcpStream, SocketAddr)>) -> io::Result<Connection> {
        let (stream, remote) = accepted?;
        Connection::accepted(stream, remote, self.local, &self.reactor)
    }

    /// Before a drain closes a `SO_REUSEPORT` listener: steers the
    /// connections that arrive from now on to the socket that joined the
    /// address's group after this one (the new host taking over), so that
    /// closing this one loses none. A classic-BPF program on the group
    /// answers socket index 1; this listener, the older one, is index 0.
    /// With no second socket the kernel falls back to its hash, so it is
    /// harmless then.
    ///
    /// # Errors
    /// When the kernel refuses the program.
    pub fn hand_over(&self) -> io::Result<()> {
        // BPF_RET | BPF_K: return 1.
        let mut program = [libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 1,
        }];
        let fprog = libc::sock_fprog {
            len: 1,
            filter: program.as_mut_ptr(),
        };
        // SAFETY: `fprog` points at a valid one-instruction program that
        // outlives the call; the kernel copies it.
        let rc = unsafe {
            libc::setsockopt(
                self.listener.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_ATTACH_REUSEPORT_CBPF,
                std::ptr::addr_of!(fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Stops the listener taking connections, though handles to it live on:
    /// pending and new connections are refused, accepts fail.
    pub fn shutdown(&self) {
        self.shut.store(true, std::sync::atomic::Ordering::Release);
        // SAFETY: shutdown(2) on the fd this listener owns; it stays open
        // (and registered) until the listener drops.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
    }

    /// Readiness now (readable = a connection waits); parks `cx` if not
    /// readable. `lazy`: as for a connection ([`crate::conn::readiness`]).
    pub fn readiness(&self, lazy: bool, cx: Option<&Context<'_>>) -> Readiness {
        readiness(
            &self.source,
            self.listener.as_raw_fd(),
            true,
            false,
            lazy,
            cx,
        )
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.reactor.deregister(&mut self.listener, &self.source);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Connects to `listener` and accepts, turning `reactor` until the
    /// connection's event came; returns the client's end and the host's.
    fn connect_and_accept(
        listener: &Listener,
        reactor: &Reactor,
        to: SocketAddr,
    ) -> (std::net::TcpStream, Connection) {
        let client = std::net::TcpStream::connect(to).unwrap();
        for _ in 0..1000 {
            match listener.try_accept() {
                Ok(conn) => return (client, conn),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    reactor.turn(Some(Duration::from_millis(5)));
                }
                Err(err) => panic!("accept failed: {err}"),
            }
        }
        panic!("no connection accepted in 5 s");
    }

    #[test]
    fn an_accepted_connection_has_nodelay_and_its_addresses_from_the_listener() {
        let reactor = Reactor::start().unwrap();
        let listener = Listener::new(
            bind("127.0.0.1:0".parse().unwrap(), false).unwrap(),
            &reactor,
        )
        .unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, conn) = connect_and_accept(&listener, &reactor, addr);
        assert!(
            conn.nodelay().unwrap(),
            "TCP_NODELAY is inherited from the listener"
        );
        assert_eq!(conn.peers().remote, Some(client.local_addr().unwrap()));
        assert_eq!(conn.peers().local, Some(addr));
    }

    #[test]
    fn on_a_wildcard_listener_each_connection_asks_its_local_address() {
        let reactor = Reactor::start().unwrap();
        let listener =
            Listener::new(bind("0.0.0.0:0".parse().unwrap(), false).unwrap(), &reactor).unwrap();
        let port = listener.local_addr().unwrap().port();
        let to: SocketAddr = ([127, 0, 0, 1], port).into();
        let (client, conn) = connect_and_accept(&listener, &reactor, to);
        assert_eq!(
            conn.peers().local,
            Some(to),
            "the address the client reached"
        );
        assert_eq!(conn.peers().remote, Some(client.local_addr().unwrap()));
    }
}
