//! Hard limits per process, through the `hog` guest (one command per
//! connection, `key value` lines back): CPU time in all (`--max-cpu`), which
//! no sleep or moved byte starts over; lifetime (`--max-wall`), even while
//! blocked; live children per connection's process tree (`--max-children`),
//! orphans included; host memory for pipe buffers (`--max-host-memory`); and
//! the cap on what one `write` moves, so a count never reads as an error code.

use std::ffi::OsString;
use std::io::{BufReader, Read, Write};

use crate::util::{
    assert_bytes_eq, connect, guest, read_response, read_until_closed, roundtrip, Server, TempDir,
    DEADLINE,
};

/// Serves `hog` beside `echo` with `extra` flags.
fn serve_hog(extra: &[OsString]) -> Server {
    Server::start(&[("hog", guest("hog")), ("echo", guest("echo"))], extra)
}

/// Sends `command`, half-closes, and returns the whole reply.
#[track_caller]
fn ask(server: &Server, command: &str) -> String {
    let got = roundtrip(server.addr("hog"), format!("{command}\n").as_bytes());
    String::from_utf8(got).unwrap_or_else(|err| panic!("reply to {command:?} is not UTF-8: {err}"))
}

/// Expects exactly `lines` in reply to `command`.
#[track_caller]
fn assert_reply(server: &Server, command: &str, lines: &[&str]) {
    let want: String = lines.iter().map(|line| format!("{line}\n")).collect();
    assert_eq!(ask(server, command), want, "reply to {command:?}");
}

/// Sends `command` without half-closing and expects the host to end the
/// process (the connection closes with no reply) for `limit`, logged in one
/// kill line naming the app, the pid and the limit. Returns that line.
#[track_caller]
fn assert_ended_by(server: &Server, command: &str, limit: &str) -> String {
    let mut stream = connect(server.addr("hog"));
    stream.write_all(format!("{command}\n").as_bytes()).unwrap();
    let got = read_until_closed(&mut stream);
    assert_bytes_eq(&format!("reply to {command:?}"), b"", &got);
    let line = server.wait_for_log("process killed", DEADLINE);
    for needle in [r#"app="hog""#, "pid=", &format!(r#"limit="{limit}""#)] {
        assert!(line.contains(needle), "expected {needle:?} in:\n{line}");
    }
    line
}

/// The host goes on: still running, and echo beside the hog answers.
#[track_caller]
fn assert_host_goes_on(server: &Server) {
    server.assert_alive();
    let got = roundtrip(server.addr("echo"), b"still here\n");
    assert_bytes_eq("echo beside the hog", b"still here\n", &got);
}

// ---------------------------------------------------------------------------
// CPU time in all and lifetime.

#[test]
fn max_cpu_ends_a_process_that_sleeps_between_slices() {
    // Each 20 ms slice is far under the 5 s CPU budget, and each 1 ms sleep
    // starts that budget over: only the CPU time in all can end it.
    let server = serve_hog(&args!["--max-cpu", "300ms"]);
    let line = assert_ended_by(&server, "cpu-sleep 20", "max-cpu");
    assert!(line.contains("used 300ms of CPU time in all"), "{line}");
    assert_host_goes_on(&server);
}

#[test]
fn max_cpu_ends_a_process_that_moves_bytes_between_slices() {
    // A byte through its own pipe between slices: no block, but bytes move,
    // which also starts the CPU budget over.
    let server = serve_hog(&args!["--max-cpu", "300ms"]);
    assert_ended_by(&server, "cpu-pipe 20", "max-cpu");
    assert_host_goes_on(&server);
}

#[test]
fn max_cpu_answers_504_over_http() {
    let server = serve_hog(&args!["--http", "hog", "--max-cpu", "300ms"]);
    let mut stream = connect(server.addr("hog"));
    stream
        .write_all(b"GET /?cpu-sleep HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let response = read_response(&mut BufReader::new(stream));
    assert_eq!(response.status, 504, "{}", response.text());
    server.wait_for_log(r#"limit="max-cpu""#, DEADLINE);
    server.assert_alive();
}

#[test]
fn max_wall_ends_a_process_blocked_forever() {
    let server = serve_hog(&args!["--max-wall", "1s"]);
    let line = assert_ended_by(&server, "sleep", "max-wall");
    assert!(line.contains("lived for 1s"), "{line}");
    assert_host_goes_on(&server);
}

#[test]
fn max_wall_ends_a_process_waiting_for_its_client() {
    // The echo process waits in `read` for a client that never sends.
    let server = Server::start(&[("echo", guest("echo"))], &args!["--max-wall", "1s"]);
    let mut stream = connect(server.addr("echo"));
    let got = read_until_closed(&mut stream);
    assert_bytes_eq("echo to a silent client", b"", &got);
    let line = server.wait_for_log("process killed", DEADLINE);
    assert!(line.contains(r#"limit="max-wall""#), "{line}");
    server.assert_alive();
}

// ---------------------------------------------------------------------------
// Children per process tree.

#[test]
fn spawn_returns_limit_at_max_children_for_each_connection() {
    let server = serve_hog(&args!["--max-children", "5"]);
    assert_reply(&server, "spawn", &["count 5", "error -6"]);
    // The first tree's five sleepers live on (60 s); a second connection
    // has a quota of its own.
    assert_reply(&server, "spawn", &["count 5", "error -6"]);
    assert_host_goes_on(&server);
}

#[test]
fn grandchildren_count_against_the_same_tree() {
    let server = serve_hog(&args!["--max-children", "5"]);
    // The child itself is one of the five.
    assert_reply(&server, "spawn-nested", &["count 4", "error -6"]);
}

#[test]
fn orphans_keep_counting_until_they_end() {
    let server = serve_hog(&args!["--max-children", "5"]);
    // A child spawns 3 sleepers and exits: they count on, the child does not.
    assert_reply(&server, "orphans 3", &["orphaned 3", "count 2", "error -6"]);
}

#[test]
fn an_orphan_keeps_running_after_its_parent_ends() {
    let server = serve_hog(&[]);
    // The grandchild answers only once its parent has ended.
    assert_reply(&server, "orphan-alive", &["orphan alive"]);
}

// ---------------------------------------------------------------------------
// Host memory.

#[test]
fn pipe_writes_return_limit_past_max_host_memory() {
    // 200 KiB: three 64 KiB pipes fill, the fourth takes 8 KiB (a short
    // write), then `limit`. Without the budget the pipes would fill until
    // the handle limit: 511 × 64 KiB.
    let server = serve_hog(&args!["--max-host-memory", "200KiB"]);
    assert_reply(
        &server,
        "fill",
        &["pipes 4", "filled 204800", "last_write 8192", "error -6"],
    );
    // The bytes went with the process: the next one has the whole budget.
    assert_reply(
        &server,
        "fill",
        &["pipes 4", "filled 204800", "last_write 8192", "error -6"],
    );
    assert_host_goes_on(&server);
}

#[test]
fn the_default_host_memory_is_sixteen_pipe_buffers() {
    let server = serve_hog(&args!["--pipe-buffer", "16KiB"]);
    // 16 × 16 KiB = 256 KiB: sixteen pipes fill, the seventeenth gets nothing.
    assert_reply(
        &server,
        "fill 16384",
        &["pipes 17", "filled 262144", "last_write 16384", "error -6"],
    );
}

#[test]
fn wasi_stdin_fails_with_eio_while_host_memory_is_full() {
    let server = serve_hog(&args!["--max-host-memory", "200KiB"]);
    // Read through WASI stdin, the rest of the stream is the line after the
    // command: refused (EIO, 29 in WASI) while the pipes hold the whole
    // budget, read once they are closed.
    let got = roundtrip(server.addr("hog"), b"fill-stdin\nafter\n");
    assert_bytes_eq(
        "fill-stdin",
        b"error -6\nstdin_full errno 29\nstdin_after after\n",
        &got,
    );
    assert_host_goes_on(&server);
}

// ---------------------------------------------------------------------------
// One transfer.

/// Grows its micro-heap to exactly 2 GiB and writes all of it to the
/// connection in one `write`, then the result as 4 little-endian bytes.
const WHOLE_HEAP_WAT: &str = r#"
(module
  (import "mnvkd" "write" (func $write (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $n i32)
    (if (i32.eq (memory.grow (i32.const 32767)) (i32.const -1))
      (then unreachable))
    (local.set $n (call $write (i32.const 0) (i32.const 0) (i32.const 0x80000000)))
    (i32.store (i32.const 0) (local.get $n))
    (drop (call $write (i32.const 0) (i32.const 0) (i32.const 4)))))
"#;

#[test]
fn one_write_moves_at_most_1gib_and_its_count_is_never_an_error_code() {
    let dir = TempDir::new();
    let wasm = dir.write("wholeheap.wat", WHOLE_HEAP_WAT);
    let server = Server::start(
        &[("wholeheap", wasm)],
        &args!["--max-memory", "2GiB", "--max-processes", "2"],
    );
    let mut stream = connect(server.addr("wholeheap"));
    let (mut total, mut tail) = (0u64, Vec::new());
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = stream
            .read(&mut buf)
            .unwrap_or_else(|err| panic!("read failed after {total} bytes: {err}"));
        if n == 0 {
            break;
        }
        total += n as u64;
        tail.extend_from_slice(&buf[..n]);
        let keep = tail.len().saturating_sub(4);
        tail.drain(..keep);
    }
    let result = i32::from_le_bytes(tail.try_into().expect("at least 4 bytes"));
    assert_eq!(result, 1 << 30, "the count `write` returned");
    assert_eq!(total, (1 << 30) + 4, "bytes received");
    assert!(!server.log().contains("process killed"), "{}", server.log());
}
