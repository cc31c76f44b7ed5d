//! HTTP echo: answers every request with a text/plain copy of it: the
//! request line, each header field, a blank line, then the body. The path
//! `/fail` makes the handler fail instead (the server answers 500).
//!
//! Bodies up to 4 MiB are taken. The environment (from the app's manifest
//! `[env]`) can shorten the timeouts, which the tests use:
//! `HTTP_HEAD_TIMEOUT_MS`, `HTTP_BODY_TIMEOUT_MS`, `HTTP_IDLE_TIMEOUT_MS`;
//! `HTTP_SERVE_EACH=1` serves every connection of a listener-mode app
//! from one process (`Server::serve_each`) instead of this process's own.

use std::time::Duration;

use mnvkd_guest::http::{Request, Response, Server};

/// The largest request body this app takes.
const MAX_BODY: usize = 4 << 20;

/// A timeout from the environment variable `name`, in milliseconds.
fn timeout(name: &str, default: Option<Duration>) -> Option<Duration> {
    match std::env::var(name).ok().and_then(|ms| ms.parse().ok()) {
        Some(ms) => Some(Duration::from_millis(ms)),
        None => default,
    }
}

fn main() -> std::io::Result<()> {
    let server = Server::new()
        .max_body(MAX_BODY)
        .head_timeout(timeout(
            "HTTP_HEAD_TIMEOUT_MS",
            Some(Duration::from_secs(10)),
        ))
        .body_timeout(timeout(
            "HTTP_BODY_TIMEOUT_MS",
            Some(Duration::from_secs(30)),
        ))
        .idle_timeout(timeout(
            "HTTP_IDLE_TIMEOUT_MS",
            Some(Duration::from_secs(30)),
        ));
    // The echoed head, rebuilt in one buffer reused across requests.
    let mut head = Vec::new();
    let echo = move |req: &Request<'_>, res: &mut Response<'_>| {
        if req.path == "/fail" {
            return Err(std::io::Error::other("asked to fail"));
        }
        head.clear();
        head.extend_from_slice(req.method.as_bytes());
        head.push(b' ');
        head.extend_from_slice(req.path.as_bytes());
        head.extend_from_slice(if req.version == 0 {
            b" HTTP/1.0\n"
        } else {
            b" HTTP/1.1\n"
        });
        for header in req.headers {
            head.extend_from_slice(header.name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(header.value);
            head.push(b'\n');
        }
        head.push(b'\n');
        res.header("Content-Type", "text/plain")
            .body_parts(&[&head, req.body])
    };
    if std::env::var("HTTP_SERVE_EACH").is_ok_and(|on| on == "1") {
        server.serve_each(echo)
    } else {
        server.serve(echo)
    }
}
