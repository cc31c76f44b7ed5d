//! In-kernel byte pipes between processes, with a bounded buffer.
//!
//! A pipe has one read end and one write end. An end may be held by several
//! handles (`dup`, in one process or several), each holding an `Arc` of it,
//! so the end's `Drop`, when its last handle closes, is the close the other
//! side observes: end of stream for the reader, a broken pipe for the writer.
//! `shutdown` closes an end for every handle at once. Several processes may
//! wait on one end, so each end has a set of wakers, all woken on a change. The buffer never grows past its capacity: a
//! writer that finds it full parks until the reader takes bytes out.
//!
//! Buffered bytes are charged to a [`HostMemory`] account: that of the
//! process holding the read end, because the read end is what keeps them
//! (dropping it frees them), and a writer may end while its bytes live on.
//! The charge moves with the read end ([`PipeReader::charge_to`]), so a chain
//! of processes that fill pipes, pass the read ends on and exit cannot pile
//! up bytes that nobody's account holds. A write that finds room in the pipe
//! but none in the account takes what fits, or fails with
//! [`io::ErrorKind::QuotaExceeded`] when nothing does; it never parks for it.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use crate::abi::poll::{HANGUP, READABLE, WRITABLE};
use crate::host_memory::HostMemory;
use crate::waker_set::WakerSet;

/// A pipe is writable when this many bytes (or its whole capacity, if
/// smaller) fit: a write of up to this size to a writable pipe never blocks,
/// like POSIX's `PIPE_BUF`.
pub const ATOMIC_WRITE: usize = 4096;

/// Creates a pipe holding at most `capacity` bytes, charged to `account`
/// (the creator's, which holds the read end at first).
pub fn pipe(capacity: usize, account: Arc<HostMemory>) -> (PipeReader, PipeWriter) {
    let shared = Arc::new(Mutex::new(Shared {
        buffer: VecDeque::new(),
        capacity: capacity.max(1),
        account,
        reader_open: true,
        writer_open: true,
        readers: WakerSet::new(),
        writers: WakerSet::new(),
    }));
    (
        PipeReader {
            shared: Arc::clone(&shared),
        },
        PipeWriter { shared },
    )
}

#[derive(Debug)]
struct Shared {
    /// Bytes written and not yet read; `len() <= capacity`.
    buffer: VecDeque<u8>,
    /// Most bytes the buffer holds.
    capacity: usize,
    /// The account of the read end's holder; charged for exactly `buffer.len()`.
    account: Arc<HostMemory>,
    /// False once the read end is dropped or shut down.
    reader_open: bool,
    /// False once the write end is dropped or shut down.
    writer_open: bool,
    /// The readers waiting for bytes or end of stream.
    readers: WakerSet,
    /// The writers waiting for room or a broken pipe.
    writers: WakerSet,
}

/// The read end of a pipe.
#[derive(Debug)]
pub struct PipeReader {
    shared: Arc<Mutex<Shared>>,
}

/// The write end of a pipe.
#[derive(Debug)]
pub struct PipeWriter {
    shared: Arc<Mutex<Shared>>,
}

impl PipeReader {
    /// Moves up to `out.len()` bytes out; `Ready(0)` is end of stream (or an
    /// empty `out`).
    pub fn poll_read(&self, cx: &Context<'_>, out: &mut [u8]) -> Poll<usize> {
        self.read_or_park(out, Some(cx))
    }

    /// Moves what is there now, like [`PipeReader::poll_read`], but parks
    /// nothing: `None` when it would have to wait.
    pub fn try_read(&self, out: &mut [u8]) -> Option<usize> {
        match self.read_or_park(out, None) {
            Poll::Ready(n) => Some(n),
            Poll::Pending => None,
        }
    }

    fn read_or_park(&self, out: &mut [u8], cx: Option<&Context<'_>>) -> Poll<usize> {
        let mut shared = self.shared.lock().unwrap();
        if shared.buffer.is_empty() && shared.writer_open && shared.reader_open && !out.is_empty() {
            if let Some(cx) = cx {
                shared.readers.register(cx.waker());
            }
            return Poll::Pending;
        }
        let n = out.len().min(shared.buffer.len());
        let (front, back) = shared.buffer.as_slices();
        let from_front = n.min(front.len());
        out[..from_front].copy_from_slice(&front[..from_front]);
        // Most reads find the bytes in one piece: no second (empty) memcpy.
        if n > from_front {
            out[from_front..n].copy_from_slice(&back[..n - from_front]);
        }
        shared.buffer.drain(..n);
        let wakers = if n > 0 {
            shared.account.release(n as u64);
            shared.writers.take()
        } else {
            Default::default()
        };
        drop(shared);
        wakers.wake();
        Poll::Ready(n)
    }

    /// Poll bits now true for this end; parks `cx` when none of `events` is.
    pub fn readiness(&self, events: u16, cx: Option<&Context<'_>>) -> u16 {
        let mut shared = self.shared.lock().unwrap();
        let mut bits = 0;
        if !shared.buffer.is_empty() || !shared.writer_open || !shared.reader_open {
            bits |= READABLE;
        }
        if !shared.writer_open {
            bits |= HANGUP;
        }
        if bits & (events | HANGUP) == 0 {
            if let Some(cx) = cx {
                shared.readers.register(cx.waker());
            }
        }
        bits
    }

    /// Moves the charge for the buffered bytes, and for those to come, to
    /// `account` (the read end is moving to the process that owns it). The
    /// bytes are already there, so the new account takes them even past its
    /// limit; it then grants nothing more until they are read.
    pub fn charge_to(&self, account: &Arc<HostMemory>) {
        let mut shared = self.shared.lock().unwrap();
        if Arc::ptr_eq(&shared.account, account) {
            return;
        }
        let buffered = shared.buffer.len() as u64;
        shared.account.release(buffered);
        account.force(buffered);
        shared.account = Arc::clone(account);
    }
}

impl PipeWriter {
    /// Copies as much of `data` as fits in the buffer and the reader's
    /// host-memory account; parks while the buffer is full.
    ///
    /// # Errors
    /// `BrokenPipe` once the read end is closed; `QuotaExceeded` when the
    /// buffer has room but the account has none.
    pub fn poll_write(&self, cx: &Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.write_or_park(data, Some(cx))
    }

    /// Copies what fits now, like [`PipeWriter::poll_write`], but parks
    /// nothing: `WouldBlock` when the buffer is full.
    ///
    /// # Errors
    /// As [`PipeWriter::poll_write`], and `WouldBlock`.
    pub fn try_write(&self, data: &[u8]) -> io::Result<usize> {
        match self.write_or_park(data, None) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn write_or_park(&self, data: &[u8], cx: Option<&Context<'_>>) -> Poll<io::Result<usize>> {
        let mut shared = self.shared.lock().unwrap();
        if !shared.reader_open || !shared.writer_open {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let room = shared.capacity - shared.buffer.len();
        if room == 0 {
            if let Some(cx) = cx {
                shared.writers.register(cx.waker());
            }
            return Poll::Pending;
        }
        let n = shared.account.charge_up_to(room.min(data.len()) as u64) as usize;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::QuotaExceeded.into()));
        }
        shared.buffer.extend(&data[..n]);
        let wakers = shared.readers.take();
        drop(shared);
        wakers.wake();
        Poll::Ready(Ok(n))
    }

    /// Poll bits now true for this end; parks `cx` when none of `events` is.
    pub fn readiness(&self, events: u16, cx: Option<&Context<'_>>) -> u16 {
        let mut shared = self.shared.lock().unwrap();
        let mut bits = 0;
        if !shared.reader_open || !shared.writer_open {
            // A write fails at once: that is "ready", with the hang-up bit.
            bits |= WRITABLE | HANGUP;
        } else if shared.capacity - shared.buffer.len() >= ATOMIC_WRITE.min(shared.capacity) {
            bits |= WRITABLE;
        }
        if bits & (events | HANGUP) == 0 {
            if let Some(cx) = cx {
                shared.writers.register(cx.waker());
            }
        }
        bits
    }
}

impl PipeReader {
    /// Closes the read end for every handle that holds it: its buffered
    /// bytes are dropped, reads return end of stream, writers get a broken
    /// pipe.
    pub fn shutdown(&self) {
        let mut shared = self.shared.lock().unwrap();
        shared.reader_open = false;
        shared.account.release(shared.buffer.len() as u64);
        shared.buffer.clear();
        // Readers parked on this end must see its end of stream too.
        let (readers, writers) = (shared.readers.take(), shared.writers.take());
        drop(shared);
        readers.wake();
        writers.wake();
    }
}

impl PipeWriter {
    /// Closes the write end for every handle that holds it: the reader gets
    /// end of stream once the buffer is drained, and writes get a broken pipe.
    pub fn shutdown(&self) {
        let mut shared = self.shared.lock().unwrap();
        shared.writer_open = false;
        let (readers, writers) = (shared.readers.take(), shared.writers.take());
        drop(shared);
        readers.wake();
        writers.wake();
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Drop for PipeWriter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    /// A pipe of `capacity` bytes with an account that holds them all.
    fn pipe(capacity: usize) -> (PipeReader, PipeWriter) {
        super::pipe(capacity, HostMemory::new(capacity as u64))
    }

    #[test]
    fn bytes_arrive_in_order_and_eof_follows_close() {
        let (reader, writer) = pipe(4);
        assert!(matches!(
            writer.poll_write(&cx(), b"abcdef"),
            Poll::Ready(Ok(4))
        ));
        let mut out = [0; 8];
        assert_eq!(reader.poll_read(&cx(), &mut out), Poll::Ready(4));
        assert_eq!(&out[..4], b"abcd");
        assert_eq!(reader.poll_read(&cx(), &mut out), Poll::Pending);
        drop(writer);
        assert_eq!(reader.poll_read(&cx(), &mut out), Poll::Ready(0));
        assert_eq!(reader.readiness(READABLE, None), READABLE | HANGUP);
    }

    #[test]
    fn bytes_that_wrap_around_the_buffer_arrive_in_order() {
        // The buffer never empties, so its start walks round its storage
        // and reads meet bytes split in two.
        let (reader, writer) = pipe(5);
        let (mut next_in, mut next_out) = (0u8, 0u8);
        let mut out = [0; 5];
        for round in 0..40 {
            while let Ok(n) = writer.try_write(&[next_in, next_in.wrapping_add(1)]) {
                next_in = next_in.wrapping_add(n as u8);
            }
            let n = reader.try_read(&mut out[..1 + round % 4]).unwrap();
            for &byte in &out[..n] {
                assert_eq!(byte, next_out, "round {round}");
                next_out = next_out.wrapping_add(1);
            }
        }
        assert!(next_out > 40, "bytes moved: {next_out}");
    }

    #[test]
    fn full_pipe_blocks_writer_and_closed_reader_breaks_it() {
        let (reader, writer) = pipe(2);
        assert!(matches!(
            writer.poll_write(&cx(), b"xy"),
            Poll::Ready(Ok(2))
        ));
        assert!(writer.poll_write(&cx(), b"z").is_pending());
        assert_eq!(writer.readiness(WRITABLE, None), 0);
        drop(reader);
        assert!(matches!(
            writer.poll_write(&cx(), b"z"),
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::BrokenPipe
        ));
    }

    #[test]
    fn try_read_and_try_write_never_park() {
        let (reader, writer) = pipe(2);
        let mut out = [0; 4];
        assert_eq!(reader.try_read(&mut out), None, "empty: would wait");
        assert_eq!(writer.try_write(b"abc").unwrap(), 2, "what fits");
        assert_eq!(
            writer.try_write(b"c").unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "full: would wait"
        );
        assert_eq!(reader.try_read(&mut out), Some(2));
        drop(writer);
        assert_eq!(reader.try_read(&mut out), Some(0), "end of stream");
    }

    #[test]
    fn shutdown_closes_an_end_for_every_handle() {
        let (reader, writer) = pipe(8);
        let (reader, writer) = (Arc::new(reader), Arc::new(writer));
        let writer_dup = Arc::clone(&writer);
        assert!(matches!(
            writer.poll_write(&cx(), b"ab"),
            Poll::Ready(Ok(2))
        ));
        writer.shutdown();
        assert!(matches!(
            writer_dup.poll_write(&cx(), b"c"),
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::BrokenPipe
        ));
        let mut out = [0; 8];
        assert_eq!(reader.poll_read(&cx(), &mut out), Poll::Ready(2));
        assert_eq!(reader.poll_read(&cx(), &mut out), Poll::Ready(0));
        let (reader, writer) = self::pipe(8);
        reader.shutdown();
        assert_eq!(reader.poll_read(&cx(), &mut out), Poll::Ready(0));
        assert_eq!(writer.readiness(WRITABLE, None), WRITABLE | HANGUP);
    }

    #[test]
    fn buffered_bytes_are_charged_until_read_or_dropped() {
        let account = HostMemory::new(1 << 20);
        let (reader, writer) = super::pipe(100, Arc::clone(&account));
        assert!(matches!(
            writer.poll_write(&cx(), &[7; 60]),
            Poll::Ready(Ok(60))
        ));
        assert_eq!(account.used(), 60);
        let mut out = [0; 25];
        assert_eq!(reader.poll_read(&cx(), &mut out), Poll::Ready(25));
        assert_eq!(account.used(), 35);
        drop(reader);
        assert_eq!(account.used(), 0, "a closed read end frees its bytes");
        drop(writer);
    }

    #[test]
    fn a_full_account_takes_what_fits_then_refuses() {
        let account = HostMemory::new(10);
        let (_reader, writer) = super::pipe(1 << 16, Arc::clone(&account));
        assert!(matches!(
            writer.poll_write(&cx(), &[1; 16]),
            Poll::Ready(Ok(10))
        ));
        assert!(matches!(
            writer.poll_write(&cx(), &[1; 16]),
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::QuotaExceeded
        ));
        // The pipe still has room: poll says writable, and a write says why it fails.
        assert_eq!(writer.readiness(WRITABLE, None), WRITABLE);
    }

    #[test]
    fn the_charge_follows_the_read_end() {
        let (parent, child) = (HostMemory::new(100), HostMemory::new(10));
        let (reader, writer) = super::pipe(100, Arc::clone(&parent));
        assert!(matches!(
            writer.poll_write(&cx(), &[1; 40]),
            Poll::Ready(Ok(40))
        ));
        reader.charge_to(&child);
        assert_eq!((parent.used(), child.used()), (0, 40));
        // The child's account is over its limit now: nothing more is buffered.
        assert!(matches!(
            writer.poll_write(&cx(), &[1; 1]),
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::QuotaExceeded
        ));
        let mut out = [0; 40];
        assert_eq!(reader.poll_read(&cx(), &mut out), Poll::Ready(40));
        assert_eq!((parent.used(), child.used()), (0, 0));
    }
}
