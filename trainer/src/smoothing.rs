//! Which map smoothing, image-score rule and test-time augmentation suit a part. All of them act
//! after the network's weights (DESIGN.md §3), and the best choice differs between data sets
//! (RESULTS.md, "The map smoothing per data set": thin cracks want the raw map, large defects a
//! wide Gaussian; sessions 28-30: the line score and TTA for KolektorSDD's cracks, not for
//! bottle's blobs), so `trainer smoothing` scores every combination of a grid on labelled test
//! images from one forward pass per image and TTA pass; the chosen row is then set with
//! `trainer recalibrate`.

use std::path::Path;

use runtime::dataset::test_samples;
use runtime::evaluation::{mask_for_metrics, Accumulator, MetricReport};
use runtime::preprocess::{load_image, to_model_input};
use tch::{Device, Kind, Tensor};

use crate::checkpoint::load_model;
use crate::config::{Tta, TtaReduce};
use crate::model::{combine_passes, floor::remove_floor, image_score, line_score::line_image_score, smooth::smooth};

/// How a row turns the anomaly map into the image score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreRule {
    /// Max of the `k x k` px mean-filtered map (`model.score_filter_px`, odd).
    Filter(i64),
    /// Max over 16 orientations of the map's mean along a line this many px long
    /// (`model.score_line_px`, >= 3).
    Line(i64),
}

impl std::fmt::Display for ScoreRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Filter(k) => write!(f, "filter {k} px"),
            Self::Line(l) => write!(f, "line {l} px"),
        }
    }
}

/// The grid `trainer smoothing` compares: every combination of its lists.
#[derive(Debug, Clone)]
pub struct SmoothingGrid {
    /// Test-time augmentation modes (`model.tta`).
    pub ttas: Vec<Tta>,
    /// How the passes of a TTA mode are combined (`model.tta_reduce`); one row only for `none`.
    pub reduces: Vec<TtaReduce>,
    /// Standard deviations of the map's Gaussian, px of the model input (0 = raw map).
    pub sigmas: Vec<f64>,
    /// Quantiles of the map's floor removed per image (`model.map_floor_quantile`; 0 = off):
    /// they change the pixel metrics only, as the image score reads the map before the floor.
    pub floors: Vec<f64>,
    /// Sides of the image score's mean filter, px (odd).
    pub filters: Vec<i64>,
    /// Lengths of the line-mean image score's line, px (>= 3).
    pub lines: Vec<i64>,
}

impl SmoothingGrid {
    /// The map smoothings x score filters of one pass, the map's floor off (the grid before
    /// TTA, lines and floors existed).
    pub fn sigmas_and_filters(sigmas: &[f64], filters: &[i64]) -> Self {
        Self { ttas: vec![Tta::None], reduces: vec![TtaReduce::Mean], sigmas: sigmas.to_vec(), floors: vec![0.0], filters: filters.to_vec(), lines: Vec::new() }
    }

    /// The grid with each value once (the first of repeats kept in place): a value given twice
    /// would give its rows twice.
    pub fn without_repeats(self) -> Self {
        fn first_of_each<T: PartialEq>(values: Vec<T>) -> Vec<T> {
            let mut out: Vec<T> = Vec::with_capacity(values.len());
            for v in values {
                if !out.contains(&v) {
                    out.push(v);
                }
            }
            out
        }
        Self {
            ttas: first_of_each(self.ttas),
            reduces: first_of_each(self.reduces),
            sigmas: first_of_each(self.sigmas),
            floors: first_of_each(self.floors),
            filters: first_of_each(self.filters),
            lines: first_of_each(self.lines),
        }
    }

    /// The score rules of each row: the filters, then the lines.
    pub fn rules(&self) -> Vec<ScoreRule> {
        self.filters.iter().map(|&k| ScoreRule::Filter(k)).chain(self.lines.iter().map(|&l| ScoreRule::Line(l))).collect()
    }

    /// The (TTA, reduce) pairs of the rows: one pair for a one-pass mode.
    fn modes(&self) -> Vec<(Tta, TtaReduce)> {
        let mut out = Vec::new();
        for &t in &self.ttas {
            for &r in if t.passes() == 1 { &self.reduces[..1] } else { &self.reduces[..] } {
                out.push((t, r));
            }
        }
        out
    }
}

/// Metrics of one row of the grid.
#[derive(Debug, Clone)]
pub struct SmoothingRow {
    /// Test-time augmentation of the map.
    pub tta: Tta,
    /// How its passes are combined (meaningless for `Tta::None`: the grid's first).
    pub tta_reduce: TtaReduce,
    /// Standard deviation of the map's Gaussian, px of the model input (0 = raw map).
    pub map_sigma_px: f64,
    /// Quantile of the map's floor removed per image (0 = off).
    pub map_floor_quantile: f64,
    /// The image score's rule.
    pub score: ScoreRule,
    /// Image metrics with this rule; pixel metrics of the map of this TTA, reduce, sigma and
    /// floor (the rule does not change the map; the floor does not change the score).
    pub report: MetricReport,
}

/// The network's raw map of every TTA pass the grid needs, each mirrored back, per test image:
/// `passes[i]` is the map of [`Tta::FlipVflip`]'s pass i (0 = the image itself) or `None`.
struct PassMaps {
    passes: Vec<Option<Tensor>>,
    defective: Option<bool>,
    mask: Option<Vec<u8>>,
}

/// Index of each pass of `tta` among [`Tta::FlipVflip`]'s four (which hold every mode's passes).
fn pass_indices(tta: Tta) -> Vec<usize> {
    let all = Tta::FlipVflip.flip_dims();
    tta.flip_dims().iter().map(|d| all.iter().position(|a| a == d).expect("every mode's passes are among flip-vflip's")).collect()
}

/// The map of `tta` combined by `reduce` from the stored passes [1, 1, H, W], as
/// [`crate::model::FfcAd::forward_t`] computes it (before the smoothing).
fn combine(maps: &PassMaps, tta: Tta, reduce: TtaReduce) -> Tensor {
    let passes: Vec<Tensor> = pass_indices(tta).into_iter().map(|i| maps.passes[i].as_ref().expect("the pass was computed").shallow_clone()).collect();
    combine_passes(&passes, reduce)
}

/// Evaluates the checkpoint `weights` on `<data_root>/test` for every row of `grid` (each
/// value once: [`SmoothingGrid::without_repeats`]), in the order TTA, reduce, sigma, floor,
/// then rule (filters before lines). The network runs once per image
/// and TTA pass; the raw maps (mirrored back) are then combined per TTA mode and reduce, smoothed
/// per sigma ([`smooth`]), scored per rule ([`image_score`], [`line_image_score`]) and their
/// floor removed per floor quantile for the pixel metrics ([`remove_floor`]), exactly as a model
/// recalibrated to that row computes them.
///
/// Errors: an empty list in the grid; a line of 0; a sigma, floor, filter or line outside what
/// `model.map_sigma_px` / `model.map_floor_quantile` / `model.score_filter_px` / `model.score_line_px` accept (named as in the
/// config file); an unreadable checkpoint, test image or mask (named); a test set without
/// labelled images.
pub fn compare_smoothing(weights: &Path, data_root: &Path, grid: &SmoothingGrid, device: Device, progress: bool) -> anyhow::Result<Vec<SmoothingRow>> {
    let grid = &grid.clone().without_repeats();
    anyhow::ensure!(!grid.sigmas.is_empty(), "give at least one map sigma");
    anyhow::ensure!(!grid.floors.is_empty(), "give at least one map floor quantile (0 = off)");
    anyhow::ensure!(!grid.filters.is_empty() || !grid.lines.is_empty(), "give at least one score filter or score line");
    anyhow::ensure!(!grid.ttas.is_empty() && !grid.reduces.is_empty(), "give at least one TTA mode and one way to combine its passes");
    anyhow::ensure!(!grid.lines.contains(&0), "score line 0 is the filter rule: give lines of 3 px or more, and filters with --score-filters");
    let (_vs, mut model, info) = load_model(weights, device)?;
    let flags = [("model.map_sigma_px", "--sigmas", true), ("model.map_floor_quantile", "--map-floors", true), ("model.score_filter_px", "--score-filters", true), ("model.score_line_px", "--score-lines", true)];
    for &s in &grid.sigmas {
        for rule in grid.rules() {
            let mut m = info.config.model.clone();
            m.map_sigma_px = s;
            match rule {
                ScoreRule::Filter(k) => (m.score_filter_px, m.score_line_px) = (k, 0),
                ScoreRule::Line(l) => m.score_line_px = l,
            }
            m.validate().map_err(|e| crate::commands::name_the_flag(e, &flags))?;
        }
    }
    for &q in &grid.floors {
        let mut m = info.config.model.clone();
        m.map_floor_quantile = q;
        m.validate().map_err(|e| crate::commands::name_the_flag(e, &flags))?;
    }
    // forward gives one pass's raw map; TTA, smoothing, score and floor per row below.
    (model.config.map_sigma_px, model.config.map_floor_quantile, model.config.tta) = (0.0, 0.0, Tta::None);
    let all = Tta::FlipVflip.flip_dims();
    let mut needed = vec![false; all.len()];
    grid.ttas.iter().flat_map(|&t| pass_indices(t)).for_each(|i| needed[i] = true);
    let samples = test_samples(data_root)?;
    let (w, h) = (model.config.input_width, model.config.input_height);
    let n_passes = needed.iter().filter(|&&n| n).count();
    tracing::info!("scoring {} test images of {} at {h}x{w} px (HxW), {n_passes} network passes each, for {} TTA rows x {} map sigmas x {} score rules", samples.len(), data_root.display(), grid.modes().len(), grid.sigmas.len(), grid.rules().len());
    let bar = runtime::progress::bar(samples.len() as u64, "maps", progress);
    let mut stored = Vec::with_capacity(samples.len());
    for sample in &samples {
        let img = load_image(&sample.image, info.config.bit_depth)?;
        let input = to_model_input(&img, None, w as u32, h as u32);
        let mask = mask_for_metrics(sample, Some((img.width(), img.height())), None, w as u32, h as u32);
        let x = Tensor::from_slice(&input.chw).view([1, 3, h, w]).to_device(device);
        let passes = all
            .iter()
            .zip(&needed)
            .map(|(d, &need)| {
                need.then(|| {
                    tch::no_grad(|| match d.is_empty() {
                        true => model.forward_t(&x, false).anomaly_map,
                        false => model.forward_t(&x.flip(d.as_slice()), false).anomaly_map.flip(d.as_slice()),
                    })
                })
            })
            .collect();
        stored.push(PassMaps { passes, defective: sample.is_defective, mask });
        bar.inc(1);
    }
    bar.finish_and_clear();

    let mut rows = Vec::new();
    for (tta, reduce) in grid.modes() {
        let combined: Vec<Tensor> = stored.iter().map(|m| tch::no_grad(|| combine(m, tta, reduce))).collect();
        for &sigma in &grid.sigmas {
            let smoothed: Vec<Tensor> = combined.iter().map(|m| tch::no_grad(|| smooth(m, sigma))).collect();
            // Pixel metrics once per map and floor (they are the costly part); image metrics per rule.
            let mut pixel_reports = Vec::with_capacity(grid.floors.len());
            for &q in &grid.floors {
                let mut pixels = Accumulator::new(w as usize, h as usize);
                for (m, map) in stored.iter().zip(&smoothed) {
                    if let (Some(d), Some(mask)) = (m.defective, &m.mask) {
                        let floored = tch::no_grad(|| remove_floor(map, q));
                        let flat = Vec::<f32>::try_from(&floored.to_device(Device::Cpu).to_kind(Kind::Float).view([-1]))?;
                        pixels.add(0.0, d, Some((flat.as_slice(), mask.as_slice())));
                    }
                }
                pixel_reports.push(pixels.report(None));
            }
            let mut image_reports = Vec::new();
            for rule in grid.rules() {
                let mut images = Accumulator::new(w as usize, h as usize);
                for (m, map) in stored.iter().zip(&smoothed) {
                    if let Some(d) = m.defective {
                        let score = tch::no_grad(|| match rule {
                            ScoreRule::Filter(k) => image_score(map, k),
                            ScoreRule::Line(l) => line_image_score(map, l),
                        });
                        images.add(score.double_value(&[0]) as f32, d, None);
                    }
                }
                image_reports.push(images.report(None).ok_or_else(|| anyhow::anyhow!("{}: no labelled test images (expected test/good and test/<defect> folders)", data_root.display()))?);
            }
            for (&q, pixel_report) in grid.floors.iter().zip(&pixel_reports) {
                for (rule, image_report) in grid.rules().into_iter().zip(&image_reports) {
                    let mut report = image_report.clone();
                    if let Some(p) = pixel_report {
                        (report.pixel_auroc, report.pixel_ap, report.aupro) = (p.pixel_auroc, p.pixel_ap, p.aupro);
                    }
                    rows.push(SmoothingRow { tta, tta_reduce: reduce, map_sigma_px: sigma, map_floor_quantile: q, score: rule, report });
                }
            }
        }
    }
    Ok(rows)
}
