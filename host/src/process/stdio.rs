//! Layer 0 stdio: the connection as WASI stdin and stdout, stderr to the log.
//!
//! wasmtime-wasi's default adapters wrap a tokio stream and spawn a tokio task
//! per stream; these streams instead read and write the mio socket directly
//! and park on the reactor, so a blocking `fd_read` suspends only this process
//! on the kernel's own executor.
//!
//! Their buffers (a read buffer while a read is in progress, stdout bytes the
//! socket has not taken yet) are charged to the process's host memory: a read
//! is shortened to what the account has room for, and stdout grants no more
//! than that; with no room at all the call fails (the guest sees `EIO`).
//! WASI p1's `fd_write` uses `blocking_write_and_flush`, which writes its
//! 4 KiB chunk straight to the socket and holds nothing here.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdinStream, StdoutStream};
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError, StreamResult};

use crate::conn::Connection;
use crate::host_memory::{Charge, HostMemory};

use super::Pid;

/// Largest single read handed to the guest; bounds the host buffer per read.
const MAX_READ: usize = 64 * 1024;
/// What `check_write` grants when nothing is pending.
const WRITE_PERMIT: usize = 64 * 1024;
/// A guest's stderr line longer than this is logged in pieces.
const MAX_LOG_LINE: usize = 4096;

/// The connection behind a process's stdin and stdout, until the process
/// gives its handle 0 away (`spawn`) or closes it: from then on stdin is at
/// end of stream and stdout goes to the log, so the connection belongs to its
/// new owner alone and closes when that owner is done with it.
#[derive(Debug)]
pub struct StdioLink {
    /// The connection; `None` once detached.
    conn: Mutex<Option<Arc<Connection>>>,
    /// Where stdout goes once detached.
    log: GuestLog,
    /// The process's host memory, charged for the stdio buffers.
    host_memory: Arc<HostMemory>,
}

impl StdioLink {
    /// A link to `conn`, falling back to `log`, with buffers charged to `host_memory`.
    pub fn new(
        conn: Arc<Connection>,
        log: GuestLog,
        host_memory: Arc<HostMemory>,
    ) -> Arc<StdioLink> {
        Arc::new(StdioLink {
            conn: Mutex::new(Some(conn)),
            log,
            host_memory,
        })
    }

    /// Reads up to `size` bytes (at most [`MAX_READ`], and no more than the
    /// host-memory account has room for) from `conn` now. The bytes land in
    /// this thread's scratch buffer and only what arrived is copied out: no
    /// guest-sized buffer is allocated and zeroed per attempt (callgrind
    /// counted 4 of a spawn's 22 thousand instructions zeroing one that the
    /// first read, finding nothing, dropped). Returns the read-event count
    /// `seen` for [`Connection::poll_readable`] as well.
    fn try_read(&self, conn: &Connection, size: usize) -> StreamResult<(io::Result<Bytes>, u64)> {
        thread_local! {
            static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; MAX_READ].into_boxed_slice());
        }
        let wanted = size.clamp(1, MAX_READ) as u64;
        let charge = Charge::up_to(&self.host_memory, wanted).ok_or_else(out_of_host_memory)?;
        Ok(SCRATCH.with_borrow_mut(|scratch| {
            let buf = &mut scratch[..charge.bytes() as usize];
            let (result, seen) = conn.try_read(buf);
            (result.map(|n| Bytes::copy_from_slice(&buf[..n])), seen)
        }))
    }

    /// Cuts stdin and stdout off the connection.
    pub fn detach(&self) {
        self.conn.lock().unwrap().take();
    }

    fn conn(&self) -> Option<Arc<Connection>> {
        self.conn.lock().unwrap().clone()
    }
}

/// The connection as stdin and stdout (one value serves both).
#[derive(Debug, Clone)]
pub struct ConnectionStdio(pub Arc<StdioLink>);

impl IsTerminal for ConnectionStdio {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdinStream for ConnectionStdio {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncRead + Send + Sync> {
        // Unused: p1 asks for `p2_stream`, overridden below.
        Box::new(Unused)
    }

    fn p2_stream(&self) -> Box<dyn InputStream> {
        Box::new(ConnectionInput {
            link: Arc::clone(&self.0),
            wait_for: None,
        })
    }
}

impl StdoutStream for ConnectionStdio {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(Unused)
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(ConnectionOutput {
            link: Arc::clone(&self.0),
            pending: Vec::new(),
            charged: 0,
            detached: None,
        })
    }
}

struct ConnectionInput {
    link: Arc<StdioLink>,
    /// After a read found nothing: the read-event count to wait past.
    wait_for: Option<u64>,
}

#[wasmtime_wasi::async_trait]
impl Pollable for ConnectionInput {
    async fn ready(&mut self) {
        if let (Some(seen), Some(conn)) = (self.wait_for, self.link.conn()) {
            poll_fn(|cx| conn.poll_readable(cx, seen)).await;
        }
    }
}

#[wasmtime_wasi::async_trait]
impl InputStream for ConnectionInput {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        let Some(conn) = self.link.conn() else {
            return Err(StreamError::Closed);
        };
        if size == 0 {
            self.wait_for = None;
            return Ok(Bytes::new());
        }
        let (result, seen) = self.link.try_read(&conn, size)?;
        match result {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                self.wait_for = Some(seen);
                Ok(Bytes::new())
            }
            result => {
                self.wait_for = None;
                read_result(result, size)
            }
        }
    }

    async fn blocking_read(&mut self, size: usize) -> StreamResult<Bytes> {
        let Some(conn) = self.link.conn() else {
            return Err(StreamError::Closed);
        };
        if size == 0 {
            return Ok(Bytes::new());
        }
        // Nothing is held while the process waits: an idle connection keeps
        // no read buffer on the host.
        loop {
            let (result, seen) = self.link.try_read(&conn, size)?;
            match result {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    poll_fn(|cx| conn.poll_readable(cx, seen)).await;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                result => {
                    self.wait_for = None;
                    return read_result(result, size);
                }
            }
        }
    }
}

fn read_result(result: io::Result<Bytes>, size: usize) -> StreamResult<Bytes> {
    match result {
        Ok(bytes) if bytes.is_empty() && size > 0 => Err(StreamError::Closed),
        Ok(bytes) => {
            if !bytes.is_empty() {
                crate::kernel::compute::note_io();
            }
            Ok(bytes)
        }
        Err(err) => Err(stream_error(err)),
    }
}

struct ConnectionOutput {
    link: Arc<StdioLink>,
    /// Bytes accepted from the guest that the socket has not taken yet.
    pending: Vec<u8>,
    /// Bytes charged to the host-memory account for `pending`; equal to
    /// `pending.len()` after every call.
    charged: u64,
    /// Where output goes once the link is detached.
    detached: Option<LogOutput>,
}

impl ConnectionOutput {
    /// Gives back the charge for pending bytes that are gone.
    fn settle(&mut self) {
        let pending = self.pending.len() as u64;
        if self.charged > pending {
            self.link.host_memory.release(self.charged - pending);
            self.charged = pending;
        }
    }

    /// The connection, or `None` after moving what is pending to the log.
    fn conn(&mut self) -> Option<Arc<Connection>> {
        let conn = self.link.conn();
        if conn.is_none() && self.detached.is_none() {
            let mut log = LogOutput {
                target: self.link.log.clone(),
                line: Vec::new(),
            };
            log.feed(&std::mem::take(&mut self.pending));
            self.settle();
            self.detached = Some(log);
        }
        conn
    }

    /// Writes as much of `pending` as the socket takes now.
    fn drain_now(&mut self) -> StreamResult<()> {
        let Some(conn) = self.conn() else {
            return Ok(());
        };
        let result = loop {
            if self.pending.is_empty() {
                break Ok(());
            }
            match conn.try_write(&self.pending) {
                Ok(n) => drop(self.pending.drain(..n)),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(err) => break Err(stream_error(err)),
            }
        };
        self.settle();
        result
    }

    fn poll_drain(&mut self, cx: &Context<'_>) -> Poll<StreamResult<()>> {
        loop {
            let Some(conn) = self.conn() else {
                return Poll::Ready(Ok(()));
            };
            let seen = conn.write_events();
            self.drain_now()?;
            if self.pending.is_empty() {
                return Poll::Ready(Ok(()));
            }
            if conn.poll_writable(cx, seen).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for ConnectionOutput {
    async fn ready(&mut self) {
        // An error is reported by the next check_write.
        let _ = poll_fn(|cx| self.poll_drain(cx)).await;
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for ConnectionOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if self.conn().is_none() {
            self.detached.as_mut().expect("set by conn()").feed(&bytes);
            return Ok(());
        }
        // `check_write` granted no more than the account had room for; the
        // room may have gone meanwhile (a pipe this process reads filled up).
        let wanted = bytes.len() as u64;
        let granted = self.link.host_memory.charge_up_to(wanted);
        if granted < wanted {
            self.link.host_memory.release(granted);
            return Err(out_of_host_memory());
        }
        self.charged += granted;
        self.pending.extend_from_slice(&bytes);
        self.drain_now()
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.drain_now()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.drain_now()?;
        if self.conn().is_none() {
            // Output goes to the log, a line at a time: nothing is held.
            return Ok(WRITE_PERMIT);
        }
        if !self.pending.is_empty() {
            return Ok(0);
        }
        match self.link.host_memory.room().min(WRITE_PERMIT as u64) {
            0 => Err(out_of_host_memory()),
            room => Ok(room as usize),
        }
    }

    async fn blocking_write_and_flush(&mut self, bytes: Bytes) -> StreamResult<()> {
        poll_fn(|cx| self.poll_drain(cx)).await?;
        let Some(conn) = self.conn() else {
            self.detached.as_mut().expect("set by conn()").feed(&bytes);
            return Ok(());
        };
        let mut written = 0;
        poll_fn(|cx| loop {
            if written == bytes.len() {
                return Poll::Ready(Ok(()));
            }
            match conn.poll_write(cx, &bytes[written..]) {
                Poll::Ready(Ok(n)) => {
                    written += n;
                    crate::kernel::compute::note_io();
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(stream_error(err))),
                Poll::Pending => return Poll::Pending,
            }
        })
        .await
    }
}

impl Drop for ConnectionOutput {
    fn drop(&mut self) {
        self.link.host_memory.release(self.charged);
    }
}

/// The error of a stdio call that needs host memory the process has no room for.
fn out_of_host_memory() -> StreamError {
    StreamError::LastOperationFailed(wasmtime::Error::new(io::Error::from(
        io::ErrorKind::QuotaExceeded,
    )))
}

fn stream_error(err: io::Error) -> StreamError {
    use io::ErrorKind::*;
    match err.kind() {
        BrokenPipe | ConnectionReset | ConnectionAborted | NotConnected => StreamError::Closed,
        _ => StreamError::LastOperationFailed(wasmtime::Error::new(err)),
    }
}

/// A guest's stderr (or the stdout of a process without a connection): each
/// line becomes one log event tagged with app and pid, or, under `run`, goes
/// to the host's stderr as is.
#[derive(Debug, Clone)]
pub struct GuestLog {
    /// The app's name.
    pub app: Arc<str>,
    /// The app's bound on log lines its guests cause.
    pub limit: Arc<crate::app::LogLimit>,
    /// The process.
    pub pid: Pid,
    /// `stderr` or `stdout`, to prefix each line.
    pub stream: &'static str,
    /// Write to the host's stderr instead of the log.
    pub terminal: bool,
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(Unused)
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LogOutput {
            target: self.clone(),
            line: Vec::new(),
        })
    }
}

struct LogOutput {
    target: GuestLog,
    /// The unfinished last line.
    line: Vec<u8>,
}

impl LogOutput {
    fn feed(&mut self, bytes: &[u8]) {
        if self.target.terminal {
            let _ = std::io::Write::write_all(&mut std::io::stderr(), bytes);
            return;
        }
        for &byte in bytes {
            self.line.push(byte);
            if byte == b'\n' || self.line.len() >= MAX_LOG_LINE {
                self.emit();
            }
        }
    }

    fn emit(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end_matches(['\n', '\r']);
        let stream = self.target.stream;
        if self.target.limit.admit(&self.target.app) {
            tracing::info!(app = %self.target.app, pid = %self.target.pid, "{stream}: {text}");
        }
        self.line.clear();
    }
}

impl Drop for LogOutput {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogOutput {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LogOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.feed(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

/// The tokio stream wasmtime-wasi's traits require but p1 never uses here
/// (every stream of ours overrides `p2_stream`).
#[derive(Debug)]
pub struct Unused;

impl tokio::io::AsyncRead for Unused {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for Unused {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(b.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Stdio given by the starter of a process (the HTTP front's CGI streams).
pub struct Stdio {
    /// Becomes fd 0.
    pub stdin: Box<dyn StdinStream>,
    /// Becomes fd 1.
    pub stdout: Box<dyn StdoutStream>,
}

impl std::fmt::Debug for Stdio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stdio")
    }
}
