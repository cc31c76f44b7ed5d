//! A micro-process: one instance of an app's module with its own Store and
//! linear memory, running the guest's `_start` for one connection.
//!
//! [`run`] is the whole life of a process as a future for the kernel: build
//! the store, instantiate from the app's `InstancePre` (a pooled slot with a
//! copy-on-write memory image), call `_start` on a fiber, and say how it ended.

mod child;
mod clock;
mod environ;
mod exit;
mod fd_io;
mod limits;
pub mod linker;
mod p1;
mod state;
mod stdio;
pub mod table;
mod tree;
mod wasi;

pub use child::ChildStatus;
pub use exit::{Exit, Failure, Limit};
pub use limits::{
    cpu_time, CpuBudgetExceeded, CpuLimitExceeded, Limited, WallLimit, WallLimitExceeded,
};
pub use state::{AppHeap, HeapLimiter, ProcessState, MAX_TABLE_ELEMENTS};
pub use stdio::{Stdio, StdioLink, Unused};
pub use tree::TreeMember;
pub use wasi::{LazyWasi, WasiStdio};

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;

use crate::abi::handles::{Handle, IoCtx};
use crate::app::{App, Guest, Mode};
use crate::conn::Connection;
use crate::host_memory::HostMemory;
use crate::kernel::{self, compute::ComputeTime, Kernel};
use crate::reactor::Reactor;
use crate::text;

/// A boxed future the kernel can run.
pub type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A process id: unique for the life of the host, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pid(u64);

impl Pid {
    /// The next unused pid.
    pub fn next() -> Pid {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Pid(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What the kernel and the reactor give every process: cloned into its state.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// Where processes run (and `spawn` sends children).
    pub kernel: Kernel,
    /// Where sockets are registered (`connect`).
    pub reactor: Arc<Reactor>,
}

/// How a process starts: its handles, its arguments, and who waits for it.
#[derive(Debug, Default)]
pub struct Start {
    /// Handles 0..n of the new process. When handle 0 is a connection, it is
    /// also the process's WASI stdin and stdout.
    pub handles: Vec<Handle>,
    /// argv after the app name.
    pub args: Vec<String>,
    /// The parent's view of this process's end, for a spawned child.
    pub status: Option<Arc<ChildStatus>>,
    /// Stdin and stdout chosen by the starter; otherwise the connection in
    /// handle 0, if any.
    pub stdio: Option<Stdio>,
    /// Environment variables on top of the app's.
    pub env: Vec<(EnvText, EnvText)>,
    /// Its place in its parent's process tree, for a spawned child; `None`
    /// makes the process the root of a new tree.
    pub tree: Option<TreeMember>,
    /// The client it serves, for `/processes`, when handle 0 is not its
    /// connection (a CGI request's process).
    pub peer: Option<SocketAddr>,
}

impl Start {
    /// A process for one accepted connection.
    pub fn connection(conn: Connection) -> Start {
        Start {
            handles: vec![Handle::Connection(Arc::new(conn))],
            ..Start::default()
        }
    }
}

/// Runs one process of `app` to its end: logs how it ended when that was not
/// a normal exit, tells a waiting parent, and gives back the app's process slot
/// (which the caller took from `App::processes`).
pub async fn run(app: Arc<App>, runtime: Runtime, start: Start, pid: Pid) -> Exit {
    let module = match &app.guest {
        Guest::Module(guest) => guest.clone(),
        // A wasi:cli/command component: the same life, its own store type.
        // Boxed: inline, its state would double the size of every core
        // module's process future (1.7 -> 3.9 KiB per live process).
        Guest::Component(_) => {
            return Box::pin(crate::component::command::run(app, runtime, start, pid)).await
        }
    };
    let started = Instant::now();
    app.metrics.started.fetch_add(1, Ordering::Relaxed);
    let listed = table::Listed::enter(pid, Arc::clone(&app.name), peer(&start), started);
    // Gives the slot back and tells the parent even if this future is dropped
    // half-way (a host panic caught by the worker).
    let mut ending = Ending {
        app: Arc::clone(&app),
        status: start.status.clone(),
    };
    // The CPU-budget clock starts over: the task may have run another
    // process before this one (an HTTP connection runs one per request).
    kernel::compute::note_io();
    let limits = &app.settings.limits;
    let wall = limits
        .max_wall
        .map(|limit| WallLimit::start(limit, &runtime.kernel));
    let info = Arc::clone(listed.info());
    let mut store = store_with_info(&app, runtime, start, pid, Arc::clone(&info));
    let cpu_start = store.data().cpu_start;
    let result = {
        // Dropped at the end of this block, even half-way (a limit ended it),
        // so the store is free again.
        let life = std::pin::pin!(async {
            // Boxed: inline, instantiation's future (about 1 KiB) would be
            // part of this one for the whole life of the process.
            let instance = Box::pin(module.pre.instantiate_async(&mut store)).await?;
            if let Some(export) = &module.memory {
                if let Some(wasmtime::Extern::Memory(memory)) =
                    instance.get_module_export(&mut store, export)
                {
                    store.data_mut().memory = Some(memory);
                }
            }
            let main = instance
                .get_module_export(&mut store, &module.start)
                .and_then(wasmtime::Extern::into_func)
                .ok_or_else(|| wasmtime::Error::msg("the module's `_start` is gone"))?
                .typed::<(), ()>(&store)?;
            app.metrics.count_spawn(started.elapsed());
            main.call_async(&mut store, ()).await
        });
        Limited::new(life, cpu_start, limits.max_cpu, wall, info).await
    };
    let heap = store.into_data().heap;
    let exit = Exit::from_result(result, &heap);
    exit.log(&app, pid);
    app.metrics.count_exit(&exit, heap.refused.is_some());
    if let Some(status) = ending.status.take() {
        status.set(exit.clone());
    }
    exit
}

/// The client a process serves, for `/processes`: the peer of its
/// connection, or the one its starter named.
fn peer(start: &Start) -> Option<SocketAddr> {
    match start.handles.first() {
        Some(Handle::Connection(conn)) => conn.peers().remote,
        _ => start.peer,
    }
}

/// The end of a process, run when `run` finishes or is dropped.
struct Ending {
    app: Arc<App>,
    /// The parent's view, until told.
    status: Option<Arc<ChildStatus>>,
}

impl Drop for Ending {
    fn drop(&mut self) {
        if let Some(status) = self.status.take() {
            status.set(Exit::Failed(Failure {
                cause: "the host ended the process".to_owned(),
                limit: None,
            }));
        }
        self.app.processes.release();
    }
}

/// A store for a new process of `app`, with its limits and epoch callback set.
/// It is not entered in the process [`table`] (`run` does that).
pub fn new_store(app: &Arc<App>, runtime: Runtime, start: Start, pid: Pid) -> Store<ProcessState> {
    let info = Arc::new(table::ProcessInfo::new(
        pid,
        Arc::clone(&app.name),
        None,
        Instant::now(),
    ));
    store_with_info(app, runtime, start, pid, info)
}

/// [`new_store`] for the process whose entry in the process table is
/// `info`: the store keeps it told of the micro-heap's size.
fn store_with_info(
    app: &Arc<App>,
    runtime: Runtime,
    start: Start,
    pid: Pid,
    info: Arc<table::ProcessInfo>,
) -> Store<ProcessState> {
    let engine = app.engine();
    let mut store = Store::new(engine, new_state(app, runtime, start, pid, info));
    store.limiter(|state| &mut state.heap);
    store.epoch_deadline_callback(on_epoch_deadline);
    store.set_epoch_deadline(1);
    store
}

fn new_state(
    app: &Arc<App>,
    runtime: Runtime,
    start: Start,
    pid: Pid,
    info: Arc<table::ProcessInfo>,
) -> ProcessState {
    let limits = &app.settings.limits;
    let host_memory = HostMemory::new(limits.host_memory());
    // The bytes in the pipes this process now reads are its to hold.
    for handle in &start.handles {
        if let Handle::PipeRead(pipe) = handle {
            pipe.charge_to(&host_memory);
        }
    }
    let tree = start.tree.unwrap_or_else(|| match app.settings.mode {
        Mode::Listener => TreeMember::listener_root(limits.max_children),
        Mode::Connection | Mode::Http => TreeMember::root(limits.max_children),
    });
    // WASI's environment is served by `environ.rs`, not by wasmtime-wasi.
    let mut env = start.env;
    env.extend(peer_env(start.handles.first()));
    let (stdio, stdio_link) =
        wasi_stdio(app, start.stdio, start.handles.first(), pid, &host_memory);
    ProcessState {
        pid,
        app: Arc::clone(app),
        runtime,
        wasi: LazyWasi::new(stdio, start.args),
        env,
        io: IoCtx::new(start.handles, limits.max_handles, stdio_link),
        heap: HeapLimiter::new(
            limits.max_memory as usize,
            limits.max_app_memory,
            Arc::clone(&app.heap),
            info,
        ),
        memory: None,
        host_memory,
        tree,
        cpu_start: kernel::compute::polled_before().unwrap_or_default(),
    }
}

/// The WASI context of a new process of `app` (a component's WASI 0.2):
/// stdin and stdout are `stdio` if the starter chose them, else the
/// connection in handle 0 (`first`), else nothing in and the log out;
/// stderr goes to the log. Arguments are the app's name and its own. The
/// caller adds the process's own arguments and its environment
/// ([`add_environment`]).
pub fn wasi_builder(
    app: &Arc<App>,
    stdio: Option<Stdio>,
    first: Option<&Handle>,
    pid: Pid,
    host_memory: &Arc<HostMemory>,
) -> (WasiCtxBuilder, Option<Arc<StdioLink>>) {
    let (stdio, link) = wasi_stdio(app, stdio, first, pid, host_memory);
    (wasi::builder(app, stdio, pid), link)
}

/// Where the WASI stdin and stdout of a new process of `app` go (see
/// [`wasi_builder`]), and the link to its connection if they are that.
fn wasi_stdio(
    app: &Arc<App>,
    stdio: Option<Stdio>,
    first: Option<&Handle>,
    pid: Pid,
    host_memory: &Arc<HostMemory>,
) -> (WasiStdio, Option<Arc<StdioLink>>) {
    match (stdio, first) {
        (Some(stdio), _) => (WasiStdio::Chosen(stdio), None),
        (None, Some(Handle::Connection(conn))) => {
            let log = wasi::log(app, pid, "stdout");
            let link = StdioLink::new(Arc::clone(conn), log, Arc::clone(host_memory));
            (WasiStdio::Connection(Arc::clone(&link)), Some(link))
        }
        _ => (WasiStdio::Log, None),
    }
}

/// The variables naming the peers of the connection in handle 0 (`first`),
/// if it is one: `REMOTE_ADDR`, `REMOTE_PORT`, `SERVER_ADDR`, `SERVER_PORT`.
fn peer_env(first: Option<&Handle>) -> Vec<(EnvText, EnvText)> {
    let mut env = Vec::new();
    if let Some(Handle::Connection(conn)) = first {
        let peers = conn.peers();
        if let Some(remote) = peers.remote {
            env.extend(address_env(["REMOTE_ADDR", "REMOTE_PORT"], remote));
        }
        if let Some(local) = peers.local {
            env.extend(address_env(["SERVER_ADDR", "SERVER_PORT"], local));
        }
    }
    env
}

/// The variables `names` (an address's, then a port's) set to `addr`'s IP
/// address and port.
pub fn address_env(names: [&'static str; 2], addr: SocketAddr) -> [(EnvText, EnvText); 2] {
    [
        (names[0].into(), text::ip(addr.ip()).into()),
        (names[1].into(), text::decimal(addr.port().into()).into()),
    ]
}

/// Adds a component's environment to its WASI context: the app's
/// variables, the peers of the connection in handle 0 (`first`), then
/// `own` (wasmtime-wasi serves WASI 0.2's environment from its context).
pub fn add_environment(
    wasi: &mut WasiCtxBuilder,
    app: &App,
    first: Option<&Handle>,
    own: &[(EnvText, EnvText)],
) {
    wasi.envs(&app.settings.env)
        .envs(&peer_env(first))
        .envs(own);
}

/// A name or value of an environment variable: most are fixed strings.
pub type EnvText = std::borrow::Cow<'static, str>;

/// Called by wasmtime when the epoch passes the store's deadline: end a
/// runaway process or one past its CPU time in all, yield one that has had
/// its slice, and let one that was just woken (its deadline passed while it
/// was blocked) go on.
fn on_epoch_deadline(
    store: wasmtime::StoreContextMut<'_, ProcessState>,
) -> wasmtime::Result<UpdateDeadline> {
    epoch_deadline(&store.data().app.settings.limits, store.data().cpu_start)
}

/// The decision of [`on_epoch_deadline`] for a process of an app with
/// `limits` whose CPU clock started at `cpu_start`: shared by every store
/// type (a component's too).
///
/// # Errors
/// The process is over its CPU budget or its CPU time in all: it ends.
pub fn epoch_deadline(
    limits: &crate::config::Limits,
    cpu_start: std::time::Duration,
) -> wasmtime::Result<UpdateDeadline> {
    let Some(ComputeTime {
        slice,
        since_block,
        others_waiting,
        hog,
        polled,
    }) = kernel::compute::current()
    else {
        return Ok(UpdateDeadline::Yield(1));
    };
    if let Some(limit) = limits.max_cpu {
        if cpu_time(cpu_start, polled) > limit {
            return Err(wasmtime::Error::new(CpuLimitExceeded { limit }));
        }
    }
    let budget = limits.cpu_budget;
    if since_block > budget {
        return Err(wasmtime::Error::new(CpuBudgetExceeded { budget }));
    }
    if slice >= kernel::TICK {
        return Ok(UpdateDeadline::Yield(1));
    }
    if others_waiting && hog {
        // A CPU hog holds a worker that a woken process waits for: yield
        // once it has had its minimum turn, checking at every back-edge
        // until then (a deadline of +0 epochs is already reached). A process
        // that has not been preempted since it blocked is left alone: it
        // will most likely block again sooner than that.
        return Ok(if slice >= kernel::MIN_SLICE {
            UpdateDeadline::Yield(1)
        } else {
            UpdateDeadline::Continue(0)
        });
    }
    Ok(UpdateDeadline::Continue(1))
}
