//! Helpers shared by the trainer's integration tests.
#![allow(dead_code)] // each test file uses some of them

use std::path::{Path, PathBuf};

use trainer::config::TrainConfig;
use trainer::train::{train, TrainOptions};

/// libtorch's generator is process-wide: tests of one file that train must not interleave, or one
/// run's initialisation would draw from the other's stream. One intra-op thread, because with
/// several, BLAS may pick a thread count by machine load and sum in another order. Hold the guard
/// for the whole test.
pub fn exclusive_torch() -> std::sync::MutexGuard<'static, ()> {
    static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(1);
    guard
}

/// Writes 12 good `width` x `height` px RGB images with structure (so maps are not constant) to
/// `<root>/data/train/good` and returns `<root>/data`.
pub fn good_images(root: &Path, width: u32, height: u32) -> PathBuf {
    let good = root.join("data/train/good");
    std::fs::create_dir_all(&good).unwrap();
    for i in 0..12u32 {
        image::RgbImage::from_fn(width, height, |x, y| image::Rgb([((x * 7 + i * 13) % 256) as u8, ((y * 5) % 256) as u8, ((x * y + i) % 256) as u8])).save(good.join(format!("{i:02}.png"))).unwrap();
    }
    root.join("data")
}

/// A 3-step checkpoint (small preset at 64x64, batch 2) trained on [`good_images`] at 80x80,
/// under `<root>/data` and `<root>/out`; returns its weights file.
pub fn tiny_checkpoint(root: &Path) -> PathBuf {
    tiny_checkpoint_with(root, |_| {})
}

/// [`tiny_checkpoint`] with `change` applied to its config before training.
pub fn tiny_checkpoint_with(root: &Path, change: impl FnOnce(&mut TrainConfig)) -> PathBuf {
    good_images(root, 80, 80);
    let mut cfg = TrainConfig::small();
    cfg.model.input_height = 64;
    cfg.model.input_width = 64;
    cfg.steps = 3;
    cfg.batch_size = 2;
    change(&mut cfg);
    train(&TrainOptions::new(root.join("data"), cfg, root.join("out"))).unwrap().0
}
