//! The server loop over an in-memory stream: each `read` returns the next
//! scripted piece, each `write` is recorded, so tests see read boundaries
//! and how responses are batched into writes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::VecDeque;
use std::io::{self, Read, Write};

use super::*;

/// Counts this thread's allocations, to check the steady state allocates
/// nothing per request.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

/// Scripted reads in, recorded writes out.
#[derive(Debug, Default)]
struct Script {
    reads: VecDeque<Vec<u8>>,
    writes: Vec<Vec<u8>>,
}

impl Script {
    fn new(reads: &[&[u8]]) -> Script {
        Script {
            reads: reads.iter().map(|piece| piece.to_vec()).collect(),
            writes: Vec::new(),
        }
    }

    /// Everything written, as text.
    fn output(&self) -> String {
        String::from_utf8(self.writes.concat()).unwrap()
    }
}

impl Read for Script {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(piece) = self.reads.front_mut() else {
            return Ok(0);
        };
        let n = piece.len().min(buf.len());
        buf[..n].copy_from_slice(&piece[..n]);
        piece.drain(..n);
        if piece.is_empty() {
            self.reads.pop_front();
        }
        Ok(n)
    }
}

impl Write for Script {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writes.push(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn server() -> Server {
    Server::new().date(false)
}

/// Serves `reads` with a handler that answers `METHOD PATH BODY`.
fn echo(server: &Server, reads: &[&[u8]]) -> (io::Result<()>, Script) {
    let mut script = Script::new(reads);
    let result = server.serve_stream(&mut script, |req, res| {
        res.header("Content-Type", "text/plain").body_parts(&[
            req.method.as_bytes(),
            b" ",
            req.path.as_bytes(),
            b" ",
            req.body,
        ])
    });
    (result, script)
}

fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn refused(status: &str, phrase: &str) -> String {
    format!(
        "HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{phrase}\n",
        phrase.len() + 1
    )
}

#[test]
fn answers_a_request_and_keeps_the_connection() {
    let (result, script) = echo(&server(), &[b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"]);
    result.unwrap();
    assert_eq!(script.output(), ok("GET /a "));
}

#[test]
fn pipelined_requests_are_answered_in_order_in_one_write() {
    let reads: &[&[u8]] = &[b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n\
        POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
        GET /3 HTTP/1.1\r\nHost: x\r\n\r\n"];
    let (result, script) = echo(&server(), reads);
    result.unwrap();
    assert_eq!(script.writes.len(), 1, "{:?}", script.output());
    assert_eq!(
        script.output(),
        ok("GET /1 ") + &ok("POST /2 abc") + &ok("GET /3 ")
    );
}

#[test]
fn a_partial_request_flushes_the_answers_before_it() {
    let reads: &[&[u8]] = &[
        b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3 HT",
        b"TP/1.1\r\nHost: x\r\n\r\n",
    ];
    let (result, script) = echo(&server(), reads);
    result.unwrap();
    assert_eq!(script.writes.len(), 2);
    assert_eq!(
        String::from_utf8(script.writes[0].clone()).unwrap(),
        ok("GET /1 ") + &ok("GET /2 ")
    );
    assert_eq!(
        String::from_utf8(script.writes[1].clone()).unwrap(),
        ok("GET /3 ")
    );
}

#[test]
fn requests_split_at_every_byte() {
    let raw: &[u8] = b"POST /p?q=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
        POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3;x=y\r\nllo\r\n0\r\n\r\n\
        GET /end HTTP/1.1\r\nHost: x\r\n\r\n";
    let expected = ok("POST /p?q=1 hello") + &ok("POST /c hello") + &ok("GET /end ");
    for split in 1..raw.len() {
        let (result, script) = echo(&server(), &[&raw[..split], &raw[split..]]);
        result.unwrap();
        assert_eq!(script.output(), expected, "split at {split}");
    }
    let bytes: Vec<&[u8]> = raw.chunks(1).collect();
    let (result, script) = echo(&server(), &bytes);
    result.unwrap();
    assert_eq!(script.output(), expected, "one byte per read");
}

#[test]
fn large_bodies_grow_the_buffer() {
    let body = "x".repeat(300_000);
    let head = format!(
        "PUT /big HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let raw = head + &body;
    let pieces: Vec<&[u8]> = raw.as_bytes().chunks(7000).collect();
    let (result, script) = echo(&server(), &pieces);
    result.unwrap();
    assert_eq!(script.output(), ok(&format!("PUT /big {body}")));
}

#[test]
fn chunked_bodies_of_many_chunks() {
    let mut raw = b"POST /c HTTP/1.1\r\nHost: x\r\ntransfer-encoding: Chunked\r\n\r\n".to_vec();
    let mut expected = String::new();
    for i in 0..2000 {
        let chunk = format!("{i},");
        raw.extend(format!("{:X}\r\n{chunk}\r\n", chunk.len()).bytes());
        expected.push_str(&chunk);
    }
    raw.extend(b"0\r\nTrailer: yes\r\n\r\n");
    let pieces: Vec<&[u8]> = raw.chunks(1000).collect();
    let (result, script) = echo(&server(), &pieces);
    result.unwrap();
    assert_eq!(script.output(), ok(&format!("POST /c {expected}")));
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let reads: &[&[u8]] = &[
        b"PUT /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
        b"hi",
    ];
    let (result, script) = echo(&server(), reads);
    result.unwrap();
    assert_eq!(script.writes.len(), 2);
    assert_eq!(script.writes[0], b"HTTP/1.1 100 Continue\r\n\r\n");
    assert_eq!(
        String::from_utf8(script.writes[1].clone()).unwrap(),
        ok("PUT /e hi")
    );
}

#[test]
fn head_gets_the_length_but_no_body() {
    let (result, script) = echo(&server(), &[b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n"]);
    result.unwrap();
    assert_eq!(
        script.output(),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n\r\n"
    );
}

#[test]
fn http_1_0_closes_unless_asked_to_keep_alive() {
    let reads: &[&[u8]] = &[b"GET /a HTTP/1.0\r\n\r\nGET /ignored HTTP/1.0\r\n\r\n"];
    let (result, script) = echo(&server(), reads);
    result.unwrap();
    assert_eq!(
        script.output(),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 7\r\n\r\nGET /a "
    );

    let reads: &[&[u8]] =
        &[b"GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n"];
    let (result, script) = echo(&server(), reads);
    result.unwrap();
    assert_eq!(
        script.output(),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive\r\nContent-Length: 7\r\n\r\nGET /a \
         HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 7\r\n\r\nGET /b "
    );
}

#[test]
fn connection_close_ends_after_the_response() {
    let reads: &[&[u8]] =
        &[b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"];
    let (result, script) = echo(&server(), reads);
    result.unwrap();
    assert_eq!(
        script.output(),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 7\r\n\r\nGET /a "
    );
}

#[test]
fn bad_input_is_refused_and_closes() {
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
        "a".repeat(17 * 1024)
    );
    let many_headers = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
        "A: b\r\n".repeat(MAX_HEADERS)
    );
    let unfinished_big_head = format!("GET / HTTP/1.1\r\nHost: x\r\nX: {}", "a".repeat(17 * 1024));
    let cases: &[(&[u8], &str, &str)] = &[
        (b"GARBAGE\r\n\r\n", "400", "Bad Request"),
        (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", "400", "Bad Request"),
        (b"GET / HTTP/1.1\r\n\r\n", "400", "Bad Request"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400", "Bad Request"),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", "400", "Bad Request"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n", "400", "Bad Request"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", "400", "Bad Request"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "400", "Bad Request"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", "400", "Bad Request"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", "400", "Bad Request"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "400", "Bad Request"),
        (big_head.as_bytes(), "431", "Request Header Fields Too Large"),
        (unfinished_big_head.as_bytes(), "431", "Request Header Fields Too Large"),
        (many_headers.as_bytes(), "431", "Request Header Fields Too Large"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n", "413", "Content Too Large"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n100001\r\n", "413", "Content Too Large"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", "501", "Not Implemented"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "501", "Not Implemented"),
    ];
    for &(raw, status, phrase) in cases {
        // A valid request before the bad one is still answered, first.
        let mut input = b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        input.extend_from_slice(raw);
        let pieces: Vec<&[u8]> = input.chunks(4096).collect();
        let (result, script) = echo(&server(), &pieces);
        result.unwrap();
        assert_eq!(
            script.output(),
            ok("GET /ok ") + &refused(status, phrase),
            "{:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(80)])
        );
    }
}

#[test]
fn limits_are_settable() {
    let server = server().max_body(4).max_head(64);
    let (_, script) = echo(
        &server,
        &[b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"],
    );
    assert_eq!(script.output(), refused("413", "Content Too Large"));
    let (_, script) = echo(
        &server,
        &[b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nhell"],
    );
    assert_eq!(script.output(), ok("POST / hell"));
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "p".repeat(64));
    let (_, script) = echo(&server, &[long.as_bytes()]);
    assert_eq!(
        script.output(),
        refused("431", "Request Header Fields Too Large")
    );
}

#[test]
fn a_failing_handler_gets_a_500_and_its_error_back() {
    let mut script =
        Script::new(&[b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /never HTTP/1.1\r\nHost: x\r\n\r\n"]);
    let err = server()
        .serve_stream(&mut script, |_req, res| {
            res.header("X-Lost", "yes");
            Err(io::Error::other("handler broke"))
        })
        .unwrap_err();
    assert_eq!(err.to_string(), "handler broke");
    assert_eq!(
        script.output(),
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 22\r\n\r\nInternal Server Error\n"
    );
}

#[test]
fn header_injection_is_refused() {
    let mut script = Script::new(&[b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]);
    let mut seen = None;
    let result = server().serve_stream(&mut script, |_req, res| {
        let err = res
            .header("X-Evil", "a\r\nSet-Cookie: b")
            .body("no")
            .unwrap_err();
        seen = Some(err.kind());
        Err(err)
    });
    assert!(result.is_err());
    assert_eq!(seen, Some(io::ErrorKind::InvalidInput));
    assert!(script.output().starts_with("HTTP/1.1 500 "));
    assert!(!script.output().contains("Set-Cookie"));
}

#[test]
fn a_handler_can_close_the_connection() {
    let reads: &[&[u8]] =
        &[b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n"];
    for how in ["header", "close"] {
        let mut script = Script::new(reads);
        server()
            .serve_stream(&mut script, |_req, res| {
                if how == "header" {
                    res.header("Connection", "close");
                } else {
                    res.close();
                }
                res.body("bye")
            })
            .unwrap();
        assert_eq!(
            script.output(),
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye",
            "{how}"
        );
    }
}

#[test]
fn an_unsent_response_goes_out_empty() {
    let mut script = Script::new(&[b"DELETE /x HTTP/1.1\r\nHost: x\r\n\r\n"]);
    server()
        .serve_stream(&mut script, |_req, res| {
            res.status(204);
            Ok(())
        })
        .unwrap();
    assert_eq!(script.output(), "HTTP/1.1 204 No Content\r\n\r\n");
}

#[test]
fn chunked_responses() {
    let handler = |_req: &Request<'_>, res: &mut Response<'_>| {
        let mut body = res.status(201).chunked()?;
        body.write_all(b"hello, ")?;
        body.write_all(b"")?;
        body.write_all(&[b'w'; 20])?;
        body.finish()
    };
    let mut script =
        Script::new(&[b"GET / HTTP/1.1\r\nHost: x\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\n\r\n"]);
    server().serve_stream(&mut script, handler).unwrap();
    let ws = "w".repeat(20);
    assert_eq!(
        script.output(),
        format!(
            "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n7\r\nhello, \r\n14\r\n{ws}\r\n0\r\n\r\n\
             HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
    );
    // HTTP/1.0: the bytes as they are, ended by the close.
    let mut script = Script::new(&[b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"]);
    server().serve_stream(&mut script, handler).unwrap();
    assert_eq!(
        script.output(),
        format!("HTTP/1.1 201 Created\r\nConnection: close\r\n\r\nhello, {ws}")
    );
}

#[test]
fn big_chunks_and_bodies_are_written_without_copying() {
    let big = vec![b'z'; FLUSH_AT];
    let mut script =
        Script::new(&[b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n"]);
    server()
        .serve_stream(&mut script, |req, res| {
            if req.path == "/" {
                res.body(&big)
            } else {
                let mut body = res.chunked()?;
                body.write_all(&big)?;
                body.finish()
            }
        })
        .unwrap();
    let writes: Vec<usize> = script.writes.iter().map(Vec::len).collect();
    // head; body; (2nd head + chunk size); chunk; (CRLF + last chunk)
    assert_eq!(writes.len(), 5, "{writes:?}");
    assert_eq!(writes[1], FLUSH_AT);
    assert_eq!(writes[3], FLUSH_AT);
    assert!(script.writes[2].ends_with(b"\r\n10000\r\n"));
    assert_eq!(script.writes[4], b"\r\n0\r\n\r\n");
}

#[test]
fn date_header_is_sent_when_on() {
    let mut script = Script::new(&[b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]);
    Server::new()
        .serve_stream(&mut script, |_req, res| res.body("d"))
        .unwrap();
    let out = script.output();
    let date = out.lines().find(|line| line.starts_with("Date: ")).unwrap();
    assert_eq!(date.len(), date::LINE_LEN - 2, "{date}");
    assert!(date.ends_with(" GMT"), "{date}");
}

#[test]
fn request_accessors() {
    let mut script =
        Script::new(&[b"GET /x/y?a=1&b=2 HTTP/1.1\r\nHost: h\r\nX-Two: 1\r\nx-two: 2\r\n\r\n"]);
    server()
        .serve_stream(&mut script, |req, res| {
            assert_eq!(req.path_only(), "/x/y");
            assert_eq!(req.query(), Some("a=1&b=2"));
            assert_eq!(req.header("X-TWO"), Some(&b"1"[..]));
            assert_eq!(req.headers.len(), 3);
            assert_eq!(req.version, 1);
            res.body("")
        })
        .unwrap();
}

/// The server's allocations to answer `count` keep-alive requests.
fn allocations_for(count: usize) -> usize {
    let one = b"GET /hello HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n";
    let reads: Vec<&[u8]> = vec![&one[..]; count];
    let mut script = Script::new(&reads);
    // The script records each write in a Vec of its own; leave those out.
    script.writes.reserve(count);
    let before = allocations();
    Server::new()
        .serve_stream(&mut script, |_req, res| {
            res.header("Content-Type", "text/plain")
                .body("Hello, World!\n")
        })
        .unwrap();
    let total = allocations() - before;
    assert_eq!(script.writes.len(), count);
    total - count
}

#[test]
fn steady_state_allocates_nothing_per_request() {
    // Buffers are allocated once per connection; nothing per request.
    assert_eq!(allocations_for(1000), allocations_for(10));
}

/// A connection whose readiness can be stale, as the host's can: after the
/// request it says readable once with nothing to read, then times out.
/// Its blocking read must never be called: that would wait for a client
/// who waits for the close.
struct StaleReadiness {
    request: Option<Vec<u8>>,
    stale_waits: u32,
    writes: Vec<u8>,
    closed: bool,
}

impl Io for StaleReadiness {
    async fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        panic!("a blocking read after a stale readiness would wait forever");
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writes.extend_from_slice(buf);
        Ok(())
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        Ok(self.request.take().map(|request| {
            buf[..request.len()].copy_from_slice(&request);
            request.len()
        }))
    }

    fn read_ready(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.try_read(buf)
    }

    async fn wait_readable(&mut self, _timeout: Duration) -> io::Result<bool> {
        if self.stale_waits > 0 {
            self.stale_waits -= 1;
            return Ok(true);
        }
        Ok(false)
    }

    fn close(&mut self) {
        self.closed = true;
    }

    fn sink(&mut self) -> Option<&mut dyn Sink> {
        None
    }
}

/// Serves `request` on a [`StaleReadiness`] readable `stale_waits` times with
/// nothing there; returns the result, whether it closed, and the output.
fn serve_stale(request: &[u8], stale_waits: u32) -> (io::Result<()>, bool, String) {
    let mut io = StaleReadiness {
        request: Some(request.to_vec()),
        stale_waits,
        writes: Vec::new(),
        closed: false,
    };
    let result = run_blocking(
        &server(),
        &mut io,
        &mut |_req: &Request<'_>, res: &mut Response<'_>| res.body("hi\n"),
    );
    (result, io.closed, String::from_utf8(io.writes).unwrap())
}

#[test]
fn a_stale_readiness_neither_blocks_the_wait_for_a_request_nor_the_close() {
    // Between requests: readable twice with nothing there, then the idle
    // timeout ends the connection.
    let (result, closed, output) = serve_stale(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 2);
    assert!(result.is_ok(), "{result:?}");
    assert!(closed, "the idle connection was closed");
    assert!(output.starts_with("HTTP/1.1 200 OK\r\n"), "{output}");
    // After a refusal: the close lingers, readable once with nothing there.
    let (result, closed, output) = serve_stale(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        1,
    );
    assert!(result.is_ok(), "{result:?}");
    assert!(closed, "the refused connection was closed");
    assert!(output.starts_with("HTTP/1.1 501 "), "{output}");
}
