//! The same inputs give the same events and metrics: a small committed model (`fixtures/pinned/`,
//! trained on the embedded BSData images, CC BY-SA 4.0 like them) judges the embedded test images,
//! and every verdict, score and metric must equal what the runtime gave before the Inspector
//! refactor (issue 14). `expected.json` was written by `runtime inspect` at commit c03e784, before
//! it; `fixtures/pinned/README.md` says how to make both files again. Tract runs the same f32
//! graph here and in the ARM check, so scores agree to ~1e-6; the bounds leave room for that.

use std::path::{Path, PathBuf};

use firmware_config::OverlayMode;
use runtime::inspect::{inspect, InspectOptions};

#[derive(serde::Deserialize)]
struct Expected {
    threshold: f32,
    image_auroc: f64,
    pixel_auroc: f64,
    aupro: f64,
    /// (path relative to the data root, verdict, score)
    images: Vec<(String, String, f32)>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

#[test]
fn the_embedded_test_images_get_the_pinned_verdicts_scores_and_metrics() {
    let fixtures = root().join("runtime/tests/fixtures/pinned");
    let expected: Expected = serde_json::from_str(&std::fs::read_to_string(fixtures.join("expected.json")).unwrap()).unwrap();
    let data = root().join("data/bsdata/ball_screw");
    let out = tempfile::tempdir().unwrap();
    let opts = InspectOptions { overlays: OverlayMode::None, ..InspectOptions::new(fixtures.join("model.onnx"), vec![data.join("test")], out.path().to_path_buf()) };
    let s = inspect(&opts).unwrap();
    assert_eq!(s.threshold, expected.threshold);
    let events: Vec<serde_json::Value> = std::fs::read_to_string(out.path().join("events.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), expected.images.len());
    let prefix = format!("{}/", data.display());
    for (e, (path, verdict, score)) in events.iter().zip(&expected.images) {
        let source = e["source"].as_str().unwrap();
        assert_eq!(source.strip_prefix(&prefix), Some(path.as_str()), "same images in the same order");
        let got = e["score"].as_f64().unwrap() as f32;
        assert!((got - score).abs() < 1e-4, "{path}: score {got}, pinned {score}");
        // A verdict may differ only for a score within the score bound of the threshold.
        if (score - expected.threshold).abs() > 1e-4 {
            assert_eq!(e["verdict"].as_str(), Some(verdict.as_str()), "{path}: score {got}");
        }
    }
    let m = s.metrics.unwrap();
    assert!((m.image_auroc.unwrap() - expected.image_auroc).abs() < 1e-3, "image AUROC {:?} pinned {}", m.image_auroc, expected.image_auroc);
    assert!((m.pixel_auroc.unwrap() - expected.pixel_auroc).abs() < 1e-3, "pixel AUROC {:?} pinned {}", m.pixel_auroc, expected.pixel_auroc);
    assert!((m.aupro.unwrap() - expected.aupro).abs() < 1e-3, "AUPRO {:?} pinned {}", m.aupro, expected.aupro);
    assert_eq!((s.inspected, s.bad), (expected.images.len(), 0));
    defect_area_bins_match_a_count_by_hand(&m.by_defect_area, &events, &data, &fixtures.join("model.onnx"), s.threshold);
}

/// The report's defect-area bins against the same bins counted here from the events' scores and
/// the mask files (`ground_truth/<class>/<stem>_mask.png`, resized nearest to the model's input):
/// per bin the images, those with `score > threshold`, and the AUROC as the share of (defective,
/// good) pairs the defective image wins, ties 1/2.
fn defect_area_bins_match_a_count_by_hand(bins: &[runtime::evaluation::DefectAreaBin], events: &[serde_json::Value], data: &Path, model: &Path, threshold: f32) {
    let (w, h) = runtime::infer::AnomalyModel::load(model).unwrap().input_size();
    let mut good = Vec::new();
    let mut defective = Vec::new(); // (area px, score)
    for e in events {
        let source = PathBuf::from(e["source"].as_str().unwrap());
        let score = e["score"].as_f64().unwrap();
        let class = source.parent().unwrap().file_name().unwrap().to_str().unwrap();
        if class == "good" {
            good.push(score);
            continue;
        }
        let mask_path = data.join("ground_truth").join(class).join(format!("{}_mask.png", source.file_stem().unwrap().to_str().unwrap()));
        let mask = image::open(&mask_path).unwrap().to_luma8();
        let mask = image::imageops::resize(&mask, w, h, image::imageops::FilterType::Nearest);
        defective.push((mask.pixels().filter(|p| p.0[0] > 0).count(), score));
    }
    assert_eq!((good.len(), defective.len()), (28, 30), "the embedded test set");
    let edges = [0, 16, 64, 256, 1024, usize::MAX];
    let mut by_hand = Vec::new();
    for pair in edges.windows(2) {
        let scores: Vec<f64> = defective.iter().filter(|(a, _)| *a >= pair[0] && *a < pair[1]).map(|&(_, s)| s).collect();
        if scores.is_empty() {
            continue;
        }
        let wins: f64 = scores.iter().flat_map(|&d| good.iter().map(move |&g| if d > g { 1.0 } else if d == g { 0.5 } else { 0.0 })).sum();
        let rejected = scores.iter().filter(|&&s| s as f32 > threshold).count();
        by_hand.push((pair[0], scores.len(), rejected, wins / (scores.len() * good.len()) as f64));
    }
    let got: Vec<(usize, usize, usize, f64)> = bins.iter().map(|b| (b.min_px, b.images, b.rejected.unwrap(), b.auroc_against_good.unwrap())).collect();
    assert_eq!(got.len(), by_hand.len(), "bins {got:?}, by hand {by_hand:?}");
    for (g, b) in got.iter().zip(&by_hand) {
        assert_eq!((g.0, g.1, g.2), (b.0, b.1, b.2), "bins {got:?}, by hand {by_hand:?}");
        assert!((g.3 - b.3).abs() < 1e-12, "bins {got:?}, by hand {by_hand:?}");
    }
    // The embedded set holds pits under 16 px at the input and pits of every larger bin but the
    // last: the table has something to say.
    assert!(by_hand.len() >= 3 && by_hand[0].0 == 0, "{by_hand:?}");
}

/// The loader decodes the protobuf itself (infer.rs, issue 15's memory work): a cut-off file is
/// refused with an error that names it, not a panic and not tract's generic message.
#[test]
fn a_truncated_model_file_is_refused_by_name() {
    let bytes = std::fs::read(root().join("runtime/tests/fixtures/pinned/model.onnx")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.onnx");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = runtime::infer::AnomalyModel::load(&cut).err().expect("half a model must not load").to_string();
    assert!(err.contains(&cut.display().to_string()) && err.contains("not an ONNX model"), "{err}");
}

/// `runtime bench --profile-by node`: one row per node of the optimised plan, each node's
/// operator one of the per-operator profile's rows. (The pinned model predates the graph names
/// that follow the model's variable paths: its nodes are `add_1016`, ...; the export's names are
/// tested in the trainer's export_parity.)
#[test]
fn the_per_node_profile_names_the_layers() {
    use runtime::infer::{AnomalyModel, ProfileKey};
    let mut model = AnomalyModel::load(&root().join("runtime/tests/fixtures/pinned/model.onnx")).unwrap();
    let (w, h) = model.input_size();
    let frame = runtime::bench::synthetic_frame(w, h);
    let by_op = model.profile(&frame, 1, ProfileKey::Operator).unwrap();
    let by_node = model.profile(&frame, 1, ProfileKey::Node).unwrap();
    assert!(by_node.len() > by_op.len(), "{} nodes, {} operators", by_node.len(), by_op.len());
    for (key, _) in &by_node {
        let op = key.rsplit_once(" (").and_then(|(_, op)| op.strip_suffix(')')).unwrap_or_else(|| panic!("{key}: expected `<node> (<operator>)`"));
        assert!(by_op.iter().any(|(o, _)| o == op), "{key}: operator {op} is not in the per-operator profile");
    }
    let matmuls = by_node.iter().filter(|(k, _)| k.ends_with(" (OptMatMul)")).count();
    assert!(matmuls > 10, "{matmuls} OptMatMul nodes: every convolution and DFT should have its own row");
}
