//! The HTTP front's input side: a buffered reader over the connection, with
//! waits bounded by a deadline, and request heads parsed with httparse and
//! read by the shared framing core (`mnvkd-http1`). Bodies are `body.rs`.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use mnvkd_http1::Framing;

use crate::conn::Connection;
use crate::kernel::Kernel;

use super::Status;

/// Largest request head (request line + headers) accepted; more gets 431.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header fields in one request; more gets 431.
const MAX_HEADERS: usize = 100;
/// Largest read buffer: a full head plus room for pipelined requests. It
/// starts at `FIRST_BUFFER` and doubles only when a head does not fit, so an
/// idle keep-alive connection costs little.
const BUFFER: usize = 32 * 1024;
/// The read buffer of a new connection.
const FIRST_BUFFER: usize = 4 * 1024;

/// Bytes read from the connection and not yet consumed.
#[derive(Debug)]
pub struct ConnReader {
    /// The client connection.
    pub conn: Arc<Connection>,
    /// `buf[start..end]` is unconsumed input; `end <= buf.len() == BUFFER`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl ConnReader {
    /// A reader with an empty buffer.
    pub fn new(conn: Arc<Connection>) -> ConnReader {
        ConnReader {
            conn,
            buf: vec![0; FIRST_BUFFER],
            start: 0,
            end: 0,
        }
    }

    /// The unconsumed input.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks `n` buffered bytes as used.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more input; `Ready(Ok(0))` at end of stream or when the buffer is full.
    pub fn poll_fill(&mut self, cx: &Context<'_>) -> Poll<io::Result<usize>> {
        if self.end == self.buf.len() && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() && self.buf.len() < BUFFER {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        if self.end == self.buf.len() {
            return Poll::Ready(Ok(0));
        }
        let conn = Arc::clone(&self.conn);
        let n = std::task::ready!(conn.poll_read(cx, &mut self.buf[self.end..]))?;
        self.end += n;
        Poll::Ready(Ok(n))
    }
}

/// What waiting for more input found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filled {
    /// Some bytes arrived.
    Bytes,
    /// End of stream, a reset or read error, or a full buffer.
    End,
    /// The deadline passed first.
    TimedOut,
}

impl ConnReader {
    /// Reads more input, waiting until `deadline` at most (on the kernel's timers).
    pub async fn fill_until(&mut self, kernel: &Kernel, deadline: Instant) -> Filled {
        let mut timer = kernel.sleep_until(deadline);
        poll_fn(|cx| match self.poll_fill(cx) {
            Poll::Ready(Ok(0) | Err(_)) => Poll::Ready(Filled::End),
            Poll::Ready(Ok(_)) => Poll::Ready(Filled::Bytes),
            Poll::Pending => Pin::new(&mut timer).poll(cx).map(|()| Filled::TimedOut),
        })
        .await
    }
}

/// A parsed request head, owned (it outlives the read buffer).
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// `GET`, `POST`, …
    pub method: String,
    /// The request target as sent: path and query.
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Header fields in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// How the body is framed.
    pub body: Framing,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// The client waits for `100 Continue` before it sends the body.
    pub expect_continue: bool,
}

impl RequestHead {
    /// The value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }
}

/// Tries to parse a complete head from `input`: `Ok(Some((head, len)))`,
/// `Ok(None)` when more bytes are needed, or the error status to answer.
/// Framing and connection rules are the shared core's
/// ([`mnvkd_http1::analyze`]), as in the guest SDK's server.
pub fn parse_head(input: &[u8], max_body: u64) -> Result<Option<(RequestHead, usize)>, Status> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut fields);
    let len = match request.parse(input) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if input.len() >= MAX_HEAD => {
            return Err(Status::HEADERS_TOO_LARGE)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Status::HEADERS_TOO_LARGE),
        Err(_) => return Err(Status::BAD_REQUEST),
    };
    if len > MAX_HEAD {
        return Err(Status::HEADERS_TOO_LARGE);
    }
    let framing =
        mnvkd_http1::analyze(&request, max_body).map_err(|refusal| Status(refusal.status()))?;
    let head = RequestHead {
        method: request.method.unwrap_or_default().to_owned(),
        target: request.path.unwrap_or_default().to_owned(),
        minor_version: framing.version,
        headers: request
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), h.value.to_vec()))
            .collect(),
        body: framing.framing,
        keep_alive: framing.keep_alive,
        expect_continue: framing.expect_continue,
    };
    Ok(Some((head, len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_with_framing_and_keep_alive() {
        let (head, len) = parse_head(
            b"POST /a?b=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
            10,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (head.method.as_str(), head.target.as_str()),
            ("POST", "/a?b=1")
        );
        assert_eq!(head.body, Framing::Length(5));
        assert!(head.keep_alive && !head.expect_continue);
        assert_eq!(len, 52);
        let (head, _) = parse_head(b"GET / HTTP/1.0\r\n\r\n", 10).unwrap().unwrap();
        assert!(!head.keep_alive);
        let (head, _) = parse_head(
            b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n",
            10,
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.body, Framing::Chunked);
        assert!(head.expect_continue);
    }

    #[test]
    fn bad_heads_get_their_status() {
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nHost", 10)
                .unwrap()
                .map(|_| ()),
            None
        );
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.resize(MAX_HEAD + 10, b'a');
        let cases: [(&[u8], Status); 7] = [
            (b"\x01\x02 nonsense\r\n\r\n", Status::BAD_REQUEST),
            (b"GET / HTTP/1.1\r\n\r\n", Status::BAD_REQUEST),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                Status::BAD_REQUEST,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\n",
                Status::BAD_REQUEST,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n",
                Status::PAYLOAD_TOO_LARGE,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
                Status::NOT_IMPLEMENTED,
            ),
            (&huge, Status::HEADERS_TOO_LARGE),
        ];
        for (raw, status) in cases {
            assert_eq!(
                parse_head(raw, 10).unwrap_err(),
                status,
                "{:?}",
                String::from_utf8_lossy(&raw[..raw.len().min(80)])
            );
        }
    }
}
