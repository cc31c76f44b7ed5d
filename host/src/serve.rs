//! `serve`: load every app, bind its listener, print the start-up table, and
//! accept connections, one new process per connection, until a SIGTERM or
//! SIGINT starts the drain (`drain.rs`).

use std::future::poll_fn;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::abi::handles::Handle;
use crate::admin::{self, AdminState};
use crate::app::{App, AppSettings, CurrentApp, Mode};
use crate::config::format_size;
use crate::drain::Drain;
use crate::engine;
use crate::http;
use crate::kernel::Kernel;
use crate::listener::{self, Listener};
use crate::process::{self, linker, Exit, Pid, Runtime, Start};
use crate::reactor::Reactor;
use crate::reload::{self, Reloader, Reread};

/// Pause after an accept error such as running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Pause before restarting a listener-mode app's process that ended.
const RESTART_BACKOFF: Duration = Duration::from_secs(1);
/// With `--reuse-port`: how long a draining host goes on accepting what was
/// already queued for it after steering new connections to the next host.
const HAND_OVER: Duration = Duration::from_millis(500);
/// How often a drain looks whether the work is done.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// One app to serve, as the command line and its manifest describe it.
#[derive(Debug, Clone)]
pub struct AppSpec {
    /// The app's name (its file stem).
    pub name: String,
    /// Its `.wasm` (or `.wat`).
    pub path: PathBuf,
    /// Limits, environment and grants.
    pub settings: AppSettings,
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
    /// How long a drain lets live processes finish before ending them.
    pub drain_timeout: Duration,
    /// Bind with `SO_REUSEPORT`, and hand new connections over on a drain.
    pub reuse_port: bool,
    /// Where compiled modules are kept; `None` compiles afresh.
    pub cache: Option<crate::module_cache::ModuleCache>,
    /// How a reload reads an app's settings again.
    pub reread: Reread,
    /// Reload when an app's files change, not only on SIGHUP.
    pub watch: bool,
    /// Where to serve the admin endpoint, if anywhere (`admin.rs`).
    pub admin: Option<SocketAddr>,
}

/// Serves the apps until a SIGTERM or SIGINT, then drains: stops accepting,
/// lets live processes finish for up to `drain_timeout`, and returns. A
/// SIGHUP reloads the apps (`reload.rs`).
///
/// # Errors
/// When an app cannot be loaded or its address bound; nothing is served then.
pub fn serve(config: ServeConfig) -> anyhow::Result<()> {
    // Before anything is served, so an early signal drains instead of killing.
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("failed to install the SIGTERM, SIGINT and SIGHUP handlers")?;
    let fd_limit = raise_fd_limit();
    let wants: Vec<usize> = config
        .apps
        .iter()
        .map(|a| a.settings.limits.max_processes)
        .collect();
    let wanted = wants.iter().sum();
    let max_memory = config
        .apps
        .iter()
        .map(|a| a.settings.limits.max_memory)
        .max();
    let mut sizing = engine::pool_slots(wanted, max_memory.unwrap_or(1 << 16));
    let engine = engine::new(&mut sizing)?;
    let linker = linker::new(&engine)?;
    let reactor = Reactor::start()?;
    let mut apps = Vec::new();
    let shares = fair_shares(&wants, sizing.slots);
    for (spec, share) in config.apps.iter().zip(shares) {
        let mut settings = spec.settings.clone();
        settings.limits.max_processes = share;
        let app = App::load(
            &engine,
            &linker,
            &spec.path,
            settings,
            config.cache.as_ref(),
        )?;
        let listener = listener::bind(spec.listen, config.reuse_port).with_context(|| {
            format!(
                "failed to listen on `{}` for app `{}`",
                spec.listen, spec.name
            )
        })?;
        let listener = Listener::new(listener, &reactor)
            .with_context(|| format!("failed to register the listener of `{}`", spec.name))?;
        apps.push((Arc::new(app), Arc::new(listener)));
    }
    crate::allocator::return_freed_memory();
    let kernel = Kernel::start(config.threads, &engine, &reactor)?;
    let drain = Drain::new();
    let current: Vec<(Arc<CurrentApp>, Arc<Listener>)> = apps
        .iter()
        .map(|(app, listener)| {
            (
                Arc::new(CurrentApp::new(Arc::clone(app))),
                Arc::clone(listener),
            )
        })
        .collect();
    let served: Vec<Arc<CurrentApp>> = current.iter().map(|(app, _)| Arc::clone(app)).collect();
    let admin = config
        .admin
        .map(|addr| {
            admin::start(
                addr,
                AdminState {
                    apps: served.clone(),
                    kernel: kernel.clone(),
                    drain: Arc::clone(&drain),
                    started: Instant::now(),
                },
            )
        })
        .transpose()?;
    // Before the table says `listening`: a change made after that is seen.
    if config.watch {
        reload::watch(config.apps.iter().map(|spec| spec.path.clone()).collect());
    }
    print_table(&apps, &kernel, &sizing, fd_limit, admin)?;
    drop(apps);
    let apps = current;
    let runtime = Runtime { kernel, reactor };
    // Kept only for the hand-over; dropped before the drain closes them.
    let mut listeners: Vec<Arc<Listener>> = apps.iter().map(|(_, l)| Arc::clone(l)).collect();
    for (app, listener) in apps {
        let drain = Arc::clone(&drain);
        let server = match app.get().settings.mode {
            Mode::Connection => {
                Box::pin(accept_loop(app, listener, runtime.clone(), drain)) as process::BoxFuture
            }
            Mode::Listener => Box::pin(supervise(app, listener, runtime.clone(), drain)),
            Mode::Http => Box::pin(http_accept_loop(app, listener, runtime.clone(), drain)),
        };
        runtime.kernel.spawn(server);
    }
    let reloader = Reloader {
        engine: &engine,
        linker: &linker,
        cache: config.cache.as_ref(),
        max_memory: sizing.max_memory,
        reread: &config.reread,
    };
    let signal = signals.forever().find(|&signal| {
        if signal == SIGHUP {
            tracing::info!("SIGHUP: reloading every app");
            reloader.reload_all(&served);
        }
        signal != SIGHUP
    });
    let name = if signal == Some(SIGINT) {
        "SIGINT"
    } else {
        "SIGTERM"
    };
    tracing::info!(
        "{name}: draining: no new connections; live processes have {:?} to finish",
        config.drain_timeout
    );
    drain.start();
    if config.reuse_port {
        for listener in &listeners {
            if let Err(err) = listener.hand_over() {
                tracing::warn!("failed to steer new connections to the next host: {err}");
            }
        }
        // New connections now go to the host that bound the address after
        // this one; those already queued here are still accepted meanwhile.
        std::thread::sleep(HAND_OVER);
    }
    listeners.clear();
    drain.close();
    finish_drain(&drain, &served, &mut signals, config.drain_timeout);
    Ok(())
}

/// Waits until no process or HTTP connection is left, the drain timeout
/// passes, or a second signal comes; what is still alive then ends when the
/// host exits.
fn finish_drain(
    drain: &Drain,
    apps: &[Arc<CurrentApp>],
    signals: &mut signal_hook::iterator::Signals,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        // Every version of an app shares its process count.
        let live = drain.live()
            + apps
                .iter()
                .map(|app| app.get().processes.live())
                .sum::<usize>();
        if live == 0 {
            tracing::info!("drained: every process finished");
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!("drain timeout: ending {live} processes and connections still live");
            return;
        }
        if signals.pending().any(|signal| signal != SIGHUP) {
            tracing::warn!("second signal: ending {live} processes and connections now");
            return;
        }
        std::thread::sleep(DRAIN_POLL);
    }
}

/// Each app's process limit when together they want `wants` of the pool's
/// `slots`: max-min fair. An app that wants less than an equal share gets
/// what it wants; the others split the rest equally. So no app can take the
/// slots another was promised, and a small app is never cut.
fn fair_shares(wants: &[usize], slots: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..wants.len()).collect();
    order.sort_by_key(|&i| wants[i]);
    let mut shares = vec![0; wants.len()];
    let mut left = slots;
    for (done, &i) in order.iter().enumerate() {
        let equal = left / (wants.len() - done);
        shares[i] = wants[i].min(equal).max(1);
        left = left.saturating_sub(shares[i]);
    }
    shares
}

/// Accepts connections for `app` until the drain starts, starting a process
/// of its current version for each while the app is under its process
/// limit; then closes the listener.
async fn accept_loop(
    current: Arc<CurrentApp>,
    listener: Arc<Listener>,
    runtime: Runtime,
    drain: Arc<Drain>,
) {
    // Every version shares the process count: the first one's is theirs.
    let processes = Arc::clone(&current.get().processes);
    while drain.unless_closed(processes.acquire()).await.is_some() {
        match drain
            .unless_closed(poll_fn(|cx| listener.poll_accept(cx)))
            .await
        {
            None => {
                processes.release();
                break;
            }
            Some(Ok(conn)) => {
                let app = current.get();
                app.metrics.connections.fetch_add(1, Ordering::Relaxed);
                conn.meter(&app.metrics);
                let process =
                    process::run(app, runtime.clone(), Start::connection(conn), Pid::next());
                runtime.kernel.spawn(process);
            }
            Some(Err(err)) => {
                processes.release();
                // EMFILE repeats every backoff while fds are short: bounded
                // like a guest-caused line.
                let app = current.get();
                if app.log_limit.admit(&app.name) {
                    tracing::warn!(app = %app.name, "accept failed: {err}");
                }
                runtime
                    .kernel
                    .sleep_until(Instant::now() + ACCEPT_BACKOFF)
                    .await;
            }
        }
    }
    tracing::info!(app = %current.get().name, "stopped accepting");
}

/// Accepts connections for an HTTP app until the drain starts, each served
/// by the host's HTTP front (with the app's current version for the whole
/// connection), which starts a process per request.
async fn http_accept_loop(
    current: Arc<CurrentApp>,
    listener: Arc<Listener>,
    runtime: Runtime,
    drain: Arc<Drain>,
) {
    while let Some(accepted) = drain
        .unless_closed(poll_fn(|cx| listener.poll_accept(cx)))
        .await
    {
        let app = current.get();
        match accepted {
            Ok(conn) => {
                app.metrics.connections.fetch_add(1, Ordering::Relaxed);
                conn.meter(&app.metrics);
                let work = drain.work();
                // The front's future is made inside the block, so the block
                // holds it once (as what it awaits), not also as a capture.
                let serving = runtime.clone();
                runtime.kernel.spawn(async move {
                    http::serve_connection(app, serving, conn).await;
                    drop(work);
                });
            }
            Err(err) => {
                if app.log_limit.admit(&app.name) {
                    tracing::warn!(app = %app.name, "accept failed: {err}");
                }
                runtime
                    .kernel
                    .sleep_until(Instant::now() + ACCEPT_BACKOFF)
                    .await;
            }
        }
    }
    tracing::info!(app = %current.get().name, "stopped accepting");
}

/// Runs a listener-mode app's one process with the listener as handle 0, and
/// starts it again (after a pause, with the app's current version) whenever
/// it ends, until the drain starts: then the listener is shut down (the
/// process's accepts fail) and the process is let finish.
async fn supervise(
    current: Arc<CurrentApp>,
    listener: Arc<Listener>,
    runtime: Runtime,
    drain: Arc<Drain>,
) {
    let processes = Arc::clone(&current.get().processes);
    while drain.unless_closed(processes.acquire()).await.is_some() {
        let app = current.get();
        let start = Start {
            handles: vec![Handle::Listener(Arc::clone(&listener))],
            ..Start::default()
        };
        let pid = Pid::next();
        let mut process =
            std::pin::pin!(process::run(Arc::clone(&app), runtime.clone(), start, pid));
        let Some(exit) = drain.unless_closed(process.as_mut()).await else {
            // Its accepts fail from now on; what it serves already it may finish.
            listener.shutdown();
            tracing::info!(app = %app.name, "stopped accepting");
            process.await;
            return;
        };
        let how = match exit {
            Exit::Exited(status) => format!("exited with status {status}"),
            Exit::Failed(_) => "was killed".to_owned(),
        };
        tracing::warn!(app = %app.name, %pid, "the listener process {how}; restarting it in {RESTART_BACKOFF:?}");
        let pause = runtime.kernel.sleep_until(Instant::now() + RESTART_BACKOFF);
        if drain.unless_closed(pause).await.is_none() {
            break;
        }
    }
    listener.shutdown();
    tracing::info!(app = %current.get().name, "stopped accepting");
}

fn print_table(
    apps: &[(Arc<App>, Arc<Listener>)],
    kernel: &Kernel,
    sizing: &engine::PoolSizing,
    fd_limit: Option<u64>,
    admin: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{:<16} {:<22} {:>10} {:>10} {:>13}  MODE",
        "APP", "LISTEN", "MAX-MEMORY", "CPU-BUDGET", "MAX-PROCESSES"
    )?;
    let mut addrs = Vec::new();
    for (app, listener) in apps {
        let addr = listener
            .local_addr()
            .context("failed to read a listener's address")?;
        writeln!(
            out,
            "{:<16} {:<22} {:>10} {:>10} {:>13}  {}",
            app.name,
            addr.to_string(),
            format_size(app.settings.limits.max_memory),
            format!("{:?}", app.settings.limits.cpu_budget),
            app.settings.limits.max_processes,
            app.settings.mode.name()
        )?;
        addrs.push((Arc::clone(&app.name), addr));
    }
    let fds = fd_limit.map_or("unknown".to_string(), |n| n.to_string());
    writeln!(
        out,
        "workers: {}, process slots: {} (fitted to vm.max_map_count {}), open files: {}, micro-heaps kept by {}",
        kernel.threads(),
        sizing.slots,
        sizing.max_map_count,
        fds,
        sizing.bounds_checks
    )?;
    for (name, addr) in addrs {
        writeln!(out, "listening {name} {addr}")?;
    }
    if let Some(addr) = admin {
        writeln!(out, "admin {addr}")?;
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

#[cfg(test)]
mod tests {
    use super::fair_shares;

    #[test]
    fn apps_share_a_pool_too_small_for_all() {
        assert_eq!(fair_shares(&[100, 200], 1000), vec![100, 200]);
        assert_eq!(fair_shares(&[10_000, 10_000], 10_239), vec![5_119, 5_120]);
        assert_eq!(
            fair_shares(&[10_000, 100, 10_000], 10_239),
            vec![5_069, 100, 5_070]
        );
        assert_eq!(fair_shares(&[5, 5], 1), vec![1, 1]);
    }
}
