//! Recalibration of a trained checkpoint without retraining. The map's test-time augmentation
//! and Gaussian smoothing, the map's floor, the image score's mean filter or line and the
//! target false-reject rate act after the network (DESIGN.md §3-4), so changing them only needs the
//! held-out good images scored again and the threshold recomputed; the weights stay as they are.

use std::path::{Path, PathBuf};

use anyhow::Context;

use runtime::metadata::ScoreStats;
use tch::Device;

use crate::checkpoint::{load_info, save_info, CheckpointInfo};
use crate::data::ImageCache;

/// What to change; `None` keeps the checkpoint's value.
#[derive(Debug, Clone, Default)]
pub struct RecalibrateOptions {
    /// Side of the square mean filter applied to the anomaly map before its max is taken as the
    /// image score, in px of the model input (odd, >= 1; 1 = the raw max).
    pub score_filter_px: Option<i64>,
    /// Length of the line of the line-mean image score, px (0 = off); see
    /// `ModelConfig::score_line_px`.
    pub score_line_px: Option<i64>,
    /// Standard deviation of the Gaussian that smooths the anomaly map, px (0 = raw map); part of
    /// the model after the sigmoid, so it changes without retraining.
    pub map_sigma_px: Option<f64>,
    /// Quantile of the map's floor removed per image (`ModelConfig::map_floor_quantile`, 0 =
    /// off): after the score, so it changes the reported map and not the threshold.
    pub map_floor_quantile: Option<f64>,
    /// Test-time augmentation of the map (`ModelConfig::tta`): inference only, so it changes
    /// without retraining.
    pub tta: Option<crate::config::Tta>,
    /// How the TTA passes' maps are combined (`ModelConfig::tta_reduce`): inference only.
    pub tta_reduce: Option<crate::config::TtaReduce>,
    /// Target false-reject rate on good parts, in (0, 1): the threshold is the `1 - rate` quantile
    /// of the held-out good scores.
    pub target_false_reject_rate: Option<f64>,
    pub device: Option<Device>,
    pub progress: bool,
}

/// Writes `out_dir/checkpoint.safetensors` (the weights of `weights`, copied byte for byte; the
/// checkpoint's own folder is allowed) and its sidecar with the changed fields, the held-out good images
/// of the checkpoint scored again and the threshold recalibrated. The validation curve is kept as
/// trained (its scores used the old filter). Returns the new weights path and info.
///
/// Errors: nothing to change, an unreadable checkpoint, a changed field out of range (named as in
/// the config file), a held-out image that no longer decodes (named), a threshold that is not a
/// positive number.
pub fn recalibrate(weights: &Path, out_dir: &Path, opts: &RecalibrateOptions) -> anyhow::Result<(PathBuf, CheckpointInfo)> {
    anyhow::ensure!(
        opts.score_filter_px.is_some() || opts.score_line_px.is_some() || opts.map_sigma_px.is_some() || opts.map_floor_quantile.is_some() || opts.tta.is_some() || opts.tta_reduce.is_some() || opts.target_false_reject_rate.is_some(),
        "nothing to change: give --score-filter, --score-line, --map-sigma, --map-floor, --tta, --tta-reduce and/or --target-frr"
    );
    anyhow::ensure!(!out_dir.exists() || out_dir.is_dir(), "output {} is a file; expected a folder", out_dir.display());
    let mut info = load_info(weights)?;
    if let Some(k) = opts.score_filter_px {
        info.config.model.score_filter_px = k;
    }
    if let Some(l) = opts.score_line_px {
        info.config.model.score_line_px = l;
    }
    if let Some(s) = opts.map_sigma_px {
        info.config.model.map_sigma_px = s;
    }
    if let Some(q) = opts.map_floor_quantile {
        info.config.model.map_floor_quantile = q;
    }
    if let Some(t) = opts.tta {
        info.config.model.tta = t;
    }
    if let Some(r) = opts.tta_reduce {
        info.config.model.tta_reduce = r;
    } else if opts.tta == Some(crate::config::Tta::None) && info.config.model.tta_reduce != crate::config::TtaReduce::default() {
        // TTA switched off: a stored `min` would silently return with a later `--tta`.
        tracing::info!("--tta none: the stored combination of the passes ({}) is reset to {}", info.config.model.tta_reduce.name(), crate::config::TtaReduce::default().name());
        info.config.model.tta_reduce = crate::config::TtaReduce::default();
    }
    if let Some(r) = opts.target_false_reject_rate {
        info.config.target_false_reject_rate = r;
    }
    let given = [
        ("model.score_filter_px", "--score-filter", opts.score_filter_px.is_some()),
        ("model.score_line_px", "--score-line", opts.score_line_px.is_some()),
        ("model.map_sigma_px", "--map-sigma", opts.map_sigma_px.is_some()),
        ("model.map_floor_quantile", "--map-floor", opts.map_floor_quantile.is_some()),
        ("target_false_reject_rate", "--target-frr", opts.target_false_reject_rate.is_some()),
    ];
    info.config.validate().map_err(|e| match crate::commands::flag_that_set(&e, &given) {
        Some(flag) => e.context(flag),
        // Not set by a flag: the value came from the checkpoint's sidecar.
        None => e.context(format!("checkpoint sidecar {}", crate::checkpoint::sidecar(weights).display())),
    })?;
    if let (Some(k), l @ 1..) = (opts.score_filter_px, info.config.model.score_line_px) {
        tracing::warn!("score filter {k} px is stored but has no effect: the image score is the {l} px line-mean score (`score_line_px`); add --score-line 0 to score with the filter");
    }
    let device = opts.device.unwrap_or(Device::Cpu);
    let (_vs, model) = crate::checkpoint::model_with_weights(weights, &info.config.model, device)?;

    let (w, h) = (info.config.model.input_width as u32, info.config.model.input_height as u32);
    let holdout = ImageCache::new(info.holdout.clone(), w, h, info.config.bit_depth, usize::MAX, "load holdout", opts.progress).with_context(|| {
        format!("{} lists the held-out good images it was calibrated on; restore the missing one or retrain", crate::checkpoint::sidecar(weights).display())
    })?;
    let (_, scores) = crate::train::holdout_eval(&model, &holdout, device)?;
    let (threshold, calibration) = runtime::threshold::quantile_threshold(&scores, info.config.target_false_reject_rate)?;
    let m = &info.config.model;
    let score = match m.score_line_px {
        0 => format!("score filter {} px", m.score_filter_px),
        l => format!("score line {l} px"),
    };
    if opts.tta_reduce.is_some() {
        info.config.model.warn_if_reduce_unused();
    }
    tracing::info!("map sigma {} px, map floor q {}, TTA {}, {score}: threshold {threshold} ({})", m.map_sigma_px, m.map_floor_quantile, m.tta.summary(m.tta_reduce), calibration.method);
    info.threshold = threshold;
    info.calibration = calibration;
    info.good_score_stats = ScoreStats::of(&scores);
    info.highest_good_scores = runtime::threshold::highest_scores(&info.holdout, &scores, 5);

    std::fs::create_dir_all(out_dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", out_dir.display()))?;
    let out = out_dir.join("checkpoint.safetensors");
    // Through a temporary file and a rename: copying a file onto itself (same path, a hard link)
    // would truncate it; a rename replaces the name and leaves the source's data alone.
    let tmp = out_dir.join("checkpoint.safetensors.tmp");
    std::fs::copy(weights, &tmp).map_err(|e| anyhow::anyhow!("cannot copy {} to {}: {e}", weights.display(), tmp.display()))?;
    std::fs::rename(&tmp, &out).map_err(|e| anyhow::anyhow!("cannot rename {} to {}: {e}", tmp.display(), out.display()))?;
    save_info(&out, &info)?;
    Ok((out, info))
}
