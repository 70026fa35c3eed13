//! `trainer`: learn what good parts look like (FFC-AD), calibrate, evaluate, export ONNX. Parses
//! the arguments and calls the subcommand's function in `trainer::commands`.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "trainer", version, about = "FFC-AD trainer: train on good images only, evaluate, export ONNX for the runtime")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train on `<data>/train/good`, calibrate the threshold on held-out good images, save
    /// `<out>/checkpoint.safetensors` + `checkpoint.json` and the validation curve
    /// `<out>/validation.png` / `validation.csv`.
    Train(trainer::commands::train::TrainArgs),
    /// Evaluate a checkpoint on `<data>/test` with tch: image AUROC, pixel AUROC, pixel AP, AUPRO,
    /// F1-max and the F1-optimal threshold, and image AUROC per defect area.
    Eval(trainer::commands::eval::EvalArgs),
    /// Export a checkpoint to ONNX (f32 or int8) for the runtime and check tch-vs-tract agreement.
    Export(trainer::commands::export::ExportArgs),
    /// Recalibrate a trained checkpoint without retraining: change the map smoothing, the
    /// image-score filter or line, or the target false-reject rate, score the held-out good images again
    /// and recompute the threshold. Writes `<out>/checkpoint.safetensors` + `.json`; export that
    /// as usual. (Also accepted as `trainer calibrate`, its name before this release.)
    #[command(alias = "calibrate")]
    Recalibrate(trainer::commands::recalibrate::RecalibrateArgs),
    /// Compare map smoothings and image-score filters on labelled test images without
    /// retraining: image AUROC, pixel AUROC, pixel AP and AUPRO per row of map smoothing (sigma),
    /// image-score filter or line, map floor and TTA, then set the chosen row with `trainer recalibrate`.
    Smoothing(trainer::commands::smoothing::SmoothingArgs),
    /// Write a labelled test set of the checkpoint's held-out good images and the same images
    /// with the training's synthetic defects (MVTec AD layout), to compare scoring settings
    /// with `trainer smoothing` where no real defect is labelled.
    SyntheticTest(trainer::commands::synthetic_test::SyntheticTestArgs),
    /// Run the paper's ablations (Tables 12-16) on one category: each variant changes one knob of
    /// the base config, is trained and evaluated; writes `<out>/ablation.md` (table) and
    /// `ablation.json`, updated after every variant. Finished variants are reused on a rerun.
    Ablate(trainer::commands::ablate::AblateArgs),
    /// Print parameter count, MACs and FLOPs (= 2 x MACs) of a configuration.
    Info(trainer::commands::info::InfoArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // `trainer info | head`: end quietly when a pipe it writes to (stdout or stderr) closes, as
    // command-line tools do, instead of panicking in println!. Not for the long runs (`train`,
    // `ablate`): a closed log pipe must not end hours of training without its checkpoint or
    // resume point. Not in the runtime: on the line it must not die of a pipe.
    #[cfg(unix)]
    if !matches!(cli.command, Command::Train(_) | Command::Ablate(_)) {
        // SAFETY: called before any thread starts; SIG_DFL is a valid disposition for SIGPIPE.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    runtime::cli::run_main(|| run(cli))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // Every command but `info` runs libtorch, whose per-step allocations glibc would otherwise
    // hand back to the kernel and fault in again (`trainer::heap`).
    if !matches!(cli.command, Command::Info(_)) {
        for refused in trainer::heap::keep_freed_memory() {
            tracing::warn!("malloc refused {refused}: training runs, with more page faults");
        }
    }
    match cli.command {
        Command::Train(args) => trainer::commands::train::train(args),
        Command::Eval(args) => trainer::commands::eval::eval(args),
        Command::Export(args) => trainer::commands::export::export(args),
        Command::Recalibrate(args) => trainer::commands::recalibrate::recalibrate(args),
        Command::Smoothing(args) => trainer::commands::smoothing::smoothing(args),
        Command::SyntheticTest(args) => trainer::commands::synthetic_test::synthetic_test(args),
        Command::Ablate(args) => trainer::commands::ablate::ablate(args),
        Command::Info(args) => trainer::commands::info::info(args),
    }
}
