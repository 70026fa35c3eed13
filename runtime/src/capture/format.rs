//! [`PixelFormat`]: the V4L2 pixel formats ("fourcc" codes) the runtime can convert to RGB8. The
//! type lives in `firmware-config`, which parses `[camera].fourcc` into it once.

pub use firmware_config::pixel_format::{fourcc_text, PixelFormat};
