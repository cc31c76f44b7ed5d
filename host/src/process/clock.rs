//! WASI's `clock_time_get`, answered as a plain host call.
//!
//! wasmtime-wasi defines every preview-1 call as an async host function: each
//! call boxes a future, enters the fiber's blocking context and opens a
//! tracing span, some 600 instructions before the clock is read. A guest
//! that stamps each response (the SDK's `Date` header) reads the clock once
//! per request, so this one call is defined again here, synchronously, with
//! the same results: nanoseconds of the realtime or monotonic clock, `badf`
//! for the CPU-time clocks, `inval` for an unknown clock, a trap for a
//! result pointer outside the micro-heap or not 8-byte aligned.
//!
//! The monotonic clock is [`HostMonotonic`] for both this call and the rest
//! of wasmtime-wasi (`poll_oneoff` deadlines): time since the host started,
//! so no process reads the clock to set up its own.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Linker};
use wasmtime_wasi::HostMonotonicClock;

use super::p1::{self, ERRNO_BADF, ERRNO_INVAL, ERRNO_OVERFLOW, ERRNO_SUCCESS};
use super::ProcessState;

/// Clock ids of WASI preview 1.
const REALTIME: i32 = 0;
const MONOTONIC: i32 = 1;
const PROCESS_CPUTIME: i32 = 2;
const THREAD_CPUTIME: i32 = 3;

/// Replaces wasmtime-wasi's `clock_time_get` in `linker` (which must
/// already hold WASI preview 1).
///
/// # Errors
/// When `linker` has no `clock_time_get` to replace (a bug in this crate).
pub fn add_to_linker(linker: &mut Linker<ProcessState>) -> anyhow::Result<()> {
    p1::redefine(linker, |linker| {
        linker.func_wrap(p1::MODULE, "clock_time_get", clock_time_get)?;
        Ok(())
    })
}

/// `clock_time_get(id, precision, result_ptr) -> errno`.
fn clock_time_get(
    mut caller: Caller<'_, ProcessState>,
    id: i32,
    _precision: i64,
    result: i32,
) -> wasmtime::Result<i32> {
    let now = match id {
        REALTIME => match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(since) => match u64::try_from(since.as_nanos()) {
                Ok(nanos) => nanos,
                Err(_) => return Ok(ERRNO_OVERFLOW),
            },
            // Before 1970: wasmtime-wasi cannot say it in an unsigned timestamp either.
            Err(_) => return Ok(ERRNO_OVERFLOW),
        },
        MONOTONIC => HostMonotonic.now(),
        PROCESS_CPUTIME | THREAD_CPUTIME => return Ok(ERRNO_BADF),
        _ => return Ok(ERRNO_INVAL),
    };
    p1::write_aligned(&mut caller, "clock_time_get", result, now.to_le_bytes())?;
    Ok(ERRNO_SUCCESS)
}

/// The monotonic clock every process sees: nanoseconds since the host
/// started (wasmtime-wasi's own starts at each context's creation, one
/// clock read per spawn). It tells a guest no more than how long the host
/// has run.
#[derive(Debug, Clone, Copy)]
pub struct HostMonotonic;

impl HostMonotonic {
    fn epoch() -> Instant {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        *EPOCH.get_or_init(Instant::now)
    }
}

impl HostMonotonicClock for HostMonotonic {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        u64::try_from(Self::epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}
