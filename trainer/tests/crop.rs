//! Training on random crops (`train_crop`): the steps see crops, while the held-out scores, the
//! calibration and the checkpoint's model stay at the full input size, and user textures are
//! blended at the crop's size.

mod common;

use trainer::config::{CoordChannels, TrainConfig};
use trainer::train::{train, TrainOptions};

#[test]
fn crops_train_and_the_model_stays_at_the_full_input_size() {
    let root = tempfile::tempdir().unwrap();
    let data = common::good_images(root.path(), 96, 128);
    let textures = root.path().join("textures");
    std::fs::create_dir_all(&textures).unwrap();
    // Textures of another size than both the crop and the input: loaded at the crop's size, or
    // the blend into a 64x64 sample would fail on a 128x96 texture.
    for i in 0..2u32 {
        image::RgbImage::from_fn(50, 70, |x, y| image::Rgb([((x + y) * 9 + i) as u8, (x * 3) as u8, (y * 11) as u8])).save(textures.join(format!("t{i}.png"))).unwrap();
    }
    let mut cfg = TrainConfig::small();
    (cfg.model.input_height, cfg.model.input_width) = (128, 96);
    cfg.model.coord_channels = CoordChannels::None;
    cfg.train_crop = Some((64, 64));
    cfg.textures = Some(textures);
    cfg.steps = 3;
    cfg.batch_size = 2;
    // Every sample gets a defect textured from the folder, so the blend runs in 3 steps.
    cfg.anomaly_probability = 1.0;
    (cfg.synth.texture_self, cfg.synth.texture_fractal, cfg.synth.texture_folder, cfg.synth.texture_self_unshifted, cfg.synth.texture_smooth) = (0.0, 0.0, 1.0, 0.0, 0.0);
    let (weights, info) = train(&TrainOptions::new(data, cfg, root.path().join("out"))).unwrap();
    assert_eq!(info.config.train_crop, Some((64, 64)));
    assert_eq!((info.config.model.input_height, info.config.model.input_width), (128, 96), "the model keeps the full input size");
    assert_eq!(info.steps_done, 3);
    assert!(info.threshold.is_finite() && info.threshold > 0.0, "calibrated on full-size held-out images: {}", info.threshold);
    // The saved checkpoint says the same (what `trainer export` reads).
    let saved = trainer::checkpoint::load_info(&weights).unwrap();
    assert_eq!(saved.config, info.config);
}
