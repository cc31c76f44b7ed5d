//! How a process ended, in one log line a person can act on.

use wasmtime::{Trap, WasmBacktrace};
use wasmtime_wasi::I32Exit;

use super::limits::{CpuBudgetExceeded, CpuLimitExceeded, WallLimitExceeded};
use super::{HeapLimiter, Pid};
use crate::app::App;
use crate::config::format_size;

/// The end of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// `_start` returned or the guest called `proc_exit`; the status.
    Exited(i32),
    /// The guest was killed.
    Failed(Failure),
}

/// Why a process was killed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The cause, backtrace included, on one line.
    pub cause: String,
    /// The limit that ended it, if one did.
    pub limit: Option<Limit>,
}

impl Failure {
    /// Whether a time limit ended it (HTTP apps answer 504 then, not 502).
    pub fn over_time(&self) -> bool {
        matches!(
            self.limit,
            Some(Limit::CpuBudget | Limit::MaxCpu | Limit::MaxWall)
        )
    }
}

/// A limit that ends a process, as the log names it (its flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Computed too long without blocking (`--cpu-budget`).
    CpuBudget,
    /// Used too much CPU time in all (`--max-cpu`).
    MaxCpu,
    /// Lived too long (`--max-wall`).
    MaxWall,
}

impl Limit {
    /// The flag's name, e.g. `max-cpu`: the log's `limit` field.
    pub fn name(self) -> &'static str {
        match self {
            Limit::CpuBudget => "cpu-budget",
            Limit::MaxCpu => "max-cpu",
            Limit::MaxWall => "max-wall",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.cause)
    }
}

impl Exit {
    /// How a process whose guest call returned `result` ended; `heap` tells
    /// whether the micro-heap cap refused a growth (the usual cause of the
    /// trap that follows).
    pub fn from_result(result: wasmtime::Result<()>, heap: &HeapLimiter) -> Exit {
        let err = match result {
            Ok(()) => return Exit::Exited(0),
            Err(err) => err,
        };
        if let Some(exit) = err.downcast_ref::<I32Exit>() {
            return Exit::Exited(exit.0);
        }
        let (mut cause, limit) = if let Some(budget) = err.downcast_ref::<CpuBudgetExceeded>() {
            (budget.to_string(), Some(Limit::CpuBudget))
        } else if let Some(cpu) = err.downcast_ref::<CpuLimitExceeded>() {
            (cpu.to_string(), Some(Limit::MaxCpu))
        } else if let Some(wall) = err.downcast_ref::<WallLimitExceeded>() {
            (wall.to_string(), Some(Limit::MaxWall))
        } else if let Some(trap) = err.downcast_ref::<Trap>() {
            (format!("trap: {trap}"), None)
        } else {
            (one_line(&format!("{err:#}")), None)
        };
        if let HeapLimiter {
            refused: Some(asked),
            refused_by_app: true,
            max_app_memory: Some(cap),
            ..
        } = heap
        {
            cause.push_str(&format!(
                " (the app's micro-heap total, max-app-memory {}, was reached: the guest asked for {})",
                format_size(*cap),
                format_size(*asked as u64)
            ));
        } else if let HeapLimiter {
            max_memory,
            refused: Some(asked),
            ..
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
        Exit::Failed(Failure { cause, limit })
    }

    /// Logs a failure at warn, once (within the app's log limit: a guest
    /// can fail on purpose; with a `limit` field naming the limit that ended
    /// it, if one did); a normal exit at debug.
    pub fn log(&self, app: &App, pid: Pid) {
        let name: &str = &app.name;
        match self {
            Exit::Exited(status) => tracing::debug!(app = name, %pid, status, "process exited"),
            Exit::Failed(_) if !app.log_limit.admit(name) => {}
            Exit::Failed(Failure {
                cause,
                limit: Some(limit),
            }) => {
                tracing::warn!(app = name, %pid, limit = limit.name(), "process killed: {cause}")
            }
            Exit::Failed(failure) => tracing::warn!(app = name, %pid, "process killed: {failure}"),
        }
    }
}

/// The frames of `backtrace`, innermost first, as `a <- b <- c`, with runs of
/// one function (deep recursion) folded into `f ×N`.
fn backtrace_line(backtrace: &WasmBacktrace) -> String {
    // The Display form carries demangled names (`FrameInfo::func_name` is raw);
    // each frame line reads `  N: 0xOFFSET - module.wasm!function`.
    let text = backtrace.to_string();
    let mut frames: Vec<(String, usize)> = Vec::new();
    for line in text.lines() {
        let Some((_, name)) = line.split_once(" - ") else {
            continue;
        };
        let name = tidy_frame(name.trim());
        match frames.last_mut() {
            Some((last, count)) if *last == name => *count += 1,
            _ => frames.push((name, 1)),
        }
    }
    if frames.is_empty() {
        return one_line(&text);
    }
    let frames: Vec<String> = frames
        .into_iter()
        .map(|(name, count)| match count {
            1 => name,
            n => format!("{name} ×{n}"),
        })
        .collect();
    frames.join(" <- ")
}

/// `module-1a2b.wasm!krate::f::h0123456789abcdef` → `krate::f`: the module is
/// the app's (already in the log line) and the hash helps nobody reading it.
fn tidy_frame(frame: &str) -> String {
    let name = frame.split_once('!').map_or(frame, |(_, name)| name);
    let name = match name.rsplit_once("::h") {
        Some((path, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            path
        }
        _ => name,
    };
    name.to_string()
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::tidy_frame;

    #[test]
    fn frames_lose_module_and_hash() {
        assert_eq!(
            tidy_frame("trap-dcb656c7422c1264.wasm!trap::fail_on_purpose::h3c2d09de72a79a96"),
            "trap::fail_on_purpose"
        );
        assert_eq!(tidy_frame("echo.wasm!_start"), "_start");
        assert_eq!(tidy_frame("f::hello"), "f::hello");
    }
}
