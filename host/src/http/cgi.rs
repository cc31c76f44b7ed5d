//! One CGI request: its environment, the body on stdin, and stdout parsed as
//! a CGI response (`Status:`, headers, blank line, body) and sent to the client.
//!
//! Small responses are buffered and sent with a Content-Length, batched with
//! other pipelined responses; once a response passes `STREAM_AT` bytes it is
//! streamed as it is written (chunked for HTTP/1.1), so host memory per
//! request stays bounded whatever the guest writes.
//!
//! The process runs under the request's clock: it is ended (its future
//! dropped) when it waits `body_timeout` for body bytes that do not come
//! (408) or when the request passes `request_timeout` (504, or 408 if it was
//! waiting for the body); once the response head is out, either only closes
//! the connection.

use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdinStream, StdoutStream};
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError, StreamResult};

use super::clock::RequestClock;
use super::front::write_all;
use super::reader::{ConnReader, RequestHead};
use super::status::{error_response, Status};
use crate::app::App;
use crate::conn::Connection;
use crate::process::{self, EnvText, Exit, Pid, Runtime, Start, Stdio, Unused};
use crate::text::{self, push_number};

/// Response body bytes buffered before the response starts streaming.
const STREAM_AT: usize = 64 * 1024;
/// Largest CGI response head a guest may write.
const MAX_CGI_HEAD: usize = 16 * 1024;
/// Largest single read handed to the guest from a streamed body.
const MAX_READ: usize = 64 * 1024;

/// A request body, as the front has it.
#[derive(Debug)]
pub enum Body {
    /// Already read (small, or chunked and decoded).
    Memory(Vec<u8>),
    /// This many bytes still to come from the connection.
    Stream(u64),
}

/// What is left after a response.
#[derive(Debug)]
pub struct Finished {
    /// The connection's reader, for the next request.
    pub reader: ConnReader,
    /// Response bytes not written yet (batched with later responses).
    pub out: Vec<u8>,
    /// Body bytes the guest did not read.
    pub unread: u64,
    /// Whether the connection can carry another request.
    pub reusable: bool,
}

/// Runs one process for `head` and produces its response after the bytes in
/// `out`, ending the process if it outlives the request's `clock`. Returns
/// `None` when the connection broke (or was cut) while streaming.
pub async fn respond(
    app: &Arc<App>,
    runtime: &Runtime,
    clock: &RequestClock,
    head: &RequestHead,
    body: Body,
    reader: ConnReader,
    out: Vec<u8>,
) -> Option<Finished> {
    let conn = Arc::clone(&reader.conn);
    let length = match &body {
        Body::Memory(bytes) => bytes.len() as u64,
        Body::Stream(n) => *n,
    };
    let input = Arc::new(Mutex::new(Input::new(reader, body)));
    let output = Arc::new(Mutex::new(Output::new(
        Arc::clone(&conn),
        head,
        out,
        Status::BAD_GATEWAY,
    )));
    let start = Start {
        stdio: Some(Stdio {
            stdin: Box::new(CgiStdin(Arc::clone(&input))),
            stdout: Box::new(CgiStdout(Arc::clone(&output))),
        }),
        env: environment(head, &conn, length),
        peer: conn.peers().remote,
        ..Start::default()
    };
    let pid = Pid::next();
    let run = process::run(Arc::clone(app), runtime.clone(), start, pid);
    let end = match supervise(run, &input, clock).await {
        Ok(exit) => End::Exited(exit),
        Err(kill) => End::Killed(kill),
    };
    if let End::Killed(kill) = &end {
        if app.log_limit.admit(&app.name) {
            tracing::warn!(app = %app.name, %pid, "process killed: {kill}");
        }
    }
    // The process's store is gone, and with it the stdio's references.
    let input = Arc::into_inner(input)?.into_inner().ok()?;
    let output = Arc::into_inner(output)?.into_inner().ok()?;
    let unread = match input.body {
        Body::Stream(left) => left,
        Body::Memory(_) => 0,
    };
    let (out, reusable) = output.finish(&end, app, pid)?;
    Some(Finished {
        reader: input.reader,
        out,
        unread,
        reusable,
    })
}

/// How a request's process ended.
#[derive(Debug)]
pub(super) enum End {
    /// It ran to its end (or was killed by the process layer: a trap, the CPU budget).
    Exited(Exit),
    /// The front ended it.
    Killed(Kill),
}

/// Why the front ended a process.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kill {
    /// It waited this long for request body bytes that did not come (`body_timeout`).
    BodyStalled(Duration),
    /// The request outlived its `request_timeout` (this long).
    RequestTimeout {
        timeout: Duration,
        /// The process was waiting for request body bytes then.
        waiting_for_body: bool,
    },
}

impl Kill {
    /// What the client gets if the response head is not out yet.
    fn status(self) -> Status {
        match self {
            Kill::BodyStalled(_)
            | Kill::RequestTimeout {
                waiting_for_body: true,
                ..
            } => Status::REQUEST_TIMEOUT,
            Kill::RequestTimeout { .. } => Status::GATEWAY_TIMEOUT,
        }
    }
}

impl fmt::Display for Kill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kill::BodyStalled(timeout) => write!(
                f,
                "waited {timeout:?} for request body bytes that did not come (body_timeout)"
            ),
            Kill::RequestTimeout { timeout, .. } => {
                write!(
                    f,
                    "the request took longer than {timeout:?} (request_timeout)"
                )
            }
        }
    }
}

/// Runs the process future `run` until it ends or the request's clock ends
/// it (dropping it ends the process and gives its place back).
pub(super) async fn supervise<F: Future>(
    run: F,
    input: &Mutex<Input>,
    clock: &RequestClock,
) -> Result<F::Output, Kill> {
    let mut run = pin!(run);
    let mut request_timer = clock.timer();
    let mut body_timer = clock.timer();
    poll_fn(|cx| {
        if let Poll::Ready(exit) = run.as_mut().poll(cx) {
            return Poll::Ready(Ok(exit));
        }
        // The process is suspended: whether it waits for body bytes is
        // what its stdin recorded while it was polled.
        let waiting_since = input.lock().unwrap().waiting_since;
        if request_timer.poll_at(cx, Some(clock.deadline())).is_ready() {
            return Poll::Ready(Err(Kill::RequestTimeout {
                timeout: clock.request_timeout(),
                waiting_for_body: waiting_since.is_some(),
            }));
        }
        let stalled_at = waiting_since.map(|since| since + clock.body_timeout());
        if body_timer.poll_at(cx, stalled_at).is_ready() {
            return Poll::Ready(Err(Kill::BodyStalled(clock.body_timeout())));
        }
        Poll::Pending
    })
    .await
}

/// The CGI/1.1 environment for `head` (RFC 3875 §4.1). Names and fixed
/// values are borrowed: WASI's context copies every pair anyway, and the
/// copies made here were a quarter of a request's allocations.
fn environment(head: &RequestHead, conn: &Connection, length: u64) -> Vec<(EnvText, EnvText)> {
    let (path, query) = head.target.split_once('?').unwrap_or((&head.target, ""));
    let peers = conn.peers();
    let mut env: Vec<(EnvText, EnvText)> = Vec::with_capacity(14 + head.headers.len());
    let protocol = match head.minor_version {
        0 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    env.extend([
        ("GATEWAY_INTERFACE".into(), "CGI/1.1".into()),
        ("SERVER_PROTOCOL".into(), protocol.into()),
        (
            "SERVER_SOFTWARE".into(),
            concat!("mnvkd-host/", env!("CARGO_PKG_VERSION")).into(),
        ),
        ("REQUEST_METHOD".into(), head.method.clone().into()),
        ("REQUEST_URI".into(), head.target.clone().into()),
        ("SCRIPT_NAME".into(), "".into()),
        ("PATH_INFO".into(), path.to_owned().into()),
        ("QUERY_STRING".into(), query.to_owned().into()),
    ]);
    if length > 0 || head.header("content-length").is_some() {
        env.push(("CONTENT_LENGTH".into(), text::decimal(length).into()));
    }
    if let Some(remote) = peers.remote {
        env.extend(process::address_env(["REMOTE_ADDR", "REMOTE_PORT"], remote));
    }
    let server_name = match (head.header("host"), peers.local) {
        (Some(host), _) => {
            let host = String::from_utf8_lossy(host);
            match host.rsplit_once(':') {
                Some((name, _)) => name.to_owned(),
                None => host.into_owned(),
            }
        }
        (None, Some(local)) => text::ip(local.ip()),
        (None, None) => String::new(),
    };
    env.push(("SERVER_NAME".into(), server_name.into()));
    if let Some(local) = peers.local {
        env.push((
            "SERVER_PORT".into(),
            text::decimal(local.port().into()).into(),
        ));
    }
    for (name, value) in &head.headers {
        let value = String::from_utf8_lossy(value);
        let key: EnvText = if name.eq_ignore_ascii_case("content-type") {
            "CONTENT_TYPE".into()
        } else if name.eq_ignore_ascii_case("content-length") {
            continue;
        } else {
            let mut key = String::with_capacity(5 + name.len());
            key.push_str("HTTP_");
            key.extend(name.chars().map(|c| match c {
                '-' => '_',
                c => c.to_ascii_uppercase(),
            }));
            key.into()
        };
        match env.iter_mut().find(|(k, _)| *k == key) {
            Some((_, existing)) => {
                let joined = existing.to_mut();
                joined.push_str(", ");
                joined.push_str(&value);
            }
            None => env.push((key, value.into_owned().into())),
        }
    }
    env
}

/// The request body as the guest reads it, shared by the front and stdin
/// (or a component's incoming body).
#[derive(Debug)]
pub(super) struct Input {
    /// The connection's reader, for a streamed body and the next request.
    pub(super) reader: ConnReader,
    /// The body: in memory, or the bytes still to come.
    pub(super) body: Body,
    /// Bytes of a `Memory` body already read.
    offset: usize,
    /// Since when the guest has waited for body bytes that have not come
    /// yet; `None` while it does not wait (reset by each arrival).
    waiting_since: Option<Instant>,
}

impl Input {
    /// The input of a request whose body is `body`, read through `reader`.
    pub(super) fn new(reader: ConnReader, body: Body) -> Input {
        Input {
            reader,
            body,
            offset: 0,
            waiting_since: None,
        }
    }

    /// Takes up to `size` body bytes; `Ok(None)` at the end of the body.
    pub(super) fn poll_take(
        &mut self,
        cx: Option<&Context<'_>>,
        size: usize,
    ) -> Poll<StreamResult<Option<Bytes>>> {
        let size = size.min(MAX_READ);
        match &mut self.body {
            Body::Memory(bytes) => {
                if self.offset == bytes.len() {
                    return Poll::Ready(Ok(None));
                }
                let end = bytes.len().min(self.offset + size);
                let chunk = Bytes::copy_from_slice(&bytes[self.offset..end]);
                self.offset = end;
                Poll::Ready(Ok(Some(chunk)))
            }
            Body::Stream(0) => Poll::Ready(Ok(None)),
            Body::Stream(left) => {
                if self.reader.buffered().is_empty() {
                    let Some(cx) = cx else {
                        return Poll::Ready(Ok(Some(Bytes::new())));
                    };
                    match fill_body(&mut self.reader, &mut self.waiting_since, cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(0)) => return Poll::Ready(Err(StreamError::Closed)),
                        Poll::Ready(Ok(_)) => {}
                        Poll::Ready(Err(err)) => {
                            return Poll::Ready(Err(StreamError::LastOperationFailed(
                                wasmtime::Error::new(err),
                            )))
                        }
                    }
                }
                let take = size.min(*left as usize).min(self.reader.buffered().len());
                let chunk = Bytes::copy_from_slice(&self.reader.buffered()[..take]);
                self.reader.consume(take);
                *left -= take as u64;
                Poll::Ready(Ok(Some(chunk)))
            }
        }
    }
}

/// Reads more of a streamed body from the connection, noting in
/// `waiting_since` when the guest starts waiting for it and when bytes come.
fn fill_body(
    reader: &mut ConnReader,
    waiting_since: &mut Option<Instant>,
    cx: &Context<'_>,
) -> Poll<io::Result<usize>> {
    let filled = reader.poll_fill(cx);
    match filled {
        Poll::Pending => {
            waiting_since.get_or_insert_with(Instant::now);
        }
        Poll::Ready(_) => *waiting_since = None,
    }
    filled
}

struct CgiStdin(Arc<Mutex<Input>>);

impl IsTerminal for CgiStdin {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdinStream for CgiStdin {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncRead + Send + Sync> {
        Box::new(Unused)
    }

    fn p2_stream(&self) -> Box<dyn InputStream> {
        Box::new(CgiInput(Arc::clone(&self.0)))
    }
}

struct CgiInput(Arc<Mutex<Input>>);

#[wasmtime_wasi::async_trait]
impl Pollable for CgiInput {
    async fn ready(&mut self) {
        poll_fn(|cx| {
            let mut input = self.0.lock().unwrap();
            match &input.body {
                Body::Stream(left) if *left > 0 && input.reader.buffered().is_empty() => {
                    let input = &mut *input;
                    fill_body(&mut input.reader, &mut input.waiting_since, cx).map(|_| ())
                }
                _ => Poll::Ready(()),
            }
        })
        .await
    }
}

#[wasmtime_wasi::async_trait]
impl InputStream for CgiInput {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        match self.0.lock().unwrap().poll_take(None, size) {
            Poll::Ready(Ok(Some(bytes))) => Ok(bytes),
            Poll::Ready(Ok(None)) => Err(StreamError::Closed),
            Poll::Ready(Err(err)) => Err(err),
            Poll::Pending => Ok(Bytes::new()),
        }
    }

    async fn blocking_read(&mut self, size: usize) -> StreamResult<Bytes> {
        if size == 0 {
            return Ok(Bytes::new());
        }
        poll_fn(|cx| self.0.lock().unwrap().poll_take(Some(cx), size))
            .await?
            .ok_or(StreamError::Closed)
    }
}

/// The guest's CGI output (or a component's response) and how much of the
/// response has gone out.
#[derive(Debug)]
pub(super) struct Output {
    conn: Arc<Connection>,
    /// The client spoke HTTP/1.0: no chunked encoding.
    http10: bool,
    /// The client wants the connection kept open.
    keep_alive: bool,
    /// Earlier pipelined responses, to be written before this one.
    prefix: Vec<u8>,
    /// The CGI head as written so far, until its blank line.
    head_bytes: Vec<u8>,
    /// The parsed CGI head.
    head: Option<CgiHead>,
    /// Why the CGI head is invalid, if it is.
    invalid: Option<String>,
    /// Body bytes not sent yet.
    body: Vec<u8>,
    /// The response head is on the wire; the body follows as it comes.
    streaming: bool,
    /// What a guest that failed gets (502 from a CGI program).
    failed: Status,
    /// The request is a HEAD: the response has a head and no body.
    head_only: bool,
    /// Body bytes of a HEAD response, counted for its Content-Length and dropped.
    skipped: usize,
    /// Trailer fields (a component's), sent after a chunked body.
    trailers: Vec<(String, String)>,
}

impl Output {
    /// The output of the response to `head`, after the earlier pipelined
    /// responses in `prefix`; a failed guest's response is `failed`.
    pub(super) fn new(
        conn: Arc<Connection>,
        head: &RequestHead,
        prefix: Vec<u8>,
        failed: Status,
    ) -> Output {
        Output {
            conn,
            http10: head.minor_version == 0,
            keep_alive: head.keep_alive,
            prefix,
            head_bytes: Vec::new(),
            head: None,
            invalid: None,
            body: Vec::new(),
            streaming: false,
            failed,
            head_only: head.method == "HEAD",
            skipped: 0,
            trailers: Vec::new(),
        }
    }

    /// Sets the response's status and header fields at once (a component's
    /// response, not a CGI head to parse); framing fields are the host's
    /// and are dropped. The body follows with [`Output::feed`].
    pub(super) fn set_head(&mut self, status: Status, headers: Vec<(String, String)>) {
        let headers = headers
            .into_iter()
            .filter(|(name, _)| !is_framing(name))
            .collect();
        self.head = Some((status, status.reason().to_owned(), headers));
    }

    /// Sets the trailer fields sent after the body (framing fields dropped).
    /// They need chunked framing: a buffered body then goes chunked too; an
    /// HTTP/1.0 client or a HEAD request gets none.
    pub(super) fn set_trailers(&mut self, trailers: Vec<(String, String)>) {
        self.trailers = trailers
            .into_iter()
            .filter(|(name, _)| !is_framing(name))
            .collect();
    }

    /// The client connection.
    pub(super) fn conn(&self) -> &Arc<Connection> {
        &self.conn
    }

    /// Adds bytes the guest wrote: CGI head bytes until its blank line, then body.
    pub(super) fn feed(&mut self, mut bytes: &[u8]) {
        if self.invalid.is_some() {
            return;
        }
        if self.head.is_none() {
            let before = self.head_bytes.len();
            self.head_bytes.extend_from_slice(bytes);
            let Some(end) = head_end(&self.head_bytes) else {
                if self.head_bytes.len() > MAX_CGI_HEAD {
                    self.invalid = Some(format!("a CGI head of more than {MAX_CGI_HEAD} bytes"));
                }
                return;
            };
            match parse_cgi_head(&self.head_bytes[..end.0]) {
                Ok(head) => self.head = Some(head),
                Err(why) => {
                    self.invalid = Some(why);
                    return;
                }
            }
            bytes = &bytes[end.1 - before..];
            self.head_bytes = Vec::new();
        }
        if self.head_only {
            self.skipped += bytes.len();
        } else {
            self.body.extend_from_slice(bytes);
        }
    }

    /// Bytes to write now because the body outgrew the buffer.
    pub(super) fn take_streamed(&mut self) -> Option<Vec<u8>> {
        if self.invalid.is_some() || self.head.is_none() {
            return None;
        }
        if !self.streaming && self.body.len() < STREAM_AT {
            return None;
        }
        let mut bytes = Vec::new();
        if !self.streaming {
            self.streaming = true;
            bytes = std::mem::take(&mut self.prefix);
            self.response_head(&mut bytes, None);
        }
        self.frame_body(&mut bytes);
        Some(bytes)
    }

    /// The rest of a streamed body, and on HTTP/1.1 its last chunk and trailers.
    fn end_chunked(&mut self, bytes: &mut Vec<u8>) {
        self.frame_body(bytes);
        if !self.http10 {
            bytes.extend_from_slice(b"0\r\n");
            push_fields(bytes, &self.trailers);
            bytes.extend_from_slice(b"\r\n");
        }
    }

    fn frame_body(&mut self, bytes: &mut Vec<u8>) {
        if self.body.is_empty() {
            return;
        }
        if self.http10 {
            bytes.append(&mut self.body);
        } else {
            push_number(bytes, self.body.len() as u64, 16);
            bytes.extend_from_slice(b"\r\n");
            bytes.append(&mut self.body);
            bytes.extend_from_slice(b"\r\n");
        }
    }

    /// The HTTP response head; `length` is the body length when known.
    fn response_head(&self, bytes: &mut Vec<u8>, length: Option<usize>) {
        let (status, reason, headers) = self.head.as_ref().expect("checked by callers");
        bytes.extend_from_slice(b"HTTP/1.1 ");
        push_number(bytes, u64::from(status.0), 10);
        bytes.push(b' ');
        bytes.extend_from_slice(reason.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        push_fields(bytes, headers);
        match length {
            Some(length) => {
                bytes.extend_from_slice(b"Content-Length: ");
                push_number(bytes, length as u64, 10);
                bytes.extend_from_slice(b"\r\n");
            }
            None if !self.http10 => bytes.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            None => {}
        }
        if !self.reusable_after(length) {
            bytes.extend_from_slice(b"Connection: close\r\n");
        }
        bytes.extend_from_slice(b"\r\n");
    }

    fn reusable_after(&self, length: Option<usize>) -> bool {
        self.keep_alive && (length.is_some() || !self.http10)
    }

    /// The bytes that complete the response after the process ended, and
    /// whether the connection can be reused; `None` if it must be dropped now.
    pub(super) fn finish(mut self, end: &End, app: &App, pid: Pid) -> Option<(Vec<u8>, bool)> {
        let failure = match end {
            End::Killed(kill) => {
                // The front stopped reading the request: close after the answer.
                self.keep_alive = false;
                Some(kill.status())
            }
            End::Exited(Exit::Failed(failure)) => Some(if failure.over_time() {
                Status::GATEWAY_TIMEOUT
            } else {
                self.failed
            }),
            End::Exited(Exit::Exited(_)) if self.invalid.is_some() || self.head.is_none() => {
                let why = self.invalid.take().unwrap_or_else(|| {
                    "no complete CGI response head (headers and a blank line)".to_owned()
                });
                if app.log_limit.admit(&app.name) {
                    tracing::warn!(app = %app.name, %pid, "bad gateway: the guest wrote {why}");
                }
                Some(Status::BAD_GATEWAY)
            }
            End::Exited(Exit::Exited(_)) => None,
        };
        if self.streaming {
            // The head is out: a failure can only cut the response short.
            if failure.is_some() {
                self.conn.shutdown();
                return None;
            }
            let mut bytes = Vec::new();
            self.end_chunked(&mut bytes);
            let reusable = self.reusable_after(None);
            return Some((bytes, reusable));
        }
        let mut bytes = std::mem::take(&mut self.prefix);
        if let Some(status) = failure {
            bytes.extend_from_slice(&error_response(status, self.keep_alive));
            return Some((bytes, self.keep_alive));
        }
        if !self.trailers.is_empty() && !self.http10 && !self.head_only {
            self.response_head(&mut bytes, None);
            self.end_chunked(&mut bytes);
            return Some((bytes, self.reusable_after(None)));
        }
        let length = self.body.len() + self.skipped;
        self.response_head(&mut bytes, Some(length));
        bytes.append(&mut self.body);
        Some((bytes, self.keep_alive))
    }
}

/// Appends `name: value` lines, without `core::fmt` (`crate::text`).
fn push_fields(bytes: &mut Vec<u8>, fields: &[(String, String)]) {
    for (name, value) in fields {
        bytes.extend_from_slice(name.as_bytes());
        bytes.extend_from_slice(b": ");
        bytes.extend_from_slice(value.as_bytes());
        bytes.extend_from_slice(b"\r\n");
    }
}

/// A guest's CGI head: the status, its reason phrase, and the other header lines.
type CgiHead = (Status, String, Vec<(String, String)>);

/// Whether the header field `name` frames the message: the host's to set.
fn is_framing(name: &str) -> bool {
    ["content-length", "transfer-encoding", "connection"]
        .iter()
        .any(|framing| name.eq_ignore_ascii_case(framing))
}

/// Where the CGI head ends: (end of the header lines, start of the body).
fn head_end(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut line_start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        if byte == b'\n' {
            let line = &bytes[line_start..i];
            if line.is_empty() || line == b"\r" {
                return Some((line_start, i + 1));
            }
            line_start = i + 1;
        }
    }
    None
}

/// Parses CGI header lines into (status, reason, other headers).
fn parse_cgi_head(bytes: &[u8]) -> Result<CgiHead, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "a CGI head that is not UTF-8".to_owned())?;
    let mut status = None;
    let mut headers = Vec::new();
    for line in text.lines() {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!(
                "the CGI header line `{}` without a colon",
                line.escape_debug()
            ));
        };
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(format!(
                "an invalid CGI header name `{}`",
                name.escape_debug()
            ));
        }
        if name.eq_ignore_ascii_case("status") {
            let (code, reason) = value.split_once(' ').unwrap_or((value, ""));
            let code: u16 = code
                .parse()
                .ok()
                .filter(|c| (100..=999).contains(c))
                .ok_or_else(|| format!("an invalid CGI status `{value}`"))?;
            status = Some((Status(code), reason.trim().to_owned()));
        } else if is_framing(name) {
            // Framing is the host's job.
        } else {
            headers.push((name.to_owned(), value.to_owned()));
        }
    }
    let (status, reason) = status.unwrap_or_else(|| {
        let redirect = headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("location"));
        (
            if redirect { Status(302) } else { Status::OK },
            String::new(),
        )
    });
    let reason = if reason.is_empty() {
        status.reason().to_owned()
    } else {
        reason
    };
    Ok((status, reason, headers))
}

struct CgiStdout(Arc<Mutex<Output>>);

impl IsTerminal for CgiStdout {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CgiStdout {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(Unused)
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(CgiOutput(Arc::clone(&self.0)))
    }
}

struct CgiOutput(Arc<Mutex<Output>>);

impl CgiOutput {
    async fn send_streamed(&mut self) -> StreamResult<()> {
        let (conn, bytes) = {
            let mut output = self.0.lock().unwrap();
            match output.take_streamed() {
                Some(bytes) => (Arc::clone(&output.conn), bytes),
                None => return Ok(()),
            }
        };
        write_all(&conn, &bytes)
            .await
            .map_err(|err| match err.kind() {
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => StreamError::Closed,
                _ => StreamError::LastOperationFailed(wasmtime::Error::new(err)),
            })
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CgiOutput {
    async fn ready(&mut self) {
        let _ = self.send_streamed().await;
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CgiOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.0.lock().unwrap().feed(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        let output = self.0.lock().unwrap();
        Ok(if output.streaming || output.body.len() >= STREAM_AT {
            // Let `ready` send what is buffered first.
            if output.body.len() >= STREAM_AT {
                0
            } else {
                STREAM_AT
            }
        } else {
            STREAM_AT
        })
    }

    async fn blocking_write_and_flush(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.0.lock().unwrap().feed(&bytes);
        self.send_streamed().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgi_heads_parse() {
        let (status, reason, headers) = parse_cgi_head(
            b"Status: 404 Gone Fishing\nContent-Type: text/plain\nContent-Length: 3",
        )
        .unwrap();
        assert_eq!((status, reason.as_str()), (Status(404), "Gone Fishing"));
        assert_eq!(
            headers,
            vec![("Content-Type".to_owned(), "text/plain".to_owned())]
        );
        let (status, reason, _) = parse_cgi_head(b"Location: /x").unwrap();
        assert_eq!((status, reason.as_str()), (Status(302), "Found"));
        assert!(parse_cgi_head(b"no colon here").is_err());
        assert!(parse_cgi_head(b"Status: abc").is_err());
        assert_eq!(head_end(b"A: b\r\n\r\nbody"), Some((6, 8)));
        assert_eq!(head_end(b"A: b\n\nbody"), Some((5, 6)));
        assert_eq!(head_end(b"A: b\n"), None);
    }
}
