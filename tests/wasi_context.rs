//! The WASI preview-1 context is built on a guest's first call that needs
//! it: a module that imports no WASI runs without one, and one built late
//! serves arguments, stdout and the clock as one built at start would.

use crate::util::{assert_bytes_eq, run_ok, TempDir};

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
