//! Handles as coroutine I/O: [`Stream`] (a connection, an outbound
//! connection or a host pipe end), [`Listener`], and [`readiness`], the
//! wait under them.
//!
//! A write first tries the non-blocking `try-write` (a socket or a pipe
//! with room takes the bytes at once: one host call); a read, and a write
//! that found no room, wait as a coroutine until the executor's `poll` finds
//! the handle ready, then make the non-blocking call (`try-read`,
//! `try-write`), and wait again on `again` (another process sharing the
//! handle may have taken the bytes). When an operation is the only thing any
//! coroutine waits for, the executor skips the `poll` and lets the blocking
//! import (`read`, `write`) wait in the host: nothing else could run.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::executor::{self, EXCLUSIVE};
use crate::{handle, Handle, PollFd};

/// Waits, as a coroutine, until `handle` has one of `events`
/// ([`PollFd::READABLE`], [`PollFd::WRITABLE`]); returns the revents (hang-up
/// and invalid included). Readable is exact, as `poll`'s, unless `events`
/// has [`PollFd::LAZY`] (then it may be stale: read with `try-read`).
///
/// # Examples
///
/// ```no_run
/// use mnvkd_guest::{task, PollFd};
///
/// task::block_on(async {
///     let revents = task::readiness(0, PollFd::READABLE).await;
///     assert!(revents & PollFd::READABLE != 0);
/// });
/// ```
pub fn readiness(handle: i32, events: u16) -> Readiness {
    Readiness {
        handle,
        events,
        wait: None,
    }
}

/// The future of [`readiness`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Readiness {
    handle: i32,
    events: u16,
    /// The registered wait's id, after the first poll.
    wait: Option<usize>,
}

impl Future for Readiness {
    type Output = u16;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u16> {
        match self.wait {
            None => {
                self.wait = Some(executor::add_wait(self.handle, self.events, cx.waker()));
                Poll::Pending
            }
            Some(id) => match executor::wait_result(id) {
                Some(revents) => {
                    executor::remove_wait(id);
                    self.wait = None;
                    Poll::Ready(revents)
                }
                None => Poll::Pending,
            },
        }
    }
}

impl Drop for Readiness {
    fn drop(&mut self) {
        if let Some(id) = self.wait.take() {
            executor::remove_wait(id);
        }
    }
}

/// A byte stream handle used by coroutines: the process's connection, an
/// outbound connection, a host pipe end. Methods take `&self`, so two
/// coroutines can share one through an [`Rc`](std::rc::Rc) (one reads, one writes).
///
/// # Examples
///
/// An echo server in coroutine style:
///
/// ```no_run
/// use mnvkd_guest::task::{self, Stream};
///
/// task::block_on(async {
///     let conn = Stream::connection();
///     let mut buf = [0; 4096];
///     loop {
///         let n = conn.read(&mut buf).await?;
///         if n == 0 {
///             return Ok::<(), std::io::Error>(());
///         }
///         conn.write_all(&buf[..n]).await?;
///     }
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Stream {
    /// The handle number.
    raw: i32,
    /// Whether dropping the stream closes the handle (not for handle 0,
    /// which, like [`connection()`](crate::connection), is only viewed).
    owned: bool,
    /// Reads and writes that moved bytes so far ([`Stream::progress`]).
    progress: Cell<u64>,
}

impl Stream {
    /// The connection this process was started for (handle 0); dropping the
    /// `Stream` leaves it open.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(mnvkd_guest::task::Stream::connection().as_raw(), 0);
    /// ```
    pub fn connection() -> Stream {
        Stream {
            raw: 0,
            owned: false,
            progress: Cell::new(0),
        }
    }

    /// Takes `handle` (closed when the stream is dropped).
    ///
    /// # Examples
    ///
    /// ```
    /// use mnvkd_guest::{task::Stream, Handle};
    ///
    /// // SAFETY: nothing else owns handle 3.
    /// let stream = Stream::from_handle(unsafe { Handle::from_raw(3) });
    /// assert_eq!(stream.as_raw(), 3);
    /// # std::mem::forget(stream);
    /// ```
    pub fn from_handle(handle: Handle) -> Stream {
        Stream {
            raw: handle.into_raw(),
            owned: true,
            progress: Cell::new(0),
        }
    }

    /// The handle number.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(mnvkd_guest::task::Stream::connection().as_raw(), 0);
    /// ```
    pub fn as_raw(&self) -> i32 {
        self.raw
    }

    /// How many reads and writes moved bytes so far: a server that ends
    /// connections making no progress ([`Listener::serve_each`]) compares
    /// it over time.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(mnvkd_guest::task::Stream::connection().progress(), 0);
    /// ```
    pub fn progress(&self) -> u64 {
        self.progress.get()
    }

    fn moved(&self, n: usize) -> usize {
        if n > 0 {
            self.progress.set(self.progress.get() + 1);
        }
        n
    }

    /// Reads what is there (at least one byte; 0 at end of stream), waiting
    /// as a coroutine until there is something.
    ///
    /// # Errors
    ///
    /// The import's error ([`sys::BADF`](crate::sys::BADF), …).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use mnvkd_guest::task::{self, Stream};
    ///
    /// let n = task::block_on(async { Stream::connection().read(&mut [0; 64]).await })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            // Lazy: a stale readable costs one `again` and another wait.
            if readiness(self.raw, PollFd::READABLE | PollFd::LAZY).await & EXCLUSIVE != 0 {
                return handle::read(self.raw, buf).map(|n| self.moved(n));
            }
            if let Some(n) = self.try_read(buf)? {
                return Ok(n);
            }
        }
    }

    /// Reads what is there without waiting: `None` when nothing is (the
    /// `try-read` import's `again`); `Some(0)` at end of stream.
    ///
    /// # Errors
    ///
    /// The import's error ([`sys::BADF`](crate::sys::BADF), …).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let got = mnvkd_guest::task::Stream::connection().try_read(&mut [0; 64])?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        Ok(handle::try_read(self.raw, buf)?.map(|n| self.moved(n)))
    }

    /// Writes what the handle takes of `buf` now (all of it when no other
    /// coroutine waits), waiting as a coroutine while it takes nothing;
    /// returns the count.
    ///
    /// # Errors
    ///
    /// The import's error ([`sys::PIPE`](crate::sys::PIPE), …).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use mnvkd_guest::task::{self, Stream};
    ///
    /// let n = task::block_on(async { Stream::connection().write(b"hi\n").await })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(n) = handle::try_write(self.raw, buf)? {
                return Ok(self.moved(n));
            }
            if readiness(self.raw, PollFd::WRITABLE | PollFd::LAZY).await & EXCLUSIVE != 0 {
                return handle::write(self.raw, buf).map(|n| self.moved(n));
            }
        }
    }

    /// Writes all of `buf`.
    ///
    /// # Errors
    ///
    /// As [`Stream::write`]; `WriteZero` if a write takes nothing.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use mnvkd_guest::task::{self, Stream};
    ///
    /// task::block_on(Stream::connection().write_all(b"hello\n"))?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write(buf).await? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => buf = &buf[n..],
            }
        }
        Ok(())
    }

    /// Half-closes the stream for every handle to it (the `shutdown`
    /// import); the handle stays open.
    ///
    /// # Errors
    ///
    /// [`sys::BADF`](crate::sys::BADF) if it is not open.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::net::Shutdown;
    ///
    /// mnvkd_guest::task::Stream::connection().shutdown(Shutdown::Write)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        handle::shutdown(self.raw, how)
    }

    /// A second handle to the same stream (the `dup` import), e.g. to pass
    /// to a child process while this one keeps using the stream.
    ///
    /// # Errors
    ///
    /// [`sys::LIMIT`](crate::sys::LIMIT) or [`sys::BADF`](crate::sys::BADF).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let copy = mnvkd_guest::task::Stream::connection().try_clone()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_clone(&self) -> io::Result<Handle> {
        handle::dup(self.raw)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if self.owned {
            let _ = handle::close(self.raw);
        }
    }
}

/// Opens an outbound connection to `addr` (in the app's `allow_outbound`)
/// as a [`Stream`]. The import waits for the connection to be set up, and
/// with it the whole process (other coroutines run again once it is).
///
/// # Errors
///
/// As [`connect`](crate::connect).
///
/// # Examples
///
/// ```no_run
/// use mnvkd_guest::task;
///
/// task::block_on(async {
///     let upstream = task::connect("127.0.0.1:6379").await?;
///     upstream.write_all(b"PING\r\n").await
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub async fn connect(addr: &str) -> io::Result<Stream> {
    crate::connect(addr).map(Stream::from_handle)
}

/// The listener of an app in listener mode (handle 0), accepting as a
/// coroutine.
///
/// # Examples
///
/// ```no_run
/// use mnvkd_guest::task::{self, Listener};
///
/// task::block_on(async {
///     loop {
///         let conn = Listener::get().accept().await?;
///         task::spawn(async move {
///             let _ = conn.write_all(b"hello\n").await;
///         });
///     }
///     # Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Listener {
    _private: (),
}

impl Listener {
    /// The app's listener (handle 0).
    ///
    /// # Examples
    ///
    /// ```
    /// let _listener = mnvkd_guest::task::Listener::get();
    /// ```
    pub fn get() -> Listener {
        Listener { _private: () }
    }

    /// Waits as a coroutine for the next client; returns its connection.
    ///
    /// # Errors
    ///
    /// As [`Listener::accept`](crate::Listener::accept): `pipe` once the host
    /// drains.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use mnvkd_guest::task::{self, Listener};
    ///
    /// let conn = task::block_on(Listener::get().accept())?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn accept(&self) -> io::Result<Stream> {
        let listener = crate::Listener::get();
        loop {
            // Tried first: under load the next client is usually waiting.
            if let Some(conn) = listener.try_accept()? {
                return Ok(Stream::from_handle(conn));
            }
            // Lazy: after that `again` the host knows the backlog is empty
            // until the listener's next event, so this wait costs no
            // `poll(2)`; a stale readable costs one more `again`.
            if readiness(0, PollFd::READABLE | PollFd::LAZY).await & EXCLUSIVE != 0 {
                // Nothing else in the heap could run meanwhile: block.
                return listener.accept().map(Stream::from_handle);
            }
        }
    }
}
