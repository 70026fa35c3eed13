//! `runtime run`: the line pipeline (DESIGN.md §6). Capture, inference and output run on their
//! own threads joined by bounded queues, so a slow stage never stalls the camera and memory
//! stays flat:
//!
//! ```text
//! capture thread --frames (bounded, try_send)--> inference thread --events/overlays--> output thread
//!   (FrameSource)      full queue => LATE              (model, decide,        (events.jsonl, PNGs,
//!                                                       reject request)         framebuffer)
//! ```
//!
//! Every frame the source delivers is accounted exactly once: inspected (OK / REJECT), LATE
//! (dropped because inference was busy: the queue was full) or BAD (the source could not decode
//! it). The reject pulse is scheduled from the frame's capture time, so the ejector fires at the
//! configured distance whatever the inference latency.

pub mod drift;
pub mod health;
mod inference;
pub mod setup;
pub mod state;
pub mod stats;
pub mod swap;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use firmware_config::OverlayMode;
use image::RgbImage;
use serde::Serialize;

use crate::capture::{CaptureError, Frame, FrameSource};
use crate::decide::Verdict;
use crate::events::{now_unix_ms, EventLog, InspectionEvent, Rotation};
use crate::inspector::{FrameOutcome, Inspector};
use crate::output::{OutputErrors, OverlayStore};
use crate::reject::RejectOutput;
use stats::{LatencyStats, LatencySummary};
use health::{HealthCounts, HealthOptions, HealthThread, Heartbeat};
use swap::{LineControl, ModelChange};

/// How the line runs.
#[derive(Debug, Clone)]
pub struct LineOptions {
    /// Output folder: `events.jsonl`, `summary.json`, `overlays/`.
    pub out_dir: PathBuf,
    pub overlays: OverlayMode,
    /// Overlay PNGs kept in `out_dir/overlays` before the oldest are deleted, counted across
    /// restarts (overlays of earlier runs count).
    pub max_saved_images: usize,
    /// Pulse the reject line for frames the source could not decode (fail-safe).
    pub reject_bad_frames: bool,
    /// Frames waiting for inference; a frame arriving when the queue is full is LATE.
    pub queue_frames: usize,
    /// Inference workers, each with its own inspector judging frames in parallel; verdicts,
    /// pulses and events stay in frame order (`[model].workers`, default 1).
    pub workers: usize,
    /// Longest wait for one frame from the source.
    pub frame_timeout: Duration,
    /// Stop after this many frames from the source (None: until the source ends or shutdown).
    pub max_frames: Option<u64>,
    /// Write `events.jsonl`.
    pub events: bool,
    /// Size cap of `events.jsonl` and old files kept (`events.1.jsonl` ..), across restarts
    /// ([`crate::events::Rotation`]).
    pub events_rotation: Rotation,
    /// Linux framebuffer device that shows the latest overlay.
    pub framebuffer: Option<PathBuf>,
    /// How often the totals in `out_dir/state.json` are saved while the run goes on.
    pub state_every: Duration,
    /// Frames saved for review and retraining ([`SaveFrames`]).
    pub save_frames: SaveFrames,
    /// The web view's live state ([`crate::web`]), fed by the output thread; `None`: no web view.
    pub web: Option<Arc<crate::web::LiveView>>,
    /// Drift watch over (window, k) ([`drift`]); `None`: off.
    pub drift: Option<(usize, f64)>,
    /// MQTT publisher of every event and alarm ([`crate::mqtt`]), fed by the output thread.
    pub mqtt: Option<Arc<crate::mqtt::MqttPublisher>>,
}

/// Which inspected frames the line saves as they were judged (the ROI crop at full resolution,
/// lossless PNG, no overlay): every REJECT frame for review, and a sample of OK frames as new
/// good training images. They go to `out_dir/frames/reject/` and `out_dir/frames/ok/`, named like
/// overlays (`run<R>_frame_<F>[_<file stem>].png`, so a frame's event is found by its id), at most
/// `max` in each folder across restarts, the oldest deleted first. Saving never delays inspection:
/// frames the output thread cannot take at once are counted in
/// [`LineCounters::frames_not_saved`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SaveFrames {
    pub rejects: bool,
    /// Every this-many-th OK frame (1 = all, 0 = none).
    pub ok_every: u64,
    pub max: usize,
}

impl SaveFrames {
    /// Whether a frame judged `verdict` may be saved (which OK frames are is decided in frame
    /// order by [`SaveFrames::folder`]).
    pub fn may_save(&self, verdict: Verdict) -> bool {
        match verdict {
            Verdict::Reject => self.rejects,
            Verdict::Ok => self.ok_every > 0,
            _ => false,
        }
    }

    /// Whether the frame that got `verdict` (the `ok_count`-th OK frame so far when OK) is saved,
    /// and into which sub-folder of `frames/`.
    pub fn folder(&self, verdict: Verdict, ok_count: u64) -> Option<&'static str> {
        match verdict {
            Verdict::Reject if self.rejects => Some("reject"),
            Verdict::Ok if self.ok_every > 0 && ok_count % self.ok_every == 0 => Some("ok"),
            _ => None,
        }
    }
}

impl LineOptions {
    /// Options with the defaults of `firmware-config` and output in `out_dir`.
    pub fn new(out_dir: &Path) -> Self {
        Self {
            out_dir: out_dir.into(),
            overlays: OverlayMode::Rejects,
            max_saved_images: 1000,
            reject_bad_frames: true,
            queue_frames: 1,
            workers: 1,
            frame_timeout: Duration::from_millis(1000),
            max_frames: None,
            events: true,
            events_rotation: Rotation {
                max_bytes: u64::from(firmware_config::DEFAULT_MAX_EVENTS_MIB) << 20,
                keep: firmware_config::DEFAULT_OLD_EVENTS_FILES as usize,
            },
            framebuffer: None,
            state_every: Duration::from_secs(10),
            save_frames: SaveFrames { rejects: false, ok_every: 0, max: 1000 },
            web: None,
            drift: Some((200, 4.0)),
            mqtt: None,
        }
    }
}

/// Frame counters of a run. `frames = inspected + late + bad` always holds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LineCounters {
    /// Frames delivered by the source (good or bad).
    pub frames: u64,
    pub inspected: u64,
    pub ok: u64,
    pub rejected: u64,
    /// Dropped because inference was still busy with earlier frames.
    pub late: u64,
    /// The source delivered a frame it could not decode.
    pub bad: u64,
    /// Waits for a frame that ended without one.
    pub timeouts: u64,
    /// Source errors after which it had to be reopened (counted by the caller's source wrapper
    /// when it recovers; here: errors that reached the pipeline).
    pub source_errors: u64,
    /// Reject requests the output refused (logged; the line keeps running).
    pub reject_errors: u64,
    /// Inference failures (counted as inspected with verdict REJECT, fail-safe).
    pub infer_errors: u64,
    /// Overlays not saved because the output thread was behind.
    pub overlays_dropped: u64,
    /// Frames to be saved ([`SaveFrames`]) that were not: the output thread was behind, or the
    /// write failed (that is also an output write error).
    #[serde(default)]
    pub frames_not_saved: u64,
    /// Reject pulses requested but never driven: the decision came after the part had passed the
    /// ejector (raise `reject.delay_ms` above the capture -> decision p95) or the line write
    /// failed. These parts were REJECT but not ejected.
    pub pulses_missed: u64,
    /// Output writes that failed (event lines, overlays, the summary; e.g. a full disk): counted,
    /// logged at most once a minute; inspection and the reject line go on.
    pub output_write_errors: u64,
    /// Live model swaps done ([`swap`]).
    #[serde(default)]
    pub model_swaps: u64,
    /// Candidate models refused by their checks (the running model went on).
    #[serde(default)]
    pub swaps_refused: u64,
    /// Rollbacks to the model before the last swap.
    #[serde(default)]
    pub rollbacks: u64,
    /// Drift alarms raised ([`drift`]; each is a line of `alarms.jsonl`).
    #[serde(default)]
    pub drift_alarms: u64,
}

/// Per-stage latency of a run, ms.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LineLatency {
    /// Capture to the start of inference (time in the queue).
    pub queue: LatencySummary,
    pub preprocess: LatencySummary,
    pub infer: LatencySummary,
    /// Capture to the reject decision.
    pub capture_to_decision: LatencySummary,
    pub overlay: LatencySummary,
}

/// What a run did; also written to `<out_dir>/summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct LineSummary {
    pub source: String,
    /// `[model].path`.
    pub model: PathBuf,
    /// The model judging frames when the run ended ([`crate::infer::ModelId::label`]); earlier
    /// ones are in `models.jsonl`.
    pub model_id: String,
    /// The threshold at start (after a swap, each event gives the one it was judged by).
    pub threshold: f32,
    pub counters: LineCounters,
    /// Ready line and systemd watchdog ([`health`]).
    pub health: HealthCounts,
    /// MQTT publishing ([`crate::mqtt`]), when on.
    pub mqtt: Option<crate::mqtt::MqttCounts>,
    pub latency: LineLatency,
    pub wall_s: f64,
    /// Why the run ended: `source ended`, `shutdown requested`, `frame limit`, or the error;
    /// [`RUNNING`] while the run has not ended.
    pub stopped_because: String,
    /// Start of the run, ms since the Unix epoch (also the run id in overlay names).
    pub started_unix_ms: u128,
    /// False in the `summary.json` written when the run starts; true once the run ended and the
    /// reject line was released. A `summary.json` left with `false` belongs to a run that was
    /// killed (SIGKILL, a second SIGINT/SIGTERM) or lost power: its counters are not those of
    /// the run that was killed (they are zero) and the previous run's are gone.
    pub clean_exit: bool,
    /// Totals of every run in this output folder, this one included (`state.json`): a restart
    /// or a power cut does not reset them.
    pub totals: state::LineTotals,
}

/// [`LineSummary::stopped_because`] while the run is going on (and after it was killed).
pub const RUNNING: &str = "running: the run has not ended (when no runtime is running, it was killed or lost power)";

/// Writes `summary` to `path` atomically and durably; a failure is counted in `errors`.
fn write_summary(path: &Path, summary: &LineSummary, errors: &mut OutputErrors) {
    let result = serde_json::to_string_pretty(summary).map_err(std::io::Error::other).and_then(|json| crate::output::write_atomic(path, json.as_bytes(), true));
    if let Err(e) = result {
        errors.record(&e);
    }
}

/// Work for the inference stage; `seq` numbers the jobs in capture order (0, 1, 2, ...), the order
/// in which they are accounted whatever worker judged them.
enum Job {
    Frame { seq: u64, frame: Frame },
    /// A frame the source could not decode: accounted and (fail-safe) rejected in order.
    Bad { seq: u64, frame_id: u64, name: String, reason: String, seen: Instant },
}

/// Work for the output thread.
enum Output {
    Event(Box<InspectionEvent>),
    /// An overlay to write as `name` (relative to the output folder; [`crate::output::overlay_name`]).
    Overlay { frame_id: u64, name: String, image: RgbImage },
    /// A frame drawn with its overlay for the web view only (live frame, gallery), not written.
    View { frame_id: u64, image: RgbImage },
    /// A judged frame to keep ([`SaveFrames`]) as `frames/<folder>/<name>`.
    Frame { folder: &'static str, name: String, image: RgbImage },
    /// A line of `models.jsonl`.
    ModelChange(Box<ModelChange>),
    /// A line of `alarms.jsonl`.
    Alarm(drift::DriftAlarm),
}

/// Runs the line until the source ends, `shutdown` is set, or `opts.max_frames` frames came.
/// `reject` receives one request per rejected frame with the frame's capture time.
///
/// Never fails because of the output folder: when events, overlays or the summary cannot be
/// written (full disk, I/O error, no such folder) the failures are counted in
/// [`LineCounters::output_write_errors`] and logged at most once a minute, and inspection and the
/// reject pulses go on. Source, inference and reject errors are counted and logged, never fatal.
/// Errors only when a pipeline thread cannot be started.
pub fn run_line(source: Box<dyn FrameSource + Send>, inspector: Inspector, reject: &mut dyn RejectOutput, opts: &LineOptions, shutdown: Arc<AtomicBool>) -> anyhow::Result<LineSummary> {
    run_line_with(source, inspector, reject, opts, shutdown, LineHooks::default())
}

/// What [`run_line_with`] adds to [`run_line`].
#[derive(Default)]
pub struct LineHooks {
    /// Model swaps and rollbacks ([`swap`]), applied between two frames; every change is a line
    /// of `<out_dir>/models.jsonl`.
    pub controls: Option<Receiver<LineControl>>,
    /// Ready line and systemd watchdog ([`health`]).
    pub health: Option<HealthOptions>,
}

/// [`run_line`] with model swaps, a ready line and the systemd watchdog ([`LineHooks`]).
///
/// # Errors
/// As [`run_line`].
pub fn run_line_with(
    mut source: Box<dyn FrameSource + Send>,
    inspector: Inspector,
    reject: &mut dyn RejectOutput,
    opts: &LineOptions,
    shutdown: Arc<AtomicBool>,
    hooks: LineHooks,
) -> anyhow::Result<LineSummary> {
    let LineHooks { controls, health } = hooks;
    let overlay_dir = opts.out_dir.join("overlays");
    let mut errors = OutputErrors::new();
    if let Err(e) = std::fs::create_dir_all(&overlay_dir) {
        errors.record(&format_args!("cannot create output folder {}: {e}", overlay_dir.display()));
    }
    let events_path = opts.out_dir.join("events.jsonl");
    let mut events = EventSink::new(events_path, opts.events, opts.events_rotation, &mut errors);
    // Overlay names carry the run's start time: a restarted line does not overwrite the last run's.
    let run_id = now_unix_ms();
    let threshold = inspector.threshold();
    let source_name = source.describe();
    let started = Instant::now();
    // Marks the run as not ended until it ends: after a kill, summary.json does not show the
    // previous run's counters as this one's.
    let summary_path = opts.out_dir.join("summary.json");
    let mut summary = LineSummary {
        source: source_name.clone(),
        model: inspector.model().path().to_path_buf(),
        model_id: inspector.model().id().to_string(),
        threshold,
        counters: LineCounters::default(),
        latency: LineLatency::default(),
        wall_s: 0.0,
        stopped_because: RUNNING.into(),
        started_unix_ms: run_id,
        clean_exit: false,
        totals: state::LineTotals::default(),
        health: HealthCounts::default(),
        mqtt: None,
    };
    let state_path = opts.out_dir.join("state.json");
    let mut base = state::LineTotals::load(&state_path);
    base.runs += 1;
    summary.totals = base.clone();
    let errors_before = errors.count();
    write_summary(&summary_path, &summary, &mut errors);
    if errors.count() > errors_before {
        // A stale summary must not pass for this run's: better none (removing needs no space).
        let _ = std::fs::remove_file(&summary_path);
    }

    let (frame_tx, frame_rx) = mpsc::sync_channel::<Job>(opts.queue_frames.max(1));
    let (out_tx, out_rx) = mpsc::sync_channel::<Output>(64);

    // Capture: never blocks on inference; a full queue makes the frame LATE.
    let capture_opts = opts.clone();
    let capture_shutdown = shutdown.clone();
    let late_tx = out_tx.clone();
    let beat = Arc::new(Heartbeat::default());
    let capture_beat = Arc::clone(&beat);
    let capture = std::thread::Builder::new().name("capture".into()).spawn(move || {
        capture_loop(&mut *source, &frame_tx, &late_tx, &capture_opts, &capture_shutdown, threshold, &capture_beat)
    })?;
    let health = health.map(|h| HealthThread::spawn(h, Arc::clone(&beat))).transpose()?;

    // Output: events in order, overlays bounded on disk, the totals saved now and then.
    let live = LiveTotals { path: state_path.clone(), totals: base.clone(), every: opts.state_every };
    let out_opts = opts.clone();
    let output = std::thread::Builder::new().name("output".into()).spawn(move || {
        let failed = output_loop(out_rx, &mut events, &mut errors, &out_opts, live);
        (failed, errors)
    })?;

    let mut counters = LineCounters::default();
    let mut latency = LatencyAccumulators::default();
    let start = ModelChange {
        time_unix_ms: now_unix_ms(),
        action: "start".into(),
        model: inspector.model().id().to_string(),
        previous: None,
        sha256: inspector.model().id().sha256.clone(),
        threshold: inspector.threshold(),
        calibration: serde_json::to_value(&inspector.model().metadata.threshold_calibration).unwrap_or_default(),
        after_frame: None,
        check_ms: None,
        switch_ms: None,
        reason: None,
        requests: Vec::new(),
    };
    let _ = out_tx.send(Output::ModelChange(Box::new(start)));
    let mut models = inference::Models::new(&inspector, controls);
    inference::inference_loop(frame_rx, &out_tx, inspector, &mut models, reject, opts, run_id, &mut counters, &mut latency, &beat);
    beat.set_stopping();
    summary.model_id = models.current().to_string();
    drop(out_tx);

    // Whatever happened to the other threads, the pulses still due are driven and the line is
    // released below before anything is reported.
    let (capture_counts, stopped_because) = capture.join().unwrap_or_else(|_| {
        tracing::error!("the capture thread panicked");
        (CaptureCounts::default(), "the capture thread panicked".to_string())
    });
    let ((overlays_failed, frames_failed), mut errors) = output.join().unwrap_or_else(|_| {
        tracing::error!("the output thread panicked");
        ((0, 0), OutputErrors::new())
    });
    counters.frames = capture_counts.frames;
    counters.late = capture_counts.late;
    counters.timeouts = capture_counts.timeouts;
    counters.source_errors = capture_counts.source_errors;
    counters.overlays_dropped += overlays_failed;
    counters.frames_not_saved += frames_failed;
    // Parts between camera and ejector still get their pulse, in full, before the line is
    // released (the rule in crate::reject::schedule); what release cuts is counted as missed.
    let waiting = reject.drain(reject.drain_limit());
    if waiting > 0 {
        tracing::warn!("{waiting} reject pulses still waiting at shutdown were dropped");
    }
    if let Err(e) = reject.release() {
        tracing::error!("cannot put the reject line in its safe level: {e:#}");
    }
    counters.pulses_missed = reject.missed_pulses();
    if let Some(h) = health {
        summary.health = h.stop();
    }
    counters.output_write_errors = errors.count();
    summary.counters = counters;
    summary.latency = latency.summary();
    summary.wall_s = started.elapsed().as_secs_f64();
    summary.stopped_because = stopped_because;
    summary.clean_exit = true;
    summary.totals = base.plus_run(&summary.counters);
    if let Err(e) = summary.totals.save(&state_path) {
        errors.record(&e);
    }
    summary.counters.output_write_errors = errors.count();
    summary.totals = base.plus_run(&summary.counters);
    write_summary(&summary_path, &summary, &mut errors);
    summary.counters.output_write_errors = errors.count();
    Ok(summary)
}

#[derive(Default)]
struct CaptureCounts {
    frames: u64,
    late: u64,
    timeouts: u64,
    source_errors: u64,
}

fn capture_loop(
    source: &mut dyn FrameSource,
    frames: &SyncSender<Job>,
    out: &SyncSender<Output>,
    opts: &LineOptions,
    shutdown: &AtomicBool,
    threshold: f32,
    beat: &Heartbeat,
) -> (CaptureCounts, String) {
    let mut c = CaptureCounts::default();
    let mut seq = 0u64;
    let why = loop {
        if shutdown.load(Ordering::Relaxed) {
            break "shutdown requested".to_string();
        }
        if opts.max_frames.is_some_and(|m| c.frames >= m) {
            break "frame limit".to_string();
        }
        let next = source.next_frame(opts.frame_timeout);
        beat.capture_returned(matches!(&next, Err(e) if !matches!(e, CaptureError::BadFrame { .. })));
        match next {
            Ok(Some(frame)) => {
                c.frames += 1;
                let (id, name) = (frame.id, frame.name());
                match frames.try_send(Job::Frame { seq, frame }) {
                    Ok(()) => seq += 1,
                    Err(TrySendError::Full(_)) => {
                        c.late += 1;
                        let ev = FrameOutcome { verdict: Verdict::Late, ..FrameOutcome::bad("inference busy: the frame queue was full".into(), threshold) }.event(id, name, None);
                        if out.send(Output::Event(Box::new(ev))).is_err() {
                            break "output stopped".to_string();
                        }
                    }
                    Err(TrySendError::Disconnected(_)) => break "inference stopped".to_string(),
                }
            }
            Ok(None) => c.timeouts += 1,
            Err(CaptureError::BadFrame { frame_id, reason, file, .. }) => {
                c.frames += 1;
                // Blocking send: a bad frame must be accounted (and maybe rejected) in order.
                let name = crate::capture::frame_name(frame_id, file.as_deref());
                if frames.send(Job::Bad { seq, frame_id, name, reason, seen: Instant::now() }).is_err() {
                    break "inference stopped".to_string();
                }
                seq += 1;
            }
            Err(CaptureError::EndOfStream { .. }) => break "source ended".to_string(),
            Err(e) => {
                c.source_errors += 1;
                tracing::error!("frame source: {e}");
                if e.needs_reopen() {
                    break format!("source failed: {e}");
                }
            }
        }
    };
    (c, why)
}

#[derive(Default)]
struct LatencyAccumulators {
    queue: LatencyStats,
    preprocess: LatencyStats,
    infer: LatencyStats,
    decision: LatencyStats,
    overlay: LatencyStats,
}

impl LatencyAccumulators {
    fn summary(&self) -> LineLatency {
        LineLatency {
            queue: self.queue.summary(),
            preprocess: self.preprocess.summary(),
            infer: self.infer.summary(),
            capture_to_decision: self.decision.summary(),
            overlay: self.overlay.summary(),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}


/// `events.jsonl` of the line: opened (with a torn last line repaired) at start and, when that
/// failed, again at most every [`EventSink::REOPEN_EVERY`]; every event that could not be written
/// is counted in the output errors. Capped by size with `rotation`, at start and while running.
struct EventSink {
    path: PathBuf,
    enabled: bool,
    rotation: Rotation,
    log: Option<EventLog>,
    retry_at: Instant,
}

impl EventSink {
    const REOPEN_EVERY: Duration = Duration::from_secs(5);

    fn new(path: PathBuf, enabled: bool, rotation: Rotation, errors: &mut OutputErrors) -> Self {
        let mut s = Self { path, enabled, rotation, log: None, retry_at: Instant::now() };
        if enabled {
            s.open(errors);
        }
        s
    }

    fn open(&mut self, errors: &mut OutputErrors) {
        match EventLog::append(&self.path) {
            Ok(l) => {
                let (l, err) = l.with_rotation(self.rotation);
                if let Some(e) = err {
                    errors.record(&format_args!("{e:#}"));
                }
                self.log = Some(l);
            }
            Err(e) => {
                errors.record(&format_args!("{e:#}"));
                self.retry_at = Instant::now() + Self::REOPEN_EVERY;
            }
        }
    }

    fn write(&mut self, ev: &InspectionEvent, errors: &mut OutputErrors) {
        if !self.enabled {
            return;
        }
        if self.log.is_none() {
            if Instant::now() < self.retry_at {
                errors.record(&format_args!("event of frame {} not written: event log {} is not open", ev.frame_id, self.path.display()));
                return;
            }
            self.open(errors);
        }
        if let Some(log) = self.log.as_mut() {
            if let Err(e) = log.write(ev) {
                errors.record(&format_args!("{e:#}"));
            }
        }
    }
}

/// The totals the output thread keeps from the events it writes and saves every `every`.
struct LiveTotals {
    path: PathBuf,
    totals: state::LineTotals,
    every: Duration,
}

impl LiveTotals {
    fn save(&mut self, base_errors: u64, errors: &mut OutputErrors) {
        self.totals.output_write_errors = base_errors + errors.count();
        if let Err(e) = self.totals.save(&self.path) {
            errors.record(&e);
        }
    }
}

/// Writes events in arrival order, overlay PNGs and saved frames, keeping at most
/// `max_saved_images` overlays and `save_frames.max` frames per folder, those of earlier runs
/// included ([`OverlayStore`]). Never stops on a write error (counted in `errors`); returns the
/// overlays and the frames it could not write.
fn output_loop(rx: Receiver<Output>, events: &mut EventSink, errors: &mut OutputErrors, opts: &LineOptions, mut live: LiveTotals) -> (u64, u64) {
    // Saved at once: the run counts as started even if it is killed before the first event.
    let base_errors = live.totals.output_write_errors;
    live.save(base_errors, errors);
    let mut saved_at = Instant::now();
    let mut saved = OverlayStore::open(&opts.out_dir.join("overlays"), opts.max_saved_images);
    let frames_dir = opts.out_dir.join("frames");
    let mut kept_frames: Vec<(&'static str, OverlayStore)> = Vec::new();
    let mut failed = 0u64;
    let mut failed_frames = 0u64;
    // The overlay of a frame comes just before its event: an event names only a written overlay.
    let mut last_failed: Option<u64> = None;
    // The overlay of a frame for the web view, until its event (which comes next) arrives.
    let mut pending_view: Option<(u64, RgbImage)> = None;
    for msg in rx.iter() {
        match msg {
            Output::Event(mut ev) => {
                if ev.overlay.is_some() && last_failed == Some(ev.frame_id) {
                    ev.overlay = None;
                }
                events.write(&ev, errors);
                if let Some(web) = &opts.web {
                    let view = pending_view.take().filter(|(id, _)| *id == ev.frame_id);
                    web.record_event(&ev, view.as_ref().map(|(_, img)| img));
                }
                if let Some(mqtt) = &opts.mqtt {
                    mqtt.publish_event(&ev);
                }
                live.totals.count_event(ev.verdict);
                if saved_at.elapsed() >= live.every {
                    saved_at = Instant::now();
                    live.save(base_errors, errors);
                }
            }
            Output::Overlay { frame_id, name, image } => {
                let path = opts.out_dir.join(name);
                if let Err(e) = crate::output::write_png_atomic(&path, &image) {
                    failed += 1;
                    last_failed = Some(frame_id);
                    errors.record(&format_args!("{e:#}"));
                    continue;
                }
                if let Some(fb) = &opts.framebuffer {
                    if let Err(e) = crate::framebuffer::show(fb, &image) {
                        tracing::warn!("framebuffer {}: {e:#}", fb.display());
                    }
                }
                saved.add(path);
                if opts.web.is_some() {
                    pending_view = Some((frame_id, image));
                }
            }
            Output::View { frame_id, image } => pending_view = Some((frame_id, image)),
            Output::ModelChange(change) => {
                if let (Some(web), "start" | "swap" | "rollback" | "threshold") = (&opts.web, change.action.as_str()) {
                    web.set_model(crate::web::ModelView { model: change.model.clone(), sha256: change.sha256.clone(), threshold: change.threshold, calibration: change.calibration.clone() });
                }
                let line = serde_json::to_string(&change).map_err(std::io::Error::other);
                if let (Some(mqtt), Ok(json)) = (&opts.mqtt, &line) {
                    mqtt.publish("model", json.clone().into_bytes());
                }
                let written = line.map(|l| l + "\n").and_then(|l| {
                    use std::io::Write;
                    std::fs::OpenOptions::new().create(true).append(true).open(opts.out_dir.join("models.jsonl"))?.write_all(l.as_bytes())
                });
                if let Err(e) = written {
                    errors.record(&format_args!("models.jsonl: {e}"));
                }
            }
            Output::Alarm(alarm) => {
                if let Some(web) = &opts.web {
                    web.set_drift(&alarm);
                }
                if let (Some(mqtt), Ok(json)) = (&opts.mqtt, serde_json::to_string(&alarm)) {
                    mqtt.publish("alarm", json.into_bytes());
                }
                let line = serde_json::to_string(&alarm).map_err(std::io::Error::other).map(|l| l + "\n");
                let written = line.and_then(|l| {
                    use std::io::Write;
                    std::fs::OpenOptions::new().create(true).append(true).open(opts.out_dir.join("alarms.jsonl"))?.write_all(l.as_bytes())
                });
                if let Err(e) = written {
                    errors.record(&format_args!("alarms.jsonl: {e}"));
                }
            }
            Output::Frame { folder, name, image } => {
                let dir = frames_dir.join(folder);
                let store = match kept_frames.iter().position(|(f, _)| *f == folder) {
                    Some(i) => &mut kept_frames[i].1,
                    None => {
                        if let Err(e) = std::fs::create_dir_all(&dir) {
                            errors.record(&format_args!("cannot create {}: {e}", dir.display()));
                        }
                        kept_frames.push((folder, OverlayStore::open(&dir, opts.save_frames.max)));
                        &mut kept_frames.last_mut().expect("just pushed").1
                    }
                };
                let path = dir.join(name);
                match crate::output::write_png_atomic(&path, &image) {
                    Ok(()) => store.add(path),
                    Err(e) => {
                        failed_frames += 1;
                        errors.record(&format_args!("{e:#}"));
                    }
                }
            }
        }
    }
    (failed, failed_frames)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::Roi;

    fn frame(w: u32, h: u32) -> Frame {
        Frame { id: 3, width: w, height: h, rgb: vec![0; 3 * (w * h) as usize], captured_at: Instant::now(), file: None }
    }

    /// Frames of a uniform grey level each, `period` apart, then the end of the stream.
    pub(crate) struct Levels {
        pub levels: std::collections::VecDeque<u8>,
        pub next: u64,
        pub period: Duration,
        pub t0: Option<Instant>,
    }

    impl Levels {
        pub fn new(levels: impl IntoIterator<Item = u8>, period: Duration) -> Self {
            Self { levels: levels.into_iter().collect(), next: 0, period, t0: None }
        }
    }

    impl FrameSource for Levels {
        fn next_frame(&mut self, _timeout: Duration) -> Result<Option<Frame>, CaptureError> {
            let Some(v) = self.levels.pop_front() else { return Err(CaptureError::EndOfStream { device: "levels".into() }) };
            let t0 = *self.t0.get_or_insert_with(Instant::now);
            std::thread::sleep((t0 + self.period * self.next as u32).saturating_duration_since(Instant::now()));
            let f = Frame { id: self.next, width: 32, height: 16, rgb: vec![v; 3 * 32 * 16], captured_at: Instant::now(), file: None };
            self.next += 1;
            Ok(Some(f))
        }
        fn describe(&self) -> String {
            "levels".into()
        }
    }

    /// An inspector over the brightness model (32x16 px, threshold 0.5: a frame brighter than 127
    /// is REJECT), whole frame.
    pub(crate) fn brightness_inspector(dir: &Path) -> Inspector {
        let p = dir.join("brightness.onnx");
        crate::synthetic::write_brightness_model(&p, 32, 16, 0.5).unwrap();
        Inspector::new(crate::infer::AnomalyModel::load(&p).unwrap(), None, None).unwrap()
    }

    #[test]
    fn a_full_disk_never_stops_the_line_or_its_pulses() {
        let work = tempfile::tempdir().unwrap();
        let out = work.path().join("out");
        std::fs::create_dir(&out).unwrap();
        // Every event write fails with ENOSPC; the overlay folder cannot even be created.
        std::os::unix::fs::symlink("/dev/full", out.join("events.jsonl")).unwrap();
        std::fs::write(out.join("overlays"), b"a file where the folder should be").unwrap();
        let levels: Vec<u8> = (0..20).map(|i| if i % 2 == 0 { 250 } else { 10 }).collect();
        let line = crate::reject::SimulatedLine::new();
        // A 500 ms delay: this test is about the full disk, not about decision latency (under
        // qemu in CI's ARM check, 30 ms was too short and pulses were rightly counted missed).
        let mut reject = crate::reject::ScheduledReject::new("t", line.clone(), Duration::from_millis(500), Duration::from_millis(5)).unwrap();
        let mut opts = LineOptions::new(&out);
        opts.queue_frames = 64;
        opts.overlays = OverlayMode::Rejects;
        let s = run_line(Box::new(Levels::new(levels, Duration::from_millis(20))), brightness_inspector(work.path()), &mut reject, &opts, Arc::new(AtomicBool::new(false))).unwrap();
        let c = &s.counters;
        assert_eq!((c.frames, c.inspected, c.rejected, c.ok, c.late, c.bad), (20, 20, 10, 10, 0, 0), "{c:?}");
        // 1 folder + 20 events + 10 overlays.
        assert_eq!(c.output_write_errors, 31, "{c:?}");
        assert_eq!(c.pulses_missed, 0, "{c:?}");
        assert_eq!(line.active_periods().len(), 10, "every REJECT got its pulse: {:?}", line.active_periods());
        assert!(!line.is_active(), "line left active");
        let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["counters"]["output_write_errors"], 31);
        assert_eq!(s.stopped_because, "source ended");
    }

    #[test]
    fn replay_events_name_the_file_good_or_bad() {
        let work = tempfile::tempdir().unwrap();
        let frames = work.path().join("frames");
        std::fs::create_dir(&frames).unwrap();
        image::RgbImage::from_pixel(32, 16, image::Rgb([10, 10, 10])).save(frames.join("a.png")).unwrap();
        image::RgbImage::from_pixel(32, 16, image::Rgb([250, 250, 250])).save(frames.join("b.png")).unwrap();
        image::RgbImage::new(1, 1).save(frames.join("c.png")).unwrap();
        std::fs::write(frames.join("d.png"), crate::preprocess::tests::png_header(20000, 20)).unwrap();
        let out = work.path().join("out");
        let mut opts = LineOptions::new(&out);
        opts.overlays = OverlayMode::None;
        opts.queue_frames = 64;
        let line = crate::reject::SimulatedLine::new();
        let mut reject = crate::reject::ScheduledReject::new("t", line, Duration::from_millis(1), Duration::from_millis(1)).unwrap();
        let source = crate::capture::ReplaySource::open(&frames, 1000.0, false, crate::bit_depth::BitDepth::FULL).unwrap();
        let s = run_line(Box::new(source), brightness_inspector(work.path()), &mut reject, &opts, Arc::new(AtomicBool::new(false))).unwrap();
        assert_eq!((s.counters.inspected, s.counters.bad), (2, 2), "{:?}", s.counters);
        let text = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
        let evs: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let got: Vec<(String, String)> = evs.iter().map(|e| (e["source"].as_str().unwrap().to_string(), e["verdict"].as_str().unwrap().to_string())).collect();
        let f = |n: &str| frames.join(n).display().to_string();
        assert_eq!(got, [(f("a.png"), "OK".into()), (f("b.png"), "REJECT".into()), (f("c.png"), "BAD".into()), (f("d.png"), "BAD".into())]);
        let err = |i: usize| evs[i]["error"].as_str().unwrap().to_string();
        assert!(err(2).contains("c.png") && err(2).contains("1x1 px"), "{}", err(2));
        assert!(err(3).contains("d.png") && err(3).contains("20000x20 px"), "{}", err(3));
    }

    #[test]
    fn the_event_log_is_capped_by_size_across_restarts() {
        let work = tempfile::tempdir().unwrap();
        let out = work.path().join("out");
        let mut opts = LineOptions::new(&out);
        opts.overlays = OverlayMode::None;
        opts.queue_frames = 64;
        opts.events_rotation = Rotation { max_bytes: 3000, keep: 2 };
        let events = out.join("events.jsonl");
        let files = [crate::events::rotated_path(&events, 2), crate::events::rotated_path(&events, 1), events.clone()];
        let read_ids = || -> Vec<u64> {
            let mut ids = Vec::new();
            for f in &files {
                let text = std::fs::read_to_string(f).unwrap_or_default();
                assert!(text.is_empty() || text.ends_with('\n'), "{} ends with a whole line", f.display());
                assert!(text.len() as u64 <= 3000, "{} has {} bytes, over the cap", f.display(), text.len());
                ids.extend(text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["frame_id"].as_u64().unwrap()));
            }
            ids
        };
        for run in 0..3 {
            let line = crate::reject::SimulatedLine::new();
            let mut reject = crate::reject::ScheduledReject::new("t", line, Duration::from_millis(1), Duration::from_millis(1)).unwrap();
            let s = run_line(Box::new(Levels::new(vec![10u8; 20], Duration::from_millis(2))), brightness_inspector(work.path()), &mut reject, &opts, Arc::new(AtomicBool::new(false))).unwrap();
            assert_eq!((s.counters.inspected, s.counters.output_write_errors), (20, 0), "run {run}: {:?}", s.counters);
            assert!(!crate::events::rotated_path(&events, 3).exists(), "run {run}: only 2 old files kept");
            // The newest events, oldest file first, end with this run's frames 0..=19, none torn.
            let ids = read_ids();
            assert!(ids.len() < 60 && ids.len() >= 20, "run {run}: {} events kept", ids.len());
            assert_eq!(ids[ids.len() - 20..], (0..20).collect::<Vec<_>>()[..], "run {run}");
        }
    }

    #[test]
    fn the_overlay_cap_holds_across_restarts() {
        let work = tempfile::tempdir().unwrap();
        let out = work.path().join("out");
        let mut opts = LineOptions::new(&out);
        opts.queue_frames = 64;
        opts.max_saved_images = 3;
        opts.overlays = OverlayMode::Rejects;
        let mut run_ids = Vec::new();
        for run in 0..3 {
            let line = crate::reject::SimulatedLine::new();
            let mut reject = crate::reject::ScheduledReject::new("t", line, Duration::ZERO, Duration::from_millis(1)).unwrap();
            let s = run_line(Box::new(Levels::new([250; 5], Duration::from_millis(5))), brightness_inspector(work.path()), &mut reject, &opts, Arc::new(AtomicBool::new(false))).unwrap();
            assert_eq!((s.counters.rejected, s.counters.output_write_errors), (5, 0), "run {run}: {:?}", s.counters);
            let mut names: Vec<String> = std::fs::read_dir(out.join("overlays")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
            names.sort();
            assert_eq!(names.len(), 3, "run {run}: {names:?}");
            // The newest three: the last frames of this run.
            let run_id = crate::output::parse_overlay_name(&names[0]).unwrap().0;
            assert!(names.iter().all(|n| crate::output::parse_overlay_name(n).unwrap().0 == run_id), "{names:?}");
            assert_eq!(names.iter().map(|n| crate::output::parse_overlay_name(n).unwrap().1).collect::<Vec<_>>(), [2, 3, 4]);
            run_ids.push(run_id);
            std::thread::sleep(Duration::from_millis(2)); // run ids are start times in ms
        }
        assert!(run_ids.windows(2).all(|w| w[0] < w[1]), "{run_ids:?}");
    }

    #[test]
    fn reject_frames_and_a_sample_of_ok_frames_are_kept_as_roi_crops_capped() {
        let work = tempfile::tempdir().unwrap();
        let out = work.path().join("out");
        let mut opts = LineOptions::new(&out);
        opts.queue_frames = 64;
        opts.overlays = OverlayMode::None;
        opts.save_frames = SaveFrames { rejects: true, ok_every: 3, max: 4 };
        // 6 bright (REJECT) and 12 dark (OK) frames, each of its own level.
        let levels: Vec<u8> = (0..18u8).map(|i| if i % 3 == 0 { 200 + i } else { 10 + i }).collect();
        let p = work.path().join("brightness.onnx");
        crate::synthetic::write_brightness_model(&p, 32, 16, 0.5).unwrap();
        let roi = Roi { x: 4, y: 2, width: 20, height: 10 };
        let inspector = Inspector::new(crate::infer::AnomalyModel::load(&p).unwrap(), None, Some(roi)).unwrap();
        let line = crate::reject::SimulatedLine::new();
        let mut reject = crate::reject::ScheduledReject::new("t", line, Duration::ZERO, Duration::from_millis(1)).unwrap();
        let s = run_line(Box::new(Levels::new(levels.clone(), Duration::from_millis(5))), inspector, &mut reject, &opts, Arc::new(AtomicBool::new(false))).unwrap();
        let c = &s.counters;
        assert_eq!((c.rejected, c.ok, c.frames_not_saved, c.output_write_errors), (6, 12, 0, 0), "{c:?}");
        let list = |folder: &str| -> Vec<(u64, std::path::PathBuf)> {
            let mut v: Vec<_> = std::fs::read_dir(out.join("frames").join(folder))
                .unwrap()
                .map(|e| e.unwrap().path())
                .map(|p| (crate::output::parse_overlay_name(p.file_name().unwrap().to_str().unwrap()).unwrap().1, p))
                .collect();
            v.sort();
            v
        };
        // REJECT frames 0, 3, .., 15: the newest 4 are kept.
        let rejects = list("reject");
        assert_eq!(rejects.iter().map(|r| r.0).collect::<Vec<_>>(), [6, 9, 12, 15]);
        // OK frames are the 3rd, 6th, 9th and 12th OK ones: frames 4, 8, 13, 17.
        let oks = list("ok");
        assert_eq!(oks.iter().map(|r| r.0).collect::<Vec<_>>(), [4, 8, 13, 17]);
        // Each is the frame as captured, cropped to the ROI, pixel for pixel.
        for (id, path) in rejects.iter().chain(&oks) {
            let img = image::open(path).unwrap().to_rgb8();
            assert_eq!(img.dimensions(), (20, 10));
            let level = levels[*id as usize];
            assert!(img.pixels().all(|p| p.0 == [level; 3]), "frame {id}: expected level {level}");
        }
    }

    #[test]
    fn a_stop_delivers_long_merged_pulses_in_full_then_releases_the_line() {
        let work = tempfile::tempdir().unwrap();
        let line = crate::reject::SimulatedLine::new();
        // 400 ms pulses 300 ms after capture; 4 REJECTs 20 ms apart merge into one period.
        let mut reject = crate::reject::ScheduledReject::new("t", line.clone(), Duration::from_millis(300), Duration::from_millis(400)).unwrap();
        let mut opts = LineOptions::new(&work.path().join("out"));
        opts.queue_frames = 64;
        opts.overlays = OverlayMode::None;
        let t0 = Instant::now();
        let s = run_line(Box::new(Levels::new([250; 4], Duration::from_millis(20))), brightness_inspector(work.path()), &mut reject, &opts, Arc::new(AtomicBool::new(false))).unwrap();
        let periods = line.active_periods();
        assert_eq!(periods.len(), 1, "{periods:?}");
        let (rise, fall) = (periods[0].0, periods[0].1.expect("the line fell"));
        let len = fall - rise;
        // From the first part's rise to the fourth part's end: 60 ms of spacing + 400 ms width.
        assert!(len >= Duration::from_millis(455) && len < Duration::from_millis(520), "active {len:?}");
        assert!(t0.elapsed() >= Duration::from_millis(760), "run_line returned before the pulse ended: {:?}", t0.elapsed());
        assert_eq!(s.counters.pulses_missed, 0, "{:?}", s.counters);
        assert!(!line.is_active());
    }

    #[test]
    fn summary_marks_a_run_that_has_not_ended_cleanly() {
        let work = tempfile::tempdir().unwrap();
        let out = work.path().join("out");
        let mut opts = LineOptions::new(&out);
        opts.queue_frames = 64;
        opts.overlays = OverlayMode::None;
        let read = || serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
        for run in 0..2 {
            let line = crate::reject::SimulatedLine::new();
            let mut reject = crate::reject::ScheduledReject::new("t", line, Duration::ZERO, Duration::from_millis(1)).unwrap();
            let model = brightness_inspector(work.path());
            let opts2 = opts.clone();
            // 4 frames 150 ms apart: the run lasts ~450 ms; look at summary.json in the middle,
            // as a restart after a SIGKILL would find it.
            let h = std::thread::spawn(move || run_line(Box::new(Levels::new([10; 4], Duration::from_millis(150))), model, &mut reject, &opts2, Arc::new(AtomicBool::new(false))).unwrap());
            std::thread::sleep(Duration::from_millis(200));
            let during = read();
            assert_eq!(during["clean_exit"], false, "run {run}: {during}");
            assert_eq!(during["stopped_because"], RUNNING);
            assert_eq!(during["counters"]["frames"], 0, "run {run}: not the previous run's counters");
            let s = h.join().unwrap();
            let after = read();
            assert_eq!((after["clean_exit"].as_bool(), after["counters"]["frames"].as_u64()), (Some(true), Some(4)), "run {run}: {after}");
            assert_eq!(after["started_unix_ms"].as_u64().map(u128::from), Some(s.started_unix_ms));
            assert!(s.clean_exit);
        }
    }

    #[test]
    fn totals_survive_restarts_and_are_saved_while_the_line_runs() {
        let work = tempfile::tempdir().unwrap();
        let out = work.path().join("out");
        let mut opts = LineOptions::new(&out);
        opts.queue_frames = 64;
        opts.overlays = OverlayMode::None;
        opts.state_every = Duration::from_millis(50);
        let read = || serde_json::from_str::<state::LineTotals>(&std::fs::read_to_string(out.join("state.json")).unwrap()).unwrap();
        let run = |levels: Vec<u8>, opts: &LineOptions| {
            let line = crate::reject::SimulatedLine::new();
            let mut reject = crate::reject::ScheduledReject::new("t", line, Duration::ZERO, Duration::from_millis(1)).unwrap();
            let model = brightness_inspector(work.path());
            let opts = opts.clone();
            std::thread::spawn(move || run_line(Box::new(Levels::new(levels, Duration::from_millis(100))), model, &mut reject, &opts, Arc::new(AtomicBool::new(false))).unwrap())
        };
        let s1 = run(vec![250, 10, 10], &opts).join().unwrap();
        assert_eq!((s1.totals.runs, s1.totals.frames, s1.totals.rejected, s1.totals.ok), (1, 3, 1, 2));
        assert_eq!(read(), s1.totals);
        // The second run: saved while it goes on (as a power cut would find it), then at its end.
        let h = run(vec![250; 6], &opts);
        // Poll instead of one fixed sleep, so a slow start (qemu in CI's ARM check, a loaded
        // machine) cannot make the mid-run snapshot come too early or too late.
        let mut during = None;
        while !h.is_finished() {
            std::thread::sleep(Duration::from_millis(10));
            if let Ok(t) = std::fs::read_to_string(out.join("state.json")).map(|s| serde_json::from_str::<state::LineTotals>(&s).unwrap()) {
                if t.runs == 2 && t.frames > 3 && t.frames < 9 {
                    during = Some(t);
                }
            }
        }
        let during = during.expect("state.json was saved while run 2 went on (3 < frames < 9)");
        assert!(during.rejected > 1, "{during:?}");
        let s2 = h.join().unwrap();
        assert_eq!((s2.totals.runs, s2.totals.frames, s2.totals.rejected, s2.totals.ok, s2.totals.inspected), (2, 9, 7, 2, 9));
        assert_eq!(read(), s2.totals);
        assert_eq!(s2.counters.frames, 6, "the run's own counters stay per run");
        let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["totals"]["frames"], 9);
    }

    #[test]
    fn uninspectable_frames_are_named() {
        let work = tempfile::tempdir().unwrap();
        let mut f = frame(64, 32);
        f.rgb.pop();
        assert_eq!(f.into_image().unwrap_err(), "6143 bytes of pixel data for a 64x32 RGB frame (expected 6144)");
        assert!(frame(64, 32).into_image().is_ok());
        let ins = brightness_inspector(work.path());
        assert_eq!(ins.frame_problem(64, 32), None);
        assert!(ins.frame_problem(4, 4).unwrap().contains("4x4 px"));
        assert!(ins.frame_problem(1, 20000).unwrap().contains("1x20000"));
        let roi = Roi { x: 0, y: 20, width: 64, height: 16 };
        let ins = Inspector::new(crate::infer::AnomalyModel::load(&work.path().join("brightness.onnx")).unwrap(), None, Some(roi)).unwrap();
        let msg = ins.frame_problem(64, 32).unwrap();
        assert!(msg.contains("roi") && msg.contains("64x32"), "{msg}");
        assert_eq!(ins.frame_problem(64, 36), None);
    }

    /// Frames of alternating size (a large one every third frame takes far longer to preprocess)
    /// and brightness, `period` apart.
    struct MixedSizes {
        next: u64,
        count: u64,
    }

    impl FrameSource for MixedSizes {
        fn next_frame(&mut self, _timeout: Duration) -> Result<Option<Frame>, CaptureError> {
            if self.next == self.count {
                return Err(CaptureError::EndOfStream { device: "mixed".into() });
            }
            let (w, h) = if self.next % 3 == 0 { (1600, 1200) } else { (32, 16) };
            let level = if self.next % 4 == 1 { 250 } else { 10 };
            let f = Frame { id: self.next, width: w, height: h, rgb: vec![level; 3 * (w * h) as usize], captured_at: Instant::now(), file: None };
            self.next += 1;
            std::thread::sleep(Duration::from_millis(2));
            Ok(Some(f))
        }
        fn describe(&self) -> String {
            "mixed sizes".into()
        }
    }

    #[test]
    fn several_workers_keep_verdicts_pulses_and_events_in_frame_order() {
        let work = tempfile::tempdir().unwrap();
        let out = work.path().join("out");
        let mut opts = LineOptions::new(&out);
        opts.workers = 3;
        // Room for every frame: none is LATE even when inference is slow (qemu in the ARM check).
        opts.queue_frames = 128;
        opts.overlays = OverlayMode::None;
        let mut reject = crate::reject::SimulatedReject::new(Duration::ZERO, Duration::from_millis(1));
        let n = 90;
        // A model swap while the frames flow goes to every worker.
        let mut cfg = firmware_config::DeviceConfig::default();
        cfg.model.path = work.path().join("b.onnx");
        crate::synthetic::write_brightness_model(&cfg.model.path, 32, 16, 0.9).unwrap();
        let checked = swap::check_candidate(&cfg).unwrap();
        let label_b = checked.inspector.model().id().to_string();
        let (tx, rx) = mpsc::sync_channel(1);
        let swapper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            tx.send(swap::LineControl::Swap(Box::new(checked))).unwrap();
        });
        let hooks = LineHooks { controls: Some(rx), health: None };
        let s = run_line_with(Box::new(MixedSizes { next: 0, count: n }), brightness_inspector(work.path()), &mut reject, &opts, Arc::new(AtomicBool::new(false)), hooks).unwrap();
        swapper.join().unwrap();
        let c = &s.counters;
        assert_eq!(c.model_swaps, 1, "{c:?}");
        let rejects: Vec<u64> = (0..n).filter(|i| i % 4 == 1).collect();
        assert_eq!((c.frames, c.inspected, c.late, c.bad, c.rejected), (n, n, 0, 0, rejects.len() as u64), "{c:?}");
        // Pulses requested in frame order, one per REJECT frame.
        let pulsed: Vec<u64> = reject.pulses().iter().map(|p| p.frame_id).collect();
        assert_eq!(pulsed, rejects);
        // Events in frame order, each with the verdict its brightness calls for.
        let events: Vec<serde_json::Value> = std::fs::read_to_string(out.join("events.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let ids: Vec<u64> = events.iter().map(|e| e["frame_id"].as_u64().unwrap()).collect();
        assert_eq!(ids, (0..n).collect::<Vec<_>>());
        for e in &events {
            let id = e["frame_id"].as_u64().unwrap();
            assert_eq!(e["verdict"], if id % 4 == 1 { "REJECT" } else { "OK" }, "{e}");
        }
        // Before the switch model A, after it model B; only the frames the other two workers
        // had in hand at the switch may still name A.
        let labels: Vec<&str> = events.iter().map(|e| e["model"].as_str().unwrap()).collect();
        let first_b = labels.iter().position(|l| *l == label_b).expect("frames judged by the swapped-in model");
        assert!(first_b > 0, "the first frames name the first model");
        let late_a = labels[first_b..].iter().filter(|l| **l != label_b).count();
        assert!(late_a <= 2, "{late_a} frames named the old model after the first that named the new one: {labels:?}");
        assert_eq!(s.model_id, label_b);
    }

    /// A replay of `n` grey 32x16 frames whose level is `level(i)`.
    fn replay(dir: &Path, n: u32, level: impl Fn(u32) -> u8) -> crate::capture::ReplaySource {
        std::fs::create_dir_all(dir).unwrap();
        for i in 0..n {
            let v = level(i);
            image::RgbImage::from_pixel(32, 16, image::Rgb([v, v, v])).save(dir.join(format!("{i:04}.png"))).unwrap();
        }
        crate::capture::ReplaySource::open(dir, 1000.0, false, crate::bit_depth::BitDepth::FULL).unwrap()
    }

    #[test]
    fn a_brightness_ramp_raises_the_drift_alarm_before_any_reject() {
        let work = tempfile::tempdir().unwrap();
        // Calibrated on good parts at level 40 +- 2 (score = brightness): mean 0.157.
        let good: Vec<f32> = (0..20).map(|i| (38.0 + (i % 5) as f32) / 255.0).collect();
        let model = work.path().join("m.onnx");
        crate::synthetic::write_brightness_model_with(&model, 32, 16, 0.9, crate::bit_depth::BitDepth::FULL, crate::metadata::ScoreStats::of(&good)).unwrap();
        let run = |name: &str, level: &dyn Fn(u32) -> u8| {
            let out = work.path().join(name);
            let mut opts = LineOptions::new(&out);
            opts.queue_frames = 600;
            opts.overlays = OverlayMode::None;
            let mut reject = crate::reject::SimulatedReject::new(Duration::ZERO, Duration::from_millis(1));
            let ins = Inspector::new(crate::infer::AnomalyModel::load(&model).unwrap(), None, None).unwrap();
            let s = run_line(Box::new(replay(&work.path().join(format!("{name}-frames")), 500, level)), ins, &mut reject, &opts, Arc::new(AtomicBool::new(false))).unwrap();
            (s, out)
        };
        // Level 40 for 200 frames, then a slow ramp to 120 (score 0.47, far below the threshold).
        let (s, out) = run("ramp", &|i| if i < 200 { 40 } else { (40 + (i - 200) * 80 / 300) as u8 });
        assert_eq!((s.counters.inspected, s.counters.rejected, s.counters.drift_alarms), (500, 0, 1), "{:?}", s.counters);
        let alarms = std::fs::read_to_string(out.join("alarms.jsonl")).unwrap();
        let a: serde_json::Value = serde_json::from_str(alarms.lines().next().unwrap()).unwrap();
        assert_eq!(a["action"], "drift");
        // s = max(sigma, 0.05 x (0.9 - mean)) = 0.0372, bound 4 s = 0.149: the median of the last
        // 200 frames passes mean + bound = 0.306 (level 78) near frame 442.
        let frame = a["frame_id"].as_u64().unwrap();
        assert!((420..=470).contains(&frame), "raised at frame {frame}: {a}");
        println!("DRIFT: alarm at frame {frame} of 500, median {:.4}, bound {:.4}", a["median"].as_f64().unwrap(), a["bound"].as_f64().unwrap());
        assert!((a["bound"].as_f64().unwrap() - 4.0 * 0.05 * (0.9 - a["good_mean"].as_f64().unwrap())).abs() < 1e-6, "{a}");
        // A steady line: no alarm.
        let (s, out) = run("steady", &|i| 38 + (i % 5) as u8);
        assert_eq!(s.counters.drift_alarms, 0);
        assert!(!out.join("alarms.jsonl").exists());
    }
}
