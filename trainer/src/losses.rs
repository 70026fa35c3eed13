//! Training losses (DESIGN.md §3): reconstruction L2 + (1 - SSIM), segmentation focal + L1.

use tch::{Kind, Reduction, Tensor};

/// Mean SSIM (Wang et al., IEEE TIP 2004) with an 11x11 Gaussian window, sigma 1.5,
/// C1 = 0.01^2, C2 = 0.03^2, for images in [0, 1]; a, b: [N, C, H, W].
pub fn ssim(a: &Tensor, b: &Tensor) -> Tensor {
    let c = a.size()[1];
    let g: Vec<f32> = (0..11).map(|i| (-((i as f32 - 5.0).powi(2)) / (2.0 * 1.5 * 1.5)).exp()).collect();
    let s: f32 = g.iter().sum();
    let g = Tensor::from_slice(&g).to_device(a.device()) / s as f64;
    let win = g.view([11, 1]).matmul(&g.view([1, 11])).view([1, 1, 11, 11]).repeat([c, 1, 1, 1]);
    let blur = |x: &Tensor| x.conv2d(&win, None::<Tensor>, [1i64, 1], [5i64, 5], [1i64, 1], c);
    let (mu_a, mu_b) = (blur(a), blur(b));
    let (mu_aa, mu_bb, mu_ab) = (&mu_a * &mu_a, &mu_b * &mu_b, &mu_a * &mu_b);
    let s_aa = blur(&(a * a)) - &mu_aa;
    let s_bb = blur(&(b * b)) - &mu_bb;
    let s_ab = blur(&(a * b)) - &mu_ab;
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let map: Tensor = (mu_ab * 2.0 + c1) * (s_ab * 2.0 + c2) / ((mu_aa + mu_bb + c1) * (s_aa + s_bb + c2));
    map.mean(Kind::Float)
}

/// Binary focal loss (Lin et al., ICCV 2017) with gamma = 2 on logits against 0/1 targets.
pub fn focal_loss(logits: &Tensor, target: &Tensor) -> Tensor {
    let bce = logits.binary_cross_entropy_with_logits::<Tensor>(target, None, None, Reduction::None);
    let pt: Tensor = (-&bce).exp();
    let weight: Tensor = (-pt + 1.0).pow_tensor_scalar(2.0);
    (weight * bce).mean(Kind::Float)
}

/// Reconstruction loss: MSE + (1 - SSIM).
pub fn reconstruction_loss(recon: &Tensor, clean: &Tensor) -> Tensor {
    recon.mse_loss(clean, Reduction::Mean) + (1.0 - ssim(recon, clean))
}

/// Segmentation loss: focal on logits + L1 on probabilities.
pub fn segmentation_loss(logits: &Tensor, mask: &Tensor) -> Tensor {
    focal_loss(logits, mask) + (logits.sigmoid() - mask).abs().mean(Kind::Float)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssim_is_one_for_identical_and_lower_for_noise() {
        tch::manual_seed(0);
        let a = Tensor::rand([1, 3, 32, 32], (Kind::Float, tch::Device::Cpu));
        assert!((ssim(&a, &a).double_value(&[]) - 1.0).abs() < 1e-5);
        let b = (&a + Tensor::randn([1, 3, 32, 32], (Kind::Float, tch::Device::Cpu)) * 0.3).clamp(0.0, 1.0);
        assert!(ssim(&a, &b).double_value(&[]) < 0.8);
    }

    #[test]
    fn focal_matches_closed_form() {
        // logit 0 -> p = 0.5 for target 1: bce = ln 2, (1 - 0.5)^2 ln 2.
        let l = focal_loss(&Tensor::from_slice(&[0.0f32]), &Tensor::from_slice(&[1.0f32])).double_value(&[]);
        assert!((l - 0.25 * 2f64.ln()).abs() < 1e-6, "{l}");
    }
}
