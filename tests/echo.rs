//! Echo guests in all three styles (Rust SDK imports, plain WASI, hand-written
//! WAT) return exactly the bytes they are sent, for any bytes, any size, many
//! connections at once, and across a half-close.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;

use crate::util::{self, assert_bytes_eq, connect, guest, roundtrip, Server};

/// The three echo guests; they must behave identically.
const ECHOES: [&str; 3] = ["echo", "echo-wasi", "echo-wat"];

fn serve_echoes() -> Server {
    let apps: Vec<_> = ECHOES.iter().map(|&name| (name, guest(name))).collect();
    Server::start(&apps, &[])
}

#[test]
fn echo_guests_return_every_byte_value() {
    let server = serve_echoes();
    let mut payload: Vec<u8> = (0..=255).collect();
    payload.extend((0..=255u8).rev());
    payload.extend_from_slice(b"\r\n\0\n");
    for app in ECHOES {
        let got = roundtrip(server.addr(app), &payload);
        assert_bytes_eq(&format!("{app} echo of all byte values"), &payload, &got);
    }
    server.assert_alive();
}

#[test]
fn echo_guests_return_a_1mib_payload() {
    let server = serve_echoes();
    for (seed, app) in ECHOES.into_iter().enumerate() {
        let payload = util::pseudo_random_bytes(seed as u64, 1 << 20);
        let got = roundtrip(server.addr(app), &payload);
        assert_bytes_eq(&format!("{app} echo of 1 MiB"), &payload, &got);
    }
    server.assert_alive();
}

#[test]
fn two_hundred_concurrent_connections_each_get_their_own_data() {
    const CONNECTIONS: usize = 200;
    const READERS: usize = 8;
    let server = serve_echoes();
    // Open every connection and send on each before reading any, so all 200
    // processes are alive at once. Each payload is small enough to sit in the
    // socket buffers until it is read.
    let conns: Vec<(TcpStream, Vec<u8>)> = (0..CONNECTIONS)
        .map(|i| {
            let app = ECHOES[i % ECHOES.len()];
            let mut payload = format!("connection {i} to {app}:").into_bytes();
            payload.extend(util::pseudo_random_bytes(1000 + i as u64, 2000));
            let mut stream = connect(server.addr(app));
            stream.write_all(&payload).unwrap_or_else(|err| {
                panic!("connection {i}: failed to send: {err}");
            });
            (stream, payload)
        })
        .collect();
    let mut batches: Vec<Vec<(usize, TcpStream, Vec<u8>)>> = (0..READERS).map(|_| vec![]).collect();
    for (i, (stream, payload)) in conns.into_iter().enumerate() {
        batches[i % READERS].push((i, stream, payload));
    }
    thread::scope(|scope| {
        for batch in batches {
            scope.spawn(move || {
                for (i, mut stream, payload) in batch {
                    // The echo arrives while the connection is still open…
                    let mut got = vec![0; payload.len()];
                    stream.read_exact(&mut got).unwrap_or_else(|err| {
                        panic!("connection {i}: failed to read its echo: {err}");
                    });
                    assert_bytes_eq(&format!("connection {i}"), &payload, &got);
                    // …and nothing more follows it.
                    stream.shutdown(Shutdown::Write).unwrap();
                    let mut rest = Vec::new();
                    stream.read_to_end(&mut rest).unwrap_or_else(|err| {
                        panic!("connection {i}: failed to read to end: {err}");
                    });
                    assert_bytes_eq(&format!("connection {i} after its echo"), b"", &rest);
                }
            });
        }
    });
    server.assert_alive();
}

#[test]
fn echo_answers_before_half_close_and_ends_with_eof_after_it() {
    let server = serve_echoes();
    for app in ECHOES {
        crate::conformance::half_close_then_eof(&server, app);
    }
}

/// Bytes and the end of stream behind them, queued before the guest's first
/// read: the read gets fewer bytes than it asked for, and the end of stream
/// brought its event before that read, so none follows it. Each echo still
/// returns every byte and then ends its stream (the host must not take the
/// short read for "nothing more until the next event").
#[test]
fn bytes_and_end_of_stream_queued_together_are_both_seen() {
    const CONNECTIONS: usize = 60;
    let server = serve_echoes();
    // Send and half-close on every connection before reading any, so most
    // processes find both waiting when they first read.
    let conns: Vec<(TcpStream, Vec<u8>)> = (0..CONNECTIONS)
        .map(|i| {
            let app = ECHOES[i % ECHOES.len()];
            let payload = format!("connection {i} to {app}, then end of stream").into_bytes();
            let mut stream = connect(server.addr(app));
            stream.write_all(&payload).unwrap();
            stream.shutdown(Shutdown::Write).unwrap();
            (stream, payload)
        })
        .collect();
    for (i, (mut stream, payload)) in conns.into_iter().enumerate() {
        let mut got = Vec::new();
        stream.read_to_end(&mut got).unwrap_or_else(|err| {
            panic!("connection {i}: failed to read its echo to the end: {err}");
        });
        assert_bytes_eq(&format!("connection {i}"), &payload, &got);
    }
    server.assert_alive();
}
