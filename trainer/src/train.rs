//! Training loop (DESIGN.md §3): synthetic defects on good images, reconstruction + segmentation
//! losses, SGD with momentum (paper Table 16) and a cosine schedule; then threshold calibration on
//! held-out good images and a `.safetensors` checkpoint.

use std::path::PathBuf;
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
use crate::ema::WeightAverage;
use crate::losses::{reconstruction_loss, segmentation_loss, SegWeights};
use crate::model::{parameter_count, FfcAd};
use crate::optimizer::Optimizer;
use crate::resume::{self, ResumeState};
use crate::step_time::{Phase, StepTimes};
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
        let s = model.image_score(&o.score_map).to_device(Device::Cpu).to_kind(Kind::Float);
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
/// run restores weights, optimizer state, weight averages, data order and the defect-synthesis
/// random stream exactly; libtorch's own generator (HSAS dropout masks) cannot be read through tch, so it is
/// re-seeded with `seed + step` on resume: with HSAS on, a resumed run continues with other
/// dropout masks than an uninterrupted one would have drawn.
pub fn run(opts: &TrainOptions) -> anyhow::Result<TrainOutcome> {
    let mut t = Training::prepare(opts)?;
    t.restore()?;
    let bar = runtime::progress::bar(opts.config.steps as u64, "train", opts.progress);
    bar.set_position(t.first_step as u64);
    for step in t.first_step..opts.config.steps {
        let idx = t.next_batch();
        let losses = t.step(step, &idx)?;
        bar.set_message(format!("loss {:.4} (rec {:.3}, seg {:.3})", losses.smoothed, losses.reconstruction, losses.segmentation));
        bar.inc(1);
        if let Some(stopped) = t.after_step(step + 1, &losses)? {
            bar.finish_and_clear();
            return Ok(stopped);
        }
    }
    bar.finish_and_clear();
    t.finish()
}

/// The losses of one step.
struct StepLosses {
    /// Total loss of this step, and its exponential moving average (0.95) over the steps so far.
    total: f64,
    smoothed: f64,
    reconstruction: f64,
    segmentation: f64,
}

/// One training run's state between the named steps of [`run`]: [`Training::prepare`] (data,
/// model, optimizer), [`Training::restore`] (a resume point), [`Training::next_batch`] and
/// [`Training::step`] per optimisation step, [`Training::after_step`] (evaluation, resume points,
/// early stop), [`Training::finish`] (threshold calibration, checkpoint).
struct Training<'a> {
    opts: &'a TrainOptions,
    cfg: &'a TrainConfig,
    /// Data order, augmentation and defect synthesis draw from this stream (saved on resume).
    rng: ChaCha12Rng,
    data_root: PathBuf,
    train_paths: Vec<PathBuf>,
    hold_paths: Vec<PathBuf>,
    images: ImageCache,
    holdout: ImageCache,
    synthesizer: Synthesizer,
    seg_weights: SegWeights,
    vs: nn::VarStore,
    model: FfcAd,
    params: i64,
    opt: Optimizer,
    /// Moving average of the weights (`ema_decay` > 0): what is evaluated, calibrated and saved.
    ema: Option<WeightAverage>,
    /// Shuffled image order and the position in it.
    order: Vec<usize>,
    cursor: usize,
    smoothed: Option<f64>,
    curve: Vec<CurvePoint>,
    /// Scores of the last evaluation, which always runs after the final step: the calibration set.
    good_scores: Vec<f32>,
    first_step: usize,
    /// Training time of earlier sessions (resumed runs), s.
    wall_before: f64,
    start: Instant,
    resumed: Option<(PathBuf, ResumeState)>,
    /// Wall time per phase of the steps (`trained ...` log line at the end).
    times: StepTimes,
}

impl<'a> Training<'a> {
    /// Checks the config and the output folder, splits and decodes the good images, builds the
    /// synthesizer, the model (seeded) and the optimizer. Fails before hours of training, not
    /// after.
    fn prepare(opts: &'a TrainOptions) -> anyhow::Result<Self> {
        let cfg = &opts.config;
        cfg.validate()?;
        std::fs::create_dir_all(&opts.out_dir).map_err(|e| anyhow::anyhow!("cannot create output folder {}: {e}", opts.out_dir.display()))?;
        tch::manual_seed(cfg.seed as i64);
        let rng = ChaCha12Rng::seed_from_u64(cfg.seed);
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
        tracing::info!(train = train_paths.len(), holdout = hold_paths.len(), "loading good images at {h}x{w} px (HxW, as --size)");
        if let Some((ch, cw)) = cfg.train_crop {
            tracing::info!("training on random {ch}x{cw} px crops (HxW); held-out scores, calibration and export at {h}x{w}");
        }
        let images = ImageCache::new(train_paths.clone(), w, h, cfg.bit_depth, opts.cache_bytes, "load train", opts.progress)?;
        let holdout = ImageCache::new(hold_paths.clone(), w, h, cfg.bit_depth, opts.cache_bytes.saturating_sub(images.cached_images() * ImageCache::image_bytes(w, h)), "load holdout", opts.progress)?;
        if images.cached_images() < images.len() {
            tracing::info!("{} of {} training images fit the image cache; the rest are decoded when drawn", images.cached_images(), images.len());
        }

        // Textures are blended into the training samples: at the crop's size when training on crops.
        let (tw, th) = cfg.train_crop.map_or((w, h), |(ch, cw)| (cw as u32, ch as u32));
        let textures = match &cfg.textures {
            Some(dir) => Synthesizer::load_textures(dir, tw, th)?,
            None => Vec::new(),
        };
        if !textures.is_empty() {
            tracing::info!("{} texture images for synthetic defects", textures.len());
        }
        let synthesizer = Synthesizer::new(cfg.synth.clone(), textures);
        let seg_weights = SegWeights { focal: cfg.seg_focal_weight, l1: cfg.seg_l1_weight, dice: cfg.seg_dice_weight };

        let vs = nn::VarStore::new(opts.device);
        let model = FfcAd::new(&vs.root(), &cfg.model)?;
        let params = parameter_count(&vs);
        tracing::info!(parameters = params, device = ?opts.device, "model built");
        let opt = Optimizer::new(&vs, cfg);
        let ema = (cfg.ema_decay > 0.0).then(|| WeightAverage::new(&vs, cfg.ema_decay));
        let n = images.len();
        Ok(Self {
            opts,
            cfg,
            rng,
            data_root,
            train_paths,
            hold_paths,
            images,
            holdout,
            synthesizer,
            seg_weights,
            vs,
            model,
            params,
            opt,
            ema,
            order: (0..n).collect(),
            cursor: n,
            smoothed: None,
            curve: Vec::new(),
            good_scores: Vec::new(),
            first_step: 0,
            wall_before: 0.0,
            start: Instant::now(),
            resumed,
            times: StepTimes::default(),
        })
    }

    /// Loads the resume point found by [`Training::prepare`], if any: weights, optimizer state,
    /// weight averages, the random stream's position, data order, curve and scores.
    fn restore(&mut self) -> anyhow::Result<()> {
        let Some((dir, state)) = self.resumed.take() else { return Ok(()) };
        self.vs.load(resume::weights_file(&dir)).map_err(|e| anyhow::anyhow!("cannot load {}: {e}", resume::weights_file(&dir).display()))?;
        self.opt.load(&resume::optimizer_file(&dir))?;
        if let Some(ema) = &mut self.ema {
            ema.load(&resume::ema_file(&dir))?;
        }
        let pos: u128 = state.rng_word_pos.parse().map_err(|e| anyhow::anyhow!("resume point {}: rng_word_pos `{}`: {e}", dir.display(), state.rng_word_pos))?;
        self.rng.set_word_pos(pos);
        tch::manual_seed(self.cfg.seed.wrapping_add(state.step as u64) as i64);
        (self.order, self.cursor, self.smoothed, self.curve, self.good_scores) = (state.order, state.cursor, state.smoothed_loss, state.curve, state.good_scores);
        self.first_step = state.step;
        self.wall_before = state.wall_time_s;
        tracing::info!("resuming at step {} of {} from {}", self.first_step, self.cfg.steps, dir.display());
        self.start = Instant::now();
        Ok(())
    }

    /// The next `batch_size` image indices: the shuffled order, reshuffled at each pass.
    fn next_batch(&mut self) -> Vec<usize> {
        let n = self.images.len();
        let mut idx = Vec::with_capacity(self.cfg.batch_size);
        while idx.len() < self.cfg.batch_size {
            if self.cursor == n {
                self.order.shuffle(&mut self.rng);
                self.cursor = 0;
            }
            idx.push(self.order[self.cursor]);
            self.cursor += 1;
        }
        idx
    }

    /// One optimisation step on images `idx`: augment, synthesize defects, forward, losses,
    /// backward and update at the scheduled learning rate.
    ///
    /// # Errors
    /// An image cannot be decoded again, or the loss is not finite (diverged).
    fn step(&mut self, step: usize, idx: &[usize]) -> anyhow::Result<StepLosses> {
        let cfg = self.cfg;
        let t = Instant::now();
        let mut batch = self.images.batch(idx)?;
        if let Some((h, w)) = cfg.train_crop {
            batch = crate::augment::random_crop(&batch, h, w, &mut self.rng);
        }
        let clean = crate::augment::augment(&batch, &cfg.augment, &mut self.rng).to_device(self.opts.device);
        let t = self.times.lap(Phase::Data, t);
        let (corrupted, mask) = self.synthesizer.synthesize(&clean, cfg.anomaly_probability, &mut self.rng);
        let t = self.times.lap(Phase::Synthesis, t);
        let out = self.model.forward_t(&corrupted, true);
        let rec = reconstruction_loss(&out.recon, &clean);
        let seg = segmentation_loss(&out.logits, &mask, self.seg_weights);
        let loss = &rec * cfg.recon_weight + &seg;
        let t = self.times.lap(Phase::Forward, t);
        self.opt.backward_step(&loss, learning_rate(step, cfg.steps, cfg.lr));
        if cfg.model.head_out_weights == crate::config::HeadOutWeights::NonNegative {
            self.model.head.project_out_weights();
        }
        if let Some(ema) = &mut self.ema {
            ema.update();
        }
        let t = self.times.lap(Phase::Backward, t);
        let (total, reconstruction, segmentation) = (loss.double_value(&[]), rec.double_value(&[]), seg.double_value(&[]));
        self.times.lap(Phase::ReadBack, t);
        self.times.step_done();
        anyhow::ensure!(total.is_finite(), "training diverged at step {step}: loss {total}; lower `lr`");
        let smoothed = self.smoothed.map_or(total, |p: f64| 0.95 * p + 0.05 * total);
        self.smoothed = Some(smoothed);
        Ok(StepLosses { total, smoothed, reconstruction, segmentation })
    }

    /// After `done` steps: evaluates the held-out images every 5 % (and at the end), logs progress
    /// every 10 % without a terminal, writes a resume point every `save_every` steps, and stops
    /// early (interrupt or `stop_after`) with a resume point: `Some(Stopped)` then.
    fn after_step(&mut self, done: usize, losses: &StepLosses) -> anyhow::Result<Option<TrainOutcome>> {
        let (cfg, opts) = (self.cfg, self.opts);
        let eval_every = (cfg.steps / 20).max(1);
        if done % eval_every == 0 || done == cfg.steps {
            let t = Instant::now();
            // With an average, the averaged weights are evaluated: the last evaluation's scores
            // calibrate the threshold of the weights that are saved.
            let (model, holdout) = (&self.model, &self.holdout);
            let (rec_loss, scores) = match &mut self.ema {
                Some(ema) => ema.with_average(|| holdout_eval(model, holdout, opts.device))?,
                None => holdout_eval(model, holdout, opts.device)?,
            };
            self.times.lap(Phase::Validation, t);
            let st = ScoreStats::of(&scores);
            self.curve.push(CurvePoint { step: done, train_loss: losses.smoothed, holdout_recon_loss: rec_loss, holdout_score_mean: st.mean, holdout_score_max: st.max });
            self.good_scores = scores;
        }
        // Without a terminal (CI, logs) report progress every 10 % instead of the bar.
        if !opts.progress && done % (cfg.steps / 10).max(1) == 0 {
            // A non-negative head can switch itself off (every weight projected to 0): say so.
            let head = match cfg.model.head_out_weights {
                crate::config::HeadOutWeights::NonNegative => {
                    let (zeros, n, max) = self.model.head.out_weight_stats();
                    format!("; head.out weights at 0: {zeros} of {n}, max {max:.4}")
                }
                crate::config::HeadOutWeights::Free => String::new(),
            };
            tracing::info!(
                "step {done}/{}: loss {:.4} (rec {:.3}, seg {:.3}; this step {:.4}), {:.0} s{head}",
                cfg.steps,
                losses.smoothed,
                losses.reconstruction,
                losses.segmentation,
                losses.total,
                self.wall_s()
            );
        }
        let interrupted = opts.interrupt.as_ref().is_some_and(|f| f.load(Ordering::Relaxed));
        let stop = done < cfg.steps && (interrupted || opts.stop_after.is_some_and(|s| done >= s));
        if stop || (opts.save_every > 0 && done % opts.save_every == 0 && done < cfg.steps) {
            self.save_resume_point(done)?;
        }
        if !stop {
            return Ok(None);
        }
        let dir = resume::resume_dir(&opts.out_dir);
        tracing::info!("stopped after step {done} of {}; `trainer train --resume` with the same arguments continues from {}", cfg.steps, dir.display());
        Ok(Some(TrainOutcome::Stopped { step: done, resume_dir: dir }))
    }

    /// Training time so far, s, earlier sessions included.
    fn wall_s(&self) -> f64 {
        self.wall_before + self.start.elapsed().as_secs_f64()
    }

    /// Writes the resume point after `done` steps (weights, optimizer, weight averages, random
    /// stream, order).
    fn save_resume_point(&self, done: usize) -> anyhow::Result<()> {
        let state = ResumeState {
            config: self.cfg.clone(),
            data_root: self.data_root.clone(),
            train_images: self.train_paths.clone(),
            step: done,
            rng_word_pos: self.rng.get_word_pos().to_string(),
            order: self.order.clone(),
            cursor: self.cursor,
            smoothed_loss: self.smoothed,
            curve: self.curve.clone(),
            good_scores: self.good_scores.clone(),
            wall_time_s: self.wall_s(),
        };
        resume::save(&self.opts.out_dir, &state, |dir| {
            let wf = resume::weights_file(dir);
            self.vs.save(&wf).map_err(|e| anyhow::anyhow!("cannot save {}: {e}", wf.display()))?;
            self.opt.save(&resume::optimizer_file(dir))?;
            match &self.ema {
                Some(ema) => ema.save(&resume::ema_file(dir)),
                None => Ok(()),
            }
        })
    }

    /// Calibrates the threshold on the last held-out scores, writes the validation curve and
    /// the checkpoint (weights + sidecar), and removes the resume point.
    ///
    /// # Errors
    /// No finite held-out score (the model did not train), or a file cannot be written.
    fn finish(mut self) -> anyhow::Result<TrainOutcome> {
        let (cfg, opts) = (self.cfg, self.opts);
        let wall = self.wall_s();
        tracing::info!(
            "trained {} steps in {wall:.1} s ({:.1} images/s), final loss {:.4}",
            cfg.steps,
            (cfg.steps * cfg.batch_size) as f64 / wall,
            self.smoothed.unwrap_or(f64::NAN)
        );
        // Wall time per step beside the phases' sum: the difference is what no phase covers.
        let steps_here = cfg.steps - self.first_step;
        tracing::info!(
            "{} on {}; wall time {:.1} ms a step",
            self.times.summary(),
            crate::commands::device_name(opts.device),
            if steps_here > 0 { (wall - self.wall_before) * 1e3 / steps_here as f64 } else { 0.0 }
        );
        let (threshold, calibration) = runtime::threshold::quantile_threshold(&self.good_scores, cfg.target_false_reject_rate)
            .with_context(|| format!("the model did not train (loss {}); no checkpoint written", self.smoothed.unwrap_or(f64::NAN)))?;
        let info = CheckpointInfo {
            config: cfg.clone(),
            category: category_of(&opts.data_root),
            // Absolute, so that exports from another working directory find the images again.
            data_root: self.data_root,
            threshold,
            calibration,
            good_score_stats: ScoreStats::of(&self.good_scores),
            highest_good_scores: runtime::threshold::highest_scores(&self.hold_paths, &self.good_scores, 5),
            holdout: self.hold_paths,
            train_images: self.train_paths.len(),
            steps_done: cfg.steps,
            wall_time_s: wall,
            parameters: self.params,
            validation: self.curve,
        };
        write_csv(&info.validation, &opts.out_dir.join("validation.csv"))?;
        let png = opts.out_dir.join("validation.png");
        plot(&info.validation).save(&png).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", png.display()))?;
        let weights = opts.out_dir.join("checkpoint.safetensors");
        if let Some(ema) = &mut self.ema {
            // The checkpoint holds the averaged weights, the ones the threshold was calibrated on.
            tracing::info!("saving the weights averaged over the steps (EMA; decay {:.4} at the last of {} updates)", ema.last_decay(), ema.updates());
            ema.swap();
        }
        self.vs.save(&weights).map_err(|e| anyhow::anyhow!("cannot save {}: {e}", weights.display()))?;
        save_info(&weights, &info)?;
        resume::clear(&opts.out_dir);
        Ok(TrainOutcome::Finished { weights, info: Box::new(info) })
    }
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
