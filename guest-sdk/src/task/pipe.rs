//! [`pipe`]: a bounded byte pipe between coroutines of one process, the
//! in-heap counterpart of the host's [`pipe`](crate::pipe()). No host call:
//! both ends are in the heap.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// A byte pipe holding at most `capacity` bytes (at least 1): the writer
/// waits while it is full, the reader while it is empty. The reader gets end
/// of stream (a read of 0) once the writer is dropped and the buffer is
/// drained; the writer gets `BrokenPipe` once the reader is dropped.
///
/// # Examples
///
/// ```
/// use mnvkd_guest::task;
///
/// let text = task::block_on(async {
///     let (reader, writer) = task::pipe(4);
///     task::spawn(async move {
///         writer.write_all(b"hello, heap").await.unwrap(); // 4 bytes at a time
///     })
///     .detach();
///     let mut text = Vec::new();
///     let mut buf = [0; 64];
///     loop {
///         match reader.read(&mut buf).await {
///             0 => break text,
///             n => text.extend_from_slice(&buf[..n]),
///         }
///     }
/// });
/// assert_eq!(text, b"hello, heap");
/// ```
pub fn pipe(capacity: usize) -> (PipeReader, PipeWriter) {
    let shared = Rc::new(RefCell::new(Shared {
        buffer: VecDeque::new(),
        capacity: capacity.max(1),
        reader: true,
        writer: true,
        reader_waker: None,
        writer_waker: None,
    }));
    (
        PipeReader {
            shared: Rc::clone(&shared),
        },
        PipeWriter { shared },
    )
}

#[derive(Debug)]
struct Shared {
    /// Written, not yet read; `len() <= capacity`.
    buffer: VecDeque<u8>,
    /// Most bytes buffered.
    capacity: usize,
    /// Whether the reader is alive.
    reader: bool,
    /// Whether the writer is alive.
    writer: bool,
    /// The reader, waiting for bytes.
    reader_waker: Option<Waker>,
    /// The writer, waiting for room.
    writer_waker: Option<Waker>,
}

/// The read end of an in-heap [`pipe`].
#[derive(Debug)]
pub struct PipeReader {
    shared: Rc<RefCell<Shared>>,
}

/// The write end of an in-heap [`pipe`].
#[derive(Debug)]
pub struct PipeWriter {
    shared: Rc<RefCell<Shared>>,
}

impl PipeReader {
    /// Moves up to `buf.len()` buffered bytes into `buf`, waiting while there
    /// are none; 0 at end of stream.
    ///
    /// # Examples
    ///
    /// ```
    /// let (reader, writer) = mnvkd_guest::task::pipe(8);
    /// drop(writer);
    /// assert_eq!(mnvkd_guest::task::block_on(reader.read(&mut [0; 4])), 0);
    /// ```
    pub async fn read(&self, buf: &mut [u8]) -> usize {
        poll_fn(|cx| {
            let mut shared = self.shared.borrow_mut();
            if shared.buffer.is_empty() {
                if !shared.writer || buf.is_empty() {
                    return Poll::Ready(0);
                }
                shared.reader_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let n = buf.len().min(shared.buffer.len());
            let (front, back) = shared.buffer.as_slices();
            let from_front = n.min(front.len());
            buf[..from_front].copy_from_slice(&front[..from_front]);
            buf[from_front..n].copy_from_slice(&back[..n - from_front]);
            shared.buffer.drain(..n);
            let waker = shared.writer_waker.take();
            drop(shared);
            if let Some(waker) = waker {
                waker.wake();
            }
            Poll::Ready(n)
        })
        .await
    }

    /// Bytes buffered now.
    ///
    /// # Examples
    ///
    /// ```
    /// let (reader, _writer) = mnvkd_guest::task::pipe(8);
    /// assert_eq!(reader.buffered(), 0);
    /// ```
    pub fn buffered(&self) -> usize {
        self.shared.borrow().buffer.len()
    }
}

impl PipeWriter {
    /// Copies as much of `buf` as there is room for, waiting while there is
    /// none; returns the count.
    ///
    /// # Errors
    ///
    /// `BrokenPipe` once the reader is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// let (_reader, writer) = mnvkd_guest::task::pipe(4);
    /// assert_eq!(mnvkd_guest::task::block_on(writer.write(b"abcdef")).unwrap(), 4);
    /// ```
    pub async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        poll_fn(|cx| {
            let mut shared = self.shared.borrow_mut();
            if !shared.reader {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            let room = shared.capacity - shared.buffer.len();
            if buf.is_empty() {
                return Poll::Ready(Ok(0));
            }
            if room == 0 {
                shared.writer_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let n = room.min(buf.len());
            shared.buffer.extend(&buf[..n]);
            let waker = shared.reader_waker.take();
            drop(shared);
            if let Some(waker) = waker {
                waker.wake();
            }
            Poll::Ready(Ok(n))
        })
        .await
    }

    /// Writes all of `buf`, waiting for room as often as needed.
    ///
    /// # Errors
    ///
    /// `BrokenPipe` once the reader is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// let (reader, writer) = mnvkd_guest::task::pipe(4);
    /// drop(reader);
    /// assert!(mnvkd_guest::task::block_on(writer.write_all(b"x")).is_err());
    /// ```
    pub async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.write(buf).await?;
            buf = &buf[n..];
        }
        Ok(())
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        let waker = {
            let mut shared = self.shared.borrow_mut();
            shared.reader = false;
            shared.buffer.clear();
            shared.writer_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Drop for PipeWriter {
    fn drop(&mut self) {
        let waker = {
            let mut shared = self.shared.borrow_mut();
            shared.writer = false;
            shared.reader_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}
