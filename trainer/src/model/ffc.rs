//! Fast Fourier Convolution (Chi, Jiang, Mu: "Fast Fourier Convolution", NeurIPS 2020), following
//! LaMa's implementation (Suvorov et al., WACV 2022, `saicinpainting/training/modules/ffc.py`).
//!
//! Feature maps are split on the channel axis into a local part and a global part ([`Split`]);
//! the global part is processed in the frequency domain, so each output sees the whole image.

use tch::{nn, Tensor};

use super::layers::{batch_norm, Conv};

/// Features split into local and global channels: `l` [N, C_l, H, W], `g` [N, C_g, H, W];
/// a part with 0 channels is `None`.
#[derive(Debug)]
pub struct Split {
    pub l: Option<Tensor>,
    pub g: Option<Tensor>,
}

impl Split {
    /// All channels local.
    pub fn local(x: Tensor) -> Self {
        Self { l: Some(x), g: None }
    }

    /// Concatenates `[l, g]` on the channel axis.
    pub fn merge(&self) -> Tensor {
        match (&self.l, &self.g) {
            (Some(l), Some(g)) => Tensor::cat(&[l, g], 1),
            (Some(x), None) | (None, Some(x)) => x.shallow_clone(),
            (None, None) => panic!("Split with no channels"),
        }
    }

    /// Applies `f` to each present part.
    pub fn map(&self, f: impl Fn(&Tensor) -> Tensor) -> Self {
        Self { l: self.l.as_ref().map(&f), g: self.g.as_ref().map(&f) }
    }
}

/// Number of global channels of `channels` at `ratio` (truncating, as LaMa's `int(c * ratio)`).
pub fn global_channels(channels: i64, ratio: f64) -> i64 {
    (channels as f64 * ratio) as i64
}

/// FourierUnit(C): real FFT over (H, W) with norm "ortho" -> real and imaginary parts stacked on
/// the channel axis as `[re_0..re_{C-1}, im_0..im_{C-1}]` (2C x H x (W/2+1)) -> 1x1 conv -> BN ->
/// ReLU -> back to complex -> inverse real FFT with s = (H, W). Shape [N, C, H, W] -> same.
#[derive(Debug)]
pub struct FourierUnit {
    /// 1x1 convolution [2C, 2C, 1, 1], no bias.
    pub conv: Conv,
    pub bn: nn::BatchNorm,
}

impl FourierUnit {
    pub fn new(vs: nn::Path, channels: i64) -> Self {
        Self { conv: Conv::new(&vs / "conv", 2 * channels, 2 * channels, 1, 1, false), bn: batch_norm(&vs / "bn", 2 * channels) }
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let (h, w) = (x.size()[2], x.size()[3]);
        let spec = x.fft_rfft2(None::<Vec<i64>>, [-2i64, -1], "ortho");
        let stacked = Tensor::cat(&[spec.real(), spec.imag()], 1);
        let y = self.conv.forward(&stacked).apply_t(&self.bn, train).relu();
        let parts = y.chunk(2, 1);
        let complex = Tensor::complex(&parts[0].contiguous(), &parts[1].contiguous());
        complex.fft_irfft2(Some(vec![h, w]), [-2i64, -1], "ortho")
    }
}

/// SpectralTransform(Cin -> Cout): (AvgPool 2x2 if stride 2) -> 1x1 conv to Cout/2 + BN + ReLU
/// -> y + FourierUnit(y) -> 1x1 conv to Cout. [N, Cin, H, W] -> [N, Cout, H/s, W/s].
#[derive(Debug)]
pub struct SpectralTransform {
    pub downsample: bool,
    pub conv1: Conv,
    pub bn1: nn::BatchNorm,
    pub fu: FourierUnit,
    pub conv2: Conv,
}

impl SpectralTransform {
    pub fn new(vs: nn::Path, cin: i64, cout: i64, stride: i64) -> Self {
        let mid = (cout / 2).max(1);
        Self {
            downsample: stride == 2,
            conv1: Conv::new(&vs / "conv1", cin, mid, 1, 1, false),
            bn1: batch_norm(&vs / "bn1", mid),
            fu: FourierUnit::new(&vs / "fu", mid),
            conv2: Conv::new(&vs / "conv2", mid, cout, 1, 1, false),
        }
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let x = if self.downsample { x.avg_pool2d([2i64, 2], [2i64, 2], [0i64, 0], false, true, None) } else { x.shallow_clone() };
        let y = self.conv1.forward(&x).apply_t(&self.bn1, train).relu();
        let f = self.fu.forward_t(&y, train);
        self.conv2.forward(&(y + f))
    }
}

/// FFC: four paths between the local and global parts. local->local, global->local and
/// local->global are k x k convolutions; global->global is a [`SpectralTransform`]. Outputs are
/// summed per part. A path whose input or output part has 0 channels is absent.
#[derive(Debug)]
pub struct Ffc {
    pub l2l: Option<Conv>,
    pub l2g: Option<Conv>,
    pub g2l: Option<Conv>,
    pub g2g: Option<SpectralTransform>,
    pub out_l: i64,
    pub out_g: i64,
}

impl Ffc {
    /// `cin` -> `cout` channels, global fractions `ratio_gin` of the input and `ratio_gout` of
    /// the output, `k x k` kernels, stride 1 or 2.
    pub fn new(vs: nn::Path, cin: i64, cout: i64, kernel: i64, stride: i64, ratio_gin: f64, ratio_gout: f64) -> Self {
        let in_g = global_channels(cin, ratio_gin);
        let in_l = cin - in_g;
        let out_g = global_channels(cout, ratio_gout);
        let out_l = cout - out_g;
        let conv = |name: &str, i: i64, o: i64| (i > 0 && o > 0).then(|| Conv::new(&vs / name, i, o, kernel, stride, false));
        Self {
            l2l: conv("l2l", in_l, out_l),
            l2g: conv("l2g", in_l, out_g),
            g2l: conv("g2l", in_g, out_l),
            g2g: (in_g > 0 && out_g > 0).then(|| SpectralTransform::new(&vs / "g2g", in_g, out_g, stride)),
            out_l,
            out_g,
        }
    }

    pub fn forward_t(&self, x: &Split, train: bool) -> Split {
        let sum = |a: Option<Tensor>, b: Option<Tensor>| match (a, b) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        let apply = |c: &Option<Conv>, t: &Option<Tensor>| match (c, t) {
            (Some(c), Some(t)) => Some(c.forward(t)),
            _ => None,
        };
        let l = sum(apply(&self.l2l, &x.l), apply(&self.g2l, &x.g));
        let g_spec = match (&self.g2g, &x.g) {
            (Some(st), Some(t)) => Some(st.forward_t(t, train)),
            _ => None,
        };
        let g = sum(apply(&self.l2g, &x.l), g_spec);
        Split { l: if self.out_l > 0 { l } else { None }, g: if self.out_g > 0 { g } else { None } }
    }
}

/// FFC followed by BN and (optionally) ReLU on each part (LaMa's `FFC_BN_ACT`).
#[derive(Debug)]
pub struct FfcBnAct {
    /// Variable path (`encoder.stage1.block0.ffc0`).
    pub name: String,
    pub ffc: Ffc,
    pub bn_l: Option<nn::BatchNorm>,
    pub bn_g: Option<nn::BatchNorm>,
    pub relu: bool,
}

impl FfcBnAct {
    #[allow(clippy::too_many_arguments)]
    pub fn new(vs: nn::Path, cin: i64, cout: i64, kernel: i64, stride: i64, ratio_gin: f64, ratio_gout: f64, relu: bool) -> Self {
        let ffc = Ffc::new(&vs / "ffc", cin, cout, kernel, stride, ratio_gin, ratio_gout);
        let bn_l = (ffc.out_l > 0).then(|| batch_norm(&vs / "bn_l", ffc.out_l));
        let bn_g = (ffc.out_g > 0).then(|| batch_norm(&vs / "bn_g", ffc.out_g));
        Self { name: crate::model::layers::path_name(&vs), ffc, bn_l, bn_g, relu }
    }

    pub fn forward_t(&self, x: &Split, train: bool) -> Split {
        let y = self.ffc.forward_t(x, train);
        let post = |t: Option<Tensor>, bn: &Option<nn::BatchNorm>| {
            t.map(|t| {
                let t = t.apply_t(bn.as_ref().expect("bn for present part"), train);
                if self.relu { t.relu() } else { t }
            })
        };
        Split { l: post(y.l, &self.bn_l), g: post(y.g, &self.bn_g) }
    }
}
