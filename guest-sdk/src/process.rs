//! Processes: [`spawn`] a child process of the same app, [`Child`] and its
//! [`ExitStatus`], this process's [`arg`], and [`sleep`].

use std::fmt;
use std::io;
use std::time::Duration;

use crate::{errno, sys, Handle};

/// Starts a new process of this app, with its own micro-heap, and returns
/// its [`Child`] handle.
///
/// `arg` becomes the child's argv\[1\] (read it there with [`arg`]; argv\[0\]
/// is the app's name). `handles` are moved to the child, where they are
/// handles `0, 1, 2, …` in this order; when the first is a connection, it is
/// also the child's WASI stdin and stdout, and its [`connection()`](crate::connection).
/// They are closed in this process whether or not the spawn succeeds.
///
/// # Errors
///
/// - [`sys::LIMIT`] (as [`io::ErrorKind::QuotaExceeded`]): the app has its
///   most processes, this connection's process tree its most children
///   (`max_children`, default 64, grandchildren and orphans included), or
///   this process its most handles.
/// - [`sys::BADF`] or [`sys::INVAL`] (as [`io::ErrorKind::InvalidInput`]):
///   a handle is not open, or listed twice.
///
/// # Examples
///
/// A process that hands its connection to a child and waits for it:
///
/// ```no_run
/// use mnvkd_guest::{arg, connection, spawn, Handle};
///
/// if arg().as_deref() == Some("worker") {
///     // The child: handle 0 is the connection.
///     return Ok(());
/// }
/// // SAFETY: handle 0 is this process's connection; nothing else owns it.
/// let conn = unsafe { Handle::from_raw(0) };
/// let status = spawn("worker", vec![conn])?.wait()?;
/// assert!(status.success());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn spawn(arg: &str, handles: Vec<Handle>) -> io::Result<Child> {
    let raws: Vec<i32> = handles.into_iter().map(Handle::into_raw).collect();
    // SAFETY: `arg` and `raws` are valid for reads of their lengths; the
    // handles in `raws` are owned here and no longer by any `Handle`.
    let ret = unsafe { sys::spawn(arg.as_ptr(), arg.len(), raws.as_ptr(), raws.len()) };
    match errno::check(ret) {
        // SAFETY: the host just opened the child handle for this process.
        Ok(_) => Ok(unsafe { Child::from_raw(ret) }),
        Err(err) => {
            // Whatever the host did with them, none is the child's: close
            // any that are still open here. (A guest is single-threaded, so
            // no new handle can have reused a number since the call.)
            for raw in raws {
                // SAFETY: the import touches no memory; we own `raw`.
                let _ = unsafe { sys::close(raw) };
            }
            Err(err)
        }
    }
}

/// A child process started by [`spawn`], owned: dropping it closes the
/// handle, which detaches the child (it runs on).
///
/// Its handle is readable in [`poll`](crate::poll) once the child has ended.
///
/// # Examples
///
/// ```no_run
/// use mnvkd_guest::{spawn, ExitStatus};
///
/// let child = spawn("job", Vec::new())?;
/// match child.wait()? {
///     ExitStatus::Exited(0) => println!("done"),
///     status => println!("job failed: {status}"),
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Child {
    /// The child handle; open in this process, owned by nothing else.
    raw: i32,
}

impl Child {
    /// Takes ownership of the child handle numbered `raw`.
    ///
    /// # Safety
    ///
    /// As for [`Handle::from_raw`]: `raw` must be a child handle open in
    /// this process and owned by nothing else.
    ///
    /// # Examples
    ///
    /// ```
    /// use mnvkd_guest::Child;
    ///
    /// // SAFETY: nothing else owns handle 3.
    /// let child = unsafe { Child::from_raw(3) };
    /// assert_eq!(child.as_raw(), 3);
    /// ```
    pub unsafe fn from_raw(raw: i32) -> Child {
        Child { raw }
    }

    /// The child handle's number, still owned by this `Child` (e.g. for a
    /// [`PollFd`](crate::PollFd)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use mnvkd_guest::{poll, spawn, PollFd};
    ///
    /// let child = spawn("job", Vec::new())?;
    /// let mut fds = [PollFd::new(child.as_raw(), PollFd::READABLE)];
    /// poll(&mut fds, None)?; // until the child has ended
    /// let status = child.wait()?; // does not block now
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn as_raw(&self) -> i32 {
        self.raw
    }

    /// Waits for the child to end and returns how it ended. The handle is
    /// closed.
    ///
    /// # Errors
    ///
    /// [`sys::BADF`] (as [`io::ErrorKind::InvalidInput`]) if the handle is
    /// not a child handle.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let status = mnvkd_guest::spawn("job", Vec::new())?.wait()?;
    /// println!("job {status}");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn wait(self) -> io::Result<ExitStatus> {
        let raw = self.raw;
        // The import closes the handle; `Drop` must not close it again.
        std::mem::forget(self);
        // SAFETY: the import touches no memory; we owned `raw`.
        ExitStatus::from_wait(unsafe { sys::wait(raw) })
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Detaches the child; errors are ignored as for `Handle`.
        // SAFETY: the import touches no memory; we own `raw`.
        let _ = unsafe { sys::close(self.raw) };
    }
}

/// How a child process ended: returned by [`Child::wait`].
///
/// # Examples
///
/// ```
/// use mnvkd_guest::ExitStatus;
///
/// assert!(ExitStatus::Exited(0).success());
/// assert_eq!(ExitStatus::Exited(7).code(), Some(7));
/// assert_eq!(ExitStatus::Killed.code(), None);
/// assert_eq!(ExitStatus::Killed.to_string(), "killed");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// It exited (returned from `main` or called `exit`) with this status.
    Exited(u8),
    /// The host killed it: a trap, or its memory or CPU limit, or `max_wall`.
    Killed,
}

impl ExitStatus {
    /// `wait`'s result for a killed child.
    const KILLED: i32 = 256;

    /// Whether it exited with status 0.
    ///
    /// # Examples
    ///
    /// ```
    /// use mnvkd_guest::ExitStatus;
    ///
    /// assert!(!ExitStatus::Exited(1).success());
    /// ```
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }

    /// The exit status, or `None` if it was killed.
    ///
    /// # Examples
    ///
    /// ```
    /// use mnvkd_guest::ExitStatus;
    ///
    /// assert_eq!(ExitStatus::Exited(3).code(), Some(3));
    /// ```
    pub fn code(self) -> Option<u8> {
        match self {
            ExitStatus::Exited(code) => Some(code),
            ExitStatus::Killed => None,
        }
    }

    /// The status as the `wait` import returns it: 0..=255, or 256 for
    /// killed.
    ///
    /// # Examples
    ///
    /// ```
    /// use mnvkd_guest::ExitStatus;
    ///
    /// assert_eq!(ExitStatus::Exited(7).into_raw(), 7);
    /// assert_eq!(ExitStatus::Killed.into_raw(), 256);
    /// ```
    pub fn into_raw(self) -> i32 {
        match self {
            ExitStatus::Exited(code) => i32::from(code),
            ExitStatus::Killed => ExitStatus::KILLED,
        }
    }

    /// Interprets a result of the `wait` import.
    fn from_wait(ret: i32) -> io::Result<ExitStatus> {
        match errno::check(ret)? {
            256 => Ok(ExitStatus::Killed),
            code => u8::try_from(code).map(ExitStatus::Exited).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("wait returned {code}, not a status"),
                )
            }),
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited(code) => write!(f, "exit status: {code}"),
            ExitStatus::Killed => f.write_str("killed"),
        }
    }
}

/// This process's argument: the `arg` its parent passed to [`spawn`], or
/// `None` for a process the host started (for a connection, or the listener
/// process of an app in listener mode).
///
/// It is argv\[1\]; the same as `std::env::args().nth(1)`.
///
/// # Examples
///
/// One module, several roles:
///
/// ```no_run
/// match mnvkd_guest::arg().as_deref() {
///     None => println!("started by the host"),
///     Some("worker") => println!("a worker"),
///     Some(other) => eprintln!("unknown role {other:?}"),
/// }
/// ```
pub fn arg() -> Option<String> {
    std::env::args().nth(1)
}

/// Suspends this process for at least `duration` (rounded up to whole
/// milliseconds); other processes run meanwhile.
///
/// Natively (off wasm32) it returns at once.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
///
/// mnvkd_guest::sleep(Duration::from_millis(200));
/// ```
pub fn sleep(duration: Duration) {
    let mut ms = duration.as_nanos().div_ceil(1_000_000);
    while ms > 0 {
        let step = u32::try_from(ms).unwrap_or(u32::MAX);
        // SAFETY: the import touches no memory.
        if unsafe { sys::sleep(step) } < 0 {
            return;
        }
        ms -= u128::from(step);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_results_map_to_statuses() {
        assert_eq!(ExitStatus::from_wait(0).unwrap(), ExitStatus::Exited(0));
        assert_eq!(ExitStatus::from_wait(255).unwrap(), ExitStatus::Exited(255));
        assert_eq!(ExitStatus::from_wait(256).unwrap(), ExitStatus::Killed);
        let err = ExitStatus::from_wait(sys::BADF).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = ExitStatus::from_wait(257).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn statuses_round_trip() {
        for raw in 0..=256 {
            assert_eq!(ExitStatus::from_wait(raw).unwrap().into_raw(), raw);
        }
    }

    #[test]
    fn native_spawn_fails_and_consumes_the_handles() {
        // SAFETY: nothing else owns handle 7.
        let handle = unsafe { Handle::from_raw(7) };
        let err = spawn("child", vec![handle]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Other);
    }

    #[test]
    fn native_sleep_returns() {
        sleep(Duration::from_secs(3600));
        sleep(Duration::ZERO);
    }

    #[test]
    fn test_binary_has_no_arg_of_ours_or_some() {
        // The test harness may pass filters; `arg` is just argv[1].
        assert_eq!(arg(), std::env::args().nth(1));
    }
}
