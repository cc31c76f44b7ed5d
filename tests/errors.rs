//! Start-up errors: every bad module, flag, manifest or address ends `serve`
//! with exit status 2 and one `error: …` line naming what was wrong.

use std::ffi::OsString;
use std::net::TcpListener;
use std::path::Path;

use crate::util::{guest, run_fail, TempDir};

/// Exit status for usage and host errors.
const HOST_ERROR: i32 = 2;

/// `serve --listen APP=127.0.0.1:0 PATH`: never a fixed port, even if the
/// module were wrongly accepted.
fn serve_args(path: &Path) -> Vec<OsString> {
    let app = path.file_stem().unwrap().to_str().unwrap();
    args!["serve", "--listen", format!("{app}=127.0.0.1:0"), path]
}

/// Expects exit status 2 and exactly one stderr line, `error: …`, containing
/// every one of `needles`, besides `INFO` log lines about what went well
/// before (an app that loaded before its address was found taken).
#[track_caller]
fn assert_host_error(args: &[OsString], needles: &[&str]) {
    let (code, stderr) = run_fail(args, b"");
    assert_eq!(
        code, HOST_ERROR,
        "exit status of {args:?}\nstderr:\n{stderr}"
    );
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.contains(" INFO "))
        .collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("error: "),
        "expected exactly one line `error: …` from {args:?}, got:\n{stderr}"
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "expected {needle:?} in the error of {args:?}, got:\n{stderr}"
        );
    }
}

/// `` `path` `` as the host quotes it.
fn quoted(path: &Path) -> String {
    format!("`{}`", path.display())
}

#[test]
fn a_file_that_is_not_wasm_is_refused() {
    let dir = TempDir::new();
    let mut bytes = crate::util::pseudo_random_bytes(42, 512);
    bytes[0] = 0xff; // never the `\0asm` magic
    let path = dir.write("garbage.wasm", bytes);
    assert_host_error(
        &serve_args(&path),
        &[&quoted(&path), "is not a valid WebAssembly module"],
    );
}

#[test]
fn a_component_of_no_served_world_is_refused_with_what_it_must_export() {
    let dir = TempDir::new();
    // The smallest component: its header alone, exporting nothing.
    let path = dir.write("component.wasm", b"\0asm\x0d\x00\x01\x00");
    assert_host_error(
        &serve_args(&path),
        &[
            &format!("failed to load the component {}", quoted(&path)),
            "exports neither `wasi:http/incoming-handler`",
            "nor `wasi:cli/run`",
            "it exports nothing",
        ],
    );
}

#[test]
fn a_missing_file_is_refused() {
    let dir = TempDir::new();
    let path = dir.join("missing.wasm");
    assert_host_error(
        &serve_args(&path),
        &[&format!("failed to read {}", quoted(&path))],
    );
}

#[test]
fn a_module_with_an_unknown_import_is_refused() {
    let dir = TempDir::new();
    let path = dir.write(
        "imports.wat",
        r#"(module
             (import "env" "f" (func))
             (memory (export "memory") 1)
             (func (export "_start")))"#,
    );
    assert_host_error(
        &serve_args(&path),
        &[
            &quoted(&path),
            "unknown import: `env::f` has not been defined",
        ],
    );
}

#[test]
fn a_module_without_start_is_refused() {
    let dir = TempDir::new();
    let path = dir.write("library.wat", r#"(module (memory (export "memory") 1))"#);
    assert_host_error(
        &serve_args(&path),
        &[&format!("{} has no `_start` export", quoted(&path))],
    );
}

#[test]
fn an_address_in_use_is_refused() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    assert_host_error(
        &args!["serve", "--listen", format!("echo={addr}"), guest("echo")],
        &[&format!("failed to listen on `{addr}` for app `echo`")],
    );
    drop(taken);
}

#[test]
fn zero_threads_is_a_usage_error() {
    let echo = guest("echo");
    let mut args = serve_args(&echo);
    args.extend(args!["--threads", "0"]);
    let (code, stderr) = run_fail(&args, b"");
    assert_eq!(code, HOST_ERROR, "stderr:\n{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("--threads"), "{stderr}");
}

#[test]
fn an_unknown_flag_is_a_usage_error() {
    let echo = guest("echo");
    let mut args = serve_args(&echo);
    args.extend(args!["--no-such-flag"]);
    let (code, stderr) = run_fail(&args, b"");
    assert_eq!(code, HOST_ERROR, "stderr:\n{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
}

#[test]
fn a_manifest_with_an_unknown_key_is_refused() {
    let dir = TempDir::new();
    let wasm = dir.join("echo.wasm");
    std::fs::copy(guest("echo"), &wasm).unwrap();
    let manifest = dir.write("echo.toml", "max_memroy = \"1MiB\"\n");
    let (code, stderr) = run_fail(&serve_args(&wasm), b"");
    assert_eq!(code, HOST_ERROR, "stderr:\n{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(&quoted(&manifest)), "{stderr}");
    assert!(stderr.contains("max_memroy"), "{stderr}");
}
