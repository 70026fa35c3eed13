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
/// of (R_k - R_{k-1}) * P_k. Returns `None` without positives, and without negatives (AP would
/// be 1 whatever the scores, as AUROC is undefined there).
pub fn average_precision(scores: &[f32], labels: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len(), "scores and labels differ in length");
    let (tps, fps) = cumulative_counts(scores, labels);
    let p = *tps.last()? as f64;
    if p == 0.0 || *fps.last()? == 0 {
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

/// Connected components of a 0/1 mask (`width` x `height`, row-major) with 8-connectivity, as
/// `scipy.ndimage.label(mask, structure=ones((3, 3)))` in the MVTec AD evaluation. Returns the
/// component id per pixel (0 = background, 1.. = components) and the size of each component.
pub fn label_components(mask: &[u8], width: usize, height: usize) -> (Vec<u32>, Vec<usize>) {
    let mut labels = vec![0u32; mask.len()];
    let mut sizes = Vec::new();
    let mut stack = Vec::new();
    for start in 0..mask.len() {
        if mask[start] == 0 || labels[start] != 0 {
            continue;
        }
        let id = sizes.len() as u32 + 1;
        let mut size = 0;
        labels[start] = id;
        stack.push(start);
        while let Some(p) = stack.pop() {
            size += 1;
            let (x, y) = ((p % width) as i64, (p / width) as i64);
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= width as i64 || ny >= height as i64 {
                        continue;
                    }
                    let q = ny as usize * width + nx as usize;
                    if mask[q] != 0 && labels[q] == 0 {
                        labels[q] = id;
                        stack.push(q);
                    }
                }
            }
        }
        sizes.push(size);
    }
    (labels, sizes)
}

/// Area under the per-region-overlap curve up to `fpr_limit` (MVTec AD: 0.3), normalised by
/// `fpr_limit` (Bergmann et al., IJCV 2021, section 5.2). `maps` and `masks` hold one
/// `width x height` row-major image each (masks 0 = good). PRO at a threshold is the mean over
/// all defect regions (8-connected components of all masks) of the fraction of the region at or
/// above the threshold; FPR is the fraction of good pixels at or above it. The curve runs over
/// the distinct score values from high to low, starts at (0, 0), and is integrated with the
/// trapezoid rule, interpolating linearly at `fpr_limit`. Returns `None` without defect regions
/// or without good pixels.
pub fn aupro(maps: &[&[f32]], masks: &[&[u8]], width: usize, height: usize, fpr_limit: f64) -> Option<f64> {
    assert_eq!(maps.len(), masks.len(), "maps and masks differ in count");
    let mut fp_weight = Vec::with_capacity(maps.len() * width * height);
    let mut pro_weight = Vec::with_capacity(fp_weight.capacity());
    let mut region_sizes: Vec<Vec<usize>> = Vec::new();
    let mut all_labels = Vec::new();
    for m in masks {
        assert_eq!(m.len(), width * height, "mask size");
        let (labels, sizes) = label_components(m, width, height);
        all_labels.push(labels);
        region_sizes.push(sizes);
    }
    let regions: usize = region_sizes.iter().map(Vec::len).sum();
    let good: usize = masks.iter().map(|m| m.iter().filter(|&&v| v == 0).count()).sum();
    if regions == 0 || good == 0 {
        return None;
    }
    let mut scores = Vec::with_capacity(fp_weight.capacity());
    for ((map, labels), sizes) in maps.iter().zip(&all_labels).zip(&region_sizes) {
        assert_eq!(map.len(), width * height, "map size");
        for (&s, &l) in map.iter().zip(labels) {
            scores.push(s);
            if l == 0 {
                fp_weight.push(1.0 / good as f64);
                pro_weight.push(0.0);
            } else {
                fp_weight.push(0.0);
                pro_weight.push(1.0 / (sizes[l as usize - 1] * regions) as f64);
            }
        }
    }
    let order = descending_order(&scores);
    let mut curve = vec![(0.0f64, 0.0f64)];
    let (mut fpr, mut pro) = (0.0, 0.0);
    for (i, &ix) in order.iter().enumerate() {
        fpr += fp_weight[ix];
        pro += pro_weight[ix];
        if order.get(i + 1).is_none_or(|&n| scores[n] != scores[ix]) {
            curve.push((fpr, pro));
        }
    }
    Some(area_up_to(&curve, fpr_limit) / fpr_limit)
}

/// Trapezoid area under a curve of (x, y) points sorted by x, from x = 0 to `limit`,
/// interpolating linearly at `limit`.
fn area_up_to(curve: &[(f64, f64)], limit: f64) -> f64 {
    let mut area = 0.0;
    for w in curve.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if x0 >= limit {
            break;
        }
        if x1 <= limit {
            area += (x1 - x0) * (y0 + y1) / 2.0;
        } else {
            let y = y0 + (y1 - y0) * (limit - x0) / (x1 - x0);
            area += (limit - x0) * (y0 + y) / 2.0;
        }
    }
    area
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
        assert_eq!(average_precision(&[0.2, 0.9], &[true, true]), None);
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

    #[test]
    fn components_are_8_connected() {
        // Two diagonal pixels form one region; the far pixel another.
        let m = [1u8, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
        let (l, sizes) = label_components(&m, 4, 3);
        assert_eq!(sizes, vec![2, 1]);
        assert_eq!((l[0], l[5], l[11]), (1, 1, 2));
    }

    /// Independent AUPRO: sweep every distinct threshold, count directly, integrate.
    fn brute_aupro(maps: &[Vec<f32>], masks: &[Vec<u8>], w: usize, h: usize, limit: f64) -> f64 {
        let mut thresholds: Vec<f32> = maps.iter().flatten().cloned().collect();
        thresholds.sort_by(|a, b| b.total_cmp(a));
        thresholds.dedup();
        let good: f64 = masks.iter().flatten().filter(|&&v| v == 0).count() as f64;
        let comps: Vec<(Vec<u32>, Vec<usize>)> = masks.iter().map(|m| label_components(m, w, h)).collect();
        let n_regions: usize = comps.iter().map(|c| c.1.len()).sum();
        let mut curve = vec![(0.0, 0.0)];
        for t in thresholds {
            let fp = maps.iter().zip(masks).flat_map(|(m, k)| m.iter().zip(k)).filter(|(s, k)| **k == 0 && **s >= t).count() as f64;
            let mut pro = 0.0;
            for (m, (labels, sizes)) in maps.iter().zip(&comps) {
                for (r, size) in sizes.iter().enumerate() {
                    let hit = m.iter().zip(labels).filter(|(s, l)| **l == r as u32 + 1 && **s >= t).count();
                    pro += hit as f64 / *size as f64;
                }
            }
            curve.push((fp / good, pro / n_regions as f64));
        }
        let mut area = 0.0;
        for win in curve.windows(2) {
            let ((x0, y0), (x1, y1)) = (win[0], win[1]);
            if x0 >= limit { break; }
            let (xe, ye) = if x1 <= limit { (x1, y1) } else { (limit, y0 + (y1 - y0) * (limit - x0) / (x1 - x0)) };
            area += (xe - x0) * (y0 + ye) / 2.0;
        }
        area / limit
    }

    #[test]
    fn aupro_matches_brute_force_and_hand_values() {
        // Hand example: 1 image 4x1, region = pixels 0-1; scores [0.9, 0.2, 0.5, 0.1].
        // t=0.9: fpr 0, pro 0.5; t=0.5: fpr 0.5, pro 0.5; t=0.2: fpr .5, pro 1; t=.1: fpr 1, pro 1.
        // Up to fpr 0.3: trapezoid from (0,0.5)..(0.3,0.5) -> 0.15; plus (0,0)->(0,0.5) has no width.
        let a = aupro(&[&[0.9, 0.2, 0.5, 0.1]], &[&[1, 1, 0, 0]], 4, 1, 0.3).unwrap();
        assert!((a - 0.5).abs() < 1e-12, "{a}");
        // Random-ish maps with ties over 3 images, two of them with regions.
        let (w, h) = (6, 5);
        let maps: Vec<Vec<f32>> = (0..3).map(|i| (0..w * h).map(|p| (((p * 7 + i * 13) % 11) as f32) / 10.0).collect()).collect();
        let mut masks = vec![vec![0u8; w * h]; 3];
        for p in [7, 8, 13, 14, 28] { masks[0][p] = 1; }
        for p in [0, 1, 2, 20] { masks[2][p] = 1; }
        let mr: Vec<&[f32]> = maps.iter().map(|m| m.as_slice()).collect();
        let kr: Vec<&[u8]> = masks.iter().map(|m| m.as_slice()).collect();
        for limit in [0.3, 1.0] {
            let got = aupro(&mr, &kr, w, h, limit).unwrap();
            let want = brute_aupro(&maps, &masks, w, h, limit);
            assert!((got - want).abs() < 1e-12, "limit {limit}: {got} vs {want}");
        }
        assert_eq!(aupro(&[&[0.1, 0.2]], &[&[0, 0]], 2, 1, 0.3), None, "no regions");
    }
}
