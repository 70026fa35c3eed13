//! `trainer export` writes a model only when its checks pass: a failed export leaves no
//! deployable file and keeps the previous one; the checkpoint itself is never overwritten; a
//! checkpoint with non-finite weights is refused rather than reported at parity 0.

mod common;

use std::path::{Path, PathBuf};

use trainer::commands::export::{export, ExportArgs};
use trainer::evaluate::{export_checkpoint, ExportOptions, Precision};

/// A copy of checkpoint `weights` (and its .json) in `dir`, the .json edited by `edit`.
fn copy_with(weights: &Path, dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let copy = dir.join("checkpoint.safetensors");
    std::fs::copy(weights, &copy).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(weights.with_extension("json")).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(copy.with_extension("json"), serde_json::to_string(&json).unwrap()).unwrap();
    copy
}

fn args(checkpoint: &Path, out: &Path) -> ExportArgs {
    ExportArgs { checkpoint: checkpoint.into(), out: out.into(), data: None, precision: Precision::F32, int8_form: None, int8_range_images: None, threshold: trainer::commands::ThresholdChoice::Quantile }
}

#[test]
fn a_failed_export_keeps_the_previous_model_and_leaves_no_partial_file() {
    let d = tempfile::tempdir().unwrap();
    let weights = common::tiny_checkpoint(d.path());
    let out = d.path().join("deploy/model.onnx");
    export_checkpoint(&weights, &out, serde_json::json!({}), &ExportOptions::default()).unwrap();
    let deployed = std::fs::read(&out).unwrap();
    // The data set moved: the held-out images the export checks on are gone. The export fails
    // after the graph is written, at its check, for f32 and int8.
    let moved = copy_with(&weights, &d.path().join("moved"), |j| {
        j["holdout"] = serde_json::json!(["/nonexistent/train/good/00.png", "/nonexistent/train/good/01.png"]);
    });
    for precision in [Precision::F32, Precision::Int8] {
        let opts = ExportOptions { precision, data_root: Some(d.path().join("data")), ..Default::default() };
        let msg = format!("{:#}", export_checkpoint(&moved, &out, serde_json::json!({}), &opts).unwrap_err());
        assert!(msg.contains("/nonexistent/train/good/00.png"), "{precision:?}: {msg}");
        // Traced back to the list it came from.
        assert!(msg.contains("a held-out good image listed in") && msg.contains("moved/checkpoint.json"), "{precision:?}: {msg}");
        assert_eq!(std::fs::read(&out).unwrap(), deployed, "{precision:?}: the deployed model changed");
        let left: Vec<_> = std::fs::read_dir(out.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("model.onnx")], "{precision:?}");
    }
    // No held-out images at all: refused, not a check of 0 images reported as parity 0.
    let none = copy_with(&weights, &d.path().join("none"), |j| j["holdout"] = serde_json::json!([]));
    let msg = format!("{:#}", export_checkpoint(&none, &out, serde_json::json!({}), &ExportOptions::default()).unwrap_err());
    assert!(msg.contains("none/checkpoint.json lists no held-out good images"), "{msg}");
    assert_eq!(std::fs::read(&out).unwrap(), deployed, "the deployed model changed");
    // A hand-edited threshold or calibration rate: refused before a file is built, naming the key
    // (a rate of 2 made the int8 export recompute its threshold as the lowest good score).
    let negative = copy_with(&weights, &d.path().join("negative"), |j| j["threshold"] = (-5.0).into());
    let rate = copy_with(&weights, &d.path().join("rate"), |j| j["calibration"]["target_false_reject_rate"] = 2.0.into());
    for (ckpt, want) in [(&negative, "negative/checkpoint.json: threshold = -5: expected a finite image score > 0"), (&rate, "rate/checkpoint.json: calibration.target_false_reject_rate = 2: expected 0 < r < 1")] {
        for precision in [Precision::F32, Precision::Int8] {
            let opts = ExportOptions { precision, data_root: Some(d.path().join("data")), ..Default::default() };
            let msg = format!("{:#}", export_checkpoint(ckpt, &out, serde_json::json!({}), &opts).unwrap_err());
            assert!(msg.contains(want) && msg.contains("trainer recalibrate"), "{precision:?}: {msg}");
            assert_eq!(std::fs::read(&out).unwrap(), deployed, "the deployed model changed");
        }
    }
}

#[test]
fn the_checkpoint_is_never_the_export_target() {
    let d = tempfile::tempdir().unwrap();
    let weights = common::tiny_checkpoint(d.path());
    let before = std::fs::read(&weights).unwrap();
    for out in [weights.clone(), weights.with_extension("json"), weights.parent().unwrap().join("../out/checkpoint.safetensors")] {
        let msg = format!("{:#}", export(args(&weights, &out)).unwrap_err());
        assert!(msg.contains("--out") && msg.contains("overwrite the trained model"), "{msg}");
    }
    assert_eq!(std::fs::read(&weights).unwrap(), before);
    assert!(trainer::checkpoint::load_info(&weights).is_ok());
}

#[test]
fn int8_options_are_refused_with_an_f32_export() {
    let d = tempfile::tempdir().unwrap();
    let weights = common::tiny_checkpoint(d.path());
    let out = d.path().join("m.onnx");
    let mut a = args(&weights, &out);
    a.int8_form = Some(trainer::export::quant::QuantForm::Qdq);
    let msg = export(a).unwrap_err().to_string();
    assert!(msg.contains("--precision int8"), "{msg}");
    let mut a = args(&weights, &out);
    a.int8_range_images = Some(8);
    assert!(export(a).unwrap_err().to_string().contains("--int8-range-images"));
    let mut a = args(&weights, &out);
    a.precision = Precision::Int8;
    a.int8_range_images = Some(0);
    assert!(export(a).unwrap_err().to_string().contains("--int8-range-images 0"));
    assert!(!out.exists());
}

#[test]
fn non_finite_weights_fail_the_export_check() {
    let d = tempfile::tempdir().unwrap();
    let weights = common::tiny_checkpoint(d.path());
    let broken = copy_with(&weights, &d.path().join("nan"), |_| {});
    let (vs, _model, _) = trainer::checkpoint::load_model(&broken, tch::Device::Cpu).unwrap();
    tch::no_grad(|| {
        let _ = vs.variables()["head.out.weight"].shallow_clone().fill_(f64::NAN);
    });
    vs.save(&broken).unwrap();
    let out = d.path().join("nan.onnx");
    let msg = format!("{:#}", export_checkpoint(&broken, &out, serde_json::json!({}), &ExportOptions::default()).unwrap_err());
    assert!(msg.contains("non-finite") && msg.contains("nan/checkpoint.safetensors"), "{msg}");
    assert!(!out.exists());
}

#[test]
fn threshold_f1_is_refused_on_one_class_and_unlabelled_test_images_are_left_out() {
    let d = tempfile::tempdir().unwrap();
    let weights = common::tiny_checkpoint(d.path());
    let test = d.path().join("data/test");
    let write = |class: &str| {
        std::fs::create_dir_all(test.join(class)).unwrap();
        for i in 0..2u8 {
            image::RgbImage::from_pixel(80, 80, image::Rgb([40 * i, 90, 200])).save(test.join(class).join(format!("{i}.png"))).unwrap();
        }
    };
    let out = d.path().join("f1.onnx");
    let with_f1 = || ExportArgs { data: Some(d.path().join("data")), threshold: trainer::commands::ThresholdChoice::F1, ..args(&weights, &out) };
    // Defective images only: every threshold under the lowest score has F1 = 1, so none is chosen,
    // and the error says which class is missing (the report has no F1-optimal threshold here).
    write("crack");
    let msg = format!("{:#}", export(with_f1()).unwrap_err());
    assert!(msg.contains("hold no good image"), "{msg}");
    // Good images only.
    std::fs::remove_dir_all(test.join("crack")).unwrap();
    write("good");
    let msg = format!("{:#}", export(with_f1()).unwrap_err());
    assert!(msg.contains("hold no defective image"), "{msg}");
    assert!(!out.exists());
    // Both classes, and one image in no class folder: it has no label and is left out of the
    // metrics (it was counted as good), as `runtime inspect` leaves it out.
    write("crack");
    std::fs::copy(test.join("good/0.png"), test.join("loose.png")).unwrap();
    let r = trainer::evaluate::evaluate(&weights, &d.path().join("data"), tch::Device::Cpu, false).unwrap();
    assert_eq!((r.labelled_images, r.defective_images), (4, 2));
}
