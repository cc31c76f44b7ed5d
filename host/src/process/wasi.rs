//! A process's WASI preview-1 context, built on the guest's first call that
//! needs it rather than with the store.
//!
//! wasmtime-wasi's context (`WasiP1Ctx`: its `WasiCtx`, resource table, two
//! random generators and descriptor table) is about 2 KiB of heap and a
//! seeding of a ChaCha generator. Many guests never ask for it: a module
//! that imports no WASI, a Rust guest on `mnvkd` imports whose environment
//! (`environ.rs`) and clock (`clock.rs`) the host serves itself. What it
//! needs is kept here until then; what it builds is what an eager build
//! would have built, so the guest cannot tell when it was made.

use std::sync::Arc;

use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::WasiCtxBuilder;

use crate::app::App;

use super::stdio::{self, GuestLog, Stdio, StdioLink};
use super::Pid;

/// Where a process's WASI stdin and stdout go.
#[derive(Debug)]
pub enum WasiStdio {
    /// Chosen by the starter (a CGI request's body and response).
    Chosen(Stdio),
    /// The connection in handle 0, through its link.
    Connection(Arc<StdioLink>),
    /// Nothing in, the log out.
    Log,
}

/// A WASI preview-1 context, built on first use.
pub struct LazyWasi {
    /// The context, once built.
    built: Option<Box<WasiP1Ctx>>,
    /// What it is built from, until then (inline: boxing it would cost an
    /// allocation per process).
    seed: Option<Seed>,
}

/// What a process's context is built from.
struct Seed {
    stdio: WasiStdio,
    /// argv after the app name and the app's own arguments.
    args: Vec<String>,
}

impl LazyWasi {
    /// A context to be built from `stdio` and the process's own `args`.
    pub fn new(stdio: WasiStdio, args: Vec<String>) -> LazyWasi {
        LazyWasi {
            built: None,
            seed: Some(Seed { stdio, args }),
        }
    }

    /// The context of process `pid` of `app`, built now if it was not yet.
    pub fn get(&mut self, app: &Arc<App>, pid: Pid) -> &mut WasiP1Ctx {
        if self.built.is_none() {
            // The seed is taken only here, so it is present.
            let seed = self.seed.take().unwrap_or(Seed {
                stdio: WasiStdio::Log,
                args: Vec::new(),
            });
            let mut builder = builder(app, seed.stdio, pid);
            self.built = Some(Box::new(builder.args(&seed.args).build_p1()));
        }
        self.built.as_deref_mut().expect("built above")
    }

    /// Whether the context has been built (for tests and metrics).
    pub fn is_built(&self) -> bool {
        self.built.is_some()
    }
}

impl std::fmt::Debug for LazyWasi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyWasi")
            .field("built", &self.is_built())
            .finish_non_exhaustive()
    }
}

/// The WASI context builder of process `pid` of `app` with `stdio` as its
/// stdin and stdout; stderr goes to the log. Arguments are the app's name
/// and its own; the caller adds the process's.
pub fn builder(app: &Arc<App>, stdio: WasiStdio, pid: Pid) -> WasiCtxBuilder {
    let mut wasi = WasiCtxBuilder::new();
    wasi.monotonic_clock(super::clock::HostMonotonic);
    let stderr = log(app, pid, "stderr");
    match stdio {
        WasiStdio::Chosen(stdio) => {
            wasi.stdin(stdio::BoxedStdin(stdio.stdin))
                .stdout(stdio::BoxedStdout(stdio.stdout));
        }
        WasiStdio::Connection(link) => {
            wasi.stdin(stdio::ConnectionStdio(Arc::clone(&link)))
                .stdout(stdio::ConnectionStdio(link));
        }
        // No connection: stdin is empty, stdout goes to the log like stderr.
        WasiStdio::Log => {
            wasi.stdout(log(app, pid, "stdout"));
        }
    }
    wasi.stderr(stderr).arg(&*app.name).args(&app.settings.args);
    wasi
}

/// The log stream `stream` of process `pid` of `app`.
pub fn log(app: &Arc<App>, pid: Pid, stream: &'static str) -> GuestLog {
    GuestLog {
        app: Arc::clone(&app.name),
        limit: Arc::clone(&app.log_limit),
        pid,
        stream,
        terminal: app.settings.terminal,
    }
}
