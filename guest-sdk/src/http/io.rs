//! What a server loop reads requests from and writes responses to: the
//! connection, another handle, or any `Read + Write` stream.

use std::io::{self, Read, Write};
use std::rc::Rc;
use std::time::Duration;

use crate::task::{self, Either};
use crate::{poll, Connection, Handle, PollFd};

/// A byte stream the server loop runs on.
///
/// The loop is `async`, so that one definition serves both shapes: a
/// blocking stream (this process's connection, a handle, any `Read +
/// Write`) whose futures are ready when first polled, driven by
/// [`run_blocking`](super::run_blocking), and a coroutine's stream
/// ([`Coroutine`]) whose futures wait in the task executor.
pub(crate) trait Io {
    /// Reads some bytes; 0 is end of stream.
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes all of `buf`.
    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
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
    /// stream that cannot tell blocks in its read.
    fn read_ready(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>>;
    /// Waits until a read would not block; `false` if `timeout` passed first.
    async fn wait_readable(&mut self, timeout: Duration) -> io::Result<bool>;
    /// Reads, waiting at most `timeout` for bytes: `None` when it passed
    /// first. A stream with a host handle does it in one call
    /// (`read-within`); the others wait, then read, and wait again after
    /// a stale readable.
    async fn read_within(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> io::Result<Option<usize>> {
        loop {
            if !self.wait_readable(timeout).await? {
                return Ok(None);
            }
            if let Some(n) = self.read_ready(buf)? {
                return Ok(Some(n));
            }
        }
    }
    /// Closes the stream (both directions, where it can).
    fn close(&mut self);
    /// Where a handler's response writes at once what is too large to
    /// batch; `None` when the stream cannot block inside the handler.
    fn sink(&mut self) -> Option<&mut dyn Sink>;
}

/// A blocking writer for a response's large parts (see [`Io::sink`]).
pub(crate) trait Sink {
    /// Writes all of `buf`.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
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
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_handle(0, buf)
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        Sink::write_all(self, buf)
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        crate::handle::try_read(0, buf)
    }

    fn read_ready(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        crate::handle::try_read(0, buf)
    }

    async fn wait_readable(&mut self, timeout: Duration) -> io::Result<bool> {
        poll_readable(0, timeout)
    }

    async fn read_within(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> io::Result<Option<usize>> {
        crate::handle::read_within(0, buf, timeout)
    }

    fn close(&mut self) {
        let _ = crate::connection().close();
    }

    fn sink(&mut self) -> Option<&mut dyn Sink> {
        Some(self)
    }
}

impl Sink for Connection {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        write_all_handle(0, buf)
    }
}

/// A handle served until the loop ends, then closed.
#[derive(Debug)]
pub(crate) struct Owned(pub(crate) Option<Handle>);

impl Io for Owned {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.0 {
            Some(handle) => read_handle(handle.as_raw(), buf),
            None => Ok(0),
        }
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        Sink::write_all(self, buf)
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

    async fn wait_readable(&mut self, timeout: Duration) -> io::Result<bool> {
        match &self.0 {
            Some(handle) => poll_readable(handle.as_raw(), timeout),
            None => Ok(true),
        }
    }

    async fn read_within(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> io::Result<Option<usize>> {
        match &self.0 {
            Some(handle) => crate::handle::read_within(handle.as_raw(), buf, timeout),
            None => Ok(Some(0)),
        }
    }

    fn close(&mut self) {
        if let Some(handle) = self.0.take() {
            let _ = handle.close();
        }
    }

    fn sink(&mut self) -> Option<&mut dyn Sink> {
        Some(self)
    }
}

impl Sink for Owned {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &self.0 {
            Some(handle) => write_all_handle(handle.as_raw(), buf),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

/// Any stream: no timeouts (a read just blocks), closed by dropping it.
#[derive(Debug)]
pub(crate) struct Stream<S>(pub(crate) Option<S>);

impl<S: Read> Stream<S> {
    fn read_blocking(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.0 {
            Some(stream) => stream.read(buf),
            None => Ok(0),
        }
    }
}

impl<S: Read + Write> Io for Stream<S> {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_blocking(buf)
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        Sink::write_all(self, buf)
    }

    fn read_ready(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.read_blocking(buf).map(Some)
    }

    async fn wait_readable(&mut self, _timeout: Duration) -> io::Result<bool> {
        Ok(true)
    }

    fn close(&mut self) {
        if let Some(mut stream) = self.0.take() {
            let _ = stream.flush();
        }
    }

    fn sink(&mut self) -> Option<&mut dyn Sink> {
        Some(self)
    }
}

impl<S: Read + Write> Sink for Stream<S> {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.0 {
            Some(stream) => stream.write_all(buf),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

/// A connection served as a coroutine of a process serving many
/// ([`Server::serve_each`](super::Server::serve_each)): its reads and
/// writes wait in the task executor, so the other connections run
/// meanwhile; a handler's response waits in the batch until it returns.
#[derive(Debug)]
pub(crate) struct Coroutine(pub(crate) Rc<task::Stream>);

impl Io for Coroutine {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).await
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf).await
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.0.try_read(buf)
    }

    fn read_ready(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.0.try_read(buf)
    }

    async fn wait_readable(&mut self, timeout: Duration) -> io::Result<bool> {
        // Lazy: the loop reads with `try-read` after it, and waits again.
        let readable = task::readiness(self.0.as_raw(), PollFd::READABLE | PollFd::LAZY);
        Ok(matches!(
            task::select(readable, task::sleep(timeout)).await,
            Either::Left(_)
        ))
    }

    fn close(&mut self) {
        // Nothing to do: the session ends right after, its coroutine
        // returns and drops the stream, and closing its handle shuts the
        // connection down (a `shutdown` here was a second syscall for it).
    }

    fn sink(&mut self) -> Option<&mut dyn Sink> {
        None
    }
}
