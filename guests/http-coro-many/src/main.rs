//! `http-coro`'s HTTP/1.1 server in listener mode: one process accepts
//! every connection of the app and serves each as coroutines in its one
//! micro-heap (mnvkd's C servers' shape, and nginx's: a connection costs a
//! few KiB of heap, not a process).
//!
//! Connections of one app share the heap, so they trust each other; apps
//! stay isolated from each other. The coroutines wait through the
//! executor's `watch`: a wait costs the handles that became ready, not
//! the thousand connections open. The manifest beside the `.wasm` sets
//! `kind = "listener"` and room for many handles.
//!
//! `Listener::serve_each` does the rest: accepting again after a full
//! handle table, shutting down a connection whose reads and writes moved
//! nothing for `IDLE_SECS` seconds (environment, default 30), and, when the
//! host drains, no more requests read, the answers to those read still
//! sent, then the end of the process. A request must arrive whole within
//! `REQUEST_TIMEOUT_SECS` (default 30) of its first byte, or it gets 408.

use std::io;
use std::time::Duration;

use mnvkd_guest::task::{self, Listener};

fn main() -> io::Result<()> {
    let secs = |name: &str| {
        let secs = std::env::var(name).ok().and_then(|secs| secs.parse().ok());
        Duration::from_secs(secs.unwrap_or(30))
    };
    let (idle, request_timeout) = (secs("IDLE_SECS"), secs("REQUEST_TIMEOUT_SECS"));
    task::block_on(
        Listener::get().serve_each(Some(idle), move |conn| async move {
            if let Err(err) = http_coro::serve_within(conn, request_timeout).await {
                eprintln!("http-coro-many: connection: {err}");
            }
        }),
    )
}
