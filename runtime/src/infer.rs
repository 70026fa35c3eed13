//! Stage 3 (DESIGN.md §6): tract inference on an exported FFC-AD model.
//!
//! The optimised plan is built once at load; each call runs it on one frame.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tract_onnx::prelude::*;

use crate::metadata::{MetadataError, ModelMetadata, INPUT_NAME};

/// Errors loading or running a model. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error("cannot load ONNX model {path}: {msg}")]
    Load { path: PathBuf, msg: String },
    #[error("model {path}: {cause}")]
    Metadata { path: PathBuf, cause: MetadataError },
    #[error("model {path} expects input `{INPUT_NAME}` of [1, 3, {height}, {width}]; got {got} values")]
    InputSize { path: PathBuf, height: u32, width: u32, got: usize },
    #[error("inference failed on model {path}: {msg}")]
    Run { path: PathBuf, msg: String },
}

/// Result of one forward pass.
#[derive(Debug, Clone)]
pub struct Inference {
    /// Anomaly map, row-major `height x width` (model input size), values in [0, 1].
    pub anomaly_map: Vec<f32>,
    /// Image score: max of the mean-filtered anomaly map (see [`ModelMetadata::score_filter_px`]).
    pub score: f32,
}

/// An exported FFC-AD model ready to run: graph `image` f32 [1, 3, H, W] RGB in [0, 1] ->
/// `anomaly_map` f32 [1, 1, H, W], `score` f32 [1].
pub struct AnomalyModel {
    path: PathBuf,
    plan: Arc<TypedRunnableModel>,
    /// Contract metadata read from the file.
    pub metadata: ModelMetadata,
}

impl AnomalyModel {
    /// Reads the ONNX file, its metadata, and builds the optimised tract plan.
    ///
    /// Errors: unreadable or invalid ONNX ([`InferError::Load`]), missing or incompatible
    /// metadata ([`InferError::Metadata`]).
    pub fn load(path: &Path) -> Result<Self, InferError> {
        let load_err = |e: anyhow::Error| InferError::Load { path: path.into(), msg: format!("{e:#}") };
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() && m.len() == 0 => return Err(InferError::Load { path: path.into(), msg: "the file is empty, not an ONNX model".into() }),
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(InferError::Load { path: path.into(), msg: "not a file".into() }),
            Err(e) => return Err(InferError::Load { path: path.into(), msg: e.to_string() }),
        }
        let onnx = tract_onnx::onnx();
        let proto = onnx.proto_model_for_path(path).map_err(load_err)?;
        let metadata = ModelMetadata::from_props(proto.metadata_props.iter().map(|p| (p.key.as_str(), p.value.as_str())))
            .map_err(|cause| InferError::Metadata { path: path.into(), cause })?;
        let typed = onnx.model_for_proto_model(&proto).and_then(|m| m.into_optimized()).map_err(load_err)?;
        // The metadata must describe the graph it travels with.
        let want = [1usize, 3, metadata.input_height as usize, metadata.input_width as usize];
        let shape = typed.input_fact(0).map_err(load_err)?.shape.as_concrete().map(|s| s.to_vec());
        if shape.as_deref() != Some(&want[..]) {
            return Err(InferError::Load {
                path: path.into(),
                msg: format!("graph input `{INPUT_NAME}` has shape {shape:?}, but the metadata says {want:?}"),
            });
        }
        let plan = typed.into_runnable().map_err(load_err)?;
        Ok(Self { path: path.into(), plan, metadata })
    }

    /// Model input size in px as (width, height).
    pub fn input_size(&self) -> (u32, u32) {
        (self.metadata.input_width, self.metadata.input_height)
    }

    /// Runs one frame given as planar CHW RGB f32 in [0, 1] of the model's input size.
    ///
    /// Errors: wrong input length ([`InferError::InputSize`]) or a tract failure.
    pub fn infer(&self, chw: &[f32]) -> Result<Inference, InferError> {
        let (w, h) = self.input_size();
        if chw.len() != 3 * (w * h) as usize {
            return Err(InferError::InputSize { path: self.path.clone(), height: h, width: w, got: chw.len() });
        }
        let run_err = |e: anyhow::Error| InferError::Run { path: self.path.clone(), msg: format!("{e:#}") };
        let input = Tensor::from_shape(&[1, 3, h as usize, w as usize], chw).map_err(run_err)?;
        let out = self.plan.run(tvec!(input.into_tvalue())).map_err(run_err)?;
        let anomaly_map: Vec<f32> = out[0].to_plain_array_view::<f32>().map_err(run_err)?.iter().copied().collect();
        let score = *out[1].to_plain_array_view::<f32>().map_err(run_err)?.iter().next().ok_or_else(|| run_err(anyhow::anyhow!("empty score output")))?;
        Ok(Inference { anomaly_map, score })
    }
}
