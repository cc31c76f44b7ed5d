//! Chat: a line-based chat room; every line a client sends goes to every
//! other client.
//!
//! The app runs in listener mode (`guests/chat.toml`: `kind = "listener"`):
//! the host starts one process, the **hub**, with the app's listener as
//! handle 0. The hub owns no connection itself. For each client it accepts,
//! it makes two pipes and spawns a **client process** (argv\[1\] =
//! `client`) with handles `[connection, to-hub write end, from-hub read
//! end]`, keeping the to-hub read end and the from-hub write end:
//!
//! ```text
//!  client ──tcp── client process ──to-hub pipe──▶ hub ──from-hub pipe──▶ other client processes ──tcp── clients
//! ```
//!
//! - The client process polls its connection and its from-hub pipe. Every
//!   complete line from the connection goes to the hub (a line longer than
//!   4 KiB is cut into 4 KiB lines); everything from the hub goes to the
//!   connection. It ends, closing the connection, when the client closes
//!   (end of stream) or the hub drops it (end of stream on the pipe).
//! - The hub polls the listener and every to-hub pipe. It greets a new
//!   client with `* welcome <id>` (once that line arrives, the client is
//!   in the room), and sends each line a client sends, as it is, to all
//!   other clients, never back to the sender. End of stream on a to-hub
//!   pipe (the client process ended) drops the client.
//!
//! A slow client must not stall the room, and the hub must never block on
//! a write (it is single-threaded: one stuck write stops the room). Layer 1
//! writes are all-or-nothing, and a pipe is "writable" as soon as one byte
//! is free, so the hub cannot know that a line fits. Instead, every client
//! process drains its from-hub pipe at once into its own backlog (in its own
//! micro-heap) and feeds the connection only when it is writable; a client
//! that lets 1 MiB pile up is dropped (like IRC's "SendQ exceeded"). The
//! hub, before each line, also drops a receiver whose pipe is full (its
//! client process is stuck).
//!
//! Limitations: (1) a client process blocks while writing a line to a full
//! to-hub pipe; if at that moment the hub is blocked writing to that very
//! client process's full from-hub pipe, both wait for each other. That
//! takes two clients flooding at once; it would go away if a pipe reported
//! writable only with room for 4 KiB (like POSIX `PIPE_BUF`), since every
//! write here is at most one 4 KiB line. (2) The hub's handle limit (1024
//! by default, 2 per client) caps the room at about 500 clients.

use std::io::{self, Read, Write};
use std::time::Duration;

use mnvkd_guest::{arg, pipe, poll, sleep, spawn, Handle, Listener, PollFd};

/// Longest line passed on, newline included.
const MAX_LINE: usize = 4096;

/// Most bytes a client process holds for a client that does not read.
const MAX_BACKLOG: usize = 1 << 20;

fn main() {
    let role = arg();
    let result = match role.as_deref() {
        None => hub(),
        Some("client") => client(),
        Some(other) => {
            eprintln!("unknown role {other:?}");
            std::process::exit(2)
        }
    };
    if let Err(err) = result {
        let role = role.as_deref().unwrap_or("hub");
        eprintln!("chat {role}: {err}");
        std::process::exit(1);
    }
}

/// A client as the hub sees it.
struct Member {
    id: u64,
    /// Lines from its client process.
    from: Handle,
    /// Lines to its client process.
    to: Handle,
    /// Bytes of an unfinished line read from `from`.
    partial: Vec<u8>,
}

fn hub() -> io::Result<()> {
    let listener = Listener::get();
    let mut members: Vec<Member> = Vec::new();
    let mut next_id = 1;
    // Until the host drains: then accepts fail with `pipe` (BrokenPipe) and
    // the hub serves its members until the last one leaves.
    let mut accepting = true;
    loop {
        if !accepting && members.is_empty() {
            return Ok(());
        }
        // The listener first while accepting; then only the members.
        let mut fds = Vec::with_capacity(members.len() + 1);
        if accepting {
            fds.push(PollFd::new(listener.as_raw(), PollFd::READABLE));
        }
        let first_member = fds.len();
        fds.extend(
            members
                .iter()
                .map(|member| PollFd::new(member.from.as_raw(), PollFd::READABLE)),
        );
        poll(&mut fds, None)?;

        // Lines from clients. Broadcasting may drop members, so the ready
        // ones are looked up by id, not by their place in `fds`.
        let ready: Vec<u64> = fds[first_member..]
            .iter()
            .zip(&members)
            .filter(|(fd, _)| fd.revents != 0)
            .map(|(_, member)| member.id)
            .collect();
        for id in ready {
            let Some(index) = members.iter().position(|member| member.id == id) else {
                continue; // dropped while broadcasting
            };
            match read_lines(&mut members[index]) {
                Ok(lines) => {
                    for line in lines {
                        broadcast(&mut members, id, &line);
                    }
                }
                // End of stream (or an error): the client process ended.
                Err(_) => {
                    members.remove(index);
                }
            }
        }

        if accepting && fds[0].readable() {
            match listener.accept() {
                Ok(conn) => match join(conn, next_id) {
                    Ok(member) => {
                        members.push(member);
                        next_id += 1;
                    }
                    Err(err) => {
                        // Out of handles or processes: refuse this client
                        // (its connection was closed).
                        eprintln!("cannot take a client: {err}");
                        sleep(Duration::from_millis(100));
                    }
                },
                // The host drains: no more clients will come.
                Err(err) if err.kind() == io::ErrorKind::BrokenPipe => accepting = false,
                Err(err) => {
                    // Do not spin on the listener meanwhile.
                    eprintln!("cannot accept a client: {err}");
                    sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

/// Reads what `member` sent and returns its complete lines; an empty list
/// with end of stream is an `Err`.
fn read_lines(member: &mut Member) -> io::Result<Vec<Vec<u8>>> {
    let mut buf = [0; MAX_LINE];
    let n = member.from.read(&mut buf)?;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    member.partial.extend_from_slice(&buf[..n]);
    let mut lines = Vec::new();
    while let Some(end) = member.partial.iter().position(|&b| b == b'\n') {
        lines.push(member.partial.drain(..=end).collect());
    }
    Ok(lines)
}

/// Sends `line` to every member but the sender, dropping those that cannot
/// take it now.
fn broadcast(members: &mut Vec<Member>, sender: u64, line: &[u8]) {
    let mut fds: Vec<PollFd> = members
        .iter()
        .map(|member| PollFd::new(member.to.as_raw(), PollFd::WRITABLE))
        .collect();
    if poll(&mut fds, Some(Duration::ZERO)).is_err() {
        return;
    }
    let mut index = 0;
    members.retain_mut(|member| {
        let fd = fds[index];
        index += 1;
        if member.id == sender {
            return true;
        }
        if !fd.writable() || fd.hangup() {
            eprintln!("dropping client {}: it does not keep up", member.id);
            return false;
        }
        member.to.write_all(line).is_ok()
    });
}

/// Spawns the client process of an accepted connection.
fn join(conn: Handle, id: u64) -> io::Result<Member> {
    let (from, to_hub) = pipe()?;
    let (from_hub, mut to) = pipe()?;
    spawn("client", vec![conn, to_hub, from_hub])?;
    to.write_all(format!("* welcome {id}\n").as_bytes())?;
    Ok(Member {
        id,
        from,
        to,
        partial: Vec::new(),
    })
}

/// A client process: handle 0 is the connection, 1 the to-hub pipe, 2 the
/// from-hub pipe.
///
/// It drains the from-hub pipe as soon as bytes arrive, into `backlog`,
/// and writes the backlog to the connection only when the connection is
/// writable, a piece at a time, so it is never stuck in a write while the
/// hub waits for room in its pipe. A client that lets the backlog grow past
/// [`MAX_BACKLOG`] is dropped.
fn client() -> io::Result<()> {
    // SAFETY: the hub passed these three handles; nothing else owns them.
    let (mut conn, mut to_hub, mut from_hub) = unsafe {
        (
            Handle::from_raw(0),
            Handle::from_raw(1),
            Handle::from_raw(2),
        )
    };
    let mut partial = Vec::new();
    let mut backlog: Vec<u8> = Vec::new();
    let mut buf = [0; MAX_LINE];
    loop {
        let conn_events = if backlog.is_empty() {
            PollFd::READABLE
        } else {
            PollFd::READABLE | PollFd::WRITABLE
        };
        let mut fds = [
            PollFd::new(conn.as_raw(), conn_events),
            PollFd::new(from_hub.as_raw(), PollFd::READABLE),
        ];
        poll(&mut fds, None)?;
        let [conn_ready, hub_ready] = fds;
        if conn_ready.readable() || conn_ready.hangup() {
            let n = match conn.read(&mut buf) {
                Ok(n) if n > 0 => n,
                // The client left: end of stream, or reset.
                _ => return Ok(()),
            };
            partial.extend_from_slice(&buf[..n]);
            while let Some(end) = partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = partial.drain(..=end).collect();
                to_hub.write_all(&line)?;
            }
            while partial.len() >= MAX_LINE {
                let mut line: Vec<u8> = partial.drain(..MAX_LINE - 1).collect();
                line.push(b'\n');
                to_hub.write_all(&line)?;
            }
        }
        if conn_ready.writable() && !backlog.is_empty() {
            let n = backlog.len().min(MAX_LINE);
            if conn.write_all(&backlog[..n]).is_err() {
                return Ok(()); // the client is gone
            }
            backlog.drain(..n);
        }
        if hub_ready.revents != 0 {
            let n = from_hub.read(&mut buf)?;
            if n == 0 {
                return Ok(()); // the hub dropped this client
            }
            backlog.extend_from_slice(&buf[..n]);
            if backlog.len() > MAX_BACKLOG {
                eprintln!("dropping a client that does not read");
                return Ok(());
            }
        }
    }
}
