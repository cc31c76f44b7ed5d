//! Benchmark guest for `scripts/bench-pipes`: how fast processes talk.
//!
//! The client sends one line, `pingpong N` or `spawn N`, and gets one line back:
//! - `pingpong N`: a child is spawned with two pipes; the parent writes one
//!   byte, the child answers with one byte, N times. Replies
//!   `roundtrips N elapsed_ns T`.
//! - `spawn N`: spawns N children that exit at once, waiting for each.
//!   Replies `spawns N elapsed_ns T`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::time::Instant;

use mnvkd_guest::{arg, connection, pipe, spawn, Handle};

fn main() -> io::Result<()> {
    match arg().as_deref() {
        Some("echo") => return echo_child(),
        Some("exit") => return Ok(()),
        _ => {}
    }
    let mut line = String::new();
    BufReader::new(connection()).read_line(&mut line)?;
    let mut words = line.split_whitespace();
    let command = words.next().unwrap_or_default();
    let count: u64 = words.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let reply = match command {
        "pingpong" => format!("roundtrips {count} elapsed_ns {}\n", pingpong(count)?),
        "spawn" => format!("spawns {count} elapsed_ns {}\n", spawns(count)?),
        _ => "usage: pingpong N | spawn N\n".to_owned(),
    };
    connection().write_all(reply.as_bytes())
}

/// The child of `pingpong`: handle 0 reads pings, handle 1 writes pongs.
fn echo_child() -> io::Result<()> {
    // SAFETY: handles 0 and 1 were passed to this process by its parent.
    let (mut pings, mut pongs) = unsafe { (Handle::from_raw(0), Handle::from_raw(1)) };
    let mut byte = [0];
    while pings.read(&mut byte)? == 1 {
        pongs.write_all(&byte)?;
    }
    Ok(())
}

fn pingpong(count: u64) -> io::Result<u128> {
    let (ping_read, mut ping_write) = pipe()?;
    let (mut pong_read, pong_write) = pipe()?;
    let child = spawn("echo", vec![ping_read, pong_write])?;
    let mut byte = [7];
    let start = Instant::now();
    for _ in 0..count {
        ping_write.write_all(&byte)?;
        pong_read.read_exact(&mut byte)?;
    }
    let elapsed = start.elapsed().as_nanos();
    drop(ping_write);
    child.wait()?;
    Ok(elapsed)
}

fn spawns(count: u64) -> io::Result<u128> {
    let start = Instant::now();
    for _ in 0..count {
        spawn("exit", Vec::new())?.wait()?;
    }
    Ok(start.elapsed().as_nanos())
}
