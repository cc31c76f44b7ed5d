//! `http-coro`'s HTTP/1.1 server in listener mode: one process accepts
//! every connection of the app and serves each as coroutines in its one
//! micro-heap (mnvkd's C servers' shape, and nginx's: a connection costs a
//! few hundred bytes of heap, not a process).
//!
//! Connections of one app share the heap, so they trust each other; apps
//! stay isolated from each other. The coroutines wait through the
//! executor's `watch`: a wait costs the handles that became ready, not
//! the thousand connections open. The manifest beside the `.wasm` sets
//! `kind = "listener"` and room for many handles.

use std::io;
use std::rc::Rc;
use std::time::Duration;

use mnvkd_guest::task::{self, Listener};

/// How long to wait before accepting again after a refusal (`limit`: the
/// process has its most handles open; the client waits in the backlog).
const RETRY: Duration = Duration::from_millis(10);

fn main() -> io::Result<()> {
    task::block_on(async {
        let listener = Listener::get();
        loop {
            match listener.accept().await {
                Ok(conn) => task::spawn(async move {
                    if let Err(err) = http_coro::serve(Rc::new(conn)).await {
                        eprintln!("http-coro-many: connection: {err}");
                    }
                })
                .detach(),
                // The host drains: finish the connections being served.
                Err(err) if err.kind() == io::ErrorKind::BrokenPipe => break,
                Err(err) => {
                    eprintln!("http-coro-many: accept: {err}");
                    task::sleep(RETRY).await;
                }
            }
        }
        while task::live() > 0 {
            task::sleep(RETRY).await;
        }
        Ok(())
    })
}
