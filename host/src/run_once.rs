//! `run`: one process of a guest, with this terminal as its connection.
//!
//! The guest gets one end of a Unix socket pair, so it runs on the same kernel,
//! reactor and imports as a served process; two plain threads copy the
//! terminal's stdin into the other end and the other end to stdout.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::thread;

use anyhow::{bail, Context};

use crate::app::{App, AppSettings, Guest};
use crate::cli::EXIT_GUEST_FAILED;
use crate::component::World;
use crate::conn::{Connection, Socket};
use crate::engine;
use crate::kernel::Kernel;
use crate::module_cache::ModuleCache;
use crate::process::{self, linker, Exit, Pid, Runtime, Start};
use crate::reactor::Reactor;

/// What `run` needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The guest.
    pub path: PathBuf,
    /// Limits, environment, grants and arguments.
    pub settings: AppSettings,
    /// Where compiled modules are kept; `None` compiles afresh.
    pub cache: Option<ModuleCache>,
}

/// Runs the guest to its end; returns the exit status for the host process.
///
/// # Errors
/// When the guest cannot be loaded or the terminal bridge cannot be set up.
pub fn run(config: RunConfig) -> anyhow::Result<u8> {
    let limits = &config.settings.limits;
    let engine = engine::new(&mut engine::pool_slots(
        limits.max_processes,
        limits.max_memory,
    ))?;
    let linker = linker::new(&engine)?;
    let app = App::load(
        &engine,
        &linker,
        &config.path,
        config.settings,
        config.cache.as_ref(),
    )?;
    if let Guest::Component(guest) = &app.guest {
        if guest.world() == World::Proxy {
            bail!(
                "`{}` is a wasi:http/proxy component: it has no connection to run with; serve it with `mnvkd-host serve`",
                config.path.display()
            );
        }
    }
    let (guest_end, host_end) = UnixStream::pair().context("failed to create a socket pair")?;
    guest_end
        .set_nonblocking(true)
        .context("failed to make the socket non-blocking")?;
    let reactor = Reactor::start()?;
    let conn = Connection::new(
        Socket::Unix(mio::net::UnixStream::from_std(guest_end)),
        &reactor,
    )
    .context("failed to register the guest's socket")?;
    let output = bridge(host_end)?;
    // Two workers: the guest may spawn children that run beside it.
    let kernel = Kernel::start(2, &engine, &reactor)?;
    let (done, exit) = mpsc::channel();
    let app = Arc::new(app);
    assert!(
        app.processes.try_acquire(),
        "a new app has a free process slot"
    );
    let runtime = Runtime { kernel, reactor };
    let running = runtime.clone();
    runtime.kernel.spawn(async move {
        let _ = done.send(process::run(app, running, Start::connection(conn), Pid::next()).await);
    });
    let exit = exit
        .recv()
        .context("the kernel stopped before the guest ended")?;
    // The guest's socket is closed now; the copier ends when it has written all.
    let _ = output.join();
    Ok(match exit {
        Exit::Exited(status) => u8::try_from(status).unwrap_or(EXIT_GUEST_FAILED),
        // Already logged by the process, with its cause.
        Exit::Failed(_) => EXIT_GUEST_FAILED,
    })
}

/// Starts the terminal copiers; returns the stdout one, to join at the end.
fn bridge(host_end: UnixStream) -> anyhow::Result<thread::JoinHandle<()>> {
    let mut to_guest = host_end.try_clone().context("failed to clone the socket")?;
    thread::Builder::new()
        .name("mnvkd-stdin".into())
        .spawn(move || {
            let _ = io::copy(&mut io::stdin().lock(), &mut to_guest);
            let _ = to_guest.shutdown(Shutdown::Write);
        })
        .context("failed to start the stdin copier")?;
    let mut from_guest = host_end;
    thread::Builder::new()
        .name("mnvkd-stdout".into())
        .spawn(move || {
            let mut buf = [0; 8192];
            let mut stdout = io::stdout();
            while let Ok(n) = from_guest.read(&mut buf) {
                if n == 0
                    || stdout
                        .write_all(&buf[..n])
                        .and_then(|_| stdout.flush())
                        .is_err()
                {
                    break;
                }
            }
        })
        .context("failed to start the stdout copier")
}
