//! Gaussian smoothing of the anomaly map (issue 13): DRAEM and most pixel-level methods report
//! smoothed maps; here the smoothing is part of the model, so the exported graph, the trainer's
//! metrics and the runtime's overlays and scores all see the same map.

use tch::{Kind, Tensor};

/// Radius of the kernel for `sigma` px: ceil(3 sigma) (99.7 % of the mass).
pub fn radius(sigma: f64) -> i64 {
    (3.0 * sigma).ceil() as i64
}

/// Normalised 2-D Gaussian kernel of side 2 r + 1 (r = [`radius`]), row-major, sum 1:
/// g(y, x) = exp(-(x^2 + y^2) / (2 sigma^2)) / sum, the outer product of
/// [`gaussian_kernel_1d`] with itself.
pub fn gaussian_kernel(sigma: f64) -> Vec<f32> {
    let g1 = gaussian_weights(sigma);
    g1.iter().flat_map(|a| g1.iter().map(move |b| (a * b) as f32)).collect()
}

/// Normalised 1-D Gaussian kernel of length 2 r + 1, sum 1: the 2-D kernel is separable, so
/// the export smooths rows, then columns (2 (2r + 1) instead of (2r + 1)^2 MACs per pixel).
pub fn gaussian_kernel_1d(sigma: f64) -> Vec<f32> {
    gaussian_weights(sigma).into_iter().map(|v| v as f32).collect()
}

fn gaussian_weights(sigma: f64) -> Vec<f64> {
    let r = radius(sigma);
    let g1: Vec<f64> = (-r..=r).map(|i| (-((i * i) as f64) / (2.0 * sigma * sigma)).exp()).collect();
    let s: f64 = g1.iter().sum();
    g1.into_iter().map(|v| v / s).collect()
}

/// Smooths `map` [N, 1, H, W] with a Gaussian of `sigma` px, mirror padding at the borders
/// (ONNX Pad `reflect`: the border pixel is not repeated). sigma 0 returns the map unchanged.
pub fn smooth(map: &Tensor, sigma: f64) -> Tensor {
    if sigma <= 0.0 {
        return map.shallow_clone();
    }
    let r = radius(sigma);
    let k = 2 * r + 1;
    let kernel = Tensor::from_slice(&gaussian_kernel(sigma)).view([1, 1, k, k]).to_device(map.device()).to_kind(Kind::Float);
    map.reflection_pad2d([r, r, r, r]).conv2d(&kernel, None::<Tensor>, [1i64, 1], [0i64, 0], [1i64, 1], 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The export's row and column filters give the 2-D kernel: sum 1, symmetric, and their
    /// outer product equals it (the separability the export relies on), at sigma 2 px (k = 13).
    #[test]
    fn the_1d_kernel_is_the_separable_factor_of_the_2d_one() {
        let (g1, g2) = (gaussian_kernel_1d(2.0), gaussian_kernel(2.0));
        assert_eq!((g1.len(), g2.len()), (13, 169));
        assert!((g1.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((0..13).all(|i| g1[i] == g1[12 - i]));
        // Independent value: exp(0) / sum_i exp(-i^2 / 8) for i in -6..=6.
        let s: f64 = (-6i32..=6).map(|i| (-(i * i) as f64 / 8.0).exp()).sum();
        assert!((g1[6] as f64 - 1.0 / s).abs() < 1e-7, "{} vs {}", g1[6], 1.0 / s);
        for y in 0..13 {
            for x in 0..13 {
                assert!((g2[y * 13 + x] - g1[y] * g1[x]).abs() < 1e-8);
            }
        }
    }
}
