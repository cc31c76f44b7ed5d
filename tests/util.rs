//! Helpers for driving the real `mnvkd-host` binary: guest paths, temp dirs,
//! a `serve` child that is killed on drop, one-shot commands with a deadline,
//! and socket round trips that fail instead of hanging.

use std::collections::{BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::fmt::Debug;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// How long anything may take before a test gives up. Only a bound against
/// hangs on a slow, busy machine; no test asserts on timing.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A `Vec<OsString>` of command-line arguments from `&str`s, `PathBuf`s, ….
macro_rules! args {
    ($($arg:expr),* $(,)?) => {
        // `Vec::from` rather than `vec!`: many uses only borrow the list.
        ::std::vec::Vec::<::std::ffi::OsString>::from([$(::std::ffi::OsString::from(&$arg)),*])
    };
}

/// Asserts that two byte strings are equal; on failure reports the lengths
/// and the first differing offset instead of dumping both.
#[track_caller]
pub fn assert_bytes_eq(what: &str, expected: &[u8], got: &[u8]) {
    if expected == got {
        return;
    }
    let first = expected
        .iter()
        .zip(got)
        .position(|(e, g)| e != g)
        .unwrap_or(expected.len().min(got.len()));
    let window = |bytes: &[u8]| bytes[first..bytes.len().min(first + 16)].to_vec();
    panic!(
        "{what}: expected {} bytes, got {}; first difference at offset {first}: \
         expected {:?}…, got {:?}…",
        expected.len(),
        got.len(),
        window(expected),
        window(got),
    );
}

/// Asserts that two sets are equal; on failure lists what each side lacks.
#[track_caller]
pub fn assert_set_eq<T: Ord + Debug>(what: &str, expected: &BTreeSet<T>, got: &BTreeSet<T>) {
    let missing: Vec<_> = expected.difference(got).collect();
    let unexpected: Vec<_> = got.difference(expected).collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "{what} differ\n- expected but missing: {missing:#?}\n+ present but unexpected: {unexpected:#?}"
    );
}

/// The `mnvkd-host` executable under test.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_mnvkd-host"))
}

/// The repository root (the host crate's parent directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the host crate has a parent directory")
        .to_path_buf()
}

/// The built example guest `guests/<name>.wasm`.
///
/// # Panics
/// When it has not been built.
pub fn guest(name: &str) -> PathBuf {
    let path = repo_root().join("guests").join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "guests/{name}.wasm is missing: run scripts/build-guests"
    );
    path
}

/// `guests/<wasm>.wasm` copied into `dir` as `<name>.wasm` with `manifest`
/// beside it; returns the copy's path.
pub fn app_with_manifest(dir: &TempDir, wasm: &str, name: &str, manifest: &str) -> PathBuf {
    let bytes = std::fs::read(guest(wasm)).expect("failed to read the guest");
    dir.write(&format!("{name}.toml"), manifest);
    dir.write(&format!("{name}.wasm"), bytes)
}

/// A fresh directory for one test, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `mnvkd-e2e-<pid>-<n>` under the system temp dir.
    pub fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("mnvkd-e2e-{}-{n}", std::process::id()));
        // A leftover from an earlier run with the same pid is stale.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|err| panic!("failed to create `{}`: {err}", path.display()));
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `name` inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes `contents` to `name` inside the directory and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(name);
        std::fs::write(&path, contents)
            .unwrap_or_else(|err| panic!("failed to write `{}`: {err}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A command for the binary with a scrubbed environment: only `PATH`, plus
/// `MNVKD_LOG=info` so the log lines tests wait for are always there.
pub fn command() -> Command {
    let mut cmd = Command::new(bin());
    cmd.env_clear().env("MNVKD_LOG", "info");
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    /// The arguments, for failure messages.
    pub args: Vec<OsString>,
    /// How it ended.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error, lossily decoded.
    pub stderr: String,
}

/// Runs the binary with `args` and `stdin` to completion, killing it (and
/// failing) if it is still running after [`DEADLINE`].
pub fn run(args: &[OsString], stdin: &[u8]) -> Output {
    run_with_env(args, stdin, &[])
}

/// As [`run`], with `env` added to the scrubbed environment.
pub fn run_with_env(args: &[OsString], stdin: &[u8], env: &[(&str, &OsStr)]) -> Output {
    let mut child = command()
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("failed to spawn {} {args:?}: {err}", bin().display()));
    let mut input = child.stdin.take().expect("stdin is piped");
    let stdin = stdin.to_vec();
    // The child may exit without reading its input: a broken pipe is fine.
    let writer = thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let stdout = read_all_in_background(child.stdout.take().expect("stdout is piped"));
    let stderr = read_all_in_background(child.stderr.take().expect("stderr is piped"));
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() < DEADLINE => thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = stderr.join().unwrap_or_default();
                panic!(
                    "{args:?} still running after {DEADLINE:?}; killed it\nstderr:\n{}",
                    String::from_utf8_lossy(&stderr)
                );
            }
            Err(err) => panic!("failed to wait for {args:?}: {err}"),
        }
    };
    let _ = writer.join();
    Output {
        args: args.to_vec(),
        status,
        stdout: stdout.join().expect("stdout reader panicked"),
        stderr: String::from_utf8_lossy(&stderr.join().expect("stderr reader panicked"))
            .into_owned(),
    }
}

/// Runs the binary and expects success; returns its stdout.
#[track_caller]
pub fn run_ok(args: &[OsString], stdin: &[u8]) -> Vec<u8> {
    let out = run(args, stdin);
    assert!(
        out.status.success(),
        "expected success from {:?}, got {}\nstderr:\n{}",
        out.args,
        out.status,
        out.stderr
    );
    out.stdout
}

/// Runs the binary and expects it to fail with an exit code; returns the
/// code and stderr.
#[track_caller]
pub fn run_fail(args: &[OsString], stdin: &[u8]) -> (i32, String) {
    let out = run(args, stdin);
    match out.status.code() {
        Some(code) if code != 0 => (code, out.stderr),
        _ => panic!(
            "expected an exit code other than 0 from {:?}, got {}\nstderr:\n{}",
            out.args, out.status, out.stderr
        ),
    }
}

/// The key of the admin endpoint's address among a [`Server`]'s addresses
/// (no app can have it: it is not a file stem).
const ADMIN: &str = "(admin)";

/// A running `mnvkd-host serve`, killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: Mutex<Child>,
    addrs: HashMap<String, SocketAddr>,
    /// The other lines of the start-up table on stdout (apps, workers).
    table: Vec<String>,
    log: Arc<Log>,
    /// Appends stderr to `log` until the child exits.
    log_reader: Option<thread::JoinHandle<()>>,
}

/// The server's stderr so far, and a signal for each new line.
#[derive(Debug, Default)]
struct Log {
    text: Mutex<String>,
    grew: Condvar,
}

impl Server {
    /// Serves `apps` (name = file stem, path), each on `127.0.0.1:0`, with
    /// `extra` flags; returns once every app has printed its `listening` line.
    #[track_caller]
    pub fn start(apps: &[(&str, PathBuf)], extra: &[OsString]) -> Server {
        Server::start_logging(apps, extra, "info")
    }

    /// As [`Server::start`], with `MNVKD_LOG` set to `filter` (e.g. `debug`
    /// for the lines a test waits for that `info` hides).
    #[track_caller]
    pub fn start_logging(apps: &[(&str, PathBuf)], extra: &[OsString], filter: &str) -> Server {
        Server::start_with_env(apps, extra, &[("MNVKD_LOG", OsStr::new(filter))])
    }

    /// As [`Server::start`], with `env` added to the scrubbed environment
    /// (it may override `MNVKD_LOG`).
    #[track_caller]
    pub fn start_with_env(
        apps: &[(&str, PathBuf)],
        extra: &[OsString],
        env: &[(&str, &OsStr)],
    ) -> Server {
        Server::start_configured(apps, extra, env, |_| {})
    }

    /// As [`Server::start_with_env`], with `configure` applied to the
    /// command before it is spawned.
    #[track_caller]
    fn start_configured(
        apps: &[(&str, PathBuf)],
        extra: &[OsString],
        env: &[(&str, &OsStr)],
        configure: impl FnOnce(&mut Command),
    ) -> Server {
        let mut args = args!["serve"];
        for (name, _) in apps {
            args.extend(args!["--listen", format!("{name}=127.0.0.1:0")]);
        }
        args.extend_from_slice(extra);
        args.extend(apps.iter().map(|(_, path)| OsString::from(path)));
        let mut cmd = command();
        cmd.envs(env.iter().copied())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        configure(&mut cmd);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|err| panic!("failed to spawn {} {args:?}: {err}", bin().display()));
        let log = Arc::new(Log::default());
        let log_reader = collect_log(
            child.stderr.take().expect("stderr is piped"),
            Arc::clone(&log),
        );
        let lines = lines_in_background(child.stdout.take().expect("stdout is piped"));
        let mut server = Server {
            child: Mutex::new(child),
            addrs: HashMap::new(),
            table: Vec::new(),
            log,
            log_reader: Some(log_reader),
        };
        let deadline = Instant::now() + START_DEADLINE.with(std::cell::Cell::get);
        // With --admin, its `admin ADDR` line too (the last of them).
        let admin = extra
            .iter()
            .any(|arg| arg.to_string_lossy().starts_with("--admin"));
        while server.addrs.len() < apps.len() + usize::from(admin)
            || (admin && !server.addrs.contains_key(ADMIN))
        {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some((app, addr)) = parse_listening(&line) {
                        server.addrs.insert(app, addr);
                    } else if let Some(addr) = line.strip_prefix("admin ") {
                        let addr = addr.parse().expect("the admin line ends in an address");
                        server.addrs.insert(ADMIN.to_owned(), addr);
                    } else {
                        server.table.push(line);
                    }
                }
                Err(err) => {
                    let status = server.stop();
                    panic!(
                        "{args:?}: {} of {} apps listening ({err}); got {:?}; the server {status}\nstderr:\n{}",
                        server.addrs.len(),
                        apps.len(),
                        server.addrs,
                        server.log()
                    );
                }
            }
        }
        server
    }

    /// The start-up table's line that begins with `prefix` (e.g. `workers:`).
    #[track_caller]
    pub fn table_line(&self, prefix: &str) -> &str {
        self.table
            .iter()
            .find(|line| line.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?} in {:#?}", self.table))
    }

    /// Where `app` listens.
    #[track_caller]
    pub fn addr(&self, app: &str) -> SocketAddr {
        *self
            .addrs
            .get(app)
            .unwrap_or_else(|| panic!("no app `{app}` is served; have {:?}", self.addrs))
    }

    /// Where the admin endpoint listens (started with `--admin`).
    #[track_caller]
    pub fn admin_addr(&self) -> SocketAddr {
        self.addr(ADMIN)
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().clone()
    }

    /// Waits for the first log line containing `needle` and returns it.
    #[track_caller]
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        self.wait_for_logs(needle, 1, timeout).remove(0)
    }

    /// Waits until `count` log lines contain `needle`; returns them all.
    #[track_caller]
    pub fn wait_for_logs(&self, needle: &str, count: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut text = self.log.lock();
        loop {
            let found: Vec<String> = text
                .lines()
                .filter(|line| line.contains(needle))
                .map(str::to_owned)
                .collect();
            if found.len() >= count {
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let log = text.clone();
                // Unlocked before panicking, so `Drop` can still read the log.
                drop(text);
                panic!(
                    "waited {timeout:?} for {count} log lines containing {needle:?}, found {}\nstderr:\n{log}",
                    found.len()
                );
            }
            text = self
                .log
                .grew
                .wait_timeout(text, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .id()
    }

    /// Whether the server process is still running.
    pub fn is_alive(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        matches!(child.try_wait(), Ok(None))
    }

    /// Sends the server `signal` (e.g. `libc::SIGTERM`).
    pub fn signal(&self, signal: libc::c_int) {
        let child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
        // SAFETY: kill(2) only sends a signal, to our own child.
        assert_eq!(
            unsafe { libc::kill(pid, signal) },
            0,
            "kill({pid}, {signal})"
        );
    }

    /// Waits for the server to exit by itself; panics (showing the log) if it
    /// is still running after `timeout`.
    #[track_caller]
    pub fn wait_exit(&self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let status = {
                let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
                child.try_wait().expect("the server can be waited for")
            };
            if let Some(status) = status {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit within {timeout:?}\nstderr:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the server to exit after a drain and asserts it ended
    /// well: status 0, every process finished (not cut off at the drain
    /// timeout).
    #[track_caller]
    pub fn assert_drained(&self) {
        let status = self.wait_exit(DEADLINE);
        assert!(status.success(), "{status}\n{}", self.log());
        assert!(
            self.log().contains("drained: every process finished"),
            "{}",
            self.log()
        );
    }

    /// Asserts the server is still running, showing its log if not.
    #[track_caller]
    pub fn assert_alive(&self) {
        assert!(
            self.is_alive(),
            "the server exited\nstderr:\n{}",
            self.log()
        );
    }
}

impl Server {
    /// Kills the server (if still running), waits for it and for the rest of
    /// its log; says how it ended.
    fn stop(&mut self) -> String {
        let child = self.child.get_mut().unwrap_or_else(PoisonError::into_inner);
        let ended = match child.try_wait() {
            Ok(Some(status)) => format!("had exited with {status}"),
            _ => {
                let _ = child.kill();
                "was killed".to_owned()
            }
        };
        let _ = child.wait();
        if let Some(reader) = self.log_reader.take() {
            let _ = reader.join();
        }
        ended
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!("--- server stderr ---\n{}", self.log());
        }
    }
}

impl Log {
    /// The text, even if a panicking test thread held the lock: a failed
    /// test must still be able to show the log.
    fn lock(&self) -> MutexGuard<'_, String> {
        self.text.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Parses `listening APP 127.0.0.1:PORT`.
fn parse_listening(line: &str) -> Option<(String, SocketAddr)> {
    let mut words = line.split_whitespace();
    if words.next()? != "listening" {
        return None;
    }
    let app = words.next()?.to_owned();
    let addr = words.next()?.parse().ok()?;
    Some((app, addr))
}

/// Appends each stderr line to `log` and wakes the waiters, until EOF.
fn collect_log(stderr: ChildStderr, log: Arc<Log>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let mut text = log.lock();
            text.push_str(&line);
            text.push('\n');
            log.grew.notify_all();
        }
    })
}

/// Sends each line of `source` to the returned channel, draining it to EOF
/// even when nobody listens any more.
fn lines_in_background(source: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(source).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    rx
}

fn read_all_in_background(mut source: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = source.read_to_end(&mut bytes);
        bytes
    })
}

/// Connects to `addr` with read and write timeouts of [`DEADLINE`], so a
/// stuck host fails the test instead of hanging it.
#[track_caller]
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, DEADLINE)
        .unwrap_or_else(|err| panic!("failed to connect to {addr}: {err}"));
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.set_write_timeout(Some(DEADLINE)).unwrap();
    stream
}

/// Sends `bytes` (from another thread, so neither side's socket buffer can
/// fill up and deadlock), half-closes, and returns everything received until
/// end of stream.
#[track_caller]
pub fn roundtrip(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let stream = connect(addr);
    let mut writer = stream.try_clone().expect("failed to clone a socket");
    thread::scope(|scope| {
        let sent = scope.spawn(move || {
            writer.write_all(bytes)?;
            writer.shutdown(Shutdown::Write)
        });
        let mut got = Vec::new();
        let read = (&stream).read_to_end(&mut got);
        let sent = sent.join().expect("writer thread panicked");
        if let Err(err) = sent {
            panic!(
                "round trip to {addr}: failed to send {} bytes: {err}",
                bytes.len()
            );
        }
        if let Err(err) = read {
            panic!(
                "round trip to {addr}: read failed after {} of {} bytes: {err}",
                got.len(),
                bytes.len()
            );
        }
        got
    })
}

/// Reads until the host closes `stream` (end of stream or a reset) and
/// returns what arrived before that.
///
/// # Panics
/// When the connection is still open after [`DEADLINE`].
#[track_caller]
pub fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => got,
        Err(err) if err.kind() == io::ErrorKind::ConnectionReset => got,
        Err(err) => panic!(
            "expected the host to close the connection, got {err} after {} bytes",
            got.len()
        ),
    }
}

/// The resident set size of process `pid` in bytes (`VmRSS` in
/// `/proc/PID/status`).
///
/// # Panics
/// When the process is gone or the file has no `VmRSS` line.
#[track_caller]
pub fn vm_rss(pid: u32) -> u64 {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("failed to read `{path}`: {err}"));
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS line in `{path}`:\n{status}"));
    kib * 1024
}

/// `len` bytes that do not repeat with any short period, seeded by `seed`.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header fields in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Trailer fields after a chunked body.
    pub trailers: Vec<(String, String)>,
}

impl Response {
    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one line, CRLF stripped; panics at end of stream.
#[track_caller]
fn line(reader: &mut impl BufRead) -> String {
    let mut line = String::new();
    let n = reader
        .read_line(&mut line)
        .unwrap_or_else(|err| panic!("failed to read a response line: {err}"));
    assert!(n > 0, "end of stream where a response line was expected");
    line.strip_suffix("\r\n")
        .unwrap_or_else(|| panic!("response line without CRLF: {line:?}"))
        .to_owned()
}

/// Reads header (or trailer) lines up to the blank line.
#[track_caller]
fn header_lines(reader: &mut impl BufRead) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    loop {
        let field = line(reader);
        if field.is_empty() {
            return fields;
        }
        let (name, value) = field
            .split_once(": ")
            .unwrap_or_else(|| panic!("bad header line {field:?}"));
        fields.push((name.to_owned(), value.to_owned()));
    }
}

/// Reads one response: status line, headers, and a body framed by
/// `Content-Length`, chunked, or (with neither) the end of stream.
#[track_caller]
pub fn read_response(reader: &mut impl BufRead) -> Response {
    let status_line = line(reader);
    let mut words = status_line.splitn(3, ' ');
    assert_eq!(
        words.next(),
        Some("HTTP/1.1"),
        "status line {status_line:?}"
    );
    let status = words
        .next()
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut response = Response {
        status,
        headers: header_lines(reader),
        body: Vec::new(),
        trailers: Vec::new(),
    };
    if response.header("Transfer-Encoding") == Some("chunked") {
        loop {
            let size = usize::from_str_radix(&line(reader), 16).expect("chunk size");
            if size == 0 {
                // The last chunk: trailer fields, then the blank line.
                response.trailers = header_lines(reader);
                break;
            }
            let start = response.body.len();
            response.body.resize(start + size, 0);
            reader.read_exact(&mut response.body[start..]).unwrap();
            assert_eq!(line(reader), "", "CRLF after a chunk");
        }
    } else if let Some(len) = response.header("Content-Length") {
        let len: usize = len.parse().expect("Content-Length");
        response.body = vec![0; len];
        reader
            .read_exact(&mut response.body)
            .unwrap_or_else(|err| panic!("failed to read a {len}-byte body: {err}"));
    } else {
        reader.read_to_end(&mut response.body).unwrap();
    }
    response
}

impl Server {
    /// As [`Server::start`], with the server's `RLIMIT_NOFILE` (soft and
    /// hard, so the host cannot raise it) set to `fds`.
    #[track_caller]
    pub fn start_with_fd_limit(apps: &[(&str, PathBuf)], extra: &[OsString], fds: u64) -> Server {
        Server::start_with_rlimit(apps, extra, libc::RLIMIT_NOFILE, fds)
    }

    /// As [`Server::start`], with the server's `RLIMIT_AS` (its address
    /// space, soft and hard) set to `bytes`.
    #[track_caller]
    pub fn start_with_address_space(
        apps: &[(&str, PathBuf)],
        extra: &[OsString],
        bytes: u64,
    ) -> Server {
        Server::start_with_rlimit(apps, extra, libc::RLIMIT_AS, bytes)
    }

    /// As [`Server::start`], with the server's `resource` limit set to
    /// `value`, soft and hard (so the host cannot raise it).
    #[track_caller]
    fn start_with_rlimit(
        apps: &[(&str, PathBuf)],
        extra: &[OsString],
        resource: libc::__rlimit_resource_t,
        value: u64,
    ) -> Server {
        use std::os::unix::process::CommandExt;
        Server::start_configured(apps, extra, &[], |cmd| {
            // SAFETY: setrlimit is async-signal-safe; the closure touches
            // nothing else between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: value,
                        rlim_max: value,
                    };
                    if libc::setrlimit(resource, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::last_os_error())
                    }
                });
            }
        })
    }

    /// The number of open fds of the server process.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|dir| dir.count())
            .unwrap_or(0)
    }
}

/// The bytes of `GET path` (HTTP/1.1, `Host: test`), to send as they are
/// or pipelined after others.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

/// The bytes of `POST path` with `body` (an octet stream with its length).
pub fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// Sends `request` on a new connection and reads one response.
#[track_caller]
pub fn request(addr: SocketAddr, request: &[u8]) -> Response {
    let mut stream = connect(addr);
    stream.write_all(request).unwrap();
    read_response(&mut BufReader::new(stream))
}

/// One HTTP/1.1 request (`method path`, no body) on a new connection,
/// closed after the response; returns the response.
#[track_caller]
pub fn http_request(addr: SocketAddr, method: &str, path: &str) -> Response {
    let mut stream = connect(addr);
    let request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    read_response(&mut BufReader::new(stream))
}

/// `GET path` on a new connection; see [`http_request`].
#[track_caller]
pub fn http_get(addr: SocketAddr, path: &str) -> Response {
    http_request(addr, "GET", path)
}

thread_local! {
    /// How long [`Server::start`] and its variants wait on this thread for
    /// the `listening` lines: [`DEADLINE`], unless [`with_start_deadline`]
    /// raised it.
    static START_DEADLINE: std::cell::Cell<Duration> = const { std::cell::Cell::new(DEADLINE) };
}

/// Runs `start` (which starts a [`Server`]) with the start deadline raised to
/// `deadline`, for apps whose first start compiles for long (a CPython or a
/// SpiderMonkey inside a component). Only a bound against hangs, as
/// [`DEADLINE`] is.
pub fn with_start_deadline<T>(deadline: Duration, start: impl FnOnce() -> T) -> T {
    let before = START_DEADLINE.with(|cell| cell.replace(deadline));
    let started = start();
    START_DEADLINE.with(|cell| cell.set(before));
    started
}

/// A client that runs `attempt` (one request on a new connection) over and
/// over on its own thread while a test changes the server under it (a
/// reload, a hand-over), keeping every failure.
pub struct ClientLoop {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    done: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl ClientLoop {
    /// Starts the loop; `attempt` says what went wrong, if anything.
    pub fn start(attempt: impl Fn() -> Result<(), String> + Send + 'static) -> ClientLoop {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let thread = {
            let (stop, done) = (std::sync::Arc::clone(&stop), std::sync::Arc::clone(&done));
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    if let Err(failure) = attempt() {
                        failures.push(failure);
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
                failures
            })
        };
        ClientLoop { stop, done, thread }
    }

    /// Attempts made so far.
    pub fn done(&self) -> usize {
        self.done.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits (up to [`DEADLINE`]) until `count` more attempts are made.
    #[track_caller]
    pub fn wait_for_more(&self, count: usize) {
        let deadline = Instant::now() + DEADLINE;
        let until = self.done() + count;
        while self.done() < until {
            assert!(Instant::now() < deadline, "the client stalled");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the loop and returns its failures.
    pub fn stop(self) -> Vec<String> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().expect("the client thread panicked")
    }
}
