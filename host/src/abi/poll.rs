//! Waiting on several handles at once: `poll`.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use smallvec::SmallVec;
use wasmtime::{Caller, Linker};

use super::handles::Handle;
use super::{guest_buffer, Errno, MODULE};
use crate::conn::Readiness;
use crate::process::ProcessState;

/// Event bit: data, end of stream, a connection to accept, or a child that ended.
pub const READABLE: u16 = 1;
/// Event bit: a write would not block.
pub const WRITABLE: u16 = 2;
/// Result bit: the other end is gone.
pub const HANGUP: u16 = 4;
/// Result bit: the handle is not open.
pub const INVALID: u16 = 8;
/// Most entries one `poll` takes.
pub const MAX_ENTRIES: u32 = 1024;
/// Bytes per entry: handle (s32), events (u16), revents (u16).
const ENTRY_SIZE: u32 = 8;
/// Entries kept without allocating: a server loop waits on one or two.
const INLINE_ENTRIES: usize = 4;

/// Registers `poll`.
///
/// # Errors
/// When the name is already defined in `linker`.
pub fn add_to_linker(linker: &mut Linker<ProcessState>) -> anyhow::Result<()> {
    linker.func_wrap_async(MODULE, "poll", |caller, (fds, count, timeout_ms)| {
        Box::new(poll(caller, fds, count, timeout_ms))
    })?;
    Ok(())
}

/// Blocks until one of the `count` entries at `fds` is ready or `timeout_ms`
/// pass (-1: forever, 0: just look), writing each entry's revents.
///
/// **Returns:** the number of ready entries (0 on timeout), `fault`, `inval`.
/// **Traps:** never.
async fn poll(
    mut caller: Caller<'_, ProcessState>,
    fds: i32,
    count: i32,
    timeout_ms: i32,
) -> wasmtime::Result<i32> {
    let result = async {
        let count = count as u32;
        if count > MAX_ENTRIES {
            return Err(Errno::Inval);
        }
        let buffer = guest_buffer(&mut caller, "poll", fds, (count * ENTRY_SIZE) as i32)?;
        let entries: SmallVec<[(Option<Handle>, u16); INLINE_ENTRIES]> =
            buffer.memory.data(&caller)[buffer.range.clone()]
                .chunks_exact(ENTRY_SIZE as usize)
                .map(|entry| {
                    let handle = i32::from_le_bytes(entry[..4].try_into().unwrap());
                    let events = u16::from_le_bytes(entry[4..6].try_into().unwrap());
                    (caller.data().io.get(handle).ok().cloned(), events)
                })
                .collect();
        let deadline = u64::try_from(timeout_ms)
            .ok()
            .map(|ms| Instant::now() + Duration::from_millis(ms));
        let mut timer = deadline.map(|at| caller.data().runtime.kernel.sleep_until(at));
        let revents = poll_fn(|cx| {
            let park = (timeout_ms != 0).then_some(&*cx);
            let revents: SmallVec<[u16; INLINE_ENTRIES]> = entries
                .iter()
                .map(|(handle, events)| readiness(handle.as_ref(), *events, park))
                .collect();
            // The timer is registered only when nothing is ready: a ready
            // poll (the common case) never touches the timer thread.
            let ready = revents.iter().any(|&bits| bits != 0);
            let timed_out = !ready
                && match &mut timer {
                    Some(timer) => timeout_ms == 0 || Pin::new(timer).poll(cx).is_ready(),
                    None => false,
                };
            if ready || timed_out {
                Poll::Ready(revents)
            } else {
                Poll::Pending
            }
        })
        .await;
        let memory = &mut buffer.memory.data_mut(&mut caller)[buffer.range];
        for (entry, bits) in memory.chunks_exact_mut(ENTRY_SIZE as usize).zip(&revents) {
            entry[6..8].copy_from_slice(&bits.to_le_bytes());
        }
        Ok(revents.iter().filter(|&&bits| bits != 0).count() as i32)
    };
    Ok(result.await.unwrap_or_else(Errno::code))
}

/// The revents of one entry: the wanted bits that hold, plus hang-up and
/// invalid, which are always reported. Parks `cx` when nothing is reported.
fn readiness(handle: Option<&Handle>, events: u16, cx: Option<&Context<'_>>) -> u16 {
    let want_read = events & READABLE != 0;
    let want_write = events & WRITABLE != 0;
    let bits = match handle {
        None => return INVALID,
        Some(Handle::Connection(conn)) => bits(conn.readiness(want_read, want_write, cx)),
        Some(Handle::Listener(listener)) => bits(listener.readiness(cx)),
        Some(Handle::PipeRead(pipe)) => pipe.readiness(events, cx),
        Some(Handle::PipeWrite(pipe)) => pipe.readiness(events, cx),
        Some(Handle::Child(status)) => {
            if status.exit(cx).is_some() {
                READABLE
            } else {
                0
            }
        }
    };
    bits & (events | HANGUP)
}

fn bits(readiness: Readiness) -> u16 {
    let mut bits = 0;
    if readiness.readable {
        bits |= READABLE;
    }
    if readiness.writable {
        bits |= WRITABLE;
    }
    if readiness.hangup {
        bits |= HANGUP;
    }
    bits
}
