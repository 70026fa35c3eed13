//! Resuming a training run: a run stopped at a resume point and continued ends with exactly the
//! weights of an uninterrupted run (HSAS off: libtorch's dropout generator cannot be restored).

mod common;

use std::path::{Path, PathBuf};

use tch::Tensor;
use trainer::config::TrainConfig;
use trainer::train::{run, TrainOptions, TrainOutcome};

/// 12 good 80x80 images with a gradient and a per-image offset, in the MVTec layout.
fn data_set(root: &Path) -> PathBuf {
    let good = root.join("data/train/good");
    std::fs::create_dir_all(&good).unwrap();
    for i in 0..12u8 {
        image::RgbImage::from_fn(80, 80, |x, y| image::Rgb([x as u8 * 3, y as u8 * 3, 100 + i * 10])).save(good.join(format!("{i:02}.png"))).unwrap();
    }
    root.join("data")
}

fn tiny_config(optimizer: trainer::config::OptimizerKind) -> TrainConfig {
    let mut c = TrainConfig::small();
    c.model.input_height = 64;
    c.model.input_width = 64;
    c.model.hsas = false;
    c.steps = 6;
    c.batch_size = 3;
    c.optimizer = optimizer;
    // On these 12 trivial gradients the 5x-weighted focal loss at lr 0.05 drives every logit so
    // far below zero within 6 steps that the map underflows to exactly 0 and calibration refuses
    // the run; a smaller step keeps the scores positive (this test is about resuming).
    c.lr = 0.005;
    c
}

fn weights(path: &Path) -> Vec<(String, Vec<f32>)> {
    let mut v: Vec<(String, Vec<f32>)> = Tensor::read_safetensors(path)
        .unwrap()
        .into_iter()
        .map(|(k, t)| (k, Vec::<f32>::try_from(t.to_kind(tch::Kind::Float).flatten(0, -1)).unwrap()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Names of the tensors that differ between two checkpoints, with their max |difference|.
fn differences(a: &Path, b: &Path) -> Vec<String> {
    weights(a)
        .into_iter()
        .zip(weights(b))
        .filter(|(x, y)| x != y)
        .map(|((n, x), (_, y))| format!("{n}: {:e}", x.iter().zip(&y).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max)))
        .collect()
}

#[test]
fn a_stopped_and_resumed_run_ends_with_the_weights_of_an_uninterrupted_one() {
    let _lock = common::exclusive_torch();
    let d = tempfile::tempdir().unwrap();
    let data = data_set(d.path());
    // The 12 images are split 8 train / 4 held out; 6 steps x 3 images pass the shuffle twice.
    // The third case averages the weights (EMA): its averages must be saved and restored too.
    for (opt, ema_decay) in [(trainer::config::OptimizerKind::Sgd, 0.0), (trainer::config::OptimizerKind::Adamw, 0.0), (trainer::config::OptimizerKind::Sgd, 0.9)] {
        let cfg = TrainConfig { ema_decay, ..tiny_config(opt) };
        let opt = format!("{opt:?}-ema{ema_decay}");
        let mut full = TrainOptions::new(data.clone(), cfg.clone(), d.path().join(format!("full-{opt}")));
        full.save_every = 0;
        let TrainOutcome::Finished { weights: w_full, info: i_full } = run(&full).unwrap() else { panic!("full run stopped") };

        let out = d.path().join(format!("split-{opt}"));
        let mut first = TrainOptions::new(data.clone(), cfg.clone(), out.clone());
        first.stop_after = Some(4);
        match run(&first).unwrap() {
            TrainOutcome::Stopped { step, resume_dir } => {
                assert_eq!(step, 4);
                assert!(resume_dir.join("state.json").is_file());
            }
            other => panic!("expected a stop, got {other:?}"),
        }
        let mut second = TrainOptions::new(data.clone(), cfg.clone(), out.clone());
        second.resume = true;
        let TrainOutcome::Finished { weights: w_split, info: i_split } = run(&second).unwrap() else { panic!("resumed run stopped") };
        let again = TrainOptions { out_dir: d.path().join(format!("again-{opt}")), ..full.clone() };
        let TrainOutcome::Finished { weights: w_again, .. } = run(&again).unwrap() else { panic!("second full run stopped") };
        assert_eq!(differences(&w_full, &w_again), Vec::<String>::new(), "{opt}: two runs with the same seed differ");
        assert_eq!(differences(&w_full, &w_split), Vec::<String>::new(), "{opt}: weights differ after resume");
        assert_eq!(i_full.threshold, i_split.threshold);
        assert_eq!(i_full.validation.len(), i_split.validation.len());
        assert!(!out.join("resume").exists(), "the resume point is removed after the final checkpoint");
        if ema_decay > 0.0 {
            // The averaged checkpoint is not the last step's weights.
            let last = d.path().join("full-Sgd-ema0");
            let plain = differences(&last.join("checkpoint.safetensors"), &w_full);
            assert!(plain.iter().any(|n| n.starts_with("head.")), "EMA and last-step checkpoints should differ: {plain:?}");
        }
    }
}

#[test]
fn resuming_without_a_point_or_with_another_config_is_a_clear_error() {
    let _lock = common::exclusive_torch();
    let d = tempfile::tempdir().unwrap();
    let data = data_set(d.path());
    let cfg = tiny_config(trainer::config::OptimizerKind::Sgd);
    let out = d.path().join("out");
    let mut opts = TrainOptions::new(data.clone(), cfg.clone(), out.clone());
    opts.resume = true;
    let msg = run(&opts).unwrap_err().to_string();
    assert!(msg.contains("no resume point") && msg.contains("out"), "{msg}");

    let mut stop = TrainOptions::new(data.clone(), cfg.clone(), out.clone());
    stop.stop_after = Some(2);
    assert!(matches!(run(&stop).unwrap(), TrainOutcome::Stopped { step: 2, .. }));
    let mut other = cfg.clone();
    other.lr = 0.01;
    let mut opts = TrainOptions::new(data, other, out);
    opts.resume = true;
    let msg = run(&opts).unwrap_err().to_string();
    assert!(msg.contains("`lr`") && msg.contains("0.005") && msg.contains("0.01"), "{msg}");
}
