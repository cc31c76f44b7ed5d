//! Hog: a process that tries to take more than its share, for the host's
//! end-to-end tests of the per-process limits (`tests/limits.rs`).
//!
//! Per connection, the process reads one command line (`<command> [n]`);
//! started by the HTTP front (CGI), it takes the command from the query
//! string instead. Results are `key value` lines; error codes are the raw
//! `mnvkd` codes (`-6` is `limit`).
//!
//! | command | what it does | result lines |
//! | --- | --- | --- |
//! | `cpu-sleep [ms]` (20) | computes `ms` at a time, sleeping 1 ms in between, forever | none (ended by `max_cpu`) |
//! | `cpu-pipe [ms]` (20) | computes `ms` at a time, moving a byte through its own pipe in between, forever | none (ended by `max_cpu`) |
//! | `sleep` | sleeps forever | none (ended by `max_wall`) |
//! | `spawn` | spawns sleeping children (detached) until `spawn` fails | `count n`, `error e` |
//! | `spawn-nested` | a child spawns sleeping children until it fails, and reports | `count n`, `error e` (the child's) |
//! | `orphans [n]` (3) | a child spawns `n` sleepers and exits; then this process spawns until it fails | `orphaned n`, `count m`, `error e` |
//! | `orphan-alive` | moves the connection to a child, which passes it to a grandchild and exits; the orphaned grandchild answers once its parent is gone | `orphan alive` |
//! | `fill [size]` (65536) | fills pipes it never reads, one `size` write each (the pipe buffer), until a call fails | `pipes p`, `filled bytes`, `last_write n`, `error e` |
//! | `fill-stdin [size]` | fills pipes as `fill`, reads WASI stdin, closes the pipes, reads stdin to its end | `error e`, `stdin_full errno 29` (EIO), `stdin_after <the rest>` |
//!
//! Sleeping children sleep 60 s: longer than any test.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mnvkd_guest::{arg, connection, pipe, sleep, spawn, sys, Child, Errno, Handle};

fn main() {
    match arg().as_deref() {
        None => serve(),
        Some(role) => child(role),
    }
}

/// The process the host started: one command, then end.
fn serve() {
    let line = match std::env::var("QUERY_STRING") {
        Ok(query) => query.replace('+', " "),
        Err(_) => read_command(),
    };
    let mut words = line.split_whitespace();
    let command = words.next().unwrap_or("");
    let number = words.next().and_then(|n| n.parse().ok());
    let result = match command {
        "cpu-sleep" => cpu_forever(number.unwrap_or(20), Pause::Sleep),
        "cpu-pipe" => cpu_forever(number.unwrap_or(20), Pause::Pipe),
        "sleep" => loop {
            sleep(Duration::from_secs(3600));
        },
        "spawn" => {
            let (count, error) = spawn_until_refused();
            report("count", count);
            report("error", error);
            Ok(())
        }
        "spawn-nested" => spawn_nested(),
        "orphans" => orphans(number.unwrap_or(3) as usize),
        "orphan-alive" => orphan_alive(),
        "fill" => fill(number.unwrap_or(64 * 1024) as usize),
        "fill-stdin" => fill_stdin(number.unwrap_or(64 * 1024) as usize),
        _ => {
            report("error", "unknown-command");
            Ok(())
        }
    };
    if let Err(err) = result {
        report("error", code(&err));
    }
}

/// Reads the command line one byte at a time, so nothing after it is consumed.
fn read_command() -> String {
    let mut conn = connection();
    let mut line = Vec::new();
    let mut byte = [0];
    while line.len() < 1024 {
        match conn.read(&mut byte) {
            Ok(1) if byte[0] != b'\n' => line.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&line).trim().to_owned()
}

/// Writes `key value` as one line to the connection (or stdout under CGI),
/// or ends the process.
fn report(key: &str, value: impl std::fmt::Display) {
    let line = format!("{key} {value}\n");
    let written = if std::env::var_os("QUERY_STRING").is_some() {
        io::stdout().write_all(line.as_bytes())
    } else {
        connection().write_all(line.as_bytes())
    };
    if written.is_err() {
        std::process::exit(1);
    }
}

/// The `mnvkd` error code inside `err` (or `io`'s if it carries none).
fn code(err: &io::Error) -> i32 {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<Errno>())
        .map_or(sys::IO, |errno| errno.code())
}

/// What a compute slice is followed by.
#[derive(Clone, Copy)]
enum Pause {
    /// A 1 ms sleep: the process blocks.
    Sleep,
    /// A byte written to and read back from its own pipe: bytes move.
    Pipe,
}

/// Computes `ms` at a time, pausing in between, forever: each slice is far
/// under the CPU budget, so only `max_cpu` ends it.
fn cpu_forever(ms: u64, pause: Pause) -> io::Result<()> {
    let (mut reader, mut writer) = pipe()?;
    let mut sum = 0u64;
    loop {
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(ms) {
            for i in 0..10_000u64 {
                sum = std::hint::black_box(sum.wrapping_mul(31).wrapping_add(i));
            }
        }
        match pause {
            Pause::Sleep => sleep(Duration::from_millis(1)),
            Pause::Pipe => {
                writer.write_all(&[sum as u8])?;
                reader.read_exact(&mut [0])?;
            }
        }
    }
}

/// Spawns sleepers (detached at once) until `spawn` fails; returns how many
/// it started and the error code.
fn spawn_until_refused() -> (usize, i32) {
    let mut count = 0;
    loop {
        match spawn("sleeper", Vec::new()) {
            Ok(child) => drop(child),
            Err(err) => return (count, code(&err)),
        }
        count += 1;
        if count == 100_000 {
            return (count, 0);
        }
    }
}

/// `spawn-nested`: a child spawns until refused and reports through a pipe.
fn spawn_nested() -> io::Result<()> {
    let (mut report_read, report_write) = pipe()?;
    let _child = spawn("nest", vec![report_write])?;
    let mut text = String::new();
    report_read.read_to_string(&mut text)?;
    connection().write_all(text.as_bytes())
}

/// `orphans n`: a child spawns `n` sleepers and exits, orphaning them; then
/// this process spawns until refused.
fn orphans(n: usize) -> io::Result<()> {
    let maker: Child = spawn(&format!("orphan-maker {n}"), Vec::new())?;
    let status = maker.wait()?;
    report("orphaned", status.into_raw());
    let (count, error) = spawn_until_refused();
    report("count", count);
    report("error", error);
    Ok(())
}

/// `orphan-alive`: see the module doc.
fn orphan_alive() -> io::Result<()> {
    // SAFETY: handle 0 is this process's connection; it is moved to the child.
    let conn = unsafe { Handle::from_raw(0) };
    spawn("orphan-parent", vec![conn])?;
    Ok(())
}

/// `fill [size]`: pipes nobody reads, each filled by one write of `size`
/// bytes (the pipe buffer: default 64 KiB), until `pipe` or `write` fails.
fn fill(size: usize) -> io::Result<()> {
    let filled = fill_pipes(size);
    report("pipes", filled.pipes.len());
    report("filled", filled.bytes);
    report("last_write", filled.last_write);
    report("error", filled.error);
    Ok(())
}

/// `fill-stdin [size]`: fills pipes as `fill` does, then reads WASI stdin
/// (the connection), then closes the pipes and reads stdin to its end.
fn fill_stdin(size: usize) -> io::Result<()> {
    let filled = fill_pipes(size);
    report("error", filled.error);
    let full = io::stdin().read(&mut [0; 16]);
    report(
        "stdin_full",
        match full {
            Ok(n) => format!("read {n}"),
            Err(err) => format!("errno {}", err.raw_os_error().unwrap_or(-1)),
        },
    );
    drop(filled);
    let mut rest = String::new();
    io::stdin().read_to_string(&mut rest)?;
    report("stdin_after", rest.trim());
    Ok(())
}

/// What `fill_pipes` left: the pipes (still full), and how it ended.
struct Filled {
    pipes: Vec<(Handle, Handle)>,
    bytes: usize,
    last_write: i32,
    error: i32,
}

fn fill_pipes(size: usize) -> Filled {
    let chunk = vec![0x5a; size];
    let mut filled = Filled {
        pipes: Vec::new(),
        bytes: 0,
        last_write: 0,
        error: 0,
    };
    filled.error = 'fill: loop {
        let (reader, writer) = match pipe() {
            Ok(ends) => ends,
            Err(err) => break code(&err),
        };
        let raw = writer.as_raw();
        filled.pipes.push((reader, writer));
        // Write to this pipe until a write fails or fills it (a partial
        // write, then `limit`, when host memory runs out).
        loop {
            // SAFETY: `chunk` is valid for reads of its length.
            let n = unsafe { sys::write(raw, chunk.as_ptr(), chunk.len()) };
            if n < 0 {
                break 'fill n;
            }
            filled.last_write = n;
            filled.bytes += n as usize;
            if n as usize == chunk.len() {
                break;
            }
        }
    };
    filled
}

/// A spawned process: argv\[1\] is its role (and maybe a number).
fn child(role: &str) {
    let mut words = role.split_whitespace();
    let name = words.next().unwrap_or("");
    let number: Option<usize> = words.next().and_then(|n| n.parse().ok());
    let result = match name {
        "sleeper" => {
            sleep(Duration::from_secs(60));
            Ok(())
        }
        "nest" => {
            // SAFETY: the parent passed the report pipe's write end as handle 0.
            let mut out = unsafe { Handle::from_raw(0) };
            let (count, error) = spawn_until_refused();
            out.write_all(format!("count {count}\nerror {error}\n").as_bytes())
        }
        "orphan-maker" => {
            for _ in 0..number.unwrap_or(0) {
                if let Err(err) = spawn("sleeper", Vec::new()) {
                    std::process::exit(100 + code(&err).unsigned_abs() as i32);
                }
            }
            std::process::exit(number.unwrap_or(0) as i32)
        }
        "orphan-parent" => {
            // Handle 0 is the connection. The grandchild gets it and the
            // read end of a pipe whose write end ends with this process.
            // SAFETY: the parent passed the connection as handle 0.
            let conn = unsafe { Handle::from_raw(0) };
            let (parent_gone, _held_until_exit) = match pipe() {
                Ok(ends) => ends,
                Err(_) => std::process::exit(1),
            };
            match spawn("orphan", vec![conn, parent_gone]) {
                Ok(_) => std::process::exit(0),
                Err(_) => std::process::exit(1),
            }
        }
        "orphan" => {
            // SAFETY: handle 1 is the pipe's read end, passed by the parent.
            let mut parent_gone = unsafe { Handle::from_raw(1) };
            let mut byte = [0];
            // End of stream: the parent, which held the write end, has ended.
            match parent_gone.read(&mut byte) {
                Ok(0) => connection().write_all(b"orphan alive\n"),
                Ok(_) => Ok(()),
                Err(err) => Err(err),
            }
        }
        _ => {
            eprintln!("unknown role {role:?}");
            std::process::exit(2)
        }
    };
    if let Err(err) = result {
        eprintln!("{role}: {err}");
        std::process::exit(1);
    }
}
