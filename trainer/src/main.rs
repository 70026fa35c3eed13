//! `trainer`: learn what good parts look like (FFC-AD), calibrate, evaluate, export ONNX.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tch::{nn, Device};
use trainer::config::TrainConfig;

#[derive(Parser)]
#[command(name = "trainer", version, about = "FFC-AD trainer: train on good images only, evaluate, export ONNX for the runtime")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// Preset (`small`, `paper`, `small-legacy` = the recipe before the localization work) or a
    /// TOML file with the fields of the training config.
    #[arg(long, default_value = "small")]
    config: String,
    /// Override: optimisation steps.
    #[arg(long)]
    steps: Option<usize>,
    /// Override: seed of data order, synthesis and initialisation.
    #[arg(long)]
    seed: Option<u64>,
    /// Override: optimizer (paper Table 16: SGD beats AdamW).
    #[arg(long, value_enum)]
    optimizer: Option<trainer::config::OptimizerKind>,
    /// Override: peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Override: batch size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Override: model input size as HEIGHTxWIDTH in px (multiples of 32, at least 64), e.g. 64x160.
    #[arg(long, value_parser = parse_size)]
    size: Option<(i64, i64)>,
    /// Override: side of the mean filter on the anomaly map before its max gives the image score,
    /// in px (odd; 1 = raw max). Changeable after training with `trainer recalibrate`.
    #[arg(long)]
    score_filter: Option<i64>,
    /// Override: augmentation of the good images, comma-separated: flip (left-right), vflip
    /// (top-bottom), rot90 (quarter turns; half turns on non-square inputs). Off by default: use
    /// only what the part allows.
    #[arg(long, value_enum, value_delimiter = ',')]
    augment: Option<Vec<trainer::config::Augment>>,
    /// Folder of texture images for synthetic defects (any photos of surfaces you have, as DRAEM
    /// uses the DTD set); nothing is downloaded or shipped.
    #[arg(long)]
    textures: Option<PathBuf>,
    /// Override: significant bits of 16-bit training images, 8..=16, LSB-aligned (a 12-bit
    /// sensor's PNGs hold 0..=4095; default 16). Stored in the model: the runtime reads the line's
    /// Y16 frames and 16-bit files at the same depth. 8-bit images are not affected.
    #[arg(long, value_name = "BITS")]
    bit_depth: Option<runtime::bit_depth::BitDepth>,
}

fn parse_size(s: &str) -> Result<(i64, i64), String> {
    let (h, w) = s.split_once('x').ok_or_else(|| format!("`{s}`: expected HEIGHTxWIDTH, e.g. 64x160"))?;
    let p = |v: &str| v.trim().parse::<i64>().map_err(|e| format!("`{s}`: {e}"));
    Ok((p(h)?, p(w)?))
}

impl ConfigArgs {
    /// The config with the overrides applied; without `--size`, the input size is chosen from the
    /// training images of `data` (median aspect ratio at the preset's pixel budget) and printed.
    fn resolve(&self, data: Option<&std::path::Path>) -> anyhow::Result<TrainConfig> {
        let mut cfg = if self.config.ends_with(".toml") { TrainConfig::load(std::path::Path::new(&self.config))? } else { TrainConfig::preset(&self.config)? };
        if let Some(s) = self.steps {
            cfg.steps = s;
        }
        if let Some(s) = self.seed {
            cfg.seed = s;
        }
        if let Some(o) = self.optimizer {
            cfg.optimizer = o;
        }
        if let Some(lr) = self.lr {
            cfg.lr = lr;
        }
        if let Some(b) = self.batch_size {
            cfg.batch_size = b;
        }
        if let Some((h, w)) = self.size {
            cfg.model.input_height = h;
            cfg.model.input_width = w;
        }
        if let Some(k) = self.score_filter {
            cfg.model.score_filter_px = k;
        }
        if let Some(d) = self.bit_depth {
            cfg.bit_depth = d;
        }
        if let Some(a) = &self.augment {
            cfg.augment = a.clone();
        }
        if let Some(t) = &self.textures {
            anyhow::ensure!(t.is_dir(), "--textures {}: not a folder", t.display());
            cfg.textures = Some(t.canonicalize().unwrap_or_else(|_| t.clone()));
        }
        if let (None, Some(data), true) = (self.size, data, cfg.auto_size_pixels > 0) {
            let c = trainer::autosize::choose_for_data(data, cfg.auto_size_pixels)?;
            cfg.model.input_height = c.height;
            cfg.model.input_width = c.width;
            println!(
                "input size  {}x{} px (median aspect {:.2} of {} training images at ~{} px; --size overrides)",
                c.height, c.width, c.median_aspect, c.images, cfg.auto_size_pixels
            );
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Train on `<data>/train/good`, calibrate the threshold on held-out good images, save
    /// `<out>/checkpoint.safetensors` + `checkpoint.json` and the validation curve
    /// `<out>/validation.png` / `validation.csv`.
    Train {
        /// Data set root in the MVTec AD layout, or a VisA category folder (`VisA/candle`, split
        /// by `VisA/split_csv/1cls.csv`).
        #[arg(long)]
        data: PathBuf,
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Output folder.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Train on the CPU even when CUDA is available.
        #[arg(long)]
        cpu: bool,
        /// Continue from the resume point in `<out>/resume/` (same data, config and overrides).
        /// Ctrl-C or SIGTERM during training writes one; so does every --save-every steps.
        #[arg(long)]
        resume: bool,
        /// Write a resume point every N steps (default: every 10 % of the steps; 0 = only on
        /// Ctrl-C / SIGTERM).
        #[arg(long)]
        save_every: Option<usize>,
        /// Memory for decoded training images in MiB; images beyond it are decoded from disk
        /// each time they are drawn, so memory stays bounded however large the data set.
        #[arg(long, default_value_t = 2048)]
        cache_mb: usize,
    },
    /// Evaluate a checkpoint on `<data>/test` with tch: image AUROC, pixel AUROC, pixel AP, F1-max.
    Eval {
        /// Checkpoint weights (`checkpoint.safetensors` from `trainer train`; its .json beside it).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Data set root in the MVTec AD layout (its test/ and ground_truth/ are used), or a VisA
        /// category folder.
        #[arg(long)]
        data: PathBuf,
        /// Evaluate on the CPU even when CUDA is available.
        #[arg(long)]
        cpu: bool,
    },
    /// Export a checkpoint to ONNX (f32 or int8) for the runtime and check tch-vs-tract agreement.
    Export {
        /// Checkpoint weights (`checkpoint.safetensors` from `trainer train`; its .json beside it).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Output ONNX file.
        #[arg(long, default_value = "out/model.onnx")]
        out: PathBuf,
        /// Also evaluate on `<data>/test` and store the metrics in the model's metadata.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Numeric format: `int8` quantizes the convolutions (per-channel int8 weights, uint8
        /// activations whose ranges are observed on good training images); the spectral parts stay f32.
        #[arg(long, value_enum, default_value = "f32")]
        precision: trainer::evaluate::Precision,
        /// int8 only: `qlinear` (QLinearConv) or `qdq` (QuantizeLinear/DequantizeLinear around Conv).
        #[arg(long, value_enum, default_value = "qlinear")]
        int8_form: trainer::export::quant::QuantForm,
        /// int8 only: good training images whose activations set the int8 ranges (uint8 min/max
        /// per tensor).
        #[arg(long, alias = "calibration-images", default_value_t = 32)]
        int8_range_images: usize,
        /// Threshold written into the model: `quantile` (of held-out good scores, for the
        /// checkpoint's target false-reject rate) or `f1` (F1-optimal on the labelled images of
        /// --data; f32 only; metrics on those same images are then optimistic).
        #[arg(long, value_enum, default_value = "quantile")]
        threshold: ThresholdChoice,
    },
    /// Recalibrate a trained checkpoint without retraining: change the map smoothing, the
    /// image-score filter or the target false-reject rate, score the held-out good images again
    /// and recompute the threshold. Writes `<out>/checkpoint.safetensors` + `.json`; export that
    /// as usual. (Also accepted as `trainer calibrate`, its name before this release.)
    #[command(alias = "calibrate")]
    Recalibrate {
        /// Checkpoint weights (`checkpoint.safetensors` from `trainer train`; its .json beside it).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Side of the mean filter on the anomaly map before its max (odd, px; 1 = raw max).
        #[arg(long)]
        score_filter: Option<i64>,
        /// Standard deviation of the Gaussian that smooths the anomaly map, px (0 = raw map).
        #[arg(long)]
        map_sigma: Option<f64>,
        /// Target false-reject rate on good parts, e.g. 0.01 (threshold = 1 - rate quantile of
        /// the held-out good scores).
        #[arg(long)]
        target_frr: Option<f64>,
        /// Output folder for `checkpoint.safetensors` + `.json` (may be the checkpoint's own
        /// folder: a checkpoint of that name is replaced, its weights unchanged).
        #[arg(long)]
        out: PathBuf,
        /// Score on the CPU even when CUDA is available.
        #[arg(long)]
        cpu: bool,
    },
    /// Run the paper's ablations (Tables 12-16) on one category: each variant changes one knob of
    /// the base config, is trained and evaluated; writes `<out>/ablation.md` (table) and
    /// `ablation.json`, updated after every variant. Finished variants are reused on a rerun.
    Ablate {
        /// Data set root in the MVTec AD layout (or a VisA category folder).
        #[arg(long)]
        data: PathBuf,
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Output folder: one sub-folder per variant plus the table.
        #[arg(long, default_value = "out/ablation")]
        out: PathBuf,
        /// Only these variants (comma-separated names; `base` is always run first). Names: base,
        /// encoder-plain, dae-plain, layers-1, layers-3, ratio-0.25, ratio-0.75, hsas-off,
        /// hsas-p0.01, hsas-p0.04, hsas-p0.2, hsas-1d, adamw; recipe parts: stride-32, deconv, head-3, loss-l1,
        /// loss-dice, synth-old, no-strokes, no-rotate, sigma-0, recipe-old.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Train on the CPU even when CUDA is available.
        #[arg(long)]
        cpu: bool,
    },
    /// Print parameter count, MACs and FLOPs (= 2 x MACs) of a configuration.
    Info {
        #[command(flatten)]
        cfg: ConfigArgs,
    },
}

/// Where the deployed threshold comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ThresholdChoice {
    Quantile,
    F1,
}

fn main() -> std::process::ExitCode {
    runtime::cli::run_main(|| run(Cli::parse()))
}

fn device(cpu: bool) -> Device {
    if cpu { Device::Cpu } else { Device::cuda_if_available() }
}

fn opt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.4}"))
}

/// The threshold, the held-out good score statistics and the images with the highest scores, with
/// a warning when too few good images were held out for the target false-reject rate.
fn print_calibration(info: &trainer::checkpoint::CheckpointInfo) {
    let m = &info.config.model;
    println!("score       max of the {0}x{0} px mean-filtered anomaly map (map smoothed with sigma {1} px)", m.score_filter_px, m.map_sigma_px);
    println!("threshold   {:.4}  ({}; held-out good images: {})", info.threshold, info.calibration.method, info.calibration.good_images);
    let st = &info.good_score_stats;
    println!("good scores mean {:.4}, std {:.4}, min {:.4}, max {:.4}", st.mean, st.std, st.min, st.max);
    let top: Vec<String> = info.highest_good_scores.iter().take(3).map(|h| format!("{} {:.4}", trainer::threshold::short_name(&h.image), h.score)).collect();
    println!("highest     {}", top.join(", "));
    if let Some(w) = trainer::threshold::small_holdout_warning(info.calibration.good_images, info.calibration.target_false_reject_rate) {
        tracing::warn!("{w}");
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train { data, cfg, out, cpu, resume, save_every, cache_mb } => {
            trainer::data::refuse_out_inside_data(&data, &out)?;
            let config = cfg.resolve(Some(&data))?;
            let mut opts = trainer::train::TrainOptions::new(data, config, out);
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
            let created = trainer::data::CreatedOut::before(&opts.out_dir);
            let outcome = trainer::train::run(&opts);
            if outcome.is_err() {
                created.remove_empty();
            }
            let (weights, info) = match outcome? {
                trainer::train::TrainOutcome::Finished { weights, info } => (weights, *info),
                trainer::train::TrainOutcome::Stopped { step, resume_dir } => {
                    anyhow::bail!("interrupted after step {step} of {}; resume point {}: run the same command with --resume to continue", opts.config.steps, resume_dir.display())
                }
            };
            println!("checkpoint  {}", weights.display());
            println!("category    {}  ({} train images, {} held out)", info.category, info.train_images, info.holdout.len());
            println!("parameters  {}", info.parameters);
            println!(
                "train time  {:.1} s for {} steps x {} ({:.1} images/s)",
                info.wall_time_s,
                info.steps_done,
                info.config.batch_size,
                (info.steps_done * info.config.batch_size) as f64 / info.wall_time_s
            );
            print_calibration(&info);
            println!("validation  {} (curve on held-out good images; numbers in validation.csv)", weights.with_file_name("validation.png").display());
        }
        Command::Eval { checkpoint, data, cpu } => {
            let r = trainer::evaluate::evaluate(&checkpoint, &data, device(cpu), std::io::stderr().is_terminal())?;
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
        }
        Command::Export { checkpoint, out, data, precision, int8_form, int8_range_images, threshold } => {
            let mut opts = trainer::evaluate::ExportOptions { precision, quant_form: int8_form, int8_range_images, data_root: data.clone(), ..Default::default() };
            if threshold == ThresholdChoice::F1 {
                anyhow::ensure!(data.is_some(), "--threshold f1 needs --data with labelled defective test images");
                anyhow::ensure!(precision == trainer::evaluate::Precision::F32, "--threshold f1 is computed with the f32 model; export int8 with --threshold quantile");
            }
            if precision == trainer::evaluate::Precision::Int8 {
                // Fail before the (long) evaluation when the calibration images are not there.
                trainer::evaluate::int8_images_root(&trainer::checkpoint::load_info(&checkpoint)?, &opts)?;
            }
            let metrics = match data {
                Some(d) => {
                    let r = trainer::evaluate::evaluate(&checkpoint, &d, Device::Cpu, true)?;
                    println!(
                        "tch eval    {} test images ({} defective): image AUROC {}, pixel AUROC {}, AUPRO {}",
                        r.labelled_images,
                        r.defective_images,
                        opt(r.image_auroc),
                        opt(r.pixel_auroc),
                        opt(r.aupro)
                    );
                    if threshold == ThresholdChoice::F1 {
                        let t = r.image_f1_threshold.ok_or_else(|| anyhow::anyhow!("--threshold f1: the test images of --data hold no defective image"))?;
                        anyhow::ensure!(
                            r.defective_images < r.labelled_images,
                            "--threshold f1: the test images of --data hold no good image, so any threshold below every score is F1-optimal; add good test images or use --threshold quantile"
                        );
                        println!("threshold   {t:.4}  (F1-optimal on the {} test images: F1 {})", r.labelled_images, opt(r.image_f1_max));
                        opts.deployed_threshold = Some((t, format!("F1-optimal image score threshold on {} labelled test images ({} defective)", r.labelled_images, r.defective_images)));
                    }
                    serde_json::to_value(r)?
                }
                None => serde_json::json!({}),
            };
            let r = trainer::evaluate::export_checkpoint(&checkpoint, &out, metrics, &opts)?;
            println!("model       {} ({:.1} MB)", r.path.display(), r.bytes as f64 / 1e6);
            println!("threshold   {:.4}  ({})", r.threshold, r.threshold_method);
            println!("parameters  {}", r.parameters);
            println!("MACs        {:.3} G  (FLOPs {:.3} G)", r.macs as f64 / 1e9, 2.0 * r.macs as f64 / 1e9);
            println!("operators   {}", r.op_types.join(", "));
            let what = if precision == trainer::evaluate::Precision::Int8 { "int8 error: tch f32 vs tract int8" } else { "parity      tch vs tract" };
            println!("{what} on {} held-out images: max |map diff| {:.2e}, max |score diff| {:.2e}", r.parity_images, r.parity_max_abs_map, r.parity_max_abs_score);
        }
        Command::Recalibrate { checkpoint, score_filter, map_sigma, target_frr, out, cpu } => {
            let opts = trainer::recalibrate::RecalibrateOptions {
                score_filter_px: score_filter,
                map_sigma_px: map_sigma,
                target_false_reject_rate: target_frr,
                device: Some(device(cpu)),
                progress: std::io::stderr().is_terminal(),
            };
            let (weights, info) = trainer::recalibrate::recalibrate(&checkpoint, &out, &opts)?;
            println!("checkpoint  {}", weights.display());
            print_calibration(&info);
        }
        Command::Ablate { data, cfg, out, only, cpu } => {
            trainer::data::refuse_out_inside_data(&data, &out)?;
            let base = cfg.resolve(Some(&data))?;
            let grid = trainer::ablation::paper_grid(&base);
            let only: Vec<String> = only.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
            for name in &only {
                anyhow::ensure!(grid.iter().any(|v| &v.name == name), "--only: unknown variant `{name}`; expected one of {}", grid.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", "));
            }
            let variants: Vec<_> = grid.into_iter().enumerate().filter(|(i, v)| *i == 0 || only.is_empty() || only.contains(&v.name)).map(|(_, v)| v).collect();
            let opts = trainer::ablation::AblationOptions { data_root: data.clone(), out_dir: out.clone(), device: device(cpu), progress: std::io::stderr().is_terminal() };
            let rows = trainer::ablation::run_grid(&variants, &opts)?;
            print!("{}", trainer::ablation::markdown(&rows, Some(&base), &data));
            println!("\ntable       {}", out.join("ablation.md").display());
        }
        Command::Info { cfg } => {
            let config = cfg.resolve(None)?;
            let vs = nn::VarStore::new(Device::Cpu);
            let model = trainer::model::FfcAd::new(&vs.root(), &config.model)?;
            let meta = trainer::evaluate::uncalibrated_metadata(&config.model);
            let e = trainer::export::build(&model, &meta);
            println!("config      {} ({}x{} px)", config.preset, config.model.input_height, config.model.input_width);
            println!("parameters  {} ({:.2} M)", trainer::model::parameter_count(&vs), trainer::model::parameter_count(&vs) as f64 / 1e6);
            println!("MACs        {:.3} G", e.macs as f64 / 1e9);
            println!("FLOPs       {:.3} G (2 x MACs; FourierUnits counted as their DFT-basis MatMuls)", 2.0 * e.macs as f64 / 1e9);
        }
    }
    Ok(())
}
