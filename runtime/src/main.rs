//! `runtime`: the FFC-AD inspection runtime command line.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use firmware_config::{DeviceConfig, OverlayMode};
use runtime::inspect::{inspect, render_summary, InspectOptions};

#[derive(Parser)]
#[command(name = "runtime", version, about = "FFC-AD inspection runtime: runs an exported model on images and decides OK / REJECT")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect image files or folders (recursively) with an exported model: writes one JSONL event
    /// per image, overlay PNGs and summary.json; prints counts and, for MVTec-layout test folders,
    /// image and pixel AUROC.
    Inspect {
        /// Images and/or folders of images (PNG, JPEG; grey or RGB; 8 or 16 bit; any size).
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Exported ONNX model (overrides [model].path of --config; default model.onnx).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Output folder (overrides [output].dir of --config; default inspect-out).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Device configuration TOML (example: firmware-config/device.example.toml); flags override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Image score threshold (finite, > 0); default: the one calibrated into the model.
        #[arg(long, allow_hyphen_values = true)]
        threshold: Option<f32>,
        /// Pulse the reject line for images that cannot be read (default: [reject].reject_unreadable, true).
        #[arg(long, value_name = "BOOL")]
        reject_unreadable: Option<bool>,
        /// Which images get an overlay PNG (default: [output].overlays, all).
        #[arg(long, value_enum)]
        overlays: Option<OverlayArg>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OverlayArg {
    All,
    Rejects,
    None,
}

fn main() -> std::process::ExitCode {
    runtime::cli::run_main(|| run(Cli::parse()))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect { inputs, model, out, config, threshold, reject_unreadable, overlays } => {
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
                overlays: match overlays {
                    Some(OverlayArg::All) => OverlayMode::All,
                    Some(OverlayArg::Rejects) => OverlayMode::Rejects,
                    Some(OverlayArg::None) => OverlayMode::None,
                    None => cfg.output.overlays,
                },
                reject_delay_ms: cfg.reject.delay_ms,
                reject_pulse_ms: cfg.reject.pulse_ms,
                reject_unreadable: reject_unreadable.unwrap_or(cfg.reject.reject_unreadable),
                progress: std::io::stderr().is_terminal(),
            };
            let summary = inspect(&opts)?;
            print!("{}", render_summary(&summary));
            Ok(())
        }
    }
}
