//! [`poll`]: waiting for several handles at once, and [`PollFd`], one entry
//! of the set.

use std::io;
use std::time::Duration;

use crate::{errno, sys};

/// One entry of a [`poll`] set: a handle, the events to wait for, and the
/// events the host found (`revents`). Its layout is the import's: 8 bytes,
/// `handle` (i32), `events` (u16), `revents` (u16).
///
/// # Examples
///
/// ```
/// use mnvkd_guest::PollFd;
///
/// let fd = PollFd::new(3, PollFd::READABLE | PollFd::WRITABLE);
/// assert_eq!(fd.handle, 3);
/// assert!(!fd.readable() && !fd.writable()); // not polled yet
/// assert_eq!(std::mem::size_of::<PollFd>(), 8);
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PollFd {
    /// The handle to watch.
    pub handle: i32,
    /// The events to wait for: [`PollFd::READABLE`] and/or
    /// [`PollFd::WRITABLE`].
    pub events: u16,
    /// The events found, written by [`poll`]: any of the four bits.
    pub revents: u16,
}

impl PollFd {
    /// Readable: data, end of stream, a connection to accept, or a child
    /// that ended; the next `read`, `accept` or `wait` does not block.
    pub const READABLE: u16 = 1;
    /// Writable: a write can make progress without waiting for a reader.
    pub const WRITABLE: u16 = 2;
    /// Hang-up (only in `revents`): the other end is gone.
    pub const HANGUP: u16 = 4;
    /// Invalid (only in `revents`): the handle is not open in this process.
    pub const INVALID: u16 = 8;
    /// Lazy (only in `events`, with [`PollFd::READABLE`]): readable may be
    /// told from the socket's events alone, a system call less per wait,
    /// but at times stale (an event for bytes a read already took). Read
    /// with `try-read` after it and wait again on `again`. Without it,
    /// readable means a read finds bytes or the end of the stream.
    pub const LAZY: u16 = 16;

    /// An entry waiting for `events` on handle `handle`, with `revents` 0.
    ///
    /// # Examples
    ///
    /// ```
    /// use mnvkd_guest::PollFd;
    ///
    /// let fd = PollFd::new(0, PollFd::READABLE);
    /// assert_eq!((fd.handle, fd.events, fd.revents), (0, 1, 0));
    /// ```
    pub const fn new(handle: i32, events: u16) -> PollFd {
        PollFd {
            handle,
            events,
            revents: 0,
        }
    }

    /// Whether the last [`poll`] found the handle readable.
    ///
    /// # Examples
    ///
    /// ```
    /// use mnvkd_guest::PollFd;
    ///
    /// let mut fd = PollFd::new(0, PollFd::READABLE);
    /// fd.revents = PollFd::READABLE | PollFd::HANGUP;
    /// assert!(fd.readable() && fd.hangup() && !fd.writable());
    /// ```
    pub const fn readable(&self) -> bool {
        self.revents & PollFd::READABLE != 0
    }

    /// Whether the last [`poll`] found the handle writable.
    ///
    /// # Examples
    ///
    /// ```
    /// use mnvkd_guest::PollFd;
    ///
    /// let mut fd = PollFd::new(4, PollFd::WRITABLE);
    /// fd.revents = PollFd::WRITABLE;
    /// assert!(fd.writable());
    /// ```
    pub const fn writable(&self) -> bool {
        self.revents & PollFd::WRITABLE != 0
    }

    /// Whether the last [`poll`] found the other end gone.
    ///
    /// # Examples
    ///
    /// ```
    /// use mnvkd_guest::PollFd;
    ///
    /// let mut fd = PollFd::new(4, PollFd::WRITABLE);
    /// fd.revents = PollFd::HANGUP;
    /// assert!(fd.hangup() && !fd.writable());
    /// ```
    pub const fn hangup(&self) -> bool {
        self.revents & PollFd::HANGUP != 0
    }

    /// Whether the last [`poll`] found the handle not open.
    ///
    /// # Examples
    ///
    /// ```
    /// use mnvkd_guest::PollFd;
    ///
    /// let mut fd = PollFd::new(99, PollFd::READABLE);
    /// fd.revents = PollFd::INVALID;
    /// assert!(fd.invalid());
    /// ```
    pub const fn invalid(&self) -> bool {
        self.revents & PollFd::INVALID != 0
    }
}

/// Waits until one of `fds` is ready or `timeout` passes (`None`: no
/// timeout; [`Duration::ZERO`]: just look), like POSIX `poll`.
///
/// The host sets every entry's `revents`; the result is how many entries
/// have any bit set, 0 on timeout. A timeout is rounded up to whole
/// milliseconds (and capped at `i32::MAX` ms, about 24 days). Only this
/// process waits.
///
/// # Errors
///
/// [`sys::INVAL`] (as [`io::ErrorKind::InvalidInput`]) for more than 1024
/// entries.
///
/// # Examples
///
/// Waits up to a second for a line from the connection:
///
/// ```no_run
/// use std::time::Duration;
/// use mnvkd_guest::{poll, PollFd};
///
/// let mut fds = [PollFd::new(0, PollFd::READABLE)];
/// if poll(&mut fds, Some(Duration::from_secs(1)))? == 0 {
///     println!("timed out");
/// } else if fds[0].readable() {
///     println!("data or end of stream");
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn poll(fds: &mut [PollFd], timeout: Option<Duration>) -> io::Result<usize> {
    // More entries than this cannot be meant; the host refuses over 1024.
    let count = fds.len().min(u32::MAX as usize);
    // SAFETY: `fds` is valid for reads and writes of `count` entries, laid
    // out as the import expects (`#[repr(C)]`, 8 bytes each).
    errno::check(unsafe { sys::poll(fds.as_mut_ptr(), count, timeout_ms(timeout)) })
}

/// The import's `timeout-ms`: -1 for none, else whole milliseconds rounded
/// up (so a short timeout still waits) and capped at `i32::MAX`.
pub(crate) fn timeout_ms(timeout: Option<Duration>) -> i32 {
    match timeout {
        None => -1,
        Some(timeout) => {
            // In u64, not `as_nanos`'s u128: wasm32 has no 128-bit
            // arithmetic, and the division was a third of a wait's cost.
            // Compared first, not `saturating_mul`: its overflow check is
            // a 128-bit multiply (`__multi3`) on wasm32.
            let secs = timeout.as_secs();
            if secs > i32::MAX as u64 / 1000 {
                return i32::MAX;
            }
            let ms = secs * 1000 + u64::from(timeout.subsec_nanos().div_ceil(1_000_000));
            i32::try_from(ms).unwrap_or(i32::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_import() {
        assert_eq!(std::mem::size_of::<PollFd>(), 8);
        assert_eq!(std::mem::align_of::<PollFd>(), 4);
        assert_eq!(std::mem::offset_of!(PollFd, handle), 0);
        assert_eq!(std::mem::offset_of!(PollFd, events), 4);
        assert_eq!(std::mem::offset_of!(PollFd, revents), 6);
    }

    #[test]
    fn event_bits_match_the_wit() {
        let bits = [
            PollFd::READABLE,
            PollFd::WRITABLE,
            PollFd::HANGUP,
            PollFd::INVALID,
        ];
        assert_eq!(bits, [1, 2, 4, 8]);
    }

    #[test]
    fn timeouts_round_up_and_cap() {
        assert_eq!(timeout_ms(None), -1);
        assert_eq!(timeout_ms(Some(Duration::ZERO)), 0);
        assert_eq!(timeout_ms(Some(Duration::from_nanos(1))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_micros(1500))), 2);
        assert_eq!(timeout_ms(Some(Duration::from_millis(50))), 50);
        assert_eq!(timeout_ms(Some(Duration::MAX)), i32::MAX);
    }

    #[test]
    fn native_poll_fails_with_io() {
        let mut fds = [PollFd::new(0, PollFd::READABLE)];
        let err = poll(&mut fds, Some(Duration::ZERO)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Other);
        assert_eq!(fds[0].revents, 0);
    }
}
