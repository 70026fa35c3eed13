//! Segmentation head: a U-Net on [image, reconstruction] (6 channels; 8 with the coordinate
//! channels of [`crate::config::CoordChannels`]) that outputs the
//! anomaly-map logits at input resolution (this project's choice, DESIGN.md §3 "localization").
//! `head_levels` levels (3 before issue 13; 5 in the small preset, so that its receptive field
//! covers most of a 128 px part), channels `head_width * 2^level` capped at `head_max_width`.
//! Its skip connections stay inside the head; the hidden space of the DAE is not bypassed.

use tch::{nn, Tensor};

use super::layers::{Conv, ConvBnAct, UpBlock};
use super::strip_pool::StripPool;
use crate::config::{HeadOutWeights, ModelConfig};

#[derive(Debug)]
pub struct SegHead {
    /// Per level i: two 3x3 Conv-BN-ReLU (`enc{i}a`, `enc{i}b`); level i > 0 starts with a 2x2
    /// max-pool.
    pub enc: Vec<[ConvBnAct; 2]>,
    /// `up[i]` (`up{i}`): level i + 1 -> level i, for i in 0..levels - 1 (bilinear mode: 1x1
    /// conv at the coarse level, then bilinear x2).
    pub up: Vec<UpBlock>,
    /// `dec[i]` (`dec{i}`): 3x3 Conv-BN-ReLU on [up[i] output, enc level i] -> level i channels.
    pub dec: Vec<ConvBnAct>,
    /// `head_out_kernel` conv to one logit channel (with bias).
    pub out: Conv,
    /// Strip pooling on the coarsest level before the first up block (`strip`;
    /// `model.head_strip_pool`).
    pub strip: Option<StripPool>,
}

impl SegHead {
    pub fn new(vs: nn::Path, cfg: &ModelConfig) -> Self {
        let levels = cfg.head_levels;
        let c = |i: usize| cfg.head_channels(i);
        let cbr = |name: String, i, o| ConvBnAct::new(&vs / name, i, o, 3, 1, true);
        let enc = (0..levels)
            .map(|i| {
                let cin = match i {
                    0 if cfg.coord_channels.head() => 8,
                    0 => 6,
                    _ => c(i - 1),
                };
                [cbr(format!("enc{i}a"), cin, c(i)), cbr(format!("enc{i}b"), c(i), c(i))]
            })
            .collect();
        let up = (0..levels - 1).map(|i| UpBlock::new(&vs / format!("up{i}"), c(i + 1), c(i), cfg.upsample, 1)).collect();
        let dec = (0..levels - 1).map(|i| cbr(format!("dec{i}"), 2 * c(i), c(i))).collect();
        let out = Conv::new(&vs / "out", c(0), 1, cfg.head_out_kernel, 1, true);
        let strip = cfg.head_strip_pool.then(|| StripPool::new(&vs / "strip", c(levels - 1)));
        if cfg.head_out_prior > 0.0 {
            // Focal loss paper, section 4.1: p ~ pi at every pixel of the first step.
            let pi = cfg.head_out_prior;
            tch::no_grad(|| {
                let _ = out.conv.ws.shallow_clone().normal_(0.0, 0.01);
                if let Some(b) = &out.conv.bs {
                    let _ = b.shallow_clone().fill_((pi / (1.0 - pi)).ln());
                }
            });
        }
        if cfg.head_out_weights == HeadOutWeights::NonNegative {
            // |w| of the draw (tch's, or the prior's N(0, 0.01^2)): the same magnitudes (mean now
            // > 0, so the first logits start above the bias), and no weight starts at the bound 0.
            tch::no_grad(|| {
                let _ = out.conv.ws.shallow_clone().abs_();
            });
        }
        Self { enc, up, dec, out, strip }
    }

    /// Projects the output convolution's weights onto w >= 0 (in place; the bias is free): with
    /// non-negative weights on ReLU features, logit >= bias at every pixel, so a pixel with all
    /// features 0 in the kernel's window scores the map's minimum ([`HeadOutWeights::NonNegative`]).
    pub fn project_out_weights(&self) {
        tch::no_grad(|| {
            let _ = self.out.conv.ws.shallow_clone().clamp_min_(0.0);
        });
    }

    /// (weights at exactly 0, all weights, largest weight) of the output convolution: how much of a
    /// [`HeadOutWeights::NonNegative`] head the projection has switched off (logged with progress).
    pub fn out_weight_stats(&self) -> (i64, i64, f64) {
        let w = &self.out.conv.ws;
        let zeros = w.eq(0.0).sum(tch::Kind::Int64).int64_value(&[]);
        (zeros, w.numel() as i64, w.max().double_value(&[]))
    }

    /// input: [image, reconstruction] ([N, 3, H, W] each, in [0, 1]) concatenated on channels,
    /// plus the coordinate planes when configured: [N, 6 or 8, H, W] -> logits [N, 1, H, W].
    pub fn forward_t(&self, input: &Tensor, train: bool) -> Tensor {
        let pair = |p: &[ConvBnAct; 2], x: &Tensor| p[1].forward_t(&p[0].forward_t(x, train), train);
        let pool = |x: &Tensor| x.max_pool2d([2i64, 2], [2i64, 2], [0i64, 0], [1i64, 1], false);
        let mut skips = vec![pair(&self.enc[0], input)];
        for p in &self.enc[1..] {
            let x = pool(skips.last().expect("level 0"));
            skips.push(pair(p, &x));
        }
        let mut x = skips.pop().expect("coarsest level");
        if let Some(s) = &self.strip {
            x = s.forward_t(&x, train);
        }
        for i in (0..self.up.len()).rev() {
            let u = self.up[i].forward_t(&x, train);
            x = self.dec[i].forward_t(&Tensor::cat(&[u, skips.pop().expect("skip of level i")], 1), train);
        }
        self.out.forward(&x)
    }
}
