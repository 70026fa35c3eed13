//! What the web view and `/metrics` show, kept up to date by the line's output thread
//! ([`LiveView::record_event`], [`LiveView::show`]) and read by the HTTP handlers. Every update
//! takes one short lock (JPEG encoding happens before it), so a slow or stalled browser never
//! holds up the line: handlers copy what they need and release the lock before writing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use image::RgbImage;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::decide::Verdict;
use crate::events::InspectionEvent;

/// How long one request for the live frame keeps it drawn, ms.
pub const WATCH_MS: u64 = 3000;

/// Events kept for `/api/events?since=`.
const EVENTS_KEPT: usize = 1000;
/// Recent frames the latency percentiles, the frame rate and the score histogram are taken over.
const RECENT: usize = 500;

/// Label of `ffcad_frames_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabel {
    verdict: String,
}

/// Labels of `ffcad_model_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
    sha256: String,
}

/// The Prometheus metrics of the line (names follow Prometheus conventions: `_total` counters,
/// `_seconds` units).
struct Metrics {
    registry: Registry,
    frames: Family<VerdictLabel, Counter>,
    inference: Histogram,
    decision: Histogram,
    last_score: Gauge<f64, AtomicU64>,
    threshold: Gauge<f64, AtomicU64>,
    model_info: Family<ModelLabels, Gauge>,
    pulses_missed: Gauge,
    false_rejects_marked: Counter,
    drift_alarm: Gauge,
    drift_median: Gauge<f64, AtomicU64>,
}

impl Metrics {
    fn new(mqtt: Option<&crate::mqtt::MqttMetrics>) -> Self {
        let mut registry = Registry::with_prefix("ffcad");
        if let Some(m) = mqtt {
            m.register(&mut registry);
        }
        let frames = Family::<VerdictLabel, Counter>::default();
        registry.register("frames", "Frames from the source by verdict (ok, reject, bad: not inspectable, late: inference busy)", frames.clone());
        // 1 ms .. ~4 s.
        let buckets = || prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 13);
        let inference = Histogram::new(buckets());
        registry.register("inference_seconds", "Model inference time per inspected frame", inference.clone());
        let decision = Histogram::new(buckets());
        registry.register("preprocess_inference_seconds", "Preprocessing + inference + decision time per inspected frame", decision.clone());
        let last_score = Gauge::<f64, AtomicU64>::default();
        registry.register("last_score", "Image score of the last inspected frame", last_score.clone());
        let threshold = Gauge::<f64, AtomicU64>::default();
        registry.register("threshold", "Image score above which a frame is REJECT", threshold.clone());
        let model_info = Family::<ModelLabels, Gauge>::default();
        registry.register("model_info", "The model judging frames (1 for the current one)", model_info.clone());
        let pulses_missed = Gauge::default();
        registry.register("pulses_missed", "REJECT parts whose pulse was not driven in time in this run", pulses_missed.clone());
        let false_rejects_marked = Counter::default();
        registry.register("false_rejects_marked", "Rejects an operator marked as false in the web view", false_rejects_marked.clone());
        let drift_alarm = Gauge::default();
        registry.register("drift_alarm", "1 while the drift watch's alarm is up: recent scores moved away from the good images'", drift_alarm.clone());
        let drift_median = Gauge::<f64, AtomicU64>::default();
        registry.register("drift_median_score", "Median score of the recent frames at the drift watch's last change", drift_median.clone());
        Self { registry, frames, inference, decision, last_score, threshold, model_info, pulses_missed, false_rejects_marked, drift_alarm, drift_median }
    }
}

/// The model as the page shows it.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ModelView {
    /// `name@sha256[..12]`.
    pub model: String,
    pub sha256: String,
    pub threshold: f32,
    /// How the threshold was set (method, target false-reject rate, good images), from the
    /// model's metadata.
    pub calibration: serde_json::Value,
}

/// The latest frame of the live view.
#[derive(Clone)]
pub struct LiveFrame {
    pub frame_id: u64,
    pub verdict: Verdict,
    pub score: Option<f32>,
    pub jpeg: Arc<[u8]>,
}

/// A reject in the gallery.
#[derive(Clone, Serialize)]
pub struct GalleryItem {
    /// The event's sequence number (as in `/api/events`).
    pub seq: u64,
    pub event: InspectionEvent,
    #[serde(skip)]
    pub jpeg: Option<Arc<[u8]>>,
    /// Marked as a false reject by an operator.
    pub marked_false: bool,
}

#[derive(Default, Clone, Copy, Serialize)]
struct Counts {
    frames: u64,
    inspected: u64,
    ok: u64,
    reject: u64,
    late: u64,
    bad: u64,
}

#[derive(Default)]
struct Inner {
    model: ModelView,
    counts: Counts,
    pulses_missed: u64,
    infer_ms: VecDeque<f64>,
    stage_ms: VecDeque<f64>,
    frame_times: VecDeque<Instant>,
    scores: VecDeque<f32>,
    events: VecDeque<(u64, InspectionEvent)>,
    next_seq: u64,
    live: Option<LiveFrame>,
    gallery: VecDeque<GalleryItem>,
    /// The drift watch's last change, if any.
    drift: Option<crate::line::drift::DriftAlarm>,
}

/// The live state of one `runtime run` for the web view ([`crate::web`]).
pub struct LiveView {
    inner: Mutex<Inner>,
    metrics: Metrics,
    started: Instant,
    live_every: Duration,
    /// When the next live frame is due, ms since `started` (the inference side takes it).
    next_live_ms: AtomicU64,
    /// Until when (ms since start) a client is taken to be watching the live frame: each
    /// `/api/live.jpg` extends it by [`WATCH_MS`]. Nobody watching: no live frame is drawn.
    watched_until_ms: AtomicU64,
    gallery_cap: usize,
}

impl std::fmt::Debug for LiveView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveView").field("live_every", &self.live_every).finish_non_exhaustive()
    }
}

fn push_capped<T>(q: &mut VecDeque<T>, v: T, cap: usize) {
    if q.len() == cap {
        q.pop_front();
    }
    q.push_back(v);
}

/// Nearest-rank percentile of `v`, ms (0 without samples).
fn percentile(v: &VecDeque<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    crate::bench::percentile(&v.iter().copied().collect::<Vec<_>>(), p)
}

impl LiveView {
    /// A view of a line whose events are numbered from `first_seq` (the frames counted in
    /// `state.json` by earlier runs: numbers keep growing across restarts), refreshing the live
    /// frame at most `live_fps` times a second and keeping `gallery` rejects; `/metrics` shows
    /// the MQTT publisher's counters when `mqtt` is given.
    pub fn new(model: ModelView, first_seq: u64, live_fps: f32, gallery: usize, mqtt: Option<&crate::mqtt::MqttMetrics>) -> Arc<Self> {
        let view = Arc::new(Self {
            inner: Mutex::new(Inner { next_seq: first_seq, ..Inner::default() }),
            metrics: Metrics::new(mqtt),
            started: Instant::now(),
            live_every: Duration::from_secs_f32(1.0 / live_fps.max(0.1)),
            next_live_ms: AtomicU64::new(0),
            // The first frames are drawn, so a page that opens finds one.
            watched_until_ms: AtomicU64::new(WATCH_MS),
            gallery_cap: gallery.max(1),
        });
        view.set_model(model);
        view
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the inference side should draw this frame for the live view: at most `live_fps`
    /// a second (the first caller after the due time gets it), and only while a client watches
    /// (asked for the live frame in the last [`WATCH_MS`]), so an unwatched view costs nothing.
    pub fn live_due(&self) -> bool {
        let now = self.started.elapsed().as_millis() as u64;
        let due = self.next_live_ms.load(Ordering::Relaxed);
        let every = self.live_every.as_millis() as u64;
        // A quarter interval early is on time: frames that come at live_fps a second with a few
        // ms of jitter are all drawn, on the cadence due + every; after a gap, from now.
        if now + every / 4 < due || now >= self.watched_until_ms.load(Ordering::Relaxed) {
            return false;
        }
        let next = if now.saturating_sub(due) < every { due + every } else { now + every };
        self.next_live_ms.compare_exchange(due, next, Ordering::SeqCst, Ordering::Relaxed).is_ok()
    }

    /// The model now judging frames (at start and after a swap or rollback).
    pub fn set_model(&self, model: ModelView) {
        self.metrics.model_info.clear();
        self.metrics.model_info.get_or_create(&ModelLabels { model: model.model.clone(), sha256: model.sha256.clone() }).set(1);
        self.metrics.threshold.set(f64::from(model.threshold));
        self.lock().model = model;
    }

    /// Counts one event (every frame has one, in order) and keeps it for `/api/events`;
    /// `overlay` is the frame drawn with its overlay when the line drew one (the latest becomes
    /// the live frame; a REJECT's goes to the gallery).
    pub fn record_event(&self, ev: &InspectionEvent, overlay: Option<&RgbImage>) {
        let label = match ev.verdict {
            Verdict::Ok => "ok",
            Verdict::Reject => "reject",
            Verdict::Bad => "bad",
            Verdict::Late => "late",
        };
        self.metrics.frames.get_or_create(&VerdictLabel { verdict: label.into() }).inc();
        let inspected = ev.verdict.is_inspected();
        if inspected {
            self.metrics.inference.observe(ev.latency.infer_ms / 1e3);
            self.metrics.decision.observe((ev.latency.preprocess_ms + ev.latency.infer_ms + ev.latency.decide_ms) / 1e3);
            if let Some(s) = ev.score {
                self.metrics.last_score.set(f64::from(s));
            }
        }
        // Encoded before taking the lock. A live frame only (not a REJECT for the gallery) is
        // sent at most LIVE_MAX_SIDE_PX long, also when the line drew it for an overlay file.
        let jpeg = overlay.and_then(|img| {
            let smaller = if ev.verdict == Verdict::Reject { None } else { crate::overlay::resized(img, crate::overlay::OverlayFit::Live) };
            encode_jpeg(smaller.as_ref().unwrap_or(img)).ok()
        });
        let mut g = self.lock();
        let c = &mut g.counts;
        c.frames += 1;
        match ev.verdict {
            Verdict::Ok => c.ok += 1,
            Verdict::Reject => c.reject += 1,
            Verdict::Bad => c.bad += 1,
            Verdict::Late => c.late += 1,
        }
        if inspected {
            c.inspected += 1;
            push_capped(&mut g.infer_ms, ev.latency.infer_ms, RECENT);
            push_capped(&mut g.stage_ms, ev.latency.preprocess_ms + ev.latency.infer_ms + ev.latency.decide_ms, RECENT);
            push_capped(&mut g.frame_times, Instant::now(), RECENT);
            if let Some(s) = ev.score {
                push_capped(&mut g.scores, s, RECENT);
            }
        }
        let seq = g.next_seq;
        g.next_seq += 1;
        push_capped(&mut g.events, (seq, ev.clone()), EVENTS_KEPT);
        if let Some(jpeg) = jpeg {
            g.live = Some(LiveFrame { frame_id: ev.frame_id, verdict: ev.verdict, score: ev.score, jpeg: jpeg.clone() });
            if ev.verdict == Verdict::Reject {
                let cap = self.gallery_cap;
                push_capped(&mut g.gallery, GalleryItem { seq, event: ev.clone(), jpeg: Some(jpeg), marked_false: false }, cap);
            }
        }
    }

    /// The drift watch raised or cleared its alarm.
    pub fn set_drift(&self, alarm: &crate::line::drift::DriftAlarm) {
        self.metrics.drift_alarm.set(i64::from(alarm.action == "drift"));
        self.metrics.drift_median.set(alarm.median);
        self.lock().drift = Some(alarm.clone());
    }

    /// REJECT parts not ejected so far in this run.
    pub fn set_pulses_missed(&self, n: u64) {
        self.metrics.pulses_missed.set(n as i64);
        self.lock().pulses_missed = n;
    }

    /// The latest live frame, if any; a client asking for it is watching ([`LiveView::live_due`]).
    pub fn live(&self) -> Option<LiveFrame> {
        self.watched_until_ms.store(self.started.elapsed().as_millis() as u64 + WATCH_MS, Ordering::Relaxed);
        self.lock().live.clone()
    }

    /// Events with a sequence number above `since` (at most 500, oldest first).
    pub fn events_since(&self, since: Option<u64>) -> Vec<(u64, InspectionEvent)> {
        let g = self.lock();
        g.events.iter().filter(|(s, _)| since.is_none_or(|n| *s > n)).take(500).cloned().collect()
    }

    /// The gallery item of event `seq`, if it is still kept.
    pub fn gallery_item(&self, seq: u64) -> Option<GalleryItem> {
        self.lock().gallery.iter().find(|g| g.seq == seq).cloned()
    }

    /// Marks gallery item `seq` as a false reject; false when it is not kept (any more).
    pub fn mark_false(&self, seq: u64) -> bool {
        let mut g = self.lock();
        match g.gallery.iter_mut().find(|g| g.seq == seq) {
            Some(item) => {
                item.marked_false = true;
                self.metrics.false_rejects_marked.inc();
                true
            }
            None => false,
        }
    }

    /// Prometheus / OpenMetrics text exposition of the line's metrics.
    pub fn metrics_text(&self) -> String {
        let mut s = String::new();
        if prometheus_client::encoding::text::encode(&mut s, &self.metrics.registry).is_err() {
            s.clear();
        }
        let uptime = self.started.elapsed().as_secs_f64();
        // Uptime is read at scrape time: a gauge set here would lag by a frame.
        let eof = s.rfind("# EOF").unwrap_or(s.len());
        s.insert_str(eof, &format!("# HELP ffcad_uptime_seconds Seconds since the line started.\n# TYPE ffcad_uptime_seconds gauge\nffcad_uptime_seconds {uptime:.3}\n"));
        s
    }

    /// Everything `/api/status` returns (see the README's API section).
    pub fn status(&self) -> serde_json::Value {
        let g = self.lock();
        let fps = match (g.frame_times.front(), g.frame_times.back()) {
            (Some(a), Some(b)) if g.frame_times.len() > 1 && *b > *a => (g.frame_times.len() - 1) as f64 / (*b - *a).as_secs_f64(),
            _ => 0.0,
        };
        let histogram = score_histogram(g.scores.iter().copied(), g.model.threshold, 20);
        let gallery: Vec<serde_json::Value> = g
            .gallery
            .iter()
            .rev()
            .map(|i| serde_json::json!({"seq": i.seq, "frame_id": i.event.frame_id, "source": i.event.source, "score": i.event.score, "time_unix_ms": i.event.time_unix_ms, "model": i.event.model, "marked_false": i.marked_false}))
            .collect();
        serde_json::json!({
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "model": g.model,
            "counters": {
                "frames": g.counts.frames, "inspected": g.counts.inspected, "ok": g.counts.ok,
                "reject": g.counts.reject, "late": g.counts.late, "bad": g.counts.bad,
                "pulses_missed": g.pulses_missed,
            },
            "latency_ms": {
                "infer_p50": percentile(&g.infer_ms, 50.0), "infer_p95": percentile(&g.infer_ms, 95.0),
                "preprocess_infer_decide_p50": percentile(&g.stage_ms, 50.0), "preprocess_infer_decide_p95": percentile(&g.stage_ms, 95.0),
            },
            "frames_per_s": fps,
            "live_fps": 1.0 / self.live_every.as_secs_f64(),
            "live_frame": g.live.as_ref().map(|l| serde_json::json!({"frame_id": l.frame_id, "verdict": l.verdict, "score": l.score})),
            "score_histogram": histogram,
            "last_seq": g.next_seq.checked_sub(1),
            "drift": g.drift.as_ref().map(|d| serde_json::json!({"alarm": d.action == "drift", "median": d.median, "good_mean": d.good_mean, "bound": d.bound, "window": d.window, "frame_id": d.frame_id, "time_unix_ms": d.time_unix_ms})),
            "gallery": gallery,
        })
    }
}

/// `bins` equal bins of `scores` from 0 to max(2 x threshold, highest score): the page draws them
/// with the threshold as a line.
pub fn score_histogram(scores: impl Iterator<Item = f32>, threshold: f32, bins: usize) -> serde_json::Value {
    let scores: Vec<f32> = scores.filter(|s| s.is_finite()).collect();
    let top = scores.iter().copied().fold(2.0 * threshold, f32::max).max(1e-6);
    let mut counts = vec![0u64; bins];
    for s in &scores {
        let i = ((s / top) * bins as f32).floor().max(0.0) as usize;
        counts[i.min(bins - 1)] += 1;
    }
    serde_json::json!({"max": top, "threshold": threshold, "counts": counts})
}

/// JPEG (quality 80, 4:2:0) of an overlay for the live view and the gallery, by the
/// `jpeg-encoder` crate.
///
/// # Errors
/// A side longer than 65535 px (JPEG's limit; overlays are at most 2048 px) or an encoder error.
pub fn encode_jpeg(img: &RgbImage) -> Result<Arc<[u8]>, jpeg_encoder::EncodingError> {
    let (w, h) = (u16::try_from(img.width()), u16::try_from(img.height()));
    let (Ok(w), Ok(h)) = (w, h) else { return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{}x{} px: a JPEG side is at most 65535 px", img.width(), img.height())).into()) };
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 80).encode(img.as_raw(), w, h, jpeg_encoder::ColorType::Rgb)?;
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_frame_is_sent_at_most_the_live_size_and_a_reject_whole() {
        let v = LiveView::new(ModelView::default(), 0, 10.0, 4, None);
        // An overlay file's image of a 2048x512 frame (as the line draws it with overlays = "all").
        let big = RgbImage::from_pixel(2048, 512, image::Rgb([90, 90, 90]));
        let mut ev = crate::inspector::FrameOutcome::bad("x".into(), 0.5).event(1, "frame 1".into(), None);
        ev.verdict = Verdict::Ok;
        v.record_event(&ev, Some(&big));
        let live = v.live().unwrap();
        let size = |jpeg: &[u8]| image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg).unwrap().to_rgb8().dimensions();
        assert_eq!(size(&live.jpeg), (640, 160), "the live frame at most 640 px long");
        ev.verdict = Verdict::Reject;
        ev.frame_id = 2;
        v.record_event(&ev, Some(&big));
        let seq = v.status()["gallery"][0]["seq"].as_u64().unwrap();
        assert_eq!(size(v.gallery_item(seq).unwrap().jpeg.as_deref().unwrap()), (2048, 512), "the gallery keeps the whole overlay");
    }

    #[test]
    fn jpeg_of_an_overlay_decodes_to_its_pixels() {
        // Left half red, right half a grey ramp: decoded by `image` (zune-jpeg), within JPEG's loss.
        let img = RgbImage::from_fn(256, 104, |x, y| if x < 128 { image::Rgb([220, 30, 30]) } else { image::Rgb([(x - 128) as u8 * 2, (x - 128) as u8 * 2, (x - 128) as u8 * 2 + (y % 2) as u8]) });
        let jpeg = encode_jpeg(&img).unwrap();
        let back = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg).unwrap().to_rgb8();
        assert_eq!(back.dimensions(), (256, 104));
        let worst = img.pixels().zip(back.pixels()).map(|(a, b)| (0..3).map(|k| (i16::from(a.0[k]) - i16::from(b.0[k])).abs()).max().unwrap()).max().unwrap();
        let centre = back.get_pixel(60, 50).0;
        assert!(centre.iter().zip([220, 30, 30]).all(|(a, b)| (i16::from(*a) - b).abs() <= 4), "{centre:?}");
        assert!(worst <= 40, "largest channel error {worst} (the red/grey edge)");
        assert!(encode_jpeg(&RgbImage::new(70_000, 1)).is_err(), "wider than JPEG allows");
    }

    #[test]
    fn the_live_frame_is_drawn_only_while_someone_watches() {
        let model = ModelView { model: "m.onnx@0".into(), sha256: "0".into(), threshold: 0.5, calibration: serde_json::Value::Null };
        // 1000 frames/s: a live frame is due every 1 ms.
        let v = LiveView::new(model, 0, 1000.0, 4, None);
        assert!(v.live_due(), "drawn at start, so a page that opens finds a frame");
        v.watched_until_ms.store(0, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(3));
        assert!(!v.live_due(), "nobody asked for the live frame: none is drawn");
        assert!(v.live().is_none());
        std::thread::sleep(Duration::from_millis(3));
        assert!(v.live_due(), "a client asked: drawn again");
        assert!(!v.live_due(), "at most live_fps a second");
        // 4 frames/s with ±20 ms of jitter: every frame is drawn at live_fps 4 (a frame may come
        // 62 ms early; the margin is for a loaded test machine's sleeps).
        let v = LiveView::new(ModelView { model: "m".into(), sha256: "0".into(), threshold: 0.5, calibration: serde_json::Value::Null }, 0, 4.0, 4, None);
        let start = Instant::now();
        let mut drawn = 0;
        for (i, jitter_ms) in [0i64, 20, -18, 12, -20, 0, 15, -10, 20, -19].into_iter().enumerate() {
            let at = Duration::from_millis((i as i64 * 250 + 30 + jitter_ms) as u64);
            std::thread::sleep(at.saturating_sub(start.elapsed()));
            drawn += usize::from(v.live_due());
        }
        assert_eq!(drawn, 10, "frames at the live rate, a few ms early or late, are all drawn");
    }

    #[test]
    fn histogram_bins_and_top_follow_the_threshold() {
        let h = score_histogram([0.0, 0.05, 0.1, 0.19, 0.5].into_iter(), 0.1, 4);
        // top = max(0.2, 0.5) = 0.5: bins of 0.125.
        assert_eq!(h["counts"], serde_json::json!([3, 1, 0, 1]));
        assert!((h["max"].as_f64().unwrap() - 0.5).abs() < 1e-6);
        let h = score_histogram([0.05f32, f32::NAN].into_iter(), 0.1, 2);
        assert_eq!(h["counts"], serde_json::json!([1, 0]), "NaN left out; top = 2 x threshold");
    }
}
