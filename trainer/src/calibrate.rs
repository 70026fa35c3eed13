//! Threshold calibration from good images only (DESIGN.md §4).

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
}
