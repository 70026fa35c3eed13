//! `trainer ablate`.

use std::io::IsTerminal;
use std::path::PathBuf;

use super::{device, ConfigArgs};

/// Arguments of `trainer ablate`.
#[derive(clap::Args)]
pub struct AblateArgs {
    /// Data set root in the MVTec AD layout (or a VisA category folder).
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub cfg: ConfigArgs,
    /// Output folder: one sub-folder per variant plus the table.
    #[arg(long, default_value = "out/ablation")]
    pub out: PathBuf,
    /// Only these variants (comma-separated names; `base` is always run first). Names: base,
    /// encoder-plain, dae-plain, layers-1, layers-3, ratio-0.25, ratio-0.75, hsas-off,
    /// hsas-p0.01, hsas-p0.04, hsas-p0.2, hsas-1d, adamw; recipe parts: stride-32, deconv, head-3, loss-l1,
    /// loss-dice, synth-old, no-strokes, no-rotate, masks-axis, masks-mixed, sigma-0, no-coords,
    /// recipe-old; options: spots, stroke-shade, coords-both, augment-mirror, augment-all,
    /// augment-colour, crop-2x, head-out-nonnegative, head-out-prior, ema.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Train on the CPU even when CUDA is available.
    #[arg(long)]
    pub cpu: bool,
}

/// Run the paper's ablations (Tables 12-16) on one category: each variant changes one knob of
/// the base config, is trained and evaluated; writes `<out>/ablation.md` (table) and
/// `ablation.json`, updated after every variant. Finished variants are reused on a rerun.
///
/// # Errors
/// `--out` inside `--data`, an unknown `--only` variant, or a variant's training failing.
pub fn ablate(args: AblateArgs) -> anyhow::Result<()> {
    let AblateArgs { data, cfg, out, only, cpu } = args;
    crate::data::refuse_out_inside_data(&data, &out)?;
    let base = cfg.resolve(Some(&data))?;
    let grid = crate::ablation::paper_grid(&base);
    let only: Vec<String> = only.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    for name in &only {
        anyhow::ensure!(grid.iter().any(|v| &v.name == name), "--only: unknown variant `{name}`; expected one of {}", grid.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", "));
    }
    let variants: Vec<_> = grid.into_iter().enumerate().filter(|(i, v)| *i == 0 || only.is_empty() || only.contains(&v.name)).map(|(_, v)| v).collect();
    let opts = crate::ablation::AblationOptions { data_root: data.clone(), out_dir: out.clone(), device: device(cpu), progress: std::io::stderr().is_terminal() };
    let rows = crate::ablation::run_grid(&variants, &opts)?;
    print!("{}", crate::ablation::markdown(&rows, Some(&base), &data));
    println!("\ntable       {}", out.join("ablation.md").display());
    Ok(())
}
