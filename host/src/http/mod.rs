//! The host's HTTP/1.1 front for CGI apps (`kind = "http"`): the host parses
//! requests (keep-alive, pipelining, chunked bodies) and runs one micro-process
//! per request, a plain WASI command that reads the body on stdin and writes a
//! CGI response on stdout. Any language that targets wasm32-wasip1 serves HTTP
//! this way with no SDK.
//!
//! `reader` is the input side (heads, bodies); `cgi` the per-request process
//! (environment, stdin, stdout → response). The connection loop is here.

mod cgi;
mod reader;

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use crate::app::App;
use crate::conn::Connection;
use crate::process::Runtime;

use reader::{BodyFraming, ConnReader, RequestHead};

/// An HTTP status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u16);

impl Status {
    /// 200.
    pub const OK: Status = Status(200);
    /// 400: malformed request.
    pub const BAD_REQUEST: Status = Status(400);
    /// 408: the request head did not arrive in time.
    pub const REQUEST_TIMEOUT: Status = Status(408);
    /// 413: the body is over the app's limit.
    pub const PAYLOAD_TOO_LARGE: Status = Status(413);
    /// 431: the head is over 16 KiB.
    pub const HEADERS_TOO_LARGE: Status = Status(431);
    /// 501: a transfer coding other than chunked.
    pub const NOT_IMPLEMENTED: Status = Status(501);
    /// 502: the guest trapped or wrote no valid CGI response.
    pub const BAD_GATEWAY: Status = Status(502);
    /// 503: the app is at its process limit for too long (unused for now).
    pub const UNAVAILABLE: Status = Status(503);
    /// 504: the guest ran past its CPU budget.
    pub const GATEWAY_TIMEOUT: Status = Status(504);

    /// The standard reason phrase.
    pub fn reason(self) -> &'static str {
        match self.0 {
            200 => "OK",
            201 => "Created",
            204 => "No Content",
            301 => "Moved Permanently",
            302 => "Found",
            304 => "Not Modified",
            400 => "Bad Request",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            413 => "Content Too Large",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Gateway Timeout",
            _ => "",
        }
    }
}

/// Largest body a front skips (unread by the guest) to keep a connection alive.
const MAX_SKIP: u64 = 1 << 20;
/// Pending response bytes that force a flush even with pipelined requests left.
const MAX_PENDING_OUTPUT: usize = 64 * 1024;

/// Serves one HTTP connection until the client closes, an error, or a
/// response that ends the connection.
pub async fn serve_connection(app: Arc<App>, runtime: Runtime, conn: Connection) {
    let conn = Arc::new(conn);
    let mut reader = ConnReader::new(Arc::clone(&conn));
    let mut out = Vec::new();
    loop {
        let head = match next_head(&app, &runtime, &mut reader, &mut out).await {
            Next::Head(head) => head,
            Next::Closed => break,
            Next::Error(status) => {
                out.extend_from_slice(&error_response(status, false));
                break;
            }
        };
        let body = match head.body {
            BodyFraming::Chunked => {
                match reader::read_chunked(&mut reader, app.settings.limits.max_body).await {
                    Ok(body) => cgi::Body::Memory(body),
                    Err(status) => {
                        out.extend_from_slice(&error_response(status, false));
                        break;
                    }
                }
            }
            BodyFraming::Length(n) if n as usize <= reader.buffered().len() => {
                let body = reader.buffered()[..n as usize].to_vec();
                reader.consume(n as usize);
                cgi::Body::Memory(body)
            }
            BodyFraming::Length(n) => cgi::Body::Stream(n),
        };
        app.processes.acquire().await;
        let finished = cgi::respond(
            &app,
            &runtime,
            &head,
            body,
            reader,
            std::mem::take(&mut out),
        )
        .await;
        let Some(finished) = finished else {
            return; // the connection broke mid-response
        };
        reader = finished.reader;
        out = finished.out;
        if !head.keep_alive || !finished.reusable {
            break;
        }
        if finished.unread > 0 && !skip(&mut reader, finished.unread).await {
            break;
        }
        let more_pipelined = !reader.buffered().is_empty();
        if !more_pipelined || out.len() >= MAX_PENDING_OUTPUT {
            if write_all(&conn, &out).await.is_err() {
                return;
            }
            out.clear();
        }
    }
    let _ = write_all(&conn, &out).await;
    conn.shutdown();
}

enum Next {
    Head(RequestHead),
    Closed,
    Error(Status),
}

/// Waits for the next complete request head: the connection may idle for
/// `idle_timeout` between requests; once a request has begun its head must
/// arrive within `head_timeout` (else 408). Pending output is flushed before
/// waiting.
async fn next_head(
    app: &App,
    runtime: &Runtime,
    reader: &mut ConnReader,
    out: &mut Vec<u8>,
) -> Next {
    let mut begun = (!reader.buffered().is_empty()).then(Instant::now);
    loop {
        match reader::parse_head(reader.buffered(), app.settings.limits.max_body) {
            Ok(Some((head, len))) => {
                reader.consume(len);
                return Next::Head(head);
            }
            Ok(None) => {}
            Err(status) => return Next::Error(status),
        }
        if !out.is_empty() {
            if write_all(&reader.conn, out).await.is_err() {
                return Next::Closed;
            }
            out.clear();
        }
        let deadline = match begun {
            Some(at) => at + app.settings.limits.head_timeout,
            None => Instant::now() + app.settings.limits.idle_timeout,
        };
        let mut timer = runtime.kernel.sleep_until(deadline);
        let filled = poll_fn(|cx| match reader.poll_fill(cx) {
            Poll::Ready(result) => Poll::Ready(Some(result)),
            Poll::Pending => Pin::new(&mut timer).poll(cx).map(|()| None),
        })
        .await;
        match filled {
            Some(Ok(n)) if n > 0 => {
                begun.get_or_insert_with(Instant::now);
            }
            // End of stream or a reset: nothing to answer.
            Some(_) => return Next::Closed,
            None if begun.is_some() => return Next::Error(Status::REQUEST_TIMEOUT),
            None => return Next::Closed,
        }
    }
}

/// Reads and drops `n` body bytes the guest did not read; false if that failed.
async fn skip(reader: &mut ConnReader, mut n: u64) -> bool {
    if n > MAX_SKIP {
        return false;
    }
    while n > 0 {
        if reader.buffered().is_empty()
            && !matches!(poll_fn(|cx| reader.poll_fill(cx)).await, Ok(1..))
        {
            return false;
        }
        let take = (n as usize).min(reader.buffered().len());
        reader.consume(take);
        n -= take as u64;
    }
    true
}

/// A complete response for an error found by the front or a failed guest.
fn error_response(status: Status, keep_alive: bool) -> Vec<u8> {
    let body = format!("{} {}\n", status.0, status.reason());
    let mut response = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n",
        status.0,
        status.reason(),
        body.len()
    );
    if !keep_alive {
        response.push_str("Connection: close\r\n");
    }
    response.push_str("\r\n");
    response.push_str(&body);
    response.into_bytes()
}

/// Writes all of `bytes` to `conn`.
async fn write_all(conn: &Connection, bytes: &[u8]) -> std::io::Result<()> {
    let mut written = 0;
    while written < bytes.len() {
        let n = poll_fn(|cx| conn.poll_write(cx, &bytes[written..])).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        written += n;
    }
    Ok(())
}
