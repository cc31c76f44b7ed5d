//! A micro-process: one instance of an app's module with its own Store and
//! linear memory, running the guest's `_start` for one connection.
//!
//! [`run`] is the whole life of a process as a future for the kernel: build
//! the store, instantiate from the app's `InstancePre` (a pooled slot with a
//! copy-on-write memory image), call `_start` on a fiber, and say how it ended.

mod exit;
pub mod linker;
mod state;
mod stdio;

pub use exit::Exit;
pub use state::{HeapLimiter, ProcessState, MAX_TABLE_ELEMENTS};

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;

use crate::abi::io::IoCtx;
use crate::app::App;
use crate::conn::Connection;
use crate::kernel::{self, compute::ComputeTime};

/// A process id: unique for the life of the host, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pid(u64);

impl Pid {
    /// The next unused pid.
    pub fn next() -> Pid {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Pid(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The error a process is ended with when it computes past its CPU budget.
#[derive(Debug)]
pub struct CpuBudgetExceeded {
    /// The budget it had.
    pub budget: std::time::Duration,
}

impl fmt::Display for CpuBudgetExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "computed for {:?} without blocking (cpu budget)",
            self.budget
        )
    }
}

impl std::error::Error for CpuBudgetExceeded {}

/// Runs one process of `app` for `conn` to its end; logs how it ended when that
/// was not a normal exit, and returns it.
pub async fn run(app: Arc<App>, conn: Arc<Connection>, pid: Pid) -> Exit {
    let result = start(&app, conn, pid).await;
    let exit = Exit::from_result(result.0, &result.1);
    exit.log(&app.name, pid);
    exit
}

/// Instantiates and runs `_start`; returns the call's result and the heap
/// limiter, which knows whether a memory growth was refused.
async fn start(app: &App, conn: Arc<Connection>, pid: Pid) -> (wasmtime::Result<()>, HeapLimiter) {
    let engine = app.pre.module().engine();
    let mut store = Store::new(engine, new_state(app, conn, pid));
    store.limiter(|state| &mut state.heap);
    store.epoch_deadline_callback(on_epoch_deadline);
    store.set_epoch_deadline(1);
    let result = async {
        let instance = app.pre.instantiate_async(&mut store).await?;
        let main = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        main.call_async(&mut store, ()).await
    }
    .await;
    let heap = store.into_data().heap;
    (result, heap)
}

fn new_state(app: &App, conn: Arc<Connection>, pid: Pid) -> ProcessState {
    let peers = conn.peers();
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdin(stdio::ConnectionStdio(Arc::clone(&conn)))
        .stdout(stdio::ConnectionStdio(Arc::clone(&conn)))
        .stderr(stdio::GuestStderr {
            app: Arc::clone(&app.name),
            pid,
            terminal: app.terminal,
        })
        .arg(&*app.name)
        .args(&app.args);
    for (key, value) in &app.env {
        wasi.env(key, value);
    }
    if let Some(remote) = peers.remote {
        wasi.env("REMOTE_ADDR", remote.ip().to_string())
            .env("REMOTE_PORT", remote.port().to_string());
    }
    if let Some(local) = peers.local {
        wasi.env("SERVER_ADDR", local.ip().to_string())
            .env("SERVER_PORT", local.port().to_string());
    }
    ProcessState {
        pid,
        app: Arc::clone(&app.name),
        wasi: wasi.build_p1(),
        io: IoCtx::with_connection(conn),
        heap: HeapLimiter {
            max_memory: app.limits.max_memory as usize,
            refused: None,
        },
        cpu_budget: app.limits.cpu_budget,
    }
}

/// Called by wasmtime when the epoch passes the store's deadline: end a
/// runaway process, yield one that has had its slice, and let one that was
/// just woken (its deadline passed while it was blocked) go on.
fn on_epoch_deadline(
    store: wasmtime::StoreContextMut<'_, ProcessState>,
) -> wasmtime::Result<UpdateDeadline> {
    let Some(ComputeTime {
        slice,
        since_block,
        others_waiting,
    }) = kernel::compute::current()
    else {
        return Ok(UpdateDeadline::Yield(1));
    };
    let budget = store.data().cpu_budget;
    if since_block > budget {
        return Err(wasmtime::Error::new(CpuBudgetExceeded { budget }));
    }
    if slice >= kernel::TICK {
        return Ok(UpdateDeadline::Yield(1));
    }
    if others_waiting {
        // A woken process waits for this worker: yield once this process has
        // had its minimum turn, checking at every back-edge until then
        // (a deadline of +0 epochs is already reached).
        return Ok(if slice >= kernel::MIN_SLICE {
            UpdateDeadline::Yield(1)
        } else {
            UpdateDeadline::Continue(0)
        });
    }
    Ok(UpdateDeadline::Continue(1))
}
