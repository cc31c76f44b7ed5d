//! What the host's own definitions of WASI preview-1 calls share
//! ([`super::clock`], [`super::environ`]): they replace wasmtime-wasi's in
//! the linker, return its errno values, and write results to the guest as
//! it does, trapping on a pointer that is misaligned or leaves the
//! micro-heap.

use wasmtime::{Caller, Linker};

use super::ProcessState;
use crate::abi::guest_buffer;

/// The preview-1 module name.
pub const MODULE: &str = "wasi_snapshot_preview1";

/// WASI preview 1 errno values these calls return.
pub const ERRNO_SUCCESS: i32 = 0;
pub const ERRNO_BADF: i32 = 8;
pub const ERRNO_INTR: i32 = 27;
pub const ERRNO_INVAL: i32 = 28;
pub const ERRNO_IO: i32 = 29;
pub const ERRNO_NOMEM: i32 = 48;
pub const ERRNO_OVERFLOW: i32 = 61;
pub const ERRNO_PIPE: i32 = 64;
pub const ERRNO_RANGE: i32 = 68;

/// Replaces wasmtime-wasi's definitions in `linker` (which must already
/// hold WASI preview 1) with the ones `define` adds.
///
/// # Errors
/// When `define` fails (a name not defined before: a bug in this crate).
pub fn redefine(
    linker: &mut Linker<ProcessState>,
    define: impl FnOnce(&mut Linker<ProcessState>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    linker.allow_shadowing(true);
    let defined = define(linker);
    linker.allow_shadowing(false);
    defined
}

/// Writes `bytes` at the guest's `ptr`, which must be aligned to their
/// size and inside the micro-heap (else the call traps, as wasmtime-wasi's does).
pub fn write_aligned<const N: usize>(
    caller: &mut Caller<'_, ProcessState>,
    import: &str,
    ptr: i32,
    bytes: [u8; N],
) -> wasmtime::Result<()> {
    if !(ptr as u32).is_multiple_of(N as u32) {
        return Err(trap(import, ptr, &format!("is not {N}-byte aligned")));
    }
    let Ok(buffer) = guest_buffer(caller, import, ptr, N as i32) else {
        return Err(trap(import, ptr, "is outside the micro-heap"));
    };
    buffer.memory.data_mut(caller)[buffer.range].copy_from_slice(&bytes);
    Ok(())
}

/// The trap of `import` for a bad pointer `ptr`.
pub fn trap(import: &str, ptr: i32, what: &str) -> wasmtime::Error {
    wasmtime::format_err!("{import}: pointer {ptr:#x} {what}")
}
