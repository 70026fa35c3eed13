//! `runtime inspect`.

use std::io::IsTerminal;
use std::path::PathBuf;

use firmware_config::{DeviceConfig, OverlayMode};

use crate::inspect::{inspect as inspect_files, render_summary, InspectOptions};

/// Arguments of `runtime inspect`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Images and/or folders of images (PNG, JPEG; grey or RGB; 8 or 16 bit; any size).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Exported ONNX model (overrides [model].path of --config; default model.onnx).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Output folder (overrides [output].dir of --config; default inspect-out).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Device configuration TOML (example: firmware-config/device.example.toml); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Image score threshold (finite, at least 1e-6); default: the one calibrated into the model.
    #[arg(long, allow_hyphen_values = true)]
    pub threshold: Option<f32>,
    /// Pulse the reject line for images that cannot be read (default: [reject].reject_unreadable, true).
    #[arg(long, value_name = "BOOL")]
    pub reject_unreadable: Option<bool>,
    /// Which images get an overlay PNG (default: [output].overlays, all).
    #[arg(long, value_enum)]
    pub overlays: Option<OverlayMode>,
    /// Inference threads (default: [model].threads, 1).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub threads: Option<u32>,
    /// Significant bits of 16-bit image samples, 8..=16, LSB-aligned (a 12-bit sensor's PNGs hold
    /// 0..=4095); 8-bit images are not affected (default: [camera].bit_depth, else the model's).
    #[arg(long, value_name = "BITS")]
    pub bit_depth: Option<crate::bit_depth::BitDepth>,
    /// Inference engine (default: [model].engine, tract); `onnxruntime` needs a runtime built
    /// with `--features onnxruntime` and libonnxruntime.so ([model].onnxruntime_lib or
    /// ORT_DYLIB_PATH).
    #[arg(long, value_enum)]
    pub engine: Option<crate::infer::ModelEngine>,
    /// How many of the least normal good images and of the lowest-scored defective images the
    /// report names (0: none). On a data set's train/ folder: the training images to look at
    /// for worn or defective parts.
    // allow_hyphen_values: `--list -1` is refused as an invalid count of --list, not taken for a flag.
    #[arg(long, value_name = "N", default_value_t = crate::extremes::LISTED, allow_hyphen_values = true)]
    pub list: usize,
}

/// Inspect image files or folders (recursively) with an exported model: writes one JSONL event
/// per image, overlay PNGs and summary.json; prints counts and, for MVTec-layout test folders,
/// image and pixel AUROC.
///
/// # Errors
/// The device file is invalid or asks for the GPIO backend; the model cannot be loaded; no
/// image found; no image could be inspected; output writes failed (after every image was
/// inspected). Printed as `error: ...`, exit code 1.
pub fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let InspectArgs { inputs, model, out, config, threshold, reject_unreadable, overlays, threads, bit_depth, engine, list } = args;
    let cfg = match &config {
        Some(p) => DeviceConfig::load(p)?,
        None => DeviceConfig::default(),
    };
    anyhow::ensure!(
        cfg.reject.backend == firmware_config::RejectBackend::Simulated,
        "reject.backend = \"gpio\" is not available in `inspect` (the GPIO backend comes with the line runtime); use \"simulated\""
    );
    // A default path that is not there: say where it came from and how to give one, rather than
    // only "cannot load ONNX model model.onnx".
    if let (None, false) = (&model, cfg.model.path.exists()) {
        let from = if config.is_some() && cfg.model.path != DeviceConfig::default().model.path { "[model].path of --config" } else { "the default, as neither --model nor [model].path of --config names one" };
        anyhow::bail!("no model file {} ({from}): give the exported model with --model FILE (`trainer export` writes it)", cfg.model.path.display());
    }
    let opts = InspectOptions {
        model: model.unwrap_or(cfg.model.path),
        inputs,
        out_dir: out.unwrap_or(cfg.output.dir),
        threshold: threshold.or(cfg.model.threshold),
        overlays: overlays.unwrap_or(cfg.output.overlays),
        reject_delay_ms: cfg.reject.delay_ms,
        reject_pulse_ms: cfg.reject.pulse_ms,
        reject_unreadable: reject_unreadable.unwrap_or(cfg.reject.reject_unreadable),
        threads: threads.unwrap_or(cfg.model.threads) as usize,
        engine: engine.unwrap_or(cfg.model.engine),
        onnxruntime_lib: cfg.model.onnxruntime_lib.clone(),
        listed: list,
        roi: cfg.roi,
        progress: std::io::stderr().is_terminal(),
        bit_depth: match bit_depth {
            Some(d) => Some(d),
            None => cfg.camera.bit_depth.map(crate::bit_depth::BitDepth::new).transpose().map_err(|e| anyhow::anyhow!("camera.bit_depth: {e}"))?,
        },
    };
    let summary = inspect_files(&opts)?;
    print!("{}", render_summary(&summary));
    // Every image was inspected; the exit code still says the outputs are incomplete.
    anyhow::ensure!(summary.output_write_errors == 0, "{} output writes failed in {} (see the log): events, overlays, sheets or summary are incomplete", summary.output_write_errors, opts.out_dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: super::InspectArgs,
    }

    #[test]
    fn list_sets_how_many_images_each_list_of_the_report_names() {
        let d = tempfile::tempdir().unwrap();
        let model = d.path().join("m.onnx");
        crate::synthetic::write_brightness_model(&model, 32, 16, 0.5).unwrap();
        let good = d.path().join("train/good");
        std::fs::create_dir_all(&good).unwrap();
        for v in [30u8, 60, 90, 120, 150, 180, 210] {
            image::RgbImage::from_pixel(32, 16, image::Rgb([v, v, v])).save(good.join(format!("g{v}.png"))).unwrap();
        }
        let run = |extra: &[&str]| {
            let out = d.path().join(format!("out{}", extra.len()));
            let mut argv = vec!["inspect", "--model", model.to_str().unwrap(), "--out", out.to_str().unwrap(), "--overlays", "none"];
            argv.extend_from_slice(extra);
            argv.push(good.to_str().unwrap());
            super::inspect(Cli::try_parse_from(argv).unwrap().args).unwrap();
            let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
            s["extremes"]["least_normal_good"].as_array().unwrap().iter().map(|i| i["image"].as_str().unwrap().rsplit('/').next().unwrap().to_string()).collect::<Vec<_>>()
        };
        assert_eq!(run(&[]), ["g210.png", "g180.png", "g150.png", "g120.png", "g90.png"], "5 by default, brightest first");
        assert_eq!(run(&["--list", "2"]), ["g210.png", "g180.png"]);
        // No --model and no model.onnx in the working directory: the error says how to give one.
        if !std::path::Path::new("model.onnx").exists() {
            let e = super::inspect(Cli::try_parse_from(["inspect", good.to_str().unwrap()]).unwrap().args).unwrap_err().to_string();
            assert!(e.contains("no model file model.onnx") && e.contains("--model FILE"), "{e}");
        }
        let e = Cli::try_parse_from(["inspect", "--list", "-1", "x.png"]).err().expect("a negative count is refused by the parser").to_string();
        assert!(e.contains("'-1' for '--list <N>'") && e.contains("invalid digit"), "names the flag and what is wrong: {e}");
    }
}
