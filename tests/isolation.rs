//! A guest that traps, runs out of micro-heap, overflows its stack or
//! reaches outside its micro-heap loses only its own process: its
//! connection is closed, the log says why, the next connection gets a fresh
//! process, and other apps are untouched.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::net::SocketAddr;

use crate::util::{
    assert_bytes_eq, connect, guest, read_until_closed, roundtrip, Server, TempDir, DEADLINE,
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

/// Loads or stores 4 bytes where its client says, or grows its micro-heap
/// by a page: a command is `l`, `s` or `g` and a little-endian u32 address;
/// `ok` when done. An access outside the heap traps and ends the process.
const PROBE: &str = r#"(module
  (import "mnvkd" "read" (func $read (param i32 i32 i32) (result i32)))
  (import "mnvkd" "write" (func $write (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "ok\n")
  (func (export "_start")
    (local $got i32) (local $n i32) (local $at i32)
    (loop $command
      ;; The command's 5 bytes, at 16.
      (local.set $got (i32.const 0))
      (loop $more
        (local.set $n (call $read (i32.const 0)
          (i32.add (i32.const 16) (local.get $got)) (i32.sub (i32.const 5) (local.get $got))))
        (if (i32.le_s (local.get $n) (i32.const 0)) (then (return)))
        (local.set $got (i32.add (local.get $got) (local.get $n)))
        (br_if $more (i32.lt_u (local.get $got) (i32.const 5))))
      (local.set $at (i32.load (i32.const 17)))
      (block $done
        (if (i32.eq (i32.load8_u (i32.const 16)) (i32.const 108)) ;; l
          (then (i32.store (i32.const 32) (i32.load (local.get $at))) (br $done)))
        (if (i32.eq (i32.load8_u (i32.const 16)) (i32.const 115)) ;; s
          (then (i32.store (local.get $at) (i32.const -1)) (br $done)))
        (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then (return))))
      (drop (call $write (i32.const 0) (i32.const 0) (i32.const 3)))
      (br $command))))
"#;

/// A probe command: `l`, `s` or `g`, and an address.
type Command = (u8, u32);

/// Runs `commands` on a new probe process; returns how many were answered
/// before the process ended or the commands ran out.
fn probe(addr: SocketAddr, commands: &[Command]) -> usize {
    let mut stream = connect(addr);
    for (done, &(op, at)) in commands.iter().enumerate() {
        let mut command = vec![op];
        command.extend_from_slice(&at.to_le_bytes());
        stream.write_all(&command).unwrap();
        let mut answer = [0; 3];
        if stream.read_exact(&mut answer).is_err() {
            return done;
        }
        assert_eq!(&answer, b"ok\n");
    }
    commands.len()
}

/// Accesses at and past the end of a micro-heap, with guard pages or with
/// bounds checks keeping the guest in: everything inside is served, every
/// access that reaches past the end traps (and only that process ends).
fn accesses_past_the_heap_trap(env: &[(&str, &OsStr)], keeper: &str) {
    const PAGE: u32 = 64 << 10;
    let dir = TempDir::new();
    let server = Server::start_with_env(
        &[
            ("probe", dir.write("probe.wat", PROBE)),
            ("echo", guest("echo")),
        ],
        &[],
        env,
    );
    let table = server.table_line("workers:");
    assert!(table.contains(keeper), "expected {keeper:?} in {table:?}");
    let addr = server.addr("probe");
    let (load, store, grow) = (b'l', b's', b'g');
    let cases: [(&str, &[Command], usize); 6] = [
        (
            "the heap's last 4 bytes, then 4 bytes across its end",
            &[(load, PAGE - 4), (store, PAGE - 4), (load, PAGE - 3)],
            2,
        ),
        ("a store just past the end", &[(store, PAGE)], 0),
        (
            "a load near the largest heap's end",
            &[(load, (16 << 20) - 4)],
            0,
        ),
        (
            "a load at the top of the 32-bit space",
            &[(load, u32::MAX - 3)],
            0,
        ),
        (
            "a page grown, then past it",
            &[(grow, 0), (store, 2 * PAGE - 4), (load, 2 * PAGE - 3)],
            2,
        ),
        (
            "a grown page is the process's own",
            &[(grow, 0), (load, 2 * PAGE - 4)],
            2,
        ),
    ];
    let mut traps = 0;
    for (what, commands, answered) in cases {
        assert_eq!(probe(addr, commands), answered, "{what}");
        if answered < commands.len() {
            traps += 1;
            server.wait_for_logs("out of bounds memory access", traps, DEADLINE);
        }
        assert_bytes_eq(
            what,
            b"still here\n",
            &roundtrip(server.addr("echo"), b"still here\n"),
        );
    }
    server.assert_alive();
}

#[test]
fn with_guard_pages_an_access_past_the_heap_traps() {
    accesses_past_the_heap_trap(&[], "micro-heaps kept by guard pages");
}

#[test]
fn with_bounds_checks_an_access_past_the_heap_traps() {
    accesses_past_the_heap_trap(
        &[("MNVKD_BOUNDS_CHECKS", OsStr::new("explicit"))],
        "micro-heaps kept by bounds checks (as MNVKD_BOUNDS_CHECKS asks)",
    );
}

#[test]
fn where_4_gib_slots_cannot_be_reserved_the_host_checks_bounds() {
    // 100 slots of 4 GiB do not fit in 64 GiB of address space; 100 of
    // 16 MiB do.
    let dir = TempDir::new();
    let server = Server::start_with_address_space(
        &[("probe", dir.write("probe.wat", PROBE))],
        &args!["--max-processes", "100"],
        64 << 30,
    );
    let table = server.table_line("workers:");
    assert!(
        table.contains("micro-heaps kept by bounds checks (4 GiB slots could not be reserved)"),
        "{table}"
    );
    let addr = server.addr("probe");
    assert_eq!(probe(addr, &[(b'l', (64 << 10) - 4), (b'l', 64 << 10)]), 1);
    server.wait_for_log("out of bounds memory access", DEADLINE);
    server.assert_alive();
}
