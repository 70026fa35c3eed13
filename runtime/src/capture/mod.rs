//! Camera capture, DESIGN.md §6 stage 1: frames from a V4L2 camera as interleaved RGB8.
//!
//! - [`frame`]: the [`Frame`] type, the [`FrameSource`] trait and [`CaptureError`].
//! - [`format`]: [`PixelFormat`], the V4L2 pixel formats the runtime accepts.
//! - [`convert`]: pure converters from raw V4L2 buffers (YUYV, GREY, Y16, RGB3, BGR3, MJPEG) to RGB8.
//! - [`mjpeg_dht`]: the standard Huffman tables for MJPEG frames that omit them.
//! - [`v4l2`]: [`V4l2Source`], a real camera with MMAP streaming and timeouts.
//! - [`reopen`]: [`ReopeningSource`], reopens a source that reported a disconnect.
//! - [`replay`]: [`ReplaySource`], a recorded image sequence played at a given frame rate.
//! - [`triggered`]: [`TriggeredSource`], only the first frame after each part-sensor trigger.
//! - [`devices`]: [`list_cameras`], the V4L2 devices under `/dev/video*` (for `runtime cameras`).

pub mod controls;
pub mod convert;
pub mod devices;
pub mod format;
pub mod frame;
pub mod mjpeg_dht;
pub mod reopen;
pub mod replay;
pub mod triggered;
pub mod v4l2;

pub use convert::{to_rgb, ConvertError};
pub use devices::{list_cameras, render_camera_table, CameraInfo, FormatInfo, FrameSizeInfo};
pub use format::PixelFormat;
pub use frame::{frame_name, CaptureError, Frame, FrameSource};
pub use reopen::ReopeningSource;
pub use replay::ReplaySource;
pub use triggered::{Trigger, TriggeredSource};
pub use v4l2::{CaptureRequest, NegotiatedFormat, V4l2Source};
