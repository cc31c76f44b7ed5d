//! loadgen: a loopback load generator for the mnvkd-host benchmarks.
//!
//!     loadgen echo    --addr A [--conns 50] [--secs 5] [--size 64]
//!     loadgen latency --addr A [--count 20000] [--size 16] [--warmup 1000] [--max-secs 60]
//!     loadgen accept  --addr A [--secs 5]
//!     loadgen hold    --addr A[,B…] [--conns 10000] [--no-wait] [--timeout-ms 5000] [--batch 100]
//!     loadgen first   --addr A --since NS [--timeout-ms 30000]
//!
//! Every result is one line of `key=value` pairs on stdout; progress and
//! errors go to stderr. Exit codes: 0 ok, 1 the run failed, 2 usage.
//!
//! - `echo`: one thread per connection, each doing write-then-read-exact
//!   round trips of `size` bytes for `secs`; total round trips/s and the
//!   latency percentiles over all samples.
//! - `latency`: one connection, sequential round trips; p50/p99/max.
//! - `accept`: sequential connect, write 1 byte, read its echo, close.
//! - `hold`: opens `conns` connections from one thread, sends 1 byte on each
//!   and (unless `--no-wait`) reads its echo, proving a process is up for
//!   each; prints `held=N`, then keeps them open until stdin has a line or
//!   closes. Connects `batch` at a time, then reads their echoes, so that no
//!   more than `batch` wait in the server's accept queue. Stops early, keeping
//!   what it holds, when the server stops answering. Connections round-robin over the comma-separated addresses
//!   (one destination has only as many ephemeral ports as
//!   `net.ipv4.ip_local_port_range` gives, 28 232 by default).
//! - `first`: the time from `since` (Unix time in ns, e.g. `date +%s%N` just
//!   before a server was launched) to the status line of the first `GET /`
//!   answered with 200; connects again every 0.2 ms while refused.

mod args;
mod stats;

use std::io::{self, BufRead, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use args::Args;
use stats::Samples;

const USAGE: &str = "usage:
  loadgen echo    --addr A [--conns 50] [--secs 5] [--size 64]
  loadgen latency --addr A [--count 20000] [--size 16] [--warmup 1000] [--max-secs 60]
  loadgen accept  --addr A [--secs 5]
  loadgen hold    --addr A[,B...] [--conns 10000] [--no-wait] [--timeout-ms 5000] [--batch 100]
  loadgen first   --addr A --since NS [--timeout-ms 30000]";

/// Connections `hold` opens before it checks their echoes: below the 128 a
/// Rust std listener's backlog holds, so no SYN is dropped (a dropped SYN
/// costs the client a 1 s retransmission timeout).
const HOLD_BATCH: usize = 100;
/// Pause after a connect that failed for want of a local port or buffer.
const CONNECT_PAUSE: Duration = Duration::from_millis(100);
/// Retries of such a connect before `hold` gives up.
const CONNECT_RETRIES: u32 = 50;
/// Pause of `first` between connects refused by a server still starting.
const FIRST_POLL: Duration = Duration::from_micros(200);

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1);
    let Some(command) = argv.next() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let args = match Args::parse(argv) {
        Ok(args) => args,
        Err(err) => {
            eprintln!("loadgen: {err}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match command.as_str() {
        "echo" => echo(&args),
        "latency" => latency(&args),
        "accept" => accept(&args),
        "hold" => hold(&args),
        "first" => first(&args),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => Err(Error::Usage(format!("unknown command `{other}`"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Usage(message)) => {
            eprintln!("loadgen: {message}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Error::Run(message)) => {
            eprintln!("loadgen: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Why a command failed.
#[derive(Debug)]
enum Error {
    /// Bad flags: exit status 2.
    Usage(String),
    /// The run itself failed: exit status 1.
    Run(String),
}

impl From<args::ArgError> for Error {
    fn from(err: args::ArgError) -> Self {
        Error::Usage(err.to_string())
    }
}

fn run_error(what: &str, err: io::Error) -> Error {
    Error::Run(format!("{what}: {err}"))
}

/// Connects with Nagle off, as an interactive client would.
fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One round trip: write `out`, read back exactly as many bytes into `back`.
fn round_trip(stream: &mut TcpStream, out: &[u8], back: &mut [u8]) -> io::Result<()> {
    stream.write_all(out)?;
    stream.read_exact(back)
}

fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// `echo`: many connections, one thread each, round trips for a fixed time.
fn echo(args: &Args) -> Result<(), Error> {
    args.only(&["addr", "conns", "secs", "size"])?;
    let addr = args.addr()?;
    let conns: usize = args.number("conns", 50)?;
    let secs: f64 = args.number("secs", 5.0)?;
    let size: usize = args.number("size", 64)?;
    if conns == 0 || size == 0 {
        return Err(Error::Usage("--conns and --size must be at least 1".into()));
    }
    let duration = Duration::from_secs_f64(secs);
    // Everyone connects and does one round trip (which starts its process)
    // before the clock starts; the main thread is the last to arrive.
    let start = Arc::new(Barrier::new(conns + 1));
    let mut threads = Vec::with_capacity(conns);
    for _ in 0..conns {
        let start = Arc::clone(&start);
        threads.push(thread::spawn(move || {
            echo_client(addr, size, duration, &start)
        }));
    }
    start.wait();
    let began = Instant::now();
    let mut samples = Samples::default();
    let mut errors = Vec::new();
    for thread in threads {
        let (mine, error) = thread.join().expect("an echo client thread panicked");
        samples.extend(mine);
        errors.extend(error);
    }
    let elapsed = began.elapsed().as_secs_f64();
    if let Some(first) = errors.first() {
        eprintln!(
            "loadgen: {} of {conns} connections failed; first: {first}",
            errors.len()
        );
    }
    if samples.is_empty() {
        return Err(Error::Run("no round trip completed".into()));
    }
    let summary = samples.summary();
    println!(
        "mode=echo addr={addr} conns={conns} size={size} secs={elapsed:.2} round_trips={} rps={:.0} p50_us={:.1} p99_us={:.1} max_us={:.1} errors={}",
        summary.count,
        summary.count as f64 / elapsed,
        summary.p50_us,
        summary.p99_us,
        summary.max_us,
        errors.len()
    );
    Ok(())
}

/// One `echo` connection; returns its latencies and the error that ended it, if any.
fn echo_client(
    addr: SocketAddr,
    size: usize,
    duration: Duration,
    start: &Barrier,
) -> (Samples, Option<String>) {
    let out = payload(size);
    let mut back = vec![0; size];
    let mut samples = Samples::default();
    let mut stream = match connect(addr).and_then(|mut s| {
        round_trip(&mut s, &out, &mut back)?;
        Ok(s)
    }) {
        Ok(stream) => stream,
        Err(err) => {
            start.wait();
            return (samples, Some(format!("connect: {err}")));
        }
    };
    start.wait();
    let deadline = Instant::now() + duration;
    loop {
        let began = Instant::now();
        if began >= deadline {
            return (samples, None);
        }
        if let Err(err) = round_trip(&mut stream, &out, &mut back) {
            return (samples, Some(err.to_string()));
        }
        samples.push(began.elapsed());
    }
}

/// `latency`: one connection, sequential round trips.
fn latency(args: &Args) -> Result<(), Error> {
    args.only(&["addr", "count", "size", "warmup", "max-secs"])?;
    let addr = args.addr()?;
    let count: usize = args.number("count", 20_000)?;
    let size: usize = args.number("size", 16)?;
    let warmup: usize = args.number("warmup", 1000)?;
    let max_secs: f64 = args.number("max-secs", 60.0)?;
    if count == 0 || size == 0 {
        return Err(Error::Usage("--count and --size must be at least 1".into()));
    }
    let out = payload(size);
    let mut back = vec![0; size];
    let mut stream = connect(addr).map_err(|err| run_error("connect", err))?;
    for _ in 0..warmup {
        round_trip(&mut stream, &out, &mut back).map_err(|err| run_error("warm-up", err))?;
    }
    let mut samples = Samples::with_capacity(count);
    let began = Instant::now();
    let deadline = began + Duration::from_secs_f64(max_secs);
    for _ in 0..count {
        let sent = Instant::now();
        if sent >= deadline {
            break;
        }
        round_trip(&mut stream, &out, &mut back).map_err(|err| run_error("round trip", err))?;
        samples.push(sent.elapsed());
    }
    let elapsed = began.elapsed().as_secs_f64();
    let summary = samples.summary();
    println!(
        "mode=latency addr={addr} size={size} count={} secs={elapsed:.2} p50_us={:.1} p90_us={:.1} p99_us={:.1} max_us={:.1} timed_out={}",
        summary.count,
        summary.p50_us,
        summary.p90_us,
        summary.p99_us,
        summary.max_us,
        summary.count < count
    );
    Ok(())
}

/// `accept`: sequential connect, 1-byte echo, close.
fn accept(args: &Args) -> Result<(), Error> {
    args.only(&["addr", "secs"])?;
    let addr = args.addr()?;
    let secs: f64 = args.number("secs", 5.0)?;
    let mut samples = Samples::default();
    let mut errors = 0u64;
    let mut first_error = None;
    let began = Instant::now();
    let deadline = began + Duration::from_secs_f64(secs);
    let mut byte = [0u8; 1];
    loop {
        let started = Instant::now();
        if started >= deadline {
            break;
        }
        let result = connect(addr).and_then(|mut stream| round_trip(&mut stream, b"x", &mut byte));
        match result {
            Ok(()) => samples.push(started.elapsed()),
            Err(err) => {
                errors += 1;
                first_error.get_or_insert_with(|| err.to_string());
                if errors > 1000 {
                    break;
                }
            }
        }
    }
    let elapsed = began.elapsed().as_secs_f64();
    if let Some(err) = &first_error {
        eprintln!("loadgen: {errors} connections failed; first: {err}");
    }
    if samples.is_empty() {
        return Err(Error::Run("no connection completed".into()));
    }
    let summary = samples.summary();
    println!(
        "mode=accept addr={addr} conns={} secs={elapsed:.2} conns_per_s={:.0} p50_us={:.1} p99_us={:.1} max_us={:.1} errors={errors}",
        summary.count,
        summary.count as f64 / elapsed,
        summary.p50_us,
        summary.p99_us,
        summary.max_us,
    );
    Ok(())
}

/// `first`: the time from a server's launch to its first 200 answer.
fn first(args: &Args) -> Result<(), Error> {
    args.only(&["addr", "since", "timeout-ms"])?;
    let addr = args.addr()?;
    let since: u64 = args.number("since", 0)?;
    if since == 0 {
        return Err(Error::Usage("--since NS is required".into()));
    }
    let since = UNIX_EPOCH + Duration::from_nanos(since);
    let timeout = Duration::from_millis(args.number("timeout-ms", 30_000)?);
    let deadline = Instant::now() + timeout;
    let mut refused = 0u64;
    let mut stream = loop {
        match connect(addr) {
            Ok(stream) => break stream,
            Err(err) if err.kind() == ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                refused += 1;
                thread::sleep(FIRST_POLL);
            }
            Err(err) => return Err(run_error(&format!("connect to {addr}"), err)),
        }
    };
    stream
        .set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .map_err(|err| run_error("set a read timeout", err))?;
    let status = status_line(&mut stream).map_err(|err| run_error("GET /", err))?;
    let ms = SystemTime::now()
        .duration_since(since)
        .map_err(|_| Error::Usage("--since is in the future".into()))?
        .as_secs_f64()
        * 1e3;
    if status.split(' ').nth(1) != Some("200") {
        return Err(Error::Run(format!("GET / answered {status:?}")));
    }
    println!("mode=first addr={addr} ms={ms:.1} refused={refused}");
    Ok(())
}

/// Sends `GET /` and returns the response's status line.
fn status_line(stream: &mut TcpStream) -> io::Result<String> {
    stream.write_all(b"GET / HTTP/1.1\r\nHost: loadgen\r\nConnection: close\r\n\r\n")?;
    let mut head = Vec::new();
    let mut buf = [0; 512];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                "closed before a status line",
            ));
        }
        head.extend_from_slice(&buf[..n]);
    }
    let end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(head.len());
    Ok(String::from_utf8_lossy(&head[..end]).into_owned())
}

/// `hold`: many idle connections from one thread, kept open until stdin says so.
fn hold(args: &Args) -> Result<(), Error> {
    args.only(&["addr", "conns", "no-wait", "timeout-ms", "batch"])?;
    let addrs = args.addrs()?;
    let wanted: usize = args.number("conns", 10_000)?;
    let wait_echo = !args.flag("no-wait")?;
    let timeout = Duration::from_millis(args.number("timeout-ms", 5000)?);
    let batch_size: usize = args.number("batch", HOLD_BATCH)?;
    if addrs.is_empty() || batch_size == 0 {
        return Err(Error::Usage("--batch must be at least 1".into()));
    }
    let began = Instant::now();
    let mut held: Vec<TcpStream> = Vec::with_capacity(wanted);
    let mut stopped = None;
    let mut batch = Vec::with_capacity(batch_size);
    let mut reported = 0;
    while held.len() + batch.len() < wanted && stopped.is_none() {
        let addr = addrs[(held.len() + batch.len()) % addrs.len()];
        match hold_connect(addr, timeout) {
            Ok(stream) => batch.push(stream),
            Err(err) => stopped = Some(format!("connect:{}", reason(&err))),
        }
        let full = batch.len() == batch_size || held.len() + batch.len() == wanted;
        if full || stopped.is_some() {
            let (confirmed, error) = confirm(&mut batch, wait_echo, timeout);
            held.extend(confirmed);
            if error.is_some() && stopped.is_none() {
                stopped = error;
            }
            if held.len() >= reported + 1000 || stopped.is_some() {
                reported = held.len();
                eprintln!("loadgen: hold: {reported} connections up");
            }
        }
    }
    // What was connected but never echoed is closed now; `held` counts only the proven.
    drop(batch);
    println!(
        "mode=hold wanted={wanted} held={} secs={:.2} waited_for_echo={wait_echo} stopped={}",
        held.len(),
        began.elapsed().as_secs_f64(),
        stopped.as_deref().unwrap_or("none")
    );
    io::stdout()
        .flush()
        .map_err(|err| run_error("stdout", err))?;
    // Hold until a line arrives or stdin closes.
    let mut line = String::new();
    let _ = io::stdin().lock().read_line(&mut line);
    let closing = Instant::now();
    let count = held.len();
    drop(held);
    println!(
        "mode=hold closed={count} close_secs={:.3}",
        closing.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Connects for `hold`, pausing and retrying while the machine is out of
/// local ports or buffers; sends the one byte.
fn hold_connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let mut tries = 0;
    let mut stream = loop {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => break stream,
            Err(err) if tries < CONNECT_RETRIES && transient(&err) => {
                tries += 1;
                thread::sleep(CONNECT_PAUSE);
            }
            Err(err) => return Err(err),
        }
    };
    stream.set_nodelay(true)?;
    stream.write_all(b"h")?;
    Ok(stream)
}

/// Errors worth a pause and another try: no free local port, no buffers.
fn transient(err: &io::Error) -> bool {
    matches!(err.kind(), ErrorKind::AddrNotAvailable | ErrorKind::Interrupted)
        // ENOBUFS (105) on Linux: momentarily out of socket buffers.
        || err.raw_os_error() == Some(105)
}

/// Reads the echo of each connection in `batch` (unless `!wait_echo`);
/// returns those that answered, and why the first one that did not failed.
/// After one failure the rest get only a short wait: the server is full.
fn confirm(
    batch: &mut Vec<TcpStream>,
    wait_echo: bool,
    timeout: Duration,
) -> (Vec<TcpStream>, Option<String>) {
    if !wait_echo {
        return (std::mem::take(batch), None);
    }
    let mut confirmed = Vec::with_capacity(batch.len());
    let mut unconfirmed = Vec::new();
    let mut error = None;
    for mut stream in batch.drain(..) {
        let wait = if error.is_some() {
            Duration::from_millis(20)
        } else {
            timeout
        };
        let mut byte = [0u8; 1];
        let result = stream
            .set_read_timeout(Some(wait))
            .and_then(|()| stream.read(&mut byte));
        match result {
            Ok(1) => confirmed.push(stream),
            Ok(_) => {
                error.get_or_insert_with(|| "eof".to_string());
                unconfirmed.push(stream);
            }
            Err(err) => {
                error.get_or_insert_with(|| format!("echo:{}", reason(&err)));
                unconfirmed.push(stream);
            }
        }
    }
    *batch = unconfirmed;
    (confirmed, error)
}

/// An error as one word for a `key=value` line.
fn reason(err: &io::Error) -> String {
    match err.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => "timeout".into(),
        ErrorKind::ConnectionRefused => "refused".into(),
        ErrorKind::ConnectionReset => "reset".into(),
        ErrorKind::AddrNotAvailable => "no-local-port".into(),
        _ => match err.raw_os_error() {
            Some(24) => "too-many-open-files".into(),
            Some(code) => format!("errno-{code}"),
            None => format!("{:?}", err.kind()).to_lowercase(),
        },
    }
}
