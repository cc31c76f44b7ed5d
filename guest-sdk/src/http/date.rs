//! The `Date` header: an IMF-fixdate (RFC 9110 §5.6.7), formatted once per
//! second at most.

use std::time::{SystemTime, UNIX_EPOCH};

/// `Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n`: the header line as sent.
pub(crate) const LINE_LEN: usize = 6 + 29 + 2;

/// The status line most responses start with, kept in front of the `Date`
/// line so that the two are one copy.
const OK_LINE: &[u8] = b"HTTP/1.1 200 OK\r\n";

/// The `Date` header line for the current second, cached: a server
/// refreshes it once per batch of requests (one clock read) and copies the
/// line into each response. [`serve`](super::serve) sends it by itself; a
/// guest writing its own responses (the coroutine servers) uses this.
///
/// # Examples
///
/// ```
/// let mut date = mnvkd_guest::http::Date::new();
/// date.refresh();
/// let line = date.line();
/// assert!(line.starts_with(b"Date: ") && line.ends_with(b" GMT\r\n"));
/// ```
#[derive(Debug)]
pub struct Date {
    /// The Unix second `head` shows; `u64::MAX` before the first refresh.
    secs: u64,
    /// [`OK_LINE`], then the `Date` line.
    head: [u8; OK_LINE.len() + LINE_LEN],
}

impl Date {
    /// A line not yet set: call [`Date::refresh`] before the first use.
    pub fn new() -> Date {
        let mut head = [b' '; OK_LINE.len() + LINE_LEN];
        head[..OK_LINE.len()].copy_from_slice(OK_LINE);
        head[OK_LINE.len()..][..6].copy_from_slice(b"Date: ");
        head[OK_LINE.len() + LINE_LEN - 2..].copy_from_slice(b"\r\n");
        Date {
            secs: u64::MAX,
            head,
        }
    }

    /// Reads the clock (one host call) and reformats the line if the
    /// second changed.
    pub fn refresh(&mut self) {
        self.set(unix_secs());
    }

    /// Shows the Unix second `secs`.
    pub(crate) fn set(&mut self, secs: u64) {
        if secs != self.secs {
            self.secs = secs;
            let at = OK_LINE.len() + 6;
            format_imf(secs, (&mut self.head[at..at + 29]).try_into().unwrap());
        }
    }

    /// The whole header line, CRLF included.
    pub fn line(&self) -> &[u8] {
        &self.head[OK_LINE.len()..]
    }

    /// The `200 OK` status line and then [`Date::line`].
    pub(crate) fn ok_head(&self) -> &[u8] {
        &self.head
    }
}

impl Default for Date {
    fn default() -> Date {
        Date::new()
    }
}

/// The Unix second now. On WASI preview 1, one `clock_time_get` straight
/// to the host: std's `SystemTime` path (libc's `clock_gettime`, then
/// `Timespec` arithmetic) cost more than the call itself, once per request.
fn unix_secs() -> u64 {
    #[cfg(all(target_os = "wasi", target_env = "p1"))]
    {
        #[link(wasm_import_module = "wasi_snapshot_preview1")]
        extern "C" {
            fn clock_time_get(id: u32, precision: u64, time: *mut u64) -> u16;
        }
        const REALTIME: u32 = 0;
        let mut nanos = 0u64;
        // SAFETY: `nanos` is valid for an aligned 8-byte write.
        if unsafe { clock_time_get(REALTIME, 1_000_000_000, &mut nanos) } == 0 {
            return nanos / 1_000_000_000;
        }
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Writes `secs` (Unix time) as `Sun, 06 Nov 1994 08:49:37 GMT`.
fn format_imf(secs: u64, out: &mut [u8; 29]) {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let two = |n: u64| [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    out[3..5].copy_from_slice(b", ");
    out[5..7].copy_from_slice(&two(day));
    out[7] = b' ';
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    out[11] = b' ';
    out[12..14].copy_from_slice(&two(year / 100));
    out[14..16].copy_from_slice(&two(year));
    out[16] = b' ';
    out[17..19].copy_from_slice(&two(rem / 3600));
    out[19] = b':';
    out[20..22].copy_from_slice(&two(rem / 60 % 60));
    out[22] = b':';
    out[23..25].copy_from_slice(&two(rem % 60));
    out[25..].copy_from_slice(b" GMT");
}

/// (year, month 1..=12, day 1..=31) of the day `days` after 1970-01-01
/// (Howard Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imf(secs: u64) -> String {
        let mut date = Date::new();
        date.set(secs);
        String::from_utf8(date.line().to_vec()).unwrap()
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(imf(0), "Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n");
        // RFC 9110's example.
        assert_eq!(imf(784_111_777), "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
        // A leap day, and the end of a century year.
        assert_eq!(imf(951_782_400), "Date: Tue, 29 Feb 2000 00:00:00 GMT\r\n");
        assert_eq!(
            imf(4_102_444_799),
            "Date: Thu, 31 Dec 2099 23:59:59 GMT\r\n"
        );
    }

    #[test]
    fn ok_head_is_the_status_line_then_the_date_line() {
        let mut date = Date::new();
        date.set(784_111_777);
        assert_eq!(
            date.ok_head(),
            b"HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        );
    }

    #[test]
    fn line_has_the_fixed_length() {
        assert_eq!(imf(1_700_000_000).len(), LINE_LEN);
    }
}
