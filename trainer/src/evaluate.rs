//! Evaluation of a checkpoint with tch on a test split, and the export of a checkpoint with a
//! parity check of the written file through the runtime's own tract path.

use std::path::{Path, PathBuf};

use anyhow::Context;
use runtime::dataset::test_samples;
use runtime::infer::AnomalyModel;
use runtime::inspector::Inspector;
use runtime::metadata::{ModelMetadata, FORMAT_VERSION};
use runtime::evaluation::{mask_for_metrics, Accumulator, MetricReport};
use runtime::preprocess::{load_image, to_model_input};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::model::{FfcAd, NORM_MEAN, NORM_STD};
use crate::checkpoint::load_model;

/// Anomaly maps [N, H*W] and scores of one batch of planar inputs, in eval mode.
pub fn forward_maps(model: &FfcAd, inputs: &[Vec<f32>], device: Device) -> (Vec<Vec<f32>>, Vec<f32>) {
    let _g = tch::no_grad_guard();
    let (h, w) = (model.config.input_height, model.config.input_width);
    let flat: Vec<f32> = inputs.concat();
    let x = Tensor::from_slice(&flat).view([inputs.len() as i64, 3, h, w]).to_device(device);
    let out = model.forward_t(&x, false);
    let scores = Vec::<f32>::try_from(&model.image_score(&out.score_map).to_device(Device::Cpu).to_kind(Kind::Float)).expect("scores");
    let maps = out.anomaly_map.to_device(Device::Cpu).to_kind(Kind::Float).view([inputs.len() as i64, h * w]);
    let maps = (0..inputs.len() as i64).map(|i| Vec::<f32>::try_from(&maps.get(i)).expect("map")).collect();
    (maps, scores)
}

/// Evaluates `weights` on `<data_root>/test` with image and pixel metrics (no threshold).
pub fn evaluate(weights: &Path, data_root: &Path, device: Device, progress: bool) -> anyhow::Result<MetricReport> {
    let (_vs, model, info) = load_model(weights, device)?;
    // An image with no class folder (directly in `test/`, or nested deeper) has no label: left
    // out, as `runtime inspect` leaves it out of its metrics, rather than counted as good.
    let (samples, unlabelled): (Vec<_>, Vec<_>) = test_samples(data_root)?.into_iter().partition(|s| s.is_defective.is_some());
    if !unlabelled.is_empty() {
        tracing::warn!("{} test image(s) of {} are in no class folder (test/good or test/<defect>), so they have no label and are left out of the metrics, e.g. {}", unlabelled.len(), data_root.display(), unlabelled[0].image.display());
    }
    let (w, h) = (model.config.input_width as u32, model.config.input_height as u32);
    tracing::info!("evaluating {} on {} test images of {} at {h}x{w} px (HxW)", weights.display(), samples.len(), data_root.display());
    let bar = runtime::progress::bar(samples.len() as u64, "eval", progress);
    let mut acc = Accumulator::new(w as usize, h as usize);
    for sample in &samples {
        let img = load_image(&sample.image, info.config.bit_depth)?;
        let input = to_model_input(&img, None, w, h);
        let (maps, scores) = forward_maps(&model, &[input.chw], device);
        let mask = mask_for_metrics(sample, Some((img.width(), img.height())), None, w, h);
        acc.add(scores[0], sample.is_defective == Some(true), mask.as_deref().map(|m| (maps[0].as_slice(), m)));
        bar.inc(1);
    }
    bar.finish_and_clear();
    acc.report(None).ok_or_else(|| anyhow::anyhow!("no labelled test images in {}/test (expected test/good and test/<defect> folders)", data_root.display()))
}

/// What an export produced.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub path: PathBuf,
    pub bytes: u64,
    pub parameters: i64,
    pub macs: u64,
    pub op_types: Vec<String>,
    /// Max |tch - tract| over the anomaly maps and scores of the checked images.
    pub parity_max_abs_map: f32,
    pub parity_max_abs_score: f32,
    pub parity_images: usize,
    /// The threshold written into the model (image score units) and how it was obtained.
    pub threshold: f32,
    pub threshold_method: String,
    /// The map's test-time augmentation built into the graph.
    pub tta: crate::config::Tta,
    /// How the passes' maps are combined in the graph.
    pub tta_reduce: crate::config::TtaReduce,
}

/// Metadata of an f32 export of a model with configuration `cfg`, before calibration: category
/// `uncalibrated`, threshold 0.5, empty statistics. Callers fill in what they know.
pub fn uncalibrated_metadata(cfg: &crate::config::ModelConfig) -> ModelMetadata {
    use runtime::metadata::{ScoreStats, ThresholdCalibration};
    ModelMetadata {
        format_version: FORMAT_VERSION,
        category: "uncalibrated".into(),
        input_height: cfg.input_height as u32,
        input_width: cfg.input_width as u32,
        norm_mean: NORM_MEAN,
        norm_std: NORM_STD,
        score_filter_px: cfg.score_filter_px as u32,
        score_line_px: cfg.score_line_px as u32,
        map_sigma_px: cfg.map_sigma_px as f32,
        map_floor_quantile: cfg.map_floor_quantile as f32,
        tta_passes: cfg.tta.passes() as u32,
        threshold: 0.5,
        threshold_calibration: ThresholdCalibration { method: "none".into(), target_false_reject_rate: 0.0, good_images: 0 },
        good_score_stats: ScoreStats::of(&[]),
        train_config: serde_json::json!({}),
        metrics: serde_json::json!({}),
        git_revision: "unknown".into(),
        precision: "f32".into(),
        macs: 0,
        input_colour: runtime::metadata::InputColour::Unknown,
        bit_depth: runtime::bit_depth::BitDepth::FULL,
    }
}

/// How many training images [`training_colour`] reads the header of (spread over the list).
pub const COLOUR_SAMPLE: usize = 64;

/// Whether the good training images of the data set at `root` were grey or colour (issue 12,
/// finding 6): up to [`COLOUR_SAMPLE`] of them, spread over the list, are checked by their
/// header (nothing decoded). [`InputColour::Grey`] when every one checked has one colour channel,
/// [`InputColour::Rgb`] when one has more, [`InputColour::Unknown`] (with a warning naming the
/// folder or file) when the list or a header cannot be read, e.g. the data set moved since
/// training.
///
/// [`InputColour::Grey`]: runtime::metadata::InputColour::Grey
/// [`InputColour::Rgb`]: runtime::metadata::InputColour::Rgb
/// [`InputColour::Unknown`]: runtime::metadata::InputColour::Unknown
pub fn training_colour(root: &Path) -> runtime::metadata::InputColour {
    use runtime::metadata::InputColour;
    let images = match runtime::dataset::train_good(root) {
        Ok(images) => images,
        Err(e) => {
            tracing::warn!("cannot list the training images to record their colour (ffcad.input_colour = unknown): {e}");
            return InputColour::Unknown;
        }
    };
    for p in spread(&images, COLOUR_SAMPLE) {
        match runtime::preflight::read_image_header(&p) {
            Ok(h) if !h.grey => return InputColour::Rgb,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("cannot read a training image header to record the colour (ffcad.input_colour = unknown): {e}");
                return InputColour::Unknown;
            }
        }
    }
    InputColour::Grey
}

/// `git rev-parse --short HEAD` of the working directory, or `unknown`.
pub fn git_revision() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Numeric format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    Int8,
}

/// How to export a checkpoint.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub precision: Precision,
    /// Form of the int8 convolutions (ignored for f32).
    pub quant_form: crate::export::quant::QuantForm,
    /// Good training images whose activations set the int8 ranges (spread evenly over
    /// `<data_root>/train/good`).
    pub int8_range_images: usize,
    /// Held-out good images on which tch and tract are compared.
    pub parity_images: usize,
    /// Data set whose `train/good` images set the int8 activation ranges (default: the checkpoint's data root).
    pub data_root: Option<PathBuf>,
    /// Threshold to deploy instead of the checkpoint's quantile, with how it was chosen (f32 only).
    pub deployed_threshold: Option<(f32, String)>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self { precision: Precision::F32, quant_form: crate::export::quant::QuantForm::Qlinear, int8_range_images: 32, parity_images: 4, data_root: None, deployed_threshold: None }
    }
}

/// `n` paths spread evenly over `paths` (all of them if there are fewer).
fn spread<T: Clone>(paths: &[T], n: usize) -> Vec<T> {
    if paths.len() <= n {
        return paths.to_vec();
    }
    (0..n).map(|i| paths[i * paths.len() / n].clone()).collect()
}

/// `p` with links and `..` resolved; as given when that fails (e.g. it does not exist yet).
fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Refuses an export path that is the checkpoint itself or its `.json` (the export would
/// overwrite the trained weights). Errors name both files.
pub fn check_export_path(weights: &Path, out: &Path) -> anyhow::Result<()> {
    let out_c = canonical(out);
    for f in [weights.to_path_buf(), weights.with_extension("json")] {
        anyhow::ensure!(out_c != canonical(&f), "--out {} is the checkpoint file {}: exporting there would overwrite the trained model; choose another path (e.g. model.onnx)", out.display(), f.display());
    }
    Ok(())
}

/// `train` without the images of `holdout`, compared as canonical paths: the checkpoint stores
/// absolute paths while `--data` may be relative (`../data/x/train/good/0.png`), and a held-out
/// image must not set int8 ranges. A path that cannot be canonicalized is compared as given.
fn without_holdout(train: Vec<PathBuf>, holdout: &[PathBuf]) -> Vec<PathBuf> {
    let held: std::collections::HashSet<PathBuf> = holdout.iter().map(|p| canonical(p)).collect();
    train.into_iter().filter(|p| !held.contains(&canonical(p))).collect()
}

/// The data set whose good training images set the int8 activation ranges: `opts.data_root`,
/// else the checkpoint's. Errors when it holds no `train/good` images, naming the folder and the flag.
pub fn int8_images_root(info: &crate::checkpoint::CheckpointInfo, opts: &ExportOptions) -> anyhow::Result<PathBuf> {
    let root = opts.data_root.clone().unwrap_or_else(|| info.data_root.clone());
    runtime::dataset::train_good(&root)
        .with_context(|| format!("the int8 activation ranges are read from the good training images of {}; pass the data set with --data", root.display()))?;
    Ok(root)
}

/// Where a held-out image that fails to load comes from, for its error: the sidecar's list.
fn held_out_source(weights: &Path) -> String {
    format!("a held-out good image listed in {} (`holdout`); restore it or retrain", crate::checkpoint::sidecar(weights).display())
}

/// The sidecar's threshold and calibration rate, checked before they reach a model file: a
/// hand-edited threshold was caught only by tract's metadata check after the build, and the rate
/// an int8 export recomputes its threshold at not at all (a rate of 2 gave the lowest good score).
fn check_calibration(info: &crate::checkpoint::CheckpointInfo, weights: &Path) -> anyhow::Result<()> {
    let fix = "`trainer recalibrate --target-frr R` computes the threshold and its calibration again";
    let side = crate::checkpoint::sidecar(weights);
    anyhow::ensure!(info.threshold.is_finite() && info.threshold > 0.0, "checkpoint sidecar {}: threshold = {}: expected a finite image score > 0; {fix}", side.display(), info.threshold);
    let r = info.calibration.target_false_reject_rate;
    anyhow::ensure!(r > 0.0 && r < 1.0, "checkpoint sidecar {}: calibration.target_false_reject_rate = {r}: expected 0 < r < 1; {fix}", side.display());
    Ok(())
}

/// Exports checkpoint `weights` to the ONNX file `final_out` (f32, or int8 with activation ranges from good training
/// images), then loads the file with the runtime (tract) and compares it with the tch model on
/// held-out good images. For int8 the parity numbers are the quantization error. The file is
/// written as `.<name>.tmp` beside `final_out` and moved onto it only when every check passed.
///
/// Errors: `final_out` is the checkpoint; unreadable checkpoint, held-out (named with the sidecar
/// that lists them) or int8 range images; a sidecar threshold that is not a finite score > 0 or
/// a calibration rate outside (0, 1); a sidecar without held-out images; a
/// file tract cannot load; a non-finite map or score on a held-out image. `final_out` is then untouched.
pub fn export_checkpoint(weights: &Path, final_out: &Path, metrics: serde_json::Value, opts: &ExportOptions) -> anyhow::Result<ExportReport> {
    check_export_path(weights, final_out)?;
    // Everything is written to and checked on a partial file beside `final_out`, renamed onto it
    // only when the checks pass: a failed export leaves no deployable file and keeps the old one.
    let partial = crate::partial_output::PartialOutput::file_beside(final_out);
    let out = partial.path.as_path();
    let (vs, model, info) = load_model(weights, Device::Cpu)?;
    check_calibration(&info, weights)?;
    let mut metadata = ModelMetadata {
        category: info.category.clone(),
        threshold: info.threshold,
        threshold_calibration: info.calibration.clone(),
        good_score_stats: info.good_score_stats.clone(),
        train_config: serde_json::to_value(&info.config)?,
        metrics,
        git_revision: git_revision(),
        input_colour: training_colour(opts.data_root.as_deref().unwrap_or(&info.data_root)),
        bit_depth: info.config.bit_depth,
        ..uncalibrated_metadata(&info.config.model)
    };
    if let Some((t, method)) = &opts.deployed_threshold {
        anyhow::ensure!(opts.precision == Precision::F32, "a deployed threshold other than the quantile is supported for f32 exports only");
        anyhow::ensure!(t.is_finite() && *t > 0.0, "deployed threshold {t}: expected a finite value > 0");
        metadata.threshold = *t;
        metadata.threshold_calibration.method = method.clone();
    }
    let (w, h) = (info.config.model.input_width as u32, info.config.model.input_height as u32);
    let exported = match opts.precision {
        Precision::F32 => crate::export::build(&model, &metadata),
        Precision::Int8 => {
            let root = int8_images_root(&info, opts)?;
            let train = runtime::dataset::train_good(&root)?;
            let train = without_holdout(train, &info.holdout);
            let picked = spread(&train, opts.int8_range_images);
            let inputs = picked.iter().map(|p| Ok(to_model_input(&load_image(p, info.config.bit_depth)?, None, w, h).chw)).collect::<anyhow::Result<Vec<_>>>()?;
            tracing::info!("calibrating int8 activation ranges on {} good training images", inputs.len());
            let ranges = crate::export::activation_ranges(&model, &metadata, &inputs)?;
            metadata.precision = "int8".into();
            if let serde_json::Value::Object(m) = &mut metadata.metrics {
                m.insert("int8".into(), serde_json::json!({
                    "form": opts.quant_form,
                    "int8_range_images": inputs.len(),
                    "activations": "uint8 per tensor, min/max ([0, max] where a ReLU reads a QLinearConv output)",
                    "weights": "int8 symmetric per output channel",
                    "kept_f32": "FourierUnit DFT MatMuls and spectral conv, the head's first and logit convs (head.enc0a.conv, head.out), ConvTranspose, elementwise"
                }));
            }
            let first = crate::export::build_int8(&model, &metadata, opts.quant_form, ranges.clone());
            // The int8 graph scores slightly differently: recalibrate the threshold on its own
            // scores of the same held-out good images, for the same target false-reject rate.
            crate::export::write(&first.proto, out)?;
            let mut rt = AnomalyModel::load(out).with_context(|| format!("the exported file {} does not load in tract", final_out.display()))?;
            let mut scores = Vec::with_capacity(info.holdout.len());
            for p in &info.holdout {
                let image = load_image(p, info.config.bit_depth).with_context(|| held_out_source(weights))?;
                scores.push(rt.infer(&to_model_input(&image, None, w, h).chw)?.score);
            }
            if !scores.is_empty() {
                let q = 1.0 - info.calibration.target_false_reject_rate;
                metadata.threshold = runtime::threshold::quantile(&scores, q);
                metadata.good_score_stats = runtime::metadata::ScoreStats::of(&scores);
                metadata.threshold_calibration.method = format!("{} (int8 scores)", info.calibration.method);
                tracing::info!("int8 threshold {} (f32: {})", metadata.threshold, info.threshold);
            }
            crate::export::build_int8(&model, &metadata, opts.quant_form, ranges)
        }
    };
    crate::export::write(&exported.proto, out)?;
    // The check runs the file as the line does: through the runtime's Inspector (decode at the
    // model's bit depth, preprocess, tract, decide), against the tch model on the same input.
    let rt = AnomalyModel::load(out).with_context(|| format!("the exported file {} does not load in tract", final_out.display()))?;
    let depth = rt.metadata.bit_depth;
    let mut inspector = Inspector::new(rt, None, None).with_context(|| format!("the exported file {}", final_out.display()))?;
    let (mut dmap, mut dscore, mut n) = (0.0f32, 0.0f32, 0);
    anyhow::ensure!(
        opts.parity_images == 0 || !info.holdout.is_empty(),
        "export check: {} lists no held-out good images (`holdout`), so the exported file cannot be checked against the model; export the sidecar `trainer train` wrote",
        crate::checkpoint::sidecar(weights).display()
    );
    for p in info.holdout.iter().take(opts.parity_images) {
        let image = load_image(p, depth).with_context(|| held_out_source(weights))?;
        let input = to_model_input(&image, None, w, h).chw;
        let (maps, scores) = forward_maps(&model, std::slice::from_ref(&input), Device::Cpu);
        let name = p.display().to_string();
        let outcome = inspector.inspect(&image, &name);
        let (Some(score), Some(map)) = (outcome.score, outcome.anomaly_map) else {
            anyhow::bail!("export check: the runtime could not inspect held-out image {name} with {}: {}", final_out.display(), outcome.reason.unwrap_or_default());
        };
        // NaN compares false with everything: the differences below would read 0.
        anyhow::ensure!(
            scores[0].is_finite() && maps[0].iter().all(|v| v.is_finite()) && score.is_finite() && map.iter().all(|v| v.is_finite()),
            "export check: held-out image {name} gives a non-finite anomaly map or score (tch score {}, tract score {score}): the checkpoint {} holds non-finite weights or statistics; retrain or resume from an earlier checkpoint",
            scores[0],
            weights.display()
        );
        let (worst, at) = maps[0].iter().zip(map).enumerate().fold((0.0f32, 0), |(m, i), (j, (a, b))| if (a - b).abs() > m { ((a - b).abs(), j) } else { (m, i) });
        if worst > dmap {
            tracing::debug!("export check: {name}: largest map difference {worst:.2e} at pixel ({}, {})", at % w as usize, at / w as usize);
        }
        dmap = dmap.max(worst);
        dscore = dscore.max((scores[0] - score).abs());
        n += 1;
    }
    let bytes = std::fs::metadata(out)?.len();
    partial.commit(final_out)?;
    Ok(ExportReport {
        path: final_out.into(),
        bytes,
        parameters: crate::model::parameter_count(&vs),
        macs: exported.macs,
        op_types: exported.op_types,
        parity_max_abs_map: dmap,
        parity_max_abs_score: dscore,
        parity_images: n,
        threshold: metadata.threshold,
        threshold_method: metadata.threshold_calibration.method.clone(),
        tta: model.config.tta,
        tta_reduce: model.config.tta_reduce,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::metadata::InputColour;

    #[test]
    fn held_out_images_are_excluded_however_the_path_is_spelled() {
        let d = tempfile::tempdir().unwrap();
        let good = d.path().join("train/good");
        std::fs::create_dir_all(&good).unwrap();
        for n in ["a.png", "b.png", "c.png"] {
            std::fs::write(good.join(n), b"x").unwrap();
        }
        // The checkpoint's absolute path against a spelling with `..` in it, as a relative --data gives.
        let holdout = vec![good.join("b.png")];
        let detour = d.path().join("train/good/../good");
        let train: Vec<PathBuf> = ["a.png", "b.png", "c.png"].iter().map(|n| detour.join(n)).collect();
        assert_eq!(without_holdout(train, &holdout), vec![detour.join("a.png"), detour.join("c.png")]);
        // A path that does not exist is compared as given.
        assert_eq!(without_holdout(vec![PathBuf::from("/no/such.png")], &[PathBuf::from("/no/such.png")]), Vec::<PathBuf>::new());
    }

    #[test]
    fn training_colour_is_grey_only_when_every_checked_image_is_grey() {
        let d = tempfile::tempdir().unwrap();
        let good = d.path().join("train/good");
        std::fs::create_dir_all(&good).unwrap();
        for i in 0..5 {
            image::GrayImage::new(8, 8).save(good.join(format!("{i:03}.png"))).unwrap();
        }
        image::GrayAlphaImage::new(8, 8).save(good.join("005.png")).unwrap();
        assert_eq!(training_colour(d.path()), InputColour::Grey);
        image::RgbImage::new(8, 8).save(good.join("002.png")).unwrap();
        assert_eq!(training_colour(d.path()), InputColour::Rgb);
        // The data set moved or was deleted since training: not known.
        assert_eq!(training_colour(&d.path().join("gone")), InputColour::Unknown);
        std::fs::write(good.join("002.png"), b"not a png").unwrap();
        assert_eq!(training_colour(d.path()), InputColour::Unknown);
    }

    #[test]
    fn training_colour_checks_at_most_the_sample_spread_over_the_list() {
        let d = tempfile::tempdir().unwrap();
        let good = d.path().join("train/good");
        std::fs::create_dir_all(&good).unwrap();
        let n = COLOUR_SAMPLE * 2;
        for i in 0..n {
            image::GrayImage::new(4, 4).save(good.join(format!("{i:04}.png"))).unwrap();
        }
        // Odd indices are not in the spread of 64 over 128: a colour image there is not seen.
        image::RgbImage::new(4, 4).save(good.join("0001.png")).unwrap();
        assert_eq!(training_colour(d.path()), InputColour::Grey);
        // The last image of the list is, with every other even index.
        image::RgbImage::new(4, 4).save(good.join(format!("{:04}.png", n - 2))).unwrap();
        assert_eq!(training_colour(d.path()), InputColour::Rgb);
    }
}
