//! [`Connection`]: the connection this micro-process was started for.

use std::io::{self, Read, Write};

use crate::handle;

/// The handle of the connection a process is started for.
const HANDLE: i32 = 0;

/// Returns the connection this process was started for (handle 0).
///
/// Like [`std::io::stdin`], this can be called any number of times; every
/// [`Connection`] refers to the same connection.
///
/// # Examples
///
/// ```no_run
/// use std::io::{BufRead, BufReader, Write};
///
/// let conn = mnvkd_guest::connection();
/// let mut line = String::new();
/// BufReader::new(&conn).read_line(&mut line)?;
/// (&conn).write_all(line.to_uppercase().as_bytes())?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn connection() -> Connection {
    Connection { _private: () }
}

/// The connection this process was started for, as a blocking `Read` +
/// `Write` stream; returned by [`connection()`].
///
/// Dropping it leaves the connection open (the host closes it when the
/// process ends); [`Connection::close`] closes it early.
///
/// # Examples
///
/// ```no_run
/// use std::io::Write;
///
/// let mut conn = mnvkd_guest::connection();
/// conn.write_all(b"hello\n")?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Connection {
    /// Only [`connection()`] makes one.
    _private: (),
}

impl Connection {
    /// Closes the connection in both directions: the peer sees end of
    /// stream, and later reads and writes fail with
    /// [`sys::BADF`](crate::sys::BADF).
    ///
    /// # Errors
    ///
    /// [`sys::BADF`](crate::sys::BADF) (as [`io::ErrorKind::InvalidInput`])
    /// if it was already closed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::io::Write;
    ///
    /// let mut conn = mnvkd_guest::connection();
    /// conn.write_all(b"bye\n")?;
    /// conn.close()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn close(self) -> io::Result<()> {
        handle::close(HANDLE)
    }

    /// Opens a second handle to this connection (the `dup` import), e.g. to
    /// pass to a child that writes while this process reads. The connection
    /// closes when its last handle does.
    ///
    /// # Errors
    ///
    /// [`sys::LIMIT`](crate::sys::LIMIT) (handles per process), or
    /// [`sys::BADF`](crate::sys::BADF) if it was closed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let writer = mnvkd_guest::connection().try_clone()?;
    /// let child = mnvkd_guest::spawn("writer", vec![writer])?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_clone(&self) -> io::Result<crate::Handle> {
        handle::dup(HANDLE)
    }

    /// Half-closes the connection (the `shutdown` import), for every handle
    /// to it: [`Shutdown::Write`](std::net::Shutdown::Write) gives the peer
    /// end of stream while this side can still read its answer.
    ///
    /// # Errors
    ///
    /// [`sys::BADF`](crate::sys::BADF) if it was closed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::net::Shutdown;
    ///
    /// mnvkd_guest::connection().shutdown(Shutdown::Write)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        handle::shutdown(HANDLE, how)
    }
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        handle::read(HANDLE, buf)
    }
}

impl Read for &Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        handle::read(HANDLE, buf)
    }
}

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        handle::write_now_or_wait(HANDLE, buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        handle::write_all(HANDLE, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        handle::write_now_or_wait(HANDLE, buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        handle::write_all(HANDLE, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
