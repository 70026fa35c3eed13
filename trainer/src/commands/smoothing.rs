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
    #[arg(long, value_delimiter = ',', default_values_t = vec![0.0, 1.0, 2.0, 3.0, 4.0, 6.0], allow_hyphen_values = true)]
    pub sigmas: Vec<f64>,
    /// Quantiles of the map's floor removed per image to compare, e.g. `0,0.1` (0 = off; up to
    /// 0.5; default: the checkpoint's own). They change the pixel metrics only: the image score
    /// reads the map before its floor.
    #[arg(long, value_delimiter = ',', value_name = "Q", allow_hyphen_values = true)]
    pub map_floors: Option<Vec<f64>>,
    /// Sides of the image score's mean filter to compare, px (odd; 1 = the raw max).
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 3, 7], allow_hyphen_values = true)]
    pub score_filters: Vec<i64>,
    /// Lengths of the line-mean image score's line to compare, px (3 up to the input's longer
    /// side; default: the checkpoint's own line, if it scores by one).
    #[arg(long, value_delimiter = ',', value_name = "PX", allow_hyphen_values = true)]
    pub score_lines: Option<Vec<i64>>,
    /// Test-time augmentation modes to compare, e.g. `none,half-turn,flip-vflip` (default: the
    /// checkpoint's own). Each image runs through the network once per distinct pass.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub tta: Option<Vec<crate::config::Tta>>,
    /// Ways to combine the TTA passes' maps to compare, `mean,min` (default: the checkpoint's own).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub tta_reduce: Option<Vec<crate::config::TtaReduce>>,
    /// Score on the CPU even when CUDA is available.
    #[arg(long)]
    pub cpu: bool,
}

/// Compare map smoothings, image-score rules (filters and lines) and test-time augmentations on
/// labelled test images without retraining: prints image AUROC, pixel AUROC, pixel AP and AUPRO
/// per row, marks the checkpoint's own row and the best image AUROC, pixel AUROC and AUPRO, and the `trainer
/// recalibrate` command that sets a row. Choosing on the images you then report on is
/// optimistic: keep some apart.
///
/// # Errors
/// An unreadable checkpoint, test image or mask; a sigma outside 0..=16 px, a floor outside
/// 0..=0.5, an even filter, a
/// line outside 3 up to the input's longer side.
pub fn smoothing(args: SmoothingArgs) -> anyhow::Result<()> {
    let SmoothingArgs { checkpoint, data, sigmas, map_floors, score_filters, score_lines, tta, tta_reduce, cpu } = args;
    let info = crate::checkpoint::load_info(&checkpoint)?;
    let own = &info.config.model;
    let grid = crate::smoothing::SmoothingGrid {
        ttas: tta.unwrap_or_else(|| vec![own.tta]),
        reduces: tta_reduce.unwrap_or_else(|| vec![own.tta_reduce]),
        sigmas,
        floors: map_floors.unwrap_or_else(|| vec![own.map_floor_quantile]),
        filters: score_filters,
        lines: score_lines.unwrap_or_else(|| if own.score_line_px > 0 { vec![own.score_line_px] } else { Vec::new() }),
    };
    if grid.ttas.iter().all(|t| t.passes() == 1) && grid.reduces.len() > 1 {
        tracing::warn!("--tta-reduce has no effect without a TTA mode of 2 or more passes in --tta");
    }
    let rows = crate::smoothing::compare_smoothing(&checkpoint, &data, &grid, device(cpu), std::io::stderr().is_terminal())?;
    let best = |f: &dyn Fn(&runtime::evaluation::MetricReport) -> Option<f64>| rows.iter().filter_map(|r| f(&r.report)).fold(f64::NEG_INFINITY, f64::max);
    let (bi, bp, ba) = (best(&|r| r.image_auroc), best(&|r| r.pixel_auroc), best(&|r| r.aupro));
    // Bold where the printed value equals the printed best (ties at 4 decimals all marked).
    let mark = |v: Option<f64>, b: f64| if v.is_some() && opt(v) == opt(Some(b)) { format!("**{}**", opt(v)) } else { opt(v) };
    let own_rule = match own.score_line_px {
        0 => crate::smoothing::ScoreRule::Filter(own.score_filter_px),
        l => crate::smoothing::ScoreRule::Line(l),
    };
    println!("| TTA | passes combined by | map sigma px | map floor q | image score | image AUROC | pixel AUROC | pixel AP | AUPRO (0.3) | image F1-max |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let one_pass = r.tta.passes() == 1;
        let same_tta = r.tta == own.tta && (one_pass || r.tta_reduce == own.tta_reduce);
        let mine = if same_tta && r.map_sigma_px == own.map_sigma_px && r.map_floor_quantile == own.map_floor_quantile && r.score == own_rule { " (checkpoint)" } else { "" };
        let reduce = if one_pass { "-" } else { r.tta_reduce.name() };
        let m = &r.report;
        println!(
            "| {}{mine} | {reduce} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.tta.name(),
            r.map_sigma_px,
            r.map_floor_quantile,
            r.score,
            mark(m.image_auroc, bi),
            mark(m.pixel_auroc, bp),
            opt(m.pixel_ap),
            mark(m.aupro, ba),
            opt(m.image_f1_max)
        );
    }
    println!();
    println!("{} labelled test images ({} defective) of {}; best image AUROC, pixel AUROC and AUPRO in bold.", rows[0].report.labelled_images, rows[0].report.defective_images, data.display());
    println!(
        "set a row: trainer recalibrate --checkpoint {} --tta T --tta-reduce R --map-sigma S --map-floor Q (--score-line 0 --score-filter K | --score-line L) --out DIR   (then trainer export)",
        checkpoint.display()
    );
    Ok(())
}
