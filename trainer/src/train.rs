//! Training loop (DESIGN.md §3): synthetic defects on good images, reconstruction + segmentation
//! losses, SGD with momentum (paper Table 16) and a cosine schedule; then threshold calibration on
//! held-out good images and a `.safetensors` checkpoint.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rand::{seq::SliceRandom, SeedableRng};
use rand_chacha::ChaCha12Rng;
use anyhow::Context;
use runtime::metadata::ScoreStats;
use tch::{nn, Device, Kind};

use crate::checkpoint::{save_info, CheckpointInfo};
use crate::config::TrainConfig;
use crate::curve::{plot, write_csv, CurvePoint};
use crate::data::{category_of, holdout_split, ImageCache};
use crate::losses::{reconstruction_loss, segmentation_loss, SegWeights};
use crate::model::{parameter_count, FfcAd};
use crate::optimizer::Optimizer;
use crate::resume::{self, ResumeState};
use crate::synth::Synthesizer;

/// Where and how to train.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub data_root: PathBuf,
    pub config: TrainConfig,
    /// Output folder; gets `checkpoint.safetensors` and `checkpoint.json`, and `resume/` while
    /// training runs.
    pub out_dir: PathBuf,
    pub device: Device,
    pub progress: bool,
    /// Write a resume point every this many steps (0 = only when stopped or interrupted).
    pub save_every: usize,
    /// Continue from the resume point in `out_dir` instead of starting afresh.
    pub resume: bool,
    /// Stop with a resume point once this many steps are done in total (for callers that split
    /// training into sessions, and tests).
    pub stop_after: Option<usize>,
    /// When set (by SIGINT / SIGTERM in the CLI), stop after the current step with a resume point.
    pub interrupt: Option<Arc<AtomicBool>>,
    /// Bytes of decoded images kept in memory (see [`ImageCache`]).
    pub cache_bytes: usize,
}

/// Default memory budget for decoded training images: 2 GiB.
pub const DEFAULT_CACHE_BYTES: usize = 2 << 30;

impl TrainOptions {
    /// Options with the defaults: CPU, no progress bar, a resume point every 10 % of the steps,
    /// no resume, the default image cache.
    pub fn new(data_root: PathBuf, config: TrainConfig, out_dir: PathBuf) -> Self {
        let save_every = (config.steps / 10).max(1);
        Self { data_root, config, out_dir, device: Device::Cpu, progress: false, save_every, resume: false, stop_after: None, interrupt: None, cache_bytes: DEFAULT_CACHE_BYTES }
    }
}

/// How a training run ended.
#[derive(Debug)]
pub enum TrainOutcome {
    /// All steps done: the calibrated checkpoint (weights path and info).
    Finished { weights: PathBuf, info: Box<CheckpointInfo> },
    /// Stopped early (interrupt or `stop_after`) after `step` steps; `trainer train --resume`
    /// continues from `resume_dir`.
    Stopped { step: usize, resume_dir: PathBuf },
}

/// Learning rate at `step`: linear warm-up over the first 5 % of steps, then cosine decay from
/// `peak` to `peak / 100`.
pub fn learning_rate(step: usize, steps: usize, peak: f64) -> f64 {
    let warm = (steps / 20).max(1);
    if step < warm {
        return peak * (step + 1) as f64 / warm as f64;
    }
    let t = (step - warm) as f64 / (steps - warm).max(1) as f64;
    peak * (0.01 + 0.99 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
}

/// Eval-mode pass over held-out good images: (mean reconstruction loss, image scores).
pub(crate) fn holdout_eval(model: &FfcAd, images: &ImageCache, device: Device) -> anyhow::Result<(f64, Vec<f32>)> {
    let _guard = tch::no_grad_guard();
    let n = images.len();
    let (mut rec, mut scores) = (0.0, Vec::with_capacity(n));
    for start in (0..n).step_by(8) {
        let idx: Vec<usize> = (start..(start + 8).min(n)).collect();
        let b = images.batch(&idx)?.to_device(device);
        let o = model.forward_t(&b, false);
        rec += reconstruction_loss(&o.recon, &b).double_value(&[]) * b.size()[0] as f64;
        let s = model.image_score(&o.anomaly_map).to_device(Device::Cpu).to_kind(Kind::Float);
        scores.extend(Vec::<f32>::try_from(&s).expect("scores to vec"));
    }
    Ok((rec / n.max(1) as f64, scores))
}

/// Trains, calibrates and saves; an early stop is an error that says how to resume. Returns the
/// weights path and the checkpoint info.
pub fn train(opts: &TrainOptions) -> anyhow::Result<(PathBuf, CheckpointInfo)> {
    match run(opts)? {
        TrainOutcome::Finished { weights, info } => Ok((weights, *info)),
        TrainOutcome::Stopped { step, resume_dir } => {
            anyhow::bail!("training stopped after step {step} of {}; resume point in {}", opts.config.steps, resume_dir.display())
        }
    }
}

/// Trains (from scratch or from the resume point), calibrates the threshold on held-out good
/// images and saves the checkpoint, or stops early with a resume point.
///
/// Determinism: the same seed gives the same run on the same machine and thread count (with more
/// than one libtorch thread, BLAS may adapt its thread count to the machine load and sum in another
/// order; `MKL_DYNAMIC=FALSE` or one thread avoids that). A resumed
/// run restores weights, optimizer state, data order and the defect-synthesis random stream
/// exactly; libtorch's own generator (HSAS dropout masks) cannot be read through tch, so it is
/// re-seeded with `seed + step` on resume: with HSAS on, a resumed run continues with other
/// dropout masks than an uninterrupted one would have drawn.
pub fn run(opts: &TrainOptions) -> anyhow::Result<TrainOutcome> {
    let cfg = &opts.config;
    cfg.validate()?;
    // Fail before hours of training, not after.
    std::fs::create_dir_all(&opts.out_dir).map_err(|e| anyhow::anyhow!("cannot create output folder {}: {e}", opts.out_dir.display()))?;
    tch::manual_seed(cfg.seed as i64);
    let mut rng = ChaCha12Rng::seed_from_u64(cfg.seed);
    let (w, h) = (cfg.model.input_width as u32, cfg.model.input_height as u32);
    let data_root = opts.data_root.canonicalize().unwrap_or_else(|_| opts.data_root.clone());

    // From the canonical root, so that a resume through another path to the same data matches.
    let all = runtime::dataset::train_good(&data_root)?;
    let (train_paths, hold_paths) = holdout_split(&all, cfg.holdout_fraction)?;
    let resumed = if opts.resume {
        let (dir, state) = resume::load(&opts.out_dir)?;
        resume::check_matches(&state, cfg, &data_root, &train_paths)?;
        resume::check_consistent(&state, train_paths.len())?;
        Some((dir, state))
    } else {
        if let Ok((dir, state)) = resume::load(&opts.out_dir) {
            tracing::warn!("starting afresh without --resume: the resume point in {} (step {}) will be replaced", dir.display(), state.step);
        }
        None
    };
    tracing::info!(train = train_paths.len(), holdout = hold_paths.len(), "loading good images at {w}x{h} px");
    let images = ImageCache::new(train_paths.clone(), w, h, cfg.bit_depth, opts.cache_bytes, "load train", opts.progress)?;
    let holdout = ImageCache::new(hold_paths.clone(), w, h, cfg.bit_depth, opts.cache_bytes.saturating_sub(images.cached_images() * ImageCache::image_bytes(w, h)), "load holdout", opts.progress)?;
    if images.cached_images() < images.len() {
        tracing::info!("{} of {} training images fit the image cache; the rest are decoded when drawn", images.cached_images(), images.len());
    }

    let textures = match &cfg.textures {
        Some(dir) => Synthesizer::load_textures(dir, w, h)?,
        None => Vec::new(),
    };
    if !textures.is_empty() {
        tracing::info!("{} texture images for synthetic defects", textures.len());
    }
    let synthesizer = Synthesizer::new(cfg.synth.clone(), textures);
    let seg_weights = SegWeights { focal: cfg.seg_focal_weight, l1: cfg.seg_l1_weight, dice: cfg.seg_dice_weight };

    let mut vs = nn::VarStore::new(opts.device);
    let model = FfcAd::new(&vs.root(), &cfg.model)?;
    let params = parameter_count(&vs);
    tracing::info!(parameters = params, device = ?opts.device, "model built");
    let mut opt = Optimizer::new(&vs, cfg);

    let n = images.len();
    let mut order: Vec<usize> = (0..n).collect();
    let mut cursor = n;
    let mut smoothed = None;
    let mut curve = Vec::new();
    // Scores of the last evaluation, which always runs after the final step: the calibration set.
    let mut good_scores = Vec::new();
    let mut first_step = 0;
    let mut wall_before = 0.0;
    if let Some((dir, state)) = resumed {
        vs.load(resume::weights_file(&dir)).map_err(|e| anyhow::anyhow!("cannot load {}: {e}", resume::weights_file(&dir).display()))?;
        opt.load(&resume::optimizer_file(&dir))?;
        let pos: u128 = state.rng_word_pos.parse().map_err(|e| anyhow::anyhow!("resume point {}: rng_word_pos `{}`: {e}", dir.display(), state.rng_word_pos))?;
        rng.set_word_pos(pos);
        tch::manual_seed(cfg.seed.wrapping_add(state.step as u64) as i64);
        (order, cursor, smoothed, curve, good_scores) = (state.order, state.cursor, state.smoothed_loss, state.curve, state.good_scores);
        first_step = state.step;
        wall_before = state.wall_time_s;
        tracing::info!("resuming at step {first_step} of {} from {}", cfg.steps, dir.display());
    }

    let bar = runtime::progress::bar(cfg.steps as u64, "train", opts.progress);
    bar.set_position(first_step as u64);
    let start = Instant::now();
    let eval_every = (cfg.steps / 20).max(1);
    for step in first_step..cfg.steps {
        let mut idx = Vec::with_capacity(cfg.batch_size);
        while idx.len() < cfg.batch_size {
            if cursor == n {
                order.shuffle(&mut rng);
                cursor = 0;
            }
            idx.push(order[cursor]);
            cursor += 1;
        }
        let clean = crate::augment::augment(&images.batch(&idx)?, &cfg.augment, &mut rng).to_device(opts.device);
        let (corrupted, mask) = synthesizer.synthesize(&clean, cfg.anomaly_probability, &mut rng);
        let out = model.forward_t(&corrupted, true);
        let rec = reconstruction_loss(&out.recon, &clean);
        let seg = segmentation_loss(&out.logits, &mask, seg_weights);
        let loss = &rec * cfg.recon_weight + &seg;
        opt.backward_step(&loss, learning_rate(step, cfg.steps, cfg.lr));
        let (l, r, s) = (loss.double_value(&[]), rec.double_value(&[]), seg.double_value(&[]));
        anyhow::ensure!(l.is_finite(), "training diverged at step {step}: loss {l}; lower `lr`");
        let sm = smoothed.map_or(l, |p: f64| 0.95 * p + 0.05 * l);
        smoothed = Some(sm);
        bar.set_message(format!("loss {sm:.4} (rec {r:.3}, seg {s:.3})"));
        bar.inc(1);
        let done = step + 1;
        if done % eval_every == 0 || done == cfg.steps {
            let (rec_loss, scores) = holdout_eval(&model, &holdout, opts.device)?;
            let st = ScoreStats::of(&scores);
            curve.push(CurvePoint { step: done, train_loss: sm, holdout_recon_loss: rec_loss, holdout_score_mean: st.mean, holdout_score_max: st.max });
            good_scores = scores;
        }
        // Without a terminal (CI, logs) report progress every 10 % instead of the bar.
        if !opts.progress && done % (cfg.steps / 10).max(1) == 0 {
            tracing::info!("step {done}/{}: loss {sm:.4} (rec {r:.3}, seg {s:.3}), {:.0} s", cfg.steps, wall_before + start.elapsed().as_secs_f64());
        }
        let interrupted = opts.interrupt.as_ref().is_some_and(|f| f.load(Ordering::Relaxed));
        let stop = done < cfg.steps && (interrupted || opts.stop_after.is_some_and(|s| done >= s));
        if stop || (opts.save_every > 0 && done % opts.save_every == 0 && done < cfg.steps) {
            let state = ResumeState {
                config: cfg.clone(),
                data_root: data_root.clone(),
                train_images: train_paths.clone(),
                step: done,
                rng_word_pos: rng.get_word_pos().to_string(),
                order: order.clone(),
                cursor,
                smoothed_loss: smoothed,
                curve: curve.clone(),
                good_scores: good_scores.clone(),
                wall_time_s: wall_before + start.elapsed().as_secs_f64(),
            };
            resume::save(&opts.out_dir, &state, |dir| {
                let wf = resume::weights_file(dir);
                vs.save(&wf).map_err(|e| anyhow::anyhow!("cannot save {}: {e}", wf.display()))?;
                opt.save(&resume::optimizer_file(dir))
            })?;
        }
        if stop {
            bar.finish_and_clear();
            let dir = resume::resume_dir(&opts.out_dir);
            tracing::info!("stopped after step {done} of {}; `trainer train --resume` with the same arguments continues from {}", cfg.steps, dir.display());
            return Ok(TrainOutcome::Stopped { step: done, resume_dir: dir });
        }
    }
    bar.finish_and_clear();
    let wall = wall_before + start.elapsed().as_secs_f64();
    tracing::info!(
        "trained {} steps in {wall:.1} s ({:.1} images/s), final loss {:.4}",
        cfg.steps,
        (cfg.steps * cfg.batch_size) as f64 / wall,
        smoothed.unwrap_or(f64::NAN)
    );

    let (threshold, calibration) = crate::threshold::quantile_threshold(&good_scores, cfg.target_false_reject_rate)
        .with_context(|| format!("the model did not train (loss {}); no checkpoint written", smoothed.unwrap_or(f64::NAN)))?;
    let info = CheckpointInfo {
        config: cfg.clone(),
        category: category_of(&opts.data_root),
        // Absolute, so that exports from another working directory find the images again.
        data_root,
        threshold,
        calibration,
        good_score_stats: ScoreStats::of(&good_scores),
        highest_good_scores: crate::threshold::highest_scores(&hold_paths, &good_scores, 5),
        holdout: hold_paths,
        train_images: train_paths.len(),
        steps_done: cfg.steps,
        wall_time_s: wall,
        parameters: params,
        validation: curve,
    };
    write_csv(&info.validation, &opts.out_dir.join("validation.csv"))?;
    let png = opts.out_dir.join("validation.png");
    plot(&info.validation).save(&png).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", png.display()))?;
    let weights = opts.out_dir.join("checkpoint.safetensors");
    vs.save(&weights).map_err(|e| anyhow::anyhow!("cannot save {}: {e}", weights.display()))?;
    save_info(&weights, &info)?;
    resume::clear(&opts.out_dir);
    Ok(TrainOutcome::Finished { weights, info: Box::new(info) })
}

/// Rebuilds a model from a checkpoint (weights + sidecar) on `device`.
pub fn load_model(weights: &Path, device: Device) -> anyhow::Result<(nn::VarStore, FfcAd, CheckpointInfo)> {
    let info = crate::checkpoint::load_info(weights)?;
    let (vs, model) = model_with_weights(weights, &info.config.model, device)?;
    Ok((vs, model, info))
}

/// Builds a model of configuration `cfg` on `device` and loads `weights` into it.
///
/// Errors name the file: unreadable, or tensors that do not fit the configuration (extra, missing
/// or of another shape — a sidecar .json that is not the one written with these weights).
pub fn model_with_weights(weights: &Path, cfg: &crate::config::ModelConfig, device: Device) -> anyhow::Result<(nn::VarStore, FfcAd)> {
    let vs = nn::VarStore::new(device);
    let model = FfcAd::new(&vs.root(), cfg)?;
    let stored = tch::Tensor::read_safetensors(weights).map_err(|e| anyhow::anyhow!("cannot read weights {}: {e}", weights.display()))?;
    let mut vars = vs.variables();
    crate::checkpoint::check_fit(&stored, &vars).map_err(|e| anyhow::anyhow!("weights {} do not fit the model configuration in {}: {e}", weights.display(), crate::checkpoint::sidecar(weights).display()))?;
    // The file is read once: the checked tensors are copied into the model's variables (which
    // share storage with the VarStore), as `VarStore::load` would after reading it again.
    tch::no_grad(|| {
        for (name, t) in &stored {
            let var = vars.get_mut(name).expect("checked by check_fit");
            var.f_copy_(t).map_err(|e| anyhow::anyhow!("cannot load {name} from {}: {e}", weights.display()))?;
        }
        anyhow::Ok(())
    })?;
    Ok((vs, model))
}

#[cfg(test)]
mod tests {
    #[test]
    fn schedule_warms_up_then_decays() {
        let lr = |s| super::learning_rate(s, 100, 0.1);
        assert!((lr(0) - 0.02).abs() < 1e-12);
        assert!((lr(4) - 0.1).abs() < 1e-12);
        assert!((lr(5) - 0.1).abs() < 1e-12);
        assert!(lr(50) < 0.1 && lr(50) > 0.01);
        assert!((lr(100) - 0.001).abs() < 1e-9);
    }
}
