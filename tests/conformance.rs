//! One behaviour, every language: the same checks against the guest of each
//! language (Rust, WAT, C, Zig, AssemblyScript; `docs/guests.md`), reported
//! as a pass/fail matrix guest × check. A guest that is missing (its
//! toolchain was not installed: `scripts/install-toolchains`) fails its cells.

use std::any::Any;
use std::fmt::Write as _;
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{
    self, assert_bytes_eq, connect, guest, read_response, read_until_closed, roundtrip,
    with_start_deadline, Response, Server, DEADLINE,
};

/// What a guest is, and so which checks apply to it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Echoes its connection (layer 1 imports, or plain WASI stdio).
    Echo,
    /// A CGI hello, served with `--http`.
    Cgi,
    /// A hello that speaks HTTP/1.1 itself over its connection.
    Http,
    /// Reads a line, then traps.
    Trap,
    /// A `wasi:http/proxy` component (served over HTTP without a flag);
    /// its hello is `hello from <app>`.
    Proxy,
}

/// The guests: language, app name, kind.
const GUESTS: &[(&str, &str, Kind)] = &[
    ("rust", "echo", Kind::Echo),
    ("rust", "echo-wasi", Kind::Echo),
    ("rust", "hello-cgi", Kind::Cgi),
    ("rust", "hello-http", Kind::Http),
    ("rust", "trap", Kind::Trap),
    ("rust", "hello-http-p2", Kind::Proxy),
    ("python", "hello-http-py", Kind::Proxy),
    ("js", "hello-http-js", Kind::Proxy),
    ("wat", "echo-wat", Kind::Echo),
    ("wat", "hello-cgi-wat", Kind::Cgi),
    ("c", "echo-c", Kind::Echo),
    ("c", "echo-wasi-c", Kind::Echo),
    ("c", "hello-cgi-c", Kind::Cgi),
    ("c", "hello-http-c", Kind::Http),
    ("c", "trap-c", Kind::Trap),
    ("zig", "echo-zig", Kind::Echo),
    ("zig", "echo-wasi-zig", Kind::Echo),
    ("zig", "hello-cgi-zig", Kind::Cgi),
    ("zig", "trap-zig", Kind::Trap),
    ("as", "echo-as", Kind::Echo),
    ("as", "echo-wasi-as", Kind::Echo),
    ("as", "hello-cgi-as", Kind::Cgi),
    ("as", "trap-as", Kind::Trap),
];

/// A check: its column name, the kinds it applies to, and the check itself
/// (panics on failure).
type Check = (&'static str, &'static [Kind], fn(&Server, &str));

const CHECKS: &[Check] = &[
    ("bytes", &[Kind::Echo], every_byte_value),
    ("1MiB", &[Kind::Echo], one_mebibyte),
    ("half-close", &[Kind::Echo], half_close_then_eof),
    ("50-conns", &[Kind::Echo], fifty_concurrent_connections),
    (
        "http-hello",
        &[Kind::Cgi, Kind::Http, Kind::Proxy],
        http_hello,
    ),
    (
        "http-keepalive",
        &[Kind::Cgi, Kind::Http, Kind::Proxy],
        http_keep_alive,
    ),
    ("trap", &[Kind::Trap], trap_is_contained),
];

/// A guest beside every trap guest, which must keep working.
const BYSTANDER: &str = "echo";

#[test]
fn every_language_passes_the_same_checks() {
    // One server for the connection apps, one for the CGI apps; a guest that
    // is missing is left out and fails its cells.
    let mut missing = Vec::new();
    let mut apps = |kinds: &[Kind]| -> Vec<(&str, _)> {
        GUESTS
            .iter()
            .filter(|(_, _, kind)| kinds.contains(kind))
            .filter_map(|&(_, name, _)| match guest_path(name) {
                Ok(path) => Some((name, path)),
                Err(err) => {
                    missing.push((name, err));
                    None
                }
            })
            .collect()
    };
    let conn_apps = apps(&[Kind::Echo, Kind::Http, Kind::Trap, Kind::Proxy]);
    let cgi_apps = apps(&[Kind::Cgi]);
    // The Python and JavaScript components take seconds to compile: the
    // compiled-module cache and start deadline of `components_lang`.
    let cache = crate::components_lang::cache_home();
    std::fs::create_dir_all(&cache).unwrap();
    let conn_server = with_start_deadline(crate::components_lang::COMPILE_DEADLINE, || {
        Server::start_with_env(
            &conn_apps,
            &[],
            &[("XDG_CACHE_HOME", cache.as_os_str() as &std::ffi::OsStr)],
        )
    });
    let http_flags: Vec<_> = cgi_apps
        .iter()
        .flat_map(|(name, _)| args!["--http", name])
        .collect();
    let cgi_server = Server::start(&cgi_apps, &http_flags);

    let mut failures = Vec::new();
    let mut rows = Vec::new();
    for &(language, name, kind) in GUESTS {
        let server = if kind == Kind::Cgi {
            &cgi_server
        } else {
            &conn_server
        };
        let cells: Vec<&str> = CHECKS
            .iter()
            .map(|&(check, applies_to, run)| {
                if !applies_to.contains(&kind) {
                    return "-";
                }
                if let Some((_, err)) = missing.iter().find(|(app, _)| *app == name) {
                    failures.push(format!("{name} {check}: {err}"));
                    return "FAIL";
                }
                match panic::catch_unwind(AssertUnwindSafe(|| run(server, name))) {
                    Ok(()) => "pass",
                    Err(payload) => {
                        failures.push(format!("{name} {check}: {}", panic_message(&*payload)));
                        "FAIL"
                    }
                }
            })
            .collect();
        rows.push((language, name, cells));
    }
    conn_server.assert_alive();
    cgi_server.assert_alive();

    let matrix = render(&rows);
    println!("{matrix}");
    assert!(
        failures.is_empty(),
        "{} failed cells:\n{matrix}\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `guests/<name>.wasm`, or why it is not there.
fn guest_path(name: &str) -> Result<std::path::PathBuf, String> {
    panic::catch_unwind(|| guest(name)).map_err(|payload| panic_message(&*payload))
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panicked".to_owned())
}

/// The matrix as a text table: language, guest, then one column per check.
fn render(rows: &[(&str, &str, Vec<&str>)]) -> String {
    let name_width = rows
        .iter()
        .map(|(_, name, _)| name.len())
        .max()
        .unwrap_or(0);
    let mut out = format!("{:<8} {:<name_width$}", "language", "guest");
    for (check, _, _) in CHECKS {
        write!(out, "  {check}").unwrap();
    }
    out.push('\n');
    for (language, name, cells) in rows {
        write!(out, "{language:<8} {name:<name_width$}").unwrap();
        for ((check, _, _), cell) in CHECKS.iter().zip(cells) {
            write!(out, "  {cell:<width$}", width = check.len()).unwrap();
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
    }
    out
}

// --- Echo checks.

fn every_byte_value(server: &Server, app: &str) {
    let mut payload: Vec<u8> = (0..=255).collect();
    payload.extend((0..=255u8).rev());
    payload.extend_from_slice(b"\r\n\0\n");
    let got = roundtrip(server.addr(app), &payload);
    assert_bytes_eq(&format!("{app} echo of all byte values"), &payload, &got);
}

fn one_mebibyte(server: &Server, app: &str) {
    let payload = util::pseudo_random_bytes(app.len() as u64, 1 << 20);
    let got = roundtrip(server.addr(app), &payload);
    assert_bytes_eq(&format!("{app} echo of 1 MiB"), &payload, &got);
}

/// An echo answers while the connection is open, echoes what came before the
/// client's half-close, then ends with EOF (also used by `echo.rs`).
pub(crate) fn half_close_then_eof(server: &Server, app: &str) {
    let mut stream = connect(server.addr(app));
    stream.write_all(b"before\n").unwrap();
    let mut got = [0; 7];
    stream
        .read_exact(&mut got)
        .unwrap_or_else(|err| panic!("{app}: no echo while open: {err}"));
    assert_bytes_eq(&format!("{app} echo while open"), b"before\n", &got);

    stream.write_all(b"last words\n").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    stream
        .read_to_end(&mut rest)
        .unwrap_or_else(|err| panic!("{app}: failed to read to end after half-close: {err}"));
    assert_bytes_eq(
        &format!("{app} echo after half-close"),
        b"last words\n",
        &rest,
    );
    assert_eq!(stream.read(&mut got).unwrap(), 0, "{app}: data after EOF");
}

fn fifty_concurrent_connections(server: &Server, app: &str) {
    const CONNECTIONS: usize = 50;
    // Every connection is open and has sent before any is read, so all 50
    // processes are alive at once; each payload fits in the socket buffers.
    let conns: Vec<(TcpStream, Vec<u8>)> = (0..CONNECTIONS)
        .map(|i| {
            let mut payload = format!("connection {i} to {app}:").into_bytes();
            payload.extend(util::pseudo_random_bytes(2000 + i as u64, 2000));
            let mut stream = connect(server.addr(app));
            stream
                .write_all(&payload)
                .unwrap_or_else(|err| panic!("{app} connection {i}: failed to send: {err}"));
            (stream, payload)
        })
        .collect();
    thread::scope(|scope| {
        for (i, (mut stream, payload)) in conns.into_iter().enumerate() {
            scope.spawn(move || {
                let mut got = vec![0; payload.len()];
                stream.read_exact(&mut got).unwrap_or_else(|err| {
                    panic!("{app} connection {i}: failed to read its echo: {err}")
                });
                assert_bytes_eq(&format!("{app} connection {i}"), &payload, &got);
                stream.shutdown(Shutdown::Write).unwrap();
                let mut rest = Vec::new();
                stream.read_to_end(&mut rest).unwrap_or_else(|err| {
                    panic!("{app} connection {i}: failed to read to end: {err}")
                });
                assert_bytes_eq(&format!("{app} connection {i} after its echo"), b"", &rest);
            });
        }
    });
}

// --- HTTP checks (CGI apps and guests that speak HTTP themselves).

#[track_caller]
fn assert_hello(app: &str, response: &Response) {
    assert_eq!(response.status, 200, "{app}: status");
    assert_eq!(
        response.header("content-type"),
        Some("text/plain"),
        "{app}: Content-Type in {:?}",
        response.headers
    );
    let proxy = GUESTS
        .iter()
        .any(|&(_, name, kind)| name == app && kind == Kind::Proxy);
    let expected = if proxy {
        format!("hello from {app}\n")
    } else {
        "Hello, World!\n".to_owned()
    };
    assert_bytes_eq(&format!("{app} body"), expected.as_bytes(), &response.body);
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

fn http_hello(server: &Server, app: &str) {
    let mut stream = connect(server.addr(app));
    stream.write_all(get("/").as_bytes()).unwrap();
    let response = read_response(&mut BufReader::new(&stream));
    assert_hello(app, &response);
}

/// Three requests on one connection, the last two pipelined, then the client
/// half-closes and the host closes after the last response.
fn http_keep_alive(server: &Server, app: &str) {
    let mut stream = connect(server.addr(app));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    stream.write_all(get("/one").as_bytes()).unwrap();
    assert_hello(app, &read_response(&mut reader));
    stream
        .write_all(format!("{}{}", get("/two"), get("/three?x=1")).as_bytes())
        .unwrap();
    assert_hello(app, &read_response(&mut reader));
    assert_hello(app, &read_response(&mut reader));
    stream.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    reader
        .read_to_end(&mut rest)
        .unwrap_or_else(|err| panic!("{app}: failed to read to end: {err}"));
    assert_bytes_eq(&format!("{app} after the last response"), b"", &rest);
}

// --- Trap check.

/// The trap guest's connection is closed with nothing sent, the log has a
/// kill line for it, and an echo guest beside it still answers.
fn trap_is_contained(server: &Server, app: &str) {
    let mut stream = connect(server.addr(app));
    stream.write_all(b"go\n").unwrap();
    // The client never half-closes: the host must close on its own.
    let got = read_until_closed(&mut stream);
    assert_bytes_eq(&format!("{app} output"), b"", &got);
    wait_for_kill(server, &format!("app=\"{app}\""));
    let echoed = roundtrip(server.addr(BYSTANDER), b"unharmed\n");
    assert_bytes_eq(&format!("{BYSTANDER} beside {app}"), b"unharmed\n", &echoed);
    server.assert_alive();
}

/// Waits for a `process killed` line naming `app_field` with `unreachable`
/// (the connection may close just before the line is logged).
fn wait_for_kill(server: &Server, app_field: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let log = server.log();
        if let Some(line) = log
            .lines()
            .find(|line| line.contains("process killed") && line.contains(app_field))
        {
            assert!(
                line.contains("unreachable"),
                "expected a trap on `unreachable` in the kill line:\n{line}"
            );
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no `process killed` line with {app_field} within {DEADLINE:?}\n{log}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}
