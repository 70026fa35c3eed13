//! A labelled test set made of the checkpoint's held-out good images and the same images with the
//! training's own synthetic defects, in the MVTec AD layout: a way to compare scoring settings
//! (`trainer smoothing`) on a part for which no real defect has been labelled yet, without
//! touching the images the model was trained on.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use tch::{Kind, Tensor};

use runtime::preprocess::{load_image, to_model_input};
use crate::synth::Synthesizer;

/// Held-out images drawn on together (a training batch is 8): bounds the memory.
const CHUNK: usize = 16;

/// Folder (under `test/` and `ground_truth/`) that holds the synthetic defects.
pub const DEFECT_FOLDER: &str = "synthetic";

/// What [`write_synthetic_test_set`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticTestSet {
    /// Good images written to `test/good` (the held-out images).
    pub good: usize,
    /// Defective images written to `test/synthetic`, each with its mask in `ground_truth/synthetic`.
    pub defective: usize,
    /// Defect area per defective image, share of the image's pixels (0..1): index
    /// `k * per_image + j` for `test/synthetic/<k>_<j>.png`.
    pub mask_coverage: Vec<f64>,
}

/// Most synthetic defects per held-out image `--per-image` accepts (a set of 26 held-out images at
/// 100 each is 2,600 defective images: more than any comparison of settings needs).
pub const MAX_PER_IMAGE: usize = 100;

/// Writes `<out>/test/good/<k>.png` (the held-out good images of the checkpoint `weights`, at the
/// model's input size), `<out>/test/synthetic/<k>_<j>.png` (`per_image` defects on each, drawn by
/// the training's [`Synthesizer`] with its config, textures from `config.textures` when that
/// folder is still there), `<out>/ground_truth/synthetic/<k>_<j>_mask.png` (0 / 255) and
/// `<out>/sources.csv` (`good_image,held_out_source`). Images are 16-bit RGB PNG at the
/// checkpoint's bit depth (sample = round(v * (2^bits - 1)), so the runtime's loader gives back v
/// within half a step); masks 8-bit grey. The draw depends only on `seed`. The set is written to
/// a partial folder beside `out` (`.<name>.tmp`) and renamed onto `out` when complete: a failed
/// or interrupted run leaves no half set at `out` (the next run removes an interrupted one's
/// partial folder).
///
/// # Errors
/// `out` exists and is not an empty folder (nothing is overwritten); `per_image` outside
/// 1..=[`MAX_PER_IMAGE`]; a checkpoint whose weights or configuration do not load; a sidecar
/// without held-out images; a held-out image that cannot be read (named with its index in the
/// sidecar's `holdout`); an unreadable texture folder; a file that cannot be written (named).
pub fn write_synthetic_test_set(weights: &Path, out: &Path, per_image: usize, seed: u64, progress: bool) -> anyhow::Result<SyntheticTestSet> {
    anyhow::ensure!((1..=MAX_PER_IMAGE).contains(&per_image), "--per-image {per_image}: expected 1 to {MAX_PER_IMAGE} synthetic defects per held-out image");
    if let Ok(meta) = out.symlink_metadata() {
        let empty = out.is_dir() && std::fs::read_dir(out).map(|mut d| d.next().is_none()).unwrap_or(false);
        anyhow::ensure!(meta.is_dir() || out.is_dir(), "--out {} exists and is not a folder; choose a new --out (nothing is overwritten)", out.display());
        anyhow::ensure!(empty, "--out {} already exists and is not an empty folder; choose a new --out (nothing is overwritten)", out.display());
    }
    // The weights are not needed to draw, but a set made for a checkpoint that does not load
    // would end in a `trainer smoothing` that fails: refuse it here (this also checks the sidecar's
    // configuration, e.g. a hand-edited input size).
    let (_, _, info) = crate::checkpoint::load_model(weights, tch::Device::Cpu)?;
    let sidecar = crate::checkpoint::sidecar(weights);
    anyhow::ensure!(!info.holdout.is_empty(), "{} lists no held-out good images (`holdout` is empty): retrain with holdout_fraction > 0", sidecar.display());
    let cfg = &info.config;
    let (w, h) = (cfg.model.input_width as u32, cfg.model.input_height as u32);
    let load = |k: usize| -> anyhow::Result<Vec<f32>> {
        let p = &info.holdout[k];
        let img = load_image(p, cfg.bit_depth).with_context(|| format!("held-out good image {k} of `holdout` in {} (moved since training?)", sidecar.display()))?;
        Ok(to_model_input(&img, None, w, h).chw)
    };
    // Every image decoded once first (a missing one fails before anything is written), none
    // kept: the set is drawn in chunks, so memory does not grow with the number of images.
    let n = info.holdout.len();
    for k in 0..n {
        load(k)?;
    }
    let textures = match &cfg.textures {
        Some(dir) if dir.is_dir() => Synthesizer::load_textures(dir, w, h)?,
        Some(dir) => {
            tracing::warn!("texture folder {} of the training is not a folder here (moved or deleted?): synthetic defects without its textures", dir.display());
            Vec::new()
        }
        None => Vec::new(),
    };
    let synthesizer = Synthesizer::new(cfg.synth.clone(), textures);
    let mut rng = ChaCha12Rng::seed_from_u64(seed);

    let partial = crate::partial_output::PartialOutput::folder_beside(out)?;
    let root = partial.path.clone();
    let good_dir = root.join("test").join("good");
    let defect_dir = root.join("test").join(DEFECT_FOLDER);
    let mask_dir = root.join("ground_truth").join(DEFECT_FOLDER);
    for d in [&good_dir, &defect_dir, &mask_dir] {
        std::fs::create_dir_all(d).map_err(|e| anyhow::anyhow!("cannot create folder {}: {e}", d.display()))?;
    }
    let max = f64::from(cfg.bit_depth.max_sample());
    let bar = runtime::progress::bar((n * per_image) as u64, "synthesize", progress);
    let mut mask_coverage = vec![0.0; n * per_image];
    let mut sources = String::from("good_image,held_out_source\n");
    let all: Vec<usize> = (0..n).collect();
    for chunk in all.chunks(CHUNK) {
        // A chunk is a batch as in training: the self-shifted textures come from its other images.
        let mut data = Vec::with_capacity(chunk.len() * 3 * (w * h) as usize);
        for &k in chunk {
            data.extend(load(k)?);
        }
        let clean = Tensor::from_slice(&data).view([chunk.len() as i64, 3, h as i64, w as i64]);
        for (i, &k) in chunk.iter().enumerate() {
            write_rgb16(&clean.get(i as i64), max, &good_dir.join(format!("{k:03}.png")))?;
            sources.push_str(&format!("test/good/{k:03}.png,{}\n", info.holdout[k].display()));
        }
        for j in 0..per_image {
            let (defective, masks) = draw_visible(&synthesizer, &clean, &mut rng);
            for (i, &k) in chunk.iter().enumerate() {
                let stem = format!("{k:03}_{j}");
                write_rgb16(&defective.get(i as i64), max, &defect_dir.join(format!("{stem}.png")))?;
                let m = masks.get(i as i64);
                mask_coverage[k * per_image + j] = m.mean(Kind::Float).double_value(&[]);
                write_mask(&m, &mask_dir.join(format!("{stem}_mask.png")))?;
                bar.inc(1);
            }
        }
    }
    let csv = root.join("sources.csv");
    std::fs::write(&csv, sources).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", csv.display()))?;
    bar.finish_and_clear();
    partial.commit(out)?;
    Ok(SyntheticTestSet { good: n, defective: n * per_image, mask_coverage })
}

/// One defect on every image of `clean` [N, 3, H, W]: the synthesizer with probability 1, drawn
/// again (up to 8 times) for an image whose mask came out empty, so that each defective image
/// holds a defect.
fn draw_visible(synthesizer: &Synthesizer, clean: &Tensor, rng: &mut ChaCha12Rng) -> (Tensor, Tensor) {
    let (out, masks) = synthesizer.synthesize(clean, 1.0, rng);
    for _ in 0..8 {
        let empty: Vec<i64> = (0..clean.size()[0]).filter(|&k| masks.get(k).sum(Kind::Float).double_value(&[]) == 0.0).collect();
        if empty.is_empty() {
            break;
        }
        let (o, m) = synthesizer.synthesize(clean, 1.0, rng);
        for k in empty {
            out.get(k).copy_(&o.get(k));
            masks.get(k).copy_(&m.get(k));
        }
    }
    (out, masks)
}

/// Writes `chw` [3, H, W] in [0, 1] as a 16-bit RGB PNG with samples round(v * max).
fn write_rgb16(chw: &Tensor, max: f64, path: &Path) -> anyhow::Result<()> {
    let (h, w) = (chw.size()[1] as u32, chw.size()[2] as u32);
    let hwc = (chw.clamp(0.0, 1.0) * max).round().permute([1, 2, 0]).contiguous().to_kind(Kind::Float);
    let v: Vec<f32> = Vec::<f32>::try_from(hwc.flatten(0, -1))?;
    let samples: Vec<u16> = v.iter().map(|&x| x as u16).collect();
    let img = image::ImageBuffer::<image::Rgb<u16>, _>::from_raw(w, h, samples).expect("buffer of 3 x w x h samples");
    img.save(path).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// Writes a mask [1, H, W] (0 or 1) as an 8-bit grey PNG of 0 / 255.
fn write_mask(mask: &Tensor, path: &Path) -> anyhow::Result<()> {
    let (h, w) = (mask.size()[1] as u32, mask.size()[2] as u32);
    let v: Vec<f32> = Vec::<f32>::try_from(mask.flatten(0, -1))?;
    let px: Vec<u8> = v.iter().map(|&x| if x > 0.5 { 255 } else { 0 }).collect();
    let img = image::GrayImage::from_raw(w, h, px).expect("buffer of w x h samples");
    img.save(path).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// Default output folder of `trainer synthetic-test`: `synthetic-test` beside the checkpoint.
pub fn default_out(weights: &Path) -> PathBuf {
    weights.parent().unwrap_or(Path::new(".")).join("synthetic-test")
}
