//! Hot reload: SIGHUP (or `--watch` on a file change) gives new connections
//! the app's new module and manifest, lets live processes finish on the old
//! one, fails no request, and keeps the old version when the new one is bad.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;

use crate::util::{connect, guest, ClientLoop, Server, TempDir, DEADLINE};

/// What the app at `addr` answers a new connection that sends `ping\n`:
/// the echo version answers `ping\n`, the `log-flood` one `done\n`.
fn answer(addr: SocketAddr) -> Result<String, String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, DEADLINE).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(DEADLINE))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"ping\n")
        .map_err(|e| format!("write: {e}"))?;
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))?;
    let mut got = String::new();
    stream
        .read_to_string(&mut got)
        .map_err(|e| format!("read: {e}"))?;
    Ok(got)
}

/// Replaces `to` with `from` at once (a rename), as a deploy would.
pub(crate) fn install(from: &Path, to: &Path) {
    let staged = to.with_extension("staged");
    std::fs::copy(from, &staged).unwrap();
    std::fs::rename(&staged, to).unwrap();
}

/// An app named `app` from a temp dir, first built as the echo guest.
fn echo_app(extra: &[std::ffi::OsString]) -> (TempDir, Server) {
    let dir = TempDir::new();
    let wasm = dir.join("app.wasm");
    std::fs::copy(guest("echo"), &wasm).unwrap();
    let server = Server::start(&[("app", wasm)], extra);
    (dir, server)
}

#[test]
fn sighup_gives_new_connections_the_new_module_and_fails_none() {
    let (dir, server) = echo_app(&[]);
    let addr = server.addr("app");
    let mut live = connect(addr);
    live.write_all(b"old\n").unwrap();
    let mut got = [0; 4];
    live.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"old\n");

    // Connections keep coming while the module is replaced.
    let client = ClientLoop::start(move || match answer(addr) {
        Ok(text) if text == "ping\n" || text == "done\n" => Ok(()),
        other => Err(format!("{other:?}")),
    });
    install(&guest("log-flood"), &dir.join("app.wasm"));
    server.signal(libc::SIGHUP);
    server.wait_for_log("reloaded", DEADLINE);
    client.wait_for_more(20);
    let bad = client.stop();
    assert!(bad.is_empty(), "requests failed across the reload: {bad:?}");
    assert_eq!(
        answer(addr).unwrap(),
        "done\n",
        "a new connection gets the new module"
    );
    // The live process is still the old version.
    live.write_all(b"still\n").unwrap();
    let mut got = [0; 6];
    live.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"still\n");
    server.assert_alive();
}

#[test]
fn a_bad_new_module_keeps_the_old_one_serving() {
    let (dir, server) = echo_app(&[]);
    let addr = server.addr("app");
    std::fs::write(dir.join("app.wasm"), b"\0asm garbage").unwrap();
    server.signal(libc::SIGHUP);
    let line = server.wait_for_log("reload failed", DEADLINE);
    assert!(
        line.contains("app.wasm"),
        "the reason names the file: {line}"
    );
    assert_eq!(answer(addr).unwrap(), "ping\n");
    // A bad manifest is refused the same way.
    install(&guest("log-flood"), &dir.join("app.wasm"));
    dir.write("app.toml", "max_memroy = \"1MiB\"\n");
    server.signal(libc::SIGHUP);
    let lines = server.wait_for_logs("reload failed", 2, DEADLINE);
    assert!(lines[1].contains("max_memroy"), "{}", lines[1]);
    assert_eq!(answer(addr).unwrap(), "ping\n");
    // Mended, it loads.
    std::fs::remove_file(dir.join("app.toml")).unwrap();
    server.signal(libc::SIGHUP);
    server.wait_for_log("reloaded", DEADLINE);
    assert_eq!(answer(addr).unwrap(), "done\n");
    server.assert_alive();
}

#[test]
fn watch_reloads_when_the_module_changes() {
    let (dir, server) = echo_app(&args!["--watch"]);
    let addr = server.addr("app");
    assert_eq!(answer(addr).unwrap(), "ping\n");
    install(&guest("log-flood"), &dir.join("app.wasm"));
    server.wait_for_log("reloaded", DEADLINE);
    assert_eq!(answer(addr).unwrap(), "done\n");
    server.assert_alive();
}
