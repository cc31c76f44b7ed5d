//! The raw `mnvkd` imports and error codes, exactly as in `wit/mnvkd.wit`.
//!
//! Prefer [`Handle`](crate::Handle) and [`Connection`](crate::Connection);
//! this module is for code that needs the imports themselves. A result
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

/// `badf`: the handle is not open in this process.
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

    /// Writes all `len` bytes from the buffer at `ptr` to `handle`.
    ///
    /// Blocks until every byte is handed to the kernel's socket buffer.
    /// Returns `len`, or an error code (nothing is known to be written then).
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
