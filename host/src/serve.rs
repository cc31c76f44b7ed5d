//! `serve`: load every app, bind its listener, print the start-up table, and
//! accept connections forever, one new process per connection.

use std::future::poll_fn;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mio::net::TcpListener;

use crate::app::App;
use crate::config::{format_size, Limits};
use crate::conn::{Connection, Socket};
use crate::engine;
use crate::kernel::Kernel;
use crate::process::{self, linker, Pid};
use crate::reactor::{Direction, Reactor, Source};

/// Pause after an accept error such as running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// One app to serve, as the command line and its manifest describe it.
#[derive(Debug, Clone)]
pub struct AppSpec {
    /// The app's name (its file stem).
    pub name: String,
    /// Its `.wasm` (or `.wat`).
    pub path: PathBuf,
    /// Per-process limits.
    pub limits: Limits,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Where to listen.
    pub listen: SocketAddr,
}

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The apps, in argument order.
    pub apps: Vec<AppSpec>,
    /// Worker threads.
    pub threads: usize,
}

/// Serves the apps until the host is killed.
///
/// # Errors
/// When an app cannot be loaded or its address bound; nothing is served then.
pub fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let fd_limit = raise_fd_limit();
    let wanted = config.apps.iter().map(|a| a.limits.max_processes).sum();
    let max_memory = config.apps.iter().map(|a| a.limits.max_memory).max();
    let sizing = engine::pool_slots(wanted, max_memory.unwrap_or(1 << 16));
    let engine = engine::new(&sizing)?;
    let linker = linker::new(&engine)?;
    let mut apps = Vec::new();
    for spec in &config.apps {
        let mut limits = spec.limits.clone();
        limits.max_processes = limits.max_processes.min(sizing.slots);
        let app = App::load(&engine, &linker, &spec.path, limits, spec.env.clone())?;
        let listener = std::net::TcpListener::bind(spec.listen).with_context(|| {
            format!(
                "failed to listen on `{}` for app `{}`",
                spec.listen, spec.name
            )
        })?;
        listener
            .set_nonblocking(true)
            .context("failed to make the listener non-blocking")?;
        apps.push((Arc::new(app), TcpListener::from_std(listener)));
    }
    let reactor = Reactor::start()?;
    let kernel = Kernel::start(config.threads, &engine)?;
    print_table(&apps, &kernel, &sizing, fd_limit)?;
    for (app, mut listener) in apps {
        let source = reactor
            .register(&mut listener)
            .with_context(|| format!("failed to register the listener of `{}`", app.name))?;
        let acceptor = accept_loop(app, listener, source, kernel.clone(), Arc::clone(&reactor));
        kernel.spawn(acceptor);
    }
    loop {
        std::thread::park();
    }
}

/// Accepts connections for `app` forever, starting a process for each while
/// the app is under its process limit.
async fn accept_loop(
    app: Arc<App>,
    listener: TcpListener,
    source: Arc<Source>,
    kernel: Kernel,
    reactor: Arc<Reactor>,
) {
    loop {
        poll_fn(|cx| app.poll_acquire_slot(cx)).await;
        let accepted =
            poll_fn(|cx| source.poll_io(Direction::Read, cx, || listener.accept())).await;
        let conn = accepted.and_then(|(stream, _)| Connection::new(Socket::Tcp(stream), &reactor));
        match conn {
            Ok(conn) => {
                let app = Arc::clone(&app);
                kernel.spawn(async move {
                    process::run(Arc::clone(&app), Arc::new(conn), Pid::next()).await;
                    app.release_slot();
                });
            }
            Err(err) => {
                app.release_slot();
                tracing::warn!(app = %app.name, "accept failed: {err}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

fn print_table(
    apps: &[(Arc<App>, TcpListener)],
    kernel: &Kernel,
    sizing: &engine::PoolSizing,
    fd_limit: Option<u64>,
) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{:<16} {:<22} {:>10} {:>10} {:>13}",
        "APP", "LISTEN", "MAX-MEMORY", "CPU-BUDGET", "MAX-PROCESSES"
    )?;
    let mut addrs = Vec::new();
    for (app, listener) in apps {
        let addr = listener
            .local_addr()
            .context("failed to read a listener's address")?;
        writeln!(
            out,
            "{:<16} {:<22} {:>10} {:>10} {:>13}",
            app.name,
            addr.to_string(),
            format_size(app.limits.max_memory),
            format!("{:?}", app.limits.cpu_budget),
            app.limits.max_processes
        )?;
        addrs.push((Arc::clone(&app.name), addr));
    }
    let fds = fd_limit.map_or("unknown".to_string(), |n| n.to_string());
    writeln!(
        out,
        "workers: {}, process slots: {} (fitted to vm.max_map_count {}), open files: {}",
        kernel.threads(),
        sizing.slots,
        sizing.max_map_count,
        fds
    )?;
    for (name, addr) in addrs {
        writeln!(out, "listening {name} {addr}")?;
    }
    out.flush()?;
    Ok(())
}

/// Raises the soft open-file limit to the hard limit (one fd per connection);
/// returns the limit now in force.
fn raise_fd_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the rlimit we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the rlimit we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Some(raised.rlim_cur);
        }
    }
    Some(limit.rlim_cur)
}
