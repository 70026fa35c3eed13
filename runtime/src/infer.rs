//! Stage 3 (DESIGN.md §6): tract inference on an exported FFC-AD model.
//!
//! The optimised plan and its execution state are built once at load; each call runs them on
//! one frame, reusing the state's scratch buffers and, with `infer_into`, the caller's output
//! buffers. Matmuls run on a private rayon pool of `threads` threads when threads > 1.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use tract_onnx::prelude::*;
use tract_onnx::prelude::multithread::{multithread_tract_scope, Executor};

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

/// Which model file judged a frame: its file name and the SHA-256 of the bytes that were loaded
/// (not re-read later, so a file replaced after loading does not change it). Events name the
/// model by [`ModelId::label`], `<file name>@<first 12 hex digits of the SHA-256>`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModelId {
    /// File name of the ONNX file (without its folder).
    pub name: String,
    /// SHA-256 of the file's bytes, 64 lowercase hex digits.
    pub sha256: String,
    /// `name@sha256[..12]`, shared by every event of this model.
    #[serde(skip)]
    label: Arc<str>,
}

impl ModelId {
    /// The id of the model file `path` whose content is `bytes`.
    pub fn of(path: &Path, bytes: &[u8]) -> Self {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string());
        let sha256: String = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
        let label: Arc<str> = format!("{name}@{}", &sha256[..12]).into();
        Self { name, sha256, label }
    }

    /// `<file name>@<first 12 hex digits of the SHA-256>`, as events and logs name the model.
    pub fn label(&self) -> Arc<str> {
        Arc::clone(&self.label)
    }
}

impl std::fmt::Display for ModelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label)
    }
}

pub use firmware_config::ModelEngine;

/// The engine that runs a loaded model.
enum Backend {
    /// tract's optimised plan and its execution state (scratch buffers), built once.
    Tract { state: TypedSimpleState, executor: Executor },
    /// An ONNX Runtime session ([`crate::ort_engine`]).
    #[cfg(feature = "onnxruntime")]
    Ort(crate::ort_engine::OrtModel),
}

/// An exported FFC-AD model ready to run: graph `image` f32 [1, 3, H, W] RGB in [0, 1] ->
/// `anomaly_map` f32 [1, 1, H, W], `score` f32 [1]; by tract, or by ONNX Runtime in builds with
/// the `onnxruntime` feature ([`AnomalyModel::load_engine`]).
pub struct AnomalyModel {
    path: PathBuf,
    backend: Backend,
    threads: usize,
    id: ModelId,
    /// Contract metadata read from the file.
    pub metadata: ModelMetadata,
}

/// How [`AnomalyModel::profile`] sums its times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProfileKey {
    /// Per operator type (`OptMatMul`, `DepthWiseConv`, ...).
    #[value(name = "op")]
    Operator,
    /// Per node of the optimised plan (one layer's convolution, its padding, ...).
    Node,
}

impl AnomalyModel {
    /// [`AnomalyModel::load_with_threads`] with one thread.
    pub fn load(path: &Path) -> Result<Self, InferError> {
        Self::load_with_threads(path, 1)
    }

    /// Reads the ONNX file (once: its [`ModelId`] hashes the very bytes the plan is built from),
    /// its metadata, and builds the optimised tract plan; matmuls use `threads` threads (1 = the
    /// calling thread only).
    ///
    /// Errors: unreadable or invalid ONNX ([`InferError::Load`]), missing or incompatible
    /// metadata ([`InferError::Metadata`]), `threads` of 0.
    pub fn load_with_threads(path: &Path, threads: usize) -> Result<Self, InferError> {
        Self::load_engine(path, threads, ModelEngine::Tract, None)
    }

    /// As [`AnomalyModel::load_with_threads`], run by `engine`; `onnxruntime_lib` is the
    /// `libonnxruntime.so` to load for [`ModelEngine::Onnxruntime`] (default:
    /// `$ORT_DYLIB_PATH`, else the loader's search path). The metadata and the [`ModelId`] are read
    /// the same way for both engines.
    ///
    /// Errors: as [`AnomalyModel::load_with_threads`]; for ONNX Runtime also a library that cannot
    /// be loaded, or a runtime built without the `onnxruntime` feature ([`InferError::Load`]).
    pub fn load_engine(path: &Path, threads: usize, engine: ModelEngine, onnxruntime_lib: Option<&Path>) -> Result<Self, InferError> {
        let load_err = |e: anyhow::Error| InferError::Load { path: path.into(), msg: format!("{e:#}") };
        if threads == 0 {
            return Err(InferError::Load { path: path.into(), msg: "threads must be at least 1".into() });
        }
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() && m.len() == 0 => return Err(InferError::Load { path: path.into(), msg: "the file is empty, not an ONNX model".into() }),
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(InferError::Load { path: path.into(), msg: "not a file".into() }),
            Err(e) => return Err(InferError::Load { path: path.into(), msg: e.to_string() }),
        }
        let bytes = std::fs::read(path).map_err(|e| InferError::Load { path: path.into(), msg: e.to_string() })?;
        let id = ModelId::of(path, &bytes);
        let onnx = tract_onnx::onnx();
        // Decoded from the bytes in hand, as `bytes::Bytes`: tract's `proto_model_for_read` first
        // copies them into a growing buffer (a third copy of the weights at the load peak), and
        // prost decoding a plain slice copies each weight twice (the freed copies raise glibc's
        // mmap threshold and keep the heap large while running). BENCHMARKS.md, "Memory of the
        // paper model".
        let bytes = bytes::Bytes::from(bytes);
        let proto = <tract_onnx::pb::ModelProto as prost::Message>::decode(bytes.clone()).map_err(|e| load_err(anyhow::anyhow!("not an ONNX model: {e}")))?;
        let metadata = ModelMetadata::from_props(proto.metadata_props.iter().map(|p| (p.key.as_str(), p.value.as_str())))
            .map_err(|cause| InferError::Metadata { path: path.into(), cause })?;
        if engine == ModelEngine::Onnxruntime {
            #[cfg(feature = "onnxruntime")]
            {
                let ort = crate::ort_engine::OrtModel::load(&bytes, onnxruntime_lib, threads, metadata.input_height, metadata.input_width)
                    .map_err(|msg| InferError::Load { path: path.into(), msg })?;
                return Ok(Self { path: path.into(), backend: Backend::Ort(ort), threads, id, metadata });
            }
            #[cfg(not(feature = "onnxruntime"))]
            {
                let _ = onnxruntime_lib;
                return Err(InferError::Load { path: path.into(), msg: "engine \"onnxruntime\": this runtime was built without the ONNX Runtime engine (cargo feature `onnxruntime`); use engine = \"tract\" or rebuild with `--features onnxruntime`".into() });
            }
        }
        drop(bytes);
        let inference = onnx.model_for_proto_model(&proto).map_err(load_err)?;
        // The proto holds a copy of every weight: freed before the optimiser makes its own.
        drop(proto);
        let typed = inference.into_optimized().map_err(load_err)?;
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
        let state = plan.spawn().map_err(load_err)?;
        let executor = if threads > 1 { Executor::multithread_with_name(threads, "ffcad-infer") } else { Executor::SingleThread };
        Ok(Self { path: path.into(), backend: Backend::Tract { state, executor }, threads, id, metadata })
    }

    /// Model input size in px as (width, height).
    pub fn input_size(&self) -> (u32, u32) {
        (self.metadata.input_width, self.metadata.input_height)
    }

    /// The same model with its own execution state, for another inference worker: tract spawns
    /// a state on the same optimised plan (and shares the matmul pool); ONNX Runtime opens another
    /// session on the same bytes.
    ///
    /// # Errors
    /// The state or session cannot be created ([`InferError::Load`]).
    pub fn twin(&self) -> Result<Self, InferError> {
        let load_err = |msg: String| InferError::Load { path: self.path.clone(), msg };
        let backend = match &self.backend {
            Backend::Tract { state, executor } => Backend::Tract { state: state.plan().spawn().map_err(|e| load_err(format!("{e:#}")))?, executor: executor.clone() },
            #[cfg(feature = "onnxruntime")]
            Backend::Ort(m) => Backend::Ort(m.twin().map_err(load_err)?),
        };
        Ok(Self { path: self.path.clone(), backend, threads: self.threads, id: self.id.clone(), metadata: self.metadata.clone() })
    }

    /// The engine running this model.
    pub fn engine(&self) -> ModelEngine {
        match self.backend {
            Backend::Tract { .. } => ModelEngine::Tract,
            #[cfg(feature = "onnxruntime")]
            Backend::Ort(_) => ModelEngine::Onnxruntime,
        }
    }

    /// Threads the matmuls run on.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Path of the ONNX file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// File name and SHA-256 of the file as it was loaded.
    pub fn id(&self) -> &ModelId {
        &self.id
    }

    /// (width, height) after checking that `chw` holds one frame of that size.
    fn check_input(&self, chw: &[f32]) -> Result<(u32, u32), InferError> {
        let (w, h) = self.input_size();
        if chw.len() != 3 * (w * h) as usize {
            return Err(InferError::InputSize { path: self.path.clone(), height: h, width: w, got: chw.len() });
        }
        Ok((w, h))
    }

    /// Runs one frame given as planar CHW RGB f32 in [0, 1] of the model's input size.
    ///
    /// Errors: wrong input length ([`InferError::InputSize`]) or a tract failure.
    pub fn infer(&mut self, chw: &[f32]) -> Result<Inference, InferError> {
        let mut out = Inference { anomaly_map: Vec::new(), score: 0.0 };
        self.infer_into(chw, &mut out)?;
        Ok(out)
    }

    /// As [`AnomalyModel::infer`], writing into `out` (its map buffer is reused when it already
    /// has the right length: the hot path of the line runtime).
    pub fn infer_into(&mut self, chw: &[f32], out: &mut Inference) -> Result<(), InferError> {
        let (w, h) = self.check_input(chw)?;
        let path = &self.path;
        let run_err = |e: anyhow::Error| InferError::Run { path: path.clone(), msg: format!("{e:#}") };
        let (state, executor) = match &mut self.backend {
            Backend::Tract { state, executor } => (state, executor),
            #[cfg(feature = "onnxruntime")]
            Backend::Ort(m) => {
                out.score = m.run(chw, &mut out.anomaly_map).map_err(|msg| InferError::Run { path: path.clone(), msg })?;
                return Ok(());
            }
        };
        let input = Tensor::from_shape(&[1, 3, h as usize, w as usize], chw).map_err(run_err)?;
        let outputs = multithread_tract_scope(executor.clone(), || state.run(tvec!(input.into_tvalue()))).map_err(run_err)?;
        let map = outputs[0].to_plain_array_view::<f32>().map_err(run_err)?;
        let map = map.as_slice().ok_or_else(|| run_err(anyhow::anyhow!("anomaly map is not contiguous")))?;
        out.anomaly_map.clear();
        out.anomaly_map.extend_from_slice(map);
        out.score = *outputs[1].to_plain_array_view::<f32>().map_err(run_err)?.iter().next().ok_or_else(|| run_err(anyhow::anyhow!("empty score output")))?;
        Ok(())
    }

    /// Runs `chw` `runs` times timing each operator; returns (key, total time) per operator
    /// type as tract names them after optimisation (e.g. `Conv`, `OptMatMul`), or per node
    /// (`<node name> (<operator>)`, the names following the model's variable paths, e.g.
    /// `head.dec0.conv...`) with [`ProfileKey::Node`]: the per-layer view that says which
    /// convolution an int8 or graph change would have to speed up.
    pub fn profile(&mut self, chw: &[f32], runs: usize, key: ProfileKey) -> Result<Vec<(String, std::time::Duration)>, InferError> {
        use std::collections::BTreeMap;
        let (w, h) = self.check_input(chw)?;
        let path = &self.path;
        let run_err = |e: anyhow::Error| InferError::Run { path: path.clone(), msg: format!("{e:#}") };
        let mut totals: BTreeMap<String, std::time::Duration> = BTreeMap::new();
        #[allow(irrefutable_let_patterns)]
        let Backend::Tract { state, executor } = &mut self.backend else {
            return Err(run_err(anyhow::anyhow!("the per-operator profile is tract's: load the model with engine tract")));
        };
        for _ in 0..runs {
            let input = Tensor::from_shape(&[1, 3, h as usize, w as usize], chw).map_err(run_err)?;
            let state = &mut *state;
            let totals = &mut totals;
            multithread_tract_scope(executor.clone(), || {
                state.run_plan_with_eval(tvec!(input.into_tvalue()), |ctx, st, node, inputs| {
                    let t = std::time::Instant::now();
                    let r = tract_onnx::tract_core::plan::eval(ctx, st, node, inputs);
                    let k = match key {
                        ProfileKey::Operator => node.op().name().to_string(),
                        ProfileKey::Node => format!("{} ({})", node.name, node.op().name()),
                    };
                    *totals.entry(k).or_default() += t.elapsed();
                    r
                })
            })
            .map_err(run_err)?;
        }
        Ok(totals.into_iter().collect())
    }
}
