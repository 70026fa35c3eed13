//! `runtime bench-one`.

use std::path::PathBuf;

use crate::bench::{self, BenchCase};

/// Arguments of `runtime bench-one`.
#[derive(clap::Args, Debug)]
pub struct BenchOneArgs {
    #[arg(long)]
    pub engine: String,
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long)]
    pub threads: usize,
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    #[arg(long)]
    pub iterations: usize,
    #[arg(long)]
    pub warmup: usize,
    #[arg(long)]
    pub python: Option<PathBuf>,
}

/// One benchmark case in this process (used by `bench`, which runs each case in a child
/// process so peak RSS is per case). Prints one JSON line.
///
/// # Errors
/// An unknown engine, or the case failed.
pub fn bench_one(args: BenchOneArgs) -> anyhow::Result<()> {
    let BenchOneArgs { engine, model, threads, workers, iterations, warmup, python } = args;
    let case = BenchCase { model, threads, iterations, warmup, workers };
    let r = match engine.as_str() {
        "tract" => bench::run_tract(&case)?,
        // In process through the same AnomalyModel as the line when the engine is built in;
        // through Python otherwise.
        "onnxruntime" if cfg!(feature = "onnxruntime") => bench::run_in_process(&case, crate::infer::ModelEngine::Onnxruntime)?,
        "onnxruntime" if case.workers > 1 => anyhow::bail!("--workers above 1 for ONNX Runtime needs the in-process engine (build with --features onnxruntime)"),
        "onnxruntime" => bench::run_onnxruntime(&python.unwrap_or_else(|| PathBuf::from("python3")), &case)?,
        other => anyhow::bail!("unknown engine `{other}`: expected tract or onnxruntime"),
    };
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}
