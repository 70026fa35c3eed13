//! Latency statistics that stay the same size however long the line runs.

use serde::Serialize;

/// Samples kept for percentiles (the most recent ones).
const WINDOW: usize = 4096;

/// Running mean over every sample, and p50/p95 over the last [`WINDOW`] samples, in ms.
#[derive(Debug, Clone, Default)]
pub struct LatencyStats {
    count: u64,
    sum_ms: f64,
    max_ms: f64,
    recent: Vec<f64>,
    next: usize,
}

/// A snapshot of [`LatencyStats`], ms.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
}

impl LatencyStats {
    /// Adds one sample in ms.
    pub fn add(&mut self, ms: f64) {
        self.count += 1;
        self.sum_ms += ms;
        self.max_ms = self.max_ms.max(ms);
        if self.recent.len() < WINDOW {
            self.recent.push(ms);
        } else {
            self.recent[self.next] = ms;
        }
        self.next = (self.next + 1) % WINDOW;
    }

    /// Mean, nearest-rank p50/p95 of the recent window, max; zeros when empty.
    pub fn summary(&self) -> LatencySummary {
        if self.count == 0 {
            return LatencySummary::default();
        }
        LatencySummary {
            count: self.count,
            mean_ms: self.sum_ms / self.count as f64,
            p50_ms: crate::bench::percentile(&self.recent, 50.0),
            p95_ms: crate::bench::percentile(&self.recent, 95.0),
            max_ms: self.max_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_known_samples() {
        let mut s = LatencyStats::default();
        assert_eq!(s.summary(), LatencySummary::default());
        for v in 1..=100 {
            s.add(v as f64);
        }
        let m = s.summary();
        assert_eq!((m.count, m.mean_ms, m.p50_ms, m.p95_ms, m.max_ms), (100, 50.5, 50.0, 95.0, 100.0));
    }

    #[test]
    fn memory_is_bounded() {
        let mut s = LatencyStats::default();
        for v in 0..(3 * WINDOW) {
            s.add(v as f64);
        }
        assert_eq!(s.recent.len(), WINDOW);
        assert_eq!(s.summary().count, 3 * WINDOW as u64);
        // Percentiles describe the recent window: the last WINDOW samples.
        assert!(s.summary().p50_ms >= (2 * WINDOW) as f64);
    }
}
