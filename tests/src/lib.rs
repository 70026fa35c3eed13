//! Helpers for the end-to-end tests: where the embedded data lives, and one shared short training
//! run so each test does not retrain.

use std::path::{Path, PathBuf};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Repository root (the workspace folder).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// The embedded default data set (BSData ball_screw subset).
pub fn embedded_data() -> PathBuf {
    repo_root().join("data/bsdata/ball_screw")
}

/// A trained and exported model shared by the tests of one binary.
pub struct Trained {
    pub dir: tempfile::TempDir,
    pub checkpoint: PathBuf,
    pub onnx: PathBuf,
    pub export: trainer::evaluate::ExportReport,
    pub info: trainer::checkpoint::CheckpointInfo,
}

/// Trains the small config for `steps` steps on the embedded data and exports it, once per
/// number of steps (a second call with the same `steps` returns the same run).
pub fn trained(steps: usize) -> &'static Trained {
    static RUNS: OnceLock<Mutex<HashMap<usize, &'static Trained>>> = OnceLock::new();
    let runs = RUNS.get_or_init(|| Mutex::new(HashMap::new()));
    // Held while training: tests asking for the same run wait for it instead of training twice.
    let mut runs = runs.lock().unwrap_or_else(|e| e.into_inner());
    *runs.entry(steps).or_insert_with(|| Box::leak(Box::new(train_and_export(steps))))
}

fn train_and_export(steps: usize) -> Trained {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = trainer::config::TrainConfig::small();
    // The size `trainer train` chooses for the embedded BSData images would be 96x192; the
    // tests train at a smaller size of the same shape class to stay quick.
    config.model.input_height = 64;
    config.model.input_width = 160;
    config.steps = steps;
    config.batch_size = 4;
    let opts = trainer::train::TrainOptions::new(embedded_data(), config, dir.path().join("train"));
    let (checkpoint, info) = trainer::train::train(&opts).expect("training");
    let onnx = dir.path().join("model.onnx");
    let export = trainer::evaluate::export_checkpoint(&checkpoint, &onnx, serde_json::json!({}), &trainer::evaluate::ExportOptions { parity_images: 2, ..Default::default() }).expect("export");
    Trained { dir, checkpoint, onnx, export, info }
}
