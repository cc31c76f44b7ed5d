//! [`pipe()`]: an in-kernel byte pipe between handles of this process and,
//! once one end is passed to [`spawn`](crate::spawn), another process.

use std::io;

use crate::{errno, sys, Handle};

/// Creates a pipe and returns its ends: `(read end, write end)`.
///
/// The pipe buffers up to the app's `pipe_buffer` bytes (default 64 KiB): a
/// writer blocks while it is full, a reader while it is empty. The reader
/// gets end of stream (a read of 0) once the write end is closed; a writer
/// gets [`sys::PIPE`] (as [`io::ErrorKind::BrokenPipe`]) once the read end
/// is closed. Pass an end to a child with [`spawn`](crate::spawn).
///
/// The buffered bytes count against the host memory of the process holding
/// the read end (`max_host_memory`): when it has none left, a write takes
/// what fits, then fails with [`sys::LIMIT`].
///
/// # Errors
///
/// [`sys::LIMIT`] (as [`io::ErrorKind::QuotaExceeded`]) when the process
/// has too many handles open.
///
/// # Examples
///
/// ```no_run
/// use std::io::{Read, Write};
///
/// let (mut reader, mut writer) = mnvkd_guest::pipe()?;
/// writer.write_all(b"hello")?;
/// drop(writer); // the reader gets end of stream after "hello"
/// let mut text = String::new();
/// reader.read_to_string(&mut text)?;
/// assert_eq!(text, "hello");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn pipe() -> io::Result<(Handle, Handle)> {
    let mut ends = [-1i32; 2];
    // SAFETY: `ends` is valid for writes of two `i32`.
    errno::check(unsafe { sys::pipe(ends.as_mut_ptr()) })?;
    // SAFETY: the host just opened both handles for this process; nothing
    // else owns them.
    Ok(unsafe { (Handle::from_raw(ends[0]), Handle::from_raw(ends[1])) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_pipe_fails_with_io() {
        let err = pipe().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Other);
    }
}
