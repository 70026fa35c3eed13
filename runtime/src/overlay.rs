//! Stage 6 (DESIGN.md §6): draws the anomaly map, the verdict and the score on the frame with
//! embedded-graphics, so an operator sees at a glance why a part was rejected.

use embedded_graphics::{
    mono_font::{ascii::FONT_10X20, MonoTextStyle},
    pixelcolor::Rgb888,
    prelude::*,
    primitives::{PrimitiveStyle, Rectangle},
    text::{Baseline, Text},
};
use image::{imageops::FilterType, ImageBuffer, Luma, RgbImage};

/// Height of the verdict banner, px.
pub const BANNER_PX: u32 = 24;
/// Overlays narrower than this are upscaled (nearest) so the banner text fits, px.
pub const MIN_OVERLAY_WIDTH_PX: u32 = 320;
/// Overlays are downscaled so that their longer side is at most this, px (a 8000 px frame would
/// otherwise cost hundreds of MB per overlay).
pub const MAX_OVERLAY_SIDE_PX: u32 = 2048;

/// An [`RgbImage`] as an embedded-graphics draw target (pixels outside the image are clipped).
pub struct Canvas<'a>(pub &'a mut RgbImage);

impl OriginDimensions for Canvas<'_> {
    fn size(&self) -> Size {
        Size::new(self.0.width(), self.0.height())
    }
}

impl DrawTarget for Canvas<'_> {
    type Color = Rgb888;
    type Error = core::convert::Infallible;

    fn draw_iter<I: IntoIterator<Item = Pixel<Rgb888>>>(&mut self, pixels: I) -> Result<(), Self::Error> {
        let (w, h) = (self.0.width() as i32, self.0.height() as i32);
        for Pixel(p, c) in pixels {
            if (0..w).contains(&p.x) && (0..h).contains(&p.y) {
                self.0.put_pixel(p.x as u32, p.y as u32, image::Rgb([c.r(), c.g(), c.b()]));
            }
        }
        Ok(())
    }
}

/// The "jet" colour map: 0 -> dark blue, 0.5 -> green, 1 -> dark red. Input clamped to [0, 1].
pub fn jet(v: f32) -> [u8; 3] {
    let v = v.clamp(0.0, 1.0);
    let ch = |x: f32| round_u8((1.5 - (4.0 * v - x).abs()).clamp(0.0, 1.0) * 255.0);
    [ch(3.0), ch(2.0), ch(1.0)]
}

/// `x` in [0, 255] rounded half away from zero, exactly as `x.round() as u8` (the fraction
/// `x - trunc(x)` is exact, unlike `x + 0.5`). `f32::round` is a libm call per channel on baseline
/// x86-64 (no SSE4.1) and took 18 % of the line's CPU with the live view on (perf, issue 17).
#[inline]
fn round_u8(x: f32) -> u8 {
    let t = x as u8;
    t.saturating_add(u8::from(x - f32::from(t) >= 0.5))
}

/// Regions smaller than this many map pixels get no box (speckle).
pub const MIN_BOX_PX: usize = 4;

/// Bounding box of one defect region in anomaly-map pixels, inclusive corners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefectBox {
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
    /// Pixels in the region.
    pub pixels: usize,
}

/// Boxes around the 8-connected regions of `map` (`w` x `h`, row-major) with values above
/// `level`, at least `min_pixels` large, largest first.
pub fn defect_boxes(map: &[f32], w: u32, h: u32, level: f32, min_pixels: usize) -> Vec<DefectBox> {
    let mask: Vec<u8> = map.iter().map(|&v| u8::from(v > level)).collect();
    let (labels, sizes) = crate::metrics::label_components(&mask, w as usize, h as usize);
    let mut boxes: Vec<DefectBox> = sizes.iter().map(|&n| DefectBox { x0: u32::MAX, y0: u32::MAX, x1: 0, y1: 0, pixels: n }).collect();
    for (i, &l) in labels.iter().enumerate() {
        if l > 0 {
            let (x, y) = ((i as u32) % w, (i as u32) / w);
            let b = &mut boxes[l as usize - 1];
            b.x0 = b.x0.min(x);
            b.y0 = b.y0.min(y);
            b.x1 = b.x1.max(x);
            b.y1 = b.y1.max(y);
        }
    }
    boxes.retain(|b| b.pixels >= min_pixels);
    boxes.sort_by(|a, b| b.pixels.cmp(&a.pixels));
    boxes
}

/// What to write on the banner: the decision, the image score and the threshold it was judged by.
#[derive(Debug, Clone, Copy)]
pub struct Banner {
    pub reject: bool,
    pub score: f32,
    pub threshold: f32,
}

/// Draws the overlay on `frame` (RGB8, any size): the anomaly map (`map_w` x `map_h`, values in
/// [0, 1], row-major) resized to the frame and blended with the jet colour map, a coloured border,
/// and a banner with verdict, score and threshold. The heat is relative to the threshold (map value
/// / (2 x threshold), clamped to [0, 1]): a region at the decision level shows green at half
/// opacity, whatever the model's absolute score range.
pub fn draw_overlay(frame: &RgbImage, anomaly_map: &[f32], map_w: u32, map_h: u32, verdict: Banner) -> RgbImage {
    let long_side = frame.width().max(frame.height());
    // Upscale narrow frames for the banner, but never past MAX_OVERLAY_SIDE_PX (a 1x20000 frame
    // would otherwise become gigabytes).
    let scale = MIN_OVERLAY_WIDTH_PX.div_ceil(frame.width().max(1)).min(MAX_OVERLAY_SIDE_PX / long_side.max(1)).max(1);
    let mut out = if scale > 1 {
        image::imageops::resize(frame, frame.width() * scale, frame.height() * scale, FilterType::Nearest)
    } else if long_side > MAX_OVERLAY_SIDE_PX {
        let f = MAX_OVERLAY_SIDE_PX as f64 / long_side as f64;
        let (w, h) = (((frame.width() as f64 * f).round() as u32).max(1), ((frame.height() as f64 * f).round() as u32).max(1));
        image::imageops::resize(frame, w, h, FilterType::Triangle)
    } else {
        frame.clone()
    };
    let map: ImageBuffer<Luma<f32>, Vec<f32>> =
        ImageBuffer::from_raw(map_w, map_h, anomaly_map.to_vec()).expect("anomaly map length is map_w * map_h");
    let map = image::imageops::resize(&map, out.width(), out.height(), FilterType::Triangle);
    let gain = if verdict.threshold > 0.0 { 0.5 / verdict.threshold } else { 1.0 };
    for (px, m) in out.pixels_mut().zip(map.pixels()) {
        let v = (m.0[0] * gain).clamp(0.0, 1.0);
        let a = v * 0.7;
        let c = jet(v);
        for k in 0..3 {
            px.0[k] = round_u8(px.0[k] as f32 * (1.0 - a) + c[k] as f32 * a);
        }
    }
    let colour = if verdict.reject { Rgb888::new(220, 30, 30) } else { Rgb888::new(30, 170, 60) };
    let (sx, sy) = (out.width() as f32 / map_w as f32, out.height() as f32 / map_h as f32);
    let mut canvas = Canvas(&mut out);
    let size = canvas.size();
    if verdict.reject {
        // Boxes around the regions of the anomaly map above the threshold: where to look.
        for b in defect_boxes(anomaly_map, map_w, map_h, verdict.threshold, MIN_BOX_PX) {
            let (x0, y0) = ((b.x0 as f32 * sx) as i32, (b.y0 as f32 * sy) as i32);
            let (x1, y1) = (((b.x1 + 1) as f32 * sx) as i32, ((b.y1 + 1) as f32 * sy) as i32);
            let r = Rectangle::with_corners(Point::new(x0 - 2, y0 - 2), Point::new(x1 + 1, y1 + 1));
            let _ = r.into_styled(PrimitiveStyle::with_stroke(Rgb888::new(255, 255, 255), 2)).draw(&mut canvas);
        }
    }
    let _ = Rectangle::new(Point::zero(), size).into_styled(PrimitiveStyle::with_stroke(colour, 3)).draw(&mut canvas);
    let _ = Rectangle::new(Point::zero(), Size::new(size.width, BANNER_PX)).into_styled(PrimitiveStyle::with_fill(colour)).draw(&mut canvas);
    let label = format!(
        "{} {:.3} {} {:.3}",
        if verdict.reject { "REJECT" } else { "OK" },
        verdict.score,
        if verdict.reject { ">" } else { "<=" },
        verdict.threshold
    );
    let style = MonoTextStyle::new(&FONT_10X20, Rgb888::WHITE);
    let _ = Text::with_baseline(&label, Point::new(6, 2), style, Baseline::Top).draw(&mut canvas);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_u8_is_round_on_the_channel_range() {
        for i in 0..=255_000u32 {
            let x = i as f32 / 1000.0;
            assert_eq!(round_u8(x), x.round() as u8, "{x}");
        }
        for x in [0.5f32, 1.5, 2.5, 254.5, 255.0, 255.49, 0.49999997] {
            assert_eq!(round_u8(x), x.round() as u8, "{x}");
        }
    }

    #[test]
    fn jet_end_points() {
        assert_eq!(jet(0.0), [0, 0, 128]);
        assert_eq!(jet(0.5), [128, 255, 128]);
        assert_eq!(jet(1.0), [128, 0, 0]);
        assert_eq!(jet(7.0), jet(1.0));
    }

    #[test]
    fn overlay_has_banner_border_and_heat() {
        let frame = RgbImage::from_pixel(400, 100, image::Rgb([100, 100, 100]));
        // Map 4x1: hot on the right quarter only.
        let out = draw_overlay(&frame, &[0.0, 0.0, 0.0, 1.0], 4, 1, Banner { reject: true, score: 0.9, threshold: 0.5 });
        assert_eq!((out.width(), out.height()), (400, 100));
        assert_eq!(out.get_pixel(200, 1).0, [220, 30, 30], "banner is red for REJECT");
        assert_eq!(out.get_pixel(1, 60).0, [220, 30, 30], "border");
        assert_eq!(out.get_pixel(40, 60).0, [100, 100, 100], "cold map leaves the frame as is");
        let hot = out.get_pixel(390, 60).0;
        assert!(hot[0] > 100 && hot[2] < 60, "hot map tints red: {hot:?}");
        // Banner text drew some white pixels.
        assert!((0..400).any(|x| (0..BANNER_PX).any(|y| out.get_pixel(x, y).0 == [255, 255, 255])));
    }

    #[test]
    fn defect_boxes_surround_regions_above_the_level() {
        // 6x4 map: a 2x2 blob at (1..=2, 1..=2), a single hot pixel at (5, 0), a diagonal pair.
        let mut m = vec![0.0f32; 24];
        for (x, y) in [(1, 1), (2, 1), (1, 2), (2, 2)] {
            m[y * 6 + x] = 0.9;
        }
        m[5] = 0.9;
        let b = defect_boxes(&m, 6, 4, 0.5, 1);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0], DefectBox { x0: 1, y0: 1, x1: 2, y1: 2, pixels: 4 });
        assert_eq!(b[1], DefectBox { x0: 5, y0: 0, x1: 5, y1: 0, pixels: 1 });
        assert_eq!(defect_boxes(&m, 6, 4, 0.5, 2).len(), 1, "speckle filtered");
        assert!(defect_boxes(&m, 6, 4, 0.95, 1).is_empty());
        // A box is drawn in white on a rejected overlay.
        let frame = RgbImage::from_pixel(600, 400, image::Rgb([0, 0, 0]));
        let out = draw_overlay(&frame, &m, 6, 4, Banner { reject: true, score: 0.9, threshold: 0.5 });
        // Map pixel (1, 1) starts at (100, 100) in the frame: the box edge is 2 px outside.
        assert_eq!(out.get_pixel(150, 98).0, [255, 255, 255]);
    }

    #[test]
    fn huge_frames_are_downscaled() {
        let frame = RgbImage::new(4096, 1024);
        let out = draw_overlay(&frame, &[0.0], 1, 1, Banner { reject: false, score: 0.1, threshold: 0.5 });
        assert_eq!((out.width(), out.height()), (2048, 512));
    }

    #[test]
    fn thin_frames_are_not_upscaled_past_the_cap() {
        let frame = RgbImage::new(1, 4000);
        let out = draw_overlay(&frame, &[0.0], 1, 1, Banner { reject: false, score: 0.1, threshold: 0.5 });
        assert!(out.width().max(out.height()) <= MAX_OVERLAY_SIDE_PX, "{}x{}", out.width(), out.height());
    }

    #[test]
    fn small_frames_are_upscaled_for_the_banner() {
        let frame = RgbImage::new(100, 40);
        let out = draw_overlay(&frame, &[0.0], 1, 1, Banner { reject: false, score: 0.1, threshold: 0.5 });
        assert_eq!((out.width(), out.height()), (400, 160));
        assert_eq!(out.get_pixel(200, 1).0, [30, 170, 60]);
    }
}
