//! One request's timeouts, on the kernel's timers: `body_timeout` bounds
//! each wait for body bytes, `request_timeout` the whole request from its
//! head to the end of its response. The waits themselves are in `body.rs`,
//! the front's loop (`mod.rs`) and `cgi.rs`; which status each timeout gets
//! is decided where it happens.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::config::Limits;
use crate::kernel::timer::Sleep;
use crate::kernel::Kernel;

use super::reader::{ConnReader, Filled};

/// The deadlines of one request.
#[derive(Debug, Clone)]
pub struct RequestClock {
    /// Whose timers the waits sleep on.
    kernel: Kernel,
    /// The longest wait for more body bytes.
    body_timeout: Duration,
    /// The app's `request_timeout`, for messages.
    request_timeout: Duration,
    /// When the request must be over: its head's arrival + `request_timeout`.
    deadline: Instant,
}

impl RequestClock {
    /// The clock of a request whose head arrived now.
    pub fn start(kernel: &Kernel, limits: &Limits) -> RequestClock {
        RequestClock {
            kernel: kernel.clone(),
            body_timeout: limits.body_timeout,
            request_timeout: limits.request_timeout,
            deadline: Instant::now() + limits.request_timeout,
        }
    }

    /// When the request must be over.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The app's `request_timeout`.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The longest wait for more body bytes.
    pub fn body_timeout(&self) -> Duration {
        self.body_timeout
    }

    /// Waits for more body bytes: for `body_timeout` at most, and never
    /// past the request's deadline.
    pub async fn fill_body(&self, reader: &mut ConnReader) -> Filled {
        let deadline = (Instant::now() + self.body_timeout).min(self.deadline);
        reader.fill_until(&self.kernel, deadline).await
    }

    /// Runs `future` until it completes (`Some`) or the request's deadline
    /// passes (`None`, and `future` is dropped).
    pub async fn by_deadline<F: Future>(&self, future: F) -> Option<F::Output> {
        let mut future = std::pin::pin!(future);
        let mut timer = self.kernel.sleep_until(self.deadline);
        poll_fn(|cx| {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            Pin::new(&mut timer).poll(cx).map(|()| None)
        })
        .await
    }

    /// A timer that can be moved to a new deadline, for a wait whose end
    /// changes while it goes on.
    pub fn timer(&self) -> Timer {
        Timer {
            kernel: self.kernel.clone(),
            armed: None,
        }
    }
}

/// A timer re-armed by [`Timer::poll_at`]; see [`RequestClock::timer`].
#[derive(Debug)]
pub struct Timer {
    kernel: Kernel,
    /// The deadline it is set for, and its sleep; `None` while disarmed.
    armed: Option<(Instant, Sleep)>,
}

impl Timer {
    /// Polls for `deadline` (re-arming if it changed); `None` disarms it.
    /// Ready once the deadline has passed.
    pub fn poll_at(&mut self, cx: &mut Context<'_>, deadline: Option<Instant>) -> Poll<()> {
        let Some(deadline) = deadline else {
            self.armed = None;
            return Poll::Pending;
        };
        let sleep = match &mut self.armed {
            Some((at, sleep)) if *at == deadline => sleep,
            armed => {
                &mut armed
                    .insert((deadline, self.kernel.sleep_until(deadline)))
                    .1
            }
        };
        Pin::new(sleep).poll(cx)
    }
}
