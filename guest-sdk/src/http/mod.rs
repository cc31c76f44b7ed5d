//! A fast HTTP/1.1 server for a micro-process's connection.
//!
//! [`serve`] runs a request loop over [`connection()`](crate::connection):
//! it reads requests into one reused buffer, parses each head with
//! [`httparse`](https://docs.rs/httparse) into slices of that buffer, and
//! calls the handler with a [`Request`] (method, path, headers, body; all
//! borrowed, nothing copied) and a [`Response`] to fill in.
//!
//! - **Keep-alive**: HTTP/1.1 connections stay open unless the client sends
//!   `Connection: close`; HTTP/1.0 ones only with `Connection: keep-alive`.
//! - **Pipelining**: requests that arrive together are all answered, in
//!   order, and their responses leave in one write: output is sent only once
//!   no complete request is left in the buffer (or 64 KiB are pending).
//! - **Bodies** by `Content-Length` or chunked (decoded in place), up to
//!   [`Server::max_body`] bytes, given to the handler whole. `Expect:
//!   100-continue` is answered.
//! - **Responses** with `Content-Length` ([`Response::body`]) or streamed
//!   chunked ([`Response::chunked`]); `Date` is added.
//! - **No allocation per request** once the buffers have grown to the
//!   connection's largest request and response.
//!
//! # What bad input gets
//!
//! The server answers and closes the connection, without calling the
//! handler:
//!
//! | input | response |
//! | --- | --- |
//! | malformed request line, header or chunked framing; both `Content-Length` and `Transfer-Encoding`; conflicting `Content-Length`s; HTTP/1.1 without exactly one `Host` | `400 Bad Request` |
//! | request head over [`Server::max_head`] (16 KiB), or over 100 header fields | `431 Request Header Fields Too Large` |
//! | body over [`Server::max_body`] (1 MiB) | `413 Content Too Large` |
//! | a `Transfer-Encoding` other than `chunked` | `501 Not Implemented` |
//! | a begun request head not complete within [`Server::head_timeout`] (10 s), or no body bytes for [`Server::body_timeout`] (30 s) | `408 Request Timeout` |
//!
//! A keep-alive connection with no request for [`Server::idle_timeout`]
//! (30 s) is closed without a response. A handler that fails before
//! sending its response gets a `500` sent for it (and the connection closed).
//!
//! Which heads are refused and how strictly chunked framing is read is the
//! [`mnvkd_http1`] crate's, shared with the
//! host's CGI front, so the two agree on where every request ends.
//!
//! # Examples
//!
//! ```no_run
//! use mnvkd_guest::http;
//!
//! fn main() -> std::io::Result<()> {
//!     http::serve(|req, res| {
//!         if req.path == "/hello" {
//!             res.header("Content-Type", "text/plain").body("Hello, World!\n")
//!         } else {
//!             res.status(404).body("")
//!         }
//!     })
//! }
//! ```

mod date;
mod io;
mod response;
#[cfg(test)]
mod tests;

use std::io::{ErrorKind, Read, Write};
use std::mem::MaybeUninit;
use std::ops::Range;
use std::time::{Duration, Instant};

pub use date::Date;
pub use httparse::Header;
pub use response::{ChunkedBody, Response};

use self::io::{Io, Owned, Stream};
use mnvkd_http1::chunked::{Decoder, Progress};
use mnvkd_http1::Framing;
use response::{Exchange, FLUSH_AT};

use crate::Handle;

/// The most header fields one request may have; more get `431`.
pub const MAX_HEADERS: usize = 100;

/// The read buffer's first size; it grows to fit the largest request.
const INITIAL_BUFFER: usize = 4096;

/// A read is not started with less free room than this at the buffer's end
/// (the pending bytes are moved to its start first).
const MIN_READ: usize = 2048;

/// How much a closing connection reads and drops, at most, so that closing
/// with unread bytes does not reset it before the client read the answer.
const LINGER_BYTES: usize = 1 << 20;

/// How long a closing connection waits for more bytes to drop, per read.
const LINGER_WAIT: Duration = Duration::from_millis(100);

/// A request: slices of the connection's read buffer, valid while the
/// handler runs.
///
/// # Examples
///
/// ```no_run
/// use mnvkd_guest::http;
///
/// http::serve(|req, res| {
///     let agent = req.header("User-Agent").unwrap_or(b"?");
///     res.body_parts(&[req.method.as_bytes(), b" ", req.path.as_bytes(), b" from ", agent])
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The method, e.g. `GET`.
    pub method: &'a str,
    /// The request target as sent, query included, e.g. `/search?q=wasm`.
    pub path: &'a str,
    /// The minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub version: u8,
    /// The header fields, in the order sent.
    pub headers: &'a [Header<'a>],
    /// The body: `Content-Length` bytes, or the decoded chunks; empty if
    /// there is none.
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    /// The value of the first header field named `name` (any case).
    ///
    /// # Examples
    ///
    /// ```
    /// use mnvkd_guest::http::{Header, Request};
    ///
    /// let headers = [Header { name: "Content-Type", value: b"text/plain" }];
    /// let req = Request { method: "GET", path: "/", version: 1, headers: &headers, body: b"" };
    /// assert_eq!(req.header("content-type"), Some(&b"text/plain"[..]));
    /// assert_eq!(req.header("accept"), None);
    /// ```
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case(name))
            .map(|header| header.value)
    }

    /// The path without the query: `/search` for `/search?q=wasm`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mnvkd_guest::http::Request;
    ///
    /// let req = Request { method: "GET", path: "/a?b=c", version: 1, headers: &[], body: b"" };
    /// assert_eq!((req.path_only(), req.query()), ("/a", Some("b=c")));
    /// ```
    pub fn path_only(&self) -> &'a str {
        self.path
            .split_once('?')
            .map_or(self.path, |(path, _)| path)
    }

    /// The query, after the first `?`, if there is one.
    pub fn query(&self) -> Option<&'a str> {
        self.path.split_once('?').map(|(_, query)| query)
    }
}

/// A server's limits and timeouts; [`serve`] uses the defaults.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use mnvkd_guest::http::Server;
///
/// Server::new()
///     .max_body(8 << 20)
///     .head_timeout(Some(Duration::from_secs(5)))
///     .serve(|req, res| res.body(req.body))?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Server {
    max_head: usize,
    max_body: usize,
    head_timeout: Option<Duration>,
    body_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    date: bool,
}

impl Default for Server {
    fn default() -> Server {
        Server::new()
    }
}

impl Server {
    /// The defaults: 16 KiB heads, 1 MiB bodies, 10 s to send a head, 30 s
    /// between body bytes, 30 s idle, with a `Date` header.
    pub const fn new() -> Server {
        Server {
            max_head: 16 * 1024,
            max_body: 1024 * 1024,
            head_timeout: Some(Duration::from_secs(10)),
            body_timeout: Some(Duration::from_secs(30)),
            idle_timeout: Some(Duration::from_secs(30)),
            date: true,
        }
    }

    /// The largest request head (request line and header fields) in bytes;
    /// a larger one gets `431`.
    pub const fn max_head(mut self, bytes: usize) -> Server {
        self.max_head = bytes;
        self
    }

    /// The largest request body in bytes; a larger one gets `413`. The
    /// body is held whole in the micro-heap, so keep this well under the
    /// app's `max_memory`.
    pub const fn max_body(mut self, bytes: usize) -> Server {
        self.max_body = bytes;
        self
    }

    /// How long a begun request head may take to arrive in full before
    /// the server answers `408` and closes; `None`: no limit.
    pub const fn head_timeout(mut self, timeout: Option<Duration>) -> Server {
        self.head_timeout = timeout;
        self
    }

    /// How long the server waits for more of a request body before it
    /// answers `408` and closes; `None`: no limit.
    pub const fn body_timeout(mut self, timeout: Option<Duration>) -> Server {
        self.body_timeout = timeout;
        self
    }

    /// How long a connection may sit idle between requests before it is
    /// closed; `None`: no limit.
    pub const fn idle_timeout(mut self, timeout: Option<Duration>) -> Server {
        self.idle_timeout = timeout;
        self
    }

    /// Whether responses carry a `Date` header (default: yes; it costs one
    /// clock read per batch of requests).
    pub const fn date(mut self, on: bool) -> Server {
        self.date = on;
        self
    }

    /// Serves HTTP on this process's connection until the client closes
    /// it, the server closes it (`Connection: close`, HTTP/1.0, bad input,
    /// a timeout), or the handler fails.
    ///
    /// # Errors
    ///
    /// The handler's error, after a `500` was sent for it if it had not
    /// sent its response. A connection reset or broken pipe is a normal
    /// end, not an error.
    pub fn serve<F>(&self, mut handler: F) -> std::io::Result<()>
    where
        F: FnMut(&Request<'_>, &mut Response<'_>) -> std::io::Result<()>,
    {
        run(self, &mut crate::connection(), &mut handler)
    }

    /// Serves HTTP on `handle` (say, a connection a listener-mode app
    /// accepted), as [`serve`](Self::serve) does, and closes it at the end.
    ///
    /// # Errors
    ///
    /// As for [`serve`](Self::serve).
    pub fn serve_handle<F>(&self, handle: Handle, mut handler: F) -> std::io::Result<()>
    where
        F: FnMut(&Request<'_>, &mut Response<'_>) -> std::io::Result<()>,
    {
        run(self, &mut Owned(Some(handle)), &mut handler)
    }

    /// Serves HTTP on any byte stream, without timeouts (a read just
    /// blocks). For tests, and for streams that are not handles.
    ///
    /// # Errors
    ///
    /// As for [`serve`](Self::serve).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Cursor, Read, Write};
    /// use mnvkd_guest::http::Server;
    ///
    /// /// Requests in, responses out.
    /// struct Pipe(Cursor<Vec<u8>>, Vec<u8>);
    /// impl Read for Pipe {
    ///     fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> { self.0.read(buf) }
    /// }
    /// impl Write for Pipe {
    ///     fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> { self.1.write(buf) }
    ///     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
    /// }
    ///
    /// let mut pipe = Pipe(Cursor::new(b"GET / HTTP/1.0\r\n\r\n".to_vec()), Vec::new());
    /// Server::new().date(false).serve_stream(&mut pipe, |_req, res| res.body("hi\n"))?;
    /// assert_eq!(pipe.1, b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nhi\n");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn serve_stream<S, F>(&self, stream: S, mut handler: F) -> std::io::Result<()>
    where
        S: Read + Write,
        F: FnMut(&Request<'_>, &mut Response<'_>) -> std::io::Result<()>,
    {
        run(self, &mut Stream(Some(stream)), &mut handler)
    }
}

/// Serves HTTP on this process's connection with the default [`Server`]:
/// calls `handler` for each request, until the connection ends.
///
/// # Errors
///
/// As for [`Server::serve`].
///
/// # Examples
///
/// ```no_run
/// fn main() -> std::io::Result<()> {
///     mnvkd_guest::http::serve(|_req, res| {
///         res.header("Content-Type", "text/plain").body("Hello, World!\n")
///     })
/// }
/// ```
pub fn serve<F>(handler: F) -> std::io::Result<()>
where
    F: FnMut(&Request<'_>, &mut Response<'_>) -> std::io::Result<()>,
{
    Server::new().serve(handler)
}

/// What the server needs from a request head, owned, so the buffer can be
/// refilled while the body arrives.
#[derive(Clone, Copy, Debug)]
struct Head {
    len: usize,
    framing: Framing,
    exchange: Exchange,
    expect_continue: bool,
}

/// Whether the loop goes on after a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Next,
    Closed,
}

/// Reads a head's framing and connection rules with the shared framing
/// core ([`mnvkd_http1::analyze`], the host's CGI front uses it too); `Err`
/// is the status code to refuse it with.
fn analyze(req: &httparse::Request<'_, '_>, len: usize, max_body: usize) -> Result<Head, u16> {
    let head = mnvkd_http1::analyze(req, max_body as u64).map_err(|refusal| refusal.status())?;
    Ok(Head {
        len,
        framing: head.framing,
        exchange: Exchange {
            version: head.version,
            head: req.method == Some("HEAD"),
            keep_alive: head.keep_alive,
        },
        expect_continue: head.expect_continue,
    })
}

/// The read buffer: `data[start..end]` are bytes read but not yet used.
#[derive(Debug)]
struct InBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
    /// The most bytes it grows to.
    cap: usize,
    /// The last read got fewer bytes than it had room for: it took all the
    /// stream had, so a `try-read` now would find nothing.
    drained: bool,
}

impl InBuf {
    fn pending(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    fn pending_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.end]
    }

    /// Drops the first `n` pending bytes.
    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Drops `range` of the pending bytes, moving the ones after it down.
    fn remove(&mut self, range: Range<usize>) {
        if range.is_empty() {
            return;
        }
        let from = self.start + range.end;
        self.data
            .copy_within(from..self.end, self.start + range.start);
        self.end -= range.len();
    }

    /// Reads once, with room for at least `want` pending bytes in all, and
    /// for `MIN_READ` more where the limit allows (moving the pending bytes
    /// to the front, or growing, first).
    fn read(&mut self, io: &mut dyn Io, want: usize) -> std::io::Result<usize> {
        self.read_with(want, |room| io.read(room).map(Some))
            .map(|n| n.unwrap_or(0))
    }

    /// As [`InBuf::read`], without waiting: `None` when nothing is there.
    fn try_read(&mut self, io: &mut dyn Io, want: usize) -> std::io::Result<Option<usize>> {
        self.read_with(want, |room| io.try_read(room))
    }

    /// As [`InBuf::read`], after a wait said the stream is readable (see
    /// [`Io::read_ready`]): `None` when nothing was there after all.
    fn read_ready(&mut self, io: &mut dyn Io, want: usize) -> std::io::Result<Option<usize>> {
        self.read_with(want, |room| io.read_ready(room))
    }

    /// Reads with `read` into the room for `want` (see [`InBuf::read`]),
    /// noting whether it took all there was.
    fn read_with(
        &mut self,
        want: usize,
        read: impl FnOnce(&mut [u8]) -> std::io::Result<Option<usize>>,
    ) -> std::io::Result<Option<usize>> {
        let room = self.room(want);
        let capacity = room.len();
        let n = read(room)?;
        self.end += n.unwrap_or(0);
        self.drained = n.is_some_and(|n| n > 0 && n < capacity);
        Ok(n)
    }

    /// The free space after the pending bytes, made at least `want` pending
    /// bytes in all and `MIN_READ` more where the limit allows.
    fn room(&mut self, want: usize) -> &mut [u8] {
        let pending = self.end - self.start;
        let need = want.max(pending + 1);
        let room = need.max((pending + MIN_READ).min(self.cap));
        if self.start > 0 && self.start + room > self.data.len() {
            self.data.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = pending;
        }
        if room > self.data.len() {
            let size = (self.data.len() * 2).min(self.cap).max(room);
            self.data.resize(size, 0);
        }
        &mut self.data[self.end..]
    }
}

/// One connection's server loop state.
struct Session<'s> {
    config: &'s Server,
    io: &'s mut dyn Io,
    input: InBuf,
    output: Output,
    /// When the head being read must be complete.
    head_deadline: Option<Instant>,
}

/// The output side: kept apart from the input so a response can be written
/// while the request still borrows the read buffer.
#[derive(Debug)]
struct Output {
    /// Responses not yet written.
    out: Vec<u8>,
    /// The handler's header lines for the current response.
    headers: Vec<u8>,
    /// The `Date` line, if the server sends one.
    date: Option<Date>,
    /// Bytes were read since the clock was last read.
    date_stale: bool,
}

impl Output {
    /// A fresh response for `exchange`, appended to the batch.
    fn response<'a>(&'a mut self, io: &'a mut dyn Io, exchange: Exchange) -> Response<'a> {
        if self.date_stale {
            if let Some(date) = &mut self.date {
                date.refresh();
            }
            self.date_stale = false;
        }
        Response::new(
            io,
            &mut self.out,
            &mut self.headers,
            self.date.as_ref(),
            exchange,
        )
    }
}

/// Runs the handler and completes its response; returns whether the
/// connection stays open.
fn dispatch<F>(
    io: &mut dyn Io,
    output: &mut Output,
    handler: &mut F,
    request: &Request<'_>,
    exchange: Exchange,
) -> std::io::Result<bool>
where
    F: FnMut(&Request<'_>, &mut Response<'_>) -> std::io::Result<()>,
{
    let mut response = output.response(&mut *io, exchange);
    let result = handler(request, &mut response).and_then(|()| response.finish());
    let sent = response.is_sent();
    let keep_alive = response.exchange.keep_alive;
    match result {
        Ok(()) => Ok(keep_alive),
        Err(err) => {
            if !sent && !is_disconnect(&err) {
                let exchange = Exchange {
                    keep_alive: false,
                    ..exchange
                };
                let mut response = output.response(&mut *io, exchange);
                response.status(500).header("Content-Type", "text/plain");
                let _ = response.body("Internal Server Error\n");
            }
            let _ = response_flush(io, output);
            Err(err)
        }
    }
}

/// Writes out the batched responses.
fn response_flush(io: &mut dyn Io, output: &mut Output) -> std::io::Result<()> {
    if !output.out.is_empty() {
        let result = io.write_all(&output.out);
        output.out.clear();
        result?;
    }
    Ok(())
}

fn run<F>(config: &Server, io: &mut dyn Io, handler: &mut F) -> std::io::Result<()>
where
    F: FnMut(&Request<'_>, &mut Response<'_>) -> std::io::Result<()>,
{
    let mut session = Session {
        config,
        io,
        input: InBuf {
            data: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
            cap: config
                .max_head
                .saturating_add(config.max_body)
                .saturating_add(64 * 1024),
            drained: false,
        },
        output: Output {
            out: Vec::with_capacity(INITIAL_BUFFER),
            headers: Vec::new(),
            date: config.date.then(Date::new),
            date_stale: true,
        },
        head_deadline: None,
    };
    match session.serve(handler) {
        Ok(()) => Ok(()),
        Err(err) if is_disconnect(&err) => {
            session.io.close();
            Ok(())
        }
        Err(err) => {
            session.io.close();
            Err(err)
        }
    }
}

/// Errors that only say the client went away.
fn is_disconnect(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::BrokenPipe
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::UnexpectedEof
    )
}

impl Session<'_> {
    fn serve<F>(&mut self, handler: &mut F) -> std::io::Result<()>
    where
        F: FnMut(&Request<'_>, &mut Response<'_>) -> std::io::Result<()>,
    {
        loop {
            let step = if self.input.pending().is_empty() {
                self.wait_for_request()?
            } else {
                self.next_request(handler)?
            };
            if step == Step::Closed {
                return Ok(());
            }
        }
    }

    /// Between requests: sends what is batched and waits for the next one.
    fn wait_for_request(&mut self) -> std::io::Result<Step> {
        self.flush()?;
        match self.fill_within(self.config.idle_timeout, 0)? {
            None | Some(0) => {
                self.io.close();
                Ok(Step::Closed)
            }
            Some(_) => Ok(Step::Next),
        }
    }

    /// Parses the request at the start of the buffer and answers it, or
    /// reads more of it.
    fn next_request<F>(&mut self, handler: &mut F) -> std::io::Result<Step>
    where
        F: FnMut(&Request<'_>, &mut Response<'_>) -> std::io::Result<()>,
    {
        let mut slots = [const { MaybeUninit::<Header<'_>>::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut []);
        let pending = self.input.pending();
        let len = match parsed.parse_with_uninit_headers(pending, &mut slots) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if pending.len() > self.config.max_head => {
                return self.refuse(431)
            }
            Ok(httparse::Status::Partial) => return self.read_more_head(),
            Err(httparse::Error::TooManyHeaders) => return self.refuse(431),
            Err(_) => return self.refuse(400),
        };
        if len > self.config.max_head {
            return self.refuse(431);
        }
        self.head_deadline = None;
        let head = match analyze(&parsed, len, self.config.max_body) {
            Ok(head) => head,
            Err(status) => return self.refuse(status),
        };
        let body = match head.framing {
            Framing::Empty => Some(len..len),
            // n <= max_body, a usize.
            Framing::Length(n) if (pending.len() - len) as u64 >= n => Some(len..len + n as usize),
            Framing::Length(_) | Framing::Chunked => None,
        };
        if let Some(body) = body {
            // The whole request is here: answer it from this parse.
            let consumed = body.end;
            let request = request(&parsed, &pending[body]);
            let keep_alive = dispatch(
                &mut *self.io,
                &mut self.output,
                handler,
                &request,
                head.exchange,
            )?;
            return self.answered(consumed, keep_alive);
        }
        // The body is still arriving: read it, then parse the head again
        // (the buffer may have moved).
        let (body, consumed) = match self.read_body(&head)? {
            Ok(body) => body,
            Err(Some(status)) => return self.refuse(status),
            Err(None) => {
                self.io.close();
                return Ok(Step::Closed);
            }
        };
        let mut slots = [const { MaybeUninit::<Header<'_>>::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut []);
        let pending = self.input.pending();
        let reparsed = parsed.parse_with_uninit_headers(&pending[..head.len], &mut slots);
        debug_assert_eq!(reparsed, Ok(httparse::Status::Complete(head.len)));
        let request = request(&parsed, &pending[body]);
        let keep_alive = dispatch(
            &mut *self.io,
            &mut self.output,
            handler,
            &request,
            head.exchange,
        )?;
        self.answered(consumed, keep_alive)
    }

    /// After a response: drops the request's bytes; closes if the
    /// exchange said so.
    fn answered(&mut self, consumed: usize, keep_alive: bool) -> std::io::Result<Step> {
        self.input.consume(consumed);
        if !keep_alive {
            self.flush()?;
            self.close_gently(false);
            return Ok(Step::Closed);
        }
        if self.output.out.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(Step::Next)
    }

    /// The head is incomplete: sends what is batched, waits (until the
    /// head deadline) and reads.
    fn read_more_head(&mut self) -> std::io::Result<Step> {
        self.flush()?;
        let timeout = match self.config.head_timeout {
            None => None,
            Some(limit) => {
                let now = Instant::now();
                let deadline = *self.head_deadline.get_or_insert(now + limit);
                Some(deadline.saturating_duration_since(now))
            }
        };
        match self.fill_within(timeout, 0)? {
            None => self.refuse(408),
            Some(0) => {
                // The client gave up mid-head.
                self.io.close();
                Ok(Step::Closed)
            }
            Some(_) => Ok(Step::Next),
        }
    }

    /// Reads the body of the request whose head is `head` (at the start of
    /// the buffer). Returns the body's range in the pending bytes and how
    /// many pending bytes the request takes; `Err(Some(status))` to refuse
    /// it, `Err(None)` if the client closed first.
    #[allow(clippy::type_complexity)]
    fn read_body(
        &mut self,
        head: &Head,
    ) -> std::io::Result<Result<(Range<usize>, usize), Option<u16>>> {
        if head.expect_continue {
            self.output
                .out
                .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        match head.framing {
            Framing::Empty => Ok(Ok((head.len..head.len, head.len))),
            Framing::Length(n) => {
                let total = head.len + n as usize;
                while self.input.pending().len() < total {
                    if let Err(refusal) = self.read_body_bytes(total)? {
                        return Ok(Err(refusal));
                    }
                }
                Ok(Ok((head.len..total, total)))
            }
            Framing::Chunked => {
                let mut decoder = Decoder::new(self.config.max_body, self.config.max_head);
                loop {
                    let body = &mut self.input.pending_mut()[head.len..];
                    match decoder.decode(body) {
                        Ok(Progress::Done) => {
                            return Ok(Ok((
                                head.len..head.len + decoder.decoded(),
                                head.len + decoder.raw(),
                            )))
                        }
                        Ok(Progress::More) => {}
                        Err(refusal) => return Ok(Err(Some(refusal.status()))),
                    }
                    let garbage = decoder.garbage();
                    self.input
                        .remove(head.len + garbage.start..head.len + garbage.end);
                    decoder.compacted();
                    let want = self.input.pending().len() + MIN_READ;
                    if let Err(refusal) = self.read_body_bytes(want)? {
                        return Ok(Err(refusal));
                    }
                }
            }
        }
    }

    /// Waits for and reads more body bytes, with room for `want` pending.
    fn read_body_bytes(&mut self, want: usize) -> std::io::Result<Result<(), Option<u16>>> {
        self.flush()?;
        match self.fill_within(self.config.body_timeout, want)? {
            None => Ok(Err(Some(408))),
            Some(0) => Ok(Err(None)),
            Some(_) => Ok(Ok(())),
        }
    }

    /// Answers `status` with a short text body, and closes.
    fn refuse(&mut self, status: u16) -> std::io::Result<Step> {
        let exchange = Exchange {
            version: 1,
            head: false,
            keep_alive: false,
        };
        let mut response = self.output.response(&mut *self.io, exchange);
        response.status(status).header("Content-Type", "text/plain");
        response.body_parts(&[response::phrase(status), b"\n"])?;
        self.flush()?;
        self.close_gently(true);
        Ok(Step::Closed)
    }

    /// Closes the connection after reading and dropping what the client
    /// still sends (briefly, when `linger`; else only what already
    /// arrived), so the close does not reset a connection whose client has
    /// not read the answer yet.
    fn close_gently(&mut self, linger: bool) {
        let wait = if linger { LINGER_WAIT } else { Duration::ZERO };
        let mut dropped = 0;
        let scratch = &mut self.input.data[..];
        while dropped < LINGER_BYTES {
            match self.io.wait_readable(wait) {
                Ok(true) => {}
                _ => break,
            }
            match self.io.read_ready(scratch) {
                Ok(Some(0)) | Err(_) => break,
                Ok(Some(n)) => dropped += n,
                // Stale readiness: nothing to drop after all; wait again.
                Ok(None) => {}
            }
        }
        self.io.close();
    }

    /// Writes out the batched responses.
    fn flush(&mut self) -> std::io::Result<()> {
        response_flush(self.io, &mut self.output)
    }

    /// Reads once (see [`InBuf::read`]).
    fn fill(&mut self, want: usize) -> std::io::Result<usize> {
        self.output.date_stale = true;
        self.input.read(self.io, want)
    }

    /// Reads once, waiting at most `timeout` for bytes (`None`: as long as
    /// it takes); `None` when the timeout passed first. Under load the next
    /// request is usually there already: one `try-read` then, and no
    /// `poll` before the read (a host call and a syscall saved). After a
    /// short read the stream had nothing more, and the host would answer
    /// that `try-read` from its event count: the loop goes straight to
    /// `poll`, which answers at once if bytes came since.
    fn fill_within(
        &mut self,
        timeout: Option<Duration>,
        want: usize,
    ) -> std::io::Result<Option<usize>> {
        let Some(timeout) = timeout else {
            return self.fill(want).map(Some);
        };
        self.output.date_stale = true;
        if !self.input.drained {
            if let Some(n) = self.input.try_read(self.io, want)? {
                return Ok(Some(n));
            }
        }
        loop {
            if !self.io.wait_readable(timeout)? {
                return Ok(None);
            }
            if let Some(n) = self.input.read_ready(self.io, want)? {
                return Ok(Some(n));
            }
            // Stale readiness: nothing to read after all; wait again.
        }
    }
}

/// The [`Request`] for a complete parse and its body.
fn request<'a>(parsed: &'a httparse::Request<'_, 'a>, body: &'a [u8]) -> Request<'a> {
    Request {
        method: parsed.method.unwrap_or_default(),
        path: parsed.path.unwrap_or_default(),
        version: parsed.version.unwrap_or(1),
        headers: parsed.headers,
        body,
    }
}
