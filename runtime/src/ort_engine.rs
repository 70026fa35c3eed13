//! The optional ONNX Runtime engine (issue 15, item 3; cargo feature `onnxruntime`, off by
//! default): the same exported file and the same [`crate::inspector::Inspector`] path as tract,
//! run by ONNX Runtime through the `ort` crate. `libonnxruntime.so` is loaded at run time
//! (`load-dynamic`): nothing is downloaded at build time, and a runtime built with the feature
//! still starts without the library as long as `[model].engine = "tract"`.
//!
//! Where the library comes from ([`library_path`]): `[model].onnxruntime_lib`, else
//! `$ORT_DYLIB_PATH`, else `libonnxruntime.so` on the loader's search path. On x86-64 it is in the
//! `onnxruntime` wheel (`site-packages/onnxruntime/capi/libonnxruntime.so.1.*`, what
//! `scripts/env.sh` points `ORT_DYLIB_PATH` at); on an aarch64 board the PyPI aarch64 wheel has it
//! (Debian 12 has no package): DEPLOY.md.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;

use crate::metadata::{INPUT_NAME, MAP_OUTPUT_NAME, SCORE_OUTPUT_NAME};

/// The library to load: `configured`, else `$ORT_DYLIB_PATH`, else `libonnxruntime.so` (the
/// dynamic loader's search path).
pub fn library_path(configured: Option<&Path>) -> PathBuf {
    configured.map(Path::to_path_buf).or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from)).unwrap_or_else(|| PathBuf::from("libonnxruntime.so"))
}

/// Loads ONNX Runtime from `lib` once per process (later calls return the first outcome: the
/// library cannot be swapped in a running process).
///
/// # Errors
/// The library cannot be loaded (absent, wrong architecture) or is older than the API `ort`
/// needs; the message names the path and how to get the library.
fn environment(lib: &Path) -> Result<&'static ort::environment::Environment, String> {
    // dlopen's own message is terse ("dlopen failed"): say what is wrong with a path first.
    if lib.components().count() > 1 {
        match std::fs::metadata(lib) {
            Err(e) => return Err(format!("cannot load ONNX Runtime from {}: {e} (set [model].onnxruntime_lib or ORT_DYLIB_PATH to libonnxruntime.so.1.*, e.g. from the onnxruntime wheel's onnxruntime/capi/ folder)", lib.display())),
            Ok(m) if !m.is_file() => return Err(format!("cannot load ONNX Runtime from {}: not a file (expected libonnxruntime.so.1.*)", lib.display())),
            Ok(_) => {}
        }
    }
    static ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let built = ort::init_from(lib).map_err(|e| e.to_string()).and_then(|b| b.with_name("ffcad").build().map_err(|e| e.to_string()));
        built.map_err(|e| {
            format!(
                "cannot load ONNX Runtime from {}: {e} (set [model].onnxruntime_lib or ORT_DYLIB_PATH to libonnxruntime.so.1.*, e.g. from the onnxruntime wheel's onnxruntime/capi/ folder)",
                lib.display()
            )
        })
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// One model in an ONNX Runtime session: `image` f32 [1, 3, H, W] -> `anomaly_map` f32
/// [1, 1, H, W], `score` f32 [1].
pub struct OrtModel {
    session: Session,
    height: usize,
    width: usize,
    /// What [`OrtModel::twin`] opens another session on.
    bytes: std::sync::Arc<[u8]>,
    lib: Option<PathBuf>,
    threads: usize,
}

impl OrtModel {
    /// A session on the model file's `bytes` (those the caller hashed and read the metadata from)
    /// with all graph optimisations and `threads` intra-op threads (1 = the calling thread).
    ///
    /// # Errors
    /// The library cannot be loaded, or ONNX Runtime refuses the model; the message says which.
    pub fn load(bytes: &[u8], lib: Option<&Path>, threads: usize, height: u32, width: u32) -> Result<Self, String> {
        let env = environment(&library_path(lib))?;
        let err = |e: ort::Error| format!("ONNX Runtime: {e}");
        let mut builder = Session::builder(env)
            .map_err(err)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| format!("ONNX Runtime: {e}"))?
            .with_intra_threads(threads)
            .map_err(|e| format!("ONNX Runtime: {e}"))?
            .with_inter_threads(1)
            .map_err(|e| format!("ONNX Runtime: {e}"))?;
        let session = builder.commit_from_memory(bytes).map_err(err)?;
        Ok(Self { session, height: height as usize, width: width as usize, bytes: bytes.into(), lib: lib.map(Path::to_path_buf), threads })
    }

    /// Another session on the same model bytes, for another inference worker.
    ///
    /// # Errors
    /// As [`OrtModel::load`].
    pub fn twin(&self) -> Result<Self, String> {
        Self::load(&self.bytes, self.lib.as_deref(), self.threads, self.height as u32, self.width as u32)
    }

    /// Runs one frame (planar CHW RGB in [0, 1], checked by the caller to be 3 x H x W values):
    /// copies the anomaly map into `map` and returns the score.
    ///
    /// # Errors
    /// ONNX Runtime failed, or an output is missing or of another size than the contract says.
    pub fn run(&mut self, chw: &[f32], map: &mut Vec<f32>) -> Result<f32, String> {
        let (h, w) = (self.height, self.width);
        let input = TensorRef::from_array_view(([1usize, 3, h, w], chw)).map_err(|e| format!("ONNX Runtime input: {e}"))?;
        let outputs = self.session.run(ort::inputs![INPUT_NAME => input]).map_err(|e| format!("ONNX Runtime: {e}"))?;
        let (_, m) = outputs.get(MAP_OUTPUT_NAME).ok_or("no output `anomaly_map`")?.try_extract_tensor::<f32>().map_err(|e| format!("ONNX Runtime output `{MAP_OUTPUT_NAME}`: {e}"))?;
        if m.len() != h * w {
            return Err(format!("output `{MAP_OUTPUT_NAME}` has {} values, expected {h} x {w}", m.len()));
        }
        map.clear();
        map.extend_from_slice(m);
        let (_, s) = outputs.get(SCORE_OUTPUT_NAME).ok_or("no output `score`")?.try_extract_tensor::<f32>().map_err(|e| format!("ONNX Runtime output `{SCORE_OUTPUT_NAME}`: {e}"))?;
        s.first().copied().ok_or_else(|| format!("output `{SCORE_OUTPUT_NAME}` is empty"))
    }
}
