//! Host-side HTTP for plain WASI programs (`kind = "http"` / `--http APP`):
//! the host parses requests and runs one process per request, CGI-style.

use std::io::{BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;

use crate::util::{
    connect, get, guest, pseudo_random_bytes, read_response, read_until_closed, request, Server,
    TempDir, DEADLINE,
};

fn probe(extra: &[&str]) -> Server {
    let mut flags = args!["--http", "cgi-probe"];
    flags.extend(extra.iter().map(std::ffi::OsString::from));
    Server::start(&[("cgi-probe", guest("cgi-probe"))], &flags)
}

/// An app dir with `cgi-probe.wasm` and a manifest, for limits the flags do not set.
fn probe_with_manifest(manifest: &str) -> (TempDir, Server) {
    let dir = TempDir::new();
    let wasm = dir.join("cgi-probe.wasm");
    std::fs::copy(guest("cgi-probe"), &wasm).unwrap();
    dir.write("cgi-probe.toml", format!("kind = \"http\"\n{manifest}"));
    let server = Server::start(&[("cgi-probe", wasm)], &[]);
    (dir, server)
}

#[test]
fn hello_in_rust_and_in_wat() {
    for app in ["hello-cgi", "hello-cgi-wat"] {
        let server = Server::start(&[(app, guest(app))], &args!["--http", app]);
        let response = request(server.addr(app), &get("/"));
        assert_eq!(response.status, 200, "{app}");
        assert_eq!(response.header("content-type"), Some("text/plain"), "{app}");
        assert_eq!(response.text(), "Hello, World!\n", "{app}");
    }
}

#[test]
fn cgi_environment_carries_the_request() {
    let server = probe(&[]);
    let body = "name=value";
    let req = format!(
        "POST /env?x=1&y=2 HTTP/1.1\r\nHost: example.test:99\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nX-Custom-Thing: yes\r\n\r\n{body}",
        body.len()
    );
    let response = request(server.addr("cgi-probe"), req.as_bytes());
    let text = response.text();
    for expected in [
        "REQUEST_METHOD=POST",
        "PATH_INFO=/env",
        "QUERY_STRING=x=1&y=2",
        "CONTENT_TYPE=application/x-www-form-urlencoded",
        "CONTENT_LENGTH=10",
        "HTTP_X_CUSTOM_THING=yes",
        "SERVER_NAME=example.test",
        "SERVER_PROTOCOL=HTTP/1.1",
        "GATEWAY_INTERFACE=CGI/1.1",
        "REMOTE_ADDR=127.0.0.1",
        "BODY-LENGTH=10\nname=value",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn keep_alive_serves_a_thousand_requests_on_one_connection() {
    let server = Server::start(
        &[("hello-cgi-wat", guest("hello-cgi-wat"))],
        &args!["--http", "hello-cgi-wat"],
    );
    let stream = connect(server.addr("hello-cgi-wat"));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    for i in 0..1000 {
        writer.write_all(&get(&format!("/{i}"))).unwrap();
        let response = read_response(&mut reader);
        assert_eq!(
            (response.status, response.text().as_str()),
            (200, "Hello, World!\n"),
            "request {i}"
        );
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = probe(&[]);
    let mut batch = Vec::new();
    for i in 0..10 {
        batch.extend_from_slice(&get(&format!("/status/{}", 200 + i)));
    }
    let mut stream = connect(server.addr("cgi-probe"));
    stream.write_all(&batch).unwrap();
    let mut reader = BufReader::new(stream);
    for i in 0..10 {
        let response = read_response(&mut reader);
        assert_eq!(response.status, 200 + i, "response {i}");
        assert_eq!(response.text(), format!("status {}\n", 200 + i));
    }
}

#[test]
fn chunked_request_body_reaches_stdin() {
    let server = probe(&[]);
    let req = b"POST /env HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\n";
    let text = request(server.addr("cgi-probe"), req).text();
    assert!(text.contains("BODY-LENGTH=12\nhello, world"), "{text}");
}

#[test]
fn large_response_is_streamed_chunked() {
    let server = probe(&[]);
    let response = request(server.addr("cgi-probe"), &get("/big/1000000"));
    assert_eq!(response.status, 200);
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    assert_eq!(response.body.len(), 1_000_000);
    assert!(response
        .body
        .chunks(10)
        .all(|c| c == &b"0123456789"[..c.len()]));
}

#[test]
fn ten_mib_body_is_streamed_to_the_guest() {
    let (_dir, server) = probe_with_manifest("max_body = \"16MiB\"\n");
    let body = pseudo_random_bytes(7, 10 << 20);
    let sum = body.iter().fold(0u64, |s, &b| s.wrapping_add(u64::from(b)));
    let stream = connect(server.addr("cgi-probe"));
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        writer
            .write_all(
                format!(
                    "POST /sum HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            )
            .unwrap();
        writer.write_all(&body).unwrap();
    });
    let response = read_response(&mut BufReader::new(stream));
    sender.join().unwrap();
    assert_eq!(response.text(), format!("bytes={} sum={sum}\n", 10 << 20));
}

#[test]
fn bad_requests_get_their_status_and_close() {
    let server = probe(&[]);
    assert_bad_requests_refused(server.addr("cgi-probe"), "/env");
    server.assert_alive();
}

/// Sends the HTTP front's bad requests to `addr` (`post_path` takes a POST)
/// and checks each gets its status, `Connection: close` and nothing after:
/// the same for CGI apps and components (tests/components.rs).
#[track_caller]
pub(crate) fn assert_bad_requests_refused(addr: SocketAddr, post_path: &str) {
    let mut huge_head = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    huge_head.resize(20 * 1024, b'a');
    huge_head.extend_from_slice(b"\r\n\r\n");
    let cases: [(&str, Vec<u8>, u16); 4] = [
        (
            "malformed request line",
            b"GET\x01 / nonsense\r\n\r\n".to_vec(),
            400,
        ),
        ("head over 16 KiB", huge_head, 431),
        (
            "body over the limit",
            format!("POST {post_path} HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n")
                .into_bytes(),
            413,
        ),
        (
            "unsupported transfer coding",
            format!("POST {post_path} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n")
                .into_bytes(),
            501,
        ),
    ];
    for (what, req, status) in cases {
        let mut stream = connect(addr);
        stream.write_all(&req).unwrap();
        let mut reader = BufReader::new(stream);
        let response = read_response(&mut reader);
        assert_eq!(response.status, status, "{what}");
        assert_eq!(response.header("connection"), Some("close"), "{what}");
        let rest = read_until_closed(reader.get_mut());
        assert!(rest.is_empty(), "{what}: bytes after the error response");
    }
}

#[test]
fn slow_head_gets_408_and_idle_connection_is_closed() {
    let (_dir, server) =
        probe_with_manifest("head_timeout = \"300ms\"\nidle_timeout = \"300ms\"\n");
    let addr = server.addr("cgi-probe");
    let mut slow = connect(addr);
    slow.write_all(b"GET / HTTP/1.1\r\nHost: sl").unwrap();
    let response = read_response(&mut BufReader::new(slow));
    assert_eq!(response.status, 408);

    let mut idle = connect(addr);
    idle.write_all(&get("/")).unwrap();
    let mut reader = BufReader::new(idle);
    assert_eq!(read_response(&mut reader).status, 200);
    let rest = read_until_closed(reader.get_mut());
    assert!(
        rest.is_empty(),
        "an idle connection is closed without a response"
    );
}

#[test]
fn failing_guests_get_502_and_504_and_the_connection_goes_on() {
    let server = probe(&["--cpu-budget", "200ms"]);
    let stream = connect(server.addr("cgi-probe"));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    for (path, status) in [
        ("/trap", 502),
        ("/nohead", 502),
        ("/spin", 504),
        // Computes a while in the same connection's task: its own budget
        // starts at zero, not where the killed process left it.
        ("/busy/50", 200),
        ("/hello", 200),
    ] {
        writer.write_all(&get(path)).unwrap();
        let response = read_response(&mut reader);
        assert_eq!(response.status, status, "{path}");
    }
    server.wait_for_log("cgi_probe::trap_on_purpose", DEADLINE);
    server.wait_for_log("no complete CGI response head", DEADLINE);
    server.wait_for_log("cpu budget", DEADLINE);
    server.assert_alive();
}

#[test]
fn two_hundred_concurrent_clients() {
    let server = probe(&[]);
    let addr = server.addr("cgi-probe");
    thread::scope(|scope| {
        let clients: Vec<_> = (0..200)
            .map(|i| scope.spawn(move || request(addr, &get(&format!("/status/{}", 200 + i % 50)))))
            .collect();
        for (i, client) in clients.into_iter().enumerate() {
            assert_eq!(client.join().unwrap().status, 200 + (i % 50) as u16);
        }
    });
}

#[test]
fn http_1_0_gets_one_response_and_a_close() {
    let server = probe(&[]);
    let mut stream: TcpStream = connect(server.addr("cgi-probe"));
    stream.write_all(b"GET /hello HTTP/1.0\r\n\r\n").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let got = String::from_utf8(read_until_closed(&mut stream)).unwrap();
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.contains("Connection: close\r\n"), "{got}");
    assert!(got.ends_with("\r\n\r\nhello\n"), "{got}");
}

/// The environment as the guest reads it: the app's variables first, then
/// the request's, a repeated header joined with ", ", and the HTTP/1.0
/// protocol named as such.
#[test]
fn cgi_environment_has_the_apps_variables_and_joins_repeated_headers() {
    let (_dir, server) = probe_with_manifest("[env]\nAPP_GREETING = \"hi there\"\n");
    let req = "GET /env HTTP/1.0\r\nX-Twice: one\r\nX-Twice: two\r\n\r\n";
    let response = request(server.addr("cgi-probe"), req.as_bytes());
    let text = response.text();
    for expected in [
        "APP_GREETING=hi there\n",
        "HTTP_X_TWICE=one, two\n",
        "SERVER_PROTOCOL=HTTP/1.0\n",
        "SCRIPT_NAME=\n",
        "QUERY_STRING=\n",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}
