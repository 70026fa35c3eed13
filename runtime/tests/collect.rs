//! `runtime collect` (issue 16, item 1) through a real replay source: unchanged frames skipped by
//! the stated rule, unreadable ones counted, the ROI crop saved pixel for pixel as PNG, in the
//! layout the trainer reads (`runtime::dataset::train_good`, which `trainer train` calls), and a
//! second run adds to the first without overwriting it.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use image::{Rgb, RgbImage};
use runtime::bit_depth::BitDepth;
use runtime::capture::ReplaySource;
use runtime::collect::{collect, mean_abs_difference, CollectOptions};
use runtime::preprocess::Roi;

/// A 48x32 frame: a colour gradient shifted by `shift`, plus `noise` added to every other pixel.
fn frame(shift: u32, noise: u8) -> RgbImage {
    RgbImage::from_fn(48, 32, |x, y| {
        let n = if (x + y) % 2 == 0 { noise } else { 0 };
        Rgb([((x * 5 + shift * 40) % 200) as u8 + n, ((y * 7 + shift * 13) % 200) as u8, (x + y + shift) as u8])
    })
}

fn options(out: &Path, count: usize) -> CollectOptions {
    CollectOptions { count, out: out.into(), roi: Some(Roi { x: 8, y: 4, width: 32, height: 24 }), min_change: 2.0, frame_timeout: Duration::from_millis(500), progress: false }
}

#[test]
fn changed_frames_are_saved_as_roi_crops_in_the_trainers_layout() {
    let d = tempfile::tempdir().unwrap();
    let frames = d.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    // Part A, A again (standing still), A with sensor noise of 1 level on half the pixels (mean
    // difference 0.33: still), part B, a truncated file, part C, C again.
    let plan = [frame(0, 0), frame(0, 0), frame(0, 1), frame(1, 0), frame(2, 0), frame(3, 0), frame(3, 0)];
    for (i, f) in plan.iter().enumerate() {
        f.save(frames.join(format!("f{i}.png"))).unwrap();
    }
    let bytes = std::fs::read(frames.join("f4.png")).unwrap();
    std::fs::write(frames.join("f4.png"), &bytes[..bytes.len() / 2]).unwrap();
    let out = d.path().join("data");
    let mut source = ReplaySource::open(&frames, 1000.0, false, BitDepth::FULL).unwrap();
    let s = collect(&mut source, &options(&out, 100), &AtomicBool::new(false)).unwrap();
    assert_eq!((s.saved.len(), s.unchanged, s.bad, s.stopped_because), (3, 3, 1, "source ended"), "{s:?}");
    // Saved: A, B, C, each the ROI crop, pixel for pixel.
    for (path, src) in s.saved.iter().zip([&plan[0], &plan[3], &plan[5]]) {
        let saved = image::open(path).unwrap().to_rgb8();
        let want = image::imageops::crop_imm(src, 8, 4, 32, 24).to_image();
        assert_eq!(saved, want, "{}", path.display());
    }
    // The rule, computed here: A vs A-with-noise differs by 1 level on half the pixels of one
    // channel of three.
    let noisy = mean_abs_difference(&plan[0], &plan[2]).unwrap();
    assert!((noisy - 1.0 / 6.0).abs() < 1e-3, "{noisy}");
    assert!(mean_abs_difference(&plan[0], &plan[3]).unwrap() > 2.0);
    // The trainer reads the folder as it is.
    assert_eq!(runtime::dataset::train_good(&out).unwrap().len(), 3);
    // Colour frames are RGB PNGs; a grey frame is saved grey (one channel), values unchanged.
    assert_eq!(image::open(&s.saved[0]).unwrap().color(), image::ColorType::Rgb8);
    let grey_frames = d.path().join("grey");
    std::fs::create_dir(&grey_frames).unwrap();
    image::GrayImage::from_fn(48, 32, |x, y| image::Luma([(x * 3 + y) as u8])).save(grey_frames.join("g.png")).unwrap();
    let mut source = ReplaySource::open(&grey_frames, 1000.0, false, BitDepth::FULL).unwrap();
    let g = collect(&mut source, &options(&d.path().join("grey-data"), 5), &AtomicBool::new(false)).unwrap();
    let saved = image::open(&g.saved[0]).unwrap();
    assert_eq!(saved.color(), image::ColorType::L8);
    assert_eq!(saved.as_luma8().unwrap().get_pixel(0, 0).0, [(8 * 3 + 4) as u8], "ROI origin (8, 4)");

    // --count stops early; a second run keeps the first run's images.
    let mut source = ReplaySource::open(&frames, 1000.0, false, BitDepth::FULL).unwrap();
    std::thread::sleep(Duration::from_millis(2)); // another start time, another name prefix
    let s2 = collect(&mut source, &options(&out, 2), &AtomicBool::new(false)).unwrap();
    assert_eq!((s2.saved.len(), s2.stopped_because), (2, "count reached"));
    assert_eq!(runtime::dataset::train_good(&out).unwrap().len(), 5);
}

#[test]
fn a_roi_outside_the_frame_and_bad_options_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let frames = d.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    frame(0, 0).save(frames.join("f0.png")).unwrap();
    let out = d.path().join("data");
    let mut opts = options(&out, 5);
    opts.roi = Some(Roi { x: 40, y: 0, width: 16, height: 16 });
    let mut source = ReplaySource::open(&frames, 1000.0, false, BitDepth::FULL).unwrap();
    let e = collect(&mut source, &opts, &AtomicBool::new(false)).unwrap_err().to_string();
    assert!(e.contains("[roi]") && e.contains("f0.png") && e.contains("48x32"), "the frame is 48 px wide, x 40 + 16 does not fit: {e}");
    assert!(!out.join("train/good").exists(), "nothing created when nothing is saved");
    // Only unreadable frames: an error, not a silent empty data set.
    std::fs::write(frames.join("f0.png"), b"not a png").unwrap();
    let mut source = ReplaySource::open(&frames, 1000.0, false, BitDepth::FULL).unwrap();
    let e = collect(&mut source, &options(&out, 5), &AtomicBool::new(false)).unwrap_err().to_string();
    assert!(e.contains("no image saved") && e.contains("1 unreadable"), "{e}");
    assert!(!out.join("train/good").exists());
    frame(0, 0).save(frames.join("f0.png")).unwrap();
    for (count, change, want) in [(0, 2.0, "--count"), (5, -1.0, "--min-change"), (5, 300.0, "--min-change")] {
        let o = CollectOptions { count, min_change: change, ..options(&out, 5) };
        let mut source = ReplaySource::open(&frames, 1000.0, false, BitDepth::FULL).unwrap();
        let e = collect(&mut source, &o, &AtomicBool::new(false)).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    }
}
