//! Shows an overlay on a Linux framebuffer (`/dev/fbN`), for a monitor next to the line without a
//! desktop. The geometry comes from sysfs (`/sys/class/graphics/fbN/`); the image is scaled to fit
//! (aspect kept, nearest neighbour) at the top left.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use image::RgbImage;

/// Framebuffer geometry: visible size in px, bits per pixel (16 = RGB565, 24 = BGR888,
/// 32 = XRGB8888 little-endian, i.e. bytes B, G, R, X) and the line length in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FbGeometry {
    pub width: u32,
    pub height: u32,
    pub bits_per_pixel: u32,
    pub stride_bytes: u32,
}

impl FbGeometry {
    /// Reads `/sys/class/graphics/<name>/{virtual_size,bits_per_pixel,stride}` for `device`
    /// (`/dev/fb0` -> `fb0`). Errors name the file and what was expected.
    pub fn from_sysfs(device: &Path) -> anyhow::Result<Self> {
        let name = device.file_name().and_then(|n| n.to_str()).ok_or_else(|| anyhow::anyhow!("{}: not a framebuffer device path", device.display()))?;
        let dir = Path::new("/sys/class/graphics").join(name);
        let read = |f: &str| {
            let p = dir.join(f);
            std::fs::read_to_string(&p).map(|s| s.trim().to_string()).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))
        };
        let size = read("virtual_size")?;
        let (w, h) = size.split_once(',').ok_or_else(|| anyhow::anyhow!("{}/virtual_size is `{size}`: expected WIDTH,HEIGHT", dir.display()))?;
        let num = |s: &str, what: &str| s.trim().parse::<u32>().map_err(|_| anyhow::anyhow!("{}: `{s}` is not a number ({what})", dir.display()));
        Ok(Self { width: num(w, "width")?, height: num(h, "height")?, bits_per_pixel: num(&read("bits_per_pixel")?, "bits_per_pixel")?, stride_bytes: num(&read("stride")?, "stride")? })
    }
}

/// Encodes `img` into a full framebuffer image of `geom` (black outside the scaled image).
///
/// Errors: unsupported bits per pixel, or a stride smaller than a line.
pub fn encode(img: &RgbImage, geom: FbGeometry) -> anyhow::Result<Vec<u8>> {
    let bpp = match geom.bits_per_pixel {
        16 => 2,
        24 => 3,
        32 => 4,
        other => anyhow::bail!("framebuffer with {other} bits per pixel: expected 16, 24 or 32"),
    };
    anyhow::ensure!(geom.stride_bytes >= geom.width * bpp, "framebuffer stride {} B is shorter than a line of {} px", geom.stride_bytes, geom.width);
    let mut buf = vec![0u8; (geom.stride_bytes * geom.height) as usize];
    if img.width() == 0 || img.height() == 0 {
        return Ok(buf);
    }
    // Scale to fit, keeping the aspect ratio.
    let s = (geom.width as f64 / img.width() as f64).min(geom.height as f64 / img.height() as f64);
    let (w, h) = (((img.width() as f64 * s) as u32).min(geom.width), ((img.height() as f64 * s) as u32).min(geom.height));
    for y in 0..h {
        let sy = ((y as f64 / s) as u32).min(img.height() - 1);
        let row = &mut buf[(y * geom.stride_bytes) as usize..];
        for x in 0..w {
            let sx = ((x as f64 / s) as u32).min(img.width() - 1);
            let [r, g, b] = img.get_pixel(sx, sy).0;
            let o = (x * bpp) as usize;
            match bpp {
                2 => {
                    let v = ((r as u16 >> 3) << 11) | ((g as u16 >> 2) << 5) | (b as u16 >> 3);
                    row[o..o + 2].copy_from_slice(&v.to_le_bytes());
                }
                3 => row[o..o + 3].copy_from_slice(&[b, g, r]),
                _ => row[o..o + 4].copy_from_slice(&[b, g, r, 0xff]),
            }
        }
    }
    Ok(buf)
}

/// Writes `img` to the framebuffer `device` (geometry from sysfs).
///
/// Errors: unreadable geometry, or the device cannot be opened / written (names the device).
pub fn show(device: &Path, img: &RgbImage) -> anyhow::Result<()> {
    let geom = FbGeometry::from_sysfs(device)?;
    let buf = encode(img, geom)?;
    let mut f = std::fs::OpenOptions::new().write(true).open(device).map_err(|e| anyhow::anyhow!("cannot open framebuffer {}: {e}", device.display()))?;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&buf).map_err(|e| anyhow::anyhow!("cannot write framebuffer {}: {e}", device.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_exact_pixels_in_every_depth() {
        let mut img = RgbImage::new(2, 1);
        img.put_pixel(0, 0, image::Rgb([255, 128, 8]));
        img.put_pixel(1, 0, image::Rgb([0, 255, 0]));
        // 4x2 screen: the 2x1 image scales by 2 to 4x2.
        let g = FbGeometry { width: 4, height: 2, bits_per_pixel: 32, stride_bytes: 20 };
        let b = encode(&img, g).unwrap();
        assert_eq!(b.len(), 40);
        assert_eq!(&b[0..8], &[8, 128, 255, 0xff, 8, 128, 255, 0xff]);
        assert_eq!(&b[8..12], &[0, 255, 0, 0xff]);
        assert_eq!(&b[16..20], &[0, 0, 0, 0], "stride padding stays black");
        assert_eq!(&b[20..24], &[8, 128, 255, 0xff], "second line");
        let b = encode(&img, FbGeometry { width: 2, height: 1, bits_per_pixel: 16, stride_bytes: 4 }).unwrap();
        // RGB565 of (255, 128, 8) = 11111 100000 00001 = 0xFC01.
        assert_eq!(&b[0..2], &0xFC01u16.to_le_bytes());
        assert_eq!(&b[2..4], &0x07E0u16.to_le_bytes());
        let b = encode(&img, FbGeometry { width: 2, height: 1, bits_per_pixel: 24, stride_bytes: 6 }).unwrap();
        assert_eq!(b, vec![8, 128, 255, 0, 255, 0]);
    }

    #[test]
    fn keeps_the_aspect_ratio_and_refuses_bad_geometry() {
        let img = RgbImage::from_pixel(4, 4, image::Rgb([255, 255, 255]));
        let b = encode(&img, FbGeometry { width: 8, height: 4, bits_per_pixel: 32, stride_bytes: 32 }).unwrap();
        assert_eq!(&b[12..16], &[255, 255, 255, 255], "x = 3 inside the 4x4 square");
        assert_eq!(&b[16..20], &[0, 0, 0, 0], "x = 4 outside: black");
        assert!(encode(&img, FbGeometry { width: 8, height: 4, bits_per_pixel: 8, stride_bytes: 8 }).unwrap_err().to_string().contains("16, 24 or 32"));
        assert!(encode(&img, FbGeometry { width: 8, height: 4, bits_per_pixel: 32, stride_bytes: 8 }).is_err());
        let msg = show(Path::new("/dev/fb7"), &img).unwrap_err().to_string();
        assert!(msg.contains("fb7"), "{msg}");
    }
}
