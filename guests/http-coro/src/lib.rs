//! HTTP/1.1 in mnvkd's own shape: a request-reader coroutine and a
//! response-writer coroutine in one micro-heap, joined by an in-heap channel
//! of requests (`mnvkd_guest::task`). Keep-alive and pipelining: the reader
//! parses every request that has arrived and queues it; the writer answers
//! in order and sends the answers to all queued requests in one write.
//!
//! `GET /` answers `Hello, World!` (as `hello-http`, for
//! `scripts/bench-http`); any other path answers the path, so a test can
//! check the order of pipelined answers. Framing (lengths, chunked bodies,
//! refusals) is `mnvkd-http1`'s, shared with the host's CGI front.
//!
//! The library is [`serve`], one connection; `main.rs` serves the process's
//! own connection (connection mode), and `http-coro-many` serves every
//! connection of a listener-mode app from one process.

use std::io;
use std::mem::MaybeUninit;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mnvkd_guest::http::Date;
use mnvkd_guest::task::{self, Either, Receiver, Sender, Stream};
use mnvkd_http1::chunked::{Decoder, Progress};
use mnvkd_http1::Framing;

/// The largest request head; a longer one gets 431.
const MAX_HEAD: usize = 16 * 1024;
/// The largest body; a longer one gets 413.
const MAX_BODY: usize = 1 << 20;
/// Requests queued between the coroutines: a client pipelining more waits
/// (its bytes stay in the socket) until the writer catches up.
const QUEUE: usize = 64;
/// Answers gathered into one write at most.
const FLUSH_AT: usize = 64 * 1024;
/// How long a request may take to arrive whole, head and body, from its
/// first byte ([`serve`]); a slower one gets 408 and the connection closes.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What the reader hands the writer: one request to answer.
#[derive(Debug)]
struct Job {
    /// 200, or the refusal's status (the connection then closes).
    status: u16,
    /// The request target; empty for `/` (no allocation for the common
    /// case) and for a refusal.
    path: String,
    /// Whether the connection goes on after the answer.
    keep_alive: bool,
}

/// Serves HTTP/1.1 on `conn` until the client closes or an answer closes
/// the connection.
///
/// # Errors
///
/// A read or write that failed; a client that leaves mid-answer is an end,
/// not a failure.
pub async fn serve(conn: Rc<Stream>) -> io::Result<()> {
    serve_within(conn, REQUEST_TIMEOUT).await
}

/// As [`serve`], with `request_timeout` for each request to arrive whole
/// from its first byte: a client trickling bytes (slowloris) makes
/// progress but cannot hold its connection longer than that.
///
/// # Errors
///
/// As [`serve`].
pub async fn serve_within(conn: Rc<Stream>, request_timeout: Duration) -> io::Result<()> {
    let (jobs, queue) = task::channel(QUEUE);
    let writer = task::spawn(write_responses(Rc::clone(&conn), queue));
    let read = read_requests(&conn, jobs, request_timeout).await;
    let written = writer.await;
    match read.and(written) {
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
}

/// The request reader: parses requests as they arrive and queues them.
async fn read_requests(
    conn: &Stream,
    jobs: Sender<Job>,
    request_timeout: Duration,
) -> io::Result<()> {
    // `buf[start..len]` is what arrived and is not parsed yet; the buffer is
    // zeroed once and grows (doubling) only for a larger request.
    let mut buf = vec![0u8; 4 * 1024];
    let (mut start, mut len) = (0, 0);
    // When the first byte of the request not yet whole arrived (read
    // from the clock only then: between requests nothing is timed here).
    let mut began: Option<Instant> = None;
    loop {
        // Every complete request in the buffer, then read more.
        while let Parsed::Complete(job, used) = parse(&buf[start..len]) {
            start += used;
            began = None;
            let stop = !job.keep_alive;
            if jobs.send(job).await.is_err() || stop {
                return Ok(());
            }
        }
        if start > 0 {
            buf.copy_within(start..len, 0);
            len -= start;
            start = 0;
        }
        if len == buf.len() {
            if len >= MAX_HEAD + MAX_BODY + 64 * 1024 {
                let _ = jobs.send(refusal(431)).await;
                return Ok(());
            }
            // Never the heap's last bytes: a client's large request gets
            // 503, not every connection of the process an abort.
            if mnvkd_guest::heap::reserve(&mut buf, len).is_err() {
                let _ = jobs.send(refusal(503)).await;
                return Ok(());
            }
            buf.resize(2 * len, 0);
        }
        let n = if len == 0 {
            conn.read(&mut buf[len..]).await?
        } else {
            let began = *began.get_or_insert_with(Instant::now);
            let left = request_timeout.saturating_sub(began.elapsed());
            match task::select(conn.read(&mut buf[len..]), task::sleep(left)).await {
                Either::Left(read) => read?,
                Either::Right(()) => {
                    let _ = jobs.send(refusal(408)).await;
                    return Ok(());
                }
            }
        };
        if n == 0 {
            return Ok(()); // the client is done; `jobs` drops: the writer ends
        }
        len += n;
    }
}

/// What [`parse`] found at the start of the buffer.
enum Parsed {
    /// A request (or a refusal), and the bytes it took.
    Complete(Job, usize),
    /// Not all there yet.
    Partial,
}

/// Parses one request at the start of `buf`: its head, then its body by
/// the shared framing rules (a chunked body is decoded in place).
fn parse(buf: &[u8]) -> Parsed {
    if buf.is_empty() {
        return Parsed::Partial;
    }
    // Uninitialized: 100 empty headers written before every parse were
    // 3.2 KB of stores a request.
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; 100];
    let mut request = httparse::Request::new(&mut []);
    let head_len = match request.parse_with_uninit_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Parsed::Complete(refusal(431), buf.len())
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Complete(refusal(431), buf.len()),
        Err(_) => return Parsed::Complete(refusal(400), buf.len()),
    };
    let head = match mnvkd_http1::analyze(&request, MAX_BODY as u64) {
        Ok(head) => head,
        Err(refused) => return Parsed::Complete(refusal(refused.status()), buf.len()),
    };
    let path = match request.path {
        None | Some("/") => String::new(),
        Some(path) => path.to_owned(),
    };
    let body_len = match head.framing {
        Framing::Empty => 0,
        Framing::Length(len) => {
            let len = len as usize;
            if buf.len() < head_len + len {
                return Parsed::Partial;
            }
            len
        }
        Framing::Chunked => {
            // The decoder works in place: on a copy, so that a body not
            // all there yet is decoded afresh from its raw bytes next time.
            let mut body = Vec::new();
            if mnvkd_guest::heap::reserve(&mut body, buf.len() - head_len).is_err() {
                return Parsed::Complete(refusal(503), buf.len());
            }
            body.extend_from_slice(&buf[head_len..]);
            let mut decoder = Decoder::new(MAX_BODY, MAX_HEAD);
            match decoder.decode(&mut body) {
                Ok(Progress::Done) => decoder.raw(),
                Ok(Progress::More) => return Parsed::Partial,
                Err(refused) => return Parsed::Complete(refusal(refused.status()), buf.len()),
            }
        }
    };
    let job = Job {
        status: 200,
        path,
        keep_alive: head.keep_alive,
    };
    Parsed::Complete(job, head_len + body_len)
}

/// The job of a refused request: answered, then the connection closes.
fn refusal(status: u16) -> Job {
    Job {
        status,
        path: String::new(),
        keep_alive: false,
    }
}

/// The response writer: answers queued requests in order, all those queued
/// at once in one write.
async fn write_responses(conn: Rc<Stream>, queue: Receiver<Job>) -> io::Result<()> {
    let mut out = Vec::with_capacity(4096);
    let mut date = Date::new();
    while let Some(job) = queue.recv().await {
        // One clock read per batch of answers.
        date.refresh();
        let mut close = respond(&mut out, &job, &date);
        while !close && out.len() < FLUSH_AT {
            let Some(job) = queue.try_recv() else { break };
            close = respond(&mut out, &job, &date);
        }
        conn.write_all(&out).await?;
        out.clear();
        if close {
            return conn.shutdown(std::net::Shutdown::Write);
        }
    }
    Ok(())
}

/// Appends the answer to `job`; returns whether the connection closes after it.
fn respond(out: &mut Vec<u8>, job: &Job, date: &Date) -> bool {
    let (status, body): (&str, &[&str]) = match job.status {
        200 if job.path.is_empty() => ("200 OK", &["Hello, World!\n"]),
        200 => ("200 OK", &[job.path.as_str(), "\n"]),
        400 => ("400 Bad Request", &[]),
        408 => ("408 Request Timeout", &[]),
        413 => ("413 Content Too Large", &[]),
        431 => ("431 Request Header Fields Too Large", &[]),
        503 => ("503 Service Unavailable", &[]),
        _ => ("501 Not Implemented", &[]),
    };
    let length: usize = body.iter().map(|part| part.len()).sum();
    // Straight into the output buffer: no allocation, no formatting machinery.
    for part in [b"HTTP/1.1 ", status.as_bytes(), b"\r\n", date.line()] {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"Content-Type: text/plain\r\nContent-Length: ");
    push_decimal(out, length);
    out.extend_from_slice(b"\r\n");
    if !job.keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    for part in body {
        out.extend_from_slice(part.as_bytes());
    }
    !job.keep_alive
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}
