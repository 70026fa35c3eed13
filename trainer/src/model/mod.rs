//! FFC-AD (Sensors 2025, 25(16), 5196) in tch: FFC encoder -> HSAS + FFC DAE -> reconstruction,
//! and a segmentation head on (input, reconstruction) that outputs the anomaly map.

pub mod coords;
pub mod dae;
pub mod ffc;
pub mod floor;
pub mod head;
pub mod layers;
pub mod line_score;
pub mod resnet;
pub mod smooth;
pub mod strip_pool;

use tch::{nn, Tensor};

use crate::config::{ModelConfig, TtaReduce};

/// ImageNet channel statistics used to normalise the encoder input (RGB in [0, 1]).
pub const NORM_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const NORM_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Outputs of one forward pass for a batch of N images of H x W px.
#[derive(Debug)]
pub struct FfcAdOutput {
    /// Reconstruction [N, 3, H, W] in [0, 1].
    pub recon: Tensor,
    /// Segmentation logits [N, 1, H, W].
    pub logits: Tensor,
    /// Anomaly map = sigmoid(logits), Gaussian-smoothed with `map_sigma_px` (0: raw) and its
    /// floor removed with `map_floor_quantile` ([`floor::remove_floor`]) in eval mode (raw in
    /// training mode), [N, 1, H, W] in [0, 1]: the map the trainer's pixel metrics and the
    /// runtime report.
    pub anomaly_map: Tensor,
    /// The map the image score reads ([`FfcAd::image_score`]): `anomaly_map` before its floor
    /// is removed, [N, 1, H, W] in [0, 1]; the same tensor where `map_floor_quantile` is 0.
    pub score_map: Tensor,
}

/// The whole FFC-AD network.
#[derive(Debug)]
pub struct FfcAd {
    pub config: ModelConfig,
    pub encoder: resnet::FfcEncoder,
    pub dae: dae::FfcDae,
    pub head: head::SegHead,
}

impl FfcAd {
    /// Builds the network under `vs` (variables named `encoder.*`, `dae.*`, `head.*`).
    pub fn new(vs: &nn::Path, config: &ModelConfig) -> anyhow::Result<Self> {
        config.validate()?;
        Ok(Self {
            config: config.clone(),
            encoder: resnet::FfcEncoder::new(vs / "encoder", config),
            dae: dae::FfcDae::new(vs / "dae", config),
            head: head::SegHead::new(vs / "head", config),
        })
    }

    /// image: [N, 3, H, W] RGB in [0, 1] (H, W = the configured input size).
    /// `train` switches BN statistics and HSAS dropout. In eval mode with `tta` set, the map is
    /// the mean (or with `tta_reduce = min` the pixel-wise minimum) of the passes of
    /// [`crate::config::Tta`] (the network on the image and its mirrors, as one batch of
    /// N x passes), each mirrored back; `recon` and `logits` are then
    /// those of the image itself (the first pass).
    pub fn forward_t(&self, image: &Tensor, train: bool) -> FfcAdOutput {
        let passes = if train { vec![vec![]] } else { self.config.tta.flip_dims() };
        let (recon, logits, raw) = if passes.len() == 1 {
            let (recon, logits) = self.network(image, train);
            let raw = logits.sigmoid();
            (recon, logits, raw)
        } else {
            let n = image.size()[0];
            let copies: Vec<Tensor> = passes.iter().map(|d| if d.is_empty() { image.shallow_clone() } else { image.flip(d.as_slice()) }).collect();
            let (recon, logits) = self.network(&Tensor::cat(&copies, 0), train);
            let probs = logits.sigmoid();
            let back: Vec<Tensor> = passes
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let map = probs.narrow(0, i as i64 * n, n);
                    if d.is_empty() { map } else { map.flip(d.as_slice()) }
                })
                .collect();
            (recon.narrow(0, 0, n), logits.narrow(0, 0, n), combine_passes(&back, self.config.tta_reduce))
        };
        // The losses use the logits: smoothing is for inference only (it cost ~30 % of a CPU
        // training step).
        let (sigma, floor_q) = if train { (0.0, 0.0) } else { (self.config.map_sigma_px, self.config.map_floor_quantile) };
        let score_map = smooth::smooth(&raw, sigma);
        let anomaly_map = floor::remove_floor(&score_map, floor_q);
        FfcAdOutput { recon, logits, anomaly_map, score_map }
    }

    /// One pass of the network: image [N, 3, H, W] -> (reconstruction [N, 3, H, W] in [0, 1],
    /// segmentation logits [N, 1, H, W]).
    fn network(&self, image: &Tensor, train: bool) -> (Tensor, Tensor) {
        let dev = image.device();
        let mean = Tensor::from_slice(&NORM_MEAN).to_device(dev).view([1, 3, 1, 1]);
        let std = Tensor::from_slice(&NORM_STD).to_device(dev).view([1, 3, 1, 1]);
        let normalised = (image - mean) / std;
        let encoder_input = if self.config.coord_channels.encoder() { coords::append_coordinates(&normalised) } else { normalised };
        let hidden = self.encoder.forward_t(&encoder_input, train);
        let recon = self.dae.forward_t(&hidden, train);
        let head_input = Tensor::cat(&[image, &recon], 1);
        let head_input = if self.config.coord_channels.head() { coords::append_coordinates(&head_input) } else { head_input };
        let logits = self.head.forward_t(&head_input, train);
        (recon, logits)
    }

    /// Image score per image: max of the `score_filter_px` mean-filtered map (valid region, no
    /// padding), or with `score_line_px` > 0 the line-mean score of
    /// [`line_score::line_image_score`]. `anomaly_map` [N, 1, H, W] -> [N]: pass
    /// [`FfcAdOutput::score_map`] (the map before its floor is removed).
    pub fn image_score(&self, anomaly_map: &Tensor) -> Tensor {
        match self.config.score_line_px {
            0 => image_score(anomaly_map, self.config.score_filter_px),
            length => line_score::line_image_score(anomaly_map, length),
        }
    }
}

/// The TTA passes' maps (each [N, 1, H, W], already mirrored back) combined pixel by pixel:
/// their mean or their minimum ([`TtaReduce`]). One map is returned as it is.
pub fn combine_passes(maps: &[Tensor], reduce: TtaReduce) -> Tensor {
    let first = maps[0].shallow_clone();
    match reduce {
        TtaReduce::Mean if maps.len() > 1 => maps[1..].iter().fold(first, |sum, m| sum + m) / maps.len() as f64,
        TtaReduce::Mean => first,
        TtaReduce::Min => maps[1..].iter().fold(first, |min, m| min.minimum(m)),
    }
}

/// Image score per image: max of the `k x k` px mean-filtered anomaly map (valid region, no
/// padding; `k` odd, at most the map's side). anomaly_map [N, 1, H, W] -> [N].
pub fn image_score(anomaly_map: &Tensor, k: i64) -> Tensor {
    anomaly_map.avg_pool2d([k, k], [1i64, 1], [0i64, 0], false, true, None).amax([1i64, 2, 3], false)
}

/// Number of trainable parameters in `vs`.
pub fn parameter_count(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
}
