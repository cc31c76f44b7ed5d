//! Processes: `spawn` a new process of the same app, `wait` for it, `sleep`.

use std::future::poll_fn;
use std::time::{Duration, Instant};

use wasmtime::{Caller, Linker};

use super::handles::Handle;
use super::{guest_buffer, Errno, MODULE};
use crate::process::{self, ChildStatus, Exit, Pid, ProcessState, Start};

/// Most handles one `spawn` passes.
const MAX_PASSED_HANDLES: u32 = 1024;
/// What `wait` returns for a child that was killed.
pub const KILLED: i32 = 256;

/// Registers `spawn`, `wait` and `sleep`.
///
/// # Errors
/// When a name is already defined in `linker`.
pub fn add_to_linker(linker: &mut Linker<ProcessState>) -> anyhow::Result<()> {
    linker.func_wrap(MODULE, "spawn", spawn)?;
    linker.func_wrap_async(MODULE, "wait", |caller, (child,)| {
        Box::new(wait(caller, child))
    })?;
    linker.func_wrap_async(MODULE, "sleep", |caller, (ms,)| Box::new(sleep(caller, ms)))?;
    Ok(())
}

/// Starts a process of the same app with argv[1] = the UTF-8 text at
/// `arg_ptr`, moving the `count` handles listed at `handles` to it. The child
/// joins the caller's process tree (`max_children`) and takes one of the
/// app's process places (`max_processes`).
///
/// **Returns:** a child handle, `fault`, `inval`, `badf`, `limit` (handles
/// per process, children per process tree, processes per app).
/// **Traps:** never.
fn spawn(
    mut caller: Caller<'_, ProcessState>,
    arg_ptr: i32,
    arg_len: i32,
    handles: i32,
    count: i32,
) -> i32 {
    let result = (|| {
        let count = count as u32;
        if count > MAX_PASSED_HANDLES {
            return Err(Errno::Inval);
        }
        let arg = guest_buffer(&mut caller, "spawn", arg_ptr, arg_len)?;
        let list = guest_buffer(&mut caller, "spawn", handles, (count * 4) as i32)?;
        let memory = arg.memory.data(&caller);
        let arg = std::str::from_utf8(&memory[arg.range])
            .map_err(|_| Errno::Inval)?
            .to_owned();
        let numbers: Vec<i32> = memory[list.range]
            .chunks_exact(4)
            .map(|bytes| i32::from_le_bytes(bytes.try_into().unwrap()))
            .collect();
        let state = caller.data_mut();
        for (i, &number) in numbers.iter().enumerate() {
            state.io.get(number)?;
            if numbers[..i].contains(&number) {
                return Err(Errno::Inval);
            }
        }
        // The passed handles leave the table before the child handle enters it.
        if state.io.open_count() - numbers.len() + 1 > state.io.max_handles() {
            return Err(Errno::Limit);
        }
        let Some(tree) = state.tree.spawn() else {
            tracing::debug!(app = %state.app.name, pid = %state.pid, "spawn: the process tree has its most children (max-children)");
            return Err(Errno::Limit);
        };
        if !state.app.processes.try_acquire() {
            tracing::debug!(app = %state.app.name, pid = %state.pid, "spawn: the app is at its process limit");
            return Err(Errno::Limit);
        }
        let passed: Vec<Handle> = numbers
            .iter()
            .map(|&number| state.io.take(number).expect("checked above"))
            .collect();
        let status = ChildStatus::new();
        let child = state.io.insert(Handle::Child(status.clone()))?;
        let start = Start {
            handles: passed,
            args: vec![arg],
            status: Some(status),
            tree: Some(tree),
            ..Start::default()
        };
        let future = process::run(state.app.clone(), state.runtime.clone(), start, Pid::next());
        state.runtime.kernel.spawn(future);
        Ok(child)
    })();
    result.unwrap_or_else(Errno::code)
}

/// Blocks until the child behind `child` ends, then closes the handle.
///
/// **Returns:** the exit status (0..=255), [`KILLED`], or `badf`.
/// **Traps:** never.
async fn wait(mut caller: Caller<'_, ProcessState>, child: i32) -> wasmtime::Result<i32> {
    let status = match caller.data().io.get(child) {
        Ok(Handle::Child(status)) => status.clone(),
        _ => return Ok(Errno::Badf.code()),
    };
    let exit = poll_fn(|cx| status.poll_exit(cx)).await;
    let _ = caller.data_mut().io.take(child);
    Ok(match exit {
        Exit::Exited(code) if (0..=255).contains(&code) => code,
        Exit::Exited(_) => 255,
        Exit::Failed(_) => KILLED,
    })
}

/// Suspends the process for `ms` milliseconds.
///
/// **Returns:** 0.
/// **Traps:** never.
async fn sleep(caller: Caller<'_, ProcessState>, ms: i32) -> wasmtime::Result<i32> {
    let deadline = Instant::now() + Duration::from_millis(u64::from(ms as u32));
    caller.data().runtime.kernel.sleep_until(deadline).await;
    Ok(0)
}
