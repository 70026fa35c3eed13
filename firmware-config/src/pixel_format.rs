//! [`PixelFormat`]: the V4L2 pixel formats ("fourcc" codes) the runtime can convert to RGB8.
//! `[camera].fourcc` is parsed into it once, when the device file is read; the runtime's capture
//! code uses the same type.

use std::fmt;
use std::str::FromStr;

/// A V4L2 pixel format the runtime accepts, named by its fourcc code (four ASCII bytes, as in
/// `v4l2_pix_format.pixelformat`, e.g. `*b"YUYV"`).
///
/// Buffer layouts (one row; rows are `bytesperline` bytes apart; the runtime's `capture::convert`):
/// - [`Yuyv`](Self::Yuyv) `YUYV`: 4:2:2, 2 bytes per pixel, `Y0 U Y1 V` for each pair of pixels.
/// - [`Mjpeg`](Self::Mjpeg) `MJPG` (also accepted as `JPEG`): one JPEG image per buffer, no fixed row layout.
/// - [`Grey`](Self::Grey) `GREY`: 1 byte per pixel, luma 0..=255.
/// - [`Y16`](Self::Y16) `Y16 `: 2 bytes per pixel, little-endian u16 luma.
/// - [`Rgb3`](Self::Rgb3) `RGB3`: 3 bytes per pixel, `R G B`.
/// - [`Bgr3`](Self::Bgr3) `BGR3`: 3 bytes per pixel, `B G R`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum PixelFormat {
    /// `YUYV`: packed 4:2:2 YCbCr (BT.601, limited range), 2 bytes per pixel.
    Yuyv,
    /// `MJPG`: motion JPEG, one compressed JPEG image per buffer.
    Mjpeg,
    /// `GREY`: 8-bit luma, 1 byte per pixel.
    Grey,
    /// `Y16 `: 16-bit little-endian luma, 2 bytes per pixel.
    Y16,
    /// `RGB3`: 24-bit RGB, bytes `R G B`.
    Rgb3,
    /// `BGR3`: 24-bit BGR, bytes `B G R`.
    Bgr3,
}

impl PixelFormat {
    /// Every accepted format, in order of preference for an inspection camera (uncompressed first).
    pub const ALL: [PixelFormat; 6] = [Self::Yuyv, Self::Grey, Self::Y16, Self::Rgb3, Self::Bgr3, Self::Mjpeg];

    /// The format for a fourcc code; `None` for formats the runtime cannot convert.
    /// `JPEG` maps to [`Mjpeg`](Self::Mjpeg) (both are one JPEG per buffer).
    pub fn from_fourcc(code: [u8; 4]) -> Option<Self> {
        match &code {
            b"YUYV" => Some(Self::Yuyv),
            b"MJPG" | b"JPEG" => Some(Self::Mjpeg),
            b"GREY" => Some(Self::Grey),
            b"Y16 " => Some(Self::Y16),
            b"RGB3" => Some(Self::Rgb3),
            b"BGR3" => Some(Self::Bgr3),
            _ => None,
        }
    }

    /// The fourcc code to request from the driver (`MJPG` for [`Mjpeg`](Self::Mjpeg)).
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            Self::Yuyv => *b"YUYV",
            Self::Mjpeg => *b"MJPG",
            Self::Grey => *b"GREY",
            Self::Y16 => *b"Y16 ",
            Self::Rgb3 => *b"RGB3",
            Self::Bgr3 => *b"BGR3",
        }
    }

    /// Bytes per pixel in one row of the raw buffer; `None` for compressed [`Mjpeg`](Self::Mjpeg).
    pub fn bytes_per_pixel(self) -> Option<u32> {
        match self {
            Self::Grey => Some(1),
            Self::Yuyv | Self::Y16 => Some(2),
            Self::Rgb3 | Self::Bgr3 => Some(3),
            Self::Mjpeg => None,
        }
    }

    /// One channel of luma (`GREY`, `Y16`): the runtime copies it to R, G and B.
    pub fn is_grey(self) -> bool {
        matches!(self, Self::Grey | Self::Y16)
    }
}

impl TryFrom<String> for PixelFormat {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<PixelFormat> for String {
    fn from(f: PixelFormat) -> String {
        f.to_string()
    }
}

/// Writes a fourcc code as text, with non-printable bytes as `\xNN` (e.g. `Y16 `, `YUYV`).
pub fn fourcc_text(code: [u8; 4]) -> String {
    code.iter()
        .map(|&b| if b.is_ascii_graphic() || b == b' ' { (b as char).to_string() } else { format!("\\x{b:02x}") })
        .collect()
}

impl fmt::Display for PixelFormat {
    /// The fourcc as text, trailing space trimmed: `YUYV`, `MJPG`, `GREY`, `Y16`, `RGB3`, `BGR3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(fourcc_text(self.fourcc()).trim_end())
    }
}

impl FromStr for PixelFormat {
    type Err = String;

    /// Parses a fourcc as text (case-insensitive, trailing spaces optional: `yuyv`, `Y16`, `mjpg`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let up = s.trim().to_ascii_uppercase();
        let bytes = up.as_bytes();
        if bytes.is_empty() || bytes.len() > 4 {
            return Err(format!("pixel format `{s}`: expected one of YUYV, MJPG, GREY, Y16, RGB3, BGR3"));
        }
        let mut code = [b' '; 4];
        code[..bytes.len()].copy_from_slice(bytes);
        Self::from_fourcc(code).ok_or_else(|| format!("pixel format `{s}`: expected one of YUYV, MJPG, GREY, Y16, RGB3, BGR3"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fourcc_round_trip_and_display() {
        for f in PixelFormat::ALL {
            assert_eq!(PixelFormat::from_fourcc(f.fourcc()), Some(f));
            assert_eq!(f.to_string().parse::<PixelFormat>(), Ok(f));
        }
        assert_eq!(PixelFormat::Y16.to_string(), "Y16");
        assert_eq!(PixelFormat::from_fourcc(*b"JPEG"), Some(PixelFormat::Mjpeg));
        assert_eq!(PixelFormat::from_fourcc(*b"NV12"), None);
        assert!("nv12".parse::<PixelFormat>().unwrap_err().contains("expected one of"));
        assert_eq!(fourcc_text([b'A', 0, b'B', 0xff]), "A\\x00B\\xff");
        assert!(PixelFormat::Y16.is_grey() && PixelFormat::Grey.is_grey() && !PixelFormat::Yuyv.is_grey());
    }
}
