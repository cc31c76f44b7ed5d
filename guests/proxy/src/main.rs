//! Proxy: a TCP proxy, one process per client connection.
//!
//! The process connects to the address in the environment variable
//! `UPSTREAM` (set by `guests/proxy.toml`, which also puts it in the app's
//! `allow_outbound`), then copies bytes both ways at once: one `poll` over
//! the client (handle 0) and the upstream handle, with one buffer per
//! direction.
//!
//! - A direction with an empty buffer waits for its source to be readable;
//!   one with bytes waits for its destination to be writable. So a slow
//!   reader on one side holds back only its own direction (and, through
//!   TCP, the peer that floods it), never the other one.
//! - Half-close: when a source reaches end of stream, that direction is
//!   done and the source is no longer read; the other direction goes on.
//!   When both are done, or a write fails, both connections are closed.
//!
//! Limitation: layer 1 has no `shutdown(write)`, only `close` (both
//! directions), so an end of stream cannot be passed on: the upstream
//! never learns that the client is done, and most servers (Redis) wait for
//! the next request forever. So once one direction is done, the other
//! goes on only while it is busy: after [`LINGER`] without a byte, both
//! connections are closed. A client that half-closes still gets the
//! answers that follow within that time; a protocol where the upstream
//! answers only after the client's end of stream cannot work.

use std::io::{self, Read, Write};
use std::time::Duration;

use mnvkd_guest::{connect, poll, Handle, PollFd};

/// Bytes moved per read.
const CHUNK: usize = 16 * 1024;

/// How long the copy goes on without a byte once one direction is done.
const LINGER: Duration = Duration::from_secs(2);

/// One direction of the copy: bytes read from `from`, not yet written to `to`.
struct Direction {
    /// Bytes waiting to be written.
    buf: Vec<u8>,
    /// Of which this many are written already.
    sent: usize,
    /// The source reached end of stream.
    eof: bool,
}

impl Direction {
    fn new() -> Direction {
        Direction {
            buf: Vec::with_capacity(CHUNK),
            sent: 0,
            eof: false,
        }
    }

    /// Nothing left to do: the source ended and every byte is written.
    fn done(&self) -> bool {
        self.eof && self.sent == self.buf.len()
    }

    /// The events this direction waits for on its source and destination.
    fn interest(&self) -> (u16, u16) {
        if self.sent < self.buf.len() {
            (0, PollFd::WRITABLE)
        } else if self.eof {
            (0, 0)
        } else {
            (PollFd::READABLE, 0)
        }
    }

    /// Reads from `from` into the (empty) buffer; notes end of stream.
    fn fill(&mut self, mut from: &Handle) -> io::Result<()> {
        self.buf.resize(CHUNK, 0);
        let n = from.read(&mut self.buf)?;
        self.buf.truncate(n);
        self.sent = 0;
        self.eof = n == 0;
        Ok(())
    }

    /// Writes the buffered bytes to `to`.
    fn flush(&mut self, mut to: &Handle) -> io::Result<()> {
        to.write_all(&self.buf[self.sent..])?;
        self.sent = self.buf.len();
        Ok(())
    }
}

fn main() {
    if let Err(err) = proxy() {
        eprintln!("proxy: {err}");
        std::process::exit(1);
    }
}

fn proxy() -> io::Result<()> {
    // SAFETY: handle 0 is this process's connection; nothing else owns it.
    let client = unsafe { Handle::from_raw(0) };
    let addr = std::env::var("UPSTREAM")
        .map_err(|_| io::Error::new(io::ErrorKind::NotFound, "UPSTREAM is not set"))?;
    let upstream = connect(&addr).map_err(|err| {
        io::Error::new(err.kind(), format!("cannot reach upstream {addr}: {err}"))
    })?;
    let mut up = Direction::new(); // client -> upstream
    let mut down = Direction::new(); // upstream -> client
    while !(up.done() && down.done()) {
        let (up_read, up_write) = up.interest();
        let (down_read, down_write) = down.interest();
        // Only handles with something to wait for are polled: hang-up is
        // reported whether asked for or not, so a client that half-closed
        // would otherwise wake every poll at once.
        let mut fds: Vec<PollFd> = [
            PollFd::new(client.as_raw(), up_read | down_write),
            PollFd::new(upstream.as_raw(), down_read | up_write),
        ]
        .into_iter()
        .filter(|fd| fd.events != 0)
        .collect();
        let timeout = (up.done() || down.done()).then_some(LINGER);
        if poll(&mut fds, timeout)? == 0 {
            break; // one side is done and the other idle: see the module doc
        }
        // Hang-up counts as ready: the read or write that follows says what
        // happened (end of stream, or `pipe`).
        let ready = |handle: &Handle, bit: u16| {
            fds.iter().any(|fd| {
                fd.handle == handle.as_raw()
                    && fd.events & bit != 0
                    && fd.revents & (bit | PollFd::HANGUP) != 0
            })
        };
        if ready(&client, PollFd::READABLE) {
            up.fill(&client)?;
        }
        if ready(&upstream, PollFd::READABLE) {
            down.fill(&upstream)?;
        }
        if ready(&upstream, PollFd::WRITABLE) {
            up.flush(&upstream)?;
        }
        if ready(&client, PollFd::WRITABLE) {
            down.flush(&client)?;
        }
    }
    // Dropping `client` and `upstream` closes both.
    Ok(())
}
