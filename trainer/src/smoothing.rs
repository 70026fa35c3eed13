//! Which map smoothing and image-score filter suit a part. Both act after the network (DESIGN.md
//! §3), and the best pair differs between data sets (RESULTS.md, "The map smoothing per data
//! set": thin cracks want the raw map, large defects a wide Gaussian), so `trainer smoothing`
//! scores every pair of a grid on labelled test images from one forward pass per image; the
//! chosen pair is then set with `trainer recalibrate`.

use std::path::Path;

use runtime::dataset::test_samples;
use runtime::evaluation::{sample_mask, Accumulator, MetricReport};
use runtime::preprocess::{load_image, to_model_input};
use tch::{Device, Kind, Tensor};

use crate::checkpoint::load_model;
use crate::model::{image_score, smooth::smooth};

/// Metrics of one (map sigma, score filter) pair.
#[derive(Debug, Clone)]
pub struct SmoothingRow {
    /// Standard deviation of the map's Gaussian, px of the model input (0 = raw map).
    pub map_sigma_px: f64,
    /// Side of the mean filter before the map's max is taken as the image score, px (odd).
    pub score_filter_px: i64,
    /// Image metrics with this filter; pixel metrics of the map smoothed with this sigma (the
    /// filter does not change the map).
    pub report: MetricReport,
}

/// Evaluates the checkpoint `weights` on `<data_root>/test` for every pair of `sigmas` x
/// `filters` (rows in that order: sigma-major). The network runs once per image; its raw map
/// [1, 1, H, W] is then smoothed per sigma ([`smooth`]) and scored per filter
/// ([`image_score`]), exactly as a model recalibrated to that pair computes them.
///
/// Errors: an empty grid; a sigma or filter outside what `model.map_sigma_px` /
/// `model.score_filter_px` accept (named as in the config file); an unreadable checkpoint,
/// test image or mask (named); a test set without labelled images.
pub fn compare_smoothing(weights: &Path, data_root: &Path, sigmas: &[f64], filters: &[i64], device: Device, progress: bool) -> anyhow::Result<Vec<SmoothingRow>> {
    anyhow::ensure!(!sigmas.is_empty() && !filters.is_empty(), "give at least one map sigma and one score filter");
    let (_vs, mut model, info) = load_model(weights, device)?;
    for &s in sigmas {
        for &k in filters {
            let mut m = info.config.model.clone();
            (m.map_sigma_px, m.score_filter_px) = (s, k);
            m.validate()?;
        }
    }
    model.config.map_sigma_px = 0.0; // forward gives the raw map; smoothing per sigma below
    let samples = test_samples(data_root)?;
    let (w, h) = (model.config.input_width, model.config.input_height);
    tracing::info!("scoring {} test images of {} at {h}x{w} px (HxW) for {} map sigmas x {} score filters", samples.len(), data_root.display(), sigmas.len(), filters.len());
    let bar = runtime::progress::bar(samples.len() as u64, "maps", progress);
    let mut raw = Vec::with_capacity(samples.len());
    for sample in &samples {
        let img = load_image(&sample.image, info.config.bit_depth)?;
        let input = to_model_input(&img, None, w as u32, h as u32);
        let mask = sample_mask(sample, w as u32, h as u32)?;
        let x = Tensor::from_slice(&input.chw).view([1, 3, h, w]).to_device(device);
        let map = tch::no_grad(|| model.forward_t(&x, false).anomaly_map);
        raw.push((map, sample.is_defective, mask));
        bar.inc(1);
    }
    bar.finish_and_clear();

    let mut rows = Vec::with_capacity(sigmas.len() * filters.len());
    for &sigma in sigmas {
        let smoothed: Vec<Tensor> = raw.iter().map(|(m, _, _)| tch::no_grad(|| smooth(m, sigma))).collect();
        // Pixel metrics once per sigma (they are the costly part); image metrics per filter.
        let mut pixels = Accumulator::new(w as usize, h as usize);
        for ((_, defective, mask), map) in raw.iter().zip(&smoothed) {
            if let (Some(d), Some(mask)) = (defective, mask) {
                let flat = Vec::<f32>::try_from(&map.to_device(Device::Cpu).to_kind(Kind::Float).view([-1]))?;
                pixels.add(0.0, *d, Some((flat.as_slice(), mask.as_slice())));
            }
        }
        let pixel_report = pixels.report(None);
        for &k in filters {
            let mut images = Accumulator::new(w as usize, h as usize);
            for ((_, defective, _), map) in raw.iter().zip(&smoothed) {
                if let Some(d) = defective {
                    images.add(tch::no_grad(|| image_score(map, k)).double_value(&[0]) as f32, *d, None);
                }
            }
            let mut report = images.report(None).ok_or_else(|| anyhow::anyhow!("{}: no labelled test images (expected test/good and test/<defect> folders)", data_root.display()))?;
            if let Some(p) = &pixel_report {
                (report.pixel_auroc, report.pixel_ap, report.aupro) = (p.pixel_auroc, p.pixel_ap, p.aupro);
            }
            rows.push(SmoothingRow { map_sigma_px: sigma, score_filter_px: k, report });
        }
    }
    Ok(rows)
}
