//! Loads images of a data set into tensors with the runtime's preprocessing, so training sees
//! exactly what the line will see.

use std::path::{Path, PathBuf};

use anyhow::Context;
use runtime::preprocess::{load_image, to_model_input};
use tch::Tensor;

/// Loads `paths` as one tensor [N, 3, H, W] RGB in [0, 1] at the model size (`width` x `height`
/// px). Unreadable files are an error naming the file: training data must be clean.
pub fn load_batch(paths: &[PathBuf], width: u32, height: u32, progress: bool) -> anyhow::Result<Tensor> {
    let bar = runtime::progress::bar(paths.len() as u64, "load", progress);
    let mut data = Vec::with_capacity(paths.len() * 3 * (width * height) as usize);
    for p in paths {
        let img = load_image(p).with_context(|| "in the training data".to_string())?;
        data.extend_from_slice(&to_model_input(&img, None, width, height).chw);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(Tensor::from_slice(&data).view([paths.len() as i64, 3, height as i64, width as i64]))
}

/// Splits the good training images into (train, held-out) deterministically: every k-th image is
/// held out so that the held-out set spans the whole folder. At least 4 images are held out and
/// at least 4 kept.
pub fn holdout_split(paths: &[PathBuf], fraction: f64) -> anyhow::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    anyhow::ensure!(paths.len() >= 8, "need at least 8 good training images, found {}", paths.len());
    let n_hold = ((paths.len() as f64 * fraction).round() as usize).clamp(4, paths.len() - 4);
    let step = paths.len() as f64 / n_hold as f64;
    let held: std::collections::BTreeSet<usize> = (0..n_hold).map(|i| (i as f64 * step) as usize).collect();
    let (mut train, mut hold) = (Vec::new(), Vec::new());
    for (i, p) in paths.iter().enumerate() {
        if held.contains(&i) { hold.push(p.clone()) } else { train.push(p.clone()) }
    }
    Ok((train, hold))
}

/// Category name of a data set root: its folder name.
pub fn category_of(root: &Path) -> String {
    root.canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holdout_is_spread_deterministic_and_disjoint() {
        let paths: Vec<PathBuf> = (0..20).map(|i| PathBuf::from(format!("{i:02}.png"))).collect();
        let (train, hold) = holdout_split(&paths, 0.1).unwrap();
        // 10 % of 20 is 2, raised to the minimum of 4, every 5th image.
        let names: Vec<_> = hold.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(names, ["00.png", "05.png", "10.png", "15.png"]);
        assert_eq!(train.len(), 16);
        assert!(train.iter().all(|p| !hold.contains(p)));
        let msg = holdout_split(&paths[..5], 0.1).unwrap_err().to_string();
        assert!(msg.contains("at least 8") && msg.contains("found 5"), "{msg}");
    }
}
