//! int8 post-training quantization of the exported convolutions (issue 4).
//!
//! Scheme (the usual ONNX int8 one, e.g. ONNX Runtime's static quantization):
//! - activations: uint8, asymmetric, one scale and zero point per tensor, from the min/max the
//!   f32 graph produced on calibration images (good parts only), the range widened to include 0
//!   so that zero padding is exact; a QLinearConv output read only by a ReLU is quantized over
//!   [0, max] (the ReLU fused, as ONNX Runtime's quantizer does);
//! - weights: int8, symmetric (zero point 0), one scale per output channel = max|w| / 127;
//! - bias: int32 with scale x_scale * w_scale[c] (the QLinearConv contract).
//!
//! The FourierUnit's spectral 1x1 convolution and its DFT MatMuls stay f32 (the spectrum has a
//! dynamic range u8 cannot hold); so do the head's first conv (`head.enc0a.conv`: it compares
//! the image with its reconstruction, where a faint defect is a few grey levels) and its logit
//! conv (`head.out`: a range observed on good images ends below every defect's logit; DESIGN.md
//! §5), ConvTranspose and the elementwise operators.

use serde::{Deserialize, Serialize};

/// How quantized convolutions are written into the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum QuantForm {
    /// `QuantizeLinear -> QLinearConv -> DequantizeLinear`: the convolution runs on int8 data
    /// with int32 accumulation (input and output quantized).
    Qlinear,
    /// `QuantizeLinear -> DequantizeLinear -> Conv(DequantizeLinear(w_int8))`: the QDQ form, int8
    /// weights and input rounding; the runtime decides whether to fuse it into an int8 kernel.
    Qdq,
}

/// Observed value range of one tensor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Range {
    pub min: f32,
    pub max: f32,
}

impl Range {
    /// The empty range (identity of [`Range::merge`]).
    pub const EMPTY: Range = Range { min: f32::INFINITY, max: f32::NEG_INFINITY };

    /// The smallest range covering both.
    pub fn union(self, other: Range) -> Range {
        Range { min: self.min.min(other.min), max: self.max.max(other.max) }
    }

    /// Widens the range to cover `values` (NaN ignored).
    pub fn merge(&mut self, values: &[f32]) {
        for &v in values {
            if v < self.min {
                self.min = v;
            }
            if v > self.max {
                self.max = v;
            }
        }
    }
}

/// Calibrated input and output ranges of one quantized convolution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConvRanges {
    pub input: Range,
    pub output: Range,
}

/// uint8 affine quantization parameters: real = scale * (q - zero_point).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct U8Params {
    pub scale: f32,
    pub zero_point: u8,
}

/// Parameters for a tensor observed in `r`, the range widened to contain 0 (so 0 is exact) and
/// at least 1e-6 wide (a constant tensor still gets a valid scale).
pub fn u8_params(r: Range) -> U8Params {
    let observed = r.min <= r.max && r.min.is_finite() && r.max.is_finite();
    let (lo, hi) = if observed { (r.min.min(0.0), r.max.max(0.0)) } else { (0.0, 1.0) };
    let scale = ((hi - lo) / 255.0).max(1e-6 / 255.0);
    let zero_point = (-lo / scale).round().clamp(0.0, 255.0) as u8;
    U8Params { scale, zero_point }
}

/// Symmetric per-output-channel int8 weights of a weight laid out [Cout, ...]: returns the
/// quantized values (same layout) and one scale per channel (max|w| / 127; 1 for an all-zero
/// channel).
pub fn quantize_weights_per_channel(weight: &[f32], out_channels: usize) -> (Vec<i8>, Vec<f32>) {
    let per = weight.len() / out_channels;
    let mut q = Vec::with_capacity(weight.len());
    let mut scales = Vec::with_capacity(out_channels);
    for chunk in weight.chunks_exact(per) {
        let amax = chunk.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let s = if amax > 0.0 { amax / 127.0 } else { 1.0 };
        q.extend(chunk.iter().map(|v| (v / s).round().clamp(-127.0, 127.0) as i8));
        scales.push(s);
    }
    (q, scales)
}

/// int32 bias of QLinearConv: round(b[c] / (x_scale * w_scale[c])).
pub fn quantize_bias(bias: &[f32], x_scale: f32, w_scales: &[f32]) -> Vec<i32> {
    bias.iter().zip(w_scales).map(|(b, s)| (*b as f64 / (x_scale as f64 * *s as f64)).round().clamp(i32::MIN as f64, i32::MAX as f64) as i32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u8_params_cover_the_range_and_keep_zero_exact() {
        let p = u8_params(Range { min: -1.0, max: 3.0 });
        assert!((p.scale - 4.0 / 255.0).abs() < 1e-7);
        assert_eq!(p.zero_point, 64); // round(1 / (4/255)) = round(63.75)
        // Post-ReLU tensors: zero point 0, the whole u8 range for [0, max].
        let p = u8_params(Range { min: 0.5, max: 2.55 });
        assert_eq!(p.zero_point, 0);
        assert!((p.scale - 0.01).abs() < 1e-7);
        // A constant zero tensor and an empty range still give a usable scale.
        assert!(u8_params(Range { min: 0.0, max: 0.0 }).scale > 0.0);
        assert_eq!(u8_params(Range::EMPTY), U8Params { scale: 1.0 / 255.0, zero_point: 0 });
    }

    #[test]
    fn weights_are_symmetric_per_channel() {
        let w = [0.5, -1.0, 0.25, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0];
        let (q, s) = quantize_weights_per_channel(&w, 3);
        assert_eq!(s, vec![1.0 / 127.0, 2.0 / 127.0, 1.0]);
        assert_eq!(q, vec![64, -127, 32, 0, 127, 0, 0, 0, 0]); // 63.5 rounds away from zero
        assert_eq!(quantize_bias(&[0.1, -0.2], 0.01, &[0.5, 0.25]), vec![20, -80]);
    }

    #[test]
    fn range_merge_ignores_nan() {
        let mut r = Range::EMPTY;
        r.merge(&[1.0, f32::NAN, -2.0]);
        assert_eq!(r, Range { min: -2.0, max: 1.0 });
    }
}
