//! [`Response`]: writing one response into the connection's output batch.

use std::fmt;
use std::io::{self, Write};

use mnvkd_http1::has_token;

use super::date::Date;
use super::io::Sink;
use crate::heap;

/// Responses batched in the output buffer are written out once it holds
/// this much; a body at least this large is written straight from the
/// caller's slice instead of being copied into the batch (where the stream
/// can block: see [`Response::sink`]).
pub(crate) const FLUSH_AT: usize = 64 * 1024;

/// Room reserved for a response's head beside the handler's own header
/// lines: the status line, `Date`, `Content-Length`, `Connection`.
const HEAD_ROOM: usize = 256;

/// How a response ends the exchange, as far as the connection goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Exchange {
    /// The request's minor HTTP version (0 or 1).
    pub(crate) version: u8,
    /// The request was `HEAD`: send no body bytes.
    pub(crate) head: bool,
    /// The connection may carry another request after this one.
    pub(crate) keep_alive: bool,
}

/// Where the response is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Status and headers may still change.
    Fresh,
    /// Streaming a chunked body (or, for HTTP/1.0, a body ended by close).
    Streaming,
    /// Complete.
    Sent,
}

/// The response to one request: set the status and headers, then send a
/// body with [`body`](Response::body) (with `Content-Length`) or stream one
/// with [`chunked`](Response::chunked).
///
/// The response is written into the connection's output buffer, which is
/// sent once no complete request is left to answer, so the responses to
/// pipelined requests leave in one write. A handler that returns without
/// sending has its response sent with an empty body.
///
/// The server adds `Date`, `Content-Length` (or `Transfer-Encoding:
/// chunked`) and, when it is going to close the connection,
/// `Connection: close`.
///
/// # Examples
///
/// ```no_run
/// use mnvkd_guest::http;
///
/// http::serve(|req, res| match req.path {
///     "/" => res.header("Content-Type", "text/html").body("<h1>hi</h1>\n"),
///     _ => res.status(404).body("not found\n"),
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Response<'a> {
    /// Where large parts and full batches are written at once, blocking;
    /// `None` for a connection served as a coroutine, which cannot block
    /// in the handler: everything then waits in `out` until the handler
    /// returns.
    pub(crate) sink: Option<&'a mut dyn Sink>,
    /// The output batch this response is appended to.
    pub(crate) out: &'a mut Vec<u8>,
    /// The header lines set so far (reused between responses).
    pub(crate) headers: &'a mut Vec<u8>,
    /// The `Date` line, if the server sends one.
    pub(crate) date: Option<&'a Date>,
    pub(crate) exchange: Exchange,
    status: u16,
    state: State,
    /// A header with CR, LF or NUL, or a bad name, was refused.
    bad_header: bool,
}

impl fmt::Debug for Response<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("state", &self.state)
            .field("keep_alive", &self.exchange.keep_alive)
            .finish_non_exhaustive()
    }
}

impl<'a> Response<'a> {
    pub(crate) fn new(
        sink: Option<&'a mut dyn Sink>,
        out: &'a mut Vec<u8>,
        headers: &'a mut Vec<u8>,
        date: Option<&'a Date>,
        exchange: Exchange,
    ) -> Response<'a> {
        headers.clear();
        Response {
            sink,
            out,
            headers,
            date,
            exchange,
            status: 200,
            state: State::Fresh,
            bad_header: false,
        }
    }

    /// Sets the status code (default 200). Ignored once the response is
    /// sent.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// mnvkd_guest::http::serve(|_req, res| res.status(404).body("not found\n"))?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn status(&mut self, code: u16) -> &mut Self {
        if self.state == State::Fresh {
            self.status = code;
        }
        self
    }

    /// Adds a header line. `Content-Length`, `Transfer-Encoding` and `Date`
    /// are the server's: do not set them. `Connection` is the server's too:
    /// it is not added, but `Connection: close` makes the server close the
    /// connection after this response (as [`close`](Self::close) does).
    ///
    /// A name that is not a token, or a value with CR, LF or NUL, is not
    /// added, and sending the response then fails with
    /// [`io::ErrorKind::InvalidInput`] (so no client input can split a
    /// response). Ignored once the response is sent.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// mnvkd_guest::http::serve(|_req, res| {
    ///     res.header("Content-Type", "application/json")
    ///         .header("Cache-Control", "no-store")
    ///         .body(r#"{"ok":true}"#)
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn header(&mut self, name: &str, value: impl AsRef<[u8]>) -> &mut Self {
        let value = value.as_ref();
        if self.state != State::Fresh {
            return self;
        }
        if !is_token(name.as_bytes()) || value.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
            self.bad_header = true;
            return self;
        }
        if name.eq_ignore_ascii_case("connection") {
            // The server writes this header itself.
            if has_token(value, b"close") {
                self.exchange.keep_alive = false;
            }
            return self;
        }
        self.headers.extend_from_slice(name.as_bytes());
        self.headers.extend_from_slice(b": ");
        self.headers.extend_from_slice(value);
        self.headers.extend_from_slice(b"\r\n");
        self
    }

    /// Makes the server close the connection after this response (and
    /// says so in a `Connection: close` header).
    pub fn close(&mut self) -> &mut Self {
        if self.state == State::Fresh {
            self.exchange.keep_alive = false;
        }
        self
    }

    /// Whether the response was sent (a body, or a finished stream).
    pub fn is_sent(&self) -> bool {
        self.state == State::Sent
    }

    /// The status code.
    pub fn status_code(&self) -> u16 {
        self.status
    }

    /// Sends the response with `body` and its `Content-Length`.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] after a refused [`header`](Self::header);
    /// [`io::ErrorKind::Other`] if the response was already sent; an I/O
    /// error if a large body had to be written at once and that failed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// mnvkd_guest::http::serve(|_req, res| res.body(b"Hello, World!\n"))?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn body(&mut self, body: impl AsRef<[u8]>) -> io::Result<()> {
        self.body_parts(&[body.as_ref()])
    }

    /// Sends the response with a body made of `parts`, one after the other,
    /// without joining them first.
    ///
    /// # Errors
    ///
    /// As for [`body`](Self::body).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// mnvkd_guest::http::serve(|req, res| res.body_parts(&[b"you sent: ", req.body]))?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn body_parts(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        self.check_fresh()?;
        let len: usize = parts.iter().map(|part| part.len()).sum();
        let no_body = self.no_body();
        // Room for all of it first: a response the heap cannot hold fails
        // whole (the handler's error, a 500), not after its head.
        if self.out.capacity() - self.out.len() < HEAD_ROOM + self.headers.len() + len {
            let batched: usize = parts.iter().map(|part| self.batched(part)).sum();
            heap::reserve(self.out, HEAD_ROOM + self.headers.len() + batched)?;
        }
        self.write_head(if no_body { None } else { Some(len) });
        self.state = State::Sent;
        if no_body || self.exchange.head {
            return Ok(());
        }
        for part in parts {
            self.push(part)?;
        }
        Ok(())
    }

    /// Starts a streamed body: returns a writer whose every `write` is sent
    /// as one chunk (`Transfer-Encoding: chunked`), ended by
    /// [`ChunkedBody::finish`] or when it is dropped. To an HTTP/1.0 client
    /// the bytes go unframed and the connection is closed after them.
    ///
    /// Chunks are batched with the other output and written out once
    /// 64 KiB are pending; [`flush`](Write::flush) writes them at once.
    ///
    /// # Errors
    ///
    /// As for [`body`](Self::body).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::io::Write;
    ///
    /// mnvkd_guest::http::serve(|_req, res| {
    ///     let mut body = res.chunked()?;
    ///     for i in 0..3 {
    ///         writeln!(body, "line {i}")?;
    ///     }
    ///     body.finish()
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn chunked(&mut self) -> io::Result<ChunkedBody<'_, 'a>> {
        self.check_fresh()?;
        if self.no_body() {
            self.write_head(None);
            self.state = State::Sent;
            return Ok(ChunkedBody {
                response: self,
                framed: false,
                discard: true,
            });
        }
        let framed = self.exchange.version >= 1;
        if !framed {
            // HTTP/1.0 has no chunked coding: the end of the body is the close.
            self.exchange.keep_alive = false;
        }
        self.write_head_chunked(framed);
        self.state = State::Streaming;
        let discard = self.exchange.head;
        Ok(ChunkedBody {
            response: self,
            framed,
            discard,
        })
    }

    /// Sends the response if the handler did not: an empty body.
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        match self.state {
            State::Fresh => self.body([]),
            State::Streaming | State::Sent => Ok(()),
        }
    }

    /// How many bytes of `part` [`push`](Self::push) would copy into the
    /// batch.
    fn batched(&self, part: &[u8]) -> usize {
        if self.sink.is_some() && part.len() >= FLUSH_AT {
            0
        } else {
            part.len()
        }
    }

    /// Appends `part` to the batch, or writes the batch and then `part`
    /// straight from its slice when it is large and the stream can block.
    fn push(&mut self, part: &[u8]) -> io::Result<()> {
        match &mut self.sink {
            Some(sink) if part.len() >= FLUSH_AT => {
                if !self.out.is_empty() {
                    let result = sink.write_all(self.out);
                    self.out.clear();
                    result?;
                }
                sink.write_all(part)
            }
            _ => {
                self.out.extend_from_slice(part);
                Ok(())
            }
        }
    }

    /// Writes out the output batch, where the stream can block.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if let Some(sink) = &mut self.sink {
            if !self.out.is_empty() {
                let result = sink.write_all(self.out);
                self.out.clear();
                result?;
            }
        }
        Ok(())
    }

    fn check_fresh(&self) -> io::Result<()> {
        if self.state != State::Fresh {
            return Err(io::Error::other("the response was already sent"));
        }
        if self.bad_header {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a response header had a bad name or a CR, LF or NUL in its value",
            ));
        }
        Ok(())
    }

    /// 1xx, 204 and 304 responses have no body.
    fn no_body(&self) -> bool {
        matches!(self.status, 100..=199 | 204 | 304)
    }

    /// Status line, date, the handler's headers, connection.
    fn write_head_start(&mut self) {
        let out = &mut *self.out;
        match (self.status, self.date) {
            // The common case in one copy.
            (200, Some(date)) => out.extend_from_slice(date.ok_head()),
            (status, date) => {
                match reason(status) {
                    Some(line) => out.extend_from_slice(line),
                    None => {
                        out.extend_from_slice(b"HTTP/1.1 ");
                        push_decimal(out, u64::from(status.min(999)));
                        out.extend_from_slice(b" \r\n");
                    }
                }
                if let Some(date) = date {
                    out.extend_from_slice(date.line());
                }
            }
        }
        out.extend_from_slice(self.headers);
        if !self.exchange.keep_alive {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if self.exchange.version == 0 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
    }

    /// The head, with `Content-Length: len` unless `len` is `None`.
    fn write_head(&mut self, len: Option<usize>) {
        self.write_head_start();
        match len {
            Some(len) => self
                .out
                .extend_from_slice(content_length(len as u64, &mut [0; 40])),
            None => self.out.extend_from_slice(b"\r\n"),
        }
    }

    fn write_head_chunked(&mut self, framed: bool) {
        self.write_head_start();
        if framed {
            self.out
                .extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        self.out.extend_from_slice(b"\r\n");
    }
}

/// A streamed response body; see [`Response::chunked`].
pub struct ChunkedBody<'r, 'a> {
    response: &'r mut Response<'a>,
    /// Chunked framing (HTTP/1.1); else the bytes go as they are.
    framed: bool,
    /// No body may be sent (HEAD, 204, 304): writes are dropped.
    discard: bool,
}

impl fmt::Debug for ChunkedBody<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkedBody")
            .field("framed", &self.framed)
            .finish_non_exhaustive()
    }
}

impl ChunkedBody<'_, '_> {
    /// Ends the body (the last, empty chunk). Dropping the writer does the
    /// same; this only makes the end visible.
    ///
    /// # Errors
    ///
    /// None yet (the end is batched); returns `io::Result` for the future.
    pub fn finish(mut self) -> io::Result<()> {
        self.end();
        Ok(())
    }

    fn end(&mut self) {
        if self.response.state == State::Streaming {
            if self.framed && !self.discard {
                self.response.out.extend_from_slice(b"0\r\n\r\n");
            }
            self.response.state = State::Sent;
        }
    }
}

impl Write for ChunkedBody<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.response.state != State::Streaming {
            return Err(io::Error::other("the response body was already finished"));
        }
        if buf.is_empty() || self.discard {
            // An empty chunk would end the body.
            return Ok(buf.len());
        }
        // The chunk's size line and its end: under 24 bytes.
        let batched = self.response.batched(buf);
        heap::reserve(self.response.out, 24 + batched)?;
        if self.framed {
            push_hex(self.response.out, buf.len());
            self.response.out.extend_from_slice(b"\r\n");
        }
        self.response.push(buf)?;
        if self.framed {
            self.response.out.extend_from_slice(b"\r\n");
        }
        if self.response.out.len() >= FLUSH_AT {
            self.response.flush()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.response.flush()
    }
}

impl Drop for ChunkedBody<'_, '_> {
    fn drop(&mut self) {
        self.end();
    }
}

/// Whether `name` is an HTTP token (RFC 9110 §5.6.2), as a header name must be.
fn is_token(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| TOKEN[usize::from(b)])
}

/// `tchar` of RFC 9110 §5.6.2, as a table: one load per byte, where
/// searching the punctuation list cost a loop per byte.
static TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
};

/// Appends `n` in decimal.
pub(crate) fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let at = decimal_before(&mut digits, 20, n);
    out.extend_from_slice(&digits[at..]);
}

/// `Content-Length: n`, then the blank line that ends the head, written
/// into the end of `buf` (one copy to append, where three were).
fn content_length(n: u64, buf: &mut [u8; 40]) -> &[u8] {
    const NAME: &[u8] = b"Content-Length: ";
    buf[36..].copy_from_slice(b"\r\n\r\n");
    // At most 20 digits: `at` is 16 or more.
    let at = decimal_before(buf, 36, n);
    buf[at - NAME.len()..at].copy_from_slice(NAME);
    &buf[at - NAME.len()..]
}

/// Writes `n` in decimal so that it ends just before `end` in `buf` (which
/// has room for its up to 20 digits there); returns where it starts.
fn decimal_before(buf: &mut [u8], end: usize, mut n: u64) -> usize {
    let mut at = end;
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return at;
        }
    }
}

/// Appends `n` in lowercase hex.
fn push_hex(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The reason phrase for `status` (empty for an uncommon code).
pub(crate) fn phrase(status: u16) -> &'static [u8] {
    reason(status).map_or(&b""[..], |line| &line[13..line.len() - 2])
}

/// The status line for the common codes.
pub(crate) fn reason(status: u16) -> Option<&'static [u8]> {
    Some(match status {
        100 => b"HTTP/1.1 100 Continue\r\n",
        101 => b"HTTP/1.1 101 Switching Protocols\r\n",
        200 => b"HTTP/1.1 200 OK\r\n",
        201 => b"HTTP/1.1 201 Created\r\n",
        202 => b"HTTP/1.1 202 Accepted\r\n",
        204 => b"HTTP/1.1 204 No Content\r\n",
        206 => b"HTTP/1.1 206 Partial Content\r\n",
        301 => b"HTTP/1.1 301 Moved Permanently\r\n",
        302 => b"HTTP/1.1 302 Found\r\n",
        303 => b"HTTP/1.1 303 See Other\r\n",
        304 => b"HTTP/1.1 304 Not Modified\r\n",
        307 => b"HTTP/1.1 307 Temporary Redirect\r\n",
        308 => b"HTTP/1.1 308 Permanent Redirect\r\n",
        400 => b"HTTP/1.1 400 Bad Request\r\n",
        401 => b"HTTP/1.1 401 Unauthorized\r\n",
        403 => b"HTTP/1.1 403 Forbidden\r\n",
        404 => b"HTTP/1.1 404 Not Found\r\n",
        405 => b"HTTP/1.1 405 Method Not Allowed\r\n",
        408 => b"HTTP/1.1 408 Request Timeout\r\n",
        409 => b"HTTP/1.1 409 Conflict\r\n",
        410 => b"HTTP/1.1 410 Gone\r\n",
        411 => b"HTTP/1.1 411 Length Required\r\n",
        413 => b"HTTP/1.1 413 Content Too Large\r\n",
        414 => b"HTTP/1.1 414 URI Too Long\r\n",
        415 => b"HTTP/1.1 415 Unsupported Media Type\r\n",
        422 => b"HTTP/1.1 422 Unprocessable Content\r\n",
        429 => b"HTTP/1.1 429 Too Many Requests\r\n",
        431 => b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
        500 => b"HTTP/1.1 500 Internal Server Error\r\n",
        501 => b"HTTP/1.1 501 Not Implemented\r\n",
        502 => b"HTTP/1.1 502 Bad Gateway\r\n",
        503 => b"HTTP/1.1 503 Service Unavailable\r\n",
        504 => b"HTTP/1.1 504 Gateway Timeout\r\n",
        505 => b"HTTP/1.1 505 HTTP Version Not Supported\r\n",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_and_hex() {
        let mut out = Vec::new();
        for n in [0, 7, 10, 1234567890, u64::MAX] {
            out.clear();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
            assert_eq!(
                content_length(n, &mut [0; 40]),
                format!("Content-Length: {n}\r\n\r\n").as_bytes()
            );
        }
        for n in [0usize, 9, 10, 255, 4096, 0xdead_beef] {
            out.clear();
            push_hex(&mut out, n);
            assert_eq!(out, format!("{n:x}").as_bytes());
        }
    }

    #[test]
    fn tokens() {
        assert!(is_token(b"Content-Type"));
        assert!(is_token(b"X-Weird_Name.1~"));
        assert!(!is_token(b""));
        assert!(!is_token(b"Bad Name"));
        assert!(!is_token(b"Bad:Name"));
    }

    #[test]
    fn every_status_line_names_its_code() {
        for code in 100..600 {
            if let Some(line) = reason(code) {
                let text = std::str::from_utf8(line).unwrap();
                assert!(text.starts_with(&format!("HTTP/1.1 {code} ")), "{text}");
                assert!(text.ends_with("\r\n"));
            }
        }
    }
}
