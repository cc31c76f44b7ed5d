//! A process's WASI preview-1 context, built on the guest's first call that
//! needs it rather than with the store.
//!
//! wasmtime-wasi's context (`WasiP1Ctx`: its `WasiCtx`, resource table, two
//! random generators and descriptor table) is about 2 KiB of heap and a
//! seeding of a ChaCha generator. Many guests never ask for it: a module
//! that imports no WASI, a Rust guest on `mnvkd` imports whose environment
//! (`environ.rs`) and clock (`clock.rs`) the host serves itself, a guest
//! that only reads stdin and writes stdout (`fd_io.rs` serves those until
//! the context exists). What it needs is kept here until then, with the
//! stdin and stdout streams `fd_io.rs` opened, which the context then takes
//! over with their state (bytes not yet written, a read's wait): what it
//! builds is what an eager build would have built, so the guest cannot tell
//! when it was made.

use std::sync::{Arc, Mutex};

use wasmtime_wasi::cli::{IsTerminal, StdinStream, StdoutStream};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::{InputStream, OutputStream};
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
    /// The context, once built; `seed` is `None` exactly when it is.
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
    /// The stdin stream `fd_io.rs` reads, once it has.
    stdin: Option<Box<dyn InputStream>>,
    /// The stdout stream `fd_io.rs` writes, once it has.
    stdout: Option<Box<dyn OutputStream>>,
}

impl LazyWasi {
    /// A context to be built from `stdio` and the process's own `args`.
    pub fn new(stdio: WasiStdio, args: Vec<String>) -> LazyWasi {
        LazyWasi {
            built: None,
            seed: Some(Seed {
                stdio,
                args,
                stdin: None,
                stdout: None,
            }),
        }
    }

    /// The context of process `pid` of `app`, built now if it was not yet.
    pub fn get(&mut self, app: &Arc<App>, pid: Pid) -> &mut WasiP1Ctx {
        if self.built.is_none() {
            // The seed is taken only here, so it is present.
            let seed = self.seed.take().unwrap_or(Seed {
                stdio: WasiStdio::Log,
                args: Vec::new(),
                stdin: None,
                stdout: None,
            });
            let mut builder = builder_with(app, seed.stdio, pid, seed.stdin, seed.stdout);
            self.built = Some(Box::new(builder.args(&seed.args).build_p1()));
        }
        self.built.as_deref_mut().expect("built above")
    }

    /// Whether the context has been built.
    pub fn is_built(&self) -> bool {
        self.built.is_some()
    }

    /// The stdin stream, opened now if it was not yet, while the context is
    /// not built and stdin is a connection or the starter's choice.
    pub fn stdin(&mut self) -> Option<&mut Box<dyn InputStream>> {
        let seed = self.seed.as_mut()?;
        if seed.stdin.is_none() {
            seed.stdin = Some(match &seed.stdio {
                WasiStdio::Chosen(stdio) => stdio.stdin.p2_stream(),
                WasiStdio::Connection(link) => {
                    StdinStream::p2_stream(&stdio::ConnectionStdio(Arc::clone(link)))
                }
                WasiStdio::Log => return None,
            });
        }
        seed.stdin.as_mut()
    }

    /// The stdout stream, as [`LazyWasi::stdin`].
    pub fn stdout(&mut self) -> Option<&mut Box<dyn OutputStream>> {
        let seed = self.seed.as_mut()?;
        if seed.stdout.is_none() {
            seed.stdout = Some(match &seed.stdio {
                WasiStdio::Chosen(stdio) => stdio.stdout.p2_stream(),
                WasiStdio::Connection(link) => {
                    StdoutStream::p2_stream(&stdio::ConnectionStdio(Arc::clone(link)))
                }
                WasiStdio::Log => return None,
            });
        }
        seed.stdout.as_mut()
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
    builder_with(app, stdio, pid, None, None)
}

/// [`builder`], whose stdin and stdout streams are `stdin` and `stdout`
/// where those were already opened.
fn builder_with(
    app: &Arc<App>,
    stdio: WasiStdio,
    pid: Pid,
    stdin: Option<Box<dyn InputStream>>,
    stdout: Option<Box<dyn OutputStream>>,
) -> WasiCtxBuilder {
    let mut wasi = WasiCtxBuilder::new();
    wasi.monotonic_clock(super::clock::HostMonotonic);
    let stderr = log(app, pid, "stderr");
    let (stdin_of, stdout_of): (Box<dyn StdinStream>, Box<dyn StdoutStream>) = match stdio {
        WasiStdio::Chosen(stdio) => (stdio.stdin, stdio.stdout),
        WasiStdio::Connection(link) => (
            Box::new(stdio::ConnectionStdio(Arc::clone(&link))),
            Box::new(stdio::ConnectionStdio(link)),
        ),
        // No connection: stdin is empty, stdout goes to the log like stderr.
        WasiStdio::Log => {
            wasi.stdout(log(app, pid, "stdout"));
            wasi.stderr(stderr).arg(&*app.name).args(&app.settings.args);
            return wasi;
        }
    };
    wasi.stdin(Opened {
        opened: Mutex::new(stdin),
        of: stdin_of,
    })
    .stdout(Opened {
        opened: Mutex::new(stdout),
        of: stdout_of,
    });
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

/// A stdin or stdout whose first stream is `opened` (by `fd_io.rs`, with
/// its state) if that was, else and after that new streams of `of`.
struct Opened<S, F> {
    opened: Mutex<Option<S>>,
    of: F,
}

impl<S, F: IsTerminal> IsTerminal for Opened<S, F> {
    fn is_terminal(&self) -> bool {
        self.of.is_terminal()
    }
}

impl StdinStream for Opened<Box<dyn InputStream>, Box<dyn StdinStream>> {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncRead + Send + Sync> {
        self.of.async_stream()
    }

    fn p2_stream(&self) -> Box<dyn InputStream> {
        let opened = self.opened.lock().unwrap().take();
        opened.unwrap_or_else(|| self.of.p2_stream())
    }
}

impl StdoutStream for Opened<Box<dyn OutputStream>, Box<dyn StdoutStream>> {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        self.of.async_stream()
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        let opened = self.opened.lock().unwrap().take();
        opened.unwrap_or_else(|| self.of.p2_stream())
    }
}
