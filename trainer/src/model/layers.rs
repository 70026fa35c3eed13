//! Plain layers that keep the hyper-parameters the exporter needs (tch hides them).

use tch::{nn, Tensor};

use crate::config::Upsample;

/// BatchNorm epsilon, as in PyTorch; the exporter folds BN with the same value.
pub const BN_EPS: f64 = 1e-5;

/// The variable path of `vs` as the VarStore spells it (`encoder.stage1.block0.ffc0`): the
/// exporter names the module's ONNX nodes and initializers after it.
pub fn path_name(vs: &nn::Path) -> String {
    vs.components().collect::<Vec<_>>().join(".")
}

/// 2-D convolution, weight [Cout, Cin, k, k], optional bias [Cout].
#[derive(Debug)]
pub struct Conv {
    /// Variable path (`head.out`); the weight is `<name>.weight`.
    pub name: String,
    pub conv: nn::Conv2D,
    pub kernel: i64,
    pub stride: i64,
    pub padding: i64,
}

impl Conv {
    /// `k x k` convolution with `padding = k / 2` (size-preserving at stride 1).
    pub fn new(vs: nn::Path, cin: i64, cout: i64, kernel: i64, stride: i64, bias: bool) -> Self {
        let padding = kernel / 2;
        let cfg = nn::ConvConfig { stride, padding, bias, ..Default::default() };
        Self { name: path_name(&vs), conv: nn::conv2d(vs, cin, cout, kernel, cfg), kernel, stride, padding }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.apply(&self.conv)
    }

    pub fn out_channels(&self) -> i64 {
        self.conv.ws.size()[0]
    }
}

/// BatchNorm2d initialised as PyTorch does (weight 1, bias 0); tch's default draws the weight
/// uniformly in [0, 1] (DESIGN.md §8).
pub fn batch_norm(vs: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(vs, c, nn::BatchNormConfig { ws_init: nn::Init::Const(1.0), bs_init: nn::Init::Const(0.0), eps: BN_EPS, ..Default::default() })
}

/// 2x upsampling with BN + ReLU, as [`Upsample`] says:
/// - `Deconv`: 2x2 stride-2 transposed convolution `deconv` ([Cin, Cout, 2, 2], no bias), BN, ReLU;
/// - `Bilinear` with a 3x3 `conv` (the decoder, as DRAEM's): bilinear x2 (half-pixel centres,
///   `align_corners = false`; exported as Pad, Slice, Add and Mul per axis, the same
///   interpolation: `export::graph::GraphBuilder::resize_bilinear2x`), 3x3 conv, BN, ReLU;
/// - `Bilinear` with a 1x1 `conv` (the head): 1x1 conv, BN, ReLU at the coarse level, then
///   bilinear x2 — the 1x1 conv commutes with the interpolation, so it runs on 4x fewer pixels.
#[derive(Debug)]
pub struct UpBlock {
    /// Variable path (`dae.up0`); the transposed convolution is `<name>.deconv`.
    pub name: String,
    pub mode: Upsample,
    pub deconv: Option<nn::ConvTranspose2D>,
    pub conv: Option<Conv>,
    pub bn: nn::BatchNorm,
}

impl UpBlock {
    /// `kernel` (1 or 3) is the conv of the `Bilinear` mode; `Deconv` ignores it.
    pub fn new(vs: nn::Path, cin: i64, cout: i64, mode: Upsample, kernel: i64) -> Self {
        let (deconv, conv) = match mode {
            Upsample::Deconv => {
                let cfg = nn::ConvTransposeConfig { stride: 2, bias: false, ..Default::default() };
                (Some(nn::conv_transpose2d(&vs / "deconv", cin, cout, 2, cfg)), None)
            }
            Upsample::Bilinear => (None, Some(Conv::new(&vs / "conv", cin, cout, kernel, 1, false))),
        };
        Self { name: path_name(&vs), mode, deconv, conv, bn: batch_norm(&vs / "bn", cout) }
    }

    /// True when the conv runs before the interpolation (1x1 bilinear mode).
    pub fn conv_first(&self) -> bool {
        self.conv.as_ref().is_some_and(|c| c.kernel == 1)
    }

    /// [N, Cin, H, W] -> [N, Cout, 2H, 2W].
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let up = |t: &Tensor| {
            let s = t.size();
            t.upsample_bilinear2d([2 * s[2], 2 * s[3]], false, None, None)
        };
        match (&self.deconv, &self.conv) {
            (Some(d), _) => x.apply(d).apply_t(&self.bn, train).relu(),
            (None, Some(c)) if self.conv_first() => up(&c.forward(x).apply_t(&self.bn, train).relu()),
            (None, Some(c)) => c.forward(&up(x)).apply_t(&self.bn, train).relu(),
            (None, None) => unreachable!("UpBlock has a deconv or a conv"),
        }
    }
}

/// Conv k x k (no bias) + BN + optional ReLU.
#[derive(Debug)]
pub struct ConvBnAct {
    pub conv: Conv,
    pub bn: nn::BatchNorm,
    pub relu: bool,
}

impl ConvBnAct {
    pub fn new(vs: nn::Path, cin: i64, cout: i64, kernel: i64, stride: i64, relu: bool) -> Self {
        Self { conv: Conv::new(&vs / "conv", cin, cout, kernel, stride, false), bn: batch_norm(&vs / "bn", cout), relu }
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let y = self.conv.forward(x).apply_t(&self.bn, train);
        if self.relu { y.relu() } else { y }
    }
}
