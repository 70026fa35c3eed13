//! [`Frame`], the [`FrameSource`] trait every camera implements, and [`CaptureError`].

use std::time::{Duration, Instant};

/// One captured image, converted to RGB8.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// Frame number from the source, counting from 0 in capture order (a [`crate::capture::ReopeningSource`]
    /// keeps counting across reopens, so ids stay unique for the life of the source).
    pub id: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Interleaved RGB8, row-major, no row padding: pixel (x, y) is bytes `3*(y*width + x) ..+3`
    /// as `R G B`; length `3 * width * height`.
    pub rgb: Vec<u8>,
    /// When the runtime received the frame (dequeued from the driver), on the monotonic clock.
    pub captured_at: Instant,
    /// The file the frame was read from (a replayed image); `None` for a camera. Events name it
    /// instead of `frame <id>`.
    pub file: Option<std::path::PathBuf>,
}

impl Frame {
    /// How events name the frame: its file when it has one, else `frame <id>`.
    pub fn name(&self) -> String {
        frame_name(self.id, self.file.as_deref())
    }

    /// The pixels as an RGB8 image (moved, not copied).
    ///
    /// Errors: pixel data whose length is not `3 * width * height`, with both numbers.
    pub fn into_image(self) -> Result<image::DynamicImage, String> {
        let (w, h) = (self.width, self.height);
        let want = 3 * w as usize * h as usize;
        let got = self.rgb.len();
        image::RgbImage::from_raw(w, h, self.rgb)
            .filter(|_| got == want)
            .map(image::DynamicImage::ImageRgb8)
            .ok_or_else(|| format!("{got} bytes of pixel data for a {w}x{h} RGB frame (expected {want})"))
    }
}

/// How events name frame `id`: `file` when there is one, else `frame <id>`.
pub fn frame_name(id: u64, file: Option<&std::path::Path>) -> String {
    match file {
        Some(f) => f.display().to_string(),
        None => format!("frame {id}"),
    }
}

/// A source of frames (a camera, a replay, a test fake).
pub trait FrameSource {
    /// Waits at most `timeout` for the next frame. `Ok(None)`: no frame within `timeout` (the
    /// source is still usable). Errors say what went wrong; after [`CaptureError::needs_reopen`]
    /// errors the source is unusable and must be opened again (see [`crate::capture::ReopeningSource`]),
    /// after [`CaptureError::BadFrame`] the caller logs and skips the frame and may call again.
    fn next_frame(&mut self, timeout: Duration) -> Result<Option<Frame>, CaptureError>;

    /// One line for logs: what the source is (device path, format, size).
    fn describe(&self) -> String;
}

impl<S: FrameSource + ?Sized> FrameSource for Box<S> {
    fn next_frame(&mut self, timeout: Duration) -> Result<Option<Frame>, CaptureError> {
        (**self).next_frame(timeout)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// What can go wrong when capturing. `device` is the device path (e.g. `/dev/video0`) or, for
/// sources that are not devices, what [`FrameSource::describe`] names.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The device went away while open (unplugged, USB reset: ENODEV / EIO / ENXIO, or the path vanished).
    #[error("camera {device} disconnected ({reason}); expected the device to stay present, it will be reopened if the source allows")]
    Disconnected { device: String, reason: String },
    /// The device could not be opened (absent path, permissions, busy, not a capture device).
    #[error("cannot open camera {device}: {reason}")]
    Open { device: String, reason: String },
    /// The driver refused the requested format or returned one the runtime cannot use.
    #[error("camera {device}: format negotiation failed: requested {requested}, {reason}")]
    Format { device: String, requested: String, reason: String },
    /// One frame was unusable (corrupt or short payload, driver error flag); the source goes on.
    /// `file`: the file it was read from (a replayed image), `None` for a camera.
    #[error("camera {device}: bad frame {frame_id}: {reason}")]
    BadFrame { device: String, frame_id: u64, reason: String, file: Option<std::path::PathBuf> },
    /// Streaming failed in a way that leaves the stream unusable while the device may still be
    /// present (an unexpected ioctl error); the source must be reopened.
    #[error("camera {device}: streaming failed: {reason}")]
    Stream { device: String, reason: String },
    /// A `[camera.controls]` entry the camera does not have, a value it does not take, or a
    /// control the driver refused (a configuration error: not retried).
    #[error("{reason}")]
    Controls { device: String, reason: String },
    /// A finite source (a replay) has no more frames.
    #[error("{device}: end of the sequence")]
    EndOfStream { device: String },
}

impl CaptureError {
    /// True for errors after which the source is unusable and must be opened again
    /// ([`Disconnected`](Self::Disconnected), [`Stream`](Self::Stream)).
    pub fn needs_reopen(&self) -> bool {
        matches!(self, Self::Disconnected { .. } | Self::Stream { .. })
    }
}
