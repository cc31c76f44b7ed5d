//! Spawn time of a micro-process, in process: how long from "a connection is
//! here" to "its guest is blocked in its first read".
//!
//!     cargo run --release -p mnvkd-host --example spawn -- guests/echo.wasm [N] [WARMUP]
//!
//! For each of N runs (default 20 000, after WARMUP = 1000 unmeasured ones):
//! make a Unix socket pair, register one end as a [`Connection`], create the
//! [`process::run`] future and poll it with a counting no-op waker until it
//! returns `Pending` without having woken itself — the store is built, a
//! pooled instance is instantiated (copy-on-write memory image) and `_start`
//! runs on its fiber up to its first blocking read. (A poll that returns
//! `Pending` after waking itself was an epoch yield: the kernel's ticker runs,
//! so the clock keeps running and the future is polled again.) Then the
//! future and the other end are dropped, which ends the process and returns
//! its pool slot, so every run after the first reuses a warm slot, as a busy
//! server does.
//!
//! Prints three `key=value` lines; the times as median, p90 and p99 in µs:
//! - `spawn_*`: the polls alone (instantiate + `_start` to its first read),
//!   `setup_*`: the socket pair + registration before them, `total_*`: both,
//!   `drop_*`: ending the process afterwards (future and peer dropped);
//! - a second pass of N runs that does what `process::run` does in steps:
//!   `store_*` ([`process::new_store`]: WASI context and `Store`),
//!   `instantiate_*` (`InstancePre::instantiate_async`), `call_*`
//!   (`_start` on its fiber to its first read);
//! - a third pass that keeps `HELD` = 1000 processes blocked at once and
//!   divides the growth of the host's heap (bytes allocated and not freed) and of
//!   its VmRSS by their number: `heap_per_process_bytes` is the host-side
//!   state (store, WASI context, instance, connection, suspended call),
//!   `rss_per_process_kib` adds the touched pages of the pooled slots (fiber
//!   stack, linear memory, table); `store_heap_per_process_bytes` is the
//!   heap of [`process::new_store`] alone (WASI context, `Store`, connection).
//!
//! Exit codes: 0 ok, 1 the guest could not be loaded or did not block, 2 usage.

/// The host binary's allocator (host/src/main.rs), so that what is
/// measured here is what the host does, counting the bytes it holds.
#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The host's allocator, with a count of the bytes allocated and not yet freed.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the host's allocator unchanged; the
// count only watches.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { Allocator.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { Allocator.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { Allocator.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { Allocator.realloc(ptr, layout, new_size) }
    }
}

use std::future::Future;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::pin::pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use mnvkd_host::allocator::Allocator;
use mnvkd_host::app::{App, AppSettings};
use mnvkd_host::conn::{Connection, Socket};
use mnvkd_host::engine;
use mnvkd_host::kernel::Kernel;
use mnvkd_host::process::{self, linker, Exit, Pid, Runtime, Start};
use mnvkd_host::reactor::Reactor;

/// Processes the memory pass keeps blocked at once.
const HELD: usize = 1000;
/// Process slots in the pool: [`HELD`] and a few spare.
const SLOTS: usize = HELD + 16;

const USAGE: &str = "usage: spawn GUEST.wasm [N] [WARMUP]";

fn main() -> ExitCode {
    let positional: Vec<String> = std::env::args().skip(1).collect();
    let count = |index: usize, default: usize| -> Option<usize> {
        positional
            .get(index)
            .map_or(Some(default), |text| text.parse().ok())
    };
    let (Some(path), Some(runs), Some(warmup), None) = (
        positional.first().map(PathBuf::from),
        count(1, 20_000),
        count(2, 1000),
        positional.get(3),
    ) else {
        eprintln!("{USAGE} (N and WARMUP are counts)");
        return ExitCode::from(2);
    };
    match bench(path, runs.max(1), warmup) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("spawn: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// A no-op waker that counts its wakes, to tell an epoch yield (the process
/// wakes itself before returning `Pending`) from a block on I/O.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// What every run shares.
struct Bench {
    app: Arc<App>,
    runtime: Runtime,
    wakes: Arc<CountingWaker>,
    waker: Waker,
}

fn bench(path: PathBuf, runs: usize, warmup: usize) -> anyhow::Result<()> {
    let settings = AppSettings::default();
    let mut sizing = engine::pool_slots(SLOTS, settings.limits.max_memory);
    let engine = engine::new(&mut sizing)?;
    let linker = linker::new(&engine)?;
    let app = Arc::new(App::load(&engine, &linker, &path, settings, None)?);
    // A process's state holds the kernel and reactor; this thread polls it
    // itself, so the kernel's one worker stays idle (its epoch ticker runs).
    let reactor = Reactor::start()?;
    let runtime = Runtime {
        kernel: Kernel::start(1, &engine, &reactor)?,
        reactor,
    };
    let wakes = Arc::new(CountingWaker::default());
    let waker = Waker::from(Arc::clone(&wakes));
    let bench = Bench {
        app,
        runtime,
        wakes,
        waker,
    };

    for _ in 0..warmup {
        bench.run_once()?;
    }
    let mut whole = Vec::with_capacity(runs);
    for _ in 0..runs {
        whole.push(bench.run_once()?);
    }
    let mut line = format!("guest={} runs={runs} warmup={warmup}", bench.app.name);
    push_fields(&mut line, "spawn", &whole, |r| r[1]);
    push_fields(&mut line, "setup", &whole, |r| r[0]);
    push_fields(&mut line, "total", &whole, |r| r[0] + r[1]);
    push_fields(&mut line, "drop", &whole, |r| r[2]);
    println!("{line}");

    for _ in 0..warmup.min(100) {
        bench.steps_once()?;
    }
    let mut steps = Vec::with_capacity(runs);
    for _ in 0..runs {
        steps.push(bench.steps_once()?);
    }
    let mut line = format!("guest={} runs={runs} steps=1", bench.app.name);
    push_fields(&mut line, "store", &steps, |r| r[0]);
    push_fields(&mut line, "instantiate", &steps, |r| r[1]);
    push_fields(&mut line, "call", &steps, |r| r[2]);
    println!("{line}");

    let store_heap = bench.store_memory(HELD)?;
    let (heap, rss) = bench.memory(HELD)?;
    println!(
        "guest={} held={HELD} heap_per_process_bytes={heap:.0} store_heap_per_process_bytes={store_heap:.0} rss_per_process_kib={rss:.1}",
        bench.app.name
    );
    Ok(())
}

impl Bench {
    /// A registered connection for a new process, and its peer.
    fn connection(&self) -> anyhow::Result<(Connection, UnixStream)> {
        let (guest_end, peer) = UnixStream::pair().context("failed to create a socket pair")?;
        guest_end
            .set_nonblocking(true)
            .context("failed to make the socket non-blocking")?;
        let conn = Connection::new(
            Socket::Unix(mio::net::UnixStream::from_std(guest_end)),
            &self.runtime.reactor,
        )
        .context("failed to register the socket")?;
        Ok((conn, peer))
    }

    /// Polls `future` until it is `Pending` without having woken itself.
    fn poll_until_blocked<F: Future>(
        &self,
        mut future: std::pin::Pin<&mut F>,
    ) -> Option<F::Output> {
        let mut cx = Context::from_waker(&self.waker);
        loop {
            let before = self.wakes.0.load(Ordering::Relaxed);
            match future.as_mut().poll(&mut cx) {
                Poll::Ready(output) => return Some(output),
                Poll::Pending if self.wakes.0.load(Ordering::Relaxed) == before => return None,
                Poll::Pending => continue,
            }
        }
    }

    /// One process through `process::run`: [setup, spawn, drop].
    fn run_once(&self) -> anyhow::Result<[Duration; 3]> {
        let began = Instant::now();
        let (conn, peer) = self.connection()?;
        let setup_done = Instant::now();
        let spawned;
        {
            let future = pin!(process::run(
                Arc::clone(&self.app),
                self.runtime.clone(),
                Start::connection(conn),
                Pid::next(),
            ));
            if let Some(exit) = self.poll_until_blocked(future) {
                match exit {
                    Exit::Exited(status) => {
                        bail!("the guest exited (status {status}) instead of blocking in a read")
                    }
                    Exit::Failed(_) => {
                        bail!("the guest failed before its first read (see the log)")
                    }
                }
            }
            spawned = Instant::now();
            // Dropping the future here ends the process on its fiber and
            // gives its pool slot back.
        }
        drop(peer);
        Ok([setup_done - began, spawned - setup_done, spawned.elapsed()])
    }

    /// One process in the steps `process::run` takes: [store, instantiate, call].
    fn steps_once(&self) -> anyhow::Result<[Duration; 3]> {
        let (conn, peer) = self.connection()?;
        let began = Instant::now();
        let mut store = process::new_store(
            &self.app,
            self.runtime.clone(),
            Start::connection(conn),
            Pid::next(),
        );
        let stored = Instant::now();
        let instance = {
            let module = self
                .app
                .module()
                .expect("the example guest is a core module");
            let future = pin!(module.instantiate_async(&mut store));
            match self.poll_until_blocked(future) {
                Some(instance) => instance.map_err(anyhow::Error::from)?,
                None => bail!("instantiation blocked"),
            }
        };
        let instantiated = Instant::now();
        let main = instance
            .get_typed_func::<(), ()>(&mut store, "_start")
            .map_err(anyhow::Error::from)?;
        {
            let future = pin!(main.call_async(&mut store, ()));
            if self.poll_until_blocked(future).is_some() {
                bail!("the guest's `_start` returned instead of blocking in a read");
            }
        }
        let called = Instant::now();
        drop(store);
        drop(peer);
        Ok([stored - began, instantiated - stored, called - instantiated])
    }
}

impl Bench {
    /// Keeps `count` processes blocked at once; returns the growth of the
    /// malloc heap (bytes) and of VmRSS (KiB), each per process.
    fn memory(&self, count: usize) -> anyhow::Result<(f64, f64)> {
        let heap_before = heap_in_use();
        let rss_before = rss_kib()?;
        let mut held = Vec::with_capacity(count);
        for _ in 0..count {
            let (conn, peer) = self.connection()?;
            let mut future = Box::pin(process::run(
                Arc::clone(&self.app),
                self.runtime.clone(),
                Start::connection(conn),
                Pid::next(),
            ));
            if self.poll_until_blocked(future.as_mut()).is_some() {
                bail!("the guest ended instead of blocking in a read");
            }
            held.push((future, peer));
        }
        let heap = heap_in_use().saturating_sub(heap_before) as f64 / count as f64;
        let rss = rss_kib()?.saturating_sub(rss_before) as f64 / count as f64;
        drop(held);
        Ok((heap, rss))
    }
}

impl Bench {
    /// Heap bytes per process of `count` stores built by
    /// [`process::new_store`] (with their connections), not instantiated.
    fn store_memory(&self, count: usize) -> anyhow::Result<f64> {
        let before = heap_in_use();
        let mut held = Vec::with_capacity(count);
        for _ in 0..count {
            let (conn, peer) = self.connection()?;
            let store = process::new_store(
                &self.app,
                self.runtime.clone(),
                Start::connection(conn),
                Pid::next(),
            );
            held.push((store, peer));
        }
        let heap = heap_in_use().saturating_sub(before) as f64 / count as f64;
        drop(held);
        Ok(heap)
    }
}

/// Bytes the host's Rust code holds on the heap (wasmtime's included; the
/// allocator's own overhead not).
fn heap_in_use() -> usize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// This process's resident set in KiB.
fn rss_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/self/status")
}

/// Appends `NAME_median_us=… NAME_p90_us=… NAME_p99_us=…` for one column.
fn push_fields(
    line: &mut String,
    name: &str,
    runs: &[[Duration; 3]],
    pick: fn(&[Duration; 3]) -> Duration,
) {
    let mut values: Vec<Duration> = runs.iter().map(pick).collect();
    values.sort_unstable();
    for (label, p) in [("median", 50.0), ("p90", 90.0), ("p99", 99.0)] {
        let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
        let value = values[rank.clamp(1, values.len()) - 1];
        line.push_str(&format!(
            " {name}_{label}_us={:.2}",
            value.as_secs_f64() * 1e6
        ));
    }
}
