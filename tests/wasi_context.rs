//! The WASI preview-1 context is built on a guest's first call that needs
//! it: a module that imports no WASI runs without one, and one built late
//! serves arguments, stdout and the clock as one built at start would. A
//! connection's process finds the connection's two ends in its environment.

use std::io::Read;
use std::net::Shutdown;

use crate::util::{app_with_manifest, assert_bytes_eq, connect, run_fail, run_ok, Server, TempDir};

/// The README's promise to a plain WASI guest: `REMOTE_ADDR`, `REMOTE_PORT`,
/// `SERVER_ADDR` and `SERVER_PORT` name its connection's client and the
/// address it connected to, beside the app's own variables.
#[test]
fn a_connections_process_finds_its_peers_in_its_environment() {
    let dir = TempDir::new();
    // cgi-probe prints its environment, sorted, when PATH_INFO is `/env`;
    // without `kind = "http"` it is served a process per connection, its
    // stdin the socket, which it reads to the end first.
    let probe = app_with_manifest(&dir, "cgi-probe", "probe", "[env]\nPATH_INFO = \"/env\"\n");
    let server = Server::start(&[("probe", probe)], &[]);
    let addr = server.addr("probe");
    for _ in 0..2 {
        let mut stream = connect(addr);
        let client = stream.local_addr().unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        let expected = format!(
            "Content-Type: text/plain\r\n\r\n\
             PATH_INFO=/env\n\
             REMOTE_ADDR={}\nREMOTE_PORT={}\n\
             SERVER_ADDR={}\nSERVER_PORT={}\n\
             BODY-LENGTH=0\n",
            client.ip(),
            client.port(),
            addr.ip(),
            addr.port()
        );
        assert_eq!(out, expected, "the environment of a connection's process");
    }
}

#[test]
fn a_module_that_imports_no_wasi_runs() {
    let dir = TempDir::new();
    let path = dir.write(
        "no-wasi.wat",
        r#"(module
             (import "mnvkd" "write" (func $write (param i32 i32 i32) (result i32)))
             (memory (export "memory") 1)
             (data (i32.const 16) "no wasi\n")
             (func (export "_start")
               (if (i32.ne (call $write (i32.const 0) (i32.const 16) (i32.const 8)) (i32.const 8))
                 (then unreachable))))"#,
    );
    let stdout = run_ok(&args!["run", path], b"");
    assert_bytes_eq("stdout of a module without WASI", b"no wasi\n", &stdout);
}

/// Calls the host's own clock first (no context needed), then asks
/// wasmtime-wasi for its arguments (the context is built then) and writes
/// `argv[1]` to stdout; traps if any call fails.
const ARGV1: &str = r#"(module
  (import "wasi_snapshot_preview1" "clock_time_get"
    (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get"
    (func $args (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $write (param i32 i32 i32 i32) (result i32)))
  ;; 0: argc, 4: argv bytes, 16: argv, 64: clock, 128: iovec, 136: written, 256: argv bytes
  (memory (export "memory") 1)
  (func $check (param i32) (if (local.get 0) (then unreachable)))
  (func (export "_start")
    (call $check (call $clock (i32.const 1) (i64.const 0) (i32.const 64)))
    (if (i64.eqz (i64.load (i32.const 64))) (then unreachable))
    (call $check (call $sizes (i32.const 0) (i32.const 4)))
    (if (i32.ne (i32.load (i32.const 0)) (i32.const 3)) (then unreachable))
    (call $check (call $args (i32.const 16) (i32.const 256)))
    ;; argv[1] runs from its pointer to argv[2]'s, less its NUL.
    (i32.store (i32.const 128) (i32.load (i32.const 20)))
    (i32.store (i32.const 132)
      (i32.sub (i32.sub (i32.load (i32.const 24)) (i32.load (i32.const 20))) (i32.const 1)))
    (call $check (call $write (i32.const 1) (i32.const 128) (i32.const 1) (i32.const 136)))))"#;

#[test]
fn a_wasi_context_built_late_serves_args_stdout_and_the_clock() {
    let dir = TempDir::new();
    let path = dir.write("argv1.wat", ARGV1);
    let stdout = run_ok(&args!["run", path, "hello", "world"], b"");
    assert_bytes_eq("stdout of argv1", b"hello", &stdout);
}

/// Calls stdio's `fd_read` and `fd_write` as a hostile or careless guest
/// might and writes their errno values (as `'0' + errno`) and what it read
/// to stdout. `BUILD` 1 first asks wasmtime-wasi for something (the WASI
/// context is built, and wasmtime-wasi serves the calls), 0 not (the host
/// serves them without one until the calls on other descriptors at the end).
const STDIO_CALLS: &str = r#"(module
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read"
    (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; iovecs: 16 "x"; 24 empty; 32 read buffer; 40 too long for the fuel; 48 the report
  (data (i32.const 16) "\64\00\00\00\01\00\00\00")
  (data (i32.const 24) "\c8\00\00\00\00\00\00\00")
  (data (i32.const 32) "\c8\00\00\00\10\00\00\00")
  (data (i32.const 40) "\00\00\00\00\00\00\00\09")
  (data (i32.const 48) "\90\01\00\00\0c\00\00\00")
  (data (i32.const 100) "x")
  (func $note (param $at i32) (param $value i32)
    (i32.store8 (local.get $at) (i32.add (local.get $value) (i32.const 48))))
  (func (export "_start")
    (if (i32.const BUILD) (then (drop (call $sizes (i32.const 0) (i32.const 4)))))
    (drop (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 300)))
    (call $note (i32.const 400) (call $read (i32.const 0) (i32.const 24) (i32.const 1) (i32.const 300)))
    (call $note (i32.const 401) (call $read (i32.const 0) (i32.const 32) (i32.const 1) (i32.const 300)))
    (call $note (i32.const 402) (i32.load (i32.const 300)))
    (memory.copy (i32.const 410) (i32.const 200) (i32.const 2))
    (call $note (i32.const 403) (call $read (i32.const 0) (i32.const 32) (i32.const 1) (i32.const 300)))
    (call $note (i32.const 404) (i32.load (i32.const 300)))
    (call $note (i32.const 405) (call $write (i32.const 1) (i32.const 16) (i32.const 0x10000000) (i32.const 300)))
    (call $note (i32.const 406) (call $write (i32.const 1) (i32.const 40) (i32.const 1) (i32.const 300)))
    (call $note (i32.const 407) (call $read (i32.const 5) (i32.const 32) (i32.const 1) (i32.const 300)))
    (call $note (i32.const 408) (call $write (i32.const 7) (i32.const 16) (i32.const 1) (i32.const 300)))
    (call $note (i32.const 409) (call $write (i32.const 2) (i32.const 16) (i32.const 0) (i32.const 300)))
    (drop (call $write (i32.const 1) (i32.const 48) (i32.const 1) (i32.const 300)))))"#;

#[test]
fn stdio_calls_without_a_wasi_context_answer_as_wasmtime_wasi_does() {
    let dir = TempDir::new();
    // x; intr (27); ok, 2 bytes; ok, 0 bytes (the end); nomem (48) twice;
    // badf (8) twice; stderr with no iovecs: ok; the bytes read.
    let expected = b"xK0200``880hi";
    for build in ["0", "1"] {
        let path = dir.write(
            &format!("stdio-{build}.wat"),
            STDIO_CALLS.replace("BUILD", build),
        );
        let stdout = run_ok(&args!["run", path], b"hi");
        assert_bytes_eq(&format!("stdout with BUILD={build}"), expected, &stdout);
    }
}

/// Traps for a bad pointer in `CALL` ([`BAD_CALLS`]). `BUILD` as in
/// [`STDIO_CALLS`].
const BAD_POINTERS: &str = r#"(module
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read"
    (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; 16: a good iovec; 24: one whose buffer is outside the micro-heap
  (data (i32.const 16) "\64\00\00\00\01\00\00\00")
  (data (i32.const 24) "\00\00\ff\ff\10\00\00\00")
  (func (export "_start")
    (if (i32.const BUILD) (then (drop (call $sizes (i32.const 0) (i32.const 4)))))
    (drop CALL)
    ;; Not reached: each case traps.
    (drop (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 300)))))"#;

/// An iovec array outside the micro-heap, a misaligned one, a buffer
/// outside it, a misaligned `nwritten`, a read buffer outside it.
const BAD_CALLS: [&str; 5] = [
    "(call $write (i32.const 1) (i32.const 0xfffffff0) (i32.const 1) (i32.const 300))",
    "(call $write (i32.const 1) (i32.const 18) (i32.const 1) (i32.const 300))",
    "(call $write (i32.const 1) (i32.const 24) (i32.const 1) (i32.const 300))",
    "(call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 301))",
    "(call $read (i32.const 0) (i32.const 24) (i32.const 1) (i32.const 300))",
];

#[test]
fn stdio_calls_with_a_bad_pointer_trap_with_or_without_a_wasi_context() {
    let dir = TempDir::new();
    for build in ["0", "1"] {
        for (case, call) in BAD_CALLS.iter().enumerate() {
            let path = dir.write(
                &format!("bad-{build}-{case}.wat"),
                BAD_POINTERS.replace("BUILD", build).replace("CALL", call),
            );
            let (code, stderr) = run_fail(&args!["run", path], b"hi");
            assert_eq!(code, 1, "BUILD={build} {call}, stderr:\n{stderr}");
        }
    }
}
