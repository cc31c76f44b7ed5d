//! The `mnvkd` host imports (layer 1), one module per capability group.
//!
//! `wit/mnvkd.wit` is the contract; a test keeps [`add_all`] and it equal.
//! This module holds what every group shares: the error codes and the one rule
//! for guest buffers (a buffer outside the micro-heap gets [`Errno::Fault`],
//! never a trap and never a host read outside the guest's memory).

pub mod handles;
pub mod io;
pub mod net;
pub mod poll;
pub mod proc;
pub mod watch;

use std::ops::Range;

use wasmtime::{Caller, Extern, Linker, Memory};

use crate::process::ProcessState;

/// The import module name of every layer-1 function.
pub const MODULE: &str = "mnvkd";

/// Most bytes one `read` or `write` moves (1 GiB): a count an import
/// returns must never reach 2^31, where it would read as a negative error
/// code (a 2 GiB micro-heap could otherwise be moved whole).
pub const MAX_TRANSFER: usize = 1 << 30;

/// Registers every layer-1 group with `linker`, in a fixed order.
///
/// # Errors
/// When a name is registered twice (a bug in this crate).
pub fn add_all(linker: &mut Linker<ProcessState>) -> anyhow::Result<()> {
    io::add_to_linker(linker)?;
    proc::add_to_linker(linker)?;
    poll::add_to_linker(linker)?;
    net::add_to_linker(linker)?;
    watch::add_to_linker(linker)?;
    Ok(())
}

/// A guest-visible error: the negative result of a layer-1 import. The values
/// are the `@errno` table of `wit/mnvkd.wit` and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Errno {
    /// The handle is not open in this process.
    Badf = -1,
    /// A buffer lies (partly) outside the micro-heap.
    Fault = -2,
    /// An argument is malformed.
    Inval = -3,
    /// The other end is gone.
    Pipe = -4,
    /// Any other I/O failure.
    Io = -5,
    /// A per-process or per-app limit was reached.
    Limit = -6,
    /// The app was not granted this capability.
    Denied = -7,
    /// The operation did not complete in time.
    Timedout = -8,
    /// The operation would have to wait (the non-blocking imports only).
    Again = -9,
}

impl Errno {
    /// Every code, for the `wit/` consistency test.
    pub const ALL: [Errno; 9] = [
        Errno::Badf,
        Errno::Fault,
        Errno::Inval,
        Errno::Pipe,
        Errno::Io,
        Errno::Limit,
        Errno::Denied,
        Errno::Timedout,
        Errno::Again,
    ];

    /// The code as the guest sees it.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The name used in `wit/mnvkd.wit`.
    pub fn name(self) -> &'static str {
        match self {
            Errno::Badf => "badf",
            Errno::Fault => "fault",
            Errno::Inval => "inval",
            Errno::Pipe => "pipe",
            Errno::Io => "io",
            Errno::Limit => "limit",
            Errno::Denied => "denied",
            Errno::Timedout => "timedout",
            Errno::Again => "again",
        }
    }
}

impl From<std::io::Error> for Errno {
    fn from(err: std::io::Error) -> Errno {
        use std::io::ErrorKind::*;
        match err.kind() {
            BrokenPipe | ConnectionReset | ConnectionAborted | NotConnected | WriteZero => {
                Errno::Pipe
            }
            TimedOut => Errno::Timedout,
            WouldBlock => Errno::Again,
            QuotaExceeded => Errno::Limit,
            _ => Errno::Io,
        }
    }
}

/// A guest buffer that passed the bounds check.
#[derive(Debug, Clone)]
pub struct GuestBuffer {
    /// The micro-heap the buffer is in.
    pub memory: Memory,
    /// Byte range inside it; `end <= memory.data_size()` held when checked.
    pub range: Range<usize>,
}

fn transfer_range(range: Range<usize>) -> Range<usize> {
    range.start..range.end.min(range.start.saturating_add(MAX_TRANSFER))
}

/// The byte range of `len` bytes at `ptr` (both read as u32, as the guest
/// passes them) if it lies wholly inside a memory of `size` bytes.
pub(crate) fn checked_range(ptr: usize, len: usize, size: usize) -> Option<Range<usize>> {
    let end = ptr.checked_add(len)?;
    (end <= size).then_some(ptr..end)
}

/// Checks that `len` bytes at `ptr` lie inside the caller's exported `memory`.
///
/// `import` names the calling import for the debug log of a fault.
pub fn guest_buffer(
    caller: &mut Caller<'_, ProcessState>,
    import: &str,
    ptr: i32,
    len: i32,
) -> Result<GuestBuffer, Errno> {
    let memory = memory(caller, import)?;
    let size = memory.data_size(&*caller);
    let range = checked(caller.data(), import, ptr, len, size)?;
    Ok(GuestBuffer { memory, range })
}

/// The first [`MAX_TRANSFER`] of the `len` bytes at `ptr` in the caller's
/// micro-heap (what one `read` or `write` moves), beside the process
/// state: the transfer imports run on every message, and this looks the
/// memory up once where [`guest_buffer`] and then reaching the bytes would
/// twice.
///
/// # Errors
/// `fault`, as [`guest_buffer`].
#[inline]
pub fn transfer_bytes<'a>(
    caller: &'a mut Caller<'_, ProcessState>,
    import: &str,
    ptr: i32,
    len: i32,
) -> Result<(&'a mut [u8], &'a mut ProcessState), Errno> {
    let memory = memory(caller, import)?;
    let (heap, state) = memory.data_and_store_mut(caller);
    let range = checked(state, import, ptr, len, heap.len())?;
    Ok((&mut heap[transfer_range(range)], state))
}

/// The caller's exported `memory`; `fault` when it has none.
#[inline]
fn memory(caller: &mut Caller<'_, ProcessState>, import: &str) -> Result<Memory, Errno> {
    match caller.data().memory {
        Some(memory) => Ok(memory),
        None => find_memory(caller, import),
    }
}

/// [`memory`]'s first call in a process: looked up by name once, as a name
/// lookup per import call is measurable.
#[cold]
fn find_memory(caller: &mut Caller<'_, ProcessState>, import: &str) -> Result<Memory, Errno> {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        tracing::debug!(pid = %caller.data().pid, import, "the guest exports no `memory`");
        return Err(Errno::Fault);
    };
    caller.data_mut().memory = Some(memory);
    Ok(memory)
}

/// The range of `len` bytes at `ptr` (both read as u32, as the guest
/// passes them) in a micro-heap of `size` bytes; `fault`, logged at debug
/// for `state`'s process, when it does not lie wholly inside.
#[inline]
fn checked(
    state: &ProcessState,
    import: &str,
    ptr: i32,
    len: i32,
    size: usize,
) -> Result<Range<usize>, Errno> {
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    checked_range(ptr, len, size).ok_or_else(|| fault(state, import, ptr, len, size))
}

/// Logs a guest buffer outside the micro-heap; returns `fault`.
#[cold]
fn fault(state: &ProcessState, import: &str, ptr: usize, len: usize, size: usize) -> Errno {
    tracing::debug!(
        pid = %state.pid,
        import,
        "{import}: buffer {ptr:#x}+{len} is outside the micro-heap ({size} bytes)"
    );
    Errno::Fault
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_transfer_is_capped_below_two_gib() {
        assert_eq!(transfer_range(0..1 << 31), 0..MAX_TRANSFER);
        assert_eq!(transfer_range(5..10), 5..10);
        let whole = 0..MAX_TRANSFER;
        assert_eq!(transfer_range(whole.clone()), whole);
        // Every count a transfer can return is a non-negative i32.
        assert!(i32::try_from(MAX_TRANSFER).is_ok());
    }

    proptest::proptest! {
        /// Any (ptr, len) a guest passes, against a real micro-heap of any
        /// size: a range is given only when it lies inside the memory (and
        /// slicing the memory with it cannot panic); `fault` otherwise.
        #[test]
        fn a_guest_range_never_leaves_the_micro_heap(
            pages in 0u32..=24,
            near_end in proptest::bool::ANY,
            back in 0u32..70_000,
            delta in 0u32..5,
            ptr in proptest::num::i32::ANY,
            len in proptest::num::i32::ANY,
        ) {
            let engine = wasmtime::Engine::default();
            let mut store = wasmtime::Store::new(&engine, ());
            let memory = Memory::new(&mut store, wasmtime::MemoryType::new(pages, None)).unwrap();
            let size = memory.data_size(&store);
            // Half the cases aim at the edge, where off-by-ones live.
            let (ptr, len) = if near_end {
                let ptr = (size as u32).wrapping_sub(back);
                (ptr as i32, (back + delta).wrapping_sub(2) as i32)
            } else {
                (ptr, len)
            };
            let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
            match checked_range(ptr, len, size) {
                Some(range) => {
                    proptest::prop_assert!(range.end <= size);
                    proptest::prop_assert_eq!(range.clone(), ptr..ptr + len);
                    proptest::prop_assert_eq!(memory.data(&store)[range.clone()].len(), len);
                    proptest::prop_assert!(transfer_range(range).end <= size);
                }
                None => proptest::prop_assert!(ptr as u64 + len as u64 > size as u64),
            }
        }
    }

    #[test]
    fn a_full_host_memory_account_reads_as_limit() {
        let err = std::io::Error::from(std::io::ErrorKind::QuotaExceeded);
        assert_eq!(Errno::from(err), Errno::Limit);
    }
}
