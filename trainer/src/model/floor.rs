//! The anomaly map's floor removed per image (`model.map_floor_quantile`, issue 13, RESULTS.md
//! session 37). A model lifts its whole map on a part unlike its training images (the demo's
//! `KGT*` spindle, of which BSData has no good image), and those normal pixels then outrank the
//! defects of every other image. Reporting max(0, map - q-quantile of the map) keeps what stands
//! above the image's own background; the image score still reads the map before it, so such a
//! part is still rejected (the floored map's max loses 0.04-0.16 image AUROC on the demo, 2 seeds).

use tch::Tensor;

/// 1-based rank k of the q-quantile among `n` values, as the k-th smallest:
/// floor(q (n - 1)) + 1, the lower of the two values numpy's linear `quantile` interpolates
/// between (exact where q (n - 1) is whole).
pub fn floor_rank(n: i64, q: f64) -> i64 {
    (q * (n - 1) as f64).floor() as i64 + 1
}

/// `map` [N, 1, H, W] -> max(0, map - its k-th smallest value per image), k = [`floor_rank`]
/// (H W, q). q 0 returns the map unchanged.
pub fn remove_floor(map: &Tensor, q: f64) -> Tensor {
    if q <= 0.0 {
        return map.shallow_clone();
    }
    let n = map.size()[0];
    let flat = map.view([n, -1]);
    let k = floor_rank(flat.size()[1], q);
    let (floor, _) = flat.kthvalue(k, 1, true);
    (map - floor.view([n, 1, 1, 1])).clamp_min(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rank_is_numpys_quantile_where_it_falls_on_a_value() {
        // numpy.quantile(range(11), 0.1) = 1.0: the 2nd smallest.
        assert_eq!(floor_rank(11, 0.1), 2);
        assert_eq!(floor_rank(11, 0.0), 1);
        assert_eq!(floor_rank(11, 0.5), 6);
        // Between two values: the lower one (numpy interpolates 1.9 between 1 and 2).
        assert_eq!(floor_rank(20, 0.1), 2);
    }

    #[test]
    fn the_floor_is_subtracted_per_image_and_clamped_at_zero() {
        // Image 0: 10, 9, .., 0 (floor at q 0.1 = 1); image 1: 2 x that (floor 2).
        let a: Vec<f32> = (0..11).rev().map(|v| v as f32).collect();
        let b: Vec<f32> = a.iter().map(|v| 2.0 * v).collect();
        let map = Tensor::from_slice(&[a.clone(), b.clone()].concat()).view([2, 1, 1, 11]);
        let out = Vec::<f32>::try_from(&remove_floor(&map, 0.1).view([-1])).unwrap();
        let expected: Vec<f32> = a.iter().map(|v| (v - 1.0).max(0.0)).chain(b.iter().map(|v| (v - 2.0).max(0.0))).collect();
        assert_eq!(out, expected);
        let same = Vec::<f32>::try_from(&remove_floor(&map, 0.0).view([-1])).unwrap();
        assert_eq!(same, [a, b].concat());
    }
}
