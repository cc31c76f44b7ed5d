//! The admin endpoint (`serve --admin ADDR`): health, readiness, metrics,
//! the live processes and a page showing them, served by the host itself.
//!
//! It runs on threads of its own with blocking std sockets, not on the
//! kernel: an operator's probe must answer while the guests saturate every
//! worker, and a slow scraper must not take a worker from them. Each
//! connection gets a thread (at most [`MAX_CONNECTIONS`]; beyond, a 503),
//! with keep-alive, as Prometheus scrapes on one connection.
//!
//! | path | answer |
//! | --- | --- |
//! | `/healthz` | 200 while the host runs |
//! | `/readyz` | 200 while accepting, 503 once draining |
//! | `/metrics` | Prometheus text format ([`metrics`]) |
//! | `/processes` | JSON list of live processes ([`processes`]) |
//! | `/` | an HTML page of apps, rates and processes, updating itself |

pub mod metrics;
pub mod processes;

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::app::CurrentApp;
use crate::drain::Drain;
use crate::kernel::Kernel;

/// Most admin connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// How long an admin connection may sit idle (or send a request head).
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// What the admin endpoint reports on.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The served apps (each one's current version).
    pub apps: Vec<Arc<CurrentApp>>,
    /// The kernel, for run-queue and worker figures.
    pub kernel: Kernel,
    /// The drain, for `/readyz`.
    pub drain: Arc<Drain>,
    /// When serving began.
    pub started: Instant,
}

/// Binds `addr` and serves the admin endpoint on it from a thread of its
/// own; returns the bound address (port 0 picks one).
///
/// # Errors
/// When the address cannot be bound or the thread started.
pub fn start(addr: SocketAddr, state: AdminState) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .with_context(|| format!("failed to listen on `{addr}` for the admin endpoint"))?;
    let bound = listener
        .local_addr()
        .context("failed to read the admin endpoint's address")?;
    let state = Arc::new(state);
    thread::Builder::new()
        .name("mnvkd-admin".into())
        .spawn(move || accept_loop(&listener, &state))
        .context("failed to start the admin thread")?;
    Ok(bound)
}

fn accept_loop(listener: &TcpListener, state: &Arc<AdminState>) {
    let live = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else {
            // Out of fds, most likely: the guests' connections come first.
            thread::sleep(Duration::from_millis(50));
            continue;
        };
        if live.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            live.fetch_sub(1, Ordering::AcqRel);
            let _ = respond(
                &mut stream,
                &Response::text(503, "too many admin connections\n"),
                false,
            );
            continue;
        }
        let (state, done) = (Arc::clone(state), Arc::clone(&live));
        let spawned = thread::Builder::new()
            .name("mnvkd-admin-conn".into())
            .spawn(move || {
                let _ = serve_connection(stream, &state);
                done.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            live.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Serves requests on one connection until the client closes it, asks to,
/// sends something that is not a request, or idles past [`IDLE_TIMEOUT`].
fn serve_connection(stream: TcpStream, state: &AdminState) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_write_timeout(Some(IDLE_TIMEOUT))?;
    let _ = stream.set_nodelay(true);
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let head = match read_head(&mut reader)? {
            Some(head) => head,
            None => return Ok(()),
        };
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(_)) = request.parse(&head) else {
            return respond(&mut writer, &Response::text(400, "bad request\n"), false);
        };
        let keep_alive = request.version == Some(1)
            && !request.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("connection")
                    && mnvkd_http1::has_token(h.value, b"close")
            });
        let method = request.method.unwrap_or_default();
        let path = request.path.unwrap_or_default();
        let mut response = match method {
            "GET" | "HEAD" => route(path, state),
            _ => Response::text(405, "only GET and HEAD\n"),
        };
        if method == "HEAD" {
            response.head_only = true;
        }
        respond(&mut writer, &response, keep_alive)?;
        if !keep_alive {
            return Ok(());
        }
    }
}

/// The next request head (through the blank line), or `None` at a clean
/// end of stream. Requests with a body are not for this endpoint: a body
/// would be read as the next head and refused.
fn read_head<R: BufRead>(reader: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let n = io::Read::take(&mut *reader, MAX_HEAD as u64).read_until(b'\n', &mut head)?;
        if n == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        if head.len() > MAX_HEAD {
            return Err(io::Error::other("request head too large"));
        }
        let line = &head[before..];
        if line == b"\r\n" || line == b"\n" {
            return Ok(Some(head));
        }
    }
}

fn route(path: &str, state: &AdminState) -> Response {
    // The query string (a cache-buster, say) does not choose the page.
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    match path {
        "/healthz" => Response::text(200, "ok\n"),
        "/readyz" if state.drain.is_draining() => Response::text(503, "draining\n"),
        "/readyz" => Response::text(200, "ready\n"),
        "/metrics" => Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: metrics::render(state).into_bytes(),
            head_only: false,
        },
        "/processes" => Response {
            status: 200,
            content_type: "application/json",
            body: processes::render(),
            head_only: false,
        },
        "/" => Response {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: include_bytes!("page.html").to_vec(),
            head_only: false,
        },
        _ => Response::text(
            404,
            "not found: try /, /healthz, /readyz, /metrics or /processes\n",
        ),
    }
}

struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    /// A HEAD request: the headers of the GET answer, no body.
    head_only: bool,
}

impl Response {
    fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes().to_vec(),
            head_only: false,
        }
    }
}

fn respond(stream: &mut TcpStream, response: &Response, keep_alive: bool) -> io::Result<()> {
    let reason = match response.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{}\r\n",
        response.status,
        response.content_type,
        response.body.len(),
        if keep_alive { "" } else { "Connection: close\r\n" },
    )
    .into_bytes();
    if !response.head_only {
        out.extend_from_slice(&response.body);
    }
    stream.write_all(&out)
}
