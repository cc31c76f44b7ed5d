//! [`Errno`]: an error code returned by an `mnvkd` import, and its mapping
//! to [`std::io::Error`]. The codes themselves are in [`sys`](crate::sys).

use std::{error, fmt, io};

use crate::sys;

/// An error code returned by an `mnvkd` import: one of the negative codes
/// in [`sys`](crate::sys), documented in `wit/mnvkd.wit`.
///
/// It converts into an [`io::Error`] of the matching [`kind`](Errno::kind),
/// and can be taken back out of one.
///
/// # Examples
///
/// ```
/// use std::io;
/// use mnvkd_guest::{sys, Errno};
///
/// let err = io::Error::from(Errno::from_code(sys::PIPE));
/// assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
///
/// let errno = err.get_ref().and_then(|e| e.downcast_ref::<Errno>());
/// assert_eq!(errno.map(|e| e.code()), Some(sys::PIPE));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Errno(i32);

impl Errno {
    /// Wraps a code returned by an import. Codes not in the table are kept
    /// as they are and shown as unknown.
    ///
    /// # Examples
    ///
    /// ```
    /// use mnvkd_guest::{sys, Errno};
    ///
    /// let errno = Errno::from_code(sys::TIMEDOUT);
    /// assert_eq!(errno.to_string(), "the operation did not complete in time (timedout)");
    /// ```
    pub const fn from_code(code: i32) -> Errno {
        Errno(code)
    }

    /// The code, as the import returned it.
    ///
    /// # Examples
    ///
    /// ```
    /// use mnvkd_guest::{sys, Errno};
    ///
    /// assert_eq!(Errno::from_code(sys::BADF).code(), -1);
    /// ```
    pub const fn code(self) -> i32 {
        self.0
    }

    /// The code's name in `wit/mnvkd.wit` (`"badf"`, `"pipe"`, …), or `None`
    /// for a code not in the table.
    ///
    /// # Examples
    ///
    /// ```
    /// use mnvkd_guest::{sys, Errno};
    ///
    /// assert_eq!(Errno::from_code(sys::DENIED).name(), Some("denied"));
    /// assert_eq!(Errno::from_code(-99).name(), None);
    /// ```
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            sys::BADF => "badf",
            sys::FAULT => "fault",
            sys::INVAL => "inval",
            sys::PIPE => "pipe",
            sys::IO => "io",
            sys::LIMIT => "limit",
            sys::DENIED => "denied",
            sys::TIMEDOUT => "timedout",
            sys::AGAIN => "again",
            _ => return None,
        })
    }

    /// The [`io::ErrorKind`] this code converts to.
    ///
    /// | code | kind |
    /// | --- | --- |
    /// | `badf`, `fault`, `inval` | `InvalidInput`: the guest passed a bad argument |
    /// | `pipe` | `BrokenPipe` |
    /// | `io` | `Other` |
    /// | `limit` | `QuotaExceeded` |
    /// | `denied` | `PermissionDenied` |
    /// | `timedout` | `TimedOut` |
    /// | `again` | `WouldBlock` |
    /// | unknown | `Other` |
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::ErrorKind;
    /// use mnvkd_guest::{sys, Errno};
    ///
    /// assert_eq!(Errno::from_code(sys::BADF).kind(), ErrorKind::InvalidInput);
    /// ```
    pub fn kind(self) -> io::ErrorKind {
        use io::ErrorKind::*;
        match self.0 {
            sys::BADF | sys::FAULT | sys::INVAL => InvalidInput,
            sys::PIPE => BrokenPipe,
            sys::LIMIT => QuotaExceeded,
            sys::DENIED => PermissionDenied,
            sys::TIMEDOUT => TimedOut,
            sys::AGAIN => WouldBlock,
            _ => Other,
        }
    }

    /// The code's meaning, as in the `@errno` table of wit/mnvkd.wit.
    fn meaning(self) -> Option<&'static str> {
        Some(match self.0 {
            sys::BADF => "the handle is not open in this process, or not for this operation",
            sys::FAULT => "a buffer lies (partly) outside the micro-heap",
            sys::INVAL => "an argument is malformed",
            sys::PIPE => "the other end is gone (connection reset, write after peer closed)",
            sys::IO => "any other I/O failure",
            sys::LIMIT => "a per-process or per-app limit was reached",
            sys::DENIED => "the app was not granted this capability",
            sys::TIMEDOUT => "the operation did not complete in time",
            sys::AGAIN => "the operation would have to wait (only the try- imports return it)",
            _ => return None,
        })
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.meaning(), self.name()) {
            (Some(meaning), Some(name)) => write!(f, "{meaning} ({name})"),
            _ => write!(f, "unknown error code {}", self.0),
        }
    }
}

impl error::Error for Errno {}

impl From<Errno> for io::Error {
    fn from(errno: Errno) -> io::Error {
        io::Error::new(errno.kind(), errno)
    }
}

/// Whether `err` is an import's error `code` (one of [`sys`]'s codes).
pub(crate) fn is(err: &io::Error, code: i32) -> bool {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<Errno>())
        == Some(&Errno::from_code(code))
}

/// Turns an import's result into the byte count it stands for, or the error.
pub(crate) fn check(ret: i32) -> io::Result<usize> {
    match usize::try_from(ret) {
        Ok(n) => Ok(n),
        Err(_) => Err(Errno::from_code(ret).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(code: i32) -> io::ErrorKind {
        io::Error::from(Errno::from_code(code)).kind()
    }

    #[test]
    fn every_code_maps_to_its_kind() {
        use io::ErrorKind::*;
        let table = [
            (sys::BADF, InvalidInput),
            (sys::FAULT, InvalidInput),
            (sys::INVAL, InvalidInput),
            (sys::PIPE, BrokenPipe),
            (sys::IO, Other),
            (sys::LIMIT, QuotaExceeded),
            (sys::DENIED, PermissionDenied),
            (sys::TIMEDOUT, TimedOut),
            (sys::AGAIN, WouldBlock),
        ];
        for (code, kind) in table {
            assert_eq!(kind_of(code), kind, "code {code}");
        }
    }

    #[test]
    fn codes_match_the_wit_table() {
        let wit = include_str!("../../wit/mnvkd.wit");
        let mut rows = 0;
        for line in wit.lines() {
            let Some(row) = line.trim_start_matches("// ").strip_prefix("@errno ") else {
                continue;
            };
            let mut fields = row.splitn(3, ' ');
            let (name, code, meaning) = (fields.next(), fields.next(), fields.next());
            let errno = Errno::from_code(code.unwrap().parse().unwrap());
            assert_eq!((errno.name(), errno.meaning()), (name, meaning), "{line}");
            rows += 1;
        }
        assert_eq!(rows, 9, "rows in the @errno table");
    }

    #[test]
    fn unknown_code_is_other_and_says_so() {
        let errno = Errno::from_code(-42);
        assert_eq!(errno.name(), None);
        assert_eq!(kind_of(-42), io::ErrorKind::Other);
        assert_eq!(errno.to_string(), "unknown error code -42");
    }

    #[test]
    fn io_error_keeps_the_errno() {
        let err = io::Error::from(Errno::from_code(sys::DENIED));
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<Errno>());
        assert_eq!(inner, Some(&Errno::from_code(sys::DENIED)));
        assert_eq!(
            err.to_string(),
            "the app was not granted this capability (denied)"
        );
    }

    #[test]
    fn check_splits_counts_from_codes() {
        assert_eq!(check(0).unwrap(), 0);
        assert_eq!(check(4096).unwrap(), 4096);
        let err = check(sys::PIPE).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
