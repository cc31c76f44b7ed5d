//! A guest that traps, runs out of micro-heap or overflows its stack loses
//! only its own process: its connection is closed, the log says why, the next
//! connection gets a fresh process, and other apps are untouched.

use std::ffi::OsString;
use std::io::Write;

use crate::util::{
    assert_bytes_eq, connect, guest, read_until_closed, roundtrip, Server, DEADLINE,
};

/// Sends `app` a line twice, on two connections, and checks each time that
/// the process was killed with a log line containing `needles`, while an echo
/// app beside it keeps working.
fn only_the_failing_process_dies(app: &str, extra: &[OsString], needles: &[&str]) {
    let server = Server::start(&[(app, guest(app)), ("echo", guest("echo"))], extra);
    let app_field = format!("app=\"{app}\"");
    let mut pids = Vec::new();
    for round in 1..=2 {
        let mut stream = connect(server.addr(app));
        stream.write_all(b"go\n").unwrap();
        // The client never half-closes: the host must close on its own.
        let got = read_until_closed(&mut stream);
        assert_bytes_eq(&format!("{app} output, connection {round}"), b"", &got);

        let line = server
            .wait_for_logs("process killed", round, DEADLINE)
            .remove(round - 1);
        for needle in needles.iter().copied().chain([app_field.as_str()]) {
            assert!(
                line.contains(needle),
                "connection {round}: expected {needle:?} in the kill line:\n{line}"
            );
        }
        pids.push(pid_of(&line));

        let echoed = roundtrip(server.addr("echo"), b"unharmed\n");
        assert_bytes_eq(
            &format!("echo beside {app}, round {round}"),
            b"unharmed\n",
            &echoed,
        );
        server.assert_alive();
    }
    assert_ne!(pids[0], pids[1], "each connection has its own process");
}

/// The `pid=N` field of a log line.
#[track_caller]
fn pid_of(line: &str) -> u64 {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix("pid="))
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid=N in {line:?}"))
}

#[test]
fn a_trap_kills_only_its_process() {
    only_the_failing_process_dies(
        "trap",
        &[],
        &[
            "wasm `unreachable` instruction executed",
            "trap::fail_on_purpose",
        ],
    );
}

#[test]
fn running_out_of_micro_heap_kills_only_its_process() {
    only_the_failing_process_dies(
        "oom",
        &args!["--max-memory", "16MiB"],
        &["the micro-heap limit of 16MiB was reached"],
    );
}

#[test]
fn a_stack_overflow_kills_only_its_process() {
    only_the_failing_process_dies("stack", &[], &["call stack exhausted", "stack::recurse"]);
}
