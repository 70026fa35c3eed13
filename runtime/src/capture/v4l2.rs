//! [`V4l2Source`]: a real V4L2 camera (the `v4l` crate), MMAP streaming, converted to RGB8.
//!
//! Opening sets the requested format and then uses what the driver returns (size, fourcc,
//! `bytesperline`). Waiting for a frame has a timeout. Errors meaning the device went away (ENODEV,
//! EIO, ENXIO, or the device path vanished) are [`CaptureError::Disconnected`].
//!
//! The `v4l` crate panics in a few places on unexpected driver data (non-UTF-8 card names, unknown
//! colorspace codes) and when unmapping buffers fails in `Drop`; calls into it are wrapped in
//! `catch_unwind` here so that such a panic becomes an error (the panic message still goes to stderr).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use v4l::buffer::{Flags as BufFlags, Type};
use v4l::capability::Flags as CapFlags;
use v4l::io::mmap::Stream;
use v4l::io::traits::{CaptureStream, Stream as _};
use v4l::video::Capture;
use v4l::{Device, Format, FourCC};

use crate::bit_depth::BitDepth;
use crate::capture::convert::to_rgb;
use crate::capture::format::fourcc_text;
use crate::capture::{CaptureError, Frame, FrameSource, PixelFormat};

/// What to ask the driver for. The driver may adjust any of it; [`V4l2Source::format`] says what was set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaptureRequest {
    /// Requested width in pixels.
    pub width: u32,
    /// Requested height in pixels.
    pub height: u32,
    /// Requested pixel format.
    pub format: PixelFormat,
    /// MMAP buffers to request (the driver may give more or fewer); at least 2 are used.
    pub buffers: u32,
    /// Significant bits of `Y16` samples (see [`crate::bit_depth`]); ignored by 8-bit formats.
    pub bit_depth: BitDepth,
}

impl CaptureRequest {
    /// A request for `width` x `height` pixels in `format`, with 4 MMAP buffers and full-range
    /// (16-bit) `Y16` samples.
    pub fn new(width: u32, height: u32, format: PixelFormat) -> Self {
        Self { width, height, format, buffers: 4, bit_depth: BitDepth::FULL }
    }
}

/// The format the driver set (VIDIOC_S_FMT's answer), used for every frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NegotiatedFormat {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pixel format of the raw buffers.
    pub format: PixelFormat,
    /// Bytes per row in the raw buffers (`bytesperline`; 0 or meaningless for MJPEG).
    pub stride: u32,
    /// Largest payload of one buffer in bytes (`sizeimage`).
    pub size_image: u32,
}

/// A V4L2 capture device streaming with MMAP buffers. Frames are numbered from 0 in the order
/// they are dequeued; bad frames consume a number too.
pub struct V4l2Source {
    path: PathBuf,
    format: NegotiatedFormat,
    bit_depth: BitDepth,
    // Dropped in `Drop` (stream first), guarded against the v4l crate's panics.
    stream: Option<Stream<'static>>,
    device: Option<Device>,
    next_id: u64,
}

/// ioctl errors that mean the device is gone.
fn is_gone(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENODEV) | Some(libc::EIO) | Some(libc::ENXIO) | Some(libc::ESHUTDOWN))
}

/// Runs a call into the v4l crate, turning a panic into an error message.
fn guarded<T>(what: &str, f: impl FnOnce() -> std::io::Result<T>) -> Result<std::io::Result<T>, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
        format!("{what}: the v4l crate panicked on unexpected driver data ({msg})")
    })
}

impl V4l2Source {
    /// Opens the capture device at `path` (e.g. `/dev/video0`), sets `request` and uses the format
    /// the driver returns, and allocates MMAP buffers. Streaming starts with the first
    /// [`FrameSource::next_frame`]. Errors: [`CaptureError::Open`] (absent path, permissions, busy,
    /// not a streaming capture device, buffer allocation), [`CaptureError::Format`] (refused, or
    /// the driver answered with a format the runtime cannot convert or an inconsistent stride).
    pub fn open(path: impl AsRef<Path>, request: &CaptureRequest) -> Result<Self, CaptureError> {
        let path = path.as_ref().to_path_buf();
        let device = path.display().to_string();
        let open_err = |reason: String| CaptureError::Open { device: device.clone(), reason };
        if path.as_os_str().as_encoded_bytes().contains(&0) {
            return Err(open_err("the path contains a NUL byte".into()));
        }
        if !path.exists() {
            return Err(open_err("no such device node (expected a V4L2 capture device such as /dev/video0; `runtime cameras` lists them)".into()));
        }
        let dev = guarded("open", || Device::with_path(&path)).map_err(&open_err)?.map_err(|e| open_err(e.to_string()))?;
        let caps = guarded("VIDIOC_QUERYCAP", || dev.query_caps()).map_err(&open_err)?.map_err(|e| open_err(format!("VIDIOC_QUERYCAP failed: {e} (not a V4L2 device?)")))?;
        if !caps.capabilities.contains(CapFlags::VIDEO_CAPTURE) || !caps.capabilities.contains(CapFlags::STREAMING) {
            return Err(open_err(format!(
                "{} ({}) is not a single-planar video capture device with streaming I/O (capabilities: {:?}); try another /dev/video* node",
                caps.card, caps.driver, caps.capabilities
            )));
        }
        let format = negotiate(&dev, &device, request)?;
        let stream = guarded("VIDIOC_REQBUFS", || Stream::with_buffers(&dev, Type::VideoCapture, request.buffers.max(2)))
            .map_err(&open_err)?
            .map_err(|e| open_err(format!("cannot allocate {} MMAP buffers: {e}", request.buffers.max(2))))?;
        tracing::info!(device = %device, card = %caps.card, "camera open: {}x{} {} stride {}", format.width, format.height, format.format, format.stride);
        let mut src = Self { path, format, bit_depth: request.bit_depth, stream: Some(stream), device: Some(dev), next_id: 0 };
        src.start(request.buffers.max(2))?;
        Ok(src)
    }

    /// Sets `[camera.controls]` on the open device (auto modes first), reads each back and logs
    /// it ([`crate::capture::controls::apply_controls`]). Call after every open.
    ///
    /// # Errors
    /// [`CaptureError::Controls`]: an unknown control, a value out of range, or a refused ioctl.
    pub fn set_controls(&mut self, wanted: &std::collections::BTreeMap<String, firmware_config::ControlValue>) -> Result<Vec<crate::capture::controls::AppliedControl>, CaptureError> {
        let device = self.path.display().to_string();
        let dev = self.device.as_ref().ok_or_else(|| CaptureError::Controls { device: device.clone(), reason: format!("camera {device}: closed") })?;
        let mut controls = crate::capture::controls::V4l2Controls(dev);
        match guarded("camera controls", || Ok(crate::capture::controls::apply_controls(&mut controls, &device, wanted))) {
            Ok(Ok(Ok(applied))) => Ok(applied),
            Ok(Ok(Err(reason))) | Err(reason) => Err(CaptureError::Controls { device, reason }),
            Ok(Err(e)) => Err(CaptureError::Controls { device: device.clone(), reason: format!("camera {device}: {e}") }),
        }
    }

    /// The format the driver set.
    pub fn format(&self) -> &NegotiatedFormat {
        &self.format
    }

    /// The device path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues buffers 1.. (stopping at the first index the driver did not allocate) and starts
    /// streaming. Buffer 0 stays with us: `Stream::next` queues it before its first dequeue.
    /// This way a wait that times out before `Stream::next` never leaves a buffer queued twice.
    fn start(&mut self, buffers: u32) -> Result<(), CaptureError> {
        let device = self.path.display().to_string();
        let stream = self.stream.as_mut().ok_or_else(|| CaptureError::Stream { device: device.clone(), reason: "stream already closed".into() })?;
        for i in 1..buffers as usize {
            if let Err(e) = CaptureStream::queue(stream, i) {
                if i >= 2 && e.raw_os_error() == Some(libc::EINVAL) {
                    break; // the driver allocated fewer buffers than requested
                }
                return Err(self.io_error("VIDIOC_QBUF", &e));
            }
        }
        let Some(stream) = self.stream.as_mut() else { return Ok(()) };
        stream.start().map_err(|e| self.io_error("VIDIOC_STREAMON", &e))
    }

    /// Maps an ioctl error: device gone -> Disconnected, else Stream.
    fn io_error(&self, op: &str, e: &std::io::Error) -> CaptureError {
        let device = self.path.display().to_string();
        if is_gone(e) || !self.path.exists() {
            CaptureError::Disconnected { device, reason: format!("{op}: {e}") }
        } else {
            CaptureError::Stream { device, reason: format!("{op}: {e}") }
        }
    }
}

/// Sets the requested format, reads back what the driver set and checks it is usable.
fn negotiate(dev: &Device, device: &str, request: &CaptureRequest) -> Result<NegotiatedFormat, CaptureError> {
    let requested = format!("{}x{} {}", request.width, request.height, request.format);
    let fmt_err = |reason: String| CaptureError::Format { device: device.to_string(), requested: requested.clone(), reason };
    let want = Format::new(request.width, request.height, FourCC::new(&request.format.fourcc()));
    let got = guarded("VIDIOC_S_FMT", || dev.set_format(&want)).map_err(&fmt_err)?.map_err(|e| fmt_err(format!("VIDIOC_S_FMT failed: {e}")))?;
    let format = PixelFormat::from_fourcc(got.fourcc.repr).ok_or_else(|| {
        fmt_err(format!("the driver set {} which the runtime cannot convert (expected one of YUYV, MJPG, GREY, Y16, RGB3, BGR3)", fourcc_text(got.fourcc.repr)))
    })?;
    if got.width == 0 || got.height == 0 {
        return Err(fmt_err(format!("the driver set an empty size {}x{}", got.width, got.height)));
    }
    if let Some(bpp) = format.bytes_per_pixel() {
        let min = u64::from(got.width) * u64::from(bpp);
        if got.stride != 0 && u64::from(got.stride) < min {
            return Err(fmt_err(format!("the driver set bytesperline {} < {} bytes for {} px of {format}", got.stride, min, got.width)));
        }
    }
    if (got.width, got.height, format) != (request.width, request.height, request.format) {
        tracing::warn!(device, "driver adjusted the format: requested {requested}, got {}x{} {format}; using the driver's", got.width, got.height);
    }
    Ok(NegotiatedFormat { width: got.width, height: got.height, format, stride: got.stride, size_image: got.size })
}

impl FrameSource for V4l2Source {
    /// Waits up to `timeout` (rounded up to whole ms, at most `i32::MAX` ms) for a filled buffer,
    /// then converts it. A buffer the driver flags with `V4L2_BUF_FLAG_ERROR` or that does not
    /// convert is [`CaptureError::BadFrame`].
    fn next_frame(&mut self, timeout: Duration) -> Result<Option<Frame>, CaptureError> {
        let device = self.path.display().to_string();
        let ms = i32::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
        let Some(stream) = self.stream.as_mut() else {
            return Err(CaptureError::Stream { device, reason: "stream closed after an earlier error; reopen the device".into() });
        };
        // Wait here, before `Stream::next` re-queues the buffer we hold: a timeout inside
        // `Stream::next` would leave that buffer queued and the next call would queue it twice.
        let ready = guarded("poll", || stream.handle().poll(libc::POLLIN, ms));
        match ready {
            Ok(Ok(0)) => return Ok(None),
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(None),
            Ok(Err(e)) => return Err(self.fail("poll", &e)),
            Err(msg) => return Err(self.fail_msg(msg)),
        }
        let Some(stream) = self.stream.as_mut() else { return Ok(None) };
        stream.set_timeout(Duration::from_millis(ms.max(1) as u64));
        let (fmt, depth, id) = (self.format, self.bit_depth, self.next_id);
        let result = guarded("VIDIOC_QBUF/DQBUF", || {
            let (buf, meta) = CaptureStream::next(stream)?;
            let captured_at = Instant::now();
            let converted = if meta.flags.contains(BufFlags::ERROR) {
                Err(format!("the driver flagged the buffer as corrupt (V4L2_BUF_FLAG_ERROR, {} bytes used)", meta.bytesused))
            } else {
                to_rgb(fmt.format, depth, buf, fmt.width, fmt.height, fmt.stride, meta.bytesused).map_err(|e| e.to_string())
            };
            Ok((captured_at, converted))
        });
        let (captured_at, converted) = match result {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(self.fail("VIDIOC_QBUF/DQBUF", &e)),
            Err(msg) => return Err(self.fail_msg(msg)),
        };
        self.next_id += 1;
        match converted {
            Ok(rgb) => Ok(Some(Frame { id, width: fmt.width, height: fmt.height, rgb, captured_at, file: None })),
            Err(reason) => Err(CaptureError::BadFrame { device, frame_id: id, reason, file: None }),
        }
    }

    fn describe(&self) -> String {
        let f = &self.format;
        format!("V4L2 {} {}x{} {} stride {}", self.path.display(), f.width, f.height, f.format, f.stride)
    }
}

impl V4l2Source {
    /// An error that leaves the stream unusable: closes it, maps the error.
    fn fail(&mut self, op: &str, e: &std::io::Error) -> CaptureError {
        let err = if e.kind() == std::io::ErrorKind::TimedOut {
            CaptureError::Stream { device: self.path.display().to_string(), reason: format!("{op}: timed out after poll reported a buffer ready") }
        } else {
            self.io_error(op, e)
        };
        self.close();
        err
    }

    fn fail_msg(&mut self, msg: String) -> CaptureError {
        let device = self.path.display().to_string();
        self.close();
        if self.path.exists() { CaptureError::Stream { device, reason: msg } } else { CaptureError::Disconnected { device, reason: msg } }
    }

    /// Stops streaming, unmaps the buffers and closes the device, swallowing the v4l crate's
    /// panics on failure (e.g. unmapping after the device went away).
    fn close(&mut self) {
        let (stream, device) = (self.stream.take(), self.device.take());
        let r = catch_unwind(AssertUnwindSafe(move || {
            drop(stream);
            drop(device);
        }));
        if r.is_err() {
            tracing::warn!(device = %self.path.display(), "closing the camera failed (ignored)");
        }
    }
}

impl Drop for V4l2Source {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_absent_path_names_it() {
        let Err(e) = V4l2Source::open("/dev/video-does-not-exist-42", &CaptureRequest::new(640, 480, PixelFormat::Yuyv)) else { panic!("opened") };
        assert!(matches!(e, CaptureError::Open { .. }), "{e}");
        assert!(e.to_string().contains("/dev/video-does-not-exist-42"), "{e}");
    }

    #[test]
    fn open_non_device_is_an_open_error() {
        // A regular file: VIDIOC_QUERYCAP fails with ENOTTY.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("video0");
        std::fs::write(&p, b"not a device").unwrap();
        let Err(e) = V4l2Source::open(&p, &CaptureRequest::new(640, 480, PixelFormat::Mjpeg)) else { panic!("opened") };
        assert!(matches!(e, CaptureError::Open { .. }), "{e}");
        assert!(e.to_string().contains(&p.display().to_string()), "{e}");
        let Err(e) = V4l2Source::open("/dev/vid\0eo0", &CaptureRequest::new(640, 480, PixelFormat::Mjpeg)) else { panic!("opened") };
        assert!(e.to_string().contains("NUL"), "{e}");
    }

    #[test]
    fn source_can_move_to_a_capture_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<V4l2Source>();
    }

    #[test]
    fn gone_errors() {
        assert!(is_gone(&std::io::Error::from_raw_os_error(libc::ENODEV)));
        assert!(is_gone(&std::io::Error::from_raw_os_error(libc::EIO)));
        assert!(!is_gone(&std::io::Error::from_raw_os_error(libc::EINVAL)));
    }
}
