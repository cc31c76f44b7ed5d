//! An app's process limit (`--max-processes`): requests and connections past
//! it wait in a fair queue, are all served, and in the order they came.

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::thread;

use crate::util::{connect, guest, read_response, Server, DEADLINE};

/// The log filter that shows the process limit's queue.
const QUEUE_LOG: &str = "info,mnvkd_host::app=debug";

fn probe(extra: &[&str]) -> Server {
    let mut flags = args!["--http", "cgi-probe"];
    flags.extend(extra.iter().map(std::ffi::OsString::from));
    Server::start_logging(&[("cgi-probe", guest("cgi-probe"))], &flags, QUEUE_LOG)
}

fn send(stream: &mut TcpStream, request: &str) {
    stream.write_all(request.as_bytes()).unwrap();
}

#[test]
fn waiting_requests_are_served_in_arrival_order() {
    // One worker, one place: each queued request's process runs alone, so
    // the clocks they report follow the order they were let in.
    let server = probe(&["--threads", "1", "--max-processes", "1"]);
    let addr = server.addr("cgi-probe");
    let mut holder = connect(addr);
    send(
        &mut holder,
        "POST /env HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\n",
    );
    // Its process holds the only place while it waits for the body byte.
    server.wait_for_log("took a process place", DEADLINE);
    let mut waiting = Vec::new();
    for i in 1..=10 {
        let mut stream = connect(addr);
        send(
            &mut stream,
            "GET /clock HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        );
        server.wait_for_logs("waits for a process place", i, DEADLINE);
        waiting.push(stream);
    }
    holder.write_all(b"x").unwrap();
    let response = read_response(&mut BufReader::new(holder));
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        response.text().contains("BODY-LENGTH=1"),
        "{}",
        response.text()
    );
    let clocks: Vec<u128> = waiting
        .into_iter()
        .enumerate()
        .map(|(i, stream)| {
            let response = read_response(&mut BufReader::new(stream));
            assert_eq!(response.status, 200, "request {i}: {}", response.text());
            response.text().trim().parse().unwrap_or_else(|err| {
                panic!("request {i}: not a clock: {:?}: {err}", response.text())
            })
        })
        .collect();
    assert!(
        clocks.windows(2).all(|w| w[0] < w[1]),
        "served out of arrival order: {clocks:?}"
    );
    server.assert_alive();
}

#[test]
fn ten_times_the_process_limit_are_all_answered() {
    let server = probe(&["--max-processes", "2"]);
    let addr = server.addr("cgi-probe");
    let clients: Vec<_> = (0..20)
        .map(|i| {
            thread::spawn(move || {
                let mut stream = connect(addr);
                let body = format!("request {i}");
                send(
                    &mut stream,
                    &format!(
                        "POST /env HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    ),
                );
                let response = read_response(&mut BufReader::new(stream));
                (i, response.status, response.text())
            })
        })
        .collect();
    for client in clients {
        let (i, status, text) = client.join().unwrap();
        assert_eq!(status, 200, "request {i}: {text}");
        assert!(
            text.ends_with(&format!("request {i}")),
            "request {i}: {text}"
        );
    }
    server.assert_alive();
}
