//! [`Listener::serve_each`]: every connection of a listener-mode app as a
//! coroutine of one process, with what a server needs around it: accepting
//! past a full handle table, ending idle connections, and draining.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::rc::{Rc, Weak};
use std::time::Duration;

use super::{executor, sleep, spawn, yield_now, Listener, Stream};
use crate::{errno, heap, poll, sys, PollFd};

/// How long to wait before accepting again after a refusal (`limit`: the
/// process has its most handles open; the client waits in the backlog).
const RETRY: Duration = Duration::from_millis(10);
/// How often idle connections are looked for, at most.
const SWEEP: Duration = Duration::from_secs(1);

/// One connection being served, as the sweeper sees it.
struct Served {
    stream: Rc<Stream>,
    /// [`Stream::progress`] at the last sweep.
    seen: Cell<u64>,
    /// Sweeps since it last moved.
    idle: Cell<u32>,
    /// Whether its coroutine has run (up to its first wait).
    started: Cell<bool>,
}

impl Listener {
    /// Accepts connections until the host drains and runs `serve` on each
    /// as a coroutine of this process: one micro-heap serves every client
    /// of the app (manifest `kind = "listener"`; raise `max_handles` for
    /// many clients).
    ///
    /// - A refused accept (`limit`: every handle is in use) is tried again
    ///   10 ms later; the client waits in the listen backlog meanwhile. So
    ///   does the next client while the heap has less than
    ///   [`heap::HEADROOM`] free: the connections' buffers then grow with
    ///   [`heap::reserve`], and a client cannot make the process abort on
    ///   a failed allocation. Each time the heap fills, one line on stderr
    ///   says so.
    /// - With `idle_timeout`, a connection whose reads and writes moved no
    ///   byte for that long (checked once a second, so up to a second
    ///   more) is shut down both ways: an idle keep-alive client, or one
    ///   that stopped reading its answers, cannot hold a handle for ever.
    ///   `serve` then sees end of stream or a broken pipe.
    /// - When the host drains (`accept` says `pipe`; or, while the heap is
    ///   full and no accept is made, the listener hangs up), every
    ///   connection's reading side is shut down (`serve` sees end of
    ///   stream; what it writes still goes out), and this returns once
    ///   every `serve` has.
    ///
    /// # Errors
    ///
    /// When handle 0 is not a listener (the app is not in listener mode),
    /// at the first accept. Other accept errors than the drain are retried.
    ///
    /// # Examples
    ///
    /// An echo server for every client of the app, in one process:
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use mnvkd_guest::task::{self, Listener};
    ///
    /// task::block_on(Listener::get().serve_each(Some(Duration::from_secs(30)), |conn| async move {
    ///     let mut buf = [0; 4096];
    ///     while let Ok(n) = conn.read(&mut buf).await {
    ///         if n == 0 || conn.write_all(&buf[..n]).await.is_err() {
    ///             break;
    ///         }
    ///     }
    /// }))?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn serve_each<F, Fut>(
        &self,
        idle_timeout: Option<Duration>,
        mut serve: F,
    ) -> io::Result<()>
    where
        F: FnMut(Rc<Stream>) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        let served: Rc<RefCell<Vec<Weak<Served>>>> = Rc::default();
        let draining = Rc::new(Cell::new(false));
        let sweeper = spawn(sweep(
            Rc::clone(&served),
            Rc::clone(&draining),
            idle_timeout,
        ));
        let mut full = false;
        loop {
            // The executor's tables first (they may need a large block),
            // then the headroom the new session takes its buffers from.
            if !(executor::reserve(1) && served_has_room(&served) && heap::has_room()) {
                // A new connection's session would take the heap's last
                // bytes: it waits in the backlog until others end.
                if !full {
                    full = true;
                    eprintln!(
                        "serve_each: less than {} KiB of the heap is free; new clients wait in \
                         the backlog until connections end (raise max_memory to hold more)",
                        heap::HEADROOM / 1024
                    );
                }
                sleep(RETRY).await;
                // No accept is made meanwhile, and accept is what reports
                // the drain: look for the listener's hang-up instead.
                if listener_hung_up() {
                    break;
                }
                continue;
            }
            full = false;
            match self.accept().await {
                Ok(stream) => {
                    let connection = Rc::new(Served {
                        stream: Rc::new(stream),
                        seen: Cell::new(0),
                        idle: Cell::new(0),
                        started: Cell::new(false),
                    });
                    served.borrow_mut().push(Rc::downgrade(&connection));
                    let serving = serve(Rc::clone(&connection.stream));
                    let this = Rc::clone(&connection);
                    spawn(async move {
                        connection.started.set(true);
                        serving.await;
                        drop(connection); // the sweeper forgets it
                    })
                    .detach();
                    // The new connection runs first, up to its first wait,
                    // so that its buffers are in the heap before the next
                    // room check: while clients wait, `accept` does not,
                    // and hundreds would be taken on one check's word.
                    // Other coroutines queued before it run too.
                    while !this.started.get() {
                        yield_now().await;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::BrokenPipe => break,
                Err(err) if errno::is(&err, sys::BADF) => {
                    // Not a listener: retrying would wait for ever.
                    return Err(io::Error::new(
                        err.kind(),
                        format!(
                            "serve_each: handle 0 is not a listener ({err}); it serves an app \
                             in listener mode (kind = \"listener\")"
                        ),
                    ));
                }
                Err(_) => sleep(RETRY).await,
            }
        }
        draining.set(true);
        for connection in served.borrow().iter().filter_map(Weak::upgrade) {
            let _ = connection.stream.shutdown(Shutdown::Read);
        }
        sweeper.await;
        Ok(())
    }
}

/// Makes room in `served` for one more connection (see
/// [`executor::reserve`]); `false` when the heap cannot hold it.
fn served_has_room(served: &RefCell<Vec<Weak<Served>>>) -> bool {
    served.borrow_mut().try_reserve(1).is_ok()
}

/// Whether the host has shut the app's listener down (it drains), looked at
/// without waiting.
fn listener_hung_up() -> bool {
    let mut fds = [PollFd::new(0, 0)];
    poll(&mut fds, Some(Duration::ZERO)).is_ok() && fds[0].hangup()
}

/// Every second: shuts down the connections that moved nothing for
/// `idle_timeout` and forgets those that ended. Ends once draining and no
/// connection is left.
async fn sweep(
    served: Rc<RefCell<Vec<Weak<Served>>>>,
    draining: Rc<Cell<bool>>,
    idle_timeout: Option<Duration>,
) {
    let idle_sweeps =
        idle_timeout.map(|timeout| u32::try_from(timeout.as_secs().max(1)).unwrap_or(u32::MAX));
    loop {
        sleep(SWEEP).await;
        served.borrow_mut().retain(|connection| {
            let Some(connection) = connection.upgrade() else {
                return false;
            };
            let progress = connection.stream.progress();
            if progress != connection.seen.get() {
                connection.seen.set(progress);
                connection.idle.set(0);
            } else {
                connection.idle.set(connection.idle.get().saturating_add(1));
                if Some(connection.idle.get()) == idle_sweeps {
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
