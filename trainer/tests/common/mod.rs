//! Helpers shared by the trainer's integration tests.

use std::path::{Path, PathBuf};

use trainer::config::TrainConfig;
use trainer::train::{train, TrainOptions};

/// A 3-step checkpoint (small preset at 64x64, batch 2) trained on 12 good 80x80 images with
/// structure (so maps are not constant), under `<root>/data` and `<root>/out`; returns its weights file.
pub fn tiny_checkpoint(root: &Path) -> PathBuf {
    let good = root.join("data/train/good");
    std::fs::create_dir_all(&good).unwrap();
    for i in 0..12u32 {
        image::RgbImage::from_fn(80, 80, |x, y| image::Rgb([((x * 7 + i * 13) % 256) as u8, ((y * 5) % 256) as u8, ((x * y + i) % 256) as u8])).save(good.join(format!("{i:02}.png"))).unwrap();
    }
    let mut cfg = TrainConfig::small();
    cfg.model.input_height = 64;
    cfg.model.input_width = 64;
    cfg.steps = 3;
    cfg.batch_size = 2;
    train(&TrainOptions::new(root.join("data"), cfg, root.join("out"))).unwrap().0
}
