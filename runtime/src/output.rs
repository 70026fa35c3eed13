//! Writing outputs so that a full disk, a write error or a power cut never stops inspection and
//! never leaves a half-written file behind (issue 12):
//!
//! - [`write_atomic`] / [`write_png_atomic`]: the whole file is written to a temporary file in the
//!   same folder and renamed over the target, so the target is either the old or the new file,
//!   never a 0-byte or cut one; the temporary file is removed when a write fails.
//! - [`OutputErrors`]: counts failed output writes and logs them at most once per minute (a full
//!   disk fails every frame; one message per frame would flood the journal).
//! - [`OverlayStore`]: the overlay PNGs of `runtime run` in one folder, capped at
//!   `output.max_saved_images` across restarts (the oldest go first).

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Shortest time between two logged output-write errors.
pub const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// The temporary file [`write_atomic`] writes before renaming: `.<name>.tmp` in the same folder
/// (same file system, so the rename is atomic).
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Writes `bytes` to `path` through a temporary file and a rename. With `sync`, the data and the
/// folder entry are flushed to the device before returning (for files that must survive a power
/// cut: summaries, state). On error the temporary file is removed and `path` is untouched.
///
/// # Errors
/// Any I/O error (ENOSPC, EIO, permissions), with the path in the message.
pub fn write_atomic(path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    let tmp = temp_path(path);
    let result: std::io::Result<()> = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
        drop(f);
        std::fs::rename(&tmp, path)?;
        if sync {
            if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                // Makes the rename itself durable; not every file system lets a folder be synced.
                if let Ok(d) = std::fs::File::open(dir) {
                    let _ = d.sync_all();
                }
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(std::io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display())));
    }
    Ok(())
}

/// Encodes `image` as PNG in memory and writes it with [`write_atomic`] (no sync: an overlay lost
/// in a power cut is not worth an fsync per frame on an SD card).
///
/// # Errors
/// Encoding or writing failed; nothing is left at `path` or at its temporary name.
pub fn write_png_atomic(path: &Path, image: &image::RgbImage) -> anyhow::Result<()> {
    let mut buf = Vec::with_capacity(image.as_raw().len() / 2);
    image
        .write_to(&mut std::io::Cursor::new(&mut buf), image::ImageFormat::Png)
        .map_err(|e| anyhow::anyhow!("cannot encode PNG {}: {e}", path.display()))?;
    write_atomic(path, &buf, false)?;
    Ok(())
}

/// Counts failed output writes (events, overlays, summary) and logs them at most once per
/// [`ERROR_LOG_INTERVAL`], saying how many were not logged since the last message.
#[derive(Debug)]
pub struct OutputErrors {
    count: u64,
    unlogged: u64,
    last_logged: Option<Instant>,
    interval: Duration,
}

impl Default for OutputErrors {
    fn default() -> Self {
        Self::new()
    }
}

impl OutputErrors {
    /// No errors yet; logs at most once per [`ERROR_LOG_INTERVAL`].
    pub fn new() -> Self {
        Self { count: 0, unlogged: 0, last_logged: None, interval: ERROR_LOG_INTERVAL }
    }

    /// Counts one failed write described by `what` (which names the file and the cause); logs it
    /// unless another one was logged less than a minute ago. Returns whether it was logged.
    pub fn record(&mut self, what: &dyn std::fmt::Display) -> bool {
        self.record_at(Instant::now(), what)
    }

    /// [`OutputErrors::record`] at a given time (for tests).
    pub fn record_at(&mut self, now: Instant, what: &dyn std::fmt::Display) -> bool {
        self.count += 1;
        if self.last_logged.is_some_and(|t| now.saturating_duration_since(t) < self.interval) {
            self.unlogged += 1;
            return false;
        }
        tracing::error!(
            output_write_errors = self.count,
            "output not written: {what} ({} more failed writes since the last message; inspection and the reject line go on; next message in {} s at the earliest)",
            self.unlogged,
            self.interval.as_secs()
        );
        self.unlogged = 0;
        self.last_logged = Some(now);
        true
    }

    /// Failed writes so far.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// Name of the overlay written for `frame_id` of the run started at `run_id` (ms since the Unix
/// epoch), relative to the output folder: `overlays/run<R>_frame_<F>.png`, with `_<stem>` of the
/// frame's file before `.png` when it has one (a file in `runtime inspect`, a replayed file on
/// the line), so overlays sort by run and frame and still say which image they show. Both
/// `runtime inspect` and `runtime run` name overlays this way.
pub fn overlay_name(run_id: u128, frame_id: u64, file: Option<&Path>) -> String {
    match file.and_then(|f| f.file_stem()).map(|s| s.to_string_lossy()) {
        Some(stem) => format!("overlays/run{run_id}_frame_{frame_id:08}_{stem}.png"),
        None => format!("overlays/run{run_id}_frame_{frame_id:08}.png"),
    }
}

/// `(run_id, frame_id)` of an overlay file name written by [`overlay_name`]
/// (`run<R>_frame_<F>.png` or `run<R>_frame_<F>_<stem>.png`).
pub fn parse_overlay_name(name: &str) -> Option<(u128, u64)> {
    let rest = name.strip_prefix("run")?.strip_suffix(".png")?;
    let (run, frame) = rest.split_once("_frame_")?;
    let frame = frame.split_once('_').map_or(frame, |(f, _stem)| f);
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(run) || !digits(frame) {
        return None;
    }
    Some((run.parse().ok()?, frame.parse().ok()?))
}

/// The overlays of `runtime run` in one folder, at most `cap` of them, counted across restarts:
/// [`OverlayStore::open`] finds the overlays earlier runs left (by their names, oldest run and
/// frame first) and [`OverlayStore::add`] deletes the oldest when there are more than `cap`.
/// Files with other names (e.g. `runtime inspect`'s) are neither counted nor deleted.
#[derive(Debug)]
pub struct OverlayStore {
    cap: usize,
    saved: VecDeque<PathBuf>,
}

impl OverlayStore {
    /// Scans `dir` (a missing or unreadable folder counts as empty), removes temporary files a
    /// power cut left there (`.*.tmp`) and deletes the oldest overlays beyond `cap` (at least 1).
    pub fn open(dir: &Path, cap: usize) -> Self {
        let mut found: Vec<((u128, u64), PathBuf)> = Vec::new();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && name.ends_with(".tmp") {
                    let _ = std::fs::remove_file(e.path());
                } else if let Some(key) = parse_overlay_name(&name) {
                    found.push((key, e.path()));
                }
            }
        }
        found.sort();
        let mut store = Self { cap: cap.max(1), saved: found.into_iter().map(|(_, p)| p).collect() };
        store.trim();
        store
    }

    /// Records a newly written overlay and deletes the oldest while more than `cap` are kept.
    pub fn add(&mut self, path: PathBuf) {
        self.saved.push_back(path);
        self.trim();
    }

    /// Overlays kept now, oldest first.
    pub fn len(&self) -> usize {
        self.saved.len()
    }

    /// True when no overlay is kept.
    pub fn is_empty(&self) -> bool {
        self.saved.is_empty()
    }

    fn trim(&mut self) {
        while self.saved.len() > self.cap {
            if let Some(old) = self.saved.pop_front() {
                if let Err(e) = std::fs::remove_file(&old) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!("cannot delete old overlay {}: {e}", old.display());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_counted_every_time_and_logged_once_per_minute() {
        let mut e = OutputErrors::new();
        let t0 = Instant::now();
        assert!(e.record_at(t0, &"a"), "the first error is logged");
        for s in 1..60 {
            assert!(!e.record_at(t0 + Duration::from_secs(s), &"b"), "second {s}: not logged again within a minute");
        }
        assert!(e.record_at(t0 + Duration::from_secs(60), &"c"), "logged again after a minute");
        assert!(!e.record_at(t0 + Duration::from_secs(61), &"d"));
        assert_eq!(e.count(), 62);
    }

    #[test]
    fn atomic_write_to_a_full_device_leaves_nothing_behind() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("summary.json");
        std::fs::write(&target, b"old").unwrap();
        // The temporary name is a link to /dev/full: the write fails with ENOSPC.
        std::os::unix::fs::symlink("/dev/full", temp_path(&target)).unwrap();
        let err = write_atomic(&target, b"new contents", false).unwrap_err();
        assert_eq!(err.raw_os_error(), None, "wrapped with the path");
        assert!(err.to_string().contains("summary.json") && err.to_string().contains("No space left"), "{err}");
        assert_eq!(std::fs::read(&target).unwrap(), b"old", "the old file is untouched");
        assert!(!temp_path(&target).exists() && std::fs::symlink_metadata(temp_path(&target)).is_err(), "temporary file removed");
        write_atomic(&target, b"new", true).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
    }

    #[test]
    fn png_write_failure_leaves_no_empty_file() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("00001_x.png");
        std::os::unix::fs::symlink("/dev/full", temp_path(&target)).unwrap();
        let img = image::RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3]));
        assert!(write_png_atomic(&target, &img).is_err());
        assert!(std::fs::symlink_metadata(&target).is_err(), "no overlay file at all, not a 0-byte one");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "no temporary file either");
        write_png_atomic(&target, &img).unwrap();
        assert_eq!(image::open(&target).unwrap().to_rgb8(), img);
    }

    #[test]
    fn overlay_names_round_trip() {
        let n = overlay_name(1_733_000_000_123, 42, None);
        assert_eq!(n, "overlays/run1733000000123_frame_00000042.png");
        assert_eq!(parse_overlay_name(n.strip_prefix("overlays/").unwrap()), Some((1_733_000_000_123, 42)));
        let n = overlay_name(7, 3, Some(Path::new("/data/test/crack/kos_01_part5.jpg")));
        assert_eq!(n, "overlays/run7_frame_00000003_kos_01_part5.png");
        assert_eq!(parse_overlay_name(n.strip_prefix("overlays/").unwrap()), Some((7, 3)));
        for bad in ["00001_g.png", "run_frame_1.png", "run12_frame_.png", "run1_frame_2.png.tmp", "runx_frame_2.png"] {
            assert_eq!(parse_overlay_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_cap_holds_across_restarts_and_drops_the_oldest() {
        let d = tempfile::tempdir().unwrap();
        let touch = |name: &str| {
            let p = d.path().join(name);
            std::fs::write(&p, b"png").unwrap();
            p
        };
        // Earlier runs left 5 overlays (and a temporary file from a power cut), inspect one of its
        // own. Run 999 is older than run 1000 (as text it would sort after it).
        touch("run999_frame_00000009.png");
        for f in [3, 1, 4, 2] {
            touch(&format!("run1000_frame_{f:08}.png"));
        }
        touch(".run1000_frame_00000005.png.tmp");
        touch("00001_good.png");
        let mut s = OverlayStore::open(d.path(), 3);
        assert_eq!(s.len(), 3);
        let names = || {
            let mut v: Vec<String> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
            v.sort();
            v
        };
        assert_eq!(names(), ["00001_good.png", "run1000_frame_00000002.png", "run1000_frame_00000003.png", "run1000_frame_00000004.png"]);
        // The next run.
        s.add(touch("run2000_frame_00000000.png"));
        s.add(touch("run2000_frame_00000001.png"));
        assert_eq!(names(), ["00001_good.png", "run1000_frame_00000004.png", "run2000_frame_00000000.png", "run2000_frame_00000001.png"]);
        drop(s);
        let s = OverlayStore::open(d.path(), 1);
        assert_eq!(s.len(), 1);
        assert_eq!(names(), ["00001_good.png", "run2000_frame_00000001.png"]);
    }
}
