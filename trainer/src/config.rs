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

/// How the decoder and the segmentation head upsample by 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Upsample {
    /// 2x2 stride-2 transposed convolution + BN + ReLU: each input cell paints one 2x2 tile
    /// (before 2026-12: one hidden cell painted one 32x32 output tile).
    Deconv,
    /// Bilinear x2 (half-pixel centres, as `align_corners = false`) + 3x3 conv + BN + ReLU, as
    /// DRAEM's decoder (Zavrtanik et al., ICCV 2021): neighbouring cells blend.
    Bilinear,
}

/// Training-time augmentation of the good images (geometric or photometric; the synthetic defect
/// is drawn after).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Augment {
    /// Mirror left-right with probability 0.5.
    Flip,
    /// Mirror top-bottom with probability 0.5.
    Vflip,
    /// Rotate by a random multiple of 90 degrees (square inputs; 180 degrees only otherwise).
    Rot90,
    /// Lighting and white-balance jitter: brightness x U[0.85, 1.15]; colour images also each
    /// channel x U[0.92, 1.08] (grey images stay grey). For lines whose illumination or camera
    /// colour balance drifts between captures (BSData: RESULTS.md, session 20).
    Colour,
}

/// Test-time augmentation (TTA) of the anomaly map: the network also runs on mirrored copies of
/// the image, each copy's map (after the head's sigmoid) is mirrored back, and the maps are
/// averaged before the smoothing and the image score. An inference choice: training is
/// unchanged, `trainer recalibrate --tta` sets it on a trained checkpoint, and the exported graph
/// runs one copy of the network per pass (latency x the number of passes). On KolektorSDD (session 29)
/// the mean of the map and its mirrors lifted pixel AUROC and the line-mean image score on every
/// seed: mirrored, a good image's spurious hot spots move, a crack stays. For parts that look
/// alike mirrored (or trained with the same `--augment`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Tta {
    /// One pass on the image (every preset).
    #[default]
    None,
    /// Two passes: the image and its left-right mirror.
    Flip,
    /// Two passes: the image and its top-bottom mirror.
    Vflip,
    /// Two passes: the image and its half turn (both mirrors at once; a half-turned part keeps
    /// its handedness, which a single mirror reverses).
    HalfTurn,
    /// Four passes: the image, both mirrors, and the half turn (both mirrors at once).
    FlipVflip,
}

impl Tta {
    /// The passes as the tensor dims each mirrors (of [N, C, H, W]: 3 = left-right, 2 =
    /// top-bottom); the first pass is the image itself (no dims).
    pub fn flip_dims(self) -> Vec<Vec<i64>> {
        match self {
            Self::None => vec![vec![]],
            Self::Flip => vec![vec![], vec![3]],
            Self::Vflip => vec![vec![], vec![2]],
            Self::HalfTurn => vec![vec![], vec![2, 3]],
            Self::FlipVflip => vec![vec![], vec![3], vec![2], vec![2, 3]],
        }
    }

    /// The value as `--tta` and the config file spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Flip => "flip",
            Self::Vflip => "vflip",
            Self::HalfTurn => "half-turn",
            Self::FlipVflip => "flip-vflip",
        }
    }

    /// What the passes are, in words for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::None => "the image only",
            Self::Flip => "the image and its left-right mirror",
            Self::Vflip => "the image and its top-bottom mirror",
            Self::HalfTurn => "the image and its half turn",
            Self::FlipVflip => "the image, its two mirrors and its half turn",
        }
    }

    /// One line for reports: `flip-vflip: the minimum of 4 passes, the image, its two mirrors and
    /// its half turn (latency x 4)`; `none: one pass, the image only` without TTA.
    pub fn summary(self, reduce: TtaReduce) -> String {
        match self.passes() {
            1 => format!("{}: one pass, {}", self.name(), self.describe()),
            n => format!("{}: the {} of {n} passes, {} (latency x {n})", self.name(), reduce.describe(), self.describe()),
        }
    }

    /// Number of network passes per image (1, 2 or 4).
    pub fn passes(self) -> usize {
        self.flip_dims().len()
    }
}

/// How the maps of the TTA passes ([`Tta`]) are combined, pixel by pixel, after each is mirrored
/// back. The mean keeps what most passes see; the minimum keeps only what every pass sees, so a
/// hot spot that one mirrored view alone produces is dropped (KolektorSDD, session 30: pixel AUROC
/// up, RESULTS.md). No effect with `tta = none`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TtaReduce {
    /// The mean of the passes' maps (every preset, and checkpoints from before the field).
    #[default]
    Mean,
    /// The pixel-wise minimum of the passes' maps: a pixel scores high only where every pass sees it.
    Min,
}

impl TtaReduce {
    /// The value as `--tta-reduce` and the config file spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mean => "mean",
            Self::Min => "min",
        }
    }

    /// What the map is, in words for messages: "mean" / "minimum".
    pub fn describe(self) -> &'static str {
        match self {
            Self::Mean => "mean",
            Self::Min => "minimum",
        }
    }
}

/// Where the network sees two coordinate channels (CoordConv, Liu et al., NeurIPS 2018): y and x
/// of each pixel centre in [-1, 1], concatenated to a convolution's input so that it can learn
/// what is normal where, for parts that always sit in the same place (in the head: maps up on
/// KolektorSDD and the embedded demo, level on BSData full and bottle; RESULTS.md, sessions 21
/// and 22). Constants of the exported graph: the runtime's input stays the image.
/// Serde's default is `None`, so checkpoints from before the field (and TOML configs without it)
/// load unchanged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CoordChannels {
    /// No coordinate channels (`small-legacy`; checkpoints from before session 22).
    #[default]
    None,
    /// The segmentation head's input: [image, reconstruction, y, x] (8 channels; the recipe of
    /// `small` and `paper`).
    Head,
    /// The encoder's stem: [normalised image, y, x] (5 channels).
    Encoder,
    /// Both of the above.
    EncoderAndHead,
}

impl CoordChannels {
    /// Whether the encoder's stem gets the coordinate channels.
    pub fn encoder(self) -> bool {
        matches!(self, Self::Encoder | Self::EncoderAndHead)
    }

    /// Whether the segmentation head gets the coordinate channels.
    pub fn head(self) -> bool {
        matches!(self, Self::Head | Self::EncoderAndHead)
    }
}

/// Sign of the weights of the head's output convolution (`head.out`, `head_out_kernel` x
/// `head_out_kernel`), whose input is the last decoder level's ReLU features. `Free`: any sign (the
/// recipe). `NonNegative`: projected to >= 0 after every step (and drawn as |w| at
/// initialisation), so the logit is its bias plus a non-negative sum and a pixel with all features
/// 0 in its kernel window gets the *lowest* score of the map, not a middle one: on KolektorSDD at
/// 512x192 a free head (seed 7 of 3) put every good image's maximum exactly on sigmoid(bias) there,
/// above the cracks (RESULTS.md, sessions 23-24). A constraint of the training only: the exported
/// graph is the same. Serde's default is `Free`, so older checkpoints load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum HeadOutWeights {
    /// Any sign (every preset).
    #[default]
    Free,
    /// Projected to >= 0 after every optimisation step.
    NonNegative,
}

/// Synthetic defects (DRAEM, Zavrtanik et al., ICCV 2021, section 3.3, with the changes of
/// issue 13): which masks and textures are drawn. Defaults (serde) reproduce the recipe before
/// these fields existed, so older checkpoints load unchanged; the presets set the new recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynthConfig {
    /// Smallest Perlin lattice cell, px: the finest mask structure (DRAEM: 4 px at 256 px input,
    /// i.e. 2^6 cells). 0 = the old rule (at least 2 px a cell, up to 2^5 cells).
    #[serde(default)]
    pub min_cell_px: usize,
    /// Rotate the Perlin noise by a random angle in [-90, 90] degrees (DRAEM's imgaug rotate).
    #[serde(default)]
    pub rotate_noise: bool,
    /// Texture source weights (relative): another good image shifted by a random offset with
    /// channel permutation and brightness/offset jitter; a procedural fractal (fBm) texture; an
    /// image of the user texture folder (`--textures DIR`, like DRAEM's DTD). Old recipe: the
    /// co-located batch image unshifted (`self_unshifted`) and a smooth two-colour field.
    #[serde(default)]
    pub texture_self: f64,
    #[serde(default)]
    pub texture_fractal: f64,
    #[serde(default)]
    pub texture_folder: f64,
    #[serde(default = "one")]
    pub texture_self_unshifted: f64,
    #[serde(default = "one")]
    pub texture_smooth: f64,
    /// Probability that a defect mask is a thin stroke (1-3 px wide polyline, for cracks)
    /// instead of a Perlin blob.
    #[serde(default)]
    pub stroke_probability: f64,
    /// A defect whose mean absolute change inside its mask is below this (intensity in [0, 1])
    /// is drawn again (up to 4 times; then kept): invisible defects are label noise. 0 = off.
    #[serde(default)]
    pub min_visible_change: f64,
    /// Probability that a Perlin blob mask is drawn with the axis geometry (`perlin_mask`: no
    /// rotation, cells down to 2 px) instead of `min_cell_px` / `rotate_noise`: a per-sample
    /// mixture of the two geometries (`--masks mixed`: 0.5). 0 = off (then no random draw is
    /// made, so older seeds reproduce).
    #[serde(default)]
    pub axis_mask_probability: f64,
    /// Probability that a defect mask (not a stroke) is a cluster of small spots, 1.5-5 px across
    /// (`synth::spot_mask`: pits, pores, spatter, smaller than DRAEM's blobs can draw). 0 = off
    /// (then no random draw is made, so older seeds reproduce); `--spots P` sets it.
    #[serde(default)]
    pub spot_probability: f64,
    /// Probability that a stroke is drawn as the part itself darkened or brightened along the
    /// line (a crack or a scratch: the texture is `x * s` or `1 - (1 - x) * s`, s ~ U[0.2, 0.7],
    /// dark or bright 50 / 50; `synth::shade`) instead of filled with a texture: a 1-3 px line
    /// of texture on a granular surface looks like more grain, a real crack is a continuous
    /// dark line. 0 = off (then no random draw is made, so older seeds reproduce);
    /// `--stroke-shade P` sets it.
    #[serde(default)]
    pub stroke_shade_probability: f64,
}

fn one() -> f64 {
    1.0
}

impl SynthConfig {
    /// The recipe before issue 13 (what checkpoints without a `synth` section were trained with).
    pub fn legacy() -> Self {
        Self { min_cell_px: 0, rotate_noise: false, texture_self: 0.0, texture_fractal: 0.0, texture_folder: 0.0, texture_self_unshifted: 1.0, texture_smooth: 1.0, stroke_probability: 0.0, min_visible_change: 0.0, axis_mask_probability: 0.0, spot_probability: 0.0, stroke_shade_probability: 0.0 }
    }

    /// The localizing recipe: DRAEM-scale masks (cells down to 8 px at 128 px input), rotated
    /// noise, shifted self-texture and fractal textures, 15 % thin strokes, invisible defects
    /// redrawn. With a texture folder given, a third of the textures come from it.
    pub fn localizing() -> Self {
        Self { min_cell_px: 8, rotate_noise: true, texture_self: 1.0, texture_fractal: 1.0, texture_folder: 1.0, texture_self_unshifted: 0.0, texture_smooth: 0.0, stroke_probability: 0.15, min_visible_change: 0.05, axis_mask_probability: 0.0, spot_probability: 0.0, stroke_shade_probability: 0.0 }
    }

    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        let w = [self.texture_self, self.texture_fractal, self.texture_folder, self.texture_self_unshifted, self.texture_smooth];
        anyhow::ensure!(w.iter().all(|v| v.is_finite() && *v >= 0.0), "synth.texture_*: expected finite weights >= 0");
        anyhow::ensure!(w.iter().sum::<f64>() > 0.0, "synth.texture_*: at least one texture source needs a weight > 0");
        anyhow::ensure!((0.0..=1.0).contains(&self.stroke_probability), "synth.stroke_probability = {}: expected 0 <= p <= 1", self.stroke_probability);
        anyhow::ensure!((0.0..1.0).contains(&self.min_visible_change), "synth.min_visible_change = {}: expected 0 <= v < 1", self.min_visible_change);
        anyhow::ensure!((0.0..=1.0).contains(&self.axis_mask_probability), "synth.axis_mask_probability = {}: expected 0 <= p <= 1", self.axis_mask_probability);
        anyhow::ensure!((0.0..=1.0).contains(&self.spot_probability), "synth.spot_probability = {}: expected 0 <= p <= 1", self.spot_probability);
        anyhow::ensure!((0.0..=1.0).contains(&self.stroke_shade_probability), "synth.stroke_shade_probability = {}: expected 0 <= p <= 1", self.stroke_shade_probability);
        Ok(())
    }
}

/// Geometry of the synthetic defects' Perlin masks, as `trainer train --masks` sets it
/// (RESULTS.md, "The mask geometry").
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MaskGeometry {
    /// DRAEM's (section 3.3): cells of at least 8 px, the noise rotated by +-90 degrees (the
    /// `small` and `paper` default).
    Draem,
    /// Axis-aligned, 2^0..2^5 cells a side of at least 2 px (the mask geometry before issue 13):
    /// long thin blobs along the image axes, for parts whose defects run one way, such as
    /// KolektorSDD's cracks (image AUROC 0.70 there against 0.57-0.65 with DRAEM's; on the
    /// embedded BSData pitting 0.923 against 0.943 on the same machine, with better maps).
    Axis,
    /// Each blob mask drawn with one of the two geometries above, 50 / 50.
    Mixed,
}

impl MaskGeometry {
    /// Sets `synth.min_cell_px`, `synth.rotate_noise` and `synth.axis_mask_probability`; the
    /// textures, strokes and redraw stay.
    pub fn apply(self, synth: &mut SynthConfig) {
        (synth.min_cell_px, synth.rotate_noise, synth.axis_mask_probability) = match self {
            Self::Draem => (8, true, 0.0),
            Self::Axis => (0, false, 0.0),
            Self::Mixed => (8, true, 0.5),
        };
    }
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self::legacy()
    }
}

fn legacy_stride() -> i64 {
    32
}
fn legacy_upsample() -> Upsample {
    Upsample::Deconv
}
fn legacy_head_levels() -> usize {
    3
}
fn legacy_head_out_kernel() -> i64 {
    1
}
fn unlimited() -> i64 {
    i64::MAX
}

/// Architecture of FFC-AD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Model input size in px; both multiples of 32, at least 64 (the hidden features must be at
    /// least 2x2; at 1x1 the held-out evaluation gives NaN).
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
    /// Output stride of the encoder: 32 (ResNet-18) or 16 (stage 4 at stride 1, as DRAEM's
    /// reconstructive network; the hidden map is 8x8 at 128 px instead of 4x4).
    #[serde(default = "legacy_stride")]
    pub encoder_stride: i64,
    /// Channels of the upsampling steps of the decoder, one per factor 2 of `encoder_stride`
    /// (5 for stride 32, 4 for stride 16).
    pub decoder_widths: Vec<i64>,
    /// How the decoder and the head upsample.
    #[serde(default = "legacy_upsample")]
    pub upsample: Upsample,
    /// Base channels of the segmentation head (a U-Net on [image, reconstruction]).
    pub head_width: i64,
    /// Levels of the head's U-Net (3..=6); level i has `head_width * 2^i` channels, capped at
    /// `head_max_width`. Receptive field grows ~2x per level (3 levels: ~38 px).
    #[serde(default = "legacy_head_levels")]
    pub head_levels: usize,
    #[serde(default = "unlimited")]
    pub head_max_width: i64,
    /// Kernel of the head's output convolution (1 or 3).
    #[serde(default = "legacy_head_out_kernel")]
    pub head_out_kernel: i64,
    /// Coordinate channels in the encoder's and / or the head's input (the recipe: the head's).
    #[serde(default)]
    pub coord_channels: CoordChannels,
    /// Sign of the head's output weights ([`HeadOutWeights`]).
    #[serde(default)]
    pub head_out_weights: HeadOutWeights,
    /// Prior anomaly probability pi of the head's output at initialisation (0 = off, every
    /// preset; else 1e-6 <= pi < 0.5): bias = -ln((1 - pi) / pi) and weights drawn from N(0, 0.01^2) (|.| for a
    /// non-negative head), so every pixel starts at p ~ pi instead of ~0.5 (a non-negative head
    /// with tch's draw starts at a mean p > 0.6). The prior initialisation of the focal
    /// loss paper (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, section 4.1):
    /// without it the first steps' push toward "normal everywhere" clamped 117 of 144
    /// non-negative weights to 0 by step 80 and the head never recovered (RESULTS.md, session 25).
    #[serde(default)]
    pub head_out_prior: f64,
    /// Strip pooling at the head's coarsest level (`model::strip_pool`, Hou et al. CVPR 2020):
    /// each cell also sees its whole row's and column's mean, for defects that are long lines
    /// across the part. Off in every preset and for checkpoints from before the field.
    #[serde(default)]
    pub head_strip_pool: bool,
    /// Standard deviation of the Gaussian that smooths the anomaly map inside the model, px
    /// (0 = raw map). Part of the exported graph: trainer and runtime score the same map.
    #[serde(default)]
    pub map_sigma_px: f64,
    /// The map's floor removed per image: the reported anomaly map is
    /// max(0, map - its q-quantile over the image), q = this (0 = off; 0.1 in `small` and `paper`,
    /// 0 for checkpoints from before the field). The image score still reads the map before it
    /// (`model::floor`). A part the model never saw lifts its whole map; the floor keeps the
    /// defects on it above their surroundings (BSData: pixel AUROC +0.029, AUPRO +0.043 over
    /// 3 seeds; RESULTS.md session 37).
    #[serde(default)]
    pub map_floor_quantile: f64,
    /// Side of the mean filter before the max that gives the image score, px (odd).
    pub score_filter_px: i64,
    /// Length of the line of the line-mean image score, px of the model input (0 = off, every
    /// preset; else 3 up to the input's longer side): the score is then the max over 16
    /// orientations of the map's mean along a line this long (`model::line_score`) and
    /// `score_filter_px` is not used. For defects that are long thin lines (KolektorSDD's cracks:
    /// RESULTS.md, session 28); it dilutes short blobs, so it is a per-data-set choice.
    #[serde(default)]
    pub score_line_px: i64,
    /// Test-time augmentation of the map ([`Tta`]; `none` in every preset, and for checkpoints
    /// from before the field).
    #[serde(default)]
    pub tta: Tta,
    /// How the TTA passes' maps are combined ([`TtaReduce`]; `mean` in every preset, and for
    /// checkpoints from before the field).
    #[serde(default)]
    pub tta_reduce: TtaReduce,
}

/// Smallest non-zero `model.head_out_prior`: bias ln(1e-6) ~ -13.8, far below any logit a
/// trained head gives; smaller priors only delay the head's first response (and below ~1e-308
/// the bias is not representable).
pub const MIN_HEAD_OUT_PRIOR: f64 = 1e-6;

/// Whether `pi` is a valid `model.head_out_prior` / `--head-out-prior`: 0 (off) or
/// [`MIN_HEAD_OUT_PRIOR`] <= pi < 0.5 (a prior of 0.5 or more is no prior of "normal").
pub fn head_out_prior_is_valid(pi: f64) -> bool {
    pi == 0.0 || (MIN_HEAD_OUT_PRIOR..0.5).contains(&pi)
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
    /// Weights of the segmentation loss terms: focal (gamma 2) on logits, L1 on probabilities,
    /// soft Dice on the defective samples of the batch. Old recipe: 1, 1, 0.
    #[serde(default = "one")]
    pub seg_focal_weight: f64,
    #[serde(default = "one")]
    pub seg_l1_weight: f64,
    #[serde(default)]
    pub seg_dice_weight: f64,
    /// Synthetic defects.
    #[serde(default)]
    pub synth: SynthConfig,
    /// Augmentation of the good images (off by default: not every part may flip or turn).
    #[serde(default)]
    pub augment: Vec<Augment>,
    /// Folder of texture images for synthetic defects (any images the user has; DRAEM uses DTD).
    #[serde(default)]
    pub textures: Option<std::path::PathBuf>,
    /// Pixel budget (H x W) of the input size chosen from the data when `--size` is not given
    /// (see [`crate::autosize`]); 0 = keep the preset's size.
    #[serde(default)]
    pub auto_size_pixels: i64,
    /// Significant bits of the training images' 16-bit samples (8 ..= 16, LSB-aligned: a 12-bit
    /// sensor's PNGs hold 0..=4095; see `runtime::bit_depth`); 8-bit images are not affected.
    /// Written into the exported model (`ffcad.bit_depth`) so the runtime reads the line's
    /// frames at the same depth. Default 16 (full range).
    #[serde(default)]
    pub bit_depth: runtime::bit_depth::BitDepth,
    /// Decay of the exponential moving average of the weights that is evaluated, calibrated and
    /// saved instead of the last step's weights (`crate::ema`); 0 = off (the last step's
    /// weights). Ramped as `min(decay, (1 + n) / (10 + n))` after n steps, so 0.99 takes effect
    /// from step 890 on and any decay above 0.989 gives the same average at 800 steps.
    #[serde(default)]
    pub ema_decay: f64,
    /// Size (height, width) in px of a random crop of each training image, cut before the
    /// augmentation and the synthetic defects; `None` (the default) = the whole image. Trains at a
    /// high input resolution for the cost of a small one: the model is convolutional and is
    /// held-out-evaluated, calibrated and exported at the full `model.input_*` size. Multiples of
    /// 32, at least 64, at most the input size; needs `model.coord_channels = none` (the
    /// coordinates of a crop are not those of the part). TOML: `train_crop = [128, 192]`.
    #[serde(default, deserialize_with = "height_and_width")]
    pub train_crop: Option<(i64, i64)>,
}

/// A side the model takes, in px: a multiple of 32, at least 64; the rule for the input size and
/// for a training crop alike.
fn is_model_side(n: i64) -> bool {
    n >= 64 && n % 32 == 0
}

/// `[height, width]` exactly: serde's tuple form would drop a third number without a word.
fn height_and_width<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<(i64, i64)>, D::Error> {
    match Option::<Vec<i64>>::deserialize(d)?.as_deref() {
        None => Ok(None),
        Some(&[h, w]) => Ok(Some((h, w))),
        Some(other) => Err(serde::de::Error::custom(format!("expected [height, width] in px, got {} numbers", other.len()))),
    }
}

impl ModelConfig {
    /// Warns that a `--tta-reduce` given to train or recalibrate has no effect when the model
    /// makes one pass (TTA none).
    pub fn warn_if_reduce_unused(&self) {
        if self.tta.passes() == 1 {
            tracing::warn!("--tta-reduce {} is stored but has no effect: the model makes one pass (TTA none); add --tta to choose the passes", self.tta_reduce.name());
        }
    }

    /// Checks the constraints the architecture needs; errors name the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            is_model_side(self.input_height) && is_model_side(self.input_width),
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
        anyhow::ensure!(
            self.score_line_px == 0 || (3..=self.input_height.max(self.input_width)).contains(&self.score_line_px),
            "model.score_line_px = {}: expected 0 (off) or 3 up to the input's longer side ({}x{} px)",
            self.score_line_px,
            self.input_height,
            self.input_width
        );
        anyhow::ensure!(self.blocks_per_stage >= 1, "model.blocks_per_stage must be >= 1");
        anyhow::ensure!(self.encoder_stride == 16 || self.encoder_stride == 32, "model.encoder_stride = {}: expected 16 or 32", self.encoder_stride);
        anyhow::ensure!(
            self.decoder_widths.len() == self.upsampling_steps(),
            "model.decoder_widths has {} entries: expected {} (one per factor 2 of encoder_stride {})",
            self.decoder_widths.len(),
            self.upsampling_steps(),
            self.encoder_stride
        );
        anyhow::ensure!((3..=6).contains(&self.head_levels), "model.head_levels = {}: expected 3..=6", self.head_levels);
        anyhow::ensure!(
            self.input_height >> (self.head_levels - 1) >= 2 && self.input_width >> (self.head_levels - 1) >= 2,
            "model.head_levels = {}: the coarsest level of a {}x{} px input would be smaller than 2x2 px",
            self.head_levels,
            self.input_height,
            self.input_width
        );
        anyhow::ensure!(self.head_out_kernel == 1 || self.head_out_kernel == 3, "model.head_out_kernel = {}: expected 1 or 3", self.head_out_kernel);
        anyhow::ensure!(
            head_out_prior_is_valid(self.head_out_prior),
            "model.head_out_prior = {}: expected 0 (off) or a prior anomaly probability 1e-6 <= pi < 0.5",
            self.head_out_prior
        );
        anyhow::ensure!(self.head_max_width >= 2, "model.head_max_width = {}: expected >= 2", self.head_max_width);
        anyhow::ensure!(
            self.map_sigma_px.is_finite() && (0.0..=16.0).contains(&self.map_sigma_px),
            "model.map_sigma_px = {}: expected 0 (raw map) up to 16 px",
            self.map_sigma_px
        );
        anyhow::ensure!(
            self.map_floor_quantile.is_finite() && (0.0..=0.5).contains(&self.map_floor_quantile),
            "model.map_floor_quantile = {}: expected 0 (off) up to 0.5 (the map's median)",
            self.map_floor_quantile
        );
        let widths = self.stage_widths.iter().chain(&self.decoder_widths).chain([&self.stem_width, &self.head_width]);
        anyhow::ensure!(widths.into_iter().all(|&w| w >= 2), "model widths must all be >= 2");
        Ok(())
    }

    /// Number of x2 upsampling steps of the decoder: log2(encoder_stride).
    pub fn upsampling_steps(&self) -> usize {
        self.encoder_stride.max(1).trailing_zeros() as usize
    }

    /// Channels of head level `i` (0 = full resolution).
    pub fn head_channels(&self, level: usize) -> i64 {
        (self.head_width << level).min(self.head_max_width)
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
    /// Small configuration: same architecture at 1/8 width and low resolution (~128x128 px);
    /// trains on a 2-core CPU in minutes.
    pub fn small() -> Self {
        Self {
            preset: "small".into(),
            model: ModelConfig {
                // The budget's square shape; `trainer train` without `--size` chooses the shape
                // from the data at `auto_size_pixels` (crate::autosize).
                input_height: 128,
                input_width: 128,
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
                // Stride 16 and bilinear upsampling: the hidden map keeps 8x8 cells at 128 px and
                // neighbouring cells blend (issue 13; RESULTS.md "recipe").
                encoder_stride: 16,
                decoder_widths: vec![64, 32, 16, 16],
                upsample: Upsample::Bilinear,
                head_width: 16,
                head_levels: 5,
                head_max_width: 32,
                head_out_kernel: 3,
                // y and x in the head's input: the head learns what is normal where on the part
                // (maps up on KolektorSDD and the embedded demo, 3 seeds each; RESULTS.md session 22).
                coord_channels: CoordChannels::Head,
                head_out_weights: HeadOutWeights::Free,
                head_out_prior: 0.0,
                head_strip_pool: false,
                map_sigma_px: 2.0,
                // The map's 10 % quantile removed per image: chosen on BSData full (3 seeds, 7
                // quantiles), confirmed on KolektorSDD, bottle and the demo (RESULTS.md session 37).
                map_floor_quantile: 0.1,
                // 3 px, not 7: the raw-ish max separates small defects better (bottle image AUROC
                // 0.961 / 0.972 vs 0.932 / 0.953 at 7 px on two checkpoints; BSData equal). RESULTS.md.
                score_filter_px: 3,
                score_line_px: 0,
                tta: Tta::None,
                tta_reduce: TtaReduce::Mean,
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
            seg_focal_weight: 5.0,
            seg_l1_weight: 0.0,
            seg_dice_weight: 0.0,
            synth: SynthConfig::localizing(),
            augment: Vec::new(),
            textures: None,
            auto_size_pixels: 128 * 128,
            bit_depth: Default::default(),
            ema_decay: 0.0,
            train_crop: None,
        }
    }

    /// The small configuration as it was before the localization recipe (issue 13): stride 32,
    /// transposed-conv upsampling, 3-level head, focal + L1, the old synthesis, raw map, 64x160.
    /// For ablations and before/after measurements.
    pub fn small_legacy() -> Self {
        let s = Self::small();
        Self {
            preset: "small-legacy".into(),
            model: ModelConfig {
                input_height: 64,
                input_width: 160,
                encoder_stride: 32,
                decoder_widths: vec![64, 32, 16, 16, 8],
                upsample: Upsample::Deconv,
                head_levels: 3,
                head_max_width: i64::MAX,
                head_out_kernel: 1,
                coord_channels: CoordChannels::None,
                map_sigma_px: 0.0,
                map_floor_quantile: 0.0,
                ..s.model
            },
            seg_focal_weight: 1.0,
            seg_l1_weight: 1.0,
            synth: SynthConfig::legacy(),
            auto_size_pixels: 0,
            bit_depth: Default::default(),
            ..s
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
                decoder_widths: vec![256, 128, 64, 64],
                head_width: 32,
                head_levels: 6,
                head_max_width: 256,
                map_sigma_px: 4.0,
                score_filter_px: 21,
                ..small.model.clone()
            },
            steps: 20_000,
            batch_size: 16,
            auto_size_pixels: 256 * 256,
            bit_depth: Default::default(),
            ..small
        }
    }

    /// A preset by name: `small` or `paper`.
    pub fn preset(name: &str) -> anyhow::Result<Self> {
        match name {
            "small" => Ok(Self::small()),
            "paper" => Ok(Self::paper()),
            "small-legacy" => Ok(Self::small_legacy()),
            other => anyhow::bail!("unknown config preset `{other}`: expected `small`, `paper` or `small-legacy`"),
        }
    }

    /// Checks the training settings and the model; errors name the field and the allowed range.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.model.validate()?;
        anyhow::ensure!(self.steps >= 1, "steps = {}: expected at least 1", self.steps);
        anyhow::ensure!(self.batch_size >= 1, "batch_size = {}: expected at least 1", self.batch_size);
        anyhow::ensure!(self.lr.is_finite() && self.lr > 0.0, "lr = {}: expected a finite learning rate > 0", self.lr);
        anyhow::ensure!((0.0..1.0).contains(&self.ema_decay), "ema_decay = {}: expected 0 (off) <= decay < 1", self.ema_decay);
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
        for (name, w) in [("seg_focal_weight", self.seg_focal_weight), ("seg_l1_weight", self.seg_l1_weight), ("seg_dice_weight", self.seg_dice_weight)] {
            anyhow::ensure!(w.is_finite() && w >= 0.0, "{name} = {w}: expected a finite value >= 0");
        }
        self.synth.validate()?;
        anyhow::ensure!(self.auto_size_pixels == 0 || self.auto_size_pixels >= 64 * 64, "auto_size_pixels = {}: expected 0 (off) or at least 4096 (64x64)", self.auto_size_pixels);
        if let Some((h, w)) = self.train_crop {
            let (ih, iw) = (self.model.input_height, self.model.input_width);
            anyhow::ensure!(
                is_model_side(h) && is_model_side(w) && h <= ih && w <= iw,
                "train_crop = {h}x{w}: expected multiples of 32, at least 64, at most the input size {ih}x{iw} px (HxW)"
            );
            anyhow::ensure!(
                self.model.coord_channels == CoordChannels::None,
                "train_crop = {h}x{w} needs model.coord_channels = none (`--coord-channels none`): the coordinates of a crop are not those of the part"
            );
        }
        Ok(())
    }

    /// Reads and checks a TOML file with every field of [`TrainConfig`]; errors name the file.
    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        let cfg = Self::parse_file(path)?;
        cfg.validate().map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?;
        Ok(cfg)
    }

    /// Reads a TOML file with every field of [`TrainConfig`] without [`TrainConfig::validate`]:
    /// for command-line overrides that are applied before the check (a flag can then mend a
    /// value the file got wrong). Errors (unreadable file, a field of the wrong type) name the file.
    pub fn parse_file(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = crate::checkpoint::read_text(path, "config")?;
        toml::from_str(&text).map_err(|e| {
            // toml says "wanted string or table" (or "invalid type: ...") for a number where a
            // name belongs: add the names the key takes.
            let wrong_type = e.message().starts_with("wanted ") || e.message().starts_with("invalid type");
            let key = e.span().filter(|_| wrong_type).and_then(|span| key_at(&text, span.start));
            let hint = key.and_then(|k| names_of_key(&k).map(|names| format!("`{k}` takes a name in quotes, {names}\n")));
            anyhow::anyhow!("config {}: {e}{}", path.display(), hint.unwrap_or_default())
        })
    }
}

/// The key of the `key = value` line of TOML `text` that holds byte `offset`.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let key = line.split_once('=')?.0.trim();
    Some(key.rsplit('.').next()?.trim().trim_matches('"').to_string())
}

/// "one of `a`, `b`" for a config key whose value is a name, in serde's spelling (the config
/// file's), read from serde's own unknown-variant message so the list cannot drift.
pub(crate) fn names_of_key(key: &str) -> Option<String> {
    fn names<E: serde::de::DeserializeOwned>() -> Option<String> {
        let probe = serde::de::value::StrDeserializer::<serde::de::value::Error>::new("");
        let msg = E::deserialize(probe).err()?.to_string();
        Some(msg.split_once("expected ")?.1.to_string())
    }
    match key {
        "hsas_kind" => names::<DropoutKind>(),
        "upsample" => names::<Upsample>(),
        "coord_channels" => names::<CoordChannels>(),
        "head_out_weights" => names::<HeadOutWeights>(),
        "tta" => names::<Tta>(),
        "tta_reduce" => names::<TtaReduce>(),
        "optimizer" => names::<OptimizerKind>(),
        "augment" => names::<Augment>(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_depth_defaults_to_16_for_older_files_and_is_range_checked() {
        let d = tempfile::tempdir().unwrap();
        let mut table: toml::Table = toml::Value::try_from(TrainConfig::preset("small").unwrap()).unwrap().try_into().unwrap();
        table.remove("bit_depth"); // a TOML written before the key existed
        let path = d.path().join("old.toml");
        std::fs::write(&path, toml::to_string(&table).unwrap()).unwrap();
        assert_eq!(TrainConfig::load(&path).unwrap().bit_depth, runtime::bit_depth::BitDepth::FULL);
        table.insert("bit_depth".into(), 12.into());
        std::fs::write(&path, toml::to_string(&table).unwrap()).unwrap();
        assert_eq!(TrainConfig::load(&path).unwrap().bit_depth.bits(), 12);
        table.insert("bit_depth".into(), 20.into());
        std::fs::write(&path, toml::to_string(&table).unwrap()).unwrap();
        let msg = format!("{:#}", TrainConfig::load(&path).unwrap_err());
        assert!(msg.contains("old.toml") && msg.contains("8 ..= 16"), "{msg}");
    }

    #[test]
    fn head_out_weights_default_to_free_for_older_files_and_name_a_bad_value() {
        let d = tempfile::tempdir().unwrap();
        let mut table: toml::Table = toml::Value::try_from(TrainConfig::preset("small").unwrap()).unwrap().try_into().unwrap();
        let model = table.get_mut("model").and_then(|m| m.as_table_mut()).unwrap();
        assert_eq!(model.remove("head_out_weights").and_then(|v| v.as_str().map(str::to_owned)).as_deref(), Some("free"), "written as kebab-case");
        let path = d.path().join("old.toml");
        std::fs::write(&path, toml::to_string(&table).unwrap()).unwrap();
        assert_eq!(TrainConfig::load(&path).unwrap().model.head_out_weights, HeadOutWeights::Free, "a TOML written before the key");
        let set = |t: &mut toml::Table, v: &str| {
            t.get_mut("model").and_then(|m| m.as_table_mut()).unwrap().insert("head_out_weights".into(), v.into());
            std::fs::write(&path, toml::to_string(t).unwrap()).unwrap();
        };
        set(&mut table, "non-negative");
        assert_eq!(TrainConfig::load(&path).unwrap().model.head_out_weights, HeadOutWeights::NonNegative);
        set(&mut table, "positive");
        let msg = format!("{:#}", TrainConfig::load(&path).unwrap_err());
        assert!(msg.contains("old.toml") && msg.contains("positive") && msg.contains("non-negative"), "{msg}");
    }

    #[test]
    fn head_out_prior_defaults_to_off_for_older_files_and_names_a_bad_value() {
        let d = tempfile::tempdir().unwrap();
        let mut table: toml::Table = toml::Value::try_from(TrainConfig::preset("small").unwrap()).unwrap().try_into().unwrap();
        let model = table.get_mut("model").and_then(|m| m.as_table_mut()).unwrap();
        assert_eq!(model.remove("head_out_prior").and_then(|v| v.as_float()), Some(0.0), "off in the preset");
        let path = d.path().join("old.toml");
        let write = |t: &toml::Table| std::fs::write(&path, toml::to_string(t).unwrap()).unwrap();
        write(&table);
        assert_eq!(TrainConfig::load(&path).unwrap().model.head_out_prior, 0.0, "a TOML written before the key");
        for (value, ok) in [(0.01, true), (0.5, false), (-0.01, false), (1e-9, false)] {
            table.get_mut("model").and_then(|m| m.as_table_mut()).unwrap().insert("head_out_prior".into(), value.into());
            write(&table);
            match TrainConfig::load(&path) {
                Ok(cfg) => assert!(ok && cfg.model.head_out_prior == value, "{value} accepted"),
                Err(e) => {
                    let msg = format!("{e:#}");
                    assert!(!ok && msg.contains("old.toml") && msg.contains("model.head_out_prior") && msg.contains("1e-6 <= pi < 0.5"), "{value}: {msg}");
                }
            }
        }
    }

    #[test]
    fn tta_defaults_to_one_pass_for_older_files_and_is_spelled_as_on_the_command_line() {
        let d = tempfile::tempdir().unwrap();
        let mut table: toml::Table = toml::Value::try_from(TrainConfig::preset("small").unwrap()).unwrap().try_into().unwrap();
        let model = table.get_mut("model").and_then(|m| m.as_table_mut()).unwrap();
        assert_eq!(model.remove("tta").and_then(|v| v.as_str().map(str::to_owned)).as_deref(), Some("none"), "off in the preset");
        let path = d.path().join("old.toml");
        let write = |t: &toml::Table| std::fs::write(&path, toml::to_string(t).unwrap()).unwrap();
        write(&table);
        assert_eq!(TrainConfig::load(&path).unwrap().model.tta, Tta::None, "a TOML written before the key");
        for (t, passes, dims) in [(Tta::None, 1, vec![vec![]]), (Tta::Flip, 2, vec![vec![], vec![3]]), (Tta::Vflip, 2, vec![vec![], vec![2]]), (Tta::HalfTurn, 2, vec![vec![], vec![2, 3]]), (Tta::FlipVflip, 4, vec![vec![], vec![3], vec![2], vec![2, 3]])] {
            assert_eq!((t.passes(), t.flip_dims()), (passes, dims));
            // The config file, the sidecar and `--tta` spell it alike.
            table.get_mut("model").and_then(|m| m.as_table_mut()).unwrap().insert("tta".into(), t.name().into());
            write(&table);
            assert_eq!(TrainConfig::load(&path).unwrap().model.tta, t);
            assert_eq!(<Tta as clap::ValueEnum>::from_str(t.name(), false), Ok(t));
        }
        table.get_mut("model").and_then(|m| m.as_table_mut()).unwrap().insert("tta".into(), "rot90".into());
        write(&table);
        let msg = format!("{:#}", TrainConfig::load(&path).unwrap_err());
        assert!(msg.contains("old.toml") && msg.contains("rot90") && msg.contains("flip-vflip"), "{msg}");
    }

    #[test]
    fn the_map_floor_is_off_for_older_files_and_checked() {
        let d = tempfile::tempdir().unwrap();
        let mut table: toml::Table = toml::Value::try_from(TrainConfig::preset("small").unwrap()).unwrap().try_into().unwrap();
        let model = table.get_mut("model").and_then(|m| m.as_table_mut()).unwrap();
        assert_eq!(model.remove("map_floor_quantile").and_then(|v| v.as_float()), Some(0.1), "0.1 in the preset");
        let path = d.path().join("old.toml");
        std::fs::write(&path, toml::to_string(&table).unwrap()).unwrap();
        assert_eq!(TrainConfig::load(&path).unwrap().model.map_floor_quantile, 0.0, "a TOML written before the key: the map as it was");
        assert_eq!((TrainConfig::paper().model.map_floor_quantile, TrainConfig::small_legacy().model.map_floor_quantile), (0.1, 0.0));
        for bad in [-0.1, 0.51, f64::INFINITY] {
            let mut c = TrainConfig::small();
            c.model.map_floor_quantile = bad;
            let msg = format!("{:#}", c.validate().unwrap_err());
            assert!(msg.contains(&format!("model.map_floor_quantile = {bad}: expected 0 (off) up to 0.5")), "{msg}");
        }
    }

    #[test]
    fn tta_reduce_defaults_to_the_mean_for_older_files_and_is_spelled_as_on_the_command_line() {
        let d = tempfile::tempdir().unwrap();
        let mut table: toml::Table = toml::Value::try_from(TrainConfig::preset("small").unwrap()).unwrap().try_into().unwrap();
        let model = table.get_mut("model").and_then(|m| m.as_table_mut()).unwrap();
        assert_eq!(model.remove("tta_reduce").and_then(|v| v.as_str().map(str::to_owned)).as_deref(), Some("mean"), "the mean in the preset");
        let path = d.path().join("old.toml");
        let write = |t: &toml::Table| std::fs::write(&path, toml::to_string(t).unwrap()).unwrap();
        write(&table);
        assert_eq!(TrainConfig::load(&path).unwrap().model.tta_reduce, TtaReduce::Mean, "a TOML written before the key");
        for r in [TtaReduce::Mean, TtaReduce::Min] {
            table.get_mut("model").and_then(|m| m.as_table_mut()).unwrap().insert("tta_reduce".into(), r.name().into());
            write(&table);
            assert_eq!(TrainConfig::load(&path).unwrap().model.tta_reduce, r);
            assert_eq!(<TtaReduce as clap::ValueEnum>::from_str(r.name(), false), Ok(r));
        }
        table.get_mut("model").and_then(|m| m.as_table_mut()).unwrap().insert("tta_reduce".into(), "max".into());
        write(&table);
        let msg = format!("{:#}", TrainConfig::load(&path).unwrap_err());
        assert!(msg.contains("old.toml") && msg.contains("max") && msg.contains("mean") && msg.contains("min"), "{msg}");
        assert_eq!(Tta::None.summary(TtaReduce::Min), "none: one pass, the image only");
        assert_eq!(Tta::FlipVflip.summary(TtaReduce::Min), "flip-vflip: the minimum of 4 passes, the image, its two mirrors and its half turn (latency x 4)");
    }

    #[test]
    fn a_number_where_a_name_belongs_lists_the_names_the_key_takes() {
        let d = tempfile::tempdir().unwrap();
        let table: toml::Table = toml::Value::try_from(TrainConfig::preset("small").unwrap()).unwrap().try_into().unwrap();
        let path = d.path().join("hand.toml");
        let load_with = |section: Option<&str>, key: &str, value: toml::Value| {
            let mut t = table.clone();
            let at = match section {
                Some(s) => t.get_mut(s).and_then(|m| m.as_table_mut()).unwrap(),
                None => &mut t,
            };
            at.insert(key.into(), value);
            std::fs::write(&path, toml::to_string(&t).unwrap()).unwrap();
            format!("{:#}", TrainConfig::load(&path).unwrap_err())
        };
        let msg = load_with(Some("model"), "tta", 3.into());
        assert!(msg.contains("hand.toml") && msg.contains("tta = 3") && msg.contains("`tta` takes a name in quotes, one of `none`, `flip`, `vflip`, `half-turn`, `flip-vflip`"), "{msg}");
        let msg = load_with(Some("model"), "tta_reduce", true.into());
        assert!(msg.contains("`tta_reduce` takes a name in quotes, `mean` or `min`"), "{msg}");
        let msg = load_with(None, "optimizer", 1.5.into());
        assert!(msg.contains("`optimizer` takes a name in quotes, `sgd` or `adamw`"), "{msg}");
        let msg = load_with(None, "augment", toml::Value::Array(vec![2.into()]));
        assert!(msg.contains("`augment` takes a name in quotes, one of `flip`"), "{msg}");
        // A number for a number-valued key keeps toml's own message, with no hint.
        let msg = load_with(None, "steps", "many".into());
        assert!(msg.contains("steps") && !msg.contains("takes a name"), "{msg}");
        // Every named key's serde spelling is the one `--help` (clap) lists.
        fn same<E: clap::ValueEnum + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>() {
            for v in E::value_variants() {
                let name = v.to_possible_value().unwrap().get_name().to_string();
                let back: E = serde::Deserialize::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(&name)).unwrap();
                assert_eq!(&back, v, "{name}");
            }
        }
        same::<DropoutKind>();
        same::<Upsample>();
        same::<CoordChannels>();
        same::<HeadOutWeights>();
        same::<Tta>();
        same::<TtaReduce>();
        same::<OptimizerKind>();
        same::<Augment>();
    }
}
