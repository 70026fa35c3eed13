//! `trainer smoothing`: the grid's metrics from one forward pass per image and TTA pass must
//! equal those of the model recalibrated to each row and evaluated through its own forward pass
//! (TTA and smoothing inside the model, score rule of its config); bad grids are refused by name.

use std::path::{Path, PathBuf};

use trainer::config::TrainConfig;
use trainer::recalibrate::{recalibrate, RecalibrateOptions};
use trainer::config::{Tta, TtaReduce};
use trainer::smoothing::{compare_smoothing, ScoreRule, SmoothingGrid};
use trainer::train::{train, TrainOptions};

/// A stripe image with a bright square "defect" at (x0, y0) of side `s` (s = 0: none).
fn image(i: u32, defect: Option<(u32, u32, u32)>) -> image::RgbImage {
    image::RgbImage::from_fn(80, 80, |x, y| {
        if let Some((x0, y0, s)) = defect {
            if (x0..x0 + s).contains(&x) && (y0..y0 + s).contains(&y) {
                return image::Rgb([250, 250, 250]);
            }
        }
        image::Rgb([((x * 7 + i * 13) % 256) as u8, ((y * 5) % 256) as u8, ((x * y + i) % 256) as u8])
    })
}

/// 12 good training images, 3 good and 3 defective test images with masks; a 3-step checkpoint.
fn data_and_checkpoint(root: &Path) -> (PathBuf, PathBuf) {
    let data = root.join("data");
    for d in ["train/good", "test/good", "test/spot", "ground_truth/spot"] {
        std::fs::create_dir_all(data.join(d)).unwrap();
    }
    for i in 0..12u32 {
        image(i, None).save(data.join(format!("train/good/{i:02}.png"))).unwrap();
    }
    for i in 0..3u32 {
        image(20 + i, None).save(data.join(format!("test/good/{i}.png"))).unwrap();
        let d = (10 + 20 * i, 30, 8 + 4 * i);
        image(30 + i, Some(d)).save(data.join(format!("test/spot/{i}.png"))).unwrap();
        let (x0, y0, s) = d;
        image::GrayImage::from_fn(80, 80, |x, y| image::Luma([if (x0..x0 + s).contains(&x) && (y0..y0 + s).contains(&y) { 255 } else { 0 }]))
            .save(data.join(format!("ground_truth/spot/{i}_mask.png")))
            .unwrap();
    }
    let mut cfg = TrainConfig::small();
    cfg.model.input_height = 64;
    cfg.model.input_width = 64;
    cfg.steps = 3;
    cfg.batch_size = 2;
    let weights = train(&TrainOptions::new(data.clone(), cfg, root.join("out"))).unwrap().0;
    (data, weights)
}

/// Metrics of `row` against those of the checkpoint recalibrated to it and evaluated by
/// `trainer::evaluate` (the model's own TTA batch, smoothing and score).
fn assert_row_scores_as_the_recalibrated_model(weights: &Path, data: &Path, out: &Path, r: &trainer::smoothing::SmoothingRow) {
    let (filter, line) = match r.score {
        ScoreRule::Filter(k) => (Some(k), 0),
        ScoreRule::Line(l) => (None, l),
    };
    let opts = RecalibrateOptions { tta: Some(r.tta), tta_reduce: Some(r.tta_reduce), map_sigma_px: Some(r.map_sigma_px), map_floor_quantile: Some(r.map_floor_quantile), score_filter_px: filter, score_line_px: Some(line), ..Default::default() };
    let (w, _) = recalibrate(weights, out, &opts).unwrap();
    let e = trainer::evaluate::evaluate(&w, data, tch::Device::Cpu, false).unwrap();
    let g = &r.report;
    assert_eq!((g.labelled_images, g.defective_images), (6, 3));
    // One pass: the same computation, equal to rounding. TTA: the grid runs each pass as its own
    // batch, the model all passes as one, so the maps differ by float rounding (~1e-7) and
    // near-tied pixels may swap ranks; a wrong combination or mirror moves the metrics by > 1e-3.
    let tolerance = if r.tta.passes() == 1 { 1e-9 } else { 1e-5 };
    for (name, got, want) in [("image AUROC", g.image_auroc, e.image_auroc), ("pixel AUROC", g.pixel_auroc, e.pixel_auroc), ("pixel AP", g.pixel_ap, e.pixel_ap), ("AUPRO", g.aupro, e.aupro), ("F1-max", g.image_f1_max, e.image_f1_max)] {
        let (got, want) = (got.unwrap(), want.unwrap());
        assert!((got - want).abs() < tolerance, "{:?} {:?} sigma {} floor {} {}: {name} {got} vs {want}", r.tta, r.tta_reduce, r.map_sigma_px, r.map_floor_quantile, r.score);
    }
}

#[test]
fn each_pair_scores_as_the_recalibrated_model_does() {
    let d = tempfile::tempdir().unwrap();
    let (data, weights) = data_and_checkpoint(d.path());
    let grid = SmoothingGrid { floors: vec![0.0, 0.25], ..SmoothingGrid::sigmas_and_filters(&[0.0, 2.0], &[1, 3]) };
    let rows = compare_smoothing(&weights, &data, &grid, tch::Device::Cpu, false).unwrap();
    let keys: Vec<(f64, f64, ScoreRule)> = rows.iter().map(|r| (r.map_sigma_px, r.map_floor_quantile, r.score)).collect();
    let f = ScoreRule::Filter;
    assert_eq!(keys, [(0.0, 0.0, f(1)), (0.0, 0.0, f(3)), (0.0, 0.25, f(1)), (0.0, 0.25, f(3)), (2.0, 0.0, f(1)), (2.0, 0.0, f(3)), (2.0, 0.25, f(1)), (2.0, 0.25, f(3))], "sigma, then floor, then rule");
    for (i, r) in rows.iter().enumerate() {
        assert_row_scores_as_the_recalibrated_model(&weights, &data, &d.path().join(format!("recal-{i}")), r);
    }
    // The smoothing changes the pixel ranking, the filter does not touch the map.
    assert_eq!(rows[0].report.pixel_auroc, rows[1].report.pixel_auroc);
    assert_ne!(rows[0].report.pixel_auroc, rows[4].report.pixel_auroc);
    // The floor changes the pixel ranking (across images), not the image score.
    assert_ne!(rows[0].report.pixel_auroc, rows[2].report.pixel_auroc);
    assert_eq!(rows[0].report.image_auroc, rows[2].report.image_auroc);
}

#[test]
fn tta_modes_reduces_and_lines_score_as_the_recalibrated_model_does() {
    let d = tempfile::tempdir().unwrap();
    let (data, weights) = data_and_checkpoint(d.path());
    let grid = SmoothingGrid { ttas: vec![Tta::None, Tta::HalfTurn, Tta::FlipVflip], reduces: vec![TtaReduce::Mean, TtaReduce::Min], sigmas: vec![0.0, 2.0], floors: vec![0.0], filters: vec![3], lines: vec![21] };
    let rows = compare_smoothing(&weights, &data, &grid, tch::Device::Cpu, false).unwrap();
    // One row set for the one-pass mode, two (mean, min) for each TTA mode: 5 x 2 sigmas x 2 rules.
    let keys: Vec<(Tta, TtaReduce)> = rows.iter().step_by(4).map(|r| (r.tta, r.tta_reduce)).collect();
    assert_eq!(keys, [(Tta::None, TtaReduce::Mean), (Tta::HalfTurn, TtaReduce::Mean), (Tta::HalfTurn, TtaReduce::Min), (Tta::FlipVflip, TtaReduce::Mean), (Tta::FlipVflip, TtaReduce::Min)]);
    assert_eq!(rows.len(), 20);
    assert_eq!(rows[..4].iter().map(|r| (r.map_sigma_px, r.score)).collect::<Vec<_>>(), [(0.0, ScoreRule::Filter(3)), (0.0, ScoreRule::Line(21)), (2.0, ScoreRule::Filter(3)), (2.0, ScoreRule::Line(21))]);
    for (i, r) in rows.iter().enumerate() {
        assert_row_scores_as_the_recalibrated_model(&weights, &data, &d.path().join(format!("tta-{i}")), r);
    }
    // Each knob changes something: the passes and their combination the map, the rule the score.
    let pixel = |i: usize| rows[i].report.pixel_auroc.unwrap();
    assert_ne!(pixel(0), pixel(4), "half-turn mean vs one pass");
    assert_ne!(pixel(4), pixel(8), "half-turn min vs mean");
    assert_ne!(pixel(12), pixel(16), "flip-vflip min vs mean");
    assert_eq!(pixel(0), pixel(1), "the rule does not touch the map");
}

#[test]
fn bad_grids_and_data_are_refused_by_name() {
    let d = tempfile::tempdir().unwrap();
    let (data, weights) = data_and_checkpoint(d.path());
    let err = |s: &[f64], f: &[i64], data: &Path| format!("{:#}", compare_smoothing(&weights, data, &SmoothingGrid::sigmas_and_filters(s, f), tch::Device::Cpu, false).unwrap_err());
    assert!(err(&[2.0], &[4], &data).contains("--score-filters: model.score_filter_px = 4: expected an odd number"));
    assert!(err(&[2.0], &[99], &data).contains("model.score_filter_px = 99 is larger than the input (64x64 px)"));
    assert!(err(&[20.0], &[3], &data).contains("--sigmas: model.map_sigma_px = 20"));
    assert!(err(&[], &[3], &data).contains("at least one map sigma"));
    let floors = |q: &[f64]| {
        let grid = SmoothingGrid { floors: q.to_vec(), ..SmoothingGrid::sigmas_and_filters(&[2.0], &[3]) };
        format!("{:#}", compare_smoothing(&weights, &data, &grid, tch::Device::Cpu, false).unwrap_err())
    };
    assert!(floors(&[0.6]).contains("--map-floors: model.map_floor_quantile = 0.6: expected 0 (off) up to 0.5"), "{}", floors(&[0.6]));
    assert!(floors(&[]).contains("at least one map floor quantile"));
    assert!(err(&[2.0], &[], &data).contains("at least one score filter or score line"));
    let lines = |l: &[i64]| {
        let grid = SmoothingGrid { lines: l.to_vec(), ..SmoothingGrid::sigmas_and_filters(&[2.0], &[3]) };
        format!("{:#}", compare_smoothing(&weights, &data, &grid, tch::Device::Cpu, false).unwrap_err())
    };
    assert!(lines(&[0]).contains("score line 0 is the filter rule"));
    assert!(lines(&[2]).contains("--score-lines: model.score_line_px = 2: expected 0 (off) or 3 up to the input's longer side (64x64 px)"));
    // Repeated values give their rows once.
    let repeated = SmoothingGrid { ttas: vec![Tta::None, Tta::None], reduces: vec![TtaReduce::Mean, TtaReduce::Mean], sigmas: vec![2.0, 2.0], floors: vec![0.1, 0.1], filters: vec![3, 3], lines: vec![5, 5] };
    let rows = compare_smoothing(&weights, &data, &repeated, tch::Device::Cpu, false).unwrap();
    assert_eq!(rows.iter().map(|r| r.score).collect::<Vec<_>>(), [ScoreRule::Filter(3), ScoreRule::Line(5)]);
    let no_tta = SmoothingGrid { ttas: vec![], ..SmoothingGrid::sigmas_and_filters(&[2.0], &[3]) };
    assert!(compare_smoothing(&weights, &data, &no_tta, tch::Device::Cpu, false).unwrap_err().to_string().contains("at least one TTA mode"));
    let empty = d.path().join("empty");
    std::fs::create_dir_all(empty.join("train/good")).unwrap();
    let e = err(&[2.0], &[3], &empty);
    assert!(e.contains(&empty.display().to_string()), "{e}");
}
