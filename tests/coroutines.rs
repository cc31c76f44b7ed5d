//! Layer-1 processes as coroutines: pipes, spawn/wait, poll, sleep, connect
//! and accept, through the `pipes` scenario guest (one command per
//! connection, `key value` lines back), and the example apps built on them:
//! a TCP proxy, a chat room in listener mode and a pipelined request/response
//! service whose stages are processes joined by pipes.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{
    self, assert_bytes_eq, connect, guest, read_until_closed, roundtrip, Server, TempDir, DEADLINE,
};

// ---------------------------------------------------------------------------
// The `pipes` scenario guest.

/// Serves `pipes` (its manifest: `max_processes = 100`) with `extra` flags.
fn serve_pipes(extra: &[std::ffi::OsString]) -> Server {
    Server::start(&[("pipes", guest("pipes"))], extra)
}

/// Sends `command` as one line, half-closes, and returns the whole reply.
#[track_caller]
fn ask(server: &Server, command: &str) -> String {
    let got = roundtrip(server.addr("pipes"), format!("{command}\n").as_bytes());
    String::from_utf8(got).unwrap_or_else(|err| panic!("reply to {command:?} is not UTF-8: {err}"))
}

/// Expects exactly `lines` (each newline-terminated) in reply to `command`.
#[track_caller]
fn assert_reply(server: &Server, command: &str, lines: &[&str]) {
    let want: String = lines.iter().map(|line| format!("{line}\n")).collect();
    let got = ask(server, command);
    assert_eq!(got, want, "reply to {command:?}");
}

/// Expects the reply to `command` to be `key value` lines with exactly
/// `keys`, in order; returns the values.
#[track_caller]
fn ask_values(server: &Server, command: &str, keys: &[&str]) -> Vec<String> {
    let got = ask(server, command);
    let mut values = Vec::new();
    for line in got.lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        values.push(value.to_owned());
        assert_eq!(
            Some(key),
            keys.get(values.len() - 1).copied(),
            "reply to {command:?}: unexpected line {line:?} in:\n{got}"
        );
    }
    assert!(
        got.ends_with('\n') && values.len() == keys.len(),
        "reply to {command:?}: expected the keys {keys:?}, got:\n{got}"
    );
    values
}

/// A value that should be a number.
#[track_caller]
fn number(what: &str, value: &str) -> u64 {
    value
        .parse()
        .unwrap_or_else(|err| panic!("{what}: {value:?} is not a number: {err}"))
}

/// The host is still running and serves another command, one that spawns.
#[track_caller]
fn assert_serves_another_command(server: &Server) {
    server.assert_alive();
    assert_reply(server, "wait", &["status 7"]);
}

/// Asserts that the host has neither written to nor closed `stream`.
#[track_caller]
fn assert_silent(what: &str, stream: &TcpStream) {
    stream.set_nonblocking(true).unwrap();
    let mut buf = [0; 64];
    let result = (&*stream).read(&mut buf);
    stream.set_nonblocking(false).unwrap();
    match result {
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
        Ok(n) => panic!(
            "{what}: expected a silent, open connection, got {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(err) => panic!("{what}: expected a silent, open connection, got {err}"),
    }
}

#[test]
fn pipes_order_carries_every_byte_to_a_child_in_order() {
    let server = serve_pipes(&[]);
    for (command, n) in [
        ("order", 100_000),
        ("order 1", 1),
        ("order 1048576", 1 << 20),
    ] {
        let keys = [
            "sent", "received", "checksum", "in_order", "expected", "status",
        ];
        let values = ask_values(&server, command, &keys);
        assert_eq!(number("sent", &values[0]), n, "{command}: sent");
        assert_eq!(number("received", &values[1]), n, "{command}: received");
        assert_eq!(values[3], "true", "{command}: in_order");
        assert_eq!(values[2], values[4], "{command}: checksum == expected");
        assert_eq!(values[5], "0", "{command}: child status");
    }
    assert_serves_another_command(&server);
}

#[test]
fn pipes_eof_once_every_write_end_is_closed_or_its_holder_exits() {
    let server = serve_pipes(&[]);
    assert_reply(
        &server,
        "eof",
        &["data 5", "read 0", "read_after_exit 0", "holder_status 0"],
    );
    assert_serves_another_command(&server);
}

#[test]
fn pipes_epipe_after_the_read_end_is_closed() {
    let server = serve_pipes(&[]);
    // Writable + hang-up, then `pipe` (-4).
    assert_reply(&server, "epipe", &["revents 6", "write -4"]);
    assert_serves_another_command(&server);
}

#[test]
fn pipes_try_read_and_try_write_move_what_they_can_and_refuse_hostile_calls() {
    let server = serve_pipes(&[]);
    assert_reply(
        &server,
        "trypipe",
        &[
            "empty -9",
            "write 3",
            "read 2 ab",
            "read 1 c",
            "write_fault -2",
            "write_wrap -2",
            "read_fault -2",
            "kept 1 x",
            "read_blocking_fault -2",
            "write_blocking_fault -2",
            "read_on_write_end -1",
            "write_on_read_end -1",
            "closed -1",
            "fill 65536",
            "full -9",
            "drain 65536",
            "eof_data 1 y",
            "eof 0",
            "broken -4",
        ],
    );
    assert_serves_another_command(&server);
}

#[test]
fn pipes_read_within_times_out_reads_and_refuses_hostile_calls() {
    let server = serve_pipes(&[]);
    let values = ask_values(
        &server,
        "readwithin",
        &[
            "empty",
            "waited_ms",
            "look",
            "read",
            "fault",
            "badf",
            "eof",
            "try_accept",
        ],
    );
    // `timedout` (-8) after at least the 20 ms asked, then at once for 0.
    assert_eq!(values[0], "-8", "read-within on an empty pipe");
    let waited = number("waited_ms", &values[1]);
    assert!(
        waited >= 20,
        "a 20 ms read-within returned after {waited} ms"
    );
    assert_eq!(
        values[2..],
        ["-8", "2 ab", "-2", "-1", "0", "-1"],
        "look, read, fault, badf (the write end), eof, try-accept on a connection"
    );
    assert_serves_another_command(&server);
}

#[test]
fn pipes_a_writer_blocked_on_a_full_pipe_gets_epipe_when_the_reader_exits() {
    for threads in ["1", "2"] {
        let server = serve_pipes(&args!["--threads", threads]);
        assert_reply(
            &server,
            "blockedwrite",
            &["wrote 65536", "write -4", "status 0"],
        );
        assert_serves_another_command(&server);
    }
}

/// What `backpressure` gets into a pipe of `capacity` bytes that nobody
/// reads, writing 1 KiB whenever `poll` says writable: by the wit, a pipe
/// is writable while 4096 bytes (or its whole buffer, if smaller) are free.
fn backpressure_accepts(capacity: usize) -> usize {
    let mut accepted = 0;
    while capacity - accepted >= capacity.min(4096) {
        accepted += 1024;
    }
    accepted
}

#[test]
fn pipes_backpressure_stops_the_writer_at_the_pipe_buffer() {
    // 1 MiB offered, one pipe buffer taken: the host does not buffer
    // without bound.
    for (flags, capacity) in [
        (args![], 64 << 10),
        (args!["--pipe-buffer", "16KiB"], 16 << 10),
    ] {
        let server = serve_pipes(&flags);
        let values = ask_values(&server, "backpressure", &["accepted", "poll"]);
        let accepted = number("accepted", &values[0]);
        assert_eq!(
            accepted,
            backpressure_accepts(capacity) as u64,
            "backpressure into a {capacity}-byte pipe (4096 bytes free make it writable)"
        );
        assert_eq!(values[1], "0", "the full pipe polls not writable");
        assert_serves_another_command(&server);
    }
}

#[test]
fn pipes_wait_returns_the_exit_status() {
    let server = serve_pipes(&[]);
    assert_reply(&server, "wait", &["status 7"]);
    assert_serves_another_command(&server);
}

#[test]
fn pipes_wait_returns_256_for_a_killed_child() {
    let server = serve_pipes(&[]);
    assert_reply(&server, "killed", &["status 256"]);
    server.wait_for_log("process killed", DEADLINE);
    assert_serves_another_command(&server);
}

#[test]
fn pipes_a_child_handle_polls_readable_when_the_child_ends() {
    let server = serve_pipes(&[]);
    assert_reply(
        &server,
        "childpoll",
        &["poll_now 0", "poll 1", "revents 1", "status 3"],
    );
    assert_serves_another_command(&server);
}

#[test]
fn pipes_sleep_lasts_at_least_its_time() {
    let server = serve_pipes(&[]);
    let values = ask_values(&server, "sleep", &["elapsed_ms", "done"]);
    let elapsed = number("elapsed_ms", &values[0]);
    assert!(elapsed >= 200, "sleep 200 took only {elapsed} ms");
    assert_eq!(values[1], "true");
    assert_serves_another_command(&server);
}

/// `spawnbomb`'s count of children, checking that it ended at `limit`.
#[track_caller]
fn spawn_bomb(server: &Server) -> u64 {
    let values = ask_values(server, "spawnbomb", &["count", "error"]);
    assert_eq!(values[1], "-6", "spawnbomb: the error is `limit`");
    number("count", &values[0])
}

#[test]
fn pipes_spawnbomb_stops_at_the_process_limit_and_the_slots_come_back() {
    let server = serve_pipes(&[]);
    // max_processes = 100, less the bomb itself and what else is alive.
    let count = spawn_bomb(&server);
    assert!(
        (90..100).contains(&count),
        "spawnbomb under max_processes = 100 spawned {count} children"
    );
    // While the bomb's children (2 s sleepers) are alive, a connection is
    // still served.
    server.assert_alive();
    assert_reply(&server, "pollinvalid", &["poll 2", "revents 8,8"]);
    // Once they have ended, every slot is free again: a second bomb gets as
    // far. Until then a bomb gets few or none; the children of a partial
    // one sleep 2 s too, so the next try waits for them.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let again = spawn_bomb(&server);
        if again >= 90 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the process slots never came back: the last bomb spawned {again}"
        );
        let pause = if again == 0 { 100 } else { 2500 };
        thread::sleep(Duration::from_millis(pause));
    }
    server.assert_alive();
    assert_reply(&server, "pollinvalid", &["poll 2", "revents 8,8"]);
}

#[test]
fn pipes_handlebomb_stops_at_1024_handles() {
    let server = serve_pipes(&[]);
    // Handle 0 is the connection: 511 pipes are 1022 more handles, the next
    // pipe would need 2 and only 1 is left.
    assert_reply(&server, "handlebomb", &["pipes 511", "error -6"]);
    assert_serves_another_command(&server);
}

#[test]
fn pipes_poll_times_out() {
    let server = serve_pipes(&[]);
    let values = ask_values(&server, "polltimeout", &["poll", "revents", "elapsed_ms"]);
    assert_eq!(values[..2], ["0", "0"], "polltimeout: poll, revents");
    let elapsed = number("elapsed_ms", &values[2]);
    assert!(elapsed >= 50, "a 50 ms poll returned after {elapsed} ms");
    assert_serves_another_command(&server);
}

#[test]
fn pipes_poll_reports_handles_that_are_not_open() {
    let server = serve_pipes(&[]);
    assert_reply(&server, "pollinvalid", &["poll 2", "revents 8,8"]);
    assert_serves_another_command(&server);
}

/// `watch`, the interest set, step by step (the `watch` scenario of
/// guests/pipes): reports carry handle/armed events/revents.
#[test]
fn watch_reports_each_armed_handle_once_when_ready() {
    let server = serve_pipes(&[]);
    let keys = [
        "empty",
        "ready",
        "oneshot",
        "rearmed",
        "disarmed",
        "writable",
        "notopen",
        "many_armed",
        "many_ready",
        "armclose",
        "closed",
        "timeout",
        "elapsed_ms",
        "bad",
    ];
    let values = ask_values(&server, "watch", &keys);
    let want = [
        // Armed, nothing to read yet.
        "0 ",
        // A byte came: reported with the armed events.
        "1 r/1/1",
        // One-shot: not reported again though the byte is still there.
        "0 ",
        // Armed again: the byte is there, reported at once.
        "1 r/1/1",
        // Armed and disarmed in one call: nothing.
        "0 ",
        "1 w/2/2",
        // Not open: reported invalid at once, with the events asked for.
        "1 999/1/8",
        // 100 pipes armed; then 3 written to: exactly those three.
        "0 ",
        "true [7, 42, 99]",
        // Closed while armed (its number is the freed `r`): invalid.
        "0 ",
        "1 r/1/8",
        "0",
    ];
    for ((key, value), want) in keys.iter().zip(&values).zip(want) {
        assert_eq!(value, want, "watch step {key}");
    }
    let elapsed = number("elapsed_ms", &values[12]);
    assert!(elapsed >= 50, "a 50 ms watch returned after {elapsed} ms");
    // A bad event bit and `ready-max` 0 are `inval`, a buffer outside the
    // heap is `fault`.
    assert_eq!(values[13], "[-3, -3, -2]", "watch: bad calls");
    assert_serves_another_command(&server);
}

#[test]
fn pipes_bad_spawn_and_wait_arguments_are_refused() {
    let server = serve_pipes(&[]);
    assert_reply(
        &server,
        "badspawn",
        &["twice -3", "closed -1", "wait_not_child -1"],
    );
    assert_serves_another_command(&server);
}

#[test]
fn pipes_connect_is_denied_without_allow_outbound() {
    let server = serve_pipes(&[]);
    assert_reply(&server, "connect 127.0.0.1:6379", &["connect -7"]);
    server.wait_for_log("connect to 127.0.0.1:6379 denied", DEADLINE);
    assert_reply(&server, "connect not-an-address", &["connect -3"]);
    assert_serves_another_command(&server);
}

#[test]
fn pipes_accept_on_a_connection_is_badf() {
    let server = serve_pipes(&[]);
    assert_reply(&server, "accept", &["accept -1"]);
    assert_serves_another_command(&server);
}

#[test]
fn pipes_a_half_close_is_end_of_stream_not_a_hang_up() {
    let server = serve_pipes(&[]);
    // After the client's half-close: `read` gives end of stream, and a poll
    // that asks for nothing times out (300 ms): the client still reads.
    let values = ask_values(
        &server,
        "halfclose",
        &["read", "poll", "revents", "elapsed_ms"],
    );
    assert_eq!(
        values[..3],
        ["0", "0", "0"],
        "halfclose: read, poll, revents"
    );
    let elapsed = number("elapsed_ms", &values[3]);
    assert!(elapsed >= 300, "a 300 ms poll returned after {elapsed} ms");
    assert_serves_another_command(&server);
}

#[test]
fn pipes_handoff_moves_the_connection_and_its_stdio_to_a_child() {
    let server = serve_pipes(&[]);
    // The child answers through WASI stdout, reads `ping` through WASI stdin
    // and answers through handle 0.
    let got = roundtrip(server.addr("pipes"), b"handoff\nping\n");
    assert_bytes_eq("handoff", b"stdout yes\nstdin ping\n", &got);
    server.wait_for_log("handoff child ended: exit status: 0", DEADLINE);
    assert_serves_another_command(&server);
}

#[test]
fn pipes_stdout_does_not_reach_a_connection_moved_away() {
    let server = serve_pipes(&[]);
    // The parent moved its connection to a child, then wrote to its own WASI
    // stdout: nothing of that may reach the client.
    let got = roundtrip(server.addr("pipes"), b"stdioleak\n");
    assert_bytes_eq("stdioleak", b"", &got);
    assert_serves_another_command(&server);
}

#[test]
fn sleep_does_not_block_other_processes_on_the_same_worker() {
    let server = serve_pipes(&args!["--threads", "1"]);
    let mut sleeper = connect(server.addr("pipes"));
    sleeper.write_all(b"sleep 2000\n").unwrap();
    sleeper.shutdown(Shutdown::Write).unwrap();
    // Gives the sleeper time to reach its `sleep`. Not an assertion: were it
    // late, the test could only pass without proving anything.
    thread::sleep(Duration::from_millis(100));

    // On the only worker, other processes run (and their own timers fire)
    // while the sleeper sleeps.
    let values = ask_values(
        &server,
        "order",
        &[
            "sent", "received", "checksum", "in_order", "expected", "status",
        ],
    );
    assert_eq!(values[3], "true", "order beside a sleeper: in_order");
    assert_eq!(values[2], values[4], "order beside a sleeper: checksum");
    assert_eq!(values[5], "0", "order beside a sleeper: status");
    let values = ask_values(&server, "sleep 20", &["elapsed_ms", "done"]);
    assert!(number("elapsed_ms", &values[0]) >= 20);
    assert_silent("the sleeper, after the other commands", &sleeper);

    // Only now does the sleeper answer.
    let got = String::from_utf8(read_until_closed(&mut sleeper)).unwrap();
    let mut lines = got.lines();
    let elapsed = lines
        .next()
        .and_then(|line| line.strip_prefix("elapsed_ms "))
        .unwrap_or_else(|| panic!("sleeper replied {got:?}"));
    let elapsed = number("elapsed_ms", elapsed);
    assert!(elapsed >= 2000, "sleep 2000 took only {elapsed} ms");
    assert_eq!(lines.collect::<Vec<_>>(), ["done true"], "sleeper: {got:?}");
    server.assert_alive();
}

// ---------------------------------------------------------------------------
// `proxy`: both ways between the client and UPSTREAM.

/// An echo server on `127.0.0.1:0`, run by the test as the proxy's upstream;
/// stopped (and its threads joined) on drop.
struct EchoUpstream {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<thread::JoinHandle<()>>,
}

impl EchoUpstream {
    fn start() -> EchoUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("failed to bind an upstream");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let thread = thread::spawn({
            let (stop, accepted) = (Arc::clone(&stop), Arc::clone(&accepted));
            move || {
                let mut conns = Vec::new();
                while !stop.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            accepted.fetch_add(1, Ordering::AcqRel);
                            conns.push(thread::spawn(move || echo(stream)));
                        }
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(5));
                        }
                        Err(err) => panic!("upstream accept failed: {err}"),
                    }
                }
                for conn in conns {
                    let _ = conn.join();
                }
            }
        });
        EchoUpstream {
            addr,
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Acquire)
    }
}

/// Echoes until end of stream (or an error, or [`DEADLINE`] of silence).
fn echo(stream: TcpStream) {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.set_write_timeout(Some(DEADLINE)).unwrap();
    let _ = io::copy(&mut &stream, &mut &stream);
    let _ = stream.shutdown(Shutdown::Write);
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `proxy.wasm` copied into `dir` as `<name>.wasm`, with its own manifest.
fn proxy_app(dir: &TempDir, name: &str, allow: &[SocketAddr], upstream: SocketAddr) -> PathBuf {
    let wasm = std::fs::read(guest("proxy")).expect("failed to read proxy.wasm");
    let allow: Vec<String> = allow.iter().map(|addr| format!("\"{addr}\"")).collect();
    dir.write(
        &format!("{name}.toml"),
        format!(
            "allow_outbound = [{}]\n\n[env]\nUPSTREAM = \"{upstream}\"\n",
            allow.join(", ")
        ),
    );
    dir.write(&format!("{name}.wasm"), wasm)
}

#[test]
fn proxy_round_trips_1mib_through_a_local_upstream() {
    let upstream = EchoUpstream::start();
    let dir = TempDir::new();
    let app = proxy_app(&dir, "proxy", &[upstream.addr], upstream.addr);
    let server = Server::start(&[("proxy", app)], &[]);

    let payload = util::pseudo_random_bytes(7, 1 << 20);
    // The client half-closes at the end; the proxy passes on the answers
    // that follow, then closes after its linger.
    let got = roundtrip(server.addr("proxy"), &payload);
    assert_bytes_eq("1 MiB through the proxy", &payload, &got);
    assert_eq!(upstream.accepted(), 1, "upstream connections");

    let got = roundtrip(server.addr("proxy"), b"second client\n");
    assert_bytes_eq("a second client", b"second client\n", &got);
    server.assert_alive();
}

#[test]
fn proxy_to_an_upstream_not_allowed_is_denied_and_the_client_closed() {
    let upstream = EchoUpstream::start();
    let dir = TempDir::new();
    // Allowed: only a port nobody listens on (this one is closed at once).
    let other = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let app = proxy_app(&dir, "proxy", &[other], upstream.addr);
    let server = Server::start(&[("proxy", app)], &[]);

    // Nothing is sent: the proxy may close before reading it, and unread
    // bytes would turn the close into a reset.
    let mut client = connect(server.addr("proxy"));
    let got = read_until_closed(&mut client);
    assert_bytes_eq("the denied proxy's client", b"", &got);
    server.wait_for_log(&format!("connect to {} denied", upstream.addr), DEADLINE);
    assert_eq!(upstream.accepted(), 0, "the upstream was reached");
    server.assert_alive();
}

// ---------------------------------------------------------------------------
// `chat`: a hub process in listener mode and a process per client.

/// A chat client: its connection, read by lines.
struct ChatClient {
    conn: BufReader<TcpStream>,
    index: usize,
}

impl ChatClient {
    #[track_caller]
    fn read_line(&mut self) -> String {
        let mut line = String::new();
        match self.conn.read_line(&mut line) {
            Ok(_) if line.ends_with('\n') => line,
            Ok(_) => panic!("chat client {}: end of stream after {line:?}", self.index),
            Err(err) => panic!(
                "chat client {}: read failed after {line:?}: {err}",
                self.index
            ),
        }
    }

    #[track_caller]
    fn send(&mut self, line: &str) {
        self.conn
            .get_mut()
            .write_all(line.as_bytes())
            .unwrap_or_else(|err| panic!("chat client {}: send failed: {err}", self.index));
    }
}

#[test]
fn chat_fifty_clients_each_get_every_other_line_and_not_their_own() {
    const CLIENTS: usize = 50;
    let server = Server::start(&[("chat", guest("chat"))], &[]);
    // One at a time: once its welcome arrives a client is in the room.
    let mut clients: Vec<ChatClient> = (0..CLIENTS)
        .map(|index| {
            let mut client = ChatClient {
                conn: BufReader::new(connect(server.addr("chat"))),
                index,
            };
            let welcome = client.read_line();
            assert!(
                welcome.starts_with("* welcome ") && welcome.len() > "* welcome \n".len(),
                "chat client {index}: first line {welcome:?}"
            );
            client
        })
        .collect();

    let line_of = |index: usize| format!("line {index} from client {index}\n");
    for client in &mut clients {
        let line = line_of(client.index);
        client.send(&line);
    }
    for client in &mut clients {
        let got: Vec<String> = (1..CLIENTS).map(|_| client.read_line()).collect();
        let expected: std::collections::BTreeSet<String> = (0..CLIENTS)
            .filter(|&other| other != client.index)
            .map(line_of)
            .collect();
        let got_set = got.iter().cloned().collect();
        util::assert_set_eq(
            &format!("lines client {} received", client.index),
            &expected,
            &got_set,
        );
    }

    // Nothing else is on the way to anyone: the next line each client reads
    // is a marker sent after all of the above (client 0's for everyone but
    // client 0, then client 1's for client 0).
    clients[0].send("end 0\n");
    for client in &mut clients[1..] {
        assert_eq!(client.read_line(), "end 0\n", "client {}", client.index);
    }
    clients[1].send("end 1\n");
    for client in clients.iter_mut().filter(|client| client.index != 1) {
        assert_eq!(client.read_line(), "end 1\n", "client {}", client.index);
    }
    server.assert_alive();
}

// ---------------------------------------------------------------------------
// `pipeline`: parser and responder processes behind the connection process.

#[test]
fn pipeline_answers_1000_pipelined_requests_in_order() {
    const REQUESTS: usize = 1000;
    let server = Server::start(&[("pipeline", guest("pipeline"))], &[]);
    let mut requests = String::new();
    let mut expected = String::new();
    for n in 1..=REQUESTS {
        let (request, result) = match n % 5 {
            0 => (format!("echo message {n}"), format!("message {n}")),
            1 => (format!("upper word{n}x"), format!("WORD{n}X")),
            2 => (format!("add {n} 1000 -3"), format!("{}", n + 997)),
            3 if n % 100 == 3 => ("sleep 5".to_owned(), "slept 5".to_owned()),
            3 => (format!("echo {n}"), format!("{n}")),
            _ => (format!("upper mixed Case {n}"), format!("MIXED CASE {n}")),
        };
        requests.push_str(&request);
        requests.push('\n');
        expected.push_str(&format!("{n} {result}\n"));
    }
    // One write: every request is on its way before the first answer.
    let got = roundtrip(server.addr("pipeline"), requests.as_bytes());
    let got = String::from_utf8(got).expect("answers are UTF-8");
    let (got_lines, want_lines): (Vec<&str>, Vec<&str>) =
        (got.lines().collect(), expected.lines().collect());
    if let Some(i) = (0..want_lines.len()).find(|&i| got_lines.get(i) != Some(&want_lines[i])) {
        panic!(
            "answer {} of {REQUESTS}: expected {:?}, got {:?} ({} answers in all)",
            i + 1,
            want_lines[i],
            got_lines.get(i),
            got_lines.len()
        );
    }
    assert_eq!(got, expected, "the answers");
    server.assert_alive();
}
