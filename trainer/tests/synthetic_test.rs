//! `trainer synthetic-test`: the set holds the checkpoint's held-out images as they are, and each
//! defective image differs from its good image inside its mask only; it is deterministic per seed,
//! refuses to overwrite, and `trainer smoothing` scores it as a labelled test set.

mod common;

use std::path::Path;

use runtime::bit_depth::BitDepth;
use runtime::preprocess::{load_image, to_model_input};
use trainer::smoothing::{compare_smoothing, SmoothingGrid};
use trainer::synthetic_test::write_synthetic_test_set;

/// Planar CHW RGB in [0, 1] of an image file at 64x64 px, as the trainer and runtime load it.
fn model_input(p: &Path) -> Vec<f32> {
    to_model_input(&load_image(p, BitDepth::FULL).unwrap(), None, 64, 64).chw
}

fn mask(p: &Path) -> Vec<u8> {
    image::open(p).unwrap().to_luma8().into_raw()
}

#[test]
fn synthetic_defects_change_their_masks_only_and_the_set_scores_as_a_test_set() {
    let _torch = common::exclusive_torch();
    let dir = tempfile::tempdir().unwrap();
    let weights = common::tiny_checkpoint(dir.path());
    let info = trainer::checkpoint::load_info(&weights).unwrap();
    assert_eq!(info.holdout.len(), 4, "12 images, 10 % held out, at least 4");

    let out = dir.path().join("synthetic");
    // The partial folder of an interrupted run goes; what it held does not reach the set.
    std::fs::create_dir_all(dir.path().join(".synthetic.tmp/test/good")).unwrap();
    std::fs::write(dir.path().join(".synthetic.tmp/test/good/stale.png"), b"half an image").unwrap();
    let set = write_synthetic_test_set(&weights, &out, 2, 5, false).unwrap();
    assert!(!dir.path().join(".synthetic.tmp").exists() && !out.join("test/good/stale.png").exists());
    let sources = std::fs::read_to_string(out.join("sources.csv")).unwrap();
    assert_eq!(sources.lines().nth(2).unwrap(), format!("test/good/001.png,{}", info.holdout[1].display()));
    assert_eq!((set.good, set.defective, set.mask_coverage.len()), (4, 8, 8));
    for (k, held) in info.holdout.iter().enumerate() {
        // The good image is the held-out image at model size, within half a 16-bit step.
        let good = model_input(&out.join(format!("test/good/{k:03}.png")));
        let want = model_input(held);
        let worst = good.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst <= 0.5 / 65535.0 + 1e-7, "held-out image {k}: max |diff| {worst}");
        for j in 0..2 {
            let stem = format!("{k:03}_{j}");
            let bad = model_input(&out.join(format!("test/synthetic/{stem}.png")));
            let m = mask(&out.join(format!("ground_truth/synthetic/{stem}_mask.png")));
            assert!(m.iter().all(|&v| v == 0 || v == 255), "{stem}: mask of 0 / 255 only");
            let inside = m.iter().filter(|&&v| v == 255).count();
            assert!(inside > 0, "{stem}: empty mask");
            assert!((set.mask_coverage[2 * k + j] - inside as f64 / (64.0 * 64.0)).abs() < 1e-9, "{stem}: reported coverage");
            let (mut changed_inside, mut worst_outside) = (0.0f32, 0.0f32);
            for (i, (a, b)) in bad.iter().zip(&good).enumerate() {
                let d = (a - b).abs();
                if m[i % (64 * 64)] == 255 { changed_inside += d } else { worst_outside = worst_outside.max(d) }
            }
            assert_eq!(worst_outside, 0.0, "{stem}: pixels outside the mask changed");
            assert!(changed_inside > 0.0, "{stem}: nothing changed inside the mask");
        }
    }

    // The same seed draws the same defects; another seed others.
    let again = dir.path().join("again");
    assert_eq!(write_synthetic_test_set(&weights, &again, 2, 5, false).unwrap(), set);
    assert_eq!(std::fs::read(out.join("test/synthetic/002_1.png")).unwrap(), std::fs::read(again.join("test/synthetic/002_1.png")).unwrap());
    let other = write_synthetic_test_set(&weights, &dir.path().join("other"), 2, 6, false).unwrap();
    assert_ne!(other.mask_coverage, set.mask_coverage);

    // Nothing is overwritten; bad counts, a sidecar without its weights, held-out images that are
    // gone: refused by name, and nothing is left behind.
    let err = write_synthetic_test_set(&weights, &out, 2, 5, false).unwrap_err().to_string();
    assert!(err.contains(&out.display().to_string()) && err.contains("not an empty folder"), "{err}");
    std::fs::write(dir.path().join("afile"), b"x").unwrap();
    let err = write_synthetic_test_set(&weights, &dir.path().join("afile"), 2, 5, false).unwrap_err().to_string();
    assert!(err.contains("afile exists and is not a folder"), "{err}");
    for n in [0, 101] {
        let err = write_synthetic_test_set(&weights, &dir.path().join("count"), n, 5, false).unwrap_err().to_string();
        assert!(err.contains(&format!("--per-image {n}: expected 1 to 100")), "{err}");
    }
    let copy = |name: &str, edit: &dyn Fn(&mut serde_json::Value), weights_bytes: Option<&[u8]>| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let mut j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(weights.with_extension("json")).unwrap()).unwrap();
        edit(&mut j);
        std::fs::write(d.join("checkpoint.json"), j.to_string()).unwrap();
        std::fs::write(d.join("checkpoint.safetensors"), weights_bytes.map(<[u8]>::to_vec).unwrap_or_else(|| std::fs::read(&weights).unwrap())).unwrap();
        d.join("checkpoint.safetensors")
    };
    let gone = dir.path().join("gone/07.png");
    let moved = copy("moved", &|j| j["holdout"][1] = serde_json::json!(gone), None);
    let no_weights = copy("garbage", &|_| {}, Some(b"garbage"));
    let empty = copy("empty", &|j| j["holdout"] = serde_json::json!([]), None);
    for (ckpt, want) in [
        (&moved, format!("held-out good image 1 of `holdout` in {}", moved.with_extension("json").display())),
        (&moved, "gone/07.png".to_string()),
        (&no_weights, no_weights.display().to_string()),
        (&empty, "lists no held-out good images (`holdout` is empty)".to_string()),
    ] {
        let set_dir = ckpt.parent().unwrap().join("set");
        let err = format!("{:#}", write_synthetic_test_set(ckpt, &set_dir, 2, 5, false).unwrap_err());
        assert!(err.contains(&want), "{err}");
        assert!(!set_dir.exists() && !ckpt.parent().unwrap().join(".set.tmp").exists(), "{}: something was written", set_dir.display());
    }

    // `trainer smoothing` reads it as a labelled test set: 4 good, 8 defective, metrics defined.
    let rows = compare_smoothing(&weights, &out, &SmoothingGrid::sigmas_and_filters(&[2.0], &[3]), tch::Device::Cpu, false).unwrap();
    let r = &rows[0].report;
    assert_eq!((r.labelled_images, r.defective_images), (12, 8));
    assert!(r.image_auroc.is_some() && r.pixel_auroc.is_some() && r.aupro.is_some());
}
