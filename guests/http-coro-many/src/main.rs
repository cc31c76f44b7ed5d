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
//! A connection that neither reads a byte nor writes an answer for
//! `IDLE_SECS` seconds (environment, default 30; an idle keep-alive
//! client, or one that stopped reading its answers) is shut down, so idle
//! clients cannot hold every handle. When the host drains (`accept` says
//! `pipe`), every connection's reading side is shut down: answers to
//! requests already read still go out, then the connections end, and so
//! does the process.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::Shutdown;
use std::rc::{Rc, Weak};
use std::time::Duration;

use mnvkd_guest::task::{self, Listener, Stream};

/// How long to wait before accepting again after a refusal (`limit`: the
/// process has its most handles open; the client waits in the backlog).
const RETRY: Duration = Duration::from_millis(10);
/// How often the idle connections are looked for.
const SWEEP: Duration = Duration::from_secs(1);

/// One connection being served, as the sweeper sees it.
struct Served {
    stream: Rc<Stream>,
    /// Reads and writes so far (`http_coro::serve_counting`).
    progress: Rc<Cell<u64>>,
    /// `progress` at the last sweep, and the sweeps since it moved.
    seen: Cell<u64>,
    idle: Cell<u64>,
}

fn main() -> io::Result<()> {
    let idle_secs = std::env::var("IDLE_SECS")
        .ok()
        .and_then(|secs| secs.parse::<u64>().ok())
        .unwrap_or(30)
        .max(1);
    task::block_on(async {
        let served: Rc<RefCell<Vec<Weak<Served>>>> = Rc::default();
        let draining = Rc::new(Cell::new(false));
        let sweeper = task::spawn(sweep(Rc::clone(&served), Rc::clone(&draining), idle_secs));
        let listener = Listener::get();
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    let connection = Rc::new(Served {
                        stream: Rc::new(stream),
                        progress: Rc::default(),
                        seen: Cell::new(0),
                        idle: Cell::new(0),
                    });
                    served.borrow_mut().push(Rc::downgrade(&connection));
                    task::spawn(async move {
                        let stream = Rc::clone(&connection.stream);
                        let progress = Rc::clone(&connection.progress);
                        if let Err(err) = http_coro::serve_counting(stream, progress).await {
                            eprintln!("http-coro-many: connection: {err}");
                        }
                    })
                    .detach();
                }
                // The host drains: stop reading requests, finish the answers.
                Err(err) if err.kind() == io::ErrorKind::BrokenPipe => break,
                Err(err) => {
                    eprintln!("http-coro-many: accept: {err}");
                    task::sleep(RETRY).await;
                }
            }
        }
        draining.set(true);
        for connection in served.borrow().iter().filter_map(Weak::upgrade) {
            let _ = connection.stream.shutdown(Shutdown::Read);
        }
        sweeper.await;
        Ok(())
    })
}

/// Every [`SWEEP`]: shuts down the connections that made no progress for
/// `idle_secs`, and forgets those that ended. Ends once draining and no
/// connection is left.
async fn sweep(served: Rc<RefCell<Vec<Weak<Served>>>>, draining: Rc<Cell<bool>>, idle_secs: u64) {
    loop {
        task::sleep(SWEEP).await;
        served.borrow_mut().retain(|connection| {
            let Some(connection) = connection.upgrade() else {
                return false;
            };
            let progress = connection.progress.get();
            if progress != connection.seen.get() {
                connection.seen.set(progress);
                connection.idle.set(0);
            } else {
                connection.idle.set(connection.idle.get() + 1);
                if connection.idle.get() == idle_secs {
                    let _ = connection.stream.shutdown(Shutdown::Both);
                }
            }
            true
        });
        if draining.get() && served.borrow().is_empty() {
            return;
        }
    }
}
