//! `trainer recalibrate`.

use std::io::IsTerminal;
use std::path::PathBuf;

use super::{device, print_calibration};

/// Arguments of `trainer recalibrate`.
#[derive(clap::Args)]
pub struct RecalibrateArgs {
    /// Checkpoint weights (`checkpoint.safetensors` from `trainer train`; its .json beside it).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Side of the mean filter on the anomaly map before its max (odd, px; 1 = raw max).
    #[arg(long, allow_negative_numbers = true)]
    pub score_filter: Option<i64>,
    /// Length of the line of the line-mean image score, px (0 = off: the `--score-filter` max;
    /// else 3 up to the input's longer side, and `--score-filter` has no effect).
    #[arg(long, value_name = "PX", allow_negative_numbers = true)]
    pub score_line: Option<i64>,
    /// Standard deviation of the Gaussian that smooths the anomaly map, px (0 = raw map).
    #[arg(long, allow_negative_numbers = true)]
    pub map_sigma: Option<f64>,
    /// Quantile of the anomaly map's floor removed per image, 0 (off) up to 0.5: the map
    /// reported is max(0, map - its q-quantile). The image score reads the map before it, so the
    /// threshold stays.
    #[arg(long, value_name = "Q", allow_negative_numbers = true)]
    pub map_floor: Option<f64>,
    /// Test-time augmentation of the map: `none`, `flip` (the image and its left-right mirror,
    /// 2 passes), `vflip` (top-bottom, 2 passes), `half-turn` (the image turned 180 degrees, 2 passes) or `flip-vflip` (both mirrors and the half
    /// turn, 4 passes), the maps combined by `--tta-reduce` (mean or minimum). Latency grows with the passes; for parts that look
    /// alike mirrored.
    #[arg(long, value_enum)]
    pub tta: Option<crate::config::Tta>,
    /// How the TTA passes' maps are combined, pixel by pixel: `mean` or `min` (a pixel scores
    /// high only where every pass sees it). No effect without TTA; `--tta none` alone resets a
    /// stored `min` to `mean`.
    #[arg(long, value_enum)]
    pub tta_reduce: Option<crate::config::TtaReduce>,
    /// Target false-reject rate on good parts, e.g. 0.01 (threshold = 1 - rate quantile of
    /// the held-out good scores).
    #[arg(long, allow_negative_numbers = true)]
    pub target_frr: Option<f64>,
    /// Output folder for `checkpoint.safetensors` + `.json` (may be the checkpoint's own
    /// folder: a checkpoint of that name is replaced, its weights unchanged).
    #[arg(long)]
    pub out: PathBuf,
    /// Score on the CPU even when CUDA is available.
    #[arg(long)]
    pub cpu: bool,
}

/// Recalibrate a trained checkpoint without retraining: change the map's test-time augmentation, smoothing or floor, the
/// image-score filter or line, or the target false-reject rate, score the held-out good images again
/// and recompute the threshold. Writes `<out>/checkpoint.safetensors` + `.json`; export that
/// as usual. (Also accepted as `trainer calibrate`, its name before this release.)
///
/// # Errors
/// An unreadable checkpoint or held-out image, an even score filter, a map floor outside 0..=0.5, a score line outside 0 or
/// 3 up to the input's longer side, a rate outside (0, 1).
pub fn recalibrate(args: RecalibrateArgs) -> anyhow::Result<()> {
    let RecalibrateArgs { checkpoint, score_filter, score_line, map_sigma, map_floor, tta, tta_reduce, target_frr, out, cpu } = args;
    let opts = crate::recalibrate::RecalibrateOptions {
        score_filter_px: score_filter,
        score_line_px: score_line,
        map_sigma_px: map_sigma,
        map_floor_quantile: map_floor,
        tta,
        tta_reduce,
        target_false_reject_rate: target_frr,
        device: Some(device(cpu)),
        progress: std::io::stderr().is_terminal(),
    };
    let (weights, info) = crate::recalibrate::recalibrate(&checkpoint, &out, &opts)?;
    println!("checkpoint  {}", weights.display());
    print_calibration(&info);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::RecalibrateArgs;
    use crate::commands::smoothing::SmoothingArgs;
    use clap::Parser;

    #[derive(Parser)]
    struct Recal {
        #[command(flatten)]
        args: RecalibrateArgs,
    }

    #[derive(Parser)]
    struct Smooth {
        #[command(flatten)]
        args: SmoothingArgs,
    }

    #[test]
    fn negative_values_reach_the_range_checks_instead_of_reading_as_flags() {
        let a = Recal::try_parse_from(["r", "--checkpoint", "c", "--map-sigma", "-1", "--score-line", "-3", "--score-filter", "-5", "--target-frr", "-0.1", "--out", "o"]).unwrap().args;
        assert_eq!((a.map_sigma, a.score_line, a.score_filter, a.target_frr), (Some(-1.0), Some(-3), Some(-5), Some(-0.1)));
        let s = Smooth::try_parse_from(["s", "--checkpoint", "c", "--data", "d", "--sigmas", "-1,2", "--score-filters", "-3", "--score-lines", "-96"]).unwrap().args;
        assert_eq!((s.sigmas, s.score_filters, s.score_lines), (vec![-1.0, 2.0], vec![-3], Some(vec![-96])));
    }
}
