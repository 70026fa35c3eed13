//! Soak test of the line pipeline (`runtime run`): thousands of frames from a simulated camera
//! faster than inference, with corrupt frames, the camera gone and back, and reject-line write
//! errors. Checks: no panic, every frame accounted once, RSS flat, each reject pulse at the
//! configured delay after its frame's capture, the line inactive after shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e_tests::{embedded_data, trained};
use runtime::capture::{CaptureError, Frame, FrameSource, ReopeningSource};
use runtime::line::{run_line, LineOptions};
use runtime::reject::{LineDriver, ScheduledReject, SimulatedLine};

const FRAMES: u64 = 3000;
const FPS: f64 = 400.0;
const BAD_EVERY: u64 = 97;
const DISCONNECT_AT: u64 = 1500;
const DELAY_MS: u64 = 400;
const PULSE_MS: u64 = 20;

/// A camera streaming the embedded test images at `FPS`, with faults; shared state survives
/// reopening so the frame schedule continues.
struct Camera {
    images: Arc<Vec<(u32, u32, Vec<u8>)>>,
    produced: Arc<AtomicU64>,
    disconnected: Arc<AtomicBool>,
    t0: Instant,
    captured: Arc<Mutex<HashMap<u64, Instant>>>,
}

impl FrameSource for Camera {
    fn next_frame(&mut self, _timeout: Duration) -> Result<Option<Frame>, CaptureError> {
        let n = self.produced.load(Ordering::SeqCst);
        if n == DISCONNECT_AT && !self.disconnected.swap(true, Ordering::SeqCst) {
            return Err(CaptureError::Disconnected { device: "/dev/video-sim".into(), reason: "ENODEV (injected)".into() });
        }
        let due = self.t0 + Duration::from_secs_f64(n as f64 / FPS);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        self.produced.fetch_add(1, Ordering::SeqCst);
        let now = Instant::now();
        // ReopeningSource renumbers ids from 0 in delivery order: the n-th delivery is id n.
        self.captured.lock().unwrap().insert(n, now);
        if n % BAD_EVERY == BAD_EVERY - 1 {
            return Err(CaptureError::BadFrame { device: "/dev/video-sim".into(), frame_id: n, reason: "corrupt MJPEG (injected)".into() });
        }
        let (w, h, rgb) = &self.images[n as usize % self.images.len()];
        Ok(Some(Frame { id: n, width: *w, height: *h, rgb: rgb.clone(), captured_at: now }))
    }

    fn describe(&self) -> String {
        "simulated camera".into()
    }
}

/// A simulated reject line whose every 5th write fails.
struct FlakyLine {
    inner: SimulatedLine,
    writes: u64,
    failures: Arc<AtomicU64>,
}

impl LineDriver for FlakyLine {
    fn set_active(&mut self, active: bool) -> anyhow::Result<()> {
        self.writes += 1;
        if self.writes % 5 == 0 {
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

#[test]
fn thousands_of_frames_with_faults_are_all_accounted_and_pulses_are_on_time() {
    let t = trained(30);
    let model = runtime::infer::AnomalyModel::load(&t.onnx).unwrap();
    let images: Vec<(u32, u32, Vec<u8>)> = runtime::dataset::test_samples(&embedded_data())
        .unwrap()
        .iter()
        .map(|s| {
            let img = runtime::preprocess::load_image(&s.image).unwrap().to_rgb8();
            (img.width(), img.height(), img.into_raw())
        })
        .collect();
    let images = Arc::new(images);
    let produced = Arc::new(AtomicU64::new(0));
    let disconnected = Arc::new(AtomicBool::new(false));
    let captured = Arc::new(Mutex::new(HashMap::new()));
    let t0 = Instant::now();
    let opens = Arc::new(AtomicU64::new(0));
    let (im, pr, dc, cp, op) = (images.clone(), produced.clone(), disconnected.clone(), captured.clone(), opens.clone());
    // The camera is gone for the first two reopen attempts after the disconnect.
    let factory = move || {
        let k = op.fetch_add(1, Ordering::SeqCst);
        if k == 1 || k == 2 {
            return Err(CaptureError::Open { device: "/dev/video-sim".into(), reason: "No such device (injected)".into() });
        }
        Ok(Camera { images: im.clone(), produced: pr.clone(), disconnected: dc.clone(), t0, captured: cp.clone() })
    };
    let source = ReopeningSource::new(factory, Duration::from_millis(20));

    let line = SimulatedLine::new();
    let failures = Arc::new(AtomicU64::new(0));
    let mut reject = ScheduledReject::new(
        "soak",
        FlakyLine { inner: line.clone(), writes: 0, failures: failures.clone() },
        Duration::from_millis(DELAY_MS),
        Duration::from_millis(PULSE_MS),
    )
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut opts = LineOptions::new(dir.path());
    opts.max_frames = Some(FRAMES);
    opts.max_saved_images = 20;
    // RSS sampled every 50 ms while the line runs.
    let done = Arc::new(AtomicBool::new(false));
    let d2 = done.clone();
    let sampler = std::thread::spawn(move || {
        let mut v = Vec::new();
        while !d2.load(Ordering::SeqCst) {
            v.push(rss_mib());
            std::thread::sleep(Duration::from_millis(50));
        }
        v
    });
    let summary = run_line(Box::new(source), model, &mut reject, &opts, Arc::new(AtomicBool::new(false))).unwrap();
    done.store(true, Ordering::SeqCst);
    let rss = sampler.join().unwrap();

    let c = &summary.counters;
    println!("soak: {c:?}\nwall {:.1} s, latency {:?}", summary.wall_s, summary.latency);
    // Every frame accounted exactly once.
    assert_eq!(c.frames, FRAMES);
    assert_eq!(c.inspected + c.late + c.bad, c.frames, "{c:?}");
    assert_eq!(c.ok + c.rejected, c.inspected);
    assert_eq!(c.bad, FRAMES / BAD_EVERY, "every injected corrupt frame is counted as bad");
    assert!(c.late > FRAMES / 2, "frames come faster than inference: most are late ({})", c.late);
    assert!(c.inspected >= 20, "inference kept running: {}", c.inspected);
    let events = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
    assert_eq!(events.lines().count() as u64, FRAMES, "one event per frame");
    let mut verdicts: HashMap<String, u64> = HashMap::new();
    let mut rejected_ids = Vec::new();
    for l in events.lines() {
        let e: serde_json::Value = serde_json::from_str(l).unwrap();
        let v = e["verdict"].as_str().unwrap().to_string();
        if v == "REJECT" || v == "BAD" {
            rejected_ids.push(e["frame_id"].as_u64().unwrap());
        }
        *verdicts.entry(v).or_default() += 1;
    }
    assert_eq!(verdicts.get("LATE").copied().unwrap_or(0), c.late);
    assert_eq!(verdicts.get("BAD").copied().unwrap_or(0), c.bad);
    // The camera came back: frames after the disconnect were delivered.
    assert!(opens.load(Ordering::SeqCst) >= 4, "reopened after the injected disconnect");
    assert!(summary.stopped_because == "frame limit", "{}", summary.stopped_because);
    // Overlays on disk are bounded.
    assert!(std::fs::read_dir(dir.path().join("overlays")).unwrap().count() <= 20);

    // RSS flat: the last quarter of the run is within 25 MiB of the second quarter.
    assert!(rss.len() >= 8, "{} RSS samples", rss.len());
    let q = rss.len() / 4;
    let early = rss[q..2 * q].iter().cloned().fold(0.0, f64::max);
    let late = rss[3 * q..].iter().cloned().fold(0.0, f64::max);
    println!("RSS MiB: second quarter max {early:.1}, last quarter max {late:.1}");
    assert!(late - early < 25.0, "RSS grew from {early:.1} to {late:.1} MiB");

    // Pulses: each rising edge is DELAY_MS after the capture of a rejected frame.
    let captured = captured.lock().unwrap();
    let due: Vec<Instant> = rejected_ids.iter().map(|id| captured[id] + Duration::from_millis(DELAY_MS)).collect();
    let periods = line.active_periods();
    assert!(!periods.is_empty(), "pulses were driven");
    let mut worst = 0.0f64;
    for (rise, _) in &periods {
        let at = line.start() + *rise;
        let err = due.iter().map(|d| if *d > at { (*d - at).as_secs_f64() } else { (at - *d).as_secs_f64() }).fold(f64::MAX, f64::min) * 1e3;
        worst = worst.max(err);
    }
    println!(
        "pulses: {} reject requests, {} active periods, {} injected write failures, worst rise error {worst:.2} ms",
        rejected_ids.len(),
        periods.len(),
        failures.load(Ordering::SeqCst)
    );
    assert!(worst < 10.0, "a pulse rose {worst:.2} ms away from its frame's capture + delay");
    assert!(failures.load(Ordering::SeqCst) > 0, "write errors were injected");
    // Injected write failures show up in the counters (pulses not driven as planned).
    assert!(c.pulses_missed >= 1 && c.pulses_missed <= failures.load(Ordering::SeqCst) + c.rejected + c.bad, "{c:?}");
    // Shut down: the line is inactive (the last recorded level).
    assert!(!line.is_active(), "line left active");
}
