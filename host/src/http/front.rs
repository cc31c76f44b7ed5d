//! The connection loop of the HTTP front: the next request head, its body,
//! a process place, the CGI process, and how the connection goes on or
//! closes. Refusals and timeouts close it gently (the client's unread
//! bytes are drained for a moment, so the close does not reset the
//! connection before the client read the answer).

use std::future::poll_fn;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mnvkd_http1::Framing;

use crate::app::{App, Guest};
use crate::component::World;
use crate::conn::Connection;
use crate::kernel::Kernel;
use crate::process::Runtime;

use super::body;
use super::cgi;
use super::clock::RequestClock;
use super::proxy;
use super::reader::{parse_head, ConnReader, Filled, RequestHead};
use super::status::{error_response, Status, CONTINUE};

/// Pending response bytes that force a flush even with pipelined requests left.
const MAX_PENDING_OUTPUT: usize = 64 * 1024;
/// The most bytes a closing connection reads and drops.
const LINGER_BYTES: usize = 1 << 20;
/// How long a closing connection waits for the client to close its side.
const LINGER_TIME: Duration = Duration::from_secs(1);

/// Serves one HTTP connection until the client closes, an error, or a
/// response that ends the connection.
pub async fn serve_connection(app: Arc<App>, runtime: Runtime, conn: Connection) {
    let conn = Arc::new(conn);
    let mut reader = ConnReader::new(Arc::clone(&conn));
    let mut out = Vec::new();
    loop {
        let head = match next_head(&app, &runtime, &mut reader, &mut out).await {
            Next::Head(head) => head,
            Next::Closed => {
                let _ = write_all(&conn, &out).await;
                conn.shutdown();
                return;
            }
            Next::Error(status) => {
                out.extend_from_slice(&error_response(status, false));
                break;
            }
        };
        match serve_request(&app, &runtime, head, reader, out).await {
            After::Next(next_reader, next_out) => (reader, out) = (next_reader, next_out),
            After::Close(last_reader, last_out) => {
                (reader, out) = (last_reader, last_out);
                break;
            }
            After::Gone => return,
        }
    }
    if write_all(&conn, &out).await.is_ok() {
        close_gently(&mut reader, &runtime.kernel).await;
    }
    conn.shutdown();
}

/// How the connection goes on after a request.
enum After {
    /// Read the next request; the response may still be batched in the output.
    Next(ConnReader, Vec<u8>),
    /// Write the output and close.
    Close(ConnReader, Vec<u8>),
    /// The connection broke: drop it.
    Gone,
}

/// Reads the body of `head`, runs its process and appends its response to
/// `out`, all by the request's deadline (`request_timeout`).
async fn serve_request(
    app: &Arc<App>,
    runtime: &Runtime,
    head: RequestHead,
    mut reader: ConnReader,
    mut out: Vec<u8>,
) -> After {
    let limits = &app.settings.limits;
    let clock = RequestClock::start(&runtime.kernel, limits);
    let body = match head.body {
        Framing::Empty => cgi::Body::Memory(Vec::new()),
        Framing::Length(n) if n <= reader.buffered().len() as u64 => {
            let body = reader.buffered()[..n as usize].to_vec();
            reader.consume(n as usize);
            cgi::Body::Memory(body)
        }
        Framing::Length(n) => cgi::Body::Stream(n),
        Framing::Chunked => {
            if head.expect_continue {
                out.extend_from_slice(CONTINUE);
                if write_all(&reader.conn, &out).await.is_err() {
                    return After::Gone;
                }
                out.clear();
            }
            match body::read_chunked(&mut reader, &clock, limits.max_body).await {
                Ok(body) => cgi::Body::Memory(body),
                Err(status) => {
                    out.extend_from_slice(&error_response(status, false));
                    return After::Close(reader, out);
                }
            }
        }
    };
    if clock.by_deadline(app.processes.acquire()).await.is_none() {
        if app.log_limit.admit(&app.name) {
            tracing::warn!(
                app = %app.name,
                "no process place within the request's {:?} (request_timeout): 503",
                limits.request_timeout
            );
        }
        out.extend_from_slice(&error_response(Status::UNAVAILABLE, false));
        return After::Close(reader, out);
    }
    if head.expect_continue && matches!(body, cgi::Body::Stream(_)) {
        // The process starts now and reads the body as it comes.
        out.extend_from_slice(CONTINUE);
        if write_all(&reader.conn, &out).await.is_err() {
            app.processes.release();
            return After::Gone;
        }
        out.clear();
    }
    let finished = match &app.guest {
        Guest::Component(guest) if guest.world() == World::Proxy => {
            proxy::respond(app, runtime, &clock, &head, body, reader, out).await
        }
        _ => cgi::respond(app, runtime, &clock, &head, body, reader, out).await,
    };
    let Some(finished) = finished else {
        return After::Gone; // the connection broke mid-response
    };
    let (mut reader, mut out) = (finished.reader, finished.out);
    if !head.keep_alive || !finished.reusable {
        return After::Close(reader, out);
    }
    if finished.unread > 0 {
        // The response is whole: send it before dropping what the guest left.
        if write_all(&reader.conn, &out).await.is_err() {
            return After::Gone;
        }
        out.clear();
        if !body::skip(&mut reader, &clock, finished.unread).await {
            // No second response to this request: just close.
            return After::Close(reader, out);
        }
    }
    let more_pipelined = !reader.buffered().is_empty();
    if !more_pipelined || out.len() >= MAX_PENDING_OUTPUT {
        if write_all(&reader.conn, &out).await.is_err() {
            return After::Gone;
        }
        out.clear();
    }
    After::Next(reader, out)
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
    let limits = &app.settings.limits;
    let mut begun = (!reader.buffered().is_empty()).then(Instant::now);
    loop {
        match parse_head(reader.buffered(), limits.max_body) {
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
            Some(at) => at + limits.head_timeout,
            None => Instant::now() + limits.idle_timeout,
        };
        match reader.fill_until(&runtime.kernel, deadline).await {
            Filled::Bytes => {
                begun.get_or_insert_with(Instant::now);
            }
            // End of stream or a reset: nothing to answer.
            Filled::End => return Next::Closed,
            Filled::TimedOut if begun.is_some() => return Next::Error(Status::REQUEST_TIMEOUT),
            Filled::TimedOut => return Next::Closed,
        }
    }
}

/// Ends the connection after its last response was written: half-closes it,
/// then reads and drops what the client still sends (up to `LINGER_BYTES`,
/// for `LINGER_TIME` at most), so that closing with unread input does not
/// reset the connection before the client has read the response.
async fn close_gently(reader: &mut ConnReader, kernel: &Kernel) {
    reader.conn.shutdown_write();
    let deadline = Instant::now() + LINGER_TIME;
    let mut dropped = 0;
    while dropped < LINGER_BYTES {
        let n = reader.buffered().len();
        reader.consume(n);
        dropped += n;
        if reader.fill_until(kernel, deadline).await != Filled::Bytes {
            break;
        }
    }
}

/// Writes all of `bytes` to `conn`.
pub(super) async fn write_all(conn: &Connection, bytes: &[u8]) -> std::io::Result<()> {
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
