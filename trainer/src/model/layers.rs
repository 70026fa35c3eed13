//! Plain layers that keep the hyper-parameters the exporter needs (tch hides them).

use tch::{nn, Tensor};

/// BatchNorm epsilon, as in PyTorch; the exporter folds BN with the same value.
pub const BN_EPS: f64 = 1e-5;

/// 2-D convolution, weight [Cout, Cin, k, k], optional bias [Cout].
#[derive(Debug)]
pub struct Conv {
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
        Self { conv: nn::conv2d(vs, cin, cout, kernel, cfg), kernel, stride, padding }
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

/// 2x upsampling: transposed convolution 2x2 stride 2 ([Cin, Cout, 2, 2]) + BN + ReLU.
#[derive(Debug)]
pub struct UpBlock {
    pub deconv: nn::ConvTranspose2D,
    pub bn: nn::BatchNorm,
}

impl UpBlock {
    pub fn new(vs: nn::Path, cin: i64, cout: i64) -> Self {
        let cfg = nn::ConvTransposeConfig { stride: 2, bias: false, ..Default::default() };
        Self { deconv: nn::conv_transpose2d(&vs / "deconv", cin, cout, 2, cfg), bn: batch_norm(&vs / "bn", cout) }
    }

    /// [N, Cin, H, W] -> [N, Cout, 2H, 2W].
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        x.apply(&self.deconv).apply_t(&self.bn, train).relu()
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
