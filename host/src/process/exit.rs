//! How a process ended, in one log line a person can act on.

use wasmtime::{Trap, WasmBacktrace};
use wasmtime_wasi::I32Exit;

use super::{CpuBudgetExceeded, HeapLimiter, Pid};
use crate::config::format_size;

/// The end of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// `_start` returned or the guest called `proc_exit`; the status.
    Exited(i32),
    /// The guest failed; the cause, backtrace included, on one line.
    Failed(String),
}

impl Exit {
    pub(super) fn from_result(result: wasmtime::Result<()>, heap: &HeapLimiter) -> Exit {
        let err = match result {
            Ok(()) => return Exit::Exited(0),
            Err(err) => err,
        };
        if let Some(exit) = err.downcast_ref::<I32Exit>() {
            return Exit::Exited(exit.0);
        }
        let mut cause = if let Some(budget) = err.downcast_ref::<CpuBudgetExceeded>() {
            budget.to_string()
        } else if let Some(trap) = err.downcast_ref::<Trap>() {
            format!("trap: {trap}")
        } else {
            one_line(&format!("{err:#}"))
        };
        if let HeapLimiter {
            max_memory,
            refused: Some(asked),
        } = heap
        {
            cause.push_str(&format!(
                " (the micro-heap limit of {} was reached: the guest asked for {})",
                format_size(*max_memory as u64),
                format_size(*asked as u64)
            ));
        }
        if let Some(backtrace) = err.downcast_ref::<WasmBacktrace>() {
            cause.push_str("; backtrace: ");
            cause.push_str(&backtrace_line(backtrace));
        }
        Exit::Failed(cause)
    }

    /// Logs a failure at warn, once; a normal exit at debug.
    pub fn log(&self, app: &str, pid: Pid) {
        match self {
            Exit::Exited(status) => tracing::debug!(app, %pid, status, "process exited"),
            Exit::Failed(cause) => tracing::warn!(app, %pid, "process killed: {cause}"),
        }
    }
}

/// The frames of `backtrace`, innermost first, as `a <- b <- c`.
fn backtrace_line(backtrace: &WasmBacktrace) -> String {
    // The Display form carries demangled names (`FrameInfo::func_name` is raw);
    // each frame line reads `  N: 0xOFFSET - module!function`.
    let text = backtrace.to_string();
    let frames: Vec<&str> = text
        .lines()
        .filter_map(|line| line.split_once(" - ").map(|(_, name)| name.trim()))
        .collect();
    if frames.is_empty() {
        one_line(&text)
    } else {
        frames.join(" <- ")
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
