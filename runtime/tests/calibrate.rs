//! `runtime calibrate` (issue 16, item 2) on the synthetic brightness model, whose score is the
//! brightest pixel's value: the good images' scores are known exactly, so the new threshold is
//! checked against a quantile computed here, independently of `runtime::threshold`. The
//! trainer-side check (same threshold as `trainer train` on the same held-out images) is in
//! `tests/tests/end_to_end.rs`.

use std::path::{Path, PathBuf};

use image::{GrayImage, Luma};
use prost::Message;
use runtime::calibrate::{calibrate, CalibrateOptions};
use runtime::infer::AnomalyModel;

const W: u32 = 32;
const H: u32 = 16;

/// Good images whose brightest pixel is `peak` (8-bit) on a background of 10.
fn write_good(dir: &Path, peaks: &[u8]) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    peaks
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let mut img = GrayImage::from_pixel(W, H, Luma([10]));
            img.put_pixel(3, 4, Luma([p]));
            let path = dir.join(format!("good_{i:03}.png"));
            img.save(&path).unwrap();
            path
        })
        .collect()
}

/// numpy.quantile(values, q) with the default linear method, in f64.
fn numpy_linear_quantile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

fn options(model: &Path, good: &Path, out: &Path, rate: Option<f64>) -> CalibrateOptions {
    CalibrateOptions { model: model.into(), good: vec![good.into()], target_false_reject_rate: rate, bit_depth: None, out: out.into(), threads: 1, progress: false }
}

#[test]
fn the_threshold_is_the_quantile_of_the_good_scores_and_the_graph_is_unchanged() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m.onnx");
    runtime::synthetic::write_brightness_model(&model, W, H, 0.9).unwrap();
    let peaks: Vec<u8> = (0..40).map(|i| 60 + (i * 37 % 120) as u8).collect();
    write_good(&d.path().join("good"), &peaks);
    let out = d.path().join("calibrated.onnx");
    let r = calibrate(&options(&model, &d.path().join("good"), &out, Some(0.05))).unwrap();
    let scores: Vec<f64> = peaks.iter().map(|&p| f64::from(p) / 255.0).collect();
    let want = numpy_linear_quantile(&scores, 0.95);
    assert!((f64::from(r.threshold) - want).abs() < 1e-6, "threshold {} vs numpy-linear {want}", r.threshold);
    assert_eq!((r.previous_threshold, r.stats.count, r.above_previous), (0.9, 40, 0));
    let top = scores.iter().cloned().fold(0.0, f64::max);
    assert!((f64::from(r.highest[0].score) - top).abs() < 1e-6 && r.highest.len() == 5);

    // The new file: same graph byte for byte, metadata with the new threshold and statistics.
    let graph = |p: &Path| tract_onnx::pb::ModelProto::decode(std::fs::read(p).unwrap().as_slice()).unwrap().graph.unwrap().encode_to_vec();
    assert_eq!(graph(&out), graph(&model), "weights and graph untouched");
    let m = AnomalyModel::load(&out).unwrap().metadata;
    assert_eq!(m.threshold, r.threshold);
    assert_eq!((m.threshold_calibration.good_images, m.threshold_calibration.target_false_reject_rate), (40, 0.05));
    assert!(m.threshold_calibration.method.contains("runtime calibrate"), "{}", m.threshold_calibration.method);
    assert!((m.good_score_stats.max - top).abs() < 1e-6);
    assert_eq!(AnomalyModel::load(&model).unwrap().metadata.threshold, 0.9, "the input model is not touched");

    // In place, and the rate from the model when not given (0.05 now).
    let again = calibrate(&options(&out, &d.path().join("good"), &out, None)).unwrap();
    assert_eq!((again.threshold, again.target_false_reject_rate), (r.threshold, 0.05));
    // The bit depth the good images were read at becomes the model's (8-bit files: same scores).
    let twelve = runtime::bit_depth::BitDepth::new(12).unwrap();
    let at12 = calibrate(&CalibrateOptions { bit_depth: Some(twelve), ..options(&out, &d.path().join("good"), &out, None) }).unwrap();
    assert_eq!(at12.threshold, r.threshold);
    assert_eq!(AnomalyModel::load(&out).unwrap().metadata.bit_depth, twelve);
}

#[test]
fn bad_input_is_refused_naming_it_and_nothing_is_written() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m.onnx");
    runtime::synthetic::write_brightness_model(&model, W, H, 0.9).unwrap();
    let good = d.path().join("good");
    write_good(&good, &[50, 60, 70, 80, 90]);
    let out = d.path().join("out.onnx");
    let err = |opts: &CalibrateOptions| format!("{:#}", calibrate(opts).unwrap_err());
    // A rate outside (0, 1).
    for rate in [0.0, 1.0, -0.1, 1.5] {
        let e = err(&options(&model, &good, &out, Some(rate)));
        assert!(e.contains("--target-frr") && e.contains("between 0 and 1"), "{rate}: {e}");
    }
    // No images.
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(err(&options(&model, &empty, &out, None)).contains("no PNG or JPEG images"));
    // A truncated good image: refused by name, not left out of the quantile.
    std::fs::write(good.join("good_002.png"), &std::fs::read(good.join("good_001.png")).unwrap()[..60]).unwrap();
    let e = err(&options(&model, &good, &out, None));
    assert!(e.contains("good_002.png"), "{e}");
    // Not a model.
    std::fs::write(d.path().join("junk.onnx"), b"not onnx").unwrap();
    assert!(err(&options(&d.path().join("junk.onnx"), &good, &out, None)).contains("junk.onnx"));
    assert!(!out.exists(), "nothing written after an error");
    // An output folder that does not exist.
    std::fs::remove_file(good.join("good_002.png")).unwrap();
    let e = err(&options(&model, &good, &d.path().join("missing/out.onnx"), None));
    assert!(e.contains("missing/out.onnx"), "{e}");
}

#[test]
fn images_of_the_other_colour_are_refused_by_calibrate_and_counted_by_inspect() {
    use runtime::metadata::InputColour;
    let d = tempfile::tempdir().unwrap();
    let plain = d.path().join("plain.onnx");
    runtime::synthetic::write_brightness_model(&plain, W, H, 0.9).unwrap();
    // The same model, recorded as trained on colour images.
    let colour = d.path().join("colour.onnx");
    let meta = runtime::metadata::ModelMetadata { input_colour: InputColour::Rgb, ..AnomalyModel::load(&plain).unwrap().metadata };
    runtime::calibrate::rewrite_metadata(&plain, &meta, &colour).unwrap();
    let good = d.path().join("good");
    let files = write_good(&good, &[50, 60, 70]); // grey PNGs
    let out = d.path().join("out.onnx");
    let e = format!("{:#}", calibrate(&options(&colour, &good, &out, None)).unwrap_err());
    assert!(e.contains("good_000.png") && e.contains("grey image") && e.contains("colour images"), "{e}");
    assert!(!out.exists());
    // A model that does not record its colour takes them.
    assert!(calibrate(&options(&plain, &good, &out, None)).is_ok());
    // inspect judges them all the same, counts them and says so.
    let opts = runtime::inspect::InspectOptions { overlays: firmware_config::OverlayMode::None, ..runtime::inspect::InspectOptions::new(colour.clone(), files, d.path().join("inspect")) };
    let s = runtime::inspect::inspect(&opts).unwrap();
    assert_eq!((s.inspected, s.colour_mismatches), (3, 3));
    assert!(runtime::inspect::render_summary(&s).contains("WARNING    3 images are of the other colour"), "{}", runtime::inspect::render_summary(&s));
    let plain_opts = runtime::inspect::InspectOptions { model: plain, out_dir: d.path().join("inspect2"), ..opts };
    assert_eq!(runtime::inspect::inspect(&plain_opts).unwrap().colour_mismatches, 0);
}
