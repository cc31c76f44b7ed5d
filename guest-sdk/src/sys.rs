//! The raw `mnvkd` imports and error codes, exactly as in `wit/mnvkd.wit`.
//!
//! Prefer the safe wrappers ([`Handle`](crate::Handle),
//! [`Connection`](crate::Connection), [`pipe`](crate::pipe()),
//! [`spawn`](crate::spawn), [`poll`](crate::poll()), [`sleep`](crate::sleep),
//! [`connect`](crate::connect), [`Listener`](crate::Listener)); this module
//! is for code that needs the imports themselves. A result
//! `>= 0` is success; a negative result is one of the error codes below
//! (see [`Errno`](crate::Errno)).
//!
//! On wasm32 the functions are imports from the module `mnvkd`. On other
//! targets they are stubs that touch nothing and return [`IO`], so the crate
//! and its doc tests build and run natively.
//!
//! # Examples
//!
//! ```
//! use mnvkd_guest::{sys, Errno};
//!
//! let msg = b"hello\n";
//! // SAFETY: `msg` is valid for `msg.len()` bytes.
//! let ret = unsafe { sys::write(0, msg.as_ptr(), msg.len()) };
//! if ret < 0 {
//!     eprintln!("write failed: {}", Errno::from_code(ret));
//! }
//! ```

/// `badf`: the handle is not open in this process, or not for this operation.
///
/// # Examples
///
/// ```
/// use mnvkd_guest::{sys, Errno};
/// assert_eq!(Errno::from_code(sys::BADF).name(), Some("badf"));
/// ```
pub const BADF: i32 = -1;

/// `fault`: a buffer lies (partly) outside the micro-heap.
///
/// # Examples
///
/// ```
/// use mnvkd_guest::{sys, Errno};
/// assert_eq!(Errno::from_code(sys::FAULT).name(), Some("fault"));
/// ```
pub const FAULT: i32 = -2;

/// `inval`: an argument is malformed.
///
/// # Examples
///
/// ```
/// use mnvkd_guest::{sys, Errno};
/// assert_eq!(Errno::from_code(sys::INVAL).name(), Some("inval"));
/// ```
pub const INVAL: i32 = -3;

/// `pipe`: the other end is gone (connection reset, write after peer closed).
///
/// # Examples
///
/// ```
/// use mnvkd_guest::{sys, Errno};
/// assert_eq!(Errno::from_code(sys::PIPE).name(), Some("pipe"));
/// ```
pub const PIPE: i32 = -4;

/// `io`: any other I/O failure.
///
/// # Examples
///
/// ```
/// use mnvkd_guest::{sys, Errno};
/// assert_eq!(Errno::from_code(sys::IO).name(), Some("io"));
/// ```
pub const IO: i32 = -5;

/// `limit`: a per-process or per-app limit was reached.
///
/// # Examples
///
/// ```
/// use mnvkd_guest::{sys, Errno};
/// assert_eq!(Errno::from_code(sys::LIMIT).name(), Some("limit"));
/// ```
pub const LIMIT: i32 = -6;

/// `denied`: the app was not granted this capability.
///
/// # Examples
///
/// ```
/// use mnvkd_guest::{sys, Errno};
/// assert_eq!(Errno::from_code(sys::DENIED).name(), Some("denied"));
/// ```
pub const DENIED: i32 = -7;

/// `timedout`: the operation did not complete in time.
///
/// # Examples
///
/// ```
/// use mnvkd_guest::{sys, Errno};
/// assert_eq!(Errno::from_code(sys::TIMEDOUT).name(), Some("timedout"));
/// ```
pub const TIMEDOUT: i32 = -8;

/// `again`: the operation would have to wait (only [`try_read`] and
/// [`try_write`] return it).
///
/// # Examples
///
/// ```
/// use mnvkd_guest::{sys, Errno};
/// assert_eq!(Errno::from_code(sys::AGAIN).name(), Some("again"));
/// ```
pub const AGAIN: i32 = -9;

// The `shutdown` directions live beside the wrappers (this file's `pub const`
// lines are the wit's error codes, one for one).
pub use crate::handle::{SHUT_READ, SHUT_WRITE};
pub use crate::poll::PollFd;

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "mnvkd")]
extern "C" {
    /// Reads up to `len` bytes from `handle` into the buffer at `ptr`.
    ///
    /// Blocks until at least one byte is available or the peer closed.
    /// Returns the number of bytes read, 0 at end of stream, or an error code.
    ///
    /// # Safety
    ///
    /// Always safe for the host: a buffer outside the micro-heap gets
    /// [`FAULT`]. The bytes written into `ptr..ptr + len` must be allowed
    /// by Rust's aliasing rules (`ptr` valid for writes of `len` bytes).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut buf = [0u8; 64];
    /// // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    /// let n = unsafe { mnvkd_guest::sys::read(0, buf.as_mut_ptr(), buf.len()) };
    /// ```
    pub fn read(handle: i32, ptr: *mut u8, len: usize) -> i32;

    /// Writes all `len` bytes (at most 1 GiB) from the buffer at `ptr` to
    /// `handle`.
    ///
    /// Blocks until every byte is handed to the kernel's socket buffer or
    /// the pipe. Returns the count written (`len`, or less when `len` is
    /// over 1 GiB or a pipe's reader ran out of host memory part-way), or
    /// an error code ([`LIMIT`] when that reader had no room at all; after
    /// any other, nothing is known to be written).
    ///
    /// # Safety
    ///
    /// Always safe for the host: a buffer outside the micro-heap gets
    /// [`FAULT`]. `ptr` should be valid for reads of `len` bytes.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let msg = b"hello\n";
    /// // SAFETY: `msg` is valid for reads of `msg.len()` bytes.
    /// let ret = unsafe { mnvkd_guest::sys::write(0, msg.as_ptr(), msg.len()) };
    /// ```
    pub fn write(handle: i32, ptr: *const u8, len: usize) -> i32;

    /// Closes `handle`.
    ///
    /// Closing handle 0 closes the connection in both directions; the peer
    /// sees end of stream. Returns 0, or [`BADF`].
    ///
    /// # Safety
    ///
    /// Always safe for the host. Closing a handle that a
    /// [`Handle`](crate::Handle) owns makes that `Handle` stale.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// // SAFETY: nothing else owns handle 0.
    /// let ret = unsafe { mnvkd_guest::sys::close(0) };
    /// ```
    pub fn close(handle: i32) -> i32;

    /// Reads like [`read`], but returns [`AGAIN`] at once instead of
    /// blocking when no byte is there yet.
    ///
    /// # Safety
    ///
    /// As [`read`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut buf = [0u8; 64];
    /// // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    /// let n = unsafe { mnvkd_guest::sys::try_read(0, buf.as_mut_ptr(), buf.len()) };
    /// ```
    #[link_name = "try-read"]
    pub fn try_read(handle: i32, ptr: *mut u8, len: usize) -> i32;

    /// Reads like [`read`], but waits at most `timeout_ms` milliseconds for
    /// a byte (-1: no limit; 0: only what is there now): [`TIMEDOUT`] when
    /// the time passed first. One call waits and reads, where [`poll`] and
    /// then [`try_read`] take two.
    ///
    /// # Safety
    ///
    /// As [`read`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut buf = [0u8; 64];
    /// // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    /// let n = unsafe { mnvkd_guest::sys::read_within(0, buf.as_mut_ptr(), buf.len(), 30_000) };
    /// ```
    #[link_name = "read-within"]
    pub fn read_within(handle: i32, ptr: *mut u8, len: usize, timeout_ms: i32) -> i32;

    /// Writes what the handle takes now, like [`write`] but returning
    /// [`AGAIN`] at once instead of blocking when it takes nothing yet.
    ///
    /// # Safety
    ///
    /// As [`write`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let msg = b"hi\n";
    /// // SAFETY: `msg` is valid for reads of `msg.len()` bytes.
    /// let n = unsafe { mnvkd_guest::sys::try_write(0, msg.as_ptr(), msg.len()) };
    /// ```
    #[link_name = "try-write"]
    pub fn try_write(handle: i32, ptr: *const u8, len: usize) -> i32;

    /// Opens a second handle to the stream behind `handle` (a connection or
    /// a pipe end); the stream stays open until its last handle closes.
    ///
    /// Returns the new handle, [`BADF`] (not open, or not a stream), or
    /// [`LIMIT`] (handles per process).
    ///
    /// # Safety
    ///
    /// Always safe for the host; `unsafe` only because it is an import.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// // SAFETY: no memory is passed.
    /// let copy = unsafe { mnvkd_guest::sys::dup(0) };
    /// ```
    pub fn dup(handle: i32) -> i32;

    /// Half-closes the stream behind `handle` for every handle to it: `how`
    /// [`SHUT_READ`], [`SHUT_WRITE`] or both.
    ///
    /// Returns 0, [`BADF`] (not open, or not a stream) or [`INVAL`].
    ///
    /// # Safety
    ///
    /// Always safe for the host; `unsafe` only because it is an import.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use mnvkd_guest::sys;
    /// // SAFETY: no memory is passed.
    /// let ret = unsafe { sys::shutdown(0, sys::SHUT_WRITE) };
    /// ```
    pub fn shutdown(handle: i32, how: i32) -> i32;

    /// Creates a pipe; writes its read end's handle, then its write end's,
    /// as two `i32` at `out`.
    ///
    /// The buffer is the app's `pipe_buffer` (default 64 KiB). Returns 0,
    /// [`FAULT`] (the 8 bytes at `out`), or [`LIMIT`] (handles per process).
    ///
    /// # Safety
    ///
    /// Always safe for the host: a buffer outside the micro-heap gets
    /// [`FAULT`]. `out` must be valid for writes of two `i32`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut ends = [0i32; 2];
    /// // SAFETY: `ends` is valid for writes of two `i32`.
    /// let ret = unsafe { mnvkd_guest::sys::pipe(ends.as_mut_ptr()) };
    /// ```
    pub fn pipe(out: *mut i32) -> i32;

    /// Starts a new process of the same app with the UTF-8 `arg` at
    /// `arg_ptr..arg_ptr + arg_len` as its argv[1], moving the `count`
    /// handles at `handles` to it (they become its handles `0..count`).
    ///
    /// Returns a child handle for [`wait`] and [`poll`], [`FAULT`],
    /// [`INVAL`] (arg not UTF-8, a handle listed twice), [`BADF`] (a handle
    /// not open), or [`LIMIT`] (processes per app, handles per process).
    ///
    /// # Safety
    ///
    /// Always safe for the host: a buffer outside the micro-heap gets
    /// [`FAULT`]. The moved handles are closed in this process, so any
    /// [`Handle`](crate::Handle) owning one of them becomes stale.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let arg = "worker";
    /// let handles = [3i32, 4];
    /// // SAFETY: both buffers are valid for reads; nothing else owns 3 and 4.
    /// let child = unsafe {
    ///     mnvkd_guest::sys::spawn(arg.as_ptr(), arg.len(), handles.as_ptr(), handles.len())
    /// };
    /// ```
    pub fn spawn(arg_ptr: *const u8, arg_len: usize, handles: *const i32, count: usize) -> i32;

    /// Blocks until the child behind `child` has ended, then closes the
    /// handle.
    ///
    /// Returns its exit status (0..=255), 256 if it was killed, or [`BADF`].
    ///
    /// # Safety
    ///
    /// Always safe for the host. It closes `child`, so a
    /// [`Child`](crate::Child) owning it becomes stale.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// // SAFETY: nothing else owns child handle 3.
    /// let status = unsafe { mnvkd_guest::sys::wait(3) };
    /// ```
    pub fn wait(child: i32) -> i32;

    /// Blocks until one of the `count` entries at `fds` is ready or
    /// `timeout_ms` milliseconds pass (-1: no timeout; 0: just look).
    ///
    /// The host writes each entry's `revents`. Returns the number of entries
    /// with a non-zero `revents` (0 on timeout), [`FAULT`], or [`INVAL`]
    /// (more than 1024 entries).
    ///
    /// # Safety
    ///
    /// Always safe for the host: a buffer outside the micro-heap gets
    /// [`FAULT`]. `fds` must be valid for reads and writes of `count`
    /// entries.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use mnvkd_guest::PollFd;
    ///
    /// let mut fds = [PollFd::new(0, PollFd::READABLE)];
    /// // SAFETY: `fds` is valid for reads and writes of one entry.
    /// let ready = unsafe { mnvkd_guest::sys::poll(fds.as_mut_ptr(), fds.len(), 100) };
    /// ```
    pub fn poll(fds: *mut PollFd, count: usize, timeout_ms: i32) -> i32;

    /// Applies the `change_count` entries at `changes` to this process's
    /// interest set (events 0 disarms a handle, [`PollFd::READABLE`] and/or
    /// [`PollFd::WRITABLE`] arm it), then blocks until an armed handle is
    /// ready or `timeout_ms` milliseconds pass (-1: no timeout; 0: just
    /// look), and writes up to `ready_max` entries at `ready`: handle, the
    /// events it was armed for, revents. A reported handle is disarmed.
    ///
    /// Arming a handle that is not open reports it invalid at once.
    /// Returns the number of entries written (0 on timeout), [`FAULT`], or
    /// [`INVAL`] (more than 1024 changes, `ready_max` 0 or above 1024, an
    /// unknown event bit, more arms of handles not open than `ready_max`).
    /// [`PollFd::LAZY`] in an arm makes readable possibly stale, as for
    /// [`poll`].
    ///
    /// # Safety
    ///
    /// Always safe for the host: a buffer outside the micro-heap gets
    /// [`FAULT`]. `changes` must be valid for reads of `change_count`
    /// entries, `ready` for writes of `ready_max`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use mnvkd_guest::PollFd;
    ///
    /// let arm = [PollFd::new(0, PollFd::READABLE)];
    /// let mut ready = [PollFd::default(); 16];
    /// // SAFETY: both buffers are valid for their lengths.
    /// let n = unsafe { mnvkd_guest::sys::watch(arm.as_ptr(), 1, ready.as_mut_ptr(), 16, -1) };
    /// ```
    pub fn watch(
        changes: *const PollFd,
        change_count: usize,
        ready: *mut PollFd,
        ready_max: usize,
        timeout_ms: i32,
    ) -> i32;

    /// Suspends this process for `ms` milliseconds. Returns 0.
    ///
    /// # Safety
    ///
    /// Always safe; it is `unsafe` only because every import is.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// // SAFETY: touches no memory.
    /// unsafe { mnvkd_guest::sys::sleep(10) };
    /// ```
    pub fn sleep(ms: u32) -> i32;

    /// Opens an outbound TCP connection to the address written as text
    /// (e.g. `127.0.0.1:6379`) at `addr_ptr..addr_ptr + addr_len`.
    ///
    /// Returns a connection handle, [`FAULT`], [`INVAL`] (not an IP:port),
    /// [`DENIED`] (not in the app's `allow_outbound`), [`IO`] (refused or
    /// unreachable), or [`LIMIT`] (handles per process).
    ///
    /// # Safety
    ///
    /// Always safe for the host: a buffer outside the micro-heap gets
    /// [`FAULT`]. The buffer should be valid for reads of `addr_len` bytes.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let addr = "127.0.0.1:6379";
    /// // SAFETY: `addr` is valid for reads of `addr.len()` bytes.
    /// let upstream = unsafe { mnvkd_guest::sys::connect(addr.as_ptr(), addr.len()) };
    /// ```
    pub fn connect(addr_ptr: *const u8, addr_len: usize) -> i32;

    /// Blocks until a client connects to `listener` (handle 0 of a process
    /// of an app in listener mode).
    ///
    /// Returns the new connection's handle, [`BADF`] (not a listener),
    /// [`IO`], or [`LIMIT`] (handles per process).
    ///
    /// # Safety
    ///
    /// Always safe; it is `unsafe` only because every import is.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// // SAFETY: touches no memory.
    /// let conn = unsafe { mnvkd_guest::sys::accept(0) };
    /// ```
    pub fn accept(listener: i32) -> i32;

    /// Accepts like [`accept`], but never blocks: [`AGAIN`] when no client
    /// is waiting. After an `AGAIN` the host knows the backlog is empty
    /// until the listener's next event, so a lazy wait on it
    /// ([`PollFd::LAZY`](crate::PollFd::LAZY)) needs no system call.
    ///
    /// Returns the new connection's handle, [`AGAIN`], or an error as
    /// [`accept`].
    ///
    /// # Safety
    ///
    /// Always safe; it is `unsafe` only because every import is.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// // SAFETY: touches no memory.
    /// let conn = unsafe { mnvkd_guest::sys::try_accept(0) };
    /// ```
    #[link_name = "try-accept"]
    pub fn try_accept(listener: i32) -> i32;
}

/// Native stub of the `read` import: touches nothing and returns [`IO`].
///
/// # Safety
///
/// Safe to call with any arguments; it is `unsafe` only to match the import.
///
/// # Examples
///
/// ```
/// let mut buf = [0u8; 64];
/// // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
/// let ret = unsafe { mnvkd_guest::sys::read(0, buf.as_mut_ptr(), buf.len()) };
/// # #[cfg(not(target_arch = "wasm32"))]
/// assert_eq!(ret, mnvkd_guest::sys::IO);
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub unsafe fn read(handle: i32, ptr: *mut u8, len: usize) -> i32 {
    let _ = (handle, ptr, len);
    IO
}

/// Native stub of the `write` import: touches nothing and returns [`IO`].
///
/// # Safety
///
/// Safe to call with any arguments; it is `unsafe` only to match the import.
///
/// # Examples
///
/// ```
/// let msg = b"hello\n";
/// // SAFETY: `msg` is valid for reads of `msg.len()` bytes.
/// let ret = unsafe { mnvkd_guest::sys::write(0, msg.as_ptr(), msg.len()) };
/// # #[cfg(not(target_arch = "wasm32"))]
/// assert_eq!(ret, mnvkd_guest::sys::IO);
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub unsafe fn write(handle: i32, ptr: *const u8, len: usize) -> i32 {
    let _ = (handle, ptr, len);
    IO
}

/// Native stub of the `close` import: touches nothing and returns [`IO`].
///
/// # Safety
///
/// Safe to call with any arguments; it is `unsafe` only to match the import.
///
/// # Examples
///
/// ```
/// // SAFETY: nothing else owns handle 0.
/// let ret = unsafe { mnvkd_guest::sys::close(0) };
/// # #[cfg(not(target_arch = "wasm32"))]
/// assert_eq!(ret, mnvkd_guest::sys::IO);
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub unsafe fn close(handle: i32) -> i32 {
    let _ = handle;
    IO
}

/// Native stub of the `try-read` import: touches nothing and returns [`IO`].
///
/// # Safety
///
/// Safe to call with any arguments; it is `unsafe` only to match the import.
///
/// # Examples
///
/// ```
/// let mut buf = [0u8; 8];
/// // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
/// let ret = unsafe { mnvkd_guest::sys::try_read(0, buf.as_mut_ptr(), buf.len()) };
/// # #[cfg(not(target_arch = "wasm32"))]
/// assert_eq!(ret, mnvkd_guest::sys::IO);
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub unsafe fn try_read(handle: i32, ptr: *mut u8, len: usize) -> i32 {
    let _ = (handle, ptr, len);
    IO
}

/// Native stub of the `read-within` import: touches nothing and returns [`IO`].
///
/// # Safety
///
/// Safe to call with any arguments; it is `unsafe` only to match the import.
///
/// # Examples
///
/// ```
/// let mut buf = [0u8; 8];
/// // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
/// let ret = unsafe { mnvkd_guest::sys::read_within(0, buf.as_mut_ptr(), buf.len(), 0) };
/// # #[cfg(not(target_arch = "wasm32"))]
/// assert_eq!(ret, mnvkd_guest::sys::IO);
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub unsafe fn read_within(handle: i32, ptr: *mut u8, len: usize, timeout_ms: i32) -> i32 {
    let _ = (handle, ptr, len, timeout_ms);
    IO
}

/// Native stub of the `try-write` import: touches nothing and returns [`IO`].
///
/// # Safety
///
/// Safe to call with any arguments; it is `unsafe` only to match the import.
///
/// # Examples
///
/// ```
/// // SAFETY: the buffer is valid for reads of 2 bytes.
/// let ret = unsafe { mnvkd_guest::sys::try_write(0, b"hi".as_ptr(), 2) };
/// # #[cfg(not(target_arch = "wasm32"))]
/// assert_eq!(ret, mnvkd_guest::sys::IO);
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub unsafe fn try_write(handle: i32, ptr: *const u8, len: usize) -> i32 {
    let _ = (handle, ptr, len);
    IO
}

/// Native stub of the `dup` import: touches nothing and returns [`IO`].
///
/// # Safety
///
/// Safe to call with any arguments; it is `unsafe` only to match the import.
///
/// # Examples
///
/// ```
/// // SAFETY: no memory is passed.
/// let ret = unsafe { mnvkd_guest::sys::dup(0) };
/// # #[cfg(not(target_arch = "wasm32"))]
/// assert_eq!(ret, mnvkd_guest::sys::IO);
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub unsafe fn dup(handle: i32) -> i32 {
    let _ = handle;
    IO
}

/// Native stub of the `shutdown` import: touches nothing and returns [`IO`].
///
/// # Safety
///
/// Safe to call with any arguments; it is `unsafe` only to match the import.
///
/// # Examples
///
/// ```
/// use mnvkd_guest::sys;
/// // SAFETY: no memory is passed.
/// let ret = unsafe { sys::shutdown(0, sys::SHUT_WRITE) };
/// # #[cfg(not(target_arch = "wasm32"))]
/// assert_eq!(ret, sys::IO);
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub unsafe fn shutdown(handle: i32, how: i32) -> i32 {
    let _ = (handle, how);
    IO
}

/// Native stub of the `pipe` import: touches nothing and returns [`IO`].
///
/// # Safety
///
/// Safe to call with any arguments; it is `unsafe` only to match the import.
///
/// # Examples
///
/// ```
/// let mut ends = [0i32; 2];
/// // SAFETY: `ends` is valid for writes of two `i32`.
/// let ret = unsafe { mnvkd_guest::sys::pipe(ends.as_mut_ptr()) };
/// # #[cfg(not(target_arch = "wasm32"))]
/// assert_eq!(ret, mnvkd_guest::sys::IO);
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub unsafe fn pipe(out: *mut i32) -> i32 {
    let _ = out;
    IO
}

/// Native stub of the `spawn` import: touches nothing and returns [`IO`].
///
/// # Safety
///
/// Safe to call with any arguments; it is `unsafe` only to match the import.
///
/// # Examples
///
/// ```
/// let arg = "worker";
/// // SAFETY: `arg` is valid for reads; no handles are passed.
/// let ret = unsafe { mnvkd_guest::sys::spawn(arg.as_ptr(), arg.len(), [].as_ptr(), 0) };
/// # #[cfg(not(target_arch = "wasm32"))]
/// assert_eq!(ret, mnvkd_guest::sys::IO);
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub unsafe fn spawn(arg_ptr: *const u8, arg_len: usize, handles: *const i32, count: usize) -> i32 {
    let _ = (arg_ptr, arg_len, handles, count);
    IO
}

/// Native stub of the `wait` import: returns [`IO`].
///
/// # Safety
///
/// Safe to call with any arguments; it is `unsafe` only to match the import.
///
/// # Examples
///
/// ```
/// // SAFETY: nothing else owns child handle 3.
/// let ret = unsafe { mnvkd_guest::sys::wait(3) };
/// # #[cfg(not(target_arch = "wasm32"))]
/// assert_eq!(ret, mnvkd_guest::sys::IO);
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub unsafe fn wait(child: i32) -> i32 {
    let _ = child;
    IO
}

/// Native stub of the `poll` import: touches nothing and returns [`IO`].
///
/// # Safety
///
/// Safe to call with any arguments; it is `unsafe` only to match the import.
///
/// # Examples
///
/// ```
/// use mnvkd_guest::PollFd;
///
/// let mut fds = [PollFd::new(0, PollFd::READABLE)];
/// // SAFETY: `fds` is valid for reads and writes of one entry.
/// let ret = unsafe { mnvkd_guest::sys::poll(fds.as_mut_ptr(), fds.len(), 0) };
/// # #[cfg(not(target_arch = "wasm32"))]
/// assert_eq!(ret, mnvkd_guest::sys::IO);
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub unsafe fn poll(fds: *mut PollFd, count: usize, timeout_ms: i32) -> i32 {
    let _ = (fds, count, timeout_ms);
    IO
}

/// Native stub of the `watch` import: touches nothing and returns [`IO`].
///
/// # Safety
///
/// Safe to call with any arguments; it is `unsafe` only to match the import.
///
/// # Examples
///
/// ```
/// use mnvkd_guest::PollFd;
///
/// let mut ready = [PollFd::default(); 4];
/// // SAFETY: `ready` is valid for writes of four entries.
/// let ret = unsafe { mnvkd_guest::sys::watch(std::ptr::null(), 0, ready.as_mut_ptr(), 4, 0) };
/// # #[cfg(not(target_arch = "wasm32"))]
/// assert_eq!(ret, mnvkd_guest::sys::IO);
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub unsafe fn watch(
    changes: *const PollFd,
    change_count: usize,
    ready: *mut PollFd,
    ready_max: usize,
    timeout_ms: i32,
) -> i32 {
    let _ = (changes, change_count, ready, ready_max, timeout_ms);
    IO
}

/// Native stub of the `sleep` import: returns [`IO`] at once.
///
/// # Safety
///
/// Safe to call with any arguments; it is `unsafe` only to match the import.
///
/// # Examples
///
/// ```
/// // SAFETY: touches no memory.
/// let ret = unsafe { mnvkd_guest::sys::sleep(10) };
/// # #[cfg(not(target_arch = "wasm32"))]
/// assert_eq!(ret, mnvkd_guest::sys::IO);
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub unsafe fn sleep(ms: u32) -> i32 {
    let _ = ms;
    IO
}

/// Native stub of the `connect` import: touches nothing and returns [`IO`].
///
/// # Safety
///
/// Safe to call with any arguments; it is `unsafe` only to match the import.
///
/// # Examples
///
/// ```
/// let addr = "127.0.0.1:6379";
/// // SAFETY: `addr` is valid for reads of `addr.len()` bytes.
/// let ret = unsafe { mnvkd_guest::sys::connect(addr.as_ptr(), addr.len()) };
/// # #[cfg(not(target_arch = "wasm32"))]
/// assert_eq!(ret, mnvkd_guest::sys::IO);
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub unsafe fn connect(addr_ptr: *const u8, addr_len: usize) -> i32 {
    let _ = (addr_ptr, addr_len);
    IO
}

/// Native stub of the `accept` import: returns [`IO`].
///
/// # Safety
///
/// Safe to call with any arguments; it is `unsafe` only to match the import.
///
/// # Examples
///
/// ```
/// // SAFETY: touches no memory.
/// let ret = unsafe { mnvkd_guest::sys::accept(0) };
/// # #[cfg(not(target_arch = "wasm32"))]
/// assert_eq!(ret, mnvkd_guest::sys::IO);
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub unsafe fn accept(listener: i32) -> i32 {
    let _ = listener;
    IO
}

/// Native stub of the `try-accept` import: touches nothing and returns [`IO`].
///
/// # Safety
///
/// Safe to call with any arguments; it is `unsafe` only to match the import.
///
/// # Examples
///
/// ```
/// // SAFETY: touches no memory.
/// let ret = unsafe { mnvkd_guest::sys::try_accept(0) };
/// # #[cfg(not(target_arch = "wasm32"))]
/// assert_eq!(ret, mnvkd_guest::sys::IO);
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub unsafe fn try_accept(listener: i32) -> i32 {
    let _ = listener;
    IO
}

#[cfg(test)]
mod tests {
    /// A function's name and its `(parameter, type)` list.
    type Signature = (String, Vec<(String, String)>);

    /// The signature in `decl`, which is `name(params) …` or, in the wit,
    /// `name: func(params) …`; kebab-case names become snake_case.
    fn signature(decl: &str) -> Signature {
        let (name, rest) = decl.split_once('(').unwrap();
        let (params, _) = rest.split_once(')').unwrap();
        let params = params
            .split(',')
            .map(str::trim)
            .filter(|param| !param.is_empty())
            .map(|param| {
                let (name, ty) = param.split_once(':').unwrap();
                (name.trim().replace('-', "_"), ty.trim().to_owned())
            })
            .collect();
        (name.trim_end_matches(": func").to_owned(), params)
    }

    /// The signatures of the lines of `text` that start (trimmed) with
    /// `prefix` and contain `marker`, in order.
    fn signatures(text: &str, prefix: &str, marker: &str) -> Vec<Signature> {
        joined(text)
            .lines()
            .map(str::trim)
            .filter(|line| line.contains(marker))
            .filter_map(|line| line.strip_prefix(prefix))
            .map(signature)
            .collect()
    }

    /// `text` with each `pub` declaration rustfmt spread over lines (one
    /// parameter a line, up to the line starting with `)`) on one line.
    fn joined(text: &str) -> String {
        let mut out = String::new();
        let mut open = false;
        for line in text.lines().map(str::trim) {
            out.push_str(line);
            open = if open {
                !line.starts_with(')')
            } else {
                line.starts_with("pub ") && line.ends_with('(')
            };
            out.push(if open { ' ' } else { '\n' });
        }
        out
    }

    /// The wit type an SDK parameter type stands for (pointers and lengths
    /// are `u32`).
    fn wit_type(rust: &str) -> String {
        match rust {
            "i32" => "s32".to_owned(),
            "u32" | "usize" => "u32".to_owned(),
            ty if ty.starts_with('*') => "u32".to_owned(),
            ty => panic!("unexpected parameter type {ty}"),
        }
    }

    /// The SDK's signatures as the wit spells them (`try_read` is
    /// `try-read`), in the wit's order.
    fn as_wit(signatures: Vec<Signature>, wit: &[Signature]) -> Vec<Signature> {
        let mut signatures: Vec<Signature> = signatures
            .into_iter()
            .map(|(name, params)| {
                let params = params
                    .into_iter()
                    .map(|(param, ty)| (param, wit_type(&ty)))
                    .collect();
                (name.replace('_', "-"), params)
            })
            .collect();
        let rank = |name: &str| wit.iter().position(|(n, _)| n == name);
        signatures.sort_by_key(|(name, _)| rank(name));
        signatures
    }

    #[test]
    fn imports_match_the_wit() {
        let wit = signatures(include_str!("../../wit/mnvkd.wit"), "", ": func(");
        assert!(
            wit.len() >= 10 && wit.iter().all(|(name, _)| !name.contains(' ')),
            "functions found in the wit: {wit:?}"
        );
        let sys = include_str!("sys.rs");
        let imports = as_wit(signatures(sys, "pub fn ", ") -> i32;"), &wit);
        let stubs = as_wit(signatures(sys, "pub unsafe fn ", ") -> i32 {"), &wit);
        assert_eq!(imports, wit, "wasm32 imports vs wit/mnvkd.wit");
        assert_eq!(stubs, wit, "native stubs vs wit/mnvkd.wit");
        assert!(include_str!("../../wit/mnvkd.wit")
            .lines()
            .filter(|line| line.contains(": func("))
            .all(|line| line.trim_end().ends_with("-> s32;")));
    }
}
