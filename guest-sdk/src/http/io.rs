//! What a server loop reads requests from and writes responses to: the
//! connection, another handle, or any `Read + Write` stream.

use std::io::{self, Read, Write};
use std::time::Duration;

use crate::{poll, Connection, Handle, PollFd};

/// A byte stream the server loop runs on.
pub(crate) trait Io {
    /// Reads some bytes; 0 is end of stream.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes all of `buf`.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Reads what is there without waiting: `None` when nothing is (or
    /// the stream cannot tell; the loop then waits and reads).
    fn try_read(&mut self, _buf: &mut [u8]) -> io::Result<Option<usize>> {
        Ok(None)
    }
    /// Reads after [`Io::wait_readable`] said the stream is readable:
    /// `None` when nothing is there after all. The host's readiness can be
    /// stale (an event for bytes an earlier read already took); a blocking
    /// read then would wait for the client past every timeout, so a stream
    /// that can read without waiting does, and the loop waits again. A
    /// stream that cannot tell reads as [`Io::read`] does.
    fn read_ready(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.read(buf).map(Some)
    }
    /// Waits until a read would not block; `false` if `timeout` passed first.
    fn wait_readable(&mut self, timeout: Duration) -> io::Result<bool>;
    /// Closes the stream (both directions, where it can).
    fn close(&mut self);
}

/// Waits on handle `raw` with the host's `poll`. Lazy: the loop reads with
/// [`Io::read_ready`] after it and waits again on a stale readable, and
/// an exact wait would cost a `poll(2)` in the host per request.
fn poll_readable(raw: i32, timeout: Duration) -> io::Result<bool> {
    let mut fds = [PollFd::new(raw, PollFd::READABLE | PollFd::LAZY)];
    Ok(poll(&mut fds, Some(timeout))? > 0)
}

/// Reads from handle `raw`: `try-read` first, the blocking `read` only if
/// nothing is there. The loop reads after `poll` said readable, so the
/// first almost always succeeds, and a non-blocking import is a plain call
/// where a blocking one is an async host call (a boxed future and a fiber
/// context in the host).
fn read_handle(raw: i32, buf: &mut [u8]) -> io::Result<usize> {
    match crate::handle::try_read(raw, buf)? {
        Some(n) => Ok(n),
        None => crate::handle::read(raw, buf),
    }
}

/// Writes all of `buf` to handle `raw`: `try-write` first (a response
/// almost always fits the socket's buffer), then the blocking `write` for
/// what it did not take.
fn write_all_handle(raw: i32, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = match crate::handle::try_write(raw, buf)? {
            Some(n) if n > 0 => n,
            _ => crate::handle::write(raw, buf)?,
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
}

impl Io for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_handle(0, buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        write_all_handle(0, buf)
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        crate::handle::try_read(0, buf)
    }

    fn read_ready(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        crate::handle::try_read(0, buf)
    }

    fn wait_readable(&mut self, timeout: Duration) -> io::Result<bool> {
        poll_readable(0, timeout)
    }

    fn close(&mut self) {
        let _ = crate::connection().close();
    }
}

/// A handle served until the loop ends, then closed.
#[derive(Debug)]
pub(crate) struct Owned(pub(crate) Option<Handle>);

impl Io for Owned {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.0 {
            Some(handle) => read_handle(handle.as_raw(), buf),
            None => Ok(0),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &self.0 {
            Some(handle) => write_all_handle(handle.as_raw(), buf),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match &self.0 {
            Some(handle) => crate::handle::try_read(handle.as_raw(), buf),
            None => Ok(Some(0)),
        }
    }

    fn read_ready(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.try_read(buf)
    }

    fn wait_readable(&mut self, timeout: Duration) -> io::Result<bool> {
        match &self.0 {
            Some(handle) => poll_readable(handle.as_raw(), timeout),
            None => Ok(true),
        }
    }

    fn close(&mut self) {
        if let Some(handle) = self.0.take() {
            let _ = handle.close();
        }
    }
}

/// Any stream: no timeouts (a read just blocks), closed by dropping it.
#[derive(Debug)]
pub(crate) struct Stream<S>(pub(crate) Option<S>);

impl<S: Read + Write> Io for Stream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.0 {
            Some(stream) => stream.read(buf),
            None => Ok(0),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.0 {
            Some(stream) => stream.write_all(buf),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn wait_readable(&mut self, _timeout: Duration) -> io::Result<bool> {
        Ok(true)
    }

    fn close(&mut self) {
        if let Some(mut stream) = self.0.take() {
            let _ = stream.flush();
        }
    }
}
