//! [`BitDepth`]: how many of a 16-bit sample's bits a sensor really uses.
//!
//! Industrial cameras with 10-, 12- or 14-bit sensors deliver `Y16` frames (V4L2: "the actual
//! sampling precision may be lower than 16 bits, for example 10 bits per pixel with values in
//! range 0 to 1023") and write 16-bit PNG files the same way: the value sits in the low bits, the
//! high bits are zero. Read as full-range 16-bit data, a 12-bit image comes out 16x too dark.
//!
//! The rule, one for every path (training files, `runtime inspect`, replay, V4L2 `Y16`): a 16-bit
//! sample `v` of an image of bit depth `b` means `v / (2^b - 1)`. Where samples enter the product
//! they are expanded to the full 16-bit range ([`BitDepth::expand`]) or to 8 bits for the line's
//! RGB8 frames ([`BitDepth::to_u8`]), so everything downstream (model input in [0, 1], overlays,
//! saved frames) sees full-range data. 8-bit images are not affected. A sample above `2^b - 1`
//! cannot come from a `b`-bit sensor: the frame is refused ([`BitDepthError::SampleTooLarge`])
//! rather than judged on clipped data, because the configured depth is wrong.
//!
//! The trainer records the depth of its training files in the model metadata
//! (`ffcad.bit_depth`); the runtime uses it unless `[camera].bit_depth` or `--bit-depth` says
//! otherwise, so training and line agree.

use image::{DynamicImage, ImageBuffer, Pixel};

/// Significant bits of a 16-bit sample, LSB-aligned: 8 ..= 16 (16 = full range, the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct BitDepth(u8);

/// A bit depth outside 8 ..= 16, or a sample too large for the depth.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BitDepthError {
    #[error("bit depth {0}: expected 8 ..= 16 significant bits of a 16-bit sample")]
    OutOfRange(u8),
    #[error("sample value {value} is above {max}, the largest a {bits}-bit sensor gives: the bit depth is set wrong (the data uses more bits)")]
    SampleTooLarge { value: u16, bits: u8, max: u16 },
}

impl BitDepth {
    /// 16 significant bits: samples used as they are.
    pub const FULL: Self = Self(16);

    /// `bits` significant bits.
    ///
    /// # Errors
    /// [`BitDepthError::OutOfRange`] outside 8 ..= 16.
    pub fn new(bits: u8) -> Result<Self, BitDepthError> {
        if (8..=16).contains(&bits) {
            Ok(Self(bits))
        } else {
            Err(BitDepthError::OutOfRange(bits))
        }
    }

    /// The number of significant bits.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// The largest sample of this depth, `2^bits - 1` (4095 for 12 bits).
    pub fn max_sample(self) -> u16 {
        ((1u32 << self.0) - 1) as u16
    }

    fn check(self, v: u16) -> Result<u32, BitDepthError> {
        let max = self.max_sample();
        if v > max {
            return Err(BitDepthError::SampleTooLarge { value: v, bits: self.0, max });
        }
        Ok(u32::from(v))
    }

    /// `v` expanded to the full 16-bit range: `round(v * 65535 / (2^bits - 1))` in integers
    /// (4095 -> 65535, 2048 -> 32776 at 12 bits; unchanged at 16 bits).
    ///
    /// # Errors
    /// [`BitDepthError::SampleTooLarge`] when `v > 2^bits - 1`.
    pub fn expand(self, v: u16) -> Result<u16, BitDepthError> {
        let max = u32::from(self.max_sample());
        Ok(((self.check(v)? * 65535 + max / 2) / max) as u16)
    }

    /// `v` scaled to 8 bits: `round(v * 255 / (2^bits - 1))` in integers (4095 -> 255,
    /// 2048 -> 128 at 12 bits; `v >> 8` rounded at 16 bits).
    ///
    /// # Errors
    /// [`BitDepthError::SampleTooLarge`] when `v > 2^bits - 1`.
    pub fn to_u8(self, v: u16) -> Result<u8, BitDepthError> {
        let max = u32::from(self.max_sample());
        Ok(((self.check(v)? * 255 + max / 2) / max) as u8)
    }

    /// `img` with every 16-bit sample (alpha included) expanded by [`BitDepth::expand`]; 8-bit
    /// and float images, and any image at 16 bits, are returned as they are (no copy).
    ///
    /// # Errors
    /// [`BitDepthError::SampleTooLarge`] for the first sample above `2^bits - 1`.
    pub fn apply(self, img: DynamicImage) -> Result<DynamicImage, BitDepthError> {
        if self == Self::FULL {
            return Ok(img);
        }
        Ok(match img {
            DynamicImage::ImageLuma16(i) => DynamicImage::ImageLuma16(self.expand_buffer(i)?),
            DynamicImage::ImageLumaA16(i) => DynamicImage::ImageLumaA16(self.expand_buffer(i)?),
            DynamicImage::ImageRgb16(i) => DynamicImage::ImageRgb16(self.expand_buffer(i)?),
            DynamicImage::ImageRgba16(i) => DynamicImage::ImageRgba16(self.expand_buffer(i)?),
            other => other,
        })
    }

    fn expand_buffer<P: Pixel<Subpixel = u16>>(self, mut buf: ImageBuffer<P, Vec<u16>>) -> Result<ImageBuffer<P, Vec<u16>>, BitDepthError> {
        for v in buf.iter_mut() {
            *v = self.expand(*v)?;
        }
        Ok(buf)
    }
}

impl Default for BitDepth {
    fn default() -> Self {
        Self::FULL
    }
}

impl TryFrom<u8> for BitDepth {
    type Error = BitDepthError;
    fn try_from(bits: u8) -> Result<Self, Self::Error> {
        Self::new(bits)
    }
}

impl From<BitDepth> for u8 {
    fn from(d: BitDepth) -> u8 {
        d.0
    }
}

impl std::fmt::Display for BitDepth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-bit", self.0)
    }
}

impl std::str::FromStr for BitDepth {
    type Err = String;
    /// Parses `12` (as `--bit-depth 12` is written).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bits: u8 = s.trim().parse().map_err(|_| format!("bit depth `{s}`: expected a number of bits, 8 ..= 16"))?;
        Self::new(bits).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, Rgb};

    fn depth(b: u8) -> BitDepth {
        BitDepth::new(b).unwrap()
    }

    #[test]
    fn exact_values_at_each_depth() {
        // Independently: round(v * 65535 / max) and round(v * 255 / max) in f64.
        for b in 8..=16u8 {
            let d = depth(b);
            let max = (1u32 << b) - 1;
            assert_eq!(u32::from(d.max_sample()), max);
            for v in [0, 1, max / 3, max / 2, max / 2 + 1, max - 1, max] {
                let want16 = (f64::from(v) * 65535.0 / f64::from(max)).round() as u16;
                let want8 = (f64::from(v) * 255.0 / f64::from(max)).round() as u8;
                assert_eq!(d.expand(v as u16).unwrap(), want16, "{b} bits, v = {v}");
                assert_eq!(d.to_u8(v as u16).unwrap(), want8, "{b} bits, v = {v}");
            }
        }
        let d12 = depth(12);
        assert_eq!((d12.expand(4095).unwrap(), d12.expand(2048).unwrap(), d12.expand(1).unwrap()), (65535, 32776, 16));
        assert_eq!((d12.to_u8(4095).unwrap(), d12.to_u8(2048).unwrap(), d12.to_u8(8).unwrap()), (255, 128, 0));
        assert_eq!(BitDepth::FULL.expand(12345).unwrap(), 12345);
        assert_eq!(BitDepth::FULL.to_u8(0x1280).unwrap(), 0x12, "0x1280 * 255 / 65535 = 18.43, rounded 18");
    }

    #[test]
    fn samples_above_the_depth_are_refused_with_the_numbers() {
        let e = depth(12).expand(4096).unwrap_err();
        assert_eq!(e, BitDepthError::SampleTooLarge { value: 4096, bits: 12, max: 4095 });
        let msg = e.to_string();
        assert!(msg.contains("4096") && msg.contains("4095") && msg.contains("12-bit"), "{msg}");
        assert!(depth(10).to_u8(1024).is_err());
        assert_eq!(BitDepth::new(7).unwrap_err(), BitDepthError::OutOfRange(7));
        assert!(BitDepth::new(17).is_err());
        assert!("abc".parse::<BitDepth>().unwrap_err().contains("abc"));
        assert_eq!("12".parse::<BitDepth>().unwrap(), depth(12));
    }

    #[test]
    fn apply_expands_16_bit_images_only() {
        let g16 = ImageBuffer::<Luma<u16>, _>::from_raw(2, 1, vec![1023u16, 512]).unwrap();
        let out = depth(10).apply(DynamicImage::ImageLuma16(g16)).unwrap();
        assert_eq!(out.as_luma16().unwrap().as_raw(), &vec![65535u16, 32800]);
        let rgb16 = ImageBuffer::<Rgb<u16>, _>::from_raw(1, 1, vec![4095u16, 0, 2048]).unwrap();
        let out = depth(12).apply(DynamicImage::ImageRgb16(rgb16)).unwrap();
        assert_eq!(out.as_rgb16().unwrap().as_raw(), &vec![65535u16, 0, 32776]);
        // 8-bit images are never scaled, whatever the depth.
        let g8 = DynamicImage::ImageLuma8(GrayImage::from_pixel(1, 1, Luma([7])));
        assert_eq!(depth(12).apply(g8.clone()).unwrap(), g8);
        let too_big = ImageBuffer::<Luma<u16>, _>::from_raw(2, 1, vec![10u16, 5000]).unwrap();
        assert!(matches!(depth(12).apply(DynamicImage::ImageLuma16(too_big)), Err(BitDepthError::SampleTooLarge { value: 5000, .. })));
    }

    #[test]
    fn serde_reads_and_checks_a_number() {
        #[derive(Debug, serde::Deserialize)]
        struct T {
            d: BitDepth,
        }
        assert_eq!(serde_json::from_str::<T>(r#"{"d": 12}"#).unwrap().d, depth(12));
        assert!(serde_json::from_str::<T>(r#"{"d": 20}"#).unwrap_err().to_string().contains("8 ..= 16"));
        assert_eq!(serde_json::to_string(&depth(14)).unwrap(), "14");
    }
}
