//! The per-process handle table: small integers standing for the process's
//! sockets, pipe ends, child processes and listener.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use super::watch::WatchSet;
use super::Errno;
use crate::conn::Connection;
use crate::kernel::timer::Sleep;
use crate::listener::Listener;
use crate::pipe::{PipeReader, PipeWriter};
use crate::process::{ChildStatus, StdioLink};

/// One open handle. Pipe ends close when their last `Arc` goes: the table
/// holds the only long-lived one, so removing it from the table closes it.
#[derive(Debug, Clone)]
pub enum Handle {
    /// A stream socket: the process's connection or an outbound one.
    Connection(Arc<Connection>),
    /// The read end of a pipe.
    PipeRead(Arc<PipeReader>),
    /// The write end of a pipe.
    PipeWrite(Arc<PipeWriter>),
    /// A spawned child, for `wait` and `poll`.
    Child(Arc<ChildStatus>),
    /// A listener (listener-mode apps).
    Listener(Arc<Listener>),
}

impl Handle {
    /// A second handle to the same stream (`dup`): a connection counts it,
    /// so the socket is shut down only when its last handle closes.
    ///
    /// # Errors
    /// `badf` for a child or a listener, which are not streams.
    pub fn dup(&self) -> Result<Handle, Errno> {
        match self {
            Handle::Connection(conn) => conn.add_handle(),
            Handle::PipeRead(_) | Handle::PipeWrite(_) => {}
            Handle::Child(_) | Handle::Listener(_) => return Err(Errno::Badf),
        }
        Ok(self.clone())
    }

    /// Closes this handle: a connection whose last handle this was is shut
    /// down; a pipe end closes when its last `Arc` goes.
    pub fn close(self) {
        if let Handle::Connection(conn) = self {
            if Arc::strong_count(&conn) == 1 {
                // Nobody else holds the connection (no other handle, no
                // stdio made from it), and nobody can start to: dropping it
                // here closes the socket, which ends the stream as a
                // shutdown would, without the extra system call.
                return;
            }
            conn.close_handle();
        }
    }
}

/// The handle table of one process.
#[derive(Debug)]
pub struct IoCtx {
    /// Index = handle number; `None` = closed. At most `max_handles` are `Some`.
    handles: Vec<Option<Handle>>,
    /// How many of `handles` are `Some`.
    open: usize,
    /// The `None` slots of `handles`, lowest first: a process serving
    /// thousands of connections accepts and closes without scanning its
    /// table (each scan was O(handles), three times an accept).
    free: BinaryHeap<Reverse<u32>>,
    /// Most handles open at once.
    max_handles: usize,
    /// The stdio made from handle 0's connection, cut off when handle 0 leaves.
    stdio: Option<Arc<StdioLink>>,
    /// The timer of this process's last `poll` with a timeout, kept
    /// registered for the next one (`poll.rs`).
    pub poll_timer: Option<Sleep>,
    /// The interest set of `watch` (`watch.rs`), made at the first call:
    /// most processes never make one.
    pub watch: Option<Box<WatchSet>>,
}

impl IoCtx {
    /// A table holding `handles` as 0..n, allowing `max_handles` open at
    /// once; `stdio` is the WASI stdio made from handle 0, if any.
    pub fn new(handles: Vec<Handle>, max_handles: usize, stdio: Option<Arc<StdioLink>>) -> IoCtx {
        IoCtx {
            open: handles.len(),
            handles: handles.into_iter().map(Some).collect(),
            free: BinaryHeap::new(),
            max_handles,
            stdio,
            poll_timer: None,
            watch: None,
        }
    }

    /// The handle behind `handle`.
    ///
    /// # Errors
    /// `badf` when it is not open.
    pub fn get(&self, handle: i32) -> Result<&Handle, Errno> {
        usize::try_from(handle)
            .ok()
            .and_then(|index| self.handles.get(index))
            .and_then(Option::as_ref)
            .ok_or(Errno::Badf)
    }

    /// Removes `handle` from the table and returns it.
    ///
    /// # Errors
    /// `badf` when it is not open.
    pub fn take(&mut self, handle: i32) -> Result<Handle, Errno> {
        if handle == 0 {
            if let Some(stdio) = self.stdio.take() {
                stdio.detach();
            }
        }
        let taken = usize::try_from(handle)
            .ok()
            .and_then(|index| self.handles.get_mut(index))
            .and_then(Option::take)
            .ok_or(Errno::Badf)?;
        self.open -= 1;
        // `handle` indexed a slot, so it is a small non-negative number.
        self.free.push(Reverse(handle as u32));
        if let Some(watch) = &mut self.watch {
            watch.closed(handle);
        }
        Ok(taken)
    }

    /// Open handles.
    pub fn open_count(&self) -> usize {
        self.open
    }

    /// Most handles open at once.
    pub fn max_handles(&self) -> usize {
        self.max_handles
    }

    /// Whether `count` more handles fit under the limit.
    pub fn has_room(&self, count: usize) -> bool {
        self.open_count() + count <= self.max_handles
    }

    /// Puts `handle` in the lowest free slot and returns its number.
    ///
    /// # Errors
    /// `limit` when the process has `max_handles` open already.
    pub fn insert(&mut self, handle: Handle) -> Result<i32, Errno> {
        if !self.has_room(1) {
            return Err(Errno::Limit);
        }
        let index = match self.free.pop() {
            Some(Reverse(index)) => {
                let index = index as usize;
                self.handles[index] = Some(handle);
                index
            }
            None => {
                self.handles.push(Some(handle));
                self.handles.len() - 1
            }
        };
        self.open += 1;
        i32::try_from(index).map_err(|_| Errno::Limit)
    }
}

impl Drop for IoCtx {
    /// A process that ends closes what it still holds: a connection shared
    /// with another process (`dup`) stays up until the last holder closes.
    fn drop(&mut self) {
        for handle in self.handles.drain(..).flatten() {
            handle.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::ChildStatus;

    fn child() -> Handle {
        Handle::Child(Arc::new(ChildStatus::default()))
    }

    #[test]
    fn insert_takes_the_lowest_free_slot_and_counts_what_is_open() {
        let mut io = IoCtx::new(vec![child()], 5, None);
        let numbers: Vec<i32> = (0..4).map(|_| io.insert(child()).unwrap()).collect();
        assert_eq!(numbers, [1, 2, 3, 4]);
        assert_eq!(io.open_count(), 5);
        assert_eq!(io.insert(child()).unwrap_err(), Errno::Limit);
        for number in [3, 1, 4] {
            io.take(number).unwrap();
        }
        assert_eq!(io.take(3).unwrap_err(), Errno::Badf, "taken already");
        assert_eq!(io.open_count(), 2);
        assert!(io.has_room(3) && !io.has_room(4));
        let numbers: Vec<i32> = (0..3).map(|_| io.insert(child()).unwrap()).collect();
        assert_eq!(numbers, [1, 3, 4], "lowest first, as before");
        assert_eq!(io.insert(child()).unwrap_err(), Errno::Limit);
    }
}
