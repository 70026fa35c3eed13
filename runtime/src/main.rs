//! `runtime`: the FFC-AD inspection runtime command line.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use firmware_config::{DeviceConfig, OverlayMode};
use runtime::bench::{self, BenchCase, BenchResult};
use runtime::inspect::{inspect, render_summary, InspectOptions};

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
    Inspect {
        /// Images and/or folders of images (PNG, JPEG; grey or RGB; 8 or 16 bit; any size).
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Exported ONNX model (overrides [model].path of --config; default model.onnx).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Output folder (overrides [output].dir of --config; default inspect-out).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Device configuration TOML (example: firmware-config/device.example.toml); flags override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Image score threshold (finite, at least 1e-6); default: the one calibrated into the model.
        #[arg(long, allow_hyphen_values = true)]
        threshold: Option<f32>,
        /// Pulse the reject line for images that cannot be read (default: [reject].reject_unreadable, true).
        #[arg(long, value_name = "BOOL")]
        reject_unreadable: Option<bool>,
        /// Which images get an overlay PNG (default: [output].overlays, all).
        #[arg(long, value_enum)]
        overlays: Option<OverlayMode>,
        /// Inference threads (default: [model].threads, 1).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
        threads: Option<u32>,
        /// Significant bits of 16-bit image samples, 8..=16, LSB-aligned (a 12-bit sensor's PNGs hold
        /// 0..=4095); 8-bit images are not affected (default: [camera].bit_depth, else the model's).
        #[arg(long, value_name = "BITS")]
        bit_depth: Option<runtime::bit_depth::BitDepth>,
    },
    /// Benchmark exported models: latency p50/p95, frames/s, GFLOP/s, peak RSS and allocations
    /// per frame in tract, for each model and thread count, after warm-up; the same files in ONNX
    /// Runtime (through Python) for comparison. Prints a Markdown table.
    Bench {
        /// Exported ONNX models (e.g. an f32 and an int8 export of one checkpoint).
        #[arg(required = true)]
        models: Vec<PathBuf>,
        /// Thread counts to measure, comma separated.
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        threads: Vec<usize>,
        /// Timed runs per case.
        #[arg(long, default_value_t = 50)]
        iterations: usize,
        /// Untimed runs before timing.
        #[arg(long, default_value_t = 5)]
        warmup: usize,
        /// Python interpreter with onnxruntime for the comparison (default: $VIRTUAL_ENV/bin/python,
        /// else python3); `none` skips ONNX Runtime.
        #[arg(long)]
        ort_python: Option<String>,
        /// Also print tract's time per operator type for each model (1 thread).
        #[arg(long)]
        profile: bool,
        /// Write all results as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Run the inspection line from a device configuration: capture (V4L2 or replay), inference,
    /// reject pulses (GPIO or simulated), events, overlays and counters, until the source ends,
    /// --max-frames frames came, or SIGINT/SIGTERM. Pulses in flight still fire; the line is left
    /// inactive.
    Run {
        /// Device configuration TOML (see firmware-config/device.example.toml).
        #[arg(long)]
        config: PathBuf,
        /// Stop after this many frames from the source.
        #[arg(long)]
        max_frames: Option<u64>,
    },
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
    GpioTest {
        /// The reject line: a line name (e.g. GPIO17, searched on every /dev/gpiochip*) or
        /// CHIP:OFFSET (gpiochip0:17, /dev/gpiochip0:17, or a chip label: pinctrl-rp1:17).
        #[arg(long)]
        line: String,
        /// The ejector fires on a low level.
        #[arg(long)]
        active_low: bool,
        /// Pulse width, ms.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10000))]
        pulse_ms: u32,
        /// Number of pulses.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10000))]
        count: u32,
        /// Time between pulse requests, ms.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(0..=60000))]
        interval_ms: u32,
        /// Delay from each request to its rising edge (camera-to-ejector time), ms.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=60000))]
        delay_ms: u32,
        /// Drive a simulated line instead of the GPIO device, and print the recorded edges.
        #[arg(long)]
        simulated: bool,
    },
    /// One benchmark case in this process (used by `bench`, which runs each case in a child
    /// process so peak RSS is per case). Prints one JSON line.
    #[command(hide = true)]
    BenchOne {
        #[arg(long)]
        engine: String,
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        threads: usize,
        #[arg(long)]
        iterations: usize,
        #[arg(long)]
        warmup: usize,
        #[arg(long)]
        python: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Parse and validate a device configuration; print it with every default filled in, and
    /// whether the model, camera, replay folder and GPIO lines it names exist on this machine.
    Check {
        /// Device configuration TOML.
        file: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    runtime::cli::run_main(|| run(Cli::parse()))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect { inputs, model, out, config, threshold, reject_unreadable, overlays, threads, bit_depth } => {
            let cfg = match config {
                Some(p) => DeviceConfig::load(&p)?,
                None => DeviceConfig::default(),
            };
            anyhow::ensure!(
                cfg.reject.backend == firmware_config::RejectBackend::Simulated,
                "reject.backend = \"gpio\" is not available in `inspect` (the GPIO backend comes with the line runtime); use \"simulated\""
            );
            let opts = InspectOptions {
                model: model.unwrap_or(cfg.model.path),
                inputs,
                out_dir: out.unwrap_or(cfg.output.dir),
                threshold: threshold.or(cfg.model.threshold),
                overlays: overlays.unwrap_or(cfg.output.overlays),
                reject_delay_ms: cfg.reject.delay_ms,
                reject_pulse_ms: cfg.reject.pulse_ms,
                reject_unreadable: reject_unreadable.unwrap_or(cfg.reject.reject_unreadable),
                threads: threads.unwrap_or(cfg.model.threads) as usize,
                roi: cfg.roi,
                progress: std::io::stderr().is_terminal(),
                bit_depth: match bit_depth {
                    Some(d) => Some(d),
                    None => cfg.camera.bit_depth.map(runtime::bit_depth::BitDepth::new).transpose().map_err(|e| anyhow::anyhow!("camera.bit_depth: {e}"))?,
                },
            };
            let summary = inspect(&opts)?;
            print!("{}", render_summary(&summary));
            // Every image was inspected; the exit code still says the outputs are incomplete.
            anyhow::ensure!(summary.output_write_errors == 0, "{} output writes failed in {} (see the log): events, overlays or summary are incomplete", summary.output_write_errors, opts.out_dir.display());
            Ok(())
        }
        Command::Bench { models, threads, iterations, warmup, ort_python, profile, json } => {
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
                for &t in &threads {
                    let case = BenchCase { model: model.clone(), threads: t, iterations, warmup };
                    eprintln!("tract        {} x{t} ...", model.display());
                    results.push(bench::run_in_child(&exe, "tract", &case, None)?);
                    if let Some(py) = &python {
                        eprintln!("onnxruntime  {} x{t} ...", model.display());
                        match bench::run_in_child(&exe, "onnxruntime", &case, Some(py)) {
                            Ok(r) => results.push(r),
                            Err(e) => eprintln!("  skipped: {e:#}"),
                        }
                    }
                }
            }
            println!("{}", bench::render_table(&results));
            if profile {
                for model in &models {
                    let case = BenchCase { model: model.clone(), threads: 1, iterations, warmup };
                    let ops = bench::profile_tract(&case, 10)?;
                    let total: f64 = ops.iter().map(|(_, d)| d.as_secs_f64()).sum();
                    println!("tract profile of {} (1 thread, 10 runs): ms per run by operator\n\n| operator | ms | share |\n|---|---|---|", model.display());
                    for (op, d) in ops.iter().take(12) {
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
        Command::Run { config, max_frames } => {
            let cfg = DeviceConfig::load(&config)?;
            runtime::cli::apply_log_level(&cfg.logging.level);
            let safe = runtime::shutdown::SafeLines::install();
            let stop = runtime::shutdown::install_handlers();
            let outcome = runtime::line::setup::run_from_config(&cfg, max_frames, stop, &safe)?;
            let s = &outcome.summary;
            let c = &s.counters;
            println!("source      {}", s.source);
            println!("stopped     {} after {:.1} s", s.stopped_because, s.wall_s);
            println!("frames      {} = inspected {} (OK {}, REJECT {}) + late {} + bad {}", c.frames, c.inspected, c.ok, c.rejected, c.late, c.bad);
            println!("errors      source {}, inference {}, reject output {}, output writes {}; timeouts {}; overlays dropped {}", c.source_errors, c.infer_errors, c.reject_errors, c.output_write_errors, c.timeouts, c.overlays_dropped);
            let l = &s.latency;
            println!("latency ms  queue p50 {:.1} | preprocess p50 {:.1} | infer p50 {:.1} p95 {:.1} | capture->decision p50 {:.1} p95 {:.1}", l.queue.p50_ms, l.preprocess.p50_ms, l.infer.p50_ms, l.infer.p95_ms, l.capture_to_decision.p50_ms, l.capture_to_decision.p95_ms);
            if c.pulses_missed > 0 {
                println!(
                    "WARNING     {} REJECT parts were not ejected: their decision came after reject.delay_ms = {} ms (capture->decision p95 {:.0} ms) or the line write failed",
                    c.pulses_missed, cfg.reject.delay_ms, l.capture_to_decision.p95_ms
                );
            }
            for w in &outcome.warnings {
                println!("WARNING     {w}");
            }
            if let Some(line) = &outcome.simulated_line {
                println!("reject line simulated: {} pulses, line {} at exit", line.active_periods().len(), if line.is_active() { "ACTIVE" } else { "inactive" });
            }
            let t = &s.totals;
            println!("all runs    {} runs: {} frames = inspected {} (OK {}, REJECT {}) + late {} + bad {}; pulses missed {} (state.json)", t.runs, t.frames, t.inspected, t.ok, t.rejected, t.late, t.bad, t.pulses_missed);
            println!("output      {}", cfg.output.dir.display());
            Ok(())
        }
        Command::Config { command: ConfigCommand::Check { file } } => {
            let cfg = DeviceConfig::load(&file)?;
            println!("{} is valid. With defaults filled in:\n", file.display());
            println!("{}", toml::to_string_pretty(&cfg)?);
            // Paths are relative to the working directory the runtime starts in.
            println!("on this machine (relative paths from {}):", std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default());
            let mut problems = 0;
            let mut report = |what: String, r: anyhow::Result<String>| match r {
                Ok(detail) => println!("  ok      {what}{detail}"),
                Err(e) => {
                    problems += 1;
                    println!("  PROBLEM {what}: {e:#}");
                }
            };
            let model = runtime::infer::AnomalyModel::load(&cfg.model.path);
            report(format!("model {}", cfg.model.path.display()), model.as_ref().map(|m| format!(" ({}, {}x{} px, threshold {})", m.metadata.precision, m.metadata.input_width, m.metadata.input_height, m.metadata.threshold)).map_err(|e| anyhow::anyhow!("{e}")));
            let mut replay_first = None;
            match cfg.camera.source {
                firmware_config::CameraSource::V4l2 => {
                    let d = cfg.camera.device.clone();
                    report(format!("camera {}", d.display()), if d.exists() { Ok(String::new()) } else { Err(anyhow::anyhow!("absent (the runtime retries every {} ms)", cfg.camera.reopen_ms)) });
                }
                firmware_config::CameraSource::Replay => {
                    let dir = cfg.camera.replay_dir.clone().unwrap_or_default();
                    report(format!("replay folder {}", dir.display()), runtime::capture::ReplaySource::open(&dir, cfg.camera.fps, false, runtime::bit_depth::BitDepth::FULL).map(|r| format!(" ({} images)", r.len())).map_err(Into::into));
                    // The replay's frame size is its images' (camera.width/height do not apply).
                    match runtime::preflight::first_replay_image(&dir) {
                        Ok(h) => {
                            report("replay frame size".into(), Ok(format!(" {}x{} px{} (first image {})", h.width, h.height, if h.grey { ", grey" } else { "" }, h.path.display())));
                            if let Some(roi) = &cfg.roi {
                                let frames = format!("the replay (first image {})", h.path.display());
                                let r = match runtime::preflight::roi_problem(roi, h.width, h.height, &frames) {
                                    Some(p) => Err(anyhow::anyhow!("{p}")),
                                    None => Ok(format!(" (x {} y {} width {} height {} inside {}x{} px)", roi.x, roi.y, roi.width, roi.height, h.width, h.height)),
                                };
                                report("roi".into(), r);
                            }
                            replay_first = Some(h);
                        }
                        Err(e) => report("replay frame size".into(), Err(e)),
                    }
                }
            }
            let out = &cfg.output.dir;
            report(format!("output folder {}", out.display()), match runtime::preflight::output_dir_problem(out) {
                Some(p) => Err(anyhow::anyhow!("{p}")),
                None => Ok(" (writable)".into()),
            });
            if let Some(fb) = &cfg.output.framebuffer {
                report(format!("framebuffer {}", fb.display()), runtime::framebuffer::FbGeometry::from_sysfs(fb).map(|g| format!(" ({}x{}, {} bpp)", g.width, g.height, g.bits_per_pixel)));
            }
            if cfg.reject.backend == firmware_config::RejectBackend::Gpio {
                let line = cfg.reject.line.clone().unwrap_or_default();
                report(format!("reject line {line}"), line.parse::<runtime::gpio::LineSpec>().map_err(anyhow::Error::from).and_then(|s| runtime::gpio::resolve(&s)).map(|r| format!(" ({r:?})")));
            }
            if cfg.trigger.mode == firmware_config::TriggerMode::Gpio {
                let line = cfg.trigger.line.clone().unwrap_or_default();
                report(format!("trigger line {line}"), line.parse::<runtime::gpio::LineSpec>().map_err(anyhow::Error::from).and_then(|s| runtime::gpio::resolve(&s)).map(|r| format!(" ({r:?})")));
            }
            if let Ok(m) = &model {
                if let Some(w) = runtime::preflight::grey_camera_warning(&cfg, &cfg.model.path, &m.metadata, replay_first.as_ref()) {
                    println!("  WARNING {w}");
                }
                if let Ok(d) = runtime::preflight::line_bit_depth(&cfg, &m.metadata) {
                    let from = if cfg.camera.bit_depth.is_some() { "camera.bit_depth" } else { "the model's ffcad.bit_depth" };
                    println!("  ok      16-bit samples (Y16, 16-bit replay images) read as {d} ({from})");
                }
                if let Some(w) = runtime::preflight::bit_depth_warning(&cfg, &cfg.model.path, &m.metadata) {
                    println!("  WARNING {w}");
                }
            }
            if cfg.reject.delay_ms == 0 {
                println!("  note    reject.delay_ms = 0: pulses fire as soon as the decision is made; set it to the camera-to-ejector time (must exceed the capture->decision p95 `runtime run` prints)");
            }
            anyhow::ensure!(problems == 0, "{problems} problem(s) on this machine (see above)");
            Ok(())
        }
        Command::Cameras => {
            print!("{}", runtime::capture::render_camera_table(&runtime::capture::list_cameras()));
            Ok(())
        }
        Command::GpioTest { line, active_low, pulse_ms, count, interval_ms, delay_ms, simulated } => {
            let safe = runtime::shutdown::SafeLines::install();
            let stop = runtime::shutdown::install_handlers();
            let opts = runtime::gpio_test::GpioTestOptions { line, active_low, pulse_ms, delay_ms, count, interval_ms, simulated };
            print!("{}", runtime::gpio_test::run(&opts, &safe, &stop)?);
            anyhow::ensure!(!stop.load(std::sync::atomic::Ordering::SeqCst), "interrupted by a signal; line released inactive");
            Ok(())
        }
        Command::BenchOne { engine, model, threads, iterations, warmup, python } => {
            let case = BenchCase { model, threads, iterations, warmup };
            let r = match engine.as_str() {
                "tract" => bench::run_tract(&case)?,
                "onnxruntime" => bench::run_onnxruntime(&python.unwrap_or_else(|| PathBuf::from("python3")), &case)?,
                other => anyhow::bail!("unknown engine `{other}`: expected tract or onnxruntime"),
            };
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }
    }
}
