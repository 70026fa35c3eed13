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

/// Where an overlay is shown, which decides the size it is drawn at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlayFit {
    /// Overlay files and the web view's reject gallery: frames narrower than
    /// [`MIN_OVERLAY_WIDTH_PX`] are upscaled (nearest) so the banner text fits, frames longer than
    /// [`MAX_OVERLAY_SIDE_PX`] downscaled.
    File,
    /// The web view's live frame: never upscaled (the page scales it and shows verdict and score
    /// beside it) and downscaled to [`LIVE_MAX_SIDE_PX`]. It is drawn up to 10 times a second, so
    /// its cost is its pixels: a 256x104 frame drawn 2x enlarged cost 4x (issue 17, BENCHMARKS.md).
    Live,
}

/// Longest side of a live-view overlay, px (about what the page shows).
pub const LIVE_MAX_SIDE_PX: u32 = 640;

/// Draws the overlay on `frame` (RGB8, any size) for a file ([`OverlayFit::File`]): the anomaly
/// map (`map_w` x `map_h`, values in [0, 1], row-major) resized to the frame and blended with the
/// jet colour map, a coloured border, and a banner with verdict, score and threshold. The heat is
/// relative to the threshold (map value / (2 x threshold), clamped to [0, 1]): a region at the
/// decision level shows green at half opacity, whatever the model's absolute score range.
pub fn draw_overlay(frame: &RgbImage, anomaly_map: &[f32], map_w: u32, map_h: u32, verdict: Banner) -> RgbImage {
    draw_overlay_fit(frame, anomaly_map, map_w, map_h, verdict, OverlayFit::File)
}

/// [`draw_overlay`] at the size `fit` asks for.
pub fn draw_overlay_fit(frame: &RgbImage, anomaly_map: &[f32], map_w: u32, map_h: u32, verdict: Banner, fit: OverlayFit) -> RgbImage {
    let mut out = resized(frame, fit).unwrap_or_else(|| frame.clone());
    let map = resize_map(anomaly_map, map_w, map_h, out.width(), out.height());
    let gain = if verdict.threshold > 0.0 { 0.5 / verdict.threshold } else { 1.0 };
    for (px, m) in out.pixels_mut().zip(map.iter()) {
        let v = (m * gain).clamp(0.0, 1.0);
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

/// Colour of the ground-truth outline [`outline_mask`] draws: magenta, which the jet colour map
/// of the heat never shows.
pub const MASK_OUTLINE: [u8; 3] = [255, 0, 255];

/// Outlines a labelled defect on an overlay: `mask` (`mask_w` x `mask_h`, row-major, nonzero =
/// defect; best at the frame's or ROI's own size) is mapped onto `region` = (x, y, width, height)
/// px of `img`, a region pixel counting as defect when the mask pixel under it is marked or any
/// marked mask pixel falls in it (so a 1 px defect survives a downscaled overlay), and every
/// pixel of the region outside the defect within `thickness` px of it (8-neighbourhood,
/// Chebyshev distance) is painted [`MASK_OUTLINE`]: a ring around each defect that leaves the
/// defect and its heat visible, so a missed 2 px pit can be found on the picture. Callers make
/// `thickness` grow with the overlay so the ring survives the contact sheet's downscaling. Only
/// the defect's bounding box (plus the ring) is scanned; pixels outside `img` are skipped.
pub fn outline_mask(img: &mut RgbImage, mask: &[u8], mask_w: u32, mask_h: u32, region: (u32, u32, u32, u32), thickness: u32) {
    assert_eq!(mask.len(), (mask_w * mask_h) as usize, "mask length is mask_w * mask_h");
    let (rx, ry, rw, rh) = region;
    let (mw, mh) = (mask_w as usize, mask_h as usize);
    let marked: Vec<(usize, usize)> = mask.iter().enumerate().filter(|(_, &v)| v != 0).map(|(i, _)| (i % mw, i / mw)).collect();
    if rw == 0 || rh == 0 || marked.is_empty() {
        return;
    }
    let (rw, rh, t) = (rw as usize, rh as usize, thickness.max(1) as usize);
    // Mask -> region and region -> mask, nearest.
    let to_region = |m: usize, n_mask: usize, n_region: usize| (m * n_region / n_mask).min(n_region - 1);
    let to_mask = |r: usize, n_region: usize, n_mask: usize| (r * n_mask / n_region).min(n_mask - 1);
    // The working window: the defects' bounding box in the region, widened by the ring.
    let (mx0, mx1) = (marked.iter().map(|p| p.0).min().unwrap(), marked.iter().map(|p| p.0).max().unwrap());
    let (my0, my1) = (marked.iter().map(|p| p.1).min().unwrap(), marked.iter().map(|p| p.1).max().unwrap());
    let x0 = to_region(mx0, mw, rw).saturating_sub(t);
    let x1 = (((mx1 + 1) * rw).div_ceil(mw) + t).min(rw);
    let y0 = to_region(my0, mh, rh).saturating_sub(t);
    let y1 = (((my1 + 1) * rh).div_ceil(mh) + t).min(rh);
    let (ww, wh) = (x1 - x0, y1 - y0);
    let mut defect = vec![false; ww * wh];
    for y in 0..wh {
        for x in 0..ww {
            defect[y * ww + x] = mask[to_mask(y0 + y, rh, mh) * mw + to_mask(x0 + x, rw, mw)] != 0;
        }
    }
    for &(mx, my) in &marked {
        defect[(to_region(my, mh, rh) - y0) * ww + to_region(mx, mw, rw) - x0] = true;
    }
    // Dilate by t (rows, then columns); the ring is the dilation less the defect.
    let mut wide = vec![false; ww * wh];
    for y in 0..wh {
        for x in 0..ww {
            wide[y * ww + x] = (x.saturating_sub(t)..=(x + t).min(ww - 1)).any(|i| defect[y * ww + i]);
        }
    }
    for y in 0..wh {
        for x in 0..ww {
            let near = (y.saturating_sub(t)..=(y + t).min(wh - 1)).any(|j| wide[j * ww + x]);
            let (px, py) = (rx as usize + x0 + x, ry as usize + y0 + y);
            if near && !defect[y * ww + x] && px < img.width() as usize && py < img.height() as usize {
                img.put_pixel(px as u32, py as u32, image::Rgb(MASK_OUTLINE));
            }
        }
    }
}

/// Width of the ring [`outline_mask`] draws on an overlay `overlay_width` px wide: 1 px, and as
/// many more as the contact sheet's tiles ([`crate::contact_sheet::TILE_WIDTH_PX`]) shrink it, so
/// the ring is still about 1 px there.
pub fn ring_thickness(overlay_width: u32) -> u32 {
    (overlay_width as f32 / crate::contact_sheet::TILE_WIDTH_PX as f32).round().max(1.0) as u32
}

/// `frame` at the size `fit` draws it (see [`OverlayFit`]); `None` when that is its own size.
pub fn resized(frame: &RgbImage, fit: OverlayFit) -> Option<RgbImage> {
    let long_side = frame.width().max(frame.height());
    let (min_width, max_side) = match fit {
        OverlayFit::File => (MIN_OVERLAY_WIDTH_PX, MAX_OVERLAY_SIDE_PX),
        OverlayFit::Live => (1, LIVE_MAX_SIDE_PX),
    };
    // Upscale narrow frames for the banner, but never past max_side (a 1x20000 frame would
    // otherwise become gigabytes).
    let scale = min_width.div_ceil(frame.width().max(1)).min(max_side / long_side.max(1)).max(1);
    if scale > 1 {
        Some(enlarge(frame, scale))
    } else if long_side > max_side {
        let f = max_side as f64 / long_side as f64;
        let (w, h) = (((frame.width() as f64 * f).round() as u32).max(1), ((frame.height() as f64 * f).round() as u32).max(1));
        Some(match fit {
            OverlayFit::File => image::imageops::resize(frame, w, h, FilterType::Triangle),
            // Area averaging in integers: several times cheaper than a Triangle filter.
            OverlayFit::Live => image::imageops::thumbnail(frame, w, h),
        })
    } else {
        None
    }
}

/// `frame` enlarged `scale` times by repeating each pixel (nearest neighbour at an integer
/// factor: the same pixels as `image`'s Nearest filter, checked in a test, at a fraction of its
/// cost, which samples through floats and rounds every channel).
fn enlarge(frame: &RgbImage, scale: u32) -> RgbImage {
    let (w, s) = (frame.width() as usize, scale as usize);
    let mut out = Vec::with_capacity(frame.as_raw().len() * s * s);
    for row in frame.as_raw().chunks_exact(3 * w.max(1)) {
        let start = out.len();
        for px in row.chunks_exact(3) {
            for _ in 0..s {
                out.extend_from_slice(px);
            }
        }
        for _ in 1..s {
            out.extend_from_within(start..start + 3 * w * s);
        }
    }
    RgbImage::from_raw(frame.width() * scale, frame.height() * scale, out).expect("w*s x h*s RGB pixels")
}

/// The anomaly map (`map_w` x `map_h`, row-major) resized to `w` x `h`, row-major. Enlarging
/// (the usual case: the map is at the model's input size, the frame larger) is bilinear with
/// pixel centres aligned and edges clamped: the same values as `image`'s Triangle filter
/// (checked in a test), without its per-sample rounding calls, which took half of the live
/// view's drawing time. Shrinking uses `image`'s Triangle filter.
pub fn resize_map(map: &[f32], map_w: u32, map_h: u32, w: u32, h: u32) -> Vec<f32> {
    assert_eq!(map.len(), (map_w * map_h) as usize, "anomaly map length is map_w * map_h");
    if w < map_w || h < map_h {
        let img: ImageBuffer<Luma<f32>, Vec<f32>> = ImageBuffer::from_raw(map_w, map_h, map.to_vec()).expect("length checked");
        return image::imageops::resize(&img, w, h, FilterType::Triangle).into_raw();
    }
    // Source position of each output column / row: left (top) sample and the weight of the next.
    let taps = |n_out: u32, n_in: u32| -> Vec<(usize, f32)> {
        let ratio = n_in as f32 / n_out as f32;
        (0..n_out)
            .map(|o| {
                let c = ((o as f32 + 0.5) * ratio - 0.5).clamp(0.0, (n_in - 1) as f32);
                let i = (c.floor() as usize).min(n_in as usize - 1);
                (i, c - i as f32)
            })
            .collect()
    };
    let (xs, ys) = (taps(w, map_w), taps(h, map_h));
    let (mw, mh) = (map_w as usize, map_h as usize);
    // Each map row enlarged along x once; output rows blend two of them.
    let wide: Vec<f32> = (0..mh)
        .flat_map(|r| {
            let row = &map[r * mw..(r + 1) * mw];
            xs.iter().map(move |&(i, f)| if f > 0.0 { row[i] * (1.0 - f) + row[i + 1] * f } else { row[i] })
        })
        .collect();
    let w = w as usize;
    let mut out = Vec::with_capacity(w * ys.len());
    for &(r, f) in &ys {
        let top = &wide[r * w..(r + 1) * w];
        if f > 0.0 {
            let bottom = &wide[(r + 1) * w..(r + 2) * w];
            out.extend(top.iter().zip(bottom).map(|(a, b)| a * (1.0 - f) + b * f));
        } else {
            out.extend_from_slice(top);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mask_outline_rings_the_enlarged_defect_and_leaves_it_visible() {
        // A 4x2 mask with one defect cell at (1, 0), enlarged 3x onto a region at (2, 1) of a
        // 16x8 image: the cell covers x 5-7, y 1-3; its ring is x 4-8, y 0-4 less the cell
        // (y 0 is the image's, outside the region: skipped).
        let mut img = RgbImage::from_pixel(16, 8, image::Rgb([10, 20, 30]));
        outline_mask(&mut img, &[0, 1, 0, 0, 0, 0, 0, 0], 4, 2, (2, 1, 12, 6), 1);
        let ring: Vec<(u32, u32)> = img.enumerate_pixels().filter(|p| p.2 .0 == MASK_OUTLINE).map(|p| (p.0, p.1)).collect();
        let want: Vec<(u32, u32)> = (1..=4).flat_map(|y| (4..=8).map(move |x| (x, y))).filter(|&(x, y)| !((5..=7).contains(&x) && (1..=3).contains(&y))).collect();
        assert_eq!(ring, want);
        // No defect: nothing drawn.
        let mut clean = RgbImage::from_pixel(16, 8, image::Rgb([10, 20, 30]));
        outline_mask(&mut clean, &[0; 8], 4, 2, (0, 0, 16, 8), 1);
        assert!(clean.pixels().all(|p| p.0 == [10, 20, 30]));
        // Downscaled 4x: a 1 px defect at (9, 5) of a 16x8 mask still marks pixel (2, 1) of a
        // 4x2 region, and a 2 px ring is clipped at the image's edges.
        let mut one = vec![0u8; 128];
        one[5 * 16 + 9] = 1;
        let mut small = RgbImage::from_pixel(4, 2, image::Rgb([10, 20, 30]));
        outline_mask(&mut small, &one, 16, 8, (0, 0, 4, 2), 2);
        let ring: Vec<(u32, u32)> = small.enumerate_pixels().filter(|p| p.2 .0 == MASK_OUTLINE).map(|p| (p.0, p.1)).collect();
        assert_eq!(ring, [(0, 0), (1, 0), (2, 0), (3, 0), (0, 1), (1, 1), (3, 1)]);
        assert_eq!((ring_thickness(512), ring_thickness(2048), ring_thickness(100)), (1, 4, 1));
    }

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
    fn map_enlargement_equals_image_triangle_filter() {
        // An independent computation: the `image` crate's Triangle resize.
        for (mw, mh, w, h) in [(4, 1, 400, 100), (40, 16, 256, 104), (5, 3, 7, 3), (3, 5, 3, 11), (6, 4, 6, 4), (1, 1, 9, 2)] {
            let map: Vec<f32> = (0..mw * mh).map(|i| ((i * 37 % 11) as f32 / 10.0).powi(2)).collect();
            let ours = resize_map(&map, mw, mh, w, h);
            let img: ImageBuffer<Luma<f32>, Vec<f32>> = ImageBuffer::from_raw(mw, mh, map.clone()).unwrap();
            let theirs = image::imageops::resize(&img, w, h, FilterType::Triangle).into_raw();
            assert_eq!(ours.len(), theirs.len());
            let worst = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst < 1e-5, "{mw}x{mh} -> {w}x{h}: differs by {worst}");
        }
        // Shrinking goes to the library.
        assert_eq!(resize_map(&[0.0, 1.0, 1.0, 0.0], 4, 1, 2, 1).len(), 2);
    }

    #[test]
    fn enlarging_repeats_pixels_as_the_nearest_filter_does() {
        let frame = RgbImage::from_fn(7, 3, |x, y| image::Rgb([x as u8 * 30, y as u8 * 70, (x * y) as u8]));
        for s in [1, 2, 3] {
            let theirs = image::imageops::resize(&frame, 7 * s, 3 * s, FilterType::Nearest);
            assert_eq!(enlarge(&frame, s), theirs, "x{s}");
        }
    }

    #[test]
    fn live_overlays_are_never_upscaled_and_at_most_the_live_size() {
        let banner = Banner { reject: false, score: 0.1, threshold: 0.5 };
        for ((w, h), want) in [((256, 104), (256, 104)), ((100, 40), (100, 40)), ((2048, 512), (640, 160)), ((300, 1200), (160, 640))] {
            let out = draw_overlay_fit(&RgbImage::new(w, h), &[0.0], 1, 1, banner, OverlayFit::Live);
            assert_eq!(out.dimensions(), want, "{w}x{h}");
        }
        // The same frame as a file is enlarged for the banner.
        assert_eq!(draw_overlay(&RgbImage::new(256, 104), &[0.0], 1, 1, banner).dimensions(), (512, 208));
        // Heat lands where the map says at the live size too: hot right half of a 2x1 map.
        let out = draw_overlay_fit(&RgbImage::from_pixel(2048, 512, image::Rgb([100, 100, 100])), &[0.0, 1.0], 2, 1, banner, OverlayFit::Live);
        assert_eq!(out.get_pixel(100, 100).0, [100, 100, 100]);
        assert_ne!(out.get_pixel(600, 100).0, [100, 100, 100]);
    }

    #[test]
    fn small_frames_are_upscaled_for_the_banner() {
        let frame = RgbImage::new(100, 40);
        let out = draw_overlay(&frame, &[0.0], 1, 1, Banner { reject: false, score: 0.1, threshold: 0.5 });
        assert_eq!((out.width(), out.height()), (400, 160));
        assert_eq!(out.get_pixel(200, 1).0, [30, 170, 60]);
    }
}
