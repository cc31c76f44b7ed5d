//! The workers' clock: monotonic nanoseconds, read once per poll.
//!
//! Every poll of a process is timed (its CPU budget and CPU time), so a
//! message from one process to another and its answer read the clock
//! twice. `clock_gettime(CLOCK_MONOTONIC)` costs 24-35 ns on the project's
//! VM; the CPU's time-stamp counter, read with `rdtsc` and scaled, 10 ns.
//! The counter is used where Linux itself uses it as its clocksource (it
//! then checked that it runs at a constant rate and in step on every CPU);
//! elsewhere, and off x86_64, the clock is `CLOCK_MONOTONIC`. The scale is
//! measured against `CLOCK_MONOTONIC` over 1 ms when the kernel starts
//! ([`init`]): some tens of ppm off, nothing for CPU accounting.
//!
//! Only the kernel's own accounting reads this clock; what a guest sees is
//! `process::clock`.

use std::sync::LazyLock;

/// Nanoseconds since an arbitrary start; never decreases on one thread.
pub(super) fn now() -> u64 {
    CLOCK.now()
}

/// Sets the clock up now, so that its 1 ms calibration does not fall on
/// the first poll.
pub(super) fn init() {
    LazyLock::force(&CLOCK);
}

static CLOCK: LazyLock<Clock> = LazyLock::new(Clock::new);

#[derive(Debug, Clone, Copy)]
enum Clock {
    /// `clock_gettime(CLOCK_MONOTONIC)`.
    Monotonic,
    /// The time-stamp counter: `base_ns + (tsc - base_tsc) * scale / 2^32`.
    #[cfg(target_arch = "x86_64")]
    Tsc {
        /// A counter reading taken at `base_ns`.
        base_tsc: u64,
        /// `CLOCK_MONOTONIC` when the counter read `base_tsc`.
        base_ns: u64,
        /// Nanoseconds per counter tick, times 2^32.
        scale: u64,
    },
}

impl Clock {
    fn new() -> Clock {
        #[cfg(target_arch = "x86_64")]
        if linux_clocksource_is_tsc() {
            if let Some(clock) = Clock::calibrate() {
                return clock;
            }
        }
        Clock::Monotonic
    }

    #[inline]
    fn now(self) -> u64 {
        match self {
            Clock::Monotonic => monotonic(),
            #[cfg(target_arch = "x86_64")]
            Clock::Tsc {
                base_tsc,
                base_ns,
                scale,
            } => {
                // A counter a few ticks behind the base (another CPU) reads as the base.
                let ticks = rdtsc().saturating_sub(base_tsc);
                base_ns + ((u128::from(ticks) * u128::from(scale)) >> 32) as u64
            }
        }
    }

    /// Measures the counter's rate against `CLOCK_MONOTONIC` over 1 ms.
    #[cfg(target_arch = "x86_64")]
    fn calibrate() -> Option<Clock> {
        let (start_ns, start_tsc) = paired_reading()?;
        while monotonic() - start_ns < 1_000_000 {
            std::hint::spin_loop();
        }
        let (base_ns, base_tsc) = paired_reading()?;
        let ticks = base_tsc.checked_sub(start_tsc).filter(|&ticks| ticks > 0)?;
        let scale = (u128::from(base_ns - start_ns) << 32) / u128::from(ticks);
        Some(Clock::Tsc {
            base_tsc,
            base_ns,
            scale: u64::try_from(scale).ok()?,
        })
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds.
fn monotonic() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is valid for writes; CLOCK_MONOTONIC always exists, so
    // the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(target_arch = "x86_64")]
fn rdtsc() -> u64 {
    // SAFETY: every x86_64 CPU has `rdtsc`; it only reads the counter.
    unsafe { std::arch::x86_64::_rdtsc() }
}

/// A `CLOCK_MONOTONIC` reading and a counter reading taken together (the
/// thread was not descheduled between them), or `None` after 100 tries.
#[cfg(target_arch = "x86_64")]
fn paired_reading() -> Option<(u64, u64)> {
    (0..100).find_map(|_| {
        let before = monotonic();
        let tsc = rdtsc();
        let after = monotonic();
        (after - before < 2_000).then_some((before + (after - before) / 2, tsc))
    })
}

/// Whether Linux keeps time with the time-stamp counter: only then is it
/// known to run at a constant rate and in step on every CPU.
#[cfg(target_arch = "x86_64")]
fn linux_clocksource_is_tsc() -> bool {
    std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
        .is_ok_and(|source| source.trim() == "tsc")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// `Instant::now()` and [`now`] read together: retried until both came
    /// within 50 µs (the thread was not descheduled between them).
    fn paired() -> (Instant, u64) {
        loop {
            let before = Instant::now();
            let ns = now();
            if before.elapsed() < Duration::from_micros(50) {
                return (before, ns);
            }
        }
    }

    /// The clock in use (the counter here, if Linux uses it) keeps pace
    /// with `Instant` over 50 ms, to 1%.
    #[test]
    fn the_clock_keeps_pace_with_instant() {
        let (start, start_ns) = paired();
        std::thread::sleep(Duration::from_millis(50));
        let (end, end_ns) = paired();
        let (elapsed, elapsed_ns) = (end - start, end_ns - start_ns);
        let diff = elapsed_ns.abs_diff(elapsed.as_nanos() as u64);
        assert!(
            diff < elapsed.as_nanos() as u64 / 100 + 100_000,
            "clock {elapsed_ns} ns, Instant {elapsed:?} ({:?})",
            *CLOCK
        );
    }

    #[test]
    fn the_clock_never_goes_back_on_one_thread() {
        let mut last = now();
        for _ in 0..100_000 {
            let next = now();
            assert!(next >= last, "{next} after {last}");
            last = next;
        }
    }
}
