//! Builds the line's parts from a device configuration (`runtime run --config FILE`): the frame
//! source (V4L2 with reopen, or replay; optionally gated by a GPIO trigger), the model, the
//! scheduled reject output (GPIO or simulated), and runs [`super::run_line`].

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use firmware_config::{CameraSource, DeviceConfig, ReadyBackend, RejectBackend, TriggerMode};

use super::{LineOptions, LineSummary};
use crate::bit_depth::BitDepth;
use crate::capture::{CaptureRequest, FrameSource, ReopeningSource, ReplaySource, TriggeredSource, V4l2Source};
use crate::gpio::{GpioLine, GpioTrigger, LineSpec};
use crate::reject::{RejectOutput, ScheduledReject, SimulatedLine};
use crate::shutdown::SafeLines;

/// The frame source the configuration describes; `Y16` frames and 16-bit replay images are read
/// at `bit_depth` significant bits ([`crate::preflight::line_bit_depth`]).
///
/// Errors: a replay folder without images, a trigger line that cannot be opened.
/// A V4L2 camera that is absent at start is not an error: it is retried every `reopen_ms`.
pub fn open_source(cfg: &DeviceConfig, bit_depth: BitDepth) -> anyhow::Result<Box<dyn FrameSource + Send>> {
    let c = &cfg.camera;
    let source: Box<dyn FrameSource + Send> = match c.source {
        CameraSource::Replay => {
            let dir = c.replay_dir.clone().context("camera.replay_dir is required for camera.source = \"replay\"")?;
            Box::new(ReplaySource::open(&dir, c.fps, c.replay_loop, bit_depth)?)
        }
        CameraSource::V4l2 => {
            let request = CaptureRequest { bit_depth, ..CaptureRequest::new(c.width, c.height, c.fourcc) };
            let device = c.device.clone();
            let controls = c.controls.clone();
            // Controls are set at every open: a reopened camera starts from its defaults.
            let factory = move || {
                let mut s = V4l2Source::open(&device, &request)?;
                s.set_controls(&controls)?;
                Ok(s)
            };
            let mut s = ReopeningSource::new(factory, Duration::from_millis(c.reopen_ms as u64));
            if let Err(e) = s.open_now() {
                tracing::warn!("{e}; retrying every {} ms", c.reopen_ms);
            }
            Box::new(s)
        }
    };
    Ok(match cfg.trigger.mode {
        TriggerMode::FreeRun => source,
        TriggerMode::Gpio => {
            let spec: LineSpec = cfg.trigger.line.as_deref().unwrap_or("").parse().context("trigger.line")?;
            let trigger = GpioTrigger::open(&spec, false, cfg.trigger.edge, Duration::from_millis(cfg.trigger.debounce_ms as u64))?;
            Box::new(TriggeredSource::new(source, Box::new(trigger)))
        }
    })
}

/// The reject output the configuration describes, registered with `safe` so that a panic or a
/// second signal puts the line inactive. A simulated line also returns its recorder.
pub fn open_reject(cfg: &DeviceConfig, safe: &SafeLines) -> anyhow::Result<(Box<dyn RejectOutput + Send>, Option<SimulatedLine>)> {
    let r = &cfg.reject;
    let (delay, width) = (Duration::from_millis(r.delay_ms as u64), Duration::from_millis(r.pulse_ms as u64));
    Ok(match r.backend {
        RejectBackend::Simulated => {
            let line = SimulatedLine::new();
            let out = ScheduledReject::new("simulated", line.clone(), delay, width)?;
            safe.register(&out.safe_line());
            (Box::new(out), Some(line))
        }
        RejectBackend::Gpio => {
            let name = r.line.clone().unwrap_or_default();
            let spec: LineSpec = name.parse().context("reject.line")?;
            let out = ScheduledReject::new(&name, GpioLine::open(&spec, r.active_low)?, delay, width)?;
            safe.register(&out.safe_line());
            (Box::new(out), None)
        }
    })
}

/// The ready output the configuration describes (`[ready]`; None for `backend = "none"`),
/// registered with `safe` so that a panic or a second signal puts it inactive.
///
/// # Errors
/// The GPIO line cannot be found or requested (the message names it).
pub fn open_ready(cfg: &DeviceConfig, safe: &SafeLines) -> anyhow::Result<Option<Box<dyn crate::reject::LineDriver>>> {
    let r = &cfg.ready;
    let (name, driver): (String, Box<dyn crate::reject::LineDriver>) = match r.backend {
        ReadyBackend::None => return Ok(None),
        ReadyBackend::Simulated => ("simulated".into(), Box::new(SimulatedLine::new())),
        ReadyBackend::Gpio => {
            let name = r.line.clone().unwrap_or_default();
            let spec: LineSpec = name.parse().context("ready.line")?;
            (name, Box::new(GpioLine::open(&spec, r.active_low).context("ready.line")?))
        }
    };
    let line = super::health::ReadyLine::new(&name, driver);
    let as_safe: Arc<dyn crate::shutdown::SafeLine> = line.clone();
    safe.register(&as_safe);
    // The registry holds lines weakly: the handle keeps this one alive while the line runs.
    Ok(Some(Box::new(super::health::ReadyHandle(line))))
}

/// What `runtime run` did, with the simulated line's record when there is one.
pub struct RunOutcome {
    pub summary: LineSummary,
    pub simulated_line: Option<SimulatedLine>,
    /// Warnings about the configuration logged at start (e.g. a grey camera with a model trained
    /// on colour or not recording its colour, [`crate::preflight::grey_camera_warning`]), to repeat
    /// with the results.
    pub warnings: Vec<String>,
}

/// Runs the line described by `cfg` until the source ends, `shutdown` is set or `max_frames`
/// frames came; then lets pulses still in flight reach the ejector and puts the line inactive.
///
/// Errors: the model, source or reject output cannot be opened, or the output folder is not
/// writable (each message names the file, device or key).
pub fn run_from_config(cfg: &DeviceConfig, max_frames: Option<u64>, shutdown: Arc<AtomicBool>, safe: &SafeLines) -> anyhow::Result<RunOutcome> {
    if let Some(fb) = &cfg.output.framebuffer {
        crate::framebuffer::FbGeometry::from_sysfs(fb).with_context(|| format!("output.framebuffer = {}", fb.display()))?;
    }
    // The model at start passes the checks a swapped-in one must pass (load, warm-up, the
    // acceptance set): a model that judges known images wrong does not start the line.
    let checked = super::swap::check_candidate(cfg)?;
    tracing::info!("model {} ({}) checked in {:.0} ms{}", cfg.model.path.display(), checked.inspector.model().id(), checked.check_ms, if checked.accepted_images > 0 { format!(", {} acceptance images judged right", checked.accepted_images) } else { String::new() });
    let model = checked.inspector.model();
    // Frames and model of different colour (a grey camera on a colour-trained model rejects every
    // good part; issue 12, finding 6): said at start and again with the results.
    let warnings = super::swap::model_warnings(cfg, model);
    for w in &warnings {
        tracing::warn!("{w}");
    }
    if !cfg.camera.controls.is_empty() && cfg.camera.source == CameraSource::Replay {
        tracing::warn!("camera.controls apply to a V4L2 camera only: ignored with camera.source = \"replay\"");
    }
    let bit_depth = crate::preflight::line_bit_depth(cfg, &model.metadata)?;
    let source = open_source(cfg, bit_depth)?;
    let (mut reject, simulated_line) = open_reject(cfg, safe)?;
    tracing::info!("source: {}; model: {}; reject: {:?}", source.describe(), cfg.model.path.display(), cfg.reject.backend);
    let mut opts = LineOptions::new(&cfg.output.dir);
    opts.overlays = cfg.output.overlays;
    opts.max_saved_images = cfg.output.max_saved_images as usize;
    opts.save_frames = super::SaveFrames { rejects: cfg.output.save_rejects, ok_every: u64::from(cfg.output.save_ok_every), max: cfg.output.max_saved_frames as usize };
    opts.reject_bad_frames = cfg.reject.reject_unreadable;
    opts.workers = cfg.model.workers as usize;
    opts.drift = cfg.drift.enabled.then_some((cfg.drift.window as usize, cfg.drift.k));
    // One frame waiting per worker: each finds the next frame when it is free.
    opts.queue_frames = opts.workers;
    opts.frame_timeout = Duration::from_millis(cfg.camera.timeout_ms as u64);
    opts.max_frames = max_frames;
    opts.events = cfg.logging.events;
    opts.events_rotation = crate::events::Rotation { max_bytes: u64::from(cfg.output.max_events_mib) << 20, keep: cfg.output.old_events_files as usize };
    opts.framebuffer = cfg.output.framebuffer.clone();
    // Live swaps: SIGHUP reloads [model].path, SIGUSR1 rolls back (super::swap).
    let requests = super::swap::SwapRequests::from_signals()?;
    let (control_tx, control_rx) = std::sync::mpsc::sync_channel(1);
    let watcher_stop = Arc::new(AtomicBool::new(false));
    // The web API's threshold change goes the same way as a swap: between two frames.
    let web_controls = control_tx.clone();
    let watcher = super::swap::spawn_model_watcher(cfg.clone(), requests, control_tx, Arc::clone(&watcher_stop))?;
    let health = super::health::HealthOptions {
        ready_line: open_ready(cfg, safe)?,
        watchdog: super::health::Watchdog::from_env(),
        // A few frame periods and a whole camera wait: a live line stamps far more often.
        stale: Duration::from_millis(cfg.camera.timeout_ms as u64 * 2) + Duration::from_secs_f32(3.0 / cfg.camera.fps),
        frames_expected: cfg.trigger.mode == TriggerMode::FreeRun,
        poll: Duration::from_millis(20),
    };
    if let Some(w) = health.watchdog {
        tracing::info!("systemd watchdog every {:.1} s: pinged while frames are inspected", w.interval.as_secs_f64());
    }
    // The web view: started before the line, stopped after it (dropping the server).
    let mut web_server = None;
    // The MQTT counters, shown by /metrics too.
    let mqtt_metrics = crate::mqtt::MqttMetrics::default();
    if cfg.web.enabled {
        let m = checked.inspector.model();
        let model = crate::web::ModelView {
            model: m.id().to_string(),
            sha256: m.id().sha256.clone(),
            threshold: checked.inspector.threshold(),
            calibration: serde_json::to_value(&m.metadata.threshold_calibration).unwrap_or_default(),
        };
        // Event numbers continue from the frames earlier runs counted (state.json).
        let first_seq = super::state::LineTotals::load(&cfg.output.dir.join("state.json")).frames;
        let view = crate::web::LiveView::new(model, first_seq, cfg.web.live_fps, cfg.web.gallery as usize, cfg.mqtt.enabled.then_some(&mqtt_metrics));
        web_server = Some(crate::web::serve(&cfg.web, view.clone(), &cfg.output.dir, web_controls)?);
        opts.web = Some(view);
    }
    if cfg.mqtt.enabled {
        opts.mqtt = Some(crate::mqtt::MqttPublisher::start(&cfg.mqtt, &cfg.output.dir, &checked.inspector.model().id().to_string(), mqtt_metrics)?);
    }
    let mqtt = opts.mqtt.clone();
    // Written once nothing can fail any more before the line runs: a failed start leaves no
    // stale pid file for `runtime reload` to find.
    let pid_file = super::swap::pid_file(&cfg.output.dir);
    if let Err(e) = std::fs::create_dir_all(&cfg.output.dir).and_then(|()| std::fs::write(&pid_file, format!("{}\n", std::process::id()))) {
        tracing::warn!("cannot write {}: {e}; `runtime reload` and `runtime rollback` will not find this line (send SIGHUP / SIGUSR1 to pid {})", pid_file.display(), std::process::id());
    }
    let hooks = super::LineHooks { controls: Some(control_rx), health: Some(health) };
    let result = super::run_line_with(source, checked.inspector, reject.as_mut(), &opts, shutdown, hooks);
    let _ = std::fs::remove_file(&pid_file);
    watcher_stop.store(true, std::sync::atomic::Ordering::SeqCst);
    if let Some(s) = web_server {
        s.stop();
    }
    let mqtt_counts = mqtt.map(|m| m.stop());
    let result = result.map(|mut s| {
        s.mqtt = mqtt_counts;
        s
    });
    let _ = watcher.join();
    Ok(RunOutcome { summary: result?, simulated_line, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_what_is_wrong() {
        let mut cfg = DeviceConfig::default();
        cfg.camera.source = CameraSource::Replay;
        let msg = open_source(&cfg, BitDepth::FULL).err().unwrap().to_string();
        assert!(msg.contains("camera.replay_dir"), "{msg}");
        cfg.camera.replay_dir = Some("/nonexistent/frames".into());
        let msg = open_source(&cfg, BitDepth::FULL).err().unwrap().to_string();
        assert!(msg.contains("/nonexistent/frames"), "{msg}");
        let mut cfg = DeviceConfig::default();
        cfg.reject.backend = RejectBackend::Gpio;
        cfg.reject.line = Some("GPIO17".into());
        let safe = SafeLines::install();
        let msg = open_reject(&cfg, &safe).err().unwrap().to_string();
        assert!(msg.contains("GPIO17"), "{msg}");
    }
}
