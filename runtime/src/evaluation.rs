//! Accumulates results on labelled images and computes the metric report of DESIGN.md §4.
//! The trainer's evaluation and the runtime's `inspect` use this same code.

use serde::Serialize;

use crate::dataset::Sample;
use crate::metrics;
use crate::preprocess::{load_mask, PreprocessError, Roi};

/// Metrics over the labelled images of a run.
#[derive(Debug, Clone, Serialize)]
pub struct MetricReport {
    pub labelled_images: usize,
    pub defective_images: usize,
    pub image_auroc: Option<f64>,
    pub pixel_auroc: Option<f64>,
    pub pixel_ap: Option<f64>,
    /// Per-region overlap integrated to FPR 0.3, normalised (MVTec AD definition).
    pub aupro: Option<f64>,
    /// Best image-level F1 over all thresholds; `None` unless both good and defective images are
    /// labelled (with defective images only it would be 1 at any threshold under the lowest score).
    pub image_f1_max: Option<f64>,
    /// F1-optimal threshold for the runtime's rule (`score > t` is defective): midway between the
    /// lowest score that F1-max calls defective and the next lower score (that lower score when
    /// the two are adjacent floats). `None` when [`Self::image_f1_max`] is, and when the best F1
    /// comes from rejecting every image (F1 = 2P / (2P + N): the scores separate nothing better).
    pub image_f1_threshold: Option<f32>,
    /// Precision, recall and F1 at the deployed threshold (image level), when one is given and
    /// at least one image is defective (recall is 0/0 otherwise).
    pub at_threshold: Option<PrecisionRecall>,
    /// The defective images whose mask is known, binned by defect area (mask px at the model's
    /// input size, after the nearest-neighbour resize of [`crate::preprocess::load_mask`]); empty bins left out.
    /// Says which defect sizes a model finds: the demo's pits of 4 and 6 px at the input score like
    /// good parts while most larger ones are found (RESULTS.md, session 39).
    pub by_defect_area: Vec<DefectAreaBin>,
}

impl MetricReport {
    /// Why cells of the report read n/a, one sentence each (empty when none does): one class
    /// only, a best F1 that only rejecting every image reaches, masks that leave no good pixel or
    /// none usable. `runtime inspect` and `trainer eval` print them under their tables.
    pub fn notes(&self) -> Vec<String> {
        let good = self.labelled_images - self.defective_images;
        let mut notes = Vec::new();
        if good == 0 || self.defective_images == 0 {
            notes.push(format!("{good} good and {} defective images: image AUROC and F1-max need both", self.defective_images));
        } else if let (Some(f1), None) = (self.image_f1_max, self.image_f1_threshold) {
            notes.push(format!(
                "the best F1 ({f1:.4}) is that of rejecting every image ({good} good, {} defective): no threshold between the scores does better, so no F1-optimal threshold is given",
                self.defective_images
            ));
        }
        if self.defective_images > 0 && self.pixel_auroc.is_none() {
            notes.push(if self.by_defect_area.is_empty() {
                "no defective image has a usable mask: no pixel metrics".to_string()
            } else {
                "the usable masks leave no good pixel (every pixel of every masked image is marked defective): no pixel AUROC, AP or AUPRO".to_string()
            });
        }
        notes
    }
}

/// Lower edges, in px at the model's input, of the defect-area bins of
/// [`MetricReport::by_defect_area`]: [0, 16), [16, 64), [64, 256), [256, 1024), [1024, inf).
/// 16 px is a 4x4 spot; a mask that vanishes in the resize (0 px) falls in the first bin.
pub const DEFECT_AREA_EDGES_PX: [usize; 5] = [0, 16, 64, 256, 1024];

/// Defective images of one defect-area range and how the model scored them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DefectAreaBin {
    /// Smallest defect area of the bin, px at the model's input (inclusive).
    pub min_px: usize,
    /// End of the bin, px (exclusive); `None` for the last, open bin.
    pub max_px: Option<usize>,
    /// Defective images in the bin.
    pub images: usize,
    /// Of them, the ones with `score > threshold` (rejected), when a threshold is given.
    pub rejected: Option<usize>,
    /// Image AUROC of the bin's defective images against all good images (`None` without good
    /// images): the chance that one of them outscores a good part.
    pub auroc_against_good: Option<f64>,
}

/// Image-level precision, recall and F1 at a threshold.
#[derive(Debug, Clone, Serialize)]
pub struct PrecisionRecall {
    pub threshold: f32,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// Scores, labels, anomaly maps and masks of labelled images, all maps `width x height` px.
#[derive(Debug, Default)]
pub struct Accumulator {
    width: usize,
    height: usize,
    image_scores: Vec<f32>,
    image_labels: Vec<bool>,
    pixel_scores: Vec<f32>,
    pixel_masks: Vec<u8>,
    /// Per image: the mask's area in px for a defective image with a known mask, else `None`.
    defect_areas: Vec<Option<usize>>,
}

/// The mask of `sample` for the pixel metrics and the defect-area table
/// ([`sample_mask`]), or `None` with a warning naming the file when a defective
/// image's mask is missing or unusable (the image then leaves both); a blank mask of a defective
/// image is returned with a warning (it counts in the 0-15 px bin). `runtime inspect`, `trainer
/// eval` and `trainer smoothing` all take masks through here, so the same data gives the same table.
pub fn mask_for_metrics(sample: &Sample, frame: Option<(u32, u32)>, roi: Option<Roi>, width: u32, height: u32) -> Option<Vec<u8>> {
    let mask = sample_mask(sample, frame, roi, width, height)
        .inspect_err(|e| tracing::warn!("{e}: the image leaves the pixel metrics and the defect-area table"))
        .ok()
        .flatten();
    if let Some(problem) = mask_problem(sample, mask.as_deref(), frame, roi, width, height) {
        tracing::warn!("{problem}");
    }
    mask
}

/// What is wrong with the mask `mask` (at the model's input) of a defective `sample`, if anything
/// a user should hear of: no mask file, a blank mask, a defect too small to survive the resize
/// to the model's input (told apart by reading the mask at its own size), a mask that marks
/// every pixel.
fn mask_problem(sample: &Sample, mask: Option<&[u8]>, frame: Option<(u32, u32)>, roi: Option<Roi>, width: u32, height: u32) -> Option<String> {
    if sample.is_defective != Some(true) {
        return None;
    }
    let inside = if roi.is_some() { ", inside the ROI" } else { "" };
    match (mask, &sample.mask) {
        (None, None) => Some(format!("defective image {} has no mask file (ground_truth/<defect>/<stem>_mask.png): it leaves the pixel metrics and the defect-area table", sample.image.display())),
        (Some(m), Some(path)) if m.iter().all(|&v| v == 0) => {
            let own_size = frame.map(|(w, h)| roi.map_or((w, h), |r| (r.width, r.height)));
            let marked = own_size.and_then(|(w, h)| load_mask(path, frame, roi, w, h).ok()).map_or(0, |full| full.iter().filter(|&&v| v != 0).count());
            Some(if marked > 0 {
                format!("mask {}: its defect ({marked} px{inside}) vanishes at the model's input ({width}x{height} px): the model cannot resolve it; the image counts in the smallest defect-area bin", path.display())
            } else {
                format!("mask {} marks no pixel of its defective image at the model's input ({width}x{height} px{inside}): a blank or mislabelled mask?", path.display())
            })
        }
        (Some(m), Some(path)) if m.iter().all(|&v| v != 0) => Some(format!("mask {} marks every pixel of its defective image at the model's input{inside}: an inverted mask? (no good pixel of it counts in the pixel metrics)", path.display())),
        _ => None,
    }
}

/// Ground-truth mask of `sample` at `width x height` (0/1, row-major): all zeros for a good image,
/// the resized mask for a defective one, `None` for a defective image without a mask file. For a
/// frame of `frame` = (width, height) px inspected through `roi` ([`load_mask`]: the mask
/// cropped to the ROI; a mask of another size than its frame is an error).
fn sample_mask(sample: &Sample, frame: Option<(u32, u32)>, roi: Option<Roi>, width: u32, height: u32) -> Result<Option<Vec<u8>>, PreprocessError> {
    match (&sample.mask, sample.is_defective) {
        (_, Some(false)) => Ok(Some(vec![0; (width * height) as usize])),
        (Some(m), Some(true)) => load_mask(m, frame, roi, width, height).map(Some),
        _ => Ok(None),
    }
}

impl Accumulator {
    /// An empty accumulator for maps of `width x height` px.
    pub fn new(width: usize, height: usize) -> Self {
        Self { width, height, ..Default::default() }
    }

    /// Adds one labelled image: its score, label, and (when its mask is known) its anomaly map
    /// with the 0/1 mask of the same size for the pixel metrics.
    pub fn add(&mut self, score: f32, defective: bool, map_and_mask: Option<(&[f32], &[u8])>) {
        self.image_scores.push(score);
        self.image_labels.push(defective);
        self.defect_areas.push(map_and_mask.filter(|_| defective).map(|(_, mask)| mask.iter().filter(|&&m| m > 0).count()));
        if let Some((map, mask)) = map_and_mask {
            assert_eq!((map.len(), mask.len()), (self.width * self.height, self.width * self.height), "map/mask size");
            self.pixel_scores.extend_from_slice(map);
            self.pixel_masks.extend_from_slice(mask);
        }
    }

    /// The report, or `None` when no labelled image was added.
    pub fn report(&self, threshold: Option<f32>) -> Option<MetricReport> {
        if self.image_labels.is_empty() {
            return None;
        }
        let pixel_labels: Vec<bool> = self.pixel_masks.iter().map(|&m| m > 0).collect();
        let n = (self.width * self.height).max(1);
        let maps: Vec<&[f32]> = self.pixel_scores.chunks_exact(n).collect();
        let masks: Vec<&[u8]> = self.pixel_masks.chunks_exact(n).collect();
        let defective_images = self.image_labels.iter().filter(|&&l| l).count();
        // Without a good image every threshold under the lowest score gives F1 = 1: no number.
        let f1 = if defective_images < self.image_labels.len() { metrics::f1_max(&self.image_scores, &self.image_labels) } else { None };
        Some(MetricReport {
            labelled_images: self.image_labels.len(),
            defective_images,
            image_auroc: metrics::auroc(&self.image_scores, &self.image_labels),
            pixel_auroc: metrics::auroc(&self.pixel_scores, &pixel_labels),
            pixel_ap: metrics::average_precision(&self.pixel_scores, &pixel_labels),
            aupro: metrics::aupro(&maps, &masks, self.width, self.height, 0.3),
            image_f1_max: f1.map(|(f, _)| f),
            image_f1_threshold: f1.and_then(|(_, t)| {
                // No score under the best cut: it rejects every image, which is no threshold to deploy.
                let below = self.image_scores.iter().copied().filter(|&s| s < t).fold(f32::NEG_INFINITY, f32::max);
                let mid = (t + below) / 2.0;
                // Adjacent floats (a saturated sigmoid) round the midpoint up to `t`, which
                // `score > t` would pass: the lower score is then the threshold.
                below.is_finite().then_some(if mid < t { mid } else { below })
            }),
            // Recall is 0/0 without a defective image: no numbers rather than zeros.
            at_threshold: threshold.filter(|_| defective_images > 0).map(|t| {
                let (precision, recall, f1) = metrics::precision_recall_f1(&self.image_scores, &self.image_labels, t);
                PrecisionRecall { threshold: t, precision, recall, f1 }
            }),
            by_defect_area: self.by_defect_area(threshold),
        })
    }

    /// The bins of [`MetricReport::by_defect_area`].
    fn by_defect_area(&self, threshold: Option<f32>) -> Vec<DefectAreaBin> {
        let good: Vec<f32> = self.image_scores.iter().zip(&self.image_labels).filter(|(_, &l)| !l).map(|(&s, _)| s).collect();
        let mut bins = Vec::new();
        for (i, &min_px) in DEFECT_AREA_EDGES_PX.iter().enumerate() {
            let max_px = DEFECT_AREA_EDGES_PX.get(i + 1).copied();
            let scores: Vec<f32> = self.image_scores.iter().zip(&self.defect_areas).filter(|(_, a)| a.is_some_and(|a| a >= min_px && max_px.is_none_or(|m| a < m))).map(|(&s, _)| s).collect();
            if scores.is_empty() {
                continue;
            }
            let labels: Vec<bool> = scores.iter().map(|_| true).chain(good.iter().map(|_| false)).collect();
            let all: Vec<f32> = scores.iter().chain(&good).copied().collect();
            bins.push(DefectAreaBin {
                min_px,
                max_px,
                images: scores.len(),
                rejected: threshold.map(|t| scores.iter().filter(|&&s| s > t).count()),
                auroc_against_good: metrics::auroc(&all, &labels),
            });
        }
        bins
    }
}

/// The defect-area table of a report as Markdown, printed by `runtime inspect` and `trainer
/// eval`: which defect sizes the model finds. AUROC to 4 decimals, "n/a" where a bin has no
/// number; a closing line counts the `defective_images` that are in no bin (no usable mask).
/// Empty without defective images; one line when none of them has a usable mask.
pub fn render_defect_areas(bins: &[DefectAreaBin], defective_images: usize) -> String {
    if defective_images == 0 {
        return String::new();
    }
    if bins.is_empty() {
        return format!("defective images by defect area: none of the {defective_images} defective images has a usable mask (warnings name them)\n\n");
    }
    let mut out = String::from("defective images by defect area (mask px at the model's input):\n\n| defect area (px) | images | rejected | AUROC against the good images |\n|---|---|---|---|\n");
    for b in bins {
        let range = b.max_px.map_or(format!(">= {}", b.min_px), |m| format!("{}-{}", b.min_px, m - 1));
        let rejected = b.rejected.map_or("n/a".into(), |r| r.to_string());
        let auroc = b.auroc_against_good.map_or("n/a".into(), |a| format!("{a:.4}"));
        out.push_str(&format!("| {range} | {} | {rejected} | {auroc} |\n", b.images));
    }
    let unbinned = defective_images.saturating_sub(bins.iter().map(|b| b.images).sum());
    if unbinned > 0 {
        out.push_str(&format!("({unbinned} of the {defective_images} defective images are in no bin: no mask file, or one that could not be used; warnings name them)\n"));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_combines_image_and_pixel_metrics() {
        let mut acc = Accumulator::new(2, 1);
        acc.add(0.9, true, Some((&[0.8, 0.1], &[1, 0])));
        acc.add(0.2, false, Some((&[0.3, 0.2], &[0, 0])));
        acc.add(0.7, true, None);
        let r = acc.report(Some(0.5)).unwrap();
        assert_eq!((r.labelled_images, r.defective_images), (3, 2));
        assert_eq!(r.image_auroc, Some(1.0));
        assert!(r.notes().is_empty(), "{:?}", r.notes());
        // Pixels: positive 0.8 above all 3 negatives (0.1, 0.3, 0.2).
        assert_eq!(r.pixel_auroc, Some(1.0));
        let p = r.at_threshold.unwrap();
        assert_eq!((p.precision, p.recall), (1.0, 1.0));
        // Scores 0.9 (bad), 0.7 (bad), 0.2 (good): F1 = 1 when 0.7 and above are called
        // defective; for `score > t` the threshold sits midway to 0.2.
        assert_eq!((r.image_f1_max, r.image_f1_threshold), (Some(1.0), Some(0.45)));
        let at = acc.report(r.image_f1_threshold).unwrap().at_threshold.unwrap();
        assert_eq!(at.f1, 1.0);
        assert!(Accumulator::new(1, 1).report(None).is_none());
        // Good images only (a train/good folder): precision and recall are undefined, not 0.
        let mut good_only = Accumulator::new(2, 1);
        good_only.add(0.9, false, None);
        good_only.add(0.1, false, None);
        let r = good_only.report(Some(0.5)).unwrap();
        assert_eq!((r.defective_images, r.image_auroc, r.at_threshold.is_none()), (0, None, true));
        assert!(r.by_defect_area.is_empty());
        // The best F1 rejects every image (good 0.9 above both defective 0.8 and 0.7: F1 = 4/5 at
        // the lowest cut): F1-max is that, and no threshold is offered.
        let mut inverted = Accumulator::new(2, 1);
        for (s, defective) in [(0.9, false), (0.8, true), (0.7, true)] {
            inverted.add(s, defective, None);
        }
        let r = inverted.report(None).unwrap();
        assert_eq!((r.image_f1_max, r.image_f1_threshold), (Some(0.8), None));
        assert_eq!(r.notes(), ["the best F1 (0.8000) is that of rejecting every image (1 good, 2 defective): no threshold between the scores does better, so no F1-optimal threshold is given", "no defective image has a usable mask: no pixel metrics"]);
        // Adjacent floats: the midpoint would round up to the defective score and pass it.
        let (hi, lo) = (1.0f32, 1.0f32.next_down());
        let mut saturated = Accumulator::new(2, 1);
        saturated.add(hi, true, None);
        saturated.add(lo, false, None);
        let t = saturated.report(None).unwrap().image_f1_threshold.unwrap();
        assert!(hi > t && lo <= t, "{t}");
        // Defective images only: F1-max would be 1 at any low threshold, so none is given;
        // precision and recall at the deployed threshold stay (2 of 3 above 0.5).
        let mut defective_only = Accumulator::new(2, 1);
        for s in [0.9, 0.7, 0.2] {
            defective_only.add(s, true, None);
        }
        let r = defective_only.report(Some(0.5)).unwrap();
        assert_eq!((r.image_auroc, r.image_f1_max, r.image_f1_threshold), (None, None, None));
        assert_eq!(r.notes()[0], "0 good and 3 defective images: image AUROC and F1-max need both");
        let p = r.at_threshold.unwrap();
        assert_eq!((p.precision, p.recall), (1.0, 2.0 / 3.0));
        // The one mask marks every pixel: no good pixel, so no pixel metric (AP would read 1).
        let mut white = Accumulator::new(2, 1);
        white.add(0.9, true, Some((&[0.5, 0.4], &[1, 1])));
        white.add(0.1, false, None);
        let r = white.report(None).unwrap();
        assert_eq!((r.pixel_auroc, r.pixel_ap, r.aupro), (None, None, None));
        assert_eq!(r.notes(), ["the usable masks leave no good pixel (every pixel of every masked image is marked defective): no pixel AUROC, AP or AUPRO"]);
    }

    #[test]
    fn mask_problems_tell_a_blank_mask_from_a_defect_the_resize_loses_and_an_inverted_one() {
        let d = tempfile::tempdir().unwrap();
        let write = |name: &str, f: fn(u32, u32) -> u8| {
            let p = d.path().join(name);
            image::GrayImage::from_fn(16, 8, |x, y| image::Luma([f(x, y)])).save(&p).unwrap();
            Sample { image: d.path().join("x.png"), is_defective: Some(true), category: Some("pit".into()), mask: Some(p) }
        };
        let check = |s: &Sample| {
            let m = load_mask(s.mask.as_ref().unwrap(), Some((16, 8)), None, 4, 2).unwrap();
            mask_problem(s, Some(&m), Some((16, 8)), None, 4, 2)
        };
        // A 1 px pit at (9, 5): the 4x2 nearest resize samples (0|4|8|12, 0|4) and loses it.
        let pit = check(&write("pit.png", |x, y| if (x, y) == (9, 5) { 255 } else { 0 })).unwrap();
        assert!(pit.contains("its defect (1 px) vanishes at the model's input (4x2 px)"), "{pit}");
        let blank = check(&write("blank.png", |_, _| 0)).unwrap();
        assert!(blank.contains("marks no pixel") && blank.contains("blank or mislabelled"), "{blank}");
        let white = check(&write("white.png", |_, _| 255)).unwrap();
        assert!(white.contains("marks every pixel") && white.contains("inverted"), "{white}");
        assert_eq!(check(&write("half.png", |x, _| if x < 8 { 255 } else { 0 })), None);
        let no_file = Sample { mask: None, ..write("unused.png", |_, _| 0) };
        assert!(mask_problem(&no_file, None, None, None, 4, 2).unwrap().contains("has no mask file"));
    }

    #[test]
    fn defective_images_are_binned_by_mask_area_and_scored_against_every_good_image() {
        // Maps of 8x8 = 64 px; defect areas 3 and 15 (first bin), 16 (second), 64 (third: 64 is
        // the second bin's end), one defective image without a mask, and 3 good images.
        let mask = |n: usize| (0..64).map(|i| u8::from(i < n)).collect::<Vec<u8>>();
        let map = [0.0f32; 64];
        let mut acc = Accumulator::new(8, 8);
        for (score, area) in [(0.1, 3), (0.6, 15), (0.7, 16), (0.9, 64)] {
            acc.add(score, true, Some((&map, &mask(area))));
        }
        acc.add(0.95, true, None);
        for score in [0.2, 0.3, 0.5] {
            acc.add(score, false, Some((&map, &mask(0))));
        }
        let bins = acc.report(Some(0.55)).unwrap().by_defect_area;
        // Bin [0, 16): scores 0.1 and 0.6 against good 0.2, 0.3, 0.5: 0.1 wins 0 of 3 pairs and
        // 0.6 wins 3 of 3, AUROC 3 / 6; rejected at 0.55: only 0.6. Bin [16, 64): 0.7 wins 3 of 3.
        // Bins [256, 1024) and [1024, inf) hold nothing and are left out.
        let want = [
            DefectAreaBin { min_px: 0, max_px: Some(16), images: 2, rejected: Some(1), auroc_against_good: Some(0.5) },
            DefectAreaBin { min_px: 16, max_px: Some(64), images: 1, rejected: Some(1), auroc_against_good: Some(1.0) },
            DefectAreaBin { min_px: 64, max_px: Some(256), images: 1, rejected: Some(1), auroc_against_good: Some(1.0) },
        ];
        assert_eq!(bins, want);
        // Without a threshold nothing is counted as rejected; without good images no AUROC.
        assert_eq!(acc.report(None).unwrap().by_defect_area[0].rejected, None);
        let mut bad_only = Accumulator::new(8, 8);
        bad_only.add(0.4, true, Some((&map, &mask(20))));
        assert_eq!(bad_only.report(None).unwrap().by_defect_area, [DefectAreaBin { min_px: 16, max_px: Some(64), images: 1, rejected: None, auroc_against_good: None }]);
        let table = render_defect_areas(&[want[0].clone(), DefectAreaBin { min_px: 1024, max_px: None, images: 3, rejected: None, auroc_against_good: None }], 5);
        assert!(table.contains("| 0-15 | 2 | 1 | 0.5000 |\n| >= 1024 | 3 | n/a | n/a |\n") && !table.contains("in no bin"), "{table}");
        // The defective image without a mask above: counted, not silently dropped.
        let table = render_defect_areas(&bins, 5);
        assert!(table.contains("(1 of the 5 defective images are in no bin"), "{table}");
        assert_eq!(render_defect_areas(&[], 0), "");
        assert!(render_defect_areas(&[], 5).starts_with("defective images by defect area: none of the 5 defective images has a usable mask"));
    }
}
