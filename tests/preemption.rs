//! A process that computes without blocking is preempted, so it cannot starve
//! the others even on one worker thread, and is killed once it has computed
//! for its CPU budget.

use std::io::{self, Read};
use std::net::TcpStream;

use crate::util::{
    assert_bytes_eq, connect, guest, read_until_closed, roundtrip, Server, TempDir, DEADLINE,
};

/// Says `spinning` on its connection, then loops forever: unlike the `spin`
/// guest, it tells the test that it has started.
const SPINNER_WAT: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "spinning\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 9))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (loop $forever (br $forever))))
"#;

/// Asserts that the host has not closed `stream`: nothing to read, no EOF.
#[track_caller]
fn assert_open(what: &str, stream: &TcpStream) {
    stream.set_nonblocking(true).unwrap();
    let mut buf = [0; 16];
    match (&*stream).read(&mut buf) {
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
        other => panic!("{what}: expected an open, silent connection, got {other:?}"),
    }
    stream.set_nonblocking(false).unwrap();
}

#[test]
fn spinning_processes_do_not_starve_an_echo_on_one_thread() {
    let dir = TempDir::new();
    let spinner = dir.write("spinner.wat", SPINNER_WAT);
    let server = Server::start(
        &[
            ("spin", guest("spin")),
            ("spinner", spinner),
            ("echo", guest("echo")),
        ],
        &args!["--threads", "1", "--cpu-budget", "60m"],
    );
    let mut spinners: Vec<TcpStream> = (0..2).map(|_| connect(server.addr("spinner"))).collect();
    // Both spinners ran up to their loop: the second could only start if the
    // first, which never blocks, was preempted on the only worker.
    for (i, stream) in spinners.iter_mut().enumerate() {
        let mut hello = [0; 9];
        stream
            .read_exact(&mut hello)
            .unwrap_or_else(|err| panic!("spinner {i} never started: {err}"));
        assert_bytes_eq(&format!("spinner {i}"), b"spinning\n", &hello);
    }
    let spins: Vec<TcpStream> = (0..2).map(|_| connect(server.addr("spin"))).collect();

    let got = roundtrip(server.addr("echo"), b"still served\n");
    assert_bytes_eq("echo beside spinning processes", b"still served\n", &got);

    // The spinning processes were preempted, not killed.
    for (i, stream) in spinners.iter().enumerate() {
        assert_open(&format!("spinner {i}"), stream);
    }
    for (i, stream) in spins.iter().enumerate() {
        assert_open(&format!("spin {i}"), stream);
    }
    assert!(
        !server.log().contains("process killed"),
        "no process should have been killed:\n{}",
        server.log()
    );
    server.assert_alive();
}

#[test]
fn a_process_over_its_cpu_budget_is_killed_and_the_host_goes_on() {
    let server = Server::start(
        &[("spin", guest("spin")), ("echo", guest("echo"))],
        &args!["--cpu-budget", "300ms"],
    );
    let mut stream = connect(server.addr("spin"));
    let got = read_until_closed(&mut stream);
    assert_bytes_eq("spin output", b"", &got);

    let line = server.wait_for_log("cpu budget", DEADLINE);
    assert!(line.contains("process killed"), "{line}");
    assert!(line.contains(r#"app="spin""#), "{line}");
    assert!(
        line.contains("computed for 300ms without blocking"),
        "{line}"
    );

    server.assert_alive();
    let got = roundtrip(server.addr("echo"), b"after the kill\n");
    assert_bytes_eq("echo after a cpu-budget kill", b"after the kill\n", &got);
}
