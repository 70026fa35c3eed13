//! `runtime calibrate`.

use std::io::IsTerminal;
use std::path::PathBuf;

use crate::calibrate::{calibrate as calibrate_model, render_report, CalibrateOptions};

/// Arguments of `runtime calibrate`.
#[derive(clap::Args, Debug)]
pub struct CalibrateArgs {
    /// The exported model to recalibrate.
    #[arg(long)]
    pub model: PathBuf,
    /// Good images (files and/or folders, searched recursively), e.g. what `runtime collect` or
    /// the line saved under today's lighting.
    #[arg(long, required = true, num_args = 1..)]
    pub good: Vec<PathBuf>,
    /// Target false-reject rate on good parts, e.g. 0.01 (default: the model's, else 0.01).
    #[arg(long)]
    pub target_frr: Option<f64>,
    /// Significant bits of 16-bit images, 8..=16 (default: the model's).
    #[arg(long, value_name = "BITS")]
    pub bit_depth: Option<crate::bit_depth::BitDepth>,
    /// The new model file (may be --model itself: replaced atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Inference threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub threads: u32,
}

/// Recalibrate the threshold of an exported model on the device, without the trainer: score good
/// images with tract, set the threshold to the (1 - target false-reject rate) quantile of their
/// scores (the trainer's rule) and write a model file with the new threshold and score statistics
/// in its metadata (weights untouched). Prints the highest-scoring images: look at them.
///
/// # Errors
/// The model cannot be loaded; a target rate outside (0, 1); no good image; a good image that
/// cannot be inspected (named); the output cannot be written. Nothing is written on error.
pub fn calibrate(args: CalibrateArgs) -> anyhow::Result<()> {
    let CalibrateArgs { model, good, target_frr, bit_depth, out, threads } = args;
    let opts = CalibrateOptions { model, good, target_false_reject_rate: target_frr, bit_depth, out, threads: threads as usize, progress: std::io::stderr().is_terminal() };
    let report = calibrate_model(&opts)?;
    print!("{}", render_report(&report));
    Ok(())
}
