//! `trainer synthetic-test`.

use std::io::IsTerminal;
use std::path::PathBuf;

/// Arguments of `trainer synthetic-test`.
#[derive(clap::Args)]
pub struct SyntheticTestArgs {
    /// Checkpoint weights (`checkpoint.safetensors` from `trainer train`; its .json beside it).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Folder to write the test set to (must not exist or be empty; default: `synthetic-test`
    /// beside the checkpoint).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Synthetic defects drawn on each held-out good image (1 to 100).
    #[arg(long, default_value_t = 4)]
    pub per_image: usize,
    /// Seed of the draw (the same seed draws the same defects).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Write a labelled test set from the checkpoint's held-out good images (never trained on) and the
/// same images with the training's synthetic defects, in the MVTec AD layout, then print the
/// `trainer smoothing` command that compares scoring settings on it. For a part without labelled
/// real defects, and as a check that does not choose on the images a result is reported on.
///
/// # Errors
/// Those of [`crate::synthetic_test::write_synthetic_test_set`]: a checkpoint that does not load,
/// an unreadable held-out image, an `--out` that exists and is not an empty folder, `--per-image`
/// outside 1 to 100.
pub fn synthetic_test(args: SyntheticTestArgs) -> anyhow::Result<()> {
    let SyntheticTestArgs { checkpoint, out, per_image, seed } = args;
    let out = out.unwrap_or_else(|| crate::synthetic_test::default_out(&checkpoint));
    let set = crate::synthetic_test::write_synthetic_test_set(&checkpoint, &out, per_image, seed, std::io::stderr().is_terminal())?;
    let info = crate::checkpoint::load_info(&checkpoint)?;
    let mut cov = set.mask_coverage.clone();
    cov.sort_by(f64::total_cmp);
    let pct = |q: f64| 100.0 * cov[((cov.len() - 1) as f64 * q).round() as usize];
    println!(
        "wrote {} good and {} defective images ({}x{} px, HxW) with masks to {}; defect area: median {:.2} % of the image (10th-90th percentile {:.2}-{:.2} %)",
        set.good,
        set.defective,
        info.config.model.input_height,
        info.config.model.input_width,
        out.display(),
        pct(0.5),
        pct(0.1),
        pct(0.9)
    );
    println!("compare scoring settings on it: trainer smoothing --checkpoint {} --data {}", checkpoint.display(), out.display());
    Ok(())
}
