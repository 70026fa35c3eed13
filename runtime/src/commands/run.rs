//! `runtime run`.

use std::path::PathBuf;

use firmware_config::DeviceConfig;

/// Arguments of `runtime run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Device configuration TOML (see firmware-config/device.example.toml).
    #[arg(long)]
    pub config: PathBuf,
    /// Stop after this many frames from the source.
    #[arg(long)]
    pub max_frames: Option<u64>,
}

/// Run the inspection line from a device configuration: capture (V4L2 or replay), inference,
/// reject pulses (GPIO or simulated), events, overlays and counters, until the source ends,
/// --max-frames frames came, or SIGINT/SIGTERM. Pulses in flight still fire; the line is left
/// inactive.
///
/// # Errors
/// The device file is invalid, or the model, frame source, reject output or output folder cannot
/// be opened (each message names the file, device or key).
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let RunArgs { config, max_frames } = args;
    // First: until they are handled, SIGHUP / SIGUSR1 (reload, rollback) would end the process.
    crate::line::swap::SwapRequests::from_signals()?;
    let cfg = DeviceConfig::load(&config)?;
    crate::cli::apply_log_level(&cfg.logging.level);
    let safe = crate::shutdown::SafeLines::install();
    let stop = crate::shutdown::install_handlers();
    let outcome = crate::line::setup::run_from_config(&cfg, max_frames, stop, &safe)?;
    let s = &outcome.summary;
    let c = &s.counters;
    println!("source      {}", s.source);
    println!("stopped     {} after {:.1} s", s.stopped_because, s.wall_s);
    println!("frames      {} = inspected {} (OK {}, REJECT {}) + late {} + bad {}", c.frames, c.inspected, c.ok, c.rejected, c.late, c.bad);
    println!("errors      source {}, inference {}, reject output {}, output writes {}; timeouts {}; overlays dropped {}, frames not saved {}", c.source_errors, c.infer_errors, c.reject_errors, c.output_write_errors, c.timeouts, c.overlays_dropped, c.frames_not_saved);
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
    if c.model_swaps + c.swaps_refused + c.rollbacks > 0 {
        println!("models      {} swaps, {} refused, {} rollbacks; ended on {} (models.jsonl)", c.model_swaps, c.swaps_refused, c.rollbacks, s.model_id);
    }
    if let Some(m) = &s.mqtt {
        println!("mqtt        {} messages delivered (events, status, model records), {} REJECT/BAD events spooled while the broker was away, {} spooled events sent after a connect (this run's or an earlier run's), {} messages dropped, {} connects", m.delivered, m.spooled, m.spool_sent, m.dropped, m.connects);
    }
    let t = &s.totals;
    println!("all runs    {} runs: {} frames = inspected {} (OK {}, REJECT {}) + late {} + bad {}; pulses missed {} (state.json)", t.runs, t.frames, t.inspected, t.ok, t.rejected, t.late, t.bad, t.pulses_missed);
    println!("output      {}", cfg.output.dir.display());
    Ok(())
}
