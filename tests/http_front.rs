//! The host's HTTP/1.1 front for CGI apps against hostile clients: a chunk
//! size past the body limit (host memory stays bounded), heads that could be
//! framed two ways (refused and closed, never a second response), `Expect:
//! 100-continue`, and the body and request timeouts (408, 504, a cut stream).
//!
//! Timeouts are configured short (1 s) and only statuses are asserted, never
//! elapsed times.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use crate::util::{
    connect, guest, read_response, read_until_closed, vm_rss, Response, Server, TempDir, DEADLINE,
};

/// A CGI app `name` served from a temp dir with `manifest` (after `kind =
/// "http"`) beside it.
fn serve_with_manifest(
    name: &str,
    manifest: &str,
    extra: &[std::ffi::OsString],
) -> (TempDir, Server) {
    let dir = TempDir::new();
    let wasm: PathBuf = dir.join(&format!("{name}.wasm"));
    std::fs::copy(guest(name), &wasm).unwrap();
    dir.write(
        &format!("{name}.toml"),
        format!("kind = \"http\"\n{manifest}"),
    );
    let server = Server::start(&[(name, wasm)], extra);
    (dir, server)
}

/// Sends `bytes` on a new connection; returns the first response and the
/// stream after it.
#[track_caller]
fn first_response(addr: SocketAddr, bytes: &[u8]) -> (Response, BufReader<TcpStream>) {
    let mut stream = connect(addr);
    stream.write_all(bytes).unwrap();
    let mut reader = BufReader::new(stream);
    let response = read_response(&mut reader);
    (response, reader)
}

/// Asserts that the host closes the connection with nothing sent after the
/// response already read.
#[track_caller]
fn assert_closed(mut reader: BufReader<TcpStream>, what: &str) {
    let buffered = reader.buffer().to_vec();
    let rest = read_until_closed(reader.get_mut());
    assert!(
        buffered.is_empty() && rest.is_empty(),
        "{what}: bytes after the response: {:?}",
        String::from_utf8_lossy(&[buffered, rest].concat())
    );
}

/// The request that follows each smuggling attempt on its connection: a
/// host that misframes the first request answers this one too.
const SMUGGLED: &str = "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n";

#[test]
fn a_chunk_size_past_the_limit_gets_413_or_a_close_with_memory_bounded() {
    const GIB: u64 = 1 << 30;
    const MAX_RSS: u64 = 200 << 20;
    let server = Server::start(
        &[("hello-cgi-wat", guest("hello-cgi-wat"))],
        &args!["--http", "hello-cgi-wat", "--threads", "1"],
    );
    let pid = server.pid();
    let mut stream = connect(server.addr("hello-cgi-wat"));
    stream
        .write_all(
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
              1\r\nx\r\nffffffffffffffff\r\n",
        )
        .unwrap();
    // Then bytes as fast as the host takes them, until it stops taking them.
    let block = vec![b'a'; 64 * 1024];
    let mut sent = 0u64;
    let mut max_rss = vm_rss(pid);
    while sent < GIB {
        if stream.write_all(&block).is_err() {
            break;
        }
        sent += block.len() as u64;
        if sent.is_multiple_of(16 << 20) {
            max_rss = max_rss.max(vm_rss(pid));
        }
    }
    max_rss = max_rss.max(vm_rss(pid));
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    assert!(
        sent < GIB,
        "the host took the whole GiB of an over-limit chunk without closing"
    );
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 413 "),
        "expected 413 or a close, got {:?}",
        String::from_utf8_lossy(&got[..got.len().min(200)])
    );
    assert!(
        max_rss < MAX_RSS,
        "the host's RSS reached {} MiB while a client sent {} MiB",
        max_rss >> 20,
        sent >> 20
    );
    server.assert_alive();
}

#[test]
fn the_chunked_body_limit_holds_for_the_running_total() {
    let (_dir, server) = serve_with_manifest("cgi-probe", "max_body = \"1KiB\"\n", &[]);
    let mut request =
        b"POST /env HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..20 {
        // 100 bytes each: the eleventh passes 1 KiB.
        request.extend_from_slice(b"64\r\n");
        request.extend_from_slice(&[b'b'; 100]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    request.extend_from_slice(SMUGGLED.as_bytes());
    let (response, reader) = first_response(server.addr("cgi-probe"), &request);
    assert_eq!(response.status, 413);
    assert_eq!(response.header("connection"), Some("close"));
    assert_closed(reader, "413");
}

#[test]
fn heads_that_could_be_framed_two_ways_are_refused_and_closed() {
    let server = Server::start(
        &[("cgi-probe", guest("cgi-probe"))],
        &args!["--http", "cgi-probe"],
    );
    let addr = server.addr("cgi-probe");
    let cases: &[(&str, &str, u16)] = &[
        (
            "Transfer-Encoding with Content-Length",
            "POST /env HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "Content-Length with Transfer-Encoding",
            "POST /env HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "conflicting Content-Lengths",
            "POST /env HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 0\r\n\r\nhello",
            400,
        ),
        (
            "a signed Content-Length",
            "POST /env HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nhello",
            400,
        ),
        (
            "chunked not last",
            "POST /env HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "chunked twice",
            "POST /env HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "another coding",
            "POST /env HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
            501,
        ),
        (
            "HTTP/1.1 without Host",
            "GET /env HTTP/1.1\r\n\r\n",
            400,
        ),
        (
            "two Hosts",
            "GET /env HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            400,
        ),
    ];
    for &(what, head, status) in cases {
        let (response, reader) = first_response(addr, format!("{head}{SMUGGLED}").as_bytes());
        assert_eq!(response.status, status, "{what}");
        assert_eq!(response.header("connection"), Some("close"), "{what}");
        assert_closed(reader, what);
    }
    server.assert_alive();
}

#[test]
fn chunk_sizes_with_signs_or_padding_are_refused_and_closed() {
    let server = Server::start(
        &[("cgi-probe", guest("cgi-probe"))],
        &args!["--http", "cgi-probe"],
    );
    let addr = server.addr("cgi-probe");
    for chunks in [
        "+5\r\nhello\r\n0\r\n\r\n",
        " 5\r\nhello\r\n0\r\n\r\n",
        "5 \r\nhello\r\n0\r\n\r\n",
        "05\t\r\nhello\r\n0\r\n\r\n",
        "0x5\r\nhello\r\n0\r\n\r\n",
        "5\nhello\r\n0\r\n\r\n",
        "5;ext\nx\r\nhello\r\n0\r\n\r\n",
        "5\r\nhello\n0\r\n\r\n",
        "10000000000000005\r\nhello\r\n0\r\n\r\n",
    ] {
        let request = format!(
            "POST /env HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}{SMUGGLED}"
        );
        let (response, reader) = first_response(addr, request.as_bytes());
        let what = format!("chunks {chunks:?}");
        assert_eq!(response.status, 400, "{what}");
        assert_eq!(response.header("connection"), Some("close"), "{what}");
        assert_closed(reader, &what);
    }
    // The same body, well framed, with extensions and a trailer.
    let request = format!(
        "POST /env HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
         5 ;a=1\r\nhello\r\n0\r\nX-Trailer: y\r\n\r\n{SMUGGLED}"
    );
    let mut stream = connect(addr);
    stream.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let text = read_response(&mut reader).text();
    assert!(text.contains("BODY-LENGTH=5\nhello"), "{text}");
    assert_eq!(read_response(&mut reader).text(), "hello\n");
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let server = Server::start(
        &[("cgi-probe", guest("cgi-probe"))],
        &args!["--http", "cgi-probe"],
    );
    let addr = server.addr("cgi-probe");
    for (framing, body) in [
        ("Content-Length: 5", "hello"),
        ("Transfer-Encoding: chunked", "5\r\nhello\r\n0\r\n\r\n"),
    ] {
        let mut stream = connect(addr);
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        stream
            .write_all(
                format!(
                    "PUT /env HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n{framing}\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap();
        // The client sends nothing more until the host says to go on.
        let mut interim = String::new();
        for _ in 0..2 {
            reader.read_line(&mut interim).unwrap();
        }
        assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n", "{framing}");
        stream.write_all(body.as_bytes()).unwrap();
        let response = read_response(&mut reader);
        assert_eq!(response.status, 200, "{framing}");
        let text = response.text();
        assert!(text.contains("BODY-LENGTH=5\nhello"), "{framing}: {text}");
    }
}

/// A client that declares a 100-byte body and sends 2.
const STALLED_BODY: &[u8] = b"POST /sum HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nab";

#[test]
fn a_stalled_body_the_guest_reads_gets_408_and_a_close() {
    let (_dir, server) = serve_with_manifest("cgi-probe", "body_timeout = \"1s\"\n", &[]);
    let (response, reader) = first_response(server.addr("cgi-probe"), STALLED_BODY);
    assert_eq!(response.status, 408);
    assert_eq!(response.header("connection"), Some("close"));
    assert_closed(reader, "408");
    server.wait_for_log("(body_timeout)", DEADLINE);
}

#[test]
fn a_stalled_chunked_body_gets_408_and_a_close() {
    let (_dir, server) = serve_with_manifest("cgi-probe", "body_timeout = \"1s\"\n", &[]);
    let (response, reader) = first_response(
        server.addr("cgi-probe"),
        b"POST /sum HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    );
    assert_eq!(response.status, 408);
    assert_eq!(response.header("connection"), Some("close"));
    assert_closed(reader, "408");
}

#[test]
fn a_stalled_body_the_guest_left_unread_closes_after_the_response() {
    // hello-cgi-wat answers without reading stdin; the host then skips the
    // rest of the body, which never comes.
    let (_dir, server) = serve_with_manifest("hello-cgi-wat", "body_timeout = \"1s\"\n", &[]);
    let (response, reader) = first_response(
        server.addr("hello-cgi-wat"),
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nab",
    );
    assert_eq!(response.status, 200);
    assert_closed(reader, "the response to a body that stalled unread");
}

#[test]
fn a_process_past_the_request_timeout_gets_504() {
    let (_dir, server) = serve_with_manifest("cgi-probe", "request_timeout = \"1s\"\n", &[]);
    let (response, reader) = first_response(
        server.addr("cgi-probe"),
        b"GET /sleep/600000 HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(response.status, 504);
    assert_eq!(response.header("connection"), Some("close"));
    assert_closed(reader, "504");
    server.wait_for_log("(request_timeout)", DEADLINE);
}

#[test]
fn the_request_timeout_while_the_body_arrives_gets_408() {
    let (_dir, server) = serve_with_manifest(
        "cgi-probe",
        "request_timeout = \"1s\"\nbody_timeout = \"10m\"\n",
        &[],
    );
    let (response, reader) = first_response(server.addr("cgi-probe"), STALLED_BODY);
    assert_eq!(response.status, 408);
    assert_closed(reader, "408");
    server.wait_for_log("(request_timeout)", DEADLINE);
}

#[test]
fn the_request_timeout_after_the_response_head_cuts_the_response() {
    let (_dir, server) = serve_with_manifest("cgi-probe", "request_timeout = \"1s\"\n", &[]);
    let mut stream = connect(server.addr("cgi-probe"));
    stream
        .write_all(b"GET /partial HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let got = read_until_closed(&mut stream);
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\n"),
        "{}",
        &text[..text.len().min(200)]
    );
    assert!(text.contains("Transfer-Encoding: chunked\r\n"));
    assert!(
        !text.ends_with("\r\n0\r\n\r\n"),
        "the response was completed instead of cut"
    );
    server.wait_for_log("(request_timeout)", DEADLINE);
}

#[test]
fn no_process_place_by_the_request_timeout_gets_503() {
    // One place; request A's head comes first, then B takes the place while
    // A's body is still arriving. B holds it until B's own deadline, which is
    // later than A's: A waits for a place until its deadline and gets 503.
    let dir = TempDir::new();
    let wasm = dir.join("cgi-probe.wasm");
    std::fs::copy(guest("cgi-probe"), &wasm).unwrap();
    dir.write(
        "cgi-probe.toml",
        "kind = \"http\"\nrequest_timeout = \"4s\"\n",
    );
    let server = Server::start_logging(
        &[("cgi-probe", wasm)],
        &args!["--max-processes", "1"],
        "info,mnvkd_host::app=debug",
    );
    let addr = server.addr("cgi-probe");
    let mut a = connect(addr);
    let mut a_reader = BufReader::new(a.try_clone().unwrap());
    a.write_all(
        b"POST /env HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .unwrap();
    // The interim answer says A's head was read: its deadline runs from then.
    let mut interim = String::new();
    for _ in 0..2 {
        a_reader.read_line(&mut interim).unwrap();
    }
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    // A margin between the two deadlines, so that which passes first does
    // not depend on scheduling.
    std::thread::sleep(Duration::from_secs(2));
    let mut b = connect(addr);
    b.write_all(b"GET /sleep/600000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    server.wait_for_log("took a process place", DEADLINE);
    a.write_all(b"5\r\nhello\r\n0\r\n\r\n").unwrap();
    let response = read_response(&mut a_reader);
    assert_eq!(response.status, 503);
    assert_eq!(response.header("connection"), Some("close"));
    assert_closed(a_reader, "503");
    server.wait_for_log("no process place", DEADLINE);
    // B is ended at its own deadline.
    let response = read_response(&mut BufReader::new(b));
    assert_eq!(response.status, 504);
}
