//! [`Handle`]: an owned `mnvkd` handle as a blocking `Read` + `Write` stream.

use std::io::{self, Read, Write};

use crate::{errno, sys};

/// An open handle of this process (a socket, a pipe end, …), owned: it is
/// closed when dropped.
///
/// Reads block until at least one byte is available or the peer closed (a
/// read of 0 bytes is end of stream); a write sends the whole buffer or
/// fails. Blocking suspends only this process. A write first offers the
/// bytes with the non-blocking `try-write` (a plain host call, where the
/// blocking `write` is an async one that costs some 600 instructions
/// more) and waits in `write` only for what the socket or pipe did not
/// take.
///
/// # Examples
///
/// ```no_run
/// use std::io::Write;
/// use mnvkd_guest::Handle;
///
/// // SAFETY: handle 3 was given to this process and nothing else owns it.
/// let mut peer = unsafe { Handle::from_raw(3) };
/// peer.write_all(b"hello\n")?;
/// peer.close()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Handle {
    /// The handle number; open in this process, and owned by nothing else.
    raw: i32,
}

impl Handle {
    /// Takes ownership of the handle numbered `raw`.
    ///
    /// # Safety
    ///
    /// `raw` must be open in this process and owned by nothing else: the
    /// `Handle` closes it when dropped, and a handle number can be reused
    /// once closed. (Breaking this cannot corrupt memory, but can close a
    /// handle that other code is using, as with a Unix file descriptor.)
    ///
    /// # Examples
    ///
    /// ```
    /// use mnvkd_guest::Handle;
    ///
    /// // SAFETY: nothing else owns handle 3.
    /// let handle = unsafe { Handle::from_raw(3) };
    /// assert_eq!(handle.as_raw(), 3);
    /// ```
    pub unsafe fn from_raw(raw: i32) -> Handle {
        Handle { raw }
    }

    /// The handle number, still owned by this `Handle`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mnvkd_guest::Handle;
    ///
    /// // SAFETY: nothing else owns handle 5.
    /// let handle = unsafe { Handle::from_raw(5) };
    /// assert_eq!(handle.as_raw(), 5);
    /// ```
    pub fn as_raw(&self) -> i32 {
        self.raw
    }

    /// Gives up ownership and returns the handle number, which stays open.
    ///
    /// # Examples
    ///
    /// ```
    /// use mnvkd_guest::Handle;
    ///
    /// // SAFETY: nothing else owns handle 5.
    /// let handle = unsafe { Handle::from_raw(5) };
    /// let raw = handle.into_raw(); // not closed
    /// assert_eq!(raw, 5);
    /// ```
    pub fn into_raw(self) -> i32 {
        let raw = self.raw;
        std::mem::forget(self);
        raw
    }

    /// Closes the handle, reporting the error that dropping it would ignore.
    ///
    /// # Errors
    ///
    /// [`sys::BADF`] (as [`io::ErrorKind::InvalidInput`]) if the handle was
    /// not open.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use mnvkd_guest::Handle;
    ///
    /// // SAFETY: handle 3 was given to this process and nothing else owns it.
    /// let handle = unsafe { Handle::from_raw(3) };
    /// handle.close()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn close(self) -> io::Result<()> {
        close(self.into_raw())
    }

    /// Opens a second handle to the same stream (the `dup` import): e.g. to
    /// pass one to a child with [`spawn`](crate::spawn) and keep the other.
    /// The stream stays open until its last handle closes.
    ///
    /// # Errors
    ///
    /// [`sys::BADF`] (not a stream) or [`sys::LIMIT`] (handles per process).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use mnvkd_guest::Handle;
    ///
    /// // SAFETY: handle 3 was given to this process and nothing else owns it.
    /// let handle = unsafe { Handle::from_raw(3) };
    /// let copy = handle.try_clone()?;
    /// assert_ne!(copy.as_raw(), handle.as_raw());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_clone(&self) -> io::Result<Handle> {
        dup(self.raw)
    }

    /// Half-closes the stream for every handle to it (the `shutdown`
    /// import): [`Shutdown::Write`](std::net::Shutdown::Write) gives the
    /// peer end of stream while this side can still read.
    ///
    /// # Errors
    ///
    /// [`sys::BADF`] (not a stream).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::net::Shutdown;
    /// use mnvkd_guest::Handle;
    ///
    /// // SAFETY: handle 3 was given to this process and nothing else owns it.
    /// let handle = unsafe { Handle::from_raw(3) };
    /// handle.shutdown(Shutdown::Write)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        shutdown(self.raw, how)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Errors are ignored, as for std's files; `Handle::close` reports them.
        let _ = close(self.raw);
    }
}

impl Read for Handle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read(self.raw, buf)
    }
}

impl Read for &Handle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read(self.raw, buf)
    }
}

impl Write for Handle {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_now_or_wait(self.raw, buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        write_all(self.raw, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &Handle {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_now_or_wait(self.raw, buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        write_all(self.raw, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `shutdown` direction: stop reading.
///
/// # Examples
///
/// ```
/// assert_eq!(mnvkd_guest::sys::SHUT_READ | mnvkd_guest::sys::SHUT_WRITE, 3);
/// ```
pub const SHUT_READ: i32 = 1;

/// `shutdown` direction: stop writing (the peer sees end of stream).
///
/// # Examples
///
/// ```
/// assert_eq!(mnvkd_guest::sys::SHUT_WRITE, 2);
/// ```
pub const SHUT_WRITE: i32 = 2;

/// The most one `read` or `write` moves (1 GiB, as `wit/mnvkd.wit` says):
/// a count must never reach 2^31, where it would read as an error code.
pub(crate) const MAX_LEN: usize = 1 << 30;

/// Reads from handle `raw` into `buf`; 0 is end of stream. Straight to the
/// blocking import, unlike writes: a reader in an exchange (a request, a
/// reply from a peer process) most often finds nothing there yet, and a
/// `try-read` first would only add a call. Loops that know bytes wait
/// (after `poll`) use `try-read` themselves.
pub(crate) fn read(raw: i32, buf: &mut [u8]) -> io::Result<usize> {
    if buf.is_empty() {
        // The import would block for a byte it has no room for.
        return Ok(0);
    }
    let len = buf.len().min(MAX_LEN);
    // SAFETY: `buf` is valid for writes of `len <= buf.len()` bytes.
    errno::check(unsafe { sys::read(raw, buf.as_mut_ptr(), len) })
}

/// Writes `buf` (all of it, up to `MAX_LEN`) to handle `raw`; fewer only
/// when a pipe's reader ran out of host memory part-way (the next write then
/// fails with `limit`). `write_all` goes on from there.
pub(crate) fn write(raw: i32, buf: &[u8]) -> io::Result<usize> {
    let len = buf.len().min(MAX_LEN);
    // SAFETY: `buf` is valid for reads of `len <= buf.len()` bytes.
    errno::check(unsafe { sys::write(raw, buf.as_ptr(), len) })
}

/// Writes `buf` (all of it, up to `MAX_LEN`, as [`write`]) to handle
/// `raw`: `try-write` first, the blocking `write` only for what it did not
/// take. A pipe or socket with room takes it all at once, and the
/// non-blocking import is a plain call where the blocking one is an async
/// host call (a boxed future and a fiber context in the host, some 600
/// instructions).
pub(crate) fn write_now_or_wait(raw: i32, buf: &[u8]) -> io::Result<usize> {
    let len = buf.len().min(MAX_LEN);
    let taken = try_write(raw, &buf[..len])?.unwrap_or(0);
    if taken == len {
        return Ok(taken);
    }
    match write(raw, &buf[taken..len]) {
        Ok(n) => Ok(taken + n),
        // What was taken is gone; the error comes again at the next write.
        Err(_) if taken > 0 => Ok(taken),
        Err(err) => Err(err),
    }
}

/// Writes all of `buf` to handle `raw`, as `Write::write_all` does (less
/// its retry on `Interrupted`, which no import returns): most often one
/// `try-write` that takes it all. That case is inlined and kept free of
/// `io::Result`s, which wasm32 returns through the stack in guest memory.
#[inline]
pub(crate) fn write_all(raw: i32, buf: &[u8]) -> io::Result<()> {
    let mut taken = 0;
    if !buf.is_empty() && buf.len() <= MAX_LEN {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
        taken = unsafe { sys::try_write(raw, buf.as_ptr(), buf.len()) };
        if taken as usize == buf.len() {
            return Ok(());
        }
    }
    write_rest(raw, buf, taken)
}

/// [`write_all`] past a first `try-write` that returned `taken`.
#[inline(never)]
fn write_rest(raw: i32, mut buf: &[u8], taken: i32) -> io::Result<()> {
    if taken > 0 {
        buf = &buf[taken as usize..];
    }
    while !buf.is_empty() {
        match write_now_or_wait(raw, buf)? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => buf = &buf[n..],
        }
    }
    Ok(())
}

/// Reads from handle `raw`, waiting at most `timeout` for a byte: `None`
/// when it passed first (the import's `timedout`), `Some(0)` at end of
/// stream.
pub(crate) fn read_within(
    raw: i32,
    buf: &mut [u8],
    timeout: std::time::Duration,
) -> io::Result<Option<usize>> {
    let len = buf.len().min(MAX_LEN);
    let timeout_ms = crate::poll::timeout_ms(Some(timeout));
    // SAFETY: `buf` is valid for writes of `len <= buf.len()` bytes.
    match unsafe { sys::read_within(raw, buf.as_mut_ptr(), len, timeout_ms) } {
        sys::TIMEDOUT => Ok(None),
        ret => errno::check(ret).map(Some),
    }
}

/// Reads from handle `raw` what is there now: `None` when nothing is yet
/// (the import's `again`), `Some(0)` at end of stream.
pub(crate) fn try_read(raw: i32, buf: &mut [u8]) -> io::Result<Option<usize>> {
    let len = buf.len().min(MAX_LEN);
    // SAFETY: `buf` is valid for writes of `len <= buf.len()` bytes.
    again_to_none(unsafe { sys::try_read(raw, buf.as_mut_ptr(), len) })
}

/// Writes to handle `raw` what it takes of `buf` now: `None` when it
/// takes nothing yet (the import's `again`).
pub(crate) fn try_write(raw: i32, buf: &[u8]) -> io::Result<Option<usize>> {
    let len = buf.len().min(MAX_LEN);
    // SAFETY: `buf` is valid for reads of `len <= buf.len()` bytes.
    again_to_none(unsafe { sys::try_write(raw, buf.as_ptr(), len) })
}

/// An import's result as [`errno::check`] reads it, `again` as `None`.
pub(crate) fn again_to_none(ret: i32) -> io::Result<Option<usize>> {
    match ret {
        sys::AGAIN => Ok(None),
        ret => errno::check(ret).map(Some),
    }
}

/// A second handle to the stream behind `raw`.
pub(crate) fn dup(raw: i32) -> io::Result<Handle> {
    // SAFETY: the import touches no memory.
    let copy = errno::check(unsafe { sys::dup(raw) })?;
    // SAFETY: the host just opened `copy`; nothing else knows it.
    Ok(unsafe { Handle::from_raw(copy as i32) })
}

/// Half-closes the stream behind `raw`.
pub(crate) fn shutdown(raw: i32, how: std::net::Shutdown) -> io::Result<()> {
    let how = match how {
        std::net::Shutdown::Read => sys::SHUT_READ,
        std::net::Shutdown::Write => sys::SHUT_WRITE,
        std::net::Shutdown::Both => sys::SHUT_READ | sys::SHUT_WRITE,
    };
    // SAFETY: the import touches no memory.
    errno::check(unsafe { sys::shutdown(raw, how) }).map(drop)
}

/// Closes handle `raw`.
pub(crate) fn close(raw: i32) -> io::Result<()> {
    // SAFETY: the import touches no memory; callers own `raw`.
    errno::check(unsafe { sys::close(raw) }).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Natively the imports are stubs that fail with `io`.

    #[test]
    fn native_stubs_fail_with_io() {
        // SAFETY: nothing else owns handle 7.
        let mut handle = unsafe { Handle::from_raw(7) };
        let err = handle.write(b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Other);
        assert_eq!(err.to_string(), "any other I/O failure (io)");
        assert!(handle.read(&mut [0; 4]).is_err());
        assert!(handle.close().is_err());
    }

    #[test]
    fn empty_read_does_not_call_the_import() {
        // SAFETY: nothing else owns handle 7.
        let mut handle = unsafe { Handle::from_raw(7) };
        assert_eq!(handle.read(&mut []).unwrap(), 0);
        assert!(handle.flush().is_ok());
    }
}
