//! Model and training configuration. Every knob of the paper's ablation tables (FFC-AD, Sensors
//! 2025, Tables 12-16) is a field; `small` and `paper` are the named presets (DESIGN.md §3).

use serde::{Deserialize, Serialize};

/// Hidden Space Anomaly Simulation dropout type (paper Table 15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DropoutKind {
    /// Element-wise dropout.
    D1,
    /// Channel-wise dropout (Dropout2d); the paper's best.
    D2,
}

/// Optimizer (paper Table 16: SGD beats AdamW).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Sgd,
    Adamw,
}

/// Architecture of FFC-AD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Model input size in px; both multiples of 32 (encoder stride), at least 64 (the stride-32
    /// features must be at least 2x2; at 1x1 the held-out evaluation gives NaN).
    pub input_height: i64,
    pub input_width: i64,
    /// Stem output channels (ResNet-18: 64).
    pub stem_width: i64,
    /// Channels of the 4 encoder stages (ResNet-18: 64, 128, 256, 512).
    pub stage_widths: [i64; 4],
    /// BasicBlocks per stage (ResNet-18: 2).
    pub blocks_per_stage: usize,
    /// FFC encoder on; off = plain ResNet convolutions (global ratio 0).
    pub ffc_encoder: bool,
    /// FFC layers per block, 1..=3 (paper Table 13: 2 best).
    pub ffc_layers_per_block: usize,
    /// Global ratio of every FFC (paper Table 14: 0.5 best); the first FFC of the net has gin 0.
    pub global_ratio: f64,
    /// FFC DAE on (FFC residual blocks on the hidden features); off = plain conv blocks.
    pub ffc_dae: bool,
    /// Residual blocks in the DAE (0 = none).
    pub dae_blocks: usize,
    /// HSAS on (paper Table 15), its dropout probability and type.
    pub hsas: bool,
    pub hsas_p: f64,
    pub hsas_kind: DropoutKind,
    /// Channels of the 5 upsampling steps of the decoder (stride 32 -> 1).
    pub decoder_widths: [i64; 5],
    /// Base channels of the segmentation head (a 3-level U-Net on [image, reconstruction]).
    pub head_width: i64,
    /// Side of the mean filter before the max that gives the image score, px (odd).
    pub score_filter_px: i64,
}

/// Training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Preset name this config started from.
    pub preset: String,
    pub model: ModelConfig,
    /// Optimisation steps and batch size.
    pub steps: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerKind,
    /// Peak learning rate (cosine decay to 1% over `steps`, after a 5% linear warm-up).
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    /// Seed of data order, synthesis and initialisation.
    pub seed: u64,
    /// Fraction of train/good held out for threshold calibration (at least 4 images).
    pub holdout_fraction: f64,
    /// Target false-reject rate on good parts for the threshold quantile.
    pub target_false_reject_rate: f64,
    /// Probability that a training sample gets a synthetic defect.
    pub anomaly_probability: f64,
    /// Weight of the reconstruction loss against the segmentation loss.
    pub recon_weight: f64,
}

impl ModelConfig {
    /// Checks the constraints the architecture needs; errors name the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.input_height >= 64 && self.input_width >= 64 && self.input_height % 32 == 0 && self.input_width % 32 == 0,
            "model.input_height/input_width = {}x{}: expected multiples of 32, at least 64",
            self.input_height,
            self.input_width
        );
        anyhow::ensure!((1..=3).contains(&self.ffc_layers_per_block), "model.ffc_layers_per_block = {}: expected 1, 2 or 3", self.ffc_layers_per_block);
        anyhow::ensure!((0.0..1.0).contains(&self.global_ratio), "model.global_ratio = {}: expected 0 <= r < 1", self.global_ratio);
        anyhow::ensure!((0.0..1.0).contains(&self.hsas_p), "model.hsas_p = {}: expected 0 <= p < 1", self.hsas_p);
        anyhow::ensure!(self.score_filter_px >= 1 && self.score_filter_px % 2 == 1, "model.score_filter_px = {}: expected an odd number >= 1", self.score_filter_px);
        anyhow::ensure!(
            self.score_filter_px <= self.input_height.min(self.input_width),
            "model.score_filter_px = {} is larger than the input ({}x{} px)",
            self.score_filter_px,
            self.input_height,
            self.input_width
        );
        anyhow::ensure!(self.blocks_per_stage >= 1, "model.blocks_per_stage must be >= 1");
        let widths = self.stage_widths.iter().chain(&self.decoder_widths).chain([&self.stem_width, &self.head_width]);
        anyhow::ensure!(widths.into_iter().all(|&w| w >= 2), "model widths must all be >= 2");
        Ok(())
    }

    /// Global ratio used in the encoder (0 when the FFC encoder is off).
    pub fn encoder_ratio(&self) -> f64 {
        if self.ffc_encoder { self.global_ratio } else { 0.0 }
    }

    /// Global ratio used in the DAE blocks (0 when the FFC DAE is off).
    pub fn dae_ratio(&self) -> f64 {
        if self.ffc_dae { self.global_ratio } else { 0.0 }
    }
}

impl TrainConfig {
    /// Small configuration: same architecture at 1/8 width and low resolution; trains on a
    /// 2-core CPU in minutes.
    pub fn small() -> Self {
        Self {
            preset: "small".into(),
            model: ModelConfig {
                input_height: 64,
                input_width: 160,
                stem_width: 16,
                stage_widths: [16, 32, 64, 128],
                blocks_per_stage: 2,
                ffc_encoder: true,
                ffc_layers_per_block: 2,
                global_ratio: 0.5,
                ffc_dae: true,
                dae_blocks: 2,
                hsas: true,
                hsas_p: 0.1,
                hsas_kind: DropoutKind::D2,
                decoder_widths: [64, 32, 16, 16, 8],
                head_width: 16,
                // 3 px, not 7: the raw-ish max separates small defects better (bottle image AUROC
                // 0.961 / 0.972 vs 0.932 / 0.953 at 7 px on two checkpoints; BSData equal). RESULTS.md.
                score_filter_px: 3,
            },
            steps: 1200,
            batch_size: 8,
            optimizer: OptimizerKind::Sgd,
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 1e-4,
            seed: 7,
            holdout_fraction: 0.1,
            target_false_reject_rate: 0.01,
            anomaly_probability: 0.5,
            recon_weight: 1.0,
        }
    }

    /// The paper's configuration: 256x256, ResNet-18 widths (for a GPU); training settings as
    /// `small` but for steps and batch size.
    pub fn paper() -> Self {
        let small = Self::small();
        Self {
            preset: "paper".into(),
            model: ModelConfig {
                input_height: 256,
                input_width: 256,
                stem_width: 64,
                stage_widths: [64, 128, 256, 512],
                dae_blocks: 3,
                decoder_widths: [256, 128, 64, 64, 32],
                head_width: 64,
                score_filter_px: 21,
                ..small.model.clone()
            },
            steps: 20_000,
            batch_size: 16,
            ..small
        }
    }

    /// A preset by name: `small` or `paper`.
    pub fn preset(name: &str) -> anyhow::Result<Self> {
        match name {
            "small" => Ok(Self::small()),
            "paper" => Ok(Self::paper()),
            other => anyhow::bail!("unknown config preset `{other}`: expected `small` or `paper`"),
        }
    }

    /// Checks the training settings and the model; errors name the field and the allowed range.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.model.validate()?;
        anyhow::ensure!(self.steps >= 1, "steps = {}: expected at least 1", self.steps);
        anyhow::ensure!(self.batch_size >= 1, "batch_size = {}: expected at least 1", self.batch_size);
        anyhow::ensure!(self.lr.is_finite() && self.lr > 0.0, "lr = {}: expected a finite learning rate > 0", self.lr);
        anyhow::ensure!((0.0..1.0).contains(&self.momentum), "momentum = {}: expected 0 <= m < 1", self.momentum);
        anyhow::ensure!(self.weight_decay.is_finite() && self.weight_decay >= 0.0, "weight_decay = {}: expected a finite value >= 0", self.weight_decay);
        anyhow::ensure!(self.holdout_fraction > 0.0 && self.holdout_fraction < 1.0, "holdout_fraction = {}: expected 0 < f < 1", self.holdout_fraction);
        anyhow::ensure!(
            self.target_false_reject_rate > 0.0 && self.target_false_reject_rate < 1.0,
            "target_false_reject_rate = {}: expected 0 < r < 1",
            self.target_false_reject_rate
        );
        anyhow::ensure!((0.0..=1.0).contains(&self.anomaly_probability), "anomaly_probability = {}: expected 0 <= p <= 1", self.anomaly_probability);
        anyhow::ensure!(self.recon_weight.is_finite() && self.recon_weight >= 0.0, "recon_weight = {}: expected a finite value >= 0", self.recon_weight);
        Ok(())
    }

    /// Reads a TOML file with every field of [`TrainConfig`].
    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        let cfg: Self = toml::from_str(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?;
        cfg.validate().map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?;
        Ok(cfg)
    }
}
