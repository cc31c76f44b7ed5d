//! Byte-stream I/O on handles: `read`, `write` (and their non-blocking
//! forms `try-read` and `try-write`), `close`, `pipe`, `dup` and `shutdown`.
//!
//! The same three calls work on every stream handle (a connection or a pipe
//! end), so a coroutine does blocking I/O the same way whether the other end
//! is a socket or another process.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;

use wasmtime::{Caller, Linker};

use super::handles::Handle;
use super::poll::Timeout;
use super::{guest_buffer, transfer_bytes, Errno, MODULE};
use crate::kernel;
use crate::pipe;
use crate::process::ProcessState;

/// Registers `read`, `write`, `try-read`, `try-write`, `close`, `pipe`,
/// `dup` and `shutdown`.
///
/// # Errors
/// When a name is already defined in `linker`.
pub fn add_to_linker(linker: &mut Linker<ProcessState>) -> anyhow::Result<()> {
    linker.func_wrap_async(MODULE, "read", |caller, (h, ptr, len)| {
        Box::new(read_within(caller, h, ptr, len, -1))
    })?;
    linker.func_wrap_async(
        MODULE,
        "read-within",
        |caller, (h, ptr, len, timeout_ms)| Box::new(read_within(caller, h, ptr, len, timeout_ms)),
    )?;
    linker.func_wrap_async(MODULE, "write", |caller, (h, ptr, len)| {
        Box::new(write(caller, h, ptr, len))
    })?;
    linker.func_wrap(MODULE, "try-read", try_read)?;
    linker.func_wrap(MODULE, "try-write", try_write)?;
    linker.func_wrap(MODULE, "close", close)?;
    linker.func_wrap(MODULE, "pipe", pipe)?;
    linker.func_wrap(MODULE, "dup", dup)?;
    linker.func_wrap(MODULE, "shutdown", shutdown)?;
    Ok(())
}

/// `read` and `read-within`: reads up to `len` bytes (at most
/// [`MAX_TRANSFER`]) from handle `h` into the guest buffer at `ptr`,
/// blocking (suspending the process) until at least one byte or end of
/// stream, or until `timeout_ms` pass (-1, `read`'s: no limit; 0: only
/// what is there now).
///
/// [`MAX_TRANSFER`]: super::MAX_TRANSFER
///
/// **Returns:** the count read, 0 at end of stream, `timedout`, `badf`
/// (not open, or not readable), `fault`, `pipe`, `io`.
/// **Traps:** never.
async fn read_within(
    mut caller: Caller<'_, ProcessState>,
    h: i32,
    ptr: i32,
    len: i32,
    timeout_ms: i32,
) -> wasmtime::Result<i32> {
    let result = async {
        caller.data().io.get(h)?;
        let mut timeout = Timeout::start(&mut caller, timeout_ms);
        // The bytes and the handle are looked up again at each poll: they
        // are borrowed from the caller, which the wait gives up meanwhile.
        // Only this process, suspended in this call, changes its table.
        let read = poll_fn(|cx| {
            let (bytes, state) = match transfer_bytes(&mut caller, "read", ptr, len) {
                Ok(found) => found,
                Err(errno) => return Poll::Ready(Err(errno)),
            };
            if bytes.is_empty() {
                return Poll::Ready(Ok(0));
            }
            let read = match state.io.get(h) {
                Ok(Handle::Connection(conn)) => conn.poll_read(cx, bytes).map_err(Errno::from),
                Ok(Handle::PipeRead(pipe)) => pipe.poll_read(cx, bytes).map(Ok),
                _ => Poll::Ready(Err(Errno::Badf)),
            };
            match read {
                Poll::Pending if timeout.expired(cx) => Poll::Ready(Err(Errno::Timedout)),
                read => read,
            }
        })
        .await;
        timeout.keep(&mut caller);
        let n = read?;
        if n > 0 {
            kernel::compute::note_io();
        }
        Ok(n as i32)
    };
    Ok(result.await.unwrap_or_else(Errno::code))
}

/// Writes all `len` bytes (at most [`MAX_TRANSFER`]) of the guest buffer at
/// `ptr` to handle `h`, blocking (suspending the process) until the socket or
/// pipe took them all. A pipe whose reader's host-memory account fills up
/// part-way ends the write early: the bytes it took are reported, and the
/// next write gets `limit`.
///
/// **Returns:** the count written (`len`, or less only when `len` is over
/// [`MAX_TRANSFER`] or the reader's host memory ran out), `badf` (not open,
/// or not writable), `fault`, `pipe`, `io`, `limit` (host memory, with
/// nothing written).
/// **Traps:** never.
///
/// [`MAX_TRANSFER`]: super::MAX_TRANSFER
async fn write(
    mut caller: Caller<'_, ProcessState>,
    h: i32,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<i32> {
    let result = async {
        if !matches!(
            caller.data().io.get(h)?,
            Handle::Connection(_) | Handle::PipeWrite(_)
        ) {
            return Err(Errno::Badf);
        }
        let mut written = 0;
        // Moved in as `&mut`: a captured `&Caller` is not `Send`, the future must be.
        let caller = &mut caller;
        // As in `read`, the bytes and the handle are looked up at each poll.
        let written = poll_fn(move |cx| loop {
            let (bytes, state) = match transfer_bytes(caller, "write", ptr, len) {
                Ok(found) => found,
                Err(errno) => return Poll::Ready(Err(errno)),
            };
            let bytes = &bytes[written..];
            if bytes.is_empty() {
                return Poll::Ready(Ok(written));
            }
            let step = match state.io.get(h) {
                Ok(Handle::Connection(conn)) => conn.poll_write(cx, bytes),
                Ok(Handle::PipeWrite(pipe)) => pipe.poll_write(cx, bytes),
                _ => return Poll::Ready(Err(Errno::Badf)),
            };
            match step {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(Errno::Pipe)),
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(err)) => {
                    return Poll::Ready(match Errno::from(err) {
                        Errno::Limit if written > 0 => Ok(written),
                        errno => Err(errno),
                    })
                }
                Poll::Pending => return Poll::Pending,
            }
        })
        .await?;
        if written > 0 {
            kernel::compute::note_io();
        }
        Ok(written as i32)
    };
    Ok(result.await.unwrap_or_else(Errno::code))
}

/// Reads what handle `h` has now into the guest buffer at `ptr`, without
/// blocking: for a guest that runs its own coroutines over `poll`.
///
/// **Returns:** the count read, 0 at end of stream, `again` (nothing yet),
/// `badf`, `fault`, `pipe`, `io`.
/// **Traps:** never.
fn try_read(mut caller: Caller<'_, ProcessState>, h: i32, ptr: i32, len: i32) -> i32 {
    let result = (|| {
        caller.data().io.get(h)?;
        let (bytes, state) = transfer_bytes(&mut caller, "try-read", ptr, len)?;
        if bytes.is_empty() {
            return Ok(0);
        }
        let n = match state.io.get(h)? {
            Handle::Connection(conn) => conn.try_read(bytes).0.map_err(Errno::from)?,
            Handle::PipeRead(pipe) => pipe.try_read(bytes).ok_or(Errno::Again)?,
            _ => return Err(Errno::Badf),
        };
        if n > 0 {
            kernel::compute::note_io();
        }
        Ok(n as i32)
    })();
    result.unwrap_or_else(Errno::code)
}

/// Writes what handle `h` takes now of the guest buffer at `ptr`, without
/// blocking.
///
/// **Returns:** the count written (1 to `len`), `again` (nothing taken yet),
/// `badf`, `fault`, `pipe`, `io`, `limit` (the pipe's reader has no host
/// memory left).
/// **Traps:** never.
fn try_write(mut caller: Caller<'_, ProcessState>, h: i32, ptr: i32, len: i32) -> i32 {
    let result = (|| {
        // As `write`: a handle that cannot be written is `badf` whatever the buffer.
        if !matches!(
            caller.data().io.get(h)?,
            Handle::Connection(_) | Handle::PipeWrite(_)
        ) {
            return Err(Errno::Badf);
        }
        let (bytes, state) = transfer_bytes(&mut caller, "try-write", ptr, len)?;
        if bytes.is_empty() {
            return Ok(0);
        }
        let n = match state.io.get(h)? {
            Handle::Connection(conn) => conn.try_write(bytes),
            Handle::PipeWrite(pipe) => pipe.try_write(bytes),
            _ => return Err(Errno::Badf),
        }
        .map_err(Errno::from)?;
        if n > 0 {
            kernel::compute::note_io();
        }
        Ok(n as i32)
    })();
    result.unwrap_or_else(Errno::code)
}

/// Closes handle `h`. Closing a connection's last handle shuts it down in
/// both directions at once, even though the process's stdio may still refer
/// to it; closing a pipe end's last handle is seen by the other end; closing
/// a child handle detaches the child.
///
/// **Returns:** 0 or `badf`.
/// **Traps:** never.
fn close(mut caller: Caller<'_, ProcessState>, h: i32) -> i32 {
    match caller.data_mut().io.take(h) {
        Ok(handle) => {
            handle.close();
            0
        }
        Err(errno) => errno.code(),
    }
}

/// `shutdown` direction bit: reading.
pub const SHUT_READ: i32 = 1;
/// `shutdown` direction bit: writing.
pub const SHUT_WRITE: i32 = 2;

/// Opens a second handle to the stream behind `h` (a connection or a pipe
/// end), e.g. to pass one to a child and keep the other.
///
/// **Returns:** the new handle, `badf` (not open, or not a stream), `limit`
/// (handles per process).
/// **Traps:** never.
fn dup(mut caller: Caller<'_, ProcessState>, h: i32) -> i32 {
    let io = &mut caller.data_mut().io;
    let result = io.get(h).and_then(|handle| {
        // `badf` before `limit`: a handle that cannot be copied is the
        // guest's bug whether or not it has room for another.
        if matches!(handle, Handle::Child(_) | Handle::Listener(_)) {
            return Err(Errno::Badf);
        }
        if !io.has_room(1) {
            return Err(Errno::Limit);
        }
        handle.dup()
    });
    match result.and_then(|copy| io.insert(copy)) {
        Ok(handle) => handle,
        Err(errno) => errno.code(),
    }
}

/// Half-closes the stream behind `h` for every handle to it: `how` 1 stops
/// reading (reads return end of stream), 2 stops writing (the peer or the
/// pipe's reader sees end of stream), 3 both. A pipe end has one direction;
/// the other bit is ignored there. The handle stays open until closed.
///
/// **Returns:** 0, `badf` (not open, or not a stream), `inval` (`how` not
/// 1, 2 or 3).
/// **Traps:** never.
fn shutdown(caller: Caller<'_, ProcessState>, h: i32, how: i32) -> i32 {
    if !(1..=3).contains(&how) {
        return Errno::Inval.code();
    }
    let (read, write) = (how & SHUT_READ != 0, how & SHUT_WRITE != 0);
    match caller.data().io.get(h) {
        Ok(Handle::Connection(conn)) => {
            match (read, write) {
                (true, true) => conn.shutdown(),
                (true, false) => conn.shutdown_read(),
                _ => conn.shutdown_write(),
            }
            0
        }
        Ok(Handle::PipeRead(pipe)) => {
            if read {
                pipe.shutdown();
            }
            0
        }
        Ok(Handle::PipeWrite(pipe)) => {
            if write {
                pipe.shutdown();
            }
            0
        }
        Ok(_) => Errno::Badf.code(),
        Err(errno) => errno.code(),
    }
}

/// Creates a pipe and writes its read and write handles (two little-endian
/// s32) at `out`. Its buffered bytes are charged to this process's host
/// memory while it holds the read end.
///
/// **Returns:** 0, `fault`, `limit`.
/// **Traps:** never.
fn pipe(mut caller: Caller<'_, ProcessState>, out: i32) -> i32 {
    let result = (|| {
        let buffer = guest_buffer(&mut caller, "pipe", out, 8)?;
        let state = caller.data_mut();
        if !state.io.has_room(2) {
            return Err(Errno::Limit);
        }
        let (reader, writer) = pipe::pipe(
            state.app.settings.limits.pipe_buffer,
            Arc::clone(&state.host_memory),
        );
        let read_end = state.io.insert(Handle::PipeRead(Arc::new(reader)))?;
        let write_end = state.io.insert(Handle::PipeWrite(Arc::new(writer)))?;
        let bytes = &mut buffer.memory.data_mut(&mut caller)[buffer.range];
        bytes[..4].copy_from_slice(&read_end.to_le_bytes());
        bytes[4..].copy_from_slice(&write_end.to_le_bytes());
        Ok(0)
    })();
    result.unwrap_or_else(Errno::code)
}
