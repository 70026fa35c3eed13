//! `trainer eval`.

use std::io::IsTerminal;
use std::path::PathBuf;

use super::{device, opt};

/// Arguments of `trainer eval`.
#[derive(clap::Args)]
pub struct EvalArgs {
    /// Checkpoint weights (`checkpoint.safetensors` from `trainer train`; its .json beside it).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Data set root in the MVTec AD layout (its test/ and ground_truth/ are used), or a VisA
    /// category folder.
    #[arg(long)]
    pub data: PathBuf,
    /// Evaluate on the CPU even when CUDA is available.
    #[arg(long)]
    pub cpu: bool,
}

/// Evaluate a checkpoint on `<data>/test` with tch: image AUROC, pixel AUROC, pixel AP, F1-max,
/// and image AUROC per defect area (`runtime::evaluation::render_defect_areas`).
///
/// # Errors
/// An unreadable checkpoint or test set.
pub fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let EvalArgs { checkpoint, data, cpu } = args;
    let r = crate::evaluate::evaluate(&checkpoint, &data, device(cpu), std::io::stderr().is_terminal())?;
    println!("| images (defective) | image AUROC | pixel AUROC | pixel AP | AUPRO | image F1-max | F1-optimal threshold |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {} ({}) | {} | {} | {} | {} | {} | {} |",
        r.labelled_images,
        r.defective_images,
        opt(r.image_auroc),
        opt(r.pixel_auroc),
        opt(r.pixel_ap),
        opt(r.aupro),
        opt(r.image_f1_max),
        opt(r.image_f1_threshold.map(f64::from))
    );
    for note in r.notes() {
        println!("({note})");
    }
    // No threshold is deployed here: the bins' "rejected" column reads n/a.
    let bins = runtime::evaluation::render_defect_areas(&r.by_defect_area, r.defective_images);
    if !bins.is_empty() {
        print!("\n{bins}");
    }
    Ok(())
}
