//! WASI 0.2 components served unchanged (docs/components.md): the
//! `wasi:http/proxy` hello (`guests/hello-http-p2`) per request from the
//! host's HTTP front, under the limits a module's process has, and the
//! `wasi:cli/command` echo (`guests/echo-p2`) in inetd mode.

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr};

use crate::util::{
    connect, get, guest, post, pseudo_random_bytes, read_response, read_until_closed, request,
    roundtrip, run_ok, ClientLoop, Response, Server, TempDir, DEADLINE,
};

const HELLO: &str = "hello-http-p2";
const HELLO_BODY: &str = "hello from hello-http-p2\n";

/// The hello component served with `extra` flags (no `--http`: a proxy
/// component is served over HTTP by itself).
fn hello(extra: &[std::ffi::OsString]) -> Server {
    Server::start(&[(HELLO, guest(HELLO))], extra)
}

/// The hello component served from a temp dir with `manifest` beside it.
fn hello_with_manifest(manifest: &str) -> (TempDir, Server) {
    let dir = TempDir::new();
    let wasm = dir.join(&format!("{HELLO}.wasm"));
    std::fs::copy(guest(HELLO), &wasm).unwrap();
    dir.write(&format!("{HELLO}.toml"), manifest);
    let server = Server::start(&[(HELLO, wasm)], &[]);
    (dir, server)
}

#[track_caller]
fn assert_hello(response: &Response) {
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.header("content-type"), Some("text/plain"));
    assert_eq!(response.text(), HELLO_BODY);
}

#[test]
fn a_proxy_component_answers_get_and_echoes_bodies() {
    let server = hello(&[]);
    let addr = server.addr(HELLO);
    assert_hello(&request(addr, &get("/")));
    assert_hello(&request(addr, &get("/any/path?x=1")));
    assert_eq!(
        request(addr, b"DELETE / HTTP/1.1\r\nHost: test\r\n\r\n").status,
        404
    );

    let echoed = request(addr, &post("/echo", b"a body of some bytes"));
    assert_eq!(echoed.status, 200);
    assert_eq!(echoed.text(), "a body of some bytes");

    // Chunked in, decoded by the front, echoed whole.
    let chunked = request(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n",
    );
    assert_eq!(chunked.status, 200);
    assert_eq!(chunked.text(), "hello, world");

    // Past the front's buffer: streamed to the guest and back (chunked out).
    let big = pseudo_random_bytes(14, 1 << 20);
    let mut stream = connect(addr);
    let mut writer = stream.try_clone().unwrap();
    let sent = std::thread::spawn({
        let request = post("/echo", &big);
        move || writer.write_all(&request)
    });
    let response = read_response(&mut BufReader::new(&mut stream));
    sent.join().unwrap().unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    crate::util::assert_bytes_eq("1 MiB echoed", &big, &response.body);
    server.assert_alive();
}

#[test]
fn keep_alive_and_pipelining_serve_every_request_on_one_connection() {
    let server = hello(&[]);
    let mut stream = connect(server.addr(HELLO));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    // One at a time: each request a fresh instance, one connection.
    for _ in 0..20 {
        stream.write_all(&get("/")).unwrap();
        assert_hello(&read_response(&mut reader));
    }
    // Pipelined: answered in order.
    let mut batch = Vec::new();
    for i in 0..5 {
        batch.extend(post("/echo", format!("request {i}").as_bytes()));
        batch.extend(get("/"));
    }
    stream.write_all(&batch).unwrap();
    for i in 0..5 {
        assert_eq!(read_response(&mut reader).text(), format!("request {i}"));
        assert_hello(&read_response(&mut reader));
    }
    stream.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "bytes after the last response: {rest:?}");
}

#[test]
fn bad_requests_get_the_status_of_cgi_mode_and_a_close() {
    let server = hello(&[]);
    crate::cgi::assert_bad_requests_refused(server.addr(HELLO), "/echo");
    server.assert_alive();
}

#[test]
fn a_trap_gets_500_and_the_connection_goes_on() {
    let server = hello(&[]);
    let stream = connect(server.addr(HELLO));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    writer.write_all(&get("/trap")).unwrap();
    assert_eq!(read_response(&mut reader).status, 500);
    writer.write_all(&get("/")).unwrap();
    assert_hello(&read_response(&mut reader));
    // One line with the app, the pid and the guest's backtrace.
    let line = server.wait_for_log("process killed", DEADLINE);
    assert!(
        line.contains("app=\"hello-http-p2\"")
            && line.contains("unreachable")
            && line.contains("incoming-handler"),
        "{line}"
    );
    server.wait_for_log("/trap asked for a trap", DEADLINE);
    // Returning without a response is the guest's failure too.
    writer.write_all(&get("/noresponse")).unwrap();
    assert_eq!(read_response(&mut reader).status, 500);
    writer.write_all(&get("/")).unwrap();
    assert_hello(&read_response(&mut reader));
    server.wait_for_log("the guest returned without setting a response", DEADLINE);
    server.assert_alive();
}

#[test]
fn a_spinning_guest_is_ended_by_its_cpu_budget_and_the_host_serves_on() {
    let server = hello(&args!["--cpu-budget", "200ms", "--threads", "1"]);
    let stream = connect(server.addr(HELLO));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    writer.write_all(&get("/spin")).unwrap();
    // While it spins, the one worker still serves others (epoch preemption).
    assert_hello(&request(server.addr(HELLO), &get("/")));
    assert_eq!(read_response(&mut reader).status, 504);
    writer.write_all(&get("/")).unwrap();
    assert_hello(&read_response(&mut reader));
    server.wait_for_log("cpu budget", DEADLINE);
}

#[test]
fn a_spinning_guest_is_ended_by_the_request_timeout() {
    let (_dir, server) = hello_with_manifest("request_timeout = \"300ms\"\ncpu_budget = \"60s\"\n");
    let mut stream = connect(server.addr(HELLO));
    stream.write_all(&get("/spin")).unwrap();
    let mut reader = BufReader::new(stream);
    let response = read_response(&mut reader);
    assert_eq!(response.status, 504);
    assert_eq!(response.header("connection"), Some("close"));
    server.wait_for_log("request_timeout", DEADLINE);
    assert_hello(&request(server.addr(HELLO), &get("/")));
}

#[test]
fn a_growing_guest_is_stopped_by_max_memory() {
    let server = hello(&args!["--max-memory", "4MiB"]);
    let addr = server.addr(HELLO);
    assert_eq!(request(addr, &get("/grow")).status, 500);
    let line = server.wait_for_log("micro-heap limit of 4MiB", DEADLINE);
    assert!(line.contains("process killed"), "{line}");
    assert_hello(&request(addr, &get("/")));
    server.assert_alive();
}

#[test]
fn outgoing_requests_reach_only_allow_outbound() {
    // The peer: a CGI hello on the same host.
    let peer = Server::start(
        &[("hello-cgi-wat", guest("hello-cgi-wat"))],
        &args!["--http", "hello-cgi-wat"],
    );
    let allowed = peer.addr("hello-cgi-wat");
    let (_dir, server) = hello_with_manifest(&format!("allow_outbound = [\"{allowed}\"]\n"));
    let addr = server.addr(HELLO);
    let through = request(addr, &get(&format!("/outbound?{allowed}")));
    assert_eq!(through.text(), "status 200\n");
    let other = SocketAddr::new(allowed.ip(), allowed.port().wrapping_add(1));
    let refused = request(addr, &get(&format!("/outbound?{other}")));
    assert_eq!(refused.text(), "error ErrorCode::HttpRequestDenied\n");
    let named = request(addr, &get("/outbound?localhost:1"));
    assert_eq!(named.text(), "error ErrorCode::HttpRequestDenied\n");
    server.wait_for_log(
        &format!("outgoing HTTP request to `{other}` denied"),
        DEADLINE,
    );
    server.assert_alive();
}

#[test]
fn a_command_component_echoes_its_connection() {
    let server = Server::start(&[("echo-p2", guest("echo-p2"))], &[]);
    let addr = server.addr("echo-p2");
    assert_eq!(roundtrip(addr, b"hello\n"), b"hello\n");
    let big = pseudo_random_bytes(2, 1 << 20);
    crate::util::assert_bytes_eq("1 MiB echoed", &big, &roundtrip(addr, &big));
    server.assert_alive();
}

#[test]
fn a_command_component_runs_with_the_terminal_as_its_connection() {
    let out = run_ok(&args!["run", guest("echo-p2")], b"from the terminal\n");
    assert_eq!(out, b"from the terminal\n");
}

#[test]
fn a_command_component_serves_cgi_requests_with_http() {
    // echo-p2 copies stdin to stdout: a body that is a CGI response comes back as one.
    let server = Server::start(
        &[("echo-p2", guest("echo-p2"))],
        &args!["--http", "echo-p2"],
    );
    let response = request(
        server.addr("echo-p2"),
        &post("/", b"Status: 201 Made\nContent-Type: text/plain\n\nmade"),
    );
    assert_eq!(response.status, 201);
    assert_eq!(response.header("content-type"), Some("text/plain"));
    assert_eq!(response.text(), "made");
}

#[test]
fn every_request_gets_a_fresh_instance() {
    let server = hello(&[]);
    let mut stream = connect(server.addr(HELLO));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    for _ in 0..5 {
        stream.write_all(&get("/count")).unwrap();
        assert_eq!(read_response(&mut reader).text(), "1\n");
    }
}

#[test]
fn fifty_clients_at_once_are_all_served() {
    let server = hello(&args!["--threads", "2"]);
    let addr = server.addr(HELLO);
    std::thread::scope(|scope| {
        for client in 0..50 {
            scope.spawn(move || {
                let mut stream = connect(addr);
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                for i in 0..20 {
                    let body = format!("client {client} request {i}");
                    stream.write_all(&post("/echo", body.as_bytes())).unwrap();
                    assert_eq!(read_response(&mut reader).text(), body);
                }
            });
        }
    });
    server.assert_alive();
}

#[test]
fn run_refuses_a_proxy_component_with_what_to_do_instead() {
    let (code, stderr) = crate::util::run_fail(&args!["run", guest(HELLO)], b"");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("is a wasi:http/proxy component") && stderr.contains("mnvkd-host serve"),
        "{stderr}"
    );
}

#[test]
fn a_component_is_compiled_once_and_then_loaded_from_the_cache() {
    let home = TempDir::new();
    let env = [("XDG_CACHE_HOME", home.path().as_os_str())];
    for outcome in ["cache=miss", "cache=hit"] {
        let server = Server::start_with_env(&[(HELLO, guest(HELLO))], &[], &env);
        let line = server.wait_for_log("compiled component", DEADLINE);
        assert!(line.contains(outcome), "expected {outcome} in: {line}");
        assert_hello(&request(server.addr(HELLO), &get("/")));
    }
}

#[test]
fn a_head_request_gets_the_head_alone_and_the_connection_goes_on() {
    let server = hello(&[]);
    let mut stream = connect(server.addr(HELLO));
    stream
        .write_all(b"HEAD / HTTP/1.1\r\nHost: test\r\n\r\nGET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let got = String::from_utf8(read_until_closed(&mut stream)).unwrap();
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nContent-Length: 25\r\n\r\n";
    let get = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nContent-Length: 25\r\nConnection: close\r\n\r\n{HELLO_BODY}"
    );
    assert_eq!(got, format!("{head}{get}"));
}

#[test]
fn endless_recursion_gets_500_and_the_host_serves_on() {
    let server = hello(&[]);
    let addr = server.addr(HELLO);
    assert_eq!(request(addr, &get("/deep")).status, 500);
    // Rust's shadow stack (in linear memory) runs out before the Wasm stack.
    let line = server.wait_for_log("process killed", DEADLINE);
    assert!(
        line.contains("out of bounds memory access") && line.contains("hello_http_p2::deep"),
        "{line}"
    );
    assert_hello(&request(addr, &get("/")));
}

#[test]
fn max_cpu_and_max_wall_end_a_component_process_with_504() {
    for (flag, logged) in [("--max-cpu", "(max-cpu)"), ("--max-wall", "(max-wall)")] {
        let server = hello(&args![flag, "300ms", "--cpu-budget", "60s"]);
        let addr = server.addr(HELLO);
        assert_eq!(request(addr, &get("/spin")).status, 504, "{flag}");
        let line = server.wait_for_log(logged, DEADLINE);
        assert!(line.contains("process killed"), "{flag}: {line}");
        assert_hello(&request(addr, &get("/")));
    }
}

/// A reload swaps a CGI module for a proxy component and back: new requests
/// get the new version, and none fails while the host switches.
#[test]
fn a_reload_swaps_a_cgi_module_for_a_proxy_component_and_back() {
    const CGI: &str = "hello-cgi-wat";
    const CGI_BODY: &str = "Hello, World!\n";
    let dir = TempDir::new();
    let wasm = dir.join("app.wasm");
    std::fs::copy(guest(CGI), &wasm).unwrap();
    dir.write("app.toml", "kind = \"http\"\n");
    let server = Server::start(&[("app", wasm.clone())], &[]);
    let addr = server.addr("app");
    assert_eq!(request(addr, &get("/")).text(), CGI_BODY);

    // Requests keep coming, each on a new connection, while the app changes.
    let client = ClientLoop::start(move || {
        let response = request(addr, &get("/"));
        match response.status == 200 && [CGI_BODY, HELLO_BODY].contains(&&*response.text()) {
            true => Ok(()),
            false => Err(format!("{response:?}")),
        }
    });
    for (round, (from, body)) in [(HELLO, HELLO_BODY), (CGI, CGI_BODY)]
        .into_iter()
        .enumerate()
    {
        crate::reload::install(&guest(from), &wasm);
        server.signal(libc::SIGHUP);
        server.wait_for_logs("reloaded", round + 1, DEADLINE);
        client.wait_for_more(20);
        assert_eq!(
            request(addr, &get("/")).text(),
            body,
            "after reloading {from}"
        );
    }
    let failures = client.stop();
    assert!(
        failures.is_empty(),
        "requests failed across the reloads: {failures:?}"
    );
    server.assert_alive();
}

/// A guest's trailer fields follow its body's last chunk, on a small
/// (otherwise buffered) body and on a streamed one alike; an HTTP/1.0
/// client, which has no chunked framing, gets the body alone.
#[test]
fn trailers_follow_the_last_chunk_and_http10_gets_the_body_alone() {
    let server = hello(&[]);
    let addr = server.addr(HELLO);
    let mut stream = connect(addr);
    stream
        .write_all(&[get("/trailers/5"), get("/trailers/70000")].concat())
        .unwrap();
    let mut reader = BufReader::new(stream);
    for size in [5, 70_000] {
        let response = read_response(&mut reader);
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(response.header("transfer-encoding"), Some("chunked"));
        assert_eq!(response.body, vec![b'x'; size]);
        assert_eq!(
            response.trailers,
            [("x-sent".to_owned(), size.to_string())],
            "trailers after {size} bytes"
        );
    }
    // The connection goes on after the trailers.
    reader.get_mut().write_all(&get("/")).unwrap();
    assert_hello(&read_response(&mut reader));

    let mut stream = connect(addr);
    stream
        .write_all(b"GET /trailers/5 HTTP/1.0\r\n\r\n")
        .unwrap();
    let got = String::from_utf8(read_until_closed(&mut stream)).unwrap();
    assert!(got.ends_with("\r\n\r\nxxxxx"), "{got:?}");
    assert!(!got.contains("x-sent"), "{got:?}");
}
