//! Pure converters from raw V4L2 capture buffers to interleaved RGB8 (row-major, `3*width*height`
//! bytes, no padding; see [`crate::capture::Frame::rgb`]).
//!
//! Every converter takes the mapped buffer `bytes`, the negotiated `width` and `height` in pixels,
//! `stride` (the driver's `bytesperline`: bytes from the start of one row to the next; 0 means
//! "tightly packed", `width * bytes_per_pixel`) and `bytesused` (bytes of payload the driver wrote
//! at the start of the buffer; the rest of the buffer is padding and is never read). The payload
//! must hold `stride * (height - 1) + width * bytes_per_pixel` bytes (the last row need not be
//! padded to the stride). Bad input is an error ([`ConvertError`]), never a panic.

use std::io::Cursor;

use crate::bit_depth::{BitDepth, BitDepthError};
use crate::capture::PixelFormat;

/// Why a raw buffer could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// Width or height is zero, or the RGB output would not fit in memory addressing.
    #[error("frame size {width}x{height}: expected width and height >= 1 and an addressable 3*width*height")]
    InvalidSize { width: u32, height: u32 },
    /// `bytesperline` is smaller than one row of pixels.
    #[error("{format} {width} px wide: stride (bytesperline) {stride} is smaller than one row ({min} bytes)")]
    StrideTooSmall { format: PixelFormat, width: u32, stride: u32, min: u64 },
    /// The driver reported more payload than the buffer holds.
    #[error("bytesused {bytesused} is larger than the buffer ({buffer_len} bytes)")]
    BytesUsedPastBuffer { bytesused: u32, buffer_len: usize },
    /// The payload is shorter than the frame needs.
    #[error("{format} {width}x{height} with stride {stride}: payload has {got} bytes, expected at least {needed}")]
    TooShort { format: PixelFormat, width: u32, height: u32, stride: u32, needed: u64, got: usize },
    /// The MJPEG payload is not a complete, decodable JPEG.
    #[error("corrupt MJPEG frame ({len} bytes): {reason}")]
    Jpeg { len: usize, reason: String },
    /// The JPEG decoded to another size than the negotiated one.
    #[error("MJPEG frame decoded to {got_width}x{got_height}, expected the negotiated {width}x{height}")]
    JpegSize { width: u32, height: u32, got_width: u32, got_height: u32 },
    /// A `Y16` sample above what the configured bit depth allows (`camera.bit_depth` is wrong).
    #[error("Y16 pixel ({x}, {y}): {cause}; check camera.bit_depth")]
    BitDepth { x: u32, y: u32, cause: BitDepthError },
}

/// Converts one buffer of `format` to RGB8; dispatches to the converters below. `depth` is the
/// sensor's bit depth for `Y16` (ignored by the 8-bit formats).
pub fn to_rgb(format: PixelFormat, depth: BitDepth, bytes: &[u8], width: u32, height: u32, stride: u32, bytesused: u32) -> Result<Vec<u8>, ConvertError> {
    match format {
        PixelFormat::Yuyv => yuyv_to_rgb(bytes, width, height, stride, bytesused),
        PixelFormat::Mjpeg => mjpeg_to_rgb(bytes, width, height, stride, bytesused),
        PixelFormat::Grey => grey_to_rgb(bytes, width, height, stride, bytesused),
        PixelFormat::Y16 => y16_to_rgb(bytes, width, height, stride, bytesused, depth),
        PixelFormat::Rgb3 => rgb3_to_rgb(bytes, width, height, stride, bytesused),
        PixelFormat::Bgr3 => bgr3_to_rgb(bytes, width, height, stride, bytesused),
    }
}

/// `YUYV` (4:2:2, `Y0 U Y1 V` per pixel pair; an odd last pixel uses the pair's `Y0 U _ V`) to RGB8.
///
/// BT.601 limited range (Y in 16..=235, U/V in 16..=240) with the 8-bit integer approximation
/// from Microsoft's "Recommended 8-Bit YUV Formats for Video Rendering", section "Converting 8-bit
/// YUV to RGB888" (coefficients of ITU-R BT.601 scaled by 256: 298 = 1.164*256, 409 = 1.596*256,
/// 100 = 0.391*256, 208 = 0.813*256, 516 = 2.018*256):
///
/// ```text
/// C = Y - 16,  D = U - 128,  E = V - 128
/// R = clamp((298*C           + 409*E + 128) >> 8, 0, 255)
/// G = clamp((298*C - 100*D   - 208*E + 128) >> 8, 0, 255)
/// B = clamp((298*C + 516*D           + 128) >> 8, 0, 255)
/// ```
/// (`>>` is an arithmetic shift, i.e. floor division by 256.) Rows need `2 * round_up(width, 2)` bytes.
pub fn yuyv_to_rgb(bytes: &[u8], width: u32, height: u32, stride: u32, bytesused: u32) -> Result<Vec<u8>, ConvertError> {
    let row_bytes = 2 * (u64::from(width) + u64::from(width % 2));
    let (payload, stride_b) = raw_layout(PixelFormat::Yuyv, bytes, width, height, stride, bytesused, row_bytes)?;
    let mut out = Vec::with_capacity(rgb_len(width, height)?);
    for y in 0..height as usize {
        let row = &payload[y * stride_b..y * stride_b + row_bytes as usize];
        for x in 0..width as usize {
            let quad = &row[(x / 2) * 4..(x / 2) * 4 + 4];
            let luma = if x % 2 == 0 { quad[0] } else { quad[2] };
            out.extend_from_slice(&yuv_to_rgb(luma, quad[1], quad[3]));
        }
    }
    Ok(out)
}

/// One BT.601 limited-range YCbCr sample to RGB8, the integer formula of [`yuyv_to_rgb`].
pub fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = i32::from(y) - 16;
    let d = i32::from(u) - 128;
    let e = i32::from(v) - 128;
    let clamp = |x: i32| (x >> 8).clamp(0, 255) as u8;
    [clamp(298 * c + 409 * e + 128), clamp(298 * c - 100 * d - 208 * e + 128), clamp(298 * c + 516 * d + 128)]
}

/// `GREY` (1 byte of luma per pixel) to RGB8: each value replicated to R, G and B.
pub fn grey_to_rgb(bytes: &[u8], width: u32, height: u32, stride: u32, bytesused: u32) -> Result<Vec<u8>, ConvertError> {
    packed(PixelFormat::Grey, bytes, width, height, stride, bytesused, |p, out| out.extend_from_slice(&[p[0]; 3]))
}

/// `Y16 ` (little-endian u16 luma per pixel, LSB-aligned values of `depth` significant bits) to
/// RGB8: `round(v * 255 / (2^depth - 1))` ([`BitDepth::to_u8`]) replicated to R, G and B, so a
/// 12-bit sensor's 4095 is white, not 1/16 grey.
///
/// Errors: those of the layout, and [`ConvertError::BitDepth`] for the first sample above
/// `2^depth - 1` (naming the pixel): such a frame is bad, not judged on clipped values.
pub fn y16_to_rgb(bytes: &[u8], width: u32, height: u32, stride: u32, bytesused: u32, depth: BitDepth) -> Result<Vec<u8>, ConvertError> {
    let mut first_bad: Option<(usize, BitDepthError)> = None;
    let mut n = 0usize;
    let out = packed(PixelFormat::Y16, bytes, width, height, stride, bytesused, |p, out| {
        let v = depth.to_u8(u16::from_le_bytes([p[0], p[1]])).unwrap_or_else(|e| {
            first_bad.get_or_insert((n, e));
            255
        });
        n += 1;
        out.extend_from_slice(&[v; 3]);
    })?;
    match first_bad {
        Some((i, cause)) => Err(ConvertError::BitDepth { x: (i % width as usize) as u32, y: (i / width as usize) as u32, cause }),
        None => Ok(out),
    }
}

/// `RGB3` (bytes `R G B` per pixel) to RGB8: rows copied without their padding.
pub fn rgb3_to_rgb(bytes: &[u8], width: u32, height: u32, stride: u32, bytesused: u32) -> Result<Vec<u8>, ConvertError> {
    packed(PixelFormat::Rgb3, bytes, width, height, stride, bytesused, |p, out| out.extend_from_slice(p))
}

/// `BGR3` (bytes `B G R` per pixel) to RGB8: first and third byte swapped.
pub fn bgr3_to_rgb(bytes: &[u8], width: u32, height: u32, stride: u32, bytesused: u32) -> Result<Vec<u8>, ConvertError> {
    packed(PixelFormat::Bgr3, bytes, width, height, stride, bytesused, |p, out| out.extend_from_slice(&[p[2], p[1], p[0]]))
}

/// `MJPG`: decodes the JPEG in the first `bytesused` bytes (zero bytes after the end-of-image
/// marker are tolerated) to RGB8 with the `image` crate; `stride` is ignored (compressed). The
/// JPEG must start with SOI (`FF D8`), end with EOI (`FF D9`), decode without error and have the
/// negotiated `width` x `height`; decoding is limited to that size, so a corrupt header cannot
/// make it allocate more. Grey JPEGs are replicated to RGB. Frames without Huffman tables (many
/// UVC cameras omit them, as MJPEG allows) get the standard tables of ITU-T T.81 Annex K.3.
pub fn mjpeg_to_rgb(bytes: &[u8], width: u32, height: u32, _stride: u32, bytesused: u32) -> Result<Vec<u8>, ConvertError> {
    rgb_len(width, height)?;
    let payload = payload(bytes, bytesused)?;
    let len = payload.len();
    let jpeg_err = |reason: String| ConvertError::Jpeg { len, reason };
    let end = payload.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let jpeg = &payload[..end];
    if !jpeg.starts_with(&[0xFF, 0xD8]) {
        return Err(jpeg_err("no start-of-image marker (FF D8) at the start".into()));
    }
    if !jpeg.ends_with(&[0xFF, 0xD9]) {
        return Err(jpeg_err("no end-of-image marker (FF D9) at the end: truncated".into()));
    }
    let jpeg = crate::capture::mjpeg_dht::with_default_huffman_tables(jpeg);
    let mut reader = image::ImageReader::with_format(Cursor::new(&jpeg[..]), image::ImageFormat::Jpeg);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| jpeg_err(e.to_string()))?;
    if img.width() != width || img.height() != height {
        return Err(ConvertError::JpegSize { width, height, got_width: img.width(), got_height: img.height() });
    }
    Ok(img.into_rgb8().into_raw())
}

/// `3 * width * height` as usize, or [`ConvertError::InvalidSize`].
fn rgb_len(width: u32, height: u32) -> Result<usize, ConvertError> {
    let n = u64::from(width).checked_mul(u64::from(height)).and_then(|n| n.checked_mul(3));
    match n.and_then(|n| usize::try_from(n).ok()) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(ConvertError::InvalidSize { width, height }),
    }
}

/// The first `bytesused` bytes of the buffer.
fn payload(bytes: &[u8], bytesused: u32) -> Result<&[u8], ConvertError> {
    bytes.get(..bytesused as usize).ok_or(ConvertError::BytesUsedPastBuffer { bytesused, buffer_len: bytes.len() })
}

/// Checks an uncompressed layout: returns the payload and the row stride in bytes, having checked
/// that `stride * (height - 1) + row_bytes` bytes are there.
fn raw_layout(format: PixelFormat, bytes: &[u8], width: u32, height: u32, stride: u32, bytesused: u32, row_bytes: u64) -> Result<(&[u8], usize), ConvertError> {
    rgb_len(width, height)?;
    let stride_b = if stride == 0 { row_bytes } else { u64::from(stride) };
    if stride_b < row_bytes {
        return Err(ConvertError::StrideTooSmall { format, width, stride, min: row_bytes });
    }
    let payload = payload(bytes, bytesused)?;
    let needed = stride_b.saturating_mul(u64::from(height - 1)).saturating_add(row_bytes);
    if (payload.len() as u64) < needed {
        return Err(ConvertError::TooShort { format, width, height, stride: stride_b as u32, needed, got: payload.len() });
    }
    Ok((payload, stride_b as usize))
}

/// Converts a format with a fixed number of bytes per pixel, calling `pixel` with each pixel's bytes.
fn packed(format: PixelFormat, bytes: &[u8], width: u32, height: u32, stride: u32, bytesused: u32, mut pixel: impl FnMut(&[u8], &mut Vec<u8>)) -> Result<Vec<u8>, ConvertError> {
    let bpp = format.bytes_per_pixel().unwrap_or(1) as usize;
    let row_bytes = width as u64 * bpp as u64;
    let (payload, stride_b) = raw_layout(format, bytes, width, height, stride, bytesused, row_bytes)?;
    let mut out = Vec::with_capacity(rgb_len(width, height)?);
    for y in 0..height as usize {
        let row = &payload[y * stride_b..y * stride_b + row_bytes as usize];
        for p in row.chunks_exact(bpp) {
            pixel(p, &mut out);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuv_formula_exact_values() {
        // BT.601 red: C=65, D=-38, E=112 -> R=(19370+45808+128)>>8=255, G=(19370+3800-23296+128)>>8=0,
        // B=(19370-19608+128)>>8=-1 -> 0.
        assert_eq!(yuv_to_rgb(81, 90, 240), [255, 0, 0]);
        // C=84, D=-28, E=22 -> R=34158>>8=133, G=23384>>8=91, B=10712>>8=41.
        assert_eq!(yuv_to_rgb(100, 100, 150), [133, 91, 41]);
        assert_eq!(yuv_to_rgb(235, 128, 128), [255, 255, 255]); // white: (65262+128)>>8 = 255
        assert_eq!(yuv_to_rgb(16, 128, 128), [0, 0, 0]); // black
        assert_eq!(yuv_to_rgb(126, 128, 128), [128, 128, 128]); // grey: (32780+128)>>8 = 128
        assert_eq!(yuv_to_rgb(0, 0, 0), [0, 135, 0]); // out of range in: clamped, no panic
        // C=239, D=E=127: G = (71222 - 12700 - 26416 + 128) >> 8 = 32234 >> 8 = 125.
        assert_eq!(yuv_to_rgb(255, 255, 255), [255, 125, 255]);
    }

    #[test]
    fn yuyv_pair_shares_chroma() {
        // Two pixels: Y0=81, U=90, Y1=235, V=240.
        let buf = [81, 90, 235, 240];
        let rgb = yuyv_to_rgb(&buf, 2, 1, 4, 4).unwrap();
        assert_eq!(&rgb[..3], &[255, 0, 0]);
        assert_eq!(&rgb[3..], &yuv_to_rgb(235, 90, 240));
    }

    #[test]
    fn yuyv_stride_and_padding_after_bytesused() {
        // 2x2, stride 6 (2 padding bytes per row), buffer padded to 32 bytes past bytesused = 10.
        let mut buf = vec![0xAA; 32];
        buf[..4].copy_from_slice(&[235, 128, 16, 128]); // white, black
        buf[6..10].copy_from_slice(&[126, 128, 81, 128]); // grey, Y=81 neutral
        let rgb = yuyv_to_rgb(&buf, 2, 2, 6, 10).unwrap();
        let c = 298 * (81 - 16) + 128 >> 8;
        assert_eq!(rgb, vec![255, 255, 255, 0, 0, 0, 128, 128, 128, c as u8, c as u8, c as u8]);
        assert_eq!(c, 76);
    }

    #[test]
    fn yuyv_odd_width_uses_padded_pair() {
        let buf = [235, 128, 0, 128];
        assert_eq!(yuyv_to_rgb(&buf, 1, 1, 0, 4).unwrap(), vec![255, 255, 255]);
        assert!(matches!(yuyv_to_rgb(&buf[..2], 1, 1, 0, 2), Err(ConvertError::TooShort { needed: 4, got: 2, .. })));
    }

    #[test]
    fn short_buffer_is_an_error() {
        let buf = [0u8; 11];
        let e = grey_to_rgb(&buf, 4, 3, 4, 11).unwrap_err();
        assert_eq!(e, ConvertError::TooShort { format: PixelFormat::Grey, width: 4, height: 3, stride: 4, needed: 12, got: 11 });
        assert!(e.to_string().contains("expected at least 12"), "{e}");
        // bytesused shorter than the buffer: only the payload counts.
        assert!(matches!(rgb3_to_rgb(&[0; 64], 4, 4, 12, 47), Err(ConvertError::TooShort { needed: 48, got: 47, .. })));
        assert!(matches!(grey_to_rgb(&[0; 4], 2, 2, 2, 5), Err(ConvertError::BytesUsedPastBuffer { bytesused: 5, buffer_len: 4 })));
        assert!(matches!(grey_to_rgb(&[0; 4], 0, 2, 0, 4), Err(ConvertError::InvalidSize { .. })));
        assert!(matches!(rgb3_to_rgb(&[0; 64], 4, 1, 11, 64), Err(ConvertError::StrideTooSmall { min: 12, .. })));
        assert!(matches!(y16_to_rgb(&[0; 64], u32::MAX, u32::MAX, 0, 64, BitDepth::FULL), Err(ConvertError::TooShort { .. } | ConvertError::InvalidSize { .. })));
    }

    #[test]
    fn grey_last_row_needs_no_padding() {
        // 2x2, stride 4: row 0 = [10, 20, pad, pad], row 1 = [30, 40] (payload 6 bytes).
        let buf = [10, 20, 99, 99, 30, 40];
        assert_eq!(grey_to_rgb(&buf, 2, 2, 4, 6).unwrap(), vec![10, 10, 10, 20, 20, 20, 30, 30, 30, 40, 40, 40]);
    }

    #[test]
    fn y16_is_scaled_by_its_bit_depth_with_exact_values() {
        let le = |vals: &[u16]| -> Vec<u8> { vals.iter().flat_map(|v| v.to_le_bytes()).collect() };
        // 16 bits: round(v / 257): 0x12FF = 4863 -> 18.92 -> 19; 0xFF00 = 65280 -> 254.0; 0x00FF -> 0.99 -> 1.
        let buf = le(&[0x12FF, 0xFF00, 0x00FF]);
        assert_eq!(y16_to_rgb(&buf, 3, 1, 6, 6, BitDepth::FULL).unwrap(), vec![19, 19, 19, 254, 254, 254, 1, 1, 1]);
        // 12 bits, LSB-aligned: 4095 is white (read as 16-bit it was 15, 1/16 grey), 2048 -> 127.53
        // -> 128, 1000 -> 62.27 -> 62; one row of 2 px padded to a stride of 6 bytes.
        let twelve = BitDepth::new(12).unwrap();
        let mut buf = le(&[4095, 2048]);
        buf.extend_from_slice(&[0xAA, 0xAA]);
        buf.extend(le(&[1000, 0]));
        assert_eq!(y16_to_rgb(&buf, 2, 2, 6, 10, twelve).unwrap(), [255, 128, 62, 0].iter().flat_map(|&v| [v; 3]).collect::<Vec<u8>>());
        // 10 bits: 1023 -> 255, 512 -> 127.62 -> 128.
        assert_eq!(y16_to_rgb(&le(&[1023, 512]), 2, 1, 4, 4, BitDepth::new(10).unwrap()).unwrap(), vec![255, 255, 255, 128, 128, 128]);
        // Through the dispatcher too (8-bit formats ignore the depth).
        assert_eq!(to_rgb(PixelFormat::Y16, twelve, &le(&[4095]), 1, 1, 2, 2).unwrap(), vec![255; 3]);
        assert_eq!(to_rgb(PixelFormat::Grey, twelve, &[7], 1, 1, 1, 1).unwrap(), vec![7; 3]);
    }

    #[test]
    fn y16_above_the_bit_depth_is_an_error_naming_the_pixel() {
        let vals: [u16; 4] = [10, 20, 30, 5000];
        let buf: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let e = y16_to_rgb(&buf, 2, 2, 4, 8, BitDepth::new(12).unwrap()).unwrap_err();
        assert_eq!(e, ConvertError::BitDepth { x: 1, y: 1, cause: BitDepthError::SampleTooLarge { value: 5000, bits: 12, max: 4095 } });
        let msg = e.to_string();
        assert!(msg.contains("(1, 1)") && msg.contains("5000") && msg.contains("camera.bit_depth"), "{msg}");
    }

    #[test]
    fn bgr3_swaps_and_rgb3_copies() {
        // 1x2 with stride 4 (one padding byte per row).
        let buf = [1, 2, 3, 0, 4, 5, 6];
        assert_eq!(bgr3_to_rgb(&buf, 1, 2, 4, 7).unwrap(), vec![3, 2, 1, 6, 5, 4]);
        assert_eq!(rgb3_to_rgb(&buf, 1, 2, 4, 7).unwrap(), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(to_rgb(PixelFormat::Bgr3, BitDepth::FULL, &buf, 1, 2, 4, 7).unwrap(), vec![3, 2, 1, 6, 5, 4]);
    }

    fn small_jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 30) as u8, (y * 30) as u8, 128]));
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95).encode_image(&img).unwrap();
        out
    }

    #[test]
    fn mjpeg_decodes_with_padding_after_payload() {
        let jpeg = small_jpeg(8, 6);
        let mut buf = jpeg.clone();
        buf.extend_from_slice(&[0x55; 100]); // buffer padding past bytesused
        let rgb = mjpeg_to_rgb(&buf, 8, 6, 0, jpeg.len() as u32).unwrap();
        assert_eq!(rgb.len(), 8 * 6 * 3);
        // Lossy: pixel (0,0) is close to (0, 0, 128).
        assert!(rgb[0] < 20 && rgb[1] < 20 && (rgb[2] as i32 - 128).abs() < 20, "{:?}", &rgb[..3]);
        // Zero bytes after EOI inside bytesused are tolerated.
        let mut zero_padded = jpeg.clone();
        zero_padded.extend_from_slice(&[0; 16]);
        assert!(mjpeg_to_rgb(&zero_padded, 8, 6, 0, zero_padded.len() as u32).is_ok());
    }

    #[test]
    fn truncated_or_corrupt_mjpeg_is_an_error() {
        let jpeg = small_jpeg(16, 16);
        for cut in [0, 1, 2, 10, jpeg.len() / 2, jpeg.len() - 1] {
            let e = mjpeg_to_rgb(&jpeg, 16, 16, 0, cut as u32).unwrap_err();
            assert!(matches!(e, ConvertError::Jpeg { .. }), "cut {cut}: {e}");
        }
        // Header intact, entropy data replaced by garbage, EOI kept.
        let mut garbage = jpeg.clone();
        let n = garbage.len();
        for b in &mut garbage[n / 2..n - 2] {
            *b = 0xFF;
        }
        assert!(mjpeg_to_rgb(&garbage, 16, 16, 0, n as u32).is_err());
        // Wrong size: refused, not decoded into an unexpected buffer.
        assert!(mjpeg_to_rgb(&jpeg, 8, 8, 0, jpeg.len() as u32).is_err());
        assert!(matches!(mjpeg_to_rgb(&jpeg, 32, 16, 0, jpeg.len() as u32), Err(ConvertError::JpegSize { got_width: 16, .. })));
    }

    #[test]
    fn random_input_never_panics() {
        // Deterministic LCG: random buffers, sizes, strides and bytesused for every format.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        let jpeg = small_jpeg(8, 8);
        for round in 0..400 {
            let len = (next() % 300) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 4 == 0 {
                // A JPEG with random damage between its markers.
                buf = jpeg.clone();
                let n = buf.len();
                for _ in 0..1 + next() % 8 {
                    let at = 2 + next() as usize % (n - 4);
                    buf[at] = next() as u8;
                }
            }
            let (w, h) = (next() % 12, next() % 12);
            let stride = [0, next() % 40, u32::MAX][next() as usize % 3];
            let used = [buf.len() as u32, next() % 400, 0][next() as usize % 3];
            for f in PixelFormat::ALL {
                if let Ok(rgb) = to_rgb(f, BitDepth::FULL, &buf, w, h, stride, used) {
                    assert_eq!(rgb.len(), 3 * w as usize * h as usize);
                }
            }
        }
    }
}
