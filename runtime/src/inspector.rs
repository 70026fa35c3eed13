//! The frame -> verdict path, written once (DESIGN.md §6 stages 2-4): check the frame, preprocess
//! (ROI crop, resize to the model input), tract inference, decide. `runtime inspect` (files),
//! `runtime run` (a camera or a replay) and the trainer's export check are drivers over an
//! [`Inspector`]: they read frames, raise the reject line, draw overlays and write events, and
//! differ only in where frames come from and where results go.
//!
//! One behaviour for each case, whatever the driver:
//! - a frame that cannot be inspected (unreadable or truncated file, wrong pixel count, a size
//!   outside [`crate::preprocess::size_problem`], an ROI that does not lie inside the frame, a
//!   failed inference) is [`Verdict::Bad`], with the reason;
//! - a pulse is due for [`Verdict::Reject`], and for [`Verdict::Bad`] when the driver's fail-safe
//!   switch is on ([`Verdict::pulses`]);
//! - an overlay is drawn for an inspected frame when the overlay mode asks for it
//!   ([`overlay_wanted`]) and named by [`crate::output::overlay_name`];
//! - every frame gives one event ([`FrameOutcome::event`]) with the per-stage latency.

use std::time::Instant;

use firmware_config::OverlayMode;
use image::{DynamicImage, RgbImage};

use crate::decide::{decide, Verdict};
use crate::events::{now_unix_ms, InspectionEvent, StageLatency};
use crate::infer::{AnomalyModel, Inference};
use crate::overlay::{defect_boxes, draw_overlay_fit, Banner, DefectBox, OverlayFit};
use crate::preprocess::{to_model_input, Roi};

/// Errors building an [`Inspector`].
#[derive(Debug, thiserror::Error)]
pub enum InspectorError {
    #[error("threshold override {0}")]
    Threshold(String),
    #[error("roi x {x} y {y} width {width} height {height}: width and height must be at least 1 px")]
    EmptyRoi { x: u32, y: u32, width: u32, height: u32 },
}

/// Where the threshold an [`Inspector`] judges by comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ThresholdSource {
    /// The model's metadata (set by calibration in the trainer).
    Model,
    /// An override: a CLI flag or `[model].threshold` in the device file.
    Override,
}

/// Owns what judging a frame needs: the model (tract plan and its scratch state), the threshold,
/// the ROI and the output buffers, reused from frame to frame (no allocation per frame beyond the
/// model input). A live model swap replaces the whole Inspector.
pub struct Inspector {
    model: AnomalyModel,
    threshold: f32,
    threshold_source: ThresholdSource,
    roi: Option<Roi>,
    result: Inference,
}

/// The result of judging one frame. Borrows the anomaly map from the [`Inspector`] that made it.
#[derive(Debug, Clone)]
pub struct FrameOutcome<'a> {
    pub verdict: Verdict,
    /// Image score (max of the mean-filtered anomaly map, DESIGN.md §3); `None` unless inspected.
    pub score: Option<f32>,
    /// The threshold the frame was judged by.
    pub threshold: f32,
    /// Why the frame could not be inspected ([`Verdict::Bad`]), naming the file or frame where the
    /// driver knows it.
    pub reason: Option<String>,
    /// True when the frame was fine but inference failed (counted apart on the line).
    pub inference_failed: bool,
    /// Anomaly map of an inspected frame: row-major `map_height x map_width` values in [0, 1] at the
    /// model input size (over the ROI when there is one).
    pub anomaly_map: Option<&'a [f32]>,
    /// (width, height) of the anomaly map, px.
    pub map_size: (u32, u32),
    /// Per-stage latency, ms (`load_ms` and `overlay_ms` are the driver's, left 0 here).
    pub latency: StageLatency,
}

impl FrameOutcome<'static> {
    /// A frame that could not be inspected, with the reason.
    pub fn bad(reason: String, threshold: f32) -> Self {
        Self {
            verdict: Verdict::Bad,
            score: None,
            threshold,
            reason: Some(reason),
            inference_failed: false,
            anomaly_map: None,
            map_size: (0, 0),
            latency: StageLatency::default(),
        }
    }
}

impl FrameOutcome<'_> {
    /// Connected regions of the anomaly map above `level` (relative to the threshold: level 1.0 =
    /// the threshold) with at least `min_pixels` map pixels, largest first; in map pixels. Empty
    /// when the frame was not inspected.
    pub fn defect_boxes(&self, level: f32, min_pixels: usize) -> Vec<DefectBox> {
        match self.anomaly_map {
            Some(m) => defect_boxes(m, self.map_size.0, self.map_size.1, level * self.threshold, min_pixels),
            None => Vec::new(),
        }
    }

    /// The overlay of this outcome on `frame` (the whole frame, RGB8): the anomaly map, the boxes
    /// and a banner with verdict, score and threshold. `None` when the frame was not inspected.
    /// With an ROI the map covers the ROI only, and is drawn over the ROI. `fit` chooses the
    /// size (an overlay file, or the web view's live frame).
    pub fn overlay(&self, frame: &RgbImage, roi: Option<Roi>, fit: OverlayFit) -> Option<RgbImage> {
        let map = self.anomaly_map?;
        let banner = Banner { reject: self.verdict == Verdict::Reject, score: self.score.unwrap_or(f32::NAN), threshold: self.threshold };
        let (mw, mh) = self.map_size;
        Some(match roi {
            None => draw_overlay_fit(frame, map, mw, mh, banner, fit),
            Some(r) => {
                // Heat on the ROI only; the banner and border on the whole frame.
                let mut whole = frame.clone();
                let crop = image::imageops::crop_imm(frame, r.x, r.y, r.width, r.height).to_image();
                let drawn = draw_overlay_fit(&crop, map, mw, mh, banner, fit);
                let drawn = if drawn.dimensions() == crop.dimensions() { drawn } else { image::imageops::resize(&drawn, r.width, r.height, image::imageops::FilterType::Triangle) };
                image::imageops::replace(&mut whole, &drawn, r.x.into(), r.y.into());
                // A live frame: the whole frame at the live size (a no-op for a file overlay).
                if fit == OverlayFit::Live { crate::overlay::resized(&whole, fit).unwrap_or(whole) } else { whole }
            }
        })
    }

    /// The event of this outcome for frame `frame_id` read from `source` (a file path or
    /// `frame <id>`), stamped now; `overlay` is the overlay file the driver wrote, if any. The
    /// driver sets [`InspectionEvent::model`] (the outcome borrows the inspector it names).
    pub fn event(&self, frame_id: u64, source: String, overlay: Option<String>) -> InspectionEvent {
        InspectionEvent {
            time_unix_ms: now_unix_ms(),
            frame_id,
            source,
            verdict: self.verdict,
            score: self.score.filter(|s| s.is_finite()),
            threshold: self.threshold,
            error: self.reason.clone(),
            latency: self.latency.clone(),
            overlay,
            model: None,
        }
    }
}

/// Whether overlay mode `mode` asks for an overlay of a frame judged `verdict`: `all` for every
/// inspected frame, `rejects` for `REJECT` only, `none` never. Frames that were not inspected
/// have no anomaly map and get no overlay.
pub fn overlay_wanted(mode: OverlayMode, verdict: Verdict) -> bool {
    match mode {
        OverlayMode::All => verdict.is_inspected(),
        OverlayMode::Rejects => verdict == Verdict::Reject,
        OverlayMode::None => false,
    }
}

fn ms(since: Instant, until: Instant) -> f64 {
    until.duration_since(since).as_secs_f64() * 1e3
}

impl Inspector {
    /// An inspector judging by `threshold_override` when given, else the model's calibrated
    /// threshold, on `roi` of each frame (px in the frame; the whole frame when `None`).
    ///
    /// Errors: an override that is not a finite number of at least
    /// [`firmware_config::MIN_THRESHOLD`] ([`InspectorError::Threshold`]), an ROI of zero width or
    /// height ([`InspectorError::EmptyRoi`]).
    pub fn new(model: AnomalyModel, threshold_override: Option<f32>, roi: Option<Roi>) -> Result<Self, InspectorError> {
        if let Some(t) = threshold_override {
            if let Some(why) = firmware_config::threshold_problem(t) {
                return Err(InspectorError::Threshold(why));
            }
        }
        if let Some(r) = roi {
            if r.width == 0 || r.height == 0 {
                return Err(InspectorError::EmptyRoi { x: r.x, y: r.y, width: r.width, height: r.height });
            }
        }
        let (threshold, threshold_source) = match threshold_override {
            Some(t) => (t, ThresholdSource::Override),
            None => (model.metadata.threshold, ThresholdSource::Model),
        };
        let (w, h) = model.input_size();
        let result = Inference { anomaly_map: Vec::with_capacity((w * h) as usize), score: 0.0 };
        Ok(Self { model, threshold, threshold_source, roi, result })
    }

    /// Another inspector on the same model, threshold and ROI with its own execution state and
    /// buffers (tract: a new state on the same optimised plan, no second load), for another
    /// inference worker.
    ///
    /// # Errors
    /// The engine cannot start another state (ONNX Runtime: another session on the same bytes).
    pub fn twin(&self) -> Result<Self, crate::infer::InferError> {
        let model = self.model.twin()?;
        let (w, h) = model.input_size();
        Ok(Self { model, threshold: self.threshold, threshold_source: self.threshold_source, roi: self.roi, result: Inference { anomaly_map: Vec::with_capacity((w * h) as usize), score: 0.0 } })
    }

    /// The threshold frames are judged by.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Judges the next frames by `threshold` (an override: the web API's threshold change).
    ///
    /// # Errors
    /// [`InspectorError::Threshold`] for a value that is not a finite number of at least
    /// [`firmware_config::MIN_THRESHOLD`]; the threshold is then unchanged.
    pub fn set_threshold(&mut self, threshold: f32) -> Result<(), InspectorError> {
        if let Some(why) = firmware_config::threshold_problem(threshold) {
            return Err(InspectorError::Threshold(why));
        }
        self.threshold = threshold;
        self.threshold_source = ThresholdSource::Override;
        Ok(())
    }

    /// Where [`Inspector::threshold`] comes from.
    pub fn threshold_source(&self) -> ThresholdSource {
        self.threshold_source
    }

    /// The ROI, px in the frame.
    pub fn roi(&self) -> Option<Roi> {
        self.roi
    }

    /// The model (metadata, input size, path).
    pub fn model(&self) -> &AnomalyModel {
        &self.model
    }

    /// Why a `width` x `height` px frame cannot be inspected with this ROI, if it cannot: a size
    /// outside [`crate::preprocess::size_problem`]'s limits or an ROI not inside the frame.
    pub fn frame_problem(&self, width: u32, height: u32) -> Option<String> {
        if let Some(why) = crate::preprocess::size_problem(width, height) {
            return Some(format!("frame of {why}"));
        }
        if let Some(r) = self.roi {
            if r.x as u64 + r.width as u64 > width as u64 || r.y as u64 + r.height as u64 > height as u64 {
                return Some(format!("roi x {} y {} width {} height {} does not fit the {width}x{height} px frame", r.x, r.y, r.width, r.height));
            }
        }
        None
    }

    /// Judges one frame (any decoded image: grey or RGB, 8 or 16 bit): frame check, ROI crop,
    /// resize to the model input, tract inference, decision. Never fails: a frame that cannot be
    /// inspected is [`Verdict::Bad`] with the reason (see the module docs); `name` (the file or
    /// `frame <id>`) goes into that reason.
    pub fn inspect(&mut self, image: &DynamicImage, name: &str) -> FrameOutcome<'_> {
        let t0 = Instant::now();
        if let Some(why) = self.frame_problem(image.width(), image.height()) {
            return FrameOutcome::bad(format!("{name}: {why}"), self.threshold);
        }
        let (w, h) = self.model.input_size();
        let input = to_model_input(image, self.roi, w, h);
        let t1 = Instant::now();
        let ran = self.model.infer_into(&input.chw, &mut self.result);
        let t2 = Instant::now();
        if let Err(e) = ran {
            let mut bad = FrameOutcome::bad(format!("{name}: {e}"), self.threshold);
            bad.inference_failed = true;
            bad.latency = StageLatency { preprocess_ms: ms(t0, t1), infer_ms: ms(t1, t2), ..Default::default() };
            return bad;
        }
        let score = self.result.score;
        let verdict = decide(score, self.threshold);
        let t3 = Instant::now();
        FrameOutcome {
            verdict,
            score: Some(score),
            threshold: self.threshold,
            reason: None,
            inference_failed: false,
            anomaly_map: Some(&self.result.anomaly_map),
            map_size: (w, h),
            latency: StageLatency { load_ms: 0.0, preprocess_ms: ms(t0, t1), infer_ms: ms(t1, t2), decide_ms: ms(t2, t3), overlay_ms: 0.0 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inspector(dir: &std::path::Path, roi: Option<Roi>, threshold: Option<f32>) -> Inspector {
        let path = dir.join("m.onnx");
        // Score = mean brightness of the input; threshold 0.5 in the metadata.
        crate::synthetic::write_brightness_model(&path, 32, 16, 0.5).unwrap();
        Inspector::new(AnomalyModel::load(&path).unwrap(), threshold, roi).unwrap()
    }

    fn grey(w: u32, h: u32, v: u8) -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_pixel(w, h, image::Rgb([v, v, v])))
    }

    #[test]
    fn verdict_score_and_map_of_each_kind_of_frame() {
        let d = tempfile::tempdir().unwrap();
        let mut ins = inspector(d.path(), None, None);
        assert_eq!(ins.threshold_source(), ThresholdSource::Model);
        let o = ins.inspect(&grey(64, 32, 204), "bright.png");
        assert_eq!(o.verdict, Verdict::Reject);
        assert!((o.score.unwrap() - 0.8).abs() < 1e-6, "{:?}", o.score);
        assert_eq!(o.map_size, (32, 16));
        assert!(o.anomaly_map.unwrap().iter().all(|&v| (v - 0.8).abs() < 1e-6));
        let o = ins.inspect(&grey(64, 32, 51), "dark.png");
        assert_eq!((o.verdict, o.reason.as_deref()), (Verdict::Ok, None));
        assert!((o.score.unwrap() - 0.2).abs() < 1e-6);
        let o = ins.inspect(&grey(64, 1, 51), "thin.png");
        assert_eq!(o.verdict, Verdict::Bad);
        assert!(o.reason.as_deref().unwrap().starts_with("thin.png: frame of 64x1 px"), "{:?}", o.reason);
        assert!(o.anomaly_map.is_none() && o.score.is_none());
    }

    #[test]
    fn the_roi_is_what_is_judged_and_a_roi_outside_the_frame_is_bad() {
        let d = tempfile::tempdir().unwrap();
        let roi = Roi { x: 32, y: 0, width: 32, height: 16 };
        let mut ins = inspector(d.path(), Some(roi), None);
        // Left half white, right half black: only the black ROI is judged.
        let img = RgbImage::from_fn(64, 16, |x, _| if x < 32 { image::Rgb([255; 3]) } else { image::Rgb([0; 3]) });
        let o = ins.inspect(&DynamicImage::ImageRgb8(img.clone()), "half.png");
        assert_eq!((o.verdict, o.score), (Verdict::Ok, Some(0.0)));
        let drawn = o.overlay(&img, Some(roi), OverlayFit::File).unwrap();
        assert_eq!(drawn.dimensions(), (64, 16), "the overlay keeps the frame size");
        let o = ins.inspect(&grey(48, 16, 0), "small.png");
        assert_eq!(o.verdict, Verdict::Bad);
        assert_eq!(o.reason.as_deref(), Some("small.png: roi x 32 y 0 width 32 height 16 does not fit the 48x16 px frame"));
    }

    #[test]
    fn an_override_replaces_the_model_threshold_and_bad_overrides_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let mut ins = inspector(d.path(), None, Some(0.9));
        assert_eq!((ins.threshold(), ins.threshold_source()), (0.9, ThresholdSource::Override));
        assert_eq!(ins.inspect(&grey(32, 16, 204), "f").verdict, Verdict::Ok);
        let model = || AnomalyModel::load(&d.path().join("m.onnx")).unwrap();
        let e = Inspector::new(model(), Some(f32::NAN), None).err().unwrap().to_string();
        assert!(e.starts_with("threshold override NaN") && e.contains("finite"), "{e}");
        let e = Inspector::new(model(), None, Some(Roi { x: 0, y: 0, width: 0, height: 4 })).err().unwrap().to_string();
        assert!(e.contains("width and height must be at least 1 px"), "{e}");
    }

    #[test]
    fn events_and_overlay_choices() {
        let o = FrameOutcome::bad("x.png: truncated".into(), 0.5);
        let e = o.event(7, "x.png".into(), None);
        assert_eq!((e.frame_id, e.verdict, e.score, e.error.as_deref()), (7, Verdict::Bad, None, Some("x.png: truncated")));
        let want: Vec<bool> = [OverlayMode::All, OverlayMode::Rejects, OverlayMode::None]
            .iter()
            .flat_map(|&m| [Verdict::Ok, Verdict::Reject, Verdict::Bad, Verdict::Late].map(|v| overlay_wanted(m, v)))
            .collect();
        assert_eq!(want, [true, true, false, false, false, true, false, false, false, false, false, false]);
    }
}
