//! `runtime bench`.

use std::path::PathBuf;

use crate::bench::{self, BenchCase, BenchResult};
use crate::infer::ProfileKey;

/// Arguments of `runtime bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Exported ONNX models (e.g. an f32 and an int8 export of one checkpoint).
    #[arg(required = true)]
    pub models: Vec<PathBuf>,
    /// Thread counts to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub threads: Vec<usize>,
    /// Inference worker counts to measure (throughput with frames in parallel, as
    /// `[model].workers` on the line), comma separated; each with every thread count.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub workers: Vec<usize>,
    /// Timed runs per case.
    #[arg(long, default_value_t = 50)]
    pub iterations: usize,
    /// Untimed runs before timing.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Python interpreter with onnxruntime for the comparison (default: $VIRTUAL_ENV/bin/python,
    /// else python3); `none` skips ONNX Runtime.
    #[arg(long)]
    pub ort_python: Option<String>,
    /// Also print tract's time per operator type for each model (1 thread).
    #[arg(long)]
    pub profile: bool,
    /// What the profile sums by: `op` (operator type) or `node` (each layer of the plan, named
    /// after the model's variable paths); implies `--profile`.
    #[arg(long, value_enum)]
    pub profile_by: Option<ProfileKey>,
    /// Rows of each profile table.
    #[arg(long, default_value_t = 12)]
    pub profile_rows: usize,
    /// Write all results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Benchmark exported models: latency p50/p95, frames/s, GFLOP/s, peak RSS and allocations
/// per frame in tract, for each model and thread count, after warm-up; the same files in ONNX
/// Runtime for comparison (in process when built with `--features onnxruntime`, as the scripts build it; through Python otherwise). Prints a Markdown table.
///
/// # Errors
/// `--iterations` 0, a thread count outside 1..=64, a model file missing, or a tract case that
/// fails (an ONNX Runtime case that fails is skipped with a note).
pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let BenchArgs { models, threads, workers, iterations, warmup, ort_python, profile, profile_by, profile_rows, json } = args;
    anyhow::ensure!(workers.iter().all(|&w| (1..=16).contains(&w)), "--workers: expected worker counts in 1..=16, got {workers:?}");
    anyhow::ensure!(iterations > 0, "--iterations must be at least 1");
    anyhow::ensure!(threads.iter().all(|&t| (1..=64).contains(&t)), "--threads: expected thread counts in 1..=64, got {threads:?}");
    for m in &models {
        anyhow::ensure!(m.is_file(), "model {} does not exist or is not a file", m.display());
    }
    let python: Option<PathBuf> = match ort_python.as_deref() {
        Some("none") => None,
        Some(p) => Some(PathBuf::from(p)),
        None => Some(std::env::var("VIRTUAL_ENV").map(|v| PathBuf::from(v).join("bin/python")).unwrap_or_else(|_| PathBuf::from("python3"))),
    };
    let exe = std::env::current_exe()?;
    let mut results: Vec<BenchResult> = Vec::new();
    for model in &models {
        for (&t, &wk) in threads.iter().flat_map(|t| workers.iter().map(move |w| (t, w))) {
            let case = BenchCase { model: model.clone(), threads: t, iterations, warmup, workers: wk };
            eprintln!("tract        {} x{t} threads, {wk} workers ...", model.display());
            results.push(bench::run_in_child(&exe, "tract", &case, None)?);
            if let Some(py) = &python {
                eprintln!("onnxruntime  {} x{t} threads, {wk} workers ...", model.display());
                match bench::run_in_child(&exe, "onnxruntime", &case, Some(py)) {
                    Ok(r) => results.push(r),
                    Err(e) => eprintln!("  skipped: {e:#}"),
                }
            }
        }
    }
    println!("{}", bench::render_table(&results));
    if profile || profile_by.is_some() {
        let key = profile_by.unwrap_or(ProfileKey::Operator);
        let what = if key == ProfileKey::Node { "node (operator)" } else { "operator" };
        for model in &models {
            let case = BenchCase { model: model.clone(), threads: 1, iterations, warmup, workers: 1 };
            let ops = bench::profile_tract(&case, 10, key)?;
            let total: f64 = ops.iter().map(|(_, d)| d.as_secs_f64()).sum();
            println!("tract profile of {} (1 thread, 10 runs): ms per run by {what}\n\n| {what} | ms | share |\n|---|---|---|", model.display());
            for (op, d) in ops.iter().take(profile_rows) {
                println!("| {op} | {:.2} | {:.0} % |", d.as_secs_f64() * 1e3 / 10.0, 100.0 * d.as_secs_f64() / total);
            }
            println!();
        }
    }
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_string_pretty(&results)?).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}
