//! A per-app bound on the log lines its guests can cause.
//!
//! A guest can make the host log (its stderr, a denied `connect`, a trap),
//! and a hostile one would do it in a loop: 1 million lines in 30 s was
//! measured before this bound. Each app has a token bucket: a burst of
//! [`LogLimit::BURST_SECONDS`] seconds' worth of lines, refilled at its
//! `log_rate` (default 5) lines a second. Lines past it are counted, and the
//! next line let through says how many were lost. The burst keeps the rare
//! line (one trap, one denied connect) always in the log.

use std::sync::Mutex;
use std::time::Instant;

/// Lines an app's guests may cause: a token bucket.
#[derive(Debug)]
pub struct LogLimit {
    /// Lines let through per second, sustained; at least 1.
    per_second: u32,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Thousandths of a line that may be logged now; at most
    /// `per_second * BURST_SECONDS * 1000`.
    millilines: u64,
    /// When `millilines` was last refilled.
    refilled: Instant,
    /// Lines suppressed since a line was last let through.
    suppressed: u64,
}

impl LogLimit {
    /// The burst: this many seconds' worth of lines may come at once.
    pub const BURST_SECONDS: u32 = 4;

    /// A limit of `per_second` lines a second (at least 1), its bucket full.
    pub fn new(per_second: u32) -> LogLimit {
        let per_second = per_second.max(1);
        LogLimit {
            per_second,
            state: Mutex::new(Bucket {
                millilines: u64::from(per_second * Self::BURST_SECONDS) * 1000,
                refilled: Instant::now(),
                suppressed: 0,
            }),
        }
    }

    /// Whether a line a guest of `app` caused may be logged now. If lines
    /// were suppressed before it, a note saying how many is logged first.
    ///
    /// ```ignore
    /// if app.log_limit.admit(&app.name) {
    ///     tracing::info!(app = %app.name, "connect to {addr} denied");
    /// }
    /// ```
    pub fn admit(&self, app: &str) -> bool {
        match self.admit_at(Instant::now()) {
            None => false,
            Some(0) => true,
            Some(suppressed) => {
                tracing::warn!(
                    app = %app,
                    suppressed,
                    "{suppressed} log lines caused by this app's guests were suppressed (at most {} a second)",
                    self.per_second
                );
                true
            }
        }
    }

    /// As [`admit`](Self::admit) at `now`: `Some(suppressed before)` or `None`.
    fn admit_at(&self, now: Instant) -> Option<u64> {
        let mut bucket = self.state.lock().unwrap();
        let elapsed_ms = now.saturating_duration_since(bucket.refilled).as_millis();
        if elapsed_ms > 0 {
            let full = u64::from(self.per_second * Self::BURST_SECONDS) * 1000;
            let refill = u64::try_from(elapsed_ms).unwrap_or(u64::MAX) * u64::from(self.per_second);
            bucket.millilines = bucket.millilines.saturating_add(refill).min(full);
            bucket.refilled = now;
        }
        if bucket.millilines >= 1000 {
            bucket.millilines -= 1000;
            Some(std::mem::take(&mut bucket.suppressed))
        } else {
            bucket.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_flood_is_cut_to_the_burst_then_the_rate_and_counted() {
        let limit = LogLimit::new(5);
        let start = Instant::now();
        let let_through = (0..1000)
            .filter(|_| limit.admit_at(start).is_some())
            .count();
        assert_eq!(let_through, 20, "the burst: 4 s of 5 lines");
        // A second later 5 more may pass; the first says what was lost.
        let later = start + Duration::from_secs(1);
        assert_eq!(limit.admit_at(later), Some(980));
        let more = (0..100).filter(|_| limit.admit_at(later).is_some()).count();
        assert_eq!(more, 4);
    }
}
