//! Training loop (DESIGN.md §3): synthetic defects on good images, reconstruction + segmentation
//! losses, SGD with momentum (paper Table 16) and a cosine schedule; then threshold calibration on
//! held-out good images and a `.safetensors` checkpoint.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::{seq::SliceRandom, SeedableRng};
use runtime::metadata::{ScoreStats, ThresholdCalibration};
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

use crate::checkpoint::{save_info, CheckpointInfo};
use crate::config::{OptimizerKind, TrainConfig};
use crate::curve::{plot, write_csv, CurvePoint};
use crate::data::{category_of, holdout_split, load_batch};
use crate::losses::{reconstruction_loss, segmentation_loss};
use crate::model::{parameter_count, FfcAd};
use crate::synth::synthesize;

/// Where and how to train.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub data_root: PathBuf,
    pub config: TrainConfig,
    /// Output folder; gets `checkpoint.safetensors` and `checkpoint.json`.
    pub out_dir: PathBuf,
    pub device: Device,
    pub progress: bool,
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

/// Eval-mode pass over held-out good images [N, 3, H, W]: (mean reconstruction loss, image scores).
fn holdout_eval(model: &FfcAd, images: &Tensor) -> (f64, Vec<f32>) {
    let _guard = tch::no_grad_guard();
    let n = images.size()[0];
    let (mut rec, mut scores) = (0.0, Vec::with_capacity(n as usize));
    for start in (0..n).step_by(8) {
        let b = images.narrow(0, start, (n - start).min(8));
        let o = model.forward_t(&b, false);
        rec += reconstruction_loss(&o.recon, &b).double_value(&[]) * b.size()[0] as f64;
        let s = model.image_score(&o.anomaly_map).to_device(Device::Cpu).to_kind(Kind::Float);
        scores.extend(Vec::<f32>::try_from(&s).expect("scores to vec"));
    }
    (rec / n.max(1) as f64, scores)
}

/// Trains, calibrates and saves. Returns the weights path and the checkpoint info.
pub fn train(opts: &TrainOptions) -> anyhow::Result<(PathBuf, CheckpointInfo)> {
    let cfg = &opts.config;
    cfg.validate()?;
    // Fail before hours of training, not after.
    std::fs::create_dir_all(&opts.out_dir).map_err(|e| anyhow::anyhow!("cannot create output folder {}: {e}", opts.out_dir.display()))?;
    tch::manual_seed(cfg.seed as i64);
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let (w, h) = (cfg.model.input_width as u32, cfg.model.input_height as u32);

    let all = runtime::dataset::train_good(&opts.data_root)?;
    let (train_paths, hold_paths) = holdout_split(&all, cfg.holdout_fraction)?;
    tracing::info!(train = train_paths.len(), holdout = hold_paths.len(), "loading good images at {w}x{h} px");
    let images = load_batch(&train_paths, w, h, opts.progress)?.to_device(opts.device);
    let holdout = load_batch(&hold_paths, w, h, opts.progress)?.to_device(opts.device);

    let vs = nn::VarStore::new(opts.device);
    let model = FfcAd::new(&vs.root(), &cfg.model)?;
    let params = parameter_count(&vs);
    tracing::info!(parameters = params, device = ?opts.device, "model built");
    let mut opt = match cfg.optimizer {
        OptimizerKind::Sgd => nn::Sgd { momentum: cfg.momentum, dampening: 0.0, wd: cfg.weight_decay, nesterov: true }.build(&vs, cfg.lr)?,
        OptimizerKind::Adamw => nn::AdamW { wd: cfg.weight_decay, ..Default::default() }.build(&vs, cfg.lr)?,
    };

    let n = images.size()[0] as usize;
    let mut order: Vec<usize> = (0..n).collect();
    let mut cursor = n;
    let bar = runtime::progress::bar(cfg.steps as u64, "train", opts.progress);
    let start = Instant::now();
    let mut smoothed = None;
    let mut curve = Vec::new();
    // Scores of the last evaluation, which always runs after the final step: the calibration set.
    let mut good_scores = Vec::new();
    let eval_every = (cfg.steps / 20).max(1);
    for step in 0..cfg.steps {
        opt.set_lr(learning_rate(step, cfg.steps, cfg.lr));
        let mut idx = Vec::with_capacity(cfg.batch_size);
        while idx.len() < cfg.batch_size {
            if cursor == n {
                order.shuffle(&mut rng);
                cursor = 0;
            }
            idx.push(order[cursor] as i64);
            cursor += 1;
        }
        let clean = images.index_select(0, &Tensor::from_slice(&idx).to_device(opts.device));
        let (corrupted, mask) = synthesize(&clean, cfg.anomaly_probability, &mut rng);
        let out = model.forward_t(&corrupted, true);
        let rec = reconstruction_loss(&out.recon, &clean);
        let seg = segmentation_loss(&out.logits, &mask);
        let loss = &rec * cfg.recon_weight + &seg;
        opt.backward_step(&loss);
        let (l, r, s) = (loss.double_value(&[]), rec.double_value(&[]), seg.double_value(&[]));
        anyhow::ensure!(l.is_finite(), "training diverged at step {step}: loss {l}; lower `lr`");
        let sm = smoothed.map_or(l, |p: f64| 0.95 * p + 0.05 * l);
        smoothed = Some(sm);
        bar.set_message(format!("loss {sm:.4} (rec {r:.3}, seg {s:.3})"));
        bar.inc(1);
        if (step + 1) % eval_every == 0 || step + 1 == cfg.steps {
            let (rec_loss, scores) = holdout_eval(&model, &holdout);
            let st = ScoreStats::of(&scores);
            curve.push(CurvePoint { step: step + 1, train_loss: sm, holdout_recon_loss: rec_loss, holdout_score_mean: st.mean, holdout_score_max: st.max });
            good_scores = scores;
        }
        // Without a terminal (CI, logs) report progress every 10 % instead of the bar.
        if !opts.progress && (step + 1) % (cfg.steps / 10).max(1) == 0 {
            tracing::info!("step {}/{}: loss {sm:.4} (rec {r:.3}, seg {s:.3}), {:.0} s", step + 1, cfg.steps, start.elapsed().as_secs_f64());
        }
    }
    bar.finish_and_clear();
    let wall = start.elapsed().as_secs_f64();
    tracing::info!(
        "trained {} steps in {wall:.1} s ({:.1} images/s), final loss {:.4}",
        cfg.steps,
        (cfg.steps * cfg.batch_size) as f64 / wall,
        smoothed.unwrap_or(f64::NAN)
    );

    let threshold = crate::calibrate::quantile(&good_scores, 1.0 - cfg.target_false_reject_rate);
    anyhow::ensure!(
        threshold.is_finite() && threshold > 0.0,
        "calibration gave threshold {threshold} from held-out scores {good_scores:?}: the model did not train (loss {}); no checkpoint written",
        smoothed.unwrap_or(f64::NAN)
    );
    let info = CheckpointInfo {
        config: cfg.clone(),
        category: category_of(&opts.data_root),
        // Absolute, so that exports from another working directory find the images again.
        data_root: opts.data_root.canonicalize().unwrap_or_else(|_| opts.data_root.clone()),
        threshold,
        calibration: ThresholdCalibration {
            method: format!("quantile {:.3} of held-out good image scores (linear interpolation)", 1.0 - cfg.target_false_reject_rate),
            target_false_reject_rate: cfg.target_false_reject_rate,
            good_images: good_scores.len(),
        },
        good_score_stats: ScoreStats::of(&good_scores),
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
    Ok((weights, info))
}

/// Rebuilds a model from a checkpoint (weights + sidecar) on `device`.
pub fn load_model(weights: &Path, device: Device) -> anyhow::Result<(nn::VarStore, FfcAd, CheckpointInfo)> {
    let info = crate::checkpoint::load_info(weights)?;
    let mut vs = nn::VarStore::new(device);
    let model = FfcAd::new(&vs.root(), &info.config.model)?;
    vs.load(weights).map_err(|e| anyhow::anyhow!("cannot load weights {}: {e}", weights.display()))?;
    Ok((vs, model, info))
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
