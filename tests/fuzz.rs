//! ABI fuzzing: `guests/fuzz` calls every `mnvkd` import and the WASI
//! imports with random arguments, seeded from its connection; a control echo
//! app is served beside it. A short run here; `scripts/fuzz` runs long ones.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::Instant;

use crate::util::*;

/// Seeds in the suite's run.
const SEEDS: u64 = 32;
/// Seeds run at once.
const CLIENTS: u64 = 4;

/// What the fuzz guest's last line says.
#[derive(Debug)]
pub struct Marker {
    /// Calls its root process made.
    pub calls: u64,
    /// Reads and writes only another process could end.
    pub blocked: u64,
    /// Children it spawned.
    pub children: u64,
    /// Children that were killed.
    pub killed: u64,
    /// Results not documented for their import.
    pub violations: u64,
}

/// Runs the fuzz guest at `addr` with `seed`: sends it, half-closes, and
/// reads to end of stream. Returns the marker, or what arrived instead.
pub fn fuzz_one(addr: SocketAddr, seed: u64) -> Result<Marker, String> {
    let mut stream = connect(addr);
    stream
        .write_all(format!("{seed}\n").as_bytes())
        .map_err(|err| format!("seed {seed}: failed to send: {err}"))?;
    stream.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    if let Err(err) = stream.read_to_end(&mut got) {
        return Err(format!(
            "seed {seed}: no end of stream ({err}) after {} bytes",
            got.len()
        ));
    }
    let text = String::from_utf8_lossy(&got);
    let violations: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with(&format!("fuzz-violation seed={seed} ")))
        .collect();
    let line = text
        .lines()
        .rev()
        .find(|line| line.starts_with(&format!("fuzz-done seed={seed} ")))
        .ok_or_else(|| format!("seed {seed}: no marker in {} bytes", got.len()))?;
    let field = |name: &str| -> u64 {
        line.split(' ')
            .find_map(|word| word.strip_prefix(&format!("{name}=")))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("seed {seed}: no {name} in {line:?}"))
    };
    let marker = Marker {
        calls: field("calls"),
        blocked: field("blocked"),
        children: field("children"),
        killed: field("killed"),
        violations: field("violations"),
    };
    if marker.violations > 0 {
        return Err(format!("seed {seed}: {line}\n{}", violations.join("\n")));
    }
    Ok(marker)
}

#[test]
fn every_seed_ends_with_its_marker_and_the_host_and_a_control_app_go_on() {
    let server = Server::start(&[("fuzz", guest("fuzz")), ("echo", guest("echo"))], &[]);
    let (fuzz, echo) = (server.addr("fuzz"), server.addr("echo"));
    let done = AtomicBool::new(false);
    let failures = Mutex::new(Vec::new());
    let started = Instant::now();
    let (calls, control) = thread::scope(|scope| {
        // The control tenant: echo round trips, each checked, all along.
        let control = scope.spawn(|| {
            let mut count = 0u64;
            while !done.load(Ordering::Relaxed) {
                let bytes = pseudo_random_bytes(count, 1000);
                assert_bytes_eq("control echo", &bytes, &roundtrip(echo, &bytes));
                count += 1;
            }
            count
        });
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let failures = &failures;
                scope.spawn(move || {
                    let (mut calls, mut blocked) = (0, 0);
                    for seed in (client..SEEDS).step_by(CLIENTS as usize) {
                        match fuzz_one(fuzz, seed) {
                            Ok(marker) => {
                                calls += marker.calls;
                                blocked += marker.blocked;
                            }
                            Err(failure) => failures.lock().unwrap().push(failure),
                        }
                    }
                    (calls, blocked)
                })
            })
            .collect();
        let totals: Vec<(u64, u64)> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        done.store(true, Ordering::Relaxed);
        let calls = totals.iter().map(|t| t.0).sum::<u64>();
        let blocked = totals.iter().map(|t| t.1).sum::<u64>();
        ((calls, blocked), control.join().unwrap())
    });
    let (calls, blocked) = calls;
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(calls >= SEEDS * 400, "only {calls} calls made");
    // Reads and writes on a pipe whose other end went to a child: only the
    // host waking the process when the child writes or ends finishes them.
    assert!(blocked > 0, "no seed made a blocking call on a pipe");
    assert!(control > 0, "the control app answered no round trip");
    server.assert_alive();
    // Still serving, at once, after the run.
    assert_bytes_eq("echo after", b"after", &roundtrip(echo, b"after"));
    let log = server.log();
    assert!(!log.contains("panicked"), "the host panicked:\n{log}");
    // Every guest-caused line passes the app's log limit (20 at once, then
    // 5 a second, each maybe after a "suppressed" note): a bound of lines,
    // whatever the guests did. Unimplemented WASI calls (`sock_accept`,
    // `sock_shutdown`) once logged a warning each, without bound.
    let seconds = started.elapsed().as_secs() + 1;
    let bound = 2 * (20 + 5 * seconds) + 10;
    let lines = log.lines().count() as u64;
    assert!(
        lines <= bound,
        "{lines} log lines in {seconds} s (bound {bound}):\n{log}"
    );
}

/// `scripts/fuzz`: seeds from `MNVKD_FUZZ_FIRST` (default 0) on, four at a
/// time, for `MNVKD_FUZZ_SECONDS` (default 180) or `MNVKD_FUZZ_SEEDS`
/// seeds; prints the seeds run, calls made, host panics and hangs (a seed
/// with no end of stream within the deadline), and fails if any.
#[test]
#[ignore = "long: run by scripts/fuzz"]
fn long_run() {
    let number = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or(default)
    };
    let first = number("MNVKD_FUZZ_FIRST", 0);
    let seconds = number("MNVKD_FUZZ_SECONDS", 180);
    let seeds = number("MNVKD_FUZZ_SEEDS", u64::MAX);
    let server = Server::start(&[("fuzz", guest("fuzz")), ("echo", guest("echo"))], &[]);
    let (fuzz, echo) = (server.addr("fuzz"), server.addr("echo"));
    // The control tenant's latency at rest, then under the fuzzing.
    let baseline = control_latencies(echo, 200, &AtomicBool::new(false));
    let started = Instant::now();
    let fuzzing = AtomicBool::new(true);
    let next = std::sync::atomic::AtomicU64::new(first);
    let totals = Mutex::new((0u64, 0u64, 0u64, 0u64, Vec::new()));
    let loaded = thread::scope(|scope| {
        let control = scope.spawn(|| control_latencies(echo, usize::MAX, &fuzzing));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                scope.spawn(|| loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed - first >= seeds || started.elapsed().as_secs() >= seconds {
                        return;
                    }
                    let result = fuzz_one(fuzz, seed);
                    let mut totals = totals.lock().unwrap();
                    totals.0 += 1;
                    match result {
                        Ok(marker) => {
                            totals.1 += marker.calls;
                            totals.2 += marker.children;
                            totals.3 += marker.killed;
                        }
                        Err(failure) => {
                            eprintln!("FAIL {failure}");
                            totals.4.push(seed);
                        }
                    }
                    if totals.0 % 500 == 0 {
                        eprintln!(
                            "{:>5} s: {} seeds, {} calls",
                            started.elapsed().as_secs(),
                            totals.0,
                            totals.1
                        );
                    }
                })
            })
            .collect();
        for client in clients {
            client.join().unwrap();
        }
        fuzzing.store(false, Ordering::Relaxed);
        control.join().unwrap()
    });
    let (run, calls, children, killed, failed) = totals.into_inner().unwrap();
    let echo_ok = roundtrip(echo, b"still here") == b"still here";
    let log = server.log();
    let panics = log.matches("panicked").count();
    println!(
        "fuzz: seeds {first}..{} run {run} in {} s; root calls {calls}; children {children} \
         (killed {killed}); failed seeds (hang, no marker or violation) {}: {failed:?}; \
         host panics {panics}; host alive {}; control echo answers {echo_ok}; log lines {}",
        first + run,
        started.elapsed().as_secs(),
        failed.len(),
        server.is_alive(),
        log.lines().count()
    );
    println!(
        "control echo round trip (1 KiB): at rest {}; while fuzzing {}",
        summary(&baseline),
        summary(&loaded)
    );
    assert!(failed.is_empty() && panics == 0 && server.is_alive() && echo_ok);
}

/// Round trips of 1 KiB to the echo at `addr`, one every 10 ms, `count` of
/// them or while `go` holds; returns their durations, sorted.
fn control_latencies(addr: SocketAddr, count: usize, go: &AtomicBool) -> Vec<std::time::Duration> {
    let bytes = pseudo_random_bytes(7, 1024);
    let mut took = Vec::new();
    while took.len() < count && (count != usize::MAX || go.load(Ordering::Relaxed)) {
        let start = Instant::now();
        assert_bytes_eq("control echo", &bytes, &roundtrip(addr, &bytes));
        took.push(start.elapsed());
        thread::sleep(std::time::Duration::from_millis(10));
    }
    took.sort();
    took
}

/// `p50 … p99 … max …` of sorted durations.
fn summary(sorted: &[std::time::Duration]) -> String {
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize];
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} trips)",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3,
        sorted.len()
    )
}
