//! Gaussian smoothing of the anomaly map (issue 13): DRAEM and most pixel-level methods report
//! smoothed maps; here the smoothing is part of the model, so the exported graph, the trainer's
//! metrics and the runtime's overlays and scores all see the same map.

use tch::{Kind, Tensor};

/// Radius of the kernel for `sigma` px: ceil(3 sigma) (99.7 % of the mass).
pub fn radius(sigma: f64) -> i64 {
    (3.0 * sigma).ceil() as i64
}

/// Normalised 2-D Gaussian kernel of side 2 r + 1 (r = [`radius`]), row-major, sum 1:
/// g(y, x) = exp(-(x^2 + y^2) / (2 sigma^2)) / sum.
pub fn gaussian_kernel(sigma: f64) -> Vec<f32> {
    let r = radius(sigma);
    let g1: Vec<f64> = (-r..=r).map(|i| (-((i * i) as f64) / (2.0 * sigma * sigma)).exp()).collect();
    let s: f64 = g1.iter().sum();
    g1.iter().flat_map(|a| g1.iter().map(move |b| (a * b / (s * s)) as f32)).collect()
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
