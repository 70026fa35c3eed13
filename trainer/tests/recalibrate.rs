//! `trainer calibrate`: a trained checkpoint gets a new image-score filter or target false-reject
//! rate; the threshold must equal the quantile of held-out scores computed here independently from
//! the raw anomaly maps.

mod common;

use std::path::{Path, PathBuf};

use runtime::preprocess::{load_image, to_model_input};
use trainer::recalibrate::{recalibrate, RecalibrateOptions};
use trainer::checkpoint::load_model;

/// Max over all positions of the k x k mean of a row-major h x w map (valid region).
fn max_of_mean_filter(map: &[f32], h: usize, w: usize, k: usize) -> f32 {
    let mut best = f32::NEG_INFINITY;
    for y in 0..=h - k {
        for x in 0..=w - k {
            let s: f64 = (0..k).flat_map(|dy| (0..k).map(move |dx| (dy, dx))).map(|(dy, dx)| map[(y + dy) * w + x + dx] as f64).sum();
            best = best.max((s / (k * k) as f64) as f32);
        }
    }
    best
}

fn expected_threshold(weights: &Path, holdout: &[PathBuf], k: usize, q: f64) -> f32 {
    runtime::threshold::quantile(&scores(weights, holdout, k), q)
}

fn scores(weights: &Path, holdout: &[PathBuf], k: usize) -> Vec<f32> {
    let (_vs, mut model, _) = load_model(weights, tch::Device::Cpu).unwrap();
    // The score reads the map before its floor is removed.
    model.config.map_floor_quantile = 0.0;
    holdout
        .iter()
        .map(|p| {
            let input = to_model_input(&load_image(p, runtime::bit_depth::BitDepth::FULL).unwrap(), None, 64, 64).chw;
            let (maps, _) = trainer::evaluate::forward_maps(&model, &[input], tch::Device::Cpu);
            max_of_mean_filter(&maps[0], 64, 64, k)
        })
        .collect()
}

/// Planes of rows `w` px wide (row-major [c, h, w]) mirrored left-right: each row reversed.
fn mirror_lr(v: &[f32], w: usize) -> Vec<f32> {
    v.chunks_exact(w).flat_map(|row| row.iter().rev().copied()).collect()
}

/// Raw max of each held-out image's map and its mirror's map mirrored back, combined pixel by
/// pixel by `combine`: the score of `--tta flip --score-filter 1` (with the mean, or with the
/// minimum of `--tta-reduce min`), from the checkpoint's one-pass model. `map_sigma_px` replaces
/// the checkpoint's smoothing (0: the raw maps, which the minimum needs: a Gaussian of a minimum
/// is not the minimum of Gaussians).
fn flip_tta_scores(weights: &Path, holdout: &[PathBuf], map_sigma_px: Option<f64>, combine: impl Fn(f32, f32) -> f32) -> Vec<f32> {
    let (_vs, mut model, _) = load_model(weights, tch::Device::Cpu).unwrap();
    assert_eq!(model.config.tta, trainer::config::Tta::None);
    model.config.map_floor_quantile = 0.0;
    if let Some(s) = map_sigma_px {
        model.config.map_sigma_px = s;
    }
    holdout
        .iter()
        .map(|p| {
            let input = to_model_input(&load_image(p, runtime::bit_depth::BitDepth::FULL).unwrap(), None, 64, 64).chw;
            let (maps, _) = trainer::evaluate::forward_maps(&model, &[input.clone(), mirror_lr(&input, 64)], tch::Device::Cpu);
            let back = mirror_lr(&maps[1], 64);
            maps[0].iter().zip(&back).map(|(a, b)| combine(*a, *b)).fold(f32::MIN, f32::max)
        })
        .collect()
}

#[test]
fn a_new_filter_and_rate_recompute_the_threshold_from_held_out_maps() {
    let _lock = common::exclusive_torch();
    let d = tempfile::tempdir().unwrap();
    let weights = common::tiny_checkpoint(d.path());
    let before = trainer::checkpoint::load_info(&weights).unwrap();
    // Loading copies every stored tensor into the model, bit for bit.
    let (vs, _, _) = load_model(&weights, tch::Device::Cpu).unwrap();
    let vars = vs.variables();
    for (name, t) in tch::Tensor::read_safetensors(&weights).unwrap() {
        assert!(vars[&name].equal(&t), "{name} differs after loading");
    }
    let opts = RecalibrateOptions { score_filter_px: Some(1), target_false_reject_rate: Some(0.25), ..Default::default() };
    let (out, info) = recalibrate(&weights, &d.path().join("k1"), &opts).unwrap();
    assert_eq!((info.config.model.score_filter_px, info.config.target_false_reject_rate), (1, 0.25));
    assert_eq!(info.holdout, before.holdout);
    let want = expected_threshold(&weights, &info.holdout, 1, 0.75);
    assert!((info.threshold - want).abs() < 1e-5, "threshold {} vs independently computed {want}", info.threshold);
    let raw = scores(&weights, &info.holdout, 1);
    let (i_max, max) = raw.iter().enumerate().fold((0, f32::MIN), |b, (i, &s)| if s > b.1 { (i, s) } else { b });
    assert_eq!(info.highest_good_scores[0].image, info.holdout[i_max]);
    assert!((info.highest_good_scores[0].score - max).abs() < 1e-5);
    assert_eq!(info.highest_good_scores.len(), 4, "4 images held out (the minimum), all listed");
    assert_eq!(info.calibration.method, "quantile 0.750 of held-out good image scores (linear interpolation)");
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&weights).unwrap(), "weights copied unchanged");
    // The raw max is at least every mean: the new threshold cannot be below the 7 px one at the
    // same rate; with rate 0.25 it is the 0.75 quantile, so compare like with like.
    let seven = expected_threshold(&weights, &info.holdout, 7, 0.75);
    assert!(info.threshold >= seven);
    // The line-mean score: each image's best line mean is at most its map's max, so at the same
    // rate the threshold is at most the raw max's.
    let (_, line) = recalibrate(&weights, &d.path().join("line"), &RecalibrateOptions { score_line_px: Some(21), target_false_reject_rate: Some(0.25), ..Default::default() }).unwrap();
    assert_eq!(line.config.model.score_line_px, 21);
    // The map's floor comes after the score: stored, and the held-out scores and threshold stay.
    let (_, floored) = recalibrate(&out, &d.path().join("floor"), &RecalibrateOptions { map_floor_quantile: Some(0.25), ..Default::default() }).unwrap();
    assert_eq!(floored.config.model.map_floor_quantile, 0.25);
    assert_eq!((floored.threshold, &floored.good_score_stats), (info.threshold, &info.good_score_stats), "the floor moved the score");
    assert!(line.threshold > 0.0 && line.threshold <= info.threshold + 1e-6, "line {} vs raw max {}", line.threshold, info.threshold);
    assert!((line.threshold - info.threshold).abs() > 1e-6, "the line score changed nothing");
    // Test-time augmentation: the threshold is the quantile of the mirrored pair's mean maps,
    // computed here from the one-pass model.
    let opts = RecalibrateOptions { tta: Some(trainer::config::Tta::Flip), score_filter_px: Some(1), target_false_reject_rate: Some(0.25), ..Default::default() };
    let (_, tta) = recalibrate(&weights, &d.path().join("tta"), &opts).unwrap();
    assert_eq!(tta.config.model.tta, trainer::config::Tta::Flip);
    let want = runtime::threshold::quantile(&flip_tta_scores(&weights, &tta.holdout, None, |a, b| (a + b) / 2.0), 0.75);
    assert!((tta.threshold - want).abs() < 1e-5, "TTA threshold {} vs independently computed {want}", tta.threshold);
    assert!((tta.threshold - info.threshold).abs() > 1e-6, "TTA changed nothing");
    // The passes combined by their minimum, on the raw maps: `--tta-reduce min --map-sigma 0`.
    let opts = RecalibrateOptions { tta: Some(trainer::config::Tta::Flip), tta_reduce: Some(trainer::config::TtaReduce::Min), map_sigma_px: Some(0.0), score_filter_px: Some(1), target_false_reject_rate: Some(0.25), ..Default::default() };
    let (_, min) = recalibrate(&weights, &d.path().join("tta-min"), &opts).unwrap();
    assert_eq!((min.config.model.tta, min.config.model.tta_reduce), (trainer::config::Tta::Flip, trainer::config::TtaReduce::Min));
    let want = runtime::threshold::quantile(&flip_tta_scores(&weights, &min.holdout, Some(0.0), f32::min), 0.75);
    assert!((min.threshold - want).abs() < 1e-5, "min-TTA threshold {} vs independently computed {want}", min.threshold);
    let mean_raw = runtime::threshold::quantile(&flip_tta_scores(&weights, &min.holdout, Some(0.0), |a, b| (a + b) / 2.0), 0.75);
    assert!(min.threshold < mean_raw - 1e-6, "the minimum's max is under the mean's: {} vs {mean_raw}", min.threshold);

    // In place: same folder rewrites the sidecar only; the weights survive.
    let bytes = std::fs::read(&weights).unwrap();
    let (same, info3) = recalibrate(&weights, weights.parent().unwrap(), &RecalibrateOptions { score_filter_px: Some(5), ..Default::default() }).unwrap();
    assert_eq!(std::fs::read(&same).unwrap(), bytes);
    assert_eq!(trainer::checkpoint::load_info(&weights).unwrap().config.model.score_filter_px, 5);
    let want3 = expected_threshold(&weights, &info3.holdout, 5, 1.0 - before.config.target_false_reject_rate);
    assert!((info3.threshold - want3).abs() < 1e-5, "{} vs {want3}", info3.threshold);

    // OUT holding a hard link to the checkpoint (backups made with `cp -al`): a plain copy onto
    // it would truncate both names.
    let linked = d.path().join("linked");
    std::fs::create_dir_all(&linked).unwrap();
    std::fs::hard_link(&weights, linked.join("checkpoint.safetensors")).unwrap();
    recalibrate(&weights, &linked, &RecalibrateOptions { score_filter_px: Some(1), ..Default::default() }).unwrap();
    assert_eq!(std::fs::read(&weights).unwrap(), bytes);
    assert_eq!(std::fs::read(linked.join("checkpoint.safetensors")).unwrap(), bytes);
}

#[test]
fn tta_at_training_time_trains_the_same_weights_as_recalibrating_after() {
    let _lock = common::exclusive_torch();
    // TTA acts at inference only: `--tta` on `trainer train` and `trainer recalibrate --tta` on
    // the checkpoint trained without it give the same weights and the same threshold.
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let plain = common::tiny_checkpoint(a.path());
    let with = common::tiny_checkpoint_with(b.path(), |c| c.model.tta = trainer::config::Tta::Flip);
    let sorted = |p: &Path| {
        let mut v = tch::Tensor::read_safetensors(p).unwrap();
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    };
    let (wa, wb) = (sorted(&plain), sorted(&with));
    assert_eq!(wa.len(), wb.len());
    for ((na, ta), (nb, tb)) in wa.iter().zip(&wb) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs: TTA changed the training");
    }
    let trained = trainer::checkpoint::load_info(&with).unwrap();
    assert_eq!(trained.config.model.tta, trainer::config::Tta::Flip);
    let (_, after) = recalibrate(&plain, &a.path().join("tta"), &RecalibrateOptions { tta: Some(trainer::config::Tta::Flip), ..Default::default() }).unwrap();
    assert!((after.threshold - trained.threshold).abs() < 1e-6, "recalibrated {} vs trained {}", after.threshold, trained.threshold);
    let before = trainer::checkpoint::load_info(&plain).unwrap();
    assert!((before.threshold - trained.threshold).abs() > 1e-6, "the threshold did not see the TTA");
    // TTA switched off: a stored minimum is reset, so a later `--tta` starts from the mean again.
    use trainer::config::{Tta, TtaReduce};
    let (_, min) = recalibrate(&plain, &a.path().join("min"), &RecalibrateOptions { tta: Some(Tta::Flip), tta_reduce: Some(TtaReduce::Min), ..Default::default() }).unwrap();
    assert_eq!((min.config.model.tta, min.config.model.tta_reduce), (Tta::Flip, TtaReduce::Min));
    let (_, off) = recalibrate(&a.path().join("min/checkpoint.safetensors"), &a.path().join("off"), &RecalibrateOptions { tta: Some(Tta::None), ..Default::default() }).unwrap();
    assert_eq!((off.config.model.tta, off.config.model.tta_reduce), (Tta::None, TtaReduce::Mean));
    let (_, kept) = recalibrate(&a.path().join("min/checkpoint.safetensors"), &a.path().join("kept"), &RecalibrateOptions { tta: Some(Tta::None), tta_reduce: Some(TtaReduce::Min), ..Default::default() }).unwrap();
    assert_eq!(kept.config.model.tta_reduce, TtaReduce::Min, "an explicit --tta-reduce is kept");
}

#[test]
fn bad_values_and_lost_held_out_images_are_named() {
    let _lock = common::exclusive_torch();
    let d = tempfile::tempdir().unwrap();
    let weights = common::tiny_checkpoint(d.path());
    let err = |o: RecalibrateOptions| format!("{:#}", recalibrate(&weights, &d.path().join("x"), &o).unwrap_err());
    assert!(err(RecalibrateOptions::default()).contains("nothing to change"));
    let missing = d.path().join("nope/checkpoint.safetensors");
    let e = format!("{:#}", recalibrate(&missing, d.path(), &RecalibrateOptions { score_filter_px: Some(1), ..Default::default() }).unwrap_err());
    assert!(e.contains("does not exist") && e.contains("nope"), "{e}");
    assert!(err(RecalibrateOptions { score_filter_px: Some(4), ..Default::default() }).contains("--score-filter: model.score_filter_px = 4: expected an odd number"));
    assert!(err(RecalibrateOptions { score_filter_px: Some(65), ..Default::default() }).contains("larger than the input"));
    assert!(err(RecalibrateOptions { target_false_reject_rate: Some(1.5), ..Default::default() }).contains("--target-frr: target_false_reject_rate = 1.5"));
    assert!(err(RecalibrateOptions { score_line_px: Some(2), ..Default::default() }).contains("--score-line: model.score_line_px = 2: expected 0 (off) or 3 up to"));
    assert!(err(RecalibrateOptions { map_sigma_px: Some(-1.0), ..Default::default() }).contains("--map-sigma: model.map_sigma_px = -1: expected 0 (raw map) up to 16 px"));
    assert!(err(RecalibrateOptions { map_floor_quantile: Some(0.7), ..Default::default() }).contains("--map-floor: model.map_floor_quantile = 0.7: expected 0 (off) up to 0.5"));
    assert!(err(RecalibrateOptions { map_floor_quantile: Some(f64::NAN), ..Default::default() }).contains("--map-floor: model.map_floor_quantile = NaN"));
    assert!(err(RecalibrateOptions { score_line_px: Some(100_000), ..Default::default() }).contains("model.score_line_px = 100000"));
    std::fs::write(d.path().join("afile"), "x").unwrap();
    let e = format!("{:#}", recalibrate(&weights, &d.path().join("afile"), &RecalibrateOptions { score_filter_px: Some(1), ..Default::default() }).unwrap_err());
    assert!(e.contains("afile is a file; expected a folder"), "{e}");

    // A sidecar that does not belong to the weights: fewer blocks (extra tensors in the file),
    // other widths (other shapes). Both must be errors, not a silently smaller model.
    let edited = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let dir = d.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&weights, dir.join("checkpoint.safetensors")).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(weights.with_extension("json")).unwrap()).unwrap();
        edit(&mut v);
        std::fs::write(dir.join("checkpoint.json"), v.to_string()).unwrap();
        format!("{:#}", recalibrate(&dir.join("checkpoint.safetensors"), &dir, &RecalibrateOptions { score_filter_px: Some(1), ..Default::default() }).unwrap_err())
    };
    let e = edited("fewer", &|v| v["config"]["model"]["blocks_per_stage"] = 1.into());
    assert!(e.contains("do not fit the model configuration") && e.contains("tensors of the file are not in the model"), "{e}");
    let e = edited("wider", &|v| v["config"]["model"]["stage_widths"][3] = 256.into());
    assert!(e.contains("have another shape"), "{e}");
    let e = edited("more", &|v| v["config"]["model"]["blocks_per_stage"] = 3.into());
    assert!(e.contains("tensors of the model are not in the file"), "{e}");
    let e = edited("strip-pool-claimed", &|v| v["config"]["model"]["head_strip_pool"] = true.into());
    assert!(e.contains("tensors of the model are not in the file (first: head.strip.") && e.contains("`model.head_strip_pool` says whether"), "{e}");
    // A value of the wrong type, edited by hand: the key and the value are named.
    let e = edited("number-for-a-name", &|v| v["config"]["model"]["tta"] = 3.into());
    assert!(e.contains("number-for-a-name/checkpoint.json is invalid: config.model.tta = 3: expected a name in quotes, one of `none`, `flip`, `vflip`, `half-turn`, `flip-vflip` (line 1 column"), "{e}");
    let e = edited("null-for-a-name", &|v| v["config"]["model"]["upsample"] = serde_json::Value::Null);
    assert!(e.contains("config.model.upsample = null: expected a name in quotes, `deconv` or `bilinear`"), "{e}");
    let e = edited("unknown-name", &|v| v["config"]["model"]["tta_reduce"] = "median".into());
    assert!(e.contains("config.model.tta_reduce = \"median\": unknown variant `median`, expected `mean` or `min`"), "{e}");
    let e = edited("text-for-a-number", &|v| v["config"]["steps"] = "many".into());
    assert!(e.contains("config.steps = \"many\": invalid type: string \"many\", expected u"), "{e}");
    let e = edited("number-in-the-holdout-list", &|v| v["holdout"][1] = 7.into());
    assert!(e.contains("holdout[1] = 7: invalid type: integer `7`"), "{e}");
    // Text that is not JSON, typed by hand: the key being read and the line are named. A byte
    // order mark (some editors write one) is skipped.
    let text_edited = |name: &str, edit: &dyn Fn(&str) -> String| {
        let dir = d.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&weights, dir.join("checkpoint.safetensors")).unwrap();
        std::fs::write(dir.join("checkpoint.json"), edit(&std::fs::read_to_string(weights.with_extension("json")).unwrap())).unwrap();
        recalibrate(&dir.join("checkpoint.safetensors"), &dir.join("out"), &RecalibrateOptions { score_filter_px: Some(1), ..Default::default() }).map(|_| ()).map_err(|e| format!("{e:#}"))
    };
    let nan = |t: &str| t.lines().map(|l| if l.trim_start().starts_with("\"threshold\":") { "  \"threshold\": NaN,".to_string() } else { l.to_string() }).collect::<Vec<_>>().join("\n");
    let e = text_edited("nan-threshold", &nan).unwrap_err();
    assert!(e.contains("nan-threshold/checkpoint.json is invalid: threshold: expected value at line") && e.contains(": `\"threshold\": NaN,`); JSON has no NaN or Infinity"), "{e}");
    let e = text_edited("no-colon", &|t| t.replacen("\"threshold\":", "\"threshold\" ", 1)).unwrap_err();
    assert!(e.contains("no-colon/checkpoint.json is invalid: expected `:` at line") && e.contains(": `\"threshold\"  0."), "{e}");
    // A trailing comma or a missing one is noticed on the next line: the line before is quoted too.
    let e = text_edited("trailing-comma", &|t| t.replacen("\"tta_reduce\": \"mean\"", "\"tta_reduce\": \"mean\",", 1)).unwrap_err();
    assert!(e.contains("trailing-comma/checkpoint.json is invalid: config.model: trailing comma at line") && e.contains("`\"tta_reduce\": \"mean\",`; line"), "{e}");
    assert!(!e.contains('?'), "no placeholder key: {e}");
    let no_comma = |t: &str| t.lines().map(|l| if l.trim_start().starts_with("\"steps_done\":") { l.trim_end_matches(',').to_string() } else { l.to_string() }).collect::<Vec<_>>().join("\n");
    let e = text_edited("missing-comma", &no_comma).unwrap_err();
    assert!(e.contains("expected `,` or `}` at line") && e.contains("`\"steps_done\": ") && e.contains("`; line"), "{e}");
    // A minified sidecar: the quote is a window around the column, not the file's start.
    let e = text_edited("minified-nan", &|t| {
        let v: serde_json::Value = serde_json::from_str(t).unwrap();
        v.to_string().replacen("\"threshold\":", "\"threshold\":NaN,\"was\":", 1)
    })
    .unwrap_err();
    assert!(e.contains("threshold: expected value at line 1") && e.contains("\"threshold\":NaN") && e.contains("JSON has no NaN"), "{e}");
    let e = text_edited("duplicate-key", &|t| t.replacen("\"tta\": \"none\",", "\"tta\": \"none\", \"tta\": \"flip\",", 1)).unwrap_err();
    assert!(e.contains("config.model: duplicate field `tta`") && e.len() < 400, "no dump of the object: {e}");
    let e = text_edited("empty", &|_| String::new()).unwrap_err();
    assert!(e.contains("empty/checkpoint.json is invalid: the file is empty"), "{e}");
    let dir = d.path().join("utf-16");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&weights, dir.join("checkpoint.safetensors")).unwrap();
    let utf16: Vec<u8> = [0xff, 0xfe].into_iter().chain("{\"threshold\": 1}".encode_utf16().flat_map(|u| u.to_le_bytes())).collect();
    std::fs::write(dir.join("checkpoint.json"), utf16).unwrap();
    let e = format!("{:#}", recalibrate(&dir.join("checkpoint.safetensors"), &dir, &RecalibrateOptions { score_filter_px: Some(1), ..Default::default() }).unwrap_err());
    assert!(e.contains("utf-16/checkpoint.json is UTF-16 text") && e.contains("save it as UTF-8"), "{e}");
    text_edited("byte-order-mark", &|t| format!("\u{feff}{t}")).unwrap();
    assert!(d.path().join("byte-order-mark/out/checkpoint.safetensors").exists());
    // A missing top-level field: the reason, not the whole document.
    let e = edited("no-config", &|v| {
        v.as_object_mut().unwrap().remove("config");
    });
    assert!(e.contains("no-config/checkpoint.json is invalid: missing field `config`") && e.len() < 300, "{e}");
    // A value out of range in the sidecar (not set by a flag) names the sidecar, in recalibrate
    // and wherever the model is built from it (export, eval, smoothing).
    let e = edited("sigma-99", &|v| v["config"]["model"]["map_sigma_px"] = 99.into());
    assert!(e.contains("checkpoint sidecar") && e.contains("sigma-99/checkpoint.json") && e.contains("model.map_sigma_px = 99: expected 0 (raw map) up to 16 px"), "{e}");
    let e = format!("{:#}", trainer::checkpoint::load_model(&d.path().join("sigma-99/checkpoint.safetensors"), tch::Device::Cpu).err().unwrap());
    assert!(e.contains("model configuration in") && e.contains("sigma-99/checkpoint.json") && e.contains("model.map_sigma_px = 99"), "{e}");

    let lost = trainer::checkpoint::load_info(&weights).unwrap().holdout[0].clone();
    std::fs::remove_file(&lost).unwrap();
    let e = err(RecalibrateOptions { score_filter_px: Some(1), ..Default::default() });
    assert!(e.contains(&lost.display().to_string()) && e.contains("lists the held-out good images"), "{e}");
    assert!(!d.path().join("x/checkpoint.safetensors").exists(), "nothing written on error");
}
