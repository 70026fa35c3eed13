//! `trainer train`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use super::{device, device_name, print_calibration, ConfigArgs};

/// Arguments of `trainer train`.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// Data set root in the MVTec AD layout, or a VisA category folder (`VisA/candle`, split
    /// by `VisA/split_csv/1cls.csv`).
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub cfg: ConfigArgs,
    /// Output folder.
    #[arg(long, default_value = "out")]
    pub out: PathBuf,
    /// Train on the CPU even when CUDA is available.
    #[arg(long)]
    pub cpu: bool,
    /// Continue from the resume point in `<out>/resume/` (same data, config and overrides).
    /// Ctrl-C or SIGTERM during training writes one; so does every --save-every steps.
    #[arg(long)]
    pub resume: bool,
    /// Write a resume point every N steps (default: every 10 % of the steps; 0 = only on
    /// Ctrl-C / SIGTERM).
    #[arg(long)]
    pub save_every: Option<usize>,
    /// Memory for decoded training images in MiB; images beyond it are decoded from disk
    /// each time they are drawn, so memory stays bounded however large the data set.
    #[arg(long, default_value_t = 2048)]
    pub cache_mb: usize,
}

/// Train on `<data>/train/good`, calibrate the threshold on held-out good images, save
/// `<out>/checkpoint.safetensors` + `checkpoint.json` and the validation curve
/// `<out>/validation.png` / `validation.csv`.
///
/// # Errors
/// `--out` inside `--data`, a bad config or override, unreadable or too few images, a resume
/// point that does not match, a run stopped by a signal (with the resume point to continue
/// from), or a file that cannot be written. A failed run removes the `--out` folder it created
/// while it is still empty.
pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    let TrainArgs { data, cfg, out, cpu, resume, save_every, cache_mb } = args;
    crate::data::refuse_out_inside_data(&data, &out)?;
    let config = cfg.resolve(Some(&data))?;
    let mut opts = crate::train::TrainOptions::new(data, config, out);
    opts.device = device(cpu);
    opts.progress = std::io::stderr().is_terminal();
    opts.resume = resume;
    opts.save_every = save_every.unwrap_or(opts.save_every);
    opts.cache_bytes = cache_mb << 20;
    // First Ctrl-C / SIGTERM: finish the step and write a resume point; a second one
    // ends the process at once.
    let interrupt = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, interrupt.clone())?;
        signal_hook::flag::register(sig, interrupt.clone())?;
    }
    opts.interrupt = Some(interrupt);
    // A run that fails (e.g. too few images, a --resume without a resume point) removes
    // the --out folder it created if nothing was written into it.
    let created = crate::data::CreatedOut::before(&opts.out_dir);
    let outcome = crate::train::run(&opts);
    if outcome.is_err() {
        created.remove_empty();
    }
    let (weights, info) = match outcome? {
        crate::train::TrainOutcome::Finished { weights, info } => (weights, *info),
        crate::train::TrainOutcome::Stopped { step, resume_dir } => {
            anyhow::bail!("interrupted after step {step} of {}; resume point {}: run the same command with --resume to continue", opts.config.steps, resume_dir.display())
        }
    };
    println!("checkpoint  {}", weights.display());
    println!("category    {}  ({} train images, {} held out)", info.category, info.train_images, info.holdout.len());
    println!("parameters  {}", info.parameters);
    println!(
        "train time  {:.1} s for {} steps x {} ({:.1} images/s) on {}",
        info.wall_time_s,
        info.steps_done,
        info.config.batch_size,
        (info.steps_done * info.config.batch_size) as f64 / info.wall_time_s,
        device_name(opts.device)
    );
    print_calibration(&info);
    println!("validation  {} (curve on held-out good images; numbers in validation.csv)", weights.with_file_name("validation.png").display());
    println!("{}", next_steps(&weights, &opts.data_root, &program("trainer"), &program("runtime")));
    Ok(())
}

/// What to run after training: export the checkpoint, then score the training folder itself
/// with the exported model, whose list of least normal images names worn or defective parts
/// among the "good" ones (RESULTS.md "Session 34": on BSData they cost the maps 0.08 pixel AUROC).
/// The audit line needs `DATA/train` (the MVTec layout); a VisA category lists its training
/// images in a CSV instead, so it gets the export line only.
/// `trainer` and `runtime` are the commands to print (see [`program`]).
fn next_steps(weights: &Path, data: &Path, trainer: &str, runtime: &str) -> String {
    let onnx = weights.with_file_name("model.onnx");
    let mut s = format!("next        {trainer} export --checkpoint {} --out {}", sh(weights), sh(&onnx));
    if data.join("train").is_dir() {
        s += &format!(
            "\n            {runtime} inspect --model {} --out {} --overlays all --list 20 {}   # the training images it finds least normal: look for worn or defective parts",
            sh(&onnx),
            sh(&weights.with_file_name("audit")),
            sh(&data.join("train"))
        );
    }
    s
}

/// How to run the product's program `name` from here: its path beside this executable (relative
/// to the working directory when under it, e.g. `target/debug/runtime`), as built binaries are
/// rarely on PATH; the bare name when it is not there.
fn program(name: &str) -> String {
    let Some(path) = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join(name))).filter(|p| p.is_file()) else {
        return name.to_string();
    };
    let rel = std::env::current_dir().ok().and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf));
    sh(&rel.unwrap_or(path))
}

/// A path as one shell word: quoted where it holds spaces or other characters a shell reads.
fn sh(path: &Path) -> String {
    let s = path.to_string_lossy();
    shlex::try_quote(&s).map_or_else(|_| s.to_string(), |q| q.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_steps_export_beside_the_checkpoint_and_audit_the_training_folder() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("bolt");
        std::fs::create_dir_all(data.join("train/good")).unwrap();
        let s = next_steps(Path::new("runs/bolt/checkpoint.safetensors"), &data, "trainer", "runtime");
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "next        trainer export --checkpoint runs/bolt/checkpoint.safetensors --out runs/bolt/model.onnx");
        let audit = format!("runtime inspect --model runs/bolt/model.onnx --out runs/bolt/audit --overlays all --list 20 {}   #", data.join("train").display());
        assert!(lines[1].trim_start().starts_with(&audit), "{}", lines[1]);
        assert_eq!(lines.len(), 2);
        // A path with a space stays one word when pasted.
        let s = next_steps(Path::new("my runs/checkpoint.safetensors"), &data, "trainer", "runtime");
        assert!(s.starts_with("next        trainer export --checkpoint 'my runs/checkpoint.safetensors' --out 'my runs/model.onnx'\n"), "{s}");
        // No DATA/train (a VisA category: its training images are rows of a CSV): the export only.
        assert_eq!(next_steps(Path::new("r/checkpoint.safetensors"), d.path(), "trainer", "runtime").lines().count(), 1);
        // The programs as given (the built binaries' paths).
        assert!(next_steps(Path::new("r/checkpoint.safetensors"), d.path(), "target/debug/trainer", "x").starts_with("next        target/debug/trainer export "));
        // A program that is not beside this executable: its bare name.
        assert_eq!(program("no-such-program"), "no-such-program");
    }
}
