//! The linker every app's module is linked against, built once per engine.

use wasmtime::{Engine, Linker};

use super::ProcessState;
use crate::abi;

/// WASI preview 1 (layer 0; `clock_time_get` from [`super::clock`], the
/// environment from [`super::environ`], stdio's `fd_read` and `fd_write`
/// from [`super::fd_io`] until the process has a WASI context)
/// plus every `mnvkd` group (layer 1).
///
/// # Errors
/// When two groups define the same name (a bug in this crate).
pub fn new(engine: &Engine) -> anyhow::Result<Linker<ProcessState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, ProcessState::wasi)?;
    super::clock::add_to_linker(&mut linker)?;
    super::environ::add_to_linker(&mut linker)?;
    super::fd_io::add_to_linker(&mut linker)?;
    abi::add_all(&mut linker)?;
    Ok(linker)
}
