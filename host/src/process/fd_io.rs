//! WASI's `fd_read` on stdin and `fd_write` on stdout, served without
//! wasmtime-wasi's context while the process has none ([`super::wasi`]).
//!
//! An inetd-mode guest does little else, and its first read is the call it
//! waits in while idle: building the context there cost an idle echo-wat
//! connection a fiber-stack page (the build runs on the fiber) and its
//! context (about 2 KiB), and wasmtime-wasi's call chain kept 0.8 KiB of
//! boxed futures while it waited. These calls use the same streams
//! (`stdio.rs`, or the starter's) and give the guest what wasmtime-wasi
//! would: the first non-empty iovec, the same errno values and the same
//! traps for a pointer that is misaligned or leaves the micro-heap, checked
//! in the same order. Any other descriptor, a process without a connection
//! (stdio to the log) or one whose context exists is passed on to
//! wasmtime-wasi.

use std::future::Future;

use bytes::Bytes;
use std::ops::Range;

use wasmtime::{AsContextMut, Caller, Extern, Linker, Memory};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::StreamError;

use super::p1::{
    self, trap, ERRNO_INTR, ERRNO_IO, ERRNO_NOMEM, ERRNO_PIPE, ERRNO_RANGE, ERRNO_SUCCESS,
};
use super::ProcessState;
use crate::abi::checked_range;

/// wasmtime-wasi writes stdout in chunks of at most this (its
/// `blocking_write_and_flush` takes no more).
const WRITE_CHUNK: usize = 4096;

/// Replaces wasmtime-wasi's `fd_read` and `fd_write` in `linker` (which must
/// already hold WASI preview 1).
///
/// # Errors
/// When `linker` has no such functions to replace (a bug in this crate).
pub fn add_to_linker(linker: &mut Linker<ProcessState>) -> anyhow::Result<()> {
    p1::redefine(linker, |linker| {
        linker.func_wrap_async(p1::MODULE, "fd_read", fd_read)?;
        linker.func_wrap_async(p1::MODULE, "fd_write", fd_write)?;
        Ok(())
    })
}

type CallFuture<'a> = Box<dyn Future<Output = wasmtime::Result<i32>> + Send + 'a>;

/// `fd_read(fd, iovs, iovs_len, nread_ptr) -> errno`: reads stdin into the
/// first non-empty iovec, blocking until bytes or the end arrive.
///
/// **Returns:** 0 with the byte count at `nread_ptr` (0 at the end of
/// stdin); `intr` when every iovec is empty; `nomem` when the iovecs ask
/// for more than the store's hostcall fuel; `io` or the OS's errno when the
/// read failed. **Traps:** an iovec or `nread_ptr` misaligned or outside
/// the micro-heap, the buffer outside it.
fn fd_read<'a>(
    mut caller: Caller<'a, ProcessState>,
    (fd, iovs, iovs_len, nread): (i32, i32, i32, i32),
) -> CallFuture<'a> {
    Box::new(async move {
        let memory = match plain_memory(&mut caller) {
            Some(memory) if fd == 0 && caller.data_mut().wasi.stdin().is_some() => memory,
            // Boxed: inline, wasmtime-wasi's future (about 600 bytes)
            // would be part of the one an idle process waits in.
            _ => return Box::pin(wasi_fd_read(caller, fd, iovs, iovs_len, nread)).await,
        };
        let (buf, len) = match first_non_empty(&mut caller, memory, "fd_read", iovs, iovs_len)? {
            Ok(iov) => iov,
            Err(errno) => return Ok(errno),
        };
        let Some(stdin) = caller.data_mut().wasi.stdin() else {
            return Ok(p1::ERRNO_BADF);
        };
        let bytes = match stdin.blocking_read(len as usize).await {
            Ok(bytes) if bytes.is_empty() => return Ok(ERRNO_INTR),
            Ok(bytes) if bytes.len() > len as usize => return Ok(ERRNO_RANGE),
            Ok(bytes) => bytes,
            Err(StreamError::Closed) => Bytes::new(),
            Err(err) => return stream_errno(err),
        };
        let Some(range) = heap_range(&caller, memory, buf.into(), bytes.len()) else {
            return Err(trap("fd_read", buf as i32, "is outside the micro-heap"));
        };
        memory.data_mut(&mut caller)[range].copy_from_slice(&bytes);
        p1::write_aligned(
            &mut caller,
            "fd_read",
            nread,
            (bytes.len() as u32).to_le_bytes(),
        )?;
        Ok(ERRNO_SUCCESS)
    })
}

/// `fd_write(fd, iovs, iovs_len, nwritten_ptr) -> errno`: writes the first
/// non-empty iovec to stdout, blocking until the stream took all of it.
///
/// **Returns:** 0 with the byte count at `nwritten_ptr`; `nomem` when the
/// iovecs ask for more than the store's hostcall fuel; `io` when stdout is
/// closed or the write failed (or the OS's errno). **Traps:** an iovec,
/// `nwritten_ptr` or the buffer misaligned or outside the micro-heap.
fn fd_write<'a>(
    mut caller: Caller<'a, ProcessState>,
    (fd, iovs, iovs_len, nwritten): (i32, i32, i32, i32),
) -> CallFuture<'a> {
    Box::new(async move {
        let memory = match plain_memory(&mut caller) {
            Some(memory) if fd == 1 && caller.data_mut().wasi.stdout().is_some() => memory,
            _ => return Box::pin(wasi_fd_write(caller, fd, iovs, iovs_len, nwritten)).await,
        };
        let (buf, len) = match first_non_empty(&mut caller, memory, "fd_write", iovs, iovs_len)? {
            Ok(iov) => iov,
            Err(errno) => return Ok(errno),
        };
        // The whole buffer is checked before any of it is written, as
        // wasmtime-wasi does.
        let Some(range) = heap_range(&caller, memory, buf.into(), len as usize) else {
            return Err(trap("fd_write", buf as i32, "is outside the micro-heap"));
        };
        let mut at = range.start;
        while at < range.end {
            let chunk = at..range.end.min(at + WRITE_CHUNK);
            at = chunk.end;
            // The guest is suspended while the stream waits: the bytes
            // cannot change under a chunk, nor the memory shrink.
            let bytes = Bytes::copy_from_slice(&memory.data(&caller)[chunk]);
            let Some(stdout) = caller.data_mut().wasi.stdout() else {
                return Ok(p1::ERRNO_BADF);
            };
            if let Err(err) = stdout.blocking_write_and_flush(bytes).await {
                return stream_errno(err);
            }
        }
        p1::write_aligned(&mut caller, "fd_write", nwritten, len.to_le_bytes())?;
        Ok(ERRNO_SUCCESS)
    })
}

/// The guest's exported `memory` if it is a plain (unshared) one;
/// wasmtime-wasi serves the rest (a shared memory) or traps (none).
fn plain_memory(caller: &mut Caller<'_, ProcessState>) -> Option<Memory> {
    // Set at instantiation (or by the `mnvkd` imports' first lookup).
    if let Some(memory) = caller.data().memory {
        return Some(memory);
    }
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => {
            caller.data_mut().memory = Some(memory);
            Some(memory)
        }
        _ => None,
    }
}

/// The first iovec of the `iovs_len` at `iovs` whose length is not 0, as
/// (address, length); (0, 0) when there is none. Charges the array and that
/// buffer against the store's hostcall fuel as wasmtime-wasi does: the
/// inner `Err` is the errno when they exceed it.
///
/// # Errors
/// A trap: an iovec is not 4-byte aligned or not inside the micro-heap.
fn first_non_empty(
    caller: &mut Caller<'_, ProcessState>,
    memory: Memory,
    import: &str,
    iovs: i32,
    iovs_len: i32,
) -> wasmtime::Result<Result<(u32, u32), i32>> {
    let mut fuel = caller.as_context_mut().hostcall_fuel();
    let count = iovs_len as u32;
    let array_bytes = count as usize * 8;
    if array_bytes > fuel {
        return Ok(Err(ERRNO_NOMEM));
    }
    fuel -= array_bytes;
    for index in 0..count {
        // No overflow: the fuel (a usize of bytes) bounded `count`.
        let at = u64::from(iovs as u32) + u64::from(index) * 8;
        if !at.is_multiple_of(4) {
            return Err(trap(import, at as i32, "is not 4-byte aligned"));
        }
        let Some(range) = heap_range(caller, memory, at, 8) else {
            return Err(trap(import, at as i32, "is outside the micro-heap"));
        };
        let bytes = &memory.data(&*caller)[range];
        let word =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let (buf, len) = (word(0), word(4));
        if len == 0 {
            continue;
        }
        if len as usize > fuel {
            return Ok(Err(ERRNO_NOMEM));
        }
        return Ok(Ok((buf, len)));
    }
    Ok(Ok((0, 0)))
}

/// `len` bytes at `start` as a range of the micro-heap, if they lie inside it.
fn heap_range(
    caller: &Caller<'_, ProcessState>,
    memory: Memory,
    start: u64,
    len: usize,
) -> Option<Range<usize>> {
    checked_range(usize::try_from(start).ok()?, len, memory.data_size(caller))
}

/// The errno (or trap) wasmtime-wasi gives for a failed stream call.
fn stream_errno(err: StreamError) -> wasmtime::Result<i32> {
    match err {
        StreamError::Closed => Ok(ERRNO_IO),
        StreamError::LastOperationFailed(err) => {
            let raw = err
                .downcast_ref::<std::io::Error>()
                .and_then(|err| err.raw_os_error());
            Ok(match raw {
                Some(libc::EPIPE) => ERRNO_PIPE,
                Some(libc::EINTR) => ERRNO_INTR,
                Some(libc::ENOMEM) => ERRNO_NOMEM,
                Some(libc::EBADF) => p1::ERRNO_BADF,
                Some(libc::EINVAL) => p1::ERRNO_INVAL,
                _ => ERRNO_IO,
            })
        }
        StreamError::Trap(err) => Err(err),
    }
}

/// wasmtime-wasi's own `fd_read`, on the process's context (built now if
/// it was not yet).
async fn wasi_fd_read(
    mut caller: Caller<'_, ProcessState>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nread: i32,
) -> wasmtime::Result<i32> {
    use wasmtime_wasi::p1::wasi_snapshot_preview1::fd_read;
    let (wasi, mut heap) = wasi_and_heap(&mut caller, "fd_read")?;
    fd_read(wasi, &mut heap, fd, iovs, iovs_len, nread).await
}

/// wasmtime-wasi's own `fd_write`, as [`wasi_fd_read`].
async fn wasi_fd_write(
    mut caller: Caller<'_, ProcessState>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> wasmtime::Result<i32> {
    use wasmtime_wasi::p1::wasi_snapshot_preview1::fd_write;
    let (wasi, mut heap) = wasi_and_heap(&mut caller, "fd_write")?;
    fd_write(wasi, &mut heap, fd, iovs, iovs_len, nwritten).await
}

/// The process's WASI context (built now if it was not yet), given the
/// store's hostcall fuel, and the guest's memory as wasmtime-wasi's calls
/// take it.
fn wasi_and_heap<'c>(
    caller: &'c mut Caller<'_, ProcessState>,
    import: &str,
) -> wasmtime::Result<(&'c mut WasiP1Ctx, wiggle::GuestMemory<'c>)> {
    let fuel = caller.as_context_mut().hostcall_fuel();
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        // Shared or missing: left to wasmtime-wasi's glue, which this
        // crate does not link; no guest of a core module has reached it.
        return Err(wasmtime::format_err!(
            "{import}: the guest exports no plain memory"
        ));
    };
    let (heap, state) = memory.data_and_store_mut(caller);
    let wasi = state.wasi();
    wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1::set_hostcall_fuel(wasi, fuel);
    Ok((wasi, wiggle::GuestMemory::Unshared(heap)))
}
