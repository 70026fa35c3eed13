//! `trainer smoothing`.

use std::io::IsTerminal;
use std::path::PathBuf;

use super::{device, opt};

/// Arguments of `trainer smoothing`.
#[derive(clap::Args)]
pub struct SmoothingArgs {
    /// Checkpoint weights (`checkpoint.safetensors` from `trainer train`; its .json beside it).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Data set root in the MVTec AD layout whose `test/` (good and defective images) and
    /// `ground_truth/` masks score each pair.
    #[arg(long)]
    pub data: PathBuf,
    /// Standard deviations of the map's Gaussian to compare, px of the model input (0 = raw map).
    #[arg(long, value_delimiter = ',', default_values_t = vec![0.0, 1.0, 2.0, 3.0, 4.0, 6.0])]
    pub sigmas: Vec<f64>,
    /// Sides of the image score's mean filter to compare, px (odd; 1 = the raw max).
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 3, 7])]
    pub score_filters: Vec<i64>,
    /// Score on the CPU even when CUDA is available.
    #[arg(long)]
    pub cpu: bool,
}

/// Compare map smoothings and image-score filters on labelled test images without retraining:
/// prints image AUROC, pixel AUROC, pixel AP and AUPRO per (sigma, filter) pair, marks the
/// checkpoint's own pair and the best per column, and the `trainer recalibrate` command that
/// sets a pair. Choosing on the images you then report on is optimistic: keep some apart.
///
/// # Errors
/// An unreadable checkpoint, test image or mask; a sigma outside 0..=16 px or an even filter.
pub fn smoothing(args: SmoothingArgs) -> anyhow::Result<()> {
    let SmoothingArgs { checkpoint, data, sigmas, score_filters, cpu } = args;
    let info = crate::checkpoint::load_info(&checkpoint)?;
    let rows = crate::smoothing::compare_smoothing(&checkpoint, &data, &sigmas, &score_filters, device(cpu), std::io::stderr().is_terminal())?;
    let best = |f: &dyn Fn(&runtime::evaluation::MetricReport) -> Option<f64>| rows.iter().filter_map(|r| f(&r.report)).fold(f64::NEG_INFINITY, f64::max);
    let (bi, bp, ba) = (best(&|r| r.image_auroc), best(&|r| r.pixel_auroc), best(&|r| r.aupro));
    // Bold where the printed value equals the printed best (ties at 4 decimals all marked).
    let mark = |v: Option<f64>, b: f64| if v.is_some() && opt(v) == opt(Some(b)) { format!("**{}**", opt(v)) } else { opt(v) };
    let (own_sigma, own_filter, own_line) = (info.config.model.map_sigma_px, info.config.model.score_filter_px, info.config.model.score_line_px);
    println!("| map sigma px | score filter px | image AUROC | pixel AUROC | pixel AP | AUPRO (0.3) | image F1-max |");
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        // A checkpoint scored by the line score has no row here: every row uses the box filter.
        let own = if own_line == 0 && r.map_sigma_px == own_sigma && r.score_filter_px == own_filter { " (checkpoint)" } else { "" };
        let m = &r.report;
        println!(
            "| {}{own} | {} | {} | {} | {} | {} | {} |",
            r.map_sigma_px,
            r.score_filter_px,
            mark(m.image_auroc, bi),
            mark(m.pixel_auroc, bp),
            opt(m.pixel_ap),
            mark(m.aupro, ba),
            opt(m.image_f1_max)
        );
    }
    println!();
    println!("{} labelled test images ({} defective) of {}; best per column in bold.", rows[0].report.labelled_images, rows[0].report.defective_images, data.display());
    if own_line > 0 {
        println!("this checkpoint scores with the line-mean score ({own_line} px line, sigma {own_sigma} px), which no row above uses: the rows score with the box filter");
    }
    let line_off = if own_line > 0 { " --score-line 0" } else { "" };
    println!("set a pair: trainer recalibrate --checkpoint {}{line_off} --map-sigma S --score-filter K --out DIR   (then trainer export)", checkpoint.display());
    Ok(())
}
