//! Detection and localization metrics (DESIGN.md §4), shared by trainer and runtime.
//!
//! Definitions follow scikit-learn, which the MVTec AD evaluations use: ROC and PR curves over
//! the distinct score values, ties handled by moving every tied sample across the threshold at once.

/// Area under the ROC curve of `scores` (higher = more anomalous) against `labels`
/// (true = anomalous), trapezoidal over distinct thresholds (equal to the Mann-Whitney U statistic
/// with ties counted 1/2). Returns `None` when either class is absent.
pub fn auroc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len(), "scores and labels differ in length");
    let (tps, fps) = cumulative_counts(scores, labels);
    let (p, n) = (*tps.last()? as f64, *fps.last()? as f64);
    if p == 0.0 || n == 0.0 {
        return None;
    }
    let mut area = 0.0;
    let (mut prev_tp, mut prev_fp) = (0.0, 0.0);
    for (&tp, &fp) in tps.iter().zip(&fps) {
        let (tp, fp) = (tp as f64, fp as f64);
        area += (fp - prev_fp) * (tp + prev_tp) / 2.0;
        prev_tp = tp;
        prev_fp = fp;
    }
    Some(area / (p * n))
}

/// Average precision (`sklearn.metrics.average_precision_score`): sum over distinct thresholds
/// of (R_k - R_{k-1}) * P_k. Returns `None` without positives.
pub fn average_precision(scores: &[f32], labels: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len(), "scores and labels differ in length");
    let (tps, fps) = cumulative_counts(scores, labels);
    let p = *tps.last()? as f64;
    if p == 0.0 {
        return None;
    }
    let mut ap = 0.0;
    let mut prev_recall = 0.0;
    for (&tp, &fp) in tps.iter().zip(&fps) {
        let recall = tp as f64 / p;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    Some(ap)
}

/// Best F1 over all thresholds (F1-max) and the threshold reaching it (score >= threshold is
/// anomalous). Returns `None` without positives.
pub fn f1_max(scores: &[f32], labels: &[bool]) -> Option<(f64, f32)> {
    let order = descending_order(scores);
    let p = labels.iter().filter(|&&l| l).count() as f64;
    if p == 0.0 {
        return None;
    }
    let (mut tp, mut fp, mut best) = (0.0, 0.0, (0.0, f32::INFINITY));
    for (i, &ix) in order.iter().enumerate() {
        if labels[ix] { tp += 1.0 } else { fp += 1.0 }
        let last_of_tie = order.get(i + 1).is_none_or(|&n| scores[n] != scores[ix]);
        if last_of_tie && tp > 0.0 {
            let f1 = 2.0 * tp / (tp + fp + p);
            if f1 > best.0 {
                best = (f1, scores[ix]);
            }
        }
    }
    Some(best)
}

/// Precision, recall and F1 when `score > threshold` is called anomalous (the runtime's rule).
/// Precision is 0 when nothing is called anomalous; recall is 0 without positives.
pub fn precision_recall_f1(scores: &[f32], labels: &[bool], threshold: f32) -> (f64, f64, f64) {
    let (mut tp, mut fp, mut fneg) = (0.0, 0.0, 0.0);
    for (&s, &l) in scores.iter().zip(labels) {
        match (s > threshold, l) {
            (true, true) => tp += 1.0,
            (true, false) => fp += 1.0,
            (false, true) => fneg += 1.0,
            _ => {}
        }
    }
    let precision = if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 };
    let recall = if tp + fneg > 0.0 { tp / (tp + fneg) } else { 0.0 };
    let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
    (precision, recall, f1)
}

fn descending_order(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order
}

/// True/false positive counts at each distinct threshold, from the highest score down.
fn cumulative_counts(scores: &[f32], labels: &[bool]) -> (Vec<u64>, Vec<u64>) {
    let order = descending_order(scores);
    let (mut tps, mut fps) = (Vec::new(), Vec::new());
    let (mut tp, mut fp) = (0u64, 0u64);
    for (i, &ix) in order.iter().enumerate() {
        if labels[ix] { tp += 1 } else { fp += 1 }
        if order.get(i + 1).is_none_or(|&n| scores[n] != scores[ix]) {
            tps.push(tp);
            fps.push(fp);
        }
    }
    (tps, fps)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Independent definition: probability that a random positive outranks a random negative,
    /// ties counting one half, by enumerating every pair.
    fn pairwise_auroc(s: &[f32], l: &[bool]) -> f64 {
        let (mut num, mut den) = (0.0, 0.0);
        for (i, &li) in l.iter().enumerate() {
            for (j, &lj) in l.iter().enumerate() {
                if li && !lj {
                    den += 1.0;
                    num += if s[i] > s[j] { 1.0 } else if s[i] == s[j] { 0.5 } else { 0.0 };
                }
            }
        }
        num / den
    }

    const S: [f32; 10] = [0.1, 0.4, 0.35, 0.8, 0.4, 0.9, 0.05, 0.4, 0.7, 0.2];
    const L: [bool; 10] = [false, false, true, true, true, true, false, false, true, false];

    #[test]
    fn auroc_matches_sklearn_and_pairwise_with_ties() {
        // sklearn.metrics.roc_auc_score(L, S) = 0.88 (22 of 25 pairs, one tie pair counted twice 1/2)
        let a = auroc(&S, &L).unwrap();
        assert!((a - 0.88).abs() < 1e-12, "{a}");
        assert!((a - pairwise_auroc(&S, &L)).abs() < 1e-12);
        assert_eq!(auroc(&[0.3; 4], &[true, false, true, false]), Some(0.5));
        assert_eq!(auroc(&[0.1, 0.2], &[false, false]), None);
        assert_eq!(auroc(&[0.1, 0.9], &[false, true]), Some(1.0));
    }

    #[test]
    fn average_precision_matches_sklearn() {
        // sklearn.metrics.average_precision_score(L, S): thresholds 0.9, 0.8, 0.7 give P=1 at
        // R=.2,.4,.6; 0.4 (tie of 1 pos, 2 neg) gives P=4/6 at R=.8; 0.35 gives P=5/7 at R=1.
        let expect = 0.2 + 0.2 + 0.2 + 0.2 * (4.0 / 6.0) + 0.2 * (5.0 / 7.0);
        let ap = average_precision(&S, &L).unwrap();
        assert!((ap - expect).abs() < 1e-12, "{ap} vs {expect}");
        // Constant scores: AP is the positive rate.
        assert!((average_precision(&[1.0; 4], &[true, false, false, false]).unwrap() - 0.25).abs() < 1e-12);
        assert_eq!(average_precision(&[1.0], &[false]), None);
    }

    #[test]
    fn f1_and_prf_at_threshold() {
        // Best cut: score >= 0.35 -> tp 5, fp 2 -> F1 = 2*5 / (5 + 2 + 5) = 10 / 12.
        let (f1, t) = f1_max(&S, &L).unwrap();
        assert!((f1 - 10.0 / 12.0).abs() < 1e-12 && t == 0.35, "{f1} {t}");
        let (p, r, f) = precision_recall_f1(&S, &L, 0.5);
        assert_eq!((p, r), (1.0, 0.6));
        assert!((f - 0.75).abs() < 1e-12);
        assert_eq!(precision_recall_f1(&S, &L, 1.0), (0.0, 0.0, 0.0));
    }
}
