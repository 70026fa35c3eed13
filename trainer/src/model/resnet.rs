//! FFC encoder on the ResNet-18 topology (He et al., CVPR 2016; FFC-ResNet of Chi et al. 2020):
//! stem 7x7/2 conv + BN + ReLU + 3x3/2 max-pool, then 4 stages of BasicBlocks whose 3x3 convs are
//! FFCs. Output stride 32, or 16 with stage 4 at stride 1 (`encoder_stride`).

use tch::{nn, Tensor};

use super::ffc::{FfcBnAct, Split};
use super::layers::ConvBnAct;
use crate::config::ModelConfig;

/// Residual block whose convs are FFC layers: `layers` FFC-BN-ReLU (the last without ReLU),
/// plus a 1x1 FFC-BN projection of the input when shape or split change; ReLU after the sum.
#[derive(Debug)]
pub struct FfcBasicBlock {
    pub layers: Vec<FfcBnAct>,
    pub projection: Option<FfcBnAct>,
}

impl FfcBasicBlock {
    #[allow(clippy::too_many_arguments)]
    pub fn new(vs: nn::Path, cin: i64, cout: i64, stride: i64, ratio_gin: f64, ratio_gout: f64, n_layers: usize) -> Self {
        let layers = (0..n_layers)
            .map(|i| {
                let (ci, s, gin) = if i == 0 { (cin, stride, ratio_gin) } else { (cout, 1, ratio_gout) };
                FfcBnAct::new(&vs / format!("ffc{i}"), ci, cout, 3, s, gin, ratio_gout, i + 1 < n_layers)
            })
            .collect();
        let needs_projection = stride != 1 || cin != cout || ratio_gin != ratio_gout;
        let projection = needs_projection.then(|| FfcBnAct::new(&vs / "proj", cin, cout, 1, stride, ratio_gin, ratio_gout, false));
        Self { layers, projection }
    }

    pub fn forward_t(&self, x: &Split, train: bool) -> Split {
        let mut y = self.layers[0].forward_t(x, train);
        for layer in &self.layers[1..] {
            y = layer.forward_t(&y, train);
        }
        let identity = match &self.projection {
            Some(p) => p.forward_t(x, train),
            None => x.map(|t| t.shallow_clone()),
        };
        let add = |a: Option<Tensor>, b: &Option<Tensor>| a.map(|a| (a + b.as_ref().expect("identity part")).relu());
        Split { l: add(y.l, &identity.l), g: add(y.g, &identity.g) }
    }
}

/// The encoder: [N, 3, H, W] (normalised; [N, 5, H, W] with coordinate channels, see
/// [`crate::config::CoordChannels`]) -> Split with `stage_widths[3]` channels at
/// H/s x W/s, s = `encoder_stride` (32 or 16).
#[derive(Debug)]
pub struct FfcEncoder {
    pub stem: ConvBnAct,
    pub blocks: Vec<FfcBasicBlock>,
}

impl FfcEncoder {
    pub fn new(vs: nn::Path, cfg: &ModelConfig) -> Self {
        let cin = if cfg.coord_channels.encoder() { 5 } else { 3 };
        let stem = ConvBnAct::new(&vs / "stem", cin, cfg.stem_width, 7, 2, true);
        let r = cfg.encoder_ratio();
        let mut blocks = Vec::new();
        let (mut cin, mut gin) = (cfg.stem_width, 0.0);
        for (s, &w) in cfg.stage_widths.iter().enumerate() {
            for b in 0..cfg.blocks_per_stage {
                // Stride 16: the last stage keeps the resolution of the third.
                let downsamples = s > 0 && b == 0 && !(s == 3 && cfg.encoder_stride == 16);
                let stride = if downsamples { 2 } else { 1 };
                blocks.push(FfcBasicBlock::new(&vs / format!("stage{s}") / format!("block{b}"), cin, w, stride, gin, r, cfg.ffc_layers_per_block));
                cin = w;
                gin = r;
            }
        }
        Self { stem, blocks }
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Split {
        let x = self.stem.forward_t(x, train).max_pool2d([3i64, 3], [2i64, 2], [1i64, 1], [1i64, 1], false);
        let mut s = Split::local(x);
        for b in &self.blocks {
            s = b.forward_t(&s, train);
        }
        s
    }
}
