//! Guest-side HTTP (`mnvkd_guest::http`): the `hello-http` and `http-echo`
//! guests over real sockets: keep-alive, pipelining, request bodies by
//! length and chunked, bad input (400, 431, 413, 501, 408), idle close,
//! HTTP/1.0, a failing handler, and many clients at once.
//!
//! Every scenario runs twice, once per shape of the SDK's server
//! ([`Shape`]): `process_per_connection::*` (`http::serve`, the default)
//! and `one_heap::*` (`http::serve_each` in a listener-mode app).

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;

use crate::util::{
    self, app_with_manifest, assert_bytes_eq, connect, read_response, read_until_closed, Response,
    Server, TempDir,
};

/// `http-echo`'s body limit (`MAX_BODY` in guests/http-echo).
const ECHO_MAX_BODY: usize = 4 << 20;

/// A keep-alive client connection.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        let stream = connect(addr);
        let writer = stream.try_clone().expect("failed to clone a socket");
        Client {
            reader: BufReader::new(stream),
            writer,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer
            .write_all(bytes)
            .unwrap_or_else(|err| panic!("failed to send {} bytes: {err}", bytes.len()));
    }

    #[track_caller]
    fn response(&mut self) -> Response {
        read_response(&mut self.reader)
    }

    /// Expects the server to have closed the connection, with nothing more
    /// sent.
    #[track_caller]
    fn assert_closed(mut self) {
        let rest = read_until_closed(self.reader.get_mut());
        let buffered = self.reader.buffer().len();
        assert_eq!(
            (buffered, String::from_utf8_lossy(&rest).into_owned()),
            (0, String::new()),
            "bytes after the last response"
        );
    }
}

/// How the apps serve their connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// `http::serve`: a process per connection (connection mode).
    ProcessPerConnection,
    /// `http::serve_each`: one listener-mode process serves every
    /// connection as a coroutine of its micro-heap (`hello-http-many`, and
    /// `http-echo` with `HTTP_SERVE_EACH=1`).
    OneHeap,
}

/// Serves `hello-http` and `http-echo` in `shape`, from copies in `dir`
/// with manifests; `echo_env` is more of `http-echo`'s `[env]` (its
/// timeouts, in milliseconds).
fn serve_http_in(dir: &TempDir, shape: Shape, echo_env: &str) -> Server {
    let (hello, listener, each) = match shape {
        Shape::ProcessPerConnection => ("hello-http", "", ""),
        Shape::OneHeap => (
            "hello-http-many",
            "kind = \"listener\"\nmax_memory = \"64MiB\"\n",
            "HTTP_SERVE_EACH = \"1\"\n",
        ),
    };
    let echo_manifest = format!("{listener}[env]\n{each}{echo_env}\n");
    Server::start(
        &[
            (
                "hello-http",
                app_with_manifest(dir, hello, "hello-http", listener),
            ),
            (
                "http-echo",
                app_with_manifest(dir, "http-echo", "http-echo", &echo_manifest),
            ),
        ],
        &["--admin".into(), "127.0.0.1:0".into()],
    )
}

/// Runs each scenario (a `fn(Shape)`) as a test of each shape:
/// `process_per_connection::NAME` and `one_heap::NAME`.
macro_rules! in_both_shapes {
    ($($scenario:ident),* $(,)?) => {
        mod process_per_connection {
            $(#[test]
            fn $scenario() {
                super::$scenario(super::Shape::ProcessPerConnection);
            })*
        }
        mod one_heap {
            $(#[test]
            fn $scenario() {
                super::$scenario(super::Shape::OneHeap);
            })*
        }
    };
}

in_both_shapes!(
    hello_http_answers_1000_sequential_requests_on_one_connection,
    ten_pipelined_requests_in_one_write_are_answered_in_order,
    chunked_request_body_is_decoded,
    large_bodies_are_echoed_by_length_and_chunked,
    malformed_requests_get_400_and_close,
    a_header_section_over_16k_gets_431_and_close,
    a_body_over_the_limit_gets_413_and_close,
    an_unsupported_transfer_encoding_gets_501_and_close,
    an_unfinished_head_gets_408_and_close,
    an_idle_keep_alive_connection_is_closed,
    http_1_0_is_answered_and_closed,
    connection_close_is_honoured,
    a_failing_handler_gets_500_and_ends_only_its_own_connection,
    two_hundred_concurrent_clients_each_get_their_answers,
);

/// Sends `bytes` on a fresh connection and returns the one response the
/// server sends before it closes the connection.
#[track_caller]
fn refused(addr: SocketAddr, bytes: &[u8]) -> Response {
    let mut stream = connect(addr);
    stream.write_all(bytes).unwrap();
    let all = read_until_closed(&mut stream);
    let mut reader = &all[..];
    let response = read_response(&mut reader);
    assert_bytes_eq("bytes after the refusal", b"", reader);
    assert_eq!(response.header("Connection"), Some("close"), "{response:?}");
    response
}

fn hello_http_answers_1000_sequential_requests_on_one_connection(shape: Shape) {
    let dir = TempDir::new();
    let server = serve_http_in(&dir, shape, "");
    let mut client = Client::new(server.addr("hello-http"));
    for i in 0..1000 {
        client.send(format!("GET /{i} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
        let response = client.response();
        assert_eq!(response.status, 200, "request {i}: {response:?}");
        assert_eq!(response.text(), "Hello, World!\n", "request {i}");
        assert_eq!(response.header("Content-Type"), Some("text/plain"));
        assert_eq!(
            response.header("Connection"),
            None,
            "request {i} keeps alive"
        );
        assert!(response
            .header("Date")
            .is_some_and(|date| date.ends_with(" GMT")));
    }
    server.assert_alive();
}

fn ten_pipelined_requests_in_one_write_are_answered_in_order(shape: Shape) {
    let dir = TempDir::new();
    let server = serve_http_in(&dir, shape, "");
    let mut client = Client::new(server.addr("http-echo"));
    let mut batch = Vec::new();
    for i in 0..10 {
        if i % 2 == 0 {
            batch.extend(format!("GET /req/{i} HTTP/1.1\r\nHost: test\r\n\r\n").bytes());
        } else {
            let body = format!("body of {i}");
            batch.extend(
                format!(
                    "POST /req/{i} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .bytes(),
            );
        }
    }
    client.send(&batch);
    for i in 0..10 {
        let response = client.response();
        assert_eq!(response.status, 200);
        let text = response.text();
        let first = text.lines().next().unwrap_or_default();
        let method = if i % 2 == 0 { "GET" } else { "POST" };
        assert_eq!(first, format!("{method} /req/{i} HTTP/1.1"), "response {i}");
        if i % 2 == 1 {
            assert!(text.ends_with(&format!("\n\nbody of {i}")), "{text:?}");
        }
    }
    // The connection is still good after the batch.
    client.send(b"GET /after HTTP/1.1\r\nHost: test\r\n\r\n");
    assert!(client
        .response()
        .text()
        .starts_with("GET /after HTTP/1.1\n"));
    server.assert_alive();
}

fn chunked_request_body_is_decoded(shape: Shape) {
    let dir = TempDir::new();
    let server = serve_http_in(&dir, shape, "");
    let mut client = Client::new(server.addr("http-echo"));
    client.send(
        b"POST /chunked HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\
          X-After: 1\r\n\r\n5\r\nhello\r\n",
    );
    // The rest in separate writes, split inside the framing.
    client.send(b"1;ext=yes\r\n,\r\n7\r\n wo");
    client.send(b"rld!\r\n0\r\nTrailer-Field: x\r\n\r");
    client.send(b"\n");
    let response = client.response();
    assert_eq!(response.status, 200);
    let text = response.text();
    assert!(text.starts_with("POST /chunked HTTP/1.1\n"), "{text:?}");
    assert!(text.contains("\nTransfer-Encoding: chunked\n"), "{text:?}");
    assert!(text.ends_with("\n\nhello, world!"), "{text:?}");
    // Keep-alive holds after a chunked body.
    client.send(b"GET /next HTTP/1.1\r\nHost: test\r\n\r\n");
    assert!(client.response().text().starts_with("GET /next "));
    server.assert_alive();
}

fn large_bodies_are_echoed_by_length_and_chunked(shape: Shape) {
    let dir = TempDir::new();
    let server = serve_http_in(&dir, shape, "");
    let addr = server.addr("http-echo");
    let body = util::pseudo_random_bytes(4, 512 * 1024);
    let mut chunked = Vec::new();
    for piece in body.chunks(10_000) {
        chunked.extend(format!("{:x}\r\n", piece.len()).bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let requests = [
        (
            format!(
                "PUT /big HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n",
                body.len()
            ),
            &body,
        ),
        (
            "PUT /big HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned(),
            &chunked,
        ),
    ];
    let mut client = Client::new(addr);
    for (head, payload) in requests {
        let mut writer = client.writer.try_clone().unwrap();
        let mut request = head.clone().into_bytes();
        request.extend_from_slice(payload);
        // Send from another thread, so neither side's buffers can deadlock.
        let sender = thread::spawn(move || writer.write_all(&request));
        let response = client.response();
        sender.join().unwrap().expect("failed to send the body");
        assert_eq!(response.status, 200);
        let split = response
            .body
            .windows(2)
            .position(|w| w == b"\n\n")
            .expect("a blank line after the echoed head")
            + 2;
        assert_bytes_eq(&format!("echo of {head:?}"), &body, &response.body[split..]);
    }
    server.assert_alive();
}

fn malformed_requests_get_400_and_close(shape: Shape) {
    let dir = TempDir::new();
    let server = serve_http_in(&dir, shape, "");
    let addr = server.addr("http-echo");
    for bad in [
        &b"NOT HTTP AT ALL\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: test\r\nBad Header Line\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 12abc\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\nnot-hex\r\n",
    ] {
        let response = refused(addr, bad);
        assert_eq!(
            response.status,
            400,
            "{:?}: {response:?}",
            String::from_utf8_lossy(bad)
        );
        assert_eq!(response.text(), "Bad Request\n");
    }
    server.assert_alive();
}

fn a_header_section_over_16k_gets_431_and_close(shape: Shape) {
    let dir = TempDir::new();
    let server = serve_http_in(&dir, shape, "");
    let addr = server.addr("http-echo");
    let big = format!(
        "GET / HTTP/1.1\r\nHost: test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(16 * 1024)
    );
    let many = format!(
        "GET / HTTP/1.1\r\nHost: test\r\n{}\r\n",
        "X-Many: 1\r\n".repeat(200)
    );
    for bad in [big, many] {
        let response = refused(addr, bad.as_bytes());
        assert_eq!(response.status, 431, "{response:?}");
    }
    // Just under the limit is fine.
    let mut client = Client::new(addr);
    client.send(
        format!(
            "GET / HTTP/1.1\r\nHost: test\r\nX-Big: {}\r\n\r\n",
            "a".repeat(15 * 1024)
        )
        .as_bytes(),
    );
    assert_eq!(client.response().status, 200);
    server.assert_alive();
}

fn a_body_over_the_limit_gets_413_and_close(shape: Shape) {
    let dir = TempDir::new();
    let server = serve_http_in(&dir, shape, "");
    let addr = server.addr("http-echo");
    let too_long = format!(
        "POST / HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\nthe start of it",
        ECHO_MAX_BODY + 1
    );
    let response = refused(addr, too_long.as_bytes());
    assert_eq!(response.status, 413, "{response:?}");
    // A chunked body says its size as it goes.
    let too_long_chunked = format!(
        "POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        ECHO_MAX_BODY + 1
    );
    let response = refused(addr, too_long_chunked.as_bytes());
    assert_eq!(response.status, 413, "{response:?}");
    // The default limit (1 MiB) applies to hello-http.
    let response = refused(
        server.addr("hello-http"),
        b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 1048577\r\n\r\n",
    );
    assert_eq!(response.status, 413, "{response:?}");
    server.assert_alive();
}

fn an_unsupported_transfer_encoding_gets_501_and_close(shape: Shape) {
    let dir = TempDir::new();
    let server = serve_http_in(&dir, shape, "");
    let addr = server.addr("http-echo");
    for coding in ["gzip", "gzip, chunked", "identity"] {
        let request =
            format!("POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: {coding}\r\n\r\n");
        let response = refused(addr, request.as_bytes());
        assert_eq!(response.status, 501, "{coding}: {response:?}");
        assert_eq!(response.text(), "Not Implemented\n");
    }
    server.assert_alive();
}

fn an_unfinished_head_gets_408_and_close(shape: Shape) {
    let dir = TempDir::new();
    let server = serve_http_in(&dir, shape, "HTTP_HEAD_TIMEOUT_MS = \"300\"");
    let mut client = Client::new(server.addr("http-echo"));
    // A complete request first: the head timeout is per request.
    client.send(b"GET /first HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(client.response().status, 200);
    client.send(b"GET /slow HTTP/1.1\r\nHost: te");
    let response = client.response();
    assert_eq!(response.status, 408, "{response:?}");
    assert_eq!(response.header("Connection"), Some("close"));
    client.assert_closed();
    server.assert_alive();
}

/// In one heap the idle timeout is the sweeper's (whole seconds, checked
/// once a second): the connection goes within two seconds.
fn an_idle_keep_alive_connection_is_closed(shape: Shape) {
    let dir = TempDir::new();
    let server = serve_http_in(&dir, shape, "HTTP_IDLE_TIMEOUT_MS = \"300\"");
    let mut client = Client::new(server.addr("http-echo"));
    client.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(client.response().status, 200);
    // Nothing more is sent; the server closes without a response.
    client.assert_closed();
    server.assert_alive();
}

fn http_1_0_is_answered_and_closed(shape: Shape) {
    let dir = TempDir::new();
    let server = serve_http_in(&dir, shape, "");
    for app in ["hello-http", "http-echo"] {
        let mut client = Client::new(server.addr(app));
        client.send(b"GET /old HTTP/1.0\r\n\r\n");
        let response = client.response();
        assert_eq!(response.status, 200, "{app}");
        assert_eq!(response.header("Connection"), Some("close"), "{app}");
        client.assert_closed();
    }
    // …unless it asks for keep-alive.
    let mut client = Client::new(server.addr("hello-http"));
    client.send(b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(client.response().header("Connection"), Some("keep-alive"));
    client.send(b"GET /old HTTP/1.0\r\n\r\n");
    assert_eq!(client.response().header("Connection"), Some("close"));
    client.assert_closed();
    server.assert_alive();
}

fn connection_close_is_honoured(shape: Shape) {
    let dir = TempDir::new();
    let server = serve_http_in(&dir, shape, "");
    let mut client = Client::new(server.addr("hello-http"));
    client.send(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    let response = client.response();
    assert_eq!(response.text(), "Hello, World!\n");
    assert_eq!(response.header("Connection"), Some("close"));
    client.assert_closed();
    server.assert_alive();
}

fn two_hundred_concurrent_clients_each_get_their_answers(shape: Shape) {
    const CLIENTS: usize = 200;
    const THREADS: usize = 8;
    let dir = TempDir::new();
    let server = serve_http_in(&dir, shape, "");
    let addr = server.addr("http-echo");
    // Every client connects and sends its first request before any reads,
    // so all 200 connections are served at once (200 processes, or 200
    // coroutines of one).
    let clients: Vec<(usize, Client)> = (0..CLIENTS)
        .map(|i| {
            let mut client = Client::new(addr);
            client.send(format!("GET /client/{i}/1 HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
            (i, client)
        })
        .collect();
    let mut batches: Vec<Vec<(usize, Client)>> = (0..THREADS).map(|_| Vec::new()).collect();
    for (n, client) in clients.into_iter().enumerate() {
        batches[n % THREADS].push(client);
    }
    thread::scope(|scope| {
        for batch in batches {
            scope.spawn(move || {
                for (i, mut client) in batch {
                    let first = client.response().text();
                    assert!(
                        first.starts_with(&format!("GET /client/{i}/1 HTTP/1.1\n")),
                        "client {i}: {first:?}"
                    );
                    let body = format!("second request of client {i}");
                    client.send(
                        format!(
                            "POST /client/{i}/2 HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    );
                    let second = client.response().text();
                    assert!(
                        second.starts_with(&format!("POST /client/{i}/2 HTTP/1.1\n"))
                            && second.ends_with(&body),
                        "client {i}: {second:?}"
                    );
                }
            });
        }
    });
    if shape == Shape::OneHeap {
        assert_eq!(
            processes_of(&server, "http-echo"),
            1,
            "one process served them all"
        );
    }
    server.assert_alive();
}

fn a_failing_handler_gets_500_and_ends_only_its_own_connection(shape: Shape) {
    let dir = TempDir::new();
    let server = serve_http_in(&dir, shape, "");
    let addr = server.addr("http-echo");
    let mut bystander = Client::new(addr);
    bystander.send(b"GET /before HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(bystander.response().status, 200);
    let mut failing = Client::new(addr);
    failing.send(b"GET /fail HTTP/1.1\r\nHost: test\r\n\r\n");
    let response = failing.response();
    assert_eq!(response.status, 500, "{response:?}");
    assert_eq!(response.text(), "Internal Server Error\n");
    assert_eq!(response.header("Connection"), Some("close"));
    failing.assert_closed();
    server.wait_for_log("asked to fail", util::DEADLINE);
    // The other connection, in the same process or not, goes on.
    bystander.send(b"GET /after HTTP/1.1\r\nHost: test\r\n\r\n");
    assert!(bystander
        .response()
        .text()
        .starts_with("GET /after HTTP/1.1\n"));
    server.assert_alive();
}

/// How many processes of `app` the admin endpoint lists.
fn processes_of(server: &Server, app: &str) -> usize {
    let listing = util::http_get(server.admin_addr(), "/processes");
    String::from_utf8_lossy(&listing.body)
        .matches(&format!("\"{app}\""))
        .count()
}

/// One heap through a drain: the idle keep-alive client is let go, and
/// the host ends with every process finished, not at the drain timeout.
#[test]
fn one_heap_lets_its_clients_go_when_the_host_drains() {
    let dir = TempDir::new();
    let server = serve_http_in(&dir, Shape::OneHeap, "");
    let mut client = Client::new(server.addr("hello-http"));
    client.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(client.response().text(), "Hello, World!\n");
    server.signal(libc::SIGTERM);
    client.assert_closed();
    server.assert_drained();
}

/// `http::serve` in an app in listener mode, whose handle 0 is its
/// listener: the guest's error says what to use instead.
#[test]
fn http_serve_in_listener_mode_says_to_use_serve_each() {
    let dir = TempDir::new();
    let app = app_with_manifest(&dir, "hello-http", "hello-http", "kind = \"listener\"\n");
    let server = Server::start(&[("hello-http", app)], &[]);
    let line = server.wait_for_log("handle 0 is not a connection", util::DEADLINE);
    assert!(line.contains("http::serve_each"), "{line}");
    server.assert_alive();
}

/// `http::serve_each` in an app in connection mode, whose handle 0 is a
/// connection: the guest ends with an error that says it needs listener
/// mode, instead of retrying its accept for ever.
#[test]
fn http_serve_each_in_connection_mode_says_it_needs_listener_mode() {
    let dir = TempDir::new();
    let manifest = "[env]\nHTTP_SERVE_EACH = \"1\"\n";
    let app = app_with_manifest(&dir, "http-echo", "http-echo", manifest);
    let server = Server::start(&[("http-echo", app)], &[]);
    // The connection's process starts, waits for it to be readable, then
    // tries to accept on it.
    let mut client = Client::new(server.addr("http-echo"));
    client.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    let line = server.wait_for_log("handle 0 is not a listener", util::DEADLINE);
    assert!(line.contains("kind = \\\"listener\\\""), "{line}");
    client.assert_closed();
    server.assert_alive();
}
