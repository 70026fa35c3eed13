//! The ONNX Runtime engine against tract (issue 15, item 3): the committed pinned model
//! (`fixtures/pinned/`) judges every embedded BSData test image through the same `runtime
//! inspect` path with each engine; scores, anomaly maps and verdicts must agree. Built only with
//! `--features onnxruntime` (what `scripts/test.sh` and CI run); the library comes from
//! `$ORT_DYLIB_PATH` (`scripts/env.sh` points it at the onnxruntime wheel in `.venv/`). Missing
//! library = failure, not a skip.
#![cfg(feature = "onnxruntime")]

use std::path::{Path, PathBuf};

use firmware_config::OverlayMode;
use runtime::infer::{AnomalyModel, ModelEngine};
use runtime::inspect::{inspect, InspectOptions};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn events(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("events.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn onnxruntime_and_tract_judge_the_embedded_images_alike() {
    let lib = std::env::var_os("ORT_DYLIB_PATH").expect("ORT_DYLIB_PATH must name libonnxruntime.so (source scripts/env.sh after scripts/install.sh): this test must not skip");
    assert!(Path::new(&lib).is_file(), "ORT_DYLIB_PATH = {lib:?} is not a file");
    let model = root().join("runtime/tests/fixtures/pinned/model.onnx");
    let data = root().join("data/bsdata/ball_screw/test");
    let out = tempfile::tempdir().unwrap();
    let run = |engine: ModelEngine, name: &str| {
        let dir = out.path().join(name);
        let opts = InspectOptions { overlays: OverlayMode::None, engine, ..InspectOptions::new(model.clone(), vec![data.clone()], dir.clone()) };
        let summary = inspect(&opts).unwrap();
        (summary, events(&dir))
    };
    let (st, et) = run(ModelEngine::Tract, "tract");
    let (so, eo) = run(ModelEngine::Onnxruntime, "onnxruntime");
    assert_eq!(et.len(), eo.len());
    assert!(et.len() >= 50, "{} images", et.len());
    let mut worst = 0f64;
    for (t, o) in et.iter().zip(&eo) {
        assert_eq!(t["source"], o["source"]);
        let (a, b) = (t["score"].as_f64().unwrap(), o["score"].as_f64().unwrap());
        worst = worst.max((a - b).abs());
        assert!((a - b).abs() <= 1e-4, "{}: tract {a} vs ONNX Runtime {b}", t["source"]);
        assert_eq!(t["verdict"], o["verdict"], "{}: scores {a} / {b}, threshold {}", t["source"], t["threshold"]);
    }
    // The metrics come from the maps: equal maps give equal metrics.
    let (mt, mo) = (st.metrics.unwrap(), so.metrics.unwrap());
    assert!((mt.image_auroc.unwrap() - mo.image_auroc.unwrap()).abs() < 1e-9);
    assert!((mt.pixel_auroc.unwrap() - mo.pixel_auroc.unwrap()).abs() < 1e-4, "{:?} vs {:?}", mt.pixel_auroc, mo.pixel_auroc);

    // Whole maps, one image: the largest difference of any pixel.
    let image = image::open(data.join("pitting").read_dir().unwrap().next().unwrap().unwrap().path()).unwrap();
    let mut maps = Vec::new();
    for engine in [ModelEngine::Tract, ModelEngine::Onnxruntime] {
        let m = AnomalyModel::load_engine(&model, 1, engine, None).unwrap();
        assert_eq!(m.engine(), engine);
        let mut ins = runtime::inspector::Inspector::new(m, None, None).unwrap();
        let o = ins.inspect(&image, "pitting image");
        maps.push(o.anomaly_map.unwrap().to_vec());
    }
    let map_diff = maps[0].iter().zip(&maps[1]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(map_diff <= 1e-4, "anomaly maps differ by {map_diff}");
    println!("ORT PARITY: {} images, worst score difference {worst:.2e}, worst map pixel {map_diff:.2e}, image AUROC {:?} both", et.len(), mt.image_auroc);
}

#[test]
fn a_missing_library_is_a_clear_error() {
    let model = root().join("runtime/tests/fixtures/pinned/model.onnx");
    // The process-wide environment may already be up (the other test): only a fresh process
    // shows the load error, so check the message through the binary.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runtime"))
        .args(["inspect", "--engine", "onnxruntime", "--model", model.to_str().unwrap(), "--out"])
        .arg(tempfile::tempdir().unwrap().path().join("o"))
        .arg(root().join("data/bsdata/ball_screw/test/good"))
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("cannot load ONNX Runtime from /nonexistent/libonnxruntime.so") && err.contains("ORT_DYLIB_PATH"), "{err}");
}
