//! Bit depth end to end (issue 14, item 2): 12-bit sensor data, LSB-aligned in 16-bit PNG files,
//! through `runtime run` (replay) and `runtime inspect`, judged by the synthetic brightness model
//! (score = the brightest pixel's value in [0, 1]), so every score is a pixel value we can compute
//! here: the line's frames are RGB8, `round(v * 255 / 4095) / 255`; `inspect` keeps 16 bits,
//! `round(v * 65535 / 4095) / 65535`. The model records 12 bits (as `trainer train --bit-depth
//! 12` writes it) and the device file leaves `camera.bit_depth` unset: the runtime follows the
//! model. Setting `camera.bit_depth = 16` reproduces the old behaviour (16x too dark) and is
//! warned about.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use firmware_config::{CameraSource, DeviceConfig, OverlayMode};
use image::{ImageBuffer, Luma};
use runtime::bit_depth::BitDepth;
use runtime::inspect::{inspect, InspectOptions};

const W: u32 = 32;
const H: u32 = 16;
/// Brightest 12-bit value of each replay image, in name order; the last is not a 12-bit value.
const PEAKS: [u16; 4] = [4095, 2048, 1000, 5000];

/// Writes one 16-bit grey PNG per peak: dark background (100) with one pixel at the peak.
fn write_images(dir: &Path) {
    for (i, &peak) in PEAKS.iter().enumerate() {
        let mut img: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_pixel(W, H, Luma([100]));
        img.put_pixel(5, 7, Luma([peak]));
        img.save(dir.join(format!("part_{i}.png"))).unwrap();
    }
}

fn events(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn line_config(dir: &Path, model: &Path, out: &str) -> DeviceConfig {
    let mut cfg = DeviceConfig::default();
    cfg.camera.source = CameraSource::Replay;
    cfg.camera.replay_dir = Some(dir.join("frames"));
    cfg.camera.fps = 20.0;
    cfg.model.path = model.to_path_buf();
    cfg.output.dir = dir.join(out);
    cfg.output.overlays = OverlayMode::None;
    cfg
}

#[test]
fn a_12_bit_replay_is_read_at_the_models_bit_depth() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("frames")).unwrap();
    write_images(&d.path().join("frames"));
    let model = d.path().join("brightness12.onnx");
    runtime::synthetic::write_brightness_model_at_depth(&model, W, H, 0.6, BitDepth::new(12).unwrap()).unwrap();
    let safe = runtime::shutdown::SafeLines::install();

    // camera.bit_depth unset: the model's 12 bits. RGB8 frames: round(v * 255 / 4095).
    let cfg = line_config(d.path(), &model, "out12");
    let run = runtime::line::setup::run_from_config(&cfg, None, Arc::new(AtomicBool::new(false)), &safe).unwrap();
    // (The synthetic model records no training colour: the grey-replay warning is expected.)
    assert!(!run.warnings.iter().any(|w| w.contains("bit_depth")), "{:?}", run.warnings);
    let ev = events(&cfg.output.dir.join("events.jsonl"));
    assert_eq!(ev.len(), 4, "{ev:?}");
    for (e, (verdict, score)) in ev.iter().zip([("REJECT", 255.0), ("OK", 128.0), ("OK", 62.0)]) {
        assert_eq!(e["verdict"], verdict, "{e}");
        let got = e["score"].as_f64().unwrap();
        assert!((got - score / 255.0).abs() < 1e-6, "{}: score {got}, expected {score}/255", e["source"]);
    }
    // 5000 cannot come from a 12-bit sensor: BAD (fail-safe pulse), the reason says why.
    assert_eq!(ev[3]["verdict"], "BAD", "{}", ev[3]);
    let reason = ev[3]["error"].as_str().unwrap();
    assert!(reason.contains("part_3.png") && reason.contains("5000") && reason.contains("4095"), "{reason}");
    assert_eq!((run.summary.counters.rejected, run.summary.counters.bad), (1, 1));

    // camera.bit_depth = 16 against a 12-bit model: the old, 16x too dark reading, and a warning.
    let mut cfg = line_config(d.path(), &model, "out16");
    cfg.camera.bit_depth = Some(16);
    let run = runtime::line::setup::run_from_config(&cfg, None, Arc::new(AtomicBool::new(false)), &safe).unwrap();
    assert!(run.warnings.iter().any(|w| w.contains("camera.bit_depth = 16") && w.contains("16x darker")), "{:?}", run.warnings);
    let ev = events(&cfg.output.dir.join("events.jsonl"));
    let first = ev[0]["score"].as_f64().unwrap();
    assert_eq!(ev[0]["verdict"], "OK", "a saturated pixel read as 16-bit passes: {}", ev[0]);
    assert!((first - 16.0 / 255.0).abs() < 1e-6, "round(4095 / 257) = 16: {first}");
}

#[test]
fn inspect_reads_16_bit_files_at_the_models_depth_or_the_flags() {
    let d = tempfile::tempdir().unwrap();
    write_images(d.path());
    let model = d.path().join("brightness12.onnx");
    runtime::synthetic::write_brightness_model_at_depth(&model, W, H, 0.6, BitDepth::new(12).unwrap()).unwrap();
    let run = |depth: Option<BitDepth>, out: &str| {
        let opts = InspectOptions { overlays: OverlayMode::None, bit_depth: depth, ..InspectOptions::new(model.clone(), vec![d.path().to_path_buf()], d.path().join(out)) };
        inspect(&opts).unwrap()
    };
    // The model's 12 bits; inspect keeps 16-bit precision: round(v * 65535 / 4095) / 65535.
    let s = run(None, "out12");
    let want = [65535.0, 32776.0, 16004.0];
    for ((name, score), w) in s.scores.iter().zip(want) {
        let got = score.unwrap_or_else(|| panic!("{name} not inspected"));
        assert!((f64::from(got) - w / 65535.0).abs() < 1e-6, "{name}: {got} vs {w}/65535");
    }
    assert_eq!((s.rejected, s.ok, s.bad), (1, 2, 1), "{:?}", s.scores);
    // --bit-depth 16 reads the same files as full-range samples: 4095 -> 0.0625, nothing rejected.
    let s = run(Some(BitDepth::FULL), "out16");
    assert!((f64::from(s.scores[0].1.unwrap()) - 4095.0 / 65535.0).abs() < 1e-6, "{:?}", s.scores);
    assert_eq!((s.rejected, s.ok, s.bad), (0, 4, 0), "{:?}", s.scores);
}
