//! Coroutines inside one micro-heap (`mnvkd_guest::task`): the `microheap`
//! scenario guest (first line names the scenario), `http-coro` (a request
//! reader and a response writer coroutine joined in the heap), and the
//! `dup` and `shutdown` imports they use.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;

use crate::util::{connect, guest, read_response, read_until_closed, roundtrip, Server, DEADLINE};

/// Serves `microheap` (its manifest allows a 64 MiB micro-heap).
fn serve() -> Server {
    Server::start(&[("microheap", guest("microheap"))], &[])
}

/// Sends `command` as a line, half-closes, returns the whole reply.
#[track_caller]
fn ask(server: &Server, command: &str) -> String {
    let got = roundtrip(server.addr("microheap"), format!("{command}\n").as_bytes());
    String::from_utf8(got).expect("a UTF-8 reply")
}

/// The value of `key=` in `line`.
#[track_caller]
fn value<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// A connection to `microheap` that has sent `command`, and its reader.
fn command(server: &Server, command: &str) -> (TcpStream, BufReader<TcpStream>) {
    let mut conn = connect(server.addr("microheap"));
    let reader = BufReader::new(conn.try_clone().unwrap());
    conn.write_all(format!("{command}\n").as_bytes()).unwrap();
    (conn, reader)
}

/// A subscriber of `fanout`: its connection, reader and the number the hub
/// welcomed it with.
fn subscribe(server: &Server) -> (TcpStream, BufReader<TcpStream>, String) {
    let conn = connect(server.addr("fanout"));
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut welcome = String::new();
    reader.read_line(&mut welcome).unwrap();
    assert!(welcome.starts_with("welcome "), "{welcome:?}");
    (conn, reader, welcome.trim()["welcome ".len()..].to_owned())
}

#[test]
fn microheap_coroutines_run_in_spawn_and_wake_order() {
    let server = serve();
    assert_eq!(
        ask(&server, "order"),
        "order x0 y0 z0 x1 y1 z1 x2 y2 z2\nchannel 0 1 2 3 4 5 6 7 8 9\n"
    );
}

#[test]
fn microheap_a_full_in_heap_pipe_or_channel_holds_its_writer_back() {
    let server = serve();
    let reply = ask(&server, "backpressure");
    let mut lines = reply.lines();
    let pipe = lines.next().expect("a pipe line");
    assert_eq!(value(pipe, "total"), "10000", "{reply}");
    assert_eq!(
        value(pipe, "max_buffered"),
        "16",
        "never past the pipe's 16 bytes: {reply}"
    );
    assert_eq!(
        value(pipe, "full_seen"),
        "true",
        "the writer had to wait: {reply}"
    );
    let channel = lines.next().expect("a channel line");
    assert_eq!(value(channel, "total"), "100", "{reply}");
    assert_eq!(
        value(channel, "max_queued"),
        "4",
        "never past the channel's 4: {reply}"
    );
}

#[test]
fn microheap_a_thousand_coroutines_share_one_process() {
    let server = serve();
    let reply = ask(&server, "many 1000");
    assert_eq!(value(&reply, "coroutines"), "1000", "{reply}");
    assert_eq!(value(&reply, "live"), "1000", "all alive at once: {reply}");
    // Ten rounds of the token through coroutines 0..1000, each adding its number.
    assert_eq!(
        value(&reply, "sum"),
        (10 * (0..1000u64).sum::<u64>()).to_string()
    );
    // The same heap holds 100 000 waiting coroutines.
    let reply = ask(&server, "mem 100000");
    assert_eq!(value(&reply, "coroutines"), "100000", "{reply}");
    let heap: u64 = value(&reply, "heap_after").parse().unwrap();
    assert!(
        heap <= 64 << 20,
        "100 000 coroutines in at most 64 MiB: {reply}"
    );
}

#[test]
fn microheap_a_trapping_coroutine_takes_only_its_process_down() {
    let server = serve();
    let addr = server.addr("microheap");
    // A neighbour process, mid-conversation while the other one traps.
    let mut neighbour = connect(addr);
    neighbour.write_all(b"echo\nbefore\n").unwrap();
    let mut neighbour_reader = BufReader::new(neighbour.try_clone().unwrap());
    let mut line = String::new();
    neighbour_reader.read_line(&mut line).unwrap();
    assert_eq!(line, "before\n");

    let mut doomed = connect(addr);
    doomed.write_all(b"trap\nhello\n").unwrap();
    let mut doomed_reader = BufReader::new(doomed.try_clone().unwrap());
    line.clear();
    doomed_reader.read_line(&mut line).unwrap();
    assert_eq!(line, "hello\n", "the echoing coroutine answers first");
    doomed.write_all(b"boom\n").unwrap();
    let rest = read_until_closed(doomed_reader.get_mut());
    assert_eq!(rest, b"boom\n", "echoed, then the process is gone");
    let killed = server.wait_for_log("process killed", DEADLINE);
    assert!(
        killed.contains("app=microheap") || killed.contains("microheap"),
        "{killed}"
    );

    neighbour.write_all(b"after\n").unwrap();
    line.clear();
    neighbour_reader.read_line(&mut line).unwrap();
    assert_eq!(line, "after\n", "the other process runs on");
    assert_eq!(
        ask(&server, "order").lines().count(),
        2,
        "new processes start"
    );
    server.assert_alive();
}

/// Sends 1000 pipelined requests to `app` in one go and checks the 1000
/// answers arrive in order, then the connection closes.
#[track_caller]
fn pipeline_1000(server: &Server, app: &str) {
    let mut requests = String::new();
    for i in 0..1000 {
        let close = if i == 999 {
            "Connection: close\r\n"
        } else {
            ""
        };
        requests.push_str(&format!("GET /r{i} HTTP/1.1\r\nHost: x\r\n{close}\r\n"));
    }
    let got = roundtrip(server.addr(app), requests.as_bytes());
    let mut reader = BufReader::new(&got[..]);
    for i in 0..1000 {
        let response = read_response(&mut reader);
        assert_eq!(response.status, 200, "{app}: response {i}");
        assert_eq!(
            response.text(),
            format!("/r{i}\n"),
            "{app}: response {i} in order"
        );
    }
    assert!(
        reader.fill_buf().unwrap().is_empty(),
        "{app}: nothing after the 1000th"
    );
}

/// Three requests one at a time on one connection to `app`'s hello; returns
/// the connection for more.
#[track_caller]
fn three_keep_alive_requests(server: &Server, app: &str) -> (TcpStream, BufReader<TcpStream>) {
    let mut conn = connect(server.addr(app));
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    for _ in 0..3 {
        conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut reader).text(), "Hello, World!\n");
    }
    (conn, reader)
}

#[test]
fn microheap_http_coro_answers_1000_pipelined_requests_in_order() {
    let server = Server::start(&[("http-coro", guest("http-coro"))], &[]);
    pipeline_1000(&server, "http-coro");

    // Keep-alive, one request at a time, and the shared framing's refusals.
    let (mut conn, mut reader) = three_keep_alive_requests(&server, "http-coro");
    conn.write_all(
        b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .unwrap();
    assert_eq!(
        read_response(&mut reader).text(),
        "/p\n",
        "a chunked body is framed"
    );
    conn.write_all(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .unwrap();
    assert_eq!(
        read_response(&mut reader).status,
        400,
        "smuggling framing refused"
    );
    assert!(
        read_until_closed(reader.get_mut()).is_empty(),
        "then closed"
    );
}

/// `http-coro-many`: one listener-mode process serves every connection as
/// coroutines, waiting through `watch`. 200 clients connect and stay; each
/// asks in turn (in an order the executor does not choose), twice, and
/// gets its own answer; one of them then pipelines 1000 requests.
#[test]
fn microheap_http_coro_many_serves_200_connections_from_one_process() {
    let server = Server::start(
        &[("http-coro-many", guest("http-coro-many"))],
        &["--admin".into(), "127.0.0.1:0".into()],
    );
    let addr = server.addr("http-coro-many");
    let mut clients: Vec<(TcpStream, BufReader<TcpStream>)> = (0..200)
        .map(|_| {
            let conn = connect(addr);
            let reader = BufReader::new(conn.try_clone().unwrap());
            (conn, reader)
        })
        .collect();
    for round in 0..2 {
        // Every client asks before any reads: 200 requests in flight.
        let order: Vec<usize> = (0..200).map(|i| (i * 37 + round * 11) % 200).collect();
        for &i in &order {
            let request = format!("GET /r{round}c{i} HTTP/1.1\r\nHost: x\r\n\r\n");
            clients[i].0.write_all(request.as_bytes()).unwrap();
        }
        for &i in order.iter().rev() {
            assert_eq!(
                read_response(&mut clients[i].1).text(),
                format!("/r{round}c{i}\n"),
                "round {round}, client {i}"
            );
        }
    }
    // One process holds all 200 connections.
    let listing = crate::util::http_get(server.admin_addr(), "/processes");
    let listing = String::from_utf8_lossy(&listing.body).into_owned();
    assert_eq!(
        listing.matches("\"http-coro-many\"").count(),
        1,
        "one process in /processes: {listing}"
    );
    pipeline_1000(&server, "http-coro-many");
    drop(clients);
}

/// Serves `http-coro-many` from a temp dir with its manifest plus `extra`
/// lines and `env` lines in its `[env]`.
fn serve_http_coro_many(extra: &str, env: &str) -> (crate::util::TempDir, Server) {
    let dir = crate::util::TempDir::new();
    let manifest = format!("kind = \"listener\"\nmax_memory = \"64MiB\"\n{extra}[env]\n{env}");
    let app = crate::util::app_with_manifest(&dir, "http-coro-many", "http-coro-many", &manifest);
    let server = Server::start(&[("http-coro-many", app)], &[]);
    (dir, server)
}

/// `http-coro-many` with `IDLE_SECS` set: the process-wide sweeper ends a
/// keep-alive connection that stays idle, so idle clients cannot hold the
/// process's handles.
#[test]
fn microheap_http_coro_many_closes_an_idle_connection() {
    let (_dir, server) = serve_http_coro_many("", "IDLE_SECS = \"1\"\n");
    let (_conn, mut reader) = three_keep_alive_requests(&server, "http-coro-many");
    // Nothing more is sent: the server ends the connection by itself.
    assert!(
        read_until_closed(reader.get_mut()).is_empty(),
        "the idle connection was closed with nothing more sent"
    );
    // The process still serves new connections.
    three_keep_alive_requests(&server, "http-coro-many");
}

/// More clients than the process has handles: `accept` says `limit`, the
/// others wait in the listen backlog, and each is served once the sweeper
/// has closed idle connections to make room.
#[test]
fn microheap_http_coro_many_serves_clients_beyond_its_handles_as_idle_ones_close() {
    let (_dir, server) = serve_http_coro_many("max_handles = 12\n", "IDLE_SECS = \"1\"\n");
    let addr = server.addr("http-coro-many");
    // 30 clients, each asking once and then staying idle: at most 11 are
    // served at a time (handle 0 is the listener).
    let mut clients: Vec<(TcpStream, BufReader<TcpStream>)> = (0..30)
        .map(|i| {
            let mut conn = connect(addr);
            let request = format!("GET /c{i} HTTP/1.1\r\nHost: x\r\n\r\n");
            conn.write_all(request.as_bytes()).unwrap();
            let reader = BufReader::new(conn.try_clone().unwrap());
            (conn, reader)
        })
        .collect();
    for (i, (_, reader)) in clients.iter_mut().enumerate() {
        assert_eq!(
            read_response(reader).text(),
            format!("/c{i}\n"),
            "client {i}"
        );
    }
    server.assert_alive();
}

/// A slowloris client (a request head a byte at a time, never finished)
/// makes progress, so the idle timeout never ends it; the request timeout
/// does: 408, then the connection closes, while another client is served.
#[test]
fn microheap_http_coro_many_answers_a_slowloris_408() {
    let (_dir, server) =
        serve_http_coro_many("", "IDLE_SECS = \"3600\"\nREQUEST_TIMEOUT_SECS = \"1\"\n");
    let addr = server.addr("http-coro-many");
    let mut slow = connect(addr);
    let mut trickle = slow.try_clone().unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = std::sync::Arc::clone(&done);
    let writer = thread::spawn(move || {
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ".iter().cycle() {
            if stop.load(std::sync::atomic::Ordering::Relaxed)
                || trickle.write_all(&[*byte]).is_err()
            {
                return;
            }
            thread::sleep(std::time::Duration::from_millis(100));
        }
    });
    three_keep_alive_requests(&server, "http-coro-many");
    let reply = read_until_closed(&mut slow);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        reply.starts_with(b"HTTP/1.1 408 Request Timeout\r\n"),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
}

/// On drain, `http-coro-many` stops reading requests: an idle keep-alive
/// client is let go, and the host exits drained, well before its 30 s
/// drain timeout (the idle timeout is an hour here).
#[test]
fn microheap_http_coro_many_lets_its_clients_go_when_the_host_drains() {
    let (_dir, server) = serve_http_coro_many("", "IDLE_SECS = \"3600\"\n");
    let (_conn, mut reader) = three_keep_alive_requests(&server, "http-coro-many");
    server.signal(libc::SIGTERM);
    assert!(
        read_until_closed(reader.get_mut()).is_empty(),
        "the idle client was let go"
    );
    server.assert_drained();
}

#[test]
fn microheap_shutdown_half_closes_while_reading_goes_on() {
    let server = serve();
    let mut conn = connect(server.addr("microheap"));
    conn.write_all(b"halfclose\n").unwrap();
    // The guest's writer coroutine says `ready`, then shuts its side down.
    let mut got = Vec::new();
    conn.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"ready\n", "end of stream after `ready`");
    // Our side is still open, and the guest's reader coroutine still reads.
    conn.write_all(&[b'x'; 1000]).unwrap();
    conn.shutdown(Shutdown::Write).unwrap();
    let line = server.wait_for_log("halfclose: read", DEADLINE);
    assert!(
        line.contains("read 1000 bytes after shutdown; write after it refused: true"),
        "{line}"
    );
}

#[test]
fn microheap_dup_shares_a_connection_between_parent_and_child() {
    let server = serve();
    let (mut conn, mut reader) = command(&server, "dup");
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "child hello\n", "the child writes through its handle");
    conn.write_all(b"ping\n").unwrap();
    // The parent answers, closes its handle and ends; the child's handle
    // keeps the connection up until the child says goodbye and ends too.
    let rest = read_until_closed(reader.get_mut());
    assert_eq!(
        String::from_utf8_lossy(&rest),
        "parent ping\nchild bye after done\n"
    );
    server.wait_for_log("dup: child ended with", DEADLINE);
}

#[test]
fn microheap_proxy_coro_copies_both_ways_and_passes_the_half_close_on() {
    // An upstream that answers only after the client's end of stream.
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = upstream.local_addr().unwrap();
    let server_side = thread::spawn(move || {
        let (mut conn, _) = upstream.accept().unwrap();
        conn.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).unwrap();
        conn.write_all(format!("got {} bytes\n", got.len()).as_bytes())
            .unwrap();
        got
    });
    let dir = crate::util::TempDir::new();
    let manifest = format!("allow_outbound = [\"{addr}\"]\n\n[env]\nUPSTREAM = \"{addr}\"\n");
    let app = crate::util::app_with_manifest(&dir, "proxy-coro", "proxy-coro", &manifest);
    let server = Server::start(&[("proxy-coro", app)], &[]);
    let payload = crate::util::pseudo_random_bytes(7, 300_000);
    let reply = roundtrip(server.addr("proxy-coro"), &payload);
    assert_eq!(String::from_utf8_lossy(&reply), "got 300000 bytes\n");
    assert!(
        server_side.join().unwrap() == payload,
        "the bytes arrive whole"
    );
}

#[test]
fn microheap_fanout_serves_every_subscriber_from_one_process() {
    let server = Server::start(&[("fanout", guest("fanout"))], &[]);
    let mut clients: Vec<_> = (0..3).map(|_| subscribe(&server)).collect();
    let sender = clients[0].2.clone();
    clients[0].0.write_all(b"hello all\n").unwrap();
    for (_, reader, number) in &mut clients[1..] {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(
            line,
            format!("{sender}: hello all\n"),
            "subscriber {number}"
        );
    }
    // The sender does not get its own line: the next it reads is another's.
    clients[1].0.write_all(b"back\n").unwrap();
    let from = clients[1].2.clone();
    let mut line = String::new();
    clients[0].1.read_line(&mut line).unwrap();
    assert_eq!(line, format!("{from}: back\n"));
    let processes = server.log().matches("process killed").count();
    assert_eq!(processes, 0, "{}", server.log());
}

#[test]
fn microheap_http_coro_in_c_answers_1000_pipelined_requests_in_order() {
    let server = Server::start(&[("http-coro-c", guest("http-coro-c"))], &[]);
    pipeline_1000(&server, "http-coro-c");
    let (mut conn, mut reader) = three_keep_alive_requests(&server, "http-coro-c");
    conn.write_all(b"POST /skip HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut reader).text(), "/skip\n");
    assert_eq!(
        read_response(&mut reader).text(),
        "/next\n",
        "the body was skipped"
    );
    conn.write_all(b"bad\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut reader).status, 400);
    assert!(
        read_until_closed(reader.get_mut()).is_empty(),
        "then closed"
    );
}

#[test]
fn microheap_sleepers_wake_in_deadline_order_beside_a_waiting_reader() {
    let server = serve();
    let (mut conn, mut reader) = command(&server, "timers");
    let mut got = String::new();
    for _ in 0..3 {
        reader.read_line(&mut got).unwrap();
    }
    // The reader coroutine waits on the connection all along: the sleeper
    // beside it still wakes (one poll with a timeout serves both).
    assert_eq!(got, "order short long\nselect timeout\nslept\n");
    conn.write_all(b"x\n").unwrap();
    got.clear();
    reader.read_line(&mut got).unwrap();
    assert_eq!(got, "read x\n");
}

#[test]
fn microheap_c_coroutines_yield_in_turn_wait_and_echo() {
    let server = Server::start(&[("coro-c", guest("coro-c"))], &[]);
    let got = roundtrip(server.addr("coro-c"), b"hello from C\nand more\n");
    assert_eq!(
        String::from_utf8_lossy(&got),
        "a0 b0 a1 b1 a2 b2\nhello from C\nand more\n"
    );
}

#[test]
fn microheap_fanout_serves_its_subscribers_through_a_drain_then_ends() {
    let server = Server::start(&[("fanout", guest("fanout"))], &[]);
    let (mut first, first_reader, number) = subscribe(&server);
    let (second, mut second_reader, _) = subscribe(&server);
    server.signal(libc::SIGTERM);
    server.wait_for_log("stopped accepting", DEADLINE);
    // The hub's accept coroutine learns of the drain; the others go on.
    first.write_all(b"still here\n").unwrap();
    let mut line = String::new();
    second_reader.read_line(&mut line).unwrap();
    assert_eq!(line, format!("{number}: still here\n"));
    assert!(server.is_alive(), "exited with subscribers still in");
    drop((first, first_reader, second, second_reader));
    let status = server.wait_exit(DEADLINE);
    assert!(status.success(), "{status}\n{}", server.log());
    assert!(
        !server.log().contains("drain timeout"),
        "the hub ended by itself: {}",
        server.log()
    );
}
