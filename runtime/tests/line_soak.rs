//! The fault soak of issue 12: at least 10,000 frames through the real line pipeline
//! ([`runtime::line::run_line`]) with faults injected at known frames, plus the real `runtime`
//! binary killed with SIGKILL at a random frame and restarted on the same output folder, which
//! then runs out of space (ENOSPC on a small tmpfs mounted inside `unshare -m`).
//!
//! The model is the synthetic brightness model ([`runtime::synthetic`]): no training, so the soak
//! is fast and every frame's verdict is known in advance (bright frames are REJECT).
//!
//! Asserted: no panic; every frame of every run accounted exactly once as inspected, LATE or BAD
//! (one event each, with the verdict its content calls for); every REJECT and every BAD frame has
//! its pulse on the line or is counted in `pulses_missed`; RSS flat (the last quarter of the run at
//! most [`RSS_GROWTH_MAX_MIB`] above the second); the reject line inactive after every clean exit;
//! events.jsonl parses line by line after the kill and after the restart.
//!
//! Lives in the runtime crate (not `tests/`) so that Cargo builds the `runtime` binary it kills
//! (`CARGO_BIN_EXE_runtime`) from the same sources, and no libtorch is linked.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use runtime::capture::{CaptureError, Frame, FrameSource, ReopeningSource};
use runtime::line::swap::{check_candidate, LineControl};
use runtime::line::{run_line_with, LineHooks, LineOptions};
use runtime::reject::{LineDriver, ScheduledReject, SimulatedLine};

/// Frame size of the simulated camera and the synthetic model, px.
const W: u32 = 64;
const H: u32 = 48;
/// Frames of the in-process run.
const FRAMES: u64 = 12_000;
/// Camera frame period (500 frames/s) outside bursts.
const PERIOD: Duration = Duration::from_millis(2);
/// `camera.timeout_ms` of the in-process run; the hanging camera blocks 4x as long.
const FRAME_TIMEOUT: Duration = Duration::from_millis(50);
const HANG: Duration = Duration::from_millis(200);
/// Camera-to-ejector delay and pulse width.
const DELAY: Duration = Duration::from_millis(100);
const PULSE: Duration = Duration::from_millis(5);
/// The camera is gone before these frames (and for the next two reopen attempts).
const DISCONNECT_AT: [u64; 3] = [2_000, 5_000, 8_000];
/// The camera blocks for [`HANG`] (4x its timeout) and then delivers the frame.
const HANG_THEN_FRAME_AT: [u64; 3] = [3_000, 6_500, 9_500];
/// The camera blocks for [`HANG`] and then returns nothing (a timeout reported late).
const HANG_THEN_NOTHING_AT: [u64; 2] = [3_500, 7_000];
/// Frames delivered back to back (no pacing): inference cannot keep up, frames become LATE.
const BURSTS: [(u64, u64); 2] = [(4_000, 4_300), (10_000, 10_300)];
/// Every this-many-th write to the reject line fails (EIO).
const WRITE_FAIL_EVERY: u64 = 9;
/// RSS bound: last quarter max - second quarter max.
const RSS_GROWTH_MAX_MIB: f64 = 16.0;
/// Live model swaps while the frames flow (issue 16): what arrives at `[model].path` before each
/// frame, checked beside the line as `runtime run` checks it.
const SWAPS: [(u64, SwapStep); 5] = [(1_000, SwapStep::GoodModel), (3_000, SwapStep::HalfCopied), (5_500, SwapStep::FailsAcceptance), (7_500, SwapStep::Rollback), (9_000, SwapStep::GoodModel)];

#[derive(Debug, Clone, Copy, PartialEq)]
enum SwapStep {
    /// Model B: threshold 0.6 instead of 0.5, the same verdicts on these frames, another hash.
    GoodModel,
    /// The first half of model B's bytes (a copy still going on).
    HalfCopied,
    /// Threshold 0.1: the acceptance set's good image is REJECT.
    FailsAcceptance,
    /// Back to the model before the last swap.
    Rollback,
}

/// What the simulated camera delivers as frame `n`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Planned {
    /// Dark frame: OK (or LATE).
    Good,
    /// Bright frame: REJECT (or LATE).
    Bright,
    /// The driver reports a frame it could not decode: BAD.
    Corrupt,
    /// A frame with half its pixel data: BAD (or LATE).
    Truncated,
}

fn planned(n: u64) -> Planned {
    if n % 97 == 96 {
        Planned::Corrupt
    } else if n % 211 == 100 {
        Planned::Truncated
    } else if n % 16 == 5 {
        Planned::Bright
    } else {
        Planned::Good
    }
}

/// Panics on any thread of this test binary (counted by a hook installed once).
static PANICS: AtomicU64 = AtomicU64::new(0);

fn count_panics() {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

/// State of the simulated camera that survives reopening.
struct CameraState {
    /// Frames (good or bad) delivered so far; the next one is frame `produced`.
    produced: AtomicU64,
    /// Delivery time of every frame, by id ([`ReopeningSource`] numbers deliveries from 0).
    captured: Mutex<Vec<Option<Instant>>>,
    /// Faults already injected, so each fires once.
    fired: Mutex<HashSet<(u8, u64)>>,
    last: Mutex<Option<Instant>>,
    /// Open attempts still to fail (the camera is "gone").
    fail_opens: AtomicU64,
    opens: AtomicU64,
    failed_opens: AtomicU64,
}

struct Camera(Arc<CameraState>);

impl Camera {
    fn once(&self, kind: u8, n: u64) -> bool {
        self.0.fired.lock().unwrap().insert((kind, n))
    }
}

impl FrameSource for Camera {
    fn next_frame(&mut self, _timeout: Duration) -> Result<Option<Frame>, CaptureError> {
        let s = &self.0;
        let n = s.produced.load(Ordering::SeqCst);
        if DISCONNECT_AT.contains(&n) && self.once(0, n) {
            s.fail_opens.store(2, Ordering::SeqCst);
            return Err(CaptureError::Disconnected { device: "/dev/video-sim".into(), reason: "ENODEV (injected)".into() });
        }
        if HANG_THEN_NOTHING_AT.contains(&n) && self.once(1, n) {
            std::thread::sleep(HANG);
            return Ok(None);
        }
        if HANG_THEN_FRAME_AT.contains(&n) && self.once(2, n) {
            std::thread::sleep(HANG);
        } else if !BURSTS.iter().any(|&(a, b)| (a..b).contains(&n)) {
            let last = *s.last.lock().unwrap();
            if let Some(last) = last {
                std::thread::sleep((last + PERIOD).saturating_duration_since(Instant::now()));
            }
        }
        s.produced.fetch_add(1, Ordering::SeqCst);
        let now = Instant::now();
        *s.last.lock().unwrap() = Some(now);
        s.captured.lock().unwrap()[n as usize] = Some(now);
        let px = 3 * (W * H) as usize;
        let (level, len) = match planned(n) {
            Planned::Corrupt => {
                return Err(CaptureError::BadFrame { device: "/dev/video-sim".into(), frame_id: n, reason: "corrupt MJPEG (injected)".into(), file: None });
            }
            Planned::Truncated => (40, px / 2),
            Planned::Bright => (220, px),
            Planned::Good => (40, px),
        };
        Ok(Some(Frame { id: n, width: W, height: H, rgb: vec![level; len], captured_at: now, file: None }))
    }

    fn describe(&self) -> String {
        "simulated camera with injected faults".into()
    }
}

/// A simulated reject line whose every [`WRITE_FAIL_EVERY`]-th write fails.
struct FlakyLine {
    inner: SimulatedLine,
    writes: u64,
    failures: Arc<AtomicU64>,
}

impl LineDriver for FlakyLine {
    fn set_active(&mut self, active: bool) -> anyhow::Result<()> {
        self.writes += 1;
        if self.writes % WRITE_FAIL_EVERY == 0 {
            self.failures.fetch_add(1, Ordering::SeqCst);
            anyhow::bail!("EIO writing the line (injected)");
        }
        self.inner.set_active(active)
    }
}

fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let l = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    l.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() / 1024.0
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn soak_in_process_12000_frames_with_faults_all_accounted_pulsed_and_flat() {
    count_panics();
    let t_start = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let model_path = work.path().join("brightness.onnx");
    runtime::synthetic::write_brightness_model(&model_path, W, H, 0.5).unwrap();
    let model = runtime::inspector::Inspector::new(runtime::infer::AnomalyModel::load(&model_path).unwrap(), None, None).unwrap();
    let label = |p: &Path| runtime::infer::ModelId::of(p, &std::fs::read(p).unwrap()).to_string();
    let label_a = label(&model_path);

    let cam = Arc::new(CameraState {
        produced: AtomicU64::new(0),
        captured: Mutex::new(vec![None; FRAMES as usize + 1]),
        fired: Mutex::new(HashSet::new()),
        last: Mutex::new(None),
        fail_opens: AtomicU64::new(0),
        opens: AtomicU64::new(0),
        failed_opens: AtomicU64::new(0),
    });
    let c2 = cam.clone();
    let factory = move || {
        if c2.fail_opens.load(Ordering::SeqCst) > 0 {
            c2.fail_opens.fetch_sub(1, Ordering::SeqCst);
            c2.failed_opens.fetch_add(1, Ordering::SeqCst);
            return Err(CaptureError::Open { device: "/dev/video-sim".into(), reason: "No such device (injected)".into() });
        }
        c2.opens.fetch_add(1, Ordering::SeqCst);
        Ok(Camera(c2.clone()))
    };
    let source = ReopeningSource::new(factory, Duration::from_millis(20));

    let line = SimulatedLine::new();
    let failures = Arc::new(AtomicU64::new(0));
    let mut reject = ScheduledReject::new("soak", FlakyLine { inner: line.clone(), writes: 0, failures: failures.clone() }, DELAY, PULSE).unwrap();

    let out = work.path().join("out");
    let mut opts = LineOptions::new(&out);
    opts.max_frames = Some(FRAMES);
    opts.max_saved_images = 50;
    opts.frame_timeout = FRAME_TIMEOUT;
    opts.state_every = Duration::from_secs(1);
    // RSS sampled every 100 ms while the line runs.
    let done = Arc::new(AtomicBool::new(false));
    let d2 = done.clone();
    let sampler = std::thread::spawn(move || {
        let mut v = Vec::new();
        while !d2.load(Ordering::SeqCst) {
            v.push(rss_mib());
            std::thread::sleep(Duration::from_millis(100));
        }
        v
    });
    // Model swaps under load: a thread plays the part of the operator and of the line's model
    // watcher (check beside the line, then hand over).
    let mut cfg = firmware_config::DeviceConfig::default();
    cfg.model.path = model_path.clone();
    let accept = work.path().join("acceptance");
    for (folder, level) in [("good", 40u8), ("bad", 220u8)] {
        std::fs::create_dir_all(accept.join(folder)).unwrap();
        image::RgbImage::from_pixel(W, H, image::Rgb([level; 3])).save(accept.join(folder).join("0.png")).unwrap();
    }
    cfg.model.acceptance_dir = Some(accept);
    let model_b = work.path().join("b.onnx");
    runtime::synthetic::write_brightness_model(&model_b, W, H, 0.6).unwrap();
    let label_b = label(&model_b).replace("b.onnx", "brightness.onnx");
    let model_c = work.path().join("c.onnx");
    runtime::synthetic::write_brightness_model(&model_c, W, H, 0.1).unwrap();
    let (control_tx, control_rx) = std::sync::mpsc::sync_channel(1);
    let cam_s = cam.clone();
    let swapper = std::thread::spawn(move || {
        let mut refusals = Vec::new();
        for (at, step) in SWAPS {
            while cam_s.produced.load(Ordering::SeqCst) < at {
                std::thread::sleep(Duration::from_millis(2));
            }
            // A new file arrives at [model].path the way DEPLOY.md says (write, then rename),
            // except the half-copied one, written in place.
            let put = |from: &Path| {
                let tmp = cfg.model.path.with_extension("tmp");
                std::fs::copy(from, &tmp).unwrap();
                std::fs::rename(&tmp, &cfg.model.path).unwrap();
            };
            let control = match step {
                SwapStep::Rollback => LineControl::Rollback,
                SwapStep::GoodModel | SwapStep::FailsAcceptance | SwapStep::HalfCopied => {
                    match step {
                        SwapStep::GoodModel => put(&model_b),
                        SwapStep::FailsAcceptance => put(&model_c),
                        _ => {
                            let bytes = std::fs::read(&model_b).unwrap();
                            std::fs::write(&cfg.model.path, &bytes[..bytes.len() / 2]).unwrap();
                        }
                    }
                    match check_candidate(&cfg) {
                        Ok(m) => LineControl::Swap(Box::new(m)),
                        Err(e) => {
                            refusals.push(format!("{e:#}"));
                            LineControl::Refused { path: cfg.model.path.clone(), reason: format!("{e:#}") }
                        }
                    }
                }
            };
            control_tx.send(control).unwrap();
        }
        refusals
    });
    let hooks = LineHooks { controls: Some(control_rx), health: None };
    let summary = run_line_with(Box::new(source), model, &mut reject, &opts, Arc::new(AtomicBool::new(false)), hooks).unwrap();
    done.store(true, Ordering::SeqCst);
    let rss = sampler.join().unwrap();
    let refusals = swapper.join().unwrap();
    let c = &summary.counters;
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    assert!(refusals[0].contains("brightness.onnx"), "a half-copied file is refused naming it: {}", refusals[0]);
    assert!(refusals[1].contains("1 of 2 images judged wrong") && refusals[1].contains("good/0.png: REJECT"), "{}", refusals[1]);
    assert_eq!((c.model_swaps, c.swaps_refused, c.rollbacks), (2, 2, 1), "{c:?}");
    assert_ne!(label_a, label_b);
    let models_log = std::fs::read_to_string(out.join("models.jsonl")).unwrap();
    let changes: Vec<serde_json::Value> = models_log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let actions: Vec<&str> = changes.iter().map(|v| v["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["start", "swap", "refused", "refused", "rollback", "swap"], "{models_log}");
    let running: Vec<&str> = changes.iter().map(|v| v["model"].as_str().unwrap()).collect();
    assert_eq!(running, [&label_a, &label_b, &label_b, &label_b, &label_a, &label_b], "{models_log}");
    let switch_ms: Vec<f64> = changes.iter().filter_map(|v| v["switch_ms"].as_f64()).collect();
    let check_ms: Vec<f64> = changes.iter().filter_map(|v| v["check_ms"].as_f64()).collect();

    // Ended by the frame limit, not by a failure of a pipeline thread.
    assert_eq!(summary.stopped_because, "frame limit", "{c:?}");
    assert_eq!(c.frames, FRAMES, "{c:?}");
    assert_eq!(c.inspected + c.late + c.bad, c.frames, "{c:?}");
    assert_eq!(c.ok + c.rejected, c.inspected, "{c:?}");
    assert_eq!((c.infer_errors, c.reject_errors, c.source_errors, c.output_write_errors), (0, 0, 0, 0), "{c:?}");
    assert!(c.late > 0, "the bursts made frames LATE: {c:?}");
    assert!(c.timeouts >= HANG_THEN_NOTHING_AT.len() as u64, "each hang that returned nothing is a timeout: {c:?}");
    // The camera was gone three times, two failed reopen attempts each, and came back.
    assert_eq!(cam.opens.load(Ordering::SeqCst), 1 + DISCONNECT_AT.len() as u64);
    assert_eq!(cam.failed_opens.load(Ordering::SeqCst), 2 * DISCONNECT_AT.len() as u64);

    // Every frame exactly once in events.jsonl, with the verdict its content calls for.
    let events = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
    assert!(events.ends_with('\n'));
    let mut verdict_of: Vec<Option<String>> = vec![None; FRAMES as usize];
    let mut model_of: Vec<Option<String>> = vec![None; FRAMES as usize];
    for (i, l) in events.lines().enumerate() {
        let e: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|err| panic!("events.jsonl line {}: {err}: {l}", i + 1));
        let id = e["frame_id"].as_u64().unwrap();
        assert!(id < FRAMES, "line {}: frame {id} was never delivered", i + 1);
        let slot = &mut verdict_of[id as usize];
        assert!(slot.is_none(), "frame {id} has two events");
        *slot = Some(e["verdict"].as_str().unwrap().to_string());
        model_of[id as usize] = e["model"].as_str().map(str::to_string);
        if e["verdict"] != "LATE" {
            assert!(model_of[id as usize].as_deref().is_some_and(|m| m == label_a || m == label_b), "frame {id} names no model of this run: {l}");
        }
    }
    // Judged frames name model A, then B from the first swap, A from the rollback, B again from
    // the second swap: three changes, each near the frame that asked (frames still waiting in the
    // queue when the switch comes are judged by the new model; the frame being judged finishes
    // on the old one).
    let judged: Vec<(usize, &str)> = model_of.iter().enumerate().filter_map(|(i, m)| m.as_deref().map(|m| (i, m))).collect();
    let changed_at: Vec<usize> = judged.windows(2).filter(|w| w[0].1 != w[1].1).map(|w| w[1].0).collect();
    assert_eq!(changed_at.len(), 3, "model changes at frames {changed_at:?}");
    for (&at, want) in changed_at.iter().zip([1_000usize, 7_500, 9_000]) {
        assert!(at + 5 >= want && at < want + 400, "a model change at frame {at}, asked at {want}");
    }
    let (mut n_ok, mut n_rej, mut n_late, mut n_bad, mut wrong) = (0u64, 0u64, 0u64, 0u64, Vec::new());
    let (mut corrupt, mut truncated) = (0u64, 0u64);
    let mut requests = Vec::new(); // frames whose verdict asks for a pulse: REJECT and BAD
    for (id, v) in verdict_of.iter().enumerate() {
        let v = v.as_deref().unwrap_or_else(|| panic!("frame {id} has no event"));
        let p = planned(id as u64);
        match p {
            Planned::Corrupt => corrupt += 1,
            Planned::Truncated => truncated += 1,
            _ => {}
        }
        let allowed: &[&str] = match p {
            Planned::Good => &["OK", "LATE"],
            Planned::Bright => &["REJECT", "LATE"],
            Planned::Truncated => &["BAD", "LATE"],
            Planned::Corrupt => &["BAD"],
        };
        if !allowed.contains(&v) {
            wrong.push(format!("frame {id} ({p:?}): {v}"));
        }
        match v {
            "OK" => n_ok += 1,
            "REJECT" => n_rej += 1,
            "LATE" => n_late += 1,
            _ => n_bad += 1,
        }
        if v == "REJECT" || v == "BAD" {
            requests.push(id);
        }
    }
    assert!(wrong.is_empty(), "{} frames with a wrong verdict, e.g. {:?}", wrong.len(), &wrong[..wrong.len().min(5)]);
    assert_eq!((n_ok, n_rej, n_late, n_bad), (c.ok, c.rejected, c.late, c.bad), "events vs counters");
    assert!(c.bad >= corrupt && c.bad <= corrupt + truncated, "{c:?}");

    // Every REJECT and BAD frame has its pulse (an active period overlapping its capture + delay
    // .. + width window) or is counted in pulses_missed.
    let captured = cam.captured.lock().unwrap();
    let periods: Vec<(Instant, Instant)> = line
        .active_periods()
        .iter()
        .map(|(r, f)| (line.start() + *r, line.start() + f.expect("every period ended: the line is inactive at the end")))
        .collect();
    let tol = Duration::from_millis(1);
    let mut uncovered = 0u64;
    let mut dues = Vec::with_capacity(requests.len());
    for &id in &requests {
        let due = captured[id].expect("a requested frame was captured") + DELAY;
        dues.push(due);
        let end = due + PULSE;
        if !periods.iter().any(|&(r, f)| r <= end + tol && f + tol >= due) {
            uncovered += 1;
        }
    }
    let worst_rise_ms = periods
        .iter()
        .map(|&(r, _)| dues.iter().map(|&d| if d > r { (d - r).as_secs_f64() } else { (r - d).as_secs_f64() }).fold(f64::MAX, f64::min) * 1e3)
        .fold(0.0f64, f64::max);
    let injected = failures.load(Ordering::SeqCst);
    assert!(injected > 0, "write errors were injected");
    assert_eq!(reject.write_errors(), injected, "every failed line write is counted");
    assert_eq!(reject.cut_pulses(), 0, "a clean stop delivers every requested pulse in full");
    assert!(uncovered <= c.pulses_missed, "{uncovered} REJECT/BAD frames without a pulse, only {} counted missed", c.pulses_missed);
    assert!(c.pulses_missed <= injected + reject.late_pulses(), "{c:?}");
    assert!(worst_rise_ms < 10.0, "a pulse rose {worst_rise_ms:.2} ms away from its frame's capture + delay");
    assert!(!line.is_active(), "line left active after a clean exit");
    assert!(!reject.busy(), "no pulse waiting or in progress after the run");

    // Overlays bounded; summary and state say the same.
    assert!(std::fs::read_dir(out.join("overlays")).unwrap().count() <= 50);
    let s = read_json(&out.join("summary.json"));
    assert_eq!((s["clean_exit"].as_bool(), s["counters"]["frames"].as_u64()), (Some(true), Some(FRAMES)), "{s}");
    let st = read_json(&out.join("state.json"));
    assert_eq!((st["runs"].as_u64(), st["frames"].as_u64(), st["bad"].as_u64()), (Some(1), Some(FRAMES), Some(c.bad)), "{st}");

    // RSS flat.
    assert!(rss.len() >= 40, "{} RSS samples", rss.len());
    let q = rss.len() / 4;
    let early = rss[q..2 * q].iter().cloned().fold(0.0, f64::max);
    let late = rss[3 * q..].iter().cloned().fold(0.0, f64::max);
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "panics during the soak");
    println!(
        "SOAK in-process: {FRAMES} frames = inspected {} (OK {}, REJECT {}) + late {} + bad {} in {:.1} s (test {:.1} s)\n  \
         faults: {corrupt} corrupt + {truncated} truncated frames, {} disconnects ({} failed reopens), {} hangs of {} ms (timeout {} ms; {} then a frame, {} then nothing; timeouts counted {}), {} bursts of 300 frames, {injected} failed line writes\n  \
         pulses: {} REJECT/BAD requests, {} active periods, pulses_missed {} (line write errors {}, late {}), requests without a pulse {uncovered}, worst rise error {worst_rise_ms:.2} ms\n  \
         RSS MiB: second quarter max {early:.1}, last quarter max {late:.1} ({} samples); capture->decision p50 {:.2} p95 {:.2} ms; line inactive at exit; 0 panics\n  \
         models: {actions:?} at frames {changed_at:?}; checks beside the line {check_ms:?} ms; inference switch (frames waited) {switch_ms:.3?} ms",
        c.inspected,
        c.ok,
        c.rejected,
        c.late,
        c.bad,
        summary.wall_s,
        t_start.elapsed().as_secs_f64(),
        DISCONNECT_AT.len(),
        cam.failed_opens.load(Ordering::SeqCst),
        HANG_THEN_FRAME_AT.len() + HANG_THEN_NOTHING_AT.len(),
        HANG.as_millis(),
        FRAME_TIMEOUT.as_millis(),
        HANG_THEN_FRAME_AT.len(),
        HANG_THEN_NOTHING_AT.len(),
        c.timeouts,
        BURSTS.len(),
        requests.len(),
        periods.len(),
        c.pulses_missed,
        reject.write_errors(),
        reject.late_pulses(),
        rss.len(),
        summary.latency.capture_to_decision.p50_ms,
        summary.latency.capture_to_decision.p95_ms,
    );
    assert!(late - early <= RSS_GROWTH_MAX_MIB, "RSS grew from {early:.1} to {late:.1} MiB");
}

/// Replay frames of the process soak.
const REPLAY_FRAMES: u32 = 600;

/// Replay file `i`: bright (REJECT) when `i % 8 == 3`, a PNG cut at 60 % when `i % 50 == 25`,
/// garbage bytes named .png when `i % 77 == 40`; dark and noisy (OK) otherwise. Returns
/// (bright, bad) counts.
fn replay_folder(dir: &Path) -> (u32, u32) {
    std::fs::create_dir_all(dir).unwrap();
    let (mut bright, mut bad) = (0, 0);
    for i in 0..REPLAY_FRAMES {
        let path = dir.join(format!("{i:04}.png"));
        if i % 77 == 40 {
            std::fs::write(&path, b"not an image: a corrupt file in the replay folder").unwrap();
            bad += 1;
            continue;
        }
        let base: u32 = if i % 8 == 3 { 200 } else { 20 };
        let img = image::RgbImage::from_fn(W, H, |x, y| {
            let n = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503) ^ i.wrapping_mul(97)) % 40;
            image::Rgb([(base + n) as u8, (base + (n * 7) % 40) as u8, (base + (n * 13) % 40) as u8])
        });
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        if i % 50 == 25 {
            png.truncate(png.len() * 6 / 10);
            bad += 1;
        } else if i % 8 == 3 {
            bright += 1;
        }
        std::fs::write(&path, png).unwrap();
    }
    (bright, bad)
}

/// The numbers in the line of `out` that starts with `prefix`.
fn numbers(out: &str, prefix: &str) -> Vec<u64> {
    let line = out.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no `{prefix}` line in:\n{out}"));
    line.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect()
}

/// (frame_id, time_unix_ms, verdict) of every line; panics naming the line that does not parse.
fn parse_events(text: &str, what: &str) -> Vec<(u64, u64, String)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{what} line {}: {e}: {l:?}", i + 1));
            (v["frame_id"].as_u64().unwrap(), v["time_unix_ms"].as_u64().unwrap(), v["verdict"].as_str().unwrap().to_string())
        })
        .collect()
}

fn assert_unique(ids: impl Iterator<Item = u64>, what: &str) -> usize {
    let mut seen = HashSet::new();
    for id in ids {
        assert!(seen.insert(id), "{what}: frame {id} has two events");
    }
    seen.len()
}

#[test]
fn soak_runtime_process_killed_at_a_random_frame_then_restarted_on_a_full_disk() {
    count_panics();
    let t_start = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let model = w.join("model.onnx");
    runtime::synthetic::write_brightness_model(&model, W, H, 0.5).unwrap();
    let (bright, bad_files) = replay_folder(&w.join("frames"));
    let out = w.join("out");
    std::fs::create_dir(&out).unwrap();
    let cfg = w.join("device.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\npath = \"{}\"\n[camera]\nsource = \"replay\"\nreplay_dir = \"{}\"\nfps = 100\n[reject]\npulse_ms = 2\ndelay_ms = 50\n[output]\ndir = \"{}\"\noverlays = \"rejects\"\nmax_saved_images = 5\n",
            model.display(),
            w.join("frames").display(),
            out.display()
        ),
    )
    .unwrap();
    let keep = w.join("keep");
    std::fs::create_dir(&keep).unwrap();
    // The kill comes once events.jsonl has at least K lines, K random in 100..300 (printed, to
    // rerun a failure: SOAK_KILL_AT=K): at 100 frames/s the run has >= 3 s left then, so a
    // polling shell slowed by a loaded machine still catches it alive.
    let kill_at: u64 = std::env::var("SOAK_KILL_AT").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        100 + std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64 % 200
    });
    let mount = Command::new("unshare").args(["-m", "true"]).status().map(|s| s.success()).unwrap_or(false);
    if !mount {
        eprintln!("NOTE: `unshare -m` is not permitted here (needs root): the kill and restart run, the full-disk part does not");
    }
    // Run 1 is killed (SIGKILL) at frame ~K; the output folder is then filled up to 24 KiB free
    // (tmpfs of 512 KiB) and run 2 restarts on it: it runs out of space after a few dozen events.
    let script = r#"set -u
if [ "$MOUNT" = 1 ]; then mount -t tmpfs -o size=512k tmpfs "$OUT" || exit 90; fi
"$EXE" run --config "$CFG" > "$KEEP/run1.out" 2> "$KEEP/run1.err" &
pid=$!
n=0
while kill -0 $pid 2>/dev/null; do
  n=$(cat "$OUT/events.jsonl" 2>/dev/null | wc -l)
  [ "$n" -ge "$K" ] && break
  sleep 0.002
done
kill -9 $pid 2>/dev/null && echo "$n" > "$KEEP/killed"
wait $pid; echo $? > "$KEEP/rc1"
date +%s%3N > "$KEEP/kill_ms"
cp "$OUT/events.jsonl" "$KEEP/events_after_kill.jsonl"
cp "$OUT/summary.json" "$KEEP/summary_after_kill.json" 2>/dev/null
cp "$OUT/state.json" "$KEEP/state_after_kill.json" 2>/dev/null
if [ "$MOUNT" = 1 ]; then
  avail=$(df -k --output=avail "$OUT" | tail -1)
  dd if=/dev/zero of="$OUT/fill" bs=1k count=$((avail - 24)) 2>/dev/null
  df -k "$OUT" > "$KEEP/df_before_run2"
fi
"$EXE" run --config "$CFG" > "$KEEP/run2.out" 2> "$KEEP/run2.err"; echo $? > "$KEEP/rc2"
cp "$OUT/events.jsonl" "$KEEP/events.jsonl"
df -k "$OUT" > "$KEEP/df_after_run2"
exit 0
"#;
    let mut cmd = if mount {
        let mut c = Command::new("unshare");
        c.args(["-m", "sh", "-c", script]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    };
    let st = cmd
        .env("MOUNT", if mount { "1" } else { "0" })
        .env("OUT", &out)
        .env("EXE", env!("CARGO_BIN_EXE_runtime"))
        .env("CFG", &cfg)
        .env("KEEP", &keep)
        .env("K", kill_at.to_string())
        .env_remove("RUST_LOG")
        .status()
        .unwrap();
    assert!(st.success(), "the soak script failed: {st:?}");
    let read = |n: &str| std::fs::read_to_string(keep.join(n)).unwrap_or_else(|e| panic!("{n}: {e}"));

    // Run 1: killed at frame ~K, not ended on its own.
    let lines_at_kill: u64 = read("killed").trim().parse().unwrap_or_else(|_| panic!("run 1 ended before the kill:\n{}\n{}", read("run1.out"), read("run1.err")));
    assert_eq!(read("rc1").trim(), "137", "run 1 died of SIGKILL");
    let kill_ms: u64 = read("kill_ms").trim().parse().unwrap();
    // events.jsonl after the kill: every whole line parses; a torn tail (no `\n`) is tolerated
    // here and must be gone after the restart.
    let after_kill = read("events_after_kill.jsonl");
    let whole = match after_kill.rfind('\n') {
        Some(i) => &after_kill[..=i],
        None => "",
    };
    let torn_bytes = after_kill.len() - whole.len();
    let run1 = parse_events(whole, "events.jsonl after the kill");
    assert!(run1.len() as u64 >= lines_at_kill && lines_at_kill >= kill_at, "{} events, {lines_at_kill} counted at the kill", run1.len());
    assert_unique(run1.iter().map(|e| e.0), "run 1");
    assert!(run1.iter().all(|e| e.0 < REPLAY_FRAMES as u64));
    let s1 = serde_json::from_str::<serde_json::Value>(&read("summary_after_kill.json")).unwrap();
    assert_eq!(s1["clean_exit"], false, "a killed run's summary says so: {s1}");
    assert!(s1["stopped_because"].as_str().unwrap().starts_with("running"), "{s1}");
    let st1 = serde_json::from_str::<serde_json::Value>(&read("state_after_kill.json")).unwrap();
    assert_eq!(st1["runs"], 1, "{st1}");

    // Run 2: restarted on the same folder (full disk when mounted): every frame accounted, every
    // REJECT and BAD pulsed or counted missed, exit 0, line inactive.
    let (stdout, stderr) = (read("run2.out"), read("run2.err"));
    println!("--- run 2 stdout\n{stdout}--- run 2 stderr (last 1500 bytes)\n{}", &stderr[stderr.len().saturating_sub(1500)..]);
    assert_eq!(read("rc2").trim(), "0", "run 2 exits 0");
    let f = numbers(&stdout, "frames");
    let (frames, inspected, ok, rejected, late, bad) = (f[0], f[1], f[2], f[3], f[4], f[5]);
    assert_eq!(frames, REPLAY_FRAMES as u64, "{stdout}");
    assert_eq!((inspected + late + bad, ok + rejected), (frames, inspected), "every frame accounted once: {stdout}");
    assert_eq!(bad, bad_files as u64, "every corrupt or truncated file is a BAD frame: {stdout}");
    assert!(rejected >= 1 && rejected <= bright as u64, "{stdout}");
    assert!(stdout.contains("stopped     source ended"), "{stdout}");
    let p = numbers(&stdout, "reject line simulated");
    assert!(stdout.contains("line inactive at exit"), "the line is inactive after a clean exit: {stdout}");
    let missed = if stdout.contains("WARNING") { numbers(&stdout, "WARNING")[0] } else { 0 };
    // Pulses that touch merge into one active period, so periods <= requests; none went missing
    // unless counted.
    assert!(p[0] >= 1 && p[0] <= rejected + bad, "{} pulses for {rejected} REJECT + {bad} BAD: {stdout}", p[0]);
    let all = numbers(&stdout, "all runs");
    assert_eq!(all[0], 2, "two runs in state.json: {stdout}");
    let write_errors = numbers(&stdout, "errors")[3];
    if mount {
        assert!(write_errors > 0, "the full disk made writes fail: {stdout}");
        assert_eq!(stderr.matches("output not written").count(), 1, "failed writes are logged once a minute, not per frame");
    } else {
        assert_eq!(write_errors, 0, "{stdout}");
    }

    // events.jsonl after the restart: every line parses (a torn tail was repaired), run 1's
    // whole lines kept, each frame at most once per run.
    let final_events = read("events.jsonl");
    assert!(final_events.is_empty() || final_events.ends_with('\n'));
    let all_events = parse_events(&final_events, "events.jsonl after the restart");
    let (r1, r2): (Vec<_>, Vec<_>) = all_events.iter().partition(|e| e.1 <= kill_ms);
    // A torn tail that is a whole JSON object (only its `\n` missing) is completed, else dropped.
    let tail_kept = usize::from(torn_bytes > 0 && serde_json::from_str::<serde_json::Value>(&after_kill[whole.len()..]).is_ok());
    assert_eq!(r1.len(), run1.len() + tail_kept, "run 1's whole lines are kept, its torn tail repaired or dropped");
    let n2 = assert_unique(r2.iter().map(|e| e.0), "run 2");
    if mount {
        assert!(n2 > 0 && n2 < REPLAY_FRAMES as usize, "run 2's events fit until the disk was full: {n2}");
    } else {
        assert_eq!(n2, REPLAY_FRAMES as usize, "one event per frame");
        let bad_events = r2.iter().filter(|e| e.2 == "BAD").count() as u64;
        assert_eq!(bad_events, bad);
    }
    assert_eq!(PANICS.load(Ordering::SeqCst), 0);
    assert!(!stderr.contains("panicked"), "run 2 panicked: {stderr}");
    assert!(!read("run1.err").contains("panicked"), "run 1 panicked");
    println!(
        "SOAK process: run 1 SIGKILLed at frame ~{lines_at_kill} (K = {kill_at}; {} events kept, torn tail {torn_bytes} bytes); run 2 on the same folder{}: \
         {frames} frames = inspected {inspected} (OK {ok}, REJECT {rejected}) + late {late} + bad {bad}, {} pulses, {missed} missed, {write_errors} failed output writes, {n2} events written; exit 0, line inactive; test {:.1} s",
        run1.len(),
        if mount { " (tmpfs full: ENOSPC)" } else { " (no tmpfs: not root)" },
        p[0],
        t_start.elapsed().as_secs_f64()
    );
}
