//! Drift watch (issue 17, item 4): lighting, lens or product drift moves every part's score
//! before good parts start to cross the threshold. The line compares the scores of recent
//! frames with the good-image score statistics calibration stored in the model
//! (`ffcad.good_score_stats`: mean μ and standard deviation σ of held-out good images).
//!
//! The test: every `window / 4` inspected frames, once `window` were seen, the **median** of the
//! last `window` scores (robust to the occasional real defect) is compared with μ. The alarm is
//! raised when |median − μ| > k·s, with s = max(σ, 0.05·|threshold − μ|) (the floor keeps a model
//! calibrated on a few near-identical images from alarming at noise), and cleared when the median
//! is back within k·s / 2. Defaults: window 200 frames, k = 4. A model without statistics (fewer
//! than 5 good images) has no drift watch; that is logged once.

use std::collections::VecDeque;

use serde::Serialize;

use crate::metadata::ScoreStats;

/// A change of the drift state, for `alarms.jsonl`, the log, `/metrics` and the page.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DriftAlarm {
    pub time_unix_ms: u128,
    /// `drift` (raised) or `drift_cleared`.
    pub action: String,
    /// The last frame whose score was counted.
    pub frame_id: u64,
    /// Median of the last `window` scores.
    pub median: f64,
    /// Good-image mean μ and the bound k·s it was compared with.
    pub good_mean: f64,
    pub bound: f64,
    pub window: usize,
}

/// The drift watch of one model ([`DriftWatch::reset`] on a model swap).
#[derive(Debug)]
pub struct DriftWatch {
    window: usize,
    k: f64,
    /// (μ, s) of the model; `None`: no statistics, no watch.
    good: Option<(f64, f64)>,
    scores: VecDeque<f32>,
    since_check: usize,
    raised: bool,
    last_median: Option<f64>,
}

impl DriftWatch {
    /// A watch over `window` scores (at least 8) with factor `k`, for a model with good-image
    /// statistics `good` and `threshold`.
    pub fn new(window: usize, k: f64, good: &ScoreStats, threshold: f32) -> Self {
        let mut w = Self { window: window.max(8), k, good: None, scores: VecDeque::new(), since_check: 0, raised: false, last_median: None };
        w.reset(good, threshold);
        w
    }

    /// Starts over for another model (its statistics and threshold).
    pub fn reset(&mut self, good: &ScoreStats, threshold: f32) {
        self.good = (good.count >= 5 && good.mean.is_finite() && good.std.is_finite()).then(|| (good.mean, good.std.max(0.05 * (f64::from(threshold) - good.mean).abs())));
        if self.good.is_none() {
            tracing::info!("drift watch off: the model has no good-image score statistics (recalibrate it with `runtime calibrate` to get them)");
        }
        self.scores.clear();
        self.since_check = 0;
        self.raised = false;
        self.last_median = None;
    }

    /// Whether the alarm is up.
    pub fn raised(&self) -> bool {
        self.raised
    }

    /// Median of the last window at the last check.
    pub fn median(&self) -> Option<f64> {
        self.last_median
    }

    /// (μ, k·s) the median is compared with, if the watch is on.
    pub fn reference(&self) -> Option<(f64, f64)> {
        self.good.map(|(m, s)| (m, self.k * s))
    }

    /// Counts the score of inspected frame `frame_id`; returns the alarm or its clearing when the
    /// state changes.
    pub fn add(&mut self, frame_id: u64, score: f32) -> Option<DriftAlarm> {
        let (mean, s) = self.good?;
        if !score.is_finite() {
            return None;
        }
        if self.scores.len() == self.window {
            self.scores.pop_front();
        }
        self.scores.push_back(score);
        self.since_check += 1;
        if self.scores.len() < self.window || self.since_check < self.window / 4 {
            return None;
        }
        self.since_check = 0;
        let mut sorted: Vec<f32> = self.scores.iter().copied().collect();
        sorted.sort_by(f32::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 { f64::from(sorted[n / 2]) } else { (f64::from(sorted[n / 2 - 1]) + f64::from(sorted[n / 2])) / 2.0 };
        self.last_median = Some(median);
        let bound = self.k * s;
        let off = (median - mean).abs();
        let change = if !self.raised && off > bound {
            Some("drift")
        } else if self.raised && off <= bound / 2.0 {
            Some("drift_cleared")
        } else {
            None
        }?;
        self.raised = change == "drift";
        Some(DriftAlarm { time_unix_ms: crate::events::now_unix_ms(), action: change.into(), frame_id, median, good_mean: mean, bound, window: self.window })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(mean: f64, std: f64) -> ScoreStats {
        ScoreStats { count: 20, mean, std, min: mean - 2.0 * std, max: mean + 2.0 * std }
    }

    #[test]
    fn a_shifting_median_raises_and_a_return_clears_with_hysteresis() {
        // mu 0.1, sigma 0.01, threshold 0.5: s = max(0.01, 0.02) = 0.02, bound 4 x 0.02 = 0.08.
        let mut w = DriftWatch::new(20, 4.0, &stats(0.1, 0.01), 0.5);
        let (mean, bound) = w.reference().unwrap();
        assert!((mean - 0.1).abs() < 1e-12 && (bound - 0.08).abs() < 1e-12, "{mean} {bound}");
        let mut alarms = Vec::new();
        let mut id = 0;
        let mut feed = |w: &mut DriftWatch, level: f32, n: usize| {
            for _ in 0..n {
                if let Some(a) = w.add(id, level) {
                    alarms.push((a.action, a.frame_id, a.median));
                }
                id += 1;
            }
        };
        feed(&mut w, 0.1, 40);
        feed(&mut w, 0.17, 40); // 0.07 off: inside the bound
        feed(&mut w, 0.19, 40); // 0.09 off: drift
        feed(&mut w, 0.15, 40); // 0.05 off: above half the bound, still raised
        feed(&mut w, 0.13, 40); // 0.03 off: cleared
        let actions: Vec<&str> = alarms.iter().map(|a| a.0.as_str()).collect();
        assert_eq!(actions, ["drift", "drift_cleared"], "{alarms:?}");
        // Raised when the median (not the first outlier) crossed: more than half the window at 0.19.
        assert!(alarms[0].1 >= 90 && alarms[0].1 < 120, "{alarms:?}");
        assert!((alarms[0].2 - 0.19).abs() < 1e-6);
    }

    #[test]
    fn a_few_real_defects_do_not_move_the_median() {
        let mut w = DriftWatch::new(40, 4.0, &stats(0.1, 0.01), 0.5);
        for i in 0..400u64 {
            let s = if i % 10 == 0 { 0.9 } else { 0.1 };
            assert!(w.add(i, s).is_none(), "frame {i}");
        }
        assert!(!w.raised());
    }

    #[test]
    fn no_statistics_no_watch() {
        let mut w = DriftWatch::new(20, 4.0, &ScoreStats::of(&[]), 0.5);
        assert_eq!(w.reference(), None);
        for i in 0..100 {
            assert!(w.add(i, 5.0).is_none());
        }
    }
}
