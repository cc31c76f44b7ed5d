//! The HTTP front's input side: a buffered reader over the connection, request
//! heads parsed with httparse, and request bodies by Content-Length or chunked.

use std::future::poll_fn;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::conn::Connection;

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
    pub body: BodyFraming,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
}

/// How a request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// Exactly this many bytes (0: no body).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
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
    let minor_version = request.version.unwrap_or(1);
    let headers: Vec<(String, Vec<u8>)> = request
        .headers
        .iter()
        .map(|h| (h.name.to_owned(), h.value.to_vec()))
        .collect();
    let mut head = RequestHead {
        method: request.method.unwrap_or_default().to_owned(),
        target: request.path.unwrap_or_default().to_owned(),
        minor_version,
        headers,
        body: BodyFraming::Length(0),
        keep_alive: minor_version == 1,
    };
    if let Some(connection) = head.header("connection") {
        let connection = String::from_utf8_lossy(connection).to_ascii_lowercase();
        if connection.split(',').any(|t| t.trim() == "close") {
            head.keep_alive = false;
        } else if connection.split(',').any(|t| t.trim() == "keep-alive") {
            head.keep_alive = true;
        }
    }
    head.body = framing(&head, max_body)?;
    Ok(Some((head, len)))
}

fn framing(head: &RequestHead, max_body: u64) -> Result<BodyFraming, Status> {
    let mut encodings = head
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding"));
    if let Some((_, value)) = encodings.next() {
        let chunked_only = value.eq_ignore_ascii_case(b"chunked") && encodings.next().is_none();
        return if chunked_only {
            Ok(BodyFraming::Chunked)
        } else {
            Err(Status::NOT_IMPLEMENTED)
        };
    }
    let mut length = None;
    for (_, value) in head
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        let value: u64 = std::str::from_utf8(value)
            .ok()
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse().ok())
            .ok_or(Status::BAD_REQUEST)?;
        if length.is_some_and(|l| l != value) {
            return Err(Status::BAD_REQUEST);
        }
        length = Some(value);
    }
    let length = length.unwrap_or(0);
    if length > max_body {
        return Err(Status::PAYLOAD_TOO_LARGE);
    }
    Ok(BodyFraming::Length(length))
}

/// Reads a whole chunked body (at most `max_body` bytes once decoded).
///
/// # Errors
/// 400 for malformed chunks or an early end of stream, 413 past `max_body`.
pub async fn read_chunked(reader: &mut ConnReader, max_body: u64) -> Result<Vec<u8>, Status> {
    let mut body = Vec::new();
    loop {
        let size_line = read_line(reader).await?;
        let size_text = size_line.split(|&b| b == b';').next().unwrap_or_default();
        let size = std::str::from_utf8(size_text)
            .ok()
            .and_then(|t| u64::from_str_radix(t.trim(), 16).ok())
            .ok_or(Status::BAD_REQUEST)?;
        if size == 0 {
            // Trailer fields, ignored, up to the empty line.
            while !read_line(reader).await?.is_empty() {}
            return Ok(body);
        }
        if body.len() as u64 + size > max_body {
            return Err(Status::PAYLOAD_TOO_LARGE);
        }
        let mut left = size as usize;
        while left > 0 {
            if reader.buffered().is_empty() {
                fill(reader).await?;
            }
            let take = left.min(reader.buffered().len());
            body.extend_from_slice(&reader.buffered()[..take]);
            reader.consume(take);
            left -= take;
        }
        if !read_line(reader).await?.is_empty() {
            return Err(Status::BAD_REQUEST);
        }
    }
}

/// Reads one CRLF- (or LF-) terminated line of at most 4 KiB, without the terminator.
async fn read_line(reader: &mut ConnReader) -> Result<Vec<u8>, Status> {
    loop {
        if let Some(at) = reader.buffered().iter().position(|&b| b == b'\n') {
            let mut line = reader.buffered()[..at].to_vec();
            reader.consume(at + 1);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(line);
        }
        if reader.buffered().len() > 4096 {
            return Err(Status::BAD_REQUEST);
        }
        fill(reader).await?;
    }
}

async fn fill(reader: &mut ConnReader) -> Result<(), Status> {
    match poll_fn(|cx| reader.poll_fill(cx)).await {
        Ok(0) | Err(_) => Err(Status::BAD_REQUEST),
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_with_framing_and_keep_alive() {
        let (head, len) = parse_head(
            b"POST /a?b=1 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            10,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (head.method.as_str(), head.target.as_str()),
            ("POST", "/a?b=1")
        );
        assert_eq!(head.body, BodyFraming::Length(5));
        assert!(head.keep_alive);
        assert_eq!(len, 43);
        let (head, _) = parse_head(b"GET / HTTP/1.0\r\n\r\n", 10).unwrap().unwrap();
        assert!(!head.keep_alive);
    }

    #[test]
    fn bad_heads_get_their_status() {
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nHost", 10)
                .unwrap()
                .map(|_| ()),
            None
        );
        assert_eq!(
            parse_head(b"\x01\x02 nonsense\r\n\r\n", 10).unwrap_err(),
            Status::BAD_REQUEST
        );
        let big = b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n";
        assert_eq!(parse_head(big, 10).unwrap_err(), Status::PAYLOAD_TOO_LARGE);
        let gzip = b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert_eq!(parse_head(gzip, 10).unwrap_err(), Status::NOT_IMPLEMENTED);
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.resize(MAX_HEAD + 10, b'a');
        assert_eq!(
            parse_head(&huge, 10).unwrap_err(),
            Status::HEADERS_TOO_LARGE
        );
    }
}
