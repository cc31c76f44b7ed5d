//! Growing buffers without taking the micro-heap's last bytes.
//!
//! A micro-heap has a cap (the app's `max_memory`). A Rust guest whose
//! allocation fails aborts, and in a process serving many connections from
//! one heap ([`http::serve_each`](crate::http::serve_each),
//! [`task::Listener::serve_each`](crate::task::Listener::serve_each)) that
//! would end every connection because one client sent a large body. So the
//! buffers a client makes grow with [`reserve`], which fails with
//! [`ErrorKind::OutOfMemory`](std::io::ErrorKind::OutOfMemory) unless
//! [`HEADROOM`] bytes would still be free after it; and a server accepts a
//! connection only while [`has_room`] says that much is free. The
//! allocations that cannot fail (a coroutine, a session's buffers, a
//! response head) then come out of the headroom.
//!
//! The allocator (wasi-libc's dlmalloc) keeps no statistics, so free space
//! is found by allocating it. Connections come and go, so the free space of
//! a full heap is in pieces the size of their sessions: the headroom is
//! counted in [`BLOCK`]-sized pieces, not as one contiguous run.

use std::io;

/// What must stay free in the heap after a buffer grows, for the
/// allocations that cannot fail: 256 KiB (a connection's session takes
/// about 5 KiB).
pub const HEADROOM: usize = 256 * 1024;

/// The piece the headroom is counted in.
const BLOCK: usize = 8 * 1024;

/// Whether [`HEADROOM`] bytes could be allocated now, in pieces (tried,
/// then freed).
///
/// # Examples
///
/// ```
/// assert!(mnvkd_guest::heap::has_room());
/// ```
pub fn has_room() -> bool {
    headroom().is_some()
}

/// Makes room in `buf` for `additional` more bytes, as
/// [`Vec::try_reserve`], but only if [`HEADROOM`] bytes stay free beside it.
///
/// # Errors
///
/// [`ErrorKind::OutOfMemory`](io::ErrorKind::OutOfMemory): the heap cannot
/// hold the buffer and the headroom.
///
/// # Examples
///
/// ```
/// let mut buf = Vec::new();
/// mnvkd_guest::heap::reserve(&mut buf, 4096)?;
/// assert!(buf.capacity() >= 4096);
/// assert!(mnvkd_guest::heap::reserve(&mut buf, usize::MAX / 2).is_err());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn reserve(buf: &mut Vec<u8>, additional: usize) -> io::Result<()> {
    if buf.capacity() - buf.len() >= additional {
        return Ok(());
    }
    let out_of_memory = || io::Error::from(io::ErrorKind::OutOfMemory);
    // Held while `buf` grows, so the growth must fit beside it.
    let _headroom = headroom().ok_or_else(out_of_memory)?;
    buf.try_reserve(additional).map_err(|_| out_of_memory())
}

/// [`HEADROOM`] bytes allocated, while they are held: one run when the heap
/// has it (one allocation), else in [`BLOCK`]s; `None` if it has neither.
fn headroom() -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    let mut run = Vec::new();
    if run.try_reserve_exact(HEADROOM).is_ok() {
        return Some((run, Vec::new()));
    }
    let mut blocks = Vec::new();
    blocks.try_reserve_exact(HEADROOM / BLOCK).ok()?;
    for _ in 0..HEADROOM / BLOCK {
        let mut block = Vec::new();
        block.try_reserve_exact(BLOCK).ok()?;
        blocks.push(block);
    }
    Some((run, blocks))
}
