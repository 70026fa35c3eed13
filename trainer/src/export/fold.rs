//! Reading weights out of tch and folding BatchNorm into the preceding linear layer.

use tch::{nn, Device, Kind, Tensor};

use crate::model::layers::BN_EPS;

/// All values of `t` as f32, row-major.
pub fn values(t: &Tensor) -> Vec<f32> {
    let t = t.detach().to_device(Device::Cpu).to_kind(Kind::Float).contiguous().view([-1]);
    Vec::<f32>::try_from(&t).expect("tensor to Vec<f32>")
}

/// Shape of `t` as [i64; 4] (convolution weights).
pub fn dims4(t: &Tensor) -> [i64; 4] {
    let s = t.size();
    [s[0], s[1], s[2], s[3]]
}

/// Inference-mode BatchNorm as an affine map y = scale * x + shift, per channel:
/// scale = gamma / sqrt(var + eps), shift = beta - mean * scale.
pub fn bn_affine(bn: &nn::BatchNorm) -> (Vec<f32>, Vec<f32>) {
    let mean = values(&bn.running_mean);
    let var = values(&bn.running_var);
    let gamma = bn.ws.as_ref().map(values).unwrap_or_else(|| vec![1.0; mean.len()]);
    let beta = bn.bs.as_ref().map(values).unwrap_or_else(|| vec![0.0; mean.len()]);
    let scale: Vec<f32> = gamma.iter().zip(&var).map(|(g, v)| (*g as f64 / (*v as f64 + BN_EPS).sqrt()) as f32).collect();
    let shift = beta.iter().zip(&mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
    (scale, shift)
}

/// Multiplies output channel `o` of a weight laid out [.., O, rest] by `scale[o]`, where `outer`
/// is the number of leading blocks (1 for Conv [O, I, k, k]; I for ConvTranspose [I, O, k, k]).
pub fn scale_output_channels(weight: &mut [f32], scale: &[f32], outer: usize) {
    let per_outer = weight.len() / outer;
    let inner = per_outer / scale.len();
    for block in weight.chunks_exact_mut(per_outer) {
        for (o, chunk) in block.chunks_exact_mut(inner).enumerate() {
            chunk.iter_mut().for_each(|v| *v *= scale[o]);
        }
    }
}
