//! How a spawned process tells its parent it ended.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::Exit;

/// The end of a child process, once known; shared by the child's run and the
/// parent's child handle.
#[derive(Debug, Default)]
pub struct ChildStatus {
    /// (the exit once the child ended, the parent waiting for it).
    state: Mutex<(Option<Exit>, Option<Waker>)>,
}

impl ChildStatus {
    /// A status for a child that is still running.
    pub fn new() -> Arc<ChildStatus> {
        Arc::default()
    }

    /// Records the child's end and wakes a waiting parent.
    pub fn set(&self, exit: Exit) {
        let waker = {
            let mut state = self.state.lock().unwrap();
            state.0 = Some(exit);
            state.1.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The child's end, or `Pending` (parking `cx`) while it runs.
    pub fn poll_exit(&self, cx: &Context<'_>) -> Poll<Exit> {
        match self.exit(Some(cx)) {
            Some(exit) => Poll::Ready(exit),
            None => Poll::Pending,
        }
    }

    /// The child's end if it ended; otherwise parks `cx`, if given.
    pub fn exit(&self, cx: Option<&Context<'_>>) -> Option<Exit> {
        let mut state = self.state.lock().unwrap();
        if state.0.is_none() {
            if let Some(cx) = cx {
                state.1 = Some(cx.waker().clone());
            }
        }
        state.0.clone()
    }
}
