//! Latency samples and their percentiles.

use std::time::Duration;

/// Latencies in nanoseconds, in the order they were taken.
#[derive(Debug, Default)]
pub struct Samples(Vec<u64>);

/// Count and percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl Samples {
    pub fn with_capacity(n: usize) -> Samples {
        Samples(Vec::with_capacity(n))
    }

    pub fn push(&mut self, latency: Duration) {
        self.0
            .push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Nearest-rank percentiles over all samples; zeros when there are none.
    pub fn summary(mut self) -> Summary {
        self.0.sort_unstable();
        let sorted = &self.0;
        let at = |p: f64| -> f64 {
            if sorted.is_empty() {
                return 0.0;
            }
            let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
            sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
        };
        Summary {
            count: sorted.len(),
            p50_us: at(50.0),
            p90_us: at(90.0),
            p99_us: at(99.0),
            max_us: at(100.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut samples = Samples::default();
        for us in 1..=100 {
            samples.push(Duration::from_micros(us));
        }
        let summary = samples.summary();
        assert_eq!(summary.count, 100);
        assert_eq!(summary.p50_us, 50.0);
        assert_eq!(summary.p90_us, 90.0);
        assert_eq!(summary.p99_us, 99.0);
        assert_eq!(summary.max_us, 100.0);
        assert_eq!(Samples::default().summary().p99_us, 0.0);
    }
}
