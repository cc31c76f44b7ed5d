//! The time limits that end a process, and how its CPU time is read.
//!
//! - The **CPU budget** (`cpu_budget`): compute time since the process last
//!   blocked or moved bytes (`kernel::compute`). It catches an endless loop
//!   within seconds, but a process that sleeps or writes now and then starts
//!   it over, so it is no bound on the CPU a process takes in all.
//! - The **CPU limit** (`max_cpu`): the time the process has been polled over
//!   its whole life (guest code and host imports), never reset: the kernel
//!   counts each task's polled time, and a process's is that count less what
//!   it was when the process started ([`cpu_time`]). The epoch callback
//!   checks it while the guest computes; [`Limited`] checks it before each
//!   poll, so time spent in imports counts too.
//! - The **wall limit** (`max_wall`): how long the process may live, blocked
//!   or not; [`Limited`] keeps a timer, so a process asleep forever is ended.
//!
//! Each ends the process with its own error, so the log and the HTTP front
//! (504) can tell which limit it was.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::kernel::timer::Sleep;
use crate::kernel::{compute, Kernel};

use super::table::{ProcessInfo, RunState};

/// The error a process is ended with when it computes past its CPU budget.
#[derive(Debug)]
pub struct CpuBudgetExceeded {
    /// The budget it had.
    pub budget: Duration,
}

impl fmt::Display for CpuBudgetExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "computed for {:?} without blocking (cpu budget)",
            self.budget
        )
    }
}

impl std::error::Error for CpuBudgetExceeded {}

/// The error a process is ended with when its CPU time in all passes `max_cpu`.
#[derive(Debug)]
pub struct CpuLimitExceeded {
    /// The limit it had.
    pub limit: Duration,
}

impl fmt::Display for CpuLimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "used {:?} of CPU time in all (max-cpu)", self.limit)
    }
}

impl std::error::Error for CpuLimitExceeded {}

/// The error a process is ended with when it lives past `max_wall`.
#[derive(Debug)]
pub struct WallLimitExceeded {
    /// The limit it had.
    pub limit: Duration,
}

impl fmt::Display for WallLimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lived for {:?} (max-wall)", self.limit)
    }
}

impl std::error::Error for WallLimitExceeded {}

/// The CPU time of a process whose task had been polled for `start` when
/// it began, now that the task has been polled for `polled`.
pub fn cpu_time(start: Duration, polled: Duration) -> Duration {
    polled.saturating_sub(start)
}

/// A process's life (`F`) under its CPU and wall limits: ends the process,
/// dropping `F`, once it has used `max_cpu` or the wall deadline passed.
/// Checked before each poll, so time spent in host imports counts too.
#[derive(Debug)]
pub struct Limited<F> {
    life: F,
    /// The task's polled time when the process started ([`cpu_time`]).
    cpu_start: Duration,
    max_cpu: Option<Duration>,
    /// Boxed: most processes have none, and inline it would make every
    /// process's future (held as long as its connection) 80 bytes larger.
    wall: Option<Box<WallLimit>>,
    /// Its entry in the process table: told its state and CPU time.
    info: Arc<ProcessInfo>,
}

/// The wall-clock limit of one process, started with it.
#[derive(Debug)]
pub struct WallLimit {
    limit: Duration,
    deadline: Instant,
    timer: Sleep,
    /// The waker the timer was last polled with; it wakes that one.
    waker: Option<Waker>,
}

impl WallLimit {
    /// A limit of `limit` from now, with its timer on `kernel`.
    pub fn start(limit: Duration, kernel: &Kernel) -> WallLimit {
        let deadline = Instant::now() + limit;
        WallLimit {
            limit,
            deadline,
            timer: kernel.sleep_until(deadline),
            waker: None,
        }
    }
}

impl<F> Limited<F> {
    /// Runs `life`, which started when its task had been polled for
    /// `cpu_start`, ended past `max_cpu` or `wall`; keeps `info` up to date.
    pub fn new(
        life: F,
        cpu_start: Duration,
        max_cpu: Option<Duration>,
        wall: Option<WallLimit>,
        info: Arc<ProcessInfo>,
    ) -> Limited<F> {
        Limited {
            life,
            cpu_start,
            max_cpu,
            wall: wall.map(Box::new),
            info,
        }
    }
}

impl<F> Future for Limited<F>
where
    F: Future<Output = wasmtime::Result<()>> + Unpin,
{
    type Output = wasmtime::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(wall) = &mut self.wall {
            if Instant::now() >= wall.deadline {
                let limit = wall.limit;
                return Poll::Ready(Err(wasmtime::Error::new(WallLimitExceeded { limit })));
            }
            // The timer parks a clone of the waker; poll it again only when
            // the waker changes (a task's waker never does).
            if !wall.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                wall.waker = Some(cx.waker().clone());
                if Pin::new(&mut wall.timer).poll(cx).is_ready() {
                    let limit = wall.limit;
                    return Poll::Ready(Err(wasmtime::Error::new(WallLimitExceeded { limit })));
                }
            }
        }
        if let (Some(limit), Some(polled)) = (self.max_cpu, compute::polled_before()) {
            if cpu_time(self.cpu_start, polled) > limit {
                return Poll::Ready(Err(wasmtime::Error::new(CpuLimitExceeded { limit })));
            }
        }
        self.info.set_state(RunState::Running);
        let poll = Pin::new(&mut self.life).poll(cx);
        if poll.is_pending() {
            self.info.set_state(RunState::Waiting);
            // This poll included, for /processes: the worker takes this
            // clock read as the poll's end, so it costs no extra read.
            if let Some(polled) = compute::end_poll() {
                self.info.set_cpu_time(cpu_time(self.cpu_start, polled));
            }
        }
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::Pid;

    #[test]
    fn cpu_time_counts_from_the_process_start() {
        let ms = Duration::from_millis;
        assert_eq!(cpu_time(ms(40), ms(340)), ms(300));
        assert_eq!(cpu_time(ms(40), ms(40)), Duration::ZERO);
    }

    #[test]
    fn outside_the_kernel_only_the_wall_limit_applies() {
        let life = std::future::ready(Ok::<(), wasmtime::Error>(()));
        let info = Arc::new(ProcessInfo::new(
            Pid::next(),
            "test".into(),
            None,
            Instant::now(),
        ));
        let mut limited = Limited::new(life, Duration::ZERO, Some(Duration::ZERO), None, info);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(
            Pin::new(&mut limited).poll(&mut cx),
            Poll::Ready(Ok(()))
        ));
    }
}
