//! `trainer smoothing`: the grid's metrics from one forward pass per image must equal those of
//! the model recalibrated to each pair and evaluated through its own forward pass (smoothing
//! inside the model, score filter of its config); bad grids are refused by name.

use std::path::{Path, PathBuf};

use trainer::config::TrainConfig;
use trainer::recalibrate::{recalibrate, RecalibrateOptions};
use trainer::smoothing::compare_smoothing;
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

#[test]
fn each_pair_scores_as_the_recalibrated_model_does() {
    let d = tempfile::tempdir().unwrap();
    let (data, weights) = data_and_checkpoint(d.path());
    let rows = compare_smoothing(&weights, &data, &[0.0, 2.0], &[1, 3], tch::Device::Cpu, false).unwrap();
    let pairs: Vec<(f64, i64)> = rows.iter().map(|r| (r.map_sigma_px, r.score_filter_px)).collect();
    assert_eq!(pairs, [(0.0, 1), (0.0, 3), (2.0, 1), (2.0, 3)], "sigma-major order");
    for r in &rows {
        let opts = RecalibrateOptions { map_sigma_px: Some(r.map_sigma_px), score_filter_px: Some(r.score_filter_px), ..Default::default() };
        let out = d.path().join(format!("recal-{}-{}", r.map_sigma_px, r.score_filter_px));
        let (w, _) = recalibrate(&weights, &out, &opts).unwrap();
        let e = trainer::evaluate::evaluate(&w, &data, tch::Device::Cpu, false).unwrap();
        let g = &r.report;
        assert_eq!((g.labelled_images, g.defective_images), (6, 3));
        for (name, got, want) in [("image AUROC", g.image_auroc, e.image_auroc), ("pixel AUROC", g.pixel_auroc, e.pixel_auroc), ("pixel AP", g.pixel_ap, e.pixel_ap), ("AUPRO", g.aupro, e.aupro), ("F1-max", g.image_f1_max, e.image_f1_max)] {
            let (got, want) = (got.unwrap(), want.unwrap());
            assert!((got - want).abs() < 1e-9, "sigma {} filter {}: {name} {got} vs {want}", r.map_sigma_px, r.score_filter_px);
        }
    }
    // The smoothing changes the pixel ranking, the filter does not touch the map.
    assert_eq!(rows[0].report.pixel_auroc, rows[1].report.pixel_auroc);
    assert_ne!(rows[0].report.pixel_auroc, rows[2].report.pixel_auroc);
}

#[test]
fn bad_grids_and_data_are_refused_by_name() {
    let d = tempfile::tempdir().unwrap();
    let (data, weights) = data_and_checkpoint(d.path());
    let err = |s: &[f64], f: &[i64], data: &Path| compare_smoothing(&weights, data, s, f, tch::Device::Cpu, false).unwrap_err().to_string();
    assert!(err(&[2.0], &[4], &data).contains("model.score_filter_px = 4: expected an odd number"));
    assert!(err(&[2.0], &[99], &data).contains("model.score_filter_px = 99 is larger than the input (64x64 px)"));
    assert!(err(&[20.0], &[3], &data).contains("model.map_sigma_px = 20"));
    assert!(err(&[], &[3], &data).contains("at least one map sigma"));
    let empty = d.path().join("empty");
    std::fs::create_dir_all(empty.join("train/good")).unwrap();
    let e = err(&[2.0], &[3], &empty);
    assert!(e.contains(&empty.display().to_string()), "{e}");
}
