//! Stage 2 of the runtime (DESIGN.md §6): decode an image and turn it into the model input.
//!
//! The same code runs in the trainer, so what was measured at training time is what runs on the
//! line. Output layout is planar CHW, RGB, f32 in [0, 1]: `data[c * H * W + y * W + x]`.

use std::path::{Path, PathBuf};

use image::{imageops::FilterType, DynamicImage, Rgb32FImage};

use crate::bit_depth::{BitDepth, BitDepthError};

/// Smallest accepted side of a source image in px; anything smaller is not a real frame.
pub const MIN_SIDE_PX: u32 = 16;

/// Largest accepted side of a source image in px, for files (`inspect`, replay) and camera frames
/// alike. Checked from the header, before decoding.
pub const MAX_SIDE_PX: u32 = 16384;

/// Largest accepted number of pixels of a source image: 2^25 (about 33.5 Mpx, e.g. 8192x4096;
/// an 8K sensor has 33.2 Mpx). Decoding and converting such an image to f32 takes ~0.5 GB; a
/// larger one (a 20000x20000 PNG of 438 KB would take 5 GB) is refused before decoding.
pub const MAX_PIXELS: u64 = 1 << 25;

/// Why an image could not become a model input. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("cannot read image file {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("{path} is empty (0 bytes); expected a PNG or JPEG image")]
    Empty { path: PathBuf },
    #[error("cannot decode image {path} (expected PNG or JPEG, 8 or 16 bit, grey or RGB): {cause}")]
    Decode { path: PathBuf, cause: image::ImageError },
    #[error("image {path} is {width}x{height} px; expected at least {min}x{min} px")]
    TooSmall { path: PathBuf, width: u32, height: u32, min: u32 },
    #[error("image {path} is {width}x{height} px; expected at most {MAX_SIDE_PX} px a side and {MAX_PIXELS} px in all (checked before decoding)")]
    TooLarge { path: PathBuf, width: u32, height: u32 },
    #[error("image {path} is truncated ({len} bytes): {reason}")]
    Truncated { path: PathBuf, len: usize, reason: String },
    #[error("image {path}: {cause}")]
    BitDepth { path: PathBuf, cause: BitDepthError },
    #[error("mask {path} is {width}x{height} px but its image is {image_width}x{image_height} px; expected the same size (another image's mask?)")]
    MaskSize { path: PathBuf, width: u32, height: u32, image_width: u32, image_height: u32 },
}

/// Why a `width` x `height` px image cannot be inspected, if it cannot: a side under
/// [`MIN_SIDE_PX`], a side over [`MAX_SIDE_PX`] or more than [`MAX_PIXELS`] pixels.
pub fn size_problem(width: u32, height: u32) -> Option<String> {
    if width < MIN_SIDE_PX || height < MIN_SIDE_PX {
        return Some(format!("{width}x{height} px: expected at least {MIN_SIDE_PX}x{MIN_SIDE_PX} px"));
    }
    if width > MAX_SIDE_PX || height > MAX_SIDE_PX || u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Some(format!("{width}x{height} px: expected at most {MAX_SIDE_PX} px a side and {MAX_PIXELS} px in all"));
    }
    None
}

/// Region of interest in source pixels: the device file's `[roi]` type (top-left corner `x`, `y`
/// and size `width` x `height`, px), used as it is.
pub use firmware_config::Roi;

/// A decoded model input: planar CHW RGB f32 in [0, 1], `3 * height * width` values.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInput {
    pub width: u32,
    pub height: u32,
    pub chw: Vec<f32>,
}

/// Reads and decodes an image file (PNG or JPEG; grey, grey+alpha, RGB, RGBA; 8 or 16 bit) with
/// [`decode_image`], then expands 16-bit samples of `depth` significant bits to the full range
/// ([`BitDepth::apply`]; 8-bit files are not affected). Every path that reads image files
/// (training, `runtime inspect`, replay) comes through here, so they agree on the scale.
///
/// Errors: [`PreprocessError::Read`] for a missing/unreadable file, those of [`decode_image`],
/// and [`PreprocessError::BitDepth`] for a sample above `2^depth - 1` (the depth is wrong).
pub fn load_image(path: &Path, depth: BitDepth) -> Result<DynamicImage, PreprocessError> {
    let bytes = std::fs::read(path).map_err(|cause| PreprocessError::Read { path: path.into(), cause })?;
    let img = decode_image(path, &bytes)?;
    depth.apply(img).map_err(|cause| PreprocessError::BitDepth { path: path.into(), cause })
}

/// Decodes the bytes of an image file; `path` names it in errors. The size is read from the
/// header and checked before anything is decoded, so an oversized image costs no memory. A JPEG
/// must end with its end-of-image marker `FF D9` (zero bytes after it are tolerated, as in MJPEG):
/// the decoder fills a cut JPEG with grey and reports no error, and a cut good part must not be
/// scored as a whole one.
///
/// Errors: [`PreprocessError::Empty`] for 0 bytes, [`PreprocessError::Decode`] for corrupt or
/// unsupported content (a truncated PNG included), [`PreprocessError::Truncated`] for a JPEG
/// without its end marker, [`PreprocessError::TooSmall`] / [`PreprocessError::TooLarge`] outside
/// [`MIN_SIDE_PX`] ..= [`MAX_SIDE_PX`] a side or over [`MAX_PIXELS`].
pub fn decode_image(path: &Path, bytes: &[u8]) -> Result<DynamicImage, PreprocessError> {
    if bytes.is_empty() {
        return Err(PreprocessError::Empty { path: path.into() });
    }
    let reader = || {
        image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|cause| PreprocessError::Read { path: path.into(), cause })
    };
    let format = reader()?.format();
    let (width, height) = reader()?.into_dimensions().map_err(|cause| PreprocessError::Decode { path: path.into(), cause })?;
    if width < MIN_SIDE_PX || height < MIN_SIDE_PX {
        return Err(PreprocessError::TooSmall { path: path.into(), width, height, min: MIN_SIDE_PX });
    }
    if size_problem(width, height).is_some() {
        return Err(PreprocessError::TooLarge { path: path.into(), width, height });
    }
    if format == Some(image::ImageFormat::Jpeg) {
        let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        if !bytes[..end].ends_with(&[0xFF, 0xD9]) {
            return Err(PreprocessError::Truncated { path: path.into(), len: bytes.len(), reason: "no JPEG end-of-image marker (FF D9) at the end".into() });
        }
    }
    let mut reader = reader()?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE_PX);
    limits.max_image_height = Some(MAX_SIDE_PX);
    reader.limits(limits);
    let img = reader.decode().map_err(|cause| PreprocessError::Decode { path: path.into(), cause })?;
    // The header said one size; the decoder must agree.
    if (img.width(), img.height()) != (width, height) {
        return Err(PreprocessError::Truncated { path: path.into(), len: bytes.len(), reason: format!("decoded {}x{} px, the header says {width}x{height}", img.width(), img.height()) });
    }
    Ok(img)
}

/// Converts any decoded image to RGB f32 in [0, 1]: grey is replicated to the three channels and
/// 16-bit samples are divided by 65535 (8-bit by 255); alpha is dropped.
pub fn to_rgb_f32(img: &DynamicImage) -> Rgb32FImage {
    img.to_rgb32f()
}

/// Crops `roi` (clamped to the image) out of `img`, then resizes to `width` x `height` px with a
/// triangle (bilinear, area-aware when shrinking) filter, and returns planar CHW data.
/// The aspect ratio is not preserved: the model was trained on the same stretch.
pub fn to_model_input(img: &DynamicImage, roi: Option<Roi>, width: u32, height: u32) -> ModelInput {
    let rgb = to_rgb_f32(img);
    let rgb = match roi {
        Some(r) => {
            let (x, y, w, h) = clamp_roi(r, rgb.width(), rgb.height());
            image::imageops::crop_imm(&rgb, x, y, w, h).to_image()
        }
        None => rgb,
    };
    let resized = if rgb.width() == width && rgb.height() == height {
        rgb
    } else {
        image::imageops::resize(&rgb, width, height, FilterType::Triangle)
    };
    ModelInput { width, height, chw: interleaved_to_planar(resized.as_raw(), 3) }
}

/// `roi` clamped to a `width` x `height` px frame, as (x, y, width, height) px: at least 1x1 px,
/// inside the frame. The frame and its ground-truth mask are cropped alike.
fn clamp_roi(r: Roi, width: u32, height: u32) -> (u32, u32, u32, u32) {
    let x = r.x.min(width.saturating_sub(1));
    let y = r.y.min(height.saturating_sub(1));
    (x, y, r.width.min(width - x).max(1), r.height.min(height - y).max(1))
}

/// Reorders interleaved HWC samples (`[r, g, b, r, g, b, ...]`) into planar CHW.
pub fn interleaved_to_planar(hwc: &[f32], channels: usize) -> Vec<f32> {
    let pixels = hwc.len() / channels;
    let mut chw = vec![0.0; hwc.len()];
    for (p, px) in hwc.chunks_exact(channels).enumerate() {
        for (c, v) in px.iter().enumerate() {
            chw[c * pixels + p] = *v;
        }
    }
    chw
}

/// Loads a ground-truth mask (0 = good, >0 = defect; MVTec stores 0/255, VisA small label
/// values; in a mask with alpha, a transparent pixel is good whatever its colour) of a frame of
/// `frame` = (width, height) px, when known, inspected through `roi`: cropped to the ROI (clamped
/// as [`to_model_input`] clamps it) so that its pixels line up with the anomaly map, then resized
/// with nearest neighbour to `width` x `height`, as the MVTec AD evaluation does. Returns 0/1
/// bytes, row-major. Errors: the file cannot be read, is empty or cannot be decoded;
/// [`PreprocessError::MaskSize`] when its size (read from the header, before decoding) is not the
/// frame's.
pub fn load_mask(path: &Path, frame: Option<(u32, u32)>, roi: Option<Roi>, width: u32, height: u32) -> Result<Vec<u8>, PreprocessError> {
    let bytes = std::fs::read(path).map_err(|cause| PreprocessError::Read { path: path.into(), cause })?;
    if bytes.is_empty() {
        return Err(PreprocessError::Empty { path: path.into() });
    }
    // The header's size first: a wrong mask is refused before a large one is decoded (a header
    // that cannot be read fails the decode below).
    if let Some((image_width, image_height)) = frame {
        let header = image::ImageReader::new(std::io::Cursor::new(&bytes)).with_guessed_format().ok().and_then(|r| r.into_dimensions().ok());
        if let Some((width, height)) = header.filter(|&d| d != (image_width, image_height)) {
            return Err(PreprocessError::MaskSize { path: path.into(), width, height, image_width, image_height });
        }
    }
    let img = image::load_from_memory(&bytes).map_err(|cause| PreprocessError::Decode { path: path.into(), cause })?;
    let (w, h) = (img.width(), img.height());
    // Images without alpha convert with alpha at its maximum: one rule for both.
    let la = img.to_luma_alpha16();
    let marks = image::GrayImage::from_fn(w, h, |x, y| {
        let [v, a] = la.get_pixel(x, y).0;
        image::Luma([u8::from(v > 0 && a > 0)])
    });
    let marks = match roi {
        Some(r) => {
            let (x, y, cw, ch) = clamp_roi(r, w, h);
            image::imageops::crop_imm(&marks, x, y, cw, ch).to_image()
        }
        None => marks,
    };
    Ok(image::imageops::resize(&marks, width, height, FilterType::Nearest).into_raw())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use image::{GrayImage, ImageBuffer, Luma, Rgb, RgbImage};

    #[test]
    fn grey8_is_replicated_and_scaled_by_255() {
        let img = DynamicImage::ImageLuma8(GrayImage::from_pixel(2, 2, Luma([51])));
        let m = to_model_input(&img, None, 2, 2);
        assert_eq!(m.chw.len(), 12);
        assert!(m.chw.iter().all(|&v| (v - 0.2).abs() < 1e-7), "{:?}", m.chw);
    }

    #[test]
    fn grey16_is_scaled_by_65535() {
        let img: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_pixel(2, 1, Luma([13107]));
        let m = to_model_input(&DynamicImage::ImageLuma16(img), None, 2, 1);
        assert!(m.chw.iter().all(|&v| (v - 0.2).abs() < 1e-6), "{:?}", m.chw);
    }

    #[test]
    fn twelve_bit_pngs_are_read_at_their_depth_with_exact_values() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("y12.png");
        // A 12-bit sensor's values, LSB-aligned in a 16-bit PNG (16x16, the smallest accepted):
        // the first row starts black, mid, full, one step; the rest is black.
        let mut raw = vec![0u16; 256];
        raw[..4].copy_from_slice(&[0, 2048, 4095, 1]);
        let img: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_raw(16, 16, raw).unwrap();
        img.save(&path).unwrap();
        let twelve = BitDepth::new(12).unwrap();
        let loaded = load_image(&path, twelve).unwrap();
        assert_eq!(&loaded.as_luma16().unwrap().as_raw()[..4], &[0u16, 32776, 65535, 16], "round(v * 65535 / 4095)");
        let m = to_model_input(&loaded, None, 16, 16);
        let want = [0.0, 32776.0 / 65535.0, 1.0, 16.0 / 65535.0];
        for c in 0..3 {
            for (x, w) in want.iter().enumerate() {
                let got = m.chw[c * 256 + x];
                assert!((got - w).abs() < 1e-7, "channel {c} x {x}: {got} vs {w}");
            }
        }
        // Read as full-range 16-bit (the old behaviour) the same file is 16x too dark.
        let full = to_model_input(&load_image(&path, BitDepth::FULL).unwrap(), None, 16, 16);
        assert!((full.chw[2] - 4095.0 / 65535.0).abs() < 1e-7, "{:?}", &full.chw[..4]);
        // A 16-bit value above 4095 cannot come from a 12-bit sensor: the file is refused, named.
        let wide: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_raw(16, 16, vec![40000; 256]).unwrap();
        let bad = d.path().join("y16_full_range.png");
        wide.save(&bad).unwrap();
        let msg = load_image(&bad, twelve).unwrap_err().to_string();
        assert!(msg.contains("y16_full_range.png") && msg.contains("40000") && msg.contains("4095"), "{msg}");
        // 8-bit files are never scaled.
        let g8 = d.path().join("g8.png");
        GrayImage::from_pixel(16, 16, Luma([51])).save(&g8).unwrap();
        assert_eq!(load_image(&g8, twelve).unwrap().as_luma8().unwrap().get_pixel(0, 0), &Luma([51]));
    }

    #[test]
    fn rgb_is_planar_in_channel_order() {
        let mut img = RgbImage::new(2, 1);
        img.put_pixel(0, 0, Rgb([255, 0, 51]));
        img.put_pixel(1, 0, Rgb([0, 102, 255]));
        let m = to_model_input(&DynamicImage::ImageRgb8(img), None, 2, 1);
        let expect = [1.0, 0.0, 0.0, 0.4, 0.2, 1.0];
        for (a, b) in m.chw.iter().zip(expect) {
            assert!((a - b).abs() < 1e-6, "{:?}", m.chw);
        }
    }

    #[test]
    fn roi_crops_before_resizing() {
        let mut img = RgbImage::from_pixel(4, 4, Rgb([0, 0, 0]));
        img.put_pixel(3, 2, Rgb([255, 255, 255]));
        let roi = Roi { x: 3, y: 2, width: 1, height: 1 };
        let m = to_model_input(&DynamicImage::ImageRgb8(img), Some(roi), 1, 1);
        assert_eq!(m.chw, vec![1.0, 1.0, 1.0]);
    }

    #[test]
    fn bad_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.png");
        std::fs::write(&empty, b"").unwrap();
        let corrupt = dir.path().join("corrupt.png");
        std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\nthis is not a png").unwrap();
        let tiny = dir.path().join("tiny.png");
        RgbImage::new(1, 1).save(&tiny).unwrap();
        let missing = dir.path().join("missing.png");
        for (p, want) in [(&empty, "empty"), (&corrupt, "cannot decode"), (&tiny, "1x1 px"), (&missing, "cannot read")] {
            let msg = load_image(p, BitDepth::FULL).unwrap_err().to_string();
            assert!(msg.contains(want) && msg.contains(p.file_name().unwrap().to_str().unwrap()), "{msg}");
        }
    }

    /// A noisy RGB JPEG of 96x64 px, as bytes.
    fn jpeg_bytes() -> Vec<u8> {
        let img = RgbImage::from_fn(96, 64, |x, y| Rgb([(x * 7 + y * 3) as u8, (x * y) as u8, ((x ^ y) * 5) as u8]));
        let mut buf = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 90).encode_image(&img).unwrap();
        buf
    }

    #[test]
    fn truncated_jpegs_are_errors_naming_the_file_not_grey_filled_frames() {
        let d = tempfile::tempdir().unwrap();
        let full = jpeg_bytes();
        let path = d.path().join("part_0042.jpg");
        std::fs::write(&path, &full).unwrap();
        assert_eq!(load_image(&path, BitDepth::FULL).unwrap().width(), 96, "the whole file decodes");
        // Zero padding after the end marker (as MJPEG buffers have) is fine.
        let mut padded = full.clone();
        padded.extend_from_slice(&[0; 64]);
        assert!(decode_image(&path, &padded).is_ok());
        for pct in 60..=97 {
            let cut = &full[..full.len() * pct / 100];
            std::fs::write(&path, cut).unwrap();
            let msg = load_image(&path, BitDepth::FULL).unwrap_err().to_string();
            assert!(msg.contains("part_0042.jpg") && msg.contains("truncated"), "cut at {pct} %: {msg}");
        }
    }

    #[test]
    fn truncated_pngs_are_errors_naming_the_file() {
        let img = RgbImage::from_fn(96, 64, |x, y| Rgb([(x * 7 + y * 3) as u8, (x * y) as u8, ((x ^ y) * 5) as u8]));
        let mut full = Vec::new();
        DynamicImage::ImageRgb8(img).write_to(&mut std::io::Cursor::new(&mut full), image::ImageFormat::Png).unwrap();
        let path = Path::new("/line/frames/f7.png");
        for pct in 60..=97 {
            let msg = decode_image(path, &full[..full.len() * pct / 100]).unwrap_err().to_string();
            assert!(msg.contains("f7.png"), "cut at {pct} %: {msg}");
        }
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in data {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }

    /// The start of a PNG that claims `w` x `h` px grey (signature, IHDR and a small IDAT).
    pub(crate) fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut chunk = |kind: &[u8], data: &[u8]| {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let mut body = kind.to_vec();
            body.extend_from_slice(data);
            out.extend_from_slice(&body);
            out.extend_from_slice(&crc32(&body).to_be_bytes());
        };
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit grey, deflate, no filter, no interlace
        chunk(b"IHDR", &ihdr);
        chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00]);
        out
    }

    #[test]
    fn oversized_images_are_refused_from_the_header_before_decoding() {
        assert_eq!(size_problem(640, 480), None);
        assert_eq!(size_problem(8192, 4096), None);
        assert!(size_problem(8192, 4097).is_some(), "over MAX_PIXELS");
        assert!(size_problem(16385, 16).is_some());
        let path = Path::new("/frames/huge.png");
        let bytes = png_header(20000, 20000);
        let t = std::time::Instant::now();
        let err = decode_image(path, &bytes).unwrap_err();
        assert!(t.elapsed() < std::time::Duration::from_millis(200), "refused at once, not after decoding: {:?}", t.elapsed());
        assert!(matches!(err, PreprocessError::TooLarge { width: 20000, height: 20000, .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("huge.png") && msg.contains("20000x20000") && msg.contains("at most 16384"), "{msg}");
        let msg = decode_image(Path::new("/frames/thin.png"), &png_header(20000, 20)).unwrap_err().to_string();
        assert!(msg.contains("thin.png") && msg.contains("20000x20"), "{msg}");
    }

    #[test]
    fn masks_mark_every_nonzero_pixel_whatever_the_encoding() {
        let d = tempfile::tempdir().unwrap();
        // MVTec: 0/255 grey; VisA: small label values; 16-bit grey.
        let mvtec = d.path().join("m.png");
        image::GrayImage::from_fn(4, 2, |x, _| image::Luma([if x >= 2 { 255 } else { 0 }])).save(&mvtec).unwrap();
        let visa = d.path().join("v.png");
        image::GrayImage::from_fn(4, 2, |x, _| image::Luma([if x >= 2 { 1 } else { 0 }])).save(&visa).unwrap();
        let deep = d.path().join("d.png");
        image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(4, 2, |x, _| image::Luma([if x >= 2 { 1 } else { 0 }])).save(&deep).unwrap();
        for p in [&mvtec, &visa, &deep] {
            assert_eq!(load_mask(p, None, None, 4, 2).unwrap(), [0, 0, 1, 1, 0, 0, 1, 1], "{}", p.display());
        }
        // Nearest-neighbour downscale 4x2 -> 2x1 keeps one sample per 2x2 block.
        assert_eq!(load_mask(&mvtec, None, None, 2, 1).unwrap().len(), 2);
        // White everywhere, opaque only at x >= 2: the transparent pixels are not defects.
        let rgba = d.path().join("a.png");
        image::RgbaImage::from_fn(4, 2, |x, _| image::Rgba([255, 255, 255, if x >= 2 { 255 } else { 0 }])).save(&rgba).unwrap();
        assert_eq!(load_mask(&rgba, None, None, 4, 2).unwrap(), [0, 0, 1, 1, 0, 0, 1, 1]);
    }

    #[test]
    fn a_mask_is_cropped_to_the_roi_and_refused_when_its_size_is_not_its_frames() {
        let d = tempfile::tempdir().unwrap();
        // 8x4 frame, defect in columns 6-7.
        let p = d.path().join("m.png");
        image::GrayImage::from_fn(8, 4, |x, _| image::Luma([if x >= 6 { 255 } else { 0 }])).save(&p).unwrap();
        let roi = |x| Some(Roi { x, y: 0, width: 4, height: 4 });
        assert_eq!(load_mask(&p, Some((8, 4)), roi(0), 4, 4).unwrap(), [0; 16], "the defect lies outside the ROI");
        let right = load_mask(&p, Some((8, 4)), roi(4), 4, 4).unwrap();
        assert_eq!(right, [0, 0, 1, 1].repeat(4), "columns 6-7 of the frame are 2-3 of the ROI");
        // A ROI past the frame's edge is clamped as the image's: columns 6-7, all defect.
        assert_eq!(load_mask(&p, Some((8, 4)), roi(6), 2, 4).unwrap(), [1; 8]);
        let err = load_mask(&p, Some((256, 104)), None, 4, 4).unwrap_err().to_string();
        assert!(err.contains(&p.display().to_string()) && err.contains("8x4 px") && err.contains("256x104 px"), "{err}");
    }
}
