//! wasi:http components from other languages' toolchains, served unchanged:
//! `guests/hello-http-py` (a CPython inside, built by componentize-py) and
//! `guests/hello-http-js` (SpiderMonkey inside, built by componentize-js).
//! Each answers GET and POST /echo on one kept-alive connection, pipelined
//! too, and a request whose handler raises gets a 500 while the connection
//! and the host serve on.
//!
//! Both components are large (13-18 MB): a cold compile takes 5-25 s on a
//! 2-core machine, more under the suite's load. So the tests keep the host's
//! compiled-module cache under `target/` across runs (a warm start maps the
//! component in about 0.1 s), give a cold start [`COMPILE_DEADLINE`], and
//! check everything with one server per language.

use std::ffi::OsStr;
use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::time::Duration;

use crate::util::{
    assert_bytes_eq, connect, get, guest, http_get, post, pseudo_random_bytes, read_response,
    repo_root, with_start_deadline, Server, DEADLINE,
};

/// How long a cold start may take to compile a component: a bound against a
/// hang, far above the 25 s one took on a loaded 2-core machine.
pub(crate) const COMPILE_DEADLINE: Duration = Duration::from_secs(300);

/// The cache home these tests share across runs (`XDG_CACHE_HOME`): the host
/// keys a compiled component by its bytes, the host's and wasmtime's versions
/// and the engine's settings, so a rebuilt guest or a changed engine compiles
/// once more, then hits again.
pub(crate) fn cache_home() -> PathBuf {
    repo_root().join("target").join("e2e-component-cache")
}

/// Serves `app` (its `guests/<app>.wasm`) with the shared cache.
fn serve(app: &str) -> Server {
    let cache = cache_home();
    std::fs::create_dir_all(&cache)
        .unwrap_or_else(|err| panic!("failed to create `{}`: {err}", cache.display()));
    with_start_deadline(COMPILE_DEADLINE, || {
        Server::start_with_env(
            &[(app, guest(app))],
            &[],
            &[("XDG_CACHE_HOME", cache.as_os_str() as &OsStr)],
        )
    })
}

/// Everything these tests ask of one language's hello-http component:
/// GET, POST /echo (a body larger than one read), two pipelined requests and
/// a request whose handler raises, all on one kept-alive connection, then a
/// request on a new one.
fn serves_get_echo_keep_alive_and_survives_a_raise(app: &str) {
    let server = serve(app);
    let addr = server.addr(app);
    let greeting = format!("hello from {app}\n");
    let mut stream = connect(addr);
    let mut reader = BufReader::new(stream.try_clone().expect("failed to clone a socket"));

    stream.write_all(&get("/")).unwrap();
    let hello = read_response(&mut reader);
    assert_eq!(hello.status, 200, "{app} GET /: {hello:?}");
    assert_eq!(hello.text(), greeting, "{app} GET /");

    let body = pseudo_random_bytes(14, 200_000);
    stream.write_all(&post("/echo", &body)).unwrap();
    let echo = read_response(&mut reader);
    assert_eq!(echo.status, 200, "{app} POST /echo");
    assert_bytes_eq(&format!("{app} POST /echo body"), &body, &echo.body);

    let mut pipelined = post("/echo", b"first");
    pipelined.extend_from_slice(&get("/"));
    stream.write_all(&pipelined).unwrap();
    let first = read_response(&mut reader);
    assert_eq!(
        (first.status, first.text().as_str()),
        (200, "first"),
        "{app} pipelined POST"
    );
    let second = read_response(&mut reader);
    assert_eq!(
        (second.status, second.text().as_str()),
        (200, greeting.as_str()),
        "{app} pipelined GET"
    );

    // The handler raises: that request fails alone, with a 500 (the Python
    // runtime aborts, a trap the host answers; SpiderMonkey's fetch-event
    // loop answers it itself), and the guest's message reaches the log.
    stream.write_all(&get("/trap")).unwrap();
    let failed = read_response(&mut reader);
    assert_eq!(
        failed.status,
        500,
        "{app} /trap: {failed:?}\nlog:\n{}",
        server.log()
    );
    server.wait_for_log("/trap asked for a failure", DEADLINE);
    stream.write_all(&get("/")).unwrap();
    let again = read_response(&mut reader);
    assert_eq!(again.status, 200, "{app} after /trap: {again:?}");
    assert_eq!(again.text(), greeting, "{app} after /trap");

    // A new connection gets a fresh instance too.
    let after = http_get(addr, "/");
    assert_eq!(after.status, 200, "{app} new connection: {after:?}");
    assert_eq!(after.text(), greeting, "{app} new connection");
    server.assert_alive();
}

#[test]
fn python_component_serves_get_echo_keep_alive_and_survives_a_raise() {
    serves_get_echo_keep_alive_and_survives_a_raise("hello-http-py");
}

#[test]
fn javascript_component_serves_get_echo_keep_alive_and_survives_a_raise() {
    serves_get_echo_keep_alive_and_survives_a_raise("hello-http-js");
}
