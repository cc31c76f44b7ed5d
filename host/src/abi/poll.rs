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
use crate::kernel::timer::Sleep;
use crate::process::ProcessState;

/// Event bit: data, end of stream, a connection to accept, or a child that ended.
pub const READABLE: u16 = 1;
/// Event bit: a write would not block.
pub const WRITABLE: u16 = 2;
/// Result bit: the other end is gone.
pub const HANGUP: u16 = 4;
/// Result bit: the handle is not open.
pub const INVALID: u16 = 8;
/// Event bit: readable may be told from the socket's events alone, without
/// the `poll(2)` that confirms an event left bytes: a syscall less a wait,
/// but at times stale (the caller reads with `try-read`).
pub const LAZY: u16 = 16;
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
        let mut entries: SmallVec<[Entry; INLINE_ENTRIES]> = SmallVec::new();
        for entry in
            buffer.memory.data(&caller)[buffer.range.clone()].chunks_exact(ENTRY_SIZE as usize)
        {
            entries.push(Entry {
                handle: i32::from_le_bytes(entry[..4].try_into().unwrap()),
                events: u16::from_le_bytes(entry[4..6].try_into().unwrap()),
                revents: 0,
            });
        }
        let mut timeout = Timeout::start(&mut caller, timeout_ms);
        // Moved in as `&mut`: a captured `&Caller` is not `Send`, the future must be.
        let (caller_ref, entries_ref, timeout_ref) = (&mut caller, &mut entries, &mut timeout);
        let ready = poll_fn(move |cx| {
            let park = (timeout_ms != 0).then_some(&*cx);
            let mut ready = 0;
            // The handles are looked up at each poll, not cloned: only this
            // process, suspended in this call, changes its table.
            let io = &caller_ref.data().io;
            for entry in entries_ref.iter_mut() {
                entry.revents = readiness(io.get(entry.handle).ok(), entry.events, park);
                ready += i32::from(entry.revents != 0);
            }
            // The timer is looked at only when nothing is ready: a ready
            // poll (the common case) never touches the timer thread.
            if ready > 0 {
                Poll::Ready(ready)
            } else if timeout_ref.expired(cx) {
                Poll::Ready(0)
            } else {
                Poll::Pending
            }
        })
        .await;
        timeout.keep(&mut caller);
        let memory = &mut buffer.memory.data_mut(&mut caller)[buffer.range];
        for (bytes, entry) in memory.chunks_exact_mut(ENTRY_SIZE as usize).zip(&entries) {
            bytes[6..8].copy_from_slice(&entry.revents.to_le_bytes());
        }
        Ok(ready)
    };
    Ok(result.await.unwrap_or_else(Errno::code))
}

/// One entry of a `poll`: the handle it names, the events wanted, and the
/// events found.
struct Entry {
    handle: i32,
    events: u16,
    revents: u16,
}

/// How long a `poll` or `watch` waits: forever (negative), not at all
/// (0), or until a deadline.
///
/// The process's timer is kept from one call to the next: a server loop
/// waits with the same idle timeout before every request, and registering
/// and cancelling a timer each time cost a lock and a table insert and
/// remove per request. A kept timer due before this call's deadline is
/// used as it is; when it fires early, it is moved to this deadline (a
/// spurious wake-up per timeout at most).
pub(super) struct Timeout {
    /// The timeout as the guest gave it.
    ms: i32,
    /// The timer and this call's deadline, for a positive timeout.
    timer: Option<(Sleep, Instant)>,
}

impl Timeout {
    /// Starts the timeout of a call, taking the process's kept timer.
    pub(super) fn start(caller: &mut Caller<'_, ProcessState>, ms: i32) -> Timeout {
        let timer = match u64::try_from(ms) {
            Ok(ms) if ms > 0 => {
                let deadline = Instant::now() + Duration::from_millis(ms);
                let kept = caller.data_mut().io.poll_timer.take();
                Some(match kept {
                    Some(timer) if timer.deadline() <= deadline => (timer, deadline),
                    _ => (caller.data().runtime.kernel.sleep_until(deadline), deadline),
                })
            }
            _ => None,
        };
        Timeout { ms, timer }
    }

    /// Whether the timeout has passed; parks `cx` on the timer when not.
    pub(super) fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.timer {
            None => self.ms == 0,
            Some((timer, deadline)) => loop {
                if Pin::new(&mut *timer).poll(cx).is_pending() {
                    break false;
                }
                if timer.deadline() >= *deadline {
                    break true;
                }
                timer.reset(*deadline);
            },
        }
    }

    /// Gives the timer back to the process for its next call.
    pub(super) fn keep(self, caller: &mut Caller<'_, ProcessState>) {
        if let Some((timer, _)) = self.timer {
            caller.data_mut().io.poll_timer = Some(timer);
        }
    }
}

/// The revents of one entry: the wanted bits that hold, plus hang-up and
/// invalid, which are always reported. Parks `cx` when nothing is reported.
pub(super) fn readiness(handle: Option<&Handle>, events: u16, cx: Option<&Context<'_>>) -> u16 {
    let want_read = events & READABLE != 0;
    let want_write = events & WRITABLE != 0;
    let lazy = events & LAZY != 0;
    let bits = match handle {
        None => return INVALID,
        Some(Handle::Connection(conn)) => bits(conn.readiness(want_read, want_write, lazy, cx)),
        Some(Handle::Listener(listener)) => bits(listener.readiness(lazy, cx)),
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
