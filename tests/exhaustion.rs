//! Exhaustion: the host short of fds (`RLIMIT_NOFILE`), of process places
//! (`--max-processes`), and an app's processes together short of micro-heap
//! (`--max-app-memory`). Each time the host backs off, keeps its log
//! bounded, and serves again as soon as the resource is back.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::*;

/// Writes one byte and reads its echo.
#[track_caller]
fn echo_byte(stream: &mut TcpStream, byte: u8) {
    stream.write_all(&[byte]).unwrap();
    let mut got = [0];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(got[0], byte);
}

#[test]
fn accept_failing_for_want_of_fds_backs_off_logs_within_the_limit_and_serving_goes_on() {
    // About a dozen fds at rest (epoll, eventfd, listener, cached module…):
    // 40 leaves room for some connections, and 60 clients are more.
    let server = Server::start_with_fd_limit(&[("echo", guest("echo"))], &[], 40);
    let addr = server.addr("echo");
    let idle = server.fd_count();
    assert!(idle < 30, "{idle} fds open at rest: no room left to test");
    let clients: Vec<TcpStream> = (0..60).map(|_| connect(addr)).collect();
    let first = server.wait_for_log("accept failed", DEADLINE);
    assert!(first.contains("Too many open files"), "{first}");
    let starved = Instant::now();
    // Starved for a while: the accept loop retries every 50 ms.
    thread::sleep(Duration::from_secs(4));
    let log = server.log();
    let failures = log.matches("accept failed").count() as u64;
    // The app's log limit: a burst of 20, then 5 a second.
    let bound = 20 + 5 * (starved.elapsed().as_secs() + 2);
    assert!(
        failures <= bound,
        "{failures} `accept failed` lines (bound {bound}):\n{log}"
    );
    assert!(
        log.contains("suppressed"),
        "no note of suppressed lines:\n{log}"
    );
    server.assert_alive();
    drop(clients);
    // The fds are back: new clients are served (the closed ones in the
    // backlog are accepted and end at once).
    for byte in 0..20 {
        let mut stream = connect(addr);
        echo_byte(&mut stream, byte);
    }
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

#[test]
fn connections_beyond_max_processes_wait_then_are_served() {
    let server = Server::start(&[("echo", guest("echo"))], &args!["--max-processes", "3"]);
    let addr = server.addr("echo");
    let mut held: Vec<TcpStream> = (0..3).map(|_| connect(addr)).collect();
    for (i, stream) in held.iter_mut().enumerate() {
        echo_byte(stream, i as u8);
    }
    // Ten more wait in the backlog, their bytes sent.
    let mut waiting: Vec<TcpStream> = (0..10).map(|_| connect(addr)).collect();
    for stream in &mut waiting {
        stream.write_all(b"w").unwrap();
    }
    drop(held);
    // Each is served once a place frees, and frees its own when done.
    for stream in &mut waiting {
        let mut got = [0];
        stream.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"w");
        stream.shutdown(std::net::Shutdown::Both).unwrap();
    }
    server.assert_alive();
}

/// Grows its micro-heap by 40 pages (2.5 MiB) and says `ok` or, if the
/// growth was refused, `no`; then holds the memory until the client closes.
const GROW: &str = r#"(module
  (import "mnvkd" "read" (func $read (param i32 i32 i32) (result i32)))
  (import "mnvkd" "write" (func $write (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "ok\nno\n")
  (func (export "_start")
    (if (i32.eq (memory.grow (i32.const 40)) (i32.const -1))
      (then (drop (call $write (i32.const 0) (i32.const 3) (i32.const 3))))
      (else (drop (call $write (i32.const 0) (i32.const 0) (i32.const 3)))))
    (block $done
      (loop $more
        (br_if $done (i32.le_s (call $read (i32.const 0) (i32.const 16) (i32.const 16)) (i32.const 0)))
        (br $more)))))
"#;

/// Connects and reads the grow guest's answer.
fn grow(addr: std::net::SocketAddr) -> (TcpStream, String) {
    let mut stream = connect(addr);
    let mut answer = [0; 3];
    stream.read_exact(&mut answer).unwrap();
    (stream, String::from_utf8_lossy(&answer).into_owned())
}

#[test]
fn a_grow_past_the_apps_total_fails_and_the_memory_comes_back_when_a_process_ends() {
    let dir = TempDir::new();
    let wat = dir.write("grow.wat", GROW);
    let server = Server::start(
        &[("grow", wat)],
        &args!["--max-memory", "4MiB", "--max-app-memory", "8MiB"],
    );
    let addr = server.addr("grow");
    // Three hold 2.5 MiB (and their first page) each: 7.7 MiB of 8.
    let held: Vec<TcpStream> = (0..3)
        .map(|i| {
            let (stream, answer) = grow(addr);
            assert_eq!(answer, "ok\n", "process {i}");
            stream
        })
        .collect();
    // A fourth is within --max-memory but past the app's total.
    let (fourth, answer) = grow(addr);
    assert_eq!(answer, "no\n");
    drop(fourth);
    // One ends: its micro-heap is the app's again.
    drop(held);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (_stream, answer) = grow(addr);
        if answer == "ok\n" {
            break;
        }
        assert!(Instant::now() < deadline, "the memory never came back");
        thread::sleep(Duration::from_millis(20));
    }
    server.assert_alive();
}

#[test]
fn an_app_total_below_one_processs_cap_is_refused_at_start() {
    let (code, stderr) = run_fail(
        &args![
            "serve",
            "--max-memory",
            "4MiB",
            "--max-app-memory",
            "1MiB",
            guest("echo")
        ],
        b"",
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("max-app-memory must be at least max-memory"),
        "{stderr}"
    );
}
