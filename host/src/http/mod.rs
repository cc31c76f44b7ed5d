//! The host's HTTP/1.1 front for CGI apps (`kind = "http"`): the host parses
//! requests (keep-alive, pipelining, chunked bodies) and runs one micro-process
//! per request, a plain WASI command that reads the body on stdin and writes a
//! CGI response on stdout. Any language that targets wasm32-wasip1 serves HTTP
//! this way with no SDK.
//!
//! Where a request ends is decided by the framing core shared with the guest
//! SDK (`mnvkd-http1`), so the two cannot disagree. Every wait has a deadline
//! (docs/cgi.md, "Limits and timeouts").
//!
//! - `front`: the connection loop.
//! - `reader`: the input buffer and request heads.
//! - `body`: chunked bodies and skipped bodies.
//! - `clock`: one request's timeouts.
//! - `cgi`: the per-request process (environment, stdin, stdout → response).
//! - `proxy`: the per-request process of a wasi:http/proxy component.
//! - `status`: status codes and the front's own responses.

mod body;
mod cgi;
mod clock;
mod front;
mod proxy;
mod reader;
mod status;

pub use front::serve_connection;
pub use status::Status;
