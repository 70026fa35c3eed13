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
    let InspectArgs { inputs, model, out, config, threshold, reject_unreadable, overlays, threads, bit_depth, engine } = args;
    let cfg = match config {
        Some(p) => DeviceConfig::load(&p)?,
        None => DeviceConfig::default(),
    };
    anyhow::ensure!(
        cfg.reject.backend == firmware_config::RejectBackend::Simulated,
        "reject.backend = \"gpio\" is not available in `inspect` (the GPIO backend comes with the line runtime); use \"simulated\""
    );
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
    anyhow::ensure!(summary.output_write_errors == 0, "{} output writes failed in {} (see the log): events, overlays or summary are incomplete", summary.output_write_errors, opts.out_dir.display());
    Ok(())
}
