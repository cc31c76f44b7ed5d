//! A CGI guest for the host's tests: each path exercises one behaviour.
//!
//! - `/env`: the CGI environment (sorted `NAME=value` lines), then the body.
//! - `/sum`: reads the body in pieces and answers `bytes=N sum=S` (S = the
//!   wrapping sum of all bytes), so a large body never sits in memory.
//! - `/status/NNN`: answers with that status.
//! - `/big/N`: an N-byte body (`0123456789` repeated), streamed by the host.
//! - `/nohead`: output without a CGI head (the host answers 502).
//! - `/clock`: the wall clock in nanoseconds since 1970, to order requests
//!   that ran one after another.
//! - `/trap`: traps (502); `/spin`: computes forever (504 past the CPU budget).
//! - `/sleep/MS`: sleeps MS milliseconds (blocked, using no CPU), then `slept`.
//! - `/busy/MS`: computes for MS milliseconds without blocking, then `busy`.
//! - `/partial`: a head and 100 KiB of body (so the host streams it), then
//!   sleeps for an hour: a response cut short by the host's `request_timeout`.
//! - anything else: `hello`.

use std::io::{self, Read, Write};

fn main() -> io::Result<()> {
    let path = std::env::var("PATH_INFO").unwrap_or_default();
    if path == "/sum" {
        return sum();
    }
    let mut body = Vec::new();
    io::stdin().read_to_end(&mut body)?;
    let mut out = io::stdout().lock();
    if path == "/env" {
        let mut vars: Vec<(String, String)> = std::env::vars().collect();
        vars.sort();
        write!(out, "Content-Type: text/plain\r\n\r\n")?;
        for (name, value) in vars {
            writeln!(out, "{name}={value}")?;
        }
        writeln!(out, "BODY-LENGTH={}", body.len())?;
        out.write_all(&body)?;
    } else if let Some(code) = path.strip_prefix("/status/") {
        write!(
            out,
            "Status: {code}\r\nContent-Type: text/plain\r\n\r\nstatus {code}\n"
        )?;
    } else if let Some(n) = path.strip_prefix("/big/") {
        let n: usize = n.parse().unwrap_or(0);
        write!(out, "Content-Type: application/octet-stream\r\n\r\n")?;
        let pattern = b"0123456789".repeat(1024);
        let mut left = n;
        while left > 0 {
            let take = left.min(pattern.len());
            out.write_all(&pattern[..take])?;
            left -= take;
        }
    } else if path == "/clock" {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        write!(out, "Content-Type: text/plain\r\n\r\n{now}\n")?;
    } else if let Some(ms) = path.strip_prefix("/busy/") {
        let until =
            std::time::Instant::now() + std::time::Duration::from_millis(ms.parse().unwrap_or(0));
        while std::time::Instant::now() < until {
            std::hint::spin_loop();
        }
        write!(out, "Content-Type: text/plain\r\n\r\nbusy\n")?;
    } else if let Some(ms) = path.strip_prefix("/sleep/") {
        std::thread::sleep(std::time::Duration::from_millis(ms.parse().unwrap_or(0)));
        write!(out, "Content-Type: text/plain\r\n\r\nslept\n")?;
    } else if path == "/partial" {
        write!(out, "Content-Type: application/octet-stream\r\n\r\n")?;
        out.write_all(&[b'p'; 100 * 1024])?;
        out.flush()?;
        std::thread::sleep(std::time::Duration::from_secs(3600));
    } else if path == "/nohead" {
        writeln!(out, "just a body, no head")?;
    } else if path == "/trap" {
        out.flush()?;
        trap_on_purpose();
    } else if path == "/spin" {
        let mut x = 0u64;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    } else {
        write!(out, "Content-Type: text/plain\r\n\r\nhello\n")?;
    }
    out.flush()
}

fn sum() -> io::Result<()> {
    let (mut bytes, mut sum) = (0u64, 0u64);
    let mut buf = vec![0; 64 * 1024];
    let mut stdin = io::stdin().lock();
    loop {
        let n = stdin.read(&mut buf)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        sum = buf[..n]
            .iter()
            .fold(sum, |s, &b| s.wrapping_add(u64::from(b)));
    }
    print!("Content-Type: text/plain\r\n\r\nbytes={bytes} sum={sum}\n");
    Ok(())
}

#[inline(never)]
fn trap_on_purpose() -> ! {
    core::arch::wasm32::unreachable()
}
