//! A fast HTTP/1.1 server for a micro-process's connection, or for every
//! connection of a listener-mode app from one process.
//!
//! [`serve`] runs a request loop over [`connection()`](crate::connection):
//! it reads requests into one reused buffer, parses each head with
//! [`httparse`](https://docs.rs/httparse) into slices of that buffer, and
//! calls the handler with a [`Request`] (method, path, headers, body; all
//! borrowed, nothing copied) and a [`Response`] to fill in.
//! [`serve_each`] runs the same loop, with the same handler, on every
//! connection a listener-mode app accepts, each as a coroutine of this one
//! micro-heap ([`Server::serve_each`] says what changes for the handler).
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

use std::cell::RefCell;
use std::future::Future;
use std::io::{ErrorKind, Read, Write};
use std::mem::MaybeUninit;
use std::ops::Range;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

pub use date::Date;
pub use httparse::Header;
pub use response::{ChunkedBody, Response};

use self::io::{Coroutine, Io, Owned, Sink, Stream};
use mnvkd_http1::chunked::{Decoder, Progress};
use mnvkd_http1::Framing;
use response::{Exchange, FLUSH_AT};

use crate::{heap, task, Handle};

/// The most header fields one request may have; more get `431`.
pub const MAX_HEADERS: usize = 100;

/// The read buffer's first size: one `MIN_READ`. It grows to fit the
/// largest request, or a burst of pipelined ones.
const INITIAL_BUFFER: usize = MIN_READ;

/// The output batch's first capacity: a few small responses. It grows to
/// the largest batch. A session costs its process these two buffers, so a
/// process serving thousands of connections (`serve_each`) holds more of
/// them in its heap when they start small.
const INITIAL_OUTPUT: usize = 1024;

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
    /// end, not an error. In an app in listener mode, whose handle 0 is its
    /// listener, an error that says to use [`serve_each`](Self::serve_each).
    pub fn serve<F>(&self, mut handler: F) -> std::io::Result<()>
    where
        F: FnMut(&Request<'_>, &mut Response<'_>) -> std::io::Result<()>,
    {
        run_blocking(self, &mut crate::connection(), &mut handler).map_err(|err| {
            if crate::errno::is(&err, crate::sys::BADF) {
                // Reading handle 0 fails so only if it is no connection.
                std::io::Error::new(
                    err.kind(),
                    format!(
                        "http::serve: handle 0 is not a connection ({err}); an app in listener \
                         mode (kind = \"listener\") serves its connections with \
                         http::serve_each"
                    ),
                )
            } else {
                err
            }
        })
    }

    /// Serves HTTP on every connection of a listener-mode app (manifest
    /// `kind = "listener"`) from this one process: each connection is a
    /// coroutine of its micro-heap ([`task::Listener::serve_each`]), so a
    /// thousand clients cost a thousand small sessions (about 5 KiB each:
    /// a 2 KiB read buffer and a 1 KiB output batch to start), not a
    /// thousand processes. Connections share the heap and the handler, so
    /// they trust each other.
    ///
    /// The handler is the same as for [`serve`](Self::serve), with two
    /// differences, because it runs between the connection's waits and
    /// cannot block: a response is written out after the handler returns
    /// (a streamed [`chunked`](Response::chunked) body is held whole until
    /// then), and a handler's error ends only its connection (after a
    /// `500`, logged to stderr), not the process.
    ///
    /// The idle timeout is the connection's: no byte read or written for
    /// that long (checked once a second). Returns once the host drains and
    /// every connection has ended: the requests already read are answered.
    ///
    /// # Errors
    ///
    /// When this app is not in listener mode (handle 0 is no listener).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use mnvkd_guest::http::Server;
    ///
    /// Server::new().serve_each(|_req, res| res.body("Hello from one heap\n"))?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn serve_each<F>(&self, handler: F) -> std::io::Result<()>
    where
        F: FnMut(&Request<'_>, &mut Response<'_>) -> std::io::Result<()> + 'static,
    {
        let handler = Rc::new(RefCell::new(handler));
        // Idle connections are the sweeper's: no timer per wait.
        let config = Rc::new(self.clone().idle_timeout(None));
        let listener = task::Listener::get();
        let serving = listener.serve_each(self.idle_timeout, move |conn| {
            let (handler, config) = (Rc::clone(&handler), Rc::clone(&config));
            async move {
                // The handler never awaits, so no two coroutines hold it at once.
                let mut call =
                    |req: &Request<'_>, res: &mut Response<'_>| (handler.borrow_mut())(req, res);
                if let Err(err) = run(&config, &mut Coroutine(conn), &mut call).await {
                    // The handler's error (after its 500), or a request the
                    // heap could not hold (after a 503).
                    eprintln!("http: a connection ended with an error: {err}");
                }
            }
        });
        task::block_on(serving)
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
        run_blocking(self, &mut Owned(Some(handle)), &mut handler)
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
        run_blocking(self, &mut Stream(Some(stream)), &mut handler)
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

/// Serves HTTP on every connection of a listener-mode app from this one
/// process, with the default [`Server`]: see [`Server::serve_each`].
///
/// # Errors
///
/// As for [`Server::serve_each`].
///
/// # Examples
///
/// ```no_run
/// fn main() -> std::io::Result<()> {
///     mnvkd_guest::http::serve_each(|_req, res| res.body("Hello, World!\n"))
/// }
/// ```
pub fn serve_each<F>(handler: F) -> std::io::Result<()>
where
    F: FnMut(&Request<'_>, &mut Response<'_>) -> std::io::Result<()> + 'static,
{
    Server::new().serve_each(handler)
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

    /// Notes a read of `n` bytes (`None`: nothing was there) into a
    /// [`room`](InBuf::room) of `capacity`, and whether it took all there
    /// was.
    fn filled(&mut self, n: Option<usize>, capacity: usize) {
        self.end += n.unwrap_or(0);
        self.drained = n.is_some_and(|n| n > 0 && n < capacity);
    }

    /// The free space after the pending bytes, made at least `want` pending
    /// bytes in all and `MIN_READ` more where the limit allows.
    ///
    /// # Errors
    ///
    /// `OutOfMemory` when the buffer cannot grow and leave the heap's
    /// headroom ([`heap::reserve`]): the client gets `503`, not the process
    /// an abort.
    fn room(&mut self, want: usize) -> std::io::Result<&mut [u8]> {
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
            let more = size - self.data.len();
            heap::reserve(&mut self.data, more)?;
            self.data.resize(size, 0);
        }
        Ok(&mut self.data[self.end..])
    }
}

/// One connection's server loop state.
struct Session<'s, I> {
    config: &'s Server,
    io: &'s mut I,
    input: InBuf,
    output: Output,
    /// When the head being read must be complete.
    head_deadline: Option<Instant>,
    /// The handler's error, once it failed: the session writes out the
    /// batch (the `500`) and ends with it.
    failed: Option<std::io::Error>,
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
    fn response<'a>(
        &'a mut self,
        sink: Option<&'a mut dyn Sink>,
        exchange: Exchange,
    ) -> Response<'a> {
        if self.date_stale {
            if let Some(date) = &mut self.date {
                date.refresh();
            }
            self.date_stale = false;
        }
        Response::new(
            sink,
            &mut self.out,
            &mut self.headers,
            self.date.as_ref(),
            exchange,
        )
    }
}

/// Runs the handler and completes its response; returns whether the
/// connection stays open, or how the handler failed.
fn dispatch<'a, F>(
    sink: Option<&'a mut dyn Sink>,
    output: &'a mut Output,
    handler: &mut F,
    request: &Request<'_>,
    exchange: Exchange,
) -> Result<bool, Failure>
where
    F: FnMut(&Request<'_>, &mut Response<'_>) -> std::io::Result<()>,
{
    let mut response = output.response(sink, exchange);
    let result = handler(request, &mut response).and_then(|()| response.finish());
    match result {
        Ok(()) => Ok(response.exchange.keep_alive),
        Err(err) => Err(Failure {
            err,
            sent: response.is_sent(),
            exchange,
        }),
    }
}

/// A handler that failed (or whose response could not be written).
struct Failure {
    err: std::io::Error,
    /// Whether its response was sent before.
    sent: bool,
    exchange: Exchange,
}

/// Serves a blocking stream: the session's futures are all ready when
/// first polled (no [`Io`] of a blocking stream ever waits in a future),
/// so one poll runs it to the end.
fn run_blocking<I, F>(config: &Server, io: &mut I, handler: &mut F) -> std::io::Result<()>
where
    I: Io,
    F: FnMut(&Request<'_>, &mut Response<'_>) -> std::io::Result<()>,
{
    let session = std::pin::pin!(run(config, io, handler));
    match session.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => unreachable!("a blocking stream's session waited in a future"),
    }
}

/// Serves one connection to its end, and closes it.
async fn run<I, F>(config: &Server, io: &mut I, handler: &mut F) -> std::io::Result<()>
where
    I: Io,
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
            out: Vec::with_capacity(INITIAL_OUTPUT),
            headers: Vec::new(),
            date: config.date.then(Date::new),
            date_stale: true,
        },
        head_deadline: None,
        failed: None,
    };
    match session.serve(handler).await {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == ErrorKind::OutOfMemory => {
            // A request the heap cannot hold: refused (the batch before it
            // is sent first), and the connection ends with the error; in
            // one heap the other connections are served on.
            let _ = session.refuse(503).await;
            Err(err)
        }
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

/// How a request at the start of the buffer went, as far as it could
/// without I/O ([`Session::answer`]).
enum Answer {
    /// Answered (the handler ran): the bytes it took, and whether the
    /// connection goes on.
    Answered(usize, bool),
    /// The head is not all here yet.
    Partial,
    /// Refused with this status, without calling the handler.
    Refuse(u16),
    /// The head is here, the body is still arriving.
    Body(Head),
}

impl<I: Io> Session<'_, I> {
    async fn serve<F>(&mut self, handler: &mut F) -> std::io::Result<()>
    where
        F: FnMut(&Request<'_>, &mut Response<'_>) -> std::io::Result<()>,
    {
        loop {
            let step = if self.input.pending().is_empty() {
                self.wait_for_request().await?
            } else {
                match self.answer(handler) {
                    Answer::Answered(consumed, keep_alive) => {
                        self.input.consume(consumed);
                        // The common case, free of `await`s (each is a state
                        // machine step, even on a stream that never waits).
                        if keep_alive && self.failed.is_none() && self.output.out.len() < FLUSH_AT {
                            continue;
                        }
                        self.answered(keep_alive).await?
                    }
                    Answer::Partial => self.read_more_head().await?,
                    Answer::Refuse(status) => self.refuse(status).await?,
                    Answer::Body(head) => self.answer_body(handler, head).await?,
                }
            };
            if step == Step::Closed {
                return Ok(());
            }
        }
    }

    /// Between requests: sends what is batched and waits for the next one.
    async fn wait_for_request(&mut self) -> std::io::Result<Step> {
        self.flush().await?;
        match self.fill_within(self.config.idle_timeout, 0).await? {
            None | Some(0) => {
                self.io.close();
                Ok(Step::Closed)
            }
            Some(_) => Ok(Step::Next),
        }
    }

    /// Reads the body of the request whose head is `head`, then answers it.
    async fn answer_body<F>(&mut self, handler: &mut F, head: Head) -> std::io::Result<Step>
    where
        F: FnMut(&Request<'_>, &mut Response<'_>) -> std::io::Result<()>,
    {
        let (body, consumed) = match self.read_body(&head).await? {
            Ok(body) => body,
            Err(Some(status)) => return self.refuse(status).await,
            Err(None) => {
                self.io.close();
                return Ok(Step::Closed);
            }
        };
        let keep_alive = self.answer_with_body(handler, &head, body);
        self.input.consume(consumed);
        self.answered(keep_alive).await
    }

    /// Parses the request at the start of the buffer and, when all of it is
    /// here, runs the handler on it. No I/O: the parse's header slots stay
    /// on the stack, not in the session's future.
    fn answer<F>(&mut self, handler: &mut F) -> Answer
    where
        F: FnMut(&Request<'_>, &mut Response<'_>) -> std::io::Result<()>,
    {
        let mut slots = [const { MaybeUninit::<Header<'_>>::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut []);
        let pending = self.input.pending();
        let len = match parsed.parse_with_uninit_headers(pending, &mut slots) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if pending.len() > self.config.max_head => {
                return Answer::Refuse(431)
            }
            Ok(httparse::Status::Partial) => return Answer::Partial,
            Err(httparse::Error::TooManyHeaders) => return Answer::Refuse(431),
            Err(_) => return Answer::Refuse(400),
        };
        if len > self.config.max_head {
            return Answer::Refuse(431);
        }
        self.head_deadline = None;
        let head = match analyze(&parsed, len, self.config.max_body) {
            Ok(head) => head,
            Err(status) => return Answer::Refuse(status),
        };
        let body = match head.framing {
            Framing::Empty => len..len,
            // n <= max_body, a usize.
            Framing::Length(n) if (pending.len() - len) as u64 >= n => len..len + n as usize,
            Framing::Length(_) | Framing::Chunked => return Answer::Body(head),
        };
        // The whole request is here: answer it from this parse.
        let consumed = body.end;
        let request = request(&parsed, &pending[body]);
        let result = dispatch(
            self.io.sink(),
            &mut self.output,
            handler,
            &request,
            head.exchange,
        );
        Answer::Answered(consumed, self.settle(result))
    }

    /// Parses the head again (the buffer may have moved while the body
    /// arrived) and runs the handler on the request whose body is `body`.
    fn answer_with_body<F>(&mut self, handler: &mut F, head: &Head, body: Range<usize>) -> bool
    where
        F: FnMut(&Request<'_>, &mut Response<'_>) -> std::io::Result<()>,
    {
        let mut slots = [const { MaybeUninit::<Header<'_>>::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut []);
        let pending = self.input.pending();
        let reparsed = parsed.parse_with_uninit_headers(&pending[..head.len], &mut slots);
        debug_assert_eq!(reparsed, Ok(httparse::Status::Complete(head.len)));
        let request = request(&parsed, &pending[body]);
        let result = dispatch(
            self.io.sink(),
            &mut self.output,
            handler,
            &request,
            head.exchange,
        );
        self.settle(result)
    }

    /// Whether the connection stays open after a handler's `result`; a
    /// failed handler gets a `500` batched if nothing was sent yet (and the
    /// client is still there), and the session then writes it out and ends
    /// with the error ([`Session::answered`]).
    fn settle(&mut self, result: Result<bool, Failure>) -> bool {
        let failure = match result {
            Ok(keep_alive) => return keep_alive,
            Err(failure) => failure,
        };
        if !failure.sent && !is_disconnect(&failure.err) {
            let exchange = Exchange {
                keep_alive: false,
                ..failure.exchange
            };
            let mut response = self.output.response(None, exchange);
            response.status(500).header("Content-Type", "text/plain");
            let _ = response.body("Internal Server Error\n");
        }
        self.failed = Some(failure.err);
        false
    }

    /// After a response (its request's bytes dropped): closes if the
    /// exchange said so, and ends with the handler's error if it failed
    /// (after writing out what was batched, its `500` included).
    async fn answered(&mut self, keep_alive: bool) -> std::io::Result<Step> {
        if let Some(err) = self.failed.take() {
            let _ = self.flush().await;
            return Err(err);
        }
        if !keep_alive {
            self.flush().await?;
            self.close_gently(false).await;
            return Ok(Step::Closed);
        }
        if self.output.out.len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(Step::Next)
    }

    /// The head is incomplete: sends what is batched, waits (until the
    /// head deadline) and reads.
    async fn read_more_head(&mut self) -> std::io::Result<Step> {
        self.flush().await?;
        let timeout = match self.config.head_timeout {
            None => None,
            Some(limit) => {
                let now = Instant::now();
                let deadline = *self.head_deadline.get_or_insert(now + limit);
                Some(deadline.saturating_duration_since(now))
            }
        };
        match self.fill_within(timeout, 0).await? {
            None => self.refuse(408).await,
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
    async fn read_body(
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
                    if let Err(refusal) = self.read_body_bytes(total).await? {
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
                    if let Err(refusal) = self.read_body_bytes(want).await? {
                        return Ok(Err(refusal));
                    }
                }
            }
        }
    }

    /// Waits for and reads more body bytes, with room for `want` pending.
    async fn read_body_bytes(&mut self, want: usize) -> std::io::Result<Result<(), Option<u16>>> {
        self.flush().await?;
        match self.fill_within(self.config.body_timeout, want).await? {
            None => Ok(Err(Some(408))),
            Some(0) => Ok(Err(None)),
            Some(_) => Ok(Ok(())),
        }
    }

    /// Answers `status` with a short text body, and closes.
    async fn refuse(&mut self, status: u16) -> std::io::Result<Step> {
        let exchange = Exchange {
            version: 1,
            head: false,
            keep_alive: false,
        };
        let mut response = self.output.response(None, exchange);
        response.status(status).header("Content-Type", "text/plain");
        response.body_parts(&[response::phrase(status), b"\n"])?;
        self.flush().await?;
        self.close_gently(true).await;
        Ok(Step::Closed)
    }

    /// Closes the connection after reading and dropping what the client
    /// still sends (briefly, when `linger`; else only what already
    /// arrived), so the close does not reset a connection whose client has
    /// not read the answer yet.
    async fn close_gently(&mut self, linger: bool) {
        let wait = if linger { LINGER_WAIT } else { Duration::ZERO };
        let mut dropped = 0;
        let scratch = &mut self.input.data[..];
        while dropped < LINGER_BYTES {
            match self.io.wait_readable(wait).await {
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
    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.output.out.is_empty() {
            let result = self.io.write_all(&self.output.out).await;
            self.output.out.clear();
            result?;
        }
        Ok(())
    }

    /// Reads what is there without waiting, unless the last read took all
    /// there was: a new connection's first request, or the next of a
    /// pipelined batch, is usually there already. `None`: wait and read.
    fn try_fill(&mut self, want: usize) -> std::io::Result<Option<usize>> {
        if self.input.drained {
            return Ok(None);
        }
        let room = self.input.room(want)?;
        let capacity = room.len();
        let n = self.io.try_read(room)?;
        if n.is_some() {
            self.input.filled(n, capacity);
        }
        Ok(n)
    }

    /// Reads once, with room for at least `want` pending bytes in all, and
    /// for `MIN_READ` more where the limit allows (see [`InBuf::room`]).
    async fn fill(&mut self, want: usize) -> std::io::Result<usize> {
        self.output.date_stale = true;
        if let Some(n) = self.try_fill(want)? {
            return Ok(n);
        }
        let room = self.input.room(want)?;
        let capacity = room.len();
        let n = self.io.read(room).await?;
        self.input.filled(Some(n), capacity);
        Ok(n)
    }

    /// Reads once, waiting at most `timeout` for bytes (`None`: as long as
    /// it takes); `None` when the timeout passed first. Under load the next
    /// request is usually there already: one `try-read` then, and no wait
    /// before the read. After a short read the stream had nothing more,
    /// and the host would answer that `try-read` from its event count: the
    /// loop goes straight to the read that waits (`Io::read_within`; on a
    /// host handle one call, `read-within`, where `poll` and then
    /// `try-read` took two).
    async fn fill_within(
        &mut self,
        timeout: Option<Duration>,
        want: usize,
    ) -> std::io::Result<Option<usize>> {
        let Some(timeout) = timeout else {
            return self.fill(want).await.map(Some);
        };
        self.output.date_stale = true;
        if let Some(n) = self.try_fill(want)? {
            return Ok(Some(n));
        }
        let room = self.input.room(want)?;
        let capacity = room.len();
        let n = self.io.read_within(room, timeout).await?;
        if n.is_some() {
            self.input.filled(n, capacity);
        }
        Ok(n)
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
