//! Threshold calibration from good images only (DESIGN.md §4): the rule the trainer applies to
//! held-out images and `runtime calibrate` to good frames collected on the line.

use std::path::{Path, PathBuf};

use crate::metadata::ThresholdCalibration;
use serde::{Deserialize, Serialize};

/// One held-out good image and its image score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldOutScore {
    pub image: PathBuf,
    pub score: f32,
}

/// The `n` highest held-out good scores with their files, highest first. They set a quantile
/// threshold, so they are the images to look at: a defect among the "good" images shows up here.
/// `paths` and `scores` are in the same order.
pub fn highest_scores(paths: &[PathBuf], scores: &[f32], n: usize) -> Vec<HeldOutScore> {
    let mut v: Vec<HeldOutScore> = paths.iter().zip(scores).map(|(p, &s)| HeldOutScore { image: p.clone(), score: s }).collect();
    v.sort_by(|a, b| b.score.total_cmp(&a.score));
    v.truncate(n);
    v
}

/// A warning when fewer than `1 / target_false_reject_rate` good images were scored: the
/// quantile then lies between the two highest scores, so one unusual good image sets the
/// threshold (seen on BSData, RESULTS.md). `advice` says how to get more images or a higher rate
/// with the caller's command.
pub fn small_holdout_warning(good_images: usize, target_false_reject_rate: f64, advice: &str) -> Option<String> {
    let needed = (1.0 / target_false_reject_rate).ceil() as usize;
    (good_images < needed).then(|| {
        format!(
            "{good_images} good images cannot resolve a false-reject rate of {target_false_reject_rate} (that needs at least {needed}): \
             the threshold is set by the highest scores (`highest`); look at those images, {advice}"
        )
    })
}

/// Short display of an image path for reports: its last two components (folder/file).
pub fn short_name(p: &Path) -> String {
    let parts: Vec<_> = p.iter().rev().take(2).collect();
    parts.into_iter().rev().map(|c| c.to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// The deployed threshold for a target false-reject rate: the `1 - target_false_reject_rate`
/// quantile of held-out good image scores (linear interpolation), and how it was obtained.
///
/// Errors: no scores, or a threshold that is not a positive finite number (a model that did not
/// train scores everything 0 or NaN).
pub fn quantile_threshold(good_scores: &[f32], target_false_reject_rate: f64) -> anyhow::Result<(f32, ThresholdCalibration)> {
    anyhow::ensure!(!good_scores.is_empty(), "threshold calibration needs held-out good images; none were scored");
    let q = 1.0 - target_false_reject_rate;
    let threshold = quantile(good_scores, q);
    anyhow::ensure!(threshold.is_finite() && threshold > 0.0, "calibration gave threshold {threshold} from held-out good scores {good_scores:?}");
    let calibration = ThresholdCalibration {
        method: format!("quantile {q:.3} of held-out good image scores (linear interpolation)"),
        target_false_reject_rate,
        good_images: good_scores.len(),
    };
    Ok((threshold, calibration))
}

/// The `q` quantile of `scores` with linear interpolation between order statistics
/// (numpy's default `method="linear"`). Panics on an empty slice.
pub fn quantile(scores: &[f32], q: f64) -> f32 {
    assert!(!scores.is_empty(), "quantile of no scores");
    let mut s = scores.to_vec();
    s.sort_by(f32::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let t = (pos - lo as f64) as f32;
    s[lo] + (s[hi] - s[lo]) * t
}

#[cfg(test)]
mod tests {
    #[test]
    fn quantile_matches_numpy_linear() {
        // numpy.quantile([3, 1, 2, 4], 0.99) = 3.97; 0.5 -> 2.5; 0 -> 1; 1 -> 4
        let s = [3.0, 1.0, 2.0, 4.0];
        assert!((super::quantile(&s, 0.99) - 3.97).abs() < 1e-6);
        assert_eq!(super::quantile(&s, 0.5), 2.5);
        assert_eq!(super::quantile(&s, 0.0), 1.0);
        assert_eq!(super::quantile(&s, 1.0), 4.0);
    }

    #[test]
    fn quantile_threshold_states_its_method_and_rejects_untrained_scores() {
        let (t, c) = super::quantile_threshold(&[3.0, 1.0, 2.0, 4.0], 0.01).unwrap();
        assert!((t - 3.97).abs() < 1e-6);
        assert_eq!((c.method.as_str(), c.target_false_reject_rate, c.good_images), ("quantile 0.990 of held-out good image scores (linear interpolation)", 0.01, 4));
        assert!(super::quantile_threshold(&[0.0, 0.0], 0.01).unwrap_err().to_string().contains("threshold 0"));
        assert!(super::quantile_threshold(&[f32::NAN, 0.1], 0.01).is_err());
        assert!(super::quantile_threshold(&[], 0.01).unwrap_err().to_string().contains("none were scored"));
    }

    #[test]
    fn highest_scores_are_sorted_with_their_files_and_small_sets_are_flagged() {
        let paths: Vec<std::path::PathBuf> = ["a/1.png", "a/2.png", "a/3.png"].iter().map(Into::into).collect();
        let top = super::highest_scores(&paths, &[0.2, 0.9, 0.5], 2);
        assert_eq!(top.iter().map(|h| (h.image.to_str().unwrap(), h.score)).collect::<Vec<_>>(), [("a/2.png", 0.9), ("a/3.png", 0.5)]);
        assert_eq!(super::short_name(std::path::Path::new("/x/train/good/001.png")), "good/001.png");
        assert!(super::small_holdout_warning(57, 0.01, "or ...").unwrap().contains("that needs at least 100"));
        assert_eq!(super::small_holdout_warning(100, 0.01, ""), None);
        assert_eq!(super::small_holdout_warning(21, 0.05, ""), None);
    }
}
