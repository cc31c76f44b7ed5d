//! Waiting on many handles at once without naming them every time: `watch`,
//! an interest set the host keeps per process (kqueue's shape: changes in,
//! ready handles out, in one call).
//!
//! `poll` looks at every entry it is given, on every call and every
//! wake-up: a process serving a thousand connections as coroutines paid a
//! thousand looks per request. `watch` keeps what the guest armed, gives
//! each armed handle a waker of its own that notes the handle when its
//! socket, pipe or child wakes it, and looks only at the handles armed or
//! woken since the last look: the cost is the changes and the ready
//! handles, not the armed ones.
//!
//! An armed handle is reported once and disarmed (one-shot, like
//! `EPOLLONESHOT`): a coroutine executor arms a handle when a coroutine
//! starts waiting on it and has nothing to undo when it is reported.

use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use smallvec::SmallVec;
use wasmtime::{Caller, Linker};

use super::handles::IoCtx;
use super::poll::{readiness, Timeout, INVALID, LAZY, MAX_ENTRIES, READABLE, WRITABLE};
use super::{guest_buffer, Errno, MODULE};
use crate::process::ProcessState;

/// Bytes per entry, changes and reports alike: handle (s32), events (u16),
/// revents (u16; unused in a change).
const ENTRY_SIZE: u32 = 8;

/// Registers `watch`.
///
/// # Errors
/// When the name is already defined in `linker`.
pub fn add_to_linker(linker: &mut Linker<ProcessState>) -> anyhow::Result<()> {
    linker.func_wrap_async(
        MODULE,
        "watch",
        |caller, (changes, change_count, ready, ready_max, timeout_ms)| {
            Box::new(watch(
                caller,
                changes,
                change_count,
                ready,
                ready_max,
                timeout_ms,
            ))
        },
    )?;
    Ok(())
}

/// Applies the `change_count` changes at `changes` (events 0 disarms a
/// handle, readable and/or writable arm it), then blocks until an armed
/// handle is ready or `timeout_ms` pass (-1: forever, 0: just look), and
/// writes up to `ready_max` reports at `ready`, disarming each reported
/// handle.
///
/// **Returns:** the number of reports (0 on timeout), `fault`, `inval`
/// (nothing is changed then).
/// **Traps:** never.
async fn watch(
    mut caller: Caller<'_, ProcessState>,
    changes: i32,
    change_count: i32,
    ready: i32,
    ready_max: i32,
    timeout_ms: i32,
) -> wasmtime::Result<i32> {
    let result = async {
        let (change_count, ready_max) = (change_count as u32, ready_max as u32);
        if change_count > MAX_ENTRIES || ready_max > MAX_ENTRIES || ready_max == 0 {
            return Err(Errno::Inval);
        }
        let changes = guest_buffer(
            &mut caller,
            "watch",
            changes,
            (change_count * ENTRY_SIZE) as i32,
        )?;
        let ready = guest_buffer(&mut caller, "watch", ready, (ready_max * ENTRY_SIZE) as i32)?;
        // Every change is checked before any is applied. Arming a handle
        // that is not open reports it at once (slots exist only for open
        // handles, so a guest cannot make the set grow past its table).
        let mut parsed: SmallVec<[(i32, u16); 8]> = SmallVec::new();
        let mut reports: SmallVec<[Report; 8]> = SmallVec::new();
        let io = &caller.data().io;
        for entry in changes.memory.data(&caller)[changes.range].chunks_exact(ENTRY_SIZE as usize) {
            let handle = i32::from_le_bytes(entry[..4].try_into().unwrap());
            let events = u16::from_le_bytes(entry[4..6].try_into().unwrap());
            if events & !(READABLE | WRITABLE | LAZY) != 0 {
                return Err(Errno::Inval);
            }
            if io.get(handle).is_ok() {
                parsed.push((handle, events));
            } else if events != 0 {
                if reports.len() == ready_max as usize {
                    return Err(Errno::Inval);
                }
                reports.push(Report {
                    handle,
                    events,
                    revents: INVALID,
                });
            }
        }
        // Out of the table while this call waits, so that looking at the
        // handles can borrow the table; nothing else of this process runs
        // meanwhile, so nothing else needs the set.
        let mut set = caller.data_mut().io.watch.take().unwrap_or_default();
        for (handle, events) in parsed {
            set.arm(handle, events);
        }
        let mut timeout = Timeout::start(&mut caller, timeout_ms);
        // Moved in as `&mut`: a captured `&Caller` is not `Send`, the future must be.
        let (caller_ref, set_ref, reports_ref, timeout_ref) =
            (&mut caller, &mut set, &mut reports, &mut timeout);
        poll_fn(move |cx| {
            set_ref.look(&caller_ref.data().io, reports_ref, ready_max as usize, cx);
            if !reports_ref.is_empty() || timeout_ref.expired(cx) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        drop(set.woken.set_process(None));
        timeout.keep(&mut caller);
        caller.data_mut().io.watch = Some(set);
        let memory = &mut ready.memory.data_mut(&mut caller)[ready.range];
        for (bytes, report) in memory.chunks_exact_mut(ENTRY_SIZE as usize).zip(&reports) {
            bytes[..4].copy_from_slice(&report.handle.to_le_bytes());
            bytes[4..6].copy_from_slice(&report.events.to_le_bytes());
            bytes[6..8].copy_from_slice(&report.revents.to_le_bytes());
        }
        Ok(reports.len() as i32)
    };
    Ok(result.await.unwrap_or_else(Errno::code))
}

/// One ready handle, as written back to the guest.
#[derive(Debug, Clone, Copy)]
struct Report {
    handle: i32,
    /// The events it was armed for.
    events: u16,
    /// What was found (hang-up and invalid included).
    revents: u16,
}

/// The interest set of one process, made at its first `watch` and kept in
/// its handle table ([`IoCtx::watch`]).
#[derive(Debug, Default)]
pub struct WatchSet {
    /// Index = handle number, below the process's handle limit.
    slots: Vec<Slot>,
    /// Handles to look at: armed, woken or closed since the last look; each
    /// at most once ([`Slot::queued`]), so it is never longer than the
    /// handle limit.
    queue: Vec<i32>,
    /// What the handles' wakers note.
    woken: Arc<Woken>,
    /// Spare buffer swapped with [`Woken`]'s list at each look.
    spare: Vec<i32>,
}

/// One handle number's interest.
#[derive(Debug, Default)]
struct Slot {
    /// The armed events; 0: not armed.
    events: u16,
    /// Whether it is in [`WatchSet::queue`].
    queued: bool,
    /// Whether it was closed while armed: it is reported invalid without a
    /// look (its number may already name a new handle).
    closed: bool,
    /// Its waker, made when first needed and kept: parked again with the
    /// same waker, a socket keeps one entry.
    waker: Option<Waker>,
}

/// The handles woken since the last look, and the process to wake with
/// them while it waits in `watch`. Shared with the handles' wakers, which
/// may run on another worker (a pipe's writer, a reactor thread).
#[derive(Debug, Default)]
struct Woken {
    state: Mutex<WokenState>,
}

#[derive(Debug, Default)]
struct WokenState {
    /// Woken handle numbers; a waker is parked once per look at its handle,
    /// so this holds at most two entries per armed handle (one per direction).
    handles: Vec<i32>,
    /// The waiting process's waker while it waits in `watch`.
    process: Option<Waker>,
}

impl Woken {
    /// Sets (or, with `None`, clears) the process waker; returns the
    /// state, still locked.
    fn set_process(&self, waker: Option<&Waker>) -> std::sync::MutexGuard<'_, WokenState> {
        let mut state = self.state.lock().unwrap();
        match (&state.process, waker) {
            (Some(parked), Some(waker)) if parked.will_wake(waker) => {}
            _ => state.process = waker.cloned(),
        }
        state
    }
}

/// The waker parked on one armed handle's source.
struct HandleWaker {
    handle: i32,
    woken: Arc<Woken>,
}

impl Wake for HandleWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let process = {
            let mut state = self.woken.state.lock().unwrap();
            state.handles.push(self.handle);
            state.process.clone()
        };
        if let Some(process) = process {
            process.wake();
        }
    }
}

impl WatchSet {
    /// Arms `handle` for `events`, or disarms it (`events` 0). The caller
    /// checked that `handle` is open.
    fn arm(&mut self, handle: i32, events: u16) {
        let index = handle as usize;
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, Slot::default);
        }
        let slot = &mut self.slots[index];
        slot.events = events;
        slot.closed = false;
        if events != 0 {
            self.enqueue(handle);
        }
    }

    /// Notes that `handle` was closed: if it was armed, it is reported
    /// invalid at the next look.
    pub fn closed(&mut self, handle: i32) {
        let Some(slot) = usize::try_from(handle)
            .ok()
            .and_then(|index| self.slots.get_mut(index))
        else {
            return;
        };
        if slot.events != 0 {
            slot.closed = true;
            self.enqueue(handle);
        }
    }

    fn enqueue(&mut self, handle: i32) {
        if let Some(slot) = self.slots.get_mut(handle as usize) {
            if !slot.queued {
                slot.queued = true;
                self.queue.push(handle);
            }
        }
    }

    /// Looks at the queued handles until `max` reports are in `reports`:
    /// reports and disarms the ready ones, parks the others on their own
    /// wakers. `cx`'s waker is woken when a parked one wakes.
    fn look(
        &mut self,
        io: &IoCtx,
        reports: &mut SmallVec<[Report; 8]>,
        max: usize,
        cx: &Context<'_>,
    ) {
        {
            // The process waker goes in with the list taken, under one
            // lock: a handle woken after finds it and wakes the process.
            let mut state = self.woken.set_process(Some(cx.waker()));
            std::mem::swap(&mut state.handles, &mut self.spare);
        }
        let mut woken = std::mem::take(&mut self.spare);
        for handle in woken.drain(..) {
            self.enqueue(handle);
        }
        self.spare = woken;
        let mut looked = 0;
        for &handle in &self.queue {
            if reports.len() == max {
                break;
            }
            looked += 1;
            let slot = &mut self.slots[handle as usize];
            slot.queued = false;
            if slot.events == 0 {
                continue; // disarmed since it was queued
            }
            let revents = if slot.closed {
                INVALID
            } else {
                let waker = slot.waker.get_or_insert_with(|| {
                    Waker::from(Arc::new(HandleWaker {
                        handle,
                        woken: Arc::clone(&self.woken),
                    }))
                });
                readiness(
                    io.get(handle).ok(),
                    slot.events,
                    Some(&Context::from_waker(waker)),
                )
            };
            if revents != 0 {
                reports.push(Report {
                    handle,
                    events: slot.events,
                    revents,
                });
                slot.events = 0;
                slot.closed = false;
            }
        }
        self.queue.drain(..looked);
    }
}
