//! Augmentation of good images before defect synthesis (issue 13): mirrors and quarter turns,
//! and lighting / white-balance jitter, each switched on per data set (`--augment
//! flip,vflip,rot90,colour`), because not every part may be mirrored or turned (a thread has a
//! handedness, a label a reading direction) and not every line's lighting drifts.

use rand::{Rng, RngCore};
use tch::Tensor;

use crate::config::Augment;

/// Applies `augments` to each image of `batch` [B, 3, H, W] independently: `Flip` mirrors
/// left-right and `Vflip` top-bottom with probability 0.5; `Rot90` turns by k x 90 degrees,
/// k uniform in 0..4 for square images, k in {0, 2} otherwise (the shape must not change);
/// `Colour` scales brightness and, on colour images, each channel ([`colour_jitter`]). Values in
/// [0, 1] stay in [0, 1].
pub fn augment(batch: &Tensor, augments: &[Augment], rng: &mut dyn RngCore) -> Tensor {
    if augments.is_empty() {
        return batch.shallow_clone();
    }
    let (b, h, w) = (batch.size()[0], batch.size()[2], batch.size()[3]);
    let images: Vec<Tensor> = (0..b)
        .map(|i| {
            let mut x = batch.get(i);
            for a in augments {
                x = match a {
                    Augment::Flip if rng.gen_bool(0.5) => x.flip([2i64]),
                    Augment::Vflip if rng.gen_bool(0.5) => x.flip([1i64]),
                    Augment::Rot90 => {
                        let k = if h == w { rng.gen_range(0..4) } else { 2 * rng.gen_range(0..2) };
                        x.rot90(k, [1i64, 2])
                    }
                    Augment::Colour => colour_jitter(&x, rng),
                    _ => x,
                };
            }
            x.unsqueeze(0)
        })
        .collect();
    Tensor::cat(&images, 0)
}

/// A random `height` x `width` px window of each image of `batch` [B, C, H, W], its top-left
/// corner uniform over the H - height + 1 rows and W - width + 1 columns, drawn per image:
/// [B, C, height, width]. Full-resolution training at the step time of a small input
/// (`train_crop`; RESULTS.md, session 23).
///
/// # Panics
/// If the window is larger than the images (`TrainConfig::validate` refuses such a crop).
pub fn random_crop(batch: &Tensor, height: i64, width: i64, rng: &mut dyn RngCore) -> Tensor {
    let (b, h, w) = (batch.size()[0], batch.size()[2], batch.size()[3]);
    assert!(height <= h && width <= w, "crop {height}x{width} larger than the images {h}x{w}");
    let crops: Vec<Tensor> = (0..b)
        .map(|i| {
            let (y, x) = (rng.gen_range(0..=h - height), rng.gen_range(0..=w - width));
            batch.get(i).narrow(1, y, height).narrow(2, x, width).unsqueeze(0)
        })
        .collect();
    Tensor::cat(&crops, 0)
}

/// Brightness gain, drawn from U[1 - BRIGHTNESS, 1 + BRIGHTNESS]: the spread of the mean grey
/// level of BSData's training images (96-125 of 255 around 116).
const BRIGHTNESS: f64 = 0.15;
/// Per-channel gain, drawn from U[1 - WHITE_BALANCE, 1 + WHITE_BALANCE]: up to ~16 % between two
/// channels, as BSData's green-cast captures shift G - R by ~20 of ~115 grey levels.
const WHITE_BALANCE: f64 = 0.08;

/// One image [3, H, W] in [0, 1], scaled by a brightness gain and, unless its three channels are
/// equal (a grey part, which must not learn that colour means anything), by one gain per channel;
/// clamped to [0, 1].
pub fn colour_jitter(x: &Tensor, rng: &mut dyn RngCore) -> Tensor {
    let brightness = rng.gen_range(1.0 - BRIGHTNESS..1.0 + BRIGHTNESS);
    let grey = crate::synth::is_grey(x);
    let gains: Vec<f32> = (0..3)
        .map(|_| if grey { 1.0 } else { rng.gen_range(1.0 - WHITE_BALANCE..1.0 + WHITE_BALANCE) })
        .map(|g| (g * brightness) as f32)
        .collect();
    (x * Tensor::from_slice(&gains).to_device(x.device()).view([3, 1, 1])).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn each_image_is_one_of_its_mirrors_or_turns_and_all_occur() {
        let x = Tensor::arange(2 * 3 * 4 * 4, (tch::Kind::Float, tch::Device::Cpu)).view([2, 3, 4, 4]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..64 {
            let y = augment(&x, &[Augment::Flip, Augment::Rot90], &mut rng);
            for i in 0..2 {
                let orig = x.get(i);
                let candidates: Vec<Tensor> = (0..4).flat_map(|k| [orig.rot90(k, [1i64, 2]), orig.flip([2i64]).rot90(k, [1i64, 2])]).collect();
                let which = candidates.iter().position(|c| c.equal(&y.get(i))).expect("an image of the dihedral group");
                seen.insert(which);
            }
        }
        assert_eq!(seen.len(), 8, "all 8 mirrors/turns drawn: {seen:?}");
        let wide = Tensor::arange(3 * 4 * 6, (tch::Kind::Float, tch::Device::Cpu)).view([1, 3, 4, 6]);
        assert_eq!(augment(&wide, &[Augment::Rot90], &mut rng).size(), vec![1, 3, 4, 6], "non-square: only half turns");
        assert!(augment(&x, &[], &mut rng).equal(&x));
    }

    #[test]
    fn crops_are_windows_of_their_own_image_at_every_offset() {
        // Pixel values encode (image, row, column), so each crop says where it came from.
        let (b, h, w) = (3i64, 6i64, 5i64);
        let x = Tensor::arange(b * h * w, (tch::Kind::Float, tch::Device::Cpu)).view([b, 1, h, w]).expand([b, 3, h, w], false).contiguous();
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut offsets = std::collections::HashSet::new();
        for _ in 0..200 {
            let y = random_crop(&x, 4, 2, &mut rng);
            assert_eq!(y.size(), vec![b, 3, 4, 2]);
            for i in 0..b {
                let first = y.int64_value(&[i, 0, 0, 0]);
                let (img, row, col) = (first / (h * w), first % (h * w) / w, first % w);
                assert_eq!(img, i, "crop {i} comes from image {img}");
                assert!(row <= h - 4 && col <= w - 2, "offset ({row}, {col}) keeps the window inside");
                assert!(y.get(i).equal(&x.get(i).narrow(1, row, 4).narrow(2, col, 2)), "the window at ({row}, {col}), unchanged");
                offsets.insert((row, col));
            }
        }
        assert_eq!(offsets.len(), 3 * 4, "every one of the 3 x 4 offsets drawn: {offsets:?}");
        assert!(random_crop(&x, h, w, &mut rng).equal(&x), "a crop of the full size is the image");
    }

    #[test]
    fn colour_jitter_scales_channels_within_the_ranges_and_keeps_grey_grey() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        // Mid-grey levels, so no value is clamped and the gains can be read back exactly.
        let colour = Tensor::rand([3, 8, 8], (tch::Kind::Float, tch::Device::Cpu)) * 0.4 + 0.2;
        let grey = (Tensor::rand([1, 8, 8], (tch::Kind::Float, tch::Device::Cpu)) * 0.4 + 0.2).expand([3, 8, 8], false).contiguous();
        let (mut lo, mut hi, mut ratio_lo, mut ratio_hi) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for _ in 0..200 {
            let y = colour_jitter(&colour, &mut rng);
            let gains: Vec<f64> = (0..3).map(|c| (y.get(c) / colour.get(c)).mean(tch::Kind::Double).double_value(&[])).collect();
            for c in 0..3usize {
                let spread = (y.get(c as i64) / colour.get(c as i64) - gains[c]).abs().max().double_value(&[]);
                assert!(spread < 1e-5, "one gain per channel, got a spread of {spread}");
                lo = lo.min(gains[c]);
                hi = hi.max(gains[c]);
            }
            ratio_lo = ratio_lo.min(gains[1] / gains[0]);
            ratio_hi = ratio_hi.max(gains[1] / gains[0]);
            let g = colour_jitter(&grey, &mut rng);
            assert!(crate::synth::is_grey(&g), "a grey image stays grey");
        }
        // Gains lie in [0.85 * 0.92, 1.15 * 1.08] and use most of that range; channels differ.
        assert!(lo >= 0.85 * 0.92 - 1e-6 && hi <= 1.15 * 1.08 + 1e-6, "gains {lo}..{hi}");
        assert!(lo < 0.85 && hi > 1.15, "gains {lo}..{hi} should reach beyond the brightness range");
        assert!(ratio_lo < 0.9 && ratio_hi > 1.1, "white balance moves G/R: {ratio_lo}..{ratio_hi}");
        let bright = Tensor::ones([3, 4, 4], (tch::Kind::Float, tch::Device::Cpu));
        for _ in 0..20 {
            assert!(colour_jitter(&bright, &mut rng).max().double_value(&[]) <= 1.0, "clamped to [0, 1]");
        }
    }
}
