//! [`ReplaySource`]: a recorded image sequence played as a camera at a given frame rate, for
//! demos and soak tests. Frames are decoded by [`crate::preprocess::load_image`] (PNG, JPEG; grey,
//! RGB, 16-bit), with its checks: size before decoding, truncated JPEGs refused.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::frame::{CaptureError, Frame, FrameSource};
use crate::bit_depth::BitDepth;

/// Plays the images of a folder (sorted by file name) at `fps` frames per second.
///
/// Pacing follows a fixed schedule (frame i is due at start + i / fps), so a slow consumer sees
/// frames arrive back to back, as from a real camera, rather than a slower rate. A file that
/// cannot be decoded gives [`CaptureError::BadFrame`] naming the file; the sequence goes on.
/// At the end: [`CaptureError::EndOfStream`], or the first image again when looping.
pub struct ReplaySource {
    dir: PathBuf,
    files: Vec<PathBuf>,
    period: Duration,
    looping: bool,
    next_index: usize,
    next_id: u64,
    started: Option<Instant>,
    bit_depth: BitDepth,
}

impl ReplaySource {
    /// Lists the images of `dir` (not recursive). `fps` in 0.1 ..= 1000. 16-bit images are read
    /// at `bit_depth` significant bits ([`crate::preprocess::load_image`]); frames are RGB8.
    ///
    /// Errors: the folder cannot be read or holds no PNG/JPEG file, or `fps` is out of range
    /// ([`CaptureError::Open`], naming the folder).
    pub fn open(dir: &Path, fps: f32, looping: bool, bit_depth: BitDepth) -> Result<Self, CaptureError> {
        let open_err = |reason: String| CaptureError::Open { device: dir.display().to_string(), reason };
        if !(fps.is_finite() && (0.1..=1000.0).contains(&fps)) {
            return Err(open_err(format!("replay rate {fps} fps: expected 0.1..=1000")));
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| open_err(format!("cannot read the replay folder: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && crate::dataset::is_image_file(p))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(open_err("no PNG or JPEG images in the replay folder".into()));
        }
        Ok(Self { dir: dir.into(), files, period: Duration::from_secs_f64(1.0 / fps as f64), looping, next_index: 0, next_id: 0, started: None, bit_depth })
    }

    /// Number of images in one pass of the sequence.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Always false: an empty folder is refused by [`ReplaySource::open`].
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

impl FrameSource for ReplaySource {
    fn next_frame(&mut self, timeout: Duration) -> Result<Option<Frame>, CaptureError> {
        if self.next_index >= self.files.len() {
            if !self.looping {
                return Err(CaptureError::EndOfStream { device: self.dir.display().to_string() });
            }
            self.next_index = 0;
        }
        let start = *self.started.get_or_insert_with(Instant::now);
        let due = start + self.period * self.next_id as u32;
        let now = Instant::now();
        if due > now {
            if due - now > timeout {
                std::thread::sleep(timeout);
                return Ok(None);
            }
            std::thread::sleep(due - now);
        }
        let path = &self.files[self.next_index];
        let id = self.next_id;
        self.next_index += 1;
        self.next_id += 1;
        let captured_at = Instant::now();
        // Same checks as `runtime inspect`: size from the header before decoding, a truncated
        // JPEG is bad, not grey-filled. The reason names the file.
        let img = crate::preprocess::load_image(path, self.bit_depth).map_err(|e| CaptureError::BadFrame { device: self.dir.display().to_string(), frame_id: id, reason: e.to_string(), file: Some(path.clone()) })?;
        let rgb = img.to_rgb8();
        Ok(Some(Frame { id, width: rgb.width(), height: rgb.height(), rgb: rgb.into_raw(), captured_at, file: Some(path.clone()) }))
    }

    fn describe(&self) -> String {
        format!("replay of {} ({} images, {:.1} fps{})", self.dir.display(), self.files.len(), 1.0 / self.period.as_secs_f64(), if self.looping { ", looping" } else { "" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(n: usize) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for i in 0..n {
            let img = image::RgbImage::from_pixel(16, 16, image::Rgb([i as u8 * 10, 1, 2]));
            img.save(d.path().join(format!("{i:03}.png"))).unwrap();
        }
        d
    }

    #[test]
    fn plays_in_name_order_then_ends() {
        let d = folder(3);
        std::fs::write(d.path().join("notes.txt"), "x").unwrap();
        let mut s = ReplaySource::open(d.path(), 1000.0, false, crate::bit_depth::BitDepth::FULL).unwrap();
        assert_eq!(s.len(), 3);
        for i in 0..3u64 {
            let f = s.next_frame(Duration::from_secs(1)).unwrap().unwrap();
            assert_eq!((f.id, f.width, f.height), (i, 16, 16));
            assert_eq!(&f.rgb[..3], &[i as u8 * 10, 1, 2]);
        }
        assert!(matches!(s.next_frame(Duration::from_secs(1)), Err(CaptureError::EndOfStream { .. })));
    }

    #[test]
    fn loops_with_increasing_ids_at_the_requested_rate() {
        let d = folder(2);
        let mut s = ReplaySource::open(d.path(), 50.0, true, crate::bit_depth::BitDepth::FULL).unwrap();
        let t = Instant::now();
        let ids: Vec<u64> = (0..5).map(|_| s.next_frame(Duration::from_secs(1)).unwrap().unwrap().id).collect();
        assert_eq!(ids, vec![0, 1, 2, 3, 4]);
        // Frame 4 is due 80 ms after frame 0.
        let el = t.elapsed();
        assert!(el >= Duration::from_millis(78) && el < Duration::from_millis(400), "{el:?}");
    }

    #[test]
    fn corrupt_files_are_bad_frames_naming_the_file_and_the_sequence_goes_on() {
        let d = folder(2);
        std::fs::write(d.path().join("001.png"), b"\x89PNG\r\n\x1a\nbroken").unwrap();
        let mut s = ReplaySource::open(d.path(), 1000.0, false, crate::bit_depth::BitDepth::FULL).unwrap();
        assert_eq!(s.next_frame(Duration::from_secs(1)).unwrap().unwrap().id, 0);
        match s.next_frame(Duration::from_secs(1)) {
            Err(CaptureError::BadFrame { frame_id, reason, .. }) => {
                assert_eq!(frame_id, 1);
                assert!(reason.contains("001.png"), "{reason}");
            }
            other => panic!("expected a bad frame, got {other:?}"),
        }
        assert!(matches!(s.next_frame(Duration::from_secs(1)), Err(CaptureError::EndOfStream { .. })));
    }

    #[test]
    fn truncated_and_oversized_files_are_bad_frames_naming_the_file() {
        let d = folder(3);
        let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 5) as u8, (y * 5) as u8, (x ^ y) as u8]));
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90).encode_image(&img).unwrap();
        std::fs::remove_file(d.path().join("001.png")).unwrap();
        std::fs::write(d.path().join("001.jpg"), &jpeg[..jpeg.len() * 80 / 100]).unwrap();
        // 20000x20000 px 8-bit grey, claimed by the header of a tiny file.
        std::fs::write(d.path().join("002.png"), crate::preprocess::tests::png_header(20000, 20000)).unwrap();
        let mut s = ReplaySource::open(d.path(), 1000.0, false, crate::bit_depth::BitDepth::FULL).unwrap();
        assert_eq!(s.next_frame(Duration::from_secs(1)).unwrap().unwrap().id, 0);
        for (id, file, why) in [(1, "001.jpg", "truncated"), (2, "002.png", "20000x20000")] {
            match s.next_frame(Duration::from_secs(1)) {
                Err(CaptureError::BadFrame { frame_id, reason, .. }) => {
                    assert_eq!(frame_id, id);
                    assert!(reason.contains(file) && reason.contains(why), "{reason}");
                }
                other => panic!("frame {id}: expected a bad frame, got {other:?}"),
            }
        }
    }

    #[test]
    fn slow_rates_time_out_instead_of_blocking() {
        let d = folder(2);
        let mut s = ReplaySource::open(d.path(), 0.5, false, crate::bit_depth::BitDepth::FULL).unwrap();
        assert!(s.next_frame(Duration::from_millis(10)).unwrap().is_some(), "frame 0 is due at once");
        let t = Instant::now();
        assert!(s.next_frame(Duration::from_millis(30)).unwrap().is_none());
        assert!(t.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn bad_folders_and_rates_are_clear_errors() {
        let msg = ReplaySource::open(Path::new("/nonexistent/frames"), 10.0, false, crate::bit_depth::BitDepth::FULL).err().unwrap().to_string();
        assert!(msg.contains("/nonexistent/frames"), "{msg}");
        let d = tempfile::tempdir().unwrap();
        let msg = ReplaySource::open(d.path(), 10.0, false, crate::bit_depth::BitDepth::FULL).err().unwrap().to_string();
        assert!(msg.contains("no PNG or JPEG"), "{msg}");
        let msg = ReplaySource::open(d.path(), 0.0, false, crate::bit_depth::BitDepth::FULL).err().unwrap().to_string();
        assert!(msg.contains("0.1..=1000"), "{msg}");
    }
}
