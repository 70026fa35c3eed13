//! Threshold calibration on the device (`runtime calibrate`, issue 16, item 2): when lighting or
//! the product changes a little, score freshly collected good frames with tract through the
//! [`Inspector`] and write a new model file whose threshold and score statistics come from them.
//! The weights are untouched: only the `ffcad.*` metadata changes (the graph is copied byte for
//! byte). The threshold rule is the trainer's ([`crate::threshold::quantile_threshold`]): the
//! `1 - target false-reject rate` quantile of the good scores, linear interpolation.

use std::path::{Path, PathBuf};

use anyhow::Context;
use prost::Message;
use tract_onnx::pb::{ModelProto, StringStringEntryProto};

use crate::bit_depth::BitDepth;
use crate::infer::AnomalyModel;
use crate::inspector::Inspector;
use crate::metadata::{ModelMetadata, ScoreStats, FORMAT_VERSION};
use crate::threshold::{highest_scores, quantile_threshold, HeldOutScore};

/// Target false-reject rate when neither `--target-frr` nor the model says one (1 %).
pub const DEFAULT_TARGET_FRR: f64 = 0.01;

/// What to calibrate and where to write it.
#[derive(Debug, Clone)]
pub struct CalibrateOptions {
    /// The exported model whose threshold is recalibrated.
    pub model: PathBuf,
    /// Good images: files and/or folders (searched recursively for PNG/JPEG).
    pub good: Vec<PathBuf>,
    /// Target false-reject rate on good parts, in (0, 1); `None`: the model's, else
    /// [`DEFAULT_TARGET_FRR`].
    pub target_false_reject_rate: Option<f64>,
    /// Bit depth of 16-bit images; `None`: the model's.
    pub bit_depth: Option<BitDepth>,
    /// The new model file (may be `model` itself: written to a temporary file and renamed).
    pub out: PathBuf,
    /// Inference threads, >= 1.
    pub threads: usize,
    /// Progress bar on stderr.
    pub progress: bool,
}

/// What [`calibrate`] measured and wrote.
#[derive(Debug, Clone)]
pub struct CalibrateReport {
    pub out: PathBuf,
    /// The model's threshold before, and the new one (image score units).
    pub previous_threshold: f32,
    pub threshold: f32,
    pub target_false_reject_rate: f64,
    /// Statistics of the good scores (now in the model's `good_score_stats`).
    pub stats: ScoreStats,
    /// The highest-scoring good images, highest first (at most 5): they set the threshold, so
    /// look at them; a defect among the "good" frames shows up here.
    pub highest: Vec<HeldOutScore>,
    /// Good images scored above the previous threshold (the old model would have rejected them).
    pub above_previous: usize,
}

/// Scores every good image with the model's Inspector, computes the threshold for the target
/// false-reject rate and writes `opts.out`: the same graph, metadata with the new threshold,
/// `threshold_calibration`, `good_score_stats` and the bit depth the good images were read at
/// (format version [`FORMAT_VERSION`]). The file written is loaded back and checked.
///
/// # Errors
/// The model cannot be loaded; a target rate outside (0, 1); no good image found; any good image
/// that cannot be inspected (named, with the reason: a calibration must not silently leave frames
/// out); a threshold that is not positive; `out` cannot be written or does not load back.
pub fn calibrate(opts: &CalibrateOptions) -> anyhow::Result<CalibrateReport> {
    let model = AnomalyModel::load_with_threads(&opts.model, opts.threads)?;
    let old = model.metadata.clone();
    let rate = opts.target_false_reject_rate.unwrap_or(match old.threshold_calibration.target_false_reject_rate {
        r if r > 0.0 && r < 1.0 => r,
        _ => DEFAULT_TARGET_FRR,
    });
    anyhow::ensure!(rate > 0.0 && rate < 1.0, "--target-frr {rate}: expected a false-reject rate between 0 and 1 (e.g. 0.01 for 1 %)");
    let depth = opts.bit_depth.unwrap_or(old.bit_depth);
    let found = crate::dataset::collect_inputs(&opts.good)?;
    let files: Vec<PathBuf> = found.samples.into_iter().map(|s| s.image).collect();
    anyhow::ensure!(!files.is_empty(), "no PNG or JPEG images in {:?}: calibration needs good images", opts.good);
    let mut inspector = Inspector::new(model, None, None)?;
    let bar = crate::progress::bar(files.len() as u64, "calibrate", opts.progress);
    let mut scores = Vec::with_capacity(files.len());
    for path in &files {
        let name = path.display().to_string();
        let image = crate::preprocess::load_image(path, depth).with_context(|| "a good image for calibration".to_string())?;
        // A threshold measured on images the model was not trained for would be quietly wrong.
        if let Some(why) = crate::preflight::colour_mismatch(old.input_colour, &image) {
            anyhow::bail!("good image {name} is {why}: calibrate on images from the camera format the model was trained on");
        }
        let outcome = inspector.inspect(&image, &name);
        let score = outcome.score.ok_or_else(|| anyhow::anyhow!("good image {name} cannot be inspected: {}", outcome.reason.clone().unwrap_or_default()))?;
        scores.push(score);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let (threshold, mut calibration) = quantile_threshold(&scores, rate)?;
    calibration.method = format!("quantile {:.3} of {} good images scored by `runtime calibrate` (linear interpolation)", 1.0 - rate, scores.len());
    let stats = ScoreStats::of(&scores);
    // The depth the good images were read at becomes the model's: the line then reads its frames
    // the way the threshold was measured.
    let new = ModelMetadata { format_version: FORMAT_VERSION, threshold, threshold_calibration: calibration, good_score_stats: stats.clone(), bit_depth: depth, ..old.clone() };
    rewrite_metadata(&opts.model, &new, &opts.out)?;
    let back = AnomalyModel::load(&opts.out).with_context(|| format!("the calibrated model {} does not load back", opts.out.display()))?;
    // (JSON keeps f64 statistics to ~1e-16, not bit for bit.)
    let m = &back.metadata;
    anyhow::ensure!(
        m.threshold == new.threshold && m.bit_depth == new.bit_depth && m.threshold_calibration == new.threshold_calibration && (m.good_score_stats.mean - new.good_score_stats.mean).abs() < 1e-9,
        "the calibrated model {} reads back threshold {} ({:?}), not the {} written",
        opts.out.display(),
        m.threshold,
        m.threshold_calibration,
        new.threshold
    );
    Ok(CalibrateReport {
        out: opts.out.clone(),
        previous_threshold: old.threshold,
        threshold,
        target_false_reject_rate: rate,
        above_previous: scores.iter().filter(|&&s| s > old.threshold).count(),
        highest: highest_scores(&files, &scores, 5),
        stats,
    })
}

/// Copies the ONNX file `model` to `out` with its `ffcad.*` metadata replaced by `metadata`;
/// every other part of the file (graph, weights, other metadata keys) is kept as it was.
///
/// # Errors
/// `model` cannot be read or is not an ONNX protobuf; `out` cannot be written (the temporary file
/// is removed, `out` untouched).
pub fn rewrite_metadata(model: &Path, metadata: &ModelMetadata, out: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(model).map_err(|e| anyhow::anyhow!("cannot read model {}: {e}", model.display()))?;
    let mut proto = ModelProto::decode(bytes.as_slice()).map_err(|e| anyhow::anyhow!("{} is not an ONNX model: {e}", model.display()))?;
    proto.metadata_props.retain(|p| !p.key.starts_with("ffcad."));
    proto.metadata_props.extend(metadata.to_props().into_iter().map(|(key, value)| StringStringEntryProto { key, value }));
    crate::output::write_atomic(out, &proto.encode_to_vec(), true)?;
    Ok(())
}

/// The report as `runtime calibrate` prints it.
pub fn render_report(r: &CalibrateReport) -> String {
    let s = &r.stats;
    let mut out = format!(
        "model       {}\nthreshold   {:.4}  (was {:.4}; quantile {:.3} of {} good images, target false-reject rate {})\n",
        r.out.display(),
        r.threshold,
        r.previous_threshold,
        1.0 - r.target_false_reject_rate,
        s.count,
        r.target_false_reject_rate
    );
    out.push_str(&format!("good scores mean {:.4}, std {:.4}, min {:.4}, max {:.4}; {} above the previous threshold\n", s.mean, s.std, s.min, s.max, r.above_previous));
    out.push_str("highest     ");
    for (i, h) in r.highest.iter().enumerate() {
        out.push_str(&format!("{}{:.4}  {}\n", if i == 0 { "" } else { "            " }, h.score, h.image.display()));
    }
    if let Some(w) = crate::threshold::small_holdout_warning(s.count, r.target_false_reject_rate, "or calibrate on more good images, or raise the rate (--target-frr)") {
        out.push_str(&format!("WARNING     {w}\n"));
    }
    out
}
