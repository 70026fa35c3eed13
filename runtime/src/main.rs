//! `runtime`: the FFC-AD inspection runtime command line. Parses the arguments and calls the
//! subcommand's function in `runtime::commands`.

use clap::{Parser, Subcommand};

// Counts heap allocations for `bench` (allocations per frame); one relaxed atomic add each.
#[global_allocator]
static ALLOCATOR: runtime::alloc_count::CountingAllocator = runtime::alloc_count::CountingAllocator;

#[derive(Parser)]
#[command(name = "runtime", version, about = "FFC-AD inspection runtime: runs an exported model on images and decides OK / REJECT")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect image files or folders (recursively) with an exported model: writes one JSONL event
    /// per image, overlay PNGs and summary.json; prints counts and, for MVTec-layout test folders,
    /// image and pixel AUROC.
    Inspect(runtime::commands::inspect::InspectArgs),
    /// Benchmark exported models: latency p50/p95, frames/s, GFLOP/s, peak RSS and allocations
    /// per frame in tract, for each model and thread count, after warm-up; the same files in ONNX
    /// Runtime for comparison (in process when built with `--features onnxruntime`, as the scripts build it; through Python otherwise). Prints a Markdown table.
    Bench(runtime::commands::bench::BenchArgs),
    /// Run the inspection line from a device configuration: capture (V4L2 or replay), inference,
    /// reject pulses (GPIO or simulated), events, overlays and counters, until the source ends,
    /// --max-frames frames came, or SIGINT/SIGTERM. Pulses in flight still fire; the line is left
    /// inactive.
    Run(runtime::commands::run::RunArgs),
    /// Swap the model of a running line without stopping it: replace the file at [model].path
    /// (copy, then mv over it), then run this. The line checks the new file beside the running
    /// model (load, warm-up, [model].acceptance_dir) and swaps between two frames, or refuses it
    /// and keeps running; prints the line's answer. Same as SIGHUP.
    Reload(runtime::commands::swap::SwapArgs),
    /// Return a running line to the model that ran before its last swap. Same as SIGUSR1.
    Rollback(runtime::commands::swap::SwapArgs),
    /// Recalibrate a model's threshold on good images with tract, without the trainer (e.g.
    /// after a lighting change): writes a model file with the new threshold and good-score
    /// statistics; weights untouched.
    Calibrate(runtime::commands::calibrate::CalibrateArgs),
    /// Save good frames from the configured camera (or replay) as training images in
    /// `<out>/train/good/` (ROI crop, lossless PNG, a part standing still saved once).
    Collect(runtime::commands::collect::CollectArgs),
    /// Device configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// List the V4L2 cameras (/dev/video*): driver, card, capture formats (fourcc, description,
    /// whether the runtime converts it) and frame sizes.
    Cameras,
    /// Pulse the reject line through the reject scheduler and print what was done: checks wiring,
    /// active level and ejector timing. Ctrl-C stops early with the line inactive.
    GpioTest(runtime::commands::gpio_test::GpioTestArgs),
    /// One benchmark case in this process (used by `bench`, which runs each case in a child
    /// process so peak RSS is per case). Prints one JSON line.
    #[command(hide = true)]
    BenchOne(runtime::commands::bench_one::BenchOneArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Parse and validate a device configuration; print it with every default filled in, and
    /// whether the model, camera, replay folder and GPIO lines it names exist on this machine.
    Check(runtime::commands::config_check::ConfigCheckArgs),
}

fn main() -> std::process::ExitCode {
    runtime::cli::run_main(|| run(Cli::parse()))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect(args) => runtime::commands::inspect::inspect(args),
        Command::Bench(args) => runtime::commands::bench::bench(args),
        Command::Run(args) => runtime::commands::run::run(args),
        Command::Reload(args) => runtime::commands::swap::reload(args),
        Command::Rollback(args) => runtime::commands::swap::rollback(args),
        Command::Calibrate(args) => runtime::commands::calibrate::calibrate(args),
        Command::Collect(args) => runtime::commands::collect::collect(args),
        Command::Config { command: ConfigCommand::Check(args) } => runtime::commands::config_check::config_check(args),
        Command::Cameras => runtime::commands::cameras::cameras(),
        Command::GpioTest(args) => runtime::commands::gpio_test::gpio_test(args),
        Command::BenchOne(args) => runtime::commands::bench_one::bench_one(args),
    }
}
