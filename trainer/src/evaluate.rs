//! Evaluation of a checkpoint with tch on a test split, and the export of a checkpoint with a
//! parity check of the written file through the runtime's own tract path.

use std::path::{Path, PathBuf};

use anyhow::Context;
use runtime::dataset::test_samples;
use runtime::infer::AnomalyModel;
use runtime::metadata::{ModelMetadata, FORMAT_VERSION};
use runtime::metrics;
use runtime::preprocess::{load_image, load_mask, to_model_input};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::model::{FfcAd, NORM_MEAN, NORM_STD};
use crate::train::load_model;

/// Test-split metrics computed with the tch model.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub images: usize,
    pub defective: usize,
    pub image_auroc: Option<f64>,
    pub pixel_auroc: Option<f64>,
    pub pixel_ap: Option<f64>,
    /// Per-region overlap up to FPR 0.3, normalised (MVTec AD).
    pub aupro: Option<f64>,
    pub image_f1_max: Option<f64>,
}

/// Anomaly maps [N, H*W] and scores of one batch of planar inputs, in eval mode.
pub fn forward_maps(model: &FfcAd, inputs: &[Vec<f32>], device: Device) -> (Vec<Vec<f32>>, Vec<f32>) {
    let _g = tch::no_grad_guard();
    let (h, w) = (model.config.input_height, model.config.input_width);
    let flat: Vec<f32> = inputs.concat();
    let x = Tensor::from_slice(&flat).view([inputs.len() as i64, 3, h, w]).to_device(device);
    let out = model.forward_t(&x, false);
    let scores = Vec::<f32>::try_from(&model.image_score(&out.anomaly_map).to_device(Device::Cpu).to_kind(Kind::Float)).expect("scores");
    let maps = out.anomaly_map.to_device(Device::Cpu).to_kind(Kind::Float).view([inputs.len() as i64, h * w]);
    let maps = (0..inputs.len() as i64).map(|i| Vec::<f32>::try_from(&maps.get(i)).expect("map")).collect();
    (maps, scores)
}

/// Evaluates `weights` on `<data_root>/test` with image and pixel metrics.
pub fn evaluate(weights: &Path, data_root: &Path, device: Device, progress: bool) -> anyhow::Result<EvalReport> {
    let (_vs, model, _info) = load_model(weights, device)?;
    let samples = test_samples(data_root)?;
    let (w, h) = (model.config.input_width as u32, model.config.input_height as u32);
    tracing::info!("evaluating {} on {} test images of {} at {w}x{h} px", weights.display(), samples.len(), data_root.display());
    let bar = runtime::progress::bar(samples.len() as u64, "eval", progress);
    let (mut s, mut l, mut ps, mut pl) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for sample in &samples {
        let img = load_image(&sample.image)?;
        let input = to_model_input(&img, None, w, h);
        let (maps, scores) = forward_maps(&model, &[input.chw], device);
        let defective = sample.is_defective.unwrap_or(false);
        s.push(scores[0]);
        l.push(defective);
        let mask = match (&sample.mask, defective) {
            (_, false) => Some(vec![0u8; (w * h) as usize]),
            (Some(m), true) => Some(load_mask(m, w, h)?),
            (None, true) => None,
        };
        if let Some(mask) = mask {
            ps.extend_from_slice(&maps[0]);
            pl.extend(mask.iter().map(|&v| v > 0));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(EvalReport {
        images: s.len(),
        defective: l.iter().filter(|&&d| d).count(),
        image_auroc: metrics::auroc(&s, &l),
        pixel_auroc: metrics::auroc(&ps, &pl),
        pixel_ap: metrics::average_precision(&ps, &pl),
        aupro: {
            let n = (w * h) as usize;
            let masks: Vec<u8> = pl.iter().map(|&l| u8::from(l)).collect();
            let maps: Vec<&[f32]> = ps.chunks_exact(n).collect();
            let masks: Vec<&[u8]> = masks.chunks_exact(n).collect();
            metrics::aupro(&maps, &masks, w as usize, h as usize, 0.3)
        },
        image_f1_max: metrics::f1_max(&s, &l).map(|(f, _)| f),
    })
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

/// Exports checkpoint `weights` to the ONNX file `out` (f32), then loads the file with the
/// runtime (tract) and compares it with the tch model on up to `parity_images` held-out good
/// images.
pub fn export_checkpoint(weights: &Path, out: &Path, metrics: serde_json::Value, parity_images: usize) -> anyhow::Result<ExportReport> {
    let (vs, model, info) = load_model(weights, Device::Cpu)?;
    let cfg = &info.config.model;
    let metadata = ModelMetadata {
        format_version: FORMAT_VERSION,
        category: info.category.clone(),
        input_height: cfg.input_height as u32,
        input_width: cfg.input_width as u32,
        norm_mean: NORM_MEAN,
        norm_std: NORM_STD,
        score_filter_px: cfg.score_filter_px as u32,
        threshold: info.threshold,
        threshold_calibration: info.calibration.clone(),
        good_score_stats: info.good_score_stats.clone(),
        train_config: serde_json::to_value(&info.config)?,
        metrics,
        git_revision: git_revision(),
        precision: "f32".into(),
    };
    let exported = crate::export::build(&model, &metadata);
    crate::export::write(&exported.proto, out)?;
    let rt = AnomalyModel::load(out).with_context(|| format!("the exported file {} does not load in tract", out.display()))?;
    let (w, h) = rt.input_size();
    let (mut dmap, mut dscore, mut n) = (0.0f32, 0.0f32, 0);
    for p in info.holdout.iter().take(parity_images) {
        let input = to_model_input(&load_image(p)?, None, w, h).chw;
        let (maps, scores) = forward_maps(&model, std::slice::from_ref(&input), Device::Cpu);
        let r = rt.infer(&input)?;
        dmap = maps[0].iter().zip(&r.anomaly_map).fold(dmap, |m, (a, b)| m.max((a - b).abs()));
        dscore = dscore.max((scores[0] - r.score).abs());
        n += 1;
    }
    Ok(ExportReport {
        path: out.into(),
        bytes: std::fs::metadata(out)?.len(),
        parameters: crate::model::parameter_count(&vs),
        macs: exported.macs,
        op_types: exported.op_types,
        parity_max_abs_map: dmap,
        parity_max_abs_score: dscore,
        parity_images: n,
    })
}
