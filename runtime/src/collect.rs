//! Collecting training images from the line (`runtime collect`, issue 16, item 1): frames from
//! the configured camera (or replay), cropped to the ROI at full resolution, saved as lossless
//! PNG into `<out>/train/good/`, the layout `trainer train --data <out>` reads.
//!
//! A part standing still under the camera gives the same frame again and again; such frames add
//! nothing to training. The rule: a frame is saved only when the mean absolute difference of its
//! 8-bit RGB samples (after the ROI crop) to the last saved frame is at least `min_change` grey
//! levels ([`DEFAULT_MIN_CHANGE`]); a frame of another size always counts as changed. Frames that
//! cannot be read are counted and skipped; nothing is overwritten: names carry the run's start
//! time (`c<unix ms>_<n>.png`). Images are the line's 8-bit frames as the model sees them (`Y16`
//! and 16-bit files scaled by their bit depth); a grey frame (R = G = B everywhere) is saved as a
//! grey PNG, so the trainer records the model as trained on grey images.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use image::RgbImage;

use crate::capture::{CaptureError, FrameSource};
use crate::preprocess::Roi;

/// Default of `--min-change`: 2 grey levels of mean absolute difference (sensor noise on a still
/// scene stays below it on the cameras we know; a part moving into view is far above).
pub const DEFAULT_MIN_CHANGE: f64 = 2.0;

/// What to collect.
#[derive(Debug, Clone)]
pub struct CollectOptions {
    /// Images to save; the run stops then (or when the source ends or a signal comes).
    pub count: usize,
    /// Data set root: images go to `<out>/train/good/`.
    pub out: PathBuf,
    /// Region saved, px; the whole frame when `None`.
    pub roi: Option<Roi>,
    /// Smallest mean absolute difference to the last saved image, grey levels (0..=255), for a
    /// frame to be saved (0 saves every frame).
    pub min_change: f64,
    /// Longest wait for one frame.
    pub frame_timeout: Duration,
    pub progress: bool,
}

/// What a collection run did.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectSummary {
    /// Where the images went (`<out>/train/good`).
    pub folder: PathBuf,
    pub saved: Vec<PathBuf>,
    /// Frames skipped as unchanged (a part standing still).
    pub unchanged: usize,
    /// Frames that could not be read or whose ROI did not fit (logged with the reason).
    pub bad: usize,
    /// Why the run ended: `count reached`, `source ended` or `stopped by a signal`.
    pub stopped_because: &'static str,
}

/// Mean absolute difference of two equally sized 8-bit images, grey levels; `None` when the sizes
/// differ.
pub fn mean_abs_difference(a: &RgbImage, b: &RgbImage) -> Option<f64> {
    if a.dimensions() != b.dimensions() {
        return None;
    }
    let sum: u64 = a.as_raw().iter().zip(b.as_raw()).map(|(&x, &y)| u64::from(x.abs_diff(y))).sum();
    Some(sum as f64 / a.as_raw().len().max(1) as f64)
}

/// Reads frames from `source` and saves changed ones until `opts.count` are saved, the source
/// ends, or `stop` is set. The folder is created with the first image.
///
/// # Errors
/// `opts.count` is 0, `min_change` is outside 0..=255, the ROI does not fit the frames (said at
/// the first frame, nothing saved), no image at all was saved, the folder cannot be created, an
/// image cannot be written, or the source fails in a way it cannot recover from (a V4L2 camera is
/// reopened by [`crate::capture::ReopeningSource`] and does not end the run).
pub fn collect(source: &mut dyn FrameSource, opts: &CollectOptions, stop: &AtomicBool) -> anyhow::Result<CollectSummary> {
    anyhow::ensure!(opts.count > 0, "--count must be at least 1");
    anyhow::ensure!((0.0..=255.0).contains(&opts.min_change), "--min-change {}: expected grey levels in 0..=255", opts.min_change);
    let folder = opts.out.join("train").join("good");
    if folder.exists() && !folder.is_dir() {
        anyhow::bail!("{} is not a folder", folder.display());
    }
    let run = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let bar = crate::progress::bar(opts.count as u64, "collect", opts.progress);
    let mut summary = CollectSummary { folder: folder.clone(), saved: Vec::new(), unchanged: 0, bad: 0, stopped_because: "count reached" };
    let mut last: Option<RgbImage> = None;
    while summary.saved.len() < opts.count {
        if stop.load(Ordering::SeqCst) {
            summary.stopped_because = "stopped by a signal";
            break;
        }
        let frame = match source.next_frame(opts.frame_timeout) {
            Ok(Some(f)) => f,
            Ok(None) => continue,
            Err(CaptureError::EndOfStream { .. }) => {
                summary.stopped_because = "source ended";
                break;
            }
            Err(e @ CaptureError::BadFrame { .. }) => {
                tracing::warn!("skipped: {e}");
                summary.bad += 1;
                continue;
            }
            Err(e) if !e.needs_reopen() => return Err(e.into()),
            Err(e) => {
                tracing::warn!("{e}");
                continue;
            }
        };
        let name = frame.name();
        let (w, h) = (frame.width, frame.height);
        let Some(full) = RgbImage::from_raw(w, h, frame.rgb) else {
            tracing::warn!("skipped {name}: pixel data does not fill {w}x{h} px");
            summary.bad += 1;
            continue;
        };
        let image = match opts.roi {
            // Frames of a source share one size: an ROI that does not fit one fits none.
            Some(r) if r.x.checked_add(r.width).is_none_or(|e| e > w) || r.y.checked_add(r.height).is_none_or(|e| e > h) => {
                anyhow::bail!(
                    "the [roi] (x {} y {} width {} height {}) does not fit {name} ({w}x{h} px) of {}; {} images saved",
                    r.x,
                    r.y,
                    r.width,
                    r.height,
                    source.describe(),
                    summary.saved.len()
                );
            }
            Some(r) => image::imageops::crop_imm(&full, r.x, r.y, r.width, r.height).to_image(),
            None => full,
        };
        if let Some(prev) = &last {
            if mean_abs_difference(prev, &image).is_some_and(|d| d < opts.min_change) {
                summary.unchanged += 1;
                continue;
            }
        }
        if summary.saved.is_empty() {
            std::fs::create_dir_all(&folder).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", folder.display()))?;
        }
        let path = folder.join(format!("c{run}_{:05}.png", summary.saved.len()));
        write_lossless(&path, &image)?;
        summary.saved.push(path);
        last = Some(image);
        bar.inc(1);
    }
    bar.finish_and_clear();
    anyhow::ensure!(
        !summary.saved.is_empty(),
        "no image saved from {} ({}; {} unchanged, {} unreadable)",
        source.describe(),
        summary.stopped_because,
        summary.unchanged,
        summary.bad
    );
    Ok(summary)
}

/// Writes `image` as PNG through a temporary file: grey (one channel) when R = G = B in every
/// pixel, else RGB.
fn write_lossless(path: &std::path::Path, image: &RgbImage) -> anyhow::Result<()> {
    if !image.pixels().all(|p| p[0] == p[1] && p[1] == p[2]) {
        return crate::output::write_png_atomic(path, image);
    }
    let grey = image::GrayImage::from_fn(image.width(), image.height(), |x, y| image::Luma([image.get_pixel(x, y)[0]]));
    let mut buf = Vec::new();
    grey.write_to(&mut std::io::Cursor::new(&mut buf), image::ImageFormat::Png).map_err(|e| anyhow::anyhow!("cannot encode PNG {}: {e}", path.display()))?;
    crate::output::write_atomic(path, &buf, false)?;
    Ok(())
}
