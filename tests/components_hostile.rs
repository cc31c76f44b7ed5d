//! Hostile clients and hostile guests for a `wasi:http/proxy` component
//! (`guests/hello-http-p2`, docs/components.md "What is bounded"): the cases
//! of `hostile_clients.rs` and `limits.rs` that apply to a component served
//! per request. Each time the host stays up, its memory bounded, and serves
//! the next client.
//!
//! No timing is asserted: slow clients are slower than the timeouts they
//! meet by a wide margin, and waits are bounded only by deadlines.

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::hostile_clients::{flood, max_rss_until, resets_mid_exchange, slowloris};
use crate::util::*;

const HELLO: &str = "hello-http-p2";
const HELLO_BODY: &str = "hello from hello-http-p2\n";

/// The hello component served from a temp dir with `manifest` beside it,
/// with `extra` flags.
fn serve(manifest: &str, extra: &[std::ffi::OsString]) -> (TempDir, Server) {
    let dir = TempDir::new();
    let wasm = dir.join(&format!("{HELLO}.wasm"));
    std::fs::copy(guest(HELLO), &wasm).unwrap();
    dir.write(&format!("{HELLO}.toml"), manifest);
    let server = Server::start(&[(HELLO, wasm)], extra);
    (dir, server)
}

/// Asserts that a new connection gets the hello.
#[track_caller]
fn assert_served(addr: SocketAddr) {
    let response = http_get(addr, "/");
    assert_eq!(
        (response.status, response.text()),
        (200, HELLO_BODY.to_owned())
    );
}

/// Reads and drops what the host sends until it closes `stream` (end of
/// stream or a reset); returns the first bytes (up to 4 KiB), the count of
/// all, and whether a chunked body's last chunk (`0\r\n\r\n`) ended them.
///
/// # Panics
/// When the connection is still open after [`DEADLINE`].
#[track_caller]
fn drain_until_closed(stream: &mut TcpStream) -> (Vec<u8>, u64, bool) {
    let (mut first, mut total, mut tail) = (Vec::new(), 0u64, Vec::new());
    let mut buf = vec![0; 64 << 10];
    let deadline = Instant::now() + DEADLINE;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let room = 4096usize.saturating_sub(first.len());
                first.extend_from_slice(&buf[..n.min(room)]);
                total += n as u64;
                tail.extend_from_slice(&buf[..n]);
                let keep = tail.len().saturating_sub(5);
                tail.drain(..keep);
            }
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(err) => {
                panic!("expected the host to close the connection, got {err} after {total} bytes")
            }
        }
        assert!(Instant::now() < deadline, "still open after {total} bytes");
    }
    (first, total, tail == b"0\r\n\r\n")
}

/// Asserts that no host thread panicked (the guest's own panics arrive on
/// its stderr, logged as `stderr:` lines).
#[track_caller]
fn assert_no_host_panic(server: &Server) {
    let log = server.log();
    let host_panic = log
        .lines()
        .find(|line| line.contains("panicked") && !line.contains("stderr:"));
    assert!(host_panic.is_none(), "{log}");
}

#[test]
fn slowloris_on_a_component_gets_408_while_others_are_served() {
    let (_dir, server) = serve("head_timeout = \"1s\"\n", &[]);
    let addr = server.addr(HELLO);
    thread::scope(|scope| {
        let slow: Vec<_> = (0..20)
            .map(|_| scope.spawn(move || slowloris(addr, Duration::from_millis(200))))
            .collect();
        for _ in 0..10 {
            assert_served(addr);
        }
        for slow in slow {
            let got = slow.join().unwrap();
            let text = String::from_utf8_lossy(&got);
            assert!(text.starts_with("HTTP/1.1 408"), "a slow head got {text:?}");
        }
    });
    server.assert_alive();
}

#[test]
fn a_stalled_request_body_gets_408_and_a_close_while_others_are_served() {
    let (_dir, server) = serve("body_timeout = \"1s\"\n", &[]);
    let addr = server.addr(HELLO);
    // The echo has set its response and waits for the 97 bytes still due.
    let mut stalled = connect(addr);
    stalled
        .write_all(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\nabc")
        .unwrap();
    assert_served(addr);
    let got = read_until_closed(&mut stalled);
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 408"),
        "a stalled body got {text:?}"
    );
    server.wait_for_log("body_timeout", DEADLINE);
    assert_served(addr);
    server.assert_alive();
}

#[test]
fn readers_that_never_read_a_large_streamed_response_leave_host_memory_bounded() {
    // Each guest blocks in its body write once the socket buffers are full.
    let grown = rss_growth_with_unread_responses("big", 10);
    assert!(grown < 100 << 20, "RSS grew by {} MiB", grown >> 20);
}

#[test]
fn guests_writing_megabytes_at_once_to_clients_that_never_read_leave_host_memory_bounded() {
    // Each guest writes as much at once as `check-write` permits: what the
    // host buffers per process is that permit.
    let grown = rss_growth_with_unread_responses("bulk", 20);
    assert!(grown < 32 << 20, "RSS grew by {} MiB", grown >> 20);
}

/// Warms `server`'s hello app up, then runs `work` while sampling the
/// host's RSS: returns the RSS before, the most seen, and `work`'s result.
fn rss_while<T>(server: &Server, work: impl FnOnce() -> T) -> (u64, u64, T) {
    let addr = server.addr(HELLO);
    for _ in 0..5 {
        assert_served(addr);
    }
    let before = vm_rss(server.pid());
    let done = AtomicBool::new(false);
    thread::scope(|scope| {
        let sampler = scope.spawn(|| max_rss_until(server, &done));
        // Stops the sampler even when `work` panics, so the test fails
        // instead of waiting for it forever.
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let result = {
            let _stop = Stop(&done);
            work()
        };
        (before, sampler.join().unwrap(), result)
    })
}

/// Serves `clients` clients that ask `/<path>/<100 MiB>` and read nothing
/// for 3 s while another client is served; then one of them reads its whole
/// body (nothing was lost). Returns how much the host's RSS grew at most.
fn rss_growth_with_unread_responses(path: &str, clients: usize) -> u64 {
    const BIG: u64 = 100 << 20;
    let (_dir, server) = serve("", &[]);
    let addr = server.addr(HELLO);
    let (before, max, stalled) = rss_while(&server, || {
        let stalled: Vec<TcpStream> = (0..clients)
            .map(|_| {
                let mut stream = connect(addr);
                stream.write_all(&get(&format!("/{path}/{BIG}"))).unwrap();
                stream
            })
            .collect();
        thread::sleep(Duration::from_secs(3));
        assert_served(addr);
        stalled
    });
    let stream = stalled.into_iter().next().unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut reader = BufReader::new(stream);
    let response = read_response(&mut reader);
    assert_eq!(response.status, 200, "/{path}");
    assert_eq!(response.body.len() as u64, BIG, "/{path}");
    let grown = max.saturating_sub(before);
    eprintln!(
        "/{path}: RSS {} MiB before, at most {} MiB with {clients} x 100 MiB unread (+{} MiB)",
        before >> 20,
        max >> 20,
        grown >> 20
    );
    server.assert_alive();
    grown
}

#[test]
fn resets_mid_request_and_mid_response_leave_the_host_serving() {
    let (_dir, server) = serve("", &[]);
    let addr = server.addr(HELLO);
    let idle: Vec<TcpStream> = (0..50).map(|_| connect(addr)).collect();
    for _ in 0..30 {
        resets_mid_exchange(addr, "/echo", "/big/10000000");
    }
    assert_served(addr);
    server.assert_alive();
    assert_no_host_panic(&server);
    drop(idle);
}

#[test]
fn after_a_flood_of_connection_attempts_a_component_serves_the_next_request() {
    let (_dir, server) = serve("", &[]);
    let addr = server.addr(HELLO);
    let (connected, refused) = flood(addr, 5_000, 8);
    assert_eq!(connected + refused, 5_000);
    assert!(connected > 0);
    assert_served(addr);
    server.assert_alive();
    assert_no_host_panic(&server);
}

#[test]
fn an_endless_body_is_cut_at_the_request_timeout_while_others_are_served() {
    let (_dir, server) = serve("request_timeout = \"2s\"\n", &[]);
    let addr = server.addr(HELLO);
    thread::scope(|scope| {
        // One client reads all it gets; one reads nothing.
        let reading = scope.spawn(move || {
            let mut stream = connect(addr);
            stream.write_all(&get("/endless")).unwrap();
            drain_until_closed(&mut stream)
        });
        let mut idle = connect(addr);
        idle.write_all(&get("/endless")).unwrap();
        assert_served(addr);
        let (first, total, finished) = reading.join().unwrap();
        let head = String::from_utf8_lossy(&first);
        assert!(head.starts_with("HTTP/1.1 200"), "{head:?}");
        assert!(!finished, "an endless body ended with a last chunk");
        eprintln!("endless body: {} MiB before the cut", total >> 20);
        let (_, _, finished) = drain_until_closed(&mut idle);
        assert!(!finished);
    });
    server.wait_for_log("request_timeout", DEADLINE);
    assert_served(addr);
    server.assert_alive();
}

#[test]
fn a_guest_spinning_in_its_body_write_is_ended_by_its_cpu_budget() {
    // One worker: the spinning guest and the others share it.
    let (_dir, server) = serve("cpu_budget = \"1s\"\n", &args!["--threads", "1"]);
    let addr = server.addr(HELLO);
    // It never waits: a client that does not read leaves it polling
    // `check-write` in a busy loop.
    let mut idle = connect(addr);
    idle.write_all(&get("/spinwrite")).unwrap();
    assert_served(addr);
    server.wait_for_log("cpu budget", DEADLINE);
    // Its response was streaming: the connection is cut, not finished.
    let (first, _, finished) = drain_until_closed(&mut idle);
    assert!(
        first.is_empty()
            || first.starts_with(b"HTTP/1.1 200")
            || first.starts_with(b"HTTP/1.1 504"),
        "{:?}",
        String::from_utf8_lossy(&first)
    );
    assert!(!finished);
    assert_served(addr);
    server.assert_alive();
}

#[test]
fn a_guest_creating_resources_without_end_gets_500_and_host_memory_stays_bounded() {
    let (_dir, server) = serve("", &[]);
    let addr = server.addr(HELLO);
    let (before, max, ()) = rss_while(&server, || {
        for kind in ["fields", "pollables", "streams"] {
            let response = http_get(addr, &format!("/leak/{kind}"));
            assert_eq!(response.status, 500, "{kind}");
            assert_served(addr);
        }
    });
    let grown = max.saturating_sub(before);
    eprintln!(
        "resource leaks: RSS {} MiB before, at most {} MiB (+{} KiB)",
        before >> 20,
        max >> 20,
        grown >> 10
    );
    let line = server.wait_for_log("process killed", DEADLINE);
    assert!(line.contains("resource"), "{line}");
    assert!(grown < 16 << 20, "RSS grew by {} MiB", grown >> 20);
    server.assert_alive();
}
