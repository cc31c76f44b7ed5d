//! The store data of a component's micro-process: WASI 0.2 and wasi:http
//! over one resource table, the micro-heap cap, and its CPU clock. The
//! store is limited and preempted exactly as a core module's.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::Store;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::app::App;
use crate::kernel;
use crate::process::table::ProcessInfo;
use crate::process::{self, HeapLimiter, Pid, StdioLink};

/// Everything a component's host imports can reach: its WASI context (no
/// preopened directory, no sockets), its HTTP context and their resources.
pub struct ComponentState {
    /// This process's id, for logs.
    pub pid: Pid,
    /// The app this process is an instance of: its limits and grants.
    pub app: Arc<App>,
    /// WASI 0.2: stdio, clocks, random, environment.
    pub wasi: WasiCtx,
    /// wasi:http's per-store settings.
    pub http: WasiHttpCtx,
    /// The resources of both (streams, requests, responses, pollables).
    pub table: ResourceTable,
    /// wasi:http's settings that are not in its context.
    hooks: Hooks,
    /// The micro-heap cap, and whether the guest ran into it.
    pub heap: HeapLimiter,
    /// Its kernel task's polled time when it started (`process::cpu_time`).
    pub cpu_start: Duration,
    /// The connection behind stdin and stdout (inetd mode), kept while the
    /// process lives.
    _stdio: Option<Arc<StdioLink>>,
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ComponentState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// The most bytes a guest may write to a body stream at once (its
/// `check-write` permit): the response buffer's size (`http/cgi.rs`'s
/// `STREAM_AT`). With wasmtime-wasi-http's default of 1 MiB, 20 guests
/// writing to clients that did not read held 132 MiB of host memory; with
/// this, 8 MiB (tests/components_hostile.rs).
const BODY_CHUNK: usize = 64 * 1024;

/// wasi:http's hooks: wasmtime-wasi-http's defaults (its sender for the
/// outgoing requests `allow_outbound` lets through) but for [`BODY_CHUNK`].
#[derive(Debug, Default)]
struct Hooks;

impl WasiHttpHooks for Hooks {
    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        BODY_CHUNK
    }
}

/// Finishes a WASI context for a component: sockets and name lookups off
/// (outbound HTTP goes through `allow_outbound`, nothing else leaves).
pub fn build_wasi(mut builder: WasiCtxBuilder) -> WasiCtx {
    builder
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

/// A store for a new process of the component `app`, with the micro-heap
/// cap and the epoch callback every process has.
pub fn new_store(
    app: &Arc<App>,
    pid: Pid,
    wasi: WasiCtx,
    info: Arc<ProcessInfo>,
    stdio: Option<Arc<StdioLink>>,
) -> Store<ComponentState> {
    let limits = &app.settings.limits;
    let state = ComponentState {
        pid,
        app: Arc::clone(app),
        wasi,
        http: WasiHttpCtx::new(),
        table: resource_table(limits.max_handles),
        hooks: Hooks,
        heap: HeapLimiter::new(
            limits.max_memory as usize,
            limits.max_app_memory,
            Arc::clone(&app.heap),
            info,
        ),
        cpu_start: kernel::compute::polled_before().unwrap_or_default(),
        _stdio: stdio,
    };
    let mut store = Store::new(app.engine(), state);
    // The guest's own handles to resources (wasmtime's default is 100 000 a
    // store) under the same cap as the host's table behind them.
    store.set_max_component_handles(limits.max_handles);
    store.limiter(|state| &mut state.heap);
    store.epoch_deadline_callback(|store| {
        let state = store.data();
        process::epoch_deadline(&state.app.settings.limits, state.cpu_start)
    });
    store.set_epoch_deadline(1);
    store
}

/// The resource table of one process: at most `max_handles` (`--max-handles`)
/// fields, requests, responses, bodies, streams and pollables at once. A
/// guest that creates more traps (500) instead of growing host memory:
/// wasmtime's default of a million entries (and 100 000 guest handles) let
/// one request take about 25 MiB of host memory with `wasi:http` fields.
fn resource_table(max_handles: usize) -> ResourceTable {
    let mut table = ResourceTable::new();
    table.set_max_capacity(max_handles);
    table
}

impl std::fmt::Debug for ComponentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentState")
            .field("pid", &self.pid)
            .field("app", &self.app.name)
            .field("heap", &self.heap)
            .finish_non_exhaustive()
    }
}
