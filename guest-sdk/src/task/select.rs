//! [`select`]: the first of two futures to complete.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Which of the two futures of [`select`] completed first, with its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Either<A, B> {
    /// The first.
    Left(A),
    /// The second.
    Right(B),
}

/// Waits for the first of `a` and `b`; the other is dropped (a dropped
/// handle wait, sleep or channel operation leaves nothing behind). When both
/// are ready, `a` wins. Nest it for more than two.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mnvkd_guest::task::{self, Either};
///
/// let first = task::block_on(async {
///     let (_tx, rx) = task::channel::<u8>(1);
///     task::select(rx.recv(), task::yield_now()).await
/// });
/// assert_eq!(first, Either::Right(()));
/// ```
pub fn select<A: Future, B: Future>(a: A, b: B) -> Select<A, B> {
    Select {
        a: Box::pin(a),
        b: Box::pin(b),
    }
}

/// The future of [`select`].
#[must_use = "futures do nothing unless awaited"]
pub struct Select<A, B> {
    a: Pin<Box<A>>,
    b: Pin<Box<B>>,
}

impl<A, B> std::fmt::Debug for Select<A, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Select").finish_non_exhaustive()
    }
}

impl<A: Future, B: Future> Future for Select<A, B> {
    type Output = Either<A::Output, B::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(out) = self.a.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(out));
        }
        if let Poll::Ready(out) = self.b.as_mut().poll(cx) {
            return Poll::Ready(Either::Right(out));
        }
        Poll::Pending
    }
}
