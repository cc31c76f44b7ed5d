//! Pipeline: a line-based request/response service whose stages are
//! separate processes joined by pipes, so a client may send many requests
//! without waiting (pipelining) and reading, parsing and answering overlap.
//!
//! # Protocol
//!
//! Each line is a request; the answers come back in order, each as
//! `<n> <result>` where `<n>` counts requests from 1 (blank lines are
//! skipped; a line over 4 KiB is cut into 4 KiB requests):
//!
//! | request | result |
//! | --- | --- |
//! | `echo <text>` | `<text>` |
//! | `upper <text>` | `<text>` in upper case |
//! | `add <i64>...` | the sum |
//! | `sleep <ms>` (at most 10000) | `slept <ms>`, after that long |
//! | anything else | `error: <why>` |
//!
//! After the client's end of stream (half-close), the answers still due
//! are sent and then the connection is closed.
//!
//! # Shape, and why
//!
//! The wanted shape was two processes, one that only reads the socket
//! (and parses) and one that only writes it (and answers). Layer 1 cannot
//! express that: a handle lives in exactly one process (`spawn` moves it),
//! and there is no `dup`, so only one process can ever hold the connection.
//! (Today a process's WASI stdin still reaches its connection after handle
//! 0 was moved away, but the wit does not promise that, and it contradicts
//! "moved", so this guest does not rely on it.)
//!
//! So the connection process, the **front**, is the only one that touches
//! the socket, and does nothing else: it pumps bytes from the socket into
//! the parser's pipe and bytes from the responder's pipe into the socket,
//! with one `poll` over the three, so neither direction waits for the
//! other. The application logic is two children in plain blocking style:
//!
//! ```text
//!          ┌──────── front (connection process) ◀───────┐
//!  socket ─┤ raw bytes                        responses │
//!          └─▶ parser ──requests──▶ responder ──────────┘
//! ```
//!
//! - **parser** (argv\[1\] `parser`, handles `[raw bytes in, requests
//!   out]`) splits lines, numbers and checks them, and passes on
//!   `<n> <verb> <args>` records or `<n> invalid <why>`.
//! - **responder** (argv\[1\] `responder`, handles `[requests in,
//!   responses out]`) executes records and writes `<n> <result>` lines.
//!
//! End of stream flows along the ring: client half-close → the front
//! closes the parser's pipe → the parser ends → the responder ends after
//! its last answer → the front sees end of stream on the responses, sends
//! what is left and closes the connection.
//!
//! Because the ring passes through the front, the front must not block on
//! the parser's pipe while the responder waits for it to take answers. So
//! the front drains answers as soon as they come (into its own buffer, up
//! to [`MAX_OUTBOUND`]; past that it stops reading the client, which is
//! backpressure on the client, not on the ring), and writes to the parser's
//! pipe only after `poll` says writable, at most 4 KiB. Such a write can
//! still wait (a pipe is writable as soon as one byte is free), but only
//! until the stages behind it move about 4 KiB along, and the answers pipe
//! has room for that since the front keeps it empty. If a pipe reported
//! writable only with room for 4 KiB (POSIX's `PIPE_BUF`), no write here
//! would wait at all; with `dup` there would be no ring.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::time::Duration;

use mnvkd_guest::{arg, pipe, poll, sleep, spawn, Handle, PollFd};

/// Most bytes moved at once, and the longest request line.
const CHUNK: usize = 4096;

/// Answers the front holds for a client that does not read them before it
/// stops reading the client's requests.
const MAX_OUTBOUND: usize = 1 << 20;

fn main() {
    let role = arg();
    let result = match role.as_deref() {
        None => front(),
        Some("parser") => parser(),
        Some("responder") => responder(),
        Some(other) => {
            eprintln!("unknown role {other:?}");
            std::process::exit(2)
        }
    };
    if let Err(err) = result {
        let role = role.as_deref().unwrap_or("front");
        eprintln!("pipeline {role}: {err}");
        std::process::exit(1);
    }
}

/// The connection process: starts the two stages, then pumps bytes.
fn front() -> io::Result<()> {
    // SAFETY: handle 0 is this process's connection; nothing else owns it.
    let conn = unsafe { Handle::from_raw(0) };
    let (raw_in, raw_out) = pipe()?;
    let (requests_in, requests_out) = pipe()?;
    let (responses_in, responses_out) = pipe()?;
    // Detached: they end by themselves when their input ends.
    spawn("parser", vec![raw_in, requests_out])?;
    spawn("responder", vec![requests_in, responses_out])?;

    let mut to_parser = Some(raw_out); // closed at the client's end of stream
    let mut inbound: Vec<u8> = Vec::new(); // read from the client, not yet passed on
    let mut outbound: Vec<u8> = Vec::new(); // answers not yet sent
    let mut answers_done = false;
    let mut buf = [0; CHUNK];
    while !(answers_done && outbound.is_empty()) {
        let mut conn_events = 0;
        if inbound.is_empty() && to_parser.is_some() && outbound.len() < MAX_OUTBOUND {
            conn_events |= PollFd::READABLE;
        }
        if !outbound.is_empty() {
            conn_events |= PollFd::WRITABLE;
        }
        let mut fds = vec![PollFd::new(conn.as_raw(), conn_events)];
        if let (Some(pipe), false) = (&to_parser, inbound.is_empty()) {
            fds.push(PollFd::new(pipe.as_raw(), PollFd::WRITABLE));
        }
        if !answers_done {
            fds.push(PollFd::new(responses_in.as_raw(), PollFd::READABLE));
        }
        // Hang-up is always reported, so a handle with nothing to wait for
        // (a half-closed client) is left out, or every poll would return.
        fds.retain(|fd| fd.events != 0);
        poll(&mut fds, None)?;

        for fd in &fds {
            // Ready for `bit`: asked for, and found (hang-up included: the
            // read or write then says what happened).
            let can = |bit| fd.events & bit != 0 && fd.revents & (bit | PollFd::HANGUP) != 0;
            if fd.handle == responses_in.as_raw() && can(PollFd::READABLE) {
                let n = (&responses_in).read(&mut buf)?;
                outbound.extend_from_slice(&buf[..n]);
                answers_done = n == 0;
            }
            if fd.handle == conn.as_raw() && can(PollFd::READABLE) {
                let n = (&conn).read(&mut buf)?;
                inbound.extend_from_slice(&buf[..n]);
                if n == 0 {
                    to_parser = None; // the parser sees end of stream
                }
            }
            if fd.handle == conn.as_raw() && can(PollFd::WRITABLE) {
                // A piece at a time: a socket found writable takes 4 KiB
                // without waiting, so the answers keep being drained.
                let n = outbound.len().min(CHUNK);
                (&conn).write_all(&outbound[..n])?;
                outbound.drain(..n);
            }
            let for_parser = to_parser.as_mut().filter(|p| p.as_raw() == fd.handle);
            if let Some(pipe) = for_parser.filter(|_| can(PollFd::WRITABLE)) {
                if pipe.write_all(&inbound).is_err() {
                    to_parser = None; // the parser is gone: stop reading
                }
                inbound.clear();
            }
        }
    }
    conn.close()
}

/// The parser: handle 0 is the client's bytes, handle 1 the requests pipe.
fn parser() -> io::Result<()> {
    // SAFETY: the front passed these two handles; nothing else owns them.
    let (raw, mut requests) = unsafe { (Handle::from_raw(0), Handle::from_raw(1)) };
    let mut raw = BufReader::new(raw);
    let mut line = Vec::new();
    let mut n = 0;
    loop {
        line.clear();
        if (&mut raw).take(CHUNK as u64).read_until(b'\n', &mut line)? == 0 {
            return Ok(()); // end of stream: dropping `requests` tells the responder
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        n += 1;
        let record = match parse(text) {
            Ok((verb, args)) => format!("{n} {verb} {args}\n"),
            Err(why) => format!("{n} invalid {why}\n"),
        };
        requests.write_all(record.as_bytes())?;
    }
}

/// Checks a request line; returns its verb and arguments.
fn parse(line: &str) -> Result<(&str, &str), String> {
    let (verb, args) = line.split_once(' ').unwrap_or((line, ""));
    let args = args.trim();
    match verb {
        "echo" | "upper" => Ok((verb, args)),
        "add" => match args.split_whitespace().find(|a| a.parse::<i64>().is_err()) {
            None => Ok((verb, args)),
            Some(bad) => Err(format!("`{bad}` is not a number")),
        },
        "sleep" => match args.parse::<u64>() {
            Ok(ms) if ms <= 10_000 => Ok((verb, args)),
            _ => Err("sleep takes milliseconds, at most 10000".to_owned()),
        },
        _ => Err(format!("unknown request `{verb}`")),
    }
}

/// The responder: handle 0 is the requests pipe, handle 1 the responses.
fn responder() -> io::Result<()> {
    // SAFETY: the front passed these two handles; nothing else owns them.
    let (requests, mut responses) = unsafe { (Handle::from_raw(0), Handle::from_raw(1)) };
    for record in BufReader::new(requests).lines() {
        let record = record?;
        let mut fields = record.splitn(3, ' ');
        let (n, verb, args) = (
            fields.next().unwrap_or(""),
            fields.next().unwrap_or(""),
            fields.next().unwrap_or(""),
        );
        let result = match verb {
            "echo" => args.to_owned(),
            "upper" => args.to_uppercase(),
            "add" => args
                .split_whitespace()
                .filter_map(|a| a.parse::<i64>().ok())
                .fold(0i64, i64::wrapping_add)
                .to_string(),
            "sleep" => {
                let ms = args.parse().unwrap_or(0);
                sleep(Duration::from_millis(ms));
                format!("slept {ms}")
            }
            _ => format!("error: {args}"),
        };
        responses.write_all(format!("{n} {result}\n").as_bytes())?;
    }
    Ok(()) // end of stream: dropping `responses` tells the front
}
