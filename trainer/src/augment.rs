//! Geometric augmentation of good images before defect synthesis (issue 13): mirrors and
//! quarter turns, each switched on per data set (`--augment flip,vflip,rot90`), because not
//! every part may be mirrored or turned (a thread has a handedness, a label a reading direction).

use rand::{Rng, RngCore};
use tch::Tensor;

use crate::config::Augment;

/// Applies `augments` to each image of `batch` [B, 3, H, W] independently: `Flip` mirrors
/// left-right and `Vflip` top-bottom with probability 0.5; `Rot90` turns by k x 90 degrees,
/// k uniform in 0..4 for square images, k in {0, 2} otherwise (the shape must not change).
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
                    _ => x,
                };
            }
            x.unsqueeze(0)
        })
        .collect();
    Tensor::cat(&images, 0)
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
}
