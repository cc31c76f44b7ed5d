//! Networking: outbound [`connect`], and the [`Listener`] of an app in
//! listener mode.

use std::io;

use crate::{errno, sys, Handle};

/// Opens a TCP connection to `addr`, an `IP:port` such as `127.0.0.1:6379`
/// or `[::1]:80` (no host names), and returns it as a [`Handle`].
///
/// Only addresses in the app's `allow_outbound` manifest list are
/// reachable. Only this process waits while it connects.
///
/// # Errors
///
/// - [`sys::DENIED`] (as [`io::ErrorKind::PermissionDenied`]): `addr` is
///   not in the allowlist.
/// - [`sys::INVAL`] (as [`io::ErrorKind::InvalidInput`]): `addr` is not an
///   `IP:port`.
/// - [`sys::IO`] (as [`io::ErrorKind::Other`]): refused or unreachable.
/// - [`sys::LIMIT`] (as [`io::ErrorKind::QuotaExceeded`]): too many handles.
///
/// # Examples
///
/// ```no_run
/// use std::io::{BufRead, BufReader, Write};
///
/// let mut redis = mnvkd_guest::connect("127.0.0.1:6379")?;
/// redis.write_all(b"PING\r\n")?;
/// let mut reply = String::new();
/// BufReader::new(&redis).read_line(&mut reply)?;
/// assert_eq!(reply, "+PONG\r\n");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn connect(addr: &str) -> io::Result<Handle> {
    // SAFETY: `addr` is valid for reads of `addr.len()` bytes.
    let ret = unsafe { sys::connect(addr.as_ptr(), addr.len()) };
    errno::check(ret)?;
    // SAFETY: the host just opened the handle for this process.
    Ok(unsafe { Handle::from_raw(ret) })
}

/// The listener of an app in listener mode (manifest `kind = "listener"`):
/// the host starts one process for the app and gives it the app's listening
/// socket as handle 0, instead of starting a process per connection.
///
/// Like [`Connection`](crate::Connection), it is a view of handle 0 that
/// any number of copies share; dropping it closes nothing.
///
/// # Examples
///
/// An echo server in one process, one child per connection:
///
/// ```no_run
/// use mnvkd_guest::{spawn, Listener};
///
/// let listener = Listener::get();
/// for conn in listener.incoming() {
///     spawn("echo", vec![conn?])?; // detached: the child runs on
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Listener {
    /// Only [`Listener::get`] makes one.
    _private: (),
}

impl Listener {
    /// The listener handle.
    const HANDLE: i32 = 0;

    /// Returns the listener, handle 0 of this process.
    ///
    /// # Examples
    ///
    /// ```
    /// let listener = mnvkd_guest::Listener::get();
    /// assert_eq!(listener.as_raw(), 0);
    /// ```
    pub fn get() -> Listener {
        Listener { _private: () }
    }

    /// The listener's handle number (0), e.g. for a
    /// [`PollFd`](crate::PollFd): it is readable when a client is waiting.
    ///
    /// # Examples
    ///
    /// ```
    /// use mnvkd_guest::{Listener, PollFd};
    ///
    /// let fd = PollFd::new(Listener::get().as_raw(), PollFd::READABLE);
    /// assert_eq!(fd.handle, 0);
    /// ```
    pub fn as_raw(&self) -> i32 {
        Listener::HANDLE
    }

    /// Waits for a client to connect and returns its connection.
    ///
    /// # Errors
    ///
    /// - [`sys::BADF`] (as [`io::ErrorKind::InvalidInput`]): handle 0 is not
    ///   a listener (the app is not in listener mode).
    /// - [`sys::LIMIT`] (as [`io::ErrorKind::QuotaExceeded`]): too many
    ///   handles.
    /// - [`sys::IO`] (as [`io::ErrorKind::Other`]): any other failure.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::io::Write;
    ///
    /// let mut conn = mnvkd_guest::Listener::get().accept()?;
    /// conn.write_all(b"hello\n")?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn accept(&self) -> io::Result<Handle> {
        // SAFETY: the import touches no memory.
        let ret = unsafe { sys::accept(Listener::HANDLE) };
        errno::check(ret)?;
        // SAFETY: the host just opened the handle for this process.
        Ok(unsafe { Handle::from_raw(ret) })
    }

    /// Accepts a waiting client without waiting: `None` when none is (the
    /// import's `again`). For a guest that waits on the listener itself;
    /// [`task::Listener::accept`](crate::task::Listener::accept) does.
    ///
    /// # Errors
    ///
    /// As [`accept`](Listener::accept).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// if let Some(conn) = mnvkd_guest::Listener::get().try_accept()? {
    ///     drop(conn); // a client was waiting
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_accept(&self) -> io::Result<Option<Handle>> {
        // SAFETY: the import touches no memory.
        let accepted = crate::handle::again_to_none(unsafe { sys::try_accept(Listener::HANDLE) })?;
        // SAFETY: the host just opened the handle for this process.
        Ok(accepted.map(|raw| unsafe { Handle::from_raw(raw as i32) }))
    }

    /// An endless iterator of [`accept`](Listener::accept)ed connections,
    /// like [`std::net::TcpListener::incoming`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::io::Write;
    ///
    /// for conn in mnvkd_guest::Listener::get().incoming() {
    ///     conn?.write_all(b"busy, come back later\n")?;
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn incoming(&self) -> Incoming {
        Incoming {
            listener: Listener::get(),
        }
    }
}

/// The iterator returned by [`Listener::incoming`]; it never ends.
///
/// # Examples
///
/// ```no_run
/// let mut incoming = mnvkd_guest::Listener::get().incoming();
/// let first = incoming.next().unwrap()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Incoming {
    /// The listener accepted from.
    listener: Listener,
}

impl Iterator for Incoming {
    type Item = io::Result<Handle>;

    fn next(&mut self) -> Option<io::Result<Handle>> {
        Some(self.listener.accept())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_connect_and_accept_fail_with_io() {
        assert_eq!(
            connect("127.0.0.1:1").unwrap_err().kind(),
            io::ErrorKind::Other
        );
        let listener = Listener::get();
        assert_eq!(listener.accept().unwrap_err().kind(), io::ErrorKind::Other);
        assert!(listener.incoming().next().unwrap().is_err());
    }
}
