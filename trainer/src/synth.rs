//! Synthetic defects for training the segmentation head (DESIGN.md §3, after DRAEM, Zavrtanik et
//! al., ICCV 2021): a thresholded Perlin-noise mask (or a thin stroke) blended with a texture.

use std::path::Path;

use rand::{Rng, RngCore};
use tch::{Kind, Tensor};

use crate::config::SynthConfig;

/// Random unit gradients on a `(rows + 1) x (cols + 1)` lattice, and Perlin's interpolation
/// between them (quintic fade), scaled by sqrt(2) to roughly [-1, 1].
struct GradientLattice {
    cols: usize,
    grads: Vec<(f32, f32)>,
}

impl GradientLattice {
    fn new(rows: usize, cols: usize, rng: &mut dyn RngCore) -> Self {
        let grads = (0..(rows + 1) * (cols + 1))
            .map(|_| {
                let a = rng.gen_range(0.0..std::f32::consts::TAU);
                (a.cos(), a.sin())
            })
            .collect();
        Self { cols, grads }
    }

    /// Noise at lattice cell (i, j) with fractional offsets (fy, fx) in [0, 1).
    fn at(&self, i: usize, fy: f32, j: usize, fx: f32) -> f32 {
        let g = |i: usize, j: usize| self.grads[i * (self.cols + 1) + j];
        let fade = |t: f32| t * t * t * (t * (t * 6.0 - 15.0) + 10.0);
        let lerp = |a: f32, b: f32, t: f32| a + t * (b - a);
        let dot = |(a, b): (f32, f32), dy: f32, dx: f32| a * dy + b * dx;
        let n00 = dot(g(i, j), fy, fx);
        let n10 = dot(g(i + 1, j), fy - 1.0, fx);
        let n01 = dot(g(i, j + 1), fy, fx - 1.0);
        let n11 = dot(g(i + 1, j + 1), fy - 1.0, fx - 1.0);
        let (ty, tx) = (fade(fy), fade(fx));
        std::f32::consts::SQRT_2 * lerp(lerp(n00, n10, ty), lerp(n01, n11, ty), tx)
    }
}

/// 2-D Perlin gradient noise (Perlin, SIGGRAPH 2002 "Improving noise", quintic fade) on an
/// `h x w` grid with `res_y x res_x` lattice cells; row-major, values roughly in [-1, 1].
pub fn perlin_2d(h: usize, w: usize, res_y: usize, res_x: usize, rng: &mut dyn RngCore) -> Vec<f32> {
    let lattice = GradientLattice::new(res_y, res_x, rng);
    let mut out = Vec::with_capacity(h * w);
    for y in 0..h {
        let gy = y as f32 * res_y as f32 / h as f32;
        for x in 0..w {
            let gx = x as f32 * res_x as f32 / w as f32;
            out.push(lattice.at(gy as usize, gy.fract(), gx as usize, gx.fract()));
        }
    }
    out
}

/// A defect mask of the old recipe: Perlin noise at a random scale (2^0..2^5 cells per side, at
/// least 2 px a cell) thresholded at 0.5; 0/1 values, row-major `h x w`. May be empty.
pub fn perlin_mask(h: usize, w: usize, rng: &mut dyn RngCore) -> Vec<f32> {
    let max_exp = |n: usize| (0..=5).rev().find(|&e| n >> e >= 2).unwrap_or(0);
    let ry = 1 << rng.gen_range(0..=max_exp(h));
    let rx = 1 << rng.gen_range(0..=max_exp(w));
    perlin_2d(h, w, ry, rx, rng).into_iter().map(|v| if v > 0.5 { 1.0 } else { 0.0 }).collect()
}

/// Largest exponent e <= 6 with `n / 2^e >= min_cell_px` (at least 0).
pub fn max_cell_exponent(n: usize, min_cell_px: usize) -> u32 {
    (0..=6u32).rev().find(|&e| n >> e >= min_cell_px.max(1)).unwrap_or(0)
}

/// Perlin noise whose lattice is rotated by `angle` radians about the image centre: `cells_y x
/// cells_x` cells span the image before rotation (cell size h / cells_y x w / cells_x px). The
/// lattice covers the image's diagonal, so every rotated pixel falls inside it.
pub fn rotated_perlin(h: usize, w: usize, cells_y: usize, cells_x: usize, angle: f32, rng: &mut dyn RngCore) -> Vec<f32> {
    let (cy, cx) = (h as f32 / cells_y as f32, w as f32 / cells_x as f32);
    let diag = ((h * h + w * w) as f32).sqrt();
    let (ny, nx) = ((diag / cy).ceil() as usize + 1, (diag / cx).ceil() as usize + 1);
    let lattice = GradientLattice::new(ny, nx, rng);
    let (sin, cos) = angle.sin_cos();
    let mut out = Vec::with_capacity(h * w);
    for y in 0..h {
        for x in 0..w {
            let (py, px) = (y as f32 - h as f32 / 2.0, x as f32 - w as f32 / 2.0);
            let (ry, rx) = (cos * py - sin * px + diag / 2.0, sin * py + cos * px + diag / 2.0);
            let (gy, gx) = ((ry / cy).clamp(0.0, (ny - 1) as f32 - 1e-3), (rx / cx).clamp(0.0, (nx - 1) as f32 - 1e-3));
            out.push(lattice.at(gy as usize, gy.fract(), gx as usize, gx.fract()));
        }
    }
    out
}

/// A DRAEM-style blob mask (section 3.3): Perlin noise with 2^a x 2^b cells, a and b drawn so that
/// no cell is smaller than `min_cell_px` (at 128 px and 8 px: 1..16 cells a side), optionally
/// rotated by an angle in [-90, 90] degrees, thresholded at 0.5. 0/1, row-major `h x w`.
pub fn blob_mask(h: usize, w: usize, min_cell_px: usize, rotate: bool, rng: &mut dyn RngCore) -> Vec<f32> {
    let cells_y = 1 << rng.gen_range(0..=max_cell_exponent(h, min_cell_px));
    let cells_x = 1 << rng.gen_range(0..=max_cell_exponent(w, min_cell_px));
    let angle = if rotate { rng.gen_range(-std::f32::consts::FRAC_PI_2..=std::f32::consts::FRAC_PI_2) } else { 0.0 };
    rotated_perlin(h, w, cells_y, cells_x, angle, rng).into_iter().map(|v| if v > 0.5 { 1.0 } else { 0.0 }).collect()
}

/// A thin stroke (a crack): a polyline of 2-5 segments that wanders with a smoothly turning
/// direction, `width_px` wide (every pixel whose centre lies within width/2 of the polyline).
/// Total length 25-60 % of the image diagonal. 0/1, row-major `h x w`.
pub fn stroke_mask(h: usize, w: usize, width_px: f32, rng: &mut dyn RngCore) -> Vec<f32> {
    let diag = ((h * h + w * w) as f32).sqrt();
    let segments = rng.gen_range(2..=5);
    let seg_len = diag * rng.gen_range(0.25..0.6f32) / segments as f32;
    let mut p = (rng.gen_range(0.2..0.8) * h as f32, rng.gen_range(0.2..0.8) * w as f32);
    let mut dir = rng.gen_range(0.0..std::f32::consts::TAU);
    let mut mask = vec![0.0f32; h * w];
    let half = width_px / 2.0;
    for _ in 0..segments {
        let q = (p.0 + seg_len * dir.sin(), p.1 + seg_len * dir.cos());
        let (y0, y1) = ((p.0.min(q.0) - half).floor().max(0.0) as usize, ((p.0.max(q.0) + half).ceil() as usize).min(h));
        let (x0, x1) = ((p.1.min(q.1) - half).floor().max(0.0) as usize, ((p.1.max(q.1) + half).ceil() as usize).min(w));
        let (dy, dx) = (q.0 - p.0, q.1 - p.1);
        let len2 = (dy * dy + dx * dx).max(1e-6);
        for y in y0..y1 {
            for x in x0..x1 {
                let (cy, cx) = (y as f32 + 0.5, x as f32 + 0.5);
                let t = (((cy - p.0) * dy + (cx - p.1) * dx) / len2).clamp(0.0, 1.0);
                let (ey, ex) = (cy - p.0 - t * dy, cx - p.1 - t * dx);
                if ey * ey + ex * ex <= half * half {
                    mask[y * w + x] = 1.0;
                }
            }
        }
        p = q;
        dir += rng.gen_range(-0.7..0.7f32);
    }
    mask
}

/// Small spots (pits, pores, spatter): a cluster of 1-6 filled ellipses, each 1.5-5 px across
/// (axes within 0.7-1.3x of that), their centres within 2-12 px of a cluster centre that keeps
/// the cluster inside the image. Every ellipse covers at least one pixel centre (half-axes of at
/// least 0.75 px, [`spot_radius`]). 0/1, row-major `h x w`.
pub fn spot_mask(h: usize, w: usize, rng: &mut dyn RngCore) -> Vec<f32> {
    let spread = rng.gen_range(2.0..=12.0f32);
    let margin = spread + 3.5;
    let centre = |n: usize, rng: &mut dyn RngCore| if (n as f32) > 2.0 * margin { rng.gen_range(margin..n as f32 - margin) } else { n as f32 / 2.0 };
    let (cy, cx) = (centre(h, rng), centre(w, rng));
    let mut mask = vec![0.0f32; h * w];
    for _ in 0..rng.gen_range(1..=6) {
        let (a, r) = (rng.gen_range(0.0..std::f32::consts::TAU), spread * rng.gen_range(0.0..=1.0f32).sqrt());
        let (py, px) = (cy + r * a.sin(), cx + r * a.cos());
        let d = rng.gen_range(1.5..=5.0f32);
        let (ry, rx) = (spot_radius(d * rng.gen_range(0.7..=1.3f32)), spot_radius(d * rng.gen_range(0.7..=1.3f32)));
        let (y0, y1) = ((py - ry).floor().max(0.0) as usize, ((py + ry).ceil().max(0.0) as usize).min(h));
        let (x0, x1) = ((px - rx).floor().max(0.0) as usize, ((px + rx).ceil().max(0.0) as usize).min(w));
        for y in y0..y1 {
            for x in x0..x1 {
                let (ey, ex) = ((y as f32 + 0.5 - py) / ry, (x as f32 + 0.5 - px) / rx);
                if ey * ey + ex * ex <= 1.0 {
                    mask[y * w + x] = 1.0;
                }
            }
        }
    }
    mask
}

/// Half-axis of a spot `d` px across, at least 0.75 px: every point of the plane lies within
/// 0.71 px of a pixel centre, so no spot falls between pixel centres and vanishes.
fn spot_radius(d: f32) -> f32 {
    (d / 2.0).max(0.75)
}

/// Fractal (fBm) texture [3, h, w] in [0, 1]: 4 octaves of Perlin noise (4, 8, 16, 32 cells a
/// side, amplitude halving), per channel around a random base colour, so the texture has the
/// high-frequency structure of real surfaces (the old smooth field had none).
pub fn fractal_texture(h: usize, w: usize, rng: &mut dyn RngCore) -> Vec<f32> {
    let mut out = Vec::with_capacity(3 * h * w);
    let contrast = rng.gen_range(0.3..1.0f32);
    for _ in 0..3 {
        let base = rng.gen_range(0.0..1.0f32);
        let mut acc = vec![0.0f32; h * w];
        let mut amp = 1.0;
        for octave in 0..4 {
            let cells = 4usize << octave;
            let n = perlin_2d(h, w, cells.min(h / 2).max(1), cells.min(w / 2).max(1), rng);
            acc.iter_mut().zip(&n).for_each(|(a, v)| *a += amp * v);
            amp *= 0.5;
        }
        out.extend(acc.into_iter().map(|v| (base + contrast * 0.5 * v).clamp(0.0, 1.0)));
    }
    out
}

/// Texture source of one synthetic defect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextureSource {
    /// Another good image, rolled by a random offset (at least 1/8 of each side), channels
    /// permuted, brightness x U[0.5, 1.5] and offset U[-0.3, 0.3].
    SelfShifted,
    /// [`fractal_texture`].
    Fractal,
    /// An image of the texture folder, rolled by a random offset and randomly mirrored.
    Folder,
    /// Old recipe: the co-located batch image with permuted channels, scaled, maybe flipped or
    /// inverted.
    SelfUnshifted,
    /// Old recipe: a smooth two-colour Perlin field.
    Smooth,
}

/// Draws synthetic defects on batches of good images (DRAEM, Zavrtanik et al., ICCV 2021, eq. 1)
/// as a [`SynthConfig`] says.
pub struct Synthesizer {
    cfg: SynthConfig,
    /// Texture-folder images [3, H, W] at model size.
    textures: Vec<Tensor>,
}

impl Synthesizer {
    /// `textures`: images of the texture folder already at model size ([3, H, W] in [0, 1]).
    pub fn new(cfg: SynthConfig, textures: Vec<Tensor>) -> Self {
        Self { cfg, textures }
    }

    /// Loads every image of `dir` (png, jpg) at `width` x `height` px with the runtime's
    /// preprocessing. Errors: the folder is unreadable, holds no image, or an image is broken
    /// (named).
    pub fn load_textures(dir: &Path, width: u32, height: u32) -> anyhow::Result<Vec<Tensor>> {
        let paths = runtime::dataset::list_images(dir).map_err(|e| anyhow::anyhow!("texture folder {}: {e}", dir.display()))?;
        anyhow::ensure!(!paths.is_empty(), "texture folder {}: no .png/.jpg images in it", dir.display());
        paths
            .iter()
            .map(|p| {
                // Textures are photos of other surfaces, not the sensor's images: full range.
                let img = runtime::preprocess::load_image(p, runtime::bit_depth::BitDepth::FULL).map_err(|e| anyhow::anyhow!("texture {}: {e}", p.display()))?;
                let chw = runtime::preprocess::to_model_input(&img, None, width, height).chw;
                Ok(Tensor::from_slice(&chw).view([3, height as i64, width as i64]))
            })
            .collect()
    }

    /// Picks a texture source by the configured weights (the folder only when it has images).
    pub fn pick_source(&self, rng: &mut dyn RngCore) -> TextureSource {
        let c = &self.cfg;
        let folder = if self.textures.is_empty() { 0.0 } else { c.texture_folder };
        let options = [
            (TextureSource::SelfShifted, c.texture_self),
            (TextureSource::Fractal, c.texture_fractal),
            (TextureSource::Folder, folder),
            (TextureSource::SelfUnshifted, c.texture_self_unshifted),
            (TextureSource::Smooth, c.texture_smooth),
        ];
        let total: f64 = options.iter().map(|o| o.1).sum();
        if total <= 0.0 {
            return TextureSource::Fractal;
        }
        let mut u = rng.gen_range(0.0..total);
        for (s, wgt) in options {
            if u < wgt {
                return s;
            }
            u -= wgt;
        }
        TextureSource::Fractal
    }

    /// A defect mask [h x w], 0/1: a stroke with `stroke_probability`, else a cluster of small
    /// spots with `spot_probability`, else a Perlin blob (the axis geometry with
    /// `axis_mask_probability`).
    pub fn mask(&self, h: usize, w: usize, rng: &mut dyn RngCore) -> Vec<f32> {
        self.draw_mask(h, w, rng).0
    }

    /// [`Self::mask`] and whether it is a stroke (a stroke may be shaded instead of textured).
    fn draw_mask(&self, h: usize, w: usize, rng: &mut dyn RngCore) -> (Vec<f32>, bool) {
        if self.cfg.stroke_probability > 0.0 && rng.gen_bool(self.cfg.stroke_probability) {
            return (stroke_mask(h, w, rng.gen_range(1.0..=3.0f32), rng), true);
        }
        let blob = if self.cfg.spot_probability > 0.0 && rng.gen_bool(self.cfg.spot_probability) {
            spot_mask(h, w, rng)
        } else if (self.cfg.min_cell_px == 0 && !self.cfg.rotate_noise) || (self.cfg.axis_mask_probability > 0.0 && rng.gen_bool(self.cfg.axis_mask_probability)) {
            perlin_mask(h, w, rng)
        } else {
            blob_mask(h, w, self.cfg.min_cell_px.max(2), self.cfg.rotate_noise, rng)
        };
        (blob, false)
    }

    /// A texture [3, H, W] in [0, 1] for a sample of `clean` [B, 3, H, W].
    pub fn texture(&self, source: TextureSource, clean: &Tensor, rng: &mut dyn RngCore) -> Tensor {
        let (b, h, w) = (clean.size()[0], clean.size()[2], clean.size()[3]);
        let dev = clean.device();
        let perm = |rng: &mut dyn RngCore| {
            let mut perm = [0i64, 1, 2];
            for k in (1..3).rev() {
                perm.swap(k, rng.gen_range(0..=k));
            }
            Tensor::from_slice(&perm).to_device(dev)
        };
        let roll = |t: &Tensor, rng: &mut dyn RngCore| {
            let (dy, dx) = (rng.gen_range(h / 8..=h - h / 8), rng.gen_range(w / 8..=w - w / 8));
            t.roll([dy, dx], [1i64, 2])
        };
        match source {
            TextureSource::SelfShifted => {
                let other = clean.get(rng.gen_range(0..b));
                let t = roll(&other, rng).index_select(0, &perm(rng));
                (t * rng.gen_range(0.5..1.5f64) + rng.gen_range(-0.3..0.3f64)).clamp(0.0, 1.0)
            }
            TextureSource::Fractal => Tensor::from_slice(&fractal_texture(h as usize, w as usize, rng)).view([3, h, w]).to_device(dev),
            TextureSource::Folder => {
                let t = roll(&self.textures[rng.gen_range(0..self.textures.len())].to_device(dev), rng);
                if rng.gen_bool(0.5) { t.flip([2i64]) } else { t }
            }
            TextureSource::SelfUnshifted => {
                let other = clean.get(rng.gen_range(0..b));
                let mut t = other.index_select(0, &perm(rng)) * rng.gen_range(0.3..1.7f64);
                if rng.gen_bool(0.5) {
                    t = t.flip([2i64]);
                }
                if rng.gen_bool(0.5) {
                    t = 1.0 - t;
                }
                t.clamp(0.0, 1.0)
            }
            TextureSource::Smooth => {
                let (hu, wu) = (h as usize, w as usize);
                let field = Tensor::from_slice(&perlin_2d(hu, wu, 4, 4, rng)).view([1, h, w]).to_device(dev);
                let c0: Vec<f32> = (0..3).map(|_| rng.gen_range(0.0..1.0)).collect();
                let c1: Vec<f32> = (0..3).map(|_| rng.gen_range(0.0..1.0)).collect();
                let c0 = Tensor::from_slice(&c0).view([3, 1, 1]).to_device(dev);
                let c1 = Tensor::from_slice(&c1).view([3, 1, 1]).to_device(dev);
                let t = (field * 0.5 + 0.5).clamp(0.0, 1.0);
                &c0 * (1.0 - &t) + &c1 * &t
            }
        }
    }

    /// Batch of clean images [B, 3, H, W] in [0, 1] -> (corrupted images, masks [B, 1, H, W]).
    ///
    /// Each sample gets a defect with probability `p`; t is a texture, or [`shade`] of the part for
    /// a shaded stroke. Blend (DRAEM eq. 1):
    /// x' = x (1 - m) + m ((1 - beta) t + beta x), beta ~ U[0, 0.8). A defect whose mean
    /// absolute change inside the mask (max over channels) is below `min_visible_change` is drawn
    /// again, up to 4 times.
    pub fn synthesize(&self, clean: &Tensor, p: f64, rng: &mut dyn RngCore) -> (Tensor, Tensor) {
        let (b, h, w) = (clean.size()[0], clean.size()[2], clean.size()[3]);
        let dev = clean.device();
        let (mut outs, mut masks) = (Vec::with_capacity(b as usize), Vec::with_capacity(b as usize));
        for i in 0..b {
            let x = clean.get(i);
            if !rng.gen_bool(p) {
                outs.push(x.unsqueeze(0));
                masks.push(Tensor::zeros([1, 1, h, w], (Kind::Float, dev)));
                continue;
            }
            // A grey part (all channels equal, e.g. KolektorSDD) gets grey textures: a colour
            // patch on a grey image is a defect no grey camera will ever show, and the head
            // learns to find colour instead of cracks.
            let grey = is_grey(&x);
            let mut drawn = None;
            for attempt in 0..5 {
                let (mask, stroke) = self.draw_mask(h as usize, w as usize, rng);
                let m = Tensor::from_slice(&mask).view([1, h, w]).to_device(dev);
                let shaded = stroke && self.cfg.stroke_shade_probability > 0.0 && rng.gen_bool(self.cfg.stroke_shade_probability);
                let mut t = if shaded {
                    shade(&x, rng)
                } else {
                    let source = self.pick_source(rng);
                    self.texture(source, clean, rng).to_kind(Kind::Float)
                };
                if grey {
                    t = t.mean_dim(0, true, Kind::Float).expand([3, h, w], false);
                }
                let beta = rng.gen_range(0.0..0.8f64);
                let y = &x * (1.0 - &m) + &m * (&t * (1.0 - beta) + &x * beta);
                let area = m.sum(Kind::Float).double_value(&[]);
                let change = if area > 0.0 { ((&y - &x).abs().amax([0i64], true) * &m).sum(Kind::Float).double_value(&[]) / area } else { 0.0 };
                let visible = area > 0.0 && change >= self.cfg.min_visible_change;
                drawn = Some((y, m));
                if visible || self.cfg.min_visible_change <= 0.0 || attempt == 4 {
                    break;
                }
            }
            let (y, m) = drawn.expect("at least one attempt");
            outs.push(y.unsqueeze(0));
            masks.push(m.unsqueeze(0));
        }
        (Tensor::cat(&outs, 0), Tensor::cat(&masks, 0))
    }
}

/// The part itself darkened or brightened, as the texture of a shaded stroke (a crack or a
/// scratch): `x * s` (dark) or `1 - (1 - x) * s` (bright), 50 / 50, s ~ U[0.2, 0.7]. After the
/// blend of [`Synthesizer::synthesize`] the line keeps the part's own grain, scaled towards 0
/// or 1 by `(1 - beta) s + beta` in [0.2, 0.94]. `x`: [3, H, W] in [0, 1]; grey stays grey.
pub fn shade(x: &Tensor, rng: &mut dyn RngCore) -> Tensor {
    let s = rng.gen_range(0.2..0.7f64);
    if rng.gen_bool(0.5) { x * s } else { 1.0 - (1.0 - x) * s }
}

/// Old entry point: the recipe before issue 13 ([`SynthConfig::legacy`], no texture folder).
pub fn synthesize(clean: &Tensor, p: f64, rng: &mut dyn RngCore) -> (Tensor, Tensor) {
    Synthesizer::new(SynthConfig::legacy(), Vec::new()).synthesize(clean, p, rng)
}

/// Whether an image [3, H, W] is grey: its three channels equal (within 1e-6).
pub fn is_grey(x: &Tensor) -> bool {
    (x.get(0) - x.get(1)).abs().max().double_value(&[]) < 1e-6 && (x.get(1) - x.get(2)).abs().max().double_value(&[]) < 1e-6
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn perlin_is_zero_on_lattice_points_and_bounded() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let n = perlin_2d(32, 64, 4, 8, &mut rng);
        // Lattice points (every 8 px) have zero offset from their gradient origin.
        for y in (0..32).step_by(8) {
            for x in (0..64).step_by(8) {
                assert!(n[y * 64 + x].abs() < 1e-6);
            }
        }
        assert!(n.iter().all(|v| v.abs() <= 1.0 + 1e-5));
        assert!(n.iter().any(|v| v.abs() > 0.2), "noise is not flat");
    }

    #[test]
    fn synthesis_changes_only_masked_pixels_and_is_seeded() {
        tch::manual_seed(0);
        let clean = Tensor::rand([4, 3, 32, 64], (Kind::Float, tch::Device::Cpu));
        let run = |seed| synthesize(&clean, 1.0, &mut rand::rngs::StdRng::seed_from_u64(seed));
        let (x, m) = run(3);
        let (x2, m2) = run(3);
        assert!(x.equal(&x2) && m.equal(&m2), "same seed, same defects");
        let outside: Tensor = (&x - &clean).abs() * (-&m + 1.0);
        assert!(outside.max().double_value(&[]) < 1e-6);
        assert!(m.sum(Kind::Float).double_value(&[]) > 0.0, "some defect pixels with p = 1");
        let (_, m0) = synthesize(&clean, 0.0, &mut rand::rngs::StdRng::seed_from_u64(3));
        assert_eq!(m0.sum(Kind::Float).double_value(&[]), 0.0);
    }

    /// 1 where every pixel of the (2k+1)^2 window around it is 1 (binary erosion, borders 0).
    fn erode(m: &[f32], h: usize, w: usize, k: usize) -> Vec<f32> {
        let mut out = vec![0.0; h * w];
        for y in k..h.saturating_sub(k) {
            for x in k..w.saturating_sub(k) {
                let all = (y - k..=y + k).all(|yy| (x - k..=x + k).all(|xx| m[yy * w + xx] > 0.5));
                out[y * w + x] = if all { 1.0 } else { 0.0 };
            }
        }
        out
    }

    #[test]
    fn spot_masks_are_small_clusters_of_small_spots() {
        let (h, w) = (96, 192);
        let (mut areas, mut wide) = (Vec::new(), 0);
        for seed in 0..300 {
            let m = spot_mask(h, w, &mut rand::rngs::StdRng::seed_from_u64(seed));
            let on: Vec<(usize, usize)> = (0..h * w).filter(|&i| m[i] > 0.5).map(|i| (i / w, i % w)).collect();
            assert!(!on.is_empty(), "seed {seed}: every spot covers a pixel");
            assert!(m.iter().all(|&v| v == 0.0 || v == 1.0));
            // Centres within 12 px of the cluster centre, half-axes at most 3.25 px: the cluster
            // fits a 32 px box, away from the borders.
            let (ys, xs): (Vec<usize>, Vec<usize>) = on.iter().cloned().unzip();
            let (y0, y1, x0, x1) = (*ys.iter().min().unwrap(), *ys.iter().max().unwrap(), *xs.iter().min().unwrap(), *xs.iter().max().unwrap());
            assert!(y1 - y0 < 32 && x1 - x0 < 32, "seed {seed}: box {}x{}", y1 - y0 + 1, x1 - x0 + 1);
            assert!(y0 > 0 && x0 > 0 && y1 < h - 1 && x1 < w - 1, "seed {seed}: inside the image");
            // A spot is at most 6.5 px across: a 7x7 square fits only where spots overlap.
            wide += usize::from(erode(&m, h, w, 3).iter().any(|&v| v > 0.5));
            areas.push(on.len());
        }
        areas.sort_unstable();
        let (median, max) = (areas[areas.len() / 2], areas[areas.len() - 1]);
        println!("spot masks: area median {median} px, max {max} px; {wide} of 300 hold a 7x7 square");
        assert!((8..=40).contains(&median), "median area {median} px");
        assert!(max <= 6 * 36, "6 spots of at most 6.5 x 6.5 px: {max} px");
        assert!(wide <= 3, "{wide} of 300 masks hold a 7x7 square: spots too large");
        // In the synthesizer: with spot_probability 1 (no strokes), every mask is a spot cluster.
        let syn = Synthesizer::new(SynthConfig { stroke_probability: 0.0, spot_probability: 1.0, ..SynthConfig::localizing() }, Vec::new());
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for _ in 0..20 {
            let area = syn.mask(h, w, &mut rng).iter().filter(|&&v| v > 0.5).count();
            assert!((1..=6 * 36).contains(&area), "{area}");
        }
        let bad = SynthConfig { spot_probability: -0.1, ..SynthConfig::localizing() }.validate().unwrap_err().to_string();
        assert!(bad.contains("synth.spot_probability = -0.1"), "{bad}");
    }

    #[test]
    fn blob_masks_respect_the_cell_size_and_cover_a_useful_range() {
        // At 128 px with 8 px minimum cells: 1..16 cells a side (exponent 0..=4).
        assert_eq!(max_cell_exponent(128, 8), 4);
        assert_eq!(max_cell_exponent(96, 8), 3);
        assert_eq!(max_cell_exponent(256, 4), 6);
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let (h, w) = (128, 128);
        let cover: Vec<f64> = (0..200).map(|_| blob_mask(h, w, 8, true, &mut rng).iter().map(|&v| v as f64).sum::<f64>() / (h * w) as f64).collect();
        let mean = cover.iter().sum::<f64>() / cover.len() as f64;
        let nonempty = cover.iter().filter(|&&c| c > 0.0).count();
        let large = cover.iter().filter(|&&c| c * (h * w) as f64 >= 400.0).count();
        println!("blob masks: mean coverage {mean:.3}, {nonempty}/200 non-empty, {large}/200 with >= 400 px");
        assert!(mean > 0.03 && mean < 0.35, "mean coverage {mean}");
        assert!(cover.iter().all(|&c| c <= 0.9), "no mask covers the whole image");
        // The old recipe at 128 px: 19 % of masks held >= 400 px; these are DRAEM-sized.
        assert!(large >= 80, "{large} of 200 masks >= 400 px");
    }

    #[test]
    fn mixed_geometry_draws_each_mask_from_one_of_the_two() {
        // Strokes off: every mask is a Perlin blob. p = 1 gives exactly the axis masks of the
        // same seed, p = 0 exactly DRAEM's (no extra random draw), 0.5 a mixture of both kinds.
        let cfg = |p: f64| SynthConfig { stroke_probability: 0.0, axis_mask_probability: p, ..SynthConfig::localizing() };
        let (h, w) = (64usize, 64usize);
        let draw = |p: f64, n: usize| {
            let s = Synthesizer::new(cfg(p), Vec::new());
            let mut rng = rand::rngs::StdRng::seed_from_u64(5);
            (0..n).map(|_| s.mask(h, w, &mut rng)).collect::<Vec<_>>()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let axis: Vec<_> = (0..100).map(|_| perlin_mask(h, w, &mut rng)).collect();
        assert_eq!(draw(1.0, 100), axis);
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let draem: Vec<_> = (0..100).map(|_| blob_mask(h, w, 8, true, &mut rng)).collect();
        assert_eq!(draw(0.0, 100), draem);
        // Axis masks have cells down to 2 px (up to 32 a side at 64 px), DRAEM's at least 8 px:
        // 0/1 edges per row or per column (the finer direction) measure the finest structure.
        let edges = |m: &[f32]| {
            let rows = (0..h).map(|y| (1..w).filter(|&x| m[y * w + x] != m[y * w + x - 1]).count()).sum::<usize>();
            let cols = (0..w).map(|x| (1..h).filter(|&y| m[y * w + x] != m[(y - 1) * w + x]).count()).sum::<usize>();
            (rows / h).max(cols / w)
        };
        let fine = |ms: &[Vec<f32>]| ms.iter().filter(|m| edges(m) >= 4).count();
        let (axis_fine, draem_fine) = (fine(&axis), fine(&draem));
        let mixed_fine = fine(&draw(0.5, 400));
        println!("fine masks: axis {axis_fine} / 100, DRAEM {draem_fine} / 100, mixed {mixed_fine} / 400");
        assert_eq!(draem_fine, 0, "DRAEM's cells are >= 8 px");
        assert!(axis_fine >= 20, "{axis_fine} of 100 axis masks are fine-grained");
        // Half of the mixed masks are axis masks: ~axis_fine / 2 % of them fine (binomial sd ~2 %).
        let (got, expect) = (mixed_fine as f64 / 400.0, axis_fine as f64 / 200.0);
        assert!((got - expect).abs() < 0.08, "mixed: {got:.3} fine, {expect:.3} expected");
        let bad = SynthConfig { axis_mask_probability: 1.5, ..SynthConfig::localizing() }.validate().unwrap_err().to_string();
        assert!(bad.contains("synth.axis_mask_probability = 1.5"), "{bad}");
    }

    #[test]
    fn rotated_noise_is_rotated() {
        // Noise with 1 x 8 cells varies along x only in its lattice frame; a quarter turn makes
        // it vary along y: compare mean squared differences between neighbours per axis.
        let (h, w) = (64usize, 64usize);
        let grad = |n: &[f32]| {
            let (mut gy, mut gx) = (0.0, 0.0);
            for y in 1..h {
                for x in 1..w {
                    gy += (n[y * w + x] - n[(y - 1) * w + x]).powi(2);
                    gx += (n[y * w + x] - n[y * w + x - 1]).powi(2);
                }
            }
            (gy, gx)
        };
        let (gy0, gx0) = grad(&rotated_perlin(h, w, 1, 8, 0.0, &mut rand::rngs::StdRng::seed_from_u64(3)));
        let (gy1, gx1) = grad(&rotated_perlin(h, w, 1, 8, std::f32::consts::FRAC_PI_2, &mut rand::rngs::StdRng::seed_from_u64(3)));
        assert!(gx0 > 3.0 * gy0, "unrotated varies along x: {gx0} vs {gy0}");
        assert!(gy1 > 3.0 * gx1, "rotated varies along y: {gy1} vs {gx1}");
    }

    #[test]
    fn strokes_are_thin_lines_of_the_requested_width() {
        let (h, w) = (128, 128);
        for seed in 0..20 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let one = stroke_mask(h, w, 1.0, &mut rng);
            let area: f32 = one.iter().sum();
            assert!(area >= 20.0, "seed {seed}: a 1 px stroke of 25-60 % of the diagonal has {area} px");
            // 1 px wide: nothing survives a 3x3 erosion.
            assert_eq!(erode(&one, h, w, 1).iter().sum::<f32>(), 0.0, "seed {seed}");
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let three = stroke_mask(h, w, 3.0, &mut rng);
            // 3 px wide: the core survives a 3x3 erosion, nothing survives 5x5.
            assert!(erode(&three, h, w, 1).iter().sum::<f32>() > 0.0, "seed {seed}");
            assert_eq!(erode(&three, h, w, 2).iter().sum::<f32>(), 0.0, "seed {seed}");
            // Area per unit length ~ width: the 3 px stroke (same path) has ~3x the pixels.
            let ratio = three.iter().sum::<f32>() / area;
            assert!((2.2..=4.0).contains(&ratio), "seed {seed}: area ratio {ratio}");
        }
    }

    #[test]
    fn shaded_strokes_scale_the_part_itself_along_a_thin_line() {
        tch::manual_seed(6);
        let (b, h, w) = (16i64, 64i64, 64i64);
        let clean = Tensor::rand([b, 3, h, w], (Kind::Float, tch::Device::Cpu)) * 0.6 + 0.2;
        let cfg = SynthConfig { stroke_probability: 1.0, stroke_shade_probability: 1.0, min_visible_change: 0.0, ..SynthConfig::localizing() };
        let (x, m) = Synthesizer::new(cfg, Vec::new()).synthesize(&clean, 1.0, &mut rand::rngs::StdRng::seed_from_u64(4));
        let (xs, cs, ms): (Vec<f32>, Vec<f32>, Vec<f32>) = (Vec::try_from(&x.view([-1])).unwrap(), Vec::try_from(&clean.view([-1])).unwrap(), Vec::try_from(&m.view([-1])).unwrap());
        let (plane, image) = ((h * w) as usize, (3 * h * w) as usize);
        let (mut dark, mut bright) = (0, 0);
        for i in 0..b as usize {
            let mask = &ms[i * plane..(i + 1) * plane];
            // A stroke of 1-3 px: no 5x5 square inside it.
            assert!(mask.iter().sum::<f32>() >= 10.0, "sample {i}: a stroke was drawn");
            assert_eq!(erode(mask, h as usize, w as usize, 2).iter().sum::<f32>(), 0.0, "sample {i}: thin");
            // Inside the line every pixel of every channel is the clean one times one factor k
            // (dark: y = k x) or 1 - k (1 - x) (bright), k = (1 - beta) s + beta in [0.2, 0.94];
            // outside it nothing changes.
            let (mut k_dark, mut k_bright) = (Vec::new(), Vec::new());
            for c in 0..3 {
                for p in 0..plane {
                    let (y, x0) = (xs[i * image + c * plane + p], cs[i * image + c * plane + p]);
                    if mask[p] < 0.5 {
                        assert!((y - x0).abs() < 1e-6, "sample {i}: pixel {p} outside the stroke changed");
                    } else {
                        k_dark.push(y / x0);
                        k_bright.push((1.0 - y) / (1.0 - x0));
                    }
                }
            }
            let spread = |k: &[f32]| k.iter().cloned().fold(f32::MIN, f32::max) - k.iter().cloned().fold(f32::MAX, f32::min);
            let (k, is_dark) = if spread(&k_dark) < 1e-4 { (k_dark[0], true) } else { (k_bright[0], false) };
            assert!(spread(if is_dark { &k_dark } else { &k_bright }) < 1e-4, "sample {i}: one factor along the whole line");
            assert!((0.2 - 1e-4..=0.94 + 1e-4).contains(&k), "sample {i}: factor {k}");
            if is_dark { dark += 1 } else { bright += 1 }
        }
        assert!(dark >= 3 && bright >= 3, "both shades drawn: {dark} dark, {bright} bright");
        // Off (the recipe): the same seed fills the strokes with textures instead.
        let recipe = SynthConfig { stroke_probability: 1.0, min_visible_change: 0.0, ..SynthConfig::localizing() };
        let (textured, _) = Synthesizer::new(recipe, Vec::new()).synthesize(&clean, 1.0, &mut rand::rngs::StdRng::seed_from_u64(4));
        assert!(!textured.equal(&x));
        let bad = SynthConfig { stroke_shade_probability: 1.5, ..SynthConfig::localizing() }.validate().unwrap_err().to_string();
        assert!(bad.contains("stroke_shade_probability"), "{bad}");
    }

    #[test]
    fn self_texture_is_a_shifted_jittered_copy_of_a_good_image() {
        tch::manual_seed(2);
        let (h, w) = (32i64, 32i64);
        let clean = Tensor::rand([1, 3, h, w], (Kind::Float, tch::Device::Cpu));
        let s = Synthesizer::new(SynthConfig::localizing(), Vec::new());
        let x: Vec<f32> = Vec::try_from(&clean.view([-1])).unwrap();
        for seed in 0..5 {
            let t = s.texture(TextureSource::SelfShifted, &clean, &mut rand::rngs::StdRng::seed_from_u64(seed));
            let t: Vec<f32> = Vec::try_from(&t.view([-1])).unwrap();
            // Find the roll (dy, dx) and channel of the source for texture channel 0 by the best
            // affine fit t = a x + b on unclamped pixels.
            let mut best = (f64::MAX, 0, 0);
            for dy in 0..h as usize {
                for dx in 0..w as usize {
                    for c in 0..3usize {
                        let src = |y: usize, xx: usize| x[c * 1024 + ((y + 32 - dy) % 32) * 32 + (xx + 32 - dx) % 32] as f64;
                        let pts: Vec<(f64, f64)> = (0..32).flat_map(|y| (0..32).map(move |xx| (y, xx))).map(|(y, xx)| (src(y, xx), t[y * 32 + xx] as f64)).filter(|p| p.1 > 0.0 && p.1 < 1.0).collect();
                        let n = pts.len() as f64;
                        let (mx, my) = (pts.iter().map(|p| p.0).sum::<f64>() / n, pts.iter().map(|p| p.1).sum::<f64>() / n);
                        let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
                        let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
                        let a = sxy / sxx;
                        let err: f64 = pts.iter().map(|p| (p.1 - (a * (p.0 - mx) + my)).powi(2)).sum::<f64>() / n;
                        if err < best.0 {
                            best = (err, dy, dx);
                        }
                    }
                }
            }
            let (err, dy, dx) = best;
            assert!(err < 1e-10, "seed {seed}: texture is an affine copy of a rolled channel (err {err})");
            // Shifted by at least 1/8 of each side (rolls wrap: 4..=28 px at 32 px).
            assert!((4..=28).contains(&dy) && (4..=28).contains(&dx), "seed {seed}: shift ({dy}, {dx})");
        }
    }

    #[test]
    fn grey_parts_get_grey_defects() {
        tch::manual_seed(5);
        let grey = (Tensor::rand([4, 1, 32, 32], (Kind::Float, tch::Device::Cpu)) * 0.2 + 0.4).expand([4, 3, 32, 32], false).contiguous();
        let s = Synthesizer::new(SynthConfig::localizing(), Vec::new());
        let (x, m) = s.synthesize(&grey, 1.0, &mut rand::rngs::StdRng::seed_from_u64(2));
        assert!(m.sum(Kind::Float).double_value(&[]) > 0.0);
        let channels = (x.narrow(1, 0, 1) - x.narrow(1, 1, 1)).abs().max().double_value(&[]) + (x.narrow(1, 1, 1) - x.narrow(1, 2, 1)).abs().max().double_value(&[]);
        assert!((&x - &grey).abs().max().double_value(&[]) > 0.05, "defects were drawn");
        assert!(channels < 1e-6, "corrupted grey images stay grey: channel difference {channels}");
    }

    #[test]
    fn localizing_defects_are_visible_and_only_inside_their_masks() {
        tch::manual_seed(4);
        let clean = Tensor::rand([8, 3, 64, 64], (Kind::Float, tch::Device::Cpu)) * 0.2 + 0.4;
        let s = Synthesizer::new(SynthConfig::localizing(), Vec::new());
        let (x, m) = s.synthesize(&clean, 1.0, &mut rand::rngs::StdRng::seed_from_u64(9));
        let outside: Tensor = (&x - &clean).abs() * (-&m + 1.0);
        assert!(outside.max().double_value(&[]) < 1e-6);
        let mut visible = 0;
        for i in 0..8 {
            let mi = m.get(i);
            let area = mi.sum(Kind::Float).double_value(&[]);
            if area == 0.0 {
                continue;
            }
            let change = ((x.get(i) - clean.get(i)).abs().amax([0i64], true) * &mi).sum(Kind::Float).double_value(&[]) / area;
            if change >= 0.05 {
                visible += 1;
            }
        }
        assert!(visible >= 7, "{visible} of 8 defects visible");
    }
}
