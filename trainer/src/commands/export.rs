//! `trainer export`.

use std::path::PathBuf;

use tch::Device;

use super::{opt, ThresholdChoice};

/// Arguments of `trainer export`.
#[derive(clap::Args)]
pub struct ExportArgs {
    /// Checkpoint weights (`checkpoint.safetensors` from `trainer train`; its .json beside it).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Output ONNX file.
    #[arg(long, default_value = "out/model.onnx")]
    pub out: PathBuf,
    /// Also evaluate the checkpoint (tch, f32) on `<data>/test` and store the metrics in the
    /// model's metadata; for int8, also the data set whose `train/good` images set the ranges
    /// (default: the checkpoint's). `runtime inspect` measures the exported file itself.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Numeric format: `int8` quantizes the convolutions (per-channel int8 weights, uint8
    /// activations whose ranges are observed on good training images; the threshold is
    /// recalibrated on the int8 scores); the spectral parts and the head's first and logit convs
    /// stay f32. tract runs int8 slower than f32 on x86 (BENCHMARKS.md): f32 is the default.
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: crate::evaluate::Precision,
    /// int8 only (refused with f32): `qlinear` (QLinearConv; the default) or `qdq`
    /// (QuantizeLinear/DequantizeLinear around Conv; faster in tract, BENCHMARKS.md).
    #[arg(long, value_enum)]
    pub int8_form: Option<crate::export::quant::QuantForm>,
    /// int8 only (refused with f32): good training images whose activations set the int8 ranges
    /// (uint8 min/max per tensor; default 32; held-out images excluded).
    #[arg(long, alias = "calibration-images")]
    pub int8_range_images: Option<usize>,
    /// Threshold written into the model: `quantile` (of held-out good scores, for the
    /// checkpoint's target false-reject rate) or `f1` (F1-optimal on the labelled images of
    /// --data; f32 only; metrics on those same images are then optimistic).
    #[arg(long, value_enum, default_value = "quantile")]
    pub threshold: ThresholdChoice,
}

/// Export a checkpoint to ONNX (f32 or int8) for the runtime and check tch-vs-tract agreement.
///
/// # Errors
/// `--threshold f1` without labelled `--data` or with int8; int8 without training images; an
/// unreadable checkpoint; a file tract cannot load or the runtime cannot inspect.
pub fn export(args: ExportArgs) -> anyhow::Result<()> {
    let ExportArgs { checkpoint, out, data, precision, int8_form, int8_range_images, threshold } = args;
    if precision == crate::evaluate::Precision::F32 {
        anyhow::ensure!(int8_form.is_none() && int8_range_images.is_none(), "--int8-form and --int8-range-images apply to int8 exports only: add --precision int8, or drop them");
    }
    let defaults = crate::evaluate::ExportOptions::default();
    let int8_range_images = int8_range_images.unwrap_or(defaults.int8_range_images);
    anyhow::ensure!(int8_range_images > 0, "--int8-range-images 0: expected at least 1 good training image");
    let mut opts = crate::evaluate::ExportOptions { precision, quant_form: int8_form.unwrap_or(defaults.quant_form), int8_range_images, data_root: data.clone(), ..defaults };
    // Before the (long) evaluation: the export must not overwrite the checkpoint, and its
    // folder must be creatable.
    crate::evaluate::check_export_path(&checkpoint, &out)?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("--out {}: cannot create its folder {} ({e}); is a part of that path a file?", out.display(), dir.display()))?;
    }
    if threshold == ThresholdChoice::F1 {
        anyhow::ensure!(
            data.is_some() && precision == crate::evaluate::Precision::F32,
            "--threshold f1 needs an f32 export (it is computed with the f32 model; export int8 with --threshold quantile) and --data with labelled defective test images"
        );
    }
    if precision == crate::evaluate::Precision::Int8 {
        // Fail before the (long) evaluation when the calibration images are not there.
        crate::evaluate::int8_images_root(&crate::checkpoint::load_info(&checkpoint)?, &opts)?;
    }
    let metrics = match data {
        Some(d) => {
            let r = crate::evaluate::evaluate(&checkpoint, &d, Device::Cpu, true)?;
            println!(
                "tch eval    {} test images ({} defective), the f32 checkpoint: image AUROC {}, pixel AUROC {}, AUPRO {}",
                r.labelled_images,
                r.defective_images,
                opt(r.image_auroc),
                opt(r.pixel_auroc),
                opt(r.aupro)
            );
            if threshold == ThresholdChoice::F1 {
                anyhow::ensure!(r.defective_images > 0, "--threshold f1: the test images of --data hold no defective image");
                anyhow::ensure!(
                    r.defective_images < r.labelled_images,
                    "--threshold f1: the test images of --data hold no good image, so any threshold below every score is F1-optimal; add good test images or use --threshold quantile"
                );
                let t = r.image_f1_threshold.ok_or_else(|| anyhow::anyhow!("--threshold f1: on the test images of --data {}; add good test images or use --threshold quantile", r.notes().into_iter().next().unwrap_or_default()))?;
                println!("threshold   {t:.4}  (F1-optimal on the {} test images: F1 {})", r.labelled_images, opt(r.image_f1_max));
                opts.deployed_threshold = Some((t, format!("F1-optimal image score threshold on {} labelled test images ({} defective)", r.labelled_images, r.defective_images)));
            }
            let mut m = serde_json::to_value(r)?;
            if let serde_json::Value::Object(o) = &mut m {
                // An int8 file scores a little differently: say whose numbers these are.
                o.insert("measured_on".into(), serde_json::json!("the f32 checkpoint in tch (trainer eval); runtime inspect measures this file"));
            }
            m
        }
        None => serde_json::json!({}),
    };
    let r = crate::evaluate::export_checkpoint(&checkpoint, &out, metrics, &opts)?;
    println!("model       {} ({:.1} MB)", r.path.display(), r.bytes as f64 / 1e6);
    println!("threshold   {:.4}  ({})", r.threshold, r.threshold_method);
    println!("parameters  {}", r.parameters);
    println!("MACs        {:.3} G  (FLOPs {:.3} G)", r.macs as f64 / 1e9, 2.0 * r.macs as f64 / 1e9);
    println!("operators   {}", r.op_types.join(", "));
    if r.tta.passes() > 1 {
        println!("TTA         {} (in the graph)", r.tta.summary(r.tta_reduce));
    }
    let what = if precision == crate::evaluate::Precision::Int8 { "int8 deviation: tch f32 vs tract int8" } else { "parity      tch vs tract" };
    println!("{what} on {} held-out images: max |map diff| {:.2e}, max |score diff| {:.2e}", r.parity_images, r.parity_max_abs_map, r.parity_max_abs_score);
    Ok(())
}
