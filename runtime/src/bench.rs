//! `runtime bench`: inference latency, throughput, peak memory and allocations of exported models
//! in tract, with ONNX Runtime on the same files for comparison (issue 4).
//!
//! Each (engine, model, threads) case runs in a child process of its own, so that its peak
//! resident set size (VmHWM, Linux) is its own and not the maximum over earlier cases. The peak
//! is split at the end of loading (the kernel's peak is reset there), so the memory the model
//! holds while it runs frames is told apart from what building the plan needed once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::alloc_count;
use crate::infer::{AnomalyModel, Inference};

/// One benchmark case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchCase {
    pub model: PathBuf,
    /// Threads of the engine's intra-op pool (tract: matmul pool; ONNX Runtime: intra_op).
    pub threads: usize,
    /// Timed runs after warm-up.
    pub iterations: usize,
    /// Untimed runs first (plan caches, page faults, CPU frequency).
    pub warmup: usize,
    /// Inference workers running frames in parallel, each with its own state on the model (as
    /// `[model].workers` on the line); `iterations` frames in all.
    #[serde(default = "one")]
    pub workers: usize,
}

fn one() -> usize {
    1
}

/// What one case measured. Latencies in ms, throughput in frames/s, memory in MiB.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchResult {
    /// `tract` or `onnxruntime`.
    pub engine: String,
    pub model: PathBuf,
    /// `f32` or `int8` (from the model's metadata).
    pub precision: String,
    pub threads: usize,
    /// Parallel inference workers ([`BenchCase::workers`]).
    #[serde(default = "one")]
    pub workers: usize,
    pub iterations: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub mean_ms: f64,
    /// Frames per second: with one worker back to back on one stream (1000 / mean_ms); with
    /// several, all frames over the wall time from the first start to the last end.
    pub throughput_fps: f64,
    /// Peak resident set size of the process (VmHWM / ru_maxrss), MiB; ONNX Runtime's includes
    /// the Python interpreter and numpy.
    pub peak_rss_mib: f64,
    /// Peak resident set size until the model was loaded (file read, plan built), MiB; `None`
    /// where it could not be split off (not Linux, ONNX Runtime through Python).
    #[serde(default)]
    pub load_peak_rss_mib: Option<f64>,
    /// Peak resident set size from the end of loading to the last frame (the states, the
    /// activations, the weights the plan kept), MiB; `None` as for `load_peak_rss_mib`.
    #[serde(default)]
    pub run_peak_rss_mib: Option<f64>,
    /// Multiply-accumulates of one forward pass (model metadata).
    pub macs: u64,
    /// Achieved 2 x MACs / mean latency, GFLOP/s.
    pub gflops: f64,
    /// Heap allocations per frame in the timed loop (tract only: counted by the runtime's
    /// global allocator).
    pub allocations_per_frame: Option<f64>,
}

/// Nearest-rank percentile `p` (0..=100) of `samples` (any order). NaN for no samples.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}

/// Peak resident set size of this process in MiB (`VmHWM` of /proc/self/status), if known.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Resets this process's peak resident set size to its current one (writes `5` to
/// `/proc/self/clear_refs`, Linux >= 4.0), so that a later [`peak_rss_mib`] tells the peak from
/// here on. Returns whether the kernel took it.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// A deterministic input frame, planar CHW in [0, 1] (latency does not depend on content).
pub fn synthetic_frame(width: u32, height: u32) -> Vec<f32> {
    let mut x: u32 = 0x9e37_79b9;
    (0..3 * width as usize * height as usize)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 8) as f32 / (1u32 << 24) as f32
        })
        .collect()
}

fn summarise(engine: &str, case: &BenchCase, precision: String, macs: u64, times_ms: &[f64], rss: f64, allocs: Option<f64>) -> BenchResult {
    let mean = times_ms.iter().sum::<f64>() / times_ms.len().max(1) as f64;
    BenchResult {
        engine: engine.into(),
        model: case.model.clone(),
        precision,
        threads: case.threads,
        workers: 1,
        iterations: times_ms.len(),
        p50_ms: percentile(times_ms, 50.0),
        p95_ms: percentile(times_ms, 95.0),
        mean_ms: mean,
        throughput_fps: 1000.0 / mean,
        peak_rss_mib: rss,
        load_peak_rss_mib: None,
        run_peak_rss_mib: None,
        macs,
        gflops: 2.0 * macs as f64 / (mean * 1e6),
        allocations_per_frame: allocs,
    }
}

/// Runs `case` in tract in this process (call it in a fresh process for a meaningful peak RSS).
///
/// Errors: the model does not load or run.
pub fn run_tract(case: &BenchCase) -> anyhow::Result<BenchResult> {
    run_in_process(case, crate::infer::ModelEngine::Tract)
}

/// Runs `case` with `engine` in this process, through the same [`AnomalyModel::infer_into`] the
/// line uses: tract, or ONNX Runtime in a runtime built with the `onnxruntime` feature (library
/// from `$ORT_DYLIB_PATH`). Allocations per frame are counted for tract only (ONNX Runtime
/// allocates in C++, past the Rust allocator).
///
/// Errors: the model does not load or run.
pub fn run_in_process(case: &BenchCase, engine: crate::infer::ModelEngine) -> anyhow::Result<BenchResult> {
    anyhow::ensure!(case.iterations > 0, "iterations must be at least 1");
    let mut model = AnomalyModel::load_engine(&case.model, case.threads, engine, None)?;
    let load_peak = peak_rss_mib();
    let split = load_peak.is_some() && reset_peak_rss();
    let mut r = if case.workers > 1 { run_workers(case, model, engine)? } else { run_one_worker(case, &mut model, engine)? };
    if split {
        let run_peak = peak_rss_mib();
        r.load_peak_rss_mib = load_peak;
        r.run_peak_rss_mib = run_peak;
        r.peak_rss_mib = load_peak.into_iter().chain(run_peak).fold(f64::NAN, f64::max);
    }
    Ok(r)
}

/// The frames of [`run_in_process`] with one worker, back to back.
fn run_one_worker(case: &BenchCase, model: &mut AnomalyModel, engine: crate::infer::ModelEngine) -> anyhow::Result<BenchResult> {
    let (w, h) = model.input_size();
    let frame = synthetic_frame(w, h);
    let mut out = Inference { anomaly_map: Vec::new(), score: 0.0 };
    for _ in 0..case.warmup.max(1) {
        model.infer_into(&frame, &mut out)?;
    }
    let mut times = Vec::with_capacity(case.iterations);
    let allocs_before = alloc_count::allocations();
    for _ in 0..case.iterations {
        let t = Instant::now();
        model.infer_into(&frame, &mut out)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let tract = engine == crate::infer::ModelEngine::Tract;
    let allocs = (alloc_count::counting() && tract).then(|| (alloc_count::allocations() - allocs_before) as f64 / case.iterations as f64);
    let meta = &model.metadata;
    Ok(summarise(if tract { "tract" } else { "onnxruntime" }, case, meta.precision.clone(), meta.macs, &times, peak_rss_mib().unwrap_or(f64::NAN), allocs))
}

/// [`run_in_process`] with `case.workers` threads, each with its own state on `model`
/// ([`AnomalyModel::twin`]), taking frames until `case.iterations` ran; throughput is frames over
/// the wall time.
fn run_workers(case: &BenchCase, model: AnomalyModel, engine: crate::infer::ModelEngine) -> anyhow::Result<BenchResult> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (w, h) = model.input_size();
    let frame = synthetic_frame(w, h);
    let mut models = vec![model];
    for _ in 1..case.workers {
        let twin = models[0].twin()?;
        models.push(twin);
    }
    let (precision, macs) = (models[0].metadata.precision.clone(), models[0].metadata.macs);
    let next = AtomicUsize::new(0);
    let start = std::sync::Barrier::new(case.workers);
    let t0 = std::sync::Mutex::new(None::<Instant>);
    let results: Vec<anyhow::Result<Vec<f64>>> = std::thread::scope(|s| {
        let handles: Vec<_> = models
            .into_iter()
            .map(|mut m| {
                let (frame, next, start, t0) = (&frame, &next, &start, &t0);
                s.spawn(move || -> anyhow::Result<Vec<f64>> {
                    let mut out = Inference { anomaly_map: Vec::new(), score: 0.0 };
                    for _ in 0..case.warmup.max(1) {
                        m.infer_into(frame, &mut out)?;
                    }
                    start.wait();
                    t0.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(Instant::now);
                    let mut times = Vec::new();
                    while next.fetch_add(1, Ordering::SeqCst) < case.iterations {
                        let t = Instant::now();
                        m.infer_into(frame, &mut out)?;
                        times.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    Ok(times)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a bench worker panicked")))).collect()
    });
    let wall = t0.lock().unwrap_or_else(|p| p.into_inner()).map(|t| t.elapsed().as_secs_f64()).unwrap_or(f64::NAN);
    let mut times = Vec::new();
    for r in results {
        times.extend(r?);
    }
    let name = if engine == crate::infer::ModelEngine::Tract { "tract" } else { "onnxruntime" };
    let mut r = summarise(name, case, precision, macs, &times, peak_rss_mib().unwrap_or(f64::NAN), None);
    r.workers = case.workers;
    r.throughput_fps = times.len() as f64 / wall;
    Ok(r)
}

/// Time per operator type (or per node, `key`) of one tract run, summed over `runs` runs,
/// largest first.
pub fn profile_tract(case: &BenchCase, runs: usize, key: crate::infer::ProfileKey) -> anyhow::Result<Vec<(String, Duration)>> {
    let mut model = AnomalyModel::load_with_threads(&case.model, case.threads)?;
    let (w, h) = model.input_size();
    let frame = synthetic_frame(w, h);
    let mut totals = model.profile(&frame, runs.max(1), key)?;
    totals.sort_by(|a, b| b.1.cmp(&a.1));
    Ok(totals)
}

/// The ONNX Runtime side, run by a Python interpreter with `onnxruntime` and `numpy`; prints one
/// JSON object shaped like [`BenchResult`] (without the metadata-derived fields).
const ORT_SCRIPT: &str = r#"
import json, resource, sys, time
import numpy as np, onnxruntime as ort
model, threads, iters, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
so = ort.SessionOptions()
so.intra_op_num_threads = threads
so.inter_op_num_threads = 1
so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
x = np.random.default_rng(0).random(inp.shape, dtype=np.float32)
for _ in range(max(warmup, 1)):
    sess.run(None, {inp.name: x})
times = []
for _ in range(iters):
    t = time.perf_counter()
    sess.run(None, {inp.name: x})
    times.append((time.perf_counter() - t) * 1e3)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
print(json.dumps({"times_ms": times, "peak_rss_mib": rss, "version": ort.__version__}))
"#;

#[derive(Deserialize)]
struct OrtOutput {
    times_ms: Vec<f64>,
    peak_rss_mib: f64,
}

/// Runs `case` in ONNX Runtime through `python` (a child process).
///
/// Errors: the interpreter cannot start, lacks onnxruntime, or ONNX Runtime rejects the model;
/// the message carries the interpreter's stderr.
pub fn run_onnxruntime(python: &Path, case: &BenchCase) -> anyhow::Result<BenchResult> {
    let meta = crate::metadata::ModelMetadata::from_props(read_props(&case.model)?.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    let out = Command::new(python)
        .args(["-c", ORT_SCRIPT])
        .arg(&case.model)
        .args([case.threads.to_string(), case.iterations.to_string(), case.warmup.to_string()])
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {}: {e}", python.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "ONNX Runtime via {} failed on {}: {}",
        python.display(),
        case.model.display(),
        String::from_utf8_lossy(&out.stderr).trim().lines().last().unwrap_or("")
    );
    let parsed: OrtOutput = serde_json::from_slice(&out.stdout).map_err(|e| anyhow::anyhow!("unexpected output from the ONNX Runtime script: {e}"))?;
    Ok(summarise("onnxruntime (python)", case, meta.precision, meta.macs, &parsed.times_ms, parsed.peak_rss_mib, None))
}

/// `metadata_props` of an ONNX file, without building the graph.
fn read_props(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    use tract_onnx::prelude::Framework;
    let proto = tract_onnx::onnx().proto_model_for_path(path).map_err(|e| anyhow::anyhow!("cannot read ONNX model {}: {e:#}", path.display()))?;
    Ok(proto.metadata_props.into_iter().map(|p| (p.key, p.value)).collect())
}

/// Runs one case in a child process `exe bench-one ...` and parses its JSON line.
pub fn run_in_child(exe: &Path, engine: &str, case: &BenchCase, python: Option<&Path>) -> anyhow::Result<BenchResult> {
    let mut cmd = Command::new(exe);
    cmd.args(["bench-one", "--engine", engine, "--model"])
        .arg(&case.model)
        .args(["--threads", &case.threads.to_string(), "--workers", &case.workers.to_string(), "--iterations", &case.iterations.to_string(), "--warmup", &case.warmup.to_string()]);
    if let Some(p) = python {
        cmd.arg("--python").arg(p);
    }
    let out = cmd.output().map_err(|e| anyhow::anyhow!("cannot start {}: {e}", exe.display()))?;
    anyhow::ensure!(out.status.success(), "{engine} on {} with {} threads failed: {}", case.model.display(), case.threads, String::from_utf8_lossy(&out.stderr).trim());
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().ok_or_else(|| anyhow::anyhow!("no result from the {engine} child"))?;
    Ok(serde_json::from_str(line)?)
}

/// Markdown table of `results`.
pub fn render_table(results: &[BenchResult]) -> String {
    let mut s = String::from(
        "| engine | model | precision | threads | workers | p50 ms | p95 ms | mean ms | frames/s | GFLOP/s | peak RSS MiB (loading / running) | allocs/frame |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        let name = r.model.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let allocs = r.allocations_per_frame.map_or("n/a".into(), |a| format!("{a:.0}"));
        // Models exported before MACs were recorded carry 0.
        let gflops = if r.macs > 0 { format!("{:.2}", r.gflops) } else { "n/a".into() };
        let rss = match (r.load_peak_rss_mib, r.run_peak_rss_mib) {
            (Some(l), Some(p)) => format!("{:.0} ({l:.0} / {p:.0})", r.peak_rss_mib),
            _ => format!("{:.0}", r.peak_rss_mib),
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} |\n",
            r.engine, name, r.precision, r.threads, r.workers, r.p50_ms, r.p95_ms, r.mean_ms, r.throughput_fps, gflops, rss, allocs
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=20).rev().map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 10.0);
        assert_eq!(percentile(&v, 95.0), 19.0);
        assert_eq!(percentile(&v, 100.0), 20.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[3.0], 95.0), 3.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn synthetic_frame_is_deterministic_and_in_range() {
        let a = synthetic_frame(8, 4);
        assert_eq!(a.len(), 96);
        assert_eq!(a, synthetic_frame(8, 4));
        assert!(a.iter().all(|v| (0.0..1.0).contains(v)));
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        assert!((mean - 0.5).abs() < 0.15, "mean {mean}");
    }

    #[test]
    fn peak_rss_is_read_on_linux() {
        let rss = peak_rss_mib().expect("VmHWM");
        assert!(rss > 1.0 && rss < 100_000.0, "{rss}");
    }

    /// The peak after a reset is the current size, not the earlier high: a 256 MiB buffer,
    /// touched and freed (glibc returns an allocation this large to the kernel at once), is in
    /// the peak before the reset and gone from it after. x86-64 only: the ARM check runs these
    /// tests under qemu-user, where /proc/self and the memory map are the emulator's.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn peak_rss_resets_to_the_current_size() {
        let buffer = vec![1u8; 256 << 20];
        assert_eq!(buffer.iter().step_by(4096).map(|&b| b as usize).sum::<usize>(), (256 << 20) / 4096);
        let with_buffer = peak_rss_mib().expect("VmHWM");
        drop(buffer);
        assert!(reset_peak_rss(), "the kernel refused clear_refs 5");
        let after = peak_rss_mib().expect("VmHWM");
        assert!(after < with_buffer - 128.0, "peak {with_buffer:.0} MiB with the buffer, {after:.0} MiB after the reset");
    }

    #[test]
    fn the_table_shows_the_loading_and_running_peaks_where_measured() {
        let case = BenchCase { model: "m.onnx".into(), threads: 1, iterations: 2, warmup: 1, workers: 1 };
        let mut r = summarise("tract", &case, "f32".into(), 1_000_000, &[2.0, 4.0], 300.4, None);
        let plain = render_table(std::slice::from_ref(&r));
        assert!(plain.contains("| 300 | n/a |"), "{plain}");
        (r.load_peak_rss_mib, r.run_peak_rss_mib) = (Some(300.4), Some(210.6));
        let split = render_table(&[r]);
        assert!(split.contains("| 300 (300 / 211) | n/a |"), "{split}");
        assert!(split.contains("| tract | m.onnx | f32 | 1 | 1 | 2.0 | 4.0 | 3.0 | 333.3 | 0.67 |"), "{split}");
    }
}
