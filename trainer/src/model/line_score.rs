//! Line-mean image score (`model.score_line_px`, issue 13, session 28): the max over 16
//! orientations and all positions of the anomaly map's mean along a straight line of
//! `score_line_px` px. A thin crack that the map answers only faintly but along its whole length
//! then outscores a short bright blob, which the max of a small mean filter does not
//! (RESULTS.md, "Session 28": KolektorSDD's missed cracks are long, faint lines; the good
//! images that outscore them are hot on short blotches).
//!
//! The line runs over the map mean-pooled `pool x pool` (stride `pool`, `pool` =
//! ceil(`score_line_px` / [`MAX_POOLED_LENGTH`])), so the kernel stays at most ~35 x 35 whatever
//! the length (a 122 px line at full resolution would be a 125 x 125 kernel). Lines that reach
//! past the map's border read the border pixel repeated (ONNX Pad `edge`): a line that leaves the
//! image is taken to go on as it was at the border, so a crack that crosses the image's edge is
//! not averaged with zeros there.

use tch::{Kind, Tensor};

/// Orientations of the line, evenly spaced over [0, 180) degrees (11.25 degrees apart).
pub const ORIENTATIONS: usize = 16;

/// Longest line in pooled px: the pooling factor is chosen so the pooled length stays at most this.
pub const MAX_POOLED_LENGTH: i64 = 32;

/// Fixed filters of a line score of `length_px` px (>= 3).
#[derive(Debug, Clone, PartialEq)]
pub struct LineKernels {
    /// Mean-pooling window and stride applied to the map first, px.
    pub pool: i64,
    /// Line length in pooled px: `length_px / pool`.
    pub pooled_length: f64,
    /// Kernel side, pooled px (odd): 2 ceil((pooled_length - 1) / 2) + 3.
    pub side: i64,
    /// [`ORIENTATIONS`] kernels, [16, 1, side, side] row-major; kernel `i` is the line at
    /// `i * 180 / 16` degrees counter-clockwise from the +x axis (y down), each summing to 1.
    pub weights: Vec<f32>,
}

impl LineKernels {
    /// The kernels for a line of `length_px` px at the model input's resolution.
    ///
    /// # Panics
    /// If `length_px < 3` (config validation rejects it first).
    pub fn new(length_px: i64) -> Self {
        assert!(length_px >= 3, "line length {length_px} px: expected >= 3");
        let pool = (length_px + MAX_POOLED_LENGTH - 1) / MAX_POOLED_LENGTH;
        let pooled_length = length_px as f64 / pool as f64;
        let r = (pooled_length - 1.0) / 2.0;
        let side = 2 * r.ceil() as i64 + 3;
        let c = (side / 2) as f64;
        // Samples every half pooled px along the line, each splatted bilinearly onto the four
        // pixels around it: correlating with the kernel is then the mean of the map sampled
        // bilinearly along the line.
        let samples = (2.0 * pooled_length).round() as usize + 1;
        let mut weights = Vec::with_capacity(ORIENTATIONS * (side * side) as usize);
        for o in 0..ORIENTATIONS {
            let theta = std::f64::consts::PI * o as f64 / ORIENTATIONS as f64;
            let mut k = vec![0f64; (side * side) as usize];
            for s in 0..samples {
                let t = -r + 2.0 * r * s as f64 / (samples - 1) as f64;
                let (y, x) = (c + t * theta.sin(), c + t * theta.cos());
                let (y0, x0) = (y.floor(), x.floor());
                let (fy, fx) = (y - y0, x - x0);
                let (y0, x0) = (y0 as i64, x0 as i64);
                for (dy, dx, w) in [(0, 0, (1.0 - fy) * (1.0 - fx)), (1, 0, fy * (1.0 - fx)), (0, 1, (1.0 - fy) * fx), (1, 1, fy * fx)] {
                    k[((y0 + dy) * side + x0 + dx) as usize] += w;
                }
            }
            let sum: f64 = k.iter().sum();
            weights.extend(k.iter().map(|v| (v / sum) as f32));
        }
        Self { pool, pooled_length, side, weights }
    }

    /// Padding on each side of the pooled map, pooled px.
    pub fn pad(&self) -> i64 {
        self.side / 2
    }
}

/// Line-mean image score per image: anomaly_map [N, 1, H, W] -> [N]. Mean-pools the map
/// `pool x pool` (stride `pool`, no padding), pads it by the border pixel, correlates it with the
/// [`LineKernels`] and takes the max over orientations and positions.
pub fn line_image_score(anomaly_map: &Tensor, length_px: i64) -> Tensor {
    let k = LineKernels::new(length_px);
    let p = k.pad();
    let kernels = Tensor::from_slice(&k.weights).view([ORIENTATIONS as i64, 1, k.side, k.side]).to_device(anomaly_map.device()).to_kind(Kind::Float);
    let pooled = anomaly_map.avg_pool2d([k.pool, k.pool], [k.pool, k.pool], [0i64, 0], false, true, None);
    pooled.replication_pad2d([p, p, p, p]).conv2d(&kernels, None::<Tensor>, [1i64, 1], [0i64, 0], [1i64, 1], 1).amax([1i64, 2, 3], false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each kernel sums to 1; the horizontal one lies on the centre row over `pooled_length` + 1
    /// columns (the ends are split between two columns), and the vertical one is its transpose.
    #[test]
    fn kernels_are_normalised_lines() {
        let k = LineKernels::new(40);
        assert_eq!((k.pool, k.pooled_length, k.side), (2, 20.0, 23));
        let n = (k.side * k.side) as usize;
        for o in 0..ORIENTATIONS {
            let s: f32 = k.weights[o * n..(o + 1) * n].iter().sum();
            assert!((s - 1.0).abs() < 1e-5, "orientation {o}: sum {s}");
        }
        let side = k.side as usize;
        let horizontal = &k.weights[..n];
        let rows: Vec<usize> = (0..side).filter(|y| horizontal[y * side..(y + 1) * side].iter().any(|&v| v > 1e-7)).collect();
        assert_eq!(rows, vec![side / 2]);
        let cols = horizontal.iter().filter(|&&v| v > 1e-7).count();
        assert_eq!(cols, 21, "r = 9.5: the end samples at c - 9.5 and c + 9.5 touch columns c - 10 to c + 10");
        let vertical = &k.weights[8 * n..9 * n];
        for y in 0..side {
            for x in 0..side {
                assert!((vertical[y * side + x] - horizontal[x * side + y]).abs() < 1e-6, "({y}, {x})");
            }
        }
        assert_eq!(LineKernels::new(32).pool, 1);
        assert_eq!(LineKernels::new(33).pool, 2);
        assert_eq!(LineKernels::new(122).pool, 4);
    }

    /// What the score is for: a thin faint line along the map outscores a short bright blob,
    /// which the 3 px filtered max ranks the other way round. Values computed by hand: a 1 px
    /// line of 1s pooled 2 x 2 is a row of 0.5s, and every line along it averages 0.5; the
    /// 8 x 8 px blob pools to 4 x 4 pooled px, at most ~4 sqrt(2) of a 32 pooled px line.
    #[test]
    fn a_long_faint_line_outscores_a_short_bright_blob() {
        let map = |f: &dyn Fn(i64, i64) -> bool| {
            let v: Vec<f32> = (0..128 * 128).map(|i| f32::from(u8::from(f(i / 128, i % 128)))).collect();
            Tensor::from_slice(&v).view([1, 1, 128, 128])
        };
        let line = map(&|y, _| y == 8);
        let blob = map(&|y, x| (40..48).contains(&y) && (40..48).contains(&x));
        let score = |m: &Tensor| line_image_score(m, 64).double_value(&[0]);
        let box3 = |m: &Tensor| super::super::image_score(m, 3).double_value(&[0]);
        assert!((score(&line) - 0.5).abs() < 1e-6, "line {}", score(&line));
        assert!(score(&blob) < 0.25 && score(&blob) > 0.12, "blob {}", score(&blob));
        assert!((box3(&line) - 1.0 / 3.0).abs() < 1e-6 && (box3(&blob) - 1.0).abs() < 1e-6);
        // A line that leaves the image reads the border pixel repeated: a half line ending at the
        // right border scores as a whole one (zero padding would halve it).
        let half = map(&|y, x| y == 8 && x >= 96);
        assert!(score(&half) > 0.49, "half line at the border {}", score(&half));
    }
}
