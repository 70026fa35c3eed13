//! Each subcommand of the `trainer` program as one documented library function with its clap
//! arguments (`trainer/src/main.rs` only parses the command line and calls one of these), and
//! what they share: the training-config arguments and the printed calibration.

use std::path::PathBuf;

use tch::Device;

use crate::config::TrainConfig;

pub mod ablate;
pub mod eval;
pub mod export;
pub mod info;
pub mod recalibrate;
pub mod smoothing;
pub mod synthetic_test;
pub mod train;

#[derive(clap::Args)]
pub struct ConfigArgs {
    /// Preset (`small`, `paper`, `small-legacy` = the recipe before the localization work) or a
    /// TOML file with the fields of the training config.
    #[arg(long, default_value = "small")]
    pub config: String,
    /// Override: optimisation steps.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Override: seed of data order, synthesis and initialisation.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override: optimizer (paper Table 16: SGD beats AdamW).
    #[arg(long, value_enum)]
    pub optimizer: Option<crate::config::OptimizerKind>,
    /// Override: peak learning rate.
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Override: batch size.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Override: model input size as HEIGHTxWIDTH in px (multiples of 32, at least 64), e.g. 64x160.
    #[arg(long, value_parser = parse_size)]
    pub size: Option<(i64, i64)>,
    /// Train on random crops of HEIGHTxWIDTH px of each image (multiples of 32, at least 64, at
    /// most the input size), then calibrate and export at the full input size: full resolution
    /// for thin defects at the step time of a small input. Needs `--coord-channels none`
    /// (RESULTS.md, session 23).
    #[arg(long, value_parser = parse_size, value_name = "HxW")]
    pub crop: Option<(i64, i64)>,
    /// Override: side of the mean filter on the anomaly map before its max gives the image score,
    /// in px (odd; 1 = raw max). Changeable after training with `trainer recalibrate`.
    #[arg(long)]
    pub score_filter: Option<i64>,
    /// Override: image score = max over 16 orientations of the anomaly map's mean along a line of
    /// this many px (0 = off, the default: the `--score-filter` max; else 3 up to the input's
    /// longer side; `--score-filter` then has no effect). For defects that are long
    /// thin lines, such as cracks (RESULTS.md, session 28); it dilutes short blobs. Changeable
    /// after training with `trainer recalibrate`.
    #[arg(long, value_name = "PX")]
    pub score_line: Option<i64>,
    /// Override: quantile of the anomaly map's floor removed per image (0 = off; 0.1 in `small`
    /// and `paper`; up to 0.5): the map reported is max(0, map - its q-quantile over the image),
    /// so a part unlike the training images shows where it stands out, not its whole surface.
    /// The image score reads the map before it. Changeable after training with
    /// `trainer recalibrate`.
    #[arg(long, value_name = "Q", allow_negative_numbers = true)]
    pub map_floor: Option<f64>,
    /// Override: test-time augmentation of the map: `none` (the default), `flip` (the image and
    /// its left-right mirror, 2 passes), `vflip` (top-bottom, 2 passes), `half-turn` (the image turned 180 degrees, 2 passes) or `flip-vflip` (both
    /// mirrors and the half turn, 4 passes), the maps combined inside the model (their mean, or
    /// their minimum with `--tta-reduce min`). Inference only:
    /// latency x the passes; for parts that look alike mirrored (KolektorSDD: RESULTS.md,
    /// session 29). Changeable after training with `trainer recalibrate`.
    #[arg(long, value_enum)]
    pub tta: Option<crate::config::Tta>,
    /// Override: how the TTA passes' maps are combined, pixel by pixel: `mean` (the default) or
    /// `min` (a pixel scores high only where every pass sees it: a hot spot one mirrored view
    /// alone produces is dropped; KolektorSDD: RESULTS.md, session 30). No effect without `--tta`.
    /// Changeable after training with `trainer recalibrate`.
    #[arg(long, value_enum)]
    pub tta_reduce: Option<crate::config::TtaReduce>,
    /// Override: augmentation of the good images, comma-separated: flip (left-right), vflip
    /// (top-bottom), rot90 (quarter turns; half turns on non-square inputs), colour (brightness
    /// and white-balance jitter, for lighting that drifts between captures). Off by default: use
    /// only what the part and the line allow.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub augment: Option<Vec<crate::config::Augment>>,
    /// Override: geometry of the synthetic defects' Perlin masks: `draem` (cells of at least 8 px,
    /// noise rotated; the default), `axis` (axis-aligned, cells down to 2 px: long thin blobs,
    /// for parts whose defects run one way, such as cracks along a commutator; RESULTS.md) or
    /// `mixed` (each mask one of the two, 50 / 50).
    #[arg(long, value_enum)]
    pub masks: Option<crate::config::MaskGeometry>,
    /// Override: share of the synthetic defects (strokes aside) drawn as clusters of small spots
    /// 1.5-5 px across (pits, pores, spatter: smaller than the Perlin blobs), 0..=1; 0 is the
    /// default (RESULTS.md, session 21).
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub spots: Option<f64>,
    /// Override: share of the synthetic defects drawn as thin strokes, 1-3 px polylines for
    /// cracks and scratches, 0..=1 (0.15 in `small` and `paper`, 0 in `small-legacy`).
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub strokes: Option<f64>,
    /// Override: share of the strokes drawn as the part itself darkened or brightened along the
    /// line (a crack or a scratch) instead of filled with a texture, 0..=1; 0 is the default
    /// (RESULTS.md, session 22).
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub stroke_shade: Option<f64>,
    /// Override: coordinate channels (y and x of each pixel, CoordConv) in the input of the
    /// `head` (the default of `small` and `paper`), the `encoder`, both (`encoder-and-head`) or
    /// `none`: the head learns what is normal where on a part that sits in the same place in
    /// every frame (RESULTS.md, sessions 21-22).
    #[arg(long, value_enum, value_name = "WHERE")]
    pub coord_channels: Option<crate::config::CoordChannels>,
    /// Override: sign of the weights of the head's output convolution: `free` (the default) or
    /// `non-negative` (projected to >= 0 after every step, so a pixel where the head sees nothing
    /// scores the map's minimum instead of the bias's middle value; RESULTS.md, session 24).
    #[arg(long, value_enum, value_name = "SIGN")]
    pub head_out_weights: Option<crate::config::HeadOutWeights>,
    /// Override: prior anomaly probability PI of the head's output at initialisation, 1e-6 <= PI < 0.5
    /// (0 = off, the default): output bias -ln((1 - PI) / PI), weights N(0, 0.01^2), as the focal
    /// loss paper does (0.01 there). On whole 512x192 KolektorSDD images it kept a free head from
    /// collapsing onto sigmoid(bias) and a `non-negative` one from switching itself off in its
    /// first steps; on the demo and bottle it cost (RESULTS.md, session 25).
    #[arg(long, value_name = "PI", allow_negative_numbers = true)]
    pub head_out_prior: Option<f64>,
    /// Override: strip pooling at the head's coarsest level (off by default): every cell also
    /// sees the mean of its whole row and column, for defects that are long lines across the part
    /// (KolektorSDD's cracks; Hou et al., CVPR 2020).
    #[arg(long)]
    pub head_strip_pool: bool,
    /// Override: decay of the moving average of the weights that is calibrated and saved instead
    /// of the last step's weights (0 = off, the default). Ramped as min(DECAY, (1+n)/(10+n)) after
    /// n steps: 0.99 (~the last 100 steps) takes effect from step 890 on.
    #[arg(long, value_name = "DECAY", allow_negative_numbers = true)]
    pub ema_decay: Option<f64>,
    /// Folder of texture images for synthetic defects (any photos of surfaces you have, as DRAEM
    /// uses the DTD set); nothing is downloaded or shipped.
    #[arg(long)]
    pub textures: Option<PathBuf>,
    /// Override: significant bits of 16-bit training images, 8..=16, LSB-aligned (a 12-bit
    /// sensor's PNGs hold 0..=4095; default 16). Stored in the model: the runtime reads the line's
    /// Y16 frames and 16-bit files at the same depth. 8-bit images are not affected.
    #[arg(long, value_name = "BITS")]
    pub bit_depth: Option<runtime::bit_depth::BitDepth>,
}

/// Parses `HEIGHTxWIDTH` (`64x160`).
pub fn parse_size(s: &str) -> Result<(i64, i64), String> {
    let (h, w) = s.split_once('x').ok_or_else(|| format!("`{s}`: expected HEIGHTxWIDTH, e.g. 64x160"))?;
    let p = |v: &str| v.trim().parse::<i64>().map_err(|e| format!("`{s}`: expected HEIGHTxWIDTH in px, e.g. 64x160 (`{v}`: {e})"));
    Ok((p(h)?, p(w)?))
}

impl ConfigArgs {
    /// The config with the overrides applied; without `--size`, the input size is chosen from the
    /// training images of `data` (median aspect ratio at the preset's pixel budget) and printed.
    pub fn resolve(&self, data: Option<&std::path::Path>) -> anyhow::Result<TrainConfig> {
        // A file is checked after the flags are applied, so that a flag can mend what it got wrong.
        let file = self.config.ends_with(".toml").then(|| std::path::Path::new(&self.config));
        let mut cfg = match file {
            Some(path) => TrainConfig::parse_file(path)?,
            None => TrainConfig::preset(&self.config).map_err(|e| {
                // A path that is not a preset name: say why it was not read.
                let p = std::path::Path::new(&self.config);
                if p.is_dir() {
                    anyhow::anyhow!("--config {}: a folder; expected a preset name (`small`, `paper`, `small-legacy`) or a FILE.toml", p.display())
                } else if p.exists() {
                    anyhow::anyhow!("--config {}: a file is read as a config only when its name ends in .toml; {e}", p.display())
                } else {
                    e
                }
            })?,
        };
        if let Some(s) = self.steps {
            cfg.steps = s;
        }
        if let Some(s) = self.seed {
            cfg.seed = s;
        }
        if let Some(o) = self.optimizer {
            cfg.optimizer = o;
        }
        if let Some(lr) = self.lr {
            cfg.lr = lr;
        }
        if let Some(b) = self.batch_size {
            cfg.batch_size = b;
        }
        if let Some((h, w)) = self.size {
            cfg.model.input_height = h;
            cfg.model.input_width = w;
        }
        if let Some(c) = self.crop {
            cfg.train_crop = Some(c);
        }
        if let Some(k) = self.score_filter {
            cfg.model.score_filter_px = k;
        }
        if let Some(l) = self.score_line {
            cfg.model.score_line_px = l;
        }
        if let Some(q) = self.map_floor {
            cfg.model.map_floor_quantile = q;
        }
        if let Some(t) = self.tta {
            cfg.model.tta = t;
        }
        if let Some(r) = self.tta_reduce {
            cfg.model.tta_reduce = r;
            cfg.model.warn_if_reduce_unused();
        }
        if let Some(d) = self.bit_depth {
            cfg.bit_depth = d;
        }
        if let Some(a) = &self.augment {
            cfg.augment = a.clone();
        }
        if let Some(m) = self.masks {
            m.apply(&mut cfg.synth);
        }
        if let Some(d) = self.ema_decay {
            cfg.ema_decay = d;
        }
        // Probability flags: checked here so the error names the flag, not the config field.
        for (flag, value, field) in [("--spots", self.spots, &mut cfg.synth.spot_probability), ("--strokes", self.strokes, &mut cfg.synth.stroke_probability), ("--stroke-shade", self.stroke_shade, &mut cfg.synth.stroke_shade_probability)] {
            if let Some(p) = value {
                anyhow::ensure!((0.0..=1.0).contains(&p), "{flag} {p}: expected a probability, 0 <= P <= 1");
                *field = p;
            }
        }
        if let Some(c) = self.coord_channels {
            cfg.model.coord_channels = c;
        }
        if let Some(w) = self.head_out_weights {
            cfg.model.head_out_weights = w;
        }
        if let Some(pi) = self.head_out_prior {
            anyhow::ensure!(crate::config::head_out_prior_is_valid(pi), "--head-out-prior {pi}: expected 0 (off) or a prior anomaly probability 1e-6 <= PI < 0.5");
            cfg.model.head_out_prior = pi;
        }
        if self.head_strip_pool {
            cfg.model.head_strip_pool = true;
        }
        if let Some(t) = &self.textures {
            anyhow::ensure!(t.is_dir(), "--textures {}: not a folder", t.display());
            cfg.textures = Some(t.canonicalize().unwrap_or_else(|_| t.clone()));
        }
        if let (None, Some(data), true) = (self.size, data, cfg.auto_size_pixels > 0) {
            let c = crate::autosize::choose_for_data(data, cfg.auto_size_pixels)?;
            cfg.model.input_height = c.height;
            cfg.model.input_width = c.width;
            println!(
                "input size  {}x{} px (median aspect {:.2} of {} training images at ~{} px; --size overrides)",
                c.height, c.width, c.median_aspect, c.images, cfg.auto_size_pixels
            );
        }
        let given = [
            ("steps", "--steps", self.steps.is_some()),
            ("batch_size", "--batch-size", self.batch_size.is_some()),
            ("lr", "--lr", self.lr.is_some()),
            ("model.score_filter_px", "--score-filter", self.score_filter.is_some()),
            ("model.score_line_px", "--score-line", self.score_line.is_some()),
            ("model.map_floor_quantile", "--map-floor", self.map_floor.is_some()),
            ("synth.spot_probability", "--spots", self.spots.is_some()),
            ("synth.stroke_probability", "--strokes", self.strokes.is_some()),
            ("synth.stroke_shade_probability", "--stroke-shade", self.stroke_shade.is_some()),
            ("ema_decay", "--ema-decay", self.ema_decay.is_some()),
        ];
        match file {
            Some(path) => cfg.validate().map_err(|e| name_the_flag(e, &given)).map_err(|e| anyhow::anyhow!("config {} (with the command line's overrides): {e:#}", path.display()))?,
            None => cfg.validate().map_err(|e| name_the_flag(e, &given))?,
        }
        Ok(cfg)
    }
}

/// A validation error that names a config key (`model.score_line_px = 2: ...`) set by a flag
/// the user gave (`given`: key, flag, whether given) is prefixed with that flag
/// (`--score-line: model.score_line_px = 2: ...`), so the message points at the command line
/// as well as at the key a config file would set; other errors are returned unchanged.
pub fn name_the_flag(e: anyhow::Error, given: &[(&str, &str, bool)]) -> anyhow::Error {
    match flag_that_set(&e, given) {
        Some(flag) => e.context(flag.to_string()),
        None => e,
    }
}

/// The flag of `given` (key, flag, whether given) that set the key a validation error names
/// (`model.score_line_px = 2: ...` -> `--score-line`), if one of this run's flags did.
pub fn flag_that_set<'a>(e: &anyhow::Error, given: &[(&str, &'a str, bool)]) -> Option<&'a str> {
    let msg = e.to_string();
    given.iter().find(|(key, _, set)| *set && msg.starts_with(&format!("{key} = "))).map(|(_, flag, _)| *flag)
}

/// Where the deployed threshold comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ThresholdChoice {
    Quantile,
    F1,
}

/// CUDA device 0 when libtorch finds a GPU, unless `cpu`; else the CPU. Where an NVIDIA driver is
/// present, loads libtorch's CUDA backend first (`crate::cuda`): without it libtorch never
/// reports a GPU.
pub fn device(cpu: bool) -> Device {
    if cpu || !crate::cuda::nvidia_driver_present() {
        return Device::Cpu;
    }
    crate::cuda::load_cuda_backend();
    Device::cuda_if_available()
}

/// `cpu` or `cuda:N`, as the train summary prints where it ran.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(n) => format!("cuda:{n}"),
        _ => "cpu".into(),
    }
}

/// A metric to 4 decimals, or `n/a`.
pub fn opt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.4}"))
}

/// The threshold, the held-out good score statistics and the images with the highest scores, with
/// a warning when too few good images were held out for the target false-reject rate.
pub fn print_calibration(info: &crate::checkpoint::CheckpointInfo) {
    let m = &info.config.model;
    match m.score_line_px {
        0 => println!("score       max of the {0}x{0} px mean-filtered anomaly map (map smoothed with sigma {1} px)", m.score_filter_px, m.map_sigma_px),
        l => println!("score       max over 16 orientations of the anomaly map's mean along a {l} px line (map smoothed with sigma {} px)", m.map_sigma_px),
    }
    if m.tta.passes() > 1 {
        println!("TTA         {}", m.tta.summary(m.tta_reduce));
    }
    println!("threshold   {:.4}  ({}; held-out good images: {})", info.threshold, info.calibration.method, info.calibration.good_images);
    let st = &info.good_score_stats;
    println!("good scores mean {:.4}, std {:.4}, min {:.4}, max {:.4}", st.mean, st.std, st.min, st.max);
    let top: Vec<String> = info.highest_good_scores.iter().take(3).map(|h| format!("{} {:.4}", runtime::threshold::short_name(&h.image), h.score)).collect();
    println!("highest     {}", top.join(", "));
    if let Some(w) = runtime::threshold::small_holdout_warning(
        info.calibration.good_images,
        info.calibration.target_false_reject_rate,
        "or hold out more (`holdout_fraction` in a `--config FILE.toml`; the top 5 are in checkpoint.json), or raise the rate (`trainer recalibrate --target-frr`)",
    ) {
        tracing::warn!("{w}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_error_names_the_flag_that_set_the_key() {
        let given = [("lr", "--lr", true), ("model.score_line_px", "--score-line", true), ("model.score_filter_px", "--score-filter", false)];
        let e = name_the_flag(anyhow::anyhow!("model.score_line_px = 2: expected 0 (off) or 3 up to"), &given);
        assert_eq!(format!("{e:#}"), "--score-line: model.score_line_px = 2: expected 0 (off) or 3 up to");
        // A key no flag of this run set (a config file did): unchanged.
        let e = name_the_flag(anyhow::anyhow!("model.score_filter_px = 4: expected an odd number >= 1"), &given);
        assert_eq!(format!("{e:#}"), "model.score_filter_px = 4: expected an odd number >= 1");
        // A key only as a prefix of the message: `lr = ` does not match `hsas_lr = `.
        let e = name_the_flag(anyhow::anyhow!("hsas_lr = 2: x"), &given);
        assert_eq!(format!("{e:#}"), "hsas_lr = 2: x");
    }
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        cfg: ConfigArgs,
    }

    fn resolve(args: &[&str]) -> TrainConfig {
        let argv: Vec<&str> = ["trainer"].iter().chain(args).copied().collect();
        Cli::try_parse_from(argv).unwrap().cfg.resolve(None).unwrap()
    }

    #[test]
    fn a_config_path_that_is_no_toml_file_says_why_it_was_not_read() {
        let d = tempfile::tempdir().unwrap();
        let err = |config: &str| {
            let argv = ["trainer", "--config", config, "--size", "64x64"];
            format!("{:#}", Cli::try_parse_from(argv).unwrap().cfg.resolve(None).unwrap_err())
        };
        let folder = d.path().to_str().unwrap().to_string();
        assert!(err(&folder).contains(&format!("--config {folder}: a folder; expected a preset name")), "{}", err(&folder));
        let txt = d.path().join("my.cfg");
        std::fs::write(&txt, "steps = 3").unwrap();
        let e = err(txt.to_str().unwrap());
        assert!(e.contains("my.cfg: a file is read as a config only when its name ends in .toml") && e.contains("`small`"), "{e}");
        assert!(err("smal").starts_with("unknown config preset `smal`"), "{}", err("smal"));
    }

    #[test]
    fn device_names() {
        assert_eq!(device_name(Device::Cpu), "cpu");
        assert_eq!(device_name(Device::Cuda(1)), "cuda:1");
    }

    #[test]
    fn masks_override_sets_the_mask_geometry_and_nothing_else() {
        let draem = resolve(&["--size", "64x64"]);
        assert_eq!((draem.synth.min_cell_px, draem.synth.rotate_noise), (8, true), "the small default");
        let axis = resolve(&["--size", "64x64", "--masks", "axis"]);
        assert_eq!((axis.synth.min_cell_px, axis.synth.rotate_noise), (0, false));
        let mut back = axis.clone();
        crate::config::MaskGeometry::Draem.apply(&mut back.synth);
        assert_eq!(back, draem, "only the two mask fields differ");
        let legacy = resolve(&["--config", "small-legacy", "--size", "64x64", "--masks", "draem"]);
        assert_eq!((legacy.synth.min_cell_px, legacy.synth.rotate_noise), (8, true));
        let err = Cli::try_parse_from(["trainer", "--masks", "round"]).err().expect("an unknown geometry is refused").to_string();
        assert!(err.contains("round") && err.contains("draem") && err.contains("axis"), "{err}");
        let mixed = resolve(&["--size", "64x64", "--masks", "mixed"]);
        assert_eq!((mixed.synth.min_cell_px, mixed.synth.rotate_noise, mixed.synth.axis_mask_probability), (8, true, 0.5));
        assert_eq!(draem.synth.axis_mask_probability, 0.0);
    }

    #[test]
    fn spots_and_coordinate_channels_overrides_set_their_field_only() {
        let base = resolve(&["--size", "64x64"]);
        assert_eq!((base.synth.spot_probability, base.model.coord_channels), (0.0, crate::config::CoordChannels::Head), "the small preset: no spots, coordinates in the head");
        let spots = resolve(&["--size", "64x64", "--spots", "0.25"]);
        assert_eq!(TrainConfig { synth: crate::config::SynthConfig { spot_probability: 0.0, ..spots.synth.clone() }, ..spots.clone() }, base);
        assert_eq!(spots.synth.spot_probability, 0.25);
        let coords = resolve(&["--size", "64x64", "--coord-channels", "encoder-and-head"]);
        assert!(coords.model.coord_channels.encoder() && coords.model.coord_channels.head());
        let head = resolve(&["--size", "64x64", "--coord-channels", "head"]);
        assert!(!head.model.coord_channels.encoder() && head.model.coord_channels.head());
        let mut back = coords.clone();
        back.model.coord_channels = crate::config::CoordChannels::Head;
        assert_eq!(back, base);
        let none = resolve(&["--size", "64x64", "--coord-channels", "none"]);
        assert_eq!(none.model.coord_channels, crate::config::CoordChannels::None);
        let err = Cli::try_parse_from(["trainer", "--coord-channels", "decoder"]).err().expect("an unknown place is refused").to_string();
        assert!(err.contains("decoder") && err.contains("encoder-and-head"), "{err}");
        // The head's output weights: `free` in the preset, the flag sets that field only.
        assert_eq!(base.model.head_out_weights, crate::config::HeadOutWeights::Free);
        let mut nonneg = resolve(&["--size", "64x64", "--head-out-weights", "non-negative"]);
        assert_eq!(nonneg.model.head_out_weights, crate::config::HeadOutWeights::NonNegative);
        nonneg.model.head_out_weights = crate::config::HeadOutWeights::Free;
        assert_eq!(nonneg, base);
        let err = Cli::try_parse_from(["trainer", "--head-out-weights", "positive"]).err().expect("an unknown sign is refused").to_string();
        assert!(err.contains("positive") && err.contains("non-negative"), "{err}");
        // The output prior: off in the preset, the flag sets that field only, 0.5 and above refused.
        assert_eq!(base.model.head_out_prior, 0.0);
        let mut prior = resolve(&["--size", "64x64", "--head-out-prior", "0.01"]);
        assert_eq!(prior.model.head_out_prior, 0.01);
        prior.model.head_out_prior = 0.0;
        assert_eq!(prior, base);
        let err = Cli::try_parse_from(["trainer", "--size", "64x64", "--head-out-prior", "0.5"]).unwrap().cfg.resolve(None).unwrap_err().to_string();
        assert!(err.contains("--head-out-prior 0.5") && err.contains("1e-6 <= PI < 0.5"), "{err}");
        // Negative values reach the range check (not clap's "unexpected argument '-0'"); a prior so
        // small that its bias is not representable is refused.
        for bad in ["-0.1", "1e-310"] {
            let err = Cli::try_parse_from(["trainer", "--size", "64x64", "--head-out-prior", bad]).unwrap().cfg.resolve(None).unwrap_err().to_string();
            assert!(err.contains("--head-out-prior") && err.contains("1e-6 <= PI < 0.5"), "{bad}: {err}");
        }
        // A probability outside 0..=1 is refused, naming the flag.
        for bad in ["1.5", "-0.1"] {
            let err = Cli::try_parse_from(["trainer", "--size", "64x64", "--spots", bad]).unwrap().cfg.resolve(None).unwrap_err().to_string();
            assert!(err.contains(&format!("--spots {bad}")) && err.contains("0 <= P <= 1"), "{err}");
        }
    }

    #[test]
    fn tta_overrides_set_their_field_only() {
        let base = resolve(&["--size", "64x64"]);
        assert_eq!((base.model.tta, base.model.tta_reduce), (crate::config::Tta::None, crate::config::TtaReduce::Mean), "the small preset: one pass");
        let mut min = resolve(&["--size", "64x64", "--tta", "half-turn", "--tta-reduce", "min"]);
        assert_eq!((min.model.tta, min.model.tta_reduce), (crate::config::Tta::HalfTurn, crate::config::TtaReduce::Min));
        (min.model.tta, min.model.tta_reduce) = (base.model.tta, base.model.tta_reduce);
        assert_eq!(min, base);
        let err = Cli::try_parse_from(["trainer", "--tta-reduce", "median"]).err().expect("an unknown reduction is refused").to_string();
        assert!(err.contains("median") && err.contains("mean") && err.contains("min"), "{err}");
    }

    #[test]
    fn stroke_overrides_set_their_field_only_and_refuse_non_probabilities() {
        let base = resolve(&["--size", "64x64"]);
        assert_eq!((base.synth.stroke_probability, base.synth.stroke_shade_probability), (0.15, 0.0), "the small preset");
        let cracks = resolve(&["--size", "64x64", "--strokes", "0.5", "--stroke-shade", "1"]);
        assert_eq!((cracks.synth.stroke_probability, cracks.synth.stroke_shade_probability), (0.5, 1.0));
        let back = TrainConfig { synth: crate::config::SynthConfig { stroke_probability: 0.15, stroke_shade_probability: 0.0, ..cracks.synth.clone() }, ..cracks.clone() };
        assert_eq!(back, base);
        for (flag, value) in [("--strokes", "1.5"), ("--stroke-shade", "2")] {
            let err = Cli::try_parse_from(["trainer", "--size", "64x64", flag, value]).unwrap().cfg.resolve(None).unwrap_err().to_string();
            assert!(err.contains(&format!("{flag} {value}")) && err.contains("0 <= P <= 1"), "{err}");
        }
    }
    #[test]
    fn crop_sets_its_field_only_and_refuses_windows_the_model_cannot_take() {
        let base = resolve(&["--size", "256x128", "--coord-channels", "none"]);
        assert_eq!(base.train_crop, None, "whole images by default");
        let crop = resolve(&["--size", "256x128", "--coord-channels", "none", "--crop", "128x96"]);
        assert_eq!(crop.train_crop, Some((128, 96)));
        assert_eq!(TrainConfig { train_crop: None, ..crop.clone() }, base);
        // Survives the TOML a user edits and the checkpoint stores.
        let back: TrainConfig = toml::from_str(&toml::to_string(&crop).unwrap()).unwrap();
        assert_eq!(back.train_crop, Some((128, 96)));
        let err = |args: &[&str]| {
            let mut all = vec!["trainer", "--size", "256x128"];
            all.extend_from_slice(args);
            format!("{:#}", Cli::try_parse_from(all).unwrap().cfg.resolve(None).unwrap_err())
        };
        for bad in ["100x96", "128x32", "288x128", "256x160"] {
            let msg = err(&["--coord-channels", "none", "--crop", bad]);
            assert!(msg.contains(&format!("train_crop = {bad}")) && msg.contains("multiples of 32") && msg.contains("256x128"), "{msg}");
        }
        let msg = err(&["--crop", "128x96"]);
        assert!(msg.contains("train_crop = 128x96") && msg.contains("--coord-channels none"), "the default's coordinates: {msg}");
        for malformed in ["128", "x64", "64x", "64x64x64"] {
            let e = Cli::try_parse_from(["trainer", "--crop", malformed]).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("expected HEIGHTxWIDTH"), "{malformed}: {e}");
        }
    }

    #[test]
    fn a_toml_crop_is_checked_after_the_flags_and_must_be_two_numbers() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("crop.toml");
        let mut cfg = TrainConfig::small();
        (cfg.model.input_height, cfg.model.input_width) = (256, 128);
        cfg.train_crop = Some((128, 96));
        std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
        let file = path.to_str().unwrap();
        let resolve_file = |flags: &[&str]| {
            let mut argv = vec!["trainer", "--config", file];
            argv.extend_from_slice(flags);
            Cli::try_parse_from(argv).unwrap().cfg.resolve(None).map_err(|e| format!("{e:#}"))
        };
        // The file keeps the preset's coordinates: refused, naming the file and the mending flag ...
        let msg = resolve_file(&[]).unwrap_err();
        assert!(msg.contains("crop.toml") && msg.contains("--coord-channels none"), "{msg}");
        // ... which mends it.
        let mended = resolve_file(&["--coord-channels", "none"]).unwrap();
        assert_eq!((mended.train_crop, mended.model.coord_channels), (Some((128, 96)), crate::config::CoordChannels::None));
        // A third number is refused, not dropped.
        let text = std::fs::read_to_string(&path).unwrap().replace("train_crop = [128, 96]", "train_crop = [128, 96, 64]");
        assert!(text.contains("[128, 96, 64]"), "the TOML form of the field: {text}");
        std::fs::write(&path, text).unwrap();
        let msg = resolve_file(&["--coord-channels", "none"]).unwrap_err();
        assert!(msg.contains("crop.toml") && msg.contains("train_crop") && msg.contains("expected [height, width] in px, got 3 numbers"), "{msg}");
    }
}
