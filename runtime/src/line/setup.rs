//! Builds the line's parts from a device configuration (`runtime run --config FILE`): the frame
//! source (V4L2 with reopen, or replay; optionally gated by a GPIO trigger), the model, the
//! scheduled reject output (GPIO or simulated), and runs [`super::run_line`].

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use firmware_config::{CameraSource, DeviceConfig, Edge, RejectBackend, TriggerMode};

use super::{run_line, LineOptions, LineSummary};
use crate::capture::{CaptureError, CaptureRequest, Frame, FrameSource, PixelFormat, ReopeningSource, ReplaySource, V4l2Source};
use crate::gpio::{GpioLine, GpioTrigger, LineSpec, TriggerEdge};
use crate::infer::AnomalyModel;
use crate::inspector::Inspector;
use crate::preprocess::Roi;
use crate::reject::{RejectOutput, ScheduledReject, SimulatedLine};
use crate::shutdown::SafeLines;

/// Something that says when a part is under the camera.
pub trait Trigger: Send {
    /// Waits at most `timeout` for the next trigger; `Ok(None)` on timeout. Returns when the
    /// trigger happened (monotonic clock).
    fn wait(&mut self, timeout: Duration) -> anyhow::Result<Option<Instant>>;
}

impl Trigger for GpioTrigger {
    fn wait(&mut self, timeout: Duration) -> anyhow::Result<Option<Instant>> {
        Ok(GpioTrigger::wait(self, timeout)?.map(|e| e.received))
    }
}

/// Inspects only the first frame captured at or after each trigger; frames in between are
/// discarded (in trigger mode they show no part). The inner source is read continuously, so no
/// stale frame waits in the driver's buffers when the trigger comes.
pub struct TriggeredSource<S> {
    inner: S,
    trigger: Box<dyn Trigger>,
    /// A trigger not yet matched with a frame.
    pending: Option<Instant>,
    /// Frames discarded while waiting for a trigger.
    pub discarded: u64,
}

impl<S: FrameSource> TriggeredSource<S> {
    pub fn new(inner: S, trigger: Box<dyn Trigger>) -> Self {
        Self { inner, trigger, pending: None, discarded: 0 }
    }
}

impl<S: FrameSource> FrameSource for TriggeredSource<S> {
    fn next_frame(&mut self, timeout: Duration) -> Result<Option<Frame>, CaptureError> {
        let until = Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let frame = self.inner.next_frame(left)?;
            // Poll after the frame: a trigger that fired while it was on its way still counts.
            if self.pending.is_none() {
                match self.trigger.wait(Duration::ZERO) {
                    Ok(t) => self.pending = t,
                    Err(e) => return Err(CaptureError::Stream { device: "trigger".into(), reason: format!("{e:#}") }),
                }
            }
            match (frame, self.pending) {
                (Some(f), Some(t)) if f.captured_at >= t => {
                    self.pending = None;
                    return Ok(Some(f));
                }
                (Some(_), _) => self.discarded += 1,
                (None, _) => return Ok(None),
            }
        }
    }

    fn describe(&self) -> String {
        format!("{} (triggered)", self.inner.describe())
    }
}

/// The frame source the configuration describes.
///
/// Errors: a replay folder without images, a bad fourcc, a trigger line that cannot be opened.
/// A V4L2 camera that is absent at start is not an error: it is retried every `reopen_ms`.
pub fn open_source(cfg: &DeviceConfig) -> anyhow::Result<Box<dyn FrameSource + Send>> {
    let c = &cfg.camera;
    let source: Box<dyn FrameSource + Send> = match c.source {
        CameraSource::Replay => {
            let dir = c.replay_dir.clone().context("camera.replay_dir is required for camera.source = \"replay\"")?;
            Box::new(ReplaySource::open(&dir, c.fps, c.replay_loop)?)
        }
        CameraSource::V4l2 => {
            let format: PixelFormat = c.fourcc.parse().map_err(|e: String| anyhow::anyhow!("camera.fourcc: {e}"))?;
            let request = CaptureRequest::new(c.width, c.height, format);
            let device = c.device.clone();
            let factory = move || V4l2Source::open(&device, &request);
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
            let edge = match cfg.trigger.edge {
                Edge::Rising => TriggerEdge::Rising,
                Edge::Falling => TriggerEdge::Falling,
                Edge::Both => TriggerEdge::Both,
            };
            let trigger = GpioTrigger::open(&spec, false, edge, Duration::from_millis(cfg.trigger.debounce_ms as u64))?;
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
    let model = AnomalyModel::load_with_threads(&cfg.model.path, cfg.model.threads as usize)?;
    // Frames and model of different colour (a grey camera on a colour-trained model rejects every
    // good part; issue 12, finding 6): said at start and again with the results.
    let replay_first = match (&cfg.camera.source, &cfg.camera.replay_dir) {
        (CameraSource::Replay, Some(dir)) => crate::preflight::first_replay_image(dir).ok(),
        _ => None,
    };
    let warnings: Vec<String> = crate::preflight::grey_camera_warning(cfg, &cfg.model.path, &model.metadata, replay_first.as_ref()).into_iter().collect();
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let source = open_source(cfg)?;
    let (mut reject, simulated_line) = open_reject(cfg, safe)?;
    tracing::info!("source: {}; model: {}; reject: {:?}", source.describe(), cfg.model.path.display(), cfg.reject.backend);
    let mut opts = LineOptions::new(&cfg.output.dir);
    opts.overlays = cfg.output.overlays;
    opts.max_saved_images = cfg.output.max_saved_images as usize;
    opts.reject_bad_frames = cfg.reject.reject_unreadable;
    opts.frame_timeout = Duration::from_millis(cfg.camera.timeout_ms as u64);
    opts.max_frames = max_frames;
    opts.events = cfg.logging.events;
    opts.events_rotation = crate::events::Rotation { max_bytes: u64::from(cfg.output.max_events_mib) << 20, keep: cfg.output.old_events_files as usize };
    opts.framebuffer = cfg.output.framebuffer.clone();
    let inspector = Inspector::new(model, cfg.model.threshold, cfg.roi.map(Roi::from)).with_context(|| format!("{}", cfg.model.path.display()))?;
    let summary = run_line(source, inspector, reject.as_mut(), &opts, shutdown)?;
    Ok(RunOutcome { summary, simulated_line, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames every 10 ms from t0, ids from 0.
    struct Clocked {
        next: u64,
        t0: Instant,
    }

    impl FrameSource for Clocked {
        fn next_frame(&mut self, _timeout: Duration) -> Result<Option<Frame>, CaptureError> {
            let due = self.t0 + Duration::from_millis(10 * self.next);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let f = Frame { id: self.next, width: 1, height: 1, rgb: vec![0, 0, 0], captured_at: Instant::now(), file: None };
            self.next += 1;
            Ok(Some(f))
        }
        fn describe(&self) -> String {
            "clocked".into()
        }
    }

    /// Fires at the given offsets from t0.
    struct Scripted {
        t0: Instant,
        at: std::collections::VecDeque<Duration>,
    }

    impl Trigger for Scripted {
        fn wait(&mut self, timeout: Duration) -> anyhow::Result<Option<Instant>> {
            let Some(&next) = self.at.front() else {
                std::thread::sleep(timeout);
                return Ok(None);
            };
            let due = self.t0 + next;
            if due > Instant::now() + timeout {
                std::thread::sleep(timeout);
                return Ok(None);
            }
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            self.at.pop_front();
            Ok(Some(due))
        }
    }

    #[test]
    fn each_trigger_selects_the_next_frame() {
        let t0 = Instant::now();
        let trigger = Scripted { t0, at: [35, 105].into_iter().map(Duration::from_millis).collect() };
        let mut s = TriggeredSource::new(Clocked { next: 0, t0 }, Box::new(trigger));
        let a = s.next_frame(Duration::from_secs(1)).unwrap().unwrap();
        let b = s.next_frame(Duration::from_secs(1)).unwrap().unwrap();
        // Frames come at 0, 10, 20, ... ms: the first at or after 35 ms is frame 4, after 105 ms frame 11.
        assert_eq!((a.id, b.id), (4, 11));
        assert!(s.discarded >= 6, "{}", s.discarded);
        assert!(s.next_frame(Duration::from_millis(20)).unwrap().is_none(), "no trigger, no frame");
    }

    #[test]
    fn config_errors_name_what_is_wrong() {
        let mut cfg = DeviceConfig::default();
        cfg.camera.source = CameraSource::Replay;
        let msg = open_source(&cfg).err().unwrap().to_string();
        assert!(msg.contains("camera.replay_dir"), "{msg}");
        cfg.camera.replay_dir = Some("/nonexistent/frames".into());
        let msg = open_source(&cfg).err().unwrap().to_string();
        assert!(msg.contains("/nonexistent/frames"), "{msg}");
        let mut cfg = DeviceConfig::default();
        cfg.reject.backend = RejectBackend::Gpio;
        cfg.reject.line = Some("GPIO17".into());
        let safe = SafeLines::install();
        let msg = open_reject(&cfg, &safe).err().unwrap().to_string();
        assert!(msg.contains("GPIO17"), "{msg}");
    }
}
