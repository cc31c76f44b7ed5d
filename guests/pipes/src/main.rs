//! Pipes: scenarios for the host's end-to-end tests of `pipe`, `spawn`,
//! `wait`, `poll`, `sleep`, `connect` and `accept`.
//!
//! Per connection, the process reads one command line (`<scenario> [arg]`),
//! runs the scenario and writes its results as `key value` lines, then ends
//! (so the client sees end of stream). An unknown command gets
//! `error unknown-command`. Error codes are the raw `mnvkd` codes (`-4` for
//! `pipe`, `-6` for `limit`, …).
//!
//! | command | result lines |
//! | --- | --- |
//! | `order [n]` (100000) | `sent n`, `received n`, `checksum c`, `in_order true`, `expected c`, `status 0` |
//! | `eof` | `data 5`, `read 0`, `read_after_exit 0`, `holder_status 0` |
//! | `epipe` | `revents 6` (writable + hang-up), `write -4` |
//! | `backpressure [n]` (1 MiB) | `accepted 62464` (the 64 KiB buffer less the last 4 KiB: a pipe is writable only with 4 KiB free), `poll 0` |
//! | `wait` | `status 7` |
//! | `killed` | `status 256` |
//! | `childpoll` | `poll_now 0`, `poll 1`, `revents 1`, `status 3` |
//! | `sleep [ms]` (200) | `elapsed_ms <ms or more>`, `done true` |
//! | `spawnbomb [keep]` | `count n`, `error -6` |
//! | `handlebomb` | `pipes n`, `error -6` |
//! | `polltimeout [ms]` (50) | `poll 0`, `revents 0`, `elapsed_ms <ms or more>` |
//! | `pollinvalid` | `poll 2`, `revents 8,8` |
//! | `badspawn` | `twice -3`, `closed -1`, `wait_not_child -1` |
//! | `connect <addr>` | `connect <handle or code>` (`-7`: not in `allow_outbound`) |
//! | `accept` | `accept -1` (handle 0 is a connection, not a listener) |
//! | `halfclose` (then shut down writing) | `read 0`, `poll 0`, `revents 0`, `elapsed_ms <300 or more>` |
//! | `trypipe` | see below |
//! | `readwithin` | see below |
//! | `blockedwrite` | `wrote 65536`, `write -4`, `status 0` |
//! | `handoff` | see below |
//! | `stdioleak` | see below |
//!
//! `trypipe` drives `try-read`, `try-write`, `read` and `write` on pipe
//! ends with raw calls, hostile ones among them, and reports each result
//! (a count or an error code): `empty -9`, `write 3`, `read 2 ab`,
//! `read 1 c`, `write_fault -2`, `write_wrap -2`, `read_fault -2`,
//! `kept 1 x`, `read_blocking_fault -2`, `write_blocking_fault -2`,
//! `read_on_write_end -1`, `write_on_read_end -1`, `closed -1`, `fill 65536`,
//! `full -9`, `drain 65536`, `eof_data 1 y`, `eof 0`, `broken -4`.
//!
//! `readwithin` drives `read-within` on pipe ends, and `try-accept` on
//! the connection: `empty -8` (timed out after 20 ms: `waited_ms <20 or
//! more>`), `look -8` (timeout 0), `read 2 ab`, `fault -2`, `badf -1`,
//! `eof 0` (no limit, the writer gone), `try_accept -1` (handle 0 is a
//! connection).
//!
//! `blockedwrite` writes 128 KiB into a pipe whose reader (a child) takes
//! 10 bytes and exits: the write blocks once the 64 KiB buffer is full,
//! and the reader's exit ends it with `pipe`.
//!
//! `handoff` moves the connection to a child and the parent waits for it,
//! then lingers 1 s: the child writes `stdout yes` through WASI stdout,
//! reads one line through WASI stdin and answers `stdin <line>` through
//! layer-1 handle 0, then exits without closing: the client should see end
//! of stream as soon as the child has ended, not when the parent does.
//!
//! `stdioleak` moves the connection to a child that holds it 50 ms and
//! exits; meanwhile the parent writes `leak parent-stdout` to its own WASI
//! stdout, then lingers 200 ms. The connection was moved, so the client
//! should get no bytes, and end of stream after about 50 ms.
//!
//! Children are processes of this same module; argv\[1\] (see
//! [`mnvkd_guest::arg`]) names the role they play.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mnvkd_guest::{
    arg, connection, pipe, poll, sleep, spawn, sys, Child, Errno, Handle, Listener, PollFd,
};

/// Byte `i` of the `order` stream.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

fn main() {
    match arg().as_deref() {
        None => serve(),
        Some(role) => child(role),
    }
}

/// The process the host started for a connection: one command, then end.
fn serve() {
    let line = read_command();
    let mut words = line.split_whitespace();
    let command = words.next().unwrap_or("");
    let param = words.next();
    let number = |default: usize| param.and_then(|p| p.parse().ok()).unwrap_or(default);
    let result = match command {
        "order" => order(number(100_000)),
        "eof" => eof(),
        "epipe" => epipe(),
        "backpressure" => backpressure(number(1 << 20)),
        "wait" => wait_for("exit7"),
        "killed" => wait_for("trap"),
        "childpoll" => child_poll(),
        "sleep" => sleep_for(number(200)),
        "spawnbomb" => spawn_bomb(param == Some("keep")),
        "handlebomb" => handle_bomb(),
        "polltimeout" => poll_timeout(number(50)),
        "pollinvalid" => poll_invalid(),
        "watch" => watch(),
        "badspawn" => bad_spawn(),
        "connect" => connect(param.unwrap_or("")),
        "accept" => {
            report("accept", result_code(Listener::get().accept()));
            Ok(())
        }
        "halfclose" => half_close(),
        "handoff" => handoff(),
        "stdioleak" => stdio_leak(),
        "trypipe" => try_pipe(),
        "readwithin" => read_within(),
        "blockedwrite" => blocked_write(),
        _ => {
            report("error", "unknown-command");
            Ok(())
        }
    };
    if let Err(err) = result {
        report("error", code(&err));
    }
}

/// Reads the command line one byte at a time, so that nothing after it is
/// consumed (`handoff` passes the rest of the stream to a child).
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

/// Writes `key value` as one line to the connection, or ends the process.
fn report(key: &str, value: impl std::fmt::Display) {
    if connection()
        .write_all(format!("{key} {value}\n").as_bytes())
        .is_err()
    {
        std::process::exit(1);
    }
}

/// The `mnvkd` error code inside `err` (or `io`'s if it carries none).
fn code(err: &io::Error) -> i32 {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<Errno>())
        .map_or(sys::IO, |errno| errno.code())
}

/// A handle's number, or the error's code.
fn result_code(result: io::Result<Handle>) -> i32 {
    match result {
        Ok(handle) => handle.as_raw(),
        Err(err) => code(&err),
    }
}

/// FNV-1a (32 bits) of a byte stream, fed in pieces.
struct Fnv(u32);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0x811c_9dc5)
    }

    fn update(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u32::from(byte)).wrapping_mul(0x0100_0193);
        }
    }
}

/// `order`: `n` bytes through a pipe to a child, written in odd-sized
/// pieces (some larger than the pipe's buffer); the child reports what it
/// got through a second pipe.
fn order(n: usize) -> io::Result<()> {
    let (data_read, mut data_write) = pipe()?;
    let (mut report_read, report_write) = pipe()?;
    let child = spawn("order-reader", vec![data_read, report_write])?;
    let mut expected = Fnv::new();
    let sizes = [1, 13, 4096, 65_537, 999, 100_000];
    let (mut sent, mut turn) = (0, 0);
    while sent < n {
        let len = sizes[turn % sizes.len()].min(n - sent);
        let chunk: Vec<u8> = (sent..sent + len).map(pattern).collect();
        data_write.write_all(&chunk)?;
        expected.update(&chunk);
        sent += len;
        turn += 1;
    }
    drop(data_write);
    let mut reply = String::new();
    report_read.read_to_string(&mut reply)?;
    report("sent", sent);
    connection().write_all(reply.as_bytes())?;
    report("expected", expected.0);
    report("status", child.wait()?.into_raw());
    Ok(())
}

/// The `order` child: handle 0 is the data, handle 1 the report pipe.
fn order_reader() -> io::Result<()> {
    // SAFETY: the parent passed these two handles; nothing else owns them.
    let (mut data, mut out) = unsafe { (Handle::from_raw(0), Handle::from_raw(1)) };
    let (mut received, mut in_order, mut sum) = (0, true, Fnv::new());
    let mut buf = vec![0; 8192];
    loop {
        let n = data.read(&mut buf)?;
        if n == 0 {
            break;
        }
        in_order &= buf[..n]
            .iter()
            .enumerate()
            .all(|(i, &byte)| byte == pattern(received + i));
        sum.update(&buf[..n]);
        received += n;
    }
    let text = format!(
        "received {received}\nchecksum {}\nin_order {in_order}\n",
        sum.0
    );
    out.write_all(text.as_bytes())
}

/// `eof`: end of stream once the write end is closed, here and by a child
/// that exits while this process is blocked in `read`.
fn eof() -> io::Result<()> {
    let (mut reader, mut writer) = pipe()?;
    writer.write_all(b"hello")?;
    writer.close()?;
    let mut buf = [0; 16];
    report("data", reader.read(&mut buf)?);
    report("read", reader.read(&mut buf)?);

    let (mut reader, writer) = pipe()?;
    let holder = spawn("holder", vec![writer])?;
    report("read_after_exit", reader.read(&mut buf)?);
    report("holder_status", holder.wait()?.into_raw());
    Ok(())
}

/// `epipe`: writing after the read end is closed.
fn epipe() -> io::Result<()> {
    let (reader, mut writer) = pipe()?;
    reader.close()?;
    let mut fds = [PollFd::new(writer.as_raw(), PollFd::WRITABLE)];
    poll(&mut fds, Some(Duration::ZERO))?;
    report("revents", fds[0].revents);
    let result = writer.write(b"x");
    report("write", result.map_or_else(|err| code(&err), |n| n as i32));
    Ok(())
}

/// `backpressure`: write up to `total` bytes into a pipe nobody reads, each
/// 1 KiB only after `poll` (100 ms) says writable. With the default 64 KiB
/// buffer every piece fits whole, so no write blocks.
fn backpressure(total: usize) -> io::Result<()> {
    let (_reader, mut writer) = pipe()?;
    let chunk = [0x5a; 1024];
    let mut accepted = 0;
    let mut ready = 0;
    while accepted < total {
        let mut fds = [PollFd::new(writer.as_raw(), PollFd::WRITABLE)];
        ready = poll(&mut fds, Some(Duration::from_millis(100)))?;
        if ready == 0 {
            break;
        }
        let len = chunk.len().min(total - accepted);
        writer.write_all(&chunk[..len])?;
        accepted += len;
    }
    report("accepted", accepted);
    report("poll", ready);
    Ok(())
}

/// `wait` and `killed`: the status of a child playing `role`.
fn wait_for(role: &str) -> io::Result<()> {
    let status = spawn(role, Vec::new())?.wait()?;
    report("status", status.into_raw());
    Ok(())
}

/// `childpoll`: a child handle becomes readable when the child ends.
fn child_poll() -> io::Result<()> {
    let child = spawn("exit3-later", Vec::new())?;
    let mut fds = [PollFd::new(child.as_raw(), PollFd::READABLE)];
    report("poll_now", poll(&mut fds, Some(Duration::ZERO))?);
    report("poll", poll(&mut fds, Some(Duration::from_secs(5)))?);
    report("revents", fds[0].revents);
    report("status", child.wait()?.into_raw());
    Ok(())
}

/// `sleep`: sleeps `ms` and says how long it took.
fn sleep_for(ms: usize) -> io::Result<()> {
    let start = Instant::now();
    sleep(Duration::from_millis(ms as u64));
    report("elapsed_ms", start.elapsed().as_millis());
    report("done", true);
    Ok(())
}

/// `spawnbomb`: spawns children that sleep 2 s until `spawn` fails. They are
/// detached at once, or with `keep` kept (then the handle limit may be hit
/// first). Stops at 100000 (`error none`).
fn spawn_bomb(keep: bool) -> io::Result<()> {
    let mut kept: Vec<Child> = Vec::new();
    let mut count = 0;
    let error = loop {
        if count == 100_000 {
            break "none".to_owned();
        }
        match spawn("sleeper", Vec::new()) {
            Ok(child) if keep => kept.push(child),
            Ok(_detached) => {}
            Err(err) => break code(&err).to_string(),
        }
        count += 1;
    };
    report("count", count);
    report("error", error);
    Ok(())
}

/// `handlebomb`: creates pipes until `pipe` fails, then closes them all.
fn handle_bomb() -> io::Result<()> {
    let mut pipes = Vec::new();
    let error = loop {
        match pipe() {
            Ok(ends) => pipes.push(ends),
            Err(err) => break code(&err),
        }
    };
    report("pipes", pipes.len());
    report("error", error);
    Ok(())
}

/// `polltimeout`: polls a pipe nobody writes.
fn poll_timeout(ms: usize) -> io::Result<()> {
    let (reader, _writer) = pipe()?;
    let mut fds = [PollFd::new(reader.as_raw(), PollFd::READABLE)];
    let start = Instant::now();
    report(
        "poll",
        poll(&mut fds, Some(Duration::from_millis(ms as u64)))?,
    );
    report("revents", fds[0].revents);
    report("elapsed_ms", start.elapsed().as_millis());
    Ok(())
}

/// `pollinvalid`: handles that are not open are reported at once.
fn poll_invalid() -> io::Result<()> {
    let mut fds = [
        PollFd::new(999, PollFd::READABLE),
        PollFd::new(-1, PollFd::READABLE | PollFd::WRITABLE),
    ];
    report("poll", poll(&mut fds, None)?);
    report("revents", format!("{},{}", fds[0].revents, fds[1].revents));
    Ok(())
}

/// One `watch` call: arms or disarms per `changes`, waits up to
/// `timeout_ms`; returns the count (or code) and the reports.
fn watch_call(changes: &[PollFd], timeout_ms: i32) -> (i32, Vec<PollFd>) {
    let mut ready = [PollFd::default(); 8];
    // SAFETY: both buffers are valid for their lengths.
    let n = unsafe {
        sys::watch(
            changes.as_ptr(),
            changes.len(),
            ready.as_mut_ptr(),
            ready.len(),
            timeout_ms,
        )
    };
    (n, ready[..n.max(0) as usize].to_vec())
}

/// A report as `handle/events/revents`, the handle named by `names`.
fn watch_reports(reports: &[PollFd], names: &[(i32, &str)]) -> String {
    let name = |handle| {
        names
            .iter()
            .find(|(h, _)| *h == handle)
            .map_or(handle.to_string(), |(_, name)| (*name).to_owned())
    };
    let reports: Vec<String> = reports
        .iter()
        .map(|r| format!("{}/{}/{}", name(r.handle), r.events, r.revents))
        .collect();
    reports.join(",")
}

/// `watch`: the interest set, step by step (see tests/coroutines.rs).
fn watch() -> io::Result<()> {
    let (reader, mut writer) = pipe()?;
    let (r, w) = (reader.as_raw(), writer.as_raw());
    let names = [(r, "r"), (w, "w"), (999, "999")];
    let step = |key: &str, (n, reports): (i32, Vec<PollFd>)| {
        report(key, format!("{n} {}", watch_reports(&reports, &names)));
    };
    // Armed, nothing to read: a look finds nothing.
    step("empty", watch_call(&[PollFd::new(r, PollFd::READABLE)], 0));
    // A byte arrives: reported, with the armed events.
    writer.write_all(b"x")?;
    step("ready", watch_call(&[], -1));
    // Reported once: disarmed, though the byte is still there.
    step("oneshot", watch_call(&[], 0));
    // Armed again with the byte there: reported at once.
    step(
        "rearmed",
        watch_call(&[PollFd::new(r, PollFd::READABLE)], 0),
    );
    // Disarmed before it could be looked at: nothing.
    let changes = [PollFd::new(r, PollFd::READABLE), PollFd::new(r, 0)];
    step("disarmed", watch_call(&changes, 0));
    // The writer has room.
    step(
        "writable",
        watch_call(&[PollFd::new(w, PollFd::WRITABLE)], 0),
    );
    // A handle that is not open is reported at once.
    step(
        "notopen",
        watch_call(&[PollFd::new(999, PollFd::READABLE)], 0),
    );
    // Many armed, a few ready: only those are reported.
    let mut pipes = Vec::new();
    for _ in 0..100 {
        pipes.push(pipe()?);
    }
    let arm: Vec<PollFd> = pipes
        .iter()
        .map(|(reader, _)| PollFd::new(reader.as_raw(), PollFd::READABLE))
        .collect();
    step("many_armed", watch_call(&arm, 0));
    for i in [7, 42, 99] {
        (&pipes[i].1).write_all(b"y")?;
    }
    let (n, reports) = watch_call(&[], -1);
    let mut got: Vec<usize> = reports
        .iter()
        .filter_map(|r| {
            pipes
                .iter()
                .position(|(reader, _)| reader.as_raw() == r.handle)
        })
        .collect();
    // The three may come in one call or several.
    let mut calls = 1;
    while got.len() < 3 && calls < 10 {
        let (_, more) = watch_call(&[], 100);
        got.extend(more.iter().filter_map(|r| {
            pipes
                .iter()
                .position(|(reader, _)| reader.as_raw() == r.handle)
        }));
        calls += 1;
    }
    got.sort_unstable();
    report("many_ready", format!("{} {got:?}", n > 0));
    // A handle closed while armed is reported invalid.
    drop(reader); // `r` is free for the next handle
    let (unread, _unread_writer) = pipe()?;
    let armed = [PollFd::new(unread.as_raw(), PollFd::READABLE)];
    step("armclose", watch_call(&armed, 0));
    drop(unread);
    step("closed", watch_call(&[], 0));
    // Nobody writes: the timeout passes.
    let (quiet, _quiet_writer) = pipe()?;
    let start = Instant::now();
    let (n, _) = watch_call(&[PollFd::new(quiet.as_raw(), PollFd::READABLE)], 50);
    report("timeout", n);
    report("elapsed_ms", start.elapsed().as_millis());
    // Bad calls change nothing.
    let mut ready = [PollFd::default(); 1];
    let bad_bit = [PollFd::new(quiet.as_raw(), 0x20)];
    // SAFETY: the buffers are valid for their lengths; the last call passes
    // a pointer past the heap on purpose (the host must answer `fault`).
    let codes = unsafe {
        [
            sys::watch(bad_bit.as_ptr(), 1, ready.as_mut_ptr(), 1, 0),
            sys::watch(bad_bit.as_ptr(), 0, ready.as_mut_ptr(), 0, 0),
            sys::watch(bad_bit.as_ptr(), 0, usize::MAX as *mut PollFd, 1, 0),
        ]
    };
    report("bad", format!("{codes:?}"));
    Ok(())
}

/// `badspawn`: `spawn` refuses a handle listed twice or not open, and
/// `wait` a handle that is not a child; nothing is moved.
fn bad_spawn() -> io::Result<()> {
    let (_reader, writer) = pipe()?;
    let arg = "exit7";
    let try_spawn = |handles: &[i32]| {
        // SAFETY: the buffers are valid for reads of their lengths.
        unsafe { sys::spawn(arg.as_ptr(), arg.len(), handles.as_ptr(), handles.len()) }
    };
    let w = writer.as_raw();
    report("twice", try_spawn(&[w, w]));
    report("closed", try_spawn(&[w + 100]));
    // SAFETY: handle 0 is the connection; `wait` on it fails without closing it.
    report("wait_not_child", unsafe { sys::wait(0) });
    Ok(())
}

/// `halfclose`: the client shuts down its writing after the command; the
/// connection then reads end of stream, and a `poll` that asks for no event
/// on it should time out (300 ms): a half-close is not a hang-up, the
/// client still reads.
fn half_close() -> io::Result<()> {
    let mut buf = [0; 64];
    report("read", connection().read(&mut buf)?);
    let mut fds = [PollFd::new(0, 0)];
    let start = Instant::now();
    report("poll", poll(&mut fds, Some(Duration::from_millis(300)))?);
    report("revents", fds[0].revents);
    report("elapsed_ms", start.elapsed().as_millis());
    Ok(())
}

/// `connect <addr>`: the handle, or the code.
fn connect(addr: &str) -> io::Result<()> {
    report("connect", result_code(mnvkd_guest::connect(addr)));
    Ok(())
}

/// `handoff`: moves the connection to a child; see the module doc.
fn handoff() -> io::Result<()> {
    // SAFETY: handle 0 is this process's connection; it is moved to the child.
    let conn = unsafe { Handle::from_raw(0) };
    let child = spawn("handoff", vec![conn])?;
    let status = child.wait()?;
    eprintln!("handoff child ended: {status}");
    sleep(Duration::from_secs(1));
    Ok(())
}

/// `stdioleak`: after handle 0 is moved, this process's WASI stdout should
/// no longer reach the connection; see the module doc.
fn stdio_leak() -> io::Result<()> {
    // SAFETY: handle 0 is this process's connection; it is moved to the child.
    let conn = unsafe { Handle::from_raw(0) };
    let holder = spawn("holder", vec![conn])?;
    let mut stdout = io::stdout();
    let _ = stdout
        .write_all(b"leak parent-stdout\n")
        .and_then(|()| stdout.flush());
    let _ = holder.wait();
    sleep(Duration::from_millis(200));
    Ok(())
}

/// The `handoff` child: handle 0 (and so WASI stdin and stdout) is the
/// connection.
fn handoff_child() -> io::Result<()> {
    println!("stdout yes");
    io::stdout().flush()?;
    let mut line = String::new();
    io::stdin().read_line(&mut line)?;
    connection().write_all(format!("stdin {}\n", line.trim_end()).as_bytes())
}

/// `trypipe`: the non-blocking imports on pipe ends, and the hostile
/// calls (buffers outside the micro-heap, the wrong end, a closed handle,
/// a closed peer) that must get an error code, never a trap or a hang.
fn try_pipe() -> io::Result<()> {
    let (reader, writer) = pipe()?;
    let (r, w) = (reader.as_raw(), writer.as_raw());
    let mut buf = [0u8; 4];
    // SAFETY (every call below): the host checks each buffer against the
    // micro-heap; valid ones are local arrays of the length passed.
    let read_now = |buf: &mut [u8]| unsafe { sys::try_read(r, buf.as_mut_ptr(), buf.len()) };
    let text = |buf: &[u8], n: i32| String::from_utf8_lossy(&buf[..n.max(0) as usize]).into_owned();
    report("empty", read_now(&mut buf));
    report("write", unsafe { sys::try_write(w, b"abc".as_ptr(), 3) });
    let n = read_now(&mut buf[..2]);
    report("read", format!("{n} {}", text(&buf, n)));
    let n = read_now(&mut buf);
    report("read", format!("{n} {}", text(&buf, n)));
    let outside = 0xffff_fff0usize as *const u8;
    report("write_fault", unsafe { sys::try_write(w, outside, 64) });
    report("write_wrap", unsafe {
        sys::try_write(w, std::ptr::without_provenance(1), usize::MAX)
    });
    unsafe { sys::try_write(w, b"x".as_ptr(), 1) };
    report("read_fault", unsafe {
        sys::try_read(r, outside as *mut u8, 64)
    });
    let n = read_now(&mut buf);
    report("kept", format!("{n} {}", text(&buf, n)));
    // The blocking imports check the buffer before they wait.
    report("read_blocking_fault", unsafe {
        sys::read(r, outside as *mut u8, 64)
    });
    report("write_blocking_fault", unsafe {
        sys::write(w, outside, 64)
    });
    report("read_on_write_end", unsafe {
        sys::try_read(w, buf.as_mut_ptr(), 4)
    });
    report("write_on_read_end", unsafe {
        sys::try_write(r, b"z".as_ptr(), 1)
    });
    report("closed", unsafe { sys::try_read(900, buf.as_mut_ptr(), 4) });
    let big = vec![7u8; 128 << 10];
    report("fill", unsafe {
        sys::try_write(w, big.as_ptr(), big.len())
    });
    report("full", unsafe { sys::try_write(w, b"z".as_ptr(), 1) });
    let mut sink = vec![0u8; 128 << 10];
    report("drain", read_now(&mut sink));
    unsafe { sys::try_write(w, b"y".as_ptr(), 1) };
    drop(writer);
    let n = read_now(&mut buf);
    report("eof_data", format!("{n} {}", text(&buf, n)));
    report("eof", read_now(&mut buf));
    let (reader, writer) = pipe()?;
    drop(reader);
    report("broken", unsafe {
        sys::try_write(writer.as_raw(), b"z".as_ptr(), 1)
    });
    Ok(())
}

/// `readwithin`: `read-within` times out, reads, refuses hostile calls and
/// sees end of stream; `try-accept` refuses a connection.
fn read_within() -> io::Result<()> {
    let (reader, writer) = pipe()?;
    let (r, w) = (reader.as_raw(), writer.as_raw());
    let mut buf = [0u8; 4];
    // SAFETY (every call below): the host checks each buffer against the
    // micro-heap; valid ones are local arrays of the length passed.
    let read =
        |buf: &mut [u8], ms: i32| unsafe { sys::read_within(r, buf.as_mut_ptr(), buf.len(), ms) };
    let start = Instant::now();
    report("empty", read(&mut buf, 20));
    report("waited_ms", start.elapsed().as_millis());
    report("look", read(&mut buf, 0));
    unsafe { sys::try_write(w, b"ab".as_ptr(), 2) };
    let n = read(&mut buf, 1000);
    report(
        "read",
        format!("{n} {}", String::from_utf8_lossy(&buf[..n.max(0) as usize])),
    );
    let outside = 0xffff_fff0usize as *mut u8;
    report("fault", unsafe { sys::read_within(r, outside, 64, 1000) });
    report("badf", unsafe {
        sys::read_within(w, buf.as_mut_ptr(), 4, 1000)
    });
    drop(writer);
    report("eof", read(&mut buf, -1));
    report("try_accept", unsafe { sys::try_accept(0) });
    Ok(())
}

/// `blockedwrite`: a writer blocked on a full pipe gets `pipe` when the
/// reader exits.
fn blocked_write() -> io::Result<()> {
    let (reader, mut writer) = pipe()?;
    let child = spawn("take10", vec![reader])?;
    let big = vec![7u8; 128 << 10];
    // SAFETY: `big` is valid for reads of its length.
    report("wrote", unsafe {
        sys::try_write(writer.as_raw(), big.as_ptr(), big.len())
    });
    let result = writer.write_all(&big);
    report("write", result.map_or_else(|err| code(&err), |()| 0));
    report("status", child.wait()?.into_raw());
    Ok(())
}

/// The `blockedwrite` child: reads 10 bytes from handle 0, then exits.
fn take10() -> io::Result<()> {
    // SAFETY: the parent passed handle 0; nothing else owns it.
    let mut data = unsafe { Handle::from_raw(0) };
    data.read_exact(&mut [0; 10])
}

/// A spawned process: argv\[1\] is its role.
fn child(role: &str) {
    let result = match role {
        "order-reader" => order_reader(),
        "exit7" => std::process::exit(7),
        "exit3-later" => {
            sleep(Duration::from_millis(50));
            std::process::exit(3)
        }
        "trap" => std::process::abort(),
        "sleeper" => {
            sleep(Duration::from_secs(2));
            Ok(())
        }
        "holder" => {
            // Holds the write end (handle 0) until it exits.
            sleep(Duration::from_millis(50));
            Ok(())
        }
        "handoff" => handoff_child(),
        "take10" => take10(),
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
