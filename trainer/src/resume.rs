//! Resume points: everything a training run needs to continue where it stopped (weights, optimizer
//! state, data order, random-number stream, validation curve), written to `<out>/resume/` every
//! `save_every` steps and when the run is interrupted.
//!
//! A resume point is written to `<out>/resume.new/` and then swapped in, so that a crash while
//! writing leaves the previous point usable.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::curve::CurvePoint;

/// Folder of the current resume point in an output folder.
pub fn resume_dir(out_dir: &Path) -> PathBuf {
    out_dir.join("resume")
}

fn staging_dir(out_dir: &Path) -> PathBuf {
    out_dir.join("resume.new")
}

/// Weights file inside a resume folder (tch `VarStore::save`).
pub fn weights_file(dir: &Path) -> PathBuf {
    dir.join("weights.safetensors")
}

/// Optimizer state inside a resume folder ([`crate::optimizer::Optimizer::save`]).
pub fn optimizer_file(dir: &Path) -> PathBuf {
    dir.join("optimizer.safetensors")
}

/// Weight averages inside a resume folder ([`crate::ema::WeightAverage::save`]; only with
/// `ema_decay` > 0).
pub fn ema_file(dir: &Path) -> PathBuf {
    dir.join("ema.safetensors")
}

fn state_file(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

/// The loop state of a training run after `step` steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumeState {
    pub config: TrainConfig,
    /// Canonical data root and the training images used (a resume must see the same data).
    pub data_root: PathBuf,
    pub train_images: Vec<PathBuf>,
    /// Steps completed.
    pub step: usize,
    /// Position in the ChaCha12 stream of the data-order / defect-synthesis generator (in 32-bit
    /// words), as a decimal string (u128 is not a JSON number).
    pub rng_word_pos: String,
    /// Current permutation of the training images and the next index into it.
    pub order: Vec<usize>,
    pub cursor: usize,
    /// Smoothed training loss.
    pub smoothed_loss: Option<f64>,
    pub curve: Vec<CurvePoint>,
    /// Held-out scores of the last evaluation (NaN stored as `null`).
    #[serde(deserialize_with = "nulls_as_nan")]
    pub good_scores: Vec<f32>,
    /// Training wall time before this point, s.
    pub wall_time_s: f64,
}

/// Writes `state` with the weights, optimizer (and weight-average) files produced by
/// `write_tensors(dir)` as the new resume point of `out_dir`. Errors name the folder.
pub fn save(out_dir: &Path, state: &ResumeState, write_tensors: impl FnOnce(&Path) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let staging = staging_dir(out_dir);
    let ctx = |e: std::io::Error| anyhow::anyhow!("cannot write resume point {}: {e}", staging.display());
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(ctx)?;
    }
    std::fs::create_dir_all(&staging).map_err(ctx)?;
    write_tensors(&staging)?;
    // state.json last: its presence marks a complete point.
    std::fs::write(state_file(&staging), serde_json::to_string(state)?).map_err(ctx)?;
    let current = resume_dir(out_dir);
    if current.exists() {
        std::fs::remove_dir_all(&current).map_err(|e| anyhow::anyhow!("cannot replace resume point {}: {e}", current.display()))?;
    }
    std::fs::rename(&staging, &current).map_err(|e| anyhow::anyhow!("cannot move {} to {}: {e}", staging.display(), current.display()))
}

/// The latest complete resume point of `out_dir`: (its folder, its state).
///
/// Errors: no resume point (names the folder and says how one is made), unreadable or invalid
/// `state.json` (names the file).
pub fn load(out_dir: &Path) -> anyhow::Result<(PathBuf, ResumeState)> {
    let dir = [resume_dir(out_dir), staging_dir(out_dir)].into_iter().find(|d| state_file(d).is_file()).ok_or_else(|| {
        anyhow::anyhow!(
            "no resume point in {}: expected {}/state.json, written every --save-every steps by `trainer train --out {}`",
            out_dir.display(),
            resume_dir(out_dir).display(),
            out_dir.display()
        )
    })?;
    let f = state_file(&dir);
    let text = crate::checkpoint::read_text(&f, "resume point")?;
    let state: ResumeState = crate::checkpoint::parse_json(&text).map_err(|e| anyhow::anyhow!("resume point {} is invalid: {e}", f.display()))?;
    Ok((dir, state))
}

/// Removes the resume point once the final checkpoint is written.
pub fn clear(out_dir: &Path) {
    for d in [resume_dir(out_dir), staging_dir(out_dir)] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Checks that a resume point belongs to this run: same configuration and training images.
/// The error names the first differing field.
pub fn check_matches(state: &ResumeState, config: &TrainConfig, data_root: &Path, train_images: &[PathBuf]) -> anyhow::Result<()> {
    if &state.config != config {
        let a = serde_json::to_value(&state.config)?;
        let b = serde_json::to_value(config)?;
        let field = first_difference(&a, &b, "").unwrap_or_default();
        anyhow::bail!("the resume point was made with a different configuration (`{field}`: {} there, {} now); resume with the same config and overrides", lookup(&a, &field), lookup(&b, &field));
    }
    anyhow::ensure!(
        state.data_root == data_root && state.train_images == train_images,
        "the resume point was made on {} ({} training images), this run uses {} ({} images)",
        state.data_root.display(),
        state.train_images.len(),
        data_root.display(),
        train_images.len()
    );
    Ok(())
}

/// Checks the loop state itself (a hand-edited or damaged `state.json`): `step` below the total
/// steps, `order` a permutation of the `n` training images, `cursor` at most `n`, a numeric
/// `rng_word_pos`. The error names the field.
pub fn check_consistent(state: &ResumeState, n: usize) -> anyhow::Result<()> {
    let bad = |what: String| anyhow::anyhow!("resume point is damaged: {what}; delete the resume folder to start afresh");
    if state.step == 0 || state.step >= state.config.steps {
        return Err(bad(format!("step = {}, expected 1..{}", state.step, state.config.steps)));
    }
    let mut seen = vec![false; n];
    if state.order.len() != n || !state.order.iter().all(|&i| i < n && !std::mem::replace(&mut seen[i], true)) {
        return Err(bad(format!("order is not a permutation of the {n} training images")));
    }
    if state.cursor > n {
        return Err(bad(format!("cursor = {}, expected at most {n}", state.cursor)));
    }
    state.rng_word_pos.parse::<u128>().map_err(|e| bad(format!("rng_word_pos `{}`: {e}", state.rng_word_pos)))?;
    Ok(())
}

fn nulls_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
    Ok(Vec::<Option<f32>>::deserialize(d)?.into_iter().map(|v| v.unwrap_or(f32::NAN)).collect())
}

fn first_difference(a: &serde_json::Value, b: &serde_json::Value, path: &str) -> Option<String> {
    match (a, b) {
        (serde_json::Value::Object(x), serde_json::Value::Object(y)) => x.iter().find_map(|(k, v)| {
            let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
            first_difference(v, y.get(k).unwrap_or(&serde_json::Value::Null), &p)
        }),
        _ if a != b => Some(path.to_string()),
        _ => None,
    }
}

fn lookup(v: &serde_json::Value, path: &str) -> String {
    path.split('.').fold(Some(v), |v, k| v.and_then(|v| v.get(k))).map_or("?".into(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> ResumeState {
        ResumeState {
            config: TrainConfig::small(),
            data_root: "/data/x".into(),
            train_images: vec!["/data/x/train/good/a.png".into()],
            step: 30,
            rng_word_pos: "1234".into(),
            order: vec![0],
            cursor: 1,
            smoothed_loss: Some(0.5),
            curve: vec![],
            good_scores: vec![0.1, 0.2],
            wall_time_s: 12.5,
        }
    }

    #[test]
    fn saved_point_loads_back_and_a_half_written_one_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        let err = load(d.path()).unwrap_err().to_string();
        assert!(err.contains("no resume point") && err.contains("state.json"), "{err}");
        save(d.path(), &state(), |dir| Ok(std::fs::write(dir.join("weights.safetensors"), b"w")?)).unwrap();
        // A crash while writing the next point leaves a staging folder without state.json.
        std::fs::create_dir_all(d.path().join("resume.new")).unwrap();
        let (dir, s) = load(d.path()).unwrap();
        assert_eq!(dir, d.path().join("resume"));
        assert_eq!(s, state());
        // NaN scores of an untrained model survive the JSON round trip.
        let mut nan = state();
        nan.good_scores = vec![f32::NAN];
        save(d.path(), &nan, |_| Ok(())).unwrap();
        assert!(load(d.path()).unwrap().1.good_scores[0].is_nan());
        save(d.path(), &state(), |dir| Ok(std::fs::write(dir.join("weights.safetensors"), b"w")?)).unwrap();
        assert!(weights_file(&dir).is_file());
        clear(d.path());
        assert!(load(d.path()).is_err());
    }

    #[test]
    fn a_damaged_state_is_a_clear_error() {
        let mut cfg_state = state();
        cfg_state.order = vec![0, 1, 2];
        check_consistent(&cfg_state, 3).unwrap();
        let cases: [(&dyn Fn(&mut ResumeState), &str); 5] = [
            (&|s| s.order = vec![0, 1, 9999], "order"),
            (&|s| s.order = vec![0, 1, 1], "order"),
            (&|s| s.cursor = 100_000, "cursor"),
            (&|s| s.step = 99_999, "step"),
            (&|s| s.rng_word_pos = "x".into(), "rng_word_pos"),
        ];
        for (damage, field) in cases {
            let mut s = cfg_state.clone();
            damage(&mut s);
            let msg = check_consistent(&s, 3).unwrap_err().to_string();
            assert!(msg.contains(field) && msg.contains("damaged"), "{msg}");
        }
    }

    #[test]
    fn a_point_of_another_run_names_the_difference() {
        let s = state();
        let mut cfg = TrainConfig::small();
        cfg.model.global_ratio = 0.25;
        let msg = check_matches(&s, &cfg, Path::new("/data/x"), &s.train_images).unwrap_err().to_string();
        assert!(msg.contains("model.global_ratio") && msg.contains("0.5") && msg.contains("0.25"), "{msg}");
        let msg = check_matches(&s, &TrainConfig::small(), Path::new("/data/y"), &s.train_images).unwrap_err().to_string();
        assert!(msg.contains("/data/x") && msg.contains("/data/y"), "{msg}");
        check_matches(&s, &TrainConfig::small(), Path::new("/data/x"), &s.train_images).unwrap();
    }
}
