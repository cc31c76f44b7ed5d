//! Coroutines inside one micro-process: a single-threaded executor for
//! `async` code sharing the process's micro-heap (mnvkd's own shape).
//!
//! A process is isolated from every other; inside it, [`spawn`] starts
//! stackless coroutines (`async` blocks) that block on I/O and on each other
//! without leaving the heap: a hand-off through a [`channel`] or an in-heap
//! [`pipe`] is a few loads and stores, no host call. When every coroutine
//! waits, the executor makes one host call for all of them: a `poll` over
//! the handles they wait on (with the nearest [`sleep`] as its timeout), a
//! `sleep` when they wait only for time, or, when exactly one coroutine waits
//! for one handle, that coroutine's own blocking call.
//!
//! - [`block_on`] runs a future and every spawned coroutine until the
//!   future completes (a guest's `main` calls it once);
//! - [`Stream`] reads and writes connections, outbound connections
//!   ([`connect`]) and host pipe ends; [`Listener`] accepts, and
//!   [`Listener::serve_each`] serves every client of a listener-mode app
//!   as a coroutine (idle timeout, drain);
//! - [`sleep`], [`yield_now`];
//! - [`channel`] (values) and [`pipe`] (bytes), bounded: a full one makes
//!   its writer wait (back-pressure inside the heap);
//! - [`select`] waits for the first of two futures.
//!
//! A coroutine that traps (a panic, an out-of-bounds access) ends its whole
//! process, never another process. No dependency beyond `std`; no threads.
//!
//! # Examples
//!
//! A reader and a writer coroutine joined by an in-heap channel:
//!
//! ```no_run
//! use std::rc::Rc;
//! use mnvkd_guest::task::{self, Stream};
//!
//! task::block_on(async {
//!     let conn = Rc::new(Stream::connection());
//!     let (tx, rx) = task::channel::<Vec<u8>>(16);
//!     let out = Rc::clone(&conn);
//!     let writer = task::spawn(async move {
//!         while let Some(line) = rx.recv().await {
//!             out.write_all(&line).await?;
//!         }
//!         Ok::<(), std::io::Error>(())
//!     });
//!     let mut buf = [0; 4096];
//!     loop {
//!         let n = conn.read(&mut buf).await?;
//!         if n == 0 || tx.send(buf[..n].to_vec()).await.is_err() {
//!             break;
//!         }
//!     }
//!     drop(tx);
//!     writer.await
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```

mod channel;
mod executor;
mod io;
mod pipe;
mod select;
mod serve;

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

pub use channel::{channel, Receiver, Sender};
pub use executor::{block_on, live};
pub use io::{connect, readiness, Listener, Readiness, Stream};
pub use pipe::{pipe, PipeReader, PipeWriter};
pub use select::{select, Either, Select};

/// Starts `future` as a coroutine of this process and returns a handle to
/// await its output. It first runs when the caller next waits; dropping the
/// [`JoinHandle`] lets it run on, detached.
///
/// # Examples
///
/// ```
/// use mnvkd_guest::task;
///
/// let sum = task::block_on(async {
///     let a = task::spawn(async { 20 });
///     let b = task::spawn(async { 22 });
///     a.await + b.await
/// });
/// assert_eq!(sum, 42);
/// ```
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let state = Rc::new(RefCell::new(JoinState {
        output: None,
        waiter: None,
    }));
    let done = Rc::clone(&state);
    executor::spawn_boxed(Box::pin(async move {
        let output = future.await;
        let waiter = {
            let mut done = done.borrow_mut();
            done.output = Some(output);
            done.waiter.take()
        };
        if let Some(waker) = waiter {
            waker.wake();
        }
    }));
    JoinHandle { state }
}

/// Awaits a spawned coroutine's output; see [`spawn`].
#[derive(Debug)]
#[must_use = "dropping a JoinHandle detaches the coroutine"]
pub struct JoinHandle<T> {
    state: Rc<RefCell<JoinState<T>>>,
}

#[derive(Debug)]
struct JoinState<T> {
    /// The output, once the coroutine finished (until taken).
    output: Option<T>,
    /// Who awaits it.
    waiter: Option<Waker>,
}

impl<T> JoinHandle<T> {
    /// Lets the coroutine run on with nobody awaiting it (as dropping the
    /// handle does, said out loud).
    ///
    /// # Examples
    ///
    /// ```
    /// use mnvkd_guest::task;
    ///
    /// task::block_on(async {
    ///     task::spawn(async { /* runs on its own */ }).detach();
    ///     task::yield_now().await;
    /// });
    /// ```
    pub fn detach(self) {}

    /// Whether the coroutine has finished.
    ///
    /// # Examples
    ///
    /// ```
    /// use mnvkd_guest::task;
    ///
    /// task::block_on(async {
    ///     let handle = task::spawn(async {});
    ///     assert!(!handle.is_finished());
    ///     task::yield_now().await;
    ///     assert!(handle.is_finished());
    /// });
    /// ```
    pub fn is_finished(&self) -> bool {
        self.state.borrow().output.is_some()
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut state = self.state.borrow_mut();
        match state.output.take() {
            Some(output) => Poll::Ready(output),
            None => {
                state.waiter = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Lets every other ready coroutine run once before the caller goes on.
///
/// # Examples
///
/// ```
/// use std::{cell::RefCell, rc::Rc};
/// use mnvkd_guest::task;
///
/// let log = Rc::new(RefCell::new(Vec::new()));
/// task::block_on(async {
///     let other = Rc::clone(&log);
///     task::spawn(async move { other.borrow_mut().push("spawned") }).detach();
///     log.borrow_mut().push("before");
///     task::yield_now().await;
///     log.borrow_mut().push("after");
/// });
/// assert_eq!(*log.borrow(), ["before", "spawned", "after"]);
/// ```
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// The future of [`yield_now`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Waits, as a coroutine, for `duration`.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use mnvkd_guest::task;
///
/// task::block_on(task::sleep(Duration::from_millis(10)));
/// ```
pub fn sleep(duration: Duration) -> Sleep {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    Sleep {
        deadline: executor::now_ns().saturating_add(nanos),
        registered: false,
    }
}

/// The future of [`sleep`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    /// When, on the executor's clock ([`executor::now_ns`]).
    deadline: u64,
    /// Whether its timer is in the executor's heap.
    registered: bool,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if executor::now_ns() >= self.deadline {
            return Poll::Ready(());
        }
        if !self.registered {
            // A coroutine's waker never changes, so one timer is enough.
            executor::add_timer(self.deadline, cx.waker());
            self.registered = true;
        }
        Poll::Pending
    }
}
