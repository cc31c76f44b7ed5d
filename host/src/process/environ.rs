//! WASI's `environ_sizes_get` and `environ_get`, answered from the
//! process's own list.
//!
//! wasmtime-wasi keeps the environment as owned strings in its context (two
//! allocations a variable when the process starts, a CGI request's dozen
//! variables the most of its allocations) and copies the whole list again on
//! each of these calls. Here the list is the app's variables (shared by all
//! its processes) and then the process's own ([`ProcessState::env`]), whose
//! names and fixed values are `'static`. The results are wasmtime-wasi's:
//! `name=value\0` strings in order, a trap for a pointer outside the
//! micro-heap or not 4-byte aligned.

use wasmtime::{Caller, Linker};

use super::p1::{self, trap, ERRNO_OVERFLOW, ERRNO_SUCCESS};
use super::ProcessState;
use crate::abi::guest_buffer;

/// Replaces wasmtime-wasi's `environ_sizes_get` and `environ_get` in
/// `linker` (which must already hold WASI preview 1).
///
/// # Errors
/// When `linker` has no such functions to replace (a bug in this crate).
pub fn add_to_linker(linker: &mut Linker<ProcessState>) -> anyhow::Result<()> {
    p1::redefine(linker, |linker| {
        linker.func_wrap(p1::MODULE, "environ_sizes_get", environ_sizes_get)?;
        linker.func_wrap(p1::MODULE, "environ_get", environ_get)?;
        Ok(())
    })
}

/// Every variable of the process, in order: the app's, then its own.
fn variables(state: &ProcessState) -> impl Iterator<Item = (&str, &str)> {
    let app = state.app.settings.env.iter();
    let own = state.env.iter();
    app.map(|(name, value)| (name.as_str(), value.as_str()))
        .chain(own.map(|(name, value)| (&**name, &**value)))
}

/// How many variables, and the bytes of their `name=value\0` strings.
fn sizes(state: &ProcessState) -> (usize, usize) {
    variables(state).fold((0, 0), |(count, size), (name, value)| {
        (count + 1, size + name.len() + value.len() + 2)
    })
}

/// `environ_sizes_get(count_ptr, size_ptr) -> errno`: how many variables,
/// and the bytes `environ_get` writes for them.
fn environ_sizes_get(
    mut caller: Caller<'_, ProcessState>,
    count_ptr: i32,
    size_ptr: i32,
) -> wasmtime::Result<i32> {
    let (count, size) = sizes(caller.data());
    let (Ok(count), Ok(size)) = (u32::try_from(count), u32::try_from(size)) else {
        return Ok(ERRNO_OVERFLOW);
    };
    p1::write_aligned(
        &mut caller,
        "environ_sizes_get",
        count_ptr,
        count.to_le_bytes(),
    )?;
    p1::write_aligned(
        &mut caller,
        "environ_sizes_get",
        size_ptr,
        size.to_le_bytes(),
    )?;
    Ok(ERRNO_SUCCESS)
}

/// `environ_get(environ_ptr, buf_ptr) -> errno`: each variable's address
/// at `environ_ptr`, the `name=value\0` strings from `buf_ptr` on.
fn environ_get(
    mut caller: Caller<'_, ProcessState>,
    environ_ptr: i32,
    buf_ptr: i32,
) -> wasmtime::Result<i32> {
    let (count, size) = sizes(caller.data());
    if count == 0 {
        // Nothing to write, so nothing to check (as in wasmtime-wasi).
        return Ok(ERRNO_SUCCESS);
    }
    if !(environ_ptr as u32).is_multiple_of(4) {
        return Err(trap("environ_get", environ_ptr, "is not 4-byte aligned"));
    }
    let (Ok(list_len), Ok(size)) = (i32::try_from(count * 4), i32::try_from(size)) else {
        return Err(trap(
            "environ_get",
            environ_ptr,
            "cannot hold the environment",
        ));
    };
    let (Ok(list), Ok(buf)) = (
        guest_buffer(&mut caller, "environ_get", environ_ptr, list_len),
        guest_buffer(&mut caller, "environ_get", buf_ptr, size),
    ) else {
        return Err(trap("environ_get", environ_ptr, "leaves the micro-heap"));
    };
    let (memory, state) = list.memory.data_and_store_mut(&mut caller);
    let mut at = buf.range.start;
    for (index, (name, value)) in variables(state).enumerate() {
        let entry = list.range.start + index * 4;
        // `at` is inside the micro-heap (checked above), which is under 4 GiB.
        memory[entry..entry + 4].copy_from_slice(&(at as u32).to_le_bytes());
        for part in [name.as_bytes(), b"=", value.as_bytes(), b"\0"] {
            memory[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
    }
    Ok(ERRNO_SUCCESS)
}
