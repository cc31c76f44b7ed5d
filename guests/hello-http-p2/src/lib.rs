//! A `wasi:http/proxy` component (WASI 0.2, built for `wasm32-wasip2`), the
//! shape `wasmtime serve`, Spin and wasmCloud run. `GET /` (and any other
//! GET or HEAD but those below) answers `hello from hello-http-p2`;
//! `POST /echo` streams the request body back; `GET /outbound?AUTHORITY`
//! makes an outgoing `GET http://AUTHORITY/` and answers what came of it;
//! `GET /count` answers how many requests this instance has seen;
//! `GET /big/N` streams N bytes (4 KiB writes), `GET /bulk/N` too in
//! writes as large as the host permits. More paths misbehave on purpose for the
//! host's tests: `/noresponse` sets no response, `/trap` panics, `/spin`
//! loops forever, `/grow` allocates without bound, `/deep` recurses without
//! end, `/endless` streams a body without end, `/spinwrite` streams one
//! without end and without ever waiting (it polls `check-write` in a busy
//! loop), and `/leak/fields`, `/leak/pollables` and `/leak/streams` create
//! resources without end and never drop them.

use std::io::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};

use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};
use wasi::io::streams::{OutputStream, StreamError};

wasi::http::proxy::export!(Hello);

/// Requests this instance has handled (`/count`).
static SEEN: AtomicU32 = AtomicU32::new(0);

struct Hello;

impl wasi::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        match (request.method(), path.as_str()) {
            (Method::Post, "/echo") => echo(request, out),
            (Method::Get, path) if path.starts_with("/outbound?") => {
                let text = outbound(&path["/outbound?".len()..]);
                respond(out, 200, text.as_bytes())
            }
            (Method::Get, "/count") => {
                // Counts the requests this instance has seen: always 1 with a
                // fresh instance per request.
                let seen = SEEN.fetch_add(1, Ordering::Relaxed) + 1;
                respond(out, 200, format!("{seen}\n").as_bytes())
            }
            // Returns without a response: the host answers 500.
            (Method::Get, path) if path.starts_with("/big/") => {
                let size = path["/big/".len()..].parse().unwrap_or(0);
                stream(out, Some(size), false)
            }
            (Method::Get, path) if path.starts_with("/bulk/") => {
                bulk(out, path["/bulk/".len()..].parse().unwrap_or(0))
            }
            // `size` bytes streamed, then a trailer field `x-sent: size`.
            (Method::Get, path) if path.starts_with("/trailers/") => {
                let size: u64 = path["/trailers/".len()..].parse().unwrap_or(0);
                let trailers = Fields::from_list(&[("x-sent".into(), size.to_string().into())])
                    .expect("valid trailers");
                stream_then(out, Some(size), false, Some(trailers))
            }
            (_, "/endless") => stream(out, None, false),
            (_, "/spinwrite") => stream(out, None, true),
            (_, path) if path.starts_with("/leak/") => leak(&path["/leak/".len()..]),
            (_, "/noresponse") => drop(out),
            (_, "/trap") => panic!("hello-http-p2: /trap asked for a trap"),
            (_, "/spin") => spin(),
            (_, "/grow") => grow(),
            (_, "/deep") => {
                let depth = deep(std::hint::black_box(0));
                respond(out, 200, format!("{depth}\n").as_bytes())
            }
            // Any other GET (or HEAD): the hello (the conformance checks ask
            // several paths; the host drops a HEAD response's body).
            (Method::Get | Method::Head, _) => respond(out, 200, b"hello from hello-http-p2\n"),
            _ => respond(out, 404, b"not found\n"),
        }
    }
}

/// Sends a whole response with a Content-Length.
fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::from_list(&[
        ("content-type".into(), b"text/plain".to_vec()),
        ("content-length".into(), body.len().to_string().into_bytes()),
    ])
    .expect("valid headers");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("valid status");
    let outgoing = response.body().expect("body taken once");
    ResponseOutparam::set(out, Ok(response));
    {
        let mut stream = outgoing.write().expect("stream taken once");
        stream.write_all(body).expect("write body");
        stream.flush().expect("flush body");
    }
    OutgoingBody::finish(outgoing, None).expect("finish body");
}

/// Streams the request body back as it arrives (no length known up front:
/// the host frames it, chunked on HTTP/1.1).
fn echo(request: IncomingRequest, out: ResponseOutparam) {
    let Ok(incoming) = request.consume() else {
        ResponseOutparam::set(out, Err(ErrorCode::InternalError(None)));
        return;
    };
    let input = incoming.stream().expect("stream taken once");
    let (outgoing, output) = start_octet_stream(out);
    loop {
        match input.blocking_read(64 * 1024) {
            Ok(chunk) => {
                // blocking_write_and_flush takes at most 4096 bytes a call.
                for piece in chunk.chunks(4096) {
                    output.blocking_write_and_flush(piece).expect("write body");
                }
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                panic!("reading the request body: {}", e.to_debug_string())
            }
        }
    }
    drop(input);
    drop(output);
    OutgoingBody::finish(outgoing, None).expect("finish body");
}

/// Sets a 200 `application/octet-stream` response on `out` and returns
/// its body and the body's stream, for the caller to write and finish.
fn start_octet_stream(out: ResponseOutparam) -> (OutgoingBody, OutputStream) {
    let headers =
        Fields::from_list(&[("content-type".into(), b"application/octet-stream".to_vec())])
            .expect("valid headers");
    let response = OutgoingResponse::new(headers);
    let outgoing = response.body().expect("body taken once");
    ResponseOutparam::set(out, Ok(response));
    let output = outgoing.write().expect("stream taken once");
    (outgoing, output)
}

/// Streams `size` bytes (`None`: without end) with no length up front: with
/// `blocking_write_and_flush` (the guest waits while the client does not
/// read), or, when `spin`, with `check-write` polled in a busy loop (the
/// guest never waits: only the host's CPU budget stops it).
fn stream(out: ResponseOutparam, size: Option<u64>, spin: bool) {
    stream_then(out, size, spin, None)
}

/// [`stream`], then finishes the body with `trailers`.
fn stream_then(out: ResponseOutparam, size: Option<u64>, spin: bool, trailers: Option<Fields>) {
    let (outgoing, output) = start_octet_stream(out);
    let chunk = [b'x'; 4096];
    let mut left = size.unwrap_or(u64::MAX);
    while left > 0 {
        let n = left.min(chunk.len() as u64);
        if spin {
            let permitted = output.check_write().expect("check-write");
            if permitted == 0 {
                continue;
            }
            let n = n.min(permitted);
            output.write(&chunk[..n as usize]).expect("write body");
            left -= n;
        } else {
            output
                .blocking_write_and_flush(&chunk[..n as usize])
                .expect("write body");
            left -= n;
        }
    }
    drop(output);
    OutgoingBody::finish(outgoing, trailers).expect("finish body");
}

/// Streams `size` bytes in writes as large as `check-write` permits,
/// waiting on the stream's pollable in between.
fn bulk(out: ResponseOutparam, size: u64) {
    let (outgoing, output) = start_octet_stream(out);
    let chunk = zeros();
    let ready = output.subscribe();
    let mut left = size;
    while left > 0 {
        ready.block();
        let n = output
            .check_write()
            .expect("check-write")
            .min(left)
            .min(chunk.len() as u64);
        if n > 0 {
            output.write(&chunk[..n as usize]).expect("write body");
            left -= n;
        }
    }
    drop(ready);
    output.blocking_flush().expect("flush body");
    drop(output);
    OutgoingBody::finish(outgoing, None).expect("finish body");
}

/// One MiB of zeros that nothing writes: pages only read cost no host
/// memory, so the host's own buffering is what `/bulk` measures.
fn zeros() -> &'static [u8] {
    const PAGES: usize = 16;
    let first = core::arch::wasm32::memory_grow(0, PAGES);
    assert_ne!(first, usize::MAX, "memory.grow failed");
    // SAFETY: the pages just grown are zero (the Wasm spec), no allocator
    // owns them, and nothing writes them.
    unsafe { std::slice::from_raw_parts((first * 65536) as *const u8, PAGES * 65536) }
}

/// Creates resources of the `kind` asked for (`fields`, `pollables`,
/// `streams`: a response, its body and the body's stream) without end and
/// never drops them: the host's resource limit must stop it.
fn leak(kind: &str) -> ! {
    loop {
        match kind {
            "pollables" => {
                std::mem::forget(wasi::clocks::monotonic_clock::subscribe_duration(1 << 40))
            }
            "streams" => {
                let response = OutgoingResponse::new(Fields::new());
                let body = response.body().expect("body taken once");
                std::mem::forget(body.write().expect("stream taken once"));
                std::mem::forget(body);
                std::mem::forget(response);
            }
            _ => std::mem::forget(Fields::new()),
        }
    }
}

/// `GET http://AUTHORITY/` through wasi:http/outgoing-handler: `status N`
/// with the response's status, or `error E` with the error code.
fn outbound(authority: &str) -> String {
    let request = OutgoingRequest::new(Fields::new());
    request
        .set_scheme(Some(&Scheme::Http))
        .expect("valid scheme");
    if request.set_authority(Some(authority)).is_err() {
        return "error invalid authority\n".to_owned();
    }
    request.set_path_with_query(Some("/")).expect("valid path");
    let future = match outgoing_handler::handle(request, None) {
        Ok(future) => future,
        Err(code) => return format!("error {code:?}\n"),
    };
    future.subscribe().block();
    match future.get() {
        Some(Ok(Ok(response))) => format!("status {}\n", response.status()),
        Some(Ok(Err(code))) => format!("error {code:?}\n"),
        Some(Err(())) | None => "error no response\n".to_owned(),
    }
}

/// Never returns: the host's CPU budget or request timeout must end it.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Recurses without end: a stack limit must stop it (here Rust's shadow
/// stack in linear memory runs out first: an out-of-bounds access).
#[allow(unconditional_recursion)]
fn deep(n: u64) -> u64 {
    let frame = std::hint::black_box([n; 64]);
    deep(frame[n as usize % 64] + 1) + frame[0]
}

/// Allocates and touches memory until the host's memory cap stops it.
fn grow() -> ! {
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        held.push(vec![1; 1 << 20]);
        std::hint::black_box(&held);
    }
}
