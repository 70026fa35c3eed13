//! Synthetic defects for training the segmentation head (DESIGN.md §3, after DRAEM, Zavrtanik et
//! al., ICCV 2021): a thresholded Perlin-noise mask blended with a texture.

use rand::{Rng, RngCore};
use tch::{Kind, Tensor};

/// 2-D Perlin gradient noise (Perlin, SIGGRAPH 2002 "Improving noise", quintic fade) on an
/// `h x w` grid with `res_y x res_x` lattice cells; row-major, values roughly in [-1, 1].
pub fn perlin_2d(h: usize, w: usize, res_y: usize, res_x: usize, rng: &mut dyn RngCore) -> Vec<f32> {
    let grads: Vec<(f32, f32)> = (0..(res_y + 1) * (res_x + 1))
        .map(|_| {
            let a = rng.gen_range(0.0..std::f32::consts::TAU);
            (a.cos(), a.sin())
        })
        .collect();
    let g = |i: usize, j: usize| grads[i * (res_x + 1) + j];
    let fade = |t: f32| t * t * t * (t * (t * 6.0 - 15.0) + 10.0);
    let lerp = |a: f32, b: f32, t: f32| a + t * (b - a);
    let mut out = Vec::with_capacity(h * w);
    for y in 0..h {
        let gy = y as f32 * res_y as f32 / h as f32;
        let (i, fy) = (gy as usize, gy.fract());
        for x in 0..w {
            let gx = x as f32 * res_x as f32 / w as f32;
            let (j, fx) = (gx as usize, gx.fract());
            let dot = |(a, b): (f32, f32), dy: f32, dx: f32| a * dy + b * dx;
            let n00 = dot(g(i, j), fy, fx);
            let n10 = dot(g(i + 1, j), fy - 1.0, fx);
            let n01 = dot(g(i, j + 1), fy, fx - 1.0);
            let n11 = dot(g(i + 1, j + 1), fy - 1.0, fx - 1.0);
            let (ty, tx) = (fade(fy), fade(fx));
            out.push(std::f32::consts::SQRT_2 * lerp(lerp(n00, n10, ty), lerp(n01, n11, ty), tx));
        }
    }
    out
}

/// A defect mask: Perlin noise at a random scale (2^0..2^5 cells per side, at least 2 px a cell)
/// thresholded at 0.5; 0/1 values, row-major `h x w`. May be empty.
pub fn perlin_mask(h: usize, w: usize, rng: &mut dyn RngCore) -> Vec<f32> {
    let max_exp = |n: usize| (0..=5).rev().find(|&e| n >> e >= 2).unwrap_or(0);
    let ry = 1 << rng.gen_range(0..=max_exp(h));
    let rx = 1 << rng.gen_range(0..=max_exp(w));
    perlin_2d(h, w, ry, rx, rng).into_iter().map(|v| if v > 0.5 { 1.0 } else { 0.0 }).collect()
}

/// Batch of clean images [B, 3, H, W] in [0, 1] -> (corrupted images, masks [B, 1, H, W]).
///
/// Each sample gets a defect with probability `p`; the texture is either another image of the
/// batch with permuted channels, scaled brightness and a random flip, or a coloured Perlin
/// field. Blend (DRAEM eq. 1): x' = x (1 - m) + m ((1 - beta) t + beta x), beta ~ U[0, 0.8].
pub fn synthesize(clean: &Tensor, p: f64, rng: &mut dyn RngCore) -> (Tensor, Tensor) {
    let (b, h, w) = (clean.size()[0], clean.size()[2] as usize, clean.size()[3] as usize);
    let dev = clean.device();
    let mut masks = Vec::with_capacity(b as usize);
    let mut textures = Vec::with_capacity(b as usize);
    let mut betas = Vec::with_capacity(b as usize);
    for _ in 0..b {
        let defect = rng.gen_bool(p);
        let mask = if defect { perlin_mask(h, w, rng) } else { vec![0.0; h * w] };
        masks.push(Tensor::from_slice(&mask).view([1, 1, h as i64, w as i64]));
        betas.push(rng.gen_range(0.0..0.8f32));
        let tex = if rng.gen_bool(0.5) {
            let other = clean.get(rng.gen_range(0..b));
            let mut perm = [0i64, 1, 2];
            for k in (1..3).rev() {
                perm.swap(k, rng.gen_range(0..=k));
            }
            let mut t = other.index_select(0, &Tensor::from_slice(&perm).to_device(dev)) * rng.gen_range(0.3..1.7f64);
            if rng.gen_bool(0.5) {
                t = t.flip([2i64]);
            }
            if rng.gen_bool(0.5) {
                t = 1.0 - t;
            }
            t.clamp(0.0, 1.0)
        } else {
            let field = Tensor::from_slice(&perlin_2d(h, w, 4, 4, rng)).view([1, h as i64, w as i64]).to_device(dev);
            let c0: Vec<f32> = (0..3).map(|_| rng.gen_range(0.0..1.0)).collect();
            let c1: Vec<f32> = (0..3).map(|_| rng.gen_range(0.0..1.0)).collect();
            let c0 = Tensor::from_slice(&c0).view([3, 1, 1]).to_device(dev);
            let c1 = Tensor::from_slice(&c1).view([3, 1, 1]).to_device(dev);
            let t = (field * 0.5 + 0.5).clamp(0.0, 1.0);
            &c0 * (1.0 - &t) + &c1 * &t
        };
        textures.push(tex.unsqueeze(0));
    }
    let m = Tensor::cat(&masks, 0).to_device(dev).to_kind(Kind::Float);
    let t = Tensor::cat(&textures, 0).to_kind(Kind::Float);
    let beta = Tensor::from_slice(&betas).view([b, 1, 1, 1]).to_device(dev);
    let corrupted = clean * (1.0 - &m) + &m * ((1.0 - &beta) * &t + &beta * clean);
    (corrupted, m)
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
}
