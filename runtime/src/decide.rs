//! Stage 4 (DESIGN.md §6): the verdict.

use crate::overlay::Verdict;

/// A part is rejected when its image score is strictly above the threshold. A NaN score (a
/// broken frame or model) also rejects: on a line, an unknown part must not pass as good.
pub fn decide(score: f32, threshold: f32) -> Verdict {
    Verdict { reject: score > threshold || score.is_nan(), score, threshold }
}

#[cfg(test)]
mod tests {
    #[test]
    fn strictly_above_or_nan_rejects() {
        assert!(super::decide(0.51, 0.5).reject);
        assert!(!super::decide(0.5, 0.5).reject);
        assert!(!super::decide(0.1, 0.5).reject);
        assert!(super::decide(f32::NAN, 0.5).reject);
    }
}
