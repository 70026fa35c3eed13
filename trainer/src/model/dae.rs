//! FFC denoising autoencoder on the hidden features (FFC-AD paper, Table 12) with Hidden Space
//! Anomaly Simulation (HSAS, Table 15): dropout corrupts the hidden features during training so
//! the decoder cannot learn to copy defects through. No skip connection bypasses the hidden space.

use tch::{nn, Tensor};

use super::ffc::Split;
use super::layers::{Conv, UpBlock};
use super::resnet::FfcBasicBlock;
use crate::config::{DropoutKind, ModelConfig};

#[derive(Debug)]
pub struct FfcDae {
    pub hsas: Option<(f64, DropoutKind)>,
    pub blocks: Vec<FfcBasicBlock>,
    pub ups: Vec<UpBlock>,
    /// 3x3 conv to RGB (with bias), then sigmoid.
    pub to_rgb: Conv,
}

impl FfcDae {
    pub fn new(vs: nn::Path, cfg: &ModelConfig) -> Self {
        let c = cfg.stage_widths[3];
        let (gin, r) = (cfg.encoder_ratio(), cfg.dae_ratio());
        let blocks = (0..cfg.dae_blocks)
            .map(|i| FfcBasicBlock::new(&vs / format!("block{i}"), c, c, 1, if i == 0 { gin } else { r }, r, cfg.ffc_layers_per_block))
            .collect();
        let mut cin = c;
        let ups = cfg
            .decoder_widths
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let u = UpBlock::new(&vs / format!("up{i}"), cin, w, cfg.upsample, 3);
                cin = w;
                u
            })
            .collect();
        let to_rgb = Conv::new(&vs / "to_rgb", cin, 3, 3, 1, true);
        Self { hsas: cfg.hsas.then_some((cfg.hsas_p, cfg.hsas_kind)), blocks, ups, to_rgb }
    }

    /// Hidden features (stride 16 or 32) -> reconstruction [N, 3, H, W] in [0, 1]. HSAS acts only when
    /// `train` is true.
    pub fn forward_t(&self, hidden: &Split, train: bool) -> Tensor {
        let mut s = match self.hsas {
            Some((p, DropoutKind::D2)) => hidden.map(|t| t.feature_dropout(p, train)),
            Some((p, DropoutKind::D1)) => hidden.map(|t| t.dropout(p, train)),
            None => hidden.map(|t| t.shallow_clone()),
        };
        for b in &self.blocks {
            s = b.forward_t(&s, train);
        }
        let mut x = s.merge();
        for u in &self.ups {
            x = u.forward_t(&x, train);
        }
        self.to_rgb.forward(&x).sigmoid()
    }
}
