//! Graceful drain: SIGTERM or SIGINT stops accepting at once, lets live
//! processes finish (up to `--drain-timeout`), and the host exits 0.

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};

use crate::util::{connect, guest, read_response, read_until_closed, ClientLoop, Server, DEADLINE};

/// Echoes one line over `stream` and checks it came back.
#[track_caller]
fn echo_line(stream: &mut TcpStream, line: &[u8]) {
    stream.write_all(line).unwrap();
    let mut got = vec![0; line.len()];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(got, line);
}

/// Whether a new connection to `addr` is refused (or dropped before any byte).
fn refused(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, DEADLINE) {
        Err(err) => err.kind() == ErrorKind::ConnectionRefused,
        Ok(mut stream) => {
            stream.set_read_timeout(Some(DEADLINE)).unwrap();
            let _ = stream.write_all(b"anyone?\n");
            matches!(stream.read(&mut [0; 8]), Ok(0) | Err(_))
        }
    }
}

#[test]
fn sigterm_stops_accepting_and_lets_live_connections_finish() {
    let server = Server::start(&[("echo", guest("echo"))], &[]);
    let addr = server.addr("echo");
    let mut live = connect(addr);
    echo_line(&mut live, b"before\n");
    server.signal(libc::SIGTERM);
    server.wait_for_log("stopped accepting", DEADLINE);
    assert!(refused(addr), "a new connection was served while draining");
    // The connection that was live goes on being served …
    echo_line(&mut live, b"while draining\n");
    assert!(server.is_alive(), "exited with a live connection");
    // … and once it ends, so does the host, with status 0.
    drop(live);
    let status = server.wait_exit(DEADLINE);
    assert!(status.success(), "{status}\n{}", server.log());
    assert!(server.log().contains("drained"), "{}", server.log());
}

#[test]
fn drain_timeout_ends_processes_still_live() {
    let server = Server::start(
        &[("echo", guest("echo"))],
        &args!["--drain-timeout", "200ms"],
    );
    let mut live = connect(server.addr("echo"));
    echo_line(&mut live, b"hello\n");
    server.signal(libc::SIGINT);
    let status = server.wait_exit(DEADLINE);
    assert!(status.success(), "{status}\n{}", server.log());
    assert!(server.log().contains("drain timeout"), "{}", server.log());
    // The host is gone, and the connection with it.
    assert!(read_until_closed(&mut live).is_empty());
}

#[test]
fn draining_http_app_finishes_the_request_in_flight() {
    let server = Server::start_logging(
        &[("cgi-probe", guest("cgi-probe"))],
        &args!["--http", "cgi-probe"],
        "info,mnvkd_host::app=debug",
    );
    let addr = server.addr("cgi-probe");
    // A request whose body is not all there: its process is live.
    let mut stream = connect(addr);
    stream
        .write_all(
            b"POST /env HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 4\r\n\r\nab",
        )
        .unwrap();
    server.wait_for_log("took a process place", DEADLINE);
    // Its response comes only after the rest of the body; the drain waits for it.
    server.signal(libc::SIGTERM);
    server.wait_for_log("stopped accepting", DEADLINE);
    assert!(refused(addr), "a new connection was served while draining");
    stream.write_all(b"cd").unwrap();
    let response = read_response(&mut BufReader::new(stream));
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(response.text().ends_with("abcd"), "{}", response.text());
    let status = server.wait_exit(DEADLINE);
    assert!(status.success(), "{status}\n{}", server.log());
}

#[test]
fn listener_app_serves_its_members_until_they_leave() {
    // The chat hub's accepts fail with `pipe` once the host drains; it
    // serves its members until the last one leaves, then ends.
    let server = Server::start(&[("chat", guest("chat"))], &[]);
    let addr = server.addr("chat");
    let mut member = connect(addr);
    let mut welcome = [0; 10];
    member.read_exact(&mut welcome).unwrap();
    assert_eq!(&welcome, b"* welcome ");
    server.signal(libc::SIGTERM);
    server.wait_for_log("stopped accepting", DEADLINE);
    assert!(refused(addr), "a new connection was served while draining");
    assert!(server.is_alive(), "exited with a member still in");
    drop(member);
    let status = server.wait_exit(DEADLINE);
    assert!(status.success(), "{status}\n{}", server.log());
    assert!(server.log().contains("drained"), "{}", server.log());
}

#[test]
fn listener_app_with_a_member_staying_ends_at_the_drain_timeout() {
    let server = Server::start(
        &[("chat", guest("chat"))],
        &args!["--drain-timeout", "500ms"],
    );
    let mut member = connect(server.addr("chat"));
    let mut welcome = [0; 10];
    member.read_exact(&mut welcome).unwrap();
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(DEADLINE);
    assert!(status.success(), "{status}\n{}", server.log());
    assert!(server.log().contains("drain timeout"), "{}", server.log());
}

/// One echo round trip on a new connection; the error, if any, as text.
fn try_echo(addr: SocketAddr, line: &[u8]) -> Result<(), String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, DEADLINE).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(DEADLINE))
        .map_err(|e| e.to_string())?;
    stream.write_all(line).map_err(|e| format!("write: {e}"))?;
    stream
        .shutdown(std::net::Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))?;
    let mut got = Vec::new();
    stream
        .read_to_end(&mut got)
        .map_err(|e| format!("read: {e}"))?;
    if got == line {
        Ok(())
    } else {
        Err(format!("echoed {:?}", String::from_utf8_lossy(&got)))
    }
}

#[test]
fn a_second_host_on_the_same_port_takes_over_with_no_failed_connection() {
    let old = Server::start(&[("echo", guest("echo"))], &args!["--reuse-port"]);
    let addr = old.addr("echo");
    let new = Server::start(
        &[("echo", guest("echo"))],
        &args!["--reuse-port", "--listen", format!("echo={addr}")],
    );
    assert_eq!(new.addr("echo"), addr);
    let client = ClientLoop::start(move || try_echo(addr, b"ping\n"));
    client.wait_for_more(50);
    old.signal(libc::SIGTERM);
    let status = old.wait_exit(DEADLINE);
    assert!(status.success(), "{status}\n{}", old.log());
    // The new host alone serves from here on.
    client.wait_for_more(50);
    let done = client.done();
    let failures = client.stop();
    assert!(
        failures.is_empty(),
        "{} of {} connections failed across the hand-over: {:?}",
        failures.len(),
        done,
        &failures[..failures.len().min(5)]
    );
    new.assert_alive();
}
