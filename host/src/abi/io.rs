//! Byte-stream I/O on handles: `read`, `write`, `close`.
//!
//! `IoCtx` owns the process's handle table. Today a handle is the connection
//! the process was started for (handle 0); pipes and outbound connections
//! join the same table later, behind the same three imports.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;

use wasmtime::{Caller, Linker};

use super::{guest_buffer, Errno, MODULE};
use crate::conn::Connection;
use crate::process::ProcessState;

/// One open handle.
#[derive(Debug, Clone)]
pub enum Handle {
    /// A stream socket.
    Connection(Arc<Connection>),
}

/// The process's handle table.
#[derive(Debug, Default)]
pub struct IoCtx {
    /// Index = handle number; `None` = closed. Slot 0 is the connection.
    handles: Vec<Option<Handle>>,
}

impl IoCtx {
    /// A table whose handle 0 is `connection`.
    pub fn with_connection(connection: Arc<Connection>) -> IoCtx {
        IoCtx {
            handles: vec![Some(Handle::Connection(connection))],
        }
    }

    fn handle(&self, handle: i32) -> Result<&Handle, Errno> {
        usize::try_from(handle)
            .ok()
            .and_then(|index| self.handles.get(index))
            .and_then(Option::as_ref)
            .ok_or(Errno::Badf)
    }

    fn take(&mut self, handle: i32) -> Result<Handle, Errno> {
        usize::try_from(handle)
            .ok()
            .and_then(|index| self.handles.get_mut(index))
            .and_then(Option::take)
            .ok_or(Errno::Badf)
    }
}

/// Registers `read`, `write` and `close`.
///
/// # Errors
/// When a name is already defined in `linker`.
pub fn add_to_linker(linker: &mut Linker<ProcessState>) -> anyhow::Result<()> {
    linker.func_wrap_async(MODULE, "read", |caller, (h, ptr, len)| {
        Box::new(read(caller, h, ptr, len))
    })?;
    linker.func_wrap_async(MODULE, "write", |caller, (h, ptr, len)| {
        Box::new(write(caller, h, ptr, len))
    })?;
    linker.func_wrap(MODULE, "close", close)?;
    Ok(())
}

/// Reads up to `len` bytes from handle `h` into the guest buffer at `ptr`,
/// blocking (suspending the process) until at least one byte or end of stream.
///
/// **Returns:** the count read, 0 at end of stream, `badf`, `fault`, `pipe`, `io`.
/// **Traps:** never.
async fn read(
    mut caller: Caller<'_, ProcessState>,
    h: i32,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<i32> {
    let result = async {
        let Handle::Connection(conn) = caller.data().io.handle(h)?.clone();
        let buffer = guest_buffer(&mut caller, "read", ptr, len)?;
        if buffer.range.is_empty() {
            return Ok(0);
        }
        let n = poll_fn(|cx| {
            let bytes = &mut buffer.memory.data_mut(&mut caller)[buffer.range.clone()];
            conn.poll_read(cx, bytes)
        })
        .await?;
        Ok(n as i32)
    };
    Ok(result.await.unwrap_or_else(Errno::code))
}

/// Writes all `len` bytes of the guest buffer at `ptr` to handle `h`, blocking
/// (suspending the process) until the socket took them all.
///
/// **Returns:** `len`, `badf`, `fault`, `pipe`, `io`.
/// **Traps:** never.
async fn write(
    mut caller: Caller<'_, ProcessState>,
    h: i32,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<i32> {
    let result = async {
        let Handle::Connection(conn) = caller.data().io.handle(h)?.clone();
        let buffer = guest_buffer(&mut caller, "write", ptr, len)?;
        let total = buffer.range.len();
        let mut written = 0;
        // Moved in as `&mut`: a captured `&Caller` is not `Send`, the future must be.
        let caller = &mut caller;
        poll_fn(move |cx| loop {
            let range = buffer.range.start + written..buffer.range.end;
            if range.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let bytes = &buffer.memory.data(&*caller)[range];
            match conn.poll_write(cx, bytes) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(Errno::Pipe)),
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(Errno::from(err))),
                Poll::Pending => return Poll::Pending,
            }
        })
        .await?;
        Ok(total as i32)
    };
    Ok(result.await.unwrap_or_else(Errno::code))
}

/// Closes handle `h`. Closing a connection shuts it down in both directions at
/// once, even though the process's stdio may still refer to it.
///
/// **Returns:** 0 or `badf`.
/// **Traps:** never.
fn close(mut caller: Caller<'_, ProcessState>, h: i32) -> i32 {
    match caller.data_mut().io.take(h) {
        Ok(Handle::Connection(conn)) => {
            conn.shutdown();
            0
        }
        Err(errno) => errno.code(),
    }
}
